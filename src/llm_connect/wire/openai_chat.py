"""OpenAI Chat Completions wire format (``POST {api_base}/chat/completions``, api_base ends with /v1).

Also spoken by every OpenAI-compatible server (OpenRouter, vLLM, llama.cpp server, LM Studio, …).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import (
    LLMAuthenticationError,
    LLMContentFilterError,
    LLMContextWindowExceededError,
    LLMError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
)
from ..types import Message, RunConfig, StreamChunk, Usage
from . import ParsedResponse, WireRequest
from ._common import (
    StreamState,
    class_for_status,
    coerce_body,
    context_or,
    make_error,
    merge_extra_body,
    sampling,
    to_int,
)

__all__ = [
    "FRAMING",
    "StreamDecoder",
    "build_request",
    "classify_error",
    "parse_response",
    "parse_usage",
]

FRAMING = "sse"

_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def build_request(
    model: str,
    messages: list[Message],
    config: RunConfig,
    *,
    stream: bool,
    max_tokens: int | None,
) -> WireRequest:
    """The Chat Completions request body; messages are already in OpenAI shape."""
    body: dict[str, Any] = {"model": model, "messages": [m.to_dict() for m in messages]}
    body.update(sampling(config, max_tokens, max_tokens_key="max_tokens", stop_as_list=False))
    rf = config.effective_response_format
    if rf is not None:
        body["response_format"] = rf
    if config.tools:
        body["tools"] = config.tools
    if config.tool_choice is not None:
        body["tool_choice"] = config.tool_choice
    if config.reasoning_effort is not None:
        body["reasoning_effort"] = config.reasoning_effort
    if stream:
        body["stream"] = True
    merge_extra_body(body, config)
    if stream:
        # usage arrives only in a last chunk that must be asked for; always ask
        opts = dict(body.get("stream_options") or {})
        opts["include_usage"] = True
        body["stream_options"] = opts
    return WireRequest(path="/chat/completions", body=body)


def parse_usage(raw: Mapping[str, Any] | None) -> Usage:
    """prompt_tokens already includes cached tokens and cache writes; completion_tokens already includes
    reasoning and audio tokens. ``prompt_tokens_details.audio_tokens`` / ``completion_tokens_details.audio_tokens``
    are OpenAI's; ``cache_write_tokens`` and ``video_tokens`` are OpenRouter's (explicit-cache models)."""
    if not raw:
        return Usage()
    pdet = raw.get("prompt_tokens_details") or {}
    cdet = raw.get("completion_tokens_details") or {}
    cached = to_int(pdet.get("cached_tokens"))
    if not cached:
        # DeepSeek-style OpenAI-compatible servers report cache hits at the top level
        cached = to_int(raw.get("prompt_cache_hit_tokens"))
    return Usage(
        input_tokens=to_int(raw.get("prompt_tokens")),
        output_tokens=to_int(raw.get("completion_tokens")),
        cache_read_tokens=cached,
        cache_write_tokens=to_int(pdet.get("cache_write_tokens")),
        reasoning_tokens=to_int(cdet.get("reasoning_tokens")),
        input_audio_tokens=to_int(pdet.get("audio_tokens")),
        input_video_tokens=to_int(pdet.get("video_tokens")),
        output_audio_tokens=to_int(cdet.get("audio_tokens")),
    )


def _tier(body: Mapping[str, Any]) -> str | None:
    """The ``service_tier`` the response says the call was served at ("default", "flex", "priority", …)."""
    tier = body.get("service_tier")
    return tier if isinstance(tier, str) and tier else None


def _finish(reason: str | None, has_tools: bool) -> str | None:
    if reason is None:
        return None
    norm = _FINISH.get(reason, reason)
    # some compatible servers say "stop" even when the turn ends in tool calls
    if norm == "stop" and has_tools:
        return "tool_calls"
    return norm


def parse_response(body: Mapping[str, Any]) -> ParsedResponse:
    """A ``chat.completion`` object -> ParsedResponse (first choice)."""
    if isinstance(body.get("error"), (Mapping, str)):
        raise classify_error(None, dict(body), {})
    choices = body.get("choices") or []
    choice = choices[0] if choices else {}
    msg = choice.get("message") or {}
    content = msg.get("content")
    if isinstance(content, list):  # a few compatible servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    tool_calls = msg.get("tool_calls") or None
    # reasoning beside the answer: DeepSeek and vLLM ``reasoning_content``, OpenRouter ``reasoning``
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    return ParsedResponse(
        text=content or "",
        model=body.get("model"),
        finish_reason=_finish(choice.get("finish_reason"), bool(tool_calls)),
        usage=parse_usage(body.get("usage")),
        tool_calls=tool_calls,
        request_id=body.get("id"),
        service_tier=_tier(body),
        reasoning=reasoning if isinstance(reasoning, str) else "",
    )


class StreamDecoder(StreamState):
    """Decodes ``chat.completion.chunk`` events. Terminal: a chunk with finish_reason, or ``[DONE]``."""

    terminal_name = "a finish_reason chunk or [DONE]"

    def feed(self, event: str | None, data: Mapping[str, Any]) -> list[StreamChunk]:
        # one look-up per field (a stream's events are mostly a single text delta: this runs once per token)
        get = data.get
        if get("__done__"):
            self.done = True
            return []
        if get("error") is not None:
            raise classify_error(None, dict(data), {})
        if self.request_id is None:
            self.request_id = get("id") or None
        model = get("model")
        if model:
            self.model = model
        self.service_tier = _tier(data) or self.service_tier
        before = self.usage
        usage = get("usage")
        if usage:
            self.usage = parse_usage(usage)
        out: list[StreamChunk] = []
        for choice in get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta and len(delta) == 1 and (text := delta.get("content")):  # most deltas: one piece of text
                out.append(self._text_chunk(text))
            elif delta:
                dget = delta.get
                # reasoning text of OpenAI-compatible servers: DeepSeek and vLLM (reasoning_content), OpenRouter
                # (reasoning)
                thinking = dget("reasoning_content") or dget("reasoning")
                if thinking and isinstance(thinking, str):
                    out.append(self._reasoning_chunk(thinking))
                text = dget("content")
                if text:
                    out.append(self._text_chunk(text))
                tools = dget("tool_calls")
                if tools:
                    out.append(self._tool_chunk(tools))
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = _FINISH.get(reason, reason)
                self.done = True
        return self._running(out, before)


def classify_error(status: int | None, body: Any, headers: Mapping[str, str] | None) -> LLMError:
    """``{"error": {"message", "type", "param", "code"}}`` -> the matching LLMError subclass."""
    body = coerce_body(body)
    err: Any = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(err, Mapping):
        message = str(err.get("message") or "")
        etype = err.get("type")
        code = err.get("code")
        inner = err.get("innererror") if isinstance(err.get("innererror"), Mapping) else {}
        inner_code = inner.get("code")
    else:
        # OpenAI-compatible servers: {"error": "..."}, {"message": ...} (vLLM), {"detail": ...}
        if isinstance(err, str):
            message = err
        elif isinstance(body, Mapping):
            message = str(body.get("message") or body.get("detail") or "")
        else:
            message = str(body or "")
        etype = body.get("type") if isinstance(body, Mapping) else None
        code = body.get("code") if isinstance(body, Mapping) else None
        inner_code = None
    http_like = code if isinstance(code, int) and not isinstance(code, bool) else None
    code = code if isinstance(code, str) else None

    cls = class_for_status(status)
    if code == "context_length_exceeded" or etype == "exceed_context_size_error":  # OpenAI; llama.cpp server
        cls = LLMContextWindowExceededError
    elif code in ("content_filter", "content_policy_violation") or inner_code == "ResponsibleAIPolicyViolation":
        cls = LLMContentFilterError  # Azure OpenAI: the body's innererror.content_filter_result names the categories
    elif cls is None:  # no HTTP status: an error chunk inside a 200 stream
        if code == "rate_limit_exceeded" or etype in ("rate_limit_exceeded", "tokens", "requests"):
            cls = LLMRateLimitError
        elif code == "invalid_api_key" or etype == "authentication_error":
            cls = LLMAuthenticationError
        elif etype == "invalid_request_error":
            cls = LLMInvalidRequestError
        elif http_like is not None and http_like >= 400:
            cls = class_for_status(http_like)
        else:
            cls = LLMProviderUnavailableError
    # a compatible server without an error code: message matching is the last resort (see _common)
    cls = context_or(cls, message) if code is None else cls
    return make_error(cls, message, status=status, body=body, headers=headers)
