"""The house style and every plot and map of the report.

One look for every figure, so that chapters for different groups and countries compare side by side:

- one seaborn/matplotlib theme (:func:`use_house_style`);
- one colour-blind-safe palette (Okabe & Ito 2008) with a *fixed* colour per group and per category,
  assigned from the order of the catalogues (``params/groups.yml``), never from the data of one run
  (:func:`series_colours`);
- fixed axes: percentages always 0–100, gaps in percentage points always symmetric around 0
  (±50, widened to ±100 only when a value needs it);
- an interval on every estimate; suppressed cells drawn as hatched "suppressed" marks, never as zero;
  caution cells marked with an asterisk and a note;
- a source note on every figure, and "SYNTHETIC DEMO DATA" when the source is synthetic;
- saved as SVG (vector: sharp on screen, in print and in the PDF) under stable names, and also as
  PNG at print resolution only in a print build (``python -m analysis run --print``, which sets
  :data:`FIGURE_FORMATS_ENV`), byte-identical when re-rendered from the same inputs
  (:func:`save_figure`: fixed SVG hash salt, no dates or software versions in the metadata);
- alternative text generated from the figure's data, saying what it shows and the main finding,
  shown in notebooks as ``<figure><img alt=...><figcaption>`` (:func:`figure_html`).

Values reach these functions already in display units (percent 0–100 for binary indicators);
:mod:`analysis.chapters` does the conversion from the result schema's proportions.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; notebooks show the saved files, not live canvases

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch

# The formats figures are saved in are decided in config (light to import: the pipeline's run
# keys read them without loading matplotlib).
from analysis.config import FIGURE_FORMATS_ENV, figure_formats  # noqa: F401
from analysis.text import text, text_count

#: Okabe–Ito colour-blind-safe palette, in the order colours are handed out. Yellow comes last
#: because it has the lowest contrast on white.
OKABE_ITO: list[str] = [
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow
]
#: Colour of every reference group ("rest of the population"): a grey with 4.5:1 contrast on white.
REFERENCE_COLOUR = "#767676"
#: Fill of suppressed cells and areas (drawn hatched), and of areas without data.
SUPPRESSED_COLOUR = "#FFFFFF"
NO_DATA_COLOUR = "#D9D9D9"
SUPPRESSED_HATCH = "////"
#: Sequential colour map for percentages (perceptually uniform, colour-blind safe).
SEQUENTIAL_CMAP = "cividis"
#: Diverging colour map for gaps (colour-blind safe).
DIVERGING_CMAP = "PuOr_r"
#: Fixed axis of every percentage.
PERCENT_RANGE: tuple[float, float] = (0.0, 100.0)
#: Default half-width of the axis of every gap in percentage points.
GAP_HALF_RANGE = 50.0
#: Matplotlib's SVG ids depend on this salt; fixing it makes re-rendered SVGs byte-identical.
SVG_HASH_SALT = "analysis-house-style"
PNG_DPI = 150
#: Resolution of the PNG copies of a print build (report writers paste them into documents).
PRINT_DPI = 300
FIGURE_WIDTH = 8.0  # inches; one width for every figure so they line up in the HTML

_HOUSE_RC = {
    "svg.hashsalt": SVG_HASH_SALT,
    # text as SVG text in the font family named (use_house_style): selectable and read by screen
    # readers, and about a third of the cost of writing every glyph as a path; the browser renders
    # it with the same fonts the layout was measured with (Debian fonts-dejavu / fonts-noto), or
    # its own sans-serif where the reader lacks them
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "figure.dpi": 100,
    "savefig.dpi": PNG_DPI,
    "hatch.linewidth": 0.8,
    "hatch.color": "#444444",
}


#: The font family of the figures by report language (a fallback chain: matplotlib takes each
#: glyph from the first family that has it). DejaVu Sans covers Latin and Cyrillic; Arabic and
#: Chinese need Noto (Debian fonts-noto-core and fonts-noto-cjk, installed by `make setup` where
#: missing). Matplotlib 3.11+ shapes Arabic itself (joining forms, right to left) with such a
#: font: the old arabic_reshaper + python-bidi workaround would now print Arabic reversed.
FONT_FAMILIES: dict[str, list[str]] = {
    "ar": ["Noto Sans Arabic", "DejaVu Sans"],
    "zh": ["Noto Sans CJK SC", "DejaVu Sans"],
}
DEFAULT_FONT_FAMILY = ["DejaVu Sans"]
_FONTS_RESCANNED: list[bool] = []


def font_family(lang: str | None = None) -> list[str]:
    """The figures' font family chain for ``lang`` (default: the report language).

    When the language's first family is not known to matplotlib's font cache (fonts installed
    after the cache was built), the system fonts are scanned again once.
    """
    from analysis.text import language

    family = FONT_FAMILIES.get(lang or language(), DEFAULT_FONT_FAMILY)
    if family is not DEFAULT_FONT_FAMILY and not _has_font(family[0]) and not _FONTS_RESCANNED:
        from matplotlib import font_manager

        _FONTS_RESCANNED.append(True)
        font_manager.fontManager = font_manager._load_fontmanager(try_read_cache=False)
    return list(family)


def _has_font(name: str) -> bool:
    from matplotlib import font_manager

    return any(f.name == name for f in font_manager.fontManager.ttflist)


def use_house_style() -> None:
    """Set the one seaborn/matplotlib theme of the report (idempotent), with the font family of
    the report language (:func:`font_family`)."""
    family = font_family()
    sns.set_theme(context="notebook", style="whitegrid", font=family[0])
    matplotlib.rcParams.update(_HOUSE_RC)
    # the chain, then the generic family: SVG text names "'Noto Sans Arabic', 'DejaVu Sans',
    # sans-serif" (sans-serif stands for the chain itself, so no other font is named or used)
    matplotlib.rcParams["font.family"] = [*family, "sans-serif"]
    matplotlib.rcParams["font.sans-serif"] = family


# --------------------------------------------------------------------------- colours


def series_colours(keys, catalogue_order=None, reference_keys=("reference",)) -> dict[str, str]:
    """A fixed colour for every series key.

    Colours are handed out by each key's position in ``catalogue_order`` (the order of
    ``params/groups.yml`` groups or of a dimension's categories), so a group keeps its colour in
    every run whatever else the run shows. Keys not in the catalogue follow, in sorted order.
    Reference keys are always :data:`REFERENCE_COLOUR`.
    """
    order = list(catalogue_order or [])
    extra = sorted(k for k in set(map(str, keys)) if k not in order and k not in reference_keys)
    ranked = [k for k in order if k not in reference_keys] + extra
    colours = {key: OKABE_ITO[i % len(OKABE_ITO)] for i, key in enumerate(ranked)}
    for key in reference_keys:
        colours[key] = REFERENCE_COLOUR
    return {str(k): colours[str(k)] for k in keys}


# --------------------------------------------------------------------------- saving


@dataclass(frozen=True)
class SavedFigure:
    """A figure written to disk, with the text that makes it accessible."""

    name: str
    svg: Path
    png: Path | None
    alt: str
    caption: str
    #: An accessible HTML table shown beside the figure (e.g. every area of a map), or "".
    table_html: str = ""


def save_figure(fig, figures_dir, name: str, alt: str, caption: str, table: pd.DataFrame | None = None,
                table_caption: str = "") -> SavedFigure:
    """Write ``fig`` as ``<figures_dir>/<name>.svg`` (and ``.png`` in a print build) and close it.

    ``table`` (display strings, e.g. :func:`area_table`) is kept as an accessible HTML table with
    ``table_caption``, shown beside the figure by :func:`figure_html`. Areas a map drew with a
    hover title (``fig.analysis_svg_titles``: SVG id -> text) get a ``<title>`` in the SVG.

    Drawing is the expensive part of a figure, so each figure is drawn once per format and only
    in the formats asked for (:func:`figure_formats`). The files are byte-identical when the same
    figure is drawn again: the SVG hash salt is fixed and no date, creator or software version
    is written into either file.
    """
    if not alt or not alt.strip():
        raise ValueError(f"figure {name!r}: alt text is empty; every figure needs alternative text")
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    formats = figure_formats()
    svg = figures_dir / f"{name}.svg"
    png = figures_dir / f"{name}.png" if "png" in formats else None
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT}):
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
        titles = getattr(fig, "analysis_svg_titles", None)
        if titles:
            _add_svg_titles(svg, titles)
        if png is not None:
            fig.savefig(png, format="png", dpi=PRINT_DPI, metadata={"Software": None})
    plt.close(fig)
    table_html = ""
    if table is not None and len(table):
        from analysis.tables import html_table

        table_html = html_table(table, table_caption or caption)
    return SavedFigure(name=name, svg=svg, png=png, alt=alt.strip(), caption=caption.strip(),
                       table_html=table_html)


def _add_svg_titles(svg: Path, titles: dict[str, str]) -> None:
    """Put ``<title>text</title>`` first in each ``<g id="...">`` of ``titles`` (SVG 1.1 §5.4: a
    title child is the element's tooltip in browsers and its accessible name)."""
    import re

    content = svg.read_text(encoding="utf-8")

    def add(match):
        title = titles.get(match.group(1))
        return match.group(0) if title is None else f"{match.group(0)}\n   <title>{html.escape(title)}</title>"

    content = re.sub(r'<g id="([^"]+)">', add, content)
    svg.write_text(content, encoding="utf-8")


def figure_html(figure: SavedFigure, relative_to=None) -> str:
    """``<figure><img alt=...><figcaption>`` for a saved figure.

    ``relative_to`` is the folder of the HTML page (the run's output folder); the image path is
    made relative to it so the page works wherever the outputs folder is served from.
    """
    src = figure.svg
    if relative_to is not None:
        src = Path(_relative_path(figure.svg, Path(relative_to)))
    shown = (
        '<figure class="analysis-figure">'
        f'<img src="{html.escape(src.as_posix())}" alt="{html.escape(figure.alt)}" '
        'style="max-width:100%;height:auto">'
        f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
    )
    if not figure.table_html:
        return shown
    # the figure and its table side by side (wrapping below on a narrow screen or at 200% zoom)
    # the table keeps its natural width (cells do not wrap: the page's style), the map takes the
    # rest; on a narrow screen or at 200% zoom the table moves below the map (never a scroll box)
    return ('<div class="analysis-figure-with-table" style="display:flex;flex-wrap:wrap;gap:1rem;'
            'align-items:flex-start"><div style="flex:1 1 28rem;min-width:0">' + shown + '</div>'
            '<div class="analysis-figure-table" style="flex:0 0 auto;max-width:100%">' + figure.table_html
            + "</div></div>")


def _relative_path(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


# --------------------------------------------------------------------------- notes


def natural_earth_credit() -> str:
    """The credit Natural Earth asks for on every map (``figures.natural_earth_credit``)."""
    return text("figures.natural_earth_credit")


def synthetic_note() -> str:
    """The banner on every figure drawn from synthetic data (``figures.synthetic_banner``)."""
    return text("figures.synthetic_banner")


def _note(source_note: str, caution: bool, legend_key: str) -> str:
    """Source note, the caution footnote when an estimate is marked, and what the marks show."""
    parts = [source_note, text("figures.caution_note") if caution else "", text(legend_key)]
    return " ".join(p for p in parts if p)


def _add_notes(fig, source_note: str, synthetic: bool, credit: str | None = None) -> None:
    """Source note bottom-left, synthetic banner top-right, map credit bottom-right."""
    fig.text(0.01, 0.005, source_note, ha="left", va="bottom", fontsize=NOTE_FONTSIZE, color="#333333")
    if credit:
        fig.text(0.99, 0.005, credit, ha="right", va="bottom", fontsize=7.5, color="#333333")
    if synthetic:
        fig.text(
            0.99, 0.995, synthetic_note(), ha="right", va="top", fontsize=9, fontweight="bold",
            color="#A00000", bbox={"facecolor": "white", "edgecolor": "#A00000", "boxstyle": "round,pad=0.2"},
        )


#: Font size (points) of the source note at the bottom left of every figure.
NOTE_FONTSIZE = 7.5


def _note_lines(note: str, fig) -> str:
    """``note`` in lines of at most 140 characters that fit the figure's width from x = 0.01.

    Greedy, word by word, as matplotlib's ``wrap=True`` does, but measured once here with a binary
    search over each line's words: matplotlib measured every prefix of every line again on each
    draw (a tenth of the time of a map). A word wider than the figure keeps a line of its own.
    """
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    prop = FontProperties(size=NOTE_FONTSIZE)
    measure = TextToPath()
    limit = 0.99 * fig.get_size_inches()[0] * 72  # points, as the measured widths

    def fits(words) -> bool:
        return measure.get_text_width_height_descent(" ".join(words), prop, ismath=False)[0] <= limit

    lines = []
    for line in _wrap(note, 140).split("\n"):
        if fits([line]):  # the usual case: one measurement
            lines.append(line)
            continue
        words = line.split(" ")
        while words:
            low, high = 1, len(words)  # the longest prefix that fits (one word at least)
            while low < high:
                mid = (low + high + 1) // 2
                low, high = (mid, high) if fits(words[:mid]) else (low, mid - 1)
            lines.append(" ".join(words[:low]))
            words = words[low:]
    return "\n".join(lines)


#: Padding around the plot, in font sizes (matplotlib's ``tight_layout`` default).
TIGHT_PAD = 1.08
#: Width (inches) that a colorbar's tick labels and label take right of its axes, measured once
#: per colour scale, label and font in a process: (vmin, vmax, label, fonts, size, dpi) -> inches.
_COLORBAR_TEXT_INCHES: dict = {}


def _pad_inches() -> float:
    """``tight_layout``'s padding of :data:`TIGHT_PAD` font sizes, in inches."""
    return TIGHT_PAD * matplotlib.rcParams["font.size"] / 72


def _tight_layout(fig, rect: tuple[float, float, float, float]) -> None:
    """``fig.tight_layout(pad=TIGHT_PAD, rect=rect)``, measuring the figure's texts once.

    matplotlib's tight layout with a ``rect`` measures every text twice: a first pass gives the
    margins the axes' decorations need, a second pass inside the rect uses only the rect on
    every side that the rect sets (and the spaces between cells of a grid). For a figure whose
    axes all sit in one cell of a grid (a chart, or a heatmap with its colorbar), the result is
    the first pass moved into the rect, which is computed here (the same rule as
    ``matplotlib._tight_layout._auto_adjust_subplotpars``; ``tests/test_figures.py`` compares the
    two). Figures with several cells go to ``fig.tight_layout``.
    """
    from matplotlib.transforms import Bbox

    laid_out = [ax for ax in fig.axes if ax.get_visible()]
    specs = {ax.get_subplotspec().get_topmost_subplotspec() if ax.get_subplotspec() else None for ax in laid_out}
    if len(specs) != 1 or None in specs:
        fig.tight_layout(pad=TIGHT_PAD, rect=rect)
        return
    cell = next(iter(specs)).get_position(fig)
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer, for_layout_only=True) for ax in laid_out]
    tight = fig.transFigure.inverted().transform_bbox(Bbox.union([b for b in boxes if b is not None]))
    width, height = fig.get_size_inches()
    pad = _pad_inches()
    margin_left = max(cell.xmin - tight.xmin, 0) + pad / width
    margin_right = max(tight.xmax - cell.xmax, 0) + pad / width
    margin_bottom = max(cell.ymin - tight.ymin, 0) + pad / height
    margin_top = max(tight.ymax - cell.ymax, 0) + pad / height
    left, bottom, right, top = rect
    params = {"left": left + margin_left, "right": right - margin_right,
              "bottom": bottom + margin_bottom, "top": top - margin_top}
    if params["left"] >= params["right"] or params["bottom"] >= params["top"]:
        fig.tight_layout(pad=TIGHT_PAD, rect=rect)  # no room: matplotlib warns and says why
        return
    fig.subplots_adjust(**params)


