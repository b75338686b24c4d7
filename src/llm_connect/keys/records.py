"""The objects of the key store: tenants, teams and API keys, as frozen dataclasses (datetimes in UTC).

The hierarchy is tenant -> team -> key: a key belongs to a tenant and optionally to one of its teams, and a call
made with it must fit every level's budget, rate limits and model allow-list. ``managed_by`` is ``"config"``
for objects the YAML file declares (the admin API refuses to change them) and ``"api"`` for the others.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from ..config import BudgetLimit
from ..errors import LLMError

__all__ = [
    "KEY_PREFIX",
    "ROLES",
    "KeyRecord",
    "KeyStoreError",
    "Snapshot",
    "TeamRecord",
    "TenantRecord",
    "new_key",
]

#: every key the store makes starts with this, then its id: ``llmc-<id>_<secret>``
KEY_PREFIX = "llmc-"
ManagedBy = Literal["config", "api"]
#: user: calls only; tenant_admin: also manages its own tenant's keys and teams; admin: everything
Role = Literal["user", "tenant_admin", "admin"]
ROLES: tuple[Role, ...] = ("user", "tenant_admin", "admin")
_ID_ALPHABET = "abcdefghijkmnopqrstuvwxyz23456789"  # no l, 0, 1: readable when copied by hand


class KeyStoreError(LLMError):
    """A key-store operation was refused: ``status_code`` 404 (not found), 409 (managed by the config, or a
    conflict) or 422 (a bad value); ``code`` is the gateway error code and ``param`` the field, if any."""

    def __init__(self, message: str, *, status_code: int, code: str, param: str | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.code = code
        self.param = param


def new_id(n: int = 10) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(n))


def new_key(key_id: str) -> tuple[str, str]:
    """(plain key, its sha256 hex digest) for the key ``key_id``: ``llmc-<id>_<43 url-safe characters>``."""
    plain = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return plain, hashlib.sha256(plain.encode()).hexdigest()


def utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(float(ts), UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Level:
    """What every level of the hierarchy has: its time stamps, who manages it, and its limits."""

    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None
    managed_by: ManagedBy
    models: tuple[str, ...] | None
    rpm: int | None
    tpm: int | None
    budget: BudgetLimit | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantRecord(_Level):
    id: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamRecord(_Level):
    id: str
    name: str
    tenant: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord(_Level):
    """An API key as lists show it: never the key itself, only its ``prefix`` (``llmc-<id>``)."""

    id: str
    name: str
    prefix: str
    tenant: str
    team: str | None
    last_used_at: datetime | None
    expires_at: datetime | None
    role: Role = "user"
    #: sha256 hex digest of the key (what the gateway compares); not shown by the API
    key_hash: str = field(default="", repr=False)

    def usable(self, now: datetime | None = None) -> bool:
        """Not revoked and not expired at ``now`` (default: this instant)."""
        now = now or datetime.now(UTC)
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    @property
    def status(self) -> str:
        """active | revoked | expired"""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.usable() else "expired"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the gateway needs to authenticate, read in one go; ``version`` counts the store's changes."""

    version: int
    tenants: tuple[TenantRecord, ...]
    teams: tuple[TeamRecord, ...]
    keys: tuple[KeyRecord, ...]
