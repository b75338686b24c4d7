"""Fixtures for the key-store tests: an SQLite file in tmp_path, or PostgreSQL on 127.0.0.1:5432 with a table
prefix of its own (dropped afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from llm_connect.keys import KeyStore

PG_URL = os.environ.get("LLM_CONNECT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TABLES = ("tenants", "teams", "api_keys", "keys_state")


def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=2):
            return True
    except Exception:
        return False


def drop_tables(prefix: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for t in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {prefix}{t}")


@pytest.fixture
def pg_prefix() -> Iterator[str]:
    """A fresh table prefix in the test PostgreSQL database."""
    if not pg_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    prefix = f"k{uuid.uuid4().hex[:10]}_"
    yield prefix
    drop_tables(prefix)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, table prefix) of an empty key store, on each dialect."""
    if request.param == "sqlite":
        yield str(tmp_path / "keys.sqlite3"), "llm_"
    else:
        yield PG_URL, request.getfixturevalue("pg_prefix")


@pytest.fixture
def store(store_target: tuple[str, str]) -> Iterator[KeyStore]:
    """An open, empty key store on each dialect (closed after the test)."""
    from llm_connect.keys import KeyStore

    url, prefix = store_target
    s = KeyStore.open(url, table_prefix=prefix)
    yield s
    s.close()
