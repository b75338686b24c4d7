"""The Chat Completions codec on payloads in Azure OpenAI's documented shapes (REST reference, content filtering)."""

from __future__ import annotations

import pytest

from llm_connect.errors import (
    LLMAuthenticationError,
    LLMContentFilterError,
    LLMContextWindowExceededError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
)
from llm_connect.wire import openai_chat as W

_SAFE = {"filtered": False, "severity": "safe"}
_RESULTS = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}

RESPONSE = {
    "id": "chatcmpl-AZ1",
    "object": "chat.completion",
    "created": 1729000000,
    "model": "gpt-4o-2024-11-20",
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _RESULTS}],
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Hello!", "refusal": None},
            "content_filter_results": _RESULTS,
            "logprobs": None,
        }
    ],
    "system_fingerprint": "fp_abc",
    "usage": {
        "prompt_tokens": 1500,
        "completion_tokens": 20,
        "total_tokens": 1520,
        "prompt_tokens_details": {"cached_tokens": 1280, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
}


def test_response_with_filter_results():
    p = W.parse_response(RESPONSE)
    assert (p.text, p.model, p.finish_reason) == ("Hello!", "gpt-4o-2024-11-20", "stop")
    assert (p.usage.input_tokens, p.usage.cache_read_tokens, p.usage.output_tokens) == (1500, 1280, 20)


def test_filtered_completion_has_no_content_and_finish_reason_content_filter():
    body = {**RESPONSE, "choices": [{**RESPONSE["choices"][0], "finish_reason": "content_filter"}]}
    body["choices"][0]["message"] = {"role": "assistant", "content": None}
    p = W.parse_response(body)
    assert p.finish_reason == "content_filter" and p.text == ""


def test_stream_first_chunk_has_no_choices_and_no_model():
    d = W.StreamDecoder()
    first = {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": []}
    assert d.feed(None, first) == []
    base = {"id": "chatcmpl-AZ2", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-11-20"}
    d.feed(None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    out = d.feed(None, {**base, "choices": [{"index": 0, "delta": {"content": "Hi"}, "content_filter_results": {}}]})
    assert out[0].text == "Hi"
    d.feed(None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]})
    usage = {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
    d.feed(None, {**base, "choices": [], "usage": usage})
    last = d.finish()
    assert last.finish_reason == "content_filter" and last.model == "gpt-4o-2024-11-20"
    assert last.usage.input_tokens == 9


PROMPT_FILTERED = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {**_RESULTS, "hate": {"filtered": True, "severity": "medium"}},
        },
    }
}


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls"),
    [
        (400, PROMPT_FILTERED, {}, LLMContentFilterError),
        (
            401,
            {"error": {"code": "401", "message": "Access denied due to invalid subscription key."}},
            {},
            LLMAuthenticationError,
        ),
        (
            404,
            {"error": {"code": "DeploymentNotFound", "message": "The API deployment does not exist."}},
            {},
            LLMInvalidRequestError,
        ),
        (
            400,
            {
                "error": {
                    "message": "maximum context length is 128000 tokens",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
            {},
            LLMContextWindowExceededError,
        ),
        (
            429,
            {"error": {"code": "429", "message": "Please retry after 6 seconds."}},
            {"retry-after": "6", "retry-after-ms": "5500"},
            LLMRateLimitError,
        ),
        (
            500,
            {"error": {"code": "InternalServerError", "message": "Backend returned unexpected response."}},
            {},
            LLMProviderUnavailableError,
        ),
    ],
)
def test_azure_errors(status, body, headers, cls):
    err = W.classify_error(status, body, headers)
    assert type(err) is cls
    assert err.status_code == status
    if cls is LLMRateLimitError:
        assert err.retry_after == 5.5  # retry-after-ms is preferred
    if cls is LLMContentFilterError:
        assert err.body["error"]["innererror"]["content_filter_result"]["hate"]["filtered"] is True
