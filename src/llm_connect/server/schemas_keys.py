"""The admin API's bodies (``/v1/admin/keys``, ``/v1/admin/teams``, ``/v1/admin/tenants``; docs/keys.md): the
one source of their validation and of their OpenAPI schemas. Answers are built through these models too, so
the document and the wire cannot drift apart."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ..config import BudgetLimit
from .schemas import Ident

__all__ = [
    "KeyCreate",
    "KeyCreated",
    "KeyIdPath",
    "KeyList",
    "KeyListQuery",
    "KeyObject",
    "KeyUpdate",
    "TeamCreate",
    "TeamIdPath",
    "TeamList",
    "TeamListQuery",
    "TeamObject",
    "TeamUpdate",
    "TenantCreate",
    "TenantIdPath",
    "TenantList",
    "TenantObject",
    "TenantUpdate",
]

Models = list[str] | None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Limits(_Body):
    models: Models = Field(None, description="allowed model names / fnmatch patterns (null: all)")
    rpm: int | None = Field(None, ge=1, description="requests per minute")
    tpm: int | None = Field(None, ge=1, description="tokens per minute")
    budget: BudgetLimit | None = Field(None, description="{tokens, usd, period: daily | monthly | none}")


class TenantCreate(_Limits):
    id: Ident = Field(description="the tenant id (what requests and the ledger name)")
    name: str | None = Field(None, description="display name (default: the id)")


class TenantUpdate(_Limits):
    """Only the fields sent change; null clears one."""

    name: str | None = None


class TeamCreate(_Limits):
    name: str = Field(min_length=1, description="display name")
    tenant: Ident | None = Field(None, description="the tenant (default: the caller's, for a tenant-admin key)")
    id: Ident | None = Field(None, description="the team id (default: generated, team_…)")


class TeamUpdate(_Limits):
    """Only the fields sent change; null clears one."""

    name: str | None = None


class KeyCreate(_Limits):
    name: str | None = Field(None, description="shown in lists (default: the key id)")
    tenant: Ident | None = Field(None, description="the tenant (default: the caller's, for a tenant-admin key)")
    team: Ident | None = Field(None, description="a team of that tenant")
    role: Literal["user", "tenant_admin", "admin"] = Field(
        "user", description="user: calls; tenant_admin: also manages its tenant's keys and teams; admin: everything"
    )
    expires_at: AwareDatetime | None = Field(None, description="refused from this instant on (ISO-8601 with zone)")


class KeyUpdate(_Limits):
    """Only the fields sent change; null clears one."""

    name: str | None = None
    team: Ident | None = None
    expires_at: AwareDatetime | None = None


class _Object(BaseModel):
    created_at: datetime
    updated_at: datetime | None = None
    revoked_at: datetime | None = None
    managed_by: Literal["config", "api"] = Field(description="config: declared in the YAML file (read-only here)")
    models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget: BudgetLimit | None = None


class TenantObject(_Object):
    object: Literal["tenant"] = "tenant"
    id: str
    name: str


class TeamObject(_Object):
    object: Literal["team"] = "team"
    id: str
    name: str
    tenant: str


class KeyObject(_Object):
    """An API key as listed: never the key itself, only its prefix."""

    object: Literal["api_key"] = "api_key"
    id: str
    name: str
    prefix: str = Field(description="llmc-<id>: the start of the key (config keys: sha256:<first 8 hex>)")
    tenant: str
    team: str | None = None
    role: Literal["user", "tenant_admin", "admin"]
    status: Literal["active", "revoked", "expired"]
    last_used_at: datetime | None = Field(None, description="written every few seconds, not per request")
    expires_at: datetime | None = None


class KeyCreated(KeyObject):
    key: str = Field(description="the API key: shown this once (on create and rotate), stored only as its sha256")


class TenantList(BaseModel):
    object: Literal["list"] = "list"
    data: list[TenantObject]


class TeamList(BaseModel):
    object: Literal["list"] = "list"
    data: list[TeamObject]


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyObject]


class KeyListQuery(BaseModel):
    tenant: str | None = Field(None, description="only this tenant's keys (a tenant-admin key sees only its own)")
    team: str | None = Field(None, description="only this team's keys")


class TeamListQuery(BaseModel):
    tenant: str | None = Field(None, description="only this tenant's teams (a tenant-admin key sees only its own)")


class KeyIdPath(BaseModel):
    key_id: str = Field(description="the key's id (the part after llmc- in its prefix)")


class TeamIdPath(BaseModel):
    team_id: str


class TenantIdPath(BaseModel):
    tenant_id: str
