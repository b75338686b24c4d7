"""Serving one streamed call over SSE, whatever the protocol: the engine's chunks in, a protocol's events out.

Every streaming surface (Chat Completions, Anthropic Messages, the Responses API) runs :func:`serve_stream`
with its own :class:`StreamEncoder`. What they share lives here once:

* an error before the first chunk (a budget refusal, every deployment down) is a plain JSON error answer in
  the protocol's shape, not a stream;
* the response starts with the first chunk; a task watches for the client going away, and a hang-up cancels
  the upstream stream, which settles the budget and writes the ledger row on what was produced (status 499);
* an error after the start is the protocol's in-stream error event, then the body ends.

The engine's iterator is exhausted before the encoder's closing events are written: by then the call's usage
event is committed to the ledger.

Writes follow the upstream's reads: the events of every chunk that is ready without waiting (the chunks of one
upstream read) go out in one write, made before the stream next waits — not one write (a system call) per chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator
from decimal import Decimal
from typing import Any, Protocol

from ..types import StreamChunk, Usage
from .asgi import Request
from .engine import Engine, Prepared
from .errors import ApiError, log

__all__ = ["SSE", "StreamEncoder", "serve_stream", "sse_event"]

SSE = b"text/event-stream"


def sse_event(name: str, data: bytes) -> bytes:
    """One named SSE event (``event: <name>`` + ``data: <json>``)."""
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


class StreamEncoder(Protocol):
    """A protocol's SSE events for one streamed call. Each method returns the bytes to write (may be empty)."""

    def open(self, model: str, first: StreamChunk | None) -> bytes:
        """The events before any content (``model`` is what the first chunk, else the target, names)."""
        ...

    def chunk(self, chunk: StreamChunk) -> bytes:
        """The events of one chunk's deltas (the final chunk's usage is also passed to :meth:`close`)."""
        ...

    async def close(self, finish: str, usage: Usage, cost: Decimal | None) -> bytes:
        """The closing events, once the call is settled and its ledger row written."""
        ...

    def error(self, err: ApiError) -> bytes:
        """The in-stream error event of an error after the response started."""
        ...


async def serve_stream(
    engine: Engine,
    req: Request,
    prep: Prepared,
    encoder: StreamEncoder,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Run ``prep`` as a stream and write ``encoder``'s events to ``req`` (see the module docstring)."""
    gen = engine.stream(prep)
    first: StreamChunk | None
    try:
        first = await anext(gen)  # errors before the first chunk are plain JSON error responses
    except StopAsyncIteration:
        first = None
    except BaseException:
        await gen.aclose()
        raise
    model = (first.model if first and first.model else None) or prep.target.public
    await req.start_stream(200, SSE, [(b"x-llm-model", model.encode("latin-1", "replace")), *(headers or ())])
    pump = asyncio.ensure_future(_pump(req, gen, first, model, encoder))
    watcher = asyncio.ensure_future(req.wait_disconnect())
    try:
        await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not pump.done():  # the client went away: stop the upstream stream, settle on what was produced
            pump.cancel()
            req.status = 499
        with contextlib.suppress(BaseException):
            await pump
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher


async def _pump(
    req: Request, gen: AsyncIterator[StreamChunk], first: StreamChunk | None, model: str, out: StreamEncoder
) -> None:
    finish: str | None = None
    usage: Usage | None = None
    cost: Decimal | None = None
    #: events not written yet: written together before the stream next waits (see the module docstring)
    unsent: list[bytes] = []
    try:
        opening = out.open(model, first)
        if opening:
            unsent.append(opening)
        chunk = first
        while chunk is not None:
            data = out.chunk(chunk)
            if data:
                unsent.append(data)
            if chunk.finish_reason:
                finish = chunk.finish_reason
            if chunk.usage is not None:
                usage, cost = chunk.usage, chunk.cost_usd
            step = gen.__anext__()
            try:
                waiting = step.send(None)  # type: ignore[attr-defined]
            except StopIteration as ready:  # the next chunk was at hand
                chunk = ready.value
                continue
            except StopAsyncIteration:
                break
            if unsent:
                try:
                    await req.write(b"".join(unsent))
                except BaseException as exc:
                    # the step waits inside the engine's stream: end it as an interrupted await would have been
                    # (its clean-up awaited), so that the generator is not left running for aclose()
                    with contextlib.suppress(BaseException):
                        await _Resumed(step, waiting, exc)
                    raise
                unsent.clear()
            try:
                chunk = await _Resumed(step, waiting)
            except StopAsyncIteration:
                chunk = None
        # the generator is exhausted: the call's usage event is committed to the ledger
        unsent.append(await out.close(finish or "stop", usage or Usage(), cost))
        await req.write(b"".join(unsent), more=False)
    except Exception as exc:
        err = exc if isinstance(exc, ApiError) else ApiError(500, "internal error", "api_error", "internal_error")
        if not isinstance(exc, ApiError):
            log.error("stream %s failed: %s", req.request_id, type(exc).__name__, exc_info=exc)
        else:
            log.info("stream %s ended with %s: %s", req.request_id, err.code, err.message)
        await req.write(b"".join((*unsent, out.error(err))), more=True)
        await req.write(b"", more=False)
    finally:
        await gen.aclose()  # type: ignore[attr-defined]


class _Resumed:
    """Awaiting it finishes an awaitable that was stepped once by hand (``send(None)``) and is waiting on
    ``waiting``: what ``await`` would have done from the start (sends, throws — a cancellation — and close
    passed through), so the first step can tell whether the awaitable had its result at hand. With ``throw``,
    that exception is raised into the awaitable first (it was interrupted while waiting)."""

    __slots__ = ("step", "throw", "waiting")

    def __init__(self, step: Any, waiting: Any, throw: BaseException | None = None) -> None:
        self.step = step
        self.waiting = waiting
        self.throw = throw

    def __await__(self) -> Generator[Any, Any, Any]:
        step, waiting = self.step, self.waiting
        if self.throw is not None:
            try:
                waiting = step.throw(self.throw)
            except StopIteration as done:
                return done.value
        while True:
            try:
                sent = yield waiting
            except GeneratorExit:
                step.close()
                raise
            except BaseException as exc:  # a cancellation of the task: into the awaitable, as await does
                try:
                    waiting = step.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting = step.send(sent)
                except StopIteration as done:
                    return done.value
