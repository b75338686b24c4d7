"""Helpers shared by the wire codecs: request plumbing, error building, Retry-After, stream state.

Everything here is pure (no I/O) and holds no module-level mutable state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from ..errors import (
    LLMAuthenticationError,
    LLMContextWindowExceededError,
    LLMError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    LLMTimeoutError,
)
from ..types import Message, RunConfig, StreamChunk, Usage

# ---------------------------------------------------------------------------
# small value helpers


def to_int(value: Any) -> int:
    """A non-negative int from a usage field that may be missing, None, a float or nonsense."""
    if value is None or isinstance(value, bool):
        return 0
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):
        return 0


def count_field(body: Any, key: str) -> int:
    """A token count a budget will rely on: a non-negative int at ``body[key]``, else ValueError (never 0 for
    nonsense, as :func:`to_int` gives for usage)."""
    value = body.get(key) if isinstance(body, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"no token count {key!r} in {str(body)[:200]}")
    return value


def dumps(obj: Any) -> str:
    """Compact JSON text (the shape providers use for tool-call arguments)."""
    return orjson.dumps(obj).decode()


def loads_arguments(arguments: Any) -> Any:
    """Tool-call arguments as an object: OpenAI sends a JSON string, others an object already."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, (dict, list)):
        return arguments
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        # not JSON: hand the raw text to the provider rather than dropping it
        return {"__raw__": arguments}


def try_json(text: str) -> Any:
    """Parsed JSON if ``text`` is JSON, else the text itself."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def effective_max_tokens(config: RunConfig, max_tokens: int | None) -> int | None:
    """The ``max_tokens`` argument wins over ``config.max_tokens``."""
    return max_tokens if max_tokens is not None else config.max_tokens


def sampling(
    config: RunConfig,
    max_tokens: int | None,
    *,
    max_tokens_key: str,
    top_p_key: str = "top_p",
    stop_key: str = "stop",
    seed_key: str | None = "seed",
    stop_as_list: bool = True,
) -> dict[str, Any]:
    """The sampling settings of a call under one wire format's names (only those set; ``seed_key=None`` for
    formats without a seed). The ``max_tokens`` argument wins over ``config.max_tokens``."""
    out: dict[str, Any] = {}
    mt = effective_max_tokens(config, max_tokens)
    if mt is not None:
        out[max_tokens_key] = mt
    if config.temperature is not None:
        out["temperature"] = config.temperature
    if config.top_p is not None:
        out[top_p_key] = config.top_p
    if config.stop is not None:
        out[stop_key] = config.stop_list if stop_as_list else config.stop
    if seed_key is not None and config.seed is not None:
        out[seed_key] = config.seed
    return out


def merge_extra_body(body: dict[str, Any], config: RunConfig) -> dict[str, Any]:
    """``config.extra_body`` is merged last (shallow) so callers can set any provider field."""
    if config.extra_body:
        body.update(config.extra_body)
    return body


def tool_call(call_id: str, name: str, arguments: str, **extra: Any) -> dict[str, Any]:
    """One tool call in OpenAI shape."""
    tc: dict[str, Any] = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    tc.update(extra)
    return tc


def tool_names_by_id(messages: list[Message]) -> dict[str, str]:
    """Map tool_call id -> function name from the assistant turns (for formats keyed by name)."""
    names: dict[str, str] = {}
    for m in messages:
        for tc in m.tool_calls or ():
            fn = tc.get("function") or {}
            if tc.get("id") and fn.get("name"):
                names[tc["id"]] = fn["name"]
    return names


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` -> ("image/png", "AAAA"); None for any other URL."""
    if not url.startswith("data:") or "," not in url:
        return None
    head, data = url[5:].split(",", 1)
    mime = head.split(";", 1)[0] or "application/octet-stream"
    return mime, data


def image_url_of(part: Mapping[str, Any]) -> str | None:
    """The URL of an OpenAI ``image_url`` content part."""
    img = part.get("image_url")
    if isinstance(img, Mapping):
        return img.get("url")
    return img if isinstance(img, str) else None


