"""Chapter-level library functions: what the report notebooks call, so the notebooks stay thin.

Every chapter notebook has the same shape — parameters, :func:`start_run`, a few calls below,
save, show, a sentence of narrative — and no wrangling of its own. The statistics come from the
survey, gaps, models, weighting and disclosure modules; this module only orchestrates them for one
run (one chapter × group × country, or one source × country) and prepares what is shown.

Conventions
-----------
- Estimates stay in the result schema (:mod:`analysis.tables`), proportions on 0–1, exactly as
  the survey module returns them; :func:`percent_view` rescales percent indicators to 0–100 for
  figures only.
- Every table is passed through :func:`analysis.disclosure.apply_suppression` (derived measures
  through :func:`analysis.disclosure.suppress_derived`) before it is saved or shown, and through
  the gate :func:`analysis.disclosure.assert_publishable` when it is saved.
- A country's respondents are analysed as one survey: when a source covers several countries,
  each country is assumed to be sampled independently (countries are strata of the design), so
  subsetting to one country keeps the design-based variance valid.
- The comparison column :data:`COMPARISON` is ``"group"``, ``"reference"`` or NA (outside both,
  e.g. returnees when displaced people are compared with hosts); rows outside both stay in the
  frame so that domain estimation uses the full design.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import config, figures, tables
from analysis.schema import load_dimensions, load_groups, load_indicators

#: Name of the column that marks a run's group ("group") and its reference ("reference").
COMPARISON = "comparison"
#: Columns of the processed frame that the data profile describes as disaggregation dimensions.
PROFILE_DIMENSIONS = ("sex", "age_group", "disability", "urban_rural", "displacement_status",
                      "income_group", "ethnicity_or_minority", "admin1_code")


class ChapterError(ValueError):
    """A chapter cannot run with the parameters given; the message says what to change."""


# --------------------------------------------------------------------------------------------
# One run: its parameters, its data and its catalogues


@dataclass
class ChapterRun:
    """Everything one chapter run needs: parameters, data per source, catalogues, output folders."""

    chapter: str
    group_id: str | None
    country: str | None
    sources: list[str]
    output_dir: Path
    processed_dir: Path | None
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    indicators: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)
    dimensions: dict = field(default_factory=dict)

    @property
    def group(self):
        """The :class:`analysis.schema.Group` of this run, or None (data profile, synthesis)."""
        return self.groups.get(self.group_id) if self.group_id else None

    @property
    def figures_dir(self) -> Path:
        return self.output_dir / "figures"

    @property
    def tables_dir(self) -> Path:
        return self.output_dir / "tables"

    @property
    def synthetic(self) -> bool:
        """True when any source of the run is synthetic (figures then say so)."""
        return any(bool((f.attrs.get("source") or {}).get("synthetic")) for f in self.frames.values())

    def source_title(self, source: str) -> str:
        meta = self.frames[source].attrs.get("source") or {}
        return str(meta.get("title") or source)

    @property
    def source_note(self) -> str:
        titles = "; ".join(self.source_title(s) for s in self.frames)
        return f"Source: {titles}." if titles else ""

    @property
    def indicator_labels(self) -> dict[str, str]:
        return {k: v.label for k, v in self.indicators.items()}

    @property
    def percent_indicators(self) -> list[str]:
        return [k for k, v in self.indicators.items() if v.unit == "percent"]

    @property
    def country_label(self) -> str:
        """The country's short English name (ISO 3166 via pycountry), or "all countries"."""
        return country_name(self.country)

    @property
    def group_label(self) -> str:
        return self.group.label if self.group else "All respondents"

    @property
    def reference_label(self) -> str:
        """Label of the reference population, from the dimension's category labels."""
        group = self.group
        if group is None:
            return ""
        dimension = self.dimensions.get(group.dimension)
        labels = dimension.category_labels if dimension else {}
        if group.reference == "rest":
            return "Everyone else"
        return ", ".join(labels.get(c, c) for c in group.reference)

    def headline_indicators(self, source: str) -> list[str]:
        """One percent indicator per theme (the first of each theme in catalogue order that the
        source measures): the indicators that get a heatmap or a map, so every run draws the same
        set; every indicator stays in the saved tables."""
        seen, out = set(), []
        for indicator in self.indicators_in(source):
            spec = self.indicators[indicator]
            if spec.unit == "percent" and spec.theme not in seen:
                seen.add(spec.theme)
                out.append(indicator)
        return out

    def indicators_in(self, source: str) -> list[str]:
        """Catalogue indicators that ``source`` measures in this country (a column with data)."""
        frame = self.frames[source]
        return [i for i in self.indicators if i in frame.columns and frame[i].notna().any()]


def country_name(code: str | None) -> str:
    """Short English name of an ISO3 code (pycountry), the code itself if unknown, "all countries" for None."""
    import pycountry

    if not code or code == "all":
        return "all countries"
    entry = pycountry.countries.get(alpha_3=str(code))
    return (getattr(entry, "common_name", None) or entry.name) if entry else str(code)


