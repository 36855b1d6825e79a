"""make report-pdf: one print document of the front page and the chapter pages, printed by Chromium."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from analysis.pipeline import pdf


def _outputs(tmp_path):
    (tmp_path / "index.html").write_text(
        '<!DOCTYPE html><html lang="en"><head><title>Report</title><style>body{}</style></head>'
        "<body><h1>Front page</h1><p>Key findings</p></body></html>", encoding="utf-8")
    runs = {}
    for run_id, chapter in (("b/women/KEN", "b"), ("a/women/KEN", "a"), ("a/women/UGA", "a")):
        page = tmp_path / run_id / "page.html"
        page.parent.mkdir(parents=True)
        page.write_text(f"<html><head><style>.jp{{}}</style></head><body><h1>{run_id}</h1>"
                        "<script>alert(1)</script></body></html>", encoding="utf-8")
        runs[run_id] = {"chapter": chapter, "status": "ok", "outputs": {"html": [f"{run_id}/page.html"]}}
    runs["a/women/SEN"] = {"chapter": "a", "status": "failed", "outputs": {"html": []}}
    (tmp_path / "manifest.json").write_text(json.dumps({"runs": runs}), encoding="utf-8")
    return tmp_path


def test_print_document_holds_the_front_page_then_every_chapter_page(tmp_path):
    document = pdf.print_document(_outputs(tmp_path)).read_text(encoding="utf-8")
    order = [document.index(s) for s in ("Front page", "<h1>b/women/KEN", "<h1>a/women/KEN", "<h1>a/women/UGA")]
    assert order == sorted(order)  # front page, then chapters in the order of the run matrix
    assert document.count('class="print-page"') == 4 and "break-before: page" in document
    assert "<script" not in document and '<html lang="en">' in document
    one = pdf.print_document(tmp_path, one_per_chapter=True).read_text(encoding="utf-8")
    assert one.count('class="print-page"') == 3 and "a/women/UGA" not in one


def test_missing_report_is_a_clear_error(tmp_path):
    with pytest.raises(pdf.PdfError, match=r"index.html: no front page; build the report first"):
        pdf.print_document(tmp_path)


def test_chromium_prints_one_pdf(tmp_path):
    if not any(shutil.which(n) for n in pdf.CHROMIUM_NAMES):
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("chromium is missing (make browser-deps); in CI this is an error")
        pytest.skip("chromium is not installed (make browser-deps)")
    outputs = _outputs(tmp_path)
    assert pdf.main(["--outputs", str(outputs)]) == 0
    data = (outputs / "report.pdf").read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page\n") + data.count(b"/Type/Page") >= 1
