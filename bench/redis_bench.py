"""The Redis path, streams and workers against in-memory state, in one run, nginx as the instant upstream:

  floor          the ~30-line raw-ASGI pass-through proxy (gateway_bench.FLOOR)
  floor x2       the same proxy as 2 processes on one port, started as ``serve --workers 2`` starts the gateway's
                 (a listening socket per worker on Linux): what 2 processes gain on this machine beside wrk and
                 nginx
  memory         the gateway, one worker, in-memory budgets / rate limits / router state, SQLite ledger
  redis          the same gateway with ``redis:`` configured (leased budget slices, cached router reads), the
                 tenant without rate limits
  redis+limits   the same with the tenant's rpm / tpm limits (rate-limit blocks from Redis), as ``memory`` has
  stream floor   the floor proxy relaying an SSE stream (11 content chunks, a usage chunk, [DONE]) as it arrives
  stream memory  the in-memory gateway serving the same stream (``"stream": true``, usage included, accounted)
  pg x1          redis+limits with a PostgreSQL ledger, one worker
  pg x2          the same, ``--workers 2``: both workers share the budget, limits and cooldowns (Redis) and
                 the ledger (one PostgreSQL table), as N replicas behind a load balancer would

Each round measures every target in turn (then the next round), so a burst of load from elsewhere on the
machine hits all of them; the ratios printed are medians of the per-round ratios. During each load phase the
CPU time of every party is read from /proc (bench/shares.py): the server (each worker), wrk, nginx, Redis and
PostgreSQL, printed as the cores each used, with the connections each worker held half-way through, and Redis
commands and PostgreSQL commits per request. After the load each shared budget is checked: Redis's spent
equals the tokens the ledger recorded, nothing reserved is left behind, and no overrun; the PostgreSQL
ledger holds exactly one row per answered call.

    python bench/redis_bench.py [--seq 2000] [--duration 6] [--rounds 3] [--redis redis://127.0.0.1:6379/0 | own]
                                [--postgres postgresql://postgres@127.0.0.1:5432/test | --postgres off]

``--redis own`` starts a private redis-server for the run (its commands and CPU are then this run's alone).
Targets: redis+limits p50 - memory p50 <= 0.2 ms; redis req/s >= 0.30x the floor's; stream req/s >= 0.40x the
stream floor's; 2 workers >= 1.7x one (beside it, the floor's 2 processes / 1: the machine's own ceiling).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_bench import (
    BODY,
    CHAT_LOCATION,
    FLOOR,
    KEY,
    ROOT,
    Proc,
    free_port,
    gateway_config,
    pct,
    sequential,
    start_upstream,
    stream_body,
    wrk_rps,
)
from shares import Sampler, postgres_counters, redis_counters

STREAM_BODY = stream_body("stream")

#: 11 content chunks, the usage chunk and [DONE], one body from memory ($request_id: a unique id per reply)
_SSE_CHUNK = (
    'data: {"id":"chatcmpl-$request_id","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    '"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
)
_SSE_LAST = (
    'data: {"id":"chatcmpl-$request_id","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    '"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":11,"total_tokens":16}}\n\ndata: [DONE]\n\n'
)
STREAM_LOCATION = f"""\
        location /sse/ {{
            default_type text/event-stream;
            return 200 '{_SSE_CHUNK * 11}{_SSE_LAST}';
        }}
"""

#: the floor proxy, relaying the upstream's body as it arrives (one ASGI send per read)
STREAM_FLOOR = FLOOR.replace(
    """        async with self.session.post(UP + scope["path"], data=body,
                                     headers={"Content-Type": "application/json"}) as r:
            data = await r.read()
        await send({"type": "http.response.start", "status": r.status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})
""",
    """        async with self.session.post(UP + "/sse" + scope["path"], data=body,
                                     headers={"Content-Type": "application/json"}) as r:
            await send({"type": "http.response.start", "status": r.status,
                        "headers": [(b"content-type", b"text/event-stream")]})
            async for data in r.content.iter_any():
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
""",
)
assert STREAM_FLOOR != FLOOR

#: the floor proxy as an importable module (``floor_app:app``), and its launcher for N processes on one port:
#: the gateway's own worker supervisor (a listening socket per worker on Linux), so both sides of the
#: 2-process / 1-process ratios spread connections the same way
FLOOR_MODULE = FLOOR.split("uvicorn.run(")[0] + "app = Proxy()\n"
FLOOR_WORKERS = """
import sys
from llm_connect.server.workers import run_workers
if __name__ == "__main__":
    opts = dict(host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools", log_level="warning",
                access_log=False, lifespan="on")
    sys.exit(run_workers(int(sys.argv[2]), opts, "floor_app:app", factory=False))
