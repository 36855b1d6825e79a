"""Benchmark: ``python -m analysis run`` against the naive papermill + ``jupyter nbconvert`` loop.

On the same runs (notebooks and parameters) of a run matrix, in one invocation:

- **naive**: for each run, sequentially, the ``papermill`` command (``analysis`` kernel) and then
  ``jupyter nbconvert --to html`` on its output;
- **ours, cold**: ``python -m analysis run --force`` on those runs (a fresh process: imports,
  forked children, in-process HTML) with ``--workers 1`` and with the default workers (cores);
- **ours, no-op**: the same command again without ``--force`` (everything unchanged: skipped).

For each: wall time, CPU time (user + system of the whole process tree), peak memory (largest
sum of proportional set size, PSS, over the process tree, sampled every 0.1 s: forked children
share pages with their parent, PSS counts each shared page once), and the per-notebook overhead
= (wall time − time spent inside notebook cells) / runs, with cell times from the executed
notebooks' papermill metadata. Results go to ``bench/results/pipeline.json``.

Two matrices: ``--matrix demo`` (the report's chapter notebooks on the demo data; needs
``python -m analysis ingest`` first) and ``--matrix tiny`` (the pipeline tests' tiny notebook on
synthetic data: fixed costs dominate). Default: both. ``--limit N`` runs per matrix (default 6;
``--limit 0``: every first-stage run of the matrix, i.e. all but the synthesis).

Besides the totals, the median wall time of one run (fork, cells, gate, notebook and HTML, from
the manifest) is reported for ours with one worker, next to the 1-minute load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "pipeline"))
VENV_BIN = Path(sys.executable).parent


class TreeSampler:
    """Peak PSS of a process and its descendants, sampled in a thread of this (idle) process."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            total = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                procs = []
            for proc in procs:
                try:
                    info = proc.memory_full_info()
                    total += getattr(info, "pss", info.rss)
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def measure(commands: list[list[str]], cwd: Path, env: dict | None = None) -> dict:
    """Run commands one after the other; wall, CPU of the whole tree, peak PSS."""
    before = os.times()
    start = time.perf_counter()
    peak = 0
    for command in commands:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with TreeSampler(proc.pid) as sampler:
            _, err = proc.communicate()
        peak = max(peak, sampler.peak)
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{' '.join(command[:4])}... exited {proc.returncode}: {' | '.join(tail)}")
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "peak_pss_mb": round(peak / 2**20, 1)}


def cells_seconds(notebook: Path) -> float:
    nb = json.loads(notebook.read_text())
    return sum(float((c.get("metadata", {}).get("papermill") or {}).get("duration") or 0) for c in nb["cells"])


def pick_runs(config: Path, project_root: Path, limit: int, outputs: Path, processed: Path | None) -> list:
    """Up to ``limit`` applicable first-stage runs, taking chapters in turn (a varied sample)."""
    from analysis.pipeline.matrix import check_parameters, expand_runs, load_report

    ctx = load_report(config, project_root=project_root, outputs_dir=outputs, processed_dir=processed,
                      groups_file=project_root / "params" / "groups.yml")
    runs = [r for r in check_parameters(expand_runs(ctx), ctx.report_path)
            if r.status == "pending" and r.stage == 0]
    by_chapter: dict[str, list] = {}
    for run in runs:
        by_chapter.setdefault(run.chapter, []).append(run)
    if limit <= 0:  # the whole matrix
        return [run for queue in by_chapter.values() for run in queue]
    picked = []
    while len(picked) < limit and any(by_chapter.values()):
        for queue in by_chapter.values():
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


def naive_loop(runs, outputs: Path, cwd: Path) -> tuple[dict, float]:
    commands, executed = [], []
    for run in runs:
        folder = outputs / run.run_id
        folder.mkdir(parents=True, exist_ok=True)
        params = dict(run.parameters, output_dir=str(folder))
        out = folder / f"{run.chapter}.ipynb"
        executed.append(out)
        commands.append([str(VENV_BIN / "papermill"), run.notebook, str(out), "-k", "analysis",
                         "--cwd", str(Path(run.notebook).parent), "-y", yaml.safe_dump(params),
                         "--no-progress-bar"])
        commands.append([str(VENV_BIN / "jupyter"), "nbconvert", "--to", "html", str(out)])
    result = measure(commands, cwd)
    return result, sum(cells_seconds(p) for p in executed)