def start_run(chapter: str, group: str | None = None, country: str | None = None,
              source: str | None = None, sources=None, processed_dir=None, output_dir=".") -> ChapterRun:
    """Load the processed data and catalogues of one run and set the house style.

    ``source`` (one source) or ``sources`` (several) name processed tables
    (``data/processed/<source>.parquet``); rows are kept for ``country`` (ISO3) unless it is
    None or "all". Microdata sources only: aggregate or margin tables are read by the chapters
    that use them.

    Raises
    ------
    ChapterError
        Unknown group; no source given; a source without rows for the country.
    """
    from analysis.sources import load_processed

    names = [source] if source else list(sources or [])
    if not names:
        raise ChapterError(f"chapter {chapter}: no source given; set the parameter 'source' or 'sources'")
    groups = load_groups()
    if group and group not in groups:
        raise ChapterError(f"chapter {chapter}: unknown group '{group}'; groups are: {', '.join(groups)}")
    frames: dict[str, pd.DataFrame] = {}
    for name in names:
        frame = load_processed(name, processed_dir)
        if frame.attrs.get("design") is None:
            continue  # aggregates / margins: not respondent-level data
        if country and country != "all":
            attrs = dict(frame.attrs)
            present = sorted(frame["country"].dropna().astype(str).unique())
            frame = frame[frame["country"].astype("string") == country].reset_index(drop=True)
            frame.attrs.update(attrs)
            if frame.empty:
                raise ChapterError(f"source '{name}' has no rows for country '{country}'; "
                                   f"its countries are: {', '.join(present)}")
        frames[name] = frame
    if not frames:
        raise ChapterError(f"chapter {chapter}: none of {names} is respondent-level (microdata)")
    figures.use_house_style()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return ChapterRun(chapter=chapter, group_id=group, country=country, sources=list(frames),
                      output_dir=output_dir, processed_dir=Path(processed_dir) if processed_dir else None,
                      frames=frames, indicators=load_indicators(), groups=groups,
                      dimensions=load_dimensions())


# --------------------------------------------------------------------------------------------
# Save and show


def save_table(run: ChapterRun, table: pd.DataFrame, name: str) -> Path:
    """Write a result table to ``{output_dir}/tables/<name>.csv`` after the disclosure gate."""
    from analysis.disclosure import assert_publishable

    table = tables.conform(table)
    assert_publishable(table, name=f"{run.chapter} table {name}")
    return tables.write_csv(table, run.tables_dir / f"{name}.csv")


def show_figure(run: ChapterRun, saved: figures.SavedFigure):
    """The saved figure as an HTML ``<figure>`` with its alt text (survives HTML rendering)."""
    from IPython.display import HTML

    return HTML(figures.figure_html(saved, relative_to=run.output_dir))


def show_table(run: ChapterRun, table: pd.DataFrame, caption: str, cell_labels: dict | None = None):
    """A result table as a formatted, accessible HTML table (caption, header cells)."""
    from IPython.display import HTML

    labels = {"group": run.group_label, "reference": run.reference_label, "all": "All respondents"}
    labels.update(category_labels(run))
    labels.update(cell_labels or {})
    display = tables.format_results(tables.conform(table), indicator_labels=run.indicator_labels,
                                    cell_labels=labels, percent_indicators=run.percent_indicators)
    return HTML(tables.html_table(display, caption))


def show_frame(frame: pd.DataFrame, caption: str, row_headers: int = 1):
    """A small descriptive table (not estimates) as an accessible HTML table."""
    from IPython.display import HTML

    return HTML(tables.html_table(frame.astype("string").fillna(""), caption, row_headers=row_headers))


def category_labels(run: ChapterRun) -> dict[str, str]:
    """Every category label of every dimension (catalogue), for table cells."""
    out: dict[str, str] = {}
    for dimension in run.dimensions.values():
        out.update(dimension.category_labels)
    return out


def percent_view(table: pd.DataFrame, percent_indicators) -> pd.DataFrame:
    """Copy of a result table with percent indicators' estimates and CIs on 0–100 (for figures)."""
    out = table.copy()
    rows = out["indicator"].astype(str).isin(set(percent_indicators))
    for column in ("estimate", "se", "ci_low", "ci_high"):
        out.loc[rows, column] = out.loc[rows, column].astype(float) * 100.0
    return out


def run_title(run: ChapterRun, chapter_title: str, country_name: str | None = None) -> str:
    """"Chapter 2 · Group profile — Persons with disabilities — Kenya"."""
    parts = [chapter_title]
    if run.group_id:
        parts.append(run.group_label)
    if run.country and run.country != "all":
        parts.append(country_name or run.country)
    return " — ".join(parts)


# --------------------------------------------------------------------------------------------
# Chapter 1: data profile


