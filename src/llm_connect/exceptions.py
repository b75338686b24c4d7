"""The error tree under the name the seeds use: ``from llm_connect.exceptions import LLMBudgetExceededError``.

Every name here is the very object defined in :mod:`llm_connect.errors` (which draws the tree in its
docstring), so ``except llm_connect.exceptions.LLMError`` and ``except llm_connect.errors.LLMError`` catch
the same errors. Nothing is defined here.
"""

from __future__ import annotations

from .errors import (
    Attempt,
    BudgetExhaustedError,
    LLMAuthenticationError,
    LLMBudgetExceededError,
    LLMConfigurationError,
    LLMContentFilterError,
    LLMContextWindowExceededError,
    LLMError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    LLMTimeout,
    LLMTimeoutError,
    LLMUsageError,
)

__all__ = [
    "Attempt",
    "BudgetExhaustedError",
    "LLMAuthenticationError",
    "LLMBudgetExceededError",
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
