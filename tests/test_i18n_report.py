"""The report in every language (issue 16): ``python -m analysis run --lang fr --lang es ...``.

One chapter × one group × one country per language (tests/i18n_build.py), in French, Spanish,
Arabic, Portuguese, Russian and Chinese. Each page carries its
language (``lang``, ``dir``: Arabic right to left), a language switch linking the same page in
the other languages, and no English left of the catalogue: no label of params/indicators.yml,
groups.yml, report.yml, no text of params/text.yml and no Markdown cell of the notebook whose
translation differs, appears in the page (its frame, every cell, the figures' alt texts); source
titles are the translated ones, or the card's words marked as the original.
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analysis import config, i18n
from i18n_build import LANGUAGES, RUN_ID, page_path, session_build

#: one page built in six languages: minutes on a loaded machine
pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return session_build(tmp_path_factory)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


class _ChapterText(HTMLParser):
    """The text of a page: the frame (header, parameters, footer), the notebook's Markdown cells,
    every output of the code cells and the alt texts of the figures."""

    SKIP = ("language-switch",)  # the switch names each language in its own words ("English")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[bool] = []  # per open element: is it (inside) a skipped subtree
        self.h1 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        inherited = self.stack[-1] if self.stack else False
        skipped = inherited or tag in ("style", "script") \
            or any(c in (attrs.get("class") or "") for c in self.SKIP)
        if tag == "h1":
            self.h1, skipped = True, False
        if tag == "img" and not skipped and attrs.get("alt"):
            self.parts.append(attrs["alt"])
        if tag not in ("img", "br", "meta", "link", "input", "hr"):
            self.stack.append(skipped)

    def handle_endtag(self, tag):
        if tag == "h1":
            self.h1 = False
        if tag not in ("img", "br", "meta", "link", "input", "hr") and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if self.h1 or not (self.stack and self.stack[-1]):
            self.parts.append(data)


def _visible_text(markup: str) -> str:
    """The catalogue-driven text of a page (see :class:`_ChapterText`), source titles and licences
    removed (the partners' own words, from the source cards)."""
    parser = _ChapterText()
    parser.feed(markup)
    page = re.sub(r"\s+", " ", " ".join(parser.parts))
    for card in (config.SOURCES_DIR).glob("*.yml"):
        data = config.read_yaml_mapping(card) or {}
        for field in ("title", "licence"):
            if isinstance(data.get(field), str) and data[field].strip():
                page = page.replace(data[field].strip(), " ")
    return page


def _fragments(template: str) -> list[str]:
    """The literal words of a template between its placeholders, long enough to be telling."""
    out = []
    for part in re.split(r"\{[^}]*\}", template):
        part = part.strip(" .,;:()–—-*'\"")
        if len(re.sub(r"[^A-Za-z]", "", part)) >= 8 or len(part.split()) >= 3:
            out.append(part)
    return out


@pytest.mark.parametrize("code, direction", [("fr", "ltr"), ("es", "ltr"), ("ar", "rtl"), ("pt", "ltr"),
                                             ("ru", "ltr"), ("zh", "ltr")])
def test_pages_carry_language_and_direction(built, code, direction):
    assert sorted(LANGUAGES) == sorted(c for c in i18n.languages() if c != "en")  # all six
    for path in (page_path(built, code), built / code / "index.html", built / code / "runs.html"):
        markup = _read(path)
        assert re.search(rf'<html lang="{code}" dir="{direction}">', markup), path
        assert markup.count("<html") == 1
    manifest = json.loads(_read(built / code / "manifest.json"))
    entry = manifest["runs"][RUN_ID]
    assert entry["status"] == "ok"
    # the language is part of the run key: the French and Arabic runs of one page differ
    assert "language" in entry["key_components"]
    other = json.loads(_read(built / next(c for c in LANGUAGES if c != code) / "manifest.json"))
    assert other["runs"][RUN_ID]["key"] != entry["key"]


@pytest.mark.parametrize("code", LANGUAGES)
def test_language_switch_links_the_same_page(built, code):
    spec = i18n.languages()
    for path, relative in ((page_path(built, code), Path(RUN_ID) / "group_profile.html"),
                           (built / code / "index.html", Path("index.html"))):
        markup = _read(path)
        nav = re.search(r'<nav\b[^>]*class="language-switch"[^>]*>(.*?)</nav>', markup, flags=re.DOTALL)
        assert nav, path
        by_language = {}
        for attributes in re.findall(r"<a\b([^>]*)>", nav.group(1)):
            found = dict(re.findall(r'(\w+)="([^"]*)"', attributes))
            by_language[found["hreflang"]] = html.unescape(found["href"])
        assert sorted(by_language) == sorted({"en", *LANGUAGES} - {code})
        current = re.search(r"<span\b([^>]*)>([^<]*)</span>", nav.group(1))
        assert 'aria-current="page"' in current.group(1) and current.group(2) == spec[code]["name"]
        for lang, href in by_language.items():
            target = (path.parent / href).resolve()
            root = built if lang == "en" else built / lang
            assert target == (root / relative).resolve(), (lang, href)
            if lang != "en":  # English is not built in this test
                assert target.exists(), target


@pytest.mark.parametrize("code", LANGUAGES)
def test_no_english_of_the_catalogue_is_left(built, code):
    markup = _read(page_path(built, code))
    page = _visible_text(markup)
    lang = i18n.load_language(code)
    catalogue = i18n.catalogue_strings()
    left = []
    for key, english in catalogue.items():
        entry = lang.strings.get(key)
        # a missing or stale translation shows the English: it must not be on the page
        translated = entry["text"] if entry and entry["source"] == english else ""
        if translated.strip() == english:
            continue  # the same word in both languages ("Source", "Population")
        if key.startswith(("text.", "notebooks.")):
            for fragment in _fragments(english):
                if fragment not in translated and fragment in page:
                    left.append(f"{key}: {fragment!r}")
        elif len(english) >= 4 and re.search(rf"(?<!\w){re.escape(english)}(?!\w)", page):
            left.append(f"{key}: {english!r}")
    assert left == [], "\n".join(left)
    # the page does show the translations (the figure titles, the table headings, the labels)
    for key in ("groups.women.label", "text.tables.columns.estimate", "text.tables.columns.n_unweighted",
                "chapters.group_profile.title"):
        assert i18n.translate(key, lang, catalogue) in page, key
    assert i18n.country_name("KEN", lang) in page
    if code == "ar":  # the country in the chapter's own sentences and titles, too
        assert "Kenya" not in page
    # the notebook's own Markdown, translated (its first heading names the chapter)
    assert i18n.translate("notebooks.02_group_profile.02-03", lang, catalogue).lstrip("# ") in page
    # partners' source titles: translated where the language file has them (the demo cards)
    from i18n_build import SOURCES

    for source in SOURCES:
        card = config.read_yaml_mapping(config.SOURCES_DIR / f"{source}.yml")
        assert i18n.source_card_text(source, "title", card["title"], lang) in page, source
    # a machine-quality placeholder translation says so on the page
    assert i18n.translate("text.languages.unreviewed", lang, catalogue) in _read(page_path(built, code))


def test_arabic_alt_texts_are_arabic(built):
    alts = re.findall(r'\balt="([^"]+)"', _read(page_path(built, "ar")))
    assert alts
    for alt in alts:
        letters = [ch for ch in html.unescape(alt) if ch.isalpha()]
        arabic = [ch for ch in letters if "\u0600" <= ch <= "\u06ff"]
        assert len(arabic) > len(letters) / 2, alt  # mostly Arabic (source titles stay as written)


def test_translated_catalogue_is_published_with_the_pages(built):
    for code in LANGUAGES:
        folder = built / code / "params"
        assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.yml")) == [
            "codebooks/demo_voices.yml", "evidence.yml", "exchange.yml", "groups.yml", "indicators.yml", "report.yml",
            "text.yml",
            "voices.yml"]
        assert "not reviewed" in _read(folder / "text.yml").splitlines()[0]


@pytest.mark.parametrize("code", LANGUAGES)
def test_the_run_status_page_is_in_the_language(built, code):
    """runs.html (issue 16): every word of it from the text catalogue, in the page's language."""
    markup = _read(built / code / "runs.html")
    page = _visible_text(markup)
    lang = i18n.load_language(code)
    catalogue = i18n.catalogue_strings()
    for key in ("text.runs.summary_heading", "text.runs.summary.runs", "text.runs.official_link",
                "text.runs.status.completed", "chapters.group_profile.title"):
        assert i18n.translate(key, lang, catalogue) in page, key
    for english in ("Summary of the last pipeline run", "Runs in the matrix", "Skipped as unchanged",
                    "Report front page", "one page per", "For official statistics offices", "Disclosure control"):
        assert english not in page, english
