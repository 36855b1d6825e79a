"""The one result schema for every estimate and every table, and its exports.

Every function in the library that returns estimates returns a tidy long table with
:data:`RESULT_COLUMNS`, so that runs for different sources, groups and countries stack
into one comparable table (``outputs/tables/all_estimates.csv``).

Suppression is a flag, not a missing value: a suppressed row stays in the table with
``flag == "suppressed"`` and its numbers blanked (see :mod:`analysis.disclosure`).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

#: Columns of the one result schema, in order.
RESULT_COLUMNS: list[str] = [
    "source",
    "country",
    "group",
    "indicator",
    "breakdown",
    "cell",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "n_unweighted",
    "n_weighted",
    "flag",
    "method",
]

#: Allowed values of the ``flag`` column.
FLAGS: tuple[str, ...] = ("ok", "caution", "suppressed")

#: Numeric columns that disclosure control blanks in a suppressed row.
NUMERIC_COLUMNS: list[str] = ["estimate", "se", "ci_low", "ci_high", "n_unweighted", "n_weighted"]

#: Separator used inside ``breakdown`` (dimension names) and ``cell`` (their categories).
CELL_SEPARATOR = " × "

_DTYPES = {
    "source": "string",
    "country": "string",
    "group": "string",
    "indicator": "string",
    "breakdown": "string",
    "cell": "string",
    "estimate": "float64",
    "se": "float64",
    "ci_low": "float64",
    "ci_high": "float64",
    "n_unweighted": "Int64",
    "n_weighted": "float64",
    "flag": "string",
    "method": "string",
}


class ResultSchemaError(ValueError):
    """A table does not follow the one result schema."""


def empty_result() -> pd.DataFrame:
    """Return an empty table with the result schema's columns and dtypes."""
    return conform(pd.DataFrame(columns=RESULT_COLUMNS))


#: The columns that say which report row an estimate belongs to. Estimators leave them empty;
#: :func:`label` stamps them once, where a chapter places its estimates in the report.
IDENTITY_COLUMNS: tuple[str, ...] = ("source", "country", "group")


def label(table: pd.DataFrame, *, source=None, country=None, group=None) -> pd.DataFrame:
    """``table`` with its identity columns (:data:`IDENTITY_COLUMNS`) set: ``source``,
    ``country`` and ``group`` given (not None) fill the whole column; the others are kept as
    they are (NA when the column is absent). Returns a copy; the rows are unchanged.
    """
    out = table.copy()
    for column, value in (("source", source), ("country", country), ("group", group)):
        if value is not None:
            out[column] = pd.array([str(value)] * len(out), dtype="string")
        elif column not in out.columns:
            out[column] = pd.array([pd.NA] * len(out), dtype="string")
    return out


def join_cell(values) -> str:
    """Join the categories (or dimension names) of one cell into a single label.

    ``join_cell(["female", "yes"]) == "female × yes"``; a single value is returned as a string.
    An empty sequence (the whole population) gives ``"all"``.
    """
    values = [str(v) for v in values]
    return CELL_SEPARATOR.join(values) if values else "all"


def split_cell(label: str) -> list[str]:
    """Inverse of :func:`join_cell`."""
    return [] if label == "all" else str(label).split(CELL_SEPARATOR)


def conform(frame: pd.DataFrame, **defaults) -> pd.DataFrame:
    """Return ``frame`` with exactly the result columns, in order, with their dtypes.

    Columns missing from ``frame`` are filled from ``defaults`` (e.g. ``source="demo_youth"``)
    or left empty; extra columns are dropped. ``flag`` defaults to ``"ok"``.

    Raises
    ------
    ResultSchemaError
        If a flag is not one of :data:`FLAGS`.
    """
    out = frame.copy()
    defaults.setdefault("flag", "ok")
    for column in RESULT_COLUMNS:
        if column not in out.columns:
            out[column] = defaults.get(column, pd.NA)
        elif column in defaults:
            out[column] = out[column].where(out[column].notna(), defaults[column])
    out = out[RESULT_COLUMNS]
    for column, dtype in _DTYPES.items():
        if out[column].dtype == pd.api.types.pandas_dtype(dtype):
            continue  # already the schema's dtype (most columns of a table conformed before)
        if dtype == "Int64":
            out[column] = pd.to_numeric(out[column], errors="coerce").round().astype("Int64")
        elif dtype == "float64":
            out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
        else:
            out[column] = out[column].astype("string")
    validate(out)
    return out.reset_index(drop=True)


