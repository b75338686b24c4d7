"""Token and USD budgets: reserve the worst case before a call, settle to the actual spend after it.

* :class:`BudgetTracker` — a budget (tokens, USD or both; optionally daily / monthly), with ``child()``
  sub-budgets for delegation chains; :class:`Reservation` is what ``reserve()`` returns.
* :class:`MemoryBudgetStore` (one process) and :class:`RedisBudgetStore` (many) hold the numbers.
* :class:`ThreadBudgetRegistry` / :class:`ThreadBudget` — per-thread budgets.
* :class:`BudgetWarning` — sent once per threshold crossed (75 %, 90 %, 95 % by default).

Errors: :class:`~llm_connect.errors.LLMBudgetExceededError` and its subclass
:class:`~llm_connect.errors.BudgetExhaustedError`. See docs/budgets.md.
"""

from ..errors import BudgetExhaustedError, LLMBudgetExceededError
from .redis_store import RedisBudgetStore
from .stores import BudgetStore, MemoryBudgetStore, StoreUnavailableError
from .threads import ThreadBudget, ThreadBudgetRegistry
from .tracker import BudgetState, BudgetTracker, Reservation
from .warnings import DEFAULT_THRESHOLDS, BudgetWarning

__all__ = [
    "DEFAULT_THRESHOLDS",
    "BudgetExhaustedError",
    "BudgetState",
    "BudgetStore",
    "BudgetTracker",
    "BudgetWarning",
    "LLMBudgetExceededError",
    "MemoryBudgetStore",
    "RedisBudgetStore",
    "Reservation",
    "StoreUnavailableError",
    "ThreadBudget",
    "ThreadBudgetRegistry",
]