def _map_layout(fig, colorbar, bottom_inches: float, top_inches: float) -> None:
    """The subplot parameters ``tight_layout`` gives a map, without measuring the map's texts.

    A map's axes are off and everything drawn in them is clipped to them, so the only text
    outside the plot is the colorbar's (tick labels and label, right of it): the plot takes
    the figure's width less the padding and that text's width, and the height between the
    reserved top and bottom (``tight_layout``'s own rule, with its padding of
    :data:`TIGHT_PAD` font sizes). The colorbar's text is measured once per scale; the
    colorbar's own axes (narrower than its slot: its aspect is fixed) is positioned, then the
    slot is moved so that its text ends one padding from the right edge.
    """
    width, height = fig.get_size_inches()
    pad = _pad_inches()
    key = (colorbar.norm.vmin, colorbar.norm.vmax, colorbar.ax.get_ylabel(),
           tuple(matplotlib.rcParams["font.family"]), matplotlib.rcParams["font.size"], fig.dpi)
    if key not in _COLORBAR_TEXT_INCHES:
        renderer = fig.canvas.get_renderer()
        outside = colorbar.ax.get_tightbbox(renderer).x1 - colorbar.ax.get_window_extent(renderer).x1
        _COLORBAR_TEXT_INCHES[key] = max(float(outside), 0.0) / fig.dpi
    text_inches = _COLORBAR_TEXT_INCHES[key]
    right = 1 - (pad + text_inches) / width
    fig.subplots_adjust(left=pad / width, right=right, bottom=(bottom_inches + pad) / height,
                        top=1 - (top_inches + pad) / height)
    colorbar.ax.apply_aspect()
    spare = right - colorbar.ax.get_position().x1  # the slot's width the colorbar does not fill
    fig.subplots_adjust(right=min(right + spare, 1.0))


