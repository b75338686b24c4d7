"""Pricing: exact USD against hand-computed prices from genai-prices' data (per-Mtok rates quoted below)."""

from __future__ import annotations

import logging
import time
import warnings
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from llm_connect.errors import LLMConfigurationError
from llm_connect.types import Usage
from llm_connect.usage import Pricing

D = Decimal
M = D(1_000_000)


@pytest.fixture
def pricing() -> Pricing:
    return Pricing()


def test_openai_cached_tokens_gpt_4o_mini(pricing: Pricing) -> None:
    # gpt-4o-mini: input $0.15, cached input $0.075, output $0.60 per Mtok
    rate = pricing.rate("openai", "gpt-4o-mini")
    assert (rate.input, rate.cache_read, rate.output) == (D("0.15"), D("0.075"), D("0.6"))
    # OpenAI reports prompt_tokens=10000 of which cached_tokens=4000: our input_tokens includes the cache reads
    usage = Usage(input_tokens=10_000, output_tokens=2_000, cache_read_tokens=4_000)
    expected = 6_000 * D("0.15") / M + 4_000 * D("0.075") / M + 2_000 * D("0.6") / M
    assert expected == D("0.0024")
    assert pricing.price("openai", "gpt-4o-mini", usage) == expected


def test_openai_cached_tokens_gpt_4o_dated_model(pricing: Pricing) -> None:
    # gpt-4o: input $2.50, cached $1.25, output $10 per Mtok; the dated name resolves to the same model
    usage = Usage(input_tokens=1_200, output_tokens=300, cache_read_tokens=1_024)
    expected = D("0.00472")  # 176*2.5/1e6 + 1024*1.25/1e6 + 300*10/1e6
    assert 176 * D("2.5") / M + 1_024 * D("1.25") / M + 300 * D(10) / M == expected
    assert pricing.price("openai", "gpt-4o", usage) == expected
    assert pricing.price("openai", "gpt-4o-2024-08-06", usage) == expected


def test_anthropic_cache_read_and_write_sonnet_4(pricing: Pricing) -> None:
    # claude-sonnet-4: input $3, cache write $3.75, cache read $0.30, output $15 per Mtok
    # Anthropic reports input_tokens=50 (uncached), cache_creation_input_tokens=2000, cache_read_input_tokens=8000
    usage = Usage(input_tokens=50 + 2_000 + 8_000, output_tokens=400, cache_read_tokens=8_000, cache_write_tokens=2_000)
    expected = D("0.01605")  # 0.00015 + 0.0024 + 0.0075 + 0.006
    assert 50 * D(3) / M + 8_000 * D("0.3") / M + 2_000 * D("3.75") / M + 400 * D(15) / M == expected
    assert pricing.price("anthropic", "claude-sonnet-4-20250514", usage) == expected


def test_anthropic_cache_read_and_write_haiku_4_5(pricing: Pricing) -> None:
    # claude-haiku-4-5: input $1, cache write $1.25, cache read $0.10, output $5 per Mtok
    usage = Usage(
        input_tokens=1_000 + 3_000 + 20_000, output_tokens=1_000, cache_read_tokens=20_000, cache_write_tokens=3_000
    )
    expected = D("0.01175")  # 0.001 + 0.00375 + 0.002 + 0.005
    assert pricing.price("anthropic", "claude-haiku-4-5", usage) == expected
    # claude_code bills like the Anthropic API
    assert pricing.price("claude_code", "claude-haiku-4-5", usage) == expected


def test_gemini_thoughts_are_billed_as_output(pricing: Pricing) -> None:
    # gemini-2.5-flash: input $0.30, output (thinking included) $2.50 per Mtok; our provider name is "gemini"
    # Gemini reports candidatesTokenCount=100, thoughtsTokenCount=900 -> output_tokens=1000, reasoning=900
    usage = Usage(input_tokens=2_000, output_tokens=1_000, reasoning_tokens=900)
    expected = D("0.0031")  # 2000*0.3/1e6 + 1000*2.5/1e6
    assert pricing.price("gemini", "gemini-2.5-flash", usage) == expected
    assert pricing.source("gemini", "gemini-2.5-flash") == "genai-prices:google/gemini-2.5-flash"
    # with cached context: cache reads $0.03
    cached = Usage(input_tokens=2_000, output_tokens=1_000, cache_read_tokens=1_000, reasoning_tokens=900)
    assert pricing.price("gemini", "gemini-2.5-flash", cached) == D("0.00283")