def data_profile(run: ChapterRun) -> dict[str, pd.DataFrame]:
    """Coverage, availability of dimensions and indicators, and missingness of each source.

    Returns frames (descriptive, not estimates; counts of respondents per source and country only,
    never per small cell): ``coverage`` (respondents, areas, sample type, sum of weights),
    ``availability`` (every catalogue dimension and indicator: present or not, answered by how many),
    ``missingness`` (share missing per column, as a result-schema-like table for the figure).
    """
    coverage, availability, missing = [], [], []
    for source, frame in run.frames.items():
        design = frame.attrs.get("design") or {}
        weight = design.get("weight")
        coverage.append({
            "Source": run.source_title(source),
            "Country": run.country,
            "Respondents": f"{len(frame):,}",
            "Areas (admin1)": int(frame["admin1_code"].nunique()) if "admin1_code" in frame else 0,
            "Sample type": str(design.get("sample_type") or ""),
            "Weighted total": f"{frame[weight].sum():,.0f}" if weight and weight in frame else "",
            "Synthetic": "yes" if (frame.attrs.get("source") or {}).get("synthetic") else "no",
        })
        for kind, ids, labels in (
            ("dimension", PROFILE_DIMENSIONS, {d: run.dimensions[d].label for d in run.dimensions}),
            ("indicator", list(run.indicators), run.indicator_labels),
        ):
            for column in ids:
                answered = int(frame[column].notna().sum()) if column in frame else 0
                availability.append({"Source": source, "Kind": kind, "Column": labels.get(column, column),
                                     "Available": "yes" if answered else "no",
                                     "Answered": f"{answered:,}",
                                     "Missing": f"{100 * (1 - answered / len(frame)):.1f}%" if len(frame) else ""})
                if answered:
                    missing.append({"source": source, "country": run.country, "indicator": column,
                                    "breakdown": "missing", "cell": "all",
                                    "estimate": 100.0 * (1 - answered / len(frame)),
                                    "n_unweighted": len(frame), "flag": "ok",
                                    "method": "share of rows missing (unweighted)", "label": labels.get(column, column)})
    return {"coverage": pd.DataFrame(coverage), "availability": pd.DataFrame(availability),
            "missingness": pd.DataFrame(missing)}


def row_accounting(run: ChapterRun) -> pd.DataFrame:
    """Rows in, rows out and every exclusion reason of each source (``<source>.log.json``)."""
    import json

    folder = run.processed_dir or config.PROCESSED_DIR
    rows = []
    for source in run.sources:
        path = Path(folder) / f"{source}.log.json"
        if not path.exists():
            rows.append({"Source": source, "Step": "row accounting", "Rows": "",
                         "Detail": f"{path.name} not found: run `python -m analysis ingest`"})
            continue
        log = json.loads(path.read_text())
        for key, label in (("rows_read", "rows read"), ("rows_kept", "rows kept")):
            if key in log:
                rows.append({"Source": source, "Step": label, "Rows": f"{int(log[key]):,}", "Detail": ""})
        excluded = log.get("rows_excluded") or {}
        if isinstance(excluded, dict):
            for reason, count in excluded.items():
                rows.append({"Source": source, "Step": "excluded", "Rows": f"{int(count):,}", "Detail": str(reason)})
        if not excluded:
            rows.append({"Source": source, "Step": "excluded", "Rows": "0", "Detail": "no row excluded"})
    return pd.DataFrame(rows, columns=["Source", "Step", "Rows", "Detail"])


def composition(run: ChapterRun, source: str) -> pd.DataFrame:
    """Weighted share of respondents in each category of each profile dimension, with CIs.

    Design-based proportions (:func:`analysis.survey.estimate_by`, ``statistic="proportion"``):
    each category's 0/1 membership is an indicator whose weighted mean is the share; respondents
    missing the dimension are excluded from its denominator. Suppressed per disclosure rules.
    """
    from analysis.disclosure import apply_suppression
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
        # Disclosure counts the people IN the category (the numerator), not the denominator.
        estimates["n_unweighted"] = [int((work[d] == c).sum()) for d, c in zip(estimates["breakdown"], estimates["cell"])]
        parts.append(estimates)
    table = apply_suppression(tables.stack(parts), keys=["source", "country", "indicator", "breakdown"])
    return _protect_complements(table)


def _protect_complements(table: pd.DataFrame) -> pd.DataFrame:
    """Shares of one dimension sum to 1: a single suppressed category could be recovered as
    1 − the others, so the next smallest category of that dimension is suppressed too."""
    out = table.copy()
    numbers = ["estimate", "se", "ci_low", "ci_high", "n_unweighted", "n_weighted"]
    for _, part in out.groupby(["source", "breakdown"], sort=False):
        suppressed = part["flag"] == "suppressed"
        if suppressed.sum() == 1 and len(part) > 1:
            smallest = part.loc[~suppressed, "n_unweighted"].astype(float).idxmin()
            out.loc[smallest, numbers] = np.nan
            out.loc[smallest, "flag"] = "suppressed"
    return out


