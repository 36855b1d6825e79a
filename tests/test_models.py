"""Survey GLMs, predictive margins and MAIHDA.

Reference values: ``../shared/golden/r_survey.json`` (R survey 4.1-1 ``svyglm``),
``../shared/golden/inequality_measures.json`` (logistic model with an interaction on apistrat),
``../shared/golden/fixtures.json`` key ``maihda`` (lme4 ``lmer`` REML on
``../shared/data/fixtures/maihda.csv``). Planted truth: seeded simulations with known variance
components.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from analysis import models
from analysis.models import MaihdaConvergenceWarning, ModelError
from analysis.survey import SurveyDesign, cell_means_with_covariance
from analysis.tables import RESULT_COLUMNS, validate


def close(actual, expected, rtol=1e-6, atol=0.0):
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def apistrat(r_survey_dir):
    frame = pd.read_csv(r_survey_dir / "apistrat.csv")
    frame["y"] = (frame["api00"] < 600).astype(float)
    frame["A"] = (frame["meals"] > 50).astype(float)
    frame["B"] = (frame["ell"] > 30).astype(float)
    frame["meals_high"] = np.where(frame["A"] == 1, "yes", "no")
    frame["ell_high"] = np.where(frame["B"] == 1, "yes", "no")
    return frame, SurveyDesign.from_frame(frame, weight="pw", strata="stype", fpc="fpc")


# ---------------------------------------------------------------------------------------------
# svyglm against R
# ---------------------------------------------------------------------------------------------


def test_linear_model_matches_svyglm_stratified(golden, apistrat):
    ref = golden("r_survey")["strat_glm_api00"]
    frame, design = apistrat
    fit = models.survey_glm("api00 ~ ell + meals + mobility", frame, design)
    assert list(fit.params.index) == ["Intercept", "ell", "meals", "mobility"]
    close(fit.params, ref["estimate"])
    close(fit.se, ref["se"])


def test_logistic_model_matches_svyglm_cluster(golden, r_survey_dir):
    ref = golden("r_survey")["clus1_logit_schwide"]
    frame = pd.read_csv(r_survey_dir / "apiclus1.csv")
    frame["sch_wide"] = (frame["sch.wide"] == "Yes").astype(float)
    design = SurveyDesign.from_frame(frame, weight="pw", psu="dnum", fpc="fpc")
    fit = models.survey_glm("sch_wide ~ ell + meals", frame, design, family="binomial")
    close(fit.params, ref["estimate"])
    close(fit.se, ref["se"], rtol=1e-6)


def test_logistic_interaction_and_reri_match_reference(golden, apistrat):
    ref = golden("inequality_measures")["intersectional_apistrat"]
    frame, design = apistrat
    fit = models.survey_glm("y ~ A * B", frame, design, family="binomial")
    assert list(fit.params.index) == ["Intercept", "A", "B", "A:B"]
    # R's glm stops at a relative deviance change of 1e-8; agreement to 1e-7 absolute
    close(fit.params, ref["logit_coefficients"]["estimate"], rtol=0, atol=1e-6)
    close(fit.se, ref["logit_coefficients"]["se"], rtol=1e-6)
    reri = fit.reri_odds_ratio("A", "B", "A:B")
    close([reri["estimate"], reri["se"]], [ref["RERI_odds_ratio_delta"]["estimate"],
                                           ref["RERI_odds_ratio_delta"]["se"]], rtol=1e-5)
    close([reri["ci_low"], reri["ci_high"]], ref["RERI_odds_ratio_delta"]["ci"], rtol=0, atol=0.01)


def test_linear_interaction_is_the_excess_intersectional_disparity(golden, apistrat):
    ref = golden("inequality_measures")["intersectional_apistrat"]["excess_intersectional_disparity"]
    frame, design = apistrat
    fit = models.survey_glm("y ~ A * B", frame, design)
    close([fit.params["A:B"], fit.se["A:B"]], [ref["estimate"], ref["se"]])


def test_coefficients_table_is_the_result_schema(apistrat):
    frame, design = apistrat
    table = models.survey_glm("y ~ A * B", frame, design, family="binomial").coefficients(source="apistrat")
    validate(table)
    assert list(table.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert (table["source"] == "apistrat").all() and (table["n_unweighted"] == 200).all()
    # t quantile with the design's df minus coefficients plus one (200 schools - 3 strata - 4 + 1)
    row = table.iloc[1]
    from scipy import stats

    q = stats.t.ppf(0.975, 194)
    close(row["ci_high"] - row["estimate"], q * row["se"])


# ---------------------------------------------------------------------------------------------
# Margins
# ---------------------------------------------------------------------------------------------


def test_margins_of_a_saturated_model_are_the_domain_means(apistrat):
    """With y ~ A*B the predictive margin of A within each B is the cell mean: same estimate and
    the same design-based SE as the domain mean."""
    frame, design = apistrat
    fit = models.survey_glm("y ~ meals_high * ell_high", frame, design, family="binomial")
    margins = fit.predictive_margins("meals_high", by="ell_high", disclosure=False)
    validate(margins)
    cells, cov = cell_means_with_covariance(frame, design, "y", ["meals_high", "ell_high"])
    expected = cells.set_index("cell")
    for _, row in margins.iterrows():
        close([row["estimate"], row["se"]], expected.loc[row["cell"], ["estimate", "se"]], rtol=1e-6)
    # the average marginal effect within ell_high == no is the referent disparity of the cells
    ame = fit.average_marginal_effects("meals_high", by="ell_high", disclosure=False).set_index("cell")
    labels = list(cells["cell"])
    i, j = labels.index("yes × no"), labels.index("no × no")
    diff = cells["estimate"].iloc[i] - cells["estimate"].iloc[j]
    se = np.sqrt(cov[i, i] + cov[j, j] - 2 * cov[i, j])
    close(ame.loc["yes − no × no", ["estimate", "se"]], [diff, se], rtol=1e-6)


def test_average_marginal_effect_of_a_slope_without_interaction_is_the_coefficient(apistrat):
    frame, design = apistrat
    fit = models.survey_glm("api00 ~ ell + meals", frame, design)
    ame = fit.average_marginal_effects("meals")
    close([ame["estimate"].iloc[0], ame["se"].iloc[0]], [fit.params["meals"], fit.se["meals"]], rtol=1e-6)
    assert ame["cell"].iloc[0] == "dy/dx"


def test_margins_with_a_main_effect_and_its_interaction(apistrat):
    """AME of a binary variable whose effect varies with a continuous one: prediction over the
    sample equals the by-hand average of predicted differences."""
    frame, design = apistrat
    fit = models.survey_glm("y ~ meals_high * ell", frame, design, family="binomial")
    ame = fit.average_marginal_effects("meals_high")
    b = fit.params
    eta0 = b["Intercept"] + b["ell"] * frame["ell"]
    eta1 = eta0 + b["meals_high[T.yes]"] + b["meals_high[T.yes]:ell"] * frame["ell"]
    expected = np.average(1 / (1 + np.exp(-eta1)) - 1 / (1 + np.exp(-eta0)), weights=frame["pw"])
    close(ame["estimate"].iloc[0], expected)
    assert ame["se"].iloc[0] > 0


# ---------------------------------------------------------------------------------------------
# Bad input and missing rows
# ---------------------------------------------------------------------------------------------


def test_rows_with_missing_values_are_excluded_and_counted(apistrat):
    frame, design = apistrat
    holes = frame.copy()
    holes.loc[[3, 10, 50], "ell"] = np.nan
    fit = models.survey_glm("api00 ~ ell + meals", holes, design)
    assert fit.n_used == 197 and fit.n_excluded == 3
    assert fit.excluded_reasons == {"missing value in a model variable": 3}


def test_clear_errors(apistrat):
    frame, design = apistrat
    with pytest.raises(ModelError, match="family"):
        models.survey_glm("y ~ A", frame, design, family="poisson")
    with pytest.raises(ModelError, match="values in \\[0, 1\\]"):
        models.survey_glm("api00 ~ A", frame, design, family="binomial")
    with pytest.raises(ModelError, match="rank deficient"):
        models.survey_glm("y ~ A + I(2 * A)", frame, design)
    with pytest.raises(ModelError, match="formula"):
        models.survey_glm("y ~ no_such_column", frame, design)
    with pytest.raises(ModelError, match="logistic"):
        models.survey_glm("y ~ A * B", frame, design).reri_odds_ratio("A", "B", "A:B")


# ---------------------------------------------------------------------------------------------
# MAIHDA
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def maihda_fixture(shared_dir, golden):
    frame = pd.read_csv(shared_dir / "data" / "fixtures" / "maihda.csv")
    return frame, golden("fixtures")["maihda"]


@pytest.fixture(scope="module")
def maihda_fit(maihda_fixture):
    frame, _ = maihda_fixture
    return models.maihda(frame, "score", ["sex", "age_group", "disability", "displaced"],
                         main_effects="sex + age_group + disability + displaced")


def test_maihda_matches_lme4(maihda_fixture, maihda_fit):
    _, ref = maihda_fixture
    fit = maihda_fit
    rtol = 1e-3
    close([fit.null.stratum_var, fit.null.residual_var, fit.null.vpc],
          [ref["null"]["stratum_var"], ref["null"]["residual_var"], ref["null"]["vpc"]], rtol=rtol)
    close(fit.null.fe_params.iloc[0], ref["null"]["intercept"], rtol=rtol)
    close([fit.main.stratum_var, fit.main.residual_var, fit.main.vpc],
          [ref["main"]["stratum_var"], ref["main"]["residual_var"], ref["main"]["vpc"]], rtol=rtol)
    close(fit.pcv, ref["pcv"], rtol=rtol)
    close(fit.fixed_effects.to_numpy(), ref["main"]["fixef"], rtol=rtol)
    # stratum labels: R's interaction() joins with ".", ours with " × "
    blups = fit.strata.set_index("stratum")["blup"]
    ours = [blups[" × ".join(label.split("."))] for label in ref["null_stratum_blup"]["strata"]]
    close(ours, ref["null_stratum_blup"]["blup"], rtol=rtol, atol=1e-3 * 0.3)
    assert fit.null.converged and fit.main.converged


def test_maihda_tables_are_the_result_schema(maihda_fit):
    summary = maihda_fit.summary_table(source="fixture")
    validate(summary)
    assert set(summary["cell"]) >= {"null: VPC", "main: stratum variance", "PCV"}
    strata = maihda_fit.stratum_table()
    validate(strata)
    assert len(strata) == 24 and strata["method"].str.contains("shrunken").all()
    assert (strata["ci_low"] < strata["estimate"]).all() and (strata["estimate"] < strata["ci_high"]).all()
    interaction = maihda_fit.stratum_table(model="interaction")
    close(interaction["estimate"], maihda_fit.strata["blup_main"])
    close(interaction["estimate"].mean(), 0.0, atol=1e-6)  # BLUPs of a random intercept centre on 0
    with pytest.raises(ModelError, match="model="):
        maihda_fit.stratum_table(model="other")


def test_maihda_prediction_se_by_hand_for_the_null_model(maihda_fit):
    """Null model: Var(b0 + u_j) from the mixed-model equations = s2u - s2u^2 n_j / (s2e + n_j s2u)
    + (1 - g_j n_j)^2 Var(b0) with g_j = s2u / (s2e + n_j s2u) (prediction error of a BLUP)."""
    s2u, s2e = maihda_fit.null.stratum_var, maihda_fit.null.residual_var
    n = maihda_fit.strata["n"].to_numpy(float)
    shrink = n * s2u / (s2e + n * s2u)
    cond_u = s2u * (1 - shrink)
    var_b0 = 1 / np.sum(n / (s2e + n * s2u))
    expected = np.sqrt(cond_u + (1 - shrink) ** 2 * var_b0)
    close(maihda_fit.strata["predicted_null_se"], expected, rtol=1e-6)


def simulate_strata(seed, per_stratum=30, stratum_var=4.0, residual_sd=5.0):
    """24 intersectional strata with additive main effects and a planted stratum effect."""
    rng = np.random.default_rng(seed)
    strata = [(s, a, d, p) for s in ("female", "male") for a in ("18-34", "35-64", "65+")
              for d in ("no", "yes") for p in ("host", "idp")]  # fmt: skip
    effects = rng.normal(0, np.sqrt(stratum_var), len(strata))
    pieces = []
    for (sex, age, disability, displaced), u in zip(strata, effects):
        n = rng.poisson(per_stratum)
        mean = (50 + 2 * (sex == "female") + 3 * ("18-34", "35-64", "65+").index(age)
                + 6 * (disability == "yes") + 4 * (displaced == "idp") + u)  # fmt: skip
        pieces.append(pd.DataFrame({"sex": sex, "age_group": age, "disability": disability,
                                    "displacement_status": displaced,
                                    "score": mean + rng.normal(0, residual_sd, n)}))  # fmt: skip
    return pd.concat(pieces, ignore_index=True)


@pytest.mark.slow
def test_maihda_recovers_a_planted_stratum_variance():
    covered, estimates = 0, []
    for seed in range(10):
        fit = models.maihda(simulate_strata(seed), "score",
                            ["sex", "age_group", "disability", "displacement_status"])
        low, high = fit.main.stratum_var_interval()
        covered += low <= 4.0 <= high
        estimates.append(fit.main.stratum_var)
        assert fit.pcv > 0.5  # the planted main effects explain most between-stratum variance
    # log-scale Wald intervals with 24 strata cover somewhat below 95%: at least 8 of 10
    assert covered >= 8
    assert 2.5 < np.mean(estimates) < 5.5


def test_maihda_binary_outcome_is_a_linear_probability_model():
    frame = simulate_strata(1, per_stratum=15)
    frame["high"] = (frame["score"] > frame["score"].median()).astype(float)
    fit = models.maihda(frame, "high", ["sex", "age_group", "disability", "displacement_status"])
    assert fit.binary and "linear probability model" in fit.method
    assert 0 <= fit.null.vpc <= 1


def test_maihda_warns_when_no_optimiser_reaches_the_optimum(monkeypatch):
    frame = simulate_strata(2, per_stratum=10)
    monkeypatch.setattr(models, "_at_maximum", lambda *args: False)
    with pytest.warns(MaihdaConvergenceWarning, match="no optimiser reached a verified optimum"):
        fit = models.maihda(frame, "score", ["sex", "age_group", "disability", "displacement_status"],
                            optimisers=("lbfgs",))
    # the direct fit, then statsmodels' fallback: one optimiser, from the moment start and from
    # the default start
    assert not fit.null.converged
    assert list(fit.null.attempts) == ["profiled REML (direct)", "statsmodels lbfgs (moment start)",
                                       "statsmodels lbfgs (default start)"]  # fmt: skip


DIMENSIONS = ["sex", "age_group", "disability", "displacement_status"]
MAIN = "C(sex) + C(age_group) + C(disability) + C(displacement_status)"


def statsmodels_mixedlm(frame, rhs, method, **tolerances):
    """statsmodels MixedLM REML on the same model, run to tight tolerances (an independent fit)."""
    import statsmodels.formula.api as smf

    strata = pd.Series([" × ".join(v) for v in frame[DIMENSIONS].astype(str).to_numpy()])
    model = smf.mixedlm(f"score ~ {rhs}", frame, groups=strata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit(reml=True, method=method, maxiter=5000, **tolerances)
    assert result.converged
    return result


@pytest.mark.parametrize("model, rhs", [("null", "1"), ("main", MAIN)])
def test_maihda_direct_fit_reaches_the_statsmodels_optimum(model, rhs):
    # rows in random order: strata do not come in sorted blocks
    frame = simulate_strata(0, per_stratum=20).sample(frac=1, random_state=5).reset_index(drop=True)
    fitted = models.maihda(frame, "score", DIMENSIONS)
    ours = getattr(fitted, model)
    assert ours.optimiser == "profiled REML (direct)" and ours.converged  # no fallback
    ref = statsmodels_mixedlm(frame, rhs, "bfgs", gtol=1e-10)
    if model == "main":  # its design is built on one row per stratum: the terms of patsy on all rows
        assert list(fitted.fixed_effects.index) == list(ref.fe_params.index)
    close(ours.stratum_var, ref.cov_re.iloc[0, 0], rtol=1e-6)
    close(ours.residual_var, ref.scale, rtol=1e-6)
    close(ours.fe_params, ref.fe_params, rtol=1e-6)
    blups = pd.Series({s: float(v.iloc[0]) for s, v in ref.random_effects.items()})
    close(ours.random_effects[blups.index], blups, rtol=1e-6)


def test_maihda_direct_fit_finds_a_boundary_optimum_as_statsmodels():
    """No planted stratum effect: the main model's REML optimum is at s2_u = 0, which the direct
    fit returns exactly (statsmodels' Powell stops a hair above it)."""
    frame = simulate_strata(6, per_stratum=20, stratum_var=0.0)
    ours = models.maihda(frame, "score", DIMENSIONS).main
    assert ours.optimiser == "profiled REML (direct)" and ours.converged
    assert ours.stratum_var == 0.0 and (ours.random_effects == 0).all()
    ref = statsmodels_mixedlm(frame, MAIN, "powell", xtol=1e-12, ftol=1e-14)
    assert ref.cov_re.iloc[0, 0] < 1e-8 * ref.scale
    close(ours.residual_var, ref.scale, rtol=1e-6)
    close(ours.fe_params, ref.fe_params, rtol=1e-6)
    blups = np.array([float(v.iloc[0]) for v in ref.random_effects.values()])
    close(blups, 0.0, atol=1e-6)


def test_maihda_statsmodels_engine_agrees_with_the_direct_fit(maihda_fixture, maihda_fit):
    """``engine="statsmodels"`` (the previous implementation, timed by bench/bench_maihda.py)
    reaches the same optimum within its acceptance rule (a Newton decrement below 0.01, i.e. a
    hundredth of a standard error: about 1e-3 relative here, the lme4 test's tolerance)."""
    frame, _ = maihda_fixture
    old = models.maihda(frame, "score", ["sex", "age_group", "disability", "displaced"],
                        main_effects="sex + age_group + disability + displaced", engine="statsmodels")
    for new, ref in ((maihda_fit.null, old.null), (maihda_fit.main, old.main)):
        assert ref.optimiser.startswith("statsmodels") and ref.converged
        close([new.stratum_var, new.residual_var], [ref.stratum_var, ref.residual_var], rtol=1e-3)
        close(new.fe_params, ref.fe_params, rtol=1e-3)
        assert new.loglik >= ref.loglik - 1e-9  # the direct fit is at least as good
    close(maihda_fit.strata.drop(columns="stratum"), old.strata.drop(columns="stratum"), rtol=1e-3, atol=1e-5)
    with pytest.raises(ModelError, match="engine="):
        models.maihda(frame, "score", ["sex", "age_group"], engine="lme4")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), per_stratum=st.integers(2, 40),
       stratum_var=st.sampled_from([0.0, 0.3, 4.0, 100.0]), reml=st.booleans())
