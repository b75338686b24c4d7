"""An answered call's usage survives a ledger outage: it is spooled to disk and written back later."""

from __future__ import annotations

import sqlite3

from llm_connect import RunConfig, create_adapter
from llm_connect.usage import SqliteLedger, UsageTracker
from llm_connect.usage.spool import Spool


async def test_events_written_while_the_database_is_broken_are_not_lost(tmp_path):
    path = tmp_path / "u.sqlite3"
    ledger = SqliteLedger(path)
    tracker = UsageTracker()
    ledger.subscriber(tracker)
    a = create_adapter("fake:echo")
    await a.async_execute_prompt("one", RunConfig(usage_tracker=tracker))
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE llm_usage RENAME TO llm_usage_away")  # the table is gone (a migration, a DBA …)
    db.commit()
    r = await a.async_execute_prompt("two", RunConfig(usage_tracker=tracker))
    assert r.text == "echo: two" and tracker.subscriber_errors == 0
    assert ledger.spool is not None and ledger.spool.pending
    db.execute("ALTER TABLE llm_usage_away RENAME TO llm_usage")
    db.commit()
    db.close()
    await a.async_execute_prompt("three", RunConfig(usage_tracker=tracker))
    assert ledger.count() == 3 and not ledger.spool.pending
    ledger.close()


def test_a_torn_last_line_is_skipped(tmp_path, make_event):
    spool = Spool(tmp_path / "s.jsonl")
    spool.append([make_event(1), make_event(2)])
    with open(spool.path, "ab") as f:
        f.write(b'{"request_id": "half')  # a crash in the middle of an append
    assert [e.request_id for e in spool.read()] == [make_event(1).request_id, make_event(2).request_id]
    spool.clear(2)
    assert spool.path.read_bytes() == b'{"request_id": "half'
