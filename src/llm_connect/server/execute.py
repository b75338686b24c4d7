"""``POST /execute`` — the bridge's JSON request and response, byte for byte (seed FR-1).

Request (only ``prompt`` is required; unknown fields are refused)::

    {"prompt": "..." | [{"role": "...", "content": "..."}, ...],   # "messages" is accepted as a synonym
     "model": "group | alias | provider:model",                     # default: the configured default model
     "system_prompt": "...", "max_tokens": 256, "temperature": 0.2, "top_p": 1, "timeout": 30,
     "stop": ["..."], "seed": 7, "response_format": {...}, "json_mode": false, "tools": [...], "tool_choice": ...,
     "tenant_id": "...", "agent": "...", "thread_id": "...", "task_type": "...", "metadata": {...},
     "budget": {"id": "chain-42", "total_tokens": 4000, "total_usd": "0.50"}}

Response::

    {"ok": true, "text": "...", "model": "...", "provider": "...", "finish_reason": "stop",
     "usage": {"input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
               "total_tokens"},
     "cost_usd": "0.000012" | null, "latency_ms": 812.4, "request_id": "...", "tool_calls": [...] | null,
     "budget": {"id": "chain-42", "remaining_tokens": 3120, "remaining_usd": null}}     # when one was named

    {"ok": false, "error": {"type": "...", "code": "...", "message": "...", "param": null}}
"""

from __future__ import annotations

from typing import Any

import orjson

from ..types import LLMResponse
from .asgi import ClientGone, Request, Response
from .budgets import BudgetRequest, check_id, parse_tokens, parse_usd
from .engine import CallSpec, Engine
from .errors import ApiError, field_error, from_exception
from .validate import Fields, budget_from_headers, check_messages, header, with_thread

__all__ = ["EXECUTE_FIELDS", "error_payload", "handle_execute", "parse_execute", "run_execute", "success_payload"]

EXECUTE_FIELDS = frozenset(
    {
        "prompt",
        "messages",
        "model",
        "system_prompt",
        "max_tokens",
        "temperature",
        "top_p",
        "timeout",
        "stop",
        "seed",
        "response_format",
        "json_mode",
        "tools",
        "tool_choice",
        "tenant_id",
        "agent",
        "thread_id",
        "task_type",
        "metadata",
        "budget",
    }
)
_BUDGET_FIELDS = frozenset({"id", "total_tokens", "total_usd"})


def parse_execute(data: dict[str, Any], headers: dict[str, str] | None = None) -> CallSpec:
    """Validate a bridge / /execute request into a CallSpec (ApiError 422 naming the field)."""
    f = Fields(data)
    f.reject_unknown(EXECUTE_FIELDS)
    prompt = data.get("prompt")
    if prompt is None:
        prompt = data.get("messages")
        where = "messages"
    else:
        where = "prompt"
        if data.get("messages") is not None:
            raise field_error("messages", "give 'prompt' or 'messages', not both")
    if prompt is None:
        raise field_error("prompt", "is required (a string or a list of messages)")
    if isinstance(prompt, str):
        if not prompt:
            raise field_error(where, "must not be empty")
    elif isinstance(prompt, list):
        check_messages(prompt, where)
    else:
        raise field_error(where, f"must be a string or a list of messages, got {type(prompt).__name__}")
    budget = budget_from_headers(headers or {})
    b = f.obj("budget")
    thread_id = f.ident("thread_id")
    if b is not None:
        bf = Fields(b, "budget.")
        bf.reject_unknown(_BUDGET_FIELDS)
        if b.get("id") is None:
            raise field_error("budget.id", "is required")
        budget = BudgetRequest(
            budget_id=check_id(b["id"], "budget.id"),
            tokens=parse_tokens(b.get("total_tokens"), "budget.total_tokens"),
            usd=parse_usd(b.get("total_usd"), "budget.total_usd"),
            thread_id=thread_id or (budget.thread_id if budget else None),
        )
    else:
        budget = with_thread(budget, thread_id)
    return CallSpec(
        prompt=prompt,
        model=f.str("model"),
        system_prompt=f.str("system_prompt", max_len=1_000_000),
        max_tokens=f.int("max_tokens", minimum=1),
        temperature=f.num("temperature", lo=0, hi=2),
        top_p=f.num("top_p", lo=0, hi=1),
        timeout=f.num("timeout", positive=True),
        stop=f.stop(),
        seed=f.int("seed"),
        response_format=f.response_format(),
        json_mode=f.bool("json_mode"),
        tools=f.tools(),
        tool_choice=data.get("tool_choice"),
        tenant_id=f.ident("tenant_id") or header(headers, "x-llm-tenant-id"),
        agent=f.str("agent") or header(headers, "x-llm-agent"),
        thread_id=thread_id or (budget.thread_id if budget else None),
        task_type=f.str("task_type") or header(headers, "x-llm-task-type"),
        metadata=f.metadata(),
        budget=budget,
    )


def success_payload(resp: LLMResponse, request_id: str, budget: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ok": True,
        "text": resp.text,
        "model": resp.model,
        "provider": resp.provider,
        "finish_reason": resp.finish_reason,
        "usage": resp.usage.to_dict(),
        "cost_usd": None if resp.cost_usd is None else str(resp.cost_usd),
        "latency_ms": round(resp.latency_ms, 3),
        "request_id": request_id,
        "tool_calls": resp.tool_calls,
    }
    if budget is not None:
        out["budget"] = budget
    return out


def error_payload(err: ApiError) -> dict[str, Any]:
    return {"ok": False, "error": {"type": err.type, "code": err.code, "message": err.message, "param": err.param}}


async def run_execute(
    engine: Engine, principal: Any, data: Any, headers: dict[str, str], request_id: str, endpoint: str = "/execute"
) -> dict[str, Any]:
    """Validate and run one execute request; returns the success payload (ApiError on failure). ``endpoint``
    is what the ledger records the call under (the bridge's calls: ``bridge``)."""
    if not isinstance(data, dict):
        raise ApiError(
            422,
            f"the request must be a JSON object, got {type(data).__name__}",
            "invalid_request_error",
            "invalid_field",
        )
    spec = parse_execute(data, headers)
    spec.endpoint = endpoint
    prep = await engine.prepare(principal, spec, request_id)
    resp = await engine.complete(prep)
    budget = None
    if spec.budget is not None and (spec.budget.budget_id or (spec.budget.thread_id and prep.tracker)):
        budget = await engine.budget_remaining(prep)
        if budget is not None:
            budget = {"id": spec.budget.budget_id, "thread_id": spec.budget.thread_id, **budget}
    return success_payload(resp, request_id, budget)


async def handle_execute(engine: Engine, req: Request) -> Response:
    try:
        principal = engine.auth.authenticate(req.headers)
        data = await req.json(engine.config.server.max_body_bytes)
        payload = await req.unless_gone(run_execute(engine, principal, data, req.headers, req.request_id))
    except ClientGone:
        raise
    except Exception as exc:
        err = from_exception(exc, engine.redact)
        return Response(err.status, orjson.dumps(error_payload(err)), headers=err.headers)
    return Response(200, orjson.dumps(payload))
