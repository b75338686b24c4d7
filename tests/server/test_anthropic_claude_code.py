"""A request Claude Code really sent (payloads/claude_code_request.json: streaming, system blocks with
cache_control, 24 tools, adaptive thinking, context_management, output_config, metadata.user_id, a role "system"
entry inside messages, eight betas) replayed through the gateway to both kinds of upstream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import ACME_KEY, PROVIDER_KEY, GatewayProc, base_config, http

CAPTURE = json.loads((Path(__file__).parent / "payloads" / "claude_code_request.json").read_text())


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("claude-code")
    cfg = base_config(mock, workdir)
    cfg["server"]["max_body_bytes"] = 1 << 20  # the captured body is 77 KB
    cfg["router"]["groups"]["claude"] = [
        {"model": "anthropic:claude-c", "name": "c-anthropic", "api_base": mock.anthropic_base, "api_key": PROVIDER_KEY}
    ]
    cfg["models"]["claude-opus-4-8"] = "claude"  # Claude Code's default model name, routed to the Anthropic group
    g = GatewayProc(cfg, workdir).start()
    yield g
    g.stop()


def sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def replay(gw: GatewayProc, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    headers = {**CAPTURE["headers"], "x-api-key": ACME_KEY}
    status, hdrs, raw = http(CAPTURE["method"], gw.url + CAPTURE["path"], body, headers)
    assert status == 200, raw
    assert hdrs["content-type"].startswith("text/event-stream") and hdrs["request-id"]
    events = sse(raw)
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"], names
    text = "".join(d["delta"].get("text", "") for name, d in events if name == "content_block_delta")
    assert text.startswith("mock reply to: <system-reminder>")  # the mock echoes the user turn's first words
    return events


def test_claude_codes_request_replays_through_both_kinds_of_upstream(gw, mock):
    body = CAPTURE["body"]
    assert body["stream"] is True and len(body["tools"]) == 24 and body["messages"][1]["role"] == "system"

    # an Anthropic upstream: the body as it is (model mapped), with the client's betas
    mock.reset()
    events = replay(gw, body)
    (sent,) = [r for r in mock.requests if r["path"] == "/v1/messages"]
    assert sent["body"] == {**body, "model": "claude-c"}
    assert sent["headers"]["anthropic-beta"] == CAPTURE["headers"]["anthropic-beta"]
    assert sent["headers"]["anthropic-version"] == CAPTURE["headers"]["anthropic-version"]
    assert events[0][1]["message"]["model"] == "claude-c"

    # an OpenAI upstream: translated; the Anthropic-only fields are dropped, the system-role entry is a system message
    mock.reset()
    events = replay(gw, {**body, "model": "plain"})
    (sent,) = [r for r in mock.requests if r["path"].endswith("/chat/completions")]
    out = sent["body"]
    assert {"context_management", "output_config", "thinking", "metadata", "system", "reasoning_effort"}.isdisjoint(out)
    assert [m["role"] for m in out["messages"]] == ["system", "user", "system"]
    assert out["messages"][0]["content"] == "\n\n".join(b["text"] for b in body["system"])
    assert out["messages"][1]["content"] == [
        {"type": "text", "text": b["text"]} for b in body["messages"][0]["content"]
    ]
    assert out["messages"][2]["content"] == body["messages"][1]["content"]
    assert [t["function"]["name"] for t in out["tools"]] == [t["name"] for t in body["tools"]]
    assert out["tools"][1]["function"]["parameters"] == body["tools"][1]["input_schema"]
    assert out["max_completion_tokens"] == body["max_tokens"] and out["stream"] is True
    assert events[0][1]["message"]["model"] == "gpt-plain"
    assert events[-2][1]["usage"]["output_tokens"] == 14  # "mock reply to:", ten words and " ..."
