"""Fixtures for the browser test: a local web server for _build/html and headless Chromium.

tests/browser/test_pages.py skips itself (with the reason) unless _build/html was built by
tests/browser/build.py, with MathJax and the widget manager served locally; tests/browser/run.sh
does everything and turns every such skip into a failure (RECBOOK_BROWSER_TEST=1).
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
VIEWPORT = (1280, 800)


def strict() -> bool:
    """True under tests/browser/run.sh: what would be a skip is a failure."""
    return os.environ.get("RECBOOK_BROWSER_TEST", "") not in ("", "0")


def skip_or_fail(reason: str):
    if strict():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture(scope="session")
def site():
    """Base URL of a server for _build/html on 127.0.0.1 (free port), stopped afterwards."""
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="book-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _find(env: str, *names: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    return next((path for name in names if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Headless Chromium driven by Selenium, with every host but 127.0.0.1 unresolvable."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("selenium is not installed (tests/browser/run.sh installs it)")
    chromium = _find("CHROME_BIN", "chromium", "chromium-browser", "google-chrome")
    driver_path = _find("CHROMEDRIVER", "chromedriver")
    if not chromium or not driver_path:
        skip_or_fail("chromium and chromedriver are needed (Debian: apt-get install -y chromium "
                     "chromium-driver; tests/browser/run.sh installs them)")

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage",
                "--mute-audio", f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                # The pages must work offline: anything not on 127.0.0.1 fails to resolve.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(60)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()
