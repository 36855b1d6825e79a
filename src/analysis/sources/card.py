"""The source card: a pydantic model of ``params/sources/<source>.yml``.

A card says everything the ingest needs to turn one raw source into the common schema:
its files and reader, the survey design, the column mapping, value recodes (including label
translations), derivations, indicators, which columns are personal data, the country, the
collection period and the licence/consent notes. Unknown keys are errors (a typo must not be
ignored silently). Example (microdata)::

    id: demo_disability                  # must equal the file stem
    title: Disability survey (SYNTHETIC)
    kind: microdata                      # microdata | aggregates | margins
    synthetic: true
    files: [{path: demo/disability_survey.sav}]   # relative to the raw root (data/raw)
    reader: spss                         # csv | excel | spss | stata | kobo | hxl | parquet
    reader_options: {sheet: data, header_row: 0, encoding: auto}
    country: KEN                         # or country_column: <raw column>
    collection_period: {start: 2021-03-01, end: 2021-05-31}
    licence: CC-BY-4.0
    consent: verbal consent recorded by enumerators
    personal_columns: [name, phone]      # dropped before anything is written
    id_column: resp_id                   # replaced by a salted hash
    free_text_columns: [comments]        # scanned for phones/e-mails/GPS/personal values
    missing_codes: {-99: seen but not answered, -88: not asked}   # or a list [-99, -88]
    filter: "relationship == 1 and age >= 18"   # rows kept (raw columns); the rest are counted
    min_kept_share: 0.5                  # fewer rows kept than this share is an error
    unknown_codes: error                 # error (above max_unknown_share, default 1%) | allow
    design: {type: probability, weight: wt, strata: stratum, psu: cluster, single_psu: adjust,
             replicate: {columns: "repwt*", method: sdr, scale: 0.05}}
    columns: {sex: q1_sex, age: q2_age, admin1: region, wg_seeing: ws1}
    recodes: {sex: {Femme: female, Homme: male, 1: female, 2: male}}
    derive: {age_group: from_age, disability: wg_ss}   # or {method: wg_ss, domains: [wg_seeing, ...]}
    indicators:
      food_insecurity: {column: fi1, true_values: [yes, 1], false_values: [no, 0]}

For ``kind: aggregates`` the ``columns`` map the result-schema columns (``group``,
``indicator``, ``breakdown``, ``cell``, ``estimate``, ``n_unweighted``, ...) to raw columns;
for ``kind: margins`` they map ``admin1``, ``sex``, ``age_group`` and ``population``.

Raw file paths (``files.path``, ``reader_options.form``) are relative to the raw root and stay
inside it: absolute paths and ``..`` are refused here; symlinks are resolved and checked when
the files are opened (:func:`analysis.sources.readers.raw_file`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from analysis import config
from analysis.config import pydantic_message
from analysis.schema import WG_DOMAINS, SchemaError, harmonised_columns, is_iso3
from analysis.sources.row_filter import FilterError, parse_filter

READERS = ("csv", "excel", "spss", "stata", "kobo", "hxl", "parquet")
KINDS = ("microdata", "aggregates", "margins")
REPLICATE_METHODS = ("jk1", "jkn", "brr", "fay", "bootstrap", "sdr")
SINGLE_PSU = ("fail", "adjust", "average", "certainty")

#: Raw-column names a card may map for derivations (not schema columns themselves).
HELPER_COLUMNS = ("birth_year", "admin1_fips")
#: Columns an aggregates card may map (the result schema).
AGGREGATE_COLUMNS = (
    "country", "group", "indicator", "breakdown", "cell", "estimate", "se", "ci_low", "ci_high",
    "n_unweighted", "n_weighted", "flag", "method",
)
#: Columns a margins card may map.
MARGIN_COLUMNS = ("country", "admin1", "admin1_code", "sex", "age_group", "population")

#: Derivations the library provides: schema column -> allowed methods.
DERIVATIONS: dict[str, tuple[str, ...]] = {
    "age": ("from_birth_year",),
    "age_group": ("from_age",),
    "age_band_child": ("from_age",),
    "disability": ("wg_ss", "single_question"),
    "admin1": ("from_us_fips",),
    "admin1_code": ("natural_earth",),
}


class CardError(ValueError):
    """A source card is malformed (one-line message naming the file and key)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def relative_raw_path(value: str | None) -> str | None:
    """Check that a raw file path is relative to the raw root and stays inside it (no ``..``)."""
    if value is None:
        return value
    text = str(value)
    if not text.strip() or "\x00" in text:
        raise ValueError("give a file path relative to the raw root (e.g. demo/survey.csv)")
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise ValueError(
            "is an absolute path; give a path relative to the raw root (data/raw or --raw-root) "
            "and copy or link the file there"
        )
    if ".." in PurePosixPath(text.replace("\\", "/")).parts:
        raise ValueError("contains '..'; a raw file must be inside the raw root (data/raw or --raw-root)")
    return text


