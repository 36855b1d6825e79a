"""The bad-input corpus (tests/sources/bad_inputs/): every case gives ONE clear line, or is handled and counted.

Each case is a folder with ``card.yml`` (source id ``bad``), its raw file(s) and ``expected.yml``:
``outcome: error`` with ``message`` fragments that the one-line failure must contain (naming the
file and the column, row or key, and what to fix), or ``outcome: handled`` with the row accounting
the log must show. Binary raw files (.xlsx, .sav, .dta) are made here at test time by
:data:`GENERATORS`, so the corpus stays reviewable text.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
import yaml

from .conftest import BASE_CSV

CORPUS = Path(__file__).with_name("bad_inputs")
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def _base_frame() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(BASE_CSV), dtype=str)


def _excel_with_title_rows(raw: Path) -> None:
    rows = [["Survey export (SYNTHETIC)"] + [None] * 9, [None] * 10]
    frame = _base_frame()
    body = pd.DataFrame(rows + [list(frame.columns)] + frame.values.tolist())
    body.to_excel(raw / "data.xlsx", sheet_name="data", index=False, header=False)


def _excel_one_sheet(raw: Path) -> None:
    _base_frame().to_excel(raw / "data.xlsx", sheet_name="data", index=False)


def _csv_named_xlsx(raw: Path) -> None:
    (raw / "data.xlsx").write_text(BASE_CSV, encoding="utf-8")


def _truncated(writer, name: str):
    def make(raw: Path) -> None:
        frame = _base_frame()
        frame["q_age"] = pd.to_numeric(frame["q_age"])
        path = raw / name
        writer(frame, str(path))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return make


def _kobo(choices: list[list[str]], sexes: list[str]):
    def make(raw: Path) -> None:
        survey = pd.DataFrame({"type": ["text", "select_one sexes", "integer"], "name": ["rid", "q_sex", "q_age"],
                               "label": ["ID", "Sex", "Age"]})
        with pd.ExcelWriter(raw / "form.xlsx") as writer:
            survey.to_excel(writer, sheet_name="survey", index=False)
            pd.DataFrame(choices, columns=["list_name", "name", "label"]).to_excel(writer, sheet_name="choices", index=False)
        frame = _base_frame()
        frame["q_sex"] = (sexes * len(frame))[: len(frame)]
        frame.to_excel(raw / "data.xlsx", index=False)
    return make


GENERATORS = {
    "excel_header_on_wrong_row": _excel_with_title_rows,
    "excel_missing_sheet": _excel_one_sheet,
    "excel_not_a_workbook": _csv_named_xlsx,
    "truncated_sav": _truncated(pyreadstat.write_sav, "data.sav"),
    "truncated_dta": _truncated(pyreadstat.write_dta, "data.dta"),
    "kobo_choices_lack_a_code": _kobo([["sexes", "f", "Female"], ["sexes", "m", "Male"]], ["f", "x"]),
    "kobo_form_lacks_choice_list": _kobo([["other", "a", "A"]], ["f"]),
}


def test_the_corpus_is_large_enough_and_every_case_is_complete():
    assert len(CASES) >= 25
    for case in CASES:
        folder = CORPUS / case
        assert (folder / "card.yml").exists() and (folder / "expected.yml").exists(), case
        expected = yaml.safe_load((folder / "expected.yml").read_text())
        assert expected["outcome"] in ("error", "handled") and expected["description"], case
    assert set(GENERATORS) <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case, project, capsys):
    folder = CORPUS / case
    expected = yaml.safe_load((folder / "expected.yml").read_text())
    shutil.copy(folder / "card.yml", project.cards / "bad.yml")
    for path in folder.iterdir():
        if path.name not in ("card.yml", "expected.yml"):
            shutil.copy(path, project.raw / path.name)
    if case in GENERATORS:
        GENERATORS[case](project.raw)

    code = project.run("bad")
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert len(lines) == 1, out.out  # one line per source, never a traceback
    assert "Traceback" not in out.out + out.err and "unexpected" not in lines[0]
    line = lines[0]
    if expected["outcome"] == "error":
        assert code == 1 and line.startswith("bad: failed ("), line
        for fragment in expected["message"]:
            assert fragment in line, f"{fragment!r} not in {line!r}"
    else:
        assert code == 0 and line.startswith("bad: ingested ("), line
        log = json.loads((project.processed / "bad.log.json").read_text())
        assert log["rows_read"] == log["rows_kept"] + sum(log["rows_excluded"].values())
        for key, value in expected["log"].items():
            assert log[key] == value, f"log[{key!r}] = {log[key]!r}, expected {value!r}"
