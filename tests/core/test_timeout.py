"""The hot-path Timeout keeps asyncio.timeout's contract."""

from __future__ import annotations

import asyncio

import pytest

from llm_connect._timeout import Timeout


async def test_expiry_raises_timeout_error_from_the_cancellation() -> None:
    t = Timeout(0.01)
    with pytest.raises(TimeoutError) as info:
        async with t:
            await asyncio.sleep(5)
    assert t.expired and isinstance(info.value.__cause__, asyncio.CancelledError)
    assert asyncio.current_task().cancelling() == 0  # our cancel() was balanced


async def test_a_block_that_finishes_in_time_is_untouched() -> None:
    t = Timeout(5)
    async with t:
        await asyncio.sleep(0)
    assert not t.expired
    await asyncio.sleep(0.01)  # the timer was cancelled: nothing fires later


async def test_none_and_absolute_deadlines() -> None:
    async with Timeout(None):
        await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with Timeout(when=loop.time() + 0.01):
            await asyncio.sleep(5)
    with pytest.raises(TimeoutError):  # a deadline already past expires at the next loop turn
        async with Timeout(when=loop.time() - 1):
            await asyncio.sleep(5)


async def test_an_outside_cancellation_is_never_swallowed() -> None:
    async def body() -> None:
        async with Timeout(5):
            await asyncio.sleep(5)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_outside_cancellation_racing_the_expiry_stays_a_cancellation() -> None:
    async def body() -> None:
        t = Timeout(0.01)
        async with t:
            try:
                await asyncio.sleep(5)
            finally:
                # the timeout fired; someone else cancels too before the block unwinds
                asyncio.current_task().cancel()
                await asyncio.sleep(0)

    task = asyncio.create_task(body())
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_inner_expires_first_and_outer_keeps_running() -> None:
    outer = Timeout(5)
    async with outer:
        inner = Timeout(0.01)
        with pytest.raises(TimeoutError):
            async with inner:
                await asyncio.sleep(5)
        await asyncio.sleep(0.01)
    assert inner.expired and not outer.expired


async def test_nested_outer_expiry_is_the_outer_ones() -> None:
    outer = Timeout(0.01)
    inner = Timeout(5)
    with pytest.raises(TimeoutError):
        async with outer:
            async with inner:
                await asyncio.sleep(5)
    assert outer.expired and not inner.expired


def test_outside_a_task_is_refused() -> None:
    async def coro() -> None:
        async with Timeout(1):
            pass

    c = coro()
    with pytest.raises(RuntimeError):
        c.send(None)
    c.close()


async def test_entering_twice_is_refused() -> None:
    t = Timeout(5)
    async with t:
        pass
    with pytest.raises(RuntimeError):
        async with t:
            pass


@pytest.mark.parametrize("kw", [{"when": -1.0}, {"delay": 0}, {"delay": -0.5}])
async def test_a_deadline_already_due_stops_a_block_that_yields_once(kw) -> None:
    """As asyncio.timeout does: no timer to wait for, the block is cancelled at its next step."""
    if "when" in kw:
        kw = {"when": asyncio.get_running_loop().time() + kw["when"]}
    with pytest.raises(TimeoutError):
        async with Timeout(**kw):
            await asyncio.sleep(0)
    with pytest.raises(TimeoutError):  # the reference behaviour
        async with asyncio.timeout(0):
            await asyncio.sleep(0)


async def test_a_stream_past_its_deadline_stops_even_when_every_chunk_is_ready() -> None:
    """The per-chunk deadline of a stream holds when chunks come without waiting and the consumer is slow."""
    from llm_connect import LLMTimeoutError, RunConfig, create_adapter

    a = create_adapter("fake:m", replies=[" ".join(f"w{i}" for i in range(100))])
    got = 0
    t0 = asyncio.get_running_loop().time()
    with pytest.raises(LLMTimeoutError):
        async for _ in a.astream("hi", RunConfig(timeout=0.05)):
            got += 1
            await asyncio.sleep(0.005)  # a slow consumer
    assert got < 100 and asyncio.get_running_loop().time() - t0 < 0.3


# -- Deadline: one deadline over many awaits (the chunks of a stream) ------------------------------------------
async def test_a_deadline_spans_awaits_and_expires_the_one_waiting() -> None:
    from llm_connect._timeout import Deadline

    loop = asyncio.get_running_loop()
    d = Deadline(loop.time() + 0.05)
    for _ in range(3):  # awaits inside the time are untouched
        assert await d.run(asyncio.sleep(0, "x")) == "x"
    with pytest.raises(TimeoutError) as info:
        await d.run(asyncio.sleep(5))
    assert d.expired and isinstance(info.value.__cause__, asyncio.CancelledError)
    assert asyncio.current_task().cancelling() == 0  # our cancel() was balanced
    d.close()


async def test_time_that_ran_out_between_awaits_expires_the_next_one() -> None:
    from llm_connect._timeout import Deadline

    loop = asyncio.get_running_loop()
    d = Deadline(loop.time() + 0.01)
    await asyncio.sleep(0.05)  # the caller's own time, outside any await of the deadline
    assert d.expired
    assert await d.run(_ready()) == "ready"  # a result at hand without waiting is still delivered, as Timeout's
    with pytest.raises(TimeoutError):
        await d.run(asyncio.sleep(5))
    d.close()


async def test_no_deadline_and_an_outside_cancellation() -> None:
    from llm_connect._timeout import Deadline

    d = Deadline(None)
    assert await d.run(asyncio.sleep(0.01, 1)) == 1
    d2 = Deadline(asyncio.get_running_loop().time() + 5)

    async def body() -> None:
        await d2.run(asyncio.sleep(5))

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not d2.expired
    d2.close()
    await asyncio.sleep(0)


async def _ready() -> str:
    return "ready"


async def test_plain_with_keeps_the_contract() -> None:
    t = Timeout(0.01)
    with pytest.raises(TimeoutError) as info:
        with t:
            await asyncio.sleep(5)
    assert t.expired and isinstance(info.value.__cause__, asyncio.CancelledError)
    assert asyncio.current_task().cancelling() == 0
    with Timeout(5) as t2:
        await asyncio.sleep(0)
    assert not t2.expired
