"""Narrative from chapter code reaches the reviewer page as text (issue 11).

Chapter sentences interpolate group labels, country names and indicator labels from ``params/``,
which partner organisations write. :func:`analysis.chapters.show_text` emits Markdown, and
Markdown passes raw HTML through: a label holding ``<script>`` would run in every chapter page.
"""

from __future__ import annotations

from nbconvert.filters.markdown_mistune import markdown2html_mistune

from analysis.chapters import show_text

PAYLOADS = ['<script>alert("x")</script>', "<img src=x onerror=alert(1)>", "[click](javascript:alert(1))",
            "**bold** _it_ `code` | a | b |", "a & b < c > d \\ e"]


def _rendered(text: str) -> str:
    """The Markdown output as the reviewer HTML renders it (nbconvert's Markdown renderer)."""
    return markdown2html_mistune(show_text(text).data)


def test_labels_in_narrative_are_text_not_markup():
    for payload in PAYLOADS:
        html = _rendered(f"The largest gap is for {payload} in Kenya.")
        assert "<script" not in html and "<img" not in html and "<a " not in html, payload
        assert "<strong>" not in html and "<em>" not in html and "<code>" not in html and "<table" not in html


def test_the_narrative_text_survives_escaping():
    html = _rendered('Women & girls <older> "quoted" 12% [a] *b*')
    assert "Women &amp; girls &lt;older&gt;" in html
    assert "[a]" in html and "*b*" in html and "12%" in html


def test_evidence_section_headings_from_params_are_text(monkeypatch):
    from analysis.chapters import evidence

    monkeypatch.setattr(evidence, "_labels", lambda run: {"chapter": {"sections": {"map": PAYLOADS[0] + PAYLOADS[2]}}})
    html = markdown2html_mistune(evidence.heading(None, "map").data)
    assert html.startswith("<h2") and "<script" not in html and 'href="javascript:' not in html
    assert "&lt;script&gt;" in html
