"""The core contract: public API, sync/async parity, the sync facade, the executor fallback, factories."""

from __future__ import annotations

import asyncio
import importlib
import pickle
import threading
import time

import pytest

import llm_connect
from llm_connect import (
    FakeReply,
    LLMAdapter,
    LLMBackend,
    LLMConfigurationError,
    LLMError,
    LLMInvalidRequestError,
    LLMRateLimitError,
    LLMResponse,
    LLMTimeout,
    LLMTimeoutError,
    LLMUsageError,
    RunConfig,
    Usage,
    create_adapter,
    get_llm,
)


def test_all_is_sorted_and_every_name_imports():
    assert llm_connect.__all__ == sorted(llm_connect.__all__)
    for name in llm_connect.__all__:
        assert getattr(llm_connect, name) is not None, name


def test_import_is_lazy():
    code = "import sys, llm_connect; print('aiohttp' in sys.modules)"
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_import_does_not_load_pydantic():
    """pydantic describes the gateway's shapes (server/schemas.py) but is never part of importing the library."""
    import subprocess
    import sys

    code = "import llm_connect, sys; assert 'pydantic' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_seed_timeout_name_is_the_same_class():
    assert LLMTimeout is LLMTimeoutError
    assert issubclass(LLMTimeoutError, LLMError)


def test_errors_survive_pickling_with_their_fields():
    err = LLMRateLimitError("slow down", retry_after=2.5, provider="openai", model="m", status_code=429)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is LLMRateLimitError
    assert (back.retry_after, back.provider, back.status_code) == (2.5, "openai", 429)
    assert "slow down" in str(back) and "HTTP 429" in str(back)


def test_sync_and_async_paths_agree():
    sync_a = create_adapter("fake:m", replies=["alpha beta gamma"])
    async_a = create_adapter("fake:m", replies=["alpha beta gamma"])
    r1 = sync_a.execute_prompt("hello there", RunConfig(max_tokens=50))
    r2 = asyncio.run(async_a.async_execute_prompt("hello there", RunConfig(max_tokens=50)))
    for field in ("text", "model", "provider", "usage", "finish_reason", "cost_usd"):
        assert getattr(r1, field) == getattr(r2, field), field
    s1 = list(create_adapter("fake:m", replies=["alpha beta gamma"]).stream("hello there"))

    async def collect():
        return [c async for c in create_adapter("fake:m", replies=["alpha beta gamma"]).astream("hello there")]

    s2 = asyncio.run(collect())
    assert [(c.text, c.finish_reason, c.usage) for c in s1] == [(c.text, c.finish_reason, c.usage) for c in s2]
    assert "".join(c.text for c in s1) == r1.text
    assert s1[-1].usage == r1.usage and s1[-1].finish_reason == "stop"


def test_sync_facade_inside_running_loop_raises_instead_of_deadlocking():
    a = create_adapter("fake:m")

    async def inside():
        with pytest.raises(LLMUsageError, match="async_execute_prompt"):
            a.execute_prompt("hi")
        with pytest.raises(LLMUsageError):
            next(iter(a.stream("hi")))

    asyncio.run(inside())


def test_sync_facade_from_many_threads():
    a = create_adapter("fake:m", latency=0.01)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            results.append(a.execute_prompt(f"n{i}").text)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == sorted(f"echo: n{i}" for i in range(64))
    assert time.perf_counter() - start < 2.0  # concurrent on the shared loop, not 64 x 10 ms serialised


class SyncOnly(LLMAdapter):
    """A third-party adapter that implements only the sync method."""

    provider = "third-party"
    model = "sync-only"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def execute_prompt(self, prompt, config=None):
        time.sleep(self.delay)
        return LLMResponse(text=f"sync says {prompt}", model=self.model, provider=self.provider, usage=Usage(1, 2))


async def test_executor_fallback_for_sync_only_adapters():
    adapters = [SyncOnly(0.2) for _ in range(4)]
    start = time.perf_counter()
    out = await asyncio.gather(*[a.async_execute_prompt("x", RunConfig()) for a in adapters])
    assert [r.text for r in out] == ["sync says x"] * 4
    assert time.perf_counter() - start < 0.6  # in parallel, not 4 x 0.2 s
    chunks = [c async for c in SyncOnly().astream("y")]
    assert chunks[0].text == "sync says y" and chunks[-1].usage == Usage(1, 2)


class SyncReasoner(SyncOnly):
    """A sync-only adapter whose answers carry reasoning text and kept provider fields."""

    def execute_prompt(self, prompt, config=None):
        resp = super().execute_prompt(prompt, config)
        resp.reasoning, resp.provider_fields = "first, think", {"citations": ["https://example.com"]}
        return resp


async def test_the_default_stream_keeps_reasoning_and_provider_fields():
    chunks = [c async for c in SyncReasoner().astream("y")]
    assert (chunks[0].reasoning, chunks[0].text) == ("first, think", "sync says y")
    assert chunks[-1].provider_fields == {"citations": ["https://example.com"]}


