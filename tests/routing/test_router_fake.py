"""Router contract with the in-process fake provider: config, pass-through of RunConfig, budgets, usage, streams."""

from __future__ import annotations

import asyncio

import pytest

from llm_connect import (
    FakeAdapter,
    FakeReply,
    LLMAdapter,
    LLMBudgetExceededError,
    LLMConfigurationError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    LLMTimeoutError,
    RunConfig,
)
from llm_connect.budget import BudgetTracker
from llm_connect.routing import Deployment, MemoryRouterState, Router
from llm_connect.testing import MockServer
from llm_connect.usage import UsageTracker

from .conftest import hits

DOWN = LLMProviderUnavailableError("down", status_code=503)


def fake(name: str, *replies: str | FakeReply, **kw: object) -> Deployment:
    return Deployment(adapter=FakeAdapter(name, replies=replies, **kw), name=name)  # type: ignore[arg-type]


def calls(d: Deployment) -> int:
    assert isinstance(d.adapter, FakeAdapter)
    return len(d.adapter.calls)


# -- the adapter contract ----------------------------------------------------------------------


async def test_router_is_an_adapter_and_routes_by_model_name() -> None:
    f, q = fake("f"), fake("q")
    router = Router({"fast": [f], "quality": [q]})
    assert isinstance(router, LLMAdapter)
    assert router.default_group == "fast" and router.model == "fast"
    assert (await router.async_execute_prompt("x")).model == "f"
    assert (await router.async_execute_prompt("x", RunConfig(model_name="quality"))).model == "q"
    assert router.resolve_group(None) == "fast" and router.resolve_group("quality") == "quality"
    assert router.has_group("quality") and not router.has_group("gpt-4")
    with pytest.raises(LLMInvalidRequestError, match="unknown model group 'gpt-4'; this router serves: fast, quality"):
        await router.async_execute_prompt("x", RunConfig(model_name="gpt-4"))
    view = router.for_group("quality")
    assert (await view.async_execute_prompt("x")).model == "q"
    assert "".join([c.text async for c in view.astream("hi there")]) == "echo: hi there"


async def test_generate_works_through_the_router() -> None:
    router = Router({"g": [fake("a", "the answer")]})
    result = await router.generate("q")
    assert result.success and result.text == "the answer"


def test_sync_and_async_paths_agree() -> None:
    router = Router({"g": [fake("a", FakeReply(error=DOWN)), fake("b")]}, strategy="ordered")
    assert router.execute_prompt("same").text == "echo: same"
    assert "".join(c.text for c in router.stream("same")) == "echo: same"


async def test_run_config_reaches_the_deployment_with_deployment_metadata() -> None:
    tracker = UsageTracker()
    events = []
    tracker.subscribe(events.append)
    router = Router({"g": [fake("a", FakeReply(error=DOWN)), fake("b")]}, strategy="ordered")
    cfg = RunConfig(tenant_id="t1", agent="triager", metadata={"trace": "x"}, usage_tracker=tracker, max_tokens=50)
    resp = await router.async_execute_prompt("hello", cfg)
    assert resp.model == "b"
    assert [(e.success, e.metadata["deployment"], e.metadata["model_group"]) for e in events] == [
        (False, "a", "g"),
        (True, "b", "g"),
    ]
    assert all(e.tenant_id == "t1" and e.agent == "triager" and e.metadata["trace"] == "x" for e in events)
    assert cfg.metadata == {"trace": "x"}, "the caller's config is not modified"


async def test_every_attempt_is_budgeted_once() -> None:
    budget = BudgetTracker(total=1_000)
    router = Router({"g": [fake("a", FakeReply(error=DOWN)), fake("b", "four words of answer")]}, strategy="ordered")
    resp = await router.async_execute_prompt("two words", RunConfig(budget_tracker=budget, max_tokens=10))
    # the failed attempt's reservation was released; the success settled at its real usage only
    assert budget.spent == resp.usage.total_tokens
    assert budget.reserved == 0


async def test_budget_exceeded_fails_fast_without_trying_others() -> None:
    a, b = fake("a"), fake("b")
    router = Router({"g": [a, b]}, fallbacks=None, num_retries=3)
    with pytest.raises(LLMBudgetExceededError):
        await router.async_execute_prompt("a prompt that is too long", RunConfig(budget_tracker=BudgetTracker(total=3)))
    assert calls(a) == calls(b) == 0


