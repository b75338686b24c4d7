"""The Bedrock Converse codec on payloads in the documented shapes (the Bedrock Runtime API reference: Converse,
ConverseStream, TokenUsage, the error list; botocore's bedrock-runtime service model), usage and exact prices
against genai-prices' ``aws`` provider."""

from __future__ import annotations

import pytest

from llm_connect.errors import (
    LLMAuthenticationError,
    LLMContextWindowExceededError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    LLMTimeoutError,
)
from llm_connect.providers.bedrock import price_model_id, region_of
from llm_connect.types import Message, RunConfig, Usage
from llm_connect.usage.pricing import Pricing
from llm_connect.wire import bedrock_converse as W

WEATHER = {
    "type": "function",
    "function": {
        "name": "top_song",
        "description": "Get the most popular song played on a radio station.",
        "parameters": {
            "type": "object",
            "properties": {"sign": {"type": "string", "description": "The call sign for the radio station."}},
            "required": ["sign"],
        },
    },
}

# a ConverseResponse as the API reference documents it (tool use example of the Bedrock user guide)
TOOL_RESPONSE = {
    "output": {
        "message": {
            "role": "assistant",
            "content": [
                {"text": "I'll look up the most popular song on WZPZ."},
                {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song",
                             "input": {"sign": "WZPZ"}}},
            ],
        }
    },
    "stopReason": "tool_use",
    "usage": {"inputTokens": 375, "outputTokens": 60, "totalTokens": 435},
    "metrics": {"latencyMs": 1722},
}  # fmt: skip

# prompt caching (user guide, "Prompt caching"): inputTokens excludes the cached tokens, totalTokens counts them
CACHED_RESPONSE = {
    "output": {"message": {"role": "assistant", "content": [{"text": "Summary."}]}},
    "stopReason": "end_turn",
    "usage": {
        "inputTokens": 4,
        "outputTokens": 23,
        "totalTokens": 4223,
        "cacheReadInputTokens": 1168,
        "cacheWriteInputTokens": 3028,
        "cacheDetails": [{"ttl": "1h", "inputTokens": 3000}, {"ttl": "5m", "inputTokens": 28}],
    },
    "metrics": {"latencyMs": 800},
}

# the ConverseStream event sequence of a tool-use turn, payloads as the events' shapes (MessageStartEvent,
# ContentBlockDeltaEvent, ContentBlockStartEvent, MessageStopEvent, ConverseStreamMetadataEvent)
STREAM = [
    ("messageStart", {"role": "assistant"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me"}}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " check."}}),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    ("contentBlockStart", {"contentBlockIndex": 1,
                           "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "top_song"}}}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"sign": '}}}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"WZPZ"}'}}}),
    ("contentBlockStop", {"contentBlockIndex": 1}),
    ("messageStop", {"stopReason": "tool_use"}),
    ("metadata", {"usage": {"inputTokens": 375, "outputTokens": 60, "totalTokens": 435},
                  "metrics": {"latencyMs": 1722}}),
]  # fmt: skip


def build(messages, **cfg):
    return W.build_request("us.anthropic.claude-3-5-haiku-20241022-v1:0", messages, RunConfig(**cfg), stream=False,
                           max_tokens=None)  # fmt: skip


def test_request_shape_system_inference_config_and_path():
    req = build(
        [Message("system", "You are terse."), Message("user", "Hi")],
        max_tokens=200,
        temperature=0.5,
        top_p=0.9,
        stop=["END"],
        seed=3,
    )
    assert req.path == "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    assert req.body == {
        "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        "system": [{"text": "You are terse."}],
        "inferenceConfig": {"maxTokens": 200, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
    }  # no modelId in the body (it is the path), no seed (Converse has none)
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
    stream = W.build_request(arn, [Message("user", "x")], RunConfig(), stream=True, max_tokens=None)
    assert stream.path == "/model/" + arn.replace(":", "%3A").replace("/", "%2F") + "/converse-stream"


def test_tools_tool_calls_and_results_alternate_roles():
    call = {"id": "tooluse_1", "type": "function", "function": {"name": "top_song", "arguments": '{"sign": "WZPZ"}'}}
    req = build(
        [
            Message("user", "What is the most popular song on WZPZ?"),
            Message("assistant", None, tool_calls=[call]),
            Message("tool", '{"song": "Elemental Hotel", "artist": "8 Storey Hike"}', tool_call_id="tooluse_1"),
            Message("user", "Thanks"),
        ],
        tools=[WEATHER],
        tool_choice="required",
    )
    assert req.body["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "top_song",
                    "description": "Get the most popular song played on a radio station.",
                    "inputSchema": {"json": WEATHER["function"]["parameters"]},
                }
            }
        ],
        "toolChoice": {"any": {}},
    }
    assert req.body["messages"] == [
        {"role": "user", "content": [{"text": "What is the most popular song on WZPZ?"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "top_song",
                                                       "input": {"sign": "WZPZ"}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "tooluse_1",
                            "content": [{"text": '{"song": "Elemental Hotel", "artist": "8 Storey Hike"}'}]}},
            {"text": "Thanks"},  # the tool result and the next user text share one user turn
        ]},
    ]  # fmt: skip
    named = build([Message("user", "x")], tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "a"}})
    assert named.body["toolConfig"]["toolChoice"] == {"tool": {"name": "a"}}
    none = build([Message("user", "x")], tools=[WEATHER], tool_choice="none")
    assert "toolChoice" not in none.body["toolConfig"]


