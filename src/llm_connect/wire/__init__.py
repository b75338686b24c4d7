"""Wire codecs: pure functions, no I/O, one module per wire format.

Every codec here (``openai_chat``, ``anthropic_messages``, ``gemini``, ``ollama``, ``bedrock_converse``) exposes
the same shape (``eventstream`` is the AWS binary framing Bedrock streams in, ``embeddings`` the embedding codecs):

* ``FRAMING`` — ``"sse"``, ``"ndjson"`` or ``"eventstream"``: how the transport splits a streamed body into events.
* ``build_request(model, messages, config, *, stream, max_tokens) -> WireRequest``
* ``parse_response(body: dict) -> ParsedResponse``
* ``parse_usage(raw: dict) -> Usage`` — normalised (see llm_connect.types.Usage)
* ``StreamDecoder()`` with ``feed(event: str | None, data: dict) -> list[StreamChunk]`` and
  ``finish() -> StreamChunk`` (the last chunk: usage + finish_reason; raises
  LLMProviderUnavailableError if the stream was cut before its terminal event).
  ``decoder.usage`` is the latest usage seen so far (or None), ``decoder.text`` the text produced.
* ``classify_error(status, body, headers) -> LLMError`` — from status code and the provider's error
  type; message-text matching only as a documented last resort.

The adapter (llm_connect.providers.http) fills in provider, model and request_id on errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..types import Usage

__all__ = ["ParsedResponse", "WireRequest"]


@dataclass(slots=True)
class WireRequest:
    """What to send: ``path`` is appended to the provider's api_base."""

    path: str
    body: dict[str, Any]
    query: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ParsedResponse:
    text: str
    model: str | None
    finish_reason: str | None
    usage: Usage
    tool_calls: list[dict[str, Any]] | None = None
    request_id: str | None = None
    #: the service tier the provider served the call at, if it says (priced at that tier's rate)
    service_tier: str | None = None
    #: reasoning text returned beside the answer (DeepSeek, vLLM ``reasoning_content``; OpenRouter ``reasoning``)
    reasoning: str = ""
