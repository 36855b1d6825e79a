"""Chapter 7 · Evidence from partner studies: the evidence and gap map, quality, pooled estimates.

Runs once over every ``kind: study`` source of the report (published aggregates of partner
studies, :mod:`analysis.sources.studies`) and, for the comparison, the report's microdata
sources. The statistics come from :mod:`analysis.evidence`; this module prepares what is
saved and shown, with every word from ``params/evidence.yml`` and the catalogues.

Choices (stated in the chapter's method column and here):

- pooling on the logit scale (metafor's 0.5 rule for zero cells), τ² by REML, Knapp–Hartung
  intervals (t, k − 1 df; better coverage than Wald with few studies, IntHout et al. 2014), and
  the prediction interval of metafor under Knapp–Hartung (t, k − 1 df);
- every indicator × group × country with at least two studies is pooled; under three studies
  the pooled estimate is flagged ``caution``; from convenience samples only, the method says so;
- disclosure: published estimates are public, but the report's rule still applies to every row
  it shows: a study estimate with n below ``suppress_below`` is suppressed in tables and figures
  (it still enters the pooled estimate, whose n is the sum over studies).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import evidence, figures, tables
from analysis.chapters.common import ChapterError, ChapterRun, country_name, markdown_text
from analysis.schema import load_dimensions, load_groups, load_indicators

#: Pooling settings of the chapter (see the module docstring).
METHOD, TEST, TRANSFORM = "REML", "knha", "logit"
#: Funnel plots are drawn for cells with at least this many studies (Sterne et al. 2011 advise
#: against reading asymmetry from fewer than ten; with five the plot still shows the spread).
FUNNEL_MIN_STUDIES = 5


@dataclass
class EvidenceRun(ChapterRun):
    """A chapter run over study sources: the map's groups and countries and the label catalogue."""

    evidence_groups: list = field(default_factory=list)
    evidence_countries: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)


def start_evidence(chapter: str, sources, processed_dir=None, output_dir=".", countries=None,
                   groups=None) -> tuple[EvidenceRun, pd.DataFrame]:
    """Load every study source of the run and the catalogues; the studies stacked in one frame.

    Raises
    ------
    ChapterError
        When none of ``sources`` is a processed ``kind: study`` source.
    """
    from analysis.sources import load_processed

    frames, parts = {}, []
    for name in list(sources or []):
        frame = load_processed(name, processed_dir)
        if (frame.attrs.get("source") or {}).get("kind") != "study":
            continue
        frames[name] = frame
        parts.append(frame)
    if not parts:
        raise ChapterError(f"chapter {chapter}: none of the sources {list(sources or [])} is a study "
                           "source (kind: study); add one to params/sources/ and run `python -m analysis ingest`")
    figures.use_house_style()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    catalogue = load_groups()
    studies = pd.concat(parts, ignore_index=True)
    keep_groups = list(groups) if groups else list(catalogue)
    keep_countries = list(countries) if countries else sorted(set(studies["country"].astype(str)))
    run = EvidenceRun(chapter=chapter, group_id=None, country=None, sources=list(frames),
                      output_dir=output_dir, processed_dir=Path(processed_dir) if processed_dir else None,
                      frames=frames, indicators=load_indicators(), groups=catalogue,
                      dimensions=load_dimensions(), evidence_groups=keep_groups,
                      evidence_countries=keep_countries, labels=evidence.load_labels())
    studies = studies[studies["group"].isin(keep_groups) & studies["country"].isin(keep_countries)]
    return run, studies.reset_index(drop=True)


def _labels(run: EvidenceRun) -> dict:
    return run.labels


def _theme_labels(run: EvidenceRun) -> dict:
    """Theme id -> label, from the indicator catalogue's ``themes:``."""
    from analysis import config

    data = config.read_yaml_mapping(config.INDICATORS_FILE, ChapterError, "indicator catalogue")
    return {k: (v or {}).get("label", k) for k, v in (data.get("themes") or {}).items()}


