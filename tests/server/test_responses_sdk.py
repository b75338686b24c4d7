"""POST /v1/responses with the official openai SDK against a running gateway, routed to an OpenAI upstream and to an
Anthropic upstream (the mock server speaks both): create, stream, tools round trip, previous_response_id,
retrieve, delete, tenancy, built-in tools and the errors."""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal

import openai
import pytest

from llm_connect.testing import MockReply

from .conftest import ACME_KEY, BETA_KEY, PROVIDER_KEY, GatewayProc, base_config, http

#: group -> (the mock's wire format, the upstream model id)
UPSTREAMS = {"plain": ("openai", "gpt-plain"), "claude": ("anthropic", "claude-r")}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    work = tmp_path_factory.mktemp("responses")
    cfg = base_config(mock, work)
    cfg["router"]["groups"]["claude"] = [
        {"model": "anthropic:claude-r", "name": "r-anthropic", "api_base": mock.anthropic_base, "api_key": PROVIDER_KEY}
    ]
    cfg["router"]["groups"]["priced"] = [{"model": "openai:gpt-4o-mini", "name": "p-mini"}]
    cfg["responses"] = {"store": str(work / "responses.sqlite3")}
    g = GatewayProc(cfg, work).start()
    yield g
    g.stop()


@pytest.fixture
def client(gw):
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0) as c:
        yield c


def sse_events(url: str, body: dict, key: str) -> list[dict]:
    """The data of every event of an SSE answer (read with urllib, no SDK in between)."""
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[6:]) for line in r.read().decode().splitlines() if line.startswith("data: ")]


def upstream_body(mock, fmt: str) -> dict:
    return next(r for r in reversed(mock.requests) if r["format"] == fmt)["body"]


@pytest.mark.parametrize("group", UPSTREAMS)
def test_create_returns_the_response_object(client, mock, group):
    fmt, model = UPSTREAMS[group]
    raw = client.responses.with_raw_response.create(
        model=group,
        input="hello there friend",
        instructions="Answer briefly.",
        max_output_tokens=50,
        temperature=0.2,
        metadata={"ticket": "T-1"},
    )
    r = raw.parse()
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.output_text == "mock reply to: hello there friend"
    msg = r.output[0]
    assert (msg.type, msg.role, msg.status, msg.content[0].type) == ("message", "assistant", "completed", "output_text")
    assert msg.id.startswith("msg_") and msg.content[0].annotations == []
    assert r.model == model
    if fmt == "openai":  # the mock counts words + 1 per message: the system message is 3, the user's 4
        assert (r.usage.input_tokens, r.usage.output_tokens) == (7, 6)
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.usage.input_tokens_details.cached_tokens == 0 and r.usage.output_tokens_details.reasoning_tokens == 0
    assert (r.instructions, r.temperature, r.max_output_tokens, r.metadata) == (
        "Answer briefly.",
        0.2,
        50,
        {"ticket": "T-1"},
    )
    assert r.store is True and r.tool_choice == "auto" and r.tools == [] and r.previous_response_id is None
    assert raw.headers["x-llm-provider"] == fmt and raw.headers["x-llm-model"] == model
    sent = upstream_body(mock, fmt)
    if fmt == "openai":
        assert sent["messages"][0] == {"role": "system", "content": "Answer briefly."}
        assert sent["max_completion_tokens"] == 50 and sent["temperature"] == 0.2
    else:
        assert sent["system"] == "Answer briefly." and sent["max_tokens"] == 50
        assert sent["messages"] == [{"role": "user", "content": "hello there friend"}]


@pytest.mark.parametrize("group", UPSTREAMS)
def test_stream_events_and_the_sdks_final_response(client, group):
    with client.responses.stream(model=group, input="stream me please", instructions="x") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(d.delta for d in deltas) == "mock reply to: stream me please"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    item_id = events[2].item.id
    assert all(d.item_id == item_id and d.output_index == 0 and d.content_index == 0 for d in deltas)
    assert final.output_text == "mock reply to: stream me please" and final.status == "completed"
    assert final.usage.total_tokens > 0 and final.output[0].id == item_id
    assert final.usage.model_extra["cost_usd"] is None  # the mock's models have no price
    assert client.responses.retrieve(final.id).output_text == final.output_text  # stored before completed


def test_streamed_cost_is_the_json_answers_cost(client):
    with client.responses.stream(model="priced", input="hello there friend") as stream:
        final = stream.get_final_response()
    raw = client.responses.with_raw_response.create(model="priced", input="hello there friend")
    assert Decimal(final.usage.model_extra["cost_usd"]) == Decimal(raw.headers["x-llm-cost-usd"]) > 0


