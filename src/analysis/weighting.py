"""Weighting a sample to official population margins: post-stratification and raking.

A survey weight ``w_i`` is the number of people in the population that respondent ``i``
stands for. Calibration changes the weights so that the weighted sample reproduces known
population counts (e.g. official counts by admin1 × sex × age group):

- **Post-stratification** (:func:`poststratify`): within each cell ``g`` of a crossing whose
  population count ``N_g`` is known, ``w_i ← w_i · N_g / Σ_{j∈g} w_j``.
- **Raking** (:func:`rake`, iterative proportional fitting): post-stratify on each one-way (or
  joint) margin in turn and repeat the sweep until the weighted table stops changing; used when
  only margins are known or the full crossing has empty sample cells.

Standard errors reflect the calibration as R's ``survey::postStratify`` and ``survey::rake`` do:
the returned design remembers each calibration step, and the design-based variance of a total
is computed from the residuals of the per-row scores after projecting out the calibration
variables (for post-stratification, the score minus its weighted mean in the post-stratum; for
raking, the backfitting of those projections over the margins of the last sweep). For a
replicate-weight design every replicate is calibrated the same way instead, as R does.

Weighting diagnostics: Kish's design effect due to unequal weighting
(:func:`kish_design_effect`), and a table comparing the sample's composition with the margins
before and after weighting (:func:`weighting_diagnostics`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.survey import SurveyDesign, design_for
from analysis.tables import join_cell

#: Names accepted for the count column of a population table (when it has one extra column
#: any name is accepted).
COUNT_COLUMN_NAMES = ("count", "population", "Freq", "freq", "N", "n")

#: R's ``rake()`` backfits the calibration projection for a fixed 10 sweeps in its variance
#: (``svyrecvar``); we do the same so that standard errors match R.
VARIANCE_BACKFIT_SWEEPS = 10


class WeightingError(ValueError):
    """The sample cannot be weighted to the given margins; the message says what to fix."""


# =============================================================================================
# Population margins and sample cells


@dataclass(frozen=True)
class Margin:
    """One population margin: the counts of the cells of ``columns``.

    Attributes
    ----------
    columns : tuple of str
        Sample columns whose crossing defines the cells.
    cells : DataFrame
        One row per population cell: the categories (as strings) of ``columns``.
    counts : ndarray
        Population count of each cell (non-negative).
    """

    columns: tuple[str, ...]
    cells: pd.DataFrame
    counts: np.ndarray

    @property
    def name(self) -> str:
        return join_cell(self.columns)

    def labels(self) -> list[str]:
        return [join_cell(row) for row in self.cells.itertuples(index=False)]

    @property
    def total(self) -> float:
        return float(self.counts.sum())


def as_margin(columns, population, count_column: str | None = None, what: str = "margin") -> Margin:
    """Read population counts into a :class:`Margin`.

    Parameters
    ----------
    columns : str or sequence of str
        The sample column(s) the counts are classified by.
    population : DataFrame, Series or Margin
        A DataFrame with ``columns`` and one count column, or a Series of counts indexed by the
        categories (a MultiIndex for several columns); a :class:`Margin` is returned as is.
    count_column : str, optional
        Name of the count column; needed only when the DataFrame has more than one extra column.
    """
    columns = (columns,) if isinstance(columns, str) else tuple(columns)
    if isinstance(population, Margin):
        if population.columns != columns:
            raise WeightingError(
                f"{what}: margin is for {list(population.columns)}, not {list(columns)}"
            )
        return population
    if isinstance(population, pd.Series):
        frame = population.rename("count").reset_index()
        if list(frame.columns[:-1]) != list(columns):
            if len(columns) == frame.shape[1] - 1:
                frame.columns = [*columns, "count"]
            else:
                raise WeightingError(
                    f"{what}: counts for {list(columns)} are indexed by "
                    f"{list(population.index.names)}; index them by the margin's columns"
                )
        count_column = "count"
    elif isinstance(population, pd.DataFrame):
        frame = population
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise WeightingError(
                f"{what}: population table lacks column(s) {missing}; it has {list(frame.columns)}"
            )
        if count_column is None:
            extra = [c for c in frame.columns if c not in columns]
            named = [c for c in extra if c in COUNT_COLUMN_NAMES]
            if len(extra) == 1:
                count_column = extra[0]
            elif len(named) == 1:
                count_column = named[0]
            else:
                raise WeightingError(
                    f"{what}: cannot tell which column holds the population counts among {extra}; "
                    "pass count_column="
                )
        elif count_column not in frame.columns:
            raise WeightingError(
                f"{what}: count column {count_column!r} not in {list(frame.columns)}"
            )
    else:
        raise WeightingError(
            f"{what}: population counts must be a DataFrame or Series, "
            f"not {type(population).__name__}"
        )
    counts = pd.to_numeric(frame[count_column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(counts) | (counts < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise WeightingError(
            f"{what}: population count in column {count_column!r} row {row} is "
            f"{frame[count_column].iloc[row]}; counts must be non-negative numbers"
        )
    cells = frame[list(columns)].astype("string")
    if cells.isna().any().any():
        row = int(np.flatnonzero(cells.isna().any(axis=1).to_numpy())[0])
        raise WeightingError(
            f"{what}: population table row {row} has a missing category in {list(columns)}"
        )
    cells = cells.astype(str).reset_index(drop=True)
    duplicated = cells.duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise WeightingError(
            f"{what}: population cell {join_cell(cells.iloc[row])} appears more than once; "
            "give one count per cell"
        )
    return Margin(columns, cells, counts)


def _match_cells(frame: pd.DataFrame, margin: Margin, what: str):
    """Population cell of each sample row: ``(codes, absent)``.

    ``codes`` is -1 where the row's categories are not a population cell; ``absent`` marks rows
    missing a category. Works on the factorised columns (fast on a million rows).
    """
    missing = [c for c in margin.columns if c not in frame.columns]
    if missing:
        raise WeightingError(f"{what}: sample has no column(s) {missing}")
    combined = np.zeros(len(frame), dtype=np.int64)
    population = np.zeros(len(margin.counts), dtype=np.int64)
    absent = np.zeros(len(frame), dtype=bool)
    unknown = np.zeros(len(frame), dtype=bool)
    for column in margin.columns:
        codes, uniques = pd.factorize(frame[column], sort=False)
        categories = pd.Index(pd.unique(margin.cells[column]))
        position = categories.get_indexer(pd.Index([str(u) for u in uniques], dtype=object))
        absent |= codes < 0
        row_position = np.where(codes >= 0, position[np.maximum(codes, 0)], -1)
        unknown |= (row_position < 0) & (codes >= 0)
        size = len(categories)
        combined = combined * size + np.maximum(row_position, 0)
        population = population * size + categories.get_indexer(margin.cells[column])
    lookup = np.full(int(population.max()) + 1 if len(population) else 1, -1, dtype=np.int64)
    lookup[population] = np.arange(len(population))
    inside = combined < len(lookup)
    codes = np.full(len(frame), -1, dtype=np.int64)
    codes[inside] = lookup[combined[inside]]
    codes[absent | unknown] = -1
    return codes, absent


def _sample_codes(frame: pd.DataFrame, margin: Margin, what: str) -> np.ndarray:
    """Index of each sample row's population cell; clear errors for missing or unknown categories."""
    codes, absent = _match_cells(frame, margin, what)
    if absent.any():
        rows = np.flatnonzero(absent)
        column = next(c for c in margin.columns if frame[c].isna().to_numpy()[rows].any())
        raise WeightingError(
            f"{what}: column {column!r} is missing in {rows.size} sample row(s) (first rows "
            f"{list(frame.index[rows[:3]])}); every respondent needs a category to be weighted: "
            "impute it or exclude those rows with a counted reason first"
        )
    unknown = codes < 0
    if unknown.any():
        first = frame.loc[unknown, list(margin.columns)].astype(str).drop_duplicates()
        labels = [join_cell(r) for r in first.itertuples(index=False)][:5]
        raise WeightingError(
            f"{what}: sample categories {labels} of {margin.name} ({int(unknown.sum())} rows) are "
            "missing from the population margins; add their counts or recode them"
        )
    return codes


