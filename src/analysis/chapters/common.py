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

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import config, figures, hashing, tables
from analysis.schema import (
    DimensionUses,
    load_dimension_uses,
    load_dimensions,
    load_groups,
    load_indicators,
)
from analysis.survey import Survey
from analysis.text import lower_first, text

#: Name of the column that marks a run's group ("group") and its reference ("reference").
COMPARISON = "comparison"


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
    #: Which dimensions each chapter uses (``uses:`` of ``params/groups.yml``).
    uses: DimensionUses = field(default_factory=load_dimension_uses)
    #: Each source as one :class:`analysis.survey.Survey` (frame, design built once, metadata);
    #: ``frames`` holds their frames (a frame given without its Survey gets one from its attrs).
    surveys: dict[str, Survey] = field(default_factory=dict)

    def __post_init__(self):
        # What the run reads of the catalogue is recorded (catalogue_reads.json in its output
        # folder), so that its next run key covers exactly the entries its pages can show.
        for name in ("indicators", "groups", "dimensions"):
            value = getattr(self, name)
            if not isinstance(value, hashing.TrackedCatalogue):
                setattr(self, name, hashing.TrackedCatalogue(value, on_read=self._record_catalogue_reads))

    def _record_catalogue_reads(self) -> None:
        reads = {name: getattr(self, name).reads() for name in ("indicators", "groups", "dimensions")
                 if isinstance(getattr(self, name, None), hashing.TrackedCatalogue)}
        if self.output_dir.is_dir():
            (self.output_dir / hashing.CATALOGUE_READS_FILE).write_text(json.dumps(reads, sort_keys=True))

    def survey(self, source: str) -> Survey:
        """The :class:`analysis.survey.Survey` of ``source`` (its frame is ``frames[source]``)."""
        survey = self.surveys.get(source)
        frame = self.frames[source]
        if survey is None or survey.frame is not frame:
            survey = self.surveys[source] = Survey.from_frame(frame)
        return survey

    def design(self, source: str):
        """The survey design of ``source`` in this run, built once for every estimate of the run
        (the frame's rows: a column added, e.g. :func:`with_comparison`, keeps it valid)."""
        return self.survey(source).design

    @property
    def profile_dimensions(self) -> tuple[str, ...]:
        """Dimensions (and area) the data profile describes (``uses.profile`` of the catalogue)."""
        return self.uses.profile

    @property
    def intersection_dimensions(self) -> tuple[str, ...]:
        """Dimensions a group is crossed with in chapter 3 (``uses.intersections``)."""
        return self.uses.intersections

    @property
    def weighting_columns(self) -> tuple[str, ...]:
        """Columns a CSO sample is compared with official margins by (``uses.weighting``)."""
        return self.uses.weighting

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
        return any(bool(self.survey(s).metadata.get("synthetic")) for s in self.frames)

    def source_title(self, source: str) -> str:
        """The source card's title in the page language (the partners' own words where no
        translation exists, marked as such: :func:`analysis.i18n.source_card_text`)."""
        from analysis.i18n import source_card_text

        title = self.survey(source).metadata.get("title")
        return source_card_text(source, "title", str(title)) if title else source

    def source_period(self, source: str) -> str:
        """"collected 2021-03-01 to 2021-05-31" from the source's collection period, or ""."""
        period = self.survey(source).metadata.get("collection_period") or {}
        if not period.get("start") or not period.get("end"):
            return ""
        return text("common.period", start=period["start"], end=period["end"])

    def source_with_period(self, source: str) -> str:
        period = self.source_period(source)
        title = self.source_title(source)
        return text("common.source_with_period", source=title, period=period) if period else title

    @property
    def source_note(self) -> str:
        titles = text("common.source_separator").join(self.source_with_period(s) for s in self.frames)
        return text("common.source_note", sources=titles) if titles else ""

    def source_note_of(self, source: str) -> str:
        """"Source: <title of one source> (collected …)." (figures of one source)."""
        return text("common.source_note", sources=self.source_with_period(source))

    def population_note(self, source: str) -> str:
        """"<source> surveyed only people aged 55 and over: …" when the source covers only part
        of the report's age bands (``age_group`` categories of the catalogue), else "".

        Read from the data (the ages and age bands that have respondents), so that a map or table
        of women drawn from an older-people survey says whom it describes.
        """
        frame = self.frames[source]
        if "age_group" not in frame or "age_group" not in self.dimensions:
            return ""
        bands = list(self.dimensions["age_group"].categories)
        seen = set(frame["age_group"].dropna().astype(str))
        if not seen or not seen < set(bands):
            return ""
        values = {"source": self.source_title(source), "group_lc": lower_first(self.group_label)}
        ages = pd.to_numeric(frame["age"], errors="coerce").dropna() if "age" in frame else pd.Series(dtype=float)
        labels = self.dimensions["age_group"].category_labels or {}
        if ages.empty:
            kept = [labels.get(b, b) for b in bands if b in seen]
            return text("common.population.bands", bands=text("common.list_separator").join(kept), **values)
        if bands[-1] in seen:  # the open-ended top band: "and over"
            return text("common.population.aged_from", low=int(ages.min()), **values)
        return text("common.population.aged_between", low=int(ages.min()), high=int(ages.max()), **values)

    def source_note_with_population(self, source: str) -> str:
        """:meth:`source_note_of` followed by :meth:`population_note` (when it has one)."""
        return " ".join(p for p in (self.source_note_of(source), self.population_note(source)) if p)

    def measurement(self, source: str, dimension: str) -> str:
        """How ``dimension`` (e.g. disability) was measured in ``source``, in words.

        From the processed metadata when the source says (``measurement: {dimension: text}``, or
        the number of Washington Group domains asked, ``wg_domains``), else from the source card's
        derivation (``derive: disability: wg_ss``: the Washington Group Short Set, with the domains
        that have answers in the data counted; ``single_question``: one yes/no question), else
        "as reported" in the source's own question.
        """
        frame = self.frames[source]
        answered = [c for c in WG_DOMAINS if c in frame and frame[c].notna().any()]
        return describe_measurement(source, dimension, self.survey(source).metadata, answered)

    def measurement_note(self) -> str:
        """"How the group was measured: disability: Washington Group Short Set, 4 of 6 domains
        (Source A); …" for the run's group, one clause per source (empty without a group)."""
        group = self.group
        if group is None:
            return ""
        dimension = self.dimensions.get(group.dimension)
        label = dimension.label if dimension else group.dimension
        clauses = [text("common.measurement.clause", dimension=label, dimension_lc=lower_first(label),
                        how=self.measurement(source, group.dimension), source=self.source_title(source))
                   for source in self.frames if group.dimension in self.frames[source]]
        if not clauses:
            return ""
        return self.text("common.measurement.note",
                    clauses=text("common.source_separator").join(clauses))

    def figure_title(self, key: str, source: str, **values) -> str:
        """:meth:`text` of a figure's title; when the run has several sources, the source's short
        title is added, so that two figures of the same indicator never share a title."""
        title = self.text(key, **values)
        if len(self.frames) > 1:
            title = text("common.title_with_source", title=title, source=self.source_title(source))
        return title

    def text(self, key: str, **values) -> str:
        """:func:`analysis.text.text` with the run's own values filled in: ``country``,
        ``group``, ``reference``, ``group_lc``, ``reference_lc`` (explicit values win)."""
        common = {"country": self.country_label, "group": self.group_label,
                  "reference": self.reference_label, "group_lc": lower_first(self.group_label),
                  "reference_lc": lower_first(self.reference_label)}
        return text(key, **(common | values))

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
        return self.group.label if self.group else text("common.all_respondents")

    @property
    def reference_label(self) -> str:
        """Label of the reference population, from the dimension's category labels."""
        return self.reference_label_of(self.group_id) if self.group_id else ""

    def reference_label_of(self, group_id: str) -> str:
        """Label of the reference population of any catalogue group (see :attr:`reference_label`)."""
        group = self.groups.get(group_id)
        if group is None:
            return ""
        if group.reference == "rest":
            return text("common.everyone_else")
        dimension = self.dimensions.get(group.dimension)
        labels = dimension.category_labels if dimension else {}
        return text("common.list_separator").join(labels.get(c, c) for c in group.reference)

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
        survey = self.survey(source)
        if survey.partitioned is not None:  # a partitioned source: counts recorded at its ingest
            counts = survey.partitioned.indicator_counts
            return [i for i in self.indicators if counts.get(i, 0) > 0]
        frame = survey.frame
        return [i for i in self.indicators if i in frame.columns and frame[i].notna().any()]


