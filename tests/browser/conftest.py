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
PHONE = (390, 844)  # CSS pixels of a common phone, held upright


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


def _chromium(profile, size, mobile: bool):
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
                "--mute-audio", f"--window-size={size[0]},{size[1]}",
                f"--user-data-dir={profile}",
                # The pages must work offline: anything not on 127.0.0.1 fails to resolve.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(90)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": size[0], "height": size[1], "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile})
    return driver


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Headless Chromium driven by Selenium, with every host but 127.0.0.1 unresolvable."""
    driver = _chromium(tmp_path_factory.mktemp("chromium-profile"), VIEWPORT, mobile=False)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def phone(tmp_path_factory):
    """The same, as a phone: :data:`PHONE` CSS pixels wide, mobile layout, a 2x screen."""
    driver = _chromium(tmp_path_factory.mktemp("chromium-phone"), PHONE, mobile=True)
    try:
        yield driver
    finally:
        driver.quit()


def pytest_terminal_summary(terminalreporter):
    """Print the charts' response times and the widths at a phone's width, if this run measured them."""
    import json

    records = ROOT / "_build" / "browser"
    times = records / "chart-times.json"
    if times.is_file():
        rows = json.loads(times.read_text(encoding="utf-8"))
        slowest: dict = {}
        for r in rows:
            key = (r["page"], r["chart"], r["controls"])
            slowest[key] = max(slowest.get(key, 0.0), r["ms"])
        terminalreporter.section("chart response times (slowest control change, ms)")
        for (page, chart, controls), ms in sorted(slowest.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{ms:8.1f}  {page} chart {chart} ({controls})")
    widths = records / "phone-widths.json"
    if widths.is_file():
        rows = json.loads(widths.read_text(encoding="utf-8"))
        terminalreporter.section(f"widths at {PHONE[0]} px (CSS px: element / room in its cell)")
        chapter = lambda page: page.startswith("book/") and "/" not in page[len("book/"):]  # noqa: E731
        for r in rows:
            if chapter(r["page"]) and (r["kind"] in ("chart", "page") or r["width"] > r["room"] + 1):
                flag = "  TOO WIDE" if r["width"] > r["room"] + 1 else ""
                terminalreporter.write_line(f"{r['width']:7.1f} / {r['room']:6.1f}  {r['page']} {r['kind']} "
                                            f"{r['index']}{' (redrawn to fit)' if r.get('fitted') else ''}{flag}")
