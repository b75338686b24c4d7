"""Token kinds and service tiers priced exactly.

Replayed payloads (tests/wire/payloads/, in the providers' official response shapes) are parsed by our codecs
and priced by :class:`Pricing`; the expected price is computed independently: genai-prices' own usage
extractor for that API reads the same body and ``genai_prices.calc_price`` prices it (with
``price_context={"service_tier": ...}`` for a tiered response). Where genai-prices does not know a kind (a
1-hour cache write on a model whose price list has no 1-hour price) the expected price is the provider's
documented multiplier, written out. Then the same through real HTTP against the shipped mock server: the
response's cost, the budget's reservation (an upper bound at the requested tier and kinds) and the usage event.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from genai_prices import data_snapshot

from llm_connect import LLMBudgetExceededError, RunConfig, Usage, create_adapter
from llm_connect.budget import BudgetTracker
from llm_connect.testing import MockReply, MockServer
from llm_connect.types import USAGE_DETAIL_KINDS, LLMResponse, Message
from llm_connect.usage import Pricing, UsageEvent, UsageTracker
from llm_connect.usage.kinds import request_kinds, requested_service_tier
from llm_connect.wire import anthropic_messages, gemini, openai_chat

D = Decimal
M = D(1_000_000)
#: a request time when genai-prices' service-tier variants are in force (they start 2026-10-12)
AT = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
PAYLOADS = Path(__file__).parent.parent / "wire" / "payloads"


def _body(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text())


def _genai_price(body: dict[str, Any], extractor_of: str, flavor: str, provider_id: str, model: str, tier: str | None):
    """genai-prices end to end: its extractor for ``extractor_of``'s API reads the body, calc_price prices it."""
    provider = next(p for p in data_snapshot.get_snapshot().providers if p.id == extractor_of)
    _, usage = provider.extract_usage(body, api_flavor=flavor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # genai-prices warns about stale bundled data
        calc = genai_prices.calc_price(
            usage,
            model,
            provider_id=provider_id,
            genai_request_timestamp=AT,
            price_context={"service_tier": tier} if tier else None,
        )
    return calc.total_price


@pytest.fixture
def pricing() -> Pricing:
    return Pricing()


# -- replayed payloads, priced -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "codec", "provider", "extractor_of", "flavor", "price_provider", "expected"),
    [
        # gpt-5 at priority: $2.50 in, $0.25 cached, $20 out (standard: $1.25 / $0.125 / $10, half of it)
        ("openai_chat_priority_tier.json", openai_chat, "openai", "openai", "chat", "openai", D("0.019992")),
        # o3 at flex: $1 in, $4 out (standard: $2 / $8, twice as much)
        ("openai_chat_flex_tier.json", openai_chat, "openai", "openai", "chat", "openai", D("0.0353")),
        # gpt-audio: text $2.50 in / $10 out, audio $32 in / $64 out
        ("openai_chat_audio.json", openai_chat, "openai", "openai", "chat", "openai", D("0.0576805")),
        # OpenRouter anthropic/claude-haiku-4.5: $1 in, cache write $1.25, $5 out
        ("openrouter_chat_cache_write.json", openai_chat, "openrouter", "openai", "chat", "openrouter", D("0.0165")),
        # claude-sonnet-4-5: $3 in, read $0.30, 5-minute write $3.75, 1-hour write $6, $15 out
        (
            "anthropic_messages_cache_1h.json",
            anthropic_messages,
            "anthropic",
            "anthropic",
            "default",
            "anthropic",
            D("0.16734"),
        ),
        # gemini-2.5-flash: text $0.30, audio $1, cached text $0.03, cached audio $0.10, out $2.50
        ("gemini_audio_input.json", gemini, "gemini", "google", "default", "google", D("0.0120485")),
        # gemini-2.5-flash-image: in $0.30, text out $2.50, image out $30
        ("gemini_image_output.json", gemini, "gemini", "google", "default", "google", D("0.0391043")),
    ],
)
def test_replayed_payload_costs_what_genai_prices_computes(
    pricing: Pricing, name, codec, provider, extractor_of, flavor, price_provider, expected
) -> None:
    body = _body(name)
    parsed = codec.parse_response(body)
    ours = pricing.price(provider, parsed.model, parsed.usage, at=AT, service_tier=parsed.service_tier)
    theirs = _genai_price(body, extractor_of, flavor, price_provider, parsed.model, parsed.service_tier)
    assert ours == theirs == expected


