"""Chapter 4 · Geography: estimates and gaps by admin-1 area within a country, and across countries."""

from __future__ import annotations

import pandas as pd

from analysis import config, figures, tables
from analysis.chapters.common import (
    COMPARISON,
    ChapterError,
    ChapterRun,
    country_name,
    estimate_indicators,
    percent_view,
    protect,
)
from analysis.chapters.group_profile import with_comparison
from analysis.text import lower_first, text


def load_boundaries(level: str = "admin1", country: str | None = None):
    """Natural Earth boundaries shipped in ``data/raw/boundaries`` (admin1 of one country, or admin0)."""
    import geopandas as gpd

    path = config.BOUNDARIES_DIR / f"{level}.gpkg"
    areas = gpd.read_file(path, layer=level)
    if level == "admin1" and country:
        areas = areas[areas["adm0_a3"] == country]
        if areas.empty:
            raise ChapterError(f"{path}: no admin1 boundaries for '{country}'; add the country to the subset "
                               "(see data/raw/boundaries/SOURCE.md)")
    return areas


def admin1_estimates(run: ChapterRun) -> pd.DataFrame:
    """Group and reference estimates of every percent indicator in every admin1 area, suppressed."""
    parts = []
    for source in run.sources:
        indicators = [i for i in run.indicators_in(source) if i in run.percent_indicators]
        frame = with_comparison(run, source)
        if not indicators or frame["admin1_code"].notna().sum() == 0:
            continue
        parts.append(estimate_indicators(run, frame, run.design(source), indicators, by=["admin1_code", COMPARISON],
                                 margins=False, source=source, country=run.country, group=run.group_id))
    return protect(run, tables.stack(parts), "area estimates")


def admin1_gaps(run: ChapterRun, estimates: pd.DataFrame) -> pd.DataFrame:
    """Group − reference difference of every percent indicator in every admin1 area, with CIs.

    The two domain means of an area and their design-based covariance come from
    :func:`analysis.survey.cell_means_with_covariance` over ``admin1_code × comparison`` (they
    share the area's PSUs, so they are correlated); the difference and its delta-method CI from
    :func:`analysis.gaps.gaps_from_estimates`. A gap whose group or reference cell is suppressed in
    ``estimates`` (the published area estimates) is suppressed (:func:`analysis.disclosure.suppress_derived`).
    """
    from analysis import gaps
    from analysis.disclosure import suppress_derived
    from analysis.survey import cell_means_with_covariance

    if estimates.empty:
        return tables.empty_result()
    rows = []
    for source in run.sources:
        if not (estimates["source"] == source).any():
            continue
        frame = with_comparison(run, source)
        design = run.design(source)
        for indicator in sorted(set(estimates.loc[estimates["source"] == source, "indicator"].astype(str)),
                                key=list(run.indicators).index):
            cells, covariance = cell_means_with_covariance(frame, design, indicator, ["admin1_code", COMPARISON],
                                                           source=source, country=run.country, group=run.group_id)
            cells = cells.reset_index(drop=True).assign(indicator=indicator)
            labels = cells["cell"].astype(str)
            areas = labels.str.split(tables.CELL_SEPARATOR).str[0]
            roles = labels.str.split(tables.CELL_SEPARATOR).str[1]
            position = {(a, r): i for i, (a, r) in enumerate(zip(areas, roles))}
            for area in dict.fromkeys(areas):
                if (area, "group") not in position or (area, "reference") not in position:
                    continue
                g, r = position[(area, "group")], position[(area, "reference")]
                g_row, r_row = cells.iloc[g], cells.iloc[r]
                row = {"source": source, "country": run.country, "group": run.group_id, "indicator": indicator,
                       "breakdown": tables.join_cell(["admin1_code", COMPARISON]), "cell": area,
                       "n_unweighted": g_row["n_unweighted"] + r_row["n_unweighted"],
                       "n_weighted": g_row["n_weighted"] + r_row["n_weighted"],
                       "flag": gaps.derived_flag([g_row["flag"], r_row["flag"]]), "method": "difference",
                       "input_cells": f"{area} × group | {area} × reference", "area": area}
                if pd.notna(g_row["estimate"]) and pd.notna(r_row["estimate"]):
                    result = gaps.gap(g_row["estimate"], r_row["estimate"], g_row["se"], r_row["se"],
                                      float(covariance[g, r]), direction=run.indicators[indicator].direction)
                    row.update(estimate=result.difference, se=result.difference_se,
                               ci_low=result.difference_ci[0], ci_high=result.difference_ci[1])
                rows.append(row)
    if not rows:
        return tables.empty_result()
    measures = pd.DataFrame(rows)
    checked = suppress_derived(measures, estimates)
    return checked.assign(cell=measures["area"].to_numpy(), breakdown="admin1_code").drop(
        columns=["input_cells", "area"])


