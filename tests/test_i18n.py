"""Seven languages: the translated catalogue, locale formats and the translators' workflow."""

from __future__ import annotations

import datetime as dt
import re
import shutil

import pytest

from analysis import i18n

SEVEN = ["en", "fr", "es", "ar", "pt", "ru", "zh"]
#: Languages whose placeholder translations cover the text catalogue (params/text.yml, keys
#: text.*) too: every language of the report (issue 16: the whole report in seven languages).
WHOLE_REPORT = SEVEN[1:]
#: Catalogue keys of page texts and chapter labels (the rest: indicator, group and chapter labels).
PAGE_TEXTS = ("text.", "evidence.", "voices.", "codebooks.", "exchange.")
#: The translated copies of the catalogue a language's report reads and publishes.
PUBLISHED_CATALOGUE = ["codebooks/demo_voices.yml", "evidence.yml", "exchange.yml", "groups.yml", "indicators.yml",
                       "report.yml",
                       "text.yml", "voices.yml"]


def _letters(template: str) -> str:
    """The words of a template outside its placeholders ("{title} ({source})" has none)."""
    return re.sub(r"[^\w]|\d|_", "", re.sub(r"\{[^}]*\}", "", template))


def _spaces(text: str) -> str:
    return text.replace("\u00a0", " ").replace("\u202f", " ")


def test_the_seven_languages():
    spec = i18n.languages()
    assert list(spec) == SEVEN
    assert {code: entry["dir"] for code, entry in spec.items()} == {
        "en": "ltr", "fr": "ltr", "es": "ltr", "ar": "rtl", "pt": "ltr", "ru": "ltr", "zh": "ltr"}


def test_every_catalogue_string_has_all_seven_translations():
    statuses = i18n.check()
    assert list(statuses) == SEVEN[1:]
    catalogue = i18n.catalogue_strings()
    text_keys = sorted(k for k in catalogue if k.startswith("text."))
    assert len(catalogue) - len(text_keys) > 60 and len(text_keys) > 150
    gaps = {code: s.missing + s.stale + s.plural_gaps + s.placeholders for code, s in statuses.items()
            if code in WHOLE_REPORT and not s.complete}
    assert gaps == {}, f"untranslated or stale: {gaps}"
    for code, status in statuses.items():
        if code in WHOLE_REPORT:
            continue
        # labels complete; the check names every text of the page catalogue not translated yet
        assert [k for k in status.missing + status.stale if not k.startswith("text.")] == [], code
        translated = {k for k in text_keys if i18n.load_language(code).strings.get(k)}
        assert sorted(status.missing) == sorted(set(text_keys) - translated), code
    for code in SEVEN[1:]:
        lang = i18n.load_language(code)
        same = [k for k in catalogue if not k.startswith(PAGE_TEXTS)
                and i18n.translate(k, lang, catalogue) == catalogue[k]
                and not catalogue[k].replace("-", "").replace("–", "").isdigit()]
        # a translation identical to the English is allowed only where the word is the same
        assert len(same) <= 3, (code, same)
        if code in WHOLE_REPORT:
            same_text = {catalogue[k] for k in catalogue if k.startswith(PAGE_TEXTS) and len(_letters(catalogue[k])) > 2
                         and not re.fullmatch(r"[a-z_]+|README", catalogue[k])  # column ids
                         and i18n.translate(k, lang, catalogue) == catalogue[k]}
            # cognates only: "Source(s)", "Population", "Dimension", "{count} page(s)", "Code",
            # "Format"... (notations such as "τ²" and "n" aside): at most 3% of the page texts
            page_texts = [k for k in catalogue if k.startswith(PAGE_TEXTS)]
            assert len(same_text) <= 0.03 * len(page_texts), (code, same_text)


def test_translations_are_marked_as_placeholders_until_reviewed():
    for code in SEVEN[1:]:
        assert i18n.load_language(code).reviewed is False, code
    assert i18n.load_language("en").reviewed is True


