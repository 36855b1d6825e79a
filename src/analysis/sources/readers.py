"""Readers for the formats CSOs share data in: CSV, Excel, SPSS, Stata, KoboToolbox/ODK, HXL, Parquet.

Every reader returns a :class:`RawTable`: the raw data frame (column names as in the file;
text formats read every cell as text so that codes such as ``"01"`` survive) and the value
labels it knows (SPSS/Stata value labels, Kobo choices), so that harmonisation can recode
either a code or its label. Every failure raises :class:`ReadError` with one line naming the
file and saying what to fix, never quoting a cell value (it may be personal data).

Raw files are opened only through :func:`raw_file`: a path relative to the raw root that, with
every symlink resolved, is a regular file inside the raw root and below the size limit. Text
files are streamed (encoding checked chunk by chunk, parsed by pandas from the file), so memory
stays a small multiple of the file size.
"""

from __future__ import annotations

import codecs
import csv
import importlib.util
import io
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.sources.card import SourceCard
from analysis.sources.privacy import quotable_code

#: Encodings tried, in order, when a card says ``encoding: auto`` (after a UTF-16 byte-order mark,
#: which Excel's "Unicode text" export writes). utf-8-sig also reads plain UTF-8 (and strips a
#: BOM); cp1252 is what Windows Excel writes for "CSV" in Western locales (curly quotes, €);
#: latin-1 decodes any byte sequence, so it is the last resort.
SNIFFED_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")

#: Excel engine: calamine (Rust, ~15x faster on survey exports) when installed, else openpyxl.
EXCEL_ENGINE = "calamine" if importlib.util.find_spec("python_calamine") else "openpyxl"


#: Largest raw file read or hashed, in bytes (``ANALYSIS_MAX_RAW_BYTES`` overrides it): checked
#: before a file is opened, so a wrong path can never make the ingest read for ever.
DEFAULT_MAX_RAW_BYTES = 16 * 10**9

#: Bytes read to sniff a text file's kind, encoding and delimiter.
SAMPLE_BYTES = 1 << 16