# --------------------------------------------------------------------------------------------
# Chapter 2: group profile


def with_comparison(run: ChapterRun, source: str) -> pd.DataFrame:
    """The source's frame with :data:`COMPARISON` = "group" | "reference" | NA (design kept)."""
    frame = run.frames[source]
    if run.group is None:
        raise ChapterError(f"chapter {run.chapter}: this chapter needs a group; set the parameter 'group'")
    out = frame.assign(**{COMPARISON: run.group.assign(frame)})
    out.attrs.update(frame.attrs)
    return out


def group_estimates(run: ChapterRun) -> pd.DataFrame:
    """Every indicator for the group and its reference, per source, suppressed (result schema).

    Design-based domain means (Taylor linearisation or the source's replicate weights, as the
    design says) with 95% CIs from :func:`analysis.survey.estimate_by`; the breakdown is
    :data:`COMPARISON` with cells "group" and "reference".
    """
    from analysis.disclosure import apply_suppression
    from analysis.survey import design_for, estimate_by

    parts = []
    for source in run.sources:
        indicators = run.indicators_in(source)
        if not indicators:
            continue
        frame = with_comparison(run, source)
        estimates = estimate_by(frame, design_for(frame), indicators, by=[COMPARISON], margins=False,
                                statistic="mean", source=source, country=run.country, group=run.group_id)
        parts.append(estimates[estimates["cell"].isin(["group", "reference"])])
    return apply_suppression(tables.stack(parts))


def group_gaps(run: ChapterRun, estimates: pd.DataFrame) -> pd.DataFrame:
    """Difference (group − reference) and ratio (group / reference) of every indicator, with CIs.

    From :func:`analysis.gaps.group_gaps` (delta method on the design-based covariance of the two
    domain means); a gap built on a suppressed estimate is suppressed
    (:func:`analysis.disclosure.suppress_derived`).
    """
    from analysis import gaps
    from analysis.disclosure import suppress_derived
    from analysis.survey import design_for

    parts = []
    for source in run.sources:
        indicators = run.indicators_in(source)
        if not indicators:
            continue
        frame = run.frames[source]
        parts.append(gaps.group_gaps(frame, design_for(frame), run.group, indicators,
                                     source=source, country=run.country))
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
    title = f"{run.group_label} vs {run.reference_label.lower()}, {run.country_label}"
    fig, alt = figures.plot_estimates(
        shown, item_column="indicator", series_column="cell", title=title,
        item_labels=run.indicator_labels, series_order=["group", "reference"],
        series_labels={"group": run.group_label, "reference": run.reference_label}, colours=colours,
        source_note=f"Source: {run.source_title(source)}.", synthetic=run.synthetic)
    return figures.save_figure(fig, run.figures_dir, f"group_profile_{source}", alt,
                               caption=f"{title}: weighted percent with 95% confidence intervals. {run.source_title(source)}.")


def figure_gaps(run: ChapterRun, gaps_table: pd.DataFrame, source: str) -> figures.SavedFigure:
    """Dot chart of the differences (points) of every percent indicator, with 95% CIs."""
    diff = gaps_table[(gaps_table["source"] == source) & gaps_table["indicator"].isin(run.percent_indicators)
                      & (gaps_table["method"].astype(str).str.contains("difference"))]
    shown = percent_view(diff, run.percent_indicators)
    title = f"Gap between {run.group_label.lower()} and {run.reference_label.lower()}, {run.country_label}"
    colour = figures.series_colours([run.group_id], list(run.groups))[run.group_id]
    fig, alt = figures.plot_gaps(shown, title=title, item_labels=run.indicator_labels, colour=colour,
                                 source_note=f"Source: {run.source_title(source)}.", synthetic=run.synthetic)
    return figures.save_figure(fig, run.figures_dir, f"group_gaps_{source}", alt,
                               caption=f"{title}: difference in percentage points with 95% confidence intervals.")


def profile_summary(run: ChapterRun, gaps_table: pd.DataFrame) -> str:
    """One or two sentences of narrative from the gaps: the largest clear gap, and how many are clear."""
    diff = gaps_table[gaps_table["method"].astype(str).str.contains("difference")
                      & (gaps_table["flag"] != "suppressed") & gaps_table["estimate"].notna()]
    diff = diff[diff["indicator"].isin(run.percent_indicators)]
    if diff.empty:
        return (f"No gap between {run.group_label.lower()} and {run.reference_label.lower()} could be "
                "published for this country (too few respondents or no shared indicators).")
    clear = diff[(diff["ci_low"] > 0) | (diff["ci_high"] < 0)]
    top = diff.loc[diff["estimate"].abs().idxmax()]
    label = run.indicator_labels.get(str(top["indicator"]), str(top["indicator"]))
    direction = "higher" if top["estimate"] > 0 else "lower"
    return (f"The largest gap is in {label.lower()}: {abs(top['estimate']) * 100:.0f} percentage points "
            f"{direction} for {run.group_label.lower()} than for the comparison group "
            f"({run.reference_label.lower()}) "
            f"(95% CI {top['ci_low'] * 100:+.0f} to {top['ci_high'] * 100:+.0f}). "
            f"{len(clear)} of {len(diff)} published gaps have a 95% interval that excludes zero.")


