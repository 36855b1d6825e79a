"""Agreement between coders: Krippendorff's alpha, Cohen's and Fleiss' kappa, percent agreement.

Every statistic here is computed from *reliability data*: units (responses) that several coders
coded independently. A coder who did not code a unit is missing for that unit (not "absent");
a unit counts only when at least two coders coded it ("pairable", Krippendorff 2011).

Formulas and references
-----------------------
- **Krippendorff's alpha** (Krippendorff 2011, *Computing Krippendorff's Alpha-Reliability*;
  Hayes & Krippendorff 2007) from the coincidence matrix ``o_ck = sum_u (number of c-k pairs of
  values in unit u) / (m_u - 1)``: ``alpha = 1 - (n - 1) sum o_ck d_ck / sum n_c n_k d_ck`` with
  ``n_c`` the marginal totals, ``n`` the number of pairable values and the difference function
  ``d`` of the level of measurement: nominal ``[c != k]``, ordinal
  ``(sum_{g=c..k} n_g - (n_c + n_k) / 2)^2``, interval ``(c - k)^2``, ratio
  ``((c - k) / (c + k))^2``. Values are the distinct values observed, in sorted order
  (the ``krippendorff`` package's default value domain, whose results we reproduce).
- **MASI-distance alpha** for multi-label codings (a set of codes per coder and unit):
  the same alpha with ``d = 1 - J * M`` between two sets, ``J`` their Jaccard index and
  ``M`` 1 (identical), 2/3 (one contains the other), 1/3 (they overlap), 0 (disjoint)
  (Passonneau 2006, *Measuring agreement on set-valued items (MASI)*). Two empty sets agree.
- **Cohen's kappa** for two coders from their contingency table with the asymptotic standard
  errors of Fleiss, Cohen & Everitt (1969): ``se`` under the alternative (as statsmodels'
  ``cohens_kappa(...).std_kappa``) and ``se0`` under the null of chance agreement.
- **Fleiss' kappa** (Fleiss 1971) for a fixed number of coders per unit, from the counts of
  coders choosing each category per unit.
- **Percent agreement**: the share of agreeing pairs of coders within a unit, averaged over the
  pairable units (for two coders: the share of units on which they agree).
- **Intervals**: percentile bootstrap over units (units resampled with replacement, every
  statistic recomputed). Each statistic depends on the data only through how many units show
  each *pattern* of codings, so a bootstrap replicate is a multinomial draw of pattern counts:
  exactly the unit bootstrap, at the cost of the number of distinct patterns.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

LEVELS = ("nominal", "ordinal", "interval", "ratio")


class AgreementError(ValueError):
    """Reliability data that cannot give an agreement statistic (message says what to fix)."""


# --------------------------------------------------------------------------------------------
# Krippendorff's alpha from a coders x units matrix


def _as_reliability_data(data) -> np.ndarray:
    array = np.asarray(data, dtype=float)
    if array.ndim != 2:
        raise AgreementError(f"reliability data must be a coders x units matrix, got {array.ndim} dimensions")
    return array


def value_counts(data) -> tuple[np.ndarray, np.ndarray]:
    """Units x values counts of a coders x units matrix (NaN = not coded) and the sorted values."""
    array = _as_reliability_data(data)
    values = np.unique(array[~np.isnan(array)])
    counts = np.zeros((array.shape[1], len(values)))
    for coder in array:
        seen = ~np.isnan(coder)
        index = np.searchsorted(values, coder[seen])
        np.add.at(counts, (np.flatnonzero(seen), index), 1.0)
    return counts, values


def coincidences(counts: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Coincidence matrix ``o_ck`` from units x values counts (units with < 2 values drop out).

    ``weights`` (one per unit) give the coincidences of a resampled set of units.
    """
    counts = np.asarray(counts, dtype=float)
    m = counts.sum(axis=1)
    pairable = m >= 2
    scale = np.zeros_like(m)
    scale[pairable] = 1.0 / (m[pairable] - 1.0)
    if weights is not None:
        scale = scale * np.asarray(weights, dtype=float)
    scaled = counts * scale[:, None]
    return scaled.T @ counts - np.diag(scaled.sum(axis=0))


