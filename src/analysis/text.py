"""Every word a reader sees, looked up in the text catalogue (``params/text.yml``).

Chapter titles, figure titles and captions, table headings, narrative sentence templates and the
small words of the report ("Source:", "All respondents", "suppressed") live in one YAML file,
organised by chapter and page; code asks for them by a dotted key::

    text("group_profile.figure.profile.title", group="Persons with disabilities", ...)

Templates use Python format syntax with *named* placeholders (``{group}``, ``{pct:.0f}``). The
lookup is the only way code reaches the catalogue, so a translated copy replaces it without a code
change: the language comes from one place, the environment variable ``ANALYSIS_LANG`` (default
``"en"``, read on every call so a kernel started with another value uses it). English is
``params/text.yml``; another language ``<lang>`` is the English file with the translations of
``params/i18n/<lang>.yml`` (keys ``text.<key>``, the translators' workflow of :mod:`analysis.i18n`:
``python -m analysis translations --check`` names what is missing or stale); a text with no
current translation stays English, and the check says so. The environment variable
``ANALYSIS_TEXT_FILE`` names a catalogue file explicitly (the pipeline points a run in another
language at the translated copy it wrote, ``outputs/<lang>/params/text.yml``; tests use it to
render a page with a relabelled copy).

Each file is read once per process (and again only if it changes on disk) and validated when it is
read: a mapping of mappings whose every leaf is a string.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

from analysis import config, i18n

#: Environment variable holding the report language (ISO 639-1 code).
LANGUAGE_VARIABLE = i18n.LANGUAGE_VARIABLE
#: Environment variable naming a text catalogue file explicitly (overrides the language's file).
TEXT_FILE_VARIABLE = "ANALYSIS_TEXT_FILE"
#: The language of ``params/text.yml``.
DEFAULT_LANGUAGE = i18n.SOURCE_LANGUAGE

_CACHE: dict[Path, tuple[float, dict[str, str]]] = {}
_FORMATTER = string.Formatter()


class TextError(KeyError):
    """A text key or placeholder is wrong, or the text catalogue is malformed; one line says which."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def language() -> str:
    """The report language: ``ANALYSIS_LANG`` or ``"en"`` (:func:`analysis.i18n.page_language`)."""
    return i18n.page_language()


def text_file(lang: str | None = None) -> Path:
    """The English catalogue file, or ``ANALYSIS_TEXT_FILE`` when set (and ``lang`` is not given).

    Another language has no file of its own here: its texts are the English file's with the
    translations of ``params/i18n/<lang>.yml`` (:func:`current_texts`)."""
    explicit = os.environ.get(TEXT_FILE_VARIABLE)
    if explicit and lang is None:
        return Path(explicit)
    return config.PARAMS_DIR / "text.yml"


_TRANSLATED: dict[tuple, dict[str, str]] = {}


def current_texts() -> tuple[dict[str, str], Path]:
    """Every text in the report language, and the file to name in messages.

    ``ANALYSIS_TEXT_FILE`` wins; English is ``params/text.yml``; another language is the English
    texts with its current translations (``params/i18n/<lang>.yml``; a missing or stale one keeps
    the English, which ``python -m analysis translations --check`` lists).
    """
    path = text_file()
    english = load_texts(path)
    lang = language()
    if os.environ.get(TEXT_FILE_VARIABLE) or lang == DEFAULT_LANGUAGE:
        return english, path
    i18n_file = i18n.I18N_DIR / f"{lang}.yml"
    try:
        stamp = (path.stat().st_mtime_ns, i18n_file.stat().st_mtime_ns)
    except OSError:
        raise TextError(f"{_display(i18n_file)}: no translation file for language '{lang}' "
                        f"({LANGUAGE_VARIABLE}); add it or set {LANGUAGE_VARIABLE}=en") from None
    cached = _TRANSLATED.get((lang, stamp))
    if cached is None:
        try:
            strings = i18n.load_language(lang).strings
        except i18n.TranslationError as exc:
            raise TextError(str(exc)) from None
        cached = dict(english)
        for key, template in english.items():
            entry = strings.get(f"text.{key}")
            if entry and entry["source"] == template.strip() and entry["text"].strip():
                cached[key] = i18n._keep_spacing(template, entry["text"])
        _TRANSLATED[(lang, stamp)] = cached
    return cached, i18n_file


def _display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(config.PROJECT_ROOT))
    except ValueError:
        return str(path)


