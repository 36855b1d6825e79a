"""Study cards (kind: study): the extraction workbook, YAML study cards, validation and row accounting.

Every bad input gives ONE line naming the file, sheet, row and column and what to fix, and never
quotes a cell; blank rows are excluded and counted.
"""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest
import yaml

from analysis.sources import ingest, load_processed
from analysis.sources.card import CardError, load_card
from analysis.sources.studies import (
    HOY_ITEMS,
    TEMPLATE_COLUMNS,
    Appraisal,
    StudyError,
    read_workbook,
    write_template,
)

STUDIES = [
    {"study_id": "S1", "partner": "Partner A", "title": "Rapid assessment (SYNTHETIC)", "year": 2021,
     "countries": "KEN; UGA", "period_start": "2020-06-01", "period_end": "2020-07-15",
     "groups": "persons_with_disabilities", "group_definition": "wg_ss", "sampling": "convenience",
     "mode": "phone", "sample_size": 400},
    {"study_id": "S2", "partner": "Partner B", "title": "Survey (SYNTHETIC)", "year": 2021,
     "countries": "KEN", "period_start": "2020-09-01", "period_end": "2020-10-01",
     "groups": "persons_with_disabilities; women", "group_definition": "self_identified",
     "sampling": "probability", "mode": "face_to_face", "sample_size": 1200},
]
ESTIMATES = [
    {"study_id": "S1", "indicator": "food_insecurity", "group": "persons_with_disabilities",
     "country": "KEN", "events": 120, "n": 200},
    {"study_id": "S1", "indicator": "food_insecurity", "group": "persons_with_disabilities",
     "country": "UGA", "percent": 55.5, "n": 200, "ci_low": 48.6, "ci_high": 62.4},
    {"study_id": "S2", "indicator": "food_insecurity", "group": "persons_with_disabilities",
     "country": "KEN", "events": 0, "n": 150, "reference_group": "reference",
     "reference_events": 30, "reference_n": 600},
]
APPRAISAL = [
    {"study_id": "S1", **{k: "high" for k in HOY_ITEMS[:5]}, **{k: "low" for k in HOY_ITEMS[5:]}},
    {"study_id": "S2", **{k: "low" for k in HOY_ITEMS}, "overall": "low"},
]


def _workbook(path, studies=STUDIES, estimates=ESTIMATES, appraisal=APPRAISAL, blank_rows=0):
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        pd.DataFrame(studies).to_excel(writer, sheet_name="studies", index=False)
        rows = pd.DataFrame(estimates)
        if blank_rows:  # between data rows (Excel keeps no trailing blank rows)
            blank = pd.DataFrame([{}] * blank_rows, columns=rows.columns)
            rows = pd.concat([rows.iloc[:1], blank, rows.iloc[1:]], ignore_index=True)
        rows.to_excel(writer, sheet_name="estimates", index=False)
        pd.DataFrame(appraisal).to_excel(writer, sheet_name="appraisal", index=False)
    return path


def _project(tmp_path, **workbook):
    raw = tmp_path / "raw"
    raw.mkdir()
    _workbook(raw / "studies.xlsx", **workbook)
    cards = tmp_path / "cards"
    cards.mkdir()
    card = {"id": "partners", "title": "Partner studies (SYNTHETIC)", "kind": "study", "synthetic": True,
            "licence": "CC0 (test fixture)", "files": [{"path": "studies.xlsx"}]}
    (cards / "partners.yml").write_text(yaml.safe_dump(card), encoding="utf-8")
    return raw, cards, tmp_path / "processed"


def _ingest(raw, cards, processed, capsys):
    args = argparse.Namespace(sources=["partners"], raw_root=raw, processed=processed,
                              sources_dir=cards, force=True)
    code = ingest.main(args)
    return code, capsys.readouterr().out.strip()


def test_workbook_ingests_into_one_row_per_estimate_with_accounting(tmp_path, capsys):
    raw, cards, processed = _project(tmp_path, blank_rows=2)
    code, out = _ingest(raw, cards, processed, capsys)
    assert code == 0, out
    assert out.startswith("partners: ingested (3 of 5 rows kept, 2 excluded)")
    frame = load_processed("partners", processed)
    assert frame.attrs["source"]["kind"] == "study"
    assert len(frame) == 3
    first = frame.iloc[0]
    assert first["estimate"] == pytest.approx(0.6) and first["estimate_form"] == "count"
    second = frame.iloc[1]
    assert second["events"] == 111 and second["estimate_form"] == "percent"  # round(55.5% of 200)
    assert second["ci_low"] == pytest.approx(0.486)
    third = frame.iloc[2]
    assert third["reference_estimate"] == pytest.approx(0.05)
    assert frame.set_index("study_id").loc["S2", "risk_of_bias"] == "low"
    s1 = frame[frame.study_id == "S1"].iloc[0]
    assert s1["risk_of_bias"] == "moderate" and bool(s1["risk_of_bias_derived"])  # 5 high items
    log = json.loads((processed / "partners.log.json").read_text())
    assert log["rows_read"] == log["rows_kept"] + sum(log["rows_excluded"].values())
    assert log["rows_excluded"] == {"blank row": 2}
    assert log["studies"] == 2


