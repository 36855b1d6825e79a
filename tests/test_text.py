"""The text catalogue (params/text.yml) and its lookup (analysis.text): every word a reader sees.

Checks the lookup and its one-line errors, that every key the code and notebooks ask for exists,
and that no chapter module holds a reader-facing English literal (titles, captions, headings,
narrative): they must come from the catalogue so that a translated copy relabels the report.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from analysis import config
from analysis import text as text_module
from analysis.text import TextError, load_texts, lower_first, text, text_count

ROOT = config.PROJECT_ROOT
CHAPTERS = sorted((config.SRC_DIR / "chapters").glob("*.py"))
#: Modules whose text calls are checked against the catalogue.
CODE = sorted(config.SRC_DIR.rglob("*.py"))
NOTEBOOKS = sorted(config.NOTEBOOKS_DIR.glob("*.ipynb"))


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    """Write a small catalogue and point the lookup at it; returns a writer for other contents."""

    def write(data) -> Path:
        path = tmp_path / "text.yml"
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True),
                        encoding="utf-8")
        monkeypatch.setenv(text_module.TEXT_FILE_VARIABLE, str(path))
        return path

    write({"page": {"title": "{group} in {country}", "plain": "Source:",
                    "count": {"one": "{count} cell", "other": "{count} cells"}}})
    return write


def test_lookup_fills_named_placeholders(catalogue):
    assert text("page.title", group="Women", country="Kenya") == "Women in Kenya"
    assert text("page.plain") == "Source:"
    # values a template does not use are allowed (a translation may leave one out)
    assert text("page.plain", group="Women") == "Source:"


def test_plural_forms(catalogue):
    assert text_count("page.count", 1) == "1 cell"
    assert text_count("page.count", 3) == "3 cells"


@pytest.mark.parametrize("key, values, expected", [
    ("page.missing", {}, r"text\.yml: no text 'page\.missing'; add it to the catalogue"),
    ("page", {}, r"'page' is a section, not a text"),
    ("page.title", {"group": "Women"}, r"text 'page\.title' needs a value for \{country\}"),
])
def test_errors_name_the_file_and_the_key(catalogue, key, values, expected):
    with pytest.raises(TextError, match=expected) as info:
        text(key, **values)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content, expected", [
    ({"page": {"title": 3}}, r"'page\.title' must be a string \(quote it\) or a mapping, not int"),
    ({"page": {"title": ["a"]}}, r"'page\.title' must be a string"),
    ({"page": {"a.b": "x"}}, r"key 'a\.b' under 'page' must be a non-empty name without dots"),
    ({"page": {}}, r"'page' is an empty mapping"),
    ({"page": {"title": "{0} and {}"}}, r"placeholder that is not a name"),
    ({"page": {"title": "a { b"}}, r"is not a valid template"),
    ("page: [unclosed", r"text\.yml: line \d+ is not valid YAML"),
    ("- a list", r"must be a YAML mapping"),
])
def test_malformed_catalogue_is_refused_on_load(catalogue, content, expected):
    catalogue(content)
    with pytest.raises(TextError, match=expected):
        text("page.title")


def test_missing_language_file_says_what_to_do(monkeypatch):
    monkeypatch.delenv(text_module.TEXT_FILE_VARIABLE, raising=False)
    monkeypatch.setenv(text_module.LANGUAGE_VARIABLE, "xx")
    assert text_module.text_file() == config.PARAMS_DIR / "text.yml"
    with pytest.raises(TextError, match=r"i18n/xx\.yml: no translation file for language 'xx' .*ANALYSIS_LANG=en"):
        text("common.all_respondents")


def test_another_language_takes_its_current_translations(monkeypatch):
    monkeypatch.delenv(text_module.TEXT_FILE_VARIABLE, raising=False)
    monkeypatch.setenv(text_module.LANGUAGE_VARIABLE, "fr")
    assert text("common.all_respondents") == "Ensemble des répondants"
    # the leading space of a template that is appended to another one survives translation
    assert text("figures.alt.more_items", count=3).startswith(" ")
    assert text_module.plural_form(0) == "one" and text_module.plural_form(2) == "other"


def test_english_is_the_default(monkeypatch):
    monkeypatch.delenv(text_module.TEXT_FILE_VARIABLE, raising=False)
    monkeypatch.delenv(text_module.LANGUAGE_VARIABLE, raising=False)
    assert text_module.language() == "en"
    assert text_module.text_file() == config.PARAMS_DIR / "text.yml"
    assert text("common.all_respondents") == "All respondents"


def test_catalogue_is_read_once(catalogue, monkeypatch):
    text("page.plain")
    calls = []
    monkeypatch.setattr(text_module.config, "read_yaml_mapping", lambda *a, **k: calls.append(a) or {})
    text("page.plain")
    assert calls == []


def test_lower_first_keeps_acronyms():
    assert lower_first("Persons with disabilities") == "persons with disabilities"
    assert lower_first("Vaccinated against COVID-19") == "vaccinated against COVID-19"
    assert lower_first("COVID-19 deaths") == "COVID-19 deaths"
    assert lower_first("") == ""


# --------------------------------------------------------------------------------------------
# The project's catalogue against the code


_CALL = re.compile(r"""\b(?:text|text_count|has_text)\(\s*(f?)(["'])([^"'{}]*(?:\{[^}]*\}[^"'{}]*)*)\2""")


def _keys_used() -> list[tuple[str, str, bool]]:
    """(where, key, dynamic) for every text lookup with a literal (or f-string) key."""
    found = []
    for path in CODE:
        for m in _CALL.finditer(path.read_text(encoding="utf-8")):
            found.append((str(path.relative_to(ROOT)), m.group(3), bool(m.group(1))))
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for m in _CALL.finditer(source):
            found.append((str(path.relative_to(ROOT)), m.group(3), bool(m.group(1))))
    return found


def test_every_key_used_in_code_exists_in_the_catalogue(monkeypatch):
    monkeypatch.delenv(text_module.TEXT_FILE_VARIABLE, raising=False)
    monkeypatch.delenv(text_module.LANGUAGE_VARIABLE, raising=False)
    texts = load_texts(config.PARAMS_DIR / "text.yml")
    used = _keys_used()
    assert len(used) > 100  # the scan finds the lookups (a broken pattern would find none)
    missing = []
    for where, key, dynamic in used:
        if dynamic:  # f"section.{name}": the literal part must start some key
            prefix = key.split("{", 1)[0]
            if prefix and not any(k.startswith(prefix) for k in texts):
                missing.append(f"{where}: {key}")
        elif key not in texts and f"{key}.other" not in texts:
            missing.append(f"{where}: {key}")
    assert not missing, "keys not in params/text.yml: " + "; ".join(missing)


def test_project_catalogue_has_only_strings():
    data = yaml.safe_load((config.PARAMS_DIR / "text.yml").read_text(encoding="utf-8"))

    def leaves(node, prefix=""):
        for key, value in node.items():
            assert isinstance(key, str), f"params/text.yml: key {key!r} under {prefix} is not a string"
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    bad = [k for k, v in leaves(data) if not isinstance(v, str)]
    assert not bad, f"params/text.yml: not strings: {bad}"


# --------------------------------------------------------------------------------------------
# No reader-facing English in the chapter modules

#: Keyword arguments whose value a reader sees.
_READER_KEYWORDS = {"title", "caption", "source_note", "value_label", "legend_label", "label",
                    "row_title", "column_title"}
#: Words of two letters or more: a literal with one of these (outside errors and docstrings) is prose.
_WORD = re.compile(r"[A-Za-z]{2,}")
#: HTML tags inside a literal (``<td style="...">``): markup, not words.
_MARKUP = re.compile(r"<[^>]*>")
#: Literals that are identifiers, not text: column names, flags, methods, file names.
_IDENTIFIER = re.compile(r"^[a-z0-9_./:=|× -]*$")


#: Markup: tag names and attributes are not text a reader reads.
_TAG = re.compile(r"<[^>]*>")


def _literal_text(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _TAG.sub(" ", node.value)
    if isinstance(node, ast.JoinedStr):
        return _TAG.sub(" ", "".join(v.value for v in node.values
                                     if isinstance(v, ast.Constant) and isinstance(v.value, str)))
    return None


def _reader_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        # docstrings, error messages and dictionary keys used as column ids are not reader text
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)) and ast.get_docstring(node):
            skip.add(id(node.body[0].value))
        if isinstance(node, ast.Raise):
            skip.update(id(n) for n in ast.walk(node))
        # keys of text lookups (f"section.{name}") and the method column (a machine description
        # of the estimator, kept in the data, not a label)
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in {
                "text", "text_count", "has_text"}:
            skip.update(id(a) for a in node.args)
        if isinstance(node, ast.keyword) and node.arg == "method":
            skip.update(id(n) for n in ast.walk(node.value))
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "method" for t in node.targets):
            skip.update(id(n) for n in ast.walk(node.value))
    found = []

    def report(node, why):
        value = _literal_text(node)
        if value is not None:
            value = _MARKUP.sub("", value)  # HTML markup is not text a reader reads
        if value is None or id(node) in skip or not _WORD.search(value):
            return
        if _IDENTIFIER.match(value):
            return  # e.g. "group", "admin1_code", f"map_{source}", f"{path.stem}.log.json"
        found.append(f"{path.name}:{node.lineno}: {why}: {value!r}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg in _READER_KEYWORDS:
                    report(kw.value, f"{kw.arg}=")
                if kw.arg == "series_labels" and isinstance(kw.value, ast.Dict):
                    for v in kw.value.values:
                        report(v, "series label")
        elif isinstance(node, ast.Return) and node.value is not None:
            report(node.value, "returned text")
        elif isinstance(node, ast.Dict):
            for k in node.keys:  # table headings as dict keys ("Respondents": ...)
                if k is not None and _literal_text(k) is not None and not _IDENTIFIER.match(_literal_text(k)):
                    report(k, "heading")
            for v in node.values:
                if isinstance(v, ast.JoinedStr):
                    report(v, "cell text")
        elif isinstance(node, ast.JoinedStr) and id(node) not in skip:
            literal = _MARKUP.sub("", _literal_text(node) or "")
            if len(_WORD.findall(literal)) >= 2:
                report(node, "f-string")
    return found


def test_chapter_modules_hold_no_reader_facing_english():
    found = [line for path in CHAPTERS for line in _reader_literals(path)]
    assert not found, "move these to params/text.yml:\n" + "\n".join(found)


def test_scan_finds_reader_facing_english(tmp_path):
    """The scan itself: it catches each kind of literal it is meant to catch."""
    module = tmp_path / "chapter.py"
    module.write_text(
        'def f(run):\n'
        '    """Docstring: fine."""\n'
        '    plot(title=f"Gap between {a} and {b}")\n'
        '    save(caption="Hatched areas are suppressed.")\n'
        '    rows = {"Respondents": 3, "group": 1}\n'
        '    if run:\n'
        '        raise ValueError(f"no rows for {run}; set the parameter")\n'
        '    return f"The largest gap is in {x}"\n', encoding="utf-8")
    found = _reader_literals(module)
    kinds = {(int(line.split(":")[1]), line.split(": ", 2)[1]) for line in found}
    assert {(3, "title="), (4, "caption="), (5, "heading"), (8, "returned text")} <= kinds, found
    assert not any(line.startswith(("chapter.py:2:", "chapter.py:7:")) for line in found), found