def test_tiered_long_context_price(pricing: Pricing) -> None:
    # gemini-2.5-pro: $1.25 in / $10 out up to 200k input tokens, $2.50 / $15 above
    small = Usage(input_tokens=100_000, output_tokens=1_000)
    big = Usage(input_tokens=250_000, output_tokens=1_000)
    assert pricing.price("gemini", "gemini-2.5-pro", small) == D("0.135")  # 0.125 + 0.01
    assert pricing.price("gemini", "gemini-2.5-pro", big) == D("0.64")  # 0.625 + 0.015


def test_time_dependent_price(pricing: Pricing) -> None:
    # deepseek-chat: $0.27 in / $1.10 out 00:30-16:30 UTC, half price off-peak
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    peak = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
    off = datetime(2025, 6, 2, 20, 0, tzinfo=UTC)
    assert pricing.price("deepseek", "deepseek-chat", usage, at=peak) == D("1.37")
    assert pricing.price("deepseek", "deepseek-chat", usage, at=off) == D("0.685")


def test_openrouter_vendor_fallback(pricing: Pricing) -> None:
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    # listed by OpenRouter itself
    assert pricing.price("openrouter", "anthropic/claude-haiku-4.5", usage) == D("0.006")
    # not listed under that spelling by OpenRouter: priced as the vendor's model
    assert pricing.price("openrouter", "anthropic/claude-haiku-4-5", usage) == D("0.006")


def test_price_per_1k_is_blended_mean(pricing: Pricing) -> None:
    assert pricing.price_per_1k("openai", "gpt-4o-mini") == (D("0.15") + D("0.6")) / 2 / 1000
    assert pricing.price_per_1k("anthropic", "claude-haiku-4-5") == D("0.003")
    assert pricing.price_per_1k("nowhere", "nothing") is None
    assert pricing.price_per_1k("local", "gemma-3-270m") == 0


def test_unpriced_model_returns_none_and_warns_once(pricing: Pricing, caplog: pytest.LogCaptureFixture) -> None:
    usage = Usage(input_tokens=10, output_tokens=10)
    with caplog.at_level(logging.WARNING, logger="llm_connect.usage.pricing"):
        for _ in range(5):
            assert pricing.price("openai", "no-such-model-xyz", usage) is None
        assert pricing.price("ollama", "llama3.2:1b", usage) is None
    warnings_ = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_) == 2
    assert "no-such-model-xyz" in warnings_[0].getMessage()
    assert pricing.price("openai", "other-unknown", usage, estimate=True) is None  # estimates are not counted
    assert pricing.unpriced_count == 6
    assert pricing.unpriced[("openai", "no-such-model-xyz")] == 5
    # a second instance warns again (once per instance)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llm_connect.usage.pricing"):
        Pricing().price("openai", "no-such-model-xyz", usage)
    assert len(caplog.records) == 1


def test_local_and_fake_are_free_but_self_hosted_is_unknown(pricing: Pricing) -> None:
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    assert pricing.price("local", "gemma-3-270m", usage) == 0
    assert pricing.price("fake", "anything", usage) == 0
    assert pricing.price("ollama", "llama3.1:8b", usage) is None
    assert pricing.price("vllm", "gpt-4o-mini", usage) is None  # never guessed from a hosted vendor's list
    free = Pricing(overrides={"ollama:*": {"input_per_mtok": 0, "output_per_mtok": 0}})
    assert free.price("ollama", "llama3.1:8b", usage) == 0


