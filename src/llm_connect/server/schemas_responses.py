"""Typed models of the Responses API bodies (``/v1/responses``), for the OpenAPI document and the tests.

As in :mod:`llm_connect.server.schemas` (whose scalar types these reuse), the models are not on the request path:
the handler validates with the fast ``Fields`` reader and the pure codec
(:mod:`llm_connect.wire.inbound.openai_responses`). Request models accept OpenAI's shapes; response models
describe what the gateway sends, key for key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from .schemas import _METADATA_LIMITS, CallExtensions, PositiveInt, Temperature, Text, TopP, _ignored

__all__ = [
    "ResponseContentPart",
    "ResponseCreateRequest",
    "ResponseCustomToolCall",
    "ResponseDeleted",
    "ResponseFunctionCall",
    "ResponseIdPath",
    "ResponseInputItem",
    "ResponseObject",
    "ResponseOutputMessage",
    "ResponseOutputText",
    "ResponseReasoning",
    "ResponseReasoningItem",
    "ResponseStreamEvent",
    "ResponseSummaryText",
    "ResponseTextConfig",
    "ResponseTextFormat",
    "ResponseTool",
    "ResponseUsage",
]

_REFUSED = "Refused with 400 unless absent, null or false"


class ResponseContentPart(BaseModel):
    """A content part of an input message: input_text, input_image (``image_url``: a URL or a data: URL),
    output_text or refusal (earlier assistant turns)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["input_text", "input_image", "output_text", "text", "refusal"]
    text: StrictStr | None = None
    image_url: StrictStr | None = None
    detail: Literal["auto", "low", "high", "original"] | None = None
    refusal: StrictStr | None = None


class ResponseInputItem(BaseModel):
    """One input item: a message (role user / assistant / system / developer), a function_call or
    custom_tool_call of an earlier turn, its output, or a reasoning item (kept, not sent upstream)."""

    model_config = ConfigDict(extra="allow")

    type: Literal[
        "message", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output", "reasoning"
    ] = "message"
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: StrictStr | list[ResponseContentPart] | None = None
    call_id: StrictStr | None = None
    name: StrictStr | None = None
    namespace: StrictStr | None = Field(None, description="The namespace tool a function_call belongs to")
    arguments: StrictStr | None = Field(None, description="function_call: JSON text")
    input: StrictStr | None = Field(None, description="custom_tool_call: the free-form input")
    output: StrictStr | list[ResponseContentPart] | None = Field(None, description="*_output: the result")


class ResponseTool(BaseModel):
    """function (``name``, ``parameters``, ``strict``), custom (free-form ``format``), namespace (``tools``: its
    functions); any other type is a built-in tool OpenAI runs: dropped (header ``x-llm-tools-dropped``) or refused
    per ``responses.builtin_tools``."""

    model_config = ConfigDict(extra="allow")

    type: StrictStr
    name: StrictStr | None = None
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = Field(None, description="JSON Schema of the arguments")
    strict: StrictBool | None = None
    tools: list[dict[str, Any]] | None = Field(None, description="namespace: its function and custom tools")
    format: dict[str, Any] | None = Field(None, description="custom: text or a grammar")


class ResponseTextFormat(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    name: StrictStr | None = Field(None, description="json_schema: required")
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="json_schema: required")
    strict: StrictBool | None = None
    description: StrictStr | None = None


class ResponseTextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: ResponseTextFormat | None = None


class ResponseReasoning(BaseModel):
    """Validated and echoed; not forwarded (the core contract has no reasoning setting yet)."""

    model_config = ConfigDict(extra="allow")

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class ResponseCreateRequest(CallExtensions):
    """OpenAI Responses ``POST /v1/responses``. Unknown fields are ignored. Extensions: ``tenant_id``, ``agent``,
    ``thread_id``, ``task_type``, ``timeout`` (as on chat completions)."""

    model_config = ConfigDict(extra="allow")

    input: Annotated[StrictStr | Annotated[list[ResponseInputItem], Field(min_length=1)], Field()]
    model: Text | None = Field(None, description="A router group, an alias, policy or provider:model")
    instructions: StrictStr | None = Field(None, description="A system message first; not carried to later responses")
    max_output_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: StrictBool | None = Field(None, description="true: text/event-stream of typed events")
    store: StrictBool | None = Field(None, description="Default true: kept for GET and previous_response_id")
    previous_response_id: Text | None = Field(None, description="Continue a stored response of this tenant")
    tools: list[ResponseTool] | None = None
    tool_choice: Any = Field(
        None, description='"auto", "none", "required", {type: function|custom, name} or {type: allowed_tools, ...}'
    )
    text: ResponseTextConfig | None = None
    reasoning: ResponseReasoning | None = None
    parallel_tool_calls: StrictBool | None = Field(None, description="Echoed; the provider's default applies")
    metadata: dict[str, Any] | None = Field(
        None, description="Kept in the ledger as openai_metadata; " + _METADATA_LIMITS
    )
    prompt_cache_key: Text | None = Field(None, description="Echoed; not forwarded")
    include: Any = _ignored("there is no encrypted reasoning or tool output to include")
    client_metadata: Any = _ignored("Codex's own metadata")
    safety_identifier: Any = _ignored("use tenant_id / agent for attribution")
    user: Any = _ignored("use tenant_id / agent for attribution")
    service_tier: Any = _ignored("not forwarded")
    truncation: Any = _ignored("the answer is never truncated to fit")
    top_logprobs: Any = _ignored("log probabilities are not returned")
    max_tool_calls: Any = _ignored("not enforced")
    stream_options: Any = _ignored("every stream ends with usage")
    background: Any = Field(None, description=f"{_REFUSED}: background responses are not supported")
    conversation: Any = Field(None, description=f"{_REFUSED}: chain with previous_response_id")
    prompt: Any = Field(None, description=f"{_REFUSED}: stored prompt templates are not supported")


