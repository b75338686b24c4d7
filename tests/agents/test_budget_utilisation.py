"""Thread budgets spent to the last tokens: a thread with a cap of 2 000 or 10 000 tokens spends >= 95 % before
its first refusal, with no overshoot, and each 75 / 90 / 95 % warning reaches the model while a call is still
possible — in the prompt right after the call that crossed it, or, for the final call of the budget, in that
call's own prompt (announced ahead). In process (the runtime on the mock server) and through real Celery
workers in front of a real gateway."""

from __future__ import annotations

import random
import uuid
from typing import Any

import orjson
import pytest

from llm_connect import create_adapter
from llm_connect.agents import Agent, AgentRuntime, AgentSettings, InboundMessage, InProcessBackend
from llm_connect.agents.history import MemoryThreadHistory
from llm_connect.budget import MemoryBudgetStore
from llm_connect.testing import MockReply, MockServer

from .conftest import Workers, needs_redis, wait_result

WORDS = "the thread budget is shared by every call of the conversation and each call reserves its worst case".split()
THRESHOLDS = (0.75, 0.9, 0.95)


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _upstream_prompts(mock: MockServer, model: str, since: int = 0) -> list[str]:
    """The chat requests the mock received for ``model`` (count requests excluded), as JSON text."""
    return [
        orjson.dumps(r["body"]).decode()
        for r in mock.requests[since:]
        if r.get("model") == model and r["path"].endswith("/v1/messages")
    ]


def check_warnings(prompts: list[str], spent_after: list[int], cap: int) -> None:
    """Each threshold crossed by call k is in prompt k+1 (a warning) or in prompt k (announced ahead)."""
    assert len(prompts) == len(spent_after)
    for t in THRESHOLDS:
        k = next(i for i, s in enumerate(spent_after) if s >= t * cap)
        ahead = f"past {t:.0%}:" in prompts[k]
        after = k + 1 < len(prompts) and f"[BUDGET WARNING] {t:.0%} of the token budget" in prompts[k + 1]
        assert ahead or after, (t, k, spent_after)
        later = [p for p in prompts[k + 2 :] if f"[BUDGET WARNING] {t:.0%} of" in p]
        assert not later  # delivered once


@pytest.mark.parametrize("cap", [2_000, 10_000])
async def test_a_thread_spends_95_percent_and_hears_every_warning_in_process(cap):
    rng = random.Random(cap)
    async with MockServer() as mock:
        mock.script(*(MockReply(text=_sentence(rng, 30, 90)) for _ in range(200)))
        adapter = create_adapter("anthropic:claude-thread", api_base=mock.anthropic_base, api_key="k")
        persona = Agent("ada", "support agent", model_preference="m", max_tokens_per_thread=cap)
        rt = AgentRuntime(
            AgentSettings(personas={"ada": persona}, mode="in_process", max_output_tokens=300),
            backend=InProcessBackend(adapters={"m": adapter}),
            history=MemoryThreadHistory(),
            budget_store=MemoryBudgetStore(),
        )
        spent_after: list[int] = []
        try:
            while True:
                msg = InboundMessage.from_dict(
                    {"sender": {"id": "u"}, "content": _sentence(rng, 10, 30), "thread_id": "t"}
                )
                reply = await rt.run(msg, persona)
                if reply.status != "ok":
                    assert reply.status == "budget_exhausted", reply
                    break
                spent_after.append(reply.budget["spent"])
            st = await rt.thread_tracker(None, "t", persona).astate()
        finally:
            await rt.aclose()
        assert st.spent >= 0.95 * cap and st.spent <= cap and st.overrun == 0 and st.reserved == 0
        check_warnings(_upstream_prompts(mock, "claude-thread"), spent_after, cap)


@needs_redis
@pytest.mark.timeout(180)
@pytest.mark.parametrize(("agent", "cap"), [("capped2k", 2_000), ("capped10k", 10_000)])
def test_a_thread_spends_95_percent_through_celery_workers_and_the_gateway(
    celery_client: Any, gw_workers: Workers, mock: MockServer, agent: str, cap: int
) -> None:
    from llm_connect.agents.tasks import handle_message

    thread = f"util-{uuid.uuid4().hex[:8]}"
    rng = random.Random(cap)
    since = len(mock.requests)
    mock.script(*(MockReply(model="claude-capped", text=_sentence(rng, 30, 90)) for _ in range(200)))
    replies: list[dict[str, Any]] = []
    try:
        while True:
            msg = {"sender": {"id": "U1"}, "content": _sentence(rng, 10, 30), "thread_id": thread}
            reply = wait_result(
                handle_message.apply_async(args=(msg,), kwargs={"agent": agent}, queue=gw_workers.queue), 60
            )
            if reply["status"] != "ok":
                assert reply["status"] == "budget_exhausted", reply
                break
            replies.append(reply)
    finally:
        mock.clear_scripts()
    spent = replies[-1]["budget"]["spent"]
    assert 0.95 * cap <= spent <= cap
    assert spent == sum(r["usage"]["total_tokens"] for r in replies)  # every token charged, none beyond
    check_warnings(_upstream_prompts(mock, "claude-capped", since), [r["budget"]["spent"] for r in replies], cap)
