"""Hung-up streams are accounted: two gateway processes on one Redis and one ledger, the shipped mock server
as upstream (a process of its own), 1000 mixed calls a round — JSON answers, whole streams, and streams the
client closes after the first chunk — under a shared token + USD budget. Every round: no overshoot, one
ledger row per charged call, and ledger total == budget spent == the sum of the per-call costs. The second
round runs with both cores kept busy by two CPU burners.

Also, on one gateway: a hung-up stream's row is marked estimated and counted by /v1/usage; a ledger failure
is counted in ``llm_gateway_ledger_failures_total{kind}`` and the spooled event written back."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import orjson
import pytest

from llm_connect.budget import BudgetTracker, RedisBudgetStore

from .conftest import ADMIN_KEY, PROVIDER_KEY, REDIS_URL, free_port, http

N = 1000
TOKENS = 20_000
USD = Decimal("0.02")
MODELS = ("mini", "haiku")  # OpenAI (usage in the last chunk) and Anthropic (usage from message_start on)


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """The shipped mock server in its own process: a stream frame every 10 ms, so a hang-up lands mid-stream."""
    port = free_port()
    code = "import sys; from llm_connect.testing.mock_server import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", str(port), "--chunk-delay", "0.01"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(500):
            try:
                with urllib.request.urlopen(url + "/health", timeout=0.5):
                    break
            except OSError:
                time.sleep(0.02)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _key(tenant: str) -> str:
    return f"{tenant}-key-0123456789abcdef-xyz"


def gateway_config(workdir: Path, ns: str, upstream: str, tenants: list[str]) -> dict:
    return {
        "server": {"host": "127.0.0.1", "request_timeout": 30},
        "redis": {"url": REDIS_URL, "namespace": ns},
        "ledger": {"url": str(workdir / "usage.sqlite3"), "synchronous": "NORMAL"},
        "providers": {
            "openai": {"api_key": PROVIDER_KEY, "api_base": upstream + "/v1"},
            "anthropic": {"api_key": PROVIDER_KEY, "api_base": upstream},
        },
        "models": {"mini": "openai:gpt-4o-mini", "haiku": "anthropic:claude-haiku-4-5"},
        "default_model": "mini",
        "admin_key": ADMIN_KEY,
        "tenants": {t: {"budget": {"tokens": TOKENS, "usd": str(USD)}, "rpm": 1_000_000} for t in tenants},
        "api_keys": [{"name": t, "key": _key(t), "tenant": t} for t in tenants],
    }


def _final_usage(raw: bytes) -> dict:
    """The usage chunk of an SSE body."""
    for line in raw.split(b"\n"):
        if line.startswith(b"data: {") and b'"choices":[]' in line:
            return orjson.loads(line[6:])["usage"]
    raise AssertionError(f"no usage chunk in {raw[-300:]!r}")


async def _round(urls: list[str], tenant: str) -> list[tuple[str, int, str, Decimal | None]]:
    """N calls, a third of each kind; per call (kind, status, gateway request id, cost the client was told)."""
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as s:

        async def one(i: int) -> tuple[str, int, str, Decimal | None]:
            kind = ("json", "stream", "hangup")[i % 3]
            body = {
                "model": MODELS[i % 2],
                "messages": [{"role": "user", "content": f"call {i} of the round, say a few words please"}],
                "max_tokens": 12,
            }
            if kind != "json":
                body.update(stream=True, stream_options={"include_usage": True})
            headers = {"Authorization": f"Bearer {_key(tenant)}"}
            async with s.post(urls[i % len(urls)] + "/v1/chat/completions", json=body, headers=headers) as r:
                rid = r.headers["x-request-id"]
                if r.status != 200:
                    return kind, r.status, rid, None
                if kind == "json":
                    await r.read()
                    cost = r.headers.get("x-llm-cost-usd")
                    return kind, 200, rid, None if cost is None else Decimal(cost)
                if kind == "stream":
                    usage = _final_usage(await r.read())
                    return kind, 200, rid, None if usage["cost_usd"] is None else Decimal(usage["cost_usd"])
                async for line in r.content:  # the first chunk with text, then hang up
                    if b'"content":"' in line and b'"content":""' not in line:
                        break
                r.close()
                return kind, 200, rid, None

        return await asyncio.gather(*(one(i) for i in range(N)))


def _rows(db: Path, tenant: str) -> list[tuple[str, int, Decimal | None, bool]]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        got = conn.execute(
            "SELECT json_extract(metadata, '$.gateway_request_id'), total_tokens, cost_usd, estimated "
            "FROM llm_usage WHERE tenant_id = ?",
            (tenant,),
        ).fetchall()
    finally:
        conn.close()
    return [(rid, tok, None if c is None else Decimal(c), bool(est)) for rid, tok, c, est in got]


def _settled(db: Path, tenant: str, ns: str, charged: int) -> tuple[list, object]:
    """The ledger rows and budget state once every call (hung-up streams included) has settled."""
    store = RedisBudgetStore(REDIS_URL, namespace=ns)
    try:
        tracker = BudgetTracker(TOKENS, total_usd=USD, store=store, budget_id=f"tenant:{tenant}")
        deadline = time.monotonic() + 15
        while True:
            rows, state = _rows(db, tenant), tracker.state()
            if (len(rows) >= charged and state.reserved == 0) or time.monotonic() > deadline:
                return rows, state
            time.sleep(0.05)
    finally:
        store.close()


def _check_round(db: Path, tenant: str, ns: str, results: list) -> Counter:
    statuses = Counter(status for _, status, _, _ in results)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[200] > 50 and statuses[429] > 50, statuses  # the budget really was the limit
    answered = {rid: (kind, cost) for kind, status, rid, cost in results if status == 200}
    rows, state = _settled(db, tenant, ns, len(answered))

    # exactly one row per answered call, none for a refused one
    ids = Counter(rid for rid, *_ in rows)
    assert set(ids) == set(answered) and max(ids.values()) == 1, (len(ids), len(answered))
    # no overshoot, nothing left reserved
    assert state.reserved == 0 and state.reserved_usd == 0
    assert state.overrun == 0 and state.overrun_usd == 0
    assert state.spent <= TOKENS and state.spent_usd <= USD
    # ledger total == budget spent == the sum of the per-call costs
    by_id = {rid: (tok, cost, est) for rid, tok, cost, est in rows}
    assert all(cost is not None for _, cost, _ in by_id.values())  # both models are priced
    ledger_tokens = sum(tok for tok, _, _ in by_id.values())
    ledger_usd = sum((cost for _, cost, _ in by_id.values()), Decimal(0))
    told = [(kind, cost, by_id[rid][1]) for rid, (kind, cost) in answered.items()]
    for kind, cost, stored in told:
        if kind != "hangup":  # the client was told the cost: it is the ledger's, to the last digit
            assert cost == stored, (kind, cost, stored)
    per_call = sum((cost if kind != "hangup" else stored for kind, cost, stored in told), Decimal(0))
    assert ledger_tokens == state.spent
    assert ledger_usd == state.spent_usd == per_call
    # the complete calls are exact; a stream hung up before the provider's final usage is marked estimated
    for rid, (kind, _) in answered.items():
        if kind != "hangup":
            assert by_id[rid][2] is False, kind
    return Counter(by_id[rid][2] for rid, (kind, _) in answered.items() if kind == "hangup")


@pytest.fixture
def burners() -> Iterator[None]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()


def test_two_gateways_account_every_call_including_hang_ups(start_gateway, tmp_path, redis_ns, upstream, request):
    tenants = ["round-idle", "round-busy"]
    cfg = gateway_config(tmp_path, redis_ns, upstream, tenants)
    a = start_gateway(cfg, name="hang-a")
    b = start_gateway(cfg, name="hang-b")
    db = tmp_path / "usage.sqlite3"
    t0 = time.monotonic()
    hangups = _check_round(db, tenants[0], redis_ns, asyncio.run(_round([a.url, b.url], tenants[0])))
    assert hangups[True] > 0, hangups  # streams really were cut before their end
    request.getfixturevalue("burners")  # both cores busy from here on
    hangups = _check_round(db, tenants[1], redis_ns, asyncio.run(_round([a.url, b.url], tenants[1])))
    assert hangups[True] > 0, hangups
    assert time.monotonic() - t0 < 60


@pytest.fixture
def one_gateway(start_gateway, tmp_path, redis_ns, upstream):
    return start_gateway(gateway_config(tmp_path, redis_ns, upstream, ["solo"]), name="solo")


def _metric(gw, name: str) -> float:
    _, _, raw = http("GET", gw.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    for line in raw.decode().splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _hang_up_after_first_chunk(url: str) -> str:
    body = {
        "model": "haiku",
        "messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(60))}],
        "max_tokens": 100,
        "stream": True,
    }
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {_key('solo')}"}) as r,
    ):
        async for line in r.content:
            if b'"content":"' in line and b'"content":""' not in line:
                break
        r.close()
        return r.headers["x-request-id"]


def test_a_hung_up_stream_is_an_estimated_row_and_v1_usage_counts_it(one_gateway, tmp_path):
    rid = asyncio.run(_hang_up_after_first_chunk(one_gateway.url))
    hdr = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for _ in range(200):
        rows = [r for r in _rows(tmp_path / "usage.sqlite3", "solo") if r[0] == rid]
        if rows:
            break
        time.sleep(0.02)
    ((_, tokens, cost, estimated),) = rows
    assert estimated and tokens > 0 and cost is not None and cost > 0
    status, _, raw = http("GET", one_gateway.url + "/v1/usage?group_by=tenant", headers=hdr)
    (row,) = [r for r in orjson.loads(raw)["data"] if r["key"] == "solo"]
    assert status == 200 and row["estimated"] == 1 and row["requests"] == 1
    assert Decimal(row["cost_usd"]) == cost


def test_ledger_failures_are_counted_by_kind_and_the_spool_written_back(one_gateway, tmp_path):
    db = tmp_path / "usage.sqlite3"
    hdr = {"Authorization": f"Bearer {_key('solo')}"}
    body = {"model": "mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}
    assert http("POST", one_gateway.url + "/v1/chat/completions", body, headers=hdr)[0] == 200
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE llm_usage RENAME TO llm_usage_away")  # the ledger's table is gone
    conn.commit()
    status, headers, _ = http("POST", one_gateway.url + "/v1/chat/completions", body, headers=hdr)
    assert status == 200  # answered: its event is kept in the spool
    name = 'llm_gateway_ledger_failures_total{kind="spooled"}'
    assert _metric(one_gateway, name) == 1.0
    conn.execute("ALTER TABLE llm_usage_away RENAME TO llm_usage")
    conn.commit()
    conn.close()
    for _ in range(400):  # written back while idle, within the replay interval
        if headers["x-request-id"] in {r[0] for r in _rows(db, "solo")}:
            break
        time.sleep(0.025)
    assert len(_rows(db, "solo")) == 2
    assert not os.path.getsize(f"{db}.spool.jsonl")
