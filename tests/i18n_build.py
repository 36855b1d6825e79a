"""A small report in every language but English for the language tests: one chapter, one group,
one country.

Ingests only the two demo sources that the group-profile chapter reads for Women in Kenya and runs
``python -m analysis run --run group_profile/women/KEN --lang fr --lang es ...`` into a test folder
through the demo report's own build (``tests/browser/report_build.py``'s ``build_report``, with a
run and languages; built once per test session, reused by the page tests and the browser tests).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "browser"))  # the demo report's build (report_build)

from report_build import build_report

RUN_ID = "group_profile/women/KEN"
LANGUAGES = ("fr", "es", "ar", "pt", "ru", "zh")
SOURCES = ("demo_disability", "demo_youth")


def build_languages(base: Path) -> Path:
    """Build the one-run report in every language but English under ``base/outputs``; return it.

    English is not built (the switch still links it, as the report file lists it): the tests
    never build the whole demo report.
    """
    # the page for official statistics offices needs the English build's estimates: its languages
    # are tested on their own (tests/test_i18n_exchange.py)
    return build_report(base, sources=list(SOURCES), runs=[RUN_ID], languages=LANGUAGES, export=False)


def session_build(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp() / "i18n_build"
    base.mkdir(parents=True, exist_ok=True)
    return build_languages(base)


def page_path(outputs: Path, code: str) -> Path:
    """The group-profile page of the run in language ``code``."""
    return outputs / code / RUN_ID / "group_profile.html"
