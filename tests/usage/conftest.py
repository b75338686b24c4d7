"""Fixtures for the usage tests: a SQLite ledger in tmp_path and a PostgreSQL ledger on 127.0.0.1:5432."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from llm_connect.usage import Ledger, UsageEvent

PG_URL = os.environ.get("LLM_CONNECT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=2):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_url() -> str:
    if not _pg_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    return PG_URL


def _drop(url: str, table: str) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        led = Ledger.open(tmp_path / "usage.sqlite3")
        yield led
        led.close()
    else:
        url = request.getfixturevalue("pg_url")
        table = f"t_usage_{uuid.uuid4().hex[:12]}"
        led = Ledger.open(url, table=table)
        yield led
        led.close()
        _drop(url, table)


T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _make_event(i: int, **kw) -> UsageEvent:
    """A deterministic event: tenant a/b alternating, agent x/y/z, one day per 10 events."""
    base = dict(
        request_id=f"req-{i}",
        timestamp=T0 + timedelta(days=i // 10, seconds=i),
        provider="openai",
        model="gpt-4o-mini" if i % 2 else "gpt-4o",
        tenant_id="a" if i % 2 == 0 else "b",
        agent="xyz"[i % 3],
        thread_id=f"th-{i % 4}",
        task_type="triage",
        input_tokens=100 + i,
        output_tokens=10 + i,
        cache_read_tokens=i,
        cache_write_tokens=0,
        reasoning_tokens=i // 2,
        total_tokens=110 + 2 * i,
        cost_usd=Decimal("0.000123") * (i + 1),
        latency_ms=float(i),
        success=i % 7 != 0,
        error_type=None if i % 7 else "LLMRateLimitError",
        streamed=bool(i % 2),
        deployment=f"openai:{'gpt-4o-mini' if i % 2 else 'gpt-4o'}",
        metadata={"i": i, "tag": "t"},
    )
    base.update(kw)
    return UsageEvent(**base)


@pytest.fixture
def make_event():
    """``make_event(i, **overrides)`` -> a deterministic UsageEvent (see :func:`_make_event`)."""
    return _make_event
