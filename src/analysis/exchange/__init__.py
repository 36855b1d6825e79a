"""Exchange with official statistics offices: SDMX-CSV, a Frictionless Data Package, quality statements.

:func:`export_report` reads a built report (``outputs/tables/all_estimates.csv``, the manifest)
and writes, under ``outputs/exchange/``:

- ``structure.xml``: the project's data structure definition, dataflow, concepts and code lists
  (SDMX-ML 2.1), reusing the SDG global DSD's concepts and code lists from the shipped extract
  ``data/reference/sdmx/SDG_DSD_extract.xml`` (:mod:`analysis.exchange.sdmx_csv`);
- ``estimates.sdmx.csv``: every published estimate as SDMX-CSV 2.0, written with sdmx1, read
  back with sdmx1 and compared with the published table before the export succeeds (a row that
  two chapters publish identically is one observation: exported once, and counted);
- ``estimates.csv`` and ``code_lists.csv``: the published table and the code lists;
- ``datapackage.json``: the Frictionless Data Package describing the three tables
  (:mod:`analysis.exchange.datapackage`);
- ``quality.json`` and ``quality/<source>.md``: a quality statement per source by the UN NQAF
  dimensions (:mod:`analysis.exchange.quality`);

and the page ``outputs/official_statistics.html`` ("For official statistics offices").
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import config, tables
from analysis.exchange import datapackage, quality, sdmx_csv
from analysis.exchange.settings import (
    EXCHANGE_FILE,
    ExchangeError,
    Settings,
    load_settings,
    settings_from,
)

__all__ = ["ExchangeError", "ExportResult", "export_report", "load_settings", "shipped_structure_path",
           "write_shipped_structure"]

#: File names under outputs/exchange/.
FILES = {"structure": "structure.xml", "sdmx_estimates": "estimates.sdmx.csv",
         "estimates": "estimates.csv", "code_lists": "code_lists.csv",
         "datapackage": "datapackage.json", "quality": "quality.json"}
PAGE = "official_statistics.html"


@dataclass
class ExportResult:
    """What :func:`export_report` wrote."""

    folder: Path
    page: Path
    observations: int
    suppressed: int
    files: dict[str, Path] = field(default_factory=dict)
    duplicates: int = 0  # rows of all_estimates.csv identical to an earlier row, exported once
    problems: list[str] = field(default_factory=list)  # data-package validation errors, if asked


def shipped_structure_path(settings: Settings | None = None) -> Path:
    """Where the project's own structure definition is shipped (next to the SDG extract)."""
    settings = settings or load_settings()
    name = f"{settings.agency.id}-{settings.dataflow.id}-{settings.dataflow.version}.xml"
    return settings.reference_path.parent / name


def write_shipped_structure(settings: Settings | None = None,
                            catalogue: sdmx_csv.Catalogue | None = None) -> Path:
    """(Re)write the structure definition the SDMX-CSV files follow, as shipped in the project.

    Built from the catalogue alone (an export adds indicator codes outside the catalogue, if a
    report has any, to the copy it writes beside the data).
    """
    settings = settings or load_settings()
    catalogue = catalogue or sdmx_csv.Catalogue.from_params()
    structure = sdmx_csv.build_structure(settings, catalogue)
    return sdmx_csv.write_structure(structure, shipped_structure_path(settings))


def _read_table(path: Path) -> pd.DataFrame:
    from analysis import tables

    if not path.exists():
        raise ExchangeError(f"{path} not found: build the report first (python -m analysis run)")
    try:
        return tables.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - name the file and what is wrong
        raise ExchangeError(f"{path}: not a result-schema table ({exc})") from None


def _components(structure, settings: Settings) -> list[dict]:
    rows = []
    dsd = structure.dsd
    for role, components in (("dimension", dsd.dimensions.components),
                             ("measure", dsd.measures.components),
                             ("attribute", dsd.attributes.components)):
        for c in components:
            rep = c.local_representation
            cl = getattr(rep, "enumerated", None) if rep is not None else None
            facets = getattr(rep, "non_enumerated", None) if rep is not None else None
            kind = facets[0].value_type.name if facets else ("time period" if role == "dimension" else "number")
            rows.append({"id": c.id, "role": role, "name": str(c.concept_identity.name),
                         "codelist": cl.id if cl is not None else None,
                         "agency": cl.maintainer.id if cl is not None else None,
                         "version": cl.version if cl is not None else None,
                         "format": kind, "count": len(cl) if cl is not None else ""})
    return rows


def _render_page(path: Path, context: dict) -> Path:
    from analysis.pipeline.render import report_environment

    env = report_environment()  # autoescaped; the pages' Content-Security-Policy as csp
    page = env.get_template("official_statistics.html.j2").render(**context)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


@contextmanager
def _language(code: str):
    """The report language ``code`` for the texts of the page (``ANALYSIS_LANG``), restored after."""
    from analysis.text import LANGUAGE_VARIABLE, TEXT_FILE_VARIABLE

    # no text file: the English catalogue with params/i18n/<code>.yml
    with config.environment_variables({LANGUAGE_VARIABLE: code, TEXT_FILE_VARIABLE: None}):
        yield


