"""Wire shapes of the mock provider server: parse a request, render replies, streams and errors.

Pure functions, no I/O. One section per wire format (OpenAI chat completions, Anthropic Messages,
Gemini generateContent, Ollama /api/chat; Azure OpenAI's differences in :mod:`._azure`, Bedrock Converse in
:mod:`._bedrock`). Usage given to the renderers is in the normalised terms of :class:`llm_connect.types.Usage`
(input counts all input, output counts reasoning) and is translated to each provider's own accounting here.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from . import _azure as A
from . import _bedrock as B
from ._shapes import BadRequest, Parsed, Reply, ToolCall, split_pieces

__all__ = [
    "ERROR_STATUS",
    "FORMATS",
    "ID_MARK",
    "BadRequest",
    "Parsed",
    "Reply",
    "ToolCall",
    "count_input_tokens",
    "default_reply_text",
    "error_object",
    "gemini_key_error",
    "kind_for_status",
    "parse_count_request",
    "parse_request",
    "render_body",
    "render_error",
    "render_stream",
    "split_pieces",
    "stream_error_frame",
    "stream_media_type",
]

FORMATS = ("openai", "anthropic", "gemini", "ollama", "azure", "bedrock")
#: placeholder spliced with a fresh response id per request (lets bodies be cached as bytes)
ID_MARK = "__MOCK_ID__"

# --------------------------------------------------------------------------- request side


def _parts_text(content: Any) -> str:
    """Text of a content value: a string, or a list of parts/blocks with ``text`` (or nested ``content``)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, list):
        out = []
        for p in content:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, dict):
                if isinstance(p.get("text"), str):
                    out.append(p["text"])
                elif "content" in p:
                    out.append(_parts_text(p["content"]))
        return " ".join(t for t in out if t)
    return ""


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _require_messages(body: dict[str, Any], key: str) -> list[Any]:
    msgs = body.get(key)
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest(f"'{key}' is a required property and must be a non-empty array")
    return msgs


def parse_request(fmt: str, body: Any, *, model: str | None = None, sse: bool = True, betas: str = "") -> Parsed:
    """Validate a request body the way the provider would and extract what the mock needs. ``betas``: the
    ``anthropic-beta`` header (``mid-conversation-system-*`` lets an Anthropic request hold system-role messages)."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    if fmt in ("openai", "azure"):  # Azure: the deployment in the path is the model
        return _parse_openai(body, fmt, model)
    if fmt == "anthropic":
        return _parse_anthropic(body, betas, model)  # Claude on Vertex: the model in the path
    if fmt == "gemini":
        return _parse_gemini(body, model or "", sse)
    if fmt == "ollama":
        return _parse_ollama(body)
    if fmt == "bedrock":  # the model id is in the path
        return B.parse_request(body, model or "")
    raise ValueError(f"unknown wire format {fmt!r}")


def _model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter")
    return model


def _parse_openai(body: dict[str, Any], fmt: str = "openai", model: str | None = None) -> Parsed:
    model = model or _model_of(body)
    msgs = _require_messages(body, "messages")
    stream = body.get("stream") is True
    opts = body.get("stream_options")
    if opts is not None and not stream:
        raise BadRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.")
    mt = _int_or_none(body.get("max_completion_tokens"))
    if mt is None:
        mt = _int_or_none(body.get("max_tokens"))
    messages = [(str(m.get("role", "")), _parts_text(m.get("content"))) for m in msgs if isinstance(m, dict)]
    tier = body.get("service_tier")
    return Parsed(
        fmt,
        model,
        stream=stream,
        include_usage=bool(isinstance(opts, dict) and opts.get("include_usage")),
        max_tokens=mt,
        messages=messages,
        service_tier=tier if isinstance(tier, str) else None,
    )


def _parse_anthropic(body: dict[str, Any], betas: str = "", model: str | None = None) -> Parsed:
    model = model or _model_of(body)
    roles = ("user", "assistant", "system") if "mid-conversation-system-" in betas else ("user", "assistant")
    if _int_or_none(body.get("max_tokens")) is None:
        raise BadRequest("max_tokens: Field required")
    msgs = _require_messages(body, "messages")
    messages: list[tuple[str, str]] = []
    if body.get("system"):
        messages.append(("system", _parts_text(body["system"])))
    for i, m in enumerate(msgs):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in roles:
            raise BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        messages.append((role, _parts_text(m.get("content"))))
    return Parsed(
        "anthropic", model, stream=body.get("stream") is True, max_tokens=body["max_tokens"], messages=messages
    )


def _parse_gemini(body: dict[str, Any], model: str, sse: bool) -> Parsed:
    contents = _require_messages(body, "contents")
    messages: list[tuple[str, str]] = []
    si = body.get("systemInstruction") or body.get("system_instruction")
    if isinstance(si, dict):
        messages.append(("system", _parts_text(si.get("parts"))))
    for m in contents:
        role = m.get("role", "user") if isinstance(m, dict) else None
        if role not in ("user", "model"):
            raise BadRequest("Please use a valid role: user, model.")
        messages.append(("user" if role == "user" else "assistant", _parts_text(m.get("parts"))))
    gc = body.get("generationConfig") or body.get("generation_config") or {}
    mt = _int_or_none(gc.get("maxOutputTokens", gc.get("max_output_tokens"))) if isinstance(gc, dict) else None
    return Parsed("gemini", model, max_tokens=mt, messages=messages, sse=sse)


def _parse_ollama(body: dict[str, Any]) -> Parsed:
    model = _model_of(body)
    msgs = _require_messages(body, "messages")
    opts = body.get("options") if isinstance(body.get("options"), dict) else {}
    mt = _int_or_none(opts.get("num_predict"))
    messages = [(str(m.get("role", "")), _parts_text(m.get("content"))) for m in msgs if isinstance(m, dict)]
    # Ollama streams unless told ``"stream": false``
    return Parsed("ollama", model, stream=body.get("stream", True) is not False, max_tokens=mt, messages=messages)


def parse_count_request(fmt: str, body: Any, *, model: str = "", betas: str = "") -> Parsed:
    """A count-tokens request: Anthropic ``/v1/messages/count_tokens`` (a Messages body without
    ``max_tokens``) or Gemini ``:countTokens`` (``contents``, or a whole ``generateContentRequest``)."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    if fmt == "anthropic":
        return _parse_anthropic({**body, "max_tokens": 1}, betas)
    inner = body.get("generateContentRequest")
    return _parse_gemini(inner if isinstance(inner, dict) else body, model, sse=False)