#: The six domains of the Washington Group Short Set (processed columns).
WG_DOMAINS = ("wg_seeing", "wg_hearing", "wg_walking", "wg_cognition", "wg_selfcare", "wg_communication")


def describe_measurement(source: str, dimension: str, meta: dict, answered_domains) -> str:
    """How ``dimension`` was measured in ``source`` (see :meth:`ChapterRun.measurement`);
    ``meta`` is the source's processed metadata, ``answered_domains`` the WG domain columns with
    answers in its data."""
    given = (meta.get("measurement") or {}).get(dimension)
    if given:
        return str(given)
    method = _derivation(source, dimension)
    answered = list(answered_domains)
    if dimension == "disability" and method is None and answered:
        method = "wg_ss"  # no card at hand: the processed frame has the WG domains
    if dimension == "disability" and (method == "wg_ss" or meta.get("wg_domains")):
        domains = meta.get("wg_domains") or meta.get("wg_ss_domains") or len(answered)
        return text("common.measurement.wg_ss", domains=int(domains), total=len(WG_DOMAINS))
    if method:
        from analysis.text import has_text

        if has_text(f"common.measurement.{method}"):
            return text(f"common.measurement.{method}")
    return text("common.measurement.reported")


def _derivation(source: str, column: str) -> str | None:
    """The source card's derivation method of ``column`` (``derive:``), or None."""
    from analysis.sources.card import card_paths, load_card

    path = card_paths().get(source)
    if path is None:
        return None
    method, _ = load_card(path).derive_method(column)
    return method


