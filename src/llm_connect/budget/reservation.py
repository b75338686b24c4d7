"""A reservation: the worst case of one call held on a budget chain until it is settled or released.

Made by :meth:`BudgetTracker.reserve <llm_connect.budget.tracker.BudgetTracker.reserve>`; see that module for the
whole reserve → settle protocol.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .stores import LEASE, RECORD, BudgetStore, Level, SettleResult, StoreUnavailableError, units_to_usd, usd_to_units
from .warnings import BudgetWarning

if TYPE_CHECKING:
    from .tracker import BudgetTracker

__all__ = ["Reservation", "check_tokens"]

log = logging.getLogger("llm_connect.budget")


def check_tokens(tokens: int) -> int:
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ValueError(f"tokens must be a non-negative int, got {tokens!r}")
    return tokens


async def _to_completion(coro: Any, store: BudgetStore) -> Any:
    """Await a store call that must finish even if the caller is cancelled (a client hung up, a timeout):
    a settle cut in half would lose spend, a reserve cut in half would hold budget until its lease ends.
    The call runs on; the caller still sees its CancelledError. (A store whose async calls never suspend
    cannot be cut in half: no task needed.)"""
    if store.atomic_async:
        return await coro
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_report_late_failure)
        raise


def _report_late_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("budget store call finished after cancellation with an error: %s", task.exception())


class Reservation:
    """A worst case held on a budget chain until :meth:`settle` or :meth:`release` (each idempotent).

    As a context manager (sync or async) it releases on exit unless it was settled or released.
    """

    __slots__ = (
        "_detached",
        "_open",
        "charged_tokens",
        "charged_usd_units",
        "id",
        "label",
        "levels",
        "overrun_tokens",
        "overrun_usd_units",
        "priced",
        "state",
        "tokens",
        "tracker",
        "usd_units",
    )

    def __init__(
        self,
        tracker: BudgetTracker,
        levels: tuple[Level, ...],
        tokens: int,
        usd: int,
        priced: bool,
        label: str,
        res_id: str,
    ) -> None:
        self.tracker = tracker
        self.levels = levels
        self.id = res_id
        self.tokens = tokens
        self.usd_units = usd
        self.priced = priced
        self.label = label
        #: "open", "settled" or "released"
        self.state = "open"
        self.charged_tokens = 0
        self.charged_usd_units = 0
        self.overrun_tokens = 0
        self.overrun_usd_units = 0
        self._open = [True]  # list.pop is atomic: the first settle/release wins, later ones are no-ops
        #: reserved while the store was unreachable (fail_open): settling records the spend without a lease
        self._detached = False

    def __repr__(self) -> str:
        return (
            f"Reservation(budget_id={self.tracker.budget_id!r}, tokens={self.tokens}, usd={self.usd}, "
            f"state={self.state!r}, label={self.label!r})"
        )

    @property
    def budget_id(self) -> str:
        return self.tracker.budget_id

    @property
    def usd(self) -> Decimal | None:
        return units_to_usd(self.usd_units) if self.priced else None

    @property
    def done(self) -> bool:
        return not self._open

    def _claim(self, state: str) -> bool:
        try:
            self._open.pop()
        except IndexError:
            return False
        self.state = state
        return True

    def _settle_args(self, tokens: int, usd: Decimal | None) -> tuple[int, int]:
        tok = check_tokens(tokens)
        if usd is not None:
            return tok, usd_to_units(usd)
        # unknown actual cost: the reserved (worst-case) price, scaled up (rounded up) to the tokens reported
        # beyond the reservation, so that neither nothing nor a fraction of the worst case is charged
        return tok, (-(-self.usd_units * tok // self.tokens) if tok > self.tokens > 0 else self.usd_units)

    def _settled(self, result: SettleResult) -> list[BudgetWarning]:
        self.charged_tokens, self.charged_usd_units = result.charged, result.charged_usd
        self.overrun_tokens, self.overrun_usd_units = result.overrun, result.overrun_usd
        if result.overrun or result.overrun_usd:
            log.warning(
                "budget %r: settled spend exceeded the cap by %d tokens / $%s (recorded as overrun)",
                self.tracker.budget_id,
                result.overrun,
                units_to_usd(result.overrun_usd),
            )
        return self.tracker._deliver(self.levels, result)

    def settle(self, tokens: int, usd: Decimal | None = None) -> list[BudgetWarning]:
        """Charge the actual spend and free the rest. Returns the warnings this spend crossed.

        ``usd=None`` (the actual cost is unknown) charges the reserved price, or, when ``tokens`` exceeds the
        reserved tokens, that price per reserved token times ``tokens``. A second call is a no-op.
        """
        tok, units = self._settle_args(tokens, usd)
        if not self._claim("settled"):
            return []
        return self._settle_now(tok, units)

    def _settle_now(self, tok: int, units: int) -> list[BudgetWarning]:
        t = self.tracker
        try:
            result = t._store.settle(
                self.levels,
                self.id,
                self.tokens,
                self.usd_units,
                tok,
                units,
                t._clock(),
                RECORD if self._detached else LEASE,
                t._replayer(self.levels),
            )
        except StoreUnavailableError as exc:
            t._lost(exc, "settle")
            return []
        return self._settled(result)

    async def asettle(self, tokens: int, usd: Decimal | None = None) -> list[BudgetWarning]:
        """Async twin of :meth:`settle`."""
        tok, units = self._settle_args(tokens, usd)
        if not self._claim("settled"):
            return []
        t = self.tracker
        if t._inline:  # a store whose async twin only runs the sync operation: no coroutine needed
            return self._settle_now(tok, units)
        mode = RECORD if self._detached else LEASE
        try:
            result = await _to_completion(
                t._store.asettle(
                    self.levels,
                    self.id,
                    self.tokens,
                    self.usd_units,
                    tok,
                    units,
                    t._clock(),
                    mode,
                    t._replayer(self.levels),
                ),
                t._store,
            )
        except StoreUnavailableError as exc:
            t._lost(exc, "settle")
            return []
        return self._settled(result)

    def release(self) -> None:
        """Give the whole reservation back (nothing was spent). A second call is a no-op."""
        if not self._claim("released") or self._detached:
            return
        try:
            self.tracker._store.release(self.levels, self.id, self.tokens, self.usd_units)
        except StoreUnavailableError as exc:
            self.tracker._lost(exc, "release")

    async def arelease(self) -> None:
        if not self._claim("released") or self._detached:
            return
        try:
            store = self.tracker._store
            await _to_completion(store.arelease(self.levels, self.id, self.tokens, self.usd_units), store)
        except StoreUnavailableError as exc:
            self.tracker._lost(exc, "release")

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.arelease()
