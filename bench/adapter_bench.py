"""Per-call adapter overhead against an instant upstream, beside a raw aiohttp call in the same run.

Prints sequential µs per call (median of rounds) and calls/s with 32 in flight, for:
  raw      — aiohttp ClientSession.post + orjson.loads (the floor)
  adapter  — create_adapter("openai:…").async_execute_prompt (codec, transport, usage, pricing)
  +budget  — the same with a BudgetTracker (reserve → settle)
Also `import llm_connect` time. Target: adapter ≤ 1.5× raw.

    python bench/adapter_bench.py [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import aiohttp
import orjson

UPSTREAM = r"""
import sys, orjson
from aiohttp import web
BODY = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})
async def h(request):
    await request.read()
    return web.Response(body=BODY, content_type="application/json")
app = web.Application(); app.router.add_post("/v1/chat/completions", h)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(100):
            try:
                async with s.post(url, data=b"{}") as r:
                    await r.read()
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    raise SystemExit("upstream did not start")


async def measure(call, calls: int, rounds: int) -> tuple[float, float]:
    for _ in range(200):  # warm-up
        await call()
    seq = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            await call()
        seq.append((time.perf_counter() - t) / calls * 1e6)
    rps = []
    sem = asyncio.Semaphore(32)

    async def one():
        async with sem:
            await call()

    for _ in range(rounds):
        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(calls)))
        rps.append(calls / (time.perf_counter() - t))
    return statistics.median(seq), statistics.median(rps)


async def main(calls: int, rounds: int) -> None:
    from decimal import Decimal  # noqa: F401

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(port)])
    try:
        base = f"http://127.0.0.1:{port}/v1"
        await wait_up(base + "/chat/completions")
        from llm_connect import RunConfig, create_adapter
        from llm_connect.budget import BudgetTracker

        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        session = aiohttp.ClientSession()

        async def raw():
            async with session.post(
                base + "/chat/completions",
                data=orjson.dumps(body),
                headers={"Content-Type": "application/json", "Authorization": "Bearer k"},
            ) as r:
                orjson.loads(await r.read())

        adapter = create_adapter("openai:gpt-4o-mini", api_base=base, api_key="k")
        cfg = RunConfig(max_tokens=8)

        async def ours():
            await adapter.async_execute_prompt("hi", cfg)

        tracker = BudgetTracker(total=10**12)
        bcfg = RunConfig(max_tokens=8, budget_tracker=tracker)

        async def budgeted():
            await adapter.async_execute_prompt("hi", bcfg)

        rows = []
        for name, fn in (("raw aiohttp", raw), ("adapter", ours), ("adapter+budget", budgeted)):
            us, rps = await measure(fn, calls, rounds)
            rows.append((name, us, rps))
        await session.close()
    finally:
        proc.terminate()
        proc.wait()

    raw_us, raw_rps = rows[0][1], rows[0][2]
    print(f"{'path':<16}{'µs/call (seq)':>16}{'× raw':>8}{'calls/s @32':>14}{'× raw':>8}")
    for name, us, rps in rows:
        print(f"{name:<16}{us:>16.1f}{us / raw_us:>8.2f}{rps:>14.0f}{rps / raw_rps:>8.2f}")

    out = (
        subprocess.run([sys.executable, "-X", "importtime", "-c", "import llm_connect"], capture_output=True, text=True)
        .stderr.strip()
        .splitlines()
    )
    total_us = int(out[-1].split("|")[1])
    print(f"import llm_connect: {total_us / 1000:.1f} ms (cumulative, -X importtime)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    asyncio.run(main(a.calls, a.rounds))
