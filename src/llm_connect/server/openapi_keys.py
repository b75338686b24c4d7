"""The OpenAPI operations of the key store's admin API (:mod:`llm_connect.server.admin_keys`), from the models
of :mod:`llm_connect.server.schemas_keys`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .openapi import Operation, Reply

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["operations"]

_ERRORS = {
    "401": "invalid_api_key: a missing, unknown, revoked or expired API key",
    "403": "admin_required (neither the admin key nor a tenant-admin key, or a tenant-admin key doing what only "
    "the admin key may) or tenant_mismatch",
    "404": "not_found: no such object (another tenant's objects are not found for a tenant-admin key), or the key "
    "store is off",
    "409": "managed_by_config (declared in the config file: change it there), conflict (the id exists) or revoked",
    "422": "invalid_field (error.param names it), unknown_tenant or unknown_team",
}


@dataclass(frozen=True, slots=True)
class _Kind:
    """One kind of object and the models of its routes."""

    kind: str
    cap: str
    what: str
    param: str
    obj: type[BaseModel]
    lst: type[BaseModel]
    create: type[BaseModel]
    update: type[BaseModel]
    path: type[BaseModel]
    query: type[BaseModel] | None
    created: type[BaseModel]


def operations() -> dict[tuple[str, str], Operation]:
    from . import schemas as s
    from . import schemas_keys as k

    def errors(*codes: str) -> dict[str, Reply]:
        return {c: Reply(_ERRORS[c], (s.ErrorResponse,)) for c in codes}

    read, write = ("401", "403", "404"), ("401", "403", "404", "409", "422")
    kinds = (
        _Kind("keys", "Key", "API key", "key_id", k.KeyObject, k.KeyList, k.KeyCreate, k.KeyUpdate, k.KeyIdPath,
              k.KeyListQuery, k.KeyCreated),
        _Kind("teams", "Team", "team", "team_id", k.TeamObject, k.TeamList, k.TeamCreate, k.TeamUpdate, k.TeamIdPath,
              k.TeamListQuery, k.TeamObject),
        _Kind("tenants", "Tenant", "tenant", "tenant_id", k.TenantObject, k.TenantList, k.TenantCreate,
              k.TenantUpdate, k.TenantIdPath, None, k.TenantObject),
    )  # fmt: skip
    out: dict[tuple[str, str], Operation] = {}
    for kd in kinds:
        kind, cap, what, param, obj, path = kd.kind, kd.cap, kd.what, kd.param, kd.obj, kd.path
        base, one = f"/v1/admin/{kind}", f"/v1/admin/{kind}/{{{param}}}"
        revoke = Operation(
            f"revokeAdmin{cap}",
            f"Revoke a {what}",
            "admin",
            {"200": Reply(f"The revoked {what}", (obj,)), **errors(*write)},
            description=f"Refused from now on, on every replica within a second; the record is kept. "
            f"{'Every key of it is refused too.' if kind != 'keys' else ''}".strip(),
            path=path,
        )
        out.update(
            {
                ("GET", base): Operation(
                    f"listAdmin{cap}s",
                    f"List {what}s",
                    "admin",
                    {"200": Reply(f"The {what}s the caller may see", (kd.lst,)), **errors(*read)},
                    query=kd.query,
                ),
                ("POST", base): Operation(
                    f"createAdmin{cap}",
                    f"Create a {what}",
                    "admin",
                    {"201": Reply(f"The new {what}", (kd.created,)), **errors(*write)},
                    description="Live on every replica within a second."
                    + (" The answer's key field is the only time the key is shown." if kind == "keys" else ""),
                    request=kd.create,
                ),
                ("GET", one): Operation(
                    f"getAdmin{cap}", f"Get a {what}", "admin", {"200": Reply(f"The {what}", (obj,)), **errors(*read)},
                    path=path,
                ),
                ("PATCH", one): Operation(
                    f"updateAdmin{cap}",
                    f"Change a {what}",
                    "admin",
                    {"200": Reply(f"The changed {what}", (obj,)), **errors(*write)},
                    description="Only the fields sent change; null clears a field.",
                    request=kd.update,
                    path=path,
                ),
                ("DELETE", one): Operation(
                    f"deleteAdmin{cap}", f"Revoke a {what} (the same as POST {one}/revoke)", "admin",
                    revoke.responses, description=revoke.description, path=path,
                ),
                ("POST", f"{one}/revoke"): revoke,
            }
        )  # fmt: skip
    out[("POST", "/v1/admin/keys/{key_id}/rotate")] = Operation(
        "rotateAdminKey",
        "Rotate an API key",
        "admin",
        {"200": Reply("The key with its new secret (shown this once)", (k.KeyCreated,)), **errors(*write)},
        description="A new secret for the same key id, limits and budget; the old secret is refused at once.",
        path=k.KeyIdPath,
    )
    return out
