"""Anthropic Messages wire format (``POST {api_base}/v1/messages``, ``anthropic-version: 2023-06-01``).

Translates our OpenAI-shaped messages and tools: system messages go to top-level ``system``, assistant
``tool_calls`` become ``tool_use`` blocks, ``tool`` messages become ``tool_result`` blocks in a user turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import (
    LLMAuthenticationError,
    LLMError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    LLMTimeoutError,
)
from ..types import Message, NativeRequest, RunConfig, StreamChunk, Usage
from . import ParsedResponse, WireRequest
from ._common import (
    StreamState,
    class_for_status,
    coerce_body,
    context_or,
    count_field,
    dumps,
    image_url_of,
    loads_arguments,
    make_error,
    merge_extra_body,
    openai_tool_function,
    parse_data_url,
    sampling,
    to_int,
    tool_call,
)

__all__ = [
    "COUNT_MARGIN",
    "FRAMING",
    "StreamDecoder",
    "build_count_request",
    "build_native_count_request",
    "build_native_request",
    "build_request",
    "classify_error",
    "parse_count_response",
    "parse_response",
    "parse_usage",
]

FRAMING = "sse"
API_VERSION = "2023-06-01"
PATH = "/v1/messages"
#: Anthropic requires max_tokens; used when neither the call nor the config sets one
DEFAULT_MAX_TOKENS = 4096
#: (percent, tokens) added to a count_tokens answer, which Anthropic documents as an estimate
COUNT_MARGIN = (1, 8)

_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_ERROR_TYPES: dict[str, type[LLMError]] = {
    "invalid_request_error": LLMInvalidRequestError,
    "not_found_error": LLMInvalidRequestError,
    "request_too_large": LLMInvalidRequestError,
    "authentication_error": LLMAuthenticationError,
    "permission_error": LLMAuthenticationError,
    # the key's account cannot pay: no retry with this key helps, like a bad key
    "billing_error": LLMAuthenticationError,
    "rate_limit_error": LLMRateLimitError,
    "timeout_error": LLMTimeoutError,
    "api_error": LLMProviderUnavailableError,
    "overloaded_error": LLMProviderUnavailableError,
}


# ---------------------------------------------------------------------------
# request


def _blocks(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """OpenAI content (text or parts) -> Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content:
        ptype = part.get("type")
        if ptype == "text":
            block = {"type": "text", "text": part.get("text", "")}
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            out.append(block)
        elif ptype == "image_url":
            url = image_url_of(part) or ""
            data = parse_data_url(url)
            if data is not None:
                source = {"type": "base64", "media_type": data[0], "data": data[1]}
            else:
                source = {"type": "url", "url": url}
            out.append({"type": "image", "source": source})
        else:  # already an Anthropic block (image, document, tool_result, …)
            out.append(dict(part))
    return out


