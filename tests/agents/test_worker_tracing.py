"""Trace context through Celery with real processes: this process (the sender) opens a span and sends
``handle_message``; a real worker (threads pool) continues the trace from the task's headers and calls a real
gateway process, which calls the shipped mock provider. The provider must see the sender's trace id in its
``traceparent``, and the worker and the gateway (console exporter) must have recorded their spans in that trace."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed: pip install 'llm-connect[otel]'")

from llm_connect.testing import MockServer

from .conftest import REDIS_URL, Session, Workers, free_port, needs_redis, start_gateway_process, stop, wait_result

pytestmark = [needs_redis, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def traced_config(session: Session, mock: MockServer) -> tuple[Path, str, Path]:
    """A config with tracing on (console exporter) and a gateway process serving it: (config, url, its log)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cfg = {
        "server": {"host": "127.0.0.1", "port": port},
        "redis": {"url": REDIS_URL, "namespace": f"{session.namespace}-trace"},
        "ledger": {"url": "off"},
        "router": {
            "groups": {
                "traced": [{"model": "openai:mock-traced", "api_base": mock.openai_base, "api_key": "sk-test-traced"}]
            },
            "num_retries": 0,
        },
        "agents": {
            "mode": "gateway",
            "gateway_url": url,
            "broker_url": REDIS_URL,
            "queue": session.queue("traced"),
            "timeout": 20,
            "result_expires_seconds": 600,
            "personas": {
                "tracer": {"role": "assistant", "model_preference": "traced"},
                "boss": {"role": "planner", "model_preference": "traced", "may_delegate_to": ["helper"]},
                "helper": {"role": "helper", "model_preference": "traced"},
            },
        },
        "tracing": {"enabled": True, "exporter": "console", "service_name": "llmc-test"},
    }
    path = session.tmp / "traced.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    log = session.tmp / "traced-gateway.log"
    start_gateway_process(session, path, port, log)
    return path, url, log


@pytest.fixture
def traced_workers(
    traced_config: tuple[Path, str, Path], start_workers: Callable[..., Workers]
) -> Callable[[str, int], Workers]:
    """``traced_workers(name, concurrency)``: real workers on a queue of their own, with the traced config."""
    path = traced_config[0]
    return lambda name, concurrency: start_workers(name, concurrency=concurrency, env={"LLM_CONNECT_CONFIG": str(path)})


def _message(sender: dict[str, str], content: str, **extra: Any) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "channel": "slack", "sender": sender, "content": content, **extra}


def _upstream(mock: MockServer) -> list[dict[str, Any]]:
    """The requests the provider got for the traced group."""
    return [r for r in mock.requests if r.get("model") == "mock-traced"]


def _trace_ids(requests: list[dict[str, Any]]) -> list[str]:
    """The trace id of each request's ``traceparent`` (``version-trace id-parent id-flags``)."""
    return [r["headers"]["traceparent"].split("-")[1] for r in requests]


def _trace_id(span: Any) -> str:
    return format(span.get_span_context().trace_id, "032x")


