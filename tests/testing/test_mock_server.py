"""The shipped mock provider server: real wire shapes over loopback, scripting, faults, admin, runners."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from llm_connect.testing import MockReply, MockServer, Script

USER = [{"role": "user", "content": "hello there friend"}]
# 3 words + 1 for the message
USER_TOKENS = 4
DEFAULT_TEXT = "mock reply to: hello there friend"


@pytest.fixture
async def server():
    async with MockServer() as srv:
        yield srv


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


def parse_sse(raw: bytes) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) per SSE event; data '[DONE]' stays a string."""
    out = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        text = "\n".join(data)
        out.append((event, text if text == "[DONE]" else json.loads(text)))
    return out


def parse_ndjson(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


async def post(http, url, body, headers=None):
    async with http.post(url, json=body, headers=headers or {}) as r:
        return r.status, r.headers.copy(), await r.read()


# ----------------------------------------------------------------------------- OpenAI


async def test_openai_non_stream_shape(server, http):
    status, headers, raw = await post(http, server.openai_base + "/chat/completions", {"model": "m1", "messages": USER})
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert headers["x-request-id"].startswith("req_")
    body = orjson.loads(raw)
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "m1"
    assert isinstance(body["created"], int)
    choice = body["choices"][0]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == DEFAULT_TEXT
    assert choice["finish_reason"] == "stop"
    u = body["usage"]
    assert u["prompt_tokens"] == USER_TOKENS
    assert u["completion_tokens"] == len(DEFAULT_TEXT.split())
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["prompt_tokens_details"]["cached_tokens"] == 0
    assert u["completion_tokens_details"]["reasoning_tokens"] == 0
    # ids are unique per request even though the body is served from the pre-serialised cache
    _, _, raw2 = await post(http, server.openai_base + "/chat/completions", {"model": "m1", "messages": USER})
    assert orjson.loads(raw2)["id"] != body["id"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions", "/openai/v1/chat/completions"])
async def test_openai_paths(server, http, path):
    status, _, raw = await post(http, server.url + path, {"model": "m", "messages": USER})
    assert status == 200
    assert orjson.loads(raw)["choices"][0]["message"]["content"] == DEFAULT_TEXT


async def test_openai_stream_include_usage(server, http):
    body = {"model": "m", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    async with http.post(server.openai_base + "/chat/completions", json=body) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = parse_sse(await r.read())
    assert events[-1] == (None, "[DONE]")
    chunks = [d for _, d in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    # every chunk but the last carries "usage": null; the last has empty choices and the usage
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
    final = chunks[-1]
    assert final["choices"] == []
    assert final["usage"]["prompt_tokens"] == USER_TOKENS
    assert final["usage"]["completion_tokens"] == len(DEFAULT_TEXT.split())
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text == DEFAULT_TEXT
    # word by word
    assert sum(1 for c in chunks[:-1] if c["choices"][0]["delta"].get("content")) == len(DEFAULT_TEXT.split())


async def test_openai_stream_without_usage_and_stream_options_validation(server, http):
    body = {"model": "m", "messages": USER, "stream": True}
    async with http.post(server.openai_base + "/chat/completions", json=body) as r:
        events = parse_sse(await r.read())
    chunks = [d for _, d in events[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # like the real API: stream_options without stream is a 400
    bad = {"model": "m", "messages": USER, "stream_options": {"include_usage": True}}
    status, _, raw = await post(http, server.openai_base + "/chat/completions", bad)
    assert status == 400
    assert orjson.loads(raw)["error"]["type"] == "invalid_request_error"


async def test_max_tokens_truncates_every_format(server, http):
    _, _, raw = await post(
        http, server.openai_base + "/chat/completions", {"model": "m", "messages": USER, "max_tokens": 2}
    )
    b = orjson.loads(raw)
    assert b["choices"][0]["message"]["content"] == "mock reply"
    assert b["choices"][0]["finish_reason"] == "length"
    assert b["usage"]["completion_tokens"] == 2
    _, _, raw = await post(
        http, server.openai_base + "/chat/completions", {"model": "m", "messages": USER, "max_completion_tokens": 3}
    )
    assert orjson.loads(raw)["choices"][0]["message"]["content"] == "mock reply to:"

    _, _, raw = await post(http, server.url + "/v1/messages", {"model": "c", "messages": USER, "max_tokens": 2})
    b = orjson.loads(raw)
    assert b["content"][0]["text"] == "mock reply"
    assert b["stop_reason"] == "max_tokens"
    assert b["usage"]["output_tokens"] == 2

    gem = {"contents": [{"role": "user", "parts": [{"text": "hello there friend"}]}]}
    gem["generationConfig"] = {"maxOutputTokens": 2}
    _, _, raw = await post(http, server.gemini_base + "/models/g:generateContent", gem)
    b = orjson.loads(raw)
    assert b["candidates"][0]["content"]["parts"][0]["text"] == "mock reply"
    assert b["candidates"][0]["finishReason"] == "MAX_TOKENS"

    body = {"model": "o", "messages": USER, "stream": False, "options": {"num_predict": 2}}
    _, _, raw = await post(http, server.url + "/api/chat", body)
    b = orjson.loads(raw)
    assert b["message"]["content"] == "mock reply"
    assert b["done_reason"] == "length"
    assert b["eval_count"] == 2


# ----------------------------------------------------------------------------- Anthropic


async def test_anthropic_non_stream_shape(server, http):
    body = {"model": "claude-x", "system": "be brief", "messages": USER, "max_tokens": 100}
    status, headers, raw = await post(http, server.url + "/v1/messages", body)
    assert status == 200
    assert headers["request-id"].startswith("req_")
    b = orjson.loads(raw)
    assert b["type"] == "message"
    assert b["id"].startswith("msg_")
    assert b["role"] == "assistant"
    assert b["model"] == "claude-x"
    assert b["content"] == [{"type": "text", "text": DEFAULT_TEXT}]
    assert b["stop_reason"] == "end_turn"
    assert b["stop_sequence"] is None
    u = b["usage"]
    assert u["input_tokens"] == USER_TOKENS + 3  # "be brief" = 2 words + 1
    assert u["output_tokens"] == len(DEFAULT_TEXT.split())
    assert u["cache_read_input_tokens"] == 0
    assert u["cache_creation_input_tokens"] == 0


async def test_anthropic_validation_errors(server, http):
    status, _, raw = await post(http, server.url + "/v1/messages", {"model": "c", "messages": USER})
    assert status == 400
    b = orjson.loads(raw)
    assert b["type"] == "error"
    assert b["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in b["error"]["message"]
    assert b["request_id"].startswith("req_")
    msgs = [{"role": "system", "content": "x"}, *USER]
    status, _, raw = await post(http, server.url + "/v1/messages", {"model": "c", "messages": msgs, "max_tokens": 5})
    assert status == 400
    assert orjson.loads(raw)["error"]["type"] == "invalid_request_error"


async def test_anthropic_stream_events(server, http):
    body = {"model": "c", "messages": USER, "max_tokens": 100, "stream": True}
    async with http.post(server.url + "/v1/messages", json=body) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = parse_sse(await r.read())
    names = [e for e, _ in events]
    assert all(e == d["type"] for e, d in events)
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    start = events[0][1]["message"]
    assert start["usage"]["input_tokens"] == USER_TOKENS
    assert start["content"] == [] and start["stop_reason"] is None
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    text = "".join(d["delta"]["text"] for e, d in events if e == "content_block_delta")
    assert text == DEFAULT_TEXT
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == len(DEFAULT_TEXT.split())


# ----------------------------------------------------------------------------- Gemini

GEMINI_BODY = {
    "systemInstruction": {"parts": [{"text": "be brief"}]},
    "contents": [{"role": "user", "parts": [{"text": "hello there friend"}]}],
}


async def test_gemini_generate_content(server, http):
    status, _, raw = await post(
        http, server.gemini_base + "/models/gemini-x:generateContent", GEMINI_BODY, {"x-goog-api-key": "k"}
    )
    assert status == 200
    b = orjson.loads(raw)
    cand = b["candidates"][0]
    assert cand["content"] == {"parts": [{"text": DEFAULT_TEXT}], "role": "model"}
    assert cand["finishReason"] == "STOP"
    u = b["usageMetadata"]
    assert u["promptTokenCount"] == USER_TOKENS + 3
    assert u["candidatesTokenCount"] == len(DEFAULT_TEXT.split())
    assert u["totalTokenCount"] == u["promptTokenCount"] + u["candidatesTokenCount"]
    assert b["modelVersion"] == "gemini-x"
    assert b["responseId"]


async def test_gemini_stream_sse_and_array(server, http):
    url = server.gemini_base + "/models/gemini-x:streamGenerateContent?alt=sse"
    async with http.post(url, json=GEMINI_BODY) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        raw = await r.read()
    assert b"\r\n\r\n" in raw
    chunks = [d for _, d in parse_sse(raw)]
    assert len(chunks) == len(DEFAULT_TEXT.split())
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == DEFAULT_TEXT
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    last = chunks[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"]["candidatesTokenCount"] == len(DEFAULT_TEXT.split())
    assert last["usageMetadata"]["promptTokenCount"] == USER_TOKENS + 3

    async with http.post(server.gemini_base + "/models/gemini-x:streamGenerateContent", json=GEMINI_BODY) as r:
        arr = json.loads(await r.read())
    assert isinstance(arr, list) and arr[-1]["candidates"][0]["finishReason"] == "STOP"
    assert server.requests[-1]["stream"] is True
    assert server.requests[-1]["model"] == "gemini-x"


async def test_gemini_bad_role_and_unknown_method(server, http):
    bad = {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}
    status, _, raw = await post(http, server.gemini_base + "/models/g:generateContent", bad)
    assert status == 400
    assert orjson.loads(raw)["error"]["status"] == "INVALID_ARGUMENT"
    status, _, _ = await post(http, server.gemini_base + "/models/g:embedStuff", GEMINI_BODY)
    assert status == 404


# ----------------------------------------------------------------------------- Ollama


async def test_ollama_stream_and_single(server, http):
    async with http.post(server.url + "/api/chat", json={"model": "llama", "messages": USER}) as r:
        assert r.headers["Content-Type"].startswith("application/x-ndjson")
        lines = parse_ndjson(await r.read())
    assert all(not x["done"] for x in lines[:-1])
    assert "".join(x["message"]["content"] for x in lines) == DEFAULT_TEXT
    last = lines[-1]
    assert last["done"] is True and last["done_reason"] == "stop"
    assert last["prompt_eval_count"] == USER_TOKENS
    assert last["eval_count"] == len(DEFAULT_TEXT.split())
    assert last["model"] == "llama" and last["created_at"].endswith("Z")

    _, headers, raw = await post(http, server.url + "/api/chat", {"model": "llama", "messages": USER, "stream": False})
    assert headers["Content-Type"].startswith("application/json")
    b = orjson.loads(raw)
    assert b["message"] == {"role": "assistant", "content": DEFAULT_TEXT}
    assert b["done"] is True and b["prompt_eval_count"] == USER_TOKENS


# ----------------------------------------------------------------------------- listing


async def test_model_lists_and_health(http):
    async with MockServer(models=["a", "b"]) as srv:
        async with http.get(srv.url + "/health") as r:
            assert (await r.json())["status"] == "ok"
        async with http.get(srv.openai_base + "/models") as r:
            b = await r.json()
        assert b["object"] == "list" and [m["id"] for m in b["data"]] == ["a", "b"]
        async with http.get(srv.url + "/v1/models", headers={"anthropic-version": "2023-06-01"}) as r:
            b = await r.json()
        assert b["data"][0]["type"] == "model" and b["has_more"] is False
        async with http.get(srv.gemini_base + "/models") as r:
            assert (await r.json())["models"][0]["name"] == "models/a"
        async with http.get(srv.url + "/api/tags") as r:
            assert (await r.json())["models"][1]["name"] == "b"


# ----------------------------------------------------------------------------- scripted replies


async def test_scripted_text_and_usage_per_provider(server, http):
    usage = {"input_tokens": 100, "output_tokens": 30, "cache_read_tokens": 60, "cache_write_tokens": 10}
    server.script(text="scripted answer", reasoning_tokens=20, times=4, **usage)
    _, _, raw = await post(http, server.openai_base + "/chat/completions", {"model": "m", "messages": USER})
    u = orjson.loads(raw)["usage"]
    assert orjson.loads(raw)["choices"][0]["message"]["content"] == "scripted answer"
    assert (u["prompt_tokens"], u["completion_tokens"]) == (100, 30)
    assert u["prompt_tokens_details"]["cached_tokens"] == 60
    assert u["completion_tokens_details"]["reasoning_tokens"] == 20

    _, _, raw = await post(http, server.url + "/v1/messages", {"model": "c", "messages": USER, "max_tokens": 50})
    u = orjson.loads(raw)["usage"]
    # Anthropic reports uncached input separately from cache reads and writes
    assert (u["input_tokens"], u["cache_read_input_tokens"], u["cache_creation_input_tokens"]) == (30, 60, 10)
    assert u["output_tokens"] == 30

    _, _, raw = await post(http, server.gemini_base + "/models/g:generateContent", GEMINI_BODY)
    u = orjson.loads(raw)["usageMetadata"]
    assert u["promptTokenCount"] == 100 and u["cachedContentTokenCount"] == 60
    assert u["candidatesTokenCount"] == 10 and u["thoughtsTokenCount"] == 20
    assert u["totalTokenCount"] == 130

    body = {"model": "o", "messages": USER, "stream": True}
    async with http.post(server.url + "/api/chat", json=body) as r:
        last = parse_ndjson(await r.read())[-1]
    assert (last["prompt_eval_count"], last["eval_count"]) == (100, 30)
    assert server.pending == []


async def test_scripted_tool_calls(server, http):
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    server.script(tool_calls=[call], times=5)
    _, _, raw = await post(http, server.openai_base + "/chat/completions", {"model": "m", "messages": USER})
    ch = orjson.loads(raw)["choices"][0]
    assert ch["finish_reason"] == "tool_calls"
    assert ch["message"]["content"] is None
    tc = ch["message"]["tool_calls"][0]
    assert tc["type"] == "function" and tc["function"]["name"] == "get_weather"
    assert json.loads(tc["function"]["arguments"]) == {"city": "Paris"}

    body = {"model": "m", "messages": USER, "stream": True}
    async with http.post(server.openai_base + "/chat/completions", json=body) as r:
        chunks = [d for _, d in parse_sse(await r.read())[:-1]]
    deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    assert deltas[0]["id"] and deltas[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"

    body = {"model": "c", "messages": USER, "max_tokens": 50, "stream": True}
    async with http.post(server.url + "/v1/messages", json=body) as r:
        events = parse_sse(await r.read())
    start = next(d for e, d in events if e == "content_block_start")
    assert start["content_block"]["type"] == "tool_use" and start["content_block"]["id"].startswith("toolu_")
    partial = "".join(d["delta"]["partial_json"] for e, d in events if e == "content_block_delta")
    assert json.loads(partial) == {"city": "Paris"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"

    _, _, raw = await post(http, server.gemini_base + "/models/g:generateContent", GEMINI_BODY)
    parts = orjson.loads(raw)["candidates"][0]["content"]["parts"]
    assert parts == [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]

    _, _, raw = await post(http, server.url + "/api/chat", {"model": "o", "messages": USER, "stream": False})
    assert orjson.loads(raw)["message"]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    ]


# ----------------------------------------------------------------------------- errors


async def test_rate_limit_429_with_retry_after_every_format(server, http):
    server.script(status=429, retry_after=7, times=4)
    status, headers, raw = await post(http, server.openai_base + "/chat/completions", {"model": "m", "messages": USER})
    assert status == 429 and headers["Retry-After"] == "7"
    err = orjson.loads(raw)["error"]
    assert err["code"] == "rate_limit_exceeded" and err["message"] and "param" in err

    status, headers, raw = await post(
        http, server.url + "/v1/messages", {"model": "c", "messages": USER, "max_tokens": 5}
    )
    assert status == 429 and headers["Retry-After"] == "7"
    b = orjson.loads(raw)
    assert b["type"] == "error" and b["error"]["type"] == "rate_limit_error"

    status, headers, raw = await post(http, server.gemini_base + "/models/g:generateContent", GEMINI_BODY)
    assert status == 429 and headers["Retry-After"] == "7"
    err = orjson.loads(raw)["error"]
    assert err["code"] == 429 and err["status"] == "RESOURCE_EXHAUSTED"
    assert err["details"][0]["retryDelay"] == "7s"

    status, _, raw = await post(http, server.url + "/api/chat", {"model": "o", "messages": USER})
    assert status == 429 and isinstance(orjson.loads(raw)["error"], str)


async def test_server_errors_and_overloaded(server, http):
    server.script(status=500)
    status, _, raw = await post(http, server.openai_base + "/chat/completions", {"model": "m", "messages": USER})
    assert status == 500 and orjson.loads(raw)["error"]["type"] == "server_error"
    server.script(error="overloaded")
    status, _, raw = await post(http, server.url + "/v1/messages", {"model": "c", "messages": USER, "max_tokens": 5})
    assert status == 529 and orjson.loads(raw)["error"]["type"] == "overloaded_error"
    server.script(error="context_length")
    status, _, raw = await post(http, server.openai_base + "/chat/completions", {"model": "m", "messages": USER})
    assert status == 400 and orjson.loads(raw)["error"]["code"] == "context_length_exceeded"
    server.script(status=503, error_type="my_type", error_message="custom")
    status, _, raw = await post(http, server.url + "/v1/messages", {"model": "c", "messages": USER, "max_tokens": 5})
    assert status == 503 and orjson.loads(raw)["error"] == {"type": "my_type", "message": "custom"}
    # the queue is drained: the next call succeeds
    status, _, _ = await post(http, server.openai_base + "/chat/completions", {"model": "m", "messages": USER})
    assert status == 200


# ----------------------------------------------------------------------------- faults


async def test_fault_reset(server, http):
    server.script(fault="reset")
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, server.openai_base + "/chat/completions", {"model": "m", "messages": USER})
    status, _, _ = await post(http, server.openai_base + "/chat/completions", {"model": "m", "messages": USER})
    assert status == 200


async def test_fault_cut_stream(server, http):
    server.script(fault="cut_stream", text="one two three four five six", cut_after=3)
    body = {"model": "m", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(server.openai_base + "/chat/completions", json=body) as r:
            assert r.status == 200
            async for piece in r.content.iter_any():
                received += piece
    events = parse_sse(received)
    assert len(events) == 3
    assert all(d != "[DONE]" and d["choices"][0]["finish_reason"] is None for _, d in events)

    # non-streaming: a truncated body under the full Content-Length
    server.script(fault="cut_stream")
    with pytest.raises(aiohttp.ClientPayloadError):
        await post(http, server.url + "/v1/messages", {"model": "c", "messages": USER, "max_tokens": 5})

    # Anthropic stream cut: no message_stop
    server.script(fault="cut_stream")
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        body = {"model": "c", "messages": USER, "max_tokens": 50, "stream": True}
        async with http.post(server.url + "/v1/messages", json=body) as r:
            async for piece in r.content.iter_any():
                received += piece
    names = [e for e, _ in parse_sse(received)]
    assert names[0] == "message_start" and "message_stop" not in names


async def test_fault_malformed(server, http):
    server.script(fault="malformed")
    status, _, raw = await post(http, server.openai_base + "/chat/completions", {"model": "m", "messages": USER})
    assert status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    server.script(fault="malformed")
    async with http.post(server.url + "/api/chat", json={"model": "o", "messages": USER}) as r:
        lines = (await r.read()).decode().splitlines()
    json.loads(lines[0])
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[1])


async def test_fault_stream_error_event(server, http):
    server.script(fault="stream_error", error="overloaded")
    body = {"model": "c", "messages": USER, "max_tokens": 50, "stream": True}
    async with http.post(server.url + "/v1/messages", json=body) as r:
        events = parse_sse(await r.read())
    assert events[-1][0] == "error"
    assert events[-1][1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


async def test_fault_slow_and_latency(server, http):
    server.script(fault="slow", latency=5)
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            server.openai_base + "/chat/completions",
            json={"model": "m", "messages": USER},
            timeout=aiohttp.ClientTimeout(total=0.2),
        ) as r:
            await r.read()
    server.reset()  # the slow one was consumed; reset also clears the log
    assert server.requests == []
    server.script(latency=0.15)
    t0 = time.perf_counter()
    status, _, _ = await post(http, server.openai_base + "/chat/completions", {"model": "m", "messages": USER})
    assert status == 200 and time.perf_counter() - t0 >= 0.15


async def test_chunk_delay(server, http):
    server.script(text="a b c d e", chunk_delay=0.05)
    body = {"model": "m", "messages": USER, "stream": True}
    t0 = time.perf_counter()
    stamps = []
    async with http.post(server.openai_base + "/chat/completions", json=body) as r:
        async for _ in r.content:
            stamps.append(time.perf_counter() - t0)
    # 5 words + role chunk + finish chunk + [DONE] = 8 frames, 7 gaps of 50 ms
    assert stamps[-1] >= 0.3
    assert stamps[0] < 0.2


async def test_times_repeat_and_targeting(server, http):
    url = server.openai_base + "/chat/completions"
    server.script(status=500, times=2)
    assert [(await post(http, url, {"model": "m", "messages": USER}))[0] for _ in range(3)] == [500, 500, 200]

    server.script(MockReply(status=503, repeat=True))
    assert [(await post(http, url, {"model": "m", "messages": USER}))[0] for _ in range(4)] == [503] * 4
    server.clear_scripts()
    assert (await post(http, url, {"model": "m", "messages": USER}))[0] == 200

    # per-model scripts win over global ones and only answer their model; provider filters format
    server.script(
        {"text": "global"}, {"text": "for b", "model": "b"}, Script(text="anthropic only", provider="anthropic")
    )
    _, _, raw = await post(http, url, {"model": "a", "messages": USER})
    assert orjson.loads(raw)["choices"][0]["message"]["content"] == "global"
    _, _, raw = await post(http, url, {"model": "a", "messages": USER})
    assert orjson.loads(raw)["choices"][0]["message"]["content"] == DEFAULT_TEXT
    _, _, raw = await post(http, url, {"model": "b", "messages": USER})
    assert orjson.loads(raw)["choices"][0]["message"]["content"] == "for b"
    _, _, raw = await post(http, server.url + "/v1/messages", {"model": "a", "messages": USER, "max_tokens": 9})
    assert orjson.loads(raw)["content"][0]["text"] == "anthropic only"


async def test_model_latency(http):
    async with MockServer(model_latency={"fast-a": 0.02, "slow-b": 0.2}) as srv:
        url = srv.openai_base + "/chat/completions"

        async def timed(model):
            t0 = time.perf_counter()
            await post(http, url, {"model": model, "messages": USER})
            return time.perf_counter() - t0

        fast, slow = await timed("fast-a"), await timed("slow-b")
        assert 0.02 <= fast < 0.15 and slow >= 0.2
        srv.set_model_latency("slow-b", None)
        assert await timed("slow-b") < 0.15


# ----------------------------------------------------------------------------- admin + auth


async def test_admin_endpoints(server, http):
    scripts = [{"status": 429, "retry_after": 2}, {"text": "from admin", "usage": {"input": 9, "output": 4}}]
    async with http.post(server.url + "/__mock__/script", json=scripts) as r:
        assert r.status == 200 and (await r.json())["queued"] == 2
    async with http.get(server.url + "/__mock__/scripts") as r:
        assert [s["remaining"] for s in await r.json()] == [1, 1]
    url = server.openai_base + "/chat/completions"
    body = {"model": "m", "messages": USER, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 7}
    status, _, _ = await post(http, url, body, {"Authorization": "Bearer sk-secret"})
    assert status == 429
    async with http.post(url, json=body) as r:
        events = parse_sse(await r.read())
    assert events[-2][1]["usage"]["prompt_tokens"] == 9

    async with http.get(server.url + "/__mock__/requests") as r:
        log = await r.json()
    assert len(log) == 2
    first = log[0]
    assert first["path"] == "/v1/chat/completions" and first["model"] == "m" and first["format"] == "openai"
    assert first["body"]["stream_options"]["include_usage"] is True
    assert first["body"]["max_tokens"] == 7
    assert first["auth"] is True and first["auth_header"] == "authorization"
    assert "sk-secret" not in json.dumps(log)
    assert log[1]["auth"] is False

    async with http.post(server.url + "/__mock__/script", json=[{"fault": "explode"}]) as r:
        assert r.status == 400
    async with http.post(server.url + "/__mock__/config", json={"model_latency": {"x": 0.01}}) as r:
        assert (await r.json())["model_latency"] == {"x": 0.01}
    server.script(status=500)
    async with http.post(server.url + "/__mock__/reset") as r:
        assert r.status == 200
    assert server.pending == [] and server.requests == []


async def test_require_key(http):
    async with MockServer(require_key="good") as srv:
        url = srv.openai_base + "/chat/completions"
        status, _, raw = await post(http, url, {"model": "m", "messages": USER}, {"Authorization": "Bearer bad"})
        assert status == 401 and orjson.loads(raw)["error"]["code"] == "invalid_api_key"
        status, _, _ = await post(http, url, {"model": "m", "messages": USER})
        assert status == 401
        assert (await post(http, url, {"model": "m", "messages": USER}, {"Authorization": "Bearer good"}))[0] == 200

        body = {"model": "c", "messages": USER, "max_tokens": 5}
        status, _, raw = await post(http, srv.url + "/v1/messages", body, {"x-api-key": "bad"})
        assert status == 401 and orjson.loads(raw)["error"]["type"] == "authentication_error"
        assert (await post(http, srv.url + "/v1/messages", body, {"x-api-key": "good"}))[0] == 200

        gurl = srv.gemini_base + "/models/g:generateContent"
        status, _, raw = await post(http, gurl, GEMINI_BODY, {"x-goog-api-key": "bad"})
        assert status == 400 and orjson.loads(raw)["error"]["details"][0]["reason"] == "API_KEY_INVALID"
        status, _, _ = await post(http, gurl, GEMINI_BODY)
        assert status == 403
        assert (await post(http, gurl + "?key=good", GEMINI_BODY))[0] == 200
        assert srv.requests[-1]["auth_header"] == "query:key" and "key" not in srv.requests[-1]["query"]

        status, _, raw = await post(http, srv.url + "/api/chat", {"model": "o", "messages": USER})
        assert status == 401 and orjson.loads(raw) == {"error": "unauthorized"}


async def test_bad_json_body(server, http):
    async with http.post(server.openai_base + "/chat/completions", data=b"{nope") as r:
        assert r.status == 400
        assert (await r.json())["error"]["type"] == "invalid_request_error"
    assert server.requests[-1]["raw"] == "{nope"


def test_mock_reply_from_dict_and_validation():
    r = MockReply.from_dict({"text": "x", "usage": {"input": 5, "cached": 2, "reasoning": 1}, "repeat": True})
    assert (r.input_tokens, r.cache_read_tokens, r.reasoning_tokens, r.times) == (5, 2, 1, None)
    assert MockReply(error="rate_limit").status == 429
    assert MockReply(fault="slow").latency > 0
    with pytest.raises(ValueError):
        MockReply(fault="nope")
    with pytest.raises(ValueError):
        MockReply.from_dict({"bogus": 1})


# ----------------------------------------------------------------------------- runners


def _urlopen(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_run_in_thread_sync():
    with MockServer.run_in_thread() as srv:
        assert srv.url.startswith("http://127.0.0.1:") and srv.openai_base == srv.url + "/v1"
        srv.script(status=500)
        assert _urlopen(srv.openai_base + "/chat/completions", {"model": "m", "messages": USER})[0] == 500
        status, body = _urlopen(srv.openai_base + "/chat/completions", {"model": "m", "messages": USER})
        assert status == 200 and body["choices"][0]["message"]["content"] == DEFAULT_TEXT
        assert len(srv.requests) == 2
        port = srv.port
    with socket.socket() as s:  # the port is released after the block
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_cli_subprocess():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = "import sys; from llm_connect.testing import main; main(sys.argv[1:])"
    cmd = [sys.executable, "-c", code, "--port", str(port), "--latency", "m2=0.01"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert f"127.0.0.1:{port}" in line
            url = f"http://127.0.0.1:{port}"
            assert _urlopen(url + "/health")[0] == 200
            data = json.dumps([{"status": 429}]).encode()
            urllib.request.urlopen(urllib.request.Request(url + "/__mock__/script", data=data), timeout=10).close()
            assert _urlopen(url + "/v1/chat/completions", {"model": "m2", "messages": USER})[0] == 429
            assert _urlopen(url + "/__mock__/requests")[1][0]["model"] == "m2"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
