"""Ingest a large CSV in record batches, so that memory does not grow with the file.

A microdata card over one CSV file of at least :func:`stream_min_bytes` (64 MiB by default,
``ANALYSIS_STREAM_MIN_BYTES``) is ingested here instead of in one piece; the processed table,
the log and every check are those of the in-memory ingest
(:func:`analysis.sources.harmonise.harmonise_microdata`):

1. **Survey pass** over the columns that need the whole file: the card's filter, the personal
   columns and the id column. It collects the distinct personal values (for the scan of free
   text and written columns: a name in row 10 is found in a comment of row 1,900,000), checks
   respondent ids for duplicates across the whole file (on 64-bit hashes of the id text and the
   record's position; the message names the first two lines as the in-memory check does), and
   numbers the records by line when a quoted field spans lines.
2. **Harmonise pass**: each batch (about :func:`batch_bytes` of the file, 16 MiB by default,
   ``ANALYSIS_STREAM_BATCH_BYTES``) is harmonised with ``batch=True`` (recodes, missing codes,
   design, accounting, personal-data scans with the whole file's personal values, salted ids)
   and written as one part; the accounting is summed.
3. The checks over the whole file run on the summed accounting (kept-row share, unknown-code
   share, strata with a single PSU), then the parts are written into ``<source>.parquet`` by one ``ParquetWriter`` (their
   schemas unified: a column empty in one batch is typed by the others) and renamed into place.

``design.single_psu: fail`` counts the PSUs of each stratum over the whole file too. Stacked or
joined files, other readers and UTF-16 files keep the in-memory ingest.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis import schema
from analysis.sources import METADATA_KEY
from analysis.sources.card import SourceCard
from analysis.sources.harmonise import (
    Accounting,
    HarmoniseError,
    _category_words,
    _check_kept_rows,
    _check_unknown_share,
    _where,
    add_batch_metadata,
    check_columns,
    codes_as_text,
    duplicate_ids_error,
    harmonise_microdata,
    respondent_id_text,
    single_psu_error,
    to_numbers,
)
from analysis.sources.privacy import (
    PersonalValues,
    first_personal_value,
    project_salt,
    written_text_error,
)
from analysis.sources.readers import (
    SAMPLE_BYTES,
    RawTable,
    _check_file,
    _used_columns,
    iter_text_batches,
    raw_file,
    text_row_numbers,
)
from analysis.sources.records import ingest_log, source_metadata
from analysis.sources.row_filter import evaluate_filter, filter_columns, parse_filter

STREAM_MIN_BYTES_ENV = "ANALYSIS_STREAM_MIN_BYTES"
BATCH_BYTES_ENV = "ANALYSIS_STREAM_BATCH_BYTES"
DEFAULT_STREAM_MIN_BYTES = 64 * 2**20
DEFAULT_BATCH_BYTES = 16 * 2**20


def _env_bytes(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise HarmoniseError(f"environment variable {name} must be a number of bytes, e.g. {default}") from None
    if number < 0:
        raise HarmoniseError(f"environment variable {name} must be a number of bytes >= 0, e.g. {default}")
    return number


def stream_min_bytes() -> int:
    """CSV files of at least this size are ingested in batches (``ANALYSIS_STREAM_MIN_BYTES``)."""
    return _env_bytes(STREAM_MIN_BYTES_ENV, DEFAULT_STREAM_MIN_BYTES)


def batch_bytes() -> int:
    """About this much of the file is harmonised at a time (``ANALYSIS_STREAM_BATCH_BYTES``)."""
    return max(1, _env_bytes(BATCH_BYTES_ENV, DEFAULT_BATCH_BYTES))


def is_streamed(card: SourceCard, raw_root: Path) -> bool:
    """True when the card is ingested batch by batch (see the module docstring)."""
    if card.kind != "microdata" or card.reader != "csv" or len(card.files) != 1:
        return False
    spec = card.files[0]
    if spec.join_on or (spec.reader or "csv") != "csv":
        return False
    if card.reader_options.encoding.lower().replace("_", "-").startswith("utf-16"):
        return False
    path = raw_file(raw_root, spec.path, card.path_label)
    with open(path, "rb") as handle:
        if handle.read(2) in (b"\xff\xfe", b"\xfe\xff"):
            return False
    return path.stat().st_size >= stream_min_bytes()


def _batch_rows(path: Path) -> int:
    """Records per batch: :func:`batch_bytes` over the mean line length of the file's head."""
    with open(path, "rb") as handle:
        head = handle.read(SAMPLE_BYTES)
    line = max(1.0, len(head) / max(1, head.count(b"\n")))
    return max(1, int(batch_bytes() / line))


