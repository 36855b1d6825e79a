"""Small source × country slices publish no profile numbers; free-coded labels are pooled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from probe import SOURCE, probe_frame, write_probe

from analysis import chapters
from analysis.text import text


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    frame = probe_frame()
    # a 12-respondent slice (Senegal) and a hand-spelled ethnicity held by one respondent
    small = frame[frame["country"] == "UGA"].head(12).copy()
    small["country"] = "SEN"
    small["respondent_id"] = [f"s{i}" for i in range(12)]
    small["weight"] = 1.0
    frame = pd.concat([frame, small], ignore_index=True)
    frame.loc[3, "ethnicity_or_minority"] = "handwritten-ethnicity"
    for column in ("country", "ethnicity_or_minority"):
        frame[column] = frame[column].astype("string")
    folder = tmp_path_factory.mktemp("slices")
    write_probe(folder, frame)
    return folder


def test_a_slice_below_the_threshold_gets_no_profile_numbers(processed, tmp_path):
    run = chapters.start_run("data_profile", country="SEN", source=SOURCE, processed_dir=processed,
                             output_dir=tmp_path)
    profile = chapters.profile_tables(run)
    coverage = profile["coverage"].iloc[0]
    assert coverage["Respondents"] == "withheld" and coverage["Weighted total"] == "withheld"
    assert "Fewer than 25 respondents" in coverage["Note"]
    assert set(profile["availability"]["Answered"]) == {"withheld"}
    assert profile["missingness"].empty  # so no missingness figure either
    composition = chapters.composition_all(run)
    assert set(composition["flag"]) == {"suppressed"}
    _, diagnostics = chapters.weighting_effect(
        chapters.start_run("official_statistics", country="SEN", sources=[SOURCE],
                           processed_dir=processed, output_dir=tmp_path / "five"))
    row = diagnostics.iloc[0]
    assert row["Kish deff after"] == "withheld" and row["Effective sample size after"] == "withheld"
    assert "Fewer than 25" in row["Notes"]


def test_an_ordinary_slice_keeps_its_profile(processed, tmp_path):
    run = chapters.start_run("data_profile", country="KEN", source=SOURCE, processed_dir=processed,
                             output_dir=tmp_path)
    coverage = chapters.profile_tables(run)["coverage"].iloc[0]
    assert coverage["Respondents"] == "400" and coverage["Note"] == ""


def test_free_coded_categories_are_pooled_before_any_estimate_and_accounted(processed, tmp_path):
    run = chapters.start_run("data_profile", country="KEN", source=SOURCE, processed_dir=processed,
                             output_dir=tmp_path)
    assert "handwritten-ethnicity" not in set(run.frames[SOURCE]["ethnicity_or_minority"].dropna())
    composition = chapters.composition_all(run)
    assert "handwritten-ethnicity" not in set(composition["cell"])
    assert "other" in set(composition.loc[composition["breakdown"] == "ethnicity_or_minority", "cell"])
    accounting = chapters.row_accounting(run)
    pooled = accounting[accounting["Step"] == text("data_profile.rows.pooled")]
    assert len(pooled) == 1 and "ethnicity_or_minority" in pooled.iloc[0]["Detail"]
    assert pooled.iloc[0]["Rows"] == text("data_profile.rows.fewer_than", limit=25)  # not even their count
    assert "handwritten" not in accounting.to_string()
    assert np.isnan(composition.loc[composition["cell"] == "other", "estimate"]).all()


def test_the_complement_of_a_withheld_share_is_withheld(processed, tmp_path):
    """Shares of one dimension sum to 1 and their counts to everyone: 12 persons with
    disabilities are withheld, and so is the only other category (formerly a special case)."""
    run = chapters.start_run("data_profile", country="KEN", source=SOURCE, processed_dir=processed,
                             output_dir=tmp_path)
    composition = chapters.composition_all(run).set_index(["breakdown", "cell"])
    assert composition.loc[("disability", "yes"), "flag"] == "suppressed"
    assert composition.loc[("disability", "no"), "flag"] == "suppressed"


@pytest.mark.parametrize("lang, pooled", [("en", "Other"), ("fr", "Autre"), ("ar", "أخرى")])
def test_the_pooled_category_and_the_slice_notes_are_catalogue_text(processed, tmp_path,
                                                                    monkeypatch, lang, pooled):
    """"other" is shown with its catalogue label, in the report's language; so are the notes
    of small slices (they were English strings in disclosure.py)."""
    from analysis.disclosure import POOLED_CATEGORY, slice_note

    monkeypatch.setenv("ANALYSIS_LANG", lang)
    run = chapters.start_run("data_profile", country="KEN", source=SOURCE, processed_dir=processed,
                             output_dir=tmp_path)
    assert chapters.category_labels(run)[POOLED_CATEGORY] == pooled
    assert slice_note("suppressed") == text("common.slice_suppressed", suppress_below=25)
    assert slice_note("caution") == text("common.slice_caution", caution_below=50)
    if lang != "en":
        assert slice_note("suppressed") != "Fewer than 25 respondents: no numbers of this slice are published (disclosure control)."
