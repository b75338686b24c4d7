"""Where the cores went during a load phase: each party's CPU time read from /proc before and after, the
connections each worker of a server holds, and shared-state counts (Redis commands, PostgreSQL commits).

Parties: the server measured (its workers, and the supervisor of a multi-worker server), wrk (the bench's
reaped children), the nginx upstream, the Redis server and the PostgreSQL server (the postmaster, its
backends and the backends that exited meanwhile) — the last two when they run on this machine — and, from
/proc/stat, the cores left idle and those every other process of the machine used. Redis's and
PostgreSQL's figures include whatever else uses them at the time (on a shared machine: other benchmarks).
Linux only (reads /proc).
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Sampler", "postgres_counters", "redis_counters", "server_workers"]

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, int, int]:
    """(parent pid, own CPU ticks, CPU ticks of its reaped children)."""
    with open(f"/proc/{pid}/stat") as f:
        x = f.read().rsplit(")", 1)[1].split()
    return int(x[1]), int(x[11]) + int(x[12]), int(x[13]) + int(x[14])


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def _tree(pid: int) -> list[int]:
    todo, out = [pid], []
    while todo:
        p = todo.pop()
        try:
            todo += _children(p)
        except (FileNotFoundError, ProcessLookupError):
            continue
        out.append(p)
    return out


def _cpu(pids: list[int], reaped: int | None = None) -> float:
    """CPU seconds of ``pids``; ``reaped``: also count that process's exited children."""
    ticks = 0
    for p in pids:
        try:
            _, own, kids = _stat(p)
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks += own + (kids if p == reaped else 0)
    return ticks / _TICK


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def server_workers(pid: int) -> list[int]:
    """The processes of a server that serve requests: its multiprocessing workers, or the server itself."""
    workers = []
    for p in _tree(pid)[1:]:
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    workers.append(p)
        except OSError:
            continue
    return sorted(workers) or [pid]


def _connections(port: int, pids: list[int]) -> list[int]:
    """Established TCP connections to local ``port`` held by each of ``pids``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")
    out = []
    for p in pids:
        n = 0
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                try:
                    n += os.readlink(f"/proc/{p}/fd/{fd}") in inodes
                except OSError:
                    continue
        except OSError:
            pass
        out.append(n)
    return out


def redis_counters(url: str) -> tuple[Callable[[], float] | None, Callable[[], int]]:
    """(the Redis server's CPU seconds, or None when it is not a process of this machine; commands served)."""
    import redis

    client = redis.Redis.from_url(url)
    pid = int(client.info("server")["process_id"])

    def commands() -> int:
        stats = client.info("commandstats")
        return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")

    return ((lambda: _cpu([pid])) if "redis" in _comm(pid) else None), commands


def postgres_counters(url: str) -> tuple[Callable[[], float] | None, Callable[[], int]]:
    """(the PostgreSQL server's CPU seconds, or None when it is not on this machine; commits in the URL's
    database). The counter reads PostgreSQL's statistics, which lag by up to a second."""
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    try:
        root = _stat(backend)[0]
    except OSError:
        root = 0

    def commits() -> int:
        sql = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]

    cpu = (lambda: _cpu(_tree(root), reaped=root)) if _comm(root) == "postgres" else None
    return cpu, commits


def _idle() -> float:
    """Seconds the machine's cores spent idle (idle + iowait, summed over the cores) since boot."""
    with open("/proc/stat") as f:
        fields = f.readline().split()  # cpu user nice system idle iowait irq softirq steal ...
    return (int(fields[4]) + int(fields[5])) / _TICK


def _wrk_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it is reaped
    return r.ru_utime + r.ru_stime


class Sampler:
    """A context manager around one load phase: ``Sampler(server_pid, port, upstream_pid, cpu=..., counts=...)``;
    ``cpu`` maps more parties to CPU-seconds readers, ``counts`` names counters (Redis commands, ...). Half-way
    through ``duration`` it counts the connections each worker holds. :meth:`row` gives the figures."""

    def __init__(
        self,
        server_pid: int,
        port: int,
        upstream_pid: int,
        duration: float,
        cpu: dict[str, Callable[[], float] | None] | None = None,
        counts: dict[str, Callable[[], int]] | None = None,
    ) -> None:
        self.server_pid = server_pid
        self.port = port
        self.duration = duration
        self.workers = server_workers(server_pid)
        self.readers: dict[str, Callable[[], float]] = {
            "server": lambda: _cpu(_tree(server_pid)),
            "wrk": _wrk_cpu,
            "nginx": lambda: _cpu([upstream_pid]),
            "idle": _idle,
        }
        self.readers.update({k: v for k, v in (cpu or {}).items() if v is not None})
        self.counts = counts or {}
        self.split: list[int] = []
        self._timer: threading.Timer | None = None

    def _read(self) -> tuple[float, dict[str, float], list[float], dict[str, int]]:
        return (
            time.perf_counter(),
            {k: f() for k, f in self.readers.items()},
            [_cpu([w]) for w in self.workers],
            {k: f() for k, f in self.counts.items()},
        )

    def __enter__(self) -> Sampler:
        self._before = self._read()
        self._timer = threading.Timer(self.duration / 2, self._sample_split)
        self._timer.daemon = True
        self._timer.start()
        return self

    def _sample_split(self) -> None:
        self.split = _connections(self.port, self.workers)

    def __exit__(self, *exc: object) -> None:
        self._after = self._read()
        assert self._timer is not None
        self._timer.cancel()

    def row(self, rps: float) -> dict[str, Any]:
        """Cores each party used (CPU seconds per second of the run), per worker, the server's CPU-µs per
        request, the connection split and each count per request."""
        (t0, c0, w0, n0), (t1, c1, w1, n1) = self._before, self._after
        wall = t1 - t0
        requests = max(1.0, rps * wall)
        out: dict[str, Any] = {f"cores {k}": (c1[k] - c0[k]) / wall for k in c0}
        out["cores workers"] = [(b - a) / wall for a, b in zip(w0, w1, strict=True)]
        out["server cpu us"] = (c1["server"] - c0["server"]) / requests * 1e6
        # whatever else ran meanwhile: the machine's cores less ours and the idle ones
        busy = sum(v for k, v in out.items() if k.startswith("cores ") and k not in ("cores idle", "cores workers"))
        out["cores others"] = max(0.0, (os.cpu_count() or 1) - busy - out["cores idle"])
        out["split"] = self.split
        out.update({f"{k} per req": (n1[k] - n0[k]) / requests for k in n0})
        return out
