"""Tests of the house style: fixed colours and axes, suppression drawn, alt text, byte-stable files."""

from __future__ import annotations

import hashlib

import geopandas as gpd
import matplotlib
import pandas as pd
import pytest

from analysis import config, figures


def _profile_table():
    return pd.DataFrame({
        "indicator": ["food", "food", "health", "health"],
        "cell": ["group", "reference", "group", "reference"],
        "estimate": [41.0, 28.0, 30.0, None],
        "ci_low": [37.0, 25.0, 20.0, None],
        "ci_high": [45.0, 31.0, 40.0, None],
        "flag": ["ok", "ok", "caution", "suppressed"],
    })


def _draw(folder):
    fig, alt = figures.plot_estimates(
        _profile_table(), item_column="indicator", series_column="cell", title="food insecurity",
        series_labels={"group": "persons with disabilities", "reference": "without"},
        item_labels={"food": "Food insecurity", "health": "Missed health care"},
        source_note="Source: test.", synthetic=True)
    return fig, figures.save_figure(fig, folder, "profile", alt, "caption")


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rerender_is_byte_identical(tmp_path):
    _, first = _draw(tmp_path / "a")
    _, second = _draw(tmp_path / "b")
    assert _digest(first.svg) == _digest(second.svg)
    assert first.png is None  # PNG only in a print build
    svg = first.svg.read_text()
    assert "<dc:date>" not in svg and "Matplotlib v" not in svg


def test_percent_axis_is_fixed_and_suppressed_is_not_zero(tmp_path):
    fig, _ = figures.plot_estimates(
        _profile_table(), item_column="indicator", series_column="cell", title="t")
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.0, 100.0)
    texts = [t.get_text() for t in ax.texts]
    assert "suppressed" in texts
    # the suppressed bar is hatched and spans the axis, never a zero-length bar
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_width() == pytest.approx(100.0)
    assert "30%*" in texts  # caution marked
    matplotlib.pyplot.close(fig)


def test_alt_text_states_values_intervals_and_gap():
    _, saved_alt = figures.plot_estimates(
        _profile_table(), item_column="indicator", series_column="cell", title="food insecurity",
        series_labels={"group": "persons with disabilities", "reference": "without"},
        item_labels={"food": "Food insecurity", "health": "Missed health care"})
    assert "persons with disabilities 41% (95% CI 37–45%)" in saved_alt
    assert "without 28% (95% CI 25–31%)" in saved_alt
    assert "gap +13 points" in saved_alt
    assert "without suppressed" in saved_alt
    assert saved_alt.startswith("Bar chart of food insecurity")


def test_figure_html_has_alt_and_relative_src(tmp_path):
    _, saved = _draw(tmp_path / "run" / "figures")
    html = figures.figure_html(saved, relative_to=tmp_path / "run")
    assert 'src="figures/profile.svg"' in html
    assert 'alt="Bar chart of food insecurity' in html
    assert "<figcaption>caption</figcaption>" in html


def test_empty_alt_text_is_refused(tmp_path):
    fig, _ = figures.plot_estimates(_profile_table(), item_column="indicator", series_column="cell", title="t")
    with pytest.raises(ValueError, match="alt text"):
        figures.save_figure(fig, tmp_path, "x", " ", "c")


def test_colours_fixed_by_catalogue_order_not_by_run():
    catalogue = ["persons_with_disabilities", "women", "older_people"]
    alone = figures.series_colours(["older_people"], catalogue)
    together = figures.series_colours(["women", "older_people"], catalogue)
    assert alone["older_people"] == together["older_people"] == figures.OKABE_ITO[2]
    assert figures.series_colours(["reference"], catalogue)["reference"] == figures.REFERENCE_COLOUR


def test_gaps_axis_symmetric_and_widened_only_when_needed():
    table = pd.DataFrame({"indicator": ["a", "b"], "estimate": [10.0, -5.0], "ci_low": [5.0, -9.0],
                          "ci_high": [15.0, -1.0], "flag": ["ok", "ok"]})
    fig, alt = figures.plot_gaps(table, title="gaps")
    assert fig.axes[0].get_xlim() == (-50.0, 50.0)
    assert "Intervals exclude zero for: a, b." in alt
    wide = table.assign(ci_high=[70.0, -1.0])
    fig2, _ = figures.plot_gaps(wide, title="gaps")
    assert fig2.axes[0].get_xlim() == (-100.0, 100.0)
    matplotlib.pyplot.close("all")


