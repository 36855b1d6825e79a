"""Every CSV the project writes neutralises formula cells (issue 11, OWASP's CSV-injection rule).

``tables.write_csv`` neutralised result tables, but the quotes of the Voices chapter, the
exchange's code lists were written with ``DataFrame.to_csv`` directly:
a quote or label starting with ``=``, ``+``, ``-``, ``@``, tab or CR reached a spreadsheet as a
live formula. Now every CSV goes through ``tables.csv_text``; the SDMX-CSV (written by sdmx1)
gets its free-text cells neutralised first and refuses codes that could start a formula.
"""

from __future__ import annotations

import ast
import csv
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from analysis import tables
from analysis.exchange import sdmx_csv
from analysis.exchange.settings import ExchangeError

SRC = Path(__file__).resolve().parents[1] / "src" / "analysis"
HOSTILE = ["=HYPERLINK(\"http://x\",\"click\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)", "\tTAB", "\rCR"]

#: CSV writers that are not ``tables.csv_text``, with why each is safe.
ALLOWED = {
    ("tables.py", "to_csv"): "the neutralising writer itself (csv_text)",
    ("demo.py", "to_csv"): "the synthetic partners' raw exports: input for ingest, never published; "
                           "written as a partner's tool writes them so the planted canaries stay verbatim",
}


def formula_cells(path: Path) -> list[tuple[int, str]]:
    """(row, column) of every cell of a CSV file a spreadsheet would evaluate as a formula."""
    found = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        for i, row in enumerate(reader, start=2):
            for name, value in zip(header, row):
                if value[:1] in tables.FORMULA_TRIGGERS and not tables._PLAIN_NUMBER.match(value):
                    found.append((i, name))
    return found


def _csv_writers(path: Path) -> list[tuple[str, int]]:
    """``x.to_csv(...)``, ``csv.writer(...)`` and ``csv.DictWriter(...)`` calls in a module."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            owner = node.func.value
            if name == "to_csv" or (name in ("writer", "DictWriter") and isinstance(owner, ast.Name)
                                    and owner.id == "csv"):
                calls.append((name, node.lineno))
    return calls


def test_no_csv_writer_in_src_bypasses_the_neutralising_one():
    bypass = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        for name, line in _csv_writers(path):
            if (rel, "to_csv" if name == "to_csv" else name) not in ALLOWED:
                bypass.append(f"{rel}:{line} ({name})")
    assert not bypass, "CSV written without tables.csv_text / write_text_csv: " + ", ".join(bypass)


def test_write_text_csv_neutralises_and_round_trips(tmp_path):
    frame = pd.DataFrame({"text": HOSTILE + ["plain", "-3.5", "'quoted"], "n": range(9)})
    path = tables.write_text_csv(frame, tmp_path / "t.csv")
    assert formula_cells(path) == []
    back = pd.read_csv(path, dtype={"text": str})
    assert [tables.restore_text(v) for v in back["text"]] == list(frame["text"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_voices_quotes_file_neutralises_a_quote_that_is_a_formula(tmp_path):
    from analysis.chapters.voices import save_quotes

    voices = SimpleNamespace(run=SimpleNamespace(output_dir=tmp_path), source="demo_voices")
    quotes = pd.DataFrame({"theme": ["health"] * len(HOSTILE), "quote": HOSTILE})
    path = save_quotes(voices, quotes)
    assert formula_cells(path) == []
    with open(path, newline="", encoding="utf-8") as handle:
        cells = [row[1] for row in csv.reader(handle)][1:]
    assert cells == ["'" + q for q in HOSTILE]


def _coded(**changes) -> pd.DataFrame:
    row = {cid: "_T" for cid in [*sdmx_csv.DIMENSIONS, sdmx_csv.TIME_DIMENSION]}
    row.update({cid: "" for cid in sdmx_csv.ATTRIBUTES})
    row.update({"REF_AREA": "404", "TIME_PERIOD": "2021", "OBS_VALUE": -0.25, "LOWER_BOUND": "-0.5",
                "SOURCE_DETAIL": "Partner survey", "COMMENT_OBS": "weighted proportion"})
    row.update(changes)
    return pd.DataFrame([row])


@pytest.mark.parametrize("column", sorted(sdmx_csv.UNCODED))
def test_sdmx_free_text_cells_are_neutralised_numbers_and_codes_kept(column):
    coded = _coded(**{column: HOSTILE[0]})
    safe = sdmx_csv.neutralise_text_cells(coded)
    assert safe.loc[0, column] == "'" + HOSTILE[0]
    assert safe.loc[0, "OBS_VALUE"] == -0.25 and safe.loc[0, "LOWER_BOUND"] == "-0.5"
    assert safe.loc[0, "REF_AREA"] == "404"
    assert coded.loc[0, column] == HOSTILE[0]  # the input is not changed


@pytest.mark.parametrize("code", ["-X", "@SUM"])
def test_an_sdmx_code_that_could_start_a_formula_is_refused(code):
    with pytest.raises(ExchangeError, match=r"column POP_GROUP: code .* starts with .* formula"):
        sdmx_csv.neutralise_text_cells(_coded(POP_GROUP=code))
