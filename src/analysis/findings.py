"""Comparisons and key findings: a group against its reference, one row per source, with the gap.

The group-profile chapter saves, for every group × country × source, the estimate of every
indicator for the group and for its reference population (result schema, ``breakdown ==
"comparison"``, ``cell`` ``group`` / ``reference``) and their difference (``method ==
"difference"``, ``cell`` ``"<group categories> vs <reference categories>"``). This module puts them
side by side — :func:`comparisons`, one row per (theme, indicator, group, country, source) — and
chooses the key findings of the report by rules a reader can check (:func:`key_findings`):

1. only percent indicators (shares of respondents, comparable across groups and countries);
2. only comparisons whose group estimate, reference estimate and gap are all flagged ``ok``
   (never ``caution`` or ``suppressed``, never a degenerate interval);
3. only gaps whose 95% interval excludes zero;
4. ranked by the absolute size of the gap, largest first, within each theme.

Numbers stay on the 0–1 scale of the result schema; :func:`format_percent` and
:func:`finding_text` write them as a reader reads them ("39% (35–43)").
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.text import lower_first, text

#: Columns of :func:`comparisons` (one row per theme × indicator × group × country × source).
COMPARISON_COLUMNS = [
    "theme", "indicator", "group", "country", "source",
    "estimate", "ci_low", "ci_high", "n_unweighted", "flag",
    "reference_estimate", "reference_ci_low", "reference_ci_high", "reference_n_unweighted", "reference_flag",
    "gap", "gap_ci_low", "gap_ci_high", "gap_flag",
    "method",
]
_IDENTITY = ["source", "country", "group", "indicator"]


def comparisons(estimates: pd.DataFrame, indicators: dict) -> pd.DataFrame:
    """Group, reference and gap of every indicator side by side, one row per
    (theme, indicator, group, country, source), from result-schema rows (e.g. ``all_estimates.csv``).

    Exact duplicate rows of the input (the same estimate saved by two chapters) count once; two
    *different* rows for the same cell are an error, since a reader could not tell which is meant.

    Raises
    ------
    ValueError
        Naming the (source, country, group, indicator, cell) that has two different estimates.
    """
    rows = estimates[estimates["group"].notna()].copy()
    key_cols = [*_IDENTITY, "breakdown", "cell", "method"]
    rows = rows.drop_duplicates(subset=key_cols + ["estimate", "ci_low", "ci_high", "n_unweighted", "flag"])
    clash = rows.duplicated(subset=key_cols, keep=False)
    if clash.any():
        first = rows[clash].iloc[0]
        raise ValueError("estimates: two different rows for source={source}, country={country}, group={group}, "
                         "indicator={indicator}, cell={cell}; run the chapters again so that one is left"
                         .format(**{k: first[k] for k in [*_IDENTITY, "cell"]}))
    is_estimate = (rows["breakdown"] == "comparison") & rows["cell"].isin(["group", "reference"])
    est = rows[is_estimate]
    gap = rows[(rows["method"].astype(str) == "difference") & rows["cell"].astype(str).str.contains(" vs ")]
    group = est[est["cell"] == "group"].set_index(_IDENTITY)
    reference = est[est["cell"] == "reference"].set_index(_IDENTITY)
    gap = gap.drop_duplicates(subset=_IDENTITY).set_index(_IDENTITY)
    out = pd.DataFrame(index=group.index.union(reference.index))
    for column in ("estimate", "ci_low", "ci_high", "n_unweighted", "flag", "method"):
        out[column] = group[column].reindex(out.index)
    for column in ("estimate", "ci_low", "ci_high", "n_unweighted", "flag"):
        out[f"reference_{column}"] = reference[column].reindex(out.index)
    out["gap"] = gap["estimate"].reindex(out.index)
    out["gap_ci_low"] = gap["ci_low"].reindex(out.index)
    out["gap_ci_high"] = gap["ci_high"].reindex(out.index)
    out["gap_flag"] = gap["flag"].reindex(out.index)
    out = out.reset_index()
    themes = {k: v.theme for k, v in indicators.items()}
    out["theme"] = out["indicator"].map(themes)
    # catalogue order of themes and indicators, then group, country, source
    theme_rank = {t: i for i, t in enumerate(dict.fromkeys(themes.values()))}
    indicator_rank = {k: i for i, k in enumerate(indicators)}
    out = out.assign(_t=out["theme"].map(theme_rank), _i=out["indicator"].map(indicator_rank))
    out = out.sort_values(["_t", "_i", "group", "country", "source"], na_position="last", kind="stable")
    return out.drop(columns=["_t", "_i"])[COMPARISON_COLUMNS].reset_index(drop=True)


def eligible(table: pd.DataFrame, percent_indicators) -> pd.Series:
    """Rows that may be a key finding (rules 1–3 of the module notes)."""
    from analysis.tables import degenerate_cause

    ok = ((table["flag"] == "ok") & (table["reference_flag"] == "ok") & (table["gap_flag"] == "ok"))
    clear = (table["gap_ci_low"] > 0) | (table["gap_ci_high"] < 0)
    clean = table["method"].map(lambda m: degenerate_cause(m) is None)
    return (table["indicator"].isin(set(percent_indicators)) & ok.fillna(False) & clear.fillna(False)
            & clean & table["gap"].notna()).astype(bool)


def key_findings(table: pd.DataFrame, percent_indicators, per_theme: int = 3) -> pd.DataFrame:
    """The ``per_theme`` largest eligible gaps of each theme (rule 4), at most one per indicator
    and group within a theme (the largest country × source), themes in catalogue order."""
    chosen = table[eligible(table, percent_indicators)].copy()
    chosen["_size"] = chosen["gap"].abs()
    chosen = chosen.sort_values("_size", ascending=False, kind="stable")
    chosen = chosen.drop_duplicates(subset=["theme", "indicator", "group"])
    parts = [part.head(per_theme) for _, part in chosen.groupby("theme", sort=False)]
    if not parts:
        return chosen.drop(columns="_size").iloc[0:0]
    out = pd.concat(parts)
    themes = list(dict.fromkeys(table["theme"]))
    out = out.assign(_t=out["theme"].map({t: i for i, t in enumerate(themes)}))
    return out.sort_values(["_t", "_size"], ascending=[True, False], kind="stable").drop(columns=["_t", "_size"])


def _number(value, scale: float = 100.0) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value) * scale:.0f}"


def format_percent(estimate, low=None, high=None) -> str:
    """A proportion as the report writes it: "39% (35–43)" (0 decimals; interval when known)."""
    if estimate is None or pd.isna(estimate):
        return ""
    value = text("tables.percent", value=_number(estimate))
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return value
    return text("findings.with_interval", value=value, low=_number(low), high=_number(high))


def signed_points(value) -> str:
    """A gap in points with its sign: "+13", "−4", "0" (never "−0")."""
    rounded = int(np.round(float(value) * 100))
    return "0" if rounded == 0 else (f"+{rounded}" if rounded > 0 else f"−{abs(rounded)}")


def finding_text(row, *, group_label: str, reference_label: str, indicator_label: str, country_label: str,
                 source_title: str) -> str:
    """One sentence of a finding with size, interval, source and quality, e.g. "Persons with
    disabilities in Kenya: food insecurity 39% vs 25% for persons without disabilities (difference
    +13 points, 95% CI +9 to +18; Disability and COVID-19 survey, n = 790; quality: ok)"."""
    direction = "more" if row["gap"] > 0 else "less"
    return text(
        "findings.sentence",
        group=group_label, group_lc=lower_first(group_label), reference=reference_label,
        reference_lc=lower_first(reference_label), indicator=indicator_label,
        indicator_lc=lower_first(indicator_label), country=country_label,
        direction=text(f"findings.{direction}"),
        value=text("tables.percent", value=_number(row["estimate"])),
        reference_value=text("tables.percent", value=_number(row["reference_estimate"])),
        gap=signed_points(row["gap"]), low=signed_points(row["gap_ci_low"]), high=signed_points(row["gap_ci_high"]),
        source=source_title, n=f"{int(row['n_unweighted']):,}",
        reference_n=f"{int(row['reference_n_unweighted']):,}", quality=text(f"findings.quality.{row['gap_flag']}"),
    )
