"""POST /v1/embeddings on a running gateway with the mock server upstream: the official openai SDK unchanged
(float and base64), routing with fallbacks, the protocol's errors, and hundreds of concurrent calls on one
budget (no overshoot, one ledger row per charged call, input tokens only, endpoint "/v1/embeddings")."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from decimal import Decimal

import openai
import pytest

from .conftest import PROVIDER_KEY, http

KEY = "embed-key-0123456789abcdef-xyz"
CAP = 1500
TEXT = "budget race"  # mock count 3; bound 11 + 4 = 15


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    from .conftest import GatewayProc

    workdir = tmp_path_factory.mktemp("embed-gw")
    cfg = {
        "server": {"host": "127.0.0.1", "request_timeout": 20},
        "ledger": {"url": str(workdir / "usage.sqlite3"), "synchronous": "NORMAL"},
        "providers": {"openai": {"api_key": PROVIDER_KEY, "api_base": mock.openai_base}},
        "router": {
            "groups": {
                "embed": [
                    {"model": "anthropic:claude-x", "api_base": mock.anthropic_base, "api_key": PROVIDER_KEY},
                    {"model": "openai:text-embedding-3-small", "name": "e-openai"},
                ],
                "embed-backup": [{"model": "gemini:gemini-embedding-001", "api_base": mock.url, "api_key": "g"}],
                "race": [
                    {"model": "openai:text-embedding-3-small", "name": "r-openai", "options": {"fit_to_budget": False}}
                ],
            },
            "fallbacks": {"embed": ["embed-backup"]},
            "strategy": "ordered",
            "num_retries": 0,
            "cooldown": {"allowed_fails": 1000, "cooldown_time": 0.01},
        },
        "models": {"small": "openai:text-embedding-3-small"},
        "default_model": "embed",
        "tenants": {"racers": {"budget": {"tokens": CAP}}, "free": {}},
        "api_keys": [
            {"name": "racers", "key": KEY, "tenant": "racers", "models": ["race"]},
            {"name": "free", "key": KEY + "-free", "tenant": "free", "models": ["*"]},
        ],
    }
    proc = GatewayProc(cfg, workdir, name="embed-gw").start()
    proc.ledger_path = workdir / "usage.sqlite3"
    yield proc
    proc.stop()


def _client(gw, key: str = KEY + "-free") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def _rows(gw, where: str = "1=1") -> list[sqlite3.Row]:
    con = sqlite3.connect(gw.ledger_path)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(f"SELECT * FROM llm_usage WHERE {where}").fetchall()
    finally:
        con.close()


def test_sdk_float_and_base64_agree_and_are_unit_vectors(gw, mock):
    c = _client(gw)
    texts = ["the quick brown fox", "jumps over the lazy dog"]
    as_float = c.embeddings.create(model="small", input=texts, encoding_format="float")
    as_b64 = c.embeddings.create(model="small", input=texts)  # the SDK asks for base64 and decodes it
    assert mock.requests[-1]["body"]["encoding_format"] == "float"  # upstream: floats either way
    assert [d.index for d in as_float.data] == [0, 1]
    for a, b in zip(as_float.data, as_b64.data, strict=True):
        assert len(a.embedding) == 64 and a.embedding == pytest.approx(b.embedding, rel=1e-6)
        assert math.isclose(math.fsum(x * x for x in a.embedding), 1.0, rel_tol=1e-5)
    assert as_float.model == "text-embedding-3-small"
    assert as_float.usage.prompt_tokens == as_float.usage.total_tokens == 11


def test_dimensions_reach_the_provider_and_the_cost_is_a_header(gw, mock):
    raw = _client(gw).embeddings.with_raw_response.create(model="small", input="hello there", dimensions=8)
    resp = raw.parse()
    assert len(resp.data[0].embedding) == 8
    assert mock.requests[-1]["body"]["dimensions"] == 8
    assert Decimal(raw.headers["x-llm-cost-usd"]) == Decimal("0.02") * 3 / 1_000_000
    assert raw.headers["x-llm-provider"] == "openai"


def test_a_group_skips_chat_only_deployments_and_falls_back(gw, mock):
    c = _client(gw)
    resp = c.embeddings.create(model="embed", input="routed text", encoding_format="float")
    assert resp.model == "text-embedding-3-small"  # the Anthropic deployment was passed over
    mock.script(model="text-embedding-3-small", error="server", times=1)
    resp = c.embeddings.create(model="embed", input="fallback text", encoding_format="float")
    assert resp.model == "gemini-embedding-001"
    assert resp.usage.prompt_tokens == 3  # counted by Gemini's count endpoint


def test_the_protocols_errors(gw):
    c = _client(gw)
    with pytest.raises(openai.BadRequestError) as info:
        c.embeddings.create(model="small", input=[[101, 102]])
    assert "token-id" in info.value.message
    with pytest.raises(openai.UnprocessableEntityError) as info:
        c.embeddings.create(model="small", input="x", encoding_format="int8")  # type: ignore[arg-type]
    assert info.value.body["param"] == "encoding_format"
    status, _, body = http(
        "POST", gw.url + "/v1/embeddings", {"model": "small"}, {"Authorization": f"Bearer {KEY}-free"}
    )
    assert status == 422 and b'"param":"input"' in body
    status, _, body = http(
        "POST",
        gw.url + "/v1/embeddings",
        {"model": "anthropic:claude-x", "input": "x"},
        {"Authorization": f"Bearer {KEY}-free"},
    )
    assert status in (400, 404), body
    with pytest.raises(openai.AuthenticationError):
        _client(gw, "wrong-key").embeddings.create(model="small", input="x")


def test_hundreds_of_concurrent_calls_on_one_budget_never_overshoot(gw):
    before = {r["request_id"] for r in _rows(gw)}

    async def run() -> list[object]:
        c = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0, timeout=30)
        try:

            async def one() -> object:
                try:
                    return await c.embeddings.create(model="race", input=TEXT, encoding_format="float")
                except openai.APIStatusError as exc:
                    return exc

            return await asyncio.gather(*(one() for _ in range(400)))
        finally:
            await c.close()

    results = asyncio.run(run())
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert ok and refused, (len(ok), len(refused))
    assert all(isinstance(r, openai.RateLimitError) and r.code == "budget_exceeded" for r in refused)
    rows = [r for r in _rows(gw, "tenant_id = 'racers'") if r["request_id"] not in before]
    assert len(rows) == len(ok)  # one row per charged call; refusals never reach a provider
    assert {r["endpoint"] for r in rows} == {"/v1/embeddings"}
    assert all(r["output_tokens"] == 0 and r["input_tokens"] == 3 and r["success"] for r in rows)
    spent = sum(r["input_tokens"] for r in rows)
    assert spent <= CAP  # overshoot 0
    # every call reserves its bound (15) until it settles to 3: at least CAP // 15 calls fit at once
    assert len(ok) >= CAP // 15


FULL_EMBED = {
    "input": ["a", "b"],
    "model": "small",
    "dimensions": 8,
    "encoding_format": "base64",
    "tenant_id": "acme",
    "agent": "a",
    "thread_id": "t-1",
    "task_type": "t",
    "timeout": 5.0,
    "user": "ignored",
}


def test_the_fields_read_are_the_documented_fields():
    from llm_connect.server import schemas
    from llm_connect.server.embeddings import parse_embeddings

    from .test_openapi import Recording, assert_fields_match

    body = Recording(FULL_EMBED)
    spec, fields = parse_embeddings(body, {})
    assert_fields_match(schemas.EmbeddingRequest, body.read)
    schemas.EmbeddingRequest.model_validate(FULL_EMBED)
    assert (spec.endpoint, spec.prompt, fields.dimensions, fields.encoding_format) == (
        "/v1/embeddings",
        ["a", "b"],
        8,
        "base64",
    )