def _write_page(path: Path, settings: Settings, items: list[dict], common: dict, *, code: str = "en",
                country_names: dict | None = None) -> Path:
    """Render the page "For official statistics offices" in the current report language.

    ``path`` is ``outputs/official_statistics.html`` (English) or ``outputs/<code>/...``; its
    links to the shared exchange files go up one folder for another language.
    """
    from analysis import i18n
    from analysis.text import text

    ctx, table, coded, structure = common["ctx"], common["table"], common["coded"], common["structure"]
    names = country_names or ctx.country_names
    up = "" if code == i18n.SOURCE_LANGUAGE else "../"
    version = common["version"]
    code_version = text("runs.code_dirty" if version.get("dirty") else "runs.code_version",
                        commit=version.get("commit") or text("runs.code_unknown"))
    formats = {"structure": "SDMX-ML 2.1", "sdmx_estimates": "SDMX-CSV 2.0", "estimates": "CSV",
               "code_lists": "CSV", "datapackage": "Frictionless Data Package", "quality": "JSON"}
    codelists = [{"id": cl.id, "agency": cl.maintainer.id, "version": cl.version, "name": str(cl.name),
                  "codes": [{"id": c.id, "name": str(c.name)} for c in cl]}
                 for cl in structure.codelists.values()]
    for cl in codelists:
        cl["summary"] = text("exchange.codelist_summary", codelist=f"{cl['agency']}:{cl['id']}({cl['version']})",
                             name=cl["name"], count=len(cl["codes"]))
        cl["caption"] = text("exchange.codes_caption", codelist=cl["id"])
    components = _components(structure, settings)
    for c in components:
        c["role_text"] = text(f"exchange.roles.{c['role']}")
    rel = os.path.relpath(ctx.report_path, ctx.project_root) if ctx.report_path.is_relative_to(ctx.project_root) \
        else ctx.report_path
    countries = [names.get(c, c) for c in sorted(set(table["country"].astype(str)))]
    sources = sorted(set(coded["DATA_SOURCE"]))
    spec = i18n.languages()
    words = {k: text(f"exchange.{k}") for k in ("back", "synthetic", "offer_heading", "files_heading",
                                                "files_caption", "structure_heading", "components_caption",
                                                "quality_heading", "quality", "rerun_heading")}
    words["columns"] = {k: text(f"exchange.columns.{k}") for k in ("file", "format", "holds", "column", "role",
                                                                  "concept", "codelist", "codes", "code", "name")}
    words["banner"] = text("figures.synthetic_banner")
    words["notice"] = (None if i18n.load_language(code).reviewed
                       else i18n.translate("text.languages.unreviewed", code))
    switch = [{"code": c, "name": spec[c]["name"], "current": c == code,
               "href": os.path.relpath(ctx.outputs_dir / ("" if c == i18n.SOURCE_LANGUAGE else c) / PAGE,
                                       path.parent)}
              for c in dict.fromkeys([i18n.SOURCE_LANGUAGE, *common["languages"]])]
    return _render_page(path, {
        "page": settings.page, "report_title": ctx.report.title, "words": words,
        "lang": code, "dir": spec[code].get("dir", "ltr"), "switch": switch if len(switch) > 1 else [],
        "synthetic": any(item["synthetic"] for item in items),
        "offer": text("exchange.offer", observations=_count(len(coded)), sources=len(sources),
                      countries=", ".join(countries)),
        "files": [{"href": f"{up}exchange/{FILES[k]}", "name": FILES[k], "format": fmt,
                   "description": text(f"exchange.files.{k}")} for k, fmt in formats.items()],
        "structure_text": text("exchange.structure", dataflow="{dataflow}", reference="{reference}"),
        "dataflow_urn": f"{settings.agency.id}:{settings.dataflow.id}({settings.dataflow.version})",
        "reference_name": common["reference_name"],
        "components": components, "codelists": codelists,
        "statements": items, "code_version": text("exchange.code_version", code=code_version),
        "generated": text("exchange.generated", produced=common["produced"]),
        "manifest_href": "manifest.json",
        "commands": ["make setup",
                     ".venv/bin/python -m analysis ingest",
                     f".venv/bin/python -m analysis run --config {rel}",
                     f".venv/bin/python -m analysis export --config {rel}"],
    })


def _count(n: int) -> str:
    """A count in the page language's digit grouping ("15,040", "15 040")."""
    from analysis import tables

    return tables.format_count(n)


