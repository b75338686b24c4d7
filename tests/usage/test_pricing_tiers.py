"""Pricing at every tier edge: for every tiered price genai-prices lists, a call of edge - 1, edge and edge + 1
input tokens costs exactly what ``genai_prices.calc_price`` says.

A tier starting at ``start`` applies to calls of MORE than ``start`` input tokens (genai-prices' threshold
rule): exactly ``start`` tokens is still the lower rate. The cross-check over all models in test_pricing.py
uses sizes far from any edge, so an off-by-one in the tier test (``>=`` for ``>``) survives it; this file
pins the edge itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from genai_prices import data_snapshot, types

from llm_connect.types import Usage
from llm_connect.usage import Pricing

#: the request time used for prices that do not depend on it (the cross-check in test_pricing.py uses it too)
_BASE_TIME = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


def _price_periods(model: types.ModelInfo) -> list[types.ModelPrice]:
    """Every default price a model has had or will have (a time-dependent model has one per constraint)."""
    if isinstance(model.prices, types.ModelPrice):
        return [model.prices]
    return [conditional.prices for conditional in model.prices]


def _is_tiered(mp: types.ModelPrice) -> bool:
    return any(isinstance(v, types.TieredPrices) for v in vars(mp).values())


def _edges(mp: types.ModelPrice) -> tuple[int, ...]:
    return tuple(
        sorted({tier.start for v in vars(mp).values() if isinstance(v, types.TieredPrices) for tier in v.tiers})
    )


def _request_times(model: types.ModelInfo) -> list[datetime]:
    """Request times at which each of the model's price periods is the active one: the base time, each start
    date's noon, and a minute into each time-of-day window on each of those days."""
    days: set[date] = {_BASE_TIME.date()}
    hours: set[time] = {time(12)}
    if not isinstance(model.prices, types.ModelPrice):
        for conditional in model.prices:
            constraint = conditional.constraint
            if isinstance(constraint, types.StartDateConstraint):
                days.add(constraint.start_date)
            elif isinstance(constraint, types.TimeOfDateConstraint):
                start = datetime.combine(_BASE_TIME.date(), constraint.start_time.replace(tzinfo=None))
                hours.add((start + timedelta(minutes=1)).time())
    return sorted(datetime.combine(d, h, tzinfo=UTC) for d in days for h in hours)


def _match_strings(clause: Any) -> Iterator[str]:
    for attr in ("equals", "starts_with", "contains"):
        value = getattr(clause, attr, None)
        if isinstance(value, str):
            yield value
    for attr in ("or_", "and_"):
        for sub in getattr(clause, attr, None) or ():
            yield from _match_strings(sub)


def _model_ref(snapshot: Any, provider: types.Provider, model: types.ModelInfo) -> str | None:
    """A model name that genai-prices resolves to exactly this model of this provider (usually its id;
    some models only match spellings listed in their match clause), or None."""
    for ref in (model.id, *_match_strings(model.match)):
        try:
            found_provider, found = snapshot.find_provider_model(ref, None, provider.id, None)
        except LookupError:
            continue
        if found_provider is provider and found is model:
            return ref
    return None


def _tier_cases() -> list[Any]:
    """One case per (provider, model, tiered price period): its model ref, a request time when that period
    is active, and its tier starts."""
    snapshot = data_snapshot.get_snapshot()
    cases = []
    for provider in snapshot.providers:
        for model in provider.models:
            tiered = [mp for mp in _price_periods(model) if _is_tiered(mp)]
            if not tiered:
                continue
            ref = _model_ref(snapshot, provider, model)
            reached: dict[int, datetime] = {}
            for at in _request_times(model):
                reached.setdefault(id(model.get_prices(at)), at)
            for i, mp in enumerate(tiered):
                at = reached.get(id(mp))
                cases.append(
                    pytest.param(provider.id, model.id, ref, at, _edges(mp), id=f"{provider.id}/{model.id}#{i}")
                )
    return cases


TIER_CASES = _tier_cases()


def _sizes(edge: int) -> Iterator[Usage]:
    """Calls of edge - 1, edge and edge + 1 input tokens: plain, and with cache reads, cache writes and
    reasoning tokens (so the tiered cache and output prices are crossed too)."""
    for n in (edge - 1, edge, edge + 1):
        if n < 0:
            continue
        yield Usage(input_tokens=n, output_tokens=1_000)
        yield Usage(
            input_tokens=n,
            output_tokens=1_000,
            cache_read_tokens=n // 4,
            cache_write_tokens=n // 8,
            reasoning_tokens=100,
        )


def _genai_cost(provider_id: str, ref: str, usage: Usage, at: datetime) -> types.PriceCalculation:
    theirs = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # genai-prices warns about stale bundled data
        return genai_prices.calc_price(theirs, ref, provider_id=provider_id, genai_request_timestamp=at)


@pytest.fixture(scope="module")
def pricing() -> Pricing:
    return Pricing()


def test_the_data_has_tiered_prices() -> None:
    # guards the parametrisation below against an empty enumeration (a renamed attribute, a new data layout)
    assert len(TIER_CASES) >= 100
    assert any(200_000 in case.values[4] for case in TIER_CASES)


@pytest.mark.parametrize(("provider_id", "model_id", "ref", "at", "edges"), TIER_CASES)
def test_cost_at_every_tier_edge_matches_genai_prices(
    pricing: Pricing, provider_id: str, model_id: str, ref: str | None, at: datetime | None, edges: tuple[int, ...]
) -> None:
    assert ref is not None, f"no model name resolves to {provider_id}/{model_id}"
    assert at is not None, f"no request time makes this price period of {provider_id}/{model_id} active"
    assert pricing.source(provider_id, ref) == f"genai-prices:{provider_id}/{model_id}"
    for edge in edges:
        for usage in _sizes(edge):
            calc = _genai_cost(provider_id, ref, usage, at)
            assert calc.model.id == model_id
            assert pricing.price(provider_id, ref, usage, at=at) == calc.total_price, (edge, usage)


def test_a_tier_starts_above_its_threshold(pricing: Pricing) -> None:
    # gemini-2.5-pro: $1.25 in / $10 out up to 200k input tokens, $2.50 / $15 above; the rates are written out
    # so the edge does not rest on genai-prices alone
    def cost(n: int) -> Decimal | None:
        return pricing.price("gemini", "gemini-2.5-pro", Usage(input_tokens=n, output_tokens=1_000), at=_BASE_TIME)

    m = Decimal(1_000_000)
    assert cost(199_999) == 199_999 * Decimal("1.25") / m + 1_000 * Decimal(10) / m
    assert cost(200_000) == Decimal("0.26")  # 0.25 + 0.01: exactly the threshold is still the base rate
    assert cost(200_001) == Decimal("0.5150025")  # 200001 * 2.5 / 1e6 + 1000 * 15 / 1e6
