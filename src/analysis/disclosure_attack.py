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
from scipy.optimize import linprog

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


@dataclass(frozen=True)
class Bounds:
    """The interval an attacker proves for one withheld cell, and the published cells it used."""

    low: float
    high: float
    support: tuple = ()

    @property
    def width(self) -> float:
        return self.high - self.low


def cell_bounds(system: CellSystem, values: np.ndarray, known: np.ndarray, target: int,
                nonnegative: bool = True) -> Bounds:
    """LP bounds on ``x_target`` given the known cells' ``values``.

    Parameters
    ----------
    system : CellSystem
    values : ndarray (n_cells,)
        Values of the known cells (others ignored).
    known : bool ndarray (n_cells,)
        Published cells (fixed); every other cell, hidden ones included, is a free unknown.
    target : int
    nonnegative : bool
        Unknowns are counts or sums of non-negative weights (True), or unrestricted.

    Returns
    -------
    Bounds
        ``support`` lists the published cells whose values the optimal bounds depend on (nonzero
        dual): the candidates for complementary suppression.
    """
    from scipy import sparse

    relations = system.relations.tocsr()
    unknown = np.flatnonzero(~known)
    known_idx = np.flatnonzero(known)
    position = {c: i for i, c in enumerate(unknown)}
    a_known = relations[:, known_idx]
    # Work in units of the largest published value (weighted totals run to 1e8): HiGHS's
    # tolerances are absolute.
    scale = max(1.0, float(np.max(np.abs(values[known_idx]), initial=0.0)))
    rhs = -(a_known @ (values[known_idx] / scale))
    a_unknown = relations[:, unknown]
    used = np.flatnonzero(np.diff(a_unknown.indptr) > 0)
    a_unknown, rhs = a_unknown[used], rhs[used]
    # Published numbers are rounded (CSV, sums of float weights): each relation holds to within
    # a relative 1e-9 of its terms, through a tiny bounded slack per relation.
    slack = 1e-9 * (1.0 + abs(a_known[used]) @ np.abs(values[known_idx] / scale))
    n_rel = len(used)
    a_eq = sparse.hstack([a_unknown, sparse.identity(n_rel, format="csr")], format="csr")
    bounds = [(0, None) if nonnegative else (None, None)] * len(unknown)
    bounds += [(-tol, tol) for tol in slack]
    t = position[target]
    out = []
    support: set = set()
    for sign in (1.0, -1.0):
        c = np.zeros(len(unknown) + n_rel)
        c[t] = sign
        if n_rel == 0:
            out.append(np.inf if sign < 0 else (0.0 if nonnegative else -np.inf))
            continue
        res = linprog(c, A_eq=a_eq, b_eq=rhs, bounds=bounds, method="highs")
        if res.status == 3:  # unbounded
            out.append(np.inf if sign < 0 else -np.inf)
            continue
        if res.status != 0:
            raise ValueError(f"disclosure attack: the published numbers contradict the relations "
                             f"between cells (LP status {res.status}: {res.message})")
        out.append(sign * res.fun * scale)
        duals = np.asarray(res.eqlin.marginals)
        sensitivity = np.abs(a_known[used].T @ duals)
        support.update(known_idx[sensitivity > _TOLERANCE].tolist())
    return Bounds(low=float(out[0]), high=float(out[1]), support=tuple(sorted(support)))


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

    @property
    def width(self) -> float:
        return self.high - self.low


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
        weighted = not method.startswith(_OTHER_WEIGHTING) and indicator != RESPONDENTS
        rows.append({"source": str(row.source), "country": str(row.country), "indicator": indicator,
                     "population": pop, "suppressed": suppressed, "n": n,
                     "w": w if weighted else np.nan,
                     "t": est * w if weighted and pd.notna(est) and pd.notna(w) else np.nan})
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
                 weighted: bool = True) -> list[Finding]:
    """Bounds of every withheld cell of every source × country × indicator in ``cells``.

    Counts of the same population published by several tables must agree; the first is used.
    Returns one :class:`Finding` per withheld cell and quantity (count always; weighted count
    and total when ``weighted``).
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
            for k, pop in enumerate(withheld["population"]):
                target = len(published) + k
                bounds = cell_bounds(system, values, mask, target, nonnegative=True)
                findings.append(Finding(source, country, indicator, pop, bounds.low, bounds.high,
                                        quantity=name))
    return findings


def read_published_tables(outputs: Path) -> pd.DataFrame:
    """Every result-schema CSV table under a built report's ``outputs`` folder, stacked."""
    frames = []
    for path in sorted(Path(outputs).rglob("tables/*.csv")):
        if "_failed" in path.parts or ".staging" in path.parts:
            continue
        frame = pd.read_csv(path, keep_default_na=True, low_memory=False)
        if {"breakdown", "cell", "flag", "n_unweighted", "indicator"} <= set(frame.columns):
            frames.append(frame.assign(_file=str(path.relative_to(outputs))))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def attack_published(outputs: Path, suppress_below: int, catalogue: Catalogue | None = None,
                     weighted: bool = False) -> list[Finding]:
    """The attack on a built report: every withheld count bounded from every published file."""
    catalogue = catalogue or Catalogue.from_catalogue()
    frame = read_published_tables(Path(outputs))
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
    return attack_cells(cells, catalogue, suppress_below, weighted=weighted)
