"""Budget stores: where spend and reservations live. One interface, two stores.

A store knows nothing of trackers. It is handed a *chain* of :class:`Level` (a budget and its ancestors,
leaf first) and applies one operation to every level atomically: all levels change or none does. Amounts
are integers: tokens, and USD in nano-dollars (``USD_SCALE``), so Redis can add them exactly.

Per level a store keeps ``spent``, ``reserved``, ``overrun`` (tokens and USD), the thresholds already fired,
and the open reservations as *leases* (id → amount, expiry). The invariant each operation keeps on every
capped level: ``0 <= spent`` and ``spent + reserved <= total``.

* ``reserve`` adds a lease on every level, or refuses if any level lacks room.
* ``settle`` drops the lease and charges ``min(actual, what still fits on every level)``; any excess is
  recorded as ``overrun`` (money already spent is never dropped, and ``spent`` never passes ``total``).
* ``release`` drops the lease.
* Leases expire: a reservation never settled (a crashed process) is reclaimed once its lease runs out.

:class:`MemoryBudgetStore` (this module) serves one process; ``RedisBudgetStore`` serves many.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import NamedTuple

__all__ = [
    "DIRECT",
    "LEASE",
    "RECORD",
    "USD_SCALE",
    "BudgetStore",
    "Crossing",
    "Level",
    "MemoryBudgetStore",
    "Refusal",
    "SettleResult",
    "Snapshot",
    "StoreUnavailableError",
    "units_to_usd",
    "usd_to_units",
]

#: USD amounts are stored as integers of 10**-USD_SCALE dollars (nano-dollars), rounded up
USD_SCALE = 9

_ONE = Decimal(1)

#: settle modes: a reservation's lease / a direct spend refused if it does not fit / a spend recorded as is
LEASE, DIRECT, RECORD = 0, 1, 2


def usd_to_units(value: Decimal | int | str) -> int:
    """Dollars → nano-dollars, rounded up (a budget never under-counts). Floats are refused."""
    if type(value) is Decimal and value.is_finite() and value >= 0:  # the common case, on every call
        return int(value.scaleb(USD_SCALE).to_integral_value(ROUND_CEILING))
    if isinstance(value, float) or isinstance(value, bool):
        raise TypeError(f"USD amounts must be Decimal, int or str, never float: got {value!r}")
    try:
        d = value if isinstance(value, Decimal) else Decimal(value)
        if not d.is_finite() or d < 0:
            raise ValueError
        return int(d.scaleb(USD_SCALE).to_integral_value(rounding=ROUND_CEILING))
    except (InvalidOperation, ValueError, TypeError):
        raise ValueError(f"a USD amount must be a finite, non-negative number, got {value!r}") from None


def units_to_usd(units: int) -> Decimal:
    """Nano-dollars → Decimal dollars, without trailing zeros (``Decimal("2.5")``, ``Decimal("100")``)."""
    d = Decimal(units).scaleb(-USD_SCALE).normalize()
    return d.quantize(_ONE) if d.as_tuple().exponent > 0 else d  # type: ignore[operator]


@dataclass(frozen=True, slots=True)
class Level:
    """One budget of a chain, as the store sees it: caps are passed with every call (they are config)."""

    #: store-unique name of the budget *in its current period* (budget id + period tag)
    key: str
    budget_id: str
    total: int | None
    #: cap in nano-dollars
    total_usd: int | None
    #: unix time after which the store may forget this level (end of period + retention), None = keep
    expire_at: float | None
    thresholds: tuple[float, ...]


class Refusal(NamedTuple):
    """Why an amount does not fit: level ``index`` of the chain lacks room in ``unit``."""

    index: int
    unit: str  # "tokens" | "usd"
    remaining: int


class Crossing(NamedTuple):
    """Level ``index`` of the chain crossed ``threshold`` in ``unit``; ``spent`` after the crossing."""

    index: int
    unit: str
    threshold: float
    spent: int


class SettleResult(NamedTuple):
    charged: int = 0
    charged_usd: int = 0
    overrun: int = 0
    overrun_usd: int = 0
    crossings: tuple[Crossing, ...] = ()
    #: set when a DIRECT spend did not fit (nothing was changed)
    refusal: Refusal | None = None
    #: the store had already applied this operation (a retried call); nothing was changed
    duplicate: bool = False


class Snapshot(NamedTuple):
    """The state of one level. USD fields are nano-dollars."""

    spent: int = 0
    reserved: int = 0
    spent_usd: int = 0
    reserved_usd: int = 0
    overrun: int = 0
    overrun_usd: int = 0
    #: (unit, threshold) pairs already fired
    fired: frozenset[tuple[str, float]] = frozenset()


class StoreUnavailableError(Exception):
    """The store cannot be reached. ``queued`` says the operation was kept to be replayed later."""

    def __init__(self, message: str, *, queued: bool = False) -> None:
        super().__init__(message)
        self.queued = queued


#: called with the result of a settle that was queued while the store was unreachable and replayed later
ReplayCallback = Callable[[SettleResult], None]


class BudgetStore(ABC):
    """The operations a BudgetTracker needs. Every call applies to the whole chain atomically.

    The async twins default to the sync methods, which is right for stores whose operations take
    microseconds (memory); network stores override them.
    """

    #: True when the async twins never suspend (they run the sync operation): a cancelled caller cannot
    #: interrupt one half-way, so the tracker need not shield them. Stores that do I/O set False.
    atomic_async: bool = True

    @abstractmethod
    def reserve(
        self, levels: Sequence[Level], res_id: str, tokens: int, usd: int, now: float, lease_until: float
    ) -> Refusal | None:
        """Add a lease of (tokens, usd) on every level, or change nothing and say why it does not fit.

        Idempotent per ``res_id``: reserving an id that already holds a lease changes nothing.
        """

    @abstractmethod
    def settle(
        self,
        levels: Sequence[Level],
        res_id: str,
        reserved: int,
        reserved_usd: int,
        tokens: int,
        usd: int,
        now: float,
        mode: int,
        on_replay: ReplayCallback | None = None,
    ) -> SettleResult:
        """Charge an actual spend; in LEASE mode first drop the lease ``res_id`` of (reserved, reserved_usd)."""

    @abstractmethod
    def release(self, levels: Sequence[Level], res_id: str, tokens: int, usd: int) -> None:
        """Drop the lease ``res_id`` (a no-op if it is gone)."""

    @abstractmethod
    def peek(self, levels: Sequence[Level], now: float) -> list[Snapshot]:
        """The state of each level (expired leases are reclaimed first)."""

    @abstractmethod
    def delete(self, levels: Sequence[Level]) -> None:
        """Forget these levels entirely."""

    @abstractmethod
    def exists(self, level: Level) -> bool:
        """True if the store holds any state for this level."""

    async def areserve(
        self, levels: Sequence[Level], res_id: str, tokens: int, usd: int, now: float, lease_until: float
    ) -> Refusal | None:
        return self.reserve(levels, res_id, tokens, usd, now, lease_until)

    async def asettle(
        self,
        levels: Sequence[Level],
        res_id: str,
        reserved: int,
        reserved_usd: int,
        tokens: int,
        usd: int,
        now: float,
        mode: int,
        on_replay: ReplayCallback | None = None,
    ) -> SettleResult:
        return self.settle(levels, res_id, reserved, reserved_usd, tokens, usd, now, mode, on_replay)

    async def arelease(self, levels: Sequence[Level], res_id: str, tokens: int, usd: int) -> None:
        self.release(levels, res_id, tokens, usd)

    async def apeek(self, levels: Sequence[Level], now: float) -> list[Snapshot]:
        return self.peek(levels, now)

    async def adelete(self, levels: Sequence[Level]) -> None:
        self.delete(levels)

    async def aexists(self, level: Level) -> bool:
        return self.exists(level)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (no-op for in-process stores)."""

    async def aclose(self) -> None:
        self.close()


