"""Gateway spans over real HTTP: a SERVER span per request and a CLIENT span per upstream attempt (the shipped
mock server as the provider), read back from the SDK's in-memory exporter. Token counts and costs on the spans
are checked against the ledger rows of the same calls."""

from __future__ import annotations

import json
import socket
import time
from decimal import Decimal
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed: pip install 'llm-connect[otel]'")

from .conftest import by_kind, wait_spans

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def _chat(model: str = "main", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "tell me about tracing"}], **extra}


def _hex(n: int, width: int) -> str:
    return format(n, f"0{width}x")


def _server_and_attempt(spans: Any, timeout: float = 5.0) -> tuple[Any, Any]:
    """The SERVER span and the one CLIENT span of a request that made one upstream attempt."""
    got = wait_spans(spans, 2, timeout=timeout)
    [server] = by_kind(got, "SERVER")
    [attempt] = by_kind(got, "CLIENT")
    return server, attempt


def _sent_upstream(mock: Any) -> dict[str, Any]:
    """The one request the provider got for group ``main``."""
    [sent] = [r for r in mock.requests if r.get("model") == "gpt-main"]
    return sent


def test_chat_request_has_a_server_span_and_an_attempt_span_matching_the_ledger(start_gateway, spans, mock) -> None:
    gw = start_gateway()
    status, _, body = gw.post("/v1/chat/completions", _chat(max_tokens=50, temperature=0.3))
    assert status == 200, body
    answer = json.loads(body)
    server, attempt = _server_and_attempt(spans)

    assert server.name == "POST /v1/chat/completions"
    sa = dict(server.attributes)
    assert sa["http.request.method"] == "POST"
    assert sa["http.route"] == "/v1/chat/completions"
    assert sa["http.response.status_code"] == 200
    assert sa["gen_ai.operation.name"] == "chat"
    assert sa["gen_ai.request.model"] == "main"
    assert sa["llm_connect.tenant"] == "acme"
    assert sa["llm_connect.attempts"] == 1
    assert server.status.status_code.name == "UNSET"

    # the attempt: a child of the request's span, in the same trace
    assert attempt.parent is not None and attempt.parent.span_id == server.context.span_id
    assert attempt.context.trace_id == server.context.trace_id
    assert attempt.name == "chat gpt-main"
    aa = dict(attempt.attributes)
    assert aa["gen_ai.operation.name"] == "chat"
    assert aa["gen_ai.provider.name"] == "openai"
    assert aa["gen_ai.request.model"] == "gpt-main"
    assert aa["gen_ai.response.model"] == answer["model"]
    assert aa["gen_ai.response.id"] == json.loads(gw.ledger_rows()[0]["metadata"])["upstream_request_id"]
    assert aa["gen_ai.request.max_tokens"] == 50
    assert aa["gen_ai.request.temperature"] == pytest.approx(0.3)
    assert list(aa["gen_ai.response.finish_reasons"]) == [answer["choices"][0]["finish_reason"]]
    assert aa["server.address"] == "127.0.0.1" and aa["server.port"] == mock.port
    assert aa["llm_connect.attempt"] == 1 and aa["llm_connect.retries"] == 0 and aa["llm_connect.fallback"] is False
    assert aa["llm_connect.estimated"] is False
    assert aa["llm_connect.tenant"] == "acme"

    # tokens and cost: what the ledger row of this call says, and what the client was told
    [row] = gw.ledger_rows()
    assert aa["gen_ai.usage.input_tokens"] == row["input_tokens"] == answer["usage"]["prompt_tokens"]
    assert aa["gen_ai.usage.output_tokens"] == row["output_tokens"] == answer["usage"]["completion_tokens"]
    assert row["cost_usd"] is not None
    assert aa["llm_connect.cost_usd"] == pytest.approx(float(Decimal(row["cost_usd"])))
    assert sa["llm_connect.cost_usd"] == pytest.approx(float(Decimal(row["cost_usd"])))
    assert sa["gen_ai.usage.input_tokens"] == row["input_tokens"]
    assert sa["gen_ai.usage.output_tokens"] == row["output_tokens"]
    # the budget: the worst case reserved, then settled to the tokens the ledger has
    assert aa["llm_connect.budget.reserved_tokens"] >= row["total_tokens"]
    assert aa["llm_connect.budget.state"] == "settled"
    assert aa["llm_connect.budget.settled_tokens"] == row["total_tokens"]
    assert aa["llm_connect.budget.settled_usd"] == pytest.approx(float(Decimal(row["cost_usd"])))


