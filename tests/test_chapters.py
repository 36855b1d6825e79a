"""Tests of the chapter library on the real Household Pulse file (from ../shared) and on small tables."""

from __future__ import annotations

import argparse

import numpy as np
import openpyxl
import pandas as pd
import pytest

from analysis import chapters, tables
from analysis.disclosure import DisclosureError

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def processed(shared_dir, tmp_path_factory):
    from analysis.sources import ingest

    folder = tmp_path_factory.mktemp("processed")
    parser = argparse.ArgumentParser()
    ingest.add_arguments(parser)
    code = ingest.main(parser.parse_args(["household_pulse", "--raw-root", str(shared_dir / "data"),
                                          "--processed", str(folder)]))
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def run(processed, tmp_path_factory):
    return chapters.start_run("group_profile", group="persons_with_disabilities", country="USA",
                              sources=["household_pulse"], processed_dir=processed,
                              output_dir=tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def estimates(run):
    return chapters.group_estimates(run)


def test_group_estimates_are_weighted_domain_means(run, estimates):
    frame = run.frames["household_pulse"]
    tables.validate(estimates)
    assert set(estimates["cell"]) == {"group", "reference"}
    assert set(estimates["indicator"]) == set(run.indicators_in("household_pulse"))
    row = estimates[(estimates["indicator"] == "food_insecurity") & (estimates["cell"] == "group")].iloc[0]
    members = (frame["disability"] == "yes").fillna(False) & frame["food_insecurity"].notna()
    expected = np.average(frame.loc[members, "food_insecurity"], weights=frame.loc[members, "weight"])
    assert row["estimate"] == pytest.approx(expected, rel=1e-10)
    assert row["ci_low"] < row["estimate"] < row["ci_high"]
    assert row["n_unweighted"] == int(members.sum())


def test_gap_is_group_minus_reference(run, estimates):
    gaps = chapters.group_gaps(run, estimates)
    diff = gaps[(gaps["indicator"] == "food_insecurity") & (gaps["method"] == "difference")].iloc[0]
    pick = estimates.set_index(["indicator", "cell"])["estimate"]
    assert diff["estimate"] == pytest.approx(pick[("food_insecurity", "group")] - pick[("food_insecurity", "reference")])
    sentence = chapters.profile_summary(run, estimates, gaps)
    # the headline names the source, the respondents and the quality of what it cites
    assert sentence.startswith("Largest clear gap") and "persons with disabilities" in sentence.lower()
    assert run.source_title("household_pulse") in sentence and "n = " in sentence and "quality: ok" in sentence


def test_gaps_of_suppressed_inputs_are_suppressed(run, estimates):
    blanked = estimates.copy()
    hit = (blanked["indicator"] == "food_insecurity") & (blanked["cell"] == "group")
    blanked.loc[hit, ["estimate", "se", "ci_low", "ci_high", "n_unweighted", "n_weighted"]] = np.nan
    blanked.loc[hit, "flag"] = "suppressed"
    gaps = chapters.group_gaps(run, blanked)
    food = gaps[gaps["indicator"] == "food_insecurity"]
    assert (food["flag"] == "suppressed").all() and food["estimate"].isna().all()
    assert (gaps[gaps["indicator"] != "food_insecurity"]["flag"] != "suppressed").any()


def test_composition_shares_sum_to_one_per_dimension(processed, tmp_path):
    run = chapters.start_run("data_profile", country="USA", source="household_pulse",
                             processed_dir=processed, output_dir=tmp_path)
    table = chapters.composition_all(run)
    shown = table[table["flag"] != "suppressed"]
    for dimension, part in shown.groupby("breakdown"):
        if (table[table["breakdown"] == dimension]["flag"] == "suppressed").any():
            continue
        assert part["estimate"].sum() == pytest.approx(1.0, abs=1e-9), dimension
    accounting = chapters.row_accounting(run)
    assert accounting.iloc[0]["Step"] == "rows read" and accounting.iloc[0]["Rows"] == "42,040"


def test_percent_view_scales_only_percent_indicators():
    table = tables.conform(pd.DataFrame({"indicator": ["a", "b"], "cell": ["all", "all"], "estimate": [0.25, 3.0],
                                         "ci_low": [0.2, 2.0], "ci_high": [0.3, 4.0], "n_unweighted": [100, 100]}))
    shown = chapters.percent_view(table, ["a"])
    assert shown["estimate"].tolist() == [25.0, 3.0] and shown["ci_high"].tolist() == [30.0, 4.0]


def test_save_table_refuses_an_unsuppressed_small_cell(run):
    small = tables.conform(pd.DataFrame({"indicator": ["food_insecurity"], "breakdown": ["comparison"], "cell": ["group"],
                                         "estimate": [0.4], "n_unweighted": [7], "source": ["household_pulse"]}))
    with pytest.raises(DisclosureError):
        chapters.save_table(run, small, "leak")


def test_read_cdc_deaths_national_sex_by_age(shared_dir):
    deaths = chapters.read_cdc_deaths(shared_dir / "data" / "cdc-nchs-covid-deaths"
                                      / "Provisional_COVID-19_Death_Counts_by_Sex__Age__and_State.csv")
    assert {"female", "male"} <= set(deaths["sex"])
    total = deaths[(deaths["sex"] == "all sexes") & (deaths["age_group"] == "All Ages")]["covid_deaths"]
    assert total.iloc[0] == 249570  # the file's national total (data as of 2 Dec 2020)
    shown = chapters.cdc_deaths_table(deaths)
    assert set(shown["Sex"]) == {"Women", "Men"} and "85 years and over" in set(shown["Age group"])


def test_synthesis_workbook_has_a_readme_and_one_sheet_per_theme_with_flags(tmp_path, estimates):
    path = tmp_path / "tables" / "all_estimates.csv"
    blanked = estimates.copy()
    hit = blanked.index[:1]
    blanked.loc[hit, ["estimate", "se", "ci_low", "ci_high", "n_unweighted", "n_weighted"]] = np.nan
    blanked.loc[hit, "flag"] = "suppressed"
    tables.write_csv(tables.conform(blanked), path)
    run, all_runs = chapters.start_synthesis("synthesis", path, output_dir=tmp_path / "synthesis")
    table = chapters.synthesis_table(run, all_runs)
    assert not table.duplicated().any()
    wide = chapters.synthesis_comparisons(run, table)
    assert not wide.duplicated(subset=["theme", "indicator", "group", "country", "source"]).any()
    workbook = openpyxl.load_workbook(chapters.write_synthesis_workbook(run, table))
    from analysis.schema import load_themes

    themes = load_themes()
    assert workbook.sheetnames[0] == "README"
    assert set(workbook.sheetnames[1:]) == {themes[run.indicators[i].theme] for i in set(estimates["indicator"])}
    readme = [c.value for c in workbook["README"]["A"] if c.value]
    assert any("fewer than" in str(v) for v in readme) and run.source_title("household_pulse") in readme
    suppressed = blanked.loc[hit[0], "indicator"]
    sheet = workbook[themes[run.indicators[suppressed].theme]]
    header = [c.value for c in sheet[1]]
    flags = [row[header.index("Group: quality")] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert "suppressed: too few respondents" in flags
    saved = chapters.synthesis_figures(run, table)
    assert len(saved) == len([i for i in set(table["indicator"]) if i in run.percent_indicators])


@pytest.mark.slow
def test_household_pulse_matrix_runs_end_to_end(shared_dir, processed, tmp_path):
    """The real-data matrix (params/report_household_pulse.yml): every run of the three groups is
    planned; chapters 1–6 execute for persons with disabilities, with state maps and CDC deaths.

    (All three groups run in `python -m analysis run --config params/report_household_pulse.yml`;
    the test executes one group to keep the suite within its time budget.)
    """
    import contextlib
    import io

    from analysis.pipeline import cli

    def run(*extra):
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main(parser.parse_args(["--config", "params/report_household_pulse.yml",
                                               "--processed", str(processed), "--outputs", str(tmp_path),
                                               "--no-progress", *extra]))
        return code, out.getvalue()

    code, plan = run("--dry-run")
    assert code == 0
    for group in ("persons_with_disabilities", "women", "older_people"):
        for chapter in ("group_profile", "intersections", "geography"):
            assert f"would run       {chapter}/{group}/USA" in plan, plan
    assert "not applicable" not in plan
    assert run("--group", "persons_with_disabilities")[0] == 0
    assert run("--chapter", "data_profile", "--chapter", "official_statistics", "--chapter", "synthesis")[0] == 0

    geography = tmp_path / "geography" / "persons_with_disabilities" / "USA"
    maps = sorted((geography / "figures").glob("map_household_pulse_*.svg"))
    assert maps, "no state maps"
    assert "Made with Natural Earth" in (geography / "geography.html").read_text()
    official = (tmp_path / "official_statistics" / "all" / "USA" / "official_statistics.html").read_text()
    assert "CDC/NCHS provisional COVID-19 deaths" in official and "85 years and over" in official
    everything = tables.read_csv(tmp_path / "tables" / "all_estimates.csv")
    assert {"persons_with_disabilities"} <= set(everything["group"].dropna())
    assert (tmp_path / "synthesis" / "tables" / "synthesis.xlsx").exists()


# ------------------------------------------------------------------ presentation tables (tables.py)


def _results():
    return tables.conform(pd.DataFrame({
        "indicator": ["food", "food", "food"], "breakdown": ["comparison"] * 2 + ["disability"],
        "cell": ["group", "reference", "yes vs no"], "estimate": [0.41, np.nan, 0.13],
        "ci_low": [0.37, np.nan, 0.09], "ci_high": [0.45, np.nan, 0.17], "n_unweighted": [300, np.nan, 600],
        "flag": ["ok", "suppressed", "caution"], "method": ["mean", "mean", "difference"]}))


def test_format_results_percent_points_and_flags():
    shown = tables.format_results(_results(), indicator_labels={"food": "Food insecurity"},
                                  cell_labels={"group": "Persons with disabilities", "yes": "With", "no": "Without"},
                                  percent_indicators=["food"])
    assert shown.iloc[0].tolist() == ["Food insecurity", "Persons with disabilities", "41.0%", "37.0–45.0", "300", ""]
    assert shown.iloc[1]["Estimate"] == "" and shown.iloc[1]["Reliability"].startswith("suppressed")
    assert shown.iloc[2]["Estimate"] == "13.0 points" and shown.iloc[2]["Population"] == "With vs Without"


def test_html_table_is_accessible_and_escaped():
    frame = pd.DataFrame({"Indicator": ["<b>x</b>"], "Estimate": ["41.0%"]})
    html = tables.html_table(frame, "Caption & more")
    assert "<caption>Caption &amp; more</caption>" in html
    assert '<th scope="col"' in html and '<th scope="row" style="text-align:left">&lt;b&gt;x&lt;/b&gt;</th>' in html
    assert '<td style="text-align:right">41.0%</td>' in html
    with pytest.raises(ValueError, match="caption"):
        tables.html_table(frame, " ")


def test_write_excel_one_sheet_per_indicator_keeps_flags(tmp_path):
    two = tables.stack([_results(), _results().assign(indicator="a/very:long*indicator?name[that]overflows")])
    workbook = openpyxl.load_workbook(tables.write_excel(two, tmp_path / "x.xlsx", notes=["rule"]))
    assert workbook.sheetnames[0] == "About" and len(workbook.sheetnames) == 3
    assert all(len(n) <= 31 and not set(n) & set("[]:*?/\\") for n in workbook.sheetnames)
    rows = list(workbook["food"].values)
    assert rows[0] == tuple(tables.RESULT_COLUMNS)
    assert [r[tables.RESULT_COLUMNS.index("flag")] for r in rows[1:]] == ["ok", "suppressed", "caution"]
    assert rows[2][tables.RESULT_COLUMNS.index("estimate")] is None


def test_area_gaps_are_group_minus_reference_with_suppression(run):
    estimates = chapters.admin1_estimates(run)
    gaps = chapters.admin1_gaps(run, estimates)
    assert set(gaps["breakdown"]) == {"admin1_code"} and len(set(gaps["cell"])) == 51
    pick = estimates.set_index(["indicator", "cell"])
    shown = gaps[gaps["flag"] != "suppressed"].iloc[0]
    group = pick.loc[(shown["indicator"], f"{shown['cell']} × group"), "estimate"]
    reference = pick.loc[(shown["indicator"], f"{shown['cell']} × reference"), "estimate"]
    assert shown["estimate"] == pytest.approx(group - reference)
    assert shown["ci_low"] < shown["estimate"] < shown["ci_high"]
    # every gap whose group cell is suppressed is suppressed
    withheld = estimates[(estimates["flag"] == "suppressed") & estimates["cell"].str.endswith("× group")]
    for _, row in withheld.iterrows():
        area = row["cell"].split(" × ")[0]
        hit = gaps[(gaps["indicator"] == row["indicator"]) & (gaps["cell"] == area)]
        assert (hit["flag"] == "suppressed").all()
