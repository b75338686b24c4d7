"""The admin API of the key store: ``/v1/admin/keys``, ``/v1/admin/teams``, ``/v1/admin/tenants`` (docs/keys.md).

The admin key may do everything. A key with the ``tenant_admin`` role manages the keys and teams of its own
tenant and reads its own tenant — another tenant's objects are "not found" to it, and it cannot create,
change or revoke tenants. Objects declared in the config file are read-only here (409 ``managed_by_config``).
A change is applied to this gateway's key table before the answer, and reaches every replica within a second.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .asgi import Request, Response, json_response
from .auth import Principal
from .engine import Engine
from .errors import ApiError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..keys import KeyRecord, KeyStore, TeamRecord, TenantRecord

__all__ = [
    "handle_key_create",
    "handle_key_list",
    "handle_key_rotate",
    "handle_team_create",
    "handle_team_list",
    "handle_tenant_create",
    "handle_tenant_list",
    "key_json",
    "routes",
    "team_json",
    "tenant_json",
]

_M = TypeVar("_M", bound="BaseModel")
_T = TypeVar("_T")
_BODY_LIMIT = 64 * 1024

_Handler = Callable[[Engine, Request], Awaitable[Response]]


async def _caller(engine: Engine, req: Request) -> tuple[KeyStore, Principal]:
    principal = engine.auth.authenticate(req.headers)
    await engine.start()
    if engine.keys is None:
        raise ApiError(
            404,
            "the key store is off: it needs auth on (an admin_key or api_keys) and keys.url not off",
            "invalid_request_error",
            "not_found",
        )
    if not (principal.admin or principal.tenant_admin):
        raise ApiError(
            403, "this endpoint needs the admin key or a tenant-admin key", "permission_error", "admin_required"
        )
    return engine.keys, principal


def _admin_only(p: Principal) -> None:
    if not p.admin:
        raise ApiError(403, "only the admin key may manage tenants", "permission_error", "admin_required")


async def _call(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """A store method in a worker thread; its refusals as the gateway's error bodies."""
    import asyncio

    from ..keys import KeyStoreError

    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except KeyStoreError as exc:
        status = exc.status_code or 422
        raise ApiError(status, exc.message, "invalid_request_error", exc.code, exc.param) from None


async def _body(req: Request, model: type[_M]) -> _M:
    from pydantic import ValidationError

    data = await req.json_object(_BODY_LIMIT)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        raise ApiError(
            422, f"{param}: {err['msg']}" if param else err["msg"], "invalid_request_error", "invalid_field", param
        ) from None


def _sent(body: BaseModel) -> dict[str, Any]:
    """The fields a PATCH body names (null included: it clears), as the model holds them."""
    return {name: getattr(body, name) for name in body.model_fields_set}


def _tenant_for(p: Principal, asked: str | None) -> str:
    """The tenant a create or a list acts on: any for the admin key (required), the caller's own otherwise."""
    if p.admin:
        if asked is None:
            raise ApiError(422, "tenant is required", "invalid_request_error", "invalid_field", "tenant")
        return asked
    if asked not in (None, p.tenant):
        raise ApiError(
            403,
            f"this key manages tenant {p.tenant!r} only, not {asked!r}",
            "permission_error",
            "tenant_mismatch",
            "tenant",
        )
    return p.tenant


def _list_tenant(p: Principal, asked: str | None) -> str | None:
    """The tenant a list is narrowed to (None: every tenant, for the admin key asking for none)."""
    return _tenant_for(p, asked) if not p.admin or asked else None


def _visible(p: Principal, tenant: str, what: str, ident: str) -> None:
    if not p.admin and tenant != p.tenant:  # another tenant's object does not exist for this caller
        raise ApiError(404, f"no {what} {ident!r}", "invalid_request_error", "not_found")


