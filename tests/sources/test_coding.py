"""Coded free text (kind: coding): four exchange formats into one long table, errors, accounting.

Every test builds its own small project: the mini survey of ``conftest.py`` (respondents r1-r5),
a codebook, the open answers, and the same codings exported as a REFI-QDA project, Taguette
highlights (one CSV per coder), a Coda V2 messages file and a plain spreadsheet.
"""

from __future__ import annotations

import json
import re
import zipfile

import pandas as pd
import pytest
import yaml

from analysis.sources import coding, load_processed
from analysis.sources.card import load_card

from .conftest import BASE_CSV, base_card

#: (response, coder, tool code name) — the same codings in every format.
CODINGS = [
    ("r1", "ana", "Health access"), ("r1", "ben", "health"),
    ("r2", "ana", "food"), ("r2", "ben", "food"), ("r2", "ben", "work"),
    ("r3", "ana", "no_theme"), ("r3", "ben", "work"),
    ("r4", "ana", "health"), ("r4", "ben", "health"),
]
TEXTS = {
    "r1": "The clinic in Kibera closed and Amina Otieno could not get medicine.",
    "r2": "We ate once a day and lost our work at the market.",
    "r3": "Nothing much changed for us, only the work.",
    "r4": "No nurse came for months; call me on +254 712 345 678.",
    "r5": "Please stop contacting me.",
}
CODEBOOK = {
    "id": "mini_codes",
    "title": "Mini codebook",
    "codes": {
        "health": {"label": "Health care out of reach", "theme": "access_to_health", "aliases": ["Health access"]},
        "food": {"label": "Not enough food", "theme": "food_insecurity"},
        "work": {"label": "Lost work or income", "theme": "income_and_livelihoods"},
        "no_theme": {"label": "No theme applies", "special": "no_theme"},
        "stop": {"label": "Withdrawal (STOP)", "special": "stop"},
    },
}


def expected_rows(codings=CODINGS) -> set:
    alias = {"Health access": "health"}
    return {(r, c, alias.get(k, k)) for r, c, k in codings}


@pytest.fixture
def coded_project(project):
    """The mini survey ingested, a codebook and the open answers written."""
    project.write_raw("mini.csv", BASE_CSV)
    project.write_card(base_card(free_text_columns=[]))
    assert project.run("mini") == 0
    (project.cards / "mini_codes.yml").write_text(yaml.safe_dump(CODEBOOK), encoding="utf-8")
    answers = pd.DataFrame({"rid": list(TEXTS), "answer": list(TEXTS.values()),
                            "consent": ["yes", "no", "yes", "yes", "no"],
                            "name": ["Amina Otieno", "Brian Kamau", "Cynthia Wanjiru", "David Mwangi", "Esther"]})
    project.write_raw("voices/answers.csv", answers.to_csv(index=False))
    return project


def coding_card(fmt: str, files, **changes) -> dict:
    card = {
        "id": "mini_voices", "title": "Mini open answers (SYNTHETIC)", "kind": "coding", "synthetic": True,
        "format": fmt, "files": files, "codebook": "mini_codes.yml", "survey": "mini",
        "responses": {"path": "voices/answers.csv", "id_column": "rid", "text_column": "answer",
                      "consent_column": "consent", "personal_columns": ["name"]},
        "licence": "CC0 (test fixture)",
    }
    card.update(changes)
    return card


# --------------------------------------------------------------------------------------------
# Writers of the four formats (what coders' tools export)


def write_spreadsheet(project, codings=CODINGS, name="voices/coding.csv", blank_coder=False):
    frame = pd.DataFrame(codings, columns=["resp", "who", "tag"])
    if blank_coder:
        frame.loc[1, "who"] = ""
    project.write_raw(name, frame.to_csv(index=False))
    return [{"path": name}]


