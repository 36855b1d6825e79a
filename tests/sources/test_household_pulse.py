"""The real Household Pulse Survey week 50 ingests from ../shared and matches plain-pandas figures.

The expected values are computed here, independently of the ingest code, from the raw
public-use file with the Census codes documented in its dictionary (SOURCE.md beside it).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from analysis import config
from analysis.sources import ingest, load_processed

pytestmark = pytest.mark.shared

RAW_FILE = "household-pulse-week50/HPS_week50_data_parquet.parquet"
WG = ["SEEING", "HEARING", "MOBILITY", "REMEMBERING", "SELFCARE", "UNDERSTAND"]


@pytest.fixture(scope="module")
def pulse(shared_dir, tmp_path_factory):
    raw_root = shared_dir / "data"
    processed = tmp_path_factory.mktemp("processed")
    args = argparse.Namespace(sources=["household_pulse"], raw_root=raw_root, processed=processed,
                              sources_dir=config.SOURCES_DIR, force=True)
    assert ingest.main(args) == 0
    frame = load_processed("household_pulse", processed)
    log = json.loads((processed / "household_pulse.log.json").read_text())
    raw = pd.read_parquet(raw_root / RAW_FILE)
    return raw, frame, log


def _weighted_share(raw: pd.DataFrame, yes: pd.Series, answered: pd.Series) -> float:
    w = raw["PWEIGHT"]
    return float((w * yes)[answered].sum() / w[answered].sum())


def test_row_accounting(pulse):
    raw, frame, log = pulse
    assert log["rows_read"] == len(raw) == 42040
    assert log["rows_kept"] == len(frame) == 42040 and log["rows_excluded"] == {}
    assert log["missing_codes"]["wg_seeing"] == {
        "-99 (question seen but not answered)": int((raw["SEEING"] == -99).sum()),
        "-88 (missing or not asked (skip pattern))": int((raw["SEEING"] == -88).sum()),
    }
    assert log["unknown_codes"] == {}
    assert frame["respondent_id"].is_unique and not frame["respondent_id"].isin(raw["SCRAM"]).any()


def test_design_and_metadata(pulse):
    raw, frame, _ = pulse
    assert frame.attrs["design"]["sample_type"] == "probability"
    assert frame.attrs["design"]["replicate_columns"] == []  # the PUF carries no replicate weights
    assert frame.attrs["source"]["synthetic"] is False
    np.testing.assert_allclose(frame["weight"].sum(), raw["PWEIGHT"].sum())


def test_weighted_disability_prevalence_matches_plain_pandas(pulse):
    raw, frame, _ = pulse
    codes = raw[WG].where(raw[WG] > 0)
    severe = (codes >= 3).any(axis=1)
    known = severe | codes.notna().all(axis=1)
    expected = _weighted_share(raw, severe, known)
    got = frame.loc[frame["disability"].notna()]
    share = np.average(got["disability"] == "yes", weights=got["weight"])
    assert share == pytest.approx(expected, rel=1e-12)
    assert 0.10 < share < 0.20  # plausible adult WG-SS prevalence


@pytest.mark.parametrize(
    "indicator,column,yes,no",
    [
        ("had_covid", "HADCOVIDRV", [1], [2]),
        ("vaccinated", "RECVDVACC", [1], [2]),
        ("income_loss", "WRKLOSSRV", [1], [2]),
        ("food_insecurity", "CURFOODSUF", [3, 4], [1, 2]),
        ("difficulty_paying_expenses", "EXPNS_DIF", [3, 4], [1, 2]),
        ("eviction_risk", "RENTCUR", [2], [1]),
    ],
)
def test_weighted_indicator_shares_match_plain_pandas(pulse, indicator, column, yes, no):
    raw, frame, _ = pulse
    expected = _weighted_share(raw, raw[column].isin(yes), raw[column].isin(yes + no))
    got = frame.loc[frame[indicator].notna()]
    assert np.average(got[indicator], weights=got["weight"]) == pytest.approx(expected, rel=1e-12)


def test_long_covid_among_all_adults_and_phq4_distress(pulse):
    raw, frame, _ = pulse
    long_yes = raw["LONGCOVID"] == 1
    long_known = raw["LONGCOVID"].isin([1, 2]) | (raw["HADCOVIDRV"] == 2)
    got = frame.loc[frame["long_covid"].notna()]
    assert np.average(got["long_covid"], weights=got["weight"]) == pytest.approx(_weighted_share(raw, long_yes, long_known), rel=1e-12)
    items = raw[["ANXIOUS", "WORRY", "INTEREST", "DOWN"]]
    score = (items - 1).sum(axis=1)
    answered = (items > 0).all(axis=1)
    got = frame.loc[frame["mental_distress"].notna()]
    assert len(got) == int(answered.sum())
    assert np.average(got["mental_distress"], weights=got["weight"]) == pytest.approx(_weighted_share(raw, score >= 6, answered), rel=1e-12)


def test_job_loss_counts_workers_as_no(pulse):
    raw, frame, _ = pulse
    laid_off = raw["RSNNOWRKRV"].isin([8, 9, 10])
    known = raw["RSNNOWRKRV"].between(1, 12) | (raw["ANYWORK"] == 1)
    got = frame.loc[frame["job_loss"].notna()]
    assert len(got) == int(known.sum())
    assert np.average(got["job_loss"], weights=got["weight"]) == pytest.approx(_weighted_share(raw, laid_off, known), rel=1e-12)


def test_demographics_states_and_age(pulse):
    raw, frame, _ = pulse
    women = _weighted_share(raw, raw["EGENID_BIRTH"] == 2, raw["EGENID_BIRTH"] > 0)
    assert np.average(frame["sex"] == "female", weights=frame["weight"]) == pytest.approx(women, rel=1e-12)
    california = raw.loc[raw["EST_ST"] == 6, "PWEIGHT"].sum()
    assert frame.loc[frame["admin1"] == "California", "weight"].sum() == pytest.approx(california)
    assert set(frame.loc[frame["admin1"] == "California", "admin1_code"]) == {"US-CA"}
    assert frame["admin1"].nunique() == 51 and frame["admin1"].notna().all()
    older = _weighted_share(raw, (2022 - raw["TBIRTH_YEAR"]) >= 65, raw["TBIRTH_YEAR"] > 0)
    assert np.average(frame["age_group"] == "65+", weights=frame["weight"]) == pytest.approx(older, rel=1e-12)
    minority = _weighted_share(raw, (raw["RHISPANIC"] == 2) | (raw["RRACE"] != 1), raw["RRACE"] > 0)
    assert np.average(frame["ethnicity_or_minority"] == "minority", weights=frame["weight"]) == pytest.approx(minority, rel=1e-12)
