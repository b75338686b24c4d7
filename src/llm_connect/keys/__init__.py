"""Tenants, teams and API keys kept in the gateway's database and managed live (docs/keys.md).

::

    from llm_connect.keys import KeyStore
    store = KeyStore.open("keys.sqlite3")
    record, plain = store.create_key("acme", "ci bot")     # plain: shown once, stored as sha256
"""

from .records import KEY_PREFIX, ROLES, KeyRecord, KeyStoreError, Snapshot, TeamRecord, TenantRecord, new_key
from .store import UNSET, KeyStore

__all__ = [
    "KEY_PREFIX",
    "ROLES",
    "UNSET",
    "KeyRecord",
    "KeyStore",
    "KeyStoreError",
    "Snapshot",
    "TeamRecord",
    "TenantRecord",
    "new_key",
]
