"""Bad input never gets a 500 or a traceback: 400 / 401 / 403 / 404 / 405 / 413 / 422, OpenAI-style bodies.
Provider keys never appear in responses or logs."""

from __future__ import annotations

import socket
import time

import orjson
import pytest

from llm_connect.testing import MockReply

from .conftest import ACME_KEY, BETA_KEY, PROVIDER_KEY, GatewayProc, base_config, http

CHAT = "/v1/chat/completions"
TUNED_KEY = "sk-tuned-by-reference-0123456789"
OK_MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    cfg = base_config(mock, d)
    cfg["router"]["groups"]["leaky"] = [{"model": "openai:gpt-leak", "name": "leaky"}]
    cfg["models"]["tuned"] = {
        "model": "openai:gpt-tuned",
        "api_key_env": "TUNED_KEY_FOR_TEST",
        "api_base": mock.openai_base,
    }
    g = GatewayProc(cfg, d, name="bad", env={"TUNED_KEY_FOR_TEST": TUNED_KEY}).start()
    yield g
    g.stop()


def call(gw, path, body=None, *, raw=None, key=ACME_KEY, method="POST", headers=None):
    h = {"Authorization": f"Bearer {key}"} if key else {}
    status, hdrs, data = http(method, gw.url + path, body, headers={**h, **(headers or {})}, raw=raw)
    return status, hdrs, data


def error_of(data: bytes) -> dict:
    body = orjson.loads(data)
    err = body["error"]
    assert set(err) == {"message", "type", "code", "param"}, body
    assert "Traceback" not in err["message"]
    return err


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"model": "plain",}', b"\xff\xfe"])
def test_malformed_json_is_400(gw, raw):
    status, _, data = call(gw, CHAT, raw=raw)
    assert status == 400 and error_of(data)["code"] == "invalid_json"


def test_empty_body_is_400(gw):
    status, _, data = call(gw, "/execute", raw=b"")
    assert status == 400 and orjson.loads(data)["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "plain"}, "messages"),
        ({"model": "plain", "messages": []}, "messages"),
        ({"model": "plain", "messages": "hi"}, "messages"),
        ({"model": "plain", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "plain", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "plain", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "plain", "messages": OK_MSGS, "max_tokens": 0}, "max_tokens"),
        ({"model": "plain", "messages": OK_MSGS, "max_tokens": "10"}, "max_tokens"),
        ({"model": "plain", "messages": OK_MSGS, "temperature": 3}, "temperature"),
        ({"model": "plain", "messages": OK_MSGS, "stream": "yes"}, "stream"),
        ({"model": "plain", "messages": OK_MSGS, "n": 2}, "n"),
        ({"model": "plain", "messages": OK_MSGS, "tools": [{"type": "function"}]}, "tools[0].function.name"),
        ({"model": "plain", "messages": OK_MSGS, "stop": [1, 2]}, "stop"),
        ({"model": 5, "messages": OK_MSGS}, "model"),
        (
            {"model": "plain", "messages": OK_MSGS, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
        ),
    ],
)
def test_schema_errors_are_422_naming_the_field(gw, body, param):
    status, _, data = call(gw, CHAT, body)
    assert status == 422, data
    err = error_of(data)
    assert err["param"] == param and err["code"] == "invalid_field" and param in err["message"]


def test_body_not_an_object_is_422(gw):
    status, _, data = call(gw, CHAT, [1, 2])
    assert status == 422 and error_of(data)["code"] == "invalid_field"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": 7}, "prompt"),
        ({"prompt": "x", "budget": {"total_tokens": 5}}, "budget.id"),
        ({"prompt": "x", "budget": {"id": "b", "total_tokens": -5}}, "budget.total_tokens"),
        ({"prompt": "x", "budget": {"id": "b", "total_usd": "lots"}}, "budget.total_usd"),
        ({"prompt": "x", "temperature": "hot"}, "temperature"),
        ({"prompt": "x", "unknown_field": 1}, "unknown_field"),
    ],
)
def test_execute_schema_errors(gw, body, param):
    status, _, data = call(gw, "/execute", body)
    body = orjson.loads(data)
    assert status == 422 and body["ok"] is False and body["error"]["param"] == param


def test_complete_schema_errors(gw):
    status, _, data = call(gw, "/complete", {"model": "fast", "tenant_id": "acme"})
    assert status == 422 and error_of(data)["param"] == "messages"


def test_body_over_limit_is_413(gw):
    big = {"model": "plain", "messages": [{"role": "user", "content": "x" * 70_000}]}
    status, _, data = call(gw, CHAT, big)
    assert status == 413 and error_of(data)["code"] == "request_too_large"


def test_chunked_body_over_limit_is_413(gw):
    """No Content-Length: the limit is enforced while reading."""
    host, port = "127.0.0.1", gw.port
    body = b'{"model": "plain", "messages": [{"role": "user", "content": "' + b"y" * 80_000 + b'"}]}'
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 8192]), body[i : i + 8192]) for i in range(0, len(body), 8192)
    )
    req = (
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ACME_KEY}\r\n"
        "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(req + chunks + b"0\r\n\r\n")
        resp = b""
        while chunk := s.recv(65536):
            resp += chunk
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    assert b'"request_too_large"' in resp


