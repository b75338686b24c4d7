"""The dashboard's handlers through the gateway's ASGI app: login, sessions and CSRF, the loopback rule with
auth off, filters, tenant narrowing, and escaping — every ledger field is the caller's own string, so none
of them may reach a page as markup."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from llm_connect.config import parse_config
from llm_connect.server.app import Gateway
from llm_connect.server.ui.sessions import MemorySessions, RedisSessions, read_cookie
from llm_connect.usage import UsageEvent

from .conftest import REDIS_URL, redis_up

ADMIN = "ui-admin-key-0123456789abcdef"
ACME = "ui-acme-key-0123456789abcdef"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>" onfocus="alert(2)'


class Client:
    """A browser's view of the app: one cookie jar, requests as ASGI calls from ``client``."""

    def __init__(self, app: Gateway, client: tuple[str, int] = ("127.0.0.1", 40000)) -> None:
        self.app = app
        self.client = client
        self.cookies: dict[str, str] = {}

    async def request(
        self, method: str, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, list[str]], str]:
        path, _, qs = path.partition("?")
        hdrs = {"host": "gw.test", **(headers or {})}
        if self.cookies:
            hdrs["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = b""
        if form is not None:
            body = urlencode(form).encode()
            hdrs.setdefault("content-type", "application/x-www-form-urlencoded")
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": qs.encode(),
            "headers": [(k.encode(), v.encode()) for k, v in hdrs.items()],
            "client": self.client,
            "scheme": "http",
        }
        msgs = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if msgs:
                return msgs.pop(0)
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(m: dict[str, Any]) -> None:
            sent.append(m)

        await self.app(scope, receive, send)
        out: dict[str, list[str]] = {}
        for k, v in sent[0]["headers"]:
            out.setdefault(k.decode(), []).append(v.decode())
        for cookie in out.get("set-cookie", []):
            name, _, rest = cookie.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return sent[0]["status"], out, b"".join(m.get("body", b"") for m in sent[1:]).decode()

    async def get(self, path: str, **kw: Any) -> tuple[int, dict[str, list[str]], str]:
        return await self.request("GET", path, **kw)

    async def login(self, key: str = ADMIN, nxt: str = "/ui/overview") -> tuple[int, dict[str, list[str]], str]:
        status, _, page = await self.get("/ui/login?" + urlencode({"next": nxt}))
        assert status == 200
        return await self.request("POST", "/ui/login", {"csrf": csrf_of(page), "next": nxt, "key": key})


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, page[:500]
    return unescape(m.group(1))


def _config(tmp_path: Path, **extra: Any) -> Any:
    raw: dict[str, Any] = {
        "ledger": {"url": str(tmp_path / "usage.sqlite3")},
        "admin_key": ADMIN,
        "tenants": {"acme": {"budget": {"tokens": 1000, "period": "daily"}}, "beta": {}},
        "api_keys": [{"name": "acme-app", "key": ACME, "tenant": "acme", "budget": {"usd": "2"}}],
        **extra,
    }
    return parse_config(raw, source=str(tmp_path / "cfg.yaml"))


@pytest.fixture
async def app(tmp_path: Path):
    gw = Gateway(_config(tmp_path))
    await gw.startup()
    yield gw
    await gw.engine.aclose()


def _event(i: int, **kw: Any) -> UsageEvent:
    base: dict[str, Any] = dict(
        request_id=f"req-{i:03d}",
        timestamp=datetime.now(UTC) - timedelta(minutes=i),
        provider="openai",
        model="gpt-4o-mini" if i % 2 else "gpt-4o",
        tenant_id="acme" if i % 3 else "beta",
        input_tokens=10 + i,
        output_tokens=5,
        total_tokens=15 + i,
        cost_usd=Decimal("0.0001") * (i + 1),
        success=i % 4 != 0,
        error_type=None if i % 4 else "LLMRateLimitError",
        estimated=i % 5 == 0,
        endpoint="/v1/chat/completions",
        metadata={"api_key": "acme-app", "gateway_request_id": f"gw{i:03d}"},
    )
    base.update(kw)
    return UsageEvent(**base)


def rows_of(page: str) -> list[str]:
    return re.findall(r'<tr data-request-id="([^"]+)"', page)


