"""Coded free text: source cards with ``kind: coding`` and the readers of coders' exports.

Partners code open answers (survey free text, SMS and radio call-in messages, interview notes)
into themes with their own tools. A coding card names the tool's export, the codebook
(``params/codebooks/<id>.yml``), and the processed survey whose respondents answered; the ingest
reads every export into one long table, one row per response x coder x code::

    response_id  source  survey  coder  code  code_path  theme  special  span  language  quote_consent
    + the respondent's case variables joined from the survey (country, sex, age_group, ...)

Formats (``format:``):

- ``qdpx``: a REFI-QDA project (a zip holding ``project.qde``, namespace
  ``urn:QDA-XML:project:1.0``); a coding's coder is its ``creatingUser`` (or that of its
  selection), named by the project's ``<User>``; the response is the text source's name;
- ``taguette``: Taguette's highlights CSV (``id, document, tag, content``; ``tag_parent``,
  ``tag_full_path``, ``tag_description`` when present), one export per coder (``files[].coder``);
- ``coda``: a Coda V2 messages JSON (a list of messages with ``MessageID``, ``Text`` and
  ``Labels``); a label's coder is ``Origin.OriginID``; per coder and scheme the labels of the
  coder's latest labelling time count; labels not checked by a person are left out (counted);
- ``spreadsheet``: CSV or Excel with a response id, coder and code per row (``columns:`` maps
  them, and optionally ``span``).

Example::

    id: demo_voices
    title: Open answers, youth survey (SYNTHETIC)
    kind: coding
    synthetic: true
    format: spreadsheet
    files: [{path: demo/voices/coding.csv}]
    codebook: demo_voices
    survey: demo_youth                 # processed source: case variables and survey design
    responses: {path: demo/voices/open_answers.csv, id_column: resp_id, text_column: answer,
                consent_column: quote_consent, language_column: language, personal_columns: [name]}
    resolved_coder: null               # a coder whose codes are the resolved (adjudicated) ones
    licence: CC-BY-4.0

Rules. A code not in the codebook, a coding without a coder, a file that is not the format named
and (unless ``unmatched_responses: exclude``) a response id not in the survey are one-line
errors naming the file and the row or element (never a cell's text). Rows are accounted for:
read = kept + excluded, each exclusion with its reason (a respondent who withdrew — any STOP
code — is excluded everywhere; a duplicate coding by the same coder is merged). Response ids are
hashed as the survey's ids are, text is scrubbed (:mod:`analysis.voices.scrub`) before anything is
written, and the redactions are counted by kind in the log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Literal
from xml.etree import ElementTree

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from analysis.sources.card import CardError, KindCard, card_kind, load_kind_card, register_kind
from analysis.sources.privacy import hash_ids, project_salt
from analysis.sources.readers import codes_as_text

FORMATS = ("qdpx", "taguette", "coda", "spreadsheet")
QDA_NAMESPACE = "urn:QDA-XML:project:1.0"
#: Columns of the long table, before the joined case variables.
CODED_COLUMNS = ["response_id", "source", "survey", "coder", "code", "code_path", "theme", "special",
                 "span", "language", "quote_consent"]
#: Case variables joined from the survey when it has them.
CASE_COLUMNS = ("country", "sex", "age_group", "disability", "displacement_status", "urban_rural",
                "income_group", "ethnicity_or_minority", "admin1")
#: Coda's code for "a coder removed the labels" (not a coding).
CODA_UNCODED = "SPECIAL-MANUALLY_UNCODED"


class CodingError(CardError):
    """A coding card or coding file is wrong (one line naming the file, row and what to fix)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CodingFile(_Strict):
    """One coder's (or several coders') export, relative to the raw root."""

    path: str
    coder: str | None = None  # Taguette: the coder of this export
    sha256: str | None = None


class Responses(_Strict):
    """The open answers themselves: ids, text, consent to quotation, language, personal columns."""

    path: str
    id_column: str
    text_column: str | None = None
    consent_column: str | None = None
    consent_values: list[str] = Field(default_factory=lambda: ["yes", "1", "true", "oui", "ndiyo"])
    language_column: str | None = None
    personal_columns: list[str] = Field(default_factory=list)  # names to scrub from the text, never written