def test_unknown_model_is_404(gw):
    status, _, data = call(gw, CHAT, {"model": "gpt-17-ultra", "messages": OK_MSGS})
    assert status == 404
    assert error_of(data) == {
        "message": "the model 'gpt-17-ultra' does not exist (see GET /v1/models)",
        "type": "invalid_request_error",
        "code": "model_not_found",
        "param": "model",
    }
    status, _, data = call(gw, CHAT, {"model": "nosuchprovider:x", "messages": OK_MSGS})
    assert status == 404 and error_of(data)["code"] == "model_not_found"


def test_unknown_route_and_method(gw):
    status, _, data = call(gw, "/v2/whatever", {})
    assert status == 404 and error_of(data)["code"] == "not_found"
    status, _, data = call(gw, CHAT, method="GET")
    assert status == 405 and error_of(data)["code"] == "method_not_allowed"


def test_auth_401(gw):
    for headers in ({}, {"Authorization": "Bearer nope-0123456789abcdef"}, {"Authorization": "Basic abc"}):
        status, _, data = http("POST", gw.url + CHAT, {"model": "plain", "messages": OK_MSGS}, headers=headers)
        assert status == 401 and error_of(data)["code"] == "invalid_api_key"
    # x-api-key works as well
    status, _, _ = http("POST", gw.url + CHAT, {"model": "plain", "messages": OK_MSGS}, headers={"x-api-key": ACME_KEY})
    assert status == 200


def test_auth_before_body(gw):
    """401 comes before any parsing of a bad body."""
    status, _, _data = http("POST", gw.url + CHAT, raw=b"{", headers={})
    assert status == 401


def test_403_model_and_tenant(gw):
    status, _, data = call(gw, CHAT, {"model": "quality", "messages": OK_MSGS}, key=BETA_KEY)
    assert status == 403 and error_of(data)["code"] == "model_not_allowed"
    status, _, data = call(gw, CHAT, {"model": "openai:gpt-q", "messages": OK_MSGS}, key=BETA_KEY)
    assert status == 403  # explicit provider:model needs a pattern that allows it
    status, _, data = call(gw, CHAT, {"model": "openai:gpt-x", "messages": OK_MSGS}, key=ACME_KEY)
    assert status == 200  # acme's key allows "*"
    status, _, data = call(gw, CHAT, {"model": "fast", "messages": OK_MSGS, "tenant_id": "acme"}, key=BETA_KEY)
    assert status == 403 and error_of(data)["code"] == "tenant_mismatch"


def test_admin_routes_need_admin(gw):
    status, _, data = call(gw, "/metrics", method="GET", key=ACME_KEY)
    assert status == 403 and error_of(data)["code"] == "admin_required"
    status, _, _ = call(gw, "/metrics", method="GET", key=None)
    assert status == 401


def test_provider_keys_never_leak(gw, mock):
    # a provider that echoes the key in its error message, an auth failure upstream, a broken reply
    mock.script(
        MockReply(model="gpt-leak", status=500, error_message=f"internal: bad token {PROVIDER_KEY}"),
        MockReply(model="gpt-leak", status=401, error_message=f"Incorrect API key provided: {PROVIDER_KEY}"),
        MockReply(model="gpt-leak", fault="malformed"),
    )
    bodies = []
    for _ in range(3):
        time.sleep(0.05)  # past the deployment's (tiny) cooldown
        status, headers, data = call(gw, CHAT, {"model": "leaky", "messages": OK_MSGS})
        assert status in (502, 503), data
        bodies.append(data + orjson.dumps(headers))
        error_of(data)
    for b in bodies:
        assert PROVIDER_KEY.encode() not in b
    assert PROVIDER_KEY not in gw.log()


def test_keys_given_by_env_reference_never_leak(gw, mock):
    mock.script(MockReply(model="gpt-tuned", status=500, error_message=f"credentials: Bearer {TUNED_KEY}"))
    status, _, data = call(gw, CHAT, {"model": "tuned", "messages": OK_MSGS})
    assert status >= 500 and TUNED_KEY.encode() not in data
    assert TUNED_KEY not in gw.log()


