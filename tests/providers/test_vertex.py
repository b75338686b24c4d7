"""Google Vertex AI over loopback against the mock server: Gemini and Claude on Vertex, google-auth's own
service-account flow against the mock's token endpoint, token refresh, errors, prices, budgets and the ledger.

Shapes follow the Vertex AI REST reference (``projects.locations.publishers.models``: generateContent,
streamGenerateContent, countTokens, rawPredict, streamRawPredict) and Anthropic's "Claude on Vertex AI" page
(no ``model`` in the body, ``anthropic_version: vertex-2023-10-16``). The service-account JSON is a real one
(a fresh RSA key pair) whose ``token_uri`` is the mock's ``/token``; the mock verifies the JWT's signature.

The mock runs on the test's own event loop, so a token refresh that blocked the loop could never be answered:
every test here that refreshes also shows the refresh runs off the loop.
"""

from __future__ import annotations

import asyncio
import json

import genai_prices
import pytest

from llm_connect import (
    BudgetTracker,
    LLMAuthenticationError,
    LLMBudgetExceededError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    RunConfig,
    UsageTracker,
    create_adapter,
)
from llm_connect.testing import MockReply, MockServer
from llm_connect.usage import SqliteLedger

from .conftest import genai_price

pytest.importorskip("google.auth")

GEMINI = "gemini-2.5-flash"
CLAUDE = "claude-sonnet-4-5@20250929"
PREFIX = "/v1/projects/mock-project/locations/us-central1/publishers"
pytestmark = pytest.mark.usefixtures("no_google_env")


def write_account(srv: MockServer, path) -> str:
    """A service-account JSON the mock trusts, written to ``path``."""
    path.write_text(json.dumps(srv.google.service_account(srv.url + "/token")))
    return str(path)


@pytest.fixture
def account(mock, tmp_path) -> str:
    return write_account(mock, tmp_path / "service-account.json")


def vertex(srv: MockServer, creds: str, spec: str = f"vertex:{GEMINI}", **kw):
    kw.setdefault("credentials_file", creds)
    kw.setdefault("location", "us-central1")
    return create_adapter(spec, api_base=srv.url, **kw)


def calls(srv: MockServer, path_part: str) -> list[dict]:
    return [q for q in srv.requests if path_part in q["path"]]


# -- Gemini on Vertex --------------------------------------------------------------------------------


async def test_gemini_generate_content_path_token_and_price(mock, account):
    mock.script(MockReply(input_tokens=1200, output_tokens=300, reported_model="gemini-2.5-flash"))
    r = await vertex(mock, account).async_execute_prompt("hello vertex", RunConfig(max_tokens=64))
    q = mock.last_request
    assert q["path"] == f"{PREFIX}/google/models/{GEMINI}:generateContent"
    assert q["auth_header"] == "authorization" and q["format"] == "gemini"
    assert q["body"]["contents"] == [{"role": "user", "parts": [{"text": "hello vertex"}]}]
    assert q["body"]["generationConfig"]["maxOutputTokens"] == 64
    assert "x-goog-api-key" not in {k.lower() for k in q["headers"]}
    (grant,) = calls(mock, "/token")  # google-auth's service-account flow: one JWT grant
    assert grant["body"] == {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}
    assert r.text == "mock reply to: hello vertex" and r.provider == "vertex"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (1200, 300)
    assert r.cost_usd == genai_price("google", GEMINI, r.usage) > 0


async def test_gemini_stream_uses_alt_sse_and_prices_the_final_usage(mock, account):
    chunks = [c async for c in vertex(mock, account).astream("count these words")]
    q = mock.last_request
    assert q["path"] == f"{PREFIX}/google/models/{GEMINI}:streamGenerateContent"
    assert q["query"] == {"alt": "sse"}
    assert "".join(c.text for c in chunks) == "mock reply to: count these words"
    last = chunks[-1]
    assert last.usage is not None and last.usage.output_tokens == 6
    assert last.cost_usd == genai_price("google", GEMINI, last.usage)


async def test_gemini_count_tokens_body_is_the_request_fields(mock, account):
    from llm_connect.types import Message

    a = vertex(mock, account)
    n = await a.acount_exact_input_tokens(
        [Message("system", "be brief"), Message("user", "three little words")], RunConfig()
    )
    q = mock.last_request
    assert q["path"] == f"{PREFIX}/google/models/{GEMINI}:countTokens"
    assert set(q["body"]) == {"contents", "systemInstruction"}  # no generateContentRequest wrapper on Vertex
    assert n == (2 + 1) + (3 + 1)  # the mock's count: words + 1 per message