def ours(runs, config: Path, outputs: Path, cwd: Path, workers: int | None, force: bool,
         extra_env: dict | None = None, processed: Path | None = None) -> tuple[dict, float, dict]:
    command = [sys.executable, "-m", "analysis", "run", "--config", str(config), "--outputs", str(outputs),
               "--no-progress"]
    if processed:
        command += ["--processed", str(processed)]
    if force:
        command.append("--force")
    if workers:
        command += ["--workers", str(workers)]
    for run in runs:
        command += ["--run", run.run_id]
    env = dict(os.environ, **(extra_env or {}))
    try:
        result = measure([command], cwd, env)
    except RuntimeError as exc:  # a failed notebook: still measured, but say so
        result = {"error": str(exc)}
    if not (outputs / "manifest.json").exists():  # failed before planning: nothing to read
        return result, 0.0, {"statuses": ["failed"], "actions": {}, "reasons": []}
    manifest = json.loads((outputs / "manifest.json").read_text())
    entries = [manifest["runs"][r.run_id] for r in runs]
    cells = sum(float(e.get("cells_seconds") or 0) for e in entries if e.get("action") == "ran")
    per_run = [float(e["duration"]) - float(e.get("cells_seconds") or 0) for e in entries if e.get("action") == "ran"]
    statuses = {e["status"] for e in entries}
    actions: dict[str, int] = {}
    for e in entries:
        actions[e.get("action", "?")] = actions.get(e.get("action", "?"), 0) + 1
    ran = sorted(float(e["duration"]) for e in entries if e.get("action") == "ran")
    durations = sum(ran)
    return result, cells, {
        "statuses": sorted(statuses), "actions": actions,
        "reasons": sorted({e.get("reason", "") for e in entries if e.get("action") == "ran"}),
        # Per run, inside the forked child: wall of the run minus time inside its cells.
        "mean_in_child_overhead_s": round(sum(per_run) / len(per_run), 3) if per_run else None,
        "median_run_s": round(statistics.median(ran), 3) if ran else None,
        # Once per invocation: process start, imports, planning, index (wall minus the runs' walls).
        "fixed_startup_s": round(result["wall_s"] - durations, 3) if "wall_s" in result else None,
    }


