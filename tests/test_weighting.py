"""Weighting to official margins: against R's postStratify/rake, planted truth, properties, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from analysis import survey, weighting
from analysis.disclosure import Thresholds
from analysis.weighting import WeightingError

STYPE = pd.Series({"E": 4421, "H": 755, "M": 1018})
SCH_WIDE = pd.Series({"No": 1072, "Yes": 5122})


@pytest.fixture(scope="module")
def apiclus1(r_survey_dir):
    frame = pd.read_csv(r_survey_dir / "apiclus1.csv")
    design = survey.SurveyDesign.from_frame(frame, weight="pw", psu="dnum", fpc="fpc")
    return frame, design


def mean_and_se(design, y):
    """Hájek mean and its linearised SE through the design's variance primitive."""
    w = design.weights
    mean = np.sum(w * y) / np.sum(w)
    scores = w * (y - mean) / np.sum(w)
    return mean, float(np.sqrt(design.total_covariance(scores[:, None])[0, 0]))


def assert_matches_r(entry, mean, se):
    z = stats.norm.ppf(0.975)  # R's confint() on svymean uses the normal quantile
    assert mean == pytest.approx(entry["estimate"], rel=1e-9)
    assert se == pytest.approx(entry["se"], rel=1e-9)
    assert mean - z * se == pytest.approx(entry["ci_low"], rel=1e-9)
    assert mean + z * se == pytest.approx(entry["ci_high"], rel=1e-9)


# --------------------------------------------------------------------------- R's survey package


def test_poststratify_matches_r(apiclus1, golden):
    frame, design = apiclus1
    entry = golden("r_survey")["clus1_poststratify_stype_mean_api00"]
    calibrated = weighting.poststratify(frame, design, "stype", STYPE)
    assert_matches_r(entry, *mean_and_se(calibrated, frame["api00"].to_numpy(float)))
    assert "post-stratified to stype" in calibrated.describe_variance()


def test_rake_matches_r_weights_and_standard_error(apiclus1, golden):
    frame, design = apiclus1
    reference = golden("r_survey")
    # R's rake() default control: at most 10 sweeps, stop when the joint table moves by < 1.
    raked = weighting.rake(
        frame,
        design,
        {"stype": STYPE, "sch.wide": SCH_WIDE},
        max_iter=10,
        tol=1 / design.weights.sum(),
    )
    summary = reference["clus1_rake_weights_summary"]
    assert raked.weights.sum() == pytest.approx(summary["sum"], rel=1e-9)
    assert raked.weights.min() == pytest.approx(summary["min"], rel=1e-9)
    assert raked.weights.max() == pytest.approx(summary["max"], rel=1e-9)
    entry = reference["clus1_rake_stype_schwide_mean_api00"]
    assert_matches_r(entry, *mean_and_se(raked, frame["api00"].to_numpy(float)))


def test_estimate_by_on_a_calibrated_design_matches_r(apiclus1, golden):
    frame, design = apiclus1
    entry = golden("r_survey")["clus1_poststratify_stype_mean_api00"]
    calibrated = weighting.poststratify(frame, design, "stype", STYPE)
    row = survey.estimate_by(frame, calibrated, "api00").iloc[0]
    assert row["estimate"] == pytest.approx(entry["estimate"], rel=1e-9)
    assert row["se"] == pytest.approx(entry["se"], rel=1e-9)


