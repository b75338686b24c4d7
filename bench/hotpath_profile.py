"""Per-request work on the gateway's hot path, in counts the machine's load does not change.

The gateway app runs in this process, driven directly over ASGI (no HTTP server in front: uvicorn's share is
the same for every tree), against an instant upstream in another process, with the same config as
gateway_bench.py (auth, a tenant token + USD budget, rpm/tpm limits, routing, pricing, the SQLite ledger).
After a warm-up, N requests are counted:

  calls         Python function calls per request (cProfile; C functions included), and the functions whose
                count changed most between the trees
  writes        response body writes per request (each a system call under a server)
  gc            the cyclic garbage collector's passes per 1 000 requests, by generation
  instructions  CPU instructions per request (``--callgrind``: valgrind's callgrind, collection switched on
                only for the N requests; slow — keep N small)

Each scenario is one surface: ``chat`` (POST /v1/chat/completions), ``stream`` (the same with
``"stream": true``: 11 content chunks and a usage chunk relayed as SSE). ``--ref`` names the git revision to
compare with (its ``src/`` is exported to a temporary directory); the working tree is the other side.

``--with-floor`` adds a row for gateway_bench.FLOOR's proxy app driven the same way (chat only): the gap between
its counts and the gateway's is the gateway's own share. ``--tottime`` lists the working tree's functions by own
time under cProfile.

    python bench/hotpath_profile.py [--ref main] [--n 2000] [--scenario chat stream] [--callgrind] [--top 15]
                                    [--with-floor] [--tottime]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway_bench as gb

ROOT = gb.ROOT
KEY = gb.KEY
SCENARIOS = {"chat": gb.BODY, "stream": gb.stream_body()}


# -- the child: one tree, one scenario -----------------------------------------------------------------
async def _drive(app: Any, body: bytes, n: int) -> int:
    """Send ``n`` requests to ``app``; the number of response body writes (each one a system call under a server)."""
    headers = [
        (b"host", b"127.0.0.1"),
        (b"authorization", f"Bearer {KEY}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    never = asyncio.Event()
    writes = 0
    for _ in range(n):
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await never.wait()
            return {"type": "http.disconnect"}

        async def send(msg: dict[str, Any]) -> None:
            nonlocal status, writes
            if msg["type"] == "http.response.start":
                status = msg["status"]
            elif msg.get("body"):
                writes += 1

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 9999),
        }
        await app(scope, receive, send)
        if status != 200:
            raise SystemExit(f"HTTP {status}")
    return writes


def floor_app(upstream: str) -> Any:
    """gateway_bench.FLOOR's proxy app (what its lifespan does: the session opened), to drive the same way."""
    import aiohttp

    os.environ["UPSTREAM"] = upstream
    ns: dict[str, Any] = {"__name__": "floor"}
    exec(gb.FLOOR.split("uvicorn.run(")[0], ns)  # the app without its server
    proxy = ns["Proxy"]()
    proxy.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
    return proxy


