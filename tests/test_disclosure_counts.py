"""Counts that count people, reasons that state the rule, and the run's own thresholds (issue 10)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis import disclosure, survey
from analysis.disclosure import THRESHOLDS_ENV, DisclosureError, Thresholds

DESIGN = {"sample_type": "non_probability", "weight": "weight", "strata": None, "psu": None,
          "fpc": None, "replicate_columns": [], "replicate_method": None,
          "replicate_scale": None, "replicate_rscales": None, "fay_rho": None,
          "single_psu": "fail"}


def _frame(zero_weights: int = 28):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "sex": ["female"] * 30 + ["male"] * 100,
        "weight": np.r_[np.zeros(zero_weights), np.full(30 - zero_weights, 2.0), rng.uniform(1, 2, 100)],
        "food_insecurity": (rng.random(130) < 0.4).astype(float),
    })
    frame.loc[129, "food_insecurity"] = np.nan
    frame.attrs["design"] = DESIGN
    return frame


def test_zero_weight_rows_do_not_count_towards_n_unweighted():
    frame = _frame()
    table = survey.estimate_by(frame, survey.design_for(frame), ["food_insecurity"], by=["sex"],
                               margins=False)
    n = table.set_index("cell")["n_unweighted"]
    # 30 rows of women, 28 of them weighted 0: the weighted mean of 2 people
    assert n["female"] == 2
    assert n["male"] == 99  # positive weight and a non-missing value
    protected = disclosure.primary_suppression(table, Thresholds(25, 50)).set_index("cell")
    assert protected.loc["female", "flag"] == "suppressed"


def test_counts_unchanged_without_zero_weights():
    frame = _frame(zero_weights=0)
    table = survey.estimate_by(frame, survey.design_for(frame), ["food_insecurity"], by=["sex"],
                               margins=True)
    assert table.set_index("cell")["n_unweighted"].to_dict() == {"female": 30, "male": 99, "all": 129}


def test_a_reason_states_the_rule_and_never_the_count():
    table = pd.DataFrame({"indicator": "x", "breakdown": "sex", "cell": ["female", "male"],
                          "estimate": [0.3, 0.4], "n_unweighted": [19, 300], "flag": "ok"})
    out = disclosure.primary_suppression(table, Thresholds(25, 50))
    reason = out.loc[0, "suppression_reason"]
    assert reason.startswith("primary:") and "19" not in reason


def test_protect_reads_the_run_thresholds_from_the_environment(monkeypatch):
    table = pd.DataFrame({"indicator": "x", "breakdown": "sex", "cell": ["female", "male"],
                          "estimate": [0.3, 0.4], "n_unweighted": [40, 300], "flag": "ok"})
    monkeypatch.delenv(THRESHOLDS_ENV, raising=False)
    assert disclosure.protect(table)["flag"].tolist() == ["caution", "ok"]  # params/report.yml: 25
    monkeypatch.setenv(THRESHOLDS_ENV, json.dumps({"suppress_below": 45, "caution_below": 60}))
    assert disclosure.run_thresholds() == Thresholds(45, 60)
    assert disclosure.protect(table)["flag"].tolist() == ["suppressed", "ok"]
    monkeypatch.setenv(THRESHOLDS_ENV, "suppress_below=45")
    with pytest.raises(DisclosureError, match=THRESHOLDS_ENV):
        disclosure.run_thresholds()
    monkeypatch.setenv(THRESHOLDS_ENV, json.dumps({"suppress_below": 45, "below": 1}))
    with pytest.raises(DisclosureError, match="unknown keys"):
        disclosure.run_thresholds()


def test_the_pipeline_hands_the_run_config_thresholds_to_the_notebook(monkeypatch, tmp_path):
    """Notebooks and the gate apply the same rule: the thresholds of the run's --config."""
    from analysis.pipeline.execute import ExecOptions, _disclosure_environment

    for name in (THRESHOLDS_ENV, "ANALYSIS_DISCLOSURE_CACHE"):  # restored after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    options = ExecOptions(outputs_dir=str(tmp_path),
                          render={"disclosure": {"suppress_below": 45, "caution_below": 50}})
    _disclosure_environment(options)
    assert disclosure.run_thresholds() == Thresholds(45, 50)
    import os

    assert os.environ["ANALYSIS_DISCLOSURE_CACHE"].startswith(str(tmp_path))
