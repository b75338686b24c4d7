"""The shared llama.cpp model under concurrent callers, timeouts and cancelled streams."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from llm_connect import LLMTimeoutError, RunConfig
from llm_connect.providers.local import LocalAdapter

pytestmark = pytest.mark.local

PROMPTS = [
    "Write one sentence about the sea.",
    "Name a fruit.",
    "What is the capital of France?",
    "Count from one to five.",
    "Say hello in Spanish.",
    "Describe a cat.",
    "What colour is the sky?",
    "Tell me about winter.",
]
CFG = RunConfig(max_tokens=16, temperature=0, seed=42)
LONG = RunConfig(max_tokens=1500, temperature=0)


@pytest.fixture
async def solo(adapter: LocalAdapter) -> dict[str, str]:
    """Each prompt's answer when it runs alone."""
    return {p: (await adapter.async_execute_prompt(p, CFG)).text for p in PROMPTS}


async def _stream_text(adapter: LocalAdapter, prompt: str) -> str:
    return "".join([c.text async for c in adapter.astream(prompt, CFG)])


async def test_eight_async_callers_get_whole_answers(adapter: LocalAdapter, solo: dict[str, str]) -> None:
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:  # the event loop must stay responsive while the model works
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    calls = [adapter.async_execute_prompt(p, CFG) if i % 2 else _stream_text(adapter, p) for i, p in enumerate(PROMPTS)]
    results = await asyncio.gather(*calls)
    done.set()
    await tick
    for i, (prompt, res) in enumerate(zip(PROMPTS, results, strict=True)):
        text = res.text if i % 2 else res
        assert text == solo[prompt], prompt
    assert max(gaps) < 0.25


def test_eight_threads_through_the_sync_facade(adapter: LocalAdapter, solo: dict[str, str]) -> None:
    def call(prompt: str) -> str:
        return adapter.execute_prompt(prompt, CFG).text

    def stream(prompt: str) -> str:
        return "".join(c.text for c in adapter.stream(prompt, CFG))

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(stream if i % 2 else call, p) for i, p in enumerate(PROMPTS)]
        answers = [f.result(timeout=120) for f in futures]
    assert answers == [solo[p] for p in PROMPTS]


async def test_timeout_then_model_answers_next_call(adapter: LocalAdapter, solo: dict[str, str]) -> None:
    await adapter.async_execute_prompt("Hi.", RunConfig(max_tokens=1))  # loaded: the cap below is all generation
    start = time.perf_counter()
    with pytest.raises(LLMTimeoutError):
        await adapter.async_execute_prompt(PROMPTS[0], LONG.replace(timeout=0.3))
    assert time.perf_counter() - start < 1.0
    start = time.perf_counter()
    resp = await adapter.async_execute_prompt(PROMPTS[1], CFG)
    assert resp.text == solo[PROMPTS[1]]
    assert time.perf_counter() - start < 3.0  # the timed-out generation let go of the model promptly

    with pytest.raises(LLMTimeoutError):
        async for _ in adapter.astream(PROMPTS[0], LONG.replace(timeout=0.3)):
            pass
    assert (await adapter.async_execute_prompt(PROMPTS[2], CFG)).text == solo[PROMPTS[2]]


async def test_early_break_and_cancelled_stream_leave_model_usable(adapter: LocalAdapter, solo: dict[str, str]) -> None:
    n = 0
    async for chunk in adapter.astream(PROMPTS[0], LONG):
        n += bool(chunk.text)
        if n == 3:
            break
    start = time.perf_counter()
    assert (await adapter.async_execute_prompt(PROMPTS[3], CFG)).text == solo[PROMPTS[3]]
    assert time.perf_counter() - start < 3.0

    first = asyncio.Event()

    async def consume() -> None:
        async for chunk in adapter.astream(PROMPTS[0], LONG):
            if chunk.text:
                first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # a call already waiting when the stream is cancelled runs right after it
    assert (await adapter.async_execute_prompt(PROMPTS[4], CFG)).text == solo[PROMPTS[4]]


def test_sync_stream_break_leaves_model_usable(adapter: LocalAdapter, solo: dict[str, str]) -> None:
    for i, chunk in enumerate(adapter.stream(PROMPTS[0], LONG)):
        assert chunk.text is not None
        if i == 2:
            break
    start = time.perf_counter()
    assert adapter.execute_prompt(PROMPTS[5], CFG).text == solo[PROMPTS[5]]
    assert time.perf_counter() - start < 3.0


async def test_queued_call_waits_for_the_model(adapter: LocalAdapter, solo: dict[str, str]) -> None:
    """A call arriving while a long generation runs waits for it (it does not fail), then answers."""
    long = asyncio.create_task(adapter.async_execute_prompt(PROMPTS[0], RunConfig(max_tokens=40, temperature=0)))
    await asyncio.sleep(0.05)
    short = await adapter.async_execute_prompt(PROMPTS[6], CFG)
    assert long.done()  # FIFO: the long call finished first
    assert short.text == solo[PROMPTS[6]]
    assert (await long).usage.output_tokens == 40
