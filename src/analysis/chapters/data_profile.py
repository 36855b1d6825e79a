"""Chapter 1 · Data profile: coverage, row accounting, missingness and sample composition of each source × country."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis import config, figures, tables
from analysis.chapters.common import (
    ChapterRun,
    category_labels,
    population_margins,
    protect,
)
from analysis.schema import AREA_COLUMNS
from analysis.text import text


def profile_tables(run: ChapterRun) -> dict[str, pd.DataFrame]:
    """Coverage, availability of dimensions and indicators, and missingness of each source.

    Returns frames (descriptive, not estimates; counts of respondents per source and country only,
    never per small cell): ``coverage`` (respondents, areas, sample type, sum of weights),
    ``availability`` (every catalogue dimension and indicator: present or not, answered by how many),
    ``missingness`` (share missing per column, as a result-schema-like table for the figure).
    """
    from analysis.disclosure import slice_flag, slice_note

    coverage, availability, missing = [], [], []
    yes, no, withheld = text("common.yes"), text("common.no"), text("data_profile.withheld")
    for source, frame in run.frames.items():
        design = run.survey(source).design_spec or {}
        weight = design.get("weight")
        flag = slice_flag(frame)
        small = flag == "suppressed"  # a slice below the threshold: no numbers at all
        coverage.append({
            "source": run.source_title(source),
            "country": run.country_label,
            "respondents": withheld if small else tables.format_count(len(frame)),
            "areas": (withheld if small else
                      int(frame["admin1_code"].nunique()) if "admin1_code" in frame else 0),
            "sample_type": str(design.get("sample_type") or ""),
            "weighted_total": (withheld if small else
                               tables.format_count(round(frame[weight].sum())) if weight and weight in frame else ""),
            "synthetic": yes if run.survey(source).metadata.get("synthetic") else no,
            "note": slice_note(flag),
        })
        dimension_labels = {d: run.dimensions[d].label for d in run.dimensions}
        dimension_labels["admin1_code"] = text("common.area_admin1")
        for kind, ids, labels in (
            ("dimension", run.profile_dimensions, dimension_labels),
            ("indicator", list(run.indicators), run.indicator_labels),
        ):
            for column in ids:
                answered = int(frame[column].notna().sum()) if column in frame else 0
                skipped, asked_of = (_not_asked(frame, column, run.country, answered) if kind == "indicator"
                                     else (0, None))
                no_answer = len(frame) - answered - skipped
                availability.append({"source": run.source_title(source),
                                     "kind": text(f"data_profile.availability.kind_{kind}"),
                                     "column": labels.get(column, column),
                                     "available": yes if answered else no,
                                     "answered": withheld if small else tables.format_count(answered),
                                     "missing": (withheld if small else
                                                 tables.format_percent_value(100 * no_answer / len(frame)) if len(frame) else ""),
                                     "not_asked": (withheld if small and skipped else
                                                   _not_asked_text(100 * skipped / len(frame), asked_of)
                                                   if skipped and len(frame) else "")})
                if answered and not small:
                    missing.append({"source": source, "country": run.country, "indicator": column,
                                    "breakdown": "missing", "cell": "all",
                                    # a question routed away from a respondent is not a missing answer
                                    "estimate": 100.0 * no_answer / len(frame),
                                    "n_unweighted": len(frame), "flag": "ok",
                                    "method": "share of rows missing (unweighted)", "label": labels.get(column, column)})
    return {"coverage": _headed(pd.DataFrame(coverage), "data_profile.coverage.columns"),
            "availability": _headed(pd.DataFrame(availability), "data_profile.availability.columns"),
            "missingness": pd.DataFrame(missing)}


def _not_asked(frame: pd.DataFrame, column: str, country: str | None, answered: int) -> tuple[int, str | None]:
    """(rows of ``frame`` not asked ``column`` by the source's routing, who was asked) from the
    ingest's count (``attrs["source"]["not_asked"]``, per country; see the card's ``asked_when``).

    The count was taken at ingest; a run may hold fewer rows (respondents withdrawn later), so it
    is capped at the rows without an answer.
    """
    entry = ((frame.attrs.get("source") or {}).get("not_asked") or {}).get(column)
    if not entry:
        return 0, None
    by_country = entry.get("by_country") or {}
    rows = int(by_country.get(str(country), 0)) if by_country else int(entry.get("rows") or 0)
    return max(0, min(rows, len(frame) - answered)), entry.get("asked_of")


def _not_asked_text(share: float, asked_of: str | None) -> str:
    key = "data_profile.availability.not_asked" if asked_of else "data_profile.availability.not_asked_unnamed"
    return text(key, share=tables.format_percent_value(share), asked_of=asked_of or "")


def _headed(frame: pd.DataFrame, section: str) -> pd.DataFrame:
    """Rename a display frame's column ids to their headings in the text catalogue (``section.<id>``)."""
    return frame.rename(columns={c: text(f"{section}.{c}") for c in frame.columns})


