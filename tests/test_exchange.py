"""Exchange with official statistics offices: SDMX-CSV 2.0, the Frictionless Data Package, quality statements.

The fast tests build an ``all_estimates``-shaped table with the library itself (the disclosure
module's primary and secondary suppression included) and export it into a temporary outputs
folder; the slow test exports the demo report that the output tests build once per session.
"""

from __future__ import annotations

import csv
import html
import json
import math
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import disclosure, tables
from analysis.exchange import ExchangeError, export_report, load_settings, quality, sdmx_csv
from analysis.exchange.datapackage import licence_entry, validate_package

THRESHOLDS = {"suppress_below": 25, "caution_below": 50}
METHOD = "weighted mean; Taylor linearisation, stratified, clustered; 95% CI: Wald, t with design df"


def _row(breakdown, cell, estimate, n, *, method=METHOD, indicator="food_insecurity",
         group="persons_with_disabilities", source="demo_disability", country="KEN", se=0.021):
    return {"source": source, "country": country, "group": group, "indicator": indicator,
            "breakdown": breakdown, "cell": cell, "estimate": estimate, "se": se,
            "ci_low": estimate - 0.041, "ci_high": estimate + 0.043, "n_unweighted": n,
            "n_weighted": n * 1234.5, "flag": "ok", "method": method}


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    """A published table: cells through the real disclosure control, plus derived rows."""
    cells = [
        _row("all", "all", 0.40, 340),
        _row("sex", "female", 0.5, 20),             # primary suppression (n < 25)
        _row("sex", "male", 0.38, 320),             # secondary: would reveal the female cell
        _row("disability", "yes", 0.45, 40),        # caution (25 <= n < 50)
        _row("disability", "no", 0.39, 300),
        _row("age_group", "18-24", 0.41, 170),
        _row("age_group", "65+", 0.39, 170),
        _row("urban_rural", "urban", 0.31, 200), _row("urban_rural", "rural", 0.52, 140),
        _row("income_group", "lowest", 0.61, 70), _row("income_group", "highest", 0.2, 270),
        _row("displacement_status", "idp", 0.47, 90), _row("displacement_status", "host", 0.38, 250),
        _row("comparison", "group", 0.45, 40), _row("comparison", "reference", 0.39, 300),
        _row("comparison × age_group", "group × 65+", 0.48, 60),
        _row("admin1_code", "KE-110", 0.42, 120),
        _row("all", "all", 2.25, 340, indicator="meals_skipped_days"),
    ]
    table = disclosure.apply_suppression(tables.conform(pd.DataFrame(cells)), THRESHOLDS)
    derived = pd.DataFrame([
        _row("sex", "female vs male", 0.12, 340, method="difference"),
        _row("disability", "yes vs no", 0.06, 340, method="difference"),
        _row("disability", "yes vs no", 1.15, 340, method="ratio (CI on log scale; se is SE of log ratio)"),
    ])
    derived = tables.conform(derived).assign(suppression_reason=pd.NA)
    derived.loc[0, ["estimate", "se", "ci_low", "ci_high", "n_unweighted", "n_weighted"]] = pd.NA
    derived.loc[0, "flag"] = "suppressed"   # derived from a withheld cell: no reason column value
    return pd.concat([table, derived], ignore_index=True)


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.fixture(scope="module")
def catalogue():
    return sdmx_csv.Catalogue.from_params(THRESHOLDS)


@pytest.fixture(scope="module")
def coded(published, settings, catalogue) -> pd.DataFrame:
    return sdmx_csv.code_rows(published, settings, catalogue)


def _lookup(coded: pd.DataFrame, published: pd.DataFrame, breakdown: str, cell: str, method_start="weighted",
            indicator="food_insecurity"):
    mask = ((published["breakdown"] == breakdown) & (published["cell"] == cell)
            & (published["indicator"] == indicator)
            & published["method"].str.startswith(method_start)).to_numpy(dtype=bool)
    assert mask.sum() == 1, (breakdown, cell)
    return coded[mask].iloc[0]


# --------------------------------------------------------------------------------------------
# Coding with the SDG code lists


