"""LeasedBudgetStore: Redis budgets at in-process speed. Each replica leases a slice of a big budget and
spends it locally; no Redis round trip on a call's reserve or settle.

How it works, per budget level (one budget in one period):

* A level is *leased* when it is big: every cap it has is at least ``min_tokens`` tokens / ``min_usd``
  dollars. Smaller levels (threads, delegations of a few thousand tokens) are reserved in Redis directly,
  one script per operation, exactly as :class:`~llm_connect.budget.redis_store.RedisBudgetStore` does.
* A replica *takes* a slice (``fraction`` of the cap, at most what is free) from Redis atomically: the
  slice is an ordinary lease in the level's lease set (``slice.<replica>.<n>|<tokens>|<usd>``, expiring
  after ``lease_seconds``), so Redis counts it as reserved and no other replica can use that room.
* Reservations that fit in the slice are held in process; settles charge the slice in process. The spend
  is *flushed* to Redis in the background (at most ``flush_interval`` after it happened, one script for
  every slice of the store), which moves it from the slice to ``spent``, renews the slice and tops it up.
* A reservation that does not fit in the slice (or finds no valid slice) goes to Redis directly for that
  level, and a top-up is asked for. So the global cap can never be crossed: the sum of all slices and
  direct reservations is bounded by the cap in Redis, and no replica spends beyond its slice except the
  overrun of a provider reporting more than the reserved worst case, which the flush charges like a
  settle does (what no longer fits is recorded as ``overrun``).
* A slice not renewed expires in Redis after ``lease_seconds`` (a dead replica's room comes back); the
  replica itself stops using a slice ``margin`` seconds before that. Unused slices are returned on
  :meth:`aclose` / :meth:`close` and when a level has been idle for ``idle_seconds``.
* Threshold warnings fire once, in Redis, when the flush carrying the crossing spend lands; a settle whose
  local estimate crosses a threshold flushes at once, so one replica sees its warning on that settle.

What a crash loses: a replica killed without a chance to flush loses at most ``flush_interval`` of settled
spend (besides its calls in flight, as with any store); its slices come back after ``lease_seconds``.
See docs/budgets.md ("Leased budgets").
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from .._ids import random_hex
from .redis_store import _DOWN, RedisBudgetStore
from .slices import SYNC_LUA, Slice
from .stores import (
    LEASE,
    USD_SCALE,
    BudgetStore,
    Crossing,
    Level,
    Refusal,
    ReplayCallback,
    SettleResult,
    Snapshot,
    StoreUnavailableError,
)

__all__ = ["LeasedBudgetStore"]

log = logging.getLogger("llm_connect.budget")

_UNITS = ("tokens", "usd")


class LeasedBudgetStore(BudgetStore):
    """A :class:`RedisBudgetStore` whose big budgets are spent from per-replica slices (module docstring).

    ``LeasedBudgetStore(RedisBudgetStore(url, namespace="llmc"))``. ``fraction`` of a cap is taken per
    slice; a level is leased when each of its caps is at least ``min_tokens`` / ``min_usd`` (dollars).
    """

    #: the async twins are safe to cancel: a call held in a slice never suspends, and the Redis round trips
    #: of the others run to completion in their own task (a reservation made for a cancelled caller is
    #: given back). So the tracker wraps nothing in tasks on the hot path.
    atomic_async = True

    def __init__(
        self,
        redis: RedisBudgetStore,
        *,
        fraction: float = 0.01,
        min_tokens: int = 1_000_000,
        min_usd: int = 100,
        lease_seconds: float = 60.0,
        flush_interval: float = 0.05,
        idle_seconds: float = 10.0,
        clock: Any = time.time,
    ) -> None:
        if not 0 < fraction <= 0.5:
            raise ValueError(f"fraction must be in (0, 0.5], got {fraction!r}")
        if not lease_seconds > 0 or not flush_interval > 0:
            raise ValueError("lease_seconds and flush_interval must be positive")
        self.redis = redis
        self.fraction = fraction
        self.min_tokens = int(min_tokens)
        self.min_usd_units = int(min_usd) * 10**USD_SCALE
        self.lease_seconds = float(lease_seconds)
        self.margin = min(5.0, self.lease_seconds / 4)
        self.flush_interval = float(flush_interval)
        self.idle_seconds = float(idle_seconds)
        self._clock = clock
        self._replica = f"{os.getpid():x}.{random_hex(6)}"
        self._gen = 0
        self._lock = threading.Lock()
        self._slices: dict[str, Slice] = {}
        #: a sync whose reply was lost: replayed (same marker, same arguments) before anything else
        self._pending: tuple[list[str], list[Any], list[Slice], dict[str, Any]] | None = None
        self._sync_lock = threading.Lock()
        self._script: Any = None
        self._ascripts: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Ticker] = weakref.WeakKeyDictionary()
        self._last_sync = 0.0
        self._orphans: set[asyncio.Future[Any]] = set()
        self.syncs = 0  # round trips made by syncs (tests, benchmarks)

    def __repr__(self) -> str:
        return f"LeasedBudgetStore({self.redis!r}, fraction={self.fraction})"

    def __reduce__(self) -> tuple[Any, ...]:
        opts = {
            "fraction": self.fraction,
            "min_tokens": self.min_tokens,
            "min_usd": self.min_usd_units // 10**USD_SCALE,
            "lease_seconds": self.lease_seconds,
            "flush_interval": self.flush_interval,
            "idle_seconds": self.idle_seconds,
        }
        return (_rebuild, (self.redis, opts))

    # -- which levels are leased ---------------------------------------------------------------------------
    def leased(self, level: Level) -> bool:
        """The rule: a level is leased when it has a cap and every cap it has is big."""
        if level.total is None and level.total_usd is None:
            return False
        return (level.total is None or level.total >= self.min_tokens) and (
            level.total_usd is None or level.total_usd >= self.min_usd_units
        )

    def _slice(self, level: Level, now: float) -> Slice | None:
        """The slice of a leased level (made on first use; caps refreshed from config). Lock held."""
        sl = self._slices.get(level.key)
        if sl is None:
            if not self.leased(level):
                return None
            sl = self._slices[level.key] = Slice(level, now)
        elif sl.level is not level:
            sl.level = level
        return sl

    # -- reserve / settle / release ------------------------------------------------------------------------
    def _hold(self, levels: Sequence[Level], res_id: str, tokens: int, usd: int, now: float) -> list[int]:
        """Hold the reservation in every slice that fits; return the indices of the levels left for Redis."""
        direct: list[int] = []
        kick = False
        with self._lock:
            held: list[Slice] = []
            for i, lv in enumerate(levels):
                sl = self._slice(lv, now)
                if sl is None:
                    direct.append(i)
                    continue
                sl.used_at = now
                if res_id in sl.res:
                    continue  # a retried reserve
                if sl.fits(tokens, usd, now):
                    held.append(sl)
                else:
                    direct.append(i)
                    if not sl.returning:
                        sl.want = kick = True
            for sl in held:
                sl.res[res_id] = (tokens, usd)
                sl.res_t += tokens
                sl.res_u += usd
        if kick:
            self._kick(urgent=True)
        return direct

    def _unhold(self, levels: Sequence[Level], res_id: str) -> None:
        with self._lock:
            for lv in levels:
                sl = self._slices.get(lv.key)
                if sl is not None:
                    got = sl.res.pop(res_id, None)
                    if got is not None:
                        sl.res_t -= got[0]
                        sl.res_u -= got[1]

    @staticmethod
    def _mapped(refusal: Refusal | None, direct: Sequence[int]) -> Refusal | None:
        return None if refusal is None else refusal._replace(index=direct[refusal.index])

    def reserve(
        self, levels: Sequence[Level], res_id: str, tokens: int, usd: int, now: float, lease_until: float
    ) -> Refusal | None:
        direct = self._hold(levels, res_id, tokens, usd, now)
        self._sync_inline(now)
        if not direct:
            return None
        try:
            refusal = self.redis.reserve([levels[i] for i in direct], res_id, tokens, usd, now, lease_until)
        except StoreUnavailableError:
            self._unhold(levels, res_id)
            raise
        if refusal is not None:
            self._unhold(levels, res_id)
        return self._mapped(refusal, direct)

    async def areserve(
        self, levels: Sequence[Level], res_id: str, tokens: int, usd: int, now: float, lease_until: float
    ) -> Refusal | None:
        direct = self._hold(levels, res_id, tokens, usd, now)
        if not direct:
            return None
        sub = [levels[i] for i in direct]
        task = asyncio.ensure_future(self.redis.areserve(sub, res_id, tokens, usd, now, lease_until))
        try:
            refusal = await asyncio.shield(task)
        except asyncio.CancelledError:
            self._unhold(levels, res_id)
            task.add_done_callback(lambda f: self._orphan(f, sub, res_id, tokens, usd))
            raise
        except BaseException:
            self._unhold(levels, res_id)
            raise
        if refusal is not None:
            self._unhold(levels, res_id)
        return self._mapped(refusal, direct)

    def _orphan(self, call: asyncio.Future[Any], levels: list[Level], res_id: str, tokens: int, usd: int) -> None:
        """A direct reservation whose caller was cancelled: give it back once it is made."""
        if call.cancelled() or call.exception() is not None or call.result() is not None:
            return
        task = asyncio.ensure_future(self.redis.arelease(levels, res_id, tokens, usd))
        self._orphans.add(task)
        task.add_done_callback(self._orphans.discard)

    def _split(self, levels: Sequence[Level], res_id: str) -> tuple[list[int], list[int]]:
        """(levels holding ``res_id`` in their slice, the others)."""
        local: list[int] = []
        direct: list[int] = []
        with self._lock:
            for i, lv in enumerate(levels):
                sl = self._slices.get(lv.key)
                (local if sl is not None and res_id in sl.res else direct).append(i)
        return local, direct

    def _charge(
        self,
        levels: Sequence[Level],
        local: Sequence[int],
        res_id: str,
        tokens: int,
        usd: int,
        charged: tuple[int, int],
        now: float,
        on_replay: ReplayCallback | None,
    ) -> bool:
        """Drop the local reservation and charge ``charged`` (the rest of the actual is overrun) on each local
        level. Returns True when a threshold may have been crossed (flush now to know)."""
        ct, cu = charged
        cross = False
        with self._lock:
            for i in local:
                sl = self._slices.get(levels[i].key)
                if sl is None:
                    continue
                got = sl.res.pop(res_id, None)
                if got is not None:
                    sl.res_t -= got[0]
                    sl.res_u -= got[1]
                sl.spent_t += ct
                sl.spent_u += cu
                sl.over_t += tokens - ct
                sl.over_u += usd - cu
                sl.used_at = now
                if on_replay is not None:
                    sl.notify = (on_replay, i)
                lv = sl.level
                if lv.thresholds:
                    f = sl.flushing
                    st, su = sl.base_s + sl.spent_t + f[0], sl.base_su + sl.spent_u + f[1]
                    for t in lv.thresholds:
                        if (lv.total and st >= t * lv.total and ("tokens", t) not in sl.fired) or (
                            lv.total_usd and su >= t * lv.total_usd and ("usd", t) not in sl.fired
                        ):
                            cross = True
        return cross

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
        local, direct = self._split(levels, res_id) if mode == LEASE else ([], list(range(len(levels))))
        if not local:
            self._sync_inline(now)
            return self.redis.settle(levels, res_id, reserved, reserved_usd, tokens, usd, now, mode, on_replay)
        result = SettleResult(tokens, usd)
        if direct:
            sub = [levels[i] for i in direct]
            try:
                result = self.redis.settle(sub, res_id, reserved, reserved_usd, tokens, usd, now, mode, None)
            except StoreUnavailableError:
                result = SettleResult(tokens, usd)  # queued in Redis's replay; charge the local part in full
            result = SettleResult(tokens, usd) if result.duplicate else self._remap(result, direct)
        cross = self._charge(levels, local, res_id, tokens, usd, (result.charged, result.charged_usd), now, on_replay)
        if cross:
            got = self._sync(now, force=True)
            return result._replace(crossings=result.crossings + self._crossings_for(got, levels))
        self._sync_inline(now)
        return result

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
        local, direct = self._split(levels, res_id) if mode == LEASE else ([], list(range(len(levels))))
        if not local:
            coro = self.redis.asettle(levels, res_id, reserved, reserved_usd, tokens, usd, now, mode, on_replay)
            return await _to_completion(coro)
        if direct:
            return await _to_completion(
                self._asettle_mixed(levels, local, direct, res_id, reserved, reserved_usd, tokens, usd, now, on_replay)
            )
        result = SettleResult(tokens, usd)
        if self._charge(levels, local, res_id, tokens, usd, (tokens, usd), now, on_replay):
            got = await _to_completion(self._async_sync(now, force=True))
            return result._replace(crossings=self._crossings_for(got, levels))
        self._kick(urgent=False)
        return result

    async def _asettle_mixed(
        self,
        levels: Sequence[Level],
        local: list[int],
        direct: list[int],
        res_id: str,
        reserved: int,
        reserved_usd: int,
        tokens: int,
        usd: int,
        now: float,
        on_replay: ReplayCallback | None,
    ) -> SettleResult:
        sub = [levels[i] for i in direct]
        try:
            result = await self.redis.asettle(sub, res_id, reserved, reserved_usd, tokens, usd, now, LEASE, None)
        except StoreUnavailableError:
            result = SettleResult(tokens, usd)  # queued in Redis's replay; charge the local part in full
        result = SettleResult(tokens, usd) if result.duplicate else self._remap(result, direct)
        if self._charge(levels, local, res_id, tokens, usd, (result.charged, result.charged_usd), now, on_replay):
            got = await self._async_sync(now, force=True)
            return result._replace(crossings=result.crossings + self._crossings_for(got, levels))
        self._kick(urgent=False)
        return result

    @staticmethod
    def _remap(result: SettleResult, direct: Sequence[int]) -> SettleResult:
        if result.refusal is not None:
            result = result._replace(refusal=result.refusal._replace(index=direct[result.refusal.index]))
        if result.crossings:
            result = result._replace(crossings=tuple(c._replace(index=direct[c.index]) for c in result.crossings))
        return result

    def release(self, levels: Sequence[Level], res_id: str, tokens: int, usd: int) -> None:
        local, direct = self._split(levels, res_id)
        self._unhold([levels[i] for i in local], res_id)
        if direct:
            self.redis.release([levels[i] for i in direct], res_id, tokens, usd)

    async def arelease(self, levels: Sequence[Level], res_id: str, tokens: int, usd: int) -> None:
        local, direct = self._split(levels, res_id)
        self._unhold([levels[i] for i in local], res_id)
        if direct:
            await _to_completion(self.redis.arelease([levels[i] for i in direct], res_id, tokens, usd))

    # -- reading -------------------------------------------------------------------------------------------
    def _adjust(self, levels: Sequence[Level], snaps: list[Snapshot]) -> list[Snapshot]:
        """Redis's numbers plus this replica's unflushed spend, with its slices counted as what they hold."""
        out = []
        with self._lock:
            for lv, snap in zip(levels, snaps, strict=True):
                sl = self._slices.get(lv.key)
                if sl is None:
                    out.append(snap)
                    continue
                f = sl.flushing
                out.append(
                    snap._replace(
                        spent=snap.spent + sl.spent_t + f[0],
                        spent_usd=snap.spent_usd + sl.spent_u + f[1],
                        reserved=max(0, snap.reserved - (sl.held_t if sl.member else 0) + sl.res_t),
                        reserved_usd=max(0, snap.reserved_usd - (sl.held_u if sl.member else 0) + sl.res_u),
                        overrun=snap.overrun + sl.over_t + f[2],
                        overrun_usd=snap.overrun_usd + sl.over_u + f[3],
                    )
                )
        return out

    def peek(self, levels: Sequence[Level], now: float) -> list[Snapshot]:
        return self._adjust(levels, self.redis.peek(levels, now))

    async def apeek(self, levels: Sequence[Level], now: float) -> list[Snapshot]:
        return self._adjust(levels, await self.redis.apeek(levels, now))

    def delete(self, levels: Sequence[Level]) -> None:
        with self._lock:
            for lv in levels:
                self._slices.pop(lv.key, None)
        self.redis.delete(levels)

    async def adelete(self, levels: Sequence[Level]) -> None:
        with self._lock:
            for lv in levels:
                self._slices.pop(lv.key, None)
        await self.redis.adelete(levels)

    def exists(self, level: Level) -> bool:
        return level.key in self._slices or self.redis.exists(level)

    async def aexists(self, level: Level) -> bool:
        return level.key in self._slices or await self.redis.aexists(level)

    # -- syncing slices with Redis ---------------------------------------------------------------------------
    def _due(self, now: float) -> bool:
        return now - self._last_sync >= self.flush_interval

    def _plan(self, now: float, force: bool, closing: bool = False) -> tuple[list[str], list[Any], list[Slice], dict]:
        """Build one sync of every slice that needs one (lock held); mark their spend as in flight."""
        todo: list[Slice] = []
        extra: list[Any] = []
        prefixes: list[str] = []
        renew_at = now + self.lease_seconds / 3
        for key, sl in list(self._slices.items()):
            idle = now - sl.used_at >= self.idle_seconds and not sl.res
            needs = (
                sl.dirty()
                or sl.want
                or closing
                or (sl.member and sl.valid_until - self.margin < renew_at)
                or (idle and sl.member)
            )
            if not needs:
                if idle and not sl.member:
                    del self._slices[key]  # nothing held, nothing owed: forget it
                continue
            if sl.flushing != (0, 0, 0, 0):
                continue  # a reply still owed for this slice (kept in _pending)
            lv = sl.level
            give_back = closing or idle or sl.returning
            ft, fu, ot, ou = sl.spent_t, sl.spent_u, sl.over_t, sl.over_u
            sl.flushing = (ft, fu, ot, ou)
            sl.spent_t = sl.spent_u = sl.over_t = sl.over_u = 0
            if give_back:
                sl.returning = True
                kt, ku = sl.res_t, sl.res_u  # keep only what is reserved: the rest goes back now
                et = eu = 0
            else:
                kt, ku = max(0, sl.held_t - ft), max(0, sl.held_u - fu)
                target_t = int((lv.total or 0) * self.fraction)
                target_u = int((lv.total_usd or 0) * self.fraction)
                free_t, free_u = kt - sl.res_t, ku - sl.res_u
                et, eu = max(0, target_t - free_t), max(0, target_u - free_u)
            todo.append(sl)
            prefix = f"slice.{self._replica}.{self._next_gen()}"
            prefixes.append(prefix)
            extra += (sl.member, ft, fu, ot, ou, kt, ku, et, eu, prefix)
        if not todo:
            return [], [], [], {}
        levels = [sl.level for sl in todo]
        keys = self.redis._keys(levels, f"sync.{self._replica}.{self._next_gen()}")
        marker_ms = int(max(60.0, 2 * self.lease_seconds) * 1000)
        args = self.redis._args(levels, now) + extra + [int((now + self.lease_seconds) * 1000), marker_ms]
        return keys, args, todo, {"now": now, "prefixes": prefixes}

    def _next_gen(self) -> int:
        self._gen += 1
        return self._gen

    def _apply(self, plan: Any, raw: list[Any]) -> list[tuple[Slice, Crossing]]:
        """Take a sync's reply into the slices (lock held). Returns the crossings found, per slice."""
        _, _, todo, meta = plan
        parts = [p.decode() if isinstance(p, bytes) else str(p) for p in raw]
        x = parts.index("x")
        for sl, part, prefix in zip(todo, parts[:x], meta["prefixes"], strict=True):
            status, nt, nu, s, su = (int(v) for v in part.split(","))
            if status == 2:
                log.warning("budget %r: this replica's slice had expired in Redis", sl.level.budget_id)
            sl.flushing = (0, 0, 0, 0)
            sl.held_t, sl.held_u = nt, nu
            sl.member = f"{prefix}|{nt}|{nu}" if nt or nu else ""
            sl.base_s, sl.base_su = s, su
            sl.want = sl.returning = False
            sl.valid_until = meta["now"] + self.lease_seconds - self.margin
        out = []
        for c in parts[x + 1 :]:
            i, u, t, spent = c.split(",")
            out.append((todo[int(i)], Crossing(int(i), _UNITS[int(u)], float(t), int(spent))))
        return out

    def _failed(self, todo: list[Slice]) -> None:
        """A sync that did not reach Redis (or whose reply was lost): keep it to be replayed as is."""
        for sl in todo:
            sl.want = sl.want or not sl.member

    def _deliver(self, got: list[tuple[Slice, Crossing]]) -> None:
        for sl, c in got:
            fired = ("tokens" if c.unit == "tokens" else "usd", c.threshold)
            sl.fired.add(fired)
            if sl.notify is not None:
                cb, index = sl.notify
                try:
                    cb(SettleResult(crossings=(c._replace(index=index),)))
                except Exception:
                    log.exception("budget warning delivery failed")

    def _crossings_for(self, got: list[tuple[Slice, Crossing]], levels: Sequence[Level]) -> tuple[Crossing, ...]:
        """The crossings of a sync made for a settle on ``levels``: returned to it (the rest are delivered)."""
        index = {lv.key: i for i, lv in enumerate(levels)}
        mine, others = [], []
        for sl, c in got:
            i = index.get(sl.level.key)
            if i is None:
                others.append((sl, c))
            else:
                sl.fired.add((c.unit, c.threshold))
                mine.append(c._replace(index=i))
        self._deliver(others)
        return tuple(mine)

    def _take_plan(self, now: float, force: bool, closing: bool) -> Any:
        with self._lock:
            if self._pending is not None:
                return self._pending, True
            plan = self._plan(now, force, closing)
            if not plan[2]:
                return None, False
            self._pending = plan
            return plan, False

    def _landed(self, plan: Any, raw: list[Any]) -> list[tuple[Slice, Crossing]]:
        with self._lock:
            got = self._apply(plan, raw)
            self._pending = None
        self.syncs += 1
        return got

    def _sync(self, now: float, *, force: bool = False, closing: bool = False) -> list[tuple[Slice, Crossing]]:
        """One sync round trip (sync client). Returns the crossings it found (not yet delivered)."""
        if not self._sync_lock.acquire(blocking=force or closing):
            return []
        try:
            got: list[tuple[Slice, Crossing]] = []
            for _ in range(2):  # a replayed sync first, then a fresh one
                plan, replay = self._take_plan(now, force, closing)
                if plan is None:
                    break
                self._last_sync = now
                if self._script is None:
                    self._script = self.redis._client.register_script(SYNC_LUA)
                try:
                    raw = self._script(keys=plan[0], args=plan[1])
                except _DOWN as exc:
                    with self._lock:
                        self._failed(plan[2])
                    log.warning("budget slices: Redis unreachable, spend kept to flush later: %s", exc)
                    break
                got += self._landed(plan, raw)
                if not replay:
                    break
            return got
        finally:
            self._sync_lock.release()

    def _sync_inline(self, now: float) -> None:
        """Sync from the sync API when one is due (there is no background task off an event loop)."""
        with self._lock:
            due = self._pending is not None or (
                self._due(now) and any(s.dirty() or s.want for s in self._slices.values())
            )
        if due:
            self._deliver(self._sync(now))

    async def _async_sync(
        self, now: float | None = None, *, force: bool = False, closing: bool = False
    ) -> list[tuple[Slice, Crossing]]:
        if not self._sync_lock.acquire(blocking=False):
            if not (force or closing):
                return []
            while not self._sync_lock.acquire(blocking=False):  # never block the loop
                await asyncio.sleep(0.001)
        try:
            got: list[tuple[Slice, Crossing]] = []
            for _ in range(2):
                t = self._clock() if now is None else now
                plan, replay = self._take_plan(t, force, closing)
                if plan is None:
                    break
                self._last_sync = t
                client = self.redis._async()[0]
                script = self._ascripts.get(client)
                if script is None:
                    script = self._ascripts[client] = client.register_script(SYNC_LUA)
                try:
                    raw = await script(keys=plan[0], args=plan[1])
                except _DOWN as exc:
                    with self._lock:
                        self._failed(plan[2])
                    log.warning("budget slices: Redis unreachable, spend kept to flush later: %s", exc)
                    break
                got += self._landed(plan, raw)
                if not replay:
                    break
            return got
        finally:
            self._sync_lock.release()

    def _kick(self, *, urgent: bool) -> None:
        """Make sure this loop's background flusher runs (soon if ``urgent``)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        ticker = self._tickers.get(loop)
        if ticker is not None and ticker.event.is_set() and (ticker.urgent or not urgent):
            return  # already woken
        if ticker is None or ticker.task.done():
            ticker = self._tickers[loop] = _Ticker(self, loop)
        ticker.wake(urgent)

    def flush(self) -> None:
        """Flush every slice's spend to Redis now (and renew / top up the slices); warnings are delivered."""
        self._deliver(self._sync(self._clock(), force=True))

    async def aflush(self) -> None:
        """Async twin of :meth:`flush`."""
        self._deliver(await self._async_sync(force=True))

    def close(self) -> None:
        """Flush the spend, hand every unused slice back, close the Redis client."""
        try:
            self._deliver(self._sync(self._clock(), closing=True))
        except StoreUnavailableError:
            pass
        self.redis.close()

    async def aclose(self) -> None:
        for loop, ticker in list(self._tickers.items()):
            if loop is asyncio.get_running_loop():
                ticker.task.cancel()
        try:
            self._deliver(await self._async_sync(closing=True))
        except StoreUnavailableError:
            pass
        await self.redis.aclose()


