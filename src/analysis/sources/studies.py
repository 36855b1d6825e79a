"""Study cards: the published aggregates of partner studies (source card ``kind: study``).

Many partner CSOs can share only what they published: a percentage and its n for a group, a
country and a period. A *study card* records one study — who did it, where, when, whom it
counted and how (group definition, sampling, mode), its quality appraisal — and one row per
published estimate. Cards come in two forms, which give the same tables:

- the **study-extraction workbook** partners fill in (template:
  ``data/raw/templates/study_extraction.xlsx``, made by :func:`write_template`) with a sheet
  ``studies`` (one row per study), a sheet ``estimates`` (one row per published estimate) and a
  sheet ``appraisal`` (the ten Hoy et al. 2012 items per study);
- a **YAML study card** per study, with the same keys and ``estimates:`` / ``appraisal:`` inline.

A source card ``params/sources/<id>.yml`` with ``kind: study`` lists those files::

    id: demo_partner_studies
    title: Partner studies of the demo collaborative (SYNTHETIC)
    kind: study
    synthetic: true
    licence: CC-BY-4.0
    files: [{path: demo/studies/partner_studies.xlsx}, {path: demo/studies/S38.yml}]

``python -m analysis ingest`` hands such cards to :func:`ingest_study_source`, which validates
every study and estimate against the catalogues (``params/indicators.yml``,
``params/groups.yml``) and writes ``<processed>/<id>.parquet`` — one row per published
estimate with its study's attributes and appraisal (:data:`PROCESSED_COLUMNS`) — and its row
accounting in ``<id>.log.json``. Errors are one line naming the file, sheet, row and column and
what to fix, never quoting a cell; blank rows and rows without any estimate are excluded and
counted with their reason.

Quality appraisal follows Hoy et al. (2012), *J Clin Epidemiol* 65: 934–939, "Assessing risk of
bias in prevalence studies": ten items, each judged ``low`` or ``high`` risk (``unclear`` counts
as high, as the tool says), and an overall risk of bias ``low | moderate | high``. When the
reviewer gives no overall judgement it is derived from the number of high-risk items (≤ 3 low,
4–6 moderate, ≥ 7 high; the rule used by e.g. Werfalli et al. 2016) and marked as derived.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from analysis import config, hashing, schema
from analysis.config import pydantic_message
from analysis.sources.card import (  # one collection-period model for every card kind
    CardError,
    KindCard,
    Period,
    card_kind,
    load_kind_card,
    register_kind,
)

SAMPLING = ("probability", "quota", "convenience", "respondent_driven", "administrative")
MODES = ("phone", "face_to_face", "online", "sms_radio", "mixed")
GROUP_DEFINITIONS = ("wg_ss", "self_identified", "service_records", "proxy_report", "other")
ITEM_RATINGS = ("low", "high", "unclear")
RISK_OF_BIAS = ("low", "moderate", "high")
HOY_ITEMS = tuple(f"hoy_{i}" for i in range(1, 11))
#: Sheets of the extraction workbook.
SHEETS = ("studies", "estimates", "appraisal")

#: Columns of the processed study-estimates table, in order.
PROCESSED_COLUMNS = [
    "source", "study_id", "partner", "title", "year", "citation", "url", "sampling", "mode",
    "group_definition", "period_start", "period_end", "sample_size", "country", "indicator",
    "group", "reference_group", "events", "n", "estimate", "ci_low", "ci_high", "estimate_form",
    "reference_events", "reference_n", "reference_estimate", *HOY_ITEMS, "risk_of_bias",
    "risk_of_bias_derived",
]


class StudyError(ValueError):
    """A study card or extraction workbook is malformed (one line: file, sheet, row, column).

    Ingest reports it as a user error; :func:`analysis.sources.card.load_card` as a ``CardError``.
    """


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip())


class StudyEstimate(_Strict):
    """One published estimate: ``events`` of ``n``, or ``percent`` of ``n`` (0–100).

    ``ci_low``/``ci_high`` are percentages where the study gave an interval. ``reference_*``
    give the comparison group's estimate where published. The catalogue checks (indicator,
    group) are done by :func:`validate_study` with the loaded catalogues.
    """

    indicator: str
    group: str
    country: str
    n: int = Field(gt=0)
    events: int | None = Field(None, ge=0)
    percent: float | None = Field(None, ge=0, le=100)
    ci_low: float | None = Field(None, ge=0, le=100)
    ci_high: float | None = Field(None, ge=0, le=100)
    reference_group: str | None = None
    reference_n: int | None = Field(None, gt=0)
    reference_events: int | None = Field(None, ge=0)
    reference_percent: float | None = Field(None, ge=0, le=100)
    _where: str | None = PrivateAttr(default=None)  # file, sheet and row, for messages

    @field_validator("country")
    @classmethod
    def _iso3(cls, value):
        if not schema.is_iso3(value):
            raise ValueError("is not an ISO 3166-1 alpha-3 code (e.g. 'KEN')")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.events is None and self.percent is None:
            raise ValueError("give 'events' or 'percent' with its 'n'")
        if self.events is not None and self.events > self.n:
            raise ValueError("'events' is larger than its 'n'")
        # a published percentage is rounded: allow it half a percentage point (and a little)
        if self.events is not None and self.percent is not None \
                and abs(100 * self.events / self.n - self.percent) > 0.55:
            raise ValueError("'events' of 'n' and 'percent' disagree; give one of them")
        value = self.percent if self.percent is not None else 100 * self.events / self.n
        if (self.ci_low is None) != (self.ci_high is None):
            raise ValueError("give both 'ci_low' and 'ci_high', or neither")
        if self.ci_low is not None and not (self.ci_low <= value + 0.05 and value - 0.05 <= self.ci_high):
            raise ValueError("the interval 'ci_low'–'ci_high' does not contain the estimate")
        if self.reference_events is not None and self.reference_n is not None \
                and self.reference_events > self.reference_n:
            raise ValueError("'reference_events' is larger than its 'reference_n'")
        if (self.reference_events is not None or self.reference_percent is not None) \
                and self.reference_n is None:
            raise ValueError("a reference estimate needs 'reference_n'")
        return self

    @property
    def event_count(self) -> int:
        """The count pooled: ``events``, or ``round(percent × n / 100)`` (published percentage)."""
        return self.events if self.events is not None else round(self.percent * self.n / 100)


class Appraisal(_Strict):
    """Hoy et al. (2012) risk of bias of a prevalence study: ten items and an overall judgement."""

    items: dict[str, Literal[ITEM_RATINGS]]  # type: ignore[valid-type]
    overall: Literal[RISK_OF_BIAS] | None = None  # type: ignore[valid-type]

    @field_validator("items", mode="before")
    @classmethod
    def _item_keys(cls, value):
        if isinstance(value, dict):
            value = {(f"hoy_{k}" if str(k).isdigit() else str(k)): (str(v).strip().lower() if v is not None else v)
                     for k, v in value.items()}
            unknown = sorted(set(value) - set(HOY_ITEMS))
            missing = [k for k in HOY_ITEMS if k not in value]
            if unknown:
                raise ValueError(f"unknown items {unknown}; the tool has hoy_1 … hoy_10")
            if missing:
                raise ValueError(f"items {missing} are missing; rate every item low, high or unclear")
        return value

    @property
    def high_risk_items(self) -> int:
        return sum(1 for v in self.items.values() if v in ("high", "unclear"))

    @property
    def risk_of_bias(self) -> str:
        """The reviewer's overall judgement, or the one derived from the count of high-risk items."""
        if self.overall:
            return self.overall
        high = self.high_risk_items
        return "low" if high <= 3 else "moderate" if high <= 6 else "high"


