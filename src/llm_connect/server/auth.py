"""API keys -> principals (tenant, team, allowed models, limits). Keys are kept and compared only as sha256 hashes.

The key table is a dict (sha256 -> principal) built from a :class:`~llm_connect.keys.Snapshot` of tenants, teams
and keys — the config's own, merged with the key store's when there is one — and swapped whole when the store
changes (:meth:`Authenticator.install`): a request does one dict look-up and one clock read (expiry), no I/O.

A key is read from ``Authorization: Bearer <key>``, ``x-api-key`` or ``api-key``. With auth off (the embedded
default) every request is accepted: the tenant comes from the request (``tenant_id``) or is ``default``.
The admin key may act for any tenant and read everyone's usage.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from ..config import BudgetLimit, GatewayConfig
from .errors import ApiError

if TYPE_CHECKING:
    from ..keys import Snapshot

__all__ = ["Authenticator", "LimitScope", "Principal", "key_digest"]

DEFAULT_TENANT = "default"


def key_digest(key: str) -> str:
    """The sha256 hex digest a key is stored and compared as."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class LimitScope:
    """One rate-limited subject: ``key:<name>`` or ``tenant:<id>``."""

    id: str
    rpm: int | None
    tpm: int | None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, and what they may do."""

    tenant: str
    key_name: str | None = None
    admin: bool = False
    authenticated: bool = False
    #: everything allowed (auth off, or the admin key)
    unrestricted: bool = False
    #: each tuple is a set of fnmatch patterns a model name must match (key's and tenant's)
    patterns: tuple[tuple[str, ...], ...] = ()
    scopes: tuple[LimitScope, ...] = ()
    tenant_budget: BudgetLimit | None = None
    key_budget: BudgetLimit | None = None
    #: the key's team, if it has one (its budget sits between the tenant's and the key's)
    team: str | None = None
    team_budget: BudgetLimit | None = None
    #: may manage its own tenant's keys and teams and read its usage
    tenant_admin: bool = False
    #: the key's id in the key store (what its last use is recorded under)
    key_id: str | None = None
    #: identifies the budget chain (tenant, team, key and their caps): the planner's cache key
    budget_key: tuple[Any, ...] = ()

    def may_use(self, name: str, kind: str) -> bool:
        """``kind``: group | alias | spec. Groups and aliases are open unless patterns say otherwise; an
        explicit ``provider:model`` needs a matching pattern (``openai:*``, ``*``)."""
        if self.unrestricted:
            return True
        if not self.patterns:
            return kind != "spec"
        return all(any(fnmatchcase(name, p) for p in pats) for pats in self.patterns)


def _scopes(key: Any, team: Any, tenant: Any, key_name: str | None = None) -> tuple[LimitScope, ...]:
    out = []
    if key is not None and (key.rpm or key.tpm):
        out.append(LimitScope(f"key:{key_name}", key.rpm, key.tpm))
    if team is not None and (team.rpm or team.tpm):
        out.append(LimitScope(f"team:{team.id}", team.rpm, team.tpm))
    if tenant is not None and (tenant.rpm or tenant.tpm):
        out.append(LimitScope(f"tenant:{tenant.id}", tenant.rpm, tenant.tpm))
    return tuple(out)


def _patterns(*levels: Any) -> tuple[tuple[str, ...], ...]:
    return tuple(lv.models for lv in levels if lv is not None and lv.models)


def _bkey(lim: BudgetLimit | None) -> tuple[Any, ...] | None:
    return None if lim is None else (lim.tokens, lim.usd, lim.period)


def _valid_tenant(tenant_id: object) -> str:
    if not isinstance(tenant_id, str) or not tenant_id or len(tenant_id) > 128 or not tenant_id.isprintable():
        raise ApiError(
            422,
            "tenant_id must be a non-empty printable string of at most 128 characters",
            "invalid_request_error",
            "invalid_field",
            "tenant_id",
        )
    return tenant_id


class Authenticator:
    """Turns request headers into a :class:`Principal` (or a 401)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.enabled = config.auth
        self._admin_hash = config.admin_key_hash
        self._tenants: dict[str, Any] = {}
        self._by_hash: dict[str, tuple[str, Principal, float, str]] = {}
        #: key id -> the last time it authenticated a request (taken in batches by the key ring)
        self.used: dict[str, float] = {}
        from ..keys.merge import config_snapshot

        self.install(config_snapshot(config))

    def install(self, snap: Snapshot) -> None:
        """Replace the key table with the keys of ``snap`` (revoked and expired ones answer 401 with why)."""
        tenants = {t.id: t for t in snap.tenants}
        teams = {t.id: t for t in snap.teams}
        by_hash: dict[str, tuple[str, Principal, float, str]] = {}
        for k in snap.keys:
            tenant, team = tenants.get(k.tenant), teams.get(k.team) if k.team else None
            why = ""
            if k.revoked_at is not None:
                why = "this API key was revoked"
            elif tenant is None or tenant.revoked_at is not None:
                why = f"the tenant {k.tenant!r} of this API key is revoked or gone"
            elif k.team and (team is None or team.revoked_at is not None or team.tenant != k.tenant):
                why = f"the team {k.team!r} of this API key is revoked or gone"
            if why:
                deadline = -math.inf
            else:
                deadline = k.expires_at.timestamp() if k.expires_at is not None else math.inf
                why = "this API key has expired"
            admin = k.role == "admin"
            # budgets, limits and the ledger name a key: a config key by its name (keys of one name share them),
            # an API key by its id
            name = k.name if k.managed_by == "config" else k.id
            tb, teamb = (tenant.budget if tenant else None), (team.budget if team else None)
            by_hash[k.key_hash] = (
                k.key_hash,
                Principal(
                    tenant=k.tenant,
                    key_name=name,
                    key_id=k.id,
                    admin=admin,
                    authenticated=True,
                    unrestricted=admin,
                    patterns=_patterns(k, team, tenant),
                    scopes=_scopes(k, team, tenant, name),
                    tenant_budget=tb,
                    key_budget=k.budget,
                    team=k.team,
                    team_budget=teamb,
                    tenant_admin=k.role == "tenant_admin",
                    budget_key=(k.tenant, k.team, name, _bkey(tb), _bkey(teamb), _bkey(k.budget)),
                ),
                deadline,
                why,
            )
        self._tenants = tenants
        self._tenant_principals = {tid: self._open_principal(tid, authenticated=False) for tid in tenants}
        self._default = self._open_principal(DEFAULT_TENANT, authenticated=False)
        self._by_hash = by_hash  # one assignment: a request sees the old table or the new one
        #: the tenants, teams and keys installed last (what the dashboard lists)
        self.snapshot = snap

    def _open_principal(
        self, tenant_id: str, *, authenticated: bool, admin: bool = False, key_name: str | None = None
    ) -> Principal:
        tenant = self._tenants.get(tenant_id)
        budget = tenant.budget if tenant else None
        return Principal(
            tenant=tenant_id,
            key_name=key_name,
            admin=admin,
            authenticated=authenticated,
            unrestricted=True,
            scopes=_scopes(None, None, tenant),
            tenant_budget=budget,
            budget_key=(tenant_id, None, None, _bkey(budget), None, None),
        )

    def local(self) -> Principal:
        """The caller of the stdin bridge: trusted, like auth off (the tenant comes from the request)."""
        return self._default if not self.enabled else self._open_principal(DEFAULT_TENANT, authenticated=False)

    @staticmethod
    def _presented_key(headers: dict[str, str]) -> str | None:
        auth = headers.get("authorization")
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
            return None
        return headers.get("x-api-key") or headers.get("api-key") or None

    def authenticate(self, headers: dict[str, str]) -> Principal:
        """The caller of a request. With auth off: the default tenant (no key needed)."""
        if not self.enabled:
            return self._default
        key = self._presented_key(headers)
        if not key:
            raise ApiError(
                401, "missing API key: send 'Authorization: Bearer <key>'", "invalid_request_error", "invalid_api_key"
            )
        digest = key_digest(key)
        entry = self._entry(digest)
        if entry is not None:
            principal, deadline, why = entry
            now = time.time()
            if now < deadline:  # expiry is checked here, at the instant, not by a poll
                self.used[principal.key_id] = now  # type: ignore[index]
                return principal
            raise ApiError(401, why, "invalid_request_error", "invalid_api_key")
        if self._is_admin_key(digest):
            return self._open_principal("admin", authenticated=True, admin=True, key_name="admin")
        raise ApiError(401, "invalid API key", "invalid_request_error", "invalid_api_key")

    def _entry(self, digest: str) -> tuple[Principal, float, str] | None:
        entry = self._by_hash.get(digest)
        if entry is not None and hmac.compare_digest(entry[0], digest):
            return entry[1], entry[2], entry[3]
        return None

    def _is_admin_key(self, digest: str) -> bool:
        return self._admin_hash is not None and hmac.compare_digest(self._admin_hash, digest)

    def by_digest(self, digest: str) -> Principal | None:
        """The principal of the key whose sha256 hex digest is ``digest`` (the admin key included); None for
        an unknown, revoked or expired key. How a dashboard session, which keeps only the digest, finds who it
        belongs to on every request (a look that is not a use: the key's last-used time stays)."""
        entry = self._entry(digest)
        if entry is not None:
            return entry[0] if time.time() < entry[1] else None
        if self._is_admin_key(digest):
            return self._open_principal("admin", authenticated=True, admin=True, key_name="admin")
        return None

    def is_admin(self, headers: dict[str, str]) -> bool:
        """True if the request carries the admin key (or an admin API key)."""
        if not self.enabled:
            return True
        try:
            return self.authenticate(headers).admin
        except ApiError:
            return False

    def for_tenant(self, principal: Principal, tenant_id: object) -> Principal:
        """The principal acting for ``tenant_id`` named in a request (None = its own).

        A tenant key may only name its own tenant (403 otherwise); the admin key and auth-off callers may
        name any tenant, whose configured budget and limits then apply.
        """
        if tenant_id is None or tenant_id == principal.tenant:
            return principal
        tid = _valid_tenant(tenant_id)
        if principal.authenticated and not principal.admin:
            raise ApiError(
                403,
                f"this API key belongs to tenant {principal.tenant!r} and cannot act for {tid!r}",
                "permission_error",
                "tenant_mismatch",
                "tenant_id",
            )
        if principal.admin:
            return self._open_principal(tid, authenticated=True, admin=True, key_name=principal.key_name)
        cached = self._tenant_principals.get(tid)
        return cached if cached is not None else self._open_principal(tid, authenticated=False)
