"""The front page's theme figures are drawn again only when what they show changes."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib
import pandas as pd

from analysis import figures
from analysis.pipeline import front_page

matplotlib.use("agg")


def _compared(gap=0.12):
    return pd.DataFrame({
        "theme": ["food", "food"], "indicator": ["food_insecurity", "food_insecurity"],
        "group": ["women", "women"], "country": ["KEN", "UGA"], "source": ["demo_a", "demo_a"],
        "n_unweighted": [400, 300], "reference_n_unweighted": [500, 350],
        "gap": [gap, -0.05], "gap_ci_low": [gap - 0.04, -0.10], "gap_ci_high": [gap + 0.04, 0.0],
        "gap_flag": ["ok", "caution"]})


def _draw(folder, compared):
    indicators = {"food_insecurity": SimpleNamespace(label="Food insecurity")}
    return front_page._theme_figure("food", compared, ["food_insecurity"], indicators, {"women": "Women"},
                                    {"KEN": "Kenya", "UGA": "Uganda"}, {"demo_a": "Demo survey"}, folder,
                                    synthetic=True)


def _counting_plot_gaps(monkeypatch):
    calls = []
    original = figures.plot_gaps

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(figures, "plot_gaps", counted)
    return calls


def test_an_unchanged_theme_figure_is_not_drawn_again(tmp_path, monkeypatch):
    calls = _counting_plot_gaps(monkeypatch)
    first = _draw(tmp_path, _compared())
    svg = first["svg"].read_bytes()
    second = _draw(tmp_path, _compared())
    assert len(calls) == 1
    assert second == first  # the same file, alt text and caption
    assert first["alt"].strip() and "Kenya" in first["alt"]
    assert first["svg"].read_bytes() == svg


def test_a_theme_figure_is_drawn_again_when_its_data_text_or_file_change(tmp_path, monkeypatch):
    calls = _counting_plot_gaps(monkeypatch)
    first = _draw(tmp_path, _compared())
    svg = first["svg"].read_bytes()
    changed = _draw(tmp_path, _compared(gap=0.2))  # another number
    assert len(calls) == 2 and changed["svg"].read_bytes() != svg and changed["alt"] != first["alt"]
    monkeypatch.setattr(front_page, "text", lambda key, **values: f"§{key}")
    relabelled = _draw(tmp_path, _compared(gap=0.2))  # another label
    assert len(calls) == 3 and relabelled["caption"].startswith("§")
    relabelled["svg"].unlink()  # the file is gone
    _draw(tmp_path, _compared(gap=0.2))
    assert len(calls) == 4 and relabelled["svg"].exists()
