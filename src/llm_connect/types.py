"""Plain data types of the core contract: Message, RunConfig, Usage, LLMResponse, StreamChunk.

Usage is normalised across providers (see docs/contract.md):

* ``input_tokens`` counts ALL input: uncached + cache reads + cache writes.
* ``output_tokens`` counts ALL output, reasoning ("thinking") tokens included.
* ``cache_read_tokens``, ``cache_write_tokens`` and ``reasoning_tokens`` are subsets of those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from .errors import LLMInvalidRequestError

if TYPE_CHECKING:
    from .budget import BudgetTracker
    from .tracing import Tracing
    from .usage import UsageTracker

__all__ = [
    "METADATA_MAX_BYTES",
    "METADATA_MAX_DEPTH",
    "METADATA_MAX_KEYS",
    "ROLES",
    "USAGE_DETAIL_KINDS",
    "LLMResponse",
    "Message",
    "NativeRequest",
    "Prompt",
    "RunConfig",
    "StreamChunk",
    "Usage",
    "check_metadata",
    "metadata_problem",
    "normalize_messages",
]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})

#: call metadata may nest objects and lists this deep (the metadata object itself is level 1)
METADATA_MAX_DEPTH = 8
#: call metadata may take this many bytes as compact JSON (what the ledger stores per row)
METADATA_MAX_BYTES = 16 * 1024
#: call metadata may hold this many keys, counted over every nested object
METADATA_MAX_KEYS = 64


def check_metadata(metadata: Mapping[str, Any], name: str = "metadata") -> None:
    """Raise LLMInvalidRequestError if ``metadata`` breaks a bound (see :func:`metadata_problem`)."""
    problem = metadata_problem(metadata)
    if problem is not None:
        raise LLMInvalidRequestError(f"{name} {problem}")


def metadata_problem(metadata: Mapping[str, Any]) -> str | None:
    """Which bound ``metadata`` breaks (depth, keys, JSON size), said so that it names the limit; None if none.

    Metadata travels with the call into every usage event and ledger row: unbounded, one request could make
    its own accounting unstorable."""
    if not metadata:
        return None
    keys = 0
    nodes = 0
    stack: list[tuple[Any, int]] = [(metadata, 1)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > METADATA_MAX_BYTES:  # every value takes at least a byte of JSON
            return f"takes more than {METADATA_MAX_BYTES} bytes as JSON (the limit)"
        if isinstance(value, Mapping):
            keys += len(value)
            if keys > METADATA_MAX_KEYS:
                return f"has more than {METADATA_MAX_KEYS} keys, counted over every nested object (the limit)"
            children: Iterable[Any] = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        nested = [c for c in children if isinstance(c, (Mapping, list, tuple))]
        if nested and depth >= METADATA_MAX_DEPTH:
            return f"nests objects or lists deeper than {METADATA_MAX_DEPTH} levels (the limit)"
        stack.extend((c, depth + 1) for c in nested)
        nodes += len(value) - len(nested)  # the scalars, counted without a trip through the stack
    try:
        size = len(orjson.dumps(metadata, default=str, option=orjson.OPT_NON_STR_KEYS))
    except TypeError as exc:  # orjson.JSONEncodeError: e.g. an integer beyond 64 bits
        return f"cannot be stored as JSON: {exc}"
    if size > METADATA_MAX_BYTES:
        return f"takes {size} bytes as JSON, more than {METADATA_MAX_BYTES} (the limit)"
    return None


@dataclass(slots=True)
class Message:
    """One chat message in OpenAI shape. ``content`` is text, a list of content parts, or None."""

    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        """The message's text (text parts joined) — what counts for prompts and token estimates."""
        c = self.content
        if c is None:
            return ""
        if isinstance(c, str):
            return c
        return "".join(p.get("text", "") for p in c if isinstance(p, Mapping))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            d["name"] = self.name
        if self.tool_calls is not None:
            d["tool_calls"] = self.tool_calls
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        return d


Prompt = str | Sequence[Message | Mapping[str, Any]]


