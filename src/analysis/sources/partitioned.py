"""Ingest at scale: source cards over partitioned Parquet or CSV too big for memory.

A card whose ``files`` name a **directory** (of ``*.parquet`` or ``*.csv`` files, searched
recursively) or a **glob** is ingested partition by partition: each raw file is read in batches
of at most ``batch_rows`` rows, every batch is harmonised by
:func:`analysis.sources.harmonise.harmonise_microdata` with exactly the rules of an in-memory
ingest (recodes, missing codes, WG-SS, the row accounting in which every excluded row is counted
with its reason, personal columns dropped, free text scanned, ids hashed with the project salt),
and written as one Parquet file of the processed dataset::

    data/processed/<source>.parquet/part-00000.parquet ...
    data/processed/<source>.parquet/_survey.json       design, source metadata, coverage
    data/processed/<source>.log.json                   row accounting, as every ingest

Only one batch is in memory at a time. Respondent ids are checked for duplicates across
partitions (on 64-bit prefixes of their salted hashes, 8 bytes per row). ``_survey.json`` holds
what readers need without a pass over the data: the design (column names), the countries and the
categories of each dimension per country (for the run matrix), and the non-missing count of every
indicator. The estimates then run on the dataset through :mod:`analysis.survey_sums` (Dask or
DuckDB), never loading it whole.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis import config, hashing, schema
from analysis.sources import METADATA_KEY
from analysis.sources.card import SourceCard
from analysis.sources.harmonise import (
    Accounting,
    HarmoniseError,
    add_batch_metadata,
    harmonise_microdata,
)
from analysis.sources.privacy import project_salt
from analysis.sources.readers import RawTable, ReadError, raw_file
from analysis.sources.records import source_metadata

#: Rows read (and harmonised) at a time.
DEFAULT_BATCH_ROWS = 500_000

#: The sidecar of a partitioned processed dataset.
SIDECAR = "_survey.json"



def is_partitioned_card(card: SourceCard, raw_root: Path) -> bool:
    """True when a file of the card is a directory or a glob: ingest it partition by partition."""
    for spec in card.files:
        if any(ch in spec.path for ch in "*?[") or (Path(raw_root) / spec.path).is_dir():
            return True
    return False


def raw_files(card: SourceCard, raw_root: Path) -> list[Path]:
    """The raw files of a partitioned card, in a stable order."""
    suffix = {"parquet": ".parquet", "csv": ".csv"}.get(card.reader)
    if suffix is None:
        raise ReadError(
            f"{card.path_label}: partitioned ingest reads Parquet or CSV, not reader '{card.reader}'"
        )
    if any(spec.join_on for spec in card.files):
        raise ReadError(f"{card.path_label}: files.join_on is not supported for partitioned data; "
                        "join the files before ingest")
    out: list[Path] = []
    for spec in card.files:
        path = Path(raw_root) / spec.path
        if any(ch in spec.path for ch in "*?["):
            out += sorted(p for p in Path(raw_root).glob(spec.path) if p.is_file())
        elif path.is_dir():
            out += sorted(path.rglob(f"*{suffix}"))
        else:
            out.append(path)
    if not out:
        raise ReadError(f"{card.path_label}: no {suffix} files under {[s.path for s in card.files]}")
    # issue 11: every partition is confined to the raw root (symlinks resolved), a regular file
    # below the size limit, before it is read or hashed
    root = Path(raw_root).absolute()
    return [raw_file(root, os.path.relpath(Path(p).absolute(), root), card.path_label) for p in out]


def read_batches(card: SourceCard, path: Path, batch_rows: int):
    """The raw table of ``path`` as :class:`RawTable` batches, row numbers as the user sees them."""
    if card.reader == "parquet":
        try:
            handle = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - ArrowInvalid, OSError for broken files
            raise ReadError(f"{path}: not a readable Parquet file ({type(exc).__name__}); "
                            "re-export it") from None
        offset = 0
        for batch in handle.iter_batches(batch_size=batch_rows):
            frame = batch.to_pandas()
            yield RawTable(frame, path, first_row=offset + 1, row_unit="case")
            offset += len(frame)
        return
    opts = card.reader_options
    encoding = "utf-8-sig" if opts.encoding == "auto" else opts.encoding
    delimiter = opts.delimiter or _sniff_delimiter(path, encoding)
    offset = opts.header_row + 2  # line of the first data row (1-based, after the header)
    reader = pd.read_csv(path, sep=delimiter, encoding=encoding, dtype=str, chunksize=batch_rows,
                         skiprows=opts.header_row, keep_default_na=False, na_values=[""])
    for frame in reader:
        frame = frame.reset_index(drop=True)
        yield RawTable(frame, path, notes={"encoding": encoding}, first_row=offset, row_unit="line")
        offset += len(frame)


def _sniff_delimiter(path: Path, encoding: str) -> str:
    with open(path, encoding=encoding, errors="replace") as handle:
        head = handle.readline()
    counts = {d: head.count(d) for d in (",", ";", "\t")}
    return max(counts, key=counts.get)


def _fingerprint(card_path: Path, files: list[Path]) -> dict:
    """sha256 of the raw files, the card, the catalogues and the ingest code (as ingest's own
    fingerprint: :mod:`analysis.hashing`, the code of :func:`analysis.sources.ingest.code_files`)."""
    from analysis.sources import ingest

    inputs = {f"raw:{p}": hashing.sha256_file(p) for p in files}
    inputs[f"card:{card_path.name}"] = hashing.sha256_file(card_path)
    for path in (config.INDICATORS_FILE, config.GROUPS_FILE):
        if path.exists():
            inputs[f"params:{path.name}"] = hashing.sha256_file(path)
    code = ingest.code_files() + sorted(hashing.module_closure(["analysis.sources.partitioned"]))
    inputs["code"] = hashing.sha256_json(hashing.code_hashes(code))
    return {"sha256": hashing.sha256_json(inputs), "inputs": inputs}


@dataclass
class _Coverage:
    countries: dict = field(default_factory=dict)  # country -> dimension -> set of categories
    indicators: dict = field(default_factory=dict)  # indicator -> non-missing rows
    rows: dict = field(default_factory=dict)  # country -> rows

    def add(self, frame: pd.DataFrame, indicators) -> None:
        # the dimensions the data profile describes (params/groups.yml, uses.profile)
        dims = [d for d in schema.load_dimension_uses().profile if d in frame.columns]
        for code, part in frame.groupby("country", observed=True, dropna=True):
            slot = self.countries.setdefault(str(code), {})
            self.rows[str(code)] = self.rows.get(str(code), 0) + len(part)
            for dim in dims:
                slot.setdefault(dim, set()).update(str(v) for v in part[dim].dropna().unique())
        for name in indicators:
            if name in frame.columns:
                self.indicators[name] = self.indicators.get(name, 0) + int(frame[name].notna().sum())

    def as_dict(self) -> dict:
        return {
            "countries": {c: {d: sorted(v) for d, v in dims.items()}
                          for c, dims in sorted(self.countries.items())},
            "indicator_counts": self.indicators,
            "country_rows": dict(sorted(self.rows.items())),
        }


def ingest_partitioned(card_path: Path, card: SourceCard, raw_root: Path, processed_dir: Path,
                       force: bool = False, indicators: dict | None = None, age_bands=None,
                       income_groups: tuple | None = None,
                       batch_rows: int = DEFAULT_BATCH_ROWS) -> tuple[str, dict | None]:
    """Ingest a partitioned card into ``<source>.parquet/`` (see the module docstring).

    Returns ``("ingested" | "unchanged", log)`` as :func:`analysis.sources.ingest.ingest_source`;
    raises its user errors (one line naming the file, the row and what to fix).
    """
    if card.kind != "microdata":
        raise HarmoniseError(f"{card.path_label}: partitioned ingest is for microdata, not "
                             f"kind '{card.kind}'")
    processed_dir = Path(processed_dir)
    files = raw_files(card, raw_root)
    fingerprint = _fingerprint(Path(card_path), files)
    target = processed_dir / f"{card.id}.parquet"
    log_path = processed_dir / f"{card.id}.log.json"
    if not force and target.is_dir() and log_path.exists():
        try:
            previous = json.loads(log_path.read_text(encoding="utf-8"))["fingerprint"]["sha256"]
        except (json.JSONDecodeError, KeyError, TypeError, OSError):
            previous = None
        if previous == fingerprint["sha256"]:
            return "unchanged", None
    processed_dir.mkdir(parents=True, exist_ok=True)
    staging = processed_dir / f"{card.id}.parquet.tmp-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    salt = project_salt()
    total = Accounting()
    coverage = _Coverage()
    design = None
    id_prefixes = []
    n_parts = 0
    meta = {"source": source_metadata(card)}
    derived = None  # how derived columns were made (harmonise metadata), over every partition
    try:
        for path in files:
            for raw in read_batches(card, path, batch_rows):
                if len(raw.frame) == 0:
                    continue
                result = harmonise_microdata(card, raw, indicators=indicators,
                                             age_bands=age_bands,
                                             salt=salt, income_groups=income_groups)
                total.add(result.accounting)
                derived = add_batch_metadata(derived, result.metadata)
                if design is None:
                    design = result.design
                    meta = {"source": source_metadata(card, derived)}
                elif result.design != design:
                    raise HarmoniseError(
                        f"{path}: the design columns differ from the first partition's (e.g. the "
                        "replicate weights); every partition needs the same columns")
                coverage.add(result.frame, card.indicators)
                id_prefixes.append(_id_prefixes(result.frame["respondent_id"]))
                table = pa.Table.from_pandas(result.frame, preserve_index=False)
                table = table.replace_schema_metadata({
                    **(table.schema.metadata or {}),
                    METADATA_KEY: json.dumps({"design": design, **meta}).encode(),
                })
                pq.write_table(table, staging / f"part-{n_parts:05d}.parquet", compression="zstd")
                n_parts += 1
        if n_parts == 0:
            raise HarmoniseError(f"{card.path_label}: the raw files have no data rows")
        _check_unique_ids(id_prefixes, card)
        total.check_balance()
        meta = {"source": source_metadata(card, derived)}  # rows not asked summed over partitions
        sidecar = {"design": design, **meta, "rows": total.rows_kept, "partitions": n_parts,
                   **coverage.as_dict(), "fingerprint": fingerprint["sha256"]}
        (staging / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log = {
        "source": card.id, "status": "ingested", "kind": card.kind, "synthetic": card.synthetic,
        "ingested_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": [str(p) for p in files], "reader": card.reader, "partitioned": True,
        "partitions": n_parts, **total.as_dict(), **(derived or {}), "fingerprint": fingerprint,
    }
    tmp_log = log_path.with_suffix(".json.tmp")
    tmp_log.write_text(json.dumps(log, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp_log, log_path)
    return "ingested", log


def _id_prefixes(ids: pd.Series) -> np.ndarray:
    """64-bit prefixes of the salted respondent-id hashes (hex strings)."""
    text = ids.astype(str).str.slice(0, 16)
    return np.array([int(t, 16) if t else 0 for t in text], dtype=np.uint64)


def _check_unique_ids(prefixes: list[np.ndarray], card: SourceCard) -> None:
    if not card.id_column or not prefixes:
        return
    values = np.sort(np.concatenate(prefixes))
    duplicates = int(np.count_nonzero(values[1:] == values[:-1]))
    if duplicates:
        raise HarmoniseError(
            f"{card.path_label}: column '{card.id_column}' (id_column) repeats {duplicates} "
            "respondent id(s) across partitions; de-duplicate the raw data")


# --------------------------------------------------------------------------------------------
# Reading a partitioned processed dataset
# --------------------------------------------------------------------------------------------


@dataclass
class PartitionedSource:
    """A processed source stored as a partitioned dataset (what :data:`SIDECAR` says)."""

    id: str
    path: Path
    design: dict
    source: dict
    rows: int
    countries: dict
    indicator_counts: dict
    country_rows: dict = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        return sorted(str(p) for p in self.path.glob("part-*.parquet"))

    def indicators_with_data(self) -> list[str]:
        return [name for name, n in self.indicator_counts.items() if n > 0]


def processed_dataset(source: str, processed_dir=None) -> Path:
    return Path(processed_dir or config.PROCESSED_DIR) / f"{source}.parquet"


def is_partitioned(source: str, processed_dir=None) -> bool:
    """True when ``source`` was processed as a partitioned dataset."""
    return (processed_dataset(source, processed_dir) / SIDECAR).exists()


def load_partitioned(source: str, processed_dir=None) -> PartitionedSource:
    """The sidecar of a partitioned processed source (no pass over the data)."""
    path = processed_dataset(source, processed_dir)
    sidecar = path / SIDECAR
    if not sidecar.exists():
        raise FileNotFoundError(f"{path}: not a partitioned processed source (no {SIDECAR}); run "
                                f"`python -m analysis ingest {source}`")
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    return PartitionedSource(
        id=source, path=path, design=meta.get("design") or {}, source=meta.get("source") or {},
        rows=int(meta.get("rows", 0)), countries=meta.get("countries") or {},
        indicator_counts=meta.get("indicator_counts") or {},
        country_rows=meta.get("country_rows") or {},
    )
