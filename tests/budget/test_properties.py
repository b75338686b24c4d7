"""Property tests: any sequence of reserve / settle / release / consume / record / child operations, leases
expiring (and settled or released late) included, keeps on every budget ``0 <= spent <= total`` and
``reserved >= 0`` — and matches a plain reference model exactly."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from math import ceil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from llm_connect.budget import (
    BudgetStore,
    BudgetTracker,
    LLMBudgetExceededError,
    MemoryBudgetStore,
    RedisBudgetStore,
    Reservation,
)
from llm_connect.budget.stores import usd_to_units
from llm_connect.errors import LLMUsageError

from .conftest import REDIS_URL, Clock, _redis_up, fresh_namespace

LEASE = 60.0

caps = st.one_of(st.none(), st.integers(0, 3000))
usd_caps = st.one_of(st.none(), st.integers(0, 3000).map(lambda n: Decimal(n) / 1000))
amounts = st.integers(0, 1500)
dollars = st.integers(0, 1500).map(lambda n: Decimal(n) / 1000)  # $0.000 .. $1.500
pick = st.integers(0, 10**6)
#: a settle's cost: known, or None (unknown: the reserved worst case, scaled to the tokens reported)
costs = st.one_of(st.none(), dollars)


def unknown_cost_charge(reserved_tokens: int, reserved_units: int, actual: int) -> int:
    """What a settle without a cost charges, in nano-dollars: the reserved price, or, past the reserved
    tokens, the reserved price per reserved token times the tokens reported — rounded up."""
    if actual <= reserved_tokens or reserved_tokens == 0:
        return reserved_units
    return ceil(Fraction(reserved_units) / reserved_tokens * actual)


def settle_units(reserved_tokens: int, reserved_units: int, actual: int, usd: Decimal | None) -> int:
    return unknown_cost_charge(reserved_tokens, reserved_units, actual) if usd is None else usd_to_units(usd)


@dataclass
class Node:
    """The reference model of one budget."""

    total: int | None
    total_usd: int | None
    parent: int | None
    spent: int = 0
    reserved: int = 0
    spent_usd: int = 0
    reserved_usd: int = 0
    overrun: int = 0


class BudgetMachine(RuleBasedStateMachine):
    def make_store(self) -> BudgetStore:
        return MemoryBudgetStore()

    def __init__(self) -> None:
        super().__init__()
        self.store = self.make_store()
        self.trackers: list[BudgetTracker] = []
        self.nodes: list[Node] = []
        self.open: list[tuple[Reservation, int, int, int]] = []  # reservation, node, tokens, usd units
        self.expired: list[tuple[Reservation, int, int, int]] = []  # leases the store has reclaimed
        self.clock = Clock()

    def chain(self, i: int | None) -> list[Node]:
        out = []
        while i is not None:
            out.append(self.nodes[i])
            i = self.nodes[i].parent
        return out

    def free(self, i: int) -> tuple[int | None, int | None]:
        tok = usd = None
        for n in self.chain(i):
            if n.total is not None:
                f = max(0, n.total - n.spent - n.reserved)
                tok = f if tok is None else min(tok, f)
            if n.total_usd is not None:
                f = max(0, n.total_usd - n.spent_usd - n.reserved_usd)
                usd = f if usd is None else min(usd, f)
        return tok, usd

    @initialize(total=caps, total_usd=usd_caps)
    def root(self, total: int | None, total_usd: Decimal | None) -> None:
        self.trackers.append(
            BudgetTracker(
                total,
                total_usd=total_usd,
                store=self.store,
                thresholds=(0.5, 0.9),
                lease_seconds=LEASE,
                clock=self.clock,
            )
        )
        self.nodes.append(Node(total, None if total_usd is None else usd_to_units(total_usd), None))

    @precondition(lambda self: len(self.trackers) < 8)
    @rule(parent=pick, total=caps, total_usd=usd_caps)
    def child(self, parent: int, total: int | None, total_usd: Decimal | None) -> None:
        p = parent % len(self.trackers)
        self.trackers.append(self.trackers[p].child(total, total_usd))
        self.nodes.append(Node(total, None if total_usd is None else usd_to_units(total_usd), p))

    @rule(who=pick, tokens=amounts, usd=dollars)
    def reserve(self, who: int, tokens: int, usd: Decimal) -> None:
        i = who % len(self.trackers)
        units = usd_to_units(usd)
        tok_free, usd_free = self.free(i)
        fits = (tok_free is None or tokens <= tok_free) and (usd_free is None or units <= usd_free)
        try:
            res = self.trackers[i].reserve(tokens, usd)
        except LLMBudgetExceededError:
            assert not fits
            return
        assert fits
        for n in self.chain(i):
            n.reserved += tokens
            n.reserved_usd += units
        self.open.append((res, i, tokens, units))

    def _charge(self, i: int, tokens: int, units: int) -> tuple[int, int]:
        tok_free, usd_free = self.free(i)
        ct = tokens if tok_free is None else min(tokens, tok_free)
        cu = units if usd_free is None else min(units, usd_free)
        for n in self.chain(i):
            n.spent += ct
            n.spent_usd += cu
            n.overrun += tokens - ct
        return ct, cu

    @precondition(lambda self: self.open)
    @rule(which=pick, actual=st.integers(0, 2000), usd=costs, twice=st.booleans())
    def settle(self, which: int, actual: int, usd: Decimal | None, twice: bool) -> None:
        res, i, tokens, units = self.open.pop(which % len(self.open))
        for n in self.chain(i):
            n.reserved -= tokens
            n.reserved_usd -= units
        ct, cu = self._charge(i, actual, settle_units(tokens, units, actual, usd))
        res.settle(actual, usd)
        assert (res.charged_tokens, res.charged_usd_units) == (ct, cu)
        if twice:
            assert res.settle(actual, usd) == [] and res.charged_tokens == ct

    @precondition(lambda self: self.open)
    @rule(which=pick)
    def release(self, which: int) -> None:
        res, i, tokens, units = self.open.pop(which % len(self.open))
        for n in self.chain(i):
            n.reserved -= tokens
            n.reserved_usd -= units
        res.release()
        res.release()

    @rule(who=pick, tokens=amounts, usd=dollars)
    def consume(self, who: int, tokens: int, usd: Decimal) -> None:
        i = who % len(self.trackers)
        units = usd_to_units(usd)
        tok_free, usd_free = self.free(i)
        fits = (tok_free is None or tokens <= tok_free) and (usd_free is None or units <= usd_free)
        try:
            self.trackers[i].consume(tokens, usd)
        except LLMBudgetExceededError:
            assert not fits
            return
        assert fits
        self._charge(i, tokens, units)

    @rule(who=pick, tokens=amounts, usd=st.one_of(st.none(), dollars))
    def record(self, who: int, tokens: int, usd: Decimal | None) -> None:
        i = who % len(self.trackers)
        if usd is None and any(n.total_usd is not None for n in self.chain(i)):
            with pytest.raises(LLMUsageError):  # a USD cap needs the cost: nothing is recorded
                self.trackers[i].record(tokens, usd)
            return
        self.trackers[i].record(tokens, usd)
        self._charge(i, tokens, 0 if usd is None else usd_to_units(usd))

    @precondition(lambda self: self.open)
    @rule()
    def leases_expire(self) -> None:
        """The callers holding the open reservations crashed: once their leases end the room comes back."""
        self.clock.advance(LEASE + 1)
        for _res, i, tokens, units in self.open:
            for n in self.chain(i):
                n.reserved -= tokens
                n.reserved_usd -= units
        self.expired += self.open
        self.open = []

    @precondition(lambda self: self.expired)
    @rule(which=pick, actual=st.integers(0, 2000), usd=costs)
    def settle_late(self, which: int, actual: int, usd: Decimal | None) -> None:
        """A call that outlived its lease still settles: its spend is charged (overrun if it no longer fits)."""
        res, i, tokens, units = self.expired.pop(which % len(self.expired))
        ct, cu = self._charge(i, actual, settle_units(tokens, units, actual, usd))
        res.settle(actual, usd)
        assert (res.charged_tokens, res.charged_usd_units) == (ct, cu)

    @precondition(lambda self: self.expired)
    @rule(which=pick)
    def release_late(self, which: int) -> None:
        res, *_ = self.expired.pop(which % len(self.expired))
        res.release()  # the room already came back: nothing changes

    @invariant()
    def numbers_hold(self) -> None:
        for t, n in zip(self.trackers, self.nodes, strict=True):
            st_ = t.state()
            assert st_.spent >= 0 and st_.reserved >= 0 and st_.spent_usd >= 0 and st_.reserved_usd >= 0
            if n.total is not None:
                assert st_.spent + st_.reserved <= n.total
            if n.total_usd is not None:
                assert usd_to_units(st_.spent_usd) + usd_to_units(st_.reserved_usd) <= n.total_usd
            assert (st_.spent, st_.reserved, st_.overrun) == (n.spent, n.reserved, n.overrun)
            assert usd_to_units(st_.spent_usd) == n.spent_usd
            assert usd_to_units(st_.reserved_usd) == n.reserved_usd

    def teardown(self) -> None:
        for res, *_ in self.open + self.expired:
            res.release()


class RedisBudgetMachine(BudgetMachine):
    def make_store(self) -> BudgetStore:
        return RedisBudgetStore(REDIS_URL, namespace=fresh_namespace())

    def teardown(self) -> None:
        super().teardown()
        assert isinstance(self.store, RedisBudgetStore)
        self.store.drop_namespace()
        self.store.close()


TestMemoryBudgetProperties = BudgetMachine.TestCase
TestMemoryBudgetProperties.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

TestRedisBudgetProperties = pytest.mark.skipif(not _redis_up(), reason="needs Redis")(RedisBudgetMachine.TestCase)
TestRedisBudgetProperties.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@settings(max_examples=300, deadline=None)
@given(
    reserved=st.integers(0, 10**7),
    price=st.integers(0, 10**6).map(lambda n: Decimal(n) / 10**6),  # $0 .. $1 in micro-dollars
    actual=st.integers(0, 10**8),
    cap=st.sampled_from([None, Decimal("0.5")]),
)
def test_settle_without_a_cost_never_charges_less_than_the_worst_case(
    reserved: int, price: Decimal, actual: int, cap: Decimal | None
) -> None:
    """An unknown actual cost is charged as the reserved worst case per reserved token, never less: at least
    the reserved price, and at least that price per token times the tokens reported (the smallest such
    nano-dollar amount). What a USD cap cannot hold goes to overrun, never nowhere."""
    tracker = BudgetTracker(total_usd=Decimal(2) if cap is None else None)
    if cap is not None:  # the cap lives on an ancestor: a child's settle is charged on the whole chain
        tracker = BudgetTracker(total_usd=cap).child(total=None)
        price = min(price, cap)
    res = tracker.reserve(reserved, price)
    res.settle(actual)
    charged = res.charged_usd_units + res.overrun_usd_units
    units = usd_to_units(price)
    assert charged == unknown_cost_charge(reserved, units, actual)
    assert charged >= units
    if reserved:
        assert charged * reserved >= units * actual  # never below the worst case per token
        if actual > reserved:
            assert (charged - 1) * reserved < units * actual  # and not a nano-dollar more
    assert usd_to_units(tracker.spent_usd) + usd_to_units(tracker.overrun_usd) == charged
