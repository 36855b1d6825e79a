"""The linear-programming attack on suppressed cells (the audit of τ-ARGUS and sdcTable).

An attacker holds every published number of one source × country × indicator: the counts
(and weighted counts, weighted totals) of the published cells, the definitions of every cell
(:mod:`analysis.disclosure_model`) and so every additive relation between them. For a withheld
cell ``t`` the tightest interval the attacker can prove is

    min / max  x_t   subject to   R x = 0,  x_i = v_i for published i,  x ≥ 0,

solved with HiGHS (:func:`scipy.optimize.linprog`). The cell is *protected* when the interval
of its count is at least ``suppress_below`` wide (the protection interval of Hundepool et al.,
*Statistical Disclosure Control*, Wiley 2012, §4.2.3, with the threshold as the protection
level) and the intervals of its weighted count and weighted total are at least as wide, relative
to the cell's value, as that required of the count. Integrality is relaxed (the LP interval
contains the integer one), so a width found here is an upper bound on what any attacker learns.

:func:`attack_published` runs the attack on the tables of a built report, reading only its
published CSV files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.disclosure_model import (
    RESPONDENTS,
    Catalogue,
    CellSystem,
    derive_relations,
    make_population,
    population_of_row,
)

# Below this the LP optimum is taken as exact (values are counts and sums of weights).
_TOLERANCE = 1e-6
# A solve taking longer than this (seconds) is restarted without its warm start.
_SOLVE_SECONDS = 20.0


@dataclass(frozen=True)
class Bounds:
    """The interval an attacker proves for one withheld cell, and the published cells it used."""

    low: float
    high: float
    support: tuple = ()

    @property
    def width(self) -> float:
        return self.high - self.low


class LinkedLP:
    """The attacker's linear program over one cell system, kept in HiGHS between questions.

    Every cell is a column: a published cell is fixed to its value, a withheld or hidden cell is
    free (non-negative); each relation is a row ``R x = 0`` held to within a relative 1e-9 of its
    terms (published numbers are rounded: CSV, sums of float weights). Asking for the bounds of another cell changes one objective
    coefficient and withholding one more cell one pair of column bounds, so HiGHS re-solves from
    the previous basis (warm start) — what makes the audit-and-repair loop cheap.

    Parameters
    ----------
    system : CellSystem
    values : ndarray (n_cells,)
        Values of the cells (only the published ones are used as known).
    known : bool ndarray (n_cells,)
        Published cells.
    nonnegative : bool
        Unknowns are counts or sums of non-negative weights (True), or unrestricted.
    """

    def __init__(self, system: CellSystem, values: np.ndarray, known: np.ndarray,
                 nonnegative: bool = True, values_known: bool = True):
        import highspy

        self.system = system
        relations = system.relations.tocsr()
        n_rel, n_cells = relations.shape
        values = np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)
        # Work in units of the largest value (weighted totals run to 1e8): HiGHS's tolerances
        # are absolute.
        self.scale = max(1.0, float(np.max(np.abs(values), initial=0.0)))
        self.values = values / self.scale
        self.known = np.asarray(known, dtype=bool).copy()
        self.free_lower = 0.0 if nonnegative else -highspy.kHighsInf
        slack = 1e-9 * (1.0 + abs(relations) @ np.abs(self.values))
        matrix = relations.tocsc()
        lp = highspy.HighsLp()
        lp.num_col_ = n_cells
        lp.num_row_ = n_rel
        lp.col_cost_ = np.zeros(n_cells)
        lp.col_lower_ = np.where(self.known, self.values, self.free_lower)
        lp.col_upper_ = np.where(self.known, self.values, highspy.kHighsInf)
        lp.row_lower_ = -slack
        lp.row_upper_ = slack
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = matrix.indptr.astype(np.int32)
        lp.a_matrix_.index_ = matrix.indices.astype(np.int32)
        lp.a_matrix_.value_ = matrix.data.astype(float)
        self._highs = highspy.Highs()
        self._highs.setOptionValue("output_flag", False)
        self._highs.setOptionValue("presolve", "off")  # keep the basis between questions
        # dual simplex: the primal one was seen to cycle on these degenerate 0/±1 programs
        self._highs.setOptionValue("simplex_strategy", 1)
        self._highs.setOptionValue("time_limit", _SOLVE_SECONDS)
        self._highs.passModel(lp)
        self._highspy = highspy
        self._target: int | None = None
        # Feasible points seen so far (the true values, and every LP optimum): each stays feasible
        # when more cells are withheld (that only relaxes the program), so their spread in a
        # cell is a proven lower bound on the width of its interval, with no solve at all.
        # (an attacker does not know the values of withheld cells: ``values_known`` False starts
        # with no point)
        self._points: list = [self.values[:n_cells].copy()] if values_known else []
        self._high = self.values[:n_cells].copy() if values_known else np.full(n_cells, -np.inf)
        self._low = self.values[:n_cells].copy() if values_known else np.full(n_cells, np.inf)

    def withhold(self, cell: int) -> None:
        """Make a published cell unknown to the attacker (complementary suppression)."""
        if self.known[cell]:
            self.known[cell] = False
            self._highs.changeColBounds(int(cell), self.free_lower, self._highspy.kHighsInf)

    def extreme(self, target: int, maximize: bool) -> tuple[float, set]:
        """The attacker's lower (or upper) bound on cell ``target`` and the published cells it
        depends on (nonzero reduced cost: the candidates for complementary suppression)."""
        h, hs = self._highs, self._highspy
        if self._target != int(target):
            if self._target is not None:
                h.changeColCost(self._target, 0.0)
            h.changeColCost(int(target), 1.0)
            self._target = int(target)
        h.changeObjectiveSense(hs.ObjSense.kMaximize if maximize else hs.ObjSense.kMinimize)
        h.run()
        status = h.getModelStatus()
        if status == hs.HighsModelStatus.kTimeLimit:  # stalled from the warm start: start afresh
            h.clearSolver()
            h.run()
            status = h.getModelStatus()
        if status == hs.HighsModelStatus.kTimeLimit:
            # (the limit is wall-clock: a busy machine, or the dual simplex cycling) the primal
            # simplex from scratch, with time to spare, then back to the usual options
            h.clearSolver()
            h.setOptionValue("simplex_strategy", 4)
            h.setOptionValue("time_limit", 10 * _SOLVE_SECONDS)
            h.run()
            status = h.getModelStatus()
            h.setOptionValue("simplex_strategy", 1)
            h.setOptionValue("time_limit", _SOLVE_SECONDS)
        if status == hs.HighsModelStatus.kUnbounded:
            return (np.inf if maximize else -np.inf), set()
        if status != hs.HighsModelStatus.kOptimal:
            raise ValueError("disclosure attack: the published numbers contradict the "
                             f"relations between cells (HiGHS: {h.modelStatusToString(status)})")
        solution = h.getSolution()
        self._remember(np.asarray(solution.col_value)[: len(self.known)])
        duals = np.asarray(solution.col_dual)[: len(self.known)]
        support = set(np.flatnonzero(self.known & (np.abs(duals) > _TOLERANCE)).tolist())
        return h.getInfo().objective_function_value * self.scale, support

    def add_deviation(self, deviation: np.ndarray, least: float = 0.5) -> bool:
        """Remember the true values plus ``λ · deviation`` as a feasible point, if one is.

        ``deviation`` (unscaled) must satisfy the relations (``R y = 0``: e.g. the difference
        of two feasible points of another indicator's program over the same cells; that is
        the caller's to keep) and be zero on every published cell; ``λ ≤ 1`` is the largest
        step that keeps every cell non-negative, and the point is kept only when ``λ ≥ least``.
        The values must be the true ones (a feasible point). Returns whether it was kept.
        """
        y = np.asarray(deviation, dtype=float)[: len(self.known)] / self.scale
        tol = 1e-9 * (1.0 + np.abs(self.values))
        if np.any(np.abs(y)[self.known] > tol[self.known]):
            return False
        step = 1.0
        if self.free_lower == 0.0:
            down = y < -tol
            if down.any():
                step = min(1.0, float(np.min(self.values[down] / -y[down])))
        if step < least:
            return False
        point = self.values + step * y
        self._remember(point)
        return True

    def _remember(self, point: np.ndarray) -> None:
        self._points.append(point)
        np.maximum(self._high, point, out=self._high)
        np.minimum(self._low, point, out=self._low)

    def deviations(self, limit: int = 1000) -> list:
        """The feasible points seen, as deviations from the (true) values (unscaled; newest last)."""
        return [(p - self.values) * self.scale for p in self._points[1:][-limit:]]

    def bounds(self, target: int) -> Bounds:
        """LP bounds on cell ``target``; ``support`` = published cells the bounds depend on."""
        low, below = self.extreme(target, maximize=False)
        high, above = self.extreme(target, maximize=True)
        return Bounds(low=float(low), high=float(high), support=tuple(sorted(below | above)))


    def spread(self, target: int) -> tuple[float, float] | None:
        """Least and greatest value of cell ``target`` over the feasible points seen (unscaled)."""
        if not self._points:
            return None
        return float(self._low[target]) * self.scale, float(self._high[target]) * self.scale

    def proven_width(self, target: int) -> float:
        """A lower bound on the width of ``target``'s interval from the feasible points seen."""
        return float(self._high[target] - self._low[target]) * self.scale


def cell_bounds(system: CellSystem, values: np.ndarray, known: np.ndarray, target: int,
                nonnegative: bool = True) -> Bounds:
    """LP bounds on ``x_target`` given the published cells' ``values`` (one question).

    See :class:`LinkedLP`, which keeps the program between questions.
    """
    return LinkedLP(system, values, known, nonnegative).bounds(target)


def required_width(count: float, suppress_below: int) -> float:
    """Width the count interval of a withheld cell must reach: the threshold itself."""
    return float(suppress_below)


# ---------------------------------------------------------------------------------------------
# The attack on published files


#: Methods of rows that are no cell: official statistics, and gaps (whose n is the smaller of
#: their two input cells' counts, each published or withheld in its own row).
_NOT_CELLS = ("official", "difference", "ratio")
#: Excess intersectional disparity rows: their count is the sum of their four input cells.
_EXCESS = "difference: excess"

#: Methods whose weighted numbers are not the source's design weights (other weightings).
_OTHER_WEIGHTING = ("before weighting", "after weighting", "official")


@dataclass
class Finding:
    """One withheld cell and the interval the attacker proves for its count."""

    source: str
    country: str
    indicator: str
    population: tuple
    low: float
    high: float
    quantity: str = "n_unweighted"
    true_width_needed: float = 0.0
    #: False when the attack stopped once the interval was shown to be at least ``enough``
    #: wide (``low``/``high`` then span feasible values inside the attacker's interval).
    complete: bool = True

    @property
    def width(self) -> float:
        return self.high - self.low

    @property
    def exact(self) -> bool:
        """The count is recovered: its interval holds a single integer."""
        return self.quantity == "n_unweighted" and self.width < 1.0


def published_cells(frame: pd.DataFrame, catalogue: Catalogue) -> pd.DataFrame:
    """Map every row of published result tables to (source, country, indicator, population).

    Rows that are not cells (contrasts, summaries, official statistics without counts) are
    dropped. Composition rows are counts of respondents (:data:`RESPONDENTS`).
    """
    rows = []
    for row in frame.itertuples(index=False):
        method = str(getattr(row, "method", "") or "")
        indicator = str(row.indicator)
        if method.startswith(_NOT_CELLS) and not method.startswith(_EXCESS):
            continue
        group = getattr(row, "group", None)
        try:
            if method.startswith(_EXCESS):
                pop = _union_population(catalogue, row.breakdown, group)
            else:
                pop = population_of_row(catalogue, row.breakdown, row.cell, group)
        except Exception:  # noqa: BLE001 - a label outside the model is not a cell
            pop = None
        if pop is None:
            continue
        if indicator == "composition":
            pop, indicator = _composition_population(catalogue, row), RESPONDENTS
            if pop is None:
                continue
        suppressed = str(row.flag) == "suppressed"
        n = pd.to_numeric(row.n_unweighted, errors="coerce")
        w = pd.to_numeric(getattr(row, "n_weighted", np.nan), errors="coerce")
        est = pd.to_numeric(row.estimate, errors="coerce")
        weighted = not method.startswith(_OTHER_WEIGHTING)
        if indicator == RESPONDENTS:  # a share of the weighted total: its weighted count
            w, t = (est * w if pd.notna(est) and pd.notna(w) else np.nan), np.nan
        else:
            t = est * w if pd.notna(est) and pd.notna(w) else np.nan
        rows.append({"source": str(row.source), "country": str(row.country), "indicator": indicator,
                     "population": pop, "suppressed": suppressed, "n": n,
                     "w": w if weighted else np.nan, "t": t if weighted else np.nan})
    return pd.DataFrame(rows, columns=["source", "country", "indicator", "population",
                                       "suppressed", "n", "w", "t"])


def _union_population(catalogue: Catalogue, breakdown, group):
    """An excess-disparity row counts everyone in the four cells group/reference × group/reference."""
    constraints = {}
    for name in str(breakdown).split(" × "):
        gid = group if name == "comparison" else name
        dim, members, reference = catalogue.groups[str(gid)]
        constraints[dim] = members | reference
    return make_population(constraints, catalogue.universes)


def _composition_population(catalogue: Catalogue, row):
    """Composition rows are "breakdown = dimension, cell = category" shares of respondents."""
    return population_of_row(catalogue, row.breakdown, row.cell, None)


def attack_cells(cells: pd.DataFrame, catalogue: Catalogue, suppress_below: int,
                 weighted: bool = True, enough: float | None = None) -> list[Finding]:
    """Bounds of every withheld cell of every source × country × indicator in ``cells``.

    Counts of the same population published by several tables must agree; the first is used.
    Returns one :class:`Finding` per withheld cell and quantity (count always; weighted count
    and total when ``weighted``).

    ``enough``: an audit that only needs to know whether each count interval is at least this
    wide stops attacking a cell once the feasible points found (LP optima for other cells are
    feasible points too) already spread that far in it; such findings have ``complete``
    False and ``low``/``high`` inside the true interval. Narrower intervals are always solved
    exactly. Applies to counts only.
    """
    findings = []
    for (source, country, indicator), part in cells.groupby(["source", "country", "indicator"],
                                                             sort=True):
        published = part[~part["suppressed"]].drop_duplicates("population")
        withheld = part[part["suppressed"] & ~part["population"].isin(set(published["population"]))]
        withheld = withheld.drop_duplicates("population")
        if withheld.empty:
            continue
        pops = list(published["population"]) + list(withheld["population"])
        system = derive_relations(pops, catalogue.universes)
        known = np.zeros(system.n_cells, dtype=bool)
        known[: len(published)] = True
        quantities = [("n_unweighted", published["n"].to_numpy(float))]
        if weighted:
            quantities += [("n_weighted", published["w"].to_numpy(float)),
                           ("weighted_total", published["t"].to_numpy(float))]
        for name, published_values in quantities:
            values = np.zeros(system.n_cells)
            values[: len(published)] = np.nan_to_num(published_values, nan=0.0)
            mask = known.copy()
            mask[: len(published)] &= np.isfinite(published_values)
            program = LinkedLP(system, values, mask, nonnegative=True, values_known=False)
            for k, pop in enumerate(withheld["population"]):
                target = len(published) + k
                if enough is not None and name == "n_unweighted":
                    spread = program.spread(target)
                    if spread is not None and spread[1] - spread[0] >= enough:
                        findings.append(Finding(source, country, indicator, pop, *spread,
                                                quantity=name, complete=False))
                        continue
                bounds = program.bounds(target)
                findings.append(Finding(source, country, indicator, pop, bounds.low, bounds.high,
                                        quantity=name))
    return findings


def published_files(outputs: Path) -> list[Path]:
    """Every CSV table a built report publishes under ``outputs`` (not failed or staged runs)."""
    outputs = Path(outputs)
    return [p for p in sorted(outputs.rglob("tables/*.csv"))
            if not {"_failed", ".staging"} & set(p.relative_to(outputs).parts)]


def read_published_tables(files) -> pd.DataFrame:
    """The result-schema tables among ``files``, stacked (other CSV files hold no cells)."""
    frames = []
    for path in files:
        frame = pd.read_csv(path, keep_default_na=True, low_memory=False)
        if {"breakdown", "cell", "flag", "n_unweighted", "indicator"} <= set(frame.columns):
            frames.append(frame.assign(_file=str(path)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def attack_published(outputs, suppress_below: int, catalogue: Catalogue | None = None,
                     weighted: bool = False, enough: float | None = None) -> list[Finding]:
    """The attack on a built report: every withheld cell bounded from every published file.

    Parameters
    ----------
    outputs : path or list of paths
        A report's outputs folder (every ``tables/*.csv`` under it), or the CSV files an
        attacker holds.
    suppress_below : int
        Not used to bound: the findings carry the intervals; compare their width with it.
    weighted : bool
        Also bound weighted counts and weighted totals.
    enough : float, optional
        Stop attacking a count once it is shown to be at least this wide (see
        :func:`attack_cells`).
    """
    catalogue = catalogue or Catalogue.from_catalogue()
    files = (published_files(Path(outputs)) if isinstance(outputs, (str, Path))
             else [Path(p) for p in outputs])
    frame = read_published_tables(files)
    if frame.empty:
        return []
    # admin1 codes and other categories outside the catalogue enter the universes as published
    for breakdown, cell in frame[["breakdown", "cell"]].drop_duplicates().itertuples(index=False):
        dims = str(breakdown).split(" × ")
        cats = str(cell).split(" × ")
        if len(dims) == len(cats):
            for d, c in zip(dims, cats):
                if (d not in ("comparison", "all", "country") and d not in catalogue.groups
                        and (d not in catalogue.universes or d == "admin1_code")):
                    catalogue.observe(d, [c])
    cells = published_cells(frame, catalogue)
    return attack_cells(cells, catalogue, suppress_below, weighted=weighted, enough=enough)
