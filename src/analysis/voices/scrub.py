"""Scrubbing personal data out of quotes, with a log of every redaction by kind.

:mod:`analysis.sources.privacy` *finds* personal data in free text and fails the ingest; a quote
must instead be kept and *redacted*. The same rules apply — e-mail addresses, phone numbers and
GPS coordinates with privacy's own patterns and phone test — plus the rules quotes need:

- **names**: every value of the source's personal columns (e.g. a ``name`` column) and of an
  optional names list, as whole words, case-insensitive; and by pattern, a capitalised word
  (or two) after a self-introduction or a title;
- **places below admin-1**: names from a places list, and a capitalised word (or two) after a
  place cue, unless it is a country, an admin-1 area (Natural Earth, shipped with the project),
  a month or a weekday — admin-1 and above may be shown, nothing finer;
- **ages as exact numbers**: a number of up to three digits before or after an age cue.

The cue words are catalogue, not code: ``params/scrubbing.yml`` lists them per language
(:func:`load_cues`); months and weekdays of each of its languages come from CLDR through Babel.
The cues of every language apply to every text — open answers switch language within a message
(Sheng, Wolof–French) and a message's language tag is often wrong — so adding a language to the
file widens the scrub of all answers.

Each hit is replaced by a bracketed placeholder of its kind (``[name]``, ``[phone]``, ...) and
counted; the counts are what is logged (never the text removed).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from analysis import config
from analysis.sources import privacy

#: Placeholder of each kind of redaction.
PLACEHOLDERS = {"email": "[email]", "gps": "[location]", "phone": "[phone]", "age": "[age]",
                "name": "[name]", "place": "[place]"}
#: The catalogue file of cue words (``params/scrubbing.yml``).
CUES_FILE_NAME = "scrubbing.yml"
#: Kinds of cue of a language in that file, and what each one announces.
CUE_KINDS = {
    "introductions": "a name follows (case-insensitive)",
    "titles": "a name follows (as written; an optional full stop after it)",
    "places": "a place may follow (case-insensitive)",
    "ages_before": "an exact age follows (case-insensitive)",
    "ages_after": "an exact age comes before (case-insensitive)",
}

_WORD = r"[A-ZÀ-ÖØ-Þ][\w'’-]+"
_NAME = rf"({_WORD}(?:\s+{_WORD})?)"
_PLACE = rf"({_WORD}(?:[ -]{_WORD})?)"
_AGE = r"\d{1,3}"


class ScrubError(ValueError):
    """The cue-word catalogue is unusable (one line naming the file and the key)."""


def _alternatives(words, *, flexible: bool = False) -> str:
    """One regex alternation of cue phrases, longest first; ``flexible``: the spaces inside a
    phrase also match hyphens ("34-year-old")."""
    items = sorted({w.strip() for w in words if w.strip()}, key=len, reverse=True)
    parts = [r"\s*-?\s*".join(re.escape(p) for p in w.split()) if flexible else r"\s+".join(
        re.escape(p) for p in w.split()) for w in items]
    return "|".join(parts)


@dataclass(frozen=True)
class Cues:
    """The compiled cue patterns of :func:`load_cues` (``None`` where no language lists a kind)."""

    languages: tuple[str, ...]
    names: re.Pattern | None
    places: re.Pattern | None
    ages: tuple[re.Pattern, ...]
    calendar: frozenset[str]


def cues_path() -> Path:
    return config.PARAMS_DIR / CUES_FILE_NAME


def _calendar_words(languages) -> frozenset[str]:
    """Month and weekday names (wide, format and stand-alone) of each language, casefolded."""
    from babel import Locale, UnknownLocaleError

    words: set[str] = set()
    for code in languages:
        try:
            locale = Locale.parse(code)
        except (UnknownLocaleError, ValueError):
            continue  # a language CLDR does not know: its cues still apply
        for table in (locale.months, locale.days):
            for context in ("format", "stand-alone"):
                words.update(str(v).casefold() for v in (table.get(context, {}).get("wide") or {}).values())
    return frozenset(words)


def load_cues(path: Path | str | None = None) -> Cues:
    """Read and compile the cue words of ``params/scrubbing.yml`` (or ``path``).

    Raises
    ------
    ScrubError
        One line naming the file and the key: no ``languages`` mapping, an unknown kind of cue
        (the kinds are :data:`CUE_KINDS`), a kind that is not a list of words.
    """
    path = Path(path) if path else cues_path()
    return _load_cues(path.resolve(), path.stat().st_mtime_ns if path.exists() else 0)


@lru_cache(maxsize=8)
def _load_cues(path: Path, _mtime: int) -> Cues:
    data = config.read_yaml_mapping(path, ScrubError, "scrubbing cue words")
    languages = data.get("languages")
    if not isinstance(languages, dict) or not languages:
        raise ScrubError(f"{path}: key 'languages' must map each language code to its cue words")
    found: dict[str, list[str]] = {kind: [] for kind in CUE_KINDS}
    for code, kinds in languages.items():
        if not isinstance(kinds, dict):
            raise ScrubError(f"{path}: key 'languages.{code}' must map kinds of cue ({', '.join(CUE_KINDS)}) to words")
        for kind, words in kinds.items():
            if kind not in CUE_KINDS:
                raise ScrubError(f"{path}: key 'languages.{code}.{kind}' is not a kind of cue; "
                                 f"use one of {', '.join(CUE_KINDS)}")
            if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
                raise ScrubError(f"{path}: key 'languages.{code}.{kind}' must be a list of words")
            found[kind] += words
    names = []
    if found["introductions"]:
        names.append(rf"\b(?i:{_alternatives(found['introductions'])})\s+")
    if found["titles"]:
        names.append(rf"\b(?:{_alternatives(found['titles'])})\.?\s+")
    ages = []
    if found["ages_after"]:
        ages.append(re.compile(rf"\b{_AGE}\s*-?\s*(?:{_alternatives(found['ages_after'], flexible=True)})\b",
                               re.IGNORECASE))
    if found["ages_before"]:
        ages.append(re.compile(rf"\b(?:{_alternatives(found['ages_before'])})\s+{_AGE}\b", re.IGNORECASE))
    return Cues(
        languages=tuple(str(c) for c in languages),
        names=re.compile(rf"(?:{'|'.join(names)}){_NAME}") if names else None,
        places=re.compile(rf"\b(?i:{_alternatives(found['places'])})\s+{_PLACE}") if found["places"] else None,
        ages=tuple(ages),
        calendar=_calendar_words(languages),
    )


@lru_cache(maxsize=1)
def allowed_places() -> frozenset[str]:
    """Country and admin-1 names (casefolded) that a quote may keep."""
    import csv

    import pycountry

    names = set()
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
    cues : Cues, optional
        The cue words (:func:`load_cues`; default: ``params/scrubbing.yml``).
    """

    def __init__(self, names=(), places=(), cues: Cues | None = None):
        self.cues = cues or load_cues()
        self._keep = allowed_places() | self.cues.calendar  # once: the union is large
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
        for pattern in self.cues.ages:
            text, n = pattern.subn(PLACEHOLDERS["age"], text)
            self.counts["age"] += n
        if self.names is not None:
            text, n = self.names.subn(PLACEHOLDERS["name"], text)
            self.counts["name"] += n
        if self.cues.names is not None:
            spans = [m.span(1) for m in self.cues.names.finditer(text) if not m.group(1).startswith("[")]
            text, n = _replace_spans(text, spans, PLACEHOLDERS["name"])
            self.counts["name"] += n
        if self.places is not None:
            text, n = self.places.subn(PLACEHOLDERS["place"], text)
            self.counts["place"] += n
        if self.cues.places is not None:
            keep = self._keep
            spans = [m.span(1) for m in self.cues.places.finditer(text) if m.group(1).casefold() not in keep
                     and m.group(1).split()[0].casefold() not in keep]
            text, n = _replace_spans(text, spans, PLACEHOLDERS["place"])
            self.counts["place"] += n
        return text

    def log(self) -> dict[str, int]:
        """Redactions by kind (only kinds that occurred), for the row accounting."""
        return {kind: int(n) for kind, n in sorted(self.counts.items()) if n}
