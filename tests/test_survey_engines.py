"""Partition-sum engines (chunks, Dask, DuckDB) equal the in-memory estimator (issue 17).

Every engine computes :func:`analysis.survey.estimate_by` as one pass of partition sums
(:mod:`analysis.survey_sums`). Checked here:

- every ``estimate_by`` golden entry of ``../shared/golden/r_survey.json`` (R 4.2.2, survey
  4.1.1) and the replicate entries of ``fixtures.json`` (SDR, Fay, bootstrap), through each
  engine from partitioned Parquet: equal to the in-memory estimator to 1e-10 and to R to 1e-6;
- random designs (hypothesis): strata, clusters or element sampling, cells empty in some
  PSUs and strata, lonely PSUs under each option, missing values, replicate designs;
- the counting rules, the design degrees of freedom from the sketch of replicate weights,
  and one-line errors that name the column and the place, never a value.

``nhanes_by_sex_diff_hichol`` (a contrast) is reproduced from the engines' cell covariances.
The golden entries that are not ``estimate_by`` calls are left to tests/test_survey.py:
``strat_glm_api00`` and ``clus1_logit_schwide`` (models) and the calibrated designs
(``clus1_poststratify_*``, ``clus1_rake_*``), which the partition engines refuse with a
clear message (tested below).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis import survey_sums
from analysis.survey import SurveyDesign, SurveyDesignError, estimate_by
from analysis.survey_sums import DesignColumns, design_columns_from

ENGINES = ["chunks", "dask", "duckdb"]
NUMERIC = ["estimate", "se", "ci_low", "ci_high", "n_weighted", "deff", "cv", "df",
           "n_unweighted", "n_missing"]
EXACT = 1e-10  # engines vs in-memory
R_TOL = 1e-6  # vs R


@pytest.fixture(scope="module")
def dask_client():
    """One in-process Dask cluster for the module (threads, no worker processes)."""
    from distributed import Client

    client = Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)
    yield client
    client.close()


@pytest.fixture(scope="module")
def api(r_survey_dir):
    return {n: pd.read_csv(r_survey_dir / f"{n}.csv") for n in ("apistrat", "apiclus1", "apiclus2")}


@pytest.fixture(scope="module")
def nhanes(r_survey_dir):
    return pd.read_csv(r_survey_dir / "nhanes.csv")


@pytest.fixture(scope="module")
def replicate_frame(shared_dir):
    return pd.read_csv(shared_dir / "data" / "fixtures" / "replicate_weights.csv")


def write_parts(frame: pd.DataFrame, folder, parts: int = 3) -> str:
    """Write ``frame`` as a partitioned Parquet dataset of ``parts`` files; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, piece in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[piece].to_parquet(folder / f"part-{i:03d}.parquet", index=False)
    return str(folder)


def options(engine, client):
    return {"scheduler": client} if engine == "dask" else {}


def through_parquet(engine, frame, design, folder, client, **kwargs):
    """The in-memory design's data written to Parquet, estimated by ``engine`` from disk."""
    data, spec = design_columns_from(frame, design)
    domain = kwargs.pop("domain", None)
    if domain is not None:
        data[".domain"] = np.asarray(domain, dtype=bool)
        kwargs["domain"] = ".domain"
    path = write_parts(data, folder)
    return estimate_by(path, spec, engine=engine, **options(engine, client), **kwargs)


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame, rtol=EXACT):
    """Same rows, labels and method; numbers equal to ``rtol`` (NaN where NaN)."""
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    for column in ("indicator", "breakdown", "cell", "method", "flag"):
        assert list(actual[column].astype(str)) == list(expected[column].astype(str)), column
    size = max(1.0, float(np.nanmax(np.abs(expected["estimate"].astype(float)), initial=0.0)))
    for column in NUMERIC:
        a = actual[column].astype(float).to_numpy()
        e = expected[column].astype(float).to_numpy()
        scale = float(np.nanmax(np.abs(e), initial=0.0))
        if column in ("se", "cv"):
            # compare variances: where the true variance is 0 both sides are rounding noise of
            # a difference of sums of squares (eps times their size; without clusters the
            # engines expand Σ w²(y − μ)² into raw moments, so about 1e-7 of μ in an SE)
            a, e, scale = a * a, e * e, scale * scale
            floor = 1e-13 * size * size if column == "se" else 1e-13
        else:
            # CI bounds are estimate ± q·SE (both checked here): their floor only absorbs that
            # rounding noise of a zero variance times the t quantile
            floor = {"deff": 1e-12, "ci_low": 1e-7 * size,
                     "ci_high": 1e-7 * size}.get(column, 0.0)
        np.testing.assert_allclose(a, e, rtol=rtol, atol=1e-13 * scale + floor, equal_nan=True,
                                   err_msg=column)


def r_close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=R_TOL)


# -- the golden designs of R's survey package -----------------------------------------------


def strat(frame, fpc=True):
    return SurveyDesign.from_frame(frame, weight="pw", strata="stype", fpc="fpc" if fpc else None)


