"""The chapter notebooks are thin, clean templates (no outputs, a parameters cell, no code of their own)."""

from __future__ import annotations

import ast
import re

import nbformat
import papermill
import pytest

from analysis import config

NOTEBOOKS = sorted(config.NOTEBOOKS_DIR.glob("*.ipynb"))
#: Parameters every chapter notebook declares (the runner injects them).
REQUIRED = ("chapter", "group", "country", "source", "processed_dir", "output_dir")
#: One template per chapter of the report.
CHAPTERS = ("01_data_profile", "02_group_profile", "03_intersections", "04_geography",
            "05_official_statistics", "06_synthesis", "07_evidence",
            "08_voices")


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_every_chapter_has_a_template():
    names = {p.stem for p in NOTEBOOKS}
    assert set(CHAPTERS) <= names, f"missing chapter notebooks: {sorted(set(CHAPTERS) - names)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_or_execution_counts(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(_code_cells(nb)):
        assert cell.get("outputs") == [], f"{path.name} code cell {i} has outputs: clear them before committing"
        assert cell.get("execution_count") is None, f"{path.name} code cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_has_a_parameters_cell_declaring_the_run_parameters(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected exactly one cell tagged 'parameters'"
    declared = papermill.inspect_notebook(str(path))
    missing = [p for p in REQUIRED if p not in declared]
    assert not missing, f"{path.name}: parameters cell does not declare {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_function_or_class_definitions(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(_code_cells(nb)):
        tree = ast.parse(cell.source)
        defined = [n for n in ast.walk(tree)
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defined, f"{path.name} cell {i}: define functions in src/analysis, not in notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_raw_frame_display_or_long_wrangling(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(_code_cells(nb)):
        source = cell.source
        assert not re.search(r"\.(head|tail|sample)\(", source), f"{path.name} cell {i}: no raw frame display"
        tree = ast.parse(source)
        last = tree.body[-1] if tree.body else None
        # a bare name as the last expression would print a raw DataFrame
        if isinstance(last, ast.Expr):
            assert not isinstance(last.value, ast.Name), f"{path.name} cell {i}: shows a raw object; use chapters.show_*"
        pandas_calls = len(re.findall(r"\.(groupby|merge|pivot|pivot_table|melt|apply|loc|iloc)\b", source))
        assert pandas_calls <= 2, f"{path.name} cell {i}: {pandas_calls} wrangling calls; move them to analysis.chapters"
        if "parameters" not in cell.metadata.get("tags", []):  # declarations only: any length
            assert len(source.splitlines()) <= 12, f"{path.name} cell {i}: too long for a thin notebook"
