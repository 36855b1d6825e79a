"""Fault injection on the tiny project (issue 11, "pipeline faults"): a killed worker, a failing
cell, a timeout, an ingest during a run, a full disk, Ctrl-C then a re-run on changed data.

Each fault is planted deterministically (a control file the tiny notebook reads, an injected
``OSError(ENOSPC)``, a lock held by the test): no test depends on timing.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import threading
import time

import nbformat
import pandas as pd
import pytest
from tiny_project import make_source

from analysis import atomic
from analysis.pipeline import cli as pipeline_cli
from analysis.pipeline import lock as folder_lock
from analysis.pipeline import run_pipeline
from analysis.pipeline.execute import FAILED, STAGING, ExecOptions, execute_run

STAGE0 = {"tiny/women/KEN", "tiny/women/UGA", "tiny/persons_with_disabilities/KEN",
          "tiny/persons_with_disabilities/UGA", "tiny/persons_with_disabilities/SEN"}


def manifest(project) -> dict:
    return json.loads((project.outputs / "manifest.json").read_text())


def leftovers(project) -> list[str]:
    """Temporary and staging files anywhere under outputs/ (there must be none)."""
    out = [str(p.relative_to(project.outputs)) for p in project.outputs.rglob("*") if p.name.endswith(".tmp")]
    staging = project.outputs / STAGING
    if staging.exists():
        out += [str(p.relative_to(project.outputs)) for p in staging.iterdir()]
    return out


def cli_run(project, monkeypatch, *extra: str) -> int:
    monkeypatch.setenv("ANALYSIS_PROJECT_ROOT", str(project.root))
    parser = argparse.ArgumentParser()
    pipeline_cli.add_arguments(parser)
    args = parser.parse_args(["--config", str(project.report), "--no-progress", *extra])
    # what the CLI cannot take as an option in tests: the groups file and the code snapshot
    from analysis.pipeline import runner

    original = getattr(runner.run_pipeline, "original", runner.run_pipeline)

    def with_project(*a, **k):
        k.update(project_root=project.root, groups_file=project.groups_file, code_dir=project.code_dir)
        return original(*a, **k)

    with_project.original = original
    monkeypatch.setattr(runner, "run_pipeline", with_project)
    return pipeline_cli.main(args)


def test_a_killed_worker_fails_only_the_run_it_held_and_blocks_the_synthesis(tiny_project):
    tiny_project.plant("women", "KEN", "kill_worker")
    lines = []
    outcome = run_pipeline(tiny_project.report, workers=2, **tiny_project.kwargs(echo=lines.append))
    runs = manifest(tiny_project)["runs"]
    assert outcome.failed == ["tiny/women/KEN"]
    assert runs["tiny/women/KEN"]["failure"] == "worker"
    assert "killed by SIGKILL" in runs["tiny/women/KEN"]["error"]["message"]
    for run_id in STAGE0 - {"tiny/women/KEN"}:
        assert runs[run_id]["status"] == "ok", (run_id, runs[run_id].get("error"))
    # What the dead worker's run had written is kept for diagnosis, nothing is left in staging.
    assert (tiny_project.outputs / FAILED / "tiny" / "women" / "KEN" / "run.log").exists()
    assert leftovers(tiny_project) == []
    # The synthesis would read estimates without women in Kenya: it does not run.
    assert runs["tiny_synthesis"]["status"] == "blocked"
    assert runs["tiny_synthesis"]["blocked_by"] == ["tiny/women/KEN"]
    assert outcome.blocked == ["tiny_synthesis"] and outcome.exit_code == 1
    assert any(line.startswith("BLOCKED tiny_synthesis: blocked by tiny/women/KEN (failed)") for line in lines)


@pytest.mark.slow
def test_a_failed_chapter_blocks_what_comes_after_it_until_it_succeeds(tiny_project):
    first = run_pipeline(tiny_project.report, workers=1, **tiny_project.kwargs())
    assert first.exit_code == 0
    synthesis = tiny_project.outputs / "tiny_synthesis"
    assert synthesis.exists()

    tiny_project.plant("persons_with_disabilities", "SEN", "raise")
    make_source(tiny_project.processed / "src_b.parquet", ["SEN"], False, seed=7)  # SEN re-runs and fails
    outcome = run_pipeline(tiny_project.report, workers=1, **tiny_project.kwargs())
    runs = manifest(tiny_project)["runs"]
    assert outcome.failed == ["tiny/persons_with_disabilities/SEN"] and outcome.blocked == ["tiny_synthesis"]
    entry = runs["tiny_synthesis"]
    assert entry["status"] == "blocked" and entry["action"] == "blocked"
    assert entry["reason"] == "blocked by tiny/persons_with_disabilities/SEN (failed)"
    # Its earlier outputs were built from other estimates: they do not pass for current ones.
    assert not synthesis.exists()
    index = (tiny_project.outputs / "runs.html").read_text()  # the run status page
    assert "blocked by tiny/persons_with_disabilities/SEN (failed)" in index

    tiny_project.clear()
    again = run_pipeline(tiny_project.report, workers=1, **tiny_project.kwargs())
    assert again.exit_code == 0
    assert manifest(tiny_project)["runs"]["tiny_synthesis"]["reason"] == "blocked last time"


def test_run_log_holds_the_traceback_of_the_failing_cell(tiny_project, resolve):
    tiny_project.plant("women", "KEN", "raise")
    run = resolve(tiny_project)["tiny/women/KEN"]
    record = execute_run(run, ExecOptions(outputs_dir=str(tiny_project.outputs),
                                          render={"outputs_dir": str(tiny_project.outputs)}))
    assert record["failure"] == "exception"
    log = (tiny_project.outputs / FAILED / "tiny" / "women" / "KEN" / "run.log").read_text()
    assert "error in cell 4: RuntimeError: planted failure for women in KEN" in log
    assert "Traceback" in log or "----> " in log
    assert 'raise RuntimeError(f"planted failure for {group} in {country}")' in log


@pytest.mark.slow
def test_run_log_holds_the_traceback_with_the_papermill_engine_too(tiny_project, resolve):
    jupyter = pytest.importorskip("jupyter_client.kernelspec")
    if "analysis" not in jupyter.KernelSpecManager().find_kernel_specs():
        pytest.skip("the 'analysis' Jupyter kernel is not registered (make setup registers it)")
    tiny_project.plant("women", "KEN", "raise")
    run = resolve(tiny_project)["tiny/women/KEN"]
    record = execute_run(run, ExecOptions(outputs_dir=str(tiny_project.outputs), engine="papermill",
                                          render={"outputs_dir": str(tiny_project.outputs)}))
    assert record["failure"] == "exception"
    log = (tiny_project.outputs / FAILED / "tiny" / "women" / "KEN" / "run.log").read_text()
    assert "RuntimeError: planted failure for women in KEN" in log
    assert 'raise RuntimeError(f"planted failure for {group} in {country}")' in log


def test_a_timed_out_run_keeps_its_partial_notebook_under_failed(tiny_project, resolve):
    tiny_project.plant("women", "KEN", "sleep")
    run = resolve(tiny_project, timeout=3)["tiny/women/KEN"]
    record = execute_run(run, ExecOptions(outputs_dir=str(tiny_project.outputs),
                                          render={"outputs_dir": str(tiny_project.outputs)}))
    assert record["failure"] == "timeout" and "timed out after 3 s" in record["error"]["message"]
    failed = tiny_project.outputs / FAILED / "tiny" / "women" / "KEN"
    assert record["outputs"]["notebook"] == ["_failed/tiny/women/KEN/tiny.ipynb"]
    nb = nbformat.read(failed / "tiny.ipynb", as_version=4)
    assert nb.cells[3].execution_count is not None  # the cells before it ran and are kept
    errors = [o for o in nb.cells[4].outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "RunTimedOut" and "timed out after 3 s" in errors[0].evalue
    assert "This run failed" in (failed / "tiny.html").read_text()
    assert leftovers(tiny_project) == []


def test_ingest_and_run_take_one_lock_on_the_processed_folder(tiny_project, capsys):
    from analysis.sources import ingest

    # An ingest is writing: a run does not start (and hashes nothing).
    busy = r"in use by `python -m analysis ingest` \(pid \d+\)"
    with (folder_lock.hold(tiny_project.processed, exclusive=True, holder="python -m analysis ingest"),
          pytest.raises(folder_lock.FolderBusy, match=busy)):
        run_pipeline(tiny_project.report, workers=1, **tiny_project.kwargs())
    assert not (tiny_project.outputs / "manifest.json").exists()

    # A run is reading: an ingest into the same folder refuses, in one line.
    tiny_project.plant("women", "KEN", "wait")  # holds the run open until the test releases it
    holding = threading.Event()
    done = {}

    def run():
        done["outcome"] = run_pipeline(tiny_project.report, workers=1, **tiny_project.kwargs())

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 300  # a run starts slowly on a loaded machine
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                folder_lock.release(folder_lock.acquire(tiny_project.processed, exclusive=True, holder="probe"))
            except folder_lock.FolderBusy:
                holding.set()
                break
            thread.join(0.1)
        assert holding.is_set(), f"the run never held the processed folder (run ended: {done.get('outcome')})"
        args = argparse.Namespace(sources=["src_a"], raw_root=None, processed=tiny_project.processed,
                                  sources_dir=None, force=False)
        assert ingest.main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {tiny_project.processed}: in use by a `python -m analysis run`")
        assert "\n" not in err
    finally:
        (tiny_project.control / "release").write_text("")
        thread.join()
    assert done["outcome"].exit_code == 0
    # What the runs recorded is what they read.
    runs = manifest(tiny_project)["runs"]
    digest = hashlib.sha256((tiny_project.processed / "src_a.parquet").read_bytes()).hexdigest()
    assert runs["tiny/women/UGA"]["inputs"] == {"processed/src_a.parquet": digest}


def _enospc_on(monkeypatch, name_part: str, code: int = errno.ENOSPC) -> list[str]:
    """Make every atomic write of a file whose name contains ``name_part`` fail half-way with ENOSPC
    (or another errno: the tests run as root, for whom permissions cannot be taken away)."""
    hits = []
    real = atomic._write_file

    def full(path, data):
        if name_part in path.name:
            hits.append(path.name)
            with open(path, "xb") as handle:
                handle.write(data[: len(data) // 2])  # the disk fills up half-way through
            raise OSError(code, os.strerror(code), str(path))
        real(path, data)

    monkeypatch.setattr(atomic, "_write_file", full)
    return hits


@pytest.mark.slow
def test_a_full_disk_under_the_pipeline_is_one_line_with_the_path_and_leaves_no_tmp(tiny_project, monkeypatch, capsys):
    hits = _enospc_on(monkeypatch, "manifest.json")
    code = cli_run(tiny_project, monkeypatch, "--workers", "1")
    err = capsys.readouterr().err.strip()
    assert code == 2 and hits
    assert err == (f"error: cannot write {tiny_project.outputs / 'manifest.json'}: No space left on device; "
                   "free some space or choose another folder; runs that finished are kept in the manifest")
    assert leftovers(tiny_project) == []
    # The first failed save stopped the invocation: not every run was attempted.
    assert not (tiny_project.outputs / "tiny_synthesis").exists()
    assert (tiny_project.outputs / "index.html").exists()

    monkeypatch.setattr(atomic, "_write_file", _real_write_file)  # space freed
    assert cli_run(tiny_project, monkeypatch, "--workers", "1") == 0
    assert manifest(tiny_project)["summary"]["ok"] == 6


def test_a_permission_error_on_the_index_is_one_line_with_the_path(tiny_project, monkeypatch, capsys):
    _enospc_on(monkeypatch, "index.html", errno.EACCES)
    code = cli_run(tiny_project, monkeypatch, "--workers", "1", "--run", "tiny/women/KEN")
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (f"error: cannot write {tiny_project.outputs / 'index.html'}: Permission denied; this user "
                   "may not write there: fix the folder's permissions or choose another folder; "
                   "runs that finished are kept in the manifest")
    assert manifest(tiny_project)["runs"]["tiny/women/KEN"]["status"] == "ok"
    assert leftovers(tiny_project) == []


def _real_write_file(path, data):
    with open(path, "xb") as handle:
        handle.write(data)


def test_a_full_disk_inside_a_run_stops_the_invocation_in_one_line(tiny_project, monkeypatch, capsys):
    tiny_project.plant("women", "KEN", "enospc")
    code = cli_run(tiny_project, monkeypatch, "--workers", "1", "--run", "tiny/women/KEN", "--run", "tiny/women/UGA")
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    path = tiny_project.outputs / "tiny" / "women" / "KEN" / "tables" / "estimates.csv"
    assert err.startswith(f"error: cannot write {path}: No space left on device")
    runs = manifest(tiny_project)["runs"]
    assert runs["tiny/women/KEN"]["error"]["errno"] == "ENOSPC"
    assert leftovers(tiny_project) == []


def test_a_full_disk_while_a_run_writes_its_notebook_leaves_no_tmp(tiny_project, monkeypatch, capsys):
    _enospc_on(monkeypatch, "tiny.ipynb")  # inherited by the forked run process
    code = cli_run(tiny_project, monkeypatch, "--workers", "1", "--run", "tiny/women/KEN")
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith(f"error: cannot write {tiny_project.outputs / STAGING}") or "tiny.ipynb: No space" in err
    assert "No space left on device" in err
    assert leftovers(tiny_project) == []


@pytest.mark.slow
def test_interrupted_then_rerun_on_changed_data_marks_stale_runs_and_keeps_them_out_of_all_estimates(tiny_project):
    assert run_pipeline(tiny_project.report, workers=1, **tiny_project.kwargs()).exit_code == 0
    make_source(tiny_project.processed / "src_a.parquet", ["KEN", "UGA"], True, seed=42)  # new data
    tiny_project.plant("women", "UGA", "interrupt")  # Ctrl-C while that run is running
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny_project.report, workers=1, **tiny_project.kwargs())
    assert leftovers(tiny_project) == []

    runs = manifest(tiny_project)["runs"]
    digest = hashlib.sha256((tiny_project.processed / "src_a.parquet").read_bytes()).hexdigest()
    reads_a = {r for r in STAGE0 if not r.endswith("SEN")}
    current = {r for r in reads_a if runs[r]["status"] == "ok" and runs[r]["inputs"]["processed/src_a.parquet"] == digest}
    stale = {r for r, e in runs.items() if e.get("stale")}
    assert "tiny/women/UGA" in stale and stale.isdisjoint(current)
    assert reads_a - current <= stale  # every run built from the old data is marked
    assert "tiny_synthesis" in stale  # it read estimates from the old data
    assert all("processed/src_a.parquet" in runs[r]["stale"] for r in stale - {"tiny_synthesis"})
    index = (tiny_project.outputs / "runs.html").read_text()  # the run status page
    assert index.count("stale: built from older inputs") == len(stale)

    estimates = pd.read_csv(tiny_project.outputs / "tables" / "all_estimates.csv")
    built = {f"tiny/{g}/{c}" for g, c in zip(estimates["group"], estimates["country"])}
    assert built == current | {"tiny/persons_with_disabilities/SEN"}

    tiny_project.clear()
    assert run_pipeline(tiny_project.report, workers=1, **tiny_project.kwargs()).exit_code == 0
    runs = manifest(tiny_project)["runs"]
    assert not any(e.get("stale") for e in runs.values())
    estimates = pd.read_csv(tiny_project.outputs / "tables" / "all_estimates.csv")
    assert {f"tiny/{g}/{c}" for g, c in zip(estimates["group"], estimates["country"])} == STAGE0
