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

    def indicators_in(self, source: str) -> list[str]:
        """Catalogue indicators that ``source`` measures in this country (a column with data)."""
        frame = self.frames[source]
        return [i for i in self.indicators if i in frame.columns and frame[i].notna().any()]


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
    design = design_for(frame)
    parts = []
    for dimension in PROFILE_DIMENSIONS:
        if dimension == "admin1_code" or dimension not in frame or frame[dimension].notna().sum() == 0:
            continue
        values = frame[dimension].astype("string")
        categories = [c for c in (run.dimensions[dimension].categories if dimension in run.dimensions else [])
                      if (values == c).any()] or sorted(values.dropna().unique())
        members = pd.DataFrame({f"{dimension}={c}": np.where(values.isna(), np.nan, (values == c).astype(float))
                                for c in categories}, index=frame.index)
        work = pd.concat([frame, members], axis=1)
        work.attrs.update(frame.attrs)
        estimates = estimate_by(work, design, list(members.columns), by=[], margins=True, statistic="mean",
                                source=source, country=run.country, group=None)
        estimates = estimates.assign(breakdown=dimension,
                                     cell=estimates["indicator"].str.split("=", n=1).str[1],
                                     indicator="composition")
        parts.append(estimates)
    table = tables.stack(parts)
    return apply_suppression(table, keys=["source", "country", "indicator", "breakdown"])


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
    title = f"{run.group_label} vs {run.reference_label.lower()}, {run.country}"
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
    title = f"Gap between {run.group_label.lower()} and {run.reference_label.lower()}, {run.country}"
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
            f"{direction} for {run.group_label.lower()} than for {run.reference_label.lower()} "
            f"(95% CI {top['ci_low'] * 100:+.0f} to {top['ci_high'] * 100:+.0f}). "
            f"{len(clear)} of {len(diff)} published gaps have a 95% interval that excludes zero.")


def show_figures(run: ChapterRun, saved) -> "object":
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
