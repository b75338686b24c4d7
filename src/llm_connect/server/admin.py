"""Operational routes: ``/health``, ``/ready``, ``/metrics``, ``/v1/usage`` (``/openapi.json`` and ``/docs``
are in :mod:`llm_connect.server.app`, next to the route table they describe)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson

from .asgi import Request, Response, json_response
from .engine import Engine
from .errors import ApiError

__all__ = ["handle_health", "handle_metrics", "handle_ready", "handle_usage"]

from ..usage._queries import GROUP_BYS as _GROUP_BYS


async def handle_health(engine: Engine, req: Request) -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


async def _check_redis(url: str) -> str | None:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        await client.ping()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}"
    finally:
        await client.aclose()


async def handle_ready(engine: Engine, req: Request) -> Response:
    """Readiness: the config is loaded and, when configured, Redis, the ledger and the key store answer."""
    checks: dict[str, str] = {}
    try:
        await engine.start()
    except Exception as exc:
        return json_response({"status": "not_ready", "checks": {"engine": type(exc).__name__}}, 503)
    cfg = engine.config
    if cfg.redis is not None:
        err = await _check_redis(cfg.redis.url)
        checks["redis"] = err or "ok"
    if engine.ledger is not None:
        try:
            await asyncio.wait_for(engine.ledger.aquery(limit=1), 2.0)
            checks["ledger"] = "ok"
        except Exception as exc:
            checks["ledger"] = type(exc).__name__
    if engine.keys is not None:
        try:
            await asyncio.wait_for(asyncio.to_thread(engine.keys.version), 2.0)
            checks["keys"] = "ok"
        except Exception as exc:
            checks["keys"] = type(exc).__name__
    ok = all(v == "ok" for v in checks.values())
    return json_response({"status": "ready" if ok else "not_ready", "checks": checks}, 200 if ok else 503)


def _require_admin(engine: Engine, req: Request) -> None:
    principal = engine.auth.authenticate(req.headers)
    if not principal.admin and engine.auth.enabled:
        raise ApiError(403, "this endpoint needs the admin key", "permission_error", "admin_required")


async def handle_metrics(engine: Engine, req: Request) -> Response:
    if engine.auth.enabled and not engine.config.server.public_metrics:
        _require_admin(engine, req)
    await engine.start()
    if engine.metrics is None:
        raise ApiError(404, "metrics are disabled", "invalid_request_error", "not_found")
    body, ctype = engine.metrics.render()
    return Response(200, body, ctype)


def _when(value: str | None, param: str) -> datetime | None:
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise ApiError(
            422, f"{param} must be an ISO-8601 date or time", "invalid_request_error", "invalid_field", param
        ) from None


def _row(d: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe: cost as a decimal string, or null when the group's price is unknown."""
    return {k: (None if v is None else str(v)) if k == "cost_usd" else v for k, v in d.items()}


async def handle_usage(engine: Engine, req: Request) -> Response:
    """Usage totals from the ledger. A tenant key sees only its own tenant; the admin key sees all
    (``?tenant=`` narrows). Query: ``group_by`` (tenant, agent, model, provider, day, thread, task_type, endpoint),
    ``since``, ``until`` (ISO-8601). Each row counts its ``unpriced`` and ``estimated`` calls; ``cost_usd`` is
    null for a group whose tokens all went at an unknown price."""
    principal = engine.auth.authenticate(req.headers)
    await engine.start()
    q = req.query_params()
    group_by = q.get("group_by", "model")
    if group_by not in _GROUP_BYS:
        raise ApiError(
            422,
            f"group_by must be one of {', '.join(_GROUP_BYS)}",
            "invalid_request_error",
            "invalid_field",
            "group_by",
        )
    if principal.admin or not engine.auth.enabled:
        tenant = q.get("tenant") or None
    else:
        tenant = principal.tenant
        if q.get("tenant") not in (None, "", tenant):
            raise ApiError(
                403, "a tenant key can only read its own usage", "permission_error", "tenant_mismatch", "tenant"
            )
    since, until = _when(q.get("since"), "since"), _when(q.get("until"), "until")
    if engine.ledger is not None:
        rows = await engine.ledger.atotals(group_by, tenant, since=since, until=until)
        data = [_row(r) for r in rows]
        source = "ledger"
    else:
        assert engine.usage is not None
        stats = engine.usage.stats()
        if tenant is not None:
            t = stats["by_tenant"].get(tenant)
            data = [{"key": tenant, **t}] if t else []
        else:
            tables = {"tenant": "by_tenant", "agent": "by_agent", "model": "by_model"}
            if group_by not in tables:  # without a ledger only the live aggregates exist
                raise ApiError(
                    422,
                    f"group_by={group_by!r} needs the ledger (it is off); without it: {', '.join(tables)}",
                    "invalid_request_error",
                    "invalid_field",
                    "group_by",
                )
            data = [{"key": k, **v} for k, v in sorted(stats[tables[group_by]].items())]
        source = "memory"
    return Response(
        200, orjson.dumps({"object": "usage", "group_by": group_by, "tenant": tenant, "source": source, "data": data})
    )