def validate(frame: pd.DataFrame) -> None:
    """Check that ``frame`` follows the result schema.

    Raises
    ------
    ResultSchemaError
        Naming the missing columns, or the rows whose flag is unknown, or the suppressed
        rows whose numbers were not blanked.
    """
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise ResultSchemaError(f"result table lacks columns {missing}; expected {RESULT_COLUMNS}")
    bad = ~frame["flag"].isin(FLAGS)
    if bad.any():
        rows = list(frame.index[bad][:5])
        raise ResultSchemaError(
            f"result table rows {rows} have flag values "
            f"{sorted(set(frame.loc[bad, 'flag'].astype(str)))}; allowed flags are {list(FLAGS)}"
        )
    suppressed = frame["flag"] == "suppressed"
    if suppressed.any():
        leaked = frame.loc[suppressed, NUMERIC_COLUMNS].notna().any(axis=1)
        if leaked.any():
            rows = list(frame.index[suppressed][leaked.to_numpy()][:5])
            raise ResultSchemaError(
                f"result table rows {rows} are flagged suppressed but still carry numbers; "
                "blank them with analysis.disclosure.apply_suppression"
            )


#: First characters that make a spreadsheet evaluate a cell as a formula (OWASP, "CSV Injection").
FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


def neutralise_text(value: str) -> str:
    """A text cell made safe for spreadsheets: ``'`` before a cell a spreadsheet would evaluate.

    OWASP's rule: a cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return is
    prefixed with a single quote, which spreadsheets read as "this is text". A plain number
    written as text ("-3.2") is left alone (it cannot be a formula). A value that already starts
    with a quote gets one more, so that :func:`restore_text` gives back exactly the original.
    """
    if value and (value[0] == "'" or (value[0] in FORMULA_TRIGGERS and not _PLAIN_NUMBER.match(value))):
        return "'" + value
    return value


def restore_text(value: str) -> str:
    """Inverse of :func:`neutralise_text`."""
    return value.removeprefix("'")


def _text_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c]) or frame[c].dtype == object]


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell passed through :func:`neutralise_text` (numbers untouched)."""
    out = frame.copy()
    for column in _text_columns(out):
        out[column] = out[column].map(lambda v: neutralise_text(v) if isinstance(v, str) else v)
    return out


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a result table as CSV with stable formatting (byte-identical on re-run).

    Floats are written with 10 significant digits; rows keep their order. Text cells that a
    spreadsheet would evaluate as formulas are neutralised (:func:`neutralise_text`; the labels
    come from partner-written catalogues); :func:`read_csv` restores them. The file is written
    atomically: a full disk leaves neither a truncated table nor a temporary file.
    """
    validate(frame)
    return write_text_csv(frame, path, float_format="%.10g")


def csv_text(frame: pd.DataFrame, *, neutralised: bool = False, **options) -> str:
    """``frame`` as CSV text with every text cell neutralised (:func:`neutralise_text`), ``\n``
    line ends and no index; ``options`` go to :meth:`pandas.DataFrame.to_csv` (e.g. ``float_format``).

    ``neutralised``: the caller has already neutralised every text cell (as
    :func:`analysis.exchange.sdmx_csv.neutralise_text_cells` does, leaving codes alone) and
    they are written as they are: neutralising twice would double the quote of a cell such as
    ``'=x``.

    The one way the project writes a CSV that someone may open in a spreadsheet (OWASP's
    CSV-injection rule); ``tests/test_csv_injection.py`` finds any other ``to_csv`` in ``src``.
    """
    safe = frame if neutralised else neutralise_frame(frame)
    # Python's csv module quotes a field holding "\r" only when "\r" ends lines; such a field
    # (hostile or broken labels) would split its row, so then every field is quoted.
    has_cr = any(isinstance(v, str) and "\r" in v for c in _text_columns(safe) for v in safe[c])
    return safe.to_csv(index=False, lineterminator="\n", quoting=csv.QUOTE_ALL if has_cr else csv.QUOTE_MINIMAL,
                       **options)


