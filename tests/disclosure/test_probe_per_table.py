"""The attack catches per-table suppression (the report before issue 10) on the probe report.

The probe report is built once more with cross-table suppression switched off
(``ANALYSIS_DISCLOSURE_CROSS_TABLE=off``: every table protected on its own, as before). The
attacker, holding every published CSV file, then recovers withheld cells — the issue's four
examples among them — and the same cells stay protected in the default build
(``probe_report``).
"""

from __future__ import annotations

import pytest

from analysis.disclosure_attack import attack_published

LIMIT = 25

pytestmark = pytest.mark.slow  # builds the probe report twice with the chapter code

#: The issue's examples, as populations of the probe (Kenya, food insecurity).
EXAMPLES = {
    # stacked breakdowns of one intersections table: one complete breakdown gives the total
    "young people with a disability (intersections)": (("age_group", ("18-24",)),
                                                      ("disability", ("yes",))),
    # across chapters: the group's total (ch. 2) minus rural (ch. 3)
    "older people in urban areas": (("age_group", ("65+",)), ("urban_rural", ("urban",))),
    # all respondents (ch. 5) minus those without a disability (ch. 2)
    "persons with disabilities": (("disability", ("yes",)),),
    # young people (ch. 2) minus the other regions (ch. 4)
    "young people in area KE-110": (("admin1_code", ("KE-110",)), ("age_group", ("18-24",))),
}


def _food_insecurity_in_kenya(outputs):
    return {f.population: f for f in attack_published(outputs, LIMIT)
            if f.country == "KEN" and f.indicator == "food_insecurity"}


@pytest.fixture(scope="module")
def per_table(probe_report_per_table):
    return attack_published(probe_report_per_table, LIMIT)


def test_per_table_suppression_leaks_exact_counts_and_narrow_intervals(per_table):
    exact = [f for f in per_table if f.exact]
    narrow = [f for f in per_table if f.width < LIMIT - 1e-6]
    assert len(exact) >= 5 and len(narrow) >= 50


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_each_example_of_the_issue_is_caught_per_table_and_protected_by_the_plan(
        example, probe_report_per_table, probe_report):
    population = EXAMPLES[example]
    before = _food_insecurity_in_kenya(probe_report_per_table)[population]
    assert before.width < LIMIT, f"{example}: per-table suppression should leak it"
    after = _food_insecurity_in_kenya(probe_report)[population]
    assert after.width >= LIMIT, f"{example}: [{after.low}, {after.high}] with the plan"
