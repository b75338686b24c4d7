"""BudgetTracker contract, on both stores (memory and real Redis): same behaviour, same numbers."""

from __future__ import annotations

import asyncio
import calendar
import time
from decimal import Decimal

import pytest

from llm_connect.budget import (
    BudgetStore,
    BudgetTracker,
    BudgetWarning,
    LLMBudgetExceededError,
    Reservation,
)
from llm_connect.errors import LLMError

from .conftest import Clock


def test_seed_api_shape() -> None:
    tracker = BudgetTracker(total=4000)
    assert tracker.total == 4000 and tracker.total_usd is None
    assert tracker.spent == 0 and tracker.reserved == 0 and tracker.remaining() == 4000
    assert issubclass(LLMBudgetExceededError, LLMError)


def test_reserve_then_settle_charges_actual_and_frees_the_rest(store: BudgetStore) -> None:
    t = BudgetTracker(total=4000, store=store)
    res = t.reserve(1500, label="call-1")
    assert isinstance(res, Reservation) and res.label == "call-1"
    assert (t.spent, t.reserved, t.remaining()) == (0, 1500, 2500)
    assert res.settle(600, None) == []
    assert (t.spent, t.reserved, t.remaining()) == (600, 0, 3400)
    assert res.state == "settled" and res.charged_tokens == 600


def test_settle_and_release_are_idempotent(store: BudgetStore) -> None:
    t = BudgetTracker(total=1000, store=store)
    res = t.reserve(400)
    res.settle(300, None)
    res.settle(300, None)
    res.release()
    assert (t.spent, t.reserved) == (300, 0)
    other = t.reserve(200)
    other.release()
    other.release()
    other.settle(200, None)  # after a release: no-op
    assert (t.spent, t.reserved) == (300, 0)


def test_context_manager_releases_unless_settled(store: BudgetStore) -> None:
    t = BudgetTracker(total=1000, store=store)
    with pytest.raises(RuntimeError), t.reserve(700):
        assert t.reserved == 700
        raise RuntimeError("provider failed")
    assert (t.spent, t.reserved) == (0, 0)
    with t.reserve(500) as res:
        res.settle(123, None)
    assert (t.spent, t.reserved) == (123, 0)


async def test_async_twins(store: BudgetStore) -> None:
    t = BudgetTracker(total=1000, store=store)
    res = await t.areserve(600)
    assert (await t.astate()).reserved == 600
    assert await t.aremaining() == 400
    assert await t.amax_output_tokens(100) == 300
    await res.asettle(250, None)
    async with await t.areserve(100):
        pass
    r2 = await t.areserve(50)
    await r2.arelease()
    await r2.arelease()
    assert await t.aconsume(50) == []
    st = await t.astate()
    assert (st.spent, st.reserved) == (300, 0)


def test_refusal_names_the_budget_and_numbers(store: BudgetStore) -> None:
    t = BudgetTracker(total=1000, store=store, budget_id="tenant-a")
    t.reserve(800)
    with pytest.raises(LLMBudgetExceededError) as ei:
        t.reserve(300)
    err = ei.value
    assert (err.budget_id, err.requested, err.remaining) == ("tenant-a", 300, 200)
    assert "tenant-a" in str(err) and err.code == "budget_exceeded"
    assert t.reserved == 800  # a refused reservation changes nothing


def test_usd_budget_refuses_unpriced_models(store: BudgetStore) -> None:
    t = BudgetTracker(total_usd=Decimal("2.50"), store=store)
    with pytest.raises(LLMBudgetExceededError, match="model has no price"):
        t.reserve(100)
    with pytest.raises(LLMBudgetExceededError, match="model has no price"):
        t.child(total=50).reserve(10)  # the parent's USD cap applies to the child
    assert t.needs_usd and t.child().needs_usd
    assert not BudgetTracker(total=10).needs_usd


