"""Chapter 5 · Official statistics and CSO data: data gaps, official and CSO estimates side by side, the effect of weighting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import config, figures, tables
from analysis.chapters.common import (
    ChapterError,
    ChapterRun,
    category_labels,
    estimate_indicators,
    percent_view,
    population_margins,
    protect,
)
from analysis.text import text


def official_sources(processed_dir=None, country: str | None = None) -> dict[str, pd.DataFrame]:
    """Processed official tables (source cards of kind ``aggregates``) with rows for ``country``."""
    from analysis.sources import load_processed

    folder = Path(processed_dir) if processed_dir else config.PROCESSED_DIR
    out = {}
    for path in sorted(folder.glob("*.parquet")):
        frame = load_processed(path.stem, folder)
        if (frame.attrs.get("source") or {}).get("kind") != "aggregates":
            continue
        if country and "country" in frame:
            frame = frame[frame["country"].astype("string") == country]
        if len(frame):
            out[path.stem] = frame
    return out


def read_cdc_deaths(path=None) -> pd.DataFrame:
    """CDC/NCHS provisional COVID-19 deaths by sex and age group, United States (official statistics).

    Reads ``Provisional_COVID-19_Death_Counts_by_Sex__Age__and_State.csv`` (data as of 2 Dec 2020)
    from ``../shared/data/cdc-nchs-covid-deaths/`` unless ``path`` is given. Keeps the national rows
    ("United States") of the sex × age group breakdown; counts 1–9 are suppressed at source (blank)
    and stay blank. Returns columns ``sex, age_group, covid_deaths, total_deaths``.
    """
    path = Path(path) if path else (config.SHARED_DIR / "data" / "cdc-nchs-covid-deaths"
                                    / "Provisional_COVID-19_Death_Counts_by_Sex__Age__and_State.csv")
    if not path.exists():
        raise ChapterError(f"{path}: CDC/NCHS deaths file not found; put the shared data beside the checkout (../shared)")
    raw = pd.read_csv(path)
    needed = ["State", "Sex", "Age Group", "COVID-19 Deaths", "Total Deaths"]
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        raise ChapterError(f"{path}: columns {missing} not found; columns are: {', '.join(raw.columns)}")
    national = raw[raw["State"] == "United States"]
    return pd.DataFrame({"sex": national["Sex"].str.lower(), "age_group": national["Age Group"],
                         "covid_deaths": pd.to_numeric(national["COVID-19 Deaths"], errors="coerce"),
                         "total_deaths": pd.to_numeric(national["Total Deaths"], errors="coerce")}).reset_index(drop=True)


def cdc_deaths_table(deaths: pd.DataFrame) -> pd.DataFrame:
    """Display table of the official deaths: COVID-19 share of all deaths by sex for adult age groups."""
    adults = deaths[deaths["sex"].isin(["female", "male"]) & deaths["age_group"].str.contains("years")
                    & ~deaths["age_group"].str.contains("Under|1-4|5-14|0-17", regex=True)]
    # one set of bands that do not overlap (the file also has 18-29, 30-39, 30-49, 40-49, 50-64)
    adults = adults[~adults["age_group"].isin(["18-29 years", "30-39 years", "30-49 years", "40-49 years",
                                               "50-64 years"])]
    columns = "official_statistics.cdc.columns"
    return pd.DataFrame({
        text(f"{columns}.sex"): adults["sex"].map({"female": text("official_statistics.cdc.women"),
                                                   "male": text("official_statistics.cdc.men")}),
        text(f"{columns}.age_group"): adults["age_group"],
        text(f"{columns}.covid_deaths"): adults["covid_deaths"].map(tables.format_count),
        text(f"{columns}.all_deaths"): adults["total_deaths"].map(tables.format_count),
        text(f"{columns}.share"): (adults["covid_deaths"] / adults["total_deaths"]).map(
            lambda v: "" if pd.isna(v) else tables.format_percent_value(100 * v)),
    })


def cdc_period_note(run: ChapterRun, deaths: pd.DataFrame) -> str:
    """Why the official deaths and the survey estimates do not compare directly: the deaths' period
    (to 28 Nov 2020, data as of 2 Dec 2020) against each source's collection period, and the
    deaths' age bands against the report's (``params/groups.yml``)."""
    shown = cdc_deaths_table(deaths)
    cdc_bands = list(dict.fromkeys(shown[text("official_statistics.cdc.columns.age_group")]))
    report_bands = run.dimensions["age_group"].categories if "age_group" in run.dimensions else []
    periods = text("common.source_separator").join(
        text("common.source_with_period", source=run.source_title(s), period=run.source_period(s))
        for s in run.frames if run.source_period(s))
    return run.text("official_statistics.cdc.period_note", periods=periods or "—",
                    cdc_bands=text("common.list_separator").join(cdc_bands),
                    report_bands=text("common.list_separator").join(report_bands))


def data_gap_matrix(run: ChapterRun, official: dict[str, pd.DataFrame], official_dimensions=None) -> pd.DataFrame:
    """Which groups × indicators official statistics disaggregate, and which CSO sources cover.

    One row per indicator, one column per catalogue group; each cell is "official and CSO",
    "CSO only", "official only" or "neither". Official statistics disaggregate a group when an
    official table of the processed data has a breakdown on the group's dimension for the
    indicator. CSO data cover it when a source of the run has members of the group and answers to
    the indicator. ``official_dimensions`` lists the dimensions of an official mortality table read
    outside the processed data (e.g. CDC/NCHS deaths by sex and age): it adds a row
    "COVID-19 deaths (official statistics)".
    """
    keys = {(True, True): "both", (False, True): "cso_only", (True, False): "official_only",
            (False, False): "neither"}
    words = {k: text(f"official_statistics.gap_matrix.{v}") for k, v in keys.items()}
    heading = text("official_statistics.gap_matrix.indicator")
    rows = []
    for indicator in run.indicators:
        row = {heading: run.indicator_labels[indicator]}
        for group in run.groups.values():
            official_has = any(
                ((t["indicator"].astype(str) == indicator)
                 & t["breakdown"].astype(str).str.split(tables.CELL_SEPARATOR).map(
                     lambda parts, dimension=group.dimension: dimension in parts)).any()
                for t in official.values() if {"indicator", "breakdown"} <= set(t.columns))
            cso_has = any(indicator in f and f[indicator].notna().any() and group.dimension in f
                          and f[group.dimension].astype("string").isin(group.members).any()
                          for f in run.frames.values())
            row[group.label] = words[(bool(official_has), bool(cso_has))]
        rows.append(row)
    if official_dimensions:
        row = {heading: text("official_statistics.gap_matrix.deaths_row")}
        for group in run.groups.values():
            row[group.label] = words[(group.dimension in set(official_dimensions), False)]
        rows.append(row)
    return pd.DataFrame(rows)


def official_comparison(run: ChapterRun, official: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Official and CSO estimates side by side where both exist (whole population, by sex, by age).

    CSO estimates are design-based (:func:`analysis.survey.estimate_by`) over the same breakdown
    as the official row; both are kept in the result schema with ``method`` saying which is which.
    Each official row appears once, however many CSO sources the country has.
    """

    parts = []
    for table in official.values():
        table = tables.conform(table)
        shown = np.zeros(len(table), dtype=bool)  # official rows already added (once, whatever the CSO sources)
        for source, frame in run.frames.items():
            for breakdown in sorted(set(table["breakdown"].astype(str))):
                dims = [] if breakdown == "all" else tables.split_cell(breakdown)
                if any(d not in frame for d in dims):
                    continue
                wanted = sorted(set(table.loc[table["breakdown"] == breakdown, "indicator"]) & set(run.indicators_in(source)))
                if not wanted:
                    continue
                cso = estimate_indicators(run, frame, run.design(source), wanted, by=dims, margins=False,
                                  source=source, country=run.country)
                if not dims:
                    cso = cso.assign(breakdown="all", cell="all")
                keys = set(zip(cso["indicator"].astype(str), cso["cell"].astype(str)))
                both = np.array([(i, c) in keys for i, c in zip(table["indicator"].astype(str), table["cell"].astype(str))],
                                dtype=bool)
                new = (table["breakdown"] == breakdown).to_numpy(dtype=bool) & both & ~shown
                shown |= new
                off = table[new]
                parts += [off.assign(method="official: " + off["method"].fillna("published estimate").astype(str)), cso]
    if not parts:
        return tables.empty_result()
    # An official row is appended once per CSO source it is compared with: keep it once.
    return protect(run, tables.stack(parts).drop_duplicates(ignore_index=True), "official vs CSO")