def _to_message(m: Message | Mapping[str, Any], index: int) -> Message:
    if isinstance(m, Message):
        msg = m
    elif isinstance(m, Mapping):
        if "role" not in m:
            raise LLMInvalidRequestError(f"messages[{index}] has no 'role'")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise LLMInvalidRequestError(f"messages[{index}].content must be a string, a list of parts or null")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                    raise LLMInvalidRequestError(
                        f"messages[{index}].content[{j}] must be a content part like {{'type': 'text', 'text': ...}}"
                    )
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise LLMInvalidRequestError(f"messages[{index}].content[{j}].text must be a string")
        msg = Message(
            role=m["role"],
            content=content,
            name=m.get("name"),
            tool_calls=m.get("tool_calls"),
            tool_call_id=m.get("tool_call_id"),
        )
    else:
        raise LLMInvalidRequestError(f"messages[{index}] must be a mapping or Message, not {type(m).__name__}")
    if msg.role not in ROLES:
        raise LLMInvalidRequestError(f"messages[{index}].role {msg.role!r} is not one of {sorted(ROLES)}")
    return msg


def normalize_messages(prompt: Prompt, system_prompt: str | None = None) -> list[Message]:
    """Turn a prompt (a string or a list of messages) into a validated list of Message.

    ``system_prompt`` (from RunConfig) is prepended unless the prompt already starts with a system message.
    """
    if isinstance(prompt, str):
        msgs = [Message("user", prompt)]
    elif isinstance(prompt, (Sequence, Iterable)) and not isinstance(prompt, (bytes, bytearray, Mapping)):
        msgs = [_to_message(m, i) for i, m in enumerate(prompt)]
    else:
        raise LLMInvalidRequestError(f"prompt must be a string or a list of messages, not {type(prompt).__name__}")
    if not msgs:
        raise LLMInvalidRequestError("prompt has no messages")
    if system_prompt and msgs[0].role not in ("system", "developer"):
        msgs.insert(0, Message("system", system_prompt))
    return msgs


#: the token kinds of :class:`Usage` beyond the five base fields: each is a subset of a base field (see Usage)
USAGE_DETAIL_KINDS = (
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "input_image_tokens",
    "input_video_tokens",
    "cache_audio_read_tokens",
    "cache_image_read_tokens",
    "cache_video_read_tokens",
    "output_audio_tokens",
    "output_image_tokens",
    "output_video_tokens",
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Normalised token usage of one or more calls. Adding two Usage values sums every field.

    The five base fields come first (and stay positional); the detail kinds after them are subsets that
    are priced apart where a model has its own price for them (see docs/usage-normalisation.md):

    * ``cache_write_1h_tokens`` ⊆ ``cache_write_tokens``: written with the 1-hour TTL (the rest: 5 minutes);
    * ``input_{audio,image,video}_tokens`` ⊆ ``input_tokens``: input of that modality (the rest is text);
    * ``cache_{audio,image,video}_read_tokens`` ⊆ both ``cache_read_tokens`` and the modality's input;
    * ``output_{audio,image,video}_tokens`` ⊆ ``output_tokens``: output of that modality.

    The names are genai-prices' usage keys.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0
    input_audio_tokens: int = 0
    input_image_tokens: int = 0
    input_video_tokens: int = 0
    cache_audio_read_tokens: int = 0
    cache_image_read_tokens: int = 0
    cache_video_read_tokens: int = 0
    output_audio_tokens: int = 0
    output_image_tokens: int = 0
    output_video_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            self.input_audio_tokens + other.input_audio_tokens,
            self.input_image_tokens + other.input_image_tokens,
            self.input_video_tokens + other.input_video_tokens,
            self.cache_audio_read_tokens + other.cache_audio_read_tokens,
            self.cache_image_read_tokens + other.cache_image_read_tokens,
            self.cache_video_read_tokens + other.cache_video_read_tokens,
            self.output_audio_tokens + other.output_audio_tokens,
            self.output_image_tokens + other.output_image_tokens,
            self.output_video_tokens + other.output_video_tokens,
        )

    def details(self) -> dict[str, int]:
        """The detail kinds that are not zero (``{}`` for plain text usage)."""
        return {k: n for k in USAGE_DETAIL_KINDS if (n := getattr(self, k))}

    def to_dict(self) -> dict[str, int]:
        """The five base fields and ``total_tokens``, then every detail kind that is not zero."""
        d = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "total_tokens": self.total_tokens,
        }
        d.update(self.details())
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Usage:
        """Inverse of :meth:`to_dict`: missing kinds are 0; ``total_tokens`` and unknown keys are ignored."""
        return cls(**{k: int(d.get(k) or 0) for k in _USAGE_FIELDS})


_USAGE_FIELDS = tuple(f.name for f in fields(Usage))


