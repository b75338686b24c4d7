"""The key table a gateway authenticates with: its own config's objects, plus the key store's API-made ones.

A gateway trusts its own file for what the file declares (the store's copies of config objects, written by
:meth:`KeyStore.seed`, are for the API, the CLI and the dashboard to show): two gateways sharing a database
with different files never take each other's declared keys away.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ._seed import seed_rows
from .records import Snapshot
from .store import _key, _team, _tenant

if TYPE_CHECKING:
    from ..config import GatewayConfig

__all__ = ["config_snapshot", "merge"]


def config_snapshot(config: GatewayConfig) -> Snapshot:
    """The config's tenants, teams and keys as records (version 0), without a database."""
    tenants, teams, keys = seed_rows(config)
    now = time.time()
    tail = (now, now, None)
    return Snapshot(
        0,
        tuple(_tenant((*r, *tail)) for r in tenants),
        tuple(_team((*r, *tail)) for r in teams),
        tuple(_key((*r, *tail)) for r in keys),
    )


def merge(own: Snapshot, stored: Snapshot) -> Snapshot:
    """``own`` (the config's) wins over ``stored`` by id and by key hash; the store's config-managed rows are
    left out. The version is the store's."""
    tenants = {t.id: t for t in stored.tenants if t.managed_by == "api"}
    tenants.update({t.id: t for t in own.tenants})
    teams = {t.id: t for t in stored.teams if t.managed_by == "api"}
    teams.update({t.id: t for t in own.teams})
    own_ids = {k.id for k in own.keys}
    own_hashes = {k.key_hash for k in own.keys}
    keys = [k for k in stored.keys if k.managed_by == "api" and k.id not in own_ids and k.key_hash not in own_hashes]
    return Snapshot(stored.version, tuple(tenants.values()), tuple(teams.values()), (*own.keys, *keys))
