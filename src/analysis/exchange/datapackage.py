"""A Frictionless Data Package (``datapackage.json``) describing the exported estimates.

Follows the Data Package and Table Schema specifications (frictionlessdata.io, v1 profiles, as
read by the ``frictionless`` library): one resource for the published table in the project's
result schema, one for the SDMX-CSV file and one for the code lists, each with a table schema
whose coded columns carry their code list as an ``enum`` constraint, so that a validator rejects
a code that is not in the list. Licences and sources come from the source cards of the sources
whose estimates are exported.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from analysis.exchange.sdmx_csv import (
    ATTRIBUTES,
    DIMENSIONS,
    NUMERIC_ATTRIBUTES,
    TIME_DIMENSION,
    UNCODED,
    Catalogue,
    Structure,
)
from analysis.exchange.settings import ExchangeError, Settings
from analysis.tables import FLAGS

#: A licence that starts with an identifier such as CC-BY-4.0, CC0-1.0 or ODbL-1.0.
_LICENCE_ID = re.compile(r"^([A-Za-z][A-Za-z0-9.+]*(?:-[A-Za-z0-9.+]+)*-\d+(?:\.\d+)*)\b")


def licence_entry(text: str, url: str | None = None) -> dict:
    """A Data Package ``licenses`` entry from a card's free-text licence.

    The identifier (``name``) is taken only when the text starts with one (e.g. ``CC-BY-4.0``);
    otherwise the entry has the card's URL as ``path``, or the open-definition name ``other``.
    """
    match = _LICENCE_ID.match(text.strip())
    entry = {"title": text.strip()}
    if match:
        entry["name"] = match.group(1)
    elif url:
        entry["path"] = url
    else:
        entry["name"] = "other"
    return entry


def _string(name: str, title: str, *, enum=None, required=False, description=None) -> dict:
    field = {"name": name, "type": "string", "title": title}
    if description:
        field["description"] = description
    constraints = {}
    if required:
        constraints["required"] = True
    if enum is not None:
        constraints["enum"] = sorted(set(enum))
    if constraints:
        field["constraints"] = constraints
    return field


def estimates_schema(table: pd.DataFrame, settings: Settings, catalogue: Catalogue) -> dict:
    """Table schema of the published table (the project's one result schema)."""
    groups = sorted(set(catalogue.groups) | {"all"})
    indicators = sorted(set(catalogue.indicators) | set(table["indicator"].dropna().astype(str)))
    fields = [
        _string("source", "Source", enum=list(catalogue.cards), required=True),
        _string("country", "Country (ISO 3166-1 alpha-3)", enum=list(settings.countries), required=True),
        _string("group", "Population group", enum=groups),
        _string("indicator", "Indicator", enum=indicators, required=True),
        _string("breakdown", "Breakdown (dimensions joined by ' × ')", required=True),
        _string("cell", "Cell (categories joined by ' × ')", required=True),
        {"name": "estimate", "type": "number", "title": "Estimate (a share 0-1 for percent indicators)"},
        {"name": "se", "type": "number", "title": "Standard error"},
        {"name": "ci_low", "type": "number", "title": "Lower bound of the 95% interval"},
        {"name": "ci_high", "type": "number", "title": "Upper bound of the 95% interval"},
        {"name": "n_unweighted", "type": "integer", "title": "Unweighted respondents",
         "constraints": {"minimum": 0}},
        {"name": "n_weighted", "type": "number", "title": "Weighted respondents"},
        _string("flag", "Flag", enum=list(FLAGS), required=True,
                description="ok; caution (few respondents); suppressed (withheld: every number blank)"),
        _string("method", "Method"),
    ]
    return {"fields": fields, "missingValues": [""]}


def sdmx_schema(structure: Structure) -> dict:
    """Table schema of the SDMX-CSV 2.0 file: every coded column with its code list as enum."""
    dsd = structure.dsd
    fields = [_string("STRUCTURE", "Structure type", enum=["dataflow"], required=True),
              _string("STRUCTURE_ID", "Structure", required=True),
              _string("ACTION", "Action", enum=["I"], required=True)]
    for cid in [*DIMENSIONS, TIME_DIMENSION]:
        component = dsd.dimensions.get(cid)
        title = str(component.concept_identity.name)
        rep = component.local_representation
        codelist = getattr(rep, "enumerated", None) if rep is not None else None
        if cid == TIME_DIMENSION:
            fields.append({"name": cid, "type": "year", "title": title, "constraints": {"required": True}})
        else:
            fields.append(_string(cid, title, required=True,
                                  enum=None if cid in UNCODED or codelist is None else list(codelist.items)))
    fields.append({"name": "OBS_VALUE", "type": "number", "title": "Observation value"})
    for cid in ATTRIBUTES:
        component = dsd.attributes.get(cid)
        title = str(component.concept_identity.name)
        rep = component.local_representation
        codelist = getattr(rep, "enumerated", None) if rep is not None else None
        if cid in NUMERIC_ATTRIBUTES:
            kind = "integer" if cid == "UNWEIGHTED_N" else "number"
            fields.append({"name": cid, "type": kind, "title": title})
        else:
            fields.append(_string(cid, title, required=cid in ("OBS_STATUS", "CONF_STATUS"),
                                  enum=None if codelist is None else list(codelist.items)))
    return {"fields": fields, "missingValues": [""]}


def code_list_table(structure: Structure) -> pd.DataFrame:
    """Every code of every code list of the structure: codelist, agency, version, code, name."""
    rows = []
    for cl_id, cl in structure.codelists.items():
        for code in cl:
            rows.append({"codelist": cl_id, "agency": cl.maintainer.id, "version": cl.version,
                         "code": code.id, "name": str(code.name)})
    return pd.DataFrame(rows, columns=["codelist", "agency", "version", "code", "name"])


def build_descriptor(table: pd.DataFrame, structure: Structure, settings: Settings,
                     catalogue: Catalogue, *, paths: dict[str, str], created: str | None = None,
                     title: str | None = None) -> dict:
    """The ``datapackage.json`` descriptor.

    Parameters
    ----------
    paths
        Resource name -> path relative to the descriptor (``estimates``, ``sdmx_estimates``,
        ``code_lists``, ``structure``).
    """
    used = sorted(set(table["source"].dropna().astype(str)))
    cards = [catalogue.cards[s] for s in used if s in catalogue.cards]
    licences, seen = [], set()
    for card in cards:
        entry = licence_entry(card.licence, getattr(card, "url", None))
        if entry["title"] not in seen:
            seen.add(entry["title"])
            licences.append(entry)
    sources = [{"title": card.title, **({"path": card.url} if getattr(card, "url", None) else {})}
               for card in cards]
    dataflow = settings.dataflow
    descriptor = {
        "profile": "data-package",
        "name": dataflow.id.lower().replace("_", "-"),
        "title": title or dataflow.name,
        "description": settings.page.intro,
        "version": dataflow.version,
        "licenses": licences or [{"name": "other", "title": "see the source cards"}],
        "sources": sources,
        "resources": [
            {"name": "estimates", "path": paths["estimates"], "profile": "tabular-data-resource",
             "title": "Every published estimate (result schema of the report)", "format": "csv",
             "mediatype": "text/csv", "encoding": "utf-8",
             "schema": estimates_schema(table, settings, catalogue)},
            {"name": "sdmx_estimates", "path": paths["sdmx_estimates"], "profile": "tabular-data-resource",
             "title": "The same estimates as SDMX-CSV 2.0", "format": "csv", "mediatype": "text/csv",
             "encoding": "utf-8", "schema": sdmx_schema(structure),
             "description": f"Follows the SDMX-ML 2.1 structure in {paths['structure']}"},
            {"name": "code_lists", "path": paths["code_lists"], "profile": "tabular-data-resource",
             "title": "Code lists of the SDMX structure", "format": "csv", "mediatype": "text/csv",
             "encoding": "utf-8",
             "schema": {"fields": [_string("codelist", "Code list", required=True),
                                   _string("agency", "Maintenance agency", required=True),
                                   _string("version", "Version", required=True),
                                   _string("code", "Code", required=True),
                                   _string("name", "Name", required=True)],
                        "primaryKey": ["codelist", "code"]}},
        ],
    }
    if created:
        descriptor["created"] = created
    return descriptor


def write_descriptor(descriptor: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(descriptor, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def validate_package(path: Path) -> list[str]:
    """Validate the package with ``frictionless``; return its errors as one-line texts (empty: valid).

    Raises
    ------
    ExchangeError
        When the ``frictionless`` library is not installed.
    """
    try:
        import frictionless
    except ImportError:  # pragma: no cover - frictionless is a dependency of the dev extra
        raise ExchangeError("validating the data package needs frictionless: pip install frictionless") from None
    report = frictionless.validate(str(path))
    problems = []
    for task in report.tasks:
        for error in task.errors[:20]:
            problems.append(f"{task.name}: {error.message}")
    for error in report.errors:
        problems.append(error.message)
    return problems