def country_name(code: str | None) -> str:
    """Short name of an ISO3 code in the report language — English from ISO 3166 (pycountry);
    another language from CLDR via Babel with its file's overrides (:func:`analysis.i18n.country_name`)
    — the code itself if unknown, "all countries" (``common.all_countries`` in the text catalogue)
    for None."""
    import pycountry

    from analysis.text import DEFAULT_LANGUAGE, language

    if not code or code == "all":
        return text("common.all_countries")
    if language() != DEFAULT_LANGUAGE:
        from analysis import i18n

        try:
            return i18n.country_name(str(code), language())
        except i18n.TranslationError:
            return str(code)
    entry = pycountry.countries.get(alpha_3=str(code))
    return (getattr(entry, "common_name", None) or entry.name) if entry else str(code)


def run_folder(chapter: str, group: str | None = None, country: str | None = None,
               source: str | None = None) -> Path:
    """The run's folder under ``outputs/``, as the pipeline lays it out (``pipeline.matrix``):
    ``<chapter>/<group>/<country>`` for a group, ``<chapter>/<source>/<country>`` for one source,
    ``<chapter>/all/<country>`` for a country, ``<chapter>/<group>/all`` for a group across
    countries, ``<chapter>`` for a chapter run once."""
    country = country if country and country != "all" else None
    if group:
        return Path(chapter, group, country or "all")
    if country:
        return Path(chapter, source or "all", country)
    return Path(chapter)


def resolve_output_dir(chapter: str, output_dir=None, *, group: str | None = None,
                       country: str | None = None, source: str | None = None,
                       outputs_root=None) -> Path:
    """Where a run writes: ``output_dir`` when given, else derived from the parameters.

    Derived: ``<outputs_root>/<run folder>`` (:func:`run_folder`; ``outputs_root`` defaults to
    the project's ``outputs/``), an absolute path, so the same command writes to the same place
    from the repository root or from ``notebooks/`` (papermill runs the kernel in the current
    directory).

    Raises
    ------
    ChapterError
        ``output_dir`` is inside the outputs folder but is another run's folder (e.g. the Women /
        Senegal parameters with the Persons with disabilities / Kenya folder): its tables would
        be overwritten with the wrong run's results.
    """
    root = Path(outputs_root) if outputs_root else config.OUTPUTS_DIR
    expected = run_folder(chapter, group=group, country=country, source=source)
    if output_dir is None or str(output_dir) == "":
        return (root / expected).resolve()
    chosen = Path(output_dir).resolve()
    try:
        inside = chosen.relative_to(root.resolve())
    except ValueError:
        return chosen  # outside the report's outputs: the user's own folder
    if inside.parts and inside.parts[0] == chapter and inside != expected:
        raise ChapterError(
            f"output_dir {output_dir} is the folder of another run ({inside}); the parameters "
            f"(chapter={chapter}, group={group}, country={country}, source={source}) write to "
            f"{root / expected}: leave output_dir out (it follows the parameters) or give a folder "
            "outside outputs/")
    return chosen


