"""Library calls (``execute_prompt``, ``async_execute_prompt``, ``astream``, ``embed``) on an adapter or a router
get an INTERNAL root span and a span per upstream attempt; with no Tracing on the config nothing of
OpenTelemetry is imported at all (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed: pip install 'llm-connect[otel]'")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_connect import Router, RunConfig, create_adapter
from llm_connect.providers.fake import FakeAdapter
from llm_connect.testing import MockServer
from llm_connect.tracing import Tracing
from llm_connect.usage import UsageTracker

from .conftest import by_kind

KEY = "sk-library-tracing-123456"


@pytest.fixture
def own() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    """A Tracing on a tracer provider of its own (not the global one)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider), exporter
    provider.shutdown()


def _router(mock: MockServer) -> Router:
    return Router(
        {
            "main": [{"model": "openai:gpt-lib", "api_base": mock.openai_base, "api_key": KEY}],
            "backup": [{"model": "anthropic:claude-lib", "api_base": mock.anthropic_base, "api_key": KEY}],
        },
        fallbacks={"main": ["backup"]},
        num_retries=0,
    )


def test_sync_router_call_with_a_fallback(own, mock) -> None:
    tracing, exporter = own
    mock.script(model="gpt-lib", status=429, error_message="slow down")
    usage = UsageTracker()
    events: list[Any] = []
    usage.subscribe(events.append)
    resp = _router(mock).execute_prompt(
        "hello", RunConfig(model_name="main", tracing=tracing, tenant_id="t1", usage_tracker=usage)
    )
    got = exporter.get_finished_spans()
    [root] = by_kind(got, "INTERNAL")
    first, second = sorted(by_kind(got, "CLIENT"), key=lambda s: s.start_time)
    assert root.name == "chat main" and root.parent is None
    assert first.parent.span_id == second.parent.span_id == root.context.span_id
    assert first.attributes["error.type"] == "LLMRateLimitError" and first.status.status_code.name == "ERROR"
    assert second.attributes["llm_connect.fallback"] is True and second.attributes["llm_connect.attempt"] == 2
    assert second.attributes["gen_ai.provider.name"] == "anthropic"
    ok = next(e for e in events if e.success)
    assert second.attributes["gen_ai.usage.input_tokens"] == ok.input_tokens == resp.usage.input_tokens
    assert second.attributes["gen_ai.usage.output_tokens"] == ok.output_tokens == resp.usage.output_tokens
    assert root.attributes["gen_ai.response.model"] == resp.model
    assert root.attributes["llm_connect.attempts"] == 2
    assert root.attributes["llm_connect.tenant"] == "t1"
    assert root.status.status_code.name == "UNSET"


async def test_async_adapter_call_nests_under_the_callers_span(own, mock) -> None:
    tracing, exporter = own
    adapter = create_adapter("openai:gpt-lib", api_base=mock.openai_base, api_key=KEY)
    outer = tracing.tracer.start_span("my job")
    from opentelemetry import trace

    mock.clear_requests()
    with trace.use_span(outer, end_on_exit=True):
        resp = await adapter.async_execute_prompt("hi", RunConfig(tracing=tracing, max_tokens=30, temperature=0.5))
    got = exporter.get_finished_spans()
    root = next(s for s in got if s.name == "chat gpt-lib" and s.kind.name == "INTERNAL")
    [attempt] = by_kind(got, "CLIENT")
    assert root.parent.span_id == outer.get_span_context().span_id
    assert attempt.parent.span_id == root.context.span_id
    assert attempt.attributes["gen_ai.request.max_tokens"] == 30
    assert attempt.attributes["gen_ai.request.temperature"] == pytest.approx(0.5)
    assert attempt.attributes["gen_ai.response.id"] == resp.request_id
    traceparent = mock.requests[-1]["headers"]["traceparent"]
    assert traceparent.split("-")[1] == format(outer.get_span_context().trace_id, "032x")
    assert traceparent.split("-")[2] == format(attempt.context.span_id, "016x")
    await adapter.aclose()