def _raw_batch(frame: pd.DataFrame, path: Path, card: SourceCard, encoding: str, header, offset: int,
               row_numbers: np.ndarray | None) -> RawTable:
    """One batch as the CSV reader's :class:`RawTable` of the whole file would show its rows."""
    opts = card.reader_options
    numbers = row_numbers[offset:offset + len(frame)] if row_numbers is not None else None
    return RawTable(frame, path, notes={"encoding": encoding, **({"header": header} if header else {})},
                    description=f"header_row: {opts.header_row}", first_row=opts.header_row + 2 + offset,
                    row_unit="line", row_numbers=numbers)


@dataclass
class _Survey:
    """What the survey pass learnt about the whole file."""

    records: int
    personal: PersonalValues
    row_numbers: np.ndarray | None


def _survey_pass(card: SourceCard, path: Path, batch_rows: int, ignore: set[str]) -> _Survey:
    """Personal values, duplicate ids and record numbering over the whole file (columns needed only)."""
    opts = card.reader_options
    needed = set(card.personal_columns) | ({card.id_column} if card.id_column else set())
    parsed = parse_filter(card.filter) if card.filter else None
    if parsed is not None:
        needed |= set(filter_columns(parsed))
    # one mapped column at least, so that every record is counted
    needed |= {column for _, column in card.used_raw_columns()[:1]}
    distinct: dict[str, list[pa.Array]] = {c: [] for c in card.personal_columns}
    keys, positions = [], []
    ids_complete = True
    records = 0
    plan = None
    header = None
    # the width check of every row (a row with more fields than the header) is made here, for
    # both passes: this one reads every row too, with even fewer columns
    for frame, plan in iter_text_batches(path, opts, batch_rows, wanted=lambda c: c in needed):
        if records == 0:
            header = frame.attrs.get("header")
            _check_columns(card, path, plan, header)
        index = np.arange(records, records + len(frame))
        records += len(frame)
        if parsed is not None:
            passed = np.asarray(evaluate_filter(parsed, frame, codes_as_text, lambda v: to_numbers(v, card)), dtype=bool)
            frame, index = frame.loc[passed], index[passed]
        for column, parts in distinct.items():
            if column in frame.columns:
                parts.append(pa.array(pd.unique(frame[column].dropna()), type=pa.large_string()))
        if card.id_column and ids_complete:
            ids = respondent_id_text(frame[card.id_column])
            if ids.isna().any():
                ids_complete = False  # the harmonise pass names the first empty id, as in memory
            else:
                keys.append(pd.util.hash_array(ids.to_numpy(dtype=object)))
                positions.append(index)
    if plan is None or records == 0:
        raise HarmoniseError(f"{path} (header_row: {opts.header_row}): has a header but no data rows")
    row_numbers = text_row_numbers(path, plan, records)
    if card.id_column and ids_complete and keys:
        _check_duplicate_ids(card, path, header, np.concatenate(keys), np.concatenate(positions), row_numbers)
    # PersonalValues looks at distinct values only: a frame of each column's distinct values
    # (padded with NA to one length) gives the same words as the whole file would
    uniques = {c: list(pa.concat_arrays(parts).unique().to_pylist()) if parts else []
               for c, parts in distinct.items()}
    longest = max((len(v) for v in uniques.values()), default=0)
    frame = pd.DataFrame({c: pd.Series(v + [None] * (longest - len(v)), dtype=object) for c, v in uniques.items()})
    personal = PersonalValues(frame, [c for c in card.personal_columns if c in frame.columns], ignore)
    return _Survey(records, personal, row_numbers)


