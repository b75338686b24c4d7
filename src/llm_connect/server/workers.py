"""``serve(workers=N)`` on Linux: N worker processes, each with its own listening socket on the same port
(``SO_REUSEPORT``), so the kernel spreads connections by hashing each one to a worker.

uvicorn's own ``workers=N`` shares one listening socket, and whichever worker accepts first takes every
connection waiting: 32 connections opened at once were split 32/0, 27/5 and 25/7 now and then (a worker with
few connections idles while its calls wait on the ledger's commit). Hashing gives about half each, and never
all to one; a worker that dies takes its socket with it, so new connections go to the others until it is
replaced.

The parent process only supervises: it starts the workers (``spawn``: a fresh interpreter each, importing the
app through :func:`~llm_connect.server.app._factory`), restarts one that dies, stops every worker with SIGTERM
on SIGINT / SIGTERM (each finishes its requests and flushes its budget slices and ledger within uvicorn's
graceful shutdown), and exits with the failure of a worker that could not start (a port it cannot bind, an
app that fails to build) rather than retrying it. Elsewhere ``serve`` uses uvicorn's shared socket.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import signal
import socket
import sys
import threading
from typing import Any

__all__ = ["reuse_port_supported", "run_workers"]

log = logging.getLogger("llm_connect.server")

#: uvicorn's exit code for a worker that failed before serving (uvicorn.config.STARTUP_FAILURE)
_STARTUP_FAILURE = 3


def reuse_port_supported() -> bool:
    """True where ``SO_REUSEPORT`` balances TCP connections between sockets (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to the shared port, not yet listening: uvicorn listens on it once the app has started,
    so the kernel hashes no connection to a worker that cannot answer yet."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(opts: dict[str, Any], app: str, factory: bool) -> None:
    """A worker process: its own socket on the shared port, uvicorn serving ``app`` (an import string)."""
    import uvicorn

    config = uvicorn.Config(app, factory=factory, **opts)
    try:
        sock = _bind(opts["host"], opts["port"])
    except OSError as exc:
        print(f"error: worker cannot listen on {opts['host']}:{opts['port']}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(_STARTUP_FAILURE) from None
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(
    workers: int, opts: dict[str, Any], app: str = "llm_connect.server.app:_factory", *, factory: bool = True
) -> int:
    """Supervise ``workers`` processes serving ``app`` with ``opts`` (uvicorn.Config keywords, ``host`` and
    ``port`` included) until SIGINT / SIGTERM; returns the exit code (0, or a worker's start-up failure)."""
    ctx = multiprocessing.get_context("spawn")
    stop = threading.Event()
    procs: list[Any] = []

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def start() -> Any:
        p = ctx.Process(target=_worker, args=(opts, app, factory), name="llm-connect-worker")
        p.start()
        return p

    code = 0
    try:
        procs = [start() for _ in range(workers)]
        while not stop.is_set():
            multiprocessing.connection.wait([p.sentinel for p in procs], timeout=0.25)  # a worker exited, or look
            for i, p in enumerate(procs):
                if p.is_alive() or stop.is_set():
                    continue
                if p.exitcode == _STARTUP_FAILURE:
                    log.error("worker %s failed to start: stopping", p.pid)
                    code = _STARTUP_FAILURE
                    stop.set()
                    break
                log.warning("worker %s exited (code %s): starting another", p.pid, p.exitcode)
                procs[i] = start()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: uvicorn's graceful shutdown
        deadline = float(opts.get("timeout_graceful_shutdown") or 10) + 5
        for p in procs:
            p.join(deadline)
            if p.is_alive():
                p.kill()
                p.join()
        for s, h in previous.items():
            signal.signal(s, h)
    return code