def test_usd_budget_is_exact_decimal(store: BudgetStore) -> None:
    t = BudgetTracker(total=10_000, total_usd=Decimal("2.50"), store=store)
    res = t.reserve(1000, Decimal("1.20"))
    assert t.reserved_usd == Decimal("1.2") and t.remaining_usd() == Decimal("1.3")
    res.settle(800, Decimal("0.000123"))
    assert t.spent_usd == Decimal("0.000123") and t.reserved_usd == 0
    with pytest.raises(LLMBudgetExceededError) as ei:
        t.reserve(10, Decimal("2.5"))
    assert ei.value.requested == Decimal("2.5") and ei.value.remaining == Decimal("2.499877")
    with pytest.raises(TypeError):
        t.reserve(10, 0.5)  # type: ignore[arg-type]


def test_settle_without_cost_charges_the_reserved_price(store: BudgetStore) -> None:
    t = BudgetTracker(total_usd=Decimal("1"), store=store)
    t.reserve(10, Decimal("0.25")).settle(5, None)
    assert t.spent_usd == Decimal("0.25")


async def test_settle_without_cost_beyond_the_reservation_charges_the_worst_case_per_token(
    store: BudgetStore,
) -> None:
    # reserved: 100 tokens for at most $0.001; the provider reported 250 tokens and no cost
    t = BudgetTracker(total_usd=Decimal("1"), store=store)
    t.reserve(100, Decimal("0.001")).settle(250)
    assert t.spent_usd == Decimal("0.0025")  # not the $0.001 reserved for 100 of them
    res = await t.areserve(3, Decimal("0.000000010"))  # 10 nano-dollars for 3 tokens
    await res.asettle(4)
    assert res.charged_usd_units == 14  # 10 * 4 / 3 = 13.3..., rounded up: never under
    # beyond what the cap can hold: the rest is overrun, not dropped
    big = t.reserve(10, Decimal("0.5"))
    big.settle(100)  # worst case $5 for 100 tokens, with $0.997499986 of the cap left
    assert t.spent_usd == Decimal("1") and t.spent_usd + t.overrun_usd == Decimal("5.002500014")
    assert big.charged_usd_units + big.overrun_usd_units == 5_000_000_000
    # a reservation of no tokens (a per-request price) has no per-token rate: its price is charged as is
    flat = BudgetTracker(total_usd=Decimal("1"), store=store)
    flat.reserve(0, Decimal("0.002")).settle(40)
    assert flat.spent_usd == Decimal("0.002")


def test_an_unpriced_call_on_a_usd_cap_is_never_counted_at_zero(store: BudgetStore) -> None:
    """The rule of docs/budgets.md, operation by operation, on a USD cap held by an ancestor."""
    from llm_connect.errors import LLMUsageError

    tenant = BudgetTracker(total_usd=Decimal("1"), store=store, budget_id="usd-rule")
    agent = tenant.child(total=10_000)
    with pytest.raises(LLMBudgetExceededError, match="model has no price"):
        agent.reserve(100)  # before the call: refused, fail closed
    with pytest.raises(LLMBudgetExceededError, match="model has no price"):
        agent.consume(100)  # a direct spend is checked like a reservation
    with pytest.raises(LLMUsageError, match="usd-rule"):
        agent.record(100)  # after the call, with no worst case to charge: the caller must price it
    assert (tenant.spent, tenant.spent_usd, tenant.reserved, tenant.overrun) == (0, 0, 0, 0)
    agent.reserve(100, Decimal("0.01")).settle(100)  # priced when reserved, cost unknown when settled
    assert (tenant.spent, tenant.spent_usd) == (100, Decimal("0.01"))


def test_max_output_tokens_across_the_chain(store: BudgetStore) -> None:
    root = BudgetTracker(total=1000, store=store)
    assert BudgetTracker(total_usd=Decimal(1), store=store).max_output_tokens(10) is None
    child = root.child(total=5000)
    assert child.max_output_tokens(300) == 700  # the parent binds
    root.reserve(600)
    assert child.max_output_tokens(300) == 100
    assert child.max_output_tokens(500) == 0
    assert child.remaining() == 400


