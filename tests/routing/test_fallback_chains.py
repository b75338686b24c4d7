"""Fallback chains are transitive (docs/routing.md): a call visits its group, then the group's fallbacks, then
THEIR fallbacks, each group once; ``default_fallbacks`` stand in for the fallbacks of a group without its own.
Against the shipped mock server (real HTTP over loopback, scripted 5xx).

The groups (one deployment each, named after its group)::

    a -> b -> c              fallbacks {a: [b], b: [c]}
    lone -> (b) -> c         lone has no fallbacks: default_fallbacks [b]
    c -> (b)                 c has none either; on a -> b -> c, b is visited already: no loop
    own -> x -> c -> (b)     fallbacks {own: [x], x: [c]}: a group's own fallbacks come before any default
"""

from __future__ import annotations

import pytest

from llm_connect import LLMProviderUnavailableError, RunConfig
from llm_connect.routing import Router
from llm_connect.testing import MockReply, MockServer

from .conftest import dep

FALLBACKS = {"a": ["b"], "b": ["c"], "own": ["x"], "x": ["c"]}
DEFAULTS = ["b"]
#: a failed deployment stays available (the breaker never opens), so each call sees the same chain
NO_BREAKER = {"allowed_fails": 1000, "window": 60, "cooldown_time": 0.01}


def down(*deployments: str) -> tuple[MockReply, ...]:
    return tuple(MockReply(model=d, error="server", repeat=True) for d in deployments)


@pytest.fixture
def router(mock: MockServer) -> Router:
    groups = {g: [dep(mock, g)] for g in ("a", "b", "c", "lone", "own", "x")}
    return Router(
        groups, fallbacks=FALLBACKS, default_fallbacks=DEFAULTS, strategy="ordered", num_retries=0, cooldown=NO_BREAKER
    )


def visited(mock: MockServer) -> list[str]:
    """The deployments the mock server was asked, in order."""
    return [r["model"] for r in mock.requests if "model" in r]


def test_the_chains_are_expanded_transitively_each_group_once(router: Router) -> None:
    assert router.fallback_chain("a") == ["a", "b", "c"]
    assert router.fallback_chain("b") == ["b", "c"]
    assert router.fallback_chain("c") == ["c", "b"]
    assert router.fallback_chain("lone") == ["lone", "b", "c"]
    assert router.fallback_chain("own") == ["own", "x", "c", "b"]


async def test_a_and_b_down_the_third_group_answers(mock: MockServer, router: Router) -> None:
    mock.script(*down("a", "b"))
    resp = await router.async_execute_prompt("hi", RunConfig(model_name="a"))
    assert resp.model == "c"
    assert resp.text == "mock reply to: hi"
    assert visited(mock) == ["a", "b", "c"]


async def test_a_and_b_down_the_third_group_streams(mock: MockServer, router: Router) -> None:
    mock.script(*down("a", "b"))
    text = "".join([c.text async for c in router.astream("hi", RunConfig(model_name="a"))])
    assert text == "mock reply to: hi"
    assert visited(mock) == ["a", "b", "c"]


async def test_a_group_without_fallbacks_falls_to_the_defaults(mock: MockServer, router: Router) -> None:
    mock.script(*down("lone"))
    assert (await router.async_execute_prompt("hi", RunConfig(model_name="lone"))).model == "b"
    assert visited(mock) == ["lone", "b"]


async def test_the_default_fallbacks_are_followed_transitively(mock: MockServer, router: Router) -> None:
    mock.script(*down("lone", "b"))
    assert (await router.async_execute_prompt("hi", RunConfig(model_name="lone"))).model == "c"
    assert visited(mock) == ["lone", "b", "c"]


async def test_a_group_with_its_own_fallbacks_takes_them_not_the_defaults(mock: MockServer, router: Router) -> None:
    mock.script(*down("own", "x"))
    assert (await router.async_execute_prompt("hi", RunConfig(model_name="own"))).model == "c"
    assert visited(mock) == ["own", "x", "c"]  # not own -> b: the defaults only come in through c, last


async def test_every_group_of_the_chain_down_each_is_tried_once(mock: MockServer, router: Router) -> None:
    mock.script(*down("a", "b", "c"))
    with pytest.raises(LLMProviderUnavailableError) as ei:
        await router.async_execute_prompt("hi", RunConfig(model_name="a"))
    assert [attempt.deployment for attempt in ei.value.attempts] == ["a", "b", "c"]
    assert visited(mock) == ["a", "b", "c"]  # c's default fallback b was visited already: no loop
