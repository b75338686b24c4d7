"""The key store on SQLite and PostgreSQL: migrations (fresh, again, concurrently, a newer schema refused), the
objects' life cycle, what the config seeds, batched last use and the change counter the replicas poll."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from llm_connect.config import BudgetLimit, parse_config
from llm_connect.errors import LLMConfigurationError
from llm_connect.keys import KeyStore, KeyStoreError
from llm_connect.keys._sql import MIGRATIONS, SCHEMA_VERSION

from .conftest import PG_URL

CFG_KEY = "config-key-0123456789abcdef"


def seeded_config(**extra):
    doc = {
        "admin_key": "admin-key-0123456789abcdef",
        "tenants": {"acme": {"budget": {"tokens": 1000, "period": "daily"}, "rpm": 50}, "other": {}},
        "teams": {"search": {"tenant": "acme", "budget": {"usd": "2.5"}}},
        "api_keys": [
            {"name": "ci", "key": CFG_KEY, "tenant": "acme", "team": "search", "models": ["fake:*"]},
            {"name": "ops", "key": "ops-key-0123456789abcdef", "tenant": "other", "tenant_admin": True},
        ],
        "keys": "off",
    }
    doc.update(extra)
    return parse_config(doc)


def _open_in_child(args):
    url, prefix = args
    s = KeyStore.open(url, table_prefix=prefix)
    try:
        return s.schema_version()
    finally:
        s.close()


def test_migrations_run_once_and_again_is_a_no_op(store_target):
    url, prefix = store_target
    s = KeyStore.open(url, table_prefix=prefix)
    assert s.schema_version() == SCHEMA_VERSION == MIGRATIONS[-1][0]
    assert s.version() == 0
    tenant = s.create_tenant("acme")
    s.close()
    again = KeyStore.open(url, table_prefix=prefix)  # reopening migrates nothing and keeps the rows
    try:
        assert again.schema_version() == SCHEMA_VERSION
        assert again.get_tenant("acme") == tenant
        assert again.version() == 1
    finally:
        again.close()


def test_concurrent_first_opens_migrate_exactly_once(store_target):
    url, prefix = store_target
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        versions = pool.map(_open_in_child, [(url, prefix)] * 8)
    assert versions == [SCHEMA_VERSION] * 8
    s = KeyStore.open(url, table_prefix=prefix)
    try:
        assert s.version() == 0  # the counter row was inserted once, not once per process
    finally:
        s.close()


def test_an_older_schema_is_upgraded_and_a_newer_one_refused(tmp_path):
    path = tmp_path / "keys.sqlite3"
    conn = sqlite3.connect(path)
    # a store made by the first version of the schema: tables, no change counter yet
    conn.execute("CREATE TABLE llm_keys_state (name TEXT PRIMARY KEY, value BIGINT NOT NULL)")
    for stmt in MIGRATIONS[0][2]:
        conn.execute(stmt.replace("{p}", "llm_").replace("{real}", "REAL"))
    conn.execute("INSERT INTO llm_keys_state VALUES ('schema', 1)")
    conn.commit()
    s = KeyStore.open(str(path))
    assert s.schema_version() == SCHEMA_VERSION and s.version() == 0
    s.create_tenant("t")
    assert s.version() == 1
    s.close()
    conn.execute("UPDATE llm_keys_state SET value = 99 WHERE name = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(LLMConfigurationError, match="newer"):
        KeyStore.open(str(path))


def test_key_life_cycle(store):
    store.create_tenant("acme", "Acme Inc", budget=BudgetLimit(usd=Decimal("10"), period="monthly"))
    team = store.create_team("acme", "search", rpm=30, budget=BudgetLimit(tokens=500))
    assert team.id.startswith("team_") and team.tenant == "acme" and team.managed_by == "api"
    rec, plain = store.create_key("acme", "bot", team=team.id, models=["fake:*"], tpm=1000)
    assert plain.startswith(f"llmc-{rec.id}_") and rec.prefix == f"llmc-{rec.id}"
    assert plain not in repr(rec) and rec.key_hash == hashlib.sha256(plain.encode()).hexdigest()
    assert rec.created_at.tzinfo == UTC and rec.status == "active" and rec.models == ("fake:*",)
    assert (
        store.list_keys("acme") == [rec] and store.list_keys("other") == [] and store.list_keys(team=team.id) == [rec]
    )

    v = store.version()
    changed = store.update_key(rec.id, rpm=5, budget=BudgetLimit(tokens=100), name="bot 2")
    assert (changed.rpm, changed.budget.tokens, changed.name, changed.tpm) == (5, 100, "bot 2", 1000)
    assert store.update_key(rec.id, budget=None).budget is None  # None clears, an omitted field stays
    assert store.version() == v + 2

    rotated, plain2 = store.rotate_key(rec.id)
    assert plain2 != plain and rotated.id == rec.id and rotated.key_hash != rec.key_hash

    revoked = store.revoke_key(rec.id)
    assert revoked.status == "revoked" and revoked.revoked_at is not None
    with pytest.raises(KeyStoreError) as ei:
        store.rotate_key(rec.id)
    assert ei.value.status_code == 409

    soon = datetime.now(UTC) - timedelta(seconds=1)
    old, _ = store.create_key("acme", "old", expires_at=soon)
    assert old.status == "expired"
    assert store.revoke_team(team.id).revoked_at is not None
    assert store.revoke_tenant("acme").revoked_at is not None


def test_refusals_are_typed(store):
    cases = [
        (lambda: store.get_key("nope"), 404, "not_found"),
        (lambda: store.create_key("ghost", "k"), 422, "unknown_tenant"),
        (lambda: store.create_tenant("a/b"), 422, "invalid_field"),
    ]
    store.create_tenant("a")
    store.create_tenant("b")
    team = store.create_team("b", "x")
    cases += [
        (lambda: store.create_tenant("a"), 409, "conflict"),
        (lambda: store.create_key("a", "k", team=team.id), 422, "unknown_team"),  # a team of another tenant
        (lambda: store.create_key("a", "k", role="root"), 422, "invalid_field"),
        (lambda: store.update_tenant("a", colour="red"), 422, "invalid_field"),
    ]
    for fn, status, code in cases:
        with pytest.raises(KeyStoreError) as ei:
            fn()
        assert (ei.value.status_code, ei.value.code) == (status, code), ei.value.message


def test_seed_marks_config_objects_and_the_api_cannot_change_them(store):
    store.create_tenant("acme")  # made through the API first: the config's declaration wins
    api_key, _ = store.create_key("acme", "mine")
    cfg = seeded_config()
    store.seed(cfg)
    store.seed(cfg)  # idempotent
    acme = store.get_tenant("acme")
    assert acme.managed_by == "config" and acme.budget == BudgetLimit(tokens=1000, period="daily")
    assert store.get_tenant("other").managed_by == "config"
    ci = store.get_key("ci")
    assert ci.managed_by == "config" and ci.team == "search" and ci.role == "user"
    assert ci.key_hash == hashlib.sha256(CFG_KEY.encode()).hexdigest() and ci.prefix == f"sha256:{ci.key_hash[:8]}"
    assert store.get_key("ops").role == "tenant_admin"
    assert store.get_key(api_key.id).managed_by == "api"  # API objects are left alone
    for fn in (
        lambda: store.update_tenant("acme", rpm=1),
        lambda: store.update_tenant("acme", colour="red"),  # refused as config-managed before its fields are read
        lambda: store.revoke_team("search"),
        lambda: store.revoke_key("ci"),
        lambda: store.rotate_key("ci"),
    ):
        with pytest.raises(KeyStoreError) as ei:
            fn()
        assert (ei.value.status_code, ei.value.code) == (409, "managed_by_config")

    # a key dropped from the file is gone from the store at the next start
    smaller = seeded_config(
        tenants={"acme": {}}, api_keys=[{"name": "ci", "key": CFG_KEY, "tenant": "acme", "team": "search"}]
    )
    store.seed(smaller)
    assert {k.id for k in store.list_keys()} == {"ci", api_key.id}
    with pytest.raises(KeyStoreError):
        store.get_tenant("other")
    # without a tenants section, a tenant named only by a key gets a row of its own
    store.seed(seeded_config(tenants={}, teams={}, api_keys=[{"name": "solo", "key": CFG_KEY, "tenant": "solo"}]))
    assert store.get_tenant("solo").managed_by == "config" and store.get_key("solo").tenant == "solo"


def test_last_use_is_written_in_one_batch_without_moving_the_version(store):
    store.create_tenant("t")
    a, _ = store.create_key("t", "a")
    b, _ = store.create_key("t", "b")
    v = store.version()
    t = datetime.now(UTC).timestamp()
    store.touch({a.id: t, b.id: t + 1})
    store.touch({a.id: t - 100})  # an older time never moves it back
    assert store.get_key(a.id).last_used_at == datetime.fromtimestamp(t, UTC)
    assert store.get_key(b.id).last_used_at == datetime.fromtimestamp(t + 1, UTC)
    assert store.version() == v
    snap = store.snapshot()
    assert snap.version == v and {k.id for k in snap.keys} == {a.id, b.id}


async def test_async_variants_run_in_a_thread(store):
    await store.arun(store.create_tenant, "t")
    rec, _ = await store.acreate_key("t", "k", rpm=2)
    assert [r.id for r in await store.alist_keys("t")] == [rec.id]
    assert (await store.aget_key(rec.id)).rpm == 2
    assert (await store.arevoke_key(rec.id)).status == "revoked"
    assert [t.id for t in await store.alist_tenants()] == ["t"] and await store.alist_teams() == []


def test_bad_targets_are_configuration_errors(tmp_path):
    with pytest.raises(LLMConfigurationError):
        KeyStore.open("mysql://x/y")
    with pytest.raises(LLMConfigurationError):
        KeyStore.open(":memory:")
    with pytest.raises(LLMConfigurationError):
        KeyStore.open(str(tmp_path / "k.sqlite3"), table_prefix="drop table;")
    assert PG_URL.startswith("postgresql://")
