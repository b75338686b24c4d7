"""Replicas sharing Redis: 1000 concurrent requests through two gateway processes against a small tenant
budget never overshoot it, and every rejection is a clean JSON error. Also: workers > 1."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

import aiohttp
import orjson
import pytest

from .conftest import ADMIN_KEY, REDIS_URL, http

KEY = "shared-key-0123456789abcdef-xyz"
BUDGET = 500
N = 1000


def replica_config(workdir, ns, **extra):
    cfg = {
        "server": {"host": "127.0.0.1"},
        "redis": {"url": REDIS_URL, "namespace": ns},
        "ledger": {"url": str(workdir / "usage.sqlite3"), "synchronous": "NORMAL"},
        "models": {"slowfake": {"model": "fake:echo", "options": {"latency": 0.02}}},
        "default_model": "slowfake",
        "admin_key": ADMIN_KEY,
        "tenants": {"shared": {"budget": {"tokens": BUDGET}, "rpm": 100000}},
        "api_keys": [{"name": "shared", "key": KEY, "tenant": "shared"}],
    }
    cfg.update(extra)
    return cfg


async def _fire(urls: list[str], n: int, headers: dict[str, str] | None = None) -> list[tuple[int, bytes]]:
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as s:

        async def one(i: int) -> tuple[int, bytes]:
            body = {"model": "slowfake", "messages": [{"role": "user", "content": f"item {i} please"}], "max_tokens": 5}
            async with s.post(
                urls[i % len(urls)] + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {KEY}", **(headers or {})},
            ) as r:
                return r.status, await r.read()

        return await asyncio.gather(*[one(i) for i in range(n)])


def test_two_replicas_never_overshoot_a_shared_budget(start_gateway, tmp_path, redis_ns):
    a = start_gateway(replica_config(tmp_path, redis_ns), name="replica-a")
    b = start_gateway(replica_config(tmp_path, redis_ns), name="replica-b")
    results = asyncio.run(_fire([a.url, b.url], N))

    statuses = Counter(s for s, _ in results)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[200] > 10 and statuses[429] > 500
    spent = 0
    for status, raw in results:
        body = orjson.loads(raw)  # every answer is JSON
        if status == 200:
            spent += body["usage"]["total_tokens"]
        else:
            assert body["error"]["code"] == "budget_exceeded"
            assert body["error"]["type"] == "insufficient_quota"
            assert set(body["error"]) == {"message", "type", "code", "param"}
    assert spent <= BUDGET

    # the ledger (both replicas write it) and the shared Redis budget agree and stay under the cap
    conn = sqlite3.connect(tmp_path / "usage.sqlite3")
    try:
        ledger_total, n_events = conn.execute(
            "SELECT COALESCE(SUM(total_tokens), 0), COUNT(*) FROM llm_usage WHERE tenant_id = 'shared'"
        ).fetchone()
    finally:
        conn.close()
    assert n_events == statuses[200]
    assert ledger_total == spent <= BUDGET

    from llm_connect.budget import BudgetTracker, RedisBudgetStore

    store = RedisBudgetStore(REDIS_URL, namespace=redis_ns)
    try:
        state = BudgetTracker(BUDGET, store=store, budget_id="tenant:shared").state()
    finally:
        store.close()
    assert state.spent == spent and state.reserved == 0 and state.overrun == 0
    # each replica served a share
    for gw in (a, b):
        status, _, raw = http("GET", gw.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert b'llm_gateway_budget_rejections_total{tenant="shared"}' in raw


def test_replicas_share_rate_limits(start_gateway, tmp_path, redis_ns):
    cfg = replica_config(tmp_path, redis_ns)
    cfg["tenants"]["shared"] = {"rpm": 10}
    a = start_gateway(cfg, name="rl-a")
    b = start_gateway(cfg, name="rl-b")
    # far more requests in flight than any Redis connection pool holds: still exactly the limit
    results = asyncio.run(_fire([a.url, b.url], 600))
    statuses = Counter(s for s, _ in results)
    assert statuses[200] == 10, statuses
    for status, raw in results:
        if status == 429:
            assert orjson.loads(raw)["error"]["code"] == "rate_limit_exceeded"


def test_delegated_budget_across_replicas(start_gateway, tmp_path, redis_ns):
    cfg = replica_config(tmp_path, redis_ns)
    cfg["tenants"]["shared"] = {}
    a = start_gateway(cfg, name="dl-a")
    b = start_gateway(cfg, name="dl-b")
    hdr = {"Authorization": f"Bearer {KEY}", "X-LLM-Budget-Id": "chain"}
    body = {"prompt": "a b", "model": "slowfake", "max_tokens": 3}
    status, _, raw = http("POST", a.url + "/execute", body, headers={**hdr, "X-LLM-Budget-Tokens": "40"})
    assert status == 200
    spent, codes = orjson.loads(raw)["usage"]["total_tokens"], []
    for i in range(20):
        status, _, raw = http("POST", (a, b)[i % 2].url + "/execute", body, headers=hdr)
        codes.append(status)
        if status == 200:
            spent += orjson.loads(raw)["usage"]["total_tokens"]
    assert 429 in codes and spent <= 40


def test_delegated_budget_under_heavy_concurrency(start_gateway, tmp_path, redis_ns):
    cfg = replica_config(tmp_path, redis_ns)
    cfg["tenants"]["shared"] = {}
    a = start_gateway(cfg, name="dc-a")
    b = start_gateway(cfg, name="dc-b")
    hdr = {"X-LLM-Budget-Id": "chain-z", "X-LLM-Budget-Tokens": "500"}
    results = asyncio.run(_fire([a.url, b.url], 600, hdr))
    statuses = Counter(s for s, _ in results)
    assert set(statuses) <= {200, 429}, statuses  # no 503: a busy pool is not an outage
    spent = sum(orjson.loads(raw)["usage"]["total_tokens"] for s, raw in results if s == 200)
    assert 0 < spent <= 500


def test_workers_share_budget_and_metrics(start_gateway, tmp_path, redis_ns):
    cfg = replica_config(tmp_path, redis_ns, server={"host": "127.0.0.1", "workers": 2})
    gw = start_gateway(cfg, name="workers", timeout=40)
    results = asyncio.run(_fire([gw.url], 200))
    statuses = Counter(s for s, _ in results)
    spent = sum(orjson.loads(raw)["usage"]["total_tokens"] for s, raw in results if s == 200)
    assert set(statuses) <= {200, 429} and spent <= BUDGET
    status, _, raw = http("GET", gw.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert status == 200
    # multiprocess metrics: the 200 requests of both workers are counted in one scrape
    total = 0.0
    for line in raw.decode().splitlines():
        if line.startswith("llm_gateway_requests_total{") and 'route="/v1/chat/completions"' in line:
            total += float(line.rsplit(" ", 1)[1])
    assert total == 200


@pytest.fixture(autouse=True)
def _redis_required(redis_ns):
    return redis_ns
