"""Chapter 6 · Synthesis: every group × country × source of the report in one comparable table, figures and workbook."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import config, figures, tables
from analysis.chapters.common import (
    COMPARISON,
    ChapterError,
    ChapterRun,
    country_name,
    percent_view,
    resolve_output_dir,
)
from analysis.schema import load_dimensions, load_groups, load_indicators
from analysis.text import text
from analysis.voices.themes import theme_share_indicators


def start_synthesis(chapter: str, all_estimates=None, output_dir=None,
                    processed_dir=None) -> tuple[ChapterRun, pd.DataFrame]:
    """Load ``outputs/tables/all_estimates.csv`` and the catalogues for the synthesis chapter.

    ``all_estimates`` None: the project's ``outputs/tables/all_estimates.csv``; ``output_dir``
    None: ``outputs/<chapter>`` (:func:`analysis.chapters.common.resolve_output_dir`).
    """
    from analysis.sources import processed_path

    path = Path(all_estimates) if all_estimates else config.OUTPUTS_DIR / "tables" / "all_estimates.csv"
    if not path.exists():
        raise ChapterError(f"{path}: no collected estimates; run the other chapters first (`python -m analysis run`)")
    estimates = tables.read_csv(path)
    output_dir = resolve_output_dir(chapter, output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    figures.use_house_style()
    run = ChapterRun(chapter=chapter, group_id=None, country=None,
                     sources=sorted(set(estimates["source"].dropna().astype(str))), output_dir=output_dir,
                     processed_dir=Path(processed_dir) if processed_dir else None,
                     indicators={**load_indicators(), **theme_share_indicators()}, groups=load_groups(),
                     dimensions=load_dimensions())
    # Synthetic flag and titles from the processed tables' metadata, when they are at hand.
    import json

    import pyarrow.parquet as pq

    for source in run.sources:
        path = processed_path(source, processed_dir)
        meta = {}
        if path.exists():
            meta = json.loads((pq.read_schema(path).metadata or {}).get(b"analysis", b"{}")).get("source", {})
        holder = pd.DataFrame()
        holder.attrs["source"] = meta or {"id": source}
        run.frames[source] = holder
    return run, estimates


def synthesis_table(run: ChapterRun, estimates: pd.DataFrame) -> pd.DataFrame:
    """The group-profile rows of every group × country × source (result schema): the group and
    reference estimates and the difference between them, each once (a row saved by two chapters
    is kept once), in catalogue order of indicators and groups."""
    is_estimate = (estimates["breakdown"] == COMPARISON) & estimates["cell"].isin(["group", "reference"])
    is_gap = (estimates["group"].notna() & (estimates["method"].astype(str) == "difference")
              & estimates["cell"].astype(str).str.contains(" vs "))
    rows = estimates[is_estimate | is_gap].drop_duplicates().copy()
    order = {g: i for i, g in enumerate(run.groups)}
    indicator_order = {k: i for i, k in enumerate(run.indicators)}
    rows = rows.assign(_i=rows["indicator"].map(indicator_order), _g=rows["group"].map(order),
                       _c=rows["cell"].map({"group": 0, "reference": 1}).fillna(2))
    rows = rows.sort_values(["_i", "_g", "country", "source", "_c"], kind="stable")
    return rows.drop(columns=["_i", "_g", "_c"]).reset_index(drop=True)


def synthesis_comparisons(run: ChapterRun, table: pd.DataFrame) -> pd.DataFrame:
    """One row per (theme, indicator, group, country, source): estimate, interval, respondents
    and flag of the group, of its reference, and the gap (:func:`analysis.findings.comparisons`)."""
    from analysis import findings

    return findings.comparisons(table, run.indicators)


def _signed_interval(low, high) -> str:
    from analysis import findings

    if pd.isna(low) or pd.isna(high):
        return ""
    return text("synthesis.columns.gap_interval", low=findings.signed_points(low), high=findings.signed_points(high))


def synthesis_display(run: ChapterRun, wide: pd.DataFrame) -> pd.DataFrame:
    """The comparisons as a reader reads them: labels, "39% (35–43)", gaps in points, flags in words
    (percent indicators; other indicators keep their unit, two significant decimals)."""
    from analysis import findings

    themes = _theme_labels()
    rows = []
    for _, row in wide.iterrows():
        percent = row["indicator"] in run.percent_indicators
        group = run.groups.get(row["group"])

        def value(prefix: str, row=row, percent=percent) -> str:
            est, low, high = (row[f"{prefix}{c}"] for c in ("estimate", "ci_low", "ci_high"))
            if percent:
                return findings.format_percent(est, low, high)
            if pd.isna(est):
                return ""
            return text("findings.with_interval", value=f"{est:.2f}", low=f"{low:.2f}", high=f"{high:.2f}") \
                if pd.notna(low) and pd.notna(high) else f"{est:.2f}"

        gap = ""
        if pd.notna(row["gap"]):
            gap = (text("tables.points", value=findings.signed_points(row["gap"])) if percent else f"{row['gap']:+.2f}")
            interval = _signed_interval(row["gap_ci_low"], row["gap_ci_high"]) if percent else ""
            gap = f"{gap} {interval}".strip()
        rows.append({
            "theme": themes.get(row["theme"], row["theme"]),
            "indicator": run.indicator_labels.get(row["indicator"], row["indicator"]),
            "group": group.label if group else str(row["group"]),
            "country": country_name(row["country"]),
            "source": run.source_title(row["source"]) if row["source"] in run.frames else str(row["source"]),
            "estimate": value(""),
            "n": tables.format_count(row["n_unweighted"]),
            "flag": tables.flag_text(str(row["flag"]), row["method"]) or text("findings.quality.ok"),
            "reference": run.reference_label_of(row["group"]),
            "reference_estimate": value("reference_"),
            "gap": gap,
            "gap_flag": tables.flag_text(str(row["gap_flag"])) or text("findings.quality.ok")
            if pd.notna(row["gap_flag"]) else "",
        })
    columns = ["theme", "indicator", "group", "country", "source", "estimate", "n", "flag", "reference",
               "reference_estimate", "gap", "gap_flag"]
    return pd.DataFrame(rows, columns=columns).rename(columns={c: text(f"synthesis.columns.{c}") for c in columns})


def show_synthesis(run: ChapterRun, wide: pd.DataFrame):
    """The comparisons table as accessible HTML (one row per theme × indicator × group × country × source)."""
    from IPython.display import HTML

    return HTML(tables.html_table(synthesis_display(run, wide), text("synthesis.table.caption"), row_headers=2))


def synthesis_summary(run: ChapterRun, wide: pd.DataFrame) -> str:
    """Narrative of the synthesis page from the data (templates ``synthesis.summary.*``): what the
    figures and table hold, the largest gaps chosen by the front page's rules (flagged ok, 95%
    interval of the gap excluding zero; :func:`analysis.findings.key_findings`), one sentence each
    with interval, source and respondents, and how many comparisons are suppressed or caution."""
    from analysis import findings
    from analysis.disclosure import resolve_thresholds

    if wide.empty:
        return run.text("synthesis.summary.none")
    limits = resolve_thresholds(None)
    parts = [run.text("synthesis.summary.shows", rows=len(wide), groups=wide["group"].nunique(),
                      countries=wide["country"].nunique(), sources=wide["source"].nunique(),
                      indicators=wide["indicator"].nunique())]
    top = findings.key_findings(wide, run.percent_indicators, per_theme=1)
    if top.empty:
        parts.append(run.text("synthesis.summary.no_clear"))
    else:
        top = top.assign(_size=top["gap"].abs()).sort_values("_size", ascending=False).head(SUMMARY_FINDINGS)
        sentences = [findings.finding_text(
            r, group_label=run.groups[r["group"]].label if r["group"] in run.groups else str(r["group"]),
            reference_label=run.reference_label_of(r["group"]) if r["group"] in run.groups else "",
            indicator_label=run.indicator_labels.get(r["indicator"], r["indicator"]),
            country_label=country_name(str(r["country"])),
            source_title=run.source_title(r["source"]) if r["source"] in run.frames else str(r["source"]))
            for _, r in top.iterrows()]
        parts.append(run.text("synthesis.summary.largest", count=len(sentences),
                              findings=text("common.source_separator").join(sentences)))
    gap_flags = wide["gap_flag"].astype("string").fillna("suppressed")
    parts.append(run.text("synthesis.summary.suppressed", suppressed=int((gap_flags == "suppressed").sum()),
                          caution=int((gap_flags == "caution").sum()), total=len(wide),
                          suppress_below=limits.suppress_below, caution_last=limits.caution_below - 1))
    return " ".join(parts)


#: How many of the largest gaps the synthesis narrative names.
SUMMARY_FINDINGS = 3


def show_workbook_link(run: ChapterRun):
    """What the workbook holds, and a link to it (``tables/synthesis.xlsx``), as HTML: the words
    come from the text catalogue and are escaped; the link stands in its own paragraph."""
    import html

    from IPython.display import HTML

    note = html.escape(text("synthesis.workbook_note"))
    label = html.escape(text("synthesis.workbook_link"))
    return HTML(f'<p>{note}</p><p><a href="tables/synthesis.xlsx">{label}</a></p>')


def _theme_labels() -> dict[str, str]:
    from analysis.schema import load_themes

    return {k: v for k, v in load_themes().items()}


def synthesis_figures(run: ChapterRun, table: pd.DataFrame) -> list:
    """One figure per percent indicator: every group × country, group vs reference, same axis."""
    saved = []
    rows = table[table["indicator"].isin(run.percent_indicators) & table["cell"].isin(["group", "reference"])]
    shown = percent_view(rows, run.percent_indicators)
    for indicator, part in shown.groupby("indicator", sort=False):
        part = part.assign(item=[text("synthesis.figure.item", group=run.groups[g].label if g in run.groups else g,
                                      country=country_name(c), source=run.source_title(s))
                                 for g, c, s in zip(part["group"], part["country"], part["source"])])
        label = run.indicator_labels.get(indicator, indicator)
        fig, alt = figures.plot_estimates(
            part, item_column="item", series_column="cell", title=text("synthesis.figure.title", indicator=label),
            series_order=["group", "reference"],
            series_labels={"group": text("synthesis.figure.group"), "reference": text("synthesis.figure.reference")},
            colours={"group": figures.OKABE_ITO[0], "reference": figures.REFERENCE_COLOUR},
            source_note=run.source_note, synthetic=run.synthetic)
        saved.append(figures.save_figure(fig, run.figures_dir, f"synthesis_{indicator}", alt,
                                         caption=text("synthesis.figure.caption", indicator=label)))
    return saved


def write_synthesis_workbook(run: ChapterRun, table: pd.DataFrame) -> Path:
    """Excel workbook for report writers: a README sheet, then one sheet per theme.

    Each theme sheet has one row per (indicator, group, country, source) — the columns of
    :func:`synthesis_display` (what the page shows, ready to paste) — followed by the numbers
    (percent indicators in percent, 0–100; gaps in points) and flags. Suppressed numbers are
    blank; caution rows say so. The README sheet lists the sources with their collection
    periods, the indicators' definitions, the suppression rule and the rules of the key findings.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font

    from analysis.disclosure import assert_publishable, run_thresholds

    assert_publishable(tables.conform(table), name="synthesis workbook")
    wide = synthesis_comparisons(run, table)
    shown = synthesis_display(run, wide)
    limits = run_thresholds()  # the run's own config, as the gate
    path = run.tables_dir / "synthesis.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = Workbook()
    readme = workbook.active
    readme.title = text("synthesis.workbook.readme_sheet")
    bold = Font(bold=True)
    lines = [
        [text("synthesis.workbook.readme_title")],
        [text("synthesis.workbook.suppression", suppress_below=limits.suppress_below,
              caution_last=limits.caution_below - 1)],
        [text("synthesis.workbook.scale")],
        [text("synthesis.workbook.rules")],
        [],
        [text("synthesis.workbook.sources_heading")],
    ]
    for source in run.sources:
        lines.append([run.source_title(source), run.source_period(source) if source in run.frames else ""])
    lines += [[], [text("synthesis.workbook.definitions_heading")]]
    for indicator in dict.fromkeys(wide["indicator"]):
        spec = run.indicators.get(indicator)
        if spec:
            lines.append([spec.label, " ".join(spec.definition.split())])
    for line in lines:
        readme.append(line)
    for row in (1, 6):
        readme.cell(row=row, column=1).font = bold
    numbers = ["estimate", "ci_low", "ci_high", "n_unweighted", "reference_estimate", "reference_ci_low",
               "reference_ci_high", "reference_n_unweighted", "gap", "gap_ci_low", "gap_ci_high"]
    headings = list(shown.columns) + [text(f"synthesis.workbook.columns.{c}") for c in numbers]
    used = {readme.title.lower()}
    themes = _theme_labels()
    for theme, part in wide.groupby("theme", sort=False):
        sheet = workbook.create_sheet(tables.sheet_name(themes.get(theme, str(theme)), used))
        sheet.append(headings)
        for cell in sheet[1]:
            cell.font = bold
        for index, row in part.iterrows():
            scale = 100.0 if row["indicator"] in run.percent_indicators else 1.0
            values = []
            for column in numbers:
                value = row[column]
                if pd.isna(value):
                    values.append(None)
                elif column.endswith("n_unweighted"):
                    values.append(int(value))
                else:
                    values.append(round(float(value) * scale, 2))
            sheet.append(list(shown.loc[index]) + values)
        sheet.freeze_panes = "F2"
    tmp = path.with_suffix(".xlsx.tmp")
    workbook.save(tmp)
    tmp.replace(path)
    return path
