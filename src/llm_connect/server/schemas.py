"""Typed models of every body the gateway reads and sends — the source of its OpenAPI document.

The models are pydantic v2 and are used at documentation time (``/openapi.json``) and in tests, never on
the request path: the hot path keeps the hand-written :class:`~llm_connect.server.validate.Fields`
validator, which tests check against these models (same fields, same accept / refuse decisions). Importing
this module imports pydantic; ``import llm_connect`` and the gateway's request path do not.

Request models have the constraints the fast validator enforces (422 ``invalid_field`` otherwise):
integers are JSON integers (``5.0`` counts, ``"5"`` and ``true`` do not) of at most 64 bits, numbers are
JSON numbers, booleans are ``true`` / ``false`` only, strings are at most 256 characters and identifiers
(``tenant_id``, ``thread_id``, budget ids) 1 to 128 printable characters. The models are stricter than the
fast validator in a few places it leaves to the provider, listed here and pinned by a test: in messages,
the types of ``name`` and ``tool_call_id`` and of the items of ``tool_calls``, and ``text`` on a content
part whose ``type`` is not ``"text"``; in tools, the ``type`` and, for a tool that is not a function,
``function``. Everything else is refused by both or by neither.

Response models describe what the gateway sends, key for key (tests validate real responses with
``strict=True`` and compare the round trip).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictStr,
    model_validator,
)

from ..types import METADATA_MAX_BYTES, METADATA_MAX_DEPTH, METADATA_MAX_KEYS
from ..usage._queries import GROUP_BYS

_METADATA_LIMITS = (
    f"at most {METADATA_MAX_DEPTH} levels deep, {METADATA_MAX_KEYS} keys, {METADATA_MAX_BYTES // 1024} KiB as JSON"
)

__all__ = [
    "IGNORED",
    "AssistantMessage",
    "BudgetSpec",
    "BudgetState",
    "CallHeaders",
    "ChatCompletion",
    "ChatCompletionChoice",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChunkChoice",
    "ChunkDelta",
    "CompleteRequest",
    "CompleteResponse",
    "CompleteUnavailable",
    "CompleteUsage",
    "CompletionTokensDetails",
    "CompletionUsage",
    "ContentPart",
    "CountTokensRequest",
    "CountTokensResponse",
    "CreateEmbeddingResponse",
    "Embedding",
    "EmbeddingRequest",
    "EmbeddingUsage",
    "ErrorDetail",
    "ErrorResponse",
    "ExecuteFailure",
    "ExecuteRequest",
    "ExecuteResponse",
    "FunctionCall",
    "FunctionDefinition",
    "Health",
    "Message",
    "ModelEntry",
    "ModelList",
    "PromptTokensDetails",
    "Readiness",
    "ResponseFormat",
    "StreamOptions",
    "TokenUsage",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallDeltaFunction",
    "UsageQuery",
    "UsageReport",
    "UsageRow",
]

#: the description prefix of a request field that is accepted and ignored (a test checks every field
#: of a request model is either read by the fast validator or documented with it)
IGNORED = "Accepted and ignored"

_INT64_MAX = 2**63 - 1
_MAX_ID = 128
_MAX_STR = 256
_MAX_TOKENS_CAP = 10**15
_MAX_USD_CAP = Decimal(10**9)


# -- scalar types with the fast validator's rules ------------------------------------------------------------
def _no_coercion(v: Any) -> Any:
    """Refuses what pydantic's lax int would coerce but JSON keeps apart (booleans, numeric strings); an
    integral float such as ``5.0`` is a JSON integer and stays accepted."""
    if isinstance(v, (bool, str, bytes)):
        raise ValueError(f"must be an integer, got {type(v).__name__}")
    return v


def _printable(v: str) -> str:
    if not v.isprintable():
        raise ValueError("must be printable")
    return v


# (constraints come before the validator: after it pydantic would not render them as JSON Schema keywords)
Int = Annotated[int, Field(ge=-_INT64_MAX, le=_INT64_MAX), BeforeValidator(_no_coercion)]
PositiveInt = Annotated[int, Field(ge=1, le=_INT64_MAX), BeforeValidator(_no_coercion)]
OnlyOne = Annotated[int, Field(ge=1, le=1), BeforeValidator(_no_coercion)]
Temperature = Annotated[float, Strict(), Field(ge=0, le=2)]
TopP = Annotated[float, Strict(), Field(ge=0, le=1)]
Seconds = Annotated[float, Strict(), Field(gt=0)]
Text = Annotated[StrictStr, Field(max_length=_MAX_STR)]
HeaderText = Annotated[StrictStr, Field(min_length=1, max_length=_MAX_STR), AfterValidator(_printable)]
Ident = Annotated[StrictStr, Field(min_length=1, max_length=_MAX_ID), AfterValidator(_printable)]
Stop = StrictStr | Annotated[list[StrictStr], Field(max_length=16)]


def _token_string(v: str) -> str:
    if v and not 1 <= int(v.strip()) <= _MAX_TOKENS_CAP:
        raise ValueError(f"must be 1 to {_MAX_TOKENS_CAP} tokens")
    return v


def _usd_amount(v: float | str) -> float | str:
    if v == "":
        return v
    try:
        d = Decimal(str(v).strip())
    except InvalidOperation:
        raise ValueError("must be a decimal amount") from None
    if not d.is_finite() or d <= 0 or d > _MAX_USD_CAP:
        raise ValueError(f"must be a positive USD amount up to {_MAX_USD_CAP}")
    return v


TokenCap = Annotated[
    Annotated[int, Strict(), Field(ge=1, le=_MAX_TOKENS_CAP)]
    | Annotated[StrictStr, Field(pattern=r"^(\s*[0-9]{1,18}\s*)?$"), AfterValidator(_token_string)],
    Field(description=f"A number of tokens, 1 to {_MAX_TOKENS_CAP}, or the same as a digit string"),
]
UsdCap = Annotated[
    StrictStr | Annotated[float, Strict(), Field(gt=0, le=float(_MAX_USD_CAP))],
    AfterValidator(_usd_amount),
    Field(description=f'A positive USD amount up to {_MAX_USD_CAP}, preferably a decimal string ("0.50")'),
]


def _ignored(what: str) -> Any:
    return Field(None, description=f"{IGNORED}: {what}")


# -- messages and tools ---------------------------------------------------------------------------------------
class ContentPart(BaseModel):
    """One part of a message's content (OpenAI shape); parts other than text pass through to the provider."""

    model_config = ConfigDict(extra="allow")

    type: StrictStr = Field(description='"text", "image_url", "input_audio", "file", ...')
    text: StrictStr | None = Field(None, description='The text; required when type is "text"')

    @model_validator(mode="after")
    def _text_needs_text(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a text part needs 'text' (a string)")
        return self


class Message(BaseModel):
    """A chat message (OpenAI shape)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[ContentPart] | None = Field(
        None, description="Text or content parts; null only for assistant (tool calls) and tool messages"
    )
    name: StrictStr | None = None
    tool_calls: list[dict[str, Any]] | None = Field(None, description="An assistant turn's tool calls (OpenAI shape)")
    tool_call_id: StrictStr | None = Field(None, description="The call a tool message answers")

    @model_validator(mode="after")
    def _content_required(self) -> Message:
        if self.content is None and self.role in ("user", "system", "developer"):
            raise ValueError(f"content is required for role {self.role!r}")
        return self


Messages = Annotated[list[Message], Field(min_length=1)]


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: StrictStr
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = Field(None, description="JSON Schema of the arguments")


class Tool(BaseModel):
    """A tool definition (OpenAI shape), passed through to the provider."""

    model_config = ConfigDict(extra="allow")

    type: StrictStr | None = "function"
    function: FunctionDefinition | None = Field(None, description='Required when type is "function" (the default)')

    @model_validator(mode="after")
    def _function_needs_definition(self) -> Tool:
        if self.type == "function" and self.function is None:
            raise ValueError("a function tool needs 'function' with a 'name'")
        return self


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: StrictStr = Field(description="text, json_object or json_schema")
    json_schema: dict[str, Any] | None = Field(None, description='With type "json_schema": {name, schema, strict}')


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: StrictBool | None = Field(
        None, description="Send a last chunk with choices [] and the usage of the call (earlier chunks: usage null)"
    )


class CallExtensions(BaseModel):
    """The body fields every call endpoint accepts besides its protocol's own (they win over the X-LLM-*
    headers)."""

    tenant_id: Ident | None = Field(None, description="Extension: the tenant (the admin key or auth off)")
    agent: Text | None = Field(None, description="Extension: the calling agent, for accounting")
    thread_id: Ident | None = Field(None, description="Extension: per-thread budget (budgets.max_tokens_per_thread)")
    task_type: Text | None = Field(None, description="Extension: picks a routing policy rule")
    timeout: Seconds | None = Field(None, description="Extension: seconds")


# -- POST /v1/chat/completions --------------------------------------------------------------------------------
class ChatCompletionRequest(CallExtensions):
    """OpenAI Chat Completions. Unknown fields are ignored; ``n`` must be 1. Extensions: ``tenant_id``,
    ``agent``, ``thread_id``, ``task_type``, ``timeout`` (body fields win over the X-LLM-* headers)."""

    model_config = ConfigDict(extra="allow")

    messages: Messages
    model: Text | None = Field(None, description="A router group, an alias, policy or provider:model")
    max_completion_tokens: PositiveInt | None = Field(None, description="Wins over max_tokens")
    max_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: OnlyOne | None = Field(None, description="Only 1 is supported")
    stream: StrictBool | None = Field(None, description="true: text/event-stream of chat.completion.chunk")
    stream_options: StreamOptions | None = None
    stop: Stop | None = Field(None, description="A string or at most 16 strings")
    seed: Int | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Any = Field(None, description='"none", "auto", "required" or {"type": "function", ...}; passed on')
    metadata: dict[str, Any] | None = Field(
        None, description="Kept in the ledger as openai_metadata; " + _METADATA_LIMITS
    )
    frequency_penalty: Any = _ignored("not forwarded")
    presence_penalty: Any = _ignored("not forwarded")
    logit_bias: Any = _ignored("not forwarded")
    logprobs: Any = _ignored("log probabilities are not returned")
    top_logprobs: Any = _ignored("log probabilities are not returned")
    user: Any = _ignored("use tenant_id / agent for attribution")
    parallel_tool_calls: Any = _ignored("the provider's default applies")
    service_tier: Any = _ignored("not forwarded")
    store: Any = _ignored("nothing is stored upstream")
    modalities: Any = _ignored("text only")
    audio: Any = _ignored("text only")
    prediction: Any = _ignored("not forwarded")
    reasoning_effort: Any = _ignored("not forwarded")
    web_search_options: Any = _ignored("not forwarded")
    functions: Any = _ignored("deprecated by OpenAI; use tools")
    function_call: Any = _ignored("deprecated by OpenAI; use tool_choice")


# -- POST /v1/embeddings -------------------------------------------------------------------------------------
class EmbeddingRequest(CallExtensions):
    """OpenAI Create embeddings. ``input`` is a string or at most 2048 strings (token-id arrays are refused with
    a 400). Extensions as for chat: ``tenant_id``, ``agent``, ``thread_id``, ``task_type``, ``timeout``."""

    model_config = ConfigDict(extra="allow")

    input: StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=2048)] = Field(
        description="The text(s) to embed: one vector per string, in order"
    )
    model: Text | None = Field(None, description="A router group, an alias, policy or provider:model")
    dimensions: Annotated[int, Field(ge=1, le=65536), BeforeValidator(_no_coercion)] | None = Field(
        None, description="Shorter vectors, where the model can make them (passed upstream)"
    )
    encoding_format: Literal["float", "base64"] | None = Field(
        None, description="float (default): lists of numbers; base64: little-endian float32 bytes, base64-encoded"
    )
    user: Any = _ignored("use tenant_id / agent for attribution")


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="The vector, or its base64 (encoding_format base64)")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int = Field(description="The input tokens billed")
    total_tokens: int = Field(description="The same: embeddings have no output tokens")


class CreateEmbeddingResponse(BaseModel):
    """OpenAI's embedding list (the official SDKs parse it unchanged)."""

    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="JSON text")


