"""The front page and the chapter pages of the demo report in a real browser (issue 13, "Done when").

- findings exist for every theme whose data allow one, and each finding's numbers equal the rows it
  cites in ``all_estimates.csv``; no finding cites a caution or suppressed row;
- no table has duplicate rows; tables of runs with several sources have a source column;
- no interval of a proportion leaves [0, 100]; no zero-width interval is flagged ok;
- every chapter page (every run, not a sample): no duplicate table rows, the source shown wherever a
  page mixes sources (table column, chart title or series), no interval of a percentage outside
  0–100, no zero-width interval flagged ok, axe-core clean;
- axe-core finds no serious or critical violation on the front page and the run status page;
- screenshots of the front page and one page per chapter go to the test build's own
  ``outputs/screenshots/`` (CI artefacts);
- the Household Pulse report (real data, ../shared) has the same front page for the USA, with its
  Washington Group note (skips only outside CI when ../shared is absent).
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import pytest

from analysis import config, findings, tables
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
    _check_findings_equal_their_rows(page, estimates)


def _check_findings_equal_their_rows(page, estimates):
    """Every finding of the open front page equals the rows of ``all_estimates.csv`` it cites."""
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
    page.goto(f"{server}/index.html")
    _check_every_theme(page, estimates)


def _check_every_theme(page, estimates):
    """A finding for every theme whose comparisons allow one, else the reason, on the open page."""
    indicators = load_indicators()
    percent = [k for k, v in indicators.items() if v.unit == "percent"]
    compared = findings.comparisons(estimates, indicators)
    eligible_themes = set(compared.loc[findings.eligible(compared, percent), "theme"])
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


def _chapter_pages(manifest) -> list[dict]:
    """Every rendered chapter page of the report (every run that finished), run id order."""
    out = []
    for run_id in sorted(manifest["runs"]):
        entry = manifest["runs"][run_id]
        for html in (entry.get("outputs") or {}).get("html") or []:
            if entry.get("status") == "ok":
                out.append(dict(entry, run_id=run_id, page=html))
    return out


def _source_titles() -> dict[str, str]:
    """Short title of every source card (what a source column or a chart title names)."""
    titles = {}
    for path in sorted((config.PARAMS_DIR / "sources").glob("*.yml")):
        card = config.read_yaml_mapping(path, AssertionError, "source card")
        titles[str(card.get("id") or path.stem)] = str(card.get("title") or path.stem)
    return titles


_INTERVAL = re.compile(r"^(-?[\d.]+)–(-?[\d.]+)$")
_PERCENT_INTERVAL = re.compile(r"(-?[\d.]+)% \((-?[\d.]+)–(-?[\d.]+)\)")
_TABLES_JS = ("els => els.map(t => ({caption: (t.caption || {}).textContent || '',"
              " head: [...t.querySelectorAll('thead th')].map(c => c.textContent.trim()),"
              " rows: [...t.querySelectorAll('tbody tr')].map(r => [...r.children].map(c => c.textContent.trim()))}))")
_FIGURES_JS = ("els => els.map(f => ({alt: (f.querySelector('img') || {}).alt || '',"
               " caption: (f.querySelector('figcaption') || {}).textContent || ''}))")


def _table_problems(name: str, table: dict, several_sources: bool) -> list[str]:
    problems = []
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
                if low == high and "caution" not in " ".join(row):
                    problems.append(f"{name}: zero-width interval {match.group(0)} flagged ok")
    return problems


def test_every_chapter_page_is_honest_and_accessible(audit_page, server, manifest, axe_source, screenshots_dir):
    """Every chapter page of the demo report: no duplicate table rows; a source column in every
    table, and the source named by every chart, where the page mixes sources; no interval of a
    percentage outside 0–100; no zero-width interval flagged ok; axe-core finds no serious or
    critical violation. A screenshot of the first page of each chapter."""
    page = audit_page  # bypasses the pages' CSP so that axe-core can be injected
    pages = _chapter_pages(manifest)
    assert {"data_profile", "group_profile", "intersections", "geography", "official_statistics",
            "synthesis"} <= {p["chapter"] for p in pages}
    titles = _source_titles()
    problems, shot = [], set()
    for entry in pages:
        url = f"{server}/{entry['page']}"
        page.goto(url, wait_until="load")
        if entry["chapter"] not in shot:
            page.screenshot(path=str(screenshots_dir / f"chapter_{entry['chapter']}.png"), full_page=False)
            shot.add(entry["chapter"])
        sources = [titles.get(s, s) for s in entry.get("sources") or []]
        several_sources = len(sources) > 1
        where = f"{entry['chapter']} ({urlparse(url).path})"
        for table in page.eval_on_selector_all("table", _TABLES_JS):
            problems += _table_problems(f"{where}: table '{table['caption'][:60]}'", table, several_sources)
        # the evidence chapter's charts are of one source, the partner-study extraction, and name
        # every study they plot (forest and funnel plots, the evidence map)
        if several_sources and entry["chapter"] != "evidence":
            for figure in page.eval_on_selector_all("figure", _FIGURES_JS):
                words = figure["alt"] + " " + figure["caption"]
                if not any(title in words for title in sources):
                    problems.append(f"{where}: chart '{figure['caption'][:60]}' mixes sources without naming one")
        page.add_script_tag(content=axe_source)
        result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        problems += [f"{where}: axe {v['id']} ({v['impact']}): {v['help']} — {v['nodes'][0]['target']}"
                     for v in result["violations"] if v.get("impact") in BLOCKING]
    (screenshots_dir.parent / "chapter_page_problems.txt").write_text("\n".join(problems))
    assert not problems, f"{len(problems)} problems on {len(pages)} pages:\n" + "\n".join(problems[:60])


def test_no_duplicate_rows_in_the_collected_tables(outputs_dir, estimates):
    assert not estimates.duplicated().any(), "all_estimates.csv has duplicate rows"
    synthesis = tables.read_csv(outputs_dir / "synthesis" / "tables" / "synthesis.csv")
    assert not synthesis.duplicated().any(), "synthesis.csv has duplicate rows"
    compared = findings.comparisons(estimates, load_indicators())
    assert not compared.duplicated(subset=["theme", "indicator", "group", "country", "source"]).any()


# --------------------------------------------------------------------------- the Household Pulse report

@pytest.fixture(scope="module")
def household_pulse_outputs(shared_dir, tmp_path_factory):
    """The Household Pulse report built from ../shared (``shared_dir`` skips only outside CI when
    ../shared is absent). ``TEST_HOUSEHOLD_PULSE_BUILD=<folder>`` reuses a build."""
    import os
    from pathlib import Path

    from report_build import build_household_pulse_report

    chosen = os.environ.get("TEST_HOUSEHOLD_PULSE_BUILD")
    base = Path(chosen) if chosen else tmp_path_factory.getbasetemp() / "household_pulse_build"
    base.mkdir(parents=True, exist_ok=True)
    return build_household_pulse_report(base, shared_dir)


def test_household_pulse_report_has_the_same_front_page_for_the_usa(browser, household_pulse_outputs, axe_source):
    """Done when: the Household Pulse report shows the same front page for the USA with its WG-SS
    note (it was built by hand only)."""
    import functools
    import http.server
    import threading

    from report_build import HOUSEHOLD_PULSE_REPORT

    outputs = household_pulse_outputs
    spec = config.read_yaml_mapping(HOUSEHOLD_PULSE_REPORT, AssertionError, "report file")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(outputs))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    # the front page's Content-Security-Policy forbids every script, axe-core's included: this
    # context alone lets the test inject it (as the audit_page fixture does)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
        (outputs / "screenshots").mkdir(exist_ok=True)
        page.screenshot(path=str(outputs / "screenshots" / "front_page_household_pulse.png"), full_page=True)
        body = page.inner_text("body")
        assert spec["title"] in page.title() or spec["title"] in body
        assert "United States" in body
        # how disability is identified: all six Washington Group questions of the week-50 file
        assert "Washington Group Short Set, 6 of 6 domains" in body, "no WG-SS note on the front page"
        assert "How the findings are chosen" in page.content()
        estimates = tables.read_csv(outputs / "tables" / "all_estimates.csv")
        assert set(estimates["country"].dropna()) == {"USA"}
        _check_findings_equal_their_rows(page, estimates)
        _check_every_theme(page, estimates)
        page.add_script_tag(content=axe_source)
        result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        bad = [f"{v['id']} ({v['impact']})" for v in result["violations"] if v.get("impact") in BLOCKING]
        assert not bad, bad
        # the run status grid lives on its own page, linked from the front page
        assert (outputs / "runs.html").exists() and page.locator("a[href='runs.html']").count() > 0
    finally:
        context.close()
        httpd.shutdown()
        httpd.server_close()
