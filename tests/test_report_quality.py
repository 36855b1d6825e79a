"""What a reader can trust (issue 13): intervals on the right scale, degenerate intervals named,
headline findings chosen from ok estimates only, ordered categories, sources shown, run folders.

Small planted frames (no ../shared): each test reproduces one defect the issue reports.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest

from analysis import chapters, config, disclosure, findings, tables
from analysis.chapters.common import ChapterRun
from analysis.schema import load_dimensions, load_groups, load_indicators
from analysis.text import text


def _run(frame: pd.DataFrame, tmp_path, group="persons_with_disabilities", source="planted",
         country="KEN", extra=None) -> ChapterRun:
    frames = {source: frame, **(extra or {})}
    return ChapterRun(chapter="group_profile", group_id=group, country=country, sources=list(frames),
                      output_dir=tmp_path, processed_dir=None, frames=frames, indicators=load_indicators(),
                      groups=load_groups(), dimensions=load_dimensions())


def _frame(n_group=60, p_group=0.03, n_ref=200, p_ref=0.30, seed=1, title="Planted survey") -> pd.DataFrame:
    """Simple random sample, equal weights: persons with disabilities rarely food insecure."""
    rng = np.random.default_rng(seed)
    disability = ["yes"] * n_group + ["no"] * n_ref
    food = np.r_[rng.random(n_group) < p_group, rng.random(n_ref) < p_ref].astype(float)
    food[0] = 1.0  # at least one yes in the group
    frame = pd.DataFrame({"disability": disability, "food_insecurity": food,
                          "income_group": rng.choice(["lowest", "low", "middle", "high", "highest"], n_group + n_ref),
                          "sex": rng.choice(["female", "male"], n_group + n_ref),
                          "weight": 1.0, "country": "KEN"})
    frame.attrs["design"] = {"sample_type": "probability", "weight": "weight"}
    frame.attrs["source"] = {"id": "planted", "title": title,
                             "collection_period": {"start": "2021-03-01", "end": "2021-05-31"}}
    return frame


def test_intervals_of_proportions_stay_inside_0_100(tmp_path):
    """Defect: Wald intervals below 0% ("6.5% (−2.6–15.5)"). Logit intervals cannot leave [0, 1]."""
    # 200 in the group (every crossing the plan covers publishable), 1% with the outcome: a Wald
    # interval would reach below 0
    run = _run(_frame(n_group=200, p_group=0.01), tmp_path)
    estimates = chapters.group_estimates(run)
    food = estimates[estimates["indicator"] == "food_insecurity"]
    assert food["ci_low"].notna().all()
    assert (food["ci_low"] >= 0).all() and (food["ci_high"] <= 1).all()
    group = food[food["cell"] == "group"].iloc[0]
    assert group["ci_low"] < group["estimate"] < group["ci_high"]
    assert "logit" in group["method"]


def test_zero_width_interval_is_never_a_plain_ok_estimate():
    """Defect: "27% (27–27)" flagged ok (a stratum whose PSUs were all taken)."""
    table = tables.conform(pd.DataFrame({
        "source": "s", "country": "KEN", "group": "g", "indicator": ["food_insecurity"] * 3,
        "breakdown": "comparison", "cell": ["a", "b", "c"], "estimate": [0.27, 0.0, 0.4],
        "se": [0.0, 0.0, 0.02], "ci_low": [0.27, np.nan, 0.36], "ci_high": [0.27, np.nan, 0.44],
        "n_unweighted": [146, 80, 300], "n_weighted": 1.0, "flag": "ok", "method": "weighted mean"}))
    flagged = chapters.flag_degenerate_intervals(table, ["food_insecurity"])
    assert list(flagged["flag"]) == ["caution", "caution", "ok"]
    assert tables.degenerate_cause(flagged["method"].iloc[0]) == "no_variance"
    assert tables.degenerate_cause(flagged["method"].iloc[1]) == "all_same"
    shown = tables.format_results(flagged, percent_indicators=["food_insecurity"])
    assert shown["Reliability"].iloc[0].startswith("caution: interval of zero width")
    assert "same answer" in shown["Reliability"].iloc[1]
    assert shown["Reliability"].iloc[2] == ""


def _comparison_rows(source, n, gap, flag):
    base = {"source": source, "country": "KEN", "group": "persons_with_disabilities", "indicator": "vaccinated",
            "n_weighted": 1.0, "se": 0.01, "method": "weighted mean"}
    rows = [dict(base, breakdown="comparison", cell="group", estimate=0.42 + gap, ci_low=0.38 + gap,
                 ci_high=0.46 + gap, n_unweighted=n, flag=flag),
            dict(base, breakdown="comparison", cell="reference", estimate=0.42, ci_low=0.40, ci_high=0.44,
                 n_unweighted=1000, flag="ok"),
            dict(base, breakdown="disability", cell="yes vs no", estimate=gap, ci_low=gap - 0.05,
                 ci_high=gap + 0.05, n_unweighted=n + 1000, flag=flag, method="difference")]
    return rows


def test_headline_never_cites_a_caution_row(tmp_path):
    """Defect: "largest gap ... 30 points lower" came from a second source with n = 31 (caution)
    while the chart showed 38% vs 42%; the sentence named neither the source nor the flag."""
    rows = _comparison_rows("big", 790, -0.04 - 0.06, "ok") + _comparison_rows("small", 31, -0.30, "caution")
    table = tables.conform(pd.DataFrame(rows))
    big, small = _frame(title="Big survey"), _frame(title="Small survey")
    run = _run(big, tmp_path, source="big", extra={"small": small})
    sentence = chapters.profile_summary(run, table[table["method"] != "difference"],
                                        table[table["method"] == "difference"])
    assert "Big survey" in sentence and "−10 points" in sentence and "quality: ok" in sentence
    assert "Small survey" not in sentence and "30" not in sentence.split("published gaps")[0]
    compared = findings.comparisons(table, run.indicators)
    chosen = findings.key_findings(compared, run.percent_indicators)
    assert list(chosen["source"]) == ["big"]


def test_comparisons_have_one_row_per_theme_indicator_group_country_source():
    rows = _comparison_rows("big", 790, -0.1, "ok")
    table = tables.conform(pd.DataFrame(rows + rows))  # the same estimates saved by two chapters
    compared = findings.comparisons(table, load_indicators())
    assert len(compared) == 1
    assert not compared.duplicated(subset=["theme", "indicator", "group", "country", "source"]).any()
    row = compared.iloc[0]
    assert row["theme"] == "access_to_health" and row["reference_estimate"] == pytest.approx(0.42)
    assert row["gap"] == pytest.approx(-0.1) and row["n_unweighted"] == 790


def test_two_different_rows_for_one_cell_are_an_error():
    rows = _comparison_rows("big", 790, -0.1, "ok")
    other = dict(rows[0], estimate=0.5)
    with pytest.raises(ValueError, match=r"two different rows for source=big, .*cell=group"):
        findings.comparisons(tables.conform(pd.DataFrame(rows + [other])), load_indicators())


def test_formats_are_the_ones_the_report_uses():
    assert findings.format_percent(0.391, 0.352, 0.431) == "39% (35–43)"
    assert findings.signed_points(-0.004) == "0" and findings.signed_points(0.134) == "+13"


def test_composition_follows_catalogue_order_and_shows_percent(tmp_path):
    """Defect: "0.5 (0.5–0.5)" and income sorted alphabetically (Fourth, Highest, Second, ...)."""
    run = _run(_frame(), tmp_path, group=None)
    composition = chapters.composition(run, "planted")
    income = composition[composition["breakdown"] == "income_group"]["cell"].tolist()
    assert income == ["lowest", "low", "middle", "high", "highest"]
    html = chapters.show_table(run, composition, "composition", percent=["composition"]).data
    assert "%" in html and "0.5 (" not in html


def test_tables_that_mix_sources_show_the_source(tmp_path):
    """Defect: "Had COVID-19 / Persons with disabilities" twice, n = 790 and n = 30, no source column."""
    run = _run(_frame(title="Big survey"), tmp_path, source="big", extra={"small": _frame(title="Small survey")})
    estimates = chapters.group_estimates(run)
    html = chapters.show_table(run, estimates, "estimates").data
    assert '<th scope="col" style="text-align:left">Source</th>' in html
    assert "Big survey" in html and "Small survey" in html
    figures_saved = chapters.group_profile_figures(run, estimates, chapters.group_gaps(run, estimates))
    titles = [s.alt.split(". ")[0] for s in figures_saved]
    assert len(set(titles)) == len(titles), titles


def test_measurement_note_says_how_the_group_was_identified(tmp_path):
    frame = _frame()
    for column in chapters.WG_DOMAINS[:4]:
        frame[column] = 1.0
    run = _run(frame, tmp_path)
    note = run.measurement_note()
    assert "Washington Group Short Set, 4 of 6 domains" in note and "Planted survey" in note
    # the source's metadata travels with its Survey (built once per run, not read from frame.attrs)
    run.survey(run.sources[0]).metadata["wg_domains"] = 6
    assert "6 of 6 domains" in run.measurement_note()


def test_output_dir_follows_the_parameters(tmp_path):
    """Defect: papermill with -p group women -p country SEN wrote into .../persons_with_disabilities/KEN."""
    derived = chapters.resolve_output_dir("intersections", None, group="women", country="SEN")
    assert derived == (config.OUTPUTS_DIR / "intersections" / "women" / "SEN").resolve()
    assert chapters.resolve_output_dir("data_profile", None, source="demo_older", country="SEN").parts[-3:] == (
        "data_profile", "demo_older", "SEN")
    assert chapters.resolve_output_dir("official_statistics", None, country="KEN").parts[-3:] == (
        "official_statistics", "all", "KEN")
    assert chapters.resolve_output_dir("synthesis", None).name == "synthesis"
    assert chapters.resolve_output_dir("geography_across_countries", None, group="women",
                                       country="all").parts[-2:] == ("women", "all")
    with pytest.raises(chapters.ChapterError, match=r"is the folder of another run \(intersections/"
                                                    r"persons_with_disabilities/KEN\)"):
        chapters.resolve_output_dir("intersections", config.OUTPUTS_DIR / "intersections/persons_with_disabilities/KEN",
                                    group="women", country="SEN")
    # a folder of the user's own, outside outputs/, is theirs
    assert chapters.resolve_output_dir("intersections", tmp_path, group="women", country="SEN") == tmp_path.resolve()


# --------------------------------------------------------------------------- maps (issue 13, part 2)

def _kenya_values(n_areas=6):
    """Percent values for the first ``n_areas`` Kenyan counties: one ok, one caution, one with a wide
    interval, one suppressed, the rest ok."""
    import geopandas as gpd

    areas = gpd.read_file(config.BOUNDARIES_DIR / "admin1.gpkg", layer="admin1")
    areas = areas[areas["adm0_a3"] == "KEN"]
    codes = areas["iso_3166_2"].tolist()[:n_areas]
    values = pd.DataFrame({"admin1_code": codes, "estimate": [20.0, 30.0, 40.0, None] + [25.0] * (n_areas - 4),
                           "ci_low": [15.0, 20.0, 12.0, None] + [20.0] * (n_areas - 4),
                           "ci_high": [25.0, 41.0, 70.0, None] + [30.0] * (n_areas - 4),
                           "n_unweighted": [300, 40, 120, None] + [200] * (n_areas - 4),
                           "flag": ["ok", "caution", "ok", "suppressed"] + ["ok"] * (n_areas - 4)})
    names = dict(zip(areas["iso_3166_2"], areas["name"]))
    return areas, values, names


def test_map_names_its_regions_and_keeps_its_legend_off_the_map(tmp_path):
    """Defects: maps have no region names; the Senegal legend covers the south of the country."""
    from analysis import figures

    areas, values, names = _kenya_values()
    fig, _ = figures.plot_choropleth(areas, values, area_key="iso_3166_2", value_key="admin1_code", title="t")
    ax = fig.axes[0]
    drawn = {t.get_text() for t in ax.texts}
    assert {names[c] for c in values["admin1_code"]} <= drawn
    assert ax.get_legend() is None, "the legend is drawn inside the map's axes"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    map_box = ax.get_window_extent(renderer)
    for legend in fig.legends:
        assert not legend.get_window_extent(renderer).overlaps(map_box)
    import matplotlib.pyplot as plt
    plt.close("all")


def test_map_shows_uncertainty_and_says_what_the_mark_means(tmp_path):
    """Defect: maps show no uncertainty. Caution areas and areas with a wide interval are marked,
    and the legend says what the mark means."""
    from analysis import figures

    areas, values, _ = _kenya_values()
    fig, _ = figures.plot_choropleth(areas, values, area_key="iso_3166_2", value_key="admin1_code", title="t")
    hatches = [c.get_hatch() for c in fig.axes[0].collections] + [p.get_hatch() for p in fig.axes[0].patches]
    assert figures.UNCERTAIN_HATCH in hatches
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any(label == text("figures.uncertain_legend", width=figures.WIDE_INTERVAL_POINTS) for label in labels)
    uncertain = figures.uncertain_areas(values)
    assert list(uncertain) == [False, True, True, False, False, False]
    import matplotlib.pyplot as plt
    plt.close("all")


def test_map_svg_has_a_hover_title_and_a_table_of_every_area(tmp_path):
    """Defect: no value or interval per region: each area's value and interval are in an
    accessible table beside the map and in a <title> of the area in the SVG."""
    from analysis import figures

    areas, values, names = _kenya_values()
    fig, alt = figures.plot_choropleth(areas, values, area_key="iso_3166_2", value_key="admin1_code", title="t")
    saved = figures.save_figure(fig, tmp_path, "map", alt, caption="c",
                                table=figures.area_table(areas, values, area_key="iso_3166_2",
                                                         value_key="admin1_code"),
                                table_caption="Values by area")
    svg = saved.svg.read_text()
    first = names[values["admin1_code"].iloc[0]]
    assert f"<title>{first}: 20% (15–25)</title>" in svg
    suppressed = names[values["admin1_code"].iloc[3]]
    assert f"<title>{suppressed}: {text('figures.suppressed')}</title>" in svg
    html = figures.figure_html(saved)
    assert "<caption>Values by area</caption>" in html
    for code in values["admin1_code"]:
        assert f">{names[code]}</th>" in html
    assert ">15–25<" in html and ">300<" in html
    assert html.index("<figure") < html.index("<table")


def _older_frame(seed=3):
    """A survey of people aged 55 and over in three Kenyan counties."""
    import geopandas as gpd

    areas = gpd.read_file(config.BOUNDARIES_DIR / "admin1.gpkg", layer="admin1")
    codes = areas.loc[areas["adm0_a3"] == "KEN", "iso_3166_2"].tolist()[:3]
    rng = np.random.default_rng(seed)
    n = 900
    age = rng.integers(55, 90, n)
    frame = pd.DataFrame({"sex": rng.choice(["female", "male"], n), "age": age.astype(float),
                          "age_group": np.where(age >= 65, "65+", "55-64"),
                          "admin1_code": rng.choice(codes, n), "food_insecurity": (rng.random(n) < 0.3) * 1.0,
                          "weight": 1.0, "country": "KEN"})
    frame.attrs["design"] = {"sample_type": "probability", "weight": "weight"}
    frame.attrs["source"] = {"id": "older", "title": "Older persons survey",
                             "collection_period": {"start": "2021-05-03", "end": "2021-06-25"}}
    return frame


def test_maps_of_a_group_from_a_survey_of_another_population_say_so(tmp_path, monkeypatch):
    """Defect: "Women, Senegal" maps come from an older-people survey without saying so."""
    from analysis import figures

    run = ChapterRun(chapter="geography", group_id="women", country="KEN", sources=["older"],
                     output_dir=tmp_path, processed_dir=None, frames={"older": _older_frame()},
                     indicators=load_indicators(), groups=load_groups(), dimensions=load_dimensions())
    note = run.population_note("older")
    assert note == text("common.population.aged_from", source="Older persons survey", low=55,
                        group_lc="women")
    drawn = []
    original = figures.plot_choropleth

    def spy(*args, **kwargs):
        drawn.append(kwargs["source_note"])
        return original(*args, **kwargs)

    monkeypatch.setattr(figures, "plot_choropleth", spy)
    _, _, maps = chapters.estimates_and_maps(run)
    assert maps and drawn
    assert all("Older persons survey" in n and note in n for n in drawn)
    assert all(m.table_html for m in maps)


# --------------------------------------------------------------------------- explanations (issue 13, part 2)

def test_excess_disparity_respondents_are_the_smallest_of_its_four_cells(tmp_path, monkeypatch):
    """Defect: "Respondents" on an excess-disparity row was the whole sample (all four cells
    together), not the small cell that made the row a caution."""
    frame = _frame(n_group=70, p_group=0.2, n_ref=400, seed=4)
    run = _run(frame, tmp_path)
    measures = chapters.intersection_measures(run)
    excess = chapters.excess_disparity_table(run, measures)
    in_cells = frame["food_insecurity"].notna()
    smallest = min(((frame["disability"] == d) & (frame["sex"] == s) & in_cells).sum()
                   for d in ("yes", "no") for s in ("female", "male"))
    # the count is shown exactly when the report's disclosure plan publishes that cell
    assert chapters.smallest_cell_counts(run, excess.reset_index(drop=True), measures) == [smallest]

    # a cell the plan withholds (as a complement, say) keeps its count hidden here too
    original = disclosure._plan_of

    class Withholding:
        def __init__(self, plan):
            self.plan = plan

        def covers(self, indicator, population):
            return self.plan.covers(indicator, population)

        def reason(self, indicator, population):
            return "secondary (protects a withheld cell)"

    monkeypatch.setattr(disclosure, "_plan_of", lambda *a, **k: Withholding(original(*a, **k)))
    assert chapters.smallest_cell_counts(run, excess.reset_index(drop=True), measures) == [None]
    monkeypatch.setattr(disclosure, "_plan_of", original)
    monkeypatch.setenv("ANALYSIS_DISCLOSURE_CROSS_TABLE", "off")  # primary rule only: count shown
    excess = chapters.excess_disparity_table(run, measures)
    row = excess[excess["cell"].astype(str).str.contains("Women")].iloc[0]
    shown = chapters.show_excess_disparity(run, excess, measures).data
    assert 25 <= smallest < 50 and row["flag"] == "caution"
    assert row["n_unweighted"] > 400  # the saved table keeps the four cells' count (planned as such)
    assert f'<td style="text-align:right">{smallest}</td>' in shown
    assert f">{int(row['n_unweighted']):,}<" not in shown
    assert text("intersections.excess.columns.smallest") in shown
    assert html.escape(text("intersections.explain.excess"), quote=False) in shown


def test_maihda_columns_are_explained_where_they_appear(tmp_path):
    """Defect: MAIHDA columns (VPC, PCV) are not explained."""
    frame = _frame(n_group=150, n_ref=400, seed=5)
    run = _run(frame, tmp_path)
    shown = chapters.show_maihda(run).data
    assert text("intersections.maihda.columns.vpc") in shown and text("intersections.maihda.columns.pcv") in shown
    for key in ("vpc", "pcv"):
        assert html.escape(text(f"intersections.explain.{key}"), quote=False) in shown
    assert shown.index("<table") < shown.index(html.escape(text("intersections.explain.vpc"), quote=False))


def test_footnote_mentions_whiskers_only_where_there_are_some():
    """Defect: a footnote mentions whiskers where there are none."""
    import matplotlib.pyplot as plt

    from analysis import figures

    table = pd.DataFrame({"indicator": ["a", "b"], "cell": ["group", "group"], "estimate": [20.0, 30.0],
                          "ci_low": [np.nan, np.nan], "ci_high": [np.nan, np.nan], "flag": ["ok", "ok"]})
    fig, _ = figures.plot_estimates(table, item_column="indicator", series_column="cell", title="t")
    notes = " ".join(t.get_text() for t in fig.texts)
    assert "whiskers" not in notes and text("figures.bars_only_note") in notes
    with_ci = table.assign(ci_low=[15.0, 25.0], ci_high=[25.0, 35.0])
    fig, _ = figures.plot_estimates(with_ci, item_column="indicator", series_column="cell", title="t")
    assert text("figures.bars_note") in " ".join(t.get_text() for t in fig.texts)
    gaps = pd.DataFrame({"indicator": ["a"], "estimate": [5.0], "ci_low": [np.nan], "ci_high": [np.nan],
                         "flag": ["ok"]})
    fig, _ = figures.plot_gaps(gaps, title="t")
    assert "whiskers" not in " ".join(t.get_text() for t in fig.texts)
    plt.close("all")


# --------------------------------------------------------------------------- skip patterns (issue 13, part 3)

def _skip_card():
    from analysis.sources.card import SourceCard

    return SourceCard(id="skips", title="Skip survey", kind="microdata", synthetic=True, files=[{"path": "skips.csv"}], reader="csv", country="KEN", licence="CC0 (test)", id_column="rid", missing_codes={-99: "refused", -88: "missing or not asked"}, design={"type": "probability", "weight": "wt"}, columns={"sex": "q_sex"}, recodes={"sex": {"1": "female", "2": "male"}}, indicators={"eviction_risk": {"column": "rentcur", "true_values": [2], "false_values": [1],
                                         "asked_when": {"tenure": [3]}, "asked_of": "renters"},
                       "food_insecurity": {"column": "fi", "true_values": [1], "false_values": [0]}})


def _skip_frame():
    # 10 respondents: 4 renters (tenure 3), of whom one refused; 6 owners, never asked (-88)
    return pd.DataFrame({"rid": [f"r{i}" for i in range(10)], "q_sex": ["1", "2"] * 5, "wt": ["1"] * 10,
                         "tenure": ["3", "3", "3", "3", "1", "1", "2", "2", "1", "2"],
                         "rentcur": ["1", "2", "1", "-99", "-88", "-88", "-88", "-88", "-88", "-88"],
                         "fi": ["1", "0"] * 5})


def test_ingest_counts_questions_not_asked_apart_from_no_answer():
    """Defect: skip-pattern gaps show as "no answer" (eviction risk 82% missing): the card says
    which respondents a question was routed to; those it was not asked of are counted apart."""
    from pathlib import Path

    from analysis.sources.harmonise import harmonise
    from analysis.sources.readers import RawTable

    out = harmonise(_skip_card(), RawTable(_skip_frame(), Path("raw/skips.csv"), value_labels={}),
                    salt="5f0c2a9e7b3d4186a1e9c0d2b7f4a3e6c8d1b2a0f9e8d7c6b5a4f3e2d1c0b9a8")
    assert out.frame["eviction_risk"].notna().sum() == 3
    assert out.metadata["not_asked"] == {"eviction_risk": {"rows": 6, "asked_of": "renters",
                                                           "by_country": {"KEN": 6}}}
    assert out.accounting.not_asked == {"eviction_risk": 6}


def test_data_profile_shows_not_asked_apart_from_no_answer(tmp_path):
    frame = _frame()
    n = len(frame)
    frame["eviction_risk"] = np.where(np.arange(n) % 5 == 0, 1.0, np.nan)
    frame.loc[1, "eviction_risk"] = 0.0
    answered = int(frame["eviction_risk"].notna().sum())  # 53 of 54 renters answered
    not_asked = n - (answered + 1)
    frame.attrs["source"] = dict(frame.attrs["source"],
                                 not_asked={"eviction_risk": {"rows": 999, "asked_of": "renters",
                                                              "by_country": {"KEN": not_asked, "UGA": 7}}})
    run = _run(frame, tmp_path, group=None)
    tables_ = chapters.profile_tables(run)
    availability = tables_["availability"]
    label = run.indicator_labels["eviction_risk"]
    row = availability[availability[text("data_profile.availability.columns.column")] == label].iloc[0]
    assert row[text("data_profile.availability.columns.not_asked")] == text(
        "data_profile.availability.not_asked", share=f"{100 * not_asked / n:.1f}%", asked_of="renters")
    assert row[text("data_profile.availability.columns.missing")] == f"{100 * 1 / n:.1f}%"
    missing = tables_["missingness"]
    assert missing.loc[missing["indicator"] == "eviction_risk", "estimate"].iloc[0] == pytest.approx(100 / n)
    other = availability[availability[text("data_profile.availability.columns.column")]
                         == run.indicator_labels["food_insecurity"]].iloc[0]
    assert other[text("data_profile.availability.columns.not_asked")] == ""


# --------------------------------------------------------------------------- narrative (issue 13, part 4)

def _area_gap_frame(seed=6):
    """Three Kenyan counties, 300 respondents each; in the first, women are far more often food
    insecure than men (80% vs 10%); elsewhere both 30%."""
    import geopandas as gpd

    areas = gpd.read_file(config.BOUNDARIES_DIR / "admin1.gpkg", layer="admin1")
    kenya = areas[areas["adm0_a3"] == "KEN"]
    codes = kenya["iso_3166_2"].tolist()[:3]
    rng = np.random.default_rng(seed)
    area = np.repeat(codes, 300)
    sex = np.tile(["female", "male"], 450)
    p = np.where(area == codes[0], np.where(sex == "female", 0.8, 0.1), 0.3)
    frame = pd.DataFrame({"sex": sex, "admin1_code": area, "food_insecurity": (rng.random(900) < p) * 1.0,
                          "weight": 1.0, "country": "KEN"})
    frame.attrs["design"] = {"sample_type": "probability", "weight": "weight"}
    frame.attrs["source"] = {"id": "areas", "title": "Area survey"}
    return frame, dict(zip(kenya["iso_3166_2"], kenya["name"])), codes


def test_geography_narrative_names_the_largest_area_gap_with_its_interval(tmp_path):
    """Defect: geography has only boilerplate text."""
    from analysis import findings

    frame, names, codes = _area_gap_frame()
    run = ChapterRun(chapter="geography", group_id="women", country="KEN", sources=["areas"],
                     output_dir=tmp_path, processed_dir=None, frames={"areas": frame},
                     indicators=load_indicators(), groups=load_groups(), dimensions=load_dimensions())
    estimates = chapters.admin1_estimates(run)
    gaps = chapters.admin1_gaps(run, estimates)
    summary = chapters.geography_summary(run, estimates, gaps)
    top = gaps[gaps["cell"] == codes[0]].iloc[0]
    assert top["flag"] == "ok" and top["ci_low"] > 0
    assert f"{names[codes[0]]}, food insecurity: {findings.signed_points(top['estimate'])} points (95% CI " \
           f"{findings.signed_points(top['ci_low'])} to {findings.signed_points(top['ci_high'])}; Area survey" in summary
    assert "areas: 3;" in summary
    n_supp = int((estimates["flag"] == "suppressed").sum())
    assert f"Area estimates suppressed: {n_supp} of {len(estimates)} (" in summary


def test_synthesis_narrative_names_only_ok_gaps_clear_of_zero(tmp_path):
    """Defect: the synthesis has only boilerplate text."""
    from analysis import findings

    rows = _comparison_rows("big", 790, -0.12, "ok") + _comparison_rows("small", 31, -0.30, "caution")
    wide = findings.comparisons(tables.conform(pd.DataFrame(rows)), load_indicators())
    run = _run(_frame(title="Big survey"), tmp_path, source="big", group=None,
               extra={"small": _frame(title="Small survey")})
    summary = chapters.synthesis_summary(run, wide)
    big = wide[wide["source"] == "big"].iloc[0]
    sentence = findings.finding_text(big, group_label="Persons with disabilities",
                                     reference_label=run.reference_label_of("persons_with_disabilities"),
                                     indicator_label=run.indicator_labels["vaccinated"], country_label="Kenya",
                                     source_title="Big survey")
    assert sentence in summary and "Small survey" not in summary
    assert "comparisons: 2;" in summary and "flagged caution: 1 (" in summary


def test_intersections_narrative_counts_what_is_suppressed(tmp_path):
    """Defect: the intersections page has only boilerplate text."""
    frame = _frame(n_group=70, p_group=0.2, n_ref=400, seed=4)
    run = _run(frame, tmp_path)
    cells = chapters.intersection_estimates(run)
    excess = chapters.excess_disparity_table(run, chapters.intersection_measures(run))
    summary = chapters.intersections_summary(run, cells, excess)
    both = pd.concat([cells, excess])
    assert f"Cells and measures suppressed: {int((both['flag'] == 'suppressed').sum())} of {len(both)} (" in summary
    assert "sex" in summary and "income" in summary.lower()


def test_uncertainty_without_interval_columns_comes_from_the_flag():
    from analysis import figures

    values = pd.DataFrame({"estimate": [10.0, 20.0, None], "flag": ["ok", "caution", "suppressed"]})
    assert list(figures.uncertain_areas(values)) == [False, True, False]


def test_a_map_with_no_area_to_show_is_not_drawn_and_the_page_says_so(tmp_path):
    """Defect: a third of the demo report's 572 area maps showed no value at all (every area
    suppressed or without respondents), a map of hatching that a reader has to decode to learn
    nothing. Such a map is not drawn, and the narrative says which maps are missing and why."""
    frame, _, _ = _area_gap_frame()
    income = np.full(len(frame), np.nan)
    income[::60] = np.tile([1.0, 0.0], len(frame) // 120 + 1)[:len(income[::60])]  # 15 answers in all
    frame["income_loss"] = income
    run = ChapterRun(chapter="geography", group_id="women", country="KEN", sources=["areas"],
                     output_dir=tmp_path, processed_dir=None, frames={"areas": frame},
                     indicators=load_indicators(), groups=load_groups(), dimensions=load_dimensions())
    assert {"food_insecurity", "income_loss"} <= set(run.headline_indicators("areas"))
    estimates = chapters.admin1_estimates(run)
    gaps = chapters.admin1_gaps(run, estimates)
    income_rows = estimates[estimates["indicator"] == "income_loss"]
    assert len(income_rows) and (income_rows["flag"] == "suppressed").all()
    maps = chapters.admin1_maps(run, estimates, gaps)
    assert {m.name for m in maps} == {"map_areas_food_insecurity", "map_gap_areas_food_insecurity"}
    summary = chapters.geography_summary(run, estimates, gaps)
    label = run.indicator_labels["income_loss"]
    assert text("geography.summary.not_drawn", items=text("common.source_separator").join([
        run.text("geography.summary.not_drawn_share", indicators=label[0].lower() + label[1:], source="Area survey"),
        run.text("geography.summary.not_drawn_gap", indicators=label[0].lower() + label[1:], source="Area survey"),
    ])) in summary
    assert "food insecurity" not in summary.split("Maps not drawn")[1]