class ToolCall(BaseModel):
    """A tool call (OpenAI shape). Provider-specific keys may follow, e.g. Gemini's ``extra_content``
    (its thought signature, to send back with the assistant turn)."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: Literal["function"]
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None = Field(description="null when the turn is only tool calls")
    refusal: None
    tool_calls: list[ToolCall] | None = Field(None, description="Present only when the model called tools")
    reasoning_content: str | None = Field(
        None,
        description="Present only when the upstream returned reasoning text (DeepSeek's field; from any upstream "
        "that reasons: Claude thinking, Gemini thoughts, ...)",
    )


class ChatCompletionChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None
    finish_reason: str = Field(description="stop, length, tool_calls, content_filter, or the provider's own value")


class PromptTokensDetails(BaseModel):
    cached_tokens: int


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


class ChunkUsage(CompletionUsage):
    """The usage of the final stream chunk, with the call's cost (an llm-connect extension field)."""

    cost_usd: str | None = Field(
        None, description="Extension: the call's cost in USD as a decimal string; null when the model is unpriced"
    )


class ChatCompletion(BaseModel):
    """A chat completion (OpenAI shape; the official SDKs parse it unchanged)."""

    id: str = Field(description="chatcmpl-<request id>")
    object: Literal["chat.completion"]
    created: int = Field(description="Unix seconds")
    model: str = Field(description="The model that answered (the provider's name for it)")
    choices: list[ChatCompletionChoice] = Field(description="Exactly one")
    usage: CompletionUsage
    system_fingerprint: None
    citations: list[str] | None = Field(
        None, description="Present only when the upstream returned them: Perplexity's cited URLs"
    )
    search_results: list[dict[str, Any]] | None = Field(
        None, description="Present only when the upstream returned them: Perplexity's search results (title, url, date)"
    )