def show_figures(run: ChapterRun, saved) -> object:
    """Several saved figures as one HTML output (each a ``<figure>`` with alt text)."""
    from IPython.display import HTML

    return HTML("".join(figures.figure_html(s, relative_to=run.output_dir) for s in saved))


def show_text(text: str):
    """A sentence of narrative as Markdown output."""
    from IPython.display import Markdown

    return Markdown(text)


def group_profile_figures(run: ChapterRun, estimates: pd.DataFrame, gaps_table: pd.DataFrame) -> list:
    """The chapter 2 figures of every source: profile bars, then gaps."""
    saved = []
    for source in run.sources:
        if (estimates["source"] == source).any():
            saved.append(figure_group_profile(run, estimates, source))
        if len(gaps_table) and (gaps_table["source"] == source).any():
            saved.append(figure_gaps(run, gaps_table, source))
    return saved


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


# --------------------------------------------------------------------------------------------
# Chapter 1: figures of the data profile


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


# --------------------------------------------------------------------------------------------
# Chapter 3: intersections

#: Dimensions the group is crossed with in the intersections chapter (when the source has them).
INTERSECTION_DIMENSIONS = ("sex", "age_group", "disability", "urban_rural", "displacement_status", "income_group")


def intersection_estimates(run: ChapterRun) -> pd.DataFrame:
    """Every percent indicator for the group and its reference within each category of every other
    dimension (``comparison × <dimension>``), design-based, suppressed."""
    from analysis.disclosure import apply_suppression
    from analysis.survey import design_for, estimate_by

    parts = []
    for source in run.sources:
        indicators = [i for i in run.indicators_in(source) if i in run.percent_indicators]
        frame = with_comparison(run, source)
        design = design_for(frame)
        for dimension in INTERSECTION_DIMENSIONS:
            if dimension == run.group.dimension or dimension not in frame or frame[dimension].nunique() < 2:
                continue
            if not indicators:
                continue
            est = estimate_by(frame, design, indicators, by=[COMPARISON, dimension], margins=False,
                              source=source, country=run.country, group=run.group_id)
            parts.append(est)
    return apply_suppression(tables.stack(parts))


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
    work["row"] = [f"{run.dimensions[d].label if d in run.dimensions else d}: {labels.get(c, c)}"
                   for d, c in zip(work["dimension"], work["category"])]
    # rows in catalogue order of dimensions and categories, whatever the data's order
    rank = {}
    for d in INTERSECTION_DIMENSIONS:
        for c in (run.dimensions[d].categories if d in run.dimensions else []):
            rank[(d, c)] = len(rank)
    work["_rank"] = [rank.get((d, c), len(rank)) for d, c in zip(work["dimension"], work["category"])]
    work = work.sort_values("_rank", kind="stable")
    for (source, indicator), table in work.groupby(["source", "indicator"], sort=False):
        if indicator not in run.headline_indicators(source):
            continue
        label = run.indicator_labels.get(indicator, indicator)
        title = f"{label}: {run.group_label.lower()} vs {run.reference_label.lower()} within each population, {run.country_label}"
        fig, alt = figures.plot_heatmap(
            table, row_column="row", column_column="col", title=title, row_order=list(dict.fromkeys(table["row"])),
            column_labels={"group": run.group_label, "reference": run.reference_label},
            column_order=["group", "reference"], source_note=f"Source: {run.source_title(source)}.",
            synthetic=run.synthetic)
        saved.append(figures.save_figure(fig, run.figures_dir, f"intersections_{source}_{indicator}", alt,
                                         caption=f"{title}. Percent with 95% CI; hatched tiles are suppressed."))
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
    from analysis.survey import design_for

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
            design = design_for(work)
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
    rows["cell"] = [f"{run.group_label} × {run.groups[g].label}" for g in rows["other_group"]]
    rows["method"] = "difference: excess intersectional disparity (mu11 - mu10 - mu01 + mu00)"
    return rows


#: How many indicators (catalogue order) get a MAIHDA summary in each intersections run.
MAIHDA_INDICATORS = 2


