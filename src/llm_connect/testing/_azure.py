"""Azure OpenAI shapes for the mock server: paths, credentials checked for shape, content-filter results, errors.

Azure OpenAI speaks Chat Completions with these differences, all reproduced here:

* paths ``/openai/deployments/{deployment}/chat/completions?api-version=…`` (the deployment in the path, a
  dated ``api-version`` required) and the v1 API ``/openai/v1/chat/completions`` (the deployment as ``model``;
  Azure there when an ``api-key`` header is sent, else the plain OpenAI path under an ``/openai`` prefix);
* an ``api-key`` header (a resource key: 32 hex characters, or the newer 84-character keys) or an Entra ID
  ``Authorization: Bearer <JWT>``; a missing or malformed credential is a 401 in Azure's own body;
* ``prompt_filter_results`` on the reply (and on a first stream chunk with no choices) and
  ``content_filter_results`` on each choice; a scripted ``error_code="content_filter"`` is the 400 with an
  ``innererror`` of code ``ResponsibleAIPolicyViolation``;
* a 429 carries ``retry-after-ms`` beside ``Retry-After``.

Pure functions, no I/O; :mod:`._formats` renders the rest as OpenAI.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = [
    "auth_error",
    "decorate_body",
    "error_object",
    "first_stream_frame",
    "request_problem",
    "retry_headers",
]

_KEY = re.compile(r"[0-9A-Za-z]{32}([0-9A-Za-z]{52})?")
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?|preview|latest")
_CATEGORIES = ("hate", "self_harm", "sexual", "violence")


def _results(filtered: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        c: {"filtered": c == filtered, "severity": "high" if c == filtered else "safe"} for c in _CATEGORIES
    }
    return out


def _credential(headers: Mapping[str, str]) -> tuple[str | None, bool]:
    """(the credential, whether it has the right shape): an api-key or an Entra ID bearer JWT."""
    key = headers.get("api-key")
    if key is not None:
        return key, bool(_KEY.fullmatch(key))
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        token = auth[7:].strip()
        return token, bool(_JWT.fullmatch(token))
    return None, False


def request_problem(
    deployment: str | None, headers: Mapping[str, str], query: Mapping[str, str], require_key: str | None
) -> tuple[int, bytes] | None:
    """Azure's answer to a request it refuses before reading it (credentials, api-version), else None."""
    credential, shaped = _credential(headers)
    if credential is None or not shaped or (require_key is not None and credential != require_key):
        return auth_error(credential is None)
    if deployment is not None:
        version = query.get("api-version")
        if not version:
            return 404, orjson.dumps({"error": {"code": "404", "message": "Resource not found"}})
        if not _VERSION.fullmatch(version):
            msg = f"The API version '{version}' is not supported."
            return 400, orjson.dumps({"error": {"code": "BadRequest", "message": msg}})
    return None


def auth_error(missing: bool) -> tuple[int, bytes]:
    msg = (
        "Access denied due to missing subscription key. Make sure to include subscription key when making "
        "requests to an API."
        if missing
        else "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
        "key for an active subscription and use a correct regional API endpoint for your resource."
    )
    return 401, orjson.dumps({"error": {"code": "401", "message": msg}})


def decorate_body(body: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion as Azure returns it: prompt and completion filter results."""
    body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _results()}]
    for choice in body.get("choices") or ():
        filtered = "violence" if choice.get("finish_reason") == "content_filter" else None
        choice["content_filter_results"] = _results(filtered)
    return body


def first_stream_frame(rid: str, created: int) -> bytes:
    """Azure's first stream chunk: no choices, no model, the prompt's filter results."""
    obj = {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _results()}],
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def error_object(status: int, kind: str, code: str | None, openai: dict[str, Any], retry_after: float | None) -> Any:
    """Azure's error body: its own for content filter, auth, rate limit, a missing deployment and server errors;
    the OpenAI shape (what the model service says) for the rest, e.g. context_length_exceeded."""
    message = openai["error"]["message"]
    if code == "content_filter":
        msg = (
            "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
            "Please modify your prompt and retry."
        )
        inner = {"code": "ResponsibleAIPolicyViolation", "content_filter_result": _results("violence")}
        return {
            "error": {
                "message": msg,
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": inner,
            }
        }
    if kind == "rate_limit":
        secs = int(retry_after) if retry_after is not None else 1
        msg = (
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have exceeded token rate limit "
            f"of your current pricing tier. Please retry after {secs} seconds."
        )
        return {"error": {"code": "429", "message": msg}}
    if kind in ("auth", "permission"):
        return orjson.loads(auth_error(False)[1])
    if kind == "not_found":
        msg = (
            "The API deployment for this resource does not exist. If you created the deployment within the last "
            "5 minutes, please wait a moment and try again."
        )
        return {"error": {"code": "DeploymentNotFound", "message": msg}}
    if status >= 500:
        return {"error": {"code": "InternalServerError", "message": message}}
    return openai


def retry_headers(retry_after: float | None) -> dict[str, str]:
    """``retry-after-ms`` (Azure's precise wait) for a 429 that has a wait."""
    return {} if retry_after is None else {"retry-after-ms": str(int(retry_after * 1000))}