def _has_value(table: pd.DataFrame) -> bool:
    """True when some row of a map's table has a value to show (not suppressed, not missing)."""
    return bool(((table["flag"] != "suppressed") & table["estimate"].notna()).any())


def _area_maps(run: ChapterRun, estimates: pd.DataFrame, gaps_table: pd.DataFrame):
    """(source, indicator, group rows, gap rows) of every map the page is about: each headline
    percent indicator of each source (the group rows carry ``admin1_code``; the gap rows, empty
    when there is no gap, too)."""
    if estimates.empty:
        return
    parts = estimates["cell"].astype(str).str.split(tables.CELL_SEPARATOR, n=1, expand=True)
    group_rows = percent_view(estimates, run.percent_indicators).assign(admin1_code=parts[0], role=parts[1])
    group_rows = group_rows[group_rows["role"] == "group"]
    for (source, indicator), table in group_rows.groupby(["source", "indicator"], sort=False):
        if indicator not in run.headline_indicators(source):
            continue
        gap = gaps_table[(gaps_table["source"] == source) & (gaps_table["indicator"] == indicator)]
        if len(gap):
            gap = percent_view(gap, run.percent_indicators).assign(admin1_code=gap["cell"].astype(str).to_numpy())
        yield source, indicator, table, gap


def admin1_maps(run: ChapterRun, estimates: pd.DataFrame, gaps_table: pd.DataFrame) -> list:
    """For every headline percent indicator: a choropleth of the group's estimate and one of its
    gap, each with the table of every area's value, interval, respondents and quality beside it
    (:func:`analysis.figures.area_table`). The source note names the source and, when the source
    covers only part of the adult population, whom it surveyed (:meth:`ChapterRun.population_note`).

    A map whose every area is suppressed or without respondents shows nothing and is not drawn;
    :func:`geography_summary` names it."""
    if estimates.empty:
        return []
    areas = load_boundaries("admin1", run.country)
    saved = []
    for source, indicator, table, gap in _area_maps(run, estimates, gaps_table):
        label = run.indicator_labels.get(indicator, indicator)
        note = run.source_note_with_population(source)
        title = run.figure_title("geography.map.title", source, indicator=label)
        if _has_value(table):
            fig, alt = figures.plot_choropleth(areas, table, area_key="iso_3166_2", value_key="admin1_code",
                                               title=title, source_note=note, synthetic=run.synthetic)
            saved.append(figures.save_figure(
                fig, run.figures_dir, f"map_{source}_{indicator}", alt,
                caption=run.text("geography.map.caption", title=title),
                table=figures.area_table(areas, table, area_key="iso_3166_2", value_key="admin1_code"),
                table_caption=run.text("geography.map.table", title=title)))
        if len(gap) and _has_value(gap):
            title = run.figure_title("geography.gap_map.title", source, indicator=label)
            fig, alt = figures.plot_choropleth(areas, gap, area_key="iso_3166_2", value_key="admin1_code",
                                               title=title, diverging=True,
                                               legend_label=text("geography.gap_map.legend"),
                                               source_note=note, synthetic=run.synthetic)
            saved.append(figures.save_figure(
                fig, run.figures_dir, f"map_gap_{source}_{indicator}", alt,
                caption=run.text("geography.gap_map.caption", title=title),
                table=figures.area_table(areas, gap, area_key="iso_3166_2", value_key="admin1_code",
                                         diverging=True),
                table_caption=run.text("geography.gap_map.table", title=title)))
    return saved


