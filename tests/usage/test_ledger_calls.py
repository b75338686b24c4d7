"""The ledger's read layer the dashboard stands on: CallFilter, calls (newest first, paged), call, totals per
time bucket and the key / team groupings — on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from llm_connect.errors import LLMUsageError
from llm_connect.usage import CallFilter, Ledger

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)  # as in conftest._make_event


def _fill(ledger: Ledger, make_event) -> list:
    events = [
        make_event(
            i,
            timestamp=T0 + timedelta(minutes=20 * i),
            estimated=i % 5 == 0,
            metadata={
                "api_key": "k1" if i < 6 else "k2",
                "team": "red" if i % 2 else "blue",
                "gateway_request_id": f"gw-{i // 2}",
            },
        )
        for i in range(12)
    ]
    ledger.record_many(events)
    return events


def test_calls_are_newest_first_and_paged(ledger: Ledger, make_event) -> None:
    events = _fill(ledger, make_event)
    newest = [e.request_id for e in sorted(events, key=lambda e: e.timestamp, reverse=True)]
    assert [e.request_id for e in ledger.calls(limit=5)] == newest[:5]
    assert [e.request_id for e in ledger.calls(limit=5, offset=5)] == newest[5:10]
    assert [e.request_id for e in ledger.calls(limit=5, offset=10)] == newest[10:]
    assert ledger.calls(limit=5, offset=50) == []


def test_every_filter_narrows_the_rows(ledger: Ledger, make_event) -> None:
    events = _fill(ledger, make_event)

    def ids(**kw) -> set[str]:
        return {e.request_id for e in ledger.calls(CallFilter(**kw), limit=100)}

    def want(pred) -> set[str]:
        return {e.request_id for e in events if pred(e)}

    assert ids(tenant_id="a") == want(lambda e: e.tenant_id == "a")
    assert ids(model="gpt-4o") == want(lambda e: e.model == "gpt-4o")
    assert ids(model="openai:gpt-4o-mini") == want(lambda e: e.model == "gpt-4o-mini")  # provider:model too
    assert ids(success=False) == want(lambda e: not e.success) != set()
    assert ids(success=True) == want(lambda e: e.success)
    assert ids(estimated=True) == want(lambda e: e.estimated) != set()
    assert ids(estimated=False) == want(lambda e: not e.estimated)
    assert ids(api_key="k2") == want(lambda e: e.metadata["api_key"] == "k2")
    assert ids(request_id="req-3") == {"req-3"}
    assert ids(request_id="gw-1") == {"req-2", "req-3"}  # the gateway's x-request-id finds every attempt
    assert ids(since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=3)) == want(
        lambda e: T0 + timedelta(hours=2) <= e.timestamp < T0 + timedelta(hours=3)
    )
    assert ids(tenant_id="a", success=True, model="gpt-4o") == want(
        lambda e: e.tenant_id == "a" and e.success and e.model == "gpt-4o"
    )
    assert ids(model="' OR 1=1 --") == set()  # values are parameters, never SQL


def test_call_reads_one_row_with_every_field(ledger: Ledger, make_event) -> None:
    events = _fill(ledger, make_event)
    assert ledger.call("req-4") == events[4]
    assert ledger.call("nope") is None


def test_totals_per_hour_bucket_and_key_and_team(ledger: Ledger, make_event) -> None:
    events = _fill(ledger, make_event)
    rows = ledger.totals("key", bucket="hour")
    expected: dict[tuple[str, str], list] = {}
    for e in events:
        expected.setdefault((e.timestamp.strftime("%Y-%m-%dT%H"), e.metadata["api_key"]), []).append(e)
    assert [(r["bucket"], r["key"]) for r in rows] == sorted(expected)
    for r in rows:
        group = expected[(r["bucket"], r["key"])]
        assert r["requests"] == len(group)
        assert r["total_tokens"] == sum(e.total_tokens for e in group)
        assert r["cost_usd"] == sum((e.cost_usd for e in group), start=Decimal(0))
    days = ledger.totals("team", bucket="day", match=CallFilter(tenant_id="b"))
    # tenant b's calls are the odd ones, all on team red, all on 2025-03-01
    assert [(r["bucket"], r["key"], r["requests"]) for r in days] == [("2025-03-01", "red", 6)]
    # explicit arguments narrow a given filter further
    narrowed = ledger.totals("model", "a", match=CallFilter(success=True))
    assert sum(r["requests"] for r in narrowed) == sum(1 for e in events if e.tenant_id == "a" and e.success)


def test_rows_without_a_key_or_team_group_under_a_dash(ledger: Ledger, make_event) -> None:
    ledger.record(make_event(1, metadata={}))
    assert [r["key"] for r in ledger.totals("key")] == ["-"]
    assert [r["key"] for r in ledger.totals("team")] == ["-"]


def test_an_unknown_bucket_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LLMUsageError, match="bucket must be one of hour, day"):
        ledger.totals("model", bucket="week")


async def test_async_reads(ledger: Ledger, make_event) -> None:
    _fill(ledger, make_event)
    assert [e.request_id for e in await ledger.acalls(CallFilter(tenant_id="b"), limit=2)] == ["req-11", "req-9"]
    assert (await ledger.acall("req-0")) is not None
