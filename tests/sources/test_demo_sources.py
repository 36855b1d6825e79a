"""The committed demo collaborative ingests cleanly: schema, accounting, planted facts, no canary survives."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from analysis import config, schema
from analysis.sources import ingest, load_processed
from analysis.sources.card import card_paths, load_card
from analysis.sources.privacy import PrivacyError, scan_free_text
from analysis.sources.readers import read_source

DEMO_CARDS = sorted(s for s in card_paths(config.SOURCES_DIR) if s.startswith("demo_"))
TRUTH_FILE = config.DEMO_DIR / "TRUTH.json"

# The demo collaborative is committed (data/raw/demo, params/sources/demo_*.yml): a missing one
# is a broken checkout, so these tests fail rather than skip.
pytestmark = pytest.mark.slow  # ingests the whole demo collaborative once (about 5-10 s)


def test_the_demo_collaborative_is_committed():
    assert DEMO_CARDS and TRUTH_FILE.exists()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    processed = tmp_path_factory.mktemp("processed")
    args = argparse.Namespace(sources=DEMO_CARDS, raw_root=config.RAW_DIR, processed=processed,
                              sources_dir=config.SOURCES_DIR, force=True)
    assert ingest.main(args) == 0
    return processed


@pytest.fixture(scope="module")
def truth():
    return json.loads(TRUTH_FILE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("source", DEMO_CARDS)
def test_each_demo_source_balances_and_follows_its_schema(demo, source):
    log = json.loads((demo / f"{source}.log.json").read_text())
    assert log["rows_read"] == log["rows_kept"] + sum(log["rows_excluded"].values())
    frame = load_processed(source, demo)
    # respondents withdrawn by a STOP in coded free text leave at load time (attrs["withdrawn"])
    assert len(frame) + frame.attrs.get("withdrawn", 0) == log["rows_kept"]
    card = load_card(config.SOURCES_DIR / f"{source}.yml")
    assert frame.attrs["source"]["synthetic"] is True
    if card.kind == "microdata":
        schema.validate_harmonised(frame, schema.load_indicators(), where=source, age_bands=schema.load_age_bands())
        assert frame.attrs["design"]["sample_type"] == card.design.type
    elif card.kind == "aggregates":
        assert {"estimate", "n_unweighted", "flag"} <= set(frame.columns)
    elif card.kind == "study":  # published aggregates of partner studies (sources/studies.py)
        assert {"study_id", "estimate", "n", "risk_of_bias"} <= set(frame.columns)
    elif card.kind == "coding":  # coded free text: one row per response x coder x code
        assert {"response_id", "coder", "code", "theme"} <= set(frame.columns)
    else:
        assert (frame["population"] >= 0).all()


def test_sample_sizes_match_the_generating_truth(demo, truth):
    for source, facts in truth["surveys"].items():
        if source not in DEMO_CARDS or "n_by_country" not in facts:
            continue
        frame = load_processed(source, demo)
        # respondents who replied STOP to the coded open question are withdrawn from everything
        gone = truth.get("voices", {}).get("withdrawn_by_country", {}) if source == truth.get("voices", {}).get("survey") else {}
        expected = {c: n - gone.get(c, 0) for c, n in facts["n_by_country"].items()}
        assert frame["country"].value_counts().to_dict() == expected, source


def test_no_canary_survives_into_processed_data(demo, truth):
    marker = truth["canaries"]["marker"]
    phones = truth["canaries"].get("free_text", [])
    for source in DEMO_CARDS:
        text = (demo / f"{source}.log.json").read_text()
        frame = load_processed(source, demo)
        cells = [str(v) for v in frame.select_dtypes(exclude="number").to_numpy().ravel()]
        blob = text + "\n" + "\n".join(cells) + "\n" + " ".join(map(str, frame.columns))
        assert marker not in blob, source
        assert not any(p in blob for p in phones), source
        for column in truth["canaries"]["personal_columns"].get(source, {}).get("columns", []):
            assert column not in frame.columns


def test_the_free_text_scan_catches_the_planted_phone_numbers(truth):
    phones = set(truth["canaries"].get("free_text", []))
    assert phones, "the demo plants free-text canaries (TRUTH.json canaries.free_text)"
    planted = re.compile("|".join(re.escape(p) for p in phones))
    caught = 0
    for source in DEMO_CARDS:
        card = load_card(config.SOURCES_DIR / f"{source}.yml")
        if card.kind in ("study", "coding"):
            continue  # published aggregates / coded free text (scrubbed by its own reader, tests/test_voices.py)
        raw = read_source(card, config.RAW_DIR).frame
        # the demo keeps its free-text canaries in columns the card marks personal (dropped)
        for column in card.personal_columns:
            if raw[column].dropna().astype(str).str.contains(planted).any():
                with pytest.raises(PrivacyError, match=re.escape(f"column '{column}' contains a phone number")):
                    scan_free_text(raw, [column])
                caught += 1
    assert caught > 0