async def test_project_location_and_credentials_from_the_environment(mock, account, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", account)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "europe-west4")
    a = create_adapter(f"vertex:{GEMINI}", api_base=mock.url)
    await a.async_execute_prompt("x")
    path = f"/v1/projects/env-project/locations/europe-west4/publishers/google/models/{GEMINI}:generateContent"
    assert mock.last_request["path"] == path
    assert "env-project/europe-west4" in repr(a) and "ya29" not in repr(a)
    monkeypatch.delenv("GOOGLE_CLOUD_LOCATION")
    monkeypatch.setenv("VERTEX_LOCATION", "asia-northeast1")
    await create_adapter(f"vertex:{GEMINI}", api_base=mock.url, project="p2").async_execute_prompt("x")
    assert mock.last_request["path"].startswith("/v1/projects/p2/locations/asia-northeast1/publishers/google/")


async def test_global_location_by_default_and_a_base_with_v1(mock, account):
    a = create_adapter(f"vertex:{GEMINI}", api_base=mock.url + "/v1", credentials_file=account)
    await a.async_execute_prompt("x")
    path = f"/v1/projects/mock-project/locations/global/publishers/google/models/{GEMINI}:generateContent"
    assert mock.last_request["path"] == path


# -- Claude on Vertex --------------------------------------------------------------------------------


async def test_claude_raw_predict_body_has_no_model_and_the_vertex_version(mock, account):
    mock.script(MockReply(input_tokens=2000, output_tokens=500, cache_read_tokens=1000, cache_write_tokens=100))
    a = vertex(mock, account, f"vertex_anthropic:{CLAUDE}")
    r = await a.async_execute_prompt("hello claude", RunConfig(max_tokens=100, system_prompt="be brief"))
    q = mock.last_request
    assert q["path"] == f"{PREFIX}/anthropic/models/{CLAUDE}:rawPredict"
    assert "model" not in q["body"] and q["body"]["anthropic_version"] == "vertex-2023-10-16"
    assert q["body"]["max_tokens"] == 100 and q["body"]["system"] == "be brief"
    assert "anthropic-version" not in {k.lower() for k in q["headers"]} and "x-api-key" not in q["headers"]
    assert r.text == "mock reply to: hello claude" and r.provider == "vertex_anthropic"
    # Anthropic's input_tokens excludes cache reads and writes: input is their sum, the cache kinds kept apart
    assert (r.usage.input_tokens, r.usage.cache_read_tokens, r.usage.cache_write_tokens) == (2000, 1000, 100)
    assert r.cost_usd == genai_price("anthropic", "claude-sonnet-4-5", r.usage) > 0


async def test_claude_stream_raw_predict(mock, account):
    a = vertex(mock, account, f"vertex_anthropic:{CLAUDE}")
    chunks = [c async for c in a.astream("stream from claude")]
    q = mock.last_request
    assert q["path"] == f"{PREFIX}/anthropic/models/{CLAUDE}:streamRawPredict"
    assert q["body"]["stream"] is True and "model" not in q["body"]
    assert "".join(c.text for c in chunks) == "mock reply to: stream from claude"
    assert chunks[-1].usage is not None
    assert chunks[-1].cost_usd == genai_price("anthropic", "claude-sonnet-4-5", chunks[-1].usage)


async def test_claude_count_tokens_goes_to_count_tokens_raw_predict(mock, account):
    from llm_connect.types import Message

    a = vertex(mock, account, f"vertex_anthropic:{CLAUDE}")
    n = await a.acount_exact_input_tokens([Message("user", "four words right here")], RunConfig())
    q = mock.last_request
    assert q["path"] == f"{PREFIX}/anthropic/models/count-tokens:rawPredict"
    assert q["body"]["model"] == CLAUDE and q["body"]["anthropic_version"] == "vertex-2023-10-16"
    assert n >= 5  # the mock's 5, plus Anthropic's documented estimate margin


async def test_a_request_without_the_vertex_version_is_refused_by_the_mock(mock, account):
    a = vertex(mock, account, f"vertex_anthropic:{CLAUDE}")
    with pytest.raises(LLMInvalidRequestError, match="vertex-2023-10-16"):
        await a.async_execute_prompt("x", RunConfig(extra_body={"anthropic_version": "2023-06-01"}))


# -- tokens ------------------------------------------------------------------------------------------


async def test_one_token_serves_many_calls_until_it_nears_expiry(mock, account):
    a = vertex(mock, account)
    for _ in range(3):
        await a.async_execute_prompt("x")
    from llm_connect.types import Message

    await a.acount_exact_input_tokens([Message("user", "count me")], RunConfig())
    assert mock.google.minted == 1


async def test_a_token_is_refreshed_before_it_expires(mock, account):
    mock.google.token_lifetime = 30
    a = vertex(mock, account, refresh_margin=29.5)  # counts as expiring half a second after it is minted
    await a.async_execute_prompt("x")
    await asyncio.sleep(0.7)
    await a.async_execute_prompt("y")  # the mock would still take the old token: this one is new
    assert mock.google.minted == 2


async def test_concurrent_calls_share_one_refresh(mock, account):
    mock.google.token_lifetime = 30
    a = vertex(mock, account, refresh_margin=29.5)
    await a.async_execute_prompt("first")
    await asyncio.sleep(0.7)
    results = await asyncio.gather(*(a.async_execute_prompt(f"call {i}") for i in range(12)))
    assert all(r.text for r in results)
    assert mock.google.minted == 2  # twelve callers, one refresh
    assert len(calls(mock, "/token")) == 2


async def test_an_expired_token_is_refused_with_googles_401(mock, account):
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    mock.google.token_lifetime = 3
    creds = service_account.Credentials.from_service_account_file(
        account, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    await asyncio.to_thread(creds.refresh, Request())
    a = vertex(mock, account, access_token=creds.token, project="mock-project")
    assert (await a.async_execute_prompt("fresh")).text  # a static token is sent as it is
    await asyncio.sleep(3.1)
    with pytest.raises(LLMAuthenticationError) as info:
        await a.async_execute_prompt("stale")
    err = info.value.body["error"]
    assert info.value.status_code == 401 and err["status"] == "UNAUTHENTICATED"
    assert err["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"


async def test_a_token_the_mock_did_not_mint_is_refused(mock, account):
    with pytest.raises(LLMAuthenticationError) as info:
        a = vertex(mock, account, f"vertex_anthropic:{CLAUDE}", access_token="ya29.made-up", project="p")
        await a.async_execute_prompt("x")
    assert info.value.body["error"]["details"][0]["reason"] == "ACCESS_TOKEN_TYPE_UNSUPPORTED"


async def test_a_key_the_mock_does_not_trust_is_a_refused_grant(mock, tmp_path):
    other = MockServer()  # its own key pair, never shown to `mock`
    info = other.google.service_account(mock.url + "/token")
    path = tmp_path / "stranger.json"
    path.write_text(json.dumps(info))
    with pytest.raises(LLMAuthenticationError, match="account not found"):
        await vertex(mock, str(path)).async_execute_prompt("x")
    assert mock.google.minted == 0


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "cls"),
    [
        (MockReply(status=403, error_type="PERMISSION_DENIED"), LLMAuthenticationError),
        (MockReply(error="not_found"), LLMInvalidRequestError),
        (MockReply(status=429, retry_after=7), LLMRateLimitError),
        (MockReply(status=503), LLMProviderUnavailableError),
    ],
)
async def test_gemini_errors_per_status(mock, account, script, cls):
    mock.script(script)
    with pytest.raises(cls) as info:
        await vertex(mock, account).async_execute_prompt("x")
    assert info.value.provider == "vertex"
    if cls is LLMRateLimitError:
        assert info.value.body["error"]["status"] == "RESOURCE_EXHAUSTED" and info.value.retry_after == 7


@pytest.mark.parametrize(
    ("script", "cls"),
    [
        (MockReply(status=403), LLMAuthenticationError),
        (MockReply(error="not_found"), LLMInvalidRequestError),
        (MockReply(status=429), LLMRateLimitError),
        (MockReply(status=529), LLMProviderUnavailableError),
        (MockReply(status=503), LLMProviderUnavailableError),
    ],
)
async def test_claude_errors_per_status(mock, account, script, cls):
    mock.script(script)
    with pytest.raises(cls) as info:
        await vertex(mock, account, f"vertex_anthropic:{CLAUDE}").async_execute_prompt("x")
    assert info.value.provider == "vertex_anthropic"


async def test_a_missing_token_is_googles_401_for_both_publishers(mock):
    import aiohttp

    async with aiohttp.ClientSession() as s:
        for path in (f"google/models/{GEMINI}:generateContent", f"anthropic/models/{CLAUDE}:rawPredict"):
            async with s.post(f"{mock.url}{PREFIX}/{path}", json={}) as r:
                body = await r.json()
            assert r.status == 401 and body["error"]["status"] == "UNAUTHENTICATED"
            assert body["error"]["details"][0]["reason"] == "CREDENTIALS_MISSING"


# -- budgets, ledger, sync ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "prices_id", "priced_as"),
    [
        (f"vertex:{GEMINI}", "google", GEMINI),
        (f"vertex_anthropic:{CLAUDE}", "google", CLAUDE),
    ],
)
async def test_budget_and_one_ledger_row_per_charged_call(mock, account, tmp_path, spec, prices_id, priced_as):
    tracker = UsageTracker()
    ledger = SqliteLedger(tmp_path / "usage.sqlite3")
    ledger.subscriber(tracker)
    budget = BudgetTracker(total_usd="1")
    cfg = RunConfig(max_tokens=50, budget_tracker=budget, usage_tracker=tracker)
    a = vertex(mock, account, spec)
    try:
        r1 = await a.async_execute_prompt("one", cfg)
        chunks = [c async for c in a.astream("two", cfg)]
        mock.script(MockReply(status=429))
        with pytest.raises(LLMRateLimitError):
            await a.async_execute_prompt("refused", cfg)  # not charged: no row with cost
        spent = r1.cost_usd + chunks[-1].cost_usd
        assert budget.spent_usd == spent
        assert r1.cost_usd == genai_price(prices_id, priced_as, r1.usage)
        events = ledger.query()
        charged = [e for e in events if e.success]
        assert len(charged) == 2 and sum(e.cost_usd for e in charged) == spent
        assert {e.provider for e in events} == {spec.partition(":")[0]}
        tiny = BudgetTracker(total_usd="0.00000001")
        with pytest.raises(LLMBudgetExceededError):
            await a.async_execute_prompt("x", RunConfig(max_tokens=50, budget_tracker=tiny))
    finally:
        ledger.close()


