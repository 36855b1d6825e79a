"""The model of published cells, the LP attack, the plan and the gate, on small synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from probe import DESIGN, SOURCE, probe_frame

from analysis import disclosure
from analysis.disclosure import DisclosureError, Thresholds
from analysis.disclosure_attack import LinkedLP, cell_bounds
from analysis.disclosure_model import MISSING, OTHER, Catalogue, derive_relations
from analysis.disclosure_plan import CACHE_ENV, plan_for
from analysis.schema import load_indicators

LIMITS = Thresholds(25, 50)


@pytest.fixture(scope="module")
def kenya():
    frame = probe_frame()
    frame = frame[frame["country"] == "KEN"].reset_index(drop=True)
    frame.attrs["design"] = DESIGN
    return frame


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue.from_catalogue()


def _row(breakdown, cell, group=None, n=100, indicator="food_insecurity", **extra):
    return {"source": SOURCE, "country": "KEN", "group": group, "indicator": indicator,
            "breakdown": breakdown, "cell": cell, "estimate": 0.4, "se": 0.01, "ci_low": 0.38,
            "ci_high": 0.42, "n_unweighted": n, "n_weighted": 10.0 * n, "flag": "ok",
            "method": "weighted mean", **extra}


def test_relations_come_from_the_cell_definitions(catalogue):
    everyone, women, men = (), (("sex", ("female",)),), (("sex", ("male",)),)
    system = derive_relations([everyone, women, men], catalogue.universes)
    hidden = system.populations[system.n_defined:]
    # everyone = women + men + those missing sex or coded outside the catalogue (hidden)
    assert hidden == [(("sex", (MISSING, OTHER)),)]
    assert system.relations.shape[0] == 1
    assert sorted(system.relations.toarray()[0]) == [-1.0, -1.0, -1.0, 1.0]


def test_group_plus_rest_reference_is_everyone_answered(catalogue):
    dim, members, reference = catalogue.groups["older_people"]
    assert dim == "age_group" and members == {"65+"}
    assert reference == catalogue.universes["age_group"] - {"65+", MISSING}
    group = (("age_group", ("65+",)),)
    rest = (("age_group", tuple(sorted(reference))),)
    system = derive_relations([(), group, rest], catalogue.universes)
    values = np.array([100.0, 0.0, 90.0] + [0.0] * (system.n_cells - 3))
    known = np.zeros(system.n_cells, dtype=bool)
    known[[0, 2]] = True
    bounds = cell_bounds(system, values, known, 1)
    # the attacker cannot tell the group from those missing age: [0, 10]
    assert bounds.low == pytest.approx(0) and bounds.high == pytest.approx(10)
    missing = system.populations.index((("age_group", (MISSING,)),))
    known[missing] = True  # a published zero of "age missing" gives the group away
    assert cell_bounds(system, values, known, 1).width == pytest.approx(0, abs=1e-6)


def test_a_cross_table_chain_is_followed_and_support_names_the_cells_used(catalogue):
    """(65+ ∧ urban) = (65+) − (65+ ∧ rural): chapter 2 minus chapter 3."""
    older = (("age_group", ("65+",)),)
    urban = (("age_group", ("65+",)), ("urban_rural", ("urban",)))
    rural = (("age_group", ("65+",)), ("urban_rural", ("rural",)))
    missing_area = (("urban_rural", (MISSING, OTHER)),)
    system = derive_relations([older, urban, rural, (), missing_area,
                               (("urban_rural", ("urban",)),), (("urban_rural", ("rural",)),)],
                              catalogue.universes)
    values = np.zeros(system.n_cells)
    values[:7] = [40, 15, 25, 300, 0, 120, 180]
    known = np.zeros(system.n_cells, dtype=bool)
    known[:7] = True
    known[1] = False
    program = LinkedLP(system, values, known)
    bounds = program.bounds(1)
    assert bounds.low == pytest.approx(15, abs=1e-6) and bounds.high == pytest.approx(15, abs=1e-6)
    assert 0 in bounds.support and 2 in bounds.support
    program.withhold(2)  # complementary suppression of the rural cell
    assert program.bounds(1).width == pytest.approx(40, abs=1e-6)


def test_plan_protects_every_withheld_cell_of_a_source_country(kenya):
    plan = plan_for(kenya, SOURCE, "KEN", load_indicators(), LIMITS)  # cached for protect below
    assert plan.primary > 0 and plan.secondary > 0 and plan.published > 0
    # planted 12 persons with disabilities: their cell is primary in every indicator
    pwd = (("disability", ("yes",)),)
    for indicator in ("food_insecurity", "income_loss", "respondents"):
        assert plan.reason(indicator, pwd).startswith("primary:")
    reasons = {r for cells in plan.withheld.values() for r in cells.values()}
    assert reasons == {disclosure_plan_reason("primary"), disclosure_plan_reason("secondary")}
    assert not any(ch.isdigit() for r in reasons for ch in r.replace("25", ""))


def disclosure_plan_reason(kind):
    from analysis.disclosure_plan import PRIMARY_REASON, SECONDARY_REASON

    return PRIMARY_REASON.format(suppress_below=25) if kind == "primary" else SECONDARY_REASON


def test_plan_is_cached_by_input_hash_and_reloaded_alike(kenya, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    one = {"income_loss": load_indicators()["income_loss"]}
    first = plan_for(kenya, SOURCE, "KEN", one, LIMITS)
    files = list(tmp_path.glob(f"{SOURCE}.KEN.*.json"))
    assert len(files) == 1
    from analysis.disclosure_plan import _MEMORY, Plan

    saved = dict(_MEMORY)
    _MEMORY.clear()  # forget the in-process copy: the plan comes back from the file
    again = plan_for(kenya, SOURCE, "KEN", one, LIMITS)
    _MEMORY.update(saved)
    assert again.withheld == first.withheld and again.cells == first.cells
    assert Plan.from_json(json.loads(files[0].read_text())).withheld == first.withheld
    changed = kenya.copy()
    changed.attrs.update(kenya.attrs)
    changed.loc[0, "income_loss"] = 1.0 - np.nan_to_num(changed.loc[0, "income_loss"])
    plan_for(changed, SOURCE, "KEN", one, LIMITS)
    assert len(list(tmp_path.glob(f"{SOURCE}.KEN.*.json"))) == 2  # new data, new plan


def test_a_damaged_cached_plan_is_recomputed_and_rewritten(kenya, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    one = {"income_loss": load_indicators()["income_loss"]}
    from analysis.disclosure_plan import _MEMORY, Plan

    saved = dict(_MEMORY)
    _MEMORY.clear()  # no in-process copy: the plan is computed and written to the cache folder
    first = plan_for(kenya, SOURCE, "KEN", one, LIMITS)
    (path,) = tmp_path.glob(f"{SOURCE}.KEN.*.json")
    path.write_text("{not json")
    _MEMORY.clear()
    again = plan_for(kenya, SOURCE, "KEN", one, LIMITS)
    _MEMORY.update(saved)
    assert again.withheld == first.withheld and again.cells == first.cells
    assert Plan.from_json(json.loads(path.read_text())).withheld == first.withheld


def test_protect_withholds_the_same_population_alike_in_different_tables(kenya):
    frames = {SOURCE: kenya}
    # the older people's group cell (ch. 2) and the same population as an age category (ch. 5)
    chapter2 = pd.DataFrame([_row("comparison", "group", "older_people", n=24),
                             _row("comparison", "reference", "older_people", n=370)])
    chapter5 = pd.DataFrame([_row("age_group", "65+", n=24), _row("age_group", "25-34", n=90),
                             _row("all", "all", n=400)])
    two = disclosure.protect(chapter2, frames, LIMITS)
    five = disclosure.protect(chapter5, frames, LIMITS)
    assert two.loc[0, "flag"] == five.loc[0, "flag"] == "suppressed"
    assert two.loc[0, "suppression_reason"] == five.loc[0, "suppression_reason"]
    assert pd.isna(two.loc[0, "n_unweighted"]) and pd.isna(five.loc[0, "estimate"])


def test_protect_refuses_a_cell_the_plan_does_not_cover(kenya):
    table = pd.DataFrame([_row("sex × age_group × urban_rural", "female × 25-34 × urban", n=100)])
    with pytest.raises(DisclosureError, match="does not cover"):
        disclosure.protect(table, {SOURCE: kenya}, LIMITS, name="chapter 9 table")


def test_protect_without_data_is_primary_suppression():
    table = pd.DataFrame([_row("sex", "female", n=10), _row("sex", "male", n=40)])
    out = disclosure.protect(table, None, LIMITS)
    assert out["flag"].tolist() == ["suppressed", "caution"]


def _with_group_of(frame, size, seed=60):
    """``frame`` with exactly ``size`` persons with disabilities (positive weight), at random."""
    out = frame.copy()
    out.attrs.update(frame.attrs)
    rng = np.random.default_rng(seed)
    out["disability"] = "no"
    positive = np.flatnonzero(pd.to_numeric(out["weight"]) > 0)
    out.loc[rng.choice(positive, size, replace=False), "disability"] = "yes"
    return out


def test_a_60_person_group_keeps_its_headline_comparison_published(kenya):
    """Its crossings with sex, age, areas ... are small (primary); the complements that protect
    them are other crossings, never the group's or its reference's own numbers (seen withheld
    by the first greedy repair on a small source)."""
    from analysis.disclosure_model import make_population
    from analysis.disclosure_plan import plan_suppression

    frame = _with_group_of(kenya, 60)
    catalogue = Catalogue.from_catalogue()
    plan = plan_suppression(frame, SOURCE, "KEN", load_indicators(), LIMITS, catalogue)
    dim, members, reference = catalogue.groups["persons_with_disabilities"]
    group = make_population({dim: members}, catalogue.universes)
    rest = make_population({dim: reference}, catalogue.universes)
    crossings = [p for p in plan.withheld["food_insecurity"] if dict(p).get(dim) == tuple(members)
                 and len(p) == 2]
    assert crossings  # the group's small crossings are withheld and need complements
    for indicator in plan.cells:
        for population in (group, rest, ()):
            assert plan.covers(indicator, population)
            assert plan.reason(indicator, population) is None, (indicator, population)


def test_a_partitioned_source_gets_the_same_plan_from_its_partition_sums(kenya, tmp_path):
    """Census-scale sources are never loaded: the plan comes from sums per combination of
    categories that DuckDB computes over the Parquet partitions, and equals the in-memory one."""
    from types import SimpleNamespace

    from analysis.disclosure_plan import partitioned_atoms, plan_suppression

    rows = kenya.copy()
    halves = np.array_split(np.arange(len(rows)), 3)
    files = []
    for k, part in enumerate(halves):  # partitions as the partitioned ingest writes them
        path = tmp_path / f"part-{k:05d}.parquet"
        rows.iloc[part].to_parquet(path, index=False)
        files.append(str(path))
    source = SimpleNamespace(files=files, design=DESIGN)
    indicators = load_indicators()
    atoms = partitioned_atoms(source, "KEN", list(indicators))
    assert len(atoms) < len(kenya) and atoms["n:respondents"].sum() == (kenya["weight"] > 0).sum()
    catalogue = Catalogue.from_catalogue()
    from_sums = plan_suppression(atoms, SOURCE, "KEN", indicators, LIMITS, catalogue)
    in_memory = plan_suppression(kenya, SOURCE, "KEN", indicators, LIMITS, Catalogue.from_catalogue())
    assert from_sums.cells == in_memory.cells
    assert from_sums.withheld == in_memory.withheld
    assert from_sums.primary > 0 and from_sums.secondary > 0
