"""Tenant budgets spent to the last tokens through a real gateway process: a tenant with a cap of 2 000 or
10 000 tokens spends >= 95 % before its first 429, with no overshoot; ``POST /count_tokens``."""

from __future__ import annotations

import random

import orjson
import pytest

from llm_connect.testing import MockReply

from .conftest import ADMIN_KEY, GatewayProc, base_config, http

WORDS = "every call reserves its worst case before it goes out so that no cap is overspent".split()
CAPS = (2_000, 10_000)


def key(name: str) -> str:
    return f"util-{name}-0123456789abcdef"


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    d = tmp_path_factory.mktemp("utilisation")
    cfg = base_config(mock, d)
    upstream = {"api_base": mock.anthropic_base, "api_key": "sk-upstream"}
    cfg["models"].update(
        {
            "claude": {"model": "anthropic:claude-util", **upstream},
            "claude-strict": {"model": "anthropic:claude-util", **upstream, "options": {"fit_to_budget": False}},
        }
    )
    for cap in CAPS:
        for mode in ("fit", "strict"):
            name = f"cap{cap}-{mode}"
            cfg["tenants"][name] = {"budget": {"tokens": cap}}
            cfg["api_keys"].append({"name": name, "key": key(name), "tenant": name, "models": ["*"]})
    g = GatewayProc(cfg, d, name="utilisation").start()
    yield g
    g.stop()


def spend(gw, mock, tenant: str, model: str, seed: int) -> tuple[int, int, int]:
    """(tokens the gateway reported, successful calls, upstream chat requests) until the first refusal."""
    rng = random.Random(seed)
    mock.script(
        *(
            MockReply(model="claude-util", text=" ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 90))))
            for _ in range(400)
        )
    )
    before = sum(1 for r in mock.requests if r["path"] == "/v1/messages")
    spent = calls = 0
    while True:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 45)))
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 300}
        status, _, raw = http("POST", gw.url + "/complete", body, headers={"Authorization": f"Bearer {key(tenant)}"})
        if status != 200:
            assert status == 429 and orjson.loads(raw)["error"]["code"] == "budget_exceeded", raw
            upstream = sum(1 for r in mock.requests if r["path"] == "/v1/messages") - before
            mock.clear_scripts()
            return spent, calls, upstream
        usage = orjson.loads(raw)["usage"]
        spent += usage["prompt_tokens"] + usage["completion_tokens"]
        calls += 1


def ledger_spent(gw, tenant: str) -> int:
    status, _, raw = http(
        "GET", gw.url + f"/v1/usage?group_by=tenant&tenant={tenant}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert status == 200, raw
    rows = orjson.loads(raw)["data"]
    return sum(r["input_tokens"] + r["output_tokens"] for r in rows)


@pytest.mark.parametrize("cap", CAPS)
def test_a_tenant_spends_95_percent_of_its_cap_before_the_first_refusal(gw, mock, cap):
    spent, calls, upstream = spend(gw, mock, f"cap{cap}-fit", "claude", cap)
    assert 0.95 * cap <= spent <= cap, (spent, calls)
    assert upstream == calls  # every refusal happened before any provider call
    assert ledger_spent(gw, f"cap{cap}-fit") == spent  # and the ledger agrees: no overshoot hidden anywhere


def test_the_strict_bound_refuses_earlier(gw, mock):
    strict, _, _ = spend(gw, mock, "cap2000-strict", "claude-strict", 7)
    assert strict < 0.85 * 2_000


def test_count_tokens_is_exact_where_the_model_can_count(gw, mock):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there friend"}]
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    status, _, raw = http("POST", gw.url + "/count_tokens", {"model": "claude", "messages": msgs}, headers=auth)
    assert status == 200, raw
    out = orjson.loads(raw)
    assert out == {"input_tokens": 3 + 4 + 1 + 8, "exact": True, "model": "claude"}  # mock count + margin
    # an ollama deployment has no count: the gateway's bound, marked as such
    status, _, raw = http("POST", gw.url + "/count_tokens", {"model": "fast", "messages": msgs}, headers=auth)
    out = orjson.loads(raw)
    assert status == 200 and out["exact"] is False and out["input_tokens"] > 3 + 4
    status, _, raw = http("POST", gw.url + "/count_tokens", {"model": "claude"}, headers=auth)
    assert status == 422
    status, _, _ = http("POST", gw.url + "/count_tokens", {"model": "claude", "messages": msgs})
    assert status == 401
