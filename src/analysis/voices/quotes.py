"""Quotes: people's own words for each theme, only with consent, scrubbed, balanced, reproducible.

Rules (every one is enforced here, not left to the chapter):

- **Consent.** Only responses whose respondent consented to quotation (the card's
  ``responses.consent_column``) are candidates; a source without a consent column gives no
  quotes at all, and the chapter says so.
- **Withdrawal.** Respondents who withdrew (STOP) are not in the coded table; ``withdrawn`` ids
  passed here are dropped again (belt and braces).
- **Counted codes only.** A quote illustrates a theme only where the consensus rule
  (:func:`analysis.voices.themes.consensus`) counted a code of that theme on the response.
- **Scrubbed.** The span was scrubbed at ingest; it is scrubbed again here with the same rules
  (:class:`analysis.voices.scrub.Scrubber`) and every redaction is counted by kind.
- **Attribution.** Nothing but the group and the country is attached to a quote, and only when
  that group x country cell has at least ``suppress_below`` coded respondents; otherwise the
  quote carries no attribution at all.
- **Balanced and reproducible.** Within a theme, candidates are shuffled with a generator
  seeded by ``seed`` and the theme id, then taken in turn from each balancing cell (e.g. the
  group and its reference), so no cell supplies every quote; a respondent is quoted at most once.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from analysis.voices.scrub import Scrubber
from analysis.voices.themes import consensus

QUOTE_COLUMNS = ["theme", "rank", "quote", "attribution_group", "attribution_country", "language"]


def _theme_rng(seed: int, theme: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(theme.encode("utf-8"))])


def select_quotes(coded: pd.DataFrame, codebook, themes, *, balance: pd.Series | None = None,
                  attribution: pd.Series | None = None, per_theme: int = 3, seed: int = 2021,
                  suppress_below: int = 25, resolved_coder: str | None = None, withdrawn=(),
                  scrubber: Scrubber | None = None, max_characters: int = 280) -> pd.DataFrame:
    """Up to ``per_theme`` quotes for each theme in ``themes``.

    Parameters
    ----------
    coded : DataFrame
        The long coded table (:mod:`analysis.sources.coding`), with ``quote_consent``, ``span``,
        ``country`` and ``language``.
    themes : list of str
        Theme ids, in the order to show them (e.g. the leading themes).
    balance : Series, optional
        Balancing cell per ``response_id`` (index), e.g. "group" / "reference".
    attribution : Series, optional
        The group label to attach per ``response_id`` (index); the country comes from ``coded``.
        Attached only when its group x country cell has at least ``suppress_below`` coded
        respondents.
    scrubber : Scrubber, optional
        Shared across calls so that its ``counts`` log every redaction of the chapter.

    Returns
    -------
    DataFrame
        :data:`QUOTE_COLUMNS`; no response id and no case variable other than group and country.
    """
    scrubber = scrubber or Scrubber()
    if "quote_consent" not in coded.columns or not coded["quote_consent"].fillna(False).astype(bool).any():
        return pd.DataFrame(columns=QUOTE_COLUMNS)
    gone = {str(r) for r in withdrawn}
    coded = coded[~coded["response_id"].astype(str).isin(gone)]
    counted = consensus(coded, resolved_coder)[["response_id", "code"]]
    consented = coded[coded["quote_consent"].fillna(False).astype(bool) & coded["span"].notna()]
    consented = consented.drop(columns=["theme"], errors="ignore")
    spans = consented.merge(counted, on=["response_id", "code"])
    spans = spans.assign(theme=spans["code"].map(lambda c: codebook.codes[c].theme if c in codebook.codes else None))
    spans = spans[spans["span"].astype(str).str.strip().str.len() > 0]
    # the cell sizes that decide whether an attribution may be shown
    people = coded.drop_duplicates("response_id").set_index("response_id")
    group_of = attribution.reindex(people.index) if attribution is not None else pd.Series(pd.NA, index=people.index)
    country_of = people["country"] if "country" in people.columns else pd.Series(pd.NA, index=people.index)
    cell_size = pd.Series(list(zip(group_of.astype(object), country_of.astype(object))), index=people.index)
    sizes = cell_size.value_counts()
    used: set[str] = set()
    rows = []
    for theme in themes:
        candidates = spans[spans["theme"] == theme].drop_duplicates("response_id")
        candidates = candidates[~candidates["response_id"].isin(used)]
        if candidates.empty:
            continue
        order = _theme_rng(seed, theme).permutation(len(candidates))
        candidates = candidates.iloc[order]
        cells = (balance.reindex(candidates["response_id"]).astype(object).fillna("").to_numpy()
                 if balance is not None else np.zeros(len(candidates), dtype=object))
        queues: dict = {}
        for position, cell in enumerate(cells):
            queues.setdefault(cell, []).append(position)
        picked: list[int] = []
        while len(picked) < per_theme and any(queues.values()):
            for cell in sorted(queues, key=str):
                if queues[cell] and len(picked) < per_theme:
                    picked.append(queues[cell].pop(0))
        for rank, position in enumerate(picked, start=1):
            row = candidates.iloc[position]
            rid = row["response_id"]
            used.add(rid)
            text = scrubber(str(row["span"]))
            if len(text) > max_characters:
                text = text[: max_characters - 1].rsplit(" ", 1)[0] + "…"
            key = cell_size.get(rid)
            attributable = key is not None and sizes.get(key, 0) >= suppress_below and not pd.isna(key[0])
            rows.append({
                "theme": theme, "rank": rank, "quote": text,
                "attribution_group": key[0] if attributable else None,
                "attribution_country": key[1] if attributable else None,
                "language": row.get("language") if pd.notna(row.get("language")) else None,
            })
    return pd.DataFrame(rows, columns=QUOTE_COLUMNS)
