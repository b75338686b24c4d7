from __future__ import annotations

import pytest

from llm_connect.testing import MockServer


@pytest.fixture
async def mock():
    async with MockServer() as server:
        yield server