def test_fallback_records_two_attempts_the_first_an_error(start_gateway, spans, mock) -> None:
    gw = start_gateway()
    mock.script(model="gpt-main", status=503, error_message="overloaded")
    status, _, body = gw.post("/v1/chat/completions", _chat())
    assert status == 200, body
    got = wait_spans(spans, 3)
    [server] = by_kind(got, "SERVER")
    first, second = sorted(by_kind(got, "CLIENT"), key=lambda s: s.start_time)
    for s in (first, second):
        assert s.parent.span_id == server.context.span_id

    assert first.name == "chat gpt-main"
    assert first.status.status_code.name == "ERROR"
    assert first.attributes["error.type"] == "LLMProviderUnavailableError"
    assert first.attributes["llm_connect.attempt"] == 1
    assert first.attributes["llm_connect.fallback"] is False
    assert first.attributes["llm_connect.budget.state"] == "released"

    assert second.name == "chat claude-backup"
    assert second.status.status_code.name == "UNSET"
    assert second.attributes["gen_ai.provider.name"] == "anthropic"
    assert second.attributes["llm_connect.attempt"] == 2
    assert second.attributes["llm_connect.fallback"] is True
    assert second.attributes["llm_connect.model_group"] == "backup"

    sa = dict(server.attributes)
    assert sa["llm_connect.attempts"] == 2
    assert sa["llm_connect.fallback"] is True
    assert sa["gen_ai.provider.name"] == "anthropic"
    rows = gw.ledger_rows()
    ok = [r for r in rows if r["success"]]
    assert len(ok) == 1
    assert second.attributes["gen_ai.usage.input_tokens"] == ok[0]["input_tokens"]
    assert second.attributes["gen_ai.usage.output_tokens"] == ok[0]["output_tokens"]
    assert sa["llm_connect.cost_usd"] == pytest.approx(float(sum(Decimal(r["cost_usd"] or 0) for r in rows)))


def test_failed_request_is_an_error_on_both_spans(start_gateway, spans, mock) -> None:
    gw = start_gateway(
        router={
            "groups": {
                "solo": [{"model": "openai:gpt-main", "api_base": mock.openai_base, "api_key": "sk-solo-123456"}]
            },
            "num_retries": 0,
        }
    )
    mock.script(model="gpt-main", status=500, times=1)
    status, _, _ = gw.post("/v1/chat/completions", _chat("solo"))
    assert status >= 500
    server, attempt = _server_and_attempt(spans)
    assert attempt.status.status_code.name == "ERROR"
    assert server.status.status_code.name == "ERROR"
    assert server.attributes["http.response.status_code"] == status
    assert server.attributes["error.type"] == str(status)


