"""Build the demo report — the same run matrix as ``make report`` (``params/report.yml``) — for the output tests.

Used by the browser suite and by ``tests/test_outputs_safety.py``; the build happens once per test
session (a marker file in pytest's session temp folder) and is reused by both. Building the whole
matrix, not a sample of it, is what catches a chapter that fails for one group or country only.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from analysis import config


def demo_sources(report_file: Path = config.REPORT_FILE) -> list[str]:
    """The sources the demo report reads (its ``sources:`` list)."""
    return list(config.read_yaml_mapping(report_file, AssertionError, "report file")["sources"])


def build_report(base: Path, *, sources: list[str] | None = None, runs: list[str] | None = None,
                 languages: list[str] | tuple[str, ...] = (), export: bool = True) -> Path:
    """Ingest the demo sources and run the demo matrix into ``base/outputs``; return that folder.

    ``sources`` (default: the report's), ``runs`` (``--run`` ids; default: the whole matrix) and
    ``languages`` (``--lang`` codes; default: the report file's) narrow the build, e.g. one page in
    every language for the language tests (tests/i18n_build.py); ``export`` also writes the
    exchange files and the page for official statistics offices, as ``make report`` does.
    """
    outputs, processed = base / "outputs", base / "processed"
    marker = base / "built.ok"
    if marker.exists():
        return outputs
    _ingest([*(sources or demo_sources()), "--processed", str(processed)], processed, "the demo sources")
    extra = [arg for run in runs or () for arg in ("--run", run)]
    extra += [arg for lang in languages for arg in ("--lang", lang)]
    _run(config.REPORT_FILE, processed, outputs, extra)
    if export:
        from analysis.exchange import (
            export_report,  # what `make report` runs next: the page the index links
        )

        export_report(outputs, report_file=config.REPORT_FILE, processed_dir=processed,
                      languages=list(languages) or None)
    marker.write_text("ok")
    return outputs


def _ingest(args: list[str], processed: Path, what: str) -> None:
    """``python -m analysis ingest ARGS`` into ``processed``."""
    from analysis.sources import ingest

    processed.mkdir(parents=True, exist_ok=True)
    parser = argparse.ArgumentParser()
    ingest.add_arguments(parser)
    assert ingest.main(parser.parse_args(args)) == 0, f"ingest of {what} failed"


def _run(report_file: Path, processed: Path, outputs: Path, extra: list[str] = ()) -> None:
    """``python -m analysis run`` of ``report_file``'s matrix into ``outputs`` (``extra`` flags
    after the common ones; ``TEST_REPORT_WORKERS`` workers, default 2)."""
    from analysis.pipeline import cli as pipeline_cli

    parser = argparse.ArgumentParser()
    pipeline_cli.add_arguments(parser)
    args = ["--config", str(report_file), "--processed", str(processed), "--outputs", str(outputs),
            "--no-progress", "--workers", os.environ.get("TEST_REPORT_WORKERS", "2"), *extra]
    code = pipeline_cli.main(parser.parse_args(args))
    assert code == 0, f"python -m analysis run {' '.join(args)} failed (see {outputs}/index.html)"


def session_outputs(tmp_path_factory) -> Path:
    """The session's built outputs folder (built on first use).

    ``TEST_REPORT_BUILD=<folder>`` builds into (or reuses) that folder instead of the session's
    temporary folder, to iterate on the browser tests without rebuilding each time.
    """
    chosen = os.environ.get("TEST_REPORT_BUILD")
    base = Path(chosen) if chosen else tmp_path_factory.getbasetemp() / "report_build"
    base.mkdir(parents=True, exist_ok=True)
    return build_report(base)


PROJECT_ROOT = config.PROJECT_ROOT


#: The run matrix of the Household Pulse report (real data from ../shared).
HOUSEHOLD_PULSE_REPORT = config.PROJECT_ROOT / "params" / "report_household_pulse.yml"


def build_household_pulse_report(base: Path, shared_dir: Path) -> Path:
    """Ingest the Household Pulse week-50 file from ``shared_dir/data`` and run its report matrix
    (``params/report_household_pulse.yml``) into ``base/outputs``, as its header says to by hand.

    ``TEST_HOUSEHOLD_PULSE_BUILD=<folder>`` reuses (or builds into) that folder.
    """
    outputs, processed = base / "outputs", base / "processed"
    marker = base / "built.ok"
    if marker.exists():
        return outputs
    _ingest(["household_pulse", "--raw-root", str(shared_dir / "data"), "--processed", str(processed)],
            processed, "household_pulse")
    _run(HOUSEHOLD_PULSE_REPORT, processed, outputs)
    marker.write_text("ok")
    return outputs
