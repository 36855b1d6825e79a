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