#: Inches reserved at the top of every figure per title line, and at the bottom for legend and notes.
TITLE_LINE_INCHES = 0.26
NOTES_INCHES = 0.45
LEGEND_INCHES = 0.4


def _finish_layout(fig, title: str, source_note: str, synthetic: bool, credit: str | None = None,
                   handles=None, colorbar=None) -> None:
    """Title top-left of the figure, legend and notes at the bottom, plot in between (no overlap).

    Space is reserved in inches, so the layout holds whatever the figure's height.
    ``colorbar``: the figure is a map (axes off, nothing outside them but this colorbar on the
    right), laid out by :func:`_map_layout` instead of measuring every text of the figure.
    """
    _, height = fig.get_size_inches()
    lines = _wrap(title, 75).split("\n")
    top_inches = 0.2 + TITLE_LINE_INCHES * len(lines) + (0.15 if synthetic else 0.0)
    # the notes take one line each of about 0.13 inch at 7.5 pt: the legend and the credit sit
    # above all of them (a long source note of several sources never runs under the legend)
    note = _note_lines(source_note, fig)
    note_lines = len(note.split("\n"))
    notes_inches = NOTES_INCHES + 0.13 * max(note_lines - 1, 0)
    bottom_inches = notes_inches
    if credit:  # its own line above the notes, so a long source note never runs into it
        bottom_inches += 0.25
        fig.text(0.99, (notes_inches + 0.02) / height, credit, ha="right", va="bottom", fontsize=7.5,
                 color="#333333")
    if handles:
        # entries side by side while they fit the figure's width (about 95 characters at 9 pt),
        # else one row per entry
        widths = sum(len(h.get_label()) + 6 for h in handles)
        ncol = min(len(handles), 3) if widths <= 95 else 1
        rows = math.ceil(len(handles) / ncol)
        legend_inches = LEGEND_INCHES + 0.2 * (rows - 1)
        bottom_inches += legend_inches
        fig.legend(handles=handles, loc="lower center", ncol=ncol,
                   bbox_to_anchor=(0.5, (bottom_inches - legend_inches) / height), frameon=False)
    fig.text(0.01, 1 - (0.12 + (0.15 if synthetic else 0.0)) / height, "\n".join(lines), ha="left", va="top",
             fontsize=12, fontweight="bold")
    _add_notes(fig, note, synthetic)
    if colorbar is not None:
        _map_layout(fig, colorbar, bottom_inches, top_inches)
        return
    _tight_layout(fig, rect=(0, bottom_inches / height, 1, 1 - top_inches / height))
    # laid out once: without this, tight_layout leaves a placeholder layout engine and savefig
    # draws the whole figure a second time (text layout included) before drawing it for real
    fig.set_layout_engine(None)


def _fmt(value: float, unit: str = "percent") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.0f}%" if unit == "percent" else f"{value:.2g}" if abs(value) < 10 else f"{value:.0f}"


def _signed(value: float) -> str:
    """"+13", "-4", and "0" (never "-0") for a gap in points."""
    rounded = round(float(value))
    return "0" if rounded == 0 else f"{rounded:+d}"


def _fmt_ci(low: float, high: float, unit: str = "percent") -> str:
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (low, high)):
        return ""
    return f" (95% CI {_fmt(low, unit).rstrip('%')}–{_fmt(high, unit)})"


# --------------------------------------------------------------------------- estimates


