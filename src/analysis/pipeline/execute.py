"""One unit of work: execute one notebook with one parameter set, in its own process.

:func:`execute_run` is the unit that every scheduler calls (serial loop, local process pool,
Dask worker). It forks a child process per run; the child

1. injects the parameters with papermill's ``parameterize_notebook`` (so the injected cell is
   exactly papermill's, tagged ``injected-parameters``),
2. executes the notebook — by default (``engine="fork"``) in a fresh IPython
   ``InteractiveShell`` created in the child, capturing stdout/stderr, display data (incl.
   matplotlib inline figures and HTML), execution results and errors as nbformat outputs; or,
   with ``engine="papermill"``, with real papermill and the project's Jupyter kernel
   (fidelity checks),
3. runs the disclosure output gate on every table the run wrote,
4. writes the executed ``.ipynb`` and the reviewer HTML,

all into a staging folder, while its stdout/stderr (file descriptors 1 and 2) go to ``run.log``.
The parent enforces the timeout (kills the child's process group), detects a child killed by a
signal, and only then moves the staging folder into place with a rename: a run that dies leaves
nothing that looks complete (its staging folder goes to ``outputs/_failed/<run>/``).

Why fork: importing pandas, matplotlib, seaborn, statsmodels and geopandas costs seconds of
CPU per fresh interpreter. The worker imports them once (:func:`preload`); each fork starts
from that state with a new shell and an empty namespace, so every run still starts clean (no
variables, figures or rc settings carried over from another run) at a cost of milliseconds.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.pipeline.manifest import now
from analysis.pipeline.matrix import RunSpec

#: Modules a worker imports once before forking runs (the fixed cost of a fresh kernel).
HEAVY_MODULES = (
    "numpy", "pandas", "scipy.stats", "pyarrow.parquet", "matplotlib", "matplotlib.pyplot",
    "matplotlib_inline.backend_inline", "seaborn", "statsmodels.api", "statsmodels.formula.api",
    "geopandas", "shapely", "pyogrio", "yaml", "pydantic", "nbformat", "nbconvert", "papermill",
    "IPython.core.interactiveshell", "IPython.display", "jinja2", "pycountry",
)
#: Project modules imported once too; a broken one only fails the runs that import it.
PROJECT_MODULES = (
    "analysis", "analysis.config", "analysis.tables", "analysis.schema", "analysis.sources",
    "analysis.survey", "analysis.gaps", "analysis.models", "analysis.weighting",
    "analysis.disclosure", "analysis.figures", "analysis.chapters",
    "analysis.pipeline.render",
)

STAGING = ".staging"
FAILED = "_failed"
#: When set (``python -m analysis run --profile DIR``), every run's child writes a cProfile of its
#: execution, gate and HTML to ``DIR/<run id with / as __>.pstats`` (read with ``pstats``).
PROFILE_ENV = "ANALYSIS_PROFILE_DIR"
#: Seconds a timed-out run gets to write its partial notebook before it is killed.
TIMEOUT_GRACE = 10.0


class RunTimedOut(Exception):
    """Raised inside a run's process when the parent says its time is up (SIGUSR1)."""
_PRELOADED: dict[str, Any] = {}
_T0 = [0.0]  # when the current run forked (for the timing lines in run.log)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class ExecOptions:
    """How to execute runs (plain types: pickles to process-pool and Dask workers).

    ``code_hash`` is the hash of ``src/analysis`` the run keys were computed with; a long-lived
    worker that preloaded other code re-imports the project modules in the child.
    ``render`` holds what the reviewer HTML shows besides the notebook (labels, footer).
    """

    outputs_dir: str
    engine: str = "fork"
    kernel_name: str = "analysis"
    code_hash: str = ""
    render: dict = field(default_factory=dict)
    gate: bool = True
    #: environment variables of the run's process (its language: analysis.pipeline.languages)
    environment: dict = field(default_factory=dict)