def write_text_csv(frame: pd.DataFrame, path: str | Path, *, neutralised: bool = False, **options) -> Path:
    """Write any table as CSV through :func:`csv_text` (text cells neutralised, or already
    ``neutralised`` by the caller), atomically.

    For result tables use :func:`write_csv`, which also validates the result schema.
    """
    from analysis.atomic import write_atomic

    return write_atomic(path, csv_text(frame, neutralised=neutralised, **options))


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a result table written by :func:`write_csv`, restoring dtypes and neutralised text."""
    frame = pd.read_csv(path, dtype={"cell": "string", "breakdown": "string"}, keep_default_na=True)
    for column in _text_columns(frame):
        frame[column] = frame[column].map(lambda v: restore_text(v) if isinstance(v, str) else v)
    return conform(frame)


def stack(frames) -> pd.DataFrame:
    """Concatenate result tables into one, conforming each."""
    frames = [conform(f) for f in frames if f is not None and len(f)]
    if not frames:
        return empty_result()
    return pd.concat(frames, ignore_index=True)


def is_blank(value) -> bool:
    """True for a missing number (NaN, None, pd.NA)."""
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


# --------------------------------------------------------------------------------------------
# Presentation: formatted accessible HTML tables and an Excel workbook per indicator
# --------------------------------------------------------------------------------------------

#: Columns of the formatted (reader-facing) result table; headings are ``tables.columns.<id>``
#: in the text catalogue (``params/text.yml``).
DISPLAY_COLUMNS: tuple[str, ...] = ("indicator", "cell", "estimate", "ci", "n_unweighted", "flag")


def display_headings() -> dict[str, str]:
    """Headings of :data:`DISPLAY_COLUMNS` (and ``source``) from the text catalogue."""
    from analysis.text import text

    return {c: text(f"tables.columns.{c}") for c in ("source", *DISPLAY_COLUMNS)}


#: Marker in ``method`` of an estimate flagged for a degenerate interval, followed by its cause
#: (see :func:`analysis.chapters.common.flag_degenerate_intervals`).
DEGENERATE_MARK = "degenerate interval"


def degenerate_cause(method) -> str | None:
    """The cause id after :data:`DEGENERATE_MARK` in ``method`` ("all_same", ...), or None."""
    method = "" if method is None or (not isinstance(method, str) and pd.isna(method)) else str(method)
    if DEGENERATE_MARK + ": " not in method:
        return None
    return method.split(DEGENERATE_MARK + ": ", 1)[1].split(";", 1)[0].strip()


def flag_text(flag: str, method=None) -> str:
    """Reader-facing words for a flag (``tables.flags.<flag>``); "" for ok. A caution for a
    degenerate interval names its cause (``tables.flags.degenerate`` with ``tables.degenerate.<cause>``)."""
    from analysis.text import has_text, text

    if flag == "ok":
        return ""
    cause = degenerate_cause(method)
    if flag == "caution" and cause and has_text(f"tables.degenerate.{cause}"):
        return text("tables.flags.degenerate", cause=text(f"tables.degenerate.{cause}"))
    return text(f"tables.flags.{flag}") if has_text(f"tables.flags.{flag}") else str(flag)


def _format_number(value, scale: float, decimals: int) -> str:
    """A displayed number in the page language (``ANALYSIS_LANG``): its decimal sign ("42,4" in
    French) through Babel; the CSV files keep dot decimals (:func:`write_csv`)."""
    from analysis.i18n import format_fixed
    from analysis.text import language

    if is_blank(value) or pd.isna(value):
        return ""
    return format_fixed(float(value) * scale, language(), decimals)


def format_decimal(value, decimals: int = 1) -> str:
    """A displayed number with ``decimals`` decimals in the page language ("0,42" in French)."""
    return _format_number(value, 1.0, decimals)


def format_percent_value(percent, decimals: int = 1) -> str:
    """A displayed percent (already ×100) in the page language: "12.3%", "12,3 %" in French
    (``tables.percent`` of the text catalogue)."""
    from analysis.text import text

    shown = _format_number(percent, 1.0, decimals)
    return text("tables.percent", value=shown) if shown else ""


def format_count(value) -> str:
    """A displayed count (respondents, rows) with the page language's digit grouping: "1,234"
    in English, "1 234" in French; "" for a blank."""
    from analysis.i18n import format_fixed
    from analysis.text import language

    if is_blank(value) or pd.isna(value):
        return ""
    return format_fixed(int(value), language(), 0, grouping=True)


def _cell_label(cell: str, labels: dict) -> str:
    """Label of a cell ("female × yes"), or of a comparison ("yes vs no"), from category labels."""
    if cell == "all":
        return labels.get("all", "all")
    sides = cell.split(" vs ")
    return " vs ".join(" × ".join(labels.get(part, part) for part in split_cell(side)) for side in sides)


def format_results(
    table: pd.DataFrame,
    *,
    indicator_labels: dict | None = None,
    cell_labels: dict | None = None,
    percent_indicators=(),
    columns: dict | None = None,
    decimals: int = 1,
    source_labels: dict | None = None,
    show_source: bool | None = None,
) -> pd.DataFrame:
    """Format a result table for readers: labels, rounded numbers, CI as "low–high", flag words.

    Proportions of ``percent_indicators`` are shown as percentages (×100); other estimates as they
    are. Suppressed rows keep their row with blank numbers and the word "suppressed". Returns a
    frame of strings with the headings of :func:`display_headings` (or ``columns``). A table
    that mixes sources (or ``show_source=True``) gets a first column with each row's source
    (``source_labels``: id -> short title).
    """
    from analysis.text import text

    validate(table)
    indicator_labels = indicator_labels or {}
    cell_labels = cell_labels or {}
    percent = set(percent_indicators)
    rows = []
    for _, row in table.iterrows():
        method = str(row["method"]) if not pd.isna(row["method"]) else ""
        is_ratio = method.startswith("ratio")
        scale = 100.0 if str(row["indicator"]) in percent and not is_ratio else 1.0
        estimate = _format_number(row["estimate"], scale, decimals if not is_ratio else 2)
        if estimate and scale == 100.0:
            estimate = text("tables.points" if method.startswith("difference") else "tables.percent",
                            value=estimate)
        elif estimate and is_ratio:
            estimate = text("tables.ratio", value=estimate)
        low, high = (_format_number(row[c], scale, decimals if not is_ratio else 2) for c in ("ci_low", "ci_high"))
        rows.append(
            {
                "indicator": indicator_labels.get(str(row["indicator"]), str(row["indicator"])),
                "cell": _cell_label(str(row["cell"]), cell_labels),
                "estimate": estimate,
                "ci": text("tables.interval", low=low, high=high) if low and high else "",
                "n_unweighted": format_count(row["n_unweighted"]),
                "flag": flag_text(str(row["flag"]), row["method"]),
                "source": (source_labels or {}).get(str(row["source"]), str(row["source"]))
                if not pd.isna(row["source"]) else "",
            }
        )
    headings = columns or display_headings()
    if show_source is None:
        show_source = table["source"].dropna().astype(str).nunique() > 1
    order = (["source"] if show_source else []) + list(DISPLAY_COLUMNS)
    out = pd.DataFrame(rows, columns=["source", *DISPLAY_COLUMNS])[order]
    return out.rename(columns=headings)


def html_table(display: pd.DataFrame, caption: str, *, row_headers: int = 1, table_id: str | None = None) -> str:
    """An accessible HTML table: ``<caption>``, ``<th scope="col">`` headings, ``<th scope="row">``.

    ``display`` is a frame of already formatted strings (e.g. from :func:`format_results`); the
    first ``row_headers`` columns become row header cells. Every value is HTML-escaped.
    """
    import html as _html

    if not caption or not str(caption).strip():
        raise ValueError("html_table: every table needs a caption")
    import re

    esc = _html.escape
    numeric = re.compile(r"^(ratio )?[-+−]?[\d,.]+(%| points)?(–[-+−]?[\d,.]+)?$")

    def align(text: str) -> str:
        # numbers right-aligned (digits line up), words left-aligned (they read left to right)
        return "right" if numeric.match(text) else "left"

    ident = f' id="{esc(table_id)}"' if table_id else ""
    head = "".join(f'<th scope="col" style="text-align:left">{esc(str(c))}</th>' for c in display.columns)
    body = []
    for values in display.itertuples(index=False):
        cells = []
        for i, value in enumerate(values):
            text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else esc(str(value))
            style = f' style="text-align:{align(text)}"'
            cells.append(f'<th scope="row"{style}>{text}</th>' if i < row_headers else f"<td{style}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="analysis-table"{ident}><caption>{esc(str(caption))}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


_SHEET_FORBIDDEN = set('[]:*?/\\')


def sheet_name(text: str, used: set) -> str:
    """An Excel sheet name from ``text``: forbidden characters replaced, 31 characters, unique in ``used``."""
    name = "".join("_" if ch in _SHEET_FORBIDDEN else ch for ch in str(text))[:31] or "sheet"
    base, k = name, 2
    while name.lower() in used:
        suffix = f" ({k})"
        name, k = base[: 31 - len(suffix)] + suffix, k + 1
    used.add(name.lower())
    return name


def write_excel(
    table: pd.DataFrame,
    path: str | Path,
    *,
    indicator_labels: dict | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Write a result table as an Excel workbook with one sheet per indicator.

    Every sheet keeps the full result schema (including ``flag``: suppressed rows stay with blank
    numbers, caution rows are marked), sorted as given. A first sheet "About" lists the sheets with
    the indicators' labels and the ``notes`` (suppression rule, sources). Text is always written
    as text, never as a formula (see :func:`_strings_as_strings`); numbers stay numbers.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font

    validate(table)
    indicator_labels = indicator_labels or {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = Workbook()
    about = workbook.active
    about.title = "About"
    about.append(["sheet", "indicator", "label", "rows", "suppressed", "caution"])
    for cell in about[1]:
        cell.font = Font(bold=True)
    used = {"about"}
    for indicator, rows in table.groupby("indicator", sort=False):
        sheet = workbook.create_sheet(sheet_name(indicator, used))
        sheet.append(RESULT_COLUMNS)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for values in rows[RESULT_COLUMNS].itertuples(index=False):
            sheet.append([None if is_blank(v) or (not isinstance(v, str) and pd.isna(v)) else
                          (v.item() if hasattr(v, "item") else v) for v in values])
        sheet.freeze_panes = "A2"
        about.append([sheet.title, str(indicator), indicator_labels.get(str(indicator), str(indicator)),
                      len(rows), int((rows["flag"] == "suppressed").sum()), int((rows["flag"] == "caution").sum())])
    for note in notes or []:
        about.append([])
        about.append([note])
    _strings_as_strings(workbook)
    import io

    from analysis.atomic import write_atomic

    buffer = io.BytesIO()
    workbook.save(buffer)
    return write_atomic(path, buffer.getvalue())


def _strings_as_strings(workbook) -> None:
    """Every text cell typed as text, never a formula (openpyxl reads "=..." as one).

    Cells a spreadsheet would evaluate keep their exact text and get Excel's "quote prefix"
    (the cell is shown and edited as text), OWASP's rule for workbooks.
    """
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                if isinstance(cell.value, str):
                    cell.data_type = "s"
                    if cell.value[:1] in FORMULA_TRIGGERS and not _PLAIN_NUMBER.match(cell.value):
                        cell.quotePrefix = True
