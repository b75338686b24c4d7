"""claude_code against a stub `claude` executable put on PATH by the test."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from decimal import Decimal

import pytest

from llm_connect import LLMConfigurationError, LLMProviderUnavailableError, LLMTimeoutError, RunConfig, create_adapter

STUB = r"""#!{python}
import json, os, sys, time
argv = sys.argv[1:]
prompt = sys.stdin.read()
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps({{"argv": argv, "prompt": prompt, "pid": os.getpid()}}) + "\n")
mode = os.environ.get("STUB_MODE", "ok")
if mode == "sleep":
    time.sleep(30)
if mode == "error":
    print(json.dumps({{"type": "result", "subtype": "error_during_execution", "is_error": True,
                      "result": "something broke"}}))
    sys.exit(1)
if mode == "garbage":
    print("not json"); sys.exit(2)
print(json.dumps({{
    "type": "result", "subtype": "success", "is_error": False, "duration_ms": 1200, "num_turns": 1,
    "result": "Stub answer to: " + prompt.strip(), "session_id": "sess-123", "total_cost_usd": 0.0123,
    "usage": {{"input_tokens": 10, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000,
              "output_tokens": 20}},
    "modelUsage": {{"claude-sonnet-4-5": {{"inputTokens": 10}}}}
}}))
"""


@pytest.fixture
def stub(tmp_path, monkeypatch):
    exe = tmp_path / "claude"
    exe.write_text(STUB.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STUB_LOG", str(log))
    return log


def calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


async def test_answer_usage_and_cost(stub):
    a = create_adapter("claude_code:sonnet")
    r = await a.async_execute_prompt(
        [{"role": "system", "content": "be terse"}, {"role": "user", "content": "hello"}], RunConfig()
    )
    assert r.text == "Stub answer to: hello"
    assert r.usage.input_tokens == 1110 and r.usage.cache_read_tokens == 1000 and r.usage.cache_write_tokens == 100
    assert r.usage.output_tokens == 20
    assert r.cost_usd == Decimal("0.0123") and r.request_id == "sess-123" and r.model == "claude-sonnet-4-5"
    argv = calls(stub)[0]["argv"]
    assert argv[:3] == ["-p", "--output-format", "json"]
    assert argv[argv.index("--model") + 1] == "sonnet"
    assert argv[argv.index("--system-prompt") + 1] == "be terse"


def test_sync_facade(stub):
    assert create_adapter("claude_code").execute_prompt("hi").text == "Stub answer to: hi"


async def test_timeout_kills_the_child(stub, monkeypatch):
    monkeypatch.setenv("STUB_MODE", "sleep")
    start = time.perf_counter()
    with pytest.raises(LLMTimeoutError):
        await create_adapter("claude_code").async_execute_prompt("x", RunConfig(timeout=1.0))
    assert time.perf_counter() - start < 2.5
    pid = calls(stub)[0]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("mode", ["error", "garbage"])
async def test_failures_are_typed(stub, monkeypatch, mode):
    monkeypatch.setenv("STUB_MODE", mode)
    with pytest.raises(LLMProviderUnavailableError):
        await create_adapter("claude_code").async_execute_prompt("x")


async def test_missing_binary_is_a_configuration_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LLMConfigurationError, match="not on PATH"):
        await create_adapter("claude_code").async_execute_prompt("x")


async def test_stream_and_usd_budget(stub):
    from llm_connect.budget import BudgetTracker

    a = create_adapter("claude_code")
    chunks = [c async for c in a.astream("hi", RunConfig())]
    assert "".join(c.text for c in chunks) == "Stub answer to: hi"
    assert chunks[-1].usage is not None and chunks[-1].cost_usd == Decimal("0.0123")
    usd = BudgetTracker(total_usd=Decimal("1"))
    r = await a.async_execute_prompt("hi", RunConfig(budget_tracker=usd))
    assert usd.spent_usd == r.cost_usd == Decimal("0.0123") and usd.reserved_usd == 0


@pytest.mark.parametrize("model", ["sonnet", "opus", "haiku", "claude-opus-4-1", "some-future-model", ""])
async def test_cli_model_aliases_are_priced_for_usd_budgets(stub, model):
    """The CLI's aliases (and names the price list does not know yet) still get a list price to reserve."""
    from llm_connect.budget import BudgetTracker

    a = create_adapter(f"claude_code:{model}" if model else "claude_code")
    assert a._worst_cost(1000, 1000) is not None
    usd = BudgetTracker(total_usd=Decimal("5"))
    r = await a.async_execute_prompt("hi", RunConfig(budget_tracker=usd, max_tokens=100))
    assert usd.spent_usd == r.cost_usd and usd.reserved_usd == 0


async def test_timeout_kills_what_the_child_started(tmp_path, monkeypatch):
    """A wrapper script that runs the real work in a grandchild: the timeout still ends both, on time."""
    exe = tmp_path / "claude"
    marker = tmp_path / "grandchild.pid"
    exe.write_text(f"#!/bin/sh\nsleep 30 &\necho $! > {marker}\nwait\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    start = time.perf_counter()
    with pytest.raises(LLMTimeoutError):
        await create_adapter("claude_code").async_execute_prompt("x", RunConfig(timeout=1.0))
    assert time.perf_counter() - start < 3
    grandchild = int(marker.read_text())
    for _ in range(50):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the grandchild outlived the timeout")