def start_run(chapter: str, group: str | None = None, country: str | None = None,
              source: str | None = None, sources=None, processed_dir=None, output_dir=None,
              engine: str | None = None, scheduler: str | None = None) -> ChapterRun:
    """Load the processed data and catalogues of one run and set the house style.

    ``source`` (one source) or ``sources`` (several) name processed tables
    (``data/processed/<source>.parquet``); rows are kept for ``country`` (ISO3) unless it is
    None or "all". ``output_dir`` None: derived from the parameters (:func:`resolve_output_dir`).
    Microdata sources only: aggregate or margin tables are read by the chapters that use them.
    A source processed as a partitioned dataset is not loaded: its estimates run on ``engine``
    ("duckdb", default, or "dask" on ``scheduler``: an address, "local", or None for the cluster
    the run is on), see :mod:`analysis.chapters.at_scale`.

    Raises
    ------
    ChapterError
        Unknown group; no source given; a source without rows for the country; an
        ``output_dir`` that is another run's folder.
    """
    from analysis.disclosure import pool_free_categories
    from analysis.sources import SourceNotInScope, load_survey

    names = [source] if source else list(sources or [])
    if not names:
        raise ChapterError(f"chapter {chapter}: no source given; set the parameter 'source' or 'sources'")
    groups = load_groups()
    dimensions = load_dimensions()
    uses = load_dimension_uses()
    if group and group not in groups:
        raise ChapterError(f"chapter {chapter}: unknown group '{group}'; groups are: {', '.join(groups)}")
    surveys: dict[str, Survey] = {}
    for name in names:
        try:
            survey = load_survey(name, processed_dir, country, engine, scheduler)
        except SourceNotInScope as exc:
            raise ChapterError(str(exc)) from None
        if survey.partitioned is not None:
            surveys[name] = survey
            continue
        if not survey.respondent_level:
            continue  # aggregates / margins: not respondent-level data
        # Only catalogue categories become labels: free-coded ones are pooled before any estimate
        # (the same respondents, so the design is the survey's).
        pooled = pool_free_categories(survey.frame, dimensions, uses.profile)
        surveys[name] = survey.with_frame(pooled, same_rows=True) if pooled is not survey.frame else survey
    frames = {name: survey.frame for name, survey in surveys.items()}
    if not frames:
        raise ChapterError(f"chapter {chapter}: none of {names} is respondent-level (microdata)")
    figures.use_house_style()
    output_dir = resolve_output_dir(chapter, output_dir, group=group, country=country, source=source)
    output_dir.mkdir(parents=True, exist_ok=True)
    return ChapterRun(chapter=chapter, group_id=group, country=country, sources=list(frames),
                      output_dir=output_dir, processed_dir=Path(processed_dir) if processed_dir else None,
                      frames=frames, indicators=load_indicators(), groups=groups,
                      dimensions=dimensions, uses=uses, surveys=surveys)


# --------------------------------------------------------------------------------------------
# Estimates on the right scale

#: Marker in ``method`` of an estimate whose 95% interval has zero width or cannot be computed on
#: the logit scale (followed by the cause's id); such a row is flagged ``caution``.
DEGENERATE_MARK = tables.DEGENERATE_MARK


def estimate_indicators(run: ChapterRun, frame: pd.DataFrame, design, indicators, *, source=None,
                        country=None, group=None, **kwargs) -> pd.DataFrame:
    """:func:`analysis.survey.estimate_by` with the interval each indicator's scale needs.

    Percent indicators (0/1) get logit-scale intervals, back-transformed (as R's
    ``svyciprop(method = "logit")``), so no interval leaves [0, 1]; means and counts keep the
    t interval with design degrees of freedom. The estimates themselves are the same weighted
    (Hájek) means either way. ``source``, ``country`` and ``group`` are the rows' identity in the
    report, stamped once on the result (:func:`analysis.tables.label`), not carried by the estimator.
    """
    from analysis.survey import estimate_by

    percent = set(run.percent_indicators)
    indicators = list(indicators)
    parts = []
    for subset, ci in (([i for i in indicators if i in percent], "logit"),
                       ([i for i in indicators if i not in percent], "t")):
        if subset:
            parts.append(estimate_by(frame, design, subset, ci=ci, **kwargs))
    if not parts:
        return tables.empty_result()
    out = pd.concat(parts, ignore_index=True)
    # back in the order asked for (indicator by indicator), as one estimate_by call would give
    order = {name: i for i, name in enumerate(indicators)}
    rank = out["indicator"].astype(str).str.split("=", n=1).str[0].map(order)
    out = out.assign(_rank=rank).sort_values("_rank", kind="stable").drop(columns="_rank").reset_index(drop=True)
    return tables.label(out, source=source, country=country, group=group)


