"""The one result schema: conform, validate, round-trip through CSV, stacking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import tables


def _rows(**overrides):
    base = {
        "indicator": ["food_insecurity", "food_insecurity"],
        "breakdown": ["disability", "disability"],
        "cell": ["yes", "no"],
        "estimate": [0.41, 0.28],
        "se": [0.02, 0.01],
        "ci_low": [0.37, 0.26],
        "ci_high": [0.45, 0.30],
        "n_unweighted": [420, 1800],
        "n_weighted": [41000.5, 180000.25],
        "method": ["taylor", "taylor"],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_conform_orders_columns_fills_defaults_and_drops_extras():
    frame = _rows()
    frame["deff"] = [1.2, 1.1]
    out = tables.conform(frame, source="demo", country="KEN", group="persons_with_disabilities")
    assert list(out.columns) == tables.RESULT_COLUMNS
    assert (out["source"] == "demo").all() and (out["flag"] == "ok").all()
    assert str(out["n_unweighted"].dtype) == "Int64"


def test_unknown_flag_is_named():
    with pytest.raises(tables.ResultSchemaError, match="flag values \\['hidden'\\]"):
        tables.conform(_rows(flag=["ok", "hidden"]))


def test_suppressed_row_must_be_blank():
    frame = _rows(flag=["suppressed", "ok"])
    with pytest.raises(tables.ResultSchemaError, match="still carry numbers"):
        tables.conform(frame)
    for column in tables.NUMERIC_COLUMNS:
        frame.loc[0, column] = np.nan
    out = tables.conform(frame)
    assert out.loc[0, "flag"] == "suppressed" and pd.isna(out.loc[0, "estimate"])


def test_csv_round_trip_is_exact_and_byte_stable(tmp_path):
    table = tables.conform(_rows(), source="demo", country="KEN", group="g")
    first = tables.write_csv(table, tmp_path / "a.csv").read_bytes()
    again = tables.write_csv(tables.read_csv(tmp_path / "a.csv"), tmp_path / "b.csv").read_bytes()
    assert first == again
    back = tables.read_csv(tmp_path / "a.csv")
    pd.testing.assert_frame_equal(back, table)


def test_cells_join_and_split():
    assert tables.join_cell(["female", "yes"]) == "female × yes"
    assert tables.split_cell("female × yes") == ["female", "yes"]
    assert tables.join_cell([]) == "all" and tables.split_cell("all") == []


def test_stack_skips_empty_tables():
    a = tables.conform(_rows(), country="KEN")
    b = tables.conform(_rows(), country="UGA")
    out = tables.stack([a, tables.empty_result(), None, b])
    assert len(out) == 4 and list(out["country"]) == ["KEN", "KEN", "UGA", "UGA"]


# Issue 11: cells a spreadsheet would evaluate (OWASP CSV injection). Labels and group or source
# names come from partner-written params and cards, so any of them may start with one of these.
HOSTILE = ["=HYPERLINK(\"http://x\",\"y\")", "+254 711 222 333", "-2+3+cmd|' /C calc'!A0", "@SUM(A1:A9)",
           "\t=1+1", "\r=1+1", "'quoted"]


def _hostile_table():
    n = len(HOSTILE)
    return tables.conform(pd.DataFrame({
        "indicator": ["food_insecurity"] * n, "breakdown": HOSTILE, "cell": HOSTILE,
        "estimate": [-3.2] * n, "se": [0.1] * n, "ci_low": [-3.4] * n, "ci_high": [-3.0] * n,
        "n_unweighted": [100] * n, "method": ["difference"] * n,
    }), source="=src", country="KEN", group="-3.2")


def test_csv_cells_a_spreadsheet_would_evaluate_are_neutralised_and_numbers_stay_numbers(tmp_path):
    import csv

    path = tables.write_csv(_hostile_table(), tmp_path / "t.csv")
    rows = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
    for row, value in zip(rows, HOSTILE):
        assert row["cell"] == "'" + value and row["breakdown"] == "'" + value
        assert row["source"] == "'=src"
        assert row["estimate"] == "-3.2" and row["ci_low"] == "-3.4"  # a number, not text
        assert row["group"] == "-3.2"  # a plain number in a text column cannot be a formula
    # Reading it back gives the values as they were, and rewriting gives the same bytes.
    back = tables.read_csv(path)
    assert list(back["cell"]) == HOSTILE and (back["source"] == "=src").all()
    again = tables.write_csv(back, tmp_path / "again.csv")
    assert again.read_bytes() == path.read_bytes()


def test_an_empty_table_writes_and_reads_back(tmp_path):
    path = tables.write_csv(tables.empty_result(), tmp_path / "empty.csv")
    assert path.read_text() == ",".join(tables.RESULT_COLUMNS) + "\n"
    assert tables.read_csv(path).empty


def test_excel_writes_strings_as_strings_never_formulas(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    path = tables.write_excel(_hostile_table(), tmp_path / "t.xlsx",
                              indicator_labels={"food_insecurity": "=cmd|' /C calc'!A0"}, notes=["=1+1"])
    workbook = openpyxl.load_workbook(path)
    formulas = [c.coordinate for ws in workbook for row in ws.iter_rows() for c in row if c.data_type == "f"]
    assert formulas == []
    sheet = workbook["food_insecurity"]
    header = [c.value for c in sheet[1]]
    cells = [row[header.index("cell")] for row in sheet.iter_rows(min_row=2)]
    # The text exactly, typed as text (a carriage return may come back as a line feed: openpyxl
    # keeps it with lxml installed, XML normalises it without).
    assert [c.value.replace("\r", "\n") for c in cells] == [v.replace("\r", "\n") for v in HOSTILE]
    assert all(c.data_type == "s" for c in cells)
    assert all(c.quotePrefix for c in cells if c.value[0] in "=+-@\t\r\n")
    estimate = sheet.cell(row=2, column=header.index("estimate") + 1)
    assert estimate.value == -3.2 and estimate.data_type == "n"
    assert workbook["About"]["C2"].value == "=cmd|' /C calc'!A0" and workbook["About"]["C2"].data_type == "s"


def test_label_stamps_identity_once_and_keeps_what_it_is_not_given():
    """Issue 12: estimators no longer carry the report's identity columns; tables.label stamps them."""
    from analysis.survey import SurveyDesign, estimate_by

    frame = pd.DataFrame({"y": [0.0, 1.0, 1.0, 0.0], "w": [1.0, 2.0, 1.0, 2.0]})
    estimates = estimate_by(frame, SurveyDesign.from_frame(frame, weight="w"), "y")
    assert estimates[["source", "country", "group"]].isna().all().all()
    labelled = tables.label(estimates, source="demo", country="KEN")
    assert (labelled["source"] == "demo").all() and (labelled["country"] == "KEN").all()
    assert labelled["group"].isna().all() and labelled["estimate"].equals(estimates["estimate"])
    again = tables.label(labelled, group="women")
    assert (again["source"] == "demo").all() and (again["group"] == "women").all()
    assert str(again["group"].dtype) == "string"
    assert set(tables.IDENTITY_COLUMNS) == {"source", "country", "group"}
