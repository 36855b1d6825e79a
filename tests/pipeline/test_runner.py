"""The pipeline end to end on the tiny project: schedulers agree, re-runs are incremental,
failures are isolated and recorded, the index and manifest say what happened."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_project import build_project, make_source

from analysis.__main__ import main as cli_main
from analysis.pipeline import run_pipeline

ALL_RUNS = {"tiny/women/KEN", "tiny/women/UGA", "tiny/persons_with_disabilities/KEN",
            "tiny/persons_with_disabilities/UGA", "tiny/persons_with_disabilities/SEN", "tiny_synthesis"}


def ran(project) -> set[str]:
    manifest = json.loads((project.outputs / "manifest.json").read_text())
    return {k for k, v in manifest["runs"].items() if v.get("action") == "ran"}


def published(project) -> dict[str, bytes]:
    """Every table and figure under outputs/, by path relative to it."""
    out = {}
    for path in sorted(project.outputs.rglob("*")):
        if path.is_file() and (path.parent.name in {"tables", "figures"}) and "_failed" not in path.parts:
            out[str(path.relative_to(project.outputs))] = path.read_bytes()
    return out


@pytest.mark.slow
def test_serial_and_process_pool_give_identical_outputs_and_a_second_run_skips_everything(tiny_project, tmp_path, code_snapshot):
    serial = run_pipeline(tiny_project.report, workers=1, **tiny_project.kwargs())
    assert serial.exit_code == 0 and ran(tiny_project) == ALL_RUNS

    pooled_project = build_project(tmp_path / "pooled", code_snapshot)
    pooled = run_pipeline(pooled_project.report, workers=2, **pooled_project.kwargs())
    assert pooled.exit_code == 0 and ran(pooled_project) == ALL_RUNS

    first = published(tiny_project)
    assert "tables/all_estimates.csv" in first and len(first) == 1 + 5 * 3 + 1
    assert first == published(pooled_project)

    again = run_pipeline(tiny_project.report, workers=2, **tiny_project.kwargs())
    assert (again.ran, again.skipped, again.failed) == (0, 6, [])
    assert ran(tiny_project) == set()
    assert published(tiny_project) == first  # byte for byte, all_estimates.csv rebuilt included

    manifest = json.loads((tiny_project.outputs / "manifest.json").read_text())
    entry = manifest["runs"]["tiny/women/KEN"]
    assert entry["status"] == "ok" and entry["action"] == "skipped"
    assert set(entry["inputs"]) == {"processed/src_a.parquet"}
    assert entry["parameters"]["output_dir"] == "outputs/tiny/women/KEN"
    assert entry["outputs"]["html"] == ["tiny/women/KEN/tiny.html"]
    assert {"commit", "dirty"} <= set(entry["code_version"]) and manifest["packages"]["pandas"]
    assert manifest["runs"]["tiny/women/SEN"]["status"] == "not_applicable"
    assert manifest["summary"]["skipped"] == 6 and manifest["summary"]["not_applicable"] == 1

    front = (tiny_project.outputs / "index.html").read_text()
    assert '<html lang="en"' in front and front.count("<h1") == 1 and "<main>" in front and "<footer>" in front
    assert '<a href="runs.html">' in front and "How the findings are chosen" in front
    assert front.count('class="theme"') == 6  # the five themes and community response
    index = (tiny_project.outputs / "runs.html").read_text()
    assert '<html lang="en"' in index and index.count("<h1") == 1 and "<main>" in index and "<footer>" in index
    assert '<a href="index.html">' in index
    assert '<th scope="col">Kenya (KEN)</th>' in index and '<th scope="row">Women</th>' in index
    assert '<a href="tiny/women/KEN/tiny.html">' in index and '<a href="tiny_synthesis/tiny_synthesis.html">' in index
    assert "completed earlier, unchanged (skipped)" in index
    assert "no processed source holds members of women (sex) in SEN" in index
    assert '<a href="manifest.json">' in index and '<a href="tables/all_estimates.csv">' in index


@pytest.mark.slow
def test_touching_one_input_reruns_exactly_the_runs_that_read_it(tiny_project):
    run_pipeline(tiny_project.report, **tiny_project.kwargs())
    make_source(tiny_project.processed / "src_b.parquet", ["SEN"], False, seed=99)

    lines = []
    run_pipeline(tiny_project.report, dry_run=True, **tiny_project.kwargs(echo=lines.append))
    assert any(line.startswith("would run") and "tiny/persons_with_disabilities/SEN: changed input: processed/src_b.parquet"
               in line for line in lines)
    assert sum(line.startswith("skip") for line in lines) == 4

    outcome = run_pipeline(tiny_project.report, **tiny_project.kwargs())
    # The synthesis reads all_estimates.csv, which now holds the new SEN estimates.
    assert ran(tiny_project) == {"tiny/persons_with_disabilities/SEN", "tiny_synthesis"}
    assert outcome.skipped == 4


LABELS_CHAPTER = """\
  tiny_labels:
    notebook: notebooks/tiny_labels.ipynb
    title: Tiny labels
    parameters: {{groups_file: {groups}}}