@pytest.mark.parametrize("breakdown, cell, dimension, code", [
    ("sex", "male", "SEX", "M"),
    ("age_group", "18-24", "AGE", "Y18T24"),
    ("age_group", "65+", "AGE", "Y_GE65"),
    ("disability", "yes", "DISABILITY_STATUS", "PD"),
    ("disability", "no", "DISABILITY_STATUS", "PWD"),
    ("urban_rural", "rural", "URBANISATION", "R"),
    ("income_group", "lowest", "INCOME_WEALTH_QUANTILE", "Q1"),
    ("displacement_status", "idp", "OTHER_BREAKDOWN", "DISPLACEMENT_STATUS_IDP"),
    ("comparison", "reference", "GROUP_ROLE", "R"),
    ("admin1_code", "KE-110", "SUBNATIONAL", "KE-110"),
])
def test_cells_are_coded_with_the_sdg_code_lists(published, coded, breakdown, cell, dimension, code):
    row = _lookup(coded, published, breakdown, cell)
    assert row[dimension] == code
    others = [d for d in ("SEX", "AGE", "DISABILITY_STATUS", "URBANISATION", "INCOME_WEALTH_QUANTILE",
                          "OTHER_BREAKDOWN", "GROUP_ROLE", "SUBNATIONAL", "CELL_DETAIL") if d != dimension]
    assert all(row[d] == "_T" for d in others), row[others].to_dict()
    assert row["REF_AREA"] == "404"                       # Kenya, M49, from CL_AREA
    assert row["POP_GROUP"] == "persons_with_disabilities"
    assert row["INDICATOR"] == "food_insecurity"
    assert row["TIME_PERIOD"] == "2021"                   # the card's collection period ends in 2021
    assert row["TIME_DETAIL"] == "2021-03-01/2021-05-31"


def test_crossed_and_contrast_cells(published, coded):
    row = _lookup(coded, published, "comparison × age_group", "group × 65+")
    assert (row["GROUP_ROLE"], row["AGE"], row["CELL_DETAIL"]) == ("G", "Y_GE65", "_T")
    diff = _lookup(coded, published, "disability", "yes vs no", "difference")
    assert (diff["DISABILITY_STATUS"], diff["CELL_DETAIL"], diff["STATISTIC"]) == ("PD", "vs no", "DIFF")
    assert (diff["UNIT_MEASURE"], diff["UNIT_MULT"]) == ("PT", "2")   # percentage points of a share
    ratio = _lookup(coded, published, "disability", "yes vs no", "ratio")
    assert (ratio["STATISTIC"], ratio["UNIT_MEASURE"], ratio["UNIT_MULT"]) == ("RATIO", "RO", "0")
    mean = coded[(published["indicator"] == "meals_skipped_days").to_numpy()].iloc[0]
    assert (mean["UNIT_MEASURE"], mean["UNIT_MULT"], mean["OBS_VALUE"]) == ("NUMBER", "0", 2.25)


def test_obs_status_and_conf_status(published, coded):
    assert _lookup(coded, published, "all", "all")[["OBS_STATUS", "CONF_STATUS"]].tolist() == ["A", "F"]
    assert _lookup(coded, published, "disability", "yes")[["OBS_STATUS", "CONF_STATUS"]].tolist() == ["U", "F"]
    primary = _lookup(coded, published, "sex", "female")
    secondary = _lookup(coded, published, "sex", "male")
    derived = _lookup(coded, published, "sex", "female vs male", "difference")
    assert primary[["OBS_STATUS", "CONF_STATUS"]].tolist() == ["Q", "C"]
    assert secondary[["OBS_STATUS", "CONF_STATUS"]].tolist() == ["Q", "D"]
    assert derived[["OBS_STATUS", "CONF_STATUS"]].tolist() == ["Q", "D"]
    for row in (primary, secondary, derived):
        assert math.isnan(row["OBS_VALUE"])
        assert all(row[a] == "" for a in ("LOWER_BOUND", "UPPER_BOUND", "STANDARD_ERROR",
                                          "UNWEIGHTED_N", "WEIGHTED_N"))


