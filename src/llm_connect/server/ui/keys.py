"""The dashboard's Keys page: every API key with its last use, and the two actions a browser needs —
create a key (its plain value shown once) and revoke one. Both go through the key store and the same
propagation as the admin API (``/v1/admin/keys``): a revoked key is refused on every replica within a second.

Keys declared in the config file are listed but read-only (the store refuses to change them). A tenant-admin
login sees and acts on its own tenant's keys only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ..admin_keys import _call, _changed
from ..asgi import Request, Response
from ..errors import ApiError
from .dashboard import Dashboard, Viewer, check_csrf, read_form, redirect
from .pages import common_context, page_tenant, routed, tenant_choices

if TYPE_CHECKING:
    from ...keys import KeyRecord, KeyStore
    from ..engine import Engine

__all__ = ["handle_key_create", "handle_key_revoke", "handle_keys"]

#: what a redirect after an action may say (the page shows only these texts)
_DONE = {"revoked": "Key {} revoked: every replica refuses it within a second."}


def ago(ts: datetime | None, now: datetime) -> str:
    """``ts`` as people say it: "never", "just now", "5 min ago", "3 h ago", "2 days ago"."""
    if ts is None:
        return "never"
    s = (now - ts).total_seconds()
    if s < 60:
        return "just now"
    if s < 3600:
        return f"{int(s // 60)} min ago"
    if s < 86400:
        return f"{int(s // 3600)} h ago"
    return f"{int(s // 86400)} days ago"


def _store(engine: Engine) -> KeyStore:
    if engine.keys is None:
        raise ApiError(
            409,
            "the key store is off (keys.url, or auth is off): keys come from the config file only",
            "invalid_request_error",
            "key_store_off",
        )
    return engine.keys


async def _keys_page(
    engine: Engine, req: Request, dash: Dashboard, v: Viewer, created: tuple[KeyRecord, str] | None = None
) -> Response:
    q = req.query_params()
    tenant = page_tenant(q, v)
    if engine.keys is not None:
        rows: list[Any] = await _call(engine.keys.list_keys, tenant)
        teams = [t for t in await _call(engine.keys.list_teams, tenant) if t.revoked_at is None]
    else:  # no store: the keys the config declares
        rows = [k for k in engine.auth.snapshot.keys if tenant is None or k.tenant == tenant]
        teams = [t for t in engine.auth.snapshot.teams if tenant is None or t.tenant == tenant]
    rows.sort(key=lambda k: (k.tenant, k.revoked_at is not None, k.name, k.id))
    done = _DONE.get(q.get("done", ""))
    ctx = common_context(
        req,
        v,
        "keys",
        rows=rows,
        tenant=tenant,
        tenants=await tenant_choices(engine, v),
        teams=teams,
        store=engine.keys is not None,
        now=datetime.now(UTC),
        ago=ago,
        done=done.format(q.get("key", "")) if done else None,
        created=created,
    )
    return dash.page(req, "keys.html", ctx)


handle_keys = routed(_keys_page)


async def _create(engine: Engine, req: Request, dash: Dashboard, v: Viewer) -> Response:
    """POST /ui/keys/create: a new key for a tenant (and team); the page shows its plain value once."""
    form = await read_form(req)
    check_csrf(req, form, v.session.csrf)
    store = _store(engine)
    tenant = v.tenant or (form.get("tenant") or "").strip()
    if not tenant:
        raise ApiError(422, "choose the tenant the key belongs to", "invalid_request_error", "invalid_field", "tenant")
    name = (form.get("name") or "").strip() or None
    team = (form.get("team") or "").strip() or None
    created = await _call(store.create_key, tenant, name, team=team)
    await _changed(engine)
    return await _keys_page(engine, req, dash, v, created)


async def _revoke(engine: Engine, req: Request, dash: Dashboard, v: Viewer) -> Response:
    """POST /ui/keys/revoke: revoke one key (never one of another tenant, for a tenant-admin login)."""
    form = await read_form(req)
    check_csrf(req, form, v.session.csrf)
    store = _store(engine)
    rec = await _call(store.get_key, (form.get("key_id") or "").strip())
    if v.tenant is not None and rec.tenant != v.tenant:
        raise ApiError(404, "no such key", "invalid_request_error", "not_found")
    rec = await _call(store.revoke_key, rec.id)
    await _changed(engine)
    return redirect("/ui/keys?" + urlencode({"done": "revoked", "key": rec.name}))


handle_key_create = routed(_create)
handle_key_revoke = routed(_revoke)
