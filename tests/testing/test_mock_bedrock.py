"""The mock server's Bedrock Converse: requests checked as Bedrock does, replies and streams in its shapes (the
stream read back with botocore's own event-stream decoder), errors with x-amzn-ErrorType, credentials verified."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from yarl import URL

from llm_connect.testing import MOCK_AWS_ACCESS_KEY_ID, MOCK_AWS_SECRET_ACCESS_KEY, MockReply, MockServer

MODEL = "amazon.nova-lite-v1:0"
HELLO = {"messages": [{"role": "user", "content": [{"text": "hello mock"}]}]}


@pytest.fixture
async def mock():
    async with MockServer() as server:
        yield server


async def post(mock: MockServer, body: dict, *, stream: bool = False, headers: dict | None = None):
    """A signed Converse request (botocore's signer); (status, headers, raw body)."""
    url = f"{mock.url}/model/{MODEL.replace(':', '%3A')}/{'converse-stream' if stream else 'converse'}"
    data = orjson.dumps(body)
    if headers is None:
        req = AWSRequest(method="POST", url=url, data=data, headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(MOCK_AWS_ACCESS_KEY_ID, MOCK_AWS_SECRET_ACCESS_KEY), "bedrock", "us-east-1").add_auth(req)
        headers = dict(req.headers.items())
    async with aiohttp.ClientSession() as s, s.post(URL(url, encoded=True), data=data, headers=headers) as r:
        return r.status, r.headers, await r.read()


def events(raw: bytes) -> list[tuple[str, str, dict]]:
    buf = EventStreamBuffer()
    buf.add_data(raw)
    out = []
    for msg in buf:
        kind = msg.headers[":message-type"]
        name = msg.headers[":event-type"] if kind == "event" else msg.headers[":exception-type"]
        out.append((kind, name, orjson.loads(msg.payload)))
    return out


async def test_a_converse_reply_in_bedrocks_shape(mock):
    mock.script(MockReply(text="cached answer", input_tokens=5000, cache_read_tokens=3000, cache_write_tokens=1500,
                          cache_write_1h_tokens=1000, output_tokens=2))  # fmt: skip
    status, headers, raw = await post(mock, HELLO)
    assert status == 200 and headers["x-amzn-RequestId"]
    body = orjson.loads(raw)
    assert body["output"] == {"message": {"role": "assistant", "content": [{"text": "cached answer"}]}}
    assert body["stopReason"] == "end_turn" and body["metrics"]["latencyMs"] > 0
    assert body["usage"] == {
        "inputTokens": 500,  # Bedrock's inputTokens leaves the cache reads and writes out
        "outputTokens": 2,
        "totalTokens": 5002,
        "cacheReadInputTokens": 3000,
        "cacheWriteInputTokens": 1500,
        "cacheDetails": [{"ttl": "1h", "inputTokens": 1000}, {"ttl": "5m", "inputTokens": 500}],
    }
    assert mock.last_request["model"] == MODEL and mock.last_request["format"] == "bedrock"


async def test_a_stream_is_the_amazon_event_stream(mock):
    mock.script(MockReply(text="two words", tool_calls=[{"name": "f", "arguments": {"a": 1}}]))
    status, headers, raw = await post(mock, HELLO, stream=True)
    assert status == 200 and headers["Content-Type"] == "application/vnd.amazon.eventstream"
    got = events(raw)
    assert {k for k, _, _ in got} == {"event"}
    names = [n for _, n, _ in got]
    assert names == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert got[4][2]["start"] == {"toolUse": {"toolUseId": got[4][2]["start"]["toolUse"]["toolUseId"], "name": "f"}}
    assert got[-2][2]["stopReason"] == "tool_use"
    assert got[-1][2]["usage"]["outputTokens"] == 2


async def test_an_error_inside_the_stream_is_an_exception_message(mock):
    mock.script(MockReply(fault="stream_error", error="rate_limit", cut_after=1))
    status, _, raw = await post(mock, HELLO, stream=True)
    assert status == 200
    last = events(raw)[-1]
    assert last == (
        "exception",
        "throttlingException",
        {"message": "Too many requests, please wait before trying again."},
    )


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({**HELLO, "modelId": MODEL}, "extraneous key [modelId]"),
        ({"messages": []}, "must start with a user message"),
        ({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}, "alternate"),
        ({"messages": [HELLO["messages"][0], HELLO["messages"][0]]}, "alternate"),
    ],
)
async def test_requests_are_validated_as_bedrock_does(mock, body, needle):
    status, headers, raw = await post(mock, body)
    assert status == 400
    assert headers["x-amzn-ErrorType"].startswith("ValidationException:")
    assert needle in orjson.loads(raw)["message"]


async def test_scripted_errors_carry_their_type_header(mock):
    mock.script(MockReply(status=424, error_type="ModelErrorException", error_message="The model failed."))
    status, headers, raw = await post(mock, HELLO)
    assert status == 424 and headers["x-amzn-ErrorType"].startswith("ModelErrorException:")
    assert orjson.loads(raw) == {"message": "The model failed."}


async def test_credentials_are_verified_not_just_accepted(mock):
    assert (await post(mock, HELLO, headers={"Authorization": "Bearer ABSKbW9jaw=="}))[0] == 200  # an API key's shape
    status, headers, _ = await post(mock, HELLO, headers={"Authorization": "Bearer sk-not-bedrock"})
    assert status == 403 and headers["x-amzn-ErrorType"].startswith("UnrecognizedClientException")
    mock.require_key = "ABSKc2VjcmV0"
    status, _, _ = await post(mock, HELLO, headers={"Authorization": "Bearer ABSKbW9jaw=="})
    assert status == 403
    assert (await post(mock, HELLO, headers={"Authorization": "Bearer ABSKc2VjcmV0"}))[0] == 200
    forged = "AWS4-HMAC-SHA256 Credential=AKIDMOCKLLMCONNECT00/20260101/us-east-1/bedrock/aws4_request"
    status, headers, _ = await post(mock, HELLO, headers={"Authorization": forged})
    assert status == 403 and headers["x-amzn-ErrorType"].startswith("IncompleteSignatureException")
    assert all(r["headers"].get("Authorization") in (None, "<redacted>") for r in mock.requests)