"""


def _with_labels_chapter(project) -> None:
    """Add a chapter whose page shows every group's label (as the intersections chapter does)."""
    text = project.report.read_text()
    project.report.write_text(text.replace("chapters:\n", "chapters:\n" + LABELS_CHAPTER.format(
        groups=project.groups_file), 1))


@pytest.mark.slow
def test_relabelling_a_group_reruns_every_page_that_shows_its_label_and_no_other(tiny_project):
    # Before: run keys hashed only the run's own group, so a page listing every group's label
    # ("Persons with disabilities × Women") was reported unchanged after Women was relabelled.
    _with_labels_chapter(tiny_project)
    run_pipeline(tiny_project.report, **tiny_project.kwargs())
    text = tiny_project.groups_file.read_text()
    tiny_project.groups_file.write_text(text.replace("label: Women\n", "label: Women and girls\n", 1))
    assert "Women and girls" in tiny_project.groups_file.read_text()
    lines = []
    run_pipeline(tiny_project.report, dry_run=True, **tiny_project.kwargs(echo=lines.append))
    would = {line.split()[2].rstrip(":") for line in lines if line.startswith("would run")}
    assert would == {"tiny/women/KEN", "tiny/women/UGA", "tiny_labels/women/KEN", "tiny_labels/women/UGA",
                     "tiny_labels/persons_with_disabilities/KEN", "tiny_labels/persons_with_disabilities/UGA",
                     "tiny_labels/persons_with_disabilities/SEN"}
    assert any("catalogue entries it shows changed: groups (params/groups.yml)" in line for line in lines)
    run_pipeline(tiny_project.report, **tiny_project.kwargs())
    # The tiny chapter of persons with disabilities shows no other group: skipped. The synthesis
    # reads all_estimates.csv, which holds group ids, not labels: unchanged, skipped.
    assert ran(tiny_project) == would
    pages = (tiny_project.outputs / "tiny_labels" / "persons_with_disabilities" / "KEN").rglob("*.ipynb")
    assert any("× Women and girls" in p.read_text() for p in pages)


@pytest.mark.slow
def test_editing_one_chapter_module_reruns_only_the_runs_that_import_it(tiny_project, tmp_path):
    code = tmp_path / "code" / "analysis"
    shutil.copytree(tiny_project.code_dir, code)
    tiny_project.code_dir = code
    _with_labels_chapter(tiny_project)
    run_pipeline(tiny_project.report, **tiny_project.kwargs())
    module = code / "chapters" / "common.py"
    module.write_text(module.read_text() + "\n# an edit\n")
    lines = []
    run_pipeline(tiny_project.report, dry_run=True, **tiny_project.kwargs(echo=lines.append))
    would = {line.split()[2].rstrip(":") for line in lines if line.startswith("would run")}
    assert would and all(run.startswith("tiny_labels/") for run in would)  # tiny imports tables only
    assert any("library code changed: analysis/chapters/common.py" in line for line in lines)


@pytest.mark.slow
def test_failures_are_isolated_recorded_indexed_and_rerun_next_time(tiny_project):
    tiny_project.plant("women", "KEN", "raise")
    tiny_project.plant("women", "UGA", "kill")
    tiny_project.plant("persons_with_disabilities", "KEN", "sleep")
    lines = []
    outcome = run_pipeline(tiny_project.report, workers=2, timeout=4, **tiny_project.kwargs(echo=lines.append))
    assert outcome.exit_code == 1
    assert set(outcome.failed) == {"tiny/women/KEN", "tiny/women/UGA", "tiny/persons_with_disabilities/KEN"}
    assert any(line.startswith("FAILED tiny/women/KEN: RuntimeError: planted failure") for line in lines)

    manifest = json.loads((tiny_project.outputs / "manifest.json").read_text())
    runs = manifest["runs"]
    assert {k: runs[k]["failure"] for k in outcome.failed} == {
        "tiny/women/KEN": "exception", "tiny/women/UGA": "killed", "tiny/persons_with_disabilities/KEN": "timeout"}
    assert all(runs[k]["error"]["cell_index"] == 4 for k in outcome.failed)
    for ok in ("tiny/persons_with_disabilities/UGA", "tiny/persons_with_disabilities/SEN"):
        assert runs[ok]["status"] == "ok"
        assert all((tiny_project.outputs / p).exists() for p in runs[ok]["outputs"]["tables"])
    # The synthesis would read estimates that lack the failed runs: blocked, not run (issue 11).
    assert runs["tiny_synthesis"]["status"] == "blocked"
    assert sorted(runs["tiny_synthesis"]["blocked_by"]) == sorted(outcome.failed)
    index = (tiny_project.outputs / "runs.html").read_text()
    assert index.count("failed (exception)") == 1 and index.count("failed (killed)") == 1
    assert "failed (timeout)" in index and "planted failure for women in KEN" in index
    assert "in cell 4" in index

    tiny_project.clear()
    lines = []
    run_pipeline(tiny_project.report, dry_run=True, **tiny_project.kwargs(echo=lines.append))
    assert sum("failed last time" in line for line in lines) == 3
    outcome = run_pipeline(tiny_project.report, **tiny_project.kwargs())
    assert outcome.exit_code == 0
    assert ran(tiny_project) == set(runs) - {"tiny/women/SEN", "tiny/persons_with_disabilities/UGA",
                                             "tiny/persons_with_disabilities/SEN"}


