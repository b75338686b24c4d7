"""Keys made live across replicas, and the tenant -> team -> key budget chain under load.

* two gateway processes sharing PostgreSQL (key store and ledger) and Redis: a key created on one works on the
  other within a second; revoked, it is refused by both within a second;
* the same with SQLite and no Redis (the poll alone);
* 500 concurrent calls against the mock server: a team cap binds before a larger key cap, and a key cap before
  a larger team cap (across two replicas sharing Redis); never a token over the cap that binds, and exactly one
  ledger row per call that was charged.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from collections import Counter

import aiohttp
import orjson
import pytest

from .conftest import ADMIN_KEY, REDIS_URL, http

PG_URL = os.environ.get("LLM_CONNECT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MSG = [{"role": "user", "content": "one two three"}]
N = 500


@pytest.fixture
def pg_names():
    """(key-store table prefix, ledger table) unique to the test in the test PostgreSQL database; dropped after."""
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=2):
            pass
    except Exception:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    tag = uuid.uuid4().hex[:10]
    names = (f"k{tag}_", f"u{tag}")
    yield names
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for t in ("tenants", "teams", "api_keys", "keys_state"):
            conn.execute(f"DROP TABLE IF EXISTS {names[0]}{t}")
        conn.execute(f"DROP TABLE IF EXISTS {names[1]}")


def gateway_config(mock, **sections):
    cfg = {
        "server": {"host": "127.0.0.1", "request_timeout": 30},
        "providers": {"openai": {"api_key": "sk-mock-0123456789", "api_base": mock.openai_base}},
        "router": {"groups": {"plain": [{"model": "openai:gpt-plain", "name": "p-openai"}]}, "num_retries": 0},
        "default_model": "plain",
        "admin_key": ADMIN_KEY,
    }
    cfg.update(sections)
    return cfg


def admin(url, method, path, body=None):
    status, _, raw = http(method, url + path, body, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert status in (200, 201), raw
    return orjson.loads(raw)


def chat_status(url, key):
    status, _, _ = http(
        "POST",
        url + "/v1/chat/completions",
        {"messages": MSG, "max_tokens": 3},
        headers={"Authorization": f"Bearer {key}"},
        timeout=5,
    )
    return status


def models_status(url, key):
    return http("GET", url + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=5)[0]


def seconds_until(cond, limit=5.0):
    """Seconds until ``cond()`` holds (polled every 20 ms); fails after ``limit``."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > limit:
            pytest.fail(f"not within {limit} s")
        time.sleep(0.02)
    return time.monotonic() - t0


def check_life_cycle_across(a, b):
    admin(a.url, "POST", "/v1/admin/tenants", {"id": "live"})
    created = admin(a.url, "POST", "/v1/admin/keys", {"tenant": "live", "name": "made on a"})
    key = created["key"]
    assert chat_status(a.url, key) == 200  # the replica that made it: at once
    assert seconds_until(lambda: chat_status(b.url, key) == 200) < 1.0

    admin(b.url, "POST", f"/v1/admin/keys/{created['id']}/revoke")
    t0 = time.monotonic()
    assert chat_status(b.url, key) == 401
    seconds_until(lambda: chat_status(a.url, key) == 401)
    assert time.monotonic() - t0 < 1.0
    # a listing on either replica shows the same record
    for gw in (a, b):
        assert admin(gw.url, "GET", f"/v1/admin/keys/{created['id']}")["status"] == "revoked"


def test_key_life_cycle_on_two_replicas_sharing_postgresql_and_redis(start_gateway, mock, redis_ns, pg_names):
    prefix, ledger_table = pg_names
    cfg = gateway_config(
        mock,
        redis={"url": REDIS_URL, "namespace": redis_ns},
        ledger={"url": PG_URL, "table": ledger_table},
        keys={"table_prefix": prefix},  # the store's default database: the ledger's
    )
    a = start_gateway(cfg, name="keys-pg-a")
    b = start_gateway(cfg, name="keys-pg-b")
    check_life_cycle_across(a, b)
    import psycopg

    with psycopg.connect(PG_URL) as conn:  # the keys are in PostgreSQL, beside the ledger
        assert conn.execute(f"SELECT COUNT(*) FROM {prefix}api_keys WHERE tenant_id = 'live'").fetchone()[0] == 1


