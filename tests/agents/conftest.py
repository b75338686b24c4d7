"""Fixtures for the agent tests: real Redis at 127.0.0.1:6379 (a dedicated DB, a fresh namespace and fresh
queue names per session), the shipped mock provider server, a real gateway process, and real Celery worker
processes. Everything started here is stopped here."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_connect.testing import MockServer

#: Celery keys, history and budgets of these tests live in this DB (override with LLMC_AGENTS_TEST_REDIS_DB)
REDIS_DB = int(os.environ.get("LLMC_AGENTS_TEST_REDIS_DB", "9"))
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"

#: mock latency per upstream model of the five fan-out agents: sum 3.0 s, slowest 0.9 s
FAN_LATENCY = {"fan-1": 0.3, "fan-2": 0.45, "fan-3": 0.6, "fan-4": 0.75, "fan-5": 0.9}


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


needs_redis = pytest.mark.skipif(not redis_up(), reason="needs Redis at 127.0.0.1:6379")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes] | None, log: Path, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout} s:\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM (warm shutdown), then SIGKILL — this process only (its own session)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class Session:
    """One test session's names and files."""

    tmp: Path
    namespace: str = field(default_factory=lambda: f"llmc-agt-{uuid.uuid4().hex[:10]}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def queue(self, name: str) -> str:
        return f"{self.namespace}-{name}"


def personas() -> dict[str, Any]:
    lean = {"max_output_tokens": 40}
    return {
        "ada": {
            "role": "customer support agent for ACME",
            "persona": "patient and precise",
            "model_preference": "quality",
            "max_tokens_per_thread": 50_000,
        },
        "thrifty": {"role": "budget-aware assistant", "model_preference": "thresh", "max_tokens_per_thread": 100_000},
        **{f"fan{i}": {"role": f"panel member {i}", "model_preference": f"fan{i}"} for i in range(1, 6)},
        "lead": {
            "role": "lead planner",
            "model_preference": "dlg",
            "max_tokens_per_thread": 1500,
            "may_delegate_to": ["analyst"],
            **lean,
        },
        "analyst": {"role": "analyst", "model_preference": "dlg", "may_delegate_to": ["checker"], **lean},
        "checker": {"role": "fact checker", "model_preference": "dlg", **lean},
        # small thread budgets on an upstream that can count tokens (utilisation to the last tokens)
        "capped2k": {"role": "assistant", "model_preference": "capped", "max_tokens_per_thread": 2_000},
        "capped10k": {"role": "assistant", "model_preference": "capped", "max_tokens_per_thread": 10_000},
    }


def write_config(sess: Session, mock: MockServer, gateway_port: int) -> Path:
    def dep(model: str) -> list[dict[str, Any]]:
        return [{"model": f"openai:{model}", "api_base": mock.openai_base, "api_key": "sk-test-agents"}]

    groups = {
        "quality": dep("mock-quality"),
        "fast": dep("mock-fast"),
        "thresh": dep("mock-thresh"),
        "dlg": dep("mock-dlg"),
    }
    groups |= {f"fan{i}": dep(f"fan-{i}") for i in range(1, 6)}
    groups["capped"] = [{"model": "anthropic:claude-capped", "api_base": mock.anthropic_base, "api_key": "sk-test"}]
    cfg = {
        "server": {"host": "127.0.0.1", "port": gateway_port},
        "redis": {"url": REDIS_URL, "namespace": sess.namespace},
        "ledger": {"url": "off"},
        "router": {"groups": groups, "num_retries": 0},
        "agents": {
            "mode": "gateway",
            "gateway_url": f"http://127.0.0.1:{gateway_port}",
            "broker_url": REDIS_URL,
            "queue": sess.queue("main"),
            "timeout": 20,
            "result_expires_seconds": 600,
            "personas": personas(),
        },
    }
    path = sess.tmp / "llm-connect.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    if not redis_up():
        pytest.skip("needs Redis at 127.0.0.1:6379")
    sess = Session(tmp_path_factory.mktemp("agents"))
    yield sess
    for p in sess.procs:
        stop(p)
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    try:
        for pattern in (f"{sess.namespace}*", f"_kombu.binding*{sess.namespace}*"):
            for key in r.scan_iter(match=pattern, count=1000):
                r.delete(key)
    finally:
        r.close()


@pytest.fixture(scope="session")
def mock() -> Iterator[MockServer]:
    with MockServer.run_in_thread(model_latency=FAN_LATENCY) as srv:
        yield srv


@pytest.fixture(scope="session")
def gateway_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def config_path(session: Session, mock: MockServer, gateway_port: int) -> Path:
    return write_config(session, mock, gateway_port)


def start_gateway_process(session: Session, config_path: Path, port: int, log: Path) -> str:
    """``python -m llm_connect.server`` on ``port`` with ``config_path`` (stopped with the session); its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_connect.server", "--port", str(port), "--config", str(config_path)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "LLM_CONNECT_HOME": str(session.tmp / "home")},
    )
    session.procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", proc, log)
    return url


@pytest.fixture(scope="session")
def gateway(session: Session, config_path: Path, gateway_port: int) -> str:
    """A real gateway process (``python -m llm_connect.server``) in front of the mock server."""
    return start_gateway_process(session, config_path, gateway_port, session.tmp / "gateway.log")


@dataclass
class Workers:
    """Started worker processes on one queue, and how to reach them."""

    queue: str
    names: list[str]
    logs: list[Path]

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs)


def wait_result(result: Any, timeout: float, workers: Workers | None = None) -> Any:
    """The value of a Celery ``AsyncResult``, waited for in slices of ``AsyncResult.get``.

    One ``get`` reads the stored state once, then waits on a pub/sub notification; the Redis result consumer
    can miss one (celery/celery#4039: the result is stored, ``get`` still times out), which would fail a test
    for the client's sake. Each slice starts by reading the stored state again, so a missed notification costs
    a slice, not the test. On a real timeout the assertion names the task's last state and the end of every
    worker log."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    deadline = time.monotonic() + timeout
    while True:
        try:
            return result.get(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
        except CeleryTimeout:
            if time.monotonic() >= deadline:
                logs = "" if workers is None else workers.log_text()[-6000:]
                raise AssertionError(
                    f"task {result.id} still {result.state} after {timeout:g} s; worker logs:\n{logs}"
                ) from None


@pytest.fixture(scope="session")
def celery_client(session: Session) -> Any:
    """The Celery app of llm_connect.agents.tasks, pointed at this session's Redis DB."""
    from llm_connect.agents import tasks

    tasks.app.conf.update(broker_url=REDIS_URL, result_backend=REDIS_URL, task_default_queue=session.queue("main"))
    return tasks.app


@pytest.fixture(scope="session")
def start_workers(session: Session, config_path: Path, celery_client: Any) -> Callable[..., Workers]:
    """Start ``count`` worker processes consuming ``queue``; wait until each answers a control ping."""

    def start(
        tag: str, *, count: int = 1, concurrency: int = 8, env: dict[str, str] | None = None, pool: str = "threads"
    ) -> Workers:
        queue = session.queue(tag)
        names, logs = [], []
        for i in range(count):
            name = f"{tag}{i}-{session.namespace}@{socket.gethostname()}"
            log = session.tmp / f"worker-{tag}{i}.log"
            cmd = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "llm_connect.agents.tasks",
                "worker",
                "-Q",
                queue,
                "-n",
                name,
                "--pool",
                pool,
                "-c",
                str(concurrency),
                "-l",
                "warning",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
            full_env = {
                **os.environ,
                "LLM_CONNECT_CONFIG": str(config_path),
                "LLM_CONNECT_AGENT_QUEUE": queue,
                "LLM_CONNECT_HOME": str(session.tmp / "home"),
                **(env or {}),
            }
            proc = subprocess.Popen(
                cmd, env=full_env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
            )
            session.procs.append(proc)
            names.append(name)
            logs.append(log)
        deadline = time.monotonic() + 60
        pending = set(names)
        while pending and time.monotonic() < deadline:
            for proc, log in zip(session.procs[-count:], logs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            replies = celery_client.control.ping(destination=list(pending), timeout=0.5)
            for r in replies:
                pending -= set(r)
        if pending:
            raise RuntimeError(f"workers {sorted(pending)} did not answer a ping within 60 s")
        return Workers(queue, names, logs)

    return start


@pytest.fixture(scope="session")
def gw_workers(start_workers: Callable[..., Workers], gateway: str) -> Workers:
    """One worker in gateway mode (threads pool, 8 at a time) in front of the running gateway."""
    return start_workers("main", concurrency=8)
