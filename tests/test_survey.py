"""Survey estimation against R's survey package (../shared/golden) and planted truth.

Reference values: ``golden/r_survey.json`` (R 4.2.2, survey 4.1-1 on the ``data/r-survey``
fixtures; each entry records its design and R call) and the replicate-weight entries of
``golden/fixtures.json``. R's ``confint`` on ``svymean``/``svytotal`` uses the normal quantile,
so those entries are compared with ``ci="normal"``; ``svyciprop(method="logit")`` uses the
design degrees of freedom, our ``ci="logit"``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.survey import (
    SurveyDesign,
    SurveyDesignError,
    cell_means_with_covariance,
    contrast,
    design_effect,
    design_for,
    estimate_by,
)
from analysis.tables import RESULT_COLUMNS, conform

RTOL = 1e-6


def assert_close(actual, expected, rtol=RTOL):
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=rtol, atol=0)


@pytest.fixture(scope="module")
def api(r_survey_dir):
    return {name: pd.read_csv(r_survey_dir / f"{name}.csv") for name in ("apistrat", "apiclus1", "apiclus2")}


@pytest.fixture(scope="module")
def nhanes(r_survey_dir):
    return pd.read_csv(r_survey_dir / "nhanes.csv")


@pytest.fixture(scope="module")
def r_golden(golden):
    return golden("r_survey")


def strat_design(frame, fpc=True):
    return SurveyDesign.from_frame(frame, weight="pw", strata="stype", fpc="fpc" if fpc else None)


def clus1_design(frame):
    return SurveyDesign.from_frame(frame, weight="pw", psu="dnum", fpc="fpc")


def nhanes_design(frame):
    return SurveyDesign.from_frame(frame, weight="WTMEC2YR", strata="SDMVSTRA", psu="SDMVPSU")


def check_entry(row, entry, keys=("estimate", "se", "ci_low", "ci_high")):
    for key in keys:
        if key in entry:
            assert_close(row[key], entry[key])


# -- golden: Taylor designs ------------------------------------------------------------------


def test_stratified_mean_with_fpc_and_deff(api, r_golden):
    result = estimate_by(api["apistrat"], strat_design(api["apistrat"]), "api00", ci="normal")
    assert list(result.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    row = result.iloc[0]
    assert row["breakdown"] == "all" and row["cell"] == "all"
    check_entry(row, r_golden["strat_mean_api00"])
    assert_close(row["deff"], r_golden["strat_mean_api00_deff"]["deff"])
    assert row["n_unweighted"] == 200 and row["df"] == 197
    conform(result)  # the schema part validates


def test_stratified_mean_without_fpc(api, r_golden):
    result = estimate_by(api["apistrat"], strat_design(api["apistrat"], fpc=False), "api00", ci="normal")
    check_entry(result.iloc[0], r_golden["strat_nofpc_mean_api00"])


def test_stratified_total(api, r_golden):
    result = estimate_by(api["apistrat"], strat_design(api["apistrat"]), "enroll",
                         statistic="total", ci="normal")
    check_entry(result.iloc[0], r_golden["strat_total_enroll"])


def test_one_stage_cluster_mean_and_total(api, r_golden):
    frame = api["apiclus1"]
    design = clus1_design(frame)
    check_entry(estimate_by(frame, design, "api00", ci="normal").iloc[0], r_golden["clus1_mean_api00"])
    check_entry(estimate_by(frame, design, "enroll", statistic="total", ci="normal").iloc[0],
                r_golden["clus1_total_enroll"])


def test_two_stage_cluster_with_fpc_at_both_stages(api, r_golden):
    frame = api["apiclus2"]
    # no weights: computed from the population sizes, as svydesign(id=~dnum+snum, fpc=~fpc1+fpc2)
    design = SurveyDesign.from_frame(frame, psu=["dnum", "snum"], fpc=["fpc1", "fpc2"])
    assert_close(design.weights, frame["pw"])
    check_entry(estimate_by(frame, design, "api00", ci="normal").iloc[0], r_golden["clus2_mean_api00"])


def test_domains_one_dimension(api, r_golden):
    frame = api["apiclus1"]
    entry = r_golden["clus1_by_stype_mean_api00"]
    result = estimate_by(frame, clus1_design(frame), "api00", by=["stype"], margins=False)
    result = result.set_index("cell").loc[entry["domains"]]
    assert_close(result["estimate"], entry["estimate"])
    assert_close(result["se"], entry["se"])


def test_intersection_two_dimensions_with_margins(api, r_golden):
    frame = api["apistrat"]
    entry = r_golden["strat_by_stype_x_awards_mean_api00"]
    result = estimate_by(frame, strat_design(frame), "api00", by=["stype", "awards"])
    assert list(dict.fromkeys(result["breakdown"])) == ["all", "stype", "awards", "stype × awards"]
    cells = result[result["breakdown"] == "stype × awards"].set_index("cell")
    labels = [d.replace(":", " × ") for d in entry["domains"]]
    assert_close(cells.loc[labels, "estimate"], entry["estimate"])
    assert_close(cells.loc[labels, "se"], entry["se"])
    # the margins are the one-dimensional domains, and "all" is the whole sample
    overall = estimate_by(frame, strat_design(frame), "api00")
    assert_close(result.iloc[0]["se"], overall.iloc[0]["se"], rtol=1e-12)


def test_ratio(api, r_golden):
    frame = api["apiclus1"]
    result = estimate_by(frame, clus1_design(frame), "api.stu", statistic="ratio", denominator="enroll")
    check_entry(result.iloc[0], r_golden["clus1_ratio_apistu_enroll"], keys=("estimate", "se"))


def test_proportions_of_each_category(api, r_golden):
    frame = api["apistrat"]
    entry = r_golden["strat_prop_awards"]
    result = estimate_by(frame, strat_design(frame), "awards", statistic="proportion", ci="normal")
    assert list(result["indicator"]) == ["awards=No", "awards=Yes"]
    for key in ("estimate", "se", "ci_low", "ci_high"):
        assert_close(result[key], entry[key])


def test_proportion_logit_interval_uses_design_df(api, r_golden):
    frame = api["apiclus1"].assign(both_yes=lambda f: (f["both"] == "Yes").astype(float))
    result = estimate_by(frame, clus1_design(frame), "both_yes", statistic="proportion")
    row = result.iloc[0]
    assert row["df"] == 14  # 15 PSUs - 1 stratum
    check_entry(row, r_golden["clus1_prop_both_ciprop_logit"], keys=("estimate", "ci_low", "ci_high"))
    assert "logit" in row["method"]


def test_domain_keeps_full_design(api, r_golden):
    frame = api["apiclus1"]
    result = estimate_by(frame, clus1_design(frame), "api00", domain=frame["stype"] == "E", ci="normal")
    check_entry(result.iloc[0], r_golden["clus1_subset_mean_api00_stypeE"])


def test_nhanes_mean_with_missing_values(nhanes, r_golden):
    result = estimate_by(nhanes, nhanes_design(nhanes), "HI_CHOL", ci="normal")
    row = result.iloc[0]
    check_entry(row, r_golden["nhanes_mean_hichol"])
    assert row["n_missing"] == nhanes["HI_CHOL"].isna().sum()
    assert row["n_unweighted"] == nhanes["HI_CHOL"].notna().sum()


def test_nhanes_race_by_age_by_sex_intersection(nhanes, r_golden):
    entry = r_golden["nhanes_by_race_agecat_sex_mean_hichol"]
    frame = nhanes.assign(
        race=nhanes["race"].astype(int).astype(str),
        RIAGENDR=nhanes["RIAGENDR"].astype(int).astype(str),
    )
    result = estimate_by(frame, nhanes_design(frame), "HI_CHOL", by=["race", "agecat", "RIAGENDR"])
    cells = result[result["breakdown"] == "race × agecat × RIAGENDR"].set_index("cell")
    assert len(cells) == 32
    labels = [d.replace(":", " × ") for d in entry["domains"]]
    assert_close(cells.loc[labels, "estimate"], entry["estimate"])
    expected_se = np.asarray(entry["se"])
    nonzero = expected_se > 0
    assert_close(cells.loc[labels, "se"].to_numpy()[nonzero], expected_se[nonzero])
    assert np.all(cells.loc[labels, "se"].to_numpy()[~nonzero] == 0)


def test_nhanes_sex_difference_with_covariance(nhanes, r_golden):
    entry = r_golden["nhanes_by_sex_diff_hichol"]
    frame = nhanes.assign(sex=nhanes["RIAGENDR"].map({1.0: "male", 2.0: "female"}))
    table, covariance = cell_means_with_covariance(frame, nhanes_design(frame), "HI_CHOL", ["sex"])
    assert list(table["cell"]) == ["female", "male"] and covariance.shape == (2, 2)
    assert covariance[0, 1] != 0  # domains share PSUs: the covariance matters
    diff = contrast(table, covariance, "female", "male")
    assert_close(diff["estimate"], entry["estimate"])
    assert_close(diff["se"], entry["se"])
    assert diff.loc[0, "cell"] == "female − male"


# -- golden: replicate designs ---------------------------------------------------------------


def test_jk1_from_cluster_design(api, r_golden):
    frame = api["apiclus1"]
    design = clus1_design(frame).to_replicate("jk1")
    check_entry(estimate_by(frame, design, "api00", ci="normal").iloc[0], r_golden["clus1_jk1_mean_api00"])


def test_jkn_from_stratified_design(api, r_golden):
    frame = api["apistrat"]
    design = strat_design(frame, fpc=False).to_replicate("jkn")
    check_entry(estimate_by(frame, design, "api00", ci="normal").iloc[0], r_golden["strat_jkn_mean_api00"])


@pytest.fixture(scope="module")
def replicate_frame(shared_dir):
    return pd.read_csv(shared_dir / "data" / "fixtures" / "replicate_weights.csv")


@pytest.mark.parametrize(
    "entry_name, method, rho",
    [("sdr", "successive-difference", None), ("fay", "fay", 0.3), ("bootstrap", "bootstrap", None)],
)
def test_replicate_weight_designs(replicate_frame, golden, entry_name, method, rho):
    entry = golden("fixtures")[entry_name]
    frame = replicate_frame.assign(
        disability=replicate_frame["disability"].astype(str)
    )
    reps = [c for c in frame.columns if c.startswith("repwt")]
    design = SurveyDesign.from_frame(
        frame, weight="weight", replicate_columns=reps, replicate_method=method, fay_rho=rho, mse=True
    )
    result = estimate_by(frame, design, "food_insecure", by=["sex", "disability"])
    overall = result.iloc[0]
    assert_close(overall["estimate"], entry["mean"])
    assert_close(overall["se"], entry["se"])
    cells = result[result["breakdown"] == "sex × disability"].set_index("cell")
    labels = [d.replace(":", " × ") for d in entry["by_domains"]]
    assert_close(cells.loc[labels, "estimate"], entry["by_mean"])
    assert_close(cells.loc[labels, "se"], entry["by_se"])
    assert "mse=TRUE" in overall["method"]


# -- further R reference values ----------------------------------------------------------------
# Computed with R 4.2.2 Patched, survey 4.1.1 (Debian r-cran-survey) by this script:
#
#   library(survey)
#   d  <- read.csv("../shared/data/r-survey/apiclus1.csv")
#   st <- read.csv("../shared/data/r-survey/apistrat.csv")
#   for (opt in c("adjust", "average", "certainty", "remove")) {
#     options(survey.lonely.psu = opt)
#     des <- svydesign(id = ~dnum, strata = ~cname, weights = ~pw, data = d)  # lonely counties
#     print(c(coef(svymean(~api00, des)), SE(svymean(~api00, des)),
#             SE(svyby(~api00, ~stype, des, svymean))), digits = 15)
#   }
#   ds <- svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = st)
#   SE(svymean(~api00, as.svrepdesign(ds, type = "JKn")))             # JKn with fpc
#   deff(svytotal(~enroll, ds, deff = TRUE))
#   deff(svyby(~api00, ~awards, ds, svymean, deff = TRUE))
#   j1 <- as.svrepdesign(svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = d), type = "JK1")
#   SE(svyby(~api00, ~stype, j1, svymean)); degf(j1)

LONELY_PSU_R = {  # option: (SE overall, SE by stype E, H, M)
    "adjust": (22.0684757015184, 21.0745028197022, 37.1004635842658, 28.7265380413304),
    "average": (14.9708211361739, 14.6869421404509, 12.3584025040919, 21.6055518790888),
    "certainty": (7.81825635335149, 7.67000538289994, 6.17920125204594, 11.283131480223),
    "remove": (7.81825635335149, 7.67000538289994, 6.17920125204594, 11.283131480223),
}


@pytest.mark.parametrize("option", sorted(LONELY_PSU_R))
def test_lonely_psu_options_match_r(api, option):
    frame = api["apiclus1"]
    design = SurveyDesign.from_frame(frame, weight="pw", strata="cname", psu="dnum", single_psu=option)
    result = estimate_by(frame, design, "api00", by=["stype"])
    assert_close(result["estimate"].iloc[0], 644.169398907104)
    assert_close(result["se"], LONELY_PSU_R[option])
    assert f"lonely PSU: {option}" in result["method"].iloc[0]


def test_lonely_psu_fail_names_the_stratum(api):
    frame = api["apiclus1"]
    with pytest.raises(SurveyDesignError, match=r"single PSU.*stratum .*single_psu"):
        SurveyDesign.from_frame(frame, weight="pw", strata="cname", psu="dnum")


def test_jkn_with_fpc_deff_of_total_and_domain_deff(api):
    frame = api["apistrat"]
    design = strat_design(frame)
    assert_close(estimate_by(frame, design.to_replicate("jkn"), "api00")["se"].iloc[0], 9.40894080278461)
    assert_close(estimate_by(frame, design, "enroll", statistic="total")["deff"].iloc[0], 0.362018122363404)
    by_awards = estimate_by(frame, design, "api00", by="awards")
    assert_close(by_awards["deff"].iloc[1:], [1.3585008985193, 1.14283550355144])


def test_jk1_domains_and_df(api):
    frame = api["apiclus1"]
    design = clus1_design(frame).to_replicate("jk1")
    assert design.df == 14
    result = estimate_by(frame, design, "api00", by="stype")
    assert_close(result["se"].iloc[1:], [25.3743035523982, 46.344121745186, 33.6876199986314])


# Computed with R 4.2.2 Patched, survey 4.1.1:
#
#   nh  <- read.csv("../shared/data/r-survey/nhanes.csv"); nh <- nh[!is.na(nh$HI_CHOL), ]
#   des <- svydesign(id = ~SDMVPSU, strata = ~SDMVSTRA, weights = ~WTMEC2YR, nest = TRUE, data = nh)
#   b   <- svyby(~HI_CHOL, ~race, des, svymean, covmat = TRUE); vcov(b)
#   svycontrast(b, quote(`2` / `1`))
#   f    <- read.csv("../shared/data/fixtures/replicate_weights.csv"); reps <- grep("^repwt", names(f))
#   sdr  <- svrepdesign(weights = ~weight, repweights = f[, reps], type = "successive-difference",
#                       mse = TRUE, data = f)
#   svytotal(~food_insecure, sdr); vcov(svyby(~food_insecure, ~sex, sdr, svymean, covmat = TRUE))
#   boot <- svrepdesign(weights = ~weight, repweights = f[, reps], type = "bootstrap", mse = FALSE, data = f)
#   SE(svymean(~food_insecure, boot))
#   svyratio(~api.stu, ~enroll, as.svrepdesign(svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc,
#                                                        data = apiclus1), type = "JK1"))

NHANES_RACE_VCOV_R = np.array([
    [3.90105586374522e-05, 5.26864083048443e-06, -3.92282525678660e-06, -2.77197955504066e-05],
    [5.26864083048443e-06, 4.36145809174788e-05, 1.56955715898815e-05, 1.39844242587969e-05],
    [-3.92282525678660e-06, 1.56955715898815e-05, 1.07840851787425e-04, 8.37857478562086e-05],
    [-2.77197955504066e-05, 1.39844242587969e-05, 8.37857478562086e-05, 6.08422748093638e-04],
])


def test_domain_covariance_matrix_and_ratio_contrast(nhanes):
    frame = nhanes[nhanes["HI_CHOL"].notna()].reset_index(drop=True)
    frame = frame.assign(race=frame["race"].astype(int).astype(str))
    table, covariance = cell_means_with_covariance(frame, nhanes_design(frame), "HI_CHOL", "race")
    assert list(table["cell"]) == ["1", "2", "3", "4"]
    assert_close(covariance, NHANES_RACE_VCOV_R)
    ratio = contrast(table, covariance, "2", "1", kind="ratio")
    assert_close(ratio["estimate"], 1.19861276107547)
    assert_close(ratio["se"], 0.0919186763597362)


def test_replicate_total_covariance_and_mse_false(replicate_frame):
    reps = [c for c in replicate_frame.columns if c.startswith("repwt")]
    sdr = SurveyDesign.from_frame(replicate_frame, weight="weight", replicate_columns=reps,
                                  replicate_method="successive-difference", mse=True)
    total = estimate_by(replicate_frame, sdr, "food_insecure", statistic="total").iloc[0]
    assert_close([total["estimate"], total["se"]], [146113.582675279, 7300.47923150275])
    _, covariance = cell_means_with_covariance(replicate_frame, sdr, "food_insecure", "sex")
    assert_close(covariance, [[0.000398756930588432, -0.000131252598793704],
                              [-0.000131252598793704, 0.000501770839091733]])
    boot = SurveyDesign.from_frame(replicate_frame, weight="weight", replicate_columns=reps,
                                   replicate_method="bootstrap", mse=False)
    assert_close(estimate_by(replicate_frame, boot, "food_insecure")["se"].iloc[0], 0.00653792819868558)


def test_jk1_ratio(api):
    frame = api["apiclus1"]
    design = clus1_design(frame).to_replicate("jk1")
    row = estimate_by(frame, design, "api.stu", statistic="ratio", denominator="enroll").iloc[0]
    assert_close([row["estimate"], row["se"]], [0.849708741724488, 0.00951708517561472])


def test_design_for_replicate_attrs(replicate_frame, golden):
    frame = replicate_frame.copy()
    frame.attrs["design"] = {
        "sample_type": "probability", "weight": "weight", "strata": None, "psu": None, "fpc": None,
        "replicate_columns": [c for c in frame.columns if c.startswith("repwt")],
        "replicate_method": "fay", "replicate_scale": None, "replicate_rscales": None,
        "fay_rho": 0.3, "replicate_mse": True, "single_psu": "fail",
    }
    row = estimate_by(frame, design_for(frame), "food_insecure").iloc[0]
    assert_close(row["se"], golden("fixtures")["fay"]["se"])
    assert "FAY" in row["method"] and "rho=0.3" in row["method"]


def test_estimate_by_on_raked_design_uses_calibration_residuals(api, r_golden):
    """A design calibrated by analysis.weighting (R's rake) keeps its calibrated SE in estimate_by."""
    from analysis import weighting

    frame = api["apiclus1"]
    design = clus1_design(frame)
    raked = weighting.rake(
        frame, design,
        {"stype": pd.Series({"E": 4421, "H": 755, "M": 1018}),
         "sch.wide": pd.Series({"No": 1072, "Yes": 5122})},
        max_iter=10, tol=1 / design.weights.sum(),
    )
    row = estimate_by(frame, raked, "api00", ci="normal").iloc[0]
    check_entry(row, r_golden["clus1_rake_stype_schwide_mean_api00"])
    # a post-stratum's weighted count is fixed by the calibration: SE 0
    post = weighting.poststratify(frame, design, "stype", pd.Series({"E": 4421, "H": 755, "M": 1018}))
    counts = estimate_by(frame.assign(one=1.0), post, "one", by="stype", statistic="total")
    assert_close(counts["estimate"].iloc[1:], [4421, 755, 1018])
    assert np.all(counts["se"].iloc[1:] < 1e-6 * counts["estimate"].iloc[1:])


def test_design_effect_is_the_variance_over_the_srs_variance_of_each_cell():
    # two cells of four rows, y = 1, 2, 3, 4: weights 1 (N = n, SRS with replacement: s²/n = 5/12)
    # and weights 2 (N = 8 > n, without replacement: s² (N - n) / (N n) = 5/24); s² = 5/3
    n, psum = np.array([4.0, 4.0]), np.array([4.0, 8.0])
    total_y, sum_wy2 = np.array([10.0, 20.0]), np.array([30.0, 60.0])
    srs = np.array([5 / 12, 5 / 24])
    estimate = total_y / psum
    assert_close(design_effect("mean", estimate, 2 * srs, n, psum, total_y, sum_wy2), [2.0, 2.0])
    assert_close(design_effect("total", estimate, 3 * srs * psum**2, n, psum, total_y, sum_wy2), [3.0, 3.0])
    assert np.isnan(design_effect("ratio", estimate, srs, n, psum, total_y, sum_wy2)).all()
    # a cell of one row has no SRS variance: no design effect rather than an infinite one
    one = design_effect("mean", np.array([1.0]), np.array([0.5]), np.array([1.0]), np.array([2.0]),
                        np.array([2.0]), np.array([2.0]))
    assert np.isnan(one).all()


@pytest.mark.parametrize("bad, kind", [(-3.25, "negative"), (np.nan, "missing"), (np.inf, "infinite")])
def test_a_bad_weight_is_named_by_row_and_kind_never_by_value(bad, kind):
    """Defect: the message quoted the weight itself ("first in row 2: -3.25"): no cell value is
    ever quoted, it may be personal data."""
    from analysis.survey import SurveyDesignError, _checked_weights

    weights = [1.0, 2.0, bad, 4.0]
    with pytest.raises(SurveyDesignError) as info:
        _checked_weights(weights, "wt")
    message = str(info.value)
    assert "'wt'" in message and "row 2" in message and kind in message
    assert "3.25" not in message and "nan" not in message.lower() and ": inf" not in message


def test_a_replicate_design_of_one_row_is_no_lonely_psu_error():
    """Defect (found by the random designs of tests/test_survey_engines.py): a design given by
    its replicate weights alone, with one row, failed with "1 strata group(s) have a single PSU"
    although its variance comes from the replicates (R's svrepdesign has no such rule)."""
    from analysis.survey import SurveyDesign, estimate_by

    design = SurveyDesign(weights=np.array([2.0]), replicate_weights=np.array([[1.0, 3.0, 2.0]]),
                          replicate_method="jk1")
    frame = pd.DataFrame({"y": [5.0], "sex": ["female"]})
    result = estimate_by(frame, design, ["y"], by=["sex"], statistic="mean")
    assert float(result["estimate"].iloc[0]) == 5.0


@pytest.mark.parametrize("design_kw", [{}, {"strata": "s"}, {"strata": "s", "psu": "p", "nest": True}])
def test_design_effect_does_not_change_when_every_value_is_shifted(design_kw):
    """Defect: the design effect's SRS variance came from raw moments (Σwy² − Nȳ²): with a mean
    of 1e9 and an SD of 1 every digit cancelled (deff negative or NaN). A shift of every value
    changes neither the variance nor the design effect."""
    from analysis.survey import SurveyDesign, estimate_by

    rng = np.random.default_rng(1)
    n = 2000
    frame = pd.DataFrame({"y": rng.normal(0, 1, n), "g": rng.choice(["a", "b"], n),
                          "w": rng.uniform(1, 3, n), "s": rng.choice(["s1", "s2", "s3"], n)})
    frame["p"] = [f"{s}-{i % 20}" for i, s in enumerate(frame["s"])]
    frame.loc[rng.random(n) < 0.05, "y"] = np.nan  # missing values leave their cells
    design = SurveyDesign.from_frame(frame, weight="w", **design_kw)
    shifted = frame.assign(y=frame["y"] + 1e9)
    plain = estimate_by(frame, design, ["y"], by=["g"], statistic="mean")
    moved = estimate_by(shifted, design, ["y"], by=["g"], statistic="mean")
    assert (plain["deff"] > 0).all()
    np.testing.assert_allclose(moved["deff"], plain["deff"], rtol=1e-5)
