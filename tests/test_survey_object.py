"""The Survey object (issue 12): each source of a run is one frame, one design built once, and its
metadata, loaded by ``analysis.sources.load_survey``; chapters stop rebuilding the design from
``frame.attrs`` for every estimate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import chapters, survey
from analysis.chapters.common import ChapterRun
from analysis.schema import load_dimensions, load_groups, load_indicators
from analysis.sources import METADATA_KEY, SourceNotInScope, load_survey


def _frame(n=240, seed=3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "respondent_id": [f"r{i}" for i in range(n)],
        "country": np.where(np.arange(n) < n // 2, "KEN", "UGA"),
        "disability": rng.choice(["yes", "no"], n, p=[0.4, 0.6]),
        "sex": rng.choice(["female", "male"], n),
        "food_insecurity": (rng.random(n) < 0.3).astype(float),
        "strata": np.repeat(["a", "b"], n // 2), "psu": np.arange(n) // 8,
        "weight": rng.uniform(1, 3, n),
    })
    frame.attrs["design"] = {"sample_type": "probability", "weight": "weight", "strata": "strata", "psu": "psu"}
    frame.attrs["source"] = {"id": "planted", "title": "Planted survey", "synthetic": True}
    return frame


def _write(frame: pd.DataFrame, folder, name="planted"):
    import json

    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {METADATA_KEY: json.dumps({"design": frame.attrs["design"], "source": frame.attrs["source"]}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), folder / f"{name}.parquet")


def test_load_survey_gives_frame_design_and_metadata_for_a_country(tmp_path):
    _write(_frame(), tmp_path)
    kenya = load_survey("planted", tmp_path, country="KEN")
    assert isinstance(kenya, survey.Survey) and kenya.respondent_level and kenya.partitioned is None
    assert set(kenya.frame["country"]) == {"KEN"} and len(kenya.frame) == 120
    assert kenya.metadata["title"] == "Planted survey"
    assert kenya.design is kenya.design  # built once
    assert kenya.design.n == 120
    with pytest.raises(SourceNotInScope, match="no rows for country 'SEN'; its countries are: KEN, UGA"):
        load_survey("planted", tmp_path, country="SEN")


def test_a_run_builds_each_source_design_once(tmp_path, monkeypatch):
    """Defect: the design was rebuilt with design_for in every chapter function (12 times in a
    group profile page: estimates, gaps, ...). Now once per source and run."""
    calls = []
    real = survey.design_for

    def counting(frame, spec=None):
        calls.append(len(frame))
        return real(frame, spec)

    monkeypatch.setattr(survey, "design_for", counting)
    frame = _frame(n=480)
    frame = frame[frame["country"] == "KEN"].reset_index(drop=True).pipe(lambda f: f.assign(strata="a"))
    frame.attrs.update(_frame().attrs)
    run = ChapterRun(chapter="group_profile", group_id="persons_with_disabilities", country="KEN",
                     sources=["planted"], output_dir=tmp_path, processed_dir=None, frames={"planted": frame},
                     indicators=load_indicators(), groups=load_groups(), dimensions=load_dimensions())
    estimates = chapters.group_estimates(run)
    chapters.group_gaps(run, estimates)
    chapters.intersection_estimates(run)
    assert len(calls) == 1
    assert run.design("planted") is run.survey("planted").design


def test_with_frame_keeps_the_design_only_for_the_same_rows():
    whole = survey.Survey.from_frame(_frame())
    design = whole.design
    recoded = whole.with_frame(whole.frame.assign(extra=1), same_rows=True)
    assert recoded.design is design and recoded.metadata is whole.metadata
    subset = whole.with_frame(whole.frame.iloc[:100].reset_index(drop=True))
    assert subset.design is not design and subset.design.n == 100