def _check_cells(codes, weights, margin: Margin, what: str) -> np.ndarray:
    """Sample weighted count of each population cell; errors for empty or impossible cells."""
    n_cells = len(margin.counts)
    sample_n = np.bincount(codes, minlength=n_cells)
    empty = (sample_n == 0) & (margin.counts > 0)
    if empty.any():
        labels = [margin.labels()[i] for i in np.flatnonzero(empty)[:5]]
        raise WeightingError(
            f"{what}: {int(empty.sum())} population cell(s) of {margin.name} have no respondents in "
            f"the sample (first {labels}, population {margin.counts[np.flatnonzero(empty)[0]]:g}); "
            "collapse those cells or rake to one-way margins instead"
        )
    impossible = (sample_n > 0) & (margin.counts == 0)
    if impossible.any():
        labels = [margin.labels()[i] for i in np.flatnonzero(impossible)[:5]]
        raise WeightingError(
            f"{what}: sample cell(s) {labels} of {margin.name} have respondents but a population "
            "count of 0; fix the population table or the sample's categories"
        )
    totals = np.bincount(codes, weights=weights, minlength=n_cells)
    nonpositive = (sample_n > 0) & ~(totals > 0)
    if nonpositive.any():
        labels = [margin.labels()[i] for i in np.flatnonzero(nonpositive)[:5]]
        raise WeightingError(f"{what}: the weights of sample cell(s) {labels} sum to 0")
    return totals


