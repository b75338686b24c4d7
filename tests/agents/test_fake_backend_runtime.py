"""FakeBackend drives the agent runtime end to end — prompt, history, thread budget, fallback, cleanup — with
no model and no network (an audit hook fails any socket connect or name lookup made during the run)."""

from __future__ import annotations

import contextlib
import functools
import socket
import sys
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import pytest

from llm_connect import LLMTimeout
from llm_connect.agents import (
    BUDGET_EXHAUSTED_REPLY,
    FALLBACK_REPLY,
    Agent,
    AgentRuntime,
    AgentSettings,
    run_agent,
    run_agent_reply,
)
from llm_connect.testing import FakeBackend, FakeCall

_NETWORK_EVENTS = frozenset(
    {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto", "socket.sendmsg"}
)
#: inside no_network(): the list that collects attempted network use
_attempts: ContextVar[list[str] | None] = ContextVar("network_attempts", default=None)


@functools.cache
def _install_guard() -> None:
    def hook(event: str, args: tuple[Any, ...]) -> None:
        seen = _attempts.get()
        if seen is not None and event in _NETWORK_EVENTS:
            seen.append(f"{event}{args[1:]!r}")
            raise AssertionError(f"network use in an offline test: {event} {args[1:]!r}")

    sys.addaudithook(hook)  # inert outside no_network()


@contextlib.contextmanager
def no_network() -> Iterator[list[str]]:
    _install_guard()
    seen: list[str] = []
    token = _attempts.set(seen)
    try:
        yield seen
    finally:
        _attempts.reset(token)


def _words(text: str) -> int:
    return len(text.split())


def _tokens(call: FakeCall, answer: str) -> int:
    """What FakeBackend reports for one call: words (+1 per message) in, words out."""
    return sum(_words(str(m["content"])) + 1 for m in call.messages) + _words(answer)


async def test_fake_backend_drives_run_agent_and_the_runtime_without_any_network() -> None:
    ada = Agent(
        "Ada Lovelace",
        "customer support agent for ACME",
        id="ada",
        persona="patient and precise",
        model_preference="quality",
        max_tokens_per_thread=5_000,
    )
    # gateway mode and no Redis: the injected backend replaces the gateway; history and budgets in memory
    settings = AgentSettings(personas={"ada": ada}, redis_url=None, namespace=f"fb-{uuid.uuid4().hex[:8]}")
    answers = ["Your parcel ships today.", "It left the depot at nine."]
    fake = FakeBackend(outputs=[*answers, LLMTimeout])
    thread = f"t-{uuid.uuid4().hex[:8]}"

    def msg(text: str) -> dict[str, Any]:
        return {"sender": {"id": "u1", "name": "Grace"}, "content": text, "thread_id": thread, "tenant_id": "acme"}

    with no_network() as attempts:
        with pytest.raises(AssertionError):  # the guard is live
            socket.create_connection(("127.0.0.1", 6379), timeout=0.2)
        attempts.clear()
        async with AgentRuntime(settings, backend=fake) as rt:
            text = await run_agent(msg("Where is my parcel?"), ada, runtime=rt)
            reply = await run_agent_reply(msg("And now?"), "ada", runtime=rt)
            failed = await rt.handle_message(msg("Still there?"), agent="ada")
            final = await rt.cleanup_thread(thread, "acme")
    assert attempts == []

    # seed 002: run_agent gives the text; run_agent_reply the whole outcome of the same kind of run
    assert text == answers[0] and type(text) is str
    assert reply.ok and reply.content == answers[1]
    assert (reply.agent, reply.agent_name, reply.model) == ("ada", "Ada Lovelace", "fake-model")

    # what the model was sent: the display name in the system prompt, the thread's history on the next turn
    first, second, third = fake.calls
    assert first.group == "quality" and first.prompt == "Where is my parcel?"
    assert first.options["agent"] == "ada" and first.options["tenant_id"] == "acme"
    assert first.options["thread_id"] == thread
    assert first.system_prompt is not None
    assert "Your name is Ada Lovelace. Your role is customer support agent for ACME." in first.system_prompt
    assert "Persona: patient and precise" in first.system_prompt
    assert second.messages[1:] == (
        {"role": "user", "content": "Where is my parcel?"},
        {"role": "assistant", "content": answers[0]},
        {"role": "user", "content": "And now?"},
    )
    assert third.prompt == "Still there?"

    # the thread budget was charged exactly what the backend reported; the timed-out call was released
    spent = _tokens(first, answers[0]) + _tokens(second, answers[1])
    assert reply.budget is not None and reply.budget["spent"] == spent
    assert reply.budget["budget_id"] == f"agent-thread:acme/{thread}/ada" and reply.budget["total"] == 5_000
    assert failed["status"] == "fallback" and failed["content"] == FALLBACK_REPLY
    assert "LLMTimeoutError" in failed["error"] and failed["agent_name"] == "Ada Lovelace"
    assert final["total_tokens"] == spent and final["agents"]["ada"]["turns"] == 2
    assert fake.remaining == 0


async def test_a_used_up_thread_never_reaches_the_backend() -> None:
    tiny = Agent("O'Brien", "fact checker", model_preference="fast", max_tokens_per_thread=400, max_output_tokens=50)
    assert tiny.id == "O-Brien"
    settings = AgentSettings(personas={tiny.id: tiny}, redis_url=None, namespace=f"fb-{uuid.uuid4().hex[:8]}")
    fake = FakeBackend(output=" ".join(["word"] * 50))
    thread = f"t-{uuid.uuid4().hex[:8]}"
    with no_network() as attempts:
        async with AgentRuntime(settings, backend=fake) as rt:
            texts = [
                await run_agent({"sender": "u", "content": "check this", "thread_id": thread}, tiny, runtime=rt)
                for _ in range(6)
            ]
            await rt.cleanup_thread(thread)
    assert attempts == []
    answered = len(fake.calls)
    assert 1 <= answered < 6  # the budget stopped the thread before the sixth call
    assert texts[:answered] == [" ".join(["word"] * 50)] * answered
    assert texts[answered:] == [BUDGET_EXHAUSTED_REPLY] * (6 - answered)
    assert "Your name is O'Brien." in (fake.calls[0].system_prompt or "")