def maihda_summary(run: ChapterRun) -> pd.DataFrame:
    """MAIHDA summary of every percent indicator over the group's dimension crossed with the others.

    Uses :func:`analysis.models.maihda` (multilevel model with intersectional strata as random
    effects): the variance partition coefficient of the null model and the proportional change in
    variance once the main effects are added. Returns an empty frame when the models module is not
    installed in this version of the suite.
    """
    try:
        from analysis import models
    except ImportError:
        return pd.DataFrame(columns=["Indicator", "Strata", "Respondents used", "VPC (null)", "PCV (main effects)"])
    rows = []
    for source in run.sources:
        frame = run.frames[source]
        dims = [d for d in (run.group.dimension, *INTERSECTION_DIMENSIONS)
                if d in frame and frame[d].nunique() >= 2][:3]
        dims = list(dict.fromkeys(dims))
        # the first MAIHDA_INDICATORS percent indicators of the catalogue: mixed models are slow
        for indicator in run.headline_indicators(source)[:MAIHDA_INDICATORS]:
            fitted = models.maihda(frame, indicator, dims)
            rows.append({"Indicator": run.indicator_labels[indicator], "Strata": " × ".join(dims),
                         "Respondents used": f"{fitted.n_used:,}",
                         "VPC (null)": f"{fitted.null.vpc:.3f}",
                         "PCV (main effects)": f"{fitted.pcv:.3f}"})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Chapter 4: geography


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
    from analysis.disclosure import apply_suppression
    from analysis.survey import design_for, estimate_by

    parts = []
    for source in run.sources:
        indicators = [i for i in run.indicators_in(source) if i in run.percent_indicators]
        frame = with_comparison(run, source)
        if not indicators or frame["admin1_code"].notna().sum() == 0:
            continue
        parts.append(estimate_by(frame, design_for(frame), indicators, by=["admin1_code", COMPARISON],
                                 margins=False, source=source, country=run.country, group=run.group_id))
    return apply_suppression(tables.stack(parts))


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
    from analysis.survey import cell_means_with_covariance, design_for

    if estimates.empty:
        return tables.empty_result()
    rows = []
    for source in run.sources:
        if not (estimates["source"] == source).any():
            continue
        frame = with_comparison(run, source)
        design = design_for(frame)
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


def admin1_maps(run: ChapterRun, estimates: pd.DataFrame, gaps_table: pd.DataFrame) -> list:
    """For every percent indicator: a choropleth of the group's estimate and one of its gap."""
    if estimates.empty:
        return []
    areas = load_boundaries("admin1", run.country)
    parts = estimates["cell"].astype(str).str.split(tables.CELL_SEPARATOR, n=1, expand=True)
    group_rows = percent_view(estimates, run.percent_indicators).assign(admin1_code=parts[0], role=parts[1])
    group_rows = group_rows[group_rows["role"] == "group"]
    saved = []
    for (source, indicator), table in group_rows.groupby(["source", "indicator"], sort=False):
        if indicator not in run.headline_indicators(source):
            continue
        label = run.indicator_labels.get(indicator, indicator)
        title = f"{label}, {run.group_label.lower()}, by area, {run.country_label}"
        fig, alt = figures.plot_choropleth(areas, table, area_key="iso_3166_2", value_key="admin1_code", title=title,
                                           source_note=f"Source: {run.source_title(source)}.", synthetic=run.synthetic)
        saved.append(figures.save_figure(fig, run.figures_dir, f"map_{source}_{indicator}", alt,
                                         caption=f"{title} (percent). Hatched areas are suppressed. Made with Natural Earth."))
        gap = gaps_table[(gaps_table["source"] == source) & (gaps_table["indicator"] == indicator)]
        if len(gap):
            gap = percent_view(gap, run.percent_indicators).assign(admin1_code=gap["cell"].astype(str).to_numpy())
            title = f"{label}: gap between {run.group_label.lower()} and {run.reference_label.lower()}, by area, {run.country_label}"
            fig, alt = figures.plot_choropleth(areas, gap, area_key="iso_3166_2", value_key="admin1_code",
                                               title=title, diverging=True, legend_label="Percentage points",
                                               source_note=f"Source: {run.source_title(source)}.", synthetic=run.synthetic)
            saved.append(figures.save_figure(fig, run.figures_dir, f"map_gap_{source}_{indicator}", alt,
                                             caption=f"{title}. Hatched areas are suppressed. Made with Natural Earth."))
    return saved


def country_estimates(run: ChapterRun) -> pd.DataFrame:
    """Group and reference estimates of every percent indicator in every country of every source."""
    from analysis.disclosure import apply_suppression
    from analysis.survey import design_for, estimate_by

    parts = []
    for source in run.sources:
        frame = with_comparison(run, source)
        indicators = [i for i in run.indicators_in(source) if i in run.percent_indicators]
        for country, part in frame.groupby("country", sort=True):
            part = part.reset_index(drop=True)
            part.attrs.update(frame.attrs)  # each country sampled independently (see module notes)
            est = estimate_by(part, design_for(part), indicators, by=[COMPARISON], margins=False,
                              source=source, country=str(country), group=run.group_id)
            parts.append(est)
    return apply_suppression(tables.stack(parts))


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
        title = f"{label}, {run.group_label.lower()}, by country"
        fig, alt = figures.plot_choropleth(world, table, area_key="iso_a3", value_key="country", title=title,
                                           source_note=run.source_note, synthetic=run.synthetic)
        saved.append(figures.save_figure(fig, run.figures_dir, f"world_{indicator}", alt,
                                         caption=f"{title} (percent). Made with Natural Earth."))
    return saved


