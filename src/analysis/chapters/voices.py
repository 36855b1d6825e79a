"""Chapter 8 · Voices: what people said — theme shares, agreement between coders, consented quotes.

One run per group × country. The coded free text comes from processed sources of
``kind: coding`` (:mod:`analysis.sources.coding`) whose survey is one of the run's sources; the
statistics from :mod:`analysis.voices` (agreement, consensus and theme shares, quotes); every
word a reader sees from ``params/voices.yml`` and the codebook (``params/codebooks/``).

What the chapter publishes, and how it is protected:

- theme shares of the group and its reference (and crossed with one more dimension), design-
  based on the survey, suppressed below ``suppress_below`` respondents in the cell *or*
  mentioning the theme (:func:`analysis.voices.themes.theme_shares`);
- agreement between the independent coders per theme and per code (result schema: indicator
  ``coder_agreement_alpha`` | ``coder_agreement_kappa`` | ``coder_percent_agreement``,
  breakdown ``theme`` | ``code``), computed on every coded response of the country; themes whose
  alpha is below the threshold are marked tentative;
- two or three quotes per leading theme from consenting members of the group, scrubbed, with at
  most the group and the country attached (:func:`analysis.voices.quotes.select_quotes`);
- counts of redactions by kind, never the text removed;
- the findings the front page shows in each theme's "Voices" section (``findings.json`` beside
  the page, :func:`voices_findings`): every theme's share for the group with its interval, n and
  agreement, whether it meets the front page's rules (ok estimate, agreement at or above the
  threshold) and one or two of the page's quotes whose group × country cell has at least
  ``suppress_below`` coded respondents. The items carry numbers, not sentences: the front page
  writes them in its own language (``front.voices.*`` in ``params/text.yml``), and they have no
  ``text`` key, so the front page's list of chapter findings does not repeat them.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import config, figures, tables
from analysis.chapters.common import COMPARISON, ChapterError, ChapterRun
from analysis.text import text

VOICES_FILE_NAME = "voices.yml"
AGREEMENT_INDICATORS = {"alpha": "coder_agreement_alpha", "kappa": "coder_agreement_kappa",
                        "percent_agreement": "coder_percent_agreement"}


def translated(path: Path) -> Path:
    """``name.<lang>.yml`` beside ``name.yml`` when the report language (``ANALYSIS_LANG``, see
    :mod:`analysis.text`) is not English and that translated copy exists; else, for a file of
    ``params/``, its copy in the run's translated catalogue (:func:`analysis.config.catalogue_file`);
    else ``path``."""
    from analysis.text import DEFAULT_LANGUAGE, language

    lang = language()
    candidate = path.with_name(f"{path.stem}.{lang}{path.suffix}")
    if lang != DEFAULT_LANGUAGE and candidate.exists():
        return candidate
    try:
        name = Path(path).resolve().relative_to(config.PARAMS_DIR.resolve()).as_posix()
    except ValueError:
        return path
    return config.catalogue_file(name) if lang != DEFAULT_LANGUAGE else path


def load_voices_config(path: Path | str | None = None) -> dict:
    """``params/voices.yml`` (or its translated copy): ``settings`` and ``labels`` of the chapter."""
    path = Path(path) if path else translated(config.PARAMS_DIR / VOICES_FILE_NAME)
    data = config.read_yaml_mapping(path, ChapterError, "Voices chapter file")
    if "labels" not in data or "settings" not in data:
        raise ChapterError(f"{path}: needs the keys 'settings' and 'labels'")
    return data


@dataclass
class VoicesRun:
    """One Voices run: the chapter run, its coding source, codebook, settings and labels."""

    run: ChapterRun
    source: str
    survey: str
    coded: pd.DataFrame  # the country's coded table, with COMPARISON
    frame: pd.DataFrame  # the survey (withdrawn respondents removed), with COMPARISON
    codebook: object
    resolved_coder: str | None
    settings: dict
    labels: dict
    log: dict = field(default_factory=dict)
    intersect: str | None = None
    scrubber: object = None

    @property
    def coders(self) -> list[str]:
        """The independent coders (the resolved coder's adjudication is not a coding)."""
        return sorted(c for c in self.coded["coder"].dropna().astype(str).unique() if c != self.resolved_coder)

    @property
    def theme_labels(self) -> dict[str, str]:
        from analysis.voices.codebook import theme_labels

        return theme_labels()

    def label(self, key: str, **values) -> str:
        return str(self.labels[key]).format(**values).strip()


def coding_sources(processed_dir, surveys) -> list[str]:
    """Processed ``kind: coding`` sources whose survey is one of ``surveys``."""
    import pyarrow.parquet as pq

    folder = Path(processed_dir) if processed_dir else config.PROCESSED_DIR
    out = []
    for path in sorted(folder.glob("*.parquet")):
        meta = json.loads((pq.read_schema(path).metadata or {}).get(b"analysis", b"{}") or b"{}")
        source = meta.get("source") or {}
        if source.get("kind") == "coding" and source.get("survey") in set(surveys):
            out.append(path.stem)
    return out


def start_voices(run: ChapterRun, *, alpha_threshold: float | None = None, seed: int | None = None,
                 quotes_per_theme: int | None = None, config_file=None) -> VoicesRun:
    """Load the coded free text of the run's group × country (first coding source of its surveys).

    Raises
    ------
    ChapterError
        No group; no processed coding source codes any of the run's surveys.
    """
    from analysis.chapters.group_profile import with_comparison
    from analysis.sources import load_processed
    from analysis.voices.codebook import codebook_path, load_codebook
    from analysis.voices.scrub import Scrubber

    if run.group is None:
        raise ChapterError(f"chapter {run.chapter}: this chapter needs a group; set the parameter 'group'")
    voices_config = load_voices_config(config_file)
    settings = dict(voices_config["settings"])
    for key, value in (("alpha_threshold", alpha_threshold), ("seed", seed), ("quotes_per_theme", quotes_per_theme)):
        if value is not None:
            settings[key] = value
    found = coding_sources(run.processed_dir, run.sources)
    if not found:
        raise ChapterError(f"chapter {run.chapter}: no processed coding source (kind: coding) codes "
                           f"{', '.join(run.sources)}; ingest one (python -m analysis ingest)")
    source = found[0]
    coded = load_processed(source, run.processed_dir)
    meta = coded.attrs.get("source") or {}
    survey = meta.get("survey")
    if run.country and run.country != "all":
        coded = coded[coded["country"].astype("string") == run.country].reset_index(drop=True)
    coded = coded.assign(**{COMPARISON: run.group.assign(coded)})
    frame = with_comparison(run, survey)
    log_path = Path(run.processed_dir or config.PROCESSED_DIR) / f"{source}.log.json"
    log = json.loads(log_path.read_text(encoding="utf-8")) if log_path.exists() else {}
    intersect = next((d for d in settings.get("intersect_with", []) if d != run.group.dimension
                      and d in frame.columns and frame[d].dropna().nunique() >= 2), None)
    return VoicesRun(run=run, source=source, survey=survey, coded=coded, frame=frame,
                     codebook=load_codebook(translated(codebook_path(meta.get("codebook")))),
                     resolved_coder=meta.get("resolved_coder"),
                     settings=settings, labels=voices_config["labels"], log=log, intersect=intersect,
                     scrubber=Scrubber())


# --------------------------------------------------------------------------------------------
# Theme shares


def consensus_rule(voices: VoicesRun) -> str:
    if voices.resolved_coder:
        return voices.label("consensus_resolved", coder=voices.resolved_coder)
    return voices.label("consensus_majority")


def voices_theme_shares(voices: VoicesRun) -> pd.DataFrame:
    """Share of coded respondents mentioning each theme: group, reference, and by the intersection."""
    from analysis.voices.themes import respondent_themes, theme_shares

    themes = respondent_themes(voices.coded, voices.codebook, voices.resolved_coder)
    by = [COMPARISON] + ([voices.intersect] if voices.intersect else [])
    # the group and its reference, and crossed with the intersection (no overall margin: with it,
    # a suppressed reference would force the group's share to be withheld too)
    published = [COMPARISON] + ([tables.join_cell(by)] if voices.intersect else [])
    shares = theme_shares(voices.frame, themes, by=by, source=voices.source, country=voices.run.country,
                          group=voices.run.group_id, consensus_rule=consensus_rule(voices), breakdowns=published)
    from analysis.chapters.common import protect_coded  # the cross-table plan (docs/disclosure.md)
    from analysis.voices.themes import INDICATOR_PREFIX, with_themes

    return protect_coded(voices.run, shares, with_themes(voices.frame, themes), voices.source,
                         [c for c in themes.columns if c.startswith(INDICATOR_PREFIX)], "theme_shares")


def _published_group_shares(shares: pd.DataFrame) -> pd.DataFrame:
    rows = shares[(shares["breakdown"] == COMPARISON) & (shares["cell"] == "group")
                  & (shares["flag"] != "suppressed") & shares["estimate"].notna()]
    return rows.sort_values("estimate", ascending=False, kind="stable")


def _pct(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{float(value) * 100:.0f}%"


def voices_summary(voices: VoicesRun, shares: pd.DataFrame) -> str:
    """One sentence: the group's most mentioned theme, with its CI, against the reference."""
    from analysis.voices.themes import theme_of_indicator

    run = voices.run
    top = _published_group_shares(shares)
    if top.empty:
        return voices.label("summary_none", group=run.group_label, country=run.country_label)
    row = top.iloc[0]
    ref = shares[(shares["breakdown"] == COMPARISON) & (shares["cell"] == "reference")
                 & (shares["indicator"] == row["indicator"])]
    ref_share = _pct(ref["estimate"].iloc[0]) if len(ref) and ref["flag"].iloc[0] != "suppressed" else \
        voices.label("suppressed")
    theme = voices.theme_labels.get(theme_of_indicator(row["indicator"]), row["indicator"])
    return voices.label("summary", group=run.group_label, country=run.country_label, theme=theme.lower(),
                        share=_pct(row["estimate"]), low=_pct(row["ci_low"]), high=_pct(row["ci_high"]),
                        reference_share=ref_share, reference=run.reference_label.lower())


def voices_method_note(voices: VoicesRun) -> str:
    """The consensus rule and the denominator, stated on the page."""
    n = int(voices.coded.loc[voices.coded[COMPARISON].notna(), "response_id"].nunique())
    return consensus_rule(voices) + " " + voices.label("denominator", n=n,
                                                       withdrawn=voices.log.get("withdrawn_respondents", 0))


def voices_figure(voices: VoicesRun, shares: pd.DataFrame) -> figures.SavedFigure:
    """Bars with 95% CIs: each theme's share for the group and the reference (suppression drawn)."""
    from analysis.voices.themes import theme_of_indicator

    run = voices.run
    shown = shares[shares["breakdown"] == COMPARISON].copy()
    for column in ("estimate", "ci_low", "ci_high"):
        shown[column] = shown[column].astype(float) * 100.0
    labels = {ind: voices.theme_labels.get(theme_of_indicator(ind), ind) for ind in shown["indicator"].unique()}
    title = voices.label("figure_title", group=run.group_label, reference=run.reference_label.lower(),
                         country=run.country_label)
    colours = figures.series_colours(["group", "reference"], catalogue_order=["group"])
    colours["group"] = figures.series_colours([run.group_id], list(run.groups))[run.group_id]
    source_note = text("voices.source_note", survey=run.source_title(voices.survey), coded=voices.source)
    fig, described = figures.plot_estimates(
        shown, item_column="indicator", series_column="cell", title=title, value_label=voices.label("value_label"),
        item_labels=labels, series_order=["group", "reference"],
        series_labels={"group": run.group_label, "reference": run.reference_label}, colours=colours,
        source_note=source_note, synthetic=run.synthetic)
    alt = voices_finding(voices, shares) + " " + described
    caption = voices.label("figure_caption", title=title, survey=run.source_title(voices.survey),
                           source=source_note.rstrip("."))
    return figures.save_figure(fig, run.figures_dir, f"voices_theme_shares_{voices.source}", alt, caption=caption)


def voices_finding(voices: VoicesRun, shares: pd.DataFrame) -> str:
    """The finding the figure shows, for its alt text: the leading theme and the largest gap."""
    from analysis.voices.themes import theme_of_indicator

    run = voices.run
    top = _published_group_shares(shares)
    if top.empty:
        return voices.label("summary_none", group=run.group_label, country=run.country_label)
    theme = voices.theme_labels.get(theme_of_indicator(top.iloc[0]["indicator"]), "")
    text = voices.label("alt_finding", group=run.group_label, theme=theme.lower(), share=_pct(top.iloc[0]["estimate"]))
    pairs = shares[shares["breakdown"] == COMPARISON].pivot_table(index="indicator", columns="cell",
                                                                    values="estimate", aggfunc="first")
    if {"group", "reference"} <= set(pairs.columns):
        gaps = (pairs["group"] - pairs["reference"]).dropna()
        if len(gaps):
            ind = gaps.abs().idxmax()
            text += " " + voices.label("alt_gap", reference=run.reference_label.lower(),
                                       theme=voices.theme_labels.get(theme_of_indicator(ind), ind).lower(),
                                       gap=f"{gaps[ind] * 100:+.0f}")
    return text


# --------------------------------------------------------------------------------------------
# Agreement


def _theme_level(coded: pd.DataFrame, codebook) -> pd.DataFrame:
    """Codings with each thematic code replaced by its theme (specials kept: the answer was coded)."""
    theme_of = {k: c.theme for k, c in codebook.codes.items()}
    return coded.assign(code=coded["code"].map(lambda c: theme_of.get(c) or c))


def voices_agreement(voices: VoicesRun) -> pd.DataFrame:
    """Agreement between the independent coders per theme and per code, in the result schema.

    Computed on every coded response of the country (not only the group's): agreement is a
    property of the coding, and more responses make it more precise. Rows with fewer than
    ``suppress_below`` responses coded by two or more coders are suppressed.
    """
    from analysis.disclosure import primary_suppression
    from analysis.voices.agreement import OVERALL, agreement_table

    coded = voices.coded[voices.coded["coder"].astype(str).isin(voices.coders)]
    if coded.empty or len(voices.coders) < 2:
        return tables.empty_result()
    settings = voices.settings
    replicates, seed = int(settings.get("bootstrap_replicates", 1000)), int(settings.get("seed", 0))
    codes = [k for k, c in voices.codebook.codes.items() if c.theme]
    parts = []
    for breakdown, table in (
        ("theme", agreement_table(_theme_level(coded, voices.codebook), voices.codebook.themes,
                                  replicates=replicates, seed=seed, overall=False)),
        ("code", agreement_table(coded, codes, replicates=replicates, seed=seed, overall=True)),
    ):
        kappa = "cohen_kappa" if len(voices.coders) == 2 else "fleiss_kappa"
        for _, row in table.iterrows():
            cell = "all" if row["code"] == OVERALL else row["code"]
            common = {"source": voices.source, "country": voices.run.country, "group": voices.run.group_id,
                      "breakdown": "all" if cell == "all" else breakdown, "cell": cell,
                      "n_unweighted": int(row["n_units"]), "n_weighted": np.nan, "flag": "ok"}
            method = f"{row['method']}; {len(voices.coders)} independent coders; every coded response in the country"
            parts.append({**common, "indicator": AGREEMENT_INDICATORS["alpha"], "estimate": row["alpha"],
                          "se": np.nan, "ci_low": row["alpha_ci_low"], "ci_high": row["alpha_ci_high"],
                          "method": method})
            parts.append({**common, "indicator": AGREEMENT_INDICATORS["percent_agreement"],
                          "estimate": row["percent_agreement"], "se": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                          "method": method})
            if cell != "all":
                parts.append({**common, "indicator": AGREEMENT_INDICATORS["kappa"], "estimate": row[kappa],
                              "se": row["cohen_kappa_se"] if kappa == "cohen_kappa" else np.nan,
                              "ci_low": row["kappa_ci_low"], "ci_high": row["kappa_ci_high"],
                              "method": method.replace("Krippendorff's alpha (nominal) of apply/not-apply per code; ",
                                                       "")})
        if breakdown == "theme":
            parts = [p for p in parts if not (p["breakdown"] == "all" and p["cell"] == "all")]
    out = tables.conform(pd.DataFrame(parts))
    return primary_suppression(out)


def _alpha_text(row) -> str:
    if row is None or row["flag"] == "suppressed" or pd.isna(row["estimate"]):
        return "—"
    ci = ""
    if pd.notna(row["ci_low"]) and pd.notna(row["ci_high"]):
        ci = f" ({row['ci_low']:.2f}–{row['ci_high']:.2f})"
    return f"{row['estimate']:.2f}{ci}"


def voices_theme_table(voices: VoicesRun, shares: pd.DataFrame, agreement: pd.DataFrame):
    """(display frame, caption): per theme the group's and reference's shares, alpha, tentative mark."""
    from analysis.voices.themes import theme_indicator

    run = voices.run
    threshold = float(voices.settings.get("alpha_threshold", 0.667))
    cmp = shares[shares["breakdown"] == COMPARISON]
    rows = []
    for theme in voices.codebook.themes:
        def share(cell, theme=theme):
            hit = cmp[(cmp["indicator"] == theme_indicator(theme)) & (cmp["cell"] == cell)]
            if hit.empty:
                return "—"
            r = hit.iloc[0]
            if r["flag"] == "suppressed" or pd.isna(r["estimate"]):
                return voices.label("suppressed")
            return f"{_pct(r['estimate'])} ({_pct(r['ci_low'])}–{_pct(r['ci_high'])})" + ("*" if r["flag"] == "caution" else "")
        alpha = agreement[(agreement["indicator"] == AGREEMENT_INDICATORS["alpha"])
                          & (agreement["breakdown"] == "theme") & (agreement["cell"] == theme)]
        alpha_row = alpha.iloc[0] if len(alpha) else None
        value = alpha_row["estimate"] if alpha_row is not None else np.nan
        mark = "" if pd.isna(value) else (voices.label("tentative", threshold=threshold) if value < threshold
                                          else voices.label("reliable", threshold=threshold))
        rows.append({voices.label("theme"): voices.theme_labels.get(theme, theme),
                     voices.label("share_group", group=run.group_label): share("group"),
                     voices.label("share_reference", reference=run.reference_label): share("reference"),
                     voices.label("alpha"): _alpha_text(alpha_row), "": mark})
    caption = voices.label("agreement_caption", country=run.country_label, threshold=threshold)
    return pd.DataFrame(rows), caption


def voices_code_agreement_table(voices: VoicesRun, agreement: pd.DataFrame):
    """(display frame, caption): every code's agreement statistics and how many disagreements to resolve."""
    from analysis.voices.agreement import disagreements

    coded = voices.coded[voices.coded["coder"].astype(str).isin(voices.coders)]
    codes = [k for k, c in voices.codebook.codes.items() if c.theme]
    open_items = disagreements(coded, codes)["code"].value_counts() if len(coded) else pd.Series(dtype=int)
    per = agreement[agreement["breakdown"].isin(["code", "all"])]
    threshold = float(voices.settings.get("alpha_threshold", 0.667))
    rows = []
    for code in [*codes, "all"]:
        part = per[per["cell"] == code]
        get = {ind: (part[part["indicator"] == name].iloc[0] if (part["indicator"] == name).any() else None)
               for ind, name in AGREEMENT_INDICATORS.items()}
        kappa = get["kappa"]
        kappa_text = "—" if kappa is None or pd.isna(kappa["estimate"]) else (
            f"{kappa['estimate']:.2f}" + (f" ({kappa['se']:.2f})" if pd.notna(kappa["se"]) else ""))
        pct = get["percent_agreement"]
        n = get["alpha"]["n_unweighted"] if get["alpha"] is not None else pd.NA
        value = get["alpha"]["estimate"] if get["alpha"] is not None else np.nan
        mark = "" if pd.isna(value) else (voices.label("tentative", threshold=threshold) if value < threshold
                                          else voices.label("reliable", threshold=threshold))
        rows.append({
            voices.label("code"): voices.label("all_codes") if code == "all" else voices.codebook.codes[code].label,
            voices.label("alpha"): _alpha_text(get["alpha"]),
            voices.label("kappa" if len(voices.coders) == 2 else "fleiss"): "—" if code == "all" else kappa_text,
            voices.label("percent_agreement"): "—" if pct is None or pd.isna(pct["estimate"]) else _pct(pct["estimate"]),
            voices.label("units"): "—" if pd.isna(n) else str(int(n)),
            voices.label("to_resolve"): str(int(open_items.sum() if code == "all" else open_items.get(code, 0))),
            "": mark,
        })
    n_units = int(voices.coded["response_id"].nunique())
    caption = voices.label("code_agreement_caption", country=voices.run.country_label, coders=len(voices.coders),
                           units=n_units)
    return pd.DataFrame(rows), caption


# --------------------------------------------------------------------------------------------
# Quotes


def voices_quotes(voices: VoicesRun, shares: pd.DataFrame) -> pd.DataFrame:
    """Quotes for the group's leading themes (published shares, highest first)."""
    from analysis.disclosure import resolve_thresholds
    from analysis.voices.quotes import select_quotes
    from analysis.voices.themes import theme_of_indicator

    leading = [theme_of_indicator(i) for i in _published_group_shares(shares)["indicator"]]
    leading = leading[: int(voices.settings.get("leading_themes", 3))]
    members = voices.coded[voices.coded[COMPARISON] == "group"]
    people = members.drop_duplicates("response_id").set_index("response_id")
    balance = people[voices.intersect].astype("string") if voices.intersect else None
    attribution = pd.Series(voices.run.group_label, index=people.index)
    return select_quotes(members, voices.codebook, leading, balance=balance, attribution=attribution,
                         per_theme=int(voices.settings.get("quotes_per_theme", 3)),
                         seed=int(voices.settings.get("seed", 0)),
                         suppress_below=resolve_thresholds(None).suppress_below,
                         resolved_coder=voices.resolved_coder, scrubber=voices.scrubber)


def show_quotes(voices: VoicesRun, quotes: pd.DataFrame):
    """The quotes as HTML block quotes under each theme, with the rules they follow."""
    from IPython.display import HTML

    from analysis.disclosure import resolve_thresholds

    threshold = resolve_thresholds(None).suppress_below
    if not (voices.log.get("quote_consent_column")):
        return HTML(f"<p>{html.escape(voices.label('no_consent_column'))}</p>")
    balance = voices.run.dimensions.get(voices.intersect).label if voices.intersect in voices.run.dimensions else ""
    parts = [f"<p>{html.escape(voices.label('quotes_rules', threshold=threshold, seed=voices.settings.get('seed'), balance=str(balance).lower()))}</p>"]
    if quotes.empty:
        parts.append(f"<p>{html.escape(voices.label('no_quotes'))}</p>")
    languages = voices.labels.get("languages", {})
    for theme, part in quotes.groupby("theme", sort=False):
        parts.append(f"<h3>{html.escape(voices.label('quotes_heading', theme=voices.theme_labels.get(theme, theme)))}</h3>")
        for row in part.itertuples(index=False):
            if row.attribution_group:
                who = voices.label("attribution", group=row.attribution_group,
                                   country=voices.run.country_label)
            else:
                who = voices.label("attribution_withheld", threshold=threshold)
            lang = str(row.language) if row.language else ""
            note = f" {voices.label('quote_language', language=languages.get(lang, lang))}" if lang else ""
            # the quote in its own language and direction; the attribution in the page's
            parts.append(f'<blockquote><p lang="{html.escape(lang)}" dir="auto">{html.escape(row.quote)}</p>'
                         f"<footer>{html.escape(who + note)}</footer></blockquote>")
    return HTML("\n".join(parts))


def voices_redactions(voices: VoicesRun):
    """(display frame, caption): redactions by kind, at ingest (every answer) and in the quotes shown."""
    counts = dict(voices.log.get("redactions") or {})
    for kind, n in voices.scrubber.log().items():
        counts[kind] = counts.get(kind, 0) + n
    kinds = voices.labels.get("redaction_kinds", {})
    frame = pd.DataFrame([{voices.label("kind"): kinds.get(k, k), voices.label("count"): str(n)}
                          for k, n in sorted(counts.items())])
    if frame.empty:
        frame = pd.DataFrame({voices.label("kind"): [], voices.label("count"): []})
    return frame, voices.label("redactions_caption")


# --------------------------------------------------------------------------------------------
# Findings for the front page

#: ``kind`` of the items in a Voices run's ``findings.json``.
FINDING_KIND = "voices"


def _as_published(value) -> float | None:
    # the number as the saved table holds it (tables.write_csv writes 10 significant digits), so
    # that a finding equals the row it cites in all_estimates.csv
    return None if value is None or pd.isna(value) else float(f"{float(value):.10g}")


def voices_findings(voices: VoicesRun, shares: pd.DataFrame, agreement: pd.DataFrame,
                    quotes: pd.DataFrame) -> list[dict]:
    """One item per theme of the codebook for the front page's Voices sections.

    Each item holds the group's share of coded respondents mentioning the theme (estimate,
    95% CI, n, flag: the ``comparison``/``group`` row of ``shares``), the theme's Krippendorff's
    alpha between the independent coders (the ``theme`` row of ``agreement``), the threshold, and
    ``shown``/``reason`` — the front page's rules, applied here where the numbers are made:

    1. only shares flagged ``ok`` (``reason: "flag"`` otherwise: caution or suppressed);
    2. only themes whose alpha is published and at least ``alpha_threshold`` (``"agreement"``;
       Krippendorff (2004) p. 241: 0.667 is the lowest for tentative conclusions);
    3. quotes (at most ``front_page_quotes`` of the chapter's own, in their order) only when the
       group × country cell has at least ``suppress_below`` coded respondents, each with only
       the group's label and the country attached.

    Nothing else about a respondent is written: no id, no case variable.
    """
    from analysis.disclosure import resolve_thresholds
    from analysis.voices.themes import theme_indicator

    run = voices.run
    threshold = float(voices.settings.get("alpha_threshold", 0.667))
    per_theme = int(voices.settings.get("front_page_quotes", 2))
    limit = resolve_thresholds(None).suppress_below
    members = voices.coded.loc[voices.coded[COMPARISON] == "group", "response_id"].nunique()
    attributable = members >= limit
    group_rows = shares[(shares["breakdown"] == COMPARISON) & (shares["cell"] == "group")]
    alphas = agreement[(agreement["indicator"] == AGREEMENT_INDICATORS["alpha"])
                       & (agreement["breakdown"] == "theme")] if len(agreement) else agreement
    items = []
    for theme in voices.codebook.themes:
        indicator = theme_indicator(theme)
        share = group_rows[group_rows["indicator"] == indicator]
        alpha = alphas[alphas["cell"] == theme] if len(alphas) else alphas
        row = share.iloc[0] if len(share) else None
        a = alpha.iloc[0] if len(alpha) else None
        flag = str(row["flag"]) if row is not None else "suppressed"
        alpha_value = None if a is None or a["flag"] == "suppressed" else _as_published(a["estimate"])
        reason = ("flag" if flag != "ok" or row is None or pd.isna(row["estimate"]) else
                  "agreement" if alpha_value is None or alpha_value < threshold else "ok")
        chosen = []
        if reason == "ok" and attributable and len(quotes):
            part = quotes[(quotes["theme"] == theme) & quotes["attribution_group"].notna()]
            chosen = [{"quote": q.quote, "group": q.attribution_group, "country": q.attribution_country,
                       "language": q.language} for q in part.head(per_theme).itertuples(index=False)]
        items.append({
            "kind": FINDING_KIND, "theme": theme, "indicator": indicator, "source": voices.source,
            "survey": voices.survey, "group": run.group_id, "country": run.country,
            "breakdown": COMPARISON, "cell": "group", "flag": flag,
            "estimate": _as_published(row["estimate"]) if row is not None else None,
            "ci_low": _as_published(row["ci_low"]) if row is not None else None,
            "ci_high": _as_published(row["ci_high"]) if row is not None else None,
            "n_unweighted": None if row is None or pd.isna(row["n_unweighted"]) else int(row["n_unweighted"]),
            "alpha": alpha_value,
            "alpha_ci_low": None if alpha_value is None else _as_published(a["ci_low"]),
            "alpha_ci_high": None if alpha_value is None else _as_published(a["ci_high"]),
            "alpha_threshold": threshold, "shown": reason == "ok", "reason": reason,
            # whether the group x country cell allows quotes their attribution (a yes or no: the
            # cell's count beside the share's n would give the not-codable answers by difference)
            "quotes_attributable": bool(attributable),
            "quotes": chosen,
        })
    return items


def write_findings(voices: VoicesRun, items: list[dict]) -> Path:
    """``<output_dir>/findings.json``: the run's Voices findings for the front page."""
    from analysis.atomic import write_atomic

    path = voices.run.output_dir / "findings.json"
    return write_atomic(path, json.dumps(items, indent=1, ensure_ascii=False) + "\n")


def save_quotes(voices: VoicesRun, quotes: pd.DataFrame) -> Path:
    """The quotes shown, for the report's appendix (``quotes/quotes.csv``; no ids, no case variables)."""
    folder = voices.run.output_dir / "quotes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"quotes_{voices.source}.csv"
    tables.write_text_csv(quotes, path)  # quotes are partners' free text: formula cells neutralised
    return path
