"""The dashboard's routes: login / logout, overview, budgets, calls, a call's detail, static assets.

Every page reads through the ledger's query layer (:class:`~llm_connect.usage.CallFilter`,
``totals(bucket=...)``, ``calls``, ``call``) and the budget planner's live numbers; a viewer narrowed to a
tenant never sees another tenant's rows (a call of another tenant is "not found").
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from ...usage import NONE_KEY, CallFilter
from ...usage._queries import COLUMNS
from ..asgi import Request, Response
from ..auth import key_digest
from ..budgets import configured_budgets
from ..errors import ApiError
from .charts import stacked_bars
from .dashboard import (
    HTML,
    Dashboard,
    Viewer,
    check_csrf,
    error_page,
    html_headers,
    may_log_in,
    read_form,
    redirect,
    secure,
    viewer,
)
from .sessions import LOGIN_COOKIE, SESSION_COOKIE, cookie_header, new_token, read_cookie

if TYPE_CHECKING:
    from ...usage import UsageEvent
    from ..engine import Engine

__all__ = [
    "common_context",
    "handle_budgets",
    "handle_call",
    "handle_calls",
    "handle_index",
    "handle_login",
    "handle_login_form",
    "handle_logout",
    "handle_overview",
    "handle_static",
    "page_tenant",
    "routed",
    "tenant_choices",
]

log = logging.getLogger("llm_connect.server")

Page = Callable[["Engine", Request, Dashboard, Viewer], Awaitable[Response]]
Route = Callable[["Engine", Request], Awaitable[Response]]

#: overview groupings: query value -> (ledger group_by, label)
GROUPS = {
    "model": ("model", "model"),
    "tenant": ("tenant", "tenant"),
    "team": ("team", "team"),
    "key": ("key", "API key"),
}
#: overview ranges: query value -> (how many buckets, bucket)
RANGES = {"24h": (24, "hour"), "7d": (7, "day"), "30d": (30, "day")}
STATUSES = ("", "ok", "failed")
ESTIMATED = ("", "yes", "no")
PAGE_SIZE = 50
_MAX_PAGE = 10_000
_MAX_TEXT = 200


def routed(page: Page) -> Route:
    """A page behind the gate: the viewer resolved (or the browser sent to log in), errors as HTML."""

    async def route(engine: Engine, req: Request) -> Response:
        v = await viewer(engine, req)
        if isinstance(v, Response):
            return v
        resp = await page(engine, req, Dashboard.of(engine), v)
        if v.cookie is not None:
            resp.headers.append(v.cookie)
        return resp

    route.__name__ = route.__qualname__ = page.__name__
    route.__doc__ = page.__doc__
    route.render_error = error_page  # type: ignore[attr-defined]
    return route


def _choice(q: dict[str, str], name: str, allowed: Any, default: str) -> str:
    value = q.get(name, default) or default
    if value not in allowed:
        raise ApiError(
            422,
            f"{name} must be one of {', '.join(repr(a) for a in allowed)}",
            "invalid_request_error",
            "invalid_field",
            name,
        )
    return value


def _text(q: dict[str, str], name: str) -> str | None:
    value = (q.get(name) or "").strip()
    if len(value) > _MAX_TEXT or not value.isprintable():
        raise ApiError(
            422,
            f"{name} must be printable text of at most {_MAX_TEXT} characters",
            "invalid_request_error",
            "invalid_field",
            name,
        )
    return value or None


def page_tenant(q: dict[str, str], v: Viewer) -> str | None:
    """The tenant a page shows: the viewer's own, or for an admin the one chosen (None: every tenant)."""
    asked = _text(q, "tenant")
    if v.tenant is not None:
        if asked not in (None, v.tenant):
            raise ApiError(
                403, "this login can only see its own tenant", "permission_error", "tenant_mismatch", "tenant"
            )
        return v.tenant
    return asked


