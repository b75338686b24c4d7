"""The gateway as a raw ASGI application, and ``serve()`` (uvicorn with uvloop + httptools).

::

    app = create_app("llm-connect.yaml")       # or create_app(None): the embedded default
    serve("llm-connect.yaml", port=9999, workers=2)

Routing is one dict look-up (a path with a ``{parameter}`` as its last segment, such as
``/v1/models/{model}``, is matched by its prefix after that); every error is a JSON body in the shape the
route's protocol uses (OpenAI's unless the handler carries its own ``render_error``; never a traceback);
every response carries ``x-request-id``. With ``workers > 1`` the workers share budgets and rate limits through Redis;
on Linux each worker listens on its own socket on the port (``SO_REUSEPORT``, see :mod:`.workers`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

import orjson

from ..config import GatewayConfig, load_config
from . import admin, admin_keys, anthropic, complete, embeddings, execute, openai, responses, ui
from .asgi import ClientGone, Receive, Request, Response, Scope, Send
from .engine import Engine
from .errors import ApiError, RedactingFilter, from_exception, log

__all__ = ["ROUTES", "Gateway", "check_config", "create_app", "handle_docs", "handle_openapi", "serve"]

Handler = Callable[[Engine, Request], Awaitable[Response | None]]


def _docs_served(engine: Engine) -> None:
    if not engine.config.server.docs:
        raise ApiError(404, "the API documentation is off (server.docs)", "invalid_request_error", "not_found")


async def handle_openapi(engine: Engine, req: Request) -> Response:
    """The OpenAPI document of :data:`ROUTES`, generated on the first request (in a worker thread: it
    imports pydantic) and kept by the engine."""
    _docs_served(engine)
    if engine.openapi_json is None:
        from .openapi import spec

        doc = await asyncio.to_thread(spec, engine.config, ROUTES)
        engine.openapi_json = orjson.dumps(doc)
    return Response(200, engine.openapi_json)


async def handle_docs(engine: Engine, req: Request) -> Response:
    _docs_served(engine)
    from .openapi import DOCS_HTML

    return Response(200, DOCS_HTML, b"text/html; charset=utf-8")


#: (method, path) -> handler; every entry is documented in :func:`llm_connect.server.openapi.operations`
ROUTES: Mapping[tuple[str, str], Handler] = MappingProxyType(
    {
        ("POST", "/v1/chat/completions"): openai.handle_chat,
        ("POST", "/chat/completions"): openai.handle_chat,
        ("GET", "/v1/models"): openai.handle_models,
        ("GET", "/v1/models/{model}"): openai.handle_model,
        ("POST", "/v1/embeddings"): embeddings.handle_embeddings,
        ("POST", "/v1/responses"): responses.handle_create,
        ("GET", "/v1/responses/{response_id}"): responses.handle_retrieve,
        ("DELETE", "/v1/responses/{response_id}"): responses.handle_delete,
        ("POST", "/execute"): execute.handle_execute,
        ("POST", "/complete"): complete.handle_complete,
        ("POST", "/count_tokens"): complete.handle_count_tokens,
        ("POST", "/v1/messages"): anthropic.handle_messages,
        ("POST", "/v1/messages/count_tokens"): anthropic.handle_count_tokens,
        ("GET", "/health"): admin.handle_health,
        ("GET", "/healthz"): admin.handle_health,
        ("GET", "/ready"): admin.handle_ready,
        ("GET", "/readyz"): admin.handle_ready,
        ("GET", "/metrics"): admin.handle_metrics,
        ("GET", "/v1/usage"): admin.handle_usage,
        ("GET", "/openapi.json"): handle_openapi,
        ("GET", "/docs"): handle_docs,
        **admin_keys.routes(),
    }
)
#: what the gateway serves: the API above and the dashboard's HTML pages (:mod:`llm_connect.server.ui`)
_SERVED: Mapping[tuple[str, str], Handler] = MappingProxyType({**ROUTES, **ui.ROUTES})
_PATHS = frozenset(path for _, path in _SERVED)
#: the templated routes, longest fixed part first:
#: (method, prefix before "{", suffix after "}", parameter name, route, handler)
_TEMPLATES = tuple(
    sorted(
        (
            (
                method,
                path[: path.index("{")],
                path[path.index("}") + 1 :],
                path[path.index("{") + 1 : path.index("}")],
                path,
                handler,
            )
            for (method, path), handler in _SERVED.items()
            if "{" in path
        ),
        key=lambda t: (-len(t[2]), -len(t[1])),
    )
)


def _match(req: Request) -> tuple[str, Handler | None]:
    """(route, handler) of a request: the exact path, else a templated route whose prefix (and suffix) it
    extends; the middle, percent-decoded, is the parameter (a model id may hold "/"; a parameter followed by a
    suffix may not). A path no route has: ("other", None)."""
    handler = _SERVED.get((req.method, req.path))
    if handler is not None:
        return req.path, handler
    known = req.path in _PATHS
    for method, prefix, suffix, name, route, templated in _TEMPLATES:
        rest = req.path[len(prefix) :]
        if suffix:
            if not rest.endswith(suffix):
                continue
            rest = rest[: -len(suffix)]
            if "/" in rest:
                continue
        if rest and req.path.startswith(prefix):
            if method == req.method:
                from urllib.parse import unquote

                req.params = {name: unquote(rest)}
                return route, templated
            known = True
    return (req.path if known else "other"), None


_QUIET = frozenset({"/health", "/healthz", "/ready", "/readyz", "/metrics"})


class Gateway:
    """The ASGI application (see the module docstring)."""

    def __init__(self, config: GatewayConfig | None = None, *, engine: Engine | None = None) -> None:
        self.config = config if config is not None else load_config(None)
        self.engine = engine if engine is not None else Engine(self.config)
        self._announced = False

    # -- ASGI ---------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websockets are not served
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": self.engine.redact(str(exc))})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                try:
                    await self.engine.aclose()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        self._announce()
        await self.engine.start()
        self.engine.warm_up()

    def _announce(self) -> None:
        if self._announced:
            return
        self._announced = True
        ours = logging.getLogger("llm_connect")
        if not ours.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)-9s %(message)s"))
            ours.addHandler(handler)
            ours.setLevel(self.config.server.log_level.upper() if self.config.server.log_level != "trace" else "DEBUG")
            ours.propagate = False
        filt = RedactingFilter(self.engine.redact)
        for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "llm_connect"):
            for h in logging.getLogger(name).handlers:
                if not any(isinstance(f, RedactingFilter) for f in h.filters):
                    h.addFilter(filt)
        cfg = self.config
        if not cfg.auth:
            where = cfg.server.host
            loud = "" if where in ("127.0.0.1", "::1", "localhost") else " — and the gateway is NOT bound to loopback"
            log.warning(
                "auth is OFF: every request is accepted without an API key (config %s)%s; "
                "configure api_keys to turn it on",
                cfg.source,
                loud,
            )
        else:
            log.info(
                "auth is on: %d API key(s), admin key %s", len(cfg.api_keys), "set" if cfg.admin_key_hash else "not set"
            )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        req = Request(scope, receive, send, body_timeout=self.engine.request_timeout)
        route, handler = _match(req)
        metrics = self.engine.metrics
        if metrics is not None:
            metrics.request_started()
        served = None if self.engine.tracing is None else self.engine.tracing.server(req, route if handler else None)
        try:
            if handler is None:
                if route != "other":
                    raise ApiError(
                        405,
                        f"method {req.method} is not allowed on {req.path}",
                        "invalid_request_error",
                        "method_not_allowed",
                    )
                raise ApiError(404, f"no route {req.method} {req.path}", "invalid_request_error", "not_found")
            resp = await handler(self.engine, req)
            if resp is not None:
                await req.respond(resp)
        except ApiError as err:
            await self._error(req, err, handler)
        except ClientGone:
            req.status = 499
        except Exception as exc:
            await self._error(req, from_exception(exc, self.engine.redact), handler)
        finally:
            if served is not None:
                served.end(req.status or 499)
            if metrics is not None:
                metrics.request_ended()
                metrics.observe_request(route, req.status or 499, time.perf_counter() - t0)
            elif self.engine.metrics is not None:  # started during this request
                self.engine.metrics.observe_request(route, req.status or 499, time.perf_counter() - t0)
            if self.config.server.access_log and req.path not in _QUIET:
                log.info(
                    "%s %s %d %.1f ms %s",
                    req.method,
                    req.path,
                    req.status,
                    (time.perf_counter() - t0) * 1000,
                    req.request_id,
                )

    async def _error(self, req: Request, err: ApiError, handler: Handler | None) -> None:
        if req.started:  # a stream already answered: nothing more can be said over HTTP
            return
        render = getattr(handler, "render_error", None)  # a protocol's own error shape (Anthropic's, ...)
        if render is not None:
            await req.respond(render(err))
        else:
            await req.respond(Response(err.status, orjson.dumps(err.body()), headers=err.headers))


def create_app(config: GatewayConfig | str | os.PathLike[str] | None = None) -> Gateway:
    """The ASGI app for a config object, a YAML path, or None (``$LLM_CONNECT_CONFIG`` / embedded default)."""
    if not isinstance(config, GatewayConfig):
        config = load_config(config)
    return Gateway(config)


def _factory() -> Gateway:
    """uvicorn's app factory for worker processes (the config path travels in LLM_CONNECT_CONFIG)."""
    return create_app(os.environ.get("LLM_CONNECT_CONFIG") or None)