def count_input_tokens(parsed: Parsed) -> int:
    """The mock's deterministic prompt size: whitespace words of every message plus one per message."""
    return sum(len(text.split()) + 1 for _, text in parsed.messages)


def default_reply_text(parsed: Parsed, max_words: int = 10) -> str:
    words = parsed.last_user.split()
    if not words:
        return "mock reply"
    tail = " ..." if len(words) > max_words else ""
    return "mock reply to: " + " ".join(words[:max_words]) + tail


# --------------------------------------------------------------------------- finish reasons

_FINISH = {
    "openai": {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"},
    "anthropic": {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"},
    "gemini": {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"},
    "ollama": {"stop": "stop", "length": "length", "tool_calls": "stop", "content_filter": "stop"},
}
_FINISH["azure"] = _FINISH["openai"]


def _finish(fmt: str, finish: str) -> str:
    return _FINISH[fmt].get(finish, finish)


# --------------------------------------------------------------------------- responses


def render_body(fmt: str, reply: Reply, created: int) -> dict[str, Any]:
    """The non-streaming response body. Its id is :data:`ID_MARK` (spliced per request)."""
    return _BODY[fmt](reply, created)


def _openai_usage(r: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": r.input_tokens,
        "completion_tokens": r.output_tokens,
        "total_tokens": r.input_tokens + r.output_tokens,
        "prompt_tokens_details": {"cached_tokens": r.cache_read_tokens, "audio_tokens": r.input_audio_tokens},
        "completion_tokens_details": {
            "reasoning_tokens": r.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _openai_tool_calls(r: Reply) -> list[dict[str, Any]]:
    return [
        {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}} for t in r.tool_calls
    ]


def _openai_body(r: Reply, created: int) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": r.text or None, "refusal": None, "annotations": []}
    if r.thinking:
        msg["reasoning_content"] = r.thinking
    if r.tool_calls:
        msg["tool_calls"] = _openai_tool_calls(r)
    return {
        "id": ID_MARK,
        "object": "chat.completion",
        "created": created,
        "model": r.model,
        "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": _finish("openai", r.finish)}],
        "usage": _openai_usage(r),
        "service_tier": r.service_tier or "default",
        "system_fingerprint": "fp_mock",
        **r.extra_fields,
    }


def _anthropic_usage(r: Reply) -> dict[str, Any]:
    uncached = max(0, r.input_tokens - r.cache_read_tokens - r.cache_write_tokens)
    return {
        "input_tokens": uncached,
        "cache_creation_input_tokens": r.cache_write_tokens,
        "cache_read_input_tokens": r.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": max(0, r.cache_write_tokens - r.cache_write_1h_tokens),
            "ephemeral_1h_input_tokens": r.cache_write_1h_tokens,
        },
        "output_tokens": r.output_tokens,
        "service_tier": r.service_tier or "standard",
    }


def _signature(r: Reply) -> str:
    """An opaque signature of a thinking block (Anthropic's is encrypted; the mock's is a digest)."""
    import hashlib

    return "sig-" + hashlib.sha256(r.thinking.encode()).hexdigest()[:32]


def _anthropic_body(r: Reply, created: int) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if r.thinking:
        content.append({"type": "thinking", "thinking": r.thinking, "signature": _signature(r)})
    if r.text:
        content.append({"type": "text", "text": r.text})
    content.extend({"type": "tool_use", "id": t.id, "name": t.name, "input": t.args} for t in r.tool_calls)
    return {
        "id": ID_MARK,
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": content,
        "stop_reason": _finish("anthropic", r.finish),
        "stop_sequence": None,
        "usage": _anthropic_usage(r),
    }


def _gemini_usage(r: Reply, final: bool = True) -> dict[str, Any]:
    u: dict[str, Any] = {"promptTokenCount": r.input_tokens}
    if final:
        u["candidatesTokenCount"] = r.output_tokens - r.reasoning_tokens
    u["totalTokenCount"] = r.input_tokens + (r.output_tokens if final else 0)
    if r.cache_read_tokens:
        u["cachedContentTokenCount"] = r.cache_read_tokens
    u["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": r.input_tokens - r.input_audio_tokens}]
    if r.input_audio_tokens:
        u["promptTokensDetails"].append({"modality": "AUDIO", "tokenCount": r.input_audio_tokens})
    if final and r.reasoning_tokens:
        u["thoughtsTokenCount"] = r.reasoning_tokens
    return u


