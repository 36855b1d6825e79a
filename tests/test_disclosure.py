"""Disclosure control: primary and secondary suppression, derived measures, the output gate.

The property tests play an adversary who knows the table's structure (a breakdown, every
margin and the whole population) and tries to recover each withheld cell from the published
ones: first by subtraction (a margin minus its published children, repeated while anything new
is learnt), then by solving the whole linear system exactly. Neither may recover a cell.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis import disclosure, tables
from analysis.disclosure import DisclosureError, Thresholds

DEFAULTS = Thresholds(25, 50)


def crossed_table(counts: dict, names: list[str], indicator="food_insecurity", seed=0):
    """A result table of a full crossing and all its margins, built from cell counts.

    ``counts`` maps a tuple of categories (one per dimension in ``names``) to the unweighted
    count; weighted counts and weighted totals are drawn at random and summed into the margins,
    so that every additive relation holds exactly, as in a real table.
    """
    rng = np.random.default_rng(seed)
    cells = {k: (n, n * rng.uniform(5, 50), rng.uniform(0, 1)) for k, n in counts.items()}
    rows = []
    for r in range(len(names), -1, -1):
        for dims in itertools.combinations(range(len(names)), r):
            sums: dict[tuple, list[float]] = {}
            for key, (n, nw, p) in cells.items():
                sub = tuple(key[d] for d in dims)
                acc = sums.setdefault(sub, [0.0, 0.0, 0.0])
                acc[0] += n
                acc[1] += nw
                acc[2] += p * nw
            for sub, (n, nw, total) in sums.items():
                rows.append(
                    {
                        "source": "demo",
                        "country": "KEN",
                        "group": "all_people",
                        "indicator": indicator,
                        "breakdown": tables.join_cell([names[d] for d in dims]),
                        "cell": tables.join_cell(sub),
                        "estimate": total / nw,
                        "se": 0.01,
                        "ci_low": 0.0,
                        "ci_high": 1.0,
                        "n_unweighted": int(n),
                        "n_weighted": nw,
                        "flag": "ok",
                        "method": "taylor",
                    }
                )
    return pd.DataFrame(rows)


def two_by_two(n_female_yes=10):
    counts = {
        ("female", "yes"): n_female_yes,
        ("female", "no"): 200,
        ("male", "yes"): 60,
        ("male", "no"): 300,
    }
    return crossed_table(counts, ["sex", "disability"])


# --------------------------------------------------------------------------- thresholds


def test_thresholds_default_to_dhs_mics_and_read_report_yml(tmp_path):
    assert disclosure.load_thresholds(tmp_path / "absent.yml") == Thresholds(25, 50)
    report = tmp_path / "report.yml"
    report.write_text("disclosure:\n  suppress_below: 30\n  caution_below: 60\n")
    assert disclosure.load_thresholds(report) == Thresholds(30, 60)
    report.write_text("chapters: []\n")
    assert disclosure.load_thresholds(report) == Thresholds(25, 50)


def test_bad_thresholds_are_named(tmp_path):
    report = tmp_path / "report.yml"
    report.write_text("disclosure:\n  suppress_below: 30\n  minimum: 60\n")
    with pytest.raises(DisclosureError, match="unknown keys \\['minimum'\\] under 'disclosure'"):
        disclosure.load_thresholds(report)
    with pytest.raises(
        DisclosureError, match="caution_below=10 must be an integer >= suppress_below=25"
    ):
        Thresholds(25, 10)


# --------------------------------------------------------------------------- primary


def test_primary_suppression_blanks_small_cells_and_flags_caution():
    table = pd.DataFrame(
        {
            "indicator": ["x"] * 5,
            "breakdown": ["sex"] * 5,
            "cell": list("abcde"),
            "estimate": [0.1, 0.2, 0.3, 0.4, np.nan],
            "se": [0.01] * 5,
            "n_unweighted": [24, 25, 49, 50, 100],
            "n_weighted": [240.0, 250, 490, 500, 1000],
            "flag": ["ok"] * 5,
            "deff": [1.1] * 5,
        }
    )
    out = disclosure.primary_suppression(table, DEFAULTS)
    assert out["flag"].tolist() == ["suppressed", "caution", "caution", "ok", "ok"]
    assert out.loc[0, ["estimate", "se", "n_unweighted", "n_weighted", "deff"]].isna().all()
    # the rule, never the count (a count in the reason narrows an attacker's interval)
    assert out.loc[0, "suppression_reason"] == "primary: fewer than 25 respondents"
    assert "24" not in out.loc[0, "suppression_reason"]
    assert out.loc[1, "estimate"] == 0.2 and out.loc[1, "n_unweighted"] == 25
    # Not available (no estimate, enough cases) stays distinct from suppressed.
    assert out.loc[4, "flag"] == "ok" and np.isnan(out.loc[4, "estimate"])
    # The table still conforms to the schema (suppressed rows are blank).
    tables.validate(tables.conform(out))
    # The input is not modified.
    assert table["flag"].tolist() == ["ok"] * 5


def test_unknown_n_with_an_estimate_is_suppressed_but_empty_row_is_not():
    table = pd.DataFrame(
        {
            "breakdown": ["all", "all"],
            "cell": ["all", "all"],
            "indicator": ["x", "y"],
            "estimate": [0.5, np.nan],
            "n_unweighted": [np.nan, np.nan],
            "flag": ["ok", "ok"],
        }
    )
    out = disclosure.primary_suppression(table, DEFAULTS)
    assert out["flag"].tolist() == ["suppressed", "ok"]
    assert "unknown" in out.loc[0, "suppression_reason"]


def test_thresholds_as_dict_and_existing_caution_kept():
    table = pd.DataFrame(
        {
            "breakdown": ["all"],
            "cell": ["all"],
            "indicator": ["x"],
            "estimate": [0.5],
            "n_unweighted": [70],
            "flag": ["caution"],
        }
    )
    out = disclosure.primary_suppression(table, {"suppress_below": 10, "caution_below": 20})
    assert out["flag"].tolist() == ["caution"]


# --------------------------------------------------------------------------- secondary


def test_secondary_suppression_of_a_two_by_two_hides_the_interior_cycle_only():
    out = disclosure.apply_suppression(two_by_two(), DEFAULTS)
    withheld = set(out.loc[out["flag"] == "suppressed", "cell"])
    # The small cell, then its sibling in each direction, then the fourth to close the cycle;
    # the margins stay published.
    assert withheld == {"female × yes", "female × no", "male × yes", "male × no"}
    disclosure.assert_publishable(out, DEFAULTS)


def test_binary_complement_is_protected():
    table = crossed_table({("yes",): 12, ("no",): 400}, ["disability"])
    out = disclosure.apply_suppression(table, DEFAULTS)
    # "no" = all − "yes": withholding "yes" alone would be undone by the complement; with only
    # one dimension the margin "all" must go too, or "no" together with it.
    assert disclosure.check_no_small_cells(out, DEFAULTS).empty
    assert (out.loc[out["cell"] == "yes", "flag"] == "suppressed").all()
    assert (out["flag"] == "suppressed").sum() == 2


def test_no_suppression_leaves_table_unchanged():
    table = two_by_two(n_female_yes=100)
    out = disclosure.apply_suppression(table, DEFAULTS)
    assert (out["flag"] != "suppressed").all()
    pd.testing.assert_series_equal(out["estimate"], table["estimate"])


def test_tables_are_protected_independently_per_indicator():
    table = pd.concat([two_by_two(), two_by_two(n_female_yes=100).assign(indicator="other")])
    out = disclosure.apply_suppression(table, DEFAULTS)
    assert (out.loc[out["indicator"] == "other", "flag"] != "suppressed").all()
    assert (out.loc[out["indicator"] == "food_insecurity", "flag"] == "suppressed").sum() == 4


def test_duplicate_cells_in_one_table_are_an_error():
    table = pd.concat([two_by_two(), two_by_two().iloc[[0]]])
    with pytest.raises(DisclosureError, match="more than one row for breakdown 'sex × disability'"):
        disclosure.apply_suppression(table, DEFAULTS)


def test_mismatched_cell_label_is_an_error():
    table = two_by_two()
    table.loc[0, "cell"] = "female"
    with pytest.raises(DisclosureError, match="has 2 dimensions but cell 'female' has 1"):
        disclosure.apply_suppression(table, DEFAULTS)


# --------------------------------------------------------------------------- the adversary


def _known_and_hidden(published: pd.DataFrame, truth: pd.DataFrame, column: str):
    """The adversary's view: published values of ``column``, and the true withheld ones."""
    hidden = (published["flag"] == "suppressed").to_numpy()
    values = truth[column].to_numpy(dtype=float)
    return hidden, values