@example(seed=2623, per_stratum=6, stratum_var=0.3, reml=False)  # the fallback case below
@example(seed=6, per_stratum=20, stratum_var=0.0, reml=True)  # a boundary optimum
def test_maihda_direct_fit_is_at_a_maximum_of_the_closed_form_likelihood(seed, per_stratum, stratum_var, reml):
    """The returned variances pass ``_at_maximum``, and the direct fit's likelihood is never below
    theirs. (When ``_at_maximum``'s finite-difference information is inconclusive, e.g. hypothesis'
    seed 2623, 6 per stratum, ML: a stratum variance 1/2000 of the residual one, curvature 1e-4 in
    log s2_u, the fit falls back to statsmodels, whose point passes, at the same likelihood.)"""
    frame = simulate_strata(seed, per_stratum=per_stratum, stratum_var=stratum_var)
    frame = frame.rename(columns={"score": "_y"})
    frame["_stratum"] = [" × ".join(v) for v in frame[DIMENSIONS].astype(str).to_numpy()]
    strata = sorted(frame["_stratum"].unique())
    for rhs in ("1", MAIN):
        fit, sums = models._fit_mixed(f"_y ~ {rhs}", frame, strata, models.OPTIMISERS, reml)
        assert fit.converged and fit.stratum_var >= 0 and fit.residual_var > 0, fit.attempts
        assert models._at_maximum(fit.stratum_var, fit.residual_var, sums, reml)
        s2u, s2e, _, _ = models._direct_fit(sums, reml)
        direct = models._random_intercept_loglik(np.log([max(s2u, 1e-8 * s2e), s2e]), sums, reml)
        assert direct >= fit.loglik - 1e-6