def common_context(req: Request, v: Viewer, nav: str, **extra: Any) -> dict[str, Any]:
    return {"viewer": v, "nav": nav, "csrf": v.session.csrf, "path": req.path, **extra}


def key_names(engine: Engine) -> Callable[[str | None], str]:
    """The ledger names an API-made key by its id (a config key by its name): this shows the key's name (the
    ledger's value for a key the gateway no longer knows), "—" for none."""
    names = {k.id: k.name for k in engine.auth.snapshot.keys}

    def name(key_id: str | None) -> str:
        return "—" if not key_id or key_id == NONE_KEY else names.get(key_id, key_id)

    return name


def short_error(error_type: str | None) -> str:
    """An error class name without its "LLM" prefix and "Error" suffix (the whole name is the tooltip)."""
    if not error_type:
        return "failed"
    text = error_type.removeprefix("LLM")
    return text.removesuffix("Error") or text


async def tenant_choices(engine: Engine, v: Viewer) -> list[str]:
    if v.tenant is not None:
        return [v.tenant]
    names = {t.id for t in engine.auth.snapshot.tenants}  # the config's and the key store's
    if engine.ledger is not None:
        since = datetime.now(UTC) - timedelta(days=30)
        names.update(r["key"] for r in await engine.ledger.atotals("tenant", since=since))
    return sorted(names)


# -- login -------------------------------------------------------------------------------------------------
async def handle_login_form(engine: Engine, req: Request) -> Response:
    """The login form (with auth off there is nothing to log in to: on to the overview)."""
    dash = Dashboard.of(engine)
    if not engine.auth.enabled:
        return redirect("/ui/overview")
    return _login_page(dash, req, _next(req.query_params().get("next")), None, 200)


