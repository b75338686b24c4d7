"""The embedding codecs (OpenAI, Gemini, Ollama; the gateway's inbound OpenAI codec) on official shapes."""

from __future__ import annotations

import base64
import struct

import pytest

from llm_connect.embeddings import EmbeddingResponse, check_dimensions, embedding_bound, normalize_texts
from llm_connect.errors import LLMInvalidRequestError
from llm_connect.types import RunConfig, Usage
from llm_connect.wire.embeddings import (
    CODECS,
    GEMINI_BATCH,
    decode_base64_vector,
    encode_base64_vector,
    gemini_count_request,
)
from llm_connect.wire.inbound import RequestProblem
from llm_connect.wire.inbound.openai_embeddings import embedding_body, parse_embedding_fields

# the reply of OpenAI's API reference for POST /v1/embeddings (vector shortened)
OPENAI_REPLY = {
    "object": "list",
    "data": [
        {"object": "embedding", "embedding": [0.0023064255, -0.009327292, -0.0028842222], "index": 0},
    ],
    "model": "text-embedding-3-small",
    "usage": {"prompt_tokens": 8, "total_tokens": 8},
}


def test_openai_request_and_reply():
    (req,) = CODECS["openai_chat"].build("text-embedding-3-small", ["a", "b"], 256, RunConfig())
    assert req.path == "/embeddings"
    assert req.body == {
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
        "encoding_format": "float",
        "dimensions": 256,
    }
    parsed = CODECS["openai_chat"].parse(OPENAI_REPLY)
    assert parsed.vectors == [[0.0023064255, -0.009327292, -0.0028842222]]
    assert parsed.model == "text-embedding-3-small"
    assert parsed.usage == Usage(input_tokens=8)


def test_openai_reply_in_any_index_order_and_base64():
    vec = [0.5, -0.25, 1.0]
    b64 = base64.b64encode(struct.pack("<3f", *vec)).decode()
    reply = {"data": [{"index": 1, "embedding": b64}, {"index": 0, "embedding": [1.0, 2.0, 3.0]}], "model": "m"}
    parsed = CODECS["openai_chat"].parse(reply)
    assert parsed.vectors == [[1.0, 2.0, 3.0], vec]
    assert parsed.input_tokens is None  # no usage in the reply: the adapter bills the bound


def test_base64_round_trip_is_little_endian_float32():
    vec = [0.1, -2.5, 3.25]
    text = encode_base64_vector(vec)
    assert base64.b64decode(text) == struct.pack("<3f", *vec)
    assert decode_base64_vector(text) == pytest.approx(vec, rel=1e-7)
    with pytest.raises(ValueError):
        decode_base64_vector(base64.b64encode(b"abc").decode())


def test_gemini_batches_of_at_most_100_with_output_dimensionality_and_extra_body():
    texts = [f"t{i}" for i in range(GEMINI_BATCH + 5)]
    cfg = RunConfig(extra_body={"taskType": "RETRIEVAL_DOCUMENT"})
    reqs = CODECS["gemini"].build("models/gemini-embedding-001", texts, 768, cfg)
    assert [len(r.body["requests"]) for r in reqs] == [GEMINI_BATCH, 5]
    assert reqs[0].path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert reqs[1].body["requests"][0] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "t100"}]},
        "outputDimensionality": 768,
        "taskType": "RETRIEVAL_DOCUMENT",
    }
    parsed = CODECS["gemini"].parse({"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]})
    assert parsed.vectors == [[0.1, 0.2], [0.3, 0.4]]
    assert parsed.input_tokens is None
    count = gemini_count_request("gemini-embedding-001", ["a", "b"])
    assert count.path.endswith(":countTokens") and len(count.body["contents"]) == 2


def test_ollama_request_and_reply():
    (req,) = CODECS["ollama"].build("nomic-embed-text", ["Why is the sky blue?"], None, RunConfig())
    assert req.path == "/api/embed"
    assert req.body == {"model": "nomic-embed-text", "input": ["Why is the sky blue?"], "truncate": False}
    reply = {
        "model": "nomic-embed-text",
        "embeddings": [[0.010071029, -0.0017594862, 0.05007221]],
        "total_duration": 14143917,
        "load_duration": 1019500,
        "prompt_eval_count": 8,
    }
    parsed = CODECS["ollama"].parse(reply)
    assert parsed.vectors == [[0.010071029, -0.0017594862, 0.05007221]] and parsed.input_tokens == 8


@pytest.mark.parametrize("reply", [{}, {"data": "x"}, {"data": [{"index": 0, "embedding": ["a"]}]}])
def test_a_reply_in_no_known_shape_raises(reply):
    with pytest.raises((KeyError, ValueError)):
        CODECS["openai_chat"].parse(reply)


def test_anthropic_has_no_embedding_codec():
    assert "anthropic_messages" not in CODECS


def test_input_checks():
    assert normalize_texts("x") == ["x"]
    assert normalize_texts(("a", "b")) == ["a", "b"]
    for bad in ([], [1, 2], [[1, 2]], b"x", 3, ["a", None]):
        with pytest.raises(LLMInvalidRequestError):
            normalize_texts(bad)
    with pytest.raises(LLMInvalidRequestError, match="token-id"):
        normalize_texts([[101, 102]])
    assert check_dimensions(None) is None and check_dimensions(8) == 8
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(LLMInvalidRequestError):
            check_dimensions(bad)
    assert embedding_bound(["ab", "é"]) == (2 + 4) + (2 + 4)


def test_inbound_fields_and_problems():
    f = parse_embedding_fields({"input": "hi", "model": "m"})
    assert (f.texts, f.dimensions, f.encoding_format) == (["hi"], None, "float")
    f = parse_embedding_fields({"input": ["a", "b"], "dimensions": 8, "encoding_format": "base64"})
    assert (f.texts, f.dimensions, f.encoding_format) == (["a", "b"], 8, "base64")
    cases = [
        ({}, "input", 422),
        ({"input": []}, "input", 422),
        ({"input": ["a", 3.5]}, "input[1]", 422),
        ({"input": [1, 2, 3]}, "input", 400),
        ({"input": [[1, 2]]}, "input", 400),
        ({"input": "a", "dimensions": 0}, "dimensions", 422),
        ({"input": "a", "dimensions": "8"}, "dimensions", 422),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format", 422),
    ]
    for body, param, status in cases:
        with pytest.raises(RequestProblem) as info:
            parse_embedding_fields(body)
        assert (info.value.param, info.value.status) == (param, status), body


def test_inbound_body_is_openais_shape():
    resp = EmbeddingResponse([[0.5, 1.0], [0.25, 2.0]], "text-embedding-3-small", "openai", Usage(input_tokens=5))
    body = embedding_body(resp)
    assert body == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, 1.0]},
            {"object": "embedding", "index": 1, "embedding": [0.25, 2.0]},
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 5, "total_tokens": 5},
    }
    b64 = embedding_body(resp, "base64")["data"][1]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(b64)) == (0.25, 2.0)
