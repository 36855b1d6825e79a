"""Gaps between groups, summary measures of inequality and intersectional measures.

Three families, all returning the one result schema (:mod:`analysis.tables`):

* **Simple gaps** (:func:`gap`, :func:`gaps_from_estimates`, :func:`group_gaps`): the
  difference and the ratio between a group and its reference group, with standard errors that
  use the covariance of the two estimates (from the survey design when both come from the same
  sample) and a ratio CI built on the log scale. The indicator's ``direction`` decides whether a
  gap is worded a *disadvantage* or an *advantage* for the group.
* **Summary measures of inequality** as the WHO Health Equity Assessment Toolkit (HEAT)
  technical notes define them (:func:`inequality_measures`): D, R, ACI, RCI, SII, RII for
  ordered dimensions; BGV, BGSD, COV, MDB/MDM/MDR and IDIS (weighted and unweighted), TI, MLD
  for non-ordered ones; PAR and PAF for both. They take subgroup estimates (as HEAT Plus does) or
  microdata with a survey design (:func:`inequality_measures_from_microdata`).
* **Intersectional measures** for two or more binary dimensions
  (:func:`intersectional_measures`, :func:`intersectional_disparities`): the cell estimates, the
  joint disparity, the referent disparities, the excess intersectional disparity
  (mu11 - mu10 - mu01 + mu00), its share of the joint disparity, RERI, the attributable proportion
  and the synergy index, with delta-method confidence intervals that use the full covariance of
  the cell estimates.

Suppression: a measure built on a suppressed input cell is suppressed (flag ``suppressed``,
numbers blanked); a measure built on a ``caution`` cell is flagged ``caution``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from analysis.survey import contrast_moments, ratio_interval
from analysis.tables import CELL_SEPARATOR, NUMERIC_COLUMNS, conform, join_cell
from analysis.tables import label as label_identity

#: Direction values of the indicator catalogue.
DIRECTIONS = ("higher_is_worse", "higher_is_better")

#: HEAT rule: at most this share of subgroup estimates may be missing (non-ordered dimensions).
MAX_MISSING_SHARE = 0.15

#: HEAT rule: complex measures need at least this many subgroups with an estimate.
MIN_SUBGROUPS_COMPLEX = 3

ORDERED_MEASURES = ("D", "R", "ACI", "RCI", "SII", "RII", "PAR", "PAF")
NON_ORDERED_MEASURES = (
    "D", "R", "BGV", "BGSD", "COV", "MDBU", "MDBW", "MDMU", "MDMW", "MDRU", "MDRW",
    "IDISU", "IDISW", "TI", "MLD", "PAR", "PAF",
)  # fmt: skip

MEASURE_LABELS = {
    "D": "Difference (most advantaged or highest minus most disadvantaged or lowest)",
    "R": "Ratio (most advantaged or highest over most disadvantaged or lowest)",
    "ACI": "Absolute concentration index",
    "RCI": "Relative concentration index (fraction)",
    "SII": "Slope index of inequality",
    "RII": "Relative index of inequality",
    "PAR": "Population attributable risk",
    "PAF": "Population attributable fraction (%)",
    "BGV": "Between-group variance",
    "BGSD": "Between-group standard deviation",
    "COV": "Coefficient of variation (%)",
    "MDBU": "Mean difference from best-performing subgroup (unweighted)",
    "MDBW": "Mean difference from best-performing subgroup (weighted)",
    "MDMU": "Mean difference from mean (unweighted)",
    "MDMW": "Mean difference from mean (weighted)",
    "MDRU": "Mean difference from reference subgroup (unweighted)",
    "MDRW": "Mean difference from reference subgroup (weighted)",
    "IDISU": "Index of disparity (unweighted, %)",
    "IDISW": "Index of disparity (weighted, %)",
    "TI": "Theil index (x1000)",
    "MLD": "Mean log deviation (x1000)",
}

_COMPLEX = set(MEASURE_LABELS) - {"D", "R"}


class InequalityInputError(ValueError):
    """Subgroup estimates or options that a measure cannot use; the message says what to fix."""


# ============================================================================================
# Small shared pieces
# ============================================================================================


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise InequalityInputError(f"level={level!r}: the confidence level must be in (0, 1), e.g. 0.95")
    return float(stats.norm.ppf(0.5 + level / 2))


def _check_direction(direction: str | None, indicator: str | None = None) -> str | None:
    """Return a valid direction, looking it up in ``params/indicators.yml`` when not given."""
    if direction is None and indicator is not None:
        from analysis import config
        from analysis.schema import load_indicators

        # a project without a catalogue file keeps neutral wording; a broken catalogue raises
        catalogue = load_indicators() if config.INDICATORS_FILE.exists() else {}
        if indicator in catalogue:
            direction = catalogue[indicator].direction
    if direction is not None and direction not in DIRECTIONS:
        raise InequalityInputError(
            f"direction={direction!r}: use one of {list(DIRECTIONS)} (see params/indicators.yml)"
        )
    return direction


def derived_flag(flags) -> str:
    """Flag of a measure built on cells with ``flags``: the worst of them.

    A measure built on any suppressed cell is suppressed; on any ``caution`` cell, ``caution``.
    Missing flags count as ``ok``.
    """
    values = {str(f) for f in flags if f is not None and not (isinstance(f, float) and np.isnan(f))}
    values.discard("<NA>")
    if "suppressed" in values:
        return "suppressed"
    if "caution" in values:
        return "caution"
    return "ok"


def _finish(rows: list[dict], extras: list[str] | None = None, **defaults) -> pd.DataFrame:
    """Build a result-schema table from ``rows``, blank suppressed rows, keep ``extras`` after it."""
    frame = pd.DataFrame(rows)
    if frame.empty:
        return conform(pd.DataFrame(columns=["estimate"]), **defaults)
    suppressed = (frame.get("flag", pd.Series("ok", index=frame.index)) == "suppressed").to_numpy()
    if suppressed.any():
        for column in NUMERIC_COLUMNS:
            if column in frame.columns:
                values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, copy=True)
                values[suppressed] = np.nan
                frame[column] = values
    out = conform(frame, **defaults)
    for column in extras or []:
        if column in frame.columns:
            out[column] = frame[column].to_numpy()
    return out


def protect_inputs(table: pd.DataFrame, disclosure: bool = True, thresholds=None) -> pd.DataFrame:
    """Apply primary suppression to input estimates that carry ``n_unweighted``.

    Disclosure control is on by default: a cell with too few respondents (thresholds from
    ``params/report.yml``, see :func:`analysis.disclosure.primary_suppression`) is suppressed
    before any measure is built on it, so the measure is suppressed too. Inputs without an
    ``n_unweighted`` column (published aggregates, HEAT-style tables) keep the flags they carry.
    """
    if not disclosure or "n_unweighted" not in table.columns:
        return table
    from analysis import disclosure as disclosure_control

    return disclosure_control.primary_suppression(table, thresholds)


def _gate(out: pd.DataFrame, inputs: pd.DataFrame, input_cells, thresholds=None) -> pd.DataFrame:
    """Suppress every derived row that used a suppressed (or blank) input cell.

    Uses :func:`analysis.disclosure.suppress_derived`; ``input_cells`` lists, for each row of
    ``out``, the ``cell`` labels of ``inputs`` it was built from (None: every input cell).
    Adds the ``suppression_reason`` column.
    """
    from analysis import disclosure as disclosure_control

    measures = out.copy()
    breakdown = measures["breakdown"].copy()
    measures["breakdown"] = "_inputs"
    if input_cells is not None:
        measures["input_cells"] = [" | ".join(map(str, cells)) for cells in input_cells]
    linked = pd.DataFrame({
        "breakdown": "_inputs",
        "cell": inputs["cell"].astype(str).to_numpy(),
        "estimate": pd.to_numeric(inputs["estimate"], errors="coerce").to_numpy(),
        "flag": (inputs["flag"].astype("string").fillna("ok").to_numpy()
                 if "flag" in inputs.columns else "ok"),
    })  # fmt: skip
    gated = disclosure_control.suppress_derived(measures, linked, thresholds, keys=[])
    gated["breakdown"] = breakdown.to_numpy()
    return gated.drop(columns=["input_cells"], errors="ignore").reset_index(drop=True)


# ============================================================================================
# Simple gaps between a group and its reference
# ============================================================================================


@dataclass(frozen=True)
class Gap:
    """Difference and ratio between a group's estimate and its reference group's."""

    difference: float
    difference_se: float
    difference_ci: tuple[float, float]
    ratio: float
    log_ratio_se: float
    ratio_ci: tuple[float, float]
    wording: str


def gap_wording(difference: float, ci: tuple[float, float], direction: str | None) -> str:
    """Word a group-minus-reference difference for a reader.

    ``"disadvantage"`` when the group is worse off (a higher value of a higher-is-worse
    indicator, or a lower value of a higher-is-better one), ``"advantage"`` when better off;
    prefixed ``"no clear "`` when the confidence interval includes zero. Without a direction the
    wording stays neutral (``"higher"``/``"lower"``).
    """
    if difference is None or np.isnan(difference):
        return "not estimated"
    if direction is None:
        word = "higher" if difference > 0 else "lower" if difference < 0 else "no difference"
    elif difference == 0:
        word = "no difference"
    else:
        worse = (difference > 0) == (direction == "higher_is_worse")
        word = "disadvantage" if worse else "advantage"
    if word != "no difference" and ci[0] <= 0 <= ci[1]:
        word = f"no clear {word}"
    return word


def gap(
    group_estimate: float,
    reference_estimate: float,
    group_se: float,
    reference_se: float,
    covariance: float = 0.0,
    *,
    direction: str | None = None,
    level: float = 0.95,
) -> Gap:
    """Difference and ratio between a group and its reference, with CIs.

    Parameters
    ----------
    group_estimate, reference_estimate
        The two estimates (means or proportions).
    group_se, reference_se
        Their standard errors.
    covariance
        Covariance of the two estimates. Zero for independent samples; from the design
        (:func:`analysis.survey.cell_means_with_covariance`) when both come from one sample,
        where strata and clusters make the two domain means correlated.
    direction
        ``higher_is_worse`` or ``higher_is_better``; only used for the wording.
    level
        Confidence level of the normal-theory intervals.

    Notes
    -----
    One implementation with :func:`analysis.survey.contrast` (:func:`analysis.survey.contrast_moments`
    and :func:`analysis.survey.ratio_interval`), with the normal quantile here.
    Difference: ``d = g - r``, ``Var(d) = Var(g) + Var(r) - 2 Cov(g, r)``, CI ``d ± z SE``.
    Ratio: CI on the log scale, ``Var(log g/r) = Var(g)/g² + Var(r)/r² - 2 Cov(g, r)/(g r)``
    (delta method), back-transformed (Katz et al. 1978), so it is asymmetric and never negative.
    The ratio is not defined (NaN) when either estimate is not positive.
    """
    z = _z(level)
    moments = contrast_moments(group_estimate, reference_estimate, float(group_se) ** 2,
                               float(reference_se) ** 2, covariance)
    d, d_se = moments.difference, moments.difference_se
    d_ci = (d - z * d_se, d + z * d_se)
    if np.isfinite(moments.log_ratio_se):
        ratio, lr_se, r_ci = moments.ratio, moments.log_ratio_se, ratio_interval(moments, z)
    else:  # a ratio of estimates that are not both positive is not reported
        ratio, lr_se, r_ci = np.nan, np.nan, (np.nan, np.nan)
    return Gap(d, d_se, d_ci, ratio, lr_se, r_ci, gap_wording(d, d_ci, direction))


def gaps_from_estimates(
    estimates: pd.DataFrame,
    group_cell: str,
    reference_cell: str,
    covariance: np.ndarray | None = None,
    *,
    direction: str | None = None,
    level: float = 0.95,
    disclosure: bool = True,
    thresholds=None,
) -> pd.DataFrame:
    """Difference and ratio rows for every indicator of a table of subgroup estimates.

    Parameters
    ----------
    estimates
        Result-schema table (e.g. from :func:`analysis.survey.estimate_by`) with, for each
        indicator, one row whose ``cell`` is ``group_cell`` and one whose ``cell`` is
        ``reference_cell``.
    group_cell, reference_cell
        The ``cell`` labels of the group and of its reference.
    covariance
        Optional covariance matrix of the estimates, rows/cols in the order of ``estimates``'
        rows (as :func:`analysis.survey.cell_means_with_covariance` returns). Without it the two
        estimates are treated as independent.
    direction
        Direction of the indicator; when ``None`` it is looked up per indicator in
        ``params/indicators.yml``.
    disclosure
        Apply primary suppression to the inputs first when they carry ``n_unweighted``
        (:func:`protect_inputs`; on by default).

    Returns
    -------
    pandas.DataFrame
        Two rows per indicator (``method`` ``difference`` and ``ratio``), ``cell``
        ``"<group> vs <reference>"``, plus the extra column ``wording``. A gap that uses a
        suppressed cell is suppressed; ``n_unweighted``/``n_weighted`` are the sums of the two
        cells'.
    """
    missing = [c for c in ("indicator", "cell", "estimate", "se") if c not in estimates.columns]
    if missing:
        raise InequalityInputError(f"estimates table lacks columns {missing}; pass a result-schema table")
    table = protect_inputs(estimates.reset_index(drop=True), disclosure, thresholds)
    pieces = []
    for indicator, sub in table.groupby("indicator", sort=False):
        rows = []
        picks = {}
        for role, label in (("group", group_cell), ("reference", reference_cell)):
            hit = sub.index[sub["cell"].astype(str) == str(label)]
            if len(hit) != 1:
                raise InequalityInputError(
                    f"indicator {indicator!r}: expected one row with cell {label!r} ({role}), "
                    f"found {len(hit)}; cells are {sorted(sub['cell'].astype(str).unique())}"
                )
            picks[role] = hit[0]
        gi, ri = picks["group"], picks["reference"]
        cov = 0.0 if covariance is None else float(np.asarray(covariance)[gi, ri])
        g_row, r_row = table.loc[gi], table.loc[ri]
        flag = derived_flag([g_row.get("flag"), r_row.get("flag")])
        this_direction = _check_direction(direction, str(indicator))
        common = {
            "source": g_row.get("source"),
            "country": g_row.get("country"),
            "group": g_row.get("group"),
            "indicator": indicator,
            "breakdown": g_row.get("breakdown"),
            "cell": f"{group_cell} vs {reference_cell}",
            "n_unweighted": _sum_or_nan(g_row.get("n_unweighted"), r_row.get("n_unweighted")),
            "n_weighted": _sum_or_nan(g_row.get("n_weighted"), r_row.get("n_weighted")),
            "flag": flag,
        }
        if flag == "suppressed" or pd.isna(g_row["estimate"]) or pd.isna(r_row["estimate"]):
            result = None
        else:
            result = gap(g_row["estimate"], r_row["estimate"], g_row["se"], r_row["se"], cov,
                         direction=this_direction, level=level)  # fmt: skip
        rows.append({**common, "method": "difference",
                     "estimate": result.difference if result else np.nan,
                     "se": result.difference_se if result else np.nan,
                     "ci_low": result.difference_ci[0] if result else np.nan,
                     "ci_high": result.difference_ci[1] if result else np.nan,
                     "wording": result.wording if result else "not estimated"})  # fmt: skip
        rows.append({**common, "method": "ratio (CI on log scale; se is SE of log ratio)",
                     "estimate": result.ratio if result else np.nan,
                     "se": result.log_ratio_se if result else np.nan,
                     "ci_low": result.ratio_ci[0] if result else np.nan,
                     "ci_high": result.ratio_ci[1] if result else np.nan,
                     "wording": result.wording if result else "not estimated"})  # fmt: skip
        out = _finish(rows, extras=["wording"])
        if disclosure:
            out = _gate(out, sub, [[group_cell, reference_cell]] * len(out), thresholds)
        pieces.append(out)
    return pd.concat(pieces, ignore_index=True)


def _sum_or_nan(a, b) -> float:
    if a is None or b is None or pd.isna(a) or pd.isna(b):
        return np.nan
    return float(a) + float(b)


def group_gaps(
    frame: pd.DataFrame,
    design,
    group,
    indicators: list[str],
    *,
    direction: str | None = None,
    level: float = 0.95,
    source: str | None = None,
    country: str | None = None,
    disclosure: bool = True,
) -> pd.DataFrame:
    """Gaps between a catalogue group and its reference for each indicator, from microdata.

    Parameters
    ----------
    frame
        Harmonised respondent table (``analysis.sources.load_processed``).
    design
        Its :class:`analysis.survey.SurveyDesign` (``analysis.survey.design_for(frame)``).
    group
        An :class:`analysis.schema.Group` (``load_groups()[id]``); rows outside both the group and
        its reference are not compared (their count is in the ``n_outside`` column).
    indicators
        Indicator columns.

    Notes
    -----
    The group/reference domain means and their covariance come from
    :func:`analysis.survey.cell_means_with_covariance`, so the SE of the difference accounts for
    both domains sharing strata and PSUs (like ``svyby(..., covmat=TRUE)`` then ``svycontrast``).
    """
    from analysis import survey

    comparison = group.assign(frame)
    column = f"_{group.id}_comparison"
    work = frame.copy()
    work[column] = comparison
    n_outside = int(comparison.isna().sum())
    pieces = []
    for indicator in indicators:
        table, covariance = survey.cell_means_with_covariance(work, design, indicator, [column])
        table = table.copy()
        table["indicator"] = indicator
        out = gaps_from_estimates(table, "group", "reference", covariance,
                                  direction=direction, level=level, disclosure=disclosure)  # fmt: skip
        out["breakdown"] = group.dimension
        out["cell"] = f"{'+'.join(group.members)} vs {_reference_label(group)}"
        out["n_outside"] = n_outside
        pieces.append(label_identity(out, source=source, country=country, group=group.id))
    return pd.concat(pieces, ignore_index=True)


def catalogue_gaps(
    frame: pd.DataFrame,
    design,
    groups: dict | None = None,
    indicators: list[str] | None = None,
    *,
    level: float = 0.95,
    source: str | None = None,
    country: str | None = None,
    disclosure: bool = True,
) -> pd.DataFrame:
    """Gaps for every catalogue group and every indicator present in ``frame``.

    ``groups`` defaults to ``params/groups.yml`` (:func:`analysis.schema.load_groups`) and
    ``indicators`` to the catalogue indicators (``params/indicators.yml``) that are columns of
    ``frame``; each indicator's direction comes from the catalogue. Groups whose dimension is not
    a column, or with no respondent in the group or in its reference, are skipped and listed in
    ``.attrs["skipped"]`` with the reason.
    """
    from analysis.schema import load_groups, load_indicators

    groups = load_groups() if groups is None else groups
    if indicators is None:
        indicators = [i for i in load_indicators() if i in frame.columns]
    skipped, pieces = {}, []
    for group_id, group in groups.items():
        if group.dimension not in frame.columns:
            skipped[group_id] = f"column {group.dimension!r} not in the data"
            continue
        counts = group.assign(frame).value_counts()
        if counts.get("group", 0) == 0 or counts.get("reference", 0) == 0:
            skipped[group_id] = "no respondent in the group or in its reference"
            continue
        pieces.append(group_gaps(frame, design, group, indicators, level=level, source=source,
                                 country=country, disclosure=disclosure))  # fmt: skip
    out = pd.concat(pieces, ignore_index=True) if pieces else _finish([], extras=[])
    out.attrs["skipped"] = skipped
    return out


def _reference_label(group) -> str:
    return "rest" if group.reference == "rest" else "+".join(map(str, group.reference))


# ============================================================================================
# HEAT summary measures of inequality
# ============================================================================================


@dataclass(frozen=True)
class Measure:
    """One summary measure: estimate, SE, CI and how the SE was obtained."""

    name: str
    estimate: float
    se: float = np.nan
    ci_low: float = np.nan
    ci_high: float = np.nan
    se_method: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Subgroups:
    """Validated subgroup estimates of one indicator over one dimension (HEAT's input).

    Arrays are sorted by ``order`` for ordered dimensions (1 = most disadvantaged), and hold only
    subgroups with an estimate; ``n_missing`` counts the subgroups dropped for a missing estimate.
    """

    names: np.ndarray
    estimate: np.ndarray
    se: np.ndarray
    population: np.ndarray
    order: np.ndarray | None
    ordered: bool
    favourable: bool
    scale: float
    reference: str | None
    n_missing: int
    setting_average: float | None = None

    @property
    def share(self) -> np.ndarray:
        """Population shares p_j (sum to 1 over the subgroups with an estimate)."""
        return self.population / self.population.sum()

    @property
    def mean(self) -> float:
        """Setting average mu: the given setting average, else sum_j p_j y_j."""
        if self.setting_average is not None:
            return float(self.setting_average)
        return float(np.sum(self.share * self.estimate))

    @property
    def ridit(self) -> np.ndarray:
        """Ridit rank X_j = sum_{k<j} p_k + p_j / 2 (ordered dimensions)."""
        p = self.share
        return np.cumsum(p) - 0.5 * p

    @property
    def best_index(self) -> int:
        """Index of the best-performing subgroup (highest if favourable, else lowest)."""
        return int(np.argmax(self.estimate) if self.favourable else np.argmin(self.estimate))

    @property
    def reference_index(self) -> int:
        """HEAT's reference point for PAR/PAF: the given reference subgroup; else the most
        advantaged subgroup (highest order) for ordered dimensions; else the best-performing one."""
        if self.reference is not None:
            return int(np.flatnonzero(self.names == self.reference)[0])
        if self.ordered:
            return len(self.estimate) - 1
        return self.best_index


def prepare_subgroups(
    subgroups: pd.DataFrame,
    *,
    ordered: bool,
    favourable: bool,
    scale: float = 100.0,
    reference: str | None = None,
    setting_average: float | None = None,
    columns: dict | None = None,
) -> Subgroups:
    """Validate a HEAT-style table of subgroup estimates.

    Parameters
    ----------
    subgroups
        One row per subgroup with columns ``subgroup``, ``estimate``, ``se`` and ``population``
        (population size or weighted count: only shares p_j = N_j / sum N matter, except for the
        PAF/PAR standard error, which uses the counts as in HEAT), and ``order`` (integers
        1..J, 1 = most disadvantaged) for ordered dimensions. ``columns`` renames, e.g.
        ``{"population": "n_weighted", "subgroup": "cell"}``.
    ordered
        Whether the dimension has a natural order (age, income).
    favourable
        True when higher values are better (HEAT's "favourable indicator").
    scale
        Scale of the estimates: 100 for percentages, 1 for proportions, 1000 for rates per 1000.
    reference
        Name of the reference subgroup for PAR/PAF and MDR (optional; see
        :attr:`Subgroups.reference_index`).

    Raises
    ------
    InequalityInputError
        On missing columns, missing populations or SEs, a reference that is not a subgroup, an
        order that is not 1..J, or more than 15% of subgroup estimates missing (HEAT's rule; for
        ordered dimensions no estimate may be missing because every rank depends on every
        subgroup).
    """
    names = {"subgroup": "subgroup", "estimate": "estimate", "se": "se",
             "population": "population", "order": "order"}  # fmt: skip
    names.update(columns or {})
    required = ["subgroup", "estimate", "population"] + (["order"] if ordered else [])
    absent = [names[c] for c in required if names[c] not in subgroups.columns]
    if absent:
        raise InequalityInputError(
            f"subgroup table lacks columns {absent}; it has {list(subgroups.columns)} "
            "(map yours with columns={'population': 'n_weighted', ...})"
        )
    table = subgroups.reset_index(drop=True)
    label = table[names["subgroup"]].astype(str).to_numpy()
    y = pd.to_numeric(table[names["estimate"]], errors="coerce").to_numpy(float)
    se = (pd.to_numeric(table[names["se"]], errors="coerce").to_numpy(float)
          if names["se"] in table.columns else np.full(len(y), np.nan))  # fmt: skip
    pop = pd.to_numeric(table[names["population"]], errors="coerce").to_numpy(float)
    if len(set(label)) != len(label):
        raise InequalityInputError(f"subgroup names repeat: {sorted(label)}; give one row per subgroup")
    bad_pop = np.flatnonzero(~np.isfinite(pop) | (pop < 0))
    if len(bad_pop):
        raise InequalityInputError(
            f"column '{names['population']}': subgroup {label[bad_pop[0]]!r} has population "
            f"{pop[bad_pop[0]]!r}; every subgroup needs a population size >= 0"
        )
    order = None
    if ordered:
        order = pd.to_numeric(table[names["order"]], errors="coerce").to_numpy(float)
        expected = np.arange(1, len(order) + 1)
        if not np.array_equal(np.sort(order), expected):
            raise InequalityInputError(
                f"column '{names['order']}' must hold the integers 1..{len(order)} "
                f"(1 = most disadvantaged); found {list(order)}"
            )
        sort = np.argsort(order)
        label, y, se, pop, order = label[sort], y[sort], se[sort], pop[sort], order[sort]
    missing = ~np.isfinite(y)
    if ordered and missing.any():
        raise InequalityInputError(
            f"ordered dimension: subgroup(s) {list(label[missing])} lack an estimate; every "
            "subgroup of an ordered dimension is needed (HEAT rule)"
        )
    if missing.mean() > MAX_MISSING_SHARE:
        raise InequalityInputError(
            f"{missing.sum()} of {len(y)} subgroup estimates are missing "
            f"({list(label[missing])}); HEAT computes no summary measure when more than "
            f"{MAX_MISSING_SHARE:.0%} are missing"
        )
    keep = ~missing
    if reference is not None and reference not in set(label[keep]):
        raise InequalityInputError(
            f"reference={reference!r} is not a subgroup with an estimate; subgroups are {list(label[keep])}"
        )
    if not np.isfinite(scale) or scale <= 0:
        raise InequalityInputError(f"scale={scale!r}: use 1 (proportions), 100 (percent), 1000, ...")
    if pop[keep].sum() <= 0:
        raise InequalityInputError("every subgroup has population 0: population shares are undefined")
    return Subgroups(
        names=label[keep], estimate=y[keep], se=se[keep], population=pop[keep],
        order=None if order is None else order[keep], ordered=ordered, favourable=favourable,
        scale=float(scale), reference=reference, n_missing=int(missing.sum()),
        setting_average=setting_average,
    )  # fmt: skip


def _normal(name, estimate, se, z, se_method, note="", log_scale=False, **extra) -> Measure:
    """A measure with a normal-theory CI, on the log scale when ``log_scale``.

    For log-scale measures ``se`` is the SE of the log of the estimate.
    """
    if log_scale:
        lo, hi = np.exp(np.log(estimate) - z * se), np.exp(np.log(estimate) + z * se)
    else:
        lo, hi = estimate - z * se, estimate + z * se
    return Measure(name, float(estimate), float(se), float(lo), float(hi), se_method, note, extra)


def _require_complex(s: Subgroups, name: str) -> None:
    if len(s.estimate) < MIN_SUBGROUPS_COMPLEX:
        raise InequalityInputError(
            f"{name} needs at least {MIN_SUBGROUPS_COMPLEX} subgroups with an estimate "
            f"(HEAT rule); found {len(s.estimate)}: {list(s.names)}"
        )


def _require_se(s: Subgroups, name: str) -> bool:
    return bool(np.all(np.isfinite(s.se)))


# --- simple measures ------------------------------------------------------------------------


def difference_measure(s: Subgroups, z: float) -> Measure:
    """HEAT's D: most advantaged minus most disadvantaged (ordered), highest minus lowest
    (non-ordered), or a subgroup minus the given reference subgroup.

    SE ``sqrt(se_a² + se_b²)``: HEAT treats subgroup estimates as independent.
    """
    a, b = _simple_pair(s)
    d = s.estimate[a] - s.estimate[b]
    se = np.sqrt(s.se[a] ** 2 + s.se[b] ** 2)
    return _normal("D", d, se, z, "independent subgroups", f"{s.names[a]} minus {s.names[b]}")


def ratio_measure(s: Subgroups, z: float) -> Measure:
    """HEAT's R: the same pair as D as a ratio; CI on the log scale,
    ``SE(log R) = sqrt((se_a/y_a)² + (se_b/y_b)²)``."""
    a, b = _simple_pair(s)
    ya, yb = s.estimate[a], s.estimate[b]
    if ya <= 0 or yb <= 0:
        return Measure("R", np.nan, note=f"ratio undefined: an estimate is not positive ({ya}, {yb})")
    se = np.sqrt((s.se[a] / ya) ** 2 + (s.se[b] / yb) ** 2)
    return _normal("R", ya / yb, se, z, "independent subgroups; se of log R",
                   f"{s.names[a]} over {s.names[b]}", log_scale=True)  # fmt: skip


def _simple_pair(s: Subgroups) -> tuple[int, int]:
    if len(s.estimate) < 2:
        raise InequalityInputError(f"D and R need two subgroups with an estimate; found {list(s.names)}")
    if s.ordered:
        return len(s.estimate) - 1, 0
    if s.reference is not None:
        ref = s.reference_index
        others = [j for j in range(len(s.estimate)) if j != ref]
        # the subgroup furthest from the reference
        far = max(others, key=lambda j: abs(s.estimate[j] - s.estimate[ref]))
        return far, ref
    return int(np.argmax(s.estimate)), int(np.argmin(s.estimate))


# --- ordered dimensions: concentration indices, SII, RII -------------------------------------


def aci_measure(s: Subgroups, z: float, se_method: str = "analytic") -> Measure:
    """Absolute concentration index ``ACI = sum_j p_j (2 X_j - 1) y_j`` (HEAT technical notes).

    ``se_method="analytic"`` (default, the technical notes): ACI is linear in the subgroup
    estimates, so with independent subgroups ``Var(ACI) = sum_j p_j² (2 X_j - 1)² se_j²``
    (shares and ranks are taken as fixed).
    ``se_method="regression"``: the convenience regression that HEAT's R package (healthequal)
    codes: ``2 sigma²_R y_j sqrt(N_j)`` regressed on ``X_j sqrt(N_j)`` and ``sqrt(N_j)``
    without intercept, whose OLS coefficient SE reflects only the fit of J points to a line and
    ignores the sampling error of the subgroup estimates; it is offered for comparison with
    HEAT Plus output, not as the default.
    """
    _require_complex(s, "ACI")
    p, X, y = s.share, s.ridit, s.estimate
    aci = float(np.sum(p * (2 * X - 1) * y))
    if se_method == "analytic":
        se = float(np.sqrt(np.sum((p * (2 * X - 1)) ** 2 * s.se**2)))
        return _normal("ACI", aci, se, z, "analytic (HEAT technical notes)")
    if se_method == "regression":
        coef, se = _concentration_regression(s, relative=False)
        return _normal("ACI", coef, se, z, "convenience regression (healthequal)")
    raise InequalityInputError(f"se_method={se_method!r}: use 'analytic' or 'regression'")


def rci_measure(s: Subgroups, z: float, se_method: str = "analytic") -> Measure:
    """Relative concentration index ``RCI = ACI / mu`` as a fraction (HEAT shows it x100).

    ``se_method="analytic"``: delta method with the setting average also a function of the
    estimates: ``d RCI / d y_j = p_j (2 X_j - 1 - RCI) / mu``, so
    ``Var(RCI) = sum_j p_j² (2 X_j - 1 - RCI)² se_j² / mu²``.
    ``se_method="regression"``: healthequal's convenience regression (see :func:`aci_measure`).
    """
    _require_complex(s, "RCI")
    p, X, y, mu = s.share, s.ridit, s.estimate, s.mean
    rci = float(np.sum(p * (2 * X - 1) * y)) / mu
    if se_method == "analytic":
        se = float(np.sqrt(np.sum((p * (2 * X - 1 - rci)) ** 2 * s.se**2)) / mu)
        return _normal("RCI", rci, se, z, "analytic delta method (HEAT technical notes)")
    if se_method == "regression":
        coef, se = _concentration_regression(s, relative=True)
        return _normal("RCI", coef, se, z, "convenience regression (healthequal)")
    raise InequalityInputError(f"se_method={se_method!r}: use 'analytic' or 'regression'")


def _concentration_regression(s: Subgroups, relative: bool) -> tuple[float, float]:
    """The convenience regression of Kakwani, Wagstaff & van Doorslaer (1997) on grouped data.

    ``lhs_j = 2 sigma²_R (y_j / mu) sqrt(N_j)`` (times mu for the absolute index) regressed on
    ``X_j sqrt(N_j)`` and ``sqrt(N_j)`` with no intercept; the coefficient of the first term is
    the index; its SE is the OLS one with J - 2 residual degrees of freedom.
    """
    p, X, y, mu = s.share, s.ridit, s.estimate, s.mean
    root_n = np.sqrt(s.population)
    sigma2 = float(np.sum(p * (X - 0.5) ** 2))
    lhs = 2 * sigma2 * (y / mu) * root_n * (1.0 if relative else mu)
    design = np.column_stack([X * root_n, root_n])
    coef, *_ = np.linalg.lstsq(design, lhs, rcond=None)
    resid = lhs - design @ coef
    dof = len(y) - 2
    if dof <= 0:
        return float(coef[0]), np.nan
    cov = float(resid @ resid) / dof * np.linalg.inv(design.T @ design)
    return float(coef[0]), float(np.sqrt(cov[0, 0]))


def _grouped_rank_fit(s: Subgroups, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Fit y on the ridit rank across subgroups; return coefficients and their HC1 covariance.

    ``model="logistic"`` (HEAT's default for indicators bounded by the scale): a binomial
    logistic regression of the counts ``c_j = round(y_j / scale * N_j)`` out of ``N_j``
    (``N_j`` rounded up) on ``X_j``, with the prior weights HEAT's R code passes (``N_j``),
    which R multiplies by the trial counts, so each subgroup enters with weight ``N_j²``;
    ``model="linear"``: least squares of ``y_j / scale`` on ``X_j`` with weights ``N_j``.
    The covariance is the sandwich with the HC1 small-sample factor ``J / (J - 2)``, as HEAT's
    code requests from ``marginaleffects(vcov = "HC1")``.
    """
    pop = np.ceil(s.population)
    X = np.column_stack([np.ones(len(pop)), s.ridit])
    if model == "logistic":
        counts = np.round(s.estimate / s.scale * pop)
        if np.any(counts < 0) or np.any(counts > pop):
            raise InequalityInputError(
                f"SII/RII (logistic): estimates must lie within 0..scale={s.scale}; "
                f"found {list(s.estimate)} (use model='linear' for unbounded indicators)"
            )
        target = counts / pop
        weight = pop * pop
        beta = np.zeros(2)
        for _ in range(100):
            fitted = expit(X @ beta)
            info = X.T @ ((weight * fitted * (1 - fitted))[:, None] * X)
            step = np.linalg.solve(info, X.T @ (weight * (target - fitted)))
            beta = beta + step
            if np.max(np.abs(step)) < 1e-12:
                break
        fitted = expit(X @ beta)
        info = X.T @ ((weight * fitted * (1 - fitted))[:, None] * X)
        scores = (weight * (target - fitted))[:, None] * X
    elif model == "linear":
        target = s.estimate / s.scale
        weight = pop
        info = X.T @ (weight[:, None] * X)
        beta = np.linalg.solve(info, X.T @ (weight * target))
        scores = (weight * (target - X @ beta))[:, None] * X
    else:
        raise InequalityInputError(f"model={model!r}: use 'logistic' or 'linear'")
    bread = np.linalg.inv(info)
    n, k = X.shape
    cov = bread @ (scores.T @ scores) @ bread * n / (n - k)
    return beta, cov


def _rank_contrasts(beta: np.ndarray, logistic: bool) -> tuple[float, np.ndarray, float, np.ndarray]:
    """SII and RII of a regression on the ridit rank, with their gradients in the coefficients.

    ``beta = (intercept, slope)`` of a logistic (``logistic=True``: predictions
    ``expit(b0 + b1 X)``) or linear model. SII = prediction at rank 1 minus at rank 0, with the
    gradient of that difference; RII = their ratio, with the gradient of ``log RII`` (its CI is
    on the log scale); RII is NaN (gradient NaN) when a linear prediction is not positive.
    Used for grouped data (:func:`sii_measure`, :func:`rii_measure`) and respondent data
    (:func:`_design_based_rank_measures`) alike; SEs by the delta method ``sqrt(g' V g)``.
    """
    if logistic:
        p1, p0 = expit(beta.sum()), expit(beta[0])
        return (p1 - p0, np.array([p1 * (1 - p1) - p0 * (1 - p0), p1 * (1 - p1)]),
                p1 / p0, np.array([(1 - p1) - (1 - p0), 1 - p1]))
    v1, v0 = beta.sum(), beta[0]
    if v1 > 0 and v0 > 0:
        return v1 - v0, np.array([0.0, 1.0]), v1 / v0, np.array([1 / v1 - 1 / v0, 1 / v1])
    return v1 - v0, np.array([0.0, 1.0]), np.nan, np.full(2, np.nan)


def sii_measure(s: Subgroups, z: float, model: str = "logistic") -> Measure:
    """Slope index of inequality: predicted value at rank 1 minus at rank 0, on the indicator's
    scale (see :func:`_grouped_rank_fit` for the model). SE by the delta method from the HC1
    sandwich covariance of the coefficients."""
    _require_complex(s, "SII")
    beta, cov = _grouped_rank_fit(s, model)
    value, grad, _, _ = _rank_contrasts(beta, model == "logistic")
    se = float(np.sqrt(grad @ cov @ grad))
    return _normal("SII", value * s.scale, se * s.scale, z, f"{model} regression on rank, HC1 sandwich")


def rii_measure(s: Subgroups, z: float, model: str = "logistic") -> Measure:
    """Relative index of inequality: predicted value at rank 1 over at rank 0; CI on the log
    scale with the delta-method SE of ``log RII`` from the HC1 sandwich covariance."""
    _require_complex(s, "RII")
    beta, cov = _grouped_rank_fit(s, model)
    _, _, value, grad = _rank_contrasts(beta, model == "logistic")
    if not np.isfinite(value):
        return Measure("RII", np.nan, note="linear predictions at rank 0 or 1 are not positive")
    se = float(np.sqrt(grad @ cov @ grad))
    return _normal("RII", value, se, z, f"{model} regression on rank, HC1 sandwich; se of log RII",
                   log_scale=True)  # fmt: skip


# --- PAR and PAF ------------------------------------------------------------------------------


def _walter_paf_se(s: Subgroups) -> float:
    """Walter's (1978) SE of the attributable fraction (as a fraction) from the 2x2 table HEAT
    builds: reference subgroup vs rest of the population, counts from estimates x populations."""
    ref = s.reference_index
    total = s.population.sum()
    ref_pop = s.population[ref]
    c = s.estimate[ref] / s.scale * ref_pop
    d = ref_pop - c
    a = s.mean / s.scale * total - c
    b = total - a - ref_pop
    n = a + b + c + d
    return float(np.sqrt((c * n * (a * d * (n - c) + b * c**2)) / ((a + c) ** 3 * (c + d) ** 3)))


def _par_value(s: Subgroups) -> float:
    ref = s.estimate[s.reference_index]
    value = ref - s.mean
    # HEAT: no improvement possible in the direction of "better" -> 0
    if (s.favourable and value < 0) or (not s.favourable and value > 0):
        return 0.0
    return float(value)


def _par_gradients(s: Subgroups) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``PAR = y_ref - sum_j p_j y_j`` and ``PAF = 100 (y_ref / mu - 1)`` in the
    subgroup estimates (population shares fixed)."""
    ref = s.reference_index
    p, mu = s.share, s.mean
    unit = np.zeros(len(p))
    unit[ref] = 1.0
    return unit - p, 100 * (unit / mu - s.estimate[ref] * p / mu**2)


def par_measure(s: Subgroups, z: float, se_method: str = "walter") -> Measure:
    """Population attributable risk ``PAR = y_ref - mu`` (0 when the reference is not better than
    the average).

    ``se_method="walter"`` (HEAT, for subgroup tables with population counts): ``mu x`` Walter's
    (1978) SE of the PAF as a fraction, which treats the populations as sample counts.
    ``se_method="delta"`` (for design-based subgroup estimates, where the populations are
    weighted totals and not sample sizes): delta method with independent subgroups,
    ``Var = sum_j (1[j = ref] - p_j)² se_j²``.
    """
    _require_complex(s, "PAR")
    value = _par_value(s)
    note = f"reference subgroup {s.names[s.reference_index]}"
    if se_method == "walter":
        return _normal("PAR", value, s.mean * _walter_paf_se(s), z,
                       "Walter (1978) via PAF, HEAT technical notes", note)  # fmt: skip
    if se_method == "delta":
        grad, _ = _par_gradients(s)
        return _normal("PAR", value, np.sqrt(np.sum(grad**2 * s.se**2)), z,
                       "delta method, independent subgroups", note)  # fmt: skip
    raise InequalityInputError(f"par_se={se_method!r}: use 'walter' or 'delta'")


def paf_measure(s: Subgroups, z: float, se_method: str = "walter") -> Measure:
    """Population attributable fraction ``PAF = 100 PAR / mu`` (percent).

    SE: Walter's (1978) formula gives the SE of the fraction; HEAT's R code reports it unscaled
    next to a percent estimate. Following the technical notes the SE is put on the estimate's
    scale (x100), so ``estimate ± z se`` is a valid interval. ``se_method="delta"`` as for
    :func:`par_measure`.
    """
    _require_complex(s, "PAF")
    value = 100 * _par_value(s) / s.mean
    note = f"reference subgroup {s.names[s.reference_index]}"
    if se_method == "walter":
        return _normal("PAF", value, 100 * _walter_paf_se(s), z, "Walter (1978), on the percent scale", note)
    if se_method == "delta":
        _, grad = _par_gradients(s)
        return _normal("PAF", value, np.sqrt(np.sum(grad**2 * s.se**2)), z,
                       "delta method, independent subgroups", note)  # fmt: skip
    raise InequalityInputError(f"par_se={se_method!r}: use 'walter' or 'delta'")


# --- non-ordered dimensions -------------------------------------------------------------------


def bgv_measure(s: Subgroups, z: float) -> Measure:
    """Between-group variance ``BGV = sum_j p_j (y_j - mu)²``.

    SE from the technical notes' variance for independent normal subgroup estimates:
    ``4 sum p_j² se_j² (y_j - mu)² + 2 [ (sum p_j² se_j²)² - sum p_j⁴ se_j⁴ + sum p_j² (1-p_j)² se_j⁴ ]``.
    """
    _require_complex(s, "BGV")
    p, y, se, mu = s.share, s.estimate, s.se, s.mean
    value = float(np.sum(p * (y - mu) ** 2))
    s2 = np.sum(p**2 * se**2)
    var = 4 * np.sum(p**2 * se**2 * (y - mu) ** 2) + 2 * (
        s2**2 - np.sum(p**4 * se**4) + np.sum(p**2 * (1 - p) ** 2 * se**4)
    )
    return _normal("BGV", value, np.sqrt(var), z, "analytic (HEAT technical notes)")


def bgsd_measure(s: Subgroups, z: float) -> Measure:
    """Between-group standard deviation ``sqrt(BGV)``; SE by the delta method ``SE(BGV) / (2 BGSD)``."""
    bgv = bgv_measure(s, z)
    value = np.sqrt(bgv.estimate)
    se = bgv.se / (2 * value) if value > 0 else np.nan
    return _normal("BGSD", value, se, z, "delta method from BGV")


def cov_measure(s: Subgroups, z: float) -> Measure:
    """Coefficient of variation ``COV = 100 BGSD / mu``; first-order delta-method SE with the
    gradient ``100 p_j [ (y_j - mu) / (BGSD mu) - BGSD / mu² ]``."""
    _require_complex(s, "COV")
    p, y, mu = s.share, s.estimate, s.mean
    bgsd = float(np.sqrt(np.sum(p * (y - mu) ** 2)))
    value = 100 * bgsd / mu
    grad = 100 * p * ((y - mu) / (bgsd * mu) - bgsd / mu**2) if bgsd > 0 else np.zeros_like(p)
    se = float(np.sqrt(np.sum(grad**2 * s.se**2)))
    return _normal("COV", value, se, z, "delta method (first order)")


def theil_measure(s: Subgroups, z: float) -> Measure:
    """Theil index ``TI = 1000 sum_j p_j r_j ln r_j`` with ``r_j = y_j / mu``.

    SE by the delta method (the technical notes' analytic variance):
    ``d TI / d y_j = 1000 (p_j / mu) [1 + ln r_j - sum_k p_k r_k (1 + ln r_k)]``. HEAT's R code
    returns this SE without the x1000 factor while the estimate carries it; here the SE is on the
    estimate's scale. Zero estimates are replaced by 1e-6 of the scale as in HEAT.
    """
    _require_complex(s, "TI")
    p = s.share
    y = np.where(s.estimate == 0, 1e-6 * s.scale / 100, s.estimate)
    mu = float(np.sum(p * y)) if s.setting_average is None else s.setting_average
    r = y / mu
    value = 1000 * float(np.sum(p * r * np.log(r)))
    centre = np.sum(p * r * (1 + np.log(r)))
    grad = 1000 * (p / mu) * (1 + np.log(r) - centre)
    return _normal("TI", value, np.sqrt(np.sum(grad**2 * s.se**2)), z, "delta method, x1000 scale")


def mld_measure(s: Subgroups, z: float) -> Measure:
    """Mean log deviation ``MLD = 1000 sum_j p_j (-ln r_j)``; delta-method SE on the same x1000
    scale with ``d MLD / d y_j = 1000 p_j (1 / mu - 1 / y_j)``."""
    _require_complex(s, "MLD")
    p = s.share
    y = np.where(s.estimate == 0, 1e-6 * s.scale / 100, s.estimate)
    mu = float(np.sum(p * y)) if s.setting_average is None else s.setting_average
    value = 1000 * float(np.sum(p * -np.log(y / mu)))
    grad = 1000 * p * (1 / mu - 1 / y)
    return _normal("MLD", value, np.sqrt(np.sum(grad**2 * s.se**2)), z, "delta method, x1000 scale")


def _mean_differences(y: np.ndarray, p: np.ndarray, s: Subgroups, name: str) -> float:
    """Value of an MD*/IDIS* measure for estimates ``y`` (used for the point and the draws)."""
    mu = float(np.sum(p * y)) if s.setting_average is None else s.setting_average
    kind, weighted = name[:-1], name.endswith("W")
    if kind == "MDB":
        target = np.max(y) if s.favourable else np.min(y)
    elif kind == "MDR":
        target = y[s.reference_index]
    else:  # MDM, IDIS
        target = mu
    dev = np.abs(y - target)
    value = float(np.sum(p * dev)) if weighted else float(np.mean(dev))
    return 100 * value / mu if kind == "IDIS" else value


def mean_difference_measure(
    s: Subgroups, z: float, name: str, draws: int = 2000, seed: int = 20240601
) -> Measure:
    """MDB/MDM/MDR (mean difference from the best subgroup, the mean, the reference) and
    IDIS (index of disparity, % of the mean), unweighted (suffix U: average over subgroups) or
    weighted (suffix W: population shares).

    These are sums of absolute values, not smooth at zero, so as in HEAT the CI comes from
    simulation (Ahn et al. 2019): subgroup estimates are drawn from ``N(y_j, se_j²)`` truncated
    to ``[0, scale]`` for percentages (``>= 0`` otherwise), the measure recomputed, and the
    2.5/97.5 percentiles taken; the reported SE is the SD of the draws. The generator is seeded,
    so results are reproducible.
    """
    _require_complex(s, name)
    if name.startswith("MDR") and s.reference is None:
        raise InequalityInputError(f"{name} needs a reference subgroup: pass reference='<subgroup>'")
    p = s.share
    value = _mean_differences(s.estimate, p, s, name)
    if not _require_se(s, name):
        return Measure(name, value, note="no CI: some subgroup SEs are missing")
    rng = np.random.default_rng(seed)
    upper = s.scale if s.scale == 100 else np.inf
    a = (0 - s.estimate) / np.where(s.se > 0, s.se, np.inf)
    b = (upper - s.estimate) / np.where(s.se > 0, s.se, np.inf)
    sims = stats.truncnorm.rvs(a, b, loc=s.estimate, scale=np.where(s.se > 0, s.se, 1e-12),
                               size=(draws, len(p)), random_state=rng)  # fmt: skip
    values = np.array([_mean_differences(row, p, s, name) for row in sims])
    alpha = (1 - (2 * stats.norm.cdf(z) - 1)) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return Measure(name, value, float(values.std(ddof=1)), float(lo), float(hi),
                   f"simulation ({draws} draws, seed {seed}); se is SD of draws")  # fmt: skip


# --- the table of measures --------------------------------------------------------------------


def compute_measure(
    s: Subgroups,
    name: str,
    *,
    level: float = 0.95,
    aci_se: str = "analytic",
    rank_model: str = "logistic",
    par_se: str = "walter",
    draws: int = 2000,
    seed: int = 20240601,
) -> Measure:
    """Compute one HEAT measure by its code (``"ACI"``, ``"BGV"``, ``"MDBW"``, ...)."""
    z = _z(level)
    simple = {"D": difference_measure, "R": ratio_measure, "BGV": bgv_measure,
              "BGSD": bgsd_measure, "COV": cov_measure, "TI": theil_measure, "MLD": mld_measure}
    if name == "PAR":
        return par_measure(s, z, par_se)
    if name == "PAF":
        return paf_measure(s, z, par_se)
    if name in ("ACI", "RCI", "SII", "RII") and not s.ordered:
        raise InequalityInputError(f"{name} needs an ordered dimension (ordered=True with an 'order' column)")
    if name in simple:
        return simple[name](s, z)
    if name == "ACI":
        return aci_measure(s, z, aci_se)
    if name == "RCI":
        return rci_measure(s, z, aci_se)
    if name == "SII":
        return sii_measure(s, z, rank_model)
    if name == "RII":
        return rii_measure(s, z, rank_model)
    if name[:-1] in ("MDB", "MDM", "MDR", "IDIS") and name[-1] in "UW":
        return mean_difference_measure(s, z, name, draws, seed)
    raise InequalityInputError(f"unknown measure {name!r}; known measures are {sorted(MEASURE_LABELS)}")


def inequality_measures(
    subgroups: pd.DataFrame,
    *,
    ordered: bool,
    direction: str | None = None,
    favourable: bool | None = None,
    measures: list[str] | None = None,
    scale: float = 100.0,
    reference: str | None = None,
    setting_average: float | None = None,
    aci_se: str = "analytic",
    rank_model: str = "logistic",
    par_se: str = "walter",
    level: float = 0.95,
    columns: dict | None = None,
    indicator: str | None = None,
    breakdown: str | None = None,
    source: str | None = None,
    country: str | None = None,
    group: str | None = None,
    draws: int = 2000,
    seed: int = 20240601,
    disclosure: bool = True,
    thresholds=None,
) -> pd.DataFrame:
    """HEAT summary measures of inequality from subgroup estimates, in the result schema.

    Parameters
    ----------
    subgroups
        One row per subgroup: ``subgroup``, ``estimate``, ``se``, ``population`` and, for ordered
        dimensions, ``order`` (1 = most disadvantaged); optional ``flag`` (ok/caution/suppressed)
        and ``n_unweighted``. See :func:`prepare_subgroups`. A subgroup whose flag is
        ``suppressed`` suppresses every measure (a measure is not published when it is built on a
        small cell) rather than being treated as missing.
    ordered
        Whether the dimension is ordered.
    direction, favourable
        The indicator's direction (``higher_is_better`` = HEAT's favourable indicator) or the
        boolean directly; looked up in ``params/indicators.yml`` by ``indicator`` when neither is
        given.
    measures
        Measure codes; default every measure for the kind of dimension
        (:data:`ORDERED_MEASURES` or :data:`NON_ORDERED_MEASURES`); MDR* are skipped without a
        ``reference``.
    scale
        100 for percentages, 1 for proportions, 1000 for rates per 1000 (used by SII/RII,
        PAF/PAR and the simulation bounds).
    aci_se
        ``"analytic"`` (technical notes; default) or ``"regression"`` (HEAT's R code) for ACI/RCI.
    rank_model
        ``"logistic"`` (default, for bounded indicators) or ``"linear"`` for SII/RII.
    par_se
        ``"walter"`` (HEAT; populations are counts) or ``"delta"`` (design-based subgroup
        estimates) for PAR/PAF; see :func:`par_measure`.
    disclosure
        Apply primary suppression to subgroups that carry ``n_unweighted`` first (on by
        default; see :func:`protect_inputs`), then suppress every measure built on a suppressed
        subgroup (:func:`analysis.disclosure.suppress_derived`).

    Returns
    -------
    pandas.DataFrame
        Result schema, one row per measure: ``method`` is the measure code, ``cell`` ``"all"``,
        ``breakdown`` the dimension; extra columns ``measure_label``, ``se_method``, ``note``,
        ``n_subgroups`` and ``n_missing_subgroups``. A measure that cannot be computed under
        HEAT's rules (e.g. fewer than three subgroups) raises; a measure undefined for these
        numbers (e.g. a ratio with a zero) has a blank estimate and a ``note``.

    Notes
    -----
    Population shares ``p_j`` are the subgroups' populations over their sum, the setting average
    ``mu = sum_j p_j y_j`` (or ``setting_average``), ridit ranks
    ``X_j = sum_{k<j} p_k + p_j / 2``. Subgroup estimates are treated as independent with the
    given SEs (HEAT's assumption; for subgroups from one survey, shared PSUs make them correlated
    and these SEs approximate).
    """
    favourable = _favourable(direction, favourable, indicator)
    subgroups = protect_inputs(subgroups.reset_index(drop=True), disclosure, thresholds)
    flag = derived_flag(subgroups["flag"]) if "flag" in subgroups.columns else "ok"
    if flag == "suppressed":
        # a suppressed subgroup has no estimate: the measures are withheld, not recomputed
        # without it (that would still reveal it)
        s = None
    else:
        s = prepare_subgroups(subgroups, ordered=ordered, favourable=favourable, scale=scale,
                              reference=reference, setting_average=setting_average,
                              columns=columns)  # fmt: skip
    if measures is None:
        measures = list(ORDERED_MEASURES if ordered else NON_ORDERED_MEASURES)
        if reference is None:
            measures = [m for m in measures if not m.startswith("MDR")]
    unknown = [m for m in measures if m not in MEASURE_LABELS]
    if unknown:
        raise InequalityInputError(f"unknown measure(s) {unknown}; known measures are {sorted(MEASURE_LABELS)}")
    n_unweighted = (pd.to_numeric(subgroups["n_unweighted"], errors="coerce").sum(min_count=1)
                    if "n_unweighted" in subgroups.columns else np.nan)  # fmt: skip
    population_column = (columns or {}).get("population", "population")
    population = pd.to_numeric(subgroups.get(population_column), errors="coerce")
    rows = []
    for name in measures:
        if s is None:
            m = Measure(name, np.nan, note="built on a suppressed subgroup")
        else:
            m = compute_measure(s, name, level=level, aci_se=aci_se, rank_model=rank_model,
                                par_se=par_se, draws=draws, seed=seed)  # fmt: skip
        rows.append({
            "source": source, "country": country, "group": group, "indicator": indicator,
            "breakdown": breakdown, "cell": "all", "estimate": m.estimate, "se": m.se,
            "ci_low": m.ci_low, "ci_high": m.ci_high, "n_unweighted": n_unweighted,
            "n_weighted": float(population.sum()) if population is not None else np.nan,
            "flag": flag, "method": name,
            "measure_label": MEASURE_LABELS[name], "se_method": m.se_method, "note": m.note,
            "n_subgroups": len(s.estimate) if s else len(subgroups),
            "n_missing_subgroups": s.n_missing if s else np.nan,
        })  # fmt: skip
    out = _finish(rows, extras=["measure_label", "se_method", "note", "n_subgroups",
                                "n_missing_subgroups"])  # fmt: skip
    subgroup_column = (columns or {}).get("subgroup", "subgroup")
    estimate_column = (columns or {}).get("estimate", "estimate")
    inputs = pd.DataFrame({
        "cell": subgroups[subgroup_column].astype(str),
        "estimate": subgroups[estimate_column],
        "flag": subgroups["flag"] if "flag" in subgroups.columns else "ok",
    })  # fmt: skip
    used = [list(s.names)] * len(out) if s is not None else None
    return _gate(out, inputs, used, thresholds) if disclosure else out


def _favourable(direction: str | None, favourable: bool | None, indicator: str | None) -> bool:
    if favourable is not None:
        return bool(favourable)
    direction = _check_direction(direction, indicator)
    if direction is None:
        raise InequalityInputError(
            f"indicator {indicator!r}: give direction='higher_is_worse'|'higher_is_better' "
            "(or favourable=True/False); it is not in params/indicators.yml"
        )
    return direction == "higher_is_better"


def inequality_measures_from_microdata(
    frame: pd.DataFrame,
    design,
    indicator: str,
    dimension: str,
    *,
    categories: list[str] | None = None,
    ordered: bool | None = None,
    direction: str | None = None,
    scale: float | None = None,
    source: str | None = None,
    country: str | None = None,
    **options,
) -> pd.DataFrame:
    """HEAT measures from respondent data: subgroup estimates from the survey design first.

    Subgroup means, design-based SEs and weighted counts (the populations) come from
    :func:`analysis.survey.estimate_by` over ``dimension``; the order of categories and whether
    the dimension is ordered come from ``params/groups.yml`` (``dimensions:``) unless given
    (``categories`` in order from most disadvantaged to most advantaged). Binary indicators are
    estimated as proportions, so ``scale`` defaults to 1. Flags of the subgroup estimates travel
    into the measures (a suppressed subgroup suppresses them). SII and RII are fitted to the
    respondents themselves with the design (:func:`_design_based_rank_measures`), as HEAT does
    for survey data. PAR/PAF SEs use the delta method
    (``par_se="delta"``): the populations here are weighted totals, not sample counts, so
    Walter's count-based SE does not apply.
    """
    options.setdefault("par_se", "delta")
    from analysis import survey

    if categories is None or ordered is None:
        from analysis.schema import load_dimensions

        known = load_dimensions()
        if dimension not in known and (categories is None or ordered is None):
            raise InequalityInputError(
                f"dimension {dimension!r} is not in params/groups.yml; pass categories=[...] and ordered=..."
            )
        if categories is None:
            categories = list(known[dimension].categories)
        if ordered is None:
            ordered = known[dimension].ordered
    table = survey.estimate_by(frame, design, [indicator], [dimension], margins=False)
    table = table[table["cell"].astype(str).isin([str(c) for c in categories])].copy()
    rank = {str(c): i + 1 for i, c in enumerate(categories)}
    table["subgroup"] = table["cell"].astype(str)
    table["order"] = table["subgroup"].map(rank)
    present = sorted(table["order"])
    table["order"] = table["order"].map({o: i + 1 for i, o in enumerate(present)})
    table = table.rename(columns={"n_weighted": "population"})
    out = inequality_measures(
        table, ordered=ordered, direction=direction, scale=1.0 if scale is None else scale,
        indicator=indicator, breakdown=dimension, source=source, country=country, **options,
    )  # fmt: skip
    rank_rows = out["method"].isin(["SII", "RII"]) & (out["flag"] != "suppressed")
    if ordered and rank_rows.any():
        measures = _design_based_rank_measures(
            frame, design, indicator, dimension, table, options.get("rank_model", "logistic"),
            options.get("level", 0.95),
        )  # fmt: skip
        for i in np.flatnonzero(rank_rows.to_numpy()):
            m = measures[out.at[i, "method"]]
            for column in ("estimate", "se", "ci_low", "ci_high"):
                out.at[i, column] = getattr(m, column)
            out.at[i, "se_method"] = m.se_method
    return out


def _design_based_rank_measures(frame, design, indicator, dimension, table, model, level) -> dict:
    """SII and RII from respondent data: a survey GLM of the outcome on each respondent's ridit
    rank (as HEAT's R code does for survey data), so the SE is design-based.

    Each respondent gets the ridit rank of their subgroup (``X_j`` from the weighted subgroup
    shares of ``table``, 0 = most disadvantaged); ``model="logistic"`` fits a logistic survey GLM
    (outcome in [0, 1]), ``"linear"`` a linear one. SII = prediction at rank 1 minus at rank 0,
    RII their ratio (CI on the log scale); delta-method SEs from the design-based coefficient
    covariance (:func:`analysis.models.survey_glm`).
    """
    from analysis import models

    ordered_table = table.sort_values("order")
    population = pd.to_numeric(ordered_table["population"], errors="coerce").to_numpy(float)
    share = population / population.sum()
    ridit = dict(zip(ordered_table["subgroup"], np.cumsum(share) - 0.5 * share))
    work = pd.DataFrame({
        "_y": pd.to_numeric(frame[indicator], errors="coerce").to_numpy(float),
        "_rank": frame[dimension].astype("string").map(ridit).astype("Float64").to_numpy(float, na_value=np.nan),
    })  # fmt: skip
    family = "binomial" if model == "logistic" else "gaussian"
    fit = models.survey_glm("_y ~ _rank", work, design, family=family)
    beta, cov = fit.params.to_numpy(), fit.cov.to_numpy()
    z = _z(level)
    how = f"design-based: survey {model} regression of respondents on their ridit rank"
    sii, g_sii, rii, g_rii = _rank_contrasts(beta, family == "binomial")
    out = {"SII": _normal("SII", sii, float(np.sqrt(g_sii @ cov @ g_sii)), z, how)}
    if np.isfinite(rii):
        out["RII"] = _normal("RII", rii, float(np.sqrt(g_rii @ cov @ g_rii)), z, how + "; se of log RII",
                             log_scale=True)  # fmt: skip
    else:
        out["RII"] = Measure("RII", np.nan, note="predictions at rank 0 or 1 are not positive")
    return out


# ============================================================================================
# Intersectional measures
# ============================================================================================


def _cell_key(bits: tuple[int, ...]) -> str:
    return "mu" + "".join(str(b) for b in bits)


def intersectional_measures(
    cell_estimates,
    covariance: np.ndarray,
    *,
    level: float = 0.95,
    flags=None,
) -> list[Measure]:
    """Additive and multiplicative interaction measures of k binary dimensions from cell means.

    Parameters
    ----------
    cell_estimates
        The 2^k cell means, in binary order of the exposure pattern with the **first**
        dimension varying fastest: for two dimensions A, B ``[mu00, mu10, mu01, mu11]`` where
        ``mu10`` is A only and ``mu01`` B only (``mu_ab``, a = A, b = B).
    covariance
        Their 2^k x 2^k covariance matrix (design-based, e.g. from
        :func:`analysis.survey.cell_means_with_covariance`).
    flags
        Optional flags of the cells; when any is suppressed every measure is suppressed.

    Returns
    -------
    list of Measure
        ``mu..`` cells; ``joint_disparity`` mu11 - mu00; ``referent_disparity_<dim>`` for each
        single-exposure cell minus mu00; ``excess_intersectional_disparity`` (for two dimensions
        mu11 - mu10 - mu01 + mu00; for k dimensions the k-th order interaction contrast
        ``sum_s (-1)^(k-|s|) mu_s``); ``excess_share`` EID / joint disparity; and, for two
        dimensions, ``RERI`` = RR11 - RR10 - RR01 + 1, ``attributable_proportion`` AP = RERI /
        RR11 and ``synergy_index`` S = (RR11 - 1) / (RR10 - 1 + RR01 - 1) with RR_ab = mu_ab / mu00
        (Knol & VanderWeele 2012; Jackson, Williams & VanderWeele 2016).

    Notes
    -----
    Every SE is a delta-method SE ``sqrt(g' V g)`` with ``g`` the gradient of the measure in the
    cell means and ``V`` the full covariance, so cells that share strata or PSUs are handled. CIs
    are ``estimate ± z SE`` except the synergy index, whose CI is built for ``log S`` (Hosmer &
    Lemeshow 1992), its SE being that of ``log S``.
    """
    mu = np.asarray(cell_estimates, dtype=float)
    cov = np.asarray(covariance, dtype=float)
    k = round(np.log2(len(mu)))
    if 2**k != len(mu) or k < 2:
        raise InequalityInputError(
            f"expected 2^k cell estimates for k >= 2 binary dimensions; got {len(mu)}"
        )
    if cov.shape != (len(mu), len(mu)):
        raise InequalityInputError(f"covariance has shape {cov.shape}; expected {(len(mu), len(mu))}")
    z = _z(level)
    patterns = [tuple((i >> d) & 1 for d in range(k)) for i in range(len(mu))]
    flags = ["ok"] * len(mu) if flags is None else list(flags)
    # cells that cannot be used: suppressed or without an estimate
    withheld = {i for i in range(len(mu)) if str(flags[i]) == "suppressed" or not np.isfinite(mu[i])}
    complete = not withheld
    cov = np.where(np.isfinite(cov), cov, 0.0)
    mu = np.where(np.isfinite(mu), mu, 0.0)  # placeholders only: measures using them are blanked

    def uses(vector) -> list[int]:
        return [int(i) for i in np.flatnonzero(np.asarray(vector) != 0)]

    def blanked(name, cells, note="built on a suppressed or missing cell"):
        return Measure(name, np.nan, note=note, extra={"cells": cells})

    def linear(name, weights, note=""):
        w = np.asarray(weights, dtype=float)
        if set(uses(w)) & withheld:
            return blanked(name, uses(w))
        m = _normal(name, float(w @ mu), float(np.sqrt(w @ cov @ w)), z, "delta method, cell covariance", note)
        return Measure(**{**m.__dict__, "extra": {"cells": uses(w)}})

    def nonlinear(name, value, grad, log=False):
        cells = list(range(len(mu)))
        if not complete:
            return blanked(name, cells)
        se = float(np.sqrt(grad @ cov @ grad))
        how = "delta method on log scale, cell covariance" if log else "delta method, cell covariance"
        m = _normal(name, value, se, z, how, log_scale=log)
        return Measure(**{**m.__dict__, "extra": {"cells": cells}})

    out = [linear(_cell_key(b), np.eye(len(mu))[i]) for i, b in enumerate(patterns)]
    base, full = 0, len(mu) - 1
    joint = np.zeros(len(mu))
    joint[full], joint[base] = 1, -1
    out.append(linear("joint_disparity", joint))
    for d in range(k):
        w = np.zeros(len(mu))
        w[1 << d], w[base] = 1, -1
        out.append(linear(f"referent_disparity_{d + 1}", w, f"dimension {d + 1} only minus none"))
    excess = np.array([(-1) ** (k - sum(b)) for b in patterns], dtype=float)
    eid = linear("excess_intersectional_disparity", excess)
    out.append(eid)
    # share of the joint disparity that is excess: ratio of two linear forms
    jd, eid_value = joint @ mu, excess @ mu
    share = eid_value / jd if jd != 0 else np.nan
    grad = (excess * jd - joint * eid_value) / jd**2 if jd != 0 else np.full(len(mu), np.nan)
    out.append(nonlinear("excess_share", share, grad))
    if k == 2:
        m00, m10, m01, m11 = mu
        if not complete or m00 <= 0:
            note = "built on a suppressed or missing cell" if not complete else \
                "mu00 is not positive: risk ratios undefined"
            out += [blanked(n, list(range(4)), note)
                    for n in ("RERI", "attributable_proportion", "synergy_index")]  # fmt: skip
            return out
        rr10, rr01, rr11 = m10 / m00, m01 / m00, m11 / m00
        reri = rr11 - rr10 - rr01 + 1
        g_reri = np.array([-(m11 - m10 - m01) / m00**2, -1 / m00, -1 / m00, 1 / m00])
        out.append(nonlinear("RERI", reri, g_reri))
        ap = reri / rr11
        # AP = (m11 - m10 - m01 + m00) / m11
        g_ap = np.array([1 / m11, -1 / m11, -1 / m11, (m10 + m01 - m00) / m11**2])
        out.append(nonlinear("attributable_proportion", ap, g_ap))
        denom = rr10 + rr01 - 2
        if denom > 0 and rr11 > 1:
            syn = (rr11 - 1) / denom
            # log S = log(m11 - m00) - log(m10 + m01 - 2 m00)
            g_log = np.array([-1 / (m11 - m00) + 2 / (m10 + m01 - 2 * m00),
                              -1 / (m10 + m01 - 2 * m00), -1 / (m10 + m01 - 2 * m00),
                              1 / (m11 - m00)])  # fmt: skip
            out.append(nonlinear("synergy_index", syn, g_log, log=True))
        else:
            out.append(blanked("synergy_index", list(range(4)),
                               "undefined: needs RR11 > 1 and RR10 + RR01 > 2"))  # fmt: skip
    return out


def intersectional_table(
    cells: pd.DataFrame,
    covariance: np.ndarray,
    dimensions: list[str],
    exposed: list[str],
    unexposed: list[str],
    *,
    indicator: str | None = None,
    level: float = 0.95,
    source: str | None = None,
    country: str | None = None,
    group: str | None = None,
    disclosure: bool = True,
    thresholds=None,
) -> pd.DataFrame:
    """Intersectional measures from a table of cell means over crossed dimensions.

    Parameters
    ----------
    cells
        Result-schema table whose ``cell`` labels are the categories of ``dimensions`` joined
        with " × " (as :func:`analysis.survey.cell_means_with_covariance` returns), in the same
        order as ``covariance``'s rows/cols. Other cells (e.g. categories outside the two levels
        compared) are ignored.
    dimensions
        The crossed dimension names, e.g. ``["sex", "disability"]``.
    exposed, unexposed
        For each dimension, the category of the marginalised group and of its reference, e.g.
        ``["female", "yes"]`` and ``["male", "no"]``.
    disclosure
        Primary suppression of the cells first (when they carry ``n_unweighted``; on by
        default), so that a small cell and every measure built on it are suppressed.

    Returns
    -------
    pandas.DataFrame
        Result schema; ``breakdown`` the joined dimensions, ``cell`` the cell label for the cell
        means and the joined exposed categories for the derived measures, ``method`` the measure
        name (``cell_mean`` for cells). A derived measure built on a suppressed cell is
        suppressed; on a caution cell, caution. Extra columns ``se_method``, ``note``.
    """
    if not (len(dimensions) == len(exposed) == len(unexposed)) or len(dimensions) < 2:
        raise InequalityInputError(
            "dimensions, exposed and unexposed must have the same length (at least two dimensions)"
        )
    labels = cells["cell"].astype(str).to_list()
    positions, cell_labels = [], []
    k = len(dimensions)
    for i in range(2**k):
        bits = [(i >> d) & 1 for d in range(k)]
        label = join_cell([exposed[d] if bits[d] else unexposed[d] for d in range(k)])
        if label not in labels:
            raise InequalityInputError(
                f"cell {label!r} is not in the cell table; cells are {sorted(set(labels))}"
            )
        positions.append(labels.index(label))
        cell_labels.append(label)
    picked = protect_inputs(cells.iloc[positions].reset_index(drop=True), disclosure, thresholds)
    cov = np.asarray(covariance, dtype=float)[np.ix_(positions, positions)]
    flags = picked["flag"].tolist() if "flag" in picked.columns else ["ok"] * len(picked)
    measures = intersectional_measures(picked["estimate"].to_numpy(float), cov, level=level,
                                       flags=flags)  # fmt: skip
    breakdown = CELL_SEPARATOR.join(dimensions)
    def numbers(column):
        if column not in picked.columns:
            return np.full(len(picked), np.nan)
        return pd.to_numeric(picked[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)

    n_cells, w_cells = numbers("n_unweighted"), numbers("n_weighted")
    reasons = (picked["suppression_reason"].tolist() if "suppression_reason" in picked.columns
               else [pd.NA] * len(picked))  # fmt: skip
    rows = []
    for i, m in enumerate(measures):
        is_cell = i < len(cell_labels)
        derived = derived_flag([flags[c] for c in m.extra.get("cells", range(len(flags)))])
        rows.append({
            "source": source, "country": country, "group": group, "indicator": indicator,
            "breakdown": breakdown,
            "cell": cell_labels[i] if is_cell else join_cell(exposed),
            "estimate": m.estimate, "se": m.se, "ci_low": m.ci_low, "ci_high": m.ci_high,
            "n_unweighted": n_cells[i] if is_cell else np.sum(n_cells[m.extra.get("cells", [])]),
            "n_weighted": w_cells[i] if is_cell else np.nan,
            "flag": derived,
            "method": "cell_mean" if is_cell else m.name,
            "measure": m.name, "se_method": m.se_method, "note": m.note,
            "suppression_reason": (reasons[i] if is_cell else
                                   (m.note if derived == "suppressed" else pd.NA)),
        })  # fmt: skip
    out = _finish(rows, extras=["measure", "se_method", "note", "suppression_reason"])
    inputs = picked.assign(cell=cell_labels)
    used = [[cell_labels[c] for c in m.extra.get("cells", range(len(cell_labels)))] for m in measures]
    return _gate(out, inputs, used, thresholds) if disclosure else out


def intersectional_disparities(
    frame: pd.DataFrame,
    design,
    indicator: str,
    dimensions: list[str],
    exposed: list[str],
    unexposed: list[str],
    *,
    level: float = 0.95,
    source: str | None = None,
    country: str | None = None,
    group: str | None = None,
    disclosure: bool = True,
) -> pd.DataFrame:
    """Intersectional measures from respondent data with a survey design.

    Cell means of ``indicator`` over ``dimensions`` and their covariance come from
    :func:`analysis.survey.cell_means_with_covariance` (domain means that share the design's
    strata and PSUs are correlated); the measures from :func:`intersectional_table`.
    Example: women with disabilities ``exposed=["female", "yes"]`` against men without
    ``unexposed=["male", "no"]`` over ``["sex", "disability"]``.
    """
    from analysis import survey

    cells, covariance = survey.cell_means_with_covariance(frame, design, indicator, list(dimensions))
    return intersectional_table(cells, covariance, list(dimensions), list(exposed), list(unexposed),
                                indicator=indicator, level=level, source=source, country=country,
                                group=group, disclosure=disclosure)  # fmt: skip


__all__ = [
    "MEASURE_LABELS",
    "Gap",
    "InequalityInputError",
    "Measure",
    "Subgroups",
    "catalogue_gaps",
    "compute_measure",
    "derived_flag",
    "gap",
    "gap_wording",
    "gaps_from_estimates",
    "group_gaps",
    "inequality_measures",
    "inequality_measures_from_microdata",
    "intersectional_disparities",
    "intersectional_measures",
    "intersectional_table",
    "prepare_subgroups",
]  # fmt: skip