class _Account:
    """One level's state in memory."""

    __slots__ = ("expire_at", "fired", "leases", "next_expiry", "o", "ou", "r", "ru", "s", "su")

    def __init__(self, expire_at: float | None) -> None:
        self.s = self.r = self.su = self.ru = self.o = self.ou = 0
        self.fired: set[tuple[str, float]] = set()
        #: res_id -> (tokens, usd, lease_until)
        self.leases: dict[str, tuple[int, int, float]] = {}
        self.expire_at = expire_at
        #: no lease expires before this (a lower bound: settled leases are not subtracted)
        self.next_expiry = float("inf")

    def reclaim(self, now: float) -> None:
        if now < self.next_expiry:
            return
        soonest = float("inf")
        for rid, (t, u, until) in list(self.leases.items()):
            if until <= now:
                del self.leases[rid]
                self.r -= t
                self.ru -= u
            elif until < soonest:
                soonest = until
        self.next_expiry = soonest

    def snapshot(self) -> Snapshot:
        return Snapshot(self.s, self.r, self.su, self.ru, self.o, self.ou, frozenset(self.fired))


def _refusal(level: Level, acct: _Account, tokens: int, usd: int, index: int) -> Refusal | None:
    if level.total is not None and acct.s + acct.r + tokens > level.total:
        return Refusal(index, "tokens", max(0, level.total - acct.s - acct.r))
    if level.total_usd is not None and acct.su + acct.ru + usd > level.total_usd:
        return Refusal(index, "usd", max(0, level.total_usd - acct.su - acct.ru))
    return None


def _cross(
    out: list[Crossing], acct: _Account, i: int, unit: str, spent: int, total: int, thresholds: tuple[float, ...]
) -> None:
    for t in thresholds:
        if spent >= t * total and (unit, t) not in acct.fired:
            acct.fired.add((unit, t))
            out.append(Crossing(i, unit, t, spent))