def test_without_suppression_reasons_cells_are_primary_and_derived_rows_secondary(published, settings, catalogue):
    coded = sdmx_csv.code_rows(published.drop(columns=["suppression_reason"]), settings, catalogue)
    status = dict(zip(published["cell"] + "|" + published["method"].str[:5], coded["CONF_STATUS"]))
    assert status["female|weigh"] == "C" and status["male|weigh"] == "C"
    assert status["female vs male|diffe"] == "D"


def test_every_sdg_code_is_the_shipped_extracts(settings, catalogue, coded):
    import sdmx

    reference = sdmx.read_sdmx(settings.reference_path)
    structure = sdmx_csv.build_structure(settings, catalogue, coded)
    for dimension, codelist in sdmx_csv.SDG_CODELISTS.items():
        mine = structure.dsd.dimensions.get(dimension).local_representation.enumerated
        theirs = reference.codelist[codelist]
        assert (mine.maintainer.id, mine.id, mine.version) == (theirs.maintainer.id, theirs.id, theirs.version)
        assert {c.id: str(c.name) for c in mine} == {c.id: str(c.name) for c in theirs}
        assert set(coded[dimension]) <= {c.id for c in theirs}
    assert reference.codelist["CL_SEX"]["F"].name.localized_default() == "Female"
    assert reference.codelist["CL_CONF_STATUS"].maintainer.id == "SDMX"


@pytest.mark.parametrize("column, value, message", [
    ("country", "FRA", "column 'country': 'FRA' has no REF_AREA code"),
    ("group", "pirates & co", "is not a group of params/groups.yml and not usable as an SDMX code"),
    ("source", "nowhere", "has no source card"),
])
def test_a_value_with_no_code_is_a_one_line_error(published, settings, catalogue, column, value, message):
    bad = published.copy()
    bad.loc[3, column] = value
    with pytest.raises(ExchangeError, match=message) as info:
        sdmx_csv.code_rows(bad, settings, catalogue)
    assert "row 5" in str(info.value) and "\n" not in str(info.value)


def test_a_category_with_no_sdg_code_names_the_setting(published, settings, catalogue):
    bad = published.copy()
    bad.loc[2, "cell"] = "intersex"
    with pytest.raises(ExchangeError, match=r"sdg_dimensions\.sex\.codes' has no SDG code for category 'intersex'"):
        sdmx_csv.code_rows(bad, settings, catalogue)


def test_two_rows_with_one_key_are_refused(published, settings, catalogue):
    twice = pd.concat([published.iloc[[0]], published.iloc[[0]]], ignore_index=True)
    with pytest.raises(ExchangeError, match="2 rows get the same SDMX key"):
        sdmx_csv.code_rows(twice, settings, catalogue)


def _components(dsd) -> dict:
    out = {}
    for c in [*dsd.dimensions.components, *dsd.attributes.components]:
        rep = c.local_representation
        cl = getattr(rep, "enumerated", None) if rep is not None else None
        out[c.id] = None if cl is None else cl
    return out


def test_the_shipped_structure_is_current(settings, catalogue):
    """The structure the SDMX-CSV follows is shipped (no registry needed) and still fits the params.

    Same dimensions, attributes and SDG code lists; every code of the project's own code lists is
    still a code (a new source card or group may add codes: the structure written beside each
    export is complete, and ``export --write-structure`` refreshes the shipped copy).
    """
    import sdmx

    from analysis.exchange import shipped_structure_path

    path = shipped_structure_path(settings)
    hint = f"{path} is out of date: run python -m analysis export --write-structure"
    shipped = _components(sdmx.read_sdmx(path).structure[settings.dataflow.id])
    built = _components(sdmx_csv.build_structure(settings, catalogue).dsd)
    assert list(shipped) == list(built), hint
    for cid, cl in built.items():
        mine = shipped[cid]
        if cl is None:
            assert mine is None, hint
            continue
        assert (mine.maintainer.id, mine.id, mine.version) == (cl.maintainer.id, cl.id, cl.version), hint
        if cl.maintainer.id == settings.agency.id:
            assert {c.id for c in mine} <= {c.id for c in cl}, f"{hint} ({cl.id})"
        else:
            assert {c.id: str(c.name) for c in mine} == {c.id: str(c.name) for c in cl}, f"{hint} ({cl.id})"