class StudyCard(_Strict):
    """One partner study and its published estimates (the YAML form of a study card)."""

    study_id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    partner: str
    title: str
    year: int = Field(ge=1990, le=2100)
    citation: str | None = None
    url: str | None = None
    countries: list[str] = Field(min_length=1)
    period: Period
    groups: list[str] = Field(min_length=1)
    group_definition: Literal[GROUP_DEFINITIONS]  # type: ignore[valid-type]
    sampling: Literal[SAMPLING]  # type: ignore[valid-type]
    mode: Literal[MODES]  # type: ignore[valid-type]
    sample_size: int = Field(gt=0)
    appraisal: Appraisal | None = None
    estimates: list[StudyEstimate] = Field(default_factory=list)
    _where: str | None = PrivateAttr(default=None)  # file, sheet and row, for messages

    @field_validator("countries")
    @classmethod
    def _iso3(cls, value):
        bad = [i for i, code in enumerate(value) if not schema.is_iso3(code)]
        if bad:
            raise ValueError(f"entry {bad[0] + 1} is not an ISO 3166-1 alpha-3 code (e.g. 'KEN')")
        return value


class StudyFile(_Strict):
    """A study file, relative to the raw root: an extraction workbook or a YAML study card."""

    path: str = Field(pattern=r"\.(xlsx|yml|yaml)$")
    sha256: str | None = None


