"""Tests for analysis.sources.readers: every format, end to end through ingest where it matters."""

from __future__ import annotations

import pandas as pd
import pyreadstat
import pytest

from analysis.sources import load_processed
from analysis.sources.card import ReaderOptions, SourceCard
from analysis.sources.readers import (
    ReadError,
    code_text,
    iter_text_batches,
    normalise_hxl_tag,
    read_source,
    read_text_table,
)

from .conftest import base_card


def _card(**changes) -> SourceCard:
    return SourceCard(**base_card(**changes))


def test_code_text_makes_codes_comparable():
    assert [code_text(v) for v in (1, 1.0, "1", " 1 ", 2.5, None, float("nan"), True)] == ["1", "1", "1", "1", "2.5", None, None, "1"]


def test_csv_encoding_is_sniffed(project):
    project.write_raw("mini.csv", "rid,q_sex\nr1,Homme\nr2,Fémme\n", encoding="latin-1")
    raw = read_source(_card(), project.raw)
    assert raw.notes["encoding"] == "cp1252" and raw.frame["q_sex"].tolist() == ["Homme", "Fémme"]
    project.write_raw("mini.csv", "rid,q_sex\nr1,\x81Femme\n", encoding="latin-1")  # 0x81: not cp1252
    assert read_source(_card(), project.raw).notes["encoding"] == "latin-1"
    project.write_raw("mini.csv", "rid\tq_sex\r\nr1\tFemme \u2019\r\n", encoding="utf-16")  # Excel "Unicode text"
    raw = read_source(_card(), project.raw)
    assert raw.notes["encoding"] == "utf-16" and raw.frame["q_sex"].tolist() == ["Femme \u2019"]
    project.write_raw("mini.csv", "\ufeffrid;q_sex\nr1;Femme\n", encoding="utf-8")
    raw = read_source(_card(), project.raw)
    assert raw.notes["encoding"] == "utf-8-sig" and list(raw.frame.columns) == ["rid", "q_sex"]


def test_csv_keeps_leading_zeros_as_text(project):
    project.write_raw("mini.csv", "rid,code\n001,07\n")
    assert read_source(_card(free_text_columns=["code"]), project.raw).frame.iloc[0].tolist() == ["001", "07"]


def test_csv_reads_only_the_columns_the_card_uses_but_checks_every_row(project):
    project.write_raw("mini.csv", "rid,unused,code,other\n001,a,07,b\n002,c,08,d\n")
    raw = read_source(_card(free_text_columns=["code"], personal_columns=[]), project.raw)
    assert list(raw.frame.columns) == ["rid", "code"] and raw.notes["header"] == ["rid", "unused", "code", "other"]
    project.write_raw("mini.csv", "rid,unused,code,other\n001,a,07,b\n002,c,08,d,extra\n003,e,09\n")
    with pytest.raises(ReadError, match="malformed CSV at line 3 \\(5 fields, the header has 4\\)"):
        read_source(_card(free_text_columns=["code"], personal_columns=[]), project.raw)
    project.write_raw("mini.csv", "rid,unused,code,other\n001,a,07\n")  # a short row is missing values
    assert read_source(_card(free_text_columns=["code"], personal_columns=[]), project.raw).frame["code"].tolist() == ["07"]


@pytest.mark.parametrize("text, message", [
    ("rid,code\n001,07\n002,08,extra\n", "malformed CSV at line 3 \\(3 fields, the header has 2\\)"),
    ("\n\n\n", "file has no data \\(only blank lines\\)"),
])
def test_whole_and_batched_text_reads_give_the_same_one_line_errors(tmp_path, text, message):
    path = tmp_path / "mini.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ReadError, match=f"mini.csv: {message}"):
        read_text_table(path, ReaderOptions())
    with pytest.raises(ReadError, match=f"mini.csv: {message}"):
        list(iter_text_batches(path, ReaderOptions(), batch_rows=1))


def test_excel_sheet_and_header_row(project):
    path = project.raw / "mini.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"a": ["notes"], "b": [None]}).to_excel(writer, sheet_name="readme", index=False)
        frame = pd.DataFrame([["Survey export", None], ["rid", "q_sex"], ["r1", "Femme"]])
        frame.to_excel(writer, sheet_name="data", index=False, header=False)
    card = _card(files=[{"path": "mini.xlsx"}], reader="excel", reader_options={"sheet": "data", "header_row": 1})
    raw = read_source(card, project.raw)
    assert list(raw.frame.columns) == ["rid", "q_sex"] and raw.frame["q_sex"].tolist() == ["Femme"]
    card = _card(files=[{"path": "mini.xlsx"}], reader="excel", reader_options={"sheet": "donnees"})
    with pytest.raises(ReadError, match=r"no sheet 'donnees'; sheets are: \['readme', 'data'\]"):
        read_source(card, project.raw)


