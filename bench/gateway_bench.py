"""Gateway overhead, side by side in one run, against an instant upstream (nginx from Debian when installed —
``apt-get install nginx-light wrk`` — else a raw asyncio HTTP server, which adds its own latency to every side):

  direct   — the client calls the upstream itself
  floor    — a ~30-line raw-ASGI + aiohttp pass-through proxy on uvicorn (uvloop, httptools): the Python floor
  gateway  — llm-connect with auth, a tenant token + USD budget, rpm/tpm limits, routing, pricing and the
             SQLite ledger (each response sent after its usage event is committed), one worker; the key it is
             called with is declared in the YAML config
  gateway, key from the database
           — the same gateway process called with a key created in the key store through the admin API before
             the rounds (measured on the last ledger mode's gateway: NORMAL unless --sync FULL); in the middle of
             each of its load phases one more key is created through the admin API, so the gateway swaps its key
             table under load (the new key is then checked to authenticate)

For each: sequential p50 / p99 (one keep-alive connection), requests/s at 32 connections (wrk when installed,
else an aiohttp load loop) with the server's CPU time per request, idle RSS and time to ready. Then the stdin
bridge per call vs /execute per call.

The floor and the gateway run side by side and are measured in alternating rounds (floor, gateway, floor,
gateway, ...): a burst of load from elsewhere on a shared VM then hits both sides of a round, and the ratios
reported are the medians of the per-round ratios. The two keys take turns going first within a round.
Targets: gateway p50 <= 3x floor, gateway req/s >= 0.35x floor, idle RSS <= 80 MB, ready <= 1 s; the key from
the database within noise of the key from the config (~1.00x).

    python bench/gateway_bench.py [--seq 2000] [--duration 8] [--rounds 3] [--sync FULL|NORMAL|both]
                                  [--upstream auto|nginx|python] [--keys-only]

--keys-only measures only the two gateway rows (key from the config, key from the database) on one gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key-0123456789abcdef"
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
BODY = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 16})


def stream_body(model: str = "bench") -> bytes:
    """BODY streamed, with the usage chunk asked for."""
    return orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 16,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )


#: the instant upstream when nginx is missing: a chat completion to every POST, and to ``"stream": true`` 11 content
#: chunks and a usage chunk (one write); a unique id per reply (ledgers key on it), fixed width so Content-Length
#: stays the same
UPSTREAM = r"""
import asyncio, itertools, re, sys
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
BODY = (b'{"id":"chatcmpl-%012d","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}')
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY % 0)
CHUNK = (b'data: {"id":"chatcmpl-%012d","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
         b'"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n')
LAST = (b'data: {"id":"chatcmpl-%012d","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
        b'"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":11,"total_tokens":16}}\n\ndata: [DONE]\n\n')
SSE = CHUNK * 11 + LAST
SHEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % len(SSE % ((0,) * 12))
IDS = itertools.count(1)
class P(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.buf = t, b""
    def data_received(self, d):
        self.buf += d
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", self.buf[:i + 2])
            n = int(m.group(1)) if m else 0
            if len(self.buf) < i + 4 + n:
                return
            body = self.buf[i + 4:i + 4 + n]
            self.buf = self.buf[i + 4 + n:]
            k = next(IDS)
            if b'"stream":true' in body.replace(b" ", b""):
                self.t.write(SHEAD + SSE % ((k,) * 12))
            else:
                self.t.write(HEAD + BODY % k)
async def main():
    srv = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await srv.serve_forever()
asyncio.run(main())
"""


def nginx_conf(work: Path, port: int, locations: str) -> str:
    """nginx as an instant upstream on ``port`` (its files under ``work``) with ``locations`` (nginx text)."""
    return f"""\
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        default_type application/json;
{locations}
    }}
}}
"""


#: every POST answered with a chat completion from memory; $request_id (32 random hex digits) keeps each reply's
#: id unique
CHAT_LOCATION = """\
        location / {
            return 200 '{"id":"chatcmpl-$request_id","object":"chat.completion","created":1,"model":"gpt-4o-mini",\
"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],\
"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}';
        }"""

FLOOR = r"""
import os, sys, aiohttp, uvicorn
UP = os.environ["UPSTREAM"]

class Proxy:
    session = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await self.session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body, more = b"", True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        async with self.session.post(UP + scope["path"], data=body,
                                     headers={"Content-Type": "application/json"}) as r:
            data = await r.read()
        await send({"type": "http.response.start", "status": r.status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})

