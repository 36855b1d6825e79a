"""Chapter 3 · Intersections: a group within each category of the other dimensions, excess intersectional disparities and MAIHDA."""

from __future__ import annotations

import pandas as pd

from analysis import figures, tables
from analysis.chapters.common import (
    COMPARISON,
    ChapterRun,
    category_labels,
    display_table,
    estimate_indicators,
    percent_view,
    protect,
)
from analysis.chapters.group_profile import with_comparison
from analysis.text import lower_first, text


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


def smallest_cell_counts(run: ChapterRun, excess: pd.DataFrame, measures: pd.DataFrame) -> list:
    """For each row of ``excess``: respondents in the smallest of its four cells (group/reference of
    the run's group × group/reference of the other group), or None where that count is not
    published.

    The smallest cell decides an excess disparity's quality (a caution row is one whose smallest
    cell has fewer than ``caution_below`` respondents), so it is the count a reader needs. It is
    shown only when the cell is publishable: at least ``suppress_below`` respondents and not
    withheld by the report's disclosure plan for that indicator (the same cells are withheld in
    every table, so the count cannot undo another table's suppression).
    """
    import os

    from analysis import disclosure
    from analysis.disclosure_model import Catalogue, make_population

    if excess.empty or measures.empty:
        return []
    limits = disclosure.resolve_thresholds(None)
    planned = os.environ.get(disclosure.CROSS_TABLE_ENV, "").lower() != "off"
    catalogue = Catalogue.from_catalogue(groups=run.groups)
    cells = measures[measures["method"] == "cell_mean"]
    plans: dict = {}
    out = []
    for _, row in excess.iterrows():
        if row["flag"] == "suppressed":
            out.append(None)
            continue
        mine = cells[(cells["source"] == row["source"]) & (cells["indicator"] == row["indicator"])
                     & (cells["other_group"] == row["other_group"])]
        counts = pd.to_numeric(mine["n_unweighted"], errors="coerce")
        if counts.isna().all():
            out.append(None)
            continue
        smallest = mine.loc[counts.idxmin()]
        n = int(counts.min())
        if n < limits.suppress_below:
            out.append(None)
            continue
        frame = run.frames.get(str(row["source"]))
        if planned and frame is not None and frame.attrs.get("design") is not None:
            sides = tables.split_cell(str(smallest["cell"]))  # e.g. ["group", "reference"]
            constraints = {}
            for gid, side in zip((run.group_id, str(row["other_group"])), sides):
                dim, members, reference = catalogue.groups[gid]
                constraints[dim] = members if side == "group" else reference
            population = make_population(constraints, catalogue.universes)
            key = (str(row["source"]), str(row["country"]))
            if key not in plans:
                plans[key] = disclosure._plan_of(frame, key[0], key[1], run.indicators, limits, run.groups)
            plan = plans[key]
            indicator = str(row["indicator"])
            if not plan.covers(indicator, population) or plan.reason(indicator, population) is not None:
                out.append(None)
                continue
        out.append(n)
    return out


def show_excess_disparity(run: ChapterRun, excess: pd.DataFrame, measures: pd.DataFrame):
    """The excess-disparity table as readers see it: "Respondents" is the smallest of the four
    cells (:func:`smallest_cell_counts`), followed by one plain sentence on what the measure and
    that column mean."""
    import html

    from IPython.display import HTML

    display = display_table(run, excess)
    heading = tables.display_headings()["n_unweighted"]
    counts = smallest_cell_counts(run, excess.reset_index(drop=True), measures)
    if len(display):
        display[heading] = ["" if n is None else tables.format_count(n) for n in counts]
    display = display.rename(columns={heading: text("intersections.excess.columns.smallest")})
    notes = "".join(f"<p>{html.escape(text(f'intersections.explain.{k}'), quote=False)}</p>" for k in ("excess", "smallest"))
    return HTML(tables.html_table(display, run.text("intersections.excess.caption")) + notes)


def show_maihda(run: ChapterRun):
    """The MAIHDA summary (:func:`maihda_summary`) with one plain sentence per column that is a
    measure (VPC, PCV, respondents used)."""
    import html

    from IPython.display import HTML

    notes = "".join(f"<p>{html.escape(text(f'intersections.explain.{k}'), quote=False)}</p>"
                    for k in ("maihda", "vpc", "pcv", "respondents"))
    return HTML(tables.html_table(maihda_summary(run), run.text("intersections.maihda.caption")) + notes)


def intersections_summary(run: ChapterRun, cells: pd.DataFrame, excess: pd.DataFrame) -> str:
    """Narrative of the intersections page from the data (templates ``intersections.summary.*``):
    what the heatmaps show, the largest excess disparities flagged ok whose 95% interval excludes
    zero (with interval and respondents), and how many cells and measures are suppressed or
    caution, and why."""
    from analysis import findings
    from analysis.disclosure import resolve_thresholds

    if cells.empty:
        return run.text("intersections.summary.none")
    limits = resolve_thresholds(None)
    dims = [d for d in dict.fromkeys(cells["breakdown"].astype(str).str.split(tables.CELL_SEPARATOR).str[1])
            if isinstance(d, str)]
    names = text("common.list_separator").join(
        lower_first(run.dimensions[d].label) if d in run.dimensions else d for d in dims)
    shown = sum(1 for s in run.sources for i in run.headline_indicators(s) if ((cells["source"] == s)
                                                                             & (cells["indicator"] == i)).any())
    parts = [run.text("intersections.summary.shows", indicators=shown, dimensions=names)]
    if len(excess):
        published = excess[(excess["flag"] != "suppressed") & excess["estimate"].notna()]
        clear = published[(published["flag"] == "ok")
                          & ((published["ci_low"] > 0) | (published["ci_high"] < 0))]
        if clear.empty:
            parts.append(run.text("intersections.summary.no_clear", total=len(published)))
        else:
            top = clear.assign(_size=clear["estimate"].abs()).sort_values("_size", ascending=False).head(3)
            named = [run.text("intersections.summary.excess_item", cell=str(r["cell"]),
                              indicator_lc=lower_first(run.indicator_labels.get(r["indicator"], r["indicator"])),
                              gap=findings.signed_points(r["estimate"]), low=findings.signed_points(r["ci_low"]),
                              high=findings.signed_points(r["ci_high"]), source=run.source_title(r["source"]))
                     for _, r in top.iterrows()]
            parts.append(run.text("intersections.summary.largest", count=len(clear), total=len(published),
                                  items=text("common.source_separator").join(named)))
    everything = tables.stack([cells, excess]) if len(excess) else cells
    parts.append(run.text("intersections.summary.suppressed",
                          suppressed=int((everything["flag"] == "suppressed").sum()), total=len(everything),
                          caution=int((everything["flag"] == "caution").sum()),
                          suppress_below=limits.suppress_below, caution_last=limits.caution_below - 1))
    return " ".join(parts)


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


