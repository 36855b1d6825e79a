"""The bad-input corpus (tests/sources/bad_inputs/): every case gives ONE clear line, or is handled and counted.

Each case is a folder with ``card.yml`` (source id ``bad``), its raw file(s) and ``expected.yml``:
``outcome: error`` with ``message`` fragments that the one-line failure must contain (naming the
file and the column, row or key, and what to fix), or ``outcome: handled`` with the row accounting
the log must show (and ``message`` fragments of the ``ingested`` line, e.g. a warning). ``absent``
lists text (planted personal data, a system file's content) that must appear neither in the
printed line nor in any file written to the processed folder. Binary raw files (.xlsx, .sav,
.dta), symlinks, pipes and oversized files are made here at test time by :data:`GENERATORS`, so
the corpus stays reviewable text.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
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


def _symlink_out(raw: Path) -> None:
    outside = raw.parent / "outside-secret.csv"
    outside.write_text("SECRET-LINE\n" + BASE_CSV, encoding="utf-8")
    (raw / "data.csv").symlink_to(outside)


def _symlink_device(raw: Path) -> None:
    (raw / "data.csv").symlink_to("/dev/zero")


def _fifo(raw: Path) -> None:
    os.mkfifo(raw / "data.csv")


def _folder(raw: Path) -> None:
    (raw / "data.csv").mkdir()


def _sparse_huge(raw: Path) -> None:
    with open(raw / "data.csv", "wb") as handle:  # sparse: no disk space used
        handle.truncate(40 * 2**30)


def _big_card(raw: Path) -> None:
    card = raw.parent / "cards" / "bad.yml"
    card.write_text(card.read_text() + "# " + "x" * 2**21 + "\n", encoding="utf-8")


def _parquet_as_csv(raw: Path) -> None:
    _base_frame().to_parquet(raw / "data.csv")


def _zip_as_csv(raw: Path) -> None:
    with zipfile.ZipFile(raw / "data.csv", "w") as archive:
        archive.writestr("data.csv", BASE_CSV)


def _utf16_no_bom(raw: Path) -> None:
    (raw / "data.csv").write_bytes(BASE_CSV.encode("utf-16-le"))


def _stat_frame() -> pd.DataFrame:
    frame = _base_frame()
    frame["q_age"] = pd.to_numeric(frame["q_age"]).astype(float)
    frame["q_sex"] = [1.0, 2.0, 1.0, 2.0, 9.0]
    frame.loc[1, "q_age"] = 99.0
    return frame


def _sav_user_missing(raw: Path) -> None:
    pyreadstat.write_sav(_stat_frame(), str(raw / "data.sav"), missing_ranges={"q_age": [99], "q_sex": [9]},
                         variable_value_labels={"q_sex": {1.0: "Female", 2.0: "Male", 9.0: "Refused"}})


def _dta_user_missing(raw: Path) -> None:
    frame = _stat_frame()
    frame["q_sex"] = [1.0, 2.0, 1.0, 2.0, 1.0]
    frame["q_age"] = frame["q_age"].astype(object)
    frame.loc[1, "q_age"] = "a"
    pyreadstat.write_dta(frame, str(raw / "data.dta"), missing_user_values={"q_age": ["a"]})


def _sav_contradicting_labels(raw: Path) -> None:
    frame = _stat_frame()
    frame["q_sex"] = [1.0, 2.0, 1.0, 2.0, 1.0]
    frame.loc[1, "q_age"] = 41.0
    pyreadstat.write_sav(frame, str(raw / "data.sav"), variable_value_labels={"q_sex": {1.0: "Female", 2.0: "Male"}})


def _kobo_with(column: str, values: list[str], extra_question: tuple | None = None):
    def make(raw: Path) -> None:
        types = ["text", "select_one sexes", "integer", "select_multiple helps"]
        names = ["rid", "q_sex", "q_age", "q_help"]
        survey = pd.DataFrame({"type": types, "name": names, "label": ["ID", "Sex", "Age", "Help received"]})
        choices = [["sexes", "f", "Female"], ["sexes", "m", "Male"], ["helps", "food", "Food"],
                   ["helps", "cash", "Cash"], ["helps", "water", "Water"]]
        with pd.ExcelWriter(raw / "form.xlsx") as writer:
            survey.to_excel(writer, sheet_name="survey", index=False)
            pd.DataFrame(choices, columns=["list_name", "name", "label"]).to_excel(writer, sheet_name="choices", index=False)
        frame = _base_frame()
        frame["q_sex"] = ["f", "m", "f", "m", "f"]
        frame["q_help"] = ["food", "cash water", "", "food", "water"]
        frame[column] = values
        frame.to_excel(raw / "data.xlsx", index=False)
    return make


GENERATORS = {
    "path_symlink_out_of_raw_root": _symlink_out,
    "path_symlink_to_device": _symlink_device,
    "path_fifo": _fifo,
    "path_is_a_folder": _folder,
    "raw_file_too_large": _sparse_huge,
    "card_too_large": _big_card,
    "parquet_read_as_csv": _parquet_as_csv,
    "zip_read_as_csv": _zip_as_csv,
    "utf16_without_bom": _utf16_no_bom,
    "spss_user_missing_counted": _sav_user_missing,
    "stata_user_missing_counted": _dta_user_missing,
    "spss_labels_contradict_recodes": _sav_contradicting_labels,
    "kobo_select_multiple_as_labels": _kobo_with("q_help", ["Food", "Cash Water", "", "Food", "Water"]),
    "kobo_select_one_holds_free_text": _kobo_with("q_sex", ["f", "Amina Otieno 0712 345 678", "f", "m", "f"]),
    "excel_header_on_wrong_row": _excel_with_title_rows,
    "excel_missing_sheet": _excel_one_sheet,
    "excel_not_a_workbook": _csv_named_xlsx,
    "truncated_sav": _truncated(pyreadstat.write_sav, "data.sav"),
    "truncated_dta": _truncated(pyreadstat.write_dta, "data.dta"),
    "kobo_choices_lack_a_code": _kobo([["sexes", "f", "Female"], ["sexes", "m", "Male"]], ["f", "x"]),
    "kobo_form_lacks_choice_list": _kobo([["other", "a", "A"]], ["f"]),
}


def test_the_corpus_is_large_enough_and_every_case_is_complete():
    assert len(CASES) >= 90
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
        for fragment in expected.get("message", []):
            assert fragment in line, f"{fragment!r} not in {line!r}"
    written = [p for p in project.processed.rglob("*") if p.is_file()] if project.processed.exists() else []
    for text in expected.get("absent", []):
        assert text not in out.out + out.err, f"{text!r} printed"
        for path in written:
            assert text.encode() not in path.read_bytes(), f"{text!r} in {path.name}"
