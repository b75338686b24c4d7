"""The default exporter for real: a gateway process with ``tracing: {enabled: true}`` (exporter otlp, OTLP/HTTP)
sends its spans to a collector over loopback. The collector here is a small HTTP server that decodes the
``ExportTraceServiceRequest`` protobuf bodies as an OpenTelemetry Collector's OTLP receiver does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="pip install 'llm-connect[otel]'")

from llm_connect.testing import MockServer
from server.conftest import GatewayProc, http

from .conftest import ACME_KEY, gateway_config
from .otlp_collector import Collector

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    with MockServer.run_in_thread() as srv:
        yield srv


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


def _gateway(mock: MockServer, tmp_path: Path, collector: Collector, **env: str) -> GatewayProc:
    tracing = {"enabled": True, "service_name": "gw-otlp-test", "endpoint": collector.url}
    cfg = gateway_config(mock, tmp_path, tracing=tracing)
    return GatewayProc(cfg, tmp_path, name="gw-otlp", env=env).start()


def _chat(gw: GatewayProc, **headers: str) -> tuple[int, dict[str, Any]]:
    body = {"model": "main", "messages": [{"role": "user", "content": "export this"}], "max_tokens": 20}
    status, _, raw = http(
        "POST", gw.url + "/v1/chat/completions", body, headers={"Authorization": f"Bearer {ACME_KEY}", **headers}
    )
    return status, json.loads(raw)


def test_spans_reach_an_otlp_collector_with_their_attributes(mock, tmp_path, collector) -> None:
    # a short batch delay, and a header as a hosted collector's key is passed (the exporter's own variables)
    gw = _gateway(mock, tmp_path, collector, OTEL_BSP_SCHEDULE_DELAY="50", OTEL_EXPORTER_OTLP_HEADERS="x-otlp-key=k1")
    try:
        status, answer = _chat(gw, traceparent=f"00-{TRACE_ID}-00f067aa0ba902b7-01")
        assert status == 200, answer
        spans = collector.wait(2)
    finally:
        gw.stop()
    server = next(s for s in spans if s["name"] == "POST /v1/chat/completions")
    attempt = next(s for s in spans if s["name"] == "chat gpt-main")
    assert server["resource"]["service.name"] == "gw-otlp-test"
    assert server["trace_id"] == attempt["trace_id"] == TRACE_ID  # the caller's trace, continued
    assert server["parent"] == "00f067aa0ba902b7" and attempt["parent"] == server["span_id"]
    assert server["kind"] == 2 and attempt["kind"] == 3  # SPAN_KIND_SERVER, SPAN_KIND_CLIENT
    a = attempt["attributes"]
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.usage.input_tokens"] == answer["usage"]["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == answer["usage"]["completion_tokens"]
    assert a["gen_ai.response.finish_reasons"] == [answer["choices"][0]["finish_reason"]]
    assert a["llm_connect.tenant"] == "acme"
    assert all(h.get("x-otlp-key") == "k1" for h in collector.headers)


def test_spans_still_in_the_batch_are_exported_when_the_gateway_stops(mock, tmp_path, collector) -> None:
    # the default 5 s batch delay: nothing is exported before the stop, everything at it
    gw = _gateway(mock, tmp_path, collector)
    try:
        for _ in range(3):
            status, answer = _chat(gw)
            assert status == 200, answer
        assert collector.wait(1, timeout=0.3) == []
    finally:
        gw.stop()
    spans = collector.wait(7, timeout=5)  # and the readiness probe's GET /health
    names = sorted(s["name"] for s in spans if s["name"] != "GET /health")
    assert names == ["POST /v1/chat/completions"] * 3 + ["chat gpt-main"] * 3
