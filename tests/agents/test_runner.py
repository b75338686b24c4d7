"""AgentRuntime in process: thread budgets and warning injection, exhaustion, fallback, delegation, cleanup.

The model is the shipped fake provider (scripted usage); budgets and history are real (Redis, with the
in-memory fallback where noted)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from llm_connect.agents import (
    BUDGET_EXHAUSTED_REPLY,
    FALLBACK_REPLY,
    Agent,
    AgentReply,
    AgentRuntime,
    AgentSettings,
    InboundMessage,
    InProcessBackend,
    build_system_prompt,
    run_agent,
    run_agent_reply,
)
from llm_connect.agents.history import MemoryThreadHistory, RedisThreadHistory
from llm_connect.agents.runner import THREAD_BUDGET_PREFIX
from llm_connect.budget import MemoryBudgetStore, RedisBudgetStore
from llm_connect.errors import LLMProviderUnavailableError
from llm_connect.providers.fake import FakeAdapter, FakeReply
from llm_connect.types import Usage

from .conftest import REDIS_URL, free_port, redis_up

WARN = "[BUDGET WARNING]"


def _settings(**kw: object) -> AgentSettings:
    personas = [
        Agent("ada", "support agent", model_preference="m", max_tokens_per_thread=100_000),
        Agent(
            "lead",
            "planner",
            model_preference="m",
            max_tokens_per_thread=2_000,
            may_delegate_to=("analyst",),
            max_output_tokens=20,
        ),
        Agent("analyst", "analyst", model_preference="m", may_delegate_to=("checker",), max_output_tokens=20),
        Agent("checker", "checker", model_preference="m", max_output_tokens=20),
    ]
    return AgentSettings(personas={a.id: a for a in personas}, mode="in_process", **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["redis", "memory"])
async def rt_parts(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FakeAdapter, AgentRuntime]]:
    fake = FakeAdapter("m")
    backend = InProcessBackend(adapters={"m": fake})
    if request.param == "memory":
        rt = AgentRuntime(
            _settings(redis_url=None), backend=backend, history=MemoryThreadHistory(), budget_store=MemoryBudgetStore()
        )
        yield fake, rt
        await rt.aclose()
        return
    if not redis_up():
        pytest.skip("needs Redis at 127.0.0.1:6379")
    ns = f"llmc-run-{uuid.uuid4().hex[:8]}"
    store = RedisBudgetStore(REDIS_URL, namespace=ns)
    hist = RedisThreadHistory(REDIS_URL, namespace=ns)
    rt = AgentRuntime(_settings(redis_url=REDIS_URL, namespace=ns), backend=backend, history=hist, budget_store=store)
    try:
        yield fake, rt
    finally:
        await hist.drop_namespace()
        store.drop_namespace()
        await rt.aclose()
        await store.aclose()


def _msg(text: str, thread: str = "t1", **kw: object) -> dict:
    return {"sender": {"id": "u1"}, "content": text, "thread_id": thread, **kw}


def _warnings_in(prompt: list) -> list[str]:
    return [m.text for m in prompt if m.role == "system" and m.text.startswith(WARN)]


async def test_warnings_are_injected_into_the_next_prompt_once_per_threshold(rt_parts) -> None:
    fake, rt = rt_parts
    # spend per turn -> cumulative share of the 100 000-token thread budget
    spends = [(70_000, 4_000), (1_500, 500), (13_000, 1_000), (800, 200), (3_500, 500), (100, 100), (100, 100)]
    fake.add_replies(*(FakeReply(f"r{i}", usage=Usage(p, c)) for i, (p, c) in enumerate(spends)))
    replies = [await rt.handle_message(_msg(f"q{i}"), agent="ada") for i in range(len(spends))]
    assert [r["status"] for r in replies] == ["ok"] * 7
    # 74 % -> 76 % (crosses 75) -> 90 % (crosses 90) -> 91 % -> 95 % (crosses 95) -> 95.2 % -> 95.4 %
    prompts = fake.calls
    found = [_warnings_in(p) for p in prompts]
    assert [len(f) for f in found] == [0, 0, 1, 1, 0, 1, 0]
    assert found[2][0].startswith(f"{WARN} 75% of the token budget '{THREAD_BUDGET_PREFIX}_/t1/ada'")
    assert found[3][0].startswith(f"{WARN} 90%") and found[5][0].startswith(f"{WARN} 95%")
    assert "76,000 tokens of 100,000 tokens" in found[2][0]
    # the warning sits just before the new user message, after the system prompt and the history
    p = prompts[2]
    assert p[0].text == build_system_prompt(rt.settings.agent("ada"))
    assert [m.role for m in p] == ["system", "user", "assistant", "user", "assistant", "system", "user"]
    assert p[-1].text == "q2"
    assert [r["warnings"] for r in replies] == found
    assert replies[6]["budget"]["spent"] == 95_400


async def test_exhausted_thread_gets_a_clear_reply_and_no_model_call(rt_parts) -> None:
    fake, rt = rt_parts
    fake.add_replies(FakeReply("big", usage=Usage(1_900, 50)))
    first = await rt.handle_message(_msg("plan it", thread="tx"), agent="lead")
    assert first["status"] == "ok" and first["budget"]["spent"] == 1_950
    calls = len(fake.calls)
    second = await rt.handle_message(_msg("and now?", thread="tx"), agent="lead")
    assert second["status"] == "budget_exhausted"
    assert second["content"] == BUDGET_EXHAUSTED_REPLY
    assert len(fake.calls) == calls  # no model call
    other = await rt.handle_message(_msg("hi", thread="ty"), agent="lead")  # another thread is unaffected
    assert other["status"] == "ok"


async def test_a_message_no_thread_budget_could_hold_is_invalid_not_exhaustion(rt_parts) -> None:
    from llm_connect.agents.runner import TOO_LARGE_REPLY

    fake, rt = rt_parts
    calls = len(fake.calls)
    reply = await rt.handle_message(_msg("word " * 5_000, thread="huge"), agent="lead")  # cap: 2 000 tokens
    assert reply["status"] == "invalid" and reply["content"] == TOO_LARGE_REPLY
    assert len(fake.calls) == calls
    assert (await rt.handle_message(_msg("hi", thread="huge"), agent="lead"))["status"] == "ok"  # nothing spent


async def test_model_failure_gives_the_polite_fallback_and_is_logged(rt_parts, caplog) -> None:
    fake, rt = rt_parts
    fake.add_replies(FakeReply(error=LLMProviderUnavailableError("All providers unavailable")))
    with caplog.at_level(logging.WARNING, logger="llm_connect.agents"):
        r = await rt.handle_message(_msg("hello", thread="tf"), agent="ada")
    assert r["status"] == "fallback" and r["content"] == FALLBACK_REPLY
    assert "LLMProviderUnavailableError" in r["error"]
    assert any("sent the fallback reply" in rec.getMessage() for rec in caplog.records)
    # nothing was charged and nothing stored: the next turn starts clean
    nxt = await rt.handle_message(_msg("again", thread="tf"), agent="ada")
    assert nxt["status"] == "ok" and nxt["budget"]["spent"] == nxt["usage"]["total_tokens"]
    assert [m.role for m in fake.calls[-1]] == ["system", "user"]


async def test_bad_input_is_a_reply_not_an_exception(rt_parts) -> None:
    _, rt = rt_parts
    r = await rt.handle_message({"content": "no sender"}, agent="ada")
    assert r["status"] == "invalid" and "message.sender" in r["error"] and r["content"] == FALLBACK_REPLY
    r = await rt.handle_message(_msg("hi"), agent="nobody")
    assert r["status"] == "refused" and "no such agent" in r["error"]


async def test_cleanup_records_final_usage(rt_parts) -> None:
    fake, rt = rt_parts
    fake.add_replies(FakeReply("a", usage=Usage(100, 20)), FakeReply("b", usage=Usage(200, 30)))
    for text in ("one", "two"):
        assert (await rt.handle_message(_msg(text, thread="tc", tenant_id="acme"), agent="ada"))["status"] == "ok"
    final = await rt.cleanup_thread("tc", "acme")
    assert final["total_tokens"] == 350
    assert final["agents"] == {"ada": {"prompt_tokens": 300, "completion_tokens": 50, "turns": 2}}
    assert final["budgets"]["ada"]["max_tokens"] == 100_000
    assert await rt.history.final("acme/tc") == final  # recorded
    assert await rt.history.load("acme/tc/ada") == []  # history freed
    assert not rt.registry(rt.settings.agent("ada")).has_budget("acme/tc/ada")  # budget freed
    fake.add_replies(FakeReply("c", usage=Usage(1, 1)))
    again = await rt.handle_message(_msg("three", thread="tc", tenant_id="acme"), agent="ada")
    assert again["budget"]["spent"] == 2  # a fresh budget


async def test_delegation_chain_charges_every_budget_up_the_chain(rt_parts) -> None:
    fake, rt = rt_parts
    fake.add_replies(*(FakeReply(f"r{i}", usage=Usage(60, 20)) for i in range(100)))
    top = await rt.handle_message(_msg("plan", thread="td"), agent="lead")
    b = await rt.delegate(top, "analyst", max_tokens=500)
    c = await rt.delegate(b, "checker")
    assert [x["status"] for x in (top, b, c)] == ["ok", "ok", "ok"]
    chain = c["delegation"]["chain"]
    assert [link["total"] for link in chain] == [2_000, 500, None]
    root = rt.chain_tracker(chain[:1])
    assert (await root.astate()).spent == 240  # A + B + C
    sub_b = rt.chain_tracker(chain[:2])
    assert (await sub_b.astate()).spent == 160  # B + C
    # C's prompt is B's answer
    assert fake.calls[-1][-1].text == b["content"]
    # the cap holds: keep delegating until the lead's 2 000 tokens are used up
    statuses = []
    for _ in range(40):
        r = await rt.delegate(top, "analyst", max_tokens=500)
        statuses.append(r["status"])
    assert "budget_exhausted" in statuses
    st = await root.astate()
    assert st.spent <= 2_000 and st.overrun == 0
    # and the lead's own thread was warned: its next prompt carries the queued warnings
    nxt = await rt.handle_message(_msg("status?", thread="td"), agent="lead")
    assert nxt["status"] == "budget_exhausted" or any(w.startswith(WARN) for w in nxt["warnings"])


async def test_delegation_is_refused_outside_may_delegate_to(rt_parts) -> None:
    _, rt = rt_parts
    top = await rt.handle_message(_msg("plan", thread="tr"), agent="lead")
    r = await rt.delegate(top, "checker")
    assert r["status"] == "refused" and "may not delegate" in r["error"]
    r = await rt.delegate({"content": "x"}, "analyst")
    assert r["status"] == "refused"


async def test_run_agent_seed_api_returns_the_reply_text() -> None:
    fake = FakeAdapter("m", replies=["hello there"])
    s = _settings(redis_url=None)
    rt = AgentRuntime(
        s,
        backend=InProcessBackend(adapters={"m": fake}),
        history=MemoryThreadHistory(),
        budget_store=MemoryBudgetStore(),
    )
    text = await run_agent(InboundMessage.from_dict({"sender": "u", "content": "hi"}), s.agent("ada"), runtime=rt)
    assert text == "hello there" and type(text) is str
    fake.add_replies(FakeReply(error=LLMProviderUnavailableError("down")))
    assert await run_agent({"sender": "u", "content": "hi"}, "ada", runtime=rt) == FALLBACK_REPLY
    await rt.aclose()


async def test_run_agent_reply_keeps_the_whole_outcome() -> None:
    fake = FakeAdapter("m", replies=["hello there", FakeReply(error=LLMProviderUnavailableError("down"))])
    s = _settings(redis_url=None)
    async with AgentRuntime(
        s,
        backend=InProcessBackend(adapters={"m": fake}),
        history=MemoryThreadHistory(),
        budget_store=MemoryBudgetStore(),
    ) as rt:
        reply = await run_agent_reply({"sender": "u", "content": "hi"}, s.agent("ada"), runtime=rt)
        assert isinstance(reply, AgentReply)
        assert reply.ok and reply.content == "hello there" and reply.agent == "ada" and reply.agent_name == "ada"
        assert reply.completion_tokens == 2 and reply.budget is not None and reply.budget["spent"] > 0
        reply = await run_agent_reply({"sender": "u", "content": "hi"}, "ada", runtime=rt)
        assert reply.status == "fallback" and reply.content == FALLBACK_REPLY
        assert "LLMProviderUnavailableError" in (reply.error or "")


async def test_gateway_unreachable_gives_the_fallback() -> None:
    port = free_port()  # nothing listens here
    s = AgentSettings(personas={"ada": Agent("ada", "support")}, gateway_url=f"http://127.0.0.1:{port}", redis_url=None)
    rt = AgentRuntime(s, history=MemoryThreadHistory(), budget_store=MemoryBudgetStore())
    try:
        r = await rt.handle_message(_msg("hello"), agent="ada")
    finally:
        await rt.aclose()
    assert r["status"] == "fallback" and r["content"] == FALLBACK_REPLY
    assert "unreachable" in r["error"]


async def test_budget_store_down_is_a_failure_not_an_exhausted_thread() -> None:
    fake = FakeAdapter("m")
    store = RedisBudgetStore(f"redis://127.0.0.1:{free_port()}/0", namespace="down")  # nothing listens
    rt = AgentRuntime(
        _settings(redis_url=None),
        backend=InProcessBackend(adapters={"m": fake}),
        history=MemoryThreadHistory(),
        budget_store=store,
    )
    try:
        r = await rt.handle_message(_msg("hello", thread="tz"), agent="ada")
    finally:
        await rt.aclose()
        await store.aclose()
    assert r["status"] == "fallback" and r["content"] == FALLBACK_REPLY  # fail_closed: no model call
    assert "budget store unreachable" in r["error"] and fake.calls == []


@pytest.mark.parametrize("bad", [None, 5, ["x"], "", "a\nb"])
async def test_cleanup_thread_refuses_ids_that_are_not_ids(rt_parts, bad) -> None:
    from llm_connect.agents.models import InvalidMessageError

    _, rt = rt_parts
    with pytest.raises(InvalidMessageError):
        await rt.cleanup_thread(bad)


async def test_the_model_sees_the_display_name_while_budgets_and_replies_use_the_id() -> None:
    fake = FakeAdapter("m", replies=["Charmed."])
    ada = Agent("Ada Lovelace", "historian", id="ada", model_preference="m")
    s = AgentSettings(personas={"ada": ada}, mode="in_process", redis_url=None)
    async with AgentRuntime(
        s,
        backend=InProcessBackend(adapters={"m": fake}),
        history=MemoryThreadHistory(),
        budget_store=MemoryBudgetStore(),
    ) as rt:
        r = await rt.handle_message(_msg("who are you?", thread="dn"), agent="ada")
        assert r["status"] == "ok" and r["agent"] == "ada" and r["agent_name"] == "Ada Lovelace"
        assert r["budget"]["budget_id"] == f"{THREAD_BUDGET_PREFIX}_/dn/ada"
        system = fake.calls[0][0]
        assert system.role == "system" and "Your name is Ada Lovelace. Your role is historian." in system.text
        refused = await rt.handle_message(_msg("hi"), agent="Ada Lovelace")  # a display name is not an id
        assert refused["status"] == "refused" and "no such agent id" in refused["error"]