def _check_weights(weights, what: str) -> np.ndarray:
    weights = np.asarray(weights, dtype=float)
    bad = ~np.isfinite(weights) | (weights <= 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise WeightingError(
            f"{what}: weight of sample row {row} is {weights[row]!r}; weights must be positive numbers"
        )
    return weights


# =============================================================================================
# The calibration a design remembers (for its variance)


@dataclass(frozen=True)
class Projection:
    """One post-stratum projection of the calibration variance, as R's ``svyrecvar`` applies it.

    On weighted scores ``x`` (``x_i = w_i u_i``) it does

        x ← x − b ⊙ (S(x) / den)[g],   S(x)_g = Σ_{i: g_i = g} r_i x_i

    Post-stratification (R's ``postStratify``): ``b`` the weights after it, ``r`` = weights
    before / weights after, ``den`` the weights before summed by cell; this removes each cell's
    weighted mean of the scores. Raking margin (R's ``rake``): ``b`` the weights after that
    margin in the last sweep, ``r = 1 / b``, ``den`` the number of rows in the cell.
    """

    codes: np.ndarray
    n_cells: int
    basis: np.ndarray
    reading: np.ndarray
    denominator: np.ndarray

    def sums(self, x: np.ndarray) -> np.ndarray:
        """``S(x)`` for every column of ``x`` (n × k): n_cells × k."""
        weighted = x * self.reading[:, None]
        return np.stack(
            [np.bincount(self.codes, weights=col, minlength=self.n_cells) for col in weighted.T],
            axis=1,
        ).reshape(self.n_cells, x.shape[1])


@dataclass(frozen=True)
class Calibration:
    """The calibration a design went through, for its standard errors.

    The design-based variance of a calibrated estimator of ``Σ w_i u_i`` is the variance of
    ``Σ w_i e_i`` computed as if the weights had not been calibrated, where ``e`` are the
    residuals of the scores ``u`` after projecting out the calibration variables (Deville and
    Särndal 1992; R's ``svyrecvar``). The projections are linear, so every residual is
    ``x − Σ_p b_p ⊙ A_p[g_p]`` for coefficients ``A_p`` found by running the schedule on the
    small cell-level sums; this lets :meth:`residual_unit_table` give the residual totals of
    every cell of an intersection by sampling unit without forming an n × cells matrix.

    Attributes
    ----------
    projections : tuple of :class:`Projection`
    schedule : tuple of int
        Order in which the projections are applied (a raking's margins repeat for
        :data:`VARIANCE_BACKFIT_SWEEPS` passes, as in R).
    description : str
        E.g. ``"raked to stype; sch.wide (4 sweeps)"``; goes into each result's ``method``.
    """

    projections: tuple = ()
    schedule: tuple = ()
    description: str = ""

    def then(self, projections, schedule, description: str) -> Calibration:
        """This calibration followed by another step (indices of ``schedule`` are local)."""
        offset = len(self.projections)
        text = f"{self.description}; {description}" if self.description else description
        return Calibration(
            self.projections + tuple(projections),
            self.schedule + tuple(offset + k for k in schedule),
            text,
        )

    def _coefficients(self, initial_sums: list[np.ndarray], cross=None) -> list[np.ndarray]:
        """Run the schedule on cell sums: ``initial_sums[p] = S_p(x0)``; returns ``A_p``.
        ``cross``: the tables ``Σ reading_p basis_q`` by (cell_p, cell_q) when they come from
        elsewhere (the partition sums of :mod:`analysis.survey_sums`), else from the rows."""
        k = initial_sums[0].shape[1] if initial_sums else 0
        accumulated = [np.zeros((p.n_cells, k)) for p in self.projections]
        cross: dict[tuple[int, int], np.ndarray] = dict(cross or {})
        touched: list[int] = []
        for p in self.schedule:
            proj = self.projections[p]
            current = initial_sums[p].copy()
            for q in touched:
                key = (p, q)
                if key not in cross:
                    other = self.projections[q]
                    flat = np.bincount(
                        proj.codes * other.n_cells + other.codes,
                        weights=proj.reading * other.basis,
                        minlength=proj.n_cells * other.n_cells,
                    )
                    cross[key] = flat.reshape(proj.n_cells, other.n_cells)
                current -= cross[key] @ accumulated[q]
            step = current / np.where(proj.denominator > 0, proj.denominator, 1.0)[:, None]
            accumulated[p] += step
            if p not in touched:
                touched.append(p)
        return accumulated

    def residualise(self, x: np.ndarray) -> np.ndarray:
        """Calibration residuals of weighted scores ``x`` (n or n × k, ``x_i = w_i u_i``)."""
        x = np.asarray(x, dtype=float)
        vector = x.ndim == 1
        x2 = x.reshape(len(x), -1)
        if not self.projections:
            return x
        coefficients = self._coefficients([p.sums(x2) for p in self.projections])
        out = x2.copy()
        for proj, a in zip(self.projections, coefficients):
            out -= proj.basis[:, None] * a[proj.codes]
        return out[:, 0] if vector else out

    def residual_unit_table(self, values, cells, n_cells, units, n_units) -> np.ndarray:
        """Sampling-unit totals of the residuals of the scores of every cell of a crossing.

        For cell ``c`` the weighted scores are ``x_c = 1[cell = c] ⊙ values``; returns the
        ``n_cells × n_units`` table whose row ``c`` holds the totals, by sampling unit, of the
        calibration residuals of ``x_c`` (the table :class:`analysis.survey.SurveyDesign` turns
        into variances). ``cells`` and ``units`` are integer codes of each row.
        """
        values = np.asarray(values, dtype=float)
        table = np.bincount(
            cells * n_units + units, weights=values, minlength=n_cells * n_units
        ).reshape(n_cells, n_units)
        if not self.projections:
            return table
        sums = [
            np.bincount(
                p.codes * n_cells + cells, weights=p.reading * values, minlength=p.n_cells * n_cells
            ).reshape(p.n_cells, n_cells)
            for p in self.projections
        ]
        coefficients = self._coefficients(sums)
        for proj, a in zip(self.projections, coefficients):
            basis_by_unit = np.bincount(
                proj.codes * n_units + units, weights=proj.basis, minlength=proj.n_cells * n_units
            ).reshape(proj.n_cells, n_units)
            table -= a.T @ basis_by_unit
        return table


# =============================================================================================
# Calibrated designs


@dataclass
class CalibratedDesign(SurveyDesign):
    """A :class:`analysis.survey.SurveyDesign` whose weights were calibrated to margins.

    Taylor designs: ``calibration`` is applied to the weighted scores before the design-based
    variance (:meth:`total_covariance`; estimation code that builds sampling-unit tables itself
    uses :meth:`Calibration.residual_unit_table`). Replicate designs were calibrated replicate by
    replicate, as R does, and need nothing more (``calibration`` then only describes it).
    """

    calibration: Calibration | None = None

    def total_covariance(self, scores):
        scores = np.asarray(scores, dtype=float)
        if self.calibration is not None and not self.is_replicate and scores.shape[0] == self.n:
            scores = self.calibration.residualise(scores)
        return super().total_covariance(scores)

    def to_replicate(self, method: str = "jkn", mse: bool = False):
        """Refused: replicates made after calibration would not be calibrated themselves."""
        raise WeightingError(
            "to_replicate on a calibrated design would lose the calibration; convert the design "
            "before weighting (poststratify/rake then calibrate every replicate)"
        )

    def describe_variance(self) -> str:
        text = super().describe_variance()
        if self.calibration is not None and self.calibration.description:
            how = (
                "replicates calibrated alike"
                if self.is_replicate
                else "SE from calibration residuals"
            )
            text += f"; calibrated: {self.calibration.description} ({how})"
        return text


def _with_weights(design, weights, replicate_weights, calibration: Calibration) -> CalibratedDesign:
    """A copy of ``design`` with new (replicate) weights that remembers ``calibration``."""
    fields = {f.name: getattr(design, f.name) for f in dataclasses.fields(SurveyDesign) if f.init}
    fields["weights"] = weights
    if replicate_weights is not None:
        fields["replicate_weights"] = replicate_weights
    return CalibratedDesign(**fields, calibration=calibration)


def _previous_calibration(design) -> Calibration:
    return getattr(design, "calibration", None) or Calibration()


# =============================================================================================
# Post-stratification and raking


def _checked_design(frame: pd.DataFrame, design, what: str):
    if design is None:
        design = _default_design(frame)
    if len(frame) != design.n:
        raise WeightingError(
            f"{what}: frame has {len(frame)} rows but the design has {design.n}; build the design "
            "from this frame"
        )
    return design


def _default_design(frame: pd.DataFrame):
    """The design that travels with the frame, else equal weights (a non-probability sample)."""
    if frame.attrs.get("design"):
        return design_for(frame)
    return SurveyDesign(weights=np.ones(len(frame)), sample_type="non_probability")


def _cell_totals(codes: np.ndarray, n_cells: int, weights: np.ndarray) -> np.ndarray:
    """Weighted totals by cell of a weight vector (n,) or matrix (n × R): (n_cells,) or (n_cells × R)."""
    if weights.ndim == 1:
        return np.bincount(codes, weights=weights, minlength=n_cells)
    return np.stack(
        [np.bincount(codes, weights=col, minlength=n_cells) for col in weights.T], axis=1
    )


def _rescale_matrix(weights: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Post-stratify a weight vector or each column of a replicate-weight matrix:
    ``w_i · N_g / Σ_{j∈g} w_j`` (0 in a cell a replicate left empty)."""
    totals = _cell_totals(codes, len(counts), weights)
    counts = counts if weights.ndim == 1 else counts[:, None]
    factor = np.divide(counts, totals, out=np.zeros_like(totals, dtype=float), where=totals > 0)
    return weights * factor[codes]


def poststratify(
    frame: pd.DataFrame, design, strata_columns, population, *, count_column: str | None = None
) -> CalibratedDesign:
    """Post-stratify a design to known population counts (R's ``postStratify``).

    Within each population cell ``g`` of the crossing of ``strata_columns``,
    ``w_i ← w_i · N_g / Σ_{j∈g} w_j``, so the weighted sample reproduces the counts ``N_g``.
    Standard errors then use the residuals of each score from its weighted mean in the
    post-stratum (R's ``svyrecvar``), which removes the between-post-strata part of the
    variance; replicate designs post-stratify every replicate instead.

    Parameters
    ----------
    frame : DataFrame
        The sample, one row per respondent (the rows ``design`` was built from).
    design : SurveyDesign or None
        ``None``: the design in ``frame.attrs`` or, without one, equal weights.
    strata_columns : str or list of str
        Columns whose crossing defines the post-strata.
    population : DataFrame or Series
        Population count of every cell (see :func:`as_margin`).
    count_column : str, optional
        Name of the count column when ``population`` has several extra columns.

    Returns
    -------
    CalibratedDesign
        Same design with calibrated weights, remembering the post-stratification.

    Raises
    ------
    WeightingError
        Missing or unknown sample categories, a population cell without respondents (collapse
        cells or :func:`rake`), respondents in a cell of population 0, non-positive weights.
    """
    what = "poststratify"
    design = _checked_design(frame, design, what)
    margin = as_margin(strata_columns, population, count_column, what)
    codes = _sample_codes(frame, margin, what)
    old = _check_weights(design.weights, what)
    before = _check_cells(codes, old, margin, what)
    new = _rescale_matrix(old, codes, margin.counts)
    replicates = None
    if design.is_replicate:
        replicates = _rescale_matrix(
            np.asarray(design.replicate_weights, dtype=float), codes, margin.counts
        )
    projection = Projection(
        codes=codes,
        n_cells=len(margin.counts),
        basis=new,
        reading=old / new,
        denominator=before,
    )
    calibration = _previous_calibration(design).then(
        [projection], [0], f"post-stratified to {margin.name} ({len(margin.counts)} cells)"
    )
    return _with_weights(design, new, replicates, calibration)


def _joint_codes(codes: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """Cell of each row in the crossing of all margins (the table R's rake() watches)."""
    if int(np.prod([float(k) for k in sizes])) < 50_000_000:
        return np.ravel_multi_index(tuple(codes), tuple(sizes))
    return np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)[1].ravel()


def _rake_sweeps(weights, margins, codes, bounds, sweeps, joint=None, epsilon=None):
    """Run raking sweeps on a weight vector or matrix.

    Run at most ``sweeps``; with ``joint`` given, stop at the first sweep after which the joint
    weighted table moved by less than ``epsilon`` (R's rule). Returns ``(weights, weights after
    each margin in the last sweep, sweeps run, last change)``.
    """
    w = weights.copy()
    previous = None if joint is None else np.bincount(joint, weights=w)
    after: list[np.ndarray] = []
    change = np.inf
    done = 0
    while done < sweeps:
        if bounds is not None:
            w = np.clip(w, bounds[0], bounds[1])
        after = []
        for margin, code in zip(margins, codes):
            w = _rescale_matrix(w, code, margin.counts)
            after.append(w)
        done += 1
        if joint is not None:
            table = np.bincount(joint, weights=w)
            change = float(np.max(np.abs(table - previous)))
            previous = table
            if change < epsilon:
                break
    return w, after, done, change


def rake(
    frame: pd.DataFrame,
    design,
    margins: dict,
    *,
    max_iter: int = 100,
    tol: float = 1e-7,
    trim: tuple[float, float] | None = None,
    count_column: str | None = None,
    total_tolerance: float = 1e-6,
) -> CalibratedDesign:
    """Rake a design to population margins by iterative proportional fitting (R's ``rake``).

    Each sweep post-stratifies the weights to every margin in turn. The sweeps stop when the
    weighted table of the crossing of all margin columns changes by less than
    ``tol × (sum of the starting weights)`` between two sweeps (R's ``control$epsilon`` rule;
    R's default ``epsilon = 1`` is ``tol = 1 / sum(weights)``). Standard errors use the
    residuals of the scores after backfitting the margin projections of the last sweep, as R's
    ``svyrecvar`` does for a raked design; replicate designs rake every replicate with the same
    number of sweeps.

    Parameters
    ----------
    frame : DataFrame
        The sample (the rows ``design`` was built from).
    design : SurveyDesign or None
        ``None``: the design in ``frame.attrs`` or, without one, equal weights.
    margins : dict
        ``{column or tuple of columns: counts}``; counts a Series indexed by category (or a
        DataFrame with the columns and one count column), e.g.
        ``{"sex": pd.Series({"female": 5100, "male": 4900}), ("admin1", "age_group"): table}``.
    max_iter : int
        Most sweeps before giving up (an error saying how far off the margins still are).
    tol : float
        Convergence tolerance, relative to the sum of the starting weights.
    trim : (lower, upper), optional
        Keep weights within ``[lower, upper] × N / n`` (multiples of the mean calibrated weight):
        weights are clipped to those bounds at the start of every sweep, then re-raked
        (trimmed raking); at convergence both the margins and the bounds hold.
    count_column : str, optional
        Name of the count column in DataFrame margins with several extra columns.
    total_tolerance : float
        Largest relative difference allowed between the totals of two margins.

    Returns
    -------
    CalibratedDesign

    Raises
    ------
    WeightingError
        Inconsistent margin totals, empty sample cells, unknown sample categories,
        non-convergence after ``max_iter`` sweeps (with the largest remaining discrepancy).
    """
    what = "rake"
    design = _checked_design(frame, design, what)
    if not isinstance(margins, dict) or not margins:
        raise WeightingError(f"{what}: margins must be a non-empty dict {{column: counts}}")
    if max_iter < 1 or not tol > 0:
        raise WeightingError(f"{what}: max_iter={max_iter} must be >= 1 and tol={tol} > 0")
    parsed = [
        as_margin(
            columns, counts, count_column, f"{what} margin {join_cell(np.atleast_1d(columns))}"
        )
        for columns, counts in margins.items()
    ]
    totals = np.array([m.total for m in parsed])
    if np.any(np.abs(totals - totals[0]) > total_tolerance * totals[0]):
        described = ", ".join(f"{m.name} sums to {m.total:,.6g}" for m in parsed)
        raise WeightingError(
            f"{what}: margins are inconsistent: {described}; every margin must count the same "
            "population (rescale them to one total)"
        )
    weights = _check_weights(design.weights, what)
    codes = [_sample_codes(frame, m, f"{what} margin {m.name}") for m in parsed]
    for m, code in zip(parsed, codes):
        _check_cells(code, weights, m, f"{what} margin {m.name}")
    joint = _joint_codes(codes, [len(m.counts) for m in parsed])
    population = float(totals[0])
    bounds = None
    if trim is not None:
        lower, upper = trim
        if not (0 <= lower < 1 < upper):
            raise WeightingError(
                f"{what}: trim=({lower}, {upper}) must satisfy 0 <= lower < 1 < upper "
                "(multiples of the mean weight)"
            )
        mean = population / len(weights)
        bounds = (lower * mean, upper * mean)
    epsilon = tol * float(weights.sum())
    w, after, sweeps, change = _rake_sweeps(
        weights, parsed, codes, bounds, sweeps=max_iter, joint=joint, epsilon=epsilon
    )
    if not change < epsilon:
        worst = max(
            (
                (m, i, got, want)
                for m, code in zip(parsed, codes)
                for i, (got, want) in enumerate(zip(_cell_totals(code, len(m.counts), w), m.counts))
            ),
            key=lambda item: abs(item[2] - item[3]),
        )
        m, i, got, want = worst
        raise WeightingError(
            f"{what}: not converged after {max_iter} sweeps: the weighted table still moved by "
            f"{change:.4g} (tolerance {epsilon:.4g}); largest margin gap {m.name}={m.labels()[i]}: "
            f"weighted {got:,.6g} vs population {want:,.6g} ({100 * (got - want) / want:+.3g}%); "
            "raise max_iter, collapse sparse categories" + (" or widen trim" if trim else "")
        )
    replicates = None
    if design.is_replicate:
        replicates, *_ = _rake_sweeps(
            np.asarray(design.replicate_weights, dtype=float), parsed, codes, bounds, sweeps=sweeps
        )
    projections = [
        Projection(
            codes=code,
            n_cells=len(m.counts),
            basis=psw,
            reading=1.0 / psw,
            denominator=np.bincount(code, minlength=len(m.counts)).astype(float),
        )
        for m, code, psw in zip(parsed, codes, after)
    ]
    schedule = list(range(len(projections))) * VARIANCE_BACKFIT_SWEEPS
    text = f"raked to {'; '.join(m.name for m in parsed)} ({sweeps} sweeps"
    text += f", weights trimmed to [{trim[0]:g}, {trim[1]:g}] × mean)" if trim else ")"
    calibration = _previous_calibration(design).then(projections, schedule, text)
    return _with_weights(design, w, replicates, calibration)


# =============================================================================================
# Diagnostics


def kish_design_effect(weights) -> float:
    """Kish's design effect due to unequal weighting, ``1 + CV²`` of the weights.

    ``deff_w = n Σ w² / (Σ w)²`` (CV with divisor ``n``): the factor by which unequal weights
    alone inflate the variance of a mean, assuming the outcome is unrelated to the weights.
    The effective sample size is ``n / deff_w``.
    """
    w = np.asarray(getattr(weights, "weights", weights), dtype=float)
    if w.size == 0:
        raise WeightingError("kish_design_effect: no weights")
    return float(w.size * np.sum(w * w) / np.sum(w) ** 2)


def _weights_of(design_or_weights, n: int, what: str) -> np.ndarray:
    w = np.asarray(getattr(design_or_weights, "weights", design_or_weights), dtype=float)
    if w.shape != (n,):
        raise WeightingError(f"{what}: weights have shape {w.shape}; expected ({n},)")
    return w


def _as_margins(margins) -> list[Margin]:
    if isinstance(margins, Margin):
        return [margins]
    if isinstance(margins, dict):
        return [
            m
            if isinstance(m, Margin)
            else as_margin(c, m, what=f"margin {join_cell(np.atleast_1d(c))}")
            for c, m in margins.items()
        ]
    return list(margins)


def weighting_diagnostics(
    frame: pd.DataFrame, margins, before, after, *, thresholds=None, disclosure: bool = True
) -> pd.DataFrame:
    """Compare the sample's composition with the margins before and after weighting.

    Parameters
    ----------
    frame : DataFrame
        The sample.
    margins : dict or list of Margin
        As for :func:`rake` (``{column(s): counts}``) or :class:`Margin` objects.
    before, after : SurveyDesign or array
        Designs (or weight vectors) before and after weighting.
    thresholds : optional
        Disclosure thresholds (:func:`analysis.disclosure.load_thresholds` when None).
    disclosure : bool
        Withhold the sample counts and sample shares of categories with fewer than
        ``suppress_below`` respondents (and of the next smallest category of the same margin when
        only one would be withheld, so that it cannot be recovered from the sample size).

    Returns
    -------
    DataFrame
        One row per margin category: ``margin``, ``category``, ``n_unweighted``,
        ``pct_unweighted``, ``pct_weighted_before``, ``pct_weighted_after``, ``population``,
        ``pct_population``, ``flag`` (``ok`` | ``suppressed``). Percentages are of the total of
        the margin (sample, weighted sample, population). Sample categories absent from the
        margins appear with a blank population.
    """
    n = len(frame)
    w_before = _weights_of(before, n, "weighting_diagnostics (before)")
    w_after = _weights_of(after, n, "weighting_diagnostics (after)")
    rows = []
    for margin in _as_margins(margins):
        codes, _ = _match_cells(frame, margin, "weighting_diagnostics")
        known = codes >= 0
        k = len(margin.counts)
        sample = pd.DataFrame(
            {
                "n": np.bincount(codes[known], minlength=k).astype(float),
                "before": np.bincount(codes[known], weights=w_before[known], minlength=k),
                "after": np.bincount(codes[known], weights=w_after[known], minlength=k),
                "population": margin.counts,
            },
            index=margin.labels(),
        )
        if not known.all():  # sample categories outside the margins (or missing) get own rows
            keys = frame.loc[~known, list(margin.columns)].astype("string").fillna("(missing)")
            label = keys.astype(str).agg(join_cell, axis=1).to_numpy()
            extra = (
                pd.DataFrame(
                    {
                        "category": label,
                        "n": 1.0,
                        "before": w_before[~known],
                        "after": w_after[~known],
                    }
                )
                .groupby("category", sort=True)
                .sum()
            )
            extra["population"] = np.nan
            sample = pd.concat([sample, extra])
        table = sample
        population = pd.Series(margin.counts)
        rows.append(
            pd.DataFrame(
                {
                    "margin": margin.name,
                    "category": table.index,
                    "n_unweighted": table["n"].round().astype("Int64").to_numpy(),
                    "pct_unweighted": (100 * table["n"] / table["n"].sum()).to_numpy(),
                    "pct_weighted_before": (
                        100 * table["before"] / table["before"].sum()
                    ).to_numpy(),
                    "pct_weighted_after": (100 * table["after"] / table["after"].sum()).to_numpy(),
                    "population": table["population"].to_numpy(),
                    "pct_population": (100 * table["population"] / population.sum()).to_numpy(),
                    "flag": "ok",
                }
            )
        )
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if disclosure and len(out):
        from analysis.disclosure import resolve_thresholds

        limit = resolve_thresholds(thresholds).suppress_below
        for _, part in out.groupby("margin", sort=False):
            n_part = part["n_unweighted"].astype(float)
            small = part.index[(n_part > 0) & (n_part < limit)]
            if len(small) == 1:
                others = n_part.drop(small)
                others = others[others > 0]
                if len(others):
                    small = small.append(pd.Index([others.idxmin()]))
            out.loc[small, ["n_unweighted", "pct_unweighted", "pct_weighted_before"]] = pd.NA
            out.loc[small, "flag"] = "suppressed"
    return out


# =============================================================================================
# The convenience for a CSO sample and official population counts


@dataclass
class WeightingResult:
    """What :func:`weight_to_official_margins` did.

    Attributes
    ----------
    design : CalibratedDesign
        Pass it to :func:`analysis.survey.estimate_by` with the same frame.
    method : str
        ``"poststratify"`` or ``"rake"``, as chosen.
    diagnostics : DataFrame
        :func:`weighting_diagnostics` on the one-way margins of ``by``.
    kish_deff_before, kish_deff_after : float
        :func:`kish_design_effect` of the weights before and after.
    notes : list of str
        What was restricted or collapsed, for the chapter's methods note.
    """

    design: object
    method: str
    diagnostics: pd.DataFrame
    kish_deff_before: float
    kish_deff_after: float
    notes: list

    @property
    def effective_sample_size(self) -> float:
        return self.design.n / self.kish_deff_after


def weight_to_official_margins(
    frame: pd.DataFrame,
    margins_frame: pd.DataFrame,
    by,
    *,
    design=None,
    method: str = "auto",
    count_column: str | None = None,
    restrict_to=None,
    trim=None,
    max_iter: int = 100,
    tol: float = 1e-7,
    thresholds=None,
) -> WeightingResult:
    """Weight a sample (e.g. a non-probability CSO sample) to official population counts.

    Parameters
    ----------
    frame : DataFrame
        The sample, with every column of ``by``.
    margins_frame : DataFrame
        Official counts, one row per population cell, with the columns of ``by`` (possibly more
        detailed: the counts are summed over other classification columns) and a count column.
    by : list of str
        Columns to weight by, e.g. ``["admin1", "sex", "age_group"]``.
    design : SurveyDesign, optional
        Starting design; default the frame's own (``frame.attrs["design"]``) or equal weights.
    method : {"auto", "poststratify", "rake"}
        ``auto`` post-stratifies to the full crossing of ``by`` when every populated cell has
        respondents, and otherwise rakes to the one-way margins of ``by``.
    count_column : str, optional
        The count column of ``margins_frame`` (default: the one named like
        :data:`COUNT_COLUMN_NAMES`).
    restrict_to : list of str, optional
        Columns of ``by`` (e.g. ``["admin1"]``) in which the population is restricted to the
        categories present in the sample: the target population becomes the areas the sample
        covers. What was dropped is listed in ``notes``.
    trim : (lower, upper), optional
        Trimmed raking with weights within ``[lower, upper] ×`` the mean weight (:func:`rake`).
    max_iter, tol
        Raking controls (:func:`rake`).

    Returns
    -------
    WeightingResult
    """
    what = "weight_to_official_margins"
    by = [by] if isinstance(by, str) else list(by)
    if method not in ("auto", "poststratify", "rake"):
        raise WeightingError(f"{what}: method={method!r}; use 'auto', 'poststratify' or 'rake'")
    design = _checked_design(frame, design, what)
    missing = [c for c in by if c not in margins_frame.columns]
    if missing:
        raise WeightingError(
            f"{what}: official margins lack column(s) {missing}; "
            f"they have {list(margins_frame.columns)}"
        )
    if count_column is None:
        named = [c for c in margins_frame.columns if c in COUNT_COLUMN_NAMES and c not in by]
        if len(named) != 1:
            raise WeightingError(
                f"{what}: cannot tell the count column of the official margins among "
                f"{list(margins_frame.columns)}; pass count_column="
            )
        count_column = named[0]
    elif count_column not in margins_frame.columns:
        raise WeightingError(f"{what}: count column {count_column!r} not in the official margins")
    official = margins_frame[by + [count_column]].copy()
    official[by] = official[by].astype("string")
    notes = []
    for column in restrict_to or []:
        if column not in by:
            raise WeightingError(f"{what}: restrict_to column {column!r} is not one of by={by}")
        present = set(frame[column].dropna().astype(str))
        keep = official[column].isin(present).fillna(False)
        dropped = official.loc[~keep, column].dropna().unique().tolist()
        if dropped:
            notes.append(
                f"population restricted to the {column} categories in the sample; left out "
                f"{len(dropped)} ({', '.join(map(str, sorted(dropped)[:10]))}"
                f"{', ...' if len(dropped) > 10 else ''}) with "
                f"{official.loc[~keep, count_column].sum():,.0f} people"
            )
        official = official[keep]
    joint = official.groupby(by, sort=True, dropna=False)[count_column].sum().reset_index()
    if method == "auto":
        cells = as_margin(by, joint, count_column, what)
        codes, _ = _match_cells(frame, cells, what)
        respondents = np.bincount(codes[codes >= 0], minlength=len(cells.counts))
        empty = int(np.sum((cells.counts > 0) & (respondents == 0)))
        method = "rake" if empty or (codes < 0).any() else "poststratify"
        if empty:
            notes.append(
                f"{empty} of {int(np.sum(cells.counts > 0))} population cells of {join_cell(by)} "
                "have no respondents: raked to the one-way margins instead of post-stratifying"
            )
    try:
        if method == "poststratify" and trim is None:
            calibrated = poststratify(frame, design, by, joint, count_column=count_column)
        elif method == "poststratify":
            calibrated = rake(
                frame,
                design,
                {tuple(by): joint},
                count_column=count_column,
                trim=trim,
                max_iter=max_iter,
                tol=tol,
            )
            notes.append("post-stratified with trimmed weights (raking to the joint margin)")
        else:
            one_way = {c: joint.groupby(c, sort=True)[count_column].sum() for c in by}
            calibrated = rake(frame, design, one_way, trim=trim, max_iter=max_iter, tol=tol)
    except WeightingError as error:
        if "have no respondents" not in str(error) or restrict_to:
            raise
        raise WeightingError(
            f"{error}; or pass restrict_to=[...] to weight to the areas or groups the sample covers"
        ) from None
    one_way_margins = {c: joint.groupby(c, sort=True)[count_column].sum() for c in by}
    diagnostics = weighting_diagnostics(
        frame, one_way_margins, design, calibrated, thresholds=thresholds
    )
    return WeightingResult(
        design=calibrated,
        method=method,
        diagnostics=diagnostics,
        kish_deff_before=kish_design_effect(design.weights),
        kish_deff_after=kish_design_effect(calibrated.weights),
        notes=notes,
    )