def preload(modules: tuple[str, ...] = HEAVY_MODULES + PROJECT_MODULES, code_hash: str = "") -> dict:
    """Import the heavy modules once in this (worker) process; return what loaded and how long.

    Idempotent. Import errors are recorded, not raised: a run that needs a broken module fails
    in its own child with the real traceback.
    """
    if _PRELOADED:
        return _PRELOADED
    import importlib

    start = time.perf_counter()
    failed = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - recorded and re-raised in the child if needed
            failed[name] = f"{type(exc).__name__}: {exc}"
    try:
        import matplotlib

        matplotlib.use("agg")  # no GUI in a worker; the child switches to the inline backend
        _warm_up()
    except Exception as exc:  # noqa: BLE001
        failed["warm-up"] = f"{type(exc).__name__}: {exc}"
    _PRELOADED.update(seconds=time.perf_counter() - start, failed=failed, code_hash=code_hash)
    return _PRELOADED


def _warm_up() -> None:
    """Pay once, in the worker, the first-use costs every run would otherwise pay after forking.

    Drawing a figure (fonts, PNG and SVG writers), resolving the inline backend (entry points),
    the IPython modules a new shell imports, and one HTML export (templates, CSS, sanitiser
    regexes) are cached per process and inherited by every fork. No shell and no figure remain:
    a run's child still starts from a clean state.
    """
    import importlib
    import io

    import matplotlib.pyplot as plt
    import nbformat
    from matplotlib.backends.registry import backend_registry
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    for name in ("IPython.core.completer", "IPython.core.magics", "IPython.core.magics.execution",
                 "IPython.core.history", "IPython.core.pylabtools", "matplotlib.backends.backend_svg",
                 "pyarrow.pandas_compat", "pandas.io.parquet"):
        importlib.import_module(name)
    backend_registry.resolve_gui_or_backend("inline")
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.bar(["a", "b"], [1, 2])
    ax.set_title("warm-up 0–100 %")
    for fmt in ("png", "svg"):
        fig.savefig(io.BytesIO(), format=fmt)
    plt.close(fig)
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    nb = new_notebook(cells=[
        new_markdown_cell("# Warm-up\n\nText with a [link](https://example.org) and a table:\n\n| a | b |\n|---|---|\n| 1 | 2 |"),
        new_code_cell("x", outputs=[
            new_output("stream", name="stdout", text="text\n"),
            new_output("display_data", data={"text/html": "<table><tr><th>a</th></tr></table>",
                                             "text/plain": "table"}),
            new_output("display_data", data={"image/png": png, "text/plain": "figure"}),
        ]),
    ])
    from analysis.pipeline.render import CONTENT_SECURITY_POLICY, _exporter

    # the reviewer template reads the run's frame (resources["run"]): a minimal one, every word empty
    resources = {"metadata": {"name": "warm-up"},
                 "run": {"parameters": [("country", "KEN")], "status": "ok", "words": {}, "error": None,
                         "sources": [{"title": "warm-up"}], "synthetic": True, "index_href": "index.html",
                         "csp": CONTENT_SECURITY_POLICY, "switch": [], "notice": None}}
    _exporter().from_notebook_node(nbformat.from_dict(nb), resources=resources)


# --------------------------------------------------------------------------------------------
# The parent side: fork, watch, time out, move into place


