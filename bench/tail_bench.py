"""The latency tail at one connection: the gateway's slow sequential requests, and what they overlap.

The floor proxy (gateway_bench.FLOOR) and the gateway (gateway_bench.gateway_config: auth, a tenant token + USD
budget, rpm/tpm limits, routing, pricing, the SQLite ledger) run side by side against an instant upstream (nginx
when installed); each round sends ``--seq`` sequential requests over one keep-alive connection to the floor, then
to the gateway. Printed: p50 / p90 / p99 / p99.9 of both (medians over the rounds) and their ratios.

The gateway runs under uvicorn as ``serve()`` runs it, with probes that only take timestamps (perf_counter:
CLOCK_MONOTONIC, the client's clock too) of what may hold its threads: the ledger writer's commits and its upkeep
after a batch (the WAL checkpoint), the cyclic collector's passes (``gc.callbacks``), the key ring's poll and
last-use flush, and each call's two thread hand-offs (queued → the writer starts its commit; the writer answers →
the event loop runs the answer). For each kind: the share of all requests and of the slow ones (above the
gateway's p99) whose time overlaps one (the same share among both: a bystander; far more among the slow: a cause).

With ``--ref REV`` a second gateway runs git revision REV's ``src/`` (exported to a temporary directory) beside
the working tree's, measured in the same rounds (its probes are not reported).

    python bench/tail_bench.py [--seq 3000] [--rounds 3] [--ref main] [--upstream auto|nginx|python]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_bench import BODY, KEY, ROOT, Proc, free_port, gateway_config, start_floor, start_upstream
from hotpath_profile import export_tree

#: the gateway under uvicorn, with timestamp probes; the marks are written to $TAIL_MARKS at shutdown
PROBED = r"""
import gc, os, sys, time
import orjson
marks = []
clock = time.perf_counter
gc_start = [0.0]

def on_gc(phase, info):
    if phase == "start":
        gc_start[0] = clock()
    else:
        marks.append(("gc%d" % info["generation"], gc_start[0], clock()))

gc.callbacks.append(on_gc)

def probe(owner, name, kind, keep=lambda result, dt: True):
    orig = getattr(owner, name, None)
    if orig is None:
        return
    if asyncio_iscoro(orig):
        async def wrapped(*a, **k):
            t0 = clock()
            r = await orig(*a, **k)
            marks.append((kind, t0, clock()))
            return r
    else:
        def wrapped(*a, **k):
            t0 = clock()
            r = orig(*a, **k)
            t1 = clock()
            if keep(r, t1 - t0):
                marks.append((kind, t0, t1))
            return r
    setattr(owner, name, wrapped)

from inspect import iscoroutinefunction as asyncio_iscoro
from llm_connect.usage import _writer, ledger
from llm_connect.server import keyring
SLOW = 250e-6  # a commit or hand-off is marked when it takes longer than this (each request has one of each)
probe(_writer.GroupCommitWriter, "_commit", "commit > 0.25 ms", keep=lambda r, dt: dt > SLOW)
# the upkeep after a batch: only the calls that did work (a checkpoint) take measurable time
probe(ledger.SqliteLedger, "_after_answer", "writer upkeep", keep=lambda r, dt: dt > 50e-6)
probe(ledger.SqliteLedger, "_checkpoint", "checkpoint (bulk)")
probe(keyring.KeyRing, "reload", "key ring poll")
probe(keyring.KeyRing, "flush", "key ring flush")

# the two thread hand-offs of every call: event loop -> writer (the queue), writer -> event loop (a callback)
submitted, answered = {}, {}
W = _writer.GroupCommitWriter
submit, commit, answer, resolve = W.submit, W._commit, W._answer, _writer._resolve_futures

def probed_submit(self, item):
    submitted[id(item)] = clock()
    return submit(self, item)

def probed_commit(self, conn, batch):
    t = clock()
    first = min((submitted.pop(id(it), t) for it in batch), default=t)
    if t - first > SLOW:
        marks.append(("writer wake-up > 0.25 ms", first, t))
    return commit(self, conn, batch)

