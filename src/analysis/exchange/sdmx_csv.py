"""SDMX exchange: the project's data structure (SDG concepts and code lists) and SDMX-CSV 2.0.

Every published estimate (a row of ``outputs/tables/all_estimates.csv``, the one result schema)
becomes one SDMX observation. The structure is built with the maintained SDMX library ``sdmx1``
(``import sdmx``) and written as SDMX-ML 2.1; the data are written as SDMX-CSV 2.0 (the same bytes as
``sdmx.to_csv`` with the 2.0 format options, written directly) and read back with the library.

Coding follows the SDG global data structure definition (IAEG-SDGs:SDG 1.4) wherever it applies,
with its concepts and code lists taken from the extract the project ships
(``data/reference/sdmx/SDG_DSD_extract.xml``):

- ``REF_AREA`` (CL_AREA, M49), ``SEX`` (CL_SEX), ``AGE`` (CL_AGE), ``URBANISATION``,
  ``INCOME_WEALTH_QUANTILE`` (CL_QUANTILE), ``DISABILITY_STATUS`` (CL_DISABILITY), each ``_T``
  when the estimate is not broken down by it;
- attributes ``OBS_STATUS`` (SDMX CL_OBS_STATUS: ``A`` normal, ``U`` low reliability for a
  "caution" cell, ``Q`` suppressed, ``O`` missing), ``CONF_STATUS`` (SDMX CL_CONF_STATUS: ``F``
  free, ``C`` primary and ``D`` secondary suppression), ``UNIT_MEASURE`` and ``UNIT_MULT`` (a share
  0-1 of a percent indicator is exported as published with ``PT`` and ``UNIT_MULT`` 2, i.e. value
  × 10² is the percent, so that every exported value equals the published one), ``NATURE``,
  ``SOURCE_DETAIL``, ``LOWER_BOUND``/``UPPER_BOUND`` (the 95% interval), ``TIME_DETAIL`` and
  ``COMMENT_OBS`` (the method).

Dimensions the SDG structure has no place for are the project's own (agency and names in
``params/exchange.yml``): ``DATA_SOURCE``, ``SUBNATIONAL``, ``POP_GROUP`` (the report's group),
``GROUP_ROLE`` (group or reference population), ``INDICATOR``, ``STATISTIC``,
``OTHER_BREAKDOWN`` (displacement and minority status) and ``CELL_DETAIL``, plus the attributes
``STANDARD_ERROR``, ``UNWEIGHTED_N`` and ``WEIGHTED_N``. ``TIME_PERIOD`` is the year fieldwork
ended (its dates in ``TIME_DETAIL``).

A suppressed cell has no ``OBS_VALUE`` and no number in any attribute. Its ``CONF_STATUS`` is
read from the diagnostic column ``suppression_reason`` when the table has it (a reason starting
"secondary" or naming a withheld input is ``D``); a published table without that column (as
``all_estimates.csv`` is written today) gives ``D`` to derived measures (contrasts, differences,
ratios: withheld because an input is) and ``C`` to cells.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.exchange.settings import ExchangeError, Settings
from analysis.tables import (
    _PLAIN_NUMBER,
    CELL_SEPARATOR,
    FORMULA_TRIGGERS,
    neutralise_text,
    split_cell,
)

#: Dimensions of the project's DSD, in order (TIME_PERIOD, the time dimension, comes last).
DIMENSIONS = ["DATA_SOURCE", "REF_AREA", "SUBNATIONAL", "POP_GROUP", "GROUP_ROLE", "INDICATOR",
              "STATISTIC", "SEX", "AGE", "URBANISATION", "INCOME_WEALTH_QUANTILE",
              "DISABILITY_STATUS", "OTHER_BREAKDOWN", "CELL_DETAIL"]
TIME_DIMENSION = "TIME_PERIOD"
#: Observation attributes, in order.
ATTRIBUTES = ["OBS_STATUS", "CONF_STATUS", "UNIT_MEASURE", "UNIT_MULT", "NATURE", "LOWER_BOUND",
              "UPPER_BOUND", "STANDARD_ERROR", "UNWEIGHTED_N", "WEIGHTED_N", "SOURCE_DETAIL",
              "TIME_DETAIL", "COMMENT_OBS"]
#: SDG dimensions coded from the common schema, with their SDG code list.
SDG_CODELISTS = {"REF_AREA": "CL_AREA", "SEX": "CL_SEX", "AGE": "CL_AGE",
                 "URBANISATION": "CL_URBANISATION", "INCOME_WEALTH_QUANTILE": "CL_QUANTILE",
                 "DISABILITY_STATUS": "CL_DISABILITY"}
#: Attributes coded with an SDG or SDMX code list of the reference extract.
ATTRIBUTE_CODELISTS = {"OBS_STATUS": "CL_OBS_STATUS", "CONF_STATUS": "CL_CONF_STATUS",
                       "UNIT_MEASURE": "CL_UNIT_MEASURE", "UNIT_MULT": "CL_UNIT_MULT",
                       "NATURE": "CL_NATURE"}
#: Dimensions and attributes that are free text (no code list).
UNCODED = {"SUBNATIONAL", "CELL_DETAIL", "SOURCE_DETAIL", "TIME_DETAIL", "COMMENT_OBS"}
#: Numeric attributes (SDMX Double); UNWEIGHTED_N is an integer.
NUMERIC_ATTRIBUTES = {"LOWER_BOUND": "ci_low", "UPPER_BOUND": "ci_high", "STANDARD_ERROR": "se",
                      "UNWEIGHTED_N": "n_unweighted", "WEIGHTED_N": "n_weighted"}
#: The project's own concepts (names and descriptions in params/exchange.yml ``concepts``).
PROJECT_CONCEPTS = ["DATA_SOURCE", "SUBNATIONAL", "POP_GROUP", "GROUP_ROLE", "INDICATOR",
                    "STATISTIC", "OTHER_BREAKDOWN", "CELL_DETAIL", "CONF_STATUS",
                    "STANDARD_ERROR", "UNWEIGHTED_N", "WEIGHTED_N"]
TOTAL = "_T"
_CONTRAST = re.compile(r" vs | − | ÷ ")
_CODE_ID = re.compile(r"[^A-Za-z0-9_@$-]")
#: A value of the comparison dimension -> GROUP_ROLE code.
ROLES = {"group": "G", "reference": "R"}


def code_id(text: str) -> str:
    """An SDMX code id from a catalogue id (letters, digits, ``_@$-``; others become ``_``)."""
    return _CODE_ID.sub("_", str(text)).upper()


@dataclass
class Catalogue:
    """What the coding reads besides the table: labels and cards (all from ``params/``)."""

    indicators: dict            # id -> analysis.schema.Indicator
    dimensions: dict            # id -> analysis.schema.Dimension
    groups: dict                # id -> analysis.schema.Group
    cards: dict                 # source id -> analysis.sources.card.SourceCard
    suppress_below: int = 25
    caution_below: int = 50
    produced_year: int | None = None  # TIME_PERIOD of a source whose card has no collection period
    other_codes: dict = field(default_factory=dict)  # (dimension, category) -> OTHER_BREAKDOWN code

    def __post_init__(self):
        self.other_codes = {(dim, cat): code_id(f"{dim}_{cat}")
                            for dim, spec in self.dimensions.items() for cat in spec.categories}

    @classmethod
    def from_params(cls, thresholds=None) -> Catalogue:
        """The catalogue of ``params/`` (indicators, dimensions, groups, every source card)."""
        from analysis import disclosure, schema
        from analysis.sources.card import card_paths, load_card

        limits = disclosure.resolve_thresholds(thresholds)
        return cls(indicators=schema.load_indicators(), dimensions=schema.load_dimensions(),
                   groups=schema.load_groups(),
                   cards={sid: load_card(p) for sid, p in card_paths().items()},
                   suppress_below=limits.suppress_below, caution_below=limits.caution_below)


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value) else str(value)


def _number(value) -> str:
    """A number as SDMX text: shortest repr that reads back to the same float; blank when missing."""
    if value is None or pd.isna(value):
        return ""
    number = float(value)
    return str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)


def _coordinates(breakdown: str, cell: str, settings: Settings, catalogue: Catalogue) -> dict | None:
    """The SDMX coordinates of one cell of a breakdown, or None when some part has no code."""
    dims = split_cell(breakdown) if breakdown not in ("", "all") else []
    cats = split_cell(cell) if cell not in ("", "all") else []
    if len(dims) != len(cats):
        return None
    out: dict[str, str] = {}

    def put(dimension, code) -> bool:
        if dimension in out:
            return False  # two parts of the cell on one SDMX dimension: not representable
        out[dimension] = code
        return True

    for dim, cat in zip(dims, cats):
        if dim in settings.sdg_dimensions:
            spec = settings.sdg_dimensions[dim]
            if cat not in spec.codes:
                raise ExchangeError(
                    f"params/exchange.yml: key 'sdg_dimensions.{dim}.codes' has no SDG code for "
                    f"category '{cat}'; add it (from the SDG code list of {spec.dimension})")
            ok = put(spec.dimension, spec.codes[cat])
        elif dim == "comparison" and cat in ROLES:
            ok = put("GROUP_ROLE", ROLES[cat])
        elif dim == "admin1_code":
            ok = put("SUBNATIONAL", cat)
        elif (dim, cat) in catalogue.other_codes:
            ok = put("OTHER_BREAKDOWN", catalogue.other_codes[(dim, cat)])
        else:
            ok = False
        if not ok:
            return None
    return out


def collection_period(card, catalogue: Catalogue):
    """The card's collection period; for a card that codes a survey (``survey:``), the survey's;
    None when neither says (TIME_PERIOD is then the year of production, TIME_DETAIL says so)."""
    period = getattr(card, "collection_period", None)
    if period is None and getattr(card, "survey", None) in catalogue.cards:
        period = getattr(catalogue.cards[card.survey], "collection_period", None)
    return period


def code_rows(table: pd.DataFrame, settings: Settings, catalogue: Catalogue) -> pd.DataFrame:
    """Code every row of a result-schema table as an SDMX observation.

    Returns
    -------
    DataFrame
        One row per input row, in the same order: the :data:`DIMENSIONS`, ``TIME_PERIOD``,
        ``OBS_VALUE`` (float, NaN when withheld or missing) and the :data:`ATTRIBUTES` (text, blank
        when not applicable).

    Raises
    ------
    ExchangeError
        A country, category or source with no code, a group that cannot be a code, or two rows
        that would get the same key (naming them by their labels).
    """
    required = ["source", "country", "group", "indicator", "breakdown", "cell", "estimate", "se",
                "ci_low", "ci_high", "n_unweighted", "n_weighted", "flag", "method"]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ExchangeError(f"the estimates table lacks the result-schema columns {missing}")
    has_reason = "suppression_reason" in table.columns
    rows = []
    for i, row in enumerate(table.to_dict("records")):
        where = f"row {i + 2}"  # the file's line: header is line 1
        source = _text(row["source"])
        card = catalogue.cards.get(source)
        if card is None:
            raise ExchangeError(f"{where}: column 'source': '{source}' has no source card in params/sources/")
        period = collection_period(card, catalogue)
        country = _text(row["country"])
        if country not in settings.countries:
            raise ExchangeError(f"{where}: column 'country': '{country}' has no REF_AREA code; add it to "
                                "params/exchange.yml key 'countries' (M49 code from CL_AREA)")
        group = _text(row["group"]) or "all"
        if group == "all":
            group_code = TOTAL
        elif group in catalogue.groups or not _CODE_ID.search(group):
            group_code = group  # a group outside params/groups.yml gets its own code (named so)
        else:
            raise ExchangeError(f"{where}: column 'group': '{group}' is not a group of params/groups.yml "
                                "and not usable as an SDMX code (letters, digits, _ @ $ -)")
        indicator = _text(row["indicator"])
        statistic = settings.statistic_for(row["method"])
        breakdown, cell = _text(row["breakdown"]) or "all", _text(row["cell"]) or "all"

        coords, detail = None, TOTAL
        contrast = _CONTRAST.search(cell)
        if contrast and " vs " in cell:
            left, right = cell.split(" vs ", 1)
            coords = _coordinates(breakdown, left, settings, catalogue)
            detail = f"vs {right}"
        elif not contrast:
            coords = _coordinates(breakdown, cell, settings, catalogue)
            if cell == "all" and breakdown != "all":
                detail = f"over {breakdown}"
        if coords is None:  # not representable on the coded dimensions: say it verbatim
            coords, detail = {}, f"{breakdown}: {cell}"

        flag = _text(row["flag"]) or "ok"
        value = row["estimate"]
        withheld = flag == "suppressed"
        if withheld:
            reason = _text(row.get("suppression_reason")) if has_reason else ""
            if reason:
                secondary = reason.lower().startswith(("secondary", "input")) or "protects" in reason
            else:
                secondary = bool(contrast) or statistic.derived
            conf, status = ("D" if secondary else "C"), "Q"
            value = float("nan")
        else:
            conf = "F"
            status = "O" if pd.isna(value) else ("U" if flag == "caution" else "A")
        spec = catalogue.indicators.get(indicator)
        if statistic.unit == "ratio":
            unit, mult = "RO", "0"
        elif statistic.unit == "percent":
            unit, mult = "PT", "0"
        elif statistic.unit == "share" or (statistic.unit == "percent_scale" and spec is not None
                                            and spec.unit == "percent"):
            unit, mult = "PT", "2"  # a share 0-1: value x 10^2 is the percent
        else:
            unit, mult = "NUMBER", "0"
        if period is not None:
            time_period, time_detail = str(period.end.year), f"{period.start.isoformat()}/{period.end.isoformat()}"
        else:
            time_period = str(catalogue.produced_year or dt.date.today().year)
            time_detail = settings.codes["TIME_DETAIL.unknown"]
        out = {
            "DATA_SOURCE": source, "REF_AREA": settings.countries[country],
            "SUBNATIONAL": coords.get("SUBNATIONAL", TOTAL), "POP_GROUP": group_code,
            "GROUP_ROLE": coords.get("GROUP_ROLE", TOTAL), "INDICATOR": indicator,
            "STATISTIC": statistic.code,
            **{dim: coords.get(dim, TOTAL) for dim in
               ("SEX", "AGE", "URBANISATION", "INCOME_WEALTH_QUANTILE", "DISABILITY_STATUS",
                "OTHER_BREAKDOWN")},
            "CELL_DETAIL": detail, TIME_DIMENSION: time_period,
            "OBS_VALUE": float("nan") if pd.isna(value) else float(value),
            "OBS_STATUS": status, "CONF_STATUS": conf, "UNIT_MEASURE": unit, "UNIT_MULT": mult,
            "NATURE": statistic.nature,
            **{attr: ("" if withheld else _number(row[col])) for attr, col in NUMERIC_ATTRIBUTES.items()},
            "SOURCE_DETAIL": card.title, "TIME_DETAIL": time_detail,
            "COMMENT_OBS": _text(row["method"]),
        }
        rows.append(out)
    coded = pd.DataFrame(rows, columns=[*DIMENSIONS, TIME_DIMENSION, "OBS_VALUE", *ATTRIBUTES])
    key = [*DIMENSIONS, TIME_DIMENSION]
    dupes = coded.duplicated(key, keep=False)
    if dupes.any():
        first = table.loc[dupes.to_numpy()].head(2)
        labels = "; ".join(f"{r.source}/{r.indicator}/{r.breakdown}/{r.cell}/{str(r.method)[:30]}"
                           for r in first.itertuples())
        raise ExchangeError(f"{int(dupes.sum())} rows get the same SDMX key (e.g. {labels}); give "
                            "their methods distinct entries in params/exchange.yml key 'statistics'")
    return coded


# ---------------------------------------------------------------------------------------------
# The structure (sdmx1 model objects) and the SDMX-CSV file


@dataclass
class Structure:
    """The project's SDMX structures: data structure definition, dataflow, code lists, concepts."""

    dsd: object
    dataflow: object
    codelists: dict
    concept_schemes: list

    def message(self):
        """A :class:`sdmx.message.StructureMessage` holding every structure (for SDMX-ML)."""
        from sdmx import message

        agency = self.dataflow.maintainer
        msg = message.StructureMessage(header=message.Header(id=f"{agency.id}_{self.dataflow.id}",
                                                             sender=agency))
        for obj in [self.dsd, self.dataflow, *self.codelists.values(), *self.concept_schemes]:
            msg.add(obj)
        return msg


