"""FakeBackend as seed 004 uses it: injected into code that takes an LLMBackend, instead of patching one."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

import llm_connect
from llm_connect import LLMBackend, LLMError, LLMProviderUnavailableError, LLMResult, LLMTimeout, LLMUsageError
from llm_connect.agents.backend import ModelBackend
from llm_connect.testing import FakeBackend, FakeCall
from llm_connect.testing.fake_backend import DEFAULT_OUTPUT

# -- a driver written against the seed's protocol, as an application would write it --------------------------


@dataclass
class Email:
    stage: str  # "ok" | "empty" | "timeout"
    subject: str | None = None
    body: str | None = None
    model: str | None = None


class EmailDriver:
    """Seed 004's shape: the driver takes an LLMBackend and tells a timeout from "nothing useful"."""

    def __init__(self, llm: LLMBackend) -> None:
        self.llm = llm

    async def draft(self, persona: str, topic: str) -> Email:
        try:
            result = await self.llm.generate(f"You are {persona}. Write a short email about {topic}.")
        except LLMTimeout:
            return Email("timeout")
        if not result.success:
            return Email("empty", model=result.model)
        subject, _, body = result.text.partition("\n\n")
        return Email("ok", subject.removeprefix("Subject: "), body, result.model)


async def test_the_driver_runs_on_an_injected_fake_in_every_outcome() -> None:
    fake = FakeBackend(outputs=["Subject: Invoice\n\nPlease find it attached.", LLMTimeout, ""])
    driver = EmailDriver(fake)
    ok = await driver.draft("Ada Lovelace", "the invoice")
    assert ok == Email("ok", "Invoice", "Please find it attached.", "fake-model")
    assert await driver.draft("Ada Lovelace", "the meeting") == Email("timeout")
    assert await driver.draft("Ada Lovelace", "nothing") == Email("empty", model="fake-model")
    assert fake.prompts == [
        "You are Ada Lovelace. Write a short email about the invoice.",
        "You are Ada Lovelace. Write a short email about the meeting.",
        "You are Ada Lovelace. Write a short email about nothing.",
    ]
    assert [c.method for c in fake.calls] == ["generate"] * 3 and fake.remaining == 0


# -- the protocol and its defaults ---------------------------------------------------------------------------


async def test_it_is_an_llm_backend_with_the_seed_defaults_and_a_canned_output() -> None:
    fake = FakeBackend()
    assert isinstance(fake, LLMBackend) and isinstance(fake, ModelBackend)
    assert (fake.model, fake.timeout) == ("fake-model", 1.0)
    first, second = await fake.generate("a"), await fake.generate("b")
    assert isinstance(first, LLMResult) and first.success and first.text == DEFAULT_OUTPUT
    assert second.text == DEFAULT_OUTPUT and (first.extra["call"], second.extra["call"]) == (1, 2)
    assert first.latency_ms >= 0
    assert llm_connect.FakeBackend is FakeBackend  # exported next to LLMBackend / LLMResult


async def test_outputs_in_order_then_output_for_every_further_call() -> None:
    fake = FakeBackend(outputs=["one", "two"], output="again", model="m-1")
    texts = [(await fake.generate(str(i))).text for i in range(4)]
    assert texts == ["one", "two", "again", "again"]
    assert {r.model for r in [await fake.generate("x")]} == {"m-1"}


async def test_running_out_of_a_script_is_a_typed_error_naming_the_call() -> None:
    fake = FakeBackend(outputs=["only one"])
    await fake.generate("first")
    with pytest.raises(LLMUsageError, match="no canned output left for call 2") as ei:
        await fake.generate("second")
    assert ei.value.provider == "fake" and fake.prompts == ["first", "second"]
    fake.add_outputs("late")
    assert (await fake.generate("third")).text == "late"


async def test_scripted_errors_classes_and_instances_are_raised_with_provider_filled_in() -> None:
    down = LLMProviderUnavailableError("upstream down")
    fake = FakeBackend(outputs=[LLMTimeout, down, ValueError, "fine"], model="m")
    with pytest.raises(LLMTimeout) as ei:
        await fake.generate("a")
    assert isinstance(ei.value, LLMError) and (ei.value.provider, ei.value.model) == ("fake", "m")
    with pytest.raises(LLMProviderUnavailableError) as ei2:
        await fake.generate("b")
    assert ei2.value is down and down.provider == "fake"
    with pytest.raises(ValueError):
        await fake.generate("c")
    assert (await fake.generate("d")).text == "fine"


async def test_empty_output_and_success_false_are_soft_failures() -> None:
    fake = FakeBackend(outputs=["   ", "real text"])
    blank = await fake.generate("a")
    assert blank.success is False and blank.text == "   "
    assert (await fake.generate("b")).success
    failing = FakeBackend(output="never seen", success=False)
    r = await failing.generate("a")
    assert (r.success, r.text) == (False, "")


async def test_a_whole_llm_result_is_returned_as_scripted() -> None:
    scripted = LLMResult(success=True, text="hi", model="other", latency_ms=42, extra={"rc": 0})
    fake = FakeBackend(outputs=[scripted])
    assert await fake.generate("x") is scripted


async def test_latency_within_the_cap_answers_and_past_it_raises_llm_timeout() -> None:
    slow = FakeBackend(output="late but fine", latency=0.05, timeout=1.0)
    r = await slow.generate("x")
    assert r.success and r.latency_ms >= 50
    too_slow = FakeBackend(output="never", latency=5.0, timeout=0.1)
    start = time.perf_counter()
    with pytest.raises(LLMTimeout, match=r"within 0\.1 s"):
        await too_slow.generate("x")
    assert 0.09 <= time.perf_counter() - start < 1.0  # it waited the cap, not the latency


async def test_concurrent_calls_each_take_their_own_output() -> None:
    fake = FakeBackend(outputs=[f"answer {i}" for i in range(20)], latency=0.01)
    results = await asyncio.gather(*(fake.generate(f"q{i}") for i in range(20)))
    assert sorted(r.text for r in results) == sorted(f"answer {i}" for i in range(20))
    assert len(fake.calls) == 20 and fake.remaining == 0


async def test_complete_records_the_messages_and_counts_tokens_in_words() -> None:
    fake = FakeBackend(outputs=["two words"])
    msgs = [{"role": "system", "content": "Your name is Ada."}, {"role": "user", "content": "hello there"}]
    reply = await fake.complete("quality", msgs, max_tokens=50, tenant_id="acme", agent="ada", thread_id="t1")
    assert (reply.content, reply.model, reply.completion_tokens) == ("two words", "fake-model", 2)
    assert reply.prompt_tokens == (4 + 1) + (2 + 1)
    call = fake.calls[0]
    assert isinstance(call, FakeCall) and call.method == "complete" and call.group == "quality"
    assert call.prompt == "hello there" and call.system_prompt == "Your name is Ada."
    assert call.options["agent"] == "ada" and call.options["max_tokens"] == 50 and call.options["tenant_id"] == "acme"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="output="):
        FakeBackend("a single string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        FakeBackend(timeout=0)
    with pytest.raises(ValueError, match="latency"):
        FakeBackend(latency=-1)