def child(args: argparse.Namespace) -> None:
    from llm_connect.server.app import create_app

    body = SCENARIOS[args.scenario]

    async def main() -> dict[str, Any]:
        if args.floor:
            app = floor_app(args.floor)
        else:
            app = create_app(args.config)
            await app.startup()
        await _drive(app, body, 300)  # warm-up: imports, prices, pools, the ledger's first commits
        await asyncio.sleep(1.0)  # the warm-up thread's gc.freeze
        out: dict[str, Any] = {}
        if args.mode == "calls":
            # the cyclic collector's passes over the n requests, by generation (the oldest: the latency tail)
            passes = [0, 0, 0]

            def count(phase: str, info: dict[str, int]) -> None:
                if phase == "start":
                    passes[info["generation"]] += 1

            gc.callbacks.append(count)
            prof = cProfile.Profile()
            prof.enable()
            writes = await _drive(app, body, args.n)
            await asyncio.sleep(0.2)  # the ledger writer's last commits
            prof.disable()
            gc.callbacks.remove(count)
            out["writes"] = writes / args.n
            out["gc"] = [n * 1000 / args.n for n in passes]
            st = pstats.Stats(prof)
            out["calls"] = st.total_calls / args.n  # type: ignore[attr-defined]
            funcs: dict[str, float] = {}
            own: dict[str, float] = {}
            for (file, _line, name), (_cc, nc, tt, *_rest) in st.stats.items():  # type: ignore[attr-defined]
                key = f"{_short(file)}:{name}" if file != "~" else re.sub(r" at 0x[0-9a-f]+", "", name)
                funcs[key] = funcs.get(key, 0.0) + nc / args.n
                own[key] = own.get(key, 0.0) + tt * 1e6 / args.n
            out["funcs"] = funcs
            out["own"] = own
        else:
            print("ready", flush=True)
            sys.stdin.readline()  # the parent switched callgrind's collection on
            await _drive(app, body, args.n)
            await asyncio.sleep(0.2)
            print("done", flush=True)
            sys.stdin.readline()  # ... and off
        if args.floor:
            await app.session.close()
        else:
            await app.engine.aclose()
        return out

    try:  # the event loop the gateway serves on
        import uvloop

        out = uvloop.run(main())
    except ImportError:
        out = asyncio.run(main())
    if args.mode == "calls":
        Path(args.out).write_bytes(orjson.dumps(out))


def _short(file: str) -> str:
    for marker in ("/llm_connect/", "/site-packages/", "/lib/python3"):
        i = file.find(marker)
        if i >= 0:
            return file[i + 1 :]
    return file


