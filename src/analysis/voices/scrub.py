"""Scrubbing personal data out of quotes, with a log of every redaction by kind.

:mod:`analysis.sources.privacy` *finds* personal data in free text and fails the ingest; a quote
must instead be kept and *redacted*. The same rules apply — e-mail addresses, phone numbers and
GPS coordinates with privacy's own patterns and phone test — plus the rules quotes need:

- **names**: every value of the source's personal columns (e.g. a ``name`` column) and of an
  optional names list, as whole words, case-insensitive; and by pattern, a capitalised word
  after a self-introduction or a title ("my name is", "je m'appelle", "jina langu ni", "Mr",
  "Mama", ...);
- **places below admin-1**: names from a places list, and a capitalised word after "in",
  "at", "from", "near", "village", "à", "de", "kijiji cha", ... unless it is a country, an
  admin-1 area (Natural Earth, shipped with the project), a month or a weekday — admin-1 and
  above may be shown, nothing finer;
- **ages as exact numbers**: "34 years old", "aged 34", "34 ans", "miaka 34".

Each hit is replaced by a bracketed placeholder of its kind (``[name]``, ``[phone]``, ...) and
counted; the counts are what is logged (never the text removed).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

from analysis.sources import privacy

#: Placeholder of each kind of redaction.
PLACEHOLDERS = {"email": "[email]", "gps": "[location]", "phone": "[phone]", "age": "[age]",
                "name": "[name]", "place": "[place]"}

_WORD = r"[A-ZÀ-ÖØ-Þ][\w'’-]+"
NAME_CUES = re.compile(
    r"(?:\b(?i:my name is|i am called|call me|je m'appelle|je m’appelle|mon nom est|jina langu ni|naitwa)"
    r"\s+|\b(?:Mr|Mrs|Ms|Miss|Dr|Mme|Mlle|M\.|Mama|Baba|Mzee|Bi|Bw)\.?\s+)"
    rf"({_WORD}(?:\s+{_WORD})?)"
)
PLACE_CUES = re.compile(
    r"\b(?i:in|at|from|near|village of|village|town of|à|au|de|du|près de|vers|kijiji cha|mtaa wa|katika|huko)"
    rf"\s+({_WORD}(?:[ -]{_WORD})?)"
)
AGE_PATTERNS = [
    re.compile(r"\b\d{1,3}\s*-?\s*(?:years?|yrs?)(?:\s*-?\s*old)?\b", re.IGNORECASE),
    re.compile(r"\b(?:aged?|age of)\s+\d{1,3}\b", re.IGNORECASE),
    re.compile(r"\b\d{1,3}\s*ans\b", re.IGNORECASE),
    re.compile(r"\b(?:miaka|umri wa miaka)\s+\d{1,3}\b", re.IGNORECASE),
]
_CALENDAR = {
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
    "novembre", "décembre", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
}


@lru_cache(maxsize=1)
def allowed_places() -> frozenset[str]:
    """Country and admin-1 names (casefolded) that a quote may keep, plus months and weekdays."""
    import csv

    import pycountry

    names = set(_CALENDAR)
    for country in pycountry.countries:
        for attr in ("name", "common_name", "official_name"):
            value = getattr(country, attr, None)
            if value:
                names.add(value.casefold())
    lookup = Path(privacy.__file__).with_name("admin1_natural_earth.csv")
    if lookup.exists():
        with open(lookup, encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                for key in ("admin1", "name", "admin1_name"):
                    if row.get(key):
                        names.add(row[key].casefold())
    return frozenset(names)


# privacy.PHONE, but a full stop may end the number (a phone at the end of a sentence)
_PHONE_CANDIDATE = re.compile(r"(?<![\w.])(?:\+|00)?\(?\d[\d\s().-]{6,18}\d(?!\w)")


def _phone_spans(text: str) -> list[tuple[int, int]]:
    # privacy's phone test, applied to each candidate so that only that span is redacted
    return [m.span() for m in _PHONE_CANDIDATE.finditer(text) if privacy._phone_hit(m.group(0))]


def _replace_spans(text: str, spans, placeholder: str) -> tuple[str, int]:
    count = 0
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + placeholder + text[end:]
        count += 1
    return text, count


def word_list_pattern(words) -> re.Pattern | None:
    """One case-insensitive whole-word pattern for a list of names (longest first)."""
    items = sorted({w.strip() for w in words if w and len(w.strip()) >= 2}, key=len, reverse=True)
    if not items:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in items) + r")(?!\w)", re.IGNORECASE)


class Scrubber:
    """Redacts personal data from quotes; ``counts`` holds every redaction by kind.

    Parameters
    ----------
    names : iterable of str
        Personal names to remove wherever they appear (each full value and each of its words).
    places : iterable of str
        Place names below admin-1 to remove wherever they appear.
    """

    def __init__(self, names=(), places=()):
        words = set()
        for value in names:
            value = str(value).strip()
            if len(value) >= 2:
                words.add(value)
                words.update(part for part in value.split() if len(part) >= 3)
        self.names = word_list_pattern(words)
        self.places = word_list_pattern(str(p) for p in places)
        self.counts: Counter = Counter()

    def __call__(self, text) -> str:
        return self.scrub(text)

    def scrub(self, text) -> str:
        """The text with every hit replaced by its placeholder (the counts are updated)."""
        if text is None:
            return text
        text = str(text)
        text, n = privacy.EMAIL.subn(PLACEHOLDERS["email"], text)
        self.counts["email"] += n
        for pattern in (privacy.GPS_DECIMAL, privacy.GPS_DMS):
            text, n = pattern.subn(PLACEHOLDERS["gps"], text)
            self.counts["gps"] += n
        text, n = _replace_spans(text, _phone_spans(text), PLACEHOLDERS["phone"])
        self.counts["phone"] += n
        for pattern in AGE_PATTERNS:
            text, n = pattern.subn(PLACEHOLDERS["age"], text)
            self.counts["age"] += n
        if self.names is not None:
            text, n = self.names.subn(PLACEHOLDERS["name"], text)
            self.counts["name"] += n
        spans = [m.span(1) for m in NAME_CUES.finditer(text) if not m.group(1).startswith("[")]
        text, n = _replace_spans(text, spans, PLACEHOLDERS["name"])
        self.counts["name"] += n
        if self.places is not None:
            text, n = self.places.subn(PLACEHOLDERS["place"], text)
            self.counts["place"] += n
        keep = allowed_places()
        spans = [m.span(1) for m in PLACE_CUES.finditer(text) if m.group(1).casefold() not in keep
                 and m.group(1).split()[0].casefold() not in keep]
        text, n = _replace_spans(text, spans, PLACEHOLDERS["place"])
        self.counts["place"] += n
        return text

    def log(self) -> dict[str, int]:
        """Redactions by kind (only kinds that occurred), for the row accounting."""
        return {kind: int(n) for kind, n in sorted(self.counts.items()) if n}