def test_check_names_missing_and_stale_strings():
    catalogue = dict(i18n.catalogue_strings())
    catalogue["indicators.new_indicator.label"] = "A new indicator"          # new key: missing
    catalogue["groups.women.label"] = "Women and girls"                     # changed English: stale
    statuses = i18n.check(catalogue=catalogue)
    for code, status in statuses.items():
        untranslated_texts = [k for k in status.missing if k.startswith("text.")]
        assert not untranslated_texts or code not in WHOLE_REPORT
        assert [k for k in status.missing if not k.startswith("text.")] == ["indicators.new_indicator.label"], code
        assert status.stale == ["groups.women.label"], code
        assert not status.complete
    # a stale translation is not used: the English is shown until it is re-translated
    assert i18n.translate("groups.women.label", "fr", catalogue) == "Women and girls"
    assert i18n.translate("groups.women.label", "fr") == "Femmes"


def test_check_command_exit_codes(tmp_path, monkeypatch, capsys):
    from analysis.__main__ import main

    assert main(["translations", "--check", *[f"--lang={c}" for c in WHOLE_REPORT]]) == 0
    out = capsys.readouterr().out
    assert "ar (العربية, machine-quality placeholders, not reviewed): 0 missing, 0 stale" in out
    partial = [c for c in SEVEN[1:] if c not in WHOLE_REPORT]
    if partial:  # languages without the page texts: the check fails and names each text
        assert main(["translations", "--check"]) == 1
        out = capsys.readouterr().out
        assert "  missing: text.group_profile.figure.profile.title" in out and f"{partial[0]} (" in out
    folder = tmp_path / "i18n"
    shutil.copytree(i18n.I18N_DIR, folder)
    text = (folder / "fr.yml").read_text(encoding="utf-8")
    (folder / "fr.yml").write_text(text.replace("  groups.women.label:\n", "  groups.women.label.gone:\n"),
                                   encoding="utf-8")
    monkeypatch.setattr(i18n, "I18N_DIR", folder)
    assert main(["translations", "--check", "--lang", "fr"]) == 1
    out = capsys.readouterr().out
    assert "fr (Français" in out and "1 missing" in out
    assert "  missing: groups.women.label" in out and "  unknown: groups.women.label.gone" in out


@pytest.mark.parametrize("code, expected", [
    ("fr", "42,4 %"), ("en", "42.4%"), ("es", "42,4 %"), ("pt", "42,4%"), ("ru", "42,4 %"), ("zh", "42.4%"),
])
def test_percent_in_the_locale(code, expected):
    assert _spaces(i18n.format_percent(0.4241, code)) == expected


def test_french_percent_keeps_its_decimal_and_does_not_break():
    text = i18n.format_percent(0.424, "fr")
    assert _spaces(text) == "42,4 %" and " " not in text        # a no-break space, never a plain one
    assert _spaces(i18n.format_percent(0.5, "fr")) == "50 %"      # no trailing ",0"


def test_plural_forms_follow_cldr_rules():
    assert i18n.plural("estimates", 1, "en") == "1 estimate"
    assert i18n.plural("estimates", 2, "en") == "2 estimates"
    assert [i18n.plural("estimates", n, "ru") for n in (1, 3, 5, 21, 22, 25)] == [
        "1 оценка", "3 оценки", "5 оценок", "21 оценка", "22 оценки", "25 оценок"]
    assert [i18n.plural("respondents", n, "ar") for n in (1, 2)] == ["مستجيب واحد", "مستجيبان"]
    assert set(i18n.load_language("ar").plurals["estimates"]) == {"zero", "one", "two", "few", "many", "other"}
    assert _spaces(i18n.plural("estimates", 1_000_000, "fr")) == "1 000 000 d’estimations"


def test_dates_and_country_names_in_the_locale():
    assert i18n.format_date(dt.date(2026, 12, 1), "fr") == "1 décembre 2026"
    assert i18n.format_date(dt.date(2026, 12, 1), "zh") == "2026年12月1日"
    assert i18n.country_name("KEN", "es") == "Kenia"
    assert i18n.country_name("KEN", "ar") == "كينيا"
    lang = i18n.load_language("fr")
    lang.countries = {"SEN": "République du Sénégal"}
    assert i18n.country_name("SEN", lang) == "République du Sénégal"   # the file's override wins


