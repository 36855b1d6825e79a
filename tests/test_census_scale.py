"""The census-like sample at scale: generator, partitioned ingest, the group profile on it.

- ``python -m analysis demo --census`` writes partitioned Parquet chunk by chunk with ACS-like
  structure (states, PUMAs, 80 SDR replicate weights with the Census Bureau's factors) and
  planted truth that the estimates recover;
- a card over a directory (Parquet) or a folder of CSV files is ingested partition by partition
  with the same row accounting and privacy rules as an in-memory ingest;
- the group-profile chapter on the partitioned dataset (partition sums on DuckDB or Dask) gives
  the numbers of the in-memory estimator on the same data loaded whole.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from analysis import chapters, config, demo_census, gaps
from analysis.sources import ingest, load_processed, partitioned
from analysis.sources.harmonise import HarmoniseError
from analysis.survey import design_for, estimate_by

ROWS = 3000
STATES = ["06", "36", "48", "11"]  # California, New York, Texas, and DC (few PUMAs)
CARD = config.SOURCES_DIR / "census_demo.yml"


@pytest.fixture(autouse=True)
def _fixed_salt(monkeypatch):
    monkeypatch.setenv("ANALYSIS_ID_SALT", "5f0c2a9e7b3d4186a1e9c0d2b7f4a3e6c8d1b2a0f9e8d7c6b5a4f3e2d1c0b9a8")


@pytest.fixture(scope="module")
def census(tmp_path_factory):
    """A small census sample (3,000 persons, several chunks per large state) and its ingest."""
    root = tmp_path_factory.mktemp("census")
    raw = root / "raw"
    truth = demo_census.generate(raw / "census-demo", rows=ROWS, seed=7, chunk_rows=700,
                                 states=STATES)
    processed = root / "processed"
    import os

    os.environ["ANALYSIS_ID_SALT"] = "5f0c2a9e7b3d4186a1e9c0d2b7f4a3e6c8d1b2a0f9e8d7c6b5a4f3e2d1c0b9a8"
    status, log = ingest.ingest_source(CARD, raw, processed, indicators=None)
    return {"raw": raw, "processed": processed, "truth": truth, "log": log, "status": status}


def test_generator_writes_acs_like_partitions(census):
    truth = census["truth"]
    files = sorted((census["raw"] / "census-demo").glob("st*/part-*.parquet"))
    assert truth["rows"] >= ROWS - 10 and len(files) == truth["files"] > len(STATES)  # chunked
    frame = pd.read_parquet(files[0])
    reps = frame[[f"PWGTP{r}" for r in range(1, 81)]].to_numpy(float)
    factors = np.unique(np.round(reps / frame["PWGTP"].to_numpy(float)[:, None], 1))
    assert set(factors) <= {0.3, 1.0, 1.7}  # 1 - 2^-1/2, 1, 1 + 2^-1/2 (rounded weights)
    assert {"SEEING", "HEARING", "MOBILITY", "REMEMBERING", "SELFCARE", "UNDERSTAND"} <= set(frame)
    assert b"SYNTHETIC" in pq.read_schema(files[0]).metadata[b"synthetic"]


def test_partitioned_ingest_accounts_for_every_row(census):
    log = census["log"]
    assert census["status"] == "ingested" and log["partitioned"] is True
    assert log["rows_read"] == census["truth"]["rows"] == log["rows_kept"] + sum(
        log["rows_excluded"].values())
    dataset = partitioned.load_partitioned("census_demo", census["processed"])
    assert dataset.rows == log["rows_kept"] and set(dataset.countries) == {"USA"}
    assert dataset.design["replicate_method"] == "sdr" and len(dataset.design["replicate_columns"]) == 80
    assert dataset.indicator_counts["eviction_risk"] < dataset.rows  # asked of renters only
    # unchanged inputs are not ingested again
    assert ingest.ingest_source(CARD, census["raw"], census["processed"])[0] == "unchanged"


def test_partitioned_ingest_records_how_disability_was_derived(census):
    """Defect: a partitioned ingest dropped what harmonising says about derived columns (the
    Washington Group method and domains the pages print), which an in-memory ingest keeps."""
    dataset = partitioned.load_partitioned("census_demo", census["processed"])
    disability = dataset.source.get("disability")
    assert disability and disability["method"] == "wg_ss"
    assert len(disability["domains"]) == 6 and disability["label"] == "WG-SS, all 6 domains"
    assert census["log"]["disability"] == disability


def test_census_estimates_recover_the_planted_truth(census):
    dataset = partitioned.load_partitioned("census_demo", census["processed"])
    from analysis.survey_sums import DesignColumns, estimate_by_sums

    out = estimate_by_sums(dataset.files, DesignColumns.from_spec(dataset.design),
                           "food_insecurity", by="disability", engine="duckdb")
    planted = census["truth"]["weighted_mean_of_planted_probability"]["CURFOODSUF"]
    for cell in ("all", "yes", "no"):
        row = out.set_index("cell").loc[cell]
        assert abs(row["estimate"] - planted[cell]) < 4 * row["se"] + 1e-3


@pytest.mark.parametrize("engine", ["duckdb", "dask"])
def test_group_profile_on_partitions_equals_in_memory(census, engine, tmp_path):
    run = chapters.start_run("group_profile", group="persons_with_disabilities", country="USA",
                             sources=["census_demo"], processed_dir=census["processed"],
                             output_dir=tmp_path, engine=engine,
                             scheduler="local" if engine == "dask" else None)
    assert run.frames["census_demo"].empty  # the data are never loaded whole
    estimates = chapters.group_estimates(run)
    gap_table = chapters.group_gaps(run, estimates)
    # the same numbers in memory: the dataset loaded whole, the in-memory estimator
    frame = load_processed("census_demo", census["processed"])
    group = run.group
    work = frame.assign(comparison=group.assign(frame))
    work.attrs.update(frame.attrs)
    indicators = run.indicators_in("census_demo")
    expected = estimate_by(work, design_for(work), indicators, by=["comparison"], margins=False)
    expected = expected[expected["cell"].isin(["group", "reference"])]
    ours = estimates.set_index(["indicator", "cell"])
    for _, row in expected.iterrows():
        got = ours.loc[(row["indicator"], row["cell"])]
        if got["flag"] == "suppressed":
            continue
        np.testing.assert_allclose([got["estimate"], got["se"]], [row["estimate"], row["se"]],
                                   rtol=1e-10)
    expected_gaps = gaps.group_gaps(frame, design_for(frame), group, indicators,
                                    source="census_demo", country="USA")
    merged = gap_table.merge(expected_gaps, on=["indicator", "method"], suffixes=("", "_mem"))
    shown = merged["flag"] != "suppressed"
    assert shown.any()
    np.testing.assert_allclose(merged.loc[shown, "estimate"], merged.loc[shown, "estimate_mem"],
                               rtol=1e-10)
    np.testing.assert_allclose(merged.loc[shown, "se"], merged.loc[shown, "se_mem"], rtol=1e-9)
    assert (merged["n_outside"] == merged["n_outside_mem"]).all()


def test_run_matrix_sees_the_partitioned_source(census):
    from analysis.pipeline.matrix import scan_sources

    coverage = scan_sources(census["processed"], ["census_demo"], {"disability", "sex"})
    entry = coverage["census_demo"]
    assert entry.countries == {"USA"} and entry.categories["USA"]["disability"] == {"yes", "no"}
    assert all(p.endswith(".json") for p in entry.files)  # hashed for the run key, not the data


def test_csv_partitions_and_duplicate_ids_across_partitions(census, tmp_path):
    """A folder of CSV files is ingested batch by batch; an id repeated in two files is an error
    naming the id column (never the id)."""
    raw = tmp_path / "raw"
    (raw / "csv").mkdir(parents=True)
    files = sorted((census["raw"] / "census-demo").glob("st*/part-*.parquet"))[:2]
    for i, path in enumerate(files):
        pd.read_parquet(path).to_csv(raw / "csv" / f"part{i}.csv", index=False)
    card = CARD.read_text().replace("path: census-demo", "path: csv").replace(
        "reader: parquet", "reader: csv")
    card_path = tmp_path / "census_demo.yml"
    card_path.write_text(card)
    status, log = ingest.ingest_source(card_path, raw, tmp_path / "processed")
    expected_rows = sum(len(pd.read_parquet(p)) for p in files)
    assert status == "ingested" and log["rows_kept"] == expected_rows
    shutil.copy(raw / "csv" / "part0.csv", raw / "csv" / "part9.csv")
    with pytest.raises(HarmoniseError, match=r"'SERIALNO'.*across partitions"):
        ingest.ingest_source(card_path, raw, tmp_path / "processed2")
    assert not (tmp_path / "processed2" / "census_demo.parquet").exists()


def test_bad_weights_are_excluded_and_counted_per_partition(census, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(census["raw"] / "census-demo" / "st06", raw / "census-demo" / "st06")
    first = min((raw / "census-demo" / "st06").glob("*.parquet"))
    frame = pd.read_parquet(first)
    frame.loc[:2, "PWGTP"] = 0
    frame.to_parquet(first, index=False)
    _status, log = ingest.ingest_source(CARD, raw, tmp_path / "processed")
    assert log["rows_excluded"] == {"weight not positive (PWGTP)": 3}
    assert log["rows_read"] == log["rows_kept"] + 3
    sidecar = json.loads((tmp_path / "processed" / "census_demo.parquet" / "_survey.json").read_text())
    assert sidecar["rows"] == log["rows_kept"]