class MemoryBudgetStore(BudgetStore):
    """In-process store: one lock around plain integers; each operation takes a few microseconds.

    Shared by every tracker of the process that is given it (BudgetTracker creates a private one by
    default). Safe from threads and from coroutines (the lock is never held across an await).
    """

    #: seconds between sweeps of expired period accounts
    SWEEP_EVERY = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}
        self._next_sweep = 0.0

    def __repr__(self) -> str:
        return f"MemoryBudgetStore(budgets={len(self._accounts)})"

    # -- internals (lock held) -----------------------------------------------------------------------
    def _account(self, level: Level, now: float) -> _Account:
        acct = self._accounts.get(level.key)
        if acct is None:
            acct = self._accounts[level.key] = _Account(level.expire_at)
            if level.expire_at is not None and now >= self._next_sweep:
                self._next_sweep = now + self.SWEEP_EVERY
                dead = [k for k, a in self._accounts.items() if a.expire_at is not None and a.expire_at <= now]
                for k in dead:
                    del self._accounts[k]
                if level.key not in self._accounts:  # its own period already ended
                    self._accounts[level.key] = acct
        return acct

    # -- operations --------------------------------------------------------------------------------
    def reserve(
        self, levels: Sequence[Level], res_id: str, tokens: int, usd: int, now: float, lease_until: float
    ) -> Refusal | None:
        with self._lock:
            accts = [self._account(lv, now) for lv in levels]
            if res_id in accts[0].leases:
                return None
            for i, lv in enumerate(levels):
                acct = accts[i]
                acct.reclaim(now)
                if (lv.total is not None and acct.s + acct.r + tokens > lv.total) or (
                    lv.total_usd is not None and acct.su + acct.ru + usd > lv.total_usd
                ):
                    return _refusal(lv, acct, tokens, usd, i)
            lease = (tokens, usd, lease_until)
            for acct in accts:
                acct.r += tokens
                acct.ru += usd
                acct.leases[res_id] = lease
                if lease_until < acct.next_expiry:
                    acct.next_expiry = lease_until
            return None

    def settle(
        self,
        levels: Sequence[Level],
        res_id: str,
        reserved: int,
        reserved_usd: int,
        tokens: int,
        usd: int,
        now: float,
        mode: int,
        on_replay: ReplayCallback | None = None,
    ) -> SettleResult:
        with self._lock:
            accts = [self._account(lv, now) for lv in levels]
            charged, charged_usd = tokens, usd
            refusal: Refusal | None = None
            for i, lv in enumerate(levels):
                acct = accts[i]
                if mode == LEASE:
                    lease = acct.leases.pop(res_id, None)
                    if lease is not None:
                        acct.r -= lease[0]
                        acct.ru -= lease[1]
                if lv.total is not None:
                    free = lv.total - acct.s - acct.r
                    if free < charged:
                        charged = max(0, free)
                        refusal = refusal or Refusal(i, "tokens", charged)
                if lv.total_usd is not None:
                    free = lv.total_usd - acct.su - acct.ru
                    if free < charged_usd:
                        charged_usd = max(0, free)
                        refusal = refusal or Refusal(i, "usd", charged_usd)
            if mode == DIRECT and refusal is not None:
                return SettleResult(refusal=refusal)
            over, over_usd = tokens - charged, usd - charged_usd
            crossings: list[Crossing] = []
            for i, lv in enumerate(levels):
                acct = accts[i]
                acct.s += charged
                acct.su += charged_usd
                if over or over_usd:
                    acct.o += over
                    acct.ou += over_usd
                if lv.thresholds:
                    if lv.total and acct.s >= lv.thresholds[0] * lv.total:
                        _cross(crossings, acct, i, "tokens", acct.s, lv.total, lv.thresholds)
                    if lv.total_usd and acct.su >= lv.thresholds[0] * lv.total_usd:
                        _cross(crossings, acct, i, "usd", acct.su, lv.total_usd, lv.thresholds)
            return SettleResult(charged, charged_usd, over, over_usd, tuple(crossings))

    def release(self, levels: Sequence[Level], res_id: str, tokens: int, usd: int) -> None:
        with self._lock:
            for lv in levels:
                acct = self._accounts.get(lv.key)
                lease = acct.leases.pop(res_id, None) if acct is not None else None
                if lease is not None:
                    acct.r -= lease[0]  # type: ignore[union-attr]
                    acct.ru -= lease[1]  # type: ignore[union-attr]

    def peek(self, levels: Sequence[Level], now: float) -> list[Snapshot]:
        out: list[Snapshot] = []
        with self._lock:
            for lv in levels:
                acct = self._accounts.get(lv.key)
                if acct is None:
                    out.append(Snapshot())
                else:
                    acct.reclaim(now)
                    out.append(acct.snapshot())
        return out

    def delete(self, levels: Sequence[Level]) -> None:
        with self._lock:
            for lv in levels:
                self._accounts.pop(lv.key, None)

    def exists(self, level: Level) -> bool:
        return level.key in self._accounts