def _render(model: type[BaseModel], rec: Any, **extra: Any) -> dict[str, Any]:
    fields = {name: getattr(rec, name) for name in model.model_fields if hasattr(rec, name)}
    out = model.model_validate({**fields, **extra}).model_dump(mode="json")
    return {k: out.pop(k) for k in ("object", "id", "name") if k in out} | out  # the way a reader scans it


async def _changed(engine: Engine) -> None:
    if engine.keyring is not None:
        await engine.keyring.changed()


# ---------------------------------------------------------------------------------------------- one object


@dataclass(frozen=True, slots=True)
class _Kind:
    """One kind of object and what its get / change / revoke routes (``/v1/admin/{path}/{param}``) need."""

    path: str
    param: str
    #: how a message names one
    what: str
    #: the store's methods are ``get_{noun}``, ``update_{noun}``, ``revoke_{noun}``
    noun: str
    #: the PATCH body's model in :mod:`.schemas_keys`
    update_model: str
    render: Callable[[Any], dict[str, Any]]
    #: the tenant an object belongs to (who may see it)
    tenant_of: Callable[[Any], str]
    #: only the admin key may change or revoke one
    admin_writes: bool = False


async def _own(kind: _Kind, engine: Engine, req: Request, *, write: bool = False) -> tuple[KeyStore, Any]:
    """The store and the object the path names, if the caller may see it (and change it, with ``write``)."""
    store, p = await _caller(engine, req)
    ident = req.params[kind.param]
    rec = await _call(getattr(store, f"get_{kind.noun}"), ident)
    _visible(p, kind.tenant_of(rec), kind.what, ident)
    if write and kind.admin_writes:
        _admin_only(p)
    return store, rec


def _get_handler(kind: _Kind) -> _Handler:
    async def handle(engine: Engine, req: Request) -> Response:
        _, rec = await _own(kind, engine, req)
        return json_response(kind.render(rec))

    return handle


def _update_handler(kind: _Kind) -> _Handler:
    async def handle(engine: Engine, req: Request) -> Response:
        from . import schemas_keys as s

        store, rec = await _own(kind, engine, req, write=True)
        body = await _body(req, getattr(s, kind.update_model))
        rec = await _call(getattr(store, f"update_{kind.noun}"), rec.id, **_sent(body))
        await _changed(engine)
        return json_response(kind.render(rec))

    return handle


def _revoke_handler(kind: _Kind) -> _Handler:
    async def handle(engine: Engine, req: Request) -> Response:
        store, rec = await _own(kind, engine, req, write=True)
        rec = await _call(getattr(store, f"revoke_{kind.noun}"), rec.id)
        await _changed(engine)
        return json_response(kind.render(rec))

    return handle


# ---------------------------------------------------------------------------------------------- keys


def key_json(rec: KeyRecord, plain: str | None = None) -> dict[str, Any]:
    """The API's JSON of a key (with ``key``, the plain key, when it was just made)."""
    from . import schemas_keys as s

    if plain is not None:
        return _render(s.KeyCreated, rec, status=rec.status, key=plain)
    return _render(s.KeyObject, rec, status=rec.status)


async def handle_key_list(engine: Engine, req: Request) -> Response:
    store, p = await _caller(engine, req)
    q = req.query_params()
    recs = await _call(store.list_keys, _list_tenant(p, q.get("tenant") or None), q.get("team") or None)
    return json_response({"object": "list", "data": [key_json(r) for r in recs]})


async def handle_key_create(engine: Engine, req: Request) -> Response:
    from . import schemas_keys as s

    store, p = await _caller(engine, req)
    body = await _body(req, s.KeyCreate)
    tenant = _tenant_for(p, body.tenant)
    if body.role == "admin" and not p.admin:
        raise ApiError(403, "only the admin key may create admin keys", "permission_error", "admin_required", "role")
    rec, plain = await _call(
        store.create_key,
        tenant,
        body.name,
        team=body.team,
        role=body.role,
        models=body.models,
        rpm=body.rpm,
        tpm=body.tpm,
        budget=body.budget,
        expires_at=body.expires_at,
    )
    await _changed(engine)
    return json_response(key_json(rec, plain), 201)


