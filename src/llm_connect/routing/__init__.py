"""Routing: :class:`Router` (model groups, strategies, retries, cooldowns, fallbacks) and
:class:`RoutingPolicy` (declarative rules per task type, cost caps, trust constraints).

Both are adapters: wrappers with the same contract as the adapters they route to. See docs/routing.md.
``RedisRouterState`` is imported on first use (it needs the ``redis`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .deployment import Deployment
from .errors import PolicyConfigError, PolicyViolationError, RoutingPolicyError
from .health import CooldownPolicy, MemoryRouterState, RetryPolicy, RouterState
from .policy import ResolvedRoute, RoutingPolicy
from .router import Router
from .strategies import STRATEGIES, Strategy

if TYPE_CHECKING:
    from .redis_state import RedisRouterState

__all__ = [
    "STRATEGIES",
    "CooldownPolicy",
    "Deployment",
    "MemoryRouterState",
    "PolicyConfigError",
    "PolicyViolationError",
    "RedisRouterState",
    "ResolvedRoute",
    "RetryPolicy",
    "Router",
    "RouterState",
    "RoutingPolicy",
    "RoutingPolicyError",
    "Strategy",
]


def __getattr__(name: str) -> Any:
    if name == "RedisRouterState":
        from .redis_state import RedisRouterState

        globals()[name] = RedisRouterState
        return RedisRouterState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