def flag_degenerate_intervals(table: pd.DataFrame, percent_indicators=()) -> pd.DataFrame:
    """Flag ``caution`` (never plain ``ok``) every published estimate whose interval says nothing.

    Two causes, each named in ``method`` after :data:`DEGENERATE_MARK` (the reader sees the
    cause's words, ``tables.degenerate.<cause>`` in the text catalogue):

    - ``all_same``: a proportion of exactly 0 or 1 (everyone in the cell gave the same answer):
      the logit interval is undefined and the design-based variance is zero;
    - ``no_variance``: a standard error of zero with a proportion strictly inside (0, 1): the
      design sees no sampling variance for the cell (its respondents come from strata whose PSUs
      were all taken, or from a single PSU), so the interval has zero width;
    - ``no_interval``: an estimate without interval (no design degrees of freedom).

    Suppressed rows are left as they are; applied after disclosure control.
    """
    if table.empty:
        return table
    out = table.copy()
    est = pd.to_numeric(out["estimate"], errors="coerce")
    se = pd.to_numeric(out["se"], errors="coerce")
    low = pd.to_numeric(out["ci_low"], errors="coerce")
    high = pd.to_numeric(out["ci_high"], errors="coerce")
    published = (out["flag"].astype(str) != "suppressed") & est.notna()
    base = out["indicator"].astype(str).str.split("=", n=1).str[0]
    proportion = base.isin(set(percent_indicators)) | out["method"].astype(str).str.contains("proportion")
    all_same = published & proportion & ((est <= 0) | (est >= 1))
    zero_width = published & ~all_same & ((se == 0) | (high - low == 0))
    no_interval = published & ~all_same & ~zero_width & (low.isna() | high.isna())
    for mask, cause in ((all_same, "all_same"), (zero_width, "no_variance"), (no_interval, "no_interval")):
        if mask.any():
            out.loc[mask, "flag"] = "caution"
            out.loc[mask, "method"] = out.loc[mask, "method"].astype(str) + f"; {DEGENERATE_MARK}: {cause}"
    return out


# --------------------------------------------------------------------------------------------
# Save and show


def protect(run: ChapterRun, table: pd.DataFrame, name: str = "table") -> pd.DataFrame:
    """What every chapter's estimates go through: :func:`analysis.disclosure.protect` with the
    run's data and catalogues (the cells withheld for this source × country in every table,
    chapter and run of the report), then :func:`flag_degenerate_intervals`."""
    from analysis.disclosure import apply_suppression
    from analysis.disclosure import protect as protect_table

    # A partitioned (census-scale) source is never in memory: its plan is computed from sums per
    # combination of categories over its partitions (disclosure_plan.partitioned_atoms). Rows of
    # several countries of one in a table (none today) fall back to within-table suppression.
    from analysis.disclosure_plan import partitioned_atoms

    sources = {s: run.survey(s).partitioned for s in run.frames}
    in_memory = {s: f for s, f in run.frames.items() if sources[s] is None}
    partitioned = set()
    for s, data in sources.items():
        if data is None or not len(table) or "source" not in table.columns:
            continue
        countries = set(table.loc[table["source"].astype(str) == s, "country"].astype(str))
        if len(countries) == 1:
            in_memory[s] = partitioned_atoms(data, countries.pop(), list(run.indicators))
        elif countries:
            partitioned.add(s)
    protected = protect_table(table, frames=in_memory, indicators=run.indicators, groups=run.groups,
                              name=f"{run.chapter} {name}")
    if partitioned and len(protected):
        rows = protected["source"].astype(str).isin(partitioned).to_numpy(dtype=bool)
        if rows.any():
            part = apply_suppression(protected[rows].reset_index(drop=True))
            part.index = protected.index[rows]
            protected = pd.concat([protected[~rows], part]).loc[protected.index]
    return flag_degenerate_intervals(protected, run.percent_indicators)


