"""Vertex AI: the codecs on payloads in Vertex's documented shapes, service endpoints, configuration and errors.

Shapes follow the Vertex AI REST reference (``GenerateContentResponse`` with ``createTime``, ``responseId``,
``modelVersion`` and ``usageMetadata`` incl. ``trafficType`` and per-modality details; ``CountTokensResponse``
with ``totalBillableCharacters``; ``google.rpc.Status`` error bodies) and Anthropic's Claude-on-Vertex page
(Messages responses, and Google's own error bodies from the Vertex front end for auth and quota).
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal

import genai_prices
import pytest

from llm_connect import LLMConfigurationError, create_adapter
from llm_connect.errors import (
    LLMAuthenticationError,
    LLMContextWindowExceededError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
)
from llm_connect.registry import HTTP_PROVIDERS, check_spec
from llm_connect.wire import anthropic_messages as A
from llm_connect.wire import gemini as G

pytest.importorskip("google.auth")

pytestmark = pytest.mark.usefixtures("no_google_env")


#: a generateContent response as Vertex returns it (gemini-2.5-flash, thinking on)
RESPONSE = {
    "candidates": [
        {
            "content": {"role": "model", "parts": [{"text": "The sky scatters blue light."}]},
            "finishReason": "STOP",
            "avgLogprobs": -0.21,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 9,
        "candidatesTokenCount": 7,
        "totalTokenCount": 236,
        "trafficType": "ON_DEMAND",
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
        "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 7}],
        "thoughtsTokenCount": 220,
    },
    "modelVersion": "gemini-2.5-flash",
    "createTime": "2025-06-23T19:32:41.123456Z",
    "responseId": "mZ1ZaPqDFNvr-O4PpsSGyAY",
}


def _status(code: int, status: str, message: str, **extra) -> dict:
    return {"error": {"code": code, "message": message, "status": status, **extra}}


def test_generate_content_response_usage_and_price():
    p = G.parse_response(RESPONSE)
    assert (p.text, p.model, p.finish_reason, p.request_id) == (
        "The sky scatters blue light.",
        "gemini-2.5-flash",
        "stop",
        "mZ1ZaPqDFNvr-O4PpsSGyAY",
    )
    u = p.usage
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens) == (9, 227, 220)  # thoughts are output
    a = create_adapter("vertex:gemini-2.5-flash", project="p", access_token="ya29.t")
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=9, output_tokens=227), "gemini-2.5-flash", provider_id="google"
    ).total_price
    assert a.price(u, p.model) == expected == Decimal("0.0000027") + Decimal("0.0005675")


def test_stream_events_in_vertex_shape():
    d = G.StreamDecoder()
    first = {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "The sky"}]}}],
        "usageMetadata": {"trafficType": "ON_DEMAND"},
        "modelVersion": "gemini-2.5-flash",
        "createTime": "2025-06-23T19:32:41.123456Z",
        "responseId": "r1",
    }
    last = {
        **RESPONSE,
        "candidates": [{**RESPONSE["candidates"][0], "content": {"role": "model", "parts": [{"text": " is blue."}]}}],
    }
    texts = [c.text for ev in (first, last) for c in d.feed(None, ev) if c.text]
    final = d.finish()
    assert "".join(texts) == "The sky is blue." and final.finish_reason == "stop"
    assert final.usage is not None and final.usage.output_tokens == 227


def test_count_tokens_response():
    assert (
        G.parse_count_response(
            {
                "totalTokens": 31,
                "totalBillableCharacters": 96,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 31}],
            }
        )
        == 31
    )


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (
            401,
            _status(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential.",
                details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_EXPIRED"}],
            ),
            LLMAuthenticationError,
        ),
        (
            403,
            _status(
                403,
                "PERMISSION_DENIED",
                "Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/projects/"
                "p/locations/us-central1/publishers/google/models/gemini-2.5-flash' (or it may not exist).",
                details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED"}],
            ),
            LLMAuthenticationError,
        ),
        (
            404,
            _status(
                404,
                "NOT_FOUND",
                "Publisher Model `projects/p/locations/us-central1/publishers/google/models/gemini-9` was not found "
                "or your project does not have access to it.",
            ),
            LLMInvalidRequestError,
        ),
        (
            429,
            _status(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/"
                "generative-ai/docs/error-code-429 for more details.",
            ),
            LLMRateLimitError,
        ),
        (503, _status(503, "UNAVAILABLE", "The service is currently unavailable."), LLMProviderUnavailableError),
        (
            400,
            _status(
                400,
                "INVALID_ARGUMENT",
                "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576).",
            ),
            LLMContextWindowExceededError,
        ),
    ],
)
def test_gemini_codec_maps_vertex_errors(status, body, cls):
    err = G.classify_error(status, body, {})
    assert type(err) is cls and err.status_code == status


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        # the Vertex front end answers auth and quota in Google's shape, also for Claude
        (
            401,
            _status(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
            LLMAuthenticationError,
        ),
        (
            403,
            _status(403, "PERMISSION_DENIED", "Permission 'aiplatform.endpoints.predict' denied."),
            LLMAuthenticationError,
        ),
        (
            429,
            _status(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base "
                "model: anthropic-claude-sonnet-4-5. Please submit a quota increase request.",
            ),
            LLMRateLimitError,
        ),
        (
            404,
            _status(404, "NOT_FOUND", "Publisher Model `…/anthropic/models/claude-x@1` not found."),
            LLMInvalidRequestError,
        ),
        # the model's own errors keep Anthropic's shape
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            LLMProviderUnavailableError,
        ),
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 210000 tokens > 200000 maximum",
                },
            },
            LLMContextWindowExceededError,
        ),
    ],
)
def test_messages_codec_maps_claude_on_vertex_errors(status, body, cls):
    assert type(A.classify_error(status, body, {})) is cls


def test_claude_on_vertex_response_and_price():
    body = {
        "id": "msg_vrtx_01HWzCEg8Db9R5ACJTmQuC2p",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 6,
        },
    }
    p = A.parse_response(body)
    assert (p.text, p.finish_reason, p.usage.input_tokens, p.usage.output_tokens) == ("Hello!", "stop", 12, 6)
    a = create_adapter("vertex_anthropic:claude-sonnet-4-5@20250929", project="p", access_token="ya29.t")
    want = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=12, output_tokens=6), "claude-sonnet-4-5", provider_id="anthropic"
    ).total_price
    assert a.price(p.usage, p.model) == want  # the reply's dated id
    assert a.price(p.usage) == want  # the "@" id asked for (reservations)


# -- endpoints and configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "host"),
    [
        ("us-central1", "https://us-central1-aiplatform.googleapis.com"),
        ("europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
        ("global", "https://aiplatform.googleapis.com"),
        ("us", "https://aiplatform.us.rep.googleapis.com"),
        ("eu", "https://aiplatform.eu.rep.googleapis.com"),
    ],
)
def test_service_endpoint_per_location(location, host):
    a = create_adapter("vertex:gemini-2.5-flash", project="my-proj", location=location, access_token="ya29.t")
    assert a.api_base == host and (a.project, a.location) == ("my-proj", location)


def test_defaults_global_and_region_and_the_anthropic_sdk_variables(monkeypatch):
    assert create_adapter("vertex:gemini-2.5-flash", project="p", access_token="t").location == "global"
    assert (
        create_adapter("vertex:gemini-2.5-flash", project="p", region="asia-east1", access_token="t").location
        == "asia-east1"
    )
    monkeypatch.setenv("ANTHROPIC_VERTEX_PROJECT_ID", "sdk-project")
    monkeypatch.setenv("CLOUD_ML_REGION", "us-east5")
    a = create_adapter("vertex_anthropic:claude-haiku-4-5@20251001", access_token="t")
    assert (a.project, a.location, a.api_base) == (
        "sdk-project",
        "us-east5",
        "https://us-east5-aiplatform.googleapis.com",
    )
    with pytest.raises(LLMConfigurationError, match="GOOGLE_CLOUD_PROJECT"):
        create_adapter("vertex:gemini-2.5-flash", access_token="t")  # ANTHROPIC_VERTEX_PROJECT_ID is Claude's only


def test_registry_rows_aliases_and_capabilities():
    assert check_spec("vertex_ai:gemini-2.5-pro") == "vertex" and check_spec("google-vertex:x") == "vertex"
    assert check_spec("vertex-anthropic:claude-opus-4-1@20250805") == "vertex_anthropic"
    for name in ("vertex", "vertex_anthropic"):
        spec = HTTP_PROVIDERS[name]
        assert spec.genai_prices_id == "google" and spec.extra == "vertex"
    assert HTTP_PROVIDERS["vertex"].embedding_format == "vertex_predict"  # not the Gemini API's batchEmbedContents
    assert HTTP_PROVIDERS["vertex_anthropic"].embedding_format is None


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"project": "a/b"}, "project"),
        ({"location": "us-central1?x"}, "location"),
        ({"refresh_margin": -1}, "refresh_margin"),
        ({"access_token": "bad\ntoken"}, "access_token"),
        ({"access_token": None, "credentials": object()}, "google-auth Credentials"),
    ],
)
def test_configuration_errors_are_clear(kw, needle):
    with pytest.raises(LLMConfigurationError, match=needle):
        create_adapter("vertex:gemini-2.5-flash", **{"project": "p", "access_token": "t", **kw})


def test_credentials_files_that_cannot_serve(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(LLMConfigurationError, match="cannot read"):
        create_adapter("vertex:gemini-2.5-flash", credentials_file=str(missing))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"type": "api_key", "key": "x"}))
    with pytest.raises(LLMConfigurationError, match="not a Google credentials file"):
        create_adapter("vertex:gemini-2.5-flash", credentials_file=str(other))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"type": "service_account", "client_email": "a@b"}))
    with pytest.raises(LLMConfigurationError, match="malformed"):
        create_adapter("vertex:gemini-2.5-flash", credentials_file=str(broken))


def test_without_google_auth_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.auth.transport.requests", None)  # as if the extra were absent
    with pytest.raises(LLMConfigurationError, match=r"pip install 'llm-connect\[vertex\]'"):
        create_adapter("vertex:gemini-2.5-flash", project="p")
    # a static token needs no google-auth
    assert create_adapter("vertex:gemini-2.5-flash", project="p", access_token="ya29.t").project == "p"


def test_an_authorized_user_file_from_gcloud_loads_with_its_quota_project(tmp_path):
    adc = tmp_path / "application_default_credentials.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "test-client.apps.googleusercontent.com",
                "client_secret": "test-secret",
                "refresh_token": "1//0g-refresh",
                "quota_project_id": "billing-project",
            }
        )
    )
    a = create_adapter("vertex:gemini-2.5-flash", credentials_file=str(adc))
    assert a.project == "billing-project"
