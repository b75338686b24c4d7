"""What every wire codec shares: the module interface, Retry-After parsing, extra_body, max_tokens."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

import llm_connect.errors as errors
from llm_connect.types import Message, RunConfig, StreamChunk
from llm_connect.wire import ParsedResponse, WireRequest, anthropic_messages, gemini, ollama, openai_chat

CODECS = {"openai_chat": openai_chat, "anthropic_messages": anthropic_messages, "gemini": gemini, "ollama": ollama}
FRAMINGS = {"openai_chat": "sse", "anthropic_messages": "sse", "gemini": "sse", "ollama": "ndjson"}


@pytest.mark.parametrize("name", CODECS)
def test_module_interface(name):
    codec = CODECS[name]
    assert codec.FRAMING == FRAMINGS[name]
    req = codec.build_request("m", [Message("user", "hi")], RunConfig(), stream=False, max_tokens=None)
    assert isinstance(req, WireRequest)
    dec = codec.StreamDecoder()
    assert dec.usage is None and dec.text == ""
    assert isinstance(codec.classify_error(500, None, {}), errors.LLMProviderUnavailableError)
    assert isinstance(codec.classify_error(429, None, {}), errors.LLMRateLimitError)


@pytest.mark.parametrize("name", CODECS)
def test_extra_body_is_merged_last(name):
    cfg = RunConfig(temperature=0.5, extra_body={"model_extra": {"a": 1}})
    req = CODECS[name].build_request("m", [Message("user", "hi")], cfg, stream=False, max_tokens=None)
    assert req.body["model_extra"] == {"a": 1}


@pytest.mark.parametrize("name", CODECS)
def test_max_tokens_argument_wins_over_config(name):
    cfg = RunConfig(max_tokens=500)
    body = CODECS[name].build_request("m", [Message("user", "hi")], cfg, stream=False, max_tokens=20).body
    found = (
        body.get("max_tokens")
        or (body.get("generationConfig") or {}).get("maxOutputTokens")
        or (body.get("options") or {}).get("num_predict")
    )
    assert found == 20


@pytest.mark.parametrize("name", CODECS)
def test_parse_response_type(name, payload):
    files = {
        "openai_chat": "openai_chat_text.json",
        "anthropic_messages": "anthropic_messages_text.json",
        "gemini": "gemini_text.json",
        "ollama": "ollama_chat.json",
    }
    r = CODECS[name].parse_response(payload(files[name]))
    assert isinstance(r, ParsedResponse)
    assert r.text and r.finish_reason == "stop" and r.usage.input_tokens > 0


@pytest.mark.parametrize("name", CODECS)
def test_finish_returns_stream_chunk(name, payload, feed):
    files = {
        "openai_chat": "openai_chat_stream_text.json",
        "anthropic_messages": "anthropic_messages_stream_text.json",
        "gemini": "gemini_stream_text.json",
        "ollama": "ollama_stream.json",
    }
    dec = CODECS[name].StreamDecoder()
    chunks = feed(dec, payload(files[name]))
    assert all(isinstance(c, StreamChunk) for c in chunks)
    last = dec.finish()
    assert isinstance(last, StreamChunk)
    assert last.text == "" and last.finish_reason == "stop"
    assert last.usage is not None and last.usage == dec.usage


def test_retry_after_http_date():
    when = datetime.now(UTC) + timedelta(seconds=30)
    err = openai_chat.classify_error(429, None, {"Retry-After": format_datetime(when, usegmt=True)})
    assert isinstance(err, errors.LLMRateLimitError)
    assert 27 <= err.retry_after <= 30


def test_retry_after_date_in_the_past_is_zero():
    err = anthropic_messages.classify_error(429, None, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert err.retry_after == 0.0


def test_retry_after_garbage_is_none():
    err = ollama.classify_error(429, None, {"Retry-After": "soon"})
    assert err.retry_after is None


def test_retry_after_ms():
    err = gemini.classify_error(429, None, {"retry-after-ms": "250"})
    assert err.retry_after == 0.25


def test_headers_may_be_a_case_insensitive_multidict():
    from multidict import CIMultiDict

    err = openai_chat.classify_error(429, None, CIMultiDict({"RETRY-AFTER": "3"}))
    assert err.retry_after == 3.0


def test_classified_errors_survive_pickling(payload):
    case = payload("anthropic_messages_errors.json")[7]
    err = anthropic_messages.classify_error(case["status"], case["body"], case["headers"])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is errors.LLMRateLimitError
    assert back.retry_after == 13.0 and back.status_code == 429 and back.body == case["body"]
