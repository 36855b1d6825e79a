"""Disclosure control: small-cell suppression and the output gate.

Every published table passes through :func:`apply_suppression` and then the gate
:func:`assert_publishable`. The rules follow DHS and MICS practice:

- **Primary suppression.** A cell estimated from fewer than ``suppress_below`` (default 25)
  unweighted cases is withheld: its row stays, ``flag == "suppressed"`` and every number in it
  is blanked. A cell with ``suppress_below <= n < caution_below`` (default 25–49) is shown with
  ``flag == "caution"``. The thresholds are read from ``params/report.yml``, key
  ``disclosure: {suppress_below: 25, caution_below: 50}``, when that file has the key.
- **Secondary suppression.** A suppressed cell must not be recoverable from what is published
  beside it: a margin minus its other children, the complement of a binary dimension, or any
  linear combination of published margins (see :func:`secondary_suppression`).
- **Derived measures.** A gap, ratio or summary measure computed from a suppressed or missing
  input cell is suppressed itself (:func:`suppress_derived`).

Suppressed stays distinct from missing: a row whose estimate is blank but whose flag is ``ok``
or ``caution`` is *not available* (e.g. no non-missing answers); a withheld row has flag
``suppressed``. Each suppressed row says why in the diagnostic column ``suppression_reason``
(dropped by :func:`analysis.tables.conform` when the table is written).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from analysis import config
from analysis.disclosure_plan import PRIMARY_REASON, SECONDARY_REASON
from analysis.tables import CELL_SEPARATOR, NUMERIC_COLUMNS, split_cell

#: DHS/MICS defaults: fewer than 25 unweighted cases suppressed, 25–49 shown with caution.
DEFAULT_SUPPRESS_BELOW = 25
DEFAULT_CAUTION_BELOW = 50

#: Columns that identify one table (one indicator for one group in one country and source).
TABLE_KEYS = ["source", "country", "group", "indicator"]

#: Diagnostic column saying why a row was suppressed.
REASON_COLUMN = "suppression_reason"

# A suppressed cell counts as recovered when its coordinate in every solution of the published
# linear system is fixed to within this tolerance (the system has coefficients 0 and ±1), and an
# eigenvalue of the system's Gram matrix counts as zero below this fraction of the largest.
_DETERMINED_TOLERANCE = 1e-7
_NULL_EIGENVALUE = 1e-10

# Most protection patterns (choices of alternative categories) tried for one cell.
_MAX_PATTERNS = 2000


class DisclosureError(ValueError):
    """A table would disclose a small cell, or disclosure settings are invalid."""


@dataclass(frozen=True)
class Thresholds:
    """Disclosure thresholds on the unweighted number of cases behind an estimate.

    Attributes
    ----------
    suppress_below : int
        Cells with ``n_unweighted < suppress_below`` are suppressed (default 25).
    caution_below : int
        Cells with ``suppress_below <= n_unweighted < caution_below`` are flagged
        ``caution`` (default 50).
    """

    suppress_below: int = DEFAULT_SUPPRESS_BELOW
    caution_below: int = DEFAULT_CAUTION_BELOW

    def __post_init__(self):
        if not (isinstance(self.suppress_below, (int, np.integer)) and self.suppress_below >= 1):
            raise DisclosureError(
                f"disclosure threshold suppress_below={self.suppress_below!r} must be a positive integer"
            )
        if not (
            isinstance(self.caution_below, (int, np.integer))
            and self.caution_below >= self.suppress_below
        ):
            raise DisclosureError(
                f"disclosure threshold caution_below={self.caution_below!r} must be an integer "
                f">= suppress_below={self.suppress_below}"
            )


def load_thresholds(report_file: str | Path | None = None) -> Thresholds:
    """Read the thresholds from ``params/report.yml`` (key ``disclosure:``), else the defaults.

    Parameters
    ----------
    report_file : path, optional
        Defaults to :data:`analysis.config.REPORT_FILE`. A missing file or a file without the
        ``disclosure`` key gives the DHS/MICS defaults (25 and 50).
    """
    path = Path(report_file) if report_file is not None else config.REPORT_FILE
    if not path.exists():
        return Thresholds()
    stat = path.stat()
    return _thresholds_of(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _thresholds_of(file: str, mtime_ns: int, size: int) -> Thresholds:
    # Cached per file version: estimators call this for every table they protect.
    path = Path(file)
    settings = (yaml.safe_load(path.read_text()) or {}).get("disclosure") or {}
    if not isinstance(settings, dict):
        raise DisclosureError(
            f"{path}: key 'disclosure' must be a mapping like "
            "{suppress_below: 25, caution_below: 50}"
        )
    unknown = sorted(set(settings) - {"suppress_below", "caution_below"})
    if unknown:
        raise DisclosureError(
            f"{path}: unknown keys {unknown} under 'disclosure'; "
            "allowed are suppress_below and caution_below"
        )
    return Thresholds(
        suppress_below=int(settings.get("suppress_below", DEFAULT_SUPPRESS_BELOW)),
        caution_below=int(settings.get("caution_below", DEFAULT_CAUTION_BELOW)),
    )


#: Environment variable holding the thresholds of the run being executed, as JSON
#: (``{"suppress_below": 25, "caution_below": 50}``); the pipeline sets it from the run's own
#: report file (``--config``), so that notebooks and the output gate apply the same rule.
THRESHOLDS_ENV = "ANALYSIS_DISCLOSURE_THRESHOLDS"


def run_thresholds() -> Thresholds:
    """The thresholds of the current run: ``$ANALYSIS_DISCLOSURE_THRESHOLDS`` when the pipeline
    set it, else ``params/report.yml`` (interactive use), else the defaults."""
    import json
    import os

    text = os.environ.get(THRESHOLDS_ENV)
    if not text:
        return load_thresholds()
    try:
        settings = json.loads(text)
    except ValueError as exc:
        raise DisclosureError(
            f"environment variable {THRESHOLDS_ENV} is not JSON like "
            '{"suppress_below": 25, "caution_below": 50}'
        ) from exc
    return resolve_thresholds(settings)


def resolve_thresholds(thresholds=None) -> Thresholds:
    """``None`` → :func:`run_thresholds` (the run's config); a dict or Thresholds as given."""
    if thresholds is None:
        return run_thresholds()
    if isinstance(thresholds, Thresholds):
        return thresholds
    if isinstance(thresholds, dict):
        unknown = sorted(set(thresholds) - {"suppress_below", "caution_below"})
        if unknown:
            raise DisclosureError(
                f"disclosure thresholds: unknown keys {unknown}; "
                "allowed are suppress_below and caution_below"
            )
        return Thresholds(**thresholds)
    raise DisclosureError(f"thresholds={thresholds!r}: give a Thresholds, a dict or None")


def _require_columns(table: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DisclosureError(f"{what}: table lacks columns {missing}")


def _numeric_columns(table: pd.DataFrame) -> list[str]:
    """Every column that carries a number: the schema's and any diagnostic (deff, cv, n_missing...)."""
    extra = [
        c
        for c in table.columns
        if c not in NUMERIC_COLUMNS
        and pd.api.types.is_numeric_dtype(table[c])
        and not pd.api.types.is_bool_dtype(table[c])
    ]
    return [c for c in NUMERIC_COLUMNS if c in table.columns] + extra


def _blank(table: pd.DataFrame, rows: pd.Series, reason) -> pd.DataFrame:
    """Flag ``rows`` suppressed, blank every number in them and record the reason."""
    if not rows.any():
        return table
    for column in _numeric_columns(table):
        if pd.api.types.is_integer_dtype(
            table[column]
        ) and not pd.api.types.is_extension_array_dtype(table[column]):
            table[column] = table[column].astype("Int64")  # so that it can hold a blank
        table.loc[rows, column] = np.nan if table[column].dtype.kind == "f" else pd.NA
    table["flag"] = table["flag"].astype("string")
    table.loc[rows, "flag"] = "suppressed"
    table.loc[rows, REASON_COLUMN] = reason if isinstance(reason, str) else reason[rows]
    return table


def _prepare(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    if "flag" not in out.columns:
        out["flag"] = "ok"
    out["flag"] = out["flag"].astype("string").fillna("ok")
    if REASON_COLUMN not in out.columns:
        out[REASON_COLUMN] = pd.Series(pd.NA, index=out.index, dtype="string")
    else:
        out[REASON_COLUMN] = out[REASON_COLUMN].astype("string")
    return out


def primary_suppression(table: pd.DataFrame, thresholds=None) -> pd.DataFrame:
    """Suppress cells with too few unweighted cases and flag the next band ``caution``.

    Parameters
    ----------
    table : DataFrame
        A result-schema table (extra diagnostic columns are kept and blanked too).
    thresholds : Thresholds, dict or None
        ``None`` reads ``params/report.yml`` (:func:`load_thresholds`).

    Returns
    -------
    DataFrame
        A copy where rows with ``n_unweighted < suppress_below`` have ``flag == "suppressed"``
        and all numbers blanked, rows with ``n_unweighted < caution_below`` that were ``ok`` are
        ``caution``. A row with an estimate but no ``n_unweighted`` cannot be checked and is
        suppressed ("unknown n"). A row with neither stays as it is: *not available*.
    """
    limits = resolve_thresholds(thresholds)
    _require_columns(table, ["n_unweighted", "estimate"], "primary suppression")
    out = _prepare(table)
    n = pd.to_numeric(out["n_unweighted"], errors="coerce")
    has_number = pd.to_numeric(out["estimate"], errors="coerce").notna()
    already = out["flag"] == "suppressed"
    small = (n < limits.suppress_below).fillna(False) & ~already
    unknown = n.isna() & has_number & ~already
    reasons = pd.Series(pd.NA, index=out.index, dtype="string")
    # The rule, never the count: a count in the reason narrows what an attacker must guess.
    reasons[small] = PRIMARY_REASON.format(suppress_below=limits.suppress_below)
    reasons[unknown] = "primary: the number of respondents is unknown, so it cannot be checked"
    suppress = small | unknown
    caution = (
        (n >= limits.suppress_below) & (n < limits.caution_below) & (out["flag"] == "ok")
    ).fillna(False)
    out.loc[caution, "flag"] = "caution"
    return _blank(out, suppress, reasons)


# ---------------------------------------------------------------------------------------------
# Secondary suppression: the linear system of published margins


#: Markers of a derived row (a contrast between cells), which is not a cell of its breakdown.
CONTRAST_MARKERS = (" vs ", " − ", " ÷ ")


def _coordinates(breakdown, cell) -> frozenset | None:
    """The (dimension, category) pairs of one cell; the whole population is the empty set.

    ``None`` for a row that is not a cell of its breakdown: a contrast between cells (its label
    holds " vs ", " − " or " ÷ ") or a summary over a breakdown (cell ``"all"`` of a named
    breakdown). Such rows take no part in the margin relations; derived measures are protected by
    :func:`suppress_derived` instead.
    """
    whole = pd.isna(breakdown) or str(breakdown) in ("", "all")
    if pd.isna(cell) or str(cell) == "all":
        return frozenset() if whole else None
    if whole or any(marker in str(cell) for marker in CONTRAST_MARKERS):
        return None
    dims = split_cell(str(breakdown))
    cats = split_cell(str(cell))
    if len(dims) != len(cats):
        raise DisclosureError(
            f"breakdown {breakdown!r} has {len(dims)} dimensions but cell {cell!r} has "
            f"{len(cats)} categories (joined with {CELL_SEPARATOR!r}); fix the table's labels"
        )
    return frozenset(zip(dims, cats))


def margin_relations(breakdowns, cells) -> np.ndarray:
    """The additive relations between the cells of one table, as rows of a 0/±1 matrix.

    For every published cell ``p`` (dimensions ``B``) and every other breakdown ``D`` of the table
    with ``D ⊋ B``, the cells of ``D`` that agree with ``p`` on ``B`` partition ``p``'s domain, so

        value(p) − Σ value(children) = 0

    holds for unweighted counts, weighted counts and weighted totals (estimate × n_weighted),
    hence a mean is recoverable whenever these are. The whole population (cell ``"all"``) is
    the parent of every breakdown.

    Returns
    -------
    ndarray, shape (n_relations, n_cells)
    """
    coords = [_coordinates(b, c) for b, c in zip(breakdowns, cells)]
    dims = [None if cs is None else frozenset(d for d, _ in cs) for cs in coords]
    by_breakdown: dict[frozenset, list[int]] = {}
    for i, d in enumerate(dims):
        if d is not None:
            by_breakdown.setdefault(d, []).append(i)
    rows = []
    for parent, (pcoords, pdims) in enumerate(zip(coords, dims)):
        if pdims is None:
            continue
        for bdims, members in by_breakdown.items():
            if not (pdims < bdims):
                continue
            children = [i for i in members if pcoords <= coords[i]]
            if children:
                row = np.zeros(len(coords))
                row[parent] = 1.0
                row[children] = -1.0
                rows.append(row)
    return np.array(rows).reshape(len(rows), len(coords))


def determined_cells(relations: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """Which unknown cells are fixed by the published cells through ``relations``.

    A withheld value ``x_j`` is recoverable exactly when every solution of the linear system
    ``relations @ x = 0`` with the published values plugged in has the same ``x_j``: that is,
    when the null space of the relations restricted to the unknown columns is zero at ``j``.

    Parameters
    ----------
    relations : ndarray (n_relations, n_cells)
    unknown : bool ndarray (n_cells,)

    Returns
    -------
    bool ndarray (n_cells,), True for unknown cells that can be recovered.
    """
    out = np.zeros(len(unknown), dtype=bool)
    idx = np.flatnonzero(unknown)
    if idx.size == 0:
        return out
    sub = relations[:, idx]
    sub = sub[np.any(sub != 0, axis=1)]
    # Peel: a relation with a single withheld cell gives it away; that cell is then known too.
    open_columns = np.ones(idx.size, dtype=bool)
    while sub.shape[0]:
        nonzero = sub[:, open_columns] != 0
        single = nonzero.sum(axis=1) == 1
        if not single.any():
            break
        solved = np.flatnonzero(open_columns)[np.unique(np.argmax(nonzero[single], axis=1))]
        out[idx[solved]] = True
        open_columns[solved] = False
        sub = sub[(sub[:, open_columns] != 0).any(axis=1)]
    if sub.shape[0] == 0 or not open_columns.any():
        return out
    columns = np.flatnonzero(open_columns)
    sub = sub[:, columns]
    # The rest, one connected block of cells at a time (small dense problems): the null space of
    # the 0/±1 system from the eigenvectors of its integer Gram matrix.
    gram = sub.T @ sub
    n_blocks, block = connected_components(sparse.csr_matrix(gram != 0), directed=False)
    for b in range(n_blocks):
        members = np.flatnonzero(block == b)
        values, vectors = np.linalg.eigh(gram[np.ix_(members, members)])
        null = vectors[:, values <= _NULL_EIGENVALUE * max(values.max(), 1.0) * len(members)]
        if null.shape[1] == 0:
            out[idx[columns[members]]] = True
        else:
            pinned = np.linalg.norm(null, axis=1) < _DETERMINED_TOLERANCE
            out[idx[columns[members[pinned]]]] = True
    return out


def _table_groups(table: pd.DataFrame, keys, identical_once: bool = False) -> list[np.ndarray]:
    """Row positions of each table (one indicator/group/country/source; split by method if needed).

    ``identical_once``: a row repeated identically (two chapters stacked) is kept once — for the
    gate's check only; suppression must see every row, so that it blanks every copy.
    """
    keys = [k for k in (keys if keys is not None else TABLE_KEYS) if k in table.columns]
    frame = table.reset_index(drop=True)
    if keys:
        groups = frame.groupby(keys, dropna=False, sort=False).indices.values()
    else:
        groups = [np.arange(len(frame))]
    # the cell labels of every row, built once (per table they cost a frame copy and two joins)
    breakdowns, cells = frame["breakdown"].astype(str), frame["cell"].astype(str)
    split_labels = (breakdowns + "\x00" + cells).to_numpy()
    shown_labels = (breakdowns + " / " + cells).to_numpy()

    def repeated(labels: np.ndarray, positions: np.ndarray) -> bool:
        return len(set(labels[positions].tolist())) < len(positions)

    out = []
    for positions in groups:
        positions = np.asarray(positions)
        if "method" in frame.columns and repeated(split_labels, positions):
            for sub in frame.iloc[positions].groupby("method", dropna=False, sort=False).indices.values():
                out.append(positions[np.asarray(sub)])
        else:
            out.append(positions)
    same = [c for c in (*NUMERIC_COLUMNS, "breakdown", "cell", "flag", "method") if c in frame.columns]
    for k, positions in enumerate(out):
        if not repeated(shown_labels, positions):
            continue
        part = frame.iloc[positions]
        if identical_once:
            # the same row published twice (two chapters stacked) adds nothing: check it once
            positions = positions[~part.duplicated(subset=same).to_numpy()]
            out[k] = positions
            part = frame.iloc[positions]
        labels = pd.Series(shown_labels[positions], index=part.index)
        if labels.duplicated().any():
            first = part[labels.duplicated()].iloc[0]
            raise DisclosureError(
                f"table for indicator {first.get('indicator')!r} has more than one row for "
                f"breakdown {first['breakdown']!r} cell {first['cell']!r}; secondary suppression "
                "needs one row per cell (split the table by statistic first)"
            )
    return out


class _Structure:
    """The cells of one table by coordinates, for building protection patterns."""

    def __init__(self, breakdowns, cells):
        parsed = [_coordinates(b, c) for b, c in zip(breakdowns, cells)]
        self.coords = [None if p is None else dict(p) for p in parsed]
        self.dims = [None if c is None else frozenset(c) for c in self.coords]
        self.index = {frozenset(c.items()): i for i, c in enumerate(self.coords) if c is not None}
        self.breakdowns = {d for d in self.dims if d is not None}
        self.levels: dict[str, list[str]] = {}
        for c in self.coords:
            for d, v in (c or {}).items():
                if v not in self.levels.setdefault(d, []):
                    self.levels[d].append(v)

    def pattern(self, target: int, alternatives: dict, extra: dict) -> list[int] | None:
        """Cells of the hypercube through ``target`` (see :func:`_hypercube_protection`)."""
        own = self.coords[target]
        dims = sorted(own)
        members = []
        for finer in self.breakdowns:
            if not self.dims[target] <= finer:
                continue
            fixed = {d: extra[d] for d in finer - self.dims[target]}
            for corner in itertools.product((False, True), repeat=len(dims)):
                key = {d: (alternatives[d] if flip else own[d]) for d, flip in zip(dims, corner)}
                key.update(fixed)
                row = self.index.get(frozenset(key.items()))
                if row is None:
                    return None
                members.append(row)
        return members


def _hypercube_protection(structure: _Structure, target: int, unknown, n_unweighted):
    """The cheapest hypercube of cells whose withholding hides ``target`` (or None).

    For a cell ``c`` of breakdown ``D``, pick for each dimension of ``D`` another category
    ``a_d``, and for each dimension of the finer breakdowns one category ``x_e``. Adding ``+δ`` to
    the corners of the box ``{c_d, a_d}^D`` with an even number of switched categories and ``−δ``
    to the others, in ``D`` and in every finer breakdown (with the extra dimensions fixed at
    ``x_e``), leaves every margin and every sum of children unchanged. So when those cells are all
    withheld, ``c`` can take any value consistent with what is published (the hypercube method
    of statistical disclosure control, extended to a hierarchy of margins). The cost of a pattern
    is the number of unweighted cases newly withheld.
    """
    own = structure.coords[target]
    if own is None:
        return None
    finer_dims = set().union(*(b for b in structure.breakdowns if structure.dims[target] <= b))
    extra_dims = sorted(finer_dims - set(own))
    choices = [[a for a in structure.levels[d] if a != own[d]] for d in sorted(own)]
    choices += [list(structure.levels[d]) for d in extra_dims]
    if any(not options for options in choices):
        return None
    best = None
    names = sorted(own) + extra_dims
    sizes = np.where(np.isfinite(n_unweighted), n_unweighted, 1e12)
    for combo in itertools.islice(itertools.product(*choices), _MAX_PATTERNS):
        picked = dict(zip(names, combo))
        members = structure.pattern(
            target, {d: picked[d] for d in own}, {d: picked[d] for d in extra_dims}
        )
        if members is None:
            continue
        new = [m for m in set(members) if not unknown[m]]
        cost = float(sum(sizes[m] for m in new))
        if best is None or cost < best[0]:
            best = (cost, new)
    return None if best is None else best[1]


def _choose_protector(relations, unknown, target, n_unweighted, breakdowns) -> int | None:
    """Pick the published cell to withhold so that ``target`` is no longer recoverable.

    Among the published cells sharing a relation with ``target``, prefer a sibling (same
    breakdown as ``target``) over a margin, then one in a relation with fewer withheld cells,
    then the one with the fewest unweighted cases.
    """
    involved = relations[:, target] != 0
    best = None
    for r in np.flatnonzero(involved):
        members = np.flatnonzero(relations[r] != 0)
        published = [m for m in members if not unknown[m]]
        if not published:
            continue
        hidden = int(unknown[members].sum())
        for m in published:
            sibling = breakdowns[m] == breakdowns[target]
            size = n_unweighted[m] if np.isfinite(n_unweighted[m]) else np.inf
            key = (not sibling, hidden, size, m)
            if best is None or key < best[0]:
                best = (key, m)
    if best is None:
        # Recovered only through a chain of relations: protect the smallest published cell
        # that shares any relation with a withheld cell.
        touching = np.any(relations[:, unknown] != 0, axis=1)
        candidates = np.flatnonzero(np.any(relations[touching] != 0, axis=0) & ~unknown)
        if candidates.size == 0:
            return None
        sizes = np.where(np.isfinite(n_unweighted[candidates]), n_unweighted[candidates], np.inf)
        return int(candidates[np.argmin(sizes)])
    return int(best[1])


def _protect(relations, structure, unknown, n_unweighted, breakdowns, cells) -> dict[int, str]:
    """Withhold cells (in place in ``unknown``) until no withheld cell is determined.

    First a hypercube for each exposed cell, finest breakdowns first; then, for anything still
    exposed, the published sibling (else margin) with the fewest cases. Returns the newly
    withheld rows with the cell each protects.
    """
    added: dict[int, str] = {}
    order = sorted(
        np.flatnonzero(unknown),
        key=lambda i: (
            -len(structure.dims[i] or ()),
            n_unweighted[i] if np.isfinite(n_unweighted[i]) else np.inf,
            i,
        ),
    )
    for target in order:
        if not determined_cells(relations, unknown)[target]:
            continue
        members = _hypercube_protection(structure, int(target), unknown, n_unweighted)
        for m in members or []:
            unknown[m] = True
            added[m] = f"{breakdowns[target]} = {cells[target]}"
    while True:
        exposed = np.flatnonzero(determined_cells(relations, unknown))
        if exposed.size == 0:
            return added
        target = int(exposed[0])
        protector = _choose_protector(relations, unknown, target, n_unweighted, breakdowns)
        if protector is None:  # cannot happen for consistent additive tables; fail loudly
            raise DisclosureError(
                f"secondary suppression could not protect cell {cells[target]!r} of "
                f"breakdown {breakdowns[target]!r}"
            )
        unknown[protector] = True
        added[protector] = f"{breakdowns[target]} = {cells[target]}"


def secondary_suppression(table: pd.DataFrame, keys=None) -> pd.DataFrame:
    """Withhold further cells until no suppressed cell can be recovered from the published ones.

    The rule. Within one table (same source, country, group and indicator), every cell of a
    breakdown and every cell of its margins are tied by additive relations (a margin equals the
    sum of its children; see :func:`margin_relations`). These hold for the unweighted count, the
    weighted count and the weighted total (estimate × weighted count), so a withheld mean or count
    could be recovered by subtraction from a published margin and its published siblings, from
    the complement of a binary dimension, or from any combination of published margins. After
    primary suppression, for each withheld cell that the published cells determine exactly (its
    value is the same in every solution of the linear system of relations;
    :func:`determined_cells`), finest breakdowns first:

    1. withhold the cheapest *hypercube* through it (:func:`_hypercube_protection`): a box of
       cells in its breakdown, switching each dimension to one other category, continued into
       every finer breakdown at fixed categories; margins coarser than the cell stay published;
    2. if a cell is still determined (e.g. a pattern ran out of cells), withhold the published
       sibling with the fewest unweighted cases in a relation that exposes it (a margin only
       when no sibling is left), and check again,

    until none is determined. This guarantees that no withheld value can be solved from the
    published counts, totals and means; it does not guard against interval (bounds) attacks
    on counts. Numbers that are published although blank (a *not available* estimate) are
    treated as known, which errs on the side of withholding more.

    Parameters
    ----------
    table : DataFrame
        A result-schema table after :func:`primary_suppression`.
    keys : list of str, optional
        Columns that identify one table; default :data:`TABLE_KEYS` (rows with duplicate
        breakdown/cell inside a table are split by ``method``).
    """
    _require_columns(table, ["breakdown", "cell", "flag"], "secondary suppression")
    out = _prepare(table).reset_index(drop=True)
    n_all = (
        pd.to_numeric(out.get("n_unweighted"), errors="coerce").to_numpy(dtype=float)
        if "n_unweighted" in out.columns
        else np.full(len(out), np.nan)
    )
    newly = np.zeros(len(out), dtype=bool)
    reasons = out[REASON_COLUMN].copy()
    cache: dict = {}
    for positions in _table_groups(out, keys):
        part = out.iloc[positions]
        unknown = (part["flag"] == "suppressed").to_numpy()
        if not unknown.any():
            continue
        relations = margin_relations(part["breakdown"].to_list(), part["cell"].to_list())
        if relations.shape[0] == 0:
            continue
        n_part = n_all[positions]
        breakdowns = part["breakdown"].astype(str).to_numpy()
        cells = part["cell"].astype(str).to_numpy()
        primary = unknown.copy()
        key = (tuple(breakdowns), tuple(cells), primary.tobytes())
        if key in cache:  # same structure, same primary cells: withhold the same cells
            unknown, protected_by = cache[key][0].copy(), cache[key][1]
        else:
            protected_by = _protect(
                relations, _Structure(breakdowns, cells), unknown, n_part, breakdowns, cells
            )
            cache[key] = (unknown.copy(), protected_by)
        for row in protected_by:
            newly[positions[row]] = True
            reasons.iloc[positions[row]] = SECONDARY_REASON
    out[REASON_COLUMN] = reasons
    return _blank(out, pd.Series(newly, index=out.index), reasons)


def apply_suppression(
    table: pd.DataFrame, thresholds=None, secondary: bool = True, keys=None
) -> pd.DataFrame:
    """Primary then secondary suppression of a result-schema table; the default for publishing.

    Parameters
    ----------
    table : DataFrame
        Result-schema rows (diagnostic columns after them are kept, and blanked when suppressed).
    thresholds : Thresholds, dict or None
        ``None`` reads ``params/report.yml`` ``disclosure:`` (defaults 25 and 50).
    secondary : bool
        Also withhold the cells that would let a suppressed one be recovered (default True).
    keys : list of str, optional
        Columns identifying one table for secondary suppression (default :data:`TABLE_KEYS`).

    Returns
    -------
    DataFrame
        Same rows in the same order; see :func:`primary_suppression` and
        :func:`secondary_suppression`.
    """
    out = primary_suppression(table, thresholds)
    if secondary and len(out):
        out = secondary_suppression(out, keys=keys)
    out.index = table.index
    return out


# ---------------------------------------------------------------------------------------------
# The one gate at the edge: the plan of each source × country


#: Environment variable that switches cross-table suppression off (value "off"): each table is
#: then protected on its own, as before issue 10. For audits that show what the linked
#: protection buys (the attack test); never for publishing — the pipeline's gate attacks each
#: run's tables and the attack test the whole report.
CROSS_TABLE_ENV = "ANALYSIS_DISCLOSURE_CROSS_TABLE"


def protect(table: pd.DataFrame, frames: dict | None = None, thresholds=None,
            indicators: dict | None = None, groups: dict | None = None,
            name: str = "table", cross_table: bool | None = None) -> pd.DataFrame:
    """Apply the disclosure rules to a table about to be saved or shown: the edge of a run.

    Every row goes through :func:`primary_suppression` (withheld below ``suppress_below``,
    caution below ``caution_below``). A row about respondents of a source in ``frames`` then
    gets the suppression planned for its source × country over every cell the report can
    publish (:func:`analysis.disclosure_plan.plan_for`): the same cells are withheld in every
    table, chapter and run, so that no difference of published numbers, in one file or across
    files, recovers a withheld one (the LP attack of :mod:`analysis.disclosure_attack` bounds
    each withheld count to an interval at least ``suppress_below`` wide). Rows that are not
    cells (contrasts such as gaps) are left to :func:`suppress_derived`; rows of other sources
    (official statistics) get primary suppression only.

    Parameters
    ----------
    table : DataFrame
        Result-schema rows (estimators' output, unsuppressed).
    frames : dict of source id -> DataFrame, optional
        The run's respondent-level data (processed, with ``attrs["design"]``); the plan is
        computed from them (cached by their hash). Without it only primary suppression applies.
    thresholds : Thresholds, dict or None
        ``None``: the run's own thresholds (:func:`run_thresholds`).
    indicators, groups : dict, optional
        The catalogues (default :func:`analysis.schema.load_indicators` / ``load_groups``).
    name : str
        Names the table in errors.
    cross_table : bool, optional
        False: per-table :func:`apply_suppression` instead of the plan (see
        :data:`CROSS_TABLE_ENV`); default True unless that variable is "off".

    Raises
    ------
    DisclosureError
        A row of a planned source describes a population the plan does not cover (a chapter
        publishes a cell the model of published cells does not know: extend
        :func:`analysis.disclosure_plan.report_populations`).
    """
    import os

    from analysis.disclosure_model import RESPONDENTS, Catalogue, population_of_row

    limits = resolve_thresholds(thresholds)
    if cross_table is None:
        cross_table = os.environ.get(CROSS_TABLE_ENV, "").lower() != "off"
    if not cross_table:
        return apply_suppression(table, limits) if len(table) else primary_suppression(table, limits)
    out = primary_suppression(table, limits)
    if not frames or out.empty:
        return out
    if indicators is None:
        from analysis.schema import load_indicators

        indicators = load_indicators()
    catalogue = Catalogue.from_catalogue(groups=groups)
    plans: dict = {}
    withheld = pd.Series(False, index=out.index)
    reasons = out[REASON_COLUMN].copy()
    for i, row in out.iterrows():
        source = str(row.get("source"))
        frame = frames.get(source)
        if frame is None or frame.attrs.get("design") is None:
            continue
        country = str(row.get("country"))
        indicator = str(row.get("indicator"))
        method = str(row.get("method") or "")
        excess = method.startswith("difference: excess")
        if excess:
            population = _union_population(catalogue, row.get("breakdown"), row.get("group"))
        else:
            population = population_of_row(catalogue, row.get("breakdown"), row.get("cell"),
                                           row.get("group"))
        if population is None:
            continue
        if indicator == "composition":
            indicator = RESPONDENTS
        if (source, country) not in plans:
            plans[(source, country)] = _plan_of(frame, source, country, indicators, limits, groups)
        plan = plans[(source, country)]
        if not plan.covers(indicator, population):
            raise DisclosureError(
                f"{name}: row {indicator} / {row.get('breakdown')} = {row.get('cell')} of "
                f"{source} {country} is a cell the disclosure plan does not cover; add it to "
                "analysis.disclosure_plan.report_populations"
            )
        reason = plan.reason(indicator, population)
        if reason is not None and row["flag"] != "suppressed":
            withheld[i] = True
            reasons[i] = reason
    out[REASON_COLUMN] = reasons
    out = _blank(out, withheld, reasons)
    # The plan's attacker cannot assume that nobody misses a dimension; the output gate checks
    # each table as if margins were exact sums of its categories. Where a planned pattern leaves
    # a withheld cell that is its table's margin minus its siblings, the within-table rule runs
    # on top (it only withholds more).
    if withheld.any() and len(check_no_small_cells(out, limits)):
        out = apply_suppression(out.reset_index(drop=True), limits).set_axis(out.index)
    return out


#: The category free-coded values outside the catalogue are pooled into.
POOLED_CATEGORY = "other"


def pool_free_categories(frame: pd.DataFrame, dimensions: dict, columns) -> pd.DataFrame:
    """Pool every value outside the catalogue's categories into :data:`POOLED_CATEGORY`.

    Only catalogue categories are published as labels: a category spelled by hand (an
    ethnicity typed in) may be held by one person and identify them by its label alone, even
    when its numbers are withheld. Pooling happens before any estimate, so the pooled cell is
    an ordinary cell (suppressed when small). ``frame.attrs["pooled_categories"]`` records, per
    column, how many categories and rows were pooled (never which: the labels are the risk);
    :func:`analysis.chapters.row_accounting` shows it.

    Parameters
    ----------
    dimensions : dict
        :func:`analysis.schema.load_dimensions`.
    columns : iterable of str
        Dimension columns that a chapter publishes categories of.
    """
    out = frame
    pooled = dict(frame.attrs.get("pooled_categories") or {})
    for column in columns:
        spec = dimensions.get(column)
        if column not in frame.columns or spec is None or not spec.categories:
            continue
        values = frame[column].astype("string")
        outside = values.notna() & ~values.isin([str(c) for c in spec.categories])
        outside &= values != POOLED_CATEGORY
        if not outside.any():
            continue
        if out is frame:
            out = frame.copy()
            out.attrs.update(frame.attrs)
        pooled[column] = {"categories": int(values[outside].nunique()),
                          "rows": int(outside.sum())}
        out[column] = values.mask(outside, POOLED_CATEGORY)
    if out is not frame:
        out.attrs["pooled_categories"] = pooled
    return out


def slice_flag(frame: pd.DataFrame, thresholds=None) -> str:
    """Flag of a whole source × country slice by its respondents (positive weight):
    "suppressed" below ``suppress_below`` (no profile numbers, no design diagnostics),
    "caution" below ``caution_below``, else "ok"."""
    from analysis.disclosure_model import positive_weight_rows

    limits = resolve_thresholds(thresholds)
    weight = (frame.attrs.get("design") or {}).get("weight")
    n = int(positive_weight_rows(frame, weight).sum())
    if n < limits.suppress_below:
        return "suppressed"
    return "caution" if n < limits.caution_below else "ok"


def slice_note(flag: str, thresholds=None) -> str:
    """What a page says about a small slice (empty for an ordinary one; ``params/text.yml``)."""
    from analysis.text import text

    limits = resolve_thresholds(thresholds)
    if flag == "suppressed":
        return text("common.slice_suppressed", suppress_below=limits.suppress_below)
    if flag == "caution":
        return text("common.slice_caution", caution_below=limits.caution_below)
    return ""


def pooled_category_label() -> str:
    """The catalogue label of :data:`POOLED_CATEGORY` (``common.pooled_category``, translated)."""
    from analysis.text import text

    return text("common.pooled_category")


def _union_population(catalogue, breakdown, group):
    """An excess-disparity row counts the four cells group/reference × group/reference."""
    from analysis.disclosure_model import make_population

    constraints = {}
    for part in split_cell(str(breakdown)):
        gid = group if part == "comparison" else part
        dim, members, reference = catalogue.groups[str(gid)]
        constraints[dim] = members | reference
    return make_population(constraints, catalogue.universes)


def _plan_of(frame, source, country, indicators, limits, groups):
    from analysis.disclosure_model import Catalogue
    from analysis.disclosure_plan import plan_for

    if "country" in frame.columns and frame["country"].astype("string").nunique() > 1:
        attrs = dict(frame.attrs)
        frame = frame[frame["country"].astype("string") == country].reset_index(drop=True)
        frame.attrs.update(attrs)
    return plan_for(frame, source, country, indicators, limits, Catalogue.from_catalogue(groups=groups))


# ---------------------------------------------------------------------------------------------
# Derived measures


def _input_cells(value) -> list[str] | None:
    if value is None or (not isinstance(value, (list, tuple, set, np.ndarray)) and pd.isna(value)):
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split("|") if v.strip()]
    return [str(v) for v in value]


def _key(values) -> tuple:
    """A hashable table key in which every kind of missing value compares equal."""
    return tuple(
        None if (not isinstance(v, (list, tuple)) and pd.isna(v)) else str(v) for v in values
    )


def suppress_derived(
    measures: pd.DataFrame, inputs: pd.DataFrame, thresholds=None, keys=None
) -> pd.DataFrame:
    """Suppress every measure (gap, ratio, summary index) that used a withheld or missing input.

    A measure row is linked to the input rows of the same table (``keys``, default source,
    country, group, indicator) and the same ``breakdown``. If the measure table has a column
    ``input_cells`` (a list of cell labels, or labels joined by ``" | "``), only those cells are
    its inputs; otherwise every cell of that breakdown is (as for summary measures such as the
    slope index over all categories). The measure is suppressed when any input row is
    suppressed, has no estimate, or is absent. Measures with their own ``n_unweighted`` also
    get :func:`primary_suppression`.

    Parameters
    ----------
    measures : DataFrame
        Result-schema rows of derived measures (``breakdown`` names the breakdown they used).
    inputs : DataFrame
        The input estimates after :func:`apply_suppression`.
    """
    _require_columns(measures, ["breakdown"], "suppress_derived (measures)")
    _require_columns(inputs, ["breakdown", "cell", "estimate", "flag"], "suppress_derived (inputs)")
    keys = [
        k
        for k in (keys if keys is not None else TABLE_KEYS)
        if k in measures.columns and k in inputs.columns
    ]
    out = _prepare(measures)
    if "n_unweighted" in out.columns and "estimate" in out.columns:
        has_n = pd.to_numeric(out["n_unweighted"], errors="coerce").notna()
        if has_n.all():  # the usual case: the checked copy is the table (a row-wise .loc write took ms)
            out = primary_suppression(out, thresholds)
        elif has_n.any():
            checked = primary_suppression(out[has_n], thresholds)
            # Blanked numbers need nullable columns: an int64 n_unweighted cannot hold NA.
            for column in checked.columns:
                if column in out.columns and out[column].dtype != checked[column].dtype:
                    out[column] = out[column].astype(checked[column].dtype)
            out.loc[has_n] = checked
    link = keys + ["breakdown"]
    inputs = inputs.assign(
        _withheld=(inputs["flag"].astype("string") == "suppressed").fillna(False)
        | pd.to_numeric(inputs["estimate"], errors="coerce").isna()
    )
    lookup: dict[tuple, dict[str, bool]] = {}
    for row in inputs[link + ["cell", "_withheld"]].itertuples(index=False):
        cells = lookup.setdefault(_key(row[:-2]), {})
        cells[str(row[-2])] = cells.get(str(row[-2]), False) or bool(row[-1])
    reasons = pd.Series(pd.NA, index=out.index, dtype="string")
    for i, row in out.iterrows():
        cells = lookup.get(_key(row[k] for k in link))
        wanted = _input_cells(row["input_cells"]) if "input_cells" in out.columns else None
        if cells is None:
            reasons[i] = "secondary: derived from a breakdown that is not available"
            continue
        if wanted is None:
            bad = [c for c, withheld in cells.items() if withheld]
        else:
            bad = [c for c in wanted if cells.get(c, True)]
        if bad and row["flag"] != "suppressed":
            reasons[i] = f"secondary: derived from the withheld or missing input cell {bad[0]}"
    return _blank(out, reasons.notna() & (out["flag"] != "suppressed"), reasons)


# ---------------------------------------------------------------------------------------------
# The output gate


def check_no_small_cells(table: pd.DataFrame, thresholds=None, keys=None) -> pd.DataFrame:
    """Return the rows that must not be published, with a ``problem`` column (empty if none).

    Problems: a row not flagged suppressed with ``n_unweighted < suppress_below``; a suppressed
    row that still carries a number; a suppressed cell that can be recovered from the published
    cells of its table (see :func:`secondary_suppression`).
    """
    limits = resolve_thresholds(thresholds)
    _require_columns(table, ["flag", "n_unweighted"], "disclosure check")
    frame = table.reset_index(drop=True)
    problems = pd.Series(pd.NA, index=frame.index, dtype="string")
    suppressed = (frame["flag"].astype("string") == "suppressed").fillna(False)
    n = pd.to_numeric(frame["n_unweighted"], errors="coerce")
    small = (n < limits.suppress_below).fillna(False) & ~suppressed
    problems[small] = (
        "n_unweighted "
        + n[small].astype("Int64").astype(str)
        + f" < {limits.suppress_below} but not suppressed"
    )
    numeric = _numeric_columns(frame)
    leaked = suppressed & frame[numeric].notna().any(axis=1)
    problems[leaked] = "suppressed but still carries numbers"
    if {"breakdown", "cell"} <= set(frame.columns) and suppressed.any():
        for positions in _table_groups(frame, keys, identical_once=True):
            part = frame.iloc[positions]
            unknown = (part["flag"].astype("string") == "suppressed").fillna(False).to_numpy()
            if not unknown.any():
                continue
            relations = margin_relations(part["breakdown"].to_list(), part["cell"].to_list())
            if relations.shape[0]:
                exposed = determined_cells(relations, unknown)
                problems.iloc[positions[exposed]] = (
                    "suppressed but recoverable from the published margins and siblings"
                )
    bad = frame[problems.notna()].copy()
    bad["problem"] = problems[problems.notna()]
    return bad


def assert_publishable(
    table: pd.DataFrame, thresholds=None, name: str = "table", keys=None
) -> None:
    """The output gate: raise :class:`DisclosureError` if ``table`` would disclose a small cell.

    Call it on every table before it is written or shown. See :func:`check_no_small_cells`.
    """
    bad = check_no_small_cells(table, thresholds, keys=keys)
    if len(bad):
        first = bad.iloc[0]
        where = ", ".join(
            f"{c}={first[c]}" for c in ("indicator", "breakdown", "cell") if c in bad.columns
        )
        raise DisclosureError(
            f"{name}: {len(bad)} row(s) not publishable, first ({where}): {first['problem']}; "
            "run analysis.disclosure.apply_suppression on it"
        )
