"""Pooling of proportions against R metafor 3.8-1 (tests/results/meta_analysis.json), and properties.

Closed-form estimators (EE, DL, HE, SJ) and everything computed from a given τ² are checked to 1e-9
relative. metafor solves the iterative estimators only to its convergence threshold (|Δτ²| < 1e-5
for REML/ML Fisher scoring and the PM root; uniroot's tol = eps^0.25 ≈ 1.2e-4 in the Q-profile
interval), so for those τ² itself is checked within that absolute tolerance, and every other
quantity is checked to 1e-9 at metafor's τ² (the formulas) and to 1e-5 at ours (the whole fit).
Our roots are exact: PM agrees with statsmodels' combine_effects, REML/ML solve their score
equations to machine precision.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import evidence as ev

RESULTS = Path(__file__).parent / "results"
GOLDEN = json.loads((RESULTS / "meta_analysis.json").read_text())
PRITZ = pd.read_csv(RESULTS / "meta" / "pritz1997.csv")
DEBRUIN = pd.read_csv(RESULTS / "meta" / "debruin2009.csv")
TRANSFORM = {"plo": "logit", "pft": "freeman_tukey"}
ITERATIVE = {"REML", "ML", "PM"}
#: metafor's convergence threshold on τ² (rma.uni control threshold = 1e-5).
METAFOR_THRESHOLD = 1e-5
#: uniroot's default tolerance in metafor's confint (Q-profile): .Machine$double.eps^0.25.
UNIROOT_TOL = np.finfo(float).eps ** 0.25

FITS = sorted(k for k, e in GOLDEN["pritz1997"].items()
              if isinstance(e, dict) and "b" in e and k != "glmm")


def _parse(key):
    transform, rest = key.split("_", 1)
    method = rest.split("_")[0]
    return TRANSFORM[transform], method, "knha" if rest.endswith("knha") else "z"


def _compare(fit, expected, rel):
    got = {"b": fit.b, "se": fit.se, "tau2": fit.tau2, "I2": fit.I2, "H2": fit.H2, "QE": fit.Q,
           "QE_df": fit.Q_df, "QEp": fit.Q_p, "pooled": fit.pooled}
    for name, value in got.items():
        if name in expected:
            assert value == pytest.approx(expected[name], rel=rel, abs=1e-12), name
    assert fit.ci_prop == pytest.approx(expected["ci"], rel=rel)
    if expected["pi"]:
        assert fit.pi_prop == pytest.approx(expected["pi"], rel=rel)
    else:
        assert all(math.isnan(x) for x in fit.pi_prop)


def test_transforms_match_escalc():
    g = GOLDEN["pritz1997"]
    y, v = ev.transform_proportions(PRITZ.xi, PRITZ.ni, "logit")
    np.testing.assert_allclose(y, g["yi_plo"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(v, g["vi_plo"], rtol=1e-12)
    y, v = ev.transform_proportions(PRITZ.xi, PRITZ.ni, "freeman_tukey")
    np.testing.assert_allclose(y, g["yi_pft"], rtol=1e-12)
    np.testing.assert_allclose(v, g["vi_pft"], rtol=1e-12)


def test_logit_adds_half_only_to_studies_with_a_zero_cell():
    y, v = ev.transform_proportions([0, 5, 10], [10, 10, 10], "logit")
    assert y[0] == pytest.approx(math.log(0.5 / 10.5))
    assert v[0] == pytest.approx(1 / 0.5 + 1 / 10.5)
    assert y[1] == 0 and v[1] == pytest.approx(0.4)
    assert y[2] == pytest.approx(math.log(10.5 / 0.5))


@pytest.mark.parametrize("key", FITS)
def test_pritz1997_matches_metafor(key):
    expected = GOLDEN["pritz1997"][key]
    transform, method, test = _parse(key)
    fit = ev.pool(PRITZ.xi, PRITZ.ni, transform=transform, method=method, test=test)
    if method in ITERATIVE:
        # tau2 within metafor's own convergence; then the whole fit at our (exact) root to 1e-5 ...
        assert fit.tau2 == pytest.approx(expected["tau2"], abs=METAFOR_THRESHOLD)
        fixed = ev.pool(PRITZ.xi, PRITZ.ni, transform=transform, method=method, test=test,
                        tau2=expected["tau2"])
        # ... and every formula at metafor's tau2 to 1e-9
        _compare(fixed, expected, rel=1e-9)
        loose = {k: v for k, v in expected.items() if k not in ("tau2", "I2", "H2")}
        _compare(fit, loose, rel=1e-5)
        assert fit.I2 == pytest.approx(expected["I2"], abs=METAFOR_THRESHOLD * 100 / fit.tau2)
    else:
        _compare(fit, expected, rel=1e-9)
    if "pi_hts" in expected:
        hts = ev.pool(PRITZ.xi, PRITZ.ni, transform=transform, method=method, pi_df="k-2")
        assert hts.pi_prop == pytest.approx(expected["pi_hts"], rel=1e-9)


def test_iterative_roots_are_exact():
    y, v = ev.transform_proportions(PRITZ.xi, PRITZ.ni, "logit")
    pm = ev.tau2_estimate(y, v, "PM")
    assert ev._residual_q(y, v, pm, ev._design(y.size, None)) == pytest.approx(y.size - 1, rel=1e-12)
    from statsmodels.stats.meta_analysis import combine_effects
    peer = combine_effects(y, v, method_re="pm")
    assert pm == pytest.approx(peer.tau2, rel=1e-8)
    assert ev.tau2_estimate(y, v, "DL") == pytest.approx(combine_effects(y, v, method_re="dl").tau2,
                                                         rel=1e-12)


def test_dl_is_truncated_at_zero_where_statsmodels_is_not():
    """Why DL is not delegated to statsmodels: its moment estimate goes negative when Q < k - 1."""
    from statsmodels.stats.meta_analysis import combine_effects

    y, v = ev.transform_proportions([20, 21, 19, 20], [40, 40, 40, 40])
    assert combine_effects(y, v, method_re="dl").tau2 < 0
    assert ev.tau2_estimate(y, v, "DL") == 0.0
    fit = ev.pool(y=y, v=v, method="DL")
    assert fit.se == pytest.approx(1 / math.sqrt(np.sum(1 / v)), rel=1e-12)  # equal-effects weights


def test_q_profile_interval_matches_metafor():
    expected = GOLDEN["pritz1997"]["plo_REML"]
    fit = ev.pool(PRITZ.xi, PRITZ.ni, method="REML")
    assert fit.tau2_ci == pytest.approx(expected["tau2_ci"], abs=UNIROOT_TOL)
    y, v = ev.transform_proportions(PRITZ.xi, PRITZ.ni)
    s2 = ev.typical_variance(v)
    # I2 bounds are 100 tau2 / (tau2 + s2) at the tau2 bounds: exact at metafor's bounds
    assert [100 * t / (t + s2) for t in expected["tau2_ci"]] == pytest.approx(expected["I2_ci"], rel=1e-9)
    # our bounds solve the Q-profile equation exactly
    from scipy import stats
    X = ev._design(y.size, None)
    assert ev._residual_q(y, v, fit.tau2_ci[0], X) == pytest.approx(stats.chi2.ppf(0.975, 13), rel=1e-10)
    assert ev._residual_q(y, v, fit.tau2_ci[1], X) == pytest.approx(stats.chi2.ppf(0.025, 13), rel=1e-10)


def test_q_profile_lower_bound_is_zero_without_heterogeneity():
    from scipy import stats
    # Q(0) below the upper chi2 quantile: the lower bound is 0; above the lower quantile: upper > 0
    fit = ev.pool([16, 24, 18, 22], [40, 40, 40, 40], method="REML")
    assert stats.chi2.ppf(0.025, 3) < fit.Q < stats.chi2.ppf(0.975, 3)
    assert fit.tau2_ci[0] == 0 and fit.tau2_ci[1] > 0
    # Q(0) below even the lower quantile: both bounds are 0 (metafor sets them to 0)
    flat = ev.pool([20, 21, 19, 20], [40, 40, 40, 40], method="REML")
    assert flat.tau2 == 0 and flat.tau2_ci == (0.0, 0.0)


def test_debruin2009_subgroups_match_metafor():
    g = GOLDEN["debruin2009_by_ethnicity"]
    result = ev.subgroups(DEBRUIN.xi, DEBRUIN.ni, DEBRUIN.ethnicity, method="REML")
    fits = {"all": result.overall} | result.subgroups
    for name, fit in fits.items():
        expected = g[name]
        assert fit.tau2 == pytest.approx(expected["tau2"], abs=METAFOR_THRESHOLD)
        _compare(fit, {k: v for k, v in expected.items() if k not in ("tau2", "I2", "H2")}, rel=1e-5)
    sep = g["Q_between_separate_tau2"]
    assert result.Q_between == pytest.approx(sep["Q"], rel=1e-5)
    assert result.Q_between_df == sep["df"]
    assert result.Q_between_p == pytest.approx(sep["p"], rel=1e-5)
    mod = g["moderator_common_tau2"]
    assert result.moderator.QM == pytest.approx(mod["QM"], rel=1e-5)
    assert result.moderator.QM_p == pytest.approx(mod["QMp"], rel=1e-5)
    assert result.moderator.tau2 == pytest.approx(mod["tau2"], abs=METAFOR_THRESHOLD)
    assert result.moderator.R2 == pytest.approx(mod["R2"], abs=1e-3)


def test_leave_one_out_equals_refits():
    table = ev.leave_one_out(PRITZ.xi, PRITZ.ni, PRITZ.study, method="DL")
    assert len(table) == len(PRITZ)
    refit = ev.pool(PRITZ.xi[1:], PRITZ.ni[1:], method="DL")
    assert table.loc[0, "pooled"] == pytest.approx(refit.pooled, rel=1e-12)
    assert table.loc[0, "omitted"] == PRITZ.study[0]


@pytest.mark.parametrize("transform", ["logit", "freeman_tukey"])
def test_pool_many_equals_pool_one_at_a_time(transform):
    rng = np.random.default_rng(3)
    rows = []
    for meta in range(30):
        k = int(rng.integers(1, 12))
        n = rng.integers(20, 400, size=k)
        x = rng.binomial(n, rng.uniform(0.05, 0.9))
        rows += [{"meta": meta, "events": a, "n": b} for a, b in zip(x, n)]
    frame = pd.DataFrame(rows)
    many = ev.pool_many(frame, "meta", transform=transform).set_index("meta")
    for meta, part in frame.groupby("meta"):
        one = ev.pool(part.events, part.n, transform=transform, method="DL", q_profile=False)
        assert many.loc[meta, "pooled"] == pytest.approx(one.pooled, rel=1e-10)
        assert many.loc[meta, "ci_low"] == pytest.approx(one.ci_prop[0], rel=1e-10)
        assert many.loc[meta, "tau2"] == pytest.approx(one.tau2, rel=1e-10, abs=1e-14)


def test_freeman_tukey_back_transform_inverts_the_transform():
    n = np.array([50.0])
    for p in (0.0, 0.03, 0.5, 0.97, 1.0):
        t = ev._pft(p, n)
        assert ev.back_transform(t, "freeman_tukey", n)[0] == pytest.approx(p, abs=1e-10)


def test_single_study_pools_to_itself_with_tau2_zero():
    fit = ev.pool([30], [100], method="REML")
    assert fit.tau2 == 0 and fit.pooled == pytest.approx(0.3)
    assert math.isnan(fit.Q_p)


@pytest.mark.parametrize("events, n, message", [
    ([5, 12], [10, 10], "events"),
    ([5, 1], [10, 0], "n:"),
])
def test_bad_input_names_the_parameter(events, n, message):
    with pytest.raises(ev.EvidenceError, match=message):
        ev.pool(events, n)


def test_unknown_method_is_named():
    with pytest.raises(ev.EvidenceError, match="method 'XX'"):
        ev.pool([1, 2], [10, 10], method="XX")


# --------------------------------------------------------------------------------------------
# The demo partner studies: structure as the issue asks, and recovery of the planted truth


@pytest.fixture(scope="module")
def demo_studies(tmp_path_factory):
    from analysis import config
    from analysis.sources import load_processed
    from analysis.sources.studies import ingest_study_source

    card = config.SOURCES_DIR / "demo_partner_studies.yml"
    if not card.exists():
        pytest.skip("the demo partner studies are not committed")
    processed = tmp_path_factory.mktemp("processed")
    ingest_study_source(card, config.RAW_DIR, processed, force=True)
    truth = json.loads((config.DEMO_DIR / "TRUTH.json").read_text())["partner_studies"]
    return load_processed("demo_partner_studies", processed), truth


def test_demo_has_38_mixed_studies_as_the_issue_describes(demo_studies):
    studies, truth = demo_studies
    assert studies["study_id"].nunique() == 38 == truth["studies_count"]
    per_study = studies.drop_duplicates("study_id")
    assert per_study["sampling"].nunique() >= 4
    assert (studies["estimate_form"] == "percent").any()          # only a percentage and n
    assert studies["ci_low"].notna().any()                        # with intervals
    assert studies["reference_estimate"].notna().any()            # with a reference group
    zero = studies[studies["events"] == 0]["study_id"].unique()
    assert sorted(zero) == sorted(truth["zero_cell_studies"])
    counts = studies.groupby(["group", "country"])["study_id"].nunique()
    assert (counts == 1).any()                                    # some groups with one study


def test_pooled_demo_estimates_cover_the_planted_prevalence(demo_studies):
    studies, truth = demo_studies
    planted = {(c["indicator"], c["group"], c["country"]): c["prevalence"] for c in truth["cells"]}
    _, details = ev.pool_evidence(studies, method="REML", test="knha")
    assert len(details) >= 20
    covered = [row.ci_low <= planted[(row.indicator, row.group, row.country)] <= row.ci_high
               for row in details.itertuples()]
    # 95% intervals: with ~30 pooled cells, fewer than 80% covering would be a 1-in-10^4 event
    assert np.mean(covered) >= 0.8, np.mean(covered)
    # the best-informed cell (most studies) is close to its truth
    best = details.sort_values("k").iloc[-1]
    assert abs(best.pooled - planted[(best.indicator, best.group, best.country)]) < 0.08


@pytest.mark.slow
@pytest.mark.parametrize("method, test", [("REML", "knha"), ("DL", "knha"), ("PM", "knha")])
def test_coverage_of_95_percent_intervals_over_200_simulated_meta_analyses(method, test):
    from analysis.demo_evidence import simulate_meta_analyses

    hits = []
    for seed in (1, 2):  # over seeds: 2 × 100 meta-analyses
        for meta in simulate_meta_analyses(100, seed):
            fit = ev.pool(meta["events"], meta["n"], method=method, test=test, q_profile=False)
            hits.append(fit.ci_prop[0] <= meta["prevalence"] <= fit.ci_prop[1])
    assert len(hits) == 200
    assert 0.90 <= np.mean(hits) <= 0.99, np.mean(hits)


# --------------------------------------------------------------------------------------------
# Evidence and gap map, quality, result schema


def _studies_frame():
    from analysis.sources.studies import HOY_ITEMS

    rows = [("S1", "food_insecurity", "women", "KEN", 30, 100, "probability", "low"),
            ("S2", "food_insecurity", "women", "KEN", 45, 120, "convenience", "high"),
            ("S2", "income_loss", "women", "KEN", 50, 150, "convenience", "high"),
            ("S3", "missed_health_care", "older_people", "UGA", 12, 80, "convenience", None)]
    frame = pd.DataFrame(rows, columns=["study_id", "indicator", "group", "country", "events", "n",
                                        "sampling", "risk_of_bias"])
    frame["source"] = "partners"
    frame["partner"] = "P"
    frame["year"] = 2021
    frame["mode"] = "phone"
    frame["estimate_form"] = "count"
    for item in HOY_ITEMS:
        frame[item] = "low"
    return frame


def test_gap_map_has_every_cell_and_counts_studies_and_participants():
    from analysis.schema import load_indicators

    indicators = load_indicators()
    table = ev.evidence_gap_map(_studies_frame(), indicators, ["women", "older_people"], ["KEN", "UGA"])
    themes = list(dict.fromkeys(s.theme for s in indicators.values()))
    assert len(table) == len(themes) * 2 * 2  # every theme × group × country, empty ones too
    cell = table.set_index(["theme", "group", "country"])
    food = cell.loc[("food_insecurity", "women", "KEN")]
    assert food.studies == 2 and food.participants == 220 and food.study_ids == "S1; S2"
    assert food.best_quality == "low"
    assert cell.loc[("access_to_health", "older_people", "UGA")].best_quality == "none"  # not appraised
    gap = cell.loc[("education", "women", "UGA")]
    assert gap.studies == 0 and gap.participants == 0 and gap.study_ids == ""
    only_probability = ev.evidence_gap_map(_studies_frame(), indicators, ["women"], ["KEN"],
                                           sampling=["probability"]).set_index("theme")
    assert only_probability.loc["food_insecurity", "studies"] == 1
    assert only_probability.loc["income_and_livelihoods", "studies"] == 0


def test_pooled_estimates_follow_the_result_schema_with_flags():
    from analysis import tables

    frame = _studies_frame()
    extra = frame.iloc[[0]].assign(study_id="S4", events=33, n=90, sampling="convenience")
    results, details = ev.pool_evidence(pd.concat([frame, extra], ignore_index=True), method="REML",
                                        test="knha")
    tables.validate(tables.conform(results))
    assert len(results) == 1  # only food_insecurity × women × KEN has two or more studies
    row = results.iloc[0]
    assert row.flag == "ok" and row.n_unweighted == 310 and details.iloc[0].k == 3
    assert "REML" in row.method and "Knapp" in row.method and "3 studies" in row.method
    assert "convenience samples only" not in row.method  # S1 is a probability sample
    two = ev.pool_evidence(frame[frame.indicator == "food_insecurity"].assign(sampling="convenience"))[0]
    assert two.iloc[0].flag == "caution"  # fewer than 3 studies
    assert two.iloc[0].method.endswith("convenience samples only")


def test_survey_comparison_says_when_intervals_do_not_overlap():
    pooled = pd.DataFrame({"indicator": ["a", "b", "c"], "group": "women", "country": "KEN", "source": "p",
                           "estimate": [0.3, 0.3, 0.3], "ci_low": [0.25] * 3, "ci_high": [0.35] * 3,
                           "flag": "ok"})
    survey = pd.DataFrame({"indicator": ["a", "b"], "group": "women", "country": "KEN", "source": "s",
                           "breakdown": "comparison", "cell": "group", "estimate": [0.32, 0.5],
                           "ci_low": [0.3, 0.45], "ci_high": [0.34, 0.55], "flag": "ok"})
    out = ev.compare_with_survey(pooled, survey).set_index("indicator")
    assert out.loc["a", "agreement"] == "agree"
    assert out.loc["b", "agreement"] == "disagree"
    assert out.loc["c", "agreement"] == "no_survey"


# --------------------------------------------------------------------------------------------
# The chapter module on the demo studies


def test_chapter_builds_map_quality_pooled_figures_and_narrative(demo_studies, tmp_path):
    from analysis import config, disclosure, tables
    from analysis.chapters import evidence as chapter
    from analysis.sources.studies import ingest_study_source

    processed = tmp_path / "processed"
    ingest_study_source(config.SOURCES_DIR / "demo_partner_studies.yml", config.RAW_DIR, processed, force=True)
    run, studies = chapter.start_evidence("evidence", ["demo_partner_studies"], processed_dir=processed,
                                          output_dir=tmp_path / "out", countries=["KEN", "UGA", "SEN", "BGD"])
    gap_map = chapter.evidence_map(run, studies)
    assert (gap_map["studies"] == 0).any() and (gap_map["studies"] > 0).any()
    assert chapter.write_evidence_workbook(run, studies, gap_map).exists()
    pooled, details = chapter.pooled_estimates(run, studies)
    disclosure.assert_publishable(tables.conform(pooled))
    assert set(pooled["flag"]) <= {"ok", "caution"} and (pooled["flag"] == "caution").any()
    rows = chapter.study_estimates(run, studies)
    assert len(rows) == len(studies)
    quality = chapter.quality_html(run, studies).data
    assert quality.count("<tr>") == 1 + studies["study_id"].nunique()
    assert run.labels["item_rating"]["low"] in quality  # the rating is written, not only coloured
    unappraised = studies.copy()
    first = unappraised["study_id"] == unappraised["study_id"].iloc[0]
    unappraised.loc[first, [f"hoy_{i}" for i in range(1, 11)] + ["risk_of_bias"]] = None
    shown = chapter.quality_html(run, unappraised).data
    assert run.labels["item_rating"]["none"] in shown and run.labels["risk_of_bias"]["none"] in shown
    some = details.sort_values("k").tail(1)
    saved = chapter.forest_and_funnel_figures(run, studies, rows, some)
    assert [s.name.split("_")[0] for s in saved] == ["forest", "funnel"]
    assert all(s.svg.exists() and s.alt for s in saved)
    sensitivity = chapter.sensitivity_display(run, studies, details)
    assert len(sensitivity) == int((details["k"] >= chapter.SENSITIVITY_MIN_STUDIES).sum()) > 0
    text = chapter.narrative(run, studies, gap_map, pooled, details)
    assert "38 partner studies" in text
    found = chapter.findings(run, pooled, details)
    assert found and all(f["flag"] == "ok" for f in found)


def test_chapter_words_come_from_the_catalogue(demo_studies, tmp_path):
    from analysis import config
    from analysis.chapters import evidence as chapter
    from analysis.sources.studies import ingest_study_source

    processed = tmp_path / "processed"
    ingest_study_source(config.SOURCES_DIR / "demo_partner_studies.yml", config.RAW_DIR, processed, force=True)
    run, studies = chapter.start_evidence("evidence", ["demo_partner_studies"], processed_dir=processed,
                                          output_dir=tmp_path / "out")
    run.labels["risk_of_bias"] = {k: f"RB-{k}" for k in run.labels["risk_of_bias"]}
    run.labels["chapter"]["narrative"] = "N={studies}"
    pooled, details = chapter.pooled_estimates(run, studies)
    assert chapter.narrative(run, studies, chapter.evidence_map(run, studies), pooled, details).startswith("N=38")
    assert "RB-low" in chapter.quality_html(run, studies).data


def test_chapter_without_a_study_source_says_what_to_do(tmp_path):
    from analysis.chapters import evidence as chapter
    from analysis.chapters.common import ChapterError

    with pytest.raises(ChapterError, match="kind: study"):
        chapter.start_evidence("evidence", [], processed_dir=tmp_path)


def test_binomial_normal_glmm_matches_metafor_rma_glmm():
    """metafor rma.glmm (lme4 glmer, nAGQ = 7): its optimiser stops ~1e-10 short in log L of the
    maximum we find, which moves b, tau2 and se by up to 1e-5 relative."""
    expected = GOLDEN["pritz1997"]["glmm"]
    fit = ev.pool_glmm(PRITZ.xi, PRITZ.ni)
    assert fit.b == pytest.approx(expected["b"], rel=1e-5)
    assert fit.tau2 == pytest.approx(expected["tau2"], rel=1e-5)
    assert fit.se == pytest.approx(expected["se"], rel=1e-5)
    assert fit.pooled == pytest.approx(expected["pooled"], rel=1e-6)
    # ours is the better maximum of the same likelihood
    log_binom = ev.special.gammaln(PRITZ.ni + 1) - ev.special.gammaln(PRITZ.xi + 1) \
        - ev.special.gammaln(PRITZ.ni - PRITZ.xi + 1)
    z, w = np.polynomial.hermite.hermgauss(7)
    at_metafor = ev._glmm_loglik(expected["b"], math.sqrt(expected["tau2"]), PRITZ.xi.to_numpy(float),
                                 PRITZ.ni.to_numpy(float), log_binom.to_numpy(), z, w)
    assert fit.loglik >= at_metafor


def test_glmm_handles_zero_cells_without_correction():
    fit = ev.pool_glmm([0, 3, 5, 1], [40, 50, 60, 45])
    assert 0 < fit.pooled < 0.2 and fit.ci_prop[0] < fit.pooled < fit.ci_prop[1]


def test_labels_follow_the_report_language(tmp_path, monkeypatch):
    import yaml

    from analysis import config

    english = ev.load_labels()
    french = dict(english, risk_of_bias={**english["risk_of_bias"], "low": "Risque de biais faible"})
    (tmp_path / "evidence.yml").write_text(yaml.safe_dump(english, allow_unicode=True), encoding="utf-8")
    (tmp_path / "evidence.fr.yml").write_text(yaml.safe_dump(french, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(config, "PARAMS_DIR", tmp_path)
    monkeypatch.setenv("ANALYSIS_LANG", "fr")
    assert ev.load_labels()["risk_of_bias"]["low"] == "Risque de biais faible"
    monkeypatch.setenv("ANALYSIS_LANG", "es")  # no Spanish copy: English
    assert ev.load_labels()["risk_of_bias"]["low"] == english["risk_of_bias"]["low"]
    (tmp_path / "evidence.yml").write_text("sampling: {}\n", encoding="utf-8")
    with pytest.raises(ev.EvidenceError, match="section 'mode' is missing"):
        ev.load_labels(tmp_path / "evidence.yml")


def test_front_page_lists_the_findings_runs_publish(tmp_path):
    from analysis.pipeline.index import _findings

    run_dir = tmp_path / "evidence"
    run_dir.mkdir()
    (run_dir / "evidence.html").write_text("<html></html>")
    (run_dir / "findings.json").write_text(json.dumps([{"text": "Pooled: 31% (8 studies)."}, {"k": 2}]))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "findings.json").write_text("not json")
    runs = {"evidence": {"status": "ok", "outputs": {"html": ["evidence/evidence.html"]}},
            "broken": {"status": "ok", "outputs": {"html": ["broken/page.html"]}},
            "failed": {"status": "failed", "outputs": {"html": ["evidence/evidence.html"]}}}
    assert _findings(runs, tmp_path) == [{"text": "Pooled: 31% (8 studies).", "href": "evidence/evidence.html"}]
