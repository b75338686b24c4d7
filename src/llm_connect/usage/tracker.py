"""UsageTracker: fan UsageEvents out to subscribers and keep running aggregates.

Subscribers are callables taking a :class:`UsageEvent`; they may be plain functions, coroutine functions,
or objects with an ``async acall(event)`` method (used by :meth:`UsageTracker.aemit`, e.g. the ledger's
subscriber, so an async caller awaits the durable write without blocking its event loop). A caller cancelled
while it awaits ``aemit`` does not cut the async subscribers short.
A subscriber that raises is logged and counted; it never breaks the call nor the other subscribers.

Aggregates are kept by agent, by model (``"provider:model"``), by tenant and in total; a missing agent or
tenant is grouped under ``"-"``. An event is added once, to the running totals of its (agent, model, tenant);
the four views are folded from those when they are read (reads are rare, events are per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from .events import UsageEvent

__all__ = ["NONE_KEY", "Subscriber", "UsageStats", "UsageTracker"]

log = logging.getLogger("llm_connect.usage.tracker")

#: the group key for events without an agent / tenant
NONE_KEY = "-"

Subscriber = Callable[[UsageEvent], Awaitable[None] | None]


@dataclass(slots=True)
class UsageStats:
    """Running totals for one group of events."""

    requests: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    #: events whose cost was unknown (not included in cost_usd)
    unpriced: int = 0
    #: events billed on an estimate (a stream that ended early, a reply without usage)
    estimated: int = 0
    latency_ms_total: float = 0.0
    latency_ms_max: float = 0.0

    @property
    def latency_ms_avg(self) -> float:
        return self.latency_ms_total / self.requests if self.requests else 0.0

    def add(self, e: UsageEvent) -> None:
        self.requests += 1
        if not e.success:
            self.failures += 1
        self.input_tokens += e.input_tokens
        self.output_tokens += e.output_tokens
        self.cache_read_tokens += e.cache_read_tokens
        self.cache_write_tokens += e.cache_write_tokens
        self.reasoning_tokens += e.reasoning_tokens
        self.total_tokens += e.total_tokens
        if e.cost_usd is not None:
            self.cost_usd += e.cost_usd
        elif e.total_tokens > 0:  # used tokens at a price we do not know (a failure that used none is not)
            self.unpriced += 1
        if e.estimated:
            self.estimated += 1
        self.latency_ms_total += e.latency_ms
        if e.latency_ms > self.latency_ms_max:
            self.latency_ms_max = e.latency_ms

    def merge(self, other: UsageStats) -> None:
        """Add ``other``'s totals to these (every field is a sum but the largest latency)."""
        for name in _SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.latency_ms_max > self.latency_ms_max:
            self.latency_ms_max = other.latency_ms_max

    def copy(self) -> UsageStats:
        return UsageStats(**{f.name: getattr(self, f.name) for f in fields(self)})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: cost as a decimal string, plus the average latency."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["cost_usd"] = str(self.cost_usd)
        d["latency_ms_avg"] = self.latency_ms_avg
        return d


#: the fields of UsageStats that merging adds up (latency_ms_max is the larger of the two)
_SUMMED = tuple(f.name for f in fields(UsageStats) if f.name != "latency_ms_max")


