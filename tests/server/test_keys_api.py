"""The admin API of the key store over HTTP, on a gateway process: the life of a key (create, use, change,
rotate, revoke, expire), teams and tenants, what a tenant-admin key may see and do (keys, teams, usage),
config-declared objects refused, errors in the gateway's error body, batched last use, the OpenAPI document."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from .conftest import ACME_KEY, ADMIN_KEY, BETA_KEY, GatewayProc, base_config, http

ACME_ADMIN_KEY = "acme-admin-key-0123456789abcdef"
MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    d = tmp_path_factory.mktemp("keys-api")
    cfg = base_config(mock, d)
    cfg["api_keys"].append({"name": "acme-admin", "key": ACME_ADMIN_KEY, "tenant": "acme", "tenant_admin": True})
    cfg["teams"] = {"acme-core": {"tenant": "acme", "budget": {"tokens": 100000}}}
    g = GatewayProc(cfg, d, name="keys-api").start()
    yield g
    g.stop()


def api(gw, method, path, body=None, key=ADMIN_KEY):
    status, _, raw = http(method, gw.url + path, body, headers={"Authorization": f"Bearer {key}"})
    return status, orjson.loads(raw) if raw else None


def chat(gw, key, model="plain"):
    status, _, raw = http(
        "POST",
        gw.url + "/v1/chat/completions",
        {"model": model, "messages": MSG, "max_tokens": 5},
        headers={"Authorization": f"Bearer {key}"},
    )
    return status, orjson.loads(raw)


def error_of(body):
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}, body
    return body["error"]


def test_key_life_cycle_over_http(gw):
    status, tenant = api(gw, "POST", "/v1/admin/tenants", {"id": "life", "budget": {"tokens": 100000}})
    assert status == 201 and tenant["object"] == "tenant" and tenant["managed_by"] == "api"
    status, team = api(gw, "POST", "/v1/admin/teams", {"tenant": "life", "name": "Core", "rpm": 1000})
    assert status == 201 and team["tenant"] == "life" and team["id"].startswith("team_")
    status, created = api(
        gw, "POST", "/v1/admin/keys", {"tenant": "life", "team": team["id"], "name": "bot", "models": ["plain"]}
    )
    assert status == 201
    key, kid = created["key"], created["id"]
    assert key.startswith(created["prefix"] + "_") and created["prefix"] == f"llmc-{kid}"
    assert created["status"] == "active" and created["last_used_at"] is None

    assert chat(gw, key)[0] == 200
    status, body = chat(gw, key, model="fast")  # outside the key's allow-list
    assert status == 403 and error_of(body)["code"] == "model_not_allowed"

    status, shown = api(gw, "GET", f"/v1/admin/keys/{kid}")
    assert status == 200 and "key" not in shown and shown["team"] == team["id"]
    assert kid in {k["id"] for k in api(gw, "GET", "/v1/admin/keys?tenant=life")[1]["data"]}

    status, changed = api(gw, "PATCH", f"/v1/admin/keys/{kid}", {"models": None, "name": "bot 2"})
    assert status == 200 and changed["models"] is None and changed["name"] == "bot 2"
    assert chat(gw, key, model="fast")[0] == 200  # the change is live at once: no restart

    status, rotated = api(gw, "POST", f"/v1/admin/keys/{kid}/rotate")
    assert status == 200 and rotated["id"] == kid and rotated["key"] != key
    status, body = chat(gw, key)
    assert status == 401 and error_of(body)["code"] == "invalid_api_key"
    assert chat(gw, rotated["key"])[0] == 200

    status, revoked = api(gw, "DELETE", f"/v1/admin/keys/{kid}")
    assert status == 200 and revoked["status"] == "revoked" and revoked["revoked_at"]
    status, body = chat(gw, rotated["key"])
    assert status == 401 and "revoked" in error_of(body)["message"]


def test_revoking_a_team_or_a_tenant_refuses_its_keys(gw):
    api(gw, "POST", "/v1/admin/tenants", {"id": "doomed"})
    assert api(gw, "POST", "/v1/admin/teams", {"tenant": "doomed", "name": "t", "id": "doomed-team"})[0] == 201
    _, in_team = api(gw, "POST", "/v1/admin/keys", {"tenant": "doomed", "team": "doomed-team"})
    _, alone = api(gw, "POST", "/v1/admin/keys", {"tenant": "doomed"})
    assert chat(gw, in_team["key"])[0] == 200 and chat(gw, alone["key"])[0] == 200
    assert api(gw, "POST", "/v1/admin/teams/doomed-team/revoke")[0] == 200
    assert chat(gw, in_team["key"])[0] == 401 and chat(gw, alone["key"])[0] == 200
    assert api(gw, "DELETE", "/v1/admin/tenants/doomed")[0] == 200
    status, body = chat(gw, alone["key"])
    assert status == 401 and "tenant" in error_of(body)["message"]
    status, body = api(gw, "POST", "/v1/admin/keys", {"tenant": "doomed"})
    assert status == 409 and error_of(body)["code"] == "revoked"


def test_a_key_expires_at_its_instant(gw):
    api(gw, "POST", "/v1/admin/tenants", {"id": "brief"})
    until = datetime.now(UTC) + timedelta(seconds=1.5)
    _, created = api(gw, "POST", "/v1/admin/keys", {"tenant": "brief", "expires_at": until.isoformat()})
    assert chat(gw, created["key"])[0] == 200
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.05)
    status, body = chat(gw, created["key"])
    assert status == 401 and "expired" in error_of(body)["message"]
    assert api(gw, "GET", f"/v1/admin/keys/{created['id']}")[1]["status"] == "expired"


def test_last_use_is_recorded_in_batches(gw):
    api(gw, "POST", "/v1/admin/tenants", {"id": "used"})
    _, created = api(gw, "POST", "/v1/admin/keys", {"tenant": "used"})
    before = datetime.now(UTC)
    for _ in range(3):
        assert chat(gw, created["key"])[0] == 200
    deadline = time.monotonic() + 6
    seen = None
    while time.monotonic() < deadline and seen is None:
        seen = api(gw, "GET", f"/v1/admin/keys/{created['id']}")[1]["last_used_at"]
        time.sleep(0.2)
    assert seen is not None and datetime.fromisoformat(seen.replace("Z", "+00:00")) >= before - timedelta(seconds=1)


def test_config_declared_objects_are_read_only_through_the_api(gw):
    status, keys = api(gw, "GET", "/v1/admin/keys?tenant=acme")
    declared = {k["id"]: k for k in keys["data"] if k["managed_by"] == "config"}
    assert {"acme", "acme-admin"} <= set(declared) and declared["acme"]["prefix"].startswith("sha256:")
    for method, path, body in (
        ("PATCH", "/v1/admin/keys/acme", {"rpm": 1}),
        ("POST", "/v1/admin/keys/acme/rotate", None),
        ("POST", "/v1/admin/keys/acme/revoke", None),
        ("DELETE", "/v1/admin/keys/acme", None),
        ("PATCH", "/v1/admin/teams/acme-core", {"rpm": 1}),
        ("PATCH", "/v1/admin/tenants/acme", {"budget": None}),
        ("DELETE", "/v1/admin/tenants/beta", None),
    ):
        status, err = api(gw, method, path, body)
        assert status == 409 and error_of(err)["code"] == "managed_by_config", (method, path, err)
        assert "config" in err["error"]["message"]
    assert chat(gw, ACME_KEY)[0] == 200  # and the key still works


def test_a_tenant_admin_sees_and_touches_only_its_own_tenant(gw):
    _, beta_key = api(gw, "POST", "/v1/admin/keys", {"tenant": "beta", "name": "beta bot"})
    _, beta_team = api(gw, "POST", "/v1/admin/teams", {"tenant": "beta", "name": "beta team"})
    ta = ACME_ADMIN_KEY

    status, made = api(gw, "POST", "/v1/admin/keys", {"name": "acme bot", "team": "acme-core"}, key=ta)
    assert status == 201 and made["tenant"] == "acme"
    assert chat(gw, made["key"])[0] == 200
    status, mine = api(gw, "GET", "/v1/admin/keys", key=ta)
    assert status == 200 and {k["tenant"] for k in mine["data"]} == {"acme"}
    assert made["id"] in {k["id"] for k in mine["data"]}
    assert api(gw, "GET", "/v1/admin/teams", key=ta)[1]["data"][0]["tenant"] == "acme"
    assert [t["id"] for t in api(gw, "GET", "/v1/admin/tenants", key=ta)[1]["data"]] == ["acme"]

    for method, path, body, status_code, code in (
        ("GET", "/v1/admin/keys?tenant=beta", None, 403, "tenant_mismatch"),
        ("GET", f"/v1/admin/keys/{beta_key['id']}", None, 404, "not_found"),
        ("PATCH", f"/v1/admin/keys/{beta_key['id']}", {"rpm": 1}, 404, "not_found"),
        ("POST", f"/v1/admin/keys/{beta_key['id']}/revoke", None, 404, "not_found"),
        ("POST", f"/v1/admin/keys/{beta_key['id']}/rotate", None, 404, "not_found"),
        ("POST", "/v1/admin/keys", {"tenant": "beta"}, 403, "tenant_mismatch"),
        ("POST", "/v1/admin/keys", {"role": "admin"}, 403, "admin_required"),
        ("GET", "/v1/admin/teams?tenant=beta", None, 403, "tenant_mismatch"),
        ("GET", f"/v1/admin/teams/{beta_team['id']}", None, 404, "not_found"),
        ("POST", "/v1/admin/teams", {"tenant": "beta", "name": "x"}, 403, "tenant_mismatch"),
        ("GET", "/v1/admin/tenants/beta", None, 404, "not_found"),
        ("POST", "/v1/admin/tenants", {"id": "mine"}, 403, "admin_required"),
        ("PATCH", "/v1/admin/tenants/acme", {"rpm": 1}, 403, "admin_required"),
        ("GET", "/v1/usage?tenant=beta", None, 403, "tenant_mismatch"),
    ):
        status, body = api(gw, method, path, body, key=ta)
        assert (status, error_of(body)["code"]) == (status_code, code), (method, path, body)
    # its usage is its own tenant's only, whatever it asks to group by
    assert chat(gw, BETA_KEY)[0] == 200
    for group_by in ("tenant", "model"):
        status, usage = api(gw, "GET", f"/v1/usage?group_by={group_by}", key=ta)
        assert status == 200 and usage["tenant"] == "acme"
    keys = {r["key"] for r in api(gw, "GET", "/v1/usage?group_by=tenant", key=ta)[1]["data"]}
    assert keys == {"acme"}
    assert api(gw, "GET", f"/v1/admin/keys/{beta_key['id']}")[0] == 200  # the admin key sees it


def test_plain_keys_and_bad_requests_get_the_gateways_error_body(gw):
    status, body = api(gw, "GET", "/v1/admin/keys", key=ACME_KEY)
    assert status == 403 and error_of(body)["code"] == "admin_required"
    status, body = api(gw, "GET", "/v1/admin/keys", key="nope-0123456789abcdef")
    assert status == 401 and error_of(body)["code"] == "invalid_api_key"
    for method, path, body, status_code, code, param in (
        ("POST", "/v1/admin/keys", {"tenant": "acme", "rpm": 0}, 422, "invalid_field", "rpm"),
        ("POST", "/v1/admin/keys", {"tenant": "acme", "colour": "red"}, 422, "invalid_field", "colour"),
        ("POST", "/v1/admin/keys", {"tenant": "acme", "budget": {"period": "daily"}}, 422, "invalid_field", "budget"),
        ("POST", "/v1/admin/keys", {"name": "x"}, 422, "invalid_field", "tenant"),
        ("POST", "/v1/admin/keys", {"tenant": "ghost"}, 422, "unknown_tenant", "tenant"),
        ("POST", "/v1/admin/keys", {"tenant": "acme", "team": "ghost"}, 422, "unknown_team", "team"),
        ("POST", "/v1/admin/keys", {"tenant": "acme", "expires_at": "2030-01-01T00:00:00"}, 422, "invalid_field",
         "expires_at"),
        ("POST", "/v1/admin/tenants", {"id": "acme"}, 409, "conflict", "id"),
        ("GET", "/v1/admin/keys/ghost", None, 404, "not_found", None),
        ("GET", "/v1/admin/teams/ghost", None, 404, "not_found", None),
        ("PUT", "/v1/admin/keys/ghost", {}, 405, "method_not_allowed", None),
    ):  # fmt: skip
        status, err = api(gw, method, path, body)
        e = error_of(err)
        assert (status, e["code"]) == (status_code, code), (path, body, err)
        assert (e["param"] is None and param is None) or (e["param"] or "").startswith(param or ""), err
    status, _, raw = http(
        "POST", gw.url + "/v1/admin/keys", raw=b"{nope", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert status == 400 and orjson.loads(raw)["error"]["code"] == "invalid_json"


def test_readiness_checks_the_key_store(gw):
    status, body = api(gw, "GET", "/ready")
    assert status == 200 and body["checks"]["keys"] == "ok"


def test_the_openapi_document_describes_the_admin_api(gw):
    status, doc = api(gw, "GET", "/openapi.json")
    assert status == 200
    paths = doc["paths"]
    for path, methods in {
        "/v1/admin/keys": {"get", "post"},
        "/v1/admin/keys/{key_id}": {"get", "patch", "delete"},
        "/v1/admin/keys/{key_id}/rotate": {"post"},
        "/v1/admin/keys/{key_id}/revoke": {"post"},
        "/v1/admin/teams/{team_id}": {"get", "patch", "delete"},
        "/v1/admin/tenants": {"get", "post"},
    }.items():
        assert methods <= set(paths[path]), path
    created = paths["/v1/admin/keys"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/KeyCreated"}
    assert "key" in doc["components"]["schemas"]["KeyCreated"]["properties"]
    assert "409" in paths["/v1/admin/keys/{key_id}"]["patch"]["responses"]