def reference_structures(settings: Settings):
    """The shipped SDG extract, read with sdmx1 (a :class:`sdmx.message.StructureMessage`)."""
    import sdmx

    return sdmx.read_sdmx(settings.reference_path)


def build_structure(settings: Settings, catalogue: Catalogue, coded: pd.DataFrame | None = None) -> Structure:
    """Build the DSD and dataflow from the SDG extract and the catalogue.

    ``coded`` (the output of :func:`code_rows`) adds codes outside the catalogue that the data
    use (indicators the catalogue lacks, named "Indicator outside the catalogue").
    """
    from sdmx.model import common, v21

    ref = reference_structures(settings)
    sdg_concepts = ref.concept_scheme["SDG_CONCEPTS"]
    agency = common.Agency(id=settings.agency.id, name=settings.agency.name)
    ma = {"maintainer": agency, "version": settings.dataflow.version, "is_final": True,
          "is_external_reference": False}
    concepts = common.ConceptScheme(id="CSO_CONCEPTS", name=f"{settings.agency.name}: concepts", **ma)
    for cid in PROJECT_CONCEPTS:
        text = settings.concepts.get(cid)
        if text is None:
            raise ExchangeError(f"params/exchange.yml: key 'concepts.{cid}' is missing (name, description)")
        concepts.setdefault(id=cid, name=text.name, description=text.description)

    codelists = {cl_id: ref.codelist[cl_id] for cl_id in
                 [*SDG_CODELISTS.values(), *ATTRIBUTE_CODELISTS.values()]}

    def own(cl_id: str, name: str, items) -> None:
        cl = common.Codelist(id=cl_id, name=name, **ma)
        for code, label in items:
            cl.setdefault(id=code, name=label)
        codelists[cl_id] = cl

    codes = settings.codes
    own("CL_DATA_SOURCE", settings.concepts["DATA_SOURCE"].name,
        [(sid, card.title) for sid, card in sorted(catalogue.cards.items())])
    groups = [(TOTAL, codes["POP_GROUP._T"])] + [(gid, g.label) for gid, g in catalogue.groups.items()]
    if coded is not None:
        extra = sorted(set(coded["POP_GROUP"]) - set(catalogue.groups) - {TOTAL})
        groups += [(gid, f"{codes['POP_GROUP.other']}: {gid}") for gid in extra]
    own("CL_POP_GROUP", settings.concepts["POP_GROUP"].name, groups)
    own("CL_GROUP_ROLE", settings.concepts["GROUP_ROLE"].name,
        [(c, codes[f"GROUP_ROLE.{c}"]) for c in ("G", "R", TOTAL)])
    indicators = [(iid, spec.label) for iid, spec in catalogue.indicators.items()]
    if coded is not None:
        extra = sorted(set(coded["INDICATOR"]) - set(catalogue.indicators))
        indicators += [(iid, f"{codes['INDICATOR.other']}: {iid}") for iid in extra]
    own("CL_INDICATOR", settings.concepts["INDICATOR"].name, indicators)
    own("CL_STATISTIC", settings.concepts["STATISTIC"].name,
        [(s.code, s.name) for s in settings.statistics])
    own("CL_OTHER_BREAKDOWN", settings.concepts["OTHER_BREAKDOWN"].name,
        [(TOTAL, codes["OTHER_BREAKDOWN._T"])]
        + [(code, f"{catalogue.dimensions[d].label}: {catalogue.dimensions[d].category_labels.get(c, c)}")
           for (d, c), code in catalogue.other_codes.items() if d not in settings.sdg_dimensions])

    # Every code that the settings use must exist in the SDG code lists (never invented here).
    for dim, spec in settings.sdg_dimensions.items():
        cl = codelists[SDG_CODELISTS[spec.dimension]]
        for cat, code in spec.codes.items():
            if code not in cl:
                raise ExchangeError(f"params/exchange.yml: key 'sdg_dimensions.{dim}.codes.{cat}': code "
                                    f"'{code}' is not in {cl.id} of {settings.reference}")
    for iso3, code in settings.countries.items():
        if code not in codelists["CL_AREA"]:
            raise ExchangeError(f"params/exchange.yml: key 'countries.{iso3}': code '{code}' is not in "
                                f"CL_AREA of {settings.reference}; copy it from the SDG DSD")

    concept_of = {cid: (concepts[cid] if cid in PROJECT_CONCEPTS else sdg_concepts[cid])
                  for cid in [*DIMENSIONS, TIME_DIMENSION, "OBS_VALUE", *ATTRIBUTES]}
    enum_of = {**SDG_CODELISTS, **ATTRIBUTE_CODELISTS, "DATA_SOURCE": "CL_DATA_SOURCE",
               "POP_GROUP": "CL_POP_GROUP", "GROUP_ROLE": "CL_GROUP_ROLE",
               "INDICATOR": "CL_INDICATOR", "STATISTIC": "CL_STATISTIC",
               "OTHER_BREAKDOWN": "CL_OTHER_BREAKDOWN"}

    def representation(cid: str):
        if cid in enum_of:
            return common.Representation(enumerated=codelists[enum_of[cid]])
        text_type = "Integer" if cid == "UNWEIGHTED_N" else ("Double" if cid in NUMERIC_ATTRIBUTES else "String")
        return common.Representation(non_enumerated=[common.Facet(value_type=common.FacetValueType[text_type.lower()])])

    dsd = v21.DataStructureDefinition(id=settings.dataflow.id, name=settings.dataflow.name, **ma)
    for cid in DIMENSIONS:
        dsd.dimensions.getdefault(id=cid, concept_identity=concept_of[cid],
                                  local_representation=representation(cid))
    dsd.dimensions.getdefault(id=TIME_DIMENSION, cls=common.TimeDimension,
                              concept_identity=concept_of[TIME_DIMENSION])
    dsd.measures.getdefault(id="OBS_VALUE", concept_identity=concept_of["OBS_VALUE"])
    for cid in ATTRIBUTES:
        dsd.attributes.getdefault(id=cid, concept_identity=concept_of[cid],
                                  local_representation=representation(cid),
                                  related_to=v21.PrimaryMeasureRelationship(),
                                  usage_status=common.UsageStatus.mandatory
                                  if cid in ("OBS_STATUS", "CONF_STATUS", "UNIT_MEASURE", "UNIT_MULT")
                                  else common.UsageStatus.conditional)
    dataflow = v21.DataflowDefinition(id=settings.dataflow.id, name=settings.dataflow.name,
                                      structure=dsd, **ma)
    schemes = [concepts, sdg_concepts]
    return Structure(dsd=dsd, dataflow=dataflow, codelists=codelists, concept_schemes=schemes)


