"""Transitive fallbacks and ``default_fallbacks`` through the gateway: a real gateway process whose router
config chains a -> b -> c, with the shipped mock server as its provider (real HTTP both ways).

    fallbacks {a: [b], b: [c], own: [x], x: [c]}, default_fallbacks [b]
    a -> b -> c     lone -> (b) -> c     own -> x -> c -> (b)
"""

from __future__ import annotations

import json

import pytest

from llm_connect.testing import MockReply

from .conftest import ACME_KEY, GatewayProc, auth, base_config, http

GROUPS = ("a", "b", "c", "lone", "own", "x")
pytestmark = pytest.mark.usefixtures("clean_mock")


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fallback-chains")
    cfg = base_config(mock, workdir)
    router = cfg["router"]
    router["groups"].update({g: [{"model": f"openai:gpt-{g}", "name": g}] for g in GROUPS})
    router["fallbacks"].update({"a": ["b"], "b": ["c"], "own": ["x"], "x": ["c"]})
    router["default_fallbacks"] = ["b"]
    router["cooldown"] = {"allowed_fails": 1000, "cooldown_time": 0.01}  # each test sees every deployment
    g = GatewayProc(cfg, workdir, name="fallback-chains").start()
    yield g
    g.stop()


def down(mock, *groups: str) -> None:
    mock.script(*(MockReply(model=f"gpt-{g}", error="server", repeat=True) for g in groups))


def visited(mock) -> list[str]:
    """The groups whose deployment the mock server was asked, in order."""
    return [r["model"].removeprefix("gpt-") for r in mock.requests if "model" in r]


def chat(gw, model: str, **extra) -> tuple[int, bytes]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    status, _, raw = http("POST", gw.url + "/v1/chat/completions", body, auth(ACME_KEY))
    return status, raw


def test_a_and_b_down_the_third_group_answers(gw, mock) -> None:
    down(mock, "a", "b")
    status, raw = chat(gw, "a")
    assert status == 200, raw
    assert json.loads(raw)["choices"][0]["message"]["content"] == "mock reply to: hi"
    assert visited(mock) == ["a", "b", "c"]


def test_a_and_b_down_the_third_group_streams(gw, mock) -> None:
    down(mock, "a", "b")
    status, raw = chat(gw, "a", stream=True)
    assert status == 200, raw
    frames = [line.removeprefix("data: ") for line in raw.decode().splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    text = "".join(
        choice["delta"].get("content") or "" for f in frames[:-1] for choice in json.loads(f).get("choices", [])
    )
    assert text == "mock reply to: hi"
    assert visited(mock) == ["a", "b", "c"]


def test_a_group_without_fallbacks_falls_to_the_defaults(gw, mock) -> None:
    down(mock, "lone")
    status, raw = chat(gw, "lone")
    assert status == 200, raw
    assert visited(mock) == ["lone", "b"]


def test_the_default_fallbacks_are_followed_transitively(gw, mock) -> None:
    down(mock, "lone", "b")
    status, raw = chat(gw, "lone")
    assert status == 200, raw
    assert visited(mock) == ["lone", "b", "c"]


def test_a_group_with_its_own_fallbacks_takes_them_not_the_defaults(gw, mock) -> None:
    down(mock, "own", "x")
    status, raw = chat(gw, "own")
    assert status == 200, raw
    assert visited(mock) == ["own", "x", "c"]


def test_every_group_of_the_chain_down_is_a_clean_error_after_one_try_each(gw, mock) -> None:
    down(mock, "a", "b", "c")
    status, raw = chat(gw, "a")
    assert status == 503, raw
    error = json.loads(raw)["error"]
    assert error["code"] == "provider_unavailable"
    assert "(tried groups: a, b, c)" in error["message"]
    assert visited(mock) == ["a", "b", "c"]
