"""The ledger never drops a charged call's event silently: unstorable metadata is replaced (the row kept), a
refused batch is spooled and written back, every such case reaches ``on_failure``; rows marked estimated;
tables made by an older version gain the new columns."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from decimal import Decimal

import pytest

from llm_connect.errors import LLMUsageError
from llm_connect.usage import Ledger, SqliteLedger
from llm_connect.usage.spool import Spool


class Failures:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, BaseException | None]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, events: int, error: BaseException | None) -> None:
        with self.lock:
            self.calls.append((kind, events, error))

    def kinds(self) -> list[str]:
        return [k for k, _, _ in self.calls]


def nested(depth: int) -> dict:
    d: dict = {"leaf": 1}
    for _ in range(depth):
        d = {"n": d}
    return d


def test_estimated_rows_are_written_read_and_counted(ledger: Ledger, make_event) -> None:
    ledger.record_many([make_event(i, tenant_id="a", estimated=i < 3) for i in range(5)])
    back = ledger.query()
    assert [e.estimated for e in back] == [True, True, True, False, False]
    (row,) = ledger.totals("tenant")
    assert (row["requests"], row["estimated"]) == (5, 3)


@pytest.mark.parametrize(
    "meta",
    [nested(300), {"big": 2**70}],
    ids=["300 levels deep", "integer beyond 64 bits"],
)
async def test_metadata_the_table_cannot_hold_is_replaced_not_the_row_dropped(ledger: Ledger, make_event, meta) -> None:
    seen = Failures()
    ledger.on_failure = seen
    e = make_event(1, metadata=meta)
    assert await ledger.arecord(e) is True
    assert ledger.record(make_event(2, metadata=meta)) is True
    stored = {x.request_id: x for x in ledger.query()}
    assert set(stored) == {"req-1", "req-2"}
    reason = stored["req-1"].metadata["_unstorable"]
    assert set(stored["req-1"].metadata) == {"_unstorable"} and "Error" in reason
    assert stored["req-1"].total_tokens == e.total_tokens and stored["req-1"].cost_usd == e.cost_usd
    assert seen.kinds() == ["unstorable_metadata", "unstorable_metadata"]


def test_sqlite_table_of_an_older_version_gains_the_added_columns(tmp_path, make_event) -> None:
    path = tmp_path / "old.sqlite3"
    with SqliteLedger(path) as led:
        led.record(make_event(1))
    db = sqlite3.connect(path)
    for column in ("estimated", "endpoint"):  # the table as the first version made it
        db.execute(f"ALTER TABLE llm_usage DROP COLUMN {column}")
    db.commit()
    assert not {"estimated", "endpoint"} & {r[1] for r in db.execute("PRAGMA table_info(llm_usage)")}
    db.close()
    with SqliteLedger(path) as led:
        led.record(make_event(2, estimated=True, endpoint="/v1/messages"))
        assert [(e.request_id, e.estimated, e.endpoint) for e in led.query()] == [
            ("req-1", False, None),
            ("req-2", True, "/v1/messages"),
        ]
        by_endpoint = {r["key"]: r["requests"] for r in led.totals("endpoint")}
        assert by_endpoint == {"-": 1, "/v1/messages": 1}
    with SqliteLedger(path) as led:  # opening again is a no-op
        assert led.count() == 2


def test_postgres_table_of_an_older_version_gains_the_added_columns(pg_url, make_event) -> None:
    import psycopg

    table = f"t_usage_old_{uuid.uuid4().hex[:10]}"
    try:
        with Ledger.open(pg_url, table=table) as led:
            led.record(make_event(1))
        with psycopg.connect(pg_url) as conn:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN estimated, DROP COLUMN endpoint")
        with Ledger.open(pg_url, table=table) as led:
            led.record(make_event(2, estimated=True, endpoint="/v1/embeddings"))
            assert [(e.request_id, e.estimated, e.endpoint) for e in led.query()] == [
                ("req-1", False, None),
                ("req-2", True, "/v1/embeddings"),
            ]
            (row,) = led.totals("provider")
            assert row["estimated"] == 1
    finally:
        with psycopg.connect(pg_url) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def _break(path) -> None:
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE llm_usage RENAME TO llm_usage_away")  # the table is gone (a migration, a DBA …)
    db.commit()
    db.close()


def _repair(path) -> None:
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE llm_usage_away RENAME TO llm_usage")
    db.commit()
    db.close()


async def test_a_refused_write_is_spooled_reported_and_replayed_while_idle(tmp_path, make_event) -> None:
    path = tmp_path / "u.sqlite3"
    seen = Failures()
    led = SqliteLedger(path, on_failure=seen, replay_interval=0.05)
    try:
        led.record(make_event(1))
        _break(path)
        assert await led.arecord(make_event(2)) is True  # answered: the event is durable in the spool
        assert led.record(make_event(3, metadata=nested(300))) is True  # and unstorable metadata spools too
        assert led.spool is not None and led.spool.pending
        assert seen.kinds() == ["spooled", "unstorable_metadata", "spooled"]
        assert all(n == 1 and err is not None for k, n, err in seen.calls if k == "spooled")
        _repair(path)
        for _ in range(200):  # no new write needed: the idle writer writes the spool back
            if not led.spool.pending:
                break
            await asyncio.sleep(0.02)
        assert not led.spool.pending
        stored = {e.request_id: e for e in led.query()}
        assert set(stored) == {"req-1", "req-2", "req-3"}
        assert "_unstorable" in stored["req-3"].metadata and stored["req-2"].cost_usd == make_event(2).cost_usd
    finally:
        led.close()


def test_events_neither_the_database_nor_the_spool_take_fail_their_caller(tmp_path, make_event) -> None:
    path = tmp_path / "u.sqlite3"
    spool_dir = tmp_path / "spool-is-a-directory"
    spool_dir.mkdir()
    seen = Failures()
    led = SqliteLedger(path, spool=spool_dir, on_failure=seen)
    try:
        _break(path)
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            led.record(make_event(1))
        assert seen.kinds() == ["lost"]
        _repair(path)
        assert led.record(make_event(2)) is True  # the writer lives on
    finally:
        led.close()


def test_refused_events_are_reported(tmp_path, make_event) -> None:
    seen = Failures()
    led = SqliteLedger(tmp_path / "u.sqlite3", on_failure=seen)
    with pytest.raises(LLMUsageError, match="not storable"):
        led.record(make_event(1, model=None))
    with pytest.raises(LLMUsageError, match="64 bits"):
        led.record(make_event(2, input_tokens=2**64, total_tokens=2**64))
    led.close()
    with pytest.raises(LLMUsageError, match="closed"):
        led.record(make_event(3))
    assert seen.kinds() == ["refused", "refused", "refused"]


def test_a_broken_hook_breaks_nothing(tmp_path, make_event) -> None:
    def hook(kind, events, error):
        raise RuntimeError("hook down")

    led = SqliteLedger(tmp_path / "u.sqlite3", on_failure=hook)
    try:
        assert led.record(make_event(1, metadata=nested(300))) is True
        assert led.count() == 1
    finally:
        led.close()


def test_two_spool_users_lose_nothing_while_one_drains(tmp_path, make_event) -> None:
    """Replicas share a spool file: appends and a drain in between hold the file lock, so every event is
    either still in the spool or was handed to the drain — exactly once."""
    path = tmp_path / "shared.jsonl"
    writer, drainer = Spool(path), Spool(path)  # two open files, as two processes would have
    drained: list[str] = []
    stop = threading.Event()

    def drain_loop() -> None:
        while not stop.is_set():
            drainer.drain(lambda events: drained.extend(e.request_id for e in events))
            time.sleep(0.001)

    t = threading.Thread(target=drain_loop)
    t.start()
    for i in range(0, 600, 3):
        writer.append([make_event(i), make_event(i + 1), make_event(i + 2)])
    stop.set()
    t.join()
    drainer.drain(lambda events: drained.extend(e.request_id for e in events))
    assert sorted(drained) == sorted(f"req-{i}" for i in range(600))
    assert not writer.pending


def test_spooled_metadata_keeps_values_json_cannot_hold_natively(tmp_path, make_event) -> None:
    spool = Spool(tmp_path / "s.jsonl")
    spool.append([make_event(1, metadata={"price": Decimal("0.1"), 3: "int key"})])
    (back,) = spool.read()
    assert back.metadata == {"price": "0.1", "3": "int key"}
