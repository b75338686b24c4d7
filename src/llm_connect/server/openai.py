"""OpenAI-compatible routes: ``POST /v1/chat/completions`` (JSON or SSE stream) and ``GET /v1/models``.

Bodies and chunks have OpenAI's exact shapes, so the official SDKs work unchanged. Extensions: the body may
carry ``tenant_id``, ``agent``, ``thread_id``, ``task_type``, ``timeout``; headers ``X-LLM-Budget-Id`` (+
``X-LLM-Budget-Tokens`` / ``X-LLM-Budget-USD``), ``X-LLM-Thread-Id``, ``X-LLM-Agent``, ``X-LLM-Task-Type``.
Fields the gateway does not act on (``frequency_penalty``, ``logit_bias``, ``user``, ...) are ignored.
What an upstream adds rides along in its provider's own shape: reasoning text as ``reasoning_content`` in
``choices[].message`` and in stream deltas (DeepSeek's), a provider row's kept fields at the top level of the body
and of the stream's closing chunks (Perplexity's ``citations``, ``search_results``); absent when there are none.
The cost of a call: the ``x-llm-cost-usd`` header of a JSON answer; in a stream (``stream_options.include_usage``)
the final usage chunk's ``usage.cost_usd``, a decimal string (null when the model has no known price).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import orjson

from ..types import LLMResponse, StreamChunk, Usage
from .asgi import Request, Response, json_response
from .catalog import model_not_found
from .engine import CallSpec, Engine
from .errors import ApiError, field_error
from .streaming import serve_stream
from .validate import Fields, budget_from_headers, header, with_thread

__all__ = ["handle_chat", "handle_model", "handle_models", "parse_chat"]

_DONE = b"data: [DONE]\n\n"


#: the body fields parse_chat reads besides ``messages`` (most requests carry two or three of them)
_CHAT_FIELDS = frozenset(
    {
        "n",
        "max_completion_tokens",
        "max_tokens",
        "stream",
        "stream_options",
        "thread_id",
        "metadata",
        "model",
        "temperature",
        "top_p",
        "timeout",
        "stop",
        "seed",
        "response_format",
        "tools",
        "tool_choice",
        "tenant_id",
        "agent",
        "task_type",
    }
)


def parse_chat(data: dict[str, Any], headers: dict[str, str]) -> tuple[CallSpec, bool, bool]:
    """(spec, stream?, include_usage?) from a Chat Completions body."""
    f = Fields(data)
    messages = f.messages()
    has = data.keys() & _CHAT_FIELDS  # only the fields present are validated one by one
    if "n" in has and f.int("n", minimum=1) not in (None, 1):
        raise field_error("n", "only n=1 is supported")
    max_tokens = f.int("max_completion_tokens", minimum=1) if "max_completion_tokens" in has else None
    legacy_max = f.int("max_tokens", minimum=1) if "max_tokens" in has else None  # validated even when unused
    if max_tokens is None:
        max_tokens = legacy_max
    stream = "stream" in has and f.bool("stream")
    include_usage = False
    if "stream_options" in has:
        include_usage = Fields(f.obj("stream_options") or {}, "stream_options.").bool("include_usage")
    budget = with_thread(budget_from_headers(headers), f.ident("thread_id") if "thread_id" in has else None)
    md = f.metadata() if "metadata" in has else None
    spec = CallSpec(
        prompt=messages,
        model=f.str("model") if "model" in has else None,
        max_tokens=max_tokens,
        temperature=f.num("temperature", lo=0, hi=2) if "temperature" in has else None,
        top_p=f.num("top_p", lo=0, hi=1) if "top_p" in has else None,
        timeout=f.num("timeout", positive=True) if "timeout" in has else None,
        stop=f.stop() if "stop" in has else None,
        seed=f.int("seed") if "seed" in has else None,
        response_format=f.response_format() if "response_format" in has else None,
        tools=f.tools() if "tools" in has else None,
        tool_choice=data.get("tool_choice"),
        tenant_id=(f.ident("tenant_id") if "tenant_id" in has else None) or header(headers, "x-llm-tenant-id"),
        agent=(f.str("agent") if "agent" in has else None) or header(headers, "x-llm-agent"),
        thread_id=budget.thread_id if budget else None,
        task_type=(f.str("task_type") if "task_type" in has else None) or header(headers, "x-llm-task-type"),
        metadata={"openai_metadata": md} if md else {},
        budget=budget,
        endpoint="/v1/chat/completions",
    )
    return spec, stream, include_usage


def usage_dict(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def llm_headers(provider: str, model: str, cost: Any) -> list[tuple[bytes, bytes]]:
    h = [
        (b"x-llm-provider", provider.encode("latin-1", "replace")),
        (b"x-llm-model", model.encode("latin-1", "replace")),
    ]
    if cost is not None:
        h.append((b"x-llm-cost-usd", str(cost).encode()))
    return h


def completion_body(resp: LLMResponse, cid: str) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "role": "assistant",
        "content": resp.text if (resp.text or not resp.tool_calls) else None,
        "refusal": None,
    }
    if resp.tool_calls:
        msg["tool_calls"] = resp.tool_calls
    if resp.reasoning:
        msg["reasoning_content"] = resp.reasoning
    body = {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": resp.model,
        "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": resp.finish_reason or "stop"}],
        "usage": usage_dict(resp.usage),
        "system_fingerprint": None,
    }
    if resp.provider_fields:
        _add_fields(body, resp.provider_fields)
    return body


def _add_fields(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """The provider row's kept reply fields at the top level, where the provider puts them (Perplexity
    ``citations``, ``search_results``); never over a field of the body's own."""
    for k, v in fields.items():
        body.setdefault(k, v)