def write_taguette(project, codings=CODINGS):
    files = []
    for coder in sorted({c for _, c, _ in codings}):
        rows = [{"id": i, "document": f"response {r}.txt", "tag": k, "tag_parent": "", "tag_full_path": k,
                 "tag_description": "", "content": TEXTS[r][:30]}
                for i, (r, c, k) in enumerate(codings, start=1) if c == coder]
        name = f"voices/taguette_{coder}.csv"
        project.write_raw(name, pd.DataFrame(rows).to_csv(index=False))
        files.append({"path": name, "coder": coder})
    return files


def write_qdpx(project, codings=CODINGS, drop_user=False):
    ns = "urn:QDA-XML:project:1.0"
    coders = sorted({c for _, c, _ in codings})
    codes = sorted({k for _, _, k in codings})
    users = "".join(f'<User guid="u-{c}" name="{c}"/>' for c in coders)
    code_xml = "".join(f'<Code guid="k-{i}" name="{k}" isCodable="true"/>' for i, k in enumerate(codes))
    sources = []
    for r in sorted({r for r, _, _ in codings}):
        selections = []
        for n, (rr, c, k) in enumerate(codings):
            if rr != r:
                continue
            user = "" if (drop_user and n == 0) else f' creatingUser="u-{c}"'
            selections.append(f'<PlainTextSelection guid="s-{n}" startPosition="0" endPosition="20">'
                              f'<Coding guid="c-{n}"{user}><CodeRef targetGUID="k-{codes.index(k)}"/></Coding>'
                              "</PlainTextSelection>")
        sources.append(f'<TextSource guid="t-{r}" name="{r}"><PlainTextContent>{TEXTS[r]}</PlainTextContent>'
                       + "".join(selections) + "</TextSource>")
    xml = (f'<?xml version="1.0" encoding="utf-8"?><Project xmlns="{ns}" name="mini">'
           f"<Users>{users}</Users><CodeBook><Codes>{code_xml}</Codes></CodeBook>"
           f"<Sources>{''.join(sources)}</Sources></Project>")
    path = project.raw / "voices" / "mini.qdpx"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("project.qde", xml)
    return [{"path": "voices/mini.qdpx"}]


def write_coda(project, codings=CODINGS, superseded=True):
    messages = []
    for r in sorted({r for r, _, _ in codings}):
        labels = []
        for rr, c, k in codings:
            if rr == r:
                labels.append({"SchemeID": "Scheme-theme", "CodeID": k, "DateTimeUTC": "2021-05-02T10:00:00+00:00",
                               "Checked": True, "Confidence": 1,
                               "Origin": {"OriginID": c, "Name": c, "OriginType": "Manual"}})
        if superseded and r == "r1":  # an older label of ana's, replaced by the later one
            labels.append({"SchemeID": "Scheme-theme", "CodeID": "food", "DateTimeUTC": "2021-05-01T09:00:00+00:00",
                           "Checked": True, "Origin": {"OriginID": "ana", "OriginType": "Manual"}})
            labels.append({"SchemeID": "Scheme-theme", "CodeID": "work", "DateTimeUTC": "2021-05-03T09:00:00+00:00",
                           "Checked": False, "Origin": {"OriginID": "auto", "OriginType": "Automatic"}})
        messages.append({"MessageID": r, "Text": TEXTS[r], "CreationDateTimeUTC": "2021-05-01T08:00:00+00:00",
                         "Labels": labels, "SequenceNumber": len(messages)})
    project.write_raw("voices/coda.json", json.dumps(messages))
    return [{"path": "voices/coda.json"}]


WRITERS = {"spreadsheet": write_spreadsheet, "taguette": write_taguette, "qdpx": write_qdpx, "coda": write_coda}
EXTRA = {"spreadsheet": {"columns": {"response_id": "resp", "coder": "who", "code": "tag"}},
         "taguette": {"response_id_pattern": r"response (\w+)\.txt"}, "qdpx": {}, "coda": {}}


def ingest_format(project, fmt, codings=CODINGS, **changes):
    files = WRITERS[fmt](project, codings)
    project.write_card(coding_card(fmt, files, **{**EXTRA[fmt], **changes}))
    return project.run("mini_voices", force=True)


