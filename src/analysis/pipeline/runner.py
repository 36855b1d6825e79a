"""The pipeline: plan the runs, skip the unchanged, execute the rest, record and index them.

:func:`run_pipeline` is what ``python -m analysis run`` calls. It

1. loads and validates the run matrix and checks every run's parameters against its notebook
   (nothing executes if anything is wrong);
2. computes each run's key (:mod:`analysis.pipeline.cache`) and decides: run (new, changed
   input — named —, failed last time, outputs missing, forced) or skip (unchanged);
3. executes the runs stage by stage (chapters with ``after:`` run once the others are done and
   ``outputs/tables/all_estimates.csv`` is rebuilt) with one of three schedulers: serial, a
   local process pool (fork context, heavy modules imported once in the parent), or
   ``dask.distributed`` — each calling the same unit :func:`analysis.pipeline.execute.execute_run`;
4. records every run in ``outputs/manifest.json`` as it finishes, rebuilds
   ``outputs/tables/all_estimates.csv`` and writes ``outputs/index.html``.

A failed run never stops the others; the return value says how many failed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from analysis import config, hashing
from analysis.pipeline import cache
from analysis.pipeline import manifest as manifest_mod
from analysis.pipeline.execute import STAGING, ExecOptions, execute_run, preload
from analysis.pipeline.index import write_index
from analysis.pipeline.matrix import (
    MatrixContext,
    MatrixError,
    RunSpec,
    check_parameters,
    expand_runs,
    load_report,
    load_yaml,
)


@dataclass
class Plan:
    """What one invocation will do: every run of the matrix with its decision and reason."""

    ctx: MatrixContext
    runs: list[RunSpec]
    selected: list[RunSpec]
    decisions: dict[str, tuple[str, str]] = field(default_factory=dict)  # run_id -> (run|skip|n/a, reason)
    components: dict[str, dict] = field(default_factory=dict)


@dataclass
class Outcome:
    """The result of :func:`run_pipeline`."""

    manifest: dict
    plan: Plan
    ran: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def _matches(run: RunSpec, chapters, groups, countries, run_ids=()) -> bool:
    return ((not chapters or run.chapter in chapters) and (not groups or run.group in groups)
            and (not countries or run.country in countries) and (not run_ids or run.run_id in run_ids))


def plan_runs(config_path=None, *, chapters=(), groups=(), countries=(), run_ids=(), force=False,
              processed_dir=None, outputs_dir=None, project_root=None, groups_file=None,
              timeout=None, code_dir=None) -> tuple[Plan, dict, cache.KeyContext]:
    """Load the matrix, check parameters, compute keys and decide what runs (no execution)."""
    ctx = load_report(config_path, project_root=project_root, groups_file=groups_file,
                      processed_dir=processed_dir, outputs_dir=outputs_dir)
    runs = expand_runs(ctx)
    if timeout:
        for run in runs:
            run.timeout = float(timeout)
    manifest = manifest_mod.load_manifest(ctx.outputs_dir / "manifest.json")
    check_parameters(runs, ctx.report_path, manifest.setdefault("notebook_parameters", {}))
    hasher = cache.FileHasher(manifest.get("file_hashes"))
    keys = cache.KeyContext(ctx, hasher, code_dir)
    unknown = sorted(set(run_ids) - {r.run_id for r in runs})
    if unknown:
        raise MatrixError(f"{ctx.report_path}: no run {unknown[0]!r} in the matrix (see --dry-run for the run ids)")
    selected = [r for r in runs if _matches(r, set(chapters), set(groups), set(countries), set(run_ids))]
    plan = Plan(ctx=ctx, runs=runs, selected=selected)
    for run in selected:
        if run.status == "not_applicable":
            plan.decisions[run.run_id] = ("n/a", run.reason)
        elif run.stage == 0:
            _decide(plan, run, manifest, keys, force)
        else:
            # Reads all_estimates.csv, which earlier stages may still change: decided when its stage starts.
            plan.decisions[run.run_id] = ("later", "after " + ", ".join(ctx.report.chapters[run.chapter].after))
    return plan, manifest, keys


def _decide(plan: Plan, run: RunSpec, manifest: dict, keys: cache.KeyContext, force: bool) -> None:
    previous = manifest.get("runs", {}).get(run.run_id)
    components = keys.components(run, (previous or {}).get("catalogue_reads"))
    plan.components[run.run_id] = components
    if force:
        decision = ("run", "forced")
    elif not previous or previous.get("status") == "not_applicable":
        decision = ("run", "new")
    elif previous.get("status") == "failed":
        decision = ("run", f"failed last time ({previous.get('failure') or 'error'})")
    elif previous.get("key") != cache.run_key(components):
        decision = ("run", cache.explain_change(previous.get("key_components"), components))
    elif not _outputs_exist(previous, plan.ctx.outputs_dir):
        decision = ("run", "outputs missing")
    else:
        decision = ("skip", "unchanged")
    plan.decisions[run.run_id] = decision


def _catalogue_reads(run: RunSpec) -> dict | None:
    """The catalogue entries a finished run read (its ``catalogue_reads.json``), or None."""
    path = Path(run.parameters.get("output_dir", "")) / hashing.CATALOGUE_READS_FILE
    try:
        reads = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return reads if isinstance(reads, dict) else None


def _outputs_exist(entry: dict, outputs_dir: Path) -> bool:
    outputs = entry.get("outputs", {})
    needed = outputs.get("notebook", []) + outputs.get("html", []) + outputs.get("tables", []) + outputs.get("figures", [])
    return bool(outputs.get("notebook")) and all((outputs_dir / p).exists() for p in needed)


def _source_cards(ctx: MatrixContext) -> dict:
    """Title, synthetic flag and licence of each source (from params/sources/<id>.yml)."""
    out = {}
    cards = ctx.project_root / "params" / "sources"
    for path in sorted(cards.glob("*.yml")) if cards.is_dir() else []:
        try:
            card = load_yaml(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            continue
        sid = str(card.get("id", path.stem))
        out[sid] = {"title": str(card.get("title", sid)), "synthetic": bool(card.get("synthetic", False)),
                    "licence": card.get("licence")}
    return out


class _Progress:
    """tqdm on a terminal, plain lines otherwise (e.g. CI logs)."""

    def __init__(self, total: int, enabled: bool | None = None):
        self.total = total
        self.done = 0
        use_bar = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        if use_bar and total:
            import tqdm

            tqdm.tqdm.monitor_interval = 0  # no monitor thread (we fork)
            self.bar = tqdm.tqdm(total=total, unit="run", file=sys.stderr)

    def update(self, run: RunSpec, record: dict) -> None:
        self.done += 1
        status = record["status"]
        detail = ""
        if status != "ok":
            error = record.get("error") or {}
            cell = error.get("cell_index")
            detail = f": {error.get('message', '')}" + (f" (cell {cell})" if cell is not None else "")
        line = f"[{self.done}/{self.total}] {status:6s} {run.run_id} {record.get('duration', 0):.1f}s{detail}"
        if self.bar is not None:
            self.bar.set_postfix_str(run.run_id[-40:])
            self.bar.update(1)
            if status != "ok":
                self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _execute(specs: list[RunSpec], options: ExecOptions, *, workers: int, scheduler,
             on_done: Callable[[RunSpec, dict], None]) -> None:
    """Run ``specs`` with the chosen scheduler; ``on_done`` gets every record as it finishes."""
    if not specs:
        return
    if scheduler is not None:
        _execute_dask(specs, options, scheduler, on_done)
    elif workers <= 1 or len(specs) == 1:
        for spec in specs:
            on_done(spec, _safe(spec, options))
    else:
        import concurrent.futures as cf
        import multiprocessing

        if options.engine == "fork":
            preload(code_hash=options.code_hash)  # pool workers are forked from here: imports shared
        context = multiprocessing.get_context("fork")
        pool = cf.ProcessPoolExecutor(max_workers=min(workers, len(specs)), mp_context=context)
        try:
            futures = {pool.submit(execute_run, spec, options): spec for spec in specs}
            for future in cf.as_completed(futures):
                spec = futures[future]
                try:
                    record = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker died: record and go on
                    record = _infrastructure_failure(spec, options, exc)
                on_done(spec, record)
        except BaseException:
            # Interrupted: stop the workers (each kills its running notebook) and do not wait.
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def _safe(spec: RunSpec, options: ExecOptions) -> dict:
    try:
        return execute_run(spec, options)
    except Exception as exc:  # noqa: BLE001
        return _infrastructure_failure(spec, options, exc)


def _infrastructure_failure(spec: RunSpec, options: ExecOptions, exc: BaseException) -> dict:
    return {"run_id": spec.run_id, "status": "failed", "failure": "worker",
            "error": {"message": f"the worker running it failed: {type(exc).__name__}: {exc}",
                      "cell_index": None, "cell_source": None},
            "duration": 0.0, "cells_seconds": None, "outputs": {}, "engine": options.engine,
            "started_at": manifest_mod.now(), "finished_at": manifest_mod.now()}


def _execute_dask(specs, options, scheduler, on_done) -> None:
    from distributed import Client, as_completed

    own = isinstance(scheduler, str)
    client = Client(scheduler) if own else scheduler
    try:
        futures = client.map(execute_run, specs, [options] * len(specs), pure=False,
                             key=[f"run-{s.run_id.replace('/', '-')}-{time.monotonic_ns()}" for s in specs])
        by_key = {f.key: s for f, s in zip(futures, specs)}
        for future in as_completed(futures):
            spec = by_key[future.key]
            try:
                record = future.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker etc.: record and go on
                record = _infrastructure_failure(spec, options, exc)
            on_done(spec, record)
    finally:
        if own:
            client.close()


def run_pipeline(config_path=None, *, chapters=(), groups=(), countries=(), run_ids=(), force=False, dry_run=False,
                 workers: int | None = None, scheduler=None, engine: str | None = None,
                 processed_dir=None, outputs_dir=None, project_root=None, groups_file=None,
                 timeout=None, progress: bool | None = None, echo=print, code_dir=None) -> Outcome:
    """Plan, execute and record the report's runs (see the module docstring).

    Parameters
    ----------
    config_path : path, optional
        The report file (default ``params/report.yml``).
    chapters, groups, countries, run_ids : sequences of str
        Filters; runs outside them keep their previous manifest entries.
    force : bool
        Re-run selected runs even when unchanged.
    dry_run : bool
        Only say what would run and why.
    workers : int, optional
        Parallel runs on a local process pool (default: report defaults, else one per core).
    scheduler : str or distributed.Client, optional
        A Dask scheduler address (or client): run on the cluster instead.
    engine : "fork" or "papermill"
        How a notebook executes (default from the report file, normally "fork").
    code_dir : path, optional
        The library source whose hash enters every run key (default ``src/analysis``).
    """
    started = time.perf_counter()
    plan, manifest, keys = plan_runs(config_path, chapters=chapters, groups=groups, countries=countries,
                                     run_ids=run_ids,
                                     force=force, processed_dir=processed_dir, outputs_dir=outputs_dir,
                                     project_root=project_root, groups_file=groups_file, timeout=timeout,
                                     code_dir=code_dir)
    ctx = plan.ctx
    outcome = Outcome(manifest=manifest, plan=plan)
    if dry_run:
        for run in plan.selected:
            decision, reason = plan.decisions[run.run_id]
            word = {"run": "would run", "skip": "skip", "n/a": "not applicable", "later": "decided later"}[decision]
            echo(f"{word:15s} {run.run_id}: {reason}")
        counts = {}
        for decision, _ in plan.decisions.values():
            counts[decision] = counts.get(decision, 0) + 1
        echo("dry run: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + "; nothing executed")
        return outcome

    outputs = ctx.outputs_dir
    outputs.mkdir(parents=True, exist_ok=True)
    lock = _lock_outputs(outputs)
    try:
        return _run_locked(plan, manifest, keys, outcome, started, force=force, workers=workers,
                           scheduler=scheduler, engine=engine, progress=progress, echo=echo)
    finally:
        lock.close()


class OutputsBusy(RuntimeError):
    """Another invocation is writing to the same outputs folder."""


def _lock_outputs(outputs: Path):
    """Hold an exclusive lock on ``outputs/.pipeline.lock`` for this invocation."""
    import fcntl

    handle = open(outputs / ".pipeline.lock", "a+")  # noqa: SIM115 - held until the run ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise OutputsBusy(f"{outputs}: another `python -m analysis run` ({holder}) is writing here; "
                          "wait for it to finish or pass --outputs DIR") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def _run_locked(plan: Plan, manifest: dict, keys: cache.KeyContext, outcome: Outcome, started: float, *,
                force, workers, scheduler, engine, progress, echo) -> Outcome:
    ctx = plan.ctx
    outputs = ctx.outputs_dir
    shutil.rmtree(outputs / STAGING, ignore_errors=True)  # left by a killed invocation
    workers = workers or ctx.report.defaults.workers or os.cpu_count() or 1
    engine = engine or ctx.report.defaults.engine
    version = manifest_mod.code_version(ctx.project_root)
    sources = _source_cards(ctx)
    options = ExecOptions(
        outputs_dir=str(outputs), engine=engine, kernel_name=config.KERNEL_NAME, code_hash=keys.code,
        render={
            "group_labels": ctx.group_labels, "country_names": ctx.country_names, "sources": sources,
            "disclosure": ctx.report.disclosure.model_dump(), "code_version": version,
            "project_root": str(ctx.project_root), "outputs_dir": str(outputs),
        },
    )
    runs_by_id = {r.run_id: r for r in plan.runs}
    manifest["runs"] = {k: v for k, v in manifest.get("runs", {}).items() if k in runs_by_id}
    for entry in manifest["runs"].values():
        entry["action"] = "not_run"
    manifest.update(report={"title": ctx.report.title, "config": str(ctx.report_path)},
                    code_version=version, packages=keys.packages, sources=sources)
    downstream = {c for c, ch in ctx.report.chapters.items() if ch.after}
    manifest_path = outputs / "manifest.json"

    def base_entry(run: RunSpec) -> dict:
        return {"chapter": run.chapter, "chapter_title": run.chapter_title, "scope": run.scope,
                "group": run.group, "country": run.country, "source": run.source, "sources": run.sources,
                "notebook": cache._relative(run.notebook, ctx.project_root),
                "parameters": cache.canonical_parameters(run.parameters, ctx.project_root)}

    def save():
        manifest["file_hashes"] = keys.hasher.cache
        manifest["summary"] = manifest_mod.summarise(manifest["runs"])
        manifest["updated_at"] = manifest_mod.now()
        manifest_mod.write_json_atomic(manifest, manifest_path)

    to_run_total = sum(1 for d, _ in plan.decisions.values() if d in ("run", "later"))
    progress_bar = _Progress(to_run_total, progress)

    def on_done(run: RunSpec, record: dict) -> None:
        components = plan.components[run.run_id]
        reads = _catalogue_reads(run) if record["status"] == "ok" else None
        if reads is not None:  # the key covers what the run read this time
            components = plan.components[run.run_id] = keys.components(run, reads)
        entry = base_entry(run) | {
            "key": cache.run_key(components), "key_components": components, "catalogue_reads": reads,
            "inputs": components["inputs"], "action": "ran", "reason": plan.decisions[run.run_id][1],
            "code_version": version,
        } | {k: v for k, v in record.items() if k != "run_id"}
        manifest["runs"][run.run_id] = entry
        if record["status"] == "ok":
            outcome.ran += 1
        else:
            outcome.failed.append(run.run_id)
        progress_bar.update(run, record)
        save()

    try:
        for stage in sorted({r.stage for r in plan.selected}):
            stage_runs = [r for r in plan.selected if r.stage == stage]
            if stage > 0:
                manifest_mod.build_all_estimates(manifest, outputs, downstream)
                for run in stage_runs:
                    if run.status != "not_applicable":
                        _decide(plan, run, manifest, keys, force)
            todo = []
            for run in stage_runs:
                decision, reason = plan.decisions[run.run_id]
                if decision == "n/a":
                    manifest["runs"][run.run_id] = base_entry(run) | {"status": "not_applicable", "reason": reason,
                                                                      "action": "checked", "outputs": {}}
                elif decision == "skip":
                    manifest["runs"][run.run_id]["action"] = "skipped"
                    outcome.skipped += 1
                else:
                    todo.append(run)
            if stage > 0:
                progress_bar.total -= sum(1 for r in stage_runs if plan.decisions[r.run_id][0] == "skip")
            _execute(todo, options, workers=workers, scheduler=scheduler, on_done=on_done)
    finally:
        progress_bar.close()
        manifest_mod.build_all_estimates(manifest, outputs, downstream)
        save()
        write_index(manifest, ctx)
    outcome.seconds = time.perf_counter() - started
    summary = manifest["summary"]
    echo(f"{outcome.ran} ran, {outcome.skipped} skipped as unchanged, {len(outcome.failed)} failed, "
         f"{summary['not_applicable']} not applicable ({outcome.seconds:.1f} s); index: {outputs / 'index.html'}")
    for run_id in outcome.failed:
        error = manifest["runs"][run_id].get("error") or {}
        cell = error.get("cell_index")
        echo(f"FAILED {run_id}: {error.get('message')}" + (f" (cell {cell})" if cell is not None else ""))
    return outcome