def check_codes(coded: pd.DataFrame, structure: Structure) -> None:
    """Every coded value is in its code list (raises :class:`ExchangeError` naming the first)."""
    for component in [*structure.dsd.dimensions.components, *structure.dsd.attributes.components]:
        rep = component.local_representation
        cl = getattr(rep, "enumerated", None) if rep is not None else None
        if cl is None or component.id not in coded.columns:
            continue
        values = set(coded[component.id].astype(str)) - {""}
        bad = sorted(v for v in values if v not in cl)
        if bad:
            raise ExchangeError(f"{component.id}: code '{bad[0]}' is not in {cl.id}")


def write_structure(structure: Structure, path: Path) -> Path:
    """Write every structure as one SDMX-ML 2.1 structure message."""
    import sdmx

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sdmx.to_xml(structure.message(), pretty_print=True))
    return path


def neutralise_text_cells(coded: pd.DataFrame) -> pd.DataFrame:
    """The coded observations with every cell a spreadsheet would run as a formula made safe
    (OWASP's CSV-injection rule, as :func:`analysis.tables.write_csv`): the SDMX-CSV is opened
    in spreadsheets too.

    Free-text dimensions and attributes (:data:`UNCODED`: source titles from partners' cards,
    admin-1 names, methods) go through :func:`analysis.tables.neutralise_text`. Numbers are
    written as numbers. Codes are SDMX ids (``[A-Za-z0-9_@$-]+``), so they cannot start with
    ``=``, ``+``, tab or CR; a code starting with ``-`` or ``@`` is refused (a one-line error
    naming it) rather than changed, since a changed code would no longer be in its code list.
    """
    out = coded.copy()
    for cid in [*DIMENSIONS, TIME_DIMENSION, *ATTRIBUTES]:
        if cid in NUMERIC_ATTRIBUTES or cid not in out.columns:
            continue
        if cid in UNCODED:
            out[cid] = out[cid].map(lambda v: neutralise_text(v) if isinstance(v, str) else v)
            continue
        for value in out[cid].dropna().astype(str).unique():
            if value[:1] in FORMULA_TRIGGERS and not _PLAIN_NUMBER.match(value):
                raise ExchangeError(f"column {cid}: code {value!r} starts with {value[0]!r}, which a spreadsheet "
                                    "runs as a formula; give it an id starting with a letter or digit")
    return out


