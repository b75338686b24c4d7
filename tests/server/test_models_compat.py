"""GET /v1/models and /v1/models/{model} through the official openai SDK, and the headers SDKs send on their own."""

from __future__ import annotations

import pytest

from .conftest import ACME_KEY, ADMIN_KEY, BETA_KEY, GatewayProc, auth, base_config, http

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("models")
    cfg = base_config(mock, workdir)
    cfg["models"] = {**cfg["models"], "vendor/helper": "quality"}
    g = GatewayProc(cfg, workdir, name="models").start()
    yield g
    g.stop()


def client(gw, key):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def test_list_and_retrieve_agree_and_describe_what_each_name_can_do(gw):
    listed = {m.id: m for m in client(gw, ACME_KEY).models.list()}
    assert {"quality", "fast", "plain", "fake", "gpt", "vendor/helper"} <= set(listed)
    for name, entry in listed.items():
        one = client(gw, ACME_KEY).models.retrieve(name)  # the SDK percent-encodes the "/" of vendor/helper
        assert one.id == name and one.object == "model" and one.model_dump() == entry.model_dump()
    quality, fast = listed["quality"].model_dump(), listed["fast"].model_dump()
    assert quality["kind"] == "group" and listed["vendor/helper"].model_dump()["kind"] == "alias"
    # an Anthropic (count endpoint) and an OpenAI deployment (tiktoken) count exactly; Ollama does not
    # (Anthropic has no embedding API; the OpenAI deployment of quality embeds)
    assert quality["capabilities"] == {
        "chat": True,
        "streaming": True,
        "tools": True,
        "exact_token_count": True,
        "embeddings": True,
    }
    assert fast["capabilities"]["exact_token_count"] is False and fast["capabilities"]["tools"] is True
    assert listed["fake"].model_dump()["capabilities"]["tools"] is False
    assert listed["fake"].model_dump()["capabilities"]["embeddings"] is False
    only_anthropic = client(gw, ACME_KEY).models.retrieve("anthropic:claude-x").model_dump()
    assert only_anthropic["capabilities"]["embeddings"] is False
    assert "deployments" not in quality  # a tenant key does not see where a group goes
    assert listed["vendor/helper"].model_dump()["capabilities"] == quality["capabilities"]
    assert listed["plain"].model_dump().get("default") is True
    spec = client(gw, ACME_KEY).models.retrieve("openai:gpt-4o-mini").model_dump()
    assert spec["kind"] == "spec" and spec["capabilities"]["chat"] is True


def test_the_admin_key_sees_the_deployments_and_never_a_key(gw):
    quality = client(gw, ADMIN_KEY).models.retrieve("quality").model_dump()
    assert [(d["provider"], d["model"], d["name"]) for d in quality["deployments"]] == [
        ("anthropic", "claude-q", "q-anthropic"),
        ("openai", "gpt-q", "q-openai"),
    ]
    assert not any("key" in k for d in quality["deployments"] for k in d)


def test_unknown_and_forbidden_models_are_the_same_404(gw):
    with pytest.raises(openai.NotFoundError) as unknown:
        client(gw, ACME_KEY).models.retrieve("no-such-model")
    with pytest.raises(openai.NotFoundError) as forbidden:
        client(gw, BETA_KEY).models.retrieve("vendor/helper")  # beta may use fast, plain, gpt and fake only
    for exc in (unknown, forbidden):
        assert exc.value.body["code"] == "model_not_found"
    assert {m.id for m in client(gw, BETA_KEY).models.list()} == {"fast", "plain", "gpt", "fake"}
    status, _, _ = http("DELETE", gw.url + "/v1/models/fast", headers=auth(ACME_KEY))
    assert status == 405
    status, _, _ = http("GET", gw.url + "/v1/models/", headers=auth(ACME_KEY))
    assert status == 404


def test_headers_sdks_send_on_their_own_change_nothing(gw):
    sdk = openai.OpenAI(
        base_url=gw.url + "/v1",
        api_key=ACME_KEY,
        organization="org-abc",
        project="proj_abc",
        max_retries=0,
        default_headers={
            "OpenAI-Beta": "assistants=v2",
            "x-stainless-custom": "odd; value=1, (x)",
            "anthropic-version": "x",
        },
    )
    reply = sdk.chat.completions.with_raw_response.create(
        model="fast",
        messages=[{"role": "user", "content": "compat"}],
        extra_body={"a_field_from_a_newer_sdk": {"nested": [1, 2]}, "prediction": None},
    )
    assert reply.status_code == 200 and reply.parse().choices[0].message.content
    status, _, body = http(
        "POST",
        gw.url + "/v1/chat/completions",
        {"model": "fast", "messages": [{"role": "user", "content": "x"}]},
        headers={**auth(ACME_KEY), "x-stainless-retry-count": "NaN", "OpenAI-Organization": ""},
    )
    assert status == 200, body