class FileSpec(_Strict):
    """One raw file, relative to the raw root (``data/raw`` by default).

    Files without ``join_on`` are stacked (same columns, more rows). A file with ``join_on``
    adds columns to every row, matched one-to-one on that id column — e.g. the Census replicate
    weights file joined on ``SCRAM``; ``reader`` overrides the card's reader for that file.
    """

    path: str
    sha256: str | None = None  # optional: pin the expected content
    join_on: str | None = None
    reader: Literal[READERS] | None = None  # type: ignore[valid-type]

    @field_validator("path")
    @classmethod
    def _inside_raw_root(cls, value):
        return relative_raw_path(value)


class ReaderOptions(_Strict):
    """Options of the reader; each reader uses the ones that apply to it."""

    sheet: str | int | None = None  # excel/kobo: sheet name or 0-based index (default: first)
    header_row: int = Field(0, ge=0)  # excel/csv: 0-based row of the header
    encoding: str = "auto"  # csv/hxl: "auto" sniffs utf-16 (BOM), utf-8(-sig), cp1252, latin-1
    delimiter: str | None = None  # csv/hxl: default sniffed among , ; tab
    form: str | None = None  # kobo: XLSForm (survey + choices sheets), relative to the raw root
    select_multiple_separator: str = " "  # kobo: separator of select_multiple answers
    value_labels: bool = True  # spss/stata: apply value labels
    decimal: Literal[".", ","] = "."  # numbers written 1,5 (decimal comma): decimal: ","
    thousands: Literal[",", ".", " ", "'"] | None = None  # numbers written 1,037.25: thousands: ","

    @field_validator("form")
    @classmethod
    def _form_inside_raw_root(cls, value):
        return relative_raw_path(value)

    @model_validator(mode="after")
    def _separators_differ(self):
        if self.thousands is not None and self.thousands == self.decimal:
            raise ValueError(f"decimal and thousands are both {self.decimal!r}; they must differ")
        return self


class Period(_Strict):
    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self):
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class Replicates(_Strict):
    """Replicate weights: columns (a glob like ``"repwt*"`` or a list) and their method."""

    columns: str | list[str]
    method: Literal[REPLICATE_METHODS]  # type: ignore[valid-type]
    scale: float | None = None
    rscales: list[float] | None = None
    rho: float | None = None

    @model_validator(mode="after")
    def _fay_has_rho(self):
        if self.method == "fay" and self.rho is None:
            raise ValueError("method 'fay' needs rho (e.g. 0.5)")
        return self


class Design(_Strict):
    """The survey design. ``weight: null`` means every row weighs 1.0 (non-probability)."""

    type: Literal["probability", "non_probability"]
    weight: str | None = None
    strata: str | None = None
    psu: str | None = None
    fpc: str | None = None
    single_psu: Literal[SINGLE_PSU] = "fail"  # type: ignore[valid-type]
    replicate: Replicates | None = None

    @model_validator(mode="after")
    def _probability_has_weight(self):
        if self.type == "probability" and not self.weight:
            raise ValueError("a probability design needs 'weight' (the raw weight column)")
        if self.type == "non_probability" and self.weight:
            raise ValueError("a non-probability design carries no weight column (weights are 1.0)")
        return self