uvicorn.run(Proxy(), host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False, lifespan="on")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Proc:
    def __init__(
        self,
        args: list[str],
        port: int,
        ready_path: str,
        env: dict[str, str] | None = None,
        method: str = "GET",
        body: bytes | None = None,
    ) -> None:
        self.args = args
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        self.p = subprocess.Popen(
            args, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 30
        while True:
            if self.p.poll() is not None:
                raise SystemExit(f"{args[:3]} exited: {self.p.stderr.read().decode()[-2000:]}")
            try:
                req = urllib.request.Request(
                    self.url + ready_path, data=body, method=method, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(req, timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{args[:3]} did not start") from None
                time.sleep(0.01)
        self.ready = time.perf_counter() - t0

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()


async def sequential(url: str, headers: dict[str, str], n: int, body: bytes = BODY) -> list[float]:
    out: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for i in range(n + 200):
            t0 = time.perf_counter()
            async with s.post(url, data=body, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise SystemExit(f"{url}: HTTP {r.status}: {await r.text()}")
            if i >= 200:  # warm-up excluded
                out.append(time.perf_counter() - t0)
    return out


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) and of its live descendants (a server's worker
    processes), in seconds."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):  # gone meanwhile
            continue
    return total / os.sysconf("SC_CLK_TCK")


def wrk_rps(
    url: str,
    headers: dict[str, str],
    duration: float,
    conns: int = 32,
    body: bytes = BODY,
    around: contextlib.AbstractContextManager[Any] | None = None,
) -> tuple[float, str]:
    """(requests/s, "wrk") of a ``duration`` run after a one-second warm-up; ``around`` (a context manager)
    is entered after the warm-up and left when the measured run has ended (a CPU sampler, say)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\n')
        f.write(f"wrk.body = {orjson.dumps(body.decode()).decode()}\n")
        for k, v in {"Content-Type": "application/json", **headers}.items():
            f.write(f'wrk.headers["{k}"] = "{v}"\n')
        script = f.name
    try:
        subprocess.run(["wrk", "-t2", f"-c{conns}", "-d1s", "-s", script, url], capture_output=True, timeout=60)
        with around if around is not None else contextlib.nullcontext():
            out = subprocess.run(
                ["wrk", "-t2", f"-c{conns}", f"-d{duration:g}s", "-s", script, url],
                capture_output=True,
                text=True,
                timeout=duration + 60,
            ).stdout
    finally:
        os.unlink(script)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"wrk output not understood:\n{out}")
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    return float(m.group(1)), "wrk"


async def loop_rps(url: str, headers: dict[str, str], duration: float, conns: int = 32, body: bytes = BODY) -> float:
    done = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conns)) as s:
        stop = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                async with s.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise SystemExit(f"{url}: HTTP {r.status} under load: {await r.text()}")
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(conns)])
        return done / (time.perf_counter() - t0)


def admin_create_key(gw_url: str, name: str) -> tuple[str, float]:
    """A new key of tenant ``bench`` created through the gateway's admin API: (the key, seconds the call took)."""
    req = urllib.request.Request(
        gw_url + "/v1/admin/keys",
        data=orjson.dumps({"tenant": "bench", "name": name}),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_KEY}"},
    )
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            answer = orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"POST /v1/admin/keys: HTTP {exc.code}: {exc.read().decode()[:1000]}") from None
    return answer["key"], time.perf_counter() - t0


class MidLoadChange:
    """One change through the admin API — a new key — made on a thread in the middle of a load phase; then the
    new key must authenticate at once (the gateway's own API swaps its key table before it answers)."""

    def __init__(self, gw_url: str, name: str) -> None:
        self.gw_url = gw_url
        self.name = name
        self.key: str | None = None
        self.seconds = 0.0
        self.error: BaseException | None = None
        self._timer: threading.Timer | None = None

    def start(self, delay: float) -> None:
        self._timer = threading.Timer(delay, self._run)
        self._timer.daemon = True
        self._timer.start()

    def _run(self) -> None:
        try:
            self.key, self.seconds = admin_create_key(self.gw_url, self.name)
        except BaseException as exc:  # reported by finish(), on the main thread
            self.error = exc

    def finish(self) -> float:
        """Wait for the change, check the new key is served; the seconds the admin call took."""
        assert self._timer is not None
        self._timer.join()
        if self.error is not None or self.key is None:
            raise SystemExit(f"the admin API change made under load failed: {self.error}")
        req = urllib.request.Request(
            self.gw_url + "/v1/chat/completions",
            data=BODY,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"the key created under load is not served: HTTP {exc.code}: {exc.read()!r}") from None
        return self.seconds


def rps(
    url: str,
    headers: dict[str, str],
    duration: float,
    pid: int,
    body: bytes = BODY,
    change: MidLoadChange | None = None,
) -> tuple[float, str, float]:
    """(requests/s, tool, server CPU µs per request) at 32 connections; ``change`` is made half-way through."""
    c0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    wrk = shutil.which("wrk") is not None
    if change is not None:
        change.start((1.0 if wrk else 0.0) + duration / 2)  # wrk first warms up for a second
    if wrk:
        r, tool = wrk_rps(url, headers, duration, body=body)
    else:
        r, tool = asyncio.run(loop_rps(url, headers, duration, body=body)), "aiohttp loop"
    wall = time.perf_counter() - t0
    # the warm-up second of wrk is included in both CPU and wall time: scale by the measured rate
    cpu_us = (cpu_seconds(pid) - c0) / max(1.0, r * wall) * 1e6
    return r, tool, cpu_us


def gateway_config(work: Path, upstream: str, sync: str) -> Path:
    cfg = {
        "server": {"host": "127.0.0.1", "log_level": "warning"},
        "ledger": {"url": str(work / f"usage-{sync}.sqlite3"), "synchronous": sync},
        "router": {
            "groups": {
                "bench": [
                    {
                        "model": "openai:gpt-4o-mini",
                        "api_base": upstream + "/v1",
                        "api_key": "sk-bench-upstream-key-000",
                    }
                ]
            }
        },
        "tenants": {"bench": {"budget": {"tokens": 10**12, "usd": "1000000"}, "rpm": 10**8, "tpm": 10**12}},
        "api_keys": [{"name": "bench", "key": KEY, "tenant": "bench"}],
        # for the admin API (keys from the database); the request path looks keys up before the admin key
        "admin_key": ADMIN_KEY,
        "models": {"fake": "fake:echo"},
    }
    path = work / f"gateway-{sync}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def measure(
    name: str,
    url: str,
    headers: dict[str, str],
    args: argparse.Namespace,
    pid: int,
    body: bytes = BODY,
    change: MidLoadChange | None = None,
) -> dict[str, float]:
    lat = asyncio.run(sequential(url, headers, args.seq, body))
    r, tool, cpu = rps(url, headers, args.duration, pid, body, change)
    row = {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "rps": r, "cpu": cpu}
    print(
        f"  {name:<24} p50 {row['p50']:.3f} ms  p99 {row['p99']:.3f} ms  {r:,.0f} req/s ({tool})  {cpu:.0f} CPU-µs/req",
        flush=True,
    )
    return row