# -- login, sessions, CSRF -----------------------------------------------------------------------------------
async def test_a_page_without_a_session_sends_the_browser_to_log_in(app: Gateway) -> None:
    c = Client(app)
    status, headers, _ = await c.get("/ui/calls?status=failed")
    assert status == 303
    assert headers["location"] == ["/ui/login?next=%2Fui%2Fcalls%3Fstatus%3Dfailed"]
    status, _, _ = await c.get("/ui/calls", headers={"x-requested-with": "llmc-refresh"})
    assert status == 401  # the refresh script reloads the page, which lands on the login form


async def test_login_sets_a_strict_http_only_session_cookie_and_logout_ends_it(app: Gateway) -> None:
    c = Client(app)
    status, headers, _ = await c.login(nxt="/ui/budgets")
    assert status == 303 and headers["location"] == ["/ui/budgets"]
    cookie = next(h for h in headers["set-cookie"] if h.startswith("llmc_session="))
    for part in ("HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"):
        assert part in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; over HTTPS the cookie is Secure
    sid = c.cookies["llmc_session"]
    assert len(sid) >= 43 and ADMIN not in cookie
    status, headers, page = await c.get("/ui/overview")
    assert status == 200 and 'id="who">admin<' in page
    csp = headers["content-security-policy"][0]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert headers["x-frame-options"] == ["DENY"] and headers["cache-control"] == ["no-store"]

    status, _, _ = await c.request("POST", "/ui/logout", {"csrf": "forged"})
    assert status == 403
    assert (await c.get("/ui/overview"))[0] == 200  # a forged logout changed nothing
    status, headers, _ = await c.request("POST", "/ui/logout", {"csrf": csrf_of(page)})
    assert status == 303 and headers["location"] == ["/ui/login"]
    # the old cookie, replayed, is dead server-side too
    c.cookies["llmc_session"] = sid
    assert (await c.get("/ui/overview"))[0] == 303


async def test_wrong_and_non_admin_keys_are_refused(app: Gateway) -> None:
    c = Client(app)
    status, _, page = await c.login("not-the-admin-key-at-all")
    assert status == 401 and "Wrong key." in page and "llmc_session" not in c.cookies
    status, _, page = await c.login(ACME)  # a tenant's API key is not a dashboard login
    assert status == 403 and "use the admin key" in page and "llmc_session" not in c.cookies
    assert (await c.get("/ui/overview"))[0] == 303


async def test_login_needs_the_form_token_and_this_origin(app: Gateway) -> None:
    c = Client(app)
    await c.get("/ui/login")
    status, _, _ = await c.request("POST", "/ui/login", {"key": ADMIN})
    assert status == 403  # no token: a login forged by another site
    status, _, _ = await c.request("POST", "/ui/login", {"key": ADMIN, "csrf": "guess"})
    assert status == 403
    _, _, page = await c.get("/ui/login")
    status, _, _ = await c.request(
        "POST", "/ui/login", {"key": ADMIN, "csrf": csrf_of(page)}, headers={"origin": "https://evil.example"}
    )
    assert status == 403 and "llmc_session" not in c.cookies
    status, _, _ = await c.request(
        "POST", "/ui/login", {"key": ADMIN, "csrf": csrf_of(page)}, headers={"origin": "http://gw.test"}
    )
    assert status == 303 and "llmc_session" in c.cookies


@pytest.mark.parametrize("nxt", ["https://evil.example/", "//evil.example/ui/", "/v1/usage", "/ui\\..\\x"])
async def test_after_login_the_browser_stays_on_the_dashboard(app: Gateway, nxt: str) -> None:
    status, headers, _ = await Client(app).login(nxt=nxt)
    assert status == 303 and headers["location"] == ["/ui/overview"]


async def test_a_session_rotates_on_login(app: Gateway) -> None:
    c = Client(app)
    await c.login()
    first = c.cookies["llmc_session"]
    await c.login()
    second = c.cookies["llmc_session"]
    assert first != second
    c.cookies["llmc_session"] = first
    assert (await c.get("/ui/overview"))[0] == 303  # the session a login replaced is gone


