"""A model group spanning Azure OpenAI, Google Vertex AI and Amazon Bedrock deployments, with a fallback group of
Claude on Vertex, through a real gateway process, with the official openai SDK as the client and the shipped mock
server as every upstream (Azure's api-key paths, Vertex's publisher paths with OAuth tokens from the mock's token
endpoint, Bedrock's Converse paths with SigV4 signatures the mock verifies).

    enterprise: [azure:prod-4o, vertex:gemini-2.5-flash, bedrock:us.anthropic.claude-3-5-haiku…]   (ordered)
    fallbacks:  enterprise -> claude
    claude:     [vertex_anthropic:claude-sonnet-4-5@20250929]
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import genai_prices
import openai
import pytest

from llm_connect.testing import MockReply
from llm_connect.usage import Ledger

from .conftest import GatewayProc, aws_env, base_config

pytest.importorskip("google.auth")
pytest.importorskip("botocore")
pytestmark = pytest.mark.usefixtures("clean_mock")

KEY = "ent-key-0123456789abcdef-xyz"
AZURE_KEY = "0123456789abcdef0123456789abcdef"
GEMINI = "gemini-2.5-flash"
CLAUDE = "claude-sonnet-4-5@20250929"
BEDROCK = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
USER = [{"role": "user", "content": "route me somewhere"}]


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("enterprise")
    account = workdir / "service-account.json"
    account.write_text(json.dumps(mock.google.service_account(mock.url + "/token")))
    cfg = base_config(mock, workdir)
    cfg["providers"].update(
        {
            "azure": {"api_key": AZURE_KEY, "api_base": mock.url, "options": {"api_version": "2024-10-21"}},
            "vertex": {"api_base": mock.url, "options": {"credentials_file": str(account), "location": "us-central1"}},
            "vertex_anthropic": {
                "api_base": mock.url,
                "options": {"credentials_file": str(account), "location": "us-east5"},
            },
            "bedrock": {"api_base": mock.url, "options": {"region": "us-west-2"}},
        }
    )
    router = cfg["router"]
    router["groups"].update(
        {
            "enterprise": [
                {"model": "azure:prod-4o", "name": "e-azure", "options": {"models": {"prod-4o": "gpt-4o"}}},
                {"model": f"vertex:{GEMINI}", "name": "e-gemini"},
                {"model": f"bedrock:{BEDROCK}", "name": "e-bedrock"},
            ],
            "claude": [{"model": f"vertex_anthropic:{CLAUDE}", "name": "e-claude"}],
        }
    )
    router["fallbacks"]["enterprise"] = ["claude"]
    router["cooldown"] = {"allowed_fails": 1000, "cooldown_time": 0.01}  # each test sees every deployment
    cfg["tenants"]["ent"] = {"budget": {"usd": "5"}}
    cfg["api_keys"].append({"name": "ent", "key": KEY, "tenant": "ent", "models": ["*"]})
    g = GatewayProc(cfg, workdir, name="enterprise", env=aws_env(workdir)).start()
    g.workdir = workdir
    yield g
    g.stop()


@pytest.fixture
def client_key():
    return KEY


def upstream_paths(mock) -> list[str]:
    return [q["path"] for q in mock.requests if q["path"] != "/token"]


def price(provider_id: str, model: str, usage) -> Decimal:
    u = genai_prices.Usage(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens)
    return genai_prices.calc_price(u, model, provider_id=provider_id).total_price


def ledger_of(gw, raw):
    """The call's one charged ledger row (there must be exactly one) and the rows of its failed attempts."""
    with Ledger.open(gw.workdir / "usage.sqlite3") as led:
        rows = [
            r for r in led.query(tenant_id="ent") if r.metadata.get("gateway_request_id") == raw.headers["x-request-id"]
        ]
    (row,) = [r for r in rows if r.success]
    return row, [r for r in rows if not r.success]


def test_the_first_deployment_answers_when_all_are_up(client, mock):
    raw = client.chat.completions.with_raw_response.create(model="enterprise", messages=USER, max_tokens=40)
    r = raw.parse()
    assert r.choices[0].message.content == "mock reply to: route me somewhere"
    assert raw.headers["x-llm-provider"] == "azure"
    assert upstream_paths(mock) == ["/openai/deployments/prod-4o/chat/completions"]


