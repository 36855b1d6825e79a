"""Displayed tables in the page language (issue 16): locale decimal signs and digit grouping.

Only what a reader sees changes: ``tables.format_results`` (every chapter's result tables) writes
numbers with the locale's decimal sign and grouping (Babel, CLDR), e.g. French "42,4 %"; the CSV
files stay machine-readable with dot decimals in every language.
"""

from __future__ import annotations

import pandas as pd
import pytest

from analysis import tables


def _results():
    return tables.conform(pd.DataFrame({
        "indicator": ["food_insecurity", "food_insecurity", "household_size"],
        "breakdown": ["disability", "disability", "disability"],
        "cell": ["yes", "yes vs no", "yes"],
        "estimate": [0.4241, 0.0512, 1234.56],
        "se": [0.02, 0.01, 10.0],
        "ci_low": [0.3807, 0.0311, 1214.5],
        "ci_high": [0.4672, 0.0713, 1254.5],
        "n_unweighted": [1234, 1234, 1234],
        "method": ["taylor", "difference", "taylor"],
    }), source="demo_youth")


def _spaces(text: str) -> str:
    return text.replace("\u00a0", " ").replace("\u202f", " ")


@pytest.mark.parametrize("code, percent, interval, points, mean, count", [
    ("en", "42.4%", "38.1–46.7", "5.1 points", "1234.6", "1,234"),
    ("fr", "42,4 %", "38,1–46,7", "5,1 points", "1234,6", "1 234"),
    ("es", "42,4 %", "38,1–46,7", "5,1 puntos", "1234,6", "1.234"),
    ("pt", "42,4%", "38,1–46,7", "5,1 pontos", "1234,6", "1.234"),
    ("ru", "42,4 %", "38,1–46,7", "5,1 п.п.", "1234,6", "1 234"),
    ("zh", "42.4%", "38.1–46.7", "5.1 个百分点", "1234.6", "1,234"),
])
def test_displayed_numbers_follow_the_page_locale(monkeypatch, code, percent, interval, points, mean, count):
    monkeypatch.setenv("ANALYSIS_LANG", code)
    monkeypatch.delenv("ANALYSIS_TEXT_FILE", raising=False)
    shown = tables.format_results(_results(), percent_indicators=["food_insecurity"],
                                  columns={c: c for c in ("source", *tables.DISPLAY_COLUMNS)})
    assert [_spaces(v) for v in shown["estimate"]] == [percent, points, mean]
    assert _spaces(shown["ci"][0]) == interval
    assert _spaces(shown["n_unweighted"][0]) == count


def test_csv_files_keep_dot_decimals_in_every_language(monkeypatch, tmp_path):
    monkeypatch.setenv("ANALYSIS_LANG", "fr")
    path = tables.write_csv(_results(), tmp_path / "results.csv")
    text = path.read_text(encoding="utf-8")
    assert "0.4241" in text and "1234.56" in text and "0,4241" not in text
    pd.testing.assert_frame_equal(tables.read_csv(path), _results())
