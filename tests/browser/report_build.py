"""Build a small report (demo data, one group, one country, all six chapters) for the output tests.

Used by the browser suite and by ``tests/test_outputs_safety.py``; the build happens once per test
session (a marker file in pytest's session temp folder) and is reused by both.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml

from analysis import config

#: The reduced matrix: every chapter once, for one group and one country of the demo.
GROUP = "persons_with_disabilities"
COUNTRY = "KEN"
DEMO_SOURCES = ["demo_disability", "demo_official_estimates", "demo_population_margins"]


def reduced_report(path: Path, outputs: Path, processed: Path) -> Path:
    """Write a report file with one group × one country and every chapter of params/report.yml
    (including the cross-country geography)."""
    chapters = {
        "data_profile": {"notebook": "notebooks/01_data_profile.ipynb", "title": "Chapter 1 · Data profile",
                         "scope": "per_source_country"},
        "group_profile": {"notebook": "notebooks/02_group_profile.ipynb", "title": "Chapter 2 · Group profile"},
        "intersections": {"notebook": "notebooks/03_intersections.ipynb", "title": "Chapter 3 · Intersections"},
        "geography": {"notebook": "notebooks/04_geography.ipynb", "title": "Chapter 4 · Geography"},
        "geography_across_countries": {"notebook": "notebooks/04_geography.ipynb",
                                       "title": "Chapter 4 · Geography across countries", "scope": "per_group"},
        "official_statistics": {"notebook": "notebooks/05_official_statistics.ipynb",
                                "title": "Chapter 5 · Official statistics and CSO data", "scope": "per_country"},
        "synthesis": {"notebook": "notebooks/06_synthesis.ipynb", "title": "Chapter 6 · Synthesis", "scope": "once",
                      "after": ["data_profile", "group_profile", "intersections", "geography",
                                "geography_across_countries", "official_statistics"]},
    }
    report = {"title": "Test report (synthetic demo data)", "countries": [COUNTRY], "groups": [GROUP],
              "sources": DEMO_SOURCES, "defaults": {"processed_dir": str(processed), "outputs_dir": str(outputs)},
              "chapters": chapters}
    path.write_text(yaml.safe_dump(report, sort_keys=False, allow_unicode=True))
    return path


def build_report(base: Path) -> Path:
    """Ingest the demo sources and run the reduced matrix into ``base/outputs``; return that folder."""
    from analysis.pipeline import cli as pipeline_cli
    from analysis.sources import ingest

    outputs, processed = base / "outputs", base / "processed"
    marker = base / "built.ok"
    if marker.exists():
        return outputs
    processed.mkdir(parents=True, exist_ok=True)
    parser = argparse.ArgumentParser()
    ingest.add_arguments(parser)
    code = ingest.main(parser.parse_args([*DEMO_SOURCES, "--processed", str(processed)]))
    assert code == 0, "ingest of the demo sources failed"
    report = reduced_report(base / "report.yml", outputs, processed)
    parser = argparse.ArgumentParser()
    pipeline_cli.add_arguments(parser)
    code = pipeline_cli.main(parser.parse_args(["--config", str(report), "--processed", str(processed),
                                                "--outputs", str(outputs), "--no-progress",
                                                "--workers", os.environ.get("TEST_REPORT_WORKERS", "2")]))
    assert code == 0, f"python -m analysis run failed on the reduced matrix (see {outputs})"
    marker.write_text("ok")
    return outputs


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