def plot_estimates(
    table: pd.DataFrame,
    *,
    item_column: str,
    series_column: str,
    title: str,
    value_label: str | None = None,
    item_labels: dict | None = None,
    series_labels: dict | None = None,
    series_order: list | None = None,
    colours: dict | None = None,
    unit: str = "percent",
    source_note: str = "",
    synthetic: bool = False,
    value_range: tuple[float, float] | None = None,
):
    """Horizontal bars of estimates with 95% intervals, one bar per series within each item.

    Parameters
    ----------
    table : DataFrame
        Columns ``item_column``, ``series_column``, ``estimate``, ``ci_low``, ``ci_high``, ``flag``
        (result schema), values in display units. Rows flagged ``suppressed`` are drawn as hatched
        "suppressed" bars spanning the axis — never as zero. ``caution`` rows get an asterisk.
    unit : "percent" fixes the axis at 0–100; anything else uses ``value_range`` or the data.

    Returns
    -------
    (Figure, alt_text)
    """
    use_house_style()
    value_label = value_label if value_label is not None else text("figures.percent_of_adults")
    item_labels = item_labels or {}
    series_labels = series_labels or {}
    items = list(dict.fromkeys(table[item_column].astype(str)))
    series = series_order or list(dict.fromkeys(table[series_column].astype(str)))
    colours = colours or series_colours(series)
    if unit == "percent":
        low, high = PERCENT_RANGE
    elif value_range is not None:
        low, high = value_range
    else:
        values = pd.concat([table["ci_high"], table["estimate"]]).astype(float)
        low, high = 0.0, float(np.nanmax(values)) * 1.1 if values.notna().any() else 1.0

    n_items, n_series = len(items), len(series)
    bar_height = 0.8 / max(n_series, 1)
    height = 2.2 + 0.32 * n_items * max(n_series, 1) + 0.25 * n_items
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, height))
    lookup = {(str(r[item_column]), str(r[series_column])): r for _, r in table.iterrows()}
    any_caution = any_suppressed = any_interval = False
    whiskers = []  # (estimate, y, below, above) of every bar with an interval: drawn in one call
    for i, item in enumerate(items):
        for j, key in enumerate(series):
            y = i + (j - (n_series - 1) / 2) * bar_height
            row = lookup.get((item, key))
            if row is None:
                continue
            if row["flag"] == "suppressed" or pd.isna(row["estimate"]):
                any_suppressed |= row["flag"] == "suppressed"
                ax.barh(y, high - low, left=low, height=bar_height * 0.9, color=SUPPRESSED_COLOUR,
                        edgecolor=colours.get(key, REFERENCE_COLOUR), hatch=SUPPRESSED_HATCH, linewidth=0.8)
                label = text("figures.suppressed" if row["flag"] == "suppressed" else "figures.no_estimate")
                ax.text(low + (high - low) / 2, y, label, ha="center", va="center", fontsize=8,
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
                continue
            est = float(row["estimate"])
            ax.barh(y, est - low, left=low, height=bar_height * 0.9, color=colours.get(key, REFERENCE_COLOUR))
            lo, hi = row.get("ci_low"), row.get("ci_high")
            if pd.notna(lo) and pd.notna(hi):
                any_interval = True
                whiskers.append((est, y, est - float(lo), float(hi) - est))
            caution = row["flag"] == "caution"
            any_caution |= caution
            end = float(hi) if pd.notna(hi) else est
            ax.text(min(end + (high - low) * 0.01, high), y, _fmt(est, unit) + ("*" if caution else ""),
                    ha="left" if end < high * 0.93 else "right", va="center", fontsize=8)
    if whiskers:  # one errorbar call for all the intervals (one call per bar took 3 ms each)
        est, y, below, above = (np.array(v, dtype=float) for v in zip(*whiskers))
        ax.errorbar(est, y, xerr=[below, above], fmt="none", ecolor="#222222", elinewidth=1.1, capsize=3)
    ax.set_yticks(range(n_items))
    ax.set_yticklabels([_wrap(item_labels.get(it, it)) for it in items])
    ax.invert_yaxis()
    ax.set_xlim(low, high)
    ax.set_xlabel(value_label)
    handles = [Patch(facecolor=colours.get(k, REFERENCE_COLOUR), label=series_labels.get(k, k)) for k in series]
    if any_suppressed:
        handles.append(Patch(facecolor=SUPPRESSED_COLOUR, edgecolor="#444444", hatch=SUPPRESSED_HATCH,
                             label=text("figures.suppressed_legend")))
    # the note names whiskers only when some bar has them
    note = _note(source_note, any_caution, "figures.bars_note" if any_interval else "figures.bars_only_note")
    _finish_layout(fig, title, note.strip(), synthetic, handles=handles)
    alt = describe_estimates(table, item_column=item_column, series_column=series_column, title=title,
                             item_labels=item_labels, series_labels=series_labels, series_order=series,
                             unit=unit)
    return fig, alt


def _wrap(text: str, width: int = 28) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def describe_estimates(table, *, item_column, series_column, title, item_labels=None, series_labels=None,
                       series_order=None, unit="percent", max_items: int = 8) -> str:
    """Alt text for :func:`plot_estimates`: every item's values and CIs, and the largest gap.

    E.g. ``"Bar chart of food insecurity: persons with disabilities 41% (95% CI 37–45) vs
    without 28% (95% CI 25–31); gap 13 points."``
    """
    item_labels = item_labels or {}
    series_labels = series_labels or {}
    items = list(dict.fromkeys(table[item_column].astype(str)))
    series = series_order or list(dict.fromkeys(table[series_column].astype(str)))
    rows = {(str(r[item_column]), str(r[series_column])): r for _, r in table.iterrows()}
    parts, gaps = [], []
    for item in items[:max_items]:
        values = []
        for key in series:
            row = rows.get((item, key))
            if row is None:
                continue
            name = series_labels.get(key, key)
            if row["flag"] == "suppressed" or pd.isna(row["estimate"]):
                values.append(text("figures.alt.series_suppressed", name=name))
            else:
                mark = text("figures.alt.caution_mark") if row["flag"] == "caution" else ""
                ci = _fmt_ci(row.get("ci_low"), row.get("ci_high"), unit)
                values.append(f"{name} {_fmt(float(row['estimate']), unit)}{ci[:-1] + mark + ')' if ci else mark}")
        sentence = f"{item_labels.get(item, item)}: " + text("figures.alt.versus").join(values)
        if len(series) == 2:
            a, b = rows.get((item, series[0])), rows.get((item, series[1]))
            if a is not None and b is not None and pd.notna(a["estimate"]) and pd.notna(b["estimate"]):
                gap = float(a["estimate"]) - float(b["estimate"])
                gaps.append((abs(gap), item_labels.get(item, item), gap))
                sentence += (text("figures.alt.gap_points", gap=_signed(gap)) if unit == "percent"
                             else text("figures.alt.gap_difference", gap=f"{gap:+.2g}"))
        parts.append(sentence)
    alt = text("figures.alt.bar_chart", title=title, details=". ".join(parts))
    if len(items) > max_items:
        alt += text("figures.alt.more_items", count=len(items) - max_items)
    if gaps:
        _, label, gap = max(gaps)
        alt += (text("figures.alt.largest_gap", label=label, gap=_signed(gap)) if unit == "percent"
                else text("figures.alt.largest_difference", label=label, gap=_signed(gap)))
    return alt


# --------------------------------------------------------------------------- gaps


def plot_gaps(
    table: pd.DataFrame,
    *,
    title: str,
    item_labels: dict | None = None,
    colour: str = OKABE_ITO[0],
    value_label: str | None = None,
    source_note: str = "",
    synthetic: bool = False,
):
    """Dot-and-whisker chart of gaps (differences in points) with 95% intervals around a zero line.

    ``table`` has one row per item (column ``indicator``) with ``estimate``, ``ci_low``, ``ci_high``,
    ``flag``. The axis is fixed at ±50 points (±100 when a value needs it) so runs compare.
    """
    use_house_style()
    value_label = value_label if value_label is not None else text("figures.gap_axis")
    item_labels = item_labels or {}
    items = list(table["indicator"].astype(str))
    values = pd.concat([table["ci_low"], table["ci_high"], table["estimate"]]).astype(float).abs()
    half = GAP_HALF_RANGE if not values.notna().any() or values.max() <= GAP_HALF_RANGE else 100.0
    height = 2.2 + 0.45 * len(items)
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, height))
    ax.axvline(0, color="#222222", linewidth=1)
    any_caution = any_interval = False
    for i, (_, row) in enumerate(table.iterrows()):
        if row["flag"] == "suppressed" or pd.isna(row["estimate"]):
            ax.barh(i, 2 * half, left=-half, height=0.6, color=SUPPRESSED_COLOUR, edgecolor="#444444",
                    hatch=SUPPRESSED_HATCH, linewidth=0.6)
            ax.text(0, i, text("figures.suppressed" if row["flag"] == "suppressed" else "figures.no_estimate"), ha="center",
                    va="center", fontsize=8, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            continue
        est = float(row["estimate"])
        if pd.notna(row["ci_low"]) and pd.notna(row["ci_high"]):
            any_interval = True
            ax.errorbar(est, i, xerr=[[est - float(row["ci_low"])], [float(row["ci_high"]) - est]],
                        fmt="o", color=colour, ecolor=colour, elinewidth=1.6, capsize=3, markersize=6)
        else:
            ax.plot(est, i, "o", color=colour)
        caution = row["flag"] == "caution"
        any_caution |= caution
        ax.text(est, i - 0.28, _signed(est) + ("*" if caution else ""), ha="center", va="bottom", fontsize=8)
    ax.set_yticks(range(len(items)))
    ax.set_yticklabels([_wrap(item_labels.get(it, it)) for it in items])
    ax.set_ylim(len(items) - 0.5, -0.7)
    ax.set_xlim(-half, half)
    ax.set_xlabel(value_label)
    note = _note(source_note, any_caution, "figures.dots_note" if any_interval else "figures.dots_only_note")
    _finish_layout(fig, title, note.strip(), synthetic)
    return fig, describe_gaps(table, title=title, item_labels=item_labels)


def describe_gaps(table, *, title, item_labels=None, max_items: int = 8) -> str:
    """Alt text for :func:`plot_gaps`: each gap with its CI, and which gaps exclude zero."""
    item_labels = item_labels or {}
    parts, clear = [], []
    for _, row in table.head(max_items).iterrows():
        label = item_labels.get(str(row["indicator"]), str(row["indicator"]))
        if row["flag"] == "suppressed" or pd.isna(row["estimate"]):
            parts.append(text("figures.alt.item_suppressed", label=label))
            continue
        ci = ""
        if pd.notna(row["ci_low"]) and pd.notna(row["ci_high"]):
            ci = text("figures.alt.gap_interval", low=_signed(row["ci_low"]), high=_signed(row["ci_high"]))
            if row["ci_low"] > 0 or row["ci_high"] < 0:
                clear.append(label)
        parts.append(text("figures.alt.item_gap", label=label, gap=_signed(row["estimate"]), interval=ci))
    alt = text("figures.alt.dot_chart", title=title, details="; ".join(parts))
    if len(table) > max_items:
        alt += text("figures.alt.more_gaps", count=len(table) - max_items)
    alt += (text("figures.alt.clear_gaps", labels=text("common.list_separator").join(clear)) if clear
            else text("figures.alt.no_clear_gap"))
    return alt


# --------------------------------------------------------------------------- heatmap


def plot_heatmap(
    table: pd.DataFrame,
    *,
    row_column: str,
    column_column: str,
    title: str,
    row_labels: dict | None = None,
    column_labels: dict | None = None,
    row_order: list | None = None,
    column_order: list | None = None,
    row_title: str = "",
    column_title: str = "",
    source_note: str = "",
    synthetic: bool = False,
):
    """Heatmap of cell estimates (percent, fixed 0–100 colour scale) with suppressed cells hatched.

    Each tile shows the estimate and its 95% CI; caution tiles get an asterisk; suppressed tiles are
    white, hatched and labelled "suppressed"; crossings without respondents are grey "no data".
    """
    use_house_style()
    row_labels, column_labels = row_labels or {}, column_labels or {}
    rows = row_order or list(dict.fromkeys(table[row_column].astype(str)))
    cols = column_order or list(dict.fromkeys(table[column_column].astype(str)))
    lookup = {(str(r[row_column]), str(r[column_column])): r for _, r in table.iterrows()}
    cmap = matplotlib.colormaps[SEQUENTIAL_CMAP]
    norm = matplotlib.colors.Normalize(*PERCENT_RANGE)
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 2.4 + 0.62 * len(rows)))
    any_caution = False
    # the tiles' labels sit inside their tiles, so they take no part in the layout (tight_layout
    # measured every one of them)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            row = lookup.get((r, c))
            if row is None or (row["flag"] != "suppressed" and pd.isna(row["estimate"])):
                ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=NO_DATA_COLOUR, edgecolor="white"))
                ax.text(j + 0.5, i + 0.5, text("figures.no_data"), ha="center", va="center", fontsize=8,
                        in_layout=False)
            elif row["flag"] == "suppressed":
                ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=SUPPRESSED_COLOUR, edgecolor="#444444",
                                           hatch=SUPPRESSED_HATCH, linewidth=0.5))
                ax.text(j + 0.5, i + 0.5, text("figures.suppressed"), ha="center", va="center", fontsize=8,
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1}, in_layout=False)
            else:
                est = float(row["estimate"])
                rgba = cmap(norm(est))
                ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=rgba, edgecolor="white"))
                light = (0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]) > 0.5
                caution = row["flag"] == "caution"
                any_caution |= caution
                ci = ""
                if pd.notna(row.get("ci_low")) and pd.notna(row.get("ci_high")):
                    ci = f"\n({float(row['ci_low']):.0f}–{float(row['ci_high']):.0f})"
                ax.text(j + 0.5, i + 0.5, f"{est:.0f}%{'*' if caution else ''}{ci}", ha="center",
                        va="center", fontsize=8, color="black" if light else "white", in_layout=False)
    ax.set_xlim(0, len(cols))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks(np.arange(len(cols)) + 0.5)
    ax.set_xticklabels([_wrap(column_labels.get(c, c), 14) for c in cols])
    ax.set_yticks(np.arange(len(rows)) + 0.5)
    ax.set_yticklabels([_wrap(row_labels.get(r, r), 24) for r in rows])
    ax.set_xlabel(column_title)
    ax.set_ylabel(row_title)
    ax.grid(False)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label=text("figures.percent"), fraction=0.04, pad=0.02)
    note = _note(source_note, any_caution, "figures.tiles_note")
    _finish_layout(fig, title, note.strip(), synthetic)
    alt = describe_heatmap(table, row_column=row_column, column_column=column_column, title=title,
                           row_labels=row_labels, column_labels=column_labels)
    return fig, alt


