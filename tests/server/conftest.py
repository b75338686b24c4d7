"""Fixtures for the gateway tests: real gateway processes on free ports, the shipped mock provider server,
real Redis (a unique namespace per test)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_connect.testing import MockServer

REDIS_URL = os.environ.get("LLMC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: a provider key that must never appear in a gateway response or log
PROVIDER_KEY = "sk-provider-SECRET-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
ACME_KEY = "acme-key-0123456789abcdef-xyz"
BETA_KEY = "beta-key-0123456789abcdef-xyz"
LIMITED_KEY = "limited-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    """A plain urllib call: (status, headers with lower-case names, body) for any status."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


class GatewayProc:
    """``python -m llm_connect.server`` in a subprocess with a YAML config written to ``workdir``."""

    def __init__(
        self, config: dict[str, Any] | None, workdir: Path, *, name: str = "gw", env: dict[str, str] | None = None
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.env = {**os.environ, "LLM_CONNECT_HOME": str(workdir / f"{name}-home"), **(env or {})}
        self.env.pop("LLM_CONNECT_CONFIG", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_seconds = 0.0

    def start(self, timeout: float = 20.0) -> GatewayProc:
        args = [sys.executable, "-m", "llm_connect.server", "--port", str(self.port)]
        if self.config is not None:
            path = self.workdir / f"{self.name}.yaml"
            path.write_text(yaml.safe_dump(self.config, sort_keys=False))
            args += ["--config", str(path)]
        self._log = open(self.log_path, "wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=str(self.workdir)
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=0.5) as r:
                    if r.status == 200:
                        self.ready_seconds = time.perf_counter() - t0
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"gateway did not come up:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def rss_mb(self) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if getattr(self, "_log", None) is not None:
            self._log.close()


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    with MockServer.run_in_thread() as srv:
        yield srv


@pytest.fixture
def clean_mock(mock: MockServer) -> Iterator[MockServer]:
    """The mock with no scripts and no recorded requests left by an earlier test (its scripts cleared after, too);
    a module takes it for every test with ``pytestmark = pytest.mark.usefixtures("clean_mock")``."""
    mock.clear_scripts()
    mock.clear_requests()
    yield mock
    mock.clear_scripts()


@pytest.fixture
def client_key() -> str:
    """The API key the ``client`` fixture sends (a module overrides this fixture to send another)."""
    return ACME_KEY


@pytest.fixture
def client(gw: GatewayProc, client_key: str) -> Iterator[Any]:
    """The official openai SDK, without retries, on the module's ``gw`` gateway."""
    import openai

    with openai.OpenAI(base_url=gw.url + "/v1", api_key=client_key, max_retries=0) as c:
        yield c


def aws_env(workdir: Path) -> dict[str, str]:
    """A gateway's environment for SigV4 with the mock's credentials, found as the AWS chain finds them (the
    environment), and nothing else of the chain (no profile files, no instance metadata)."""
    from llm_connect.testing import MOCK_AWS_ACCESS_KEY_ID, MOCK_AWS_SECRET_ACCESS_KEY

    return {
        "AWS_ACCESS_KEY_ID": MOCK_AWS_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": MOCK_AWS_SECRET_ACCESS_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(workdir / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "none"),
    }


@pytest.fixture
def redis_ns() -> Iterator[str]:
    if not redis_up():
        pytest.skip("Redis not reachable at 127.0.0.1:6379")
    ns = f"llmc-test-{uuid.uuid4().hex[:12]}"
    yield ns
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=f"{ns}*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()


def base_config(mock: MockServer, workdir: Path, **sections: Any) -> dict[str, Any]:
    """Groups on the mock server in three wire formats (seed 002's shape: quality -> fast), tenants, keys."""
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "request_timeout": 20, "max_body_bytes": 65536},
        "ledger": {"url": str(workdir / "usage.sqlite3"), "synchronous": "NORMAL"},
        "providers": {"openai": {"api_key": PROVIDER_KEY, "api_base": mock.openai_base}},
        "router": {
            "groups": {
                "quality": [
                    {
                        "model": "anthropic:claude-q",
                        "name": "q-anthropic",
                        "api_base": mock.anthropic_base,
                        "api_key": PROVIDER_KEY,
                    },
                    {"model": "openai:gpt-q", "name": "q-openai"},
                ],
                "fast": [{"model": "ollama:qwen-fast", "name": "f-ollama", "api_base": mock.ollama_base}],
                "plain": [{"model": "openai:gpt-plain", "name": "p-openai"}],
            },
            "fallbacks": {"quality": ["fast"]},
            "strategy": "ordered",
            "num_retries": 0,
            "cooldown": {"allowed_fails": 100, "cooldown_time": 0.01},
        },
        "models": {"fake": "fake:echo", "gpt": "plain"},
        "default_model": "plain",
        "admin_key": ADMIN_KEY,
        "tenants": {
            "acme": {"budget": {"tokens": 1_000_000}},
            "beta": {"models": ["fast", "plain", "gpt", "fake"]},
        },
        "api_keys": [
            {"name": "acme", "key": ACME_KEY, "tenant": "acme", "models": ["*"]},
            {"name": "beta", "key": BETA_KEY, "tenant": "beta"},
            {"name": "limited", "key": LIMITED_KEY, "tenant": "beta", "rpm": 3},
        ],
        "budgets": {"max_tokens_per_thread": 60},
    }
    cfg.update(sections)
    return cfg


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProc]]:
    procs: list[GatewayProc] = []

    def start(
        config: dict[str, Any] | None, *, name: str | None = None, timeout: float = 20.0, **kw: Any
    ) -> GatewayProc:
        gw = GatewayProc(config, tmp_path, name=name or f"gw{len(procs)}", **kw)
        procs.append(gw)
        return gw.start(timeout)

    yield start
    for gw in procs:
        gw.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
