"""Amazon Bedrock Converse wire format: ``POST {endpoint}/model/{modelId}/converse`` and ``/converse-stream``.

One request and reply shape for every model family Bedrock serves (Anthropic Claude, Amazon Nova, Meta Llama,
Mistral, Cohere, DeepSeek, ...), so one codec. Our OpenAI-shaped messages become Converse messages: system
messages go to top-level ``system`` blocks, assistant ``tool_calls`` to ``toolUse`` blocks, ``tool`` messages to
``toolResult`` blocks in a user turn, image parts (data URLs, ``s3://`` URLs) to ``image`` blocks, an Anthropic-style
``cache_control`` on a part to a ``cachePoint`` after it; sampling goes to ``inferenceConfig``, tools to
``toolConfig``, a JSON schema response format to ``outputConfig.textFormat``.

Usage: ``inputTokens`` excludes the cache reads and writes (``cacheReadInputTokens``, ``cacheWriteInputTokens``),
so they are added back (our input counts every input token); ``cacheDetails`` splits the writes by TTL, the
``1h`` ones being ``cache_write_1h_tokens``. ConverseStream's body is the AWS event-stream framing
(:mod:`.eventstream`); the transport hands each message on as ``(event type, JSON payload)``, an exception
message as ``("exception", {"__type": <its type>, "message": ...})``.

Errors: the type is the ``x-amzn-ErrorType`` header (``ThrottlingException:http://internal.amazon.com/...``) or
the body's ``__type``, the message the body's ``message``; the type refines the status (ModelNotReadyException
is a 429 that is no quota: retry after a pause; ModelTimeoutException a 408; ModelErrorException a 424).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ..errors import (
    LLMAuthenticationError,
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
    dumps,
    header,
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
    "ERROR_TYPES",
    "FRAMING",
    "StreamDecoder",
    "build_request",
    "classify_error",
    "error_type",
    "parse_response",
    "parse_usage",
]

FRAMING = "eventstream"

_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

#: Bedrock Runtime's error types (botocore's bedrock-runtime service model) -> our error class
ERROR_TYPES: Mapping[str, type[LLMError]] = {
    "ValidationException": LLMInvalidRequestError,
    "ResourceNotFoundException": LLMInvalidRequestError,
    "ConflictException": LLMInvalidRequestError,
    "ServiceQuotaExceededException": LLMRateLimitError,
    "ThrottlingException": LLMRateLimitError,
    "AccessDeniedException": LLMAuthenticationError,
    "UnrecognizedClientException": LLMAuthenticationError,
    "InvalidSignatureException": LLMAuthenticationError,
    "IncompleteSignatureException": LLMAuthenticationError,
    "ExpiredTokenException": LLMAuthenticationError,
    "MissingAuthenticationTokenException": LLMAuthenticationError,
    "ModelNotReadyException": LLMProviderUnavailableError,
    "ServiceUnavailableException": LLMProviderUnavailableError,
    "InternalServerException": LLMProviderUnavailableError,
    "ModelErrorException": LLMProviderUnavailableError,
    "ModelStreamErrorException": LLMProviderUnavailableError,
    "ModelTimeoutException": LLMTimeoutError,
}
#: a model not yet loaded (an imported or on-demand model waking up): come back after a pause
_NOT_READY_WAIT = 5.0

_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif"}
_IMAGE_FORMATS["image/webp"] = "webp"


# ---------------------------------------------------------------------------
# request


def _image(part: Mapping[str, Any]) -> dict[str, Any]:
    url = image_url_of(part) or ""
    data = parse_data_url(url)
    if data is not None:
        fmt = _IMAGE_FORMATS.get(data[0].lower())
        if fmt is None:
            raise LLMInvalidRequestError(f"Bedrock takes png, jpeg, gif or webp images, not {data[0]}")
        return {"image": {"format": fmt, "source": {"bytes": data[1]}}}
    if url.startswith("s3://"):
        ext = url.rsplit(".", 1)[-1].lower()
        fmt = {"jpg": "jpeg"}.get(ext, ext)
        if fmt not in ("png", "jpeg", "gif", "webp"):
            raise LLMInvalidRequestError(f"the image format of {url!r} is not png, jpeg, gif or webp")
        return {"image": {"format": fmt, "source": {"s3Location": {"uri": url}}}}
    raise LLMInvalidRequestError("Bedrock takes images as base64 data URLs or s3:// locations, not web URLs")


def _blocks(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """OpenAI content (text or parts) -> Converse content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content:
        ptype = part.get("type")
        if ptype == "text":
            if part.get("text"):
                out.append({"text": part["text"]})
        elif ptype == "image_url":
            out.append(_image(part))
        elif ptype is None:  # already a Converse block ({"text"}, {"image"}, {"document"}, {"cachePoint"}, ...)
            out.append(dict(part))
            continue
        else:
            raise LLMInvalidRequestError(f"Bedrock Converse cannot take a {ptype!r} content part")
        if "cache_control" in part:
            out.append({"cachePoint": {"type": "default"}})
    return out