def describe_heatmap(table, *, row_column, column_column, title, row_labels=None, column_labels=None) -> str:
    """Alt text for :func:`plot_heatmap`: size, highest and lowest cells, how many suppressed."""
    row_labels, column_labels = row_labels or {}, column_labels or {}
    shown = table[(table["flag"] != "suppressed") & table["estimate"].notna()]
    n_supp = int((table["flag"] == "suppressed").sum())

    def name(row):
        return f"{row_labels.get(str(row[row_column]), row[row_column])} × " \
               f"{column_labels.get(str(row[column_column]), row[column_column])}"

    alt = text("figures.alt.heatmap", title=title, cells=len(table))
    if len(shown):
        hi = shown.loc[shown["estimate"].astype(float).idxmax()]
        lo = shown.loc[shown["estimate"].astype(float).idxmin()]
        alt += text("figures.alt.heatmap_range", highest=name(hi), lowest=name(lo),
                    highest_value=f"{float(hi['estimate']):.0f}%{_fmt_ci(hi.get('ci_low'), hi.get('ci_high'))}",
                    lowest_value=f"{float(lo['estimate']):.0f}%{_fmt_ci(lo.get('ci_low'), lo.get('ci_high'))}")
    alt += text_count("figures.alt.heatmap_suppressed", n_supp)
    return alt


# --------------------------------------------------------------------------- maps


#: An area whose 95% interval is wider than this (percent, or points for a gap) is marked as
#: uncertain on a map, as caution areas are: its colour alone would overstate what is known.
WIDE_INTERVAL_POINTS = 20.0
#: Overlay of uncertain areas (caution flag or wide interval), drawn over their colour.
UNCERTAIN_HATCH = "..."
#: Maps with more areas than this label only the areas that have an estimate or are suppressed.
MAX_LABELLED_AREAS = 60


def uncertain_areas(values: pd.DataFrame, wide: float = WIDE_INTERVAL_POINTS) -> pd.Series:
    """True for rows with an estimate that is flagged caution or whose 95% interval is wider than
    ``wide`` (display units); suppressed rows and rows without an estimate are never "uncertain"."""
    flag = values["flag"].astype("string").fillna("")
    has_value = values["estimate"].notna() & flag.ne("suppressed")
    if "ci_low" in values and "ci_high" in values:
        width = pd.to_numeric(values["ci_high"], errors="coerce") - pd.to_numeric(values["ci_low"], errors="coerce")
        wide_interval = width.gt(wide).fillna(False)
    else:  # no intervals at all: only the flag can say
        wide_interval = False
    return (has_value & (flag.eq("caution") | wide_interval)).astype(bool).reset_index(drop=True)


def area_value_text(row, diverging: bool = False) -> str:
    """"39% (35–43)", "+4 points (−2 to 10)", "suppressed" or "no data" for one area's row."""
    flag = "" if pd.isna(row.get("flag")) else str(row.get("flag"))
    if flag == "suppressed":
        return text("figures.suppressed")
    estimate = row.get("estimate")
    if estimate is None or pd.isna(estimate):
        return text("figures.no_data")
    low, high = row.get("ci_low"), row.get("ci_high")
    has_ci = low is not None and high is not None and pd.notna(low) and pd.notna(high)
    if diverging:
        value = text("figures.area.gap", gap=_signed(estimate))
        interval = text("figures.area.gap_interval", low=_signed(low), high=_signed(high)) if has_ci else ""
    else:
        value = _fmt(float(estimate))
        interval = text("figures.area.interval", low=f"{float(low):.0f}", high=f"{float(high):.0f}") if has_ci else ""
    caution = text("figures.area.caution") if flag == "caution" else ""
    return value + interval + caution


