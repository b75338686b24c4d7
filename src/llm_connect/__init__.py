"""llm-connect: one fast LLM layer for multi-agent systems.

Call any provider through one contract (``create_adapter``), route by policy (``Router``,
``RoutingPolicy``), enforce token and USD budgets across delegation chains (``BudgetTracker``), and
account every token and cent (``UsageTracker``, ``Pricing``, ``Ledger``).

Names are imported lazily on first use, so ``import llm_connect`` costs almost nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentReply",
    "AgentRuntime",
    "Attempt",
    "BudgetExhaustedError",
    "BudgetTracker",
    "BudgetWarning",
    "ConfigError",
    "Deployment",
    "EmbeddingResponse",
    "FakeAdapter",
    "FakeBackend",
    "FakeReply",
    "GatewayConfig",
    "InboundMessage",
    "LLMAdapter",
    "LLMAuthenticationError",
    "LLMBackend",
    "LLMBudgetExceededError",
    "LLMCapabilityError",
    "LLMConfigurationError",
    "LLMContentFilterError",
    "LLMContextWindowExceededError",
    "LLMError",
    "LLMInvalidRequestError",
    "LLMProviderUnavailableError",
    "LLMRateLimitError",
    "LLMResponse",
    "LLMResult",
    "LLMTimeout",
    "LLMTimeoutError",
    "LLMUsageError",
    "Ledger",
    "MemoryBudgetStore",
    "Message",
    "PolicyConfigError",
    "PolicyViolationError",
    "Pricing",
    "RedisBudgetStore",
    "RedisRouterState",
    "Reservation",
    "Router",
    "RoutingPolicy",
    "RoutingPolicyError",
    "RunConfig",
    "StreamChunk",
    "ThreadBudget",
    "ThreadBudgetRegistry",
    "Tracing",
    "Transport",
    "Usage",
    "UsageEvent",
    "UsageTracker",
    "build_messages",
    "build_system_prompt",
    "create_adapter",
    "get_llm",
    "handle_message",
    "load_config",
    "run_agent",
    "run_agent_reply",
]

# public name -> module that defines it
_EXPORTS = {
    "Agent": "agents.models",
    "AgentReply": "agents.runner",
    "AgentRuntime": "agents.runner",
    "Attempt": "errors",
    "BudgetExhaustedError": "errors",
    "BudgetTracker": "budget",
    "BudgetWarning": "budget",
    "ConfigError": "config",
    "Deployment": "routing",
    "EmbeddingResponse": "embeddings",
    "FakeAdapter": "providers.fake",
    "FakeBackend": "testing.fake_backend",
    "FakeReply": "providers.fake",
    "GatewayConfig": "config",
    "InboundMessage": "agents.models",
    "LLMAdapter": "adapter",
    "LLMAuthenticationError": "errors",
    "LLMBackend": "adapter",
    "LLMBudgetExceededError": "errors",
    "LLMCapabilityError": "errors",
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
    "Ledger": "usage",
    "MemoryBudgetStore": "budget",
    "Message": "types",
    "PolicyConfigError": "routing",
    "PolicyViolationError": "routing",
    "Pricing": "usage",
    "RedisBudgetStore": "budget",
    "RedisRouterState": "routing",
    "Reservation": "budget",
    "Router": "routing",
    "RoutingPolicy": "routing",
    "RoutingPolicyError": "routing",
    "RunConfig": "types",
    "StreamChunk": "types",
    "ThreadBudget": "budget",
    "ThreadBudgetRegistry": "budget",
    "Tracing": "tracing",
    "Transport": "transport",
    "Usage": "types",
    "UsageEvent": "usage",
    "UsageTracker": "usage",
    "build_messages": "agents.prompts",
    "build_system_prompt": "agents.prompts",
    "create_adapter": "registry",
    "get_llm": "registry",
    "handle_message": "agents.tasks",
    "load_config": "config",
    "run_agent": "agents.runner",
    "run_agent_reply": "agents.runner",
}


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
    from .agents.models import Agent, InboundMessage
    from .agents.prompts import build_messages, build_system_prompt
    from .agents.runner import AgentReply, AgentRuntime, run_agent, run_agent_reply
    from .agents.tasks import handle_message
    from .budget import (
        BudgetTracker,
        BudgetWarning,
        MemoryBudgetStore,
        RedisBudgetStore,
        Reservation,
        ThreadBudget,
        ThreadBudgetRegistry,
    )
    from .config import ConfigError, GatewayConfig, load_config
    from .embeddings import EmbeddingResponse
    from .errors import (
        Attempt,
        BudgetExhaustedError,
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
        LLMTimeout,
        LLMTimeoutError,
        LLMUsageError,
    )
    from .providers.fake import FakeAdapter, FakeReply
    from .registry import create_adapter, get_llm
    from .routing import (
        Deployment,
        PolicyConfigError,
        PolicyViolationError,
        RedisRouterState,
        Router,
        RoutingPolicy,
        RoutingPolicyError,
    )
    from .testing.fake_backend import FakeBackend
    from .tracing import Tracing
    from .transport import Transport
    from .types import LLMResponse, Message, RunConfig, StreamChunk, Usage
    from .usage import Ledger, Pricing, UsageEvent, UsageTracker
