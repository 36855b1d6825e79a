"""Chapter 6 · Synthesis: every group × country × source of the report in one comparable table, figures and workbook."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import figures, tables
from analysis.chapters.common import (
    COMPARISON,
    ChapterError,
    ChapterRun,
    country_name,
    percent_view,
)
from analysis.schema import load_dimensions, load_groups, load_indicators


def start_synthesis(chapter: str, all_estimates, output_dir=".", processed_dir=None) -> tuple[ChapterRun, pd.DataFrame]:
    """Load ``outputs/tables/all_estimates.csv`` and the catalogues for the synthesis chapter."""
    from analysis.sources import processed_path

    path = Path(all_estimates)
    if not path.exists():
        raise ChapterError(f"{path}: no collected estimates; run the other chapters first (`python -m analysis run`)")
    estimates = tables.read_csv(path)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    figures.use_house_style()
    run = ChapterRun(chapter=chapter, group_id=None, country=None,
                     sources=sorted(set(estimates["source"].dropna().astype(str))), output_dir=output_dir,
                     processed_dir=Path(processed_dir) if processed_dir else None,
                     indicators=load_indicators(), groups=load_groups(), dimensions=load_dimensions())
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
    """The group-profile estimates of every group × country × source (group and reference cells)."""
    rows = estimates[(estimates["breakdown"] == COMPARISON) & estimates["cell"].isin(["group", "reference"])]
    # the same cells come from chapter 2 and from the cross-country chapter 4: keep each once
    rows = rows.drop_duplicates(subset=[c for c in tables.RESULT_COLUMNS if c in rows.columns])
    order = {g: i for i, g in enumerate(run.groups)}
    rows = rows.assign(_g=rows["group"].map(order)).sort_values(["indicator", "_g", "country", "source", "cell"])
    return rows.drop(columns="_g").reset_index(drop=True)


def synthesis_figures(run: ChapterRun, table: pd.DataFrame) -> list:
    """One figure per percent indicator: every group × country, group vs reference, same axis."""
    saved = []
    shown = percent_view(table[table["indicator"].isin(run.percent_indicators)], run.percent_indicators)
    for indicator, part in shown.groupby("indicator", sort=False):
        part = part.assign(item=[f"{run.groups[g].label if g in run.groups else g}, {country_name(c)} ({s})"
                                 for g, c, s in zip(part["group"], part["country"], part["source"])])
        label = run.indicator_labels.get(indicator, indicator)
        fig, alt = figures.plot_estimates(
            part, item_column="item", series_column="cell", title=f"{label}: every group and country",
            series_order=["group", "reference"], series_labels={"group": "Group", "reference": "Reference group"},
            colours={"group": figures.OKABE_ITO[0], "reference": figures.REFERENCE_COLOUR},
            source_note=run.source_note, synthetic=run.synthetic)
        saved.append(figures.save_figure(fig, run.figures_dir, f"synthesis_{indicator}", alt,
                                         caption=f"{label}: each group against its reference group in every country, 95% CIs."))
    return saved


def write_synthesis_workbook(run: ChapterRun, table: pd.DataFrame) -> Path:
    """Excel workbook, one sheet per indicator, flags kept (suppressed rows blank, caution marked)."""
    from analysis.disclosure import assert_publishable, run_thresholds

    assert_publishable(tables.conform(table), name="synthesis workbook")
    limits = run_thresholds()  # the run's own config, as the gate
    notes = [(f"Suppression: estimates from fewer than {limits.suppress_below} respondents are withheld "
              f"(flag 'suppressed', numbers blank); {limits.suppress_below}–{limits.caution_below - 1} "
              "respondents: flag 'caution'. Further cells are withheld so that no withheld one can be "
              "worked out from the published tables."),
             "Estimates of percent indicators are proportions (0–1); see method for the variance estimator.",
             "Sources: " + "; ".join(run.source_title(s) for s in run.sources)]
    return tables.write_excel(tables.conform(table), run.tables_dir / "synthesis.xlsx",
                              indicator_labels=run.indicator_labels, notes=notes)