class StudySourceCard(KindCard):
    """A source card of ``kind: study``: the files holding study cards and extraction workbooks."""

    kind: Literal["study"]
    licence: str
    citation: str | None = None
    url: str | None = None
    files: list[StudyFile] = Field(min_length=1)

    @property
    def personal_columns(self) -> list[str]:
        """Study cards hold published aggregates only: no personal columns."""
        return []


# --------------------------------------------------------------------------------------------
# Catalogue checks


def validate_study(study: StudyCard, where: str, indicators, groups) -> None:
    """Check a study against the catalogues; one-line :class:`StudyError` naming ``where``."""
    if study.period.start.year > study.year:
        raise StudyError(f"{where}: 'year' (of publication) is before the start of 'period'")
    for name in study.groups:
        if name not in groups:
            raise StudyError(f"{where}: column 'groups': a group is not in params/groups.yml "
                             f"(groups: {', '.join(groups)})")
    for i, est in enumerate(study.estimates):
        at = est._where or f"{where}, estimate {i + 1}"
        if est.indicator not in indicators:
            raise StudyError(f"{at}: column 'indicator': not in params/indicators.yml; "
                             "use an indicator id of the catalogue")
        if est.group not in groups:
            raise StudyError(f"{at}: column 'group': not a group of params/groups.yml "
                             f"(groups: {', '.join(groups)})")
        if est.reference_group not in (None, "reference") and est.reference_group not in groups:
            raise StudyError(f"{at}: column 'reference_group': give 'reference' (the group's "
                             "reference population in params/groups.yml) or a group id")
        if est.country not in study.countries:
            raise StudyError(f"{at}: column 'country' is not among the study's 'countries'")
        # one estimate per study and cell: pooling treats studies as independent
        earlier = [j for j, other in enumerate(study.estimates[:i])
                   if (other.indicator, other.group, other.country) == (est.indicator, est.group, est.country)]
        if earlier:
            first = study.estimates[earlier[0]]._where or f"estimate {earlier[0] + 1}"
            raise StudyError(f"{at}: repeats the indicator × group × country of {first.split(': ')[-1]}; "
                             "give one estimate per study and cell (e.g. the main or latest wave)")


# --------------------------------------------------------------------------------------------
# Readers


def _cell(value):
    """A workbook cell as Python: None for blanks, ints for whole floats, stripped text."""
    if _blank(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dt.datetime):  # pd.Timestamp is a datetime too
        return value.date()
    if isinstance(value, str):
        return value.strip()
    return value


def _split(value) -> list[str]:
    return [part.strip() for part in str(value).replace(",", ";").split(";") if part.strip()] \
        if value is not None else []