def difference_matrix(level: str, values: np.ndarray, marginals: np.ndarray) -> np.ndarray:
    """Squared difference ``d_ck`` of the level of measurement (Krippendorff 2011, section E)."""
    values = np.asarray(values, dtype=float)
    if level == "nominal":
        return 1.0 - np.eye(len(values))
    if level == "ordinal":
        # sum of the marginals from c to k inclusive, minus half of the two ends
        cumulative = np.concatenate([[0.0], np.cumsum(marginals)])
        low = np.minimum.outer(np.arange(len(values)), np.arange(len(values)))
        high = np.maximum.outer(np.arange(len(values)), np.arange(len(values)))
        between = cumulative[high + 1] - cumulative[low]
        return (between - (marginals[low] + marginals[high]) / 2.0) ** 2
    if level == "interval":
        return np.subtract.outer(values, values) ** 2
    if level == "ratio":
        total = np.add.outer(values, values)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (np.subtract.outer(values, values) / total) ** 2
        return np.nan_to_num(out, nan=0.0)
    raise AgreementError(f"level={level!r}; use one of {list(LEVELS)}")


def alpha_from_coincidences(observed: np.ndarray, level: str = "nominal", values=None,
                            difference: np.ndarray | None = None) -> float:
    """Krippendorff's alpha of a coincidence matrix (NaN when there is no variation to judge)."""
    marginals = observed.sum(axis=1)
    n = marginals.sum()
    if difference is None:
        difference = difference_matrix(level, values if values is not None else np.arange(len(marginals)),
                                       marginals)
    expected = (np.outer(marginals, marginals) * difference).sum()
    if n <= 1 or expected <= 0:
        return float("nan")
    return float(1.0 - (n - 1.0) * (observed * difference).sum() / expected)


def krippendorff_alpha(data, level: str = "nominal") -> float:
    """Krippendorff's alpha of a coders x units matrix (NaN = the coder did not code the unit).

    Parameters
    ----------
    data : array-like, coders x units
        Numeric codes. For ``nominal`` any distinct numbers stand for categories.
    level : {"nominal", "ordinal", "interval", "ratio"}
        Level of measurement (the difference function; see the module docstring).

    Returns
    -------
    float
        Alpha; 1 is perfect agreement, 0 agreement at chance, NaN when the pairable values show
        no variation (alpha is undefined).

    Examples
    --------
    Krippendorff's (2011) example gives 0.743 (nominal), 0.815 (ordinal), 0.849 (interval).
    """
    counts, values = value_counts(data)
    return alpha_from_coincidences(coincidences(counts), level, values)


# --------------------------------------------------------------------------------------------
# MASI-distance alpha for set-valued codings


def masi_distance(a: frozenset, b: frozenset) -> float:
    """MASI distance ``1 - J * M`` between two sets of codes (Passonneau 2006)."""
    if a == b:
        return 0.0
    union = len(a | b)
    common = len(a & b)
    if common == 0:
        return 1.0
    monotonicity = 2.0 / 3.0 if (a <= b or b <= a) else 1.0 / 3.0
    return 1.0 - (common / union) * monotonicity


def masi_alpha(units: list[list[frozenset]]) -> float:
    """Krippendorff's alpha with the MASI distance; ``units`` holds the coders' code sets per unit."""
    counts, sets = set_value_counts(units)
    difference = masi_matrix(sets)
    return alpha_from_coincidences(coincidences(counts), difference=difference)


def set_value_counts(units) -> tuple[np.ndarray, list[frozenset]]:
    """Units x distinct-sets counts of set-valued codings, and the distinct sets."""
    index: dict[frozenset, int] = {}
    rows, cols = [], []
    for u, sets in enumerate(units):
        for value in sets:
            key = frozenset(value)
            rows.append(u)
            cols.append(index.setdefault(key, len(index)))
    counts = np.zeros((len(units), len(index)))
    np.add.at(counts, (np.asarray(rows, dtype=int), np.asarray(cols, dtype=int)), 1.0)
    return counts, list(index)


def masi_matrix(sets: list[frozenset]) -> np.ndarray:
    """Pairwise MASI distances between distinct code sets (vectorised over set sizes)."""
    k = len(sets)
    if k == 0:
        return np.zeros((0, 0))
    codes = sorted({c for s in sets for c in s}, key=str)
    position = {c: i for i, c in enumerate(codes)}
    member = np.zeros((k, len(codes)))
    for i, s in enumerate(sets):
        for c in s:
            member[i, position[c]] = 1.0
    common = member @ member.T
    size = member.sum(axis=1)
    union = size[:, None] + size[None, :] - common
    with np.errstate(invalid="ignore", divide="ignore"):
        jaccard = np.where(union > 0, common / union, 1.0)
    identical = (common == size[:, None]) & (common == size[None, :])
    nested = (common == size[:, None]) | (common == size[None, :])
    monotonicity = np.where(identical, 1.0, np.where(nested, 2.0 / 3.0, np.where(common > 0, 1.0 / 3.0, 0.0)))
    return 1.0 - jaccard * monotonicity