def test_residual_unit_table_equals_dense_residuals(apiclus1):
    """The cell-by-unit shortcut the estimation engine uses equals the dense computation."""
    frame, design = apiclus1
    raked = weighting.rake(
        frame,
        weighting.poststratify(frame, design, "stype", STYPE),
        {"sch.wide": SCH_WIDE, "stype": STYPE},
    )
    assert len(raked.calibration.projections) == 3  # the post-stratification, then two margins
    rng = np.random.default_rng(1)
    cells = rng.integers(0, 5, size=len(frame))
    units = pd.factorize(frame["dnum"])[0]
    values = raked.weights * rng.normal(size=len(frame))
    table = raked.calibration.residual_unit_table(values, cells, 5, units, units.max() + 1)
    dense = np.zeros((len(frame), 5))
    dense[np.arange(len(frame)), cells] = values
    residuals = raked.calibration.residualise(dense)
    expected = np.stack(
        [np.bincount(units, weights=residuals[:, c], minlength=units.max() + 1) for c in range(5)]
    )
    np.testing.assert_allclose(table, expected, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- planted truth


def synthetic_population(seed=0, size=20_000):
    rng = np.random.default_rng(seed)
    population = pd.DataFrame(
        {
            "sex": rng.choice(["female", "male"], size=size),
            "age_group": rng.choice(["18-34", "35-64", "65+"], size=size, p=[0.4, 0.45, 0.15]),
            "admin1": rng.choice(["north", "south", "east"], size=size, p=[0.5, 0.3, 0.2]),
        }
    )
    effect = {"female": 0.1, "male": 0.0, "18-34": 0.0, "35-64": 0.15, "65+": 0.35}
    population["p"] = 0.2 + population["sex"].map(effect) + population["age_group"].map(effect)
    population["y"] = (rng.uniform(size=size) < population["p"]).astype(float)
    return population


def biased_sample(population, n, seed):
    """A convenience sample: older women much more likely to take part (cell-level selection)."""
    rng = np.random.default_rng(seed)
    pull = (
        np.where(population["sex"] == "female", 3.0, 1.0)
        * population["age_group"].map({"18-34": 1.0, "35-64": 2.0, "65+": 4.0}).to_numpy()
    )
    # Weighted sampling without replacement (Efraimidis–Spirakis): the n largest u^(1/pull).
    keys = np.log(rng.uniform(size=len(population))) / pull
    chosen = np.sort(np.argpartition(-keys, n)[:n])
    return population.iloc[chosen].reset_index(drop=True)


def counts(population, columns):
    return population.groupby(columns).size().rename("population").reset_index()


def test_outcome_constant_within_post_strata_is_recovered_exactly_with_zero_se():
    population = synthetic_population()
    population["y"] = population["p"]  # a function of the post-stratum only
    sample = biased_sample(population, 600, seed=1)
    calibrated = weighting.poststratify(
        sample, None, ["sex", "age_group"], counts(population, ["sex", "age_group"])
    )
    mean, se = mean_and_se(calibrated, sample["y"].to_numpy())
    assert mean == pytest.approx(population["y"].mean(), rel=1e-12)
    assert se == pytest.approx(0.0, abs=1e-12)
    # Without the calibration the same design would claim sampling error.
    assert (
        mean_and_se(survey.SurveyDesign(weights=calibrated.weights), sample["y"].to_numpy())[1]
        > 1e-3
    )


@pytest.mark.slow
def test_post_stratified_intervals_cover_the_truth_at_the_nominal_rate():
    population = synthetic_population(seed=2)
    truth = population["y"].mean()
    margins = weighting.as_margin(["sex", "age_group"], counts(population, ["sex", "age_group"]))
    hits, naive_hits, reps = 0, 0, 300
    for seed in range(reps):
        sample = biased_sample(population, 500, seed=100 + seed)
        calibrated = weighting.poststratify(sample, None, ["sex", "age_group"], margins)
        mean, se = mean_and_se(calibrated, sample["y"].to_numpy())
        hits += abs(mean - truth) <= 1.96 * se
        naive = sample["y"].mean()
        naive_hits += abs(naive - truth) <= 1.96 * np.sqrt(naive * (1 - naive) / len(sample))
    # 300 replications: ±2.5 binomial SDs around 0.95 is about ±0.03.
    assert 0.92 <= hits / reps <= 0.98
    assert naive_hits / reps < 0.5  # the unweighted convenience sample is badly biased


def test_raking_reproduces_every_margin_and_moves_composition():
    population = synthetic_population(seed=3)
    sample = biased_sample(population, 800, seed=4)
    margins = {c: population.groupby(c).size() for c in ("sex", "age_group", "admin1")}
    raked = weighting.rake(sample, None, margins, tol=1e-10)
    for column, target in margins.items():
        got = pd.Series(raked.weights).groupby(sample[column].to_numpy()).sum()
        np.testing.assert_allclose(got[target.index], target, rtol=1e-8)
    diagnostics = weighting.weighting_diagnostics(
        sample, margins, np.ones(len(sample)), raked, thresholds=Thresholds(25, 50)
    )
    np.testing.assert_allclose(
        diagnostics["pct_weighted_after"], diagnostics["pct_population"], rtol=1e-6
    )
    older = diagnostics.query("margin == 'age_group' and category == '65+'").iloc[0]
    assert older["pct_unweighted"] > 2 * older["pct_population"]  # the planted selection bias


# --------------------------------------------------------------------------- properties


@settings(max_examples=12, deadline=None)
@given(scale=st.floats(0.01, 1000), seed=st.integers(0, 1000))
def test_raked_weights_do_not_depend_on_the_scale_of_the_starting_weights(scale, seed):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.choice(list("xyz"), 300), "b": rng.choice(list("pq"), 300)})
    frame.loc[:5, "a"] = list("xyzxyz")
    frame.loc[:5, "b"] = list("pqpqpq")
    start = rng.uniform(0.5, 3, size=300)
    margins = {
        "a": pd.Series({"x": 500.0, "y": 300.0, "z": 200.0}),
        "b": pd.Series({"p": 400.0, "q": 600.0}),
    }
    one = weighting.rake(frame, survey.SurveyDesign(weights=start), margins, tol=1e-12)
    other = weighting.rake(frame, survey.SurveyDesign(weights=start * scale), margins, tol=1e-12)
    np.testing.assert_allclose(one.weights, other.weights, rtol=1e-7)


