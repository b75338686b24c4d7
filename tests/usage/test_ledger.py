"""Ledger: SQLite and PostgreSQL round trips, idempotency, totals, async writes, tracker wiring."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from llm_connect.errors import LLMConfigurationError, LLMUsageError
from llm_connect.usage import Ledger, PostgresLedger, SqliteLedger, UsageTracker

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)  # as in conftest._make_event


def test_round_trip_preserves_every_field(ledger: Ledger, make_event) -> None:
    events = [make_event(i) for i in range(25)]
    events.append(make_event(99, cost_usd=None, tenant_id=None, agent=None, metadata={}, deployment=None))
    events.append(make_event(100, cost_usd=Decimal("0.000000075")))
    for e in events:
        assert ledger.record(e) is True
    back = ledger.query()
    assert back == sorted(events, key=lambda e: (e.timestamp, e.request_id))
    assert back[-1].cost_usd == Decimal("0.000000075")


def test_idempotent_on_request_id(ledger: Ledger, make_event) -> None:
    e = make_event(1)
    assert ledger.record(e) is True
    assert ledger.record(e) is False
    assert ledger.record(make_event(1, input_tokens=999_999)) is False  # same id: first write wins
    assert ledger.record_many([make_event(1), make_event(2), make_event(2), make_event(3)]) == 2
    assert ledger.count() == 3
    (row,) = ledger.totals("tenant", tenant_id="b")
    assert row["requests"] == 2 and row["input_tokens"] == 101 + 103  # req-1 and req-3, first writes


def _bulk_caught_up(led: SqliteLedger) -> None:
    """Wait until a checkpoint's bulk asked for is done (this test's writes come far faster than a server's)."""
    deadline = time.monotonic() + 10
    while led._bulk_pending and not led._bulk_done and time.monotonic() < deadline:
        time.sleep(0.001)


def test_sqlite_checkpoints_the_wal_after_answering_not_inside_commits(tmp_path, make_event) -> None:
    """SQLite's own checkpoint (inside a commit a caller waits for) is off; the ledger checkpoints every
    CHECKPOINT_ROWS rows outside the commits, so the WAL stays small and every row is kept."""
    led = SqliteLedger(tmp_path / "u.sqlite3")
    led.CHECKPOINT_ROWS = 10
    wal = tmp_path / "u.sqlite3-wal"
    try:
        for i in range(300):  # one commit each
            _bulk_caught_up(led)
            assert led.record(make_event(i)) is True
        with sqlite3.connect(tmp_path / "u.sqlite3") as conn:
            assert conn.execute("SELECT COUNT(*) FROM llm_usage").fetchone() == (300,)
        led_conn = led._connect()
        try:
            assert led_conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        finally:
            led_conn.close()
        # without the writer's checkpoints the WAL would hold every one of the 300 commits' pages
        page = 4096
        assert wal.stat().st_size < 300 * page, wal.stat().st_size
    finally:
        led.close()


def test_sqlite_records_do_not_wait_for_a_checkpoint_in_progress(tmp_path, make_event, monkeypatch) -> None:
    """The bulk of a checkpoint runs beside the writer: records are committed while one is stuck (a slow
    fsync), and once it is done the WAL starts over again (it does not grow with every commit)."""
    import threading

    gate = threading.Event()
    entered = threading.Event()
    bulk = SqliteLedger._checkpoint

    def slow_bulk(self: SqliteLedger) -> None:
        entered.set()
        gate.wait(30)
        bulk(self)

    monkeypatch.setattr(SqliteLedger, "_checkpoint", slow_bulk)
    led = SqliteLedger(tmp_path / "u.sqlite3")
    led.CHECKPOINT_ROWS = 5
    wal = tmp_path / "u.sqlite3-wal"
    try:
        for i in range(5):
            led.record(make_event(i))
        assert entered.wait(10)  # a checkpoint began, and is held
        done = threading.Event()

        def more() -> None:
            for i in range(5, 25):
                led.record(make_event(i))
            done.set()

        threading.Thread(target=more, daemon=True).start()
        assert done.wait(10), "records waited for the checkpoint"
        gate.set()
        for i in range(25, 400):
            _bulk_caught_up(led)
            led.record(make_event(i))
        assert led.count() == 400
        assert wal.stat().st_size < 400 * 4096, wal.stat().st_size  # ~5 pages per commit without restarts
    finally:
        gate.set()
        led.close()


def test_sqlite_batches_split_by_the_variable_limit_and_count_repeats_once(tmp_path, make_event, monkeypatch) -> None:
    connect = SqliteLedger._connect

    def small_limit(self: SqliteLedger) -> sqlite3.Connection:
        conn = connect(self)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)  # 4 rows of 21 columns per INSERT
        return conn

    monkeypatch.setattr(SqliteLedger, "_connect", small_limit)
    led = SqliteLedger(tmp_path / "u.sqlite3")
    try:
        fresh = [make_event(i) for i in range(100, 130)]
        assert led.record_many(fresh) == 30  # all new: the insert count alone answers
        assert led.record(make_event(0)) is True
        events = [make_event(i % 30) for i in range(90)]  # ids 0..29, each three times; 0 already stored
        assert led.record_many(events) == 29  # repeats and a known id: looked up, written again
        assert led.count() == 60
        assert led.record(make_event(29)) is False
    finally:
        led.close()


