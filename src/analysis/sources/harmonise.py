"""Harmonise a raw table into the common schema, counting every value and row on the way.

:func:`harmonise` takes a card and its :class:`~analysis.sources.readers.RawTable` and returns a
:class:`Harmonised` result: the table (common schema for microdata, the result schema for
aggregates, a counts table for margins), the survey design dict and the row accounting
(:class:`Accounting`): rows read, rows kept, rows excluded by reason, values recoded, missing
codes by reason, unknown codes and their counts. ``rows_read == rows_kept + sum(excluded)``
always holds (checked before returning).

Rules
-----
- A raw value is recoded by the card's ``recodes`` looked up by its code, then by its value
  label (SPSS/Stata/Kobo), then case-insensitively; a value with no recode that is not already a
  valid category is an *unknown code*: counted and set missing, never guessed.
- ``missing_codes`` (e.g. -99, -88) become missing, counted per column and reason.
- Rows are excluded only by the card's ``filter`` and for design reasons (missing or non-positive
  weight, missing PSU in a cluster design, missing stratum in a stratified design); each is
  counted with its reason. Fewer rows kept than ``min_kept_share`` (default 50%), or none, is an
  error that gives the reasons and, where one is known, the fix (e.g. decimal commas).
- Unknown codes above ``max_unknown_share`` (default 1%) of a column's answered values are an
  error unless the card says ``unknown_codes: allow``. SPSS/Stata user-missing values are
  counted with the missing codes. A file's value label that contradicts the card's recode of the
  same code is a warning naming both.
- No message or log quotes a cell value unless it is code-like
  (:func:`~analysis.sources.privacy.quotable_code`); every written text column is scanned for
  personal data (:func:`~analysis.sources.privacy.scan_written_text`).
- Structural problems (a mapped column absent, duplicate respondent ids, a stratum with one
  PSU when ``single_psu: fail``, a country that is not ISO3) fail with one line saying what to fix.
"""

from __future__ import annotations

import fnmatch
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pycountry

from analysis import schema, tables
from analysis.sources.card import SourceCard
from analysis.sources.privacy import (
    PersonalValues,
    hash_ids,
    project_salt,
    quotable_code,
    scan_free_text,
    scan_written_text,
)
from analysis.sources.readers import RawTable, code_text, codes_as_text
from analysis.sources.row_filter import evaluate_filter, filter_columns, parse_filter

ADMIN1_LOOKUP_FILE = Path(__file__).with_name("admin1_natural_earth.csv")

#: Schema columns holding closed or free categories (text), harmonised by recodes.
CATEGORY_COLUMNS = [
    "admin1", "admin1_code", "urban_rural", "sex", "gender_identity", "age_group", "age_band_child",
    "disability", "displacement_status", "income_group", "ethnicity_or_minority",
]


#: Unknown codes listed by name per column in the log; the rest are counted together.
MAX_NAMED_CODES = 20
OTHER_CODES = "(other codes)"
#: Unknown values that are not code-like are counted under this key, never by value.
NOT_SHOWN = "(values not shown: not code-like, may be personal data)"
USER_MISSING = "user-missing in the file"


class HarmoniseError(ValueError):
    """The raw data cannot be harmonised as the card says (one-line message)."""


@dataclass
class Accounting:
    """Row and value accounting of one ingest (written to ``<source>.log.json``)."""

    rows_read: int = 0
    rows_kept: int = 0
    rows_excluded: dict[str, int] = field(default_factory=dict)
    values_recoded: dict[str, int] = field(default_factory=dict)
    missing_codes: dict[str, dict[str, int]] = field(default_factory=dict)
    unknown_codes: dict[str, dict[str, int]] = field(default_factory=dict)
    personal_columns_dropped: list[str] = field(default_factory=list)
    unmapped_columns_left_behind: int = 0
    # where the user finds the first unknown code of each column ("line 17"), and how many
    # answered values the column had (the denominator of the unknown-code share)
    unknown_code_rows: dict[str, str] = field(default_factory=dict)
    # rows of each routed indicator (card ``asked_when``) whose question was not asked of them
    not_asked: dict[str, int] = field(default_factory=dict)
    answered_values: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def exclude(self, reason: str, count: int) -> None:
        if count:
            self.rows_excluded[reason] = self.rows_excluded.get(reason, 0) + int(count)

    def recoded(self, column: str, count: int) -> None:
        if count:
            self.values_recoded[column] = self.values_recoded.get(column, 0) + int(count)

    def unknown(self, column: str, values: Counter, first_row: str | None = None, answered: int | None = None) -> None:
        """Count unknown codes of a column: the 20 most frequent code-like values by name, the
        rest as "(other codes)"; values that are not code-like (a name or phone typed into a
        category) are counted without being shown. ``first_row`` says where the first one is,
        ``answered`` how many answered values the column had."""
        if answered is not None:
            self.answered_values[column] = self.answered_values.get(column, 0) + int(answered)
        if values:
            slot = self.unknown_codes.setdefault(column, {})
            for value, n in values.most_common():
                named = [k for k in slot if k not in (OTHER_CODES, NOT_SHOWN)]
                quoted = quotable_code(value)
                key = str(value).strip() if quoted else NOT_SHOWN
                if quoted and key not in slot and len(named) >= MAX_NAMED_CODES:
                    key = OTHER_CODES
                slot[key] = slot.get(key, 0) + int(n)
            if first_row and column not in self.unknown_code_rows:
                self.unknown_code_rows[column] = first_row

    def missing(self, column: str, code: str, reason: str, count: int) -> None:
        if count:
            slot = self.missing_codes.setdefault(column, {})
            key = f"{code} ({reason})"
            slot[key] = slot.get(key, 0) + int(count)

    def add(self, part: Accounting) -> None:
        """Add the accounting of another batch or partition of the same source (unknown codes
        keep their first row and the 20-named-codes rule; warnings are listed once)."""
        self.rows_read += part.rows_read
        self.rows_kept += part.rows_kept
        for reason, n in part.rows_excluded.items():
            self.exclude(reason, n)
        for column, n in part.values_recoded.items():
            self.recoded(column, n)
        for column, codes in part.missing_codes.items():
            slot = self.missing_codes.setdefault(column, {})
            for code, n in codes.items():
                slot[code] = slot.get(code, 0) + n
        for column, n in part.answered_values.items():
            self.answered_values[column] = self.answered_values.get(column, 0) + n
        for column, n in part.not_asked.items():
            self.not_asked[column] = self.not_asked.get(column, 0) + n
        for column, codes in part.unknown_codes.items():
            slot = self.unknown_codes.setdefault(column, {})
            for key, n in codes.items():
                named = [k for k in slot if k not in (OTHER_CODES, NOT_SHOWN)]
                if key not in (OTHER_CODES, NOT_SHOWN) and key not in slot and len(named) >= MAX_NAMED_CODES:
                    key = OTHER_CODES
                slot[key] = slot.get(key, 0) + n
        for column, row in part.unknown_code_rows.items():
            self.unknown_code_rows.setdefault(column, row)
        for column in part.personal_columns_dropped:
            if column not in self.personal_columns_dropped:
                self.personal_columns_dropped.append(column)
        self.unmapped_columns_left_behind = max(self.unmapped_columns_left_behind, part.unmapped_columns_left_behind)
        for warning in part.warnings:
            if warning not in self.warnings:
                self.warnings.append(warning)

    def check_balance(self) -> None:
        """``rows_read == rows_kept + sum(rows_excluded)``, or a bug in this module."""
        excluded = sum(self.rows_excluded.values())
        if self.rows_read != self.rows_kept + excluded:
            raise AssertionError(
                f"row accounting does not balance: read {self.rows_read} != kept {self.rows_kept} + excluded {excluded}"
            )

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Harmonised:
    frame: pd.DataFrame
    design: dict | None
    accounting: Accounting
    # how derived columns were made, for the log and the Parquet metadata, e.g.
    # {"disability": {"method": "wg_ss", "domains": [...], "label": "WG-SS, 4 of 6 domains"}}
    metadata: dict = field(default_factory=dict)
    # batch=True: the raw positions of the kept rows (for the whole-file checks of a streamed ingest)
    kept_positions: np.ndarray | None = None