def _push(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Append a turn, merging with the previous one of the same role (Converse alternates user and assistant)."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _tool_result(m: Message) -> dict[str, Any]:
    content = m.content
    if isinstance(content, str) or content is None:
        blocks: list[dict[str, Any]] = [{"text": content or ""}]
    else:
        blocks = _blocks(content) or [{"text": ""}]
    return {"toolResult": {"toolUseId": m.tool_call_id or "", "content": blocks}}


def _tool_use(tc: Mapping[str, Any]) -> dict[str, Any]:
    fn = tc.get("function") or {}
    args = loads_arguments(fn.get("arguments"))
    return {"toolUse": {"toolUseId": tc.get("id") or "", "name": fn.get("name") or "", "input": args}}


def _messages(messages: list[Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role in ("system", "developer"):
            system.extend(_blocks(m.content))
        elif m.role == "tool":
            _push(turns, "user", [_tool_result(m)])
        else:
            role = "assistant" if m.role == "assistant" else "user"
            _push(turns, role, _blocks(m.content) + [_tool_use(tc) for tc in m.tool_calls or ()])
    return system, turns


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tool in tools:
        fn = openai_tool_function(tool)
        if fn is None:  # already Converse-shaped ({"toolSpec"}, {"cachePoint"}, {"systemTool"})
            out.append(dict(tool))
            continue
        spec: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            spec["description"] = fn["description"]
        spec["inputSchema"] = {"json": fn.get("parameters") or {"type": "object", "properties": {}}}
        out.append({"toolSpec": spec})
    return out


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    """OpenAI tool_choice -> Converse ``toolChoice`` (None: send none; Converse has no "none")."""
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        if choice.get("type") == "function" and isinstance(fn, Mapping):
            return {"tool": {"name": fn.get("name")}}
        return dict(choice)  # already Converse-shaped
    return None


def model_path(model: str, stream: bool) -> str:
    """``/model/{modelId}/converse[-stream]``, the id (a foundation model, an inference profile, an ARN)
    percent-encoded as one path segment, as the AWS SDKs send it."""
    return f"/model/{quote(model, safe='')}/{'converse-stream' if stream else 'converse'}"


def build_request(
    model: str,
    messages: list[Message],
    config: RunConfig,
    *,
    stream: bool,
    max_tokens: int | None,
) -> WireRequest:
    """The Converse (or ConverseStream) request; the model id is in the path, not the body. ``seed`` and a
    plain ``json_object`` response format have no Converse equivalent and are not sent."""
    system, turns = _messages(messages)
    body: dict[str, Any] = {"messages": turns}
    if system:
        body["system"] = system
    inference = sampling(config, max_tokens, max_tokens_key="maxTokens", top_p_key="topP", stop_key="stopSequences")
    inference.pop("seed", None)
    if inference:
        body["inferenceConfig"] = inference
    if config.tools:
        tool_config: dict[str, Any] = {"tools": _tools(config.tools)}
        choice = _tool_choice(config.tool_choice) if config.tool_choice is not None else None
        if choice is not None:
            tool_config["toolChoice"] = choice
        body["toolConfig"] = tool_config
    rf = config.effective_response_format
    schema = (rf.get("json_schema") or {}) if rf is not None and rf.get("type") == "json_schema" else None
    if schema and schema.get("schema") is not None:
        json_schema = {"schema": dumps(schema["schema"]), "name": schema.get("name") or "response"}
        body["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": json_schema}}}
    merge_extra_body(body, config)
    return WireRequest(path=model_path(model, stream), body=body)


# ---------------------------------------------------------------------------
# response


def parse_usage(raw: Mapping[str, Any] | None) -> Usage:
    """A ``TokenUsage`` in our terms: input = ``inputTokens`` + cache reads + cache writes."""
    if not raw:
        return Usage()
    read = to_int(raw.get("cacheReadInputTokens"))
    write = to_int(raw.get("cacheWriteInputTokens"))
    write_1h = 0
    for detail in raw.get("cacheDetails") or ():
        if isinstance(detail, Mapping) and detail.get("ttl") == "1h":
            write_1h += to_int(detail.get("inputTokens"))
    return Usage(
        input_tokens=to_int(raw.get("inputTokens")) + read + write,
        output_tokens=to_int(raw.get("outputTokens")),
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=min(write_1h, write),
    )


def _stop(reason: str | None) -> str | None:
    return None if reason is None else _STOP.get(reason, reason)


def _tier(body: Mapping[str, Any]) -> str | None:
    tier = body.get("serviceTier")
    value = tier.get("type") if isinstance(tier, Mapping) else None
    return value if isinstance(value, str) and value else None


def parse_response(body: Mapping[str, Any]) -> ParsedResponse:
    """A ``ConverseResponse`` -> ParsedResponse (the reply names no model: the adapter's id is the model).
    Reasoning blocks are kept apart from the text."""
    message = (body.get("output") or {}).get("message") or {}
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if "text" in block:
            texts.append(block.get("text") or "")
        elif "toolUse" in block:
            use = block["toolUse"] or {}
            calls.append(tool_call(use.get("toolUseId", ""), use.get("name", ""), dumps(use.get("input") or {})))
        elif "reasoningContent" in block:
            text = ((block["reasoningContent"] or {}).get("reasoningText") or {}).get("text")
            if text:
                reasoning.append(text)
    return ParsedResponse(
        text="".join(texts),
        model=None,
        finish_reason=_stop(body.get("stopReason")),
        usage=parse_usage(body.get("usage")),
        tool_calls=calls or None,
        service_tier=_tier(body),
        reasoning="".join(reasoning),
    )


class StreamDecoder(StreamState):
    """Decodes ConverseStream events: ``messageStart``, ``contentBlockStart`` (a tool use's id and name),
    ``contentBlockDelta`` (text, tool input JSON, reasoning text), ``contentBlockStop``, ``messageStop`` (the
    stop reason) and ``metadata`` (the usage), which ends the stream; an exception event raises its error."""

    terminal_name = "the metadata event"

    def feed(self, event: str | None, data: Mapping[str, Any]) -> list[StreamChunk]:
        if event == "contentBlockDelta":
            delta = data.get("delta") or {}
            if "text" in delta:
                text = delta.get("text") or ""
                return [self._text_chunk(text)] if text else []
            if "toolUse" in delta:
                part = (delta.get("toolUse") or {}).get("input") or ""
                return self._block_tool_args(data.get("contentBlockIndex"), part)
            if "reasoningContent" in delta:
                text = (delta.get("reasoningContent") or {}).get("text") or ""
                return [self._reasoning_chunk(text)] if text else []
            return []  # citations, tool results, images added later
        if event == "contentBlockStart":
            use = (data.get("start") or {}).get("toolUse")
            if not isinstance(use, Mapping):
                return []
            return self._block_tool_start(data.get("contentBlockIndex"), use.get("toolUseId"), use.get("name"))
        if event == "messageStop":
            self.finish_reason = _stop(data.get("stopReason"))
            return []
        if event == "metadata":
            before = self.usage
            self.usage = parse_usage(data.get("usage"))
            self.service_tier = _tier(data) or self.service_tier
            self.done = True
            return self._running([], before)
        if event == "exception":
            raise classify_error(None, dict(data), {})
        return []  # messageStart, contentBlockStop, and event types added later


# ---------------------------------------------------------------------------
# errors


def error_type(body: Any, headers: Mapping[str, str] | None) -> str | None:
    """The error's type: ``x-amzn-ErrorType`` (its part before ``:``), else the body's ``__type`` / ``code``
    (a namespaced ``com.amazon...#ThrottlingException`` reduced to the name), first letter upper-cased (a stream's
    ``:exception-type`` is ``throttlingException``)."""
    raw = header(headers, "x-amzn-errortype")
    if not raw and isinstance(body, Mapping):
        raw = body.get("__type") or body.get("code") or body.get("Code")
    if not isinstance(raw, str) or not raw.strip():
        return None
    name = raw.split(":", 1)[0].rsplit("#", 1)[-1].strip()
    return name[:1].upper() + name[1:] if name else None


def classify_error(status: int | None, body: Any, headers: Mapping[str, str] | None) -> LLMError:
    """A Bedrock error (``{"message": ...}`` with its type in ``x-amzn-ErrorType`` or ``__type``) -> LLMError."""
    body = coerce_body(body)
    etype = error_type(body, headers)
    message = ""
    if isinstance(body, Mapping):
        message = str(body.get("message") or body.get("Message") or "")
    elif isinstance(body, str):
        message = body
    if etype and message:
        message = f"{etype}: {message}"
    cls = class_for_status(status)
    by_type = ERROR_TYPES.get(etype or "")
    if by_type is not None:
        cls = by_type  # the type is more precise than the status (a 429 ModelNotReady is no quota)
    elif cls is None:
        cls = LLMProviderUnavailableError
    if etype in (None, "ValidationException"):
        # Bedrock has no machine-readable code for "input is too long": documented last resort
        cls = context_or(cls, message)
    request_id = header(headers, "x-amzn-requestid")
    wait = _NOT_READY_WAIT if etype == "ModelNotReadyException" else None
    return make_error(cls, message, status=status, body=body, headers=headers, retry_after=wait, request_id=request_id)
