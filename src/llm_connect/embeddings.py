"""Embeddings in the core contract: :class:`EmbeddingResponse` and the checks every adapter applies to input.

``await adapter.aembed(texts, config, dimensions=...)`` (or the sync ``adapter.embed``) turns a string or a
list of strings into one vector per string. Accounting is the chat pipeline's with no output: the input is
reserved on ``RunConfig.budget_tracker`` as an upper bound (:func:`embedding_bound`), the provider's count
settles it, priced at the model's input price, and one :class:`~llm_connect.usage.UsageEvent` is published
per charged call (see docs/embeddings.md).

Token-id arrays (which the OpenAI API also accepts as ``input``) are refused: they are ids of one tokenizer
and mean nothing to the other providers a router may send the call to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .errors import LLMInvalidRequestError
from .types import Usage

__all__ = [
    "EMBED_FRAME_PER_TEXT",
    "MAX_EMBEDDING_INPUTS",
    "EmbeddingInput",
    "EmbeddingResponse",
    "check_dimensions",
    "embedding_bound",
    "normalize_texts",
]

#: what one call may embed at most (OpenAI's limit on ``input`` arrays; Gemini's batch is capped at 100 and
#: is split by the codec, see llm_connect.wire.embeddings)
MAX_EMBEDDING_INPUTS = 2048
#: tokens a tokenizer may add around each text (BOS/EOS, [CLS]/[SEP]); the bound counts them
EMBED_FRAME_PER_TEXT = 4

EmbeddingInput = str | Sequence[str]


@dataclass(slots=True)
class EmbeddingResponse:
    """The result of one embedding call: ``vectors[i]`` embeds ``texts[i]``.

    ``usage.input_tokens`` is what the provider billed (``output_tokens`` is always 0); ``cost_usd`` is that
    input priced (``None`` when the model has no known price); ``estimated`` is True when the provider
    reported no count and the call was billed an upper-bound estimate.
    """

    vectors: list[list[float]]
    model: str
    provider: str
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal | None = None
    latency_ms: float = 0.0
    request_id: str | None = None
    estimated: bool = False
    #: the provider's raw response body (parsed JSON), for anything not normalised
    raw: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def dimensions(self) -> int:
        """The length of the vectors (0 when there are none)."""
        return len(self.vectors[0]) if self.vectors else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (Decimal cost as a string; the raw body left out)."""
        return {
            "vectors": self.vectors,
            "model": self.model,
            "provider": self.provider,
            "usage": self.usage.to_dict(),
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
            "latency_ms": round(self.latency_ms, 3),
            "request_id": self.request_id,
            "estimated": self.estimated,
        }


def normalize_texts(texts: Any) -> list[str]:
    """A string or a list of strings as a non-empty list of strings; anything else is an
    LLMInvalidRequestError naming the offending index (token-id arrays included: see the module docstring)."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence):
        raise LLMInvalidRequestError(f"input must be a string or a list of strings, not {type(texts).__name__}")
    if not texts:
        raise LLMInvalidRequestError("input must not be an empty list")
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise LLMInvalidRequestError(f"input has {len(texts)} items, more than {MAX_EMBEDDING_INPUTS} (the limit)")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            what = "token ids" if isinstance(t, (int, list)) else type(t).__name__
            raise LLMInvalidRequestError(
                f"input[{i}] must be a string, got {what}"
                + (" (token-id arrays are not supported: send the text)" if what == "token ids" else "")
            )
    return out


def check_dimensions(dimensions: Any) -> int | None:
    """``dimensions`` as a positive int (None: the model's own size); anything else: LLMInvalidRequestError."""
    if dimensions is None:
        return None
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise LLMInvalidRequestError(f"dimensions must be a positive integer, got {dimensions!r}")
    return dimensions


def embedding_bound(texts: Sequence[str]) -> int:
    """Input tokens ``texts`` cost at most with any BPE tokenizer: one per UTF-8 byte, plus
    :data:`EMBED_FRAME_PER_TEXT` per text (the same rule as a chat prompt's bound)."""
    return sum(len(t.encode("utf-8")) + EMBED_FRAME_PER_TEXT for t in texts)