def add_batch_metadata(total: dict | None, part: dict) -> dict:
    """The metadata of a source ingested in batches or partitions: the first part's, with the
    rows not asked of each routed indicator (card ``asked_when``) summed over every part."""
    if total is None:
        return json.loads(json.dumps(part))  # a copy the later parts add to
    for ind, routed in (part.get("not_asked") or {}).items():
        slot = total.setdefault("not_asked", {}).setdefault(
            ind, {"rows": 0, "asked_of": routed.get("asked_of"), "by_country": {}})
        slot["rows"] += routed["rows"]
        for country, n in routed["by_country"].items():
            slot["by_country"][country] = slot["by_country"].get(country, 0) + n
    return total


# --------------------------------------------------------------------------------------------
# Lookups
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def admin1_lookup() -> pd.DataFrame:
    """Natural Earth admin-1 units: ``adm0_a3, name, iso_3166_2, fips`` (committed subset, Made with Natural Earth)."""
    return pd.read_csv(ADMIN1_LOOKUP_FILE, dtype=str, keep_default_na=False, na_values=[""])


@lru_cache(maxsize=1)
def _admin1_index() -> tuple[dict, dict, frozenset, dict]:
    """(``"ISO3|name lower"`` -> ISO 3166-2 code, same key -> Natural Earth name, ambiguous keys, US FIPS -> name)."""
    lookup = admin1_lookup()
    keys = (lookup["adm0_a3"] + "|" + lookup["name"].str.lower()).tolist()
    ambiguous = frozenset(k for k, n in Counter(keys).items() if n > 1)
    codes = dict(zip(keys, lookup["iso_3166_2"]))
    names = dict(zip(keys, lookup["name"]))
    usa = lookup[lookup["adm0_a3"] == "USA"]
    by_fips = dict(zip(usa["fips"].str[2:], usa["name"]))
    return codes, names, ambiguous, by_fips


def _where(card: SourceCard, raw: RawTable) -> str:
    desc = f" ({raw.description})" if raw.description else ""
    return f"{raw.path}{desc}"


# --------------------------------------------------------------------------------------------
# Column mapping and value recoding
# --------------------------------------------------------------------------------------------


def _mapped_raw_columns(card: SourceCard) -> list[tuple[str, str]]:
    """(what, raw column) pairs for every raw column the card refers to."""
    pairs = [(what, col) for what, col in card.used_raw_columns() if what != "files.join_on"]
    if card.filter:
        pairs += [("filter", col) for col in filter_columns(parse_filter(card.filter))]
    return pairs


def _header_hint(card: SourceCard, raw: RawTable, missing: list[str]) -> str:
    """When the mapped names appear on a later row of a sheet, say which header_row to use."""
    frame = raw.frame
    for i in range(min(len(frame), 15)):
        row = {code_text(v) for v in frame.iloc[i].tolist()}
        if set(missing) <= row:
            header = card.reader_options.header_row + i + 1  # 0-based, as the card counts
            return f"; they are on {raw.row_label(i)}: set reader_options.header_row: {header} (counted from 0)"
    return ""


def check_columns(card: SourceCard, raw: RawTable) -> None:
    """Every raw column the card maps must exist; the error lists what exists and hints a header row."""
    available = list(map(str, raw.notes.get("header") or raw.frame.columns))
    missing: list[tuple[str, str]] = []
    for what, column in _mapped_raw_columns(card):
        if column not in available and column not in {c for _, c in missing}:
            missing.append((what, column))
    if missing:
        names = [c for _, c in missing]
        what = ", ".join(f"'{c}' ({w})" for w, c in missing[:4])
        # quoted, so that stray spaces in a header are visible
        shown = ", ".join(repr(c) for c in available[:25]) + (" ..." if len(available) > 25 else "")
        spaced = [c for c in available if c != c.strip() and c.strip() in names]
        hint = (
            f"; header {spaced[0]!r} has stray spaces: remove them in the file or map the name with its spaces"
            if spaced else _header_hint(card, raw, names)
        )
        raise HarmoniseError(
            f"{card.path_label}: column {what} not found in {_where(card, raw)}; columns are: {shown}{hint}"
        )


def _apply_missing_codes(series: pd.Series, card: SourceCard, column: str, acc: Accounting) -> pd.Series:
    if not card.missing_codes:
        return series
    text = codes_as_text(series)
    out = series.copy()
    if out.dtype.kind in "iub":
        out = out.astype("float64")
    for code, reason in card.missing_codes.items():
        hit = (text == code).to_numpy()
        if hit.any():
            out[hit] = np.nan if out.dtype.kind == "f" else None
            acc.missing(column, code, reason, int(hit.sum()))
    return out


def to_numbers(series: pd.Series, card: SourceCard) -> pd.Series:
    """Raw values as floats (NaN when missing or not a number), with the card's separators.

    ``reader_options.thousands`` is removed and ``reader_options.decimal`` read as the decimal
    point, so "1.037,25" with ``{decimal: ",", thousands: "."}`` is 1037.25. Numeric columns of
    binary formats are returned as they are.
    """
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.astype("float64")
    if pd.api.types.is_string_dtype(series.dtype) and not pd.api.types.is_object_dtype(series.dtype):
        text = series.str.strip()  # stays in Arrow: no Python object per cell
    else:
        text = pd.Series(codes_as_text(series), index=series.index, dtype="string")
    opts = card.reader_options
    if opts.thousands:
        text = text.str.replace(opts.thousands, "", regex=False)
    if opts.decimal != ".":
        text = text.str.replace(opts.decimal, ".", regex=False)
    return pd.to_numeric(text, errors="coerce").astype("float64")


def _number_text(key: str, card: SourceCard) -> str:
    opts = card.reader_options
    if opts.thousands:
        key = key.replace(opts.thousands, "")
    if opts.decimal != ".":
        key = key.replace(opts.decimal, ".")
    return key