# -- the Response object --------------------------------------------------------------------------------------
class ResponseOutputText(BaseModel):
    type: Literal["output_text"]
    text: str
    annotations: list[Any]
    logprobs: list[Any]


class ResponseOutputMessage(BaseModel):
    id: str
    type: Literal["message"]
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"]
    content: list[ResponseOutputText]


class ResponseFunctionCall(BaseModel):
    id: str
    type: Literal["function_call"]
    status: Literal["in_progress", "completed"]
    call_id: str
    name: str
    arguments: str = Field(description="JSON text")
    namespace: str | None = Field(None, description="The namespace tool the function belongs to (when it does)")


class ResponseCustomToolCall(BaseModel):
    id: str
    type: Literal["custom_tool_call"]
    status: Literal["in_progress", "completed"]
    call_id: str
    name: str
    input: str
    namespace: str | None = None


class ResponseSummaryText(BaseModel):
    type: Literal["summary_text"]
    text: str


class ResponseReasoningItem(BaseModel):
    """The upstream's reasoning text (DeepSeek ``reasoning_content``, Claude thinking, Gemini thoughts) as the one
    summary part; present only when the upstream returned some."""

    id: str = Field(description="rs_...")
    type: Literal["reasoning"]
    summary: list[ResponseSummaryText] = Field(description="One summary_text part (empty while it streams)")


OutputItem = Annotated[
    ResponseOutputMessage | ResponseFunctionCall | ResponseCustomToolCall | ResponseReasoningItem,
    Field(discriminator="type"),
]


class CachedTokens(BaseModel):
    cached_tokens: int


class ReasoningTokens(BaseModel):
    reasoning_tokens: int


class ResponseUsage(BaseModel):
    input_tokens: int = Field(description="All input, cached included")
    input_tokens_details: CachedTokens
    output_tokens: int = Field(description="All output, reasoning included")
    output_tokens_details: ReasoningTokens
    total_tokens: int
    cost_usd: str | None = Field(
        None, description="Extension, in response.completed only: the call's cost, a decimal string (null: unpriced)"
    )


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(BaseModel):
    code: str
    message: str


class ResponseObject(BaseModel):
    """The Response object (``object: "response"``), with the request's parameters echoed."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="resp_...")
    object: Literal["response"]
    created_at: int
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    background: bool
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    model: str
    output: list[OutputItem]
    usage: ResponseUsage | None
    instructions: str | None
    max_output_tokens: int | None
    metadata: dict[str, Any]
    parallel_tool_calls: bool
    previous_response_id: str | None
    reasoning: ResponseReasoning
    store: bool
    temperature: float | None
    text: dict[str, Any]
    tool_choice: Any
    tools: list[dict[str, Any]] = Field(description="The tools the model had (built-in tools dropped are not listed)")
    top_p: float | None
    truncation: Literal["disabled"]
    user: None
    prompt_cache_key: str | None = None


class ResponseStreamEvent(BaseModel):
    """The data of one SSE event (its ``event:`` name is its ``type``); ``sequence_number`` counts from 0."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.completed",
        "response.incomplete",
        "response.failed",
        "error",
    ]
    sequence_number: int
    response: ResponseObject | None = None
    output_index: int | None = None
    item: OutputItem | None = None
    item_id: str | None = None
    content_index: int | None = None
    summary_index: int | None = Field(None, description="reasoning_summary_*: the summary part (always 0)")
    part: Annotated[ResponseOutputText | ResponseSummaryText, Field(discriminator="type")] | None = None
    delta: str | None = None
    text: str | None = None
    arguments: str | None = None
    name: str | None = None
    input: str | None = None
    logprobs: list[Any] | None = None
    code: str | None = Field(None, description="error: the error code")
    message: str | None = Field(None, description="error: what went wrong")
    param: str | None = None


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response"]
    deleted: Literal[True]


class ResponseIdPath(BaseModel):
    """The path of ``GET`` / ``DELETE /v1/responses/{response_id}``."""

    response_id: str = Field(description="The id of a stored response (resp_...) of the caller's tenant")
