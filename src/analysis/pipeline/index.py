"""``outputs/runs.html``: the run status grid (the front page ``index.html`` links it; see
:mod:`analysis.pipeline.front_page`).

One section per chapter with a grid of rows (groups, sources, or one row) × columns (countries,
or "all countries"); each cell links the run's reviewer HTML and shows its status: completed
(ran now or skipped as unchanged), failed (with the error and the failing cell, linking the
failed notebook and its log), or not applicable (with the reason). The page shows the manifest
summary and links ``manifest.json`` and ``tables/all_estimates.csv``.
"""

from __future__ import annotations

import os
from pathlib import Path

from analysis.pipeline.render import report_environment


def _cell(entry: dict, outputs_dir: Path, labels: dict, names: dict) -> dict:
    from analysis.text import text

    status = entry.get("status", "failed")
    outputs = entry.get("outputs", {})
    html_files = outputs.get("html", [])
    href = html_files[0] if html_files and (outputs_dir / html_files[0]).exists() else None
    label = ", ".join(str(p) for p in (labels.get(entry.get("group")), entry.get("source"),
                                       names.get(entry.get("country"))) if p) or text("common.all_countries")
    link_text = text("runs.link", chapter=entry.get("chapter_title", entry.get("chapter")), label=label)
    detail = ""
    log_href = None
    if status == "ok":
        shown = text("runs.status.completed") if entry.get("action") == "ran" else (
            text("runs.status.skipped") if entry.get("action") == "skipped" else text("runs.status.earlier"))
    elif status == "failed":
        error = entry.get("error") or {}
        shown = text("runs.status.failed", failure=entry.get("failure") or text("runs.status.failure_default"))
        cell = error.get("cell_index")
        detail = (error.get("message") or "") + (text("runs.in_cell", cell=cell) if cell is not None else "")
        logs = outputs.get("log", [])
        log_href = logs[0] if logs and (outputs_dir / logs[0]).exists() else None
        link_text = text("runs.failed_notebook", label=label)
    elif status == "blocked":
        shown = text("runs.status.blocked")
        detail = entry.get("reason", "")
    else:
        shown = text("runs.status.not_applicable")
        detail = entry.get("reason", "")
    # Issue 11: a completed run whose inputs changed since it was built must not pass for current.
    if status == "ok" and entry.get("stale"):
        status, shown, detail = "stale", text("runs.status.stale"), entry["stale"]
    return {"status": status, "status_text": shown, "href": href, "link_text": link_text,
            "log_text": text("runs.log_of", page=link_text), "detail": detail, "log_href": log_href}


def _findings(runs: dict, outputs_dir: Path) -> list[dict]:
    """Findings that chapters publish for the front page: a run's ``findings.json`` beside its
    HTML (a list of ``{"text": ...}``, e.g. pooled evidence with its quality), linked to the run."""
    import json

    out = []
    for run_id in sorted(runs):
        entry = runs[run_id]
        html_files = entry.get("outputs", {}).get("html", [])
        if entry.get("status") != "ok" or not html_files:
            continue
        source = (outputs_dir / html_files[0]).parent / "findings.json"
        try:
            items = json.loads(source.read_text(encoding="utf-8")) if source.exists() else []
        except (OSError, ValueError):
            continue
        out += [{"text": str(item["text"]), "href": html_files[0]}
                for item in items if isinstance(item, dict) and item.get("text")]
    return out


def _words() -> dict:
    """The page's own words in the report language (``runs.*``, ``front.*`` of the text catalogue)."""
    from analysis.text import text

    keys = ["front_link", "synthetic", "summary_heading", "provenance", "all_estimates", "official",
            "official_link", "findings_heading", "not_in_matrix"]
    words = {k: text(f"runs.{k}") for k in keys}
    words["summary"] = {k: text(f"runs.summary.{k}") for k in ("runs", "ok", "failed", "blocked", "stale",
                                                              "not_applicable", "ran", "skipped",
                                                              "code_version", "updated")}
    words["banner"] = text("figures.synthetic_banner")
    words["read_chapter"] = text("front.read_chapter")
    words["disclosure"] = text("reviewer.disclosure", rule="{rule}")
    words["generated"] = text("front.generated")
    return words