def clus1(frame):
    return SurveyDesign.from_frame(frame, weight="pw", psu="dnum", fpc="fpc")


def nhanes_design(frame):
    return SurveyDesign.from_frame(frame, weight="WTMEC2YR", strata="SDMVSTRA", psu="SDMVPSU")


def _golden_cases(api, nhanes):
    """(entry, frame, design, estimate_by arguments, how to read R's values from the result)."""
    st_, c1, c2 = api["apistrat"], api["apiclus1"], api["apiclus2"]
    nh = nhanes.assign(race=nhanes["race"].astype(int).astype(str),
                       RIAGENDR=nhanes["RIAGENDR"].astype(int).astype(str))
    both = c1.assign(both_yes=(c1["both"] == "Yes").astype(float))
    return {
        "strat_mean_api00": (st_, strat(st_), {"indicators": "api00", "ci": "normal"}, "first"),
        "strat_mean_api00_deff": (st_, strat(st_), {"indicators": "api00"}, "first"),
        "strat_nofpc_mean_api00": (st_, strat(st_, False), {"indicators": "api00", "ci": "normal"},
                                   "first"),
        "strat_total_enroll": (st_, strat(st_), {"indicators": "enroll", "statistic": "total",
                                                     "ci": "normal"}, "first"),
        "clus1_mean_api00": (c1, clus1(c1), {"indicators": "api00", "ci": "normal"}, "first"),
        "clus1_total_enroll": (c1, clus1(c1), {"indicators": "enroll", "statistic": "total",
                                                   "ci": "normal"}, "first"),
        "clus2_mean_api00": (c2, SurveyDesign.from_frame(c2, psu=["dnum", "snum"],
                                                         fpc=["fpc1", "fpc2"]),
                             {"indicators": "api00", "ci": "normal"}, "first"),
        "clus1_by_stype_mean_api00": (c1, clus1(c1), {"indicators": "api00", "by": ["stype"],
                                                          "margins": False}, "domains"),
        "strat_by_stype_x_awards_mean_api00": (st_, strat(st_), {"indicators": "api00",
                                                                     "by": ["stype", "awards"]},
                                               "domains"),
        "clus1_ratio_apistu_enroll": (c1, clus1(c1), {"indicators": "api.stu", "statistic": "ratio",
                                                          "denominator": "enroll"}, "first"),
        "strat_prop_awards": (st_, strat(st_), {"indicators": "awards", "statistic": "proportion",
                                                    "ci": "normal"}, "rows"),
        "clus1_prop_both_ciprop_logit": (both, clus1(both), {"indicators": "both_yes",
                                                                 "statistic": "proportion"}, "first"),
        "clus1_subset_mean_api00_stypeE": (c1, clus1(c1), {"indicators": "api00", "ci": "normal",
                                                               "domain": c1["stype"] == "E"}, "first"),
        "clus1_jk1_mean_api00": (c1, clus1(c1).to_replicate("jk1"), {"indicators": "api00",
                                                                         "ci": "normal"}, "first"),
        "strat_jkn_mean_api00": (st_, strat(st_, False).to_replicate("jkn"),
                                 {"indicators": "api00", "ci": "normal"}, "first"),
        "nhanes_mean_hichol": (nh, nhanes_design(nh), {"indicators": "HI_CHOL", "ci": "normal"},
                               "first"),
        "nhanes_by_race_agecat_sex_mean_hichol": (nh, nhanes_design(nh), {
            "indicators": "HI_CHOL", "by": ["race", "agecat", "RIAGENDR"]}, "domains"),
    }


GOLDEN_ESTIMATE_BY = [
    "strat_mean_api00", "strat_mean_api00_deff", "strat_nofpc_mean_api00", "strat_total_enroll",
    "clus1_mean_api00", "clus1_total_enroll", "clus2_mean_api00", "clus1_by_stype_mean_api00",
    "strat_by_stype_x_awards_mean_api00", "clus1_ratio_apistu_enroll", "strat_prop_awards",
    "clus1_prop_both_ciprop_logit", "clus1_subset_mean_api00_stypeE", "clus1_jk1_mean_api00",
    "strat_jkn_mean_api00", "nhanes_mean_hichol", "nhanes_by_race_agecat_sex_mean_hichol",
]
NOT_ESTIMATE_BY = {  # golden entries of other functions, and why they are not here
    "strat_glm_api00": "svyglm (analysis.models)",
    "clus1_logit_schwide": "svyglm (analysis.models)",
    "clus1_poststratify_stype_mean_api00": "calibrated: test_calibrated_designs_through_...",
    "clus1_rake_stype_schwide_mean_api00": "calibrated: test_calibrated_designs_through_...",
    "clus1_rake_weights_summary": "weights of a raked design (analysis.weighting)",
    "nhanes_by_sex_diff_hichol": "svycontrast of cell covariances: test_cell_covariances_and_...",
    "meta": "provenance",
}


