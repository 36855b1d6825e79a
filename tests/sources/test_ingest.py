"""Tests for analysis.sources.ingest: the CLI, incremental runs, isolation of failures, Parquet metadata."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from analysis.sources import METADATA_KEY, ProcessedNotFound, load_processed

from .conftest import BASE_CSV, SALT, base_card


def _two_sources(project):
    project.write_card(base_card())
    project.write_raw("mini.csv", BASE_CSV)
    broken = base_card(id="broken", files=[{"path": "broken.csv"}])
    project.write_card(broken)
    project.write_raw("broken.csv", "")


def test_one_bad_source_does_not_stop_the_others(project, capsys):
    _two_sources(project)
    assert project.run() == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("broken: failed (") and "file is empty" in lines[0]
    assert lines[1].startswith("mini: ingested (5 of 5 rows kept)")
    assert (project.processed / "mini.parquet").exists() and not (project.processed / "broken.parquet").exists()


def test_unchanged_inputs_are_skipped_until_they_change_or_force(project, capsys):
    project.write_card(base_card())
    project.write_raw("mini.csv", BASE_CSV)
    assert project.run("mini") == 0
    first = json.loads((project.processed / "mini.log.json").read_text())
    capsys.readouterr()
    assert project.run("mini") == 0
    assert capsys.readouterr().out.strip() == "mini: unchanged"
    assert project.run("mini", force=True) == 0
    assert "mini: ingested" in capsys.readouterr().out
    project.write_raw("mini.csv", BASE_CSV + "r6,Fatuma Ali,2,50,Coast,1.0,s1,c2,no,\n")
    assert project.run("mini") == 0
    assert "6 of 6 rows kept" in capsys.readouterr().out
    second = json.loads((project.processed / "mini.log.json").read_text())
    assert first["fingerprint"]["sha256"] != second["fingerprint"]["sha256"]
    assert set(second["fingerprint"]["inputs"]) >= {"raw:mini.csv", "card:mini.yml", "code"}


def test_unknown_source_is_reported(project, capsys):
    project.write_card(base_card())
    assert project.run("nope") == 1
    assert "nope: failed (no source card" in capsys.readouterr().out


def test_parquet_carries_design_and_source_metadata(project):
    project.write_card(base_card())
    project.write_raw("mini.csv", BASE_CSV)
    project.run("mini")
    meta = json.loads(pq.read_schema(project.processed / "mini.parquet").metadata[METADATA_KEY])
    assert meta["design"]["weight"] == "weight" and meta["source"]["licence"].startswith("CC0")
    frame = load_processed("mini", project.processed)
    assert frame.attrs["design"] == meta["design"]


def test_command_line_prints_no_traceback(project):
    _two_sources(project)
    code = (
        "import argparse, sys; from analysis.sources import ingest; p = argparse.ArgumentParser(); "
        "ingest.add_arguments(p); sys.exit(ingest.main(p.parse_args(sys.argv[1:])))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "--raw-root", str(project.raw), "--processed", str(project.processed),
         "--sources-dir", str(project.cards)],
        check=False, capture_output=True, text=True, env={"ANALYSIS_ID_SALT": SALT, "PATH": ""}, timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert len(result.stdout.strip().splitlines()) == 2


def test_a_source_that_now_fails_loses_its_stale_table(project, capsys):
    project.write_card(base_card())
    project.write_raw("mini.csv", BASE_CSV)
    assert project.run("mini") == 0
    project.write_raw("mini.csv", BASE_CSV.replace("r2,", "r1,"))  # duplicate ids now
    assert project.run("mini") == 1
    assert not (project.processed / "mini.parquet").exists()
    log = json.loads((project.processed / "mini.log.json").read_text())
    assert log["status"] == "failed" and "duplicate respondent ids" in log["error"]
    project.write_raw("mini.csv", BASE_CSV)
    assert project.run("mini") == 0 and (project.processed / "mini.parquet").exists()


def test_joined_replicate_weights_reach_the_processed_design(project):
    project.write_raw("mini.csv", BASE_CSV)
    rows = ["rid,wt1,wt2,wt3"] + [f"r{i},{i}.0,{i}.5,{i + 1}.0" for i in range(5, 0, -1)]
    project.write_raw("rep.csv", "\n".join(rows) + "\n")
    card = base_card(files=[{"path": "mini.csv"}, {"path": "rep.csv", "join_on": "rid"}],
                     design={"type": "probability", "weight": "wt", "replicate": {"columns": "wt?*", "method": "sdr", "scale": 0.05}})
    project.write_card(card)
    assert project.run("mini") == 0
    frame = load_processed("mini", project.processed)
    assert frame.attrs["design"]["replicate_columns"] == ["repwt_1", "repwt_2", "repwt_3"]
    assert frame["repwt_2"].tolist() == [1.5, 2.5, 3.5, 4.5, 5.5]  # matched on rid, not on row order
    assert frame.attrs["design"]["replicate_method"] == "sdr"


def test_load_processed_of_a_source_never_ingested_says_what_to_run(tmp_path):
    with pytest.raises(ProcessedNotFound, match="run `python -m analysis ingest nope`"):
        load_processed("nope", tmp_path)


def test_ingest_fingerprint_covers_every_module_harmonisation_imports():
    # Before: the ingest code files were sources/*.py and schema.py only, so an edit of
    # tables.py (which harmonisation uses) left every processed table "unchanged".
    from analysis.sources import ingest

    names = {str(p).replace("\\\\", "/").split("src/analysis/")[-1] for p in ingest.code_files()}
    assert {"tables.py", "schema.py", "sources/harmonise.py", "sources/readers.py", "config.py"} <= names


def test_whoever_has_the_data_folders_cannot_reverse_the_id_hashes(project, monkeypatch, tmp_path, capsys):
    """The salt is created outside the data folders on first use; enumerating the id pattern with
    anything found in the raw and processed folders as the salt recovers no id."""
    from analysis.sources import privacy

    monkeypatch.delenv(privacy.SALT_ENV)
    monkeypatch.setenv(privacy.SALT_FILE_ENV, str(tmp_path / "home" / ".config" / "analysis" / "id_salt"))
    project.write_card(base_card())
    project.write_raw("mini.csv", BASE_CSV)
    assert project.run("mini") == 0
    err = capsys.readouterr().err
    assert "created a new id salt" in err and "docs/schema.md" in err
    salt_path = tmp_path / "home" / ".config" / "analysis" / "id_salt"
    assert salt_path.exists() and not str(salt_path).startswith(str(project.processed))
    hashes = set(load_processed("mini", project.processed)["respondent_id"])
    candidates = {""}
    for folder in (project.raw, project.processed):
        for path in folder.rglob("*"):
            if path.is_file():
                candidates.update(path.read_bytes().decode("latin-1").split())
    guesses = [f"r{i}" for i in range(400)]
    recovered = {
        g for salt in candidates if len(salt) >= 8 or not salt for g in guesses
        if hashlib.sha256(f"{salt}|mini|{g}".encode()).hexdigest()[:20] in hashes
    }
    assert recovered == set()
    real = privacy.project_salt()
    assert {privacy.hash_ids(pd.Series([g]), "mini", real).iloc[0] for g in ("r1", "r2")} <= hashes  # the owner can
