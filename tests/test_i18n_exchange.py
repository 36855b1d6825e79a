"""The page "For official statistics offices" in the report's other languages (issue 16).

``export_report(..., languages=[...])`` writes ``outputs/<lang>/official_statistics.html`` beside
each language's index: its words (``text.exchange.*``), title, introduction and quality
statements (``exchange.*``, from params/exchange.yml) translated, ``lang``/``dir`` set, a language
switch, and links to the one set of exchange files.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analysis import i18n, tables
from analysis.exchange import export_report
from test_exchange import published  # noqa: F401 - the module-scoped fixture of the published table

LANGUAGES = ["fr", "ar", "zh", "ru"]


@pytest.fixture(scope="module")
def exported(published, tmp_path_factory):  # noqa: F811 - the imported fixture
    outputs = tmp_path_factory.mktemp("outputs")
    (outputs / "tables").mkdir()
    tables.write_csv(published.drop(columns=["suppression_reason"]), outputs / "tables" / "all_estimates.csv")
    (outputs / "manifest.json").write_text(json.dumps({"updated_at": "2026-12-01T09:00:00+00:00",
                                                       "code_version": {"commit": "abc1234"}}))
    return export_report(outputs, languages=LANGUAGES)


class _Text(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("style", "script", "code", "pre")

    def handle_endtag(self, tag):
        self.skip -= tag in ("style", "script", "code", "pre")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def _words(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    return re.sub(r"\s+", " ", " ".join(parser.parts))


@pytest.mark.parametrize("code", LANGUAGES)
def test_the_page_is_written_in_each_language(exported, code):
    page = exported.page.parent / code / "official_statistics.html"
    markup = page.read_text(encoding="utf-8")
    direction = "rtl" if code == "ar" else "ltr"
    assert f'<html lang="{code}" dir="{direction}">' in markup
    lang = i18n.load_language(code)
    catalogue = i18n.catalogue_strings()
    shown = _words(markup)
    for key in ("exchange.page.title", "exchange.quality.accuracy.title", "text.exchange.files_heading",
                "text.exchange.quality_heading", "text.exchange.columns.holds", "text.languages.unreviewed"):
        assert i18n.translate(key, lang, catalogue) in shown, key
    # no English sentence of the page's catalogue is left (SDMX concept and code names aside:
    # they are the structure definition's own)
    left = [key for key, english in catalogue.items()
            if key.startswith(("exchange.", "text.exchange.")) and len(english.split()) >= 4
            and i18n.translate(key, lang, catalogue) != english and english.split("{")[0].strip()
            and english.split("{")[0].strip() in shown and len(english.split("{")[0].split()) >= 3]
    assert left == []
    assert "Standard errors cover sampling error only" not in shown
    # the shared files, one folder up; the switch links the page in the other languages
    for href in re.findall(r'href="(\.\./exchange/[^"]+)"', markup):
        assert (page.parent / href).resolve().exists(), href
    assert re.findall(r'href="(\.\./exchange/[^"]+)"', markup)
    nav = re.search(r'<nav class="language-switch".*?</nav>', markup, flags=re.DOTALL).group(0)
    targets = {h: (page.parent / h).resolve() for h in re.findall(r'href="([^"]+)"', nav)}
    assert exported.page.resolve() in targets.values()
    assert all(t.exists() for t in targets.values()), targets


def test_the_english_page_links_its_translations_and_stays_english(exported):
    markup = exported.page.read_text(encoding="utf-8")
    assert '<html lang="en" dir="ltr">' in markup and "What is offered" in markup
    nav = re.search(r'<nav class="language-switch".*?</nav>', markup, flags=re.DOTALL).group(0)
    assert sorted(re.findall(r'hreflang="(\w+)"', nav)) == sorted(LANGUAGES)
    assert Path(exported.folder).name == "exchange"
    assert not (exported.page.parent / "fr" / "exchange").exists()   # the files exist once


def test_export_command_takes_the_page_languages(exported, capsys):
    from analysis.__main__ import main

    outputs = exported.page.parent
    assert main(["export", "--outputs", str(outputs), "--lang", "xx"]) == 2
    assert "unknown language 'xx'; languages in params/i18n/languages.yml: en, fr" in capsys.readouterr().err
    assert main(["export", "--outputs", str(outputs), "--lang", "pt"]) == 0
    page = (outputs / "pt" / "official_statistics.html").read_text(encoding="utf-8")
    assert '<html lang="pt" dir="ltr">' in page and i18n.translate("exchange.page.title", "pt") in page
