"""Gemini API wire format: ``POST {api_base}/v1beta/models/{model}:generateContent``.

Streaming uses ``:streamGenerateContent`` with query ``alt=sse``: each SSE event is a full
GenerateContentResponse; the last one has ``finishReason`` and the final ``usageMetadata``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import (
    LLMAuthenticationError,
    LLMContentFilterError,
    LLMError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    LLMTimeoutError,
)
from ..types import Message, RunConfig, StreamChunk, Usage
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
    parse_duration,
    sampling,
    to_int,
    tool_call,
    try_json,
)

__all__ = [
    "FRAMING",
    "StreamDecoder",
    "build_count_request",
    "build_request",
    "classify_error",
    "parse_count_response",
    "parse_response",
    "parse_usage",
]

FRAMING = "sse"

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}
#: finish reasons that mean the safety system withheld the answer
_BLOCKED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)

#: google.rpc status names -> error class (used when the HTTP status alone is not decisive)
_STATUS: dict[str, type[LLMError]] = {
    "INVALID_ARGUMENT": LLMInvalidRequestError,
    "FAILED_PRECONDITION": LLMInvalidRequestError,
    "NOT_FOUND": LLMInvalidRequestError,
    "OUT_OF_RANGE": LLMInvalidRequestError,
    "UNAUTHENTICATED": LLMAuthenticationError,
    "PERMISSION_DENIED": LLMAuthenticationError,
    "RESOURCE_EXHAUSTED": LLMRateLimitError,
    "DEADLINE_EXCEEDED": LLMTimeoutError,
    "INTERNAL": LLMProviderUnavailableError,
    "UNAVAILABLE": LLMProviderUnavailableError,
    "CANCELLED": LLMProviderUnavailableError,
    "UNKNOWN": LLMProviderUnavailableError,
}

_TOOL_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
#: where a Gemini thought signature rides on an OpenAI-shaped tool call (as Google's own compat layer does)
_SIG_KEY = "extra_content"


# ---------------------------------------------------------------------------
# request


def _parts(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    out: list[dict[str, Any]] = []
    for part in content:
        ptype = part.get("type")
        if ptype == "text":
            out.append({"text": part.get("text", "")})
        elif ptype == "image_url":
            url = image_url_of(part) or ""
            data = parse_data_url(url)
            if data is not None:
                out.append({"inlineData": {"mimeType": data[0], "data": data[1]}})
            else:
                out.append({"fileData": {"fileUri": url}})
        elif ptype is None:  # already a Gemini part (inlineData, fileData, …)
            out.append(dict(part))
    return out


def _function_call_part(tc: Mapping[str, Any]) -> dict[str, Any]:
    fn = tc.get("function") or {}
    part: dict[str, Any] = {"functionCall": {"name": fn.get("name"), "args": loads_arguments(fn.get("arguments"))}}
    sig = ((tc.get(_SIG_KEY) or {}).get("google") or {}).get("thought_signature")
    if sig:
        part["thoughtSignature"] = sig
    return part


def _function_response(m: Message, name: str | None) -> dict[str, Any]:
    parsed = try_json(m.text)
    response = parsed if isinstance(parsed, dict) else {"result": parsed}
    return {"functionResponse": {"name": name or m.name or "", "response": response}}


def _contents(messages: list[Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call id -> name, from the nearest earlier assistant turn

    def push(role: str, parts: list[dict[str, Any]]) -> None:
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        elif parts:
            contents.append({"role": role, "parts": parts})

    for m in messages:
        if m.role in ("system", "developer"):
            system.extend(_parts(m.content))
        elif m.role == "assistant":
            for tc in m.tool_calls or ():
                if tc.get("id"):
                    names[tc["id"]] = (tc.get("function") or {}).get("name", "")
            parts = [p for p in _parts(m.content) if p.get("text") != ""]
            push("model", parts + [_function_call_part(tc) for tc in m.tool_calls or ()])
        elif m.role == "tool":
            push("user", [_function_response(m, names.get(m.tool_call_id or ""))])
        else:
            push("user", _parts(m.content))
    return system, contents


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    decls: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    for tool in tools:
        fn = openai_tool_function(tool)
        if fn is None:  # already Gemini-shaped ({"googleSearch": {}}, {"functionDeclarations": …})
            other.append(dict(tool))
            continue
        d: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            d["description"] = fn["description"]
        if fn.get("parameters"):
            # parametersJsonSchema takes standard JSON Schema, exactly what OpenAI tools carry
            d["parametersJsonSchema"] = fn["parameters"]
        decls.append(d)
    return ([{"functionDeclarations": decls}] if decls else []) + other


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, str) and choice in _TOOL_MODES:
        return {"functionCallingConfig": {"mode": _TOOL_MODES[choice]}}
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        if choice.get("type") == "function" and isinstance(fn, Mapping):
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [fn.get("name")]}}
        return dict(choice)  # already a Gemini toolConfig
    return None


def build_request(
    model: str,
    messages: list[Message],
    config: RunConfig,
    *,
    stream: bool,
    max_tokens: int | None,
) -> WireRequest:
    """The generateContent request; streaming uses ``streamGenerateContent?alt=sse``."""
    system, contents = _contents(messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    gen = sampling(config, max_tokens, max_tokens_key="maxOutputTokens", top_p_key="topP", stop_key="stopSequences")
    rf = config.effective_response_format
    if rf is not None and rf.get("type") in ("json_object", "json_schema"):
        gen["responseMimeType"] = "application/json"
        schema = (rf.get("json_schema") or {}).get("schema")
        if schema is not None:
            gen["responseJsonSchema"] = schema
    if gen:
        body["generationConfig"] = gen
    if config.tools:
        body["tools"] = _tools(config.tools)
    if config.tool_choice is not None:
        tc = _tool_config(config.tool_choice)
        if tc is not None:
            body["toolConfig"] = tc
    merge_extra_body(body, config)
    name = model.removeprefix("models/")
    method = "streamGenerateContent" if stream else "generateContent"
    return WireRequest(
        path=f"/v1beta/models/{name}:{method}",
        body=body,
        query={"alt": "sse"} if stream else None,
    )


def build_count_request(model: str, messages: list[Message], config: RunConfig) -> WireRequest:
    """``POST /v1beta/models/{model}:countTokens`` with the whole ``generateContentRequest`` (system
    instruction and tools included), so the count is the prompt :func:`build_request` sends."""
    inner = build_request(model, messages, config, stream=False, max_tokens=None).body
    name = model.removeprefix("models/")
    inner["model"] = f"models/{name}"
    inner.pop("generationConfig", None)
    return WireRequest(path=f"/v1beta/models/{name}:countTokens", body={"generateContentRequest": inner})


def parse_count_response(body: Mapping[str, Any]) -> int:
    """``{"totalTokens": N}`` → N (the prompt's ``promptTokenCount`` when it is sent)."""
    return count_field(body, "totalTokens")


# ---------------------------------------------------------------------------
# response


#: Gemini modality -> our kind suffix; a DOCUMENT (PDF pages) is billed as images, as genai-prices reads it
_MODALITY = {"AUDIO": "audio", "IMAGE": "image", "DOCUMENT": "image", "VIDEO": "video"}


def _by_modality(*lists: Any) -> dict[str, int]:
    """``[{"modality": "AUDIO", "tokenCount": N}, ...]`` lists (ModalityTokenCount) -> {"audio": N, ...}."""
    out: dict[str, int] = {}
    for entries in lists:
        for entry in entries if isinstance(entries, list) else ():
            kind = _MODALITY.get(entry.get("modality")) if isinstance(entry, Mapping) else None
            if kind is not None:
                out[kind] = out.get(kind, 0) + to_int(entry.get("tokenCount"))
    return out


def parse_usage(raw: Mapping[str, Any] | None) -> Usage:
    """promptTokenCount includes cached content; thoughts are output but not in candidatesTokenCount.

    The per-modality lists split the counts: ``promptTokensDetails`` (+ ``toolUsePromptTokensDetails``) the
    input, ``cacheTokensDetails`` the cache reads, ``candidatesTokensDetails`` the output; what they do not
    name as audio, image or video is text."""
    if not raw:
        return Usage()
    thoughts = to_int(raw.get("thoughtsTokenCount"))
    inp = _by_modality(raw.get("promptTokensDetails"), raw.get("toolUsePromptTokensDetails"))
    cached = _by_modality(raw.get("cacheTokensDetails"))
    out = _by_modality(raw.get("candidatesTokensDetails"))
    return Usage(
        # tool-use prompt tokens (e.g. search results fed back) are input too: input + output == total
        input_tokens=to_int(raw.get("promptTokenCount")) + to_int(raw.get("toolUsePromptTokenCount")),
        output_tokens=to_int(raw.get("candidatesTokenCount")) + thoughts,
        cache_read_tokens=to_int(raw.get("cachedContentTokenCount")),
        cache_write_tokens=0,
        reasoning_tokens=thoughts,
        input_audio_tokens=inp.get("audio", 0),
        input_image_tokens=inp.get("image", 0),
        input_video_tokens=inp.get("video", 0),
        cache_audio_read_tokens=cached.get("audio", 0),
        cache_image_read_tokens=cached.get("image", 0),
        cache_video_read_tokens=cached.get("video", 0),
        output_audio_tokens=out.get("audio", 0),
        output_image_tokens=out.get("image", 0),
        output_video_tokens=out.get("video", 0),
    )


def _check_blocked(body: Mapping[str, Any], cand: Mapping[str, Any]) -> None:
    """Raise LLMContentFilterError when the prompt or the answer was blocked by safety settings."""
    block = (body.get("promptFeedback") or {}).get("blockReason")
    if block:
        raise LLMContentFilterError(f"prompt blocked by Gemini safety filter: {block}", body=dict(body))
    reason = cand.get("finishReason")
    if reason in _BLOCKED:
        raise LLMContentFilterError(f"response blocked by Gemini safety filter: {reason}", body=dict(body))


def _finish(reason: str | None, has_tools: bool) -> str | None:
    if not reason or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    norm = _FINISH.get(reason, "stop")
    return "tool_calls" if norm == "stop" and has_tools else norm


def _split(parts: list[Mapping[str, Any]], first_index: int) -> tuple[str, list[dict[str, Any]]]:
    """Answer text (thought parts left out) and function calls in OpenAI shape."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts:
        if "text" in part and not part.get("thought"):
            texts.append(part["text"])
        fc = part.get("functionCall")
        if fc:
            extra: dict[str, Any] = {}
            if part.get("thoughtSignature"):
                extra[_SIG_KEY] = {"google": {"thought_signature": part["thoughtSignature"]}}
            call_id = fc.get("id") or f"call_{first_index + len(calls)}"
            calls.append(tool_call(call_id, fc.get("name", ""), dumps(fc.get("args") or {}), **extra))
    return "".join(texts), calls


def _thoughts(parts: list[Mapping[str, Any]]) -> str:
    """The text of the thought parts (thought summaries, with ``includeThoughts``)."""
    return "".join(p["text"] for p in parts if p.get("thought") and isinstance(p.get("text"), str))


def parse_response(body: Mapping[str, Any]) -> ParsedResponse:
    """A GenerateContentResponse -> ParsedResponse (first candidate; thought parts are its ``reasoning``);
    raises if safety blocked it."""
    if isinstance(body.get("error"), Mapping):
        raise classify_error(to_int(body["error"].get("code")) or None, dict(body), {})
    cands = body.get("candidates") or []
    cand = cands[0] if cands else {}
    _check_blocked(body, cand)
    parts = (cand.get("content") or {}).get("parts") or []
    text, calls = _split(parts, 0)
    return ParsedResponse(
        text=text,
        model=body.get("modelVersion"),
        finish_reason=_finish(cand.get("finishReason"), bool(calls)),
        usage=parse_usage(body.get("usageMetadata")),
        tool_calls=calls or None,
        request_id=body.get("responseId"),
        reasoning=_thoughts(parts),
    )


class StreamDecoder(StreamState):
    """Decodes ``alt=sse`` events (whole responses). Terminal: a candidate with ``finishReason``."""

    terminal_name = "a candidate with finishReason"

    def __init__(self) -> None:
        super().__init__()
        self._n_calls = 0

    def feed(self, event: str | None, data: Mapping[str, Any]) -> list[StreamChunk]:
        if isinstance(data.get("error"), Mapping):
            raise classify_error(to_int(data["error"].get("code")) or None, dict(data), {})
        self.request_id = data.get("responseId") or self.request_id
        self.model = data.get("modelVersion") or self.model
        before = self.usage
        if data.get("usageMetadata"):
            self.usage = parse_usage(data["usageMetadata"])
        cands = data.get("candidates") or []
        cand = cands[0] if cands else {}
        _check_blocked(data, cand)
        parts = (cand.get("content") or {}).get("parts") or []
        text, calls = _split(parts, self._n_calls)
        out: list[StreamChunk] = []
        thoughts = _thoughts(parts)
        if thoughts:
            out.append(self._reasoning_chunk(thoughts))
        if text:
            out.append(self._text_chunk(text))
        if calls:
            deltas = [{"index": self._n_calls + i, **c} for i, c in enumerate(calls)]
            self._n_calls += len(calls)
            out.append(self._tool_chunk(deltas))
        reason = cand.get("finishReason")
        if reason:
            self.finish_reason = _finish(reason, False)
            self.done = True
        return self._running(out, before)


# ---------------------------------------------------------------------------
# errors


def _retry_delay(err: Mapping[str, Any]) -> float | None:
    for d in err.get("details") or ():
        if isinstance(d, Mapping) and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            return parse_duration(d.get("retryDelay"))
    return None


def _reason(err: Mapping[str, Any]) -> str | None:
    for d in err.get("details") or ():
        if isinstance(d, Mapping) and str(d.get("@type", "")).endswith("google.rpc.ErrorInfo"):
            return d.get("reason")
    return None


def classify_error(status: int | None, body: Any, headers: Mapping[str, str] | None) -> LLMError:
    """``{"error": {"code", "message", "status", "details"}}`` -> the matching LLMError subclass."""
    body = coerce_body(body)
    if isinstance(body, list) and body and isinstance(body[0], Mapping):
        body = body[0]  # a JSON-array stream (no alt=sse) wraps the error in a list
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        message = str(err or (body if isinstance(body, str) else "") or "")
        return make_error(
            context_or(class_for_status(status) or LLMProviderUnavailableError, message),
            message,
            status=status,
            body=body,
            headers=headers,
        )
    message = str(err.get("message") or "")
    rpc_status = err.get("status")
    cls = class_for_status(status) or _STATUS.get(rpc_status or "") or class_for_status(to_int(err.get("code")) or None)
    if _reason(err) == "API_KEY_INVALID":  # Gemini answers a bad key with 400 INVALID_ARGUMENT
        cls = LLMAuthenticationError
    elif cls is LLMInvalidRequestError and rpc_status in _STATUS:
        cls = _STATUS[rpc_status]
    if cls is None:
        cls = LLMProviderUnavailableError
    if rpc_status in (None, "INVALID_ARGUMENT"):
        # no machine-readable code for "input token count exceeds the maximum": documented last resort
        cls = context_or(cls, message)
    return make_error(cls, message, status=status, body=body, headers=headers, retry_after=_retry_delay(err))