def _relations_from_structure(truth: pd.DataFrame) -> list[tuple[int, list[int]]]:
    """The adversary's own list of (margin, children) facts, written independently of the library."""
    coords = []
    for b, c in zip(truth["breakdown"], truth["cell"]):
        coords.append({} if b == "all" else dict(zip(b.split(" × "), c.split(" × "))))
    facts = []
    for p, pc in enumerate(coords):
        for dims in {tuple(sorted(c)) for c in coords}:
            if set(pc) < set(dims):
                kids = [
                    i
                    for i, c in enumerate(coords)
                    if tuple(sorted(c)) == dims and all(c[k] == v for k, v in pc.items())
                ]
                facts.append((p, kids))
    return facts


def subtraction_attack(facts, hidden, values):
    """Repeatedly solve any margin fact with exactly one withheld member; return what was learnt."""
    known = {i: values[i] for i in range(len(values)) if not hidden[i]}
    learnt = {}
    progress = True
    while progress:
        progress = False
        for parent, kids in facts:
            members = [parent] + kids
            missing = [m for m in members if m not in known]
            if len(missing) != 1:
                continue
            m = missing[0]
            kid_sum = sum(known.get(k, 0.0) for k in kids)
            known[m] = kid_sum if m == parent else known[parent] - kid_sum
            learnt[m] = known[m]
            progress = True
    return learnt