def _check_workers(cfg: GatewayConfig, workers: int) -> None:
    if workers <= 1 or cfg.redis is not None:
        return
    shared = (
        any(k.budget or k.rpm or k.tpm for k in cfg.api_keys)
        or any(t.budget or t.rpm or t.tpm for t in cfg.tenants.values())
        or cfg.budgets.max_tokens_per_thread is not None
    )
    if shared:
        from ..config import ConfigError

        raise ConfigError(
            "server.workers",
            f"{workers} workers need redis.url so that budgets and rate limits "
            "are shared (without it each worker would enforce its own copy)",
            source=cfg.source,
        )


def check_config(config: GatewayConfig | str | os.PathLike[str] | None, *, workers: int | None = None) -> GatewayConfig:
    """Everything ``serve`` checks before it binds a port, without binding one or touching the network: the
    file against its schema, then routers, policies, aliases and the agents section built for real.
    Raises :class:`~llm_connect.errors.LLMConfigurationError` (a ConfigError names the key)."""
    cfg = config if isinstance(config, GatewayConfig) else load_config(config)
    _check_workers(cfg, workers or cfg.server.workers)
    Engine(cfg, metrics=False, ledger=False, keys=False).build()  # validates router and policies
    if cfg.agents:
        from ..agents.settings import AgentSettings

        AgentSettings.from_config(cfg, environ={})
    return cfg


