"""``serve --workers 2`` on Linux: each worker listens on its own socket on the port (SO_REUSEPORT), so the
kernel spreads connections over the workers; a worker killed is replaced while the other serves; SIGTERM
stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import aiohttp
import pytest

from .test_replicas import KEY, replica_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing is Linux's")


def _sockets(port: int, state: str) -> list[str]:
    """The inodes of the TCP sockets on local ``port`` in ``state`` (/proc/net/tcp: 0A listening, 01
    established), as /proc/<pid>/fd links name them."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            f = line.split()
            if f[3] == state and int(f[1].rsplit(":", 1)[1], 16) == port:
                out.append(f"socket:[{f[9]}]")
    return out


def _listeners(port: int) -> int:
    """Sockets listening on ``port``."""
    return len(_sockets(port, "0A"))


def _workers(pid: int) -> list[int]:
    """The gateway's worker processes (multiprocessing children running spawn_main)."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            for child in f.read().split():
                try:
                    with open(f"/proc/{child}/cmdline", "rb") as c:
                        if b"spawn_main" in c.read():
                            out.append(int(child))
                except OSError:
                    continue
    return sorted(out)


def _held(port: int, pids: list[int]) -> list[int]:
    """Established connections to ``port`` that each of ``pids`` holds."""
    inodes = set(_sockets(port, "01"))
    out = []
    for pid in pids:
        n = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                n += os.readlink(f"/proc/{pid}/fd/{fd}") in inodes
            except OSError:
                continue
        out.append(n)
    return out


def _exited(pid: int) -> bool:
    """Gone, or a zombie (its sockets closed) waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _wait(cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


async def _calls(session: aiohttp.ClientSession, url: str, n: int) -> list[int]:
    body = {"model": "slowfake", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}

    async def one() -> int:
        async with session.post(
            url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
        ) as r:
            await r.read()
            return r.status

    return await asyncio.gather(*[one() for _ in range(n)])


@pytest.fixture
def two_workers(start_gateway, tmp_path, redis_ns):
    cfg = replica_config(tmp_path, redis_ns, server={"host": "127.0.0.1", "workers": 2}, tenants={"shared": {}})
    gw = start_gateway(cfg, name="sockets", timeout=40)
    _wait(lambda: _listeners(gw.port) == 2 and len(_workers(gw.proc.pid)) == 2)
    return gw


def test_each_worker_listens_on_the_port_and_takes_a_share_of_the_connections(two_workers) -> None:
    gw = two_workers
    workers = _workers(gw.proc.pid)

    async def run() -> tuple[list[int], list[int]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as s:
            first = await _calls(s, gw.url, 32)  # 32 connections opened at once, kept alive in the pool
            held = _held(gw.port, workers)
            more = await _calls(s, gw.url, 320)
            return first + more, held

    statuses, held = asyncio.run(run())
    assert statuses == [200] * 352
    assert sum(held) == 32
    assert min(held) > 0, held  # hashed: all 32 on one socket has odds of 2 in 2**32


def test_a_killed_worker_is_replaced_while_the_other_serves(two_workers) -> None:
    gw = two_workers
    dead, alive = _workers(gw.proc.pid)
    os.kill(dead, signal.SIGKILL)
    _wait(lambda: _exited(dead))  # its socket is closed: from now on the kernel hashes to the other one

    async def run() -> list[int]:
        out: list[int] = []
        for _ in range(20):  # a new connection each: none is hashed to the dead worker's closed socket
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                out += await _calls(s, gw.url, 1)
        return out

    assert asyncio.run(run()) == [200] * 20
    _wait(lambda: len(_workers(gw.proc.pid)) == 2 and _listeners(gw.port) == 2)
    replaced = _workers(gw.proc.pid)
    assert alive in replaced and dead not in replaced


def test_sigterm_stops_every_worker(two_workers) -> None:
    gw = two_workers
    workers = _workers(gw.proc.pid)
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(timeout=30) == 0
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert _listeners(gw.port) == 0


def test_a_second_server_on_the_port_is_refused_not_joined(two_workers, tmp_path) -> None:
    """The workers' sockets admit only each other: another server started on the same port says so and exits,
    rather than being handed a share of the connections."""
    import subprocess

    import yaml

    gw = two_workers
    path = tmp_path / "second.yaml"
    path.write_text(yaml.safe_dump({**gw.config, "server": {"host": "127.0.0.1", "workers": 2}}))
    env = {**gw.env, "LLM_CONNECT_HOME": str(tmp_path / "second-home")}
    for workers in ("1", "2"):
        cmd = [sys.executable, "-m", "llm_connect.server", "--config", str(path), "--port", str(gw.port)]
        p = subprocess.run([*cmd, "--workers", workers], env=env, capture_output=True, timeout=60)
        assert p.returncode == 2, p.stderr
        assert b"already in use" in p.stderr
    assert _listeners(gw.port) == 2
