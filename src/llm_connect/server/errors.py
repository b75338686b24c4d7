"""Gateway errors: OpenAI-style bodies, the LLMError -> HTTP mapping, and secret redaction.

Every error the gateway sends has the OpenAI shape ``{"error": {"message", "type", "code", "param"}}``
(``/complete`` answers its seed's ``{"error": "All providers unavailable"}`` for 503). Status codes:

=====  =========================  ==========================================================
400    invalid_json / ...         malformed JSON, a request no provider can serve
401    invalid_api_key            missing or unknown API key
403    model_not_allowed / ...    the key may not use that model, tenant or endpoint
404    model_not_found            unknown model, group or alias
413    request_too_large          body over ``server.max_body_bytes``
422    invalid_field              schema error; ``param`` names the field
429    rate_limit_exceeded        the key's / tenant's rpm or tpm (Retry-After set)
429    budget_exceeded            a token / USD budget cannot fit the request
429    upstream_rate_limited      every deployment was rate-limited by its provider
502    upstream_authentication_error  a provider refused the gateway's credentials
503    provider_unavailable       every deployment failed (5xx, connection, broken reply)
503    budget_store_unavailable   the budget store is unreachable (fail_closed)
504    timeout                    no answer within the request's timeout
=====  =========================  ==========================================================
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import (
    LLMAuthenticationError,
    LLMBudgetExceededError,
    LLMCapabilityError,
    LLMConfigurationError,
    LLMContentFilterError,
    LLMContextWindowExceededError,
    LLMError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    LLMTimeoutError,
)

if TYPE_CHECKING:
    from ..wire.inbound import RequestProblem

__all__ = ["ApiError", "RedactingFilter", "Redactor", "error_body", "from_exception", "problem_error"]

log = logging.getLogger("llm_connect.server")

Headers = list[tuple[bytes, bytes]]


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


class ApiError(Exception):
    """An error answer: HTTP status + OpenAI-style body (+ headers such as Retry-After)."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        *,
        headers: Headers | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers: Headers = list(headers or ())
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)

    def encode(self) -> bytes:
        return orjson.dumps(self.body())

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.message!r})"