def export_report(outputs_dir: Path | str | None = None, *, report_file: Path | str | None = None,
                  processed_dir: Path | str | None = None, settings: Settings | None = None,
                  catalogue: sdmx_csv.Catalogue | None = None, validate: bool = False,
                  languages: list[str] | None = None) -> ExportResult:
    """Write the exchange files and the page "For official statistics offices" for a built report.

    Parameters
    ----------
    outputs_dir
        The report's outputs folder (default: the report file's ``defaults.outputs_dir``).
    report_file
        The run matrix (default ``params/report.yml``): title and disclosure thresholds.
    processed_dir
        Where the ingest logs are (default: the report file's ``defaults.processed_dir``).
    validate
        Also validate the data package with ``frictionless`` (its errors in ``problems``).
    languages
        The languages of the page besides English (default: the report file's ``languages``):
        ``outputs/<lang>/official_statistics.html`` each, with the translated words and quality
        statements (``params/i18n/<lang>.yml``); the exchange files are written once.

    Raises
    ------
    ExchangeError
        One line: no built report, a value with no code, or an SDMX file that does not read back
        to the published values.
    """
    from analysis.pipeline.matrix import MatrixError, load_report

    try:
        ctx = load_report(report_file, outputs_dir=outputs_dir, processed_dir=processed_dir)
    except MatrixError as exc:
        raise ExchangeError(str(exc)) from None
    outputs = ctx.outputs_dir
    settings = settings or load_settings()
    catalogue = catalogue or sdmx_csv.Catalogue.from_params(
        {"suppress_below": ctx.report.disclosure.suppress_below,
         "caution_below": ctx.report.disclosure.caution_below})
    table = _read_table(outputs / "tables" / "all_estimates.csv")
    manifest_path = outputs / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
    produced = manifest.get("updated_at") or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    catalogue.produced_year = int(produced[:4])

    # A cell that two chapters publish (e.g. the group and reference estimates) is one
    # observation: identical rows are exported once, and counted.
    published_rows = len(table)
    table = table.drop_duplicates().reset_index(drop=True)
    duplicates = published_rows - len(table)
    coded = sdmx_csv.code_rows(table, settings, catalogue)
    structure = sdmx_csv.build_structure(settings, catalogue, coded)
    sdmx_csv.check_codes(coded, structure)
    coded = sdmx_csv.neutralise_text_cells(coded)  # written and read back as neutralised text

    folder = outputs / "exchange"
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / rel for name, rel in FILES.items()}
    sdmx_csv.write_structure(structure, files["structure"])
    sdmx_csv.write_sdmx_csv(coded, structure, files["sdmx_estimates"])
    # The guarantee: what a statistics office reads with an SDMX library is what was published.
    back = sdmx_csv.read_sdmx_csv(files["sdmx_estimates"], files["structure"])
    problems = sdmx_csv.compare_with_published(back, coded)
    if problems:
        raise ExchangeError(f"{files['sdmx_estimates']}: does not read back to the published values: "
                            + "; ".join(problems))
    shutil.copyfile(outputs / "tables" / "all_estimates.csv", files["estimates"])
    tables.write_text_csv(datapackage.code_list_table(structure), files["code_lists"])
    descriptor = datapackage.build_descriptor(
        table, structure, settings, catalogue, paths={k: FILES[k] for k in
                                                      ("estimates", "sdmx_estimates", "code_lists", "structure")},
        created=produced, title=ctx.report.title)
    datapackage.write_descriptor(descriptor, files["datapackage"])

    items = quality.statements(table, coded, settings, catalogue, processed_dir=ctx.processed_dir,
                               produced=produced[:10], country_names=ctx.country_names)
    files["quality"].write_text(json.dumps(items, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "quality").mkdir(exist_ok=True)
    for item in items:
        (folder / "quality" / f"{item['source']}.md").write_text(quality.as_markdown(item), encoding="utf-8")

    version = manifest.get("code_version", {})
    from analysis import i18n

    codes = [c for c in (languages if languages is not None else ctx.report.languages) if c != i18n.SOURCE_LANGUAGE]
    known = i18n.languages()
    unknown = [c for c in codes if c not in known]
    if unknown:
        raise ExchangeError(f"unknown language '{unknown[0]}'; languages in params/i18n/languages.yml: "
                            + ", ".join(known))
    common = {
        "table": table, "coded": coded, "structure": structure, "catalogue": catalogue, "ctx": ctx,
        "produced": produced, "version": version, "languages": codes,
        "reference_name": f"IAEG-SDGs:SDG(1.4), from the extract {settings.reference} "
                          f"({sdmx_csv.reference_structures(settings).header.id})"}
    page = _write_page(outputs / PAGE, settings, items, common)
    # The same page in every other language of the report (outputs/<lang>/, beside its index),
    # its words and quality statements from the translated catalogue; the files are shared.
    for code in codes:
        translated = settings_from(i18n.translated_mapping(code, "exchange.yml"), EXCHANGE_FILE)
        (outputs / code).mkdir(parents=True, exist_ok=True)
        with _language(code):
            names = {c: i18n.country_name(c, code) for c in ctx.country_names}
            lang_items = quality.statements(table, coded, translated, catalogue, processed_dir=ctx.processed_dir,
                                            produced=produced[:10], country_names=names)
            _write_page(outputs / code / PAGE, translated, lang_items, common, code=code, country_names=names)
    result = ExportResult(folder=folder, page=page, observations=len(coded),
                          suppressed=int((coded["CONF_STATUS"] != "F").sum()), files=files,
                          duplicates=duplicates)
    if validate:
        result.problems = datapackage.validate_package(files["datapackage"])
    return result
