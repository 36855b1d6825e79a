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
    status = entry.get("status", "failed")
    outputs = entry.get("outputs", {})
    html_files = outputs.get("html", [])
    href = html_files[0] if html_files and (outputs_dir / html_files[0]).exists() else None
    label = ", ".join(str(p) for p in (labels.get(entry.get("group")), entry.get("source"),
                                       names.get(entry.get("country"))) if p)
    link_text = f"{entry.get('chapter_title', entry.get('chapter'))}: {label or 'all countries'}"
    detail = ""
    log_href = None
    if status == "ok":
        text = "completed" if entry.get("action") == "ran" else (
            "completed earlier, unchanged (skipped)" if entry.get("action") == "skipped" else "completed earlier")
    elif status == "failed":
        error = entry.get("error") or {}
        text = f"failed ({entry.get('failure') or 'error'})"
        cell = error.get("cell_index")
        detail = (error.get("message") or "") + (f" — in cell {cell}" if cell is not None else "")
        logs = outputs.get("log", [])
        log_href = logs[0] if logs and (outputs_dir / logs[0]).exists() else None
        link_text = f"failed notebook: {label or 'all countries'}"
    elif status == "blocked":
        text = "blocked"
        detail = entry.get("reason", "")
    else:
        text = "not applicable"
        detail = entry.get("reason", "")
    # Issue 11: a completed run whose inputs changed since it was built must not pass for current.
    if status == "ok" and entry.get("stale"):
        status, text, detail = "stale", "stale: built from older inputs (not in all_estimates.csv)", entry["stale"]
    return {"status": status, "status_text": text, "href": href, "link_text": link_text,
            "detail": detail, "log_href": log_href}


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


def write_index(manifest: dict, ctx, path: Path | None = None) -> Path:
    """Render the run status page (``runs.html``) from the manifest and the matrix context; returns its path."""
    outputs_dir = Path(ctx.outputs_dir)
    path = Path(path or outputs_dir / "runs.html")
    report = ctx.report
    runs = manifest.get("runs", {})
    chapters = []
    for cid, chapter in report.chapters.items():
        entries = [e for e in runs.values() if e.get("chapter") == cid]
        if chapter.scope in ("per_group_country", "per_group"):
            row_name = "Group"
            row_keys = [g for g in (chapter.groups or report.groups)]
            row_of = lambda e: e.get("group")
            row_label = lambda k: ctx.group_labels.get(k, k)
        elif chapter.scope == "per_source_country":
            row_name = "Source"
            row_keys = sorted({e.get("source") for e in entries if e.get("source")}) or ["—"]
            row_of = lambda e: e.get("source") or "—"
            row_label = lambda k: k
        else:
            row_name = "Chapter"
            row_keys = ["all"]
            row_of = lambda e: "all"
            row_label = lambda k, title=chapter.title: title
        if chapter.scope in ("per_group_country", "per_source_country", "per_country"):
            col_keys = chapter.countries or list(report.countries)
            columns = [{"key": c, "label": f"{ctx.country_names.get(c, c)} ({c})"} for c in col_keys]
            col_of = lambda e: e.get("country")
        else:
            columns = [{"key": "all", "label": "All countries"}]
            col_of = lambda e: "all"
        grid = {(row_of(e), col_of(e)): e for e in entries}
        rows = []
        for key in row_keys:
            cells = []
            for column in columns:
                entry = grid.get((key, column["key"]))
                cells.append(_cell(entry, outputs_dir, ctx.group_labels, ctx.country_names) if entry else None)
            rows.append({"label": row_label(key), "cells": cells})
        chapters.append({"id": cid, "title": chapter.title, "row_name": row_name, "columns": columns, "rows": rows})

    env = report_environment()  # autoescaped; the pages' Content-Security-Policy as csp
    version = manifest.get("code_version", {})
    code = f"commit {version.get('commit') or 'unknown'}" + (" with uncommitted changes" if version.get("dirty") else "")
    d = report.disclosure
    from analysis.pipeline.languages import page_language, switch_links

    language = page_language(ctx) if getattr(ctx, "language", None) else None
    base = Path(getattr(ctx, "base_outputs_dir", None) or outputs_dir)
    page = env.get_template("index.html.j2").render(
        language=language,
        switch=switch_links(language, path, outputs_dir) if language else [],
        # the exchange files (python -m analysis export) exist once, with the English report
        official_href=Path(os.path.relpath(base / "official_statistics.html", path.parent)).as_posix(),
        title=report.title,
        synthetic=any(s.get("synthetic") for s in manifest.get("sources", {}).values()),
        summary=manifest.get("summary", {}),
        code_version=code,
        updated_at=manifest.get("updated_at", ""),
        chapters=chapters,
        findings=_findings(runs, outputs_dir),
        suppression_rule=(f"estimates from fewer than {d.suppress_below} respondents are suppressed; from fewer "
                          f"than {d.caution_below} they are flagged 'caution'. No individual records are published."),
    )
    from analysis.atomic import write_atomic

    return write_atomic(path, page)