@pytest.mark.parametrize("kind,writer,suffix", [("spss", pyreadstat.write_sav, "sav"), ("stata", pyreadstat.write_dta, "dta")])
def test_spss_and_stata_keep_codes_and_value_labels(project, kind, writer, suffix):
    frame = pd.DataFrame({"rid": ["a", "b"], "q_sex": [1.0, 2.0]})
    path = project.raw / f"mini.{suffix}"
    writer(frame, str(path), variable_value_labels={"q_sex": {1: "Femme", 2: "Homme"}})
    raw = read_source(_card(files=[{"path": f"mini.{suffix}"}], reader=kind), project.raw)
    assert raw.frame["q_sex"].tolist() == [1.0, 2.0]
    assert raw.value_labels["q_sex"] == {"1": "Femme", "2": "Homme"}


def test_parquet(project):
    pd.DataFrame({"rid": ["a"], "x": [1]}).to_parquet(project.raw / "mini.parquet")
    raw = read_source(_card(files=[{"path": "mini.parquet"}], reader="parquet"), project.raw)
    assert raw.frame["x"].tolist() == [1]


def test_hxl_tags_are_normalised_and_mapped(project):
    project.write_raw(
        "mini.csv",
        "Household,Region,Status,Weight\n#household+id,#adm1 +name,#affected+idps +type,#indicator+weight\n"
        "h1,Nairobi,idp,1.5\nh2,Coast,host,2\n",
    )
    assert normalise_hxl_tag("#Adm1 +Name") == "#adm1+name"
    assert normalise_hxl_tag("#affected+type+idps") == normalise_hxl_tag("#affected +idps+type")
    card = _card(reader="hxl", id_column="#household+id", personal_columns=[], free_text_columns=[],
                 design={"type": "probability", "weight": "#indicator+weight"},
                 columns={"admin1": "#adm1+name", "displacement_status": "#affected+idps+type"},
                 derive={"admin1_code": "natural_earth"}, indicators={})
    raw = read_source(card, project.raw)
    assert list(raw.frame.columns) == ["#household+id", "#adm1+name", "#affected+idps+type", "#indicator+weight"]
    assert raw.frame["#adm1+name"].tolist() == ["Nairobi", "Coast"]


def write_kobo(project, data_rows, choices_rows=None, multiple=True):
    """A KoboToolbox export (group prefixes, select_one and select_multiple) and its XLSForm."""
    survey = pd.DataFrame(
        {"type": ["text", "select_one sexes", "integer", "select_multiple needs" if multiple else "text"],
         "name": ["rid", "q_sex", "q_age", "needs"], "label": ["ID", "Sex", "Age", "Needs"]}
    )
    choices = pd.DataFrame(
        choices_rows or [["sexes", "f", "Female"], ["sexes", "m", "Male"], ["needs", "food", "Food"], ["needs", "cash", "Cash"]],
        columns=["list_name", "name", "label"],
    )
    with pd.ExcelWriter(project.raw / "form.xlsx") as writer:
        survey.to_excel(writer, sheet_name="survey", index=False)
        choices.to_excel(writer, sheet_name="choices", index=False)
    data = pd.DataFrame(data_rows, columns=["meta/rid", "grp/q_sex", "grp/q_age", "grp/needs"])
    data.to_excel(project.raw / "export.xlsx", index=False)


def kobo_card(**changes):
    card = base_card(files=[{"path": "export.xlsx"}], reader="kobo", reader_options={"form": "form.xlsx"},
                     personal_columns=[], free_text_columns=[], design={"type": "non_probability"},
                     columns={"sex": "q_sex", "age": "q_age"}, recodes={"sex": {"Female": "female", "Male": "male"}},
                     derive={"age_group": "from_age"},
                     indicators={"food_insecurity": {"column": "needs/food", "true_values": [1], "false_values": [0]}})
    card.update(changes)
    return card