def test_the_numbers_written_out(pricing: Pricing) -> None:
    """The expectations above, by hand from the per-Mtok rates, and what the old pricing billed."""
    # priority gpt-5: 1072 uncached, 2048 cached, 840 out
    assert (1072 * D("2.5") + 2048 * D("0.25") + 840 * 20) / M == D("0.019992")
    standard = pricing.price("openai", "gpt-5", Usage(3120, 840, 2048, 0, 576), at=AT)
    assert standard == D("0.009996")  # priority billed at the standard rate: 50 % under
    # flex o3: 18500 in, 4200 out
    assert (18500 * 1 + 4200 * 4) / M == D("0.0353")
    assert pricing.price("openai", "o3", Usage(18500, 4200, reasoning_tokens=3712), at=AT) == D("0.0706")  # 100 % over
    # claude-sonnet-4-5: 120 plain, 6000 read, 10000 5-minute and 20000 1-hour writes, 512 out
    assert (120 * 3 + 6000 * D("0.3") + 10_000 * D("3.75") + 20_000 * 6 + 512 * 15) / M == D("0.16734")
    # gemini-2.5-flash: 45 text, 9600 audio, 9600 cached audio, 590 out (96 + 494 thinking)
    assert (45 * D("0.3") + 9600 * 1 + 9600 * D("0.1") + 590 * D("2.5")) / M == D("0.0120485")
    # OpenRouter claude-haiku-4.5: 450 plain, 12000 written, 210 out; read as 0 writes it was 0.0135 (18 % under)
    assert (450 * 1 + 12_000 * D("1.25") + 210 * 5) / M == D("0.0165")


def test_one_hour_writes_the_price_list_lacks_cost_twice_the_input_price(pricing: Pricing) -> None:
    """Bedrock's Claude Sonnet 4 lists a (5-minute) cache write at $3.75 but no 1-hour price: Anthropic
    documents a 1-hour write at 2x the base input price ($3 -> $6), where genai-prices would bill $3.75."""
    parsed = anthropic_messages.parse_response(_body("anthropic_messages_cache_1h.json"))
    model = "anthropic.claude-sonnet-4-20250514-v1:0"  # genai-prices: aws/regional.anthropic.claude-sonnet-4-…
    rate = pricing.rate("bedrock", model, at=AT)
    assert rate is not None and rate.cache_write_1h is None and (rate.input, rate.cache_write) == (D(3), D("3.75"))
    expected = (120 * 3 + 6000 * D("0.3") + 10_000 * D("3.75") + 20_000 * 2 * 3 + 512 * 15) / M
    assert pricing.price("bedrock", model, parsed.usage, at=AT) == expected == D("0.16734")
    # an override without a 1-hour price: the same rule
    p = Pricing(overrides={"acme:claude-x": {"input_per_mtok": 2, "output_per_mtok": 8, "cache_write_per_mtok": "2.5"}})
    u = Usage(input_tokens=1000, cache_write_tokens=600, cache_write_1h_tokens=200)
    assert p.price("acme", "claude-x", u) == (400 * 2 + 400 * D("2.5") + 200 * 4) / M
    # and one with it
    p = Pricing(overrides={"acme:claude-x": {"input_per_mtok": 2, "output_per_mtok": 8, "cache_write_1h_per_mtok": 5}})
    assert p.price("acme", "claude-x", u) == (800 * 2 + 200 * 5) / M


