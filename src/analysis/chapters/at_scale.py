"""Chapters on partitioned sources: estimates as one pass of partition sums (issue 17).

A source ingested partition by partition (:mod:`analysis.sources.partitioned`, e.g. the
census-like sample) is never loaded whole. :func:`partitioned_frame` gives the run an empty frame
with the dataset's columns and, in ``attrs``, its design, source metadata and where its files
are; the group-profile functions then compute every estimate, and the covariances of the gaps,
with :func:`analysis.survey_sums.estimate_by_sums` on the chosen engine (DuckDB by default, or
Dask on a local cluster or a given scheduler). Results are the same numbers, in the same result
schema, as the in-memory path, and pass through the same disclosure control.

The comparison column ("group" / "reference" / NA) is a :class:`analysis.survey_sums.Recode`
of the group's dimension computed in the map; a run for one country of a multi-country source
is the domain of that country (rows of other countries keep their place in the design, which
for countries sampled as strata, or for replicate weights, equals the subset).
"""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from analysis.chapters.common import COMPARISON, ChapterError, ChapterRun

#: Engine used for partitioned sources when a run does not name one.
DEFAULT_ENGINE = "duckdb"


def partitioned_frame(name: str, processed_dir, country: str | None, engine: str | None = None,
                      scheduler: str | None = None) -> pd.DataFrame | None:
    """The stand-in frame of a partitioned source (None when ``name`` is not partitioned)."""
    from analysis.sources import partitioned

    if not partitioned.is_partitioned(name, processed_dir):
        return None
    source = partitioned.load_partitioned(name, processed_dir)
    if country and country != "all" and country not in source.countries:
        raise ChapterError(f"source '{name}' has no rows for country '{country}'; its countries "
                           f"are: {', '.join(source.countries)}")
    if not source.files:
        raise ChapterError(f"source '{name}': {source.path} holds no Parquet partitions; "
                           f"run `python -m analysis ingest {name} --force`")
    frame = pq.read_schema(source.files[0]).empty_table().to_pandas()
    frame.attrs.update(design=source.design, source=source.source, partitioned=source,
                       engine={"engine": engine or DEFAULT_ENGINE, "scheduler": scheduler})
    return frame


def is_partitioned(run: ChapterRun, source: str) -> bool:
    return "partitioned" in run.frames[source].attrs


def indicators_in(run: ChapterRun, source: str) -> list[str]:
    """Catalogue indicators with data in the source (counts recorded at ingest)."""
    counts = run.frames[source].attrs["partitioned"].indicator_counts
    return [i for i in run.indicators if counts.get(i, 0) > 0]


def _comparison(run: ChapterRun):
    from analysis.survey_sums import Recode

    group = run.group
    if group is None:
        raise ChapterError(f"chapter {run.chapter}: this chapter needs a group; set the parameter 'group'")
    mapping = {str(m): "group" for m in group.members}
    if group.reference == "rest":
        return Recode(group.dimension, mapping, default="reference")
    mapping.update({str(r): "reference" for r in group.reference if str(r) not in mapping})
    return Recode(group.dimension, mapping)


def _estimate(run: ChapterRun, source: str, indicators: list[str], covariance: bool):
    from analysis.survey_sums import DesignColumns, Recode, estimate_by_sums

    frame = run.frames[source]
    data = frame.attrs["partitioned"]
    recodes = {COMPARISON: _comparison(run)}
    domain = None
    if run.country and run.country != "all" and len(data.countries) > 1:
        recodes["_in_country"] = Recode("country", {run.country: "in"})
        domain = "_in_country"
    options = frame.attrs["engine"]
    return estimate_by_sums(
        data.files, DesignColumns.from_spec(data.design), indicators, by=[COMPARISON],
        margins=False, statistic="mean", engine=options["engine"],
        scheduler=options.get("scheduler") if options["engine"] == "dask" else None,
        recodes=recodes, domain=domain, covariance=covariance,
        source=source, country=run.country, group=run.group_id,
    )


def group_estimates(run: ChapterRun, source: str) -> pd.DataFrame:
    """The group and reference estimates of every indicator of a partitioned source
    (unsuppressed; :func:`analysis.chapters.group_profile.group_estimates` suppresses)."""
    estimates = _estimate(run, source, indicators_in(run, source), covariance=False)
    return estimates[estimates["cell"].isin(["group", "reference"])]


def group_gaps(run: ChapterRun, source: str) -> pd.DataFrame:
    """Difference and ratio, group vs reference, as :func:`analysis.gaps.group_gaps` computes
    them, from one pass of sums with the covariance of the two domain means."""
    from analysis import gaps

    group = run.group
    table, covariances = _estimate(run, source, indicators_in(run, source), covariance=True)
    data = run.frames[source].attrs["partitioned"]
    in_scope = (data.country_rows.get(run.country, data.rows)
                if run.country and run.country != "all" else data.rows)
    reference = "rest" if group.reference == "rest" else "+".join(map(str, group.reference))
    pieces = []
    for (indicator, rows), covariance in zip(table.groupby("indicator", sort=False), covariances):
        rows = rows.reset_index(drop=True)
        out = gaps.gaps_from_estimates(rows, "group", "reference", covariance)
        compared = int((rows["n_unweighted"].astype(float) + rows["n_missing"].astype(float)).sum())
        out["group"] = group.id
        out["breakdown"] = group.dimension
        out["cell"] = f"{'+'.join(group.members)} vs {reference}"
        out["source"] = source
        out["country"] = run.country
        out["n_outside"] = in_scope - compared
        pieces.append(out)
    return pd.concat(pieces, ignore_index=True)