def tiny_matrix(folder: Path, runs_wanted: int) -> tuple[Path, Path, Path]:
    """The pipeline tests' tiny project, widened to enough countries for ``runs_wanted`` runs."""
    from tiny_project import REPORT, make_source

    countries = ["KEN", "UGA", "SEN", "BGD", "TZA", "RWA", "ETH", "GHA", "NGA", "MLI", "NER", "BFA"]
    n = max(1, min(len(countries), (runs_wanted + 1) // 2))
    (folder / "processed").mkdir(parents=True)
    (folder / "notebooks").mkdir()
    (folder / "control").mkdir()
    # The whole catalogue (groups, indicators, texts, languages): ANALYSIS_PROJECT_ROOT points here.
    shutil.copytree(ROOT / "params", folder / "params")
    shutil.copy(ROOT / "tests/pipeline/notebooks/tiny.ipynb", folder / "notebooks")
    shutil.copy(ROOT / "tests/pipeline/notebooks/tiny_synthesis.ipynb", folder / "notebooks")
    make_source(folder / "processed" / "src_a.parquet", countries[:n], True, seed=1)
    report = REPORT.format(timeout=600, control=folder / "control").replace(
        "countries: [KEN, UGA, SEN]", f"countries: [{', '.join(countries[:n])}]")
    (folder / "report.yml").write_text(report)
    return folder / "report.yml", folder, folder / "processed"


def bench_matrix(name: str, limit: int, workdir: Path) -> dict:
    if name == "tiny":
        config, project_root, processed = tiny_matrix(workdir / "tiny_project", limit)
        env = {"ANALYSIS_PROJECT_ROOT": str(project_root)}
    else:
        config, project_root, processed = ROOT / "params" / "report.yml", ROOT, None
        env = {}
    outputs_ours = workdir / f"{name}_ours"
    runs = pick_runs(config, project_root, limit, outputs_ours, processed)
    if not runs:
        return {"matrix": name, "skipped": "no applicable runs (run `python -m analysis ingest` first?)"}
    print(f"[{name}] {len(runs)} runs: {', '.join(r.run_id for r in runs)}", flush=True)

    naive, naive_cells = naive_loop(runs, workdir / f"{name}_naive", project_root)
    print(f"[{name}] naive loop: {naive}", flush=True)
    serial, serial_cells, serial_info = ours(runs, config, workdir / f"{name}_ours_serial", project_root, 1, True,
                                             env, processed)
    print(f"[{name}] ours --workers 1: {serial}", flush=True)
    parallel, parallel_cells, parallel_info = ours(runs, config, outputs_ours, project_root, None, True, env, processed)
    print(f"[{name}] ours (workers = cores): {parallel}", flush=True)
    noop, _, noop_info = ours(runs, config, outputs_ours, project_root, None, False, env, processed)
    print(f"[{name}] ours no-op re-run: {noop}", flush=True)

    n = len(runs)

    def overhead(result, cells):
        return round((result["wall_s"] - cells) / n, 3) if "wall_s" in result else None

    return {
        "matrix": name,
        "runs": [r.run_id for r in runs],
        "naive": naive | {"cells_s": round(naive_cells, 3), "overhead_per_notebook_s": overhead(naive, naive_cells)},
        "ours_serial": serial | {"cells_s": round(serial_cells, 3),
                                 "overhead_per_notebook_s": overhead(serial, serial_cells)} | serial_info,
        "ours_parallel": parallel | {"cells_s": round(parallel_cells, 3), "workers": os.cpu_count()} | parallel_info,
        "ours_noop": noop | noop_info,
        "speedup_serial": round(naive["wall_s"] / serial["wall_s"], 2) if "wall_s" in serial else None,
        "speedup_parallel": round(naive["wall_s"] / parallel["wall_s"], 2) if "wall_s" in parallel else None,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=6,
                        help="runs per matrix (default 6; 0: every first-stage run of the matrix)")
    parser.add_argument("--matrix", choices=["demo", "tiny", "both"], default="both")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "pipeline.json"))
    args, _unknown = parser.parse_known_args(argv)  # run_all passes every benchmark the same flags
    results = {"machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}, "matrices": []}
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        for name in (["tiny", "demo"] if args.matrix == "both" else [args.matrix]):
            results["matrices"].append(bench_matrix(name, args.limit, Path(tmp)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    for m in results["matrices"]:
        if "naive" not in m:
            print(f"{m['matrix']}: {m.get('skipped')}")
            continue
        print(f"\n{m['matrix']} matrix, {len(m['runs'])} runs (load average {m['load_average_1min']}):")
        print(f"  {'':24s}{'wall s':>9s}{'cpu s':>9s}{'peak MB':>9s}{'cells s':>9s}{'overhead/nb s':>15s}")
        for key, label in (("naive", "naive papermill+nbconvert"), ("ours_serial", "ours --workers 1"),
                           ("ours_parallel", "ours (workers = cores)"), ("ours_noop", "ours no-op re-run")):
            r = m[key]
            if "wall_s" not in r:
                print(f"  {label:24s} failed: {r.get('error')}")
                continue
            print(f"  {label:24s}{r['wall_s']:9.2f}{r['cpu_s']:9.2f}{r['peak_pss_mb']:9.1f}"
                  f"{r.get('cells_s', 0):9.2f}{(r.get('overhead_per_notebook_s') or 0):15.3f}")
        print(f"  speed-up vs naive: {m['speedup_serial']}x with one worker, {m['speedup_parallel']}x with all cores")
        s = m["ours_serial"]
        print(f"  ours, per run inside its child: {s.get('mean_in_child_overhead_s')} s overhead (run wall minus "
              f"cells); once per invocation: {s.get('fixed_startup_s')} s (start, imports, planning, index)")
        print(f"  median run (ours, one worker): {s.get('median_run_s')} s; all cores: "
              f"{m['ours_parallel'].get('median_run_s')} s")
        print(f"  no-op re-run actions: {m['ours_noop'].get('actions')} {m['ours_noop'].get('reasons') or ''}")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
