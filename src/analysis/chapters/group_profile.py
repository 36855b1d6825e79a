"""Chapter 2 · Group profile: every indicator for a group and its reference population, and the gaps between them."""

from __future__ import annotations

import pandas as pd

from analysis import figures, tables
from analysis.chapters.common import (
    COMPARISON,
    ChapterError,
    ChapterRun,
    estimate_indicators,
    percent_view,
    protect,
)


def with_comparison(run: ChapterRun, source: str) -> pd.DataFrame:
    """The source's frame with :data:`COMPARISON` = "group" | "reference" | NA (design kept)."""
    frame = run.frames[source]
    if run.group is None:
        raise ChapterError(f"chapter {run.chapter}: this chapter needs a group; set the parameter 'group'")
    out = frame.assign(**{COMPARISON: run.group.assign(frame)})
    out.attrs.update(frame.attrs)
    return out


def per_source(run: ChapterRun, in_memory, partitioned) -> list[pd.DataFrame]:
    """One table per source of the run that measures any indicator: ``partitioned(run, source)``
    for a partitioned source (partition sums on DuckDB or Dask, :mod:`analysis.chapters.at_scale`),
    ``in_memory(source, indicators)`` for the others (the loop the group profile's estimates and
    gaps share)."""
    from analysis.chapters import at_scale

    parts = []
    for source in run.sources:
        indicators = run.indicators_in(source)
        if not indicators:
            continue
        if at_scale.is_partitioned(run, source):
            parts.append(partitioned(run, source))
        else:
            parts.append(in_memory(source, indicators))
    return parts


def group_estimates(run: ChapterRun) -> pd.DataFrame:
    """Every indicator for the group and its reference, per source, suppressed (result schema).

    Design-based domain means (Taylor linearisation or the source's replicate weights, as the
    design says) with 95% CIs from :func:`analysis.survey.estimate_by`; the breakdown is
    :data:`COMPARISON` with cells "group" and "reference".
    """
    from analysis.chapters import at_scale

    def in_memory(source, indicators):
        estimates = estimate_indicators(run, with_comparison(run, source), run.design(source), indicators,
                                        by=[COMPARISON], margins=False, statistic="mean",
                                        source=source, country=run.country, group=run.group_id)
        return estimates[estimates["cell"].isin(["group", "reference"])]

    return protect(run, tables.stack(per_source(run, in_memory, at_scale.group_estimates)), "group estimates")


def group_gaps(run: ChapterRun, estimates: pd.DataFrame) -> pd.DataFrame:
    """Difference (group − reference) and ratio (group / reference) of every indicator, with CIs.

    From :func:`analysis.gaps.group_gaps` (delta method on the design-based covariance of the two
    domain means); a gap built on a suppressed estimate is suppressed
    (:func:`analysis.disclosure.suppress_derived`).
    """
    from analysis import gaps
    from analysis.chapters import at_scale
    from analysis.disclosure import suppress_derived

    def in_memory(source, indicators):
        return gaps.group_gaps(run.frames[source], run.design(source), run.group, indicators,
                               source=source, country=run.country)

    parts = per_source(run, in_memory, at_scale.group_gaps)
    if not parts:
        return tables.empty_result()
    measures = pd.concat(parts, ignore_index=True)
    # Link each gap to its two input cells of the group-profile table, then restore its breakdown.
    linked = measures.assign(breakdown=COMPARISON, input_cells="group | reference")
    checked = suppress_derived(linked, estimates)
    return checked.assign(breakdown=measures["breakdown"].to_numpy()).drop(columns=["input_cells"])


