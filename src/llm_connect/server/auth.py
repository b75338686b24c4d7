"""API keys -> principals (tenant, allowed models, limits). Keys are kept and compared only as sha256 hashes.

A key is read from ``Authorization: Bearer <key>``, ``x-api-key`` or ``api-key``. With auth off (the embedded
default) every request is accepted: the tenant comes from the request (``tenant_id``) or is ``default``.
The admin key may act for any tenant and read everyone's usage.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from fnmatch import fnmatchcase

from ..config import ApiKeyConfig, BudgetLimit, GatewayConfig, TenantConfig
from .errors import ApiError

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

    def may_use(self, name: str, kind: str) -> bool:
        """``kind``: group | alias | spec. Groups and aliases are open unless patterns say otherwise; an
        explicit ``provider:model`` needs a matching pattern (``openai:*``, ``*``)."""
        if self.unrestricted:
            return True
        if not self.patterns:
            return kind != "spec"
        return all(any(fnmatchcase(name, p) for p in pats) for pats in self.patterns)


def _scopes(key: ApiKeyConfig | None, tenant: TenantConfig | None) -> tuple[LimitScope, ...]:
    out = []
    if key is not None and (key.rpm or key.tpm):
        out.append(LimitScope(f"key:{key.name}", key.rpm, key.tpm))
    if tenant is not None and (tenant.rpm or tenant.tpm):
        out.append(LimitScope(f"tenant:{tenant.id}", tenant.rpm, tenant.tpm))
    return tuple(out)


def _patterns(key: ApiKeyConfig | None, tenant: TenantConfig | None) -> tuple[tuple[str, ...], ...]:
    return tuple(p for p in ((key.models if key else None), (tenant.models if tenant else None)) if p)


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
        self._tenants = dict(config.tenants)
        self._admin_hash = config.admin_key_hash
        self._by_hash: dict[str, tuple[str, Principal]] = {}
        for k in config.api_keys:
            tenant = self._tenants.get(k.tenant)
            self._by_hash[k.key_hash] = (
                k.key_hash,
                Principal(
                    tenant=k.tenant,
                    key_name=k.name,
                    admin=k.admin,
                    authenticated=True,
                    unrestricted=k.admin,
                    patterns=_patterns(k, tenant),
                    scopes=_scopes(k, tenant),
                    tenant_budget=tenant.budget if tenant else None,
                    key_budget=k.budget,
                ),
            )
        self._tenant_principals = {tid: self._open_principal(tid, authenticated=False) for tid in self._tenants}
        self._default = self._open_principal(DEFAULT_TENANT, authenticated=False)

    def _open_principal(
        self, tenant_id: str, *, authenticated: bool, admin: bool = False, key_name: str | None = None
    ) -> Principal:
        tenant = self._tenants.get(tenant_id)
        return Principal(
            tenant=tenant_id,
            key_name=key_name,
            admin=admin,
            authenticated=authenticated,
            unrestricted=True,
            scopes=_scopes(None, tenant),
            tenant_budget=tenant.budget if tenant else None,
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
        principal = self.by_digest(key_digest(key))
        if principal is None:
            raise ApiError(401, "invalid API key", "invalid_request_error", "invalid_api_key")
        return principal

    def by_digest(self, digest: str) -> Principal | None:
        """The principal of the key whose sha256 hex digest is ``digest`` (the admin key included), or None:
        how a dashboard session, which keeps only the digest, finds who it belongs to on every request."""
        entry = self._by_hash.get(digest)
        if entry is not None and hmac.compare_digest(entry[0], digest):
            return entry[1]
        if self._admin_hash is not None and hmac.compare_digest(self._admin_hash, digest):
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