def area_table(areas, values: pd.DataFrame, *, area_key: str, value_key: str, diverging: bool = False,
               area_label_column: str = "name") -> pd.DataFrame:
    """The accessible table shown beside a map: one row per area with data (by name), its value and 95% interval, respondents and quality, as display strings."""
    names = dict(zip(areas[area_key].astype(str), areas[area_label_column].astype(str)))
    rows = values.assign(_key=values[value_key].astype(str))
    # alphabetical by the area's name: how a reader looks an area up
    rows = rows.assign(_name=rows["_key"].map(lambda k: names.get(k, k))).sort_values(["_name", "_key"])
    uncertain = uncertain_areas(rows.reset_index(drop=True))
    out = []
    for (_, row), marked in zip(rows.iterrows(), uncertain):
        flag = "" if pd.isna(row.get("flag")) else str(row.get("flag"))
        estimate = row.get("estimate")
        shown = flag != "suppressed" and estimate is not None and pd.notna(estimate)
        low, high = row.get("ci_low"), row.get("ci_high")
        has_ci = shown and pd.notna(low) and pd.notna(high)
        if diverging:
            value = text("figures.area.gap", gap=_signed(estimate)) if shown else ""
            interval = text("figures.area.gap_range", low=_signed(low), high=_signed(high)) if has_ci else ""
        else:
            value = _fmt(float(estimate)) if shown else ""
            interval = f"{float(low):.0f}–{float(high):.0f}" if has_ci else ""
        n = row.get("n_unweighted")
        quality = (text("figures.suppressed") if flag == "suppressed" else
                   text("figures.area.uncertain") if marked else
                   text("figures.area.quality_ok") if shown else text("figures.no_data"))
        out.append({"area": names.get(row["_key"], row["_key"]), "value": value, "interval": interval,
                    "n": "" if n is None or pd.isna(n) else f"{int(n):,}", "quality": quality})
    columns = ["area", "value", "interval", "n", "quality"]
    headings = {c: text(f"figures.area.columns.{c}") for c in columns}
    if diverging:
        headings["value"] = text("figures.area.columns.gap")
    return pd.DataFrame(out, columns=columns).rename(columns=headings)


def plot_choropleth(
    areas,
    values: pd.DataFrame,
    *,
    area_key: str,
    value_key: str,
    title: str,
    legend_label: str | None = None,
    diverging: bool = False,
    area_label_column: str = "name",
    source_note: str = "",
    synthetic: bool = False,
    project: bool = True,
):
    """Choropleth of one value per area (admin1 of one country, or countries of the world).

    Parameters
    ----------
    areas : GeoDataFrame
        Boundaries (Natural Earth), with ``area_key`` and ``area_label_column``.
    values : DataFrame
        One row per area: ``value_key`` (matching ``area_key``), ``estimate``, ``ci_low``,
        ``ci_high``, ``flag``. Suppressed areas are drawn white and hatched; areas without an
        estimate are grey "no data". Never a zero. Areas flagged caution or whose interval is
        wider than :data:`WIDE_INTERVAL_POINTS` are overlaid with dots (:func:`uncertain_areas`),
        and the legend says so.
    diverging : gaps (points, symmetric fixed scale ±50 or ±100) instead of percentages (0–100).
    project : draw in a Lambert azimuthal equal-area projection centred on the areas (so areas
        keep their relative size, and countries that cross the antimeridian, such as the USA with
        the Aleutians, are not stretched over the whole globe).

    Every area with data is named on the map (at a point inside it) and drawn as its own SVG
    group carrying a ``<title>`` (name, value, interval: hover text, written by
    :func:`save_figure`); the legend sits below the map, outside its axes, so it never covers an
    area. :func:`area_table` gives the same values as an accessible table for beside the map.
    """
    from matplotlib.patches import PathPatch

    use_house_style()
    legend_label = legend_label if legend_label is not None else text("figures.percent")
    merged = areas.merge(values, how="left", left_on=area_key, right_on=value_key)
    geometry = _map_geometry(areas, merged, project)
    merged = merged.iloc[geometry.keep].reset_index(drop=True).set_geometry(geometry.shapes)
    if diverging:
        limit = float(merged["estimate"].abs().max()) if merged["estimate"].notna().any() else 0.0
        half = GAP_HALF_RANGE if limit <= GAP_HALF_RANGE else 100.0
        vmin, vmax, cmap = -half, half, DIVERGING_CMAP
    else:
        (vmin, vmax), cmap = PERCENT_RANGE, SEQUENTIAL_CMAP
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 6.0))
    ax.set_axis_off()  # before drawing anything: a map has no ticks to lay out
    # areas without a row have no flag (NA): they are "no data", never suppressed
    suppressed = merged["flag"].astype("string").eq("suppressed").fillna(False).to_numpy(dtype=bool)
    shown = merged["estimate"].notna().to_numpy(dtype=bool) & ~suppressed
    uncertain = uncertain_areas(merged).to_numpy(dtype=bool)
    norm = matplotlib.colors.Normalize(vmin, vmax)
    no_data = ~shown & ~suppressed
    _draw_areas(ax, [geometry.paths[i] for i in np.flatnonzero(no_data)], NO_DATA_COLOUR, edgecolor="white")
    # areas with data one by one: each is an SVG group of its own with a hover title
    colours = matplotlib.colormaps[cmap](norm(merged["estimate"].astype(float).fillna(0.0).to_numpy()))
    svg_titles = {}
    for i in np.flatnonzero(shown | suppressed):
        path = geometry.paths[i]
        if path is None:
            continue
        gid = f"analysis-area-{i}"
        if suppressed[i]:
            patch = PathPatch(path, facecolor=SUPPRESSED_COLOUR, edgecolor="#444444", hatch=SUPPRESSED_HATCH,
                              linewidth=0.4)
        else:
            patch = PathPatch(path, facecolor=colours[i], edgecolor="#222222" if uncertain[i] else "white",
                              linewidth=0.4)
        patch.set_gid(gid)
        # add_artist, not add_patch: the axis limits are set from the areas with data below, so
        # the data limits add_patch computes from every vertex of every area would go unused
        ax.add_artist(patch)
        name = str(merged.loc[i, area_label_column])
        svg_titles[gid] = text("figures.area.title", area=name,
                               value=area_value_text(merged.loc[i], diverging=diverging))
        if uncertain[i] and not suppressed[i]:
            # the dots as a transparent layer over the colour: an SVG backend writes one hatch
            # pattern per fill colour (150 KB of dots each), a transparent fill shares one. The
            # layer carries the area's hover title too, since it is what the pointer is on.
            dots = PathPatch(path, facecolor="none", edgecolor="#222222", hatch=UNCERTAIN_HATCH, linewidth=0.0)
            dots.set_gid(f"{gid}-dots")
            ax.add_artist(dots)
            svg_titles[f"{gid}-dots"] = svg_titles[gid]
    # names of the areas: those with data (all areas on small maps), at a point inside each
    labelled = np.flatnonzero(shown | suppressed) if len(merged) > MAX_LABELLED_AREAS else range(len(merged))
    # each name on a pale box, as SVG text: a white halo (a stroke path effect) is written as
    # glyph outlines twice over, which made the names two thirds of a map's file
    plate = {"boxstyle": "round,pad=0.12", "facecolor": "white", "edgecolor": "none", "alpha": 0.7}
    for i in labelled:
        if geometry.points[i] is None:
            continue
        ax.text(*geometry.points[i], str(merged.loc[i, area_label_column]), fontsize=5.5,
                ha="center", va="center", color="#111111", bbox=plate, clip_on=True)
    ax.set_aspect("equal")
    ax.autoscale_view()
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    colorbar = fig.colorbar(sm, ax=ax, label=legend_label, fraction=0.035, pad=0.02, shrink=0.8)
    handles = [Patch(facecolor=NO_DATA_COLOUR, label=text("figures.no_data"))]
    if suppressed.any():
        handles.insert(0, Patch(facecolor=SUPPRESSED_COLOUR, edgecolor="#444444", hatch=SUPPRESSED_HATCH,
                                label=text("figures.suppressed_legend")))
    if uncertain.any():
        # the map's own dot layer (transparent fill): the SVG holds one pattern of dots, not two
        handles.insert(0, Patch(facecolor="none", edgecolor="#222222", hatch=UNCERTAIN_HATCH,
                                label=text("figures.uncertain_legend", width=WIDE_INTERVAL_POINTS)))
    data_bounds = merged[shown | suppressed]
    if len(data_bounds):
        x0, y0, x1, y1 = data_bounds.total_bounds
        pad_x, pad_y = (x1 - x0) * 0.05 + 1e-6, (y1 - y0) * 0.05 + 1e-6
        ax.set_xlim(x0 - pad_x, x1 + pad_x)
        ax.set_ylim(y0 - pad_y, y1 + pad_y)
    ax.set_axis_off()
    # the legend below the map (figure level), never inside the axes over the south of a country
    _finish_layout(fig, title, source_note, synthetic, credit=natural_earth_credit(), handles=handles,
                   colorbar=colorbar)
    fig.analysis_svg_titles = svg_titles  # read by save_figure
    labels = dict(zip(merged[area_key].astype(str), merged[area_label_column].astype(str)))
    alt = describe_map(values, key=value_key, title=title, area_labels=labels, diverging=diverging)
    return fig, alt


