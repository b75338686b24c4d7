"""Amazon Bedrock over loopback against the mock server: SigV4 (verified by the mock), the AWS credential chain,
Converse and ConverseStream (the binary event stream), errors per type, prices, budgets and the ledger.

Shapes follow the Bedrock Runtime API reference (Converse, ConverseStream, the common errors) and AWS's
Signature Version 4 documentation.
"""

from __future__ import annotations

import json
import sys
import time

import aiohttp
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from yarl import URL

from llm_connect import (
    BudgetTracker,
    LLMAuthenticationError,
    LLMBudgetExceededError,
    LLMConfigurationError,
    LLMContextWindowExceededError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    RunConfig,
    create_adapter,
)
from llm_connect.testing import MOCK_AWS_ACCESS_KEY_ID, MOCK_AWS_SECRET_ACCESS_KEY, MockReply, MockServer
from llm_connect.usage import Ledger, UsageTracker

MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
_AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


@pytest.fixture(autouse=True)
def _isolated_aws(monkeypatch, tmp_path):
    """No AWS settings from the machine: empty config files, no instance metadata look-ups."""
    for var in _AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def bedrock(mock: MockServer, model: str = MODEL, **kw):
    kw.setdefault("region", "us-east-1")
    kw.setdefault("aws_access_key_id", MOCK_AWS_ACCESS_KEY_ID)
    kw.setdefault("aws_secret_access_key", MOCK_AWS_SECRET_ACCESS_KEY)
    return create_adapter(f"bedrock:{model}", api_base=mock.url, **kw)


# -- calls ---------------------------------------------------------------------------------------------------


async def test_converse_is_signed_and_answered(mock, aws_price):
    r = await bedrock(mock).async_execute_prompt("hello bedrock", RunConfig(max_tokens=50, temperature=0.2))
    q = mock.last_request
    assert q["format"] == "bedrock" and q["model"] == MODEL and q["stream"] is False
    assert q["path"] == f"/model/{MODEL}/converse"
    assert q["auth_header"] == "authorization" and "X-Amz-Date" in q["headers"]
    assert q["body"] == {
        "messages": [{"role": "user", "content": [{"text": "hello bedrock"}]}],
        "inferenceConfig": {"maxTokens": 50, "temperature": 0.2},
    }
    assert r.text == "mock reply to: hello bedrock" and r.finish_reason == "stop"
    assert r.provider == "bedrock" and r.model == MODEL
    assert r.request_id and r.request_id.startswith("mock")  # the x-amzn-RequestId header
    assert r.usage.input_tokens == 3 and r.usage.output_tokens == 5
    assert r.cost_usd == aws_price(MODEL, r.usage) > 0


async def test_converse_stream_over_the_event_stream(mock, aws_price):
    chunks = [c async for c in bedrock(mock).astream("count these words")]
    assert mock.last_request["path"] == f"/model/{MODEL}/converse-stream"
    assert "".join(c.text for c in chunks) == "mock reply to: count these words"
    last = chunks[-1]
    assert last.finish_reason == "stop" and last.usage is not None and last.usage.output_tokens == 6
    assert last.cost_usd == aws_price(MODEL, last.usage)


def test_sync_call_and_stream():
    with MockServer.run_in_thread() as srv:
        a = bedrock(srv)
        assert a.execute_prompt("sync hello").text == "mock reply to: sync hello"
        assert "".join(c.text for c in a.stream("sync stream")) == "mock reply to: sync stream"


async def test_tool_calls_and_cache_usage_priced_exactly(mock, aws_price):
    call = {"id": "tooluse_1", "function": {"name": "top_song", "arguments": '{"sign": "WZPZ"}'}}
    usage = {"input": 5000, "output": 40, "cache_read": 3000, "cache_write": 1500}
    mock.script(MockReply.from_dict({"tool_calls": [call], "usage": usage, "times": 2}))
    tools = [{"type": "function", "function": {"name": "top_song", "parameters": {"type": "object"}}}]
    cfg = RunConfig(tools=tools)
    r = await bedrock(mock).async_execute_prompt("song?", cfg)
    assert r.finish_reason == "tool_calls"
    assert r.tool_calls[0]["id"] == "tooluse_1" and json.loads(r.tool_calls[0]["function"]["arguments"]) == {
        "sign": "WZPZ"
    }
    assert (r.usage.input_tokens, r.usage.cache_read_tokens, r.usage.cache_write_tokens) == (5000, 3000, 1500)
    assert r.cost_usd == aws_price(MODEL, r.usage)
    assert mock.last_request["body"]["toolConfig"]["tools"][0]["toolSpec"]["name"] == "top_song"
    chunks = [c async for c in bedrock(mock).astream("song?", cfg)]
    assert chunks[-1].finish_reason == "tool_calls" and chunks[-1].usage == r.usage
    streamed = [tc for c in chunks for tc in c.tool_calls or ()]
    assert streamed[0]["id"] == "tooluse_1"
    assert json.loads("".join(tc["function"].get("arguments", "") for tc in streamed)) == {"sign": "WZPZ"}