def test_delegation_chain_hits_the_root_cap_and_not_one_token_more(store: BudgetStore) -> None:
    a = BudgetTracker(total=4000, store=store, budget_id="A")
    b = a.child(total=5000, budget_id="B")
    c = b.child(budget_id="C")  # no cap of its own: A's cap binds through B
    n = 0
    while True:
        try:
            c.reserve(333).settle(333, None)
        except LLMBudgetExceededError as err:
            assert (err.budget_id, err.remaining) == ("A", 4000 - 333 * n)
            break
        n += 1
    assert n == 12
    with pytest.raises(LLMBudgetExceededError):
        c.reserve(5)
    c.reserve(4).settle(4, None)
    assert a.spent == b.spent == c.spent == 4000
    for actor in (a, b, c):
        with pytest.raises(LLMBudgetExceededError) as ei:
            actor.reserve(1)
        assert ei.value.budget_id == "A"
    assert c.max_output_tokens(0) == 0 and c.remaining() == 0


def test_child_spend_counts_on_every_ancestor(store: BudgetStore) -> None:
    a = BudgetTracker(total=100, store=store)
    b = a.child(50)
    c = b.child(20)
    c.reserve(15).settle(10, None)
    b.consume(5)
    assert (a.spent, b.spent, c.spent) == (15, 15, 10)
    with pytest.raises(LLMBudgetExceededError) as ei:
        c.reserve(11)
    assert ei.value.budget_id == c.budget_id and ei.value.remaining == 10
    with pytest.raises(ValueError):
        c.child(budget_id=a.budget_id)


def test_overrun_is_recorded_never_lost_and_spent_stays_capped(store: BudgetStore) -> None:
    t = BudgetTracker(total=1000, store=store)
    other = t.reserve(300)
    res = t.reserve(500)
    res.settle(900, None)  # the provider reported more than reserved; only 700 fit
    assert (t.spent, t.overrun, t.reserved) == (700, 200, 300)
    assert (res.charged_tokens, res.overrun_tokens) == (700, 200)
    other.settle(300, None)
    assert (t.spent, t.overrun) == (1000, 200)
    assert t.spent <= t.total  # type: ignore[operator]


def test_consume_is_strict_and_record_is_not(store: BudgetStore) -> None:
    t = BudgetTracker(total=100, store=store)
    t.consume(60)
    with pytest.raises(LLMBudgetExceededError):
        t.consume(41)
    assert t.spent == 60
    t.record(50)
    assert (t.spent, t.overrun) == (100, 10)


def test_thresholds_fire_exactly_once(store: BudgetStore) -> None:
    t = BudgetTracker(total=1000, store=store, budget_id="b1")
    seen: list[BudgetWarning] = []
    t.subscribe(seen.append)
    assert t.consume(700) == []
    w = t.consume(80)
    assert [x.threshold for x in w] == [0.75]
    assert w[0] == BudgetWarning(0.75, 780, 1000, 220, "b1", "tokens")
    w = t.consume(200)  # crosses 0.90 and 0.95 at once
    assert [x.threshold for x in w] == [0.90, 0.95]
    assert t.consume(20) == []
    assert [x.threshold for x in seen] == [0.75, 0.90, 0.95]
    assert t.state().fired == {("tokens", 0.75), ("tokens", 0.9), ("tokens", 0.95)}


def test_thresholds_on_ancestors_reach_their_subscribers(store: BudgetStore) -> None:
    root = BudgetTracker(total=100, store=store, budget_id="root", thresholds=(0.5,))
    child = root.child(total=1000, budget_id="kid")
    got_root: list[BudgetWarning] = []
    got_child: list[BudgetWarning] = []
    root.subscribe(got_root.append)
    unsubscribe = child.subscribe(got_child.append)
    warnings = child.reserve(60).settle(60, None)
    assert [(w.budget_id, w.threshold) for w in warnings] == [("root", 0.5)]
    assert got_root == warnings and got_child == []
    unsubscribe()


def test_usd_thresholds(store: BudgetStore) -> None:
    t = BudgetTracker(total_usd=Decimal("2.00"), store=store, budget_id="u", thresholds=(0.5,))
    (w,) = t.consume(10, Decimal("1.10"))
    assert w == BudgetWarning(0.5, Decimal("1.1"), Decimal("2"), Decimal("0.9"), "u", "usd")
    text = w.as_system_message()
    assert "50%" in text and "$1.10" in text and "$2.00" in text and "'u'" in text


