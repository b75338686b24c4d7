"""HTTP transport: one shared aiohttp ClientSession per event loop (keep-alive pool), injectable.

Adapters never open their own sessions; they ask a :class:`Transport` for the session bound to the
running loop. The transport knows nothing of providers: it posts JSON and splits streamed bodies into
events (SSE, NDJSON or the AWS event stream). Mapping network failures to LLMError happens in the adapter, once.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from ._batches import flatten, singles
from .wire.eventstream import EventStreamDecoder

__all__ = [
    "HTTPReply",
    "StreamReply",
    "Transport",
    "iter_eventstream",
    "iter_eventstream_batches",
    "iter_ndjson",
    "iter_sse",
    "iter_sse_batches",
]

_DONE = {"__done__": True}
#: the longest line of an SSE body accepted (a provider's whole reply, images included, fits many times over)
MAX_SSE_LINE = 64 * 1024 * 1024


@dataclass(slots=True)
class HTTPReply:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(slots=True)
class StreamReply:
    """An open streamed response. ``events`` yields (event name or None, parsed JSON data)."""

    status: int
    headers: Mapping[str, str]
    response: aiohttp.ClientResponse
    framing: str

    async def read_body(self) -> bytes:
        return await self.response.read()

    def events(self) -> AsyncIterator[tuple[str | None, Any]]:
        """The events one by one (:meth:`batches` flattened)."""
        return flatten(self.batches())

    def batches(self) -> AsyncIterator[list[tuple[str | None, Any]]]:
        """The events a block at a time: each list holds the events one upstream read completed (SSE, the AWS
        event stream), so a stream that arrives in one read resumes its consumer once, not once per event.
        NDJSON is read line by line: one event per list."""
        if self.framing == "ndjson":
            return singles(iter_ndjson(self.response.content))
        if self.framing == "eventstream":
            return iter_eventstream_batches(self.response.content)
        return iter_sse_batches(self.response.content)


def iter_sse(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str | None, Any]]:
    """Split a text/event-stream body into (event, data) pairs; data is parsed JSON (see :func:`iter_sse_batches`)."""
    return flatten(iter_sse_batches(content))


def iter_sse_batches(content: aiohttp.StreamReader) -> AsyncIterator[list[tuple[str | None, Any]]]:
    """Split a text/event-stream body into (event, data) pairs, a list per upstream read; data is parsed JSON.

    ``data: [DONE]`` (OpenAI's sentinel) is passed on as ``{"__done__": True}``. Data that is not JSON
    raises ValueError, which the adapter maps to a provider error. Lines end at LF (a CR before it is dropped).

    The body is read as it arrives, block by block, and each block split at once: the events one read completes
    are handed on together (a read that completes none yields nothing), without another read. The events of a
    block that are one ``data: {...}`` line each (OpenAI's, nearly every event of a stream) are cut at their
    blank lines and parsed as they are; any other event goes through the line-by-line reader.
    """
    return _SSEBatches(content)


class _SSEBatches:
    """The iterator of :func:`iter_sse_batches` (a class, not an async generator: no registration with the loop
    and no finaliser per stream)."""

    __slots__ = ("content", "ended", "failure", "pending", "state", "unfinished")

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self.content = content
        self.state = _SSEState()
        #: the pieces of a line that a later block completes (joined once, when its LF arrives)
        self.unfinished: list[bytes] = []
        self.pending = 0
        self.ended = False
        #: data that is not JSON, raised once the events before it in its block are handed on
        self.failure: ValueError | None = None

    def __aiter__(self) -> _SSEBatches:
        return self

    async def aclose(self) -> None:
        """Stop: nothing more is read (the body belongs to the response, which its owner releases)."""
        self.ended, self.failure, self.unfinished = True, None, []
        self.state = _SSEState()

    async def __anext__(self) -> list[tuple[str | None, Any]]:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        while not self.ended:
            block = await self.content.readany()
            if not block:
                self.ended = True
                break
            if b"\n" not in block:
                self.unfinished.append(block)
                self.pending += len(block)
                if self.pending > MAX_SSE_LINE:
                    raise ValueError(f"an SSE line longer than {MAX_SSE_LINE} bytes")
                continue
            if self.unfinished:
                self.unfinished.append(block)
                block = b"".join(self.unfinished)
            out: list[tuple[str | None, Any]] = []
            try:
                self._split(block, out)
            except ValueError as exc:
                if not out:
                    raise
                self.ended, self.failure = True, exc
            if out:
                return out
        # the body has ended: a last line without its line break, an event without its blank line
        out = []
        if self.unfinished:
            self.state.lines([b"".join(self.unfinished)], out)
            self.unfinished = []
        if self.state.data:
            self.state.lines([b""], out)
        if out:
            return out
        raise StopAsyncIteration

    def _split(self, block: bytes, out: list[tuple[str | None, Any]]) -> None:
        """The events ``block`` (with an LF in it) completes, onto ``out``; what follows its last LF is kept."""
        state = self.state
        if not state.data and state.event is None and b"\r" not in block:
            end = block.rfind(b"\n\n")
            if end >= 0:  # whole events: one data line each, or else line by line
                loads = orjson.loads
                for piece in block[:end].split(b"\n\n"):
                    if piece.startswith(b"data: {") and b"\n" not in piece:
                        out.append((None, loads(piece[6:])))
                    else:
                        state.lines([*piece.split(b"\n"), b""], out)
                block = block[end + 2 :]
        lines = block.split(b"\n")
        last = lines.pop()  # b"" after a final LF
        self.unfinished, self.pending = ([last], len(last)) if last else ([], 0)
        if lines:
            state.lines(lines, out)


class _SSEState:
    """The line-by-line SSE reader: the event name and data lines of the event being read."""

    __slots__ = ("data", "event")

    def __init__(self) -> None:
        self.event: str | None = None
        self.data: list[bytes] = []

    def lines(self, lines: list[bytes], out: list[tuple[str | None, Any]]) -> None:
        """Read ``lines`` (without their LF); each event a blank line completes is appended to ``out``."""
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line:
                data = self.data
                if data:
                    payload = b"\n".join(data) if len(data) > 1 else data[0]
                    out.append((self.event, _DONE if payload == b"[DONE]" else orjson.loads(payload)))
                self.event, self.data = None, []
            elif line.startswith(b"data:"):
                self.data.append(line[5:].lstrip(b" ") if len(line) > 5 else b"")
            elif line.startswith(b"event:"):
                self.event = line[6:].strip().decode()
            # comments (":") and other fields (id:, retry:) are ignored


async def iter_ndjson(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str | None, Any]]:
    """Split a newline-delimited JSON body into (None, object) pairs."""
    async for raw in content:
        line = raw.strip()
        if line:
            yield None, orjson.loads(line)


def iter_eventstream(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str | None, Any]]:
    """Split an AWS event stream (``application/vnd.amazon.eventstream``, Bedrock's ConverseStream) into
    (``:event-type``, parsed JSON payload) pairs (see :func:`iter_eventstream_batches`)."""
    return flatten(iter_eventstream_batches(content))


async def iter_eventstream_batches(content: aiohttp.StreamReader) -> AsyncIterator[list[tuple[str | None, Any]]]:
    """Split an AWS event stream (``application/vnd.amazon.eventstream``, Bedrock's ConverseStream) into
    (``:event-type``, parsed JSON payload) pairs, a list per upstream read, CRC-checked as the bytes arrive. An
    exception message is ``("exception", {"__type": <:exception-type>, **payload})``, an error message
    ``("exception", {"__type": <:error-code>, "message": <:error-message>})``. A corrupted or cut message raises
    :class:`~llm_connect.wire.eventstream.EventStreamError` (a ValueError), which the adapter maps."""
    decoder = EventStreamDecoder()
    async for data in content.iter_any():
        out: list[tuple[str | None, Any]] = []
        for message in decoder.feed(data):
            kind = message.message_type
            payload = orjson.loads(message.payload) if message.payload else {}
            if kind == "event":
                out.append((message.header(":event-type"), payload))
            elif kind == "exception":
                body = payload if isinstance(payload, dict) else {"message": str(payload)}
                out.append(("exception", {**body, "__type": message.header(":exception-type") or ""}))
            elif kind == "error":
                code, text = message.header(":error-code") or "", message.header(":error-message") or ""
                out.append(("exception", {"__type": code, "message": text}))
        if out:
            yield out
    decoder.close()


class _Streaming:
    """The context manager of :meth:`Transport.stream` (a class: an async generator would also be registered
    with the loop and finalised, on every stream)."""

    __slots__ = ("_framing", "_request")

    def __init__(self, request: Any, framing: str) -> None:
        self._request = request
        self._framing = framing

    async def __aenter__(self) -> StreamReply:
        resp = await self._request.__aenter__()
        return StreamReply(resp.status, resp.headers, resp, self._framing)

    async def __aexit__(self, *exc: Any) -> None:
        await self._request.__aexit__(*exc)


def _default_session(limit: int, connect_timeout: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        # provider calls carry their credentials in headers; a shared jar would replay one caller's cookies
        # (a provider's load-balancer or bot-check cookie) on every tenant's requests, and costs a look-up per call
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
        json_serialize=lambda o: orjson.dumps(o).decode(),
        skip_auto_headers=("User-Agent",),
        headers={"User-Agent": "llm-connect"},
    )


class Transport:
    """Hands out one ClientSession per event loop; closes them on :meth:`aclose`.

    ``session_factory`` lets tests or users inject their own session (proxies, TLS, tracing).
    """

    def __init__(
        self,
        *,
        limit: int = 512,
        connect_timeout: float = 10.0,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        self._factory = session_factory or functools.partial(_default_session, limit, connect_timeout)
        # loop -> session. A session holds its loop, so neither is ever garbage: sessions of loops that
        # have closed (a user's asyncio.run() that never called aclose()) are dropped whenever a new one
        # is made, so repeated asyncio.run() calls do not pile up sessions and sockets.
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._closers: dict[asyncio.AbstractEventLoop, AsyncIterator[None]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        atexit.register(self._drop_dead)  # the last asyncio.run()'s session, quietly, at exit

    @classmethod
    @functools.cache
    def default(cls) -> Transport:
        """The process-wide transport used when none is injected."""
        return cls()

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        s = self._sessions.get(loop)
        if s is None or s.closed:
            with self._lock:
                if self._pid != os.getpid():  # a forked child: the parent's sockets are not ours
                    self._sessions, self._closers, self._pid = {}, {}, os.getpid()
                s = self._sessions.get(loop)
                if s is None or s.closed:
                    self._drop_dead()
                    s = self._factory()
                    self._sessions[loop] = s
                    self._close_with_loop(loop, s)
        return s

    def _close_with_loop(self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
        """Close ``session`` properly when its loop shuts down: asyncio.run() closes every live async
        generator before it closes the loop, so a parked generator's ``finally`` runs on the live loop."""

        async def closer() -> AsyncIterator[None]:
            try:
                yield
            finally:
                if self._sessions.get(loop) is session:
                    del self._sessions[loop]
                await session.close()

        agen = closer()
        self._closers[loop] = agen  # a strong reference: the generator must outlive this call
        loop.create_task(anext(agen))  # starts it (registering it with the loop) and parks it at ``yield``

    def _drop_dead(self) -> None:
        """Forget the sessions of closed loops (their sockets died with the loop)."""
        for loop in [lp for lp in self._closers if lp.is_closed()]:
            self._closers.pop(loop, None)
        for loop in [lp for lp in self._sessions if lp.is_closed()]:
            s = self._sessions.pop(loop)
            if not s.closed:  # its loop is gone and its sockets with it: close without awaiting
                connector = s.connector
                if connector is not None:
                    connector._close()  # the synchronous part of BaseConnector.close()
                s.detach()

    async def post(
        self,
        url: str | URL,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> HTTPReply:
        """POST ``body`` as JSON (bytes are sent as they are: a body already serialised, e.g. to be signed)."""
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        async with self.session().post(url, data=data, headers=hdrs, params=params) as resp:
            payload = await resp.read()
            return HTTPReply(resp.status, resp.headers, payload)

    def stream(
        self,
        url: str | URL,
        body: Any,
        *,
        framing: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> AbstractAsyncContextManager[StreamReply]:
        """``async with transport.stream(...) as reply``: POST ``body`` as JSON and read the reply as it comes
        (:meth:`StreamReply.batches`); leaving the block releases the connection."""
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        return _Streaming(self.session().post(url, data=data, headers=hdrs, params=params), framing)

    async def aclose(self) -> None:
        """Close the session of the running loop (call from each loop that used this transport)."""
        s = self._sessions.pop(asyncio.get_running_loop(), None)
        if s is not None and not s.closed:
            await s.close()