class CodingCard(KindCard):
    """A validated ``kind: coding`` source card (see the module docstring)."""

    kind: Literal["coding"]
    format: Literal[FORMATS]  # type: ignore[valid-type]
    files: list[CodingFile] = Field(min_length=1)
    codebook: str
    survey: str
    responses: Responses | None = None
    columns: dict[str, str] = Field(default_factory=dict)  # spreadsheet: response_id, coder, code, span
    response_id_pattern: str | None = None  # regex with one group: the response id inside a document name
    resolved_coder: str | None = None
    unmatched_responses: Literal["error", "exclude"] = "error"
    places_list: str | None = None  # raw-root file of place names below admin-1 (one a line) to scrub
    sheet: str | int | None = None
    licence: str
    consent: str | None = None
    citation: str | None = None
    url: str | None = None


def is_coding_card(path: Path | str) -> bool:
    """True when a source card says ``kind: coding`` (read without validating the rest)."""
    return card_kind(path) == "coding"


def load_coding_card(path: Path | str, data: dict | None = None) -> CodingCard:
    """Read and validate a coding card (:func:`card.load_kind_card`); :class:`CodingError` names
    the file and key."""
    path = Path(path)
    card = load_kind_card(path, CodingCard, CodingError, data)
    if card.response_id_pattern is not None:
        try:
            if re.compile(card.response_id_pattern).groups != 1:
                raise CodingError(f"{path}: key 'response_id_pattern' needs exactly one group (...) around the id")
        except re.error as exc:
            raise CodingError(f"{path}: key 'response_id_pattern' is not a regular expression ({exc})") from None
    if card.format == "spreadsheet":
        unknown = sorted(set(card.columns) - {"response_id", "coder", "code", "span"})
        if unknown:
            raise CodingError(f"{path}: key 'columns': {unknown} are not coding columns; "
                              "map response_id, coder, code and optionally span")
    return card


register_kind("coding", load_coding_card)


# --------------------------------------------------------------------------------------------
# Readers: every format into raw rows (response id as in the file, coder, tool's code name, span)


class RawCodings:
    """Rows read from coders' exports, with where each came from (for messages and accounting)."""

    def __init__(self):
        self.rows: list[dict] = []
        self.excluded: dict[str, int] = {}
        self.texts: dict[str, str] = {}  # response id -> full text when the export holds it
        self.file: Path | None = None  # the file being read

    def add(self, response_id, coder, code, where: str, span=None, path=None):
        self.rows.append({"raw_id": response_id, "coder": coder, "tool_code": code,
                          "where": f"{self.file}: {where}", "span": span, "tool_path": path})

    def exclude(self, reason: str, count: int = 1):
        if count:
            self.excluded[reason] = self.excluded.get(reason, 0) + int(count)

    @property
    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["raw_id", "coder", "tool_code", "where", "span", "tool_path"])


def _response_id(card: CodingCard, name, file: Path, where: str) -> str:
    text = None if name is None else str(name).strip()
    if not text:
        raise CodingError(f"{file}: {where} has no response id; every coding needs the response it codes")
    if card.response_id_pattern:
        match = re.search(card.response_id_pattern, text)
        if not match:
            raise CodingError(f"{file}: {where}: the document name does not match response_id_pattern "
                              f"in {card.path_label}; name documents by response id")
        return match.group(1)
    return text


