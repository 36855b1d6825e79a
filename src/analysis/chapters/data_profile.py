"""Chapter 1 · Data profile: coverage, row accounting, missingness and sample composition of each source × country."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import config, figures, tables
from analysis.chapters.common import (
    PROFILE_DIMENSIONS,
    WEIGHTING_COLUMNS,
    ChapterRun,
    category_labels,
    population_margins,
    protect,
)


def profile_tables(run: ChapterRun) -> dict[str, pd.DataFrame]:
    """Coverage, availability of dimensions and indicators, and missingness of each source.

    Returns frames (descriptive, not estimates; counts of respondents per source and country only,
    never per small cell): ``coverage`` (respondents, areas, sample type, sum of weights),
    ``availability`` (every catalogue dimension and indicator: present or not, answered by how many),
    ``missingness`` (share missing per column, as a result-schema-like table for the figure).
    """
    from analysis.disclosure import slice_flag, slice_note

    coverage, availability, missing = [], [], []
    for source, frame in run.frames.items():
        design = frame.attrs.get("design") or {}
        weight = design.get("weight")
        flag = slice_flag(frame)
        small = flag == "suppressed"  # a slice below the threshold: no numbers at all
        coverage.append({
            "Source": run.source_title(source),
            "Country": run.country,
            "Respondents": "withheld" if small else f"{len(frame):,}",
            "Areas (admin1)": ("withheld" if small else
                               int(frame["admin1_code"].nunique()) if "admin1_code" in frame else 0),
            "Sample type": str(design.get("sample_type") or ""),
            "Weighted total": ("withheld" if small else
                               f"{frame[weight].sum():,.0f}" if weight and weight in frame else ""),
            "Synthetic": "yes" if (frame.attrs.get("source") or {}).get("synthetic") else "no",
            "Note": slice_note(flag),
        })
        for kind, ids, labels in (
            ("dimension", PROFILE_DIMENSIONS, {d: run.dimensions[d].label for d in run.dimensions}),
            ("indicator", list(run.indicators), run.indicator_labels),
        ):
            for column in ids:
                answered = int(frame[column].notna().sum()) if column in frame else 0
                availability.append({"Source": source, "Kind": kind, "Column": labels.get(column, column),
                                     "Available": "yes" if answered else "no",
                                     "Answered": "withheld" if small else f"{answered:,}",
                                     "Missing": ("withheld" if small else
                                                 f"{100 * (1 - answered / len(frame)):.1f}%" if len(frame) else "")})
                if answered and not small:
                    missing.append({"source": source, "country": run.country, "indicator": column,
                                    "breakdown": "missing", "cell": "all",
                                    "estimate": 100.0 * (1 - answered / len(frame)),
                                    "n_unweighted": len(frame), "flag": "ok",
                                    "method": "share of rows missing (unweighted)", "label": labels.get(column, column)})
    return {"coverage": pd.DataFrame(coverage), "availability": pd.DataFrame(availability),
            "missingness": pd.DataFrame(missing)}


def row_accounting(run: ChapterRun) -> pd.DataFrame:
    """Rows in, rows out and every exclusion reason of each source (``<source>.log.json``), and
    the free-coded categories pooled into "other" in this run's data (how many, never which)."""
    from analysis.disclosure import resolve_thresholds

    folder = run.processed_dir or config.PROCESSED_DIR
    rows = []
    for source in run.sources:
        rows += _log_accounting(source, Path(folder) / f"{source}.log.json")
        pooled = (run.frames[source].attrs.get("pooled_categories") or {}) if source in run.frames else {}
        limit = resolve_thresholds().suppress_below
        for column, counts in pooled.items():
            shown = f"{counts['rows']:,}" if counts["rows"] >= limit else f"fewer than {limit}"
            rows.append({"Source": source, "Step": "pooled", "Rows": shown,
                         "Detail": f"{counts['categories']} free-coded categories of {column} outside "
                                   "the catalogue pooled into 'other' (disclosure control)"})
    return pd.DataFrame(rows, columns=["Source", "Step", "Rows", "Detail"])


def _log_accounting(source: str, path: Path) -> list[dict]:
    """The ingest's row accounting of one source (rows read, kept, excluded with reasons)."""
    import json

    if not path.exists():
        return [{"Source": source, "Step": "row accounting", "Rows": "",
                 "Detail": f"{path.name} not found: run `python -m analysis ingest`"}]
    log = json.loads(path.read_text())
    rows = []
    for key, label in (("rows_read", "rows read"), ("rows_kept", "rows kept")):
        if key in log:
            rows.append({"Source": source, "Step": label, "Rows": f"{int(log[key]):,}", "Detail": ""})
    excluded = log.get("rows_excluded") or {}
    if isinstance(excluded, dict):
        for reason, count in excluded.items():
            rows.append({"Source": source, "Step": "excluded", "Rows": f"{int(count):,}", "Detail": str(reason)})
    if not excluded:
        rows.append({"Source": source, "Step": "excluded", "Rows": "0", "Detail": "no row excluded"})
    return rows


