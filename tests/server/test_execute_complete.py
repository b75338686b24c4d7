"""/execute and /complete over raw HTTP with the seeds' payloads; the stdin bridge with the same bytes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml

from llm_connect.testing import MockReply

from .conftest import ACME_KEY, BETA_KEY, GatewayProc, base_config, http

# seed 001 (FR-1): the payload the IHF bridge reads from stdin, POSTed as is to /execute
BRIDGE_PAYLOAD = {
    "prompt": "Summarise the proposal in one line.",
    "model": "plain",
    "system_prompt": "You are the triage agent of a collective proposal.",
    "max_tokens": 64,
    "temperature": 0.2,
    "agent": "triage",
    "task_type": "triage",
    "tenant_id": "acme",
}
# seed 002: the orchestrator's call to the LLM pool
COMPLETE_PAYLOAD = {
    "model": "quality",
    "messages": [
        {"role": "system", "content": "Your name is Ava. Your role is support."},
        {"role": "user", "content": "Where is my order?"},
    ],
    "tenant_id": "acme",
}
SRC = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("exec")


@pytest.fixture(scope="module")
def gw(mock, workdir):
    g = GatewayProc(base_config(mock, workdir), workdir, name="exec").start()
    yield g
    g.stop()


def post(gw, path, body, key=ACME_KEY, headers=None, **kw):
    status, hdrs, raw = http(
        "POST", gw.url + path, body, headers={"Authorization": f"Bearer {key}", **(headers or {})}, **kw
    )
    return status, hdrs, orjson.loads(raw)


def test_execute_seed_payload(gw, mock):
    status, headers, body = post(gw, "/execute", BRIDGE_PAYLOAD)
    assert status == 200, body
    assert body["ok"] is True
    assert body["text"] == "mock reply to: Summarise the proposal in one line."
    assert (body["model"], body["provider"], body["finish_reason"]) == ("gpt-plain", "openai", "stop")
    assert set(body["usage"]) == {
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "total_tokens",
    }
    assert body["usage"]["total_tokens"] == body["usage"]["input_tokens"] + body["usage"]["output_tokens"]
    assert body["request_id"] == headers["x-request-id"]
    assert body["latency_ms"] >= 0
    sent = mock.last_request["body"]
    assert sent["messages"][0] == {"role": "system", "content": BRIDGE_PAYLOAD["system_prompt"]}
    assert sent["max_completion_tokens"] == 64 and sent["temperature"] == 0.2


def test_execute_with_messages_and_default_model(gw):
    status, _, body = post(gw, "/execute", {"prompt": [{"role": "user", "content": "hi"}]})
    assert status == 200 and body["ok"] and body["model"] == "gpt-plain"


def test_execute_errors_are_json_with_ok_false(gw):
    status, _, body = post(gw, "/execute", {"prompt": "x", "model": "nope"})
    assert status == 404 and body == {
        "ok": False,
        "error": {
            "type": "invalid_request_error",
            "code": "model_not_found",
            "message": "the model 'nope' does not exist (see GET /v1/models)",
            "param": "model",
        },
    }
    status, _, body = post(gw, "/execute", {"prompt": "x", "max_tokenz": 5})
    assert status == 422 and body["error"]["param"] == "max_tokenz"
    status, _, body = post(gw, "/execute", {"prompt": "x"}, key="bad-key-0123456789")
    assert status == 401 and body["ok"] is False and body["error"]["code"] == "invalid_api_key"


def test_complete_seed_payload(gw, mock):
    status, _, body = post(gw, "/complete", COMPLETE_PAYLOAD)
    assert status == 200, body
    assert body == {
        "content": "mock reply to: Where is my order?",
        "model": "claude-q",
        "usage": {"prompt_tokens": 14, "completion_tokens": 7},
    }
    # the group's primary is the Anthropic deployment
    assert mock.last_request["path"].endswith("/v1/messages")


def test_complete_falls_back_within_and_across_groups(gw, mock):
    mock.script(MockReply(model="claude-q", status=500))
    status, _, body = post(gw, "/complete", COMPLETE_PAYLOAD)
    assert status == 200 and body["model"] == "gpt-q"
    mock.script(MockReply(model="claude-q", status=529), MockReply(model="gpt-q", error="rate_limit", retry_after=0))
    status, _, body = post(gw, "/complete", COMPLETE_PAYLOAD)
    assert status == 200 and body["model"] == "qwen-fast"  # quality -> fast


def test_complete_all_providers_down_is_503(gw, mock):
    mock.script(
        MockReply(model="claude-q", status=500),
        MockReply(model="gpt-q", status=503),
        MockReply(model="qwen-fast", fault="reset"),
    )
    status, _, body = post(gw, "/complete", COMPLETE_PAYLOAD)
    assert status == 503
    assert body["error"] == "All providers unavailable"


def test_complete_tenant_mismatch_is_403(gw):
    status, _, body = post(gw, "/complete", {**COMPLETE_PAYLOAD, "model": "fast", "tenant_id": "acme"}, key=BETA_KEY)
    assert status == 403 and body["error"]["code"] == "tenant_mismatch"


def _bridge(payload: bytes, config: Path | None, env_home: Path) -> tuple[int, dict, str]:
    args = [sys.executable, str(SRC / "scripts" / "llm_bridge.py")]
    if config is not None:
        args.append(str(config))
    env = {"LLM_CONNECT_HOME": str(env_home), "PATH": "/usr/bin:/bin"}
    p = subprocess.run(args, input=payload, capture_output=True, timeout=60, env=env)
    return p.returncode, json.loads(p.stdout), p.stderr.decode()


def test_bridge_same_bytes_same_answer(gw, mock, workdir):
    cfg = workdir / "bridge.yaml"
    cfg.write_text(yaml.safe_dump(base_config(mock, workdir / "bridge")))
    raw = orjson.dumps(BRIDGE_PAYLOAD)
    code, out, err = _bridge(raw, cfg, workdir / "home")
    assert code == 0, (out, err)
    _, _, http_out = post(gw, "/execute", json.loads(raw))
    assert set(out) == set(http_out)
    for k in ("ok", "text", "model", "provider", "finish_reason", "usage", "cost_usd", "tool_calls"):
        assert out[k] == http_out[k], k
    assert "Traceback" not in err


def test_bridge_errors_are_json_with_exit_codes(mock, workdir):
    home = workdir / "home2"
    cfg = workdir / "bridge2.yaml"
    cfg.write_text(yaml.safe_dump(base_config(mock, workdir / "bridge2")))
    code, out, err = _bridge(b"{not json", cfg, home)
    assert code == 2 and out["ok"] is False and out["error"]["code"] == "invalid_json"
    code, out, _ = _bridge(b'{"prompt": "x", "model": "missing"}', cfg, home)
    assert code == 2 and out["error"]["code"] == "model_not_found"
    code, out, _ = _bridge(b'{"prompt": "x", "model": "fake", "budget": {"id": "b", "total_tokens": 2}}', cfg, home)
    assert code == 3 and out["error"]["code"] == "budget_exceeded"
    mock.script(MockReply(model="gpt-plain", status=500, repeat=True))
    try:
        code, out, _ = _bridge(b'{"prompt": "x", "model": "plain"}', cfg, home)
    finally:
        mock.clear_scripts()
    assert code == 4 and out["error"]["code"] == "provider_unavailable"
    bad = workdir / "bad.yaml"
    bad.write_text("server:\n  port: many\n")
    code, out, _ = _bridge(b'{"prompt": "x"}', bad, home)
    assert code == 1 and out["error"]["code"] == "configuration_error" and "server.port" in out["error"]["message"]
    assert "Traceback" not in err


def test_bridge_embedded_default_fake_model(workdir):
    t0 = time.perf_counter()
    code, out, _ = _bridge(b'{"prompt": "ping", "model": "fake"}', None, workdir / "home3")
    assert code == 0 and out["text"] == "echo: ping"
    assert time.perf_counter() - t0 < 5
    assert (workdir / "home3" / "usage.sqlite3").exists()  # the call was written to the default ledger


def test_routing_policy_by_task_type(mock, start_gateway, tmp_path):
    cfg = base_config(mock, tmp_path)
    cfg["policies"] = {
        "rules": [
            {"task_type": "triage", "prefer": [{"group": "fast"}]},
            {"task_type": "autonomous_action", "deny_trust": ["auto_apply"], "prefer": [{"group": "quality"}]},
        ],
        "default": {"group": "plain"},
    }
    gw = start_gateway(cfg, name="policy")
    # no model + a task_type: the policy picks
    status, _, body = post(gw, "/execute", {"prompt": "sort this", "task_type": "triage"})
    assert status == 200 and body["model"] == "qwen-fast"
    status, _, body = post(gw, "/execute", {"prompt": "x", "model": "policy", "task_type": "other"})
    assert status == 200 and body["model"] == "gpt-plain"
    status, _, body = post(
        gw,
        "/execute",
        {"prompt": "x", "model": "policy", "task_type": "autonomous_action", "metadata": {"trust": "auto_apply"}},
    )
    assert status == 403 and body["error"]["code"] == "policy_violation"
    status, _, raw = http("GET", gw.url + "/v1/models", headers={"Authorization": f"Bearer {ACME_KEY}"})
    assert "policy" in {m["id"] for m in orjson.loads(raw)["data"]}


def test_llm_headers_are_validated(gw):
    status, _, body = post(gw, "/execute", {"prompt": "x", "model": "fake"}, headers={"X-LLM-Agent": "a" * 300})
    assert status == 422 and body["error"]["param"] == "X-LLM-Agent"
    status, _, body = post(gw, "/execute", {"prompt": "x", "model": "fake"}, headers={"X-LLM-Thread-Id": "t" * 200})
    assert status == 422 and body["error"]["param"] == "X-LLM-Thread-Id"
    status, _, body = post(gw, "/execute", {"prompt": "x", "model": "fake"}, headers={"X-LLM-Tenant-Id": "acme"})
    assert status == 200
    status, _, body = post(gw, "/execute", {"prompt": "x", "model": "fake"}, headers={"X-LLM-Tenant-Id": "beta"})
    assert status == 403 and body["error"]["code"] == "tenant_mismatch"


def test_the_ledger_records_the_surface_of_each_call(gw, workdir):
    from llm_connect.usage import Ledger

    marks = {}
    for path, body in [
        ("/v1/chat/completions", {"model": "fast", "messages": [{"role": "user", "content": "e1"}]}),
        ("/chat/completions", {"model": "fast", "messages": [{"role": "user", "content": "e2"}]}),
        ("/execute", {"prompt": "e3", "model": "fast"}),
        ("/complete", {"messages": [{"role": "user", "content": "e4"}], "model": "fast"}),
    ]:
        status, hdrs, _ = post(gw, path, body)
        assert status == 200, path
        marks[hdrs["x-request-id"]] = path
    with Ledger.open(workdir / "usage.sqlite3") as led:
        seen = {e.metadata.get("gateway_request_id"): e.endpoint for e in led.query()}
    # both chat paths are one surface; the endpoint is a column, not left in the metadata
    want = {rid: "/v1/chat/completions" if p == "/chat/completions" else p for rid, p in marks.items()}
    assert {rid: seen.get(rid) for rid in marks} == want
