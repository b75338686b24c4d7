"""Start-up (embedded default, time to ready, idle RSS, the auth-off log line) and the YAML config loader
(interpolation, validation errors naming the key path)."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal

import orjson
import pytest
import yaml

from llm_connect.config import EMBEDDED_DEFAULT, ConfigError, hash_key, interpolate, load_config, parse_config

from .conftest import http

# ------------------------------------------------------------------------------------------- start-up


def test_embedded_default_starts_fast_and_small(start_gateway):
    # best of three starts: the figure is about the gateway, not about other load on the machine
    times = []
    for i in range(3):
        gw = start_gateway(None, name=f"default{i}")
        times.append(gw.ready_seconds)
        if gw.ready_seconds <= 1.0:
            break
        gw.stop()
    assert min(times) <= 1.0, f"ready after {times} s"
    time.sleep(0.5)
    rss = gw.rss_mb()
    assert rss <= 80, f"idle RSS {rss:.1f} MB"
    log = gw.log()
    assert "auth is OFF" in log
    status, _, raw = http("GET", gw.url + "/v1/models")
    ids = [m["id"] for m in orjson.loads(raw)["data"]]
    assert ids == ["local", "fake"]
    assert orjson.loads(raw)["data"][0]["default"] is True
    # no key needed with auth off; the fake provider answers
    status, _, raw = http("POST", gw.url + "/execute", {"prompt": "hi", "model": "fake", "tenant_id": "me"})
    assert status == 200 and orjson.loads(raw)["text"] == "echo: hi"


def test_local_model_through_the_gateway(start_gateway):
    pytest.importorskip("llama_cpp")
    gw = start_gateway(None, name="local")
    status, _, raw = http(
        "POST",
        gw.url + "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4, "temperature": 0},
        timeout=120,
    )
    body = orjson.loads(raw)
    assert status == 200, body
    assert body["model"] and body["usage"]["completion_tokens"] >= 1


def test_bad_config_exits_with_a_clear_message(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"api_keys": [{"key": "short", "tenant": "a"}]}))
    p = subprocess.run(
        [sys.executable, "-m", "llm_connect.server", "--config", str(cfg), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2
    assert "api_keys[0].key" in p.stderr and "Traceback" not in p.stderr


def test_bad_router_section_is_refused_before_serving(tmp_path):
    cfg = tmp_path / "bad-router.yaml"
    cfg.write_text(yaml.safe_dump({"router": {"groups": {"g": [{"model": "openai:x", "wieght": 2}]}}}))
    p = subprocess.run(
        [sys.executable, "-m", "llm_connect.server", "--config", str(cfg), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2 and "router" in p.stderr and "wieght" in p.stderr and "Traceback" not in p.stderr


def test_workers_without_redis_are_refused_when_budgets_exist(tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text(yaml.safe_dump({"server": {"workers": 2}, "tenants": {"t": {"budget": {"tokens": 5}}}}))
    p = subprocess.run(
        [sys.executable, "-m", "llm_connect.server", "--config", str(cfg), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2 and "server.workers" in p.stderr and "redis" in p.stderr


# ------------------------------------------------------------------------------------------- config


def test_embedded_default(tmp_path):
    cfg = load_config(None, environ={"LLM_CONNECT_HOME": str(tmp_path)})
    assert cfg.source == "<embedded>"
    assert cfg.auth is False and cfg.server.host == "127.0.0.1"
    assert dict(cfg.models) == {"local": "local:smollm2-135m", "fake": "fake:echo"}
    assert cfg.default_model == "local"
    assert cfg.ledger is not None and cfg.ledger.url.endswith("usage.sqlite3")
    assert yaml.safe_load(EMBEDDED_DEFAULT)["auth"] is False


def test_env_interpolation():
    env = {"A": "one", "EMPTY": ""}
    assert interpolate("x-${A}-y", "p", env) == "x-one-y"
    assert interpolate("${MISSING:-fallback}", "p", env) == "fallback"
    assert interpolate("${EMPTY:-fallback}", "p", env) == "fallback"
    assert interpolate("$${A}", "p", env) == "${A}"
    assert interpolate({"k": ["${A}", 3]}, "", env) == {"k": ["one", 3]}
    with pytest.raises(ConfigError) as ei:
        interpolate({"providers": {"openai": {"api_key": "${NOPE}"}}}, "", env)
    assert ei.value.path == "providers.openai.api_key" and "NOPE" in str(ei.value)


def test_full_config_parses_with_env(tmp_path):
    doc = {
        "server": {"port": "${PORT:-8123}", "workers": 1, "max_body_bytes": 2048},
        "redis": {"url": "redis://127.0.0.1:6379/3", "namespace": "prod"},
        "ledger": {"url": str(tmp_path / "l.db"), "synchronous": "normal"},
        "providers": {"OpenAI": {"api_key": "${OPENAI_KEY}"}},
        "router": {"groups": {"fast": ["fake:echo"]}},
        "models": {"f": "fast", "raw": {"model": "openai:gpt-4o-mini", "api_key_env": "X"}},
        "tenants": {"acme": {"budget": {"usd": "12.50", "period": "monthly"}, "rpm": 60, "models": ["fast"]}},
        "api_keys": [
            {"key": "${ACME_KEY}", "tenant": "acme", "tpm": 1000},
            {"key_sha256": hash_key("another-key-0123456789"), "tenant": "acme", "name": "k2"},
        ],
        "admin_key": "${ADMIN:-admin-0123456789abcdef}",
        "budgets": {"max_tokens_per_thread": 1000, "delegated_max_tokens": 5000},
        "pricing": {"openai:my-model": {"input_per_mtok": 1, "output_per_mtok": 2}},
        "agents": {"personas": {"triage": {"persona": "x"}}},
    }
    env = {"OPENAI_KEY": "sk-abcdef123456", "ACME_KEY": "acme-key-0123456789"}
    cfg = parse_config(doc, environ=env)
    assert cfg.server.port == 8123 and cfg.server.max_body_bytes == 2048
    assert cfg.redis is not None and cfg.redis.namespace == "prod"
    assert cfg.ledger is not None and cfg.ledger.synchronous == "NORMAL"
    assert cfg.providers["openai"].api_key == "sk-abcdef123456"
    assert cfg.tenants["acme"].budget is not None and cfg.tenants["acme"].budget.usd == Decimal("12.50")
    assert cfg.api_keys[0].key_hash == hash_key("acme-key-0123456789") and cfg.api_keys[0].name == "key0"
    assert cfg.auth is True and cfg.admin_key_hash == hash_key("admin-0123456789abcdef")
    assert cfg.default_model == "fast"
    assert dict(cfg.agents) == {"personas": {"triage": {"persona": "x"}}}
    assert "sk-abcdef123456" in cfg.secrets()
    assert "acme-key" not in repr(cfg) and "sk-abcdef" not in repr(cfg)


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"server": {"port": "x"}}, "server.port"),
        ({"server": {"port": 70000}}, "server.port"),
        ({"server": {"prot": 1}}, "server.prot"),
        ({"servr": {}}, "servr"),
        ({"redis": {"url": "http://x"}}, "redis.url"),
        ({"ledger": {"url": "mysql://x"}}, "ledger.url"),
        ({"ledger": {"synchronous": "SOMETIMES"}}, "ledger.synchronous"),
        ({"tenants": {"a": {"budget": {"usd": "-1"}}}}, "tenants.a.budget.usd"),
        ({"tenants": {"a": {"budget": {"period": "weekly", "tokens": 1}}}}, "tenants.a.budget.period"),
        ({"tenants": {"a": {"budget": {}}}}, "tenants.a.budget.tokens"),
        ({"tenants": {"a": {"rpm": 0}}}, "tenants.a.rpm"),
        ({"api_keys": [{"tenant": "a"}]}, "api_keys[0].key"),
        ({"api_keys": [{"key": "k" * 20}]}, "api_keys[0].tenant"),
        ({"api_keys": [{"key_sha256": "abc", "tenant": "a"}]}, "api_keys[0].key_sha256"),
        ({"tenants": {"a": {}}, "api_keys": [{"key": "k" * 20, "tenant": "b"}]}, "api_keys[0].tenant"),
        ({"api_keys": [{"key": "k" * 20, "tenant": "a"}, {"key": "k" * 20, "tenant": "a"}]}, "api_keys[1].key"),
        ({"auth": True, "keys": "off"}, "auth"),
        ({"models": {"m": "nothing-known"}}, "models.m"),
        ({"router": {"groups": {"g": ["fake:x"]}}, "models": {"g": "fake:y"}}, "models.g"),
        ({"default_model": "ghost"}, "default_model"),
        ({"budgets": {"thresholds": [2]}}, "budgets.thresholds"),
        ({"budgets": {"on_unavailable": "maybe"}}, "budgets.on_unavailable"),
        ({"pricing": {"m": 5}}, "pricing.m"),
    ],
)
def test_errors_name_the_key(doc, path):
    with pytest.raises(ConfigError) as ei:
        parse_config(doc, source="test.yaml", environ={})
    assert ei.value.path == path, str(ei.value)
    assert str(ei.value).startswith(f"test.yaml: {path}:")


def test_yaml_syntax_error_names_the_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("server:\n  port: 1\n bad indent: [\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert "line" in str(ei.value) and str(p) in str(ei.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path / "nope.yaml")
    assert "cannot read" in str(ei.value)


def test_a_router_deployment_with_an_unknown_provider_is_refused_at_start(mock, tmp_path):
    import subprocess
    import sys

    import yaml

    from .conftest import base_config

    cfg = base_config(mock, tmp_path)
    cfg["router"]["groups"]["q"] = [{"model": "nope:x"}]
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [sys.executable, "-m", "llm_connect.server", "--config", str(path), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "unknown provider 'nope'" in out.stderr and "Traceback" not in out.stderr


def test_the_bridge_accepts_a_utf8_bom(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "llm_bridge.py"
    out = subprocess.run(
        [sys.executable, str(script)],
        input=b'\xef\xbb\xbf{"prompt": "x", "model": "fake:echo"}',
        capture_output=True,
        timeout=60,
        env={**__import__("os").environ, "LLM_CONNECT_HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_broken_agents_section_is_a_start_up_error(mock, tmp_path):
    import subprocess
    import sys

    import yaml

    from .conftest import base_config

    cfg = base_config(mock, tmp_path)
    cfg["agents"] = {"personas": {"ada": {"role": "x", "may_delegate_to": ["ghost"]}}}
    path = tmp_path / "agents.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [sys.executable, "-m", "llm_connect.server", "--config", str(path), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "agents" in out.stderr and "ghost" in out.stderr and "Traceback" not in out.stderr


def test_an_unset_variable_error_names_the_file(tmp_path, monkeypatch):
    from llm_connect.config import ConfigError, load_config

    monkeypatch.delenv("SURELY_UNSET_PORT", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: ${SURELY_UNSET_PORT}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "server.port" in str(info.value)


def test_usage_groupings_that_need_the_ledger_are_422_without_it(mock, tmp_path, start_gateway):
    from .conftest import ADMIN_KEY, base_config, http

    cfg = base_config(mock, tmp_path)
    cfg["ledger"] = {"url": "off"}
    gw = start_gateway(cfg, name="noledger")
    hdr = {"Authorization": f"Bearer {ADMIN_KEY}"}
    status, _, raw = http("GET", gw.url + "/v1/usage?group_by=day", headers=hdr)
    assert status == 422 and b"group_by" in raw
    status, _, _ = http("GET", gw.url + "/v1/usage?group_by=model", headers=hdr)
    assert status == 200
