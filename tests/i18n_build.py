"""A small report in French and Arabic for the language tests: one chapter, one group, one country.

Ingests only the two demo sources that the group-profile chapter reads for Women in Kenya and runs
``python -m analysis run --run group_profile/women/KEN --lang fr --lang ar`` into a test folder
(built once per test session, reused by the page tests and the browser tests).
"""

from __future__ import annotations

import argparse
from pathlib import Path

RUN_ID = "group_profile/women/KEN"
LANGUAGES = ("fr", "ar")
SOURCES = ("demo_disability", "demo_youth")


def build_languages(base: Path) -> Path:
    """Build the one-run report in French and Arabic under ``base/outputs``; return that folder.

    English is not built (the switch still links it, as the report file lists it): the tests
    never build the whole demo report.
    """
    from analysis.pipeline import cli as pipeline_cli
    from analysis.sources import ingest

    outputs, processed = base / "outputs", base / "processed"
    marker = base / "built.ok"
    if marker.exists():
        return outputs
    processed.mkdir(parents=True, exist_ok=True)
    parser = argparse.ArgumentParser()
    ingest.add_arguments(parser)
    assert ingest.main(parser.parse_args([*SOURCES, "--processed", str(processed)])) == 0
    parser = argparse.ArgumentParser()
    pipeline_cli.add_arguments(parser)
    args = ["--run", RUN_ID, "--processed", str(processed), "--outputs", str(outputs), "--no-progress",
            "--workers", "1"]
    for code in LANGUAGES:
        args += ["--lang", code]
    code = pipeline_cli.main(parser.parse_args(args))
    assert code == 0, f"python -m analysis run {' '.join(args)} failed (see {outputs})"
    marker.write_text("ok")
    return outputs


def session_build(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp() / "i18n_build"
    base.mkdir(parents=True, exist_ok=True)
    return build_languages(base)


def page_path(outputs: Path, code: str) -> Path:
    """The group-profile page of the run in language ``code``."""
    return outputs / code / RUN_ID / "group_profile.html"