_DECIMAL_COMMA = r"^[+-]?\d+,\d+$"
_THOUSANDS_COMMA = r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$"
_THOUSANDS_DOT = r"^[+-]?\d{1,3}(\.\d{3})+(,\d+)?$"


def number_hint(series: pd.Series, card: SourceCard) -> str:
    """A hint when the values of a column that should hold numbers do not parse: their format."""
    text = pd.Series(codes_as_text(series), dtype="string").dropna()
    if text.empty:
        return "; the column is empty"
    parsed = pd.to_numeric(text, errors="coerce")
    bad = text[parsed.isna()]
    if bad.empty:
        return ""
    opts = card.reader_options
    if opts.thousands is None and bad.str.match(_THOUSANDS_COMMA).mean() > 0.5 and opts.decimal == ".":
        return '; the numbers are written with thousands separators (like 1,234.5): set reader_options.thousands: ","'
    if opts.decimal == "." and bad.str.match(_THOUSANDS_DOT).mean() > 0.5 and bad.str.contains(",").any():
        return '; the numbers are written like 1.234,5: set reader_options.decimal: "," and reader_options.thousands: "."'
    if opts.decimal == "." and bad.str.match(_DECIMAL_COMMA).mean() > 0.5:
        return '; the numbers are written with a decimal comma (like 12,5): set reader_options.decimal: ","'
    if len(bad) == len(text):
        return ("; no value of the column is a number: check that design.weight names the weight column "
                "(missing_codes do not apply to weights)")
    return "; some values are not numbers: check the column"


def _first_row_of(positions: np.ndarray, indices: list[int], row_label) -> str | None:
    """Where the user finds the first row whose factorised code is in ``indices``."""
    if not indices or row_label is None:
        return None
    flagged = np.zeros(int(positions.max(initial=-1)) + 2, dtype=bool)
    flagged[indices] = True
    return row_label(int(np.flatnonzero(flagged[positions])[0]))


def _check_label(column: str, key: str, label: str | None, result, mapping: dict, folded: dict,
                 allowed: tuple | None, acc: Accounting) -> None:
    """Warn when the file's label of a code says something else than the card's recode of it.

    A contradiction: the card also recodes the label text to another value (``Female: female``
    while ``1: male``), or the label is itself a valid category other than the recode's result
    (the file says 1 = Female, the card sends 1 to male). Labels are file metadata, not cells.
    """
    if label is None or result is None:
        return
    target = str(result)
    said = folded.get(label.strip().lower())
    if said is None and allowed is not None and label.strip().lower() in allowed:
        said = label.strip().lower()
    if said is not None and str(said) != target:
        acc.warnings.append(
            f"column '{column}': code {key} is labelled {label!r} in the file but the card recodes it to {target!r}; "
            "check recodes"
        )


def _recode(
    series: pd.Series,
    column: str,
    card: SourceCard,
    labels: dict[str, str],
    acc: Accounting,
    allowed: tuple | None,
    numeric: bool = False,
    row_label=None,
) -> pd.Series:
    """Recode one mapped column's raw values to schema values; count recodes and unknown codes."""
    mapping = card.recodes.get(column, {})
    folded = {str(k).strip().lower(): v for k, v in mapping.items()}
    # decide once per distinct raw value, then broadcast (files have few distinct codes)
    positions, uniques = pd.factorize(series, use_na_sentinel=True)
    counts = np.bincount(positions[positions >= 0], minlength=len(uniques))
    results: list = []
    recoded = 0
    unknown: Counter = Counter()
    unknown_index: list[int] = []
    for index, (value, count) in enumerate(zip(uniques, counts)):
        key = code_text(value)
        label = labels.get(key)
        was_recoded = True
        if key in mapping:
            result = mapping[key]
            _check_label(column, key, label, result, mapping, folded, allowed, acc)
        elif label is not None and label in mapping:
            result = mapping[label]
        elif key.lower() in folded:
            result = folded[key.lower()]
        elif label is not None and label.strip().lower() in folded:
            result = folded[label.strip().lower()]
        else:
            was_recoded = False
            result = key if numeric else key.lower()
        result = None if result is None else code_text(result) if numeric else str(result)
        if result is not None:
            if numeric:
                try:
                    result = float(_number_text(result, card) if not was_recoded else result)
                except ValueError:
                    unknown[key] += int(count)
                    unknown_index.append(index)
                    result = None
            elif allowed is not None and result not in allowed:
                unknown[key] += int(count)
                unknown_index.append(index)
                result = None
        if result is not None and was_recoded:
            recoded += int(count)
        results.append(result)
    lookup = np.array(results + [None], dtype=object)
    out = lookup[positions]
    acc.recoded(column, recoded)
    acc.unknown(column, unknown, _first_row_of(positions, unknown_index, row_label), int((positions >= 0).sum()))
    if numeric:
        return pd.Series(out, index=series.index, dtype="float64")
    return pd.Series(out, index=series.index, dtype="string")


def _raw_values(raw: RawTable, spec, card: SourceCard, column: str, acc: Accounting) -> tuple[pd.Series, dict]:
    """The raw series of a mapped column (several raw columns joined with '|'), and its labels."""
    frame = raw.frame
    if isinstance(spec, list):
        parts = [codes_as_text(_apply_missing_codes(frame[c], card, column, acc)) for c in spec]
        joined = pd.Series(
            ["|".join(vals) if all(v is not None for v in vals) else None for vals in zip(*parts)],
            index=frame.index,
            dtype="object",
        )
        return joined, {}
    return _apply_missing_codes(frame[spec], card, column, acc), raw.value_labels.get(spec, {})


# --------------------------------------------------------------------------------------------
# Microdata
# --------------------------------------------------------------------------------------------


def _country(card: SourceCard, raw: RawTable, acc: Accounting) -> pd.Series:
    index = raw.frame.index
    if card.country:
        return pd.Series(card.country, index=index, dtype="string")
    raw_values = codes_as_text(raw.frame[card.country_column])
    mapping = {str(k): str(v) for k, v in card.recodes.get("country", {}).items()}
    values = raw_values.map(lambda v: None if v is None else mapping.get(v, v))
    recoded = int((raw_values.notna() & (values != raw_values)).sum())
    acc.recoded("country", recoded)
    invalid = values.notna() & ~values.map(lambda v: v is None or schema.is_iso3(v)).astype(bool)
    if invalid.any():
        first = int(np.flatnonzero(invalid.to_numpy())[0])
        bad = values.iloc[first]
        suggestion = ""
        try:
            # a country name is not personal data: when pycountry knows it, the fix can be spelt out
            guess = pycountry.countries.lookup(bad).alpha_3
            suggestion = f" (e.g. recodes: country: {{{bad}: {guess}}})"
        except LookupError:
            pass
        n_bad = int(invalid.sum())
        raise HarmoniseError(
            f"{_where(card, raw)}: column '{card.country_column}' has {n_bad} values that are not ISO 3166-1 "
            f"alpha-3 codes (first in {raw.row_label(first)}); add recodes to ISO3{suggestion}"
        )
    values = values.astype("string")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise HarmoniseError(f"{_where(card, raw)}: column '{card.country_column}' is empty in {raw.row_label(row)}; every row needs a country")
    return values