def country_estimates(run: ChapterRun) -> pd.DataFrame:
    """Group and reference estimates of every percent indicator in every country of every source."""
    from analysis.survey import design_for

    parts = []
    for source in run.sources:
        frame = with_comparison(run, source)
        indicators = [i for i in run.indicators_in(source) if i in run.percent_indicators]
        for country, part in frame.groupby("country", sort=True):
            part = part.reset_index(drop=True)
            part.attrs.update(frame.attrs)  # each country sampled independently (see module notes)
            est = estimate_indicators(run, part, design_for(part), indicators, by=[COMPARISON], margins=False,
                              source=source, country=str(country), group=run.group_id)
            parts.append(est)
    return protect(run, tables.stack(parts), "area estimates")


def country_maps(run: ChapterRun, estimates: pd.DataFrame) -> list:
    """Cross-country choropleth of the group's estimate for every percent indicator."""
    if estimates.empty:
        return []
    world = load_boundaries("admin0")
    group_rows = percent_view(estimates[estimates["cell"] == "group"], run.percent_indicators)
    saved = []
    headline = {i for s in run.sources for i in run.headline_indicators(s)}
    for indicator, table in group_rows.groupby("indicator", sort=False):
        if indicator not in headline:
            continue
        # one value per country: the source with the most respondents in that country
        table = table.sort_values("n_unweighted", ascending=False, na_position="last").drop_duplicates("country")
        label = run.indicator_labels.get(indicator, indicator)
        title = run.text("geography.world_map.title", indicator=label)
        used = list(dict.fromkeys(table["source"].astype(str)))
        note = " ".join(p for p in [text("common.source_note", sources=text("common.source_separator").join(
            run.source_with_period(s) for s in used)), *(run.population_note(s) for s in used)] if p)
        fig, alt = figures.plot_choropleth(world, table, area_key="iso_a3", value_key="country", title=title,
                                           source_note=note, synthetic=run.synthetic)
        saved.append(figures.save_figure(
            fig, run.figures_dir, f"world_{indicator}", alt,
            caption=run.text("geography.world_map.caption", title=title,
                             sources=text("common.source_separator").join(run.source_title(s) for s in used)),
            table=figures.area_table(world, table, area_key="iso_a3", value_key="country"),
            table_caption=run.text("geography.world_map.table", title=title)))
    return saved


#: How many area gaps the narrative names.
SUMMARY_AREAS = 3


def _suppression_sentence(run: ChapterRun, table: pd.DataFrame, key: str) -> str:
    """How many rows of ``table`` are suppressed and flagged caution, with the rule (thresholds of
    the run's disclosure settings)."""
    from analysis.disclosure import resolve_thresholds

    limits = resolve_thresholds(None)
    return run.text(key, suppressed=int((table["flag"] == "suppressed").sum()), total=len(table),
                    caution=int((table["flag"] == "caution").sum()), suppress_below=limits.suppress_below,
                    caution_last=limits.caution_below - 1)