class ToolCallDeltaFunction(BaseModel):
    name: str | None = None
    arguments: str | None = Field(None, description="The next piece of the JSON arguments")


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ToolCallDeltaFunction | None = None


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = Field(None, description="Only in the first chunk")
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    reasoning_content: str | None = Field(None, description="A piece of the upstream's reasoning text, if it has one")


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    logprobs: None
    finish_reason: str | None = Field(description="Set on the last content chunk")


class ChatCompletionChunk(BaseModel):
    """One ``data:`` event of a stream. The first has ``delta.role``; content and tool-call deltas follow;
    then a chunk with ``finish_reason``; with ``stream_options.include_usage`` a last chunk with
    ``choices: []`` and ``usage`` (every earlier chunk then has ``usage: null``; without it the key is
    absent); then ``data: [DONE]``. A failure after the first chunk is sent as one ``data:`` event with
    the :class:`ErrorResponse` shape, and the stream ends."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[ChunkChoice] = Field(description="One choice; empty in the final usage chunk")
    usage: ChunkUsage | None = Field(
        None, description="Only with stream_options.include_usage (see above); carries usage.cost_usd"
    )
    citations: list[str] | None = Field(
        None, description="On the finish and usage chunks, when the upstream returned them (Perplexity)"
    )
    search_results: list[dict[str, Any]] | None = Field(
        None, description="On the finish and usage chunks, when the upstream returned them (Perplexity)"
    )


# -- GET /v1/models -------------------------------------------------------------------------------------------
class ModelCapabilities(BaseModel):
    """What the deployments behind a name can do (true when any of them can)."""

    chat: bool
    streaming: bool
    tools: bool = Field(description="Function calling")
    exact_token_count: bool = Field(description="A budget counts a prompt exactly when the bound no longer fits")
    embeddings: bool = Field(description="POST /v1/embeddings can route to it")


class ModelDeployment(BaseModel):
    """One deployment behind a name (admin key only; never a key)."""

    model_config = ConfigDict(extra="allow")
    provider: str
    model: str | None
    name: str | None = None
    weight: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    context_window: int | None = None
    api_base: str | None = None


class ModelEntry(BaseModel):
    id: str = Field(description="A name to put in a request's model")
    object: Literal["model"]
    created: int
    owned_by: Literal["llm-connect"]
    kind: Literal["group", "alias", "policy", "spec"] = Field(
        description="Extension: what the name is (spec: a provider:model the key may name directly)"
    )
    default: Literal[True] | None = Field(None, description="Extension: present on the default model")
    capabilities: ModelCapabilities | None = Field(None, description="Extension")
    context_window: int | None = Field(None, description="Extension: the smallest of its deployments' windows")
    deployments: list[ModelDeployment] | None = Field(None, description="Extension, admin key only")


class ModelList(BaseModel):
    """The groups and aliases the key may use (OpenAI shape)."""

    object: Literal["list"]
    data: list[ModelEntry]


class ModelPath(BaseModel):
    """The path of ``GET /v1/models/{model}``."""

    model: str = Field(description="A group, alias or provider:model (may contain '/')")


# -- errors ---------------------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    message: str
    type: str = Field(
        description="invalid_request_error, permission_error, insufficient_quota (a budget), rate_limit_error, "
        "timeout_error, api_error; the bridge also says configuration_error"
    )
    code: str | None = Field(description="Machine-readable: invalid_field, budget_exceeded, rate_limit_exceeded, ...")
    param: str | None = Field(description="The offending field or header, when there is one")


class ErrorResponse(BaseModel):
    """Every error the gateway answers (OpenAI shape); the status code is in docs/gateway.md's table."""

    error: ErrorDetail


