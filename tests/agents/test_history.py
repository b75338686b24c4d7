"""Thread history in Redis (TTL, cap, notes, bookkeeping) and the in-memory fallback: same behaviour."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from llm_connect.agents.history import MemoryThreadHistory, RedisThreadHistory, ThreadHistory, open_history

from .conftest import REDIS_URL, redis_up


@pytest.fixture(params=["redis", "memory"])
async def history(request: pytest.FixtureRequest) -> AsyncIterator[ThreadHistory]:
    if request.param == "memory":
        yield MemoryThreadHistory(ttl=60, max_messages=4)
        return
    if not redis_up():
        pytest.skip("needs Redis at 127.0.0.1:6379")
    h = RedisThreadHistory(REDIS_URL, namespace=f"llmc-hist-{uuid.uuid4().hex[:8]}", ttl=60, max_messages=4)
    try:
        yield h
    finally:
        await h.drop_namespace()
        await h.aclose()


async def test_turns_are_kept_in_order_and_capped(history: ThreadHistory) -> None:
    assert await history.load("t/a") == []
    for i in range(3):
        await history.append("t/a", [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}])
    turns = await history.load("t/a")
    assert [t["content"] for t in turns] == ["q1", "a1", "q2", "a2"]  # capped at 4, oldest dropped
    assert await history.load("t/b") == []


async def test_notes_are_taken_once(history: ThreadHistory) -> None:
    await history.push_notes("t/a", ["w75"])
    await history.push_notes("t/a", ["w90"])
    assert await history.pop_notes("t/a") == ["w75", "w90"]
    assert await history.pop_notes("t/a") == []


async def test_thread_bookkeeping_and_final_record(history: ThreadHistory) -> None:
    await history.note_turn("T", "ada", 10, 5)
    await history.note_turn("T", "ada", 1, 2)
    await history.note_turn("T", "rex", 7, 3, member=False, budget_id="sub-1")
    st = await history.thread_state("T")
    assert st.members == ("ada",) and st.budgets == ("sub-1",)
    assert st.usage == {
        "ada": {"prompt_tokens": 11, "completion_tokens": 7, "turns": 2},
        "rex": {"prompt_tokens": 7, "completion_tokens": 3, "turns": 1},
    }
    await history.append("T/ada", [{"role": "user", "content": "x"}])
    await history.forget("T", ["T/ada"])
    st = await history.thread_state("T")
    assert st.members == () and st.usage == {} and await history.load("T/ada") == []
    await history.record_final("T", {"total_tokens": 28})
    assert await history.final("T") == {"total_tokens": 28}
    assert await history.final("other") is None


async def test_memory_entries_expire() -> None:
    h = MemoryThreadHistory(ttl=0.05, max_messages=10)
    await h.append("r", [{"role": "user", "content": "x"}])
    await asyncio.sleep(0.08)
    assert await h.load("r") == []


@pytest.mark.skipif(not redis_up(), reason="needs Redis at 127.0.0.1:6379")
async def test_redis_keys_carry_the_ttl() -> None:
    ns = f"llmc-hist-{uuid.uuid4().hex[:8]}"
    h = RedisThreadHistory(REDIS_URL, namespace=ns, ttl=120, max_messages=10)
    try:
        await h.append("t/a", [{"role": "user", "content": "x"}])
        await h.push_notes("t/a", ["n"])
        await h.note_turn("t", "a", 1, 1)
        for key in (
            f"{ns}:agents:history:t/a",
            f"{ns}:agents:notes:t/a",
            f"{ns}:agents:members:t",
            f"{ns}:agents:usage:t",
        ):
            ttl = await h._r.pttl(key)
            assert 110_000 < ttl <= 120_000, key
    finally:
        await h.drop_namespace()
        await h.aclose()


def test_open_history_picks_the_backend() -> None:
    assert isinstance(open_history(None, namespace="x"), MemoryThreadHistory)
    assert open_history(None, namespace="x") is open_history(None, namespace="x")  # one per process
    assert isinstance(open_history(REDIS_URL, namespace="x"), RedisThreadHistory)