# --------------------------------------------------------------------------------------------
# The export: SDMX-CSV read back with sdmx1, the data package validated with frictionless


@pytest.fixture(scope="module")
def exported(published, tmp_path_factory):
    outputs = tmp_path_factory.mktemp("outputs")
    (outputs / "tables").mkdir()
    tables.write_csv(published.drop(columns=["suppression_reason"]), outputs / "tables" / "all_estimates.csv")
    (outputs / "manifest.json").write_text(json.dumps({"updated_at": "2026-12-01T09:00:00+00:00",
                                                       "code_version": {"commit": "abc1234"}}))
    result = export_report(outputs, validate=True)
    return result


def test_identical_rows_are_one_observation(published, tmp_path):
    outputs = tmp_path / "outputs"
    (outputs / "tables").mkdir(parents=True)
    twice = pd.concat([published, published.iloc[[0, 4]]], ignore_index=True)
    tables.write_csv(twice.drop(columns=["suppression_reason"]), outputs / "tables" / "all_estimates.csv")
    result = export_report(outputs)
    assert (result.observations, result.duplicates) == (len(published), 2)


def test_export_writes_every_file(exported):
    for name, path in exported.files.items():
        assert path.exists(), name
    assert exported.page.name == "official_statistics.html"
    assert exported.problems == [], exported.problems


def test_the_page_carries_the_content_security_policy(exported):
    """As every page of the report (tests/pipeline/test_page_csp.py; issue 11)."""
    from analysis.pipeline.render import CONTENT_SECURITY_POLICY

    page = exported.page.read_text(encoding="utf-8")
    meta = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert [html.unescape(m) for m in meta] == [CONTENT_SECURITY_POLICY]
    assert page.index("Content-Security-Policy") < page.index("<style")