def test_trimmed_raking_keeps_weights_in_bounds_and_hits_margins():
    population = synthetic_population(seed=5)
    sample = biased_sample(population, 600, seed=6)
    margins = {c: population.groupby(c).size() for c in ("sex", "age_group")}
    untrimmed = weighting.rake(sample, None, margins)
    mean_weight = len(population) / len(sample)
    assert untrimmed.weights.max() > 3 * mean_weight
    trimmed = weighting.rake(sample, None, margins, trim=(0.3, 3.0), tol=1e-10, max_iter=1000)
    assert trimmed.weights.max() <= 3.0 * mean_weight * (1 + 1e-6)
    assert trimmed.weights.min() >= 0.3 * mean_weight * (1 - 1e-6)
    for column, target in margins.items():
        got = pd.Series(trimmed.weights).groupby(sample[column].to_numpy()).sum()
        np.testing.assert_allclose(got[target.index], target, rtol=1e-6)
    assert weighting.kish_design_effect(trimmed) < weighting.kish_design_effect(untrimmed)
    assert "trimmed to [0.3, 3]" in trimmed.describe_variance()


def test_kish_design_effect():
    assert weighting.kish_design_effect(np.ones(10)) == pytest.approx(1.0)
    assert weighting.kish_design_effect([1.0, 3.0]) == pytest.approx(2 * 10 / 16)
    w = np.random.default_rng(0).uniform(1, 5, 1000)
    assert weighting.kish_design_effect(w) == pytest.approx(1 + np.var(w) / np.mean(w) ** 2)


def test_replicate_designs_are_calibrated_replicate_by_replicate(apiclus1):
    """Against R's own tests/testoutput/api.Rout.saved (survey 4.5), printed to 5-7 digits."""
    frame, design = apiclus1
    api00 = frame["api00"].to_numpy(float)
    enroll = frame["enroll"].to_numpy(float)
    # postStratify(as.svrepdesign(dclus1), ~stype, pop.types), with and without MSE variances.
    for mse, mean_se, total_se in [(True, 26.936, 473434), (False, 26.934, 473431)]:
        calibrated = weighting.poststratify(
            frame, design.to_replicate("jk1", mse=mse), "stype", STYPE
        )
        totals = pd.DataFrame(calibrated.replicate_weights).groupby(frame["stype"].to_numpy()).sum()
        np.testing.assert_allclose(
            totals.loc[STYPE.index].to_numpy(),
            np.repeat(STYPE.to_numpy()[:, None], totals.shape[1], axis=1),
        )
        # Calibrated replicates sum to N, so the replicate totals of the linearised scores are
        # exactly the replicate means minus the full-sample mean.
        # Without MSE we get 26.93454, a hair above R's printed 26.934 (1.3e-6 relative): within
        # one unit of the last printed digit, as is every other value here.
        assert mean_and_se(calibrated, api00)[1] == pytest.approx(mean_se, abs=1e-3)
        total = calibrated.weights @ enroll
        assert round(total) == 3680893
        thetas = calibrated.replicate_weights.T @ enroll
        se = np.sqrt(calibrated._replicate_variance(thetas[None, :], np.array([total])))[0]
        assert round(se) == total_se
    # postStratify(dclus1, ~stype, pop.types): svytotal(~enroll) SE 406293.
    taylor = weighting.poststratify(frame, design, "stype", STYPE)
    scores = taylor.weights * enroll
    assert round(float(np.sqrt(taylor.total_covariance(scores[:, None])[0, 0]))) == 406293