def test_system_message_for_tokens() -> None:
    text = BudgetWarning(0.9, 3600, 4000, 400, "thread:42", "tokens").as_system_message()
    assert text.startswith("[BUDGET WARNING] 90%")
    assert "3,600 tokens of 4,000 tokens" in text and "400 tokens left" in text


def test_async_subscriber_is_scheduled(store: BudgetStore) -> None:
    got: list[float] = []

    async def cb(w: BudgetWarning) -> None:
        got.append(w.threshold)

    async def main() -> None:
        t = BudgetTracker(total=10, store=store, thresholds=(0.5,))
        t.subscribe(cb)
        await t.aconsume(6)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert got == [0.5]


def test_unsettled_reservation_expires(store: BudgetStore, clock: Clock) -> None:
    t = BudgetTracker(total=1000, store=store, lease_seconds=60, clock=clock)
    crashed = t.reserve(900)  # never settled: its process "died"
    with pytest.raises(LLMBudgetExceededError):
        t.reserve(200)
    clock.advance(61)
    assert t.reserved == 0  # reclaimed
    t.reserve(200).settle(200, None)
    crashed.settle(100, None)  # a late settle still charges its spend, once
    crashed.settle(100, None)
    assert (t.spent, t.reserved) == (300, 0)


def test_daily_period_resets_at_utc_midnight(store: BudgetStore, clock: Clock) -> None:
    clock.now = (clock.now // 86400 + 1) * 86400 - 10  # 10 s before the next UTC midnight
    t = BudgetTracker(total=100, store=store, budget_id="d", period="daily", clock=clock, thresholds=(0.5,))
    res = t.reserve(30)
    assert len(t.consume(60)) == 1
    with pytest.raises(LLMBudgetExceededError):
        t.reserve(20)
    clock.advance(20)  # a new day
    assert (t.spent, t.reserved, t.remaining()) == (0, 0, 100)
    assert len(t.consume(60)) == 1  # thresholds fire again in the new period
    res.settle(30, None)  # settles into the day it was reserved in
    assert t.spent == 60


def test_monthly_period(store: BudgetStore, clock: Clock) -> None:
    now = time.gmtime(clock.now)
    y, m = (now.tm_year + 1, 1) if now.tm_mon == 12 else (now.tm_year, now.tm_mon + 1)
    clock.now = calendar.timegm((y, m, 1, 0, 0, 0)) - 1.0  # 1 s before the next month
    t = BudgetTracker(total=10, store=store, budget_id="m", period="monthly", clock=clock)
    t.consume(10)
    assert t.remaining() == 0
    clock.advance(2)
    assert t.remaining() == 10


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        BudgetTracker(total=-1)
    with pytest.raises(ValueError):
        BudgetTracker(total=10, period="weekly")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BudgetTracker(total=10, thresholds=(1.5,))
    with pytest.raises(ValueError):
        BudgetTracker(total=10, on_unavailable="maybe")  # type: ignore[arg-type]
    t = BudgetTracker(total=10)
    with pytest.raises(ValueError):
        t.reserve(-5)
    res = t.reserve(5)
    with pytest.raises(ValueError):
        res.settle(-1, None)
    assert not res.done  # a bad settle does not close the reservation
    res.release()


async def test_record_on_a_usd_capped_chain_needs_the_cost(store: BudgetStore) -> None:
    from llm_connect.errors import LLMUsageError

    tenant = BudgetTracker(total_usd=Decimal("1"), store=store, budget_id="usd-tenant")
    agent = tenant.child(total=1_000, budget_id="usd-agent")  # tokens only, under a USD cap
    for tracker in (tenant, agent):
        with pytest.raises(LLMUsageError, match="usd-tenant"):
            tracker.record(100)
        with pytest.raises(LLMUsageError):
            await tracker.arecord(100)
    assert agent.spent == 0 and tenant.spent_usd == 0  # nothing was recorded
    agent.record(100, Decimal("0.25"))
    await agent.arecord(50, Decimal("0.25"))
    assert (agent.spent, tenant.spent, tenant.spent_usd) == (150, 150, Decimal("0.5"))
    # a token-only chain still records without a cost
    plain = BudgetTracker(total=10, store=store, budget_id="tokens-only")
    plain.record(20)
    assert plain.spent + plain.overrun == 20