def serve(
    config_path: str | os.PathLike[str] | None = None,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    *,
    log_level: str | None = None,
) -> None:
    """Run the gateway with uvicorn (uvloop + httptools when installed). Blocks until stopped. With more than one
    worker: on Linux one listening socket per worker (:func:`.workers.run_workers`), elsewhere uvicorn's
    workers on one shared socket."""
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise SystemExit("the gateway needs the server extra: pip install 'llm-connect[server]'") from exc
    from .._net import check_listen, startup_errors

    with startup_errors():  # a bad config or a taken port: one line on stderr, exit code 2
        cfg = load_config(config_path)
        _check_workers(cfg, workers or cfg.server.workers)
        host = host or cfg.server.host
        port = cfg.server.port if port is None else port
        if (workers or cfg.server.workers) > 1:
            check_config(cfg, workers=workers)
            gateway = None
        else:
            gateway = Gateway(cfg)
            gateway.engine.build()
        check_listen(host, port)  # uvicorn would log a bind failure amid its start-up lines and exit 3
    workers = workers or cfg.server.workers
    level = log_level or cfg.server.log_level
    opts: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": level,
        "access_log": False,
        "server_header": False,
        "date_header": False,
        "timeout_graceful_shutdown": 10,
        "lifespan": "on",
        "proxy_headers": False,
        "backlog": 2048,
    }
    opts.update(_fast_io())
    if workers > 1:
        if config_path is not None:
            os.environ["LLM_CONNECT_CONFIG"] = os.fspath(config_path)
        tmp = None
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            import tempfile

            tmp = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="llm-connect-metrics-")
        try:
            from .workers import reuse_port_supported, run_workers

            if reuse_port_supported():  # a listening socket per worker: the kernel spreads the connections
                code = run_workers(workers, opts)
                if code:
                    raise SystemExit(code)
            else:
                uvicorn.run("llm_connect.server.app:_factory", factory=True, workers=workers, **opts)
        finally:
            if tmp is not None:
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
    else:
        uvicorn.run(gateway, **opts)


def _fast_io() -> dict[str, str]:
    out = {}
    try:
        import uvloop  # noqa: F401

        out["loop"] = "uvloop"
    except ImportError:  # pragma: no cover
        pass
    try:
        import httptools  # noqa: F401

        out["http"] = "httptools"
    except ImportError:  # pragma: no cover
        pass
    return out
