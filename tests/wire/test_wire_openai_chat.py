"""OpenAI Chat Completions codec against recorded payloads in the official shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import llm_connect.errors as errors
from llm_connect.types import Message, RunConfig, Usage
from llm_connect.wire import openai_chat as codec

CASES = json.loads((Path(__file__).parent / "payloads" / "openai_chat_errors.json").read_text())

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


# --- build_request ---------------------------------------------------------------------------


def test_build_request_non_stream_passes_settings_through():
    msgs = [Message("system", "Be terse."), Message("user", "Hi")]
    cfg = RunConfig(temperature=0.2, top_p=0.9, stop=["\n\n"], seed=7, max_tokens=50, tools=TOOLS, tool_choice="auto")
    req = codec.build_request("gpt-4o-mini", msgs, cfg, stream=False, max_tokens=None)
    assert req.path == "/chat/completions"
    assert req.query is None
    assert req.body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "tools": TOOLS,
        "tool_choice": "auto",
    }


def test_build_request_max_tokens_argument_overrides_config():
    req = codec.build_request("m", [Message("user", "x")], RunConfig(max_tokens=50), stream=False, max_tokens=10)
    assert req.body["max_tokens"] == 10


def test_build_request_stream_always_asks_for_usage():
    req = codec.build_request("m", [Message("user", "x")], RunConfig(), stream=True, max_tokens=None)
    assert req.body["stream"] is True
    assert req.body["stream_options"] == {"include_usage": True}
    # even when extra_body tries to set other stream options, include_usage stays on
    cfg = RunConfig(extra_body={"stream_options": {"include_usage": False, "x": 1}, "user": "u-1"})
    req = codec.build_request("m", [Message("user", "x")], cfg, stream=True, max_tokens=None)
    assert req.body["stream_options"] == {"include_usage": True, "x": 1}
    assert req.body["user"] == "u-1"


def test_build_request_json_mode_and_response_format():
    req = codec.build_request("m", [Message("user", "x")], RunConfig(json_mode=True), stream=False, max_tokens=None)
    assert req.body["response_format"] == {"type": "json_object"}
    schema = {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}
    req = codec.build_request(
        "m", [Message("user", "x")], RunConfig(response_format=schema), stream=False, max_tokens=None
    )
    assert req.body["response_format"] == schema


def test_build_request_tool_messages_and_extra_body_last():
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    msgs = [
        Message("user", "Weather?"),
        Message("assistant", None, tool_calls=[call]),
        Message("tool", "18C", tool_call_id="call_1"),
    ]
    cfg = RunConfig(temperature=0.5, extra_body={"temperature": 0.0, "max_completion_tokens": 99})
    req = codec.build_request("m", msgs, cfg, stream=False, max_tokens=None)
    assert req.body["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert req.body["messages"][2] == {"role": "tool", "content": "18C", "tool_call_id": "call_1"}
    assert req.body["temperature"] == 0.0
    assert req.body["max_completion_tokens"] == 99


# --- parse_response / parse_usage ------------------------------------------------------------


def test_parse_text_response(payload):
    r = codec.parse_response(payload("openai_chat_text.json"))
    assert r.text == "Hello! How can I assist you today?"
    assert r.model == "gpt-4.1-2025-04-14"
    assert r.finish_reason == "stop"
    assert r.request_id == "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
    assert r.tool_calls is None
    assert r.usage == Usage(input_tokens=19, output_tokens=10)


def test_parse_cached_and_reasoning_tokens(payload):
    r = codec.parse_response(payload("openai_chat_cached_reasoning.json"))
    # prompt_tokens already includes the cached tokens, completion_tokens the reasoning tokens
    assert r.usage == Usage(
        input_tokens=2006, output_tokens=1150, cache_read_tokens=1920, cache_write_tokens=0, reasoning_tokens=1024
    )
    assert r.usage.total_tokens == 3156


def test_parse_tool_calls(payload):
    r = codec.parse_response(payload("openai_chat_tool_calls.json"))
    assert r.text == ""
    assert r.finish_reason == "tool_calls"
    assert r.tool_calls == [
        {
            "id": "call_abc123",
            "type": "function",
            "function": {"name": "get_current_weather", "arguments": '{\n"location": "Boston, MA"\n}'},
        }
    ]
    assert json.loads(r.tool_calls[0]["function"]["arguments"]) == {"location": "Boston, MA"}
    assert r.usage == Usage(input_tokens=82, output_tokens=17)


def test_parse_usage_handles_missing_and_null_details():
    assert codec.parse_usage(None) == Usage()
    assert codec.parse_usage(
        {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": None, "completion_tokens_details": None}
    ) == Usage(5, 2)


# --- streaming -------------------------------------------------------------------------------


def test_stream_text_with_usage_on_last_chunk(payload, feed):
    dec = codec.StreamDecoder()
    chunks = feed(dec, payload("openai_chat_stream_text.json"))
    assert [c.text for c in chunks if c.text] == ["Hello", "!", " How can I help?"]
    assert all(c.usage is None and c.finish_reason is None for c in chunks)
    assert dec.text == "".join(c.text for c in chunks) == "Hello! How can I help?"
    # the usage chunk is passed on as the running usage (a stream stopped before [DONE] is billed on it)
    assert [c.usage_so_far for c in chunks] == [None, None, None, Usage(1200, 6, cache_read_tokens=1024)]
    last = dec.finish()
    assert last.text == ""
    assert last.finish_reason == "stop"
    assert last.usage == Usage(input_tokens=1200, output_tokens=6, cache_read_tokens=1024)
    assert last.model == "gpt-4o-mini-2024-07-18"
    assert last.request_id == "chatcmpl-123"


def test_stream_tool_call_deltas_pass_through(payload, feed):
    events = payload("openai_chat_stream_tool_calls.json")
    dec = codec.StreamDecoder()
    chunks = feed(dec, events)
    assert all(c.text == "" for c in chunks)
    assert chunks[0].tool_calls == events[0]["data"]["choices"][0]["delta"]["tool_calls"]
    tool_chunks = [c for c in chunks if c.tool_calls]
    assert [c.usage_so_far for c in chunks if not c.tool_calls] == [Usage(61, 15)]  # the usage chunk
    args = "".join(c.tool_calls[0]["function"].get("arguments", "") for c in tool_chunks)
    assert json.loads(args) == {"location": "Paris, France"}
    assert dec.tool_calls == [
        {
            "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"Paris, France"}'},
        }
    ]
    last = dec.finish()
    assert last.finish_reason == "tool_calls"
    assert last.usage == Usage(input_tokens=61, output_tokens=15)


def test_stream_reasoning_deltas_of_compatible_servers_are_reasoning_not_text():
    """DeepSeek / vLLM send ``reasoning_content``, OpenRouter ``reasoning``: output, not the answer."""
    dec = codec.StreamDecoder()
    chunks = []
    for delta in ({"reasoning_content": "think "}, {"reasoning": "more"}, {"content": "42"}):
        chunks += dec.feed(None, {"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta}]})
    assert [(c.text, c.reasoning) for c in chunks] == [("", "think "), ("", "more"), ("42", "")]
    assert dec.text == "42"


def test_stream_usage_on_every_chunk_is_the_running_usage():
    """vLLM's continuous usage stats: each change rides on the chunk that brought it."""
    dec = codec.StreamDecoder()
    out = []
    for i, word in enumerate(["a", "b", "c"], start=1):
        usage = {"prompt_tokens": 5, "completion_tokens": i}
        out += dec.feed(None, {"id": "c", "choices": [{"index": 0, "delta": {"content": word}}], "usage": usage})
    assert [c.usage_so_far for c in out] == [Usage(5, 1), Usage(5, 2), Usage(5, 3)]
    assert [c.text for c in out] == ["a", "b", "c"]


