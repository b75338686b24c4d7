"""Amazon Bedrock Converse shapes for the mock server: SigV4 verified, requests checked, replies, streams, errors.

Bedrock Runtime speaks ``POST /model/{modelId}/converse`` (JSON) and ``/converse-stream`` (the AWS event-stream
binary framing, :mod:`llm_connect.wire.eventstream`), reproduced here:

* credentials: a SigV4 ``Authorization`` header, recomputed from the request (method, the path as sent, query,
  the signed headers, a SHA-256 of the body) and checked against the mock's one known key pair,
  :data:`MOCK_AWS_ACCESS_KEY_ID` / :data:`MOCK_AWS_SECRET_ACCESS_KEY` (any region; the service must be ``bedrock``;
  ``X-Amz-Date`` within 5 minutes; any signed ``X-Amz-Security-Token`` is taken), or a Bedrock API key
  (``Authorization: Bearer ABSK...``, the mock's ``require_key`` when it has one). Anything else is Bedrock's
  own 403 (``MissingAuthenticationTokenException``, ``UnrecognizedClientException``,
  ``InvalidSignatureException``, ``IncompleteSignatureException``);
* requests validated as Bedrock does: no unknown top-level keys, messages that start with a user turn and
  alternate roles, ``inferenceConfig.maxTokens`` as the cap;
* errors as ``{"message": ...}`` with the type in ``x-amzn-ErrorType``; inside a stream an exception message
  (``:message-type: exception``, ``:exception-type: throttlingException``);
* usage in Bedrock's terms: ``inputTokens`` without the cache reads and writes, ``cacheDetails`` by TTL.

Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson

from ..wire.eventstream import encode_message, event_headers
from ._shapes import BadRequest, Parsed, Reply, split_pieces

__all__ = [
    "MEDIA_TYPE",
    "MOCK_AWS_ACCESS_KEY_ID",
    "MOCK_AWS_SECRET_ACCESS_KEY",
    "error_headers",
    "error_object",
    "parse_request",
    "render_body",
    "render_stream",
    "request_problem",
    "signature",
    "stream_error_frame",
]

#: the one key pair the mock's SigV4 check knows (documented; never a real AWS key)
MOCK_AWS_ACCESS_KEY_ID = "AKIDMOCKLLMCONNECT00"
MOCK_AWS_SECRET_ACCESS_KEY = "mockSecretKey/llm-connect/bedrock/0000000"
MEDIA_TYPE = "application/vnd.amazon.eventstream"

_SKEW = 300.0
_REQUEST_KEYS = frozenset(
    {
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "promptVariables",
        "additionalModelResponseFieldPaths",
        "requestMetadata",
        "performanceConfig",
        "serviceTier",
        "outputConfig",
    }
)
_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "guardrail_intervened",
}

#: generic error kind -> (Bedrock error type, its message)
_ERRORS = {
    "bad_request": ("ValidationException", "Malformed input request, please reformat your input and try again."),
    "context_length": ("ValidationException", "Input is too long for requested model."),
    "auth": ("UnrecognizedClientException", "The security token included in the request is invalid."),
    "permission": ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    "not_found": ("ResourceNotFoundException", "Could not resolve the foundation model from the model identifier."),
    "too_large": ("ValidationException", "Input is too long for requested model."),
    "rate_limit": ("ThrottlingException", "Too many requests, please wait before trying again."),
    "server": ("InternalServerException", "The system encountered an unexpected error during processing."),
    "unavailable": ("ServiceUnavailableException", "Bedrock is unable to process your request."),
    "timeout": ("ModelTimeoutException", "Model has timed out in processing the request. Try your request again."),
    "overloaded": ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}
_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


# --------------------------------------------------------------------------- credentials


def _refusal(error_type: str, message: str) -> tuple[int, dict[str, str], bytes]:
    return (
        403,
        {"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.coral.service/"},
        (orjson.dumps({"message": message})),
    )


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _canonical_query(query: str) -> str:
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{k}={v}" for k, v in pairs)


def signature(
    secret: str,
    *,
    method: str,
    raw_path: str,
    headers: Mapping[str, str],
    signed: list[str],
    body: bytes,
    amz_date: str,
    scope: str,
) -> str:
    """The SigV4 signature of a request (AWS's "Create a signed AWS API request" steps; the path of a service
    other than S3 URI-encoded once more)."""
    path, _, query = raw_path.partition("?")
    canonical_headers = "".join(f"{h}:{' '.join(str(headers.get(h, '')).split())}\n" for h in signed)
    canonical = "\n".join(
        [
            method.upper(),
            quote(path or "/", safe="/~"),
            _canonical_query(query),
            canonical_headers,
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    date, region, service, _ = scope.split("/")
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), date), region), service), "aws4_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def request_problem(
    method: str, raw_path: str, headers: Mapping[str, str], body: bytes, require_key: str | None
) -> tuple[int, dict[str, str], bytes] | None:
    """Bedrock's 403 for a request whose credentials do not verify, else None."""
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        token = auth[7:].strip()
        if token.startswith(("ABSK", "bedrock-api-key-")) and (require_key is None or token == require_key):
            return None
        return _refusal("UnrecognizedClientException", "Authentication failed: Please make sure your API Key is valid.")
    if not auth:
        return _refusal("MissingAuthenticationTokenException", "Missing Authentication Token")
    algorithm, _, rest = auth.partition(" ")
    fields = dict(p.strip().partition("=")[::2] for p in rest.split(","))
    credential, signed, sig = fields.get("Credential", ""), fields.get("SignedHeaders", ""), fields.get("Signature")
    parts = credential.split("/")
    if algorithm != "AWS4-HMAC-SHA256" or len(parts) != 5 or not signed or not sig:
        return _refusal(
            "IncompleteSignatureException",
            f"Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters. "
            f"Authorization={algorithm}",
        )
    access_key, date, region, service, terminal = parts
    if access_key != MOCK_AWS_ACCESS_KEY_ID:
        return _refusal("UnrecognizedClientException", "The security token included in the request is invalid.")
    if service != "bedrock" or terminal != "aws4_request":
        return _refusal("InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'.")
    names = signed.split(";")
    amz_date = headers.get("X-Amz-Date", "")
    if "host" not in names or "x-amz-date" not in names or not amz_date.startswith(date):
        return _refusal("InvalidSignatureException", "'Host' and 'X-Amz-Date' must be signed, in the credential's day.")
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return _refusal("IncompleteSignatureException", f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.")
    if abs(time.time() - when) > _SKEW:
        return _refusal("InvalidSignatureException", f"Signature expired: {amz_date} is now earlier or later.")
    lower = {k.lower(): v for k, v in headers.items()}
    expected = signature(
        MOCK_AWS_SECRET_ACCESS_KEY,
        method=method,
        raw_path=raw_path,
        headers=lower,
        signed=names,
        body=body,
        amz_date=amz_date,
        scope=f"{date}/{region}/{service}/aws4_request",
    )
    if not hmac.compare_digest(expected, sig):
        return _refusal("InvalidSignatureException", _BAD_SIGNATURE)
    return None


# --------------------------------------------------------------------------- requests


def _text(blocks: Any) -> str:
    out: list[str] = []
    for block in blocks if isinstance(blocks, list) else ():
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            out.append(block["text"])
        elif isinstance(block.get("toolResult"), dict):
            out.append(_text(block["toolResult"].get("content")))
    return " ".join(t for t in out if t)


def parse_request(body: Any, model: str) -> Parsed:
    """Validate a Converse body the way Bedrock does (its ValidationException messages)."""
    if not isinstance(body, dict):
        raise BadRequest("Malformed input request, please reformat your input and try again.")
    extra = sorted(set(body) - _REQUEST_KEYS)
    if extra:
        raise BadRequest(f"Malformed input request: extraneous key [{extra[0]}] is not permitted, please reformat.")
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise BadRequest(
            "A conversation must start with a user message. Try again with a conversation that starts "
            "with a user message."
        )
    messages: list[tuple[str, str]] = []
    if body.get("system"):
        messages.append(("system", _text(body["system"])))
    for i, turn in enumerate(turns):
        role = turn.get("role") if isinstance(turn, dict) else None
        if role not in ("user", "assistant") or not isinstance(turn.get("content"), list):
            raise BadRequest(f"messages.{i}: a message needs role user or assistant and a content list.")
        if (i == 0 and role != "user") or (i and role == turns[i - 1].get("role")):
            raise BadRequest(
                "A conversation must alternate between user and assistant roles. Make sure the "
                "conversation alternates between user and assistant roles and try again."
            )
        messages.append((role, _text(turn["content"])))
    config = body.get("inferenceConfig") if isinstance(body.get("inferenceConfig"), dict) else {}
    cap = config.get("maxTokens")
    return Parsed(
        "bedrock",
        model,
        max_tokens=cap if isinstance(cap, int) and not isinstance(cap, bool) else None,
        messages=messages,
    )


# --------------------------------------------------------------------------- replies


def _usage(r: Reply) -> dict[str, Any]:
    uncached = max(0, r.input_tokens - r.cache_read_tokens - r.cache_write_tokens)
    usage: dict[str, Any] = {
        "inputTokens": uncached,
        "outputTokens": r.output_tokens,
        "totalTokens": r.input_tokens + r.output_tokens,
    }
    if r.cache_read_tokens or r.cache_write_tokens:
        usage["cacheReadInputTokens"] = r.cache_read_tokens
        usage["cacheWriteInputTokens"] = r.cache_write_tokens
    details = [("1h", r.cache_write_1h_tokens), ("5m", r.cache_write_tokens - r.cache_write_1h_tokens)]
    if r.cache_write_tokens:
        usage["cacheDetails"] = [{"ttl": ttl, "inputTokens": n} for ttl, n in details if n > 0]
    return usage


def _stop(r: Reply) -> str:
    return _FINISH.get(r.finish, r.finish)


def render_body(r: Reply, created: int) -> dict[str, Any]:
    """A ConverseResponse (the model is not named: Bedrock's reply has no model field)."""
    content: list[dict[str, Any]] = []
    if r.thinking:
        content.append({"reasoningContent": {"reasoningText": {"text": r.thinking, "signature": "mock-signature"}}})
    if r.text:
        content.append({"text": r.text})
    content.extend({"toolUse": {"toolUseId": t.id, "name": t.name, "input": t.args}} for t in r.tool_calls)
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": _stop(r),
        "usage": _usage(r),
        "metrics": {"latencyMs": 1 + r.output_tokens},
    }