class Redactor:
    """Replaces known secrets (provider keys) in any text with ``***``.

    ``secrets`` may be a callable returning them: it is then called on first use (so that finding the keys,
    which needs the provider registry, costs nothing at start-up).
    """

    def __init__(self, secrets: Iterable[str] | Callable[[], Iterable[str]] = ()) -> None:
        self._source: Callable[[], Iterable[str]] | None = secrets if callable(secrets) else None
        self._re: re.Pattern[str] | None = None
        if self._source is None:
            self._compile(secrets)  # type: ignore[arg-type]

    def _compile(self, secrets: Iterable[str]) -> None:
        uniq = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        self._re = re.compile("|".join(re.escape(s) for s in uniq)) if uniq else None

    def _load(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            self._compile(source())

    def __call__(self, text: str) -> str:
        if self._source is not None:
            self._load()
        if self._re is None or not text:
            return text
        return self._re.sub("***", text)

    @property
    def active(self) -> bool:
        if self._source is not None:
            self._load()
        return self._re is not None


class RedactingFilter(logging.Filter):
    """A handler filter that scrubs secrets from the message and the traceback of every record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self._fmt = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactor.active:
            return True
        try:
            msg = record.getMessage()
        except Exception:
            return True
        record.msg = self.redactor(msg)
        record.args = None
        if record.exc_info:
            record.exc_text = self.redactor(self._fmt.formatException(record.exc_info))
            record.exc_info = None
        return True


def _causes(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        out.append(cur)
        cur = cur.__cause__
    return out


def _attempts_summary(exc: LLMProviderUnavailableError) -> str:
    if not exc.attempts:
        return ""
    parts = [f"{a.deployment}: {a.error_type}" for a in exc.attempts[:8]]
    more = len(exc.attempts) - 8
    return " (" + "; ".join(parts) + (f"; +{more} more" if more > 0 else "") + ")"


def _message(exc: LLMError) -> str:
    return (exc.message or type(exc).__name__).replace("\n", " ")


def from_exception(exc: BaseException, redact: Redactor | None = None) -> ApiError:
    """Map any exception raised while serving a call to an ApiError (never leaks a traceback or a key)."""
    if isinstance(exc, ApiError):
        return exc
    r = redact or Redactor()
    if not isinstance(exc, LLMError):
        log.error("internal error while serving a request: %s: %s", type(exc).__name__, r(str(exc)), exc_info=exc)
        return ApiError(500, "internal error", "api_error", "internal_error")
    msg = r(_message(exc))
    if isinstance(exc, LLMBudgetExceededError):
        from ..budget import StoreUnavailableError

        if isinstance(exc.__cause__, StoreUnavailableError):
            return ApiError(
                503,
                "the budget store is unreachable; try again later",
                "api_error",
                "budget_store_unavailable",
                retry_after=1,
            )
        return ApiError(429, msg, "insufficient_quota", "budget_exceeded")
    if isinstance(exc, LLMRateLimitError):
        return ApiError(429, msg, "rate_limit_error", "upstream_rate_limited", retry_after=exc.retry_after)
    if isinstance(exc, LLMTimeoutError):
        return ApiError(504, msg, "timeout_error", "timeout")
    if isinstance(exc, LLMProviderUnavailableError):
        limited = [a for a in exc.attempts if a.error_type == "LLMRateLimitError"]
        if limited and len(limited) == len(exc.attempts):  # every deployment said "slow down": that is a 429
            waits = [getattr(c, "retry_after", None) for c in _causes(exc)]
            retry = min((w for w in waits if w), default=None)
            return ApiError(
                429,
                r(_message(exc) + _attempts_summary(exc)),
                "rate_limit_error",
                "upstream_rate_limited",
                retry_after=retry,
            )
        return ApiError(
            503,
            r(_message(exc) + _attempts_summary(exc)),
            "api_error",
            "provider_unavailable",
            retry_after=getattr(exc, "retry_after", None),
        )
    if isinstance(exc, LLMAuthenticationError):
        return ApiError(
            502, "the provider refused the gateway's credentials", "api_error", "upstream_authentication_error"
        )
    if isinstance(exc, LLMContextWindowExceededError):
        return ApiError(400, msg, "invalid_request_error", "context_length_exceeded", "messages")
    if isinstance(exc, LLMContentFilterError):
        return ApiError(400, msg, "invalid_request_error", "content_filter")
    if isinstance(exc, LLMCapabilityError):  # e.g. embeddings on a model group of chat-only deployments
        return ApiError(400, msg, "invalid_request_error", "unsupported", "model")
    if isinstance(exc, LLMInvalidRequestError):
        if exc.status_code == 404:
            return ApiError(404, msg, "invalid_request_error", "model_not_found", "model")
        return ApiError(400, msg, "invalid_request_error", "invalid_request")
    if isinstance(exc, LLMConfigurationError):
        return ApiError(503, msg, "api_error", "configuration_error")
    from ..routing.errors import PolicyViolationError, RoutingPolicyError

    if isinstance(exc, PolicyViolationError):
        return ApiError(403, msg, "permission_error", "policy_violation")
    if isinstance(exc, RoutingPolicyError):
        return ApiError(400, msg, "invalid_request_error", "no_matching_policy", "task_type")
    log.error("unexpected %s while serving a request: %s", type(exc).__name__, msg)
    return ApiError(500, msg, "api_error", exc.code or "internal_error")


def problem_error(p: RequestProblem) -> ApiError:
    """The answer to a request an inbound codec could not translate (the status, code and field it names)."""
    return ApiError(p.status, p.message, "invalid_request_error", p.code, p.param)


def field_error(param: str, problem: str) -> ApiError:
    """422 naming the offending field."""
    return ApiError(422, f"{param}: {problem}", "invalid_request_error", "invalid_field", param)


def header_value(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in headers:
        if k == name:
            return v
    return None