async def handle_key_rotate(engine: Engine, req: Request) -> Response:
    store, rec = await _own(_KEYS, engine, req, write=True)
    rec, plain = await _call(store.rotate_key, rec.id)
    await _changed(engine)
    return json_response(key_json(rec, plain))


# ---------------------------------------------------------------------------------------------- teams


def team_json(rec: TeamRecord) -> dict[str, Any]:
    from . import schemas_keys as s

    return _render(s.TeamObject, rec)


async def handle_team_list(engine: Engine, req: Request) -> Response:
    store, p = await _caller(engine, req)
    recs = await _call(store.list_teams, _list_tenant(p, req.query_params().get("tenant") or None))
    return json_response({"object": "list", "data": [team_json(r) for r in recs]})


async def handle_team_create(engine: Engine, req: Request) -> Response:
    from . import schemas_keys as s

    store, p = await _caller(engine, req)
    body = await _body(req, s.TeamCreate)
    rec = await _call(
        store.create_team,
        _tenant_for(p, body.tenant),
        body.name,
        team_id=body.id,
        models=body.models,
        rpm=body.rpm,
        tpm=body.tpm,
        budget=body.budget,
    )
    await _changed(engine)
    return json_response(team_json(rec), 201)


# ---------------------------------------------------------------------------------------------- tenants


def tenant_json(rec: TenantRecord) -> dict[str, Any]:
    from . import schemas_keys as s

    return _render(s.TenantObject, rec)


async def handle_tenant_list(engine: Engine, req: Request) -> Response:
    store, p = await _caller(engine, req)
    if p.admin:
        recs = await _call(store.list_tenants)
    else:
        recs = [await _call(store.get_tenant, p.tenant)]
    return json_response({"object": "list", "data": [tenant_json(r) for r in recs]})


async def handle_tenant_create(engine: Engine, req: Request) -> Response:
    from . import schemas_keys as s

    store, p = await _caller(engine, req)
    _admin_only(p)
    body = await _body(req, s.TenantCreate)
    rec = await _call(
        store.create_tenant, body.id, body.name, models=body.models, rpm=body.rpm, tpm=body.tpm, budget=body.budget
    )
    await _changed(engine)
    return json_response(tenant_json(rec), 201)


# ---------------------------------------------------------------------------------------------- routes

_KEYS = _Kind("keys", "key_id", "API key", "key", "KeyUpdate", key_json, lambda rec: rec.tenant)
_TEAMS = _Kind("teams", "team_id", "team", "team", "TeamUpdate", team_json, lambda rec: rec.tenant)
_TENANTS = _Kind(
    "tenants", "tenant_id", "tenant", "tenant", "TenantUpdate", tenant_json, lambda rec: rec.id, admin_writes=True
)


def routes() -> dict[tuple[str, str], Callable[[Engine, Request], Any]]:
    """(method, path) -> handler of every admin-API route (merged into the gateway's route table)."""
    out: dict[tuple[str, str], Callable[[Engine, Request], Any]] = {
        ("POST", "/v1/admin/keys/{key_id}/rotate"): handle_key_rotate,
    }
    for kind, lst, create in (
        (_KEYS, handle_key_list, handle_key_create),
        (_TEAMS, handle_team_list, handle_team_create),
        (_TENANTS, handle_tenant_list, handle_tenant_create),
    ):
        base, one = f"/v1/admin/{kind.path}", f"/v1/admin/{kind.path}/{{{kind.param}}}"
        revoke = _revoke_handler(kind)
        out.update(
            {
                ("GET", base): lst,
                ("POST", base): create,
                ("GET", one): _get_handler(kind),
                ("PATCH", one): _update_handler(kind),
                ("DELETE", one): revoke,
                ("POST", f"{one}/revoke"): revoke,
            }
        )
    return out
