"""Run the report notebooks for the run matrix and render outputs/ (``python -m analysis run``).

Examples::

    python -m analysis run                         # everything that changed, one worker per core
    python -m analysis run --dry-run               # what would run, and why
    python -m analysis run --chapter group_profile --country KEN --force
    python -m analysis run --scheduler tcp://10.0.0.5:8786     # on a Dask cluster
    python -m analysis run --config params/report_household_pulse.yml
    python -m analysis run --lang fr --lang ar      # French at outputs/fr/, Arabic at outputs/ar/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.pipeline.matrix import MatrixError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="report file (default: params/report.yml)")
    parser.add_argument("--chapter", action="append", default=[], help="only this chapter (repeatable)")
    parser.add_argument("--group", action="append", default=[], help="only this group id (repeatable)")
    parser.add_argument("--country", action="append", default=[], help="only this ISO3 country (repeatable)")
    parser.add_argument("--run", action="append", default=[], dest="run_ids", metavar="RUN_ID",
                        help="only this run, e.g. group_profile/women/KEN (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="list what would run and why; execute nothing")
    parser.add_argument("--force", action="store_true", help="re-run the selected runs even if unchanged")
    parser.add_argument("--workers", type=int, default=None, help="parallel runs (default: one per core)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler address: run on that cluster instead of locally")
    parser.add_argument("--engine", choices=["fork", "papermill"], default=None,
                        help="fork: fresh IPython shell in a forked worker (fast, default); "
                             "papermill: real papermill with the 'analysis' Jupyter kernel")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run (overrides the report file)")
    parser.add_argument("--processed", default=None, help="processed data folder (default from the report file)")
    parser.add_argument("--outputs", default=None, help="outputs folder (default from the report file)")
    parser.add_argument("--no-progress", action="store_true", help="plain lines instead of a progress bar")
    parser.add_argument("--lang", action="append", default=[], dest="languages", metavar="LANG",
                        help="render the report in this language (repeatable; codes of "
                             "params/i18n/languages.yml; default: the report file's languages, "
                             "[en]); English at outputs/, another at outputs/<lang>/")
    parser.add_argument("--print", action="store_true", dest="print_build",
                        help="print build: every figure also as a PNG at 300 dpi (for report writers)")
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="write a cProfile of every run (its cells, disclosure gate and HTML) to "
                             "DIR/<run id>.pstats; the run keys do not change")


def main(args: argparse.Namespace) -> int:
    import signal
    import threading

    from analysis.atomic import as_write_error
    from analysis.pipeline.lock import FolderBusy
    from analysis.pipeline.pool import raise_interrupt
    from analysis.pipeline.runner import OutputsBusy, run_pipeline

    # SIGTERM (e.g. a CI job cancelled) unwinds like Ctrl-C: running notebooks are killed,
    # the manifest keeps every finished run, and nothing half-written is left in place.
    in_main_thread = threading.current_thread() is threading.main_thread()
    if args.print_build:
        import os

        from analysis.config import FIGURE_FORMATS_ENV

        os.environ[FIGURE_FORMATS_ENV] = "svg,png"  # inherited by every run; part of the run key
    if getattr(args, "profile", None):
        import os

        from analysis.pipeline.execute import PROFILE_ENV

        os.environ[PROFILE_ENV] = str(Path(args.profile).resolve())  # inherited by every run's child
    previous = signal.signal(signal.SIGTERM, raise_interrupt) if in_main_thread else None
    try:
        exit_code = 0
        codes, switch = _languages(args)
        for code in codes:
            if len(codes) > 1:
                print(f"language {code}:", flush=True)
            outcome = run_pipeline(
                args.config, chapters=args.chapter, groups=args.group, countries=args.country, run_ids=args.run_ids,
                force=args.force, dry_run=args.dry_run, workers=args.workers, scheduler=args.scheduler,
                engine=args.engine, processed_dir=args.processed, outputs_dir=args.outputs,
                timeout=args.timeout, progress=False if args.no_progress else None,
                language=code, switch=switch,
            )
            exit_code = max(exit_code, outcome.exit_code)
    except (MatrixError, OutputsBusy, FolderBusy) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A full disk, a quota, a read-only or foreign folder: one line with the path, no traceback.
        problem = as_write_error(exc)
        if problem is None:
            raise
        print(f"error: {problem}; runs that finished are kept in the manifest", file=sys.stderr)
        return 2
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return exit_code


def _languages(args) -> tuple[list[str], list[str]]:
    """The languages to build now (``--lang``, else the report file's ``languages``) and the
    languages every page's switch links (the report file's, plus those built now)."""
    from analysis import config
    from analysis.pipeline.languages import check_languages

    # Only the `languages:` key here: the whole report file is validated by run_pipeline, against
    # the project root it is given (a report outside this checkout has its notebooks elsewhere).
    path = Path(args.config) if args.config else config.REPORT_FILE
    configured = config.read_yaml_mapping(path, MatrixError, "report file").get("languages") or ["en"]
    if not isinstance(configured, list):
        raise MatrixError(f"{path}: key 'languages': a list of language codes, e.g. [en, fr]")
    check_languages(configured, f"{args.config or 'params/report.yml'}: key 'languages'")
    codes = check_languages(getattr(args, "languages", None) or configured, "--lang")
    return codes, check_languages([*configured, *codes], "--lang")
