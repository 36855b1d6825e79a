"""Theme shares: the share of respondents (not of codes) whose answers mention each theme.

Consensus rule
--------------
A code counts for a response when the *resolved* coder (the card's ``resolved_coder``, whose
codes record the team's adjudication) applied it, or — for responses without a resolved coding —
when a strict majority of the coders who coded the response applied it (two coders: both; three
coders: two or three). A theme is mentioned by a respondent when a counted code of that theme is
on any of the respondent's responses.

Denominator: the respondents with at least one coded response, except those whose every
response was judged not codable (a counted ``not_codable`` code and nothing else). Respondents who
withdrew (STOP) are gone from the coded table and from the survey (see
:func:`analysis.sources.coding.drop_withdrawn`).

Estimation
----------
The theme indicators (1 = mentioned, 0 = not, missing outside the denominator) join the
processed survey, and :func:`analysis.survey.estimate_by` estimates them as proportions on the
survey's full design (domain estimation: respondents without a coded answer stay in the design),
with logit intervals. Disclosure: a cell whose share rests on fewer than ``suppress_below``
respondents — in the denominator, *or mentioning the theme* — is suppressed, then
:func:`analysis.disclosure.apply_suppression` adds caution flags and secondary suppression.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import tables

#: Prefix of the result-schema indicator of a theme share (``mentions_<theme>``), so that theme
#: shares never collide with catalogue indicators of the same name in the stacked estimates.
INDICATOR_PREFIX = "mentions_"


def theme_indicator(theme: str) -> str:
    return f"{INDICATOR_PREFIX}{theme}"


def consensus(coded: pd.DataFrame, resolved_coder: str | None = None) -> pd.DataFrame:
    """The counted codes of every response: ``response_id, code, n_coders, n_applied, rule``.

    See the module docstring for the rule. ``rule`` is ``"resolved"`` or ``"majority"``.
    """
    table = coded[["response_id", "coder", "code"]].drop_duplicates()
    resolved = None
    if resolved_coder is not None:
        is_resolved = table["coder"].astype(str) == resolved_coder
        resolved = table[is_resolved]
        table = table[~is_resolved]
    # rows are distinct (response, coder, code): counting rows counts coders
    m = table[["response_id", "coder"]].drop_duplicates().groupby("response_id", sort=False).size().rename("n_coders")
    k = table.groupby(["response_id", "code"], sort=False).size().rename("n_applied").reset_index()
    k = k.join(m, on="response_id")
    majority = k[k["n_applied"] * 2 > k["n_coders"]].assign(rule="majority")
    if resolved is not None and len(resolved):
        done = set(resolved["response_id"])
        majority = majority[~majority["response_id"].isin(done)]
        adjudicated = resolved[["response_id", "code"]].drop_duplicates().assign(
            n_coders=lambda f: f["response_id"].map(m).fillna(0).astype(int), n_applied=np.nan, rule="resolved")
        majority = pd.concat([majority, adjudicated], ignore_index=True)
    return majority.reset_index(drop=True)


def respondent_themes(coded: pd.DataFrame, codebook, resolved_coder: str | None = None) -> pd.DataFrame:
    """One row per respondent in the denominator, a 0/1 column per theme (``mentions_<theme>``)."""
    counted = consensus(coded, resolved_coder)
    theme_of = {k: c.theme for k, c in codebook.codes.items()}
    special_of = {k: c.special for k, c in codebook.codes.items()}
    counted = counted.assign(theme=counted["code"].map(theme_of), special=counted["code"].map(special_of))
    respondents = pd.Index(pd.unique(coded["response_id"]), name="response_id")
    not_codable = counted[counted["special"] == "not_codable"]["response_id"]
    usable = counted[counted["special"] != "not_codable"]["response_id"]
    only_not_codable = set(not_codable) - set(usable)
    respondents = respondents[~respondents.isin(only_not_codable)]
    out = pd.DataFrame(index=respondents)
    for theme in codebook.themes:
        hit = set(counted.loc[counted["theme"] == theme, "response_id"])
        out[theme_indicator(theme)] = respondents.isin(hit).astype(float)
    return out.reset_index()


def with_themes(survey: pd.DataFrame, themes: pd.DataFrame) -> pd.DataFrame:
    """The survey frame with the theme indicators (NaN for respondents outside the denominator)."""
    values = themes.set_index(themes["response_id"].astype(str)).drop(columns=["response_id"])
    keys = survey["respondent_id"].astype(str).to_numpy()
    joined = survey.copy()
    for column in values.columns:
        joined[column] = values[column].reindex(keys).to_numpy(dtype=float)
    joined.attrs.update(survey.attrs)
    return joined


def suppress_rare_mentions(estimates: pd.DataFrame, mentions: pd.Series, thresholds=None) -> pd.DataFrame:
    """Suppress shares mentioned by fewer than ``suppress_below`` respondents in their cell."""
    from analysis.disclosure import REASON_COLUMN, resolve_thresholds

    limit = resolve_thresholds(thresholds).suppress_below
    out = estimates.copy()
    rare = (pd.to_numeric(mentions, errors="coerce").to_numpy() < limit) & out["estimate"].notna().to_numpy()
    if rare.any():
        for column in ["estimate", "se", "ci_low", "ci_high", "n_unweighted", "n_weighted", "deff", "cv"]:
            if column in out.columns:
                if column == "n_unweighted":
                    out[column] = out[column].astype("Int64")
                    out.loc[rare, column] = pd.NA
                else:
                    out.loc[rare, column] = np.nan
        out["flag"] = out["flag"].astype("string")
        out.loc[rare, "flag"] = "suppressed"
        if REASON_COLUMN not in out.columns:
            out[REASON_COLUMN] = pd.Series(pd.NA, index=out.index, dtype="string")
        out.loc[rare, REASON_COLUMN] = f"theme mentioned by fewer than {limit} respondents"
    return out


def theme_shares(survey: pd.DataFrame, themes: pd.DataFrame, by=(), *, margins: bool = True, source=None,
                 country=None, group=None, thresholds=None, consensus_rule: str = "",
                 breakdowns=None) -> pd.DataFrame:
    """Design-based share of respondents mentioning each theme, per cell of ``by``, suppressed.

    Parameters
    ----------
    survey : DataFrame
        The processed survey (``frame.attrs["design"]``), one row per respondent, withdrawn
        respondents already removed.
    themes : DataFrame
        :func:`respondent_themes`.
    by : list of str
        Dimensions to cross (with margins), e.g. ``["comparison", "sex"]``.
    breakdowns : list of str, optional
        Publish only these breakdowns (e.g. ``["comparison", "comparison × sex"]``). Chosen
        before disclosure control, so that secondary suppression protects what is published.

    Returns
    -------
    DataFrame
        The result schema (indicator ``mentions_<theme>``) with the survey diagnostics, after
        :func:`suppress_rare_mentions` and :func:`analysis.disclosure.apply_suppression`; the
        method states the consensus rule and the denominator.
    """
    from analysis.disclosure import apply_suppression
    from analysis.survey import SurveyDesign, design_for, estimate_by

    frame = with_themes(survey, themes)
    indicators = [c for c in themes.columns if c.startswith(INDICATOR_PREFIX)]
    if not indicators or frame.empty:
        return tables.empty_result()
    estimates = estimate_by(frame, design_for(frame), indicators, by=list(by), margins=margins,
                            statistic="proportion", source=source, country=country, group=group)
    counting = SurveyDesign.from_frame(frame, sample_type="non_probability")
    mentions = estimate_by(frame, counting, indicators, by=list(by), margins=margins, statistic="total")["estimate"]
    rule = consensus_rule or "a theme counts when a strict majority of the coders of a response applied one of its codes"
    estimates["method"] = (estimates["method"].astype(str)
                           + f"; share of coded respondents mentioning the theme ({rule})")
    if breakdowns is not None:
        keep = estimates["breakdown"].isin(list(breakdowns)).to_numpy()
        estimates, mentions = estimates[keep].reset_index(drop=True), mentions[keep].reset_index(drop=True)
    estimates = suppress_rare_mentions(estimates, mentions, thresholds)
    return apply_suppression(estimates, thresholds)


def theme_of_indicator(indicator: str) -> str:
    return str(indicator).removeprefix(INDICATOR_PREFIX)


def theme_share_indicators(themes: dict[str, str] | None = None) -> dict:
    """The theme shares as catalogue indicators (``mentions_<theme>`` -> :class:`analysis.schema.Indicator`).

    Chapters that list every estimate of the report (the synthesis) label, order and format the
    theme shares as any percent indicator of the theme: the label and definition come from the
    text catalogue (``voices.mentions_label``/``mentions_definition``, translated) around the
    theme's catalogue label (``themes:`` of ``params/indicators.yml``, translated with the
    catalogue). Direction: mentioning a hardship is worse; mentioning community response is not.
    """
    from analysis.schema import Indicator, load_themes
    from analysis.text import text

    themes = load_themes() if themes is None else themes
    return {theme_indicator(theme): Indicator(
        id=theme_indicator(theme), theme=theme, label=text("voices.mentions_label", theme=label),
        definition=text("voices.mentions_definition", theme=label), unit="percent", type="binary",
        direction="higher_is_better" if theme == "community_response" else "higher_is_worse")
        for theme, label in themes.items()}
