"""BudgetTracker: a token and / or USD budget shared by every call that carries it. Reserve, then settle.

Before a call the adapter *reserves* its worst case (prompt tokens + max_tokens, and its price); after the
call it *settles* to what the provider reported, which frees the rest. A reservation that does not fit in
the tracker or in ANY of its ancestors (``tracker.child(...)``) is refused with LLMBudgetExceededError before
any provider is called, so concurrent calls can never jointly overshoot a cap.

Where the numbers live is the store's business: :class:`~llm_connect.budget.stores.MemoryBudgetStore` for one
process (the default), :class:`~llm_connect.budget.redis_store.RedisBudgetStore` for many. See docs/budgets.md.
"""

from __future__ import annotations

import asyncio
import calendar
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from .._ids import random_hex
from ..errors import LLMBudgetExceededError, LLMUsageError
from .reservation import Reservation, check_tokens
from .stores import (
    DIRECT,
    RECORD,
    BudgetStore,
    Level,
    MemoryBudgetStore,
    Refusal,
    SettleResult,
    Snapshot,
    StoreUnavailableError,
    units_to_usd,
    usd_to_units,
)
from .warnings import DEFAULT_THRESHOLDS, BudgetWarning, normalize_thresholds

__all__ = ["BudgetState", "BudgetTracker", "Reservation", "period_window"]

log = logging.getLogger("llm_connect.budget")


Period = Literal["daily", "monthly"] | None
#: a period's numbers are kept this long after the period ends (then the store may drop them)
PERIOD_RETENTION_SECONDS = 31 * 86400
_INF = float("inf")
_UNPRICED = "model has no price; a USD budget refuses unpriced models"