def _row_error(exc: ValidationError, where: str) -> StudyError:
    text = pydantic_message(exc, where)
    # pydantic messages quote the input only in 'input_value'; ours never include it
    return StudyError(text.replace("key 'items.", "column '").replace("key '", "column '"))


def read_workbook(path: Path | str) -> tuple[list[StudyCard], dict]:
    """Read a study-extraction workbook: sheets ``studies``, ``estimates``, ``appraisal``.

    Returns the studies (estimates and appraisal attached) and the row accounting
    ``{"<sheet>": {"rows_read", "rows_kept", "rows_excluded": {reason: count}}}``. Blank rows
    are excluded and counted; anything else that is wrong is a :class:`StudyError` naming the
    sheet, the row as Excel numbers it and the column.
    """
    path = Path(path)
    try:
        book = pd.read_excel(path, sheet_name=None, dtype=object, engine="openpyxl")
    except FileNotFoundError:
        raise StudyError(f"{path}: file not found (check 'files' in the source card)") from None
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types for a broken file
        raise StudyError(f"{path}: not a readable .xlsx workbook ({type(exc).__name__}); "
                         "save it again from Excel or LibreOffice") from None
    missing = [s for s in ("studies", "estimates") if s not in book]
    if missing:
        raise StudyError(f"{path}: sheet '{missing[0]}' is missing; the workbook needs sheets "
                         f"{', '.join(SHEETS)} (see data/raw/templates/study_extraction.xlsx)")
    accounting: dict[str, dict] = {}
    rows = {}
    for sheet in SHEETS:
        frame = book.get(sheet, pd.DataFrame())
        frame.columns = [str(c).strip() for c in frame.columns]
        records = []
        for i, raw in enumerate(frame.to_dict("records")):
            values = {k: _cell(v) for k, v in raw.items() if not k.startswith("Unnamed")}
            records.append((i + 2, values))  # Excel row: header is row 1
        blank = [r for r in records if all(v is None for v in r[1].values())]
        kept = [r for r in records if r not in blank]
        accounting[sheet] = {"rows_read": len(records), "rows_kept": len(kept),
                             "rows_excluded": {"blank row": len(blank)} if blank else {}}
        rows[sheet] = kept

    required = {"studies": ("study_id", "partner", "title", "year", "countries", "period_start",
                            "period_end", "groups", "group_definition", "sampling", "mode",
                            "sample_size"),
                "estimates": ("study_id", "indicator", "group", "country", "n"),
                "appraisal": ("study_id", *HOY_ITEMS)}
    for sheet, columns in required.items():
        present = set(book[sheet].columns) if sheet in book else None
        if present is None:
            continue
        absent = [c for c in columns if c not in present]
        if absent:
            raise StudyError(f"{path}: sheet '{sheet}': column '{absent[0]}' is missing "
                             "(see data/raw/templates/study_extraction.xlsx)")

    studies: dict[str, StudyCard] = {}
    for excel_row, values in rows["studies"]:
        where = f"{path}: sheet 'studies', row {excel_row}"
        data = {k: v for k, v in values.items() if v is not None}
        for key in ("countries", "groups"):
            data[key] = _split(data.get(key))
        if "period_start" in data or "period_end" in data:
            data["period"] = {"start": data.pop("period_start", None), "end": data.pop("period_end", None)}
        data = {k: v for k, v in data.items() if k in StudyCard.model_fields or k == "period"}
        try:
            study = StudyCard(**data)
        except ValidationError as exc:
            raise _row_error(exc, where) from None
        if study.study_id in studies:
            raise StudyError(f"{where}: column 'study_id' repeats an earlier row; give each study once")
        study._where = where
        studies[study.study_id] = study

    for excel_row, values in rows["estimates"]:
        where = f"{path}: sheet 'estimates', row {excel_row}"
        sid = values.get("study_id")
        if sid not in studies:
            raise StudyError(f"{where}: column 'study_id' is not a study of sheet 'studies'")
        data = {k: v for k, v in values.items() if v is not None and k != "study_id"}
        try:
            estimate = StudyEstimate(**data)
        except ValidationError as exc:
            raise _row_error(exc, where) from None
        estimate._where = where
        studies[sid].estimates.append(estimate)

    seen = set()
    for excel_row, values in rows.get("appraisal", []):
        where = f"{path}: sheet 'appraisal', row {excel_row}"
        sid = values.get("study_id")
        if sid not in studies:
            raise StudyError(f"{where}: column 'study_id' is not a study of sheet 'studies'")
        if sid in seen:
            raise StudyError(f"{where}: column 'study_id' is appraised twice; keep one row per study")
        seen.add(sid)
        try:
            studies[sid].appraisal = Appraisal(
                items={k: values.get(k) for k in HOY_ITEMS}, overall=values.get("overall"))
        except ValidationError as exc:
            raise _row_error(exc, where) from None
    return list(studies.values()), accounting