def test_every_golden_entry_is_covered_or_excused(golden):
    entries = set(golden("r_survey"))
    assert entries == set(GOLDEN_ESTIMATE_BY) | set(NOT_ESTIMATE_BY)


def check_against_r(result, entry, how):
    if how == "first":
        row = result.iloc[0]
        for key in ("estimate", "se", "ci_low", "ci_high", "deff"):
            if key in entry:
                r_close(row[key], entry[key])
    elif how == "rows":
        for key in ("estimate", "se", "ci_low", "ci_high"):
            r_close(result[key], entry[key])
    else:
        finest = result[result["breakdown"] == result["breakdown"].iloc[-1]].set_index("cell")
        labels = [d.replace(":", " × ") for d in entry["domains"]]
        r_close(finest.loc[labels, "estimate"], entry["estimate"])
        se = np.asarray(entry["se"])
        ours = finest.loc[labels, "se"].to_numpy()
        r_close(ours[se > 0], se[se > 0])
        assert np.all(ours[se == 0] == 0)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("entry_name", GOLDEN_ESTIMATE_BY)
def test_golden_designs_through_each_engine(engine, entry_name, api, nhanes, golden, tmp_path,
                                            dask_client):
    frame, design, kwargs, how = _golden_cases(api, nhanes)[entry_name]
    expected = estimate_by(frame, design, **kwargs)
    actual = through_parquet(engine, frame, design, tmp_path / "data", dask_client, **dict(kwargs))
    assert_same(actual, expected)
    check_against_r(actual, golden("r_survey")[entry_name], how)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("entry_name, method, rho",
                         [("sdr", "successive-difference", None), ("fay", "fay", 0.3),
                          ("bootstrap", "bootstrap", None)])
def test_replicate_fixtures_through_each_engine(engine, entry_name, method, rho, replicate_frame,
                                                golden, tmp_path, dask_client):
    """ACS-style SDR (SE = sqrt(4/80 Σ(θ_r − θ)²)), Fay and bootstrap from replicate sums."""
    entry = golden("fixtures")[entry_name]
    frame = replicate_frame.assign(disability=replicate_frame["disability"].astype(str))
    reps = [c for c in frame.columns if c.startswith("repwt")]
    spec = DesignColumns(weight="weight", replicate_columns=reps, replicate_method=method,
                         fay_rho=rho, mse=True)
    design = SurveyDesign.from_frame(frame, weight="weight", replicate_columns=reps,
                                     replicate_method=method, fay_rho=rho, mse=True)
    expected = estimate_by(frame, design, "food_insecure", by=["sex", "disability"])
    path = write_parts(frame, tmp_path / "reps")
    actual = estimate_by(path, spec, "food_insecure", by=["sex", "disability"], engine=engine,
                         **options(engine, dask_client))
    assert_same(actual, expected)
    r_close(actual["estimate"].iloc[0], entry["mean"])
    r_close(actual["se"].iloc[0], entry["se"])
    cells = actual[actual["breakdown"] == "sex × disability"].set_index("cell")
    labels = [d.replace(":", " × ") for d in entry["by_domains"]]
    r_close(cells.loc[labels, "estimate"], entry["by_mean"])
    r_close(cells.loc[labels, "se"], entry["by_se"])


@pytest.mark.parametrize("block_rows", [1, 7, 64, 5000])
def test_replicate_products_in_blocks_of_rows(block_rows, replicate_frame, monkeypatch, tmp_path):
    """The chunks engine multiplies the replicate weights block by block of rows (groups cut
    across blocks, a block holding one row, part of a group, or the whole partition), with
    integer and float weights and rows missing an indicator: equal to the in-memory estimator."""
    frame = replicate_frame.assign(disability=replicate_frame["disability"].astype(str))
    reps = [c for c in frame.columns if c.startswith("repwt")]
    rng = np.random.default_rng(17)
    frame[reps[:40]] = frame[reps[:40]].round().astype("int32")  # integer weights widen exactly
    frame["score"] = np.where(rng.random(len(frame)) < 0.2, np.nan, rng.normal(5, 2, len(frame)))
    design = SurveyDesign.from_frame(frame, weight="weight", replicate_columns=reps,
                                     replicate_method="sdr", mse=True)
    expected = estimate_by(frame, design, ["food_insecure", "score"], by=["sex", "disability"])
    spec = DesignColumns(weight="weight", replicate_columns=reps, replicate_method="sdr",
                         mse=True)
    folder = tmp_path / "blocks"  # files of several row groups: read by 2 workers at a time
    folder.mkdir()
    for i, piece in enumerate(np.array_split(np.arange(len(frame)), 2)):
        frame.iloc[piece].to_parquet(folder / f"part-{i}.parquet", index=False,
                                     row_group_size=333)
    monkeypatch.setattr(survey_sums, "REPLICATE_BLOCK_ROWS", block_rows)
    actual = estimate_by(str(folder), spec, ["food_insecure", "score"],
                         by=["sex", "disability"], engine="chunks", chunk_rows=200, threads=2)
    assert_same(actual, expected)