def _group_labels(run: EvidenceRun) -> dict:
    return {g: spec.label for g, spec in run.groups.items()}


# --------------------------------------------------------------------------------------------
# Evidence and gap map


def evidence_map(run: EvidenceRun, studies: pd.DataFrame, **filters) -> pd.DataFrame:
    """Theme × group × country of the report, every cell present (:func:`analysis.evidence.evidence_gap_map`)."""
    themes = list(dict.fromkeys(spec.theme for spec in run.indicators.values()))
    return evidence.evidence_gap_map(studies, run.indicators, run.evidence_groups,
                                     run.evidence_countries, themes=themes, **filters)


def map_display(run: EvidenceRun, table: pd.DataFrame) -> pd.DataFrame:
    """The accessible table beside the map figure: a row per group × country, a column per theme,
    each cell "studies (participants)" and its best quality; empty cells say so (gaps)."""
    words, themes = _labels(run), _theme_labels(run)
    columns = words["columns"]
    rows = []
    for (group, country), part in table.groupby(["group", "country"], sort=False):
        row = {columns["group"]: _group_labels(run).get(group, group), columns["country"]: country_name(country)}
        for entry in part.itertuples(index=False):
            text = "—" if entry.studies == 0 else (
                f"{entry.studies} ({entry.participants:,}); {words['risk_of_bias'][entry.best_quality]}")
            row[themes.get(entry.theme, entry.theme)] = text
        rows.append(row)
    return pd.DataFrame(rows)


def map_figure(run: EvidenceRun, table: pd.DataFrame) -> list:
    """The evidence and gap map as a bubble matrix (rows group × country, columns themes)."""
    words, themes = _labels(run), _theme_labels(run)
    fig_words = words["figures"]
    frame = table.assign(row=table["group"] + "|" + table["country"], column=table["theme"])
    frame = frame.groupby(["row", "column"], sort=False).agg(
        studies=("studies", "sum"), best_quality=("best_quality", evidence.best_quality)).reset_index()
    rows = list(dict.fromkeys(frame["row"]))
    row_labels = {r: f"{_group_labels(run).get(r.split('|')[0], r)} — {country_name(r.split('|')[1])}" for r in rows}
    columns = list(dict.fromkeys(table["theme"]))
    fig = figures.plot_evidence_map(
        frame, rows=rows, columns=columns, title=fig_words["map_title"], row_labels=row_labels,
        column_labels=themes, quality_labels=words["risk_of_bias"], legend_title=fig_words["quality_legend"],
        source_note=fig_words["map_source"], synthetic=run.synthetic)
    filled = frame[frame["studies"] > 0]
    top = filled.sort_values("studies", ascending=False).head(1)
    top_text = (f"{row_labels[top.iloc[0]['row']]}, {themes.get(top.iloc[0]['column'])} "
                f"({int(top.iloc[0]['studies'])})") if len(top) else "—"
    alt = fig_words["map_alt"].format(studies=table["study_ids"].str.split("; ").explode().replace("", np.nan)
                                      .dropna().nunique(),
                                      themes=len(columns), groups=len(set(table["group"])), filled=len(filled),
                                      cells=len(frame), top=top_text)
    return [figures.save_figure(fig, run.figures_dir, "evidence_gap_map", alt, words["chapter"]["map_caption"])]


