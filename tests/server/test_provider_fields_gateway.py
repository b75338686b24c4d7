"""What long-tail upstreams add reaches gateway clients in those providers' own shapes, over real HTTP with the
official SDKs against a gateway process and the shipped mock server scripted as each provider replies:

* reasoning text as ``reasoning_content`` in ``choices[0].message`` and in stream deltas (DeepSeek's shape), from
  DeepSeek and from any upstream that reasons (Claude thinking, Gemini thoughts);
* a provider row's kept fields at the top level of the body and of the stream's closing chunks (Perplexity's
  ``citations`` and ``search_results``);
* ``/v1/responses``: the reasoning as a ``reasoning`` output item with one ``summary_text`` part (and its
  ``response.reasoning_summary_*`` stream events); ``/v1/messages`` (translated): a ``thinking`` block;
* nothing of the kind, not even a ``null``, when the upstream had none.
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from llm_connect.testing import MockReply

from .conftest import ACME_KEY, PROVIDER_KEY, GatewayProc, auth, base_config, http

USER = [{"role": "user", "content": "9.11 or 9.8: which is greater?"}]
THINKING = "Compare the tenths: 0.1 is less than 0.8, so 9.8 is greater."
ANSWER = "9.8 is greater."
#: docs.perplexity.ai: citations (URLs) and search_results at the top level of the body and of stream chunks
CITATIONS = ["https://example.com/decimals", "https://example.com/compare"]
SEARCH_RESULTS = [
    {"title": "Comparing decimals", "url": "https://example.com/decimals", "date": "2025-03-01"},
    {"title": "How to compare numbers", "url": "https://example.com/compare", "date": None},
]


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    cfg = base_config(mock, tmp_path_factory.mktemp("fields"))
    groups = cfg["router"]["groups"]
    key = {"api_key": PROVIDER_KEY}
    groups["ds"] = [{"model": "deepseek:deepseek-reasoner", "name": "ds", "api_base": mock.openai_base, **key}]
    groups["px"] = [{"model": "perplexity:sonar-pro", "name": "px", "api_base": mock.url, **key}]
    groups["claude"] = [
        {"model": "anthropic:claude-think", "name": "cl", "api_base": mock.anthropic_base, **key},
    ]
    groups["gem"] = [{"model": "gemini:gemini-think", "name": "gm", "api_base": mock.url, **key}]
    g = GatewayProc(cfg, tmp_path_factory.mktemp("fields-run")).start()
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def scripted(mock):
    mock.reset()
    mock.script(
        MockReply(model="deepseek-reasoner", thinking=THINKING, text=ANSWER, reasoning_tokens=14, repeat=True),
        MockReply(
            model="sonar-pro",
            text="Nine point eight [1][2].",
            extra_fields={"citations": CITATIONS, "search_results": SEARCH_RESULTS},
            repeat=True,
        ),
        MockReply(model="claude-think", thinking=THINKING, text=ANSWER, repeat=True),
        MockReply(model="gemini-think", thinking=THINKING, text=ANSWER, repeat=True),
    )
    yield
    mock.reset()


@pytest.fixture
def client(gw):
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0) as c:
        yield c


def _raw_chat(gw, body):
    status, _, raw = http("POST", gw.url + "/v1/chat/completions", body, auth(ACME_KEY))
    assert status == 200, raw
    return json.loads(raw)


def _raw_stream(gw, body) -> list[dict]:
    status, _, raw = http("POST", gw.url + "/v1/chat/completions", {**body, "stream": True}, auth(ACME_KEY))
    assert status == 200, raw
    events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


# -- /v1/chat/completions: reasoning_content -------------------------------------------------------------------


@pytest.mark.parametrize("group", ["ds", "claude", "gem"])
def test_reasoning_content_in_the_message(client, group):
    r = client.chat.completions.create(model=group, messages=USER)
    msg = r.choices[0].message
    assert msg.content == ANSWER
    assert msg.reasoning_content == THINKING  # DeepSeek's field, beside content
    assert "citations" not in (r.model_extra or {})


@pytest.mark.parametrize("group", ["ds", "claude", "gem"])
def test_reasoning_content_in_stream_deltas(client, group):
    chunks = list(
        client.chat.completions.create(model=group, messages=USER, stream=True, stream_options={"include_usage": True})
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    assert reasoning == THINKING
    assert "".join(d.content or "" for d in deltas) == ANSWER
    first_text = next(i for i, d in enumerate(deltas) if d.content)
    last_reasoning = max(i for i, d in enumerate(deltas) if getattr(d, "reasoning_content", None))
    assert last_reasoning < first_text  # the thinking streams before the answer, as it came
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_deepseek_reasoning_tokens_reach_the_usage(client):
    r = client.chat.completions.create(model="ds", messages=USER)
    assert r.usage.completion_tokens_details.reasoning_tokens == 14


# -- /v1/chat/completions: Perplexity citations ----------------------------------------------------------------


def test_citations_at_the_top_level_of_the_body(client):
    r = client.chat.completions.create(model="px", messages=USER)
    assert r.choices[0].message.content == "Nine point eight [1][2]."
    assert r.citations == CITATIONS
    assert r.search_results == SEARCH_RESULTS
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")  # the body's own fields untouched
    assert getattr(r.choices[0].message, "reasoning_content", None) is None


def test_citations_on_the_closing_stream_chunks(client):
    chunks = list(
        client.chat.completions.create(model="px", messages=USER, stream=True, stream_options={"include_usage": True})
    )
    finish = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finish.citations == CITATIONS and finish.search_results == SEARCH_RESULTS
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.citations == CITATIONS
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Nine point eight [1][2]."


def test_async_sdk_sees_the_citations(gw):
    import asyncio

    async def go():
        async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0) as c:
            r = await c.chat.completions.create(model="px", messages=USER)
            stream = await c.chat.completions.create(model="px", messages=USER, stream=True)
            last = [ch async for ch in stream][-1]
            return r, last

    r, last = asyncio.run(go())
    assert r.citations == CITATIONS and last.citations == CITATIONS


# -- absent when the upstream had none -------------------------------------------------------------------------


def test_no_reasoning_nor_citation_keys_without_them(gw):
    body = _raw_chat(gw, {"model": "plain", "messages": USER})
    assert not {"citations", "search_results"} & body.keys()
    assert "reasoning_content" not in body["choices"][0]["message"]
    for event in _raw_stream(gw, {"model": "plain", "messages": USER, "stream_options": {"include_usage": True}}):
        assert not {"citations", "search_results"} & event.keys()
        for choice in event["choices"]:
            assert "reasoning_content" not in choice["delta"]


def test_raw_shapes_match_the_providers(gw):
    body = _raw_chat(gw, {"model": "ds", "messages": USER})
    assert body["choices"][0]["message"]["reasoning_content"] == THINKING
    events = _raw_stream(gw, {"model": "ds", "messages": USER})
    assert any(e["choices"] and "reasoning_content" in e["choices"][0]["delta"] for e in events)
    body = _raw_chat(gw, {"model": "px", "messages": USER})
    assert (body["citations"], body["search_results"]) == (CITATIONS, SEARCH_RESULTS)
    assert "reasoning_content" not in body["choices"][0]["message"]  # no reasoning: no key, not a null
    events = _raw_stream(gw, {"model": "px", "messages": USER})
    assert events[-1]["citations"] == CITATIONS and events[-1]["choices"][0]["finish_reason"] == "stop"


# -- /v1/responses: a reasoning item ---------------------------------------------------------------------------


def test_responses_reasoning_item(client):
    r = client.responses.create(model="ds", input="9.11 or 9.8?", store=False)
    assert [o.type for o in r.output] == ["reasoning", "message"]
    item = r.output[0]
    assert item.id.startswith("rs_")
    assert [(s.type, s.text) for s in item.summary] == [("summary_text", THINKING)]
    assert r.output_text == ANSWER


def test_responses_stream_reasoning_summary_events(client):
    events = list(client.responses.create(model="claude", input="9.11 or 9.8?", stream=True, store=False))
    kinds = [e.type for e in events]
    added = kinds.index("response.reasoning_summary_part.added")
    assert kinds[added - 1] == "response.output_item.added" and events[added - 1].item.type == "reasoning"
    text = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert text == THINKING
    done = next(e for e in events if e.type == "response.reasoning_summary_text.done")
    assert done.text == THINKING and done.summary_index == 0
    # the reasoning item is finished before the message starts
    assert kinds.index("response.reasoning_summary_part.done") < kinds.index("response.output_text.delta")
    final = events[-1]
    assert final.type == "response.completed"
    assert [o.type for o in final.response.output] == ["reasoning", "message"]
    assert final.response.output[0].summary[0].text == THINKING
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_responses_chain_after_a_reasoning_item(client):
    first = client.responses.create(model="ds", input="9.11 or 9.8?")
    second = client.responses.create(model="plain", input="and 9.7?", previous_response_id=first.id)
    assert [o.type for o in second.output] == ["message"]  # no reasoning upstream: no reasoning item


# -- /v1/messages (translated): a thinking block ---------------------------------------------------------------


@pytest.mark.parametrize("group", ["ds", "gem"])
def test_messages_thinking_block_from_any_upstream(gw, group):
    with anthropic.Anthropic(base_url=gw.url, api_key=ACME_KEY, max_retries=0) as c:
        msg = c.messages.create(model=group, max_tokens=500, messages=USER)
        assert [b.type for b in msg.content] == ["thinking", "text"]
        assert msg.content[0].thinking == THINKING and msg.content[1].text == ANSWER
        with c.messages.stream(model=group, max_tokens=500, messages=USER) as s:
            final = s.get_final_message()
        assert [b.type for b in final.content] == ["thinking", "text"]
        assert final.content[0].thinking == THINKING


# -- the documented models describe these bodies -----------------------------------------------------------------


def test_bodies_and_events_are_what_the_documented_models_describe(gw):
    from llm_connect.server import schemas
    from llm_connect.server.schemas_responses import ResponseObject, ResponseStreamEvent

    for group in ("ds", "px"):
        body = _raw_chat(gw, {"model": group, "messages": USER})
        assert schemas.ChatCompletion.model_validate(body).model_dump(mode="json", exclude_unset=True) == body
        for event in _raw_stream(gw, {"model": group, "messages": USER, "stream_options": {"include_usage": True}}):
            parsed = schemas.ChatCompletionChunk.model_validate(event)
            assert parsed.model_dump(mode="json", exclude_unset=True) == event
    url = gw.url + "/v1/responses"
    status, _, raw = http("POST", url, {"model": "ds", "input": "hi", "store": False}, auth(ACME_KEY))
    body = json.loads(raw)
    assert status == 200 and body["output"][0]["type"] == "reasoning"
    assert ResponseObject.model_validate(body, strict=True).model_dump(mode="json", exclude_unset=True) == body
    status, _, raw = http("POST", url, {"model": "ds", "input": "hi", "stream": True}, auth(ACME_KEY))
    events = [json.loads(line[6:]) for line in raw.decode().split("\n") if line.startswith("data: ")]
    assert any(e["type"] == "response.reasoning_summary_text.delta" for e in events)
    for data in events:
        assert ResponseStreamEvent.model_validate(data, strict=True).model_dump(exclude_unset=True) == data
