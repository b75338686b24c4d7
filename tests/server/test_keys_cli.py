"""``llm-connect keys | teams | tenants`` run as a user would (subprocesses): against a live gateway's admin API
and against the key store's database, whose changes the running gateway picks up within a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from .conftest import ADMIN_KEY, GatewayProc, http

MSG = [{"role": "user", "content": "hi"}]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm_connect.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def ok_json(*args: str, env: dict[str, str] | None = None):
    out = cli(*args, "--json", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def chat_status(gw, key):
    return http(
        "POST",
        gw.url + "/v1/chat/completions",
        {"model": "fake", "messages": MSG},
        headers={"Authorization": f"Bearer {key}"},
    )[0]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys-cli")
    cfg = {
        "server": {"host": "127.0.0.1"},
        "ledger": {"url": str(d / "usage.sqlite3")},
        "models": {"fake": "fake:echo"},
        "default_model": "fake",
        "admin_key": ADMIN_KEY,
        "tenants": {"declared": {}},
    }
    g = GatewayProc(cfg, d, name="keys-cli").start()
    g.config_path = d / "keys-cli.yaml"
    yield g
    g.stop()


def test_cli_against_a_live_gateway(gw):
    env = {"LLM_CONNECT_ADMIN_KEY": ADMIN_KEY}
    via = ("--url", gw.url)
    tenant = ok_json("tenants", "create", "cli-http", "--budget-usd", "5", "--budget-period", "monthly", *via, env=env)
    assert tenant["budget"] == {"tokens": None, "usd": "5", "period": "monthly"}
    team = ok_json("teams", "create", "--tenant", "cli-http", "--name", "Search", "--id", "search", *via, env=env)
    assert team["id"] == "search"
    made = ok_json("keys", "create", "-t", "cli-http", "--team", "search", "-n", "bot", "--rpm", "100", *via, env=env)
    assert chat_status(gw, made["key"]) == 200

    table = cli("keys", "list", "--tenant", "cli-http", *via, env=env)
    assert table.returncode == 0 and made["prefix"] in table.stdout and "bot" in table.stdout
    assert made["key"] not in table.stdout  # lists never show the key
    shown = ok_json("keys", "show", made["id"], *via, env=env)
    assert shown["rpm"] == 100 and "key" not in shown
    assert ok_json("keys", "update", made["id"], "--clear", "rpm", "--tpm", "5000", *via, env=env)["rpm"] is None
    assert ok_json("teams", "update", "search", "--budget-tokens", "999", *via, env=env)["budget"]["tokens"] == 999
    assert [t["id"] for t in ok_json("teams", "list", "--tenant", "cli-http", *via, env=env)] == ["search"]

    rotated = ok_json("keys", "rotate", made["id"], *via, env=env)
    assert rotated["key"] != made["key"] and chat_status(gw, made["key"]) == 401
    assert ok_json("keys", "revoke", made["id"], *via, env=env)["status"] == "revoked"
    assert chat_status(gw, rotated["key"]) == 401
    assert ok_json("teams", "delete", "search", *via, env=env)["revoked_at"] is not None

    # refusals are one line on stderr, exit code 1
    out = cli("tenants", "update", "declared", "--rpm", "5", *via, env=env)
    assert out.returncode == 1 and "config" in out.stderr and "409" in out.stderr
    out = cli("keys", "list", *via, env={"LLM_CONNECT_ADMIN_KEY": "wrong-key-0123456789"})
    assert out.returncode == 1 and "401" in out.stderr
    out = cli("keys", "list", *via, env={"LLM_CONNECT_ADMIN_KEY": ""})
    assert out.returncode == 1 and "--admin-key" in out.stderr


def test_cli_against_the_database_reaches_the_running_gateway(gw):
    via = ("--config", str(gw.config_path))
    env = {"LLM_CONNECT_HOME": gw.env["LLM_CONNECT_HOME"]}
    ok_json("tenants", "create", "cli-db", *via, env=env)
    made = ok_json("keys", "create", "--tenant", "cli-db", "--name", "from the db", *via, env=env)
    t0 = time.monotonic()
    while chat_status(gw, made["key"]) != 200:
        assert time.monotonic() - t0 < 1.0, "the gateway did not pick up the key within a second"
        time.sleep(0.02)
    assert made["id"] in {k["id"] for k in ok_json("keys", "list", *via, env=env)}
    # the same store by its path, and the gateway's API, agree
    db = str(gw.workdir / "keys.sqlite3")
    assert ok_json("keys", "show", made["id"], "--db", db)["name"] == "from the db"
    listed = http("GET", gw.url + f"/v1/admin/keys/{made['id']}", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert listed[0] == 200 and json.loads(listed[2])["tenant"] == "cli-db"

    ok_json("keys", "revoke", made["id"], "--db", db)
    t0 = time.monotonic()
    while chat_status(gw, made["key"]) != 401:
        assert time.monotonic() - t0 < 1.0, "the gateway still took a revoked key after a second"
        time.sleep(0.02)

    out = cli("keys", "show", "ghost", "--db", db)
    assert out.returncode == 1 and "no API key" in out.stderr and "404" in out.stderr
    out = cli("keys", "list")
    assert out.returncode == 1 and "--url" in out.stderr
    out = cli("keys", "list", "--db", db, "--url", gw.url)
    assert out.returncode == 1 and "one of" in out.stderr