async def test_executor_fallback_honours_timeout():
    with pytest.raises(LLMTimeoutError):
        await SyncOnly(1.0).async_execute_prompt("x", RunConfig(timeout=0.1))


def test_an_adapter_must_implement_one_of_the_two():
    with pytest.raises(TypeError, match="must implement"):

        class Nothing(LLMAdapter):
            pass


async def test_gather_over_four_adapters_takes_one_latency():
    adapters = [create_adapter("fake:m", latency=0.3) for _ in range(4)]
    start = time.perf_counter()
    out = await asyncio.gather(*[a.async_execute_prompt("go", RunConfig()) for a in adapters])
    assert len(out) == 4 and all(r.text == "echo: go" for r in out)
    assert time.perf_counter() - start < 0.6


async def test_timeout_propagates_from_runconfig():
    a = create_adapter("fake:m", replies=[FakeReply(text="late", latency=5)])
    start = time.perf_counter()
    with pytest.raises(LLMTimeoutError) as info:
        await a.async_execute_prompt("x", RunConfig(timeout=0.2))
    assert time.perf_counter() - start < 1.0
    assert info.value.provider == "fake"


async def test_scripted_errors_are_raised_with_provider_filled_in():
    a = create_adapter("fake:m", replies=[FakeReply(error=LLMRateLimitError("busy", retry_after=1.0))])
    with pytest.raises(LLMRateLimitError) as info:
        await a.async_execute_prompt("x")
    assert info.value.retry_after == 1.0 and info.value.provider == "fake"


@pytest.mark.parametrize(
    "prompt",
    [[], [{"content": "no role"}], [{"role": "wizard", "content": "x"}], [{"role": "user", "content": 5}], 42],
)
def test_bad_prompts_are_typed_errors(prompt):
    with pytest.raises(LLMInvalidRequestError):
        create_adapter("fake:m").execute_prompt(prompt)


@pytest.mark.parametrize("kw", [{"max_tokens": 0}, {"max_tokens": -3}, {"timeout": 0}, {"temperature": 3}])
def test_bad_run_config_is_a_typed_error(kw):
    with pytest.raises(LLMInvalidRequestError):
        RunConfig(**kw)


def test_run_config_replace_copies_and_validates_the_result_once():
    base = RunConfig(model_name="m", max_tokens=5, metadata={"a": 1}, tenant_id="t")
    copy = base.replace(temperature=0.5, timeout=2.0)
    assert (copy.model_name, copy.max_tokens, copy.temperature, copy.timeout, copy.tenant_id) == ("m", 5, 0.5, 2.0, "t")
    assert base.temperature is None and copy.metadata is base.metadata  # shallow: trackers and dicts are shared
    with pytest.raises(LLMInvalidRequestError):
        base.replace(max_tokens=0)
    with pytest.raises(TypeError, match="no field"):
        base.replace(colour="blue")
    broken = RunConfig()
    broken.temperature = 2.5  # set after construction, bypassing validation
    assert broken.replace(temperature=1.0).temperature == 1.0  # a replace may repair it


def test_messages_and_system_prompt():
    a = create_adapter("fake:m")
    a.execute_prompt(
        [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}, {"role": "user", "content": "x"}],
        RunConfig(system_prompt="be brief"),
    )
    roles = [m.role for m in a.calls[-1]]
    assert roles == ["system", "user", "assistant", "user"] and a.calls[-1][0].text == "be brief"


def test_registry_errors_are_clear(monkeypatch):
    with pytest.raises(LLMConfigurationError, match="unknown provider 'nope'"):
        create_adapter("nope:model")
    with pytest.raises(LLMConfigurationError):
        create_adapter("")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(LLMConfigurationError, match="ANTHROPIC_API_KEY") as info:
        create_adapter("anthropic:claude-haiku-4-5")
    assert "sk-" not in str(info.value)