def linear_algebra_attack(facts, hidden, values):
    """Solve the whole system exactly; return the withheld cells it pins down, with their value."""
    idx = np.flatnonzero(hidden)
    if idx.size == 0:
        return {}
    col = {j: k for k, j in enumerate(idx)}
    rows, rhs = [], []
    for parent, kids in facts:
        row = np.zeros(idx.size)
        b = 0.0
        for m, sign in [(parent, 1.0)] + [(k, -1.0) for k in kids]:
            if hidden[m]:
                row[col[m]] += sign
            else:
                b -= sign * values[m]
        if np.any(row):
            rows.append(row)
            rhs.append(b)
    if not rows:
        return {}
    a = np.array(rows)
    solution, *_ = np.linalg.lstsq(a, np.array(rhs), rcond=None)
    _, s, vh = np.linalg.svd(a)
    rank = int(np.sum(s > 1e-9 * max(s.max(), 1.0)))
    null = vh[rank:]
    pinned = np.linalg.norm(null, axis=0) < 1e-8 if null.size else np.ones(idx.size, bool)
    return {int(idx[k]): solution[k] for k in np.flatnonzero(pinned)}


small_or_large = st.one_of(st.integers(1, 30), st.integers(25, 60), st.integers(60, 400))


@st.composite
def crossings(draw):
    n_dims = draw(st.integers(1, 3))
    levels = [draw(st.integers(2, 4 if n_dims < 3 else 3)) for _ in range(n_dims)]
    names = ["sex", "age_group", "disability"][:n_dims]
    keys = list(itertools.product(*[[f"c{j}" for j in range(k)] for k in levels]))
    counts = {k: draw(small_or_large) for k in keys}
    return crossed_table(counts, names, seed=draw(st.integers(0, 10_000)))


@pytest.mark.slow
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crossings())
def test_no_withheld_cell_is_recoverable_by_the_adversary(truth):
    published = disclosure.apply_suppression(truth, DEFAULTS)
    hidden = (published["flag"] == "suppressed").to_numpy()
    # Every primary cell is withheld, every published row is complete.
    assert (hidden | (truth["n_unweighted"] >= 25).to_numpy()).all()
    assert published.loc[~hidden, "estimate"].notna().all()
    facts = _relations_from_structure(truth)
    weighted_total = truth["estimate"] * truth["n_weighted"]
    for column, values in [
        ("n_unweighted", truth["n_unweighted"].to_numpy(dtype=float)),
        ("n_weighted", truth["n_weighted"].to_numpy(dtype=float)),
        ("weighted total", weighted_total.to_numpy(dtype=float)),
    ]:
        recovered = subtraction_attack(facts, hidden, values)
        assert not recovered, f"{column}: subtraction recovers rows {sorted(recovered)}"
        recovered = linear_algebra_attack(facts, hidden, values)
        assert not recovered, f"{column}: linear algebra recovers rows {sorted(recovered)}"
    disclosure.assert_publishable(published, DEFAULTS)


