"""Router failover against the shipped mock provider server (real HTTP over loopback, scripted faults)."""

from __future__ import annotations

import asyncio
import time

import pytest

from llm_connect import (
    LLMAuthenticationError,
    LLMContentFilterError,
    LLMContextWindowExceededError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMTimeoutError,
    RunConfig,
)
from llm_connect.routing import Router
from llm_connect.testing import MockReply, MockServer

from .conftest import dep, hit_times, hits

FAST_COOLDOWN = {"allowed_fails": 3, "window": 60, "cooldown_time": 5}


async def test_primary_500_goes_to_another_deployment_in_the_group(mock: MockServer) -> None:
    mock.script(MockReply(model="a", error="server"))
    router = Router({"g": [dep(mock, "a"), dep(mock, "b")]}, strategy="ordered", num_retries=0)
    resp = await router.async_execute_prompt("hello")
    assert resp.model == "b"
    assert resp.text == "mock reply to: hello"
    assert (hits(mock, "a"), hits(mock, "b")) == (1, 1)


async def test_whole_group_down_goes_to_the_fallback_group(mock: MockServer) -> None:
    mock.script(
        MockReply(model="q1", error="server", repeat=True), MockReply(model="q2", error="unavailable", repeat=True)
    )
    router = Router(
        {"quality": [dep(mock, "q1"), dep(mock, "q2")], "fast": [dep(mock, "f1")]},
        fallbacks={"quality": ["fast"]},
        num_retries=0,
    )
    resp = await router.async_execute_prompt("hi", RunConfig(model_name="quality"))
    assert resp.model == "f1"
    assert (hits(mock, "q1"), hits(mock, "q2"), hits(mock, "f1")) == (1, 1, 1)
    # the fast group itself never falls back to quality
    assert router.fallback_chain("fast") == ["fast"]
    assert router.fallback_chain("quality") == ["quality", "fast"]


async def test_429_retry_after_keeps_the_deployment_out_while_others_serve(mock: MockServer) -> None:
    mock.script(MockReply(model="a", error="rate_limit", retry_after=2))
    router = Router({"g": [dep(mock, "a"), dep(mock, "b")]}, strategy="ordered", cooldown=FAST_COOLDOWN)
    t0 = time.monotonic()
    first = await router.async_execute_prompt("one")
    assert first.model == "b"
    # for the next ~2 s every call goes to b although a is first in order
    served = []
    while time.monotonic() - t0 < 1.6:
        served.append((await router.async_execute_prompt("again")).model)
        await asyncio.sleep(0.05)
    assert served and set(served) == {"b"}
    assert hits(mock, "a") == 1
    health = {row["name"]: row for row in (await router.ahealth())["g"]}
    assert health["a"]["available"] is False and health["a"]["cooldown_remaining"] > 0
    # cooldown expiry brings it back: a half-open probe succeeds and a serves again
    await asyncio.sleep(max(0.0, 2.05 - (time.monotonic() - t0)))
    assert (await router.async_execute_prompt("back")).model == "a"
    assert (await router.async_execute_prompt("still")).model == "a"
    times = hit_times(mock, "a")
    assert len(times) == 3
    assert times[1] - times[0] >= 1.95


async def test_retry_after_is_honoured_within_one_call_when_nothing_else_can_serve(mock: MockServer) -> None:
    mock.script(MockReply(model="solo", error="rate_limit", retry_after=1))
    router = Router({"g": [dep(mock, "solo")]}, num_retries=1, retry={"backoff_base": 0.01})
    t0 = time.monotonic()
    resp = await router.async_execute_prompt("wait for it")
    assert resp.model == "solo"
    assert time.monotonic() - t0 >= 0.95
    assert hits(mock, "solo") == 2


