"""Fixtures for the wire-codec tests: recorded payloads and a stream feeder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llm_connect.types import StreamChunk

PAYLOADS = Path(__file__).parent / "payloads"


def _load(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def _feed(decoder: Any, events: list[dict[str, Any]]) -> list[StreamChunk]:
    """Feed recorded events as the transport would: SSE ``data: [DONE]`` becomes ``{"__done__": True}``."""
    out: list[StreamChunk] = []
    for ev in events:
        data = ev["data"]
        if data == "[DONE]":
            data = {"__done__": True}
        out.extend(decoder.feed(ev["event"], data))
    return out


@pytest.fixture
def payload() -> Callable[[str], Any]:
    """Load a recorded payload from tests/wire/payloads/."""
    return _load


@pytest.fixture
def feed() -> Callable[[Any, list[dict[str, Any]]], list[StreamChunk]]:
    """Feed a list of recorded events into a StreamDecoder; returns the chunks it produced."""
    return _feed
