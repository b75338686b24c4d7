"""The dashboard in a real headless browser (Debian's chromium + chromium-driver through selenium) against a
real gateway process on loopback with the mock server upstream: log in (a wrong key refused), see a call made
with the openai SDK appear without reloading, open its detail, filter, create a key and revoke it in the
browser and watch a request with it fail with 401, caller strings shown as text, log out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from llm_connect.testing import MockServer

from . import ui_browser as ub
from .conftest import GatewayProc

_REASON = ub.skip_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"browser test skipped: {_REASON}")


@pytest.fixture(scope="module")
def gateway(mock: MockServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    workdir = tmp_path_factory.mktemp("ui-browser")
    gw = GatewayProc(ub.gateway_config(mock, workdir), workdir, name="ui").start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = ub.make_driver()
    yield driver
    driver.quit()


def _by() -> Any:
    from selenium.webdriver.common.by import By

    return By


def _logged_in(browser: Any, gateway: GatewayProc) -> None:
    browser.get(gateway.url + "/ui/overview")
    if "/ui/login" in browser.current_url:
        ub.login(browser, gateway.url, ub.ADMIN_KEY)
    ub.wait_for(lambda: browser.find_element(_by().ID, "who").text == "admin")


def _rows(browser: Any) -> list[dict[str, str]]:
    """The calls table as the browser shows it (request id attribute, link text, model, status)."""
    out = []
    for tr in browser.find_elements(_by().CSS_SELECTOR, "#calls tbody tr[data-request-id]"):
        cells = tr.find_elements(_by().TAG_NAME, "td")
        out.append(
            {
                "id": tr.get_attribute("data-request-id"),
                "gateway_id": tr.get_attribute("data-gateway-id"),
                "tenant": cells[2].text,
                "model": cells[4].text,
                "status": cells[10].text,
            }
        )
    return out


def _select(browser: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(_by().ID, element_id)).select_by_value(value)


def test_a_wrong_admin_key_is_refused_and_the_right_one_logs_in(browser: Any, gateway: GatewayProc) -> None:
    By = _by()
    browser.delete_all_cookies()
    browser.get(gateway.url + "/ui/calls")
    assert "/ui/login" in browser.current_url  # no session: the login form
    ub.login(browser, gateway.url, "not-the-admin-key-0123456789")
    error = ub.wait_for(lambda: browser.find_element(By.ID, "login-error"))
    assert error.text == "Wrong key." and "/ui/login" in browser.current_url
    ub.login(browser, gateway.url, ub.ACME_KEY)  # a tenant's plain API key does not open the dashboard
    assert "use the admin key" in ub.wait_for(lambda: browser.find_element(By.ID, "login-error")).text
    ub.login(browser, gateway.url, ub.ADMIN_KEY)
    ub.wait_for(lambda: browser.find_element(By.ID, "who").text == "admin")
    assert browser.current_url.endswith("/ui/overview")
    session = browser.get_cookie("llmc_session")
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # not readable by scripts


def test_a_call_appears_without_reloading_and_its_detail_opens(browser: Any, gateway: GatewayProc) -> None:
    By = _by()
    _logged_in(browser, gateway)
    browser.get(gateway.url + "/ui/calls")
    before = {r["id"] for r in _rows(browser)}
    gid, completion = ub.chat(
        gateway.url, ub.ACME_KEY, "fast", "Hello from the browser test", extra_body={"agent": "ada"}
    )
    assert completion.choices[0].message.content
    row = ub.wait_for(lambda: next((r for r in _rows(browser) if r["gateway_id"] == gid), None), timeout=20)
    assert row["id"] not in before and row["tenant"] == "acme" and row["model"] == "openai:gpt-4o-mini"
    assert row["status"] == "ok"
    assert browser.execute_script("return document.getElementById('content').dataset.refreshedAt")  # in place

    browser.get(gateway.url + "/ui/overview?group=key")
    totals = browser.find_element(By.ID, "totals").text
    assert "acme-app" in totals
    assert int(browser.find_element(By.ID, "stat-calls").text.replace(",", "")) >= 1
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-tokens svg rect")

    browser.get(gateway.url + "/ui/calls?" + f"request={gid}")
    browser.find_element(By.CSS_SELECTOR, "#calls tbody tr a").click()
    ub.wait_for(lambda: browser.find_elements(By.ID, "fields"))

    def field(name: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, f'dd[data-field="{name}"]').text

    assert field("request_id") == row["id"] and field("tenant_id") == "acme" and field("agent") == "ada"
    assert field("provider") == "openai" and field("model") == "gpt-4o-mini" and field("success") == "yes"
    assert field("endpoint") == "/v1/chat/completions" and int(field("total_tokens")) > 0
    assert f'"gateway_request_id": "{gid}"' in browser.find_element(By.ID, "metadata").text


def test_filters_narrow_the_calls(browser: Any, gateway: GatewayProc, mock: MockServer) -> None:
    import openai

    By = _by()
    _logged_in(browser, gateway)
    ub.chat(gateway.url, ub.BETA_KEY, "local", "Classify this.")
    mock.script(model="gpt-4.1", error="server", times=1)
    with pytest.raises(openai.APIError):
        ub.chat(gateway.url, ub.BETA_KEY, "openai:gpt-4.1", "This one fails upstream.")
    browser.get(gateway.url + "/ui/calls")
    ub.wait_for(lambda: any(r["model"] == "ollama:qwen3" for r in _rows(browser)))
    assert {r["tenant"] for r in _rows(browser)} >= {"acme", "beta"}

    _select(browser, "f-model", "ollama:qwen3")  # a change submits the form
    ub.wait_for(lambda: "model=ollama" in browser.current_url)
    rows = _rows(browser)
    assert rows and {r["model"] for r in rows} == {"ollama:qwen3"}

    browser.get(gateway.url + "/ui/calls")
    _select(browser, "f-status", "failed")
    ub.wait_for(lambda: "status=failed" in browser.current_url)
    rows = _rows(browser)
    assert rows and all(r["status"] != "ok" for r in rows) and {r["model"] for r in rows} == {"openai:gpt-4.1"}

    _select(browser, "f-tenant", "acme")
    ub.wait_for(lambda: "tenant=acme" in browser.current_url)
    assert _rows(browser) == [] and "No calls match." in browser.find_element(By.ID, "calls").text
    browser.find_element(By.ID, "f-clear").click()
    ub.wait_for(lambda: browser.current_url.endswith("/ui/calls"))
    assert len(_rows(browser)) >= 3


def test_a_key_revoked_in_the_browser_is_refused(browser: Any, gateway: GatewayProc) -> None:
    import openai

    By = _by()
    _logged_in(browser, gateway)
    browser.get(gateway.url + "/ui/keys")
    _select(browser, "c-tenant", "acme")
    browser.find_element(By.ID, "c-name").send_keys("browser-svc")
    browser.find_element(By.ID, "c-create").click()
    plain = ub.wait_for(lambda: browser.find_element(By.ID, "plain-key").text)
    assert plain.startswith("llmc-")
    _, ok = ub.chat(gateway.url, plain, "fast", "Works before the revoke.")
    assert ok.choices[0].message.content

    browser.get(gateway.url + "/ui/keys")
    row = browser.find_element(By.XPATH, "//table[@id='keys']//tr[td[1][normalize-space()='browser-svc']]")
    key_id = row.get_attribute("data-key-id")
    # its last use is written in batches (every 2 s); the page's own refresh (every 10 s) shows it
    last_used = f'tr[data-key-id="{key_id}"] .last-used'
    assert ub.wait_for(lambda: browser.find_element(By.CSS_SELECTOR, last_used).text == "just now", 25, 0.5)
    browser.find_element(By.CSS_SELECTOR, f'tr[data-key-id="{key_id}"] button.revoke').click()
    alert = ub.wait_for(lambda: browser.switch_to.alert)
    assert "browser-svc" in alert.text
    alert.accept()
    t0 = time.monotonic()
    assert "revoked" in ub.wait_for(lambda: browser.find_element(By.ID, "done")).text
    status = browser.find_element(By.CSS_SELECTOR, f'tr[data-key-id="{key_id}"] .status').text
    assert status == "revoked" and not browser.find_elements(
        By.CSS_SELECTOR, f'tr[data-key-id="{key_id}"] button.revoke'
    )

    def refused() -> bool:
        try:
            ub.chat(gateway.url, plain, "fast", "After the revoke.")
        except openai.AuthenticationError as exc:
            return exc.status_code == 401
        return False

    assert ub.wait_for(refused, timeout=2.0, interval=0.05)
    assert time.monotonic() - t0 < 2.0


def test_caller_strings_show_as_text(browser: Any, gateway: GatewayProc) -> None:
    By = _by()
    _logged_in(browser, gateway)
    payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    gid, _ = ub.chat(
        gateway.url, ub.ACME_KEY, "fast", "hi", extra_body={"agent": payload, "metadata": {"note": payload}}
    )
    browser.get(gateway.url + f"/ui/calls?request={gid}")
    browser.find_element(By.CSS_SELECTOR, "#calls tbody tr a").click()
    agent = ub.wait_for(lambda: browser.find_element(By.CSS_SELECTOR, 'dd[data-field="agent"]'))
    assert agent.text == payload
    assert payload.replace('"', '\\"') in browser.find_element(By.ID, "metadata").text
    assert browser.execute_script("return window.__xss === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, "#content img")


def test_logout_ends_the_session(browser: Any, gateway: GatewayProc) -> None:
    By = _by()
    _logged_in(browser, gateway)
    browser.find_element(By.ID, "logout").click()
    ub.wait_for(lambda: browser.find_elements(By.ID, "key"))
    browser.get(gateway.url + "/ui/budgets")
    assert "/ui/login" in browser.current_url
