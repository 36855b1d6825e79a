"""Harmonise raw sources (params/sources/*.yml) into data/processed/.

``python -m analysis ingest [SOURCE ...] [--raw-root DIR] [--processed DIR] [--force]``

For each source card: read the raw file(s), harmonise to the common schema, validate, and
write ``<processed>/<source>.parquet`` (the design dict and the card's metadata in the Parquet
schema metadata, restored by :func:`analysis.sources.load_processed`) and
``<processed>/<source>.log.json`` (row accounting and the input fingerprint).

A microdata CSV of 64 MiB or more is read and harmonised in record batches
(:mod:`analysis.sources.streaming`: same table, log and checks, memory independent of the file
size); a card naming a folder or glob is ingested partition by partition
(:mod:`analysis.sources.partitioned`).

A source whose inputs are unchanged — same sha256 of its raw files, its card, the catalogue and
the code of :mod:`analysis.sources` and :mod:`analysis.schema` — is skipped unless ``--force``.
One line per source is printed: ``ingested``, ``unchanged``, ``failed (reason)`` or, for a
real-data source that users download themselves (card key ``download``) whose files are absent
when every card is ingested, ``skipped (how to get it)``. A failing
source never stops the others; the exit code is 1 when any source failed, else 0. No traceback
reaches the user.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from analysis import config, hashing, schema
from analysis.sources import METADATA_KEY, coding, partitioned, streaming, studies
from analysis.sources.card import CardError, SourceCard, card_paths, load_card
from analysis.sources.harmonise import Harmonised, HarmoniseError, harmonise
from analysis.sources.privacy import PrivacyError
from analysis.sources.readers import ReadError, raw_file, read_source
from analysis.sources.records import ingest_log, source_metadata


def code_files() -> list[Path]:
    """Code whose change invalidates every processed table: ingest and every project module it
    imports, transitively (:func:`analysis.hashing.module_closure`), and the admin-1 lookup."""
    files = hashing.module_closure(["analysis.sources.ingest"])
    return sorted(files) + [Path(__file__).with_name("admin1_natural_earth.csv")]

#: Errors that are the user's to fix: printed as one line, never a traceback.
USER_ERRORS = (CardError, ReadError, HarmoniseError, PrivacyError, schema.SchemaError,
               studies.StudyError)  # kind: study (issue 14)


def input_fingerprint(card_path: Path, card: SourceCard, raw_root: Path) -> dict:
    """sha256 of every input of a source: raw files, card, catalogue files, and the ingest code.

    Raw files are located through :func:`~analysis.sources.readers.raw_file`, so only regular
    files inside the raw root and below the size limit are ever hashed.
    """
    files = {f"raw:{spec.path}": hashing.sha256_file(raw_file(raw_root, spec.path, str(card_path)))
             for spec in card.files}
    if card.reader_options.form:
        form = raw_file(raw_root, card.reader_options.form, str(card_path), "reader_options.form")
        files[f"raw:{card.reader_options.form}"] = hashing.sha256_file(form)
    files[f"card:{card_path.name}"] = hashing.sha256_file(card_path)
    for path in (config.INDICATORS_FILE, config.GROUPS_FILE):
        if path.exists():
            files[f"params:{path.name}"] = hashing.sha256_file(path)
    files["code"] = hashing.sha256_json(hashing.code_hashes(code_files()))
    combined = hashing.sha256_json(files)
    return {"sha256": combined, "inputs": files}


def write_processed(result: Harmonised, card: SourceCard, processed_dir: Path, log: dict) -> Path:
    """Write ``<source>.parquet`` (design + source metadata in the schema metadata) and ``<source>.log.json``.

    Both are written to temporary files first and then renamed, so a crash never leaves a
    half-written table that looks valid.
    """
    processed_dir.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(result.frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps({"design": result.design, "source": source_metadata(card, result.metadata)}).encode()
    table = table.replace_schema_metadata(meta)
    target = processed_dir / f"{card.id}.parquet"
    tmp = target.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, target)
    log_path = processed_dir / f"{card.id}.log.json"
    tmp_log = log_path.with_suffix(".json.tmp")
    tmp_log.write_text(json.dumps(log, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp_log, log_path)
    return target


def _previous_fingerprint(processed_dir: Path, source: str) -> str | None:
    log_path = processed_dir / f"{source}.log.json"
    if not log_path.exists() or not (processed_dir / f"{source}.parquet").exists():
        return None
    try:
        return json.loads(log_path.read_text(encoding="utf-8")).get("fingerprint", {}).get("sha256")
    except (json.JSONDecodeError, OSError, AttributeError):
        return None


class NotDownloaded(Exception):
    """The raw files of a download-it-yourself source (card key ``download``) are absent."""


def ingest_source(card_path: Path, raw_root: Path, processed_dir: Path, force: bool = False,
                  indicators: dict | None = None, age_bands=None,
                  income_groups: tuple | None = None) -> tuple[str, dict | None]:
    """Ingest one source. Returns ``("ingested"|"unchanged", log)``; raises a user error otherwise."""
    # --- kind: study (issue 14): published aggregates of partner studies, see sources/studies.py ---
    if studies.is_study_card(card_path):
        return studies.ingest_study_source(card_path, raw_root, processed_dir, force)
    # --- end of the study hook ---
    if coding.is_coding_card(card_path):  # coded free text (kind: coding): its own reader
        return coding.ingest_coding(card_path, raw_root, processed_dir, force)
    card = load_card(card_path)
    for spec in card.files:
        if card.download and not (raw_root / spec.path).exists() and not (raw_root / spec.path).is_symlink():
            raise NotDownloaded(f"{raw_root / spec.path} not found; {card.download}")
    if partitioned.is_partitioned_card(card, raw_root):  # issue 17: partition by partition
        return partitioned.ingest_partitioned(card_path, card, raw_root, processed_dir, force,
                                              indicators, age_bands, income_groups)
    for spec in card.files:
        raw_file(raw_root, spec.path, str(card_path))  # inside the raw root, a regular file, not too large
    fingerprint = input_fingerprint(card_path, card, raw_root)
    if not force and _previous_fingerprint(processed_dir, card.id) == fingerprint["sha256"]:
        return "unchanged", None
    for spec in card.files:
        if spec.sha256 and fingerprint["inputs"][f"raw:{spec.path}"] != spec.sha256:
            raise ReadError(f"{raw_root / spec.path}: sha256 differs from files.sha256 in {card_path}; is it the right file?")
    if streaming.is_streamed(card, raw_root):  # a large CSV: batch by batch, constant memory
        return streaming.ingest_streamed(card_path, card, raw_root, processed_dir, fingerprint,
                                         indicators, age_bands, income_groups)
    raw = read_source(card, raw_root)
    result = harmonise(card, raw, indicators=indicators, age_bands=age_bands,
                       income_groups=income_groups)
    log = ingest_log(card, result.accounting, result.metadata, list(result.frame.columns), fingerprint,
                     {k: v for k, v in raw.notes.items() if k in ("encoding", "sheet")})
    write_processed(result, card, processed_dir, log)
    return "ingested", log


def _record_failure(processed_dir: Path, source: str, reason: str) -> None:
    """Remove a stale table of a source that now fails, and say why in its log.

    A table built from older inputs must not pass for the current one; processed data is
    always rebuildable from the raw data.
    """
    stale = processed_dir / f"{source}.parquet"
    if stale.exists():
        stale.unlink()
    processed_dir.mkdir(parents=True, exist_ok=True)
    log = {
        "source": source,
        "status": "failed",
        "error": reason,
        "failed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (processed_dir / f"{source}.log.json").write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")


def _summary(log: dict) -> str:
    excluded = sum(log["rows_excluded"].values())
    unknown = sum(sum(v.values()) for v in log["unknown_codes"].values())
    text = f"{log['rows_kept']} of {log['rows_read']} rows kept"
    if excluded:
        text += f", {excluded} excluded"
    if unknown:
        text += f", {unknown} unknown codes set missing"
    warnings = log.get("warnings") or []
    if warnings:
        text += f"; {len(warnings)} warning{'s' if len(warnings) > 1 else ''}: " + "; ".join(warnings[:3])
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="*", metavar="SOURCE", help="source ids (default: every card in params/sources/)")
    parser.add_argument("--raw-root", type=Path, default=None, help="folder that card file paths are relative to (default: data/raw)")
    parser.add_argument("--processed", type=Path, default=None, help="output folder (default: data/processed)")
    parser.add_argument("--sources-dir", type=Path, default=None, help="folder of source cards (default: params/sources)")
    parser.add_argument("--force", action="store_true", help="re-ingest even when the inputs are unchanged")


def main(args: argparse.Namespace) -> int:
    raw_root = (args.raw_root or config.RAW_DIR).resolve()
    processed_dir = (args.processed or config.PROCESSED_DIR).resolve()
    cards = card_paths(getattr(args, "sources_dir", None))
    wanted = list(args.sources) or list(cards)
    # coding sources join the processed survey they code: ingest them after every other source
    wanted.sort(key=lambda s: s in cards and coding.is_coding_card(cards[s]))
    try:
        indicators = schema.load_indicators() if config.INDICATORS_FILE.exists() else None
        age_bands = schema.load_age_bands()
        dimensions = schema.load_dimensions() if config.GROUPS_FILE.exists() else {}
        income_groups = tuple(dimensions["income_group"].categories) if "income_group" in dimensions else None
    except schema.SchemaError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    if not wanted:
        print(f"no source cards in {config.SOURCES_DIR}", file=sys.stderr)
        return 1
    # Issue 11 (pipeline): one lock with `python -m analysis run` on the processed folder, so that
    # no run hashes or reads these files while they are rewritten (analysis.pipeline.lock).
    from analysis.pipeline.lock import FolderBusy
    from analysis.pipeline.lock import hold as hold_folder

    try:
        with hold_folder(processed_dir, exclusive=True, holder="python -m analysis ingest"):
            return _ingest_all(args, wanted, cards, raw_root, processed_dir, indicators, age_bands, income_groups)
    except FolderBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _ingest_all(args, wanted, cards, raw_root, processed_dir, indicators, age_bands, income_groups) -> int:
    failed = 0
    for source in wanted:
        if source not in cards:
            print(f"{source}: failed (no source card params/sources/{source}.yml; cards: {', '.join(cards) or 'none'})")
            failed += 1
            continue
        try:
            status, log = ingest_source(
                cards[source], raw_root, processed_dir, args.force, indicators, age_bands, income_groups
            )
        except NotDownloaded as exc:
            # named on the command line: the user expects it, so it is a failure; else a note
            if args.sources:
                print(f"{source}: failed ({exc})")
                failed += 1
            else:
                print(f"{source}: skipped ({exc})")
            continue
        except USER_ERRORS as exc:
            print(f"{source}: failed ({exc})")
            _record_failure(processed_dir, source, str(exc))
            failed += 1
            continue
        except Exception as exc:
            if os.environ.get("ANALYSIS_DEBUG"):
                raise
            reason = f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; please report this"
            print(f"{source}: failed ({reason})")
            _record_failure(processed_dir, source, reason)
            failed += 1
            continue
        if status == "unchanged":
            print(f"{source}: unchanged")
        else:
            print(f"{source}: ingested ({_summary(log)}) -> {processed_dir / (source + '.parquet')}")
    return 1 if failed else 0
