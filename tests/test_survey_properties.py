"""Properties of survey estimation (hypothesis) and coverage of 95% intervals on known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.survey import SurveyDesign, SurveyDesignError, design_for, estimate_by

PROPERTY_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def random_survey(seed: int, n_strata: int, psus_per_stratum: int, rows_per_psu: int) -> pd.DataFrame:
    """A stratified cluster sample with unequal weights, two breakdown dimensions, a binary
    and a continuous indicator (with missing values)."""
    rng = np.random.default_rng(seed)
    n_psu = n_strata * psus_per_stratum
    n = n_psu * rows_per_psu
    psu = np.repeat(np.arange(n_psu), rows_per_psu)
    cluster_effect = rng.normal(0, 1, n_psu)[psu]
    frame = pd.DataFrame({
        "stratum": psu // psus_per_stratum,
        "psu": psu,
        "weight": rng.uniform(0.5, 5.0, n),
        "sex": rng.choice(["female", "male"], n),
        "disability": pd.Categorical(rng.choice(["no", "yes"], n, p=[0.8, 0.2]),
                                     categories=["no", "yes"]),
        "binary": (rng.normal(0, 1, n) + cluster_effect > 0.5).astype(float),
        "score": rng.normal(10, 3, n) + 2 * cluster_effect,
    })
    frame.loc[rng.random(n) < 0.1, "score"] = np.nan
    return frame


def design_of(frame, weights=None):
    return SurveyDesign.from_frame(
        frame if weights is None else frame.assign(weight=weights),
        weight="weight", strata="stratum", psu="psu",
    )


survey_shapes = st.tuples(
    st.integers(0, 10_000),  # seed
    st.integers(1, 4),  # strata
    st.integers(2, 5),  # PSUs per stratum
    st.integers(2, 12),  # rows per PSU
)


@PROPERTY_SETTINGS
@given(shape=survey_shapes, factor=st.floats(1e-3, 1e4))
def test_rescaling_weights_leaves_means_and_ses_unchanged(shape, factor):
    frame = random_survey(*shape)
    base = estimate_by(frame, design_of(frame), ["binary", "score"], by=["sex", "disability"])
    scaled = estimate_by(frame, design_of(frame, frame["weight"] * factor), ["binary", "score"],
                         by=["sex", "disability"])
    # (deff is not scale-free in R either: it uses sum(w) as the population size)
    for column in ("estimate", "se"):
        np.testing.assert_allclose(scaled[column], base[column], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(scaled["n_weighted"], base["n_weighted"] * factor, rtol=1e-9)
    totals = estimate_by(frame, design_of(frame), "score", statistic="total")
    totals_scaled = estimate_by(frame, design_of(frame, frame["weight"] * factor), "score",
                                statistic="total")
    np.testing.assert_allclose(totals_scaled["estimate"], totals["estimate"] * factor, rtol=1e-9)
    np.testing.assert_allclose(totals_scaled["se"], totals["se"] * factor, rtol=1e-9)


@PROPERTY_SETTINGS
@given(shape=survey_shapes)
def test_domain_estimate_is_the_full_design_ratio_with_the_domain_indicator(shape):
    frame = random_survey(*shape)
    design = design_of(frame)
    by_cell = estimate_by(frame, design, "score", by=["disability"], margins=False).set_index("cell")
    in_domain = (frame["disability"] == "yes").astype(float)
    # the domain mean is the ratio of two full-design totals: sum(w y 1_d) / sum(w 1_d)
    ratio = estimate_by(
        frame.assign(y_in_domain=frame["score"] * in_domain,
                     in_domain=in_domain.where(frame["score"].notna())),
        design, "y_in_domain", statistic="ratio", denominator="in_domain",
    ).iloc[0]
    masked = estimate_by(frame, design, "score", domain=frame["disability"] == "yes").iloc[0]
    if by_cell.loc["yes", "n_unweighted"] == 0:
        assert np.isnan(by_cell.loc["yes", "estimate"])
        return
    for other in (ratio, masked):
        np.testing.assert_allclose(other["estimate"], by_cell.loc["yes", "estimate"], rtol=1e-10)
        np.testing.assert_allclose(other["se"], by_cell.loc["yes", "se"], rtol=1e-9, atol=1e-12)


def test_domain_variance_differs_from_subsetting_first():
    """Subsetting rows before computing the variance (the classic mistake) changes the SE."""
    frame = random_survey(3, 3, 4, 10)
    full = estimate_by(frame, design_of(frame), "score", by=["disability"], margins=False)
    subset = frame[frame["disability"] == "yes"].reset_index(drop=True)
    wrong = estimate_by(subset, SurveyDesign.from_frame(subset, weight="weight", strata="stratum",
                                                        psu="psu", single_psu="adjust"), "score")
    right = full.set_index("cell").loc["yes"]
    assert right["estimate"] == pytest.approx(wrong["estimate"].iloc[0], rel=1e-12)
    assert abs(right["se"] - wrong["se"].iloc[0]) > 1e-6 * right["se"]


def test_frame_and_design_must_have_the_same_rows():
    frame = random_survey(1, 2, 3, 4)
    with pytest.raises(SurveyDesignError, match="rows but the design has"):
        estimate_by(frame.iloc[:10], design_of(frame), "score")


def test_replicate_and_taylor_ses_agree_on_a_large_simple_design():
    rng = np.random.default_rng(42)
    n_psu, rows = 200, 20
    psu = np.repeat(np.arange(n_psu), rows)
    frame = pd.DataFrame({
        "psu": psu,
        "stratum": psu % 20,
        "weight": rng.uniform(1, 3, n_psu * rows),
        "sex": rng.choice(["female", "male"], n_psu * rows),
        "y": (rng.normal(0, 1, n_psu * rows) + rng.normal(0, 0.7, n_psu)[psu] > 0.3).astype(float),
    })
    taylor = SurveyDesign.from_frame(frame, weight="weight", psu="psu")
    base = estimate_by(frame, taylor, "y", by="sex")
    jk1 = estimate_by(frame, taylor.to_replicate("jk1"), "y", by="sex")
    np.testing.assert_allclose(jk1["se"], base["se"], rtol=0.02)
    stratified = SurveyDesign.from_frame(frame, weight="weight", strata="stratum", psu="psu")
    base_strat = estimate_by(frame, stratified, "y", by="sex")
    jkn = estimate_by(frame, stratified.to_replicate("jkn"), "y", by="sex")
    np.testing.assert_allclose(jkn["se"], base_strat["se"], rtol=0.02)
    boot = estimate_by(frame, stratified.to_replicate("bootstrap", replicates=300, seed=7), "y", by="sex")
    np.testing.assert_allclose(boot["se"], base_strat["se"], rtol=0.15)
    np.testing.assert_allclose(boot["estimate"], base_strat["estimate"], rtol=1e-12)


def test_total_covariance_is_the_variance_of_totals():
    frame = random_survey(5, 3, 4, 6)
    design = design_of(frame)
    y = frame["binary"].to_numpy()
    w = design.weights
    covariance = design.total_covariance(np.column_stack([w * y, w * (1 - y)]))
    total = estimate_by(frame, design, "binary", statistic="total", ci="normal").iloc[0]
    assert covariance.shape == (2, 2)
    assert covariance[0, 0] == pytest.approx(total["se"] ** 2, rel=1e-12)
    np.testing.assert_allclose(covariance, covariance.T, rtol=1e-12)
    # the two totals add up to the total weight, estimated over the design: cov = -var
    sum_of_weights = design.total_covariance(w)[0, 0]
    assert covariance.sum() == pytest.approx(sum_of_weights, rel=1e-9, abs=1e-6)


# -- non-probability samples ---------------------------------------------------------------------


def test_non_probability_sample_is_unweighted_srs_and_says_so():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"y": rng.binomial(1, 0.3, 500).astype(float),
                          "sex": rng.choice(["female", "male"], 500)})
    frame["weight"] = 1.0
    frame.attrs["design"] = {"sample_type": "non_probability", "weight": "weight", "strata": None,
                             "psu": None, "fpc": None, "replicate_columns": [],
                             "replicate_method": None, "single_psu": "fail"}
    design = design_for(frame)
    result = estimate_by(frame, design, "y", by="sex")
    p, n = frame["y"].mean(), len(frame)
    assert result["estimate"].iloc[0] == pytest.approx(p)
    # SRS with replacement: s^2 / n with the n - 1 divisor
    assert result["se"].iloc[0] == pytest.approx(np.sqrt(frame["y"].var(ddof=1) / n), rel=1e-12)
    assert result["df"].iloc[0] == n - 1
    assert result["method"].str.contains(
        "non-probability sample: unweighted, SE assumes simple random sampling").all()


def test_design_for_needs_design_attrs():
    with pytest.raises(SurveyDesignError, match="load_processed"):
        design_for(pd.DataFrame({"y": [1.0]}))


def test_design_for_reads_the_contract():
    frame = random_survey(2, 3, 3, 5)
    frame.attrs["design"] = {"sample_type": "probability", "weight": "weight", "strata": "stratum",
                             "psu": "psu", "fpc": None, "replicate_columns": [],
                             "replicate_method": None, "replicate_scale": None,
                             "replicate_rscales": None, "fay_rho": None, "single_psu": "adjust"}
    design = design_for(frame)
    assert (design.n_strata, design.n_psu, design.df, design.single_psu) == (3, 9, 6, "adjust")
    method = estimate_by(frame, design, "binary")["method"].iloc[0]
    assert "Taylor linearisation" in method and "lonely PSU: adjust" in method and "df" in method


def test_bad_weights_give_one_line_error():
    frame = random_survey(2, 2, 2, 3)
    frame.loc[4, "weight"] = -1.0
    with pytest.raises(SurveyDesignError, match=r"weight column 'weight'.*row 4") as info:
        design_of(frame)
    assert "\n" not in str(info.value)


def test_missing_values_are_counted_per_cell():
    frame = random_survey(9, 2, 3, 20)
    result = estimate_by(frame, design_of(frame), "score", by="sex")
    for _, row in result.iterrows():
        rows = frame if row["cell"] == "all" else frame[frame["sex"] == row["cell"]]
        assert row["n_missing"] == rows["score"].isna().sum()
        assert row["n_unweighted"] == rows["score"].notna().sum()
        assert row["n_weighted"] == pytest.approx(rows.loc[rows["score"].notna(), "weight"].sum())


def test_every_cell_of_the_crossing_and_its_margins():
    frame = random_survey(4, 2, 3, 30)
    frame["age_group"] = pd.Categorical(
        np.random.default_rng(1).choice(["18-24", "25-34", "65+"], len(frame)),
        categories=["18-24", "25-34", "35-44", "65+"],  # 35-44 is empty: still a cell
    )
    result = estimate_by(frame, design_of(frame), "binary", by=["sex", "age_group"])
    assert len(result) == (2 + 1) * (4 + 1)
    empty = result[result["cell"].str.contains("35-44")]
    assert (empty["n_unweighted"] == 0).all() and empty["estimate"].isna().all()
    # a margin is the weighted combination of its cells
    cells = result[result["breakdown"] == "sex × age_group"]
    female = cells[cells["cell"].str.startswith("female")].dropna(subset=["estimate"])
    margin = result[(result["breakdown"] == "sex") & (result["cell"] == "female")].iloc[0]
    assert margin["estimate"] == pytest.approx(
        np.average(female["estimate"], weights=female["n_weighted"]), rel=1e-12)


def test_proportion_logit_ci_stays_inside_zero_one():
    frame = random_survey(11, 2, 3, 8)
    frame["rare"] = 0.0
    frame.loc[:2, "rare"] = 1.0
    result = estimate_by(frame, design_of(frame), "rare", statistic="proportion")
    row = result.iloc[0]
    assert 0 < row["ci_low"] < row["estimate"] < row["ci_high"] < 1
    wald = estimate_by(frame, design_of(frame), "rare", ci="t").iloc[0]
    assert wald["ci_low"] < 0  # the Wald interval would cross zero


# -- known truth: coverage of 95% intervals --------------------------------------------------------


@pytest.mark.slow  # ~5-10 s: 300 seeded samples
def test_confidence_intervals_cover_the_truth_at_the_nominal_rate():
    """Repeated stratified cluster samples from one simulated population (seeded): the 95% CIs of
    a proportion overall and in a domain cover the population values at close to 95%."""
    rng = np.random.default_rng(2024)
    n_strata, clusters_per_stratum, cluster_size = 10, 40, 30
    n_clusters = n_strata * clusters_per_stratum
    cluster = np.repeat(np.arange(n_clusters), cluster_size)
    stratum = cluster // clusters_per_stratum
    disability = rng.random(len(cluster)) < 0.25
    latent = rng.normal(0, 0.8, n_clusters)[cluster] + 0.3 * stratum / n_strata + 0.6 * disability
    y = (latent + rng.normal(0, 1, len(cluster)) > 1.0).astype(float)
    population = pd.DataFrame({"stratum": stratum, "psu": cluster, "y": y,
                               "disability": np.where(disability, "yes", "no")})
    truth_all = y.mean()
    truth_domain = y[disability].mean()
    sampled_per_stratum = 5
    replications = 300
    covered_all = covered_domain = 0
    for _ in range(replications):
        chosen = np.concatenate([
            rng.choice(np.arange(h * clusters_per_stratum, (h + 1) * clusters_per_stratum),
                       sampled_per_stratum, replace=False) for h in range(n_strata)
        ])
        sample = population[np.isin(population["psu"].to_numpy(), chosen)].reset_index(drop=True)
        sample["weight"] = clusters_per_stratum / sampled_per_stratum
        sample["fpc"] = clusters_per_stratum
        design = SurveyDesign.from_frame(sample, weight="weight", strata="stratum", psu="psu", fpc="fpc")
        result = estimate_by(sample, design, "y", by="disability", ci="t").set_index("cell")
        covered_all += result.loc["all", "ci_low"] <= truth_all <= result.loc["all", "ci_high"]
        covered_domain += result.loc["yes", "ci_low"] <= truth_domain <= result.loc["yes", "ci_high"]
    assert 0.90 <= covered_all / replications <= 0.98
    assert 0.90 <= covered_domain / replications <= 0.98


def test_category_shares_of_arrow_backed_strings_with_missing_values():
    """Processed Parquet gives Arrow-backed string columns; missing values leave the denominator."""
    values = ["yes", "no", None, "no", "yes", "yes"]
    weights = [1.0, 2.0, 5.0, 1.0, 1.0, 1.0]
    frame = pd.DataFrame({"disability": pd.array(values, dtype="string[pyarrow]"), "w": weights})
    design = SurveyDesign.from_frame(frame, weight="w")
    table = estimate_by(frame, design, ["disability"], statistic="proportion")
    shares = dict(zip(table["indicator"], table["estimate"]))
    assert shares["disability=yes"] == pytest.approx(3 / 6)
    assert shares["disability=no"] == pytest.approx(3 / 6)
    assert set(table["n_missing"]) == {1}
