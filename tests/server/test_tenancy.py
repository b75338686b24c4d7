"""Tenancy: rate limits vs budgets (distinct 429 codes), delegated and per-thread budgets over HTTP,
/v1/usage scoping, /metrics."""

from __future__ import annotations

import orjson
import pytest

from .conftest import ACME_KEY, ADMIN_KEY, BETA_KEY, LIMITED_KEY, GatewayProc, base_config, http

TINY_KEY = "tiny-key-0123456789abcdef-xyz"
RICH_KEY = "rich-key-0123456789abcdef-xyz"
USD_KEY = "usd-key-0123456789abcdef-xyz"
MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    d = tmp_path_factory.mktemp("tenancy")
    cfg = base_config(mock, d)
    cfg["tenants"].update(
        {
            "tiny": {"budget": {"tokens": 40, "period": "daily"}},
            "rich": {},
            "usd": {"budget": {"usd": "0.50", "period": "monthly"}},
        }
    )
    cfg["api_keys"] += [
        {"name": "tiny", "key": TINY_KEY, "tenant": "tiny", "models": ["*"]},
        {"name": "rich", "key": RICH_KEY, "tenant": "rich", "models": ["*"]},
        {"name": "usd", "key": USD_KEY, "tenant": "usd", "models": ["*"]},
    ]
    cfg["router"]["groups"]["priced"] = [{"model": "openai:gpt-priced"}]
    cfg["pricing"] = {"openai:gpt-priced": {"input_per_mtok": 10000, "output_per_mtok": 10000}}  # $0.01 / token
    g = GatewayProc(cfg, d, name="tenancy").start()
    yield g
    g.stop()


def chat(gw, key, body, headers=None):
    status, hdrs, raw = http(
        "POST", gw.url + "/v1/chat/completions", body, headers={"Authorization": f"Bearer {key}", **(headers or {})}
    )
    return status, hdrs, orjson.loads(raw)


def execute(gw, key, body, headers=None):
    status, hdrs, raw = http(
        "POST", gw.url + "/execute", body, headers={"Authorization": f"Bearer {key}", **(headers or {})}
    )
    return status, hdrs, orjson.loads(raw)


def test_rate_limit_429_is_rate_limit_exceeded(gw):
    codes = []
    for _ in range(5):
        status, headers, body = chat(gw, LIMITED_KEY, {"model": "fake", "messages": MSG})
        codes.append(status)
        if status == 429:
            assert body["error"]["code"] == "rate_limit_exceeded"
            assert body["error"]["type"] == "rate_limit_error"
            assert int(headers["retry-after"]) >= 1
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]


def test_budget_429_is_budget_exceeded(gw):
    statuses, spent = [], 0
    for _ in range(20):
        status, _, body = chat(gw, TINY_KEY, {"model": "fake", "messages": MSG, "max_tokens": 5})
        statuses.append(status)
        if status == 200:
            spent += body["usage"]["total_tokens"]
        else:
            assert status == 429
            assert body["error"]["code"] == "budget_exceeded"
            assert body["error"]["type"] == "insufficient_quota"
    assert 200 in statuses and 429 in statuses
    assert spent <= 40


def test_usd_budget(gw):
    # each call: ~2 input + up to 5 output tokens at $0.01 / token -> about $0.07 reserved, the cap is $0.50
    ok, refused = 0, 0
    for _ in range(15):
        status, headers, body = chat(gw, USD_KEY, {"model": "priced", "messages": MSG, "max_tokens": 5})
        if status == 200:
            ok += 1
            assert float(headers["x-llm-cost-usd"]) > 0
        else:
            assert status == 429 and body["error"]["code"] == "budget_exceeded"
            refused += 1
    assert ok >= 3 and refused >= 1


def test_delegated_budget_shared_by_a_chain(gw):
    hdr = {"X-LLM-Budget-Id": "chain-1", "X-LLM-Budget-Tokens": "30"}
    # agent A creates the budget; B and C only name it
    status, _, body = execute(gw, RICH_KEY, {"prompt": "one two", "model": "fake", "max_tokens": 4, "agent": "A"}, hdr)
    assert status == 200 and body["budget"]["id"] == "chain-1"
    first_left = body["budget"]["remaining_tokens"]
    assert first_left < 30
    results = []
    for agent in ["B", "C"] * 6:
        status, _, body = execute(
            gw,
            RICH_KEY,
            {"prompt": "one two", "model": "fake", "max_tokens": 4, "agent": agent},
            {"X-LLM-Budget-Id": "chain-1"},
        )
        results.append((status, body))
    oks = [b for s, b in results if s == 200]
    refused = [b for s, b in results if s != 200]
    assert oks and refused
    assert all(b["error"]["code"] == "budget_exceeded" for b in refused)
    assert oks[-1]["budget"]["remaining_tokens"] < first_left
    # a later cap does not change the existing budget
    status, _, body = execute(
        gw,
        RICH_KEY,
        {"prompt": "x", "model": "fake", "max_tokens": 25},
        {"X-LLM-Budget-Id": "chain-1", "X-LLM-Budget-Tokens": "100000"},
    )
    assert status == 429 and body["error"]["code"] == "budget_exceeded"
    # the same id in another tenant is another budget
    status, _, _ = execute(
        gw,
        ACME_KEY,
        {"prompt": "x", "model": "fake", "max_tokens": 2},
        {"X-LLM-Budget-Id": "chain-1", "X-LLM-Budget-Tokens": "50"},
    )
    assert status == 200