def row_accounting(run: ChapterRun) -> pd.DataFrame:
    """Rows in, rows out and every exclusion reason of each source (``<source>.log.json``), and
    the free-coded categories pooled into "other" in this run's data (how many, never which)."""
    from analysis.disclosure import resolve_thresholds
    from analysis.sources.coding import withdrawals

    folder = run.processed_dir or config.PROCESSED_DIR
    rows = []
    for source in run.sources:
        path = Path(folder) / f"{source}.log.json"
        title = run.source_title(source)
        log = json.loads(path.read_text()) if path.exists() else {}
        if not path.exists():
            rows.append({"source": title, "step": text("data_profile.rows.row_accounting"), "rows": "",
                         "detail": text("data_profile.rows.log_missing", file=path.name)})
        for key in ("rows_read", "rows_kept"):
            if key in log:
                rows.append({"source": title, "step": text(f"data_profile.rows.{key}"),
                             "rows": tables.format_count(int(log[key])), "detail": ""})
        excluded = log.get("rows_excluded") or {}
        if isinstance(excluded, dict):
            for reason, count in excluded.items():
                rows.append({"source": title, "step": text("data_profile.rows.excluded"),
                             "rows": tables.format_count(int(count)), "detail": str(reason)})
        # a STOP in coded free text removes the respondent after ingest (load_processed)
        withdrawn = withdrawals(source, folder)
        for coding_source, ids in withdrawn.items():
            rows.append({"source": title, "step": text("data_profile.rows.withdrawn"), "rows": tables.format_count(len(ids)),
                         "detail": text("data_profile.rows.withdrawn_detail", source=coding_source)})
        if not excluded and not withdrawn and path.exists():
            rows.append({"source": title, "step": text("data_profile.rows.excluded"), "rows": "0",
                         "detail": text("data_profile.rows.no_row_excluded")})
        if withdrawn and "rows_kept" in log:
            analysed = int(log["rows_kept"]) - sum(len(ids) for ids in withdrawn.values())
            rows.append({"source": title, "step": text("data_profile.rows.rows_analysed"),
                         "rows": tables.format_count(analysed), "detail": ""})
        pooled = (run.frames[source].attrs.get("pooled_categories") or {}) if source in run.frames else {}
        limit = resolve_thresholds().suppress_below
        for column, counts in pooled.items():
            shown = (tables.format_count(counts["rows"]) if counts["rows"] >= limit
                     else text("data_profile.rows.fewer_than", limit=limit))
            rows.append({"source": title, "step": text("data_profile.rows.pooled"), "rows": shown,
                         "detail": text("data_profile.rows.pooled_detail", categories=counts["categories"],
                                        column=column)})
    return _headed(pd.DataFrame(rows, columns=["source", "step", "rows", "detail"]), "data_profile.rows.columns")


def composition(run: ChapterRun, source: str) -> pd.DataFrame:
    """Weighted share of respondents in each category of each profile dimension, with CIs.

    Design-based proportions (:func:`analysis.survey.estimate_by`, ``statistic="proportion"``):
    each category's 0/1 membership is an indicator whose weighted mean is the share; respondents
    missing the dimension are excluded from its denominator. Suppressed per disclosure rules.
    """
    from analysis.disclosure_model import positive_weight_rows
    from analysis.survey import estimate_by

    frame = run.frames[source]
    dimensions = [d for d in run.profile_dimensions
                  if d not in AREA_COLUMNS and d in frame and frame[d].notna().any()]
    parts = []
    if dimensions:
        work = frame
        estimates = estimate_by(work, run.design(source), dimensions, by=[], margins=True,
                                statistic="proportion", source=source, country=run.country)
        names = estimates["indicator"].astype(str).str.split("=", n=1)
        estimates = estimates.assign(breakdown=names.str[0], cell=names.str[1], indicator="composition")
        # Disclosure counts the people IN the category (the numerator), not the denominator,
        # and only respondents with a positive weight (a zero-weight row is nobody's estimate).
        counted = positive_weight_rows(work, (run.survey(source).design_spec or {}).get("weight"))
        estimates["n_unweighted"] = [int(((work[d] == c).fillna(False).to_numpy(bool) & counted).sum())
                                     for d, c in zip(estimates["breakdown"], estimates["cell"])]
        parts.append(in_catalogue_order(run, estimates))
    # The shares of one dimension sum to 1 and their counts to the source's respondents: the
    # plan of the source × country protects the complements of a withheld share.
    return protect(run, tables.stack(parts), "composition")