def write_sdmx_csv(coded: pd.DataFrame, structure: Structure, path: Path) -> Path:
    """Write the coded observations as SDMX-CSV 2.0 (SDMX 3.0 section 6, "SDMX-CSV").

    One row per observation: ``STRUCTURE`` ("dataflow"), ``STRUCTURE_ID`` (the dataflow's
    ``AGENCY:ID(VERSION)``), ``ACTION`` ("I", information), the dimensions in the order of the
    DSD, ``TIME_PERIOD``, ``OBS_VALUE`` (shortest repr of the float, blank when withheld) and every
    attribute, rows in the order given. ``coded`` has been through :func:`neutralise_text_cells`
    and is written as it is by :func:`analysis.tables.write_text_csv` (atomically). The file is
    the same, byte for byte, as sdmx1's ``sdmx.to_csv`` of the same data set
    (``tests/test_exchange.py`` checks it) in a fifth of its time, and :func:`read_sdmx_csv` reads it back with sdmx1 before anything is published.
    """
    from analysis.tables import write_text_csv

    flow = structure.dataflow
    columns = [*DIMENSIONS, TIME_DIMENSION, "OBS_VALUE", *ATTRIBUTES]
    header = pd.DataFrame({"STRUCTURE": "dataflow", "STRUCTURE_ID": f"{flow.maintainer.id}:{flow.id}({flow.version})",
                           "ACTION": "I"}, index=coded.index)
    values = ["" if pd.isna(v) else repr(float(v)) for v in coded["OBS_VALUE"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    # the caller neutralised the text cells (neutralise_text_cells: codes are refused, not changed)
    return write_text_csv(pd.concat([header, coded[columns].assign(OBS_VALUE=values)], axis=1), path,
                          neutralised=True)


def read_sdmx_csv(path: Path, structure_path: Path) -> pd.DataFrame:
    """Read an SDMX-CSV 2.0 file back with sdmx1, against the SDMX-ML structure it follows.

    Returns one row per observation: dimensions, ``OBS_VALUE`` (float, NaN when empty) and the
    attributes (text).
    """
    import sdmx

    structures = sdmx.read_sdmx(structure_path)
    dataflow = next(iter(structures.dataflow.values()))
    message = sdmx.read_sdmx(path, structure=dataflow)
    rows = []
    for dataset in message.data:
        for obs in dataset.obs:
            row = {kv.id: str(kv.value) for kv in obs.dimension.values.values()}
            text = "" if obs.value is None else str(obs.value)
            row["OBS_VALUE"] = float(text) if text not in ("", "nan", "NaN") else float("nan")
            for cid, attr in obs.attached_attribute.items():
                row[cid] = "" if attr.value is None else str(getattr(attr.value, "id", attr.value))
            rows.append(row)
    return pd.DataFrame(rows)


def compare_with_published(read: pd.DataFrame, coded: pd.DataFrame) -> list[str]:
    """Differences between what was read back and what was coded (empty when equal).

    Every value, bound, standard error and count must be the same float (the text holds the
    shortest repr of the published float); withheld cells must be empty in both.
    """
    key = [*DIMENSIONS, TIME_DIMENSION]
    if len(read) != len(coded):
        return [f"{len(read)} observations read back, {len(coded)} written"]
    merged = coded.merge(read, on=key, how="left", suffixes=("", "_read"), indicator=True)
    problems = []
    lost = merged["_merge"] != "both"
    if lost.any():
        problems.append(f"{int(lost.sum())} observations not found in the file")
    for column in ["OBS_VALUE", *ATTRIBUTES]:
        mine, theirs = merged[column], merged[f"{column}_read"]
        if column == "OBS_VALUE":
            same = (mine == theirs) | (mine.isna() & theirs.isna())
        elif column in NUMERIC_ATTRIBUTES:
            a = pd.to_numeric(mine.replace("", pd.NA), errors="coerce")
            b = pd.to_numeric(theirs.replace("", pd.NA), errors="coerce")
            same = (a == b) | (a.isna() & b.isna())
        else:
            same = mine.fillna("").astype(str) == theirs.fillna("").astype(str)
        if not same.all():
            problems.append(f"{column}: {int((~same).sum())} observations differ")
    return problems


#: Re-exported for the other exchange modules.
__all__ = ["ATTRIBUTES", "CELL_SEPARATOR", "DIMENSIONS", "TIME_DIMENSION", "Catalogue", "Structure",
           "build_structure", "check_codes", "code_rows", "compare_with_published", "read_sdmx_csv",
           "write_sdmx_csv", "write_structure"]
