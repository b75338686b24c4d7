"""The Redis path, streams and workers against in-memory state, in one run, nginx as the instant upstream:

  floor          the ~30-line raw-ASGI pass-through proxy (gateway_bench.FLOOR)
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
machine hits all of them; the ratios printed are medians of the per-round ratios. After the load each shared
budget is checked: Redis's spent equals the tokens the ledger recorded, nothing reserved is left behind, and no
overrun; the PostgreSQL ledger holds exactly one row per answered call.

    python bench/redis_bench.py [--seq 2000] [--duration 6] [--rounds 3] [--redis redis://127.0.0.1:6379/0]
                                [--postgres postgresql://postgres@127.0.0.1:5432/test | --postgres off]

Targets: redis+limits p50 - memory p50 <= 0.2 ms; redis req/s >= 0.30x the floor's; stream req/s >= 0.40x the
stream floor's; 2 workers >= 1.7x one.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
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
    measure,
    start_upstream,
    stream_body,
)

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", type=int, default=2000, help="sequential requests per target and round")
    ap.add_argument("--duration", type=float, default=6.0, help="seconds of load per target and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="the shared ledger of the 1 / 2 worker targets (a table of its own, dropped after); off: skip them",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmc-rbench-"))
    py = sys.executable
    env = {"LLM_CONNECT_HOME": str(work / "home"), "PYTHONPATH": str(ROOT / "src")}
    procs: list[Proc] = []
    auth = {"Authorization": f"Bearer {KEY}"}
    pg = None if args.postgres == "off" else args.postgres
    #: name -> (redis?, workers, rate limits?, ledger URL (None: SQLite), request body)
    gateways: dict[str, tuple[bool, int, bool, str | None, bytes]] = {
        "memory": (False, 1, True, None, BODY),
        "redis": (True, 1, False, None, BODY),
        "redis+limits": (True, 1, True, None, BODY),
        "stream memory": (False, 1, True, None, STREAM_BODY),
    }
    if pg is not None:
        gateways |= {"pg x1": (True, 1, True, pg, BODY), "pg x2": (True, 2, True, pg, BODY)}
    order = ("floor", "memory", "redis", "redis+limits", "stream floor", "stream memory", "pg x1", "pg x2")
    names = [n for n in order if n in gateways or n.endswith("floor")]
    rounds: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    cfgs: dict[str, Path] = {}
    try:
        up_port = free_port()
        up = start_upstream("nginx", work, up_port, py, CHAT_LOCATION + STREAM_LOCATION)
        procs.append(up)
        targets: dict[str, Proc] = {}
        for name, code in (("floor", FLOOR), ("stream floor", STREAM_FLOOR)):
            port = free_port()
            cmd = [py, "-c", code, str(port)]
            targets[name] = Proc(cmd, port, "/v1/chat/completions", env={"UPSTREAM": up.url}, method="POST", body=b"{}")
            procs.append(targets[name])
        for name, (redis, workers, limits, ledger, _) in gateways.items():
            tag = name.replace(" ", "-").replace("+", "-")
            cfgs[name] = config(
                work, up.url, tag, redis=args.redis if redis else None, workers=workers, limits=limits, ledger=ledger
            )
            port = free_port()
            p = Proc(
                [py, "-m", "llm_connect.server", "--config", str(cfgs[name]), "--port", str(port)], port, "/health", env
            )
            procs.append(p)
            targets[name] = p
        time.sleep(1.0)
        print(f"upstream nginx {up.url}; {args.rounds} rounds; python {sys.version.split()[0]}", flush=True)
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds}", flush=True)
            for name in names:
                p = targets[name]
                body = STREAM_BODY if name.startswith("stream") else BODY
                # CPU-µs/req: the server process and its workers together
                headers = {} if name.endswith("floor") else auth
                rounds[name].append(measure(name, p.url + "/v1/chat/completions", headers, args, p.p.pid, body))
        for name in gateways:
            targets[name].stop()
        checks = {name: check_budget(cfgs[name]) for name, (redis, *_) in gateways.items() if redis}
    finally:
        for p in procs:
            p.stop()

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
    print()
    print(f"redis+limits - memory, seq p50: {diff('redis+limits', 'memory', 'p50'):+.3f} ms   (target <= +0.200)")
    print(f"redis - memory, seq p50:        {diff('redis', 'memory', 'p50'):+.3f} ms   (no rate limits)")
    print(f"redis+limits / memory, req/s:   {ratio('redis+limits', 'memory', 'rps'):.2f}x")
    print(f"redis / floor, req/s:           {ratio('redis', 'floor', 'rps'):.2f}x     (target >= 0.30)")
    print(f"redis+limits / floor, req/s:    {ratio('redis+limits', 'floor', 'rps'):.2f}x     (target >= 0.30)")
    print(f"memory p99 / floor p99, seq:    {ratio('memory', 'floor', 'p99'):.2f}x     (target <= 2.0)")
    print(f"stream / stream floor, req/s:   {ratio('stream memory', 'stream floor', 'rps'):.2f}x     (target >= 0.40)")
    if pg is not None:
        print(f"2 workers / 1, req/s:           {ratio('pg x2', 'pg x1', 'rps'):.2f}x     (target >= 1.7)")
    for name, line in checks.items():
        print(f"budget after '{name}': {line}")


if __name__ == "__main__":
    main()