def test_never_a_500(gw):
    weird = [
        {"model": "plain", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
        {"model": "plain", "messages": OK_MSGS, "response_format": {"type": "json_schema", "json_schema": {}}},
        {"model": "plain", "messages": OK_MSGS, "tool_choice": {"weird": True}},
        {"model": "plain", "messages": OK_MSGS, "metadata": {"a": "b"}, "user": "u1", "logit_bias": {"1": 2}},
        {"model": "", "messages": OK_MSGS},
        {"model": "plain", "messages": OK_MSGS, "tenant_id": "x" * 500},
        {"model": "plain", "messages": [{"role": "tool", "content": None, "tool_call_id": "a"}]},
        {"model": "plain", "messages": OK_MSGS, "seed": 1e30},
        {"model": "plain", "messages": OK_MSGS, "max_tokens": 1180591620717411303424},
        {"model": "plain", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
    ]
    for body in weird:
        status, _, data = call(gw, CHAT, body)
        assert status < 500, (body, data)
        if status >= 400:
            error_of(data)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-LLM-Budget-Id": "odd-1", "X-LLM-Budget-Tokens": "\u00b2"},
        {"X-LLM-Budget-Id": "odd-2", "X-LLM-Budget-USD": "1e999999999"},
        {"X-LLM-Budget-Id": "odd-3", "X-LLM-Budget-Tokens": "-5"},
    ],
)
def test_odd_budget_headers_are_422(gw, headers):
    import urllib.request

    req = urllib.request.Request(
        gw.url + "/execute",
        data=orjson.dumps({"model": "plain", "prompt": "hi"}),
        method="POST",
        headers={"Authorization": f"Bearer {ACME_KEY}", "Content-Type": "application/json"},
    )
    for k, v in headers.items():  # latin-1 on the wire, as a client library would send it
        req.add_header(k, v.encode("utf-8").decode("latin-1") if not v.isascii() else v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, data = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, data = e.code, e.read()
    assert status == 422, data
    error_of(data)


def test_usage_dates_out_of_range_are_422(gw):
    from .conftest import ADMIN_KEY

    status, _, data = call(gw, "/v1/usage?since=9999-12-31T23:59:59-12:00", method="GET", key=ADMIN_KEY)
    assert status == 422, data


def test_docs_page_script_is_valid_javascript(tmp_path):
    import re
    import shutil
    import subprocess

    from llm_connect.server.openapi import DOCS_HTML

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = tmp_path / "docs.js"
    script.write_bytes(re.search(rb"<script>(.*)</script>", DOCS_HTML, re.S).group(1))
    assert subprocess.run([node, "--check", str(script)], capture_output=True).returncode == 0


def test_clients_cannot_set_the_gateways_own_metadata(gw):
    status, _, data = call(
        gw, "/execute", {"model": "plain", "prompt": "hi", "metadata": {"deployment": "spoofed-xyz", "x": 1}}
    )
    assert status == 200, data
    from .conftest import ADMIN_KEY

    _, _, metrics = call(gw, "/metrics", method="GET", key=ADMIN_KEY)
    assert b"spoofed-xyz" not in metrics


def test_a_ledger_that_cannot_be_opened_is_a_clean_start_up_error(mock, tmp_path):
    import subprocess
    import sys

    cfg = base_config(mock, tmp_path)
    cfg["ledger"] = {"url": "/proc/nope/usage.sqlite3"}
    path = tmp_path / "bad-ledger.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [sys.executable, "-m", "llm_connect.server", "--config", str(path), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "ledger.url" in out.stderr and "Traceback" not in out.stderr


def test_a_body_that_never_arrives_is_408(mock, tmp_path):
    import socket as _socket

    cfg = base_config(mock, tmp_path)
    cfg["server"] = {**cfg.get("server", {}), "request_timeout": 1}
    g = GatewayProc(cfg, tmp_path, name="slowbody").start()
    try:
        with _socket.create_connection(("127.0.0.1", g.port), timeout=10) as s:
            s.sendall(
                b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + ACME_KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
            )
            reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    finally:
        g.stop()


def _nested(depth: int) -> dict:
    d: dict = {"leaf": 1}
    for _ in range(depth - 1):
        d = {"n": d}
    return d


@pytest.mark.parametrize(
    ("metadata", "limit"),
    [
        (_nested(9), "8 levels"),
        (_nested(300), "8 levels"),
        ({f"k{i}": i for i in range(65)}, "64 keys"),
        ({"a": {f"k{i}": i for i in range(40)}, "b": {f"k{i}": i for i in range(40)}}, "64 keys"),
        ({"blob": "x" * 17_000}, "16384"),
    ],
    ids=["9 deep", "300 deep", "65 keys", "80 nested keys", "17 kB"],
)
@pytest.mark.parametrize("path", [CHAT, "/execute", "/complete"])
def test_metadata_beyond_its_bounds_is_422_naming_metadata_and_the_limit(gw, path, metadata, limit):
    body = {"model": "plain", "metadata": metadata}
    body.update({"prompt": "hi"} if path == "/execute" else {"messages": OK_MSGS})
    status, _, data = call(gw, path, body)
    assert status == 422, data
    err = orjson.loads(data)["error"]
    assert err["param"] == "metadata" and err["code"] == "invalid_field"
    assert limit in err["message"] and err["message"].startswith("metadata")


def test_metadata_at_its_bounds_is_accepted(gw):
    for metadata in (_nested(8), {f"k{i}": i for i in range(64)}, {"blob": "x" * 16_000}):
        status, _, data = call(gw, "/execute", {"prompt": "hi", "model": "plain", "metadata": metadata})
        assert status == 200, data
