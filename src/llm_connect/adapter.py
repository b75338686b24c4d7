"""The adapter contract: ``LLMAdapter``.

The core is async. ``execute_prompt`` / ``stream`` are a thin sync facade that runs the async method on
one background event loop per process (so keep-alive connections are shared by every thread); at
interpreter exit that loop is shut down and its HTTP sessions closed. Calling the sync facade from inside a
running event loop raises :class:`LLMUsageError` instead of deadlocking.

A third-party adapter may implement only ``execute_prompt`` (sync): ``async_execute_prompt`` then runs
it in the default executor (seed FR-3). Either method must be implemented.

Every adapter also satisfies seed 004's ``LLMBackend`` protocol: ``model``, ``timeout`` and
``async generate(prompt) -> LLMResult``.

Embeddings: ``aembed(texts, config, dimensions=None) -> EmbeddingResponse`` and its sync facade ``embed``.
An adapter that has no embedding API leaves ``supports_embeddings`` False and raises
:class:`LLMCapabilityError` (before any provider call).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import threading
import time
from abc import ABC
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ._batches import answer_chunks, singles
from .errors import LLMCapabilityError, LLMTimeoutError, LLMUsageError
from .types import LLMResponse, Prompt, RunConfig, StreamChunk

if TYPE_CHECKING:
    from .embeddings import EmbeddingInput, EmbeddingResponse

__all__ = ["LLMAdapter", "LLMBackend", "LLMResult", "SyncRunner"]

T = TypeVar("T")


class SyncRunner:
    """One daemon thread running an event loop; sync callers submit coroutines to it.

    The loop lives as long as the process, so the HTTP sessions opened on it (and their keep-alive pools)
    serve every sync call. At interpreter exit :meth:`close` shuts it down as ``asyncio.run`` would: the
    transport closes the loop's session (no "Unclosed client session" warnings), then the loop is closed.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="llm-connect-sync", daemon=True)
        self._pid = os.getpid()
        self._closed = False
        self._thread.start()
        atexit.register(self.close)

    @classmethod
    def shared(cls) -> SyncRunner:
        """The process's runner (a forked child gets its own: the parent's loop thread does not exist there)."""
        return cls._for_process(os.getpid())

    @classmethod
    @functools.cache
    def _for_process(cls, pid: int) -> SyncRunner:
        return cls()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def close(self, timeout: float = 5.0) -> None:
        """Stop the loop: cancel what still runs on it, close its async generators (the transport's session
        closers among them), stop and close it. Idempotent; run at interpreter exit. Later sync calls raise
        LLMUsageError."""
        if self._closed or self._pid != os.getpid() or threading.current_thread() is self._thread:
            return  # a forked child's copy of its parent's runner has no thread to stop
        self._closed = True
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self) -> None:
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._loop.shutdown_asyncgens()
        await asyncio.sleep(0)  # let the closed connections' transports finish closing

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise LLMUsageError(
                "the sync API (execute_prompt / stream) was called inside a running event loop; "
                "use 'await adapter.async_execute_prompt(...)' or 'async for c in adapter.astream(...)'"
            )
        if self._closed:
            coro.close()
            raise LLMUsageError("the sync API was called after its event loop was closed (at interpreter exit)")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result()
        except BaseException:
            fut.cancel()
            raise

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        """Drive an async iterator from sync code; closing the sync iterator closes the async one."""
        it = aiter(agen)

        async def step() -> tuple[bool, Any]:
            try:
                return True, await anext(it)
            except StopAsyncIteration:
                return False, None

        try:
            while True:
                ok, item = self.run(step())
                if not ok:
                    return
                yield item
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None and not self._closed:
                fut = asyncio.run_coroutine_threadsafe(aclose(), self._loop)
                if threading.current_thread() is not self._thread:  # (the GC may finalise us on the loop)
                    fut.result(timeout=30)


@dataclass(slots=True)
class LLMResult:
    """Seed 004: the outcome of one ``generate`` call. ``success`` is False on empty output."""

    success: bool
    text: str
    model: str
    latency_ms: int
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class LLMBackend(Protocol):
    """Seed 004's minimal backend contract; every LLMAdapter satisfies it."""

    model: str
    timeout: float

    async def generate(self, prompt: str) -> LLMResult: ...