def openai_tool_function(tool: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``function`` object of an OpenAI-shaped tool, or None if the tool has another shape."""
    if tool.get("type", "function") == "function" and isinstance(tool.get("function"), Mapping):
        return tool["function"]
    return None


# ---------------------------------------------------------------------------
# errors


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup that works for plain dicts and CIMultiDict alike."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lname = name.lower()
    for k, v in headers.items():
        if k.lower() == lname:
            return v
    return None


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    ms = header(headers, "retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = header(headers, "retry-after")
    if ra is None:
        return None
    ra = ra.strip()
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_duration(value: Any) -> float | None:
    """A protobuf Duration string such as ``"38s"`` or ``"1.5s"`` in seconds."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return max(0.0, float(value[:-1]))
    except ValueError:
        return None


def coerce_body(body: Any) -> Any:
    """Error bodies may arrive as text; parse JSON text into a dict when possible."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        text = body.strip()
        if text.startswith(("{", "[")):
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                return body
    return body


def class_for_status(status: int | None) -> type[LLMError] | None:
    """The error class an HTTP status implies, before the provider's error type refines it."""
    if status is None:
        return None
    if status == 429:
        return LLMRateLimitError
    if status in (401, 403):
        return LLMAuthenticationError
    if status in (408, 504):
        return LLMTimeoutError
    if status >= 500:  # 500-503, Anthropic's 529, Cloudflare's 52x
        return LLMProviderUnavailableError
    if status >= 400:  # 400, 404, 409, 413, 422, …: the request itself is wrong
        return LLMInvalidRequestError
    return LLMProviderUnavailableError


def make_error(
    cls: type[LLMError],
    message: str,
    *,
    status: int | None,
    body: Any,
    headers: Mapping[str, str] | None = None,
    retry_after: float | None = None,
    request_id: str | None = None,
) -> LLMError:
    """Build ``cls`` with status and body set; rate-limit and unavailable (503/529) errors get ``retry_after``."""
    message = message or (f"HTTP {status}" if status is not None else cls.__name__)
    if issubclass(cls, (LLMRateLimitError, LLMProviderUnavailableError)):
        ra = parse_retry_after(headers)
        return cls(
            message,
            retry_after=ra if ra is not None else retry_after,
            status_code=status,
            body=body,
            request_id=request_id,
        )
    return cls(message, status_code=status, body=body, request_id=request_id)


def looks_like_context_overflow(message: str) -> bool:
    """LAST RESORT — message-text matching, used only when a provider gives no machine-readable code.

    Anthropic (invalid_request_error "prompt is too long: N tokens > M maximum", "input length and
    `max_tokens` exceed context limit"), Gemini (INVALID_ARGUMENT "The input token count (N) exceeds the
    maximum number of tokens allowed (M)"), OpenAI-compatible servers such as vLLM ("This model's maximum
    context length is N tokens"), Bedrock (ValidationException "Input is too long for requested model") and
    Ollama report context overflow only in prose.
    """
    m = message.lower()
    return any(
        s in m
        for s in (
            "prompt is too long",
            "exceed context limit",
            "exceeds the maximum number of tokens",
            "maximum context length",
            "context length exceeded",
            "context window",
            "exceeds the context length",
            "input is too long",
        )
    )


def context_or(cls: type[LLMError], message: str) -> type[LLMError]:
    """Refine an invalid-request class to the context-window error when the message says so."""
    if cls is LLMInvalidRequestError and looks_like_context_overflow(message):
        return LLMContextWindowExceededError
    return cls


# ---------------------------------------------------------------------------
# streaming


class ToolCallAssembler:
    """Accumulates OpenAI-shaped tool-call deltas into complete tool calls."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, deltas: list[dict[str, Any]]) -> None:
        for d in deltas:
            idx = d.get("index", len(self._calls))
            cur = self._calls.get(idx)
            fn = d.get("function") or {}
            if cur is None:
                cur = tool_call(d.get("id") or "", fn.get("name") or "", fn.get("arguments") or "")
                for k, v in d.items():
                    if k not in ("index", "id", "type", "function"):
                        cur[k] = v
                self._calls[idx] = cur
                continue
            if d.get("id"):
                cur["id"] = d["id"]
            if fn.get("name"):
                cur["function"]["name"] = fn["name"]
            if fn.get("arguments"):
                cur["function"]["arguments"] += fn["arguments"]

    def result(self) -> list[dict[str, Any]] | None:
        if not self._calls:
            return None
        return [self._calls[i] for i in sorted(self._calls)]


class StreamState:
    """State shared by every codec's StreamDecoder: text, usage, finish reason, terminal flag."""

    #: human name of the terminal event, for the "stream was cut" error
    terminal_name = "the terminal event"

    def __init__(self) -> None:
        self._parts: list[str] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.request_id: str | None = None
        #: the service tier the provider says it serves the stream at (carried on the final chunk)
        self.service_tier: str | None = None
        self.done = False
        self._tools = ToolCallAssembler()
        #: content-block index -> tool-call index, for formats that stream tool calls as content blocks
        self._block_tools: dict[Any, int] = {}

    @property
    def text(self) -> str:
        """All text produced so far."""
        return "".join(self._parts)

    @property
    def tool_calls(self) -> list[dict[str, Any]] | None:
        """The tool calls assembled from the deltas seen so far (OpenAI shape), or None."""
        return self._tools.result()

    def _text_chunk(self, text: str) -> StreamChunk:
        self._parts.append(text)
        # positional (text, finish_reason, usage, tool_calls, model, request_id): one per token, keywords cost more
        return StreamChunk(text, None, None, None, self.model, self.request_id)

    def _tool_chunk(self, deltas: list[dict[str, Any]]) -> StreamChunk:
        self._tools.add(deltas)
        return StreamChunk(tool_calls=deltas, model=self.model, request_id=self.request_id)

    def _block_tool_start(self, block: Any, call_id: Any, name: Any) -> list[StreamChunk]:
        """A tool call opening in content block ``block`` (Anthropic, Bedrock): numbered among the tool calls."""
        idx = len(self._block_tools)
        self._block_tools[block if block is not None else idx] = idx
        head = {"index": idx, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        return [self._tool_chunk([head])]

    def _block_tool_args(self, block: Any, part: str) -> list[StreamChunk]:
        """A piece of the JSON arguments of the tool call in content block ``block`` (none for an unknown block)."""
        idx = self._block_tools.get(block)
        if idx is None or not part:
            return []
        return [self._tool_chunk([{"index": idx, "function": {"arguments": part}}])]

    def _reasoning_chunk(self, text: str) -> StreamChunk:
        return StreamChunk(reasoning=text, model=self.model, request_id=self.request_id)

    def _running(self, out: list[StreamChunk], before: Usage | None) -> list[StreamChunk]:
        """``out`` with the running usage on its first chunk when this event changed it (a chunk of its own when
        the event brought nothing else): a stream that stops early is billed at least what was reported."""
        usage = self.usage
        if usage is None or usage == before:
            return out
        if out:
            out[0].usage_so_far = usage
            return out
        return [StreamChunk(usage_so_far=usage, model=self.model, request_id=self.request_id)]

    def finish(self) -> StreamChunk:
        """The final chunk (usage + finish_reason); raises if the stream never reached its end."""
        if not self.done:
            raise LLMProviderUnavailableError(
                f"stream ended before {self.terminal_name} (connection cut or upstream error)",
                request_id=self.request_id,
            )
        reason = self.finish_reason
        if reason == "stop" and self._tools.result():
            reason = "tool_calls"
        return StreamChunk(
            text="",
            finish_reason=reason,
            usage=self.usage,
            model=self.model,
            request_id=self.request_id,
            service_tier=self.service_tier,
        )
