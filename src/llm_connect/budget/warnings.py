"""BudgetWarning: the payload sent when a budget's spend crosses one of its thresholds.

Thresholds are fractions of a cap (default 75 %, 90 %, 95 %). Each fires exactly once per budget (and per
period for daily / monthly budgets): the store records the crossing atomically with the spend that caused it,
so two threads, coroutines or processes racing past the same line still produce one warning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["DEFAULT_THRESHOLDS", "BudgetWarning", "normalize_thresholds"]

#: fractions of a cap at which a BudgetWarning fires
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.75, 0.90, 0.95)


def normalize_thresholds(thresholds: Iterable[float]) -> tuple[float, ...]:
    """Sorted, de-duplicated thresholds; each must be a number in (0, 1]."""
    out: set[float] = set()
    for t in thresholds:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
            raise ValueError(f"budget thresholds must be fractions in (0, 1], got {t!r}")
        out.add(float(t))
    return tuple(sorted(out))


def _fmt(value: int | Decimal, unit: str) -> str:
    if unit == "usd":
        head, _, tail = f"{Decimal(value).quantize(Decimal('0.0001')):f}".partition(".")
        return f"${head}.{tail.rstrip('0').ljust(2, '0')}"
    return f"{value:,} tokens"


@dataclass(frozen=True, slots=True)
class BudgetWarning:
    """A budget crossed ``threshold`` (a fraction of ``total``).

    ``spent``, ``total`` and ``remaining`` are ints for ``unit == "tokens"`` and Decimal dollars for
    ``unit == "usd"``. ``remaining`` is ``total - spent`` at the moment of the crossing.
    """

    threshold: float
    spent: int | Decimal
    total: int | Decimal
    remaining: int | Decimal
    budget_id: str
    unit: str = "tokens"

    @property
    def percent_used(self) -> float:
        """Share of the cap spent, in percent (0 when the cap is 0)."""
        return float(self.spent) * 100.0 / float(self.total) if self.total else 100.0

    def as_system_message(self) -> str:
        """Text an agent runtime can inject as a system message so the model plans for the limit."""
        what = "token" if self.unit == "tokens" else "spending (USD)"
        return (
            f"[BUDGET WARNING] {self.threshold:.0%} of the {what} budget '{self.budget_id}' is used: "
            f"{_fmt(self.spent, self.unit)} of {_fmt(self.total, self.unit)}, "
            f"{_fmt(self.remaining, self.unit)} left. Plan for the limit: finish the current step, keep answers "
            "short, summarise progress and save state, or escalate before the budget runs out."
        )
