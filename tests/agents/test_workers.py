"""Real Celery worker processes, real Redis, a real gateway process in front of the shipped mock provider.

Each test sends tasks from this process (the client) to workers started by the fixtures in conftest.py and
checks what reached the upstream (the mock's request log), what came back, and what Redis holds."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from typing import Any

import pytest

from llm_connect.agents import FALLBACK_REPLY, Agent, build_system_prompt
from llm_connect.agents.history import RedisThreadHistory
from llm_connect.agents.runner import THREAD_BUDGET_PREFIX
from llm_connect.budget import BudgetTracker, RedisBudgetStore, ThreadBudgetRegistry
from llm_connect.testing import MockReply, MockServer

from .conftest import FAN_LATENCY, REDIS_URL, Session, Workers, free_port, needs_redis, personas, wait_result

pytestmark = [needs_redis, pytest.mark.timeout(180)]

WARN = "[BUDGET WARNING]"


def _msg(text: str, thread: str | None = None, **kw: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "channel": "slack",
        "sender": {"id": "U1", "name": "Jo"},
        "content": text,
        "thread_id": thread or f"th-{uuid.uuid4().hex[:8]}",
        **kw,
    }


def _send(celery: Any, queue: str, msg: dict[str, Any], agent: str, timeout: float = 60) -> dict[str, Any]:
    from llm_connect.agents.tasks import handle_message

    return wait_result(handle_message.apply_async(args=(msg,), kwargs={"agent": agent}, queue=queue), timeout)


def _upstream(mock: MockServer, model: str) -> list[list[dict[str, Any]]]:
    """Message lists the mock received for ``model``, oldest first."""
    return [r["body"]["messages"] for r in mock.requests if r.get("model") == model and r.get("body")]


def _agent(name: str) -> Agent:
    return Agent.from_dict(personas()[name], key=name)


def test_no_registered_task_is_async_def(celery_client: Any, gw_workers: Workers) -> None:
    from llm_connect.agents import tasks

    ours = {n: t for n, t in tasks.app.tasks.items() if n.startswith("llm_connect.agents.")}
    assert {
        "llm_connect.agents.handle_message",
        "llm_connect.agents.delegate",
        "llm_connect.agents.cleanup_thread",
        "llm_connect.agents.gather_replies",
        "llm_connect.agents.ping",
    } <= set(ours)
    for name, task in ours.items():
        assert not inspect.iscoroutinefunction(task.run), name
        assert not inspect.iscoroutinefunction(inspect.unwrap(task.run)), name
    # what the running worker registered is exactly these sync tasks
    registered = celery_client.control.inspect(destination=gw_workers.names, timeout=5).registered()
    names = {n for lst in registered.values() for n in lst if n.startswith("llm_connect.agents.")}
    assert names == set(ours)
    # and the decorator refuses an async def
    with pytest.raises(TypeError, match="plain def"):

        @tasks._sync_task("llm_connect.agents.bad")
        async def bad() -> None: ...


def test_handle_message_end_to_end_through_the_gateway(
    celery_client: Any, gw_workers: Workers, mock: MockServer, session: Session
) -> None:
    thread = f"e2e-{uuid.uuid4().hex[:8]}"
    first = _msg("Where is my parcel?", thread, tenant_id="acme", channel_metadata={"channel": "C9"})
    r1 = _send(celery_client, gw_workers.queue, first, "ada")
    assert r1["status"] == "ok", r1
    assert r1["content"] == "mock reply to: Where is my parcel?"
    assert r1["reply_to"] == first["id"] and r1["thread_id"] == thread and r1["tenant_id"] == "acme"
    assert r1["channel"] == "slack" and r1["channel_metadata"] == {"channel": "C9"}
    assert r1["model"] == "mock-quality" and r1["usage"]["prompt_tokens"] > 0
    assert r1["worker"]["hostname"] in gw_workers.names
    sent = _upstream(mock, "mock-quality")[-1]
    assert sent == [
        {"role": "system", "content": build_system_prompt(_agent("ada"))},
        {"role": "user", "content": "Where is my parcel?"},
    ]

    r2 = _send(celery_client, gw_workers.queue, _msg("It was due Monday.", thread, tenant_id="acme"), "ada")
    assert r2["status"] == "ok"
    sent = _upstream(mock, "mock-quality")[-1]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "Where is my parcel?" and sent[2]["content"] == r1["content"]
    # the thread budget counted both calls; the history sits in Redis with a TTL
    assert r2["budget"]["spent"] == r1["usage"]["total_tokens"] + r2["usage"]["total_tokens"]
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    try:
        key = f"{session.namespace}:agents:history:acme/{thread}/ada"
        assert r.llen(key) == 4 and 0 < r.ttl(key) <= 7 * 86400
    finally:
        r.close()


def test_all_providers_down_behind_the_gateway_gives_the_fallback(
    celery_client: Any, gw_workers: Workers, mock: MockServer
) -> None:
    mock.script(MockReply(model="mock-quality", error="server", repeat=True))
    try:
        reply = _send(celery_client, gw_workers.queue, _msg("hello?"), "ada")
    finally:
        mock.clear_scripts()
    assert reply["status"] == "fallback" and reply["content"] == FALLBACK_REPLY
    assert "503" in reply["error"]
    assert "sent the fallback reply" in gw_workers.log_text()


def test_gateway_down_gives_the_polite_fallback(celery_client: Any, start_workers: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    workers = start_workers("down", concurrency=2, env={"LLM_CONNECT_GATEWAY_URL": dead})
    t0 = time.monotonic()
    reply = _send(celery_client, workers.queue, _msg("Is anyone there?"), "ada")
    assert time.monotonic() - t0 < 15
    assert reply["status"] == "fallback"
    assert reply["content"] == "I'm having trouble processing your request right now. Please try again in a moment."
    assert "unreachable" in reply["error"]
    assert reply["worker"]["hostname"] in workers.names
    log = workers.log_text()
    assert "the model call failed" in log and "sent the fallback reply" in log
    assert "Traceback" not in log


def test_five_agent_fan_out_takes_the_slowest_agents_time(
    celery_client: Any, gw_workers: Workers, mock: MockServer
) -> None:
    from llm_connect.agents.tasks import collective_proposal

    agents = [f"fan{i}" for i in range(1, 6)]
    # warm up: every worker thread has imported and connected once
    wait_result(collective_proposal(_msg("warm up"), agents, queue=gw_workers.queue), 60, gw_workers)
    mock.clear_requests()

    t0 = time.perf_counter()
    proposal = collective_proposal(_msg("Should we ship on Friday?"), agents, queue=gw_workers.queue)
    result = wait_result(proposal, 60, gw_workers)
    elapsed = time.perf_counter() - t0

    slowest, total = max(FAN_LATENCY.values()), sum(FAN_LATENCY.values())
    assert result["count"] == 5 and result["ok"] == 5
    assert [r["agent"] for r in result["replies"]] == agents
    assert {r["model"] for r in result["replies"]} == set(FAN_LATENCY)
    assert len({r["thread_id"] for r in result["replies"]}) == 1  # one message, one thread, five agents
    assert elapsed >= slowest
    assert elapsed < slowest + 0.8, f"fan-out took {elapsed:.2f} s; slowest agent {slowest} s, sum {total} s"
    starts = sorted(r["time"] for r in mock.requests)
    assert starts[-1] - starts[0] < 0.5  # the five upstream calls overlapped


def test_warnings_are_injected_exactly_at_the_thresholds(
    celery_client: Any, gw_workers: Workers, mock: MockServer
) -> None:
    thread = f"warn-{uuid.uuid4().hex[:8]}"
    # usage per turn against the 100 000-token thread budget: 74 %, 76 %, 90 %, 91 %, 95 %, 95.2 %, 95.4 %
    spends = [(70_000, 4_000), (1_500, 500), (13_000, 1_000), (800, 200), (3_500, 500), (100, 100), (100, 100)]
    mock.script(
        *(
            MockReply(model="mock-thresh", text=f"answer {i}", input_tokens=p, output_tokens=c)
            for i, (p, c) in enumerate(spends)
        )
    )
    before = len(_upstream(mock, "mock-thresh"))
    replies = [_send(celery_client, gw_workers.queue, _msg(f"step {i}", thread), "thrifty") for i in range(7)]
    assert [r["status"] for r in replies] == ["ok"] * 7
    assert [r["budget"]["spent"] for r in replies] == [74_000, 76_000, 90_000, 91_000, 95_000, 95_200, 95_400]

    prompts = _upstream(mock, "mock-thresh")[before:]
    assert len(prompts) == 7
    warned = [[m["content"] for m in p if m["role"] == "system" and m["content"].startswith(WARN)] for p in prompts]
    # each threshold's warning reaches the model exactly once, in the prompt right after the crossing
    assert [len(w) for w in warned] == [0, 0, 1, 1, 0, 1, 0]
    bid = f"{THREAD_BUDGET_PREFIX}_/{thread}/thrifty"
    assert warned[2][0].startswith(f"{WARN} 75% of the token budget '{bid}' is used: 76,000 tokens of 100,000")
    assert warned[3][0].startswith(f"{WARN} 90% of the token budget '{bid}' is used: 90,000 tokens")
    assert warned[5][0].startswith(f"{WARN} 95% of the token budget '{bid}' is used: 95,000 tokens")
    all_warnings = [w for ws in warned for w in ws]
    for pct in ("75%", "90%", "95%"):
        assert sum(1 for w in all_warnings if w.startswith(f"{WARN} {pct}")) == 1
    # a warning is a system message right before the new user message
    assert prompts[2][-2]["content"] == warned[2][0] and prompts[2][-1] == {"role": "user", "content": "step 2"}
    assert [r["warnings"] for r in replies] == warned


def test_cleanup_records_final_usage(celery_client: Any, gw_workers: Workers, session: Session) -> None:
    from llm_connect.agents.tasks import cleanup_thread

    thread = f"clean-{uuid.uuid4().hex[:8]}"
    replies = [
        _send(celery_client, gw_workers.queue, _msg(t, thread, tenant_id="acme"), "ada")
        for t in ("one question", "and another one")
    ]
    assert all(r["status"] == "ok" for r in replies)
    used = sum(r["usage"]["total_tokens"] for r in replies)

    final = wait_result(cleanup_thread.apply_async(args=(thread, "acme"), queue=gw_workers.queue), 30, gw_workers)
    assert final["thread_id"] == thread and final["tenant_id"] == "acme"
    assert final["total_tokens"] == used
    assert final["agents"]["ada"] == {
        "prompt_tokens": sum(r["usage"]["prompt_tokens"] for r in replies),
        "completion_tokens": sum(r["usage"]["completion_tokens"] for r in replies),
        "turns": 2,
    }
    assert final["budgets"]["ada"]["max_tokens"] == 50_000 and final["budgets"]["ada"]["total_tokens"] == used

    async def stored() -> tuple[Any, list[Any], bool]:
        h = RedisThreadHistory(REDIS_URL, namespace=session.namespace)
        store = RedisBudgetStore(REDIS_URL, namespace=session.namespace)
        try:
            registry = ThreadBudgetRegistry(50_000, store, id_prefix=THREAD_BUDGET_PREFIX)
            exists = registry.has_budget(f"acme/{thread}/ada")
            return await h.final(f"acme/{thread}"), await h.load(f"acme/{thread}/ada"), exists
        finally:
            await h.aclose()
            await store.aclose()

    record, history, budget_exists = asyncio.run(stored())
    assert record == final  # recorded in Redis
    assert history == [] and not budget_exists  # the thread's state is freed
    again = _send(celery_client, gw_workers.queue, _msg("fresh start", thread, tenant_id="acme"), "ada")
    assert again["budget"]["spent"] == again["usage"]["total_tokens"]


@pytest.fixture(scope="session")
def inproc_workers(start_workers: Any) -> Workers:
    """Two worker processes in in-process mode (a Router from the config, no gateway) on one queue."""
    return start_workers("inproc", count=2, concurrency=4, env={"LLM_CONNECT_AGENT_MODE": "in_process"})


def test_delegation_chain_cap_holds_across_two_worker_processes(
    celery_client: Any, inproc_workers: Workers, mock: MockServer, session: Session
) -> None:
    from llm_connect.agents.tasks import cleanup_thread, delegation_chain

    thread = f"dlg-{uuid.uuid4().hex[:8]}"
    cap = personas()["lead"]["max_tokens_per_thread"]  # 1 500 tokens for the lead's thread, A -> B -> C included
    chain = ["lead", "analyst", "checker"]
    # every upstream call reports 120 tokens
    mock.script(
        MockReply(
            model="mock-dlg", text="noted, passing it on", input_tokens=100, output_tokens=20, latency=0.05, repeat=True
        )
    )
    before = len(_upstream(mock, "mock-dlg"))
    try:
        # two whole chains, one after the other: B and C spend (in either process) under A's budget
        for i in range(2):
            steps = _steps(
                delegation_chain(_msg(f"warm-up {i}", thread), chain, [600, 300], queue=inproc_workers.queue)
            )
            assert [s["status"] for s in steps] == ["ok", "ok", "ok"]
            assert [s["agent"] for s in steps] == chain
            sub_b, sub_c = steps[1]["budget"], steps[2]["budget"]
            assert sub_b["total"] == 600 and sub_c["total"] == 300 and sub_c["spent"] == 120
        # then 12 chains at once (36 calls, 4 320 tokens asked) race for what is left of A's 1 500
        results = [
            delegation_chain(_msg(f"task {i}", thread), chain, [600, 300], queue=inproc_workers.queue)
            for i in range(12)
        ]
        runs = [_steps(r) for r in results]
    finally:
        mock.clear_scripts()
    calls = len(_upstream(mock, "mock-dlg")) - before

    async def root_state() -> Any:
        store = RedisBudgetStore(REDIS_URL, namespace=session.namespace)
        try:
            root = BudgetTracker(cap, store=store, budget_id=f"{THREAD_BUDGET_PREFIX}_/{thread}/lead")
            return await root.astate()
        finally:
            await store.aclose()

    state = asyncio.run(root_state())
    assert state.spent <= cap and state.overrun == 0  # A's cap holds, not one token over
    assert state.spent == 120 * calls  # every upstream call, in either process, was charged to A's budget
    assert calls < 6 + 36 and state.spent > cap - 500  # the cap stopped calls; the budget was used, not refused
    statuses = [s["status"] for steps in runs for s in steps]
    assert statuses.count("ok") == calls - 6
    assert {"budget_exhausted", "skipped"} & set(statuses)
    hosts = {s["worker"]["hostname"] for steps in runs for s in steps}
    assert hosts == set(inproc_workers.names)  # the steps ran in both worker processes

    final = wait_result(cleanup_thread.apply_async(args=(thread,), queue=inproc_workers.queue), 30, inproc_workers)
    assert final["total_tokens"] == state.spent
    assert sum(a["turns"] for a in final["agents"].values()) == calls
    assert {"lead", "analyst", "checker"} == set(final["agents"])
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    try:  # the thread's budgets, sub-budgets included, are gone from Redis
        assert not list(r.scan_iter(match=f"{session.namespace}:budget:*{thread}*", count=1000))
    finally:
        r.close()
    assert "Traceback" not in inproc_workers.log_text()


def _steps(result: Any) -> list[dict[str, Any]]:
    """Every step's reply of a Celery chain, first to last."""
    out = []
    node = result
    while node is not None:
        out.append(wait_result(node, 90))
        node = node.parent
    return out[::-1]


def test_delegation_ran_in_both_processes(celery_client: Any, inproc_workers: Workers, mock: MockServer) -> None:
    from llm_connect.agents.tasks import delegation_chain

    mock.script(MockReply(model="mock-dlg", text="ok", input_tokens=5, output_tokens=1, latency=0.2, repeat=True))
    try:
        results = [
            delegation_chain(_msg(f"job {i}"), ["lead", "analyst"], [300], queue=inproc_workers.queue) for i in range(8)
        ]
        finals = [wait_result(r, 60, inproc_workers) for r in results]
    finally:
        mock.clear_scripts()
    assert all(f["status"] == "ok" for f in finals)
    assert {f["worker"]["hostname"] for f in finals} == set(inproc_workers.names)