def _next(target: str | None) -> str:
    """Where to go after logging in: a dashboard path only (never another site)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/overview"


def _login_page(dash: Dashboard, req: Request, nxt: str, error: str | None, status: int) -> Response:
    token = new_token()
    cookie = cookie_header(LOGIN_COOKIE, token, max_age=1800, secure=secure(req))
    body = dash.render("login.html", {"csrf": token, "next": nxt, "error": error}).encode()
    return Response(status, body, HTML, html_headers(cookie))


async def handle_login(engine: Engine, req: Request) -> Response:
    """POST /ui/login: the admin key (or an admin API key) opens a session."""
    dash = Dashboard.of(engine)
    await engine.start()
    form = await read_form(req)
    check_csrf(req, form, read_cookie(req.headers, LOGIN_COOKIE))
    nxt = _next(form.get("next"))
    if not engine.auth.enabled:
        return redirect(nxt)
    key = form.get("key", "").strip()
    principal = engine.auth.by_digest(key_digest(key)) if key else None
    if principal is None or not may_log_in(principal):
        client = req.scope.get("client") or ("?",)
        log.warning("dashboard login refused from %s", client[0])
        msg = "That key does not open the dashboard: use the admin key." if principal else "Wrong key."
        return _login_page(dash, req, nxt, msg, 401 if principal is None else 403)
    old = read_cookie(req.headers, SESSION_COOKIE)
    if old:
        await dash.sessions.delete(old)
    sid, _session = await dash.sessions.create(key_digest(key), dash.session_ttl)
    return redirect(
        nxt,
        cookie_header(SESSION_COOKIE, sid, max_age=int(dash.session_ttl), secure=secure(req)),
        cookie_header(LOGIN_COOKIE, "", max_age=0, secure=secure(req)),
    )


async def _logout(engine: Engine, req: Request, dash: Dashboard, v: Viewer) -> Response:
    """POST /ui/logout: the session ends here and in the store."""
    check_csrf(req, await read_form(req), v.session.csrf)
    await dash.sessions.delete(v.sid)
    return redirect("/ui/login", cookie_header(SESSION_COOKIE, "", max_age=0, secure=secure(req)))


async def handle_index(engine: Engine, req: Request) -> Response:
    Dashboard.of(engine)
    return redirect("/ui/overview")


handle_index.render_error = error_page  # type: ignore[attr-defined]
handle_login_form.render_error = error_page  # type: ignore[attr-defined]
handle_login.render_error = error_page  # type: ignore[attr-defined]
handle_logout = routed(_logout)


# -- overview ----------------------------------------------------------------------------------------------
def _buckets(range_key: str, now: datetime) -> tuple[datetime, str, list[str]]:
    """(since, bucket, the bucket labels in order) of a range ending now."""
    n, bucket = RANGES[range_key]
    if bucket == "hour":
        end = now.replace(minute=0, second=0, microsecond=0)
        starts = [end - timedelta(hours=i) for i in range(n - 1, -1, -1)]
        return starts[0], bucket, [s.strftime("%Y-%m-%dT%H") for s in starts]
    today = now.date()
    days = [today - timedelta(days=i) for i in range(n - 1, -1, -1)]
    return datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC), bucket, [d.isoformat() for d in days]


def _bucket_label(b: str) -> str:
    return f"{b[11:13]}:00" if "T" in b else b[5:]


def _sum_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: sum(int(r.get(k) or 0) for r in rows)
        for k in ("requests", "failures", "total_tokens", "input_tokens", "output_tokens", "unpriced", "estimated")
    }
    known = [Decimal(r["cost_usd"]) for r in rows if r.get("cost_usd") is not None]
    out["cost_usd"] = sum(known, start=Decimal(0)) if known or not out["unpriced"] else None
    return out


def _fmt_tokens_axis(v: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def _fmt_usd_axis(v: float) -> str:
    """Dollars with three significant digits, never in exponent form ($0.000258, $0.0125, $1.50, $1,204)."""
    if v <= 0:
        return "$0"
    if v >= 100:
        return f"${v:,.0f}"
    places = max(2, 2 - math.floor(math.log10(v)))
    return f"${v:.{places}f}".rstrip("0").rstrip(".") if places > 2 else f"${v:.2f}"


async def _overview(engine: Engine, req: Request, dash: Dashboard, v: Viewer) -> Response:
    """Spend and tokens over time, stacked by model, tenant, team or API key."""
    q = req.query_params()
    group = _choice(q, "group", GROUPS, "model")
    range_key = _choice(q, "range", RANGES, "24h")
    tenant = page_tenant(q, v)
    ctx = common_context(req, v, "overview", group=group, groups=GROUPS, range=range_key, ranges=RANGES, tenant=tenant)
    ctx["tenants"] = await tenant_choices(engine, v)
    if engine.ledger is None:
        return dash.page(req, "overview.html", {**ctx, "ledger": False})
    since, bucket, labels = _buckets(range_key, datetime.now(UTC))
    match = CallFilter(tenant_id=tenant, since=since)
    by = GROUPS[group][0]
    series, rows = await asyncio.gather(
        engine.ledger.atotals(by, bucket=bucket, match=match), engine.ledger.atotals(by, match=match)
    )
    if by == "key":  # the ledger has key ids: show names (with the id where two keys share one)
        name = key_names(engine)
        ids = {r["key"] for r in rows}
        taken = [name(i) for i in ids]
        label = {i: name(i) if taken.count(name(i)) == 1 else f"{name(i)} ({i})" for i in ids}
        for r in (*rows, *series):
            r["key"] = label.get(r["key"], r["key"])
    spend: dict[str, dict[str, float]] = {}
    tokens: dict[str, dict[str, float]] = {}
    for r in series:
        spend.setdefault(r["bucket"], {})[r["key"]] = float(r["cost_usd"] or 0)
        tokens.setdefault(r["bucket"], {})[r["key"]] = float(r["total_tokens"])
    rows.sort(key=lambda r: (-(r["cost_usd"] or 0), -r["total_tokens"], r["key"]))
    order = [r["key"] for r in rows]  # one colour per group in both charts, the table's order
    ctx.update(
        ledger=True,
        since=since,
        summary=_sum_rows(rows),
        rows=rows,
        group_label=GROUPS[group][1],
        spend=stacked_bars(labels, spend, fmt=_fmt_usd_axis, bucket_label=_bucket_label, order=order),
        tokens=stacked_bars(labels, tokens, fmt=_fmt_tokens_axis, bucket_label=_bucket_label, order=order),
    )
    return dash.page(req, "overview.html", ctx)


handle_overview = routed(_overview)


# -- budgets -----------------------------------------------------------------------------------------------
def _unit(total: Any, spent: Any, reserved: Any, remaining: Any, thresholds: tuple[float, ...]) -> dict[str, Any]:
    """One unit (tokens or USD) of a budget: the figures and the share used, for the bar."""
    used = float(spent) / float(total) if total else 0.0
    held = float(reserved) / float(total) if total else 0.0
    level = max((t for t in thresholds if used >= t), default=None)
    return {
        "total": total,
        "spent": spent,
        "reserved": reserved,
        "remaining": remaining,
        "pct": min(100.0, used * 100),
        "held_pct": min(100.0 - min(100.0, used * 100), held * 100),
        "level": level,
        "exhausted": remaining is not None and remaining <= 0,
    }


async def _budget_rows(engine: Engine, tenant: str | None) -> list[dict[str, Any]]:
    from ...budget.tracker import period_window

    assert engine.budgets is not None
    thresholds = tuple(engine.config.budgets.thresholds)
    out = []
    for b in configured_budgets(engine.auth.snapshot):
        if tenant is not None and b.tenant != tenant:
            continue
        window = period_window(b.limit.period, datetime.now(UTC).timestamp())[0]
        row: dict[str, Any] = {"budget": b, "window": window, "units": [], "error": None}
        try:
            st = await engine.budgets.astate(b.budget_id, b.limit)
        except Exception as exc:  # the store is unreachable: say so on the row, keep the page
            row["error"] = type(exc).__name__
            out.append(row)
            continue
        if b.limit.tokens is not None:
            row["units"].append(("tokens", _unit(st.total, st.spent, st.reserved, st.remaining, thresholds)))
        if b.limit.usd is not None:
            row["units"].append(
                ("USD", _unit(st.total_usd, st.spent_usd, st.reserved_usd, st.remaining_usd, thresholds))
            )
        out.append(row)
    return out


async def _budgets(engine: Engine, req: Request, dash: Dashboard, v: Viewer) -> Response:
    """Every configured budget: limit, spent, reserved, remaining and the warning levels reached, live."""
    rows = await _budget_rows(engine, v.tenant)
    ctx = common_context(req, v, "budgets", rows=rows, thresholds=tuple(engine.config.budgets.thresholds))
    return dash.page(req, "budgets.html", ctx)


handle_budgets = routed(_budgets)


# -- calls -------------------------------------------------------------------------------------------------
def _call_filter(q: dict[str, str], v: Viewer) -> tuple[CallFilter, dict[str, str]]:
    status = _choice(q, "status", STATUSES, "")
    estimated = _choice(q, "estimated", ESTIMATED, "")
    model, request_id = _text(q, "model"), _text(q, "request")
    tenant = page_tenant(q, v)
    match = CallFilter(
        tenant_id=tenant,
        model=model,
        success=None if not status else status == "ok",
        estimated=None if not estimated else estimated == "yes",
        request_id=request_id,
    )
    shown = {
        "model": model or "",
        "tenant": tenant or "",
        "status": status,
        "estimated": estimated,
        "request": request_id or "",
    }
    return match, shown


def _page_number(q: dict[str, str]) -> int:
    raw = q.get("page") or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_PAGE:
        raise ApiError(
            422, f"page must be a number from 1 to {_MAX_PAGE}", "invalid_request_error", "invalid_field", "page"
        )
    return int(raw)


async def _calls(engine: Engine, req: Request, dash: Dashboard, v: Viewer) -> Response:
    """The ledger's recent rows, newest first, filtered by model, tenant, status, estimated, request id."""
    q = req.query_params()
    match, shown = _call_filter(q, v)
    page = _page_number(q)
    ctx = common_context(req, v, "calls", filters=shown, page=page, statuses=STATUSES, estimated_choices=ESTIMATED)
    ctx["tenants"] = await tenant_choices(engine, v)
    if engine.ledger is None:
        return dash.page(req, "calls.html", {**ctx, "ledger": False, "models": []})
    since = datetime.now(UTC) - timedelta(days=30)
    rows, models = await asyncio.gather(
        engine.ledger.acalls(match, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE),
        engine.ledger.atotals("model", match=CallFilter(tenant_id=match.tenant_id, since=since)),
    )
    query = {k: val for k, val in shown.items() if val}
    ctx.update(
        ledger=True,
        rows=rows[:PAGE_SIZE],
        models=sorted({r["key"] for r in models} | ({shown["model"]} if shown["model"] else set())),
        newer=("?" + urlencode({**query, "page": page - 1})) if page > 1 else None,
        older=("?" + urlencode({**query, "page": page + 1})) if len(rows) > PAGE_SIZE else None,
        live=page == 1,
        key_name=key_names(engine),
        short_error=short_error,
    )
    return dash.page(req, "calls.html", ctx)