async def test_retry_after_longer_than_max_wait_gives_up_at_once(mock: MockServer) -> None:
    mock.script(MockReply(model="solo", error="rate_limit", retry_after=30))
    router = Router({"g": [dep(mock, "solo")]}, num_retries=3, retry={"max_wait": 5})
    t0 = time.monotonic()
    with pytest.raises(LLMProviderUnavailableError) as ei:
        await router.async_execute_prompt("x")
    assert time.monotonic() - t0 < 1.0
    assert [a.error_type for a in ei.value.attempts] == ["LLMRateLimitError"]


async def test_circuit_breaker_trips_after_n_failures_and_cooldown_expiry_brings_it_back(mock: MockServer) -> None:
    mock.script(MockReply(model="a", error="server", times=2))
    router = Router(
        {"g": [dep(mock, "a"), dep(mock, "b")]},
        strategy="ordered",
        num_retries=0,
        cooldown={"allowed_fails": 2, "window": 30, "cooldown_time": 0.6},
    )
    assert (await router.async_execute_prompt("1")).model == "b"  # a fails once: still in rotation
    assert (await router.async_execute_prompt("2")).model == "b"  # a fails twice: circuit opens
    for _ in range(3):
        assert (await router.async_execute_prompt("3")).model == "b"
    assert hits(mock, "a") == 2
    await asyncio.sleep(0.65)
    assert (await router.async_execute_prompt("4")).model == "a"  # half-open probe succeeds
    assert hits(mock, "a") == 3


async def test_failed_half_open_probe_reopens_the_circuit(mock: MockServer) -> None:
    mock.script(MockReply(model="a", error="server", times=3))
    router = Router(
        {"g": [dep(mock, "a"), dep(mock, "b")]},
        strategy="ordered",
        num_retries=0,
        cooldown={"allowed_fails": 2, "window": 30, "cooldown_time": 0.4},
    )
    for _ in range(2):
        await router.async_execute_prompt("x")
    await asyncio.sleep(0.45)
    assert (await router.async_execute_prompt("probe")).model == "b"  # the probe on a failed
    assert hits(mock, "a") == 3
    assert (await router.async_execute_prompt("y")).model == "b"  # open again: a is not tried
    assert hits(mock, "a") == 3
    await asyncio.sleep(0.45)
    assert (await router.async_execute_prompt("z")).model == "a"


async def test_context_window_error_goes_only_to_a_larger_window(mock: MockServer) -> None:
    mock.script(MockReply(model="small", error="context_length"))
    router = Router(
        {
            "g": [
                dep(mock, "small", context_window=8_000),
                dep(mock, "same", context_window=8_000),
                dep(mock, "unknown"),
                dep(mock, "big", context_window=128_000),
            ]
        },
        strategy="ordered",
    )
    resp = await router.async_execute_prompt("a very long prompt")
    assert resp.model == "big"
    assert [hits(mock, m) for m in ("small", "same", "unknown", "big")] == [1, 0, 0, 1]


async def test_context_window_fallback_group_is_used_and_smaller_fallbacks_are_not(mock: MockServer) -> None:
    mock.script(MockReply(model="s", error="context_length"))
    router = Router(
        {
            "short": [dep(mock, "s", context_window=8_000)],
            "tiny": [dep(mock, "t", context_window=4_000)],
            "long": [dep(mock, "l")],  # window unknown, but named as a context-window fallback
        },
        fallbacks={"short": ["tiny"]},
        context_window_fallbacks={"short": ["long"]},
    )
    resp = await router.async_execute_prompt("x", RunConfig(model_name="short"))
    assert resp.model == "l"
    assert hits(mock, "t") == 0


async def test_context_window_error_with_no_larger_deployment_is_raised_as_is(mock: MockServer) -> None:
    mock.script(MockReply(model="a", error="context_length"))
    router = Router(
        {"g": [dep(mock, "a", context_window=8_000), dep(mock, "b", context_window=4_000)]}, strategy="ordered"
    )
    with pytest.raises(LLMContextWindowExceededError):
        await router.async_execute_prompt("x")
    assert hits(mock, "b") == 0