def read_study_card(path: Path | str) -> StudyCard:
    """Read and validate one YAML study card (the keys of :class:`StudyCard`)."""
    path = Path(path)
    data = config.read_yaml_mapping(path, StudyError, "study card")
    try:
        return StudyCard(**data)
    except ValidationError as exc:
        raise StudyError(pydantic_message(exc, str(path))) from None


def load_study_source_card(path: Path | str, data: dict | None = None) -> StudySourceCard:
    """Read a ``kind: study`` source card (``params/sources/<id>.yml``; :func:`card.load_kind_card`)."""
    return load_kind_card(path, StudySourceCard, StudyError, data)


def _load_for_card(path: Path, data: dict) -> StudySourceCard:
    """:func:`analysis.sources.card.load_card` of a study card: its errors as ``CardError``."""
    try:
        return load_study_source_card(path, data)
    except StudyError as exc:
        raise CardError(str(exc)) from None


register_kind("study", _load_for_card)


def is_study_card(path: Path | str) -> bool:
    """True when the source card at ``path`` declares ``kind: study`` (read by this module)."""
    return card_kind(path) == "study"


# --------------------------------------------------------------------------------------------
# Tidy tables


def studies_table(studies: list[StudyCard], source: str = "") -> pd.DataFrame:
    """One row per published estimate with its study's attributes (:data:`PROCESSED_COLUMNS`).

    ``estimate``, ``ci_low``, ``ci_high`` and ``reference_estimate`` are proportions (0–1);
    ``events`` is the published count or ``round(percent × n)``; ``estimate_form`` says which.
    """
    rows = []
    for study in studies:
        appraisal = study.appraisal
        for est in study.estimates:
            ref_events = est.reference_events
            if ref_events is None and est.reference_percent is not None:
                ref_events = round(est.reference_percent * est.reference_n / 100)
            rows.append({
                "source": source, "study_id": study.study_id, "partner": study.partner,
                "title": study.title, "year": study.year, "citation": study.citation,
                "url": study.url, "sampling": study.sampling, "mode": study.mode,
                "group_definition": study.group_definition,
                "period_start": study.period.start.isoformat(),
                "period_end": study.period.end.isoformat(), "sample_size": study.sample_size,
                "country": est.country, "indicator": est.indicator, "group": est.group,
                "reference_group": est.reference_group, "events": est.event_count, "n": est.n,
                "estimate": est.event_count / est.n if est.percent is None else est.percent / 100,
                "ci_low": None if est.ci_low is None else est.ci_low / 100,
                "ci_high": None if est.ci_high is None else est.ci_high / 100,
                "estimate_form": "count" if est.events is not None else "percent",
                "reference_events": ref_events, "reference_n": est.reference_n,
                "reference_estimate": None if ref_events is None else ref_events / est.reference_n,
                **{k: (appraisal.items[k] if appraisal else None) for k in HOY_ITEMS},
                "risk_of_bias": appraisal.risk_of_bias if appraisal else None,
                "risk_of_bias_derived": bool(appraisal and appraisal.overall is None),
            })
    frame = pd.DataFrame(rows, columns=PROCESSED_COLUMNS)
    for column in ("events", "n", "year", "sample_size", "reference_events", "reference_n"):
        frame[column] = frame[column].astype("Int64")
    for column in ("estimate", "ci_low", "ci_high", "reference_estimate"):
        frame[column] = frame[column].astype("float64")
    text = [c for c in PROCESSED_COLUMNS if c not in frame.select_dtypes(["number", "bool"]).columns
            and c != "risk_of_bias_derived"]
    for column in text:
        frame[column] = frame[column].astype("string")
    return frame