def test_heatmap_marks_suppressed_cells():
    table = pd.DataFrame({"r": ["a", "a", "b", "b"], "c": ["x", "y", "x", "y"],
                          "estimate": [10.0, 80.0, None, 50.0], "ci_low": [5.0, 70.0, None, 40.0],
                          "ci_high": [15.0, 90.0, None, 60.0], "flag": ["ok", "caution", "suppressed", "ok"]})
    fig, alt = figures.plot_heatmap(table, row_column="r", column_column="c", title="heat")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("suppressed") == 1
    assert "1 cell suppressed" in alt and "Highest: a × y 80%" in alt
    matplotlib.pyplot.close("all")


def test_choropleth_credits_natural_earth_and_hatches_suppressed():
    areas = gpd.read_file(config.BOUNDARIES_DIR / "admin1.gpkg", layer="admin1")
    areas = areas[areas["adm0_a3"] == "KEN"]
    codes = areas["iso_3166_2"].tolist()
    values = pd.DataFrame({"admin1_code": codes, "estimate": [None] + [20.0] * (len(codes) - 1),
                           "ci_low": None, "ci_high": None, "flag": ["suppressed"] + ["ok"] * (len(codes) - 1)})
    fig, alt = figures.plot_choropleth(areas, values, area_key="iso_3166_2", value_key="admin1_code",
                                       title="food insecurity")
    assert any(t.get_text() == figures.natural_earth_credit() for t in fig.texts)
    assert "1 area suppressed" in alt and "Made with Natural Earth" in alt
    # areas with data are drawn one by one (each an SVG group with a hover title)
    assert any(p.get_hatch() == figures.SUPPRESSED_HATCH for p in fig.axes[0].patches)
    matplotlib.pyplot.close("all")


def test_synthetic_banner_only_for_synthetic_sources():
    fig, _ = figures.plot_estimates(_profile_table(), item_column="indicator", series_column="cell",
                                    title="t", synthetic=True)
    assert any(t.get_text() == figures.synthetic_note() for t in fig.texts)
    fig2, _ = figures.plot_estimates(_profile_table(), item_column="indicator", series_column="cell", title="t")
    assert not any(t.get_text() == figures.synthetic_note() for t in fig2.texts)
    matplotlib.pyplot.close("all")


def test_print_build_adds_png_byte_identical(tmp_path, monkeypatch):
    monkeypatch.setenv(figures.FIGURE_FORMATS_ENV, "svg,png")
    _, first = _draw(tmp_path / "a")
    _, second = _draw(tmp_path / "b")
    assert first.png is not None and first.png.exists()
    assert _digest(first.png) == _digest(second.png)


def test_unknown_figure_format_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(figures.FIGURE_FORMATS_ENV, "svg,jpeg")
    with pytest.raises(ValueError, match="ANALYSIS_FIGURE_FORMATS.*jpeg"):
        figures.figure_formats()


def test_choropleth_areas_without_a_row_are_no_data_not_an_error():
    # Values for some areas only, flags as a nullable string column (pandas 3 / Arrow): the
    # other areas merge in with flag NA and are drawn as "no data".
    areas = gpd.read_file(config.BOUNDARIES_DIR / "admin1.gpkg", layer="admin1")
    areas = areas[areas["adm0_a3"] == "UGA"]
    codes = areas["iso_3166_2"].tolist()[:3]
    values = pd.DataFrame({"admin1_code": codes, "estimate": [20.0, 30.0, None], "ci_low": None,
                           "ci_high": None, "flag": pd.array(["ok", "ok", "suppressed"], dtype="string")})
    fig, alt = figures.plot_choropleth(areas, values, area_key="iso_3166_2", value_key="admin1_code",
                                       title="food insecurity")
    drawn = sum(len(c.get_paths()) for c in fig.axes[0].collections) + len(fig.axes[0].patches)
    assert drawn == len(areas[areas.geometry.notna()])  # every area drawn once, whatever its state
    assert "2 areas with an estimate" in alt and "1 area suppressed" in alt
    matplotlib.pyplot.close("all")


