"""The key store: tenants, teams and API keys in SQLite (default) or PostgreSQL.

::

    store = KeyStore.open("/path/keys.sqlite3")          # or "postgresql://…"; migrates at open
    tenant = store.create_tenant("acme", budget=BudgetLimit(usd="50", period="monthly"))
    team = store.create_team("acme", "search", budget=BudgetLimit(tokens=1_000_000))
    record, plain = store.create_key("acme", "ci bot", team=team.id, rpm=60)   # plain: shown once
    store.revoke_key(record.id)

Every change bumps one counter (``version``) in the same transaction; the gateway polls it (and listens on
Redis when configured) and reloads its in-memory key table when it moves — the request path never reads the
database. ``last_used_at`` is written in batches (:meth:`touch`). Methods are synchronous and thread-safe (one
connection behind a lock); the ``a``-prefixed variants run them in a worker thread for ``asyncio`` callers.
Objects declared in the YAML config are written by :meth:`seed` with ``managed_by="config"``; every method
that changes an object refuses those (:class:`KeyStoreError`, status 409, code ``managed_by_config``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from ..config import BudgetLimit
from ._sql import Dialect, dialect_for
from .records import (
    KEY_PREFIX,
    ROLES,
    KeyRecord,
    KeyStoreError,
    Snapshot,
    TeamRecord,
    TenantRecord,
    new_id,
    new_key,
    utc,
)

if TYPE_CHECKING:
    from ..config import GatewayConfig

__all__ = ["UNSET", "KeyStore"]

_T = TypeVar("_T")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "leave as it is" in an update (None means "clear")
UNSET: Any = _Unset()
_MAX_ID = 128
_LIMIT_COLS = (
    "models, rpm, tpm, budget_tokens, budget_usd, budget_period, managed_by, created_at, updated_at, revoked_at"
)
_TENANT_COLS = f"id, name, {_LIMIT_COLS}"
_TEAM_COLS = f"id, tenant_id, name, {_LIMIT_COLS}"
_KEY_COLS = f"id, key_hash, prefix, name, tenant_id, team_id, role, last_used_at, expires_at, {_LIMIT_COLS}"


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID or not value.isprintable() or "/" in value:
        raise KeyStoreError(
            f"{what} must be a non-empty printable string of at most {_MAX_ID} characters without '/'",
            status_code=422,
            code="invalid_field",
            param=what,
        )
    return value


def _models_value(models: Any) -> str | None:
    """The ``models`` column: a JSON list, or NULL for "all"."""
    return None if models is None else orjson.dumps(list(models)).decode()


def _budget_values(budget: BudgetLimit | None) -> tuple[Any, Any, Any]:
    """The ``budget_tokens``, ``budget_usd``, ``budget_period`` columns."""
    if budget is None:
        return None, None, None
    return budget.tokens, None if budget.usd is None else str(budget.usd), budget.period


def _limit_values(models: Any, rpm: Any, tpm: Any, budget: BudgetLimit | None) -> tuple[Any, ...]:
    return (_models_value(models), rpm, tpm, *_budget_values(budget))


def _limits(row: tuple[Any, ...]) -> dict[str, Any]:
    models, rpm, tpm, b_tok, b_usd, b_period, managed_by, created, updated, revoked = row
    budget = None
    if b_tok is not None or b_usd is not None:
        budget = BudgetLimit(tokens=b_tok, usd=None if b_usd is None else Decimal(b_usd), period=b_period)
    return {
        "models": None if models is None else tuple(orjson.loads(models)),
        "rpm": rpm,
        "tpm": tpm,
        "budget": budget,
        "managed_by": managed_by,
        "created_at": utc(created),
        "updated_at": utc(updated),
        "revoked_at": utc(revoked),
    }


def _tenant(row: tuple[Any, ...]) -> TenantRecord:
    return TenantRecord(id=row[0], name=row[1], **_limits(row[2:]))


def _team(row: tuple[Any, ...]) -> TeamRecord:
    return TeamRecord(id=row[0], tenant=row[1], name=row[2], **_limits(row[3:]))


def _key(row: tuple[Any, ...]) -> KeyRecord:
    kid, key_hash, prefix, name, tenant, team, role, last_used, expires = row[:9]
    return KeyRecord(
        id=kid,
        name=name,
        prefix=prefix,
        tenant=tenant,
        team=team,
        last_used_at=utc(last_used),
        expires_at=utc(expires),
        role=role,
        key_hash=key_hash,
        **_limits(row[9:]),
    )


def _epoch(value: datetime | float | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    if value.tzinfo is None:
        raise KeyStoreError(
            "expires_at needs a time zone (UTC)", status_code=422, code="invalid_field", param="expires_at"
        )
    return value.timestamp()


class KeyStore:
    """See the module docstring."""

    def __init__(self, dialect: Dialect) -> None:
        self._d = dialect
        self._lock = threading.RLock()
        self._conn: Any = None
        with self._lock:
            self._d.migrate(self._connection())

    @staticmethod
    def open(url: str, *, table_prefix: str = "llm_") -> KeyStore:
        """``postgresql://…`` or an SQLite path / ``sqlite:///path``; creates or migrates the tables."""
        return KeyStore(dialect_for(url, table_prefix))

    def __repr__(self) -> str:
        return f"KeyStore({self._d!r})"

    # -- plumbing -----------------------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._d.connect()
        return self._conn

    def _run(self, fn: Callable[[Any], _T], *, write: bool = False) -> _T:
        with self._lock:
            conn = self._connection()
            try:
                if not write:
                    return fn(conn)
                with self._d.transaction(conn):
                    out = fn(conn)
                    self._exec(conn, "UPDATE {p}keys_state SET value = value + 1 WHERE name = 'version'")
                    return out
            except KeyStoreError:
                raise
            except Exception:  # a broken connection is not reused
                self._conn = None
                try:
                    conn.close()
                except Exception:
                    pass
                raise

    def _exec(self, conn: Any, text: str, params: tuple[Any, ...] = ()) -> Any:
        return self._d.execute(conn, text, params)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    # -- change tracking ------------------------------------------------------------------------------
    def version(self) -> int:
        """The change counter: it moves on every change of a tenant, team or key."""
        row = self._run(lambda c: self._exec(c, "SELECT value FROM {p}keys_state WHERE name = 'version'").fetchone())
        return int(row[0]) if row else 0

    def schema_version(self) -> int:
        row = self._run(lambda c: self._exec(c, "SELECT value FROM {p}keys_state WHERE name = 'schema'").fetchone())
        return int(row[0]) if row else 0

    def snapshot(self) -> Snapshot:
        """Every tenant, team and key, with the version they were read at (one consistent read)."""

        def read(c: Any) -> Snapshot:
            # the version first: a change landing during the reads moves it past this one, so the next poll
            # reads again
            v = self._exec(c, "SELECT value FROM {p}keys_state WHERE name = 'version'").fetchone()
            tenants = tuple(_tenant(r) for r in self._exec(c, f"SELECT {_TENANT_COLS} FROM {{p}}tenants").fetchall())
            teams = tuple(_team(r) for r in self._exec(c, f"SELECT {_TEAM_COLS} FROM {{p}}teams").fetchall())
            keys = tuple(_key(r) for r in self._exec(c, f"SELECT {_KEY_COLS} FROM {{p}}api_keys").fetchall())
            return Snapshot(int(v[0]) if v else 0, tenants, teams, keys)

        return self._run(read)

    def touch(self, used: Mapping[str, float]) -> None:
        """Record last use of keys (``{key id: epoch seconds}``) in one batch; does not move ``version``."""
        if not used:
            return
        rows = [(ts, kid, ts) for kid, ts in used.items()]

        def write(c: Any) -> None:
            with self._d.transaction(c):
                sql = self._d.sql(
                    "UPDATE {p}api_keys SET last_used_at = ? "
                    "WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)"
                )
                c.executemany(sql, rows) if hasattr(c, "executemany") else c.cursor().executemany(sql, rows)

        self._run(write)

    # -- reads ------------------------------------------------------------------------------------------
    def list_tenants(self) -> list[TenantRecord]:
        rows = self._run(lambda c: self._exec(c, f"SELECT {_TENANT_COLS} FROM {{p}}tenants ORDER BY id").fetchall())
        return [_tenant(r) for r in rows]

    def _get(self, cols: str, table: str, rec_id: str, what: str) -> tuple[Any, ...]:
        """The row of one object (404 ``not_found`` when there is none)."""
        row = self._run(lambda c: self._exec(c, f"SELECT {cols} FROM {{p}}{table} WHERE id = ?", (rec_id,)).fetchone())
        if row is None:
            raise KeyStoreError(f"no {what} {rec_id!r}", status_code=404, code="not_found")
        return tuple(row)

    def get_tenant(self, tenant_id: str) -> TenantRecord:
        return _tenant(self._get(_TENANT_COLS, "tenants", tenant_id, "tenant"))

    def list_teams(self, tenant: str | None = None) -> list[TeamRecord]:
        where, params = ("WHERE tenant_id = ? ", (tenant,)) if tenant is not None else ("", ())
        rows = self._run(
            lambda c: self._exec(
                c, f"SELECT {_TEAM_COLS} FROM {{p}}teams {where}ORDER BY tenant_id, id", params
            ).fetchall()
        )
        return [_team(r) for r in rows]

    def get_team(self, team_id: str) -> TeamRecord:
        return _team(self._get(_TEAM_COLS, "teams", team_id, "team"))

    def list_keys(self, tenant: str | None = None, team: str | None = None) -> list[KeyRecord]:
        """Keys (revoked and expired ones too), newest first; ``tenant`` / ``team`` narrow the list."""
        conds, params = [], []
        if tenant is not None:
            conds.append("tenant_id = ?")
            params.append(tenant)
        if team is not None:
            conds.append("team_id = ?")
            params.append(team)
        where = f"WHERE {' AND '.join(conds)} " if conds else ""
        rows = self._run(
            lambda c: self._exec(
                c, f"SELECT {_KEY_COLS} FROM {{p}}api_keys {where}ORDER BY created_at DESC, id", tuple(params)
            ).fetchall()
        )
        return [_key(r) for r in rows]

    def get_key(self, key_id: str) -> KeyRecord:
        return _key(self._get(_KEY_COLS, "api_keys", key_id, "API key"))

    # -- writes: tenants ----------------------------------------------------------------------------------
    @staticmethod
    def _api_managed(rec: TenantRecord | TeamRecord | KeyRecord, what: str) -> None:
        if rec.managed_by == "config":
            raise KeyStoreError(
                f"{what} {rec.id!r} is declared in the config file; change it there (the API cannot)",
                status_code=409,
                code="managed_by_config",
            )

    def create_tenant(
        self,
        tenant_id: str,
        name: str | None = None,
        *,
        models: list[str] | tuple[str, ...] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: BudgetLimit | None = None,
    ) -> TenantRecord:
        _check_id(tenant_id, "id")
        now = time.time()

        def write(c: Any) -> None:
            if self._exec(c, "SELECT 1 FROM {p}tenants WHERE id = ?", (tenant_id,)).fetchone():
                raise KeyStoreError(f"tenant {tenant_id!r} exists", status_code=409, code="conflict", param="id")
            self._exec(
                c,
                f"INSERT INTO {{p}}tenants ({_TENANT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'api', ?, ?, NULL)",
                (tenant_id, name or tenant_id, *_limit_values(models, rpm, tpm, budget), now, now),
            )

        self._run(write, write=True)
        return self.get_tenant(tenant_id)

    def _update(self, table: str, rec_id: str, changes: Mapping[str, Any]) -> None:
        cols: dict[str, Any] = {}
        for name, value in changes.items():
            if value is UNSET:
                continue
            if name == "models":
                cols["models"] = _models_value(value)
            elif name == "budget":
                cols.update(zip(("budget_tokens", "budget_usd", "budget_period"), _budget_values(value), strict=True))
            else:
                cols[name] = value
        cols["updated_at"] = time.time()
        sets = ", ".join(f"{col} = ?" for col in cols)
        self._run(
            lambda c: self._exec(c, f"UPDATE {{p}}{table} SET {sets} WHERE id = ?", (*cols.values(), rec_id)),
            write=True,
        )

    def _change(self, table: str, rec: Any, what: str, changes: Mapping[str, Any]) -> None:
        """Change a tenant or a team the API owns (409 ``managed_by_config`` for one the config declares, before
        the fields are looked at)."""
        self._api_managed(rec, what)
        self._update(table, rec.id, _only(changes, ("name", "models", "rpm", "tpm", "budget")))

    def _revoke(self, table: str, rec: Any, what: str) -> None:
        """Mark an object the API owns revoked (once: revoking it again keeps the first time)."""
        self._api_managed(rec, what)
        if rec.revoked_at is None:
            self._update(table, rec.id, {"revoked_at": time.time()})

    def update_tenant(self, tenant_id: str, **changes: Any) -> TenantRecord:
        """Change ``name``, ``models``, ``rpm``, ``tpm`` or ``budget`` (None clears; omitted keeps)."""
        self._change("tenants", self.get_tenant(tenant_id), "tenant", changes)
        return self.get_tenant(tenant_id)

    def revoke_tenant(self, tenant_id: str) -> TenantRecord:
        """Disable a tenant: every key of it is refused from now on (its keys and teams are kept)."""
        self._revoke("tenants", self.get_tenant(tenant_id), "tenant")
        return self.get_tenant(tenant_id)

    # -- writes: teams --------------------------------------------------------------------------------------
    def _active_tenant(self, tenant_id: str) -> TenantRecord:
        try:
            tenant = self.get_tenant(tenant_id)
        except KeyStoreError:
            raise KeyStoreError(
                f"no tenant {tenant_id!r}; create it first", status_code=422, code="unknown_tenant", param="tenant"
            ) from None
        if tenant.revoked_at is not None:
            raise KeyStoreError(f"tenant {tenant_id!r} is revoked", status_code=409, code="revoked", param="tenant")
        return tenant

    def create_team(
        self,
        tenant: str,
        name: str,
        *,
        team_id: str | None = None,
        models: list[str] | tuple[str, ...] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: BudgetLimit | None = None,
    ) -> TeamRecord:
        self._active_tenant(tenant)
        tid = _check_id(team_id, "id") if team_id is not None else f"team_{new_id(8)}"
        now = time.time()

        def write(c: Any) -> None:
            if self._exec(c, "SELECT 1 FROM {p}teams WHERE id = ?", (tid,)).fetchone():
                raise KeyStoreError(f"team {tid!r} exists", status_code=409, code="conflict", param="id")
            self._exec(
                c,
                f"INSERT INTO {{p}}teams ({_TEAM_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'api', ?, ?, NULL)",
                (tid, tenant, name or tid, *_limit_values(models, rpm, tpm, budget), now, now),
            )

        self._run(write, write=True)
        return self.get_team(tid)

    def update_team(self, team_id: str, **changes: Any) -> TeamRecord:
        """Change ``name``, ``models``, ``rpm``, ``tpm`` or ``budget`` (None clears; omitted keeps)."""
        self._change("teams", self.get_team(team_id), "team", changes)
        return self.get_team(team_id)

    def revoke_team(self, team_id: str) -> TeamRecord:
        """Disable a team: every key of it is refused from now on."""
        self._revoke("teams", self.get_team(team_id), "team")
        return self.get_team(team_id)

    # -- writes: keys -----------------------------------------------------------------------------------------
    def _check_team(self, tenant: str, team: str | None) -> None:
        if team is None:
            return
        try:
            rec = self.get_team(team)
        except KeyStoreError:
            rec = None
        if rec is None or rec.tenant != tenant:
            raise KeyStoreError(
                f"no team {team!r} in tenant {tenant!r}", status_code=422, code="unknown_team", param="team"
            )
        if rec.revoked_at is not None:
            raise KeyStoreError(f"team {team!r} is revoked", status_code=409, code="revoked", param="team")

    def create_key(
        self,
        tenant: str,
        name: str | None = None,
        *,
        team: str | None = None,
        role: str = "user",
        models: list[str] | tuple[str, ...] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: BudgetLimit | None = None,
        expires_at: datetime | float | None = None,
    ) -> tuple[KeyRecord, str]:
        """A new key: (its record, the plain key — shown this once, only its sha256 is stored)."""
        if role not in ROLES:
            raise KeyStoreError(
                f"role must be one of {', '.join(ROLES)}", status_code=422, code="invalid_field", param="role"
            )
        self._active_tenant(tenant)
        self._check_team(tenant, team)
        kid = new_id(12)
        plain, digest = new_key(kid)
        now = time.time()
        self._run(
            lambda c: self._exec(
                c,
                f"INSERT INTO {{p}}api_keys ({_KEY_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, 'api', ?, ?, NULL)",
                (
                    kid,
                    digest,
                    f"{KEY_PREFIX}{kid}",
                    name or kid,
                    tenant,
                    team,
                    role,
                    _epoch(expires_at),
                    *_limit_values(models, rpm, tpm, budget),
                    now,
                    now,
                ),
            ),
            write=True,
        )
        return self.get_key(kid), plain

    def update_key(self, key_id: str, **changes: Any) -> KeyRecord:
        """Change ``name``, ``team``, ``models``, ``rpm``, ``tpm``, ``budget`` or ``expires_at`` (None clears)."""
        rec = self.get_key(key_id)
        self._api_managed(rec, "API key")
        changes = _only(changes, ("name", "team", "models", "rpm", "tpm", "budget", "expires_at"))
        if changes.get("team", UNSET) is not UNSET:
            self._check_team(rec.tenant, changes["team"])
        if "team" in changes:
            changes["team_id"] = changes.pop("team")
        if "expires_at" in changes and changes["expires_at"] is not UNSET:
            changes["expires_at"] = _epoch(changes["expires_at"])
        self._update("api_keys", key_id, changes)
        return self.get_key(key_id)

    def rotate_key(self, key_id: str) -> tuple[KeyRecord, str]:
        """A new secret for the same key (id, limits and budget kept); the old one stops working at once."""
        rec = self.get_key(key_id)
        self._api_managed(rec, "API key")
        if rec.revoked_at is not None:
            raise KeyStoreError(f"API key {key_id!r} is revoked", status_code=409, code="revoked")
        plain, digest = new_key(key_id)
        self._update("api_keys", key_id, {"key_hash": digest})
        return self.get_key(key_id), plain

    def revoke_key(self, key_id: str) -> KeyRecord:
        """Refuse the key from now on (every replica within a second); the record stays, for the ledger."""
        self._revoke("api_keys", self.get_key(key_id), "API key")
        return self.get_key(key_id)

    # -- the config's objects -------------------------------------------------------------------------------------
    def seed(self, config: GatewayConfig) -> None:
        """Write the tenants, teams and keys the config declares (``managed_by="config"``; they replace objects
        of the same id), and delete config-managed objects the config no longer declares. Idempotent; several
        processes may seed at once."""
        from ._seed import seed_rows

        tenants, teams, keys = seed_rows(config)
        d = self._d
        now = time.time()

        def upsert(c: Any, table: str, cols: str, row: tuple[Any, ...], *keep: str) -> None:
            names = [n.strip() for n in cols.split(",")]
            update = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n not in ("id", *keep))
            marks = ", ".join("?" for _ in names)
            self._exec(
                c, f"INSERT INTO {{p}}{table} ({cols}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {update}", row
            )

        def write(c: Any) -> None:
            with d.transaction(c, exclusive=True):
                for table, rows in (("tenants", tenants), ("teams", teams), ("api_keys", keys)):
                    ids = [r[0] for r in rows]
                    old = [r[0] for r in self._exec(c, f"SELECT id FROM {{p}}{table} WHERE managed_by = 'config'")]
                    for gone in set(old) - set(ids):
                        self._exec(c, f"DELETE FROM {{p}}{table} WHERE id = ?", (gone,))
                for row in tenants:
                    upsert(c, "tenants", _TENANT_COLS, (*row, now, now, None), "created_at")
                for row in teams:
                    upsert(c, "teams", _TEAM_COLS, (*row, now, now, None), "created_at")
                for row in keys:  # a declared key wins over any stored key with the same secret
                    self._exec(c, "DELETE FROM {p}api_keys WHERE key_hash = ? AND id <> ?", (row[1], row[0]))
                    upsert(c, "api_keys", _KEY_COLS, (*row, now, now, None), "created_at", "last_used_at")
                self._exec(c, "UPDATE {p}keys_state SET value = value + 1 WHERE name = 'version'")

        self._run(write)

    # -- asyncio ----------------------------------------------------------------------------------------------------
    async def arun(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run one of this store's methods in a worker thread: ``await store.arun(store.revoke_key, kid)``."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def alist_keys(self, tenant: str | None = None, team: str | None = None) -> list[KeyRecord]:
        return await self.arun(self.list_keys, tenant, team)

    async def aget_key(self, key_id: str) -> KeyRecord:
        return await self.arun(self.get_key, key_id)

    async def acreate_key(self, tenant: str, name: str | None = None, **kwargs: Any) -> tuple[KeyRecord, str]:
        return await self.arun(self.create_key, tenant, name, **kwargs)

    async def arevoke_key(self, key_id: str) -> KeyRecord:
        return await self.arun(self.revoke_key, key_id)

    async def alist_teams(self, tenant: str | None = None) -> list[TeamRecord]:
        return await self.arun(self.list_teams, tenant)

    async def alist_tenants(self) -> list[TenantRecord]:
        return await self.arun(self.list_tenants)


def _only(changes: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = set(changes) - set(allowed)
    if unknown:
        raise KeyStoreError(
            f"cannot change {', '.join(sorted(unknown))}; changeable: {', '.join(allowed)}",
            status_code=422,
            code="invalid_field",
            param=sorted(unknown)[0],
        )
    return dict(changes)
