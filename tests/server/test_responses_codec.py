"""The pure Responses codec: request shapes -> the core contract, answers -> output items (no gateway)."""

from __future__ import annotations

import json

import pytest

from llm_connect.types import Usage
from llm_connect.wire.inbound import openai_responses as c

FN = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}, "strict": True}
NS = {"type": "namespace", "name": "agents", "tools": [{"type": "function", "name": "spawn", "description": "d"}]}
PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"},
}


def ids(prefix: str) -> str:
    return f"{prefix}_1"


def test_tools_become_chat_tools_and_built_ins_are_dropped_or_refused():
    ts = c.parse_tools(
        [FN, NS, PATCH, {"type": "web_search"}, {"type": "web_search"}, {"type": "mcp", "server_label": "x"}]
    )
    names = [t["function"]["name"] for t in ts.chat]
    assert names == ["f", "agents__spawn", "apply_patch"]
    assert ts.chat[0]["function"]["strict"] is True
    assert (
        ts.chat[2]["function"]["parameters"]["required"] == ["input"]
        and "start: x" in ts.chat[2]["function"]["description"]
    )
    assert ts.dropped == ["web_search", "mcp"]
    assert [t["type"] for t in ts.echo] == ["function", "namespace", "custom"]
    assert ts.call_name("agents__spawn") == ("agents", "spawn", "function")
    with pytest.raises(c.RequestProblem) as e:
        c.parse_tools([FN, {"type": "file_search"}], builtin_tools="refuse")
    assert (e.value.status, e.value.param, e.value.code) == (400, "tools[1]", "unsupported_tool")
    assert "file_search" in e.value.message
    with pytest.raises(c.RequestProblem, match="defined twice"):
        c.parse_tools([FN, FN])
    assert c.parse_tools(None).chat is None and c.parse_tools([{"type": "web_search"}]).chat is None


def test_tool_choice():
    ts = c.parse_tools([FN, NS, {"type": "web_search"}])
    assert c.parse_tool_choice("auto", ts) == "auto" and c.parse_tool_choice(None, ts) is None
    assert c.parse_tool_choice({"type": "function", "name": "spawn"}, ts) == {
        "type": "function",
        "function": {"name": "agents__spawn"},
    }
    for forced in ({"type": "web_search_preview"}, {"type": "file_search"}, {"type": "mcp", "server_label": "s"}):
        with pytest.raises(c.RequestProblem) as e:
            c.parse_tool_choice(forced, ts)
        assert e.value.status == 400 and e.value.code == "unsupported_tool" and forced["type"] in e.value.message
    with pytest.raises(c.RequestProblem, match="only built-in tools"):
        c.parse_tool_choice("required", c.parse_tools([{"type": "web_search"}]))
    with pytest.raises(c.RequestProblem, match="names no tool"):
        c.parse_tool_choice({"type": "function", "name": "nope"}, ts)
    allowed = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]}
    assert c.parse_tool_choice(allowed, ts) == "required"
    assert [t["function"]["name"] for t in ts.chat] == ["f"]  # narrowed to the allowed ones


def test_text_format():
    assert c.parse_text_format(None) == (None, {"format": {"type": "text"}})
    assert c.parse_text_format({"format": {"type": "json_object"}})[0] == {"type": "json_object"}
    fmt, _ = c.parse_text_format({"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}})
    assert fmt == {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}
    with pytest.raises(c.RequestProblem, match=r"text\.format\.schema"):
        c.parse_text_format({"format": {"type": "json_schema", "name": "n"}})


def test_input_items_become_chat_messages():
    items = c.input_items(
        [
            {"role": "developer", "content": "rules"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "let me look"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "spawn", "namespace": "agents", "arguments": '{"a":1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
            {"type": "custom_tool_call", "call_id": "c3", "name": "apply_patch", "input": "*** patch"},
            {"type": "custom_tool_call_output", "call_id": "c3", "output": "done"},
        ]
    )
    msgs = c.to_messages(items, "be brief")
    assert msgs[0] == {"role": "system", "content": "be brief"}
    assert msgs[1] == {"role": "developer", "content": "rules"}
    assert msgs[2]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
    }
    assistant = msgs[3]  # the reasoning item is not sent; both calls ride on the assistant turn before them
    assert assistant["content"] == "let me look"
    assert [t["function"]["name"] for t in assistant["tool_calls"]] == ["f", "agents__spawn"]
    assert msgs[4:6] == [
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]
    assert json.loads(msgs[6]["tool_calls"][0]["function"]["arguments"]) == {"input": "*** patch"}
    assert msgs[7] == {"role": "tool", "tool_call_id": "c3", "content": "done"}
    assert c.input_items("hi") == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ]


@pytest.mark.parametrize(
    ("value", "status", "param"),
    [
        ([], 422, "input"),
        ([{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}], 400, "input[0].content[0].type"),
        ([{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}], 400, "input[0].content[0].file_id"),
        ([{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}], 422, "input[0].arguments"),
        ([{"type": "web_search_call", "id": "x"}], 400, "input[0].type"),
    ],
)
def test_bad_input_names_the_field(value, status, param):
    with pytest.raises(c.RequestProblem) as e:
        c.input_items(value)
    assert (e.value.status, e.value.param) == (status, param)


def test_output_items_and_the_response_object():
    ts = c.parse_tools([FN, NS, PATCH])
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "agents__spawn", "arguments": '{"x":1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "apply_patch", "arguments": '{"input":"*** p"}'}},
    ]
    out = c.output_items("", calls, ts, ids)
    assert [o["type"] for o in out] == ["function_call", "custom_tool_call"]
    assert (out[0]["name"], out[0]["namespace"], out[0]["call_id"]) == ("spawn", "agents", "call_a")
    assert out[1]["input"] == "*** p" and "namespace" not in out[1]
    assert c.output_items("", None, ts, ids)[0]["content"][0]["text"] == ""  # an empty answer is one empty message
    body = c.response_object(
        "resp_1", 1, "m", {"store": True}, output=out, usage=c.usage_object(Usage(3, 4)), finish="length"
    )
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"]["total_tokens"] == 7 and "cost_usd" not in body["usage"]
    assert c.usage_object(Usage(1, 1), None, with_cost=True)["cost_usd"] is None
