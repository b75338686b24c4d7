"""The rows :meth:`KeyStore.seed` writes for the objects a config file declares (``managed_by="config"``).

A config key's id is its name (``name-2``, ``name-3``… for later keys of the same name: keys sharing a name
share its budget and limits, as during a rotation in the file); as its plain secret is not kept, its prefix is the
start of its sha256 digest (``sha256:1a2b3c4d``). Tenants named only by a key or a team get a row of their own, without
limits, so every key's tenant exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .store import _limit_values

if TYPE_CHECKING:
    from ..config import GatewayConfig

__all__ = ["seed_rows"]

Rows = list[tuple[Any, ...]]


def seed_rows(config: GatewayConfig) -> tuple[Rows, Rows, Rows]:
    """(tenant rows, team rows, key rows), each without its trailing created / updated / revoked columns."""
    tenants: dict[str, tuple[Any, ...]] = {}
    for tid, t in config.tenants.items():
        tenants[tid] = (tid, tid, *_limit_values(t.models, t.rpm, t.tpm, t.budget), "config")
    implicit = [t.tenant for t in config.teams.values()] + [k.tenant for k in config.api_keys]
    for tid in implicit:
        tenants.setdefault(tid, (tid, tid, *_limit_values(None, None, None, None), "config"))
    teams = [
        (t.id, t.tenant, t.name or t.id, *_limit_values(t.models, t.rpm, t.tpm, t.budget), "config")
        for t in config.teams.values()
    ]
    seen: dict[str, int] = {}
    ids = []
    for k in config.api_keys:
        seen[k.name] = seen.get(k.name, 0) + 1
        ids.append(k.name if seen[k.name] == 1 else f"{k.name}-{seen[k.name]}")
    keys = [
        (
            kid,
            k.key_hash,
            f"sha256:{k.key_hash[:8]}",
            k.name,
            k.tenant,
            k.team,
            "admin" if k.admin else "tenant_admin" if k.tenant_admin else "user",
            None,
            None,
            *_limit_values(k.models, k.rpm, k.tpm, k.budget),
            "config",
        )
        for kid, k in zip(ids, config.api_keys, strict=True)
    ]
    return list(tenants.values()), teams, keys
