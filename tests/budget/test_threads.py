"""ThreadBudgetRegistry: the seed's per-thread budgets (check, consume, thresholds, cleanup), on both stores."""

from __future__ import annotations

import threading

import pytest

from llm_connect.budget import (
    BudgetExhaustedError,
    BudgetStore,
    BudgetTracker,
    BudgetWarning,
    LLMBudgetExceededError,
    ThreadBudget,
    ThreadBudgetRegistry,
)


def test_get_budget_creates_once_and_has_budget_does_not_create(store: BudgetStore) -> None:
    reg = ThreadBudgetRegistry(max_tokens_per_thread=1000, store=store)
    assert reg.max_tokens_per_thread == 1000
    assert not reg.has_budget("t1")
    b = reg.get_budget("t1")
    assert isinstance(b, ThreadBudget) and reg.get_budget("t1") is b
    assert reg.has_budget("t1") and not reg.has_budget("t2")
    assert (b.max_tokens, b.total_tokens, b.remaining, b.is_exhausted) == (1000, 0, 1000, False)
    assert isinstance(b.tracker, BudgetTracker) and b.tracker.budget_id == "thread:t1"


def test_consume_returns_budget_and_crossed_thresholds_each_once(store: BudgetStore) -> None:
    reg = ThreadBudgetRegistry(max_tokens_per_thread=1000, store=store)
    budget, crossed = reg.consume("t1", prompt_tokens=500, completion_tokens=200)
    assert crossed == [] and budget.total_tokens == 700
    assert (budget.prompt_tokens, budget.completion_tokens, budget.request_count) == (500, 200, 1)
    _, crossed = reg.consume("t1", 60)
    assert [w.threshold for w in crossed] == [0.75]
    assert crossed[0] == BudgetWarning(0.75, 760, 1000, 240, "thread:t1", "tokens")
    _, crossed = reg.consume("t1", 100, 100)
    assert [w.threshold for w in crossed] == [0.9, 0.95]
    assert reg.consume("t1", 10)[1] == []
    assert reg.get_budget("t1").triggered_thresholds == {0.75, 0.9, 0.95}
    assert reg.consume("t2", 800)[1][0].budget_id == "thread:t2"  # thresholds are per thread
    assert reg.get_budget("t2").triggered_thresholds == {0.75}


def test_check_and_exhaustion(store: BudgetStore) -> None:
    reg = ThreadBudgetRegistry(max_tokens_per_thread=100, store=store)
    assert reg.check("t", estimated_tokens=100) is True
    with pytest.raises(BudgetExhaustedError) as ei:
        reg.check("t", estimated_tokens=101)
    assert isinstance(ei.value, LLMBudgetExceededError)
    reg.consume("t", 100)  # exactly the cap: fine
    b = reg.get_budget("t")
    assert b.is_exhausted and b.remaining == 0 and b.percent_used == 100.0
    with pytest.raises(BudgetExhaustedError) as ei:
        reg.check_budget("t")
    err = ei.value
    assert (err.thread_id, err.used, err.max_tokens) == ("t", 100, 100)  # type: ignore[attr-defined]
    assert err.budget_id == "thread:t" and err.code == "thread_budget_exhausted"


def test_consume_over_the_cap_records_everything_then_raises(store: BudgetStore) -> None:
    reg = ThreadBudgetRegistry(max_tokens_per_thread=100, store=store)
    reg.consume("t", 90)
    with pytest.raises(BudgetExhaustedError) as ei:
        reg.consume("t", 30)
    b = reg.get_budget("t")
    assert b.total_tokens == 120 and b.tracker.spent == 100 and b.tracker.overrun == 20
    assert [w.threshold for w in ei.value.warnings] == [0.95]  # type: ignore[attr-defined]
    assert b.request_count == 2