def _script_call(mock, fmt: str, **args) -> None:
    mock.script(
        MockReply(provider=fmt, tool_calls=[{"name": "get_weather", "arguments": args}], finish_reason="tool_calls")
    )


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("group", UPSTREAMS)
def test_tools_round_trip_through_previous_response_id(client, mock, group, stream):
    fmt, _ = UPSTREAMS[group]
    _script_call(mock, fmt, city="Paris")
    ask = {"model": group, "input": "weather in Paris?", "tools": [WEATHER]}
    if stream:
        with client.responses.stream(**ask) as s:
            events = list(s)
            r = s.get_final_response()
        kinds = [e.type for e in events]
        assert "response.function_call_arguments.delta" in kinds
        assert kinds.index("response.output_item.added") < kinds.index("response.function_call_arguments.delta")
        assert kinds[-3:] == [
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    else:
        r = client.responses.create(**ask)
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and r.output[-1] is calls[0]
    fc = calls[0]
    assert fc.name == "get_weather" and json.loads(fc.arguments) == {"city": "Paris"}
    assert fc.id.startswith("fc_") and fc.call_id and fc.status == "completed"
    assert r.tools[0].name == "get_weather"
    sent = upstream_body(mock, fmt)
    tool = sent["tools"][0]
    assert (tool["function"]["name"] if fmt == "openai" else tool["name"]) == "get_weather"

    r2 = client.responses.create(
        model=group,
        previous_response_id=r.id,
        input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "sunny, 21 C"}],
        tools=[WEATHER],
    )
    assert r2.output_text.startswith("mock reply to:") and r2.previous_response_id == r.id
    sent = upstream_body(mock, fmt)
    if fmt == "openai":
        assistant, result = sent["messages"][-2:]
        assert assistant["tool_calls"][0]["id"] == fc.call_id
        assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
        assert result == {"role": "tool", "tool_call_id": fc.call_id, "content": "sunny, 21 C"}
    else:
        assistant, result = sent["messages"][-2:]
        use = next(b for b in assistant["content"] if b["type"] == "tool_use")
        assert (use["id"], use["name"], use["input"]) == (fc.call_id, "get_weather", {"city": "Paris"})
        assert result["content"][0]["type"] == "tool_result" and result["content"][0]["tool_use_id"] == fc.call_id


def test_stateless_tool_round_trip_sends_the_items_back(client, mock):
    """Codex's way: store false, and the whole conversation (calls and outputs included) in every request."""
    items = [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "call_9", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call_output", "call_id": "call_9", "output": [{"type": "input_text", "text": "snow"}]},
    ]
    r = client.responses.create(model="plain", input=items, tools=[WEATHER], store=False)
    assert r.store is False
    msgs = upstream_body(mock, "openai")["messages"]
    assert msgs[1]["role"] == "assistant" and msgs[1]["tool_calls"][0]["id"] == "call_9"
    assert msgs[2] == {"role": "tool", "tool_call_id": "call_9", "content": "snow"}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)


def test_previous_response_chain_retrieve_and_delete(client, mock):
    a = client.responses.create(model="plain", input="first words", instructions="only for the first")
    b = client.responses.create(model="claude", input="second words", previous_response_id=a.id)
    c = client.responses.create(model="plain", input="third words", previous_response_id=b.id)
    msgs = upstream_body(mock, "openai")["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]  # no instructions
    assert [m["content"] for m in msgs[::2]] == ["first words", "second words", "third words"]
    assert msgs[3]["content"] == "mock reply to: second words"
    got = client.responses.retrieve(c.id)
    assert got.id == c.id and got.output_text == c.output_text and got.previous_response_id == b.id
    assert got.model_dump() == c.model_dump()
    client.responses.delete(b.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(b.id)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="plain", input="more", previous_response_id=b.id)
    assert e.value.body["code"] == "previous_response_not_found" and e.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(b.id)


def test_another_tenants_response_is_not_found(gw, client):
    mine = client.responses.create(model="plain", input="private words")
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=BETA_KEY, max_retries=0) as other:
        with pytest.raises(openai.NotFoundError) as e:
            other.responses.retrieve(mine.id)
        assert e.value.status_code == 404 and e.value.body["code"] == "response_not_found"
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(mine.id)
        with pytest.raises(openai.BadRequestError):
            other.responses.create(model="plain", input="x", previous_response_id=mine.id)
    assert client.responses.retrieve(mine.id).output_text == mine.output_text  # still there for its owner