# --------------------------------------------------------------------------------------------
# Kappas and percent agreement


@dataclass(frozen=True)
class Kappa:
    """Cohen's kappa with its asymptotic standard errors (Fleiss, Cohen & Everitt 1969)."""

    kappa: float
    se: float  # under the alternative (statsmodels std_kappa)
    se0: float  # under the null of chance agreement (statsmodels std_kappa0)
    observed: float  # observed agreement
    expected: float  # chance agreement
    n: float


def cohens_kappa(table) -> Kappa:
    """Cohen's kappa of a square contingency table (rows: coder A's category, columns: coder B's).

    The standard error under the alternative is Fleiss, Cohen & Everitt (1969), eq. 13, as
    statsmodels' ``cohens_kappa`` reports it; under the null, their eq. 14.
    """
    table = np.asarray(table, dtype=float)
    if table.ndim != 2 or table.shape[0] != table.shape[1]:
        raise AgreementError(f"Cohen's kappa needs a square table, got shape {table.shape}")
    n = table.sum()
    if n <= 0:
        raise AgreementError("Cohen's kappa of an empty table")
    p = table / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    observed = float(np.trace(p))
    expected = float((rows * cols).sum())
    if expected >= 1.0:
        return Kappa(float("nan"), float("nan"), float("nan"), observed, expected, n)
    kappa = (observed - expected) / (1.0 - expected)
    term_a = (np.diag(p) * (1.0 - (rows + cols) * (1.0 - kappa)) ** 2).sum()
    off = p * np.add.outer(cols, rows) ** 2
    np.fill_diagonal(off, 0.0)
    term_b = (1.0 - kappa) ** 2 * off.sum()
    term_c = (kappa - expected * (1.0 - kappa)) ** 2
    variance = (term_a + term_b - term_c) / (1.0 - expected) ** 2 / n
    variance0 = (expected + expected**2 - (rows * cols * (rows + cols)).sum()) / (1.0 - expected) ** 2 / n
    return Kappa(float(kappa), float(np.sqrt(max(variance, 0.0))), float(np.sqrt(max(variance0, 0.0))),
                 observed, expected, n)


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa from units x categories counts (the same number of coders in every unit).

    ``kappa = (P_bar - P_e) / (1 - P_e)`` with ``P_bar`` the mean agreement within units and
    ``P_e = sum_j p_j^2`` the chance agreement from the pooled category shares (Fleiss 1971).
    """
    counts = np.asarray(counts, dtype=float)
    raters = counts.sum(axis=1)
    if counts.ndim != 2 or len(counts) == 0:
        raise AgreementError("Fleiss' kappa needs a units x categories table with at least one unit")
    if not np.allclose(raters, raters[0]) or raters[0] < 2:
        raise AgreementError("Fleiss' kappa needs the same number (at least 2) of coders in every unit")
    m = raters[0]
    shares = counts.sum(axis=0) / counts.sum()
    within = ((counts * (counts - 1.0)).sum(axis=1) / (m * (m - 1.0))).mean()
    chance = (shares**2).sum()
    if chance >= 1.0:
        return float("nan")
    return float((within - chance) / (1.0 - chance))


def percent_agreement(counts) -> float:
    """Mean share of agreeing coder pairs within pairable units (units x values counts)."""
    counts = np.asarray(counts, dtype=float)
    m = counts.sum(axis=1)
    pairable = m >= 2
    if not pairable.any():
        return float("nan")
    pairs = (counts[pairable] * (counts[pairable] - 1.0)).sum(axis=1) / (m[pairable] * (m[pairable] - 1.0))
    return float(pairs.mean())


# --------------------------------------------------------------------------------------------
# Binary decisions per code (apply / not apply), with the pattern bootstrap


@dataclass
class BinaryPatterns:
    """Units of one code summarised as pattern counts.

    Pattern ``(m, k)``: ``m`` coders coded the unit, ``k`` of them applied the code. For exactly
    two coders the patterns also say which coder applied it (``a``, ``b`` in {0, 1}), which
    Cohen's kappa needs: ``pair_counts[a, b]``.
    """

    m: np.ndarray  # per pattern
    k: np.ndarray
    count: np.ndarray
    pair: np.ndarray | None = None  # per pattern: index a * 2 + b for two coders, else None


def binary_statistics(m: np.ndarray, k: np.ndarray, count: np.ndarray, n_coders: int,
                      pair: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Alpha, percent agreement, Cohen's kappa (two coders) and Fleiss' kappa of binary decisions.

    Vectorised over replicates: ``count`` may be ``(replicates, patterns)``.
    """
    count = np.atleast_2d(np.asarray(count, dtype=float))
    m = np.asarray(m, dtype=float)
    k = np.asarray(k, dtype=float)
    ok = m >= 2
    inv = np.where(ok, 1.0 / np.where(ok, m - 1.0, 1.0), 0.0)
    o11 = count @ (k * (k - 1.0) * inv)
    o10 = count @ (k * (m - k) * inv)
    o00 = count @ ((m - k) * (m - k - 1.0) * inv)
    n1 = o11 + o10
    n0 = o00 + o10
    n = n1 + n0
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1.0 - (n - 1.0) * (2.0 * o10) / (2.0 * n1 * n0)
        pairs_agree = np.where(ok, (k * (k - 1.0) + (m - k) * (m - k - 1.0)) / np.where(ok, m * (m - 1.0), 1.0), 0.0)
        units = count @ ok.astype(float)
        agreement = (count @ pairs_agree) / units
        out = {"alpha": alpha, "percent_agreement": agreement, "n_units": units}
        full = m == n_coders
        if n_coders >= 2:
            full_units = count @ full.astype(float)
            yes = count @ np.where(full, k, 0.0)
            share = yes / (full_units * n_coders)
            within = (count @ np.where(full, (k * (k - 1.0) + (m - k) * (m - k - 1.0))
                                       / (n_coders * (n_coders - 1.0)), 0.0)) / full_units
            chance = share**2 + (1.0 - share) ** 2
            out["fleiss_kappa"] = (within - chance) / (1.0 - chance)
        if pair is not None:
            cells = np.stack([count @ (pair == j).astype(float) for j in range(4)], axis=-1)
            total = cells.sum(axis=-1)
            p = cells / total[..., None]
            a_yes = p[..., 3] + p[..., 2]  # a=1: pairs 2 (1,0) and 3 (1,1)
            b_yes = p[..., 3] + p[..., 1]
            observed = p[..., 0] + p[..., 3]
            expected = a_yes * b_yes + (1.0 - a_yes) * (1.0 - b_yes)
            out["cohen_kappa"] = (observed - expected) / (1.0 - expected)
    return {key: np.asarray(value) for key, value in out.items()}


