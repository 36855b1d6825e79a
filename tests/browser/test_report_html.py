"""The reviewer HTML in a real browser: index, links, images, console, accessibility (axe-core)."""

from __future__ import annotations

from urllib.parse import urljoin, urlparse

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: axe-core impacts that fail the audit.
BLOCKING = {"serious", "critical"}


def _local_links(page, base: str) -> list[str]:
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    out = []
    for href in hrefs:
        url = urljoin(page.url, href)
        if urlparse(url).netloc == urlparse(base).netloc and not href.startswith("#"):
            out.append(url.split("#")[0])
    return sorted(set(out))


def _chapter_pages(page, server) -> dict[str, str]:
    """One rendered notebook page per chapter, from the run status page's links (first link of each chapter)."""
    page.goto(f"{server}/runs.html")
    pages: dict[str, str] = {}
    for url in _local_links(page, server):
        path = urlparse(url).path.strip("/")
        if not path.endswith(".html") or path in ("index.html", "runs.html"):
            continue
        pages.setdefault(path.split("/")[0], url)
    return pages


def _screenshot(page, folder, name):
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)


def test_index_loads_without_console_errors(page, server, screenshots_dir):
    response = page.goto(f"{server}/index.html")
    assert response is not None and response.ok
    assert page.title().strip(), "index.html has no <title>"
    assert page.locator("table, a").count() > 0, "index.html lists no runs"
    _screenshot(page, screenshots_dir, "index")
    assert page.console_errors == [], f"console errors on the index: {page.console_errors}"


def test_every_chapter_is_linked(page, server):
    pages = _chapter_pages(page, server)
    expected = {"data_profile", "group_profile", "intersections", "geography", "geography_across_countries",
                "official_statistics", "synthesis"}
    assert expected <= set(pages), f"chapters without a rendered page on the index: {sorted(expected - set(pages))}"


def test_every_link_resolves(page, server):
    page.goto(f"{server}/index.html")
    to_check = set(_local_links(page, server))
    for url in list(to_check):
        if url.endswith(".html"):
            page.goto(url)
            to_check |= set(_local_links(page, server))
    broken = []
    for url in sorted(to_check):
        response = page.request.get(url)
        if not response.ok:
            broken.append(f"{url} ({response.status})")
    assert not broken, f"broken links: {broken}"


def test_every_image_loads_and_has_alt_text(page, server, screenshots_dir):
    for chapter, url in _chapter_pages(page, server).items():
        page.goto(url, wait_until="load")
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => ({src: e.getAttribute('src'), ok: e.complete && e.naturalWidth > 0,"
                   " alt: e.getAttribute('alt')}))")
        broken = [i["src"] for i in images if not i["ok"]]
        assert not broken, f"{chapter}: images that did not load: {broken}"
        unlabelled = [i["src"] for i in images if not (i["alt"] or "").strip()]
        assert not unlabelled, f"{chapter}: images without alt text: {unlabelled}"
        _screenshot(page, screenshots_dir, chapter)
        assert page.console_errors == [], f"console errors on {url}: {page.console_errors}"


def _audit(page, axe_source: str) -> list[dict]:
    page.add_script_tag(content=axe_source)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v.get("impact") in BLOCKING]


def _describe(violations) -> str:
    return "; ".join(f"{v['id']} ({v['impact']}): {v['help']} — e.g. {v['nodes'][0]['target']}" for v in violations)


def test_accessibility_of_index(audit_page, server, axe_source):
    page = audit_page  # the front page carries the chapter pages' Content-Security-Policy
    page.goto(f"{server}/index.html")
    violations = _audit(page, axe_source)
    assert not violations, "index.html: " + _describe(violations)


def test_accessibility_of_one_page_per_chapter(audit_page, server, axe_source):
    page = audit_page
    failures = []
    for chapter, url in _chapter_pages(page, server).items():
        page.goto(url, wait_until="load")
        violations = _audit(page, axe_source)
        if violations:
            failures.append(f"{chapter}: {_describe(violations)}")
    assert not failures, " | ".join(failures)
