"""Translations of the catalogue and locale formats (seven languages), with the translators' workflow.

The English texts live where they always have (``params/indicators.yml``, ``params/groups.yml``,
``params/report.yml``); :func:`catalogue_strings` reads every reader-facing label there under a
stable dotted key (``indicators.food_insecurity.label``, ``dimensions.sex.category_labels.female``,
``chapters.group_profile.title``...). Each language has one file, ``params/i18n/<lang>.yml``::

    language: fr
    reviewed: false          # machine-quality placeholders until a translator signs them off
    strings:
      indicators.food_insecurity.label:
        text: Insécurité alimentaire
        source: Food insecurity      # the English text this translates: a changed English text
                                     # makes the translation "stale"
    plurals:                 # gettext-style plural forms, by CLDR category (Babel's rules)
      estimates: {one: "{n} estimation", many: "{n} d'estimations", other: "{n} estimations"}
    countries: {}            # overrides of the CLDR country names (ISO3 -> name)

A new key in the catalogue needs nothing here: :func:`check` lists it as missing in every
language, the PO export carries it to translators with an empty ``msgstr``, and the PO import
writes it back. ``python -m analysis translations --check`` prints what is missing and stale per
language; ``--export-po DIR`` and ``--import-po FILE --lang xx`` move strings to and from
translators (gettext PO files, written and read with Babel).

Numbers, percents and dates follow the locale's CLDR conventions through Babel
(``format_percent(..., decimal_quantization=False)``: French ``42,4 %``); plural forms follow
the locale's CLDR plural rules (``Locale.plural_form``); country names come from one source, CLDR
territory names via Babel, with per-language overrides.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from analysis import config

I18N_DIR: Path = config.PARAMS_DIR / "i18n"
LANGUAGES_FILE: Path = I18N_DIR / "languages.yml"
SOURCE_LANGUAGE = "en"
#: The environment variable that names the page language of a run (read by :func:`page_language`).
LANGUAGE_VARIABLE = "ANALYSIS_LANG"
#: Fields of a source card a language file may translate (``sources:``): the partners' own words.
SOURCE_CARD_FIELDS = ("title", "licence")


def page_language() -> str:
    """The page language of this process: ``ANALYSIS_LANG`` or English."""
    return (os.environ.get(LANGUAGE_VARIABLE) or SOURCE_LANGUAGE).strip() or SOURCE_LANGUAGE


class TranslationError(ValueError):
    """A translation file or PO file is unusable, or a language is unknown (one line)."""


# ---------------------------------------------------------------------------------------------
# The catalogue's English strings


def _walk(data, prefix: str, keys: dict) -> None:
    if isinstance(data, dict):
        for k, v in data.items():
            _walk(v, f"{prefix}.{k}" if prefix else str(k), keys)
    elif isinstance(data, list):  # a list of sentences: one key per item (``....sentences.0``)
        for i, v in enumerate(data):
            _walk(v, f"{prefix}.{i}" if prefix else str(i), keys)
    elif isinstance(data, str):
        keys[prefix] = data.strip()


def _matches(key: str, pattern: str) -> bool:
    """Dot-path match: ``*`` is one segment, ``**`` one or more (``"**"`` alone: every key)."""
    return _match_parts(key.split("."), pattern.split("."))


def _match_parts(parts: list[str], wanted: list[str]) -> bool:
    if not wanted:
        return not parts
    if wanted[0] == "**":
        return any(_match_parts(parts[i:], wanted[1:]) for i in range(1, len(parts) + 1))
    return bool(parts) and wanted[0] in ("*", parts[0]) and _match_parts(parts[1:], wanted[1:])


def _catalogue_entries(folder: Path, params: Path) -> list[dict]:
    """The ``catalogue:`` entries of ``languages.yml``, one per params file.

    A ``file`` may be a glob (``codebooks/*.yml``: every codebook); its ``prefix`` may name the
    file's stem (``codebooks.{stem}``), so that each file's keys stay apart.
    """
    spec = config.read_yaml_mapping(folder / "languages.yml", TranslationError, "languages file")
    entries = spec.get("catalogue")
    if not isinstance(entries, list) or not entries:
        raise TranslationError(f"{folder / 'languages.yml'}: key 'catalogue' must list {{file, keys}}")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("file") or not isinstance(entry.get("keys"), list):
            raise TranslationError(f"{folder / 'languages.yml'}: key 'catalogue[{i}]' needs file and keys")
        names = ([p.relative_to(params).as_posix() for p in sorted(params.glob(entry["file"]))]
                 if any(ch in entry["file"] for ch in "*?[") else [entry["file"]])
        for name in names:
            prefix = str(entry.get("prefix") or "").replace("{stem}", Path(name).stem)
            out.append({"file": name, "keys": entry["keys"], "prefix": prefix})
    return out


def _notebook_strings(folder: Path, params: Path) -> dict[str, str]:
    """The Markdown cells of the chapter notebooks (``notebooks:`` of ``languages.yml``, a glob
    relative to the project root), keyed ``notebooks.<notebook stem>.<cell id>``."""
    import json

    spec = config.read_yaml_mapping(folder / "languages.yml", TranslationError, "languages file")
    pattern = spec.get("notebooks")
    if not pattern:
        return {}
    out = {}
    for path in sorted(params.parent.glob(str(pattern))):
        try:
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            raise TranslationError(f"{path}: not a readable notebook") from None
        for i, cell in enumerate(cells):
            if cell.get("cell_type") == "markdown":
                source = "".join(cell.get("source") or []) if isinstance(cell.get("source"), list) else cell.get("source")
                if str(source).strip():
                    out[f"notebooks.{path.stem}.{cell.get('id') or i}"] = str(source).strip()
    return out


def translate_notebook(nb, notebook: str, lang: Language | str | None) -> object:
    """The notebook's Markdown cells in ``lang`` (in place; ``nb`` an nbformat notebook).

    A cell is replaced by its current translation (``notebooks.<stem>.<cell id>``) when its text
    is still the English the translation was made from; other cells stay as they are (the check
    lists them as missing or stale).
    """
    code = lang.code if isinstance(lang, Language) else lang
    if not code or code == SOURCE_LANGUAGE:
        return nb
    language = lang if isinstance(lang, Language) else load_language(code)
    stem = Path(notebook).stem
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "markdown":
            continue
        entry = language.strings.get(f"notebooks.{stem}.{cell.get('id') or i}")
        source = "".join(cell.source) if isinstance(cell.source, list) else str(cell.source)
        if entry and entry["source"] == source.strip() and entry["text"].strip():
            cell.source = entry["text"]
    return nb


def catalogue_strings(params_dir: Path | str | None = None, i18n_dir: Path | str | None = None) -> dict[str, str]:
    """Every reader-facing string of the catalogue, by dotted key, in English.

    Which keys of which params files are translatable is listed in ``languages.yml``
    (``catalogue:``: the labels of ``indicators.yml`` and ``groups.yml``, the titles of
    ``report.yml``, every text of ``text.yml``, the labels of the evidence and Voices chapters
    and of every codebook). Categories whose YAML key is not a string (``"yes"``) keep their
    text form.
    """
    params = Path(params_dir) if params_dir else config.PARAMS_DIR
    folder = Path(i18n_dir) if i18n_dir else I18N_DIR
    out: dict[str, str] = {}
    for entry in _catalogue_entries(folder, params):
        found: dict[str, str] = {}
        _walk(config.read_yaml_mapping(params / entry["file"], TranslationError, "catalogue file"), "", found)
        prefix = f"{entry['prefix']}." if entry["prefix"] else ""
        for key, text in found.items():
            if any(_matches(key, pattern) for pattern in entry["keys"]):
                out[prefix + key] = text
    out.update(_notebook_strings(folder, params))
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------------------------
# Languages and their files


@dataclass
class Language:
    """One language of the report."""

    code: str                  # BCP 47 / Babel locale identifier, e.g. "fr", "zh"
    name: str                  # its own name (autonym), for the language switch
    dir: str = "ltr"           # "rtl" for Arabic
    reviewed: bool = False
    strings: dict[str, dict] = field(default_factory=dict)
    plurals: dict[str, dict] = field(default_factory=dict)
    countries: dict[str, str] = field(default_factory=dict)
    #: translated titles and licences of source cards: ``{source id: {"title": {text, source}}}``
    #: (the partners' own words: optional; a missing one shows the original, marked as such)
    sources: dict[str, dict] = field(default_factory=dict)
    path: Path | None = None

    @property
    def locale(self):
        from babel import Locale

        return Locale.parse(self.code)


def languages(i18n_dir: Path | str | None = None) -> dict[str, dict]:
    """The languages of ``languages.yml``: code -> {name, dir}, in order (English first)."""
    folder = Path(i18n_dir) if i18n_dir else I18N_DIR
    data = config.read_yaml_mapping(folder / "languages.yml", TranslationError, "languages file")
    spec = data.get("languages")
    if not isinstance(spec, dict) or SOURCE_LANGUAGE not in spec:
        raise TranslationError(f"{folder / 'languages.yml'}: key 'languages' must map codes to "
                               f"{{name, dir}} and include '{SOURCE_LANGUAGE}'")
    for code, entry in spec.items():
        if not isinstance(entry, dict) or "name" not in entry or entry.get("dir", "ltr") not in ("ltr", "rtl"):
            raise TranslationError(f"{folder / 'languages.yml'}: key 'languages.{code}' needs name and dir (ltr|rtl)")
    return spec


def load_language(code: str, i18n_dir: Path | str | None = None) -> Language:
    """Read ``params/i18n/<code>.yml`` (English needs no file: the catalogue is English)."""
    folder = Path(i18n_dir) if i18n_dir else I18N_DIR
    spec = languages(folder)
    if code not in spec:
        raise TranslationError(f"unknown language '{code}'; languages in {folder / 'languages.yml'}: "
                               + ", ".join(spec))
    entry = spec[code]
    lang = Language(code=code, name=entry["name"], dir=entry.get("dir", "ltr"), reviewed=code == SOURCE_LANGUAGE)
    path = folder / f"{code}.yml"
    if code == SOURCE_LANGUAGE and not path.exists():
        return lang
    data = config.read_yaml_mapping(path, TranslationError, "translation file")
    unknown = sorted(set(data) - {"language", "reviewed", "strings", "plurals", "countries", "sources"})
    if unknown:
        raise TranslationError(f"{path}: key '{unknown[0]}': unknown key (remove it or check its spelling)")
    if data.get("language") != code:
        raise TranslationError(f"{path}: key 'language' must be '{code}'")
    if not isinstance(data.get("reviewed"), bool):
        raise TranslationError(f"{path}: key 'reviewed' must be true or false (has a translator signed off?)")
    strings = data.get("strings") or {}
    for key, value in strings.items():
        if not (isinstance(value, dict) and isinstance(value.get("text"), str) and isinstance(value.get("source"), str)):
            raise TranslationError(f"{path}: key 'strings.{key}' needs text and source (the English it translates)")
    lang.reviewed = data["reviewed"]
    lang.strings = strings
    lang.plurals = data.get("plurals") or {}
    lang.countries = data.get("countries") or {}
    lang.sources = data.get("sources") or {}
    for sid, fields in lang.sources.items():
        for name, value in (fields or {}).items():
            if name not in SOURCE_CARD_FIELDS or not (isinstance(value, dict) and isinstance(value.get("text"), str)
                                                      and isinstance(value.get("source"), str)):
                raise TranslationError(f"{path}: key 'sources.{sid}.{name}' must be one of "
                                       f"{', '.join(SOURCE_CARD_FIELDS)} with text and source (the card's words)")
    lang.path = path
    return lang


def save_language(lang: Language) -> Path:
    """Write a language file (keys sorted, so that diffs stay small)."""
    path = lang.path or I18N_DIR / f"{lang.code}.yml"
    data = {"language": lang.code, "reviewed": lang.reviewed,
            "strings": {k: lang.strings[k] for k in sorted(lang.strings)},
            "plurals": lang.plurals, "countries": lang.countries}
    if lang.sources:
        data["sources"] = {k: lang.sources[k] for k in sorted(lang.sources)}
    header = (f"# {lang.name} ({lang.code}): translations of the catalogue's labels, keyed as in "
              "analysis.i18n.catalogue_strings.\n# reviewed: false means machine-quality placeholders "
              "that a translator has not signed off.\n")
    path.write_text(header + yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100),
                    encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Looking strings up, and locale formats


def translate(key: str, lang: Language | str, catalogue: dict[str, str] | None = None) -> str:
    """The text of ``key`` in ``lang``; the English text when there is no (current) translation."""
    catalogue = catalogue if catalogue is not None else catalogue_strings()
    if key not in catalogue:
        raise TranslationError(f"'{key}' is not a key of the catalogue")
    lang = load_language(lang) if isinstance(lang, str) else lang
    entry = lang.strings.get(key)
    if entry is None or entry["source"] != catalogue[key]:
        return catalogue[key]
    return entry["text"]


def plural(key: str, n: int, lang: Language | str) -> str:
    """A count in words with the locale's plural form (CLDR rules through Babel)."""
    lang = load_language(lang) if isinstance(lang, str) else lang
    forms = lang.plurals.get(key)
    if not forms:
        raise TranslationError(f"{lang.path or lang.code}: key 'plurals.{key}' is missing")
    category = lang.locale.plural_form(abs(n))
    text = forms.get(category, forms.get("other"))
    if text is None:
        raise TranslationError(f"{lang.path or lang.code}: key 'plurals.{key}.{category}' is missing")
    return text.format(n=format_number(n, lang))


def format_percent(share: float, lang: Language | str, digits: int = 1) -> str:
    """A share (0-1) as a percent in the locale: ``0.424`` -> ``42.4%`` (en), ``42,4 %`` (fr).

    Rounded to ``digits`` decimals of the percent first, then formatted with
    ``decimal_quantization=False`` so that the locale pattern does not drop the decimals.
    """
    from babel.numbers import format_percent as babel_percent

    code = lang if isinstance(lang, str) else lang.code
    return babel_percent(round(float(share) * 100, digits) / 100, locale=code, decimal_quantization=False)


def format_number(value: float, lang: Language | str, digits: int | None = None) -> str:
    """A number with the locale's separators (``1 234,5`` in French)."""
    from babel.numbers import format_decimal

    code = lang if isinstance(lang, str) else lang.code
    number = round(float(value), digits) if digits is not None else value
    return format_decimal(number, locale=code, decimal_quantization=False)


def format_fixed(value: float, lang: Language | str, decimals: int = 1, *, grouping: bool = False) -> str:
    """A number with exactly ``decimals`` decimals and the locale's decimal sign (``42,4`` in
    French, ``42.4`` in English), for displayed tables. ``grouping`` adds the locale's digit
    grouping (``1 234`` in French, ``1,234`` in English: counts of respondents).

    Rounded half to even on the float, as ``f"{value:.1f}"`` does, so that every language shows
    the same digits and only the signs differ.
    """
    from babel.numbers import format_decimal

    code = lang if isinstance(lang, str) else lang.code
    pattern = ("#,##0" if grouping else "0") + ("." + "0" * decimals if decimals > 0 else "")
    rounded = float(f"{float(value):.{max(decimals, 0)}f}")
    return format_decimal(rounded, format=pattern, locale=code)


def format_date(date: dt.date, lang: Language | str) -> str:
    """A date in the locale's long format (``1 décembre 2026``)."""
    from babel.dates import format_date as babel_date

    code = lang if isinstance(lang, str) else lang.code
    return babel_date(date, format="long", locale=code)


def country_name(iso3: str, lang: Language | str) -> str:
    """The country's name in the language: the file's override, else CLDR (via Babel)."""
    import pycountry

    lang = load_language(lang) if isinstance(lang, str) else lang
    if iso3 in lang.countries:
        return lang.countries[iso3]
    entry = pycountry.countries.get(alpha_3=iso3)
    if entry is None:
        raise TranslationError(f"'{iso3}' is not an ISO 3166-1 alpha-3 code")
    return lang.locale.territories.get(entry.alpha_2) or entry.name


def source_card_text(source: str, field_name: str, original: str, lang: Language | str | None = None) -> str:
    """A source card's ``title`` or ``licence`` in the page language (default: ``ANALYSIS_LANG``).

    The language file's ``sources.<id>.<field>`` when it translates this very original (a card
    whose words changed shows the new original until it is re-translated); otherwise the original,
    marked as such in the page language (``text.common.original_text``: "… (original wording)"),
    so that a reader knows the words were not translated. English pages show the card as written.
    """
    code = (lang.code if isinstance(lang, Language) else lang) or page_language()
    if code == SOURCE_LANGUAGE or not str(original).strip():
        return original
    language = lang if isinstance(lang, Language) else load_language(code)
    entry = (language.sources.get(source) or {}).get(field_name)
    if entry and entry["source"].strip() == str(original).strip() and entry["text"].strip():
        return entry["text"]
    template = translate("text.common.original_text", language)
    return template.format(text=original)


def _keep_spacing(original: str, translated: str) -> str:
    """The translation with the original's leading and trailing spaces: translators see texts
    stripped, but a template such as ``" And {count} more."`` is appended to another one."""
    lead = original[: len(original) - len(original.lstrip())]
    trail = original[len(original.rstrip()):]
    return lead + translated.strip() + trail


def _child(node, part: str):
    """``node[part]`` of a mapping, or of a list by index; None where there is none."""
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    return None


def translated_mapping(code: str, name: str, params_dir: Path | str | None = None,
                       i18n_dir: Path | str | None = None) -> dict:
    """The params file ``name`` (``exchange.yml``...) with every translatable string replaced by
    its current translation in ``code`` (English where one is missing or stale); the rest as is."""
    params = Path(params_dir) if params_dir else config.PARAMS_DIR
    folder = Path(i18n_dir) if i18n_dir else I18N_DIR
    return _translated(load_language(code, folder), name, params, _catalogue_entries(folder, params),
                       catalogue_strings(params, folder))


def _translated(lang: Language, name: str, params: Path, entries: list[dict], catalogue: dict) -> dict:
    data = config.read_yaml_mapping(params / name, TranslationError, "catalogue file")
    prefixes = [f"{e['prefix']}." if e["prefix"] else "" for e in entries if e["file"] == name]
    for key in catalogue:
        for prefix in prefixes:
            if prefix and not key.startswith(prefix):
                continue
            path = key[len(prefix):].split(".")
            node = data
            for part in path[:-1]:
                node = _child(node, part)
            last = int(path[-1]) if isinstance(node, list) and path[-1].isdigit() else path[-1]
            if isinstance(_child(node, path[-1]), str):
                node[last] = _keep_spacing(node[last], translate(key, lang, catalogue))
    return data


def translated_params(code: str, dest: Path | str, params_dir: Path | str | None = None,
                      i18n_dir: Path | str | None = None) -> list[Path]:
    """Write translated copies of the catalogue's params files into ``dest``.

    Every translatable string (see ``languages.yml``) is replaced by its current translation
    (the English stays where a translation is missing or stale); everything else is copied as
    is. As the catalogue's files say, a translated copy relabels the whole report: the chapter
    layer reads its labels from these files (``analysis.schema.load_indicators(path)`` ...,
    :func:`analysis.config.catalogue_file`).
    """
    params = Path(params_dir) if params_dir else config.PARAMS_DIR
    folder = Path(i18n_dir) if i18n_dir else I18N_DIR
    lang = load_language(code, folder)
    entries = _catalogue_entries(folder, params)
    catalogue = catalogue_strings(params, folder)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in dict.fromkeys(entry["file"] for entry in entries):
        data = _translated(lang, name, params, entries, catalogue)
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"# {lang.name} ({code}) copy of params/{name}, written by analysis.i18n.translated_params"
                          + (" (machine-quality placeholder translations, not reviewed)" if not lang.reviewed else "")
                          + "\n" + yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100),
                          encoding="utf-8")
        written.append(target)
    return written


# ---------------------------------------------------------------------------------------------
# The translators' workflow


def _placeholders(template: str) -> set[str]:
    """Named placeholders of a template (``{group}``, ``{pct:.0f}``); none if it is no template."""
    import string

    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f}
    except ValueError:
        return {"(malformed)"}


@dataclass
class Status:
    """What a language lacks: keys with no translation, translations of an older English text,
    translations of keys the catalogue no longer has, plural forms missing a CLDR category."""

    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    plural_gaps: list[str] = field(default_factory=list)
    #: translations of a template whose placeholders differ from the English ones ({group}...):
    #: the page would fail or lose a value, so they count as incomplete
    placeholders: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.stale or self.plural_gaps or self.placeholders)


def check(codes=None, i18n_dir: Path | str | None = None, catalogue: dict[str, str] | None = None) -> dict[str, Status]:
    """The status of every language but English (or of ``codes``)."""
    catalogue = catalogue if catalogue is not None else catalogue_strings(i18n_dir=i18n_dir)
    spec = languages(i18n_dir)
    english_plurals = set(load_language(SOURCE_LANGUAGE, i18n_dir).plurals)
    out = {}
    for code in codes or [c for c in spec if c != SOURCE_LANGUAGE]:
        lang = load_language(code, i18n_dir)
        status = Status()
        for key, english in catalogue.items():
            entry = lang.strings.get(key)
            if entry is None or not entry["text"].strip():
                status.missing.append(key)
            elif entry["source"] != english:
                status.stale.append(key)
            elif _placeholders(entry["text"]) != _placeholders(english):
                status.placeholders.append(key)
        status.unknown = sorted(set(lang.strings) - set(catalogue))
        categories = set(lang.locale.plural_form.tags) | {"other"}
        for key in sorted(english_plurals | set(lang.plurals)):
            forms = lang.plurals.get(key) or {}
            gaps = sorted(categories - set(forms))
            if gaps:
                status.plural_gaps.append(f"{key} ({', '.join(gaps)})")
        out[code] = status
    return out


def export_po(code: str, path: Path | str, i18n_dir: Path | str | None = None,
              catalogue: dict[str, str] | None = None) -> Path:
    """Write a gettext PO file of the catalogue for one language (msgctxt = key, msgid = English).

    Current translations fill ``msgstr``; stale ones and every string of a language that no
    translator has signed off are marked ``fuzzy``; missing ones have an empty ``msgstr``.
    """
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    catalogue = catalogue if catalogue is not None else catalogue_strings(i18n_dir=i18n_dir)
    lang = load_language(code, i18n_dir)
    po = Catalog(locale=code, project="analysis catalogue", domain="catalogue")
    for key, english in catalogue.items():
        entry = lang.strings.get(key)
        text = entry["text"] if entry else ""
        fuzzy = bool(entry) and (entry["source"] != english or not lang.reviewed)
        po.add(english, string=text, context=key, flags=("fuzzy",) if fuzzy else ())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        write_po(f, po, width=100, include_previous=False)
    return path


def import_po(code: str, path: Path | str, *, reviewed: bool | None = None,
              i18n_dir: Path | str | None = None, catalogue: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Read a translator's PO file back into ``params/i18n/<code>.yml``.

    Every message with a ``msgctxt`` that is a catalogue key and a non-empty ``msgstr`` replaces
    the translation (its ``source`` becomes the ``msgid`` it translated). ``reviewed=True``
    records the translator's sign-off for the language.

    Returns
    -------
    (int, list of str)
        How many strings were written, and the contexts that are not catalogue keys (ignored).
    """
    from babel.messages.pofile import read_po

    catalogue = catalogue if catalogue is not None else catalogue_strings(i18n_dir=i18n_dir)
    lang = load_language(code, i18n_dir)
    path = Path(path)
    try:
        with path.open("rb") as f:
            po = read_po(f, locale=code)
    except Exception as exc:  # noqa: BLE001 - Babel raises several kinds; name the file
        raise TranslationError(f"{path}: not a readable PO file ({type(exc).__name__})") from None
    written, ignored = 0, []
    for message in po:
        if not message.id or not message.context:
            continue
        if message.context not in catalogue:
            ignored.append(message.context)
            continue
        if isinstance(message.string, str) and message.string.strip():
            lang.strings[message.context] = {"text": message.string.strip(), "source": str(message.id)}
            written += 1
    if reviewed is not None:
        lang.reviewed = reviewed
    save_language(lang)
    return written, ignored


# ---------------------------------------------------------------------------------------------
# Command line: python -m analysis translations


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true",
                        help="list missing and stale strings per language (exit 1 if any)")
    parser.add_argument("--lang", action="append", default=None,
                        help="only this language (repeatable; default: every language but English)")
    parser.add_argument("--export-po", metavar="DIR", default=None,
                        help="write <DIR>/<lang>.po for translators")
    parser.add_argument("--import-po", metavar="FILE", default=None,
                        help="read a translated PO file into params/i18n/<lang>.yml (needs one --lang)")
    parser.add_argument("--reviewed", action="store_true",
                        help="with --import-po: record that a translator signed the language off")


def main(args: argparse.Namespace) -> int:
    try:
        if args.import_po:
            if not args.lang or len(args.lang) != 1:
                print("error: --import-po needs exactly one --lang", file=sys.stderr)
                return 2
            written, ignored = import_po(args.lang[0], args.import_po, reviewed=True if args.reviewed else None)
            print(f"{args.lang[0]}: {written} strings written to params/i18n/{args.lang[0]}.yml"
                  + (f"; {len(ignored)} unknown keys ignored (e.g. {ignored[0]})" if ignored else ""))
            return 0
        if args.export_po:
            codes = args.lang or [c for c in languages() if c != SOURCE_LANGUAGE]
            for code in codes:
                print(export_po(code, Path(args.export_po) / f"{code}.po"))
            return 0
        statuses = check(args.lang)
    except TranslationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    spec = languages()
    incomplete = False
    for code, status in statuses.items():
        reviewed = load_language(code).reviewed
        state = "reviewed" if reviewed else "machine-quality placeholders, not reviewed"
        print(f"{code} ({spec[code]['name']}, {state}): {len(status.missing)} missing, "
              f"{len(status.stale)} stale, {len(status.unknown)} unknown, {len(status.plural_gaps)} plural gaps, "
              f"{len(status.placeholders)} with other placeholders than the English")
        for kind in ("missing", "stale", "unknown", "plural_gaps", "placeholders"):
            for key in getattr(status, kind):
                print(f"  {kind.replace('_', ' ')}: {key}")
        incomplete |= not status.complete
    if args.check and incomplete:
        return 1
    return 0
