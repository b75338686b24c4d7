#!/usr/bin/env python3
"""Regenerate the dashboard screenshots in docs/img/ (ui-*.png) with the browser test's own tooling:
the mock provider server, a real gateway process, some traffic through the openai SDK, then headless
Chromium (Debian's chromium + chromium-driver) logged in with the admin key.

    PYTHONPATH=src python scripts/ui_screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.server import ui_browser as ub  # noqa: E402
from tests.server.conftest import GatewayProc  # noqa: E402

from llm_connect.testing import MockServer  # noqa: E402

#: (file name, path, element to wait for)
PAGES = (
    ("ui-login.png", None, "key"),
    ("ui-overview.png", "/ui/overview?group=key&range=24h", "chart-spend"),
    ("ui-budgets.png", "/ui/budgets", "budgets"),
    ("ui-keys.png", "/ui/keys", "keys"),
    ("ui-calls.png", "/ui/calls", "calls"),
    ("ui-call.png", "CALL", "fields"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"))
    args = parser.parse_args()
    reason = ub.skip_reason()
    if reason:
        print(f"cannot take screenshots: {reason}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as tmp, MockServer.run_in_thread() as mock:
        gw = GatewayProc(ub.gateway_config(mock, Path(tmp)), Path(tmp)).start()
        driver = ub.make_driver(1360, 860)
        try:
            ub.traffic(gw.url, mock)
            for name, path, marker in PAGES:
                if path is None:
                    driver.get(gw.url + "/ui/login")
                elif path == "CALL":
                    driver.get(gw.url + "/ui/calls?model=openai%3Agpt-4o-mini")  # the newest: a key made by the API
                    driver.find_element(By.CSS_SELECTOR, "#calls tbody tr a").click()
                else:
                    if "/ui/login" in driver.current_url or not driver.get_cookie("llmc_session"):
                        ub.login(driver, gw.url, ub.ADMIN_KEY)
                        ub.wait_for(lambda: driver.find_elements(By.ID, "who"))
                    driver.get(gw.url + path)
                ub.wait_for(lambda m=marker: driver.find_elements(By.ID, m))
                if name == "ui-keys.png":  # last use is written every 2 s: show it
                    time.sleep(2.5)
                    driver.refresh()
                    ub.wait_for(lambda m=marker: driver.find_elements(By.ID, m))
                ub.screenshot(driver, out / name)
                print(f"wrote {out / name}")
        finally:
            driver.quit()
            gw.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
