"""Embedding wire formats: OpenAI ``/embeddings``, Gemini ``batchEmbedContents``, Ollama ``/api/embed``.

Pure functions, no I/O. Each format is an :class:`EmbeddingCodec` in :data:`CODECS`, keyed by the chat wire
module its providers use (``openai_chat`` for OpenAI and every OpenAI-compatible server, ``gemini``,
``ollama``), so a provider row needs nothing new to embed; errors are classified by that chat module's
``classify_error`` (the providers answer both APIs with the same error bodies).

* OpenAI: ``POST {base}/embeddings`` ``{"model", "input": [texts], "encoding_format": "float",
  "dimensions"?}`` → ``{"data": [{"embedding", "index"}], "model", "usage": {"prompt_tokens"}}``. Vectors are
  asked for as floats (OpenAI-compatible servers do not all speak base64); a base64 reply is decoded too.
* Gemini: ``POST {base}/v1beta/models/{model}:batchEmbedContents`` ``{"requests": [{"model", "content":
  {"parts": [{"text"}]}, "outputDimensionality"?}]}`` → ``{"embeddings": [{"values"}]}``, at most
  :data:`GEMINI_BATCH` texts per request (a longer input becomes several requests). The reply carries no
  token count (``usageMetadata.promptTokenCount`` is read when present): the adapter asks ``:countTokens``
  for the same texts (:func:`gemini_count_request`), and bills the bound, marked estimated, if that fails.
  ``RunConfig.extra_body`` is merged into every request object (``taskType``, ``title``).
* Vertex AI (text and Gemini embedding models): ``POST …/publishers/google/models/{model}:predict``
  ``{"instances": [{"content"}], "parameters": {"outputDimensionality"?}}`` → ``{"predictions": [{"embeddings":
  {"values", "statistics": {"token_count", "truncated"}}}]}``: the token counts are summed. At most
  :data:`VERTEX_BATCH` texts per request, one for the ``gemini-embedding-*`` models (Vertex's limits);
  ``extra_body`` goes into every instance (``task_type``, ``title``). The path is relative to Vertex's
  publisher path (the adapter places it, as its chat paths).
* Ollama: ``POST {base}/api/embed`` ``{"model", "input": [texts], "truncate": false, "dimensions"?}`` →
  ``{"embeddings": [[...]], "prompt_eval_count"}``. ``truncate`` is sent false so that an input over the
  model's window is an error, as on OpenAI, not silently cut (``extra_body={"truncate": true}`` restores it).
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..types import RunConfig, Usage
from . import WireRequest
from ._common import count_field, merge_extra_body, to_int

__all__ = [
    "CODECS",
    "GEMINI_BATCH",
    "VERTEX_BATCH",
    "EmbeddingCodec",
    "ParsedEmbeddings",
    "decode_base64_vector",
    "encode_base64_vector",
    "gemini_count_request",
    "parse_gemini_count",
]

#: texts per Gemini batchEmbedContents request (the API's limit)
GEMINI_BATCH = 100
#: instances per Vertex AI :predict request for text embedding models (gemini-embedding-* take one)
VERTEX_BATCH = 250


@dataclass(slots=True)
class ParsedEmbeddings:
    """One embedding reply: the vectors in input order, the model it names, the input tokens it reports
    (None: the reply has no count)."""

    vectors: list[list[float]]
    model: str | None
    input_tokens: int | None

    @property
    def usage(self) -> Usage | None:
        return None if self.input_tokens is None else Usage(input_tokens=self.input_tokens)


Build = Callable[[str, Sequence[str], "int | None", RunConfig], list[WireRequest]]


@dataclass(frozen=True, slots=True)
class EmbeddingCodec:
    """One embedding wire format: ``build(model, texts, dimensions, config)`` -> the requests to send (their
    replies, parsed by ``parse`` and concatenated, embed the texts in order)."""

    name: str
    build: Build
    parse: Callable[[Mapping[str, Any]], ParsedEmbeddings]


# ---------------------------------------------------------------------------
# float32 vectors as base64 (what OpenAI's encoding_format "base64" means: little-endian float32 bytes)


def decode_base64_vector(text: str) -> list[float]:
    """Base64 of little-endian float32 values -> the floats."""
    raw = base64.b64decode(text, validate=True)
    if len(raw) % 4:
        raise ValueError(f"a base64 embedding of {len(raw)} bytes is not a whole number of float32 values")
    values = array("f")
    values.frombytes(raw)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


def encode_base64_vector(vector: Sequence[float]) -> str:
    """Floats -> base64 of their little-endian float32 bytes (what the official SDKs decode)."""
    values = array("f", vector)
    if sys.byteorder != "little":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def _vector(value: Any, where: str) -> list[float]:
    if isinstance(value, str):
        return decode_base64_vector(value)
    if not isinstance(value, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        raise ValueError(f"{where} is not a list of numbers")
    return value


# ---------------------------------------------------------------------------
# OpenAI (and every OpenAI-compatible server)


def _openai_build(model: str, texts: Sequence[str], dimensions: int | None, config: RunConfig) -> list[WireRequest]:
    body: dict[str, Any] = {"model": model, "input": list(texts), "encoding_format": "float"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    merge_extra_body(body, config)
    return [WireRequest(path="/embeddings", body=body)]


def _openai_parse(body: Mapping[str, Any]) -> ParsedEmbeddings:
    data = body["data"]
    if not isinstance(data, list):
        raise ValueError("'data' is not a list")
    items = sorted(data, key=lambda d: to_int(d.get("index")))
    vectors = [_vector(d.get("embedding"), f"data[{i}].embedding") for i, d in enumerate(items)]
    usage = body.get("usage")
    tokens = to_int(usage.get("prompt_tokens")) if isinstance(usage, Mapping) and "prompt_tokens" in usage else None
    model = body.get("model")
    return ParsedEmbeddings(vectors, model if isinstance(model, str) else None, tokens)


# ---------------------------------------------------------------------------
# Gemini


def _gemini_build(model: str, texts: Sequence[str], dimensions: int | None, config: RunConfig) -> list[WireRequest]:
    name = model.removeprefix("models/")
    out = []
    for start in range(0, len(texts), GEMINI_BATCH):
        requests = []
        for text in texts[start : start + GEMINI_BATCH]:
            item: dict[str, Any] = {"model": f"models/{name}", "content": {"parts": [{"text": text}]}}
            if dimensions is not None:
                item["outputDimensionality"] = dimensions
            requests.append(merge_extra_body(item, config))
        out.append(WireRequest(path=f"/v1beta/models/{name}:batchEmbedContents", body={"requests": requests}))
    return out


def _gemini_parse(body: Mapping[str, Any]) -> ParsedEmbeddings:
    data = body["embeddings"]
    if not isinstance(data, list):
        raise ValueError("'embeddings' is not a list")
    vectors = [_vector(e.get("values"), f"embeddings[{i}].values") for i, e in enumerate(data)]
    meta = body.get("usageMetadata")
    tokens = to_int(meta.get("promptTokenCount")) if isinstance(meta, Mapping) and "promptTokenCount" in meta else None
    return ParsedEmbeddings(vectors, None, tokens)


def gemini_count_request(model: str, texts: Sequence[str]) -> WireRequest:
    """``POST /v1beta/models/{model}:countTokens`` for the texts an embedding call sent (one content each);
    the reply is read with :func:`parse_gemini_count`."""
    name = model.removeprefix("models/")
    contents = [{"role": "user", "parts": [{"text": t}]} for t in texts]
    return WireRequest(path=f"/v1beta/models/{name}:countTokens", body={"contents": contents})


def parse_gemini_count(body: Mapping[str, Any]) -> int:
    return count_field(body, "totalTokens")


# ---------------------------------------------------------------------------
# Vertex AI :predict


def _vertex_build(model: str, texts: Sequence[str], dimensions: int | None, config: RunConfig) -> list[WireRequest]:
    name = model.removeprefix("models/")
    batch = 1 if name.startswith("gemini-embedding") else VERTEX_BATCH
    parameters: dict[str, Any] = {} if dimensions is None else {"outputDimensionality": dimensions}
    out = []
    for start in range(0, len(texts), batch):
        instances = [merge_extra_body({"content": t}, config) for t in texts[start : start + batch]]
        body: dict[str, Any] = {"instances": instances}
        if parameters:
            body["parameters"] = dict(parameters)
        out.append(WireRequest(path=f"/models/{name}:predict", body=body))
    return out


def _vertex_parse(body: Mapping[str, Any]) -> ParsedEmbeddings:
    data = body["predictions"]
    if not isinstance(data, list):
        raise ValueError("'predictions' is not a list")
    vectors, tokens = [], 0
    for i, p in enumerate(data):
        emb = p.get("embeddings") if isinstance(p, Mapping) else None
        if not isinstance(emb, Mapping):
            raise ValueError(f"predictions[{i}] has no embeddings")
        vectors.append(_vector(emb.get("values"), f"predictions[{i}].embeddings.values"))
        stats = emb.get("statistics")
        tokens += to_int(stats.get("token_count")) if isinstance(stats, Mapping) else 0
    return ParsedEmbeddings(vectors, None, tokens)


# ---------------------------------------------------------------------------
# Ollama


def _ollama_build(model: str, texts: Sequence[str], dimensions: int | None, config: RunConfig) -> list[WireRequest]:
    body: dict[str, Any] = {"model": model, "input": list(texts), "truncate": False}
    if dimensions is not None:
        body["dimensions"] = dimensions
    merge_extra_body(body, config)
    return [WireRequest(path="/api/embed", body=body)]


def _ollama_parse(body: Mapping[str, Any]) -> ParsedEmbeddings:
    data = body["embeddings"]
    if not isinstance(data, list):
        raise ValueError("'embeddings' is not a list")
    vectors = [_vector(v, f"embeddings[{i}]") for i, v in enumerate(data)]
    tokens = to_int(body.get("prompt_eval_count")) if "prompt_eval_count" in body else None
    model = body.get("model")
    return ParsedEmbeddings(vectors, model if isinstance(model, str) else None, tokens)


#: chat wire module name (or a row's own ``embeddings``) -> the embedding format it speaks (Anthropic has none)
CODECS: Mapping[str, EmbeddingCodec] = MappingProxyType(
    {
        "openai_chat": EmbeddingCodec("openai", _openai_build, _openai_parse),
        "gemini": EmbeddingCodec("gemini", _gemini_build, _gemini_parse),
        "ollama": EmbeddingCodec("ollama", _ollama_build, _ollama_parse),
        "vertex_predict": EmbeddingCodec("vertex_predict", _vertex_build, _vertex_parse),
    }
)