def write_evidence_workbook(run: EvidenceRun, studies: pd.DataFrame, table: pd.DataFrame) -> Path:
    """``tables/evidence_map.xlsx``: the map, its long form by study (with filters), the map of
    probability samples only and of low-risk studies only, and the quality appraisal."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    from analysis.disclosure import load_thresholds

    by_study = evidence.map_by_study(studies, run.indicators)
    # the report's rule applies to every number it publishes: a study's n below the threshold is blanked
    by_study["n"] = by_study["n"].astype("Float64").mask(by_study["n"] < load_thresholds().suppress_below)
    sheets = {
        "map": table,
        "map_by_study": by_study,
        "map_probability_only": evidence_map(run, studies, sampling=["probability"]),
        "map_low_risk_only": evidence_map(run, studies, risk_of_bias=["low"]),
        "quality": evidence.quality_table(studies),
    }
    path = run.tables_dir / "evidence_map.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    book = Workbook()
    book.remove(book.active)
    for name, frame in sheets.items():
        sheet = book.create_sheet(name)
        sheet.append([str(c) for c in frame.columns])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for values in frame.itertuples(index=False):
            sheet.append([None if (not isinstance(v, str) and pd.isna(v)) else
                          (v.item() if hasattr(v, "item") else v) for v in values])
        sheet.auto_filter.ref = sheet.dimensions  # the workbook's filters (sampling, quality, ...)
        sheet.freeze_panes = "A2"
    book.save(path)
    return path


# --------------------------------------------------------------------------------------------
# Quality appraisal


def quality_html(run: EvidenceRun, studies: pd.DataFrame):
    """The Hoy et al. (2012) appraisal as a traffic-light table: colour *and* the rating written
    in every cell (colour is never the only carrier of meaning)."""
    from IPython.display import HTML

    words = _labels(run)
    table = evidence.quality_table(studies)
    rating_colour = {"low": "#CDEBD9", "high": "#F6C9B3", "unclear": "#FBE3B0", "none": "#E6E6E6"}
    overall_colour = {"low": "#CDEBD9", "moderate": "#FBE3B0", "high": "#F6C9B3", "none": "#E6E6E6"}
    head = [words["columns"]["study_id"], words["columns"]["partner"], words["columns"]["sampling"],
            *[words["hoy_items"][f"hoy_{i}"] for i in range(1, 11)], words["columns"]["risk_of_bias"]]
    esc = html.escape
    body = []
    for row in table.itertuples(index=False):
        cells = [f'<th scope="row">{esc(str(row.study_id))}</th>', f"<td>{esc(str(row.partner))}</td>",
                 f"<td>{esc(words['sampling'].get(row.sampling, row.sampling))}</td>"]
        for i in range(1, 11):
            value = getattr(row, f"hoy_{i}")
            value = value if isinstance(value, str) else "none"  # study without an appraisal
            cells.append(f'<td style="background:{rating_colour[value]}">{esc(words["item_rating"][value])}</td>')
        cells.append(f'<td style="background:{overall_colour[row.risk_of_bias]}"><strong>'
                     f'{esc(words["risk_of_bias"][row.risk_of_bias])}</strong></td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    header = "".join(f'<th scope="col">{esc(h)}</th>' for h in head)
    return HTML(f'<table class="analysis-table"><caption>{esc(words["chapter"]["quality_caption"])}</caption>'
                f"<thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>")


# --------------------------------------------------------------------------------------------
# Pooled estimates, study rows, forest and funnel plots


def pooled_estimates(run: EvidenceRun, studies: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pooled estimates in the result schema (suppressed by the report's rule) and their details."""
    from analysis.disclosure import apply_suppression

    results, details = evidence.pool_evidence(studies, method=METHOD, test=TEST, transform=TRANSFORM,
                                              labels=_labels(run))
    if results.empty:
        return tables.empty_result(), details
    return apply_suppression(tables.conform(results), secondary=False), details


def study_estimates(run: EvidenceRun, studies: pd.DataFrame) -> pd.DataFrame:
    """Every published estimate as a result-schema row, with the report's suppression rule."""
    from analysis.disclosure import apply_suppression

    if studies.empty:
        return tables.empty_result()
    return apply_suppression(tables.conform(evidence.study_rows(studies, transform=TRANSFORM)), secondary=False)


