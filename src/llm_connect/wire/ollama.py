"""Ollama native chat wire format: ``POST {api_base}/api/chat``, streamed as NDJSON.

Tool-call arguments are JSON objects on this wire (not strings); they are converted both ways.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import LLMError, LLMProviderUnavailableError
from ..types import Message, RunConfig, StreamChunk, Usage
from . import ParsedResponse, WireRequest
from ._common import (
    StreamState,
    class_for_status,
    coerce_body,
    context_or,
    dumps,
    image_url_of,
    loads_arguments,
    make_error,
    merge_extra_body,
    parse_data_url,
    sampling,
    to_int,
    tool_call,
)

__all__ = ["FRAMING", "StreamDecoder", "build_request", "classify_error", "parse_response", "parse_usage"]

FRAMING = "ndjson"

_DONE = {"stop": "stop", "length": "length"}


# ---------------------------------------------------------------------------
# request


def _message(m: Message, names: Mapping[str, str]) -> dict[str, Any]:
    role = "system" if m.role == "developer" else m.role
    out: dict[str, Any] = {"role": role, "content": m.text}
    if isinstance(m.content, list):
        images = []
        for part in m.content:
            if part.get("type") == "image_url":
                data = parse_data_url(image_url_of(part) or "")
                if data is not None:  # Ollama takes base64 images only, no URLs
                    images.append(data[1])
        if images:
            out["images"] = images
    if m.tool_calls:
        out["tool_calls"] = [
            {
                "function": {
                    "name": (tc.get("function") or {}).get("name"),
                    "arguments": loads_arguments((tc.get("function") or {}).get("arguments")),
                }
            }
            for tc in m.tool_calls
        ]
    if role == "tool":
        name = names.get(m.tool_call_id or "") or m.name
        if name:
            out["tool_name"] = name
    return out


def build_request(
    model: str,
    messages: list[Message],
    config: RunConfig,
    *,
    stream: bool,
    max_tokens: int | None,
) -> WireRequest:
    """The /api/chat request. ``tool_choice`` has no Ollama equivalent and is not sent."""
    names: dict[str, str] = {}
    wire_messages = []
    for m in messages:
        for tc in m.tool_calls or ():
            if tc.get("id"):
                names[tc["id"]] = (tc.get("function") or {}).get("name", "")
        wire_messages.append(_message(m, names))
    body: dict[str, Any] = {"model": model, "messages": wire_messages, "stream": stream}
    options = sampling(config, max_tokens, max_tokens_key="num_predict")
    if options:
        body["options"] = options
    rf = config.effective_response_format
    if rf is not None:
        schema = (rf.get("json_schema") or {}).get("schema") if rf.get("type") == "json_schema" else None
        if schema is not None:
            body["format"] = schema
        elif rf.get("type") in ("json_object", "json_schema"):
            body["format"] = "json"
    if config.tools:
        body["tools"] = config.tools
    merge_extra_body(body, config)
    return WireRequest(path="/api/chat", body=body)


# ---------------------------------------------------------------------------
# response


def parse_usage(raw: Mapping[str, Any] | None) -> Usage:
    """``prompt_eval_count`` / ``eval_count`` from the final (done) object."""
    if not raw:
        return Usage()
    return Usage(input_tokens=to_int(raw.get("prompt_eval_count")), output_tokens=to_int(raw.get("eval_count")))


def _tool_calls(raw: list[Mapping[str, Any]] | None, first_index: int) -> list[dict[str, Any]]:
    calls = []
    for i, tc in enumerate(raw or ()):
        fn = tc.get("function") or {}
        args = fn.get("arguments")
        arguments = args if isinstance(args, str) else dumps(args or {})
        calls.append(tool_call(tc.get("id") or f"call_{first_index + i}", fn.get("name", ""), arguments))
    return calls


def _done_reason(reason: str | None, has_tools: bool) -> str:
    norm = _DONE.get(reason or "stop", "stop")
    return "tool_calls" if norm == "stop" and has_tools else norm


def parse_response(body: Mapping[str, Any]) -> ParsedResponse:
    """A non-streamed /api/chat object -> ParsedResponse (``message.thinking`` is its ``reasoning``, not part of
    the text)."""
    if body.get("error"):
        raise classify_error(None, dict(body), {})
    msg = body.get("message") or {}
    calls = _tool_calls(msg.get("tool_calls"), 0)
    return ParsedResponse(
        text=msg.get("content") or "",
        model=body.get("model"),
        finish_reason=_done_reason(body.get("done_reason"), bool(calls)),
        usage=parse_usage(body),
        tool_calls=calls or None,
        request_id=None,  # Ollama responses carry no id
        reasoning=thinking if isinstance(thinking := msg.get("thinking"), str) else "",
    )


class StreamDecoder(StreamState):
    """Decodes NDJSON lines. Terminal: a line with ``"done": true`` (it carries the counts)."""

    terminal_name = 'a line with "done": true'

    def __init__(self) -> None:
        super().__init__()
        self._n_calls = 0

    def feed(self, event: str | None, data: Mapping[str, Any]) -> list[StreamChunk]:
        if data.get("error"):
            raise classify_error(None, dict(data), {})
        self.model = data.get("model") or self.model
        msg = data.get("message") or {}
        out: list[StreamChunk] = []
        thinking = msg.get("thinking")
        if thinking and isinstance(thinking, str):
            out.append(self._reasoning_chunk(thinking))
        text = msg.get("content")
        if text:
            out.append(self._text_chunk(text))
        calls = _tool_calls(msg.get("tool_calls"), self._n_calls)
        if calls:
            deltas = [{"index": self._n_calls + i, **c} for i, c in enumerate(calls)]
            self._n_calls += len(calls)
            out.append(self._tool_chunk(deltas))
        if data.get("done"):
            self.usage = parse_usage(data)
            self.finish_reason = _done_reason(data.get("done_reason"), False)
            self.done = True
        return out


# ---------------------------------------------------------------------------
# errors


def classify_error(status: int | None, body: Any, headers: Mapping[str, str] | None) -> LLMError:
    """``{"error": "message"}`` -> the LLMError its HTTP status implies (no status: mid-stream failure)."""
    body = coerce_body(body)
    err = body.get("error") if isinstance(body, Mapping) else body
    if isinstance(err, Mapping):
        err = err.get("message")
    message = str(err or "")
    cls = class_for_status(status) or LLMProviderUnavailableError
    # Ollama errors are plain text without a code: context overflow is matched on the text, last resort
    cls = context_or(cls, message)
    return make_error(cls, message, status=status, body=body, headers=headers)