# --------------------------------------------------------------------------------------------
# One long table from every format


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_reads_into_the_same_long_table(coded_project, fmt, capsys):
    assert ingest_format(coded_project, fmt) == 0, capsys.readouterr().out
    table = load_processed("mini_voices", coded_project.processed)
    survey = load_processed("mini", coded_project.processed)
    assert set(coding.CODED_COLUMNS) <= set(table.columns)
    # the ids are the survey's hashed respondent ids; raw ids never reach processed data
    raw_to_hash = dict(zip(["r1", "r2", "r3", "r4", "r5"], survey["respondent_id"]))
    back = {v: k for k, v in raw_to_hash.items()}
    rows = {(back[r], c, k) for r, c, k in zip(table["response_id"], table["coder"], table["code"])}
    assert rows == expected_rows()
    assert not table["response_id"].isin(["r1", "r2", "r3", "r4"]).any()
    # case variables joined from the survey; themes from the codebook
    assert (table["country"] == "KEN").all()
    assert set(table.loc[table["code"] == "health", "theme"]) == {"access_to_health"}
    assert table.loc[table["code"] == "no_theme", "special"].eq("no_theme").all()
    assert table.attrs["source"]["kind"] == "coding"
    log = json.loads((coded_project.processed / "mini_voices.log.json").read_text())
    assert log["rows_read"] == log["rows_kept"] + sum(log["rows_excluded"].values())
    assert log["rows_kept"] == len(table) == len(CODINGS)


def test_coda_keeps_each_coders_latest_checked_labels_and_counts_the_rest(coded_project):
    assert ingest_format(coded_project, "coda") == 0
    log = json.loads((coded_project.processed / "mini_voices.log.json").read_text())
    assert log["rows_excluded"] == {"label superseded by the coder's later labelling": 1,
                                    "label not checked by a coder (automatic)": 1}


def test_personal_data_in_answers_is_scrubbed_before_it_is_written(coded_project):
    assert ingest_format(coded_project, "spreadsheet") == 0
    table = load_processed("mini_voices", coded_project.processed)
    blob = " ".join(table["span"].dropna())
    assert "Amina" not in blob and "Otieno" not in blob and "712 345 678" not in blob and "Kibera" not in blob
    assert "[name]" in blob and "[phone]" in blob and "[place]" in blob
    log = json.loads((coded_project.processed / "mini_voices.log.json").read_text())
    assert log["redactions"]["phone"] >= 1 and log["redactions"]["name"] >= 1
    text = (coded_project.processed / "mini_voices.log.json").read_text()
    assert "Amina" not in text and "712 345 678" not in text  # the phone, not any 3 digits of a hash


def test_consent_column_marks_who_may_be_quoted(coded_project):
    assert ingest_format(coded_project, "spreadsheet") == 0
    table = load_processed("mini_voices", coded_project.processed)
    survey = load_processed("mini", coded_project.processed)
    r2 = survey["respondent_id"].iloc[1]
    assert not table.loc[table["response_id"] == r2, "quote_consent"].any()
    assert table.loc[table["response_id"] != r2, "quote_consent"].all()


def test_stop_withdraws_the_respondent_from_everything(coded_project):
    codings = [*CODINGS, ("r4", "ana", "stop")]
    survey_before = load_processed("mini", coded_project.processed)
    r4 = survey_before["respondent_id"].iloc[3]
    assert ingest_format(coded_project, "spreadsheet", codings) == 0
    table = load_processed("mini_voices", coded_project.processed)
    assert r4 not in set(table["response_id"])
    log = json.loads((coded_project.processed / "mini_voices.log.json").read_text())
    assert log["rows_excluded"]["respondent withdrew (STOP): removed everywhere"] == 3
    assert log["withdrawn_respondents"] == 1
    # the survey itself no longer holds the respondent, for every chapter that loads it
    survey_after = load_processed("mini", coded_project.processed)
    assert len(survey_after) == len(survey_before) - 1 and survey_after.attrs["withdrawn"] == 1
    assert r4 not in set(survey_after["respondent_id"])


