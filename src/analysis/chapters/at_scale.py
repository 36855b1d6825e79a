"""Chapters on partitioned sources: estimates as one pass of partition sums (issue 17).

A source ingested partition by partition (:mod:`analysis.sources.partitioned`, e.g. the
census-like sample) is never loaded whole. :func:`analysis.sources.load_survey` gives the run a
:class:`analysis.survey.Survey` with an empty frame of the dataset's columns, its design, source
metadata and the dataset (where its files are); the group-profile functions then compute every estimate, and the covariances of the gaps,
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

from analysis.chapters.common import COMPARISON, ChapterError, ChapterRun


def is_partitioned(run: ChapterRun, source: str) -> bool:
    """True when ``source`` is estimated from partition sums (its Survey holds the dataset)."""
    return run.survey(source).partitioned is not None


def indicators_in(run: ChapterRun, source: str) -> list[str]:
    """Catalogue indicators with data in the source (counts recorded at ingest)."""
    return run.indicators_in(source)


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

    survey = run.survey(source)
    data = survey.partitioned
    recodes = {COMPARISON: _comparison(run)}
    domain = None
    if run.country and run.country != "all" and len(data.countries) > 1:
        recodes["_in_country"] = Recode("country", {run.country: "in"})
        domain = "_in_country"
    options = survey.engine
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
    data = run.survey(source).partitioned
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