# --------------------------------------------------------------------------------------------
# Chapter 5: official statistics and CSO data


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
    adults = adults[~adults["age_group"].isin(["18-29 years", "30-39 years", "40-49 years", "50-64 years"])]
    return pd.DataFrame({
        "Sex": adults["sex"].map({"female": "Women", "male": "Men"}),
        "Age group": adults["age_group"],
        "COVID-19 deaths": adults["covid_deaths"].map(lambda v: "" if pd.isna(v) else f"{int(v):,}"),
        "All deaths": adults["total_deaths"].map(lambda v: "" if pd.isna(v) else f"{int(v):,}"),
        "COVID-19 share of deaths": (adults["covid_deaths"] / adults["total_deaths"]).map(
            lambda v: "" if pd.isna(v) else f"{100 * v:.1f}%"),
    })


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
    words = {(True, True): "official and CSO", (False, True): "CSO only", (True, False): "official only",
             (False, False): "neither"}
    rows = []
    for indicator in run.indicators:
        row = {"Indicator": run.indicator_labels[indicator]}
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
        row = {"Indicator": "COVID-19 deaths (official statistics)"}
        for group in run.groups.values():
            row[group.label] = "official only" if group.dimension in set(official_dimensions) else "neither"
        rows.append(row)
    return pd.DataFrame(rows)