"""


def config(
    work: Path, upstream: str, name: str, *, redis: str | None, workers: int, limits: bool, ledger: str | None
) -> Path:
    cfg = yaml.safe_load(gateway_config(work, upstream, "NORMAL").read_text())
    cfg["ledger"]["url"] = ledger or str(work / f"usage-{name}.sqlite3")
    if ledger is not None and ledger.startswith("postgresql://"):
        cfg["ledger"] = {"url": ledger, "table": f"llm_usage_rbench_{uuid.uuid4().hex[:8]}"}
    if redis is not None:
        cfg["redis"] = {"url": redis, "namespace": f"llmc-rbench-{uuid.uuid4().hex[:8]}"}
    if not limits:
        for key in ("rpm", "tpm"):
            cfg["tenants"]["bench"].pop(key, None)
    # the streamed calls: the same upstream's SSE path, its own group
    cfg["router"]["groups"]["stream"] = [{**cfg["router"]["groups"]["bench"][0], "api_base": upstream + "/sse/v1"}]
    cfg["server"]["workers"] = workers
    path = work / f"gateway-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def ledger_totals(cfg: dict[str, Any]) -> tuple[int, int]:
    """(rows, total tokens) in the config's ledger."""
    url, table = cfg["ledger"]["url"], cfg["ledger"].get("table", "llm_usage")
    sql = f"SELECT COUNT(*), COALESCE(SUM(total_tokens), 0) FROM {table}"
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url) as conn:
            rows, tokens = conn.execute(sql).fetchone()  # type: ignore[misc]
            conn.execute(f"DROP TABLE {table}")
        return int(rows), int(tokens)
    conn = sqlite3.connect(url)
    try:
        rows, tokens = conn.execute(sql).fetchone()
    finally:
        conn.close()
    return int(rows), int(tokens)


def check_budget(cfg_path: Path) -> str:
    """Redis's view of the tenant budget against the ledger, after the gateway flushed and stopped."""
    from llm_connect.budget import BudgetTracker, RedisBudgetStore

    cfg = yaml.safe_load(cfg_path.read_text())
    store = RedisBudgetStore(cfg["redis"]["url"], namespace=cfg["redis"]["namespace"])
    try:
        cap = cfg["tenants"]["bench"]["budget"]
        state = BudgetTracker(cap["tokens"], total_usd=cap["usd"], store=store, budget_id="tenant:bench").state()
        rows, ledger = ledger_totals(cfg)
        ok = state.spent == ledger and state.reserved == 0 and state.overrun == 0
        line = (
            f"spent {state.spent:,} = ledger {ledger:,} ({rows:,} rows), reserved {state.reserved}, "
            f"overrun {state.overrun}"
        )
        store.drop_namespace()
    finally:
        store.close()
    return line + ("  OK" if ok else "  MISMATCH")