async def test_config_error_of_one_deployment_moves_on(monkeypatch: pytest.MonkeyPatch, mock: MockServer) -> None:
    monkeypatch.delenv("LLMC_TEST_MISSING_KEY", raising=False)
    keyed = Deployment(model="openai:gpt-4o-mini", api_base=mock.openai_base, api_key_env="LLMC_TEST_MISSING_KEY")
    router = Router({"g": [keyed, fake("b")]}, strategy="ordered")
    assert (await router.async_execute_prompt("x")).model == "b"
    solo = Router({"g": [keyed]})
    with pytest.raises(LLMConfigurationError, match="LLMC_TEST_MISSING_KEY is not set"):
        await solo.async_execute_prompt("x")
    monkeypatch.setenv("LLMC_TEST_MISSING_KEY", "sk-from-env")
    solo2 = Router({"g": [keyed]})
    assert (await solo2.async_execute_prompt("x")).model == "gpt-4o-mini"
    assert mock.last_request is not None and mock.last_request["auth"] is True


async def test_deployment_adapters_are_built_lazily_once(mock: MockServer) -> None:
    d = Deployment(model="openai-compatible:m1", api_base=mock.openai_base)
    router = Router({"g": [d]})
    (node,) = router._groups["g"]
    assert node._adapter is None
    await router.async_execute_prompt("1")
    first = node._adapter
    await router.async_execute_prompt("2")
    assert node._adapter is first and hits(mock, "m1") == 2
    await router.aclose()


async def test_whole_call_timeout_covers_retries() -> None:
    slow = [FakeReply(text="late", latency=0.3)] * 5
    router = Router({"g": [fake("a", *slow), fake("b", *slow)]}, num_retries=5)
    with pytest.raises(LLMTimeoutError, match=r"within 0\.2 s after 1 attempt"):
        await router.async_execute_prompt("x", RunConfig(timeout=0.2))


# -- streams -----------------------------------------------------------------------------------


class BrokenStream(LLMAdapter):
    """Streams some text, then fails (or fails before any text)."""

    provider = "broken"

    def __init__(self, name: str, before: int, error: Exception) -> None:
        self.model = name
        self.before = before
        self.error = error
        self.closed = 0

    async def async_execute_prompt(self, prompt, config=None):  # type: ignore[no-untyped-def]
        raise self.error

    async def astream(self, prompt, config=None):  # type: ignore[no-untyped-def]
        from llm_connect import StreamChunk

        try:
            yield StreamChunk(text="", model=self.model)  # a role-only chunk: no text yet
            for i in range(self.before):
                yield StreamChunk(text=f"t{i} ", model=self.model)
            raise self.error
        finally:
            self.closed += 1


async def test_stream_falls_back_when_the_failure_comes_before_any_text() -> None:
    broken = BrokenStream("x", 0, LLMProviderUnavailableError("cut"))
    router = Router({"g": [Deployment(adapter=broken, name="x"), fake("b")]}, strategy="ordered")
    chunks = [c async for c in router.astream("hello")]
    assert "".join(c.text for c in chunks) == "echo: hello"
    assert {c.model for c in chunks} == {"b"}, "the held role-only chunk of the failed stream is dropped"
    assert broken.closed == 1


async def test_stream_failure_after_text_raises_with_the_chunk_count() -> None:
    broken = BrokenStream("x", 3, LLMProviderUnavailableError("cut"))
    b = fake("b")
    router = Router({"g": [Deployment(adapter=broken, name="x"), b]}, strategy="ordered")
    got = []
    with pytest.raises(LLMProviderUnavailableError, match="stream from x failed after 4 chunks") as ei:
        async for c in router.astream("hello"):
            got.append(c)
    assert len(got) == 4 and calls(b) == 0
    assert [a.deployment for a in ei.value.attempts] == ["x"]


async def test_stream_consumer_stopping_early_closes_the_inner_stream() -> None:
    d = fake("a", "one two three four")
    router = Router({"g": [d]})
    agen = router.astream("x")
    first = await anext(agen)
    assert first.text == "one"
    await agen.aclose()
    (node,) = router._groups["g"]
    assert node.in_flight == 0