def composition(run: ChapterRun, source: str) -> pd.DataFrame:
    """Weighted share of respondents in each category of each profile dimension, with CIs.

    Design-based proportions (:func:`analysis.survey.estimate_by`, ``statistic="proportion"``):
    each category's 0/1 membership is an indicator whose weighted mean is the share; respondents
    missing the dimension are excluded from its denominator. Suppressed per disclosure rules.
    """
    from analysis.disclosure_model import positive_weight_rows
    from analysis.survey import design_for, estimate_by

    frame = run.frames[source]
    dimensions = [d for d in PROFILE_DIMENSIONS
                  if d != "admin1_code" and d in frame and frame[d].notna().any()]
    parts = []
    if dimensions:
        work = frame
        estimates = estimate_by(work, design_for(work), dimensions, by=[], margins=True,
                                statistic="proportion", source=source, country=run.country)
        names = estimates["indicator"].astype(str).str.split("=", n=1)
        estimates = estimates.assign(breakdown=names.str[0], cell=names.str[1], indicator="composition")
        # Disclosure counts the people IN the category (the numerator), not the denominator,
        # and only respondents with a positive weight (a zero-weight row is nobody's estimate).
        counted = positive_weight_rows(work, (work.attrs.get("design") or {}).get("weight"))
        estimates["n_unweighted"] = [int(((work[d] == c).fillna(False).to_numpy(bool) & counted).sum())
                                     for d, c in zip(estimates["breakdown"], estimates["cell"])]
        parts.append(estimates)
    # The shares of one dimension sum to 1 and their counts to the source's respondents: the
    # plan of the source × country protects the complements of a withheld share.
    return protect(run, tables.stack(parts), "composition")


def composition_vs_margins(run: ChapterRun) -> pd.DataFrame:
    """Sample composition against official population margins (sex, age group, area).

    :func:`analysis.weighting.weighting_diagnostics` with the source's own design before and after:
    per category the unweighted and weighted share of the sample and the population share, with
    small sample categories withheld. The population is restricted to the categories the sample
    covers (a youth survey is compared with the young population). Empty without margins.
    """
    from analysis import weighting
    from analysis.survey import design_for

    margins = population_margins(run.processed_dir, run.country)
    rows = []
    for source, frame in run.frames.items():
        by = [c for c in WEIGHTING_COLUMNS if margins is not None and c in margins and c in frame
              and frame[c].notna().any()]
        if not by:
            continue
        one_way = {}
        for column in by:
            present = set(frame[column].dropna().astype(str))
            counts = margins.groupby(margins[column].astype(str))["population"].sum()
            one_way[column] = counts[counts.index.isin(present)]
        design = design_for(frame)
        table = weighting.weighting_diagnostics(frame, one_way, design, design)
        labels = category_labels(run)
        if "admin1" in frame:  # area codes are shown by their Natural Earth names
            labels.update(dict(zip(frame["admin1_code"].astype(str), frame["admin1"].astype(str))))
        dimension_labels = {d: v.label for d, v in run.dimensions.items()} | {"admin1_code": "Area (admin1)"}
        for _, row in table.iterrows():
            withheld = row.get("flag") == "suppressed"
            rows.append({
                "Source": run.source_title(source),
                "Dimension": dimension_labels.get(str(row["margin"]), str(row["margin"])),
                "Category": labels.get(str(row["category"]), str(row["category"])),
                "Respondents": "withheld" if withheld else f"{int(row['n_unweighted']):,}",
                "Sample (unweighted)": "" if withheld or pd.isna(row["pct_unweighted"]) else f"{row['pct_unweighted']:.1f}%",
                "Sample (weighted)": "" if withheld or pd.isna(row["pct_weighted_before"]) else f"{row['pct_weighted_before']:.1f}%",
                "Population": "" if pd.isna(row["pct_population"]) else f"{row['pct_population']:.1f}%",
            })
    return pd.DataFrame(rows, columns=["Source", "Dimension", "Category", "Respondents", "Sample (unweighted)",
                                       "Sample (weighted)", "Population"])



def composition_all(run: ChapterRun) -> pd.DataFrame:
    """:func:`composition` of every source of the run, stacked."""
    return tables.stack([composition(run, source) for source in run.sources])


def data_profile_figures(run: ChapterRun, profile: dict, compositions: pd.DataFrame) -> list:
    """Missingness of every column, and the weighted composition of the sample by each dimension."""
    saved = []
    missing = profile["missingness"]
    if len(missing):
        colours = figures.series_colours(run.sources)
        fig, alt = figures.plot_estimates(
            missing.assign(item=missing["label"]), item_column="item", series_column="source",
            title=f"Share of respondents with no answer, {run.country_label}", value_label="Percent missing",
            series_labels={s: run.source_title(s) for s in run.sources}, colours=colours,
            source_note=run.source_note, synthetic=run.synthetic)
        saved.append(figures.save_figure(fig, run.figures_dir, "missingness", alt,
                                         caption=f"Missing answers per indicator and dimension, {run.country_label}."))
    if len(compositions):
        labels = category_labels(run)
        shown = compositions.assign(
            item=[f"{run.dimensions[b].label if b in run.dimensions else b}: {labels.get(c, c)}"
                  for b, c in zip(compositions["breakdown"].astype(str), compositions["cell"].astype(str))],
            estimate=compositions["estimate"] * 100, ci_low=compositions["ci_low"] * 100,
            ci_high=compositions["ci_high"] * 100)
        fig, alt = figures.plot_estimates(
            shown, item_column="item", series_column="source", title=f"Who answered: weighted sample composition, {run.country_label}",
            value_label="Percent of respondents (weighted)",
            series_labels={s: run.source_title(s) for s in run.sources}, colours=figures.series_colours(run.sources),
            source_note=run.source_note, synthetic=run.synthetic)
        saved.append(figures.save_figure(fig, run.figures_dir, "composition", alt,
                                         caption=f"Weighted share of respondents by sex, age, disability and other dimensions, {run.country_label}, with 95% CIs."))
    return saved


