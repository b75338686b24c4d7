"""The two model backends: the gateway client over real loopback HTTP, and in-process resolution of groups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from llm_connect.agents import GatewayBackend, InProcessBackend
from llm_connect.config import parse_config
from llm_connect.errors import (
    LLMAuthenticationError,
    LLMBudgetExceededError,
    LLMConfigurationError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    LLMTimeoutError,
)
from llm_connect.providers.fake import FakeAdapter
from llm_connect.testing import MockServer

MSGS = [{"role": "system", "content": "s"}, {"role": "user", "content": "hello there"}]


@pytest.fixture
async def gateway_stub(http_route) -> AsyncIterator[tuple[str, list[dict[str, Any]], list[Any]]]:
    """A loopback HTTP server answering /complete with whatever the test queues."""
    seen: list[dict[str, Any]] = []
    answers: list[Any] = []

    async def complete(request: web.Request) -> web.StreamResponse:
        seen.append({"body": await request.json(), "auth": request.headers.get("Authorization")})
        status, body, headers, delay = answers.pop(0)
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, body=body, headers=headers, content_type="application/json")

    yield await http_route("/complete", complete), seen, answers


async def test_gateway_request_and_reply(gateway_stub) -> None:
    url, seen, answers = gateway_stub
    answers.append(
        (
            200,
            orjson.dumps({"content": "hi!", "model": "m-1", "usage": {"prompt_tokens": 7, "completion_tokens": 2}}),
            {},
            0,
        )
    )
    gw = GatewayBackend(url + "/", api_key="gw-key", timeout=5)
    try:
        r = await gw.complete("quality", MSGS, max_tokens=50, temperature=0.2, tenant_id="acme", agent="ada")
    finally:
        await gw.aclose()
    assert (r.content, r.model, r.prompt_tokens, r.completion_tokens, r.total_tokens) == ("hi!", "m-1", 7, 2, 9)
    body = seen[0]["body"]
    assert body["model"] == "quality" and body["messages"] == MSGS and body["tenant_id"] == "acme"
    assert body["max_tokens"] == 50 and body["temperature"] == 0.2 and body["agent"] == "ada"
    assert seen[0]["auth"] == "Bearer gw-key"


@pytest.mark.parametrize(
    ("status", "body", "headers", "error"),
    [
        (503, {"error": "All providers unavailable"}, {}, LLMProviderUnavailableError),
        (500, "oops", {}, LLMProviderUnavailableError),
        (401, {"error": {"message": "bad key", "code": "invalid_api_key"}}, {}, LLMAuthenticationError),
        (
            429,
            {"error": {"message": "slow down", "code": "rate_limit_exceeded"}},
            {"Retry-After": "3"},
            LLMRateLimitError,
        ),
        (429, {"error": {"message": "no budget", "code": "budget_exceeded"}}, {}, LLMBudgetExceededError),
        (422, {"error": {"message": "messages: required"}}, {}, LLMInvalidRequestError),
        (504, {"error": "timeout"}, {}, LLMTimeoutError),
    ],
)
async def test_gateway_errors_are_typed(gateway_stub, status: int, body: Any, headers: dict, error: type) -> None:
    url, _, answers = gateway_stub
    raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
    answers.append((status, raw, headers, 0))
    gw = GatewayBackend(url, timeout=5)
    try:
        with pytest.raises(error) as ei:
            await gw.complete("quality", MSGS)
    finally:
        await gw.aclose()
    assert ei.value.status_code == status and ei.value.provider == "gateway"
    if error is LLMRateLimitError:
        assert ei.value.retry_after == 3.0


async def test_gateway_malformed_reply_and_timeout(gateway_stub) -> None:
    url, _, answers = gateway_stub
    answers.append((200, b"not json", {}, 0))
    answers.append((200, b"{}", {}, 1.0))
    gw = GatewayBackend(url, timeout=5)
    try:
        with pytest.raises(LLMProviderUnavailableError, match="malformed"):
            await gw.complete("quality", MSGS)
        with pytest.raises(LLMTimeoutError):
            await gw.complete("quality", MSGS, timeout=0.2)
    finally:
        await gw.aclose()


async def test_in_process_resolution_order() -> None:
    with MockServer.run_in_thread() as mock:
        cfg = parse_config(
            {
                "router": {
                    "groups": {"quality": [{"model": "openai:mock-q", "api_base": mock.openai_base, "api_key": "sk-x"}]}
                },
                "models": {
                    "cheap": {"model": "openai:mock-cheap", "api_base": mock.openai_base, "api_key": "sk-x"},
                    "echo": "fake:echo",
                },
            }
        )
        injected = FakeAdapter("inj", replies=["from the injected adapter"])
        b = InProcessBackend(cfg, adapters={"special": injected})
        try:
            assert (await b.complete("special", MSGS)).content == "from the injected adapter"
            r = await b.complete("quality", MSGS, max_tokens=3)  # a router group
            assert r.model == "mock-q" and r.completion_tokens == 3
            assert (await b.complete("cheap", MSGS)).model == "mock-cheap"  # an alias with its own endpoint
            assert (await b.complete("echo", MSGS)).content == "echo: hello there"  # an alias to a spec
            assert (await b.complete("fake:x", MSGS)).content == "echo: hello there"  # a spec
            with pytest.raises(LLMConfigurationError, match="not a router group"):
                await b.complete("nowhere", MSGS)
        finally:
            await b.aclose()


async def test_in_process_uses_the_providers_section_and_key_references(monkeypatch) -> None:
    monkeypatch.setenv("AGENT_TUNED_KEY", "sk-by-reference")
    with MockServer.run_in_thread() as mock:
        mock.require_key = None
        cfg = parse_config(
            {
                "providers": {"openai": {"api_key": "sk-from-providers", "api_base": mock.openai_base}},
                "router": {"groups": {"quality": [{"model": "openai:gpt-q"}]}},
                "models": {
                    "tuned": {"model": "openai:gpt-t", "api_key_env": "AGENT_TUNED_KEY", "api_base": mock.openai_base}
                },
            }
        )
        b = InProcessBackend(cfg)
        try:
            assert (await b.complete("quality", MSGS)).model == "gpt-q"  # no "no API key" for the group
            assert mock.last_request["auth"] is True
            assert (await b.complete("tuned", MSGS)).model == "gpt-t"
            assert mock.last_request["auth"] is True
        finally:
            await b.aclose()
