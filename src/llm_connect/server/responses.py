"""The OpenAI Responses API: ``POST /v1/responses`` (JSON or SSE), ``GET`` / ``DELETE /v1/responses/{response_id}``.

The body is translated by :mod:`llm_connect.wire.inbound.openai_responses` into one call of the core
contract (any upstream: OpenAI, Anthropic, Gemini, Ollama, local) and runs through the engine like every
other surface (auth, tenant, rate limits, budgets, routing, pricing, one ledger row with endpoint
``/v1/responses``). Answers and stream events have OpenAI's shapes, so the official SDKs and Codex work
unchanged. ``store: true`` (the default) keeps the response, scoped to the tenant, for ``GET`` and for a later
request's ``previous_response_id`` (docs/responses.md).

Headers: ``x-llm-provider``, ``x-llm-model``, ``x-llm-cost-usd`` (JSON answers; a stream's cost is the
extension ``usage.cost_usd`` of ``response.completed``), and ``x-llm-tools-dropped`` naming the built-in
tool types left out of the call (see the codec's docstring). The body extensions (``tenant_id``, ``agent``,
``thread_id``, ``task_type``, ``timeout``) and X-LLM-* headers are the chat endpoint's.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import orjson

from .._ids import time_ordered_hex
from ..types import LLMResponse, StreamChunk, Usage
from ..wire.inbound import openai_responses as codec
from .asgi import Request, Response, json_response
from .engine import CallSpec, Engine
from .errors import ApiError, field_error, log, problem_error
from .openai import llm_headers
from .response_store import ResponseStore, StoredResponse
from .streaming import serve_stream, sse_event
from .validate import Fields, budget_from_headers, header, with_thread

__all__ = ["ResponsesPlan", "handle_create", "handle_delete", "handle_retrieve", "parse_responses"]

_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
_SUMMARIES = frozenset({"auto", "concise", "detailed"})
#: fields OpenAI serves that this gateway cannot: a 400 naming them rather than a silently different answer
_REFUSED = {
    "background": "background responses are not supported (send the request without background)",
    "conversation": "conversations are not supported: chain responses with previous_response_id",
    "prompt": "stored prompt templates are not supported: send instructions and input",
}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{time_ordered_hex()}"


class ResponsesPlan:
    """What a request asks for besides the call itself: its items, tools, storage and the echoed parameters."""

    __slots__ = ("echo", "instructions", "items", "previous_response_id", "store", "stream", "tools")

    def __init__(
        self,
        items: list[dict[str, Any]],
        instructions: str | None,
        tools: codec.ToolSet,
        echo: dict[str, Any],
        *,
        stream: bool,
        store: bool,
        previous_response_id: str | None,
    ) -> None:
        self.items = items
        self.instructions = instructions
        self.tools = tools
        self.echo = echo
        self.stream = stream
        self.store = store
        self.previous_response_id = previous_response_id


def _reasoning(f: Fields) -> dict[str, Any]:
    r = f.obj("reasoning") or {}
    effort, summary = r.get("effort"), r.get("summary", r.get("generate_summary"))
    if effort is not None and effort not in _EFFORTS:
        raise field_error("reasoning.effort", f"must be one of {sorted(_EFFORTS)}, got {effort!r}")
    if summary is not None and summary not in _SUMMARIES:
        raise field_error("reasoning.summary", f"must be one of {sorted(_SUMMARIES)}, got {summary!r}")
    return {"effort": effort, "summary": summary}


def parse_responses(
    data: dict[str, Any], headers: dict[str, str], *, builtin_tools: str = "drop", max_chars: int = 1 << 22
) -> tuple[CallSpec, ResponsesPlan]:
    """(the call, the plan) of a ``POST /v1/responses`` body; the call's prompt is set once the previous
    response (if any) is read."""
    for key, why in _REFUSED.items():
        if data.get(key) not in (None, False):
            raise ApiError(400, f"{key}: {why}", "invalid_request_error", "unsupported_parameter", key)
    f = Fields(data)
    try:
        items = codec.input_items(data.get("input"))
        tools = codec.parse_tools(data.get("tools"), builtin_tools=builtin_tools)
        tool_choice = codec.parse_tool_choice(data.get("tool_choice"), tools)
        response_format, text = codec.parse_text_format(data.get("text"))
    except codec.RequestProblem as p:
        raise problem_error(p) from None
    instructions = f.str("instructions", max_len=max_chars)
    max_tokens = f.int("max_output_tokens", minimum=1)
    temperature = f.num("temperature", lo=0, hi=2)
    top_p = f.num("top_p", lo=0, hi=1)
    stream = f.bool("stream")
    store = f.bool("store", default=True)
    parallel = f.bool("parallel_tool_calls", default=True)
    previous = f.str("previous_response_id")
    md = f.metadata()
    budget = with_thread(budget_from_headers(headers), f.ident("thread_id"))
    reasoning = _reasoning(f)
    echo = {
        "instructions": instructions,
        "max_output_tokens": max_tokens,
        "metadata": md,
        "parallel_tool_calls": parallel,
        "previous_response_id": previous,
        "reasoning": reasoning,
        "store": store,
        "temperature": temperature,
        "text": text,
        "tool_choice": data.get("tool_choice") if data.get("tool_choice") is not None else "auto",
        "tools": tools.echo,
        "top_p": top_p,
        "truncation": "disabled",
        "user": None,
    }
    if data.get("prompt_cache_key") is not None:
        echo["prompt_cache_key"] = f.str("prompt_cache_key")
    spec = CallSpec(
        prompt=None,
        model=f.str("model"),
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        timeout=f.num("timeout", positive=True),
        response_format=response_format,
        reasoning_effort=reasoning["effort"],
        tools=tools.chat,
        tool_choice=tool_choice if tools.chat is not None else None,
        tenant_id=f.ident("tenant_id") or header(headers, "x-llm-tenant-id"),
        agent=f.str("agent") or header(headers, "x-llm-agent"),
        thread_id=budget.thread_id if budget else None,
        task_type=f.str("task_type") or header(headers, "x-llm-task-type"),
        metadata={"openai_metadata": md} if md else {},
        budget=budget,
        endpoint="/v1/responses",
    )
    plan = ResponsesPlan(items, instructions, tools, echo, stream=stream, store=store, previous_response_id=previous)
    return spec, plan


def _not_found(resp_id: str) -> ApiError:
    return ApiError(404, f"No response found with id '{resp_id}'.", "invalid_request_error", "response_not_found")


def _headers(plan: ResponsesPlan) -> list[tuple[bytes, bytes]]:
    if not plan.tools.dropped:
        return []
    return [(b"x-llm-tools-dropped", ", ".join(plan.tools.dropped).encode("latin-1", "replace"))]


async def _save(store: ResponseStore | None, rec: StoredResponse) -> None:
    """Store a finished response; a store that fails is logged, the answer still goes out (it was paid for)."""
    if store is None:
        return
    try:
        await store.put(rec)
    except Exception as exc:
        log.error("response %s could not be stored: %s: %s", rec.id, type(exc).__name__, exc)


async def handle_create(engine: Engine, req: Request) -> Response | None:
    principal = engine.auth.authenticate(req.headers)
    data = await req.json_object(engine.config.server.max_body_bytes)
    rc = engine.config.responses
    spec, plan = parse_responses(
        data, req.headers, builtin_tools=rc.builtin_tools, max_chars=engine.config.server.max_body_bytes
    )
    tenant = engine.auth.for_tenant(principal, spec.tenant_id).tenant
    store = await engine.responses.get() if (plan.store or plan.previous_response_id) else None
    history: list[dict[str, Any]] = []
    if plan.previous_response_id is not None:
        prev = await store.get(plan.previous_response_id, tenant) if store is not None else None
        if prev is None:
            raise ApiError(
                400,
                f"Previous response with id '{plan.previous_response_id}' not found.",
                "invalid_request_error",
                "previous_response_not_found",
                "previous_response_id",
            )
        history = prev.items
    spec.prompt = codec.to_messages(history + plan.items, plan.instructions)
    if not spec.prompt:
        raise field_error("input", "holds no message to send (only reasoning items)")
    if plan.tools.dropped:
        log.debug("request %s: built-in tools dropped: %s", req.request_id, plan.tools.dropped)
    prep = await engine.prepare(principal, spec, req.request_id)
    resp_id, created = _new_id("resp"), int(time.time())
    keep = store if plan.store else None
    if not plan.store:
        plan.echo["store"] = False
    elif store is None:  # responses.store is off: say so rather than promise a stored response
        plan.echo["store"] = False
    if not plan.stream:
        resp = await req.unless_gone(engine.complete(prep))
        body = _body(resp, resp_id, created, plan)
        await _save(
            keep, StoredResponse(resp_id, tenant, created, resp.model, body, history + plan.items + body["output"])
        )
        headers = llm_headers(resp.provider, resp.model, resp.cost_usd) + _headers(plan)
        return Response(200, orjson.dumps(body), headers=headers)
    events = _Events(resp_id, created, plan, keep, tenant, history)
    await serve_stream(engine, req, prep, events, _headers(plan))
    return None


def _body(resp: LLMResponse, resp_id: str, created: int, plan: ResponsesPlan) -> dict[str, Any]:
    output = codec.output_items(resp.text, resp.tool_calls, plan.tools, _new_id, resp.reasoning)
    return codec.response_object(
        resp_id,
        created,
        resp.model,
        plan.echo,
        output=output,
        usage=codec.usage_object(resp.usage),
        finish=resp.finish_reason,
    )


class _Events:
    """The typed SSE events of one streamed response (a StreamEncoder; see the module docstring).

    Each output item is announced (``response.output_item.added``) before its deltas and finished
    (``response.output_item.done``) before the next one starts; ``response.completed`` (or
    ``response.incomplete`` when the answer hit max_output_tokens) carries the whole response with usage,
    after the ledger row and the stored response are written. Reasoning text is a ``reasoning`` item whose one
    summary part streams as ``response.reasoning_summary_text.delta`` events."""

    __slots__ = (
        "calls",
        "created",
        "history",
        "items",
        "model",
        "msg",
        "next_index",
        "plan",
        "reasoning",
        "resp_id",
        "seq",
        "store",
        "tenant",
    )

    def __init__(
        self,
        resp_id: str,
        created: int,
        plan: ResponsesPlan,
        store: ResponseStore | None,
        tenant: str,
        history: list[dict[str, Any]],
    ) -> None:
        self.resp_id = resp_id
        self.created = created
        self.plan = plan
        self.store = store
        self.tenant = tenant
        self.history = history
        self.model = ""
        self.seq = 0
        self.next_index = 0
        #: finished output items, by output index
        self.items: list[dict[str, Any]] = []
        #: the open message: [output_index, item id, text parts]
        self.msg: list[Any] | None = None
        #: the open reasoning item: [output_index, item id, summary text parts]
        self.reasoning: list[Any] | None = None
        #: the tool-call delta index -> [output_index, item, argument parts, still open?]
        self.calls: dict[int, list[Any]] = {}

    def _ev(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, **fields, "sequence_number": self.seq}
        self.seq += 1
        return sse_event(kind, orjson.dumps(data))

    def _response(self, status: str, **kw: Any) -> dict[str, Any]:
        return codec.response_object(self.resp_id, self.created, self.model, self.plan.echo, status=status, **kw)

    def open(self, model: str, first: StreamChunk | None) -> bytes:
        self.model = model
        pending = self._response("in_progress")
        return self._ev("response.created", response=pending) + self._ev("response.in_progress", response=pending)

    # -- items ------------------------------------------------------------------------------------
    def _open_message(self) -> bytes:
        index, item_id = self.next_index, _new_id("msg")
        self.next_index += 1
        self.msg = [index, item_id, []]
        item = {**codec.message_item(item_id, "", "in_progress"), "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return self._ev("response.output_item.added", output_index=index, item=item) + self._ev(
            "response.content_part.added", item_id=item_id, output_index=index, content_index=0, part=part
        )

    def _close_message(self) -> bytes:
        if self.msg is None:
            return b""
        index, item_id, parts = self.msg
        self.msg = None
        text = "".join(parts)
        item = codec.message_item(item_id, text)
        self.items.append(item)
        part = item["content"][0]
        return (
            self._ev(
                "response.output_text.done",
                item_id=item_id,
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            )
            + self._ev("response.content_part.done", item_id=item_id, output_index=index, content_index=0, part=part)
            + self._ev("response.output_item.done", output_index=index, item=item)
        )

    def _open_reasoning(self) -> bytes:
        index, item_id = self.next_index, _new_id("rs")
        self.next_index += 1
        self.reasoning = [index, item_id, []]
        part = {"type": "summary_text", "text": ""}
        return self._ev(
            "response.output_item.added", output_index=index, item=codec.reasoning_item(item_id, "")
        ) + self._ev(
            "response.reasoning_summary_part.added", item_id=item_id, output_index=index, summary_index=0, part=part
        )

    def _close_reasoning(self) -> bytes:
        if self.reasoning is None:
            return b""
        index, item_id, parts = self.reasoning
        self.reasoning = None
        text = "".join(parts)
        item = codec.reasoning_item(item_id, text)
        self.items.append(item)
        ids = {"item_id": item_id, "output_index": index, "summary_index": 0}
        return (
            self._ev("response.reasoning_summary_text.done", **ids, text=text)
            + self._ev("response.reasoning_summary_part.done", **ids, part=item["summary"][0])
            + self._ev("response.output_item.done", output_index=index, item=item)
        )

    def _close_call(self, call: list[Any]) -> bytes:
        index, item, parts, _ = call
        call[3] = False
        args = "".join(parts)
        done = codec.call_item(item["id"], item["call_id"], item["_upstream"], args, self.plan.tools)
        self.items.append(done)
        if done["type"] == "custom_tool_call":  # its input is known once the arguments are whole
            out = self._ev(
                "response.custom_tool_call_input.delta", item_id=item["id"], output_index=index, delta=done["input"]
            )
            out += self._ev(
                "response.custom_tool_call_input.done", item_id=item["id"], output_index=index, input=done["input"]
            )
        else:
            out = self._ev(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=done["name"],
                arguments=args,
            )
        return out + self._ev("response.output_item.done", output_index=index, item=done)

    def _close_open_calls(self) -> bytes:
        return b"".join(self._close_call(c) for c in self.calls.values() if c[3])

    def _tool_delta(self, d: dict[str, Any]) -> bytes:
        out = b""
        idx = d.get("index", 0)
        fn = d.get("function") or {}
        call = self.calls.get(idx)
        if call is None:
            out += self._close_reasoning() + self._close_message() + self._close_open_calls()
            index = self.next_index
            self.next_index += 1
            upstream = fn.get("name") or ""
            item = codec.call_item(
                _new_id("fc"), d.get("id") or _new_id("call"), upstream, "", self.plan.tools, "in_progress"
            )
            announced = dict(item)
            item["_upstream"] = upstream
            call = self.calls[idx] = [index, item, [], True]
            out += self._ev("response.output_item.added", output_index=index, item=announced)
        args = fn.get("arguments")
        if args and call[3]:
            call[2].append(args)
            if call[1]["type"] == "function_call":
                out += self._ev(
                    "response.function_call_arguments.delta", item_id=call[1]["id"], output_index=call[0], delta=args
                )
        return out

    # -- StreamEncoder ----------------------------------------------------------------------------
    def chunk(self, chunk: StreamChunk) -> bytes:
        out = b""
        if chunk.reasoning:
            if self.reasoning is None:
                out += self._close_message() + self._close_open_calls() + self._open_reasoning()
            assert self.reasoning is not None
            self.reasoning[2].append(chunk.reasoning)
            out += self._ev(
                "response.reasoning_summary_text.delta",
                item_id=self.reasoning[1],
                output_index=self.reasoning[0],
                summary_index=0,
                delta=chunk.reasoning,
            )
        if chunk.text:
            if self.msg is None:
                out += self._close_reasoning() + self._close_open_calls() + self._open_message()
            assert self.msg is not None
            self.msg[2].append(chunk.text)
            out += self._ev(
                "response.output_text.delta",
                item_id=self.msg[1],
                output_index=self.msg[0],
                content_index=0,
                delta=chunk.text,
                logprobs=[],
            )
        for d in chunk.tool_calls or ():
            out += self._tool_delta(d)
        return out

    async def close(self, finish: str, usage: Usage, cost: Decimal | None) -> bytes:
        out = self._close_reasoning()
        if self.msg is None and not self.calls and all(i["type"] == "reasoning" for i in self.items):
            out += self._open_message()  # an answer without text or tool calls is still one (empty) message
        out += self._close_message() + self._close_open_calls()
        body = self._response("completed", output=self.items, usage=codec.usage_object(usage), finish=finish)
        if self.store is not None:
            rec = StoredResponse(
                self.resp_id, self.tenant, self.created, self.model, body, self.history + self.plan.items + self.items
            )
            await _save(self.store, rec)
        final = {**body, "usage": codec.usage_object(usage, cost, with_cost=True)}
        kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
        return out + self._ev(kind, response=final)

    def error(self, err: ApiError) -> bytes:
        failed = self._response(
            "failed", output=self.items, error={"code": err.code or "server_error", "message": err.message}
        )
        return self._ev("error", code=err.code, message=err.message, param=err.param) + self._ev(
            "response.failed", response=failed
        )


async def _stored(engine: Engine, req: Request) -> tuple[ResponseStore | None, str, str]:
    principal = engine.auth.authenticate(req.headers)
    tenant = engine.auth.for_tenant(principal, header(req.headers, "x-llm-tenant-id")).tenant
    await engine.start()
    return await engine.responses.get(), tenant, req.params.get("response_id", "")


async def handle_retrieve(engine: Engine, req: Request) -> Response:
    store, tenant, resp_id = await _stored(engine, req)
    rec = await store.get(resp_id, tenant) if store is not None else None
    if rec is None:
        raise _not_found(resp_id)
    return json_response(rec.response)


async def handle_delete(engine: Engine, req: Request) -> Response:
    store, tenant, resp_id = await _stored(engine, req)
    if store is None or not await store.delete(resp_id, tenant):
        raise _not_found(resp_id)
    return json_response({"id": resp_id, "object": "response", "deleted": True})
