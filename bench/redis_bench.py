"""The Redis path against in-memory state, in one run, nginx as the instant upstream:

  floor        the ~30-line raw-ASGI pass-through proxy (gateway_bench.FLOOR)
  memory       the gateway, one worker, in-memory budgets / rate limits / router state
  redis        the same gateway with ``redis:`` configured (leased budget slices, rate-limit blocks,
               cached router reads), one worker
  redis x2     the same, ``server.workers: 2`` (both workers share the budget, limits and cooldowns)

Each round measures every target in turn (floor, memory, redis, redis x2, then the next round), so a burst
of load from elsewhere on the machine hits all of them; the ratios printed are medians of the per-round
ratios. After the load the shared budget is checked: Redis's spent equals the tokens the ledger recorded,
nothing reserved is left behind, and no overrun.

    python bench/redis_bench.py [--seq 2000] [--duration 6] [--rounds 3] [--redis redis://127.0.0.1:6379/0]

Targets: redis p50 - memory p50 <= 0.2 ms; redis req/s >= 0.30x the floor's; 2 workers >= 1.7x one.
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

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_bench import FLOOR, KEY, ROOT, Proc, free_port, gateway_config, measure, start_upstream


def config(work: Path, upstream: str, name: str, redis: str | None, workers: int) -> Path:
    cfg = yaml.safe_load(gateway_config(work, upstream, "NORMAL").read_text())
    cfg["ledger"]["url"] = str(work / f"usage-{name}.sqlite3")
    if redis is not None:
        cfg["redis"] = {"url": redis, "namespace": f"llmc-rbench-{uuid.uuid4().hex[:8]}"}
    cfg["server"]["workers"] = workers
    path = work / f"gateway-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def check_budget(cfg_path: Path) -> str:
    """Redis's view of the tenant budget against the ledger, after the gateway flushed and stopped."""
    from llm_connect.budget import BudgetTracker, RedisBudgetStore

    cfg = yaml.safe_load(cfg_path.read_text())
    store = RedisBudgetStore(cfg["redis"]["url"], namespace=cfg["redis"]["namespace"])
    try:
        cap = cfg["tenants"]["bench"]["budget"]
        state = BudgetTracker(cap["tokens"], total_usd=cap["usd"], store=store, budget_id="tenant:bench").state()
        conn = sqlite3.connect(cfg["ledger"]["url"])
        try:
            (ledger,) = conn.execute("SELECT COALESCE(SUM(total_tokens), 0) FROM llm_usage").fetchone()
        finally:
            conn.close()
        ok = state.spent == ledger and state.reserved == 0 and state.overrun == 0
        store.drop_namespace()
    finally:
        store.close()
    return f"spent {state.spent:,} = ledger {ledger:,}, reserved {state.reserved}, overrun {state.overrun}" + (
        "  OK" if ok else "  MISMATCH"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", type=int, default=2000, help="sequential requests per target and round")
    ap.add_argument("--duration", type=float, default=6.0, help="seconds of load per target and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmc-rbench-"))
    py = sys.executable
    env = {"LLM_CONNECT_HOME": str(work / "home"), "PYTHONPATH": str(ROOT / "src")}
    procs: list[Proc] = []
    auth = {"Authorization": f"Bearer {KEY}"}
    names = ["floor", "memory", "redis", "redis x2"]
    rounds: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    cfgs: dict[str, Path] = {}
    try:
        up_port = free_port()
        up = start_upstream("nginx", work, up_port, py)
        procs.append(up)
        targets: dict[str, Proc] = {}
        fl_port = free_port()
        targets["floor"] = Proc(
            [py, "-c", FLOOR, str(fl_port)],
            fl_port,
            "/v1/chat/completions",
            env={"UPSTREAM": up.url},
            method="POST",
            body=b"{}",
        )
        procs.append(targets["floor"])
        for name, redis, workers in (("memory", None, 1), ("redis", args.redis, 1), ("redis x2", args.redis, 2)):
            cfgs[name] = config(work, up.url, name.replace(" ", ""), redis, workers)
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
                url = p.url + "/v1/chat/completions"
                # with 2 workers the CPU of both is wanted: measure() reads one pid, so sum them afterwards
                rounds[name].append(measure(name, url, {} if name == "floor" else auth, args, p.p.pid))
        for name in ("memory", "redis", "redis x2"):
            targets[name].stop()
        checks = {name: check_budget(cfgs[name]) for name in ("redis", "redis x2")}
    finally:
        for p in procs:
            p.stop()

    def ratio(a: str, b: str, key: str) -> float:
        return statistics.median(x[key] / y[key] for x, y in zip(rounds[a], rounds[b], strict=True))

    def diff(a: str, b: str, key: str) -> float:
        return statistics.median(x[key] - y[key] for x, y in zip(rounds[a], rounds[b], strict=True))

    print()
    print(f"medians over {args.rounds} alternating rounds; ratios and differences are medians of per-round values")
    print(f"{'target':<10}{'p50 ms':>9}{'p99 ms':>9}{'req/s @32':>11}{'p50/floor':>11}{'rps/floor':>11}")
    for name in names:
        p50 = statistics.median(r["p50"] for r in rounds[name])
        p99 = statistics.median(r["p99"] for r in rounds[name])
        rps = statistics.median(r["rps"] for r in rounds[name])
        print(
            f"{name:<10}{p50:>9.3f}{p99:>9.3f}{rps:>11,.0f}{ratio(name, 'floor', 'p50'):>11.2f}"
            f"{ratio(name, 'floor', 'rps'):>11.2f}"
        )
    print()
    print(f"redis - memory, seq p50:   {diff('redis', 'memory', 'p50'):+.3f} ms   (target <= +0.200)")
    print(f"redis / memory, req/s:     {ratio('redis', 'memory', 'rps'):.2f}x")
    print(f"redis / floor, req/s:      {ratio('redis', 'floor', 'rps'):.2f}x     (target >= 0.30)")
    print(f"2 workers / 1, req/s:      {ratio('redis x2', 'redis', 'rps'):.2f}x     (target >= 1.7)")
    for name, line in checks.items():
        print(f"budget after '{name}': {line}")


if __name__ == "__main__":
    main()
