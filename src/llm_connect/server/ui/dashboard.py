"""The dashboard's state (templates, static assets, sessions) and the gate every page goes through.

:meth:`Dashboard.of` makes the state on the first ``/ui`` request and keeps it on the engine. :func:`viewer`
answers "who is looking, and at which tenants": a session made by logging in with the admin key (or an admin
API key) when auth is on; with auth off, anyone on loopback — and nobody else.

Templates are Jinja2 with autoescaping on for every template: ledger fields (agent, thread, metadata,
model names...) are the callers' own strings, so nothing reaches a page unescaped. Every response carries a
Content-Security-Policy without inline scripts or styles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from ...usage.report import format_usd
from ..asgi import Request, Response
from ..errors import ApiError
from .sessions import SESSION_COOKIE, MemorySessions, RedisSessions, Session, SessionStore, cookie_header, read_cookie

if TYPE_CHECKING:
    from ..auth import Principal
    from ..engine import Engine

__all__ = [
    "HTML",
    "Dashboard",
    "Viewer",
    "check_csrf",
    "error_page",
    "html_headers",
    "may_log_in",
    "read_form",
    "redirect",
    "secure",
    "viewer",
]

HTML = b"text/html; charset=utf-8"
_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: on every dashboard response
SECURITY_HEADERS = (
    (b"content-security-policy", _CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_NO_STORE = (b"cache-control", b"no-store")
_TYPES = {".css": b"text/css; charset=utf-8", ".js": b"text/javascript; charset=utf-8", ".svg": b"image/svg+xml"}
_FORM_LIMIT = 16 * 1024


def _tokens(n: Any) -> str:
    return f"{int(n or 0):,}"


def _usd(d: Any) -> str:
    return "unknown" if d is None else "$" + format_usd(Decimal(d))


def _when(ts: datetime | None, seconds_only: bool = False) -> str:
    """A UTC time for people (``seconds_only``: without the zone, where the column header says UTC)."""
    if ts is None:
        return "—"
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds_only else "%Y-%m-%d %H:%M:%S UTC")


def _ms(v: Any) -> str:
    return f"{float(v or 0):,.0f} ms"


class Dashboard:
    """Templates, static files and sessions of one gateway (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        try:
            import jinja2
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ApiError(
                501,
                "the dashboard needs Jinja2: pip install 'llm-connect[server]'",
                "api_error",
                "not_installed",
            ) from exc
        cfg = engine.config
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("llm_connect.server.ui", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(tokens=_tokens, usd=_usd, when=_when, ms=_ms)
        from importlib import resources

        self.static: dict[str, tuple[bytes, bytes]] = {}
        for entry in resources.files("llm_connect.server.ui").joinpath("static").iterdir():
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            if entry.is_file() and suffix in _TYPES:
                self.static[entry.name] = (entry.read_bytes(), _TYPES[suffix])
        digest = hashlib.sha256(b"".join(body for _, (body, _t) in sorted(self.static.items()))).hexdigest()
        #: appended to asset URLs, so a new version is fetched at once while assets are cached for long
        self.version = digest[:12]
        self.session_ttl = cfg.server.ui_session_hours * 3600
        self.sessions: SessionStore = (
            RedisSessions(cfg.redis.url, cfg.redis.namespace) if cfg.redis is not None else MemorySessions()
        )

    @classmethod
    def of(cls, engine: Engine) -> Dashboard:
        if not engine.config.server.ui:
            raise ApiError(404, "the dashboard is off (server.ui)", "invalid_request_error", "not_found")
        dash = engine.dashboard
        if dash is None:
            dash = engine.dashboard = cls(engine)
        return dash  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.sessions.aclose()

    # -- rendering ---------------------------------------------------------------------------------------
    def render(self, template: str, context: Mapping[str, Any], *, block: str | None = None) -> str:
        tpl = self.env.get_template(template)
        ctx = {"v": self.version, **context}
        if block is None:
            return tpl.render(ctx)
        return "".join(tpl.blocks[block](tpl.new_context(ctx)))

    def page(
        self,
        req: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        status: int = 200,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> Response:
        """The whole page, or only its ``content`` block when the page's script refreshes it in place."""
        block = "content" if req.headers.get("x-requested-with") == "llmc-refresh" else None
        body = self.render(template, context, block=block).encode()
        return Response(status, body, HTML, [*SECURITY_HEADERS, _NO_STORE, *(headers or [])])


def html_headers(*extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [*SECURITY_HEADERS, _NO_STORE, *extra]


def redirect(location: str, *extra: tuple[bytes, bytes]) -> Response:
    """303 See Other to a path of the dashboard."""
    return Response(303, b"", HTML, html_headers((b"location", location.encode("latin-1")), *extra))


def error_page(err: ApiError) -> Response:
    """An error as a small HTML page (the ``render_error`` of the dashboard's routes)."""
    from html import escape

    title = f"{err.status} · llm-connect"
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        '<link rel="stylesheet" href="/ui/static/style.css"></head><body class="bare"><main class="card narrow">'
        f"<h1>{err.status}</h1><p>{escape(err.message)}</p>"
        '<p><a href="/ui/overview">Back to the dashboard</a></p></main></body></html>'
    )
    return Response(err.status, body.encode(), HTML, html_headers(*err.headers))


async def read_form(req: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (at most 16 KiB) as a dict."""
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise ApiError(415, "send the form as application/x-www-form-urlencoded", "invalid_request_error", "bad_form")
    raw = await req.body(_FORM_LIMIT)
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))


def _loopback(req: Request) -> bool:
    import ipaddress

    client = req.scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(str(client[0]).split("%")[0]).is_loopback
    except ValueError:
        return False


def secure(req: Request) -> bool:
    return req.scope.get("scheme") == "https"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: the principal, the session (its CSRF token) and the tenant the pages are narrowed
    to (None: every tenant)."""

    principal: Principal
    session: Session
    sid: str
    tenant: str | None
    label: str
    #: the Set-Cookie of a session made on this request (auth off: made on the first visit)
    cookie: tuple[bytes, bytes] | None = None


def may_log_in(principal: Principal) -> bool:
    """The admin key, admin API keys and tenant-admin keys (their own tenant only) open the dashboard; plain
    tenant keys do not."""
    return principal.admin or principal.tenant_admin


def login_path(req: Request) -> str:
    target = req.path + (("?" + req.query.decode("latin-1")) if req.query else "")
    return "/ui/login?next=" + quote(target, safe="")


async def viewer(engine: Engine, req: Request) -> Viewer | Response:
    """The viewer of a dashboard request, or the response that sends the browser to log in first."""
    dash = Dashboard.of(engine)
    await engine.start()
    auth = engine.auth
    sid = read_cookie(req.headers, SESSION_COOKIE)
    session = await dash.sessions.get(sid) if sid else None
    if not auth.enabled:
        if not _loopback(req):
            raise ApiError(
                403,
                "auth is off, so the dashboard is open on loopback only; configure admin_key to use it from "
                "another machine",
                "permission_error",
                "loopback_only",
            )
        cookie = None
        if session is None:
            sid, session = await dash.sessions.create("", dash.session_ttl)
            cookie = cookie_header(SESSION_COOKIE, sid, max_age=int(dash.session_ttl), secure=secure(req))
        assert sid is not None
        return Viewer(auth.local(), session, sid, None, "auth off (loopback)", cookie)
    principal = auth.by_digest(session.key_digest) if session is not None and session.key_digest else None
    if session is None or principal is None or not may_log_in(principal):
        if sid and session is not None:
            await dash.sessions.delete(sid)
        if req.headers.get("x-requested-with") == "llmc-refresh":
            return Response(401, b"", HTML, html_headers())
        return redirect(login_path(req))
    assert sid is not None
    tenant = None if principal.admin else principal.tenant
    label = "admin" if principal.admin else f"tenant admin · {principal.tenant}"
    return Viewer(principal, session, sid, tenant, label)


def check_csrf(req: Request, form: Mapping[str, str], expected: str | None) -> None:
    """A POST must carry the session's (or the login form's) token and, when the browser says where it comes
    from, come from this origin."""
    from .sessions import same_token

    origin = req.headers.get("origin")
    host = req.headers.get("host")
    if origin and origin != "null" and host and origin.split("://", 1)[-1] != host:
        raise ApiError(403, "cross-origin form refused", "permission_error", "csrf")
    if not same_token(form.get("csrf"), expected):
        raise ApiError(
            403, "the form has expired or was not sent by this dashboard; reload it", "permission_error", "csrf"
        )
