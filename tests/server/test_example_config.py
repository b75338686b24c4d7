"""The example config shipped in examples/ loads and serves, with the mock server as its providers."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from llm_connect.config import load_config
from llm_connect.testing import MockReply

from .conftest import auth, http

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llm-connect.yaml"
KEY = "demo-key-0123456789"


def test_example_config_is_valid():
    cfg = load_config(EXAMPLE)
    assert cfg.default_model == "quality"
    assert "demo" in cfg.tenants


def test_example_config_serves_and_falls_back(mock, start_gateway):
    raw = yaml.safe_load(EXAMPLE.read_text())
    gw = start_gateway(raw, env={"MOCK_URL": mock.url, "DEMO_KEY": KEY})
    mock.reset()
    status, _, body = http(
        "POST", gw.url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, auth(KEY)
    )
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"].startswith("mock reply")
    # the whole quality group down: the fast group (the mock's Ollama path) answers
    mock.script(MockReply(error="server", provider="anthropic", repeat=True))
    mock.script(MockReply(error="server", provider="openai", repeat=True))
    status, _, body = http(
        "POST", gw.url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, auth(KEY)
    )
    assert status == 200, body
    assert mock.requests[-1]["format"] == "ollama"
    mock.reset()