def write_index(manifest: dict, ctx, path: Path | None = None) -> Path:
    """Render the run status page (``runs.html``) from the manifest and the matrix context; returns its path."""
    from analysis.text import lower_first, text

    outputs_dir = Path(ctx.outputs_dir)
    path = Path(path or outputs_dir / "runs.html")
    report = ctx.report
    runs = manifest.get("runs", {})
    chapters = []
    for cid, chapter in report.chapters.items():
        entries = [e for e in runs.values() if e.get("chapter") == cid]
        if chapter.scope in ("per_group_country", "per_group"):
            row_name = text("runs.rows.group")
            row_keys = [g for g in (chapter.groups or report.groups)]
            row_of = lambda e: e.get("group")
            row_label = lambda k: ctx.group_labels.get(k, k)
        elif chapter.scope == "per_source_country":
            row_name = text("runs.rows.source")
            row_keys = sorted({e.get("source") for e in entries if e.get("source")}) or ["—"]
            row_of = lambda e: e.get("source") or "—"
            row_label = lambda k: k
        else:
            row_name = text("runs.rows.chapter")
            row_keys = ["all"]
            row_of = lambda e: "all"
            row_label = lambda k, title=chapter.title: title
        if chapter.scope in ("per_group_country", "per_source_country", "per_country"):
            col_keys = chapter.countries or list(report.countries)
            columns = [{"key": c, "label": f"{ctx.country_names.get(c, c)} ({c})"} for c in col_keys]
            col_of = lambda e: e.get("country")
        else:
            columns = [{"key": "all", "label": text("runs.all_countries_column")}]
            col_of = lambda e: "all"
        grid = {(row_of(e), col_of(e)): e for e in entries}
        rows = []
        for key in row_keys:
            cells = []
            for column in columns:
                entry = grid.get((key, column["key"]))
                cells.append(_cell(entry, outputs_dir, ctx.group_labels, ctx.country_names) if entry else None)
            rows.append({"label": row_label(key), "cells": cells})
        caption = text("runs.caption.per_country" if len(columns) > 1 else "runs.caption.single",
                       title=chapter.title, row_lc=lower_first(row_name))
        chapters.append({"id": cid, "title": chapter.title, "row_name": row_name, "columns": columns, "rows": rows,
                         "caption": caption})

    env = report_environment()  # autoescaped; the pages' Content-Security-Policy as csp
    version = manifest.get("code_version", {})
    code = text("runs.code_dirty" if version.get("dirty") else "runs.code_version",
                commit=version.get("commit") or text("runs.code_unknown"))
    d = report.disclosure
    from analysis.pipeline.languages import page_language, switch_links

    language = page_language(ctx) if getattr(ctx, "language", None) else None
    page = env.get_template("index.html.j2").render(
        language=language,
        switch=switch_links(language, path, outputs_dir) if language else [],
        # the page of python -m analysis export in this page's language (outputs/<lang>/, as the
        # front page links it; the exchange files themselves exist once, with the English report)
        official_href=Path(os.path.relpath(outputs_dir / "official_statistics.html", path.parent)).as_posix(),
        title=report.title,
        synthetic=any(s.get("synthetic") for s in manifest.get("sources", {}).values()),
        summary=manifest.get("summary", {}),
        code_version=code,
        updated_at=manifest.get("updated_at", ""),
        chapters=chapters,
        findings=_findings(runs, outputs_dir),
        suppression_rule=text("runs.suppression_rule", suppress_below=d.suppress_below,
                              caution_below=d.caution_below),
        words=_words(),
    )
    from analysis.atomic import write_atomic

    return write_atomic(path, page)