def start_upstream(choice: str, work: Path, port: int, py: str, locations: str = CHAT_LOCATION) -> Proc:
    """nginx answering ``locations`` (the Python upstream answers chat completions only)."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if choice == "nginx" and nginx is None:
        raise SystemExit("nginx not found: apt-get install nginx-light (or pass --upstream python)")
    if choice != "python" and nginx is not None:
        conf = work / "nginx.conf"
        conf.write_text(nginx_conf(work, port, locations))
        return Proc([nginx, "-c", str(conf), "-e", "stderr"], port, "/v1/chat/completions", method="POST", body=b"{}")
    return Proc([py, "-c", UPSTREAM, str(port)], port, "/v1/chat/completions", method="POST", body=b"{}")


def start_floor(upstream: str, py: str) -> Proc:
    """The floor proxy (:data:`FLOOR`) in front of ``upstream``, on a free port."""
    port = free_port()
    return Proc(
        [py, "-c", FLOOR, str(port)],
        port,
        "/v1/chat/completions",
        env={"UPSTREAM": upstream},
        method="POST",
        body=b"{}",
    )


def median_row(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}


def bridge_vs_serve(cfg: Path, gw_url: str, n: int) -> tuple[float, float]:
    payload = orjson.dumps({"prompt": "hello there", "model": "bench", "max_tokens": 16})
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "llm_bridge.py"), str(cfg)], input=payload, capture_output=True
        )
        times.append(time.perf_counter() - t0)
        if p.returncode != 0:
            raise SystemExit(f"bridge failed: {p.stdout.decode()} {p.stderr.decode()[-1000:]}")
    lat = asyncio.run(sequential(gw_url + "/execute", {"Authorization": f"Bearer {KEY}"}, 300, payload))
    return statistics.median(times) * 1000, pct(lat, 0.5)


def gateway_rounds(
    gw: Proc,
    sync: str,
    floor: Proc | None,
    with_db_key: bool,
    args: argparse.Namespace,
    floor_rounds: list[dict[str, float]],
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """The alternating rounds on one gateway: the floor (when measured), then the key from the config and — with
    ``with_db_key`` — the key from the database, the two taking turns going first. Per-round ratios are added to
    each gateway row; the floor's rows are appended to ``floor_rounds``. (config-key rounds, database-key rounds)"""
    url = gw.url + "/v1/chat/completions"
    db_key = admin_create_key(gw.url, "bench-db")[0] if with_db_key else None
    gw_rounds: list[dict[str, float]] = []
    db_rounds: list[dict[str, float]] = []
    for rnd in range(args.rounds):
        print(f"round {rnd + 1}/{args.rounds} (ledger {sync})", flush=True)
        f = measure("floor proxy", floor.url + "/v1/chat/completions", {}, args, floor.p.pid) if floor else None
        order = ["config", "db"] if db_key is not None else ["config"]
        side: dict[str, dict[str, float]] = {}
        for which in order if rnd % 2 == 0 else order[::-1]:
            if which == "config":
                side[which] = measure(
                    f"gateway (ledger {sync})", url, {"Authorization": f"Bearer {KEY}"}, args, gw.p.pid
                )
                continue
            change = MidLoadChange(gw.url, f"bench-db-under-load-{rnd + 1}")
            side[which] = measure(
                "gateway (key from DB)", url, {"Authorization": f"Bearer {db_key}"}, args, gw.p.pid, change=change
            )
            side[which]["change_ms"] = change.finish() * 1000
            print(
                f"  {'':<24} a key created through the admin API half-way through the load: answered in "
                f"{side[which]['change_ms']:.1f} ms, the new key served at once",
                flush=True,
            )
        g = side["config"]
        if f is not None:
            floor_rounds.append(f)
            for row in side.values():
                row["p50/floor"] = row["p50"] / f["p50"]
                row["rps/floor"] = row["rps"] / f["rps"]
        gw_rounds.append(g)
        if "db" in side:
            d = side["db"]
            d["p50/config"] = d["p50"] / g["p50"]
            d["p99/config"] = d["p99"] / g["p99"]
            d["rps/config"] = d["rps"] / g["rps"]
            d["cpu/config"] = d["cpu"] / g["cpu"]
            db_rounds.append(d)
    return gw_rounds, db_rounds