def _derive_admin1(card: SourceCard, out: pd.DataFrame, raw: RawTable, acc: Accounting) -> None:
    method, _ = card.derive_method("admin1")
    if method == "from_us_fips":
        if "admin1_fips" not in card.columns:
            raise HarmoniseError(f"{card.path_label}: derive.admin1 from_us_fips needs columns.admin1_fips")
        codes = codes_as_text(_raw_values(raw, card.columns["admin1_fips"], card, "admin1_fips", acc)[0])
        by_fips = _admin1_index()[3]
        padded = codes.map(lambda c: None if c is None else c.zfill(2))
        names = padded.map(by_fips)
        unknown = Counter(padded[padded.notna() & names.isna()])
        acc.unknown("admin1_fips", unknown, answered=int(padded.notna().sum()))
        acc.recoded("admin1", int(names.notna().sum()))
        out["admin1"] = names.astype("string")
    method, _ = card.derive_method("admin1_code")
    if method == "natural_earth":
        if "admin1" not in out.columns:
            raise HarmoniseError(f"{card.path_label}: derive.admin1_code natural_earth needs columns.admin1 (or derive.admin1)")
        codes, names, ambiguous, _ = _admin1_index()
        # decided once per distinct (country, admin1) pair, then broadcast
        positions, pairs = pd.MultiIndex.from_arrays([out["country"], out["admin1"]]).factorize()
        keys = np.array([None if pd.isna(a) else f"{c}|{str(a).lower()}" for c, a in pairs] + [None], dtype=object)
        wanted = pd.Series(keys[positions], index=out.index, dtype=object)
        present = sorted({k for k in wanted if k is not None})
        bad_ambiguous = [k for k in present if k in ambiguous]
        if bad_ambiguous:
            # the value is a Natural Earth name (reference data), so it may be shown
            raise HarmoniseError(
                f"{_where(card, raw)}: admin1 {names.get(bad_ambiguous[0], bad_ambiguous[0].split('|')[1])!r} "
                "names two Natural Earth units; map admin1_code explicitly"
            )
        missing = [k for k in present if k not in codes]
        if missing:
            first = missing[0]
            country = first.split("|")[0]
            position = int(np.flatnonzero((wanted == first).to_numpy())[0])
            import difflib

            known = [n for k, n in names.items() if isinstance(k, str) and isinstance(n, str) and k.startswith(country + "|")]
            close = difflib.get_close_matches(first.split("|")[1], [n.lower() for n in known], n=1, cutoff=0.8)
            hint = f" (closest Natural Earth name: {next(n for n in known if n.lower() == close[0])!r})" if close else ""
            raise HarmoniseError(
                f"{_where(card, raw)}: admin1 in {raw.row_label(position)} is not a Natural Earth admin-1 name "
                f"for {country}{hint}; recode it to the Natural Earth name (see {ADMIN1_LOOKUP_FILE.name})"
            )
        out["admin1_code"] = wanted.map(codes).astype("string")
        # the canonical Natural Earth spelling of the name
        out["admin1"] = wanted.map(names).astype("string")


def _indicator(card: SourceCard, ind: str, raw: RawTable, acc: Accounting) -> pd.Series:
    spec = card.indicators[ind]
    frame = raw.frame
    index = frame.index
    truth = {code_text(v) for v in spec.true_values or []}
    falsity = {code_text(v) for v in spec.false_values or []}

    cleaned_codes: dict[str, pd.Series] = {}

    def codes_of(col: str) -> pd.Series:
        # missing codes are applied (and counted) once per raw column
        if col not in cleaned_codes:
            codes = codes_as_text(_apply_missing_codes(frame[col], card, ind, acc))
            cleaned_codes[col] = codes.where(codes.notna(), None)
        return cleaned_codes[col]

    def matches(col: str, values: set) -> tuple[pd.Series, pd.Series]:
        """(answered, matches): the raw code, its value label or its lower case is in ``values``."""
        codes = codes_of(col)
        labels = raw.value_labels.get(col, {})
        lowered = {str(v).lower() for v in values}
        # decided once per distinct code, then broadcast
        positions, uniques = pd.factorize(codes, use_na_sentinel=True)
        decided = [u in values or labels.get(u) in values or str(u).lower() in lowered for u in uniques]
        hit = np.array(decided + [False], dtype=bool)[positions]
        return codes.notna(), pd.Series(hit, index=codes.index)

    if spec.score is not None:
        items = pd.DataFrame({c: to_numbers(_apply_missing_codes(frame[c], card, ind, acc), card) for c in spec.columns})
        total = (items + spec.score.get("offset", 0.0)).sum(axis=1, min_count=len(spec.columns))
        result = (total >= spec.score["at_least"]).astype("float64").where(total.notna())
    elif spec.column and not truth:
        cleaned = _apply_missing_codes(frame[spec.column], card, ind, acc)
        result = to_numbers(cleaned, card)
        bad = cleaned.notna() & result.isna()
        first = raw.row_label(int(np.flatnonzero(bad.to_numpy())[0])) if bad.any() else None
        acc.unknown(ind, Counter(codes_as_text(frame.loc[bad, spec.column])), first, int(cleaned.notna().sum()))
    else:
        cols = [spec.column] if spec.column else list(spec.columns)
        result = pd.Series(np.nan, index=index, dtype="float64")
        unknown: Counter = Counter()
        any_true = pd.Series(False, index=index)
        all_answered = pd.Series(True, index=index)
        first_odd = None
        n_present = 0
        for c in cols:
            present, is_true = matches(c, truth)
            n_present += int(present.sum())
            if falsity:
                _, is_false = matches(c, falsity)
                odd = present & ~is_true & ~is_false
                unknown.update(codes_as_text(frame.loc[odd, c]))
                if odd.any() and first_odd is None:
                    first_odd = raw.row_label(int(np.flatnonzero(odd.to_numpy())[0]))
                answered = is_true | is_false
            else:
                answered = present
            any_true |= is_true
            all_answered &= answered
        result[all_answered] = 0.0
        result[any_true] = 1.0
        acc.unknown(ind, unknown, first_odd, n_present)
    for col, values in (spec.false_when or {}).items():
        wanted = {code_text(v) for v in values}
        hit = codes_as_text(frame[col]).isin(wanted).to_numpy() & result.isna().to_numpy()
        result[hit] = 0.0
        acc.recoded(f"{ind} (false_when {col})", int(hit.sum()))
    return result


def _not_asked(card: SourceCard, ind: str, raw: RawTable, values: pd.Series) -> np.ndarray:
    """Rows of ``ind`` that are missing because the question was not asked of them (the card's
    ``asked_when`` routing does not match): a skip pattern, not a missing answer."""
    asked = pd.Series(True, index=raw.frame.index)
    for col, codes in card.indicators[ind].asked_when.items():
        asked &= codes_as_text(raw.frame[col]).isin({code_text(v) for v in codes}).fillna(False)
    return (~asked.to_numpy(dtype=bool)) & values.isna().to_numpy()


