"""Browser tooling for the dashboard: Debian's Chromium driven through its chromedriver by selenium (no
browser download), a gateway config with tenants, keys and budgets on the mock server, and a little traffic
made with the official openai SDK. Used by tests/server/test_ui_browser.py and scripts/ui_screenshots.py."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_connect.testing import MockServer

ADMIN_KEY = "ui-admin-key-0123456789abcdef"
ACME_KEY = "ui-acme-key-0123456789abcdef"
ACME_OPS_KEY = "ui-acme-ops-key-0123456789abcdef"
BETA_KEY = "ui-beta-key-0123456789abcdef"
#: the mock's models, priced so spend shows (USD per million tokens)
PRICES = {
    "openai:gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
    "openai:gpt-4.1": {"input_per_mtok": 2, "output_per_mtok": 8},
    "anthropic:claude-haiku-4-5": {"input_per_mtok": 1, "output_per_mtok": 5},
    "ollama:qwen3": {"input_per_mtok": 0, "output_per_mtok": 0},
}


def browser_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) of the system, or None."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def skip_reason() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if browser_paths() is None:
        return "no Chromium: apt-get install -y chromium chromium-driver (./dev test does it where it can)"
    return None


def make_driver(width: int = 1360, height: int = 900) -> Any:
    """A headless Chromium window of ``width`` x ``height`` CSS pixels."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = browser_paths()
    assert paths is not None, skip_reason()
    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
        "--lang=en-GB",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(paths[1]), options=opts)
    driver.set_page_load_timeout(30)
    return driver


def wait_for(what: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Poll ``what()`` until it returns something truthy (its value) or raise AssertionError."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = what()
        except Exception as exc:  # an element not there yet, a stale reference after a refresh
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting; last result: {last!r}")


def login(driver: Any, base: str, key: str) -> None:
    """Open the dashboard and log in with ``key`` (the login form is where an anonymous visit lands)."""
    from selenium.webdriver.common.by import By

    driver.get(base + "/ui/overview")
    wait_for(lambda: driver.find_elements(By.ID, "key"))
    field = driver.find_element(By.ID, "key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.ID, "login").click()


def screenshot(driver: Any, path: Path, width: int = 1360) -> None:
    """A PNG of the whole page (not only the window), at ``width`` CSS pixels."""
    import base64

    height = int(driver.execute_script("return Math.ceil(document.documentElement.scrollHeight)"))
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": max(600, height), "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.write_bytes(base64.b64decode(shot["data"]))


def gateway_config(mock: MockServer, workdir: Path, **sections: Any) -> dict[str, Any]:
    """Tenants acme (daily budget, a team "support") and beta (monthly USD budget), keys with their own budgets,
    groups on the mock server in three wire formats, a SQLite ledger (the key store beside it), prices for the
    mock's models."""
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "request_timeout": 20},
        "ledger": {"url": str(workdir / "usage.sqlite3")},
        "providers": {
            "openai": {"api_key": "sk-mock-0123456789", "api_base": mock.openai_base},
            "anthropic": {"api_key": "sk-ant-mock-0123456789", "api_base": mock.anthropic_base},
            "ollama": {"api_base": mock.ollama_base},
        },
        "router": {
            "groups": {
                "fast": [{"model": "openai:gpt-4o-mini"}],
                "quality": [{"model": "openai:gpt-4.1"}, {"model": "anthropic:claude-haiku-4-5"}],
                "local": [{"model": "ollama:qwen3"}],
            },
            "strategy": "ordered",
            "num_retries": 0,
        },
        "default_model": "fast",
        "admin_key": ADMIN_KEY,
        "tenants": {
            "acme": {"budget": {"tokens": 200_000, "usd": "5", "period": "daily"}},
            "beta": {"budget": {"usd": "0.02", "period": "monthly"}},
        },
        "teams": {"support": {"tenant": "acme", "name": "Support", "budget": {"tokens": 100_000, "period": "daily"}}},
        "api_keys": [
            {"name": "acme-app", "key": ACME_KEY, "tenant": "acme", "budget": {"tokens": 50_000}},
            {"name": "acme-ops", "key": ACME_OPS_KEY, "tenant": "acme", "team": "support", "budget": {"tokens": 50}},
            {"name": "beta-app", "key": BETA_KEY, "tenant": "beta", "models": ["*"]},
        ],
        "pricing": PRICES,
    }
    cfg.update(sections)
    return cfg


def openai_client(base: str, key: str) -> Any:
    import openai

    return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=20)


def chat(base: str, key: str, model: str, text: str, **extra: Any) -> tuple[str, Any]:
    """One chat completion with the openai SDK: (the gateway's x-request-id, the completion)."""
    raw = openai_client(base, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=64, **extra
    )
    return raw.headers["x-request-id"], raw.parse()


def admin_api(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A call of the gateway's admin API with the admin key (raises on an error status)."""
    import json
    import urllib.request

    req = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def traffic(base: str, mock: MockServer) -> None:
    """A handful of calls from four keys over three models, one of them failing upstream; a key made through
    the admin API and used, another one revoked."""
    import openai

    made = admin_api(base, "POST", "/v1/admin/keys", {"tenant": "acme", "name": "billing-service", "team": "support"})
    old = admin_api(base, "POST", "/v1/admin/keys", {"tenant": "beta", "name": "old-batch-job"})
    admin_api(base, "POST", f"/v1/admin/keys/{old['id']}/revoke")
    time.sleep(1.0)  # every replica takes a change within 1 s
    chat(base, made["key"], "fast", "Reconcile the invoices.", extra_body={"agent": "billing"})

    for i in range(6):
        chat(base, ACME_KEY, "fast", f"Summarise ticket {i} in one line.", extra_body={"agent": "triage"})
    for i in range(3):
        chat(base, ACME_OPS_KEY, "quality", f"Draft the incident report, part {i}.", extra_body={"agent": "writer"})
    for i in range(2):
        chat(base, BETA_KEY, "local", f"Classify message {i}.")
    mock.script(model="gpt-4.1", error="server", times=1)
    try:
        chat(base, BETA_KEY, "openai:gpt-4.1", "This one fails upstream.")
    except openai.APIError:
        pass
