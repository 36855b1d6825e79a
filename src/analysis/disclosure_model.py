"""The model of what a report publishes: every number is a cell of one linked system.

A *population* is a conjunction of constraints ``dimension ∈ set of categories`` on the
respondents of one source × country (group membership and its reference are such constraints
on the group's dimension; "all" is the empty conjunction). A *cell* is a population together
with one indicator: its unweighted count (respondents with a positive weight and a non-missing
value), weighted count and weighted total. Every result-schema row of every table, whatever
chapter wrote it, maps to one cell (:func:`population_of_row`).

The linear relations an attacker can use are derived from the cell definitions, never listed by
hand (:func:`derive_relations`): for every family of cells that differ only in the constraint on
one dimension, each cell is the sum of the disjoint regions its children cut it into (a region
that is no published cell becomes a hidden, non-negative unknown — e.g. the respondents missing
the dimension). So "a population is the sum of its disjoint parts in any breakdown" and "group +
reference = all when the reference is the rest and nobody is missing" both fall out, and so do
relations across tables and chapters, because cells with the same definition are one variable.

Categories are ids of the catalogue (``params/groups.yml``); every dimension's universe also holds
:data:`MISSING` (no answer) and :data:`OTHER` (any category outside the catalogue), so that a
constraint "every category" is told apart from "every answered category".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.tables import split_cell

#: The category of respondents with no value on a dimension.
MISSING = "<missing>"
#: The category that stands for every category outside the catalogue (free-coded values).
OTHER = "<other>"

#: Breakdown name of the run's group/reference comparison (see analysis.chapters).
COMPARISON = "comparison"

#: Pseudo-indicator of the counts of respondents (composition tables, coverage): no item
#: non-response, so its counts bound every indicator's counts from above.
RESPONDENTS = "respondents"

#: Markers of a derived row (a contrast between cells), which is not a cell of its breakdown.
CONTRAST_MARKERS = (" vs ", " − ", " ÷ ")

#: Breakdown names that do not constrain the population (the row is about everyone).
WHOLE = ("", "all", "missing", "country")

#: A population: sorted tuple of (dimension, sorted tuple of categories); () is everyone.
Population = tuple


class CellModelError(ValueError):
    """A row cannot be mapped to a population (labels do not match the catalogue)."""


def make_population(constraints: dict, universes: dict) -> Population:
    """Canonical form of ``{dimension: categories}``: full-universe constraints dropped."""
    out = []
    for dim, cats in constraints.items():
        cats = frozenset(cats)
        universe = universes.get(dim)
        if universe is not None and cats >= universe:
            continue
        out.append((dim, tuple(sorted(cats))))
    return tuple(sorted(out))


@dataclass
class Catalogue:
    """What the attacker (and the planner) know of the cell definitions: dimensions and groups.

    ``universes`` maps each dimension to every category it can take, including :data:`MISSING`
    and :data:`OTHER`; ``groups`` maps a group id to (dimension, members, reference categories).
    """

    universes: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)

    @classmethod
    def from_catalogue(cls, dimensions=None, groups=None) -> Catalogue:
        """From :func:`analysis.schema.load_dimensions` and :func:`analysis.schema.load_groups`."""
        from analysis.schema import load_dimensions, load_groups

        dimensions = load_dimensions() if dimensions is None else dimensions
        groups = load_groups() if groups is None else groups
        out = cls()
        for name, spec in dimensions.items():
            out.universes[name] = frozenset(map(str, spec.categories)) | {MISSING, OTHER}
        for gid, g in groups.items():
            universe = out.universes.setdefault(g.dimension, frozenset({MISSING, OTHER}))
            members = frozenset(map(str, g.members))
            if g.reference == "rest":
                reference = universe - members - {MISSING}
            else:
                reference = frozenset(map(str, g.reference))
            out.groups[gid] = (g.dimension, members, reference)
        return out

    def observe(self, dimension: str, categories) -> None:
        """Add categories seen in data or labels (e.g. admin1 codes) to a dimension's universe."""
        known = self.universes.get(dimension, frozenset({MISSING, OTHER}))
        self.universes[dimension] = known | frozenset(map(str, categories))
        # "rest" references grow with the universe of their dimension
        for gid, (dim, members, reference) in list(self.groups.items()):
            if dim == dimension and reference == (known - members - {MISSING}):
                self.groups[gid] = (dim, members, self.universes[dim] - members - {MISSING})

    def category(self, dimension: str, value) -> str:
        """The universe category of one data value (catalogue id, :data:`MISSING` or :data:`OTHER`)."""
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return MISSING
        value = str(value)
        universe = self.universes.get(dimension)
        if universe is None or value in universe:
            return value
        return OTHER

    def constraint(self, dimension: str, category: str, group: str | None):
        """(dimension, categories) of one (breakdown dimension, cell category) pair of a row."""
        if dimension == COMPARISON:
            if group is None or group not in self.groups:
                raise CellModelError(f"breakdown {COMPARISON!r} needs a known group; got {group!r}")
            dim, members, reference = self.groups[group]
            if category == "group":
                return dim, members
            if category == "reference":
                return dim, reference
            raise CellModelError(f"comparison cell {category!r}: expected 'group' or 'reference'")
        if dimension in self.groups and category in ("group", "reference"):
            dim, members, reference = self.groups[dimension]
            return dim, members if category == "group" else reference
        return dimension, frozenset({self.category(dimension, category)})


