"""The report in several languages: where each language's pages go and what its runs read.

English is built at ``outputs/`` (so ``make report`` still writes ``outputs/index.html`` and every
existing link stays); every other language at ``outputs/<lang>/``, with its own manifest, run keys
and index. A run in language ``xx``

- reads the translated catalogue that :func:`analysis.i18n.translated_params` writes into
  ``outputs/xx/params/`` (``groups.yml``, ``indicators.yml``, ``report.yml``, ``text.yml``): the
  folder is published with the pages, so a reader can see what each label was;
- executes with ``ANALYSIS_LANG=xx``, ``ANALYSIS_TEXT_FILE`` the translated ``text.yml`` and
  ``ANALYSIS_CATALOGUE_DIR`` that folder (:func:`analysis.config.use_catalogue`);
- has the language in its run key (plus the languages of the switch: its pages link them).

Chapter titles, the report title, group labels and country names of the index and of the page
headers come from the same translated copy (country names: CLDR through Babel, with the
language file's overrides; a name the report file sets explicitly is kept).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from analysis import i18n
from analysis.pipeline.matrix import MatrixContext, MatrixError

#: Where a language's translated catalogue is written, under its outputs folder.
PARAMS_FOLDER = "params"


def known_languages() -> dict[str, dict]:
    """``languages.yml``: code -> {name, dir}."""
    try:
        return i18n.languages()
    except i18n.TranslationError as exc:
        raise MatrixError(str(exc)) from None


def check_languages(codes, where: str) -> list[str]:
    """``codes`` in the order given, each checked against ``languages.yml`` (one-line error)."""
    spec = known_languages()
    out = []
    for code in codes:
        if code not in spec:
            raise MatrixError(f"{where}: unknown language '{code}'; languages in "
                              f"params/i18n/languages.yml: {', '.join(spec)}")
        if code not in out:
            out.append(code)
    return out


def language_outputs(base: Path, code: str) -> Path:
    """The outputs folder of a language: ``base`` for English, ``base/<code>`` otherwise."""
    return Path(base) if code == i18n.SOURCE_LANGUAGE else Path(base) / code


def localise(ctx: MatrixContext, code: str | None, switch: list[str] | None = None) -> MatrixContext:
    """The matrix context of the report in language ``code`` (English: ``ctx`` with its switch).

    Writes the translated catalogue into ``<outputs>/<code>/params/`` and reads the titles, labels
    and country names from it. ``switch`` lists the languages the pages link (default: the report
    file's ``languages``, plus ``code``).
    """
    code = code or i18n.SOURCE_LANGUAGE
    codes = check_languages(switch if switch is not None else [*ctx.report.languages, code],
                            f"{ctx.report_path}: key 'languages'")
    if code not in codes:
        codes.append(code)
    base = ctx.outputs_dir
    if code == i18n.SOURCE_LANGUAGE:
        return replace(ctx, language=code, languages=codes, base_outputs_dir=base)
    outputs = language_outputs(base, code)
    folder = outputs / PARAMS_FOLDER
    try:
        i18n.translated_params(code, folder, params_dir=Path(ctx.groups_file).parent)
    except i18n.TranslationError as exc:
        raise MatrixError(str(exc)) from None
    except OSError as exc:
        from analysis.atomic import as_write_error

        raise (as_write_error(exc, folder) or exc) from None
    from analysis import config
    from analysis.pipeline.matrix import _read_groups

    groups = _read_groups(folder / "groups.yml")
    translated = config.read_yaml_mapping(folder / "report.yml", MatrixError, "report file")
    report = ctx.report.model_copy(deep=True)
    report.title = str(translated.get("title") or report.title)
    for cid, chapter in report.chapters.items():
        title = ((translated.get("chapters") or {}).get(cid) or {}).get("title")
        if isinstance(title, str) and title.strip():
            chapter.title = title
    lang = i18n.load_language(code)
    names = {}
    for iso3, entry in report.countries.items():
        explicit = entry.name if entry and entry.name else None
        try:
            names[iso3] = explicit or i18n.country_name(iso3, lang)
        except i18n.TranslationError:
            names[iso3] = ctx.country_names.get(iso3, iso3)
    return replace(ctx, report=report, outputs_dir=outputs, groups_file=folder / "groups.yml",
                   group_labels={g: v["label"] for g, v in groups.items()}, country_names=names,
                   language=code, languages=codes, base_outputs_dir=base, catalogue_dir=folder)


def run_environment(ctx: MatrixContext) -> dict[str, str]:
    """Environment variables of a run in the context's language (empty for English)."""
    if ctx.catalogue_dir is None:
        return {}
    from analysis import config, text

    return {text.LANGUAGE_VARIABLE: ctx.language,
            text.TEXT_FILE_VARIABLE: str(Path(ctx.catalogue_dir) / "text.yml"),
            config.CATALOGUE_DIR_ENV: str(ctx.catalogue_dir)}


def apply_environment(environment: dict[str, str]) -> None:
    """In a run's own process: set its language's environment and re-point the catalogue."""
    if not environment:
        return
    from analysis import config

    os.environ.update(environment)
    config.use_catalogue()


@contextmanager
def language_environment(ctx: MatrixContext):
    """In the pipeline's own process: the context's language for the pages it writes itself
    (the front page, the run status page), restored afterwards."""
    from analysis import config

    try:
        with config.environment_variables(run_environment(ctx)):
            config.use_catalogue(ctx.catalogue_dir)
            yield
    finally:
        config.use_catalogue()  # after the variables are restored: it reads them


def page_language(ctx: MatrixContext) -> dict:
    """What every page of the context's language shows of it: ``code``, ``dir`` (rtl for
    Arabic), whether its translations are reviewed, and the switch (code, own name, outputs root
    of each language, the current one marked)."""
    spec = known_languages()
    code = ctx.language
    base = ctx.base_outputs_dir or ctx.outputs_dir
    try:
        reviewed = i18n.load_language(code).reviewed
    except i18n.TranslationError:
        reviewed = False
    notice = None
    if not reviewed:
        try:
            notice = i18n.translate("text.languages.unreviewed", code)
        except i18n.TranslationError:
            notice = None
    return {"code": code, "dir": spec[code].get("dir", "ltr"), "name": spec[code]["name"],
            "reviewed": reviewed, "notice": notice,
            "switch": [{"code": c, "name": spec[c]["name"], "root": str(language_outputs(base, c)),
                        "current": c == code} for c in ctx.languages]}


def switch_links(language: dict | None, page: Path | str, root: Path | str) -> list[dict]:
    """Links of a page's language switch: the same page (same path under each language's outputs
    folder) in every language of the switch, relative to the page; the current one has no href.

    ``page`` is the page's path, ``root`` its language's outputs folder.
    """
    if not language or len(language.get("switch", [])) < 2:
        return []
    relative = Path(page).resolve().relative_to(Path(root).resolve())
    here = Path(page).resolve().parent
    out = []
    for entry in language["switch"]:
        target = Path(entry["root"]).resolve() / relative
        out.append({"code": entry["code"], "name": entry["name"], "current": entry["current"],
                    "href": None if entry["current"] else os.path.relpath(target, here)})
    return out