def test_text_format_json_schema_reaches_the_upstream(client, mock):
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}
    r = client.responses.create(model="plain", input="give json", text={"format": fmt})
    sent = upstream_body(mock, "openai")["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}
    assert r.text.format.type == "json_schema"
    client.responses.create(model="plain", input="give json", text={"format": {"type": "json_object"}})
    assert upstream_body(mock, "openai")["response_format"] == {"type": "json_object"}


def test_max_output_tokens_makes_it_incomplete(client):
    r = client.responses.create(model="plain", input="one two three four five six", max_output_tokens=2)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    with client.responses.stream(model="plain", input="one two three four", max_output_tokens=2) as s:
        events = list(s)
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


def test_built_in_tools_are_dropped_and_named_in_a_header(client, mock):
    tools = [WEATHER, {"type": "web_search", "external_web_access": False}, {"type": "file_search"}]
    raw = client.responses.with_raw_response.create(model="plain", input="hi there", tools=tools)
    assert raw.headers["x-llm-tools-dropped"] == "web_search, file_search"
    assert [t["function"]["name"] for t in upstream_body(mock, "openai")["tools"]] == ["get_weather"]
    assert [t.type for t in raw.parse().tools] == ["function"]  # the tools the model had
    with pytest.raises(openai.BadRequestError) as e:  # forcing a tool the gateway cannot run is refused
        client.responses.create(model="plain", input="hi", tools=tools, tool_choice={"type": "web_search_preview"})
    assert e.value.body["code"] == "unsupported_tool" and "web_search_preview" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="plain", input="hi", tools=tools[1:], tool_choice="required")
    assert "web_search" in e.value.body["message"]


def test_bad_requests_are_openai_error_bodies(gw):
    url = gw.url + "/v1/responses"
    key = {"Authorization": f"Bearer {ACME_KEY}"}
    cases = [
        ({"model": "plain"}, 422, "input"),
        ({"model": "plain", "input": [{"type": "message", "role": "robot", "content": "x"}]}, 422, "input[0].role"),
        ({"model": "plain", "input": "x", "max_output_tokens": 0}, 422, "max_output_tokens"),
        ({"model": "plain", "input": "x", "tools": [{"type": "function"}]}, 422, "tools[0].name"),
        ({"model": "plain", "input": "x", "background": True}, 400, "background"),
        ({"model": "plain", "input": "x", "text": {"format": {"type": "yaml"}}}, 422, "text.format.type"),
        ({"model": "plain", "input": [{"type": "item_reference", "id": "msg_1"}]}, 400, "input[0].type"),
    ]
    for body, status, param in cases:
        code, _, raw = http("POST", url, body, key)
        err = json.loads(raw)["error"]
        assert (code, err["param"]) == (status, param), (body, raw)
        assert err["type"] == "invalid_request_error" and err["message"]
    assert http("GET", gw.url + "/v1/responses", headers=key)[0] == 405
    assert http("GET", gw.url + "/v1/responses/resp_nope", headers={})[0] == 401


def test_an_error_after_the_start_is_an_error_event_then_response_failed(gw, mock):
    mock.script(MockReply(provider="openai", fault="stream_error", text="one two three four five six seven"))
    events = sse_events(gw.url + "/v1/responses", {"model": "plain", "input": "hi", "stream": True}, ACME_KEY)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created" and kinds[-2:] == ["error", "response.failed"]
    assert events[-1]["response"]["status"] == "failed" and events[-1]["response"]["error"]["message"]


@pytest.mark.parametrize("group", UPSTREAMS)
def test_bodies_and_events_are_what_the_documented_models_describe(gw, mock, group):
    from llm_connect.server.schemas_responses import ResponseDeleted, ResponseObject, ResponseStreamEvent

    fmt, _ = UPSTREAMS[group]
    key = {"Authorization": f"Bearer {ACME_KEY}"}
    url = gw.url + "/v1/responses"
    for scripted in (False, True):
        if scripted:
            _script_call(mock, fmt, city="Rome")
        code, _, raw = http("POST", url, {"model": group, "input": "hi", "tools": [WEATHER]}, key)
        assert code == 200
        body = json.loads(raw)
        assert ResponseObject.model_validate(body, strict=True).model_dump(mode="json", exclude_unset=True) == body
        if scripted:
            _script_call(mock, fmt, city="Rome")
        events = sse_events(url, {"model": group, "input": "hi", "tools": [WEATHER], "stream": True}, ACME_KEY)
        for data in events:
            assert ResponseStreamEvent.model_validate(data, strict=True).model_dump(exclude_unset=True) == data
    code, _, raw = http("DELETE", f"{url}/{body['id']}", headers=key)
    assert code == 200 and ResponseDeleted.model_validate(json.loads(raw), strict=True)


def test_reasoning_effort_reaches_an_openai_upstream(client, mock):
    r = client.responses.create(model="plain", input="think", reasoning={"effort": "high"})
    assert upstream_body(mock, "openai")["reasoning_effort"] == "high"
    assert r.reasoning.effort == "high"
    client.responses.create(model="plain", input="no effort")
    assert "reasoning_effort" not in upstream_body(mock, "openai")