def population_of_row(catalogue: Catalogue, breakdown, cell, group=None) -> Population | None:
    """The population of one result-schema row, or None when the row is not a cell.

    Not a cell: a contrast between cells (label with " vs ", " − ", " ÷ "), a summary over a
    breakdown (cell "all" of a named breakdown) and rows that are not counts of people.
    """
    b = "" if breakdown is None or (not isinstance(breakdown, str) and pd.isna(breakdown)) else str(breakdown)
    c = "" if cell is None or (not isinstance(cell, str) and pd.isna(cell)) else str(cell)
    g = None if group is None or (not isinstance(group, str) and pd.isna(group)) else str(group)
    if b in WHOLE:
        return () if c in ("", "all", "weighted", "unweighted") or b == "country" else None
    if c in ("", "all") or any(m in c for m in CONTRAST_MARKERS):
        return None
    dims, cats = split_cell(b), split_cell(c)
    if len(dims) != len(cats):
        return None
    constraints: dict = {}
    for d, k in zip(dims, cats):
        if d == "country":
            continue
        dim, allowed = catalogue.constraint(d, k, g)
        constraints[dim] = constraints.get(dim, allowed) & allowed
    return make_population(constraints, catalogue.universes)


# ---------------------------------------------------------------------------------------------
# Relations


@dataclass
class CellSystem:
    """The cells of one source × country × indicator and their additive relations.

    ``populations[i]`` is cell ``i``; cells ``[:n_defined]`` are the defined cells (published or
    withheld), the rest hidden regions the relations need. ``relations`` is a sparse 0/±1
    matrix whose rows are ``cell − Σ regions = 0``.
    """

    populations: list
    n_defined: int
    relations: object  # scipy.sparse.csr_matrix

    @property
    def n_cells(self) -> int:
        return len(self.populations)


def derive_relations(populations, universes: dict, rounds: int = 2) -> CellSystem:
    """Every additive relation between ``populations``, derived from their definitions.

    For each dimension ``d`` the populations are grouped by their constraints on the other
    dimensions (their *base*). Within one base, a population with categories ``S`` on ``d`` is
    cut by the smaller sets of the others into disjoint regions (the Venn regions of ``S``), and
    it equals the sum of its regions; each smaller set equals the sum of the regions inside it.
    A region that is no population of the list becomes a hidden cell (a non-negative unknown).

    Hidden cells take part in the families of the next round, which ties, e.g., "the group's
    respondents missing sex" to "everyone missing sex" (so a published zero of the latter
    bounds the former); ``rounds`` is how many passes (the attacker only gets stronger with
    more; two reach every relation between two-way cells and their one-way margins).

    Parameters
    ----------
    populations : sequence of Population
    universes : dict of dimension -> frozenset of categories (with MISSING and OTHER)
    rounds : int
    """
    from scipy import sparse

    cells = list(dict.fromkeys(populations))
    index = {p: i for i, p in enumerate(cells)}
    n_defined = len(cells)
    dims = sorted({d for p in cells for d, _ in p} | set(universes))
    rows, cols, vals = [], [], []
    n_rel = 0
    seen: set = set()

    def cell_id(pop) -> int:
        if pop not in index:
            index[pop] = len(cells)
            cells.append(pop)
        return index[pop]

    members_until = n_defined
    for _ in range(rounds):
        before = len(cells)
        for d in dims:
            n_rel = _relations_along(d, cells, members_until, universes, cell_id, seen,
                                     (rows, cols, vals), n_rel)
        if len(cells) == before:
            break
        members_until = len(cells)
    matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(n_rel, len(cells)))
    return CellSystem(populations=cells, n_defined=n_defined, relations=matrix)