def test_a_figure_is_drawn_once_per_format(tmp_path, monkeypatch):
    """The layout is computed once (in the plotting function); saving the SVG draws the figure once
    (no second layout pass before the real drawing)."""
    draws = []
    original = matplotlib.figure.Figure.draw
    monkeypatch.setattr(matplotlib.figure.Figure, "draw",
                        lambda self, renderer: (draws.append(renderer), original(self, renderer))[1])
    fig, alt = figures.plot_estimates(
        _profile_table(), item_column="indicator", series_column="cell", title="food insecurity",
        source_note="Source: test.", synthetic=True)
    draws.clear()  # what the plotting function drew to lay the figure out is not the question
    figures.save_figure(fig, tmp_path, "profile", alt, "caption")
    assert len(draws) == 1


def test_svg_text_stays_text_in_the_house_font(tmp_path):
    """Text is written as SVG text (selectable, searchable, read by screen readers, and far
    cheaper to write than glyph outlines), in the house font with a generic fallback, so the
    browser renders it in the font the layout was measured with."""
    import re

    _, saved = _draw(tmp_path)
    svg = saved.svg.read_text()
    texts = re.findall(r"<text\b[^>]*>([^<]*)</text>", svg)
    assert "food insecurity" in texts and "Food insecurity" in texts
    families = set(re.findall(r"font-family: ([^;\"]+)", svg))
    assert families and all(f.startswith("'DejaVu Sans'") and f.endswith("sans-serif") for f in families), families


def test_the_source_note_is_wrapped_once_to_the_figure_width():
    """The note is broken into lines when the figure is built (matplotlib's own wrapping measured
    every word again on every draw); every word is kept and no line is wider than the figure."""
    from matplotlib.textpath import TextToPath

    note = " ".join(["Source: Demo survey of households with a rather long title (2024)"] * 6)
    fig, _ = figures.plot_estimates(_profile_table(), item_column="indicator", series_column="cell",
                                    title="t", source_note=note)
    shown = [t for t in fig.texts if t.get_text().replace("\n", " ").startswith(note[:40])]
    assert len(shown) == 1 and not shown[0].get_wrap()
    lines = shown[0].get_text().split("\n")
    assert " ".join(lines).split() == figures._note(note, True, "figures.bars_note").split()
    measure = TextToPath()
    width_points = fig.get_size_inches()[0] * 72
    widths = [measure.get_text_width_height_descent(line, shown[0].get_fontproperties(), ismath=False)[0]
              for line in lines]
    assert len(lines) >= 3 and max(widths) <= 0.99 * width_points
    matplotlib.pyplot.close(fig)


def test_uncertain_areas_share_one_dot_pattern_and_keep_their_hover_title(tmp_path):
    """Every uncertain area is dotted with the same SVG pattern whatever its colour. Drawing the dots
    as the area's own hatch made matplotlib write one pattern per fill colour (about 150 KB of dots
    each): a Senegal map was 1.4 MB and a geography page of 22 maps over 25 MB."""
    import re

    areas = gpd.read_file(config.BOUNDARIES_DIR / "admin1.gpkg", layer="admin1")
    areas = areas[areas["adm0_a3"] == "KEN"]
    codes = areas["iso_3166_2"].tolist()
    n = len(codes)
    estimates = [5.0 + 90.0 * i / (n - 1) for i in range(n)]  # a different colour for every area
    values = pd.DataFrame({"admin1_code": codes, "estimate": estimates,
                           "ci_low": [e - 15 for e in estimates], "ci_high": [e + 15 for e in estimates],
                           "flag": ["caution"] * n})  # every area uncertain
    fig, alt = figures.plot_choropleth(areas, values, area_key="iso_3166_2", value_key="admin1_code",
                                       title="food insecurity")
    saved = figures.save_figure(fig, tmp_path, "map", alt, "caption")
    svg = saved.svg.read_text()
    assert len(re.findall(r"<pattern\b", svg)) == 1  # the legend's swatch uses it too
    assert saved.svg.stat().st_size < 400_000
    # the hover title of an area is where the pointer is, on its dots as on its colour
    titles = re.findall(r"<title>([^<]*)</title>", svg)
    named = areas["name"].tolist()
    for name in named[:5]:
        assert sum(t.startswith(name) for t in titles) >= 2, name