def period_window(period: str | None, now: float) -> tuple[str, float]:
    """(tag, end) of the UTC period containing ``now``: ``("2026-04-01", end)``, ``("2026-04", end)``,
    or ``("all", inf)`` for no period."""
    if period is None:
        return "all", _INF
    if period == "daily":
        day = int(now // 86400)
        return time.strftime("%Y-%m-%d", time.gmtime(day * 86400)), float((day + 1) * 86400)
    if period == "monthly":
        t = time.gmtime(now)
        y, m = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        return f"{t.tm_year:04d}-{t.tm_mon:02d}", float(calendar.timegm((y, m, 1, 0, 0, 0)))
    raise ValueError(f"period must be 'daily', 'monthly' or None, got {period!r}")


def _new_id() -> str:
    return random_hex(9)


def _op_id() -> str:
    """The id of one reservation or direct spend: the store's leases and once-markers key on it, so it must
    never repeat, also between processes forked after the tracker was made (96 random bits, reseeded per
    process)."""
    return random_hex(12)


@dataclass(frozen=True, slots=True)
class BudgetState:
    """One budget's numbers at one moment (its own level only; ``remaining`` ignores ancestors)."""

    budget_id: str
    total: int | None
    total_usd: Decimal | None
    spent: int
    reserved: int
    spent_usd: Decimal
    reserved_usd: Decimal
    #: spend the provider reported beyond what the cap allowed (recorded, not charged to ``spent``)
    overrun: int
    overrun_usd: Decimal
    remaining: int | None
    remaining_usd: Decimal | None
    #: (unit, threshold) pairs that already fired in this period
    fired: frozenset[tuple[str, float]]


class BudgetTracker:
    """A token budget (``total``), a USD budget (``total_usd``), or both, optionally per UTC period.

    ``store`` is shared state (default: a private in-memory store); trackers with the same ``budget_id``
    on the same store share one budget, across processes with a Redis store. ``on_unavailable`` says what
    a reservation does when the store cannot be reached: ``"fail_closed"`` refuses the call,
    ``"fail_open"`` lets it through and logs a warning.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        total_usd: Decimal | int | str | None = None,
        store: BudgetStore | None = None,
        budget_id: str | None = None,
        period: Period = None,
        on_unavailable: Literal["fail_closed", "fail_open"] = "fail_closed",
        thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
        lease_seconds: float = 900.0,
        clock: Callable[[], float] = time.time,
        _parent: BudgetTracker | None = None,
    ) -> None:
        if total is not None:
            check_tokens(total)
        if on_unavailable not in ("fail_closed", "fail_open"):
            raise ValueError(f"on_unavailable must be 'fail_closed' or 'fail_open', got {on_unavailable!r}")
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds!r}")
        period_window(period, 0.0)  # validates
        self._total = total
        self._orphans: set[asyncio.Future[Any]] = set()
        self._total_usd = None if total_usd is None else usd_to_units(total_usd)
        self._store: BudgetStore = store if store is not None else MemoryBudgetStore()
        self._budget_id = str(budget_id) if budget_id is not None else _new_id()
        self._period = period
        self._on_unavailable = on_unavailable
        self._thresholds = normalize_thresholds(thresholds)
        self._lease = float(lease_seconds)
        #: the store's async reserve / settle are its sync ones (never suspend): call those directly
        self._inline = (
            self._store.atomic_async
            and type(self._store).areserve is BudgetStore.areserve
            and type(self._store).asettle is BudgetStore.asettle
        )
        self._clock = clock
        self._parent = _parent
        self._chain: tuple[BudgetTracker, ...] = (self,) + (_parent._chain if _parent is not None else ())
        self._needs_usd = any(t._total_usd is not None for t in self._chain)
        self._level_cache: tuple[Level, float] | None = None
        self._subscribers: tuple[Callable[[BudgetWarning], Any], ...] = ()
        self._sub_lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()  # async callbacks in flight (kept referenced)

    def __repr__(self) -> str:
        caps = []
        if self._total is not None:
            caps.append(f"total={self._total}")
        if self._total_usd is not None:
            caps.append(f"total_usd={self.total_usd}")
        return f"BudgetTracker({', '.join(caps)}, budget_id={self._budget_id!r}, store={self._store!r})"

    # -- configuration -------------------------------------------------------------------------------
    @property
    def total(self) -> int | None:
        return self._total

    @property
    def total_usd(self) -> Decimal | None:
        return None if self._total_usd is None else units_to_usd(self._total_usd)

    @property
    def budget_id(self) -> str:
        return self._budget_id

    @property
    def period(self) -> str | None:
        return self._period

    @property
    def parent(self) -> BudgetTracker | None:
        return self._parent

    @property
    def store(self) -> BudgetStore:
        return self._store

    @property
    def thresholds(self) -> tuple[float, ...]:
        return self._thresholds

    @property
    def caps_tokens(self) -> bool:
        """True if this tracker or an ancestor has a token cap."""
        return any(t._total is not None for t in self._chain)

    @property
    def needs_usd(self) -> bool:
        """True if this tracker or an ancestor has a USD cap: reservations must then carry a price."""
        return self._needs_usd

    def child(
        self,
        total: int | None = None,
        total_usd: Decimal | int | str | None = None,
        budget_id: str | None = None,
        *,
        period: Period = None,
        thresholds: Iterable[float] | None = None,
    ) -> BudgetTracker:
        """A sub-budget: every reservation on it must also fit in this tracker and all its ancestors."""
        bid = budget_id if budget_id is not None else f"{self._budget_id}/{_new_id()[:8]}"
        if any(t._budget_id == bid for t in self._chain):
            raise ValueError(f"budget_id {bid!r} is already used by an ancestor")
        return BudgetTracker(
            total,
            total_usd=total_usd,
            store=self._store,
            budget_id=bid,
            period=period,
            on_unavailable=self._on_unavailable,
            thresholds=self._thresholds if thresholds is None else thresholds,
            lease_seconds=self._lease,
            clock=self._clock,
            _parent=self,
        )

    def subscribe(self, callback: Callable[[BudgetWarning], Any]) -> Callable[[], None]:
        """Call ``callback(warning)`` once per threshold this budget crosses. Returns an unsubscribe function.

        A callback may be a coroutine function; it is then scheduled on the running loop.
        """
        with self._sub_lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._sub_lock:
                self._subscribers = tuple(c for c in self._subscribers if c is not callback)

        return unsubscribe

    # -- internals -------------------------------------------------------------------------------------
    def _level(self, now: float) -> Level:
        cached = self._level_cache
        if cached is not None and now < cached[1]:
            return cached[0]
        tag, end = period_window(self._period, now)
        lv = Level(
            key=f"{self._budget_id}:{tag}",
            budget_id=self._budget_id,
            total=self._total,
            total_usd=self._total_usd,
            expire_at=None if end == _INF else end + PERIOD_RETENTION_SECONDS,
            thresholds=self._thresholds,
        )
        self._level_cache = (lv, end)
        return lv

    def _levels(self, now: float) -> tuple[Level, ...]:
        if self._parent is None:
            return (self._level(now),)
        return tuple(t._level(now) for t in self._chain)

    def _amounts(self, tokens: int, usd: Decimal | int | str | None) -> tuple[int, int]:
        check_tokens(tokens)
        if usd is None:
            if self._needs_usd:
                owner = next(t for t in self._chain if t._total_usd is not None)
                raise LLMBudgetExceededError(_UNPRICED, budget_id=owner._budget_id, requested=tokens)
            return tokens, 0
        return tokens, usd_to_units(usd)

    def _refused(self, levels: Sequence[Level], refusal: Refusal, tokens: int, usd: int) -> LLMBudgetExceededError:
        lv = levels[refusal.index]
        if refusal.unit == "tokens":
            msg = f"budget '{lv.budget_id}' cannot fit {tokens:,} tokens ({refusal.remaining:,} remaining)"
            err = LLMBudgetExceededError(msg, budget_id=lv.budget_id, requested=tokens, remaining=refusal.remaining)
        else:
            req, rem = units_to_usd(usd), units_to_usd(refusal.remaining)
            msg = f"budget '{lv.budget_id}' cannot fit ${req:f} (${rem:f} remaining)"
            err = LLMBudgetExceededError(msg, budget_id=lv.budget_id, requested=req, remaining=rem)
        err.unit = refusal.unit
        return err

    def _unreachable(self, exc: StoreUnavailableError, what: str) -> None:
        """Fail closed (raise) or open (log) on an unreachable store."""
        if self._on_unavailable == "fail_closed":
            raise LLMBudgetExceededError("budget store unreachable", budget_id=self._budget_id) from exc
        log.warning("budget store unreachable during %s of budget %r; failing open: %s", what, self._budget_id, exc)

    def _lost(self, exc: StoreUnavailableError, what: str) -> None:
        if exc.queued:
            log.warning("budget store unreachable; %s of budget %r queued for replay: %s", what, self._budget_id, exc)
        else:
            log.error("budget store unreachable; %s of budget %r not recorded: %s", what, self._budget_id, exc)

    def _notify(self, warning: BudgetWarning) -> None:
        for cb in self._subscribers:
            try:
                result = cb(warning)
                if inspect.isawaitable(result):
                    try:
                        task = asyncio.get_running_loop().create_task(result)  # type: ignore[arg-type]
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    except RuntimeError:
                        if inspect.iscoroutine(result):
                            result.close()
                        log.warning("async budget warning callback %r needs a running loop", cb)
            except Exception:
                log.exception("budget warning callback %r failed", cb)

    def _deliver(self, levels: Sequence[Level], result: SettleResult) -> list[BudgetWarning]:
        """Turn store crossings into BudgetWarnings, tell each budget's subscribers, return them all."""
        if not result.crossings:
            return []
        out: list[BudgetWarning] = []
        for c in result.crossings:
            lv = levels[c.index]
            if c.unit == "tokens":
                total = lv.total or 0
                w = BudgetWarning(c.threshold, c.spent, total, max(0, total - c.spent), lv.budget_id, "tokens")
            else:
                total = lv.total_usd or 0
                w = BudgetWarning(
                    c.threshold,
                    units_to_usd(c.spent),
                    units_to_usd(total),
                    units_to_usd(max(0, total - c.spent)),
                    lv.budget_id,
                    "usd",
                )
            out.append(w)
            self._chain[c.index]._notify(w)
        return out

    def _replayer(self, levels: Sequence[Level]) -> Callable[[SettleResult], None]:
        def replayed(result: SettleResult) -> None:
            self._deliver(levels, result)

        return replayed

    def _state(self, lv: Level, snap: Snapshot) -> BudgetState:
        rem = None if lv.total is None else max(0, lv.total - snap.spent - snap.reserved)
        rem_usd = None
        if lv.total_usd is not None:
            rem_usd = units_to_usd(max(0, lv.total_usd - snap.spent_usd - snap.reserved_usd))
        return BudgetState(
            budget_id=self._budget_id,
            total=self._total,
            total_usd=self.total_usd,
            spent=snap.spent,
            reserved=snap.reserved,
            spent_usd=units_to_usd(snap.spent_usd),
            reserved_usd=units_to_usd(snap.reserved_usd),
            overrun=snap.overrun,
            overrun_usd=units_to_usd(snap.overrun_usd),
            remaining=rem,
            remaining_usd=rem_usd,
            fired=snap.fired,
        )

    @staticmethod
    def _headroom(levels: Sequence[Level], snaps: Sequence[Snapshot]) -> tuple[int | None, int | None]:
        """What can still be reserved through the whole chain: (tokens, nano-dollars), None = uncapped."""
        tok: int | None = None
        usd: int | None = None
        for lv, s in zip(levels, snaps, strict=True):
            if lv.total is not None:
                free = max(0, lv.total - s.spent - s.reserved)
                tok = free if tok is None else min(tok, free)
            if lv.total_usd is not None:
                free = max(0, lv.total_usd - s.spent_usd - s.reserved_usd)
                usd = free if usd is None else min(usd, free)
        return tok, usd

    # -- reading -----------------------------------------------------------------------------------------
    def state(self) -> BudgetState:
        """This budget's numbers (one store round trip)."""
        lv = self._level(self._clock())
        try:
            snap = self._store.peek((lv,), self._clock())[0]
        except StoreUnavailableError as exc:
            raise LLMBudgetExceededError("budget store unreachable", budget_id=self._budget_id) from exc
        return self._state(lv, snap)

    async def astate(self) -> BudgetState:
        lv = self._level(self._clock())
        try:
            snap = (await self._store.apeek((lv,), self._clock()))[0]
        except StoreUnavailableError as exc:
            raise LLMBudgetExceededError("budget store unreachable", budget_id=self._budget_id) from exc
        return self._state(lv, snap)

    @property
    def spent(self) -> int:
        return self.state().spent

    @property
    def spent_usd(self) -> Decimal:
        return self.state().spent_usd

    @property
    def reserved(self) -> int:
        return self.state().reserved

    @property
    def reserved_usd(self) -> Decimal:
        return self.state().reserved_usd

    @property
    def overrun(self) -> int:
        return self.state().overrun

    @property
    def overrun_usd(self) -> Decimal:
        return self.state().overrun_usd

    def _headroom_now(self) -> tuple[int | None, int | None] | None:
        now = self._clock()
        levels = self._levels(now)
        try:
            return self._headroom(levels, self._store.peek(levels, now))
        except StoreUnavailableError as exc:
            self._unreachable(exc, "read")
            return None

    async def _aheadroom_now(self) -> tuple[int | None, int | None] | None:
        now = self._clock()
        levels = self._levels(now)
        try:
            return self._headroom(levels, await self._store.apeek(levels, now))
        except StoreUnavailableError as exc:
            self._unreachable(exc, "read")
            return None

    def remaining(self) -> int | None:
        """Tokens that can still be reserved here, ancestors included (None = no token cap anywhere)."""
        h = self._headroom_now()
        return None if h is None else h[0]

    def remaining_usd(self) -> Decimal | None:
        """Dollars that can still be reserved here, ancestors included (None = no USD cap anywhere)."""
        h = self._headroom_now()
        return None if h is None or h[1] is None else units_to_usd(h[1])

    async def aremaining(self) -> int | None:
        return (await self.aheadroom())[0]

    async def aremaining_usd(self) -> Decimal | None:
        return (await self.aheadroom())[1]

    async def aheadroom(self) -> tuple[int | None, Decimal | None]:
        """(:meth:`aremaining`, :meth:`aremaining_usd`) in one store round trip."""
        h = await self._aheadroom_now()
        return (None, None) if h is None else (h[0], None if h[1] is None else units_to_usd(h[1]))

    def max_output_tokens(self, input_tokens: int) -> int | None:
        """Output tokens that still fit after ``input_tokens`` through the whole chain (None = no token cap).

        0 means nothing fits. With ``fail_open`` and an unreachable store: None.
        """
        h = self._headroom_now()
        return None if h is None or h[0] is None else max(0, h[0] - input_tokens)

    async def amax_output_tokens(self, input_tokens: int) -> int | None:
        room = (await self.aheadroom())[0]
        return None if room is None else max(0, room - input_tokens)

    # -- reserving -----------------------------------------------------------------------------------------
    def reserve(self, tokens: int, usd: Decimal | None = None, *, label: str = "") -> Reservation:
        """Reserve a worst case on this budget and every ancestor, or raise LLMBudgetExceededError."""
        tok, units = self._amounts(tokens, usd)
        now = self._clock()
        levels = self._levels(now)
        res = Reservation(self, levels, tok, units, usd is not None, label, _op_id())
        try:
            refusal = self._store.reserve(levels, res.id, tok, units, now, now + self._lease)
        except StoreUnavailableError as exc:
            self._unreachable(exc, "reserve")
            res._detached = True
            return res
        if refusal is not None:
            raise self._refused(levels, refusal, tok, units)
        return res

    async def areserve(self, tokens: int, usd: Decimal | None = None, *, label: str = "") -> Reservation:
        """Async twin of :meth:`reserve`."""
        tok, units = self._amounts(tokens, usd)
        now = self._clock()
        levels = self._levels(now)
        res = Reservation(self, levels, tok, units, usd is not None, label, _op_id())
        if self._store.atomic_async:
            call: asyncio.Future[Any] | None = None
        else:
            call = asyncio.ensure_future(self._store.areserve(levels, res.id, tok, units, now, now + self._lease))
        try:
            if call is not None:
                refusal = await asyncio.shield(call)
            elif self._inline:
                refusal = self._store.reserve(levels, res.id, tok, units, now, now + self._lease)
            else:
                refusal = await self._store.areserve(levels, res.id, tok, units, now, now + self._lease)
        except asyncio.CancelledError:
            # the caller is gone but the reservation may be made: give it back once the call lands
            if call is not None:
                call.add_done_callback(lambda f: self._release_orphan(f, res))
            raise
        except StoreUnavailableError as exc:
            self._unreachable(exc, "reserve")
            res._detached = True
            return res
        if refusal is not None:
            raise self._refused(levels, refusal, tok, units)
        return res

    def _release_orphan(self, call: asyncio.Future[Any], res: Reservation) -> None:
        if call.cancelled() or call.exception() is not None or call.result() is not None:
            return  # never made, or refused
        task = asyncio.ensure_future(res.arelease())
        self._orphans.add(task)  # keep it alive until done
        task.add_done_callback(self._orphans.discard)

    def consume(self, tokens: int, usd: Decimal | None = None) -> list[BudgetWarning]:
        """Spend directly (reserve + settle in one step). Raises LLMBudgetExceededError if it does not fit."""
        tok, units = self._amounts(tokens, usd)
        now = self._clock()
        levels = self._levels(now)
        rid = _op_id()
        try:
            result = self._store.settle(levels, rid, 0, 0, tok, units, now, DIRECT, self._replayer(levels))
        except StoreUnavailableError as exc:
            self._unreachable(exc, "consume")
            return self.record(tokens, usd)
        if result.refusal is not None:
            raise self._refused(levels, result.refusal, tok, units)
        return self._deliver(levels, result)

    async def aconsume(self, tokens: int, usd: Decimal | None = None) -> list[BudgetWarning]:
        tok, units = self._amounts(tokens, usd)
        now = self._clock()
        levels = self._levels(now)
        rid = _op_id()
        try:
            result = await self._store.asettle(levels, rid, 0, 0, tok, units, now, DIRECT, self._replayer(levels))
        except StoreUnavailableError as exc:
            self._unreachable(exc, "consume")
            return await self.arecord(tokens, usd)
        if result.refusal is not None:
            raise self._refused(levels, result.refusal, tok, units)
        return self._deliver(levels, result)

    def record(self, tokens: int, usd: Decimal | None = None) -> list[BudgetWarning]:
        """Record a spend that already happened, without a check: what does not fit goes to ``overrun``.

        On a chain with a USD cap ``usd`` is required (LLMUsageError, nothing recorded, if it is missing):
        recording the tokens at $0 would let the USD cap be overspent unseen."""
        return self._record(tokens, usd)[1]

    async def arecord(self, tokens: int, usd: Decimal | None = None) -> list[BudgetWarning]:
        return (await self._arecord(tokens, usd))[1]

    def _recorded_units(self, usd: Decimal | None) -> int:
        if usd is not None:
            return usd_to_units(usd)
        if self._needs_usd:
            owner = next(t for t in self._chain if t._total_usd is not None)
            raise LLMUsageError(
                f"budget {owner._budget_id!r} caps USD: recording a spend needs its cost (usd=...; price the "
                "usage with llm_connect.usage.Pricing); nothing was recorded"
            )
        return 0

    def _record(self, tokens: int, usd: Decimal | None) -> tuple[SettleResult | None, list[BudgetWarning]]:
        tok = check_tokens(tokens)
        units = self._recorded_units(usd)
        now = self._clock()
        levels = self._levels(now)
        try:
            result = self._store.settle(levels, _op_id(), 0, 0, tok, units, now, RECORD, self._replayer(levels))
        except StoreUnavailableError as exc:
            self._lost(exc, "record")
            return None, []
        return result, self._deliver(levels, result)

    async def _arecord(self, tokens: int, usd: Decimal | None) -> tuple[SettleResult | None, list[BudgetWarning]]:
        tok = check_tokens(tokens)
        units = self._recorded_units(usd)
        now = self._clock()
        levels = self._levels(now)
        try:
            result = await self._store.asettle(levels, _op_id(), 0, 0, tok, units, now, RECORD, self._replayer(levels))
        except StoreUnavailableError as exc:
            self._lost(exc, "record")
            return None, []
        return result, self._deliver(levels, result)