def test_a_study_source_card_loads_through_load_card(tmp_path):
    _raw, cards, _ = _project(tmp_path)
    card = load_card(cards / "partners.yml")
    assert card.kind == "study" and card.files[0].path == "studies.xlsx"
    assert card.path_label == str(cards / "partners.yml")  # as every card kind names its file
    (cards / "partners.yml").write_text(yaml.safe_dump(
        {"id": "partners", "title": "x", "kind": "study", "licence": "x", "files": [{"path": "a.csv"}]}))
    with pytest.raises(CardError, match=r"partners.yml: key 'files.0.path'"):
        load_card(cards / "partners.yml")


def _with(rows, index, **changes):
    rows = [dict(r) for r in rows]
    rows[index].update(changes)
    for key, value in changes.items():
        if value is None:
            rows[index].pop(key)
    return rows


BAD = {
    "percent above 100": ({"estimates": _with(ESTIMATES, 1, percent=105.0, ci_low=None, ci_high=None)},
                          ["sheet 'estimates', row 3", "column 'percent'", "less than or equal to 100"]),
    "n of 0": ({"estimates": _with(ESTIMATES, 0, n=0)}, ["sheet 'estimates', row 2", "column 'n'", "greater than 0"]),
    "count larger than n": ({"estimates": _with(ESTIMATES, 0, events=250)},
                            ["sheet 'estimates', row 2", "'events' is larger than its 'n'"]),
    "indicator not in catalogue": ({"estimates": _with(ESTIMATES, 2, indicator="happiness")},
                                   ["sheet 'estimates', row 4", "column 'indicator'", "params/indicators.yml"]),
    "group not in groups.yml": ({"estimates": _with(ESTIMATES, 0, group="aliens")},
                                ["sheet 'estimates', row 2", "column 'group'", "params/groups.yml"]),
    "study group not in groups.yml": ({"studies": _with(STUDIES, 1, groups="aliens")},
                                      ["sheet 'studies', row 3", "column 'groups'", "params/groups.yml"]),
    "country not ISO3": ({"estimates": _with(ESTIMATES, 0, country="Kenya")},
                         ["row 2", "column 'country'", "ISO 3166-1 alpha-3"]),
    "country not of the study": ({"estimates": _with(ESTIMATES, 2, country="UGA")},
                                 ["row 4", "column 'country' is not among the study's 'countries'"]),
    "neither events nor percent": ({"estimates": _with(ESTIMATES, 0, events=None)},
                                   ["row 2", "give 'events' or 'percent'"]),
    "interval without the estimate": ({"estimates": _with(ESTIMATES, 1, ci_low=60.0, ci_high=70.0)},
                                      ["row 3", "does not contain the estimate"]),
    "same cell twice in a study": ({"estimates": [*ESTIMATES, ESTIMATES[0]]},
                                   ["sheet 'estimates', row 5",
                                    "repeats the indicator × group × country of sheet 'estimates', row 2"]),
    "unknown study id": ({"estimates": _with(ESTIMATES, 0, study_id="S9")},
                         ["row 2", "column 'study_id' is not a study of sheet 'studies'"]),
    "bad sampling": ({"studies": _with(STUDIES, 0, sampling="snowball")},
                     ["sheet 'studies', row 2", "column 'sampling'"]),
    "appraisal item missing": ({"appraisal": _with(APPRAISAL, 0, hoy_3=None)},
                               ["sheet 'appraisal', row 2", "hoy_3"]),
    "bad appraisal rating": ({"appraisal": _with(APPRAISAL, 1, hoy_2="maybe")},
                             ["sheet 'appraisal', row 3", "hoy_2"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_study_input_gives_one_line_naming_sheet_row_and_column(tmp_path, capsys, case):
    changes, fragments = BAD[case]
    raw, cards, processed = _project(tmp_path, **changes)
    code, out = _ingest(raw, cards, processed, capsys)
    assert code == 1
    assert len(out.splitlines()) == 1, out
    assert out.startswith("partners: failed (") and "studies.xlsx" in out
    for fragment in fragments:
        assert fragment in out, (fragment, out)
    for secret in ("happiness", "aliens", "Kenya", "snowball", "maybe"):
        assert secret not in out  # never quote a cell
    assert not (processed / "partners.parquet").exists()


def test_missing_sheet_and_column_are_named(tmp_path):
    path = tmp_path / "w.xlsx"
    pd.DataFrame(STUDIES).to_excel(path, sheet_name="studies", index=False)
    with pytest.raises(StudyError, match=r"w.xlsx: sheet 'estimates' is missing"):
        read_workbook(path)
    _workbook(path, estimates=[{k: v for k, v in e.items() if k != "n"} for e in ESTIMATES])
    with pytest.raises(StudyError, match=r"sheet 'estimates': column 'n' is missing"):
        read_workbook(path)


def test_yaml_study_card_gives_the_same_rows(tmp_path, capsys):
    raw, cards, processed = _project(tmp_path)
    study = {"study_id": "S3", "partner": "Partner C", "title": "Report (SYNTHETIC)", "year": 2021,
             "countries": ["UGA"], "period": {"start": "2020-05-01", "end": "2020-05-30"},
             "groups": ["women"], "group_definition": "self_identified", "sampling": "quota",
             "mode": "online", "sample_size": 300,
             "appraisal": {"items": {i: "low" for i in range(1, 11)}},
             "estimates": [{"indicator": "income_loss", "group": "women", "country": "UGA",
                            "percent": 40, "n": 300}]}
    (raw / "s3.yml").write_text(yaml.safe_dump(study), encoding="utf-8")
    card = yaml.safe_load((cards / "partners.yml").read_text())
    card["files"].append({"path": "s3.yml"})
    (cards / "partners.yml").write_text(yaml.safe_dump(card), encoding="utf-8")
    code, out = _ingest(raw, cards, processed, capsys)
    assert code == 0, out
    frame = load_processed("partners", processed)
    row = frame[frame.study_id == "S3"].iloc[0]
    assert row["events"] == 120 and row["risk_of_bias"] == "low" and row["sampling"] == "quota"


def test_reingest_of_unchanged_studies_is_skipped(tmp_path, capsys):
    raw, cards, processed = _project(tmp_path)
    _ingest(raw, cards, processed, capsys)
    args = argparse.Namespace(sources=["partners"], raw_root=raw, processed=processed,
                              sources_dir=cards, force=False)
    assert ingest.main(args) == 0
    assert capsys.readouterr().out.strip() == "partners: unchanged"


@pytest.mark.parametrize("high, expected", [(0, "low"), (3, "low"), (4, "moderate"), (6, "moderate"),
                                            (7, "high"), (10, "high")])
def test_overall_risk_of_bias_derived_from_high_risk_items(high, expected):
    items = {k: ("high" if i < high else "low") for i, k in enumerate(HOY_ITEMS)}
    assert Appraisal(items=items).risk_of_bias == expected
    assert Appraisal(items=items, overall="low").risk_of_bias == "low"  # the reviewer's judgement wins


def test_unclear_counts_as_high_risk():
    items = {k: "unclear" for k in HOY_ITEMS}
    assert Appraisal(items=items).risk_of_bias == "high"


def test_template_has_every_sheet_and_column_and_a_guide(tmp_path):
    path = write_template(tmp_path / "template.xlsx")
    book = pd.read_excel(path, sheet_name=None, engine="openpyxl")
    for sheet, columns in TEMPLATE_COLUMNS.items():
        assert list(book[sheet].columns) == columns
    guide = book["guide"]
    assert guide["what"].notna().all()
    # the template, filled in, reads back
    _workbook(tmp_path / "filled.xlsx")
    studies, _ = read_workbook(tmp_path / "filled.xlsx")
    assert [s.study_id for s in studies] == ["S1", "S2"]


def test_committed_template_is_what_write_template_makes(tmp_path):
    from analysis import config

    committed = config.RAW_DIR / "templates" / "study_extraction.xlsx"
    made = write_template(tmp_path / "t.xlsx")
    committed_book = pd.read_excel(committed, sheet_name=None, engine="openpyxl")
    made_book = pd.read_excel(made, sheet_name=None, engine="openpyxl")
    assert committed_book.keys() == made_book.keys()
    for sheet in made_book:
        pd.testing.assert_frame_equal(committed_book[sheet], made_book[sheet])