def _slug(run_id: str) -> str:
    return run_id.replace("/", "__")


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst`` replacing it; each step is a rename on one file system."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    trash = None
    if dst.exists():
        trash = dst.with_name(f".{dst.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        dst.rename(trash)
    src.rename(dst)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def execute_run(run: RunSpec | dict, options: ExecOptions | dict) -> dict:
    """Execute one run in a child process and return its run record (a JSON-able dict).

    Parameters
    ----------
    run : RunSpec
        The run; ``run.parameters`` must be the resolved parameters (see
        :func:`analysis.pipeline.matrix.check_parameters`).
    options : ExecOptions
        Engine, outputs folder and rendering context.

    Returns
    -------
    dict
        ``status`` ("ok" | "failed"), ``failure`` (None | "exception" | "timeout" | "killed" |
        "disclosure" | "internal"), ``error`` (message, failing cell index and source), ``duration``
        (wall seconds), ``cells_seconds`` (time inside cells), ``outputs`` (paths relative to the
        outputs folder), timestamps and the child's pid.
    """
    if isinstance(run, dict):
        run = RunSpec(**run)
    if isinstance(options, dict):
        options = ExecOptions(**options)
    if options.engine == "fork":
        preload(code_hash=options.code_hash)
    outputs = Path(options.outputs_dir)
    staging = outputs / STAGING / f"{_slug(run.run_id)}.{os.getpid()}.{time.monotonic_ns()}"
    staging.mkdir(parents=True)
    started = time.perf_counter()
    started_at = now()
    read_fd, write_fd = os.pipe()
    _T0[0] = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        code = 70
        try:
            os.close(read_fd)
            code = _child(run, options, staging, write_fd)
        except BaseException as exc:  # noqa: BLE001 - the child must never return into the parent's code
            try:
                _send(write_fd, {"event": "crash", "message": f"{type(exc).__name__}: {exc}".splitlines()[0],
                                 **_write_error_fields(exc)})
                os.write(2, traceback.format_exc().encode())
            except BaseException:  # noqa: BLE001, S110 - e.g. the disk is full: the exit code still tells
                pass
            finally:
                code = 70
        finally:
            os._exit(code)

    os.close(write_fd)
    try:
        events, exit_status, timed_out = _watch(pid, read_fd, run.timeout)
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM, a cancelled task): the run must not outlive us.
        _kill_group(pid)
        try:
            os.waitpid(pid, 0)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    duration = time.perf_counter() - started
    result = next((e for e in reversed(events) if e.get("event") == "result"), None)
    last_cell = next((e for e in reversed(events) if e.get("event") == "cell"), None)
    record: dict[str, Any] = {
        "run_id": run.run_id, "status": "failed", "failure": None, "error": None,
        "started_at": started_at, "finished_at": now(), "duration": round(duration, 3),
        "cells_seconds": None, "pid": pid, "engine": options.engine, "outputs": {},
    }
    if timed_out:
        record["failure"] = "timeout"
        record["error"] = _error(f"timed out after {run.timeout:g} s (killed)", last_cell)
        if result is None:
            # Killed before it could write its notebook: keep the cells as they were planned.
            _write_unexecuted(run, staging, options, record["error"])
    elif os.WIFSIGNALED(exit_status):
        name = signal.Signals(os.WTERMSIG(exit_status)).name
        record["failure"] = "killed"
        record["error"] = _error(f"the run's process was killed by {name}", last_cell)
    elif result is None:
        record["failure"] = "internal"
        crash = next((e for e in reversed(events) if e.get("event") == "crash"), None)
        log = staging / "run.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        if crash is not None:
            tail = [crash["message"]]
        record["error"] = _error(f"the run's process exited with code {os.WEXITSTATUS(exit_status)} "
                                 f"without a result{': ' + tail[0] if tail else ''}", last_cell)
        if crash is not None and crash.get("errno"):
            record["error"].update(errno=crash["errno"], path=crash.get("path"))
    else:
        record.update({k: result[k] for k in ("status", "failure", "error", "cells_seconds", "disclosure_gate")
                       if k in result})

    run_dir = Path(run.output_dir)
    failed_dir = outputs / FAILED / run.run_id
    for name in ("message", "path"):  # name the run's folder, not the staging one
        if isinstance((record["error"] or {}).get(name), str):
            record["error"][name] = record["error"][name].replace(str(staging), str(run_dir))
    if record["status"] == "ok":
        _replace_dir(staging, run_dir)
        shutil.rmtree(failed_dir, ignore_errors=True)
        record["outputs"] = _list_outputs(run_dir, outputs)
    else:
        # Stale outputs of an earlier success must not pass for current ones.
        shutil.rmtree(run_dir, ignore_errors=True)
        _replace_dir(staging, failed_dir)
        record["outputs"] = _list_outputs(failed_dir, outputs)
    return record