def _push(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Append a turn, merging with the previous one of the same role (Anthropic alternates roles)."""
    if turns and turns[-1]["role"] == role:
        prev = turns[-1]
        if isinstance(prev["content"], str):
            prev["content"] = _blocks(prev["content"])
        prev["content"].extend(blocks)
    elif blocks:
        turns.append({"role": role, "content": blocks})


def _tool_use(tc: Mapping[str, Any]) -> dict[str, Any]:
    fn = tc.get("function") or {}
    return {
        "type": "tool_use",
        "id": tc.get("id"),
        "name": fn.get("name"),
        "input": loads_arguments(fn.get("arguments")),
    }


def _messages(messages: list[Message]) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role in ("system", "developer"):
            system.extend(_blocks(m.content))
        elif m.role == "tool":
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id}
            result["content"] = m.content if isinstance(m.content, str) else _blocks(m.content)
            _push(turns, "user", [result])
        else:
            role = "assistant" if m.role == "assistant" else "user"
            if isinstance(m.content, str) and not m.tool_calls and not (turns and turns[-1]["role"] == role):
                turns.append({"role": role, "content": m.content})  # plain text stays a string
            else:
                _push(turns, role, _blocks(m.content) + [_tool_use(tc) for tc in m.tool_calls or ()])
    # plain text blocks collapse to one string; blocks with cache_control etc. stay a list
    sys_out: str | list[dict[str, Any]] | None = None
    if system:
        if all(b.get("type") == "text" and set(b) == {"type", "text"} for b in system):
            sys_out = "\n\n".join(b["text"] for b in system)
        else:
            sys_out = system
    return sys_out, turns


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tool in tools:
        fn = openai_tool_function(tool)
        if fn is None:  # already Anthropic-shaped (incl. server tools such as web_search)
            out.append(dict(tool))
            continue
        t: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            t["description"] = fn["description"]
        t["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        if "cache_control" in tool:
            t["cache_control"] = tool["cache_control"]
        out.append(t)
    return out


def _tool_choice(choice: Any) -> Any:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        if choice.get("type") == "function" and isinstance(fn, Mapping):
            return {"type": "tool", "name": fn.get("name")}
        return dict(choice)  # already Anthropic-shaped
    return choice


def build_request(
    model: str,
    messages: list[Message],
    config: RunConfig,
    *,
    stream: bool,
    max_tokens: int | None,
) -> WireRequest:
    """The Messages request. ``response_format``/``seed`` have no Anthropic equivalent and are not sent."""
    system, turns = _messages(messages)
    params = sampling(config, max_tokens, max_tokens_key="max_tokens", stop_key="stop_sequences", seed_key=None)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": params.pop("max_tokens", DEFAULT_MAX_TOKENS),
        "messages": turns,
    }
    if system is not None:
        body["system"] = system
    body.update(params)
    if config.tools:
        body["tools"] = _tools(config.tools)
    if config.tool_choice is not None:
        body["tool_choice"] = _tool_choice(config.tool_choice)
    if stream:
        body["stream"] = True
    merge_extra_body(body, config)
    return WireRequest(path=PATH, body=body, headers={"anthropic-version": API_VERSION})


#: the request fields ``/v1/messages/count_tokens`` takes (the rest of a Messages request is left out)
_COUNT_FIELDS = ("messages", "system", "tools", "tool_choice", "thinking", "mcp_servers")


def _native_headers(native: NativeRequest) -> dict[str, str]:
    headers = dict(native.headers)
    headers.setdefault("anthropic-version", API_VERSION)
    return headers


def build_native_request(model: str, native: NativeRequest, *, stream: bool, max_tokens: int | None) -> WireRequest:
    """Passthrough: a client's own Messages request, sent as it is (cache_control, thinking, betas, fields
    added later) with ``model`` set to the deployment's, ``max_tokens`` to the call's (a budget may have
    clamped it) and ``stream`` to the call's. A thinking budget that no longer fits under a clamped
    ``max_tokens`` is lowered to fit (Anthropic requires ``budget_tokens < max_tokens``)."""
    body = dict(native.body)
    body["model"] = model
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
        thinking = body.get("thinking")
        if isinstance(thinking, Mapping) and thinking.get("type") == "enabled":
            budget = thinking.get("budget_tokens")
            if isinstance(budget, int) and budget >= max_tokens:
                body["thinking"] = {**thinking, "budget_tokens": max(1, max_tokens - 1)}
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return WireRequest(path=PATH, body=body, headers=_native_headers(native))


def build_native_count_request(model: str, native: NativeRequest) -> WireRequest:
    """``POST /v1/messages/count_tokens`` for a client's own Messages request (its prompt fields only)."""
    body: dict[str, Any] = {"model": model}
    body.update((k, native.body[k]) for k in _COUNT_FIELDS if k in native.body)
    return WireRequest(path=PATH + "/count_tokens", body=body, headers=_native_headers(native))


def build_count_request(model: str, messages: list[Message], config: RunConfig) -> WireRequest:
    """``POST /v1/messages/count_tokens``: the prompt of :func:`build_request` (system, messages, tools), no
    sampling. Anthropic calls its answer an estimate that may differ from the billed count "by a small amount":
    :func:`parse_count_response` adds :data:`COUNT_MARGIN` for that."""
    system, turns = _messages(messages)
    body: dict[str, Any] = {"model": model, "messages": turns}
    if system is not None:
        body["system"] = system
    if config.tools:
        body["tools"] = _tools(config.tools)
    if config.tool_choice is not None:
        body["tool_choice"] = _tool_choice(config.tool_choice)
    return WireRequest(path="/v1/messages/count_tokens", body=body, headers={"anthropic-version": API_VERSION})


