"""Every HTML page the pipeline writes carries the reviewer pages' Content-Security-Policy (issue 11).

The chapter pages had it; the front page (``index.html``), ``runs.html`` and the page for
official statistics offices did not, so a payload that slipped past the escaping into them
could run. The pages bring no script of their own: the one policy forbids every script.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from page_policy import csp_of

from analysis.pipeline.render import CONTENT_SECURITY_POLICY, TEMPLATES_DIR
from analysis.pipeline.runner import run_pipeline


def assert_page_has_the_policy(path: Path) -> None:
    page = path.read_text(encoding="utf-8")
    assert csp_of(page) == [CONTENT_SECURITY_POLICY], f"{path}: no (or another) Content-Security-Policy"
    head = page.lower().split("</head>", 1)[0]
    # before anything it governs: the first style, link or script element of the head
    first = min((head.find(tag) for tag in ("<style", "<link", "<script") if tag in head), default=len(head))
    assert head.find("content-security-policy") < first, f"{path}: the policy comes after what it governs"


@pytest.mark.slow  # builds the tiny report: about 50 s on the loaded machine
def test_every_page_of_a_built_report_carries_the_policy(tiny_project):
    result = run_pipeline(tiny_project.report, workers=1, **tiny_project.kwargs())
    assert result.exit_code == 0
    pages = sorted(tiny_project.outputs.rglob("*.html"))
    names = {p.name for p in pages}
    assert {"index.html", "runs.html", "tiny.html"} <= names, names
    for path in pages:
        assert_page_has_the_policy(path)
    # the page for official statistics offices (python -m analysis export) is checked in
    # tests/test_exchange.py::test_the_page_carries_the_content_security_policy


def test_every_page_template_carries_the_policy():
    """Each whole-page template (not the includes) sets the policy in its head, so that a page
    added later cannot miss it unseen."""
    pages = [p for p in TEMPLATES_DIR.rglob("*.j2") if "<!DOCTYPE html>" in p.read_text(encoding="utf-8")]
    assert {p.name for p in pages} >= {"front.html.j2", "index.html.j2", "official_statistics.html.j2"}
    for path in pages:
        assert "Content-Security-Policy" in path.read_text(encoding="utf-8"), path
