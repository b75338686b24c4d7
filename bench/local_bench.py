"""Tokens/s of the ``local`` provider vs raw llama-cpp-python, in one run, on the same loaded model.

    python bench/local_bench.py [--rounds 7] [--max-tokens 128] [--threads N] [--model smollm2-135m|gemma3-270m|PATH]

Each round runs, in alternating order, the same greedy prompt four ways:

* raw      ``Llama.create_completion(prompt)`` in the calling thread
* raw-s    ``Llama.create_completion(prompt, stream=True)``, iterating the chunks
* adapter  ``await LocalAdapter.async_execute_prompt(...)`` (worker thread, full pipeline)
* adapter-s ``async for chunk in LocalAdapter.astream(...)`` (worker thread → asyncio.Queue)
* sync-s   ``for chunk in LocalAdapter.stream(...)`` from a plain thread (informational, no target)

Raw calls use the adapter's own ``Llama`` object (same weights, context and threads) and ``reset()`` it
first, because the adapter evaluates every prompt from scratch; so both sides do the same work.
Tokens/s = output tokens / wall time of the call (prompt evaluation included). Within a round each pair
runs A-B-B-A; the verdict is the median over rounds of adapter/raw (target: >= 95 %), which stays
steady when other processes load the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

from llm_connect import RunConfig
from llm_connect.providers.local import LocalAdapter
from llm_connect.types import normalize_messages

PROMPT = "Write one sentence about the sea."


def raw_call(llm, prompt: str, stops: list[str], max_tokens: int, stream: bool) -> tuple[int, float]:
    llm.reset()
    start = time.perf_counter()
    if stream:
        n_text = 0
        for chunk in llm.create_completion(prompt, max_tokens=max_tokens, temperature=0, stop=stops, stream=True):
            n_text += len(chunk["choices"][0]["text"])
        elapsed = time.perf_counter() - start
        # the raw stream reports no usage: count the tokens the same greedy call produces
        llm.reset()
        out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0, stop=stops)
        return out["usage"]["completion_tokens"], elapsed
    out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0, stop=stops)
    return out["usage"]["completion_tokens"], time.perf_counter() - start


async def adapter_call(adapter: LocalAdapter, max_tokens: int, stream: bool) -> tuple[int, float]:
    cfg = RunConfig(max_tokens=max_tokens, temperature=0)
    start = time.perf_counter()
    if stream:
        last = None
        async for chunk in adapter.astream(PROMPT, cfg):
            last = chunk
        assert last is not None and last.usage is not None
        return last.usage.output_tokens, time.perf_counter() - start
    resp = await adapter.async_execute_prompt(PROMPT, cfg)
    return resp.usage.output_tokens, time.perf_counter() - start


def sync_stream_call(adapter: LocalAdapter, max_tokens: int) -> tuple[int, float]:
    """The sync facade's stream, driven from a plain thread (the way scripts use it)."""
    cfg = RunConfig(max_tokens=max_tokens, temperature=0)
    start = time.perf_counter()
    chunks = list(adapter.stream(PROMPT, cfg))
    usage = chunks[-1].usage
    assert usage is not None
    return usage.output_tokens, time.perf_counter() - start


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: os.cpu_count())")
    ap.add_argument("--model", default="", help="packaged model name or GGUF path (default: the packaged default)")
    args = ap.parse_args()

    adapter = LocalAdapter(args.model, n_threads=args.threads)
    await adapter.async_execute_prompt("Hi.", RunConfig(max_tokens=4, temperature=0))  # load + warm up
    llm = adapter.engine.llama
    prompt, _, stops = adapter.render_prompt(normalize_messages(PROMPT))

    modes = ("raw", "adapter", "raw-s", "adapter-s", "sync-s")
    rates: dict[str, list[float]] = {m: [] for m in modes}
    ratios: dict[str, list[float]] = {"complete": [], "stream": []}
    for _ in range(args.rounds):
        got: dict[str, list[float]] = {m: [] for m in modes}
        # ABBA order inside each pair, so drift in machine load hits both sides alike
        for mode in ("raw", "adapter", "adapter", "raw", "raw-s", "adapter-s", "adapter-s", "raw-s", "sync-s"):
            if mode.startswith("raw"):
                n, dt = raw_call(llm, prompt, stops, args.max_tokens, mode == "raw-s")
            elif mode == "sync-s":
                n, dt = await asyncio.to_thread(sync_stream_call, adapter, args.max_tokens)
            else:
                n, dt = await adapter_call(adapter, args.max_tokens, mode == "adapter-s")
            got[mode].append(n / dt)
        for m in modes:
            rates[m].extend(got[m])
        ratios["complete"].append(statistics.mean(got["adapter"]) / statistics.mean(got["raw"]))
        ratios["stream"].append(statistics.mean(got["adapter-s"]) / statistics.mean(got["raw-s"]))

    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"model {adapter.model} ({adapter.path.name}), n_threads {adapter.n_threads} of {os.cpu_count()} cpus, "
        f"max_tokens {args.max_tokens}, {args.rounds} rounds, load avg {os.getloadavg()[0]:.2f}"
    )
    for k, v in rates.items():
        print(f"  {k:<10} median {med[k]:7.1f} tok/s   (min {min(v):6.1f}, max {max(v):6.1f}, n={len(v)})")
    ratio = statistics.median(ratios["complete"])
    ratio_s = statistics.median(ratios["stream"])
    of_med = med["adapter"] / med["raw"]
    of_med_s = med["adapter-s"] / med["raw-s"]
    print(f"  adapter / raw                median of per-round ratios {ratio:6.1%}  (ratio of medians {of_med:6.1%})")
    print(
        f"  adapter stream / raw stream  median of per-round ratios {ratio_s:6.1%}  (ratio of medians {of_med_s:6.1%})"
    )
    ok = ratio >= 0.95 and ratio_s >= 0.95
    print("PASS (>= 95 %)" if ok else "BELOW 95 %")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