def parse_count_response(body: Mapping[str, Any]) -> int:
    """``{"input_tokens": N}`` → N plus the margin (1 % + 8 tokens), an upper bound on the billed input."""
    n = count_field(body, "input_tokens")
    return n + -(-n * COUNT_MARGIN[0] // 100) + COUNT_MARGIN[1]


# ---------------------------------------------------------------------------
# response


def parse_usage(raw: Mapping[str, Any] | None) -> Usage:
    """``input_tokens`` excludes cache reads and writes, so they are added back. ``cache_creation`` splits
    the writes by TTL (``ephemeral_5m_input_tokens``, ``ephemeral_1h_input_tokens``): the 1-hour ones are
    ``cache_write_1h_tokens``, priced apart."""
    if not raw:
        return Usage()
    read = to_int(raw.get("cache_read_input_tokens"))
    write = to_int(raw.get("cache_creation_input_tokens"))
    split = raw.get("cache_creation")
    write_1h = to_int(split.get("ephemeral_1h_input_tokens")) if isinstance(split, Mapping) else 0
    if isinstance(split, Mapping) and not write:  # the split without the total: the total is its sum
        write = write_1h + to_int(split.get("ephemeral_5m_input_tokens"))
    output = to_int(raw.get("output_tokens"))
    details = raw.get("output_tokens_details")
    # thinking tokens are inside output_tokens; newer responses also report them apart
    thinking = to_int(details.get("thinking_tokens")) if isinstance(details, Mapping) else 0
    return Usage(
        input_tokens=to_int(raw.get("input_tokens")) + read + write,
        output_tokens=output,
        cache_read_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=min(thinking, output),
        cache_write_1h_tokens=min(write_1h, write),
    )


def _tier(raw: Mapping[str, Any] | None) -> str | None:
    """``usage.service_tier`` ("standard", "priority", "batch"), if the usage object has one."""
    tier = raw.get("service_tier") if isinstance(raw, Mapping) else None
    return tier if isinstance(tier, str) and tier else None


def _stop(reason: str | None) -> str | None:
    return None if reason is None else _STOP.get(reason, reason)


def parse_response(body: Mapping[str, Any]) -> ParsedResponse:
    """A ``message`` object -> ParsedResponse. Thinking blocks are not part of the text: they are its
    ``reasoning``."""
    if body.get("type") == "error":
        raise classify_error(None, dict(body), {})
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[str] = []
    for block in body.get("content") or ():
        btype = block.get("type")
        if btype == "text":
            texts.append(block.get("text", ""))
        elif btype == "tool_use":
            calls.append(tool_call(block.get("id", ""), block.get("name", ""), dumps(block.get("input") or {})))
        elif btype == "thinking" and isinstance(block.get("thinking"), str):
            thinking.append(block["thinking"])
    return ParsedResponse(
        text="".join(texts),
        model=body.get("model"),
        finish_reason=_stop(body.get("stop_reason")),
        usage=parse_usage(body.get("usage")),
        tool_calls=calls or None,
        request_id=body.get("id"),
        service_tier=_tier(body.get("usage")),
        reasoning="".join(thinking),
    )


class StreamDecoder(StreamState):
    """Decodes Messages SSE events. Terminal: ``message_stop``.

    ``message_start`` carries input and cache tokens; each ``message_delta`` carries cumulative usage
    (at least ``output_tokens``), merged over what came before. Both yield a chunk with that running usage
    (``usage_so_far``); thinking deltas yield ``reasoning`` chunks.
    """

    terminal_name = "message_stop"

    def __init__(self) -> None:
        super().__init__()
        self._raw_usage: dict[str, Any] = {}

    def _merge_usage(self, raw: Mapping[str, Any] | None) -> None:
        if not raw:
            return
        for k, v in raw.items():
            if v is not None:
                self._raw_usage[k] = v
        self.usage = parse_usage(self._raw_usage)
        self.service_tier = _tier(self._raw_usage)

    def feed(self, event: str | None, data: Mapping[str, Any]) -> list[StreamChunk]:
        etype = data.get("type") or event
        if etype == "content_block_delta":
            delta = data.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text", "")
                return [self._text_chunk(text)] if text else []
            if dtype == "input_json_delta":
                return self._block_tool_args(data.get("index"), delta.get("partial_json", ""))
            if dtype == "thinking_delta":
                thinking = delta.get("thinking", "")
                return [self._reasoning_chunk(thinking)] if thinking else []
            return []  # signature_delta, citations_delta
        if etype == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                return self._block_tool_start(data.get("index"), block.get("id"), block.get("name"))
            if block.get("type") == "text" and block.get("text"):
                return [self._text_chunk(block["text"])]
            return []
        if etype == "message_start":
            msg = data.get("message") or {}
            self.request_id = msg.get("id") or self.request_id
            self.model = msg.get("model") or self.model
            before = self.usage
            self._merge_usage(msg.get("usage"))
            return self._running([], before)
        if etype == "message_delta":
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                self.finish_reason = _stop(reason)
            before = self.usage
            self._merge_usage(data.get("usage"))
            return self._running([], before)
        if etype == "message_stop":
            self.done = True
            return []
        if etype == "error":
            raise classify_error(None, dict(data), {})
        return []  # ping, content_block_stop, and event types added later


# ---------------------------------------------------------------------------
# errors


def classify_error(status: int | None, body: Any, headers: Mapping[str, str] | None) -> LLMError:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}`` -> the matching LLMError."""
    body = coerce_body(body)
    err = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(err, Mapping):
        etype = err.get("type")
        message = str(err.get("message") or "")
    else:
        etype = None
        message = str(err or (body if isinstance(body, str) else "") or "")
    request_id = body.get("request_id") if isinstance(body, Mapping) else None

    cls = class_for_status(status)
    by_type = _ERROR_TYPES.get(etype or "")
    if status == 529 or etype == "overloaded_error":
        cls = LLMProviderUnavailableError
    elif by_type is not None and (cls is None or cls is LLMInvalidRequestError):
        # the error type refines a generic 4xx, and is all there is inside a stream
        cls = by_type
    elif cls is None:
        cls = LLMProviderUnavailableError
    if etype in (None, "invalid_request_error"):
        # Anthropic has no machine-readable code for "prompt is too long": documented last resort
        cls = context_or(cls, message)
    return make_error(cls, message, status=status, body=body, headers=headers, request_id=request_id)
