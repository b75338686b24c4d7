"""The mock server's ``/__mock__`` admin routes: queue scripts, change configuration, read or clear the request
log over HTTP (what :class:`~llm_connect.testing.mock_server.MockServer` offers from Python)::

    POST   /__mock__/script     queue scripts: one object, a list, or {"scripts": [...]} (MockReply fields)
    POST   /__mock__/reset      drop every queued script and the request log
    POST   /__mock__/config     require_key, model_latency {model: seconds}, chunk_delay, models
    GET    /__mock__/requests   the request log, oldest first (auth header values redacted)
    DELETE /__mock__/requests   clear the request log
    GET    /__mock__/scripts    the scripts still queued, with how many requests each has left
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from aiohttp import web

from ._script import MockReply, ScriptState

__all__ = ["add_admin_routes", "json_response"]


class _Server(Protocol):
    _state: ScriptState

    @property
    def requests(self) -> list[dict[str, Any]]: ...

    @property
    def pending(self) -> list[dict[str, Any]]: ...

    def reset(self) -> None: ...

    def clear_requests(self) -> None: ...

    def set_model_latency(self, model: str, seconds: float | None) -> None: ...


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), content_type="application/json")


def add_admin_routes(router: web.UrlDispatcher, server: _Server) -> None:
    """Register the ``/__mock__`` routes of ``server`` on ``router``."""

    async def script(request: web.Request) -> web.Response:
        try:
            payload = orjson.loads(await request.read())
            if isinstance(payload, dict):
                payload = payload.get("scripts", [payload])
            if not isinstance(payload, list):
                raise ValueError("expected a JSON list of scripts")
            replies = [MockReply.from_dict(p) for p in payload]
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, status=400)
        server._state.add(replies)
        return json_response({"queued": len(replies), "pending": len(server._state.scripts)})

    async def reset(request: web.Request) -> web.Response:
        server.reset()
        return json_response({"ok": True})

    async def config(request: web.Request) -> web.Response:
        try:
            cfg = orjson.loads(await request.read() or b"{}")
            if not isinstance(cfg, dict):
                raise ValueError("expected a JSON object")
        except ValueError as exc:
            return json_response({"error": str(exc)}, status=400)
        st = server._state
        if "require_key" in cfg:
            st.require_key = cfg["require_key"]
        for model, seconds in (cfg.get("model_latency") or {}).items():
            server.set_model_latency(model, seconds)
        if "chunk_delay" in cfg:
            st.chunk_delay = float(cfg["chunk_delay"] or 0.0)
        if "models" in cfg:
            st.models = list(cfg["models"])
        return json_response(
            {
                "require_key": st.require_key is not None,
                "model_latency": st.model_latency,
                "chunk_delay": st.chunk_delay,
                "models": st.models,
            }
        )

    async def requests(request: web.Request) -> web.Response:
        return json_response(server.requests)

    async def clear_requests(request: web.Request) -> web.Response:
        server.clear_requests()
        return json_response({"ok": True})

    async def scripts(request: web.Request) -> web.Response:
        return json_response(server.pending)

    router.add_post("/__mock__/script", script)
    router.add_post("/__mock__/reset", reset)
    router.add_post("/__mock__/config", config)
    router.add_get("/__mock__/requests", requests)
    router.add_delete("/__mock__/requests", clear_requests)
    router.add_get("/__mock__/scripts", scripts)
