"""The key store's two SQL dialects (SQLite, PostgreSQL) and its versioned migrations.

A migration is applied at open, inside one transaction that also records the schema version (PostgreSQL: under
an advisory lock; SQLite: ``BEGIN IMMEDIATE``), so any number of processes may open the same database at once
and each step runs exactly once. Opening a database whose schema is newer than this code knows is refused.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import LLMConfigurationError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Dialect", "PostgresDialect", "SqliteDialect", "dialect_for"]

_PREFIX_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")

#: columns every level shares: model allow-list (JSON), rate limits, budget
_LIMITS = """
    models TEXT,
    rpm BIGINT,
    tpm BIGINT,
    budget_tokens BIGINT,
    budget_usd TEXT,
    budget_period TEXT,
    managed_by TEXT NOT NULL,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL,
    revoked_at {real}"""

#: (version, what it does, statements); ``{p}`` is the table prefix, ``{real}`` the dialect's float type
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "tenants, teams and API keys",
        (
            "CREATE TABLE IF NOT EXISTS {p}tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL," + _LIMITS + ")",
            "CREATE TABLE IF NOT EXISTS {p}teams (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT NOT NULL,"
            + _LIMITS
            + ")",
            "CREATE INDEX IF NOT EXISTS {p}teams_tenant ON {p}teams (tenant_id)",
            "CREATE TABLE IF NOT EXISTS {p}api_keys (id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, "
            "prefix TEXT NOT NULL, name TEXT NOT NULL, tenant_id TEXT NOT NULL, team_id TEXT, "
            "role TEXT NOT NULL, last_used_at {real}, expires_at {real}," + _LIMITS + ")",
            "CREATE INDEX IF NOT EXISTS {p}api_keys_tenant ON {p}api_keys (tenant_id)",
        ),
    ),
    (
        2,
        "the change counter every replica polls",
        (
            "INSERT INTO {p}keys_state (name, value) SELECT 'version', 0 "
            "WHERE NOT EXISTS (SELECT 1 FROM {p}keys_state WHERE name = 'version')",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class Dialect:
    """How to connect, run a transaction and spell a parameter; the migrations are shared."""

    placeholder = "?"
    real = "REAL"

    def __init__(self, prefix: str) -> None:
        if not _PREFIX_RE.match(prefix):
            raise LLMConfigurationError(f"key store table prefix {prefix!r} is not a plain SQL identifier")
        self.prefix = prefix

    def sql(self, text: str) -> str:
        text = text.replace("{p}", self.prefix).replace("{real}", self.real)
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def connect(self) -> Any:
        raise NotImplementedError

    @contextmanager
    def transaction(self, conn: Any, *, exclusive: bool = False) -> Iterator[None]:
        raise NotImplementedError
        yield  # pragma: no cover

    def execute(self, conn: Any, text: str, params: Sequence[Any] = ()) -> Any:
        return conn.execute(self.sql(text), tuple(params))

    def migrate(self, conn: Any) -> int:
        """Bring the schema to :data:`SCHEMA_VERSION`; returns the version found before."""
        with self.transaction(conn, exclusive=True):
            self.execute(
                conn, "CREATE TABLE IF NOT EXISTS {p}keys_state (name TEXT PRIMARY KEY, value BIGINT NOT NULL)"
            )
            row = self.execute(conn, "SELECT value FROM {p}keys_state WHERE name = 'schema'").fetchone()
            found = int(row[0]) if row else 0
            if found > SCHEMA_VERSION:
                raise LLMConfigurationError(
                    f"the key store's schema is version {found}, newer than this llm-connect knows "
                    f"({SCHEMA_VERSION}); upgrade llm-connect"
                )
            for version, _, statements in MIGRATIONS:
                if version > found:
                    for stmt in statements:
                        self.execute(conn, stmt)
            if found < SCHEMA_VERSION:
                if row:
                    self.execute(conn, "UPDATE {p}keys_state SET value = ? WHERE name = 'schema'", (SCHEMA_VERSION,))
                else:
                    self.execute(
                        conn, "INSERT INTO {p}keys_state (name, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
                    )
        return found


class SqliteDialect(Dialect):
    def __init__(self, path: str, prefix: str) -> None:
        super().__init__(prefix)
        if path == ":memory:":
            raise LLMConfigurationError("the SQLite key store needs a file (every replica and the CLI read it)")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"sqlite:///{self.path}"

    def connect(self) -> Any:
        import sqlite3

        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        # switching a new file to WAL takes an exclusive lock that SQLite may refuse at once, without waiting out
        # the busy timeout, while another process opens the same file: retry it for as long as the timeout
        deadline = time.monotonic() + 30
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    conn.close()
                    raise
                time.sleep(0.01)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def transaction(self, conn: Any, *, exclusive: bool = False) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class PostgresDialect(Dialect):
    placeholder = "%s"
    real = "DOUBLE PRECISION"

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(prefix)
        from ..usage.ledger import _import_psycopg

        self._psycopg = _import_psycopg()
        self.url = url

    def __repr__(self) -> str:
        return "postgresql://…"

    def connect(self) -> Any:
        return self._psycopg.connect(self.url, connect_timeout=10, autocommit=True)

    @contextmanager
    def transaction(self, conn: Any, *, exclusive: bool = False) -> Iterator[None]:
        with conn.transaction():
            if exclusive:  # concurrent first opens and config seeding of several replicas run one at a time
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"llm_connect_keys:{self.prefix}",))
            yield


def dialect_for(url: str, prefix: str) -> Dialect:
    low = url.lower()
    if low.startswith(("postgresql://", "postgres://")):
        return PostgresDialect(url, prefix)
    if low.startswith("sqlite:///"):
        return SqliteDialect(url[len("sqlite:///") :], prefix)
    if "://" in url:
        raise LLMConfigurationError(f"unsupported key store URL {url!r} (use a file path or postgresql://...)")
    return SqliteDialect(url, prefix)