# -- the parent ------------------------------------------------------------------------------------------
def export_tree(ref: str, into: Path) -> Path:
    """``src/`` of git revision ``ref``, extracted under ``into``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True).stdout
    tar = into / "src.tar"
    tar.write_bytes(data)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    return into / "src"


def run_calls(src: Path, cfg: Path, scenario: str, n: int, work: Path, floor: str = "") -> dict[str, Any]:
    out = work / f"calls-{os.getpid()}-{time.monotonic_ns()}.json"
    env = {**os.environ, "PYTHONPATH": str(src), "LLM_CONNECT_HOME": str(work / "home")}
    cmd = [sys.executable, __file__, "--child", "--mode", "calls", "--config", str(cfg), "--floor", floor]
    subprocess.run([*cmd, "--scenario", scenario, "--n", str(n), "--out", str(out)], env=env, check=True)
    return orjson.loads(out.read_bytes())


def run_callgrind(src: Path, cfg: Path, scenario: str, n: int, work: Path, floor: str = "") -> float:
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind not found: apt-get install valgrind")
    out = work / f"callgrind-{time.monotonic_ns()}.out"
    env = {**os.environ, "PYTHONPATH": str(src), "LLM_CONNECT_HOME": str(work / "home"), "PYTHONMALLOC": "malloc"}
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--child",
        "--mode",
        "instructions",
        "--config",
        str(cfg),
        "--scenario",
        scenario,
        "--n",
        str(n),
        "--floor",
        floor,
    ]
    p = subprocess.Popen(
        cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert p.stdin is not None and p.stdout is not None
    if p.stdout.readline().strip() != "ready":
        raise SystemExit("the profiled gateway did not start")
    subprocess.run(["callgrind_control", "--instr=on", str(p.pid)], check=True, capture_output=True)
    p.stdin.write("go\n")
    p.stdin.flush()
    if p.stdout.readline().strip() != "done":
        raise SystemExit("the profiled gateway failed")
    subprocess.run(["callgrind_control", "--instr=off", str(p.pid)], check=True, capture_output=True)
    p.stdin.write("stop\n")
    p.stdin.flush()
    p.wait(600)
    if os.environ.get("HOTPATH_KEEP"):  # for callgrind_annotate
        for path in work.glob(out.name + "*"):
            shutil.copy(path, os.environ["HOTPATH_KEEP"])
    total = 0
    for path in work.glob(out.name + "*"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default="main", help="git revision to compare with the working tree ('' : none)")
    ap.add_argument("--n", type=int, default=2000, help="requests counted per tree and scenario")
    ap.add_argument("--scenario", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--callgrind", action="store_true", help="also count instructions (valgrind; slow)")
    ap.add_argument("--callgrind-n", type=int, default=200, help="requests counted under callgrind")
    ap.add_argument("--top", type=int, default=15, help="functions listed by change in calls per request")
    ap.add_argument("--tottime", action="store_true", help="also list the working tree's functions by own time")
    ap.add_argument(
        "--with-floor", action="store_true", help="also count the floor proxy's app (gateway_bench.FLOOR), chat only"
    )
    ap.add_argument("--floor", default="", help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="calls", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.scenario = args.scenario[0]
        child(args)
        return

    work = Path(tempfile.mkdtemp(prefix="llmc-hotpath-"))
    procs: list[gb.Proc] = []
    try:
        trees: dict[str, Path] = {}
        verify = ["git", "-C", str(ROOT), "rev-parse", "--verify", "-q", f"{args.ref}^{{commit}}"]
        known = bool(args.ref) and subprocess.run(verify, capture_output=True).returncode == 0
        if args.ref and not known:
            print(f"no git revision {args.ref!r} here: the working tree alone")
        if known:
            (work / "ref").mkdir()
            trees[args.ref] = export_tree(args.ref, work / "ref")
        trees["tree"] = ROOT / "src"
        up_port = gb.free_port()
        up = gb.start_upstream("python", work, up_port, sys.executable)
        procs.append(up)
        cfg = gb.gateway_config(work, up.url, "NORMAL")
        print(f"upstream {up.url} (python, another process); {args.n} requests counted per tree and scenario")
        for scenario in args.scenario:
            res = {name: run_calls(src, cfg, scenario, args.n, work) for name, src in trees.items()}
            print(f"\n== {scenario}")
            head = f"{'tree':<12}{'calls/req':>12}{'writes/req':>12}{'gc0/1/2 per 1k req':>22}"
            print(head + (f"{'instr/req':>14}" if args.callgrind else ""))
            for name, src in trees.items():
                r = res[name]
                gcs = "/".join(f"{n:.1f}" for n in r["gc"])
                line = f"{name:<12}{r['calls']:>12.1f}{r['writes']:>12.1f}{gcs:>22}"
                if args.callgrind:
                    line += f"{run_callgrind(src, cfg, scenario, args.callgrind_n, work):>14,.0f}"
                print(line, flush=True)
            if args.with_floor and scenario == "chat":
                r = run_calls(trees["tree"], cfg, scenario, args.n, work, floor=up.url)
                line = f"{'floor app':<12}{r['calls']:>12.1f}{r['writes']:>12.1f}{'':>22}"
                if args.callgrind:
                    line += f"{run_callgrind(trees['tree'], cfg, scenario, args.callgrind_n, work, up.url):>14,.0f}"
                print(line, flush=True)
            if len(trees) == 2:
                a, b = (res[n]["funcs"] for n in trees)
                delta = {k: b.get(k, 0.0) - a.get(k, 0.0) for k in {*a, *b}}
                print(f"calls per request, largest changes ({args.ref} -> tree):")
                for k in sorted(delta, key=lambda k: -abs(delta[k]))[: args.top]:
                    if abs(delta[k]) >= 0.05:
                        print(f"  {delta[k]:+8.2f}  {a.get(k, 0.0):7.2f} -> {b.get(k, 0.0):7.2f}  {k}")
            else:
                funcs = res["tree"]["funcs"]
                print("calls per request, most called:")
                for k in sorted(funcs, key=lambda k: -funcs[k])[: args.top]:
                    print(f"  {funcs[k]:8.2f}  {k}")
            if args.tottime:
                own = res["tree"]["own"]
                print("own time per request under cProfile (µs, tottime; the profiler inflates small functions):")
                for k in sorted(own, key=lambda k: -own[k])[: args.top]:
                    print(f"  {own[k]:8.2f}  {res['tree']['funcs'][k]:7.2f} calls  {k}")
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
