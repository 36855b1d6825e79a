"""What every chapter shares: one run (:class:`ChapterRun`), loading it, saving and showing.

A chapter is its notebook plus its module in this package (``data_profile``, ``group_profile``,
``intersections``, ``geography``, ``official_statistics``, ``synthesis``); each module orchestrates
the topic modules (survey, gaps, models, weighting, disclosure) for one run and prepares what is
shown. This module holds the run object, the loaders of inputs several chapters read, and the
save/show helpers through which every table and figure leaves a run.

Conventions
-----------
- Estimates stay in the result schema (:mod:`analysis.tables`), proportions on 0–1, exactly as
  the survey module returns them; :func:`percent_view` rescales percent indicators to 0–100 for
  figures only.
- Every table is passed through :func:`protect` (:func:`analysis.disclosure.protect`: the
  suppression planned for its source × country over everything the report publishes, with the
  run's own thresholds; derived measures through :func:`analysis.disclosure.suppress_derived`)
  before it is saved or shown, and through the gate :func:`analysis.disclosure.assert_publishable`
  when it is saved.
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
    from analysis.disclosure import pool_free_categories
    from analysis.sources import load_processed

    names = [source] if source else list(sources or [])
    if not names:
        raise ChapterError(f"chapter {chapter}: no source given; set the parameter 'source' or 'sources'")
    groups = load_groups()
    dimensions = load_dimensions()
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
        # Only catalogue categories become labels: free-coded ones are pooled before any estimate.
        frames[name] = pool_free_categories(frame, dimensions, PROFILE_DIMENSIONS)
    if not frames:
        raise ChapterError(f"chapter {chapter}: none of {names} is respondent-level (microdata)")
    figures.use_house_style()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return ChapterRun(chapter=chapter, group_id=group, country=country, sources=list(frames),
                      output_dir=output_dir, processed_dir=Path(processed_dir) if processed_dir else None,
                      frames=frames, indicators=load_indicators(), groups=groups,
                      dimensions=dimensions)


# --------------------------------------------------------------------------------------------
# Save and show


def protect(run: ChapterRun, table: pd.DataFrame, name: str = "table") -> pd.DataFrame:
    """:func:`analysis.disclosure.protect` with the run's data and catalogues: the cells withheld
    for this source × country in every table, chapter and run of the report."""
    from analysis.disclosure import protect as protect_table

    return protect_table(table, frames=run.frames, indicators=run.indicators, groups=run.groups,
                         name=f"{run.chapter} {name}")


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



def show_figures(run: ChapterRun, saved) -> object:
    """Several saved figures as one HTML output (each a ``<figure>`` with alt text)."""
    from IPython.display import HTML

    return HTML("".join(figures.figure_html(s, relative_to=run.output_dir) for s in saved))


def show_text(text: str):
    """A sentence of narrative as Markdown output."""
    from IPython.display import Markdown

    return Markdown(text)



# --------------------------------------------------------------------------------------------
# Inputs shared by chapters


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