# --------------------------------------------------------------------------- convenience


def official_counts():
    population = synthetic_population(seed=7)
    table = (
        population.groupby(["admin1", "sex", "age_group"]).size().rename("population").reset_index()
    )
    table.insert(0, "country", "KEN")
    return population, table


def test_weight_to_official_margins_post_stratifies_when_every_cell_has_respondents():
    population, table = official_counts()
    sample = biased_sample(population, 900, seed=8)
    result = weighting.weight_to_official_margins(
        sample, table, ["sex", "age_group"], thresholds=Thresholds(25, 50)
    )
    assert result.method == "poststratify"
    joint = pd.Series(result.design.weights).groupby([sample["sex"], sample["age_group"]]).sum()
    expected = population.groupby(["sex", "age_group"]).size()
    np.testing.assert_allclose(joint[expected.index], expected, rtol=1e-10)
    assert result.kish_deff_before == pytest.approx(1.0)
    assert result.kish_deff_after > 1.0
    assert result.effective_sample_size < len(sample)
    assert set(result.diagnostics["margin"]) == {"sex", "age_group"}


def test_weight_to_official_margins_rakes_when_a_cell_is_empty_and_restricts_areas():
    population, table = official_counts()
    sample = biased_sample(population, 900, seed=9)
    sample = sample[~((sample["admin1"] == "east") & (sample["age_group"] == "65+"))]
    sample = sample[sample["admin1"] != "south"].reset_index(drop=True)
    result = weighting.weight_to_official_margins(
        sample,
        table,
        ["admin1", "sex", "age_group"],
        restrict_to=["admin1"],
        thresholds=Thresholds(25, 50),
    )
    assert result.method == "rake"
    assert any("left out 1 (south)" in note for note in result.notes)
    assert any("raked to the one-way margins" in note for note in result.notes)
    covered = population[population["admin1"] != "south"]
    assert result.design.weights.sum() == pytest.approx(len(covered), rel=1e-6)


def test_weight_to_official_margins_without_restriction_names_the_empty_area():
    population, table = official_counts()
    sample = biased_sample(population, 900, seed=10)
    sample = sample[sample["admin1"] != "south"].reset_index(drop=True)
    with pytest.raises(
        WeightingError, match="population cell\\(s\\) of admin1 have no respondents"
    ):
        weighting.weight_to_official_margins(sample, table, ["admin1", "sex"])


def test_diagnostics_withhold_small_sample_categories():
    frame = pd.DataFrame({"g": ["a"] * 100 + ["b"] * 60 + ["c"] * 10})
    margins = {"g": pd.Series({"a": 500, "b": 300, "c": 200})}
    after = weighting.rake(frame, None, margins)
    out = weighting.weighting_diagnostics(
        frame, margins, np.ones(len(frame)), after, thresholds=Thresholds(25, 50)
    )
    assert out["flag"].tolist() == ["ok", "suppressed", "suppressed"]
    assert out.loc[1:, ["n_unweighted", "pct_unweighted", "pct_weighted_before"]].isna().all().all()
    assert out["pct_population"].tolist() == pytest.approx([50, 30, 20])


# --------------------------------------------------------------------------- errors


def small_frame():
    return pd.DataFrame(
        {"sex": ["female", "male", "female", "male"], "age": ["young", "young", "old", "old"]}
    )


def test_inconsistent_margins_are_named():
    with pytest.raises(
        WeightingError, match="margins are inconsistent: sex sums to 100, age sums to 120"
    ):
        weighting.rake(
            small_frame(),
            None,
            {
                "sex": pd.Series({"female": 50, "male": 50}),
                "age": pd.Series({"young": 60, "old": 60}),
            },
        )


def test_empty_sample_cell_is_named():
    population = pd.DataFrame({"sex": ["female", "male", "other"], "count": [50, 45, 5]})
    with pytest.raises(
        WeightingError, match="cell\\(s\\) of sex have no respondents .*\\['other'\\]"
    ):
        weighting.poststratify(small_frame(), None, "sex", population)


