"""A local pool of forked worker processes that survives the death of a worker.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: when one of its workers dies (kill -9,
the out-of-memory killer) the whole executor is "broken" and every pending run fails with
``BrokenProcessPool``, without saying which run the dead worker held. Here each worker has its
own pipe and takes one run at a time, so the parent always knows which run a worker holds: when
a worker dies, exactly that run fails (its staging folder goes to ``outputs/_failed/<run>/``),
a new worker is forked in its place and the remaining runs go on.

Each worker calls :func:`analysis.pipeline.execute.execute_run`, which forks one child per run;
that child dies with its worker (``PR_SET_PDEATHSIG``), so no notebook outlives its worker.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path

from analysis.pipeline import execute as execute_mod
from analysis.pipeline import manifest as manifest_mod
from analysis.pipeline.execute import ExecOptions, execute_run
from analysis.pipeline.matrix import RunSpec


def raise_interrupt(signum, frame):
    """A signal handler that unwinds like Ctrl-C: raises ``KeyboardInterrupt("signal <n>")``.

    Installed for SIGTERM in every pool worker and in the ``run`` command
    (:func:`analysis.pipeline.cli.main`), so that a cancelled build kills its notebooks and
    removes its staging folders instead of dying with them half-written.
    """
    raise KeyboardInterrupt(f"signal {signum}")


def _worker_main(conn, options: ExecOptions) -> None:
    # SIGTERM from the parent (interrupted) unwinds execute_run: it kills the run's notebook and
    # removes its staging folder before the worker exits.
    signal.signal(signal.SIGTERM, raise_interrupt)
    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if spec is None:
            return
        try:
            record = execute_run(spec, options)
        except KeyboardInterrupt:
            return
        except Exception as exc:  # noqa: BLE001 - reported as this run's failure, the worker goes on
            record = infrastructure_failure(spec, options, exc)
        try:
            conn.send(record)
        except (OSError, KeyboardInterrupt):
            return


def infrastructure_failure(spec: RunSpec, options: ExecOptions, exc: BaseException | str) -> dict:
    """The record of a run that failed outside its notebook (its worker died or raised)."""
    message = exc if isinstance(exc, str) else f"the worker running it failed: {type(exc).__name__}: {exc}"
    from analysis.atomic import as_write_error

    error = {"message": message, "cell_index": None, "cell_source": None}
    write_error = as_write_error(exc) if isinstance(exc, BaseException) else None
    if write_error is not None:
        error.update(message=write_error.message, errno=write_error.errno_name, path=write_error.path)
    return {"run_id": spec.run_id, "status": "failed", "failure": "worker", "error": error,
            "duration": 0.0, "cells_seconds": None, "outputs": {}, "engine": options.engine,
            "started_at": manifest_mod.now(), "finished_at": manifest_mod.now()}


class _Worker:
    def __init__(self, context, options: ExecOptions):
        self.conn, child_conn = context.Pipe(duplex=True)
        self.process = context.Process(target=_worker_main, args=(child_conn, options), daemon=True)
        self.process.start()
        child_conn.close()
        self.spec: RunSpec | None = None


def _death_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            how = f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"killed by signal {-exitcode}"
    else:
        how = f"exited with code {exitcode}"
    return f"the worker process running it died ({how}); the other runs went on in a new worker"


def _salvage(spec: RunSpec, pid: int, outputs: Path) -> dict:
    """Move what a dead worker's run left in staging to ``outputs/_failed/<run>/``."""
    staging = outputs / execute_mod.STAGING
    left = sorted(staging.glob(f"{execute_mod._slug(spec.run_id)}.{pid}.*"))
    failed_dir = outputs / execute_mod.FAILED / spec.run_id
    # Stale outputs of an earlier success must not pass for current ones.
    shutil.rmtree(spec.output_dir, ignore_errors=True)
    if not left:
        return {}
    for extra in left[:-1]:
        shutil.rmtree(extra, ignore_errors=True)
    execute_mod._replace_dir(left[-1], failed_dir)
    return execute_mod._list_outputs(failed_dir, outputs)


def run_pool(specs: list[RunSpec], options: ExecOptions, workers: int,
             on_done: Callable[[RunSpec, dict], None]) -> None:
    """Execute ``specs`` on ``workers`` forked processes; ``on_done`` gets each record as it finishes.

    A worker that dies fails only the run it held, and is replaced. Interrupted (Ctrl-C,
    SIGTERM, an exception in ``on_done``): every worker is stopped and its notebook killed.
    """
    context = multiprocessing.get_context("fork")
    outputs = Path(options.outputs_dir)
    pending = deque(specs)
    pool = [_Worker(context, options) for _ in range(max(1, min(workers, len(specs))))]
    try:
        while pending or any(w.spec is not None for w in pool):
            for worker in pool:
                if worker.spec is None and pending:
                    worker.spec = pending.popleft()
                    try:
                        worker.conn.send(worker.spec)
                    except OSError:
                        pass  # died meanwhile: noticed below through its sentinel
            busy = [w for w in pool if w.spec is not None]
            waitables = {}
            for worker in busy:
                waitables[worker.conn] = worker
                waitables[worker.process.sentinel] = worker
            for ready in wait(list(waitables)):
                worker = waitables[ready]
                if worker.spec is None:
                    continue  # handled through its other handle in this round
                record = None
                try:
                    if worker.conn.poll():
                        record = worker.conn.recv()
                except (EOFError, OSError):
                    record = None
                if record is None and worker.process.is_alive():
                    continue  # the sentinel fired spuriously; nothing to read yet
                spec, worker.spec = worker.spec, None
                if record is None:
                    worker.process.join()
                    pid = worker.process.pid
                    record = infrastructure_failure(spec, options, _death_message(worker.process.exitcode))
                    record["outputs"] = _salvage(spec, pid, outputs)
                    worker.conn.close()
                    pool[pool.index(worker)] = _Worker(context, options)
                on_done(spec, record)
    except BaseException:
        _stop(pool)
        raise
    for worker in pool:
        try:
            worker.conn.send(None)
        except OSError:
            pass
    for worker in pool:
        worker.process.join(timeout=10)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()


def _stop(pool: list[_Worker]) -> None:
    for worker in pool:
        if worker.process.is_alive():
            worker.process.terminate()
    for worker in pool:
        worker.process.join(timeout=10)
        if worker.process.is_alive():
            os.kill(worker.process.pid, signal.SIGKILL)
            worker.process.join()
        worker.conn.close()