def test_every_model_and_every_service_tier_matches_genai_prices(pricing: Pricing) -> None:
    """Usage with every detail kind, priced for every model genai-prices lists (at each service tier it has
    variants for): exactly ``calc_price``. 1-hour writes only where the model lists a 1-hour price (elsewhere
    the documented 2x multiplier applies, see above)."""
    full = dict(
        input_tokens=90_000,
        output_tokens=9_000,
        cache_read_tokens=30_000,
        cache_write_tokens=12_000,
        reasoning_tokens=2_000,
        input_audio_tokens=20_000,
        input_image_tokens=8_000,
        input_video_tokens=6_000,
        cache_audio_read_tokens=5_000,
        cache_image_read_tokens=3_000,
        cache_video_read_tokens=1_000,
        output_audio_tokens=1_500,
        output_image_tokens=1_200,
        output_video_tokens=700,
    )
    checked = tiers_checked = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            mp = model.get_prices(AT)
            ours = dict(full, cache_write_1h_tokens=4_000 if mp.cache_write_1h_mtok is not None else 0)
            theirs = genai_prices.Usage(
                **{("output_reasoning_tokens" if k == "reasoning_tokens" else k): v for k, v in ours.items()}
            )
            usage = Usage(**ours)
            tiers = [None, *sorted(_tiers_of(model))]
            for tier in tiers:
                ctx = {"service_tier": tier} if tier else None
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    expected = model.calc_price(theirs, provider, genai_request_timestamp=AT, price_context=ctx)
                rate = pricing._tier_rate(model, tier, AT) if tier else pricing._timed_rate(model, AT)
                assert rate.cost(usage) == expected.total_price, (provider.id, model.id, tier)
                checked += 1
                tiers_checked += tier is not None
    assert checked > 1000 and tiers_checked > 50


def _tiers_of(model: Any) -> set[str]:
    """The service tiers genai-prices has a variant of its own for on ``model``."""
    return {v.when["service_tier"] for v in model.price_variants or () if set(v.when) == {"service_tier"}}


def test_tiers_are_known_per_model_and_unknown_tiers_cost_the_standard_price(pricing: Pricing) -> None:
    assert {"flex", "priority"} <= pricing.service_tiers("openai", "gpt-5")
    assert pricing.service_tiers("anthropic", "claude-sonnet-4-5") == frozenset()
    u = Usage(1000, 100)
    # "scale" has no variant in genai-prices; Anthropic's "priority" neither: the standard price
    assert pricing.price("openai", "gpt-5", u, at=AT, service_tier="scale") == pricing.price(
        "openai", "gpt-5", u, at=AT
    )
    std = pricing.price("anthropic", "claude-sonnet-4-5", u, at=AT)
    assert pricing.price("anthropic", "claude-sonnet-4-5", u, at=AT, service_tier="priority") == std
    # "default" is the standard price
    assert pricing.price("openai", "gpt-5", u, at=AT, service_tier="default") == pricing.price(
        "openai", "gpt-5", u, at=AT
    )
    # before genai-prices' tier prices start, a tier costs what genai-prices says then (the standard price)
    early = datetime(2026, 1, 5, tzinfo=UTC)
    assert pricing.price("openai", "gpt-5", u, at=early, service_tier="priority") == pricing.price(
        "openai", "gpt-5", u, at=early
    )


def test_overrides_for_the_detail_kinds() -> None:
    p = Pricing(
        overrides={
            "m": {
                "input_per_mtok": 1,
                "output_per_mtok": 2,
                "cache_read_per_mtok": "0.1",
                "input_audio_per_mtok": 4,
                "cache_audio_read_per_mtok": "0.4",
                "output_image_mtok": 30,  # genai-prices' name
            }
        }
    )
    u = Usage(
        1000, 500, cache_read_tokens=300, input_audio_tokens=400, cache_audio_read_tokens=100, output_image_tokens=200
    )
    # text: 1000 - 300 read - 400 audio + 100 cached audio = 400; reads 200 text + 100 audio; audio 300 uncached
    expected = (400 * 1 + 200 * D("0.1") + 100 * D("0.4") + 300 * 4 + 300 * 2 + 200 * 30) / M
    assert p.price("acme", "m", u) == expected


def test_an_override_must_say_what_a_cached_audio_token_costs() -> None:
    from llm_connect.errors import LLMConfigurationError

    with pytest.raises(LLMConfigurationError, match="cache_audio_read_per_mtok"):
        Pricing(overrides={"m": {"input_per_mtok": 1, "cache_read_per_mtok": "0.1", "input_audio_per_mtok": 4}})