@pytest.mark.parametrize("engine", ["chunks", "duckdb"])
def test_hive_partition_column_as_a_breakdown(engine, replicate_frame, tmp_path):
    """A ``by`` column held only in the directory names (``sex=female/part.parquet``): the
    chunks engine reads such files through a dataset scan instead of row group by row group."""
    frame = replicate_frame.assign(disability=replicate_frame["disability"].astype(str))
    reps = [c for c in frame.columns if c.startswith("repwt")]
    for sex, piece in frame.groupby("sex"):
        (tmp_path / f"sex={sex}").mkdir()
        piece.drop(columns="sex").to_parquet(tmp_path / f"sex={sex}" / "part.parquet",
                                             index=False)
    design = SurveyDesign.from_frame(frame, weight="weight", replicate_columns=reps,
                                     replicate_method="sdr", mse=True)
    expected = estimate_by(frame, design, "food_insecure", by=["sex", "disability"])
    spec = DesignColumns(weight="weight", replicate_columns=reps, replicate_method="sdr",
                         mse=True)
    actual = estimate_by(str(tmp_path), spec, "food_insecure", by=["sex", "disability"],
                         engine=engine, chunk_rows=300, threads=2)
    assert_same(actual, expected)


def test_domain_variance_keeps_psus_without_members(api, tmp_path, dask_client):
    """apiclus1 high schools: SE 38.02 with every PSU (39.45 if PSUs without high schools were
    dropped from the sums, as a GROUP BY of the members only would)."""
    frame = api["apiclus1"]
    for engine in ENGINES:
        out = through_parquet(engine, frame, clus1(frame), tmp_path / engine, dask_client,
                              indicators="api00", by="stype", margins=False)
        r_close(out.set_index("cell").loc["H", "se"], 38.0202493594075)
    # what counting only member PSUs would give: the design restricted to PSUs with a school H
    members = frame[frame.groupby("dnum")["stype"].transform(lambda s: (s == "H").any())]
    wrong = estimate_by(members, clus1(members), "api00", by="stype", margins=False)
    assert abs(wrong.set_index("cell").loc["H", "se"] - 38.02) > 1


# -- random designs ---------------------------------------------------------------------------