def geography_summary(run: ChapterRun, estimates: pd.DataFrame, gaps_table: pd.DataFrame) -> str:
    """Narrative of the geography page from the data (templates ``geography.summary.*``): what the
    maps show, the largest area gaps that are flagged ok and whose 95% interval excludes zero (with
    the interval and respondents), and how many area estimates are suppressed or caution, and why.
    Across countries (no area gaps): the highest and lowest country of each mapped indicator."""
    from analysis import findings

    if estimates.empty:
        return run.text("geography.summary.none")
    percent = estimates[estimates["indicator"].isin(run.percent_indicators)]
    if run.country and run.country != "all":
        boundaries = load_boundaries("admin1", run.country)
        areas = dict(zip(boundaries["iso_3166_2"].astype(str), boundaries["name"].astype(str)))
        cells = percent["cell"].astype(str).str.split(tables.CELL_SEPARATOR).str[0]
        shows = run.text("geography.summary.shows", areas=cells.nunique(),
                         indicators=percent["indicator"].nunique())
        parts = [shows]
        diff = gaps_table[gaps_table["indicator"].isin(run.percent_indicators)] if len(gaps_table) else gaps_table
        if len(diff):
            clear = diff[(diff["flag"] == "ok") & ((diff["ci_low"] > 0) | (diff["ci_high"] < 0))]
            if clear.empty:
                parts.append(run.text("geography.summary.no_clear", total=int(diff["estimate"].notna().sum())))
            else:
                top = clear.assign(_size=clear["estimate"].abs()).sort_values("_size", ascending=False)
                named = [run.text("geography.summary.gap_item", area=areas.get(str(r["cell"]), str(r["cell"])),
                                  indicator_lc=lower_first(run.indicator_labels.get(r["indicator"], r["indicator"])),
                                  gap=findings.signed_points(r["estimate"]), low=findings.signed_points(r["ci_low"]),
                                  high=findings.signed_points(r["ci_high"]), n=f"{int(r['n_unweighted']):,}",
                                  source=run.source_title(r["source"]))
                         for _, r in top.head(SUMMARY_AREAS).iterrows()]
                parts.append(run.text("geography.summary.largest", count=len(clear), total=len(diff),
                                      gaps=text("common.source_separator").join(named)))
        parts.append(_suppression_sentence(run, percent, "geography.summary.suppressed"))
        # the maps admin1_maps does not draw (nothing to show in any area), by source and kind
        missing: dict[tuple[str, str], list[str]] = {}
        for source, indicator, table, gap in _area_maps(run, estimates, gaps_table):
            label = lower_first(run.indicator_labels.get(indicator, indicator))
            if not _has_value(table):
                missing.setdefault((source, "share"), []).append(label)
            if len(gap) and not _has_value(gap):
                missing.setdefault((source, "gap"), []).append(label)
        if missing:
            items = [run.text(f"geography.summary.not_drawn_{kind}", source=run.source_title(source),
                              indicators=text("common.list_separator").join(labels))
                     for (source, kind), labels in missing.items()]
            parts.append(run.text("geography.summary.not_drawn", items=text("common.source_separator").join(items)))
        return " ".join(parts)
    group_rows = percent[(percent["cell"] == "group") & (percent["flag"] != "suppressed")
                         & percent["estimate"].notna()]
    parts = [run.text("geography.summary.shows_countries", countries=group_rows["country"].nunique(),
                      indicators=group_rows["indicator"].nunique())]
    for indicator, rows in group_rows.groupby("indicator", sort=False):
        if rows["country"].nunique() < 2:
            continue
        hi, lo = rows.loc[rows["estimate"].idxmax()], rows.loc[rows["estimate"].idxmin()]
        parts.append(run.text(
            "geography.summary.range", indicator=run.indicator_labels.get(indicator, indicator),
            highest=country_name(str(hi["country"])), highest_value=findings.format_percent(
                hi["estimate"], hi["ci_low"], hi["ci_high"]),
            lowest=country_name(str(lo["country"])),
            lowest_value=findings.format_percent(lo["estimate"], lo["ci_low"], lo["ci_high"])))
    parts.append(_suppression_sentence(run, percent, "geography.summary.suppressed"))
    return " ".join(parts)


def estimates_and_maps(run: ChapterRun) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Chapter 4 in one call: admin1 maps for one country, or a cross-country map when the run
    covers every country (``country`` None or "all"). Returns (estimates, gaps, figures)."""
    if run.country and run.country != "all":
        estimates = admin1_estimates(run)
        gaps_table = admin1_gaps(run, estimates)
        return estimates, gaps_table, admin1_maps(run, estimates, gaps_table)
    estimates = country_estimates(run)
    return estimates, tables.empty_result(), country_maps(run, estimates)