def test_sdmx_csv_is_sdmx_csv_2(exported):
    with open(exported.files["sdmx_estimates"], newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header[:3] == ["STRUCTURE", "STRUCTURE_ID", "ACTION"]
    assert header[3:3 + len(sdmx_csv.DIMENSIONS)] == sdmx_csv.DIMENSIONS
    assert "TIME_PERIOD" in header and "OBS_VALUE" in header and "CONF_STATUS" in header


def test_sdmx_csv_reads_back_with_sdmx1_to_every_published_value(exported):
    """Read with the SDMX library against the shipped structure; compare with all_estimates.csv."""
    import sdmx

    structures = sdmx.read_sdmx(exported.files["structure"])
    dataflow = structures.dataflow["CSO_COVID_ESTIMATES"]
    message = sdmx.read_sdmx(exported.files["sdmx_estimates"], structure=dataflow)
    observations = [o for ds in message.data for o in ds.obs]
    table = tables.read_csv(exported.folder.parent / "tables" / "all_estimates.csv")
    assert len(observations) == len(table)
    by_key = {}
    for obs in observations:
        key = {kv.id: str(kv.value) for kv in obs.dimension.values.values()}
        by_key[(key["STATISTIC"], key["SEX"], key["AGE"], key["DISABILITY_STATUS"], key["URBANISATION"],
                key["INCOME_WEALTH_QUANTILE"], key["OTHER_BREAKDOWN"], key["GROUP_ROLE"], key["SUBNATIONAL"],
                key["CELL_DETAIL"], key["INDICATOR"])] = obs
    settings, catalogue = load_settings(), sdmx_csv.Catalogue.from_params(THRESHOLDS)
    coded = sdmx_csv.code_rows(table, settings, catalogue)
    for published_row, coded_row in zip(table.to_dict("records"), coded.to_dict("records")):
        obs = by_key[(coded_row["STATISTIC"], coded_row["SEX"], coded_row["AGE"], coded_row["DISABILITY_STATUS"],
                      coded_row["URBANISATION"], coded_row["INCOME_WEALTH_QUANTILE"],
                      coded_row["OTHER_BREAKDOWN"], coded_row["GROUP_ROLE"], coded_row["SUBNATIONAL"],
                      coded_row["CELL_DETAIL"], coded_row["INDICATOR"])]
        attrs = {k: str(getattr(v.value, "id", v.value)) for k, v in obs.attached_attribute.items()}
        value = "" if obs.value is None else str(obs.value)
        if published_row["flag"] == "suppressed":
            assert value == "" and attrs["CONF_STATUS"] in ("C", "D") and attrs["OBS_STATUS"] == "Q"
            assert all(attrs[a] == "" for a in ("LOWER_BOUND", "UPPER_BOUND", "STANDARD_ERROR",
                                                "UNWEIGHTED_N", "WEIGHTED_N"))
            continue
        assert float(value) == published_row["estimate"]
        assert float(attrs["STANDARD_ERROR"]) == published_row["se"]
        assert float(attrs["LOWER_BOUND"]) == published_row["ci_low"]
        assert float(attrs["UPPER_BOUND"]) == published_row["ci_high"]
        assert int(attrs["UNWEIGHTED_N"]) == published_row["n_unweighted"]
        assert float(attrs["WEIGHTED_N"]) == published_row["n_weighted"]
        assert attrs["CONF_STATUS"] == "F"


def test_suppressed_cells_are_empty_never_zero_in_the_file(exported):
    frame = pd.read_csv(exported.files["sdmx_estimates"], dtype=str, keep_default_na=False)
    withheld = frame[frame["CONF_STATUS"] != "F"]
    assert len(withheld) == 3
    assert (withheld["OBS_VALUE"] == "").all() and (withheld["UNWEIGHTED_N"] == "").all()
    assert set(withheld["CONF_STATUS"]) == {"C", "D"}
    assert not (frame["OBS_VALUE"] == "0").any()


def test_data_package_validates_and_fails_on_a_planted_bad_code(exported, tmp_path):
    import shutil

    assert validate_package(exported.files["datapackage"]) == []
    copy = tmp_path / "package"
    shutil.copytree(exported.folder, copy)
    path = copy / "estimates.sdmx.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    cells = next(csv.reader([lines[1]]))
    cells[header.index("SEX")] = "X"               # not a code of CL_SEX
    lines[1] = ",".join(f'"{c}"' if "," in c else c for c in cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = validate_package(copy / "datapackage.json")
    assert any('field "SEX"' in p and 'constraint "enum"' in p for p in problems), problems


def test_data_package_has_licences_and_sources_from_the_cards(exported):
    descriptor = json.loads(exported.files["datapackage"].read_text())
    assert descriptor["licenses"] == [{"title": "CC-BY-4.0 (synthetic demo data)", "name": "CC-BY-4.0"}]
    assert [s["title"] for s in descriptor["sources"]] == [
        "Disability and COVID-19 survey, Kenya and Bangladesh (SYNTHETIC demo)"]
    sdmx_fields = {f["name"]: f for f in descriptor["resources"][1]["schema"]["fields"]}
    assert sdmx_fields["SEX"]["constraints"]["enum"] == ["F", "M", "_N", "_O", "_T", "_U", "_X"]
    assert sdmx_fields["CONF_STATUS"]["constraints"]["enum"] == ["C", "D", "F", "N", "S"]


@pytest.mark.parametrize("text, expected", [
    ("CC-BY-4.0 (synthetic demo data)", {"title": "CC-BY-4.0 (synthetic demo data)", "name": "CC-BY-4.0"}),
    ("ODbL-1.0", {"title": "ODbL-1.0", "name": "ODbL-1.0"}),
    ("Public domain (US federal government work, 17 U.S.C. 105)",
     {"title": "Public domain (US federal government work, 17 U.S.C. 105)", "path": "https://example.org/x"}),
])
def test_licence_entries(text, expected):
    assert licence_entry(text, "https://example.org/x") == expected


# --------------------------------------------------------------------------------------------
# Quality statements and the page


def test_design_effect_follows_svymean(settings, catalogue):
    # p = 0.5, n = 101, N = n (so SRS variance s²/n), s² = p(1-p) n/(n-1) = 0.2525:
    # se² = 2 × 0.2525 / 101 gives a design effect of exactly 2.
    se = math.sqrt(2 * 0.2525 / 101)
    row = _row("all", "all", 0.5, 101, se=se)
    row["n_weighted"] = 101.0
    deff = quality.design_effects(pd.DataFrame([row]), catalogue, settings)
    assert deff.tolist() == pytest.approx([2.0], rel=1e-12)


def test_quality_statement_has_every_nqaf_dimension_and_the_facts(exported, published):
    items = json.loads(exported.files["quality"].read_text())
    assert [i["source"] for i in items] == ["demo_disability"]
    sections = {s["id"]: " ".join(s["sentences"]) for s in items[0]["sections"]}
    assert list(sections) == list(quality.NQAF_DIMENSIONS)
    assert "Probability sample (stratified, clustered, with finite population correction)" in sections["accuracy"]
    # all_estimates.csv does not carry suppression reasons: withheld cells count as primary,
    # withheld derived rows as secondary (see analysis.exchange.sdmx_csv)
    assert "3 are suppressed (2 primary, 1 secondary)" in sections["accuracy"]
    assert "2 are flagged for caution" in sections["accuracy"]
    assert "from 2021-03-01 to 2021-05-31" in sections["timeliness"]
    assert "Washington Group Short Set" in sections["coherence"]
    assert "CC-BY-4.0" in sections["accessibility"]
    assert "fewer than 25 unweighted respondents" in sections["methodology"]
    assert "SYNTHETIC" in sections["relevance"]
    assert "Coverage of the published estimates: Kenya; first-level administrative areas with estimates: 1." in sections["relevance"]
    assert "Standard errors cover sampling error only" in sections["accuracy"]
    markdown = (exported.folder / "quality" / "demo_disability.md").read_text()
    assert markdown.startswith("# Disability and COVID-19 survey") and "## Timeliness and punctuality" in markdown


def test_page_for_official_statistics_offices(exported):
    html = exported.page.read_text(encoding="utf-8")
    assert '<html lang="en" dir="ltr">' in html and "<h1>For official statistics offices</h1>" in html
    for name in ("structure.xml", "estimates.sdmx.csv", "datapackage.json", "code_lists.csv", "quality.json"):
        assert f'href="exchange/{name}"' in html
        assert (exported.page.parent / "exchange" / name).exists()
    assert "IAEG-SDGs:CL_SEX(1.1)" in html and "SDMX:CL_CONF_STATUS(1.0)" in html
    assert "Methodological soundness" in html and "python -m analysis export" in html
    assert "None" not in html


def test_index_links_the_page():
    from analysis.pipeline.render import TEMPLATES_DIR

    # the front page (outputs/index.html) links the page for official statistics offices
    assert 'href="official_statistics.html"' in (TEMPLATES_DIR / "front.html.j2").read_text()


def test_export_command_without_a_built_report_is_a_usage_error(tmp_path, capsys):
    from analysis.__main__ import main

    assert main(["export", "--outputs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "all_estimates.csv not found" in err and "\n" not in err


# --------------------------------------------------------------------------------------------
# The demo report (built once per session by the output tests)


@pytest.mark.slow
def test_demo_report_exports_round_trip_and_validate(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).parent / "browser"))
    from report_build import session_outputs

    outputs = session_outputs(tmp_path_factory)
    result = export_report(outputs, validate=True)   # reads back and compares, or raises
    assert result.problems == []
    published = tables.read_csv(outputs / "tables" / "all_estimates.csv")
    table = published.drop_duplicates()
    assert result.duplicates == len(published) - len(table)
    back = sdmx_csv.read_sdmx_csv(result.files["sdmx_estimates"], result.files["structure"])
    assert len(back) == len(table)
    published = table[table["flag"] != "suppressed"]
    values = pd.to_numeric(back["OBS_VALUE"], errors="coerce")
    assert sorted(values.dropna().tolist()) == sorted(published["estimate"].dropna().tolist())
    assert int((back["CONF_STATUS"] != "F").sum()) == int((table["flag"] == "suppressed").sum())


def test_sources_of_every_card_kind_are_exported(settings, catalogue):
    """Coded free text (kind coding) and partner studies (kind study) have no collection period of
    their own: coded answers take their survey's, studies the year of production (and say so)."""
    rows = pd.DataFrame([
        _row("theme", "income", 0.71, 180, source="demo_voices", group="young_people",
             indicator="krippendorff_alpha", method="Krippendorff's alpha (nominal) of apply/not-apply per code"),
        _row("all", "all", 0.33, 900, source="demo_partner_studies", group="women",
             method="random-effects pooled proportion (REML, logit)"),
    ])
    table = tables.conform(rows)
    year = catalogue.produced_year
    try:
        catalogue.produced_year = 2026
        coded = sdmx_csv.code_rows(table, settings, catalogue)
    finally:
        catalogue.produced_year = year
    voices, studies = coded.iloc[0], coded.iloc[1]
    assert (voices["TIME_PERIOD"], voices["TIME_DETAIL"]) == ("2021", "2021-04-01/2021-05-21")  # demo_youth's
    assert voices["CELL_DETAIL"] == "theme: income" and voices["STATISTIC"] == "OTHER"
    assert studies["TIME_PERIOD"] == "2026" and "not recorded" in studies["TIME_DETAIL"]
    structure = sdmx_csv.build_structure(settings, catalogue, coded)
    sdmx_csv.check_codes(coded, structure)
    assert "krippendorff_alpha" in structure.codelists["CL_INDICATOR"]
    items = quality.statements(table, coded, settings, catalogue)
    text = {i["source"]: " ".join(" ".join(s["sentences"]) for s in i["sections"]) for i in items}
    assert "coded into themes by independent coders" in text["demo_voices"]
    assert "Data were collected from 2021-04-01 to 2021-05-21" in text["demo_voices"]
    assert "does not record when the data were collected" in text["demo_partner_studies"]


def _sdmx1_csv(coded: pd.DataFrame, structure, path: Path) -> bytes:
    """The same observations written by sdmx1's own SDMX-CSV 2.0 writer (the reference)."""
    import sdmx
    from sdmx.format.csv.common import Attributes
    from sdmx.format.csv.v2 import FormatOptions
    from sdmx.model import common, v21

    dsd = structure.dsd
    measure = dsd.measures.get("OBS_VALUE")
    attributes = {cid: dsd.attributes.get(cid) for cid in sdmx_csv.ATTRIBUTES}
    dataset = v21.DataSet(described_by=structure.dataflow, structured_by=dsd)
    observations = []
    for row in coded.to_dict("records"):
        key = dsd.make_key(common.Key, {cid: row[cid] for cid in [*sdmx_csv.DIMENSIONS, sdmx_csv.TIME_DIMENSION]})
        attached = {cid: common.AttributeValue(value=str(row[cid]), value_for=attributes[cid])
                    for cid in sdmx_csv.ATTRIBUTES}
        value = row["OBS_VALUE"]
        observations.append(v21.Observation(dimension=key, value_for=measure, value=None if pd.isna(value) else value,
                                            attached_attribute=attached))
    dataset.add_obs(observations)
    sdmx.to_csv(dataset, path=path, format_options=FormatOptions(), attributes=Attributes.all)
    return path.read_bytes()


def test_sdmx_csv_is_byte_for_byte_what_sdmx1_writes(coded, settings, catalogue, tmp_path):
    """The project writes SDMX-CSV itself (sdmx1's writer took 2.7 s of the demo export's 7.5 s);
    the file must stay what sdmx1 writes: integral, tiny, huge and negative values, withheld
    cells, and text a spreadsheet would run or a CSV reader would split."""
    structure = sdmx_csv.build_structure(settings, catalogue, coded)
    rows = coded.head(8).copy().reset_index(drop=True)
    rows["OBS_VALUE"] = [12.0, 0.1 + 0.2, 1e-12, 123456789.125, -3.5, float("nan"), 1 / 3, 2.0 ** 60]
    rows.loc[0, "SUBNATIONAL"] = '=HYPERLINK("http://x","click")'
    rows.loc[1, "CELL_DETAIL"] = 'a, "quoted" cell\nover two lines'
    rows.loc[2, "COMMENT_OBS"] = "-2+3"
    rows = sdmx_csv.neutralise_text_cells(pd.concat([rows, coded], ignore_index=True))
    mine = sdmx_csv.write_sdmx_csv(rows, structure, tmp_path / "mine.csv").read_bytes()
    assert mine == _sdmx1_csv(rows, structure, tmp_path / "sdmx1.csv")
