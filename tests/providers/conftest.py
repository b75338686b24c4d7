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


#: the variables the Vertex AI rows read (project, location, credentials)
GOOGLE_ENV = (
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "VERTEX_LOCATION",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "ANTHROPIC_VERTEX_PROJECT_ID",
    "CLOUD_ML_REGION",
)


@pytest.fixture
def no_google_env(monkeypatch):
    """None of the Vertex variables set (a developer's own project or credentials must not leak in)."""
    for var in GOOGLE_ENV:
        monkeypatch.delenv(var, raising=False)


def genai_price(provider_id: str, model: str, usage) -> Decimal:
    """genai-prices' own price of one of our ``Usage`` under its ``provider_id`` (what a call must cost)."""
    u = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens or None,
        cache_write_tokens=usage.cache_write_tokens or None,
    )
    return genai_prices.calc_price(u, model, provider_id=provider_id).total_price


@pytest.fixture
def aws_price() -> Callable[[str, object], Decimal]:
    """genai-prices' own price of a usage under its ``aws`` provider (what Bedrock calls must cost)."""
    return lambda model, usage: genai_price("aws", model, usage)
