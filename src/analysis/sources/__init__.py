"""Source cards, readers and harmonisation of raw CSO data into the common schema.

``python -m analysis ingest`` (:mod:`analysis.sources.ingest`) writes one harmonised table per
source to ``data/processed/<source>.parquet``; :func:`load_processed` reads it back with its
survey design in ``frame.attrs["design"]`` and the card's metadata in ``frame.attrs["source"]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from analysis import config

#: Key of the Parquet schema metadata holding the design and source metadata (JSON).
METADATA_KEY = b"analysis"


class ProcessedNotFound(FileNotFoundError):
    """No processed table for a source: run ``python -m analysis ingest`` first."""


def processed_path(source: str, processed_dir: Path | str | None = None) -> Path:
    """Path of the harmonised Parquet file of ``source``."""
    folder = Path(processed_dir) if processed_dir else config.PROCESSED_DIR
    return folder / f"{source}.parquet"


def load_processed(source: str, processed_dir: Path | str | None = None) -> pd.DataFrame:
    """Load the harmonised table of ``source`` with its design and metadata in ``frame.attrs``.

    ``frame.attrs["design"]`` = {"sample_type", "weight", "strata", "psu", "fpc",
    "replicate_columns", "replicate_method", "replicate_scale", "replicate_rscales", "fay_rho",
    "single_psu"} (column names of the harmonised table, or None);
    ``frame.attrs["source"]`` = {"id", "title", "kind", "synthetic", "licence", ...}.
    For ``kind: aggregates`` the table is in the result schema; for ``kind: margins`` it is a
    population-counts table and ``attrs["design"]`` is None.
    """
    path = processed_path(source, processed_dir)
    if not path.exists():
        raise ProcessedNotFound(
            f"{path}: no processed table for source '{source}'; run `python -m analysis ingest {source}`"
        )
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    frame = table.to_pandas()
    frame.attrs["design"] = meta.get("design")
    frame.attrs["source"] = meta.get("source", {"id": source})
    # a STOP in coded free text (kind: coding) withdraws the respondent from everything
    from analysis.sources.coding import drop_withdrawn

    return drop_withdrawn(frame, source, path.parent)


__all__ = ["METADATA_KEY", "ProcessedNotFound", "load_processed", "processed_path"]