def comparison_figure(run: ChapterRun, comparison: pd.DataFrame) -> list:
    """Official vs CSO estimate for every indicator and cell where both exist."""
    if comparison.empty:
        return []
    labels = category_labels(run)
    work = percent_view(comparison, run.percent_indicators)
    work = work.assign(
        item=[run.text("official_statistics.comparison.item", indicator=run.indicator_labels.get(i, i),
                       cell=labels.get(c, text("common.all_adults") if c == "all" else c))
              for i, c in zip(work["indicator"].astype(str), work["cell"].astype(str))],
        series=[s if not str(m).startswith("official") else "official" for s, m in zip(work["source"].astype(str), work["method"].astype(str))])
    series = ["official"] + [s for s in run.sources if s in set(work["series"])]
    colours = figures.series_colours(series, catalogue_order=series)
    fig, alt = figures.plot_estimates(
        work, item_column="item", series_column="series", title=run.text("official_statistics.comparison.title"),
        series_labels={"official": text("official_statistics.comparison.official"),
                       **{s: run.source_title(s) for s in run.sources}},
        series_order=series, colours=colours, source_note=run.source_note, synthetic=run.synthetic)
    return [figures.save_figure(fig, run.figures_dir, "official_vs_cso", alt,
                                caption=run.text("official_statistics.comparison.caption"))]