def test_delegated_budget_in_the_body(gw):
    body = {"prompt": "a b c", "model": "fake", "max_tokens": 3, "budget": {"id": "body-1", "total_tokens": 15}}
    status, _, out = execute(gw, RICH_KEY, body)
    assert status == 200 and out["budget"]["id"] == "body-1"


def test_unknown_delegated_budget_is_422(gw):
    status, _, body = chat(gw, RICH_KEY, {"model": "fake", "messages": MSG}, {"X-LLM-Budget-Id": "never-made"})
    assert status == 422 and body["error"]["code"] == "unknown_budget"
    status, _, body = chat(gw, RICH_KEY, {"model": "fake", "messages": MSG}, {"X-LLM-Budget-Tokens": "5"})
    assert status == 422 and body["error"]["param"] == "X-LLM-Budget-Id"
    status, _, body = chat(
        gw, RICH_KEY, {"model": "fake", "messages": MSG}, {"X-LLM-Budget-Id": "b", "X-LLM-Budget-Tokens": "many"}
    )
    assert status == 422 and body["error"]["param"] == "X-LLM-Budget-Tokens"


def test_thread_budget(gw):
    statuses = []
    for _ in range(20):
        status, _, body = chat(
            gw, RICH_KEY, {"model": "fake", "messages": MSG, "max_tokens": 4}, {"X-LLM-Thread-Id": "conv-7"}
        )
        statuses.append(status)
        if status != 200:
            assert body["error"]["code"] == "budget_exceeded"
    assert statuses[0] == 200 and statuses[-1] == 429
    # another thread is not affected
    status, _, _ = chat(
        gw, RICH_KEY, {"model": "fake", "messages": MSG, "max_tokens": 4}, {"X-LLM-Thread-Id": "conv-8"}
    )
    assert status == 200


def test_usage_is_scoped(gw):
    chat(gw, ACME_KEY, {"model": "fake", "messages": MSG})
    chat(gw, BETA_KEY, {"model": "fake", "messages": MSG})
    status, _, raw = http("GET", gw.url + "/v1/usage?group_by=tenant", headers={"Authorization": f"Bearer {ACME_KEY}"})
    body = orjson.loads(raw)
    assert status == 200 and body["tenant"] == "acme"
    assert [r["key"] for r in body["data"]] == ["acme"]
    status, _, raw = http("GET", gw.url + "/v1/usage?tenant=beta", headers={"Authorization": f"Bearer {ACME_KEY}"})
    assert status == 403
    status, _, raw = http("GET", gw.url + "/v1/usage?group_by=tenant", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    keys = {r["key"] for r in orjson.loads(raw)["data"]}
    assert {"acme", "beta"} <= keys
    status, _, raw = http(
        "GET", gw.url + "/v1/usage?tenant=beta&group_by=model", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert status == 200 and orjson.loads(raw)["tenant"] == "beta"
    status, _, raw = http("GET", gw.url + "/v1/usage?group_by=color", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert status == 422
    status, _, raw = http("GET", gw.url + "/v1/usage?since=yesterday", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert status == 422 and orjson.loads(raw)["error"]["param"] == "since"


def test_metrics(gw):
    status, headers, raw = http("GET", gw.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = raw.decode()
    for family in (
        "llm_gateway_requests_total",
        "llm_gateway_request_duration_seconds_bucket",
        "llm_gateway_tokens_total",
        "llm_gateway_upstream_calls_total",
        "llm_gateway_in_flight_requests",
    ):
        assert family in text, family
    assert "\nllm_gateway_in_flight_requests 1.0\n" in text  # this scrape itself
    assert 'llm_gateway_budget_rejections_total{tenant="tiny"}' in text
    assert 'llm_gateway_rate_limited_total{tenant="beta"}' in text
    assert 'llm_gateway_cost_usd_total{model="openai:gpt-priced",tenant="usd"}' in text


def test_ready_and_docs(gw):
    status, _, raw = http("GET", gw.url + "/ready")
    assert status == 200 and orjson.loads(raw)["checks"] == {"ledger": "ok", "keys": "ok"}
    status, _, raw = http("GET", gw.url + "/openapi.json")
    doc = orjson.loads(raw)
    assert status == 200 and {"/v1/chat/completions", "/execute", "/complete", "/v1/usage"} <= set(doc["paths"])
    status, headers, raw = http("GET", gw.url + "/docs")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"http://" not in raw and b"https://" not in raw  # self-contained, no CDN