def pooled_display(run: EvidenceRun, pooled: pd.DataFrame, details: pd.DataFrame) -> pd.DataFrame:
    """The pooled estimates with k, heterogeneity, prediction interval and best quality, labelled."""
    words = _labels(run)
    c = words["columns"]
    merged = pooled.merge(details[["indicator", "group", "country", "k", "tau2", "I2", "I2_ci_low", "I2_ci_high",
                                   "Q_p", "pi_low", "pi_high", "best_quality"]], on=["indicator", "group", "country"])
    rows = []
    for r in merged.itertuples(index=False):
        suppressed = r.flag == "suppressed"
        rows.append({
            c["indicator"]: run.indicator_labels.get(r.indicator, r.indicator),
            c["group"]: _group_labels(run).get(r.group, r.group), c["country"]: country_name(r.country),
            c["k"]: str(r.k),
            c["pooled"]: "—" if suppressed else f"{100 * r.estimate:.1f}" + ("*" if r.flag == "caution" else ""),
            c["interval"]: "—" if suppressed else f"{100 * r.ci_low:.1f}–{100 * r.ci_high:.1f}",
            c["prediction"]: "—" if suppressed or pd.isna(r.pi_low) else f"{100 * r.pi_low:.1f}–{100 * r.pi_high:.1f}",
            c["I2"]: f"{r.I2:.0f} ({r.I2_ci_low:.0f}–{r.I2_ci_high:.0f})", c["tau2"]: f"{r.tau2:.3f}",
            c["Q_p"]: f"{r.Q_p:.3f}",
            c["best_quality"]: words["risk_of_bias"][r.best_quality],
        })
    return pd.DataFrame(rows)


def _study_labels(studies: pd.DataFrame) -> dict:
    per = studies.drop_duplicates("study_id").set_index("study_id")
    return {sid: f"{sid} {row['partner']} ({row['year']})" for sid, row in per.iterrows()}


def forest_and_funnel_figures(run: EvidenceRun, studies: pd.DataFrame, study_rows: pd.DataFrame,
                              details: pd.DataFrame) -> list:
    """A forest plot per pooled indicator × group × country (≥ 2 studies) and a funnel plot where
    there are at least :data:`FUNNEL_MIN_STUDIES` studies."""
    words = _labels(run)
    fw = words["figures"]
    names = _study_labels(studies)
    saved = []
    order = {ind: i for i, ind in enumerate(run.indicators)}  # catalogue order: theme by theme
    details = details.assign(_o=details["indicator"].map(order)).sort_values(["_o", "group", "country"])
    for d in details.drop(columns="_o").itertuples(index=False):
        part = studies[(studies["indicator"] == d.indicator) & (studies["group"] == d.group)
                       & (studies["country"] == d.country)]
        fit = evidence.pool(part["events"].to_numpy(float), part["n"].to_numpy(float), transform=TRANSFORM,
                            method=METHOD, test=TEST, q_profile=False)
        shown = study_rows.loc[part.index]
        rows = pd.DataFrame({
            "label": [names[s] for s in part["study_id"]],
            "estimate": 100 * shown["estimate"].to_numpy(float), "ci_low": 100 * shown["ci_low"].to_numpy(float),
            "ci_high": 100 * shown["ci_high"].to_numpy(float), "weight": 100 * fit.weights,
            "quality": part["risk_of_bias"].fillna("none").to_numpy(), "flag": shown["flag"].to_numpy()})
        labels = {"indicator": run.indicator_labels.get(d.indicator, d.indicator),
                  "group": _group_labels(run).get(d.group, d.group), "country": country_name(d.country)}
        pooled = {"estimate": 100 * d.pooled, "ci_low": 100 * d.ci_low, "ci_high": 100 * d.ci_high,
                  "pi_low": 100 * d.pi_low, "pi_high": 100 * d.pi_high}
        method_words = {"estimator": METHOD, "transform": words["method"][f"transform_{TRANSFORM}"]}
        fig = figures.plot_forest(
            rows, pooled, title=fw["forest_title"].format(**labels), axis_label=fw["forest_axis"],
            pooled_label=fw["forest_pooled"], prediction_label=fw["forest_prediction"],
            quality_labels=words["risk_of_bias"], source_note=fw["forest_source"].format(**method_words),
            synthetic=run.synthetic)
        visible = rows[rows["flag"] != "suppressed"]
        alt = fw["forest_alt"].format(k=d.k, low=f"{visible['estimate'].min():.0f}" if len(visible) else "—",
                                      high=f"{visible['estimate'].max():.0f}" if len(visible) else "—",
                                      pooled=f"{pooled['estimate']:.0f}", ci_low=f"{pooled['ci_low']:.0f}",
                                      ci_high=f"{pooled['ci_high']:.0f}", pi_low=f"{pooled['pi_low']:.0f}",
                                      pi_high=f"{pooled['pi_high']:.0f}", **labels)
        slug = f"forest_{d.indicator}_{d.group}_{d.country}"
        caption = words["chapter"]["studies_caption"].format(**labels)
        saved.append(figures.save_figure(fig, run.figures_dir, slug, alt, caption))
        if d.k >= FUNNEL_MIN_STUDIES:
            y, v = evidence.transform_proportions(part["events"], part["n"], TRANSFORM)
            fig = figures.plot_funnel(
                y, np.sqrt(v), fit.b, title=fw["funnel_title"].format(**labels), x_label=fw["funnel_x"],
                y_label=fw["funnel_y"], quality=rows["quality"], quality_labels=words["risk_of_bias"],
                source_note=fw["forest_source"].format(**method_words), synthetic=run.synthetic)
            alt = fw["funnel_alt"].format(k=d.k, se_low=f"{np.sqrt(v).min():.2f}", se_high=f"{np.sqrt(v).max():.2f}",
                                          pooled=f"{fit.b:.2f}", **labels)
            saved.append(figures.save_figure(fig, run.figures_dir, f"funnel_{d.indicator}_{d.group}_{d.country}",
                                             alt, fw["funnel_title"].format(**labels)))
    return saved