async def test_stream_budget_error_is_not_retried() -> None:
    a, b = fake("a"), fake("b")
    router = Router({"g": [a, b]})
    with pytest.raises(LLMBudgetExceededError):
        [c async for c in router.astream("far too long a prompt", RunConfig(budget_tracker=BudgetTracker(total=2)))]
    assert calls(a) == calls(b) == 0


# -- shared state and probes -------------------------------------------------------------------


async def test_two_routers_sharing_a_memory_state_share_cooldowns() -> None:
    state = MemoryRouterState()
    a1 = fake("a", FakeReply(error=LLMRateLimitError("slow down", retry_after=5)))
    r1 = Router({"g": [a1, fake("b")]}, strategy="ordered", state=state)
    a2 = fake("a")
    r2 = Router({"g": [a2, fake("b")]}, strategy="ordered", state=state)
    assert (await r1.async_execute_prompt("x")).model == "b"
    assert (await r2.async_execute_prompt("x")).model == "b"
    assert calls(a2) == 0


async def test_only_one_half_open_probe_at_a_time() -> None:
    a = fake("a", FakeReply(error=DOWN), *[FakeReply(text="ok", latency=0.1)] * 10)
    router = Router(
        {"g": [a, fake("b")]}, strategy="ordered", num_retries=0, cooldown={"allowed_fails": 1, "cooldown_time": 0.2}
    )
    assert (await router.async_execute_prompt("trip")).model == "b"
    await asyncio.sleep(0.25)
    results = await asyncio.gather(*(router.async_execute_prompt("x") for _ in range(5)))
    assert sorted(r.model for r in results) == ["a", "b", "b", "b", "b"]
    assert (await router.async_execute_prompt("closed again")).model == "a"


async def test_nothing_available_names_the_reason() -> None:
    router = Router({"g": [fake("a", FakeReply(error=LLMRateLimitError("later", retry_after=60)))]}, num_retries=0)
    with pytest.raises(LLMProviderUnavailableError):
        await router.async_execute_prompt("x")
    with pytest.raises(LLMProviderUnavailableError, match=r"a cooling down for \d+\.\d s"):
        await router.async_execute_prompt("x")


async def test_unreachable_state_degrades_to_routing_without_it() -> None:
    from llm_connect.routing import RedisRouterState

    dead = RedisRouterState("redis://127.0.0.1:1/0", namespace="nowhere")
    router = Router({"g": [fake("a", FakeReply(error=DOWN)), fake("b")]}, strategy="ordered", state=dead)
    assert (await router.async_execute_prompt("x")).model == "b"
    assert (await router.async_execute_prompt("y")).model == "a"
    await dead.aclose()


# -- construction ------------------------------------------------------------------------------


