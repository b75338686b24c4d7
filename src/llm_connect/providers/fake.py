"""The ``fake`` provider: scripted replies, usage, latency and errors, in process. Shipped for users' tests.

::

    a = create_adapter("fake:echo")                       # echoes the last user message
    a = create_adapter("fake:any", replies=["one", FakeReply(text="two", latency=0.2),
                                            FakeReply(error=LLMRateLimitError("slow down", retry_after=1))])

Replies are used in order; when they run out the adapter echoes. Usage is counted in whitespace words
unless a reply sets it. It goes through the same budget, pricing (free) and usage pipeline as every
other adapter.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from ..errors import LLMConfigurationError, LLMError
from ..types import LLMResponse, Message, RunConfig, StreamChunk, Usage
from .base import BaseAdapter

__all__ = ["FakeAdapter", "FakeReply", "create"]


@dataclass(slots=True)
class FakeReply:
    """One scripted outcome: a text (with optional usage / finish_reason / latency) or an error to raise."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str = "stop"
    latency: float = 0.0
    error: LLMError | None = None
    tool_calls: list[dict] | None = None


def _words(text: str) -> int:
    return len(text.split())


class FakeAdapter(BaseAdapter):
    """Deterministic in-process adapter (see module docstring)."""

    def __init__(
        self,
        model: str = "echo",
        *,
        replies: Iterable[str | FakeReply] = (),
        latency: float = 0.0,
        **options: object,
    ) -> None:
        super().__init__(provider="fake", model=model or "echo", **options)  # type: ignore[arg-type]
        self._replies: deque[FakeReply] = deque(r if isinstance(r, FakeReply) else FakeReply(text=r) for r in replies)
        self._lock = threading.Lock()
        self.latency = latency
        #: every prompt this adapter received, in order (list of Message lists)
        self.calls: list[list[Message]] = []

    def add_replies(self, *replies: str | FakeReply) -> None:
        with self._lock:
            self._replies.extend(r if isinstance(r, FakeReply) else FakeReply(text=r) for r in replies)

    def count_input_tokens(self, messages: list[Message], config: RunConfig) -> int:
        return sum(_words(m.text) + 1 for m in messages)

    async def acount_exact_input_tokens(self, messages: list[Message], config: RunConfig) -> int | None:
        """Exact: the words the usage counts (unless a scripted reply sets its own usage)."""
        return self.count_input_tokens(messages, config)

    def _next(self, messages: list[Message]) -> FakeReply:
        with self._lock:
            self.calls.append(messages)
            if self._replies:
                return self._replies.popleft()
        last = next((m.text for m in reversed(messages) if m.role == "user"), "")
        return FakeReply(text=f"echo: {last}", latency=self.latency)

    def _usage(self, reply: FakeReply, messages: list[Message], text: str) -> Usage:
        if reply.usage is not None:
            return reply.usage
        return Usage(input_tokens=sum(_words(m.text) + 1 for m in messages), output_tokens=_words(text))

    @staticmethod
    def _truncate(text: str, max_tokens: int | None) -> tuple[str, bool]:
        words = text.split(" ")
        if max_tokens is not None and _words(text) > max_tokens:
            return " ".join(words[:max_tokens]), True
        return text, False

    async def _complete(self, messages: list[Message], config: RunConfig, max_tokens: int | None) -> LLMResponse:
        reply = self._next(messages)
        if reply.latency:
            await asyncio.sleep(reply.latency)
        if reply.error is not None:
            raise reply.error
        text, cut = self._truncate(reply.text, max_tokens)
        return LLMResponse(
            text=text,
            model=self.model,
            provider=self.provider,
            usage=self._usage(reply, messages, text),
            finish_reason="length" if cut else reply.finish_reason,
            tool_calls=reply.tool_calls,
        )

    async def _stream(
        self, messages: list[Message], config: RunConfig, max_tokens: int | None
    ) -> AsyncIterator[StreamChunk]:
        reply = self._next(messages)
        if reply.latency:
            await asyncio.sleep(reply.latency)
        if reply.error is not None:
            raise reply.error
        text, cut = self._truncate(reply.text, max_tokens)
        words = text.split(" ")
        for i, w in enumerate(words):
            yield StreamChunk(text=w if i == 0 else " " + w, model=self.model)
            await asyncio.sleep(0)
        yield StreamChunk(
            finish_reason="length" if cut else reply.finish_reason,
            usage=self._usage(reply, messages, text),
            model=self.model,
        )


def create(model: str = "echo", **options: object) -> FakeAdapter:
    options.pop("api_key", None)
    options.pop("api_base", None)
    try:
        return FakeAdapter(model, **options)  # type: ignore[arg-type]
    except TypeError as exc:
        raise LLMConfigurationError(f"fake provider: {exc}", provider="fake") from None
