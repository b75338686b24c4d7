from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import genai_prices
import pytest

from llm_connect.testing import MockServer


@pytest.fixture
async def mock():
    async with MockServer() as server:
        yield server


@pytest.fixture
def aws_price() -> Callable[[str, object], Decimal]:
    """genai-prices' own price of a usage under its ``aws`` provider (what Bedrock calls must cost)."""

    def price(model: str, usage) -> Decimal:
        u = genai_prices.Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        )
        return genai_prices.calc_price(u, model, provider_id="aws").total_price

    return price