def _relations_along(d, cells, members_until, universes, cell_id, seen, triplets, n_rel) -> int:
    """The relations of the families along dimension ``d`` (see :func:`derive_relations`)."""
    rows, cols, vals = triplets
    universe = universes.get(d)
    families: dict = {}
    for p in cells[:members_until]:
        constraint = dict(p)
        cats = frozenset(constraint.pop(d, ())) or None
        if cats is None:
            if universe is None:
                continue
            cats = universe
        base = tuple(sorted(constraint.items()))
        families.setdefault(base, {})[cats] = p
    for base, members in families.items():
        if len(members) < 2:
            continue
        sets = list(members)
        for parent in sets:
            children = [s for s in sets if s < parent]
            if not children:
                continue
            # Venn regions of the parent cut by its children
            signature: dict = {}
            for cat in sorted(parent):
                key = tuple(cat in s for s in children)
                signature.setdefault(key, set()).add(cat)
            regions = [frozenset(r) for r in signature.values()]
            region_ids = [
                cell_id(make_population({**dict(base), d: r}, universes)) for r in regions
            ]
            for whole in [parent, *children]:
                inside = [rid for r, rid in zip(regions, region_ids) if r <= whole]
                wid = cell_id(make_population({**dict(base), d: whole}, universes))
                if inside == [wid]:
                    continue
                key = (wid, tuple(sorted(inside)))
                if key in seen:
                    continue
                seen.add(key)
                rows.extend([n_rel] * (len(inside) + 1))
                cols.extend([wid, *inside])
                vals.extend([1.0] + [-1.0] * len(inside))
                n_rel += 1
    return n_rel


# ---------------------------------------------------------------------------------------------
# Counts from microdata


def positive_weight_rows(frame: pd.DataFrame, weight: str | None) -> np.ndarray:
    """Rows that count as respondents: a positive weight (no weight column: every row)."""
    if not weight or weight not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    w = pd.to_numeric(frame[weight], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.nan_to_num(w, nan=0.0) > 0


def membership(frame_codes: dict, populations, universes) -> np.ndarray:
    """Boolean matrix (rows × populations): which respondent is in which population."""
    n = len(next(iter(frame_codes.values()))) if frame_codes else 0
    out = np.ones((n, len(populations)), dtype=bool)
    for j, pop in enumerate(populations):
        for dim, cats in pop:
            values = frame_codes.get(dim)
            if values is None:
                out[:, j] &= MISSING in cats
                continue
            out[:, j] &= np.isin(values, list(cats))
    return out


def frame_categories(frame: pd.DataFrame, catalogue: Catalogue, dims) -> dict:
    """Each dimension's column as universe categories (catalogue id, MISSING or OTHER)."""
    out = {}
    for d in dims:
        if d not in frame.columns:
            continue
        values = frame[d].astype("string")
        universe = catalogue.universes.get(d)
        codes = values.fillna(MISSING).to_numpy(dtype=object)
        if universe is not None:
            codes = np.where(np.isin(codes, list(universe)), codes, OTHER)
        out[d] = codes.astype(str)
    return out


def crossings(dims_a, dims_b):
    """Ordered pairs of distinct dimensions (for enumerating two-way cells)."""
    return [(a, b) for a, b in itertools.product(dims_a, dims_b) if a != b]