def _resolve_replicates(card: SourceCard, raw: RawTable) -> list[str]:
    spec = card.design.replicate
    if spec is None:
        return []
    if isinstance(spec.columns, list):
        cols = spec.columns
        missing = [c for c in cols if c not in raw.frame.columns]
        if missing:
            raise HarmoniseError(f"{_where(card, raw)}: replicate weight columns {missing[:3]} not found")
        return cols
    cols = [c for c in map(str, raw.frame.columns) if fnmatch.fnmatch(c, spec.columns)]
    if not cols:
        raise HarmoniseError(f"{_where(card, raw)}: no column matches replicate pattern {spec.columns!r} (design.replicate.columns)")
    # natural order: repwt2 before repwt10
    import re

    return sorted(cols, key=lambda c: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", c)])


def single_psu_error(card: SourceCard, raw: RawTable, stratum, row: str, strata: int) -> HarmoniseError:
    """The error for strata with a single PSU under ``design.single_psu: fail``."""
    code = quotable_code(stratum)
    which = f"stratum {code}" if code else "the stratum"
    return HarmoniseError(
        f"{_where(card, raw)}: {which} of column '{card.design.strata}' has a single PSU ({row}; "
        f"{strata} such strata); set design.single_psu to adjust, average or certainty, or merge strata"
    )


def _design_columns(card: SourceCard, raw: RawTable, out: pd.DataFrame, acc: Accounting,
                    batch: bool = False) -> tuple[pd.Series, dict]:
    """Fill weight/strata/psu/fpc/replicates; return the keep mask and the design dict."""
    design = card.design
    frame = raw.frame
    keep = pd.Series(True, index=frame.index)
    out["sample_type"] = pd.Series(design.type, index=frame.index, dtype="string")
    if design.weight:
        w = to_numbers(frame[design.weight], card)
        missing_w = w.isna()
        acc.exclude(f"weight missing or not a number ({design.weight})", int((missing_w & keep).sum()))
        keep &= ~missing_w
        bad_w = ~missing_w & ~(np.isfinite(w) & (w > 0))
        acc.exclude(f"weight not positive ({design.weight})", int((bad_w & keep).sum()))
        keep &= ~bad_w
        out["weight"] = w
    else:
        out["weight"] = 1.0
    for key in ("strata", "psu"):
        col = getattr(design, key)
        if col:
            values = frame[col]
            values = values.str.strip() if pd.api.types.is_string_dtype(values.dtype) else codes_as_text(values)
            gone = values.isna() & keep
            acc.exclude(f"{key} missing ({col})", int(gone.sum()))
            keep &= ~gone
            out[key] = values.astype("string")
        else:
            out[key] = pd.Series(pd.NA, index=frame.index, dtype="string")
    if design.fpc:
        out["fpc"] = to_numbers(frame[design.fpc], card)
        bad = out["fpc"].isna() & keep
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise HarmoniseError(f"{_where(card, raw)}: column '{design.fpc}' (design.fpc) is missing or not a number in {raw.row_label(row)}; give the number of PSUs in the stratum or the sampling fraction")
    else:
        out["fpc"] = np.nan
    if design.strata and design.psu and design.single_psu == "fail" and not batch:
        kept = out.loc[keep, ["strata", "psu"]]
        counts = kept.groupby("strata", observed=True)["psu"].nunique()
        lonely = counts[counts < 2]
        if len(lonely):
            position = int(np.flatnonzero((out["strata"] == lonely.index[0]).fillna(False).to_numpy(bool) & keep.to_numpy())[0])
            raise single_psu_error(card, raw, lonely.index[0], raw.row_label(position), len(lonely))
    replicate_columns = []
    for i, col in enumerate(_resolve_replicates(card, raw), start=1):
        name = f"{schema.REPLICATE_PREFIX}{i}"
        values = to_numbers(frame[col], card)
        bad = (values.isna() | (values < 0)) & keep
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise HarmoniseError(f"{_where(card, raw)}: replicate weight '{col}' is missing or negative in {raw.row_label(row)}")
        out[name] = values
        replicate_columns.append(name)
    rep = design.replicate
    design_dict = {
        "sample_type": design.type,
        "weight": "weight",
        "strata": "strata" if design.strata else None,
        "psu": "psu" if design.psu else None,
        "fpc": "fpc" if design.fpc else None,
        "replicate_columns": replicate_columns,
        "replicate_method": rep.method if rep else None,
        "replicate_scale": rep.scale if rep else None,
        "replicate_rscales": rep.rscales if rep else None,
        "fay_rho": rep.rho if rep else None,
        "single_psu": design.single_psu,
    }
    return keep, design_dict


#: Written text columns that are never scanned for personal data: fixed by the card or the code
#: (source, country: ISO3-validated), hashes, or closed sets validated after recoding.
_NOT_SCANNED = {"respondent_id", "source", "country", "sample_type", "disability_source", "age_group",
                "age_band_child", "admin1_code", *schema.CODE_CATEGORIES}


def _category_words(card: SourceCard, *extra) -> set[str]:
    """Words that are categories rather than personal data: recode keys and targets, schema
    categories, configured bands and groups, Natural Earth admin-1 names (a name may share them)."""
    words: set[str] = set()
    for mapping in card.recodes.values():
        for k, v in mapping.items():
            words.update(str(k).lower().split())
            words.update(str(v).lower().split())
    for values in schema.closed_categories().values():
        words.update(values)
    for values in extra:
        words.update(str(v).lower() for v in values or ())
    for name in admin1_lookup()["name"].dropna():
        words.update(str(name).lower().split())
    return words


def _count_user_missing(card: SourceCard, raw: RawTable, acc: Accounting) -> None:
    """Count the file's user-missing values (set missing by the reader) under the columns that use them."""
    if not raw.user_missing:
        return
    seen: set[str] = set()
    for what, column in _mapped_raw_columns(card):
        if column in raw.user_missing and column not in seen:
            seen.add(column)
            target = what.split(".", 1)[1] if what.startswith(("columns.", "indicators.")) else what
            target = target.split(".")[0]
            for code, n in raw.user_missing[column].items():
                acc.missing(target, code, USER_MISSING, n)


def _check_kept_rows(card: SourceCard, raw: RawTable, acc: Accounting, kept: int) -> None:
    """Fail when no row, or fewer than ``min_kept_share`` of the rows, are kept: the reasons and a hint."""
    read = acc.rows_read
    share = kept / read if read else 0.0
    if kept > 0 and share >= card.min_kept_share:
        return
    reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(acc.rows_excluded.items(), key=lambda kv: -kv[1]))
    hint = ""
    weight = card.design.weight if card.design else None
    if weight and any(r.startswith("weight") for r in acc.rows_excluded):
        hint = number_hint(raw.frame[weight], card)
    elif any(r.startswith("filter") for r in acc.rows_excluded):
        hint = "; check the card's filter"
    limit = "" if kept == 0 else f", below min_kept_share {card.min_kept_share:.0%}"
    raise HarmoniseError(
        f"{_where(card, raw)}: only {kept} of {read} rows kept ({share:.0%}{limit}); excluded: {reasons}{hint}"
        + ("" if kept == 0 else "; or lower min_kept_share in the card")
    )


