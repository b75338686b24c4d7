"""The embedded default (SmolLM2-135M-Instruct): it follows simple instructions and stops on its own."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest

from llm_connect import LLMConfigurationError, RunConfig
from llm_connect.providers._packaged import PACKAGED_MODELS, PackagedModel
from llm_connect.providers.local import LocalAdapter

pytestmark = pytest.mark.local

CAP = 200

# (instruction, words of which the answer must contain at least one, case-insensitive)
INSTRUCTIONS = [
    ("Write one sentence about the sea.", ("sea", "ocean", "wave")),
    ("What is the capital of France? Answer in one word.", ("paris",)),
    ("What is 2 + 2?", ("4", "four")),
    ("Name three primary colors.", ("red", "blue", "yellow")),
]


@pytest.mark.parametrize(("instruction", "expected"), INSTRUCTIONS)
async def test_answers_on_topic_and_stops(default_adapter: LocalAdapter, instruction: str, expected: tuple) -> None:
    resp = await default_adapter.async_execute_prompt(instruction, RunConfig(max_tokens=CAP))
    text = resp.text.strip()
    assert resp.finish_reason == "stop", text  # end of turn, not the cap
    assert resp.usage.output_tokens < CAP
    assert text and instruction.lower() not in text.lower()  # not an echo of the prompt
    assert any(w in text.lower() for w in expected), text


async def test_system_prompt_and_conversation(default_adapter: LocalAdapter) -> None:
    msgs = [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "What is the capital of Italy?"},
        {"role": "assistant", "content": "The capital of Italy is Rome."},
        {"role": "user", "content": "And the capital of France?"},
    ]
    resp = await default_adapter.async_execute_prompt(msgs, RunConfig(max_tokens=CAP))
    assert resp.finish_reason == "stop"
    assert "paris" in resp.text.lower()


async def test_stream_equals_complete_and_is_greedy_by_default(default_adapter: LocalAdapter) -> None:
    assert default_adapter.temperature == 0.0
    cfg = RunConfig(max_tokens=64)
    chunks = [c async for c in default_adapter.astream("Write one sentence about the sea.", cfg)]
    whole = await default_adapter.async_execute_prompt("Write one sentence about the sea.", cfg)
    assert "".join(c.text for c in chunks) == whole.text
    assert sum(1 for c in chunks if c.text) > 1
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == whole.usage


def test_load_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    fresh = LocalAdapter(n_ctx=1024)  # its own engine: loads now
    with caplog.at_level(logging.INFO, logger="llm_connect.local"):
        fresh.execute_prompt("Hi.", RunConfig(max_tokens=4))
    lines = [r.getMessage() for r in caplog.records if r.name == "llm_connect.local"]
    assert any(line.startswith("loading local model SmolLM2-135M-Instruct") for line in lines), lines
    assert any(" ready in " in line and line.endswith(" s") for line in lines), lines


def test_missing_package_names_the_install() -> None:
    missing = PackagedModel(
        name="nope",
        distribution="llm-connect-no-such-model",
        file="x/model.gguf",
        chat_format="template",
        temperature=None,
        summary="",
    )
    with pytest.raises(LLMConfigurationError, match="pip install llm-connect-no-such-model"):
        missing.path()
    with pytest.raises(LLMConfigurationError, match="smollm2-135m"):
        LocalAdapter("not-a-packaged-name-or-file")
    assert set(PACKAGED_MODELS) == {"smollm2-135m", "gemma3-270m"}


def test_cli_run_streams(default_adapter: LocalAdapter) -> None:
    """``llm-connect run`` writes the answer as it is generated: the first bytes come well before the end."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "LLM_CONNECT_MODEL"}
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llm_connect.cli",
            "run",
            "Write a short paragraph about the sea.",
            "--max-tokens",
            "120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert p.stdout is not None
    first = p.stdout.read(1)
    t_first = time.perf_counter()
    rest = p.stdout.read()
    p.wait(120)
    t_end = time.perf_counter()
    out = (first + rest).decode()
    assert p.returncode == 0, p.stderr.read().decode() if p.stderr else ""
    assert "sea" in out.lower() or "ocean" in out.lower(), out
    assert out.endswith("\n") and not out.startswith(" ")
    assert t_end - t_first > 0.2, (t_first - t0, t_end - t0)  # tokens kept coming after the first one
    assert p.stderr is not None and b"Traceback" not in p.stderr.read()