def test_stream_span_ends_when_the_stream_settles(start_gateway, spans) -> None:
    gw = start_gateway()
    status, _, body = gw.post("/v1/chat/completions", _chat(stream=True, stream_options={"include_usage": True}))
    assert status == 200
    events = [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: {")]
    usage = next(e["usage"] for e in events if e.get("usage"))
    server, attempt = _server_and_attempt(spans)
    assert attempt.attributes["llm_connect.streamed"] is True
    assert attempt.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attempt.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attempt.end_time <= server.end_time
    [row] = gw.ledger_rows()
    assert row["streamed"] == 1 and row["output_tokens"] == usage["completion_tokens"]


def test_stream_hang_up_ends_both_spans_with_the_settled_usage(start_gateway, spans, mock) -> None:
    gw = start_gateway()
    mock.script(model="gpt-main", text=" ".join(f"word{i}" for i in range(200)), chunk_delay=0.02)
    body = json.dumps(_chat(stream=True)).encode()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {_key()}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        seen = b""
        while b"data: {" not in seen:
            seen += sock.recv(4096)
    # the client is gone mid-stream: the gateway settles on what was produced, then both spans end
    server, attempt = _server_and_attempt(spans, timeout=10)
    assert server.attributes["http.response.status_code"] in (200, 499)
    deadline = time.monotonic() + 5
    while not gw.ledger_rows() and time.monotonic() < deadline:
        time.sleep(0.02)
    [row] = gw.ledger_rows()
    assert attempt.attributes["gen_ai.usage.output_tokens"] == row["output_tokens"]
    assert attempt.attributes["llm_connect.estimated"] is bool(row["estimated"])
    assert attempt.attributes["llm_connect.budget.state"] == "settled"


def _key() -> str:
    from .conftest import ACME_KEY

    return ACME_KEY


def test_incoming_traceparent_is_the_parent_and_the_upstream_sees_the_attempt(start_gateway, spans, mock) -> None:
    gw = start_gateway()
    mock.clear_requests()
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    status, _, _ = gw.post(
        "/v1/chat/completions", _chat(), headers={"traceparent": traceparent, "tracestate": "vendor=abc"}
    )
    assert status == 200
    server, attempt = _server_and_attempt(spans)
    assert _hex(server.context.trace_id, 32) == TRACE_ID
    assert _hex(server.parent.span_id, 16) == PARENT_ID and server.parent.is_remote
    assert attempt.context.trace_id == server.context.trace_id
    # what the provider received: the attempt's own span as the parent, the same trace, the vendor state
    sent = _sent_upstream(mock)
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    version, trace_id, span_id, _flags = headers["traceparent"].split("-")
    assert (version, trace_id, span_id) == ("00", TRACE_ID, _hex(attempt.context.span_id, 16))
    assert headers["tracestate"] == "vendor=abc"


def test_every_gateway_endpoint_continues_the_incoming_trace(start_gateway, spans) -> None:
    gw = start_gateway()
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    calls = [
        ("/v1/chat/completions", _chat()),
        ("/v1/messages", {"model": "main", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/responses", {"model": "main", "input": "hi"}),
        ("/v1/embeddings", {"model": "emb", "input": ["one", "two"]}),
        ("/execute", {"model": "main", "prompt": "hi"}),
        ("/complete", {"model": "main", "messages": [{"role": "user", "content": "hi"}]}),
    ]
    for path, body in calls:
        spans.clear()
        status, _, text = gw.post(path, body, headers={"traceparent": traceparent})
        assert status == 200, (path, text)
        got = wait_spans(spans, 2)
        [server] = by_kind(got, "SERVER")
        assert server.attributes["http.route"] == path
        assert _hex(server.context.trace_id, 32) == TRACE_ID, path
        attempts = by_kind(got, "CLIENT")
        assert attempts and all(a.parent.span_id == server.context.span_id for a in attempts), path
    # the embedding attempt carries the embeddings operation
    spans.clear()
    gw.post("/v1/embeddings", {"model": "emb", "input": "one"})
    [attempt] = by_kind(wait_spans(spans, 2), "CLIENT")
    assert attempt.name == "embeddings embed-small"
    assert attempt.attributes["gen_ai.operation.name"] == "embeddings"
    assert attempt.attributes["gen_ai.usage.input_tokens"] > 0


def test_upstream_propagation_can_be_turned_off(start_gateway, spans, mock) -> None:
    gw = start_gateway(tracing={"enabled": True, "exporter": "none", "propagate_upstream": False})
    mock.clear_requests()
    assert gw.post("/v1/chat/completions", _chat())[0] == 200
    sent = _sent_upstream(mock)
    assert "traceparent" not in {k.lower() for k in sent["headers"]}
    assert by_kind(wait_spans(spans, 2), "CLIENT")


def test_tracing_off_makes_no_span(start_gateway, spans, mock) -> None:
    gw = start_gateway(tracing={"enabled": False})
    mock.clear_requests()
    assert gw.post("/v1/chat/completions", _chat())[0] == 200
    assert gw.gateway.engine.tracing is None
    time.sleep(0.1)
    assert list(spans.get_finished_spans()) == []
    sent = _sent_upstream(mock)
    assert "traceparent" not in {k.lower() for k in sent["headers"]}