def test_po_export_and_import_round_trip(tmp_path):
    from babel.messages.pofile import read_po, write_po

    folder = tmp_path / "i18n"
    shutil.copytree(i18n.I18N_DIR, folder)
    catalogue = dict(i18n.catalogue_strings())
    catalogue["indicators.new_indicator.label"] = "A new indicator"
    path = i18n.export_po("fr", tmp_path / "fr.po", i18n_dir=folder, catalogue=catalogue)
    with path.open("rb") as f:
        po = read_po(f, locale="fr")
    messages = {m.context: m for m in po if m.id}
    assert set(messages) == set(catalogue)
    assert messages["groups.women.label"].string == "Femmes"
    assert messages["groups.women.label"].fuzzy                  # not reviewed: every string fuzzy
    assert messages["indicators.new_indicator.label"].string == ""

    messages["indicators.new_indicator.label"].string = "Un nouvel indicateur"
    messages["groups.women.label"].string = "Les femmes"
    po.add("Stray", string="Égaré", context="no.such.key")
    with path.open("wb") as f:
        write_po(f, po)
    written, ignored = i18n.import_po("fr", path, reviewed=True, i18n_dir=folder, catalogue=catalogue)
    assert written == len(catalogue) and ignored == ["no.such.key"]
    lang = i18n.load_language("fr", folder)
    assert lang.reviewed is True
    assert lang.strings["indicators.new_indicator.label"] == {"text": "Un nouvel indicateur",
                                                              "source": "A new indicator"}
    assert lang.strings["groups.women.label"]["text"] == "Les femmes"
    assert i18n.check(["fr"], i18n_dir=folder, catalogue=catalogue)["fr"].complete


def test_a_broken_language_file_is_a_one_line_error(tmp_path):
    folder = tmp_path / "i18n"
    shutil.copytree(i18n.I18N_DIR, folder)
    text = (folder / "es.yml").read_text(encoding="utf-8")
    (folder / "es.yml").write_text(text.replace("reviewed: false", "reviewed: maybe"), encoding="utf-8")
    with pytest.raises(i18n.TranslationError, match=r"es\.yml: key 'reviewed' must be true or false"):
        i18n.load_language("es", folder)
    with pytest.raises(i18n.TranslationError, match="unknown language 'xx'"):
        i18n.load_language("xx", folder)
    (folder / "pt.yml").write_text("language: pt\nreviewed: false\nstrings:\n  groups.women.label: Mulheres\n",
                                   encoding="utf-8")
    with pytest.raises(i18n.TranslationError, match=r"strings\.groups\.women\.label' needs text and source"):
        i18n.load_language("pt", folder)


def test_a_new_translatable_pattern_is_reported_until_translated(tmp_path):
    folder = tmp_path / "i18n"
    shutil.copytree(i18n.I18N_DIR, folder)
    text = (folder / "languages.yml").read_text(encoding="utf-8")
    (folder / "languages.yml").write_text(
        text.replace('"indicators.*.short_label"]', '"indicators.*.short_label", "indicators.*.definition"]'),
        encoding="utf-8")
    strings = i18n.catalogue_strings(i18n_dir=folder)
    definitions = sorted(k for k in strings if k.endswith(".definition"))
    assert definitions and len(strings) == len(i18n.catalogue_strings()) + len(definitions)
    status = i18n.check(["fr"], i18n_dir=folder)["fr"]
    assert status.missing == definitions and not status.complete


def test_translated_params_relabel_the_catalogue(tmp_path):
    from analysis import schema

    files = i18n.translated_params("ar", tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in files) == PUBLISHED_CATALOGUE
    groups = schema.load_groups(tmp_path / "groups.yml")
    dimensions = schema.load_dimensions(tmp_path / "groups.yml")
    indicators = schema.load_indicators(tmp_path / "indicators.yml")
    assert groups["women"].label == "النساء"
    assert dimensions["disability"].category_labels == {"yes": "ذوو إعاقة", "no": "بدون إعاقة"}
    assert dimensions["disability"].categories == ["yes", "no"]           # ids untouched
    assert indicators["food_insecurity"].label == "انعدام الأمن الغذائي"
    assert indicators["food_insecurity"].unit == "percent"
    report = (tmp_path / "report.yml").read_text(encoding="utf-8")
    assert "جائحة غير متكافئة" in report and "notebooks/02_group_profile.ipynb" in report