@pytest.mark.parametrize("diverging", [False, True])
def test_a_map_is_laid_out_as_tight_layout_would_without_measuring_its_texts(monkeypatch, diverging):
    """A map has no ticks and its areas and names are clipped to its axes: it is laid out without
    ``tight_layout`` (which measured every area name of each of the report's 330 maps), where
    tight_layout would put it, and every text stays inside the figure."""
    areas = gpd.read_file(config.BOUNDARIES_DIR / "admin1.gpkg", layer="admin1")
    areas = areas[areas["adm0_a3"] == "KEN"]
    codes = areas["iso_3166_2"].tolist()
    estimates = [(-40.0 if diverging else 5.0) + 80.0 * i / (len(codes) - 1) for i in range(len(codes))]
    values = pd.DataFrame({"admin1_code": codes, "estimate": estimates, "ci_low": None, "ci_high": None,
                           "flag": ["ok"] * len(codes)})

    def draw():
        return figures.plot_choropleth(areas, values, area_key="iso_3166_2", value_key="admin1_code",
                                       title="food insecurity " * 8, diverging=diverging,
                                       source_note="Source: a survey. " * 20, synthetic=True)[0]

    reference = draw()
    width, height = reference.get_size_inches()
    pad = figures.TIGHT_PAD * matplotlib.rcParams["font.size"] / 72
    rect = (0, reference.subplotpars.bottom - pad / height, 1, reference.subplotpars.top + pad / height)
    reference.tight_layout(pad=figures.TIGHT_PAD, rect=rect)
    monkeypatch.setattr(matplotlib.figure.Figure, "tight_layout",
                        lambda self, *a, **k: pytest.fail("a map measured every text with tight_layout"))
    fig = draw()
    assert fig.subplotpars.left == pytest.approx(reference.subplotpars.left, abs=0.01 / width)
    assert fig.subplotpars.right == pytest.approx(reference.subplotpars.right, abs=0.01 / width)
    renderer = fig.canvas.get_renderer()
    for mine, theirs in zip(fig.axes, reference.axes):
        mine.apply_aspect()
        theirs.apply_aspect()
        assert mine.get_position().bounds == pytest.approx(theirs.get_position().bounds, abs=0.01 / width)
    fig.canvas.draw()  # legend entries are placed when drawn
    shown = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
    assert len(shown) > 10
    for t in shown:
        box = t.get_window_extent(renderer)
        assert box.x0 >= -0.5 and box.y0 >= -0.5, t.get_text()
        assert box.x1 <= width * fig.dpi + 0.5 and box.y1 <= height * fig.dpi + 0.5, t.get_text()
    matplotlib.pyplot.close("all")


def test_maps_of_the_same_areas_share_their_prepared_geometry(tmp_path, monkeypatch):
    """A geography run draws two maps per indicator of the same areas: the cut, projection, paths
    and name points are computed once, and a map drawn from them is the same file as one drawn
    cold; other areas with data get their own."""
    areas = gpd.read_file(config.BOUNDARIES_DIR / "admin1.gpkg", layer="admin1")
    areas = areas[areas["adm0_a3"] == "SEN"]
    codes = areas["iso_3166_2"].tolist()
    values = pd.DataFrame({"admin1_code": codes, "estimate": [10.0 + 5 * i for i in range(len(codes))],
                           "ci_low": None, "ci_high": None, "flag": ["ok"] * len(codes)})
    projections = []
    original = figures._local_projection
    monkeypatch.setattr(figures, "_local_projection", lambda frame: projections.append(1) or original(frame))
    figures._MAP_GEOMETRY.clear()

    def save(name, table):
        fig, alt = figures.plot_choropleth(areas, table, area_key="iso_3166_2", value_key="admin1_code", title="t")
        return figures.save_figure(fig, tmp_path, name, alt, "c").svg.read_bytes()

    cold = save("a", values)
    warm = save("b", values.assign(estimate=values["estimate"] + 1).assign(estimate=lambda v: v["estimate"] - 1))
    assert len(projections) == 1 and warm == cold
    save("c", values.iloc[:3])  # other areas with data: another cut of the neighbours
    assert len(projections) == 2
    figures._MAP_GEOMETRY.clear()
    assert save("d", values) == cold


