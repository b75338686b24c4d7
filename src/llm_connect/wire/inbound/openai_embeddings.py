"""OpenAI ``POST /v1/embeddings`` as an inbound codec: the request's embedding fields in, the reply body out.

Pure functions, no I/O. :func:`parse_embedding_fields` reads ``input`` (a string or a list of strings; token-id
arrays are refused with a 400 naming ``input``: they are one tokenizer's ids and mean nothing to the other
providers a group may route to), ``dimensions`` and ``encoding_format``; the gateway reads the fields every call
shares (``model``, ``tenant_id``, ...) as for chat. :func:`embedding_body` renders an
:class:`~llm_connect.embeddings.EmbeddingResponse` as OpenAI's ``{"object": "list", "data": [...], "model",
"usage"}``, each vector a list of floats or, for ``encoding_format: "base64"``, the base64 of its little-endian
float32 bytes (what the official SDKs decode; they ask for base64 unless told otherwise).

Problems are :class:`~llm_connect.wire.inbound.RequestProblem` (the offending parameter, a message, a status).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...embeddings import MAX_EMBEDDING_INPUTS, EmbeddingResponse
from ..embeddings import encode_base64_vector
from . import RequestProblem

__all__ = ["ENCODINGS", "EmbeddingFields", "embedding_body", "parse_embedding_fields"]

#: the values of ``encoding_format``
ENCODINGS = ("float", "base64")
#: the longest vector a request may ask for (the largest embedding models have 3072 or 4096 dimensions)
MAX_DIMENSIONS = 65536


@dataclass(frozen=True, slots=True)
class EmbeddingFields:
    texts: list[str]
    dimensions: int | None
    encoding_format: str


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise RequestProblem("input", "is required: a string or an array of strings")
    if not value:
        raise RequestProblem("input", "must not be an empty array")
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise RequestProblem("input", f"must have at most {MAX_EMBEDDING_INPUTS} items")
    for i, t in enumerate(value):
        if isinstance(t, str):
            continue
        if isinstance(t, (int, list)):
            raise RequestProblem(
                "input",
                "token-id arrays are not supported by this gateway: send the text",
                status=400,
                code="unsupported",
            )
        raise RequestProblem(f"input[{i}]", f"must be a string, got {type(t).__name__}")
    return value


def parse_embedding_fields(data: dict[str, Any]) -> EmbeddingFields:
    """``input``, ``dimensions`` and ``encoding_format`` of an embeddings request body."""
    texts = _texts(data.get("input"))
    dims = data.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= MAX_DIMENSIONS):
        raise RequestProblem("dimensions", f"must be an integer between 1 and {MAX_DIMENSIONS}")
    enc = data.get("encoding_format")
    if enc is None:
        enc = "float"
    if enc not in ENCODINGS:
        raise RequestProblem("encoding_format", "must be 'float' or 'base64'")
    return EmbeddingFields(texts, dims, enc)


def embedding_body(resp: EmbeddingResponse, encoding_format: str = "float") -> dict[str, Any]:
    """OpenAI's CreateEmbeddingResponse for ``resp``."""
    b64 = encoding_format == "base64"
    data = [
        {"object": "embedding", "index": i, "embedding": encode_base64_vector(v) if b64 else v}
        for i, v in enumerate(resp.vectors)
    ]
    n = resp.usage.input_tokens
    return {"object": "list", "data": data, "model": resp.model, "usage": {"prompt_tokens": n, "total_tokens": n}}
