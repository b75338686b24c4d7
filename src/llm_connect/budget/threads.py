"""Per-thread (conversation) token budgets: ThreadBudgetRegistry hands each thread a ThreadBudget.

A ThreadBudget is a thin view over a :class:`BudgetTracker` with ``budget_id="thread:<id>"``, so a thread's
budget can be put on ``RunConfig.budget_tracker`` (reserve / settle like any budget), live in Redis (shared by
replicas), or sit under a tenant budget (``parent=``). Each threshold fires once per thread.

Seed-style use::

    registry = ThreadBudgetRegistry(max_tokens_per_thread=100_000)
    registry.check(thread_id, estimated_tokens=1000)        # before the call; BudgetExhaustedError if used up
    budget, warnings = registry.consume(thread_id, 500, 300)  # after it; warnings: thresholds crossed
    final = registry.cleanup_thread(thread_id)              # when the thread ends: final numbers, state freed
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Literal

from ..errors import BudgetExhaustedError
from .stores import BudgetStore, MemoryBudgetStore, SettleResult, StoreUnavailableError
from .tracker import BudgetState, BudgetTracker
from .warnings import DEFAULT_THRESHOLDS, BudgetWarning

__all__ = ["ThreadBudget", "ThreadBudgetRegistry"]

log = logging.getLogger("llm_connect.budget")


class ThreadBudget:
    """One thread's token budget. Numbers are read from the store (live); after
    :meth:`ThreadBudgetRegistry.cleanup_thread` they are frozen at their final values.

    ``prompt_tokens``, ``completion_tokens`` and ``request_count`` count what went through this object
    (this process); ``total_tokens`` is the budget's actual usage across all processes sharing it.
    """

    def __init__(self, thread_id: str, tracker: BudgetTracker) -> None:
        self.thread_id = thread_id
        self.tracker = tracker
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.request_count = 0
        self._lock = threading.Lock()
        self._final: BudgetState | None = None

    def __repr__(self) -> str:
        return f"ThreadBudget(thread_id={self.thread_id!r}, used={self.total_tokens}, max_tokens={self.max_tokens})"

    def state(self) -> BudgetState:
        return self._final if self._final is not None else self.tracker.state()

    async def astate(self) -> BudgetState:
        return self._final if self._final is not None else await self.tracker.astate()

    @property
    def max_tokens(self) -> int:
        return self.tracker.total or 0

    @property
    def total_tokens(self) -> int:
        """Tokens actually used (charged plus any overrun)."""
        st = self.state()
        return st.spent + st.overrun

    @property
    def remaining(self) -> int:
        """Tokens that can still be reserved on this thread's own budget."""
        return self.state().remaining or 0

    @property
    def is_exhausted(self) -> bool:
        return self.total_tokens >= self.max_tokens

    @property
    def percent_used(self) -> float:
        return 100.0 if not self.max_tokens else self.total_tokens * 100.0 / self.max_tokens

    @property
    def triggered_thresholds(self) -> frozenset[float]:
        """Thresholds that already fired for this thread."""
        return frozenset(t for unit, t in self.state().fired if unit == "tokens")

    @property
    def closed(self) -> bool:
        """True once the thread was cleaned up (numbers are final)."""
        return self._final is not None

    def can_consume(self, estimated_tokens: int) -> bool:
        """True if ``estimated_tokens`` still fit (here and in any parent budget)."""
        if self._final is not None:
            return estimated_tokens <= (self._final.remaining or 0)
        left = self.tracker.remaining()
        return left is None or estimated_tokens <= left

    def _count(self, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.request_count += 1

    def _consumed(
        self, prompt_tokens: int, completion_tokens: int, usd: Decimal | None
    ) -> tuple[SettleResult | None, list[BudgetWarning]]:
        if self._final is not None:
            raise ValueError(f"thread {self.thread_id!r} was cleaned up; its budget is closed")
        result = self.tracker._record(prompt_tokens + completion_tokens, usd)  # validates before counting
        self._count(prompt_tokens, completion_tokens)
        return result

    def consume(
        self, prompt_tokens: int = 0, completion_tokens: int = 0, *, usd: Decimal | None = None
    ) -> list[BudgetWarning]:
        """Record usage that already happened (never refused; beyond the cap it is kept as overrun).

        ``usd`` (the usage's cost) is required when a parent budget caps USD. Returns the thresholds this
        usage crossed.
        """
        return self._consumed(prompt_tokens, completion_tokens, usd)[1]

    def to_dict(self) -> dict[str, Any]:
        st = self.state()
        return {
            "thread_id": self.thread_id,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": st.spent + st.overrun,
            "reserved_tokens": st.reserved,
            "remaining": st.remaining or 0,
            "max_tokens": self.max_tokens,
            "request_count": self.request_count,
            "percent_used": self.percent_used,
            "triggered_thresholds": sorted(t for unit, t in st.fired if unit == "tokens"),
        }


class ThreadBudgetRegistry:
    """Token budgets per thread, created on first use with ``max_tokens_per_thread``.

    ``store`` (default: one in-memory store for the registry) may be a RedisBudgetStore so replicas share
    thread budgets. ``parent`` puts every thread budget under another budget (e.g. the tenant's), and then
    the parent's store is used. Thread-safe.
    """

    def __init__(
        self,
        max_tokens_per_thread: int = 100_000,
        store: BudgetStore | None = None,
        *,
        parent: BudgetTracker | None = None,
        thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
        on_unavailable: Literal["fail_closed", "fail_open"] = "fail_closed",
        id_prefix: str = "thread:",
    ) -> None:
        if isinstance(max_tokens_per_thread, bool) or not isinstance(max_tokens_per_thread, int):
            raise ValueError(f"max_tokens_per_thread must be an int, got {max_tokens_per_thread!r}")
        if parent is not None and store is not None and store is not parent.store:
            raise ValueError("a registry under a parent budget must use the parent's store")
        self._max = max_tokens_per_thread
        self._parent = parent
        self._store = parent.store if parent is not None else (store if store is not None else MemoryBudgetStore())
        self._thresholds = tuple(thresholds)
        self._on_unavailable = on_unavailable
        self._prefix = id_prefix
        self._budgets: dict[str, ThreadBudget] = {}
        self._lock = threading.Lock()
        self._subscribers: tuple[Callable[[str, BudgetWarning], Any], ...] = ()

    def __repr__(self) -> str:
        return f"ThreadBudgetRegistry(max_tokens_per_thread={self._max}, threads={len(self._budgets)})"

    @property
    def max_tokens_per_thread(self) -> int:
        return self._max

    @property
    def store(self) -> BudgetStore:
        return self._store

    def configure(self, max_tokens_per_thread: int) -> None:
        """Change the budget of threads created from now on (existing threads keep theirs)."""
        with self._lock:
            self._max = max_tokens_per_thread

    def subscribe(self, callback: Callable[[str, BudgetWarning], Any]) -> None:
        """Call ``callback(thread_id, warning)`` once per threshold any thread crosses."""
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

    # -- budgets ---------------------------------------------------------------------------------------
    def _new(self, thread_id: str) -> ThreadBudget:
        bid = f"{self._prefix}{thread_id}"
        if self._parent is not None:
            tracker = self._parent.child(self._max, budget_id=bid, thresholds=self._thresholds)
        else:
            tracker = BudgetTracker(
                self._max,
                store=self._store,
                budget_id=bid,
                thresholds=self._thresholds,
                on_unavailable=self._on_unavailable,
            )

        def forward(warning: BudgetWarning) -> None:
            for cb in self._subscribers:
                cb(thread_id, warning)

        tracker.subscribe(forward)
        return ThreadBudget(thread_id, tracker)

    def get_budget(self, thread_id: str) -> ThreadBudget:
        """The thread's budget, created on first use."""
        budget = self._budgets.get(thread_id)
        if budget is None:
            with self._lock:
                budget = self._budgets.get(thread_id)
                if budget is None:
                    budget = self._budgets[thread_id] = self._new(thread_id)
        return budget

    def tracker(self, thread_id: str) -> BudgetTracker:
        """The thread's BudgetTracker, to put on ``RunConfig.budget_tracker``."""
        return self.get_budget(thread_id).tracker

    def has_budget(self, thread_id: str) -> bool:
        """True if the thread has a budget here or in the (shared) store; never creates one."""
        if thread_id in self._budgets:
            return True
        probe = self._new(thread_id).tracker
        try:
            return self._store.exists(probe._level(probe._clock()))
        except StoreUnavailableError:
            return False

    # -- checks and spend --------------------------------------------------------------------------------
    def _exhausted(self, budget: ThreadBudget, requested: int) -> BudgetExhaustedError:
        st = budget.state()
        used, mx = st.spent + st.overrun, budget.max_tokens
        err = BudgetExhaustedError(
            f"thread {budget.thread_id} budget exhausted: {used}/{mx} tokens used",
            budget_id=budget.tracker.budget_id,
            requested=requested,
            remaining=st.remaining or 0,
        )
        # the seed's attribute names
        err.thread_id = budget.thread_id  # type: ignore[attr-defined]
        err.used = used  # type: ignore[attr-defined]
        err.max_tokens = mx  # type: ignore[attr-defined]
        return err

    def check(self, thread_id: str, estimated_tokens: int = 0) -> bool:
        """True if the thread can spend ``estimated_tokens``; raises BudgetExhaustedError otherwise."""
        budget = self.get_budget(thread_id)
        if budget.is_exhausted or not budget.can_consume(estimated_tokens):
            raise self._exhausted(budget, estimated_tokens)
        return True

    #: the seed's name
    check_budget = check

    def consume(
        self, thread_id: str, prompt_tokens: int = 0, completion_tokens: int = 0, *, usd: Decimal | None = None
    ) -> tuple[ThreadBudget, list[BudgetWarning]]:
        """Record usage that already happened. Returns (budget, warnings crossed by this usage).

        The usage is always recorded (what does not fit is kept as overrun). Raises BudgetExhaustedError
        when it did not fit, i.e. the thread (or its parent) went over its cap with this call. Under a parent
        with a USD cap, ``usd`` (the usage's cost) is required: LLMUsageError, and nothing recorded, without it.
        """
        budget = self.get_budget(thread_id)
        result, warnings = budget._consumed(prompt_tokens, completion_tokens, usd)
        if result is not None and result.overrun > 0:
            err = self._exhausted(budget, prompt_tokens + completion_tokens)
            err.warnings = warnings  # type: ignore[attr-defined]
            raise err
        return budget, warnings

    def get_usage(self, thread_id: str) -> dict[str, Any]:
        return self.get_budget(thread_id).to_dict()

    def get_all_usage(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            budgets = list(self._budgets.items())
        return {tid: b.to_dict() for tid, b in budgets}

    def threads(self) -> list[str]:
        with self._lock:
            return list(self._budgets)

    # -- lifecycle -----------------------------------------------------------------------------------
    def cleanup_thread(self, thread_id: str) -> ThreadBudget | None:
        """Forget a finished thread. Returns its budget with final numbers (for logs / billing), or None."""
        with self._lock:
            budget = self._budgets.pop(thread_id, None)
        if budget is None:
            if not self.has_budget(thread_id):
                return None
            budget = self._new(thread_id)
        tracker = budget.tracker
        budget._final = tracker.state()
        if budget._final.reserved or budget._final.reserved_usd:
            # calls still in flight: deleting the thread's state now would make their settles look like
            # duplicates and lose the spend on every budget above the thread; keep it until they land
            log.warning(
                "thread %r cleaned up with calls in flight; its budget state is kept until they settle",
                thread_id,
            )
            return budget
        self._store.delete(tracker._levels(tracker._clock())[:1])
        return budget

    def reset_thread(self, thread_id: str) -> None:
        """Start the thread over with a fresh budget."""
        self.cleanup_thread(thread_id)

    def clear(self) -> None:
        """Forget every thread of this registry (its store state included)."""
        with self._lock:
            budgets = list(self._budgets.values())
            self._budgets.clear()
        for b in budgets:
            tracker = b.tracker
            self._store.delete(tracker._levels(tracker._clock())[:1])
