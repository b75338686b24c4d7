"""Fixtures for budget tests: real Redis at 127.0.0.1:6379, one fresh namespace per test."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from llm_connect.budget import BudgetStore, MemoryBudgetStore, RedisBudgetStore

REDIS_URL = os.environ.get("LLMC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


needs_redis = pytest.mark.skipif(not _redis_up(), reason="needs Redis at 127.0.0.1:6379")


def fresh_namespace() -> str:
    return f"llmc-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_store() -> Iterator[RedisBudgetStore]:
    if not _redis_up():
        pytest.skip("needs Redis at 127.0.0.1:6379")
    store = RedisBudgetStore(REDIS_URL, namespace=fresh_namespace())
    try:
        yield store
    finally:
        store.drop_namespace()
        store.close()


@pytest.fixture
def redis_store_factory() -> Iterator[Callable[[], RedisBudgetStore]]:
    """Stores sharing one fresh namespace (as separate processes would)."""
    if not _redis_up():
        pytest.skip("needs Redis at 127.0.0.1:6379")
    ns = fresh_namespace()
    made: list[RedisBudgetStore] = []

    def make() -> RedisBudgetStore:
        store = RedisBudgetStore(REDIS_URL, namespace=ns)
        made.append(store)
        return store

    yield make
    if made:
        made[0].drop_namespace()
    for s in made:
        s.close()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[BudgetStore]:
    """Each contract test runs on both stores: they must behave the same."""
    if request.param == "memory":
        yield MemoryBudgetStore()
    else:
        yield request.getfixturevalue("redis_store")


class Clock:
    """A settable clock for lease expiry and period tests."""

    def __init__(self, now: float | None = None) -> None:
        # near real time: Redis expires period keys by its own clock
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


class TcpProxy:
    """A loopback TCP proxy to Redis that can be cut and restored, to test an unreachable store."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 6379)) -> None:
        self.target = target
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.up = True
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self.up = False
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self._listener.close()


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    if not _redis_up():
        pytest.skip("needs Redis at 127.0.0.1:6379")
    proxy = TcpProxy()
    yield proxy
    proxy.close()