def _area_path(geometry):
    """A matplotlib Path of a (multi)polygon: every exterior and hole as closed sub-paths (holes
    are filled correctly by the even-odd rule of compound paths)."""
    from matplotlib.path import Path as MplPath

    polygons = getattr(geometry, "geoms", [geometry])
    vertices, codes = [], []
    for polygon in polygons:
        for ring in (polygon.exterior, *polygon.interiors):
            xy = np.asarray(ring.coords)
            if len(xy) < 3:
                continue
            ring_codes = np.full(len(xy), MplPath.LINETO, dtype=np.uint8)
            ring_codes[0], ring_codes[-1] = MplPath.MOVETO, MplPath.CLOSEPOLY
            vertices.append(xy[:, :2])
            codes.append(ring_codes)
    if not vertices:
        return None
    return MplPath(np.concatenate(vertices), np.concatenate(codes))


def _draw_areas(ax, paths, facecolor, edgecolor: str, hatch: str | None = None,
                linewidth: float = 0.4) -> None:
    """Fill areas (their :func:`_area_path`, None for an empty area) as one PatchCollection
    (geopandas' own plotting redraws the whole canvas on every call, which made maps the
    slowest part of the report)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import PathPatch

    keep = [i for i, path in enumerate(paths) if path is not None]
    if not keep:
        return
    if not isinstance(facecolor, str):  # one colour per area: keep those of the areas drawn
        facecolor = np.asarray(facecolor)[keep]
    collection = PatchCollection([PathPatch(paths[i]) for i in keep], facecolor=facecolor, edgecolor=edgecolor,
                                 linewidth=linewidth, hatch=hatch, match_original=False)
    ax.add_collection(collection)


@dataclass(frozen=True)
class _MapGeometry:
    """What every map of the same areas with data in the same areas shares (:func:`_map_geometry`)."""

    keep: np.ndarray  # row positions of the areas drawn (near those with data)
    shapes: object  # their GeoSeries, projected
    paths: list  # matplotlib Path of each (None: empty)
    points: list  # (x, y) of each name, a point inside the area (None: empty)


#: Prepared geometry by (areas frame, areas with data, projection): a run draws a map per
#: indicator of the same areas, which share the cut, the projection, the paths and the points.
_MAP_GEOMETRY: dict = {}


def _map_geometry(areas, merged, project: bool) -> _MapGeometry:
    """The areas of a map near those with data (:func:`_around_data`), projected
    (:func:`_local_projection`) when ``project``, with their paths and name points; computed once
    per areas frame, set of areas with data and projection in a process."""
    has_data = (merged["estimate"].notna() | merged["flag"].astype("string").eq("suppressed").fillna(False))
    key = (id(areas), len(merged), has_data.to_numpy(dtype=bool).tobytes(), project)
    hit = _MAP_GEOMETRY.get(key)
    if hit is not None and hit[0] is areas:  # the frame itself is kept: its id cannot be reused
        return hit[1]
    frame = _around_data(merged.reset_index(drop=True), has_data.to_numpy(dtype=bool))
    keep = frame.index.to_numpy()
    if project:
        frame = _local_projection(frame)
    shapes = frame.geometry.reset_index(drop=True)
    empty = [g is None or g.is_empty for g in shapes]
    inside = shapes.representative_point()
    prepared = _MapGeometry(keep=keep, shapes=shapes,
                            paths=[None if e else _area_path(g) for g, e in zip(shapes, empty)],
                            points=[None if e else (p.x, p.y) for p, e in zip(inside, empty)])
    if len(_MAP_GEOMETRY) > 32:
        _MAP_GEOMETRY.clear()
    _MAP_GEOMETRY[key] = (areas, prepared)
    return prepared


def _around_data(frame, has_data: np.ndarray, margin_degrees: float = 12.0):
    """Keep the areas near those with data (``has_data``: an estimate or suppressed, by row; a
    world layer is cut to the region the data cover), so that the map shows the neighbours for
    context and nothing from the far side of the globe."""
    if frame.crs is None or not frame.crs.is_geographic:
        return frame
    if not has_data.any():
        return frame
    x0, y0, x1, y1 = frame[has_data].total_bounds
    if x1 - x0 > 180:  # e.g. the USA with the Aleutians across the antimeridian: keep everything
        return frame
    points = frame.geometry.representative_point()
    near = points.x.between(x0 - margin_degrees, x1 + margin_degrees) & points.y.between(
        y0 - margin_degrees, y1 + margin_degrees)
    return frame[near | has_data]


def _local_projection(frame):
    """Reproject longitude/latitude areas to a Lambert azimuthal equal-area projection centred on them."""
    if frame.crs is None or not frame.crs.is_geographic or frame.empty:
        return frame
    points = frame.geometry.representative_point()
    lon = np.degrees(np.arctan2(np.sin(np.radians(points.x)).mean(), np.cos(np.radians(points.x)).mean()))
    lat = float(points.y.mean())
    return frame.to_crs(f"+proj=laea +lat_0={lat:.2f} +lon_0={lon:.2f} +datum=WGS84 +units=m +no_defs")


def describe_map(values: pd.DataFrame, *, key: str, title: str, area_labels=None, diverging=False) -> str:
    """Alt text for a choropleth: number of areas, highest and lowest, suppressed count."""
    area_labels = area_labels or {}
    shown = values[(values["flag"] != "suppressed") & values["estimate"].notna()]
    n_supp = int((values["flag"] == "suppressed").sum())
    unit = " points" if diverging else "%"

    def fmt(v):
        return f"{_signed(v)}{unit}" if diverging else f"{v:.0f}{unit}"

    alt = text_count("figures.alt.map", len(shown), title=title)
    if len(shown):
        hi = shown.loc[shown["estimate"].astype(float).idxmax()]
        lo = shown.loc[shown["estimate"].astype(float).idxmin()]
        alt += text("figures.alt.map_range", highest=area_labels.get(str(hi[key]), hi[key]),
                    highest_value=fmt(float(hi["estimate"])), lowest=area_labels.get(str(lo[key]), lo[key]),
                    lowest_value=fmt(float(lo["estimate"])))
    alt += text_count("figures.alt.map_suppressed", n_supp, credit=natural_earth_credit())
    return alt


# --------------------------------------------------------------------------- evidence from partner studies
# Forest, funnel and evidence-gap-map figures of the chapter "Evidence from partner studies"
# (analysis.evidence). Every word drawn comes in through the arguments (params/evidence.yml).

#: Colour of each overall risk-of-bias rating (Okabe–Ito; the label is always written too).
QUALITY_COLOURS = {"low": OKABE_ITO[2], "moderate": OKABE_ITO[4], "high": OKABE_ITO[1],
                   "none": REFERENCE_COLOUR}


def plot_forest(
    studies: pd.DataFrame,
    pooled: dict,
    *,
    title: str,
    axis_label: str,
    pooled_label: str,
    prediction_label: str,
    quality_labels: dict,
    suppressed_label: str = "suppressed",
    source_note: str = "",
    synthetic: bool = False,
):
    """Forest plot of published proportions and their random-effects summary (percent, 0–100).

    Parameters
    ----------
    studies : DataFrame
        One row per study: ``label``, ``estimate``, ``ci_low``, ``ci_high`` (percent), ``weight``
        (percent of the random-effects weight), ``quality`` (a key of :data:`QUALITY_COLOURS`),
        ``flag`` (``suppressed`` rows are drawn as a hatched "suppressed" band, never as a value).
    pooled : dict
        ``estimate``, ``ci_low``, ``ci_high``, ``pi_low``, ``pi_high`` (percent; NaN PI: none).

    The square of each study is sized by its weight and coloured by its risk of bias; the
    summary is a diamond over its confidence interval with the prediction interval as a bar
    beneath (Higgins et al. 2009; metafor's ``addpred``). The axis is always 0–100.
    """
    use_house_style()
    k = len(studies)
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 2.4 + 0.34 * (k + 2)))
    low, high = PERCENT_RANGE
    for i, row in enumerate(studies.itertuples(index=False)):
        if row.flag == "suppressed" or pd.isna(row.estimate):
            ax.barh(i, high - low, left=low, height=0.6, color=SUPPRESSED_COLOUR, edgecolor="#444444",
                    hatch=SUPPRESSED_HATCH, linewidth=0.5)
            ax.text(50, i, suppressed_label, ha="center", va="center", fontsize=8,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            continue
        colour = QUALITY_COLOURS.get(str(row.quality), REFERENCE_COLOUR)
        ax.plot([row.ci_low, row.ci_high], [i, i], color="#222222", linewidth=1.1)
        size = 20 + 6 * float(row.weight if pd.notna(row.weight) else 0)
        ax.scatter([row.estimate], [i], s=size, marker="s", color=colour, edgecolor="#222222",
                   linewidth=0.6, zorder=3)
        ax.text(high + 1, i, f"{row.estimate:.0f}% ({row.ci_low:.0f}–{row.ci_high:.0f})  "
                f"{row.weight:.0f}%", ha="left", va="center", fontsize=8)
    y = k + 0.6
    est, lo, hi = pooled["estimate"], pooled["ci_low"], pooled["ci_high"]
    ax.fill([lo, est, hi, est], [y, y - 0.3, y, y + 0.3], color="#222222", zorder=3)
    ax.text(high + 1, y, f"{est:.0f}% ({lo:.0f}–{hi:.0f})", ha="left", va="center", fontsize=8,
            fontweight="bold")
    labels = list(studies["label"].astype(str)) + [pooled_label]
    ticks = list(range(k)) + [y]
    if pd.notna(pooled.get("pi_low")) and pd.notna(pooled.get("pi_high")):
        ax.plot([pooled["pi_low"], pooled["pi_high"]], [y + 0.75, y + 0.75], color="#222222",
                linewidth=2.2, solid_capstyle="butt")
        ax.text(high + 1, y + 0.75, f"({pooled['pi_low']:.0f}–{pooled['pi_high']:.0f})", ha="left",
                va="center", fontsize=8)
        labels.append(prediction_label)
        ticks.append(y + 0.75)
    ax.axvline(est, color="#999999", linestyle=":", linewidth=0.8)
    ax.set_yticks(ticks)
    ax.set_yticklabels([_wrap(t, 30) for t in labels])
    ax.set_ylim(ticks[-1] + 0.6, -0.6)
    ax.set_xlim(low, high)
    ax.set_xlabel(axis_label)
    present = [q for q in QUALITY_COLOURS if q in set(studies["quality"].astype(str))]
    handles = [Patch(facecolor=QUALITY_COLOURS[q], edgecolor="#222222", label=quality_labels.get(q, q))
               for q in present]
    fig.subplots_adjust(right=0.78)
    _finish_layout(fig, title, source_note, synthetic, handles=handles)
    fig.subplots_adjust(right=0.78)
    return fig


def plot_funnel(y, se, centre: float, *, title: str, x_label: str, y_label: str,
                quality=None, quality_labels: dict | None = None, source_note: str = "",
                synthetic: bool = False):
    """Funnel plot: each study's transformed estimate against its standard error (inverted axis),
    with the pseudo 95% region ``centre ± 1.96 se`` (Sterne & Egger 2001; metafor's ``funnel``)."""
    use_house_style()
    y, se = np.asarray(y, float), np.asarray(se, float)
    quality = list(quality) if quality is not None else ["none"] * len(y)
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 4.8))
    top = float(np.nanmax(se)) * 1.1 if len(se) else 1.0
    grid = np.linspace(0, top, 50)
    ax.fill_betweenx(grid, centre - 1.96 * grid, centre + 1.96 * grid, color="#EEEEEE", zorder=0)
    ax.plot(centre - 1.96 * grid, grid, color="#767676", linewidth=0.8, linestyle="--")
    ax.plot(centre + 1.96 * grid, grid, color="#767676", linewidth=0.8, linestyle="--")
    ax.axvline(centre, color="#222222", linewidth=1)
    for value, error, q in zip(y, se, quality):
        ax.scatter([value], [error], s=36, color=QUALITY_COLOURS.get(str(q), REFERENCE_COLOUR),
                   edgecolor="#222222", linewidth=0.6, zorder=3)
    ax.set_ylim(top, 0)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    labels = quality_labels or {}
    handles = [Patch(facecolor=QUALITY_COLOURS[q], edgecolor="#222222", label=labels.get(q, q))
               for q in QUALITY_COLOURS if q in set(map(str, quality))]
    _finish_layout(fig, title, source_note, synthetic, handles=handles)
    return fig