def figure_group_profile(run: ChapterRun, estimates: pd.DataFrame, source: str) -> figures.SavedFigure:
    """Bar chart: every percent indicator, group vs reference, 95% CIs, suppression drawn."""
    shown = percent_view(estimates[(estimates["source"] == source)
                                   & estimates["indicator"].isin(run.percent_indicators)], run.percent_indicators)
    group = run.group
    colours = figures.series_colours(["group", "reference"], catalogue_order=["group"])
    colours["group"] = figures.series_colours([group.id], list(run.groups))[group.id]
    title = run.figure_title("group_profile.figure.profile.title", source)
    fig, alt = figures.plot_estimates(
        shown, item_column="indicator", series_column="cell", title=title,
        item_labels=run.indicator_labels, series_order=["group", "reference"],
        series_labels={"group": run.group_label, "reference": run.reference_label}, colours=colours,
        source_note=run.source_note_of(source), synthetic=run.synthetic)
    return figures.save_figure(fig, run.figures_dir, f"group_profile_{source}", alt,
                               caption=run.text("group_profile.figure.profile.caption", title=title,
                                                source=run.source_title(source)))


def figure_gaps(run: ChapterRun, gaps_table: pd.DataFrame, source: str) -> figures.SavedFigure:
    """Dot chart of the differences (points) of every percent indicator, with 95% CIs."""
    diff = gaps_table[(gaps_table["source"] == source) & gaps_table["indicator"].isin(run.percent_indicators)
                      & (gaps_table["method"].astype(str).str.contains("difference"))]
    shown = percent_view(diff, run.percent_indicators)
    title = run.figure_title("group_profile.figure.gaps.title", source)
    colour = figures.series_colours([run.group_id], list(run.groups))[run.group_id]
    fig, alt = figures.plot_gaps(shown, title=title, item_labels=run.indicator_labels, colour=colour,
                                 source_note=run.source_note_of(source), synthetic=run.synthetic)
    return figures.save_figure(fig, run.figures_dir, f"group_gaps_{source}", alt,
                               caption=run.text("group_profile.figure.gaps.caption", title=title))


def profile_summary(run: ChapterRun, estimates: pd.DataFrame, gaps_table: pd.DataFrame) -> str:
    """Narrative from the data: the largest clear gap as a finding sentence (size, interval, source,
    respondents, quality; chosen by the rules of :mod:`analysis.findings`), and how many gaps are
    clear, flagged caution or suppressed."""
    from analysis import findings

    diff = gaps_table[(gaps_table["method"].astype(str) == "difference")
                      & gaps_table["indicator"].isin(run.percent_indicators)]
    published = diff[(diff["flag"] != "suppressed") & diff["estimate"].notna()]
    if published.empty:
        return run.text("group_profile.summary.none")
    clear = published[(published["ci_low"] > 0) | (published["ci_high"] < 0)]
    counts = run.text("group_profile.summary.counts", clear=len(clear), total=len(published),
                      caution=int((published["flag"] == "caution").sum()),
                      suppressed=int((diff["flag"] == "suppressed").sum()))
    table = findings.comparisons(tables.stack([estimates, gaps_table]), run.indicators)
    top = findings.key_findings(table, run.percent_indicators, per_theme=1)
    if top.empty:
        return run.text("group_profile.summary.no_clear", total=len(published)) + " " + counts
    best = top.loc[top["gap"].abs().idxmax()]
    sentence = findings.finding_text(best, group_label=run.group_label, reference_label=run.reference_label,
                                     indicator_label=run.indicator_labels[best["indicator"]],
                                     country_label=run.country_label, source_title=run.source_title(best["source"]))
    return run.text("group_profile.summary.largest", finding=sentence) + " " + counts


def group_profile_figures(run: ChapterRun, estimates: pd.DataFrame, gaps_table: pd.DataFrame) -> list:
    """The chapter 2 figures of every source: profile bars, then gaps."""
    saved = []
    for source in run.sources:
        if (estimates["source"] == source).any():
            saved.append(figure_group_profile(run, estimates, source))
        if len(gaps_table) and (gaps_table["source"] == source).any():
            saved.append(figure_gaps(run, gaps_table, source))
    return saved




def gap_differences(gaps_table: pd.DataFrame) -> pd.DataFrame:
    """The difference rows of :func:`group_gaps` (what the chapter's gaps table shows; the ratios
    stay in the saved table): one row per source × indicator, never two that read alike."""
    if gaps_table.empty:
        return gaps_table
    return gaps_table[gaps_table["method"].astype(str).str.startswith("difference")].reset_index(drop=True)
