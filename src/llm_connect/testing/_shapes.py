"""The mock server's request and reply records, shared by every wire format's renderer (:mod:`._formats`,
:mod:`._bedrock`). Plain data, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BadRequest", "Parsed", "Reply", "ToolCall", "split_pieces"]

_WORD = re.compile(r"\s*\S+")


class BadRequest(Exception):
    """The request is invalid the way the real provider would reject it (rendered as its 400)."""


@dataclass(slots=True)
class Parsed:
    """What the mock needs to know about one request."""

    fmt: str
    model: str
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    #: (role, text) for every message, system prompt included
    messages: list[tuple[str, str]] = field(default_factory=list)
    #: Gemini streaming framing: SSE when ``?alt=sse``, else one JSON array
    sse: bool = True
    #: the ``service_tier`` an OpenAI request asks for
    service_tier: str | None = None

    @property
    def last_user(self) -> str:
        for role, text in reversed(self.messages):
            if role == "user" and text.strip():
                return text
        return ""


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text
    args: dict[str, Any]


@dataclass(slots=True)
class Reply:
    """A resolved answer, ready to render in any wire format."""

    model: str
    pieces: list[str]
    #: generic finish reason: stop | length | tool_calls | content_filter (others pass through raw)
    finish: str = "stop"
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    tool_calls: list[ToolCall] = field(default_factory=list)
    #: of cache_write_tokens: written with the 1-hour TTL (Anthropic ``cache_creation``)
    cache_write_1h_tokens: int = 0
    #: of input_tokens: audio (OpenAI ``prompt_tokens_details.audio_tokens``, Gemini's AUDIO modality)
    input_audio_tokens: int = 0
    #: the tier the reply says it was served at (None: the format's default, "default" / "standard")
    service_tier: str | None = None
    #: reasoning text: an Anthropic thinking block (with a signature), OpenAI-compatible ``reasoning_content``,
    #: Gemini thought parts (``thought: true``)
    thinking: str = ""
    #: top-level fields of an OpenAI-format body and stream chunk (Perplexity ``citations``, ``search_results``)
    extra_fields: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def split_pieces(text: str) -> list[str]:
    """Split text into word pieces whose concatenation is the text again (leading space kept on each)."""
    pieces = _WORD.findall(text)
    if not pieces:
        return [text] if text else []
    rest = len(text) - sum(map(len, pieces))
    if rest:
        pieces[-1] += text[len(text) - rest :]
    return pieces
