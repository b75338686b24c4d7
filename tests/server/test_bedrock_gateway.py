"""Bedrock behind the gateway: a router group spanning Bedrock and Azure OpenAI deployments with a fallback,
the official openai SDK as the client, the shipped mock server as both providers (SigV4 verified by it)."""

from __future__ import annotations

import pytest

from llm_connect.testing import MockReply

from .conftest import GatewayProc, aws_env, base_config

pytestmark = pytest.mark.usefixtures("clean_mock")

BEDROCK_MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
AZURE_KEY = "0123456789abcdef0123456789abcdef"
USER = [{"role": "user", "content": "hello enterprise"}]


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bedrock-gw")
    cfg = base_config(mock, workdir)
    cfg["providers"]["bedrock"] = {"api_base": mock.url, "options": {"region": "us-west-2"}}
    azure = {
        "model": "azure:prod-mini",
        "name": "azure-mini",
        "api_base": mock.url,
        "api_key": AZURE_KEY,
        "options": {"api_version": "2024-10-21", "models": {"prod-mini": "gpt-4o-mini"}},
    }
    cfg["router"]["groups"]["enterprise"] = [{"model": f"bedrock:{BEDROCK_MODEL}", "name": "bedrock-haiku"}, azure]
    cfg["router"]["groups"]["claude"] = [{"model": f"bedrock:{BEDROCK_MODEL}", "name": "bedrock-only"}]
    cfg["router"]["fallbacks"]["claude"] = ["plain"]
    g = GatewayProc(cfg, workdir, name="bedrock-gw", env=aws_env(workdir)).start()
    yield g
    g.stop()


def test_bedrock_answers_first_signed_and_priced(client, mock):
    raw = client.chat.completions.with_raw_response.create(model="enterprise", messages=USER, max_tokens=40)
    r = raw.parse()
    assert r.choices[0].message.content == "mock reply to: hello enterprise"
    assert raw.headers["x-llm-provider"] == "bedrock"
    (req,) = mock.requests
    assert req["format"] == "bedrock" and req["path"] == f"/model/{BEDROCK_MODEL}/converse"
    assert req["body"]["inferenceConfig"] == {"maxTokens": 40}
    assert r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 5


def test_throttled_bedrock_falls_to_azure_in_the_group(client, mock):
    mock.script(MockReply(provider="bedrock", error="rate_limit"))
    raw = client.chat.completions.with_raw_response.create(model="enterprise", messages=USER)
    assert raw.parse().choices[0].message.content == "mock reply to: hello enterprise"
    assert raw.headers["x-llm-provider"] == "azure"
    assert [q["format"] for q in mock.requests] == ["bedrock", "azure"]


def test_a_stream_from_bedrock_through_the_sdk(client, mock):
    stream = client.chat.completions.create(
        model="enterprise", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "mock reply to: hello enterprise"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert mock.last_request["path"] == f"/model/{BEDROCK_MODEL}/converse-stream"


def test_a_bedrock_group_down_falls_back_to_another_group(client, mock):
    mock.script(MockReply(provider="bedrock", error="unavailable", repeat=True))
    r = client.chat.completions.create(model="claude", messages=USER)
    assert r.choices[0].message.content == "mock reply to: hello enterprise"
    assert [q["format"] for q in mock.requests] == ["bedrock", "openai"]
