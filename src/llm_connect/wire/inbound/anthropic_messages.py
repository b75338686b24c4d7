"""Anthropic Messages as the gateway serves it (``POST /v1/messages``): the client's body in, the core's results out.

Pure functions, no I/O. :func:`parse_request` validates a Messages body and translates it to the core contract
(OpenAI-shaped messages and tools, sampling fields); it also keeps the body itself as a
:class:`~llm_connect.types.NativeRequest`, which an Anthropic upstream receives as it is (passthrough).
:func:`message_body` renders an LLMResponse as a ``message`` object, :class:`MessagesStream` renders stream
chunks as Anthropic's SSE events, :func:`error_body` / :func:`error_status` give its error shape.

Translation (for upstreams that do not speak Anthropic Messages):

* ``system`` (a string or text blocks) and a ``role: "system"`` entry inside ``messages`` -> system messages;
* text blocks -> text parts; image blocks (base64 / url) -> ``image_url`` parts; document blocks (base64 /
  text) -> ``file`` / text parts; other blocks are kept as they are (an upstream that cannot read them refuses);
* ``tool_use`` blocks -> assistant ``tool_calls``; ``tool_result`` blocks -> ``tool`` messages (``is_error``:
  the text starts with ``Error: ``; images in a result follow in a user message);
* ``thinking`` / ``redacted_thinking`` blocks in the history are dropped;
* tools (``input_schema``) -> function tools; ``tool_choice`` auto / any / tool / none -> auto / required /
  the function / none; ``stop_sequences`` -> ``stop``; ``thinking: {type: enabled, budget_tokens}`` ->
  ``reasoning_effort`` (see :func:`effort_for_budget`); ``metadata.user_id`` -> the call's metadata;
* fields without an equivalent are dropped: ``top_k``, ``thinking`` of type adaptive / disabled,
  ``tool_choice.disable_parallel_tool_use``, ``cache_control``, ``service_tier``, ``container``,
  ``context_management``, ``output_config``, ``mcp_servers`` and any field Anthropic adds later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ...types import LLMResponse, NativeRequest, StreamChunk, Usage
from .._common import dumps, loads_arguments

__all__ = [
    "ENDPOINT",
    "GATEWAY_FIELDS",
    "WIRE",
    "InvalidRequest",
    "MessagesRequest",
    "MessagesStream",
    "effort_for_budget",
    "error_body",
    "error_status",
    "message_body",
    "parse_request",
    "stop_reason",
    "usage_body",
]

#: the wire module (``llm_connect.wire.<name>``) whose adapters receive the client's body as it is
WIRE = "anthropic_messages"
ENDPOINT = "/v1/messages"
#: the gateway's own body fields (as on every call endpoint); never forwarded to an upstream
GATEWAY_FIELDS = frozenset({"tenant_id", "agent", "thread_id", "task_type", "timeout"})

_ROLES = ("user", "assistant", "system")
_THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
_MAX_STR = 256


class InvalidRequest(Exception):
    """A body Anthropic would refuse: ``param`` names the field (answered 400 invalid_request_error)."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param}: {problem}")
        self.param = param
        self.message = f"{param}: {problem}"


@dataclass(slots=True)
class MessagesRequest:
    """A validated Messages request: the core's fields, and the body for passthrough."""

    messages: list[dict[str, Any]]
    model: str
    native: NativeRequest
    max_tokens: int | None = None
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    reasoning_effort: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: the gateway's extension fields found in the body (tenant_id, agent, ...)
    extensions: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# request


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _int(body: Mapping[str, Any], key: str, minimum: int) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidRequest(key, f"Input should be a valid integer, got {v!r}")
    if v < minimum or v > 2**63 - 1:
        raise InvalidRequest(key, f"must be at least {minimum}, got {v}")
    return v


def _num(body: Mapping[str, Any], key: str) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise InvalidRequest(key, f"Input should be a valid number, got {v!r}")
    if not 0 <= v <= 1:
        raise InvalidRequest(key, f"must be between 0 and 1, got {v}")
    return float(v)


