"""Ollama /api/chat codec against recorded payloads in the official shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import llm_connect.errors as errors
from llm_connect.types import Message, RunConfig, Usage
from llm_connect.wire import ollama as codec

CASES = json.loads((Path(__file__).parent / "payloads" / "ollama_errors.json").read_text())

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather for a location",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
        },
    }
]


# --- build_request ---------------------------------------------------------------------------


def test_build_request_options_and_stream_flag():
    msgs = [Message("developer", "Be brief."), Message("user", "why is the sky blue?")]
    cfg = RunConfig(temperature=0, top_p=0.9, stop="\n", seed=101, max_tokens=64, tools=TOOLS, tool_choice="auto")
    req = codec.build_request("llama3.2", msgs, cfg, stream=False, max_tokens=None)
    assert req.path == "/api/chat"
    assert req.query is None and req.headers == {}
    assert req.body == {
        "model": "llama3.2",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "why is the sky blue?"}],
        "stream": False,
        "options": {"num_predict": 64, "temperature": 0, "top_p": 0.9, "stop": ["\n"], "seed": 101},
        "tools": TOOLS,
    }
    req = codec.build_request("llama3.2", msgs, cfg, stream=True, max_tokens=8)
    assert req.body["stream"] is True
    assert req.body["options"]["num_predict"] == 8


def test_build_request_json_mode_and_schema_format():
    req = codec.build_request("m", [Message("user", "x")], RunConfig(json_mode=True), stream=False, max_tokens=None)
    assert req.body["format"] == "json"
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    rf = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    req = codec.build_request("m", [Message("user", "x")], RunConfig(response_format=rf), stream=False, max_tokens=None)
    assert req.body["format"] == schema
    assert "options" not in req.body


def test_build_request_tool_calls_images_and_extra_body():
    call = {
        "id": "call_0",
        "type": "function",
        "function": {"name": "get_current_weather", "arguments": '{"location":"Paris, FR"}'},
    }
    parts = [
        {"type": "text", "text": "what is in this image?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    msgs = [
        Message("user", parts),
        Message("assistant", "", tool_calls=[call]),
        Message("tool", "22 C", tool_call_id="call_0"),
    ]
    cfg = RunConfig(extra_body={"keep_alive": "10m", "think": False})
    req = codec.build_request("llava", msgs, cfg, stream=False, max_tokens=None)
    assert req.body["messages"] == [
        {"role": "user", "content": "what is in this image?", "images": ["iVBORw0KGgo="]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_current_weather", "arguments": {"location": "Paris, FR"}}}],
        },
        {"role": "tool", "content": "22 C", "tool_name": "get_current_weather"},
    ]
    assert req.body["keep_alive"] == "10m" and req.body["think"] is False


# --- parse_response / parse_usage ------------------------------------------------------------


def test_parse_text_response(payload):
    r = codec.parse_response(payload("ollama_chat.json"))
    assert r.text == "Hello! How are you today?"
    assert r.model == "llama3.2"
    assert r.finish_reason == "stop"
    assert r.request_id is None
    assert r.usage == Usage(input_tokens=26, output_tokens=298)


def test_parse_tool_calls_arguments_become_json_strings(payload):
    r = codec.parse_response(payload("ollama_chat_tool_calls.json"))
    assert r.finish_reason == "tool_calls"
    assert r.tool_calls == [
        {
            "id": "call_0",
            "type": "function",
            "function": {"name": "get_current_weather", "arguments": '{"format":"celsius","location":"Paris, FR"}'},
        }
    ]
    assert r.usage == Usage(input_tokens=122, output_tokens=33)


def test_parse_length_and_thinking_not_in_text(payload):
    r = codec.parse_response(payload("ollama_chat_length.json"))
    assert r.text == "Rayleigh scattering makes"
    assert r.reasoning == "The user asks about the sky."
    assert r.finish_reason == "length"
    assert r.usage == Usage(input_tokens=14, output_tokens=8)


# --- streaming -------------------------------------------------------------------------------


def test_stream_text_usage_on_done_line(payload, feed):
    dec = codec.StreamDecoder()
    chunks = feed(dec, payload("ollama_stream.json"))
    assert [c.text for c in chunks] == ["The", " sky", " is blue."]
    assert dec.text == "The sky is blue."
    last = dec.finish()
    assert last.text == "" and last.finish_reason == "stop"
    assert last.usage == Usage(input_tokens=26, output_tokens=282)
    assert last.model == "llama3.2"


def test_stream_tool_calls(payload, feed):
    dec = codec.StreamDecoder()
    chunks = feed(dec, payload("ollama_stream_tool_calls.json"))
    assert chunks[0].tool_calls == [
        {
            "index": 0,
            "id": "call_0",
            "type": "function",
            "function": {"name": "get_current_weather", "arguments": '{"location":"Toronto"}'},
        }
    ]
    last = dec.finish()
    assert last.finish_reason == "tool_calls"
    assert last.usage == Usage(input_tokens=148, output_tokens=24)


def test_cut_stream_raises(payload, feed):
    dec = codec.StreamDecoder()
    feed(dec, payload("ollama_stream.json")[:-1])
    assert dec.usage is None
    with pytest.raises(errors.LLMProviderUnavailableError):
        dec.finish()


def test_in_stream_error_line_raises(payload, feed):
    dec = codec.StreamDecoder()
    with pytest.raises(errors.LLMProviderUnavailableError) as ei:
        feed(dec, payload("ollama_stream_error.json"))
    assert ei.value.message == "an error was encountered while running the model: unexpected EOF"


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[f"{c['status']}-{c['expect']}-{i}" for i, c in enumerate(CASES)])
def test_classify_error(case):
    err = codec.classify_error(case["status"], case["body"], case["headers"])
    assert type(err) is getattr(errors, case["expect"])
    assert err.status_code == case["status"]
    assert err.body == case["body"]
    want = case["body"]["error"] if isinstance(case["body"], dict) else case["body"]
    assert err.message == want
    if case["expect"] == "LLMRateLimitError":
        assert err.retry_after == pytest.approx(case["retry_after"])


def test_stream_thinking_is_reasoning_not_text():
    dec = codec.StreamDecoder()
    chunks = dec.feed(None, {"model": "q", "message": {"role": "assistant", "content": "", "thinking": "hmm"}})
    chunks += dec.feed(None, {"model": "q", "message": {"role": "assistant", "content": "Hi"}})
    assert [(c.text, c.reasoning) for c in chunks] == [("", "hmm"), ("Hi", "")]
    assert dec.text == "Hi"