@dataclass(frozen=True, slots=True)
class NativeRequest:
    """A client's request in one wire format's own shape, for passthrough: an adapter whose wire module is
    ``wire`` (e.g. ``"anthropic_messages"``) sends ``body`` as it is — model, max_tokens and stream set by the
    call — with ``headers`` added, instead of building a request from the messages; every other adapter
    ignores it and translates the messages as usual. Its answer comes back verbatim
    (``LLMResponse.native``, ``StreamChunk.raw_events``)."""

    wire: str
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RunConfig:
    """Per-call settings. Every field is optional; None means "provider default"."""

    model_name: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    #: wall-clock cap for the whole call, in seconds
    timeout: float | None = None
    stop: list[str] | str | None = None
    seed: int | None = None
    top_p: float | None = None
    system_prompt: str | None = None
    #: OpenAI-style response_format, e.g. {"type": "json_object"} or {"type": "json_schema", ...}
    response_format: dict[str, Any] | None = None
    #: shorthand for response_format={"type": "json_object"}
    json_mode: bool = False
    #: OpenAI-style tool definitions, passed through (translated per wire format)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    # who is calling — carried into usage events, budgets and routing
    tenant_id: str | None = None
    agent: str | None = None
    thread_id: str | None = None
    task_type: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: shared token / USD budget (reserve before the call, settle after)
    budget_tracker: BudgetTracker | None = None
    #: receives a UsageEvent for every call made with this config
    usage_tracker: UsageTracker | None = None
    #: provider-specific fields merged into the request body last
    extra_body: dict[str, Any] | None = None
    extra_headers: dict[str, str] | None = None
    #: OpenAI ``reasoning_effort`` ("low", "medium", "high"), sent by the OpenAI Chat wire format only
    reasoning_effort: str | None = None
    #: the client's own request, sent as is by an adapter that speaks its wire format (see NativeRequest)
    native: NativeRequest | None = None
    #: OpenTelemetry spans for this call and its upstream attempts (:class:`llm_connect.tracing.Tracing`);
    #: None (the default): no span is made and nothing of OpenTelemetry is imported
    tracing: Tracing | None = None

    def __post_init__(self) -> None:
        if self.metadata is None:
            self.metadata = {}
        # straight-line checks: this runs for every call (the gateway builds one config per request)
        if self.response_format is not None and not isinstance(self.response_format, dict):
            _wrong_type("response_format", self.response_format, dict)
        if self.extra_body is not None and not isinstance(self.extra_body, dict):
            _wrong_type("extra_body", self.extra_body, dict)
        if self.extra_headers is not None and not isinstance(self.extra_headers, dict):
            _wrong_type("extra_headers", self.extra_headers, dict)
        if not isinstance(self.metadata, dict):
            _wrong_type("metadata", self.metadata, dict)
        if self.metadata:
            check_metadata(self.metadata)
        if self.tools is not None:
            if not isinstance(self.tools, list):
                _wrong_type("tools", self.tools, list)
            if not all(isinstance(t, dict) for t in self.tools):
                raise LLMInvalidRequestError("tools must be a list of tool definitions (dicts)")
        if self.stop is not None and not (
            isinstance(self.stop, str) or (isinstance(self.stop, list) and all(isinstance(x, str) for x in self.stop))
        ):
            raise LLMInvalidRequestError(f"stop must be a string or a list of strings, got {self.stop!r}")
        if self.max_tokens is not None and (
            not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1
        ):
            raise LLMInvalidRequestError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if self.timeout is not None and not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise LLMInvalidRequestError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if self.temperature is not None and not (
            isinstance(self.temperature, (int, float)) and 0 <= self.temperature <= 2
        ):
            raise LLMInvalidRequestError(f"temperature must be between 0 and 2, got {self.temperature!r}")

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def effective_response_format(self) -> dict[str, Any] | None:
        if self.response_format is not None:
            return self.response_format
        return {"type": "json_object"} if self.json_mode else None

    def copy(self) -> RunConfig:
        """A shallow copy (trackers, metadata and other dicts are shared, not copied)."""
        return _copy_config(self)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed (shallow, like :meth:`copy`); the result is validated as the
        constructor would when a checked field changes."""
        unknown = changes.keys() - _RUN_CONFIG_FIELDS
        if unknown:
            raise TypeError(f"RunConfig has no field(s) {sorted(unknown)}")
        new = _copy_config(self)
        for name, value in changes.items():
            setattr(new, name, value)
        if changes.keys() - _UNCHECKED_FIELDS:
            new.__post_init__()
        return new


def _wrong_type(name: str, value: Any, kind: type) -> None:
    raise LLMInvalidRequestError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")


def _make_copier() -> Callable[[RunConfig], RunConfig]:
    """A shallow copy of a RunConfig as one function with a line per field, generated from the dataclass
    fields as dataclasses generates ``__init__``: a routed call copies its config per attempt, and this is
    ten times faster than ``copy.copy`` of a slots dataclass."""
    body = "".join(f"    new.{f.name} = old.{f.name}\n" for f in fields(RunConfig))
    namespace: dict[str, Any] = {"make": object.__new__, "cls": RunConfig}
    exec(f"def copy_config(old):\n    new = make(cls)\n{body}    return new\n", namespace)
    copier: Callable[[RunConfig], RunConfig] = namespace["copy_config"]
    return copier


_copy_config = _make_copier()
_RUN_CONFIG_FIELDS = frozenset(f.name for f in fields(RunConfig))
#: fields __post_init__ does not check: a replace() changing only these needs no validation
_UNCHECKED_FIELDS = frozenset(
    {
        "model_name",
        "tenant_id",
        "agent",
        "thread_id",
        "task_type",
        "budget_tracker",
        "usage_tracker",
        "seed",
        "system_prompt",
        "tool_choice",
        "json_mode",
        "top_p",
        "reasoning_effort",
        "native",
        "tracing",
    }
)


@dataclass(slots=True)
class LLMResponse:
    """The result of one completed call."""

    text: str
    model: str
    provider: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    latency_ms: float = 0.0
    cost_usd: Decimal | None = None
    request_id: str | None = None
    #: OpenAI-shaped tool calls the model asked for, if any
    tool_calls: list[dict[str, Any]] | None = None
    #: the provider's raw response body (parsed JSON), for anything not normalised
    raw: dict[str, Any] | None = field(default=None, repr=False)
    #: the service tier the provider says it served the call at (OpenAI ``service_tier``: "default", "flex",
    #: "priority", "scale"; Anthropic ``usage.service_tier``); the call is priced at that tier's rate
    service_tier: str | None = None
    #: ``raw`` is the upstream's answer to ``RunConfig.native``, in that request's wire format (passthrough)
    native: bool = False
    #: reasoning ("thinking") text the provider returned beside the answer (DeepSeek ``reasoning_content``)
    reasoning: str = ""
    #: reply fields a provider row keeps beyond the normalised ones (Perplexity ``citations``, ``search_results``)
    provider_fields: dict[str, Any] | None = None

    @property
    def content(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (Decimal cost as a string; the raw body left out)."""
        return {
            "text": self.text,
            "model": self.model,
            "provider": self.provider,
            "usage": self.usage.to_dict(),
            "finish_reason": self.finish_reason,
            "latency_ms": round(self.latency_ms, 3),
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
            "request_id": self.request_id,
            "tool_calls": self.tool_calls,
            "service_tier": self.service_tier,
        }


