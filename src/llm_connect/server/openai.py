"""OpenAI-compatible routes: ``POST /v1/chat/completions`` (JSON or SSE stream) and ``GET /v1/models``.

Bodies and chunks have OpenAI's exact shapes, so the official SDKs work unchanged. Extensions: the body may
carry ``tenant_id``, ``agent``, ``thread_id``, ``task_type``, ``timeout``; headers ``X-LLM-Budget-Id`` (+
``X-LLM-Budget-Tokens`` / ``X-LLM-Budget-USD``), ``X-LLM-Thread-Id``, ``X-LLM-Agent``, ``X-LLM-Task-Type``.
Fields the gateway does not act on (``frequency_penalty``, ``logit_bias``, ``user``, ...) are ignored.
The cost of a call: the ``x-llm-cost-usd`` header of a JSON answer; in a stream (``stream_options.include_usage``)
the final usage chunk's ``usage.cost_usd``, a decimal string (null when the model has no known price).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal
from typing import Any

import orjson

from ..types import LLMResponse, StreamChunk, Usage
from .asgi import Request, Response, json_response
from .engine import CallSpec, Engine, Prepared
from .errors import ApiError, field_error, log
from .validate import Fields, budget_from_headers, header, with_thread

__all__ = ["handle_chat", "handle_models", "parse_chat"]

_SSE = b"text/event-stream"
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
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": resp.model,
        "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": resp.finish_reason or "stop"}],
        "usage": usage_dict(resp.usage),
        "system_fingerprint": None,
    }


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
    await _stream(engine, req, prep, cid, include_usage)
    return None


class _Chunks:
    """Builds chat.completion.chunk events."""

    __slots__ = ("base", "include_usage")

    def __init__(self, cid: str, model: str, include_usage: bool) -> None:
        self.base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        self.include_usage = include_usage

    def event(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        obj = {**self.base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.include_usage:
            obj["usage"] = None
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def usage(self, u: Usage, cost: Decimal | None) -> bytes:
        """The final usage chunk; ``usage.cost_usd`` (an extension: decimal string, null when unpriced) is the
        call's cost, which a stream can only tell at its end."""
        body = {**usage_dict(u), "cost_usd": None if cost is None else str(cost)}
        return b"data: " + orjson.dumps({**self.base, "choices": [], "usage": body}) + b"\n\n"


async def _stream(engine: Engine, req: Request, prep: Prepared, cid: str, include_usage: bool) -> None:
    gen = engine.stream(prep)
    first: StreamChunk | None
    try:
        first = await anext(gen)  # errors before the first chunk are plain JSON error responses
    except StopAsyncIteration:
        first = None
    except BaseException:
        await gen.aclose()
        raise
    model = (first.model if first and first.model else None) or prep.target.public
    out = _Chunks(cid, model, include_usage)
    await req.start_stream(200, _SSE, [(b"x-llm-model", model.encode("latin-1", "replace"))])
    pump = asyncio.ensure_future(_pump(req, gen, first, out))
    watcher = asyncio.ensure_future(req.wait_disconnect())
    try:
        await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not pump.done():  # the client went away: stop the upstream stream, settle on what was produced
            pump.cancel()
            req.status = 499
        with contextlib.suppress(BaseException):
            await pump
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher


async def _pump(req: Request, gen: Any, first: StreamChunk | None, out: _Chunks) -> None:
    await req.write(out.event({"role": "assistant", "content": ""}))
    finish: str | None = None
    usage: Usage | None = None
    cost: Decimal | None = None
    try:
        chunk = first
        while chunk is not None:
            delta: dict[str, Any] = {}
            if chunk.text:
                delta["content"] = chunk.text
            if chunk.tool_calls:
                delta["tool_calls"] = chunk.tool_calls
            if delta:
                await req.write(out.event(delta))
            if chunk.finish_reason:
                finish = chunk.finish_reason
            if chunk.usage is not None:
                usage, cost = chunk.usage, chunk.cost_usd
            try:
                chunk = await anext(gen)
            except StopAsyncIteration:
                chunk = None
        # the generator is exhausted: the call's usage event is committed to the ledger
        await req.write(out.event({}, finish or "stop"))
        if out.include_usage:
            await req.write(out.usage(usage or Usage(), cost))
        await req.write(_DONE, more=False)
    except Exception as exc:
        err = exc if isinstance(exc, ApiError) else ApiError(500, "internal error", "api_error", "internal_error")
        if not isinstance(exc, ApiError):
            log.error("stream %s failed: %s", req.request_id, type(exc).__name__, exc_info=exc)
        else:
            log.info("stream %s ended with %s: %s", req.request_id, err.code, err.message)
        body = {"error": {"message": err.message, "type": err.type, "code": err.code, "param": err.param}}
        await req.write(b"data: " + orjson.dumps(body) + b"\n\n", more=True)
        await req.write(b"", more=False)
    finally:
        await gen.aclose()


async def handle_models(engine: Engine, req: Request) -> Response:
    principal = engine.auth.authenticate(req.headers)
    await engine.start()
    assert engine.catalog is not None
    return json_response({"object": "list", "data": engine.catalog.listing(principal)})
