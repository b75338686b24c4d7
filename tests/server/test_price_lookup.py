"""Configured prices are found under the id the provider reports, then the id asked for, then the alias.

Providers answer under dated ids (OpenAI ``gpt-4o-mini`` as ``gpt-4o-mini-2024-07-18``, Anthropic
``claude-haiku-4-5`` as ``claude-haiku-4-5-20251001``); a negotiated price on the requested id must still
apply, and the budget, the response, the header and the ledger must all use that one rate.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest

from llm_connect.testing import MockReply
from llm_connect.types import Usage
from llm_connect.usage.pricing import Pricing

from .conftest import http

USAGE = Usage(input_tokens=1_000_000, output_tokens=1_000_000)


def test_order_reported_then_requested_then_alias_then_wildcard():
    p = Pricing(
        {
            "openai:gpt-4o-mini": {"input_per_mtok": 0.075, "output_per_mtok": 0.3},
            "openai:gpt-4o-mini-2024-07-18": {"input_per_mtok": 1, "output_per_mtok": 1},
            "tuned": {"input_per_mtok": 2, "output_per_mtok": 2},
            "openai:*": {"input_per_mtok": 9, "output_per_mtok": 9},
        }
    )
    # the reported id's own override wins
    assert p.price("openai", "gpt-4o-mini-2024-07-18", USAGE, requested="gpt-4o-mini") == Decimal(2)
    # a dated id with no price of its own: the requested id's
    assert p.price("openai", "gpt-4o-mini-2024-09-09", USAGE, requested="gpt-4o-mini") == Decimal("0.375")
    assert p.source("openai", "gpt-4o-mini-2024-09-09", requested="gpt-4o-mini") == "override:openai:gpt-4o-mini"
    # then the config alias, then the provider wildcard
    assert p.price("openai", "ft:x:2025", USAGE, requested="ft:x", alias="tuned") == Decimal(4)
    assert p.price("openai", "ft:x:2025", USAGE, requested="ft:x") == Decimal(18)


def test_overrides_before_genai_prices_and_genai_by_reported_then_requested():
    from genai_prices import Usage as GUsage
    from genai_prices import calc_price

    p = Pricing()
    # an id genai-prices does not know, asked for as one it does: priced as the requested one
    got = p.price("anthropic", "claude-haiku-4-5-nonexistent-99", USAGE, requested="claude-haiku-4-5")
    want = calc_price(
        GUsage(input_tokens=1_000_000, output_tokens=1_000_000), "claude-haiku-4-5", provider_id="anthropic"
    )
    assert got == want.total_price
    assert p.unpriced_count == 0


def test_reserve_and_settle_use_the_same_rate():
    p = Pricing({"openai:gpt-4o-mini": {"input_per_mtok": 0.075, "output_per_mtok": 0.3}})
    rate = p.rate("openai", "gpt-4o-mini")  # what a reservation prices (the reported id is not known yet)
    settled = p.price("openai", "gpt-4o-mini-2024-07-18", USAGE, requested="gpt-4o-mini")
    assert rate is not None and rate.cost(USAGE) == settled


@pytest.mark.parametrize(
    ("provider", "requested", "reported", "rate_in", "rate_out"),
    [
        ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "0.075", "0.3"),
        ("anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001", "0.5", "2.5"),
    ],
)
def test_gateway_bills_the_negotiated_price_of_a_dated_id(
    mock, start_gateway, tmp_path, provider, requested, reported, rate_in, rate_out
):
    cfg = {
        "providers": {provider: {"api_key": "sk-mock-0123456789", "api_base": mock.url}},
        "models": {"m": f"{provider}:{requested}"},
        "ledger": {"url": str(tmp_path / "usage.sqlite3")},
        "pricing": {f"{provider}:{requested}": {"input_per_mtok": rate_in, "output_per_mtok": rate_out}},
    }
    gw = start_gateway(cfg)
    mock.reset()
    mock.script(MockReply(reported_model=reported, input_tokens=1000, output_tokens=500))
    want = (1000 * Decimal(rate_in) + 500 * Decimal(rate_out)) / 1_000_000
    status, headers, body = http(
        "POST",
        gw.url + "/execute",
        {"prompt": "hi", "model": "m", "max_tokens": 600},
        {"X-LLM-Budget-Id": "b1", "X-LLM-Budget-USD": "1"},
    )
    assert status == 200, body
    import orjson

    data = orjson.loads(body)
    assert data["model"] == reported
    assert Decimal(data["cost_usd"]) == want  # the response
    assert Decimal(data["budget"]["remaining_usd"]) == 1 - want  # the budget
    mock.script(MockReply(reported_model=reported, input_tokens=1000, output_tokens=500))
    status, headers, body = http(
        "POST", gw.url + "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert status == 200 and Decimal(headers["x-llm-cost-usd"]) == want  # the header
    gw.stop()
    conn = sqlite3.connect(tmp_path / "usage.sqlite3")
    try:
        rows = conn.execute("SELECT model, cost_usd FROM llm_usage ORDER BY ts").fetchall()
    finally:
        conn.close()
    assert rows == [(reported, str(want)), (reported, str(want))]  # the ledger