class IndicatorMap(_Strict):
    """How a source's question(s) map onto one catalogue indicator.

    - binary from one column: ``column`` + ``true_values`` (+ ``false_values``; values in
      neither list are counted as unknown codes and set missing);
    - binary from several columns: ``columns`` + ``true_values`` (1 if ANY column is in
      ``true_values``, 0 if all are answered and none is, else missing);
    - binary from a score: ``columns`` + ``score`` (sum of ``code + offset`` over the columns,
      1 when the sum is at least ``at_least``; missing when any item is missing), e.g. GAD-2;
    - continuous: ``column`` alone (numeric as is).

    ``false_when: {RAWCOL: [codes]}`` sets rows that are still missing to 0 when ``RAWCOL`` takes
    one of the codes (a skip pattern: long COVID is "no" for people who never had COVID).

    ``asked_when: {RAWCOL: [codes]}`` says the question was routed (a skip pattern): asked only
    of respondents whose ``RAWCOL`` takes one of the codes (every listed column must match);
    ``asked_of`` names them for readers ("renters"). The others are "not asked", counted apart
    from "no answer" in the accounting and on the data-profile page, never as missing answers.
    """

    column: str | None = None
    columns: list[str] | None = None
    true_values: list[Any] | None = None
    false_values: list[Any] | None = None
    score: dict[str, float] | None = None
    false_when: dict[str, list[Any]] | None = None  # rows still missing that count as 0, e.g. never had COVID
    asked_when: dict[str, list[Any]] | None = None  # routing: asked only when RAWCOL is one of the codes
    asked_of: str | None = None  # who was asked, in words ("renters"), for the data profile

    @model_validator(mode="after")
    def _one_source(self):
        if bool(self.column) == bool(self.columns):
            raise ValueError("give exactly one of 'column' or 'columns'")
        if self.score is not None:
            if not self.columns or set(self.score) - {"offset", "at_least"} or "at_least" not in self.score:
                raise ValueError("score needs 'columns' and {at_least: N, offset: K}")
        elif self.columns and not self.true_values:
            raise ValueError("'columns' needs 'true_values' or 'score'")
        return self

    def raw_columns(self) -> list[str]:
        return [self.column] if self.column else list(self.columns or [])


class KindCard(_Strict):
    """What the model of every card kind has: the header keys and the file it was read from.

    The header keys are ``id`` (the file name stem), ``title``, ``kind`` (each kind's model
    narrows it to its own values), ``synthetic`` and ``description``, in that order (the order
    validation errors are listed in). :func:`load_kind_card` sets ``_path``; a card built in
    memory (tests, generated cards) is named by where its file belongs,
    ``params/sources/<id>.yml``.
    """

    id: str
    title: str
    kind: str
    synthetic: bool = False
    description: str | None = None
    _path: Path | None = PrivateAttr(default=None)  # where the card was read from, for messages

    @property
    def path_label(self) -> str:
        """The card's file, for error messages (``params/sources/<id>.yml`` when built in memory)."""
        return str(self._path) if self._path else f"params/sources/{self.id}.yml"