def read_qdpx(card: CodingCard, file: Path, spec: CodingFile, out: RawCodings) -> None:
    """A REFI-QDA project: codings of text selections, coder from ``creatingUser``."""
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError):
        raise CodingError(f"{file}: is not a REFI-QDA project (.qdpx is a zip holding project.qde); "
                          "export the project as REFI-QDA from the coding tool") from None
    with archive:
        names = archive.namelist()
        qde = next((n for n in names if n.rsplit("/", 1)[-1] == "project.qde"), None)
        if qde is None:
            raise CodingError(f"{file}: is not a REFI-QDA project: the zip holds no project.qde")
        try:
            root = ElementTree.fromstring(archive.read(qde))
        except ElementTree.ParseError as exc:
            raise CodingError(f"{file}: project.qde is not valid XML ({exc})") from None
        if root.tag != f"{{{QDA_NAMESPACE}}}Project":
            raise CodingError(f"{file}: project.qde is not a REFI-QDA project (root element must be Project "
                              f"in namespace {QDA_NAMESPACE})")
        ns = {"q": QDA_NAMESPACE}
        users = {u.get("guid"): (u.get("name") or u.get("guid")) for u in root.iterfind(".//q:Users/q:User", ns)}
        codes: dict[str, tuple[str, str]] = {}

        def walk(element, prefix):
            for code in element.iterfind("q:Code", ns):
                name = code.get("name") or ""
                path = f"{prefix}/{name}" if prefix else name
                codes[code.get("guid")] = (name, path)
                walk(code, path)

        for book in root.iterfind(".//q:CodeBook/q:Codes", ns):
            walk(book, "")
        for n_source, source in enumerate(root.iterfind(".//q:Sources/q:TextSource", ns), start=1):
            where_source = f"TextSource {n_source}"
            rid = _response_id(card, source.get("name"), file, where_source)
            content = source.find("q:PlainTextContent", ns)
            text = content.text if content is not None else None
            internal = source.get("plainTextPath")
            if text is None and internal:
                member = internal.removeprefix("internal://")
                candidates = [n for n in names if n.endswith(member)]
                if candidates:
                    text = archive.read(candidates[0]).decode("utf-8", errors="replace")
            if text is not None:
                out.texts[rid] = text
            for n_sel, selection in enumerate(source.iterfind("q:PlainTextSelection", ns), start=1):
                where = f"{where_source} selection {n_sel}"
                try:
                    start, end = int(selection.get("startPosition", 0)), int(selection.get("endPosition", 0))
                except ValueError:
                    raise CodingError(f"{file}: {where}: startPosition/endPosition are not whole numbers") from None
                span = text[start:end] if text is not None else None
                for n_coding, coding in enumerate(selection.iterfind("q:Coding", ns), start=1):
                    user = coding.get("creatingUser") or selection.get("creatingUser")
                    if not user or user not in users:
                        raise CodingError(f"{file}: {where} coding {n_coding}: coder missing (creatingUser "
                                          "names no <User> of the project); export with user information")
                    ref = coding.find("q:CodeRef", ns)
                    target = ref.get("targetGUID") if ref is not None else None
                    if target not in codes:
                        raise CodingError(f"{file}: {where} coding {n_coding}: CodeRef points to no code of the "
                                          "project's CodeBook")
                    name, path = codes[target]
                    out.add(rid, users[user], name, f"{where} coding {n_coding}", span, path)


TAGUETTE_REQUIRED = ("id", "document", "tag", "content")


def read_taguette(card: CodingCard, file: Path, spec: CodingFile, out: RawCodings) -> None:
    """Taguette's highlights CSV, one export per coder (``files[].coder``)."""
    if not spec.coder:
        raise CodingError(f"{card.path_label}: files entry {spec.path}: coder missing; Taguette exports one file "
                          "per coder, so give files[].coder")
    try:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CodingError(f"{file}: is not a Taguette highlights CSV ({type(exc).__name__}); export highlights "
                          "as CSV from Taguette") from None
    missing = [c for c in TAGUETTE_REQUIRED if c not in frame.columns]
    if missing:
        raise CodingError(f"{file}: is not a Taguette highlights CSV: column(s) {', '.join(missing)} missing "
                          f"(expected {', '.join(TAGUETTE_REQUIRED)}, tag_parent, tag_full_path, tag_description)")
    for i, row in enumerate(frame.itertuples(index=False), start=2):
        where = f"line {i}"
        tag = getattr(row, "tag", "")
        if not str(tag).strip():
            out.exclude("highlight without a tag")
            continue
        full = getattr(row, "tag_full_path", "") if "tag_full_path" in frame.columns else ""
        parent = getattr(row, "tag_parent", "") if "tag_parent" in frame.columns else ""
        path = full or (f"{parent}/{tag}" if parent else tag)
        rid = _response_id(card, row.document, file, where)
        out.add(rid, spec.coder, tag, where, row.content, path)


