"""Suppression decided once per source × country over every cell the report can publish.

The *plan* of a source × country lists, for every indicator, the cells that are withheld and why.
It is computed from the microdata over the whole system of cells the chapters can publish
(:func:`report_populations`): everyone; every category of every profile dimension; every group
and its reference; each of those crossed with every category of the other dimensions and with
every admin1 area; and the four-cell unions behind the excess intersectional disparities. A
pattern that protects every primary cell when that whole system is published still protects it
when only a part is published (withholding more, or publishing less, only widens the attacker's
intervals), so every run of the same source × country applies the same plan
(:func:`analysis.disclosure.protect`) and runs that publish the same cell suppress it alike.

Secondary suppression (after Fischetti and Salazar-González, *Management Science* 45, 1999,
in the greedy form of τ-ARGUS's "modular" audit-and-repair loop): for each primary cell, cheapest
first, the LP attack (:func:`analysis.disclosure_attack.cell_bounds`) bounds its count; while the
interval is narrower than ``suppress_below``, the published cell with the smallest count among
those the optimal bound depends on (nonzero dual) is withheld too. Withholding only relaxes the
attacker's LP, so a cell once protected stays protected; the loop ends because every step
withholds one more cell. The same is done for the weighted count, which must reach the same
width relative to the cell's weighted count as its count does relative to its count.

Plans are cached per process and on disk (``ANALYSIS_DISCLOSURE_CACHE``, set by the pipeline to
a folder of the outputs) keyed by a hash of the microdata columns they read, the catalogue, the
thresholds and this code, so parallel runs of one source × country compute it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.disclosure_attack import LinkedLP
from analysis.disclosure_model import (
    RESPONDENTS,
    Catalogue,
    derive_relations,
    frame_categories,
    make_population,
    membership,
    positive_weight_rows,
)

AREA = "admin1_code"


def profile_dimensions() -> tuple[str, ...]:
    """Dimensions of the profile (one-way cells): ``uses.profile`` of ``params/groups.yml``,
    areas apart (they are planned as :data:`AREA`)."""
    from analysis.schema import load_dimension_uses

    return tuple(d for d in load_dimension_uses().profile if d != AREA)


def crossed_dimensions() -> tuple[str, ...]:
    """Dimensions crossed with the groups (chapter 3): ``uses.intersections`` of the catalogue."""
    from analysis.schema import load_dimension_uses

    return load_dimension_uses().intersections

#: Environment variable naming the folder of cached plans.
CACHE_ENV = "ANALYSIS_DISCLOSURE_CACHE"
_PLAN_VERSION = "3"
_MEMORY: dict = {}


class PlanError(ValueError):
    """Suppression could not be planned (the message says which cell and why)."""


@dataclass
class Plan:
    """Withheld cells of one source × country: ``withheld[indicator][population] = reason``.

    ``cells[indicator]`` holds every population of the planned system (a row of a table whose
    population is not there was not planned for, and is refused).
    """

    source: str
    country: str
    suppress_below: int
    withheld: dict = field(default_factory=dict)
    cells: dict = field(default_factory=dict)
    primary: int = 0
    secondary: int = 0
    published: int = 0
    #: CPU seconds the plan took to compute (for the benchmark: what suppression adds to a build)
    seconds: float = 0.0

    def reason(self, indicator: str, population) -> str | None:
        return self.withheld.get(indicator, {}).get(tuple(population))

    def covers(self, indicator: str, population) -> bool:
        return tuple(population) in self.cells.get(indicator, set())

    def to_json(self) -> dict:
        return {"source": self.source, "country": self.country,
                "suppress_below": self.suppress_below,
                "primary": self.primary, "secondary": self.secondary, "published": self.published,
                "seconds": round(self.seconds, 3),
                "withheld": {i: [[list(map(list, p)), r] for p, r in cells.items()]
                             for i, cells in self.withheld.items()},
                "cells": {i: [list(map(list, p)) for p in sorted(cells)]
                          for i, cells in self.cells.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Plan:
        def pop(p):
            return tuple((d, tuple(c)) for d, c in p)

        return cls(source=data["source"], country=data["country"],
                   suppress_below=int(data["suppress_below"]),
                   withheld={i: {pop(p): r for p, r in cells}
                             for i, cells in data["withheld"].items()},
                   cells={i: {pop(p) for p in cells} for i, cells in data["cells"].items()},
                   primary=data.get("primary", 0), secondary=data.get("secondary", 0),
                   published=data.get("published", 0), seconds=data.get("seconds", 0.0))


def report_populations(frame: pd.DataFrame, catalogue: Catalogue, percent: bool) -> list:
    """Every population the chapters can publish for one indicator of one source × country.

    ``percent``: the indicator is a percent indicator (crossed with dimensions and areas in
    chapters 3 and 4); otherwise only everyone, the one-way cells and group/reference.
    """
    universes = catalogue.universes
    present = [d for d in profile_dimensions() if d in frame.columns and frame[d].notna().any()]
    observed = {d: sorted(set(frame[d].dropna().astype(str))) for d in present}
    pops = [()]
    for d in present:
        pops += [make_population({d: {catalogue.category(d, c)}}, universes) for c in observed[d]]
    groups = [(gid, spec) for gid, spec in catalogue.groups.items()
              if spec[0] in frame.columns and frame[spec[0]].notna().any()]
    areas = (sorted(set(frame[AREA].dropna().astype(str)))
             if AREA in frame.columns else [])
    for gid, (dim, members, reference) in groups:
        sides = {"group": members, "reference": reference}
        pops += [make_population({dim: s}, universes) for s in sides.values()]
        if not percent:
            continue
        for other in crossed_dimensions():
            if other == dim or other not in observed or len(observed[other]) < 2:
                continue
            for s in sides.values():
                pops += [make_population({dim: s, other: {catalogue.category(other, c)}}, universes)
                         for c in observed[other]]
        for s in sides.values():
            pops += [make_population({dim: s, AREA: {a}}, universes) for a in areas]
        for hid, (hdim, hmembers, hreference) in groups:
            if hid != gid and hdim != dim:
                pops.append(make_population({dim: members | reference,
                                             hdim: hmembers | hreference}, universes))
    return list(dict.fromkeys(pops))


def _indicator_values(frame: pd.DataFrame, indicator: str) -> np.ndarray:
    if indicator == RESPONDENTS:
        return np.ones(len(frame))
    return pd.to_numeric(frame[indicator], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def plan_suppression(frame: pd.DataFrame, source: str, country: str, indicators: dict,
                     thresholds, catalogue: Catalogue | None = None) -> Plan:
    """Plan the suppression of every cell of one source × country (see the module notes).

    Parameters
    ----------
    frame : DataFrame
        The source's respondents in that country (processed common schema, ``attrs["design"]``).
    indicators : dict
        Indicator id -> catalogue entry (``unit`` "percent" gets the crossed cells).
    thresholds : analysis.disclosure.Thresholds
    """
    catalogue = catalogue or Catalogue.from_catalogue()
    if AREA in frame.columns:
        catalogue.observe(AREA, frame[AREA].dropna().astype(str).unique())
    atoms = frame.attrs.get(ATOMS)
    weight = (frame.attrs.get("design") or {}).get("weight")
    positive = positive_weight_rows(frame, weight)
    weights = (pd.to_numeric(frame[weight], errors="coerce").fillna(0.0).to_numpy(float)
               if weight and weight in frame.columns else np.ones(len(frame)))
    codes = frame_categories(frame, catalogue, (*profile_dimensions(), AREA))
    plan = Plan(source=source, country=country, suppress_below=thresholds.suppress_below)
    if atoms is not None:
        wanted = [RESPONDENTS] + [i for i in indicators if f"n:{i}" in frame.columns
                                  and frame[f"n:{i}"].sum() > 0]
    else:
        wanted = [RESPONDENTS] + [i for i in indicators if i in frame.columns
                                  and frame[i].notna().any()]
    systems: dict = {}
    for indicator in wanted:
        spec = indicators.get(indicator)
        percent = spec is not None and getattr(spec, "unit", None) == "percent"
        if percent not in systems:
            pops = report_populations(frame, catalogue, percent)
            system = derive_relations(pops, catalogue.universes)
            # every cell, hidden regions too: a deviation must keep them non-negative
            inside = membership(codes, system.populations, catalogue.universes)
            systems[percent] = (system, inside, {})
        system, inside, library = systems[percent]
        if atoms is not None:  # sums per combination of categories (a partitioned source)
            n, w = (frame[f"{k}:{indicator}"].to_numpy(float) @ inside for k in ("n", "w"))
            totals = [w]
            if indicator != RESPONDENTS and atoms.get(indicator, False):
                totals.append(frame[f"t:{indicator}"].to_numpy(float) @ inside)
        else:
            y = _indicator_values(frame, indicator)
            counted = positive & ~np.isnan(y)
            n = inside[counted].sum(axis=0).astype(float)
            w = weights[counted] @ inside[counted]
            totals = [w]
            if indicator != RESPONDENTS and np.nanmin(y, initial=0.0) >= 0:
                totals.append((weights * np.nan_to_num(y))[counted] @ inside[counted])
        withheld = _secondary(system, n, totals, thresholds.suppress_below, library)
        defined = system.populations[: system.n_defined]
        plan.withheld[indicator] = {defined[i]: r for i, r in withheld.items()}
        plan.cells[indicator] = set(defined)
        plan.primary += sum(r.startswith("primary") for r in withheld.values())
        plan.secondary += sum(r.startswith("secondary") for r in withheld.values())
        plan.published += system.n_defined - len(withheld)
    return plan


#: ``frame.attrs`` key marking a frame of *cell atoms* instead of respondents: one row per
#: combination of the planned dimensions' categories with, per indicator, the sums
#: ``n:<indicator>`` (respondents with a positive weight and a value), ``w:<indicator>`` (their
#: weights) and ``t:<indicator>`` (weights × values); the value is {indicator: values are
#: non-negative}. Every cell of the plan is a sum of atoms, so this is all a plan needs.
ATOMS = "disclosure_atoms"


def partitioned_atoms(source, country: str, indicators) -> pd.DataFrame:
    """The cell atoms of one country of a partitioned source, summed by DuckDB over its files.

    ``source``: :class:`analysis.sources.partitioned.PartitionedSource`. One pass over the
    Parquet partitions (only the planned dimensions, the weight and ``indicators`` are read);
    the result has one row per combination of categories present, so a census-scale source
    gets the same cross-table plan as one in memory (:func:`plan_suppression`).
    """
    import duckdb
    import pyarrow.parquet as pq

    files = source.files
    columns = set(pq.read_schema(files[0]).names) if files else set()
    dims = [d for d in (*profile_dimensions(), AREA) if d in columns]
    weight = (source.design or {}).get("weight")

    def q(name: str) -> str:
        return '"' + str(name).replace('"', '""') + '"'

    w = f"CAST({q(weight)} AS DOUBLE)" if weight and weight in columns else "1.0"
    positive = f"COALESCE({w}, 0) > 0"
    wanted = [RESPONDENTS] + [i for i in indicators if i in columns]
    select = [f"CAST({q(d)} AS VARCHAR) AS {q(d)}" for d in dims]
    for i in wanted:
        y = "1.0" if i == RESPONDENTS else f"CAST({q(i)} AS DOUBLE)"
        counted = f"{positive} AND {y} IS NOT NULL AND NOT isnan({y})"
        select += [f"SUM(CASE WHEN {counted} THEN 1 ELSE 0 END)::DOUBLE AS {q('n:' + i)}",
                   f"SUM(CASE WHEN {counted} THEN {w} ELSE 0 END)::DOUBLE AS {q('w:' + i)}",
                   f"SUM(CASE WHEN {counted} THEN {w} * {y} ELSE 0 END)::DOUBLE AS {q('t:' + i)}",
                   f"MIN(CASE WHEN {counted} THEN {y} END) AS {q('min:' + i)}"]
    group = f" GROUP BY {', '.join(q(d) for d in dims)}" if dims else ""
    con = duckdb.connect()
    try:
        atoms = con.execute(f"SELECT {', '.join(select)} FROM read_parquet(?) "
                            f"WHERE CAST(country AS VARCHAR) = ?{group}",
                            [list(files), str(country)]).df()
    finally:
        con.close()
    for d in dims:
        atoms[d] = atoms[d].astype("string")
    nonnegative = {i: bool(pd.isna(atoms[f"min:{i}"]).all() or atoms[f"min:{i}"].min() >= 0)
                   for i in wanted}
    atoms = atoms.drop(columns=[f"min:{i}" for i in wanted])
    atoms = atoms.sort_values(dims, kind="stable").reset_index(drop=True) if dims else atoms
    atoms.attrs[ATOMS] = nonnegative
    atoms.attrs["design"] = {"weight": None}
    return atoms


#: Reasons (the rule, never the count: a count in a reason narrows the attacker's interval).
PRIMARY_REASON = "primary: fewer than {suppress_below} respondents"
SECONDARY_REASON = ("secondary: withheld so that a suppressed cell cannot be recovered "
                    "from the published tables")


# ---------------------------------------------------------------------------------------------
# Secondary suppression: audit and repair, headline cells last


#: Indicators whose primary cells overlap at least this much (Jaccard) share a pattern: the
#: later one starts from the earlier one's withheld cells and reuses its proofs.
_ALIKE = 0.9
#: Patterns remembered per cell system.
_PATTERNS = 8


def cell_depth(system) -> np.ndarray:
    """How deep each defined cell is: 0 everyone, 1 a one-way cell (a group, its reference, a
    category), 2 a crossing or an area (the last, as a tier, also for deeper cells)."""
    return np.array([min(len(p), 2) for p in system.populations[: system.n_defined]])


class _Quantity:
    """One protected quantity of one indicator: the count, weighted count or weighted total."""

    def __init__(self, program, values, counts, suppress_below, relative: bool):
        self.program = program
        self.values = values
        self.counts = counts
        self.suppress_below = suppress_below
        self.relative = relative

    def need(self, cell: int) -> float:
        """Width the interval of ``cell`` must reach (relative to its value for weighted ones)."""
        if not self.relative:
            return float(self.suppress_below)
        return abs(self.values[cell]) * self.suppress_below / max(self.counts[cell], 1.0)


def _secondary(system, n: np.ndarray, totals, suppress_below: int,
               library: dict | None = None) -> dict:
    """Withheld defined cells (index -> reason): primary ones, then complements until protected.

    Every withheld cell, complements included, ends with a count interval at least
    ``suppress_below`` wide and intervals of its weighted count and weighted total
    (``totals``: value vectors over every cell of the system, hidden regions included) at
    least as wide relative to their value as ``suppress_below`` is relative to its count.

    Audit and repair: each withheld cell, smallest first, is attacked
    (:class:`~analysis.disclosure_attack.LinkedLP`); while an interval is too narrow, one of the
    published cells its optimal bound depends on (nonzero dual) is withheld too — the deepest
    first (crossings and areas before one-way cells, those before everyone: the headline
    numbers of a group and its reference are what readers come for), then the smallest — and
    it is attacked again. ``library`` carries what one indicator of a cell system teaches the
    next (updated in place): the LP optima found, as deviations from the true values, prove
    widths for the next indicator without a solve whenever they stay feasible for its values
    and move only cells it withholds.
    """
    defined = system.n_defined
    known = np.ones(system.n_cells, dtype=bool)
    known[defined:] = False
    primary = np.flatnonzero(n[:defined] < suppress_below)
    out = {int(i): PRIMARY_REASON.format(suppress_below=suppress_below) for i in primary}
    library = {} if library is None else library
    if primary.size == 0:
        return out
    # the most alike indicator planned before (by its primary cells), if alike enough
    mine = frozenset(out)
    alike = max(library.get("patterns", ()), default=None,
                key=lambda p: len(p[0] & mine) / len(p[0] | mine))
    if alike is not None and len(alike[0] & mine) / len(alike[0] | mine) < _ALIKE:
        alike = None
    if alike is not None:
        for c in alike[1]:
            out.setdefault(int(c), SECONDARY_REASON)
    known[list(out)] = False
    depth = cell_depth(system)
    quantities = [_Quantity(LinkedLP(system, n, known), n, n, suppress_below, False)]
    quantities += [_Quantity(LinkedLP(system, v, known), v, n, suppress_below, True)
                   for v in totals]
    for q, deviations in zip(quantities, alike[2] if alike is not None else ()):
        for y in deviations:
            q.program.add_deviation(y)
    queue = sorted(out, key=lambda i: (n[i], i))
    position = 0
    while position < len(queue):
        target = queue[position]
        position += 1
        for q in quantities:
            program, need = q.program, q.need(target) * (1 - 1e-9)
            while True:
                if program.proven_width(target) >= need:
                    break  # shown by feasible points already seen: no solve needed
                high, above = program.extreme(target, maximize=True)
                if program.proven_width(target) >= need:
                    break  # the upper bound alone, against the true value, is wide enough
                low, below = program.extreme(target, maximize=False)
                if high - low >= need:
                    break
                candidates = [c for c in sorted(above | below) if c < defined and program.known[c]]
                if not candidates:
                    raise PlanError(
                        f"cannot protect a withheld cell (population {system.populations[target]})"
                        ": no published cell left to withhold")
                chosen = min(candidates, key=lambda c: (-depth[c], n[c], c))
                for other in quantities:
                    other.program.withhold(chosen)
                out[int(chosen)] = SECONDARY_REASON
                queue.append(int(chosen))  # a complement must not be recoverable either
    # Withholding more only relaxes the attacker's LP: an interval once wide enough stays so,
    # and every withheld cell, complements included, has been checked.
    if alike is None:  # a new seed (an indicator planned from its seed does not seed others:
        # its pattern holds the seed's cells and more, and chains of those only grow)
        patterns = library.setdefault("patterns", [])
        patterns.append((mine, sorted(out), [q.program.deviations() for q in quantities]))
        del patterns[:-_PATTERNS]
    return out


# ---------------------------------------------------------------------------------------------
# Cache


def _frame_hash(frame: pd.DataFrame, indicators, thresholds, catalogue: Catalogue) -> str:
    weight = (frame.attrs.get("design") or {}).get("weight")
    columns = [c for c in (*profile_dimensions(), AREA, weight, *indicators) if c and c in frame.columns]
    if ATOMS in frame.attrs:  # cell atoms: every column is what the plan reads
        columns = list(frame.columns)
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(frame[columns], index=False).to_numpy().tobytes())
    digest.update(json.dumps(columns).encode())
    digest.update(json.dumps([thresholds.suppress_below, _PLAN_VERSION,
                              sorted((d, sorted(u)) for d, u in catalogue.universes.items()),
                              sorted((g, s[0], sorted(s[1]), sorted(s[2]))
                                     for g, s in catalogue.groups.items())]).encode())
    digest.update(_CODE_HASH.encode())
    return digest.hexdigest()[:24]


# The code the plans were computed with, as imported (not as it may be on disk later on).
_CODE_HASH = hashlib.sha256(b"".join(
    Path(__file__).with_name(name).read_bytes()
    for name in ("disclosure_plan.py", "disclosure_model.py", "disclosure_attack.py"))).hexdigest()


def plan_for(frame: pd.DataFrame, source: str, country: str, indicators: dict, thresholds,
             catalogue: Catalogue | None = None) -> Plan:
    """:func:`plan_suppression`, cached in memory and in ``$ANALYSIS_DISCLOSURE_CACHE``."""
    catalogue = catalogue or Catalogue.from_catalogue()
    key = _frame_hash(frame, indicators, thresholds, catalogue)
    name = f"{source}.{country}.{key}.json"
    if name in _MEMORY:
        return _MEMORY[name]
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        plan = _timed_plan(frame, source, country, indicators, thresholds, catalogue)
        _MEMORY[name] = plan
        return plan
    path = Path(folder) / name
    plan = _cached_plan(path, name)
    if plan is not None:
        return plan
    path.parent.mkdir(parents=True, exist_ok=True)
    # One computation per source × country: parallel runs that need the same plan wait for the
    # first one (an exclusive lock per plan file) and then read what it wrote.
    with _plan_lock(path):
        plan = _cached_plan(path, name)
        if plan is not None:
            return plan
        plan = _timed_plan(frame, source, country, indicators, thresholds, catalogue)
        _MEMORY[name] = plan
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(plan.to_json()))
        tmp.replace(path)  # atomic: a reader never sees half a plan
    return plan


def _cached_plan(path: Path, name: str) -> Plan | None:
    """The plan stored in the cache file ``path``, also kept in memory under ``name``.

    Parameters
    ----------
    path
        A plan file in ``$ANALYSIS_DISCLOSURE_CACHE`` (written by :func:`plan_for`).
    name
        Its file name, the key of the in-memory cache.

    Returns
    -------
    Plan or None
        None when there is no such file or it cannot be read as a plan (a damaged cache file is
        recomputed by the caller, never trusted).
    """
    if not path.exists():
        return None
    try:
        plan = Plan.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError):
        return None
    _MEMORY[name] = plan
    return plan


def _timed_plan(frame, source, country, indicators, thresholds, catalogue) -> Plan:
    """:func:`plan_suppression` with the CPU seconds it took (``Plan.seconds``)."""
    start = time.process_time()
    plan = plan_suppression(frame, source, country, indicators, thresholds, catalogue)
    plan.seconds = time.process_time() - start
    return plan


@contextlib.contextmanager
def _plan_lock(path: Path):
    """An exclusive advisory lock (``flock``) on ``<plan>.lock``, released when the process exits
    too (a killed run never blocks the others); a no-op where ``fcntl`` is missing."""
    try:
        import fcntl
    except ImportError:  # not POSIX: parallel runs may compute the same plan twice (still correct)
        yield
        return
    with open(path.with_suffix(".lock"), "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