class LLMAdapter(ABC):  # noqa: B024 - "implement one of two" is checked in __init_subclass__
    """One model behind one provider (or a router / policy wrapping several) with the common contract."""

    provider: str = "custom"
    model: str = ""
    #: default wall-clock cap in seconds for ``generate`` and for calls whose RunConfig sets no timeout
    timeout: float = 120.0
    #: whether :meth:`aembed` can succeed here (a router: whether any of its deployments may embed)
    supports_embeddings: bool = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if getattr(cls, "__abstractmethods__", None):
            return
        sync_impl = cls.execute_prompt is not LLMAdapter.execute_prompt
        async_impl = cls.async_execute_prompt is not LLMAdapter.async_execute_prompt
        if not (sync_impl or async_impl):
            raise TypeError(f"{cls.__name__} must implement execute_prompt or async_execute_prompt")

    # -- core ---------------------------------------------------------------------------------------
    def execute_prompt(self, prompt: Prompt, config: RunConfig | None = None) -> LLMResponse:
        """Sync facade. Safe from many threads; raises LLMUsageError inside a running event loop."""
        return SyncRunner.shared().run(self.async_execute_prompt(prompt, config))

    async def async_execute_prompt(self, prompt: Prompt, config: RunConfig | None = None) -> LLMResponse:
        """Default executor fallback for adapters that implement only the sync ``execute_prompt``."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self.execute_prompt, prompt, config)
        cap = config.timeout if config is not None and config.timeout else None
        fut = loop.run_in_executor(None, call)
        try:
            return await asyncio.wait_for(fut, cap) if cap else await fut
        except TimeoutError as exc:
            raise LLMTimeoutError(f"no answer within {cap} s", provider=self.provider, model=self.model) from exc

    async def astream(self, prompt: Prompt, config: RunConfig | None = None) -> AsyncIterator[StreamChunk]:
        """Text deltas; the last chunk carries usage and finish_reason.

        The default for adapters without native streaming yields the whole answer as one delta (text, tool
        calls, reasoning), then the final chunk (usage None when the answer reported none; see
        :func:`~llm_connect._batches.answer_chunks`).
        """
        resp = await self.async_execute_prompt(prompt, config)
        for chunk in answer_chunks(resp):
            yield chunk

    def astream_batches(self, prompt: Prompt, config: RunConfig | None = None) -> AsyncIterator[list[StreamChunk]]:
        """The stream of :meth:`astream` a batch at a time: each list (never empty) holds the chunks one upstream
        read produced. The gateway and the wrapping adapters (Router, RoutingPolicy) consume this, so that a
        stream arriving in one read passes each layer once (llm_connect/_batches.py). The default batches
        :meth:`astream` one chunk per list; adapters that read a provider's stream override it."""
        return singles(self.astream(prompt, config))

    def stream(self, prompt: Prompt, config: RunConfig | None = None) -> Iterator[StreamChunk]:
        """Sync facade over :meth:`astream`; breaking out of the loop closes the stream."""
        return SyncRunner.shared().iterate(self.astream(prompt, config))

    # -- embeddings ---------------------------------------------------------------------------------
    async def aembed(
        self, texts: EmbeddingInput, config: RunConfig | None = None, *, dimensions: int | None = None
    ) -> EmbeddingResponse:
        """One vector per text (a string is one text). ``dimensions`` asks for shorter vectors where the model
        can make them. Adapters without an embedding API raise LLMCapabilityError."""
        raise LLMCapabilityError(
            f"{self.provider}:{self.model} cannot embed text (no embedding API)",
            provider=self.provider,
            model=self.model,
        )

    def embed(
        self, texts: EmbeddingInput, config: RunConfig | None = None, *, dimensions: int | None = None
    ) -> EmbeddingResponse:
        """Sync facade over :meth:`aembed` (safe from many threads; LLMUsageError inside a running loop)."""
        return SyncRunner.shared().run(self.aembed(texts, config, dimensions=dimensions))

    # -- seed 004 LLMBackend ------------------------------------------------------------------------
    async def generate(self, prompt: str) -> LLMResult:
        """One-shot generation capped at ``self.timeout``: raises LLMTimeout past it; empty output → success=False."""
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                resp = await self.async_execute_prompt(prompt, RunConfig(timeout=self.timeout))
        except TimeoutError as exc:
            raise LLMTimeoutError(
                f"no answer within {self.timeout} s", provider=self.provider, model=self.model
            ) from exc
        text = resp.text.strip()
        return LLMResult(
            success=bool(text),
            text=resp.text,
            model=resp.model or self.model,
            latency_ms=int((time.perf_counter() - start) * 1000),
            extra={
                "provider": resp.provider,
                "finish_reason": resp.finish_reason,
                "usage": resp.usage.to_dict(),
                "cost_usd": None if resp.cost_usd is None else str(resp.cost_usd),
                "request_id": resp.request_id,
            },
        )

    # -- lifecycle ----------------------------------------------------------------------------------
    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by this adapter (most adapters hold none of their own)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.provider}:{self.model}>"
