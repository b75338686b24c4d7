"""Token and USD budgets: reserve the worst case before a call, settle to the actual spend after it.

* :class:`BudgetTracker` — a budget (tokens, USD or both; optionally daily / monthly), with ``child()``
  sub-budgets for delegation chains; :class:`Reservation` is what ``reserve()`` returns.
* :class:`MemoryBudgetStore` (one process) and :class:`RedisBudgetStore` (many; imported on first use) hold the numbers;
  :class:`LeasedBudgetStore` spends big Redis budgets from per-process slices (no round trip per call).
* :class:`ThreadBudgetRegistry` / :class:`ThreadBudget` — per-thread budgets.
* :class:`BudgetWarning` — sent once per threshold crossed (75 %, 90 %, 95 % by default).

Errors: :class:`~llm_connect.errors.LLMBudgetExceededError` and its subclass
:class:`~llm_connect.errors.BudgetExhaustedError`. See docs/budgets.md.
"""

from typing import TYPE_CHECKING, Any

from ..errors import BudgetExhaustedError, LLMBudgetExceededError
from .stores import BudgetStore, MemoryBudgetStore, StoreUnavailableError
from .threads import ThreadBudget, ThreadBudgetRegistry
from .tracker import BudgetState, BudgetTracker, Reservation
from .warnings import DEFAULT_THRESHOLDS, BudgetWarning

if TYPE_CHECKING:
    from .leases import LeasedBudgetStore
    from .redis_store import RedisBudgetStore

__all__ = [
    "DEFAULT_THRESHOLDS",
    "BudgetExhaustedError",
    "BudgetState",
    "BudgetStore",
    "BudgetTracker",
    "BudgetWarning",
    "LLMBudgetExceededError",
    "LeasedBudgetStore",
    "MemoryBudgetStore",
    "RedisBudgetStore",
    "Reservation",
    "StoreUnavailableError",
    "ThreadBudget",
    "ThreadBudgetRegistry",
]


def __getattr__(name: str) -> Any:
    # the Redis client (~60 ms to import) loads only when a Redis store is asked for
    if name == "RedisBudgetStore":
        from .redis_store import RedisBudgetStore

        return RedisBudgetStore
    if name == "LeasedBudgetStore":
        from .leases import LeasedBudgetStore

        return LeasedBudgetStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