def cell(row: dict[str, float], key: str, width: int, spec: str) -> str:
    """``row[key]`` right-aligned in ``width``, or blanks when the row has no such figure."""
    return f"{row[key]:>{width}{spec}}" if key in row else " " * width


def print_table(rows: dict[str, dict[str, float]], rounds: int) -> None:
    width = max(16, *(len(n) + 2 for n in rows))
    print()
    print(f"medians over {rounds} alternating round(s); the ratios are medians of the per-round ratios")
    print(
        f"{'target':<{width}}{'p50 ms':>9}{'p99 ms':>9}{'req/s @32':>11}{'CPU-µs/req':>12}{'p50/floor':>11}"
        f"{'rps/floor':>11}{'idle RSS MB':>13}{'ready s':>9}"
    )
    for name in [n for n in ("direct", "floor") if n in rows] + [k for k in rows if k.startswith("gateway")]:
        r = rows[name]
        print(
            f"{name:<{width}}{r['p50']:>9.3f}{r['p99']:>9.3f}{r['rps']:>11,.0f}{r['cpu']:>12.0f}"
            f"{cell(r, 'p50/floor', 11, '.2f')}{cell(r, 'rps/floor', 11, '.2f')}"
            f"{cell(r, 'rss', 13, '.1f')}{cell(r, 'ready', 9, '.2f')}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", type=int, default=2000, help="sequential requests per target")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds of load per target")
    ap.add_argument("--rounds", type=int, default=3, help="alternating floor / gateway rounds (medians reported)")
    ap.add_argument("--sync", default="both", choices=["FULL", "NORMAL", "both"], help="ledger synchronous mode")
    ap.add_argument("--bridge-calls", type=int, default=10)
    ap.add_argument(
        "--upstream",
        default="auto",
        choices=["auto", "nginx", "python"],
        help="instant upstream (auto: nginx if found)",
    )
    ap.add_argument(
        "--keys-only",
        action="store_true",
        help="only the gateway with the key from the config vs the key from the database (one ledger mode: the "
        "last of --sync)",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmc-bench-"))
    py = sys.executable
    env = {"LLM_CONNECT_HOME": str(work / "home"), "PYTHONPATH": str(ROOT / "src")}
    procs: list[Proc] = []
    rows: dict[str, dict[str, float]] = {}
    syncs = ["FULL", "NORMAL"] if args.sync == "both" else [args.sync]
    if args.keys_only:
        syncs = syncs[-1:]
    db_name = f"gateway {syncs[-1]}, key from the database"
    try:
        up_port = free_port()
        up = start_upstream(args.upstream, work, up_port, py)
        procs.append(up)
        kind = "nginx" if "nginx" in up.args[0] else "python asyncio"
        print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; upstream {kind} {up.url}", flush=True)
        floor = None
        if not args.keys_only:
            rows["direct"] = measure("direct upstream", up.url + "/v1/chat/completions", {}, args, up.p.pid)
            rows["direct"].update(rss=rss_mb(up.p.pid), ready=up.ready)
            floor = start_floor(up.url, py)
            procs.append(floor)
            time.sleep(0.5)
            floor_rss = rss_mb(floor.p.pid)
        floor_rounds: list[dict[str, float]] = []

        for sync in syncs:
            cfg = gateway_config(work, up.url, sync)
            port = free_port()
            gw = Proc(
                [py, "-m", "llm_connect.server", "--config", str(cfg), "--port", str(port)], port, "/health", env=env
            )
            procs.append(gw)
            time.sleep(1.0)
            idle = rss_mb(gw.p.pid)
            gw_rounds, db_rounds = gateway_rounds(gw, sync, floor, sync == syncs[-1], args, floor_rounds)
            rows[f"gateway {sync}"] = median_row(gw_rounds)
            rows[f"gateway {sync}"].update(rss=idle, ready=gw.ready)
            if db_rounds:
                rows[db_name] = median_row(db_rounds)  # the same process: its RSS and start-up are the row above's
            if sync == syncs[-1] and not args.keys_only:
                bridge_ms, serve_ms = bridge_vs_serve(cfg, gw.url, args.bridge_calls)
            gw.stop()
        if floor is not None:
            rows["floor"] = median_row(floor_rounds)
            rows["floor"].update({"rss": floor_rss, "ready": floor.ready, "p50/floor": 1.0, "rps/floor": 1.0})
            floor.stop()
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(work, ignore_errors=True)

    if "floor" in rows:
        fl = rows["floor"]
        rows["direct"]["p50/floor"] = rows["direct"]["p50"] / fl["p50"]
        rows["direct"]["rps/floor"] = rows["direct"]["rps"] / fl["rps"]
    print_table(rows, args.rounds)
    d = rows[db_name]
    print()
    print(
        f"key from the database / key from the config, same gateway (ledger {syncs[-1]}): p50 {d['p50/config']:.2f}x  "
        f"p99 {d['p99/config']:.2f}x  req/s {d['rps/config']:.2f}x  CPU-µs/req {d['cpu/config']:.2f}x"
    )
    print(
        f"admin API change half-way through each database-key load: a new key in {d['change_ms']:.1f} ms (median), "
        "served at once; no request failed"
    )
    if not args.keys_only:
        print(
            f"per call: bridge (new process each) {bridge_ms:.1f} ms  vs  serve (/execute) {serve_ms:.3f} ms  "
            f"-> {bridge_ms / serve_ms:,.0f}x"
        )
        print("targets: p50/floor <= 3.00, rps/floor >= 0.35, idle RSS <= 80 MB, ready <= 1 s; ", end="")
    else:
        print("target: ", end="")
    print("key from the database / from the config within noise (~1.00x)")


if __name__ == "__main__":
    main()
