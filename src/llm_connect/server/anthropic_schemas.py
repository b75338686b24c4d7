"""Typed models of the Anthropic Messages routes (``POST /v1/messages``, ``/v1/messages/count_tokens``): the
source of their part of the OpenAPI document, beside :mod:`llm_connect.server.schemas` (whose constrained
types they share). Used at documentation time and in tests, never on the request path: the hot path validates
with :func:`llm_connect.wire.inbound.anthropic_messages.parse_request`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StrictBool, StrictStr

from .schemas import _INT64_MAX, IGNORED, CallExtensions, PositiveInt, Text, _no_coercion

__all__ = [
    "AnthropicCountTokensRequest",
    "AnthropicError",
    "AnthropicErrorDetail",
    "AnthropicMessage",
    "AnthropicMessageResponse",
    "AnthropicMessagesRequest",
    "AnthropicMetadata",
    "AnthropicStreamEvent",
    "AnthropicTokenCount",
    "AnthropicUsage",
]

_PASSED = "Routed to an Anthropic deployment: passed through as is; translated: dropped"
Unit = Annotated[float, Strict(), Field(ge=0, le=1)]


class AnthropicMessage(BaseModel):
    """One turn. Content blocks keep Anthropic's shapes (text, image, document, tool_use, tool_result,
    thinking, ...); a ``system`` turn needs the ``mid-conversation-system`` beta on an Anthropic upstream."""

    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant", "system"]
    content: StrictStr | list[Annotated[dict[str, Any], Field(description="A content block with a 'type'")]]


class AnthropicMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    user_id: Text | None = Field(None, description="Kept in the call's metadata (the ledger's metadata column)")


class AnthropicMessagesRequest(CallExtensions):
    """A Messages request (Anthropic's shape; the SDKs' ``messages.create``). Unknown fields are passed
    through to an Anthropic upstream and dropped when the call is translated (docs/anthropic.md)."""

    model_config = ConfigDict(extra="allow")

    model: Annotated[StrictStr, Field(min_length=1)] = Field(description="A router group, alias or provider:model")
    max_tokens: PositiveInt
    messages: Annotated[list[AnthropicMessage], Field(min_length=1)]
    system: StrictStr | list[dict[str, Any]] | None = Field(None, description="A string or text blocks")
    metadata: AnthropicMetadata | None = None
    stop_sequences: list[StrictStr] | None = None
    stream: StrictBool | None = None
    temperature: Unit | None = None
    top_p: Unit | None = None
    top_k: Annotated[int, Field(ge=0, le=_INT64_MAX), BeforeValidator(_no_coercion)] | None = Field(
        None, description=_PASSED
    )
    tools: list[dict[str, Any]] | None = Field(None, description="Custom tools (input_schema) and server tools")
    tool_choice: dict[str, Any] | None = Field(None, description="auto, any, tool (with name) or none")
    thinking: dict[str, Any] | None = Field(
        None, description="enabled (budget_tokens; translated: reasoning_effort), disabled or adaptive"
    )


class AnthropicCountTokensRequest(AnthropicMessagesRequest):
    """A count_tokens request: the prompt fields of a Messages request, without ``max_tokens``."""

    max_tokens: PositiveInt | None = Field(None, description=IGNORED)  # type: ignore[assignment]


class AnthropicUsage(BaseModel):
    """``input_tokens`` excludes cache reads and writes (Anthropic's convention)."""

    model_config = ConfigDict(extra="allow")

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class AnthropicMessageResponse(BaseModel):
    """A ``message`` object (an Anthropic upstream's own, verbatim, on passthrough)."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]] = Field(description="text, tool_use, thinking, ... blocks")
    stop_reason: str | None
    stop_sequence: str | None
    usage: AnthropicUsage


class AnthropicStreamEvent(BaseModel):
    """One SSE event (``event: <type>``): message_start, content_block_start / delta / stop, message_delta,
    message_stop, ping, error."""

    model_config = ConfigDict(extra="allow")

    type: str


class AnthropicTokenCount(BaseModel):
    input_tokens: int


class AnthropicErrorDetail(BaseModel):
    type: str = Field(
        description="invalid_request_error, authentication_error, permission_error, not_found_error, "
        "request_too_large, rate_limit_error, api_error, timeout_error, overloaded_error"
    )
    message: str


class AnthropicError(BaseModel):
    """Every error of the Anthropic routes (Anthropic's shape)."""

    type: Literal["error"]
    error: AnthropicErrorDetail
    request_id: str | None = None