def appraisal_table(studies: list[StudyCard]) -> pd.DataFrame:
    """One row per study: id, partner, year, sampling, the ten items and the overall risk of bias."""
    rows = []
    for study in studies:
        a = study.appraisal
        rows.append({"study_id": study.study_id, "partner": study.partner, "year": study.year,
                     "sampling": study.sampling, **{k: (a.items[k] if a else None) for k in HOY_ITEMS},
                     "risk_of_bias": a.risk_of_bias if a else None,
                     "risk_of_bias_derived": bool(a and a.overall is None)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Ingest hook (called by analysis.sources.ingest for ``kind: study`` cards)


def read_study_files(card: StudySourceCard, raw_root: Path, card_path: Path | None = None,
                     indicators=None, groups=None) -> tuple[list[StudyCard], dict]:
    """Every study of a ``kind: study`` source card, validated, and the row accounting."""
    indicators = indicators if indicators is not None else schema.load_indicators()
    groups = groups if groups is not None else schema.load_groups()
    studies: list[StudyCard] = []
    accounting: dict = {"files": {}}
    for spec in card.files:
        path = Path(raw_root) / spec.path
        if not path.exists():
            raise StudyError(f"{path}: file not found (check 'files' in "
                             f"{card_path or 'the source card'} and --raw-root)")
        if spec.sha256 and _sha256(path) != spec.sha256:
            raise StudyError(f"{path}: sha256 differs from files.sha256 in the source card")
        if path.suffix == ".xlsx":
            found, sheets = read_workbook(path)
            accounting["files"][spec.path] = sheets
            for study in found:
                validate_study(study, study._where or str(path), indicators, groups)
        else:
            found = [read_study_card(path)]
            validate_study(found[0], str(path), indicators, groups)
            accounting["files"][spec.path] = {"estimates": {
                "rows_read": len(found[0].estimates), "rows_kept": len(found[0].estimates),
                "rows_excluded": {}}}
        for study in found:
            if any(s.study_id == study.study_id for s in studies):
                raise StudyError(f"{path}: study '{study.study_id}' is given twice in this source; "
                                 "give each study once")
            studies.append(study)
    estimates = [s for f in accounting["files"].values() for k, s in f.items() if k == "estimates"]
    accounting["rows_read"] = sum(s["rows_read"] for s in estimates)
    accounting["rows_kept"] = sum(s["rows_kept"] for s in estimates)
    reasons: dict[str, int] = {}
    for s in estimates:
        for reason, count in s["rows_excluded"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    accounting["rows_excluded"] = reasons
    accounting["studies"] = len(studies)
    accounting["studies_without_estimates"] = sorted(s.study_id for s in studies if not s.estimates)
    if accounting["rows_read"] != accounting["rows_kept"] + sum(reasons.values()):
        raise AssertionError("study row accounting does not balance")
    return studies, accounting


def _sha256(path: Path) -> str:
    return hashing.sha256_file(path)


def ingest_study_source(card_path: Path, raw_root: Path, processed_dir: Path,
                        force: bool = False) -> tuple[str, dict | None]:
    """Ingest one ``kind: study`` source: ``("ingested"|"unchanged", log)`` like any source."""
    card_path = Path(card_path)
    card = load_study_source_card(card_path)
    # issue 11: raw files confined to the raw root (symlinks resolved), regular, below the size limit
    from analysis.sources.readers import raw_file

    for spec in card.files:
        candidate = Path(raw_root) / spec.path
        if candidate.exists() or candidate.is_symlink() or Path(spec.path).is_absolute() or ".." in Path(spec.path).parts:
            raw_file(Path(raw_root), spec.path, str(card_path))
    inputs = {f"raw:{s.path}": _sha256(Path(raw_root) / s.path)
              for s in card.files if (Path(raw_root) / s.path).exists()}
    inputs[f"card:{card_path.name}"] = _sha256(card_path)
    for path in (config.INDICATORS_FILE, config.GROUPS_FILE):
        if path.exists():
            inputs[f"params:{path.name}"] = _sha256(path)
    # the code of this module and of every project module it imports (the one hashing module)
    inputs["code"] = hashing.sha256_json(hashing.code_hashes(hashing.module_closure(["analysis.sources.studies"])))
    fingerprint = {"sha256": hashing.sha256_json(inputs), "inputs": inputs}
    log_path = Path(processed_dir) / f"{card.id}.log.json"
    target = Path(processed_dir) / f"{card.id}.parquet"
    if not force and target.exists() and log_path.exists():
        try:
            if json.loads(log_path.read_text()).get("fingerprint", {}).get("sha256") == fingerprint["sha256"]:
                return "unchanged", None
        except (json.JSONDecodeError, OSError):
            pass
    studies, accounting = read_study_files(card, Path(raw_root), card_path)
    frame = studies_table(studies, card.id)
    processed_dir = Path(processed_dir)
    processed_dir.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    source_meta = {"id": card.id, "title": card.title, "kind": "study", "synthetic": card.synthetic,
                   "licence": card.licence, "citation": card.citation, "country": None,
                   "collection_period": None, "indicators": sorted(set(frame["indicator"].dropna()))}
    meta = dict(table.schema.metadata or {})
    meta[b"analysis"] = json.dumps({"design": None, "source": source_meta}).encode()
    table = table.replace_schema_metadata(meta)
    tmp = target.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, target)
    log = {"source": card.id, "status": "ingested", "kind": "study", "synthetic": card.synthetic,
           "ingested_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "files": [s.path for s in card.files], "reader": "study", **accounting,
           "unknown_codes": {}, "columns": list(frame.columns), "fingerprint": fingerprint}
    tmp_log = log_path.with_suffix(".json.tmp")
    tmp_log.write_text(json.dumps(log, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp_log, log_path)
    return "ingested", log


# --------------------------------------------------------------------------------------------
# The extraction template partners fill in


#: Columns of each sheet of the template, in order.
TEMPLATE_COLUMNS = {
    "studies": ["study_id", "partner", "title", "year", "citation", "url", "countries",
                "period_start", "period_end", "groups", "group_definition", "sampling", "mode",
                "sample_size"],
    "estimates": ["study_id", "indicator", "group", "reference_group", "country", "events",
                  "percent", "n", "ci_low", "ci_high", "reference_events", "reference_percent",
                  "reference_n"],
    "appraisal": ["study_id", *HOY_ITEMS, "overall"],
}


def write_template(path: Path | str, catalogue: dict | None = None) -> Path:
    """Write the study-extraction workbook template (empty sheets and a ``guide`` sheet).

    The ``guide`` sheet lists every column with what it holds and its allowed values, from
    ``params/evidence.yml`` (``template_guide``), and the Hoy et al. (2012) items.
    """
    from analysis import evidence

    labels = catalogue or evidence.load_labels()
    guide = []
    for sheet, columns in TEMPLATE_COLUMNS.items():
        for column in columns:
            guide.append({"sheet": sheet, "column": column,
                          "what": labels["template_guide"].get(column, labels["hoy_items"].get(column, ""))})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for sheet, columns in TEMPLATE_COLUMNS.items():
            pd.DataFrame(columns=columns).to_excel(writer, sheet_name=sheet, index=False)
        pd.DataFrame(guide).to_excel(writer, sheet_name="guide", index=False)
    return path
