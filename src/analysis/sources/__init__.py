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


class SourceNotInScope(ValueError):
    """A source has no rows for the country a run asks for (one-line message)."""


#: Engine used for partitioned sources when a run does not name one.
DEFAULT_ENGINE = "duckdb"


def load_survey(source: str, processed_dir: Path | str | None = None, country: str | None = None,
                engine: str | None = None, scheduler: str | None = None):
    """The processed source ``source`` as one :class:`analysis.survey.Survey` (frame, design,
    metadata), for ``country`` (ISO3) unless it is None or "all".

    A source ingested as a partitioned dataset (:mod:`analysis.sources.partitioned`) is not
    loaded: its Survey has an empty frame with the dataset's columns and the dataset itself
    (estimated from partition sums on ``engine``: "duckdb", default, or "dask" on
    ``scheduler``). A country's respondents are kept as they are: countries are sampled
    independently (strata of the design), so the subset's design is the country's own.

    Raises
    ------
    ProcessedNotFound
        No processed table for the source.
    SourceNotInScope
        The source has no rows for ``country`` (the message lists its countries).
    """
    from analysis.sources import partitioned
    from analysis.survey import Survey

    in_country = country and country != "all"
    if partitioned.is_partitioned(source, processed_dir):
        data = partitioned.load_partitioned(source, processed_dir)
        if in_country and country not in data.countries:
            raise SourceNotInScope(f"source '{source}' has no rows for country '{country}'; its countries "
                                   f"are: {', '.join(data.countries)}")
        if not data.files:
            raise ProcessedNotFound(f"source '{source}': {data.path} holds no Parquet partitions; "
                                    f"run `python -m analysis ingest {source} --force`")
        frame = pq.read_schema(data.files[0]).empty_table().to_pandas()
        engine_spec = {"engine": engine or DEFAULT_ENGINE, "scheduler": scheduler}
        frame.attrs.update(design=data.design, source=data.source, partitioned=data, engine=engine_spec)
        return Survey(frame, data.design, dict(data.source or {}), data, engine_spec)
    frame = load_processed(source, processed_dir)
    if in_country and frame.attrs.get("design") is not None:
        attrs = dict(frame.attrs)
        present = sorted(frame["country"].dropna().astype(str).unique())
        frame = frame[frame["country"].astype("string") == country].reset_index(drop=True)
        frame.attrs.update(attrs)
        if frame.empty:
            raise SourceNotInScope(f"source '{source}' has no rows for country '{country}'; "
                                   f"its countries are: {', '.join(present)}")
    return Survey.from_frame(frame)


# the card kinds with their own model register their loaders with analysis.sources.card
from analysis.sources import coding as _coding  # noqa: F401
from analysis.sources import studies as _studies  # noqa: F401

__all__ = ["DEFAULT_ENGINE", "METADATA_KEY", "ProcessedNotFound", "SourceNotInScope", "load_processed",
           "load_survey", "processed_path"]