def _gemini_candidate(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish is not None:
        cand["finishReason"] = finish
    cand["index"] = 0
    return cand


def _gemini_body(r: Reply, created: int) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": r.thinking, "thought": True}] if r.thinking else []
    if r.text:
        parts.append({"text": r.text})
    parts.extend({"functionCall": {"name": t.name, "args": t.args}} for t in r.tool_calls)
    return {
        "candidates": [_gemini_candidate(parts, _finish("gemini", r.finish))],
        "usageMetadata": _gemini_usage(r),
        "modelVersion": r.model,
        "responseId": ID_MARK,
    }


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + ".000000Z"


def _ollama_final(r: Reply, created: int, content: str) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if r.tool_calls:
        msg["tool_calls"] = [{"function": {"name": t.name, "arguments": t.args}} for t in r.tool_calls]
    return {
        "model": r.model,
        "created_at": _iso(created),
        "message": msg,
        "done_reason": _finish("ollama", r.finish),
        "done": True,
        "total_duration": 1_000_000 + 100_000 * r.output_tokens,
        "load_duration": 100_000,
        "prompt_eval_count": r.input_tokens,
        "prompt_eval_duration": 10_000 * r.input_tokens,
        "eval_count": r.output_tokens,
        "eval_duration": 100_000 * r.output_tokens,
    }


def _ollama_body(r: Reply, created: int) -> dict[str, Any]:
    return _ollama_final(r, created, r.text)


def _azure_body(r: Reply, created: int) -> dict[str, Any]:
    return A.decorate_body(_openai_body(r, created))


_BODY = {
    "openai": _openai_body,
    "anthropic": _anthropic_body,
    "gemini": _gemini_body,
    "ollama": _ollama_body,
    "azure": _azure_body,
    "bedrock": B.render_body,
}


# --------------------------------------------------------------------------- streams


def stream_media_type(fmt: str, sse: bool = True) -> str:
    if fmt == "bedrock":
        return B.MEDIA_TYPE
    if fmt == "ollama":
        return "application/x-ndjson"
    if fmt == "gemini" and not sse:
        return "application/json"
    return "text/event-stream; charset=utf-8"


def _data(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _event(name: str, obj: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def render_stream(fmt: str, reply: Reply, rid: str, created: int, parsed: Parsed) -> tuple[list[bytes], int]:
    """Every frame of a streamed reply, and how many trailing frames are the terminal ones."""
    return _STREAM[fmt](reply, rid, created, parsed)


def _openai_stream(r: Reply, rid: str, created: int, p: Parsed) -> tuple[list[bytes], int]:
    base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": r.model}
    base["service_tier"] = r.service_tier or "default"
    base["system_fingerprint"] = "fp_mock"
    base.update(r.extra_fields)
    usage_null = {"usage": None} if p.include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _data({**base, "choices": [choice], **usage_null})

    frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
    frames.extend(chunk({"reasoning_content": piece}) for piece in split_pieces(r.thinking))
    frames.extend(chunk({"content": piece}) for piece in r.pieces)
    for i, t in enumerate(r.tool_calls):
        head = {"index": i, "id": t.id, "type": "function", "function": {"name": t.name, "arguments": ""}}
        frames.append(chunk({"tool_calls": [head]}))
        for part in _halves(t.arguments):
            frames.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]}))
    frames.append(chunk({}, _finish("openai", r.finish)))
    tail = 2
    if p.include_usage:
        frames.append(_data({**base, "choices": [], "usage": _openai_usage(r)}))
        tail += 1
    frames.append(b"data: [DONE]\n\n")
    return frames, tail


