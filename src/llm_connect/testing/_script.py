"""Scripted replies and faults for the mock provider server, and the state its handlers share."""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import _formats as F

__all__ = ["FAULTS", "MockReply", "Script", "ScriptState", "as_reply"]

#: fault kinds a script can inject
FAULTS = frozenset({"reset", "cut_stream", "malformed", "slow", "stream_error"})
_SLOW_DEFAULT = 10.0

_USAGE_ALIASES = {
    "input": "input_tokens",
    "prompt_tokens": "input_tokens",
    "output": "output_tokens",
    "completion_tokens": "output_tokens",
    "cached": "cache_read_tokens",
    "cache_read": "cache_read_tokens",
    "cached_tokens": "cache_read_tokens",
    "cache_write": "cache_write_tokens",
    "cache_write_1h": "cache_write_1h_tokens",
    "input_audio": "input_audio_tokens",
    "reasoning": "reasoning_tokens",
}


@dataclass(slots=True)
class MockReply:
    """One scripted reply or fault. Fields left as None fall back to the mock's default behaviour.

    ``model`` / ``provider`` restrict which requests it answers (provider is a wire format:
    openai, anthropic, gemini, ollama). ``times`` is how many requests it serves (None, or
    ``repeat=True``: until cleared). An error is any ``status`` >= 400 or a generic ``error`` kind
    (rate_limit, overloaded, server, unavailable, timeout, auth, permission, not_found,
    bad_request, context_length, too_large), rendered in each provider's real error body.
    """

    text: str | None = None
    model: str | None = None
    provider: str | None = None
    #: the model id the reply names, as providers answer under a dated id (``gpt-4o-mini-2024-07-18``)
    reported_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    #: of cache_write_tokens: 1-hour cache writes (Anthropic)
    cache_write_1h_tokens: int | None = None
    #: of input_tokens: audio input (OpenAI, Gemini)
    input_audio_tokens: int | None = None
    #: the service tier the reply says it was served at (default: an OpenAI request's "flex" / "priority",
    #: else "default" / Anthropic "standard")
    service_tier: str | None = None
    #: reasoning text: an Anthropic thinking block (signed), ``reasoning_content`` from the OpenAI path, Gemini
    #: thought parts
    thinking: str | None = None
    #: top-level fields an OpenAI-format reply adds to its body and to every stream chunk, as OpenAI-compatible
    #: providers do (Perplexity ``citations``, ``search_results``)
    extra_fields: dict[str, Any] | None = None
    #: OpenAI-shaped ({"id", "type", "function": {"name", "arguments"}}) or {"name", "arguments"}
    tool_calls: list[dict[str, Any]] | None = None
    #: generic (stop, length, tool_calls, content_filter) or the provider's own value
    finish_reason: str | None = None
    #: seconds before the response headers
    latency: float | None = None
    #: seconds between stream frames
    chunk_delay: float | None = None
    status: int | None = None
    error: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_code: str | None = None
    retry_after: float | None = None
    fault: str | None = None
    #: cut_stream / stream_error: frames sent before the cut (default: half the content)
    cut_after: int | None = None
    times: int | None = 1
    repeat: bool = False
    headers: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"fault must be one of {sorted(FAULTS)}, got {self.fault!r}")
        if self.error is not None and self.error not in F.ERROR_STATUS:
            raise ValueError(f"error must be one of {sorted(F.ERROR_STATUS)}, got {self.error!r}")
        if self.provider is not None and self.provider not in F.FORMATS:
            raise ValueError(f"provider must be one of {F.FORMATS}, got {self.provider!r}")
        if self.status is None and self.error is not None:
            self.status = F.ERROR_STATUS[self.error]
        if self.fault == "slow" and self.latency is None:
            self.latency = _SLOW_DEFAULT
        if self.repeat:
            self.times = None
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 (or None for 'until cleared')")

    @property
    def is_error(self) -> bool:
        return self.status is not None and self.status >= 400

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MockReply:
        """Build from JSON: field names, plus ``usage: {input, output, cached, cache_write, cache_write_1h,
        input_audio, reasoning}``."""
        data = dict(d)
        usage = data.pop("usage", None) or {}
        for k, v in {**data, **usage}.items():
            if k in _USAGE_ALIASES:
                data.pop(k, None)
                data[_USAGE_ALIASES[k]] = v
            elif k in usage:
                data[k] = v
        if "delay" in data:
            data.setdefault("chunk_delay", data.pop("delay"))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown script fields: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and v is not False}


#: the same thing under the name the docs use for queued behaviour
Script = MockReply


def as_reply(item: MockReply | Mapping[str, Any]) -> MockReply:
    return item if isinstance(item, MockReply) else MockReply.from_dict(item)


class ScriptState:
    """Everything the handlers share; safe to mutate from another thread."""

    def __init__(
        self,
        require_key: str | None,
        model_latency: Mapping[str, float] | None,
        models: Sequence[str] | None,
        chunk_delay: float,
        log_limit: int,
    ) -> None:
        self.lock = threading.Lock()
        self.scripts: list[list[Any]] = []  # [MockReply, remaining or None]
        self.log: deque[dict[str, Any]] = deque(maxlen=log_limit)
        self.require_key = require_key
        self.model_latency: dict[str, float] = dict(model_latency or {})
        self.models = list(models or ["mock-model"])
        self.chunk_delay = chunk_delay
        self.ids = itertools.count(1)
        self.boot = secrets.token_hex(3)
        self.cache: dict[tuple[Any, ...], list[bytes]] = {}

    def add(self, replies: Sequence[MockReply]) -> None:
        with self.lock:
            self.scripts.extend([r, r.times] for r in replies)

    def take(self, fmt: str, model: str) -> MockReply | None:
        if not self.scripts:
            return None
        with self.lock:
            pick = None
            for specific in (True, False):
                for entry in self.scripts:
                    r = entry[0]
                    if (r.model is not None) != specific or (specific and r.model != model):
                        continue
                    if r.provider is not None and r.provider != fmt:
                        continue
                    pick = entry
                    break
                if pick is not None:
                    break
            if pick is None:
                return None
            if pick[1] is not None:
                pick[1] -= 1
                if pick[1] <= 0:
                    self.scripts.remove(pick)
            return pick[0]

    def pending(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{**r.to_dict(), "remaining": n} for r, n in self.scripts]

    def clear(self) -> None:
        with self.lock:
            self.scripts.clear()
            self.log.clear()

    def next_id(self) -> str:
        return f"mock{self.boot}{next(self.ids):06d}"
