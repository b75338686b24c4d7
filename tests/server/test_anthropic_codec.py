"""The Anthropic Messages inbound codec as pure functions: translation, validation, rendering, stream events."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest

from llm_connect.types import LLMResponse, StreamChunk, Usage
from llm_connect.wire.inbound import anthropic_messages as codec


def parse(**body):
    return codec.parse_request({"model": "m", "max_tokens": 10, **body}, {})


def events(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for frame in raw.decode().split("\n\n"):
        if frame:
            name, data = frame.split("\n")
            out.append((name.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return out


def test_tool_results_errors_images_and_documents():
    r = parse(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "boom"},
                            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                        ],
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "doc"},
                        "title": "T",
                    },
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "UEs="}},
                ],
            }
        ]
    )
    assert r.messages == [
        {"role": "tool", "tool_call_id": "t1", "content": "Error: boom"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "text", "text": "T\n\ndoc"},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,UEs=", "filename": "document.pdf"}},
            ],
        },
    ]


def test_fields_and_their_translation():
    r = codec.parse_request(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": {"type": "none"},
            "thinking": {"type": "enabled", "budget_tokens": 20000},
            "metadata": {"user_id": "u"},
            "tenant_id": "acme",
            "stream": True,
        },
        {"anthropic-beta": "b1", "anthropic-version": "2023-06-01", "x-app": "cli"},
    )
    assert (r.tool_choice, r.reasoning_effort, r.metadata, r.stream) == ("none", "high", {"user_id": "u"}, True)
    assert r.extensions == {"tenant_id": "acme"} and "tenant_id" not in r.native.body
    assert r.native.headers == {"anthropic-beta": "b1", "anthropic-version": "2023-06-01"}
    assert [codec.effort_for_budget(n) for n in (1024, 4096, 4097, 16384, 16385)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"model": 3}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages.0.content.0"),
        ({"system": [{"type": "image"}]}, "system.0"),
        ({"temperature": 2}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"stop_sequences": "x"}, "stop_sequences"),
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"thinking": {"type": "enabled", "budget_tokens": 10}}, "budget_tokens"),
        ({"metadata": {"user_id": 7}}, "metadata.user_id"),
    ],
)
def test_a_refusal_names_the_field(body, param):
    full = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], **body}
    with pytest.raises(codec.InvalidRequest) as info:
        codec.parse_request({k: v for k, v in full.items() if v is not None}, {})
    assert info.value.param == param and info.value.message.startswith(param)


def test_errors_get_anthropics_status_and_type():
    assert codec.error_status(422, "invalid_field") == (400, "invalid_request_error")
    assert codec.error_status(503, "provider_unavailable") == (529, "overloaded_error")
    assert codec.error_status(503, "budget_store_unavailable") == (503, "api_error")
    assert codec.error_status(429, "budget_exceeded") == (429, "rate_limit_error")
    assert codec.error_status(405, "method_not_allowed") == (405, "invalid_request_error")
    assert codec.error_status(502, None) == (502, "api_error")


def test_a_matched_stop_sequence_is_reported_where_the_upstream_names_it():
    raw = {"choices": [{"message": {"content": "a"}, "stop_reason": "END", "finish_reason": "stop"}]}
    resp = LLMResponse(text="a", model="m", provider="vllm", finish_reason="stop", raw=raw)
    body = codec.message_body(resp, "msg_1", ["END"])
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "END")
    assert codec.message_body(resp, "msg_1", None)["stop_reason"] == "end_turn"


def test_translated_stream_blocks_for_reasoning_text_and_tool_calls():
    enc = codec.MessagesStream("msg_1")
    out = enc.open("m", StreamChunk(reasoning="r"))
    out += enc.chunk(StreamChunk(reasoning="r"))
    out += enc.chunk(StreamChunk(text="t"))
    head = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
    out += enc.chunk(StreamChunk(tool_calls=[head]))
    out += enc.chunk(StreamChunk(tool_calls=[{"index": 0, "function": {"arguments": '{"a":1}'}}]))
    out += asyncio.run(enc.close("tool_calls", Usage(10, 3, cache_read_tokens=4), None))
    evs = events(out)
    assert [n for n, _ in evs] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [d["content_block"]["type"] for n, d in evs if n == "content_block_start"] == [
        "thinking",
        "text",
        "tool_use",
    ]
    assert evs[9][1] == {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": '{"a":1}'},
    }
    assert evs[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert evs[-2][1]["usage"] == {
        "input_tokens": 6,
        "output_tokens": 3,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
    }


def test_passthrough_stream_holds_message_stop_until_the_close():
    enc = codec.MessagesStream("msg_1")
    first = StreamChunk(text="a", raw_events=[("message_start", {"type": "message_start"}), ("ping", {"type": "ping"})])
    assert enc.open("m", first) == b""
    assert [n for n, _ in events(enc.chunk(first))] == ["message_start", "ping"]
    last = StreamChunk(
        usage=Usage(1, 1),
        raw_events=[("message_delta", {"type": "message_delta"}), ("message_stop", {"type": "message_stop"})],
    )
    assert [n for n, _ in events(enc.chunk(last))] == ["message_delta"]
    assert enc.chunk(StreamChunk(usage=Usage(1, 1))) == b""  # an estimated final chunk adds nothing to the upstream's
    assert [n for n, _ in events(asyncio.run(enc.close("stop", Usage(1, 1), None)))] == ["message_stop"]
    err = SimpleNamespace(status=503, message="down", code="provider_unavailable")
    assert events(enc.error(err)) == [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "down"}})
    ]


def test_a_native_request_takes_the_calls_model_max_tokens_and_stream():
    from llm_connect.types import NativeRequest
    from llm_connect.wire import anthropic_messages as wire

    body = {
        "model": "alias",
        "max_tokens": 64000,
        "stream": True,
        "thinking": {"type": "enabled", "budget_tokens": 5000},
    }
    native = NativeRequest("anthropic_messages", {**body, "x": 1}, {"anthropic-beta": "b"})
    req = wire.build_native_request("claude-c", native, stream=False, max_tokens=3000)  # a budget clamped it
    assert req.path == "/v1/messages"
    assert req.body == {
        "model": "claude-c",
        "max_tokens": 3000,
        "thinking": {"type": "enabled", "budget_tokens": 2999},
        "x": 1,
    }
    assert req.headers == {"anthropic-beta": "b", "anthropic-version": "2023-06-01"}
    assert native.body["max_tokens"] == 64000 and native.body["stream"] is True  # the client's body is left alone
    count = wire.build_native_count_request("claude-c", native)
    assert count.path == "/v1/messages/count_tokens" and count.body == {
        "model": "claude-c",
        "thinking": body["thinking"],
    }
