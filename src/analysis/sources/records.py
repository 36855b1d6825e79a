"""What an ingest records beside a processed table: the source metadata and the log.

Shared by the in-memory (:mod:`~analysis.sources.ingest`), streamed
(:mod:`~analysis.sources.streaming`) and partitioned (:mod:`~analysis.sources.partitioned`)
ingests, so that each writes the same keys.
"""

from __future__ import annotations

import datetime as dt

from analysis.sources.card import SourceCard


def source_metadata(card: SourceCard, metadata: dict | None = None) -> dict:
    """The card's metadata stored with a processed table (``frame.attrs["source"]``), after
    ``metadata`` (how derived columns were made)."""
    return {
        **(metadata or {}),
        "id": card.id,
        "title": card.title,
        "kind": card.kind,
        "synthetic": card.synthetic,
        "licence": card.licence,
        "consent": card.consent,
        "citation": card.citation,
        "country": card.country,
        "collection_period": (
            {"start": card.collection_period.start.isoformat(), "end": card.collection_period.end.isoformat()}
            if card.collection_period
            else None
        ),
        "indicators": list(card.indicators),
    }


def ingest_log(card: SourceCard, accounting, metadata: dict, columns: list[str], fingerprint: dict,
               reader_notes: dict, **extra) -> dict:
    """The ``<source>.log.json`` of an ingested source: row accounting, how derived columns were
    made, the columns written and the input fingerprint (``extra`` keys last)."""
    return {
        "source": card.id,
        "status": "ingested",
        "kind": card.kind,
        "synthetic": card.synthetic,
        "ingested_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": [str(spec.path) for spec in card.files],
        "reader": card.reader,
        "reader_notes": reader_notes,
        **accounting.as_dict(),
        **metadata,
        "columns": columns,
        "fingerprint": fingerprint,
        **extra,
    }