async def test_an_arn_model_is_priced_by_its_resource_id(mock, aws_price):
    arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{MODEL}"
    r = await bedrock(mock, arn, region=None).async_execute_prompt("x")  # the region comes from the ARN
    assert mock.last_request["model"] == arn
    assert r.cost_usd == aws_price(MODEL, r.usage)


# -- SigV4 and credentials ------------------------------------------------------------------------------------


async def test_a_wrong_secret_is_refused_with_bedrocks_403(mock):
    with pytest.raises(LLMAuthenticationError) as info:
        await bedrock(mock, aws_secret_access_key="not-the-secret").async_execute_prompt("x")
    assert info.value.status_code == 403
    assert "InvalidSignatureException" in str(info.value)
    assert info.value.body["message"].startswith("The request signature we calculated does not match")
    with pytest.raises(LLMAuthenticationError, match="UnrecognizedClientException"):
        await bedrock(mock, aws_access_key_id="AKIAUNKNOWN000000000").async_execute_prompt("x")
    with pytest.raises(LLMAuthenticationError, match="InvalidSignatureException"):
        [c async for c in bedrock(mock, aws_secret_access_key="wrong").astream("x")]


def _signed(url: str, body: bytes, secret: str = MOCK_AWS_SECRET_ACCESS_KEY) -> dict[str, str]:
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(MOCK_AWS_ACCESS_KEY_ID, secret), "bedrock", "us-west-2").add_auth(req)
    return dict(req.headers.items())


async def test_the_signature_covers_the_body_and_the_service(mock):
    url = f"{mock.url}/model/amazon.nova-pro-v1%3A0/converse"
    body = orjson.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
    sent = URL(url, encoded=True)  # as signed: aiohttp would otherwise send the ':' decoded
    async with aiohttp.ClientSession() as s:
        async with s.post(sent, data=body, headers=_signed(url, body)) as resp:
            assert resp.status == 200, await resp.text()  # botocore's signature verifies, in any region
        tampered = body.replace(b"hi", b"yo")
        async with s.post(sent, data=tampered, headers=_signed(url, body)) as resp:
            assert resp.status == 403
            assert resp.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException")
        stream_url = URL(url.replace("/converse", "/converse-stream"), encoded=True)
        async with s.post(stream_url, data=body, headers=_signed(str(stream_url), body)) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/vnd.amazon.eventstream"
            raw = await resp.read()
            assert int.from_bytes(raw[:4], "big") < len(raw)  # a prelude: the first message's total length
        async with s.post(sent, data=body, headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 403
            assert (await resp.json()) == {"message": "Missing Authentication Token"}
        req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(MOCK_AWS_ACCESS_KEY_ID, MOCK_AWS_SECRET_ACCESS_KEY), "s3", "us-east-1").add_auth(req)
        async with s.post(sent, data=body, headers=dict(req.headers.items())) as resp:
            assert resp.status == 403 and "service" in (await resp.json())["message"]


