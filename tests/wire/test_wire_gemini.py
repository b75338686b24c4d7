"""Gemini generateContent / streamGenerateContent codec against recorded payloads in the official shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import llm_connect.errors as errors
from llm_connect.types import Message, RunConfig, Usage
from llm_connect.wire import gemini as codec

CASES = json.loads((Path(__file__).parent / "payloads" / "gemini_errors.json").read_text())

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "schedule_meeting",
            "description": "Schedules a meeting with specified attendees at a given time and date.",
            "parameters": {
                "type": "object",
                "properties": {
                    "attendees": {"type": "array", "items": {"type": "string"}},
                    "date": {"type": "string"},
                },
                "required": ["attendees", "date"],
            },
        },
    }
]


# --- build_request ---------------------------------------------------------------------------


def test_build_request_paths_and_query():
    msgs = [Message("user", "Hi")]
    req = codec.build_request("gemini-2.5-flash", msgs, RunConfig(), stream=False, max_tokens=None)
    assert req.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req.query is None
    req = codec.build_request("models/gemini-2.5-flash", msgs, RunConfig(), stream=True, max_tokens=None)
    assert req.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert req.query == {"alt": "sse"}
    assert req.headers == {}


def test_build_request_system_roles_and_generation_config():
    msgs = [
        Message("system", "You are a cat."),
        Message("user", "Hello there"),
        Message("assistant", "Meow."),
        Message("user", "What is your name?"),
    ]
    cfg = RunConfig(temperature=0.4, top_p=0.95, stop=["\n"], seed=42, max_tokens=100)
    req = codec.build_request("gemini-2.0-flash", msgs, cfg, stream=False, max_tokens=None)
    assert req.body == {
        "systemInstruction": {"parts": [{"text": "You are a cat."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hello there"}]},
            {"role": "model", "parts": [{"text": "Meow."}]},
            {"role": "user", "parts": [{"text": "What is your name?"}]},
        ],
        "generationConfig": {
            "maxOutputTokens": 100,
            "temperature": 0.4,
            "topP": 0.95,
            "stopSequences": ["\n"],
            "seed": 42,
        },
    }
    req = codec.build_request("g", msgs, cfg, stream=False, max_tokens=7)
    assert req.body["generationConfig"]["maxOutputTokens"] == 7


def test_build_request_json_mode_and_schema():
    req = codec.build_request("g", [Message("user", "x")], RunConfig(json_mode=True), stream=False, max_tokens=None)
    assert req.body["generationConfig"] == {"responseMimeType": "application/json"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    rf = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    req = codec.build_request("g", [Message("user", "x")], RunConfig(response_format=rf), stream=False, max_tokens=None)
    assert req.body["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema}


def test_build_request_tools_and_tool_config():
    cfg = RunConfig(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "schedule_meeting"}})
    req = codec.build_request("g", [Message("user", "x")], cfg, stream=False, max_tokens=None)
    assert req.body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "schedule_meeting",
                    "description": "Schedules a meeting with specified attendees at a given time and date.",
                    "parametersJsonSchema": TOOLS[0]["function"]["parameters"],
                }
            ]
        }
    ]
    assert req.body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["schedule_meeting"]}
    }
    for choice, mode in [("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")]:
        req = codec.build_request(
            "g", [Message("user", "x")], RunConfig(tools=TOOLS, tool_choice=choice), stream=False, max_tokens=None
        )
        assert req.body["toolConfig"] == {"functionCallingConfig": {"mode": mode}}


def test_build_request_function_call_round_trip(payload):
    parsed = codec.parse_response(payload("gemini_function_call.json"))
    msgs = [
        Message("user", "Schedule a meeting with Bob and Alice."),
        Message("assistant", None, tool_calls=parsed.tool_calls),
        Message("tool", '{"status": "scheduled"}', tool_call_id=parsed.tool_calls[0]["id"]),
        Message("tool", "plain text result", tool_call_id=parsed.tool_calls[0]["id"]),
    ]
    req = codec.build_request("g", msgs, RunConfig(), stream=False, max_tokens=None)
    assert req.body["contents"] == [
        {"role": "user", "parts": [{"text": "Schedule a meeting with Bob and Alice."}]},
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {
                        "name": "schedule_meeting",
                        "args": {
                            "attendees": ["Bob", "Alice"],
                            "date": "2025-03-27",
                            "time": "10:00",
                            "topic": "Q3 planning",
                        },
                    },
                    # the thought signature Gemini sent is echoed back
                    "thoughtSignature": "CiIBVKhc7oDFmUmu3v3wK6gZz5f4WQ0uKz3bmX3tA4FSaA7mEh0KYgFUqFzuVpaFAY4ZmVzk1x9=",
                }
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "schedule_meeting", "response": {"status": "scheduled"}}},
                {"functionResponse": {"name": "schedule_meeting", "response": {"result": "plain text result"}}},
            ],
        },
    ]


def test_build_request_image_parts_and_extra_body():
    parts = [
        {"type": "text", "text": "Caption this."},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
    ]
    cfg = RunConfig(
        extra_body={"safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}
    )
    req = codec.build_request("g", [Message("user", parts)], cfg, stream=False, max_tokens=None)
    assert req.body["contents"][0]["parts"] == [
        {"text": "Caption this."},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
    ]
    assert req.body["safetySettings"][0]["threshold"] == "BLOCK_NONE"


# --- parse_response / parse_usage ------------------------------------------------------------


def test_parse_text_response(payload):
    r = codec.parse_response(payload("gemini_text.json"))
    assert r.text == "AI learns patterns from data to make predictions or decisions."
    assert r.model == "gemini-2.0-flash"
    assert r.finish_reason == "stop"
    assert r.request_id == "R2fWaNnUMOmBm9IPt5avyQg"
    assert r.usage == Usage(input_tokens=8, output_tokens=11)


def test_parse_cached_content_and_thoughts(payload):
    r = codec.parse_response(payload("gemini_cached_thinking.json"))
    assert r.text == "The contract renews automatically unless cancelled 30 days before the end date."
    # the thought summary part (includeThoughts) is the reasoning, not the text
    assert r.reasoning == "**Checking the clauses**\n\nI'm comparing the termination clause with the renewal terms."
    # promptTokenCount includes cachedContentTokenCount; thoughts are output not in candidatesTokenCount
    assert r.usage == Usage(
        input_tokens=4310, output_tokens=1062, cache_read_tokens=3072, cache_write_tokens=0, reasoning_tokens=812
    )
    assert r.usage.total_tokens == 5372  # == totalTokenCount


def test_parse_function_call(payload):
    r = codec.parse_response(payload("gemini_function_call.json"))
    assert r.text == ""
    assert r.finish_reason == "tool_calls"
    assert len(r.tool_calls) == 1
    tc = r.tool_calls[0]
    assert tc["type"] == "function" and tc["id"] == "call_0"
    assert tc["function"]["name"] == "schedule_meeting"
    assert json.loads(tc["function"]["arguments"]) == {
        "attendees": ["Bob", "Alice"],
        "date": "2025-03-27",
        "time": "10:00",
        "topic": "Q3 planning",
    }
    assert r.usage == Usage(input_tokens=115, output_tokens=114, reasoning_tokens=78)


def test_blocked_prompt_raises_content_filter(payload):
    body = payload("gemini_blocked_prompt.json")
    with pytest.raises(errors.LLMContentFilterError) as ei:
        codec.parse_response(body)
    assert "SAFETY" in ei.value.message
    assert ei.value.body == body


def test_safety_finish_raises_content_filter(payload):
    with pytest.raises(errors.LLMContentFilterError):
        codec.parse_response(payload("gemini_finish_safety.json"))


def test_max_tokens_finish_is_length(payload):
    body = payload("gemini_text.json")
    body["candidates"][0]["finishReason"] = "MAX_TOKENS"
    assert codec.parse_response(body).finish_reason == "length"


def test_parse_usage_tool_use_prompt_counts_as_input():
    raw = {"promptTokenCount": 10, "toolUsePromptTokenCount": 90, "candidatesTokenCount": 5, "totalTokenCount": 105}
    assert codec.parse_usage(raw) == Usage(input_tokens=100, output_tokens=5)
    assert codec.parse_usage(None) == Usage()


# --- streaming -------------------------------------------------------------------------------


def test_stream_text_with_usage_on_last_chunk(payload, feed):
    dec = codec.StreamDecoder()
    chunks = feed(dec, payload("gemini_stream_text.json"))
    assert [c.text for c in chunks] == [
        "The sky appears blue because of",
        " Rayleigh scattering: short blue wavelengths",
        " scatter more than red ones.",
    ]
    assert dec.text == "".join(c.text for c in chunks)
    # each event's usageMetadata is the running usage: on the chunk of the event that changed it
    assert [c.usage_so_far for c in chunks] == [
        Usage(10, 100, reasoning_tokens=100),
        None,
        Usage(10, 124, reasoning_tokens=100),
    ]
    last = dec.finish()
    assert last.finish_reason == "stop"
    assert last.usage == Usage(input_tokens=10, output_tokens=124, reasoning_tokens=100)
    assert last.request_id == "TmvWaPbZGbbKnsEPzMHL2Ac"
    assert last.model == "gemini-2.5-flash"


def test_stream_thought_parts_are_reasoning_not_text():
    dec = codec.StreamDecoder()
    event = {
        "candidates": [{"content": {"parts": [{"text": "let me think", "thought": True}, {"text": "Blue."}]}}],
        "usageMetadata": {"promptTokenCount": 4, "thoughtsTokenCount": 3},
    }
    chunks = dec.feed(None, event)
    assert [(c.text, c.reasoning) for c in chunks] == [("", "let me think"), ("Blue.", "")]
    assert chunks[0].usage_so_far == Usage(4, 3, reasoning_tokens=3)
    assert dec.text == "Blue."


def test_stream_function_calls(payload, feed):
    dec = codec.StreamDecoder()
    chunks = feed(dec, payload("gemini_stream_function_call.json"))
    assert len(chunks) == 1
    deltas = chunks[0].tool_calls
    assert [d["index"] for d in deltas] == [0, 1]
    assert [d["function"]["name"] for d in deltas] == ["get_weather", "get_time"]
    assert json.loads(deltas[1]["function"]["arguments"]) == {"timezone": "America/New_York"}
    assert [tc["id"] for tc in dec.tool_calls] == ["call_0", "call_1"]
    last = dec.finish()
    assert last.finish_reason == "tool_calls"
    assert last.usage == Usage(input_tokens=97, output_tokens=31)


def test_cut_stream_raises(payload, feed):
    dec = codec.StreamDecoder()
    feed(dec, payload("gemini_stream_text.json")[:-1])
    assert dec.usage == Usage(input_tokens=10, output_tokens=100, reasoning_tokens=100)
    with pytest.raises(errors.LLMProviderUnavailableError):
        dec.finish()


def test_in_stream_error_raises(payload, feed):
    dec = codec.StreamDecoder()
    with pytest.raises(errors.LLMProviderUnavailableError) as ei:
        feed(dec, payload("gemini_stream_error.json"))
    assert ei.value.message == "The model is overloaded. Please try again later."
    assert dec.text == "Once upon"


def test_stream_blocked_prompt_raises(payload):
    dec = codec.StreamDecoder()
    with pytest.raises(errors.LLMContentFilterError):
        dec.feed(None, payload("gemini_blocked_prompt.json"))


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[f"{c['status']}-{c['expect']}-{i}" for i, c in enumerate(CASES)])
def test_classify_error(case):
    err = codec.classify_error(case["status"], case["body"], case["headers"])
    assert type(err) is getattr(errors, case["expect"])
    assert err.status_code == case["status"]
    assert err.body == case["body"]
    assert err.message == case["body"]["error"]["message"]
    if case["expect"] == "LLMRateLimitError":
        assert err.retry_after == pytest.approx(case["retry_after"])


def test_classify_error_list_wrapped_body():
    body = [CASES[6]["body"]]  # streamGenerateContent without alt=sse wraps errors in a JSON array
    err = codec.classify_error(429, body, {})
    assert isinstance(err, errors.LLMRateLimitError)
    assert err.retry_after == 38.0
