"""The response store in both dialects (SQLite file, PostgreSQL on 127.0.0.1:5432): tenant scoping, replace, delete,
TTL; and a gateway whose responses.store is a PostgreSQL URL chaining previous_response_id through it."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator

import openai
import pytest

from llm_connect.config import ConfigError, parse_config
from llm_connect.server.response_store import ResponseStore, StoredResponse

from .conftest import ACME_KEY, BETA_KEY, GatewayProc, base_config

PG_URL = os.environ.get("LLM_CONNECT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_url() -> str:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=2):
            return PG_URL
    except Exception:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")


def _drop(table: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path) -> Iterator[tuple[str, str]]:
    """(URL or path, table)"""
    if request.param == "sqlite":
        yield str(tmp_path / "responses.sqlite3"), "llm_responses"
        return
    url, table = _pg_url(), f"t_resp_{uuid.uuid4().hex[:12]}"
    yield url, table
    _drop(table)


def rec(rid: str, tenant: str = "acme", *, created: float | None = None, text: str = "hi") -> StoredResponse:
    body = {"id": rid, "object": "response", "output": [{"type": "message", "content": [{"text": text}]}]}
    items = [{"type": "message", "role": "user", "content": "q"}, *body["output"]]
    return StoredResponse(rid, tenant, created or time.time(), "m", body, items)


def test_put_get_delete_scoped_to_the_tenant(target):
    url, table = target
    store = ResponseStore.open(url, table=table, ttl_days=30)

    async def run() -> None:
        await store.put(rec("resp_1"))
        got = await store.get("resp_1", "acme")
        assert got is not None and got.response["output"][0]["content"][0]["text"] == "hi"
        assert got.items[0] == {"type": "message", "role": "user", "content": "q"} and got.tenant == "acme"
        assert await store.get("resp_1", "beta") is None  # another tenant's id is not found
        assert await store.delete("resp_1", "beta") is False
        await store.put(rec("resp_1", text="again"))  # a put of a known id replaces it
        assert (await store.get("resp_1", "acme")).response["output"][0]["content"][0]["text"] == "again"
        assert await store.delete("resp_1", "acme") is True
        assert await store.get("resp_1", "acme") is None
        assert await store.get("resp_unknown", "acme") is None

    try:
        asyncio.run(run())
    finally:
        store.close()


def test_expired_responses_are_gone(target):
    url, table = target
    store = ResponseStore.open(url, table=table, ttl_days=1)

    async def run() -> None:
        await store.put(rec("resp_old", created=time.time() - 2 * 86400))
        await store.put(rec("resp_new"))
        assert await store.get("resp_old", "acme") is None
        assert await store.get("resp_new", "acme") is not None

    try:
        asyncio.run(run())
    finally:
        store.close()


def test_the_store_never_runs_on_the_event_loop_thread(tmp_path):
    store = ResponseStore.open(tmp_path / "r.sqlite3")
    seen = []
    original = store._put

    def spy(conn, row):
        seen.append(threading.current_thread() is threading.main_thread())
        return original(conn, row)

    store._put = spy  # type: ignore[method-assign]
    try:
        asyncio.run(store.put(rec("resp_t")))
    finally:
        store.close()
    assert seen == [False]


def test_the_config_section():
    assert parse_config({"responses": "off"}).responses.store is None
    cfg = parse_config({"responses": {"store": "postgresql://db/x", "ttl_days": "none", "builtin_tools": "Refuse"}})
    assert (cfg.responses.store, cfg.responses.ttl_days, cfg.responses.builtin_tools) == (
        "postgresql://db/x",
        None,
        "refuse",
    )
    assert parse_config({}).responses.store.endswith("responses.sqlite3")
    with pytest.raises(ConfigError, match=r"responses\.builtin_tools"):
        parse_config({"responses": {"builtin_tools": "ignore"}})
    with pytest.raises(ConfigError, match=r"responses\.store"):
        parse_config({"responses": {"store": "mysql://x"}})


def test_a_gateway_on_a_postgresql_store(mock, tmp_path):
    url, table = _pg_url(), f"t_resp_{uuid.uuid4().hex[:12]}"
    cfg = base_config(mock, tmp_path, responses={"store": url, "table": table})
    gw = GatewayProc(cfg, tmp_path).start()
    try:
        with openai.OpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0) as c:
            a = c.responses.create(model="plain", input="first words")
            b = c.responses.create(model="plain", input="second words", previous_response_id=a.id)
            assert [m["content"] for m in mock.last_request["body"]["messages"]] == [
                "first words",
                "mock reply to: first words",
                "second words",
            ]
            assert c.responses.retrieve(b.id).output_text == b.output_text
        with openai.OpenAI(base_url=gw.url + "/v1", api_key=BETA_KEY, max_retries=0) as other:
            with pytest.raises(openai.NotFoundError):
                other.responses.retrieve(b.id)
    finally:
        gw.stop()
        _drop(table)


def test_a_store_that_cannot_be_opened_is_a_503_not_a_500(mock, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    cfg = base_config(mock, tmp_path, responses={"store": str(blocker / "responses.sqlite3")})
    gw = GatewayProc(cfg, tmp_path).start()
    try:
        with openai.OpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0) as c:
            with pytest.raises(openai.InternalServerError) as e:
                c.responses.create(model="plain", input="hi")
            assert e.value.status_code == 503 and e.value.body["code"] == "configuration_error"
            assert "response store" in e.value.body["message"]
            assert c.responses.create(model="plain", input="hi", store=False).output_text  # nothing to store: served
    finally:
        gw.stop()