def _error(message: str, cell_event: dict | None) -> dict:
    return {
        "message": message,
        "cell_index": cell_event.get("index") if cell_event else None,
        "cell_source": cell_event.get("source") if cell_event else None,
    }


def _watch(pid: int, read_fd: int, timeout: float) -> tuple[list[dict], int, bool]:
    """Collect the child's event lines until it exits; kill its process group on timeout."""
    deadline = time.monotonic() + timeout
    events: list[dict] = []
    buffer = b""
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    open_fds = [read_fd] + ([pidfd] if pidfd is not None else [])
    timed_out = False
    reaped = False
    status = None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not timed_out:
                # First ask the child to stop the running cell (SIGUSR1 raises RunTimedOut in it),
                # so that it writes its partial notebook and HTML; kill it if it does not in time.
                timed_out = True
                try:
                    os.kill(pid, signal.SIGUSR1)
                except ProcessLookupError:
                    pass
                deadline = time.monotonic() + TIMEOUT_GRACE
                continue
            if remaining <= 0:
                _kill_group(pid)
                break
            wait = min(remaining, 0.05 if pidfd is None else remaining)
            ready, _, _ = select.select(open_fds, [], [], wait)
            if read_fd in ready:
                chunk = os.read(read_fd, 65536)
                if chunk:
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    events += [json.loads(line) for line in lines if line.strip()]
                else:
                    open_fds.remove(read_fd)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                reaped = True
                break
            if pidfd is None and read_fd not in open_fds:
                time.sleep(0.01)
        # Drain what the child wrote before exiting.
        if read_fd in open_fds:
            while True:
                ready, _, _ = select.select([read_fd], [], [], 0)
                if not ready:
                    break
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                buffer += chunk
            events += [json.loads(line) for line in buffer.split(b"\n") if line.strip()]
        if not reaped:
            _, status = os.waitpid(pid, 0)
        if timed_out:
            _kill_group(pid)  # whatever the run started is stopped too
    finally:
        os.close(read_fd)
        if pidfd is not None:
            os.close(pidfd)
    return events, status, timed_out