class UsageTracker:
    """Receives one UsageEvent per call (``emit`` / ``aemit``), notifies subscribers, aggregates. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()
        #: per subscriber, what :meth:`aemit` calls (its ``acall`` if it has one) and whether it is cancel_safe,
        #: looked up when it subscribes rather than on every event
        self._async_calls: tuple[tuple[Subscriber, Subscriber, bool], ...] = ()
        self._tasks: set[asyncio.Task[Any]] = set()
        #: (agent, provider, model, tenant) -> totals of the events of that group
        self._groups: dict[tuple[str, str, str, str], UsageStats] = {}
        #: number of subscriber calls that raised
        self.subscriber_errors = 0

    # -- subscribers ------------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it again."""
        with self._lock:
            self._set_subscribers((*self._subscribers, callback))
        return lambda: self.unsubscribe(callback)

    def unsubscribe(self, callback: Subscriber) -> bool:
        """Remove a subscriber (the first one equal to ``callback``); False if it was not subscribed."""
        with self._lock:
            subs = list(self._subscribers)
            try:
                subs.remove(callback)
            except ValueError:
                return False
            self._set_subscribers(tuple(subs))
            return True

    def _set_subscribers(self, subs: tuple[Subscriber, ...]) -> None:
        self._async_calls = tuple(
            (cb, getattr(cb, "acall", None) or cb, bool(getattr(cb, "cancel_safe", False))) for cb in subs
        )
        self._subscribers = subs

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        return self._subscribers

    # -- emitting ---------------------------------------------------------------------------------

    def emit(self, event: UsageEvent) -> None:
        """Aggregate ``event`` and call every subscriber now, in order.

        Coroutine results are awaited: as a task when an event loop is running in this thread (use
        :meth:`aemit` to wait for them), else to completion in a private loop.
        """
        self._aggregate(event)
        for cb in self._subscribers:
            try:
                result = cb(event)
                if result is not None and inspect.isawaitable(result):
                    self._run_awaitable(result, cb)
            except Exception:
                self._failed(cb)

    async def aemit(self, event: UsageEvent) -> None:
        """Aggregate ``event`` and call every subscriber, awaiting async ones (concurrently). Never raises
        for a failing subscriber.

        A cancellation of the caller does not cut an async subscriber short: they run on (in tasks) and are
        waited for before the CancelledError goes on. A subscriber marked ``cancel_safe`` (its work is handed
        off before its first suspension, as the ledger's is to its writer thread) is simply awaited, alone."""
        self._aggregate(event)
        pending: list[tuple[Subscriber, Awaitable[Any]]] = []
        safe = False
        for cb, call, cancel_safe in self._async_calls:
            try:
                result = call(event)
                if result is not None and inspect.isawaitable(result):
                    pending.append((cb, result))
                    safe = cancel_safe
            except Exception:
                self._failed(cb)
        if not pending:
            return
        if len(pending) == 1 and safe:
            cb, aw = pending[0]
            try:
                await aw
            except Exception:
                self._failed(cb)
            return
        everyone = asyncio.gather(*(aw for _, aw in pending), return_exceptions=True)
        try:
            results = await asyncio.shield(everyone)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):  # a second cancellation ends the wait, not the subscribers
                await asyncio.shield(everyone)
            raise
        for (cb, _), res in zip(pending, results, strict=True):
            if isinstance(res, Exception):
                self._failed(cb, res)
            elif isinstance(res, BaseException):
                raise res

    def _run_awaitable(self, aw: Awaitable[Any], cb: Subscriber) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            try:
                asyncio.run(_as_coro(aw))
            except Exception:
                self._failed(cb)
            return
        task = loop.create_task(_as_coro(aw))
        self._tasks.add(task)

        def _done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self._failed(cb, t.exception())

        task.add_done_callback(_done)

    def _failed(self, cb: Subscriber, exc: BaseException | None = None) -> None:
        with self._lock:
            self.subscriber_errors += 1
        name = getattr(cb, "__qualname__", None) or type(cb).__name__
        if exc is None:
            log.exception("usage subscriber %s failed", name)
        else:
            log.error("usage subscriber %s failed", name, exc_info=exc)

    # -- aggregates -------------------------------------------------------------------------------

    def _aggregate(self, e: UsageEvent) -> None:
        key = (e.agent or NONE_KEY, e.provider, e.model, e.tenant_id or NONE_KEY)
        with self._lock:
            s = self._groups.get(key)
            if s is None:
                s = self._groups[key] = UsageStats()
            s.add(e)

    def _fold(self, part: int | None) -> dict[str, UsageStats]:
        """The groups folded by agent (0), model (1) or tenant (3); ``None``: the totals, under ``""``. Call with
        the lock held."""
        out: dict[str, UsageStats] = {}
        for key, s in self._groups.items():
            name = "" if part is None else f"{key[1]}:{key[2]}" if part == 1 else key[part]
            into = out.get(name)
            if into is None:
                into = out[name] = UsageStats()
            into.merge(s)
        return out

    def _total(self) -> UsageStats:
        """The totals over every group (call with the lock held)."""
        return self._fold(None).get("") or UsageStats()

    def totals(self) -> UsageStats:
        """A snapshot of the totals over every event."""
        with self._lock:
            return self._total()

    def by_agent(self) -> dict[str, UsageStats]:
        with self._lock:
            return self._fold(0)

    def by_model(self) -> dict[str, UsageStats]:
        """Keyed by ``"provider:model"``."""
        with self._lock:
            return self._fold(1)

    def by_tenant(self) -> dict[str, UsageStats]:
        with self._lock:
            return self._fold(3)

    def stats(self) -> dict[str, Any]:
        """Everything as JSON-safe dicts: ``totals``, ``by_agent``, ``by_model``, ``by_tenant``."""
        with self._lock:
            return {
                "totals": self._total().to_dict(),
                "by_agent": {k: v.to_dict() for k, v in self._fold(0).items()},
                "by_model": {k: v.to_dict() for k, v in self._fold(1).items()},
                "by_tenant": {k: v.to_dict() for k, v in self._fold(3).items()},
                "subscriber_errors": self.subscriber_errors,
            }

    def reset(self) -> None:
        """Clear the aggregates (subscribers stay)."""
        with self._lock:
            self._groups.clear()
            self.subscriber_errors = 0


async def _as_coro(aw: Awaitable[Any]) -> Any:
    return await aw
