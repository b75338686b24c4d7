"""Budgets and the ledger hold on /v1/responses: hundreds of concurrent calls (JSON and streamed, stored) on one
tenant budget never overshoot it, every charged call has exactly one ledger row with endpoint "/v1/responses" and
one stored response, and every refusal is a clean 429 before any provider call."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import aiohttp
import pytest

from .conftest import GatewayProc, base_config

CAP = 3_000
CALLS = 300
RACE_KEY = "race-key-0123456789abcdef-xyz"


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    work = tmp_path_factory.mktemp("responses-race")
    cfg = base_config(mock, work, responses={"store": str(work / "responses.sqlite3")})
    cfg["server"]["request_timeout"] = 60
    cfg["tenants"]["race"] = {"budget": {"tokens": CAP}}
    cfg["api_keys"].append({"name": "race", "key": RACE_KEY, "tenant": "race", "models": ["*"]})
    g = GatewayProc(cfg, work, name="race").start()
    yield g
    g.stop()


def calls(mock) -> list[dict]:
    """The mock's generation requests (near the cap the gateway also asks Anthropic's count endpoint)."""
    return [r for r in mock.requests if r["path"] in ("/v1/chat/completions", "/v1/messages")]


async def _one(session: aiohttp.ClientSession, url: str, i: int) -> tuple[int, int, str | None, dict]:
    """(status, tokens the answer reports, response id, error body)."""
    stream = i % 2 == 1
    body = {"model": "plain" if i % 3 else "quality", "input": f"race call number {i}", "max_output_tokens": 20}
    async with session.post(url, json={**body, "stream": stream}) as r:
        if r.status != 200:
            return r.status, 0, None, await r.json()
        if not stream:
            data = await r.json()
            return 200, data["usage"]["total_tokens"], data["id"], {}
        events = [json.loads(line[6:]) for line in (await r.text()).splitlines() if line.startswith("data: ")]
        last = events[-1]
        # near the cap the budget clamps the call's max tokens: its answer may be incomplete
        assert last["type"] in ("response.completed", "response.incomplete"), last
        return 200, last["response"]["usage"]["total_tokens"], last["response"]["id"], {}


async def _race(url: str) -> list[tuple[int, int, str | None, dict]]:
    conn = aiohttp.TCPConnector(limit=150)
    headers = {"Authorization": f"Bearer {RACE_KEY}"}
    async with aiohttp.ClientSession(connector=conn, headers=headers) as session:
        return await asyncio.gather(*(_one(session, url, i) for i in range(CALLS)))


def test_concurrent_responses_on_one_budget_never_overshoot_and_each_has_one_ledger_row(gw, mock):
    before = len(calls(mock))
    results = asyncio.run(_race(gw.url + "/v1/responses"))
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] != 200]
    assert ok and refused, (len(ok), len(refused))  # the cap is reached under the race
    for status, _, _, err in refused:
        assert (
            status == 429 and err["error"]["code"] == "budget_exceeded" and err["error"]["type"] == "insufficient_quota"
        )
    spent = sum(r[1] for r in ok)
    assert spent <= CAP  # overshoot 0
    assert len(calls(mock)) - before == len(ok)  # refusals never reached a provider

    ledger = sqlite3.connect(gw.workdir / "usage.sqlite3")
    rows = ledger.execute(
        "SELECT endpoint, COUNT(*), SUM(total_tokens) FROM llm_usage WHERE tenant_id = 'race' GROUP BY endpoint"
    ).fetchall()
    assert rows == [("/v1/responses", len(ok), spent)]  # exactly one row per charged call, the same tokens
    stored = sqlite3.connect(gw.workdir / "responses.sqlite3")
    ids = {r[0] for r in stored.execute("SELECT id FROM llm_responses WHERE tenant_id = 'race'")}
    assert ids == {r[2] for r in ok}  # every answered call stored, once, under its tenant
