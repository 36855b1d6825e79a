"""Reviewer HTML with hostile labels (issue 11, "injection into what reviewers open").

Group labels, country names, chapter titles, source titles and licences come from ``params/``
and source cards, which partner organisations write: every one of them must reach the page as
text, and the page must forbid scripts it did not bring itself (Content-Security-Policy).
"""

from __future__ import annotations

import re

import nbformat
from page_policy import csp_of

from analysis.pipeline.matrix import RunSpec
from analysis.pipeline.render import CONTENT_SECURITY_POLICY, render_run_html

PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'&'


def _hostile_run(tmp_path) -> tuple[RunSpec, dict]:
    out = tmp_path / "outputs" / "c" / "g" / "KEN"
    out.mkdir(parents=True)
    run = RunSpec(run_id="c/g/KEN", chapter="c", chapter_title="Chapter " + PAYLOAD, scope="per_group_country",
                  notebook=str(tmp_path / "nb.ipynb"), group="g", country="KEN", source=None, sources=["s"],
                  parameters={"group": "g", "country": "KEN", "note" + PAYLOAD: "value " + PAYLOAD,
                              "items": ["a", PAYLOAD]},
                  output_dir=str(out), timeout=60, stage=0)
    context = {"group_labels": {"g": "Group " + PAYLOAD}, "country_names": {"KEN": "Country " + PAYLOAD},
               "sources": {"s": {"title": "Source " + PAYLOAD, "synthetic": True, "licence": "Licence " + PAYLOAD}},
               "disclosure": {"suppress_below": 25, "caution_below": 50},
               "code_version": {"commit": PAYLOAD, "dirty": False}, "outputs_dir": str(tmp_path / "outputs"),
               "project_root": str(tmp_path)}
    return run, context


def test_every_label_from_params_and_cards_is_text_on_the_page(tmp_path):
    run, context = _hostile_run(tmp_path)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title")])
    error = {"message": "failed " + PAYLOAD, "cell_index": 3, "cell_source": "x = '" + PAYLOAD + "'"}
    page = render_run_html(nb, run, context, tmp_path, tmp_path / "page.html", status="failed", error=error,
                           ran_at=PAYLOAD).read_text()
    assert "<script" not in page.lower()
    assert "onerror=" not in page.replace("onerror=alert(1)&gt;", "")  # only as escaped text
    for text in ("Group ", "Country ", "Chapter ", "Source ", "Licence ", "value ", "failed "):
        assert text + "&lt;script&gt;alert(" in page, text
    assert not re.search(r"<img[^>]*src=x", page)


def test_chapter_pages_carry_a_content_security_policy_that_forbids_scripts(tmp_path):
    run, context = _hostile_run(tmp_path)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("text")])
    page = render_run_html(nb, run, context, tmp_path, tmp_path / "page.html").read_text()
    assert csp_of(page) == [CONTENT_SECURITY_POLICY]
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";") if d.strip())
    assert directives["script-src"] == "'none'" and directives["default-src"] == "'none'"
    assert "'unsafe-inline'" not in directives["script-src"]
    # It comes before anything it governs.
    assert page.index("Content-Security-Policy") < page.index("<style")