def _halves(s: str) -> list[str]:
    if len(s) < 2:
        return [s]
    mid = len(s) // 2
    return [s[:mid], s[mid:]]


def _anthropic_stream(r: Reply, rid: str, created: int, p: Parsed) -> tuple[list[bytes], int]:
    usage = _anthropic_usage(r)
    start_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
    start_usage["cache_creation"] = usage["cache_creation"]
    start_usage["output_tokens"] = 1
    start_usage["service_tier"] = usage["service_tier"]
    msg = {
        "id": rid,
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    frames = [_event("message_start", {"type": "message_start", "message": msg})]
    index = 0
    if r.thinking:
        block = {"type": "thinking", "thinking": "", "signature": ""}
        frames.append(
            _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
        )
        for piece in split_pieces(r.thinking):
            delta = {"type": "thinking_delta", "thinking": piece}
            frames.append(_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
        delta = {"type": "signature_delta", "signature": _signature(r)}
        frames.append(_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
        index = 1
    if r.pieces or not (r.tool_calls or r.thinking):
        if index:
            frames.append(_event("content_block_stop", {"type": "content_block_stop", "index": index - 1}))
        block = {"type": "text", "text": ""}
        frames.append(
            _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        )
        frames.append(_event("ping", {"type": "ping"}))
        for piece in r.pieces:
            delta = {"type": "text_delta", "text": piece}
            frames.append(
                _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            )
        index += 1
    for t in r.tool_calls:
        if index:
            frames.append(_event("content_block_stop", {"type": "content_block_stop", "index": index - 1}))
        block = {"type": "tool_use", "id": t.id, "name": t.name, "input": {}}
        frames.append(
            _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        )
        for part in _halves(t.arguments):
            delta = {"type": "input_json_delta", "partial_json": part}
            frames.append(
                _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            )
        index += 1
    frames.append(_event("content_block_stop", {"type": "content_block_stop", "index": index - 1}))
    end_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
    end_usage["output_tokens"] = r.output_tokens
    delta = {"stop_reason": _finish("anthropic", r.finish), "stop_sequence": None}
    frames.append(_event("message_delta", {"type": "message_delta", "delta": delta, "usage": end_usage}))
    frames.append(_event("message_stop", {"type": "message_stop"}))
    return frames, 3


def _gemini_stream(r: Reply, rid: str, created: int, p: Parsed) -> tuple[list[bytes], int]:
    objs: list[dict[str, Any]] = []
    parts_list: list[list[dict[str, Any]]] = [[{"text": piece, "thought": True}] for piece in split_pieces(r.thinking)]
    parts_list.extend([{"text": piece}] for piece in r.pieces)
    if r.tool_calls:
        parts_list.append([{"functionCall": {"name": t.name, "args": t.args}} for t in r.tool_calls])
    if not parts_list:
        parts_list = [[{"text": ""}]]
    last = len(parts_list) - 1
    for i, parts in enumerate(parts_list):
        final = i == last
        finish = _finish("gemini", r.finish) if final else None
        objs.append(
            {
                "candidates": [_gemini_candidate(parts, finish)],
                "usageMetadata": _gemini_usage(r, final=final),
                "modelVersion": r.model,
                "responseId": rid,
            }
        )
    if p.sse:
        return [b"data: " + orjson.dumps(o) + b"\r\n\r\n" for o in objs], 1
    # without alt=sse the stream is one JSON array, written element by element
    frames = [(b"[" if i == 0 else b",\r\n") + orjson.dumps(o) for i, o in enumerate(objs)]
    frames.append(b"]")
    return frames, 2


def _ollama_stream(r: Reply, rid: str, created: int, p: Parsed) -> tuple[list[bytes], int]:
    stamp = _iso(created)
    frames = [
        orjson.dumps(
            {"model": r.model, "created_at": stamp, "message": {"role": "assistant", "content": piece}, "done": False}
        )
        + b"\n"
        for piece in r.pieces
    ]
    frames.append(orjson.dumps(_ollama_final(r, created, "")) + b"\n")
    return frames, 1


def _azure_stream(r: Reply, rid: str, created: int, p: Parsed) -> tuple[list[bytes], int]:
    frames, tail = _openai_stream(r, rid, created, p)
    return [A.first_stream_frame(rid, created), *frames], tail


_STREAM = {
    "openai": _openai_stream,
    "anthropic": _anthropic_stream,
    "gemini": _gemini_stream,
    "ollama": _ollama_stream,
    "azure": _azure_stream,
    "bedrock": B.render_stream,
}


# --------------------------------------------------------------------------- errors

#: generic error kind -> default HTTP status
ERROR_STATUS = {
    "bad_request": 400,
    "context_length": 400,
    "auth": 401,
    "permission": 403,
    "not_found": 404,
    "too_large": 413,
    "rate_limit": 429,
    "server": 500,
    "unavailable": 503,
    "timeout": 504,
    "overloaded": 529,
}
_STATUS_KIND = {
    400: "bad_request",
    401: "auth",
    403: "permission",
    404: "not_found",
    413: "too_large",
    429: "rate_limit",
    500: "server",
    502: "server",
    503: "unavailable",
    504: "timeout",
    529: "overloaded",
}

_ANTHROPIC_TYPE = {
    "bad_request": "invalid_request_error",
    "context_length": "invalid_request_error",
    "auth": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "server": "api_error",
    "unavailable": "api_error",
    "timeout": "timeout_error",
    "overloaded": "overloaded_error",
}
_GEMINI_STATUS = {
    "bad_request": "INVALID_ARGUMENT",
    "context_length": "INVALID_ARGUMENT",
    "auth": "UNAUTHENTICATED",
    "permission": "PERMISSION_DENIED",
    "not_found": "NOT_FOUND",
    "too_large": "INVALID_ARGUMENT",
    "rate_limit": "RESOURCE_EXHAUSTED",
    "server": "INTERNAL",
    "unavailable": "UNAVAILABLE",
    "timeout": "DEADLINE_EXCEEDED",
    "overloaded": "UNAVAILABLE",
}
#: OpenAI (type, code) per kind
_OPENAI_TYPE = {
    "bad_request": ("invalid_request_error", None),
    "context_length": ("invalid_request_error", "context_length_exceeded"),
    "auth": ("invalid_request_error", "invalid_api_key"),
    "permission": ("invalid_request_error", "unsupported_country_region_territory"),
    "not_found": ("invalid_request_error", "model_not_found"),
    "too_large": ("invalid_request_error", None),
    "rate_limit": ("requests", "rate_limit_exceeded"),
    "server": ("server_error", None),
    "unavailable": ("server_error", None),
    "timeout": ("server_error", None),
    "overloaded": ("server_error", None),
}


def kind_for_status(status: int) -> str:
    if status in _STATUS_KIND:
        return _STATUS_KIND[status]
    return "server" if status >= 500 else "bad_request"


def _default_message(fmt: str, kind: str, model: str, input_tokens: int) -> str:
    if kind == "context_length":
        n = max(input_tokens, 1_000_001)
        if fmt == "anthropic":
            return f"prompt is too long: {n} tokens > 200000 maximum"
        if fmt == "gemini":
            return f"The input token count ({n}) exceeds the maximum number of tokens allowed (1048576)."
        return (
            f"This model's maximum context length is 128000 tokens. However, your messages resulted in {n} tokens. "
            "Please reduce the length of the messages."
        )
    if kind == "rate_limit":
        if fmt == "anthropic":
            return "This request would exceed the rate limit for your organization of 50 requests per minute."
        if fmt == "gemini":
            return "Resource has been exhausted (e.g. check quota)."
        return f"Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, Requested 1."
    if kind == "auth":
        if fmt == "anthropic":
            return "invalid x-api-key"
        if fmt == "ollama":
            return "unauthorized"
        if fmt == "gemini":
            return "Request had invalid authentication credentials."
        return "Incorrect API key provided. You can find your API key in your account settings."
    if kind == "not_found":
        if fmt == "anthropic":
            return f"model: {model}"
        if fmt == "gemini":
            return f"models/{model} is not found for API version v1beta."
        if fmt == "ollama":
            return f"model '{model}' not found"
        return f"The model `{model}` does not exist or you do not have access to it."
    if kind == "overloaded":
        return "Overloaded" if fmt == "anthropic" else "The model is overloaded. Please try again later."
    if kind in ("server", "unavailable", "timeout"):
        return "The server had an error while processing your request. Sorry about that!"
    return "Invalid request."


def error_object(
    fmt: str,
    status: int,
    *,
    kind: str | None = None,
    error_type: str | None = None,
    message: str | None = None,
    code: str | None = None,
    model: str = "",
    input_tokens: int = 0,
    request_id: str = "",
    retry_after: float | None = None,
) -> dict[str, Any]:
    """The provider's own error body as a dict (``error_type`` overrides the type / canonical status)."""
    kind = kind or kind_for_status(status)
    if fmt == "bedrock":
        return B.error_object(status, kind=kind, error_type=error_type, message=message)
    msg = message or _default_message(fmt, kind, model, input_tokens)
    if fmt == "anthropic":
        err = {"type": error_type or _ANTHROPIC_TYPE.get(kind, "api_error"), "message": msg}
        return {"type": "error", "error": err, "request_id": request_id}
    if fmt in ("gemini", "vertex"):  # vertex: the embedding path, google.rpc errors as every Google API
        gerr: dict[str, Any] = {
            "code": status,
            "message": msg,
            "status": error_type or _GEMINI_STATUS.get(kind, "UNKNOWN"),
        }
        if retry_after is not None:
            delay = f"{retry_after:g}s"
            gerr["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
        return {"error": gerr}
    if fmt == "ollama":
        return {"error": msg}
    etype, ecode = _OPENAI_TYPE.get(kind, ("invalid_request_error", None))
    param = "messages" if kind == "context_length" else None
    obj = {"error": {"message": msg, "type": error_type or etype, "param": param, "code": code or ecode}}
    return A.error_object(status, kind, code, obj, retry_after) if fmt == "azure" else obj


def render_error(fmt: str, status: int, **kw: Any) -> bytes:
    return orjson.dumps(error_object(fmt, status, **kw))


def gemini_key_error(missing: bool) -> tuple[int, bytes]:
    """What Gemini really answers for a missing (403) or wrong (400 API_KEY_INVALID) API key."""
    if missing:
        msg = (
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API."
        )
        return 403, orjson.dumps({"error": {"code": 403, "message": msg, "status": "PERMISSION_DENIED"}})
    msg = "API key not valid. Please pass a valid API key."
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
    ]
    return 400, orjson.dumps({"error": {"code": 400, "message": msg, "status": "INVALID_ARGUMENT", "details": details}})


def stream_error_frame(fmt: str, status: int, **kw: Any) -> bytes:
    """An error delivered inside an already started stream, the way each provider does it."""
    if fmt == "bedrock":
        kind = kw.get("kind") or kind_for_status(status)
        return B.stream_error_frame(status, kind=kind, error_type=kw.get("error_type"), message=kw.get("message"))
    obj = error_object(fmt, status, **kw)
    if fmt == "anthropic":
        obj.pop("request_id", None)
        return _event("error", obj)
    if fmt == "ollama":
        return orjson.dumps(obj) + b"\n"
    if fmt == "gemini":
        return b"data: " + orjson.dumps(obj) + b"\r\n\r\n"
    return _data(obj)