#: File signatures that say a "text" file is something else, and what to do about it.
SIGNATURES = (
    (b"PAR1", "a Parquet file", "set reader: parquet"),
    (b"PK\x03\x04", "a zip archive (an .xlsx workbook is one too)", "unzip it, or use reader: excel for a workbook"),
    (b"$FL2", "an SPSS .sav file", "set reader: spss"),
    (b"$FL3", "an SPSS .zsav file", "set reader: spss"),
    (b"<stata_dta>", "a Stata .dta file", "set reader: stata"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls (or other OLE) file", "re-save it as .xlsx and use reader: excel"),
    (b"\x1f\x8b", "a gzip archive", "decompress it first"),
    (b"BZh", "a bzip2 archive", "decompress it first"),
    (b"\xfd7zXZ", "an xz archive", "decompress it first"),
    (b"7z\xbc\xaf", "a 7-Zip archive", "extract it first"),
    (b"%PDF", "a PDF document", "export the table as CSV"),
    (b"SQLite format 3", "an SQLite database", "export the table as CSV"),
)


class ReadError(ValueError):
    """A raw file cannot be read as its card says (one-line message)."""


def max_raw_bytes() -> int:
    """The size limit of a raw file: ``$ANALYSIS_MAX_RAW_BYTES`` or :data:`DEFAULT_MAX_RAW_BYTES`."""
    value = os.environ.get("ANALYSIS_MAX_RAW_BYTES")
    try:
        return int(float(value)) if value else DEFAULT_MAX_RAW_BYTES
    except ValueError:
        return DEFAULT_MAX_RAW_BYTES


def raw_file(raw_root: Path, relative: str, card_label: str = "the source card", key: str = "files") -> Path:
    """The checked path of a raw file: inside the raw root, a regular file, below the size limit.

    ``relative`` (a card's ``files.path`` or ``reader_options.form``) must be relative to the
    raw root; every symlink is resolved and the target must still be inside the raw root (a
    link to a shared data folder is fine when that folder is the raw root). Devices, pipes and
    sockets are refused before they are opened, and the size is checked before any read or hash.

    Raises
    ------
    ReadError
        One line naming the file, what is wrong and the card key to fix.
    """
    from analysis.sources.card import relative_raw_path

    try:
        relative_raw_path(relative)
    except ValueError as exc:
        raise ReadError(f"{card_label}: key '{key}': {relative!r} {exc}") from None
    root = Path(raw_root).resolve()
    path = root / relative
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise ReadError(f"{path}: file not found (check '{key}' in {card_label} and --raw-root)") from None
    except (OSError, RuntimeError) as exc:  # symlink loops, permissions
        reason = getattr(exc, "strerror", None) or "a symlink loop"
        raise ReadError(f"{path}: cannot be resolved ({reason}); check '{key}' in {card_label}") from None
    if resolved != root and root not in resolved.parents:
        raise ReadError(
            f"{path}: is a symlink to a file outside the raw root {root}; copy the file into the raw root "
            "or point --raw-root at the folder that holds it"
        )
    try:
        info = resolved.stat()
    except OSError as exc:
        raise ReadError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
    if stat.S_ISDIR(info.st_mode):
        raise ReadError(f"{path}: is a folder, not a file; give the file inside it in '{key}' of {card_label}")
    if not stat.S_ISREG(info.st_mode):
        raise ReadError(f"{path}: is not a regular file (a device, pipe or socket); give a data file in '{key}'")
    limit = max_raw_bytes()
    if info.st_size > limit:
        raise ReadError(
            f"{path}: {info.st_size / 1e9:.1f} GB is above the {limit / 1e9:.1f} GB limit of a raw file; "
            "is it the right file? (raise the limit with ANALYSIS_MAX_RAW_BYTES)"
        )
    return resolved


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
    # the line/row number of each data row when they are not consecutive (multi-line quoted
    # fields, blank lines, rows removed by the card's filter)
    row_numbers: np.ndarray | None = None
    # SPSS/Stata user-missing values set missing by the reader: {raw column: {code: count}}
    user_missing: dict[str, dict[str, int]] = field(default_factory=dict)

    def row_label(self, position: int) -> str:
        """How the user finds data row ``position`` (0-based) in the file: ``"line 7"``, ``"row 3"``, ``"case 12"``."""
        if self.row_numbers is not None:
            return f"{self.row_unit} {int(self.row_numbers[int(position)])}"
        return f"{self.row_unit} {self.first_row + int(position)}"

    def subset(self, mask: np.ndarray) -> RawTable:
        """The rows where ``mask`` holds, keeping every row's line number for messages."""
        numbers = self.row_numbers if self.row_numbers is not None else self.first_row + np.arange(len(self.frame))
        frame = self.frame.loc[mask].reset_index(drop=True)
        return RawTable(frame, self.path, self.value_labels, self.notes, self.description, self.first_row,
                        self.row_unit, numbers[mask], self.user_missing)


_INTEGRAL_FLOAT = re.compile(r"^([+-]?\d+)\.0+$")


def code_text(value) -> str | None:
    """A raw value as comparable text: ``1``, ``1.0``, ``"1"`` and ``"1.0"`` all give ``"1"`` (``"01"``
    stays ``"01"``); NA gives None."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    # "1.0" in a text file is how pandas and spreadsheets write the float 1: the code 1
    return _INTEGRAL_FLOAT.sub(r"\1", text) if "." in text else text


def codes_as_text(series: pd.Series) -> pd.Series:
    """:func:`code_text` of every value (object Series, None for NA), computed once per distinct value.

    Text columns (what the text readers return) take a vectorised path: a strip in Arrow.
    """
    if pd.api.types.is_string_dtype(series.dtype) and not pd.api.types.is_object_dtype(series.dtype):
        stripped = series.str.strip().str.replace(_INTEGRAL_FLOAT.pattern, r"\1", regex=True)
        values = stripped.to_numpy(dtype=object, na_value=None)
        return pd.Series(values, index=series.index, dtype="object")
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    texts = np.array([code_text(u) for u in list(uniques)] + [None], dtype=object)
    return pd.Series(texts[codes], index=series.index, dtype="object")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ReadError(f"{path}: file not found (check 'files' in the source card and --raw-root)")
    if path.is_dir():
        raise ReadError(f"{path}: is a folder, not a file; give the file inside it in the source card")
    if path.stat().st_size == 0:
        raise ReadError(f"{path}: file is empty; re-export the data")


def _sample(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(SAMPLE_BYTES)


def _check_is_text(path: Path, sample: bytes, encoding: str, reader: str = "csv") -> None:
    """Refuse binary files read as text with what they are, never printing their bytes."""
    for signature, what, fix in SIGNATURES:
        if sample.startswith(signature):
            raise ReadError(f"{path}: is {what}, not a {reader.upper()} text file; {fix}")
    if encoding.lower().replace("_", "-").startswith("utf-16") or sample[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return
    nul = sample.count(b"\x00")
    if nul:
        even, odd = sample[0::2].count(b"\x00"), sample[1::2].count(b"\x00")
        if nul > len(sample) // 4 and max(even, odd) > 0.9 * nul:
            order = "utf-16-le" if odd > even else "utf-16-be"
            raise ReadError(
                f"{path}: looks like UTF-16 text without a byte-order mark; set reader_options.encoding: {order}"
            )
        raise ReadError(f"{path}: holds binary data (NUL bytes), not {reader.upper()} text; is it the right file?")


def _validate_encoding(path: Path, encoding: str) -> None:
    """Decode the whole file chunk by chunk (constant memory); raise ``UnicodeDecodeError`` on the first bad byte."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                raise UnicodeDecodeError(exc.encoding, exc.object, offset + exc.start, offset + exc.end, exc.reason) from None
            offset += len(block)
        decoder.decode(b"", final=True)


def _detect_encoding(path: Path, sample: bytes, encoding: str) -> str:
    if encoding != "auto":
        try:
            _validate_encoding(path, encoding)
        except UnicodeDecodeError as exc:
            raise ReadError(
                f"{path}: not valid {encoding} at byte {exc.start}; set reader_options.encoding "
                "to the file's encoding (e.g. latin-1) or 'auto'"
            ) from None
        except LookupError:
            raise ReadError(f"{path}: unknown encoding {encoding!r} in reader_options.encoding") from None
        return encoding
    if sample[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            _validate_encoding(path, "utf-16")
        except UnicodeDecodeError:
            raise ReadError(f"{path}: starts with a UTF-16 byte-order mark but is not valid UTF-16; re-export it") from None
        return "utf-16"
    for candidate in SNIFFED_ENCODINGS:
        try:
            _validate_encoding(path, candidate)
            return candidate
        except UnicodeDecodeError:
            continue
    raise ReadError(f"{path}: cannot decode the file")  # pragma: no cover - latin-1 decodes anything


def _decode(path: Path, encoding: str) -> tuple[str, str]:
    """The whole text of a (small) file, e.g. for tests; large files are streamed by :func:`read_text_table`."""
    sample = _sample(path)
    _check_is_text(path, sample, encoding)
    chosen = _detect_encoding(path, sample, encoding)
    return path.read_bytes().decode(chosen), chosen


def _sniff_delimiter(text: str, given: str | None) -> str:
    if given:
        return given
    sample = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _record_lines(path: Path, encoding: str, delimiter: str, header_row: int) -> tuple[np.ndarray, list[int]]:
    """(first physical line of every data record, its number of fields), by a csv pass over the file.

    Blank lines are skipped as pandas skips them; a quoted field may span several lines, so
    record k does not start on line ``header_row + 2 + k`` in general.
    """
    starts: list[int] = []
    widths: list[int] = []
    with open(path, encoding=encoding, newline="") as handle:
        for _ in range(header_row):
            handle.readline()
        reader = csv.reader(handle, delimiter=delimiter)
        previous_end = header_row
        header_seen = False
        for record in reader:
            start = previous_end + 1
            previous_end = header_row + reader.line_num
            if not record or all(not f.strip() for f in record) and len(record) <= 1:
                continue
            if not header_seen:
                header_seen = True
                continue
            starts.append(start)
            widths.append(len(record))
    return np.asarray(starts, dtype=np.int64), widths


def _check_widths(path: Path, encoding: str, delimiter: str, header_row: int) -> None:
    """Raise ``pandas.errors.ParserError`` when a row has more fields than the header.

    A streaming pass of Arrow's (C++, multi-threaded) CSV parser over one column: constant
    memory. Arrow also refuses rows with fewer fields, which pandas accepts (as missing values);
    then the slower csv-module pass decides.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(skip_rows=header_row, encoding=encoding, block_size=1 << 22),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(include_columns=[], strings_can_be_null=False),
        )
        for _ in reader:
            pass
    except pa.ArrowInvalid as exc:
        match = re.search(r"Expected (\d+) columns, got (\d+)", str(exc))
        if match and int(match.group(2)) > int(match.group(1)):
            raise pd.errors.ParserError(str(exc).splitlines()[0]) from None
        if match:
            _, widths = _record_lines(path, encoding, delimiter, header_row)
            with open(path, encoding=encoding, newline="") as handle:
                for _ in range(header_row):
                    handle.readline()
                header = next(csv.reader(handle, delimiter=delimiter), [])
            if any(w > len(header) for w in widths):
                raise pd.errors.ParserError("a row has more fields than the header") from None


def _count_lines(path: Path) -> int:
    lines, last = 0, b""
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (1 if last not in (b"", b"\n") else 0)


@dataclass
class _TextPlan:
    """What :func:`_plan_text` learnt about a delimited text file before parsing it."""

    encoding: str
    delimiter: str
    head_text: str
    header_row: int
    wanted: object

    def read_options(self) -> dict:
        """The pandas options every parse of the file uses (in one piece or in batches)."""
        return {"sep": self.delimiter, "encoding": self.encoding, "dtype": str, "keep_default_na": False,
                "na_values": [""], "skiprows": self.header_row, "skip_blank_lines": True, "usecols": self.wanted}


def _plan_text(path: Path, opts, reader: str, wanted) -> _TextPlan:
    """Check that ``path`` is text (not Parquet, zip, SPSS..., not UTF-16 without a BOM), validate
    its encoding in chunks and sniff its delimiter from the first lines."""
    sample = _sample(path)
    _check_is_text(path, sample, opts.encoding, reader)
    encoding = _detect_encoding(path, sample, opts.encoding)
    head_text = sample.decode(encoding, errors="ignore") if encoding != "utf-16" else sample.decode("utf-16", errors="ignore")
    if not head_text.strip() and path.stat().st_size <= SAMPLE_BYTES:
        raise ReadError(f"{path}: file has no data (only blank lines)")
    delimiter = _sniff_delimiter(head_text, opts.delimiter)
    return _TextPlan(encoding, delimiter, head_text, opts.header_row, None if encoding == "utf-16" else wanted)


def _parser_error(path: Path, plan: _TextPlan, exc: Exception) -> ReadError:
    """A malformed-CSV error naming the first line with more fields than the header."""
    where = ""
    try:
        starts, widths = _record_lines(path, plan.encoding, plan.delimiter, plan.header_row)
        header_width = len(next(csv.reader(io.StringIO(plan.head_text.splitlines()[plan.header_row]),
                                           delimiter=plan.delimiter)))
        bad = [i for i, w in enumerate(widths) if w > header_width]
        if bad:
            where = f" at line {int(starts[bad[0]])} ({widths[bad[0]]} fields, the header has {header_width})"
    except (csv.Error, IndexError, StopIteration, UnicodeDecodeError):
        pass
    if not where:
        line = re.search(r"line (\d+)", str(exc))
        where = f" at line {int(line.group(1)) + plan.header_row}" if line else ""
    return ReadError(f"{path}: malformed CSV{where} (wrong number of fields); fix the quoting or delimiter")


def _empty_error(path: Path, plan: _TextPlan) -> ReadError:
    if not plan.head_text.strip():
        return ReadError(f"{path}: file has no data (only blank lines)")
    return ReadError(f"{path}: file has no header row at row {plan.header_row}")


def _check_text_header(path: Path, plan: _TextPlan, frame: pd.DataFrame) -> None:
    """Refuse duplicated or empty headers; keep the full header in ``frame.attrs["header"]``
    when only some columns were parsed."""
    lines = plan.head_text.splitlines()
    header_line = next(csv.reader(io.StringIO(lines[plan.header_row] if len(lines) > plan.header_row else ""),
                                  delimiter=plan.delimiter), [])
    seen = [h.strip() for h in header_line if h.strip()]
    dup = sorted({h for h in seen if seen.count(h) > 1})
    if dup:
        raise ReadError(f"{path}: duplicated column names {dup[:5]} in the header; give every column a unique name")
    if plan.wanted is not None:
        frame.attrs["header"] = header_line
    if plan.wanted is None or frame.shape[1]:
        _check_header(path, frame)


def read_text_table(path: Path, opts, reader: str = "csv", wanted=None) -> tuple[pd.DataFrame, str, np.ndarray | None]:
    """Parse a delimited text file as text cells: ``(frame, encoding, row line numbers or None)``.

    The file is checked to be text (not Parquet, zip, SPSS..., not UTF-16 without a BOM), its
    encoding validated in chunks, its delimiter sniffed from the first lines, and it is parsed
    by pandas straight from the file (no copy of the whole text in memory). ``wanted(name)``,
    when given, says which columns to keep: the others are skipped by the parser (a survey
    export has hundreds of columns a card does not use), and the full header is kept in
    ``frame.attrs["header"]``. :func:`iter_text_batches` reads the same file in batches.
    """
    plan = _plan_text(path, opts, reader, wanted)
    with _text_parse_errors(path, plan):
        if plan.wanted is not None:
            # pandas ignores extra fields of columns it skips: check every row's width first
            _check_widths(path, plan.encoding, plan.delimiter, plan.header_row)
        frame = pd.read_csv(path, **plan.read_options())
    _check_text_header(path, plan, frame)
    return frame, plan.encoding, text_row_numbers(path, plan, len(frame))


def text_row_numbers(path: Path, plan: _TextPlan, records: int) -> np.ndarray | None:
    """The first line of every data record when records are not one line each (multi-line
    quoted fields or blank lines), else None."""
    if plan.encoding != "utf-16" and _count_lines(path) != plan.header_row + 1 + records:
        # multi-line quoted fields or blank lines: number every record by its first line
        starts, _ = _record_lines(path, plan.encoding, plan.delimiter, plan.header_row)
        if len(starts) == records:
            return starts
    return None


def iter_text_batches(path: Path, opts, batch_rows: int, wanted=None, reader: str = "csv",
                      check_widths: bool = True):
    """Parse a delimited text file in batches of ``batch_rows`` records with exactly the checks
    and cell rules of :func:`read_text_table`: yields ``(frame, plan)``, the first batch's frame
    carrying the full header in ``attrs["header"]``. Frames are indexed from 0 in each batch.
    ``check_widths=False`` skips the row-width pass (when an earlier pass over the same file
    made it)."""
    plan = _plan_text(path, opts, reader, wanted)
    with _text_parse_errors(path, plan):
        if plan.wanted is not None and check_widths:
            _check_widths(path, plan.encoding, plan.delimiter, plan.header_row)
        chunks = pd.read_csv(path, chunksize=batch_rows, **plan.read_options())
        first = True
        with chunks:
            for frame in chunks:
                frame = frame.reset_index(drop=True)
                if first:
                    _check_text_header(path, plan, frame)
                    first = False
                yield frame, plan


@contextmanager
def _text_parse_errors(path: Path, plan: _TextPlan) -> Iterator[None]:
    """Turn the parser's errors on a delimited text file into one-line errors (:class:`ReadError`).

    Parameters
    ----------
    path
        The raw file being parsed (named in the message).
    plan
        Its encoding, delimiter and header row, as sniffed by :func:`_plan_text`.

    Raises
    ------
    ReadError
        A malformed file (the first line with more fields than the header, see
        :func:`_parser_error`), a file with no header or no data, or one that is not valid in
        its encoding.
    """
    try:
        yield
    except pd.errors.ParserError as exc:
        raise _parser_error(path, plan, exc) from None
    except pd.errors.EmptyDataError:
        raise _empty_error(path, plan) from None
    except UnicodeDecodeError:  # pragma: no cover - the encoding was validated
        raise ReadError(f"{path}: not valid {plan.encoding}; set reader_options.encoding") from None


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
    frame, encoding, row_numbers = read_text_table(path, opts, wanted=_used_columns(card))
    header = frame.attrs.pop("header", None)
    return RawTable(frame, path, notes={"encoding": encoding, **({"header": header} if header else {})},
                    description=f"header_row: {opts.header_row}", first_row=opts.header_row + 2, row_unit="line",
                    row_numbers=row_numbers)


def _used_columns(card: SourceCard):
    """Which raw columns a CSV read keeps: those the card uses, its personal columns (for the
    scan), replicate weights; None (every column) when the card keeps whole patterns open."""
    import fnmatch

    from analysis.sources.row_filter import filter_columns, parse_filter

    names = {c for _, c in card.used_raw_columns()} | set(card.personal_columns)
    if card.filter:
        names |= set(filter_columns(parse_filter(card.filter)))
    patterns = []
    replicate = card.design.replicate if card.design else None
    if replicate is not None:
        if isinstance(replicate.columns, list):
            names |= set(replicate.columns)
        else:
            patterns.append(replicate.columns)
    if not names:
        return None
    return lambda column: column in names or any(fnmatch.fnmatch(column, p) for p in patterns)


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
        # user_missing=True: the file's user-missing values (SPSS missing ranges, Stata .a-.z)
        # arrive as values, so that they are set missing here *and counted*
        frame, meta = reader(str(path), apply_value_formats=False, user_missing=True)
    except Exception as exc:  # noqa: BLE001 - pyreadstat.ReadstatError, OSError... for truncated/invalid files
        label = "SPSS .sav" if kind == "spss" else "Stata .dta"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReadError(f"{path}: not a readable {label} file ({reason}); the file may be truncated, re-export it") from None
    user_missing = _set_user_missing(frame, meta, kind)
    labels: dict[str, dict[str, str]] = {}
    if card.reader_options.value_labels:
        for column, label_set in (meta.variable_to_label or {}).items():
            mapping = (meta.value_labels or {}).get(label_set, {})
            labels[column] = {code_text(k): str(v) for k, v in mapping.items()}
    return RawTable(frame, path, value_labels=labels, notes={"rows": meta.number_rows}, user_missing=user_missing)


def _set_user_missing(frame: pd.DataFrame, meta, kind: str) -> dict[str, dict[str, int]]:
    """Set the file's user-missing values to missing in place; return their counts per column and code.

    SPSS declares discrete values or ranges per variable (``meta.missing_ranges``); Stata's
    extended missing values ``.a``-``.z`` arrive as the letters (``meta.missing_user_values``).
    """
    counts: dict[str, dict[str, int]] = {}
    if kind == "spss":
        for column, ranges in (getattr(meta, "missing_ranges", None) or {}).items():
            if column not in frame.columns:
                continue
            values = frame[column]
            hit = np.zeros(len(frame), dtype=bool)
            numeric = pd.api.types.is_numeric_dtype(values)
            for spec in ranges:
                lo, hi = spec.get("lo"), spec.get("hi")
                if numeric and isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
                    hit |= ((values >= lo) & (values <= hi)).to_numpy(dtype=bool, na_value=False)
                else:
                    hit |= (values.astype("string") == str(lo)).to_numpy(dtype=bool, na_value=False)
            if hit.any():
                codes = codes_as_text(values[hit]).value_counts()
                counts[column] = {str(code): int(n) for code, n in codes.items()}
                frame[column] = values.where(~hit)
    else:
        for column, letters in (getattr(meta, "missing_user_values", None) or {}).items():
            if column not in frame.columns:
                continue
            values = frame[column]
            hit = values.isin([str(letter) for letter in letters]).to_numpy(dtype=bool)
            if hit.any():
                counts[column] = {f".{code}": int(n) for code, n in values[hit].value_counts().items()}
                frame[column] = pd.to_numeric(values.where(~hit), errors="coerce")
    return counts


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
    frame, encoding, row_numbers = read_text_table(path, opts, reader="hxl")
    first_row = opts.header_row + 2
    if row_numbers is None:
        row_numbers = first_row + np.arange(len(frame))
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
        row_numbers = row_numbers[row + 1:]
    names = []
    for tag, header in zip(tags, headers):
        norm = normalise_hxl_tag(tag) if isinstance(tag, str) else ""
        names.append(norm or str(header))
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ReadError(f"{path}: HXL tags {dup[:5]} appear on more than one column; add attributes to tell them apart")
    frame.columns = names
    return RawTable(frame, path, notes={"encoding": encoding, "hxl_header": dict(zip(names, map(str, headers)))},
                    first_row=first_row, row_unit="line", row_numbers=row_numbers)


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
    list lacks is an error naming the column, the row and the list (the value itself is shown
    only when it is code-like, :func:`~analysis.sources.privacy.quotable_code`: a select_one
    that held free text must not print it). A select_multiple exported with labels instead of
    codes is recognised and the message says how to re-export it.
    """
    _check_file(path)
    form_path = raw_file(raw_root, card.reader_options.form, card.path_label, "reader_options.form")
    first_row, row_unit = card.reader_options.header_row + 2, "line"
    row_numbers = None
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        frame = _excel_sheet(path, card.reader_options.sheet, card.reader_options.header_row)
        row_unit = "row"
    else:
        frame, _, row_numbers = read_text_table(path, card.reader_options, reader="kobo")
    _check_header(path, frame)

    def where(position: int) -> str:
        number = row_numbers[position] if row_numbers is not None else first_row + position
        return f"{row_unit} {int(number)}"

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
            bad = values.notna() & ~values.isin(accepted)
            if bad.any():
                position = int(np.flatnonzero(bad.to_numpy())[0])
                code = quotable_code(values.iloc[position])
                what = f"code {code}" if code else "a value that is not a code (not shown: it may be personal data)"
                raise ReadError(
                    f"{path}: column '{column}' has {what} ({where(position)}; {int(bad.sum())} row{'s' if int(bad.sum()) != 1 else ''}) that choice list "
                    f"'{list_name}' in {form_path.name} lacks; add the code to the 'choices' sheet or correct the answer"
                )
            labels[column] = dict(known)
        else:
            chosen = [None if v is None else set(v.split(sep)) - {""} for v in values]
            unknown = {c for s in chosen if s is not None for c in s if c not in known}
            if unknown:
                position = next(i for i, s in enumerate(chosen) if s is not None and s & unknown)
                label_words = {w for label in known.values() for w in str(label).split(sep)}
                if unknown <= label_words | set(known.values()):
                    raise ReadError(
                        f"{path}: select_multiple column '{column}' holds the choice labels of list '{list_name}', "
                        f"not their codes ({where(position)}): export the data from Kobo with 'XML values and "
                        "headers' (not labels)"
                    )
                code = quotable_code(min(unknown))
                what = f"code {code}" if code else "a value that is not a code (not shown: it may be personal data)"
                raise ReadError(
                    f"{path}: select_multiple column '{column}' has {what} ({where(position)}) that choice list "
                    f"'{list_name}' in {form_path.name} lacks; add it to the 'choices' sheet"
                )
            for code in known:
                target = f"{column}/{code}"
                if target in frame.columns:
                    continue
                frame[target] = pd.Series([pd.NA if s is None else str(int(code in s)) for s in chosen], index=frame.index, dtype="object")
    return RawTable(frame, path, value_labels=labels, notes={"form": str(form_path)}, first_row=first_row,
                    row_unit=row_unit, row_numbers=row_numbers)


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
    tables = [read_source_file(raw_file(raw_root, spec.path, card.path_label), card, raw_root, spec.reader)
              for spec in stacked]
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
        extra = read_source_file(raw_file(raw_root, spec.path, card.path_label), card, raw_root, spec.reader)
        result.frame = _join(result, extra, spec.join_on)
        for col, mapping in extra.value_labels.items():
            result.value_labels.setdefault(col, mapping)
    return result