def in_catalogue_order(run: ChapterRun, table: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``breakdown`` = dimension, ``cell`` = category in the catalogue's order of the
    dimensions (``uses.profile`` of the catalogue) and of each dimension's categories
    (``params/groups.yml``: income Lowest … Highest, not alphabetical); unknown ones last."""
    rank: dict[tuple[str, str], int] = {}
    for dimension in run.profile_dimensions:
        spec = run.dimensions.get(dimension)
        for category in (spec.categories if spec else []):
            rank[(dimension, str(category))] = len(rank)
    dims = {d: i for i, d in enumerate(run.profile_dimensions)}
    keys = [(dims.get(b, len(dims)), rank.get((b, c), len(rank)))
            for b, c in zip(table["breakdown"].astype(str), table["cell"].astype(str))]
    order = sorted(range(len(table)), key=lambda i: keys[i])
    return table.iloc[order].reset_index(drop=True)


def composition_vs_margins(run: ChapterRun) -> pd.DataFrame:
    """Sample composition against official population margins (sex, age group, area).

    :func:`analysis.weighting.weighting_diagnostics` with the source's own design before and after:
    per category the unweighted and weighted share of the sample and the population share, with
    small sample categories withheld. The population is restricted to the categories the sample
    covers (a youth survey is compared with the young population). Empty without margins.
    """
    from analysis import weighting

    margins = population_margins(run.processed_dir, run.country)
    rows = []
    for source, frame in run.frames.items():
        by = [c for c in run.weighting_columns if margins is not None and c in margins and c in frame
              and frame[c].notna().any()]
        if not by:
            continue
        one_way = {}
        for column in by:
            present = set(frame[column].dropna().astype(str))
            counts = margins.groupby(margins[column].astype(str))["population"].sum()
            one_way[column] = counts[counts.index.isin(present)]
        design = run.design(source)
        table = weighting.weighting_diagnostics(frame, one_way, design, design)
        labels = category_labels(run)
        if "admin1" in frame:  # area codes are shown by their Natural Earth names
            labels.update(dict(zip(frame["admin1_code"].astype(str), frame["admin1"].astype(str))))
        dimension_labels = ({d: v.label for d, v in run.dimensions.items()}
                            | {"admin1_code": text("common.area_admin1")})
        for _, row in table.iterrows():
            withheld = row.get("flag") == "suppressed"
            rows.append({
                "source": run.source_title(source),
                "dimension": dimension_labels.get(str(row["margin"]), str(row["margin"])),
                "category": labels.get(str(row["category"]), str(row["category"])),
                "respondents": text("data_profile.margins.withheld") if withheld else tables.format_count(int(row["n_unweighted"])),
                "sample_unweighted": "" if withheld or pd.isna(row["pct_unweighted"]) else tables.format_percent_value(row["pct_unweighted"]),
                "sample_weighted": "" if withheld or pd.isna(row["pct_weighted_before"]) else tables.format_percent_value(row["pct_weighted_before"]),
                "population": "" if pd.isna(row["pct_population"]) else tables.format_percent_value(row["pct_population"]),
            })
    return _headed(pd.DataFrame(rows, columns=["source", "dimension", "category", "respondents", "sample_unweighted",
                                               "sample_weighted", "population"]), "data_profile.margins.columns")



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
            title=run.text("data_profile.figure.missingness.title"),
            value_label=run.text("data_profile.figure.missingness.axis"),
            series_labels={s: run.source_title(s) for s in run.sources}, colours=colours,
            source_note=run.source_note, synthetic=run.synthetic)
        saved.append(figures.save_figure(fig, run.figures_dir, "missingness", alt,
                                         caption=run.text("data_profile.figure.missingness.caption")))
    if len(compositions):
        labels = category_labels(run)
        shown = compositions.assign(
            item=[run.text("data_profile.figure.composition.item",
                           dimension=run.dimensions[b].label if b in run.dimensions else b, category=labels.get(c, c))
                  for b, c in zip(compositions["breakdown"].astype(str), compositions["cell"].astype(str))],
            estimate=compositions["estimate"] * 100, ci_low=compositions["ci_low"] * 100,
            ci_high=compositions["ci_high"] * 100)
        fig, alt = figures.plot_estimates(
            shown, item_column="item", series_column="source",
            title=run.text("data_profile.figure.composition.title"),
            value_label=run.text("data_profile.figure.composition.axis"),
            series_labels={s: run.source_title(s) for s in run.sources}, colours=figures.series_colours(run.sources),
            source_note=run.source_note, synthetic=run.synthetic)
        saved.append(figures.save_figure(fig, run.figures_dir, "composition", alt,
                                         caption=run.text("data_profile.figure.composition.caption")))
    return saved