def test_filters_select_runs_and_keep_the_others_records(tiny_project):
    outcome = run_pipeline(tiny_project.report, countries=["SEN"], **tiny_project.kwargs())
    assert ran(tiny_project) == {"tiny/persons_with_disabilities/SEN"} and outcome.exit_code == 0
    run_pipeline(tiny_project.report, groups=["women"], chapters=["tiny"], **tiny_project.kwargs())
    manifest = json.loads((tiny_project.outputs / "manifest.json").read_text())
    assert ran(tiny_project) == {"tiny/women/KEN", "tiny/women/UGA"}
    assert manifest["runs"]["tiny/persons_with_disabilities/SEN"]["status"] == "ok"


def test_cli_dry_run_and_one_line_config_error(tiny_project, capsys, monkeypatch):
    monkeypatch.setenv("ANALYSIS_PROJECT_ROOT", str(tiny_project.root))
    bad = tiny_project.root / "bad.yml"
    bad.write_text(tiny_project.report.read_text().replace("title: Tiny report", "title: Tiny\nthemes: []"))
    assert cli_main(["run", "--config", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "key 'themes': unknown key" in err and "\n" not in err


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_outputs_as_serial(tiny_project, tmp_path, code_snapshot):
    distributed = pytest.importorskip("distributed")
    run_pipeline(tiny_project.report, workers=1, **tiny_project.kwargs())
    dask_project = build_project(tmp_path / "dask", code_snapshot)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        outcome = run_pipeline(dask_project.report, scheduler=client, **dask_project.kwargs())
    assert outcome.exit_code == 0 and ran(dask_project) == ALL_RUNS
    assert published(dask_project) == published(tiny_project)
    manifest = json.loads((dask_project.outputs / "manifest.json").read_text())
    assert all(Path(e["outputs"]["folder"]).parts[0] in {"tiny", "tiny_synthesis"}
               for e in manifest["runs"].values() if e["status"] == "ok")


def test_two_invocations_cannot_write_the_same_outputs(tiny_project):
    from analysis.pipeline.runner import OutputsBusy, _lock_outputs

    tiny_project.outputs.mkdir(parents=True)
    held = _lock_outputs(tiny_project.outputs)
    try:
        with pytest.raises(OutputsBusy, match=r"another `python -m analysis run` \(pid \d+\) is writing here"):
            run_pipeline(tiny_project.report, **tiny_project.kwargs())
    finally:
        held.close()
    assert not (tiny_project.outputs / "manifest.json").exists()


def test_the_manifest_is_not_rewritten_after_every_run(tiny_project, monkeypatch):
    """The whole manifest (about 1 MB for the demo report) was rewritten after each run: 78
    rewrites, quadratic in the size of the report. Successes are saved at most every
    MANIFEST_SAVE_SECONDS; the build's end always saves, so the manifest is complete."""
    from analysis.pipeline import manifest as manifest_mod
    from analysis.pipeline import runner

    writes = []
    original = manifest_mod.write_json_atomic
    monkeypatch.setattr(manifest_mod, "write_json_atomic",
                        lambda data, path: (writes.append(path.name), original(data, path))[1])
    monkeypatch.setattr(runner, "MANIFEST_SAVE_SECONDS", 1e9, raising=False)
    outcome = run_pipeline(tiny_project.report, workers=1, **tiny_project.kwargs())
    assert outcome.exit_code == 0 and ran(tiny_project) == ALL_RUNS
    assert writes.count("manifest.json") <= 2, writes  # the first success, and the end
    manifest = json.loads((tiny_project.outputs / "manifest.json").read_text())
    assert {k for k, v in manifest["runs"].items() if v.get("status") == "ok"} == ALL_RUNS
