"""Fixtures for routing tests: the shipped mock provider server over loopback, and real Redis."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from llm_connect.routing import Deployment
from llm_connect.testing import MockServer

REDIS_URL = os.environ.get("LLMC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer() as server:
        yield server


def dep(mock: MockServer, model: str, **kw: Any) -> Deployment:
    """A deployment of the mock server's OpenAI-compatible endpoint, told apart by its model name."""
    return Deployment(model=f"openai-compatible:{model}", api_base=mock.openai_base, name=model, **kw)


def hits(mock: MockServer, model: str) -> int:
    """How many chat requests the mock server received for ``model``."""
    return sum(1 for r in mock.requests if r.get("model") == model)


def hit_times(mock: MockServer, model: str) -> list[float]:
    return [r["time"] for r in mock.requests if r.get("model") == model]


def wait_for_fresh_minute(margin: float = 5.0) -> None:
    """rpm/tpm counters are per wall-clock minute: avoid a test straddling a minute boundary."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.05)


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A fresh key namespace in the real Redis, deleted afterwards."""
    if not redis_up():
        pytest.skip("needs Redis at 127.0.0.1:6379")
    ns = f"llmc-test-router-{uuid.uuid4().hex[:10]}"
    yield ns
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{ns}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
