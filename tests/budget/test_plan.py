"""The sizing arithmetic of budget/plan.py and the calls it drives: never overshoot, a clamp is never negative
and never more than asked, a refusal only when not even the prompt and one answer token fit."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_connect import RunConfig, create_adapter
from llm_connect.agents.budgeting import plan_call
from llm_connect.agents.prompts import build_messages
from llm_connect.budget import BudgetTracker, MemoryBudgetStore
from llm_connect.budget.plan import landing_output, output_budget, reachable_thresholds, room_after
from llm_connect.errors import LLMBudgetExceededError
from llm_connect.providers.fake import FakeReply
from llm_connect.types import Usage

sizes = st.integers(min_value=0, max_value=50_000)
rooms = st.none() | sizes
wants = st.integers(min_value=0, max_value=10_000)
floors = st.integers(min_value=0, max_value=64)
THRESHOLDS = (0.75, 0.9, 0.95)


@given(wants, rooms, sizes, floors)
def test_output_budget_fits_is_bounded_and_refuses_only_when_the_floor_does_not_fit(want, room, n_in, floor):
    out = output_budget(want, room, n_in, floor=floor)
    assert 0 <= out <= want
    if room is None:
        assert out == want
    elif out:
        assert n_in + out <= room  # never overshoot
        assert out == min(want, room - n_in)  # all that is asked, or all that is left: nothing wasted
    else:
        assert want == 0 or room - n_in < max(1, min(floor, want))


@given(wants, rooms, sizes, sizes, floors)
def test_landing_output_keeps_the_landing_unless_it_is_the_final_call(want, room, n_in, landing, floor):
    out, final = landing_output(want, room, n_in, landing, floor=floor)
    assert 0 <= out <= want
    if room is None:
        assert (out, final) == (want, False)
        return
    if out:
        assert n_in + out <= room
    if not final:
        assert out and n_in + out + landing <= room  # a next call of `landing` tokens still fits after it
    else:
        assert output_budget(want, room_after(room, landing), n_in, floor=floor) == 0
        assert out == output_budget(want, room, n_in, floor=floor)  # the final call may take all that is left


@given(sizes, st.integers(min_value=1, max_value=100_000), sizes, st.frozensets(st.sampled_from(THRESHOLDS)))
def test_reachable_thresholds_contain_every_threshold_a_settle_can_fire(spent, total, extra, fired):
    reach = reachable_thresholds(spent, total, extra, THRESHOLDS, fired)
    assert reach == sorted(reach) and not set(reach) & fired
    for actual in {0, extra // 2, extra}:  # any spend up to the reserved worst case
        # the store's own test (stores.py): a settle fires t when spent >= t * total
        crossed = {t for t in THRESHOLDS if t not in fired and spent + actual >= t * total}
        assert crossed <= set(reach)


@pytest.mark.parametrize("bad", [-1, 1.5, True, None])
def test_the_arithmetic_refuses_nonsense(bad):
    with pytest.raises(ValueError):
        output_budget(bad, 10, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        output_budget(10, 10, bad)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    cap=st.integers(min_value=1, max_value=3_000),
    child_cap=st.none() | st.integers(min_value=1, max_value=3_000),
    calls=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=60),  # prompt words
            st.none() | st.integers(min_value=1, max_value=400),  # max_tokens asked
            st.integers(min_value=0, max_value=400),  # words the model would answer
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_calls_through_a_chain_never_overshoot_and_are_refused_only_when_nothing_fits(cap, child_cap, calls):
    async def run() -> None:
        root = BudgetTracker(total=cap)
        tracker = root.child(total=child_cap)
        limit = cap if child_cap is None else min(cap, child_cap)
        adapter = create_adapter("fake:p")
        for words, max_tokens, answer in calls:
            adapter.add_replies(" ".join(["w"] * answer) if answer else "")
            prompt = " ".join(["p"] * words)
            left = await tracker.aremaining()
            try:
                r = await adapter.async_execute_prompt(prompt, RunConfig(max_tokens=max_tokens, budget_tracker=tracker))
            except LLMBudgetExceededError:
                assert left is not None and left < words + 1 + 1  # not even the prompt and one token fit
                continue
            assert r.usage.total_tokens <= left
            asked = 4096 if max_tokens is None else max_tokens
            assert 0 <= r.usage.output_tokens <= asked
        for t in (root, tracker):
            s = t.state()
            assert s.reserved == 0 and s.overrun == 0
        assert tracker.spent <= limit and root.spent <= cap

    asyncio.run(run())


@settings(max_examples=80, deadline=None)
@given(
    cap=st.integers(min_value=200, max_value=4_000),
    spent=st.integers(min_value=0, max_value=4_000),
    history_turns=st.integers(min_value=0, max_value=8),
    user_words=st.integers(min_value=1, max_value=40),
    out_cap=st.integers(min_value=1, max_value=600),
)
def test_an_agent_plan_fits_and_keeps_room_for_the_next_prompt_unless_final(
    cap, spent, history_turns, user_words, out_cap
):
    async def run() -> None:
        tracker = BudgetTracker(total=cap, store=MemoryBudgetStore())
        tracker.record(min(spent, cap))
        history = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": " ".join(["h"] * 12)}
            for i in range(2 * history_turns)
        ]
        system, user = "You are a careful agent. Be brief.", " ".join(["u"] * user_words)

        async def count(msgs):
            return sum(len(str(m.get("content") or "").split()) + 1 for m in msgs)

        room = tracker.remaining() or 0
        plan = await plan_call(tracker, count, system, user, history, [], out_cap)
        if plan is None:
            minimal = await count(build_messages(system, user))
            assert minimal + min(16, out_cap) > room  # refused only when no prompt at all fits
            return
        assert plan.reserve <= room and 1 <= plan.max_tokens <= out_cap
        assert plan.input_tokens >= await count(plan.messages)  # never an undercount
        assert plan.messages[0]["content"] == system and plan.messages[-1]["content"] == user
        if not plan.final:  # a next call with the same message still fits after this one
            assert room - plan.reserve >= await count(build_messages(system, user)) + 1
        texts = [m["content"] for m in plan.messages]
        assert len(plan.previews) == len(plan.previewed) and all(p in texts for p in plan.previews)
        assert all(f"past {t:.0%}" in p for t, p in zip(plan.previewed, plan.previews, strict=True))

    asyncio.run(run())


async def test_a_reply_with_more_usage_than_reserved_is_overrun_not_overshoot():
    """The clamp sizes what is asked; a provider that reports more is recorded as overrun, never as spent."""
    tracker = BudgetTracker(total=100)
    adapter = create_adapter("fake:p", replies=[FakeReply("x", usage=Usage(60, 70))])
    await adapter.async_execute_prompt("a b c", RunConfig(max_tokens=10, budget_tracker=tracker))
    assert tracker.spent == 100 and tracker.overrun == 30
