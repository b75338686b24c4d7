"""How much of a token budget is spent before its first refusal: the strict bound vs calls fitted to the budget.

One run, side by side, for budgets of 2 000 and 10 000 tokens:

* library — ``BudgetTracker`` on RunConfig, Anthropic adapter on the shipped mock server (count endpoint),
  a client asking ``max_tokens=300`` for every call;
* gateway — a tenant budget, ``POST /complete`` to a real gateway process (same mock upstream);
* agents — a thread budget of the agent runtime (the code the Celery task runs), talking to that gateway
  (``GatewayBackend``, the workers' default) with history and warnings in memory.

"before" is the strict reservation (``fit_to_budget=False``): the prompt's bound (one token per UTF-8 byte)
plus ``max_tokens`` as asked, refused when it does not fit. "now" is the default: exact counts near the cap,
``max_tokens`` clamped to what is left, history dropped and a landing kept by the agents. Columns: share of
the cap spent at the first refusal, overrun (spend beyond a cap: must be 0), and for agents the 75/90/95 %
warnings that reached a prompt of the model out of those that fired.

    python bench/budget_utilisation.py            # ~20 s
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from llm_connect import RunConfig, create_adapter
from llm_connect.agents import Agent, AgentRuntime, AgentSettings, GatewayBackend, InboundMessage, ModelBackend
from llm_connect.agents.history import MemoryThreadHistory
from llm_connect.budget import BudgetTracker, MemoryBudgetStore
from llm_connect.errors import LLMBudgetExceededError
from llm_connect.testing import MockReply, MockServer
from llm_connect.transport import Transport

CAPS = (2_000, 10_000)
WORDS = (
    "the budget of every thread is shared by the agents that answer in it and each call reserves its worst case "
    "before it goes out so that no cap is ever overspent while calls run at the same time across replicas"
).split()
KEY = "bench-key-0123456789abcdef"


def sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) + "."


def script(mock: MockServer, seed: int, n: int = 400) -> None:
    rng = random.Random(seed)
    mock.reset()
    mock.script(*(MockReply(text=sentence(rng, 30, 90)) for _ in range(n)))


# -- library ---------------------------------------------------------------------------------------------------
async def library(mock: MockServer, cap: int, fit: bool) -> dict[str, Any]:
    script(mock, cap)
    rng = random.Random(1)
    adapter = create_adapter("anthropic:claude-bench", api_base=mock.anthropic_base, api_key="k", fit_to_budget=fit)
    tracker = BudgetTracker(total=cap)
    calls = 0
    while True:
        try:
            await adapter.async_execute_prompt(sentence(rng, 15, 45), RunConfig(max_tokens=300, budget_tracker=tracker))
            calls += 1
        except LLMBudgetExceededError:
            break
    st = tracker.state()
    await adapter.aclose()
    return {"spent": st.spent, "overrun": st.overrun, "calls": calls}


# -- gateway ---------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gateway(mock: MockServer, workdir: Path) -> Any:
    tenants: dict[str, Any] = {"agents": {}}
    keys: list[dict[str, Any]] = [{"name": "agents", "key": KEY, "tenant": "agents", "models": ["*"]}]
    for cap in CAPS:
        for mode in ("before", "now"):
            name = f"t{cap}-{mode}"
            tenants[name] = {"budget": {"tokens": cap}}
            keys.append({"name": name, "key": f"{KEY}-{name}", "tenant": name, "models": ["*"]})
    upstream = {"api_base": mock.anthropic_base, "api_key": "k"}
    cfg = {
        "server": {"host": "127.0.0.1", "request_timeout": 20},
        "models": {
            "claude-now": {"model": "anthropic:claude-bench", **upstream},
            "claude-before": {"model": "anthropic:claude-bench", **upstream, "options": {"fit_to_budget": False}},
        },
        "tenants": tenants,
        "api_keys": keys,
        "ledger": {"url": str(workdir / "usage.sqlite3")},
    }
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    port = free_port()
    env = {**os.environ, "LLM_CONNECT_HOME": str(workdir / "home")}
    env.pop("LLM_CONNECT_CONFIG", None)
    log = open(workdir / "gateway.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_connect.server", "--port", str(port), "--config", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url + "/health", timeout=0.5):
                    break
            if proc.poll() is not None:
                raise RuntimeError((workdir / "gateway.log").read_text()[-3000:])
            time.sleep(0.05)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        log.close()


async def via_gateway(mock: MockServer, url: str, cap: int, fit: bool) -> dict[str, Any]:
    script(mock, cap + 1)
    rng = random.Random(2)
    mode = "now" if fit else "before"
    headers = {"Authorization": f"Bearer {KEY}-t{cap}-{mode}"}
    transport = Transport.default()
    spent = calls = 0
    while True:
        body = {"model": f"claude-{mode}", "messages": [{"role": "user", "content": sentence(rng, 15, 45)}]}
        reply = await transport.post(url + "/complete", {**body, "max_tokens": 300}, headers=headers)
        if reply.status != 200:
            code = orjson.loads(reply.body)["error"]["code"]
            assert code == "budget_exceeded", reply.body
            break
        usage = orjson.loads(reply.body)["usage"]
        spent += usage["prompt_tokens"] + usage["completion_tokens"]
        calls += 1
    return {"spent": spent, "overrun": max(0, spent - cap), "calls": calls}


# -- agents ----------------------------------------------------------------------------------------------------
class Recorder(ModelBackend):
    """Passes calls on and keeps every prompt the model received."""

    def __init__(self, inner: ModelBackend) -> None:
        self.inner = inner
        self.prompts: list[list[dict[str, Any]]] = []

    async def complete(self, group: str, messages: Sequence[Mapping[str, Any]], **kw: Any) -> Any:
        self.prompts.append([dict(m) for m in messages])
        return await self.inner.complete(group, messages, **kw)

    async def count_tokens(self, group: str, messages: Sequence[Mapping[str, Any]]) -> int | None:
        return await self.inner.count_tokens(group, messages)

    async def aclose(self) -> None:
        await self.inner.aclose()


def delivered(prompts: list[list[dict[str, Any]]], threshold: float) -> bool:
    marks = (f"[BUDGET WARNING] {threshold:.0%} of", f"past {threshold:.0%}:")
    return any(m["role"] == "system" and any(k in str(m["content"]) for k in marks) for p in prompts for m in p)


async def agents(mock: MockServer, url: str, cap: int, fit: bool) -> dict[str, Any]:
    script(mock, cap + 2)
    rng = random.Random(3)
    mode = "now" if fit else "before"
    persona = Agent("ada", "support agent", model_preference=f"claude-{mode}", max_tokens_per_thread=cap)
    settings = AgentSettings(personas={"ada": persona}, mode="gateway", gateway_url=url, max_output_tokens=300)
    backend = Recorder(GatewayBackend(url, api_key=KEY))
    rt = AgentRuntime(settings, backend=backend, history=MemoryThreadHistory(), budget_store=MemoryBudgetStore())
    rt.fit_to_budget = fit
    turns = 0
    try:
        while True:
            msg = InboundMessage.from_dict(
                {"sender": {"id": "u"}, "content": sentence(rng, 10, 30), "thread_id": f"{cap}-{mode}"}
            )
            reply = await rt.run(msg, persona)
            if reply.status != "ok":
                assert reply.status == "budget_exhausted", reply
                break
            turns += 1
        st = await rt.thread_tracker(None, f"{cap}-{mode}", persona).astate()
    finally:
        await rt.aclose()
    fired = sorted(t for unit, t in st.fired if unit == "tokens")
    got = [t for t in fired if delivered(backend.prompts, t)]
    return {"spent": st.spent, "overrun": st.overrun, "calls": turns, "warnings": f"{len(got)}/{len(fired)}"}


# -- report ----------------------------------------------------------------------------------------------------
async def main() -> None:
    rows: list[tuple[str, int, dict[str, Any], dict[str, Any]]] = []
    with MockServer.run_in_thread() as mock, tempfile.TemporaryDirectory() as tmp, gateway(mock, Path(tmp)) as url:
        for cap in CAPS:
            rows.append(("library", cap, await library(mock, cap, False), await library(mock, cap, True)))
        for cap in CAPS:
            old, new = await via_gateway(mock, url, cap, False), await via_gateway(mock, url, cap, True)
            rows.append(("gateway", cap, old, new))
        for cap in CAPS:
            rows.append(("agents", cap, await agents(mock, url, cap, False), await agents(mock, url, cap, True)))
        await Transport.default().aclose()
    print(
        f"{'surface':<8} {'cap':>6} | {'before: spent':>13} {'calls':>5} {'overrun':>7} {'warn':>5} |"
        f" {'now: spent':>10} {'calls':>5} {'overrun':>7} {'warn':>5}"
    )
    for surface, cap, old, new in rows:
        print(f"{surface:<8} {cap:>6} | {cells(old, cap)} | {cells(new, cap)}")


def cells(r: dict[str, Any], cap: int) -> str:
    share = f"{r['spent'] * 100 / cap:.1f} %"
    return f"{share:>13} {r['calls']:>5} {r['overrun']:>7} {r.get('warnings', '-'):>5}"


if __name__ == "__main__":
    asyncio.run(main())