# -- POST /execute (and the stdin bridge) ---------------------------------------------------------------------
class BudgetSpec(BaseModel):
    """A delegated budget; the caps apply when this request creates it (later caps are ignored)."""

    model_config = ConfigDict(extra="forbid")

    id: Ident = Field(description="Shared by every call of the delegation chain (per tenant)")
    total_tokens: TokenCap | None = None
    total_usd: UsdCap | None = None


class ExecuteRequest(BaseModel):
    """The bridge's request (stdin of ``llm-connect bridge``, body of ``POST /execute``). Unknown fields are
    refused. ``prompt`` (or its synonym ``messages``) is required."""

    model_config = ConfigDict(extra="forbid")

    prompt: Annotated[StrictStr, Field(min_length=1)] | Messages | None = Field(
        None, description="A string (one user turn) or a list of messages"
    )
    messages: Annotated[StrictStr, Field(min_length=1)] | Messages | None = Field(
        None, description="A synonym of prompt (give one, not both)"
    )
    model: Text | None = Field(None, description="A router group, an alias, policy or provider:model")
    system_prompt: Annotated[StrictStr, Field(max_length=1_000_000)] | None = None
    max_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    timeout: Seconds | None = Field(None, description="Seconds")
    stop: Stop | None = Field(None, description="A string or at most 16 strings")
    seed: Int | None = None
    response_format: ResponseFormat | None = None
    json_mode: StrictBool | None = Field(None, description="Ask for a JSON object answer")
    tools: list[Tool] | None = None
    tool_choice: Any = Field(None, description="Passed on to the provider")
    tenant_id: Ident | None = None
    agent: Text | None = None
    thread_id: Ident | None = Field(None, description="Per-thread budget (budgets.max_tokens_per_thread)")
    task_type: Text | None = Field(None, description="Picks a routing policy rule")
    metadata: dict[str, Any] | None = Field(None, description="Kept with the call's usage event; " + _METADATA_LIMITS)
    budget: BudgetSpec | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> ExecuteRequest:
        if self.prompt is not None and self.messages is not None:
            raise ValueError("give 'prompt' or 'messages', not both")
        if self.prompt is None and self.messages is None:
            raise ValueError("'prompt' is required (a string or a list of messages)")
        return self


class TokenUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    total_tokens: int


class BudgetState(BaseModel):
    """What is left of the request's innermost budget (present when the request named one)."""

    id: str | None = Field(description="The delegated budget's id (null for a thread budget)")
    thread_id: str | None
    remaining_tokens: int | None
    remaining_usd: str | None = Field(description="Decimal string; null without a USD cap")


class ExecuteResponse(BaseModel):
    ok: Literal[True]
    text: str
    model: str
    provider: str
    finish_reason: str | None
    usage: TokenUsage
    cost_usd: str | None = Field(description="Decimal string; null when the model has no known price")
    latency_ms: float
    request_id: str
    tool_calls: list[ToolCall] | None
    budget: BudgetState | None = Field(None, description="Only when the request named a budget or a thread")


class ExecuteFailure(BaseModel):
    """Any failure of ``/execute`` (HTTP status from the error table) or of the bridge (exit code 1 to 4)."""

    ok: Literal[False]
    error: ErrorDetail


# -- POST /complete -------------------------------------------------------------------------------------------
class CompleteRequest(BaseModel):
    """The LLM pool request of seed 002 (plus the call extensions). Unknown fields are ignored."""

    model_config = ConfigDict(extra="allow")

    messages: Messages
    model: Text | None = Field(None, description="A router group (or any model name)")
    tenant_id: Ident | None = None
    max_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    timeout: Seconds | None = Field(None, description="Seconds")
    agent: Text | None = None
    thread_id: Ident | None = None
    task_type: Text | None = None
    metadata: dict[str, Any] | None = None


class CompleteUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class CompleteResponse(BaseModel):
    content: str
    model: str
    usage: CompleteUsage


class CompleteUnavailable(BaseModel):
    """503 when every provider of the group and its fallbacks failed (seed 002's body)."""

    error: Literal["All providers unavailable"]
    detail: str


# -- POST /count_tokens --------------------------------------------------------------------------------------
class CountTokensRequest(BaseModel):
    """A prompt to count for a model (the ``/complete`` shape). Unknown fields are ignored."""

    model_config = ConfigDict(extra="allow")

    messages: Messages
    model: Text | None = Field(None, description="A router group (or any model name)")
    tenant_id: Ident | None = None


class CountTokensResponse(BaseModel):
    """The prompt's input tokens: exact (the model's tokenizer or its provider's count endpoint) or, with
    ``exact`` false, the gateway's upper bound (one token per UTF-8 byte)."""

    input_tokens: int
    exact: bool
    model: str


# -- GET /v1/usage --------------------------------------------------------------------------------------------
class UsageQuery(BaseModel):
    """The query string of ``GET /v1/usage``."""

    group_by: Literal[GROUP_BYS] = Field(  # type: ignore[valid-type]
        "model", description="Without a ledger only tenant, agent and model"
    )
    since: str | None = Field(None, description="ISO-8601 date or time (UTC when no offset)")
    until: str | None = Field(None, description="ISO-8601 date or time (UTC when no offset)")
    tenant: str | None = Field(None, description="Admin key only: narrow to one tenant")


class UsageRow(BaseModel):
    """Totals of one group. From the ledger: ``avg_latency_ms``; from the in-memory aggregates (no
    ledger): ``latency_ms_total``, ``latency_ms_max``, ``latency_ms_avg``."""

    key: str = Field(description='The group ("-" for none; days as YYYY-MM-DD, UTC)')
    requests: int
    failures: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_usd: str | None = Field(
        description="Decimal string, over the priced calls; null when every call of the group is unpriced"
    )
    unpriced: int = Field(description="Calls that used tokens at an unknown price")
    estimated: int | None = Field(
        None,
        description="Calls billed on an estimate (a stream that ended before the provider's final usage); ledger only",
    )
    avg_latency_ms: float | None = None
    latency_ms_total: float | None = None
    latency_ms_max: float | None = None
    latency_ms_avg: float | None = None


class UsageReport(BaseModel):
    object: Literal["usage"]
    group_by: str
    tenant: str | None = Field(description="The tenant the rows are narrowed to")
    source: Literal["ledger", "memory"]
    data: list[UsageRow]


# -- operational ----------------------------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(description='"redis", "ledger" (or "engine"): "ok" or the error class')


class CallHeaders(BaseModel):
    """Request headers of the call endpoints (body fields of the same meaning win)."""

    model_config = ConfigDict(populate_by_name=True)

    budget_id: Ident | None = Field(
        None, alias="X-LLM-Budget-Id", description="Shared budget of a delegation chain (per tenant)"
    )
    budget_tokens: Annotated[StrictStr, Field(pattern=r"^\s*[0-9]{1,18}\s*$")] | None = Field(
        None, alias="X-LLM-Budget-Tokens", description="Token cap of the budget, set by the request that creates it"
    )
    budget_usd: StrictStr | None = Field(
        None, alias="X-LLM-Budget-USD", description="USD cap of the budget, set by the request that creates it"
    )
    thread_id: Ident | None = Field(
        None, alias="X-LLM-Thread-Id", description="Per-thread budget (budgets.max_tokens_per_thread)"
    )
    tenant_id: HeaderText | None = Field(
        None, alias="X-LLM-Tenant-Id", description="The tenant, when the body has none"
    )
    agent: HeaderText | None = Field(None, alias="X-LLM-Agent", description="The calling agent, when the body has none")
    task_type: HeaderText | None = Field(
        None, alias="X-LLM-Task-Type", description="The task type, when the body has none"
    )
    request_id: StrictStr | None = Field(
        None, alias="X-Request-Id", description="Echoed in x-request-id (one is generated otherwise)"
    )