def test_azure_throttled_vertex_gemini_answers(client, mock, gw):
    mock.script(MockReply(model="prod-4o", status=429, repeat=True))
    raw = client.chat.completions.with_raw_response.create(model="enterprise", messages=USER, max_tokens=40)
    r = raw.parse()
    assert raw.headers["x-llm-provider"] == "vertex" and r.model == GEMINI
    assert upstream_paths(mock) == [
        "/openai/deployments/prod-4o/chat/completions",
        f"/v1/projects/mock-project/locations/us-central1/publishers/google/models/{GEMINI}:generateContent",
    ]
    row, failed = ledger_of(gw, raw)  # one charged row for the call; the throttled attempt costs nothing
    assert [(r.provider, r.cost_usd) for r in failed] == [("azure", None)]
    assert row.provider == "vertex" and row.metadata["deployment"] == "e-gemini"
    assert row.cost_usd == price("google", GEMINI, r.usage) > 0


def test_azure_and_vertex_down_bedrock_answers_signed_and_priced(client, mock, gw):
    mock.script(
        MockReply(model="prod-4o", status=503, repeat=True),
        MockReply(model=GEMINI, status=429, error_type="RESOURCE_EXHAUSTED", repeat=True),
    )
    raw = client.chat.completions.with_raw_response.create(model="enterprise", messages=USER, max_tokens=40)
    r = raw.parse()
    assert raw.headers["x-llm-provider"] == "bedrock"
    assert r.choices[0].message.content == "mock reply to: route me somewhere"
    assert [q["format"] for q in mock.requests if q["path"] != "/token"] == ["azure", "gemini", "bedrock"]
    assert mock.requests[-1]["path"] == f"/model/{BEDROCK}/converse"  # the mock verified its SigV4 signature
    row, failed = ledger_of(gw, raw)
    assert sorted(r.provider for r in failed) == ["azure", "vertex"]
    assert row.provider == "bedrock" and row.metadata["deployment"] == "e-bedrock"
    assert row.cost_usd == price("aws", BEDROCK, r.usage) > 0


def test_group_down_the_claude_fallback_answers_and_streams(client, mock, gw):
    mock.script(
        MockReply(model="prod-4o", status=503, repeat=True),
        MockReply(model=GEMINI, status=503, error_type="UNAVAILABLE", repeat=True),
        MockReply(provider="bedrock", error="unavailable", repeat=True),
    )
    raw = client.chat.completions.with_raw_response.create(model="enterprise", messages=USER, max_tokens=40)
    r = raw.parse()
    assert raw.headers["x-llm-provider"] == "vertex_anthropic"
    assert r.choices[0].message.content == "mock reply to: route me somewhere"
    claude_path = f"/v1/projects/mock-project/locations/us-east5/publishers/anthropic/models/{CLAUDE}"
    assert upstream_paths(mock)[-1] == claude_path + ":rawPredict"
    mock.clear_requests()
    stream = client.chat.completions.create(
        model="enterprise", messages=USER, max_tokens=40, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "mock reply to: route me somewhere"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 6
    assert upstream_paths(mock)[-1] == claude_path + ":streamRawPredict"
    row, failed = ledger_of(gw, raw)
    assert sorted(r.provider for r in failed if r.cost_usd is None) == ["azure", "bedrock", "vertex"]
    assert row.provider == "vertex_anthropic" and row.cost_usd == price("anthropic", "claude-sonnet-4-5", r.usage)


async def test_concurrent_calls_through_vertex_share_the_gateways_tokens(gw, mock):
    mock.script(
        MockReply(model="prod-4o", status=429, repeat=True),
        MockReply(provider="bedrock", error="unavailable", repeat=True),
    )
    minted = mock.google.minted
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0) as c:
        rs = await asyncio.gather(
            *(c.chat.completions.create(model="enterprise", messages=USER, max_tokens=20) for _ in range(16))
        )
    assert {r.model for r in rs} <= {GEMINI, CLAUDE}  # every answer from Vertex (Claude: the group's fallback)
    assert GEMINI in {r.model for r in rs}
    assert mock.google.minted - minted <= 2  # at most one token per Vertex deployment that had none yet