# --------------------------------------------------------------------------------------------
# Pooled and design-based side by side


def survey_estimates(run: EvidenceRun, details: pd.DataFrame, sources, processed_dir=None) -> pd.DataFrame:
    """Design-based estimates of the group's own cell for every pooled group × country, from the
    report's microdata sources (the group-profile estimator, :func:`analysis.chapters.group_estimates`)."""
    from analysis.chapters.common import start_run
    from analysis.chapters.group_profile import group_estimates
    from analysis.sources import load_processed

    microdata = []
    for name in sources or []:
        try:
            frame = load_processed(name, processed_dir)
        except FileNotFoundError:
            continue
        if frame.attrs.get("design") is not None:
            microdata.append((name, set(frame["country"].dropna().astype(str))))
    import tempfile

    parts = []
    # the helper runs get their own scratch folder: the chapter's folder holds only its outputs
    with tempfile.TemporaryDirectory() as scratch:
        for (group, country), _ in details.groupby(["group", "country"]):
            names = [n for n, countries in microdata if country in countries]
            if not names:
                continue
            try:
                survey_run = start_run(run.chapter, group=group, country=country, sources=names,
                                       processed_dir=processed_dir, output_dir=scratch)
            except ChapterError:
                continue  # no source holds this group in this country: no survey estimate
            parts.append(group_estimates(survey_run))
    return tables.stack(parts) if parts else tables.empty_result()