def test_kobo_export_with_form_select_one_and_select_multiple(project):
    write_kobo(project, [["k1", "f", "19", "food cash"], ["k2", "m", "30", "cash"], ["k3", "f", "70", None]])
    raw = read_source(SourceCard(**kobo_card()), project.raw)
    assert {"rid", "q_sex", "q_age", "needs", "needs/food", "needs/cash"} <= set(raw.frame.columns)
    assert raw.frame["needs/food"].tolist() == ["1", "0", pd.NA]
    assert raw.value_labels["q_sex"] == {"f": "Female", "m": "Male"}
    project.write_card(kobo_card())
    assert project.run("mini") == 0
    frame = load_processed("mini", project.processed)
    assert frame["sex"].tolist() == ["female", "male", "female"]
    assert frame["food_insecurity"].tolist()[:2] == [1.0, 0.0] and pd.isna(frame["food_insecurity"].iloc[2])
    assert frame["age_group"].tolist() == ["18-24", "25-34", "65+"]


def test_kobo_choices_lacking_a_code_is_named(project):
    write_kobo(project, [["k1", "f", "19", "food"], ["k2", "x", "30", "cash"]])
    with pytest.raises(ReadError, match=r"column 'q_sex' has code 'x' \(row 3; 1 row\) that choice list 'sexes' in form.xlsx lacks"):
        read_source(SourceCard(**kobo_card()), project.raw)


def test_several_files_of_one_source_are_stacked_and_must_share_columns(project):
    project.write_raw("a.csv", "rid,q_sex\nr1,Femme\n")
    project.write_raw("b.csv", "rid,q_sex\nr2,Homme\n")
    raw = read_source(_card(files=[{"path": "a.csv"}, {"path": "b.csv"}]), project.raw)
    assert raw.frame["rid"].tolist() == ["r1", "r2"]
    assert raw.row_label(1) == "case 2"
    project.write_raw("b.csv", "rid,sexe\nr2,Homme\n")
    with pytest.raises(ReadError, match=r"b.csv: columns differ from a.csv"):
        read_source(_card(files=[{"path": "a.csv"}, {"path": "b.csv"}]), project.raw)


def test_a_file_with_join_on_adds_columns_one_to_one(project):
    project.write_raw("main.csv", "rid,q_sex\nr1,Femme\nr2,Homme\n")
    project.write_raw("rep.csv", "rid,rw1,rw2\nr2,2.0,2.2\nr1,1.0,1.1\n")
    files = [{"path": "main.csv"}, {"path": "rep.csv", "join_on": "rid"}]
    replicates = {"type": "probability", "weight": "rw1", "replicate": {"columns": "rw*", "method": "sdr", "scale": 0.05}}
    raw = read_source(_card(files=files, design=replicates), project.raw)
    assert raw.frame[["rid", "rw1", "rw2"]].values.tolist() == [["r1", "1.0", "1.1"], ["r2", "2.0", "2.2"]]
    project.write_raw("rep.csv", "rid,rw1,rw2\nr2,2.0,2.2\n")
    with pytest.raises(ReadError, match=r"rep.csv: 1 rows of main.csv have no match on 'rid' \(first: line 2\)"):
        read_source(_card(files=files, design=replicates), project.raw)
    with pytest.raises(Exception, match="the first file holds the rows"):
        _card(files=[{"path": "rep.csv", "join_on": "rid"}])


def test_a_column_in_both_joined_files_must_agree(project):
    project.write_raw("main.csv", "rid,week\nr1,50\nr2,50\n")
    files = [{"path": "main.csv"}, {"path": "rep.csv", "join_on": "rid"}]
    project.write_raw("rep.csv", "rid,week,rw1\nr1,50,1\nr2,50,2\n")
    card = _card(files=files, free_text_columns=["week", "rw1"])  # columns the card uses are read
    assert list(read_source(card, project.raw).frame.columns) == ["rid", "week", "rw1"]
    project.write_raw("rep.csv", "rid,week,rw1\nr1,50,1\nr2,51,2\n")
    with pytest.raises(ReadError, match="column 'week' is also in main.csv with different values"):
        read_source(card, project.raw)


def test_kobo_export_with_labels_instead_of_codes(project):
    write_kobo(project, [["k1", "Female", "19", "food"], ["k2", "Male", "30", "cash"]])
    project.write_card(kobo_card())
    assert project.run("mini") == 0
    assert load_processed("mini", project.processed)["sex"].tolist() == ["female", "male"]