def read_coda(card: CodingCard, file: Path, spec: CodingFile, out: RawCodings) -> None:
    """Coda V2 messages: per message, coder (``Origin.OriginID``) and scheme, the latest labels."""
    try:
        messages = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CodingError(f"{file}: is not a Coda V2 messages file (not JSON); export the dataset's messages "
                          "from Coda") from None
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "MessageID" in m and "Labels" in m
                                                 for m in messages):
        raise CodingError(f"{file}: is not a Coda V2 messages file (a JSON list of messages, each with "
                          "MessageID and Labels)")
    for n, message in enumerate(messages, start=1):
        where = f"message {n}"
        rid = _response_id(card, message.get("MessageID"), file, where)
        if message.get("Text") is not None:
            out.texts[rid] = str(message["Text"])
        latest: dict[tuple[str, str], tuple[str, list]] = {}
        for k, label in enumerate(message.get("Labels") or [], start=1):
            origin = (label.get("Origin") or {}) if isinstance(label, dict) else {}
            coder = origin.get("OriginID")
            if not coder:
                raise CodingError(f"{file}: {where} label {k}: coder missing (no Origin.OriginID)")
            if not label.get("Checked", True):
                out.exclude("label not checked by a coder (automatic)")
                continue
            key = (str(coder), str(label.get("SchemeID")))
            stamp = str(label.get("DateTimeUTC") or "")
            seen = latest.get(key)
            if seen is None or stamp > seen[0]:
                if seen is not None:
                    out.exclude("label superseded by the coder's later labelling", len(seen[1]))
                latest[key] = (stamp, [(k, label.get("CodeID"))])
            elif stamp == seen[0]:
                seen[1].append((k, label.get("CodeID")))
            else:
                out.exclude("label superseded by the coder's later labelling")
        for (coder, _scheme), (_stamp, labels) in latest.items():
            for k, code in labels:
                if code == CODA_UNCODED:
                    out.exclude("labels removed by the coder (Coda manually uncoded)")
                    continue
                out.add(rid, coder, code, f"{where} label {k}", None, None)


