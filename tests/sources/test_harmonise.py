"""Tests for analysis.sources.harmonise: mapping, recodes, missing and unknown codes, design, accounting."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis import schema
from analysis.sources import load_processed
from analysis.sources.card import SourceCard
from analysis.sources.harmonise import NOT_SHOWN, HarmoniseError, harmonise
from analysis.sources.readers import RawTable

from .conftest import BASE_CSV, SALT, base_card


def _ingest(project, card=None, csv=BASE_CSV):
    project.write_card(card or base_card())
    project.write_raw("mini.csv", csv)
    code = project.run("mini")
    log = json.loads((project.processed / "mini.log.json").read_text()) if code == 0 else None
    return code, log


def test_mini_source_is_harmonised_with_full_accounting(project, capsys):
    code, log = _ingest(project)
    assert code == 0, capsys.readouterr().out
    frame = load_processed("mini", project.processed)
    assert list(frame.columns[: len(schema.SCHEMA_COLUMNS)]) == schema.SCHEMA_COLUMNS
    assert frame["sex"].tolist() == ["female", "male", "female", "male", "female"]
    assert frame["age_group"].tolist()[:4] == ["18-24", "35-44", "65+", "35-44"]
    assert pd.isna(frame["age"].iloc[4])  # -99 is a missing code
    assert frame["admin1_code"].tolist() == ["KE-110", "KE-110", "KE-300", "KE-300", "KE-300"]
    assert frame["food_insecurity"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert log["rows_read"] == 5 and log["rows_kept"] == 5 and log["rows_excluded"] == {}
    assert log["values_recoded"]["sex"] == 5
    assert log["missing_codes"] == {"age": {"-99 (refused)": 1}}
    assert log["personal_columns_dropped"] == ["name"]
    assert frame.attrs["design"]["strata"] == "strata" and frame.attrs["design"]["psu"] == "psu"
    assert frame.attrs["source"]["synthetic"] is True


def test_no_personal_value_or_raw_id_survives(project):
    _ingest(project)
    blob = (project.processed / "mini.parquet").read_bytes() + (project.processed / "mini.log.json").read_bytes()
    for canary in (b"Amina", b"Otieno", b"Kamau", b"r1", b"r2"):
        assert canary not in blob
    frame = load_processed("mini", project.processed)
    assert frame["respondent_id"].str.fullmatch(r"[0-9a-f]{20}").all()


def test_unknown_codes_are_counted_and_set_missing(project):
    csv = BASE_CSV.replace("r2,Brian Kamau,Homme", "r2,Brian Kamau,X").replace(",no,\n", ",maybe,\n")
    code, log = _ingest(project, base_card(unknown_codes="allow"), csv=csv)
    assert code == 0
    assert log["unknown_codes"]["sex"] == {"X": 1}  # a code-like raw value, as the user wrote it
    # a word may be personal data (a name typed into the wrong column): counted, never shown
    assert log["unknown_codes"]["food_insecurity"] == {NOT_SHOWN: 1}
    assert log["unknown_code_rows"] == {"sex": "line 3", "food_insecurity": "line 3"}
    frame = load_processed("mini", project.processed)
    assert pd.isna(frame["sex"].iloc[1]) and pd.isna(frame["food_insecurity"].iloc[1])
    assert log["rows_kept"] == 5  # an unknown code never drops a row


def test_bad_weights_and_missing_psu_exclude_rows_with_reasons(project):
    csv = (BASE_CSV.replace("r2,Brian Kamau,Homme,41,Nairobi,2.0", "r2,Brian Kamau,Homme,41,Nairobi,0")
           .replace("r4,David Mwangi,2,35,Coast,3.0,s2,c4", "r4,David Mwangi,2,35,Coast,,s2,c4")
           .replace("r1,Amina Otieno,Femme,23,Nairobi,1.5,s1,c1", "r1,Amina Otieno,Femme,23,Nairobi,1.5,s1,"))
    card = base_card(design={"type": "probability", "weight": "wt", "strata": "stratum", "psu": "cluster", "single_psu": "adjust"},
                     min_kept_share=0.4)
    code, log = _ingest(project, card, csv)
    assert code == 0
    assert log["rows_excluded"] == {
        "weight missing or not a number (wt)": 1,
        "weight not positive (wt)": 1,
        "psu missing (cluster)": 1,
    }
    assert log["rows_read"] == log["rows_kept"] + sum(log["rows_excluded"].values()) == 5


def test_non_probability_design_weighs_one(project):
    card = base_card(design={"type": "non_probability"})
    code, _ = _ingest(project, card)
    frame = load_processed("mini", project.processed)
    assert code == 0 and (frame["weight"] == 1.0).all() and frame.attrs["design"]["sample_type"] == "non_probability"


def _card(**changes) -> SourceCard:
    data = base_card(**changes)
    return SourceCard(**data)


def _raw(frame: pd.DataFrame, labels=None) -> RawTable:
    from pathlib import Path

    return RawTable(frame, Path("raw/mini.csv"), value_labels=labels or {})


def _frame(n: int, **columns) -> pd.DataFrame:
    base = {
        "rid": [f"r{i}" for i in range(n)],
        "name": ["x"] * n,
        "q_sex": ["1"] * n,
        "q_age": ["30"] * n,
        "region": ["Nairobi"] * n,
        "wt": ["1"] * n,
        "stratum": ["s"] * n,
        "cluster": [f"c{i % 2}" for i in range(n)],
        "fi": ["yes"] * n,
        "comment": [None] * n,
    }
    base.update(columns)
    return pd.DataFrame(base)


def test_value_labels_are_recoded_like_codes():
    # SPSS-style: code 1 with label "Femme" maps through the card's label recode
    card = _card(recodes={"sex": {"Femme": "female", "Homme": "male"}})
    raw = _raw(_frame(2, q_sex=[1.0, 2.0]), labels={"q_sex": {"1": "Femme", "2": "Homme"}})
    out = harmonise(card, raw, salt=SALT)
    assert out.frame["sex"].tolist() == ["female", "male"]


def test_wg_ss_derivation_and_single_question():
    wg = {f"wg{i}": ["1", "3"] for i in range(6)}
    columns = {"sex": "q_sex", **{d: f"wg{i}" for i, d in enumerate(schema.WG_DOMAINS)}}
    card = _card(columns=columns, derive={"disability": "wg_ss"})
    out = harmonise(card, _raw(_frame(2, **wg)), salt=SALT)
    assert out.frame["disability"].tolist() == ["no", "yes"]
    assert out.frame["disability_source"].tolist() == ["wg_ss", "wg_ss"]
    card = _card(columns={"disability": "dis"}, recodes={"disability": {"Oui": "yes", "Non": "no"}},
                 derive={"disability": "single_question"})
    out = harmonise(card, _raw(_frame(3, dis=["Oui", "Non", None])), salt=SALT)
    assert out.frame["disability"].tolist() == ["yes", "no", pd.NA]
    assert out.frame["disability_source"].tolist() == ["single_question", "single_question", pd.NA]


def test_wg_codes_outside_one_to_four_are_unknown():
    columns = {d: f"wg{i}" for i, d in enumerate(schema.WG_DOMAINS)}
    wg = {f"wg{i}": ["1", "7"] for i in range(6)}
    out = harmonise(_card(columns=columns, derive={"disability": "wg_ss"}, unknown_codes="allow"), _raw(_frame(2, **wg)), salt=SALT)
    assert out.accounting.unknown_codes["wg_seeing"] == {"7": 1}
    assert out.frame["disability"].tolist() == ["no", pd.NA]


def test_score_and_false_when_indicator_rules():
    card = _card(
        indicators={
            "mental_distress": {"columns": ["a", "b"], "score": {"offset": -1, "at_least": 4}},
            "long_covid": {"column": "lc", "true_values": [1], "false_values": [2], "false_when": {"had": [2]}},
            "food_insecurity": {"columns": ["f1", "f2"], "true_values": ["yes"]},
        }
    )
    frame = _frame(4, a=["1", "3", "4", None], b=["1", "3", "1", "4"], lc=["1", None, "2", None], had=["1", "2", "1", "1"],
                   f1=["no", "yes", None, "no"], f2=["no", "no", "yes", None])
    out = harmonise(card, _raw(frame), salt=SALT)
    assert out.frame["mental_distress"].tolist()[:3] == [0.0, 1.0, 0.0] and np.isnan(out.frame["mental_distress"].iloc[3])
    assert out.frame["long_covid"].tolist()[:3] == [1.0, 0.0, 0.0] and np.isnan(out.frame["long_covid"].iloc[3])
    assert out.frame["food_insecurity"].tolist()[:3] == [0.0, 1.0, 1.0] and np.isnan(out.frame["food_insecurity"].iloc[3])


def test_indicator_not_in_catalogue_is_an_error():
    with pytest.raises(HarmoniseError, match="indicator 'food_insecurity' is not in params/indicators.yml"):
        harmonise(_card(), _raw(_frame(2)), indicators={"had_covid": None}, salt=SALT)


def test_single_psu_stratum_fails_unless_allowed():
    frame = _frame(3, stratum=["a", "a", "b"], cluster=["1", "2", "3"])
    with pytest.raises(HarmoniseError, match="stratum 'b' of column 'stratum' has a single PSU"):
        harmonise(_card(), _raw(frame), salt=SALT)
    card = _card(design={"type": "probability", "weight": "wt", "strata": "stratum", "psu": "cluster", "single_psu": "adjust"})
    assert harmonise(card, _raw(frame), salt=SALT).design["single_psu"] == "adjust"


def test_replicate_weights_are_renamed_in_natural_order():
    reps = {f"rw{i}": ["1.0", "2.0"] for i in (1, 2, 10)}
    card = _card(design={"type": "probability", "weight": "wt", "replicate": {"columns": "rw*", "method": "sdr", "scale": 0.05}})
    frame = _frame(2, **reps)
    frame["rw10"] = ["9", "9"]
    out = harmonise(card, _raw(frame), salt=SALT)
    assert out.design["replicate_columns"] == ["repwt_1", "repwt_2", "repwt_3"]
    assert out.frame["repwt_3"].tolist() == [9.0, 9.0]
    assert out.design["replicate_method"] == "sdr" and out.design["replicate_scale"] == 0.05


def test_ids_are_salted_and_source_specific():
    a = harmonise(_card(), _raw(_frame(2)), salt="s1").frame["respondent_id"]
    b = harmonise(_card(), _raw(_frame(2)), salt="s2").frame["respondent_id"]
    assert a.iloc[0] != b.iloc[0] and a.is_unique


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    weights=st.lists(st.sampled_from(["1", "2.5", "0", "-1", "", "abc", "nan"]), min_size=1, max_size=30),
    sexes=st.lists(st.sampled_from(["1", "2", "Femme", "x", "", "-99"]), min_size=30, max_size=30),
)
def test_rows_in_equal_rows_out_plus_excluded(weights, sexes):
    n = len(weights)
    frame = _frame(n, wt=[w or None for w in weights], q_sex=[s or None for s in sexes[:n]], cluster=["c"] * n)
    card = _card(design={"type": "probability", "weight": "wt"})
    try:
        out = harmonise(card, _raw(frame), salt=SALT)
    except HarmoniseError:
        return
    acc = out.accounting
    assert acc.rows_read == n == acc.rows_kept + sum(acc.rows_excluded.values())
    assert len(out.frame) == acc.rows_kept
    assert (out.frame["weight"] > 0).all()


def test_income_categories_outside_the_catalogue_are_unknown():
    card = _card(columns={"income_group": "inc", "admin1": "region"}, recodes={"income_group": {"1": "lowest", "2": "low"}},
                 unknown_codes="allow")
    out = harmonise(card, _raw(_frame(3, inc=["1", "2", "Q5"])), salt=SALT, income_groups=("lowest", "low", "middle"))
    assert out.frame["income_group"].tolist() == ["lowest", "low", pd.NA]
    assert out.accounting.unknown_codes["income_group"] == {"Q5": 1}


def test_implausible_ages_are_unknown_codes():
    out = harmonise(_card(unknown_codes="allow"), _raw(_frame(3, q_age=["30", "230", "-4"])), salt=SALT)
    assert out.frame["age"].tolist()[0] == 30.0 and out.frame["age"].isna().tolist() == [False, True, True]
    assert out.accounting.unknown_codes["age"] == {"230": 1, "-4": 1}
    assert out.frame["age_group"].tolist() == ["25-34", pd.NA, pd.NA]


def test_a_mapped_disability_question_defaults_to_single_question():
    card = _card(columns={"disability": "dis", "admin1": "region"}, recodes={"disability": {"1": "yes", "2": "no"}})
    out = harmonise(card, _raw(_frame(2, dis=["1", "2"])), salt=SALT)
    assert out.frame["disability_source"].tolist() == ["single_question"] * 2


def test_unknown_codes_in_the_log_are_capped_and_cut():
    from collections import Counter

    from analysis.sources.harmonise import MAX_NAMED_CODES, NOT_SHOWN, OTHER_CODES, Accounting

    acc = Accounting()
    acc.unknown("sex", Counter({str(i): 1 for i in range(30)} | {"x" * 100: 5, "Amina Otieno": 2}), "line 9")
    slot = acc.unknown_codes["sex"]
    # 20 code-like values by name, the rest together; text that is not code-like is never shown
    assert len(slot) == MAX_NAMED_CODES + 2 and slot[NOT_SHOWN] == 7
    assert sum(slot.values()) == 37 and slot[OTHER_CODES] == 30 - MAX_NAMED_CODES
    assert not any("x" * 4 in key or "Amina" in key for key in slot)
    assert acc.unknown_code_rows == {"sex": "line 9"}


# --- issue 11: filter, separators, thresholds, WG-SS subsets, labels ---------------------------


def test_filter_counts_the_rows_it_removes_and_messages_keep_the_file_lines(project, capsys):
    csv = BASE_CSV.replace("r4,David", "r2,David")  # a duplicate id on line 5
    card = base_card(filter="q_age >= 30", min_kept_share=0.2,
                     design={"type": "probability", "weight": "wt", "strata": "stratum", "psu": "cluster", "single_psu": "adjust"})
    code, _ = _ingest(project, card, csv)
    line = capsys.readouterr().out
    # rows 2 (line 3) and 5 (line 5) remain after the filter; their lines are those of the file
    assert code == 1 and "duplicate respondent ids in line 3 and line 5" in line, line
    code, log = _ingest(project, card)
    assert code == 0 and log["rows_excluded"] == {"filter not met: q_age >= 30": 2}  # 23 and -99 (not >= 30)
    assert log["rows_kept"] == 3 and log["rows_read"] == 5


def test_filter_comparisons_on_missing_values_are_false():
    from analysis.sources.readers import codes_as_text
    from analysis.sources.row_filter import evaluate_filter, parse_filter

    frame = pd.DataFrame({"a": ["1", None, "2", "x"], "b": ["1,5", "2", None, "3"]})
    number = lambda s: pd.to_numeric(s.str.replace(",", "."), errors="coerce")
    run = lambda text: evaluate_filter(parse_filter(text), frame, codes_as_text, number).tolist()
    assert run("a == 1") == [True, False, False, False]
    assert run("a != 1") == [False, False, True, True]  # a missing value passes no comparison
    assert run("a in [1, 'x']") == [True, False, False, True]
    assert run("b >= 1.5") == [True, True, False, True]
    assert run("not (b > 2) or a == 'x'") == [True, True, True, True]


def test_decimal_and_thousands_separators_apply_to_every_number():
    card = _card(reader_options={"decimal": ",", "thousands": "."},
                 indicators={"income": {"column": "inc"}}, unknown_codes="allow")
    raw = _raw(_frame(3, wt=["1,5", "1.002,25", "2"], q_age=["30", "41,0", "52"], inc=["1.500,5", "20", "x"]))
    out = harmonise(card, raw, salt=SALT)
    assert out.frame["weight"].tolist() == [1.5, 1002.25, 2.0]
    assert out.frame["age"].tolist() == [30.0, 41.0, 52.0]
    assert out.frame["income"].tolist()[:2] == [1500.5, 20.0] and pd.isna(out.frame["income"].iloc[2])


@pytest.mark.parametrize(
    "weights,hint",
    [
        (["1,5", "2,25", "3,0"], 'reader_options.decimal: ","'),
        (["1,037.25", "2,000.5", "3,100"], 'reader_options.thousands: ","'),
        (["1.037,25", "2.000,5", "3.100,0"], 'reader_options.decimal: "," and reader_options.thousands: "."'),
        (["n/a", "n/a", "n/a"], "design.weight names the weight column"),
    ],
)
def test_no_row_kept_is_an_error_with_the_reason_and_a_hint(weights, hint):
    with pytest.raises(HarmoniseError) as info:
        harmonise(_card(), _raw(_frame(3, wt=weights)), salt=SALT)
    message = str(info.value)
    assert "only 0 of 3 rows kept" in message and "weight missing or not a number (wt): 3" in message
    assert hint in message and "1,037" not in message and "n/a" not in message


def test_wg_ss_from_the_domains_a_survey_asked_is_named_in_the_output(project):
    domains = ["wg_seeing", "wg_hearing", "wg_walking", "wg_cognition"]
    columns = {"sex": "q_sex", **{d: f"w{i}" for i, d in enumerate(domains)}}
    card = _card(columns=columns, derive={"disability": {"method": "wg_ss", "domains": domains}})
    codes = {"w0": ["1", "3", "1"], "w1": ["1", "1", None], "w2": ["2", "1", "1"], "w3": ["1", "1", "1"]}
    out = harmonise(card, _raw(_frame(3, **codes)), salt=SALT)
    assert out.frame["disability"].tolist() == ["no", "yes", pd.NA]  # the cut-off on the 4 domains asked
    assert out.frame["disability_source"].tolist() == ["wg_ss"] * 3
    assert out.metadata["disability"] == {"method": "wg_ss", "domains": domains, "label": "WG-SS, 4 of 6 domains"}
    assert out.frame["wg_selfcare"].isna().all()
    # through the ingest: the Parquet metadata says it, for pages that print "4 WG domains"
    project.write_raw("mini.csv", "rid,q_sex,wt,w0,w1,w2,w3\nr1,1,1.0,1,1,2,1\nr2,2,1.0,3,1,1,1\n")
    project.write_card(base_card(columns=columns, derive={"disability": {"method": "wg_ss", "domains": domains}},
                                 design={"type": "probability", "weight": "wt"}, personal_columns=[], free_text_columns=[],
                                 indicators={}))
    assert project.run("mini") == 0
    frame = load_processed("mini", project.processed)
    assert frame.attrs["source"]["disability"]["label"] == "WG-SS, 4 of 6 domains"
    assert frame["disability"].tolist() == ["no", "yes"]
    schema.validate_harmonised(frame)  # the subset is inferred from the answered domains


def test_file_labels_that_contradict_the_recodes_are_warnings_naming_both():
    card = _card(recodes={"sex": {"1": "male", "2": "female"}})
    raw = _raw(_frame(2, q_sex=[1.0, 2.0]), labels={"q_sex": {"1": "Female", "2": "Male"}})
    out = harmonise(card, raw, salt=SALT)
    assert out.frame["sex"].tolist() == ["male", "female"]  # the card wins, but says so
    assert out.accounting.warnings == [
        "column 'sex': code 1 is labelled 'Female' in the file but the card recodes it to 'male'; check recodes",
        "column 'sex': code 2 is labelled 'Male' in the file but the card recodes it to 'female'; check recodes",
    ]
    agreeing = harmonise(_card(recodes={"sex": {"1": "female", "2": "male"}}), raw, salt=SALT)
    assert agreeing.accounting.warnings == []


def test_user_missing_values_of_the_file_are_counted_with_the_missing_codes():
    raw = _raw(_frame(3, q_age=[30.0, None, 40.0]))
    raw.user_missing = {"q_age": {"99": 1}, "unused": {"9": 4}}
    out = harmonise(_card(), raw, salt=SALT)
    assert out.accounting.missing_codes["age"] == {"99 (user-missing in the file)": 1}
    assert "unused" not in out.accounting.missing_codes


def test_unknown_codes_above_the_share_fail_unless_allowed():
    raw = _raw(_frame(4, q_sex=["1", "2", "3", "Amina Otieno"]))
    with pytest.raises(HarmoniseError) as info:
        harmonise(_card(), raw, salt=SALT)
    message = str(info.value)
    assert "column 'sex': 2 of 4 values (50%) are unknown codes ('3')" in message and "unknown_codes: allow" in message
    assert "Amina" not in message
    out = harmonise(_card(unknown_codes="allow"), raw, salt=SALT)
    assert sum(out.accounting.unknown_codes["sex"].values()) == 2
    assert harmonise(_card(max_unknown_share=0.6), raw, salt=SALT).accounting.rows_kept == 4