@st.composite
def random_surveys(draw):
    """A random design (Taylor with or without clusters, or replicate), data with cells empty
    in some PSUs and strata, lonely PSUs, missing values; and what to estimate."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["clustered", "element", "replicate", "jkn", "bootstrap"]))
    n_strata = draw(st.integers(1, 4))
    rows = []
    for h in range(n_strata):
        n_psu = draw(st.integers(1, 4)) if kind in ("clustered", "replicate") else 2 + h
        for p in range(n_psu):
            size = int(rng.integers(1, 12))
            rows += [(h, p)] * size
    if kind == "element":  # strata of 1.. rows, some lonely
        rows = [(h, i) for h in range(n_strata) for i in range(int(rng.integers(1, 9)))]
    n = len(rows)
    frame = pd.DataFrame(rows, columns=["stratum", "psu"])
    frame["stratum"] = frame["stratum"].map(lambda h: f"s{h}")
    frame["w"] = rng.uniform(0.5, 20.0, n)
    # by dimensions: a rare category so that cells are empty in some PSUs and strata
    frame["sex"] = rng.choice(["f", "m"], n)
    frame["age"] = rng.choice(["young", "mid", "old"], n, p=[0.6, 0.35, 0.05])
    frame.loc[rng.random(n) < 0.05, "sex"] = None  # NA outside every cell of "sex"
    y = rng.normal(10, 3, n)
    y[rng.random(n) < 0.15] = np.nan
    frame["y"] = y
    frame["b"] = np.where(rng.random(n) < 0.4, 1.0, 0.0)
    frame.loc[rng.random(n) < 0.1, "b"] = np.nan
    frame["x"] = rng.uniform(1, 5, n)
    single_psu = draw(st.sampled_from(["adjust", "average", "certainty"]))
    fpc = None
    if kind == "element" and draw(st.booleans()):
        frame["N"] = frame.groupby("stratum")["w"].transform("size") * 3.0
        fpc = "N"
    if kind == "element":
        design = SurveyDesign.from_frame(frame, weight="w", strata="stratum", fpc=fpc,
                                         single_psu=single_psu)
    else:
        design = SurveyDesign.from_frame(frame, weight="w", strata="stratum", psu="psu",
                                         single_psu=single_psu)
    if kind == "replicate":
        r = int(rng.integers(2, 12))
        reps = frame["w"].to_numpy()[:, None] * rng.uniform(0.0, 2.0, (n, r))
        method = draw(st.sampled_from(["sdr", "brr", "fay", "jk1", "other"]))
        design = SurveyDesign(
            weights=frame["w"].to_numpy(), replicate_weights=reps, replicate_method=method,
            fay_rho=0.5 if method == "fay" else None,
            replicate_scale=0.7 if method == "other" else None, mse=draw(st.booleans()),
        )
    elif kind in ("jkn", "bootstrap"):
        design = design.to_replicate(kind, replicates=7)
    statistic = draw(st.sampled_from(["mean", "total", "ratio", "proportion"]))
    indicators = ["b"] if statistic == "proportion" else ["y", "b"]
    kwargs = {"indicators": indicators, "by": ["sex", "age"], "statistic": statistic}
    if statistic == "ratio":
        kwargs["denominator"] = "x"
    if draw(st.booleans()):
        kwargs["domain"] = (frame["age"] != "old").to_numpy()
    return frame, design, kwargs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=random_surveys(), chunk_rows=st.integers(3, 40))
def test_random_designs_equal_in_memory(case, chunk_rows, dask_client):
    frame, design, kwargs = case
    expected = estimate_by(frame, design, **kwargs)
    for engine in ENGINES:
        actual = estimate_by(frame, design, engine=engine, chunk_rows=chunk_rows,
                             **options(engine, dask_client), **kwargs)
        assert_same(actual, expected)


# -- counts, degrees of freedom, engines' own paths -------------------------------------------


def test_zero_weight_rows_are_not_respondents_but_missing_values_are_counted(tmp_path):
    frame = pd.DataFrame({
        "w": [1.0, 2.0, 0.0, 3.0, 1.0, 0.0], "g": ["a", "a", "a", "b", "b", "b"],
        "y": [1.0, np.nan, 5.0, 2.0, 4.0, np.nan],
    })
    path = write_parts(frame, tmp_path / "zw", parts=2)
    for engine in ("chunks", "duckdb"):
        out = estimate_by(path, DesignColumns(weight="w"), "y", by="g", engine=engine)
        cells = out.set_index("cell")
        # a: rows 1 (w=1, y), 2 (missing), 3 (w=0): one respondent, one missing value
        assert cells.loc["a", "n_unweighted"] == 1 and cells.loc["a", "n_missing"] == 1
        assert cells.loc["b", "n_unweighted"] == 2 and cells.loc["b", "n_missing"] == 1
        assert cells.loc["all", "n_unweighted"] == 3 and cells.loc["all", "n_missing"] == 2


def test_replicate_df_from_the_sketch_of_large_partitions(replicate_frame, monkeypatch, tmp_path):
    """Partitions too large for the exact Gram matrix use the count sketch: same rank."""
    reps = [c for c in replicate_frame.columns if c.startswith("repwt")]
    design = SurveyDesign.from_frame(replicate_frame, weight="weight", replicate_columns=reps,
                                     replicate_method="sdr", mse=True)
    # rank-deficient replicates too: one replicate repeated
    deficient = replicate_frame.assign(repwt80=replicate_frame["repwt01"])
    low = SurveyDesign.from_frame(deficient, weight="weight", replicate_columns=reps,
                                  replicate_method="sdr", mse=True)
    assert low.df == design.df - 1
    monkeypatch.setattr(survey_sums, "EXACT_GRAM_ROWS", 0)
    for frame, expected in ((replicate_frame, design.df), (deficient, low.df)):
        spec = DesignColumns(weight="weight", replicate_columns=reps, replicate_method="sdr",
                             mse=True)
        path = write_parts(frame, tmp_path / f"sk{expected}")
        for engine in ("chunks", "duckdb"):
            out = estimate_by(path, spec, "food_insecure", engine=engine, chunk_rows=300)
            assert out["df"].iloc[0] == expected


def test_dask_threaded_scheduler_and_dask_frame(api):
    """Without a client the Dask engine runs on threads; a dask DataFrame is accepted."""
    import dask.dataframe as dd

    frame = api["apiclus1"]
    data, spec = design_columns_from(frame, clus1(frame))
    expected = estimate_by(frame, clus1(frame), "api00", by="stype")
    assert_same(estimate_by(dd.from_pandas(data, npartitions=4), spec, "api00", by="stype",
                            engine="dask"), expected)


def test_category_order_given_and_from_categorical_dtype(api, tmp_path):
    frame = api["apistrat"].assign(
        stype=pd.Categorical(api["apistrat"]["stype"], categories=["M", "H", "E"])
    )
    design = strat(frame)
    expected = estimate_by(frame, design, "api00", by="stype")
    assert list(expected["cell"]) == ["all", "M", "H", "E"]
    assert_same(estimate_by(frame, design, "api00", by="stype", engine="chunks"), expected)
    path = write_parts(design_columns_from(frame.assign(stype=frame["stype"].astype(str)),
                                           design)[0], tmp_path / "cat")
    spec = design_columns_from(frame, design)[1]
    out = estimate_by(path, spec, "api00", by="stype", engine="duckdb",
                      categories={"stype": ["M", "H", "E"]})
    assert_same(out, expected)


def test_partitioned_survey_object(replicate_frame, tmp_path):
    reps = [c for c in replicate_frame.columns if c.startswith("repwt")]
    spec = DesignColumns(weight="weight", replicate_columns=reps, replicate_method="sdr")
    survey = survey_sums.PartitionedSurvey(write_parts(replicate_frame, tmp_path / "p"), spec)
    one = survey.estimate_by("food_insecure", by="sex")
    two = survey.with_engine("chunks").estimate_by("food_insecure", by="sex")
    assert_same(one, two)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["chunks", "duckdb"])
def test_bad_weight_names_column_and_place_not_value(engine, tmp_path):
    frame = pd.DataFrame({"w": [1.0, 2.0, -7.25, 1.0], "y": [1.0, 2.0, 3.0, 4.0]})
    path = write_parts(frame, tmp_path / "bad", parts=2)
    with pytest.raises(SurveyDesignError) as info:
        estimate_by(path, DesignColumns(weight="w"), "y", engine=engine)
    message = str(info.value)
    assert "'w'" in message and "row" in message and "-7.25" not in message
    assert "\n" not in message


@pytest.mark.parametrize("engine", ["chunks", "duckdb"])
def test_missing_psu_and_missing_column_are_named(engine, tmp_path):
    frame = pd.DataFrame({"w": [1.0] * 4, "p": [1.0, np.nan, 2.0, 2.0], "y": [1.0] * 4})
    path = write_parts(frame, tmp_path / "np", parts=1)
    with pytest.raises(SurveyDesignError, match=r"'p'.*missing"):
        estimate_by(path, DesignColumns(weight="w", psu="p"), "y", engine=engine)
    with pytest.raises(SurveyDesignError, match=r"not found"):
        estimate_by(path, DesignColumns(weight="w"), "nope", engine=engine)


def test_calibrated_element_design_and_unknown_engine_are_refused(api):
    """A calibrated design without clusters is refused, saying why (its variance needs every
    row's squared calibration residual); an unknown engine is named."""
    from analysis import weighting

    frame = api["apistrat"]
    post = weighting.poststratify(frame, strat(frame), "awards",
                                  pd.Series({"No": 2400, "Yes": 3794}))
    with pytest.raises(SurveyDesignError, match="calibrated designs without clusters.*squared"):
        estimate_by(frame, post, "api00", engine="duckdb")
    frame = api["apiclus1"]
    with pytest.raises(SurveyDesignError, match="engine='spark'"):
        estimate_by(frame, clus1(frame), "api00", engine="spark")


def test_lonely_psu_fail_is_reported_by_the_engines(api, tmp_path):
    frame = api["apiclus1"]
    spec = DesignColumns(weight="pw", strata="cname", psu="dnum")
    path = write_parts(frame, tmp_path / "lonely")
    with pytest.raises(SurveyDesignError, match=r"single PSU.*single_psu"):
        estimate_by(path, spec, "api00", engine="duckdb")


@pytest.mark.parametrize("engine", ENGINES)
def test_weights_from_the_fpc_are_derived_in_the_reduce(engine, api, golden, dask_client):
    """Without a weight column the weights come from the population sizes (R's svydesign with
    fpc and no weights): two-stage apiclus2, and a stratified element sample."""
    c2, st_ = api["apiclus2"], api["apistrat"]
    cases = [
        (c2, DesignColumns(psu=["dnum", "snum"], fpc=["fpc1", "fpc2"]),
         SurveyDesign.from_frame(c2, psu=["dnum", "snum"], fpc=["fpc1", "fpc2"])),
        (st_, DesignColumns(strata="stype", fpc="fpc"),
         SurveyDesign.from_frame(st_, strata="stype", fpc="fpc")),
    ]
    for frame, spec, design in cases:
        expected = estimate_by(frame, design, ["api00", "enroll"], by="awards", ci="normal")
        actual = estimate_by(frame, spec, ["api00", "enroll"], by="awards", ci="normal",
                             engine=engine, chunk_rows=50, **options(engine, dask_client))
        assert_same(actual, expected)
    r_close(actual.iloc[0]["estimate"], golden("r_survey")["strat_mean_api00"]["estimate"])


@pytest.mark.parametrize("engine", ENGINES)
def test_non_probability_design_spec(engine, api, dask_client):
    """A processed frame's design spec (frame.attrs["design"]) for a non-probability sample:
    the weights as given, rows independent, and the method says so."""
    from analysis.survey import design_for

    frame = api["apiclus1"].copy()
    frame.attrs["design"] = {"sample_type": "non_probability", "weight": "pw", "strata": "stype",
                             "psu": "dnum", "single_psu": "fail"}
    expected = estimate_by(frame, design_for(frame), "api00", by="stype")
    actual = estimate_by(frame, frame.attrs["design"], "api00", by="stype", engine=engine,
                         chunk_rows=40, **options(engine, dask_client))
    assert_same(actual, expected)
    assert "non-probability" in actual["method"].iloc[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_cell_covariances_and_contrast_match_r(engine, nhanes, golden, dask_client):
    """svyby(..., covmat=TRUE) then svycontrast, female − male (golden nhanes_by_sex_diff_hichol),
    from the covariance of the partition-sum estimates."""
    from analysis.survey import cell_means_with_covariance, contrast

    frame = nhanes.assign(sex=nhanes["RIAGENDR"].map({1.0: "male", 2.0: "female"}))
    design = nhanes_design(frame)
    _table, covariance = cell_means_with_covariance(frame, design, "HI_CHOL", ["sex"])
    ours, covariances = survey_sums.estimate_by_sums(
        frame, design, "HI_CHOL", "sex", margins=False, engine=engine, covariance=True,
        chunk_rows=3000, **options(engine, dask_client))
    np.testing.assert_allclose(covariances[0], covariance, rtol=1e-10)
    diff = contrast(ours, covariances[0], "female", "male")
    entry = golden("r_survey")["nhanes_by_sex_diff_hichol"]
    r_close([diff["estimate"].iloc[0], diff["se"].iloc[0]], [entry["estimate"], entry["se"]])


# -- precision: shifted sums ---------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_shifted_sums_keep_precision_when_the_mean_dwarfs_the_sd(engine, tmp_path, dask_client):
    """Mean 1e9, SD 1: raw moments Σw²y² lose every digit of the variance (eps × 1e18 ≫ 1);
    sums of y − pilot keep the SEs of element and clustered designs to 1e-8. Reference: the
    in-memory estimator on y − 1e9 (SEs do not change with a shift; that data has no large
    mean to cancel, whereas the in-memory estimator on y itself loses ~1e-7 of a clustered SE)."""
    rng = np.random.default_rng(17)
    n = 4000
    frame = pd.DataFrame({
        "w": rng.uniform(1, 5, n), "h": rng.integers(0, 4, n), "psu": rng.integers(0, 40, n),
        "g": rng.choice(["a", "b", "c"], n), "y": 1e9 + rng.normal(0, 1, n),
    })
    frame.loc[rng.choice(n, 50, replace=False), "y"] = np.nan
    path = write_parts(frame, tmp_path / "big")
    centred = frame.assign(y=frame["y"] - 1e9)
    for design, spec in (
        (SurveyDesign.from_frame(centred, weight="w", strata="h"),
         DesignColumns(weight="w", strata="h")),
        (SurveyDesign.from_frame(centred, weight="w", strata="h", psu="psu", nest=True),
         DesignColumns(weight="w", strata="h", psu="psu", nest=True)),
    ):
        expected = estimate_by(centred, design, "y", by="g")
        expected["estimate"] += 1e9
        actual = estimate_by(path, spec, "y", by="g", engine=engine, **options(engine, dask_client))
        assert (expected["se"] > 0.01).all() and (expected["se"] < 1).all()
        np.testing.assert_allclose(actual["estimate"], expected["estimate"], rtol=1e-15)
        np.testing.assert_allclose(actual["se"], expected["se"], rtol=1e-8)
        # deff against R's definition computed from centred values (the in-memory estimator's
        # deff also uses raw moments, so it is not the reference here)
        cells = actual.set_index("cell")
        for cell in cells.index:
            rows = frame if cell == "all" else frame[frame["g"] == cell]
            rows = rows[rows["y"].notna()]
            w, y = rows["w"].to_numpy(), rows["y"].to_numpy()
            psum, n, mean = w.sum(), len(w), np.average(y, weights=w)
            s2 = (w * (y - mean) ** 2).sum() / psum * n / (n - 1)
            srs = s2 * (psum - n) / (psum * n) if psum > n else s2 / n
            assert cells.loc[cell, "deff"] == pytest.approx(cells.loc[cell, "se"] ** 2 / srs,
                                                            rel=1e-8)


# -- module structure ------------------------------------------------------------------------------


def test_survey_does_not_import_survey_sums_and_says_how_to_get_the_engines():
    """No import cycle survey <-> survey_sums: survey_sums registers its engines in
    survey.PARTITION_ENGINES; without it, asking for one says what to import."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import analysis.survey as survey_module

    tree = ast.parse(Path(survey_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.update(f"{node.module}.{a.name}" for a in node.names)
            imported.add(str(node.module))
    assert not any("survey_sums" in name for name in imported)
    assert set(survey_module.PARTITION_ENGINES) == set(survey_sums.ENGINES)
    code = ("import pandas as pd\nfrom analysis.survey import estimate_by, SurveyDesignError\n"
            "try:\n    estimate_by(pd.DataFrame({'y': [1.0]}), None, 'y', engine='duckdb')\n"
            "except SurveyDesignError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "import analysis.survey_sums" in out.stdout


# -- R's database-backed designs ---------------------------------------------------------------

DBTYPE_RESULTS = Path(__file__).parent / "results" / "r_dbtype" / "r_survey_dbtype.json"


def _dbtype_designs(api, replicate_frame):
    reps = [c for c in replicate_frame.columns if c.startswith("repwt")]
    return {
        "clus1": (api["apiclus1"], DesignColumns(weight="pw", psu="dnum", fpc="fpc")),
        "strat": (api["apistrat"], DesignColumns(weight="pw", strata="stype", fpc="fpc")),
        "sdr": (replicate_frame, DesignColumns(weight="weight", replicate_columns=reps,
                                               replicate_method="successive-difference",
                                               mse=True)),
    }


@pytest.mark.parametrize("engine", ENGINES)
def test_r_database_backed_designs_equal_in_memory_and_the_engines(engine, api, replicate_frame,
                                                                   tmp_path, dask_client):
    """R's own check: ``svydesign(..., dbtype="SQLite")`` (and ``svrepdesign``) equal the
    in-memory design. Its values are stored with the script that made them
    (tests/results/r_dbtype/); every engine reproduces the database-backed values."""
    import json

    stored = json.loads(DBTYPE_RESULTS.read_text())
    assert stored["max_relative_difference"] < 1e-12  # R: database-backed == in memory
    designs = _dbtype_designs(api, replicate_frame)
    paths = {name: write_parts(frame, tmp_path / name) for name, (frame, _) in designs.items()}
    for case in stored["cases"]:
        spec = designs[case["design"]][1]
        by = [case["by"]] if case["by"] else []
        out = estimate_by(paths[case["design"]], spec, case["indicator"], by=by, margins=False,
                          statistic=case["statistic"], engine=engine,
                          **options(engine, dask_client))
        if by:
            out = out[out["cell"] != "all"]
        assert list(out["cell"].astype(str)) == case["cell"], case
        r_close(out["estimate"], case["estimate_db"])
        r_close(out["se"], case["se_db"])
        np.testing.assert_allclose(case["estimate_db"], case["estimate_memory"], rtol=1e-12)
        np.testing.assert_allclose(case["se_db"], case["se_memory"], rtol=1e-12)


# -- calibrated designs --------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_calibrated_designs_through_each_engine(engine, api, golden, dask_client):
    """Post-stratified and raked apiclus1 (R's postStratify / rake): the partition sums carry
    each projection's reading-weighted sums, basis by PSU and cross tables, so the variance uses
    the calibration residuals as in memory (1e-10) and as R (1e-6)."""
    from analysis import weighting

    frame = api["apiclus1"]
    design = clus1(frame)
    stype = pd.Series({"E": 4421, "H": 755, "M": 1018})
    post = weighting.poststratify(frame, design, "stype", stype)
    raked = weighting.rake(frame, design,
                           {"stype": stype, "sch.wide": pd.Series({"No": 1072, "Yes": 5122})},
                           max_iter=10, tol=1 / design.weights.sum())
    entries = golden("r_survey")
    for calibrated, name in ((post, "clus1_poststratify_stype_mean_api00"),
                             (raked, "clus1_rake_stype_schwide_mean_api00")):
        opts = options(engine, dask_client)
        overall = estimate_by(frame, calibrated, "api00", ci="normal", engine=engine, **opts)
        assert_same(overall, estimate_by(frame, calibrated, "api00", ci="normal"))
        r_close(overall["estimate"].iloc[0], entries[name]["estimate"])
        r_close(overall["se"].iloc[0], entries[name]["se"])
        assert "calibrated:" in overall["method"].iloc[0]
        # cells crossing the post-strata, margins, a ratio and a total
        for kwargs in ({"by": ["sch.wide", "stype"]}, {"by": "awards", "statistic": "total"},
                       {"by": "sch.wide", "statistic": "ratio", "denominator": "api99"}):
            expected = estimate_by(frame, calibrated, ["api00", "enroll"], **kwargs)
            actual = estimate_by(frame, calibrated, ["api00", "enroll"], engine=engine,
                                 chunk_rows=70, **opts, **kwargs)
            assert_same(actual, expected)


@pytest.mark.parametrize("engine", ["chunks", "duckdb"])
def test_bad_replicate_weight_from_arrow_names_column_and_place(engine, tmp_path):
    """Replicate weights read from Arrow without pandas (int32 with a null, a negative value)
    are checked as before: the column and where, never the value."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 40
    folder = tmp_path / "reps"
    folder.mkdir()
    base = {"w": pa.array(np.full(n, 10, dtype=np.int32)), "y": pa.array(np.arange(n) % 2 * 1.0)}
    for case, bad in (("null", None), ("negative", -3)):
        reps = {f"r{k}": pa.array(np.full(n, 10 + k, dtype=np.int32)) for k in range(4)}
        values = [10] * n
        values[17] = bad
        reps["r2"] = pa.array(values, type=pa.int32())
        pq.write_table(pa.table({**base, **reps}), folder / f"{case}.parquet")
        spec = DesignColumns(weight="w", replicate_columns=list(reps),
                             replicate_method="bootstrap")
        with pytest.raises(SurveyDesignError) as info:
            estimate_by(str(folder / f"{case}.parquet"), spec, "y", engine=engine, threads=2)
        message = str(info.value)
        assert "'r2'" in message and "1 missing, negative or infinite" in message
        # the value is never quoted (the message names the file, whose temporary folder's name
        # may itself hold "-3": look only at what follows it)
        assert "-3" not in message.replace(str(folder), "") and "\n" not in message
