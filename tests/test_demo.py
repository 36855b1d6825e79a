"""Tests of the SYNTHETIC demo collaborative (src/analysis/demo.py, data/raw/demo/, its cards).

- the generator is deterministic: regenerating with the default seed gives copies of the
  committed files (byte-identical with the pinned library versions, cell-identical otherwise),
  which also proves the committed demo is up to date;
- the raw files carry the planted truth: estimates from the raw files (design-weighted, or
  weighted to the official margins for the non-probability surveys) are within 4 standard errors
  of the finite-population values in TRUTH.json, and the planted gaps and the intersectional
  excess are there;
- canaries are in the raw personal columns and listed in TRUTH.json, and ingesting every demo
  source never lets one reach data/processed;
- every demo card validates against the data-layer card model and every file says SYNTHETIC.
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from analysis import config, demo
from analysis.sources.card import card_paths, load_card

DEMO_DIR = config.DEMO_DIR
DEMO_SOURCES = ("demo_youth", "demo_disability", "demo_displacement", "demo_older",
                "demo_population_margins", "demo_official_estimates", "demo_partner_studies", "demo_voices")
#: Tolerance for an estimate against its population value, in standard errors. With a few dozen
#: such checks a 4-SE band fails by chance with probability well under 1 in 1,000.
Z = 4.0


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads((DEMO_DIR / demo.FILES["truth"]).read_text(encoding="utf-8"))


def truth_value(truth: dict, source: str, country: str, indicator: str, breakdown: str, cell: str) -> float:
    rows = [r for r in truth["truth"] if (r["source"], r["country"], r["indicator"], r["breakdown"], r["cell"])
            == (source, country, indicator, breakdown, cell)]
    assert len(rows) == 1, (source, country, indicator, breakdown, cell)
    return rows[0]["value"]


def weighted_mean_se(y, w, strata=None, psu=None) -> tuple[float, float]:
    """Weighted mean and its linearisation SE (with-replacement PSUs within strata).

    Var = sum_h n_h/(n_h-1) sum_c (z_hc - mean_h z)^2 with z_hc the PSU totals of
    w_i (y_i - ybar) / sum(w); a stratum with one PSU contributes nothing. Rows with missing y
    are dropped (a domain would keep them with y=0, which does not change the SE's order).
    """
    y = np.asarray(y, dtype=float)
    w = np.asarray(w, dtype=float)
    keep = ~np.isnan(y)
    y, w = y[keep], w[keep]
    strata = np.zeros(len(y)) if strata is None else np.asarray(strata)[keep]
    psu = np.arange(len(y)) if psu is None else np.asarray(psu)[keep]
    mean = np.sum(w * y) / np.sum(w)
    z = w * (y - mean) / np.sum(w)
    # PSU totals, then the between-PSU sum of squares within each stratum
    stratum_code, psu_code = pd.factorize(strata)[0], pd.factorize(psu)[0]
    unit = pd.factorize(stratum_code * (psu_code.max() + 1) + psu_code)[0]
    totals = np.bincount(unit, weights=z)
    first_row = np.unique(unit, return_index=True)[1]
    unit_stratum = pd.factorize(pd.Series(strata[first_row]))[0]
    n_h = np.bincount(unit_stratum)
    mean_h = np.bincount(unit_stratum, weights=totals) / n_h
    ss_h = np.bincount(unit_stratum, weights=(totals - mean_h[unit_stratum]) ** 2)
    lonely = n_h < 2  # a stratum with one PSU contributes nothing
    var = float(np.sum(np.where(lonely, 0.0, n_h / np.maximum(n_h - 1, 1) * ss_h)))
    return float(mean), float(np.sqrt(var))


def margin_weights(sample: pd.DataFrame, margins: pd.DataFrame) -> np.ndarray:
    """Cell weights to the official margins: N(admin1, sex, age group) / n(admin1, sex, age group)."""
    keys = ["country", "admin1", "sex", "age_group"]
    pop = margins.assign(sex=margins["sex"].str.lower())[keys + ["population"]]
    cells = sample[keys].astype(str).merge(pop, on=keys, how="left", validate="many_to_one")
    n = cells.groupby(keys)["population"].transform("size")
    assert cells["population"].notna().all(), "a sample cell has no official margin"
    return (cells["population"] / n).to_numpy(dtype=float)


def assert_close(estimate: float, se: float, value: float, what: str) -> None:
    assert se > 0, what
    assert abs(estimate - value) <= Z * se, f"{what}: estimate {estimate:.4f} vs population {value:.4f} (se {se:.4f})"


AGE_BINS = [17, 24, 34, 44, 54, 64, 200]


def age_group(age) -> pd.Series:
    return pd.cut(pd.to_numeric(age), AGE_BINS, labels=list(demo.age_bands())).astype(str)


# --------------------------------------------------------------------------------------------
# Raw files as a CSO shares them
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def disability_raw() -> pd.DataFrame:
    frame, _ = pyreadstat.read_sav(str(DEMO_DIR / demo.FILES["disability"]))
    ws = frame[[f"ws{i}" for i in range(1, 7)]]
    frame["disability"] = np.where((ws >= 3).any(axis=1), "yes", np.where(ws.notna().all(axis=1), "no", None))
    frame["sex"] = frame["q1_sex"].map({1: "male", 2: "female"})
    return frame


@pytest.fixture(scope="module")
def displacement_raw() -> pd.DataFrame:
    # second row: HXL hashtags
    return pd.read_csv(DEMO_DIR / demo.FILES["displacement"], skiprows=[1], keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def margins_raw() -> pd.DataFrame:
    return pd.read_csv(DEMO_DIR / demo.FILES["margins"], keep_default_na=False)


@pytest.fixture(scope="module")
def youth_raw(margins_raw) -> pd.DataFrame:
    frame = pd.read_excel(DEMO_DIR / demo.FILES["youth"], sheet_name="data", engine="openpyxl")
    assert "respondent/sex" in frame.columns  # Kobo group prefixes, as exported
    frame = frame.rename(columns=lambda c: c.split("/")[-1])
    lookup = demo.read_admin1_lookup(DEMO_DIR / demo.FILES["admin1_lookup"])
    names = dict(zip(lookup["admin1_code"].str.lower().str.replace("-", "_"), lookup["admin1"]))
    frame["admin1"] = frame["region"].map(names)
    frame["age_group"] = age_group(frame["age"])
    frame["margin_weight"] = margin_weights(frame, margins_raw)
    return frame


@pytest.fixture(scope="module")
def older_raw(margins_raw) -> pd.DataFrame:
    frame = pd.read_excel(DEMO_DIR / demo.FILES["older"], sheet_name="donnees", engine="openpyxl")
    frame["country"] = "SEN"
    frame["admin1"] = frame["region"].replace({v: k for k, v in demo.UNACCENTED_REGIONS.items()})
    frame["sex"] = frame["sexe"].map({"Femme": "female", "Homme": "male"})
    frame["age_group"] = age_group(frame["age"])
    frame["margin_weight"] = margin_weights(frame, margins_raw)
    return frame


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


def _same_content(fresh: Path, committed: Path) -> bool:
    """Same data in two demo files: bytes, else (another openpyxl/pyreadstat) cells and labels."""
    if fresh.read_bytes() == committed.read_bytes():
        return True
    if fresh.suffix == ".xlsx":
        with zipfile.ZipFile(fresh) as a, zipfile.ZipFile(committed) as b:
            if sorted(a.namelist()) == sorted(b.namelist()) and all(a.read(n) == b.read(n) for n in a.namelist()):
                return True
        one = pd.read_excel(fresh, sheet_name=None, engine="openpyxl")
        two = pd.read_excel(committed, sheet_name=None, engine="openpyxl")
        return one.keys() == two.keys() and all(one[k].equals(two[k]) for k in one)
    if fresh.suffix == ".sav":
        (one, meta_one), (two, meta_two) = pyreadstat.read_sav(str(fresh)), pyreadstat.read_sav(str(committed))
        return one.equals(two) and meta_one.variable_value_labels == meta_two.variable_value_labels
    return False


@pytest.mark.slow
def test_regenerating_with_the_default_seed_reproduces_the_committed_files(tmp_path):
    """Same seed, same files: the committed demo is what `python -m analysis demo` makes."""
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert demo.main(parser.parse_args(["--out", str(tmp_path)])) == 0
    # top-level files, the partner studies in studies/ (analysis.demo_evidence) and the coded
    # open answers in voices/ (analysis.demo_voices)
    committed = sorted(str(p.relative_to(DEMO_DIR)) for p in [*DEMO_DIR.iterdir(), *DEMO_DIR.glob("studies/*"),
                                                             *DEMO_DIR.glob("voices/*")] if p.is_file())
    fresh = [*tmp_path.iterdir(), *tmp_path.glob("studies/*"), *tmp_path.glob("voices/*")]
    assert sorted(str(p.relative_to(tmp_path)) for p in fresh if p.is_file()) == committed
    for name in committed:
        assert _same_content(tmp_path / name, DEMO_DIR / name), (
            f"{name} differs from a fresh `python -m analysis demo`: regenerate and commit data/raw/demo"
        )
    # text files are byte-identical whatever the library versions
    for name in committed:
        if name.endswith((".csv", ".json", ".md")):
            assert (tmp_path / name).read_bytes() == (DEMO_DIR / name).read_bytes(), name


def test_xlsx_and_sav_containers_are_byte_stable(tmp_path):
    """Writing the same table twice gives the same bytes (write times are fixed in the files)."""
    frame = pd.DataFrame({"id": ["a", "b"], "code": [1, 2], "label": ["Oui", "Non"]})
    for attempt in ("one", "two"):
        demo._write_excel(tmp_path / f"{attempt}.xlsx", {"data": frame})
        pyreadstat.write_sav(frame, tmp_path / f"{attempt}.sav", variable_value_labels={"code": {1: "Yes", 2: "No"}})
        demo._fix_sav_timestamp(tmp_path / f"{attempt}.sav")
    assert (tmp_path / "one.xlsx").read_bytes() == (tmp_path / "two.xlsx").read_bytes()
    assert (tmp_path / "one.sav").read_bytes() == (tmp_path / "two.sav").read_bytes()
    _, meta = pyreadstat.read_sav(str(tmp_path / "one.sav"), metadataonly=True)
    assert meta.creation_time.year == 2021


def test_population_is_a_function_of_the_seed():
    lookup = demo.read_admin1_lookup(DEMO_DIR / demo.FILES["admin1_lookup"])
    first = demo.make_population("SEN", lookup, seed=7).frame
    again = demo.make_population("SEN", lookup, seed=7).frame
    other = demo.make_population("SEN", lookup, seed=8).frame
    pd.testing.assert_frame_equal(first, again)
    assert not first[list(demo.BASE_PROBABILITY)].equals(other[list(demo.BASE_PROBABILITY)])


def test_admin1_lookup_matches_natural_earth(shared_dir):
    gpkg = shared_dir / "data/natural-earth/admin1/ne_10m_admin_1_states_provinces_simplified.gpkg"
    fresh = demo.build_admin1_lookup(gpkg)
    committed = demo.read_admin1_lookup(DEMO_DIR / demo.FILES["admin1_lookup"])
    pd.testing.assert_frame_equal(fresh.reset_index(drop=True), committed.reset_index(drop=True))


def test_admin1_names_and_codes_are_those_of_the_project_boundaries():
    import pyogrio

    boundaries = pyogrio.read_dataframe(config.BOUNDARIES_DIR / "admin1.gpkg", layer="admin1", read_geometry=False)
    known = set(zip(boundaries["adm0_a3"], boundaries["name"], boundaries["iso_3166_2"]))
    lookup = demo.read_admin1_lookup(DEMO_DIR / demo.FILES["admin1_lookup"])
    assert set(zip(lookup["country"], lookup["admin1"], lookup["admin1_code"])) <= known


# --------------------------------------------------------------------------------------------
# Planted truth
# --------------------------------------------------------------------------------------------


def test_truth_describes_the_planted_model_and_sample_sizes(truth):
    assert truth["synthetic"] is True and truth["seed"] == demo.DEFAULT_SEED
    assert truth["model"]["interactions"] == [
        {"indicator": "experienced_violence", "terms": ["female", "disability"], "value": 0.10}]
    assert set(truth["surveys"]) == {"demo_youth", "demo_disability", "demo_displacement", "demo_older"}
    for meta in truth["surveys"].values():
        assert 1500 <= meta["n"] <= 4000
        assert sum(meta["n_by_country"].values()) == meta["n"]
    # the intersectional excess of every finite population is the planted +0.10 up to the
    # Bernoulli noise of the population (smallest cell: a few hundred units)
    for row in truth["intersectional_excess"]:
        assert abs(row["value"] - 0.10) < 0.05, row


def test_disability_survey_recovers_the_population_values(disability_raw, truth):
    raw = disability_raw
    for country in ("KEN", "BGD"):
        part = raw[raw["country"] == country]
        for indicator, column in (("food_insecurity", "q11"), ("missed_health_care", "q10")):
            y = part[column].map({1: 1.0, 2: 0.0})
            for cell in ("yes", "no"):
                inside = (part["disability"] == cell).to_numpy()
                est, se = weighted_mean_se(y[inside], part["wt"][inside], part["stratum"][inside], part["cluster"][inside])
                value = truth_value(truth, "demo_disability", country, indicator, "disability", cell)
                assert_close(est, se, value, f"{country} {indicator} disability={cell}")
            gap = (truth_value(truth, "demo_disability", country, indicator, "disability", "yes")
                   - truth_value(truth, "demo_disability", country, indicator, "disability", "no"))
            assert gap > 0.10  # the planted disability gap (conditional +0.12 / +0.15)


def test_disability_survey_carries_the_intersectional_excess(disability_raw, truth):
    raw = disability_raw
    y = raw["q16"].map({1: 1.0, 2: 0.0})
    for country in ("KEN", "BGD"):
        # the double difference as one weighted mean of a signed score:
        # excess = sum_c s_c * mean_c; its linearised score is sum_c s_c * 1[c] (y - mean_c) / W_c
        part = raw["country"] == country
        scores = np.zeros(len(raw))
        excess = 0.0
        for sex, dis, sign in (("female", "yes", 1), ("female", "no", -1), ("male", "yes", -1), ("male", "no", 1)):
            inside = (part & (raw["sex"] == sex) & (raw["disability"] == dis) & y.notna()).to_numpy()
            w = raw["wt"].to_numpy()
            mean = np.sum(w[inside] * y[inside]) / np.sum(w[inside])
            excess += sign * mean
            scores[inside] += sign * w[inside] * (y[inside] - mean) / np.sum(w[inside])
        totals = pd.DataFrame({"h": raw["stratum"], "c": raw["cluster"], "z": scores})[part.to_numpy()]
        totals = totals.groupby(["h", "c"])["z"].sum().reset_index()
        var = sum(len(g) / (len(g) - 1) * np.sum((g["z"] - g["z"].mean()) ** 2) for _, g in totals.groupby("h") if len(g) > 1)
        value = next(r["value"] for r in truth["intersectional_excess"]
                     if r["source"] == "demo_disability" and r["country"] == country)
        assert_close(excess, np.sqrt(var), value, f"{country} excess on experienced_violence")
        assert np.sqrt(var) < 0.045  # enough sample in the four cells to see a 0.10 excess


def test_displacement_survey_carries_the_displacement_gap(displacement_raw, truth):
    raw = displacement_raw
    y = raw["food_insecurity_freq"].isin(["sometimes", "often"]).astype(float)
    status = raw["displacement_status"].map({"host community": "host", "IDP": "idp"}).fillna(raw["displacement_status"])
    for cell in ("refugee", "host", "idp"):
        inside = (status == cell).to_numpy()
        est, se = weighted_mean_se(y[inside], raw["weight"][inside], raw["stratum"][inside], raw["psu"][inside])
        value = truth_value(truth, "demo_displacement", "UGA", "food_insecurity", "displacement_status", cell)
        assert_close(est, se, value, f"food_insecurity displacement={cell}")
    gap = (truth_value(truth, "demo_displacement", "UGA", "food_insecurity", "displacement_status", "refugee")
           - truth_value(truth, "demo_displacement", "UGA", "food_insecurity", "displacement_status", "host"))
    assert gap > 0.15


def test_displacement_survey_has_a_small_cell_for_suppression(displacement_raw, truth):
    raw = displacement_raw
    refugees_65 = ((raw["displacement_status"] == "refugee") & (raw["age"] >= 65)).sum()
    assert 0 < refugees_65 < 25  # below the default suppression threshold
    assert refugees_65 == truth["surveys"]["demo_displacement"]["n_refugees_65plus"]
    # camps and host communities, each stratum with 2-5 PSUs (no single-PSU stratum here)
    assert set(raw["location_type"]) == {"camp", "host_community"}
    psus = raw.groupby("stratum")["psu"].nunique()
    assert psus.between(2, 5).all()


def test_youth_survey_weighted_to_the_margins_recovers_the_gender_gap(youth_raw, truth):
    raw = youth_raw
    y = raw["income_loss"].map({"yes": 1.0, "no": 0.0})
    for country in ("KEN", "UGA", "SEN"):
        values = {}
        for sex in ("female", "male"):
            inside = ((raw["country"] == country) & (raw["sex"] == sex)).to_numpy()
            est, se = weighted_mean_se(y[inside], raw["margin_weight"][inside])
            values[sex] = truth_value(truth, "demo_youth", country, "income_loss", "sex", sex)
            assert_close(est, se, values[sex], f"youth {country} income_loss sex={sex}")
        assert values["female"] - values["male"] > 0.05  # planted +0.10
    # the non-probability selection over-represents the capitals: unweighted shares are biased
    capital = raw["admin1"].isin(["Nairobi", "Kampala", "Dakar"]).mean()
    weighted = np.average(raw["admin1"].isin(["Nairobi", "Kampala", "Dakar"]), weights=raw["margin_weight"])
    assert capital > weighted + 0.05


def test_older_persons_survey_recovers_the_older_age_gap(older_raw, truth):
    raw = older_raw
    y = raw["soins_non_recus"].map({"Oui": 1.0, "Non": 0.0})
    for cell in ("55-64", "65+"):
        inside = (raw["age_group"] == cell).to_numpy()
        est, se = weighted_mean_se(y[inside], raw["margin_weight"][inside])
        assert_close(est, se, truth_value(truth, "demo_older", "SEN", "missed_health_care", "age_group", cell),
                     f"older missed_health_care age_group={cell}")
    assert set(raw["sexe"]) == {"Femme", "Homme"}
    assert set(raw["handicap"]) == {"Oui", "Non", "Ne sait pas"}
    assert not any(c.startswith("wg") for c in raw.columns)  # a single question, not the WG-SS


def test_margins_cover_every_cell_and_add_up_to_the_population(margins_raw, truth):
    cells = margins_raw.groupby("country").size()
    for country, units in demo.ADMIN1.items():
        assert cells[country] == len(units) * 2 * len(demo.age_bands())
        total = margins_raw.loc[margins_raw["country"] == country, "population"].sum()
        assert total == pytest.approx(truth["populations"][country]["adults_represented"], rel=0.001)


def test_official_estimates_are_the_population_values_within_their_se(truth):
    official = pd.read_csv(DEMO_DIR / demo.FILES["aggregates"], keep_default_na=False)
    assert set(official["breakdown"]) == {"all", "sex", "age_group"}  # by sex and age only
    assert official["n"].min() > 0
    for row in official.itertuples():
        value = truth_value(truth, "demo_official_estimates", row.country, row.indicator, row.breakdown, str(row.cell))
        assert abs(row.estimate - value) <= Z * row.se + 0.0005, row


# --------------------------------------------------------------------------------------------
# Canaries and labelling
# --------------------------------------------------------------------------------------------


def test_canaries_are_in_the_raw_personal_columns_and_listed(truth, disability_raw, displacement_raw, youth_raw, older_raw):
    canaries = truth["canaries"]
    marker = canaries["marker"]
    raws = {"demo_youth": youth_raw, "demo_disability": disability_raw,
            "demo_displacement": displacement_raw, "demo_older": older_raw}
    for source, raw in raws.items():
        listed = canaries["personal_columns"][source]
        values = pd.concat([raw[c].astype(str) for c in listed["columns"]])
        assert values.str.contains(marker).all(), source
        assert len(values) == listed["count"]
        assert set(listed["examples"]) <= set(values)
    # free-text canaries: realistic phone numbers inside the comments of three surveys
    comments = pd.concat([youth_raw["comments"], disability_raw["comments"], displacement_raw["comments"]]).dropna()
    assert len(canaries["free_text"]) > 20
    for phone in canaries["free_text"]:
        assert comments.str.contains(phone, regex=False).any(), phone
    # the older-persons comments hold none, so the free-text scan at ingest passes
    assert not older_raw["commentaires"].dropna().str.contains(r"\+\d{3}").any()


def test_every_demo_card_validates_and_is_labelled_synthetic():
    cards = {k: v for k, v in card_paths().items() if k.startswith("demo_")}
    assert set(cards) == set(DEMO_SOURCES)
    for source, path in cards.items():
        card = load_card(path)
        assert card.synthetic is True, source
        assert "SYNTHETIC" in card.title and "SYNTHETIC" in (card.description or ""), source
        for spec in card.files:
            assert (config.RAW_DIR / spec.path).exists(), spec.path
    personal = {s: load_card(cards[s]).personal_columns for s in DEMO_SOURCES[:4]}
    assert all(len(columns) >= 2 for columns in personal.values())


def test_every_demo_file_says_synthetic(truth):
    for name in (demo.FILES["displacement"], demo.FILES["margins"], demo.FILES["aggregates"]):
        assert "SYNTHETIC" in (DEMO_DIR / name).read_text(encoding="utf-8"), name
    for name in (demo.FILES["youth"], demo.FILES["youth_form"], demo.FILES["older"]):
        with zipfile.ZipFile(DEMO_DIR / name) as book:
            assert b"SYNTHETIC" in book.read("docProps/core.xml"), name
    _, meta = pyreadstat.read_sav(str(DEMO_DIR / demo.FILES["disability"]), metadataonly=True)
    assert "SYNTHETIC" in meta.file_label
    assert "SYNTHETIC" in (DEMO_DIR / demo.FILES["readme"]).read_text(encoding="utf-8")
    assert truth["synthetic"] is True and "SYNTHETIC" in truth["notice"]


# --------------------------------------------------------------------------------------------
# Through the ingest: no canary reaches processed data; the truth is still recoverable
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processed_dir(tmp_path_factory, monkeypatch_module):
    from analysis.sources import ingest

    out = tmp_path_factory.mktemp("processed")
    monkeypatch_module.setenv("ANALYSIS_ID_SALT", "d3m0c0ffee5a1t0123456789abcdef0123456789abcdef0123456789abcdef01")
    parser = argparse.ArgumentParser()
    ingest.add_arguments(parser)
    assert ingest.main(parser.parse_args([*DEMO_SOURCES, "--processed", str(out), "--force"])) == 0
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.mark.slow
def test_ingest_keeps_every_row_and_no_canary_reaches_processed_data(processed_dir, truth):
    canaries = truth["canaries"]
    needles = [canaries["marker"], *canaries["free_text"]]
    for examples in canaries["personal_columns"].values():
        needles += examples["examples"]
    files = sorted(processed_dir.iterdir())
    assert {p.name for p in files} >= {f"{s}.parquet" for s in DEMO_SOURCES}
    for path in files:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            text = "\n".join([" ".join(map(str, frame.columns)),
                              *(frame[c].astype(str).str.cat(sep="\n") for c in frame.columns)])
        else:
            text = path.read_text(encoding="utf-8")
        for needle in needles:
            assert needle.lower() not in text.lower(), f"{path.name} contains a canary"
    for source, meta in truth["surveys"].items():
        assert len(pd.read_parquet(processed_dir / f"{source}.parquet")) == meta["n"]


@pytest.mark.slow
def test_processed_disability_survey_recovers_the_excess_with_the_survey_api(processed_dir, truth):
    from analysis.sources import load_processed
    from analysis.survey import cell_means_with_covariance, design_for

    frame = load_processed("demo_disability", processed_dir)
    assert frame.attrs["source"]["synthetic"] is True
    for country in ("KEN", "BGD"):
        part = frame[frame["country"] == country].reset_index(drop=True)
        part.attrs = frame.attrs
        table, cov = cell_means_with_covariance(part, design_for(part), "experienced_violence", ["sex", "disability"])
        cells = list(table["cell"].astype(str))
        signs = np.zeros(len(cells))
        for cell, sign in (("female × yes", 1), ("female × no", -1), ("male × yes", -1), ("male × no", 1)):
            signs[cells.index(cell)] = sign
        excess = float(signs @ table["estimate"].to_numpy())
        se = float(np.sqrt(signs @ cov @ signs))
        value = next(r["value"] for r in truth["intersectional_excess"]
                     if r["source"] == "demo_disability" and r["country"] == country)
        assert_close(excess, se, value, f"{country} excess (processed, survey API)")


@pytest.mark.slow
@pytest.mark.parametrize("source", ["demo_disability", "demo_displacement"])
def test_design_weighted_estimates_scatter_around_the_truth_like_sampling_error(processed_dir, truth, source):
    """Over every truth cell with n >= 50, (estimate - truth) / se is centred on 0 with sd ~1.

    A wrong weight, PSU or truth definition shifts or widens this distribution; one seed's
    sampling noise does not (about a thousand cells, correlated through shared respondents).
    """
    from analysis.sources import load_processed

    frame = load_processed(source, processed_dir)
    frame.attrs = {}  # pandas deep-copies attrs on every slice: drop them, the loop slices a lot
    cells: dict[tuple, dict[str, float]] = {}
    for r in truth["truth"]:
        if r["source"] == source:
            cells.setdefault((r["country"], r["breakdown"], r["cell"]), {})[r["indicator"]] = r["value"]
    z = []
    for breakdown in sorted({key[1] for key in cells}):
        dims = [] if breakdown == "all" else breakdown.split(" × ")
        keys = frame[["country", *dims]].astype("string").fillna("<NA>")
        for cell_key, index in keys.groupby(["country", *dims], sort=True).indices.items():
            cell_key = cell_key if isinstance(cell_key, tuple) else (cell_key,)
            country, cell = cell_key[0], " × ".join(cell_key[1:]) if dims else "all"
            if len(index) < 50:
                continue
            part = frame.iloc[index]
            for indicator, value in cells.get((country, breakdown, cell), {}).items():
                estimate, se = weighted_mean_se(part[indicator], part["weight"], part["strata"], part["psu"])
                z.append((estimate - value) / se)
    z = np.array(z)
    assert len(z) > 300
    assert abs(z.mean()) < 0.4
    assert 0.8 < z.std() < 1.3
    assert np.mean(np.abs(z) > 3) < 0.02