def comparison_display(run: EvidenceRun, comparison: pd.DataFrame) -> pd.DataFrame:
    """Pooled and survey estimates side by side, labelled, with the agreement in words."""
    words = _labels(run)
    c = words["columns"]
    rows = []
    for r in comparison.itertuples(index=False):
        survey = "—" if pd.isna(r.survey_estimate) else (
            f"{100 * r.survey_estimate:.1f} ({100 * r.survey_ci_low:.1f}–{100 * r.survey_ci_high:.1f}); "
            f"{r.survey_source}")
        pooled = "—" if pd.isna(r.estimate) else f"{100 * r.estimate:.1f} ({100 * r.ci_low:.1f}–{100 * r.ci_high:.1f})"
        rows.append({c["indicator"]: run.indicator_labels.get(r.indicator, r.indicator),
                     c["group"]: _group_labels(run).get(r.group, r.group), c["country"]: country_name(r.country),
                     c["pooled"]: pooled, c["design_based"]: survey,
                     c["agreement"]: words["agreement"][r.agreement]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Narrative and findings


def _heterogeneity(words: dict, i2: float) -> str:
    # Higgins et al. (2003): I² of 25/50/75% as low/moderate/high; here < 30, 30–60, > 60.
    return words["heterogeneity_low"] if i2 < 30 else (
        words["heterogeneity_moderate"] if i2 <= 60 else words["heterogeneity_high"])


def narrative(run: EvidenceRun, studies: pd.DataFrame, table: pd.DataFrame, pooled: pd.DataFrame,
              details: pd.DataFrame, comparison: pd.DataFrame | None = None) -> str:
    """The chapter's narrative, built from the data with the templates of ``params/evidence.yml``."""
    words = _labels(run)
    ch = words["chapter"]
    per_study = studies.drop_duplicates("study_id")
    ratings = per_study["risk_of_bias"].fillna("none").value_counts()
    theme_group = table.groupby(["theme", "group"])["studies"].sum()
    text = ch["narrative"].format(
        studies=len(per_study), participants=f"{int(per_study['sample_size'].sum()):,}", estimates=len(studies),
        groups=studies["group"].nunique(), countries=studies["country"].nunique(), pools=len(details),
        gaps=int((theme_group == 0).sum()), cells=len(theme_group),
        quality=ch["narrative_quality"].format(low=int(ratings.get("low", 0)), moderate=int(ratings.get("moderate", 0)),
                                               high=int(ratings.get("high", 0))))
    shown = pooled[pooled["flag"] != "suppressed"].merge(details[["indicator", "group", "country", "k", "I2",
                                                                 "best_quality"]],
                                                        on=["indicator", "group", "country"])
    for r in shown.sort_values("k", ascending=False).head(3).itertuples(index=False):
        text += "\n\n" + ch["narrative_pooled"].format(
            group=_group_labels(run).get(r.group, r.group), country=country_name(r.country),
            indicator=run.indicator_labels.get(r.indicator, r.indicator).lower(),
            pooled=f"{100 * r.estimate:.0f}", ci_low=f"{100 * r.ci_low:.0f}", ci_high=f"{100 * r.ci_high:.0f}",
            k=r.k, heterogeneity=_heterogeneity(ch, r.I2), I2=f"{r.I2:.0f}",
            quality=words["risk_of_bias"][r.best_quality].lower())
    if comparison is not None:
        for r in comparison[comparison["agreement"] == "disagree"].itertuples(index=False):
            text += "\n\n" + ch["narrative_disagree"].format(
                indicator=run.indicator_labels.get(r.indicator, r.indicator),
                group=_group_labels(run).get(r.group, r.group), country=country_name(r.country),
                pooled=f"{100 * r.estimate:.0f}", survey=f"{100 * r.survey_estimate:.0f}")
    if (pooled["flag"] == "caution").any():
        text += "\n\n" + ch["caution_note"]
    return text


def findings(run: EvidenceRun, pooled: pd.DataFrame, details: pd.DataFrame, limit: int = 3) -> list[dict]:
    """Findings the front page can cite: the best-supported pooled estimates with their quality.

    Written to ``<output_dir>/findings.json`` (a list of ``{"text", "indicator", "group",
    "country", "k", "best_quality", "flag"}``) by :func:`write_findings`.
    """
    words = _labels(run)
    shown = pooled[pooled["flag"] == "ok"].merge(details[["indicator", "group", "country", "k", "best_quality"]],
                                                 on=["indicator", "group", "country"])
    rank = {q: i for i, q in enumerate(evidence.RISK_ORDER)}
    shown = shown.assign(_q=shown["best_quality"].map(rank)).sort_values(["_q", "k"], ascending=[True, False])
    out = []
    for r in shown.head(limit).itertuples(index=False):
        out.append({"text": words["chapter"]["finding"].format(
            indicator=run.indicator_labels.get(r.indicator, r.indicator), group=_group_labels(run).get(r.group, r.group),
            country=country_name(r.country), pooled=f"{100 * r.estimate:.0f}", k=r.k,
            quality=words["risk_of_bias"][r.best_quality].lower()),
            "indicator": r.indicator, "group": r.group, "country": r.country, "k": int(r.k),
            "best_quality": r.best_quality, "flag": r.flag})
    return out


def write_findings(run: EvidenceRun, items: list[dict]) -> Path:
    """``<output_dir>/findings.json``: the chapter's findings for the front page."""
    path = run.output_dir / "findings.json"
    path.write_text(json.dumps(items, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def heading(run: EvidenceRun, section: str):
    """A section heading of the chapter (``chapter.sections`` of ``params/evidence.yml``)."""
    from IPython.display import Markdown

    # The heading comes from params (partner-written): text, never markup (issue 11).
    return Markdown(f"## {markdown_text(_labels(run)['chapter']['sections'][section])}")


def side_by_side(run: EvidenceRun, pooled: pd.DataFrame, details: pd.DataFrame, sources,
                 processed_dir=None) -> pd.DataFrame:
    """Pooled estimates next to the survey estimates of the same cell
    (:func:`survey_estimates`, :func:`analysis.evidence.compare_with_survey`)."""
    survey = survey_estimates(run, details, sources, processed_dir)
    return evidence.compare_with_survey(pooled, survey, _labels(run))


#: Sensitivity analyses are shown for cells with at least this many studies.
SENSITIVITY_MIN_STUDIES = 4


def sensitivity_display(run: EvidenceRun, studies: pd.DataFrame, details: pd.DataFrame) -> pd.DataFrame:
    """For each pooled cell with at least :data:`SENSITIVITY_MIN_STUDIES` studies: the subgroup
    analysis by sampling (probability samples against the others, each with its own τ², and the
    p of the test between them; :func:`analysis.evidence.subgroups`) and the range of the
    leave-one-out estimates (:func:`analysis.evidence.leave_one_out`)."""
    words = _labels(run)
    c = words["columns"]
    rows = []
    for d in details[details["k"] >= SENSITIVITY_MIN_STUDIES].itertuples(index=False):
        part = studies[(studies["indicator"] == d.indicator) & (studies["group"] == d.group)
                       & (studies["country"] == d.country)]
        probability = np.where(part["sampling"] == "probability", "probability", "other")
        loo = evidence.leave_one_out(part["events"], part["n"], part["study_id"], method=METHOD, test=TEST)
        row = {c["indicator"]: run.indicator_labels.get(d.indicator, d.indicator),
               c["group"]: _group_labels(run).get(d.group, d.group), c["country"]: country_name(d.country),
               c["k"]: str(d.k), c["subgroup_probability"]: "—", c["subgroup_other"]: "—", c["subgroup_p"]: "—",
               c["leave_one_out"]: f"{100 * loo['pooled'].min():.1f}–{100 * loo['pooled'].max():.1f}"}
        if len(set(probability)) == 2:
            split = evidence.subgroups(part["events"], part["n"], probability, method=METHOD, test="z")
            fits = split.subgroups
            row[c["subgroup_probability"]] = f"{100 * fits['probability'].pooled:.1f} ({fits['probability'].k})"
            row[c["subgroup_other"]] = f"{100 * fits['other'].pooled:.1f} ({fits['other'].k})"
            row[c["subgroup_p"]] = f"{split.Q_between_p:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)
