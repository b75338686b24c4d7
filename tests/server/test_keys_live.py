"""The gateway's key table and the store, in process: a change reaches another engine through Redis in
milliseconds and through the poll alone within half a second; the request path reads no database; a gateway
keeps the keys its own file declares whatever another gateway sharing the store declares; the config's new
sections are validated with errors naming the key."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import pytest

from llm_connect.config import ConfigError, parse_config
from llm_connect.server.engine import CallSpec, Engine
from llm_connect.server.errors import ApiError

from .conftest import REDIS_URL, redis_up

ADMIN = "admin-key-0123456789abcdef"
CFG_KEY = "config-key-0123456789abcdef"


def config(tmp_path, **extra):
    doc = {
        "admin_key": ADMIN,
        "ledger": "off",
        "keys": {"url": str(tmp_path / "keys.sqlite3")},
        "models": {"fake": "fake:echo"},
        "default_model": "fake",
    }
    doc.update(extra)
    return parse_config(doc)


def bearer(key):
    return {"authorization": f"Bearer {key}"}


async def propagation(a: Engine, b: Engine, n: int = 6) -> list[float]:
    """Seconds from a change made through ``a``'s API path until ``b`` authenticates the new key."""
    await asyncio.to_thread(a.keys.create_tenant, f"t{uuid.uuid4().hex[:6]}")
    tenant = a.keys.list_tenants()[-1].id
    out = []
    for i in range(n):
        _, plain = await asyncio.to_thread(a.keys.create_key, tenant, f"k{i}")
        await asyncio.sleep(0.07 * i)  # changes land at different points of b's poll cycle
        t0 = time.monotonic()
        await a.keyring.changed()
        while True:
            try:
                b.auth.authenticate(bearer(plain))
                break
            except ApiError:
                if time.monotonic() - t0 > 2:
                    pytest.fail("the key did not reach the other engine within 2 s")
                await asyncio.sleep(0.002)
        out.append(time.monotonic() - t0)
    return out


async def test_a_change_reaches_another_replica_through_redis_at_once_and_by_the_poll_within_half_a_second(
    tmp_path,
):
    if not redis_up():
        pytest.skip("Redis not reachable at 127.0.0.1:6379")
    ns = f"llmc-test-{uuid.uuid4().hex[:10]}"
    pushed = config(tmp_path, redis={"url": REDIS_URL, "namespace": ns})
    polled = config(tmp_path)
    for cfg, check in ((pushed, lambda t: statistics.median(t) < 0.15), (polled, lambda t: max(t) < 0.75)):
        a, b = Engine(cfg, metrics=False), Engine(cfg, metrics=False)
        await a.start()
        await b.start()
        await asyncio.sleep(0.2)  # b's listener has subscribed
        try:
            times = await propagation(a, b)
        finally:
            await a.aclose()
            await b.aclose()
        assert max(times) < 1.0 and check(times), times


async def test_the_request_path_reads_no_database(tmp_path):
    engine = Engine(config(tmp_path, keys={"url": str(tmp_path / "keys.sqlite3"), "poll_seconds": 0.5}), metrics=False)
    await engine.start()
    try:
        engine.keys.create_tenant("t")
        _, plain = engine.keys.create_key("t", "k")
        await engine.keyring.changed()
        statements: list[str] = []
        engine.keys._connection().set_trace_callback(statements.append)  # every SQL statement the store runs
        t0 = time.monotonic()
        for i in range(300):
            principal = engine.auth.authenticate(bearer(plain))
            prep = await engine.prepare(principal, CallSpec(prompt=f"hi {i}", model="fake"), f"r{i}")
            await engine.complete(prep)
        elapsed = time.monotonic() - t0
        polls = [s for s in statements if "keys_state" in s and s.lstrip().upper().startswith("SELECT")]
        others = [
            s
            for s in statements
            if s not in polls and "last_used_at" not in s and s not in ("BEGIN IMMEDIATE", "COMMIT")
        ]
        assert others == [], others  # only the poll (every 0.5 s) and the batched last-use write
        assert len(polls) <= elapsed / 0.5 + 2
    finally:
        await engine.aclose()