class SourceCard(KindCard):
    """A validated source card (see the module docstring for an example)."""

    kind: Literal[KINDS] = "microdata"  # type: ignore[valid-type]
    files: list[FileSpec] = Field(min_length=1)

    @field_validator("files")
    @classmethod
    def _first_file_is_stacked(cls, value):
        if value and value[0].join_on:
            raise ValueError("the first file holds the rows: give join_on only to files that add columns")
        return value
    reader: Literal[READERS]  # type: ignore[valid-type]
    reader_options: ReaderOptions = Field(default_factory=ReaderOptions)
    country: str | None = None
    country_column: str | None = None
    collection_period: Period | None = None
    licence: str
    consent: str | None = None
    citation: str | None = None
    url: str | None = None
    # Real data that users download themselves: when set and the raw files are absent, an
    # ingest of every card reports the source as "skipped" with this text instead of failing.
    download: str | None = None
    personal_columns: list[str] = Field(default_factory=list)
    id_column: str | None = None
    free_text_columns: list[str] = Field(default_factory=list)
    missing_codes: dict[str, str] = Field(default_factory=dict)
    design: Design | None = None
    columns: dict[str, str | list[str]] = Field(default_factory=dict)  # a list is joined with '|' before recoding
    recodes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    derive: dict[str, str | dict[str, Any]] = Field(default_factory=dict)
    indicators: dict[str, IndicatorMap] = Field(default_factory=dict)
    # a row filter over raw columns (see analysis.sources.row_filter): rows that fail it are
    # excluded and counted, e.g. "relationship == 1" keeps the respondents of a person file
    filter: str | None = None
    # the ingest fails when fewer rows than this share are kept (e.g. every weight unreadable)
    min_kept_share: float = Field(0.5, ge=0.0, le=1.0)
    # unknown codes (values no recode covers) above max_unknown_share of a column's answered
    # values fail the ingest unless unknown_codes: allow (they are always counted in the log)
    unknown_codes: Literal["error", "allow"] = "error"
    max_unknown_share: float = Field(0.01, ge=0.0, le=1.0)
    @field_validator("missing_codes", mode="before")
    @classmethod
    def _missing_codes_as_mapping(cls, value):
        # A list [-99, -88] means "missing" without a more specific reason.
        if value is None:
            return {}
        if isinstance(value, list):
            return {str(v): "missing code" for v in value}
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("recodes", mode="before")
    @classmethod
    def _recode_keys_as_text(cls, value):
        # YAML turns `1: female` into an int key; raw values are compared as text.
        if isinstance(value, dict):
            return {
                col: ({str(k): v for k, v in mapping.items()} if isinstance(mapping, dict) else mapping)
                for col, mapping in value.items()
            }
        return value

    @field_validator("country")
    @classmethod
    def _country_is_iso3(cls, value):
        if value is not None and not is_iso3(value):
            raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-3 code (e.g. 'KEN')")
        return value

    @field_validator("derive")
    @classmethod
    def _known_derivations(cls, value):
        for column, method in value.items():
            name = method if isinstance(method, str) else method.get("method")
            if column not in DERIVATIONS:
                raise ValueError(f"no derivation for '{column}'; derivable: {sorted(DERIVATIONS)}")
            if name not in DERIVATIONS[column]:
                raise ValueError(f"unknown method {name!r} for '{column}'; use one of {list(DERIVATIONS[column])}")
            if name == "wg_ss" and isinstance(method, dict) and "domains" in method:
                domains = method["domains"]
                if (not isinstance(domains, list) or not domains or len(set(map(str, domains))) != len(domains)
                        or set(map(str, domains)) - set(WG_DOMAINS)):
                    raise ValueError(
                        f"derive.disability domains must list distinct WG-SS domains among {list(WG_DOMAINS)}"
                    )
        return value

    @field_validator("filter")
    @classmethod
    def _filter_parses(cls, value):
        if value is not None:
            try:
                parse_filter(value)
            except FilterError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.country is not None and self.country_column is not None:
            raise ValueError("give either 'country' or 'country_column', not both")
        if self.kind == "microdata":
            if self.country is None and self.country_column is None:
                raise ValueError("give 'country' (ISO3) or 'country_column'")
            if self.design is None:
                raise ValueError("a microdata card needs 'design' (type: probability|non_probability)")
            # the schema's columns and any dimension the catalogue adds (params/groups.yml)
            allowed = set(harmonised_columns()) | set(HELPER_COLUMNS)
            allowed -= {"respondent_id", "source", "country", "weight", "strata", "psu", "fpc", "sample_type"}
        elif self.kind == "aggregates":
            allowed = set(AGGREGATE_COLUMNS)
        else:
            allowed = set(MARGIN_COLUMNS)
        unknown = sorted(set(self.columns) - allowed)
        if unknown:
            raise ValueError(
                f"columns: {unknown} are not {self.kind} schema columns; allowed: {sorted(allowed)}"
            )
        if self.reader == "kobo" and not self.reader_options.form:
            raise ValueError("reader 'kobo' needs reader_options.form (the XLSForm with survey/choices sheets)")
        self._personal_columns_are_not_used()
        return self

    def used_raw_columns(self) -> list[tuple[str, str]]:
        """(card key, raw column) for every raw column that the card maps or keeps."""
        pairs: list[tuple[str, str]] = []
        for target, raw in self.columns.items():
            for one in raw if isinstance(raw, list) else [raw]:
                pairs.append((f"columns.{target}", one))
        for ind, spec in self.indicators.items():
            pairs += [(f"indicators.{ind}", one) for one in spec.raw_columns()]
            pairs += [(f"indicators.{ind}.false_when", one) for one in spec.false_when or {}]
            pairs += [(f"indicators.{ind}.asked_when", one) for one in spec.asked_when or {}]
        if self.design:
            for key in ("weight", "strata", "psu", "fpc"):
                if getattr(self.design, key):
                    pairs.append((f"design.{key}", getattr(self.design, key)))
        if self.id_column:
            pairs.append(("id_column", self.id_column))
        if self.country_column:
            pairs.append(("country_column", self.country_column))
        pairs += [("free_text_columns", col) for col in self.free_text_columns]
        for spec in self.files:
            if spec.join_on:
                pairs.append(("files.join_on", spec.join_on))
        return pairs

    def _personal_columns_are_not_used(self) -> None:
        # a personal column is dropped before anything else happens: mapping it as well is a
        # contradiction the user must resolve (which of the two did they mean?)
        personal = set(self.personal_columns)
        for key, column in self.used_raw_columns():
            if column in personal:
                raise ValueError(
                    f"column {column!r} is listed under personal_columns (dropped unread) and also used by "
                    f"{key}; remove it from one of the two"
                )

    def derive_method(self, column: str) -> tuple[str | None, dict]:
        """``(method, options)`` of the derivation of ``column`` (``(None, {})`` when not derived)."""
        spec = self.derive.get(column)
        if spec is None:
            return None, {}
        if isinstance(spec, str):
            return spec, {}
        options = {k: v for k, v in spec.items() if k != "method"}
        return spec.get("method"), options