def test_images_cache_points_and_json_schema():
    parts = [
        {"type": "text", "text": "Describe both.", "cache_control": {"type": "ephemeral"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "s3://bucket/cat.jpg"}},
    ]
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    req = build(
        [Message("user", parts)],
        response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": schema}},
    )
    assert req.body["messages"][0]["content"] == [
        {"text": "Describe both."},
        {"cachePoint": {"type": "default"}},
        {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
        {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bucket/cat.jpg"}}}},
    ]
    fmt = req.body["outputConfig"]["textFormat"]
    assert fmt["type"] == "json_schema"
    assert fmt["structure"]["jsonSchema"] == {"schema": '{"type":"object","properties":{"a":{"type":"string"}}}',
                                              "name": "out"}  # fmt: skip
    with pytest.raises(LLMInvalidRequestError, match="data URLs or s3"):
        build([Message("user", [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}])])
    with pytest.raises(LLMInvalidRequestError, match="png, jpeg, gif or webp"):
        build([Message("user", [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA=="}}])])


def test_extra_body_adds_any_converse_field():
    req = build([Message("user", "x")], extra_body={"performanceConfig": {"latency": "optimized"}})
    assert req.body["performanceConfig"] == {"latency": "optimized"}


def test_tool_use_response():
    p = W.parse_response(TOOL_RESPONSE)
    assert p.text == "I'll look up the most popular song on WZPZ."
    assert p.finish_reason == "tool_calls" and p.model is None
    assert p.tool_calls == [
        {"id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "type": "function",
         "function": {"name": "top_song", "arguments": '{"sign":"WZPZ"}'}}
    ]  # fmt: skip
    assert p.usage == Usage(input_tokens=375, output_tokens=60)


def test_reasoning_blocks_are_kept_apart():
    body = {
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "The user wants...", "signature": "EqoBCkgIARAB"}}},
            {"text": "42"},
        ]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 30, "totalTokens": 40},
        "metrics": {"latencyMs": 5},
        "serviceTier": {"type": "priority"},
    }  # fmt: skip
    p = W.parse_response(body)
    assert (p.text, p.reasoning, p.service_tier) == ("42", "The user wants...", "priority")


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_tool_use", "malformed_tool_use"),
    ],
)
def test_stop_reasons(reason, finish):
    assert W.parse_response({**CACHED_RESPONSE, "stopReason": reason}).finish_reason == finish


def test_cached_usage_adds_reads_and_writes_to_input():
    u = W.parse_response(CACHED_RESPONSE).usage
    assert u == Usage(input_tokens=4200, output_tokens=23, cache_read_tokens=1168, cache_write_tokens=3028,
                      cache_write_1h_tokens=3000)  # fmt: skip
    assert u.total_tokens == CACHED_RESPONSE["usage"]["totalTokens"]  # 4 + 1168 + 3028 + 23


def test_stream_decoder_text_tool_use_and_usage_at_metadata():
    d = W.StreamDecoder()
    chunks = [c for name, data in STREAM for c in d.feed(name, data)]
    assert "".join(c.text for c in chunks) == "Let me check."
    assert d.tool_calls == [
        {"id": "tooluse_1", "type": "function", "function": {"name": "top_song", "arguments": '{"sign": "WZPZ"}'}}
    ]
    final = d.finish()
    assert final.finish_reason == "tool_calls"
    assert final.usage == Usage(input_tokens=375, output_tokens=60)
    assert chunks[-1].usage_so_far == final.usage  # the metadata event reports it as it comes


def test_a_stream_cut_before_metadata_is_an_error():
    d = W.StreamDecoder()
    for name, data in STREAM[:-1]:  # messageStop seen, metadata (the usage) never came
        d.feed(name, data)
    with pytest.raises(LLMProviderUnavailableError, match="metadata"):
        d.finish()


def test_a_stream_exception_raises_its_error():
    d = W.StreamDecoder()
    d.feed(*STREAM[0])
    with pytest.raises(LLMRateLimitError, match="ThrottlingException"):
        d.feed("exception", {"__type": "throttlingException", "message": "Too many tokens, please wait."})
    with pytest.raises(LLMProviderUnavailableError, match="ModelStreamErrorException"):
        W.StreamDecoder().feed("exception", {"__type": "modelStreamErrorException", "message": "x",
                                             "originalStatusCode": 500})  # fmt: skip