def bootstrap_pattern_counts(count: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """``replicates`` x patterns counts of a unit bootstrap (multinomial draw of the units' patterns)."""
    count = np.asarray(count, dtype=float)
    total = int(np.rint(count.sum()))
    if total == 0:
        return np.zeros((replicates, len(count)))
    return rng.multinomial(total, count / count.sum(), size=replicates).astype(float)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval over the first axis, ignoring undefined replicates."""
    tail = (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            low = np.nanquantile(replicates, tail, axis=0)
            high = np.nanquantile(replicates, 1.0 - tail, axis=0)
    return low, high


def reliability_from_long(coded: pd.DataFrame, code: str) -> np.ndarray:
    """Coders x units 0/1 matrix of one code from a long table (NaN where a coder did not code)."""
    seen = coded[["response_id", "coder"]].drop_duplicates()
    units = pd.Index(sorted(seen["response_id"].unique()))
    coders = pd.Index(sorted(seen["coder"].unique()))
    out = np.full((len(coders), len(units)), np.nan)
    out[coders.get_indexer(seen["coder"]), units.get_indexer(seen["response_id"])] = 0.0
    hit = coded.loc[coded["code"] == code, ["response_id", "coder"]].drop_duplicates()
    out[coders.get_indexer(hit["coder"]), units.get_indexer(hit["response_id"])] = 1.0
    return out


# --------------------------------------------------------------------------------------------
# From the long table of codings: every code at once, and the overall multi-label alpha

#: Columns of :func:`agreement_table`.
AGREEMENT_COLUMNS = [
    "code", "n_units", "n_coders", "percent_agreement", "alpha", "alpha_ci_low", "alpha_ci_high",
    "cohen_kappa", "cohen_kappa_se", "fleiss_kappa", "kappa_ci_low", "kappa_ci_high", "method",
]
#: ``code`` of the overall row (MASI-distance alpha over every code).
OVERALL = "all codes"


@dataclass
class _Units:
    """Integer codes of a long table: unit, coder and code of each distinct coding."""

    unit: np.ndarray
    coder: np.ndarray
    code: np.ndarray
    units: pd.Index
    coders: pd.Index
    codes: pd.Index
    seen_unit: np.ndarray  # (unit, coder) pairs that were coded
    seen_coder: np.ndarray


def _encode(coded: pd.DataFrame, codes=None) -> _Units:
    for column in ("response_id", "coder", "code"):
        if column not in coded.columns:
            raise AgreementError(f"the coded table has no column '{column}'")
    units = pd.Index(pd.unique(coded["response_id"]))
    coders = pd.Index(sorted(pd.unique(coded["coder"].astype(str))))
    seen = pd.DataFrame({"u": units.get_indexer(coded["response_id"]),
                         "c": coders.get_indexer(coded["coder"].astype(str))}).drop_duplicates()
    code_index = pd.Index(list(codes) if codes is not None else sorted(pd.unique(coded["code"].astype(str))))
    j = code_index.get_indexer(coded["code"].astype(str))
    keep = j >= 0
    triples = pd.DataFrame({"u": units.get_indexer(coded["response_id"])[keep],
                            "c": coders.get_indexer(coded["coder"].astype(str))[keep],
                            "j": j[keep]}).drop_duplicates()
    return _Units(triples["u"].to_numpy(), triples["c"].to_numpy(), triples["j"].to_numpy(), units, coders,
                  code_index, seen["u"].to_numpy(), seen["c"].to_numpy())


def _code_patterns(enc: _Units) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Pattern table (m, k, pair) and codes x patterns counts for every code."""
    n_units, n_coders, n_codes = len(enc.units), len(enc.coders), len(enc.codes)
    m_unit = np.bincount(enc.seen_unit, minlength=n_units)
    if n_coders == 2:
        # states per coder: 0 not coded, 1 coded without the code, 2 coded with it
        base_state = np.zeros((n_units, 2), dtype=int)
        base_state[enc.seen_unit, enc.seen_coder] = 1
        base = base_state[:, 0] * 3 + base_state[:, 1]
        base_hist = np.bincount(base, minlength=9).astype(float)
        counts = np.tile(base_hist, (n_codes, 1))
        # each (unit, code) with applications: remove its base pattern, add the applied pattern
        key = enc.code.astype(np.int64) * n_units + enc.unit
        groups, group = np.unique(key, return_inverse=True)
        flags = np.zeros((len(groups), 2), dtype=int)
        flags[group, enc.coder] = 1
        g_code, g_unit = np.divmod(groups, n_units)
        state = base_state[g_unit] + flags
        np.subtract.at(counts, (g_code, base[g_unit]), 1.0)
        np.add.at(counts, (g_code, state[:, 0] * 3 + state[:, 1]), 1.0)
        states = np.array([(a, b) for a in range(3) for b in range(3)])
        m = (states > 0).sum(axis=1)
        k = (states == 2).sum(axis=1)
        both = (states > 0).all(axis=1)
        pair = np.where(both, (states[:, 0] == 2) * 2 + (states[:, 1] == 2), -1)
        return m, k, counts, pair
    width = n_coders + 1
    base = m_unit * width
    base_hist = np.bincount(base, minlength=width * width).astype(float)
    counts = np.tile(base_hist, (n_codes, 1))
    key = enc.code.astype(np.int64) * n_units + enc.unit
    uniq, k = np.unique(key, return_counts=True)
    g_code, g_unit = np.divmod(uniq, n_units)
    np.subtract.at(counts, (g_code, base[g_unit]), 1.0)
    np.add.at(counts, (g_code, base[g_unit] + k), 1.0)
    m, k_pattern = np.divmod(np.arange(width * width), width)
    return m, k_pattern, counts, None


def masi_from_sizes(s, t, i) -> np.ndarray:
    """MASI distance of two sets from their sizes ``s``, ``t`` and the size ``i`` of their intersection."""
    s, t, i = (np.asarray(v, dtype=float) for v in (s, t, i))
    union = s + t - i
    with np.errstate(invalid="ignore", divide="ignore"):
        jaccard = np.where(union > 0, i / np.where(union > 0, union, 1.0), 1.0)
    identical = (i == s) & (i == t)
    nested = i == np.minimum(s, t)
    monotonicity = np.where(identical, 1.0, np.where(nested, 2.0 / 3.0, np.where(i > 0, 1.0 / 3.0, 0.0)))
    return 1.0 - jaccard * monotonicity


class _SetCodings:
    """Every coded (unit, coder) pair as a code set, for the MASI alpha without a sets x sets matrix.

    The MASI distance of two sets depends only on their sizes and the size of their intersection,
    so the expected disagreement ``sum_ck n_c n_k d_ck`` is a sum over (size, size, intersection)
    classes. The weight of each class comes from moments over common subsets:
    ``A_j(s, t) = sum over subsets S of size j of N_s(S) N_t(S)`` (``N_s(S)``: weight of the sets
    of size s containing S) counts pairs of sets by ``C(|c ∩ k|, j)``, and the binomial inversion
    ``W(i) = sum_j (-1)^(j-i) C(j, i) A_j`` gives the pairs with ``|c ∩ k| = i``.
    """

    def __init__(self, enc: _Units):
        from math import comb

        from scipy import sparse

        n_units, n_coders = len(enc.units), len(enc.coders)
        self.n_units = n_units
        pair_key = np.unique(enc.seen_unit.astype(np.int64) * n_coders + enc.seen_coder)
        self.pair_unit, pair_coder = np.divmod(pair_key, n_coders)
        member_pair = np.searchsorted(pair_key, enc.unit.astype(np.int64) * n_coders + enc.coder)
        size = np.bincount(member_pair, minlength=len(pair_key))
        m = np.bincount(self.pair_unit, minlength=n_units)
        self.pairable_unit = m >= 2
        self.pair_pairable = self.pairable_unit[self.pair_unit]
        # within-unit disagreement from every two coders of a unit
        sizes = np.zeros((n_units, n_coders))
        coded = np.zeros((n_units, n_coders), dtype=bool)
        sizes[self.pair_unit, pair_coder] = size
        coded[self.pair_unit, pair_coder] = True
        applied = sparse.csr_matrix((np.ones(len(enc.unit)), (enc.unit, enc.code
                                     * n_coders + enc.coder)), shape=(n_units, len(enc.codes) * n_coders))
        within = np.zeros(n_units)
        identical = np.zeros(n_units)
        for a in range(n_coders):
            for b in range(a + 1, n_coders):
                cols_a = np.arange(len(enc.codes)) * n_coders + a
                cols_b = np.arange(len(enc.codes)) * n_coders + b
                common = np.asarray(applied[:, cols_a].multiply(applied[:, cols_b]).sum(axis=1)).ravel()
                both = coded[:, a] & coded[:, b]
                d = masi_from_sizes(sizes[:, a], sizes[:, b], common)
                within += np.where(both, 2.0 * d, 0.0)
                identical += np.where(both & (d == 0), 2.0, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.within = np.where(self.pairable_unit, within / np.maximum(m - 1.0, 1.0), 0.0)
            self.identical = np.where(self.pairable_unit, identical / np.maximum(m * (m - 1.0), 1.0), np.nan)
        # subsets of every pairable pair's set, by subset size
        self.size = size
        self.max_size = int(size[self.pair_pairable].max()) if self.pair_pairable.any() else 0
        order = np.argsort(member_pair, kind="stable")
        codes_sorted = enc.code[order]
        starts = np.concatenate([[0], np.cumsum(size)])
        self.subsets: dict[int, object] = {}  # j -> sparse (subsets x pairs)
        for j in range(1, self.max_size + 1):
            rows, cols = [], []
            for s_size in range(j, self.max_size + 1):
                pairs = np.flatnonzero((size == s_size) & self.pair_pairable)
                if not len(pairs):
                    continue
                members = np.stack([codes_sorted[starts[pairs] + k] for k in range(s_size)], axis=1)
                members.sort(axis=1)
                for combo in itertools.combinations(range(s_size), j):
                    rows.append(members[:, combo])
                    cols.append(pairs)
            if not rows:
                continue
            subset_rows = np.concatenate(rows)
            pair_cols = np.concatenate(cols)
            base = len(enc.codes) + 1
            if base ** j < 2**62:  # one integer per subset: far faster than unique rows
                keys = np.zeros(len(subset_rows), dtype=np.int64)
                for q in range(j):
                    keys = keys * base + subset_rows[:, q]
                _, subset_id = np.unique(keys, return_inverse=True)
            else:
                _, subset_id = np.unique(subset_rows, axis=0, return_inverse=True)
            subset_id = subset_id.ravel()
            n_subsets = int(subset_id.max()) + 1
            # one matrix per set size, over the pairs of that size only (the products stay small)
            parts = {}
            for s_size in range(j, self.max_size + 1):
                pairs = np.flatnonzero((size == s_size) & self.pair_pairable)
                if not len(pairs):
                    continue
                take = size[pair_cols] == s_size
                # subsets x units: a replicate's unit weights give N_s(S) in one product
                parts[s_size] = sparse.csr_matrix(
                    (np.ones(int(take.sum())), (subset_id[take], self.pair_unit[pair_cols[take]])),
                    shape=(n_subsets, n_units))
            self.subsets[j] = parts
        # pairable pairs per unit and set size (units x sizes)
        keep = self.pair_pairable
        self.size_counts = sparse.csr_matrix((np.ones(int(keep.sum())), (self.pair_unit[keep], size[keep])),
                                             shape=(n_units, self.max_size + 1))
        self.within_sparse = sparse.csr_matrix(self.within[None, :])
        self.comb = comb

    def alpha(self, unit_weights: np.ndarray) -> np.ndarray:
        """Alpha for each column of ``unit_weights`` (units x replicates)."""
        weights = np.ascontiguousarray(unit_weights, dtype=float)
        sizes = range(self.max_size + 1)
        # sparse products (no multi-threaded BLAS, which is slow when processes share the cores)
        totals = self.size_counts.T @ weights  # sizes x replicates
        moments = np.zeros((self.max_size + 1, self.max_size + 1, self.max_size + 1, weights.shape[1]))
        moments[0] = totals[:, None, :] * totals[None, :, :]
        for j, parts in self.subsets.items():
            by_size = {s: matrix @ weights for s, matrix in parts.items()}
            for s, left in by_size.items():
                for t, right in by_size.items():
                    moments[j, s, t] = np.einsum("kr,kr->r", left, right)
        expected = np.zeros(weights.shape[1])
        for s in sizes:
            for t in sizes:
                for i in range(min(s, t) + 1):
                    count = sum((-1) ** (j - i) * self.comb(j, i) * moments[j, s, t] for j in range(i, min(s, t) + 1))
                    expected = expected + float(masi_from_sizes(s, t, i)) * count
        n = totals.sum(axis=0)
        observed = np.asarray(self.within_sparse @ weights).ravel()
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1.0 - (n - 1.0) * observed / expected


def overall_masi(enc: _Units, replicates: int, rng: np.random.Generator, level: float):
    """MASI-distance alpha over every code, its unit-bootstrap interval, pairable units, identical share."""
    sets = _SetCodings(enc)
    units = int(sets.pairable_unit.sum())
    if units == 0:
        return float("nan"), float("nan"), float("nan"), 0, float("nan")
    point = float(sets.alpha(np.ones((sets.n_units, 1)))[0])
    low = high = float("nan")
    if replicates:
        draws = []
        for start in range(0, replicates, 50):
            size = min(50, replicates - start)
            # how often each unit is drawn in each replicate (units resampled with replacement)
            picks = rng.integers(0, sets.n_units, size=(size, sets.n_units))
            picks += (np.arange(size) * sets.n_units)[:, None]
            drawn = np.bincount(picks.ravel(), minlength=size * sets.n_units).reshape(size, sets.n_units)
            weights = np.ascontiguousarray(drawn.T, dtype=float)
            draws.append(sets.alpha(weights))
        low, high = (float(v) for v in percentile_interval(np.concatenate(draws), level))
    identical = float(np.nanmean(sets.identical[sets.pairable_unit]))
    return point, low, high, units, identical


def agreement_table(coded: pd.DataFrame, codes=None, *, replicates: int = 1000, seed: int = 20211,
                    level: float = 0.95, overall: bool = True) -> pd.DataFrame:
    """Agreement per code (apply / not apply) and overall (MASI alpha), with bootstrap intervals.

    Parameters
    ----------
    coded : DataFrame
        The long table of codings: one row per ``response_id`` x ``coder`` x ``code``. A coder
        coded a response when they left at least one code on it (a "no theme" code included);
        for every code, a coder who coded the response but not with that code said "no".
    codes : list of str, optional
        Codes to assess (default: every code in the table), in this order.
    replicates : int
        Bootstrap replicates over units (0: no intervals).
    seed : int
        Seed of the bootstrap (the same seed gives the same intervals).

    Returns
    -------
    DataFrame
        :data:`AGREEMENT_COLUMNS`: per code the pairable units, coders, percent agreement,
        nominal alpha with its percentile interval, Cohen's kappa with its asymptotic SE (two
        coders) or Fleiss' kappa (three or more; units coded by every coder), and a kappa
        interval from the same bootstrap; then the overall row (:data:`OVERALL`).
    """
    enc = _encode(coded, codes)
    rng = np.random.default_rng(seed)
    n_coders = len(enc.coders)
    m, k, counts, pair = _code_patterns(enc)
    point = binary_statistics(m, k, counts, n_coders, pair)
    rows = []
    for j, code in enumerate(enc.codes):
        stats_j = {key: float(value[j]) for key, value in point.items()}
        row = {"code": code, "n_units": int(stats_j["n_units"]), "n_coders": n_coders,
               "percent_agreement": stats_j["percent_agreement"], "alpha": stats_j["alpha"],
               "alpha_ci_low": np.nan, "alpha_ci_high": np.nan, "cohen_kappa": np.nan,
               "cohen_kappa_se": np.nan, "fleiss_kappa": np.nan, "kappa_ci_low": np.nan,
               "kappa_ci_high": np.nan}
        kappa_key = "cohen_kappa" if pair is not None else "fleiss_kappa"
        if pair is not None:
            table = np.array([[counts[j][pair == 3].sum(), counts[j][pair == 2].sum()],
                              [counts[j][pair == 1].sum(), counts[j][pair == 0].sum()]])
            if table.sum() > 0:
                kappa = cohens_kappa(table)
                row["cohen_kappa"], row["cohen_kappa_se"] = kappa.kappa, kappa.se
        elif n_coders >= 3:
            row["fleiss_kappa"] = stats_j.get("fleiss_kappa", np.nan)
        if replicates:
            draws = bootstrap_pattern_counts(counts[j], replicates, rng)
            boot = binary_statistics(m, k, draws, n_coders, pair)
            row["alpha_ci_low"], row["alpha_ci_high"] = (float(v) for v in percentile_interval(boot["alpha"], level))
            if kappa_key in boot:
                row["kappa_ci_low"], row["kappa_ci_high"] = (
                    float(v) for v in percentile_interval(boot[kappa_key], level))
        rows.append(row)
    pct = f"{level * 100:g}%"
    method = (f"Krippendorff's alpha (nominal) of apply/not-apply per code; "
              f"{'Cohen' if pair is not None else 'Fleiss'}'s kappa; {pct} percentile bootstrap over units "
              f"({replicates} replicates, seed {seed})")
    table = pd.DataFrame(rows, columns=[c for c in AGREEMENT_COLUMNS if c != "method"])
    table["method"] = method
    if overall:
        alpha, low, high, units, identical = overall_masi(enc, replicates, rng, level)
        # overall percent agreement: coders' code sets identical
        overall_row = {"code": OVERALL, "n_units": units, "n_coders": n_coders, "alpha": alpha,
                       "alpha_ci_low": low, "alpha_ci_high": high, "percent_agreement": identical,
                       "method": f"Krippendorff's alpha with the MASI distance between coders' code sets; "
                                 f"percent agreement: identical code sets; {pct} percentile bootstrap over units "
                                 f"({replicates} replicates, seed {seed})"}
        table = pd.concat([table, pd.DataFrame([overall_row])], ignore_index=True)
    return table[AGREEMENT_COLUMNS]


def overall_agreement(coded: pd.DataFrame, codes=None, *, replicates: int = 200, seed: int = 20211,
                      level: float = 0.95) -> dict:
    """The overall row alone: MASI-distance alpha over every code with its bootstrap interval,
    and the share of coder pairs whose code sets are identical."""
    enc = _encode(coded, codes)
    alpha, low, high, units, identical = overall_masi(enc, replicates, np.random.default_rng(seed), level)
    return {"code": OVERALL, "n_units": units, "alpha": alpha, "alpha_ci_low": low, "alpha_ci_high": high,
            "percent_agreement": identical}


def disagreements(coded: pd.DataFrame, codes=None) -> pd.DataFrame:
    """Every response x code on which the coders who coded the response differ, to resolve.

    Returns one row per response and code with ``n_coders`` (who coded the response),
    ``applied_by`` and ``not_applied_by`` (coder names joined with ", "). This is a working list
    for the coding team: it names responses, so it is never published (the chapter shows counts).
    """
    enc = _encode(coded, codes)
    n_units = len(enc.units)
    coders_of = pd.DataFrame({"u": enc.seen_unit, "c": enc.seen_coder})
    m_unit = np.bincount(enc.seen_unit, minlength=n_units)
    frame = pd.DataFrame({"u": enc.unit, "j": enc.code, "c": enc.coder})
    k = frame.groupby(["u", "j"]).size().rename("k").reset_index()
    k["m"] = m_unit[k["u"]]
    split = k[(k["k"] < k["m"])]
    if split.empty:
        return pd.DataFrame(columns=["response_id", "code", "n_coders", "applied_by", "not_applied_by"])
    names = np.asarray(enc.coders)
    applied = frame.merge(split[["u", "j"]]).groupby(["u", "j"])["c"].apply(lambda c: set(c.tolist()))
    every = coders_of.groupby("u")["c"].apply(lambda c: set(c.tolist()))
    out = []
    for (u, j), who in applied.items():
        others = sorted(every[u] - who)
        out.append({"response_id": enc.units[u], "code": enc.codes[j], "n_coders": int(m_unit[u]),
                    "applied_by": ", ".join(names[sorted(who)]), "not_applied_by": ", ".join(names[others])})
    return pd.DataFrame(out).sort_values(["code", "response_id"], kind="stable").reset_index(drop=True)