def _check_unknown_share(card: SourceCard, raw: RawTable, acc: Accounting) -> None:
    """Fail when a column's unknown codes exceed ``max_unknown_share`` unless ``unknown_codes: allow``."""
    if card.unknown_codes == "allow":
        return
    for column, codes in acc.unknown_codes.items():
        n = sum(codes.values())
        answered = acc.answered_values.get(column) or acc.rows_read
        if answered and n / answered > card.max_unknown_share:
            first = acc.unknown_code_rows.get(column)
            where = f", first in {first}" if first else ""
            named = [k for k in codes if k not in (OTHER_CODES, NOT_SHOWN)][:5]
            shown = f" ({', '.join(repr(k) for k in named)})" if named else ""
            raise HarmoniseError(
                f"{_where(card, raw)}: column '{column}': {n} of {answered} values ({n / answered:.0%}) are unknown "
                f"codes{shown}{where}, above max_unknown_share {card.max_unknown_share:.0%}; add them to recodes "
                "(or missing_codes), or set unknown_codes: allow to count them as missing"
            )


def _derive_disability(card: SourceCard, out: pd.DataFrame, index) -> dict | None:
    """The disability identifier and how it was made (the log and the Parquet metadata say it)."""
    method, options = card.derive_method("disability")
    if method == "wg_ss":
        domains = list(options.get("domains") or schema.WG_DOMAINS)
        absent = [d for d in domains if d not in card.columns]
        if absent and "domains" in options:
            raise HarmoniseError(f"{card.path_label}: derive.disability domains {absent} are not mapped in columns")
        if absent:
            mapped = [d for d in schema.WG_DOMAINS if d in card.columns]
            raise HarmoniseError(
                f"{card.path_label}: derive.disability wg_ss uses all six WG-SS domains but columns lack {absent}; "
                f"for a survey that asked fewer, name them: derive.disability: {{method: wg_ss, domains: {mapped}}}"
            )
        out["disability"] = schema.wg_ss_disability(out[domains])
        out["disability_source"] = pd.Series("wg_ss", index=index, dtype="string")
        label = "WG-SS, all 6 domains" if len(domains) == len(schema.WG_DOMAINS) else f"WG-SS, {len(domains)} of 6 domains"
        return {"method": "wg_ss", "domains": domains, "label": label}
    if method == "single_question" or (method is None and "disability" in card.columns):
        # a mapped yes/no question without the six WG-SS domains is a single question
        if "disability" not in card.columns:
            raise HarmoniseError(f"{card.path_label}: derive.disability single_question needs columns.disability")
        out["disability_source"] = pd.Series("single_question", index=index, dtype="string").where(out["disability"].notna())
        return {"method": "single_question", "domains": [], "label": "single question"}
    return None


def _written_text_columns(card: SourceCard, out: pd.DataFrame, keep: pd.Series) -> dict:
    """The text columns that will be written, for the personal-data scan: {name: (values, raw column, codes)}."""
    raw_of = {k: v if isinstance(v, str) else "|".join(v) for k, v in card.columns.items()}
    if card.design:
        raw_of.update({k: getattr(card.design, k) for k in ("strata", "psu") if getattr(card.design, k)})
    columns = {}
    closed = schema.closed_categories()  # closed sets are validated after recoding: not free text
    for name in out.columns:
        if (name in _NOT_SCANNED or name in closed or name in schema.NUMERIC_COLUMNS
                or name.startswith(schema.REPLICATE_PREFIX)):
            continue
        if name == "admin1" and card.derive_method("admin1_code")[0] == "natural_earth":
            continue  # replaced by the Natural Earth name
        values = out[name]
        if pd.api.types.is_numeric_dtype(values):
            continue
        columns[name] = (values.where(keep), raw_of.get(name), name in ("strata", "psu"))
    return columns


def respondent_id_text(ids: pd.Series) -> pd.Series:
    """The respondent ids of ``id_column`` as compared and hashed: stripped code text, NA for empty."""
    if pd.api.types.is_string_dtype(ids.dtype) and not pd.api.types.is_object_dtype(ids.dtype):
        return ids.str.strip()
    return codes_as_text(ids)


def duplicate_ids_error(card: SourceCard, raw: RawTable, first: str, second: str, rows: int) -> HarmoniseError:
    """The error for respondent ids that repeat: where the first two are and how many rows repeat one."""
    return HarmoniseError(
        f"{_where(card, raw)}: column '{card.id_column}' (id_column) has duplicate respondent ids "
        f"in {first} and {second} ({rows} rows); de-duplicate the raw data"
    )