HEADER = "x-amzn-ErrorType"


@pytest.mark.parametrize(
    ("status", "etype", "message", "cls"),
    [
        (400, "ValidationException", "Malformed input request, please reformat your input and try again.",
         LLMInvalidRequestError),
        (400, "ValidationException", "Input is too long for requested model.", LLMContextWindowExceededError),
        (403, "AccessDeniedException", "You don't have access to the model with the specified model ID.",
         LLMAuthenticationError),
        (403, "UnrecognizedClientException", "The security token included in the request is invalid.",
         LLMAuthenticationError),
        (403, "InvalidSignatureException", "The request signature we calculated does not match...",
         LLMAuthenticationError),
        (403, "ExpiredTokenException", "The security token included in the request is expired",
         LLMAuthenticationError),
        (404, "ResourceNotFoundException", "Could not resolve the foundation model.", LLMInvalidRequestError),
        (408, "ModelTimeoutException", "Model has timed out in processing the request.", LLMTimeoutError),
        (424, "ModelErrorException", "The model returned an error.", LLMProviderUnavailableError),
        (429, "ThrottlingException", "Too many requests, please wait before trying again.", LLMRateLimitError),
        (429, "ModelNotReadyException", "Model is not ready for inference.", LLMProviderUnavailableError),
        (400, "ServiceQuotaExceededException", "Your request exceeds the service quota.", LLMRateLimitError),
        (500, "InternalServerException", "The server encountered an error.", LLMProviderUnavailableError),
        (503, "ServiceUnavailableException", "Bedrock is unable to process your request.",
         LLMProviderUnavailableError),
    ],
)  # fmt: skip
def test_errors_by_type_header_then_status(status, etype, message, cls):
    headers = {HEADER: f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/", "x-amzn-RequestId": "r-1"}
    err = W.classify_error(status, {"message": message}, headers)
    assert type(err) is cls and err.status_code == status and err.request_id == "r-1"
    assert str(err).startswith(etype)
    body_typed = W.classify_error(status, {"__type": f"com.amazon.bedrock#{etype}", "message": message}, {})
    assert type(body_typed) is cls  # the same type read from the body's __type


def test_throttling_retries_after_backoff_and_model_not_ready_after_a_pause():
    throttled = W.classify_error(429, {"message": "slow down"}, {HEADER: "ThrottlingException"})
    assert throttled.retryable and throttled.retry_after is None  # no Retry-After: the router's backoff decides
    not_ready = W.classify_error(429, {"message": "Model is not ready"}, {HEADER: "ModelNotReadyException"})
    assert not_ready.retryable and not_ready.retry_after == 5.0


def test_errors_without_a_type_fall_back_to_the_status():
    assert type(W.classify_error(429, None, {})) is LLMRateLimitError
    assert type(W.classify_error(502, "<html>Bad Gateway</html>", {})) is LLMProviderUnavailableError
    assert type(W.classify_error(403, {"Message": "User: arn:... is not authorized"}, {})) is LLMAuthenticationError


# -- ids and prices --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "priced_as"),
    [
        ("anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0"),
        (
            "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-3-5-sonnet-20240620-v1:0",
            "eu.anthropic.claude-3-5-sonnet-20240620-v1:0",
        ),
    ],
)
def test_price_ids_keep_the_profile_prefix_and_unwrap_arns(model, priced_as):
    assert price_model_id(model) == priced_as


def test_region_of_an_arn():
    assert region_of("arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.x.y") == "eu-west-1"
    assert region_of("us.anthropic.claude-3-5-haiku-20241022-v1:0") is None


@pytest.mark.parametrize(
    "model",
    [
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "us.amazon.nova-pro-v1:0",
        "us.meta.llama3-3-70b-instruct-v1:0",
    ],
)
def test_exact_price_against_genai_prices(model, aws_price):
    usage = W.parse_usage({"inputTokens": 1200, "outputTokens": 300, "cacheReadInputTokens": 1000,
                           "cacheWriteInputTokens": 0})  # fmt: skip
    assert Pricing().price("bedrock", price_model_id(model), usage) == aws_price(model, usage) > 0


def test_global_and_regional_profiles_are_priced_apart(aws_price):
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    p = Pricing()
    regional = p.price("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", usage)
    global_ = p.price("bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", usage)
    assert regional == aws_price("us.anthropic.claude-sonnet-4-5-20250929-v1:0", usage)
    assert global_ == aws_price("global.anthropic.claude-sonnet-4-5-20250929-v1:0", usage)
    assert regional > global_  # genai-prices: regional endpoints cost 10 % more for these models
