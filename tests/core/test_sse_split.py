"""The transport's SSE splitter reads the body block by block: events cut anywhere between reads (mid-line,
between CR and LF, several in one read) come out whole and in order, over a real loopback connection."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from llm_connect.transport import iter_sse, iter_sse_batches

EVENTS = [
    (None, {"n": 1, "text": "héllo"}),
    ("message_delta", {"n": 2, "usage": {"output_tokens": 3}}),
    (None, {"n": 3, "multi": True}),
    (None, {"__done__": True}),
]
BODY = (
    b'data: {"n":1,"text":"h\xc3\xa9llo"}\n\n'
    b": a comment\r\n"
    b'event: message_delta\r\ndata: {"n":2,"usage":{"output_tokens":3}}\r\n\r\n'
    b'data: {"n":3,\ndata: "multi":true}\n\n'
    b"data: [DONE]\n\n"
)


async def _events(pieces: list[bytes]) -> list[tuple[str | None, object]]:
    return await _read(pieces, lambda content: _all(iter_sse(content)))


async def _all(items: Any) -> list[Any]:
    return [item async for item in items]


async def _batches_until_failure(content: aiohttp.StreamReader) -> tuple[list[Any], BaseException | None]:
    got = []
    try:
        async for batch in iter_sse_batches(content):
            got.append(batch)
    except ValueError as exc:
        return got, exc
    return got, None


async def _read(pieces: list[bytes], read: Callable[[aiohttp.StreamReader], Awaitable[Any]]) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in pieces:
            await resp.write(piece)
            await asyncio.sleep(0.005)  # each piece its own read on the client side
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{port}/") as r:
            return await read(r.content)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "cuts",
    [
        [],  # the whole body in one read
        [1, 7, 30],  # inside "data:" and inside the JSON
        [BODY.index(b"\r\n") + 1],  # between a CR and its LF
        list(range(3, len(BODY), 11)),  # many small reads
        [BODY.index(b"\n\n") + 1],  # between the two LFs that end an event
    ],
)
async def test_events_cut_anywhere_come_out_whole(cuts: list[int]) -> None:
    bounds = [0, *cuts, len(BODY)]
    pieces = [BODY[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    assert await _events(pieces) == EVENTS


async def test_a_body_without_its_final_line_break() -> None:
    assert await _events([b'data: {"a":1}\n\ndata: {"b":2}']) == [(None, {"a": 1}), (None, {"b": 2})]


async def test_data_that_is_not_json_raises() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        await _events([b"data: {not json\n\n"])


async def test_a_line_longer_than_the_limit_raises(monkeypatch) -> None:
    import llm_connect.transport as transport

    monkeypatch.setattr(transport, "MAX_SSE_LINE", 1000)
    assert await _events([b'data: {"a":"' + b"x" * 900 + b'"}\n\n']) == [(None, {"a": "x" * 900})]
    with pytest.raises(ValueError, match="longer than 1000"):
        await _events([b'data: {"a":"', b"x" * 600, b"x" * 600, b'"}\n\n'])


async def test_the_events_of_a_read_before_data_that_is_not_json_are_handed_on_first() -> None:
    got, failure = await _read([b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: {not json\n\n'], _batches_until_failure)
    assert got == [[(None, {"a": 1}), (None, {"b": 2})]]  # one read, one batch: then the error
    assert isinstance(failure, orjson.JSONDecodeError)
