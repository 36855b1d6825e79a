"""The common inclusive-data schema: dimensions, categories, indicators, groups; validation.

Every source, whatever its format, is harmonised by :mod:`analysis.sources` into one table per
source with one row per respondent and the columns below (documented for users in
``docs/schema.md``). The disaggregation dimensions follow the Inclusive Data Charter and
SDG target 17.18 (sex, age, disability, location, migratory/displacement status, income,
ethnicity); disability follows the Washington Group Short Set (WG-SS).

Missing values are NA; categories are lower-case strings. The catalogue of indicators
(``params/indicators.yml``) and the group definitions (``params/groups.yml``) are loaded and
validated here, so that every label lives in the catalogue and not in code.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pycountry
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from analysis import config

# --------------------------------------------------------------------------------------------
# Categories of the common schema
# --------------------------------------------------------------------------------------------

# The categories of every disaggregation dimension (sex, age bands, disability, displacement,
# income, ...) live in the catalogue (``params/groups.yml``, ``dimensions:``), never here: see
# :func:`closed_categories`. The two sets below are not catalogue lists but codes the library
# itself branches on (how disability was identified; whether the design is a probability one).
DISABILITY_SOURCE = ("wg_ss", "single_question")
SAMPLE_TYPES = ("probability", "non_probability")

#: The six Washington Group Short Set domains, in the WG's order.
WG_DOMAINS = (
    "wg_seeing",
    "wg_hearing",
    "wg_walking",
    "wg_cognition",
    "wg_selfcare",
    "wg_communication",
)
#: WG-SS answer codes: 1 no difficulty, 2 some difficulty, 3 a lot of difficulty, 4 cannot do at all.
WG_CODES = (1, 2, 3, 4)
#: The WG-SS disability identifier's cut-off: at least one domain coded 3 or 4.
WG_CUTOFF = 3

#: Identity and location columns.
IDENTITY_COLUMNS = ["respondent_id", "source", "country", "admin1", "admin1_code", "urban_rural"]
#: Disaggregation dimensions (Inclusive Data Charter / SDG 17.18).
DIMENSION_COLUMNS = [
    "sex",
    "gender_identity",
    "age",
    "age_group",
    "age_band_child",
    "disability",
    *WG_DOMAINS,
    "disability_source",
    "displacement_status",
    "income_group",
    "ethnicity_or_minority",
]
#: Survey-design columns (replicate weights ``repwt_1..repwt_R`` follow these when present).
DESIGN_COLUMNS = ["weight", "strata", "psu", "fpc", "sample_type"]
#: Every fixed column of a harmonised table, in order (indicator columns follow, then replicates).
SCHEMA_COLUMNS = IDENTITY_COLUMNS + DIMENSION_COLUMNS + DESIGN_COLUMNS

#: Columns holding numbers; every other fixed column holds strings.
NUMERIC_COLUMNS = ["age", *WG_DOMAINS, "weight", "fpc"]

#: Closed sets of codes the library branches on (not catalogue categories; those are in
#: ``params/groups.yml``, see :func:`closed_categories`): a value outside them fails validation.
CODE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "disability_source": DISABILITY_SOURCE,
    "sample_type": SAMPLE_TYPES,
}

REPLICATE_PREFIX = "repwt_"

#: Location columns a chapter may use beside the catalogue's dimensions (areas are labelled by
#: their Natural Earth names, not by catalogue categories).
AREA_COLUMNS = ("admin1_code",)


class SchemaError(ValueError):
    """A harmonised table or a params file breaks the common schema (one-line message)."""


# --------------------------------------------------------------------------------------------
# Age bands
# --------------------------------------------------------------------------------------------

_BAND = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)|\+)\s*$")


def parse_age_band(label: str) -> tuple[float, float]:
    """Return the inclusive ``(low, high)`` ages of a band label: ``"18-24"`` or ``"65+"`` (high=inf)."""
    match = _BAND.match(str(label))
    if not match:
        raise SchemaError(f"age band {label!r} is not of the form '18-24' or '65+'")
    low = float(match.group(1))
    high = float(match.group(2)) if match.group(2) is not None else np.inf
    if high < low:
        raise SchemaError(f"age band {label!r} ends before it starts")
    return low, high


def assign_age_band(age: pd.Series, bands=None) -> pd.Series:
    """Assign each age (years, completed) to its band label; ages outside every band are NA.

    Bands are inclusive on both ends in completed years, so ``24.0`` is in ``"18-24"`` and
    ``24.5`` too (ages are floored before banding). ``bands`` default: the catalogue's
    (:func:`load_age_bands`).
    """
    bands = tuple(bands) if bands else load_age_bands()
    limits = [parse_age_band(b) for b in bands]
    years = np.floor(pd.to_numeric(age, errors="coerce").astype("float64"))
    out = pd.Series(pd.NA, index=age.index, dtype="string")
    for label, (low, high) in zip(bands, limits):
        out[(years >= low) & (years <= high)] = label
    return out


def wg_ss_disability(domains: pd.DataFrame) -> pd.Series:
    """The WG-SS disability identifier from the domain codes (1-4) of the domains asked.

    ``"yes"`` when at least one domain is coded 3 (a lot of difficulty) or 4 (cannot do at
    all); ``"no"`` when every domain is answered and none reaches 3; NA otherwise (some domain
    missing and no 3/4 among the answered ones), following the WG's recommended cut-off
    (Washington Group, "Analytic guidelines: creating disability identifiers using the WG-SS").
    ``domains`` holds the six WG-SS domains, or the subset a survey asked (e.g. four in the
    Household Pulse Survey's weeks 38-40): the same cut-off is applied to those, which finds
    fewer persons with disabilities than the six would; say so wherever it is reported.
    """
    codes = domains.apply(pd.to_numeric, errors="coerce")
    any_severe = (codes >= WG_CUTOFF).any(axis=1)
    all_answered = codes.notna().all(axis=1)
    out = pd.Series(pd.NA, index=domains.index, dtype="string")
    out[all_answered & ~any_severe] = "no"
    out[any_severe] = "yes"
    return out


# --------------------------------------------------------------------------------------------
# The indicator catalogue and group definitions
# --------------------------------------------------------------------------------------------


class Indicator(BaseModel):
    """One indicator of the catalogue (``params/indicators.yml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    label: str
    theme: str
    definition: str
    unit: Literal["percent", "mean", "count"]
    direction: Literal["higher_is_worse", "higher_is_better"]
    type: Literal["binary", "continuous"]
    short_label: str | None = None
    notes: str | None = None

    @model_validator(mode="after")
    def _unit_fits_type(self):
        if self.type == "binary" and self.unit != "percent":
            raise ValueError(f"binary indicator {self.id!r} must have unit 'percent'")
        return self


class Dimension(BaseModel):
    """A disaggregation dimension: its label and its categories (ordered or not)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    label: str
    categories: list[str] = Field(default_factory=list)
    ordered: bool = False
    category_labels: dict[str, str] = Field(default_factory=dict)
    #: True: a value outside ``categories`` fails validation of a harmonised table (a recode is
    #: missing); False: other categories are kept and pooled into "other" before publication.
    closed: bool = False

    @model_validator(mode="after")
    def _closed_has_categories(self):
        if self.closed and not self.categories:
            raise ValueError("a closed dimension must list its categories")
        unknown = sorted(set(self.category_labels) - set(self.categories)) if self.categories else []
        if unknown:
            raise ValueError(f"category_labels {unknown} are not among the categories")
        return self


class Group(BaseModel):
    """A population group compared with its reference (``params/groups.yml``).

    ``dimension`` names a column of the harmonised table; ``members`` are its categories
    that make up the group; ``reference`` lists the comparison categories, or ``"rest"``
    for every other known (non-missing) category.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    label: str
    dimension: str
    members: list[str]
    reference: list[str] | Literal["rest"] = "rest"
    short_label: str | None = None
    notes: str | None = None

    @field_validator("members")
    @classmethod
    def _members_not_empty(cls, value):
        if not value:
            raise ValueError("members must list at least one category")
        return [str(v) for v in value]

    @model_validator(mode="after")
    def _disjoint(self):
        if self.reference != "rest":
            overlap = set(self.members) & {str(v) for v in self.reference}
            if overlap:
                raise ValueError(f"categories {sorted(overlap)} are both members and reference")
        return self

    def assign(self, frame: pd.DataFrame) -> pd.Series:
        """Return ``"group"``, ``"reference"`` or NA (outside both, or missing) for each row."""
        if self.dimension not in frame.columns:
            raise SchemaError(
                f"group {self.id!r}: column {self.dimension!r} is not in the table; "
                f"columns are: {', '.join(map(str, frame.columns))}"
            )
        values = frame[self.dimension].astype("string")
        out = pd.Series(pd.NA, index=frame.index, dtype="string")
        in_group = values.isin(self.members).fillna(False).astype(bool)
        if self.reference == "rest":
            in_reference = values.notna() & ~in_group
        else:
            in_reference = values.isin([str(v) for v in self.reference]).fillna(False).astype(bool)
        out[in_reference.astype(bool)] = "reference"
        out[in_group] = "group"
        return out


_YAML_CACHE: dict = {}


def _read_yaml(path: Path) -> dict:
    """The catalogue file as a mapping; parsed once per version of the file (the chapters and the
    disclosure plan ask for the same lists many times in a run)."""
    try:
        stat = Path(path).stat()
        name, stamp = str(Path(path).resolve()), (stat.st_mtime_ns, stat.st_size)
    except OSError:
        return config.read_yaml_mapping(path, SchemaError, "file")  # its own one-line error
    cached = _YAML_CACHE.get(name)
    if cached is None or cached[0] != stamp:
        cached = _YAML_CACHE[name] = (stamp, config.read_yaml_mapping(path, SchemaError, "file"))
    return copy.deepcopy(cached[1])


def _entries(data: dict, section: str, path: Path) -> dict:
    entries = data.get(section)
    if not isinstance(entries, dict) or not entries:
        raise SchemaError(f"{path}: key '{section}' must be a non-empty mapping of id -> definition")
    return entries


def load_indicators(path: Path | str | None = None) -> dict[str, Indicator]:
    """Load and validate the indicator catalogue (``params/indicators.yml``), keyed by id."""
    path = Path(path) if path else config.INDICATORS_FILE
    data = _read_yaml(path)
    themes = load_themes(path)
    out: dict[str, Indicator] = {}
    for key, spec in _entries(data, "indicators", path).items():
        if not isinstance(spec, dict):
            raise SchemaError(f"{path}: indicator '{key}' must be a mapping")
        try:
            out[str(key)] = Indicator(id=str(key), **spec)
        except ValidationError as exc:
            raise SchemaError(config.pydantic_message(exc, f"{path}: indicator '{key}'")) from None
        if out[str(key)].theme not in themes:
            raise SchemaError(f"{path}: indicator '{key}': key 'theme': '{out[str(key)].theme}' is not a "
                              f"theme declared under 'themes:'; themes are: {', '.join(themes) or '(none)'}")
    return out


def load_themes(path: Path | str | None = None) -> dict[str, str]:
    """Theme id -> label from the ``themes:`` section of ``params/indicators.yml`` (catalogue
    order); a theme without a label is shown by its id."""
    path = Path(path) if path else config.INDICATORS_FILE
    themes = _read_yaml(path).get("themes") or {}
    if not isinstance(themes, dict):
        raise SchemaError(f"{path}: key 'themes' must be a mapping of id -> {{label: ...}}")
    return {str(k): str((v or {}).get("label") or k) if isinstance(v, dict) else str(k) for k, v in themes.items()}


def load_dimensions(path: Path | str | None = None) -> dict[str, Dimension]:
    """Load the ``dimensions:`` section of ``params/groups.yml`` (empty when absent)."""
    path = Path(path) if path else config.GROUPS_FILE
    data = _read_yaml(path)
    out: dict[str, Dimension] = {}
    for key, spec in (data.get("dimensions") or {}).items():
        if not isinstance(spec, dict):
            raise SchemaError(f"{path}: dimension '{key}' must be a mapping")
        spec = dict(spec)
        spec["categories"] = [str(c) for c in spec.get("categories") or []]
        try:
            out[str(key)] = Dimension(id=str(key), **spec)
        except ValidationError as exc:
            raise SchemaError(config.pydantic_message(exc, f"{path}: dimension '{key}'")) from None
    return out


def load_groups(path: Path | str | None = None) -> dict[str, Group]:
    """Load and validate the group definitions (``params/groups.yml``), keyed by id.

    A group's ``dimension`` must be a column of the common schema (or a dimension declared
    under ``dimensions:``).
    """
    path = Path(path) if path else config.GROUPS_FILE
    data = _read_yaml(path)
    dimensions = load_dimensions(path)
    known = set(SCHEMA_COLUMNS) | set(dimensions)
    out: dict[str, Group] = {}
    for key, spec in _entries(data, "groups", path).items():
        if not isinstance(spec, dict):
            raise SchemaError(f"{path}: group '{key}' must be a mapping")
        try:
            group = Group(id=str(key), **spec)
        except ValidationError as exc:
            raise SchemaError(config.pydantic_message(exc, f"{path}: group '{key}'")) from None
        if group.dimension not in known:
            raise SchemaError(
                f"{path}: group '{key}': dimension '{group.dimension}' is not a schema column "
                f"or a declared dimension"
            )
        out[str(key)] = group
    return out


def load_age_bands(path: Path | str | None = None) -> tuple[str, ...]:
    """The adult age bands: the categories of ``dimensions: age_group`` in ``params/groups.yml``.

    Raises
    ------
    SchemaError
        The catalogue declares no ``age_group`` categories, or a band is not "18-24" / "65+".
    """
    path = Path(path) if path else config.GROUPS_FILE
    dimensions = load_dimensions(path)
    if "age_group" not in dimensions or not dimensions["age_group"].categories:
        raise SchemaError(f"{path}: dimension 'age_group' must list its categories (the age bands, "
                          "e.g. [18-24, 25-34, 65+])")
    bands = tuple(dimensions["age_group"].categories)
    for band in bands:
        parse_age_band(band)
    return bands


def load_child_age_bands(path: Path | str | None = None) -> tuple[str, ...]:
    """The child age bands (``child_age_bands:`` in ``params/groups.yml``), for sources that
    survey children and derive ``age_band_child`` from age; empty when not declared."""
    path = Path(path) if path else config.GROUPS_FILE
    bands = _read_yaml(path).get("child_age_bands") or []
    if not isinstance(bands, list):
        raise SchemaError(f"{path}: key 'child_age_bands' must be a list of bands such as '0-4'")
    for band in bands:
        parse_age_band(band)
    return tuple(str(b) for b in bands)


@dataclass(frozen=True)
class DimensionUses:
    """Which dimensions each chapter uses (``uses:`` in ``params/groups.yml``).

    ``profile``: what the data profile describes, and what disclosure control crosses with
    every group; ``intersections``: what the intersections chapter crosses a group with;
    ``weighting``: the columns a CSO sample is compared with (and weighted to) official margins.
    Each entry is a dimension declared under ``dimensions:`` or an area column (:data:`AREA_COLUMNS`).
    """

    profile: tuple[str, ...]
    intersections: tuple[str, ...]
    weighting: tuple[str, ...]


def load_dimension_uses(path: Path | str | None = None) -> DimensionUses:
    """Load and validate ``uses:`` of ``params/groups.yml`` (see :class:`DimensionUses`)."""
    path = Path(path) if path else config.GROUPS_FILE
    data = _read_yaml(path)
    uses = data.get("uses")
    if not isinstance(uses, dict):
        raise SchemaError(f"{path}: key 'uses' must be a mapping of profile/intersections/weighting "
                          "-> list of dimensions")
    fields = ("profile", "intersections", "weighting")
    unknown = sorted(set(map(str, uses)) - set(fields))
    if unknown:
        raise SchemaError(f"{path}: uses: unknown keys {unknown}; use {list(fields)}")
    known = set(load_dimensions(path)) | set(AREA_COLUMNS)
    out = {}
    for name in fields:
        values = uses.get(name) or []
        if not isinstance(values, list):
            raise SchemaError(f"{path}: uses.{name} must be a list of dimensions")
        bad = [str(v) for v in values if str(v) not in known]
        if bad:
            raise SchemaError(f"{path}: uses.{name}: {bad} are not dimensions declared under 'dimensions:' "
                              f"(or {', '.join(AREA_COLUMNS)})")
        out[name] = tuple(dict.fromkeys(str(v) for v in values))
    return DimensionUses(**out)


def closed_categories(path: Path | str | None = None, dimensions: dict | None = None) -> dict[str, tuple[str, ...]]:
    """Column -> allowed values of every closed set: the catalogue's closed dimensions
    (``closed: true`` in ``params/groups.yml``) and the library's own codes
    (:data:`CODE_CATEGORIES`). ``dimensions`` (from :func:`load_dimensions`) saves a read."""
    if dimensions is None:
        path = Path(path) if path else config.GROUPS_FILE
        dimensions = load_dimensions(path) if path.exists() else {}
    out = {d: tuple(spec.categories) for d, spec in dimensions.items() if spec.closed}
    return out | dict(CODE_CATEGORIES)


def harmonised_columns(path: Path | str | None = None, dimensions: dict | None = None) -> list[str]:
    """Every fixed column of a harmonised table: :data:`SCHEMA_COLUMNS`, then each catalogue
    dimension that is not a schema column (a dimension added in ``params/groups.yml`` and mapped
    or recoded by a source card), in catalogue order."""
    if dimensions is None:
        path = Path(path) if path else config.GROUPS_FILE
        dimensions = load_dimensions(path) if path.exists() else {}
    return SCHEMA_COLUMNS + [d for d in dimensions if d not in SCHEMA_COLUMNS]


# --------------------------------------------------------------------------------------------
# Countries
# --------------------------------------------------------------------------------------------


def is_iso3(code) -> bool:
    """True when ``code`` is an existing ISO 3166-1 alpha-3 country code (upper case)."""
    if not isinstance(code, str) or len(code) != 3 or code.upper() != code:
        return False
    return pycountry.countries.get(alpha_3=code) is not None


# --------------------------------------------------------------------------------------------
# Validation of a harmonised table
# --------------------------------------------------------------------------------------------


def replicate_columns(frame: pd.DataFrame) -> list[str]:
    """The replicate-weight columns ``repwt_1..repwt_R`` of a harmonised table, in order."""
    cols = [c for c in frame.columns if re.fullmatch(rf"{REPLICATE_PREFIX}\d+", str(c))]
    return sorted(cols, key=lambda c: int(c[len(REPLICATE_PREFIX):]))


def _first_rows(mask: pd.Series, limit: int = 3) -> str:
    rows = list(np.flatnonzero(mask.to_numpy()))[:limit]
    extra = int(mask.sum()) - len(rows)
    return ", ".join(str(r) for r in rows) + (f" (+{extra} more)" if extra > 0 else "")


def validate_harmonised(
    frame: pd.DataFrame,
    indicators: dict[str, Indicator] | None = None,
    where: str = "harmonised table",
    age_bands=None,
    wg_domains=None,
    dimensions: dict | None = None,
) -> pd.DataFrame:
    """Check a harmonised table against the common schema; return it unchanged.

    Checks: every fixed schema column present; numeric columns numeric; closed categories
    (sex, disability, ...) within their sets; categories lower case; WG-SS codes in 1-4;
    ``disability`` consistent with the WG-SS cut-off where ``disability_source == "wg_ss"``;
    ``age_group`` among the configured bands; ``country`` an existing ISO3 code;
    ``weight`` (and replicate weights) finite and > 0; ``respondent_id`` present and unique;
    binary indicators 0/1/NA; non-probability rows carry weight 1. ``wg_domains`` are the WG-SS
    domains the disability identifier was derived from (default: the domains with any answer).
    ``dimensions`` is the catalogue (:func:`load_dimensions`, read from ``params/groups.yml``
    when None): its closed dimensions are the closed category sets, and a catalogue dimension
    that is not a schema column is checked like one when the table has it.
    Messages give the column and rows, never a value that may be personal data (only values of
    closed sets, which are shown when they are short codes).

    Raises
    ------
    SchemaError
        One line naming ``where``, the column and the first offending rows (0-based positions).
    """
    missing = [c for c in SCHEMA_COLUMNS if c not in frame.columns]
    if missing:
        raise SchemaError(f"{where}: missing schema columns {missing}")

    ids = frame["respondent_id"]
    if ids.isna().any():
        raise SchemaError(f"{where}: column 'respondent_id' is missing in rows {_first_rows(ids.isna())}")
    dup = ids.duplicated(keep=False)
    if dup.any():
        raise SchemaError(
            f"{where}: column 'respondent_id' is not unique (rows {_first_rows(dup)}); "
            "each respondent must appear once"
        )

    for col in NUMERIC_COLUMNS:
        if not (pd.api.types.is_numeric_dtype(frame[col]) or frame[col].isna().all()):
            raise SchemaError(f"{where}: column '{col}' must be numeric, found dtype {frame[col].dtype}")

    if dimensions is None:
        dimensions = load_dimensions() if config.GROUPS_FILE.exists() else {}
    allowed = closed_categories(dimensions=dimensions)
    if age_bands:
        allowed.pop("age_group", None)  # the bands given are checked below, with their own message
    columns = [c for c in harmonised_columns(dimensions=dimensions) if c in frame.columns]
    for col in [c for c in columns if c not in NUMERIC_COLUMNS]:
        values = frame[col].dropna()
        if values.empty:
            continue
        # text columns are compared as they are (no copy into Python strings)
        is_text = pd.api.types.is_string_dtype(values.dtype) and not pd.api.types.is_object_dtype(values.dtype)
        text = values if is_text else values.astype(str)
        if col in allowed:
            bad = ~text.isin(allowed[col])
            if bad.any():
                raise SchemaError(
                    f"{where}: column '{col}' has {int(bad.sum())} values outside "
                    f"{list(allowed[col])} in rows {_first_rows(bad.reindex(frame.index, fill_value=False))} "
                    "(add a recode in the source card)"
                )
        elif col not in ("respondent_id", "source", "country", "admin1", "admin1_code", "strata", "psu"):
            bad = text != text.str.lower()
            if bad.any():
                raise SchemaError(
                    f"{where}: column '{col}' has upper-case categories in rows "
                    f"{_first_rows(bad.reindex(frame.index, fill_value=False))}"
                )

    bands = tuple(age_bands) if age_bands else None
    if bands:
        ag = frame["age_group"].dropna().astype(str)
        bad = ~ag.isin(bands)
        if bad.any():
            raise SchemaError(
                f"{where}: column 'age_group' has values outside {list(bands)} in rows "
                f"{_first_rows(bad.reindex(frame.index, fill_value=False))}"
            )

    for col in WG_DOMAINS:
        codes = pd.to_numeric(frame[col], errors="coerce")
        bad = frame[col].notna() & ~codes.isin(WG_CODES)
        if bad.any():
            raise SchemaError(f"{where}: column '{col}' has codes outside 1-4 in rows {_first_rows(bad)}")
    from_wg = (frame["disability_source"] == "wg_ss").fillna(False).astype(bool)
    if from_wg.any():
        domains = list(wg_domains) if wg_domains else [
            d for d in WG_DOMAINS if frame.loc[from_wg, d].notna().any()
        ] or list(WG_DOMAINS)
        expected = wg_ss_disability(frame.loc[from_wg, domains])
        actual = frame.loc[from_wg, "disability"].astype("string")
        mismatch = (expected.fillna("<NA>") != actual.fillna("<NA>")).reindex(frame.index, fill_value=False)
        if mismatch.any():
            raise SchemaError(
                f"{where}: column 'disability' disagrees with the WG-SS cut-off in rows {_first_rows(mismatch)}"
            )

    country = frame["country"]
    if country.isna().any():
        raise SchemaError(f"{where}: column 'country' is missing in rows {_first_rows(country.isna())}")
    bad_codes = sorted({c for c in country.astype(str).unique() if not is_iso3(c)})
    if bad_codes:
        raise SchemaError(
            f"{where}: column 'country' has {bad_codes[:5]} which are not ISO 3166-1 alpha-3 codes "
            "(use e.g. 'KEN', 'USA')"
        )

    for col in ["weight", *replicate_columns(frame)]:
        w = pd.to_numeric(frame[col], errors="coerce").astype("float64")
        bad = ~np.isfinite(w) | (w <= 0) if col == "weight" else ~np.isfinite(w) | (w < 0)
        if bad.any():
            raise SchemaError(f"{where}: column '{col}' must be finite and > 0; bad in rows {_first_rows(bad)}")
    nonprob = (frame["sample_type"] == "non_probability").fillna(False).astype(bool)
    if nonprob.any() and not np.allclose(frame.loc[nonprob, "weight"].astype(float), 1.0):
        raise SchemaError(f"{where}: non-probability rows must carry weight 1.0")

    for key, indicator in (indicators or {}).items():
        if key not in frame.columns:
            continue
        if not pd.api.types.is_numeric_dtype(frame[key]) and not frame[key].isna().all():
            raise SchemaError(f"{where}: indicator column '{key}' must be numeric, found {frame[key].dtype}")
        if indicator.type == "binary":
            values = pd.to_numeric(frame[key], errors="coerce")
            bad = values.notna() & ~values.isin([0, 1])
            if bad.any():
                raise SchemaError(f"{where}: binary indicator '{key}' has values other than 0/1 in rows {_first_rows(bad)}")
    return frame