async def test_all_down_raises_the_typed_error_listing_every_attempt(mock: MockServer) -> None:
    mock.script(
        MockReply(model="q1", error="server", repeat=True),
        MockReply(model="q2", error="overloaded", repeat=True),
        MockReply(model="f1", error="timeout", repeat=True),
        MockReply(model="f2", fault="reset", repeat=True),
    )
    router = Router(
        {"quality": [dep(mock, "q1"), dep(mock, "q2")], "fast": [dep(mock, "f1"), dep(mock, "f2")]},
        fallbacks={"quality": ["fast"]},
        strategy="ordered",
        num_retries=0,
    )
    with pytest.raises(LLMProviderUnavailableError) as ei:
        await router.async_execute_prompt("x", RunConfig(model_name="quality"))
    err = ei.value
    assert [a.deployment for a in err.attempts] == ["q1", "q2", "f1", "f2"]
    assert [a.error_type for a in err.attempts] == [
        "LLMProviderUnavailableError",
        "LLMProviderUnavailableError",
        "LLMTimeoutError",
        "LLMProviderUnavailableError",
    ]
    assert all(a.elapsed_ms > 0 for a in err.attempts)
    text = str(err)
    for name in ("q1", "q2", "f1", "f2"):
        assert f"- {name}:" in text


async def test_retries_run_more_rounds_with_backoff(mock: MockServer) -> None:
    mock.script(MockReply(model="a", error="server", times=2))
    router = Router({"g": [dep(mock, "a")]}, num_retries=2, retry={"backoff_base": 0.05}, cooldown=FAST_COOLDOWN)
    t0 = time.monotonic()
    resp = await router.async_execute_prompt("x")
    assert resp.model == "a" and hits(mock, "a") == 3
    assert time.monotonic() - t0 >= 0.025 + 0.05  # two backoffs, jittered to at least half


async def test_invalid_request_fails_fast(mock: MockServer) -> None:
    mock.script(MockReply(model="a", error="bad_request", error_message="messages: bad shape"))
    router = Router({"g": [dep(mock, "a"), dep(mock, "b")]}, strategy="ordered")
    with pytest.raises(LLMInvalidRequestError) as ei:
        await router.async_execute_prompt("x")
    assert not isinstance(ei.value, LLMProviderUnavailableError)
    assert hits(mock, "b") == 0


async def test_auth_error_moves_on_and_fails_fast_when_no_other_deployment(mock: MockServer) -> None:
    mock.script(MockReply(model="a", error="auth", repeat=True))
    router = Router({"g": [dep(mock, "a"), dep(mock, "b")]}, strategy="ordered", num_retries=2)
    assert (await router.async_execute_prompt("x")).model == "b"
    assert (await router.async_execute_prompt("y")).model == "b"
    assert hits(mock, "a") == 1  # cooled down after the 401

    solo = Router({"g": [dep(mock, "a")]}, num_retries=2)
    t0 = time.monotonic()
    with pytest.raises(LLMAuthenticationError):
        await solo.async_execute_prompt("x")
    assert time.monotonic() - t0 < 1.0
    assert hits(mock, "a") == 2


async def test_content_filter_fails_fast_or_goes_to_the_content_policy_fallback(mock: MockServer) -> None:
    refused = {"model": "strict", "error": "bad_request", "error_code": "content_policy_violation"}
    mock.script(MockReply(**refused))
    plain = Router({"g": [dep(mock, "strict"), dep(mock, "other")]}, strategy="ordered")
    with pytest.raises(LLMContentFilterError):
        await plain.async_execute_prompt("x")
    assert hits(mock, "other") == 0

    mock.script(MockReply(**refused))
    router = Router(
        {"g": [dep(mock, "strict"), dep(mock, "other")], "lenient": [dep(mock, "open")]},
        content_policy_fallbacks={"g": ["lenient"]},
        strategy="ordered",
    )
    assert (await router.async_execute_prompt("x")).model == "open"
    assert hits(mock, "other") == 0


