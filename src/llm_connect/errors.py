"""The error tree of llm-connect.

Every failure a caller can see is an :class:`LLMError`. Provider errors are mapped
once, at the adapter boundary (the wire codec's ``classify_error``), from the HTTP
status code and the provider's own error type, and re-raised with ``from exc``.

::

    LLMError                               provider, model, status_code, request_id
    ├── LLMTimeoutError (alias LLMTimeout) wall-clock cap or upstream read timeout
    ├── LLMRateLimitError                  429; .retry_after in seconds (or None)
    ├── LLMAuthenticationError             401 / 403, bad or missing key upstream
    ├── LLMInvalidRequestError             400 / 404 / 422 that no retry can fix
    │   ├── LLMContextWindowExceededError  prompt + max_tokens over the model's window
    │   ├── LLMContentFilterError          refused by the provider's safety filter
    │   └── LLMCapabilityError             this adapter cannot make that kind of call
    │                                      (embeddings on a chat-only provider)
    ├── LLMProviderUnavailableError        5xx, Anthropic 529, connection refused/reset,
    │                                      malformed or cut-off upstream reply;
    │                                      .attempts when a router gave up
    ├── LLMConfigurationError              missing key, missing extra (names the pip line),
    │                                      unknown provider, bad config value
    ├── LLMUsageError                      the library was called wrongly (e.g. the sync
    │                                      facade inside a running event loop)
    └── LLMBudgetExceededError             a token / USD budget cannot fit the request
        └── BudgetExhaustedError           a per-thread budget is used up

``retryable`` tells a router whether another attempt (same or other deployment) can help.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Attempt",
    "BudgetExhaustedError",
    "LLMAuthenticationError",
    "LLMBudgetExceededError",
    "LLMCapabilityError",
    "LLMConfigurationError",
    "LLMContentFilterError",
    "LLMContextWindowExceededError",
    "LLMError",
    "LLMInvalidRequestError",
    "LLMProviderUnavailableError",
    "LLMRateLimitError",
    "LLMTimeout",
    "LLMTimeoutError",
    "LLMUsageError",
]


class LLMError(Exception):
    """Root of every error llm-connect raises."""

    retryable: bool = False
    #: short machine-readable code, used in gateway error bodies
    code: str = "llm_error"

    def __init__(
        self,
        message: str = "",
        *,
        provider: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.request_id = request_id
        #: the provider's parsed error body, if any (never contains our keys)
        self.body = body

    def __str__(self) -> str:
        where = ":".join(p for p in (self.provider, self.model) if p)
        bits = [self.message or type(self).__name__]
        if where:
            bits.append(f"[{where}]")
        if self.status_code is not None:
            bits.append(f"(HTTP {self.status_code})")
        return " ".join(bits)

    def __reduce__(self) -> tuple[Any, ...]:
        # keep keyword attributes across pickling (Celery, multiprocessing)
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[LLMError], message: str, state: dict[str, Any]) -> LLMError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class LLMTimeoutError(LLMError):
    """The call exceeded its wall-clock cap (``RunConfig.timeout``) or the upstream read timed out."""

    retryable = True
    code = "timeout"


#: seed 004's name for the timeout error
LLMTimeout = LLMTimeoutError


class LLMRateLimitError(LLMError):
    """HTTP 429 (or a provider's rate-limit error type). ``retry_after`` in seconds if the provider said."""

    retryable = True
    code = "rate_limit_exceeded"

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class LLMAuthenticationError(LLMError):
    """The provider rejected the credentials (401/403)."""

    code = "authentication_error"


class LLMInvalidRequestError(LLMError):
    """The request itself is wrong; retrying it unchanged cannot succeed."""

    code = "invalid_request_error"


class LLMContextWindowExceededError(LLMInvalidRequestError):
    """Prompt plus requested output do not fit the model's context window."""

    code = "context_length_exceeded"


class LLMContentFilterError(LLMInvalidRequestError):
    """The provider's safety system refused the prompt or the completion."""

    code = "content_filter"


class LLMCapabilityError(LLMInvalidRequestError):
    """The adapter cannot make this kind of call at all (embeddings on a provider without an embedding API,
    ``dimensions`` on a model that cannot shorten its vectors). Raised before any provider call; a router
    passes over such a deployment to the next one (the request may suit another)."""

    code = "unsupported"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try a router made: which deployment, what went wrong, how long it took."""

    deployment: str
    error: str
    error_type: str
    elapsed_ms: float


class LLMProviderUnavailableError(LLMError):
    """The provider could not serve: 5xx, 529 overloaded, connection refused or reset, a broken reply.

    When raised by a router after every deployment failed, ``attempts`` lists each try.
    """

    retryable = True
    code = "provider_unavailable"

    def __init__(
        self, message: str = "", *, attempts: list[Attempt] | None = None, retry_after: float | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.attempts: list[Attempt] = list(attempts or [])
        #: seconds the provider asked us to wait (a 503 or 529 with Retry-After), or None
        self.retry_after = retry_after

    def __str__(self) -> str:
        base = super().__str__()
        if not self.attempts:
            return base
        lines = [base] + [
            f"  - {a.deployment}: {a.error_type}: {a.error} ({a.elapsed_ms:.0f} ms)" for a in self.attempts
        ]
        return "\n".join(lines)


class LLMConfigurationError(LLMError):
    """Something about the set-up is wrong: a missing key, a missing extra, an unknown provider."""

    code = "configuration_error"


class LLMUsageError(LLMError):
    """The library was used in a way it cannot serve (e.g. the sync API inside a running event loop)."""

    code = "usage_error"


class LLMBudgetExceededError(LLMError):
    """A token or USD budget cannot fit this request. Raised before any provider call."""

    code = "budget_exceeded"

    def __init__(
        self,
        message: str = "",
        *,
        budget_id: str | None = None,
        requested: Any = None,
        remaining: Any = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.budget_id = budget_id
        self.requested = requested
        self.remaining = remaining
        #: what the refusing budget lacked: "tokens" or "usd" (None: refused for another reason)
        self.unit: str | None = None


class BudgetExhaustedError(LLMBudgetExceededError):
    """A per-thread budget (``ThreadBudgetRegistry``) is used up."""

    code = "thread_budget_exhausted"
