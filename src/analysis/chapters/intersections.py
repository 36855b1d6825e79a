"""Chapter 3 · Intersections: a group within each category of the other dimensions, excess intersectional disparities and MAIHDA."""

from __future__ import annotations

import pandas as pd

from analysis import figures, tables
from analysis.chapters.common import (
    COMPARISON,
    ChapterRun,
    category_labels,
    estimate_indicators,
    percent_view,
    protect,
)
from analysis.chapters.group_profile import with_comparison
from analysis.text import text


def intersection_estimates(run: ChapterRun) -> pd.DataFrame:
    """Every percent indicator for the group and its reference within each category of every other
    dimension (``comparison × <dimension>``), design-based, suppressed."""

    parts = []
    for source in run.sources:
        indicators = [i for i in run.indicators_in(source) if i in run.percent_indicators]
        frame = with_comparison(run, source)
        design = run.design(source)
        for dimension in run.intersection_dimensions:
            if dimension == run.group.dimension or dimension not in frame or frame[dimension].nunique() < 2:
                continue
            if not indicators:
                continue
            est = estimate_indicators(run, frame, design, indicators, by=[COMPARISON, dimension], margins=False,
                              source=source, country=run.country, group=run.group_id)
            parts.append(est)
    return protect(run, tables.stack(parts), "intersection cells")


def intersection_heatmaps(run: ChapterRun, estimates: pd.DataFrame) -> list:
    """One heatmap per indicator: rows = categories of the other dimensions, columns = group and
    reference; suppressed tiles hatched. Same rows and colour scale (0–100) in every run."""
    labels = category_labels(run)
    saved = []
    if estimates.empty:
        return saved
    parts = estimates["cell"].astype(str).str.split(tables.CELL_SEPARATOR, n=1, expand=True)
    work = percent_view(estimates, run.percent_indicators).assign(
        col=parts[0], category=parts[1], dimension=estimates["breakdown"].astype(str).str.split(tables.CELL_SEPARATOR).str[1])
    work["row"] = [run.text("intersections.heatmap.row", dimension=run.dimensions[d].label if d in run.dimensions else d,
                            category=labels.get(c, c))
                   for d, c in zip(work["dimension"], work["category"])]
    # rows in catalogue order of dimensions and categories, whatever the data's order
    rank = {}
    for d in run.intersection_dimensions:
        for c in (run.dimensions[d].categories if d in run.dimensions else []):
            rank[(d, c)] = len(rank)
    work["_rank"] = [rank.get((d, c), len(rank)) for d, c in zip(work["dimension"], work["category"])]
    work = work.sort_values("_rank", kind="stable")
    for (source, indicator), table in work.groupby(["source", "indicator"], sort=False):
        if indicator not in run.headline_indicators(source):
            continue
        label = run.indicator_labels.get(indicator, indicator)
        title = run.figure_title("intersections.heatmap.title", source, indicator=label)
        fig, alt = figures.plot_heatmap(
            table, row_column="row", column_column="col", title=title, row_order=list(dict.fromkeys(table["row"])),
            column_labels={"group": run.group_label, "reference": run.reference_label},
            column_order=["group", "reference"], source_note=run.source_note_of(source),
            synthetic=run.synthetic)
        saved.append(figures.save_figure(fig, run.figures_dir, f"intersections_{source}_{indicator}", alt,
                                         caption=run.text("intersections.heatmap.caption", title=title)))
    return saved


def intersection_measures(run: ChapterRun) -> pd.DataFrame:
    """Excess intersectional disparity of the group with every other catalogue group, for the
    headline indicators (:meth:`ChapterRun.headline_indicators`).

    For the group G and another group H (different dimension), the four cells G×H, G×ref(H),
    ref(G)×H, ref(G)×ref(H) give the joint disparity, the excess intersectional disparity
    (mu11 − mu10 − mu01 + mu00) and RERI with delta-method CIs
    (:func:`analysis.gaps.intersectional_disparities`, design-based covariance). Suppressed inputs
    suppress the measures.
    """
    from analysis import gaps

    parts = []
    for source in run.sources:
        indicators = run.headline_indicators(source)
        frame = with_comparison(run, source)
        for other in run.groups.values():
            if other.id == run.group_id or other.dimension == run.group.dimension or other.dimension not in frame:
                continue
            marks = other.assign(frame)
            if marks.nunique() < 2:
                continue
            work = frame.assign(**{other.id: marks})
            work.attrs.update(frame.attrs)
            design = run.design(source)  # the same respondents: the run's design
            for indicator in indicators:
                table = gaps.intersectional_disparities(
                    work, design, indicator, [COMPARISON, other.id], ["group", "group"], ["reference", "reference"],
                    source=source, country=run.country, group=run.group_id)
                parts.append(table.assign(other_group=other.id))
    if not parts:
        return tables.empty_result()
    return pd.concat(parts, ignore_index=True)


def excess_disparity_table(run: ChapterRun, measures: pd.DataFrame) -> pd.DataFrame:
    """The excess intersectional disparity rows only, with the other group named in the cell."""
    if measures.empty:
        return tables.empty_result()
    rows = measures[measures["method"] == "excess_intersectional_disparity"].copy()
    rows["cell"] = [run.text("intersections.excess.cell", other=run.groups[g].label) for g in rows["other_group"]]
    rows["method"] = text("intersections.excess.method")
    # Its count is that of the four cells together (a population of its own): planned as such.
    return protect(run, rows, "excess intersectional disparity")


#: How many indicators (catalogue order) get a MAIHDA summary in each intersections run.
MAIHDA_INDICATORS = 2


def maihda_summary(run: ChapterRun) -> pd.DataFrame:
    """MAIHDA summary of every percent indicator over the group's dimension crossed with the others.

    Uses :func:`analysis.models.maihda` (multilevel model with intersectional strata as random
    effects): the variance partition coefficient of the null model and the proportional change in
    variance once the main effects are added. Column headings from the text catalogue
    (``intersections.maihda.columns``).
    """
    from analysis import models

    rows = []
    for source in run.sources:
        frame = run.frames[source]
        dims = [d for d in (run.group.dimension, *run.intersection_dimensions)
                if d in frame and frame[d].nunique() >= 2][:3]
        dims = list(dict.fromkeys(dims))
        # the first MAIHDA_INDICATORS percent indicators of the catalogue: mixed models are slow
        for indicator in run.headline_indicators(source)[:MAIHDA_INDICATORS]:
            fitted = models.maihda(frame, indicator, dims)
            strata = text("intersections.maihda.strata_separator").join(
                run.dimensions[d].label if d in run.dimensions else d for d in dims)
            rows.append({"indicator": run.indicator_labels[indicator], "strata": strata,
                         "respondents": tables.format_count(fitted.n_used),
                         "vpc": tables.format_decimal(fitted.null.vpc, 3),
                         "pcv": tables.format_decimal(fitted.pcv, 3)})
    columns = ["indicator", "strata", "respondents", "vpc", "pcv"]
    return pd.DataFrame(rows, columns=columns).rename(
        columns={c: text(f"intersections.maihda.columns.{c}") for c in columns})


