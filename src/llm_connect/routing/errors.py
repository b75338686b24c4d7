"""Errors of routing policies (both are :class:`~llm_connect.errors.LLMError`)::

LLMError
└── RoutingPolicyError                 no rule fits a call; .rule_index, .task_type
    ├── PolicyConfigError              (also an LLMConfigurationError) a bad rule, rejected at load
    └── PolicyViolationError           a trust constraint forbids this call; .trust, .constraint
"""

from __future__ import annotations

from typing import Any

from ..errors import LLMConfigurationError, LLMError

__all__ = ["PolicyConfigError", "PolicyViolationError", "RoutingPolicyError"]


class RoutingPolicyError(LLMError):
    """A routing policy cannot serve a call (or was configured wrongly: see the subclasses)."""

    code = "routing_policy_error"

    def __init__(
        self, message: str = "", *, rule_index: int | None = None, task_type: str | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.rule_index = rule_index
        self.task_type = task_type


class PolicyConfigError(RoutingPolicyError, LLMConfigurationError):
    """A policy rule is invalid; the message names the rule (index and task_type)."""

    code = "routing_policy_config_error"


class PolicyViolationError(RoutingPolicyError):
    """A trust constraint forbids this call (e.g. an ``auto_apply`` agent taking an autonomous action)."""

    code = "policy_violation"

    def __init__(self, message: str = "", *, trust: str | None = None, constraint: Any = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.trust = trust
        self.constraint = constraint
