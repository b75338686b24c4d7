"""UsageEvent: built from a response / an error, JSON-safe round trip."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson

from llm_connect.errors import LLMRateLimitError
from llm_connect.types import LLMResponse, RunConfig, Usage
from llm_connect.usage import Pricing, UsageEvent


def _resp(**kw) -> LLMResponse:
    base = dict(
        text="hi",
        model="gpt-4o-mini",
        provider="openai",
        usage=Usage(input_tokens=10_000, output_tokens=2_000, cache_read_tokens=4_000, reasoning_tokens=100),
        latency_ms=123.4,
        request_id="chatcmpl-1",
    )
    base.update(kw)
    return LLMResponse(**base)


def test_from_response_copies_identity_usage_and_cost() -> None:
    cfg = RunConfig(tenant_id="acme", agent="triager", thread_id="t1", task_type="triage", metadata={"k": "v"})
    ev = UsageEvent.from_response(_resp(cost_usd=Decimal("0.5")), cfg, streamed=True, deployment="openai:gpt-4o-mini")
    assert (ev.provider, ev.model) == ("openai", "gpt-4o-mini")
    assert ev.request_id and ev.request_id != "chatcmpl-1"  # the event's own id; providers may repeat theirs
    assert (ev.tenant_id, ev.agent, ev.thread_id, ev.task_type) == ("acme", "triager", "t1", "triage")
    assert (ev.input_tokens, ev.output_tokens, ev.cache_read_tokens, ev.reasoning_tokens) == (10_000, 2_000, 4_000, 100)
    assert ev.total_tokens == 12_000
    assert ev.cost_usd == Decimal("0.5")
    assert ev.latency_ms == 123.4 and ev.success and ev.error_type is None
    assert ev.streamed and ev.deployment == "openai:gpt-4o-mini"
    assert ev.metadata == {"k": "v", "upstream_request_id": "chatcmpl-1"} and ev.metadata is not cfg.metadata
    assert ev.timestamp.tzinfo is not None and ev.timestamp.utcoffset().total_seconds() == 0
    assert ev.usage == Usage(10_000, 2_000, 4_000, 0, 100)


def test_from_response_prices_when_response_has_no_cost() -> None:
    ev = UsageEvent.from_response(_resp(), RunConfig(), pricing=Pricing())
    assert ev.cost_usd == Decimal("0.0024")
    assert UsageEvent.from_response(_resp(), None).cost_usd is None


def test_every_event_gets_its_own_id_even_when_the_provider_repeats_one() -> None:
    for rid in (None, "same-id-from-a-lazy-server"):
        a = UsageEvent.from_response(_resp(request_id=rid), None)
        b = UsageEvent.from_response(_resp(request_id=rid), None)
        assert a.request_id and b.request_id and a.request_id != b.request_id


def test_failure_events() -> None:
    err = LLMRateLimitError("slow down", provider="anthropic", model="claude-haiku-4-5", request_id="req_9")
    ev = UsageEvent.from_error(err, RunConfig(tenant_id="t"), latency_ms=5)
    assert not ev.success and ev.error_type == "LLMRateLimitError"
    assert (ev.provider, ev.model, ev.tenant_id) == ("anthropic", "claude-haiku-4-5", "t")
    assert ev.metadata["upstream_request_id"] == "req_9" and ev.request_id != "req_9"
    assert ev.total_tokens == 0 and ev.cost_usd is None
    ev2 = UsageEvent.from_response(_resp(), None, success=False, error="cut_off")
    assert not ev2.success and ev2.error_type == "cut_off"


def test_dict_round_trip_is_json_safe() -> None:
    ev = UsageEvent.from_response(
        _resp(cost_usd=Decimal("0.000000150")),
        RunConfig(tenant_id="acme", metadata={"n": 1, "nested": {"a": [1, 2]}}),
        timestamp=datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    )
    d = ev.to_dict()
    assert d["cost_usd"] == "1.50E-7" or Decimal(d["cost_usd"]) == Decimal("0.00000015")
    assert d["timestamp"] == "2025-01-02T03:04:05.678901+00:00"
    back = UsageEvent.from_dict(orjson.loads(orjson.dumps(d)))
    assert back == ev
    assert back.cost_usd == Decimal("0.000000150")


def test_naive_timestamps_are_taken_as_utc() -> None:
    ev = UsageEvent.from_response(_resp(), None, timestamp=datetime(2025, 1, 1, 0, 0))
    assert ev.timestamp == datetime(2025, 1, 1, tzinfo=UTC)
    assert hash(ev)  # frozen and hashable although metadata is a dict