def test_cleanup_thread_returns_final_budget_and_frees_state(store: BudgetStore) -> None:
    reg = ThreadBudgetRegistry(max_tokens_per_thread=1000, store=store)
    reg.consume("t", 300, 100)
    final = reg.cleanup_thread("t")
    assert final is not None and final.closed
    assert (final.total_tokens, final.prompt_tokens, final.completion_tokens) == (400, 300, 100)
    assert final.to_dict()["total_tokens"] == 400
    assert not reg.has_budget("t")
    assert reg.cleanup_thread("t") is None
    assert reg.cleanup_thread("never-seen") is None
    with pytest.raises(ValueError):
        final.consume(1)
    fresh = reg.get_budget("t")
    assert fresh is not final and fresh.total_tokens == 0


def test_configure_affects_new_threads_only(store: BudgetStore) -> None:
    reg = ThreadBudgetRegistry(max_tokens_per_thread=100, store=store)
    old = reg.get_budget("old")
    reg.configure(500)
    assert old.max_tokens == 100 and reg.get_budget("new").max_tokens == 500
    assert set(reg.get_all_usage()) == {"old", "new"}
    assert reg.get_usage("new")["max_tokens"] == 500
    reg.clear()
    assert reg.threads() == []


def test_registry_subscribers_get_thread_and_warning(store: BudgetStore) -> None:
    reg = ThreadBudgetRegistry(max_tokens_per_thread=100, store=store, thresholds=(0.5,))
    got: list[tuple[str, float]] = []
    reg.subscribe(lambda tid, w: got.append((tid, w.threshold)))
    reg.consume("a", 60)
    reg.consume("b", 10)
    reg.consume("a", 10)
    assert got == [("a", 0.5)]


def test_thread_budgets_under_a_tenant_budget(store: BudgetStore) -> None:
    tenant = BudgetTracker(total=150, store=store, budget_id="tenant")
    reg = ThreadBudgetRegistry(max_tokens_per_thread=100, parent=tenant)
    reg.consume("a", 100)
    assert not reg.get_budget("b").can_consume(60)  # the tenant has 50 left
    with pytest.raises(BudgetExhaustedError):
        reg.check("b", estimated_tokens=60)
    with pytest.raises(BudgetExhaustedError):
        reg.consume("b", 60)  # recorded (overrun), and the tenant is full
    assert tenant.spent == 150 and tenant.overrun == 10
    with pytest.raises(LLMBudgetExceededError):
        reg.tracker("c").reserve(1)  # a thread's tracker is a normal budget for RunConfig


def test_concurrent_consumers_fire_each_threshold_once(store: BudgetStore) -> None:
    reg = ThreadBudgetRegistry(max_tokens_per_thread=10_000, store=store)
    fired: list[float] = []
    lock = threading.Lock()

    def on_warning(tid: str, w: BudgetWarning) -> None:
        with lock:
            fired.append(w.threshold)

    reg.subscribe(on_warning)
    errors: list[BaseException] = []

    def work() -> None:
        for _ in range(25):
            try:
                reg.consume("shared", 50)
            except BudgetExhaustedError as e:
                errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    b = reg.get_budget("shared")
    assert b.total_tokens == 10_000 and b.request_count == 200 and not errors
    assert sorted(fired) == [0.75, 0.9, 0.95]


def test_thread_usage_under_a_usd_capped_parent_needs_its_cost(store: BudgetStore) -> None:
    from decimal import Decimal

    from llm_connect.errors import LLMUsageError

    tenant = BudgetTracker(total_usd=Decimal("2"), store=store, budget_id="usd-parent")
    reg = ThreadBudgetRegistry(max_tokens_per_thread=1_000, parent=tenant)
    with pytest.raises(LLMUsageError, match="usd-parent"):
        reg.consume("t1", 10, 5)
    budget = reg.get_budget("t1")
    assert (budget.prompt_tokens, budget.request_count, tenant.spent) == (0, 0, 0)  # nothing counted
    reg.consume("t1", 10, 5, usd=Decimal("0.5"))
    budget.consume(1, 1, usd=Decimal("0.25"))
    assert (budget.prompt_tokens, budget.completion_tokens, budget.request_count) == (11, 6, 2)
    assert (tenant.spent, tenant.spent_usd) == (17, Decimal("0.75"))
