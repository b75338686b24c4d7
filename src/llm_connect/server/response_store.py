"""Stored responses of the Responses API (``store: true``), in SQLite (default) or PostgreSQL.

One row per response: its id, the tenant it belongs to, when it was made and when it expires, the model, the
Response object as the client got it, and the conversation it ends (every item up to and including its own
output: what a later request's ``previous_response_id`` continues, in one read). Reads and writes run on one
thread per store that owns the connection (``asyncio`` callers never block on I/O); a row is written after the
call's ledger row, and only for ``store: true``. Every read is scoped to a tenant: another tenant's id is "not
found". Rows past ``ttl_days`` are not returned and are deleted as writes go by.

::

    store = ResponseStore.open("/path/responses.sqlite3", ttl_days=30)   # or "postgresql://…"
    await store.put(StoredResponse(resp_id, tenant, created_at, model, body, items))
    rec = await store.get(resp_id, tenant)        # None: unknown, expired or another tenant's
    await store.delete(resp_id, tenant)           # True when it was there
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from ..errors import LLMConfigurationError

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "PostgresResponseStore",
    "ResponseStore",
    "ResponseStoreHolder",
    "SqliteResponseStore",
    "StoredResponse",
]

_T = TypeVar("_T")
_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: expired rows are deleted every this many writes
_PURGE_EVERY = 256


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    tenant: str
    created_at: float
    model: str
    #: the Response object as sent
    response: dict[str, Any]
    #: the conversation up to and including this response's output items
    items: list[dict[str, Any]]


class ResponseStore(ABC):
    """The base of both dialects: the store's thread, TTL, and the async API."""

    def __init__(self, *, table: str, ttl_days: float | None) -> None:
        if not _TABLE_RE.match(table):
            raise LLMConfigurationError(f"response store table name {table!r} is not a plain SQL identifier")
        self.table = table
        self.ttl = None if ttl_days is None else float(ttl_days) * 86400.0
        from concurrent.futures import ThreadPoolExecutor  # imported when a store is opened, not at start-up

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-connect-responses")
        self._local = threading.local()
        self._writes = 0

    @staticmethod
    def open(
        target: str | os.PathLike[str], *, table: str = "llm_responses", ttl_days: float | None = 30
    ) -> ResponseStore:
        """``postgresql://…`` -> PostgresResponseStore; ``sqlite:///path`` or a file path -> SqliteResponseStore.
        Creates the table (raises on a database that cannot be reached or written)."""
        s = os.fspath(target)
        low = s.lower()
        if low.startswith(("postgresql://", "postgres://")):
            return PostgresResponseStore(s, table=table, ttl_days=ttl_days)
        if low.startswith("sqlite:///"):
            s = s[len("sqlite:///") :]
        elif "://" in s:
            raise LLMConfigurationError(f"unsupported response store URL {s!r} (use a file path or postgresql://...)")
        return SqliteResponseStore(s, table=table, ttl_days=ttl_days)

    # -- dialect hooks ----------------------------------------------------------------------------
    @abstractmethod
    def _connect(self) -> Any: ...

    @abstractmethod
    def _put(self, conn: Any, row: tuple[Any, ...]) -> None: ...

    @abstractmethod
    def _get(self, conn: Any, resp_id: str, tenant: str, now: float) -> tuple[Any, ...] | None: ...

    @abstractmethod
    def _delete(self, conn: Any, resp_id: str, tenant: str, now: float) -> bool: ...

    @abstractmethod
    def _purge(self, conn: Any, now: float) -> None: ...

    # -- the thread -------------------------------------------------------------------------------
    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _run(self, fn: Callable[[Any], _T]) -> _T:
        try:
            return fn(self._conn())
        except Exception:  # a broken connection is not reused
            conn, self._local.conn = getattr(self._local, "conn", None), None
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
            raise

    async def _call(self, fn: Callable[[Any], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, fn)

    # -- API --------------------------------------------------------------------------------------
    async def put(self, rec: StoredResponse) -> None:
        """Store ``rec`` (an id stored before is replaced); returns once committed."""
        expires = None if self.ttl is None else rec.created_at + self.ttl
        row = (
            rec.id,
            rec.tenant,
            rec.created_at,
            expires,
            rec.model,
            orjson.dumps(rec.response).decode(),
            orjson.dumps(rec.items).decode(),
        )
        self._writes += 1
        purge = self.ttl is not None and self._writes % _PURGE_EVERY == 0

        def work(conn: Any) -> None:
            self._put(conn, row)
            if purge:
                self._purge(conn, time.time())

        await self._call(work)

    async def get(self, resp_id: str, tenant: str) -> StoredResponse | None:
        """The stored response, or None when it is unknown, expired or another tenant's."""
        now = time.time()
        row = await self._call(lambda conn: self._get(conn, resp_id, tenant, now))
        if row is None:
            return None
        rid, ten, created, model, response, items = row
        return StoredResponse(rid, ten, float(created), model, _json(response), _json(items))

    async def delete(self, resp_id: str, tenant: str) -> bool:
        now = time.time()
        return await self._call(lambda conn: self._delete(conn, resp_id, tenant, now))

    def ping(self) -> None:
        """Raise unless the database answers (synchronously, in the store's thread)."""
        self._pool.submit(self._run, lambda conn: conn.execute("SELECT 1")).result(timeout=10)

    def close(self) -> None:
        """Close the connection and stop the store's thread."""

        def shut() -> None:
            conn, self._local.conn = getattr(self._local, "conn", None), None
            if conn is not None:
                conn.close()

        try:
            self._pool.submit(shut).result(timeout=10)
        except Exception:
            pass
        self._pool.shutdown(wait=True)


def _json(v: Any) -> Any:
    return orjson.loads(v) if isinstance(v, (str, bytes)) else v


_COLS = "id, tenant_id, created_at, model, response, items"


class SqliteResponseStore(ResponseStore):
    """Stored responses in one SQLite file (WAL, ``synchronous=NORMAL``)."""

    def __init__(self, path: str | os.PathLike[str], *, table: str = "llm_responses", ttl_days: float | None = 30):
        super().__init__(table=table, ttl_days=ttl_days)
        if str(path) == ":memory:":
            raise LLMConfigurationError("the SQLite response store needs a file")
        import sqlite3

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(
                f"""
                CREATE TABLE IF NOT EXISTS {table} (
                    id TEXT PRIMARY KEY,
                    tenant_id TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    expires_at REAL,
                    model TEXT,
                    response TEXT NOT NULL,
                    items TEXT NOT NULL
                );
                CREATE INDEX IF NOT EXISTS {table}_expires ON {table} (expires_at);
                """
            )
        finally:
            conn.close()

    def __repr__(self) -> str:
        return f"SqliteResponseStore({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        import sqlite3

        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _put(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
        conn.execute(
            f"INSERT OR REPLACE INTO {self.table} (id, tenant_id, created_at, expires_at, model, response, items) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            row,
        )

    def _get(self, conn: sqlite3.Connection, resp_id: str, tenant: str, now: float) -> tuple[Any, ...] | None:
        cur = conn.execute(
            f"SELECT {_COLS} FROM {self.table} WHERE id = ? AND tenant_id = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (resp_id, tenant, now),
        )
        return cur.fetchone()

    def _delete(self, conn: sqlite3.Connection, resp_id: str, tenant: str, now: float) -> bool:
        cur = conn.execute(
            f"DELETE FROM {self.table} WHERE id = ? AND tenant_id = ? AND (expires_at IS NULL OR expires_at > ?)",
            (resp_id, tenant, now),
        )
        return cur.rowcount > 0

    def _purge(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute(f"DELETE FROM {self.table} WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))


class PostgresResponseStore(ResponseStore):
    """Stored responses in a PostgreSQL table (``response`` and ``items`` JSONB)."""

    def __init__(self, url: str, *, table: str = "llm_responses", ttl_days: float | None = 30):
        super().__init__(table=table, ttl_days=ttl_days)
        from ..usage.ledger import _import_psycopg

        self._psycopg = _import_psycopg()
        self.url = url
        with self._connect() as conn:
            # the advisory lock serialises concurrent first-time schema creation across processes
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"llm_connect_responses:{table}",))
            conn.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {table} (
                    id TEXT PRIMARY KEY,
                    tenant_id TEXT NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL,
                    expires_at DOUBLE PRECISION,
                    model TEXT,
                    response JSONB NOT NULL,
                    items JSONB NOT NULL
                )
                """
            )
            conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_expires ON {table} (expires_at)")
            conn.commit()

    def __repr__(self) -> str:
        return f"PostgresResponseStore(table={self.table!r})"

    def _connect(self) -> Any:
        return self._psycopg.connect(self.url, connect_timeout=10, autocommit=True)

    def _put(self, conn: Any, row: tuple[Any, ...]) -> None:
        conn.execute(
            f"INSERT INTO {self.table} (id, tenant_id, created_at, expires_at, model, response, items) "
            "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb) ON CONFLICT (id) DO UPDATE SET "
            "tenant_id = EXCLUDED.tenant_id, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, "
            "model = EXCLUDED.model, response = EXCLUDED.response, items = EXCLUDED.items",
            row,
        )

    def _get(self, conn: Any, resp_id: str, tenant: str, now: float) -> tuple[Any, ...] | None:
        cur = conn.execute(
            f"SELECT {_COLS} FROM {self.table} WHERE id = %s AND tenant_id = %s "
            "AND (expires_at IS NULL OR expires_at > %s)",
            (resp_id, tenant, now),
        )
        return cur.fetchone()

    def _delete(self, conn: Any, resp_id: str, tenant: str, now: float) -> bool:
        cur = conn.execute(
            f"DELETE FROM {self.table} WHERE id = %s AND tenant_id = %s AND (expires_at IS NULL OR expires_at > %s)",
            (resp_id, tenant, now),
        )
        return bool(cur.rowcount)

    def _purge(self, conn: Any, now: float) -> None:
        conn.execute(f"DELETE FROM {self.table} WHERE expires_at IS NOT NULL AND expires_at <= %s", (now,))


class ResponseStoreHolder:
    """The engine's store, opened on its first use (in a thread: opening creates the table) and closed with
    the engine. ``await holder.get()`` is None when the config stores nothing (``responses.store: off``)."""

    def __init__(self, url: str | None, *, table: str = "llm_responses", ttl_days: float | None = 30) -> None:
        self.url = url
        self.table = table
        self.ttl_days = ttl_days
        self.store: ResponseStore | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> ResponseStore | None:
        if self.store is not None or self.url is None:
            return self.store
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.store is None:
                url = self.url
                try:
                    self.store = await asyncio.to_thread(
                        ResponseStore.open, url, table=self.table, ttl_days=self.ttl_days
                    )
                except LLMConfigurationError:
                    raise
                except Exception as exc:  # a database that cannot be reached or written: 503, tried again next time
                    raise LLMConfigurationError(
                        f"the response store cannot be opened ({type(exc).__name__}: {exc})".replace("\n", " ")
                    ) from None
        return self.store

    def close(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            store.close()
