"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def pytest_configure(config: pytest.Config) -> None:
    """Make PYTHONPATH absolute, so the processes tests start in another directory (gateways, workers,
    bridges) import the code under test rather than whatever an installed copy points at."""
    paths = os.environ.get("PYTHONPATH")
    if paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in paths.split(os.pathsep) if p)


@pytest.fixture
async def http_route() -> AsyncIterator[Callable[[str, Handler], Awaitable[str]]]:
    """``base = await http_route("/v1/chat/completions", handler)``: a loopback aiohttp server answering one
    POST route with ``handler``; returns ``http://127.0.0.1:<port>``. Stopped after the test."""
    runners: list[web.AppRunner] = []

    async def start(path: str, handler: Handler) -> str:
        app = web.Application()
        app.router.add_post(path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def in_fork() -> Callable[[Callable[[], str]], str]:
    """``text = in_fork(fn)``: run ``fn`` in a forked child (as a prefork server runs its workers) and return
    the text it returned; the child exits at once, without running the parent's clean-up."""

    def run(fn: Callable[[], str]) -> str:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.write(w, fn().encode())
            finally:
                os._exit(0)
        os.close(w)
        try:
            out = b""
            while chunk := os.read(r, 65536):
                out += chunk
        finally:
            os.close(r)
            os.waitpid(pid, 0)
        return out.decode()

    return run