def test_maihda_counts_excluded_rows_and_explains_bad_input():
    frame = simulate_strata(3, per_stratum=10)
    frame.loc[:4, "score"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", MaihdaConvergenceWarning)
        fit = models.maihda(frame, "score", ["sex", "age_group", "disability", "displacement_status"])
    assert fit.n_excluded == 5 and fit.n_used == len(frame) - 5
    with pytest.raises(ModelError, match="not in the data"):
        models.maihda(frame, "score", ["sex", "no_such_dimension"])


def test_margins_resting_on_a_small_cell_are_suppressed(apistrat):
    """apistrat has 7 schools with few free meals and many English learners: the margin of that
    cell (in a saturated model, their mean) and the effect built on it are not published."""
    frame, design = apistrat
    fit = models.survey_glm("y ~ meals_high * ell_high", frame, design, family="binomial")
    margins = fit.predictive_margins("meals_high", by="ell_high")
    validate(margins)
    margins = margins.set_index("cell")
    assert margins.loc["no × yes", "flag"] == "suppressed" and np.isnan(margins.loc["no × yes", "estimate"])
    assert margins.loc["no × no", "n_unweighted"] == 113 and margins.loc["no × no", "flag"] == "ok"
    effects = fit.average_marginal_effects("meals_high", by="ell_high").set_index("cell")
    assert effects.loc["yes − no × yes", "flag"] == "suppressed"
    assert effects.loc["yes − no × no", "n_unweighted"] == 34  # the smaller of 113 and 34


def test_missing_categories_from_nullable_columns_are_excluded(apistrat):
    frame, design = apistrat
    holes = frame.assign(meals_high=frame["meals_high"].astype("string"))
    holes.loc[[0, 1], "meals_high"] = pd.NA
    fit = models.survey_glm("y ~ meals_high", holes, design, family="binomial")
    assert fit.n_excluded == 2
