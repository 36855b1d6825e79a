"""Design-based estimates as one pass of partition sums, for data larger than memory.

Every estimate of :func:`analysis.survey.estimate_by` (means, proportions, totals and ratios
in every cell of an intersection and its margins, with Taylor-linearised or replicate-weight
standard errors) is a function of a small table of sums. This module computes it in three
steps:

1. **map**: each partition of the data (a pandas chunk, a Dask partition, or DuckDB's scan of
   Parquet files) is reduced to per-(stratum × PSU × fine cell) sums of ``1``, ``w``, ``w·y``,
   ``w·y²`` (and ``w·x`` for ratios) for every indicator, counting only the rows where the
   indicator is present; for replicate designs, per-fine-cell sums of ``w_r·y`` and ``w_r``
   under each replicate weight ``r``; for designs without clusters (every row its own PSU),
   per-(stratum × cell) sums of the squared terms ``w²``, ``w²y``, ``w²y²`` instead of one row
   per PSU; for calibrated (post-stratified or raked) designs with clusters, also per
   calibration cell the reading-weighted sums, the basis and the cross tables that the
   calibration residuals need (:class:`_CalibrationTables`). Means are summed as deviations
   ``y − c`` from a pilot value ``c`` when their mean is large against their SD (shifted sums,
   :func:`_pilot_shifts`), so the raw moments keep their precision;
2. **reduce**: the partial tables are added (grouped by their keys);
3. **variance**: from the reduced table alone. Every PSU of the design is kept, also those
   where a cell has no members (their score total is zero and they still count in ``n_h`` and
   in the centring: counting only the PSUs that contain members gives a wrong SE).

Statistical formulae are those of :mod:`analysis.survey` (R's ``svyrecvar`` and ``svrVar``):
the Taylor variance of a cell estimate is the stratified with-replacement between-PSU
variance of the totals of its linearised scores, which are linear in the PSU × cell sums —

- mean (Hájek) ``μ = Σwy / Σw``: PSU score total ``(S_wy − μ S_w) / W``;
- total: ``S_wy``; ratio ``R = Σwy / Σwx``: ``(S_wy − R S_wx) / X``;

and, without clusters, the stratum sums of squared scores follow from the squared-term sums:
``Σ z² = (S_w²y² − 2μ S_w²y + μ² S_w²) / W²``. Replicate variances use the replicate totals
``Σ w_r y`` (R's ``svrepdesign``: JK1, JKn, BRR, Fay, bootstrap, successive difference).
The design skeleton (strata, PSUs, later stages, fpc) is rebuilt from the distinct sampling
units of the reduced table, so lonely-PSU options, multistage fpc and the design degrees of
freedom are exactly those of the in-memory :class:`~analysis.survey.SurveyDesign`.

Engines (:data:`ENGINES`): ``chunks`` (in this process, ``threads`` partitions at a time: a
frame split into chunks, or Parquet row groups, each read page by page by a worker thread as
Arrow record batches of the needed columns only, replicate weights straight to numpy and
multiplied block by block of rows in cache-sized buffers — the fastest engine on one machine),
``dask`` (``dask.dataframe`` partitions on the threaded scheduler,
a local cluster or a given scheduler address) and ``duckdb`` (SQL ``GROUP BY`` over Parquet on
disk, for one machine with little memory). All return the result schema of
:mod:`analysis.tables` plus the diagnostics of :func:`analysis.survey.estimate_by`; disclosure
control is applied afterwards, as for every table. Importing this module registers the engines
in :data:`analysis.survey.PARTITION_ENGINES` (``survey.estimate_by(..., engine=...)``); the
design-structure rules (sampling fractions, stage coefficients, lonely PSUs) are
:mod:`analysis.survey`'s own functions.

Counts: ``n_unweighted`` counts respondents with a non-missing value and a positive weight;
``n_missing`` counts rows of the cell whose value is missing. Degrees of freedom of a Taylor
design are the PSUs minus the strata among the rows present in a cell (R's ``degf`` of the
subset); of a replicate design the rank of the replicate weights minus one (R's ``degf``):
R − 1 when the per-cell replicate totals (``A W``) already have rank R, else from the Gram
matrix ``W'W`` summed over small partitions plus, for large partitions, a count
sketch ``S W`` (a random sparse ``K × n`` projection, ``K ≥ 4R``, that keeps the rank with
probability one), so that neither an ``n × R`` matrix nor ``n R²`` work is ever needed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy import sparse

from analysis import survey, tables
from analysis.survey import (
    SurveyDesign,
    SurveyDesignError,
    sampling_fractions,
    stage_variance_terms,
)

#: Engines of :func:`estimate_by_sums` (``pandas`` in :func:`analysis.survey.estimate_by` is the
#: in-memory estimator itself).
ENGINES: tuple[str, ...] = ("chunks", "dask", "duckdb")

#: Rows per pandas chunk when a frame in memory is split (``chunks`` engine) or Parquet is read
#: in batches.
DEFAULT_CHUNK_ROWS = 1_000_000

#: Buckets of the count sketch of the replicate weights (at least 4 × replicates).
_SKETCH_MIN_BUCKETS = 1024

#: Partitions with at most this many rows add their exact Gram matrix W'W of the replicate
#: weights instead of a sketch (cost n R², negligible for small partitions).
EXACT_GRAM_ROWS = 50_000

_KEY_PREFIX = "k_"  # internal key columns of the sums table (unit keys)


# --------------------------------------------------------------------------------------------
# The design, by column names
# --------------------------------------------------------------------------------------------


@dataclass
class DesignColumns:
    """A survey design named by columns, for data that are not in memory.

    The arguments are those of :meth:`analysis.survey.SurveyDesign.from_frame` (R's
    ``svydesign`` / ``svrepdesign``), naming columns of the data instead of holding arrays.

    Parameters
    ----------
    weight : str or None
        Sampling weight column. ``None`` with ``fpc``: weights from the population sizes;
        ``None`` without: every weight 1.
    strata, psu, fpc : str, list of str or None
        Stratum column, PSU column (or one per stage) and fpc column (one per stage).
    nest, single_psu, replicate_columns, replicate_method, replicate_scale, replicate_rscales,
    fay_rho, mse, sample_type
        As :class:`~analysis.survey.SurveyDesign`.
    """

    weight: str | None = None
    strata: str | None = None
    psu: str | list[str] | None = None
    fpc: str | list[str] | None = None
    nest: bool = True
    single_psu: str = "fail"
    replicate_columns: list[str] | None = None
    replicate_method: str | None = None
    replicate_scale: float | None = None
    replicate_rscales: list[float] | None = None
    fay_rho: float | None = None
    mse: bool = False
    sample_type: str = "probability"
    #: a calibrated (post-stratified or raked) Taylor design: ``{"projections": [{"codes":
    #: column, "basis": column, "reading": column, "denominator": [per cell]}, ...],
    #: "schedule": [...], "description": str}`` (see :class:`analysis.weighting.Projection`;
    #: :func:`design_columns_from` writes these columns for an in-memory calibrated design)
    calibration: dict | None = None

    def __post_init__(self):
        if self.single_psu not in survey.SINGLE_PSU_OPTIONS:
            raise SurveyDesignError(
                f"single_psu={self.single_psu!r} is not an option; use one of "
                f"{list(survey.SINGLE_PSU_OPTIONS)}"
            )
        self.psu = [self.psu] if isinstance(self.psu, str) else list(self.psu or [])
        self.fpc = [self.fpc] if isinstance(self.fpc, str) else list(self.fpc or [])
        self.replicate_columns = list(self.replicate_columns or [])
        if len(self.fpc) > max(len(self.psu), 1):
            raise SurveyDesignError(
                f"{len(self.fpc)} fpc columns given for {len(self.psu)} stages of clusters"
            )
        if self.sample_type == "non_probability":
            # analysed as independent rows with the weights given (design_for does the same)
            self.strata, self.psu, self.fpc, self.replicate_columns = None, [], [], []

    @classmethod
    def from_spec(cls, spec: dict) -> DesignColumns:
        """From the design spec that travels with a processed frame (``frame.attrs["design"]``,
        see :func:`analysis.survey.design_for`)."""
        return cls(
            weight=spec.get("weight"), strata=spec.get("strata"), psu=spec.get("psu"),
            fpc=spec.get("fpc"), nest=spec.get("nest", True),
            single_psu=spec.get("single_psu") or "fail",
            replicate_columns=spec.get("replicate_columns") or None,
            replicate_method=spec.get("replicate_method"),
            replicate_scale=spec.get("replicate_scale"),
            replicate_rscales=spec.get("replicate_rscales"),
            fay_rho=spec.get("fay_rho"), mse=bool(spec.get("replicate_mse", False)),
            sample_type=spec.get("sample_type") or "probability",
            calibration=spec.get("calibration"),
        )

    @property
    def is_replicate(self) -> bool:
        return bool(self.replicate_columns)

    @property
    def clustered(self) -> bool:
        return bool(self.psu)

    @property
    def projections(self) -> list[dict]:
        """The calibration projections the variance needs (none for replicate designs: their
        replicates were calibrated alike)."""
        if not self.calibration or self.is_replicate:
            return []
        return list(self.calibration.get("projections") or [])

    def columns(self) -> list[str]:
        """Every data column the design reads."""
        out = [self.weight, self.strata, *self.psu, *self.fpc, *self.replicate_columns]
        for projection in self.projections:
            out += [projection["codes"], projection["basis"], projection["reading"]]
        return [c for c in out if c]


def design_columns_from(frame: pd.DataFrame, design: SurveyDesign) -> tuple[pd.DataFrame, DesignColumns]:
    """A copy of ``frame`` carrying the arrays of an in-memory ``design`` as columns, and the
    :class:`DesignColumns` naming them (so that any engine can run an in-memory design)."""
    if len(frame) != design.n:
        raise SurveyDesignError(f"frame has {len(frame)} rows but the design has {design.n}")
    extra = {".w": design.weights}
    spec = DesignColumns(
        weight=".w", nest=design.nest, single_psu=design.single_psu, mse=design.mse,
        sample_type=design.sample_type,
    )
    if design.strata is not None:
        extra[".strata"] = np.asarray(design.strata)
        spec.strata = ".strata"
    for s, c in enumerate(design._clusters):
        extra[f".psu{s}"] = c
        spec.psu.append(f".psu{s}")
    for s, f in enumerate(design._fpcs):
        extra[f".fpc{s}"] = f
        spec.fpc.append(f".fpc{s}")
    if design.is_replicate:
        reps = design.replicate_weights
        for r in range(reps.shape[1]):
            extra[f".rep{r}"] = reps[:, r]
        spec.replicate_columns = [f".rep{r}" for r in range(reps.shape[1])]
        spec.replicate_method = design.replicate_method
        spec.replicate_scale = design.replicate_scale
        spec.replicate_rscales = list(design.replicate_rscales)
        spec.fay_rho = design.fay_rho
    calibration = getattr(design, "calibration", None)
    if calibration is not None:
        spec.calibration = {"projections": [], "schedule": list(calibration.schedule),
                            "description": calibration.description}
        for p, projection in enumerate(calibration.projections if not design.is_replicate else ()):
            extra[f".cal{p}"] = projection.codes
            extra[f".calb{p}"] = projection.basis
            extra[f".calr{p}"] = projection.reading
            spec.calibration["projections"].append({
                "codes": f".cal{p}", "basis": f".calb{p}", "reading": f".calr{p}",
                "denominator": [float(v) for v in projection.denominator],
            })
        _check_calibration(spec)
    out = pd.concat([frame.reset_index(drop=True), pd.DataFrame(extra)], axis=1)
    return out, spec


def _check_calibration(spec: DesignColumns) -> None:
    """Calibrated Taylor designs need clusters in the partition engines (refused otherwise)."""
    if spec.projections and not spec.clustered:
        raise SurveyDesignError(
            "calibrated designs without clusters (every row its own PSU) are estimated in memory "
            "only: their variance needs the squared calibration residual of every row, i.e. "
            "per-row products of the scores with each projection's basis, which per-cell sums do "
            "not carry; use engine='pandas', give the design its PSUs, or calibrate replicate "
            "weights (replicate designs are supported)"
        )


# --------------------------------------------------------------------------------------------
# What the map computes
# --------------------------------------------------------------------------------------------


@dataclass
class Recode:
    """A column derived from another by a mapping of its values, computed in the map (so that
    cells such as "group" / "reference" need no column in the data).

    ``mapping``: value (compared as text) -> label; ``default``: label of every other
    non-missing value (e.g. "reference" for a group compared with everyone else); unmapped
    values without a default and missing values are NA (outside every cell).
    """

    column: str
    mapping: dict
    default: str | None = None

    def apply(self, chunk: pd.DataFrame) -> pd.Series:
        values = chunk[self.column].astype("string")
        out = values.map({str(k): v for k, v in self.mapping.items()})
        if self.default is not None:
            out = out.where(out.notna() | values.isna(), self.default)
        return out.astype("object").where(out.notna(), None)

    def sql(self) -> str:
        by_label: dict = {}
        for value, label in self.mapping.items():
            by_label.setdefault(label, []).append(_lit(str(value)))
        text = f"CAST({_q(self.column)} AS VARCHAR)"
        whens = " ".join(f"WHEN {text} IN ({', '.join(v)}) THEN {_lit(label)}"
                         for label, v in by_label.items())
        default = (f" WHEN {_q(self.column)} IS NOT NULL THEN {_lit(self.default)}"
                   if self.default is not None else "")
        return f"(CASE {whens}{default} ELSE NULL END)"


@dataclass
class Quantity:
    """One estimated quantity: an indicator column (or one category of it) and its values."""

    label: str
    column: str
    category: object = None  # for a categorical indicator: the category whose share is estimated
    shift: float = 0.0  # pilot value subtracted before summing (means: see _pilot_shifts)


@dataclass
class SumsPlan:
    """Everything the map needs (picklable: it travels to Dask workers)."""

    design: DesignColumns
    by: list[str]
    quantities: list[Quantity]
    statistic: str
    denominator: str | None = None
    domain: str | None = None
    sketch_buckets: int = 0
    source: str = "data"
    recodes: dict = field(default_factory=dict)  # name -> Recode

    @property
    def unit_keys(self) -> list[str]:
        """Key columns identifying the sampling unit a row belongs to (none for replicates)."""
        d = self.design
        if d.is_replicate:
            return []
        return [c for c in [d.strata, *d.psu, *d.fpc] if c]

    @property
    def element(self) -> bool:
        """True when every row is its own PSU (no clusters): squared-term sums are needed."""
        return not self.design.is_replicate and not self.design.clustered

    @property
    def ratio(self) -> bool:
        return self.statistic == "ratio"

    def read_columns(self) -> list[str]:
        by = [self.recodes[c].column if c in self.recodes else c for c in self.by]
        cols = [*self.design.columns(), *by, *(q.column for q in self.quantities)]
        if self.denominator:
            cols.append(self.denominator)
        if self.domain:
            cols.append(self.recodes[self.domain].column if self.domain in self.recodes
                        else self.domain)
        return list(dict.fromkeys(cols))

    @property
    def calibration_keys(self) -> list[str]:
        """Key columns of the sums table holding each calibration projection's cell."""
        return [f"cal_{p}" for p in range(len(self.design.projections))]

    def calibration_sum_columns(self) -> list[str]:
        """Per projection p: ``b{p}`` (its basis), ``rb{p}_{q}`` (reading_p × basis_q) and, per
        quantity j, the reading-weighted sums ``cy{p}_{j}``, ``cw{p}_{j}`` (``cx`` for ratios)
        that :meth:`analysis.weighting.Calibration.residual_unit_table` needs."""
        n = len(self.design.projections)
        cols = []
        for p in range(n):
            cols.append(f"b{p}")
            cols += [f"rb{p}_{q}" for q in range(n)]
            for j in range(len(self.quantities)):
                cols += [f"cy{p}_{j}", f"cw{p}_{j}"] + ([f"cx{p}_{j}"] if self.ratio else [])
        return cols

    def sum_columns(self) -> list[str]:
        """Names of the summed columns, in order (``j`` = quantity index)."""
        cols = ["n_rows", "n_domain"] + self.calibration_sum_columns()
        for j in range(len(self.quantities)):
            cols += [f"c{j}", f"p{j}", f"w{j}", f"y{j}", f"yy{j}"]
            if self.ratio:
                cols += [f"x{j}"]
            if self.element:
                cols += [f"ww{j}", f"wwy{j}", f"wwyy{j}"]
                if self.ratio:
                    cols += [f"wwx{j}", f"wwxy{j}", f"wwxx{j}"]
        return cols

    def replicate_sum_names(self) -> list[str]:
        """Per-quantity replicate totals: ``ry{j}`` of ``w_r y``; ``rx{j}`` of ``w_r m`` (mean,
        proportion) or ``w_r x`` (ratio)."""
        names = []
        for j in range(len(self.quantities)):
            names.append(f"ry{j}")
            if self.statistic != "total":
                names.append(f"rx{j}")
        return names


