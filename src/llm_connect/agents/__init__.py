"""Agent workers: personas → system prompt, thread history and budgets, model calls, Celery tasks.

::

    from llm_connect.agents import Agent, build_system_prompt, build_messages, run_agent, run_agent_reply
    from llm_connect.agents.tasks import handle_message          # needs celery: pip install 'llm-connect[agents]'

``run_agent`` returns the reply text (seed 002); ``run_agent_reply`` the whole :class:`AgentReply`.
Names are imported on first use, so importing this package does not import Celery (only ``tasks`` does).
See docs/agents.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS = {
    "AI_TRANSPARENCY_CLAUSE": "prompts",
    "BUDGET_EXHAUSTED_REPLY": "runner",
    "FALLBACK_REPLY": "runner",
    "TRUST_LEVELS": "models",
    "Agent": "models",
    "AgentConfigError": "models",
    "AgentReply": "runner",
    "AgentRuntime": "runner",
    "AgentSettings": "settings",
    "GatewayBackend": "backend",
    "InProcessBackend": "backend",
    "InboundMessage": "models",
    "InvalidMessageError": "models",
    "MemoryThreadHistory": "history",
    "MessageContent": "models",
    "ModelBackend": "backend",
    "RedisThreadHistory": "history",
    "Sender": "models",
    "ThreadHistory": "history",
    "build_messages": "prompts",
    "build_system_prompt": "prompts",
    "cleanup_thread": "tasks",
    "collective_proposal": "tasks",
    "delegate": "tasks",
    "delegation_chain": "tasks",
    "handle_message": "tasks",
    "load_settings": "settings",
    "run_agent": "runner",
    "run_agent_reply": "runner",
}

__all__ = [
    "AI_TRANSPARENCY_CLAUSE",
    "BUDGET_EXHAUSTED_REPLY",
    "FALLBACK_REPLY",
    "TRUST_LEVELS",
    "Agent",
    "AgentConfigError",
    "AgentReply",
    "AgentRuntime",
    "AgentSettings",
    "GatewayBackend",
    "InProcessBackend",
    "InboundMessage",
    "InvalidMessageError",
    "MemoryThreadHistory",
    "MessageContent",
    "ModelBackend",
    "RedisThreadHistory",
    "Sender",
    "ThreadHistory",
    "build_messages",
    "build_system_prompt",
    "cleanup_thread",
    "collective_proposal",
    "delegate",
    "delegation_chain",
    "handle_message",
    "load_settings",
    "run_agent",
    "run_agent_reply",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    except ImportError as exc:
        if module == "tasks" and exc.name and exc.name.split(".")[0] in ("celery", "kombu", "billiard"):
            from ..errors import LLMConfigurationError

            raise LLMConfigurationError(
                f"{name} needs Celery, which is not installed: pip install 'llm-connect[agents]'"
            ) from exc
        raise
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from .backend import GatewayBackend, InProcessBackend, ModelBackend
    from .history import MemoryThreadHistory, RedisThreadHistory, ThreadHistory
    from .models import (
        TRUST_LEVELS,
        Agent,
        AgentConfigError,
        InboundMessage,
        InvalidMessageError,
        MessageContent,
        Sender,
    )
    from .prompts import AI_TRANSPARENCY_CLAUSE, build_messages, build_system_prompt
    from .runner import BUDGET_EXHAUSTED_REPLY, FALLBACK_REPLY, AgentReply, AgentRuntime, run_agent, run_agent_reply
    from .settings import AgentSettings, load_settings
    from .tasks import cleanup_thread, collective_proposal, delegate, delegation_chain, handle_message