def test_sqlite_batch_write_flags_each_row_new_or_known(tmp_path, make_event) -> None:
    """All new ids: one INSERT statement, its own transaction. A batch with a repeated or stored id fails that
    statement whole and is written again after a look-up, and each row is flagged exactly."""
    led = SqliteLedger(tmp_path / "u.sqlite3")
    conn = led._connect()
    try:
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        rows = [led._to_row(make_event(i)) for i in (1, 2, 3)]
        assert led._write(conn, rows) == [True, True, True]
        assert [q.split()[0] for q in statements] == ["INSERT"]  # all new: one statement, its own transaction
        mixed = [led._to_row(make_event(i)) for i in (4, 2, 4, 5, 1)]
        assert led._write(conn, mixed) == [True, False, False, True, False]
        assert led.count() == 5
        assert not conn.in_transaction
    finally:
        conn.close()
        led.close()


def test_one_batch_keeps_every_value_exactly_and_counts_repeats_once(ledger: Ledger, make_event) -> None:
    """A batch written together (one statement on PostgreSQL) round-trips the extreme values a row can hold
    — 64-bit counts, a cost with 18 decimals, no cost, empty and non-ASCII metadata, a naive timestamp, an
    infinite latency —
    and a request_id repeated inside it or already stored is new only once."""
    ledger.record(make_event(0))
    odd = [
        make_event(1, input_tokens=2**63 - 1, total_tokens=2**63 - 1, cost_usd=Decimal("0.000000000000000001")),
        make_event(2, cost_usd=None, metadata={}, agent="agent \u00e9\u00e8 \u2603", error_type='quote " \\ back'),
        make_event(3, metadata={"nested": {"list": [1, 2.5, None, True], "s": "\u00fc"}}, latency_ms=0.1 + 0.2),
        make_event(4, timestamp=datetime(2025, 3, 1, 12, 0, 0), tenant_id=None, thread_id=None, task_type=None),
        make_event(6, latency_ms=float("inf")),
    ]
    assert ledger.record_many([*odd, make_event(0), odd[2], make_event(5)]) == 6
    back = {e.request_id: e for e in ledger.query()}
    assert len(back) == 7
    for e in odd:
        want = e if e.timestamp.tzinfo else dataclasses.replace(e, timestamp=e.timestamp.replace(tzinfo=UTC))
        assert back[e.request_id] == want


def test_postgres_drops_nul_characters_it_cannot_store(pg_url, make_event) -> None:
    """PostgreSQL text cannot hold NUL: it is dropped from every string (metadata too), the row kept, and the
    rest of its batch written."""
    table = f"t_usage_{uuid.uuid4().hex[:12]}"
    led = PostgresLedger(pg_url, table=table)
    try:
        bad = make_event(1, agent="a\x00b", metadata={"k": "v\x00w"})
        assert led.record_many([make_event(0), bad, make_event(2)]) == 3
        got = {e.request_id: e for e in led.query()}
        assert got["req-1"].agent == "ab" and got["req-1"].metadata == {"k": "vw"}
        assert len(got) == 3
    finally:
        led.close()
        import psycopg

        with psycopg.connect(pg_url) as conn:
            conn.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize(
    "bad",
    [{"model": None}, {"provider": None}, {"request_id": ""}, {"input_tokens": None}, {"latency_ms": float("nan")}],
)
async def test_an_event_the_table_cannot_hold_is_refused_before_it_is_queued(ledger: Ledger, make_event, bad) -> None:
    """Never acknowledged and then dropped inside a batch: the caller gets LLMUsageError, nothing is written."""
    wrong = make_event(1, **bad)
    with pytest.raises(LLMUsageError, match="not storable"):
        ledger.record(wrong)
    with pytest.raises(LLMUsageError):
        await ledger.arecord(wrong)
    with pytest.raises(LLMUsageError):
        ledger.record_many([make_event(2), wrong])  # refused whole: the good event is not half-written
    assert ledger.count() == 0
    assert ledger.record(make_event(3)) is True


def test_sqlite_batch_write_skips_known_ids_and_nothing_else(tmp_path, make_event) -> None:
    """Only a known id is skipped: a row breaking another constraint fails its batch loudly, on either path."""
    led = SqliteLedger(tmp_path / "u.sqlite3")
    conn = led._connect()
    try:
        assert led._write(conn, [led._to_row(make_event(1))]) == [True]
        broken = list(led._to_row(make_event(2)))
        broken[3] = None  # model: NOT NULL
        for batch in ([tuple(broken)], [led._to_row(make_event(1)), tuple(broken)]):  # fast path, careful path
            with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
                led._write(conn, batch)
            assert not conn.in_transaction
        assert led.count() == 1
    finally:
        conn.close()
        led.close()