# -- the worst case a budget reserves ------------------------------------------------------------------


def test_worst_case_is_an_upper_bound_at_the_requested_tier_and_kinds(pricing: Pricing) -> None:
    std = pricing.worst_cost("openai", "gpt-5", 10_000, 1_000, at=AT)
    prio = pricing.worst_cost("openai", "gpt-5", 10_000, 1_000, at=AT, service_tier="priority")
    flex = pricing.worst_cost("openai", "gpt-5", 10_000, 1_000, at=AT, service_tier="flex")
    assert std == (10_000 * D("1.25") + 1_000 * 10) / M
    assert prio == (10_000 * D("2.5") + 1_000 * 20) / M  # what a priority call is billed at most
    assert flex == std  # a flex request may be served at the standard tier
    # a priority reply never costs more than the priority reservation
    billed = pricing.price("openai", "gpt-5", Usage(10_000, 1_000), at=AT, service_tier="priority")
    assert billed == prio
    # audio in the prompt: every input token may be audio ($1 on gemini-2.5-flash instead of $0.30)
    assert pricing.worst_cost("gemini", "gemini-2.5-flash", 1_000, 0, at=AT) == 1_000 * D("0.3") / M
    audio = pricing.worst_cost("gemini", "gemini-2.5-flash", 1_000, 0, at=AT, kinds=frozenset({"input_audio"}))
    assert audio == 1_000 * D(1) / M
    # a 1-hour cache write: 2x input on claude-sonnet-4-5, above the 1.25x of a 5-minute write
    five = pricing.worst_cost("anthropic", "claude-sonnet-4-5", 1_000, 0, at=AT)
    hour = pricing.worst_cost("anthropic", "claude-sonnet-4-5", 1_000, 0, at=AT, kinds=frozenset({"cache_write_1h"}))
    assert (five, hour) == (1_000 * D("3.75") / M, 1_000 * D(6) / M)
    # an image model may answer with image tokens: output is reserved at the image price
    assert pricing.worst_cost("gemini", "gemini-2.5-flash-image", 0, 1_000, at=AT) == 1_000 * D(30) / M


def test_request_kinds_are_read_from_the_prompt() -> None:
    def kinds(content: Any, **cfg: Any) -> frozenset[str]:
        return request_kinds([Message("user", content)], RunConfig(**cfg))

    assert kinds("plain text") == frozenset()
    assert kinds([{"type": "text", "text": "hi"}]) == frozenset()
    assert kinds([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]) == {"input_audio"}
    assert kinds([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]) == {"input_image"}
    assert kinds([{"inlineData": {"mimeType": "video/mp4", "data": "AAAA"}}]) == {"input_video"}
    assert kinds([{"fileData": {"mimeType": "audio/mpeg", "fileUri": "gs://b/a.mp3"}}]) == {"input_audio"}
    # a part whose modality cannot be told may be any of them
    assert kinds([{"type": "file", "file": {"file_id": "file-1"}}]) == {"input_audio", "input_image", "input_video"}
    one_hour = {"type": "ephemeral", "ttl": "1h"}
    assert kinds([{"type": "text", "text": "doc", "cache_control": one_hour}]) == {"cache_write_1h"}
    assert kinds([{"type": "text", "text": "doc", "cache_control": {"type": "ephemeral"}}]) == frozenset()
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}, "cache_control": one_hour}
    assert kinds("x", tools=[tool]) == {"cache_write_1h"}
    assert kinds("x", extra_body={"cache_control": one_hour}) == {"cache_write_1h"}
    assert requested_service_tier(RunConfig(extra_body={"service_tier": "priority"})) == "priority"
    assert requested_service_tier(RunConfig()) is None


# -- through real HTTP: the response, the budget, the event, the ledger --------------------------------