def probed_answer(batch):
    t = clock()
    for it in batch:
        answered[id(it)] = t
    return answer(batch)

def probed_resolve(items):
    t0, t = answered.pop(id(items[0]), 0.0), clock()
    if t0 and t - t0 > SLOW:
        marks.append(("loop wake-up > 0.25 ms", t0, t))
    return resolve(items)

W.submit, W._commit, W._answer = probed_submit, probed_commit, staticmethod(probed_answer)
_writer._resolve_futures = probed_resolve

from llm_connect.server.engine import Engine
engine_close = Engine.aclose

async def close_and_dump(self):  # at lifespan shutdown (uvicorn re-raises SIGTERM after it: no atexit)
    await engine_close(self)
    with open(os.environ["TAIL_MARKS"], "wb") as f:
        f.write(orjson.dumps(marks))

Engine.aclose = close_and_dump

from llm_connect.server.app import serve
serve(sys.argv[1], port=int(sys.argv[2]))
"""


async def timed(url: str, headers: dict[str, str], n: int, warm: int = 300) -> list[tuple[float, float]]:
    """(start, end) perf_counter pairs of ``n`` sequential requests, after ``warm`` uncounted ones."""
    out: list[tuple[float, float]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for i in range(n + warm):
            t0 = time.perf_counter()
            async with s.post(url, data=BODY, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise SystemExit(f"{url}: HTTP {r.status}: {await r.text()}")
            if i >= warm:
                out.append((t0, time.perf_counter()))
    return out


def quantiles(spans: list[tuple[float, float]]) -> dict[str, float]:
    lat = sorted(t1 - t0 for t0, t1 in spans)
    at = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999}
    return {k: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 for k, q in at.items()}


def overlaps(spans: list[tuple[float, float]], marks: list[tuple[str, float, float]]) -> dict[str, list[bool]]:
    """Per kind of mark, per request: did any mark of that kind overlap the request's time?"""
    by_kind: dict[str, list[tuple[float, float]]] = {}
    for kind, a, b in marks:
        by_kind.setdefault(kind, []).append((a, b))
    out: dict[str, list[bool]] = {}
    for kind, ivs in by_kind.items():
        ivs.sort()
        hits, j = [], 0
        for t0, t1 in spans:  # spans are in time order
            while j < len(ivs) and ivs[j][1] < t0:
                j += 1
            k, hit = j, False
            while k < len(ivs) and ivs[k][0] <= t1:
                if ivs[k][1] >= t0:
                    hit = True
                    break
                k += 1
            hits.append(hit)
        out[kind] = hits
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", type=int, default=3000, help="sequential requests per target and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--upstream", default="auto", choices=["auto", "nginx", "python"])
    ap.add_argument("--ref", default="", help="git revision whose gateway runs beside the working tree's")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmc-tail-"))
    py = sys.executable
    procs: list[Proc] = []
    rows: dict[str, list[dict[str, float]]] = {"floor": [], "gateway": []}
    if args.ref:
        rows[f"gw {args.ref}"] = []
    slow_spans: list[tuple[float, float]] = []
    all_spans: list[tuple[float, float]] = []
    marks_path = work / "marks.json"
    try:
        up = start_upstream(args.upstream, work, free_port(), py)
        procs.append(up)
        floor = start_floor(up.url, py)
        procs.append(floor)
        cfg = gateway_config(work, up.url, "NORMAL")
        gw_port = free_port()
        env = {
            "LLM_CONNECT_HOME": str(work / "home"),
            "PYTHONPATH": str(ROOT / "src"),
            "TAIL_MARKS": str(marks_path),
        }
        gw = Proc([py, "-c", PROBED, str(cfg), str(gw_port)], gw_port, "/health", env=env)
        procs.append(gw)
        ref = None
        if args.ref:
            (work / "ref").mkdir()
            ref_src = export_tree(args.ref, work / "ref")
            ref_cfg = gateway_config(work / "ref", up.url, "NORMAL")
            ref_port = free_port()
            ref_env = {
                "LLM_CONNECT_HOME": str(work / "ref-home"),
                "PYTHONPATH": str(ref_src),
                "TAIL_MARKS": str(work / "ref-marks.json"),
            }
            ref = Proc([py, "-c", PROBED, str(ref_cfg), str(ref_port)], ref_port, "/health", env=ref_env)
            procs.append(ref)
        time.sleep(1.0)  # the warm-up thread's gc.freeze
        kind = "nginx" if "nginx" in up.args[0] else "python asyncio"
        print(f"upstream {kind}; {args.rounds} round(s) of {args.seq} sequential requests per target", flush=True)
        for rnd in range(args.rounds):
            f = asyncio.run(timed(floor.url + "/v1/chat/completions", {}, args.seq))
            g = asyncio.run(timed(gw.url + "/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}, args.seq))
            if ref is not None:
                r = asyncio.run(timed(ref.url + "/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}, args.seq))
                rows[f"gw {args.ref}"].append(quantiles(r))
            fq, gq = quantiles(f), quantiles(g)
            rows["floor"].append(fq)
            rows["gateway"].append(gq)
            cut = gq["p99"] / 1000
            slow_spans += [s for s in g if s[1] - s[0] >= cut]
            all_spans += g
            print(
                f"round {rnd + 1}: floor p50 {fq['p50']:.3f} p99 {fq['p99']:.3f} ms; "
                f"gateway p50 {gq['p50']:.3f} p99 {gq['p99']:.3f} ms",
                flush=True,
            )
        gw.stop()
    finally:
        for p in procs:
            p.stop()
    marks = [tuple(m) for m in orjson.loads(marks_path.read_bytes())] if marks_path.exists() else []
    shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"medians over {args.rounds} round(s), ms")
    print(f"{'target':<16}" + "".join(f"{k:>9}" for k in ("p50", "p90", "p99", "p99.9")))
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in rows.items()}
    for name, q in med.items():
        print(f"{name:<16}" + "".join(f"{q[k]:>9.3f}" for k in ("p50", "p90", "p99", "p99.9")))
    for name in [n for n in rows if n != "floor"]:
        pairs = list(zip(rows["floor"], rows[name], strict=True))
        ratio = {k: statistics.median(g[k] / f[k] for f, g in pairs) for k in med["floor"]}
        label = "gw / floor" if name == "gateway" else f"{name} / floor"
        print(f"{label:<16}" + "".join(f"{ratio[k]:>8.2f}x" for k in ("p50", "p90", "p99", "p99.9")))
    print("target: gateway p99 <= 2x the floor's p99")

    if not marks:
        print("\n(no probe marks written)")
        return
    print(f"\nwhat the gateway's requests overlapped ({len(all_spans)} requests, {len(slow_spans)} at or above p99)")
    print(f"{'probe':<26}{'marks':>8}{'median µs':>11}{'max µs':>10}{'% of all':>10}{'% of slow':>11}")
    slow_set = set(slow_spans)
    hits = overlaps(all_spans, marks)
    for kind in sorted(hits):
        durations = sorted((b - a) * 1e6 for k, a, b in marks if k == kind)
        h = hits[kind]
        share_all = 100 * sum(h) / len(h)
        slow_hits = [hit for span, hit in zip(all_spans, h, strict=True) if span in slow_set]
        share_slow = 100 * sum(slow_hits) / max(1, len(slow_hits))
        print(
            f"{kind:<26}{len(durations):>8}{statistics.median(durations):>11.0f}{durations[-1]:>10.0f}"
            f"{share_all:>9.1f}%{share_slow:>10.1f}%"
        )
    print("(every request waits for one commit and two hand-offs: only those over 0.25 ms are marked)")


if __name__ == "__main__":
    main()
