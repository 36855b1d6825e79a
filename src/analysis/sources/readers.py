"""Readers for the formats CSOs share data in: CSV, Excel, SPSS, Stata, KoboToolbox/ODK, HXL, Parquet.

Every reader returns a :class:`RawTable`: the raw data frame (column names as in the file;
text formats read every cell as text so that codes such as ``"01"`` survive) and the value
labels it knows (SPSS/Stata value labels, Kobo choices), so that harmonisation can recode
either a code or its label. Every failure raises :class:`ReadError` with one line naming the
file and saying what to fix.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.sources.card import SourceCard

#: Encodings tried, in order, when a card says ``encoding: auto`` (after a UTF-16 byte-order mark,
#: which Excel's "Unicode text" export writes). utf-8-sig also reads plain UTF-8 (and strips a
#: BOM); cp1252 is what Windows Excel writes for "CSV" in Western locales (curly quotes, €);
#: latin-1 decodes any byte sequence, so it is the last resort.
SNIFFED_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")

#: Excel engine: calamine (Rust, ~15x faster on survey exports) when installed, else openpyxl.
EXCEL_ENGINE = "calamine" if importlib.util.find_spec("python_calamine") else "openpyxl"


class ReadError(ValueError):
    """A raw file cannot be read as its card says (one-line message)."""


@dataclass
class RawTable:
    """A raw table as read, with what the reader learnt about it."""

    frame: pd.DataFrame
    path: Path
    value_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)  # e.g. the sniffed encoding
    description: str = ""  # where the header came from, for error messages (e.g. "sheet 'data'")
    first_row: int = 1  # number, as the user sees it, of the first data row (line in a text file)
    row_unit: str = "case"  # "line" (text files), "row" (spreadsheets) or "case" (SPSS, Stata, Parquet)

    def row_label(self, position: int) -> str:
        """How the user finds data row ``position`` (0-based) in the file: ``"line 7"``, ``"row 3"``, ``"case 12"``."""
        return f"{self.row_unit} {self.first_row + int(position)}"


def code_text(value) -> str | None:
    """A raw value as comparable text: ``1``, ``1.0`` and ``"1"`` all give ``"1"``; NA gives None."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def codes_as_text(series: pd.Series) -> pd.Series:
    """:func:`code_text` of every value (object Series, None for NA), computed once per distinct value."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    texts = np.array([code_text(u) for u in uniques] + [None], dtype=object)
    return pd.Series(texts[codes], index=series.index, dtype="object")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ReadError(f"{path}: file not found (check 'files' in the source card and --raw-root)")
    if path.stat().st_size == 0:
        raise ReadError(f"{path}: file is empty; re-export the data")


def _decode(path: Path, encoding: str) -> tuple[str, str]:
    raw = path.read_bytes()
    if encoding != "auto":
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            raise ReadError(
                f"{path}: not valid {encoding} at byte {exc.start}; set reader_options.encoding "
                "to the file's encoding (e.g. latin-1) or 'auto'"
            ) from None
        except LookupError:
            raise ReadError(f"{path}: unknown encoding {encoding!r} in reader_options.encoding") from None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise ReadError(f"{path}: starts with a UTF-16 byte-order mark but is not valid UTF-16; re-export it") from None
    for candidate in SNIFFED_ENCODINGS:
        try:
            return raw.decode(candidate), candidate
        except UnicodeDecodeError:
            continue
    raise ReadError(f"{path}: cannot decode the file")  # pragma: no cover - latin-1 decodes anything


def _sniff_delimiter(text: str, given: str | None) -> str:
    if given:
        return given
    sample = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _parse_text_table(path: Path, text: str, delimiter: str, header_row: int) -> pd.DataFrame:
    if not text.strip():
        raise ReadError(f"{path}: file has no data (only blank lines)")
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            skiprows=header_row,
            skip_blank_lines=True,
        )
    except pd.errors.ParserError as exc:
        line = re.search(r"line (\d+)", str(exc))
        where = f" at line {int(line.group(1)) + header_row}" if line else ""
        raise ReadError(f"{path}: malformed CSV{where} (wrong number of fields); fix the quoting or delimiter") from None
    except pd.errors.EmptyDataError:
        raise ReadError(f"{path}: file has no header row at row {header_row}") from None
    header_line = next(csv.reader(io.StringIO(text.splitlines()[header_row] if len(text.splitlines()) > header_row else ""), delimiter=delimiter), [])
    seen = [h.strip() for h in header_line if h.strip()]
    dup = sorted({h for h in seen if seen.count(h) > 1})
    if dup:
        raise ReadError(f"{path}: duplicated column names {dup[:5]} in the header; give every column a unique name")
    _check_header(path, frame)
    return frame


def _check_header(path: Path, frame: pd.DataFrame, where: str = "") -> None:
    names = [str(c) for c in frame.columns]
    unnamed = [i for i, c in enumerate(names) if c.startswith("Unnamed:") or c.strip() == ""]
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise ReadError(f"{path}{where}: duplicated column names {dup[:5]}; give every column a unique name")
    if len(unnamed) == len(names):
        raise ReadError(f"{path}{where}: the header row is empty; set reader_options.header_row to the row with the column names")


def read_csv(path: Path, card: SourceCard) -> RawTable:
    """CSV with the encoding sniffed (UTF-16 by its BOM, utf-8, cp1252, else latin-1) and the delimiter sniffed."""
    _check_file(path)
    opts = card.reader_options
    text, encoding = _decode(path, opts.encoding)
    frame = _parse_text_table(path, text, _sniff_delimiter(text, opts.delimiter), opts.header_row)
    return RawTable(frame, path, notes={"encoding": encoding}, description=f"header_row: {opts.header_row}",
                    first_row=opts.header_row + 2, row_unit="line")


def _excel_sheet(path: Path, sheet, header_row: int) -> pd.DataFrame:
    try:
        book = pd.ExcelFile(path, engine=EXCEL_ENGINE)
    except Exception as exc:  # noqa: BLE001 - the Excel engines raise many types for a broken or non-xlsx file
        raise ReadError(f"{path}: not a readable .xlsx workbook ({type(exc).__name__}); re-save it as .xlsx") from None
    with book:
        names = book.sheet_names
        if sheet is None:
            sheet = names[0]
        elif isinstance(sheet, int):
            if sheet >= len(names):
                raise ReadError(f"{path}: has {len(names)} sheets, no sheet index {sheet}; sheets are: {names}")
            sheet = names[sheet]
        elif sheet not in names:
            raise ReadError(f"{path}: no sheet {sheet!r}; sheets are: {names} (fix reader_options.sheet)")
        frame = pd.read_excel(book, sheet_name=sheet, header=header_row, dtype=str, keep_default_na=False, na_values=[""])
    if frame.shape[1] == 0:
        raise ReadError(f"{path} (sheet {sheet!r}): sheet is empty")
    frame.attrs["sheet"] = sheet
    return frame


def read_excel(path: Path, card: SourceCard) -> RawTable:
    """An Excel sheet (``reader_options.sheet``, default the first) with the header on ``header_row``."""
    _check_file(path)
    opts = card.reader_options
    frame = _excel_sheet(path, opts.sheet, opts.header_row)
    sheet = frame.attrs.get("sheet")
    _check_header(path, frame, f" (sheet {sheet!r})")
    return RawTable(frame, path, notes={"sheet": sheet}, description=f"sheet {sheet!r}, header_row: {opts.header_row}",
                    first_row=opts.header_row + 2, row_unit="row")


def _read_stat(path: Path, card: SourceCard, kind: str) -> RawTable:
    import pyreadstat

    _check_file(path)
    reader = pyreadstat.read_sav if kind == "spss" else pyreadstat.read_dta
    try:
        frame, meta = reader(str(path), apply_value_formats=False, user_missing=False)
    except Exception as exc:  # noqa: BLE001 - pyreadstat.ReadstatError, OSError... for truncated/invalid files
        label = "SPSS .sav" if kind == "spss" else "Stata .dta"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReadError(f"{path}: not a readable {label} file ({reason}); the file may be truncated, re-export it") from None
    labels: dict[str, dict[str, str]] = {}
    if card.reader_options.value_labels:
        for column, label_set in (meta.variable_to_label or {}).items():
            mapping = (meta.value_labels or {}).get(label_set, {})
            labels[column] = {code_text(k): str(v) for k, v in mapping.items()}
    return RawTable(frame, path, value_labels=labels, notes={"rows": meta.number_rows})


def read_spss(path: Path, card: SourceCard) -> RawTable:
    """SPSS ``.sav`` with its value labels (codes kept in the frame, labels in ``value_labels``)."""
    return _read_stat(path, card, "spss")


def read_stata(path: Path, card: SourceCard) -> RawTable:
    """Stata ``.dta`` with its value labels (codes kept in the frame, labels in ``value_labels``)."""
    return _read_stat(path, card, "stata")


def read_parquet(path: Path, card: SourceCard) -> RawTable:
    """Apache Parquet (types as stored)."""
    _check_file(path)
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError... for broken files
        raise ReadError(f"{path}: not a readable Parquet file ({type(exc).__name__}); re-export it") from None
    return RawTable(frame, path)


# --- HXL -------------------------------------------------------------------------------------


def normalise_hxl_tag(tag: str) -> str:
    """``"#Adm1 +Name"`` -> ``"#adm1+name"``: lower case, no spaces, attributes sorted."""
    parts = [p for p in re.sub(r"\s+", "", str(tag)).lower().split("+") if p]
    if not parts or not parts[0].startswith("#"):
        return ""
    return parts[0] + "".join(f"+{a}" for a in sorted(parts[1:]))


def _is_tag_row(values) -> bool:
    cells = [str(v).strip() for v in values if v is not None and str(v).strip() not in ("", "nan", "<NA>")]
    return bool(cells) and sum(c.startswith("#") for c in cells) >= max(1, len(cells) // 2)


def read_hxl(path: Path, card: SourceCard) -> RawTable:
    """HXL-tagged CSV: a row of hashtags (``#adm1+name``, ``#affected+idps``) under or as the header.

    Columns are renamed to their normalised tags (:func:`normalise_hxl_tag`), so a card maps
    schema columns to tags; a column without a tag keeps its header name.
    """
    _check_file(path)
    opts = card.reader_options
    text, encoding = _decode(path, opts.encoding)
    frame = _parse_text_table(path, text, _sniff_delimiter(text, opts.delimiter), opts.header_row)
    first_row = opts.header_row + 2
    if _is_tag_row(frame.columns):
        tags = list(frame.columns)
        headers = tags
    else:
        tag_rows = [i for i in range(min(len(frame), 25)) if _is_tag_row(frame.iloc[i].tolist())]
        if not tag_rows:
            raise ReadError(f"{path}: no HXL hashtag row (e.g. '#adm1+name') in the first 25 rows; use reader 'csv' for untagged files")
        row = tag_rows[0]
        tags = frame.iloc[row].tolist()
        headers = list(frame.columns)
        frame = frame.iloc[row + 1:].reset_index(drop=True)
        first_row += row + 1
    names = []
    for tag, header in zip(tags, headers):
        norm = normalise_hxl_tag(tag) if isinstance(tag, str) else ""
        names.append(norm or str(header))
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ReadError(f"{path}: HXL tags {dup[:5]} appear on more than one column; add attributes to tell them apart")
    frame.columns = names
    return RawTable(frame, path, notes={"encoding": encoding, "hxl_header": dict(zip(names, map(str, headers)))},
                    first_row=first_row, row_unit="line")


# --- KoboToolbox / ODK -----------------------------------------------------------------------


def _read_form(form_path: Path) -> tuple[dict[str, tuple[str, str]], dict[str, dict[str, str]]]:
    """Parse an XLSForm: ({question name: (type, list name)}, {list name: {code: label}})."""
    _check_file(form_path)
    survey = _excel_sheet(form_path, "survey", 0)
    choices = _excel_sheet(form_path, "choices", 0)
    for sheet, frame, need in (("survey", survey, ("type", "name")), ("choices", choices, ("list_name", "name"))):
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise ReadError(f"{form_path} (sheet {sheet!r}): missing XLSForm columns {missing}")
    label_col = next((c for c in choices.columns if str(c).lower().startswith("label")), None)
    if label_col is None:
        raise ReadError(f"{form_path} (sheet 'choices'): no 'label' column")
    lists: dict[str, dict[str, str]] = {}
    for _, row in choices.dropna(subset=["list_name", "name"]).iterrows():
        lists.setdefault(str(row["list_name"]).strip(), {})[code_text(row["name"])] = str(row[label_col]).strip()
    questions: dict[str, tuple[str, str]] = {}
    for _, row in survey.dropna(subset=["type", "name"]).iterrows():
        kind, *rest = str(row["type"]).split()
        if kind in ("select_one", "select_multiple"):
            list_name = rest[0] if rest else ""
            if list_name not in lists:
                raise ReadError(f"{form_path}: question {row['name']!r} uses choice list {list_name!r} that the 'choices' sheet lacks")
            questions[str(row["name"]).strip()] = (kind, list_name)
    return questions, lists


def _kobo_short_name(column: str, questions: dict[str, tuple[str, str]]) -> str:
    """Strip Kobo group prefixes: ``grp/q1`` -> ``q1``; ``grp/q5/food`` -> ``q5/food`` (select_multiple)."""
    parts = column.split("/")
    if len(parts) >= 2 and questions.get(parts[-2], ("",))[0] == "select_multiple":
        return "/".join(parts[-2:])
    return parts[-1]


def read_kobo(path: Path, card: SourceCard, raw_root: Path) -> RawTable:
    """A KoboToolbox/ODK export (xlsx or csv) with its XLSForm (``reader_options.form``).

    Group prefixes (``group/question``) are stripped. ``select_one`` columns keep their codes
    and get the choice labels as value labels (an export "with labels" is accepted too);
    ``select_multiple`` columns (space-separated codes: export "XML values") are expanded into
    one 0/1 column per choice, ``question/choice`` (NA where the question is unanswered), unless
    the export already has them. A code that the choices
    list lacks is an error naming the column, the code and the list.
    """
    _check_file(path)
    form_path = raw_root / card.reader_options.form
    first_row, row_unit = card.reader_options.header_row + 2, "line"
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        frame = _excel_sheet(path, card.reader_options.sheet, card.reader_options.header_row)
        row_unit = "row"
    else:
        text, _ = _decode(path, card.reader_options.encoding)
        frame = _parse_text_table(path, text, _sniff_delimiter(text, card.reader_options.delimiter), card.reader_options.header_row)
    _check_header(path, frame)
    questions, lists = _read_form(form_path)
    frame = frame.rename(columns=lambda c: _kobo_short_name(str(c), questions))
    _check_header(path, frame, " (after removing Kobo group prefixes)")
    labels: dict[str, dict[str, str]] = {}
    sep = card.reader_options.select_multiple_separator
    for name, (kind, list_name) in questions.items():
        column = name
        if column not in frame.columns:
            continue
        known = lists[list_name]
        values = pd.Series([code_text(v) for v in frame[column]], index=frame.index, dtype="object")
        if kind == "select_one":
            # an export "with labels" holds the labels: they are as good as the codes
            accepted = set(known) | set(known.values())
            unknown = sorted({v for v in values.dropna() if v not in accepted})
            if unknown:
                row = int(values.isin(unknown).to_numpy().nonzero()[0][0])
                raise ReadError(
                    f"{path}: column '{column}' has code {unknown[0]!r} ({row_unit} {first_row + row}) that choice list "
                    f"'{list_name}' in {form_path.name} lacks; add it to the 'choices' sheet"
                )
            labels[column] = dict(known)
        else:
            chosen = [None if v is None else set(v.split(sep)) - {""} for v in values]
            unknown = sorted({c for s in chosen if s is not None for c in s if c not in known})
            if unknown:
                raise ReadError(
                    f"{path}: select_multiple column '{column}' has code {unknown[0]!r} that choice list "
                    f"'{list_name}' in {form_path.name} lacks; add it to the 'choices' sheet"
                )
            for code in known:
                target = f"{column}/{code}"
                if target in frame.columns:
                    continue
                frame[target] = pd.Series([pd.NA if s is None else str(int(code in s)) for s in chosen], index=frame.index, dtype="object")
    return RawTable(frame, path, value_labels=labels, notes={"form": str(form_path)}, first_row=first_row, row_unit=row_unit)


def read_source_file(path: Path, card: SourceCard, raw_root: Path, reader: str | None = None) -> RawTable:
    """Read one raw file with the reader the card (or the file's own ``reader``) names."""
    reader = reader or card.reader
    if reader == "kobo":
        return read_kobo(path, card, raw_root)
    function = {
        "csv": read_csv,
        "excel": read_excel,
        "spss": read_spss,
        "stata": read_stata,
        "hxl": read_hxl,
        "parquet": read_parquet,
    }[reader]
    return function(path, card)


def _join(base: RawTable, extra: RawTable, key: str) -> pd.DataFrame:
    """Add ``extra``'s columns to ``base`` one-to-one on ``key``; every base row must match once."""
    for table in (base, extra):
        if key not in table.frame.columns:
            raise ReadError(f"{table.path}: join column '{key}' (files.join_on) not found")
    left = base.frame[key].map(code_text)
    right = extra.frame[key].map(code_text)
    if right.duplicated().any():
        raise ReadError(f"{extra.path}: join column '{key}' repeats ids; each id must appear once to join")
    lookup = pd.Series(np.arange(len(right)), index=right.to_numpy())
    position = left.map(lookup)
    if position.isna().any():
        first = int(np.flatnonzero(position.isna().to_numpy())[0])
        raise ReadError(
            f"{extra.path}: {int(position.isna().sum())} rows of {base.path.name} have no match on '{key}' "
            f"(first: {base.row_label(first)}); the joined file must cover every row"
        )
    added = extra.frame.drop(columns=[key]).iloc[position.astype(int).to_numpy()].reset_index(drop=True)
    added.index = base.frame.index
    # a column in both files (e.g. WEEK) is dropped from the joined file when it agrees everywhere
    for column in sorted(set(added.columns) & set(base.frame.columns)):
        if not added[column].map(code_text).equals(base.frame[column].map(code_text)):
            raise ReadError(
                f"{extra.path}: column '{column}' is also in {base.path.name} with different values; rename one of them"
            )
        added = added.drop(columns=[column])
    return pd.concat([base.frame, added], axis=1)


def read_source(card: SourceCard, raw_root: Path) -> RawTable:
    """Read every file of a card: stack the row files (same columns), then join the column files."""
    stacked = [spec for spec in card.files if not spec.join_on]
    joined = [spec for spec in card.files if spec.join_on]
    tables = [read_source_file(raw_root / spec.path, card, raw_root, spec.reader) for spec in stacked]
    if len(tables) == 1:
        result = tables[0]
    else:
        first = tables[0]
        for other in tables[1:]:
            if list(other.frame.columns) != list(first.frame.columns):
                diff = sorted(set(first.frame.columns) ^ set(other.frame.columns))[:5]
                raise ReadError(f"{other.path}: columns differ from {first.path.name} ({diff}); files of one source must share their columns")
        labels = {}
        for t in tables:
            for col, mapping in t.value_labels.items():
                labels.setdefault(col, {}).update(mapping)
        frame = pd.concat([t.frame for t in tables], ignore_index=True)
        result = RawTable(frame, first.path, value_labels=labels, notes={"files": [str(t.path) for t in tables]})
    for spec in joined:
        extra = read_source_file(raw_root / spec.path, card, raw_root, spec.reader)
        result.frame = _join(result, extra, spec.join_on)
        for col, mapping in extra.value_labels.items():
            result.value_labels.setdefault(col, mapping)
    return result
