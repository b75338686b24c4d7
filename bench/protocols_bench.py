"""Every protocol the gateway serves, side by side in one run, against nginx as the instant upstream:

  floor              — the ~30-line raw-ASGI + aiohttp pass-through proxy of gateway_bench.py, per path
  chat               — POST /v1/chat/completions  -> an OpenAI upstream
  messages           — POST /v1/messages          -> an Anthropic upstream (passed through)
  messages->openai   — POST /v1/messages          -> an OpenAI upstream (translated through the core contract)
  embeddings         — POST /v1/embeddings        -> an OpenAI upstream

Every gateway call goes through auth, a tenant token + USD budget, rpm/tpm limits, routing, pricing and the
SQLite ledger (NORMAL), one worker. Targets and floor are measured in alternating rounds; the ratios are the
medians of the per-round ratios (each surface against the floor proxy of its own path, same round).

    python bench/protocols_bench.py [--seq 1000] [--duration 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_bench as gb  # the shared processes, load loops and the floor proxy

ROOT = gb.ROOT
KEY = gb.KEY

CHAT = orjson.dumps({"model": "to-openai", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 16})
MESSAGES = orjson.dumps(
    {"model": "to-anthropic", "max_tokens": 16, "messages": [{"role": "user", "content": "hello there"}]}
)
MESSAGES_OPENAI = orjson.dumps(
    {"model": "to-openai", "max_tokens": 16, "messages": [{"role": "user", "content": "hello there"}]}
)
EMBED = orjson.dumps({"model": "embed", "input": "hello there"})

# each protocol's path answered from memory; $request_id keeps every reply's id unique
LOCATIONS = (
    """\
        location /v1/messages {
            return 200 '{"id":"msg_$request_id","type":"message","role":"assistant","model":"claude-haiku-4-5",\
"content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,\
"usage":{"input_tokens":5,"output_tokens":1}}';
        }
        location /v1/embeddings {
            return 200 '{"object":"list","model":"text-embedding-3-small","data":[{"object":"embedding","index":0,\
"embedding":[0.0123,-0.0456,0.0789,0.0012,-0.0345,0.0678,0.0901,-0.0234]}],\
"usage":{"prompt_tokens":2,"total_tokens":2}}';
        }
"""
    + gb.CHAT_LOCATION
)

#: (row name, gateway path, body, floor path)
SURFACES = (
    ("chat", "/v1/chat/completions", CHAT, "/v1/chat/completions"),
    ("messages", "/v1/messages", MESSAGES, "/v1/messages"),
    ("messages->openai", "/v1/messages", MESSAGES_OPENAI, "/v1/messages"),
    ("embeddings", "/v1/embeddings", EMBED, "/v1/embeddings"),
)


def gateway_config(work: Path, upstream: str) -> Path:
    key = "sk-bench-upstream-key-000"
    cfg = {
        "server": {"host": "127.0.0.1", "log_level": "warning"},
        "ledger": {"url": str(work / "usage.sqlite3"), "synchronous": "NORMAL"},
        "router": {
            "groups": {
                "to-openai": [{"model": "openai:gpt-4o-mini", "api_base": upstream + "/v1", "api_key": key}],
                "to-anthropic": [{"model": "anthropic:claude-haiku-4-5", "api_base": upstream, "api_key": key}],
                "embed": [{"model": "openai:text-embedding-3-small", "api_base": upstream + "/v1", "api_key": key}],
            }
        },
        "tenants": {"bench": {"budget": {"tokens": 10**12, "usd": "1000000"}, "rpm": 10**8, "tpm": 10**12}},
        "api_keys": [{"name": "bench", "key": KEY, "tenant": "bench"}],
    }
    path = work / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", type=int, default=1000, help="sequential requests per target")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of load per target")
    ap.add_argument("--rounds", type=int, default=3, help="alternating floor / gateway rounds (medians reported)")
    args = ap.parse_args()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        raise SystemExit("nginx not found: apt-get install nginx-light (./dev bench installs it)")
    work = Path(tempfile.mkdtemp(prefix="llmc-bench-protocols-"))
    py = sys.executable
    procs: list[gb.Proc] = []
    rounds: dict[str, list[dict[str, float]]] = {}
    try:
        up_port = gb.free_port()
        conf = work / "nginx.conf"
        conf.write_text(gb.nginx_conf(work, up_port, LOCATIONS))
        up = gb.Proc(
            [nginx, "-c", str(conf), "-e", "stderr"], up_port, "/v1/chat/completions", method="POST", body=b"{}"
        )
        procs.append(up)
        floor = gb.start_floor(up.url, py)
        procs.append(floor)
        port = gb.free_port()
        env = {"LLM_CONNECT_HOME": str(work / "home"), "PYTHONPATH": str(ROOT / "src")}
        gw = gb.Proc(
            [py, "-m", "llm_connect.server", "--config", str(gateway_config(work, up.url)), "--port", str(port)],
            port,
            "/health",
            env=env,
        )
        procs.append(gw)
        time.sleep(1.0)
        print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; upstream nginx {up.url}", flush=True)
        auth = {"Authorization": f"Bearer {KEY}"}
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds}", flush=True)
            floors: dict[str, dict[str, float]] = {}
            for name, path, body, floor_path in SURFACES:
                if floor_path not in floors:
                    f = gb.measure(f"floor {floor_path}", floor.url + floor_path, {}, args, floor.p.pid, body)
                    floors[floor_path] = f
                    rounds.setdefault(f"floor {floor_path}", []).append({**f, "p50/floor": 1.0, "rps/floor": 1.0})
                g = gb.measure(name, gw.url + path, auth, args, gw.p.pid, body)
                f = floors[floor_path]
                g["p50/floor"], g["rps/floor"] = g["p50"] / f["p50"], g["rps"] / f["rps"]
                rounds.setdefault(name, []).append(g)
        idle = gb.rss_mb(gw.p.pid)
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"medians over {args.rounds} alternating round(s); each ratio is against the floor of its own path")
    print(
        f"{'target':<26}{'p50 ms':>9}{'p99 ms':>9}{'req/s @32':>11}{'CPU-µs/req':>12}{'p50/floor':>11}{'rps/floor':>11}"
    )
    for name, rows in rounds.items():
        r = {k: statistics.median(x[k] for x in rows) for k in rows[0]}
        print(
            f"{name:<26}{r['p50']:>9.3f}{r['p99']:>9.3f}{r['rps']:>11,.0f}{r['cpu']:>12.0f}"
            f"{r['p50/floor']:>11.2f}{r['rps/floor']:>11.2f}"
        )
    print(f"gateway RSS after the run: {idle:.1f} MB")


if __name__ == "__main__":
    main()
