"""Budgets and the ledger hold on /v1/messages: hundreds of concurrent calls (JSON and streams, passed through to
an Anthropic upstream that reports cache reads and writes) on one tenant budget never overshoot it, and each
charged call is exactly one ledger row with endpoint "/v1/messages" and the token kinds the upstream billed."""

from __future__ import annotations

import asyncio

import anthropic
import pytest

from llm_connect.testing import MockReply
from llm_connect.usage import Ledger

from .conftest import PROVIDER_KEY, GatewayProc, base_config

CAP = 20_000
CALLS = 300
RACE_KEY = "race-key-0123456789abcdef-xyz"
#: 120 words: the mock counts 121 input tokens for it, more than the 100 it is scripted to bill
PROMPT = " ".join(f"w{i}" for i in range(120))


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("anthropic-race")
    cfg = base_config(mock, workdir)
    cfg["router"]["groups"]["claude"] = [
        {"model": "anthropic:claude-r", "name": "r-anthropic", "api_base": mock.anthropic_base, "api_key": PROVIDER_KEY}
    ]
    cfg["tenants"]["race"] = {"budget": {"tokens": CAP}}
    cfg["api_keys"].append({"name": "race", "key": RACE_KEY, "tenant": "race"})
    g = GatewayProc(cfg, workdir).start()
    g.workdir = workdir
    yield g
    g.stop()


async def one(c: anthropic.AsyncAnthropic, i: int) -> tuple[str, int]:
    """("ok", tokens billed as the client saw them) or ("refused", 0)."""
    args = {"model": "claude", "max_tokens": 20, "messages": [{"role": "user", "content": f"{PROMPT} n{i}"}]}
    try:
        if i % 2:
            async with c.messages.stream(**args) as s:
                m = await s.get_final_message()
        else:
            m = await c.messages.create(**args, metadata={"user_id": f"user-{i}"})
    except anthropic.RateLimitError as exc:
        assert exc.body["error"]["type"] == "rate_limit_error" and "budget" in exc.body["error"]["message"]
        return "refused", 0
    u = m.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (40, 40, 20)
    return "ok", u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens + u.output_tokens


async def race(url: str) -> list[tuple[str, int]]:
    async with anthropic.AsyncAnthropic(base_url=url, api_key=RACE_KEY, max_retries=0, timeout=60) as c:
        return await asyncio.gather(*(one(c, i) for i in range(CALLS)))


def test_concurrent_messages_on_one_budget_never_overshoot_and_are_each_one_ledger_row(gw, mock):
    mock.script(MockReply(model="claude-r", input_tokens=100, cache_read_tokens=40, cache_write_tokens=20, repeat=True))
    try:
        results = asyncio.run(race(gw.url))
    finally:
        mock.clear_scripts()
    ok = [n for kind, n in results if kind == "ok"]
    refused = sum(1 for kind, _ in results if kind == "refused")
    assert ok and refused, (len(ok), refused)  # the budget ran out in the middle of the race
    assert sum(ok) <= CAP  # overshoot 0
    with Ledger.open(gw.workdir / "usage.sqlite3") as led:
        rows = led.query(tenant_id="race")
    assert len(rows) == len(ok)  # one row per charged call; refusals were never charged
    assert len({r.metadata["gateway_request_id"] for r in rows}) == len(rows)
    assert sum(r.total_tokens for r in rows) == sum(ok) <= CAP
    assert {r.endpoint for r in rows} == {"/v1/messages"}
    assert {(r.provider, r.input_tokens, r.cache_read_tokens, r.cache_write_tokens) for r in rows} == {
        ("anthropic", 100, 40, 20)
    }
    assert all(r.success and not r.estimated for r in rows)
    assert sum(r.streamed for r in rows) > 0 and sum(not r.streamed for r in rows) > 0
    assert all(r.metadata["user_id"].startswith("user-") for r in rows if not r.streamed)
