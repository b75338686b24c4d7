"""Anthropic Messages codec against recorded payloads in the official shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import llm_connect.errors as errors
from llm_connect.types import Message, RunConfig, Usage
from llm_connect.wire import anthropic_messages as codec

CASES = json.loads((Path(__file__).parent / "payloads" / "anthropic_messages_errors.json").read_text())

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string", "description": "The city and state"}},
                "required": ["location"],
            },
        },
    }
]


# --- build_request ---------------------------------------------------------------------------


def test_build_request_basics_and_version_header():
    msgs = [Message("system", "You are terse."), Message("user", "Hello")]
    cfg = RunConfig(temperature=0.3, top_p=0.8, stop="END", seed=1, json_mode=True)
    req = codec.build_request("claude-sonnet-4-5", msgs, cfg, stream=False, max_tokens=None)
    assert req.path == "/v1/messages"
    assert req.headers == {"anthropic-version": "2023-06-01"}
    assert req.query is None
    assert req.body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,  # required by Anthropic: default when unset
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Hello"}],
        "temperature": 0.3,
        "top_p": 0.8,
        "stop_sequences": ["END"],
    }


def test_build_request_max_tokens_and_stream():
    cfg = RunConfig(max_tokens=300, extra_body={"metadata": {"user_id": "u-1"}, "top_k": 5})
    req = codec.build_request("m", [Message("user", "x")], cfg, stream=True, max_tokens=None)
    assert req.body["max_tokens"] == 300
    assert req.body["stream"] is True
    assert req.body["metadata"] == {"user_id": "u-1"} and req.body["top_k"] == 5
    req = codec.build_request("m", [Message("user", "x")], cfg, stream=False, max_tokens=64)
    assert req.body["max_tokens"] == 64
    assert "stream" not in req.body


def test_build_request_all_system_and_developer_messages_go_top_level():
    msgs = [
        Message("system", "Rule one."),
        Message("developer", "Rule two."),
        Message("user", "Hi"),
        Message("system", "Late rule."),
    ]
    req = codec.build_request("m", msgs, RunConfig(), stream=False, max_tokens=None)
    assert req.body["system"] == "Rule one.\n\nRule two.\n\nLate rule."
    assert req.body["messages"] == [{"role": "user", "content": "Hi"}]


def test_build_request_system_with_cache_control_stays_blocks():
    sys_parts = [{"type": "text", "text": "Long manual...", "cache_control": {"type": "ephemeral"}}]
    req = codec.build_request(
        "m", [Message("system", sys_parts), Message("user", "Q")], RunConfig(), stream=False, max_tokens=None
    )
    assert req.body["system"] == [{"type": "text", "text": "Long manual...", "cache_control": {"type": "ephemeral"}}]


def test_build_request_translates_tools_and_tool_choice():
    for choice, want in [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ]:
        cfg = RunConfig(tools=TOOLS, tool_choice=choice)
        req = codec.build_request("m", [Message("user", "x")], cfg, stream=False, max_tokens=None)
        assert req.body["tools"] == [
            {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "input_schema": TOOLS[0]["function"]["parameters"],
            }
        ]
        assert req.body["tool_choice"] == want


def test_build_request_translates_tool_calls_and_results():
    calls = [
        {"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"SF"}'}},
        {"id": "toolu_02", "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"NY"}'}},
    ]
    msgs = [
        Message("user", "Weather in SF and NY?"),
        Message("assistant", "Checking both.", tool_calls=calls),
        Message("tool", "15 C, fog", tool_call_id="toolu_01"),
        Message("tool", "22 C, sun", tool_call_id="toolu_02"),
        Message("user", "Thanks, and tomorrow?"),
    ]
    req = codec.build_request("m", msgs, RunConfig(), stream=False, max_tokens=None)
    assert req.body["messages"] == [
        {"role": "user", "content": "Weather in SF and NY?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "SF"}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"location": "NY"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "15 C, fog"},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": "22 C, sun"},
                {"type": "text", "text": "Thanks, and tomorrow?"},
            ],
        },
    ]


def test_build_request_translates_image_parts():
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    req = codec.build_request("m", [Message("user", parts)], RunConfig(), stream=False, max_tokens=None)
    assert req.body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


# --- parse_response / parse_usage ------------------------------------------------------------


def test_parse_text_response(payload):
    r = codec.parse_response(payload("anthropic_messages_text.json"))
    assert r.text == "Hi! My name is Claude."
    assert r.model == "claude-sonnet-4-20250514"
    assert r.finish_reason == "stop"
    assert r.request_id == "msg_013Zva2CMHLNnXjNJJKqJ2EF"
    assert r.usage == Usage(input_tokens=2095, output_tokens=503)


def test_parse_cache_tokens_are_added_to_input(payload):
    r = codec.parse_response(payload("anthropic_messages_cache.json"))
    # input_tokens (50) excludes cache reads (4000) and writes (1000)
    assert r.usage == Usage(
        input_tokens=5050, output_tokens=393, cache_read_tokens=4000, cache_write_tokens=1000, reasoning_tokens=0
    )


def test_parse_tool_use(payload):
    r = codec.parse_response(payload("anthropic_messages_tool_use.json"))
    assert r.text == "I'll check the current weather in San Francisco for you."
    assert r.finish_reason == "tool_calls"
    assert r.tool_calls == [
        {
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"San Francisco, CA","unit":"celsius"}'},
        }
    ]
    assert r.usage == Usage(input_tokens=384, output_tokens=81)


def test_parse_thinking_is_not_text_and_max_tokens_is_length(payload):
    r = codec.parse_response(payload("anthropic_messages_thinking.json"))
    assert r.text == "Based on my analysis, there are 17 prime numbers below 60."
    assert r.finish_reason == "length"
    assert r.usage == Usage(input_tokens=48, output_tokens=2048)
    assert r.reasoning == "Let me analyze this step by step..."  # the thinking block, kept apart from the text


# --- streaming -------------------------------------------------------------------------------


def test_stream_text_usage_from_start_and_delta(payload, feed):
    dec = codec.StreamDecoder()
    events = payload("anthropic_messages_stream_text.json")
    chunks = feed(dec, events[:1])
    # after message_start: input + cache tokens known, output so far 1 — passed on as the running usage alone
    start = Usage(input_tokens=1945, output_tokens=1, cache_read_tokens=1800, cache_write_tokens=120)
    assert dec.usage == start
    assert [(c.text, c.usage, c.usage_so_far) for c in chunks] == [("", None, start)]
    chunks = feed(dec, events[1:])
    assert [c.text for c in chunks if c.text] == ["Hello", "!"]
    assert "".join(c.text for c in chunks) == dec.text == "Hello!"
    # message_delta's running usage rides on a chunk of its own, text-less, before the end
    assert chunks[-1].text == "" and chunks[-1].usage is None
    assert chunks[-1].usage_so_far == Usage(
        input_tokens=1945, output_tokens=15, cache_read_tokens=1800, cache_write_tokens=120
    )
    last = dec.finish()
    assert last.text == ""
    assert last.finish_reason == "stop"
    # message_delta's cumulative output_tokens replaces the start value; input/cache kept
    assert last.usage == Usage(input_tokens=1945, output_tokens=15, cache_read_tokens=1800, cache_write_tokens=120)
    assert last.request_id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
    assert last.model == "claude-opus-4-1-20250805"


def test_stream_tool_use_deltas_in_openai_shape(payload, feed):
    dec = codec.StreamDecoder()
    chunks = feed(dec, payload("anthropic_messages_stream_tool_use.json"))
    assert dec.text == "Okay, let's check the weather for San Francisco, CA:"
    tool_chunks = [c for c in chunks if c.tool_calls]
    assert tool_chunks[0].tool_calls == [
        {
            "index": 0,
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }
    ]
    assert all(c.tool_calls[0]["index"] == 0 for c in tool_chunks)
    args = "".join(c.tool_calls[0]["function"]["arguments"] for c in tool_chunks)
    assert json.loads(args) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert dec.tool_calls[0]["function"]["name"] == "get_weather"
    last = dec.finish()
    assert last.finish_reason == "tool_calls"
    assert last.usage == Usage(input_tokens=472, output_tokens=89)


def test_stream_thinking_deltas_are_not_text(payload, feed):
    dec = codec.StreamDecoder()
    events = payload("anthropic_messages_stream_thinking.json")
    chunks = feed(dec, events)
    assert [c.text for c in chunks if c.text] == ["The greatest common divisor (GCD) of 1071 and 462 is **21**."]
    # the thinking is not text, but it is output: passed on as reasoning (billed if the stream stops early)
    thinking = [
        e["data"]["delta"]["thinking"] for e in events if e["data"].get("delta", {}).get("type") == "thinking_delta"
    ]
    assert "".join(c.reasoning for c in chunks) == "".join(thinking) and thinking
    assert all(not (c.text and c.reasoning) for c in chunks)
    last = dec.finish()
    assert last.finish_reason == "stop"
    assert last.usage is None  # this recorded stream reports no usage at all


def test_cut_stream_raises(payload, feed):
    events = payload("anthropic_messages_stream_text.json")[:-1]  # everything but message_stop
    dec = codec.StreamDecoder()
    feed(dec, events)
    assert dec.usage is not None and dec.usage.output_tokens == 15
    with pytest.raises(errors.LLMProviderUnavailableError):
        dec.finish()


def test_in_stream_error_event_raises_overloaded(payload, feed):
    dec = codec.StreamDecoder()
    with pytest.raises(errors.LLMProviderUnavailableError) as ei:
        feed(dec, payload("anthropic_messages_stream_error.json"))
    assert ei.value.message == "Overloaded"
    assert ei.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert dec.text == "Sure"


@pytest.mark.parametrize(
    ("etype", "cls"),
    [
        ("rate_limit_error", errors.LLMRateLimitError),
        ("api_error", errors.LLMProviderUnavailableError),
        ("invalid_request_error", errors.LLMInvalidRequestError),
    ],
)
def test_in_stream_error_types(etype, cls):
    dec = codec.StreamDecoder()
    with pytest.raises(cls):
        dec.feed("error", {"type": "error", "error": {"type": etype, "message": "x"}})


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[f"{c['status']}-{c['expect']}-{i}" for i, c in enumerate(CASES)])
def test_classify_error(case):
    err = codec.classify_error(case["status"], case["body"], case["headers"])
    assert type(err) is getattr(errors, case["expect"])
    assert err.status_code == case["status"]
    assert err.body == case["body"]
    if case["body"]:
        assert err.message == case["body"]["error"]["message"]
        assert err.request_id == case["body"]["request_id"]
    if case["expect"] == "LLMRateLimitError":
        assert err.retry_after == pytest.approx(case["retry_after"])