#: Loaders of the card kinds with their own model, by ``kind``: ``loader(path, data)`` gets the
#: card's path and its YAML mapping. Registered by the modules that define them
#: (:mod:`analysis.sources.studies`, :mod:`analysis.sources.coding`), which ``analysis.sources``
#: imports, so that this module imports none of them (no import cycle).
KIND_LOADERS: dict[str, Callable[[Path, dict], Any]] = {}


def register_kind(kind: str, loader: Callable[[Path, dict], Any]) -> None:
    """Let :func:`load_card` read cards of ``kind`` with ``loader(path, data)``."""
    KIND_LOADERS[kind] = loader


def card_kind(path: Path | str) -> str | None:
    """The ``kind`` a card declares (read without validating the rest), or None if it is unreadable."""
    try:
        data = config.read_yaml_mapping(Path(path), CardError, "source card")
    except CardError:
        return None
    return data.get("kind")


def load_kind_card(path: Path | str, model: type[BaseModel], error: type[Exception] = CardError,
                   data: dict | None = None):
    """Read and validate a card of any kind with its pydantic ``model``.

    The one loading rule of every card kind: the YAML read safely (size and alias limits of
    :func:`analysis.config.read_yaml_mapping`) unless ``data`` is given, validation errors as
    one line naming the file and key, the card's path kept (when the model has ``_path``) and
    ``id`` equal to the file name stem. Errors are raised as ``error``.
    """
    path = Path(path)
    if data is None:
        data = config.read_yaml_mapping(path, error, "source card")
    try:
        card = model(**data)
    except ValidationError as exc:
        raise error(pydantic_message(exc, str(path))) from None
    except SchemaError as exc:
        raise error(f"{path}: {exc}") from None
    if "_path" in getattr(model, "__private_attributes__", {}):
        card._path = path
    if card.id != path.stem:
        raise error(f"{path}: key 'id' is {card.id!r} but must equal the file name stem {path.stem!r}")
    return card


def load_card(path: Path | str) -> SourceCard:
    """Read and validate one source card (a card of another kind through :data:`KIND_LOADERS`).

    Raises
    ------
    CardError
        One line naming the file and the failing key: unknown keys, wrong types, a bad ISO3
        country, an ``id`` that differs from the file stem, invalid YAML.
    """
    path = Path(path)
    data = config.read_yaml_mapping(path, CardError, "source card")
    loader = KIND_LOADERS.get(data.get("kind"))
    if loader is not None:  # kind: study, kind: coding
        return loader(path, data)
    return load_kind_card(path, SourceCard, CardError, data)


def card_paths(sources_dir: Path | str | None = None) -> dict[str, Path]:
    """Every source card under ``params/sources/``, keyed by source id (file stem), sorted."""
    from analysis import config

    folder = Path(sources_dir) if sources_dir else config.SOURCES_DIR
    return {p.stem: p for p in sorted(folder.glob("*.yml"))}