def test_duplicate_codings_are_merged_and_counted(coded_project):
    codings = [*CODINGS, ("r1", "ana", "health")]
    assert ingest_format(coded_project, "spreadsheet", codings) == 0
    log = json.loads((coded_project.processed / "mini_voices.log.json").read_text())
    assert log["rows_excluded"] == {"same code by the same coder on the same response (merged)": 1}
    assert log["rows_kept"] == len(CODINGS)


def test_coding_cards_load_through_load_card_and_order_after_their_survey(coded_project):
    files = write_spreadsheet(coded_project)
    path = coded_project.write_card(coding_card("spreadsheet", files, **EXTRA["spreadsheet"]))
    card = load_card(path)
    assert card.kind == "coding" and card.id == "mini_voices"
    assert card.path_label == str(path)  # errors name the card's file
    built = coding.CodingCard(**coding_card("spreadsheet", files, **EXTRA["spreadsheet"]))
    assert built.path_label == "params/sources/mini_voices.yml"
    # both cards named: the coding card is ingested after the survey whatever the order given
    assert coded_project.run("mini_voices", "mini", force=True) == 0


# --------------------------------------------------------------------------------------------
# One-line errors


def _failure(project, capsys) -> str:
    out = capsys.readouterr().out.strip().splitlines()
    line = [x for x in out if x.startswith("mini_voices:")][-1]
    assert "Traceback" not in line
    return line


def test_a_code_not_in_the_codebook_is_a_one_line_error(coded_project, capsys):
    codings = [*CODINGS, ("r3", "ben", "housing")]
    assert ingest_format(coded_project, "spreadsheet", codings) == 1
    line = _failure(coded_project, capsys)
    assert re.search(r"coding\.csv: line 11: code 'housing' is not in codebook mini_codes", line), line


def test_a_response_id_not_in_the_survey_is_a_one_line_error_or_excluded(coded_project, capsys):
    codings = [*CODINGS, ("r9", "ben", "food")]
    assert ingest_format(coded_project, "spreadsheet", codings) == 1
    line = _failure(coded_project, capsys)
    assert "line 11: response id is not a respondent of survey 'mini'" in line and "r9" not in line
    assert ingest_format(coded_project, "spreadsheet", codings, unmatched_responses="exclude") == 0
    log = json.loads((coded_project.processed / "mini_voices.log.json").read_text())
    assert log["rows_excluded"] == {"response id not in survey mini": 1}


def test_a_missing_coder_is_a_one_line_error_in_every_format(coded_project, capsys):
    files = write_spreadsheet(coded_project, blank_coder=True)
    coded_project.write_card(coding_card("spreadsheet", files, **EXTRA["spreadsheet"]))
    assert coded_project.run("mini_voices") == 1
    assert "line 3: coder missing in column 'who'" in _failure(coded_project, capsys)

    files = [{k: v for k, v in f.items() if k != "coder"} for f in write_taguette(coded_project)]
    coded_project.write_card(coding_card("taguette", files, **EXTRA["taguette"]))
    assert coded_project.run("mini_voices") == 1
    assert "coder missing; Taguette exports one file per coder" in _failure(coded_project, capsys)

    files = write_qdpx(coded_project, drop_user=True)
    coded_project.write_card(coding_card("qdpx", files))
    assert coded_project.run("mini_voices") == 1
    assert "TextSource 1 selection 1 coding 1: coder missing" in _failure(coded_project, capsys)

    messages = json.loads(json.dumps([{"MessageID": "r1", "Text": "x", "Labels": [{"CodeID": "food", "Origin": {}}]}]))
    coded_project.write_raw("voices/coda.json", json.dumps(messages))
    coded_project.write_card(coding_card("coda", [{"path": "voices/coda.json"}]))
    assert coded_project.run("mini_voices") == 1
    assert "message 1 label 1: coder missing (no Origin.OriginID)" in _failure(coded_project, capsys)