def test_from_config_builds_groups_fallbacks_and_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMC_TEST_KEY", "sk-x")
    router = Router.from_config(
        {
            "groups": {
                "quality": [
                    {
                        "model": "anthropic:claude-sonnet-4",
                        "api_key_env": "LLMC_TEST_KEY",
                        "weight": 2,
                        "rpm": 100,
                        "tpm": 100000,
                        "context_window": 200000,
                        "api_base": "http://127.0.0.1:9",
                    },
                    {"provider": "openai", "model": "gpt-4o", "api_key": "sk-secret", "timeout": 30},
                ],
                "fast": ["ollama:qwen3:8b"],
            },
            "fallbacks": [{"quality": ["fast"]}],
            "context_window_fallbacks": {"fast": "quality"},
            "strategy": "latency-based-routing",
            "num_retries": 1,
            "retry": {"backoff_base": 0.1},
            "cooldown": {"allowed_fails": 5, "cooldown_time": 30},
        }
    )
    assert router.strategy.name == "latency"
    assert router.retry.num_retries == 1 and router.retry.backoff_base == 0.1
    assert router.cooldown.allowed_fails == 5
    assert router.fallback_chain("quality") == ["quality", "fast"]
    assert router.deployment_names() == [
        "quality/anthropic:claude-sonnet-4",
        "quality/openai:gpt-4o",
        "fast/ollama:qwen3:8b",
    ]
    desc = router.describe()
    assert [g["id"] for g in desc] == ["quality", "fast"]
    first = desc[0]["deployments"][0]
    assert first["provider"] == "anthropic" and first["context_window"] == 200000 and first["weight"] == 2
    assert "sk-secret" not in repr(desc) and "sk-secret" not in repr(router.groups)
    assert router.groups["quality"][1].options == {"timeout": 30}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "'groups' must map"),
        ({"groups": {"g": []}}, "group 'g' has no deployments"),
        ({"groups": {"g": ["fake:a"]}, "fallbacks": {"g": ["nope"]}}, "fallbacks['g']: unknown group 'nope'"),
        ({"groups": {"g": ["fake:a"]}, "fallbacks": {"g": "g"}}, "cannot fall back to itself"),
        ({"groups": {"g": ["fake:a"]}, "strategy": "fastest"}, "unknown routing strategy 'fastest'"),
        ({"groups": {"g": [{"model": "fake:a", "wieght": 2}]}}, "groups['g'][0]: unknown key(s) ['wieght']"),
        ({"groups": {"g": [{"model": "fake:a", "weight": 0}]}}, "weight must be a positive number"),
        ({"groups": {"g": [{"model": "fake:a", "timeout": 0}]}}, "timeout must be a positive number"),
        ({"groups": {"g": [{"model": "fake:a", "timeout": "5s"}]}}, "timeout must be a positive number"),
        ({"groups": {"g": [{"model": "gpt-4o"}]}}, "must be a 'provider:model' spec"),
        ({"groups": {"g": ["fake:a"]}, "retry": {"num_retries": -1}}, "retry.num_retries must be an integer"),
        ({"groups": {"g": ["fake:a"]}, "cooldown": {"cooldown": 3}}, "cooldown: unknown key(s) ['cooldown']"),
        ({"groups": {"g": ["fake:a"]}, "routes": {}}, "router config: unknown key(s) ['routes']"),
        ({"groups": {"g": ["fake:a"]}, "default_group": "h"}, "default_group 'h' is not a group"),
    ],
)
def test_bad_router_configs_are_rejected_clearly(config: dict, message: str) -> None:
    with pytest.raises(LLMConfigurationError) as ei:
        Router.from_config(config)
    assert message in str(ei.value)


async def test_an_injected_adapter_deployment_timeout_caps_each_attempt() -> None:
    slow = Deployment(adapter=FakeAdapter("slow", replies=[FakeReply("late", latency=2)]), options={"timeout": 0.2})
    router = Router({"g": [slow, fake("quick", "on time")]}, strategy="ordered", num_retries=0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    resp = await router.async_execute_prompt("x")  # no request timeout: the deployment's own still applies
    assert resp.text == "on time" and loop.time() - t0 < 1


def test_duplicate_deployments_get_distinct_names() -> None:
    router = Router({"g": ["fake:a", "fake:a"], "h": ["fake:a"]})
    assert router.deployment_names() == ["g/fake:a", "g/fake:a#1", "h/fake:a"]
    with pytest.raises(LLMConfigurationError, match="used twice"):
        Router({"g": [Deployment(model="fake:a", name="x"), Deployment(model="fake:b", name="x")]})


async def test_a_deployment_the_usd_budget_refuses_is_skipped_for_one_that_fits():
    from decimal import Decimal

    from llm_connect.budget import BudgetTracker
    from llm_connect.testing import MockServer

    async with MockServer() as mock:
        router = Router(
            groups={
                "g": [
                    Deployment(model="ollama:unpriced-local", api_base=mock.url, name="unpriced"),
                    Deployment(model="openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k", name="priced"),
                ]
            },
            strategy="ordered",
        )
        usd = BudgetTracker(total_usd=Decimal("1"))
        r = await router.async_execute_prompt("hi", RunConfig(model_name="g", max_tokens=10, budget_tracker=usd))
        assert r.model.startswith("gpt-4o-mini") and usd.spent_usd == r.cost_usd
        tiny = BudgetTracker(total=1)  # nothing fits anywhere: the budget error itself, not "unavailable"
        with pytest.raises(LLMBudgetExceededError):
            await router.async_execute_prompt("hi", RunConfig(model_name="g", max_tokens=10, budget_tracker=tiny))