async def test_credentials_from_the_environment(mock, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", MOCK_AWS_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", MOCK_AWS_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEmock")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    a = create_adapter(f"bedrock:{MODEL}", api_base=mock.url)
    assert a.region == "eu-central-1"
    assert (await a.async_execute_prompt("from env")).text == "mock reply to: from env"
    assert mock.last_request["headers"]["X-Amz-Security-Token"] == "FwoGZXIvYXdzEmock"
    assert MOCK_AWS_SECRET_ACCESS_KEY not in repr(a)


async def test_credentials_and_region_from_a_profile(mock, tmp_path, monkeypatch):
    (tmp_path / "aws-credentials").write_text(
        f"[prod]\naws_access_key_id = {MOCK_AWS_ACCESS_KEY_ID}\naws_secret_access_key = {MOCK_AWS_SECRET_ACCESS_KEY}\n"
    )
    (tmp_path / "aws-config").write_text("[profile prod]\nregion = ap-southeast-2\n")
    a = create_adapter(f"bedrock:{MODEL}", api_base=mock.url, profile="prod")
    assert a.region == "ap-southeast-2"
    assert (await a.async_execute_prompt("profile")).text == "mock reply to: profile"
    monkeypatch.setenv("AWS_PROFILE", "prod")
    from_env = create_adapter(f"bedrock:{MODEL}", api_base=mock.url)
    assert from_env.region == "ap-southeast-2"
    assert (await from_env.async_execute_prompt("env profile")).text == "mock reply to: env profile"


async def test_refreshable_credentials_are_refreshed_off_the_loop(mock, tmp_path):
    """credential_process credentials that expire within botocore's refresh window are fetched again before a
    signature: every request is signed with fresh ones."""
    calls = tmp_path / "calls"
    script = tmp_path / "creds.py"
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 120))
    script.write_text(
        "import json, pathlib\n"
        f"p = pathlib.Path({str(calls)!r}); p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
        f"print(json.dumps({{'Version': 1, 'AccessKeyId': {MOCK_AWS_ACCESS_KEY_ID!r}, "
        f"'SecretAccessKey': {MOCK_AWS_SECRET_ACCESS_KEY!r}, 'SessionToken': 'tok', 'Expiration': {expiry!r}}}))\n"
    )
    (tmp_path / "aws-config").write_text(f"[profile role]\ncredential_process = {sys.executable} {script}\n")
    a = create_adapter(f"bedrock:{MODEL}", api_base=mock.url, profile="role", region="us-east-1")
    await a.async_execute_prompt("one")
    await a.async_execute_prompt("two")
    assert [c.text async for c in a.astream("three")][-1] == ""
    assert len(calls.read_text()) >= 3  # looked up once, then refreshed before each later signature


async def test_a_bedrock_api_key_is_a_bearer_token(mock, monkeypatch):
    key = "ABSKQmVkcm9ja0FQSUtleS1tb2Nr"
    a = create_adapter(f"bedrock:{MODEL}", api_base=mock.url, region="us-east-1", api_key=key)
    assert (await a.async_execute_prompt("api key")).text == "mock reply to: api key"
    assert "X-Amz-Date" not in mock.last_request["headers"]
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", key)
    from_env = create_adapter(f"bedrock:{MODEL}", api_base=mock.url, region="us-east-1")
    assert "".join([c.text async for c in from_env.astream("env key")]) == "mock reply to: env key"
    wrong = create_adapter(f"bedrock:{MODEL}", api_base=mock.url, region="us-east-1", api_key="nope")
    with pytest.raises(LLMAuthenticationError, match="API Key"):
        await wrong.async_execute_prompt("x")


async def test_no_credentials_anywhere_names_the_variables(mock):
    a = create_adapter(f"bedrock:{MODEL}", api_base=mock.url, region="us-east-1")
    with pytest.raises(LLMConfigurationError, match="AWS_ACCESS_KEY_ID"):
        await a.async_execute_prompt("x")
    assert mock.requests == []  # refused before any request


async def test_credentials_that_cannot_be_loaded_are_typed_errors(mock, tmp_path):
    with pytest.raises(LLMConfigurationError, match="ProfileNotFound"):
        create_adapter(f"bedrock:{MODEL}", api_base=mock.url, profile="nowhere")  # its region is looked up
    a = create_adapter(f"bedrock:{MODEL}", api_base=mock.url, profile="nowhere", region="us-east-1")
    with pytest.raises(LLMAuthenticationError, match="ProfileNotFound"):
        await a.async_execute_prompt("x")
    (tmp_path / "aws-config").write_text(f"[profile broken]\ncredential_process = {sys.executable} -c 'exit(3)'\n")
    b = create_adapter(f"bedrock:{MODEL}", api_base=mock.url, profile="broken", region="us-east-1")
    with pytest.raises(LLMAuthenticationError, match="cannot obtain AWS credentials"):
        [c async for c in b.astream("x")]
    assert mock.requests == []


