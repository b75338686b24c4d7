from __future__ import annotations

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