@dataclass
class Sums:
    """The (partial or reduced) sufficient statistics.

    ``table``: one row per (unit keys × ``by`` values) with the sums of :meth:`SumsPlan.sum_columns`
    (replicate designs: one row per ``by`` value combination); ``replicates``: for replicate
    designs, ``rows × (quantities' replicate sums × R)`` aligned to ``table``; ``sketch``: the
    count sketch of the replicate weights (``K × R``).
    """

    table: pd.DataFrame
    replicates: np.ndarray | None = None
    sketch: np.ndarray | None = None
    gram: np.ndarray | None = None
    weights_range: tuple[float, float] = (math.inf, -math.inf)
    full_rank: bool = False  # the replicate weights are known to have rank R
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Map: one pandas partition -> partial sums
# --------------------------------------------------------------------------------------------


def _values(chunk: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(chunk[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _fail_rows(plan, part, column, mask, what, offset):
    row = int(np.flatnonzero(mask)[0]) + offset
    raise SurveyDesignError(
        f"{plan.source}: design column {column!r} has {int(mask.sum())} {what} value(s) in "
        f"partition {part} (first at row {row} of the partition); {_FIX[what]}"
    )


_FIX = {
    "missing": "every row needs a value",
    "missing, negative or infinite": "weights must be finite and non-negative",
}


def map_partition(chunk: pd.DataFrame, plan: SumsPlan, part: int = 0,
                  replicate_arrays=None) -> Sums:
    """Partial sums of one partition (pandas frame with at least ``plan.read_columns()``).

    Rows are never dropped: a row with a missing indicator (or outside the domain) adds to the
    row counts of its unit and cell, with weight zero in the sums of that indicator.
    """
    from threadpoolctl import threadpool_limits

    # Partitions run in parallel (Dask workers, chunks in turn): one BLAS thread each, since
    # BLAS threads competing for the same cores are many times slower.
    with threadpool_limits(limits=1, user_api="blas"):
        return _map_partition(chunk, plan, part, replicate_arrays)


def _map_partition(chunk: pd.DataFrame, plan: SumsPlan, part: int, replicate_arrays) -> Sums:
    d = plan.design
    n = len(chunk)
    missing_cols = [c for c in plan.read_columns() if c not in chunk.columns]
    if replicate_arrays is not None:
        missing_cols = [c for c in missing_cols if c not in plan.design.replicate_columns]
    if missing_cols:
        raise SurveyDesignError(
            f"{plan.source}: column(s) {missing_cols[:5]} not found; columns are "
            f"{list(chunk.columns)[:30]}"
        )
    for column in [c for c in [d.strata, *d.psu] if c]:
        bad = chunk[column].isna().to_numpy()
        if bad.any():
            _fail_rows(plan, part, column, bad, "missing", 0)
    if d.weight:
        w = _values(chunk, d.weight)
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            _fail_rows(plan, part, d.weight, bad, "missing, negative or infinite", 0)
    else:
        w = np.ones(n)
    if d.fpc:
        for column in d.fpc:
            bad = chunk[column].isna().to_numpy()
            if bad.any():
                _fail_rows(plan, part, column, bad, "missing", 0)
    if plan.recodes:
        chunk = chunk.assign(**{name: r.apply(chunk) for name, r in plan.recodes.items()})
    domain = None
    if plan.domain in plan.recodes:
        domain = chunk[plan.domain].notna().to_numpy(dtype=bool)
    elif plan.domain:
        domain = chunk[plan.domain].fillna(False).to_numpy(dtype=bool)
    x = _values(chunk, plan.denominator) if plan.ratio else None

    ones = np.ones(n)
    derived = {"n_rows": ones, "n_domain": ones if domain is None else domain * 1.0}
    y0s, ms, x0s = [], [], []
    positive = w > 0
    shared_weights = None  # (w·m, m·[w > 0]) of the row indicator m = 1, made once
    for j, q in enumerate(plan.quantities):
        y = _quantity_values(chunk, q)
        if q.shift:
            y = y - q.shift
        present = ~np.isnan(y)
        if x is not None:
            present &= ~np.isnan(x)
        if domain is not None:
            present &= domain
        if present.all():  # nothing missing: share the row indicator across quantities
            if shared_weights is None:
                shared_weights = (w * ones, ones * positive)
            m, y0 = ones, y
            wm, pm = shared_weights
        else:
            m = present.astype(float)
            y0 = np.where(present, y, 0.0)
            wm, pm = w * m, m * positive
        derived[f"c{j}"] = m
        derived[f"p{j}"] = pm
        derived[f"w{j}"] = wm
        wy = wm * y0
        derived[f"y{j}"] = wy
        derived[f"yy{j}"] = wy * y0
        x0 = None
        if x is not None:
            x0 = np.where(present, x, 0.0)
            derived[f"x{j}"] = wm * x0
        if plan.element:
            w2 = wm * w
            derived[f"ww{j}"] = w2
            derived[f"wwy{j}"] = w2 * y0
            derived[f"wwyy{j}"] = w2 * y0 * y0
            if x is not None:
                derived[f"wwx{j}"] = w2 * x0
                derived[f"wwxy{j}"] = w2 * x0 * y0
                derived[f"wwxx{j}"] = w2 * x0 * x0
        y0s.append(y0)
        ms.append(m)
        x0s.append(x0)
    projections = d.projections
    for p, projection in enumerate(projections):
        reading = _values(chunk, projection["reading"])
        derived[f"b{p}"] = _values(chunk, projection["basis"])
        for j in range(len(plan.quantities)):
            derived[f"cy{p}_{j}"] = reading * derived[f"y{j}"]
            derived[f"cw{p}_{j}"] = reading * derived[f"w{j}"]
            if plan.ratio:
                derived[f"cx{p}_{j}"] = reading * derived[f"x{j}"]
        derived[f"_reading{p}"] = reading
    for p in range(len(projections)):
        for q in range(len(projections)):
            derived[f"rb{p}_{q}"] = derived[f"_reading{p}"] * derived[f"b{q}"]
    for p in range(len(projections)):
        del derived[f"_reading{p}"]
    names = ([f"{_KEY_PREFIX}{i}" for i in range(len(plan.unit_keys))] + plan.calibration_keys
             + list(plan.by))
    columns = ([chunk[c] for c in plan.unit_keys] + [chunk[pr["codes"]] for pr in projections]
               + [chunk[c] for c in plan.by])
    group, keys = _group_codes(columns, n)
    n_groups = len(keys[0]) if keys else 1
    sums, summed = {}, {}  # an array shared by several sums (e.g. the weights) is summed once
    for name, values in derived.items():
        if id(values) not in summed:
            summed[id(values)] = np.bincount(group, weights=values, minlength=n_groups)
        sums[name] = summed[id(values)]
    table = pd.DataFrame({**dict(zip(names, keys)), **sums})
    wrange = (float(w.min()), float(w.max())) if n else (math.inf, -math.inf)
    if not d.is_replicate:
        return Sums(table, weights_range=wrange)

    # Values whose replicate totals are needed (ry, rx per quantity); a column shared by
    # every quantity (the row indicator when nothing is missing) is multiplied once.
    values, layout, shared = [], [], {}
    for j in range(len(plan.quantities)):
        values.append(y0s[j])
        layout.append(len(values) - 1)
        if plan.statistic == "ratio":
            values.append(x0s[j])
            layout.append(len(values) - 1)
        elif plan.statistic != "total":
            if id(ms[j]) not in shared:
                values.append(ms[j])
                shared[id(ms[j])] = len(values) - 1
            layout.append(shared[id(ms[j])])
    # Block by block of rows: the block's rows sorted by group, its replicate weights gathered
    # in that order and converted to float64 into a small reused buffer (no R × n copy, no
    # gather across the partition), one matrix product (BLAS) per group present:
    # out[g] += W_b,g V_b,g.
    raws = _replicate_columns(chunk, plan, part, replicate_arrays)
    n_rep = len(raws)
    out = _replicate_products(raws, values, group, n_groups)
    out = out[:, :, layout].transpose(0, 2, 1).reshape(n_groups, -1)  # groups × (value, rep)
    zeros_sketch, zeros_gram = np.zeros((plan.sketch_buckets, n_rep)), np.zeros((n_rep, n_rep))
    if _full_rank_from_totals(out, n_rep):
        # rank(W) >= rank(W_p) >= rank(A_p W_p) = R: the design's df is R - 1, no Gram matrix
        # or sketch needed
        return Sums(table, out, zeros_sketch, zeros_gram, wrange, full_rank=True)
    if n <= EXACT_GRAM_ROWS:
        reps = _replicate_matrix(raws)
        return Sums(table, out, zeros_sketch, reps @ reps.T, wrange)
    return Sums(table, out, _sketch(_replicate_matrix(raws), plan.sketch_buckets, part),
                zeros_gram, wrange)


#: Rows whose replicate weights are multiplied at a time (the float64 buffer, R × rows, stays
#: in the processor's cache: 80 replicates × 8,192 rows = 5.2 MB; of 1,024 to 32,768 rows the
#: fastest measured on the 2-core benchmark machine, bench/bench_scale.py).
REPLICATE_BLOCK_ROWS = 8192


def _replicate_products(raws: list[np.ndarray], values: list[np.ndarray], group: np.ndarray,
                        n_groups: int) -> np.ndarray:
    """Per group ``g`` the products ``W_g' V_g`` (groups × R × values) of the replicate weights
    ``W`` (columns ``raws``) and the values ``V`` (columns ``values``) of the rows in ``g``
    (``group``: each row's group index).

    The rows are taken in blocks of :data:`REPLICATE_BLOCK_ROWS`: each block's weights are
    gathered in the order of its rows sorted by group (integer weights widen exactly to
    float64) into a reused R × rows buffer, then one matrix product per group present in the
    block adds to that group's total. Every weight is read once, from a block small enough
    for the cache; the sums are of the same terms as one product over the whole group (only
    their grouping into partial sums differs, within rounding).
    """
    n, n_rep, k = len(group), len(raws), len(values)
    out = np.zeros((n_groups, n_rep, k))
    block = min(REPLICATE_BLOCK_ROWS, max(n, 1))
    w_sorted, v_sorted = np.empty((n_rep, block)), np.empty((k, block))
    for start in range(0, n, block):
        stop = min(start + block, n)
        m = stop - start
        codes = group[start:stop]
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes, minlength=n_groups)
        ends = np.cumsum(counts)
        for r, raw in enumerate(raws):
            w_sorted[r, :m] = raw[start:stop][order]
        for j, v in enumerate(values):
            v_sorted[j, :m] = v[start:stop][order]
        for g in np.flatnonzero(counts):
            a, b = ends[g] - counts[g], ends[g]
            out[g] += w_sorted[:, a:b] @ v_sorted[:, a:b].T
    return out


def _replicate_columns(chunk, plan, part, replicate_arrays=None) -> list[np.ndarray]:
    """The replicate weight columns of a partition as numeric numpy arrays, checked (finite,
    non-negative). ``replicate_arrays``: the columns as numpy arrays (read from Arrow without
    pandas), else taken from ``chunk``."""
    d = plan.design
    raws = []
    for r, column in enumerate(d.replicate_columns):
        raw = (replicate_arrays[r] if replicate_arrays is not None
               else _values(chunk, column))
        raw = np.asarray(raw)
        if raw.dtype.kind not in "iufb":
            raw = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float,
                                                                          na_value=np.nan)
        if raw.dtype.kind == "b":
            raw = raw.astype(np.float64)
        if raw.dtype.kind == "f":
            bad = ~np.isfinite(raw) | (raw < 0)
        elif raw.dtype.kind == "i" and len(raw) and raw.min() < 0:
            bad = raw < 0
        else:
            bad = None
        if bad is not None and bad.any():
            raise SurveyDesignError(
                f"{plan.source}: replicate weight column {column!r} has {int(bad.sum())} missing, "
                f"negative or infinite value(s) in partition {part} (first at row "
                f"{int(np.flatnonzero(bad)[0])} of the partition); replicate weights must be "
                "finite and non-negative"
            )
        raws.append(raw)
    return raws


def _replicate_matrix(raws: list[np.ndarray]) -> np.ndarray:
    """The checked replicate weight columns ``raws`` as an R × n float64 matrix (for the exact
    Gram matrix of a small partition and the count sketch)."""
    reps = np.empty((len(raws), len(raws[0]) if raws else 0))
    for r, raw in enumerate(raws):
        reps[r] = raw
    return reps


def _group_codes(columns: list[pd.Series], n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Group index of each row by the combination of ``columns`` (NA is a value), and the key
    values of each group (object arrays). Hash-based, no sort, categoricals by their codes."""
    if not columns:
        return np.zeros(n, dtype=np.int64), []
    codes, uniques = [], []
    for column in columns:
        c, u = pd.factorize(column, use_na_sentinel=False)
        codes.append(c.astype(np.int64))
        uniques.append(np.asarray(u, dtype=object))
    sizes = [max(len(u), 1) for u in uniques]
    if float(np.prod(sizes, dtype=float)) < 2**62:
        combined = np.zeros(n, dtype=np.int64)
        for c, size in zip(codes, sizes):
            combined = combined * size + c
        group, first_keys = pd.factorize(combined)
        keys, rest = [], np.asarray(first_keys, dtype=np.int64)
        for size, u in zip(reversed(sizes), reversed(uniques)):
            keys.append(u[rest % size])
            rest = rest // size
        keys.reverse()
    else:  # too many combinations for one integer: unique rows of the code matrix
        stacked = np.column_stack(codes)
        rows, group = np.unique(stacked, axis=0, return_inverse=True)
        keys = [u[rows[:, k]] for k, u in enumerate(uniques)]
    keys = [np.array([None if tables.is_blank(v) else v for v in k], dtype=object) for k in keys]
    return np.asarray(group, dtype=np.int64).reshape(-1), keys


def _quantity_values(chunk: pd.DataFrame, q: Quantity) -> np.ndarray:
    if q.category is None:
        return _values(chunk, q.column)
    column = chunk[q.column]
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    values = (column == q.category).fillna(False).to_numpy(dtype=float)
    values[column.isna().to_numpy()] = np.nan
    return values


def _sketch(reps: np.ndarray, buckets: int, part: int) -> np.ndarray:
    """Count sketch S·W of the replicate weights (K × R): each row goes to one random bucket
    with a random coefficient in (-1, 1), so that, with K ≥ 4R buckets filled, rank(S W) =
    rank(W) with probability one (Clarkson and Woodruff 2013, with continuous coefficients)."""
    rng = np.random.default_rng([part, 20261201])
    n = reps.shape[1]  # reps: R × n
    bucket = rng.integers(0, buckets, size=n)
    sign = rng.uniform(-1.0, 1.0, size=n)
    projection = sparse.csr_matrix((sign, (bucket, np.arange(n))), shape=(buckets, n))
    return np.asarray(projection @ reps.T)


# --------------------------------------------------------------------------------------------
# Reduce
# --------------------------------------------------------------------------------------------


def combine(parts: list[Sums], plan: SumsPlan) -> Sums:
    """Add partial sums: group the stacked tables by their keys (the reduce step)."""
    parts = [p for p in parts if p is not None]
    if len(parts) == 1:
        return parts[0]
    keys = ([f"{_KEY_PREFIX}{i}" for i in range(len(plan.unit_keys))] + plan.calibration_keys
            + list(plan.by))
    stacked = pd.concat([p.table for p in parts], ignore_index=True)
    lo = min(p.weights_range[0] for p in parts)
    hi = max(p.weights_range[1] for p in parts)
    if not keys:
        table = stacked.sum().to_frame().T
        group = np.zeros(len(stacked), dtype=np.int64)
    else:
        grouped = stacked.groupby(keys, sort=False, dropna=False, observed=True)
        table = grouped.sum().reset_index()
        group = grouped.ngroup().to_numpy()
    if parts[0].replicates is None:
        return Sums(table, weights_range=(lo, hi))
    reps = np.concatenate([p.replicates for p in parts])
    reduced = np.zeros((len(table), reps.shape[1]))
    np.add.at(reduced, group, reps)
    sketch = sum(p.sketch for p in parts)
    gram = sum(p.gram for p in parts)
    return Sums(table, reduced, sketch, gram, (lo, hi),
                full_rank=any(p.full_rank for p in parts))


# --------------------------------------------------------------------------------------------
# Engines: run the map and the reduce
# --------------------------------------------------------------------------------------------


def _parquet_files(data) -> list[str]:
    """Parquet files of a path (file, directory, glob) or a list of them."""
    paths = data if isinstance(data, (list, tuple)) else [data]
    files = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(str(f) for f in p.rglob("*.parquet"))
        elif any(ch in str(p) for ch in "*?["):
            files += sorted(str(f) for f in Path(p.anchor or ".").glob(str(p.relative_to(p.anchor)))
                            ) if p.is_absolute() else sorted(str(f) for f in Path().glob(str(p)))
        elif p.exists():
            files.append(str(p))
        else:
            raise SurveyDesignError(f"{p}: no such Parquet file or directory")
    if not files:
        raise SurveyDesignError(f"{data}: no Parquet files found")
    return files


def _is_dask(data) -> bool:
    return type(data).__module__.startswith("dask")


def _sums_chunks(data, plan: SumsPlan, chunk_rows: int, threads: int | None = None) -> Sums:
    """``chunks`` engine: partitions mapped in this process (``threads`` at a time), reduced as
    they come. Parquet files that hold every needed column are read row group by row group,
    each in a worker thread that decodes its record batches (only the columns the plan reads)
    and maps them; other Parquet data are scanned by ``pyarrow.dataset`` and a frame in memory
    is split into chunks, mapped by the workers as they are read. The replicate weights go
    from Arrow to numpy without pandas."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    partial: list[Sums] = []

    def add(s):
        partial.append(s)
        if len(partial) >= 8:  # bounded memory: fold as we go
            partial[:] = [combine(partial, plan)]

    units = None
    if isinstance(data, pd.DataFrame):
        batches = (data.iloc[start:start + chunk_rows]
                   for start in range(0, max(len(data), 1), chunk_rows))
        mapper = _map_partition_unlimited
    else:
        files = _parquet_files(data)
        units = _row_group_units(files, plan, chunk_rows)
        if units is None:
            batches = _dataset_batches(files, plan, chunk_rows)
            mapper = map_arrow_batch
    workers = max(int(threads or 1), 1)
    part = 0
    # one BLAS thread per partition, set once for the whole engine (threadpoolctl's limits
    # are process-wide, so they are not entered and left by the worker threads)
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        if units is not None:
            part = sum(unit.batches for unit in units)
            if part:
                for sums in pool.map(lambda unit: _map_row_group(unit, plan), units):
                    add(sums)
        else:
            pending = []
            for batch in batches:
                pending.append(pool.submit(mapper, batch, plan, part))
                part += 1
                while len(pending) > workers:  # at most workers + 1 batches in memory
                    add(pending.pop(0).result())
            for future in pending:
                add(future.result())
    if part == 0:
        raise SurveyDesignError(f"{plan.source}: the Parquet data have no rows")
    return combine(partial, plan)


#: Rows per Arrow record batch read from Parquet by the ``chunks`` engine (at most
#: ``chunk_rows``): a row group is decoded page by page into batches of this size, so the
#: buffers are small and reused (reading a 500,000-row row group at once costs about twice
#: the CPU).
PARQUET_BATCH_ROWS = 65_536


@dataclass
class _RowGroup:
    """One row group of a Parquet file, read and mapped by one worker of the chunks engine."""

    path: str
    metadata: object  # the file's pyarrow FileMetaData (not read again by the worker)
    index: int
    batch_rows: int
    first_part: int  # partition number of its first record batch (numbered across the data)
    batches: int


def _row_group_units(files: list[str], plan: SumsPlan, chunk_rows: int):
    """The row groups of the files as units of work, or None when some file lacks a column
    the plan reads (it comes from hive directory names, or is missing: a dataset scan then)."""
    import pyarrow.parquet as pq

    columns = set(plan.read_columns())
    size = max(1, min(int(chunk_rows), PARQUET_BATCH_ROWS))
    units, part = [], 0
    for f in files:
        reader = pq.ParquetFile(f)
        if not columns <= set(reader.schema_arrow.names):
            return None
        metadata = reader.metadata
        for index in range(metadata.num_row_groups):
            batches = -(-metadata.row_group(index).num_rows // size)
            units.append(_RowGroup(f, metadata, index, size, part, batches))
            part += batches
    return units


def _map_row_group(unit: _RowGroup, plan: SumsPlan) -> Sums | None:
    """Partial sums of one row group: its record batches decoded page by page (only the
    columns the plan reads) and mapped in turn, folded as they come (None when it is empty)."""
    import pyarrow.parquet as pq

    # memory-mapped: the pages are decompressed straight from the page cache (no copy first)
    reader = pq.ParquetFile(unit.path, metadata=unit.metadata, memory_map=True)
    parts = []
    batches = reader.iter_batches(batch_size=unit.batch_rows, row_groups=[unit.index],
                                  columns=plan.read_columns(), use_threads=False)
    for i, batch in enumerate(batches):
        parts.append(map_arrow_batch(batch, plan, unit.first_part + i))
        if len(parts) >= 8:
            parts[:] = [combine(parts, plan)]
    return combine(parts, plan) if parts else None


def _dataset_batches(files: list[str], plan: SumsPlan, chunk_rows: int):
    """Arrow record batches of the columns the plan reads, from a ``pyarrow.dataset`` scan
    (columns from hive directory names; a column missing from some files is null there)."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(files, format="parquet", partitioning="hive")
    _check_parquet_columns(dataset.schema.names, plan)
    return dataset.to_batches(columns=plan.read_columns(),
                              batch_size=max(1, min(int(chunk_rows), PARQUET_BATCH_ROWS)),
                              batch_readahead=1, fragment_readahead=1)


def _map_partition_unlimited(chunk, plan, part, replicate_arrays=None):
    return _map_partition(chunk, plan, part, replicate_arrays)


def _check_parquet_columns(available, plan: SumsPlan):
    missing_cols = [c for c in plan.read_columns() if c not in available]
    if missing_cols:
        raise SurveyDesignError(
            f"{plan.source}: column(s) {missing_cols[:5]} not found; columns are "
            f"{list(available)[:30]}"
        )


def map_arrow_batch(batch, plan: SumsPlan, part: int = 0) -> Sums:
    """:func:`map_partition` of an Arrow record batch: the replicate weight columns are taken
    as numpy arrays straight from Arrow (no pandas frame of R columns); the other columns go
    through pandas (categorical ``by`` columns stay dictionary-coded)."""
    replicate = plan.design.replicate_columns
    arrays = None
    if replicate:
        skip = set(replicate)
        arrays = [_arrow_to_numpy(batch.column(c)) for c in replicate]
        batch = batch.select([c for c in batch.schema.names if c not in skip])
    return _map_partition(batch.to_pandas(split_blocks=True), plan, part, arrays)


def _arrow_to_numpy(column) -> np.ndarray:
    """A numeric Arrow array as numpy (nulls as NaN); other types through pandas' coercion."""
    import pyarrow as pa

    t = column.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        if column.null_count:
            return column.to_numpy(zero_copy_only=False).astype(float)
        return column.to_numpy(zero_copy_only=False)
    return pd.to_numeric(column.to_pandas(), errors="coerce").to_numpy(dtype=float,
                                                                       na_value=np.nan)


def _sums_dask(data, plan: SumsPlan, scheduler=None, chunk_rows=DEFAULT_CHUNK_ROWS) -> Sums:
    """``dask`` engine: one delayed map per partition, then a tree of combines (fan-in 8)."""
    import dask
    import dask.dataframe as dd

    if isinstance(data, pd.DataFrame):
        ddf = dd.from_pandas(data[plan.read_columns()], chunksize=chunk_rows)
    elif _is_dask(data):
        ddf = data[plan.read_columns()]
    else:
        ddf = dd.read_parquet(_parquet_files(data), columns=plan.read_columns())
    parts = ddf.to_delayed()
    mapped = [dask.delayed(map_partition)(p, plan, i) for i, p in enumerate(parts)]
    while len(mapped) > 1:
        mapped = [dask.delayed(combine)(mapped[i:i + 8], plan) for i in range(0, len(mapped), 8)]
    with dask_client(scheduler) as client:
        if client is None:
            return mapped[0].compute()
        return client.compute(mapped[0]).result()


_LOCAL_CLUSTER = {}

#: Environment variable naming the Dask scheduler address for ``scheduler="auto"``.
SCHEDULER_ENV = "ANALYSIS_DASK_SCHEDULER"


def _running_on_cluster():
    """None when this code runs inside a Dask worker or with a default client (use it), else
    False."""
    try:
        from distributed import default_client, get_worker
    except ImportError:  # pragma: no cover
        return False
    try:
        get_worker()
        return None
    except ValueError:
        pass
    try:
        default_client()
        return None
    except ValueError:
        return False


@contextmanager
def dask_client(scheduler=None):
    """The Dask client to run on: ``scheduler`` as an address, a client, ``"local"`` (a local
    cluster of 2 single-threaded workers, started once per process) or ``"auto"`` (the address
    in ``$ANALYSIS_DASK_SCHEDULER``, else the cluster this runs on, else local); ``None``: the
    cluster this code runs in (inside a task, e.g. a notebook the runner sent to a cluster), else
    the default client, else Dask's threaded scheduler (yields None)."""
    if scheduler == "auto":  # an address from the environment, else the cluster we run on,
        address = os.environ.get(SCHEDULER_ENV)  # else a local cluster
        scheduler = address or _running_on_cluster() or "local"
    if scheduler is None:
        try:
            from distributed import default_client, get_worker, worker_client
        except ImportError:  # pragma: no cover - distributed is a dependency
            yield None
            return
        try:
            get_worker()
        except ValueError:
            try:
                client = default_client()
            except ValueError:
                client = None
            yield client
            return
        with worker_client() as client:
            yield client
        return
    if isinstance(scheduler, str):
        from distributed import Client

        if scheduler == "local":
            if "client" not in _LOCAL_CLUSTER:
                from distributed import LocalCluster

                # threads, not processes: a notebook or script needs no __main__ guard, and
                # the map is numpy/pandas work that releases the GIL
                cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
                _LOCAL_CLUSTER["cluster"] = cluster
                _LOCAL_CLUSTER["client"] = Client(cluster, set_as_default=False)
            yield _LOCAL_CLUSTER["client"]
            return
        client = Client(scheduler, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
        return
    yield scheduler


# DuckDB ---------------------------------------------------------------------------------------


def _q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def _lit(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value))
    return "'" + str(value).replace("'", "''") + "'"


def _num(column: str) -> str:
    """A column as DOUBLE with NaN as NULL."""
    return f"NULLIF(TRY_CAST({_q(column)} AS DOUBLE), 'NaN'::DOUBLE)"


def _duckdb_source(data, con) -> str:
    if isinstance(data, pd.DataFrame):
        con.register("survey_frame", data)
        return "survey_frame"
    files = _parquet_files(data)
    listing = ", ".join(_lit(f) for f in files)
    return f"read_parquet([{listing}], hive_partitioning = true, union_by_name = true)"


def _duckdb_connect(memory_limit=None, threads=None):
    import duckdb

    config = {}
    if memory_limit:
        config["memory_limit"] = str(memory_limit)
    if threads:
        config["threads"] = int(threads)
    return duckdb.connect(config=config)


def _sums_duckdb(data, plan: SumsPlan, memory_limit=None, threads=None) -> Sums:
    """``duckdb`` engine: validation query, then one ``GROUP BY`` of every sum over the data."""
    con = _duckdb_connect(memory_limit, threads)
    try:
        return _duckdb_run(con, _duckdb_source(data, con), plan)
    finally:
        con.close()


def _duckdb_run(con, source: str, plan: SumsPlan) -> Sums:
    d = plan.design
    available = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    missing_cols = [c for c in plan.read_columns() if c not in available]
    if missing_cols:
        raise SurveyDesignError(
            f"{plan.source}: column(s) {missing_cols[:5]} not found; columns are {available[:30]}"
        )
    # 1. checks: missing design values, bad weights (counts, then where the first one is)
    checks = {}
    for column in [c for c in [d.strata, *d.psu, *d.fpc] if c]:
        checks[(column, "missing")] = f"{_q(column)} IS NULL"
    if d.weight:
        checks[(d.weight, "missing, negative or infinite")] = (
            f"({_num(d.weight)} IS NULL OR NOT isfinite({_num(d.weight)}) OR {_num(d.weight)} < 0)"
        )
    # 2. the sums
    w = _num(d.weight) if d.weight else "1.0"
    base = [f"{w} AS w__", "1.0 AS n_rows"]
    if plan.domain in plan.recodes:
        in_domain = f"({plan.recodes[plan.domain].sql()} IS NOT NULL)"
    elif plan.domain:
        in_domain = f"COALESCE(CAST({_q(plan.domain)} AS BOOLEAN), FALSE)"
    else:
        in_domain = None
    base.append("1.0 AS n_domain" if not in_domain
                else f"CASE WHEN {in_domain} THEN 1.0 ELSE 0.0 END AS n_domain")
    for j, q in enumerate(plan.quantities):
        if q.category is None:
            y = _num(q.column) if not q.shift else f"({_num(q.column)} - {_lit(q.shift)})"
        else:
            col = _q(q.column)
            y = f"CASE WHEN {col} IS NULL THEN NULL WHEN {col} = {_lit(q.category)} THEN 1.0 ELSE 0.0 END"
        cond = [f"({y}) IS NOT NULL"]
        if plan.ratio:
            cond.append(f"{_num(plan.denominator)} IS NOT NULL")
        if in_domain:
            cond.append(in_domain)
        present = " AND ".join(cond)
        checks[(f"m{j}", "incomplete")] = f"NOT ({present})"
        base.append(f"CASE WHEN {present} THEN 1.0 ELSE 0.0 END AS m{j}")
        base.append(f"CASE WHEN {present} THEN {y} ELSE 0.0 END AS y{j}")
        if plan.ratio:
            base.append(f"CASE WHEN {present} THEN {_num(plan.denominator)} ELSE 0.0 END AS x{j}")
    # one light pass: design columns, weights, and which quantities have rows left out (those
    # without need no replicate sums of their row indicator: the shared sum of w_r serves)
    select = ", ".join(f"count(*) FILTER (WHERE {cond})" for cond in checks.values())
    counts = con.execute(f"SELECT {select} FROM {source}").fetchone()
    incomplete = set()
    for (column, what), count in zip(checks, counts):
        if what == "incomplete":
            if count:
                incomplete.add(column)
        elif count:
            _duckdb_fail(con, source, plan, column, what, checks[(column, what)], count)
    keys = []
    for i, column in enumerate(plan.unit_keys):
        base.append(f"{_q(column)} AS {_KEY_PREFIX}{i}")
        keys.append(f"{_KEY_PREFIX}{i}")
    projections = d.projections
    for p, projection in enumerate(projections):
        base += [f"{_q(projection['codes'])} AS cal_{p}", f"{_num(projection['basis'])} AS cb{p}__",
                 f"{_num(projection['reading'])} AS cr{p}__"]
        keys.append(f"cal_{p}")
    for column in plan.by:
        expression = plan.recodes[column].sql() if column in plan.recodes else _q(column)
        base.append(f"{expression} AS {_q(column)}")
        keys.append(_q(column))
    reps = [f"{_num(c)} AS r{r}__" for r, c in enumerate(d.replicate_columns)]
    aggregates = ["sum(n_rows) AS n_rows", "sum(n_domain) AS n_domain"]
    for p in range(len(projections)):  # calibration sums (SumsPlan.calibration_sum_columns)
        aggregates.append(f"sum(cb{p}__) AS b{p}")
        aggregates += [f"sum(cr{p}__ * cb{q}__) AS rb{p}_{q}" for q in range(len(projections))]
        for j in range(len(plan.quantities)):
            aggregates += [f"sum(cr{p}__ * w__ * m{j} * y{j}) AS cy{p}_{j}",
                           f"sum(cr{p}__ * w__ * m{j}) AS cw{p}_{j}"]
            if plan.ratio:
                aggregates.append(f"sum(cr{p}__ * w__ * m{j} * x{j}) AS cx{p}_{j}")
    for j in range(len(plan.quantities)):
        aggregates += [
            f"sum(m{j}) AS c{j}", f"sum(CASE WHEN w__ > 0 THEN m{j} ELSE 0.0 END) AS p{j}",
            f"sum(w__ * m{j}) AS w{j}", f"sum(w__ * m{j} * y{j}) AS y{j}",
            f"sum(w__ * m{j} * y{j} * y{j}) AS yy{j}",
        ]
        if plan.ratio:
            aggregates.append(f"sum(w__ * m{j} * x{j}) AS x{j}")
        if plan.element:
            aggregates += [
                f"sum(w__ * w__ * m{j}) AS ww{j}", f"sum(w__ * w__ * m{j} * y{j}) AS wwy{j}",
                f"sum(w__ * w__ * m{j} * y{j} * y{j}) AS wwyy{j}",
            ]
            if plan.ratio:
                aggregates += [
                    f"sum(w__ * w__ * m{j} * x{j}) AS wwx{j}",
                    f"sum(w__ * w__ * m{j} * x{j} * y{j}) AS wwxy{j}",
                    f"sum(w__ * w__ * m{j} * x{j} * x{j}) AS wwxx{j}",
                ]
    rep_columns = []
    n_rep = len(d.replicate_columns)
    if d.is_replicate:
        for r in range(n_rep):  # replicate weights checked in the same pass
            aggregates += [f"min(r{r}__) AS rmin{r}__", f"max(r{r}__) AS rmax{r}__",
                           f"count(r{r}__) AS rn{r}__"]
        shared = False
        for j in range(len(plan.quantities)):
            pairs = [("y", f"y{j}")]
            if plan.statistic == "ratio":
                pairs.append(("x", f"x{j}"))
            elif plan.statistic != "total":
                if f"m{j}" in incomplete:
                    pairs.append(("x", f"m{j}"))
                else:
                    pairs.append(("x", None))
                    shared = True
            for kind, value in pairs:
                for r in range(n_rep):
                    if value is None:
                        rep_columns.append(f"rw_{r}")
                        continue
                    name = f"r{kind}{j}_{r}"
                    aggregates.append(f"sum(r{r}__ * {value}) AS {name}")
                    rep_columns.append(name)
        if shared:
            aggregates += [f"sum(r{r}__) AS rw_{r}" for r in range(n_rep)]
    wrange = "min(w__) AS w_min__, max(w__) AS w_max__"
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    sql = (
        f"WITH base AS (SELECT {', '.join(base + reps)} FROM {source}) "
        f"SELECT {', '.join(keys + aggregates)}, {wrange} FROM base{group}"
    )
    table = con.execute(sql).df()
    lo, hi = float(table["w_min__"].min()), float(table["w_max__"].max())
    table = table.drop(columns=["w_min__", "w_max__"])
    if not d.is_replicate:
        return Sums(table, weights_range=(lo, hi))
    total_rows = float(table["n_rows"].sum())
    for r, column in enumerate(d.replicate_columns):
        low, high = table[f"rmin{r}__"].min(), table[f"rmax{r}__"].max()
        if table[f"rn{r}__"].sum() < total_rows or not (low >= 0) or not np.isfinite(high):
            condition = (f"({_num(column)} IS NULL OR NOT isfinite({_num(column)}) "
                         f"OR {_num(column)} < 0)")
            count = con.execute(f"SELECT count(*) FILTER (WHERE {condition}) FROM {source}").fetchone()
            _duckdb_fail(con, source, plan, column, "replicate", condition, count[0])
    replicates = table[rep_columns].to_numpy(dtype=float)
    table = table.drop(columns=list(dict.fromkeys(rep_columns))
                       + [f"{k}{r}__" for r in range(n_rep) for k in ("rmin", "rmax", "rn")])
    # replicate sums are laid out (quantity value, replicate), as the pandas map lays them out
    n_total = int(table["n_rows"].sum())
    if n_total <= EXACT_GRAM_ROWS:
        reps = con.execute(
            f"SELECT {', '.join(_num(c) for c in d.replicate_columns)} FROM {source}"
        ).fetchnumpy()
        reps = np.column_stack([np.asarray(v, dtype=float) for v in reps.values()])
        sketch, gram = np.zeros((plan.sketch_buckets, n_rep)), reps.T @ reps
    elif _full_rank_from_totals(replicates, n_rep):  # rank known: no pass for the sketch
        sketch, gram = np.zeros((plan.sketch_buckets, n_rep)), np.zeros((n_rep, n_rep))
    else:
        sketch = _duckdb_sketch(con, source, d, plan.sketch_buckets, n_rep)
        gram = np.zeros((n_rep, n_rep))
    return Sums(table, replicates, sketch, gram, (lo, hi))


def _full_rank_from_totals(replicates: np.ndarray, n_rep: int) -> bool:
    """True when the replicate totals already have rank R: they are A W for the n × R replicate
    weights W, so rank(W) = R too and the design's df is R − 1 without a sketch."""
    totals = replicates.reshape(-1, n_rep)
    if totals.shape[0] < n_rep:
        return False
    return int(np.linalg.matrix_rank(totals.T @ totals, tol=None)) == n_rep


def _duckdb_sketch(con, source, d, buckets, n_rep) -> np.ndarray:
    """The count sketch of the replicate weights in SQL: bucket and coefficient from a hash of
    each row's position (file and row number, or the row number of a registered frame)."""
    parquet = source.startswith("read_parquet")
    position = "hash(filename, file_row_number)" if parquet else "hash(row_number() OVER ())"
    if parquet:
        source = source[:-1] + ", filename = true, file_row_number = true)"
    sums = ", ".join(f"sum(s__ * {_num(c)})" for c in d.replicate_columns)
    sql = (
        f"WITH h AS (SELECT *, {position} AS h__ FROM {source}), "
        f"s AS (SELECT *, (h__ % {buckets}) AS b__, "
        f"((h__ // {buckets}) % 1000003) / 500001.5 - 1.0 AS s__ FROM h) "
        f"SELECT b__, {sums} FROM s GROUP BY b__"
    )
    rows = con.execute(sql).fetchnumpy()
    out = np.zeros((buckets, n_rep))
    values = np.column_stack([rows[k] for k in list(rows)[1:]])
    out[rows["b__"].astype(np.int64)] = values
    return out


def _duckdb_fail(con, source, plan, column, what, condition, count):
    if source.startswith("read_parquet"):
        src = source[:-1] + ", filename = true, file_row_number = true)"
        where = con.execute(
            f"SELECT filename, file_row_number FROM {src} WHERE {condition} LIMIT 1"
        ).fetchone()
        place = f"(first in {where[0]}, row {where[1]})"
    else:
        place = ""
    if what == "replicate":
        raise SurveyDesignError(
            f"{plan.source}: replicate weight column {column!r} has {count} missing, negative or "
            f"infinite value(s) {place}; replicate weights must be finite and non-negative"
        )
    raise SurveyDesignError(
        f"{plan.source}: design column {column!r} has {count} {what} value(s) {place}; {_FIX[what]}"
    )


# --------------------------------------------------------------------------------------------
# Schema discovery (indicator types and categories) per engine
# --------------------------------------------------------------------------------------------


def _column_kinds(data, columns: list[str], con=None) -> dict[str, str]:
    """'numeric' or 'other' for each column, read from the schema (no pass over the data)."""
    if isinstance(data, pd.DataFrame) or _is_dask(data):
        out = {}
        for c in columns:
            if c not in data.columns:
                raise SurveyDesignError(
                    f"column {c!r} not found; columns are {list(data.columns)[:30]}"
                )
            dtype = data[c].dtype
            numeric = pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype)
            out[c] = "numeric" if numeric else "other"
        return out
    import pyarrow as pa
    import pyarrow.dataset as ds

    schema = ds.dataset(_parquet_files(data), format="parquet", partitioning="hive").schema
    out = {}
    for c in columns:
        if c not in schema.names:
            raise SurveyDesignError(f"column {c!r} not found; columns are {schema.names[:30]}")
        t = schema.field(c).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
        out[c] = "numeric" if numeric else "other"
    return out


def _categories(data, column: str, engine: str) -> list:
    """Categories of a column (categorical order when known, else sorted distinct values)."""
    if isinstance(data, pd.DataFrame) or _is_dask(data):
        series = data[column]
        if isinstance(series.dtype, pd.CategoricalDtype) and (
            not _is_dask(data) or series.cat.known
        ):
            return list(series.dtype.categories)
        values = series.dropna().unique()
        if _is_dask(data):
            values = values.compute()
        return sorted(pd.unique(np.asarray(values, dtype=object)), key=str)
    if engine == "duckdb":
        con = _duckdb_connect()
        try:
            src = _duckdb_source(data, con)
            rows = con.execute(
                f"SELECT DISTINCT {_q(column)} FROM {src} WHERE {_q(column)} IS NOT NULL"
            ).fetchall()
        finally:
            con.close()
        return sorted((r[0] for r in rows), key=str)
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    dataset = ds.dataset(_parquet_files(data), format="parquet", partitioning="hive")
    seen = set()
    for batch in dataset.to_batches(columns=[column]):
        seen.update(v for v in pc.unique(batch.column(0)).to_pylist() if v is not None)
    return sorted(seen, key=str)


def _by_categories(data, by, categories) -> dict[str, list]:
    """Category order of each ``by`` column: given, or from a categorical dtype."""
    out = {}
    for column in by:
        if not (isinstance(data, pd.DataFrame) or _is_dask(data)) and not (
            categories and column in categories
        ):
            continue
        if categories and column in categories:
            out[column] = list(categories[column])
        elif isinstance(data[column].dtype, pd.CategoricalDtype) and (
            not _is_dask(data) or data[column].cat.known
        ):
            out[column] = list(data[column].dtype.categories)
    return out


# --------------------------------------------------------------------------------------------
# Variance and estimates from the reduced table
# --------------------------------------------------------------------------------------------


def _replicate_parameters(d: DesignColumns, n_rep: int) -> tuple[float, np.ndarray, str]:
    """Scale, rscales and canonical method of a replicate design, as
    :meth:`analysis.survey.SurveyDesign._build_replicates` (R's ``svrepdesign`` defaults)."""
    method = survey._REPLICATE_ALIASES.get(str(d.replicate_method).lower())
    if method is None:
        raise SurveyDesignError(
            f"replicate_method={d.replicate_method!r}; use one of {list(survey.REPLICATE_METHODS)}"
        )
    if method == "fay" and d.fay_rho is None:
        raise SurveyDesignError("replicate_method='fay' needs fay_rho (e.g. 0.3 or 0.5)")
    default_scale = {
        "jk1": (n_rep - 1) / n_rep, "jkn": 1.0, "brr": 1.0 / n_rep,
        "fay": 1.0 / (n_rep * (1 - (d.fay_rho or 0.0)) ** 2),
        "bootstrap": 1.0 / max(n_rep - 1, 1), "sdr": 4.0 / n_rep, "other": None,
    }[method]
    scale = d.replicate_scale if d.replicate_scale is not None else default_scale
    if scale is None:
        raise SurveyDesignError("replicate_method='other' needs replicate_scale")
    if d.replicate_rscales is None:
        if method == "jkn":
            raise SurveyDesignError(
                "replicate_method='jkn' needs replicate_rscales ((n_h - 1)/n_h per replicate)"
            )
        rscales = np.ones(n_rep)
    else:
        rscales = np.asarray(d.replicate_rscales, dtype=float)
    if rscales.shape != (n_rep,):
        raise SurveyDesignError(f"replicate_rscales has {rscales.size} values for {n_rep} replicates")
    return float(scale), rscales, method


@dataclass
class _ElementStrata:
    """Stratum structure of a design without clusters (every row its own PSU)."""

    index: np.ndarray  # stratum of each table row
    n_h: np.ndarray  # rows in each stratum
    coef: np.ndarray
    centre: np.ndarray
    lonely_average: np.ndarray
    weight: np.ndarray | None  # weight of a row of each stratum when derived from the fpc
    has_fpc: bool


def _element_strata(table: pd.DataFrame, plan: SumsPlan) -> _ElementStrata:
    """n_h, fpc and lonely-row handling per stratum, as SurveyDesign's stage 1 with unit = row."""
    d = plan.design
    key_cols = [f"{_KEY_PREFIX}{i}" for i in range(len(plan.unit_keys))]
    strat_col = key_cols[0] if d.strata else None
    if strat_col is None:
        index = np.zeros(len(table), dtype=np.int64)
        labels = np.array([None], dtype=object)
    else:
        index, labels = pd.factorize(table[strat_col], sort=True)
        index = index.astype(np.int64)
    n_strata = max(int(index.max()) + 1, 1) if len(index) else 1
    n_h = np.bincount(index, weights=table["n_rows"].to_numpy(), minlength=n_strata)
    fraction = np.zeros(n_strata)
    weight = None
    if d.fpc:
        fpc_col = key_cols[1] if d.strata else key_cols[0]
        values = table[fpc_col].to_numpy(dtype=float)
        per_stratum = np.zeros(n_strata)
        per_stratum[index[::-1]] = values[::-1]  # first value of each stratum
        is_popsize = bool(np.any(values > 1))
        if is_popsize and not np.all(values >= 1):
            raise SurveyDesignError("fpc mixes population sizes (>1) and fractions (<1); use one kind")
        popsize = per_stratum if is_popsize else n_h / per_stratum
        fraction = sampling_fractions(popsize, n_h, 1, lambda bad: f" (stratum {labels[bad]!r})")
        if not d.weight:
            weight = popsize / n_h
    coef, centre, lonely_average = stage_variance_terms(
        d.single_psu, n_h, fraction, 1.0,
        lambda lonely: (f"{int(lonely.sum())} {d.strata or 'strata'} group(s) have a single PSU at stage 1 "
                        f"(e.g. stratum {labels[int(np.flatnonzero(lonely)[0])]!r})"))
    return _ElementStrata(index, n_h, coef, centre, lonely_average, weight, bool(d.fpc))


def _skeleton(table: pd.DataFrame, plan: SumsPlan) -> tuple[SurveyDesign, np.ndarray, np.ndarray]:
    """The design rebuilt from the distinct sampling units of the reduced table (one row per
    unit): its stages, fpc and lonely-PSU handling are those of the full design, because they
    depend only on which units exist. Returns it, the finest unit of each table row and
    each table row's row of the skeleton."""
    d = plan.design
    key_cols = [f"{_KEY_PREFIX}{i}" for i in range(len(plan.unit_keys))]
    unit_of_row = table.groupby(key_cols, sort=False, dropna=False).ngroup().to_numpy()
    first = np.zeros(unit_of_row.max() + 1, dtype=np.int64)
    first[unit_of_row[::-1]] = np.arange(len(unit_of_row))[::-1]
    units = table.iloc[first]
    names = iter(key_cols)
    strata = units[next(names)].to_numpy() if d.strata else None
    clusters = [units[next(names)].to_numpy() for _ in d.psu]
    fpcs = [units[next(names)].to_numpy(dtype=float) for _ in d.fpc]
    skeleton = SurveyDesign(
        weights=None if (d.fpc and not d.weight) else np.ones(len(units)),
        strata=strata, clusters=clusters or None, fpc=fpcs or None, nest=d.nest,
        single_psu=d.single_psu,
        names={"weight": d.weight, "strata": d.strata, "psu": d.psu[0] if d.psu else None},
    )
    return skeleton, skeleton._row_unit[unit_of_row], unit_of_row


def estimates_from_sums(sums: Sums, plan: SumsPlan, *, ci="auto", level=0.95, margins=True,
                        categories=None, source=None, country=None, group=None,
                        covariance=False):
    """Estimates of every quantity in every cell (and margin) from the reduced sums.

    Returns the result schema plus ``deff``, ``cv``, ``n_missing`` and ``df``, row for row the
    layout of :func:`analysis.survey.estimate_by`. With ``covariance=True`` (cells without
    margins only) also the list, per quantity, of the covariance matrices of its cell estimates
    (as :func:`analysis.survey.cell_means_with_covariance`).
    """
    if covariance and margins:
        raise SurveyDesignError("covariances are of the cells of one crossing: use margins=False")
    d = plan.design
    table = sums.table.reset_index(drop=True)
    frame = table
    if categories:
        frame = table.copy()
        for column, cats in categories.items():
            if column in frame.columns:
                frame[column] = pd.Categorical(frame[column], categories=cats)
    cells = survey._build_cells(frame, list(plan.by), margins)
    fine = cells.fine
    aggregate = cells.aggregate
    statistic = plan.statistic
    ci_type = ("logit" if statistic == "proportion" else "t") if ci == "auto" else ci
    col = {name: table[name].to_numpy(dtype=float) for name in plan.sum_columns()}

    def cell_sum(values):
        return aggregate @ np.bincount(fine, weights=values, minlength=cells.n_fine)

    mode_info = None
    if d.is_replicate:
        n_rep = len(d.replicate_columns)
        scale, rscales, method = _replicate_parameters(d, n_rep)
        reps = sums.replicates.reshape(len(table), -1, n_rep)
        if sums.full_rank or _full_rank_from_totals(sums.replicates, n_rep):
            df_design = n_rep - 1
        else:
            gram = sums.gram + sums.sketch.T @ sums.sketch
            df_design = max(int(np.linalg.matrix_rank(gram, tol=None)) - 1, 0)
        mode_info = SimpleNamespace(
            is_replicate=True, replicate_method=method, replicate_scale=scale,
            replicate_weights=np.empty((0, n_rep)), fay_rho=d.fay_rho, mse=d.mse, df=df_design,
            sample_type=d.sample_type, weights=np.array(sums.weights_range),
        )
        unit_weight = None
    elif plan.element:
        strata = _element_strata(table, plan)
        unit_weight = None if strata.weight is None else strata.weight[strata.index]
        mode_info = SimpleNamespace(
            is_replicate=False, sample_type=d.sample_type, weights=np.array(sums.weights_range),
            has_strata=bool(d.strata), _clusters=[], _fpcs=list(d.fpc), _stages=[None],
            single_psu=d.single_psu,
        )
    else:
        skeleton, unit, unit_row = _skeleton(table, plan)
        n_units = skeleton._n_finest
        key = fine * n_units + unit
        derived = bool(d.fpc) and not d.weight
        unit_weight = skeleton.weights[unit_row] if derived else None
        mode_info = skeleton

        def unit_table(values):
            t = np.bincount(key, weights=values, minlength=cells.n_fine * n_units)
            return aggregate @ t.reshape(cells.n_fine, n_units)

        calibrated = _CalibrationTables(table, plan, fine, cells.n_fine, unit, n_units) \
            if d.projections else None

        def score_table(name, j):
            """Cell × unit totals of the weighted scores ``name`` (y, w or x) of quantity j,
            replaced by their calibration residuals for a calibrated design."""
            if calibrated is None:
                return unit_table(col[f"{name}{j}"])
            return aggregate @ calibrated.residual_table(col[f"{name}{j}"], col, name, j)

    if unit_weight is not None:  # weights derived from the fpc: the map summed with w = 1
        for name, values in col.items():
            if name.startswith(("ww",)):
                col[name] = values * unit_weight * unit_weight
            elif name[0] in "wxy":
                col[name] = values * unit_weight
        if isinstance(mode_info, SimpleNamespace):
            mode_info.weights = np.array([unit_weight.min(), unit_weight.max()])
    if isinstance(mode_info, SimpleNamespace):
        mode_info.describe_variance = lambda: SurveyDesign.describe_variance(mode_info)
    if d.calibration and d.calibration.get("description"):  # as CalibratedDesign says it
        plain = mode_info.describe_variance
        how = "replicates calibrated alike" if d.is_replicate else "SE from calibration residuals"
        text = f"; calibrated: {d.calibration['description']} ({how})"
        mode_info = SimpleNamespace(describe_variance=lambda: plain() + text)

    method = survey._method_string(mode_info, statistic, ci_type, level, plan.denominator)
    n_domain = cell_sum(col["n_domain"])
    pieces, covariances = [], []
    for j, q in enumerate(plan.quantities):
        n_present = cell_sum(col[f"c{j}"])
        n_positive = cell_sum(col[f"p{j}"])
        n_weighted = cell_sum(col[f"w{j}"])
        total_y = cell_sum(col[f"y{j}"])
        sum_wyy = cell_sum(col[f"yy{j}"])
        if statistic in ("mean", "proportion"):
            total_x = n_weighted
        elif statistic == "ratio":
            total_x = cell_sum(col[f"x{j}"])
        else:
            total_x = None
        with np.errstate(invalid="ignore", divide="ignore"):
            estimate = total_y if total_x is None else np.where(
                total_x != 0, total_y / total_x, np.nan)
            estimate = np.where(n_positive > 0, estimate, np.nan)
        safe = np.where(np.isfinite(estimate), estimate, 0.0)
        denom = None if total_x is None else np.where(total_x != 0, total_x, 1.0)
        if d.is_replicate:
            names = plan.replicate_sum_names()
            rep_y = aggregate @ _fine_rows(fine, cells.n_fine, reps[:, names.index(f"ry{j}")])
            if statistic == "total":
                thetas = rep_y
            else:
                rep_x = aggregate @ _fine_rows(fine, cells.n_fine, reps[:, names.index(f"rx{j}")])
                with np.errstate(invalid="ignore", divide="ignore"):
                    thetas = rep_y / rep_x
            centre = estimate if d.mse else thetas[:, rscales > 0].mean(axis=1)
            dev = thetas - centre[:, None]
            variance = scale * (dev * dev) @ rscales
            df = np.full(len(estimate), float(df_design))
            cov = None
            if covariance:
                cov = scale * (dev * rscales) @ dev.T
        elif plan.element:
            variance, df, cov = _element_variance(
                strata, fine, cells, col, j, statistic, safe, denom, covariance)
        else:
            cov = None
            unit_y = score_table("y", j)
            counts = unit_table(col[f"c{j}"])
            if statistic == "total":
                scores = unit_y
            else:
                unit_x = score_table("w" if statistic != "ratio" else "x", j)
                scores = (unit_y - safe[:, None] * unit_x) / denom[:, None]
            variance = skeleton._variance_of_unit_totals(scores, counts)
            df = survey._Engine._domain_df(SimpleNamespace(design=skeleton), counts)
            if covariance:
                cov = skeleton._covariance_of_unit_totals(np.nan_to_num(scores))
        variance = np.where(np.isfinite(estimate), variance, np.nan)
        # sums of the shifted values (y - shift): the design effect is unchanged by a shift
        deff = survey.design_effect(statistic, estimate, variance, n_positive, n_weighted, total_y, sum_wyy)
        result = survey._Estimates(
            estimate=estimate + q.shift, variance=variance, n_unweighted=n_positive,
            n_weighted=n_weighted, n_missing=n_domain - n_present, deff=deff, df=df,
        )
        pieces.append(survey._result_columns(cells, q.label, result, ci_type, level))
        if covariance:
            empty = ~np.isfinite(estimate)
            cov = np.array(cov, dtype=float)
            cov[empty, :] = np.nan
            cov[:, empty] = np.nan
            covariances.append(cov)
    table = survey._assemble(pieces, method, source, country, group)
    return (table, covariances) if covariance else table


class _CalibrationTables:
    """The cell-free parts of a calibrated design's residuals, from the reduced sums: each
    projection's cell of every table row, its basis by sampling unit and the cross tables
    ``Σ reading_p basis_q`` by (cell_p, cell_q) — what
    :meth:`analysis.weighting.Calibration.residual_unit_table` computes from the rows."""

    def __init__(self, table, plan, fine, n_fine, unit, n_units):
        from analysis import weighting

        d = plan.design
        self.fine, self.n_fine, self.unit, self.n_units = fine, n_fine, unit, n_units
        self.codes, projections = [], []
        for p, projection in enumerate(d.projections):
            denominator = np.asarray(projection["denominator"], dtype=float)
            codes = table[f"cal_{p}"].to_numpy()
            if pd.isna(codes).any() or not np.all(np.isin(codes, np.arange(len(denominator)))):
                raise SurveyDesignError(
                    f"{plan.source}: calibration column {projection['codes']!r} needs cell codes "
                    f"0..{len(denominator) - 1} in every row"
                )
            self.codes.append(codes.astype(np.int64))
            projections.append(weighting.Projection(None, len(denominator), None, None,
                                                    denominator))
        self.calibration = weighting.Calibration(tuple(projections),
                                                 tuple(d.calibration["schedule"]))
        n = len(projections)
        self.basis_by_unit = [
            np.bincount(self.codes[p] * n_units + unit, weights=table[f"b{p}"].to_numpy(float),
                        minlength=projections[p].n_cells * n_units
                        ).reshape(projections[p].n_cells, n_units)
            for p in range(n)
        ]
        self.cross = {
            (p, q): np.bincount(
                self.codes[p] * projections[q].n_cells + self.codes[q],
                weights=table[f"rb{p}_{q}"].to_numpy(float),
                minlength=projections[p].n_cells * projections[q].n_cells,
            ).reshape(projections[p].n_cells, projections[q].n_cells)
            for p in range(n) for q in range(n)
        }

    def residual_table(self, values, col, name, j) -> np.ndarray:
        """Fine cell × unit totals of the calibration residuals of ``values`` (a sum column of
        quantity j: ``name`` y, w or x), as ``Calibration.residual_unit_table``."""
        n_fine, n_units = self.n_fine, self.n_units
        out = np.bincount(self.fine * n_units + self.unit, weights=values,
                          minlength=n_fine * n_units).reshape(n_fine, n_units)
        sums = [
            np.bincount(codes * n_fine + self.fine, weights=col[f"c{name}{p}_{j}"],
                        minlength=proj.n_cells * n_fine).reshape(proj.n_cells, n_fine)
            for p, (codes, proj) in enumerate(zip(self.codes, self.calibration.projections))
        ]
        coefficients = self.calibration._coefficients(sums, cross=self.cross)
        for a, basis in zip(coefficients, self.basis_by_unit):
            out -= a.T @ basis
        return out


def _fine_rows(fine, n_fine, values) -> np.ndarray:
    """Sum table rows (values: rows × R) into fine cells: n_fine × R."""
    indicator = sparse.csr_matrix(
        (np.ones(len(fine)), (fine, np.arange(len(fine)))), shape=(n_fine, len(fine))
    )
    return np.asarray(indicator @ values)


def _element_variance(strata: _ElementStrata, fine, cells, col, j, statistic, safe, denom,
                      covariance=False):
    """Stratified with-replacement variance when every row is a PSU, from squared-term sums.

    For cell c and stratum h: ``Σ_i z_i = (S_wy − θ S_wx) / X`` and ``Σ_i z_i² =
    (S_w²y² − 2θ S_w²xy + θ² S_w²x²) / X²`` (mean: x = 1; total: θ = 0, X = 1), then
    ``V = Σ_h coef_h (Σ z² − centre_h (Σ z)² / n_h)`` with the lonely-stratum options of
    :class:`~analysis.survey.SurveyDesign`. Covariances (disjoint cells, so no row has a score in
    two cells): ``C_cd = −Σ_h coef_h centre_h Σz_c Σz_d / n_h`` off the diagonal.
    """
    n_strata = len(strata.n_h)
    key = fine * n_strata + strata.index

    def table(values):
        t = np.bincount(key, weights=values, minlength=cells.n_fine * n_strata)
        return cells.aggregate @ t.reshape(cells.n_fine, n_strata)

    s_y, s_yy = table(col[f"y{j}"]), table(col[f"wwyy{j}"])
    counts = table(col[f"c{j}"])
    if statistic == "total":
        sum_z, sum_zz = s_y, s_yy
    else:
        if statistic == "ratio":
            s_x, s_xy, s_xx = table(col[f"x{j}"]), table(col[f"wwxy{j}"]), table(col[f"wwxx{j}"])
        else:
            s_x, s_xy, s_xx = table(col[f"w{j}"]), table(col[f"wwy{j}"]), table(col[f"ww{j}"])
        t = safe[:, None]
        d = denom[:, None]
        sum_z = (s_y - t * s_x) / d
        sum_zz = (s_yy - 2 * t * s_xy + t * t * s_xx) / (d * d)
    within = sum_zz - strata.centre * sum_z * sum_z / strata.n_h
    variance = within @ strata.coef
    if strata.lonely_average.any():
        present = counts > 0
        n_present = present.sum(axis=1)
        n_ok = (present & ~strata.lonely_average).sum(axis=1)
        variance = variance * np.where(n_ok > 0, n_present / np.maximum(n_ok, 1), np.nan)
    cov = None
    if covariance:
        cov = -(sum_z * (strata.coef * strata.centre / strata.n_h)) @ sum_z.T
        np.fill_diagonal(cov, within @ strata.coef)
        if strata.lonely_average.any():  # as SurveyDesign._covariance_of_unit_totals
            n_ok = int((~strata.lonely_average).sum())
            cov = cov * (len(strata.n_h) / n_ok if n_ok else np.nan)
    variance = np.maximum(variance, 0.0)
    n_psu = counts.sum(axis=1)
    df = (n_psu - (counts > 0).sum(axis=1)).astype(float)
    return variance, df, cov


# --------------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------------


def _quantities(data, indicators, statistic, engine) -> list[Quantity]:
    kinds = _column_kinds(data, list(indicators))
    out = []
    for name in indicators:
        if kinds[name] == "numeric":
            out.append(Quantity(name, name))
            continue
        if statistic != "proportion":
            raise SurveyDesignError(
                f"indicator {name!r} is not numeric; use statistic='proportion' for the share in "
                "each of its categories, or recode it to numbers"
            )
        for category in _categories(data, name, engine):
            out.append(Quantity(f"{name}={category}", name, category))
    return out


#: Values read (first non-missing ones) for the pilot value of each mean's shifted sums.
PILOT_VALUES = 1000

#: Shift a mean's sums when its pilot mean is this many pilot SDs from zero (rounding lost to
#: raw moments ~ eps × (mean/SD)²: 16 SDs lose under 1e-13 of a variance).
SHIFT_WHEN_MEAN_OVER_SD = 16.0


def _pilot_shifts(data, quantities: list[Quantity]) -> list[Quantity]:
    """Each numeric mean's quantity with a pilot value: the mean of its first (up to
    :data:`PILOT_VALUES`) non-missing values.

    Why: without clusters the variance comes from raw moments (``Σ w²y²`` against
    ``(Σ w y)²``), which cancel catastrophically when the mean is large against the SD (mean
    1e9, SD 1: eps × 1e18 ≫ 1). The map sums ``y − c`` instead (the shifted-data algorithm;
    Chan, Golub and LeVeque 1983); the mean's scores ``y − μ`` do not change with the shift,
    so every variance is the same in exact arithmetic and the estimate is ``c + Σ w (y − c) /
    Σ w``. The rounding lost to raw moments is about eps × (mean / SD)², so a variable is
    shifted only when its pilot values' mean exceeds :data:`SHIFT_WHEN_MEAN_OVER_SD` times
    their SD (and they are not all 0/1: indicators keep exact zero variances in constant cells,
    as in memory). Totals and ratios are not shift-invariant and keep their raw sums.
    """
    numeric = list(dict.fromkeys(q.column for q in quantities if q.category is None))
    if not numeric:
        return quantities
    if isinstance(data, pd.DataFrame):
        head = {c: data[c].iloc[:10 * PILOT_VALUES] for c in numeric}
    elif _is_dask(data):
        first = data[numeric].head(10 * PILOT_VALUES, npartitions=1)
        head = {c: first[c] for c in numeric}
    else:
        first = _parquet_head(_parquet_files(data), numeric, 10 * PILOT_VALUES)
        head = {c: first[c] for c in numeric}
    pilots = {}
    for column, values in head.items():
        values = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        values = values[np.isfinite(values)][:PILOT_VALUES]
        binary = bool(np.isin(values, (0.0, 1.0)).all())
        if len(values) and not binary and (
                abs(values.mean()) > SHIFT_WHEN_MEAN_OVER_SD * values.std()):
            pilots[column] = float(values.mean())
        else:
            pilots[column] = 0.0
    return [dataclasses.replace(q, shift=pilots[q.column]) if q.category is None else q
            for q in quantities]


def _parquet_head(files: list[str], columns: list[str], rows: int) -> pd.DataFrame:
    """The first ``rows`` rows of ``columns`` of the Parquet files (in order), decoded page by
    page from the first files (a dataset scan when a column is not in every file read)."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    batches, count = [], 0
    for f in files:
        reader = pq.ParquetFile(f)
        if not set(columns) <= set(reader.schema_arrow.names):
            dataset = ds.dataset(files, format="parquet", partitioning="hive")
            return dataset.head(rows, columns=columns).to_pandas()
        for batch in reader.iter_batches(batch_size=rows - count, columns=columns):
            batches.append(batch)
            count += batch.num_rows
            break
        if count >= rows:
            break
    if not batches:
        return pd.DataFrame({c: [] for c in columns})
    return pd.concat([b.to_pandas() for b in batches], ignore_index=True)[columns]


def _design_spec(data, design):
    if isinstance(design, SurveyDesign):
        if not isinstance(data, pd.DataFrame):
            raise SurveyDesignError(
                "an in-memory SurveyDesign needs its pandas frame; for Parquet or Dask data "
                "describe the design by columns with survey_sums.DesignColumns(...)"
            )
        return design_columns_from(data, design)
    if isinstance(design, dict):
        return data, DesignColumns.from_spec(design)
    if isinstance(design, DesignColumns):
        return data, design
    if design is None and isinstance(data, pd.DataFrame) and data.attrs.get("design"):
        return data, DesignColumns.from_spec(data.attrs["design"])
    raise SurveyDesignError(
        "design must be a SurveyDesign (with a pandas frame), a DesignColumns or a design spec dict"
    )


def estimate_by_sums(
    data,
    design,
    indicators,
    by=(),
    margins: bool = True,
    statistic: str = "mean",
    *,
    engine: str = "duckdb",
    denominator: str | None = None,
    ci: str = "auto",
    level: float = 0.95,
    domain=None,
    source: str | None = None,
    country: str | None = None,
    group: str | None = None,
    categories: dict | None = None,
    scheduler=None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    memory_limit: str | None = None,
    threads: int | None = None,
    recodes: dict | None = None,
    covariance: bool = False,
):
    """:func:`analysis.survey.estimate_by` as one pass of partition sums.

    Parameters
    ----------
    data : DataFrame, dask DataFrame, or path(s) to Parquet (file, directory of a partitioned
        dataset, glob, or a list)
    design : DesignColumns, design spec dict, or SurveyDesign (with a pandas frame)
    indicators, by, margins, statistic, denominator, ci, level, source, country, group
        As :func:`analysis.survey.estimate_by`. ``domain`` is a boolean column name (or, with a
        pandas frame, a mask).
    engine : {"chunks", "dask", "duckdb"}
    categories : dict, optional
        Category order of ``by`` columns (default: a categorical dtype's order, else sorted).
    scheduler : str or distributed.Client, optional
        Dask engine: a scheduler address or client (default: the current client, or threads).
    chunk_rows : int
        Rows per partition when a pandas frame is split (chunks, dask) or Parquet is batched.
    memory_limit, threads
        DuckDB settings (e.g. ``"4GB"``), for one machine with little memory; ``threads`` is
        also the number of partitions the ``chunks`` engine maps at a time (default 1).
    recodes : dict of name -> :class:`Recode`, optional
        Derived columns usable in ``by`` and as ``domain`` (rows where it is not NA).
    covariance : bool
        Also return, per estimated quantity, the covariance matrix of its cell estimates
        (``margins=False``), as :func:`analysis.survey.cell_means_with_covariance`.

    Returns
    -------
    DataFrame, or (DataFrame, list of arrays) with ``covariance=True``.
    """
    if engine not in ENGINES:
        raise SurveyDesignError(f"engine={engine!r}; use 'pandas' or one of {list(ENGINES)}")
    if statistic not in survey.STATISTICS:
        raise SurveyDesignError(f"statistic={statistic!r}; use one of {list(survey.STATISTICS)}")
    if ci not in survey.CI_TYPES:
        raise SurveyDesignError(f"ci={ci!r}; use one of {list(survey.CI_TYPES)}")
    if statistic == "ratio" and not denominator:
        raise SurveyDesignError("statistic='ratio' needs denominator='<column>'")
    indicators = [indicators] if isinstance(indicators, str) else list(indicators)
    by = [by] if isinstance(by, str) else list(by)
    data, spec = _design_spec(data, design)
    if domain is not None and not isinstance(domain, str):
        if not isinstance(data, pd.DataFrame):
            raise SurveyDesignError("domain must be a column name for Parquet or Dask data")
        mask = pd.Series(domain).fillna(False).to_numpy(dtype=bool)
        if len(mask) != len(data):
            raise SurveyDesignError(f"domain mask has {len(mask)} values for {len(data)} rows")
        data = data.assign(**{".domain": mask})
        domain = ".domain"
    label = source or (str(data) if isinstance(data, (str, Path)) else "data")
    quantities = _quantities(data, indicators, statistic, engine)
    if statistic == "proportion":
        _check_binary(data, quantities, engine)
    if statistic == "mean":
        quantities = _pilot_shifts(data, quantities)
    n_rep = len(spec.replicate_columns)
    plan = SumsPlan(
        design=spec, by=by, quantities=quantities, statistic=statistic,
        denominator=denominator, domain=domain,
        sketch_buckets=max(_SKETCH_MIN_BUCKETS, 4 * n_rep) if n_rep else 0, source=label,
        recodes=dict(recodes or {}),
    )
    if spec.is_replicate:
        _replicate_parameters(spec, n_rep)  # fail early on an incomplete replicate design
    _check_calibration(spec)
    cats = _by_categories(data, [b for b in by if b not in plan.recodes], categories)
    if engine == "chunks":
        sums = _sums_chunks(data, plan, chunk_rows, threads)
    elif engine == "dask":
        sums = _sums_dask(data, plan, scheduler, chunk_rows)
    else:
        sums = _sums_duckdb(data, plan, memory_limit, threads)
    return estimates_from_sums(sums, plan, ci=ci, level=level, margins=margins, categories=cats,
                               source=source, country=country, group=group,
                               covariance=covariance)


survey.PARTITION_ENGINES.update(dict.fromkeys(ENGINES, estimate_by_sums))


def _check_binary(data, quantities, engine):
    """statistic='proportion' needs 0/1 values (a cheap check on numeric indicators)."""
    numeric = [q for q in quantities if q.category is None]
    if not numeric:
        return
    if isinstance(data, pd.DataFrame) or _is_dask(data):
        for q in numeric:
            v = data[q.column]
            bad = (~v.isin([0, 1]) & v.notna()).sum()
            bad = bad.compute() if _is_dask(data) else bad
            if bad:
                _not_binary(q)
        return
    con = _duckdb_connect()
    try:
        src = _duckdb_source(data, con)
        select = ", ".join(
            f"count(*) FILTER (WHERE {_num(q.column)} IS NOT NULL AND {_num(q.column)} NOT IN (0, 1))"
            for q in numeric
        )
        counts = con.execute(f"SELECT {select} FROM {src}").fetchone()
    finally:
        con.close()
    for q, count in zip(numeric, counts):
        if count:
            _not_binary(q)


def _not_binary(q):
    raise SurveyDesignError(
        f"indicator {q.label!r} has values other than 0/1; statistic='proportion' needs a binary "
        "indicator (or use statistic='mean')"
    )


@dataclass
class PartitionedSurvey:
    """A survey whose microdata live in partitioned Parquet (or a Dask frame), with its design.

    ``PartitionedSurvey(path, DesignColumns(...), engine="duckdb").estimate_by(...)`` is
    :func:`estimate_by_sums` with the data, design and engine remembered.
    """

    data: object
    design: DesignColumns
    engine: str = "duckdb"
    options: dict = field(default_factory=dict)

    def estimate_by(self, indicators, by=(), margins=True, statistic="mean", **kwargs):
        options = {**self.options, **kwargs}
        return estimate_by_sums(self.data, self.design, indicators, by, margins, statistic,
                                engine=self.engine, **options)

    def with_engine(self, engine: str, **options) -> PartitionedSurvey:
        return dataclasses.replace(self, engine=engine, options={**self.options, **options})


def default_threads() -> int:
    """Threads for DuckDB and Dask workers on this machine."""
    return max(os.cpu_count() or 1, 1)