def read_spreadsheet(card: CodingCard, file: Path, spec: CodingFile, out: RawCodings) -> None:
    """CSV or Excel: one row per response x coder x code (``columns:`` maps the names)."""
    names = {"response_id": "response_id", "coder": "coder", "code": "code", **card.columns}
    try:
        if file.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
            frame = pd.read_excel(file, sheet_name=card.sheet or 0, dtype=str)
        else:
            frame = pd.read_csv(file, dtype=str, keep_default_na=False, sep=None, engine="python",
                                encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as exc:
        raise CodingError(f"{file}: is not a readable coding spreadsheet ({type(exc).__name__}); save it as "
                          "UTF-8 CSV or .xlsx") from None
    frame = frame.fillna("")
    for role in ("response_id", "coder", "code"):
        if names[role] not in frame.columns:
            raise CodingError(f"{file}: column '{names[role]}' ({role}) not found; columns are: "
                              f"{', '.join(map(str, frame.columns[:20]))}; map it under 'columns' in {card.path_label}")
    span_column = names.get("span")
    offset = 2
    for i, row in enumerate(frame.to_dict("records"), start=offset):
        where = f"line {i}" if file.suffix.lower() not in (".xlsx", ".xlsm", ".xls") else f"row {i}"
        coder = str(row[names["coder"]]).strip()
        code = str(row[names["code"]]).strip()
        if not coder:
            raise CodingError(f"{file}: {where}: coder missing in column '{names['coder']}'; every coding needs its coder")
        if not code:
            out.exclude("row without a code")
            continue
        rid = _response_id(card, row[names["response_id"]], file, where)
        out.add(rid, coder, code, where, row.get(span_column) if span_column else None, None)


READ_FORMAT = {"qdpx": read_qdpx, "taguette": read_taguette, "coda": read_coda, "spreadsheet": read_spreadsheet}


def read_codings(card: CodingCard, raw_root: Path) -> RawCodings:
    """Every file of the card through the reader of its format."""
    out = RawCodings()
    for spec in card.files:
        file = raw_root / spec.path
        if not file.exists():
            raise CodingError(f"{file}: file not found (check 'files' in {card.path_label} and --raw-root)")
        out.file = file
        READ_FORMAT[card.format](card, file, spec, out)
    return out


# --------------------------------------------------------------------------------------------
# Into the long table: codebook, survey join, withdrawals, scrubbing


class CodedTable:
    """The long table of one coding source, its accounting and redaction log."""

    def __init__(self, frame: pd.DataFrame, accounting: dict, withdrawn: list[str]):
        self.frame = frame
        self.accounting = accounting
        self.withdrawn = withdrawn


def _read_responses(card: CodingCard, raw_root: Path) -> pd.DataFrame | None:
    if card.responses is None:
        return None
    spec = card.responses
    file = raw_root / spec.path
    if not file.exists():
        raise CodingError(f"{file}: file not found (check 'responses.path' in {card.path_label})")
    try:
        if file.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
            frame = pd.read_excel(file, dtype=str)
        else:
            frame = pd.read_csv(file, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise CodingError(f"{file}: is not a readable responses table ({type(exc).__name__})") from None
    for key in ("id_column", "text_column", "consent_column", "language_column"):
        column = getattr(spec, key)
        if column and column not in frame.columns:
            raise CodingError(f"{file}: column '{column}' (responses.{key}) not found; columns are: "
                              f"{', '.join(map(str, frame.columns[:20]))}")
    for column in spec.personal_columns:
        if column not in frame.columns:
            raise CodingError(f"{file}: column '{column}' (responses.personal_columns) not found")
    frame = frame.fillna("")
    frame["_rid"] = codes_as_text(frame[spec.id_column]).astype(object)
    dup = frame["_rid"].duplicated(keep=False) & frame["_rid"].notna()
    if dup.any():
        raise CodingError(f"{file}: column '{spec.id_column}' has duplicate response ids ({int(dup.sum())} rows); "
                          "one row per response")
    return frame


def build_coded_table(card: CodingCard, raw: RawCodings, codebook, survey: pd.DataFrame,
                      responses: pd.DataFrame | None, salt: str, places=()) -> CodedTable:
    """Validate raw codings against the codebook and the survey; hash, scrub and join.

    ``survey`` is the processed survey table (hashed ``respondent_id`` and case variables).
    """
    from analysis.voices.scrub import Scrubber

    frame = raw.frame
    accounting = {"rows_read": int(len(frame) + sum(raw.excluded.values())), "rows_excluded": dict(raw.excluded)}

    def exclude(reason, n):
        if n:
            accounting["rows_excluded"][reason] = accounting["rows_excluded"].get(reason, 0) + int(n)

    lookup = codebook.lookup()
    codes = frame["tool_code"].map(lambda v: lookup.get(str(v).strip().casefold()))
    if codes.isna().any():
        i = int(codes.isna().to_numpy().nonzero()[0][0])
        row = frame.iloc[i]
        known = ", ".join(list(codebook.codes)[:12])
        raise CodingError(f"{row['where']}: code "
                          f"'{str(row['tool_code'])[:60]}' is not in codebook {codebook.id} "
                          f"({int(codes.isna().sum())} codings); add it (or an alias) to "
                          f"params/codebooks/{codebook.id}.yml; codes are: {known}")
    frame = frame.assign(code=codes)
    frame["response_id"] = hash_ids(codes_as_text(frame["raw_id"].astype(object)), card.survey, salt).astype(object)

    # withdrawals: any STOP code on any response of a respondent removes the respondent
    stop_codes = set(codebook.codes_of("stop"))
    withdrawn = sorted(set(frame.loc[frame["code"].isin(stop_codes), "response_id"]))
    out_rows = frame["response_id"].isin(set(withdrawn))
    exclude("respondent withdrew (STOP): removed everywhere", int(out_rows.sum()))
    frame = frame[~out_rows]

    known = set(survey["respondent_id"].astype(str))
    unmatched = ~frame["response_id"].isin(known)
    if unmatched.any():
        if card.unmatched_responses == "error":
            first = frame[unmatched].iloc[0]
            raise CodingError(f"{first['where']}: response id is not a respondent of survey "
                              f"'{card.survey}' ({int(unmatched.sum())} codings); check the ids or set "
                              f"unmatched_responses: exclude in {card.path_label}")
        exclude(f"response id not in survey {card.survey}", int(unmatched.sum()))
        frame = frame[~unmatched]

    duplicated = frame.duplicated(["response_id", "coder", "code"])
    exclude("same code by the same coder on the same response (merged)", int(duplicated.sum()))
    # keep every span of a merged coding, joined, so quotes can use any of them
    spans = (frame.dropna(subset=["span"]).groupby(["response_id", "coder", "code"], sort=False)["span"]
             .agg(lambda s: " … ".join(dict.fromkeys(str(v) for v in s if str(v).strip()))))
    frame = frame[~duplicated].copy()
    frame["span"] = [spans.get((r, c, k)) for r, c, k in zip(frame["response_id"], frame["coder"], frame["code"])]

    # the response's own text, language and consent
    names = []
    text_of, consent_of, language_of = {}, {}, {}
    if responses is not None:
        spec = card.responses
        hashed = hash_ids(responses["_rid"], card.survey, salt).astype(object)
        for column in spec.personal_columns:
            names.extend(v for v in responses[column].astype(str) if v.strip())
        if spec.text_column:
            text_of = dict(zip(hashed, responses[spec.text_column].astype(str)))
        if spec.consent_column:
            wanted = {v.casefold() for v in spec.consent_values}
            consent_of = dict(zip(hashed, responses[spec.consent_column].astype(str).str.strip().str.casefold()
                                  .isin(wanted)))
        if spec.language_column:
            language_of = dict(zip(hashed, responses[spec.language_column].astype(str)))
    for rid, text in raw.texts.items():
        text_of.setdefault(hash_ids(pd.Series([rid]), card.survey, salt).iloc[0], text)
    scrubber = Scrubber(names=names, places=places)
    # a span-less coding (spreadsheet, Coda) quotes the whole response
    frame["span"] = [span if isinstance(span, str) and span.strip() else text_of.get(rid)
                     for span, rid in zip(frame["span"], frame["response_id"])]
    frame["span"] = frame["span"].map(lambda t: scrubber(t) if isinstance(t, str) else None)
    frame["language"] = frame["response_id"].map(language_of).astype(object)
    has_consent = card.responses is not None and card.responses.consent_column is not None
    frame["quote_consent"] = frame["response_id"].map(consent_of).fillna(False).astype(bool) if has_consent else False
    frame["theme"] = frame["code"].map(lambda c: codebook.codes[c].theme)
    frame["special"] = frame["code"].map(lambda c: codebook.codes[c].special)
    frame["code_path"] = [p if isinstance(p, str) and p else codebook.path_of(c)
                          for p, c in zip(frame["tool_path"], frame["code"])]
    frame["source"] = card.id
    frame["survey"] = card.survey
    cases = [c for c in CASE_COLUMNS if c in survey.columns]
    joined = frame[CODED_COLUMNS].merge(
        survey[["respondent_id", *cases]].rename(columns={"respondent_id": "response_id"})
        .assign(response_id=lambda f: f["response_id"].astype(str)),
        on="response_id", how="left")
    for column in joined.columns:
        if joined[column].dtype == object and column not in ("quote_consent",):
            joined[column] = joined[column].astype("string")
    accounting["rows_kept"] = len(joined)
    accounting["respondents"] = int(joined["response_id"].nunique())
    accounting["coders"] = sorted(joined["coder"].dropna().unique().tolist())
    accounting["withdrawn_respondents"] = len(withdrawn)
    accounting["redactions"] = scrubber.log()
    accounting["quote_consent_column"] = card.responses.consent_column if card.responses else None
    return CodedTable(joined.reset_index(drop=True), accounting, withdrawn)


# --------------------------------------------------------------------------------------------
# Ingest (called by analysis.sources.ingest for cards with kind: coding)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(card_path: Path, card: CodingCard, raw_root: Path, processed_dir: Path) -> dict:
    files = {f"raw:{s.path}": _sha256(raw_root / s.path) for s in card.files}
    if card.responses:
        files[f"raw:{card.responses.path}"] = _sha256(raw_root / card.responses.path)
    if card.places_list:
        files[f"raw:{card.places_list}"] = _sha256(raw_root / card.places_list)
    files[f"card:{card_path.name}"] = _sha256(card_path)
    book = codebook_file(card)
    if book.exists():
        files[f"params:{book.name}"] = _sha256(book)
    from analysis.voices.scrub import cues_path

    if cues_path().exists():  # the scrubber's cue words (catalogue): a change re-scrubs the answers
        files[f"params:{cues_path().name}"] = _sha256(cues_path())
    survey = processed_dir / f"{card.survey}.parquet"
    if survey.exists():
        files[f"processed:{survey.name}"] = _sha256(survey)
    code = hashlib.sha256()
    for path in [Path(__file__), *sorted((Path(__file__).parents[1] / "voices").glob("*.py"))]:
        code.update(path.name.encode())
        code.update(path.read_bytes())
    files["code"] = code.hexdigest()
    return {"sha256": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest(), "inputs": files}


def codebook_file(card: CodingCard) -> Path:
    """The card's codebook: an id under ``params/codebooks/`` or a .yml path relative to the card."""
    from analysis.voices.codebook import codebook_path

    if card.codebook.endswith((".yml", ".yaml")):
        base = card._path.parent if card._path else Path.cwd()
        return (base / card.codebook).resolve()
    return codebook_path(card.codebook)


def withdrawn_path(processed_dir: Path, source: str) -> Path:
    """Hashed ids of the respondents who withdrew, per coding source (read by load_processed)."""
    return Path(processed_dir) / f"{source}.withdrawn.json"


def ingest_coding(card_path: Path, raw_root: Path, processed_dir: Path, force: bool = False) -> tuple[str, dict | None]:
    """Ingest one coding card: ``("ingested" | "unchanged", log)``; raises :class:`CodingError`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from analysis.sources import METADATA_KEY, load_processed
    from analysis.voices.codebook import CodebookError, load_codebook

    card = load_coding_card(card_path)
    # issue 11: every raw file is confined to the raw root (symlinks resolved), a regular file
    # below the size limit, before it is read or hashed
    from analysis.sources.readers import raw_file

    confined = [("files", spec.path) for spec in card.files]
    confined += [("responses.path", card.responses.path)] if card.responses else []
    confined += [("places_list", card.places_list)] if card.places_list else []
    for key, path in confined:
        if (raw_root / path).exists() or (raw_root / path).is_symlink() or Path(path).is_absolute() or ".." in Path(path).parts:
            raw_file(raw_root, path, str(card_path), key)
    for spec in [*card.files, *([card.responses] if card.responses else [])]:
        if not (raw_root / spec.path).exists():
            raise CodingError(f"{raw_root / spec.path}: file not found (check {card_path} and --raw-root)")
    survey_file = processed_dir / f"{card.survey}.parquet"
    if not survey_file.exists():
        raise CodingError(f"{card_path}: key 'survey': no processed table for '{card.survey}' in {processed_dir}; "
                          f"ingest it first (`python -m analysis ingest {card.survey}`)")
    fingerprint = _fingerprint(card_path, card, raw_root, processed_dir)
    log_path = processed_dir / f"{card.id}.log.json"
    if not force and log_path.exists() and (processed_dir / f"{card.id}.parquet").exists():
        try:
            if json.loads(log_path.read_text(encoding="utf-8")).get("fingerprint", {}).get("sha256") == fingerprint["sha256"]:
                return "unchanged", None
        except (json.JSONDecodeError, OSError):
            pass
    for spec in card.files:
        if spec.sha256 and _sha256(raw_root / spec.path) != spec.sha256:
            raise CodingError(f"{raw_root / spec.path}: sha256 differs from files.sha256 in {card_path}")
    try:
        codebook = load_codebook(codebook_file(card))
    except CodebookError as exc:
        raise CodingError(str(exc)) from None
    places = []
    if card.places_list:
        places = [line.strip() for line in (raw_root / card.places_list).read_text(encoding="utf-8").splitlines()
                  if line.strip()]
    survey = load_processed(card.survey, processed_dir)
    raw = read_codings(card, raw_root)
    table = build_coded_table(card, raw, codebook, survey, _read_responses(card, raw_root), project_salt(), places)
    processed_dir.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(table.frame, preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps({"design": None, "source": {
        "id": card.id, "title": card.title, "kind": "coding", "synthetic": card.synthetic, "licence": card.licence,
        "consent": card.consent, "citation": card.citation, "codebook": card.codebook, "survey": card.survey,
        "format": card.format, "resolved_coder": card.resolved_coder,
        "quote_consent_column": table.accounting["quote_consent_column"]}}).encode()
    arrow = arrow.replace_schema_metadata(meta)
    target = processed_dir / f"{card.id}.parquet"
    tmp = target.with_suffix(".parquet.tmp")
    pq.write_table(arrow, tmp)
    os.replace(tmp, target)
    withdrawn = withdrawn_path(processed_dir, card.id)
    withdrawn.write_text(json.dumps({"survey": card.survey, "respondent_ids": table.withdrawn}) + "\n", encoding="utf-8")
    log = {"source": card.id, "status": "ingested", "kind": "coding", "synthetic": card.synthetic,
           "ingested_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "files": [s.path for s in card.files], "format": card.format, "codebook": card.codebook,
           "survey": card.survey, "unknown_codes": {}, **table.accounting, "columns": list(table.frame.columns), "fingerprint": fingerprint}
    tmp_log = log_path.with_suffix(".json.tmp")
    tmp_log.write_text(json.dumps(log, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp_log, log_path)
    return "ingested", log


def withdrawals(survey: str, processed_dir: Path) -> dict[str, list[str]]:
    """The respondents of ``survey`` who withdrew (STOP), by coding source: ``{source: [ids]}``
    (hashed ids, from each coding source's ``<source>.withdrawn.json``; unreadable files are
    skipped, as a missing one is: the coding source is then ingested again)."""
    out: dict[str, list[str]] = {}
    for path in sorted(Path(processed_dir).glob("*.withdrawn.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            continue
        if data.get("survey") == survey and data.get("respondent_ids"):
            out[path.name.removesuffix(".withdrawn.json")] = list(data["respondent_ids"])
    return out


def drop_withdrawn(frame: pd.DataFrame, source: str, processed_dir: Path) -> pd.DataFrame:
    """Remove from a processed survey the respondents who withdrew in any coding source of it.

    A STOP in a coding source withdraws the participant from everything: every chapter that loads
    the survey through :func:`analysis.sources.load_processed` goes through here.
    """
    if "respondent_id" not in frame.columns:
        return frame
    gone = {rid for ids in withdrawals(source, processed_dir).values() for rid in ids}
    if not gone:
        return frame
    attrs = dict(frame.attrs)
    kept = frame[~frame["respondent_id"].astype(str).isin(gone)].reset_index(drop=True)
    kept.attrs.update(attrs)
    # how many rows the withdrawals removed (the survey's own log counts them as kept)
    kept.attrs["withdrawn"] = len(frame) - len(kept)
    return kept


def summary(log: dict) -> str:
    """One line for the ingest's output."""
    excluded = sum(log["rows_excluded"].values())
    text = f"{log['rows_kept']} of {log['rows_read']} codings kept, {log['respondents']} respondents"
    if excluded:
        text += f", {excluded} excluded"
    if log.get("redactions"):
        text += ", redacted " + ", ".join(f"{n} {k}" for k, n in log["redactions"].items())
    return text


__all__ = ["CodingCard", "CodingError", "build_coded_table", "drop_withdrawn", "ingest_coding", "is_coding_card",
           "load_coding_card", "read_codings", "summary", "withdrawals"]
