"""The French and Arabic pages in a real browser: axe-clean, right to left for Arabic, and
screenshots of each language's front page (issue 16's closing note shows them).

Builds only one chapter × one group × one country per language (tests/i18n_build.py), never the
whole demo report. Screenshots go to that build's own folder: ``<build>/screenshots/``.
"""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from i18n_build import LANGUAGES, RUN_ID, session_build

pytestmark = [pytest.mark.browser]

BLOCKING = {"serious", "critical"}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def i18n_outputs(tmp_path_factory):
    return session_build(tmp_path_factory)


@pytest.fixture(scope="module")
def i18n_server(i18n_outputs):
    handler = functools.partial(_QuietHandler, directory=str(i18n_outputs))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def csp_free_page(browser):
    """A page that may inject axe-core into the reviewer pages, whose Content-Security-Policy
    forbids every script (the page's own policy is tested elsewhere)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    yield context.new_page()
    context.close()


def _audit(page, axe_source: str) -> list[dict]:
    page.add_script_tag(content=axe_source)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v.get("impact") in BLOCKING]


def _describe(violations) -> str:
    return "; ".join(f"{v['id']} ({v['impact']}): {v['help']} — e.g. {v['nodes'][0]['target']}"
                     for v in violations)


@pytest.mark.parametrize("code, direction", [("fr", "ltr"), ("ar", "rtl")])
def test_language_pages_in_the_browser(csp_free_page, i18n_server, i18n_outputs, axe_source, code, direction):
    page = csp_free_page
    screenshots = i18n_outputs.parent / "screenshots"
    screenshots.mkdir(exist_ok=True)
    failures = []
    for name, path in (("index", f"{code}/index.html"), ("group_profile", f"{code}/{RUN_ID}/group_profile.html")):
        response = page.goto(f"{i18n_server}/{path}", wait_until="load")
        assert response is not None and response.ok, path
        assert page.evaluate("document.documentElement.lang") == code
        assert page.evaluate("getComputedStyle(document.body).direction") == direction
        if name == "index":
            page.screenshot(path=str(screenshots / f"front_page_{code}.png"), full_page=False)
        else:
            page.screenshot(path=str(screenshots / f"group_profile_{code}.png"), full_page=False)
        # the switch goes to the same page in the other built language
        other = next(c for c in LANGUAGES if c != code)
        href = page.get_attribute(f'nav.language-switch a[hreflang="{other}"]', "href")
        assert href and href.endswith(path.split("/", 1)[1])
        violations = _audit(page, axe_source)
        if violations:
            failures.append(f"{path}: {_describe(violations)}")
    assert not failures, " | ".join(failures)
    assert (screenshots / f"front_page_{code}.png").stat().st_size > 10_000