def test_query_filters(ledger: Ledger, make_event) -> None:
    ledger.record_many([make_event(i) for i in range(30)])
    assert {e.tenant_id for e in ledger.query(tenant_id="a")} == {"a"}
    assert len(ledger.query(tenant_id="a")) == 15
    day1 = T0.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    got = ledger.query(since=day1, until=day1 + timedelta(days=1))
    assert [e.request_id for e in got] == [f"req-{i}" for i in range(10, 20)]
    assert len(ledger.query(limit=5)) == 5


def test_totals_group_by(ledger: Ledger, make_event) -> None:
    events = [make_event(i) for i in range(30)]
    events.append(make_event(50, cost_usd=None, tenant_id=None, timestamp=T0))
    ledger.record_many(events)

    def expect(key_of):
        out: dict[str, dict] = {}
        for e in events:
            d = out.setdefault(key_of(e), {"requests": 0, "failures": 0, "cost": None, "in": 0, "unpriced": 0})
            d["requests"] += 1
            d["failures"] += not e.success
            d["in"] += e.input_tokens
            if e.cost_usd is not None:
                d["cost"] = (d["cost"] or 0) + e.cost_usd
            d["unpriced"] += e.cost_usd is None
        return out

    for by, key_of in [
        ("tenant", lambda e: e.tenant_id or "-"),
        ("agent", lambda e: e.agent or "-"),
        ("model", lambda e: f"{e.provider}:{e.model}"),
        ("day", lambda e: e.timestamp.date().isoformat()),
    ]:
        rows = ledger.totals(group_by=by)
        exp = expect(key_of)
        assert [r["key"] for r in rows] == sorted(exp), by
        for r in rows:
            x = exp[r["key"]]
            assert (r["requests"], r["failures"], r["input_tokens"], r["unpriced"]) == (
                x["requests"],
                x["failures"],
                x["in"],
                x["unpriced"],
            ), (by, r)
            # a group whose tokens all went at an unknown price has an unknown cost, not 0
            assert r["cost_usd"] == x["cost"] and isinstance(
                r["cost_usd"], Decimal if x["cost"] is not None else type(None)
            )
    assert any(r["cost_usd"] is None for r in ledger.totals("tenant"))  # tenant "-": only the unpriced event
    rows = ledger.totals("day", tenant_id="a")
    assert sum(r["requests"] for r in rows) == 15
    with pytest.raises(LLMUsageError):
        ledger.totals("color")


async def test_arecord_concurrent_commits_without_stalling_the_loop(ledger: Ledger, make_event) -> None:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    n = 600
    results = await asyncio.gather(*(ledger.arecord(make_event(i)) for i in range(n)))
    dup = await ledger.arecord(make_event(5))
    stop.set()
    await tick
    assert all(results) and dup is False
    assert ledger.count() == n
    # the loop kept ticking while commits (fsyncs) happened on the writer thread
    assert max(gaps) < 0.25, max(gaps)


async def test_tracker_subscriber_writes_through(ledger: Ledger, make_event) -> None:
    tracker = UsageTracker()
    sub = ledger.subscriber(tracker)
    await tracker.aemit(make_event(1))
    tracker.emit(make_event(2))
    assert {e.request_id for e in ledger.query()} == {"req-1", "req-2"}
    sub.detach()
    tracker.emit(make_event(3))
    assert ledger.count() == 2


def test_closed_ledger_refuses_writes_but_reads(ledger: Ledger, make_event) -> None:
    ledger.record(make_event(1))
    ledger.close()
    with pytest.raises(LLMUsageError):
        ledger.record(make_event(2))
    assert ledger.count() == 1


def test_open_dispatch(tmp_path, pg_url) -> None:
    a = Ledger.open(tmp_path / "a.db")
    b = Ledger.open(f"sqlite:///{tmp_path}/b.db")
    assert isinstance(a, SqliteLedger) and isinstance(b, SqliteLedger)
    assert b.path == tmp_path / "b.db"
    c = Ledger.open(pg_url, table="t_usage_dispatch")
    try:
        assert isinstance(c, PostgresLedger)
    finally:
        import psycopg

        with psycopg.connect(pg_url) as conn:
            conn.execute("DROP TABLE IF EXISTS t_usage_dispatch")
    with pytest.raises(LLMConfigurationError):
        Ledger.open("mysql://x/y")
    with pytest.raises(LLMConfigurationError):
        Ledger.open(tmp_path / "c.db", table="bad; drop")


def test_sqlite_file_is_wal_and_two_ledgers_share_it(tmp_path, make_event) -> None:
    path = tmp_path / "shared.db"
    one, two = SqliteLedger(path), SqliteLedger(path)
    one.record_many([make_event(i) for i in range(0, 20, 2)])
    two.record_many([make_event(i) for i in range(1, 20, 2)])
    assert one.count() == two.count() == 20
    one.close()
    two.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_ledger_keeps_working_in_a_forked_child(tmp_path, make_event, in_fork) -> None:
    led = SqliteLedger(tmp_path / "fork.db")
    led.record(make_event(1))  # the writer thread now runs in the parent only
    # the child must start its own writer instead of waiting forever
    assert in_fork(lambda: repr(led.record(make_event(2)))) == "True"
    assert {e.request_id for e in led.query()} == {"req-1", "req-2"}
    led.close()