@pytest.mark.parametrize("fmt,expected", [
    ("qdpx", "is not a REFI-QDA project"),
    ("coda", "is not a Coda V2 messages file"),
    ("taguette", "is not a Taguette highlights CSV"),
])
def test_a_file_that_is_not_the_format_named_is_a_one_line_error(coded_project, capsys, fmt, expected):
    files = write_spreadsheet(coded_project)  # a plain spreadsheet, named as another format
    coded_project.write_card(coding_card(fmt, [{**files[0], "coder": "ana"}]))
    assert coded_project.run("mini_voices") == 1
    line = _failure(coded_project, capsys)
    assert "coding.csv" in line and expected in line, line


def test_a_qdpx_without_project_qde_or_namespace_is_named(coded_project, capsys):
    path = coded_project.raw / "voices" / "mini.qdpx"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("other.xml", "<Project/>")
    coded_project.write_card(coding_card("qdpx", [{"path": "voices/mini.qdpx"}]))
    assert coded_project.run("mini_voices") == 1
    assert "the zip holds no project.qde" in _failure(coded_project, capsys)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("project.qde", "<Project name='x'/>")
    assert coded_project.run("mini_voices") == 1
    assert "namespace urn:QDA-XML:project:1.0" in _failure(coded_project, capsys)


def test_card_and_codebook_mistakes_are_one_line_errors(coded_project, capsys):
    files = write_spreadsheet(coded_project)
    coded_project.write_card(coding_card("spreadsheet", files, colums={}))
    assert coded_project.run("mini_voices") == 1
    assert "key 'colums': unknown key" in _failure(coded_project, capsys)
    bad = json.loads(json.dumps(CODEBOOK))
    bad["codes"]["food"]["theme"] = "housing"
    (coded_project.cards / "mini_codes.yml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    coded_project.write_card(coding_card("spreadsheet", files, **EXTRA["spreadsheet"]))
    assert coded_project.run("mini_voices") == 1
    assert "key 'codes.food.theme': unknown theme 'housing'" in _failure(coded_project, capsys)


def test_the_survey_must_be_processed_first(project, capsys):
    (project.cards / "mini_codes.yml").write_text(yaml.safe_dump(CODEBOOK), encoding="utf-8")
    project.write_raw("voices/answers.csv", "rid,answer,consent,name\nr1,x,yes,A\n")
    files = write_spreadsheet(project)
    project.write_card(coding_card("spreadsheet", files, **EXTRA["spreadsheet"]))
    assert project.run("mini_voices") == 1
    assert "no processed table for 'mini'" in _failure(project, capsys)


def test_chapter_1_row_accounting_counts_the_stop_withdrawals_with_their_reason(coded_project):
    from analysis import chapters
    from analysis.chapters.data_profile import row_accounting
    from analysis.text import text

    assert ingest_format(coded_project, "spreadsheet", [*CODINGS, ("r4", "ana", "stop")]) == 0
    run = chapters.start_run("data_profile", source="mini", processed_dir=coded_project.processed,
                             output_dir=coded_project.root / "out" / "data_profile")
    table = row_accounting(run)
    step, rows, detail = (text(f"data_profile.rows.columns.{c}") for c in ("step", "rows", "detail"))
    withdrawn = table[table[step] == text("data_profile.rows.withdrawn")]
    assert list(withdrawn[rows]) == ["1"]
    assert withdrawn[detail].iloc[0] == text("data_profile.rows.withdrawn_detail", source="mini_voices")
    # the accounting adds up: rows kept at ingest, less the withdrawals, are the rows analysed
    kept = int(table.loc[table[step] == text("data_profile.rows.rows_kept"), rows].iloc[0].replace(",", ""))
    analysed = table.loc[table[step] == text("data_profile.rows.rows_analysed"), rows]
    assert list(analysed) == [f"{kept - 1:,}"] and len(run.frames["mini"]) == kept - 1