def test_sample_category_missing_from_margins_is_named():
    with pytest.raises(
        WeightingError, match="sample categories \\['old'\\] of age \\(2 rows\\) are missing"
    ):
        weighting.poststratify(small_frame(), None, "age", pd.Series({"young": 100}))


def test_missing_sample_category_is_named():
    frame = small_frame()
    frame.loc[2, "sex"] = None
    with pytest.raises(
        WeightingError,
        match="column 'sex' is missing in 1 sample row\\(s\\) \\(first rows \\[2\\]\\)",
    ):
        weighting.poststratify(frame, None, "sex", pd.Series({"female": 50, "male": 50}))


def test_population_zero_with_respondents_is_named():
    with pytest.raises(WeightingError, match="have respondents but a population count of 0"):
        weighting.poststratify(small_frame(), None, "sex", pd.Series({"female": 100, "male": 0}))


def test_non_convergence_says_how_far_off():
    population = synthetic_population(seed=11)
    sample = biased_sample(population, 300, seed=12)
    margins = {c: population.groupby(c).size() for c in ("sex", "age_group", "admin1")}
    with pytest.raises(
        WeightingError, match="not converged after 1 sweeps: .* largest margin gap .* vs population"
    ):
        weighting.rake(sample, None, margins, max_iter=1, tol=1e-12)


def test_ambiguous_count_column_and_bad_counts_are_named():
    table = pd.DataFrame(
        {"sex": ["female", "male"], "count": [1, 2], "year": [2020, 2020], "population": [1, 2]}
    )
    with pytest.raises(
        WeightingError, match="cannot tell which column holds the population counts"
    ):
        weighting.poststratify(small_frame(), None, "sex", table)
    table = pd.DataFrame({"sex": ["female", "male"], "count": [10, -2]})
    with pytest.raises(WeightingError, match="row 1 is -2; counts must be non-negative"):
        weighting.poststratify(small_frame(), None, "sex", table)


@pytest.mark.slow
def test_demo_youth_survey_weighted_to_official_margins_recovers_the_truth(tmp_path_factory):
    """Chapter 5's case: the demo's non-probability youth survey, weighted to the official counts
    (restricted to the countries and age groups it covers), against the demo's known truth."""
    import json

    from analysis import config
    from analysis.sources import ingest, load_processed

    processed = tmp_path_factory.mktemp("processed")
    for source in ("demo_youth", "demo_population_margins"):
        ingest.ingest_source(config.SOURCES_DIR / f"{source}.yml", config.RAW_DIR, processed)
    youth = load_processed("demo_youth", processed)
    margins = load_processed("demo_population_margins", processed)
    result = weighting.weight_to_official_margins(
        youth,
        margins,
        ["country", "admin1", "sex", "age_group"],
        restrict_to=["country", "age_group"],
        thresholds=Thresholds(25, 50),
    )
    assert result.method == "poststratify"
    covered = margins[
        margins["country"].isin(youth["country"].unique())
        & margins["age_group"].isin(["18-24", "25-34"])
    ]
    assert result.design.weights.sum() == pytest.approx(covered["population"].sum(), rel=1e-9)
    assert "non-probability" in result.design.describe_variance()
    truth = {
        (t["country"], t["indicator"]): t["value"]
        for t in json.loads((config.DEMO_DIR / "TRUTH.json").read_text())["truth"]
        if t["source"] == "demo_youth" and t["cell"] == "all"
    }
    indicators = sorted({i for _, i in truth})
    estimates = survey.estimate_by(youth, result.design, indicators, by=["country"], margins=False)
    z = [
        (row.estimate - truth[(row.cell, row.indicator)]) / row.se
        for row in estimates.itertuples()
        if (row.cell, row.indicator) in truth
    ]
    assert len(z) >= 20
    assert np.max(np.abs(z)) < 4
    assert np.mean(np.abs(z) < 1.96) > 0.8


def test_calibrated_design_refuses_to_make_uncalibrated_replicates(apiclus1):
    frame, design = apiclus1
    calibrated = weighting.poststratify(frame, design, "stype", STYPE)
    with pytest.raises(WeightingError, match="convert the design before weighting"):
        calibrated.to_replicate("jk1")