async def test_a_priority_reply_is_billed_at_priority_and_recorded_with_its_tier() -> None:
    events: list[UsageEvent] = []
    ut = UsageTracker()
    ut.subscribe(events.append)
    async with MockServer() as mock:
        mock.script(
            MockReply(text="ok", input_tokens=3120, cache_read_tokens=2048, output_tokens=840, reasoning_tokens=576)
        )
        a = create_adapter("openai:gpt-5", api_base=mock.openai_base, api_key="k")
        cfg = RunConfig(extra_body={"service_tier": "priority"}, usage_tracker=ut)
        resp = await a.async_execute_prompt("where is order 4411?", cfg)
        assert mock.last_request["body"]["service_tier"] == "priority"
    assert resp.service_tier == "priority"
    expected = _genai_price(
        {
            "model": "gpt-5",
            "usage": {
                "prompt_tokens": 3120,
                "completion_tokens": 840,
                "prompt_tokens_details": {"cached_tokens": 2048},
                "completion_tokens_details": {"reasoning_tokens": 576},
            },
        },
        "openai",
        "chat",
        "openai",
        "gpt-5",
        "priority",
    )
    # the mock prices at today's date, not AT: compare with the price of today
    assert resp.cost_usd == Pricing().price("openai", "gpt-5", resp.usage, service_tier="priority")
    assert resp.cost_usd == expected == D("0.019992")
    (event,) = events
    assert event.service_tier == "priority" and event.cost_usd == resp.cost_usd


async def test_a_streamed_priority_reply_is_billed_at_priority() -> None:
    async with MockServer() as mock:
        mock.script(MockReply(text="ok then", input_tokens=3120, cache_read_tokens=2048, output_tokens=840))
        a = create_adapter("openai:gpt-5", api_base=mock.openai_base, api_key="k")
        chunks = [c async for c in a.astream("hi", RunConfig(extra_body={"service_tier": "priority"}))]
    final = chunks[-1]
    assert final.service_tier == "priority"
    assert final.cost_usd == (1072 * D("2.5") + 2048 * D("0.25") + 840 * 20) / M


async def test_a_priority_request_reserves_at_the_priority_rate() -> None:
    """A USD budget that covers the call's worst case at the standard rate but not at priority: strict
    reservations refuse the priority request before it is sent; fitted ones (the default) send it with
    ``max_tokens`` clamped to what the budget pays for at priority. The same request at the standard tier goes
    out as asked."""
    pricing = Pricing()
    prompt = "how far is the moon?"
    async with MockServer() as mock:
        strict = create_adapter("openai:gpt-5", api_base=mock.openai_base, api_key="k", pricing=pricing)
        strict.fit_to_budget = False
        est = strict.count_input_tokens([Message("user", prompt)], RunConfig())
        std = pricing.worst_cost("openai", "gpt-5", est, 1_000)
        prio = pricing.worst_cost("openai", "gpt-5", est, 1_000, service_tier="priority")
        assert std is not None and prio is not None and prio == 2 * std
        priority = {"service_tier": "priority"}
        budget = BudgetTracker(total_usd=std * D("1.5"))
        with pytest.raises(LLMBudgetExceededError):
            await strict.async_execute_prompt(
                prompt, RunConfig(max_tokens=1_000, budget_tracker=budget, extra_body=priority)
            )
        assert mock.requests == []
        await strict.async_execute_prompt(prompt, RunConfig(max_tokens=1_000, budget_tracker=budget))
        assert mock.last_request["body"]["max_completion_tokens"] == 1_000

        fitted = create_adapter("openai:gpt-5", api_base=mock.openai_base, api_key="k", pricing=pricing)
        budget = BudgetTracker(total_usd=std * D("1.5"))
        await fitted.async_execute_prompt(
            prompt, RunConfig(max_tokens=1_000, budget_tracker=budget, extra_body=priority)
        )
        sent = mock.last_request["body"]["max_completion_tokens"]
        assert 0 < sent < 1_000
        # what was sent fits the budget at the priority rate (the prompt at its bound, from above)
        assert pricing.worst_cost("openai", "gpt-5", est, sent, service_tier="priority") <= budget.total_usd
        assert budget.reserved_usd == 0 and budget.spent_usd <= budget.total_usd