def _wait_for(path_texts: Callable[[], str], needles: list[str], timeout: float = 20.0) -> str:
    """The text once every needle is in it (the console exporter writes a batch every few seconds)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = path_texts()
        if all(n in text for n in needles):
            return text
        time.sleep(0.2)
    missing = [n for n in needles if n not in text]
    raise AssertionError(f"not found within {timeout} s: {missing}\n{text[-4000:]}")


def test_the_worker_continues_the_senders_trace(
    traced_config: tuple[Path, str, Path],
    traced_workers: Callable[[str, int], Workers],
    celery_client: Any,
    mock: MockServer,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from llm_connect.agents.tasks import handle_message

    gateway_log = traced_config[2]
    workers = traced_workers("traced", 2)
    tracer = TracerProvider().get_tracer("sender")
    msg = _message({"id": "U1", "name": "Jo"}, "trace this please", thread_id=f"th-{uuid.uuid4().hex[:8]}")
    with tracer.start_as_current_span("sender job") as span:
        result = handle_message.apply_async(args=(msg,), kwargs={"agent": "tracer"}, queue=workers.queue)
    reply = wait_result(result, 60, workers)
    assert reply["status"] == "ok", reply
    trace_id = _trace_id(span)

    # the provider saw a request of this trace: sender -> task headers -> worker -> gateway -> upstream
    sent = _upstream(mock)
    assert sent, "the upstream was not called"
    assert _trace_ids(sent) == [trace_id] * len(sent)

    # the worker's CONSUMER span and the gateway's spans are in that trace (the console exporter's JSON)
    text = _wait_for(workers.log_text, ['"name": "process llm_connect.agents.handle_message"', f"0x{trace_id}"])
    assert '"kind": "SpanKind.CONSUMER"' in text
    gw = _wait_for(gateway_log.read_text, ['"name": "POST /complete"', '"name": "chat mock-traced"', f"0x{trace_id}"])
    assert '"gen_ai.provider.name": "openai"' in gw


def test_a_task_sent_outside_any_span_starts_its_own_trace(
    traced_workers: Callable[[str, int], Workers], celery_client: Any, mock: MockServer
) -> None:
    from llm_connect.agents.tasks import handle_message

    workers = traced_workers("traced2", 1)
    mock.clear_requests()
    msg = _message({"id": "U2"}, "no parent here")
    reply = wait_result(handle_message.apply_async(args=(msg,), kwargs={"agent": "tracer"}, queue=workers.queue), 60)
    assert reply["status"] == "ok", reply
    [sent] = _upstream(mock)
    version, trace_id, _, _ = sent["headers"]["traceparent"].split("-")
    assert version == "00" and int(trace_id, 16) != 0


def test_a_delegation_chain_stays_in_the_senders_trace(
    traced_workers: Callable[[str, int], Workers], celery_client: Any, mock: MockServer
) -> None:
    """The chain's next task is sent by the worker while the first task's span is current: one trace."""
    from opentelemetry.sdk.trace import TracerProvider

    from llm_connect.agents.tasks import delegation_chain

    workers = traced_workers("traced3", 2)
    mock.clear_requests()
    msg = _message({"id": "U3"}, "plan and delegate")
    with TracerProvider().get_tracer("sender").start_as_current_span("sender chain") as span:
        result = delegation_chain(msg, ["boss", "helper"], [400], queue=workers.queue)
    reply = wait_result(result, 60, workers)
    assert reply["status"] == "ok", reply
    sent = _upstream(mock)
    assert len(sent) == 2
    assert set(_trace_ids(sent)) == {_trace_id(span)}


def test_a_stopping_worker_exports_the_spans_still_in_its_batch(
    session: Session,
    traced_config: tuple[Path, str, Path],
    start_workers: Callable[..., Workers],
    celery_client: Any,
) -> None:
    """The default OTLP exporter batches spans for 5 s: a worker stopped right after its task sends them at stop —
    here a prefork worker, whose pool child ends with os._exit (no exit hooks run)."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from llm_connect.agents.tasks import handle_message
    from tracing.otlp_collector import Collector

    with Collector() as collector:
        cfg = yaml.safe_load(traced_config[0].read_text())
        cfg["tracing"] = {"enabled": True, "service_name": "llmc-worker-otlp", "endpoint": collector.url}
        path = session.tmp / "traced-otlp.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        workers = start_workers("traced-otlp", concurrency=1, env={"LLM_CONNECT_CONFIG": str(path)}, pool="prefork")
        proc = session.procs[-1]
        msg = _message({"id": "U4"}, "export me at stop")
        reply = wait_result(
            handle_message.apply_async(args=(msg,), kwargs={"agent": "tracer"}, queue=workers.queue), 60
        )
        assert reply["status"] == "ok", reply
        assert collector.wait(1, timeout=0.3) == []  # still in the batch
        stop(proc)
        spans = collector.wait(1, timeout=5)
    assert [s["name"] for s in spans] == ["process llm_connect.agents.handle_message"], workers.log_text()[-3000:]
    assert spans[0]["resource"]["service.name"] == "llmc-worker-otlp"