def _event(name: str, obj: dict[str, Any]) -> bytes:
    return encode_message(event_headers(name), orjson.dumps(obj))


def render_stream(r: Reply, rid: str, created: int, p: Parsed) -> tuple[list[bytes], int]:
    """Every event-stream message of a ConverseStream reply, and how many trailing ones are terminal
    (``messageStop`` and ``metadata``). Deltas carry Bedrock's ``p`` padding field."""
    frames = [_event("messageStart", {"p": "abcd", "role": "assistant"})]
    index = 0
    if r.thinking:
        for piece in split_pieces(r.thinking):
            delta = {"reasoningContent": {"text": piece}}
            frames.append(_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta, "p": "abcdef"}))
        delta = {"reasoningContent": {"signature": "mock-signature"}}
        frames.append(_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta, "p": "ab"}))
        frames.append(_event("contentBlockStop", {"contentBlockIndex": 0, "p": "abc"}))
        index = 1
    if r.pieces or not (r.tool_calls or r.thinking):
        for piece in r.pieces:
            frames.append(_event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}, "p": "a"}))
        frames.append(_event("contentBlockStop", {"contentBlockIndex": index, "p": "abcd"}))
        index += 1
    for t in r.tool_calls:
        start = {"toolUse": {"toolUseId": t.id, "name": t.name}}
        frames.append(_event("contentBlockStart", {"contentBlockIndex": index, "start": start, "p": "abc"}))
        half = len(t.arguments) // 2
        for part in (t.arguments[:half], t.arguments[half:]):
            if part:
                delta = {"toolUse": {"input": part}}
                frames.append(_event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta, "p": "ab"}))
        frames.append(_event("contentBlockStop", {"contentBlockIndex": index, "p": "a"}))
        index += 1
    frames.append(_event("messageStop", {"stopReason": _stop(r), "p": "abcdefg"}))
    metadata = {"usage": _usage(r), "metrics": {"latencyMs": 1 + r.output_tokens}, "p": "abc"}
    frames.append(_event("metadata", metadata))
    return frames, 2


# --------------------------------------------------------------------------- errors


def _type_and_message(kind: str, error_type: str | None, message: str | None) -> tuple[str, str]:
    default_type, default_message = _ERRORS.get(kind, _ERRORS["server"])
    return error_type or default_type, message or default_message


def error_object(
    status: int, *, kind: str, error_type: str | None = None, message: str | None = None
) -> dict[str, Any]:
    """Bedrock's error body: ``{"message": ...}`` (the type goes in :func:`error_headers`)."""
    return {"message": _type_and_message(kind, error_type, message)[1]}


def error_headers(kind: str, error_type: str | None = None) -> dict[str, str]:
    etype = _type_and_message(kind, error_type, None)[0]
    return {"x-amzn-ErrorType": f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/"}


def stream_error_frame(status: int, *, kind: str, error_type: str | None = None, message: str | None = None) -> bytes:
    """An exception inside a started stream: ``:message-type: exception`` with the lower-camel type."""
    etype, text = _type_and_message(kind, error_type, message)
    headers = {
        ":exception-type": etype[:1].lower() + etype[1:],
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, orjson.dumps({"message": text}))