async def handle_chat(engine: Engine, req: Request) -> Response | None:
    principal = engine.auth.authenticate(req.headers)
    data = await req.json_object(engine.config.server.max_body_bytes)
    spec, stream, include_usage = parse_chat(data, req.headers)
    prep = await engine.prepare(principal, spec, req.request_id)
    cid = "chatcmpl-" + req.request_id
    if not stream:
        resp = await req.unless_gone(engine.complete(prep))
        return Response(
            200, orjson.dumps(completion_body(resp, cid)), headers=llm_headers(resp.provider, resp.model, resp.cost_usd)
        )
    await serve_stream(engine, req, prep, _Chunks(cid, include_usage))
    return None


class _Chunks:
    """The chat.completion.chunk events of one stream, ending with ``data: [DONE]``.

    Every event of a stream has the same fields around its delta: they are encoded once, at :meth:`open`, and
    each chunk's event is that head, its delta and the tail (the same bytes as encoding the whole object)."""

    __slots__ = ("base", "cid", "head", "include_usage", "tail")

    def __init__(self, cid: str, include_usage: bool) -> None:
        self.cid = cid
        self.base: dict[str, Any] = {}
        self.include_usage = include_usage
        self.head = b""
        self.tail = b""

    def _event(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if finish is None:
            return self.head + orjson.dumps(delta) + self.tail
        obj = {**self.base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.include_usage:
            obj["usage"] = None
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def open(self, model: str, first: StreamChunk | None) -> bytes:
        self.base = {
            "id": self.cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        # {**base, "choices": [{"index": 0, "delta": <delta>, "logprobs": null, "finish_reason": null}], "usage": null}
        self.head = b"data: " + orjson.dumps(self.base)[:-1] + b',"choices":[{"index":0,"delta":'
        self.tail = b',"logprobs":null,"finish_reason":null}]' + (b',"usage":null}' if self.include_usage else b"}")
        self.tail += b"\n\n"
        return self._event({"role": "assistant", "content": ""})

    def chunk(self, chunk: StreamChunk) -> bytes:
        text = chunk.text
        if text and not (chunk.reasoning or chunk.tool_calls or chunk.provider_fields):  # most chunks: text alone
            return self.head + b'{"content":' + orjson.dumps(text) + b"}" + self.tail
        delta: dict[str, Any] = {}
        if chunk.reasoning:
            delta["reasoning_content"] = chunk.reasoning
        if chunk.text:
            delta["content"] = chunk.text
        if chunk.tool_calls:
            delta["tool_calls"] = chunk.tool_calls
        if chunk.provider_fields:  # the final chunk's: every event from here on carries them, as Perplexity's do
            _add_fields(self.base, chunk.provider_fields)
        return self._event(delta) if delta else b""

    async def close(self, finish: str, usage: Usage, cost: Decimal | None) -> bytes:
        """The finish chunk, then (``include_usage``) the usage chunk, whose ``usage.cost_usd`` (an extension:
        decimal string, null when unpriced) is the call's cost, which a stream can only tell at its end."""
        out = self._event({}, finish)
        if self.include_usage:
            body = {**usage_dict(usage), "cost_usd": None if cost is None else str(cost)}
            out += b"data: " + orjson.dumps({**self.base, "choices": [], "usage": body}) + b"\n\n"
        return out + _DONE

    def error(self, err: ApiError) -> bytes:
        body = {"error": {"message": err.message, "type": err.type, "code": err.code, "param": err.param}}
        return b"data: " + orjson.dumps(body) + b"\n\n"


async def handle_models(engine: Engine, req: Request) -> Response:
    principal = engine.auth.authenticate(req.headers)
    await engine.start()
    assert engine.catalog is not None
    return json_response({"object": "list", "data": engine.catalog.listing(principal)})


async def handle_model(engine: Engine, req: Request) -> Response:
    """``GET /v1/models/{model}``: one model object (404 ``model_not_found`` for a name the key may not use or
    that does not exist: a key does not learn which names exist beyond its own)."""
    principal = engine.auth.authenticate(req.headers)
    await engine.start()
    assert engine.catalog is not None
    name = req.params["model"]
    entry = engine.catalog.describe(name, principal)
    if entry is None:
        raise model_not_found(name)
    return json_response(entry)
