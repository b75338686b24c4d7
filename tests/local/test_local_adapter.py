"""The ``local`` provider on the real model: answers, streaming, exact usage, sampling options, selection."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from llm_connect import LLMConfigurationError, LLMContextWindowExceededError, RunConfig, create_adapter, get_llm
from llm_connect.providers.local import DEFAULT_MODEL, LocalAdapter
from llm_connect.types import normalize_messages

pytestmark = pytest.mark.local

PROMPT = "Write one sentence about the sea."
GREEDY = RunConfig(max_tokens=16, temperature=0, seed=7)


def gemma(user: str, system: str | None = None) -> str:
    """The Gemma turn format, written out by hand (independent of the adapter's renderer)."""
    body = f"{system}\n\n{user}" if system else user
    return f"<start_of_turn>user\n{body}<end_of_turn>\n<start_of_turn>model\n"


def raw_complete(llm, prompt: str, max_tokens: int = 16) -> dict:
    llm.reset()  # evaluate from scratch, as the adapter does
    return llm.create_completion(prompt, max_tokens=max_tokens, temperature=0, stop=["<end_of_turn>"])


async def test_complete_answers(adapter: LocalAdapter) -> None:
    resp = await adapter.async_execute_prompt(PROMPT, RunConfig(max_tokens=16))
    assert resp.text.strip()
    assert resp.provider == "local" and resp.model == "gemma3-270m"
    assert resp.finish_reason in ("stop", "length")
    assert resp.usage.input_tokens > 0 and 0 < resp.usage.output_tokens <= 16
    assert resp.cost_usd == Decimal(0)
    assert resp.latency_ms > 0


async def test_stream_answers_and_matches_complete(adapter: LocalAdapter) -> None:
    chunks = [c async for c in adapter.astream(PROMPT, GREEDY)]
    text = "".join(c.text for c in chunks)
    assert text.strip()
    assert sum(1 for c in chunks if c.text) > 1  # really streamed, token by token
    final = chunks[-1]
    assert final.usage is not None and final.finish_reason in ("stop", "length")
    assert final.cost_usd == Decimal(0)
    whole = await adapter.async_execute_prompt(PROMPT, GREEDY)
    assert text == whole.text
    assert final.usage == whole.usage


async def test_usage_equals_llama_cpp_counts(adapter: LocalAdapter, raw_llama) -> None:
    system, user = "You are terse.", "Name three colours."
    prompt = gemma(user, system)
    tokens = raw_llama.tokenize(prompt.encode(), add_bos=True, special=True)
    assert tokens[0] == raw_llama.token_bos() and tokens[1] != raw_llama.token_bos()  # exactly one BOS

    ref = raw_complete(raw_llama, prompt)
    cfg = GREEDY.replace(system_prompt=system)
    resp = await adapter.async_execute_prompt(user, cfg)
    assert resp.usage.input_tokens == len(tokens) == ref["usage"]["prompt_tokens"]
    assert resp.usage.output_tokens == ref["usage"]["completion_tokens"]
    assert resp.text == ref["choices"][0]["text"]
    assert resp.finish_reason == ref["choices"][0]["finish_reason"]

    chunks = [c async for c in adapter.astream(user, cfg)]
    assert chunks[-1].usage == resp.usage
    # once the model is loaded, the budget estimate is the exact count
    assert adapter.count_input_tokens(normalize_messages(user, system), cfg) == len(tokens)


async def test_conversation_renders_gemma_turns(adapter: LocalAdapter, raw_llama) -> None:
    msgs = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "What is water?"},
    ]
    prompt = (
        "<start_of_turn>user\nAnswer briefly.\n\nHi.<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nWhat is water?<end_of_turn>\n<start_of_turn>model\n"
    )
    ref = raw_complete(raw_llama, prompt)
    resp = await adapter.async_execute_prompt(msgs, GREEDY)
    assert resp.usage.input_tokens == ref["usage"]["prompt_tokens"]
    assert resp.text == ref["choices"][0]["text"]


async def test_max_tokens_and_stop(adapter: LocalAdapter) -> None:
    resp = await adapter.async_execute_prompt(PROMPT, RunConfig(max_tokens=5, temperature=0))
    assert resp.usage.output_tokens == 5 and resp.finish_reason == "length"

    free = await adapter.async_execute_prompt(PROMPT, GREEDY)
    words = free.text.split()
    stop = f"{words[2]} {words[3]}"  # spans tokens: a stream must hold the first word back, then drop it
    cut = free.text[: free.text.index(stop)]
    cfg = GREEDY.replace(stop=["never appears", stop])
    stopped = await adapter.async_execute_prompt(PROMPT, cfg)
    assert stopped.text == cut and stopped.finish_reason == "stop"
    streamed = [c async for c in adapter.astream(PROMPT, cfg)]
    assert "".join(c.text for c in streamed) == cut
    assert streamed[-1].finish_reason == "stop"


async def test_seed_makes_sampling_reproducible(adapter: LocalAdapter) -> None:
    cfg = RunConfig(max_tokens=24, temperature=1.0, seed=123)
    a = await adapter.async_execute_prompt(PROMPT, cfg)
    b = await adapter.async_execute_prompt(PROMPT, cfg)
    s = "".join([c.text async for c in adapter.astream(PROMPT, cfg)])
    assert a.text == b.text == s
    others = {(await adapter.async_execute_prompt(PROMPT, cfg.replace(seed=seed))).text for seed in (1, 2, 3)}
    assert len(others | {a.text}) > 1  # the seed really drives the sampler


