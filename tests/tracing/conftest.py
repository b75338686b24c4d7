"""Fixtures for the tracing tests: the OpenTelemetry SDK's in-memory exporter as this process's global tracer
provider, the shipped mock provider server, and a real gateway served by uvicorn over loopback inside this
process (so that its spans land in the same exporter; ``tracing.exporter: none`` = the global provider)."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from llm_connect.testing import MockServer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

PROVIDER_KEY = "sk-provider-tracing-0123456789"
ACME_KEY = "acme-key-tracing-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def exporter() -> Any:
    """One InMemorySpanExporter behind the process's global tracer provider (set once per process)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exp = InMemorySpanExporter()
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        pytest.skip("another global tracer provider is set in this process")
    current.add_span_processor(SimpleSpanProcessor(exp))
    return exp


@pytest.fixture
def spans(exporter: Any) -> Iterator[Any]:
    exporter.clear()
    yield exporter
    exporter.clear()


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    with MockServer.run_in_thread() as srv:
        yield srv


def gateway_config(mock: MockServer, workdir: Path, **sections: Any) -> dict[str, Any]:
    """Group ``main`` (OpenAI wire) falls back to ``backup`` (Anthropic wire); ``emb`` embeds; priced models."""
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "request_timeout": 20},
        "ledger": {"url": str(workdir / "usage.sqlite3")},
        "responses": "off",
        "router": {
            "groups": {
                "main": [
                    {
                        "model": "openai:gpt-main",
                        "name": "main-openai",
                        "api_base": mock.openai_base,
                        "api_key": PROVIDER_KEY,
                    }
                ],
                "backup": [
                    {
                        "model": "anthropic:claude-backup",
                        "name": "backup-anthropic",
                        "api_base": mock.anthropic_base,
                        "api_key": PROVIDER_KEY,
                    }
                ],
                "emb": [
                    {
                        "model": "openai:embed-small",
                        "name": "emb-openai",
                        "api_base": mock.openai_base,
                        "api_key": PROVIDER_KEY,
                    }
                ],
            },
            "fallbacks": {"main": ["backup"]},
            "strategy": "ordered",
            "num_retries": 0,
            "cooldown": {"allowed_fails": 100, "cooldown_time": 0.01},
        },
        "pricing": {
            "openai:gpt-main": {"input_per_mtok": "3", "output_per_mtok": "15"},
            "anthropic:claude-backup": {"input_per_mtok": "1", "output_per_mtok": "5"},
            "openai:embed-small": {"input_per_mtok": "0.02"},
        },
        "tenants": {"acme": {"budget": {"tokens": 1_000_000, "usd": "100"}}},
        "api_keys": [{"name": "acme", "key": ACME_KEY, "tenant": "acme", "models": ["*"]}],
        "tracing": {"enabled": True, "exporter": "none"},
    }
    cfg.update(sections)
    return cfg


class InProcessGateway:
    """The gateway app under uvicorn in a thread of this process, on a free loopback port."""

    def __init__(self, config: dict[str, Any]) -> None:
        import uvicorn

        from llm_connect.config import parse_config
        from llm_connect.server.app import Gateway

        self.gateway = Gateway(parse_config(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ledger_path = (config.get("ledger") or {}).get("url")
        cfg = uvicorn.Config(
            self.gateway, host="127.0.0.1", port=self.port, lifespan="on", log_level="warning", loop="asyncio"
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, name="gateway-under-test", daemon=True)

    def __enter__(self) -> InProcessGateway:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the in-process gateway did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {ACME_KEY}", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def ledger_rows(self) -> list[dict[str, Any]]:
        assert self.ledger_path
        with sqlite3.connect(self.ledger_path) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM llm_usage ORDER BY ts")]


@pytest.fixture
def start_gateway(tmp_path: Path, mock: MockServer) -> Iterator[Callable[..., InProcessGateway]]:
    started: list[InProcessGateway] = []

    def start(**sections: Any) -> InProcessGateway:
        gw = InProcessGateway(gateway_config(mock, tmp_path, **sections)).__enter__()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.__exit__(None, None, None)


def wait_spans(exporter: Any, count: int, timeout: float = 5.0) -> list[ReadableSpan]:
    """The finished spans once at least ``count`` have ended (a request's span ends after its answer is sent)."""
    deadline = time.monotonic() + timeout
    while True:
        got = list(exporter.get_finished_spans())
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


def by_kind(spans: list[ReadableSpan], kind: str) -> list[ReadableSpan]:
    return [s for s in spans if s.kind.name == kind]