async def test_auth_off_is_open_on_loopback_only(tmp_path: Path) -> None:
    gw = Gateway(parse_config({"ledger": {"url": str(tmp_path / "u.sqlite3")}}, source="<test>"))
    await gw.startup()
    try:
        local = Client(gw, ("127.0.0.1", 50000))
        status, _, page = await local.get("/ui/overview")
        assert status == 200 and "auth off (loopback)" in page and "llmc_session" in local.cookies
        assert (await Client(gw, ("::1", 50000)).get("/ui/calls"))[0] == 200
        status, _, page = await Client(gw, ("10.1.2.3", 50000)).get("/ui/overview")
        assert status == 403 and "loopback only" in page
        assert (await Client(gw, ("10.1.2.3", 50000)).get("/ui/login"))[0] in (303, 403)
    finally:
        await gw.engine.aclose()


async def test_session_stores_expire_and_forget(tmp_path: Path) -> None:
    mem = MemorySessions()
    sid, s = await mem.create("d" * 64, ttl=0.05)
    assert (await mem.get(sid)) == s and (await mem.get("other")) is None
    time.sleep(0.08)
    assert (await mem.get(sid)) is None
    if not redis_up():
        pytest.skip("Redis not reachable at 127.0.0.1:6379")
    red = RedisSessions(REDIS_URL, f"llmc-test-ui-{time.time_ns()}")
    sid, s = await red.create("e" * 64, ttl=30)
    assert (await red.get(sid)) == s
    await red.delete(sid)
    assert (await red.get(sid)) is None
    await red.aclose()


def test_cookie_parsing() -> None:
    assert read_cookie({"cookie": "a=1; llmc_session=abc; b=2"}, "llmc_session") == "abc"
    assert read_cookie({"cookie": "xllmc_session=abc"}, "llmc_session") is None
    assert read_cookie({}, "llmc_session") is None


# -- pages, filters, tenants -----------------------------------------------------------------------------------
async def test_calls_filters_and_pages(app: Gateway) -> None:
    assert app.engine.ledger is not None
    events = [_event(i) for i in range(60)]
    app.engine.ledger.record_many(events)
    c = Client(app)
    await c.login()

    async def shown(query: str) -> list[str]:
        status, _, page = await c.get("/ui/calls" + query)
        assert status == 200, page
        return rows_of(page)

    def want(pred) -> list[str]:
        return [e.request_id for e in events if pred(e)][:50]  # newest first: they were made newest first

    assert await shown("") == want(lambda e: True)
    assert await shown("?page=2") == [e.request_id for e in events][50:]
    assert await shown("?model=gpt-4o") == want(lambda e: e.model == "gpt-4o")
    assert await shown("?model=openai%3Agpt-4o-mini") == want(lambda e: e.model == "gpt-4o-mini")
    assert await shown("?tenant=beta") == want(lambda e: e.tenant_id == "beta")
    assert await shown("?status=failed") == want(lambda e: not e.success)
    assert await shown("?status=ok&estimated=yes") == want(lambda e: e.success and e.estimated)
    assert await shown("?estimated=no&tenant=acme") == want(lambda e: not e.estimated and e.tenant_id == "acme")
    assert await shown("?request=gw007") == ["req-007"]
    _, _, page = await c.get("/ui/calls?status=failed")
    assert 'href="?status=failed&amp;page=2"' not in page  # 15 failed calls: one page
    _, _, page = await c.get("/ui/calls")
    assert 'id="older"' in page and 'href="?page=2"' in page

    for bad in ("?status=maybe", "?estimated=2", "?page=0", "?page=x"):
        status, headers, page = await c.get("/ui/calls" + bad)
        assert status == 422 and headers["content-type"] == ["text/html; charset=utf-8"] and "Traceback" not in page


async def test_call_detail_shows_every_ledger_field(app: Gateway) -> None:
    e = _event(3, agent="ada", thread_id="th-1", task_type="triage", deployment="d1", streamed=True)
    app.engine.ledger.record(e)
    c = Client(app)
    await c.login()
    status, _, page = await c.get("/ui/calls/req-003")
    assert status == 200
    fields = dict(re.findall(r'<dd data-field="([^"]+)">([^<]*)</dd>', page))
    from llm_connect.usage._queries import COLUMNS

    assert set(fields) == ({*COLUMNS} - {"ts", "metadata"}) | {"timestamp"}
    assert fields["request_id"] == "req-003" and fields["agent"] == "ada" and fields["deployment"] == "d1"
    assert fields["cost_usd"] == "$0.0004" and fields["streamed"] == "yes" and fields["input_tokens"] == "13"
    assert "&#34;gateway_request_id&#34;: &#34;gw003&#34;" in page
    assert (await c.get("/ui/calls/nope"))[0] == 404