def protect_coded(run: ChapterRun, table: pd.DataFrame, frame: pd.DataFrame, source: str,
                  indicators, name: str = "table") -> pd.DataFrame:
    """:func:`protect` for shares of a coded source (Voices): planned over its own cells.

    ``frame`` is the survey of the coded source with one 0/1 column per indicator (NaN outside
    the denominator: respondents whose answers were not coded), ``attrs["design"]`` the
    survey's; the plan of ``source`` × country covers the respondents and those indicators as
    percent indicators (group, reference, their crossings), as for a survey's own indicators.
    """
    from types import SimpleNamespace

    from analysis.disclosure import apply_suppression
    from analysis.disclosure import protect as protect_table

    percent = {i: SimpleNamespace(unit="percent") for i in indicators}
    protected = protect_table(table, frames={source: frame}, indicators=percent,
                              groups=run.groups, name=f"{run.chapter} {name}")
    # The table stacks a group's share with its crossings: the gate also checks that no withheld
    # cell is its margin minus its siblings (as if nobody missed the crossed dimension), so the
    # within-table rule runs on top of the plan (it only withholds more).
    if len(protected):
        protected = apply_suppression(protected.reset_index(drop=True)).set_axis(protected.index)
    return flag_degenerate_intervals(protected, list(percent))


def save_table(run: ChapterRun, table: pd.DataFrame, name: str) -> Path:
    """Write a result table to ``{output_dir}/tables/<name>.csv`` after the disclosure gate."""
    from analysis.disclosure import assert_publishable

    table = tables.conform(table)
    assert_publishable(table, name=f"{run.chapter} table {name}")
    return tables.write_csv(table, run.tables_dir / f"{name}.csv")


def show_table(run: ChapterRun, table: pd.DataFrame, caption: str, cell_labels: dict | None = None,
               percent=()):
    """A result table as a formatted, accessible HTML table (caption, header cells).

    A table that mixes sources, or any table of a run with several sources, gets a source column
    (short titles); ``percent`` names extra
    indicators shown as percentages (e.g. ``"composition"``, shares of respondents)."""
    from IPython.display import HTML

    return HTML(tables.html_table(display_table(run, table, cell_labels, percent), caption))


def display_table(run: ChapterRun, table: pd.DataFrame, cell_labels: dict | None = None,
                  percent=()) -> pd.DataFrame:
    """The formatted strings :func:`show_table` shows (labels from the catalogue, a source column
    on a page of several sources), one row per row of ``table`` in its order."""
    labels = {"group": run.group_label, "reference": run.reference_label,
              "all": text("common.all_respondents")}
    labels.update(category_labels(run))
    labels.update(cell_labels or {})
    return tables.format_results(tables.conform(table), indicator_labels=run.indicator_labels,
                                 cell_labels=labels,
                                 percent_indicators=[*run.percent_indicators, *percent],
                                 source_labels={s: run.source_title(s) for s in run.frames},
                                 # a page of several sources names the source in every table
                                 show_source=len(run.frames) > 1 or None)


def show_frame(frame: pd.DataFrame, caption: str, row_headers: int = 1):
    """A small descriptive table (not estimates) as an accessible HTML table."""
    from IPython.display import HTML

    return HTML(tables.html_table(frame.astype("string").fillna(""), caption, row_headers=row_headers))


def category_labels(run: ChapterRun) -> dict[str, str]:
    """Every category label of every dimension (catalogue), for table cells; the category that
    free-coded values are pooled into has its own catalogue label."""
    from analysis.disclosure import POOLED_CATEGORY, pooled_category_label

    out: dict[str, str] = {POOLED_CATEGORY: pooled_category_label()}
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
    return text("common.title_separator").join(parts)



def show_figures(run: ChapterRun, saved) -> object:
    """Several saved figures as one HTML output (each a ``<figure>`` with alt text)."""
    from IPython.display import HTML

    return HTML("".join(figures.figure_html(s, relative_to=run.output_dir) for s in saved))


def show_text(text: str):
    """A sentence of narrative as Markdown output, shown exactly as written (plain text).

    The sentences interpolate labels from ``params/`` (partner-written): HTML and Markdown
    markup in them must show as text, never run or format (see :func:`markdown_text`).
    """
    from IPython.display import Markdown

    return Markdown(markdown_text(text))


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]{}()#+!|~-])")


def markdown_text(text: str) -> str:
    """``text`` as Markdown that renders to exactly that text.

    ``<``, ``>`` and ``&`` become HTML entities (Markdown passes raw HTML through), and every
    character Markdown gives a meaning (emphasis, links, code, tables, headings, lists) is
    backslash-escaped (CommonMark, "Backslash escapes").
    """
    import html

    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))



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