def test_stream_done_sentinel_alone_is_terminal(payload, feed):
    events = payload("openai_chat_stream_text.json")
    events = [*events[:4], events[-1]]  # text deltas, then [DONE] without a finish_reason or usage chunk
    dec = codec.StreamDecoder()
    feed(dec, events)
    last = dec.finish()
    assert last.usage is None and last.finish_reason is None


def test_cut_stream_raises(payload, feed):
    events = payload("openai_chat_stream_text.json")[:4]  # no finish_reason chunk, no usage, no [DONE]
    dec = codec.StreamDecoder()
    feed(dec, events)
    assert dec.text == "Hello! How can I help?"
    with pytest.raises(errors.LLMProviderUnavailableError):
        dec.finish()


def test_in_stream_error_chunk_raises_classified_error(payload, feed):
    dec = codec.StreamDecoder()
    with pytest.raises(errors.LLMProviderUnavailableError) as ei:
        feed(dec, payload("openai_chat_stream_error.json"))
    assert ei.value.message == "The server had an error while processing your request. Sorry about that!"
    assert dec.text == "Partial"


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[f"{c['status']}-{c['expect']}-{i}" for i, c in enumerate(CASES)])
def test_classify_error(case):
    err = codec.classify_error(case["status"], case["body"], case["headers"])
    assert type(err) is getattr(errors, case["expect"])
    assert err.status_code == case["status"]
    assert err.body == case["body"]
    if isinstance(case["body"], dict) and isinstance(case["body"].get("error"), dict):
        assert err.message == case["body"]["error"]["message"]
    if case["expect"] == "LLMRateLimitError":
        assert err.retry_after == (pytest.approx(case["retry_after"]) if case["retry_after"] is not None else None)


def test_classify_error_body_as_json_text():
    text = json.dumps(CASES[0]["body"])
    err = codec.classify_error(400, text, {})
    assert isinstance(err, errors.LLMContextWindowExceededError)
    assert err.body == CASES[0]["body"]


def test_parse_response_with_error_body_raises():
    with pytest.raises(errors.LLMInvalidRequestError):
        codec.parse_response(CASES[6]["body"])
