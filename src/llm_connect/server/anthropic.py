"""Anthropic Messages routes: ``POST /v1/messages`` (JSON or SSE) and ``POST /v1/messages/count_tokens``.

Bodies, events and errors have Anthropic's shapes, so the official ``anthropic`` SDKs and Claude Code
(``ANTHROPIC_BASE_URL``) work unchanged; the key comes in ``x-api-key`` or ``Authorization: Bearer``.
A call routed to an Anthropic deployment receives the client's body as it is and answers verbatim
(passthrough: cache_control, thinking and its signatures, betas); routed to any other provider it is
translated through the core contract (``llm_connect.wire.inbound.anthropic_messages``). Either way it runs
through the engine: auth, rate limits, budget reserve -> settle, pricing, one ledger row with endpoint
``/v1/messages``. Errors: ``{"type": "error", "error": {"type", "message"}, "request_id"}`` with Anthropic's
status / type pairs (see :func:`~llm_connect.wire.inbound.anthropic_messages.error_status`).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..types import RunConfig
from ..wire.inbound import anthropic_messages as codec
from .asgi import Request, Response
from .engine import CallSpec, Engine
from .errors import ApiError, from_exception
from .openai import llm_headers
from .streaming import serve_stream
from .validate import Fields, budget_from_headers, header, with_thread

__all__ = ["handle_count_tokens", "handle_messages", "parse_messages", "render_error"]


def render_error(err: ApiError, request_id: str | None = None) -> Response:
    """An ApiError in Anthropic's error shape and status (Retry-After and the other headers kept)."""
    status, etype = codec.error_status(err.status, err.code)
    headers = list(err.headers)
    if request_id is not None:
        headers.append((b"request-id", request_id.encode()))
    return Response(status, orjson.dumps(codec.error_body(etype, err.message, request_id)), headers=headers)


def _request(data: dict[str, Any], headers: dict[str, str], *, count: bool = False) -> codec.MessagesRequest:
    try:
        return codec.parse_request(data, headers, count=count)
    except codec.InvalidRequest as exc:
        raise ApiError(400, exc.message, "invalid_request_error", "invalid_field", exc.param) from None


def parse_messages(data: dict[str, Any], headers: dict[str, str]) -> tuple[CallSpec, codec.MessagesRequest]:
    """A Messages body -> (CallSpec, the validated request). Raises ApiError 400 naming the field."""
    mr = _request(data, headers)
    f = Fields(mr.extensions)
    budget = with_thread(budget_from_headers(headers), f.ident("thread_id"))
    spec = CallSpec(
        prompt=mr.messages,
        model=mr.model,
        max_tokens=mr.max_tokens,
        temperature=mr.temperature,
        top_p=mr.top_p,
        timeout=f.num("timeout", positive=True),
        stop=mr.stop,
        tools=mr.tools,
        tool_choice=mr.tool_choice,
        tenant_id=f.ident("tenant_id") or header(headers, "x-llm-tenant-id"),
        agent=f.str("agent") or header(headers, "x-llm-agent"),
        thread_id=budget.thread_id if budget else None,
        task_type=f.str("task_type") or header(headers, "x-llm-task-type"),
        metadata=mr.metadata,
        budget=budget,
        endpoint=codec.ENDPOINT,
        reasoning_effort=mr.reasoning_effort,
        native=mr.native,
    )
    return spec, mr


async def _messages(engine: Engine, req: Request) -> Response | None:
    principal = engine.auth.authenticate(req.headers)
    data = await req.json_object(engine.config.server.max_body_bytes)
    spec, mr = parse_messages(data, req.headers)
    prep = await engine.prepare(principal, spec, req.request_id)
    msg_id = "msg_" + req.request_id
    rid = [(b"request-id", req.request_id.encode())]
    if not mr.stream:
        resp = await req.unless_gone(engine.complete(prep))
        if resp.native and isinstance(resp.raw, dict):
            body = resp.raw  # the upstream's own message: content blocks, signatures and usage verbatim
        else:
            body = codec.message_body(resp, msg_id, mr.stop)
        return Response(200, orjson.dumps(body), headers=rid + llm_headers(resp.provider, resp.model, resp.cost_usd))
    await serve_stream(engine, req, prep, codec.MessagesStream(msg_id, mr.stop), headers=rid)
    return None


async def handle_messages(engine: Engine, req: Request) -> Response | None:
    """``POST /v1/messages``."""
    try:
        return await _messages(engine, req)
    except ApiError as err:
        if req.started:
            raise
        return render_error(err, req.request_id)


async def _count(engine: Engine, req: Request) -> Response:
    from ..providers.reserve import count_prompt

    principal = engine.auth.authenticate(req.headers)
    data = await req.json_object(engine.config.server.max_body_bytes)
    mr = _request(data, req.headers, count=True)
    tenant = Fields(mr.extensions).ident("tenant_id") or header(req.headers, "x-llm-tenant-id")
    principal = engine.auth.for_tenant(principal, tenant)
    await engine.start()
    assert engine.catalog is not None
    target = engine.catalog.resolve(mr.model, principal, None)
    cfg = RunConfig(model_name=target.model_name, tools=mr.tools, tool_choice=mr.tool_choice, native=mr.native)
    try:
        n, _ = await count_prompt(target.adapter, mr.messages, cfg)
    except Exception as exc:
        raise from_exception(exc, engine.redact) from exc
    return Response(200, orjson.dumps({"input_tokens": n}), headers=[(b"request-id", req.request_id.encode())])


async def handle_count_tokens(engine: Engine, req: Request) -> Response:
    """``POST /v1/messages/count_tokens`` -> ``{"input_tokens": N}`` (nothing is billed)."""
    try:
        return await _count(engine, req)
    except ApiError as err:
        return render_error(err, req.request_id)


# errors raised outside the handlers' own try (none today) still answer in Anthropic's shape
handle_messages.render_error = render_error  # type: ignore[attr-defined]
handle_count_tokens.render_error = render_error  # type: ignore[attr-defined]