def test_key_life_cycle_on_two_replicas_sharing_sqlite_by_polling_alone(start_gateway, mock, tmp_path):
    cfg = gateway_config(mock, ledger={"url": str(tmp_path / "usage.sqlite3")})  # keys.sqlite3 beside it
    a = start_gateway(cfg, name="keys-sqlite-a")
    b = start_gateway(cfg, name="keys-sqlite-b")
    check_life_cycle_across(a, b)
    assert (tmp_path / "keys.sqlite3").exists()


async def _fire(urls, key, n):
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as s:

        async def one(i):
            body = {"messages": [{"role": "user", "content": f"call {i} of many"}], "max_tokens": 4}
            async with s.post(
                urls[i % len(urls)] + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            ) as r:
                return r.status, orjson.loads(await r.read())

        return await asyncio.gather(*[one(i) for i in range(n)])


def check_cap(results, ledger_path, tenant, cap, binding):
    statuses = Counter(s for s, _ in results)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[200] > 5 and statuses[429] > 100, statuses
    spent = 0
    for status, body in results:
        if status == 200:
            spent += body["usage"]["total_tokens"]
        else:
            err = body["error"]
            assert err["code"] == "budget_exceeded" and err["type"] == "insufficient_quota"
            assert f"budget '{binding}'" in err["message"], err["message"]
    assert spent <= cap
    conn = sqlite3.connect(ledger_path)
    try:
        rows, total = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(total_tokens), 0) FROM llm_usage WHERE tenant_id = ?", (tenant,)
        ).fetchone()
    finally:
        conn.close()
    assert rows == statuses[200] and total == spent  # one ledger row per charged call, and nothing else


def test_team_cap_binds_before_a_larger_key_cap(start_gateway, mock, tmp_path):
    gw = start_gateway(gateway_config(mock, ledger={"url": str(tmp_path / "usage.sqlite3")}), name="team-cap")
    admin(gw.url, "POST", "/v1/admin/tenants", {"id": "hier", "budget": {"tokens": 1_000_000}})
    admin(
        gw.url, "POST", "/v1/admin/teams", {"tenant": "hier", "name": "small", "id": "small", "budget": {"tokens": 300}}
    )
    key = admin(gw.url, "POST", "/v1/admin/keys", {"tenant": "hier", "team": "small", "budget": {"tokens": 5000}})
    results = asyncio.run(_fire([gw.url], key["key"], N))
    check_cap(results, tmp_path / "usage.sqlite3", "hier", 300, "team:hier:small")


def test_key_cap_binds_before_a_larger_team_cap_across_replicas(start_gateway, mock, tmp_path, redis_ns):
    cfg = gateway_config(
        mock, ledger={"url": str(tmp_path / "usage.sqlite3")}, redis={"url": REDIS_URL, "namespace": redis_ns}
    )
    a = start_gateway(cfg, name="key-cap-a")
    b = start_gateway(cfg, name="key-cap-b")
    admin(a.url, "POST", "/v1/admin/tenants", {"id": "hier2"})
    admin(a.url, "POST", "/v1/admin/teams", {"tenant": "hier2", "name": "big", "id": "big", "budget": {"tokens": 5000}})
    key = admin(a.url, "POST", "/v1/admin/keys", {"tenant": "hier2", "team": "big", "budget": {"tokens": 300}})
    seconds_until(lambda: models_status(b.url, key["key"]) == 200)  # b knows the key (nothing charged)
    results = asyncio.run(_fire([a.url, b.url], key["key"], N))
    check_cap(results, tmp_path / "usage.sqlite3", "hier2", 300, f"key:{key['id']}")
