"""The front page and the chapter pages of the demo report in a real browser (issue 13, "Done when").

- findings exist for every theme whose data allow one, and each finding's numbers equal the rows it
  cites in ``all_estimates.csv``; no finding cites a caution or suppressed row;
- no table has duplicate rows; tables of runs with several sources have a source column;
- no interval of a proportion leaves [0, 100]; no zero-width interval is flagged ok;
- axe-core finds no serious or critical violation on the front page and the run status page;
- screenshots of the front page and one page per chapter go to the test build's own
  ``outputs/screenshots/`` (CI artefacts).
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import pytest

from analysis import findings, tables
from analysis.schema import load_indicators

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BLOCKING = {"serious", "critical"}


@pytest.fixture(scope="module")
def estimates(outputs_dir):
    return tables.read_csv(outputs_dir / "tables" / "all_estimates.csv")


@pytest.fixture(scope="module")
def manifest(outputs_dir):
    return json.loads((outputs_dir / "manifest.json").read_text())


def _findings_on_page(page) -> list[dict]:
    return page.eval_on_selector_all(
        "li.finding", "els => els.map(e => ({text: e.textContent, data: Object.assign({}, e.dataset),"
                      " theme: e.closest('section.theme').dataset.theme}))")


def _row(estimates, data, **where):
    mask = ((estimates["source"] == data["source"]) & (estimates["country"] == data["country"])
            & (estimates["group"] == data["group"]) & (estimates["indicator"] == data["indicator"]))
    for column, value in where.items():
        mask &= estimates[column] == value
    rows = estimates[mask].drop_duplicates()
    assert len(rows) == 1, f"{data}: {len(rows)} rows of all_estimates.csv match {where}"
    return rows.iloc[0]


def test_every_finding_equals_the_rows_it_cites(page, server, estimates, screenshots_dir):
    page.goto(f"{server}/index.html")
    page.screenshot(path=str(screenshots_dir / "front_page.png"), full_page=True)
    shown = _findings_on_page(page)
    assert shown, "the front page shows no finding"
    for finding in shown:
        data = finding["data"]
        group = _row(estimates, data, breakdown="comparison", cell="group")
        reference = _row(estimates, data, breakdown="comparison", cell="reference")
        gap = estimates[(estimates["source"] == data["source"]) & (estimates["country"] == data["country"])
                        & (estimates["group"] == data["group"]) & (estimates["indicator"] == data["indicator"])
                        & (estimates["method"] == "difference")
                        & estimates["cell"].str.contains(" vs ", regex=False)].drop_duplicates()
        assert len(gap) == 1, data
        gap = gap.iloc[0]
        # the numbers of the page's data attributes are the rows' numbers...
        assert float(data["estimate"]) == pytest.approx(group["estimate"], abs=1e-12)
        assert float(data["referenceEstimate"]) == pytest.approx(reference["estimate"], abs=1e-12)
        assert float(data["gap"]) == pytest.approx(gap["estimate"], abs=1e-12)
        assert float(data["gapCiLow"]) == pytest.approx(gap["ci_low"], abs=1e-12)
        assert float(data["gapCiHigh"]) == pytest.approx(gap["ci_high"], abs=1e-12)
        assert int(data["n"]) == int(group["n_unweighted"])
        # ... and so are the words the reader reads
        text = finding["text"]
        assert f"{group['estimate'] * 100:.0f}% vs {reference['estimate'] * 100:.0f}%" in text, text
        assert f"difference {findings.signed_points(gap['estimate'])} points" in text, text
        assert (f"95% CI {findings.signed_points(gap['ci_low'])} to {findings.signed_points(gap['ci_high'])}"
                in text), text
        assert f"n = {int(group['n_unweighted']):,}" in text and "quality: ok" in text
        # never a caution or suppressed row, and the interval of the gap excludes zero
        assert {group["flag"], reference["flag"], gap["flag"]} == {"ok"}, text
        assert gap["ci_low"] > 0 or gap["ci_high"] < 0, text


def test_findings_exist_for_every_theme_with_eligible_data(page, server, estimates):
    indicators = load_indicators()
    percent = [k for k, v in indicators.items() if v.unit == "percent"]
    compared = findings.comparisons(estimates, indicators)
    eligible_themes = set(compared.loc[findings.eligible(compared, percent), "theme"])
    page.goto(f"{server}/index.html")
    sections = page.eval_on_selector_all(
        "section.theme", "els => els.map(e => ({theme: e.dataset.theme, findings: e.querySelectorAll('li.finding').length,"
                         " why: (e.querySelector('.no-finding') || {}).textContent || ''}))")
    assert {s["theme"] for s in sections} == {v.theme for v in indicators.values()}
    for section in sections:
        if section["theme"] in eligible_themes:
            assert section["findings"] > 0, f"theme {section['theme']} has eligible comparisons but no finding"
        else:
            assert section["findings"] == 0 and section["why"].strip(), section
    assert "How the findings are chosen" in page.content()


def test_front_page_and_runs_page_pass_axe(audit_page, server, axe_source):
    # audit_page bypasses the pages' Content-Security-Policy, which forbids axe's script too
    page = audit_page
    failures = []
    for name in ("index.html", "runs.html"):
        page.goto(f"{server}/{name}")
        page.add_script_tag(content=axe_source)
        result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        bad = [v for v in result["violations"] if v.get("impact") in BLOCKING]
        failures += [f"{name}: {v['id']} ({v['impact']}): {v['help']} — {v['nodes'][0]['target']}" for v in bad]
    assert not failures, " | ".join(failures)


def _one_page_per_chapter(manifest) -> dict[str, dict]:
    out = {}
    for run_id in sorted(manifest["runs"]):
        entry = manifest["runs"][run_id]
        html = (entry.get("outputs") or {}).get("html") or []
        if entry.get("status") == "ok" and html:
            # prefer a run with several sources: that is where mixing shows
            current = out.get(entry["chapter"])
            if current is None or len(entry.get("sources") or []) > len(current.get("sources") or []):
                out[entry["chapter"]] = entry
    return out


_INTERVAL = re.compile(r"^(-?[\d.]+)–(-?[\d.]+)$")
_PERCENT_INTERVAL = re.compile(r"(-?[\d.]+)% \((-?[\d.]+)–(-?[\d.]+)\)")


def test_chapter_tables_are_honest(page, server, manifest, screenshots_dir):
    pages = _one_page_per_chapter(manifest)
    assert {"data_profile", "group_profile", "intersections", "geography", "official_statistics",
            "synthesis"} <= set(pages)
    problems = []
    for chapter, entry in pages.items():
        url = f"{server}/{entry['outputs']['html'][0]}"
        page.goto(url, wait_until="load")
        page.screenshot(path=str(screenshots_dir / f"chapter_{chapter}.png"), full_page=False)
        found = page.eval_on_selector_all(
            "table", "els => els.map(t => ({caption: (t.caption || {}).textContent || '',"
                     " head: [...t.querySelectorAll('thead th')].map(c => c.textContent.trim()),"
                     " rows: [...t.querySelectorAll('tbody tr')].map(r => [...r.children].map(c => c.textContent.trim()))}))")
        several_sources = len(entry.get("sources") or []) > 1
        for table in found:
            name = f"{chapter} ({urlparse(url).path}): table '{table['caption'][:60]}'"
            keys = [tuple(r) for r in table["rows"]]
            if len(keys) != len(set(keys)):
                problems.append(f"{name}: duplicate rows")
            head = table["head"]
            if {"Estimate", "95% CI", "Reliability"} <= set(head):
                if several_sources and "Source" not in head:
                    problems.append(f"{name}: mixes sources without a source column")
                est, ci, flag = head.index("Estimate"), head.index("95% CI"), head.index("Reliability")
                for row in table["rows"]:
                    match = _INTERVAL.match(row[ci]) if len(row) > ci else None
                    if not match or not row[est].endswith("%"):
                        continue
                    low, high = float(match.group(1)), float(match.group(2))
                    if low < 0 or high > 100:
                        problems.append(f"{name}: interval {row[ci]} of a percentage leaves 0–100")
                    if low == high and not row[flag]:
                        problems.append(f"{name}: zero-width interval {row[ci]} flagged ok")
            for row in table["rows"]:
                for cell in row:
                    for match in _PERCENT_INTERVAL.finditer(cell):
                        low, high = float(match.group(2)), float(match.group(3))
                        if low < 0 or high > 100:
                            problems.append(f"{name}: interval {match.group(0)} leaves 0–100")
    assert not problems, "\n".join(problems)


def test_no_duplicate_rows_in_the_collected_tables(outputs_dir, estimates):
    assert not estimates.duplicated().any(), "all_estimates.csv has duplicate rows"
    synthesis = tables.read_csv(outputs_dir / "synthesis" / "tables" / "synthesis.csv")
    assert not synthesis.duplicated().any(), "synthesis.csv has duplicate rows"
    compared = findings.comparisons(estimates, load_indicators())
    assert not compared.duplicated(subset=["theme", "indicator", "group", "country", "source"]).any()