def own_redis(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server on a free port (no persistence), ready; (process, URL)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("--redis own: redis-server not found")
    port = free_port()
    p = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return p, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise SystemExit("--redis own: redis-server did not start")


def measure(
    name: str, p: Proc, headers: dict[str, str], args: argparse.Namespace, body: bytes, parties: dict[str, Any]
) -> dict[str, Any]:
    """Sequential p50 / p99, then req/s at 32 connections (wrk) with where the cores went meanwhile."""
    url = p.url + "/v1/chat/completions"
    lat = asyncio.run(sequential(url, headers, args.seq, body))
    sampler = Sampler(p.p.pid, p.port, parties["upstream"], args.duration, parties["cpu"], parties["counts"])
    rps, _ = wrk_rps(url, headers, args.duration, body=body, around=sampler)
    row = {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "rps": rps, **sampler.row(rps)}
    split = "/".join(str(n) for n in row["split"]) if len(row["split"]) > 1 else "-"
    print(
        f"  {name:<15} p50 {row['p50']:.3f} ms  p99 {row['p99']:.3f} ms  {rps:,.0f} req/s  "
        f"{row['server cpu us']:.0f} server CPU-µs/req  connections {split}",
        flush=True,
    )
    return row


def print_cores(names: list[str], rounds: dict[str, list[dict[str, Any]]], parties: list[str]) -> None:
    """Where the cores went in each target's load phase (medians over the rounds)."""

    def med(name: str, key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in rounds[name])

    print()
    print("cores used during the load phase (CPU seconds per second; medians over the rounds; Redis and")
    print("PostgreSQL include anything else using them meanwhile; others: every other process of the machine;")
    print("idle: cores left idle; sum: the benchmark's own)")
    head = f"{'target':<15}{'server':>8}{'(per worker)':>15}" + "".join(f"{p:>9}" for p in parties)
    print(
        head + f"{'sum':>7}{'server CPU-µs/req':>19}{'redis cmd/req':>15}{'pg commit/req':>15}  connections per worker"
    )
    for name in names:
        per = [
            statistics.median(r["cores workers"][i] for r in rounds[name])
            for i in range(len(rounds[name][0]["cores workers"]))
        ]
        workers = "/".join(f"{c:.2f}" for c in per) if len(per) > 1 else ""
        cores = [med(name, f"cores {p}") for p in parties]
        ours = [c for p, c in zip(parties, cores, strict=True) if p not in ("others", "idle")]
        splits = [r["split"] for r in rounds[name] if len(r["split"]) > 1]
        split = " ".join("/".join(str(n) for n in sp) for sp in splits) if splits else ""
        print(
            f"{name:<15}{med(name, 'cores server'):>8.2f}{workers:>15}"
            + "".join(f"{c:>9.2f}" for c in cores)
            + f"{med(name, 'cores server') + sum(ours):>7.2f}{med(name, 'server cpu us'):>19.0f}"
            + f"{med(name, 'redis commands per req'):>15.3f}"
            + (f"{med(name, 'pg commits per req'):>15.3f}" if "pg commits per req" in rounds[name][0] else " " * 15)
            + f"  {split}"
        )


#: the cores columns that are not a party of the benchmark (or that the server's column already holds)
_NOT_OURS = ("cores workers", "cores others", "cores idle")


def ceiling(rounds: list[dict[str, Any]], cores: int) -> float:
    """What ``cores`` processes could serve at most, as a multiple of one process's req/s: the machine's cores
    over the cores every party (server, wrk, nginx, Redis, PostgreSQL) used in the one-process run (median over
    its rounds) — the CPU per request stays what it was, and the cores fill up. Reached only if nothing else
    runs on the machine and the CPU per request does not grow with the processes."""
    return statistics.median(
        cores / sum(v for k, v in r.items() if k.startswith("cores ") and k not in _NOT_OURS) for r in rounds
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", type=int, default=2000, help="sequential requests per target and round")
    ap.add_argument("--duration", type=float, default=6.0, help="seconds of load per target and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="a Redis URL, or own: a private redis-server")
    ap.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="the shared ledger of the 1 / 2 worker targets (a table of its own, dropped after); off: skip them",
    )
    ap.add_argument(
        "--targets",
        nargs="+",
        metavar="NAME",
        help="measure only these targets (e.g. floor 'floor x2' 'pg x1' 'pg x2')",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmc-rbench-"))
    py = sys.executable
    env = {"LLM_CONNECT_HOME": str(work / "home"), "PYTHONPATH": str(ROOT / "src")}
    procs: list[Proc] = []
    auth = {"Authorization": f"Bearer {KEY}"}
    pg = None if args.postgres == "off" else args.postgres
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")
    redis_proc, redis_url = own_redis(work) if args.redis == "own" else (None, args.redis)
    #: name -> (redis?, workers, rate limits?, ledger URL (None: SQLite), request body)
    gateways: dict[str, tuple[bool, int, bool, str | None, bytes]] = {
        "memory": (False, 1, True, None, BODY),
        "redis": (True, 1, False, None, BODY),
        "redis+limits": (True, 1, True, None, BODY),
        "stream memory": (False, 1, True, None, STREAM_BODY),
    }
    if pg is not None:
        gateways |= {"pg x1": (True, 1, True, pg, BODY), "pg x2": (True, 2, True, pg, BODY)}
    floors = ("floor", "floor x2", "stream floor")
    order = ("floor", "floor x2", "memory", "redis", "redis+limits", "stream floor", "stream memory", "pg x1", "pg x2")
    names = [n for n in order if (n in gateways or n in floors) and (not args.targets or n in args.targets)]
    gateways = {k: v for k, v in gateways.items() if k in names}
    rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    redis_cpu, redis_cmds = redis_counters(redis_url)
    party_cpu: dict[str, Any] = {"redis": redis_cpu}
    counts: dict[str, Any] = {"redis commands": redis_cmds}
    if pg is not None:
        party_cpu["postgres"], counts["pg commits"] = postgres_counters(pg)
    cfgs: dict[str, Path] = {}
    try:
        up_port = free_port()
        up = start_upstream("nginx", work, up_port, py, CHAT_LOCATION + STREAM_LOCATION)
        procs.append(up)
        targets: dict[str, Proc] = {}
        (work / "floor_app.py").write_text(FLOOR_MODULE)
        floor_code = {"floor": (FLOOR, []), "floor x2": (FLOOR_WORKERS, ["2"]), "stream floor": (STREAM_FLOOR, [])}
        for name, (code, extra) in floor_code.items():
            if name not in names:
                continue
            port = free_port()
            cmd = [py, "-c", code, str(port), *extra]
            fenv = {"UPSTREAM": up.url, "PYTHONPATH": f"{work}{os.pathsep}{ROOT / 'src'}"}
            targets[name] = Proc(cmd, port, "/v1/chat/completions", env=fenv, method="POST", body=b"{}")
            procs.append(targets[name])
        for name, (redis, workers, limits, ledger, _) in gateways.items():
            tag = name.replace(" ", "-").replace("+", "-")
            cfgs[name] = config(
                work, up.url, tag, redis=redis_url if redis else None, workers=workers, limits=limits, ledger=ledger
            )
            port = free_port()
            p = Proc(
                [py, "-m", "llm_connect.server", "--config", str(cfgs[name]), "--port", str(port)], port, "/health", env
            )
            procs.append(p)
            targets[name] = p
        time.sleep(1.0)
        print(f"upstream nginx {up.url}; redis {redis_url}; {args.rounds} rounds; python {sys.version.split()[0]}")
        parties = {"upstream": up.p.pid, "cpu": party_cpu, "counts": counts}
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds}", flush=True)
            for name in names:
                body = STREAM_BODY if name.startswith("stream") else BODY
                headers = {} if name in floors else auth
                rounds[name].append(measure(name, targets[name], headers, args, body, parties))
        for name in gateways:
            targets[name].stop()
        checks = {name: check_budget(cfgs[name]) for name, (redis, *_) in gateways.items() if redis}
    finally:
        for p in procs:
            p.stop()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)

    def ratio(a: str, b: str, key: str) -> float:
        return statistics.median(x[key] / y[key] for x, y in zip(rounds[a], rounds[b], strict=True))

    def diff(a: str, b: str, key: str) -> float:
        return statistics.median(x[key] - y[key] for x, y in zip(rounds[a], rounds[b], strict=True))

    print()
    print(f"medians over {args.rounds} alternating rounds; ratios and differences are medians of per-round values")
    print(f"{'target':<15}{'p50 ms':>9}{'p99 ms':>9}{'req/s @32':>11}{'p50/floor':>11}{'rps/floor':>11}")
    for name in names:
        base = "stream floor" if name.startswith("stream") else "floor"
        p50 = statistics.median(r["p50"] for r in rounds[name])
        p99 = statistics.median(r["p99"] for r in rounds[name])
        rps = statistics.median(r["rps"] for r in rounds[name])
        print(
            f"{name:<15}{p50:>9.3f}{p99:>9.3f}{rps:>11,.0f}{ratio(name, base, 'p50'):>11.2f}"
            f"{ratio(name, base, 'rps'):>11.2f}"
        )
    print("(stream rows against the stream floor)")
    columns = ("wrk", "nginx", "redis", "postgres", "others", "idle")
    print_cores(names, rounds, [c for c in columns if f"cores {c}" in rounds[names[0]][0]])
    print()
    lines = [
        ("redis+limits", "memory", "redis+limits - memory, seq p50: {:+.3f} ms   (target <= +0.200)", diff, "p50"),
        ("redis", "memory", "redis - memory, seq p50:        {:+.3f} ms   (no rate limits)", diff, "p50"),
        ("redis+limits", "memory", "redis+limits / memory, req/s:   {:.2f}x", ratio, "rps"),
        ("redis", "floor", "redis / floor, req/s:           {:.2f}x     (target >= 0.30)", ratio, "rps"),
        ("redis+limits", "floor", "redis+limits / floor, req/s:    {:.2f}x     (target >= 0.30)", ratio, "rps"),
        ("memory", "floor", "memory p99 / floor p99, seq:    {:.2f}x     (target <= 2.0)", ratio, "p99"),
        ("stream memory", "stream floor", "stream / stream floor, req/s:   {:.2f}x     (target >= 0.40)", ratio, "rps"),
        ("pg x2", "pg x1", "gateway 2 workers / 1, req/s:   {:.2f}x     (target >= 1.7)", ratio, "rps"),
        (
            "floor x2",
            "floor",
            "floor 2 processes / 1, req/s:   {:.2f}x     (this machine's ceiling for 2 processes)",
            ratio,
            "rps",
        ),
        ("pg x2", "pg x1", "gateway 2 workers / 1, server CPU-µs/req: {:.2f}x", ratio, "server cpu us"),
        ("floor x2", "floor", "floor 2 processes / 1, server CPU-µs/req: {:.2f}x", ratio, "server cpu us"),
    ]
    for a, b, text, fn, key in lines:
        if a in rounds and b in rounds:
            print(text.format(fn(a, b, key)))
    cores = os.cpu_count() or 1
    for one, label in (("pg x1", "gateway"), ("floor", "floor")):
        if one in rounds:
            print(
                f"{label} ceiling for {cores} processes: {ceiling(rounds[one], cores):.2f}x one "
                f"({cores} cores / the cores every party used in the 1-process run)"
            )
    for name, line in checks.items():
        print(f"budget after '{name}': {line}")


if __name__ == "__main__":
    main()
