"""llm-connect: one fast LLM layer for multi-agent systems.

Call any provider through one contract (``create_adapter``), route by policy, enforce token and USD
budgets across delegation chains, and account every token and cent.

Names are imported lazily on first use, so ``import llm_connect`` costs almost nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "BudgetExhaustedError": "errors",
    "FakeAdapter": "providers.fake",
    "FakeReply": "providers.fake",
    "LLMAdapter": "adapter",
    "LLMAuthenticationError": "errors",
    "LLMBackend": "adapter",
    "LLMBudgetExceededError": "errors",
    "LLMConfigurationError": "errors",
    "LLMContentFilterError": "errors",
    "LLMContextWindowExceededError": "errors",
    "LLMError": "errors",
    "LLMInvalidRequestError": "errors",
    "LLMProviderUnavailableError": "errors",
    "LLMRateLimitError": "errors",
    "LLMResponse": "types",
    "LLMResult": "adapter",
    "LLMTimeout": "errors",
    "LLMTimeoutError": "errors",
    "LLMUsageError": "errors",
    "Message": "types",
    "RunConfig": "types",
    "StreamChunk": "types",
    "Transport": "transport",
    "Usage": "types",
    "create_adapter": "registry",
    "get_llm": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_connect' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: the next lookup skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from .adapter import LLMAdapter, LLMBackend, LLMResult
    from .errors import (
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
    from .providers.fake import FakeAdapter, FakeReply
    from .registry import create_adapter, get_llm
    from .transport import Transport
    from .types import LLMResponse, Message, RunConfig, StreamChunk, Usage