def _text_of(blocks: Any, param: str) -> str:
    """A string, or the text of a list of text blocks (``system``, a system-role message)."""
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise InvalidRequest(param, f"Input should be a string or a list of text blocks, got {_type_name(blocks)}")
    texts = []
    for i, b in enumerate(blocks):
        if not isinstance(b, Mapping) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise InvalidRequest(f"{param}.{i}", "must be a text block {'type': 'text', 'text': ...}")
        texts.append(b["text"])
    return "\n\n".join(texts)


def _collapse(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and parts[0].get("type") == "text":
        return str(parts[0]["text"])
    return parts


def _image(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    src = block.get("source")
    if not isinstance(src, Mapping):
        raise InvalidRequest(f"{param}.source", "Field required")
    if src.get("type") == "base64":
        return {"type": "image_url", "image_url": {"url": f"data:{src.get('media_type')};base64,{src.get('data')}"}}
    if src.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": src.get("url")}}
    return dict(block)  # a Files API reference: only an Anthropic upstream can read it


def _document(block: Mapping[str, Any]) -> dict[str, Any]:
    src = block.get("source") if isinstance(block.get("source"), Mapping) else {}
    if src.get("type") == "base64":
        data = f"data:{src.get('media_type')};base64,{src.get('data')}"
        return {"type": "file", "file": {"file_data": data, "filename": str(block.get("title") or "document.pdf")}}
    if src.get("type") == "text":
        title = block.get("title")
        return {"type": "text", "text": (f"{title}\n\n" if title else "") + str(src.get("data") or "")}
    return dict(block)


def _user_part(block: Mapping[str, Any], param: str) -> dict[str, Any] | None:
    btype = block["type"]
    if btype == "text":
        if not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{param}.text", "Field required (a string)")
        return {"type": "text", "text": block["text"]}
    if btype == "image":
        return _image(block, param)
    if btype == "document":
        return _document(block)
    if btype in _THINKING_BLOCKS:
        return None
    return dict(block)


def _tool_result(block: Mapping[str, Any], param: str, images: list[dict[str, Any]]) -> dict[str, Any]:
    tid = block.get("tool_use_id")
    if not isinstance(tid, str):
        raise InvalidRequest(f"{param}.tool_use_id", "Field required (a string)")
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                raise InvalidRequest(f"{param}.content.{j}", "must be a content block with a 'type'")
            if part["type"] == "image":
                images.append(_image(part, f"{param}.content.{j}"))
            elif isinstance(part.get("text"), str):
                texts.append(part["text"])
        text = "\n".join(texts)
    else:
        raise InvalidRequest(f"{param}.content", "Input should be a string or a list of content blocks")
    if block.get("is_error") is True:
        text = "Error: " + text
    return {"role": "tool", "tool_call_id": tid, "content": text}


def _tool_use(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
        raise InvalidRequest(param, "a tool_use block needs 'id' and 'name' (strings)")
    args = block.get("input")
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": dumps(args if args is not None else {})},
    }


def _turn(m: Any, param: str, out: list[dict[str, Any]]) -> None:
    if not isinstance(m, Mapping):
        raise InvalidRequest(param, "must be an object with 'role' and 'content'")
    role = m.get("role")
    if role not in _ROLES:
        raise InvalidRequest(f"{param}.role", f"Input should be 'user' or 'assistant', got {role!r}")
    content = m.get("content")
    if role == "system":
        out.append({"role": "system", "content": _text_of(content, f"{param}.content")})
        return
    if isinstance(content, str):
        out.append({"role": role, "content": content})
        return
    if not isinstance(content, list):
        raise InvalidRequest(
            f"{param}.content", f"Input should be a string or a list of blocks, got {_type_name(content)}"
        )
    for j, b in enumerate(content):
        if not isinstance(b, Mapping) or not isinstance(b.get("type"), str):
            raise InvalidRequest(f"{param}.content.{j}", "must be a content block with a 'type'")
    if role == "assistant":
        texts: list[dict[str, Any]] = []
        calls = []
        for j, b in enumerate(content):
            if b["type"] == "text" and isinstance(b.get("text"), str):
                texts.append({"type": "text", "text": b["text"]})
            elif b["type"] == "tool_use":
                calls.append(_tool_use(b, f"{param}.content.{j}"))
            # thinking, redacted_thinking and server-tool blocks have no Chat Completions form: dropped
        msg: dict[str, Any] = {
            "role": "assistant",
            "content": _collapse(texts) if texts else ("" if not calls else None),
        }
        if calls:
            msg["tool_calls"] = calls
        out.append(msg)
        return
    parts: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    for j, b in enumerate(content):
        if b["type"] == "tool_result":
            out.append(_tool_result(b, f"{param}.content.{j}", images))
        else:
            part = _user_part(b, f"{param}.content.{j}")
            if part is not None:
                parts.append(part)
    parts = images + parts
    if parts:
        out.append({"role": "user", "content": _collapse(parts)})


def _tools(v: Any) -> list[dict[str, Any]] | None:
    if v is None:
        return None
    if not isinstance(v, list):
        raise InvalidRequest("tools", "Input should be a list of tools")
    out = []
    for i, t in enumerate(v):
        if not isinstance(t, Mapping):
            raise InvalidRequest(f"tools.{i}", "must be an object")
        if not isinstance(t.get("name"), str) or not t["name"]:
            raise InvalidRequest(f"tools.{i}.name", "Field required (a string)")
        if t.get("type") not in (None, "custom"):  # a server tool (web_search, bash, ...): only Anthropic runs it
            out.append(dict(t))
            continue
        schema = t.get("input_schema")
        if not isinstance(schema, Mapping):
            raise InvalidRequest(f"tools.{i}.input_schema", "Field required (a JSON Schema object)")
        fn: dict[str, Any] = {"name": t["name"], "parameters": dict(schema)}
        if isinstance(t.get("description"), str):
            fn["description"] = t["description"]
        if isinstance(t.get("strict"), bool):
            fn["strict"] = t["strict"]
        out.append({"type": "function", "function": fn})
    return out or None


def _tool_choice(v: Any) -> Any:
    if v is None:
        return None
    if not isinstance(v, Mapping):
        raise InvalidRequest("tool_choice", "Input should be an object like {'type': 'auto'}")
    kind = v.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool":
        if not isinstance(v.get("name"), str):
            raise InvalidRequest("tool_choice.name", "Field required (a string)")
        return {"type": "function", "function": {"name": v["name"]}}
    raise InvalidRequest("tool_choice.type", f"Input should be 'auto', 'any', 'tool' or 'none', got {kind!r}")


def effort_for_budget(budget_tokens: int) -> str:
    """The OpenAI ``reasoning_effort`` of an Anthropic thinking budget: up to 4 096 tokens ``low``, up to
    16 384 ``medium``, above that ``high``."""
    if budget_tokens <= 4096:
        return "low"
    if budget_tokens <= 16384:
        return "medium"
    return "high"


def _thinking(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, Mapping):
        raise InvalidRequest("thinking", "Input should be an object like {'type': 'enabled', 'budget_tokens': N}")
    kind = v.get("type")
    if kind == "enabled":
        budget = _int(v, "budget_tokens", 1024)
        if budget is None:
            raise InvalidRequest("thinking.budget_tokens", "Field required")
        return effort_for_budget(budget)
    if kind in ("disabled", "adaptive"):
        return None
    raise InvalidRequest("thinking.type", f"Input should be 'enabled', 'disabled' or 'adaptive', got {kind!r}")


def _metadata(v: Any) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise InvalidRequest("metadata", "Input should be an object")
    uid = v.get("user_id")
    if uid is None:
        return {}
    if not isinstance(uid, str) or len(uid) > _MAX_STR:
        raise InvalidRequest("metadata.user_id", f"Input should be a string of at most {_MAX_STR} characters")
    return {"user_id": uid}


def parse_request(body: Mapping[str, Any], headers: Mapping[str, str], *, count: bool = False) -> MessagesRequest:
    """Validate a Messages body (``count``: a ``count_tokens`` body, without ``max_tokens``) and translate it.
    ``headers``: the client's (lower-case names); ``anthropic-version`` / ``anthropic-beta`` are kept for
    passthrough. Raises :class:`InvalidRequest` naming the field."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model", "Field required (a string)")
    max_tokens = None
    if not count:
        max_tokens = _int(body, "max_tokens", 1)
        if max_tokens is None:
            raise InvalidRequest("max_tokens", "Field required")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise InvalidRequest("messages", "Field required (a non-empty list of messages)")
    messages: list[dict[str, Any]] = []
    if body.get("system") is not None:
        system = _text_of(body["system"], "system")
        if system:
            messages.append({"role": "system", "content": system})
    for i, m in enumerate(msgs):
        _turn(m, f"messages.{i}", messages)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream", f"Input should be a valid boolean, got {stream!r}")
    stop = body.get("stop_sequences")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise InvalidRequest("stop_sequences", "Input should be a list of strings")
    _int(body, "top_k", 0)  # validated; no Chat Completions equivalent
    native_body = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
    native_headers = {k: headers[k] for k in ("anthropic-version", "anthropic-beta") if headers.get(k)}
    return MessagesRequest(
        messages=messages,
        model=model,
        native=NativeRequest(WIRE, native_body, native_headers),
        max_tokens=max_tokens,
        stream=bool(stream),
        temperature=_num(body, "temperature"),
        top_p=_num(body, "top_p"),
        stop=stop or None,
        tools=_tools(body.get("tools")),
        tool_choice=_tool_choice(body.get("tool_choice")),
        reasoning_effort=_thinking(body.get("thinking")),
        metadata=_metadata(body.get("metadata")),
        extensions={k: body[k] for k in GATEWAY_FIELDS if body.get(k) is not None},
    )


# ---------------------------------------------------------------------------
# response


def usage_body(u: Usage) -> dict[str, int]:
    """Anthropic's usage: ``input_tokens`` EXCLUDES cache reads and writes (the core's includes them)."""
    return {
        "input_tokens": max(0, u.input_tokens - u.cache_read_tokens - u.cache_write_tokens),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    }


def stop_reason(finish: str | None, matched: str | None = None) -> str:
    """The core's finish reason as Anthropic's ``stop_reason`` (``stop_sequence`` when one is known to match)."""
    if matched is not None:
        return "stop_sequence"
    return _STOP.get(finish or "stop", finish or "end_turn")


def _first_choice(raw: Any) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        choices = raw.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            return choices[0]
    return {}


def _matched_stop(resp: LLMResponse, stops: list[str] | None) -> str | None:
    """The stop sequence that ended the answer, where the upstream says (vLLM's ``choices[0].stop_reason``)."""
    if not stops or resp.finish_reason != "stop":
        return None
    reason = _first_choice(resp.raw).get("stop_reason")
    return reason if isinstance(reason, str) and reason in stops else None


def message_body(resp: LLMResponse, msg_id: str, stops: list[str] | None = None) -> dict[str, Any]:
    """A ``message`` object for a translated answer (a passthrough answer is ``resp.raw`` itself)."""
    content: list[dict[str, Any]] = []
    if resp.reasoning:  # whatever the upstream: reasoning_content, Gemini thoughts, Bedrock reasoningContent
        content.append({"type": "thinking", "thinking": resp.reasoning, "signature": ""})
    if resp.text:
        content.append({"type": "text", "text": resp.text})
    for tc in resp.tool_calls or ():
        fn = tc.get("function") or {}
        args = loads_arguments(fn.get("arguments"))
        content.append(
            {
                "type": "tool_use",
                "id": tc.get("id") or "",
                "name": fn.get("name") or "",
                "input": args if isinstance(args, dict) else {"value": args},
            }
        )
    matched = _matched_stop(resp, stops)
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": stop_reason(resp.finish_reason, matched),
        "stop_sequence": matched,
        "usage": usage_body(resp.usage),
    }


# ---------------------------------------------------------------------------
# errors

#: the gateway's statuses as Anthropic's error types
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_status(status: int, code: str | None) -> tuple[int, str]:
    """(status, Anthropic error type) of a gateway error: schema errors (422) are Anthropic's 400; every
    deployment down (``provider_unavailable``) is 529 ``overloaded_error``, which the SDKs and Claude Code
    retry with back-off; other 4xx are ``invalid_request_error``, other 5xx ``api_error``."""
    if status == 422:
        status = 400
    elif code == "provider_unavailable":
        status = 529
    etype = _ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return status, etype


def error_body(etype: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    body: dict[str, Any] = {"type": "error", "error": {"type": etype, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


# ---------------------------------------------------------------------------
# stream


def _event(name: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class _Error(Protocol):
    status: int
    message: str
    code: str | None


class MessagesStream:
    """Anthropic's SSE events for one streamed call (the StreamEncoder of ``server/streaming.py``).

    Translated: ``message_start``, ``ping``, per block ``content_block_start`` / ``content_block_delta``
    (``thinking_delta``, ``text_delta``, ``input_json_delta``) / ``content_block_stop``, ``message_delta``
    (stop reason, cumulative usage), ``message_stop``. Passthrough (the chunks carry ``raw_events``): the
    upstream's events as they came, except ``message_stop``, held until the call is settled and recorded.
    """

    __slots__ = ("_block", "_held", "_index", "_tools", "msg_id", "passthrough", "stops")

    def __init__(self, msg_id: str, stops: list[str] | None = None) -> None:
        self.msg_id = msg_id
        self.stops = stops
        self.passthrough = False
        self._index = -1
        #: the kind of the open block: "thinking", "text", "tool" or None
        self._block: str | None = None
        #: the core's tool-call index -> content block index
        self._tools: dict[int, int] = {}
        self._held = b""

    def open(self, model: str, first: StreamChunk | None) -> bytes:
        if first is not None and first.raw_events is not None:
            self.passthrough = True
            return b""
        so_far = first.usage_so_far if first is not None else None
        usage = usage_body(so_far or Usage())
        msg = {
            "id": self.msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return _event("message_start", {"type": "message_start", "message": msg}) + _event("ping", {"type": "ping"})

    def _raw(self, events: list[tuple[str | None, dict[str, Any]]]) -> bytes:
        out = []
        for name, data in events:
            kind = name or str(data.get("type") or "message")
            if kind == "message_stop":
                self._held = _event(kind, data)
            else:
                out.append(_event(kind, data))
        return b"".join(out)

    def _start(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._stop()
        self._index += 1
        self._block = kind
        start = {"type": "content_block_start", "index": self._index, "content_block": block}
        return out + _event("content_block_start", start)

    def _stop(self) -> bytes:
        if self._block is None:
            return b""
        self._block = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def chunk(self, chunk: StreamChunk) -> bytes:
        if chunk.raw_events is not None:
            return self._raw(chunk.raw_events)
        if self.passthrough:  # its upstream events rode on an earlier chunk
            return b""
        out = b""
        if chunk.reasoning:
            if self._block != "thinking":
                out += self._start("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta(self._index, {"type": "thinking_delta", "thinking": chunk.reasoning})
        if chunk.text:
            if self._block != "text":
                out += self._start("text", {"type": "text", "text": ""})
            out += self._delta(self._index, {"type": "text_delta", "text": chunk.text})
        for d in chunk.tool_calls or ():
            idx = d.get("index", 0)
            fn = d.get("function") or {}
            if idx not in self._tools:
                block = {"type": "tool_use", "id": d.get("id") or "", "name": fn.get("name") or "", "input": {}}
                out += self._start("tool", block)
                self._tools[idx] = self._index
            args = fn.get("arguments")
            if args:
                out += self._delta(self._tools[idx], {"type": "input_json_delta", "partial_json": args})
        return out

    async def close(self, finish: str, usage: Usage, cost: Any) -> bytes:
        if self.passthrough:
            return self._held
        delta = {"stop_reason": stop_reason(finish), "stop_sequence": None}
        end = {"type": "message_delta", "delta": delta, "usage": usage_body(usage)}
        return self._stop() + _event("message_delta", end) + _event("message_stop", {"type": "message_stop"})

    def error(self, err: _Error) -> bytes:
        _, etype = error_status(err.status, err.code)
        return _event("error", error_body(etype, err.message))