async def _to_completion(coro: Any) -> Any:
    """Await a Redis round trip that must finish even if the caller is cancelled (it runs on in its task)."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieve, never warn
        raise


class _Ticker:
    """The background flusher of one event loop: syncs within ``flush_interval`` of spend, at once when a
    slice is wanted, and every third of ``lease_seconds`` to renew (or hand back idle slices)."""

    def __init__(self, store: LeasedBudgetStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.event = asyncio.Event()
        self.urgent = False
        self.task = loop.create_task(self.run())

    def wake(self, urgent: bool) -> None:
        self.urgent = self.urgent or urgent
        self.event.set()

    async def run(self) -> None:
        st = self.store
        while True:
            try:
                await asyncio.wait_for(self.event.wait(), timeout=min(st.lease_seconds / 3, st.idle_seconds))
            except TimeoutError:
                pass
            if not self.urgent:
                await asyncio.sleep(st.flush_interval)  # gather the spend of the next few calls into one flush
            self.event.clear()
            self.urgent = False
            try:
                st._deliver(await st._async_sync())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("budget slices: background sync failed")
            if st._pending is not None:
                await asyncio.sleep(min(1.0, st.flush_interval * 10))  # Redis is down: retry, not spin


def _rebuild(redis: RedisBudgetStore, opts: dict[str, Any]) -> LeasedBudgetStore:
    return LeasedBudgetStore(redis, **opts)