def test_the_adversary_does_recover_cells_after_primary_suppression_only():
    """The adversary is real: without secondary suppression it recovers the small cell."""
    truth = two_by_two()
    primary = disclosure.primary_suppression(truth, DEFAULTS)
    hidden = (primary["flag"] == "suppressed").to_numpy()
    values = truth["n_unweighted"].to_numpy(dtype=float)
    facts = _relations_from_structure(truth)
    assert subtraction_attack(facts, hidden, values) == {0: 10.0}
    assert linear_algebra_attack(facts, hidden, values)[0] == pytest.approx(10.0)


# --------------------------------------------------------------------------- derived measures


def test_gap_built_on_a_suppressed_cell_is_suppressed():
    inputs = disclosure.apply_suppression(two_by_two(), DEFAULTS)
    measures = pd.DataFrame(
        {
            "source": "demo",
            "country": "KEN",
            "group": "all_people",
            "indicator": "food_insecurity",
            "breakdown": ["sex × disability", "sex", "disability"],
            "cell": ["female × yes − female × no", "female − male", "yes − no"],
            "input_cells": ["female × yes | female × no", ["female", "male"], None],
            "estimate": [0.1, 0.05, 0.02],
            "se": [0.01] * 3,
            "n_unweighted": [210, 570, 570],
            "flag": "ok",
        }
    )
    out = disclosure.suppress_derived(measures, inputs, DEFAULTS)
    assert out["flag"].tolist() == ["suppressed", "ok", "ok"]
    assert np.isnan(out.loc[0, "estimate"])
    assert "female × yes" in out.loc[0, "suppression_reason"]


def test_measure_over_a_whole_breakdown_with_a_suppressed_or_missing_cell_is_suppressed():
    inputs = disclosure.apply_suppression(two_by_two(), DEFAULTS)
    measures = pd.DataFrame(
        {
            "source": "demo",
            "country": "KEN",
            "group": "all_people",
            "indicator": "food_insecurity",
            "breakdown": ["sex × disability", "sex", "age_group"],
            "cell": ["SII", "SII", "SII"],
            "estimate": [0.3, 0.2, 0.1],
            "n_unweighted": [pd.NA] * 3,
            "flag": "ok",
        }
    )
    inputs.loc[inputs["cell"] == "male", "estimate"] = np.nan  # not available: also unusable
    out = disclosure.suppress_derived(measures, inputs, DEFAULTS)
    assert out["flag"].tolist() == ["suppressed", "suppressed", "suppressed"]
    assert "not available" in out.loc[2, "suppression_reason"]


# --------------------------------------------------------------------------- the gate


def test_gate_rejects_small_cells_leaks_and_recoverable_cells():
    with pytest.raises(DisclosureError, match="n_unweighted 10 < 25 but not suppressed"):
        disclosure.assert_publishable(two_by_two(), DEFAULTS, name="outputs/x.csv")
    leaky = disclosure.apply_suppression(two_by_two(), DEFAULTS)
    leaky.loc[0, "se"] = 0.02
    with pytest.raises(DisclosureError, match="suppressed but still carries numbers"):
        disclosure.assert_publishable(leaky, DEFAULTS)
    primary_only = disclosure.primary_suppression(two_by_two(), DEFAULTS)
    with pytest.raises(DisclosureError, match="recoverable from the published margins"):
        disclosure.assert_publishable(primary_only, DEFAULTS)
    problems = disclosure.check_no_small_cells(primary_only, DEFAULTS)
    assert problems["cell"].tolist() == ["female × yes"]