def plot_evidence_map(table: pd.DataFrame, *, rows: list, columns: list, title: str,
                      row_labels: dict, column_labels: dict, quality_labels: dict,
                      legend_title: str, source_note: str = "", synthetic: bool = False):
    """Evidence and gap map: a bubble per cell sized by the number of studies, coloured by the best
    quality rating; empty cells stay empty (the gaps), as Campbell evidence-and-gap maps draw them.

    ``table`` has ``row``, ``column``, ``studies`` and ``best_quality`` (every cell, empty ones too).
    """
    use_house_style()
    lookup = {(str(r.row), str(r.column)): r for r in table.itertuples(index=False)}
    largest = max(int(table["studies"].max()) if len(table) else 1, 1)
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 2.6 + 0.4 * len(rows)))
    for i, r in enumerate(rows):
        for j, c in enumerate(columns):
            cell = lookup.get((str(r), str(c)))
            ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor="white", edgecolor="#DDDDDD", linewidth=0.6))
            if cell is None or int(cell.studies) == 0:
                continue
            area = 60 + 520 * int(cell.studies) / largest
            ax.scatter([j + 0.5], [i + 0.5], s=area, color=QUALITY_COLOURS.get(str(cell.best_quality)),
                       edgecolor="#222222", linewidth=0.6, zorder=3)
            ax.text(j + 0.5, i + 0.5, str(int(cell.studies)), ha="center", va="center", fontsize=8,
                    zorder=4, color="black")
    ax.set_xlim(0, len(columns))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks(np.arange(len(columns)) + 0.5)
    ax.set_xticklabels([_wrap(column_labels.get(c, c), 14) for c in columns], fontsize=8)
    ax.set_yticks(np.arange(len(rows)) + 0.5)
    ax.set_yticklabels([_wrap(row_labels.get(r, r), 34) for r in rows], fontsize=8)
    ax.tick_params(length=0)
    ax.grid(False)
    present = set(table.loc[table["studies"] > 0, "best_quality"].astype(str))
    handles = [Patch(facecolor=QUALITY_COLOURS[q], edgecolor="#222222", label=quality_labels.get(q, q))
               for q in QUALITY_COLOURS if q in present]
    _finish_layout(fig, title, source_note, synthetic, handles=handles)
    if handles:
        fig.legends[-1].set_title(legend_title)
    return fig