async def test_json_mode_uses_a_grammar(adapter: LocalAdapter) -> None:
    cfg = RunConfig(max_tokens=24, temperature=0, json_mode=True)
    resp = await adapter.async_execute_prompt("Describe the sea.", cfg)
    assert resp.text.lstrip().startswith("{")


async def test_context_window_exceeded(model_path: str) -> None:
    small = LocalAdapter("gemma3-270m", n_ctx=64)
    with pytest.raises(LLMContextWindowExceededError):
        await small.async_execute_prompt("word " * 200, RunConfig(max_tokens=4))
    resp = await small.async_execute_prompt("Hi.", RunConfig(max_tokens=4))  # still usable
    assert resp.usage.output_tokens > 0


def test_default_selection_without_keys(monkeypatch: pytest.MonkeyPatch, model_path: str) -> None:
    for var in (
        "LLM_CONNECT_MODEL",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "OPENROUTER_API_KEY",
    ):
        monkeypatch.delenv(var, raising=False)
    for a in (create_adapter(), create_adapter("local"), create_adapter(f"local:{DEFAULT_MODEL}"), get_llm()):
        assert isinstance(a, LocalAdapter)
        assert a.provider == "local" and a.model == DEFAULT_MODEL == "smollm2-135m"
        assert a.chat_format == "template"  # the GGUF's own ChatML template
    gemma_adapter = create_adapter("local:gemma3-270m")  # still selectable by name
    assert isinstance(gemma_adapter, LocalAdapter) and gemma_adapter.chat_format == "gemma"
    assert gemma_adapter.model == "gemma3-270m" and gemma_adapter.path == Path(model_path).resolve()
    resp = create_adapter().execute_prompt(PROMPT, RunConfig(max_tokens=64))
    assert resp.text.strip() and resp.finish_reason == "stop"


async def test_gguf_by_path(model_path: str, adapter: LocalAdapter) -> None:
    by_path = create_adapter(f"local:{model_path}", api_key="ignored")
    assert isinstance(by_path, LocalAdapter)
    assert by_path.model == model_path
    assert by_path.engine is adapter.engine  # same file, same context size: loaded once per process
    assert by_path.chat_format == "auto"  # no chat template in this GGUF -> Gemma turns
    a = await by_path.async_execute_prompt(PROMPT, GREEDY)
    b = await adapter.async_execute_prompt(PROMPT, GREEDY)
    assert a.text == b.text and a.usage == b.usage and a.model == model_path


def test_configuration_errors(model_path: str, tmp_path) -> None:
    with pytest.raises(LLMConfigurationError, match="no GGUF model file"):
        create_adapter(f"local:{tmp_path / 'missing.gguf'}")
    with pytest.raises(LLMConfigurationError, match="chat_format"):
        LocalAdapter("gemma3-270m", chat_format="chatml")
    with pytest.raises(LLMConfigurationError, match="n_ctx"):
        LocalAdapter("gemma3-270m", n_ctx=0)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(LLMConfigurationError, match="cannot load"):
        LocalAdapter(str(bad)).execute_prompt("hi", RunConfig(max_tokens=2))
    with pytest.raises(LLMConfigurationError, match="no chat template"):
        LocalAdapter("gemma3-270m", chat_format="template").execute_prompt("hi", RunConfig(max_tokens=2))


def test_token_estimate_before_load_is_an_upper_bound(model_path: str) -> None:
    fresh = LocalAdapter("gemma3-270m", n_ctx=1536)  # its own engine: not loaded yet
    assert not fresh.engine.loaded
    msgs, cfg = normalize_messages(PROMPT), RunConfig(max_tokens=1)
    estimate = fresh.count_input_tokens(msgs, cfg)
    exact = fresh.execute_prompt(PROMPT, cfg).usage.input_tokens
    assert fresh.engine.loaded
    assert estimate >= exact == fresh.count_input_tokens(msgs, cfg)


async def test_a_budget_too_small_for_the_bound_still_runs_on_the_exact_count(model_path: str) -> None:
    """Before the model is loaded the prompt's bound is bytes; a budget that fits only the exact count gets
    the model loaded, the prompt counted by llama.cpp and max_tokens clamped to what is left."""
    from llm_connect import BudgetTracker

    fresh = LocalAdapter("gemma3-270m", n_ctx=1280)  # its own engine: not loaded yet
    msgs = normalize_messages(PROMPT)
    bound = fresh.count_input_tokens(msgs, RunConfig())
    exact = await fresh.acount_exact_input_tokens(msgs, RunConfig())
    assert fresh.engine.loaded and exact is not None and exact + 4 < bound
    fresh2 = LocalAdapter("gemma3-270m", n_ctx=1024)
    tracker = BudgetTracker(total=exact + 4)
    r = await fresh2.async_execute_prompt(PROMPT, RunConfig(max_tokens=64, temperature=0, budget_tracker=tracker))
    assert r.usage.input_tokens == exact and 1 <= r.usage.output_tokens <= 4
    assert tracker.spent == r.usage.total_tokens <= exact + 4 and tracker.overrun == 0