def _kill_group(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
            return
        except (ProcessLookupError, PermissionError):
            continue


def _list_outputs(folder: Path, outputs: Path) -> dict:
    def rel(paths):
        return sorted(str(p.relative_to(outputs)) for p in paths if p.is_file())

    return {
        "folder": str(folder.relative_to(outputs)),
        "notebook": rel(folder.glob("*.ipynb")),
        "html": rel(folder.glob("*.html")),
        "log": rel(folder.glob("run.log")),
        "tables": rel(folder.glob("tables/**/*.csv")),
        "figures": rel(p for p in folder.glob("figures/**/*") if p.suffix in {".png", ".svg", ".pdf"}),
    }


# --------------------------------------------------------------------------------------------
# The child side


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child if the worker that forked it dies (no orphaned runs)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the parent's timeout and interrupt handling still apply
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(70)


def _send(fd: int, event: dict) -> None:
    os.write(fd, (json.dumps(event, default=str) + "\n").encode())


def _child(run: RunSpec, options: ExecOptions, staging: Path, event_fd: int) -> int:
    """Run in the forked child: execute, gate, write notebook and HTML into ``staging``."""
    os.setsid()  # own process group: a timeout kills everything the run started
    _die_with_parent()
    log = os.open(staging / "run.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    if options.code_hash and _PRELOADED.get("code_hash") not in ("", options.code_hash):
        # A long-lived worker preloaded older project code: import it afresh in this child.
        for name in [m for m in sys.modules if m == "analysis" or m.startswith("analysis.")]:
            if not name.startswith("analysis.pipeline"):
                del sys.modules[name]
    _disclosure_environment(options)
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    from papermill.translators import translate_parameters

    if "matplotlib" in sys.modules:
        # rc settings changed in the process that forked us (e.g. a test session) must not reach the run.
        import matplotlib

        matplotlib.rcParams.update({k: v for k, v in matplotlib.rcParamsOrig.items() if k != "backend"})

    def time_is_up(signum, frame):
        raise RunTimedOut(f"timed out after {run.timeout:g} s")

    signal.signal(signal.SIGUSR1, time_is_up)
    from analysis.pipeline.languages import apply_environment

    apply_environment(options.environment)  # the run's language: its texts and catalogue
    logical = dict(run.parameters)
    executed_params = dict(logical, output_dir=str(staging))
    notebook_path = Path(run.notebook)
    os.chdir(notebook_path.parent)  # as in JupyterLab: relative paths resolve from the notebook
    nb = load_notebook_node(str(notebook_path))  # as papermill reads it (every cell gets metadata.tags)
    name = notebook_path.stem if run.chapter is None else run.chapter
    out_ipynb = staging / f"{name}.ipynb"
    print(f"run {run.run_id}: {notebook_path} with {json.dumps(logical, default=str)}", flush=True)

    print(f"timing: child ready {time.perf_counter() - _T0[0]:.3f}s after fork", flush=True)
    profiler = _start_profile()
    start = time.perf_counter()
    if options.engine == "papermill":
        nb, error, cells_seconds = _execute_papermill(notebook_path, out_ipynb, executed_params, options)
    else:
        nb = parameterize_notebook(nb, executed_params, kernel_name=options.kernel_name, language="python")
        error, cells_seconds = _execute_in_shell(nb, lambda ev: _send(event_fd, ev))
    total = time.perf_counter() - start
    # From here on a late timeout waits for the notebook and HTML (the parent kills after a grace).
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    print(f"timing: executed in {total:.3f}s ({cells_seconds:.3f}s inside cells)", flush=True)

    # Show the logical parameters and the final output folder, not the staging path.
    _replace_in_outputs(nb, str(staging), str(run.output_dir))
    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = translate_parameters(options.kernel_name, "python", logical, "Parameters")
    nb.metadata.setdefault("papermill", {})
    nb.metadata.papermill.update(parameters=logical, input_path=str(notebook_path),
                                 output_path=str(Path(run.output_dir) / out_ipynb.name),
                                 duration=round(total, 3),
                                 exception=error is not None)

    failure = "exception" if error else None
    gate = {}
    if error is None and options.gate:
        gate_error, gate = _disclosure_gate(staging, options.render.get("disclosure"))
        if gate_error:
            failure, error = "disclosure", {"message": gate_error, "cell_index": None, "cell_source": None}

    import nbformat

    from analysis.atomic import write_atomic

    write_atomic(out_ipynb, nbformat.writes(nb))
    try:
        from analysis.pipeline.render import render_run_html

        render_run_html(nb, run, options.render, staging, staging / f"{name}.html",
                        status="ok" if error is None else "failed", error=error)
    except Exception as exc:  # noqa: BLE001 - the run itself may be fine; say why HTML is missing
        traceback.print_exc()
        if error is None:
            failure = "internal"
            error = {"message": f"rendering HTML failed: {type(exc).__name__}: {exc}",
                     "cell_index": None, "cell_source": None, **_write_error_fields(exc)}
    print(f"timing: gate, notebook and HTML written {time.perf_counter() - start - total:.3f}s", flush=True)
    _save_profile(profiler, run)
    _send(event_fd, {"event": "result", "status": "ok" if error is None else "failed",
                     "failure": failure, "error": error, "cells_seconds": round(cells_seconds, 3),
                     "disclosure_gate": gate})
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


def _start_profile():
    """A running cProfile profiler when :data:`PROFILE_ENV` names a folder, else None."""
    if not os.environ.get(PROFILE_ENV):
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _save_profile(profiler, run: RunSpec) -> None:
    if profiler is None:
        return
    profiler.disable()
    folder = Path(os.environ[PROFILE_ENV])
    folder.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(str(folder / f"{_slug(run.run_id)}.pstats"))
    print(f"timing: profile written to {folder / (_slug(run.run_id) + '.pstats')}", flush=True)


def _write_error_fields(exc: BaseException | None) -> dict:
    """``errno`` and ``path`` of an error that means "this folder cannot take a file", else {}."""
    from analysis.atomic import as_write_error

    found = as_write_error(exc) if exc is not None else None
    return {"errno": found.errno_name, "path": found.path} if found is not None else {}


def _write_unexecuted(run: RunSpec, staging: Path, options: ExecOptions, error: dict) -> None:
    """For a run killed before it wrote anything: its notebook with the parameters injected and
    a first cell saying where it stopped, so that ``outputs/_failed/<run>/`` holds a notebook."""
    try:
        import nbformat
        from papermill.parameterize import parameterize_notebook

        from analysis.atomic import write_atomic

        nb = nbformat.read(run.notebook, as_version=4)
        for cell in nb.cells:
            cell.setdefault("metadata", {}).setdefault("tags", [])
        nb = parameterize_notebook(nb, dict(run.parameters), kernel_name=options.kernel_name, language="python")
        cell = error.get("cell_index")
        where = f" while cell {cell} was running" if cell is not None else ""
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(
            f"**This run was stopped: {error['message']}{where}.** It was killed before it could save "
            "its outputs; the cells below are the notebook as it was run, without outputs."))
        name = Path(run.notebook).stem if run.chapter is None else run.chapter
        write_atomic(staging / f"{name}.ipynb", nbformat.writes(nb))
    except Exception:  # noqa: BLE001 - the run already failed; its record says why
        traceback.print_exc()


def _replace_in_outputs(nb, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in every text of every cell output (not in images)."""

    def fix(value):
        if isinstance(value, str):
            return value.replace(old, new)
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = fix(output["text"])
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/") or mime.endswith("json"):
                    output["data"][mime] = fix(value)
            if "evalue" in output:
                output["evalue"] = fix(output["evalue"])
                output["traceback"] = fix(output.get("traceback", []))


def _disclosure_environment(options: ExecOptions) -> None:
    """The run's own disclosure thresholds (from its ``--config``) and the folder of cached
    suppression plans, for ``analysis.disclosure.protect`` inside the notebook (a papermill
    kernel inherits them too)."""
    thresholds = options.render.get("disclosure")
    if thresholds:
        os.environ["ANALYSIS_DISCLOSURE_THRESHOLDS"] = json.dumps(thresholds)
    os.environ.setdefault("ANALYSIS_DISCLOSURE_CACHE",
                          str(Path(options.outputs_dir) / ".disclosure_plans"))


def _disclosure_gate(folder: Path, thresholds: dict | None = None) -> tuple[str | None, dict]:
    """Run ``analysis.disclosure.assert_publishable`` on every table the run wrote.

    Tables with ``flag`` and ``n_unweighted`` columns (the result schema) are checked with the
    report's thresholds; other CSV files cannot be checked for small cells and are listed as
    such in the run record (their content is the chapter's responsibility).

    Returns the one-line reason a table may not be published (else None) and what was checked.
    """
    import pandas as pd

    tables = sorted(folder.glob("tables/**/*.csv"))
    report = {"checked": [], "not_checked": []}
    if not tables:
        return None, report
    from analysis.disclosure import assert_publishable

    for path in tables:
        name = str(path.relative_to(folder))
        frame = pd.read_csv(path, keep_default_na=True, low_memory=False)
        if not {"flag", "n_unweighted"} <= set(frame.columns):
            report["not_checked"].append(name)
            continue
        try:
            assert_publishable(frame, thresholds=thresholds, name=name)
        except Exception as exc:  # noqa: BLE001 - any refusal fails the run with the reason
            return f"disclosure gate refused {exc}", report
        report["checked"].append(name)
    # The independent last check: the LP attack on every withheld count of the run's tables.
    try:
        from analysis.disclosure_attack import attack_published
    except ImportError:
        return None, report
    limit = int((thresholds or {}).get("suppress_below", 25))
    narrow = [f for f in attack_published(folder, limit) if f.width < limit - 1e-6]
    if narrow:
        worst = min(narrow, key=lambda f: f.width)
        return (f"disclosure gate refused the run's tables: {len(narrow)} withheld cell(s) can be "
                f"bounded from the published ones to an interval narrower than {limit} "
                f"(narrowest: {worst.indicator} of {worst.source} {worst.country}, width "
                f"{worst.width:.1f}); protect them with analysis.disclosure.protect"), report
    return None, report


def _execute_papermill(notebook_path: Path, out_ipynb: Path, params: dict, options: ExecOptions):
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    error = None
    try:
        papermill.execute_notebook(str(notebook_path), str(out_ipynb), parameters=params,
                                   kernel_name=options.kernel_name, cwd=str(notebook_path.parent),
                                   progress_bar=False, log_output=True)
    except PapermillExecutionError as exc:
        error = {"message": f"{exc.ename}: {exc.evalue}", "cell_index": exc.cell_index,
                 "cell_source": (exc.source or "")[:500]}
        # run.log (this process's stderr) holds the whole traceback, as with the fork engine.
        trace = _ANSI.sub("", "\n".join(exc.traceback or []))
        print(f"\nerror in cell {exc.cell_index}: {error['message']}\n{trace}", file=sys.stderr, flush=True)
    nb = nbformat.read(out_ipynb, as_version=4)
    cells_seconds = sum(float(c.metadata.get("papermill", {}).get("duration") or 0) for c in nb.cells)
    return nb, error, cells_seconds


# --------------------------------------------------------------------------------------------
# Executing a notebook in an IPython InteractiveShell (in the forked child)


class _Sink:
    """The outputs of the cell being executed, as nbformat output nodes."""

    def __init__(self):
        self.outputs: list = []
        self.log = None

    def stream(self, name: str, text: str) -> None:
        from nbformat.v4 import new_output

        if not text:
            return
        if self.outputs and self.outputs[-1].get("output_type") == "stream" and self.outputs[-1].name == name:
            self.outputs[-1].text += text
        else:
            self.outputs.append(new_output("stream", name=name, text=text))


_SINK = _Sink()


class _CellStream:
    """``sys.stdout``/``sys.stderr`` during a cell: into the notebook and into run.log."""

    def __init__(self, name: str, log):
        self.name = name
        self._log = log
        self.encoding = "utf-8"

    def write(self, text: str) -> int:
        _SINK.stream(self.name, text)
        self._log.write(text)
        return len(text)

    def flush(self) -> None:
        self._log.flush()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


def _jsonable_data(data: dict) -> dict:
    """Display data as nbformat stores it: binary images base64-encoded."""
    out = {}
    for mime, value in (data or {}).items():
        if isinstance(value, (bytes, bytearray)):
            value = base64.b64encode(value).decode("ascii") if not mime.startswith("text/") else value.decode()
        out[mime] = value
    return out


def _make_shell():
    """A fresh IPython shell whose display machinery writes nbformat outputs into :data:`_SINK`."""
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from nbformat.v4 import new_output
    from traitlets.config import Config

    class NotebookPublisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            _SINK.outputs.append(new_output("display_data", data=_jsonable_data(data), metadata=metadata or {}))

        def clear_output(self, wait=False):
            _SINK.outputs.clear()

    class NotebookDisplayHook(DisplayHook):
        def start_displayhook(self):
            self._format = ({}, {})

        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            self._format = (format_dict, md_dict or {})

        def finish_displayhook(self):
            data, metadata = self._format
            _SINK.outputs.append(new_output("execute_result", data=_jsonable_data(data),
                                            metadata=metadata, execution_count=self.prompt_count))

    class NotebookShell(InteractiveShell):
        last_error: dict | None = None

        def _showtraceback(self, etype, evalue, stb):
            _SINK.outputs.append(new_output("error", ename=getattr(etype, "__name__", str(etype)),
                                            evalue=str(evalue), traceback=list(stb)))
            self.last_error = {"ename": getattr(etype, "__name__", str(etype)), "evalue": str(evalue),
                               "traceback": _ANSI.sub("", "\n".join(stb))}

        def enable_gui(self, gui=None):
            pass

    cfg = Config()
    cfg.HistoryManager.enabled = False  # no shared sqlite history between concurrent runs
    shell = NotebookShell.instance(config=cfg, display_pub_class=NotebookPublisher,
                                   displayhook_class=NotebookDisplayHook)
    shell.enable_matplotlib("inline")
    return shell


def _execute_in_shell(nb, send) -> tuple[dict | None, float]:
    """Execute the code cells of ``nb`` in a fresh shell, filling outputs like papermill does.

    Stops at the first error (unless the cell is tagged ``raises-exception``). Returns the error
    (message, cell index and source) or None, and the seconds spent inside cells.
    """
    log = sys.stdout
    shell = _make_shell()
    streams = (_CellStream("stdout", log), _CellStream("stderr", log))
    error = None
    cells_seconds = 0.0
    meta_all = nb.metadata.setdefault("papermill", {})
    meta_all.update(start_time=now(), environment_variables={}, version=_papermill_version())
    for index, cell in enumerate(nb.cells):
        cell.metadata["papermill"] = {"exception": None, "start_time": None, "end_time": None,
                                      "duration": None, "status": "pending"}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if error is not None:
            continue
        send({"event": "cell", "index": index, "source": cell.source[:300]})
        _SINK.outputs = []
        shell.last_error = None
        sys.stdout, sys.stderr = streams
        started_at, started = now(), time.perf_counter()
        try:
            result = shell.run_cell(cell.source, store_history=True)
        finally:
            sys.stdout, sys.stderr = log, log
        seconds = time.perf_counter() - started
        cells_seconds += seconds
        cell.outputs = _SINK.outputs
        cell.execution_count = shell.execution_count - 1
        failed = not result.success and "raises-exception" not in cell.metadata.get("tags", [])
        cell.metadata["papermill"] = {"exception": failed, "start_time": started_at, "end_time": now(),
                                      "duration": round(seconds, 3), "status": "failed" if failed else "completed"}
        if failed:
            exc = result.error_in_exec or result.error_before_exec
            message = (f"{type(exc).__name__}: {exc}" if exc is not None
                       else (shell.last_error or {}).get("evalue", "error"))
            trace = (shell.last_error or {}).get("traceback", "")
            error = {"message": message, "cell_index": index, "cell_source": cell.source[:500],
                     "traceback": trace[-4000:], **_write_error_fields(exc)}
            # run.log is what a reviewer opens first: it holds the whole traceback too.
            log.write(f"\nerror in cell {index}: {message}\n{trace}\n")
            log.flush()
    meta_all.update(end_time=now(), duration=round(cells_seconds, 3))
    import matplotlib.pyplot as plt

    plt.close("all")
    return error, cells_seconds


def _papermill_version() -> str:
    try:
        import papermill

        return papermill.__version__
    except Exception:  # noqa: BLE001
        return ""