def _check_columns(card: SourceCard, path: Path, plan, header) -> None:
    """The in-memory ingest's first check, with its message: every mapped column exists (the
    hint about a later header row reads the first rows, as there)."""
    head = pd.read_csv(path, nrows=15, **{**plan.read_options(), "usecols": _used_columns(card)})
    check_columns(card, RawTable(head, path, notes={"header": header} if header else {},
                                 description=f"header_row: {card.reader_options.header_row}",
                                 first_row=card.reader_options.header_row + 2, row_unit="line"))


def _check_duplicate_ids(card: SourceCard, path: Path, header, keys: np.ndarray, positions: np.ndarray,
                         row_numbers: np.ndarray | None) -> None:
    """The in-memory duplicate-id check over the whole file, on 64-bit hashes of the id text."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return
    repeated = np.zeros(len(keys), dtype=bool)
    repeated[order[1:][same]] = True
    repeated[order[:-1][same]] = True
    rows = positions[np.flatnonzero(repeated)[:2]]
    label = RawTable(pd.DataFrame(), path, first_row=card.reader_options.header_row + 2, row_unit="line",
                     row_numbers=row_numbers, description=f"header_row: {card.reader_options.header_row}")
    raise duplicate_ids_error(card, label, label.row_label(int(rows[0])), label.row_label(int(rows[1])),
                              int(repeated.sum()))


class _CodeColumns:
    """The distinct kept values of the design's code columns (strata, PSUs) over the whole file,
    each with the row it first appears on: the personal-data scan of a column of codes judges a
    long number or letter+digit code by whether it is the odd one out among all the codes."""

    def __init__(self, card: SourceCard):
        design = card.design
        self.raw = {k: getattr(design, k) for k in ("strata", "psu") if design and getattr(design, k)}
        self.first: dict[str, dict] = {name: {} for name in self.raw}

    def add(self, result, raw: RawTable) -> None:
        for name, seen in self.first.items():
            values = result.frame[name]
            firsts = values[~values.duplicated() & values.notna()]
            for position, value in zip(firsts.index, firsts):
                if value not in seen:
                    seen[value] = raw.row_label(int(result.kept_positions[position]))

    def check(self, personal: PersonalValues, where: str) -> None:
        for name, seen in self.first.items():
            hit = first_personal_value(pd.Series(list(seen), dtype=object), personal, codes=True)
            if hit:
                position, kind = hit
                raise written_text_error(where, name, self.raw[name], kind, list(seen.values())[position])


class _Strata:
    """The PSUs of each stratum over the whole file (kept rows), for ``single_psu: fail``."""

    MANY = object()

    def __init__(self):
        self.psu: dict = {}    # stratum -> its one PSU so far, or MANY
        self.first: dict = {}  # stratum -> where its first kept row is ("line 17")

    def add(self, result, raw: RawTable) -> None:
        frame = result.frame[["strata", "psu"]]
        firsts = frame.drop_duplicates(["strata", "psu"])
        for position, stratum, psu in zip(firsts.index, firsts["strata"], firsts["psu"]):
            if pd.isna(stratum):
                continue
            if stratum not in self.first:
                self.first[stratum] = raw.row_label(int(result.kept_positions[position]))
                self.psu[stratum] = psu
            elif self.psu[stratum] is not self.MANY and self.psu[stratum] != psu:
                self.psu[stratum] = self.MANY

    def check(self, card: SourceCard, raw: RawTable) -> None:
        lonely = sorted(s for s, psu in self.psu.items() if psu is not self.MANY)
        if lonely:
            raise single_psu_error(card, raw, lonely[0], self.first[lonely[0]], len(lonely))


def _combine(parts: list[Path], target: Path, metadata: bytes) -> None:
    """Write the parts into one Parquet file (schemas unified, the first part's pandas metadata
    and the design/source metadata in the schema), renamed into place."""
    schemas = [pq.read_schema(p) for p in parts]
    unified = pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")
    meta = dict(schemas[0].metadata or {})
    meta[METADATA_KEY] = metadata
    unified = unified.with_metadata(meta)
    tmp = target.with_suffix(".parquet.tmp")
    try:
        with pq.ParquetWriter(tmp, unified) as writer:
            for part in parts:
                table = pq.read_table(part)
                writer.write_table(table.select(unified.names).cast(unified))
                del table
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def ingest_streamed(card_path: Path, card: SourceCard, raw_root: Path, processed_dir: Path, fingerprint: dict,
                    indicators: dict | None = None, age_bands=None,
                    income_groups: tuple | None = None) -> tuple[str, dict]:
    """Ingest a large CSV batch by batch (see the module docstring); returns ``("ingested", log)``
    with the log of :func:`analysis.sources.ingest.ingest_source`; raises its user errors."""
    age_bands = tuple(age_bands) if age_bands else schema.load_age_bands()  # as harmonise_microdata
    path = raw_file(raw_root, card.files[0].path, str(card_path))
    _check_file(path)  # an empty file: the CSV reader's message
    rows_per_batch = _batch_rows(path)
    ignore = _category_words(card, age_bands, income_groups)
    survey = _survey_pass(card, path, rows_per_batch, ignore)
    salt = project_salt()
    total = Accounting()
    processed_dir = Path(processed_dir)
    processed_dir.mkdir(parents=True, exist_ok=True)
    staging = processed_dir / f".{card.id}.batches-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    design = metadata = columns = None
    weight_sample = None  # the first batch's raw weights: the decimal-comma hint of the kept-row check
    encoding = None
    codes = _CodeColumns(card)
    lonely = _Strata() if (card.design and card.design.strata and card.design.psu
                           and card.design.single_psu == "fail") else None
    try:
        parts: list[Path] = []
        offset = 0
        header = None
        for frame, plan in iter_text_batches(path, card.reader_options, rows_per_batch, wanted=_used_columns(card),
                                             check_widths=False):
            encoding = plan.encoding
            if offset == 0:
                header = frame.attrs.pop("header", None)
            raw = _raw_batch(frame, path, card, plan.encoding, header, offset, survey.row_numbers)
            offset += len(frame)
            if weight_sample is None:
                weight = card.design.weight if card.design else None
                kept_columns = [weight] if weight and weight in frame.columns else []
                weight_sample = RawTable(frame[kept_columns].copy(), path, description=raw.description)
            result = harmonise_microdata(card, raw, indicators=indicators, age_bands=age_bands, salt=salt,
                                         income_groups=income_groups, personal=survey.personal, batch=True)
            total.add(result.accounting)
            if lonely is not None:
                lonely.add(result, raw)
            codes.add(result, raw)
            del raw, frame
            if design is None:
                design, columns = result.design, list(result.frame.columns)
            metadata = add_batch_metadata(metadata, result.metadata)
            part = staging / f"part-{len(parts):05d}.parquet"
            pq.write_table(pa.Table.from_pandas(result.frame, preserve_index=False), part)
            parts.append(part)
            del result
        if offset != survey.records:  # pragma: no cover - the file changed between the passes
            raise HarmoniseError(f"{path}: the file changed while it was read; ingest it again")
        codes.check(survey.personal, f"{_where(card, weight_sample)}: ")
        _check_kept_rows(card, weight_sample, total, total.rows_kept)
        _check_unknown_share(card, weight_sample, total)
        if lonely is not None:
            lonely.check(card, weight_sample)
        total.check_balance()
        source_meta = source_metadata(card, metadata)
        _combine(parts, processed_dir / f"{card.id}.parquet",
                 json.dumps({"design": design, "source": source_meta}).encode())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log = ingest_log(card, total, metadata or {}, columns, fingerprint, {"encoding": encoding},
                     streamed={"batches": len(parts), "rows_per_batch": rows_per_batch})
    log_path = processed_dir / f"{card.id}.log.json"
    tmp_log = log_path.with_suffix(".json.tmp")
    tmp_log.write_text(json.dumps(log, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp_log, log_path)
    return "ingested", log


__all__ = ["batch_bytes", "ingest_streamed", "is_streamed", "stream_min_bytes"]