handle_calls = routed(_calls)


def _fields(e: UsageEvent) -> list[tuple[str, Any]]:
    """Every ledger column of one row, in the table's order, as (name, shown value)."""
    out: list[tuple[str, Any]] = []
    for col in COLUMNS:
        if col == "ts":
            out.append(("timestamp", e.timestamp.astimezone(UTC).isoformat(timespec="microseconds")))
        elif col == "metadata":
            continue
        elif col == "cost_usd":
            if e.cost_usd is not None:
                out.append((col, f"${e.cost_usd}"))
            else:
                out.append((col, "unknown (no price)" if e.total_tokens else "— (no tokens)"))
        elif col == "latency_ms":
            out.append((col, f"{e.latency_ms:.3f}"))
        else:
            value = getattr(e, col)
            out.append(
                (col, "—" if value is None else ("yes" if value else "no") if isinstance(value, bool) else value)
            )
    return out


async def _call(engine: Engine, req: Request, dash: Dashboard, v: Viewer) -> Response:
    """One ledger row: every field, the metadata in full."""
    rid = req.params.get("request_id", "")
    event = await engine.ledger.acall(rid) if engine.ledger is not None and len(rid) <= 128 else None
    if event is None or (v.tenant is not None and event.tenant_id != v.tenant):
        raise ApiError(404, "no call with that request id in the ledger", "invalid_request_error", "not_found")
    meta = orjson.dumps(event.metadata, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str).decode()
    gateway_id = event.metadata.get("gateway_request_id")
    ctx = common_context(req, v, "calls", event=event, fields=_fields(event), metadata=meta, gateway_id=gateway_id)
    return dash.page(req, "call.html", ctx)


handle_call = routed(_call)


# -- static ------------------------------------------------------------------------------------------------
async def handle_static(engine: Engine, req: Request) -> Response:
    """The stylesheet, the script and the icon shipped in the package (cached for a day; the pages link
    them with their content's hash, so a new version is fetched at once)."""
    dash = Dashboard.of(engine)
    found = dash.static.get(req.params.get("name", ""))
    if found is None:
        raise ApiError(404, "no such file", "invalid_request_error", "not_found")
    body, ctype = found
    return Response(
        200, body, ctype, [(b"cache-control", b"public, max-age=86400"), (b"x-content-type-options", b"nosniff")]
    )


handle_static.render_error = error_page  # type: ignore[attr-defined]
