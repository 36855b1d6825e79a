"""The one result schema for every estimate and every table, and its exports.

Every function in the library that returns estimates returns a tidy long table with
:data:`RESULT_COLUMNS`, so that runs for different sources, groups and countries stack
into one comparable table (``outputs/tables/all_estimates.csv``).

Suppression is a flag, not a missing value: a suppressed row stays in the table with
``flag == "suppressed"`` and its numbers blanked (see :mod:`analysis.disclosure`).
"""

from __future__ import annotations

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


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a result table as CSV with stable formatting (byte-identical on re-run).

    Floats are written with 10 significant digits; rows keep their order.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    validate(frame)
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.to_csv(tmp, index=False, float_format="%.10g", lineterminator="\n")
    tmp.replace(path)
    return path


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a result table written by :func:`write_csv`, restoring dtypes."""
    frame = pd.read_csv(path, dtype={"cell": "string", "breakdown": "string"}, keep_default_na=True)
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
