"""The request Codex (codex-cli 0.171.0) really sends, replayed through the gateway: the stream must hold the events
Codex needs, in its order (an output item announced before its text deltas, the item finished, then
response.completed with usage), its web_search tool dropped and named, its namespace tools flattened and named back.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from llm_connect.testing import MockReply

from .conftest import ACME_KEY, GatewayProc, base_config, http

CAPTURED = json.loads((Path(__file__).parent / "payloads" / "codex_responses_request.json").read_text())
BODY = CAPTURED["body"]


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    work = tmp_path_factory.mktemp("codex")
    cfg = base_config(mock, work, responses={"store": str(work / "responses.sqlite3")})
    cfg["models"]["gw-model"] = "plain"  # the model name in Codex's config.toml
    g = GatewayProc(cfg, work).start()
    yield g
    g.stop()


def replay(gw: GatewayProc, body: dict) -> tuple[dict[str, str], list[tuple[str, dict]]]:
    """POST the body with Codex's own headers; (response headers, [(event name, data)])."""
    headers = {**CAPTURED["headers"], "authorization": f"Bearer {ACME_KEY}"}
    req = urllib.request.Request(gw.url + CAPTURED["path"], json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(req, timeout=20) as r:
        assert r.status == 200
        got = {k.lower(): v for k, v in r.headers.items()}
        text = r.read().decode()
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return got, events


def test_codex_request_streams_the_events_codex_needs_in_its_order(gw, mock):
    headers, events = replay(gw, BODY)
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-llm-tools-dropped"] == "web_search"  # dropped, not refused: Codex always sends it
    names = [name for name, _ in events]
    assert all(name == data["type"] for name, data in events)  # the SSE event name is the data's type
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert names.count("response.completed") == 1 and "error" not in names

    # every text delta belongs to an item announced before it and finished after it
    added = {d["item"]["id"]: i for i, (n, d) in enumerate(events) if n == "response.output_item.added"}
    done = {d["item"]["id"]: i for i, (n, d) in enumerate(events) if n == "response.output_item.done"}
    deltas = [(i, d) for i, (n, d) in enumerate(events) if n == "response.output_text.delta"]
    assert deltas and added.keys() == done.keys()
    for i, d in deltas:
        assert added[d["item_id"]] < i < done[d["item_id"]]
    final_item = events[max(done.values())][1]["item"]
    assert final_item["type"] == "message" and final_item["content"][0]["type"] == "output_text"
    assert "".join(d["delta"] for _, d in deltas) == final_item["content"][0]["text"] == "mock reply to: say hi"

    completed = events[-1][1]["response"]
    assert completed["id"].startswith("resp_") and completed["status"] == "completed"
    assert completed["output"] == [final_item]
    usage = completed["usage"]  # the fields Codex reads for its "tokens used" line
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    assert usage["input_tokens_details"]["cached_tokens"] == 0
    assert usage["output_tokens_details"]["reasoning_tokens"] == 0

    sent = mock.last_request["body"]  # what the upstream got: Codex's prompt, its runnable tools
    assert [m["role"] for m in sent["messages"]] == ["developer", "developer", "user", "user"]
    assert sent["messages"][-1]["content"] == "say hi"
    names_sent = [t["function"]["name"] for t in sent["tools"]]
    assert len(names_sent) == 12 and "multi_agent_v1__spawn_agent" in names_sent and "exec_command" in names_sent
    assert sent["tool_choice"] == "auto"
    # store: false, as Codex sends it: nothing to retrieve
    code, _, _ = http(
        "GET", f"{gw.url}/v1/responses/{completed['id']}", headers={"Authorization": f"Bearer {ACME_KEY}"}
    )
    assert code == 404


def test_a_namespaced_tool_call_comes_back_under_its_namespace(gw, mock):
    call = {"name": "multi_agent_v1__spawn_agent", "arguments": {"message": "look around"}}
    mock.script(MockReply(provider="openai", tool_calls=[call], finish_reason="tool_calls"))
    _, events = replay(gw, BODY)
    added = next(d["item"] for n, d in events if n == "response.output_item.added")
    assert (added["type"], added["name"], added["namespace"]) == ("function_call", "spawn_agent", "multi_agent_v1")
    item = events[-1][1]["response"]["output"][0]
    assert json.loads(item["arguments"]) == {"message": "look around"} and item["status"] == "completed"

    # Codex's next turn sends the call and its output back as items: they reach the upstream under the same name
    follow = {
        **BODY,
        "input": [
            *BODY["input"],
            {k: item[k] for k in ("type", "name", "namespace", "arguments", "call_id")},
            {"type": "function_call_output", "call_id": item["call_id"], "output": "agent started"},
        ],
    }
    replay(gw, follow)
    msgs = mock.last_request["body"]["messages"]
    assert msgs[-2]["tool_calls"][0]["function"]["name"] == "multi_agent_v1__spawn_agent"
    assert msgs[-1] == {"role": "tool", "tool_call_id": item["call_id"], "content": "agent started"}
