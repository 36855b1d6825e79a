"""Figures in Arabic and Chinese: the language's font has every glyph the figure draws (no tofu).

Matplotlib 3.11+ shapes Arabic itself, so the figure text is the catalogue's text as it is (no
arabic_reshaper / python-bidi); what can go wrong is a font without the glyphs, drawn as empty
boxes. The fonts are Debian's Noto (fonts-noto-core, fonts-noto-cjk; `make setup` installs them
where missing and it runs as root). Without them the test skips and says so; in CI it fails.
"""

from __future__ import annotations

import os
import re
import unicodedata
import warnings

import matplotlib
import pandas as pd
import pytest

from analysis import figures, i18n

matplotlib.use("agg")

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _cmap(path: str) -> set[int]:
    from fontTools.ttLib import TTFont

    font = TTFont(path, fontNumber=0, lazy=True)  # a .ttc collection: its first face
    return set(font.getBestCmap())


def _font_files(family: list[str]) -> dict[str, str]:
    from matplotlib import font_manager

    out = {}
    for name in family:
        try:
            out[name] = font_manager.findfont(font_manager.FontProperties(family=name),
                                              fallback_to_default=False)
        except ValueError:
            pass
    return out


def _require_fonts(code: str) -> dict[str, str]:
    family = figures.font_family(code)
    found = _font_files(family)
    if family[0] not in found:
        message = (f"font '{family[0]}' for figures in '{code}' is not installed (Debian fonts-noto-core / "
                   "fonts-noto-cjk; `make setup` as root installs them)")
        if IN_CI:
            pytest.fail(message + " — in CI this is an error, not a skip")
        pytest.skip(message)
    return found


def _profile(code: str):
    """A group-profile figure with the language's labels from the translated catalogue."""
    lang = i18n.load_language(code)
    label = lambda key: i18n.translate(key, lang)
    table = pd.DataFrame({
        "indicator": ["food_insecurity", "food_insecurity", "income_loss", "income_loss"],
        "cell": ["group", "reference", "group", "reference"],
        "estimate": [41.0, 28.0, 30.0, None], "ci_low": [37.0, 25.0, 20.0, None],
        "ci_high": [45.0, 31.0, 40.0, None], "flag": ["ok", "ok", "caution", "suppressed"]})
    return figures.plot_estimates(
        table, item_column="indicator", series_column="cell",
        title=f"{label('groups.persons_with_disabilities.label')} — {i18n.country_name('KEN', lang)}",
        series_labels={"group": label("groups.persons_with_disabilities.label"),
                       "reference": label("dimensions.disability.category_labels.no")},
        item_labels={i: label(f"indicators.{i}.label") for i in ("food_insecurity", "income_loss")},
        source_note=label("chapters.group_profile.title"), synthetic=True)


@pytest.mark.parametrize("code, script", [("ar", "ARABIC"), ("zh", "CJK")])
def test_figure_glyphs_are_all_in_the_languages_font(code, script, monkeypatch, tmp_path):
    monkeypatch.setenv("ANALYSIS_LANG", code)
    monkeypatch.delenv("ANALYSIS_TEXT_FILE", raising=False)
    fonts = _require_fonts(code)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig, alt = _profile(code)
        saved = figures.save_figure(fig, tmp_path, "profile", alt, "caption")
    assert matplotlib.rcParams["font.family"][0] == figures.font_family(code)[0]
    tofu = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert tofu == [], tofu
    texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
    drawn = {ch for t in texts for ch in t if not ch.isspace()}
    native = {ch for ch in drawn if script in unicodedata.name(ch, "")}
    assert len(native) >= 5, f"the figure should show {script} text; drew {texts}"
    # the figure's own words (notes, banner: params/text.yml) are in the language too, so their
    # glyphs are checked as well
    lang = i18n.load_language(code)
    english = i18n.catalogue_strings()
    for key in ("text.figures.synthetic_banner", "text.figures.bars_note"):
        shown = i18n.translate(key, lang)
        assert shown != english[key] and any(shown in t for t in texts), (key, texts)
    # every native character is in the language's own font, every other one in the chain
    primary = _cmap(fonts[figures.font_family(code)[0]])
    assert sorted(ch for ch in native if ord(ch) not in primary) == []
    chain = set().union(*(_cmap(path) for path in fonts.values()))
    assert sorted(ch for ch in drawn if ord(ch) not in chain) == []
    # the SVG keeps its text as text, so the reader's browser draws the glyphs: it must name the
    # same chain (whose glyphs were checked above), the language's font first
    svg = saved.svg.read_text(encoding="utf-8")
    families = set(re.findall(r"font-family: ([^;\"]+)", svg))
    assert families == {", ".join(f"'{f}'" for f in figures.font_family(code)) + ", sans-serif"}, families
    assert native <= set("".join(re.findall(r"<text\b[^>]*>([^<]*)</text>", svg)))
    matplotlib.pyplot.close(fig)


def test_arabic_is_not_pre_shaped(monkeypatch):
    """The figure keeps the catalogue's logical-order Arabic: no presentation forms, which the old
    reshaper workaround produced (and which matplotlib 3.11 would then print reversed)."""
    monkeypatch.setenv("ANALYSIS_LANG", "ar")
    _require_fonts("ar")
    fig, _ = _profile("ar")
    texts = "".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))
    assert not any(0xFB50 <= ord(ch) <= 0xFDFF or 0xFE70 <= ord(ch) <= 0xFEFF for ch in texts)
    assert i18n.translate("groups.persons_with_disabilities.label", "ar") in texts
    matplotlib.pyplot.close(fig)


def test_latin_and_cyrillic_keep_the_house_font():
    for code in ("en", "fr", "es", "pt", "ru"):
        assert figures.font_family(code) == ["DejaVu Sans"]