async def test_stream_root_ends_after_the_last_chunk(own, mock) -> None:
    tracing, exporter = own
    chunks = [c async for c in _router(mock).astream("stream me", RunConfig(model_name="main", tracing=tracing))]
    final = chunks[-1]
    got = exporter.get_finished_spans()
    [root] = by_kind(got, "INTERNAL")
    [attempt] = by_kind(got, "CLIENT")
    assert attempt.parent.span_id == root.context.span_id
    assert attempt.attributes["llm_connect.streamed"] is True
    assert attempt.attributes["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert root.attributes["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert root.end_time >= attempt.end_time


async def test_stream_closed_early_is_not_an_error(own, mock) -> None:
    tracing, exporter = own
    mock.script(model="gpt-lib", text=" ".join(f"w{i}" for i in range(100)), chunk_delay=0.005)
    agen = _router(mock).astream("stream me", RunConfig(model_name="main", tracing=tracing))
    async for chunk in agen:
        if chunk.text:
            break
    await agen.aclose()
    [attempt] = by_kind(exporter.get_finished_spans(), "CLIENT")
    assert attempt.status.status_code.name == "UNSET"
    assert attempt.attributes["llm_connect.stream.closed_early"] is True
    assert attempt.attributes["llm_connect.estimated"] is True  # billed on what was seen


def test_sync_calls_nest_under_the_callers_span(own, mock) -> None:
    """The sync facade runs the call on its own loop thread; the caller's current span is still the parent."""
    from opentelemetry import trace

    tracing, exporter = own
    adapter = create_adapter("openai:gpt-lib", api_base=mock.openai_base, api_key=KEY)
    outer = tracing.tracer.start_span("sync job")
    with trace.use_span(outer, end_on_exit=True):
        adapter.execute_prompt("hi", RunConfig(tracing=tracing))
        list(adapter.stream("hi", RunConfig(tracing=tracing)))
        adapter.embed("hi", RunConfig(tracing=tracing))
        _router(mock).execute_prompt("hi", RunConfig(model_name="main", tracing=tracing))
    got = exporter.get_finished_spans()
    roots = [s for s in got if s.kind.name == "INTERNAL" and s.name != "sync job"]
    assert len(roots) == 4
    assert {r.parent.span_id for r in roots} == {outer.get_span_context().span_id}
    assert len({s.context.trace_id for s in got}) == 1


def test_embed_spans(own, mock) -> None:
    tracing, exporter = own
    adapter = create_adapter("openai:text-embedding-3-small", api_base=mock.openai_base, api_key=KEY)
    resp = adapter.embed(["a b c", "d e"], RunConfig(tracing=tracing))
    got = exporter.get_finished_spans()
    [root] = by_kind(got, "INTERNAL")
    [attempt] = by_kind(got, "CLIENT")
    assert root.name == attempt.name == "embeddings text-embedding-3-small"
    assert attempt.attributes["gen_ai.operation.name"] == "embeddings"
    assert attempt.attributes["gen_ai.usage.input_tokens"] == resp.usage.input_tokens
    assert attempt.attributes["llm_connect.cost_usd"] == pytest.approx(float(resp.cost_usd))


def test_in_process_model_attempt_is_internal(own) -> None:
    tracing, exporter = own
    FakeAdapter("echo").execute_prompt("hi", RunConfig(tracing=tracing))
    got = exporter.get_finished_spans()
    assert [s.kind.name for s in got] == ["INTERNAL", "INTERNAL"]
    attempt = next(s for s in got if s.parent is not None)
    assert attempt.attributes["gen_ai.provider.name"] == "fake"
    assert "server.address" not in attempt.attributes


def test_a_failed_library_call_is_an_error_on_its_root(own, mock) -> None:
    tracing, exporter = own
    from llm_connect import LLMError

    mock.script(model="gpt-lib", status=400, error_message="bad request")
    adapter = create_adapter("openai:gpt-lib", api_base=mock.openai_base, api_key=KEY)
    with pytest.raises(LLMError):
        adapter.execute_prompt("hi", RunConfig(tracing=tracing))
    got = exporter.get_finished_spans()
    assert {s.status.status_code.name for s in got} == {"ERROR"}
    assert {s.attributes["error.type"] for s in got} == {"LLMInvalidRequestError"}


def test_untraced_calls_import_nothing_of_opentelemetry(mock) -> None:
    """A gateway request (over HTTP) and library calls with tracing off, in a fresh interpreter: no module of
    opentelemetry nor llm_connect.tracing is loaded."""
    script = textwrap.dedent(
        f"""
        import json, sys, threading, time, urllib.request, socket
        import uvicorn
        from llm_connect import RunConfig, create_adapter
        from llm_connect.config import parse_config
        from llm_connect.server.app import Gateway

        cfg = parse_config({{
            "ledger": "off", "responses": "off",
            "router": {{"groups": {{"main": [{{"model": "openai:gpt-lib", "api_base": "{mock.openai_base}",
                                              "api_key": "{KEY}"}}]}}}},
        }})
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        server = uvicorn.Server(uvicorn.Config(Gateway(cfg), host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.01)
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        for stream in (False, True):
            body = json.dumps({{"model": "main", "stream": stream,
                                "messages": [{{"role": "user", "content": "hi"}}]}}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{{port}}/v1/chat/completions", data=body,
                                         headers={{"Content-Type": "application/json", "traceparent": parent}})
            assert urllib.request.urlopen(req, timeout=20).status == 200
        adapter = create_adapter("openai:gpt-lib", api_base="{mock.openai_base}", api_key="{KEY}")
        adapter.execute_prompt("hi", RunConfig())
        list(adapter.stream("hi"))
        adapter.embed("hi")
        server.should_exit = True
        print(json.dumps(sorted(m for m in sys.modules if m.startswith(("opentelemetry", "llm_connect.tracing")))))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LLM_CONNECT_HOME": os.environ.get("LLM_CONNECT_HOME", "/tmp/llmc-tracing-home")},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