def test_hypercube_keeps_every_coarser_margin_published():
    """One small cell deep in a three-way table costs a box of three-way cells, no margin."""
    levels = {
        "sex": ["female", "male"],
        "age_group": ["18-24", "25-34", "35-44"],
        "disability": ["yes", "no"],
    }
    counts = {k: 300 for k in itertools.product(*levels.values())}
    counts[("female", "35-44", "yes")] = 9
    counts[("male", "25-34", "yes")] = 40  # the cheapest partner in the age dimension
    truth = crossed_table(counts, list(levels))
    out = disclosure.apply_suppression(truth, DEFAULTS)
    withheld = out[out["flag"] == "suppressed"]
    assert set(withheld["breakdown"]) == {"sex × age_group × disability"}
    assert len(withheld) == 8
    assert {"female × 35-44 × yes", "male × 25-34 × yes"} <= set(withheld["cell"])
    disclosure.assert_publishable(out, DEFAULTS)


def test_estimate_by_output_is_protected_and_passes_the_gate(r_survey_dir):
    from analysis import survey

    frame = pd.read_csv(r_survey_dir / "apistrat.csv")
    design = survey.SurveyDesign.from_frame(frame, weight="pw", strata="stype", fpc="fpc")
    estimates = survey.estimate_by(
        frame, design, ["api00", "meals"], by=["stype", "awards", "yr.rnd"], source="apistrat"
    )
    with pytest.raises(DisclosureError, match="not publishable"):
        disclosure.assert_publishable(estimates, DEFAULTS)
    out = disclosure.apply_suppression(estimates, DEFAULTS)
    disclosure.assert_publishable(out, DEFAULTS)
    assert (out.loc[estimates["n_unweighted"] < 25, "flag"] == "suppressed").all()
    assert (
        out.loc[out["flag"] == "suppressed", ["estimate", "se", "deff", "cv", "n_missing"]]
        .isna()
        .all()
        .all()
    )
    assert (out.loc[out["breakdown"] == "all", "flag"] == "ok").all()
    tables.validate(tables.conform(out))


def test_contrasts_and_summaries_beside_cells_take_no_part_in_the_relations():
    table = two_by_two()
    extra = table.iloc[[0, 0, 0]].copy()
    extra["breakdown"] = ["sex × disability", "sex", "sex × disability"]
    extra["cell"] = ["female × yes vs female × no", "female − male", "all"]
    extra["n_unweighted"] = [210, 570, 570]
    table = pd.concat([table, extra], ignore_index=True)
    out = disclosure.apply_suppression(table, DEFAULTS)
    # The same four interior cells as without the derived rows; the derived rows are kept.
    assert set(out.loc[out["flag"] == "suppressed", "cell"]) == {
        "female × yes",
        "female × no",
        "male × yes",
        "male × no",
    }
    disclosure.assert_publishable(out, DEFAULTS)


def test_gate_passes_a_protected_table_after_a_csv_round_trip(tmp_path):
    """The pipeline re-reads every written table and gates it: protection must survive CSV."""
    path = tables.write_csv(
        tables.conform(disclosure.apply_suppression(two_by_two(), DEFAULTS)), tmp_path / "t.csv"
    )
    again = tables.read_csv(path)
    disclosure.assert_publishable(again, DEFAULTS)
    assert (again["flag"] == "suppressed").sum() == 4


def test_suppress_derived_blanks_plain_integer_counts():
    """Measures built with int64 counts (no missing values yet) can still be blanked."""
    inputs = pd.DataFrame({
        "indicator": ["x", "x"], "breakdown": ["area", "area"], "cell": ["a", "b"],
        "estimate": [0.2, 0.3], "n_unweighted": [100, 120], "flag": ["ok", "ok"],
    })
    measures = pd.DataFrame({
        "indicator": ["x", "x"], "breakdown": ["area", "area"], "cell": ["a gap", "b gap"],
        "estimate": [0.05, 0.07], "n_unweighted": np.array([10, 200], dtype="int64"),
        "flag": ["ok", "ok"],
    })
    out = disclosure.suppress_derived(measures, inputs)
    assert list(out["flag"]) == ["suppressed", "ok"]
    assert pd.isna(out.loc[0, "estimate"]) and pd.isna(out.loc[0, "n_unweighted"])
    assert out.loc[1, "n_unweighted"] == 200
