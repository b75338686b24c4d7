"""The mock server's embedding wire formats: request parsing and reply bodies (pure, no I/O).

* OpenAI ``POST {prefix}/embeddings`` ``{"model", "input", "dimensions"?, "encoding_format"?}``
  -> ``{"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage"}``
  (``encoding_format: "base64"``: little-endian float32 bytes, base64-encoded, as OpenAI sends them);
* Gemini ``POST /v1beta/models/{model}:batchEmbedContents`` ``{"requests": [{"model", "content",
  "outputDimensionality"?}]}`` -> ``{"embeddings": [{"values"}]}`` (no token count, as Gemini answers);
* Vertex AI ``POST …/publishers/google/models/{model}:predict`` ``{"instances": [{"content", "task_type"?}],
  "parameters": {"outputDimensionality"?}}`` -> ``{"predictions": [{"embeddings": {"statistics": {"truncated",
  "token_count"}, "values"}}], "metadata": {"billableCharacterCount"}}`` (``gemini-embedding-*``: one instance);
* Ollama ``POST /api/embed`` ``{"model", "input", "dimensions"?, "truncate"?}`` -> ``{"model", "embeddings",
  "total_duration", "load_duration", "prompt_eval_count"}``.

Vectors are deterministic: seeded from a hash of the text, unit length, :data:`DEFAULT_DIMENSIONS` long
unless the request asks for fewer. Input tokens: whitespace words of each text plus one per text (what the
count endpoints answer for the same texts).
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from dataclasses import dataclass, field
from typing import Any

from ._formats import BadRequest

__all__ = ["DEFAULT_DIMENSIONS", "EmbedRequest", "count_tokens", "parse_request", "render_body", "vector"]

#: the length of a mock vector when the request asks for no other
DEFAULT_DIMENSIONS = 64
#: the longest vector a request may ask for
MAX_DIMENSIONS = 4096


@dataclass(slots=True)
class EmbedRequest:
    fmt: str
    model: str
    texts: list[str] = field(default_factory=list)
    dimensions: int | None = None
    base64: bool = False


def _dims(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DIMENSIONS:
        raise BadRequest(f"'{name}' must be an integer between 1 and {MAX_DIMENSIONS}")
    return value


def _texts(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("'input' must be a string or a non-empty array of strings")
    return texts


def parse_request(fmt: str, body: Any, *, model: str = "") -> EmbedRequest:
    """Validate an embedding request the way the provider would (its 400 otherwise)."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    if fmt == "gemini":
        reqs = body.get("requests")
        if not isinstance(reqs, list) or not reqs:
            raise BadRequest("* BatchEmbedContentsRequest.requests: must be a non-empty array")
        if len(reqs) > 100:
            raise BadRequest("* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch")
        texts, dims = [], set()
        for i, r in enumerate(reqs):
            parts = (r.get("content") or {}).get("parts") if isinstance(r, dict) else None
            if not isinstance(parts, list) or not parts:
                raise BadRequest(f"* BatchEmbedContentsRequest.requests[{i}].content: must have parts")
            if r.get("model") not in (None, f"models/{model}"):
                raise BadRequest(f"Model {r.get('model')!r} in requests[{i}] differs from the batch's models/{model}")
            texts.append(" ".join(p.get("text", "") for p in parts if isinstance(p, dict)))
            dims.add(_dims(r.get("outputDimensionality"), "outputDimensionality"))
        return EmbedRequest("gemini", model, texts, dims.pop() if len(dims) == 1 else None)
    if fmt == "vertex":
        return _parse_vertex(body, model)
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise BadRequest("you must provide a model parameter")
    texts = _texts(body.get("input"))
    if fmt == "openai":
        if any(t == "" for t in texts):
            raise BadRequest("'$.input' is invalid: an input cannot be an empty string")
        enc = body.get("encoding_format", "float")
        if enc not in ("float", "base64"):
            raise BadRequest("'encoding_format' must be 'float' or 'base64'")
        return EmbedRequest("openai", name, texts, _dims(body.get("dimensions"), "dimensions"), enc == "base64")
    return EmbedRequest("ollama", name, texts, _dims(body.get("dimensions"), "dimensions"))


def _parse_vertex(body: dict[str, Any], model: str) -> EmbedRequest:
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise BadRequest("Invalid JSON payload: 'instances' must be a non-empty list.")
    limit = 1 if model.startswith("gemini-embedding") else 250
    if len(instances) > limit:
        raise BadRequest(f"Unable to submit request because {model} takes at most {limit} instances per request.")
    texts = []
    for i, inst in enumerate(instances):
        content = inst.get("content") if isinstance(inst, dict) else None
        if not isinstance(content, str) or not content:
            raise BadRequest(f"instances[{i}].content must be a non-empty string")
        texts.append(content)
    params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    return EmbedRequest("vertex", model, texts, _dims(params.get("outputDimensionality"), "outputDimensionality"))


def count_tokens(texts: list[str]) -> int:
    return sum(len(t.split()) + 1 for t in texts)


def vector(text: str, dimensions: int) -> list[float]:
    """A unit vector seeded from the text's hash: the same text always embeds the same."""
    rng = random.Random(hashlib.sha256(text.encode("utf-8")).digest())
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # float32 values: what a real provider's vectors are, so that base64 round-trips exactly
    return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in values]


def _b64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def render_body(req: EmbedRequest, input_tokens: int, model: str | None = None) -> dict[str, Any]:
    dims = req.dimensions or DEFAULT_DIMENSIONS
    vectors = [vector(t, dims) for t in req.texts]
    name = model or req.model
    if req.fmt == "openai":
        data = [
            {"object": "embedding", "index": i, "embedding": _b64(v) if req.base64 else v}
            for i, v in enumerate(vectors)
        ]
        usage = {"prompt_tokens": input_tokens, "total_tokens": input_tokens}
        return {"object": "list", "data": data, "model": name, "usage": usage}
    if req.fmt == "gemini":
        return {"embeddings": [{"values": v} for v in vectors]}
    if req.fmt == "vertex":  # per-text counts; a scripted total lands on the first text
        counts = [count_tokens([t]) for t in req.texts]
        counts[0] += input_tokens - sum(counts)
        predictions = [
            {"embeddings": {"statistics": {"truncated": False, "token_count": n}, "values": v}}
            for n, v in zip(counts, vectors, strict=True)
        ]
        return {"predictions": predictions, "metadata": {"billableCharacterCount": sum(map(len, req.texts))}}
    return {
        "model": name,
        "embeddings": vectors,
        "total_duration": 1_000_000,
        "load_duration": 100_000,
        "prompt_eval_count": input_tokens,
    }