def test_region_and_endpoint():
    a = create_adapter(f"bedrock:{MODEL}", region="eu-west-1", aws_access_key_id="a", aws_secret_access_key="b")
    assert a.api_base == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    cn = create_adapter("bedrock:m", region="cn-north-1", aws_access_key_id="a", aws_secret_access_key="b")
    assert cn.api_base == "https://bedrock-runtime.cn-north-1.amazonaws.com.cn"
    with pytest.raises(LLMConfigurationError, match="AWS_REGION"):
        create_adapter(f"bedrock:{MODEL}", aws_access_key_id="a", aws_secret_access_key="b")
    with pytest.raises(LLMConfigurationError, match="us-east-1"):
        create_adapter(f"bedrock:{MODEL}", region="Virginia", aws_access_key_id="a", aws_secret_access_key="b")
    with pytest.raises(LLMConfigurationError, match="both"):
        create_adapter(f"bedrock:{MODEL}", region="us-east-1", aws_access_key_id="a")


def test_missing_botocore_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "botocore.session", None)  # as if the extra were not installed
    with pytest.raises(LLMConfigurationError, match=r"pip install 'llm-connect\[bedrock\]'"):
        create_adapter(f"bedrock:{MODEL}", region="us-east-1")


# -- errors --------------------------------------------------------------------------------------------------


async def test_throttling_is_a_rate_limit_and_other_types_map(mock):
    mock.script(MockReply(error="rate_limit"))
    with pytest.raises(LLMRateLimitError, match="ThrottlingException") as info:
        await bedrock(mock).async_execute_prompt("x")
    assert info.value.status_code == 429 and info.value.request_id
    mock.script(MockReply(status=429, error_type="ModelNotReadyException", error_message="Model is not ready."))
    with pytest.raises(LLMProviderUnavailableError) as not_ready:
        await bedrock(mock).async_execute_prompt("x")
    assert not_ready.value.retry_after == 5.0
    mock.script(MockReply(error="context_length"))
    with pytest.raises(LLMContextWindowExceededError, match="Input is too long"):
        await bedrock(mock).async_execute_prompt("x")


async def test_an_exception_inside_the_stream(mock):
    mock.script(MockReply(fault="stream_error", error="rate_limit", cut_after=2))
    got: list[str] = []
    with pytest.raises(LLMRateLimitError, match="ThrottlingException"):
        async for c in bedrock(mock).astream("one two three four five"):
            got.append(c.text)
    assert "".join(got).startswith("mock")


async def test_a_corrupted_or_cut_stream_is_a_clear_error(mock):
    mock.script(MockReply(fault="malformed"))
    with pytest.raises(LLMProviderUnavailableError, match="CRC"):
        [c async for c in bedrock(mock).astream("x")]
    mock.script(MockReply(fault="cut_stream", cut_after=2))
    with pytest.raises(LLMProviderUnavailableError):
        [c async for c in bedrock(mock).astream("one two three four")]


# -- budgets and the ledger ------------------------------------------------------------------------------------


async def test_budgets_and_exactly_one_ledger_row_per_call(mock, tmp_path):
    ledger = Ledger.open(tmp_path / "usage.sqlite3")
    tracker, usage = BudgetTracker(total_usd="1"), UsageTracker()
    ledger.subscriber(usage)
    cfg = RunConfig(max_tokens=100, budget_tracker=tracker, usage_tracker=usage)
    a = bedrock(mock)
    try:
        r1 = await a.async_execute_prompt("first call", cfg)
        chunks = [c async for c in a.astream("second call", cfg)]
        mock.script(MockReply(error="rate_limit"))
        with pytest.raises(LLMRateLimitError):
            await a.async_execute_prompt("third call", cfg)
        rows = ledger.query()
    finally:
        ledger.close()
    costs = [r1.cost_usd, chunks[-1].cost_usd]
    assert all(c is not None and c > 0 for c in costs)
    assert tracker.spent_usd == sum(costs)  # reserved at the model's price, settled exactly
    assert len(rows) == 3 and len(mock.requests) == 3  # one row per call, the refused one included
    by_success = sorted(rows, key=lambda e: e.success)
    assert [e.success for e in by_success] == [False, True, True]
    assert sorted(e.cost_usd for e in by_success[1:]) == sorted(costs)
    assert {e.provider for e in rows} == {"bedrock"} and {e.model for e in rows} == {MODEL}
    tiny = BudgetTracker(total_usd="0.0000001")
    with pytest.raises(LLMBudgetExceededError):
        await a.async_execute_prompt("x", RunConfig(max_tokens=100, budget_tracker=tiny))
    assert len(mock.requests) == 3  # refused before any request