def weighting_effect(run: ChapterRun) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every percent indicator for all respondents before and after weighting, with diagnostics.

    With official population margins for the country (a ``margins`` source), each CSO sample is
    weighted to them by :func:`analysis.weighting.weight_to_official_margins` (post-stratification
    to area × sex × age when every populated cell has respondents, else raking to the one-way
    margins; the population restricted to the areas, sexes and ages the sample covers): *before* is the source's
    own design (equal weights for a non-probability sample), *after* the calibrated design.
    Without margins (e.g. Household Pulse, whose published weights are already calibrated to Census
    population controls) *before* is equal weights and *after* the source's weights.
    Diagnostics: Kish's design effect of unequal weights ``1 + CV²(w)`` and effective sample size
    ``n / deff`` before and after, and the weighting method.
    """
    from analysis import weighting
    from analysis.disclosure import slice_flag, slice_note
    from analysis.survey import design_for

    margins = population_margins(run.processed_dir, run.country)
    parts, diagnostics = [], []
    for source, frame in run.frames.items():
        indicators = [i for i in run.indicators_in(source) if i in run.percent_indicators]
        weight = (run.survey(source).design_spec or {}).get("weight")
        if not indicators or not weight:
            continue
        own = run.design(source)
        by = [c for c in run.weighting_columns if margins is not None and c in margins and c in frame
              and frame[c].notna().all()]
        note = ""
        if by:
            # the target population is the areas, sexes and ages the sample covers (e.g. a youth
            # survey represents young people, not all adults)
            result = weighting.weight_to_official_margins(frame, margins, by, design=own, restrict_to=by)
            before_design, after_design = own, result.design
            method = text("official_statistics.weighting.to_margins", method=result.method,
                          margins=text("official_statistics.weighting.margin_separator").join(
                              run.dimensions[c].label if c in run.dimensions else text("common.area_admin1")
                              for c in by))
            note = "; ".join(result.notes)
        else:
            unweighted = frame.assign(**{weight: 1.0})
            unweighted.attrs.update(frame.attrs)
            before_design, after_design = design_for(unweighted), own
            method = text("official_statistics.weighting.published_weights")
        before = estimate_indicators(run, frame, before_design, indicators, by=[], source=source, country=run.country)
        after = estimate_indicators(run, frame, after_design, indicators, by=[], source=source, country=run.country)
        parts += [before.assign(cell="unweighted", method="before weighting: " + before["method"].astype(str)),
                  after.assign(cell="weighted", method=f"after weighting ({method}): " + after["method"].astype(str))]
        w_before, w_after = np.asarray(before_design.weights, float), np.asarray(after_design.weights, float)
        deff_before, deff_after = weighting.kish_design_effect(w_before), weighting.kish_design_effect(w_after)
        flag = slice_flag(frame)
        if flag == "suppressed":  # a design effect and an effective size would describe few people
            withheld = text("data_profile.withheld")
            diagnostics.append({"source": run.source_title(source), "respondents": withheld,
                                "weighting": method, "deff_before": withheld, "deff_after": withheld,
                                "ess_after": withheld, "notes": slice_note(flag)})
            continue
        diagnostics.append({"source": run.source_title(source), "respondents": tables.format_count(len(frame)),
                            "weighting": method,
                            "deff_before": tables.format_decimal(deff_before, 2), "deff_after": tables.format_decimal(deff_after, 2),
                            "ess_after": tables.format_count(round(len(frame) / deff_after)),
                            "notes": "; ".join(t for t in (note, slice_note(flag)) if t)})
    table = protect(run, tables.stack(parts), "weighting effect") if parts else tables.empty_result()
    columns = ["source", "respondents", "weighting", "deff_before", "deff_after", "ess_after", "notes"]
    return table, pd.DataFrame(diagnostics, columns=columns).rename(
        columns={c: text(f"official_statistics.weighting.columns.{c}") for c in columns})


def weighting_figure(run: ChapterRun, effect: pd.DataFrame) -> list:
    """Before/after weighting bars for every percent indicator, per source."""
    saved = []
    for source, table in percent_view(effect, run.percent_indicators).groupby("source", sort=False):
        colours = {"unweighted": figures.REFERENCE_COLOUR, "weighted": figures.OKABE_ITO[0]}
        title = run.text("official_statistics.weighting.title", source=run.source_title(source))
        fig, alt = figures.plot_estimates(
            table, item_column="indicator", series_column="cell", title=title, item_labels=run.indicator_labels,
            series_order=["unweighted", "weighted"],
            series_labels={"unweighted": text("official_statistics.weighting.before"),
                           "weighted": text("official_statistics.weighting.after")}, colours=colours,
            source_note=run.source_note_of(source), synthetic=run.synthetic)
        saved.append(figures.save_figure(fig, run.figures_dir, f"weighting_{source}", alt,
                                         caption=run.text("official_statistics.weighting.caption", title=title)))
    return saved


