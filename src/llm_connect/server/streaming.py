"""Serving one streamed call over SSE, whatever the protocol: the engine's chunks in, a protocol's events out.

Every streaming surface (Chat Completions, Anthropic Messages, the Responses API) runs :func:`serve_stream`
with its own :class:`StreamEncoder`. What they share lives here once:

* an error before the first chunk (a budget refusal, every deployment down) is a plain JSON error answer in
  the protocol's shape, not a stream;
* the response starts with the first chunk; once the stream has run :data:`WATCH_AFTER` seconds a task watches
  for the client going away (before that a timer is all it costs), and a hang-up cancels the upstream stream,
  which settles the budget and writes the ledger row on what was produced (status 499);
* an error after the start is the protocol's in-stream error event, then the body ends.

The engine's iterator is exhausted before the encoder's closing events are written: by then the call's usage
event is committed to the ledger.

Writes follow the upstream's reads: the engine's stream comes a batch per upstream read (llm_connect/_batches.py),
and the events of one batch go out in one write — not one write (a system call) per chunk. The batch with the
final chunk (usage, cost) is written with the closing events, once the stream is over: a stream that arrives in
one upstream read is one write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Protocol

from ..types import StreamChunk, Usage
from .asgi import Request
from .engine import Engine, Prepared
from .errors import ApiError, log

__all__ = ["SSE", "StreamEncoder", "serve_stream", "sse_event"]

SSE = b"text/event-stream"

#: seconds a stream runs before a task starts watching for the client going away (Request.unless_gone): most
#: streams through a gateway end within it, and a timer costs far less than a task per stream
WATCH_AFTER = 0.1


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
    first: list[StreamChunk]
    try:
        first = await anext(gen)  # errors before the first chunk are plain JSON error responses
    except StopAsyncIteration:
        first = []
    except BaseException:
        await gen.aclose()  # type: ignore[attr-defined]
        raise
    head = first[0] if first else None
    model = (head.model if head and head.model else None) or prep.target.public
    await req.start_stream(200, SSE, [(b"x-llm-model", model.encode("latin-1", "replace")), *(headers or ())])
    # the client going away cancels the pump (ClientGone, 499): its clean-up closes the engine's stream, which
    # settles on what was produced
    await req.unless_gone(_pump(req, gen, first, model, encoder), watch_after=WATCH_AFTER)


async def _pump(
    req: Request, gen: AsyncIterator[list[StreamChunk]], first: list[StreamChunk], model: str, out: StreamEncoder
) -> None:
    finish: str | None = None
    usage: Usage | None = None
    cost: Decimal | None = None
    #: events not written yet: one write per batch, and none between the final chunk and the closing events
    unsent: list[bytes] = []
    try:
        opening = out.open(model, first[0] if first else None)
        if opening:
            unsent.append(opening)
        batch = first
        while True:
            for chunk in batch:
                data = out.chunk(chunk)
                if data:
                    unsent.append(data)
                if chunk.finish_reason:
                    finish = chunk.finish_reason
                if chunk.usage is not None:
                    usage, cost = chunk.usage, chunk.cost_usd
            if usage is None and unsent:  # more is to come: what this batch brought goes out before waiting
                await req.write(b"".join(unsent))
                unsent.clear()
            try:
                batch = await anext(gen)
            except StopAsyncIteration:
                break
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
