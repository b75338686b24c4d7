"""Token kinds beyond the five base counts, read from replayed payloads in the providers' official shapes.

* OpenAI Chat Completions object (platform.openai.com/docs/api-reference/chat/object): ``service_tier``,
  ``usage.prompt_tokens_details.audio_tokens``, ``usage.completion_tokens_details.audio_tokens``;
  OpenRouter's OpenAI-compatible usage adds ``prompt_tokens_details.cache_write_tokens`` (and ``video_tokens``).
* Anthropic Messages (docs.anthropic.com/en/api/messages): ``usage.cache_creation`` splits the cache writes
  into ``ephemeral_5m_input_tokens`` and ``ephemeral_1h_input_tokens``; ``usage.service_tier``.
* Gemini GenerateContentResponse (ai.google.dev/api/generate-content#UsageMetadata): ``promptTokensDetails``,
  ``cacheTokensDetails``, ``candidatesTokensDetails`` are lists of ``{"modality", "tokenCount"}``.

Every non-streaming payload and its streamed twin must give the same Usage: the final chunk is parsed by the
same ``parse_usage``.
"""

from __future__ import annotations

from llm_connect.types import Usage
from llm_connect.wire import anthropic_messages, gemini, openai_chat


def test_openai_priority_tier_is_read_from_the_response(payload) -> None:
    parsed = openai_chat.parse_response(payload("openai_chat_priority_tier.json"))
    assert parsed.service_tier == "priority"
    assert parsed.usage == Usage(3120, 840, cache_read_tokens=2048, reasoning_tokens=576)


def test_openai_flex_tier_is_read_from_the_response(payload) -> None:
    parsed = openai_chat.parse_response(payload("openai_chat_flex_tier.json"))
    assert parsed.service_tier == "flex"
    assert parsed.usage == Usage(18500, 4200, reasoning_tokens=3712)


def test_openai_default_tier_and_a_body_without_one(payload) -> None:
    body = payload("openai_chat_cached_reasoning.json")
    assert openai_chat.parse_response(body).service_tier == "default"
    del body["service_tier"]
    assert openai_chat.parse_response(body).service_tier is None


def test_openai_stream_carries_the_tier_and_the_same_usage_to_the_final_chunk(payload, feed) -> None:
    decoder = openai_chat.StreamDecoder()
    chunks = feed(decoder, payload("openai_chat_stream_priority_tier.json"))
    final = decoder.finish()
    assert "".join(c.text for c in chunks) == "Shipped on Monday."
    assert final.service_tier == "priority"
    assert final.usage == openai_chat.parse_response(payload("openai_chat_priority_tier.json")).usage


def test_openai_audio_tokens_in_and_out(payload) -> None:
    u = openai_chat.parse_response(payload("openai_chat_audio.json")).usage
    assert u == Usage(1207, 389, input_audio_tokens=1150, output_audio_tokens=312)
    assert u.input_audio_tokens <= u.input_tokens and u.output_audio_tokens <= u.output_tokens


def test_openrouter_cache_write_tokens_are_no_longer_read_as_zero(payload) -> None:
    parsed = openai_chat.parse_response(payload("openrouter_chat_cache_write.json"))
    assert parsed.usage == Usage(12450, 210, cache_write_tokens=12000)
    assert parsed.service_tier is None  # OpenRouter's body has none


def test_anthropic_one_hour_cache_writes_are_split_out(payload) -> None:
    parsed = anthropic_messages.parse_response(payload("anthropic_messages_cache_1h.json"))
    # input_tokens 120 + cache reads 6000 + cache writes 30000, of which 20000 with the 1-hour TTL
    assert parsed.usage == Usage(
        36_120, 512, cache_read_tokens=6000, cache_write_tokens=30_000, cache_write_1h_tokens=20_000
    )
    assert parsed.service_tier == "standard"


def test_anthropic_five_minute_writes_only(payload) -> None:
    u = anthropic_messages.parse_response(payload("anthropic_messages_cache.json")).usage
    assert u.cache_write_tokens == 1000 and u.cache_write_1h_tokens == 0


def test_anthropic_split_without_the_total_and_an_inconsistent_split() -> None:
    # the split alone: the total is its sum
    u = anthropic_messages.parse_usage(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 70},
        }
    )
    assert (u.input_tokens, u.cache_write_tokens, u.cache_write_1h_tokens) == (110, 100, 70)
    # a 1-hour count above the total never makes the subset larger than the whole
    u = anthropic_messages.parse_usage(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_creation_input_tokens": 50,
            "cache_creation": {"ephemeral_1h_input_tokens": 80},
        }
    )
    assert (u.cache_write_tokens, u.cache_write_1h_tokens) == (50, 50)


def test_anthropic_thinking_tokens_are_reasoning() -> None:
    u = anthropic_messages.parse_usage(
        {"input_tokens": 40, "output_tokens": 900, "output_tokens_details": {"thinking_tokens": 700}}
    )
    assert (u.output_tokens, u.reasoning_tokens) == (900, 700)


def test_anthropic_stream_reads_the_split_from_message_start(payload, feed) -> None:
    decoder = anthropic_messages.StreamDecoder()
    feed(decoder, payload("anthropic_messages_stream_cache_1h.json"))
    final = decoder.finish()
    assert final.usage == anthropic_messages.parse_response(payload("anthropic_messages_cache_1h.json")).usage
    assert final.service_tier == "standard"


def test_gemini_audio_input_and_cached_audio(payload) -> None:
    u = gemini.parse_response(payload("gemini_audio_input.json")).usage
    assert u == Usage(
        19_245,
        96 + 494,
        cache_read_tokens=9600,
        reasoning_tokens=494,
        input_audio_tokens=19_200,
        cache_audio_read_tokens=9600,
    )
    assert u.total_tokens == payload("gemini_audio_input.json")["usageMetadata"]["totalTokenCount"]


def test_gemini_image_input_and_output(payload) -> None:
    u = gemini.parse_response(payload("gemini_image_output.json")).usage
    assert u == Usage(1306, 1295, input_image_tokens=1290, output_image_tokens=1290)


def test_gemini_stream_final_chunk_has_the_modalities(payload, feed) -> None:
    decoder = gemini.StreamDecoder()
    feed(decoder, payload("gemini_stream_audio.json"))
    assert decoder.finish().usage == gemini.parse_response(payload("gemini_audio_input.json")).usage


def test_gemini_documents_count_as_images_and_tool_use_prompts_as_input() -> None:
    u = gemini.parse_usage(
        {
            "promptTokenCount": 2000,
            "toolUsePromptTokenCount": 300,
            "candidatesTokenCount": 10,
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": 968},
                {"modality": "DOCUMENT", "tokenCount": 1032},
            ],
            "toolUsePromptTokensDetails": [{"modality": "AUDIO", "tokenCount": 300}],
        }
    )
    assert (u.input_tokens, u.input_image_tokens, u.input_audio_tokens) == (2300, 1032, 300)


def test_malformed_modality_lists_are_ignored() -> None:
    u = gemini.parse_usage(
        {"promptTokenCount": 5, "promptTokensDetails": [None, {"modality": "AUDIO"}, {"tokenCount": 3}, "x"]}
    )
    assert u == Usage(5, 0)
