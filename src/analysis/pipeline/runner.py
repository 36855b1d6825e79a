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
   ``outputs/tables/all_estimates.csv`` and writes the run status grid ``outputs/runs.html`` and
   the front page ``outputs/index.html`` (key findings).

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
from analysis.atomic import OutputWriteError, as_write_error
from analysis.pipeline import cache
from analysis.pipeline import lock as folder_lock
from analysis.pipeline import manifest as manifest_mod
from analysis.pipeline.execute import STAGING, ExecOptions, execute_run, preload
from analysis.pipeline.front_page import write_front_page
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


#: While runs finish, the manifest is written at most this often (seconds), and after every
#: failure; always when the build ends.
MANIFEST_SAVE_SECONDS = 2.0


@dataclass
class Outcome:
    """The result of :func:`run_pipeline`."""

    manifest: dict
    plan: Plan
    ran: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.blocked else 0


def _matches(run: RunSpec, chapters, groups, countries, run_ids=()) -> bool:
    return ((not chapters or run.chapter in chapters) and (not groups or run.group in groups)
            and (not countries or run.country in countries) and (not run_ids or run.run_id in run_ids))


def plan_runs(config_path=None, *, chapters=(), groups=(), countries=(), run_ids=(), force=False,
              processed_dir=None, outputs_dir=None, project_root=None, groups_file=None,
              timeout=None, code_dir=None, language=None, switch=None) -> tuple[Plan, dict, cache.KeyContext]:
    """Load the matrix, check parameters, compute keys and decide what runs (no execution)."""
    from analysis.pipeline.languages import localise

    ctx = localise(load_report(config_path, project_root=project_root, groups_file=groups_file,
                               processed_dir=processed_dir, outputs_dir=outputs_dir), language, switch)
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
    elif previous.get("status") == "blocked":
        decision = ("run", "blocked last time")
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
    from analysis.i18n import source_card_text

    out = {}
    cards = ctx.project_root / "params" / "sources"
    for path in sorted(cards.glob("*.yml")) if cards.is_dir() else []:
        try:
            card = load_yaml(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            continue
        sid = str(card.get("id", path.stem))
        # in the page language: a translation from params/i18n/<lang>.yml, or the card's words marked
        code = getattr(ctx, "language", None) or "en"
        title = source_card_text(sid, "title", str(card["title"]), code) if card.get("title") else sid
        licence = source_card_text(sid, "licence", str(card["licence"]), code) if card.get("licence") else None
        out[sid] = {"title": title, "synthetic": bool(card.get("synthetic", False)), "licence": licence}
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
        from analysis.pipeline.pool import run_pool

        if options.engine == "fork":
            preload(code_hash=options.code_hash)  # pool workers are forked from here: imports shared
        run_pool(specs, options, workers, on_done)


def _safe(spec: RunSpec, options: ExecOptions) -> dict:
    try:
        return execute_run(spec, options)
    except Exception as exc:  # noqa: BLE001
        return _infrastructure_failure(spec, options, exc)


def _infrastructure_failure(spec: RunSpec, options: ExecOptions, exc: BaseException) -> dict:
    from analysis.pipeline.pool import infrastructure_failure

    return infrastructure_failure(spec, options, exc)


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
                 timeout=None, progress: bool | None = None, echo=print, code_dir=None,
                 language: str | None = None, switch: list[str] | None = None) -> Outcome:
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
    language : str, optional
        Render the report in this language (``languages.yml``; default English, at ``outputs/``;
        another at ``outputs/<lang>/``, see :mod:`analysis.pipeline.languages`).
    switch : list of str, optional
        The languages every page's switch links (default: the report file's ``languages``).
    """
    started = time.perf_counter()
    plan_args = {"chapters": chapters, "groups": groups, "countries": countries, "run_ids": run_ids,
                 "force": force, "processed_dir": processed_dir, "outputs_dir": outputs_dir,
                 "project_root": project_root, "groups_file": groups_file, "timeout": timeout,
                 "code_dir": code_dir, "language": language, "switch": switch}
    if dry_run:
        plan, manifest, keys = plan_runs(config_path, **plan_args)
        outcome = Outcome(manifest=manifest, plan=plan)
        for run in plan.selected:
            decision, reason = plan.decisions[run.run_id]
            word = {"run": "would run", "skip": "skip", "n/a": "not applicable", "later": "decided later"}[decision]
            echo(f"{word:15s} {run.run_id}: {reason}")
        counts = {}
        for decision, _ in plan.decisions.values():
            counts[decision] = counts.get(decision, 0) + 1
        echo("dry run: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + "; nothing executed")
        return outcome

    # Where this invocation reads and writes (the report file says, unless overridden); both are
    # locked before any input is hashed, so that an ingest cannot change the data in between.
    where = load_report(config_path, project_root=project_root, groups_file=groups_file,
                        processed_dir=processed_dir, outputs_dir=outputs_dir)
    from analysis.pipeline.languages import check_languages, language_outputs

    if language:
        check_languages([language], "--lang")
    outputs = language_outputs(where.outputs_dir, language or "en")
    try:
        outputs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (as_write_error(exc, outputs) or exc) from None
    lock = _lock_outputs(outputs)
    data_lock = None
    try:
        data_lock = folder_lock.acquire(where.processed_dir, exclusive=False, holder="python -m analysis run")
        plan, manifest, keys = plan_runs(config_path, **plan_args)
        outcome = Outcome(manifest=manifest, plan=plan)
        return _run_locked(plan, manifest, keys, outcome, started, force=force, workers=workers,
                           scheduler=scheduler, engine=engine, progress=progress, echo=echo)
    finally:
        folder_lock.release(data_lock)
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
    from analysis.pipeline.languages import page_language, run_environment

    options = ExecOptions(
        outputs_dir=str(outputs), engine=engine, kernel_name=config.KERNEL_NAME, code_hash=keys.code,
        render={
            "group_labels": ctx.group_labels, "country_names": ctx.country_names, "sources": sources,
            "disclosure": ctx.report.disclosure.model_dump(), "code_version": version,
            "project_root": str(ctx.project_root), "outputs_dir": str(outputs),
            "language": page_language(ctx),
        },
        environment=run_environment(ctx),
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

    last_saved = [float("-inf")]

    def save():
        manifest["file_hashes"] = keys.hasher.cache
        manifest["summary"] = manifest_mod.summarise(manifest["runs"])
        manifest["updated_at"] = manifest_mod.now()
        manifest_mod.write_json_atomic(manifest, manifest_path)
        last_saved[0] = time.monotonic()

    to_run_total = sum(1 for d, _ in plan.decisions.values() if d in ("run", "later"))
    progress_bar = _Progress(to_run_total, progress)

    def on_done(run: RunSpec, record: dict) -> None:
        components = plan.components[run.run_id]
        reads = _catalogue_reads(run) if record["status"] == "ok" else None
        if record["status"] == "ok" and reads is None:
            reads = {}  # finished without reading the catalogue through ChapterRun
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
        stop = _unwritable(record, outputs)
        # A failure is recorded at once; successes at most every MANIFEST_SAVE_SECONDS (the whole
        # manifest, about 1 MB for the demo report, was rewritten after each of its 78 runs).
        # finish() always saves, interrupted or not: only a killed runner loses the last few
        # records, and those runs are run again next time.
        due = time.monotonic() - last_saved[0] >= MANIFEST_SAVE_SECONDS
        if due or record["status"] != "ok" or stop is not None:
            try:
                save()
            except OutputWriteError:
                if stop is None:
                    raise
        if stop is not None:
            raise stop  # every further run would fail the same way: stop, keep what finished

    def stale_runs(run_ids) -> dict[str, str]:
        """Completed runs whose input files changed since they were built: run id -> why."""
        out = {}
        for run_id in run_ids:
            entry = manifest["runs"].get(run_id) or {}
            if entry.get("status") == "ok" and run_id in runs_by_id:
                reason = _inputs_changed(entry, runs_by_id[run_id], keys, ctx.project_root)
                if reason:
                    out[run_id] = reason
        return out

    def blockers(run: RunSpec) -> list[str]:
        """Runs of the chapters ``run`` comes after that give it no current estimates."""
        after = set(ctx.report.chapters[run.chapter].after)
        stale = stale_runs(r.run_id for r in plan.runs if r.chapter in after)
        out = []
        selected = {r.run_id for r in plan.selected}
        for other in plan.runs:
            if other.chapter not in after or other.status == "not_applicable":
                continue
            entry = manifest["runs"].get(other.run_id)
            if entry is None or entry.get("status") == "not_applicable" and other.status != "not_applicable":
                # never run: blocks only when this invocation was to run it (a filtered-out run,
                # e.g. `--group women`, leaves the synthesis to what has been built)
                if other.run_id in selected:
                    out.append(f"{other.run_id} (not run yet)")
            elif entry.get("status") in ("failed", "blocked"):
                out.append(f"{other.run_id} ({entry['status']})")
            elif other.run_id in stale:
                out.append(f"{other.run_id} (stale: {stale[other.run_id]})")
        return out

    def block(run: RunSpec, by: list[str]) -> None:
        reason = "blocked by " + ", ".join(by[:3]) + (f" and {len(by) - 3} more" if len(by) > 3 else "")
        # Outputs of an earlier success were built from other estimates: they must not pass for current.
        shutil.rmtree(run.output_dir, ignore_errors=True)
        manifest["runs"][run.run_id] = base_entry(run) | {
            "status": "blocked", "failure": "blocked", "blocked_by": [b.split(" ")[0] for b in by],
            "reason": reason, "error": {"message": reason, "cell_index": None, "cell_source": None},
            "action": "blocked", "outputs": {}, "finished_at": manifest_mod.now()}
        outcome.blocked.append(run.run_id)

    def rebuild_all_estimates() -> None:
        current = stale_runs(r.run_id for r in plan.runs if r.chapter not in downstream)
        manifest_mod.build_all_estimates(manifest, outputs, downstream, exclude=set(current))

    def finish() -> BaseException | None:
        """Rebuild all_estimates.csv, mark stale runs, save the manifest, write runs.html and the front page."""
        first = None

        def mark_stale():
            stale = stale_runs(list(manifest["runs"]))
            for run_id, entry in manifest["runs"].items():
                if stale.get(run_id):
                    entry["stale"] = stale[run_id]
                else:
                    entry.pop("stale", None)

        from analysis.pipeline.languages import language_environment

        def index_page():  # in the report's language (its texts, its translated catalogue)
            with language_environment(ctx):
                write_index(manifest, ctx)

        def pages():
            with language_environment(ctx):
                write_front_page(manifest, ctx)

        for step in (rebuild_all_estimates, mark_stale, save, index_page, pages):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - keep the first; later steps still try
                first = first or exc
        return first

    try:
        for stage in sorted({r.stage for r in plan.selected}):
            stage_runs = [r for r in plan.selected if r.stage == stage]
            if stage > 0:
                rebuild_all_estimates()
                for run in stage_runs:
                    if run.status == "not_applicable":
                        continue
                    by = blockers(run)
                    if by:
                        plan.decisions[run.run_id] = ("blocked", "blocked by " + ", ".join(by))
                    else:
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
                elif decision == "blocked":
                    block(run, blockers(run))
                else:
                    todo.append(run)
            if stage > 0:
                progress_bar.total -= sum(1 for r in stage_runs if plan.decisions[r.run_id][0] in ("skip", "blocked"))
            _execute(todo, options, workers=workers, scheduler=scheduler, on_done=on_done)
    except BaseException:
        # Interrupted or stopped: record what finished; a second error must not hide the first.
        progress_bar.close()
        finish()
        raise
    progress_bar.close()
    problem = finish()
    if problem is not None:
        raise problem
    outcome.seconds = time.perf_counter() - started
    summary = manifest["summary"]
    echo(f"{outcome.ran} ran, {outcome.skipped} skipped as unchanged, {len(outcome.failed)} failed, "
         f"{len(outcome.blocked)} blocked, {summary['not_applicable']} not applicable ({outcome.seconds:.1f} s); "
         f"index: {outputs / 'index.html'}")
    for run_id in outcome.failed:
        error = manifest["runs"][run_id].get("error") or {}
        cell = error.get("cell_index")
        echo(f"FAILED {run_id}: {error.get('message')}" + (f" (cell {cell})" if cell is not None else ""))
    for run_id in outcome.blocked:
        echo(f"BLOCKED {run_id}: {manifest['runs'][run_id]['reason']}")
    stale = sorted(k for k, v in manifest["runs"].items() if v.get("stale"))
    if stale:
        echo(f"STALE {len(stale)} completed runs were built from inputs that have changed since "
             f"(not in all_estimates.csv; re-run them): {', '.join(stale[:5])}" + (" …" if len(stale) > 5 else ""))
    return outcome


def _inputs_changed(entry: dict, run: RunSpec, keys: cache.KeyContext, root: Path) -> str | None:
    """Why a completed run's recorded input hashes no longer match the files (None if they do)."""
    recorded = entry.get("inputs") or {}
    current = {cache._relative(p, root): keys.hasher(p) for p in run.inputs}
    changed = sorted(p for p in set(recorded) | set(current) if recorded.get(p) != current.get(p))
    if not changed:
        return None
    return "built from older inputs; changed since: " + ", ".join(changed)


#: errno names in a run's record that stop the whole invocation (the outputs folder cannot take
#: files): for the notebook's own writes only a full disk or quota; for the pipeline's, any.
_STOP_IN_NOTEBOOK = {"ENOSPC", "EDQUOT"}
_STOP_IN_PIPELINE = {"ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS"}


def _unwritable(record: dict, outputs: Path) -> OutputWriteError | None:
    error = record.get("error") or {}
    name = error.get("errno")
    stops = _STOP_IN_PIPELINE if record.get("failure") in ("worker", "internal") else _STOP_IN_NOTEBOOK
    if record.get("status") == "ok" or name not in stops:
        return None
    import errno as errno_mod

    code = getattr(errno_mod, name)
    return OutputWriteError(error.get("path") or outputs, OSError(code, os.strerror(code)))