async def test_overview_groups_and_ranges(app: Gateway) -> None:
    app.engine.ledger.record_many([_event(i) for i in range(10)])
    c = Client(app)
    await c.login()
    for group in ("model", "tenant", "team", "key"):
        for rng in ("24h", "7d", "30d"):
            status, _, page = await c.get(f"/ui/overview?group={group}&range={rng}")
            assert status == 200, page
            assert 'id="chart-spend"' in page and 'id="chart-tokens"' in page
    _, _, page = await c.get("/ui/overview?group=tenant")
    assert re.search(r'<td class="key">acme</td><td class="num">6</td>', page)
    assert re.search(r'<td class="key">beta</td><td class="num">4</td>', page)
    assert page.count("<rect ") > 4
    _, _, page = await c.get("/ui/overview?group=model&tenant=beta")
    assert 'id="stat-calls">4<' in page
    _, _, frag = await c.get("/ui/overview", headers={"x-requested-with": "llmc-refresh"})
    assert "<html" not in frag and 'id="chart-spend"' in frag
    assert (await c.get("/ui/overview?group=colour"))[0] == 422


async def test_budgets_show_live_figures(app: Gateway) -> None:
    c = Client(app)
    await c.login()
    engine = app.engine
    tenant_tracker = engine.budgets.root(engine.auth.authenticate({"authorization": f"Bearer {ACME}"}))
    await tenant_tracker.arecord(800, Decimal("0.5"))  # the key level's spend counts at the tenant level too
    _, _, page = await c.get("/ui/budgets")
    tokens = re.search(r'data-budget="tenant:acme" data-unit="tokens">(.*?)</tr>', page, re.S)
    assert tokens and '<td class="num spent">800</td>' in tokens.group(1)
    assert '<td class="num remaining">200</td>' in tokens.group(1) and "≥ 75 %" in tokens.group(1)
    usd = re.search(r'data-budget="key:acme-app" data-unit="USD">(.*?)</tr>', page, re.S)
    assert (
        usd
        and '<td class="num spent">$0.5</td>' in usd.group(1)
        and '<td class="num remaining">$1.5</td>' in usd.group(1)
    )


async def test_static_assets_ship_in_the_package(app: Gateway) -> None:
    c = Client(app)
    status, headers, body = await c.get("/ui/static/app.js")
    assert status == 200 and headers["content-type"] == ["text/javascript; charset=utf-8"] and "fetch(" in body
    assert (await c.get("/ui/static/style.css"))[0] == 200
    assert (await c.get("/ui/static/..%2Fpages.py"))[0] == 404
    assert (await c.get("/ui/static/pages.py"))[0] == 404


# -- escaping ----------------------------------------------------------------------------------------------
async def test_caller_strings_never_reach_a_page_as_markup(app: Gateway) -> None:
    nasty = _event(
        1,
        request_id="req-xss",
        tenant_id=XSS,
        agent=XSS,
        thread_id=XSS,
        task_type=XSS,
        model=XSS,
        provider="openai" + XSS,
        error_type=XSS,
        success=False,
        endpoint=XSS,
        deployment=XSS,
        metadata={"api_key": XSS, "team": XSS, XSS: XSS, "gateway_request_id": XSS},
    )
    app.engine.ledger.record(nasty)
    c = Client(app)
    await c.login()
    pages = [
        "/ui/calls",
        "/ui/calls/req-xss",
        "/ui/calls?" + urlencode({"model": XSS}),
        "/ui/calls?" + urlencode({"request": XSS}),
        *(f"/ui/overview?group={g}" for g in ("model", "tenant", "team", "key")),
        "/ui/overview?" + urlencode({"tenant": XSS}),
    ]
    for path in pages:
        status, _, page = await c.get(path)
        assert status == 200, (path, page[:300])
        assert "<script>alert" not in page and "<img src=x" not in page and 'onfocus="alert' not in page, path
        assert "&lt;script&gt;" in page, path  # the text is shown, as text


