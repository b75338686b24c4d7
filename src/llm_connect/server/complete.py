"""``POST /complete`` — the LLM pool service of seed 002.

Request ``{"model": "<group>", "messages": [...], "tenant_id": "..."}`` ->
``{"content": "...", "model": "...", "usage": {"prompt_tokens": N, "completion_tokens": M}}``.
When every provider of the group (and its fallbacks) failed: 503 ``{"error": "All providers unavailable"}``.
Other errors use the OpenAI error shape.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..types import RunConfig
from .asgi import Request, Response
from .engine import CallSpec, Engine
from .errors import ApiError
from .validate import Fields, budget_from_headers, header, with_thread

__all__ = ["handle_complete", "handle_count_tokens", "parse_complete"]

_UNAVAILABLE = frozenset({"provider_unavailable", "timeout", "upstream_rate_limited", "upstream_authentication_error"})


def parse_complete(data: dict[str, Any], headers: dict[str, str]) -> CallSpec:
    """Validate a ``/complete`` body into a CallSpec (ApiError 422 naming the field; unknown fields are ignored)."""
    f = Fields(data)
    budget = with_thread(budget_from_headers(headers), f.ident("thread_id"))
    return CallSpec(
        prompt=f.messages(),
        model=f.str("model"),
        tenant_id=f.ident("tenant_id") or header(headers, "x-llm-tenant-id"),
        max_tokens=f.int("max_tokens", minimum=1),
        temperature=f.num("temperature", lo=0, hi=2),
        timeout=f.num("timeout", positive=True),
        agent=f.str("agent") or header(headers, "x-llm-agent"),
        thread_id=budget.thread_id if budget is not None else None,
        task_type=f.str("task_type") or header(headers, "x-llm-task-type"),
        metadata=f.metadata(),
        budget=budget,
        endpoint="/complete",
    )


async def handle_complete(engine: Engine, req: Request) -> Response:
    principal = engine.auth.authenticate(req.headers)
    data = await req.json_object(engine.config.server.max_body_bytes)
    spec = parse_complete(data, req.headers)
    prep = await engine.prepare(principal, spec, req.request_id)
    try:
        resp = await req.unless_gone(engine.complete(prep))
    except ApiError as err:
        if err.code in _UNAVAILABLE:
            return Response(
                503, orjson.dumps({"error": "All providers unavailable", "detail": err.message}), headers=err.headers
            )
        raise
    return Response(
        200,
        orjson.dumps(
            {
                "content": resp.text,
                "model": resp.model,
                "usage": {"prompt_tokens": resp.usage.input_tokens, "completion_tokens": resp.usage.output_tokens},
            }
        ),
    )


async def handle_count_tokens(engine: Engine, req: Request) -> Response:
    """``POST /count_tokens`` ``{model, messages}`` -> ``{"input_tokens": N, "exact": bool, "model": ...}``."""
    from ..providers.reserve import count_prompt

    principal = engine.auth.authenticate(req.headers)
    data = await req.json_object(engine.config.server.max_body_bytes)
    f = Fields(data)
    prompt, model = f.messages(), f.str("model")
    principal = engine.auth.for_tenant(principal, f.ident("tenant_id") or header(req.headers, "x-llm-tenant-id"))
    target = engine.catalog.resolve(model, principal, None)
    n, exact = await count_prompt(target.adapter, prompt, RunConfig(model_name=target.model_name))
    return Response(200, orjson.dumps({"input_tokens": n, "exact": exact, "model": target.public}))