def harmonise_microdata(card: SourceCard, raw: RawTable, indicators: dict | None = None,
                        age_bands=None, salt: str | None = None,
                        income_groups: tuple | None = None, personal: PersonalValues | None = None,
                        batch: bool = False) -> Harmonised:
    """Turn a raw microdata table into the common schema (see the module docstring for the rules).

    ``age_bands`` (default: the catalogue's, :func:`analysis.schema.load_age_bands`) and
    ``income_groups`` are the categories declared in ``params/groups.yml``; a value outside them
    (after recoding) is an unknown code, as for every closed dimension of the catalogue.
    A catalogue dimension that is not a schema column is a column like the others: mapped and
    recoded by the card, written after the schema columns.

    ``batch=True`` harmonises one batch of a file streamed by :mod:`analysis.sources.streaming`:
    the checks that need the whole file (kept-row share, unknown-code share, duplicate
    respondent ids) are left to the caller, which runs them on the summed accounting, and
    ``personal`` holds the personal values of the whole file.
    """
    age_bands = tuple(age_bands) if age_bands else schema.load_age_bands()
    closed = schema.closed_categories()
    columns = schema.harmonised_columns()
    acc = Accounting(rows_read=len(raw.frame))
    if len(raw.frame) == 0:
        raise HarmoniseError(f"{_where(card, raw)}: has a header but no data rows")
    check_columns(card, raw)
    where = f"{_where(card, raw)}: "
    if card.filter:
        passed = evaluate_filter(parse_filter(card.filter), raw.frame, codes_as_text, lambda v: to_numbers(v, card))
        acc.exclude(f"filter not met: {card.filter}", int((~passed).sum()))
        raw = raw.subset(passed)
    ignore = _category_words(card, age_bands, income_groups)
    if personal is None:
        personal = PersonalValues(raw.frame, card.personal_columns, ignore)
    scan_free_text(raw.frame, card.free_text_columns, card.personal_columns, where=where, row_label=raw.row_label,
                   ignore=ignore, personal=personal)
    acc.personal_columns_dropped = [c for c in card.personal_columns if c in raw.frame.columns]
    frame = raw.frame.drop(columns=acc.personal_columns_dropped)
    raw = RawTable(frame, raw.path, raw.value_labels, raw.notes, raw.description, raw.first_row, raw.row_unit,
                   raw.row_numbers, raw.user_missing)
    used = {c for _, c in _mapped_raw_columns(card)}
    acc.unmapped_columns_left_behind = int(sum(c not in used for c in raw.notes.get("header") or frame.columns))
    _count_user_missing(card, raw, acc)

    out = pd.DataFrame(index=frame.index)
    out["source"] = pd.Series(card.id, index=frame.index, dtype="string")
    out["country"] = _country(card, raw, acc)

    for column in columns:
        if column not in card.columns:
            continue
        series, labels = _raw_values(raw, card.columns[column], card, column, acc)
        numeric = column in schema.NUMERIC_COLUMNS
        allowed = closed.get(column)
        if column in schema.WG_DOMAINS:
            allowed = None
        if column == "age_group":
            allowed = tuple(age_bands)
        if column == "income_group" and income_groups:
            allowed = tuple(income_groups)
        values = _recode(series, column, card, labels, acc, allowed, numeric=numeric, row_label=raw.row_label)
        if column in schema.WG_DOMAINS:
            bad = values.notna() & ~values.isin(schema.WG_CODES)
            first = raw.row_label(int(np.flatnonzero(bad.to_numpy())[0])) if bad.any() else None
            acc.unknown(column, Counter(codes_as_text(series[bad])), first)
            values = values.where(~bad)
        out[column] = values

    # derivations
    method, options = card.derive_method("age")
    if method == "from_birth_year":
        if "birth_year" not in card.columns:
            raise HarmoniseError(f"{card.path_label}: derive.age from_birth_year needs columns.birth_year")
        year = options.get("year") or (card.collection_period.start.year if card.collection_period else None)
        if year is None:
            raise HarmoniseError(f"{card.path_label}: derive.age from_birth_year needs year: or collection_period")
        born = _recode(_raw_values(raw, card.columns["birth_year"], card, "birth_year", acc)[0], "birth_year", card, {},
                       acc, None, numeric=True, row_label=raw.row_label)
        out["age"] = float(year) - born
    if "age" in out.columns:
        # an age outside 0-120 is a data-entry error: an unknown code, not a very old respondent
        implausible = out["age"].notna() & ~out["age"].between(0, 120)
        first = raw.row_label(int(np.flatnonzero(implausible.to_numpy())[0])) if implausible.any() else None
        acc.unknown("age", Counter(f"{a:g}" for a in out.loc[implausible, "age"]), first)
        out["age"] = out["age"].where(~implausible)
    if card.derive_method("age_group")[0] == "from_age":
        out["age_group"] = schema.assign_age_band(out.get("age", pd.Series(np.nan, index=frame.index)), age_bands)
    if card.derive_method("age_band_child")[0] == "from_age":
        bands = card.derive_method("age_band_child")[1].get("bands") or schema.load_child_age_bands()
        out["age_band_child"] = schema.assign_age_band(out.get("age", pd.Series(np.nan, index=frame.index)), bands)
    disability = _derive_disability(card, out, frame.index)
    _derive_admin1(card, out, raw, acc)

    for ind in card.indicators:
        if indicators is not None and ind not in indicators:
            raise HarmoniseError(
                f"{card.path_label}: indicator '{ind}' is not in params/indicators.yml; "
                f"use one of: {', '.join(sorted(indicators))}"
            )
        out[ind] = _indicator(card, ind, raw, acc)
    routed = {ind: _not_asked(card, ind, raw, out[ind]) for ind, spec in card.indicators.items()
              if spec.asked_when}

    keep, design = _design_columns(card, raw, out, acc, batch)
    written = _written_text_columns(card, out, keep)
    if batch:  # columns of codes are judged against every code of the file (streaming.py)
        written = {name: spec for name, spec in written.items() if not spec[2]}
    scan_written_text(written, personal, where=where, row_label=raw.row_label)
    if not batch:
        _check_kept_rows(card, raw, acc, int(keep.sum()))
        _check_unknown_share(card, raw, acc)

    if card.id_column:
        ids = respondent_id_text(frame[card.id_column])
        if ids.isna().any():
            row = int(np.flatnonzero(ids.isna().to_numpy())[0])
            raise HarmoniseError(f"{_where(card, raw)}: column '{card.id_column}' (id_column) is empty in {raw.row_label(row)}; every respondent needs an id")
        dup = ids.duplicated(keep=False) if not batch else pd.Series(False, index=ids.index)
        if dup.any():
            rows = list(np.flatnonzero(dup.to_numpy())[:2])
            raise duplicate_ids_error(card, raw, raw.row_label(rows[0]), raw.row_label(rows[1]), int(dup.sum()))
    else:
        ids = pd.Series([f"row{i}" for i in range(len(frame))], index=frame.index)
    out["respondent_id"] = hash_ids(ids, card.id, salt if salt is not None else project_salt())

    for column in columns:
        if column not in out.columns:
            out[column] = np.nan if column in schema.NUMERIC_COLUMNS else pd.Series(pd.NA, index=frame.index, dtype="string")
    replicates = schema.replicate_columns(out)
    ordered = columns + list(card.indicators) + replicates
    kept_positions = np.flatnonzero(keep.to_numpy())
    result = out.loc[keep.to_numpy(), ordered].reset_index(drop=True)
    for column in schema.NUMERIC_COLUMNS:
        result[column] = result[column].astype("float64")
    acc.rows_kept = len(result)
    acc.check_balance()
    schema.validate_harmonised(result, indicators, where=f"{card.id} (harmonised)", age_bands=age_bands,
                               wg_domains=disability["domains"] if disability and disability["method"] == "wg_ss" else None)
    metadata = {"disability": disability} if disability else {}
    if routed:
        kept = keep.to_numpy(dtype=bool)
        metadata["not_asked"] = {}
        countries = out["country"].astype("string").fillna("").to_numpy()[kept]
        for ind, mask in routed.items():
            acc.not_asked[ind] = int(mask[kept].sum())
            by_country = pd.Series(mask[kept]).groupby(countries).sum()
            metadata["not_asked"][ind] = {"rows": acc.not_asked[ind], "asked_of": card.indicators[ind].asked_of,
                                          "by_country": {str(k): int(v) for k, v in by_country.items() if v}}
    return Harmonised(result, design, acc, metadata, kept_positions if batch else None)


# --------------------------------------------------------------------------------------------
# Aggregates and margins
# --------------------------------------------------------------------------------------------


def _published_values(values) -> str:
    """Values of a published table for a message: shown only when short and free of personal data."""
    from analysis.sources.privacy import personal_data_kind

    shown = [repr(str(v)) for v in values if len(str(v)) <= 40 and personal_data_kind(str(v)) is None]
    return f" ({', '.join(shown[:5])})" if shown else ""