# -- keys ----------------------------------------------------------------------------------------------------
async def _authenticates(app: Gateway, key: str) -> bool:
    from llm_connect.server.errors import ApiError

    try:
        app.engine.auth.authenticate({"authorization": f"Bearer {key}"})
        return True
    except ApiError as exc:
        assert exc.status == 401
        return False


async def test_keys_page_creates_and_revokes_keys(app: Gateway) -> None:
    c = Client(app)
    await c.login()
    status, _, page = await c.get("/ui/keys")
    assert status == 200 and "acme-app" in page
    config_row = re.search(r'<tr data-key-id="acme-app">(.*?)</tr>', page, re.S)
    assert config_row and "read-only" in config_row.group(1) and "revoke" not in config_row.group(1).lower()

    status, _, _ = await c.request("POST", "/ui/keys/create", {"tenant": "acme", "name": "svc"})
    assert status == 403  # no CSRF token
    status, _, page = await c.request(
        "POST", "/ui/keys/create", {"csrf": csrf_of(page), "tenant": "acme", "name": "svc <b>1</b>"}
    )
    assert status == 200 and "svc &lt;b&gt;1&lt;/b&gt;" in page
    plain = unescape(re.search(r'<code class="plain-key" id="plain-key">([^<]+)</code>', page).group(1))
    assert plain.startswith("llmc-") and await _authenticates(app, plain)
    key_id = re.search(r'<tr data-key-id="([^"]+)">\s*<td class="nowrap">svc &lt;b&gt;1', page).group(1)
    _, _, page = await c.get("/ui/keys")
    assert plain not in page  # shown once
    app.engine.ledger.record(_event(1, metadata={"api_key": key_id}))  # the ledger names a key by its id
    for path in ("/ui/calls", "/ui/overview?group=key"):
        assert "svc &lt;b&gt;1&lt;/b&gt;" in (await c.get(path))[2], path

    status, _, _ = await c.request("POST", "/ui/keys/revoke", {"csrf": "nope", "key_id": key_id})
    assert status == 403 and await _authenticates(app, plain)
    status, headers, _ = await c.request("POST", "/ui/keys/revoke", {"csrf": csrf_of(page), "key_id": key_id})
    assert status == 303 and headers["location"][0].startswith("/ui/keys?done=revoked")
    assert not await _authenticates(app, plain)
    _, _, page = await c.get(headers["location"][0])
    row = re.search(rf'<tr data-key-id="{key_id}">(.*?)</tr>', page, re.S).group(1)
    assert "revoked" in row and 'class="danger revoke"' not in row and 'id="done"' in page
    status, _, page = await c.request("POST", "/ui/keys/revoke", {"csrf": csrf_of(page), "key_id": "acme-app"})
    assert status == 409 and "config" in page  # declared in the config file: read-only
    assert await _authenticates(app, ACME)


async def test_a_tenant_admin_sees_only_its_tenant(app: Gateway) -> None:
    store = app.engine.keys
    assert store is not None
    _, admin_plain = store.create_key("acme", "acme-admin", role="tenant_admin")
    beta_rec, _ = store.create_key("beta", "beta-svc")
    await app.engine.keyring.changed()
    app.engine.ledger.record_many([_event(i) for i in range(9)])
    c = Client(app)
    status, _, _ = await c.login(admin_plain)
    assert status == 303
    _, _, page = await c.get("/ui/keys")
    assert "acme-admin" in page and "beta-svc" not in page and 'id="who">tenant admin · acme<' in page
    _, _, page = await c.get("/ui/calls")
    assert set(rows_of(page)) == {e.request_id for e in (_event(i) for i in range(9)) if e.tenant_id == "acme"}
    assert (await c.get("/ui/calls?tenant=beta"))[0] == 403
    assert (await c.get("/ui/overview?tenant=beta"))[0] == 403
    assert (await c.get("/ui/calls/req-000"))[0] == 404  # beta's call does not exist for this login
    _, _, page = await c.get("/ui/budgets")
    assert 'data-budget="tenant:acme"' in page and "beta" not in page.split('id="budgets"')[-1]
    status, _, _ = await c.request("POST", "/ui/keys/revoke", {"csrf": csrf_of(page), "key_id": beta_rec.id})
    assert status == 404 and store.get_key(beta_rec.id).revoked_at is None