def test_overrides_take_precedence_and_fall_back_sensibly() -> None:
    p = Pricing(
        overrides={
            "my-finetune": {"input_per_mtok": "0.15", "output_per_mtok": "0.60"},
            "openai:gpt-4o-mini": {"input_per_mtok": "1", "output_per_mtok": "2", "cache_read_per_mtok": "0.5"},
            "acme:big": {
                "input_per_mtok": 3,
                "output_per_mtok": 9,
                "cache_write_per_mtok": "4",
                "per_request": "0.001",
            },
        }
    )
    u = Usage(input_tokens=1_000, output_tokens=1_000, cache_read_tokens=400)
    # unlisted cache-read price falls back to the input price
    assert p.price("acme", "my-finetune", u) == D("0.00075")  # 1000*0.15/1e6 + 1000*0.6/1e6
    assert p.price("openai", "gpt-4o-mini", u) == D("0.0028")  # 600*1 + 400*0.5 + 1000*2, /1e6
    assert p.price("openai", "gpt-4o", u) == D("0.012")  # genai-prices: 600*2.5 + 400*1.25 + 1000*10, /1e6
    w = Usage(input_tokens=1_000, output_tokens=100, cache_write_tokens=500)
    assert p.price("acme", "big", w) == D("0.001") + 500 * D(3) / M + 500 * D(4) / M + 100 * D(9) / M
    assert p.source("acme", "big") == "override:acme:big"


@pytest.mark.parametrize(
    "overrides",
    [
        {"m": {"input_per_mtok": "abc", "output_per_mtok": 1}},
        {"m": {"input_per_mtok": -1, "output_per_mtok": 1}},
        {"m": {"inputs": 1}},
        {"m": {"cache_read_per_mtok": 1}},
        {"m": 3},
    ],
)
def test_bad_overrides_fail_at_construction(overrides) -> None:
    with pytest.raises(LLMConfigurationError):
        Pricing(overrides=overrides)


def test_matches_genai_prices_calc_price_for_every_model() -> None:
    """Our cached fast path gives exactly genai_prices' own result for every model it lists."""
    import genai_prices
    from genai_prices import data_snapshot

    pricing = Pricing()
    at = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
    cases = [(0, 0, 0, 0, 0), (12_345, 678, 2_000, 1_000, 300), (260_000, 5_000, 100_000, 0, 4_000)]
    checked = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            for inp, out, cr, cw, rs in cases:
                theirs = genai_prices.Usage(
                    input_tokens=inp,
                    output_tokens=out,
                    cache_read_tokens=cr,
                    cache_write_tokens=cw,
                    output_reasoning_tokens=rs,
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    expected = model.calc_price(theirs, provider, genai_request_timestamp=at).total_price
                ours = pricing._timed_rate(model, at).cost(Usage(inp, out, cr, cw, rs))
                assert ours == expected, (provider.id, model.id, inp, out, cr, cw, rs)
                checked += 1
    assert checked > 1000


def test_worst_cost_is_the_dearest_way_to_bill_the_tokens_for_every_model() -> None:
    """What a budget reserves: exactly the largest cost of the call's tokens over the ways a text request can
    be billed — input plain or every token a cache write, output plain or every token reasoning, audio, image or
    video output (a model that can answer with an image may bill every output token at its image price)."""
    from genai_prices import data_snapshot

    pricing = Pricing()
    at = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
    sizes = [(0, 0), (1, 0), (0, 1), (12_345, 678), (260_000, 5_000), (1_000_000, 64_000)]
    outputs = ["", "reasoning_tokens", "output_audio_tokens", "output_image_tokens", "output_video_tokens"]
    checked = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            rate = pricing._timed_rate(model, at)
            for inp, out in sizes:
                costs = [
                    rate.cost(
                        Usage(
                            input_tokens=inp, output_tokens=out, cache_write_tokens=written, **({k: out} if k else {})
                        )
                    )
                    for written in (0, inp)
                    for k in outputs
                ]
                assert rate.worst_cost(inp, out) == max(costs), (provider.id, model.id, inp, out)
                checked += 1
    assert checked > 1000


def test_hot_path_cost_is_small(pricing: Pricing) -> None:
    usage = Usage(input_tokens=1_234, output_tokens=567, cache_read_tokens=200, reasoning_tokens=50)
    models = [
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-haiku-4-5"),
        ("gemini", "gemini-2.5-pro"),
        ("deepseek", "deepseek-chat"),
        ("ollama", "llama3.2"),
    ]
    for prov, m in models:
        pricing.price(prov, m, usage)
    n = 20_000
    for prov, m in models:
        t = time.perf_counter()
        for _ in range(n):
            pricing.price(prov, m, usage)
        per_call_us = (time.perf_counter() - t) / n * 1e6
        assert per_call_us < 20, (prov, m, per_call_us)
