"""Fixtures of the browser suite: built outputs, a localhost server, headless Debian Chromium.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``make browser-deps``), driven by
Playwright for Python; axe-core comes from npm (``.cache/npm/node_modules/axe-core``). The tests
skip only when Chromium is missing and cannot be installed (not root) — never in CI, where they fail.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest
from report_build import session_outputs

from analysis import config

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AXE = config.PROJECT_ROOT / ".cache" / "npm" / "node_modules" / "axe-core" / "axe.min.js"


def _missing(what: str):
    message = f"{what} (run `make browser-deps`)"
    if IN_CI:
        pytest.fail(message + " — in CI this is an error, not a skip")
    pytest.skip(message)


@pytest.fixture(scope="session")
def outputs_dir(tmp_path_factory) -> Path:
    return session_outputs(tmp_path_factory)


@pytest.fixture(scope="session")
def server(outputs_dir):
    """``outputs/`` served by the standard library on 127.0.0.1 (a free port), in a thread."""
    handler = functools.partial(_QuietHandler, directory=str(outputs_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output readable
        pass


@pytest.fixture(scope="session")
def browser():
    if not (CHROMIUM.exists() or shutil.which("chromium")):
        _missing("Debian chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
                                              args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield _watched(context.new_page())
    context.close()


@pytest.fixture()
def audit_page(browser):
    """A page for the accessibility audit: the chapter pages' Content-Security-Policy forbids every
    script, axe-core's included, so this context alone lets the test inject it (the XSS test and
    every other test keep the policy)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    yield _watched(context.new_page())
    context.close()


def _watched(page):
    page.console_errors = []

    def on_console(message):
        # a failed resource load is reported (with its URL) by on_response below
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            page.console_errors.append(message.text)

    def on_response(response):
        # every page links an inline icon, so the browser never needs to ask for /favicon.ico
        if response.status >= 400:
            page.console_errors.append(f"{response.status} for {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    return page


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.exists():
        _missing(f"axe-core is not installed at {AXE}")
    return AXE.read_text()


@pytest.fixture(scope="session")
def screenshots_dir(outputs_dir) -> Path:
    """Screenshots go to the test build's own outputs (``<build>/outputs/screenshots``; kept as
    CI artefacts), never into the project's outputs/ folder."""
    folder = outputs_dir / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