def _flatten(node, prefix: str, where: str, out: dict[str, str]) -> None:
    for key, value in node.items():
        if not isinstance(key, str) or not key or "." in key:
            raise TextError(f"{where}: key {key!r} under '{prefix or '(top)'}' must be a non-empty "
                            "name without dots")
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            if not value:
                raise TextError(f"{where}: '{dotted}' is an empty mapping; add its texts or remove it")
            _flatten(value, dotted, where, out)
        elif isinstance(value, str):
            try:
                fields = [f for _, f, _, _ in _FORMATTER.parse(value) if f is not None]
            except ValueError as exc:
                raise TextError(f"{where}: '{dotted}' is not a valid template ({exc}); "
                                "write a literal brace as {{ or }}") from None
            if any(not f or not f.isidentifier() for f in fields):
                raise TextError(f"{where}: '{dotted}' has a placeholder that is not a name; "
                                "use named placeholders such as {group}")
            out[dotted] = value
        else:
            raise TextError(f"{where}: '{dotted}' must be a string (quote it) or a mapping, "
                            f"not {type(value).__name__}")


def load_texts(path: Path | str | None = None) -> dict[str, str]:
    """Every text of a catalogue file, flattened to dotted keys (read once, validated).

    Raises
    ------
    TextError
        The file is missing or not YAML, a value is not a string, a key contains a dot, or a
        template is malformed.
    """
    path = Path(path) if path else text_file()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        raise TextError(f"{_display(path)}: text catalogue not found"
                        + (f" (language '{language()}': add the file or set {LANGUAGE_VARIABLE}=en)"
                           if language() != DEFAULT_LANGUAGE else "")) from None
    cached = _CACHE.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    data = config.read_yaml_mapping(path, TextError, "text catalogue")
    flat: dict[str, str] = {}
    _flatten(data, "", _display(path), flat)
    _CACHE[path] = (stamp, flat)
    return flat


def placeholders(template: str) -> set[str]:
    """The named placeholders of a template (``"{a} and {b:.0f}"`` → ``{"a", "b"}``)."""
    return {f for _, f, _, _ in _FORMATTER.parse(template) if f}


def text(key: str, **values) -> str:
    """The reader-facing text of ``key`` in the report language, with ``values`` filled in.

    Parameters
    ----------
    key
        Dotted key into the catalogue, e.g. ``"common.source_note"``.
    **values
        Values of the template's named placeholders. Every placeholder needs a value; values the
        template does not use are allowed (a translation may leave one out).

    Raises
    ------
    TextError
        One line naming the catalogue file and the key: the key does not exist (or names a
        section, not a text), or a placeholder of the template has no value.
    """
    texts, path = current_texts()
    template = texts.get(key)
    if template is None:
        if any(k.startswith(key + ".") for k in texts):
            raise TextError(f"{_display(path)}: '{key}' is a section, not a text; "
                            "ask for one of its keys")
        raise TextError(f"{_display(path)}: no text '{key}'; add it to the catalogue")
    missing = sorted(placeholders(template) - set(values))
    if missing:
        raise TextError(f"{_display(path)}: text '{key}' needs a value for "
                        f"{', '.join('{' + m + '}' for m in missing)}; pass it to text() "
                        "or remove the placeholder from the catalogue")
    try:
        return template.format(**values)
    except (ValueError, TypeError) as exc:
        raise TextError(f"{_display(path)}: text '{key}' cannot format its values ({exc})") from None


def has_text(key: str) -> bool:
    """True when ``key`` is a text of the current catalogue."""
    return key in current_texts()[0]


def lower_first(label: str) -> str:
    """A label to use inside a sentence: first letter lower-cased unless the first word is an
    acronym or a name written in capitals ("Persons with disabilities" → "persons with
    disabilities", "COVID-19 deaths" stays). Only the first letter changes, so "COVID-19" later in
    a label keeps its case."""
    label = str(label)
    first = label.split(" ", 1)[0]
    if len(first) > 1 and sum(ch.isupper() for ch in first) > 1:
        return label
    return label[:1].lower() + label[1:]


def plural_form(count, lang: str | None = None) -> str:
    """CLDR plural category of ``count`` in ``lang`` (default: the report language), by Babel's
    plural rules: English "one"/"other", French "one" for 0 and 1, Arabic zero/one/two/few/many/
    other. A category the catalogue lacks falls back to "other" (:func:`text_count`)."""
    lang = lang or language()
    if lang == DEFAULT_LANGUAGE:
        return "one" if count == 1 else "other"
    from babel import Locale, UnknownLocaleError

    try:
        return Locale.parse(lang).plural_form(abs(count))
    except (UnknownLocaleError, ValueError, TypeError):
        return "one" if count == 1 else "other"


def text_count(key: str, count, **values) -> str:
    """:func:`text` of the plural form of ``key`` for ``count`` (``<key>.one`` / ``<key>.other``),
    with ``count`` passed as a value. Falls back to ``<key>.other`` when the form is absent."""
    form = f"{key}.{plural_form(count)}"
    if not has_text(form):
        form = f"{key}.other"
    return text(form, count=count, **values)