@pytest.mark.parametrize("spec", [f"vertex:{GEMINI}", f"vertex_anthropic:{CLAUDE}"])
def test_sync_call_and_stream(tmp_path, spec):
    with MockServer.run_in_thread() as srv:
        a = vertex(srv, write_account(srv, tmp_path / "sa.json"), spec)
        assert a.execute_prompt("sync hello").text == "mock reply to: sync hello"
        assert "".join(c.text for c in a.stream("sync stream")) == "mock reply to: sync stream"
        assert srv.google.minted == 1  # the sync facade's calls share the token too


async def test_application_default_credentials_load_on_first_use(mock, account, monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))  # no gcloud login on this machine
    a = create_adapter(f"vertex:{GEMINI}", api_base=mock.url, project="adc-project")  # nothing loaded yet
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", account)  # what google.auth.default() finds, in its thread
    r = await a.async_execute_prompt("through ADC")
    assert r.text == "mock reply to: through ADC" and mock.google.minted == 1
    assert mock.last_request["path"].startswith("/v1/projects/adc-project/locations/global/")


async def test_embeddings_through_predict_with_token_counts_and_price(mock, account):
    a = vertex(mock, account, "vertex:gemini-embedding-001")
    assert a.supports_embeddings
    r = await a.aembed(["hello world", "three more words"], dimensions=8)
    paths = [q["path"] for q in calls(mock, ":predict")]
    assert paths == [f"{PREFIX}/google/models/gemini-embedding-001:predict"] * 2  # one instance per request
    q = mock.last_request
    assert q["body"] == {"instances": [{"content": "three more words"}], "parameters": {"outputDimensionality": 8}}
    assert len(r.vectors) == 2 and all(len(v) == 8 for v in r.vectors)
    assert r.usage.input_tokens == (2 + 1) + (3 + 1)  # statistics.token_count, summed
    want = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=7), "gemini-embedding-001", provider_id="google"
    ).total_price
    assert r.cost_usd == want
    text_model = vertex(mock, account, "vertex:text-embedding-005")
    r = await text_model.aembed(["a", "b", "c"], RunConfig(extra_body={"task_type": "RETRIEVAL_DOCUMENT"}))
    body = mock.last_request["body"]
    assert [i["content"] for i in body["instances"]] == ["a", "b", "c"]  # up to 250 in one request
    assert body["instances"][0]["task_type"] == "RETRIEVAL_DOCUMENT" and "parameters" not in body
    assert r.usage.input_tokens == 6 and r.cost_usd is None  # billed per character: not in genai-prices
    assert not vertex(mock, account, f"vertex_anthropic:{CLAUDE}").supports_embeddings


async def test_embedding_errors_are_googles(mock, account):
    mock.script(MockReply(status=429, retry_after=2))
    with pytest.raises(LLMRateLimitError) as info:
        await vertex(mock, account, "vertex:text-embedding-005").aembed(["x"])
    assert info.value.body["error"]["status"] == "RESOURCE_EXHAUSTED" and info.value.retry_after == 2


async def test_an_unreachable_token_endpoint_is_provider_unavailable(mock, tmp_path):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    info = mock.google.service_account(f"http://127.0.0.1:{port}/token")
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    with pytest.raises(LLMProviderUnavailableError, match="token endpoint"):
        await vertex(mock, str(path)).async_execute_prompt("x")
