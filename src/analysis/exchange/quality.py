"""Quality statements per source, organised by the UN National Quality Assurance Frameworks.

The dimensions follow the United Nations National Quality Assurance Frameworks Manual for
Official Statistics (UN NQAF, 2019) as listed in the issue: relevance; accuracy and reliability;
timeliness and punctuality; coherence and comparability; accessibility and clarity; and the
methodological soundness of the source. Each statement is built from the source card
(``params/sources/<source>.yml``), the ingest log (``data/processed/<source>.log.json``) and the
estimates the run published for the source; every sentence is a template of
``params/exchange.yml`` (``quality`` and ``quality_phrases``), so that the texts live in the
catalogue and can be translated.

The design effect reported is the one R's ``svymean(..., deff = TRUE)`` gives for a proportion
(Kish 1965): the design-based variance over the variance of a simple random sample without
replacement of the same size, ``s² (N − n) / (N n)`` with ``s² = p (1 − p) n / (n − 1)``,
recomputed here from the published ``estimate``, ``se``, ``n_unweighted`` (n) and ``n_weighted``
(N) of the design-based cells (suppressed cells excluded).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.exchange import sdmx_csv
from analysis.exchange.sdmx_csv import Catalogue
from analysis.exchange.settings import ExchangeError, Settings
from analysis.schema import DIMENSION_COLUMNS

#: The NQAF dimensions, in the order the statement gives them.
NQAF_DIMENSIONS = ("relevance", "accuracy", "timeliness", "coherence", "accessibility", "methodology")


class _Blank(dict):
    def __missing__(self, key):
        raise ExchangeError(f"params/exchange.yml: key 'quality': unknown placeholder {{{key}}}")


def design_effects(rows: pd.DataFrame, catalogue: Catalogue, settings: Settings) -> pd.Series:
    """Design effect of each published design-based proportion of ``rows`` (see module notes)."""
    binary = {iid for iid, spec in catalogue.indicators.items() if spec.type == "binary"}
    estimate_codes = {"EST"}
    mask = (rows["indicator"].isin(binary)
            & rows["method"].map(lambda m: settings.statistic_for(m).code in estimate_codes)
            & (rows["flag"] != "suppressed")
            & ~rows["method"].astype(str).str.contains("non-probability"))
    sub = rows[mask]
    p = pd.to_numeric(sub["estimate"], errors="coerce")
    se = pd.to_numeric(sub["se"], errors="coerce")
    n = pd.to_numeric(sub["n_unweighted"], errors="coerce")
    big_n = pd.to_numeric(sub["n_weighted"], errors="coerce")
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = p * (1 - p) * n / (n - 1)
        srs = np.where(big_n > n, s2 * (big_n - n) / (big_n * n), s2 / n)
        deff = se * se / srs
    deff = pd.Series(deff, index=sub.index)
    return deff[np.isfinite(deff) & (p > 0) & (p < 1)]


def _ingest_log(processed_dir: Path | None, source: str) -> dict | None:
    if processed_dir is None:
        return None
    path = Path(processed_dir) / f"{source}.log.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _join(words: list[str]) -> str:
    return ", ".join(words)


def statement(source: str, rows: pd.DataFrame, coded: pd.DataFrame, settings: Settings,
              catalogue: Catalogue, *, processed_dir: Path | None = None,
              produced: str = "", compared_with_official: bool = False,
              country_names: dict | None = None) -> dict:
    """The quality statement of one source.

    Parameters
    ----------
    rows, coded
        The source's published rows (result schema) and the same rows coded for SDMX
        (:func:`analysis.exchange.sdmx_csv.code_rows`, for the primary/secondary split).
    compared_with_official
        Whether the report compares this source with official statistics.
    country_names
        ISO3 -> name (the report's names); codes are shown where a name is missing.

    Returns
    -------
    dict
        ``{"source", "title", "synthetic", "sections": [{"id", "title", "sentences"}]}``.
    """
    card = catalogue.cards[source]
    phrase = settings.quality_phrases
    country_names = country_names or {}
    design = getattr(card, "design", None)
    if card.kind == "study":
        sampling, weighting = phrase["sampling_study"], phrase["weighting_aggregates"]
    elif card.kind == "coding":
        sampling, weighting = phrase["sampling_coding"], phrase["weighting_unweighted"]
    elif card.kind == "aggregates":
        sampling, weighting = phrase["sampling_aggregates"], phrase["weighting_aggregates"]
    elif card.kind == "margins":
        sampling, weighting = phrase["sampling_margins"], phrase["weighting_aggregates"]
    elif design is not None and design.type == "probability":
        parts = [phrase[k] for k, on in (("design_stratified", design.strata), ("design_clustered", design.psu),
                                         ("design_fpc", design.fpc)) if on]
        if design.replicate is not None:
            parts.append(phrase["design_replicates"].format(method=design.replicate.method))
        variance = phrase["variance_replicates" if design.replicate is not None else "variance_taylor"]
        sampling = phrase["sampling_probability"].format(design=_join(parts) or "-", variance=variance)
        weighting = phrase["weighting_probability"]
    else:
        sampling = phrase["sampling_non_probability"]
        reweighted = rows["method"].astype(str).str.startswith("after weighting").any()
        weighting = phrase["weighting_unweighted"] + (" " + phrase["weighting_reweighted"] if reweighted else "")

    deff = design_effects(rows, catalogue, settings)
    if len(deff):
        design_effect = phrase["design_effect"].format(
            median=f"{deff.median():.2f}", low=f"{deff.min():.2f}", high=f"{deff.max():.2f}", count=len(deff))
    else:
        design_effect = phrase["design_effect_none"]

    log = _ingest_log(processed_dir, source)
    if log is not None:
        excluded = log.get("rows_excluded") or {}
        count = sum(int(v) for v in excluded.values()) if isinstance(excluded, dict) else 0
        reasons = "; ".join(f"{reason}: {int(n)}" for reason, n in sorted(excluded.items())) if count else ""
        records = {"rows_read": log.get("rows_read", "?"), "rows_kept": log.get("rows_kept", "?"),
                   "excluded": phrase["excluded"].format(count=count, reasons=reasons) if count else ""}
    else:
        records = None

    flags = rows["flag"].astype(str)
    withheld = coded["CONF_STATUS"]
    suppression = phrase["suppression"].format(
        rows=len(rows), suppressed=int((flags == "suppressed").sum()),
        primary=int((withheld == "C").sum()), secondary=int((withheld == "D").sum()),
        caution=int((flags == "caution").sum()))

    columns, derive = getattr(card, "columns", None) or {}, getattr(card, "derive", None) or {}
    dims = [c for c in DIMENSION_COLUMNS if c in columns or c in derive]
    dims = [catalogue.dimensions[c].label.lower() for c in dims if c in catalogue.dimensions]
    disability = derive.get("disability")
    if disability == "wg_ss":
        disability_method = phrase["disability_wg_ss"]
    elif "disability" in columns or disability:
        disability_method = phrase["disability_single_question"]
    else:
        disability_method = phrase["disability_none"]
    statistics = []
    for method in rows["method"].astype(str):
        name = settings.statistic_for(method).name
        if name not in statistics:
            statistics.append(name)
    if card.kind == "aggregates":
        comparison = phrase["official_comparison"]
    else:
        comparison = phrase["compared_with_official" if compared_with_official else "not_compared"]
    if card.kind in ("study", "coding"):
        known_biases = phrase["known_biases_other"]
    elif card.kind in ("aggregates", "margins"):
        known_biases = phrase["known_biases_aggregates"]
    elif design is not None and design.type == "probability":
        known_biases = phrase["known_biases_probability"]
    else:
        known_biases = phrase["known_biases_non_probability"]
    countries = sorted(set(rows["country"].dropna().astype(str)))
    areas = sorted(set(coded["SUBNATIONAL"]) - {sdmx_csv.TOTAL})
    period = sdmx_csv.collection_period(card, catalogue)
    indicators = len(getattr(card, "indicators", None) or {}) or rows["indicator"].nunique()
    values = _Blank(
        title=card.title, description=(card.description or phrase["no_description"]).strip(),
        indicator_count=indicators, dimensions=_join(dims) or phrase["no_dimensions"],
        synthetic_note=phrase["synthetic" if card.synthetic else "not_synthetic"],
        sampling=sampling, weighting=weighting, design_effect=design_effect, known_biases=known_biases,
        countries=_join([country_names.get(c, c) for c in countries]) or "-",
        areas=phrase["areas"].format(count=len(areas)) if areas else "",
        suppression=suppression,
        period_start=period.start.isoformat() if period else "?",
        period_end=period.end.isoformat() if period else "?", produced=produced or "?",
        disability_method=disability_method, official_comparison=comparison,
        licence=card.licence, methods="; ".join(statistics) or "-",
        suppress_below=catalogue.suppress_below, caution_below=catalogue.caution_below,
        consent=getattr(card, "consent", None) or phrase["no_consent"],
        **(records or {"rows_read": "?", "rows_kept": "?", "excluded": ""}),
    )
    sections = []
    for dim in NQAF_DIMENSIONS:
        section = settings.quality[dim]
        sentences = []
        for template in section.sentences:
            if records is None and "{rows_read}" in template:
                sentences.append(phrase["no_ingest_log"])
                continue
            if period is None and "{period_start}" in template:
                sentences.append(phrase["no_period"])
                continue
            text = template.format_map(values).strip()
            if text:
                sentences.append(text)
        sections.append({"id": dim, "title": section.title, "sentences": sentences})
    return {"source": source, "title": card.title, "synthetic": card.synthetic, "sections": sections}


def statements(table: pd.DataFrame, coded: pd.DataFrame, settings: Settings, catalogue: Catalogue,
               *, processed_dir: Path | None = None, produced: str = "",
               country_names: dict | None = None) -> list[dict]:
    """One statement per source with published estimates, in source order."""
    sources = sorted(set(table["source"].dropna().astype(str)))
    official = {s for s in sources if catalogue.cards[s].kind == "aggregates"}
    # A CSO source is compared with official statistics when the report published rows of both
    # for the same country (chapter 5 stacks them in one table).
    official_countries = set(table.loc[table["source"].isin(official), "country"].astype(str))
    out = []
    for source in sources:
        mask = (table["source"] == source).to_numpy(dtype=bool)
        rows, coded_rows = table[mask], coded[mask]
        compared = bool(set(rows["country"].astype(str)) & official_countries) and source not in official
        out.append(statement(source, rows, coded_rows, settings, catalogue, processed_dir=processed_dir,
                             produced=produced, compared_with_official=compared,
                             country_names=country_names))
    return out


def as_markdown(item: dict) -> str:
    """A statement as plain Markdown (one heading per NQAF dimension)."""
    lines = [f"# {item['title']}", ""]
    for section in item["sections"]:
        lines += [f"## {section['title']}", "", " ".join(section["sentences"]), ""]
    return "\n".join(lines)