async def test_stream_falls_back_before_the_first_chunk(mock: MockServer) -> None:
    mock.script(MockReply(model="a", error="server"))
    router = Router({"g": [dep(mock, "a"), dep(mock, "b")]}, strategy="ordered")
    chunks = [c async for c in router.astream("stream me please")]
    assert "".join(c.text for c in chunks) == "mock reply to: stream me please"
    assert chunks[-1].usage is not None and chunks[-1].finish_reason == "stop"
    assert chunks[-1].model == "b"


async def test_stream_failure_after_text_ends_with_a_clear_error(mock: MockServer) -> None:
    mock.script(MockReply(model="a", text="one two three four five six", fault="cut_stream", cut_after=3))
    router = Router({"g": [dep(mock, "a"), dep(mock, "b")]}, strategy="ordered")
    got = []
    with pytest.raises(LLMProviderUnavailableError) as ei:
        async for c in router.astream("x"):
            got.append(c.text)
    assert got, "some text reached the caller before the cut"
    assert f"failed after {len(got)} chunks" in str(ei.value)
    assert hits(mock, "b") == 0


def test_sync_facade_routes_too() -> None:
    with MockServer.run_in_thread() as mock:
        mock.script(MockReply(model="a", error="server"))
        router = Router({"g": [dep(mock, "a"), dep(mock, "b")]}, strategy="ordered")
        assert router.execute_prompt("sync").model == "b"
        assert "".join(c.text for c in router.stream("sync stream")) == "mock reply to: sync stream"


@pytest.mark.parametrize("error", ["unavailable", "overloaded"])
async def test_a_503_or_529_with_retry_after_is_believed(mock: MockServer, error: str) -> None:
    mock.script(MockReply(model="a", error=error, retry_after=1))
    router = Router({"g": [dep(mock, "a"), dep(mock, "b")]}, strategy="ordered", cooldown=FAST_COOLDOWN)
    assert (await router.async_execute_prompt("one")).model == "b"
    assert (await router.async_execute_prompt("two")).model == "b"  # a is out for the second it asked for
    await asyncio.sleep(1.05)
    assert (await router.async_execute_prompt("three")).model == "a"


def _slow_primary(mock: MockServer, own_timeout: float) -> Router:
    """Group "primary": one deployment with its own timeout whose replies come after 5 s; "backup" answers."""
    mock.script(MockReply(model="slow", latency=5, repeat=True))
    return Router(
        {"primary": [dep(mock, "slow", options={"timeout": own_timeout})], "backup": [dep(mock, "spare")]},
        fallbacks={"primary": ["backup"]},
        num_retries=0,
    )


async def test_a_request_timeout_caps_the_deployment_timeout_and_the_fallback_is_still_reached(
    mock: MockServer,
) -> None:
    router = _slow_primary(mock, own_timeout=0.5)
    t0 = time.monotonic()
    resp = await router.async_execute_prompt("hi", RunConfig(model_name="primary", timeout=3))
    took = time.monotonic() - t0
    # the primary gave up at its own 0.5 s (not at the request's 3 s) and left the rest to the fallback
    assert resp.model == "spare" and 0.4 < took < 1.5, took
    assert (hits(mock, "slow"), hits(mock, "spare")) == (1, 1)


async def test_a_request_timeout_shorter_than_the_deployment_timeout_wins(mock: MockServer) -> None:
    router = _slow_primary(mock, own_timeout=4)
    t0 = time.monotonic()
    with pytest.raises(LLMTimeoutError):
        await router.async_execute_prompt("hi", RunConfig(model_name="primary", timeout=0.5))
    assert time.monotonic() - t0 < 1.5
    assert hits(mock, "spare") == 0  # no time was left for the fallback


def test_the_sync_facade_applies_the_same_timeout_rule() -> None:
    with MockServer.run_in_thread() as mock:
        router = _slow_primary(mock, own_timeout=0.5)
        t0 = time.monotonic()
        resp = router.execute_prompt("hi", RunConfig(model_name="primary", timeout=3))
        assert resp.model == "spare" and time.monotonic() - t0 < 1.5