@dataclass(slots=True)
class StreamChunk:
    """One piece of a streamed answer. The last chunk carries ``usage`` and ``finish_reason``.

    ``usage_so_far`` and ``reasoning`` are what a stream that ends early is billed on: the running usage the
    provider has reported and the thinking text it streamed (neither is part of the answer's text).
    """

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    #: OpenAI-shaped tool-call deltas, passed through
    tool_calls: list[dict[str, Any]] | None = None
    model: str | None = None
    request_id: str | None = None
    #: set on the final chunk once cost is known
    cost_usd: Decimal | None = None
    #: the running usage the provider has reported so far (Anthropic ``message_start`` / ``message_delta``,
    #: Gemini ``usageMetadata``, an OpenAI usage chunk); the final ``usage`` supersedes it
    usage_so_far: Usage | None = None
    #: reasoning ("thinking") text the provider streamed with this delta; output, but not the answer
    reasoning: str = ""
    #: on the final chunk: the service tier the provider served the stream at (see LLMResponse.service_tier)
    service_tier: str | None = None
    #: passthrough (``RunConfig.native``) only: the upstream's own events this chunk came from, in order, as
    #: (event name, data) pairs — the events that yield no chunk of their own ride on the next chunk shown
    raw_events: list[tuple[str | None, dict[str, Any]]] | None = None
    #: on the final chunk: reply fields the provider row keeps (see LLMResponse.provider_fields)
    provider_fields: dict[str, Any] | None = None