async def test_a_one_hour_cache_request_reserves_at_twice_the_input_price() -> None:
    pricing = Pricing()
    doc = [{"type": "text", "text": "x " * 500, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    five_minute = [{**doc[0], "cache_control": {"type": "ephemeral"}}]
    async with MockServer() as mock:
        a = create_adapter("anthropic:claude-sonnet-4-5", api_base=mock.url, api_key="k", pricing=pricing)
        a.fit_to_budget = False
        est = a.count_input_tokens([Message("user", doc)], RunConfig())
        five = pricing.worst_cost("anthropic", "claude-sonnet-4-5", est, 10)
        hour = pricing.worst_cost("anthropic", "claude-sonnet-4-5", est, 10, kinds=frozenset({"cache_write_1h"}))
        assert five is not None and hour is not None and hour > five
        budget = BudgetTracker(total_usd=(five + hour) / 2)
        with pytest.raises(LLMBudgetExceededError):
            await a.async_execute_prompt(
                [{"role": "user", "content": doc}], RunConfig(max_tokens=10, budget_tracker=budget)
            )
        assert mock.requests == []
        await a.async_execute_prompt(
            [{"role": "user", "content": five_minute}], RunConfig(max_tokens=10, budget_tracker=budget)
        )
        assert len(mock.requests) == 1


async def test_anthropic_one_hour_writes_over_http_in_calls_streams_events_and_the_ledger(tmp_path) -> None:
    from llm_connect.usage import Ledger

    events: list[UsageEvent] = []
    ut = UsageTracker()
    ut.subscribe(events.append)
    script = dict(
        text="noted",
        input_tokens=36_120,
        cache_read_tokens=6000,
        cache_write_tokens=30_000,
        cache_write_1h_tokens=20_000,
        output_tokens=512,
    )
    async with MockServer() as mock:
        mock.script(MockReply(**script), MockReply(**script))
        a = create_adapter("anthropic:claude-sonnet-4-5", api_base=mock.url, api_key="k")
        resp = await a.async_execute_prompt("summarise", RunConfig(usage_tracker=ut))
        chunks = [c async for c in a.astream("summarise", RunConfig(usage_tracker=ut))]
    expected = Usage(36_120, 512, cache_read_tokens=6000, cache_write_tokens=30_000, cache_write_1h_tokens=20_000)
    assert resp.usage == chunks[-1].usage == expected
    assert resp.service_tier == "standard"
    assert resp.cost_usd == chunks[-1].cost_usd == D("0.16734")
    assert [e.usage for e in events] == [expected, expected]
    assert events[0].metadata["token_kinds"] == {"cache_write_1h_tokens": 20_000}
    led = Ledger.open(tmp_path / "usage.sqlite3")
    try:
        led.record(events[0])
        (back,) = led.query()
    finally:
        led.close()
    assert back.usage == expected and back.service_tier == "standard" and back.cost_usd == D("0.16734")


async def test_gemini_audio_input_over_http() -> None:
    async with MockServer() as mock:
        mock.script(MockReply(text="heard", input_tokens=19_245, input_audio_tokens=19_200, output_tokens=96))
        a = create_adapter("gemini:gemini-2.5-flash", api_base=mock.url, api_key="k")
        resp = await a.async_execute_prompt("transcribe")
    assert resp.usage == Usage(19_245, 96, input_audio_tokens=19_200)
    assert resp.cost_usd == (45 * D("0.3") + 19_200 * 1 + 96 * D("2.5")) / M


# -- Usage arithmetic with the detail kinds ----------------------------------------------------------


def test_usage_adds_serialises_and_keeps_old_positional_calls() -> None:
    a = Usage(10, 5, 2, 1, 3)  # the five base fields stay positional
    assert (a.input_tokens, a.output_tokens, a.cache_read_tokens, a.cache_write_tokens, a.reasoning_tokens) == (
        10,
        5,
        2,
        1,
        3,
    )
    b = Usage(100, 50, cache_write_tokens=40, cache_write_1h_tokens=30, input_audio_tokens=20, output_image_tokens=7)
    s = a + b
    assert s == Usage(110, 55, 2, 41, 3, cache_write_1h_tokens=30, input_audio_tokens=20, output_image_tokens=7)
    assert a.to_dict() == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_tokens": 2,
        "cache_write_tokens": 1,
        "reasoning_tokens": 3,
        "total_tokens": 15,
    }  # plain usage serialises as before
    d = s.to_dict()
    assert d["cache_write_1h_tokens"] == 30 and "input_video_tokens" not in d
    assert Usage.from_dict(d) == s and Usage.from_dict({}) == Usage()
    assert s.details() == {"cache_write_1h_tokens": 30, "input_audio_tokens": 20, "output_image_tokens": 7}
    every = Usage(**{k: i + 1 for i, k in enumerate(USAGE_DETAIL_KINDS)})
    assert (every + every).details() == {k: 2 * (i + 1) for i, k in enumerate(USAGE_DETAIL_KINDS)}


def test_event_round_trip_keeps_the_kinds_and_the_tier() -> None:
    u = Usage(1000, 200, cache_read_tokens=100, input_audio_tokens=600, cache_audio_read_tokens=50)
    resp = LLMResponse(text="x", model="gemini-2.5-flash", provider="gemini", usage=u, service_tier="flex")
    e = UsageEvent.from_response(resp, RunConfig(metadata={"team": "ops"}), pricing=Pricing())
    assert e.usage == u and e.service_tier == "flex" and e.metadata["team"] == "ops"
    assert e.cost_usd == Pricing().price("gemini", "gemini-2.5-flash", u)
    back = UsageEvent.from_dict(json.loads(json.dumps(e.to_dict())))
    assert back == e and back.usage == u


async def test_a_cut_stream_keeps_the_kinds_the_provider_reported_before_the_cut() -> None:
    """message_start reported 1-hour writes; the stream is cut before message_stop: the estimate billed keeps
    them (per kind, the larger of reported and seen) and prices them at the 1-hour rate."""
    from llm_connect import LLMProviderUnavailableError

    events: list[UsageEvent] = []
    ut = UsageTracker()
    ut.subscribe(events.append)
    async with MockServer() as mock:
        mock.script(
            MockReply(
                text=" ".join(["word"] * 20),
                input_tokens=36_120,
                cache_read_tokens=6000,
                cache_write_tokens=30_000,
                cache_write_1h_tokens=20_000,
                output_tokens=512,
                fault="cut_stream",
                cut_after=4,
            )
        )
        a = create_adapter("anthropic:claude-sonnet-4-5", api_base=mock.url, api_key="k")
        with pytest.raises(LLMProviderUnavailableError):
            async for _ in a.astream("summarise", RunConfig(usage_tracker=ut)):
                pass
    (event,) = events
    assert event.estimated
    u = event.usage
    assert (u.cache_write_tokens, u.cache_write_1h_tokens, u.cache_read_tokens) == (30_000, 20_000, 6000)
    plain_writes = Usage(u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)
    assert event.cost_usd == Pricing().price("anthropic", "claude-sonnet-4-5", u)
    assert (
        event.cost_usd - Pricing().price("anthropic", "claude-sonnet-4-5", plain_writes)
        == 20_000 * (D(6) - D("3.75")) / M
    )


async def test_a_cut_priority_stream_is_estimated_at_the_priority_rate() -> None:
    from llm_connect import LLMProviderUnavailableError

    events: list[UsageEvent] = []
    ut = UsageTracker()
    ut.subscribe(events.append)
    async with MockServer() as mock:
        mock.script(MockReply(text=" ".join(["word"] * 20), fault="cut_stream", cut_after=5))
        a = create_adapter("openai:gpt-5", api_base=mock.openai_base, api_key="k")
        cfg = RunConfig(usage_tracker=ut, extra_body={"service_tier": "priority"})
        with pytest.raises(LLMProviderUnavailableError):
            async for _ in a.astream("go on", cfg):
                pass
    (event,) = events
    assert event.estimated and event.service_tier is None  # the tier the reply would have named never came
    p = Pricing()
    assert event.cost_usd == p.price("openai", "gpt-5", event.usage, service_tier="priority")
    assert event.cost_usd == 2 * p.price("openai", "gpt-5", event.usage)