def test_area_names_on_a_map_are_svg_text(tmp_path):
    """Area names are text (selectable, found by the browser's search, read by screen readers)
    and cheap: drawn with a white halo (a stroke path effect) each was written as glyph outlines
    twice, two thirds of a map's file."""
    import re

    areas = gpd.read_file(config.BOUNDARIES_DIR / "admin1.gpkg", layer="admin1")
    areas = areas[areas["adm0_a3"] == "SEN"]
    codes = areas["iso_3166_2"].tolist()
    values = pd.DataFrame({"admin1_code": codes, "estimate": [10.0 + 5 * i for i in range(len(codes))],
                           "ci_low": None, "ci_high": None, "flag": ["ok"] * len(codes)})
    fig, alt = figures.plot_choropleth(areas, values, area_key="iso_3166_2", value_key="admin1_code", title="t")
    svg = figures.save_figure(fig, tmp_path, "map", alt, "c").svg.read_text()
    texts = {html_unescape(t) for t in re.findall(r"<text\b[^>]*>([^<]*)</text>", svg)}
    assert set(areas["name"]) <= texts


def html_unescape(value: str) -> str:
    import html

    return html.unescape(value)


def _chart_figures():
    """One figure of each kind laid out by figures._tight_layout (every kind but maps)."""
    table = _profile_table()
    gaps = pd.DataFrame({"indicator": ["food", "health"], "estimate": [13.0, -4.0], "ci_low": [5.0, -12.0],
                         "ci_high": [21.0, 3.0], "flag": ["ok", "caution"]})
    heat = pd.DataFrame({"r": ["a long row label of a category", "a", "b", "b"], "c": ["x", "y", "x", "y"],
                         "estimate": [10.0, 80.0, None, 50.0], "ci_low": [5.0, 70.0, None, 40.0],
                         "ci_high": [15.0, 90.0, None, 60.0], "flag": ["ok", "caution", "suppressed", "ok"]})
    note = "Source: a survey with a long title. " * 6
    return {
        "bars": lambda: figures.plot_estimates(table, item_column="indicator", series_column="cell", title="t",
                                               source_note=note, synthetic=True)[0],
        "gaps": lambda: figures.plot_gaps(gaps, title="gaps " * 30, source_note=note)[0],
        "heatmap": lambda: figures.plot_heatmap(heat, row_column="r", column_column="c", title="heat",
                                                row_title="Category", column_title="Who",
                                                source_note=note)[0],
    }


@pytest.mark.parametrize("kind", ["bars", "gaps", "heatmap"])
def test_charts_are_laid_out_as_tight_layout_would_measuring_once(monkeypatch, kind):
    """A chart's axes (and a heatmap's colorbar) sit in one cell: its layout is tight_layout's first
    pass moved into the reserved rect, the same subplot parameters as ``fig.tight_layout(rect=...)``
    (whose second pass measured every text again and used none of it)."""
    draw = _chart_figures()[kind]
    rects, passes = [], []
    one_pass = figures._tight_layout
    two_passes = matplotlib.figure.Figure.tight_layout
    monkeypatch.setattr(figures, "_tight_layout", lambda fig, rect: (rects.append(rect), one_pass(fig, rect))[1])
    monkeypatch.setattr(matplotlib.figure.Figure, "tight_layout",
                        lambda self, *a, **k: (passes.append(1), two_passes(self, *a, **k))[1])
    mine = draw().subplotpars
    assert rects and not passes, "a one-cell chart went through matplotlib's two-pass tight_layout"
    # the same chart laid out by matplotlib's tight_layout from the start, as it was before
    monkeypatch.setattr(figures, "_tight_layout",
                        lambda fig, rect: two_passes(fig, pad=figures.TIGHT_PAD, rect=rect))
    theirs = draw().subplotpars
    assert (mine.left, mine.bottom, mine.right, mine.top) == pytest.approx(
        (theirs.left, theirs.bottom, theirs.right, theirs.top), abs=1e-9)
    matplotlib.pyplot.close("all")
