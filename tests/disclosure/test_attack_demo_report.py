"""The LP attack on the demo report: what ``make report`` publishes leaks no withheld cell.

Reuses the report that the browser tests and ``test_outputs_safety.py`` build once per session
(``tests/browser/report_build.py``), so the suite builds it once. The attacker reads only its
published CSV tables (chapter tables, ``tables/all_estimates.csv``, the synthesis).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from analysis.disclosure import load_thresholds
from analysis.disclosure_attack import attack_published

sys.path.insert(0, str(Path(__file__).parents[1] / "browser"))
from report_build import session_outputs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def outputs_dir(tmp_path_factory) -> Path:
    return session_outputs(tmp_path_factory)


#: Sources whose tables are not yet suppressed by the cross-table plan: the coded free text of the
#: Voices chapter (theme shares get within-table secondary suppression only; with the plan, today's
#: greedy repair withholds every share of a group). A known gap, stated in docs/disclosure.md;
#: the test below shows it is still there, so that closing it is noticed.
NOT_YET_PLANNED = {"demo_voices"}


def test_no_withheld_count_of_the_demo_report_is_narrower_than_the_threshold(outputs_dir):
    limit = load_thresholds().suppress_below
    findings = attack_published(outputs_dir, limit)
    assert len(findings) > 100  # the demo report withholds cells in every source × country
    planned = [f for f in findings if f.source not in NOT_YET_PLANNED]
    narrow = sorted((f for f in planned if f.width < limit - 1e-6), key=lambda f: f.width)
    assert not narrow, [(f.source, f.country, f.indicator, f.population, f.low, f.high)
                        for f in narrow[:5]]
    narrowest = min(findings, key=lambda f: f.width)
    print(f"\n{len(findings)} withheld counts attacked; narrowest interval {narrowest.width:.1f} "
          f"({narrowest.source} {narrowest.country} {narrowest.indicator})")


def test_the_known_gap_of_the_voices_theme_shares_is_still_there(outputs_dir):
    """When the Voices chapter's shares join the plan, this fails: move demo_voices out of
    NOT_YET_PLANNED then (and out of docs/disclosure.md's known gaps)."""
    limit = load_thresholds().suppress_below
    voices = [f for f in attack_published(outputs_dir, limit) if f.source in NOT_YET_PLANNED]
    assert any(f.width < limit - 1e-6 for f in voices)