def _mapped_frame(card: SourceCard, raw: RawTable, acc: Accounting, numeric: set[str]) -> tuple[pd.DataFrame, RawTable]:
    """The mapped and recoded columns of an aggregates or margins table, and the raw table (filtered)."""
    check_columns(card, raw)
    if card.filter:
        passed = evaluate_filter(parse_filter(card.filter), raw.frame, codes_as_text, lambda v: to_numbers(v, card))
        acc.exclude(f"filter not met: {card.filter}", int((~passed).sum()))
        raw = raw.subset(passed)
    out = pd.DataFrame(index=raw.frame.index)
    for column, spec in card.columns.items():
        series, labels = _raw_values(raw, spec, card, column, acc)
        allowed = schema.closed_categories().get(column)
        out[column] = _recode(series, column, card, labels, acc, allowed, numeric=column in numeric, row_label=raw.row_label)
    if "country" not in card.columns:
        out["country"] = _country(card, raw, acc) if (card.country or card.country_column) else pd.NA
    # published tables hold no individuals, but a mistyped cell can still carry contact details
    texts = {c: (out[c], card.columns[c] if isinstance(card.columns[c], str) else None, False)
             for c in ("group", "breakdown", "cell", "method", "admin1") if c in out.columns}
    scan_written_text(texts, None, where=f"{_where(card, raw)}: ", row_label=raw.row_label)
    return out, raw


def harmonise_aggregates(card: SourceCard, raw: RawTable, indicators: dict | None = None) -> Harmonised:
    """Published estimates (a percentage and its n per group) -> the result schema, one row per estimate.

    Rows without an estimate are kept when flagged ``suppressed`` (suppressed at source) and
    excluded, counted, otherwise.
    """
    acc = Accounting(rows_read=len(raw.frame))
    numeric = {"estimate", "se", "ci_low", "ci_high", "n_unweighted", "n_weighted"}
    out, raw = _mapped_frame(card, raw, acc, numeric)
    for needed in ("indicator", "estimate"):
        if needed not in out.columns:
            raise HarmoniseError(f"{card.path_label}: an aggregates card must map columns.{needed}")
    if indicators is not None:
        bad = sorted(set(out["indicator"].dropna()) - set(indicators))
        if bad:
            raise HarmoniseError(
                f"{_where(card, raw)}: indicators{_published_values(bad)} are not in params/indicators.yml; "
                "add recodes: indicator: {...}"
            )
    if "flag" in out.columns:
        bad = sorted(set(out["flag"].dropna()) - set(tables.FLAGS))
        if bad:
            raise HarmoniseError(
                f"{_where(card, raw)}: flag values{_published_values(bad)} are not {list(tables.FLAGS)}; "
                "add recodes: flag: {...}"
            )
    flag = out["flag"] if "flag" in out.columns else pd.Series("ok", index=out.index, dtype="string")
    no_estimate = out["estimate"].isna() & (flag.fillna("ok") != "suppressed")
    acc.exclude("estimate missing and not flagged suppressed", int(no_estimate.sum()))
    no_indicator = out["indicator"].isna() & ~no_estimate
    acc.exclude("indicator missing or unknown code", int(no_indicator.sum()))
    _check_kept_rows(card, raw, acc, int((~(no_estimate | no_indicator)).sum()))
    _check_unknown_share(card, raw, acc)
    kept = out[~(no_estimate | no_indicator)].copy()
    # suppressed at source: the row stays, its numbers are blanked (the result schema's rule)
    if "flag" in kept.columns:
        suppressed = (kept["flag"] == "suppressed").fillna(False).astype(bool)
        for column in tables.NUMERIC_COLUMNS:
            if column in kept.columns:
                kept.loc[suppressed, column] = np.nan
        acc.recoded("numbers blanked in rows suppressed at source", int(suppressed.sum()))
    kept["country"] = kept["country"].astype("string").str.upper()
    bad_country = sorted({c for c in kept["country"].dropna() if not schema.is_iso3(c)})
    if bad_country:
        raise HarmoniseError(
            f"{_where(card, raw)}: country{_published_values(bad_country)} is not an ISO 3166-1 alpha-3 code"
        )
    defaults = {"source": card.id, "method": f"published by source ({card.title})"}
    if "breakdown" not in kept.columns:
        defaults["breakdown"] = "all"
    if "cell" not in kept.columns:
        defaults["cell"] = "all"
    result = tables.conform(kept.reset_index(drop=True), **defaults)
    acc.rows_kept = len(result)
    acc.check_balance()
    return Harmonised(result, None, acc)


def harmonise_margins(card: SourceCard, raw: RawTable, age_bands=None) -> Harmonised:
    """Official population counts -> ``country, admin1, admin1_code, sex, age_group, population``."""
    age_bands = tuple(age_bands) if age_bands else schema.load_age_bands()
    acc = Accounting(rows_read=len(raw.frame))
    out, raw = _mapped_frame(card, raw, acc, {"population"})
    if "population" not in out.columns:
        raise HarmoniseError(f"{card.path_label}: a margins card must map columns.population")
    for column in ("admin1", "admin1_code", "sex", "age_group"):
        if column not in out.columns:
            out[column] = pd.Series(pd.NA, index=out.index, dtype="string")
    if "age_group" in card.columns:
        bad = out["age_group"].notna() & ~out["age_group"].isin(age_bands)
        acc.unknown("age_group", Counter(out.loc[bad, "age_group"]))
        out.loc[bad, "age_group"] = pd.NA
    out["country"] = out["country"].astype("string").str.upper()
    bad_country = sorted({c for c in out["country"].dropna() if not schema.is_iso3(c)})
    if bad_country:
        raise HarmoniseError(
            f"{_where(card, raw)}: country{_published_values(bad_country)} is not an ISO 3166-1 alpha-3 code"
        )
    _derive_admin1(card, out, raw, acc)
    negative = out["population"] < 0
    acc.exclude("population negative", int(negative.sum()))
    missing = out["population"].isna()
    acc.exclude("population missing or not a number", int(missing.sum()))
    unknown_cat = pd.Series(False, index=out.index)
    for column in ("sex", "age_group", "admin1"):
        if column in card.columns:
            unknown_cat |= out[column].isna()
    unknown_cat &= ~negative & ~missing
    acc.exclude("a category is missing or an unknown code", int(unknown_cat.sum()))
    _check_kept_rows(card, raw, acc, int((~(negative | missing | unknown_cat)).sum()))
    kept = out[~(negative | missing | unknown_cat)]
    dup = kept.duplicated(["country", "admin1", "sex", "age_group"], keep=False)
    if dup.any():
        rows = list(kept.index[dup.to_numpy()][:2])  # data rows of the raw file, 0-based
        raise HarmoniseError(
            f"{_where(card, raw)}: {raw.row_label(rows[0])} and {raw.row_label(rows[1])} hold the same cell; "
            "give each country × admin1 × sex × age group once"
        )
    result = kept[["country", "admin1", "admin1_code", "sex", "age_group", "population"]].reset_index(drop=True)
    result.insert(0, "source", pd.Series(card.id, index=result.index, dtype="string"))
    acc.rows_kept = len(result)
    acc.check_balance()
    return Harmonised(result, None, acc)


def harmonise(card: SourceCard, raw: RawTable, indicators: dict | None = None,
              age_bands=None, salt: str | None = None,
              income_groups: tuple | None = None) -> Harmonised:
    """Harmonise a raw table according to the card's ``kind``."""
    if card.kind == "microdata":
        return harmonise_microdata(card, raw, indicators, age_bands, salt, income_groups)
    if card.kind == "aggregates":
        return harmonise_aggregates(card, raw, indicators)
    return harmonise_margins(card, raw, age_bands)