def test_keys_never_appear_in_repr(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value-123")
    a = create_adapter("openai:gpt-4o-mini")
    assert "sk-secret" not in repr(a) and "sk-secret" not in str(vars(a).get("api_base"))


def test_api_base_conventions():
    assert create_adapter("openai:gpt-4o-mini", api_base="http://h:1/v1/", api_key="k").api_base == "http://h:1/v1"
    assert create_adapter("anthropic:claude-haiku-4-5", api_base="http://h:1", api_key="k").api_base == "http://h:1"
    assert create_adapter("ollama:llama3:8b").model == "llama3:8b"


async def test_get_llm_is_an_llm_backend(monkeypatch):
    monkeypatch.setenv("LLM_CONNECT_MODEL", "fake:backend")
    llm = get_llm()
    assert isinstance(llm, LLMBackend)
    result = await llm.generate("ping")
    assert result.success and result.text == "echo: ping" and result.model == "backend"
    assert result.extra["usage"]["total_tokens"] > 0


async def test_generate_reports_empty_output_as_soft_failure_and_times_out(monkeypatch):
    monkeypatch.setenv("LLM_CONNECT_MODEL", "fake:backend")
    llm = get_llm(replies=["   "])
    result = await llm.generate("ping")
    assert result.success is False
    slow = get_llm(replies=[FakeReply(text="x", latency=3)], timeout=0.2)
    with pytest.raises(LLMTimeout):
        await slow.generate("ping")


def test_default_spec_without_keys_is_local(monkeypatch):
    from llm_connect.registry import default_spec

    env = {"PATH": "/usr/bin"}
    assert default_spec(env) == "local"
    assert default_spec({"OPENAI_API_KEY": "x"}) == "openai:gpt-4o-mini"
    assert default_spec({"LLM_CONNECT_MODEL": "fake:z", "OPENAI_API_KEY": "x"}) == "fake:z"


def test_every_public_module_imports():
    for mod in (
        "adapter",
        "errors",
        "exceptions",
        "types",
        "transport",
        "registry",
        "providers.http",
        "providers.fake",
    ):
        importlib.import_module(f"llm_connect.{mod}")


def test_lazy_export_table_matches_all():
    assert sorted(llm_connect._EXPORTS) == llm_connect.__all__


def test_repeated_asyncio_run_does_not_pile_up_sessions_or_sockets():
    import os

    from llm_connect import Transport
    from llm_connect.testing import MockServer

    with MockServer.run_in_thread() as mock:
        a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")
        asyncio.run(a.async_execute_prompt("warm"))
        fds = len(os.listdir("/proc/self/fd"))
        for _ in range(50):
            asyncio.run(a.async_execute_prompt("hi"))
        assert len(Transport.default()._sessions) <= 1
        time.sleep(0.5)  # the in-process mock server closes its side of each dropped connection
        assert len(os.listdir("/proc/self/fd")) <= fds + 4


async def test_provider_cookies_are_not_replayed_on_later_calls(http_route):
    """One shared HTTP session serves every caller: a cookie set by a provider's edge must not ride along on
    the next tenant's request."""
    from aiohttp import web

    from llm_connect import Transport

    seen: list[str | None] = []

    async def chat(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        resp = web.json_response(
            {
                "id": f"c{len(seen)}",
                "object": "chat.completion",
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )
        resp.set_cookie("__cf_bm", "edge-session-of-the-first-caller")
        return resp

    base = await http_route("/v1/chat/completions", chat)
    # a host name: aiohttp's default jar would ignore cookies from a bare IP address
    a = create_adapter("openai:gpt-4o-mini", api_base=base.replace("127.0.0.1", "localhost") + "/v1", api_key="k")
    try:
        for _ in range(3):
            assert (await a.async_execute_prompt("hi")).text == "ok"
        assert seen == [None, None, None]
    finally:
        await Transport.default().aclose()


def test_sync_api_works_in_a_forked_child(in_fork):
    a = create_adapter("fake:m")
    assert a.execute_prompt("parent").text == "echo: parent"
    # the parent's loop thread does not exist in the child
    assert in_fork(lambda: a.execute_prompt("child").text) == "echo: child"


@pytest.mark.parametrize(
    "kw",
    [
        {"stop": 5},
        {"response_format": "json"},
        {"tools": {"a": 1}},
        {"tools": ["x"]},
        {"extra_body": [1]},
        {"max_tokens": True},
        {"metadata": [1]},
    ],
)
def test_wrongly_typed_run_config_fields_are_typed_errors(kw):
    with pytest.raises(LLMInvalidRequestError):
        RunConfig(**kw)


def test_content_parts_must_be_parts():
    with pytest.raises(LLMInvalidRequestError, match=r"content\[0\]"):
        create_adapter("fake:m").execute_prompt([{"role": "user", "content": ["hello"]}])


def test_unknown_options_are_configuration_errors(monkeypatch):
    with pytest.raises(LLMConfigurationError):
        create_adapter("fake:m", no_such_option=1)
    monkeypatch.setenv("LLM_CONNECT_MODEL", "fake:m")
    for bad in ("0", "-5", "soon"):
        monkeypatch.setenv("LLM_CONNECT_TIMEOUT", bad)
        with pytest.raises(LLMConfigurationError, match="LLM_CONNECT_TIMEOUT"):
            get_llm()


def test_run_config_metadata_is_bounded_with_a_typed_error():
    from llm_connect import LLMInvalidRequestError
    from llm_connect.types import METADATA_MAX_DEPTH, METADATA_MAX_KEYS

    deep: dict = {"leaf": 1}
    for _ in range(299):
        deep = {"n": deep}
    for bad, limit in [
        (deep, f"{METADATA_MAX_DEPTH} levels"),
        ({f"k{i}": i for i in range(METADATA_MAX_KEYS + 1)}, f"{METADATA_MAX_KEYS} keys"),
        ({"blob": "x" * 20_000}, "16384"),
        ({"big": 2**70}, "JSON"),
    ]:
        with pytest.raises(LLMInvalidRequestError, match=limit):
            RunConfig(metadata=bad)
        with pytest.raises(LLMInvalidRequestError, match=limit):
            RunConfig().replace(metadata=bad)
    ok: dict = {"leaf": 1}
    for _ in range(METADATA_MAX_DEPTH - 1):
        ok = {"n": ok}
    assert RunConfig(metadata=ok).metadata == ok