async def test_a_gateway_keeps_its_own_declared_keys_when_another_shares_the_store(tmp_path):
    mine = config(tmp_path, api_keys=[{"name": "mine", "key": CFG_KEY, "tenant": "acme"}])
    theirs = config(tmp_path, api_keys=[{"name": "theirs", "key": "their-key-0123456789abcdef", "tenant": "zed"}])
    a = Engine(mine, metrics=False)
    await a.start()
    b = Engine(theirs, metrics=False)
    await b.start()  # seeding drops "mine" from the store's rows ...
    try:
        await a.keyring.reload(force=True)
        assert a.auth.authenticate(bearer(CFG_KEY)).key_name == "mine"  # ... but not from a's own table
        with pytest.raises(ApiError):
            b.auth.authenticate(bearer(CFG_KEY))
        assert {k.id for k in a.keys.list_keys()} == {"theirs"}
    finally:
        await a.aclose()
        await b.aclose()


async def test_config_keys_of_one_name_share_budget_and_limits_and_team_joins_the_chain(tmp_path):
    cfg = config(
        tmp_path,
        tenants={"acme": {"budget": {"tokens": 9000}}},
        teams={"core": {"tenant": "acme", "budget": {"tokens": 500}, "rpm": 100}},
        api_keys=[
            {"name": "ci", "key": CFG_KEY, "tenant": "acme", "team": "core", "budget": {"tokens": 50}},
            {"name": "ci", "key": "next-ci-key-0123456789abcdef", "tenant": "acme", "team": "core"},
        ],
    )
    engine = Engine(cfg, metrics=False)
    await engine.start()
    try:
        old, new = (
            engine.auth.authenticate(bearer(CFG_KEY)),
            engine.auth.authenticate(bearer("next-ci-key-0123456789abcdef")),
        )
        assert (old.key_name, new.key_name) == ("ci", "ci") and (old.key_id, new.key_id) == ("ci", "ci-2")
        assert {s.id for s in old.scopes} == {"team:core"}
        tracker = engine.budgets.root(old)
        chain = []
        while tracker is not None:
            chain.append((tracker.budget_id, tracker.total))
            tracker = tracker.parent
        assert chain == [("key:ci", 50), ("team:acme:core", 500), ("tenant:acme", 9000)]
    finally:
        await engine.aclose()


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"tenants": {"a": {}}, "teams": {"t": {"tenant": "b"}}}, "teams.t.tenant"),
        ({"teams": {"t": {}}}, "teams.t.tenant"),
        (
            {"teams": {"t": {"tenant": "a"}}, "api_keys": [{"key": "k" * 20, "tenant": "a", "team": "u"}]},
            "api_keys[0].team",
        ),
        (
            {"teams": {"t": {"tenant": "a"}}, "api_keys": [{"key": "k" * 20, "tenant": "b", "team": "t"}]},
            "api_keys[0].team",
        ),
        ({"admin_key": ADMIN, "keys": {"url": "mysql://x"}}, "keys.url"),
        ({"admin_key": ADMIN, "keys": {"poll_seconds": 2}}, "keys.poll_seconds"),
        ({"admin_key": ADMIN, "keys": {"table_prefix": "x y"}}, "keys.table_prefix"),
    ],
)
def test_config_errors_name_the_key(doc, path):
    with pytest.raises(ConfigError) as ei:
        parse_config(doc)
    assert ei.value.path == path, ei.value


def test_the_key_store_sits_beside_the_ledger_and_needs_auth(tmp_path):
    assert parse_config({"admin_key": ADMIN, "ledger": str(tmp_path / "u.sqlite3")}).keys.url == str(
        tmp_path / "keys.sqlite3"
    )
    pg = "postgresql://db.example/llm"
    assert parse_config({"admin_key": ADMIN, "ledger": pg}).keys.url == pg
    assert parse_config({"admin_key": ADMIN, "keys": "off"}).keys.url is None
    assert parse_config({"ledger": "off"}).keys.url is None  # auth off: no store, nothing to authenticate
    assert parse_config({"auth": True, "keys": str(tmp_path / "k.sqlite3")}).auth  # keys only from the store
