"""How a stream reaches the client: the events of chunks at hand leave in one write, and a hang-up — while a
write is blocked (the client stopped reading) or while the upstream is awaited — still ends the upstream stream
and settles it: one ledger row, the request counted as a 499.

The gateway app is driven over ASGI in this process (the test plays the server: it sees every write), against
the shipped mock server over loopback."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import yaml

from llm_connect.server.app import create_app
from llm_connect.testing import MockReply

from .conftest import ACME_KEY, base_config

MSG = [{"role": "user", "content": "hello there"}]


def _app(mock: Any, tmp_path: Path) -> Any:
    cfg = base_config(mock, tmp_path)
    cfg["router"]["groups"]["solo"] = [{"model": "openai:solo", "name": "solo-openai"}]
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return create_app(path)


def _scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {ACME_KEY}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 9999),
    }


def _row(db: Path, agent: str) -> tuple[Any, ...] | None:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT output_tokens, streamed FROM llm_usage WHERE agent = ?", (agent,)).fetchone()
    finally:
        conn.close()


async def _slow_stream(mock: Any, tmp_path: Path, kind: str) -> tuple[Any, bytes, str]:
    """A started app whose upstream streams 40 words a frame every 50 ms (2 s), the request's body and its agent tag."""
    import orjson

    tag = f"{kind}-{time.time_ns()}"
    mock.script(MockReply(model="solo", text=" ".join(f"w{i}" for i in range(40)), chunk_delay=0.05))
    app = _app(mock, tmp_path)
    await app.startup()
    body = orjson.dumps({"model": "solo", "messages": MSG, "stream": True, "agent": tag, "max_tokens": 300})
    return app, body, tag


def _hanging_up(body: bytes, gone: Any) -> Any:
    """An ASGI receive: the request's body, then a disconnect once ``gone()`` returns."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone()
        return {"type": "http.disconnect"}

    return receive


async def test_chunks_at_hand_leave_in_one_write(mock, tmp_path) -> None:
    import orjson

    text = " ".join(f"w{i}" for i in range(30))
    mock.script(MockReply(model="solo", text=text))  # every frame in one go: one upstream read or a few
    app = _app(mock, tmp_path)
    await app.startup()
    body = orjson.dumps({"model": "solo", "messages": MSG, "stream": True, "agent": "one-write"})
    writes: list[bytes] = []
    receive = _hanging_up(body, asyncio.Event().wait)  # the client stays

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.body" and msg.get("body"):
            writes.append(msg["body"])

    try:
        await app(_scope(body), receive, send)
    finally:
        await app.engine.aclose()
    events = b"".join(writes).split(b"\n\n")
    contents = [e for e in events if b'"content":"' in e and b'"content":""' not in e]
    assert b"".join(writes).endswith(b"data: [DONE]\n\n")
    relayed = b"".join(orjson.loads(e[6:])["choices"][0]["delta"]["content"].encode() for e in contents)
    assert relayed.decode() == text  # every chunk relayed, in order
    assert len(contents) > 10
    assert len(writes) < len(contents) / 2  # ... in far fewer writes than events


async def test_a_hang_up_during_a_blocked_write_settles_the_stream(mock, tmp_path) -> None:
    app, body, tag = await _slow_stream(mock, tmp_path, "blocked")
    writes = 0
    blocked = asyncio.Event()

    async def stop_reading_then_hang_up() -> None:
        await blocked.wait()
        await asyncio.sleep(0.2)

    receive = _hanging_up(body, stop_reading_then_hang_up)

    async def send(msg: dict[str, Any]) -> None:
        nonlocal writes
        if msg["type"] == "http.response.body" and msg.get("body"):
            writes += 1
            if writes == 2:  # a full socket buffer: the server's send waits for the client to read
                blocked.set()
                await asyncio.Event().wait()

    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(app(_scope(body), receive, send), 10)
        row = None
        while row is None and time.perf_counter() - t0 < 5:
            row = _row(tmp_path / "usage.sqlite3", tag)
            await asyncio.sleep(0.05)
    finally:
        await app.engine.aclose()
    assert row is not None, "no usage event for the stream cut during a write"
    output_tokens, streamed = row
    assert streamed == 1 and 0 < output_tokens < 40  # billed what was produced, not the whole answer
    assert time.perf_counter() - t0 < 5  # the upstream stream was stopped, not read to its end (2 s)


async def test_a_hang_up_while_the_upstream_is_awaited_is_a_499_with_one_ledger_row(mock, tmp_path) -> None:
    app, body, tag = await _slow_stream(mock, tmp_path, "gone")
    wrote = asyncio.Event()
    receive = _hanging_up(body, wrote.wait)  # the client reads the first events, then goes away mid-stream

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.body" and msg.get("body"):
            wrote.set()

    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(app(_scope(body), receive, send), 10)
        db = tmp_path / "usage.sqlite3"
        conn = sqlite3.connect(db)
        try:
            rows = conn.execute("SELECT output_tokens, streamed, estimated FROM llm_usage WHERE agent = ?", (tag,))
            rows = rows.fetchall()
        finally:
            conn.close()
        metrics = app.engine.metrics
        assert metrics is not None
        gone = metrics.registry.get_sample_value(
            "llm_gateway_requests_total", {"route": "/v1/chat/completions", "status": "499"}
        )
    finally:
        await app.engine.aclose()
    assert gone == 1
    assert len(rows) == 1, "exactly one ledger row for the stream the client left"
    output_tokens, streamed, estimated = rows[0]
    assert streamed == 1 and estimated == 1 and 0 < output_tokens < 40  # billed what was produced
    assert time.perf_counter() - t0 < 1.5  # the upstream stream was stopped, not read to its end (2 s)