def official_comparison(run: ChapterRun, official: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Official and CSO estimates side by side where both exist (whole population, by sex, by age).

    CSO estimates are design-based (:func:`analysis.survey.estimate_by`) over the same breakdown
    as the official row; both are kept in the result schema with ``method`` saying which is which.
    """
    from analysis.disclosure import apply_suppression
    from analysis.survey import design_for, estimate_by

    parts = []
    for table in official.values():
        table = tables.conform(table)
        for source, frame in run.frames.items():
            for breakdown in sorted(set(table["breakdown"].astype(str))):
                dims = [] if breakdown == "all" else tables.split_cell(breakdown)
                if any(d not in frame for d in dims):
                    continue
                wanted = sorted(set(table.loc[table["breakdown"] == breakdown, "indicator"]) & set(run.indicators_in(source)))
                if not wanted:
                    continue
                cso = estimate_by(frame, design_for(frame), wanted, by=dims, margins=False,
                                  source=source, country=run.country)
                if not dims:
                    cso = cso.assign(breakdown="all", cell="all")
                keys = set(zip(cso["indicator"].astype(str), cso["cell"].astype(str)))
                both = np.array([(i, c) in keys for i, c in zip(table["indicator"].astype(str), table["cell"].astype(str))],
                                dtype=bool)
                off = table[(table["breakdown"] == breakdown).to_numpy(dtype=bool) & both]
                parts += [off.assign(method="official: " + off["method"].fillna("published estimate").astype(str)), cso]
    if not parts:
        return tables.empty_result()
    return apply_suppression(tables.stack(parts), secondary=False)


def comparison_figure(run: ChapterRun, comparison: pd.DataFrame) -> list:
    """Official vs CSO estimate for every indicator and cell where both exist."""
    if comparison.empty:
        return []
    labels = category_labels(run)
    work = percent_view(comparison, run.percent_indicators)
    work = work.assign(
        item=[f"{run.indicator_labels.get(i, i)} — {labels.get(c, 'all adults' if c == 'all' else c)}"
              for i, c in zip(work["indicator"].astype(str), work["cell"].astype(str))],
        series=[s if not str(m).startswith("official") else "official" for s, m in zip(work["source"].astype(str), work["method"].astype(str))])
    series = ["official"] + [s for s in run.sources if s in set(work["series"])]
    colours = figures.series_colours(series, catalogue_order=series)
    fig, alt = figures.plot_estimates(
        work, item_column="item", series_column="series", title=f"Official statistics and CSO data, {run.country_label}",
        series_labels={"official": "Official statistics", **{s: run.source_title(s) for s in run.sources}},
        series_order=series, colours=colours, source_note=run.source_note, synthetic=run.synthetic)
    return [figures.save_figure(fig, run.figures_dir, "official_vs_cso", alt,
                                caption=f"Official and CSO estimates of the same indicators, {run.country_label}, with 95% CIs.")]


def population_margins(processed_dir=None, country: str | None = None) -> pd.DataFrame | None:
    """Official population counts (source cards of kind ``margins``) for ``country``, or None."""
    from analysis.sources import load_processed

    folder = Path(processed_dir) if processed_dir else config.PROCESSED_DIR
    parts = []
    for path in sorted(folder.glob("*.parquet")):
        frame = load_processed(path.stem, folder)
        if (frame.attrs.get("source") or {}).get("kind") == "margins":
            parts.append(frame[frame["country"].astype("string") == country] if country else frame)
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else None


#: Columns a CSO sample is weighted by when official margins have them (area, sex, age).
WEIGHTING_COLUMNS = ("admin1_code", "sex", "age_group")


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
    from analysis.disclosure import apply_suppression
    from analysis.survey import design_for, estimate_by

    margins = population_margins(run.processed_dir, run.country)
    parts, diagnostics = [], []
    for source, frame in run.frames.items():
        indicators = [i for i in run.indicators_in(source) if i in run.percent_indicators]
        weight = (frame.attrs.get("design") or {}).get("weight")
        if not indicators or not weight:
            continue
        own = design_for(frame)
        by = [c for c in WEIGHTING_COLUMNS if margins is not None and c in margins and c in frame
              and frame[c].notna().all()]
        note = ""
        if by:
            # the target population is the areas, sexes and ages the sample covers (e.g. a youth
            # survey represents young people, not all adults)
            result = weighting.weight_to_official_margins(frame, margins, by, design=own, restrict_to=by)
            before_design, after_design = own, result.design
            method = f"weighted to official margins of {' × '.join(by)} ({result.method})"
            note = "; ".join(result.notes)
        else:
            unweighted = frame.assign(**{weight: 1.0})
            unweighted.attrs.update(frame.attrs)
            before_design, after_design = design_for(unweighted), own
            method = "the source's published weights"
        before = estimate_by(frame, before_design, indicators, by=[], source=source, country=run.country)
        after = estimate_by(frame, after_design, indicators, by=[], source=source, country=run.country)
        parts += [before.assign(cell="unweighted", method="before weighting: " + before["method"].astype(str)),
                  after.assign(cell="weighted", method=f"after weighting ({method}): " + after["method"].astype(str))]
        w_before, w_after = np.asarray(before_design.weights, float), np.asarray(after_design.weights, float)
        deff_before, deff_after = weighting.kish_design_effect(w_before), weighting.kish_design_effect(w_after)
        diagnostics.append({"Source": run.source_title(source), "Respondents": f"{len(frame):,}",
                            "Weighting": method,
                            "Kish deff before": f"{deff_before:.2f}", "Kish deff after": f"{deff_after:.2f}",
                            "Effective sample size after": f"{len(frame) / deff_after:,.0f}",
                            "Notes": note})
    table = apply_suppression(tables.stack(parts), secondary=False) if parts else tables.empty_result()
    return table, pd.DataFrame(diagnostics)


def weighting_figure(run: ChapterRun, effect: pd.DataFrame) -> list:
    """Before/after weighting bars for every percent indicator, per source."""
    saved = []
    for source, table in percent_view(effect, run.percent_indicators).groupby("source", sort=False):
        colours = {"unweighted": figures.REFERENCE_COLOUR, "weighted": figures.OKABE_ITO[0]}
        title = f"Effect of weighting, {run.source_title(source)}, {run.country_label}"
        fig, alt = figures.plot_estimates(
            table, item_column="indicator", series_column="cell", title=title, item_labels=run.indicator_labels,
            series_order=["unweighted", "weighted"],
            series_labels={"unweighted": "Before weighting", "weighted": "After weighting"}, colours=colours,
            source_note=f"Source: {run.source_title(source)}.", synthetic=run.synthetic)
        saved.append(figures.save_figure(fig, run.figures_dir, f"weighting_{source}", alt,
                                         caption=f"{title}: all respondents, before and after weighting, 95% CIs."))
    return saved


# --------------------------------------------------------------------------------------------
# Chapter 6: synthesis


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
    from analysis.disclosure import assert_publishable, load_thresholds

    assert_publishable(tables.conform(table), name="synthesis workbook")
    limits = load_thresholds()
    notes = [(f"Suppression: estimates from fewer than {limits.suppress_below} respondents are withheld "
              f"(flag 'suppressed', numbers blank); {limits.suppress_below}–{limits.caution_below - 1} "
              "respondents: flag 'caution'."),
             "Estimates of percent indicators are proportions (0–1); see method for the variance estimator.",
             "Sources: " + "; ".join(run.source_title(s) for s in run.sources)]
    return tables.write_excel(tables.conform(table), run.tables_dir / "synthesis.xlsx",
                              indicator_labels=run.indicator_labels, notes=notes)


def geography(run: ChapterRun) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Chapter 4 in one call: admin1 maps for one country, or a cross-country map when the run
    covers every country (``country`` None or "all"). Returns (estimates, gaps, figures)."""
    if run.country and run.country != "all":
        estimates = admin1_estimates(run)
        gaps_table = admin1_gaps(run, estimates)
        return estimates, gaps_table, admin1_maps(run, estimates, gaps_table)
    estimates = country_estimates(run)
    return estimates, tables.empty_result(), country_maps(run, estimates)