def test_the_evidence_and_voices_labels_and_codebooks_follow_the_translated_catalogue(tmp_path, monkeypatch):
    """params/evidence.yml, voices.yml and every codebook are part of the catalogue: their labels
    are checked, exported and translated like the others, and a run in another language reads
    their translated copies (ids, themes, aliases and settings untouched)."""
    from analysis import config
    from analysis import evidence as ev
    from analysis.chapters import voices as chapter
    from analysis.voices.codebook import codebook_path, load_codebook

    catalogue = i18n.catalogue_strings()
    for prefix in ("evidence.risk_of_bias.", "evidence.chapter.sections.", "voices.labels.",
                   "codebooks.demo_voices.codes."):
        assert any(k.startswith(prefix) for k in catalogue), prefix
    assert not any(k.startswith("evidence.template_guide.") for k in catalogue)  # data entry, English
    i18n.translated_params("zh", tmp_path)
    monkeypatch.setenv(config.CATALOGUE_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("ANALYSIS_LANG", "zh")
    labels = ev.load_labels()
    assert labels["risk_of_bias"]["low"] == i18n.translate("evidence.risk_of_bias.low", "zh") == "低偏倚风险"
    assert labels["chapter"]["narrative"].count("{studies}") == 1
    voices = chapter.load_voices_config()
    assert voices["labels"]["theme"] == "主题"
    assert voices["settings"] == chapter.load_voices_config(config.PARAMS_DIR / "voices.yml")["settings"]
    english = load_codebook(codebook_path("demo_voices"))
    book = load_codebook(chapter.translated(codebook_path("demo_voices")))
    assert book.codes["not_enough_food"].label == "食物不足"
    assert [(c.theme, c.special, c.aliases) for c in book.codes.values()] == \
        [(c.theme, c.special, c.aliases) for c in english.codes.values()]
    monkeypatch.setenv("ANALYSIS_LANG", "en")
    monkeypatch.delenv(config.CATALOGUE_DIR_ENV)
    assert ev.load_labels()["risk_of_bias"]["low"] == "Low risk of bias"
    assert load_codebook(chapter.translated(codebook_path("demo_voices"))).codes["not_enough_food"].label == \
        "Not enough food"


def test_source_cards_show_translated_titles_or_their_original_marked(tmp_path, monkeypatch):
    """A source card's title and licence (the partners' own words) in the page language: the
    language file's ``sources:`` translation, else the card as written, marked as the original."""
    card = config_card("demo_youth")
    assert i18n.source_card_text("demo_youth", "title", card["title"], "fr") == \
        "Enquête jeunesse COVID-19, Kenya, Ouganda et Sénégal (démo SYNTHÉTIQUE)"
    assert i18n.source_card_text("demo_youth", "licence", card["licence"], "zh") == "CC-BY-4.0（合成演示数据）"
    assert i18n.source_card_text("demo_youth", "title", card["title"], "en") == card["title"]
    real = config_card("household_pulse")["title"]       # no translation: the original, said so
    assert i18n.source_card_text("household_pulse", "title", real, "fr") == f"{real} (libellé original)"
    assert i18n.source_card_text("household_pulse", "title", real, "ar") == f"{real} (بالصياغة الأصلية)"
    # a card whose title changed shows its new words (marked) until the translation is redone
    assert i18n.source_card_text("demo_youth", "title", "A renamed survey", "es") == \
        "A renamed survey (redacción original)"
    monkeypatch.setenv("ANALYSIS_LANG", "ru")
    assert i18n.source_card_text("demo_youth", "title", card["title"]).startswith("Молодёжный опрос")
    folder = tmp_path / "i18n"
    shutil.copytree(i18n.I18N_DIR, folder)
    text = (folder / "pt.yml").read_text(encoding="utf-8")
    (folder / "pt.yml").write_text(text.replace("\nsources:\n", "\nsources:\n  demo_x: {summary: oops}\n"),
                                   encoding="utf-8")
    with pytest.raises(i18n.TranslationError, match=r"pt\.yml: key 'sources\.demo_x\.summary' must be one of title"):
        i18n.load_language("pt", folder)


def config_card(source: str) -> dict:
    from analysis import config

    return config.read_yaml_mapping(config.SOURCES_DIR / f"{source}.yml")


def test_notebook_markdown_is_in_the_catalogue_and_rendered_per_language():
    """The chapter notebooks' Markdown cells are catalogue strings (notebooks.<stem>.<cell id>),
    checked like the others; the reviewer page shows each in the page's language."""
    import copy

    import nbformat

    from analysis import config

    catalogue = i18n.catalogue_strings()
    keys = [k for k in catalogue if k.startswith("notebooks.")]
    stems = {p.stem for p in config.NOTEBOOKS_DIR.glob("*.ipynb")}
    assert {k.split(".")[1] for k in keys} == stems and len(keys) >= len(stems) * 2
    nb = nbformat.read(config.NOTEBOOKS_DIR / "02_group_profile.ipynb", as_version=4)
    before = [c.source for c in nb.cells if c.cell_type == "code"]
    for code in SEVEN[1:]:
        shown = i18n.translate_notebook(copy.deepcopy(nb), "notebooks/02_group_profile.ipynb", code)
        first = next(c for c in shown.cells if c.cell_type == "markdown")
        assert first.source == i18n.translate("notebooks.02_group_profile.02-00", code)
        assert first.source.startswith("# ") and "Chapter 2" not in first.source, code
        assert [c.source for c in shown.cells if c.cell_type == "code"] == before
    english = i18n.translate_notebook(copy.deepcopy(nb), "02_group_profile", "en")
    assert [c.source for c in english.cells] == [c.source for c in nb.cells]
    edited = copy.deepcopy(nb)
    cell = next(c for c in edited.cells if c.cell_type == "markdown")
    cell.source = "# Chapter 2 · Group profile, rewritten"     # stale: the English shows
    assert i18n.translate_notebook(edited, "02_group_profile", "fr").cells[0].source.endswith("rewritten")


def test_an_unedited_stale_translation_stays_stale_through_a_po_round_trip(tmp_path):
    """Defect: exporting a PO file and importing it back unedited rewrote a stale entry's source
    to the new English while keeping the old translation, so ``--check`` called it current."""
    folder = tmp_path / "i18n"
    shutil.copytree(i18n.I18N_DIR, folder)
    catalogue = dict(i18n.catalogue_strings())
    catalogue["groups.women.label"] = "Women and girls"  # the English changed after translation
    assert "groups.women.label" in i18n.check(["fr"], i18n_dir=folder, catalogue=catalogue)["fr"].stale

    path = i18n.export_po("fr", tmp_path / "fr.po", i18n_dir=folder, catalogue=catalogue)
    i18n.import_po("fr", path, i18n_dir=folder, catalogue=catalogue)
    status = i18n.check(["fr"], i18n_dir=folder, catalogue=catalogue)["fr"]
    assert "groups.women.label" in status.stale
    assert i18n.load_language("fr", folder).strings["groups.women.label"] == {"text": "Femmes", "source": "Women"}

    # a translator who retranslates it makes it current
    from babel.messages.pofile import read_po, write_po

    with path.open("rb") as f:
        po = read_po(f, locale="fr")
    next(m for m in po if m.context == "groups.women.label").string = "Femmes et filles"
    with path.open("wb") as f:
        write_po(f, po)
    i18n.import_po("fr", path, i18n_dir=folder, catalogue=catalogue)
    assert "groups.women.label" not in i18n.check(["fr"], i18n_dir=folder, catalogue=catalogue)["fr"].stale
