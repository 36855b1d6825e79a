"""Design-based survey estimation: the design, and estimates for every cell of an intersection.

A :class:`SurveyDesign` holds what is needed to compute honest standard errors:

- **weights**: the sampling (or calibrated) weight of each respondent, read as the number of
  population members the respondent stands for (``1 / inclusion probability``);
- **strata** and **PSUs** (primary sampling units, i.e. clusters), optionally later stages
  (``clusters=[psu, ssu]``) with a finite-population correction for each stage;
- or **replicate weights** (JK1, JKn, BRR, Fay, bootstrap, successive-difference) with their
  scale factors, as R's ``svrepdesign``.

Taylor linearisation (as R's ``survey::svyrecvar``). Every estimator here is a smooth function
of estimated totals, so its variance is the variance of the estimated total of a per-row
*linearised score* (influence value). For totals of scores ``z`` the variance is the stratified,
with-replacement between-PSU formula

.. math::

    \\hat V = \\sum_h (1 - f_h) \\frac{n_h}{n_h - 1} \\sum_{i \\in h} (z_{hi} - \\bar z_h)^2

where ``z_hi`` is the total of the scores in PSU ``i`` of stratum ``h``, ``n_h`` the number of
PSUs sampled in the stratum and ``f_h = n_h / N_h`` the sampling fraction (0 without ``fpc``).
When a finite-population correction is given at every stage, later stages add their
within-cluster variance multiplied by the sampling fractions of the stages above (R's default
``survey.ultimate.cluster = FALSE``). Strata with a single PSU follow R's
``options(survey.lonely.psu = ...)``: ``fail`` (an error), ``adjust`` (centre the lonely
PSU at zero, the grand mean of the scores, rather than at its stratum mean), ``average`` (give
lonely strata the average variance of the others), ``certainty`` (the PSU was certain to be
selected: no variance).

Domains (cells of ``by``) are estimated on the full design: rows outside a domain keep their
place in the design with a score of zero. Nothing is subset before the variance is computed,
so a domain's standard error reflects the random size of the domain, as R's ``svyby`` does.

Calibrated designs (post-stratified or raked by :mod:`analysis.weighting`, which sets
``design.calibration``): the scores are replaced by their calibration residuals before the
variance, as R's ``svyrecvar`` does with ``postStrata``; replicate designs are calibrated
replicate by replicate and need nothing more.

Degrees of freedom: for a Taylor design, number of PSUs minus number of strata among the rows
that contribute to the estimate (R's ``degf`` of the subset design); for a replicate design,
the rank of the replicate weights minus one.

Every function returning estimates returns the one result schema of :mod:`analysis.tables`,
followed by the diagnostic columns ``deff``, ``cv``, ``n_missing`` and ``df``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse, special, stats

from analysis.tables import IDENTITY_COLUMNS, RESULT_COLUMNS, join_cell
from analysis.tables import label as label_identity

#: R's ``survey.lonely.psu`` options we offer ("remove" behaves as "certainty" in R).
SINGLE_PSU_OPTIONS: tuple[str, ...] = ("fail", "adjust", "average", "certainty", "remove")

#: Replicate-weight methods, as ``svrepdesign(type=...)``: jackknife delete-one (JK1),
#: stratified jackknife (JKn), balanced repeated replication (BRR), Fay's BRR, bootstrap,
#: successive-difference (as the US Census Bureau uses: scale 4/R), and "other" (scale given).
REPLICATE_METHODS: tuple[str, ...] = ("jk1", "jkn", "brr", "fay", "bootstrap", "sdr", "other")

#: Statistics :func:`estimate_by` computes.
STATISTICS: tuple[str, ...] = ("mean", "proportion", "total", "ratio")

#: Confidence-interval types: ``t`` (Wald with design df), ``normal`` (Wald with the normal
#: quantile, as R's ``confint`` on ``svymean``), ``logit`` (Wald on the logit scale with design
#: df, back-transformed, as ``svyciprop(method="logit")``), ``auto`` (``logit`` for proportions,
#: ``t`` otherwise).
CI_TYPES: tuple[str, ...] = ("auto", "t", "normal", "logit")

#: Diagnostic columns that follow the result schema in :func:`estimate_by`'s output.
DIAGNOSTIC_COLUMNS: list[str] = ["deff", "cv", "n_missing", "df"]

_REPLICATE_ALIASES = {
    "jk1": "jk1", "jkn": "jkn", "brr": "brr", "fay": "fay", "bootstrap": "bootstrap",
    "sdr": "sdr", "successive-difference": "sdr", "successive_difference": "sdr",
    "acs": "sdr", "other": "other",
}


class SurveyDesignError(ValueError):
    """A survey design or an estimation request is inconsistent (message says what to fix)."""


# --------------------------------------------------------------------------------------------
# The design
# --------------------------------------------------------------------------------------------


@dataclass
class _Stage:
    """One sampling stage in the order of the finest units (all arrays aligned to them).

    ``unit_starts``: start offsets, in the finest-unit order, of this stage's units;
    ``group_starts``: start offsets, in this stage's unit order, of its groups (strata at
    stage 1, the parent unit at later stages); ``coef``: per group, the multiplier of its
    centred sum of squares (scale × fraction of the stages above; 0 for certainty);
    ``centre``: per group, 1 to centre at the group mean, 0 to centre at zero (lonely adjust);
    ``n_units``: per group, the number of units sampled; ``lonely_average``: mask of groups whose
    variance is replaced by the average of the others.
    """

    unit_starts: np.ndarray
    group_starts: np.ndarray
    n_units: np.ndarray
    coef: np.ndarray
    centre: np.ndarray
    lonely_average: np.ndarray


@dataclass
class SurveyDesign:
    """A complex survey design: weights, strata, clusters, fpc, or replicate weights.

    Build it with :meth:`from_frame` (column names) or :func:`design_for` (the design that
    travels with a processed frame). Arrays are aligned with the rows of the frame they describe.

    Parameters
    ----------
    weights : array (n,)
        Sampling weights (``1 / inclusion probability``), finite and non-negative. ``None``
        with ``fpc`` given: weights are computed from the population sizes, as R does.
    strata : array (n,) or None
        Stratum of each row; ``None`` is one stratum.
    clusters : array (n,), list of arrays, or None
        PSU of each row, or one array per stage (PSU, SSU, ...). ``None``: each row is its own
        PSU (element sampling).
    fpc : array (n,), list of arrays, or None
        Finite-population correction per stage, either population sizes (all ≥ 1, number of
        PSUs in the stratum at stage 1) or sampling fractions (all ≤ 1), as R's ``svydesign``.
    nest : bool
        PSU labels are only unique within strata (R's ``nest=TRUE``); default True.
    single_psu : {"fail", "adjust", "average", "certainty", "remove"}
        What to do with a stratum that has a single PSU (R's ``survey.lonely.psu``).
    replicate_weights : array (n, R) or None
        Full replicate weights (not multipliers). When given, variances come from them.
    replicate_method, replicate_scale, replicate_rscales, fay_rho, mse
        As R's ``svrepdesign``: variance ``scale * sum_r rscales_r (theta_r - centre)^2`` with
        ``centre`` the full-sample estimate when ``mse`` is True, the mean of the replicate
        estimates otherwise (R's default ``survey.replicates.mse = FALSE``).
    sample_type : {"probability", "non_probability"}
        A non-probability sample is analysed with the weights given (normally 1) as if rows were
        independent; every result's ``method`` says so.
    names : dict
        Column names the arrays came from, for messages and ``method`` strings.
    """

    weights: np.ndarray | None
    strata: np.ndarray | None = None
    clusters: object = None
    fpc: object = None
    nest: bool = True
    single_psu: str = "fail"
    replicate_weights: np.ndarray | None = None
    replicate_method: str | None = None
    replicate_scale: float | None = None
    replicate_rscales: np.ndarray | None = None
    fay_rho: float | None = None
    mse: bool = False
    sample_type: str = "probability"
    names: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.single_psu not in SINGLE_PSU_OPTIONS:
            raise SurveyDesignError(
                f"single_psu={self.single_psu!r} is not an option; use one of {list(SINGLE_PSU_OPTIONS)}"
            )
        if self.sample_type not in ("probability", "non_probability"):
            raise SurveyDesignError(
                f"sample_type={self.sample_type!r}; use 'probability' or 'non_probability'"
            )
        clusters = self.clusters
        if clusters is not None and not isinstance(clusters, (list, tuple)):
            clusters = [clusters]
        fpcs = self.fpc
        if fpcs is not None and not isinstance(fpcs, (list, tuple)):
            fpcs = [fpcs]
        n = _first_length(self.weights, self.strata, clusters, fpcs, self.replicate_weights)
        self.n = n
        self._clusters = [np.asarray(c) for c in clusters] if clusters else []
        self._fpcs = [np.asarray(f, dtype=float) for f in fpcs] if fpcs else []
        if len(self._fpcs) > max(len(self._clusters), 1):
            raise SurveyDesignError(
                f"{len(self._fpcs)} fpc columns given for {len(self._clusters)} stages of clusters"
            )
        self._check_lengths()
        self._build_taylor_stages()
        if self.weights is None:
            self.weights = self._weights_from_fpc()
        self.weights = _checked_weights(self.weights, self.names.get("weight", "weight"))
        if self.replicate_weights is not None:
            self._build_replicates()

    # -- construction helpers ---------------------------------------------------------------

    def _check_lengths(self):
        arrays = {"strata": self.strata, "replicate_weights": self.replicate_weights}
        arrays.update({f"clusters[{i}]": c for i, c in enumerate(self._clusters)})
        arrays.update({f"fpc[{i}]": f for i, f in enumerate(self._fpcs)})
        if self.weights is not None:
            arrays["weights"] = self.weights
        for name, array in arrays.items():
            if array is not None and len(array) != self.n:
                raise SurveyDesignError(f"design {name} has {len(array)} rows; expected {self.n}")

    def _build_taylor_stages(self):
        n = self.n
        self.has_strata = self.strata is not None
        strata_codes = (
            _codes(self.strata, "strata", self.names.get("strata"))
            if self.has_strata else np.zeros(n, dtype=np.int64)
        )
        stage_ids = []
        if self._clusters:
            for s, c in enumerate(self._clusters):
                name = self.names.get("psu") if s == 0 else f"stage-{s + 1} cluster"
                stage_ids.append(_codes(c, f"clusters[{s}]", name))
        else:
            stage_ids.append(np.arange(n, dtype=np.int64))
        if not self.nest and self.has_strata and self._clusters:
            # R: "Clusters not nested in strata at top level; you may want nest=TRUE."
            pairs = pd.DataFrame({"s": strata_codes, "p": stage_ids[0]}).drop_duplicates()
            dup = pairs["p"].duplicated(keep=False)
            if dup.any():
                raise SurveyDesignError(
                    f"PSU {self.names.get('psu', 'psu')!r} value(s) appear in more than one stratum "
                    "(e.g. PSU code "
                    f"{pairs.loc[dup, 'p'].iloc[0]}); set nest=True if PSU labels restart in each stratum"
                )
        # Hierarchical keys: stage-1 unit = (stratum, psu); stage-s unit = (stage s-1 unit, id).
        key_columns = [strata_codes] + stage_ids
        finest = _hierarchical_codes(key_columns)
        # one representative row per finest unit, in finest order
        first_row = np.full(finest.max() + 1, -1, dtype=np.int64)
        first_row[finest[::-1]] = np.arange(n - 1, -1, -1)
        units = [column[first_row] for column in key_columns]
        self._row_unit = finest
        self._n_finest = len(first_row)

        # fpc: population size per row at each stage, or None
        popsizes = self._popsizes(strata_codes, stage_ids) if self._fpcs else []
        self._popsizes_per_stage = popsizes
        n_stages = len(stage_ids)
        # later stages count only when an fpc is given for every stage above them (R)
        n_used = 1 if len(popsizes) < 2 else min(len(popsizes), n_stages)
        self._stages = []
        # a design given by its replicate weights takes its variance from them: its Taylor stages
        # serve the degrees of freedom only, so a lonely unit is no error there (R's svrepdesign)
        lonely_rule = self.single_psu if self.replicate_weights is None else "certainty"
        parent_fraction = np.ones(self._n_finest)  # per finest unit: product of fractions above
        for s in range(n_used):
            unit_code = _hierarchical_codes(units[: s + 2])  # stratum + stage ids up to s
            unit_starts = np.flatnonzero(np.r_[True, np.diff(unit_code) != 0])
            # group: the stratum (stage 1) or the parent unit (later stages)
            group_of_unit = _hierarchical_codes([u[unit_starts] for u in units[: s + 1]])
            group_starts = np.flatnonzero(np.r_[True, np.diff(group_of_unit) != 0])
            n_units = np.diff(np.r_[group_starts, len(unit_starts)])
            # rows representing each group, for its population size
            first_finest_of_group = unit_starts[group_starts]
            rep_rows = first_row[first_finest_of_group]
            if s < len(popsizes):
                fraction = sampling_fractions(popsizes[s][rep_rows], n_units, s + 1,
                                              lambda bad, rep_rows=rep_rows: f" (row {rep_rows[bad]})")
            else:
                fraction = np.zeros(len(n_units))
            where = self.names.get("strata", "strata") if s == 0 else f"stage-{s} cluster"
            coef, centre, lonely_average = stage_variance_terms(
                lonely_rule, n_units, fraction, parent_fraction[first_finest_of_group],
                lambda lonely, s=s, where=where, rep_rows=rep_rows: (
                    f"{int(lonely.sum())} {where} group(s) have a single PSU at stage {s + 1} "
                    f"(e.g. {_group_label(self, rep_rows, lonely, s)})"))
            if s == 0:
                self._stage1_fractions = fraction
            self._stages.append(
                _Stage(unit_starts, group_starts, n_units, coef, centre, lonely_average)
            )
            # fraction of the groups above, per finest unit, for the next stage
            unit_of_finest = np.cumsum(np.r_[0, np.diff(unit_code) != 0])
            group_of_finest = group_of_unit[unit_of_finest]
            parent_fraction = parent_fraction * fraction[group_of_finest]
        first_stage = self._stages[0]
        self.n_psu = len(first_stage.unit_starts)
        self.n_strata = len(first_stage.group_starts)
        self.df = max(self.n_psu - self.n_strata, 0)
        # stage-1 unit (PSU) of every finest unit, for replicate conversion
        unit_of_finest = np.zeros(self._n_finest, dtype=np.int64)
        unit_of_finest[first_stage.unit_starts[1:]] = 1
        self._psu_of_finest = np.cumsum(unit_of_finest)

    def _popsizes(self, strata_codes, stage_ids):
        """Population size per row at each stage with an fpc (R's ``as.fpc``)."""
        values = np.column_stack(self._fpcs)
        if np.isnan(values).any():
            row = int(np.argwhere(np.isnan(values))[0, 0])
            raise SurveyDesignError(f"fpc is missing in row {row}; give a population size or fraction")
        is_popsize = bool(np.any(values > 1))
        if is_popsize and not np.all(values >= 1):
            raise SurveyDesignError("fpc mixes population sizes (>1) and fractions (<1); use one kind")
        out = []
        group = strata_codes
        for s, fpc in enumerate(self._fpcs):
            if s >= len(stage_ids):
                break
            if s > 0:
                group = _hierarchical_codes([group, stage_ids[s - 1]])
            sampled = _units_per_group(group, stage_ids[s])
            out.append(fpc if is_popsize else sampled / fpc)
        return out

    def _weights_from_fpc(self):
        if not self._fpcs:
            raise SurveyDesignError("no weights given and no fpc to compute them from; give weights")
        weights = np.ones(self.n)
        group = np.zeros(self.n, dtype=np.int64) if self.strata is None else _codes(self.strata, "strata")
        stage_ids = [_codes(c, "clusters") for c in self._clusters] or [np.arange(self.n)]
        for s, popsize in enumerate(self._popsizes_per_stage):
            if s > 0:
                group = _hierarchical_codes([group, stage_ids[s - 1]])
            sampled = _units_per_group(group, stage_ids[s])
            weights = weights * popsize / sampled
        return weights

    def _build_replicates(self):
        reps = np.asarray(self.replicate_weights, dtype=float)
        if reps.ndim != 2 or reps.shape[0] != self.n:
            raise SurveyDesignError(f"replicate_weights must be an n × R matrix with n={self.n}")
        if not np.isfinite(reps).all() or (reps < 0).any():
            row, col = np.argwhere(~np.isfinite(reps) | (reps < 0))[0]
            raise SurveyDesignError(
                f"replicate weight {col + 1} of row {row} is {reps[row, col]!r}; replicate weights "
                "must be finite and non-negative"
            )
        self.replicate_weights = reps
        n_rep = reps.shape[1]
        method = _REPLICATE_ALIASES.get(str(self.replicate_method).lower())
        if method is None:
            raise SurveyDesignError(
                f"replicate_method={self.replicate_method!r}; use one of {list(REPLICATE_METHODS)}"
            )
        self.replicate_method = method
        if method == "fay" and self.fay_rho is None:
            raise SurveyDesignError("replicate_method='fay' needs fay_rho (e.g. 0.3 or 0.5)")
        default_scale = {
            "jk1": (n_rep - 1) / n_rep,
            "jkn": 1.0,
            "brr": 1.0 / n_rep,
            "fay": 1.0 / (n_rep * (1 - (self.fay_rho or 0.0)) ** 2),
            "bootstrap": 1.0 / max(n_rep - 1, 1),
            "sdr": 4.0 / n_rep,
            "other": None,
        }[method]
        if self.replicate_scale is None:
            if default_scale is None:
                raise SurveyDesignError("replicate_method='other' needs replicate_scale")
            self.replicate_scale = default_scale
        if self.replicate_rscales is None:
            if method == "jkn":
                raise SurveyDesignError(
                    "replicate_method='jkn' needs replicate_rscales ((n_h - 1)/n_h per replicate)"
                )
            self.replicate_rscales = np.ones(n_rep)
        self.replicate_rscales = np.asarray(self.replicate_rscales, dtype=float)
        if self.replicate_rscales.shape != (n_rep,):
            raise SurveyDesignError(
                f"replicate_rscales has {self.replicate_rscales.size} values for {n_rep} replicates"
            )
        # R's degf for replicate designs: rank of the replicate weights minus one
        gram = reps.T @ reps
        self.df = max(int(np.linalg.matrix_rank(gram, tol=None)) - 1, 0)

    # -- constructors -----------------------------------------------------------------------

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        weight: str | None = None,
        strata: str | None = None,
        psu: str | list[str] | None = None,
        fpc: str | list[str] | None = None,
        *,
        nest: bool = True,
        single_psu: str = "fail",
        replicate_columns: list[str] | None = None,
        replicate_method: str | None = None,
        replicate_scale: float | None = None,
        replicate_rscales=None,
        fay_rho: float | None = None,
        mse: bool = False,
        sample_type: str = "probability",
    ) -> SurveyDesign:
        """Build a design from column names of ``frame`` (as R's ``svydesign``/``svrepdesign``).

        ``weight=None`` with ``fpc`` computes weights from the population sizes; with neither,
        every weight is 1. ``psu`` may list one column per stage.
        """
        def column(name, role):
            if name not in frame.columns:
                raise SurveyDesignError(
                    f"design {role} column {name!r} not found; columns are {list(frame.columns)[:30]}"
                )
            values = frame[name]
            if values.isna().any():
                row = frame.index[values.isna().to_numpy()][0]
                raise SurveyDesignError(
                    f"design {role} column {name!r} is missing in row {row}; every row needs a {role}"
                )
            return values.to_numpy()

        names = {"weight": weight, "strata": strata, "psu": psu, "fpc": fpc}
        weights = column(weight, "weight").astype(float) if weight else None
        if weights is None and not fpc:
            weights = np.ones(len(frame))
        psus = [psu] if isinstance(psu, str) else list(psu or [])
        fpcs = [fpc] if isinstance(fpc, str) else list(fpc or [])
        reps = None
        if replicate_columns:
            missing = [c for c in replicate_columns if c not in frame.columns]
            if missing:
                raise SurveyDesignError(f"replicate weight columns {missing[:5]} not found in the frame")
            reps = frame[list(replicate_columns)].to_numpy(dtype=float)
        return cls(
            weights=weights,
            strata=column(strata, "strata") if strata else None,
            clusters=[column(p, "psu") for p in psus] or None,
            fpc=[column(f, "fpc").astype(float) for f in fpcs] or None,
            nest=nest,
            single_psu=single_psu,
            replicate_weights=reps,
            replicate_method=replicate_method,
            replicate_scale=replicate_scale,
            replicate_rscales=replicate_rscales,
            fay_rho=fay_rho,
            mse=mse,
            sample_type=sample_type,
            names={k: v for k, v in names.items() if v},
        )

    # -- description ------------------------------------------------------------------------

    @property
    def is_replicate(self) -> bool:
        return self.replicate_weights is not None

    def describe_variance(self) -> str:
        """One phrase for a result's ``method``: variance method, lonely-PSU option, df rule."""
        if self.sample_type == "non_probability":
            unweighted = bool(np.allclose(self.weights, self.weights[0]))
            return (
                "non-probability sample: "
                + ("unweighted" if unweighted else "weights as given")
                + ", SE assumes simple random sampling (not design-based)"
            )
        if self.is_replicate:
            return (
                f"replicate weights {self.replicate_method.upper()} "
                f"(R={self.replicate_weights.shape[1]}, scale={self.replicate_scale:.6g}"
                + (f", rho={self.fay_rho:g}" if self.fay_rho is not None else "")
                + f", mse={'TRUE' if self.mse else 'FALSE'}); df={self.df} (rank of replicates - 1)"
            )
        parts = ["Taylor linearisation, with-replacement between-PSU variance"]
        parts.append("stratified" if self.has_strata else "unstratified")
        parts.append("clustered" if self._clusters else "element sampling")
        if self._fpcs:
            parts.append(f"fpc at {len(self._stages)} stage(s)")
        parts.append(f"lonely PSU: {self.single_psu}")
        parts.append("df = PSUs - strata in the domain")
        return ", ".join(parts)

    # -- variance primitives ----------------------------------------------------------------

    def _unit_totals(self, scores: np.ndarray) -> np.ndarray:
        """Totals of ``scores`` (n × k) over finest sampling units: k × U."""
        scores = np.asarray(scores, dtype=float)
        if scores.ndim == 1:
            scores = scores[:, None]
        out = np.empty((scores.shape[1], self._n_finest))
        for j in range(scores.shape[1]):
            out[j] = np.bincount(self._row_unit, weights=scores[:, j], minlength=self._n_finest)
        return out

    def _variance_of_unit_totals(self, totals: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """Variance of the estimated totals whose finest-unit totals are the rows of ``totals``.

        ``totals`` is k × U (U finest units of the design). Returns k variances. ``counts``
        (k × U rows contributing to each estimate) only matters for ``single_psu="average"``:
        as R on a subset, strata without contributing rows do not count in the average.
        """
        var = np.zeros(totals.shape[0])
        for stage in self._stages:
            unit_totals = self._to_stage_units(totals, stage)
            s1 = np.add.reduceat(unit_totals, stage.group_starts, axis=1)
            s2 = np.add.reduceat(unit_totals * unit_totals, stage.group_starts, axis=1)
            within = s2 - stage.centre * s1 * s1 / stage.n_units
            contribution = within @ stage.coef
            if stage.lonely_average.any():
                contribution = contribution * self._average_factor(stage, counts, totals.shape[0])
            var += contribution
        return np.maximum(var, 0.0)

    def _to_stage_units(self, totals, stage):
        if len(stage.unit_starts) == totals.shape[1]:
            return totals
        return np.add.reduceat(totals, stage.unit_starts, axis=1)

    def _average_factor(self, stage, counts, k):
        """Strata present / strata present with more than one PSU (R's nstrat / nokstrat)."""
        if counts is None:
            present = np.ones((k, len(stage.n_units)), dtype=bool)
        else:
            unit_counts = self._to_stage_units(counts, stage)
            present = np.add.reduceat(unit_counts, stage.group_starts, axis=1) > 0
        n_present = present.sum(axis=1)
        n_ok = (present & ~stage.lonely_average).sum(axis=1)
        return np.where(n_ok > 0, n_present / np.maximum(n_ok, 1), np.nan)

    def _covariance_of_unit_totals(self, totals: np.ndarray) -> np.ndarray:
        """Covariance (k × k) of the estimated totals whose finest-unit totals are ``totals``."""
        k = totals.shape[0]
        cov = np.zeros((k, k))
        for stage in self._stages:
            unit_totals = self._to_stage_units(totals, stage)
            s1 = np.add.reduceat(unit_totals, stage.group_starts, axis=1)
            coef_unit = np.repeat(stage.coef, stage.n_units)
            contribution = (unit_totals * coef_unit) @ unit_totals.T
            contribution -= (s1 * (stage.coef * stage.centre / stage.n_units)) @ s1.T
            if stage.lonely_average.any():
                contribution = contribution * self._average_factor(stage, None, 1)[0]
            cov += contribution
        return cov

    def _replicate_covariance(self, thetas: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """R's ``svrVar``: thetas is k × R replicate estimates, theta the k full-sample ones."""
        centre = theta if self.mse else _replicate_mean(thetas, self.replicate_rscales)
        dev = thetas - centre[:, None]
        return self.replicate_scale * (dev * self.replicate_rscales) @ dev.T

    def _replicate_variance(self, thetas: np.ndarray, theta: np.ndarray) -> np.ndarray:
        centre = theta if self.mse else _replicate_mean(thetas, self.replicate_rscales)
        dev = thetas - centre[:, None]
        return self.replicate_scale * (dev * dev) @ self.replicate_rscales

    def total_covariance(self, scores: np.ndarray) -> np.ndarray:
        """Design-based covariance of the estimated totals of per-row scores.

        Parameters
        ----------
        scores : array (n, k)
            Each row's contribution to the k estimated totals, **already multiplied by the
            weight** (``w_i * u_i``, R's ``x / prob`` passed to ``svyrecvar``). Rows outside a
            domain contribute 0; they stay in the design.

        Returns
        -------
        array (k, k)
            Taylor designs: the stratified multistage with-replacement formula of the module
            docstring. Replicate designs: the replicate totals ``sum_i (w_ri / w_i) s_i`` fed to
            the replicate variance formula.
        """
        scores = np.asarray(scores, dtype=float)
        if scores.ndim == 1:
            scores = scores[:, None]
        if scores.shape[0] != self.n:
            raise SurveyDesignError(f"scores have {scores.shape[0]} rows; the design has {self.n}")
        if self.is_replicate:
            ratio = np.divide(
                self.replicate_weights, self.weights[:, None],
                out=np.zeros_like(self.replicate_weights), where=self.weights[:, None] > 0,
            )
            thetas = scores.T @ ratio
            return self._replicate_covariance(thetas, scores.sum(axis=0))
        return self._covariance_of_unit_totals(self._unit_totals(scores))

    # -- conversion to replicate weights (R's as.svrepdesign) ------------------------------

    def _stage1_fraction(self) -> np.ndarray:
        """Sampling fraction n_h / N_h of PSUs per stratum (0 without fpc)."""
        return self._stage1_fractions

    def to_replicate(
        self, method: str = "jkn", mse: bool = False, replicates: int = 200, seed: int = 0
    ) -> SurveyDesign:
        """Replicate-weight version of this Taylor design (R's ``as.svrepdesign``).

        ``jk1`` (unstratified designs): replicate j drops PSU j and multiplies the other
        weights by ``n/(n-1)``; scale ``(n-1)/n``. ``jkn``: within its stratum h, replicate j
        drops PSU j and multiplies the stratum's other weights by ``n_h/(n_h-1)``; rscales
        ``(n_h-1)/n_h``, scale 1. With an fpc, R multiplies the scale (JK1) or each
        stratum's rscales (JKn) by ``1 - f``, the finite-population correction of the stratum.
        ``bootstrap``: Rao-Wu rescaling bootstrap with ``replicates`` replicates drawn with
        ``seed`` (ignores the fpc; R's ``bootweights`` draws differ, the variance target is
        the same with-replacement variance).
        """
        method = method.lower()
        if self.is_replicate:
            raise SurveyDesignError("design already has replicate weights")
        stage = self._stages[0]
        psu = self._psu_of_finest[self._row_unit]
        n_psu = self.n_psu
        group_of_psu = np.repeat(np.arange(len(stage.n_units)), stage.n_units)
        if method == "jk1":
            if self.has_strata and self.n_strata > 1:
                raise SurveyDesignError("JK1 is for unstratified designs; use method='jkn'")
            reps = np.repeat(self.weights[:, None], n_psu, axis=1) * n_psu / (n_psu - 1)
            reps[np.arange(self.n), psu] = 0.0
            finite = 1.0 - self._stage1_fraction()[0]
            return SurveyDesign(
                weights=self.weights, replicate_weights=reps, replicate_method="jk1", mse=mse,
                replicate_scale=finite * (n_psu - 1) / n_psu, names=dict(self.names),
            )
        if method == "jkn":
            n_h = stage.n_units[group_of_psu]  # per PSU: PSUs in its stratum
            if (n_h < 2).any():
                raise SurveyDesignError("JKn needs at least two PSUs in every stratum")
            row_group = group_of_psu[psu]
            reps = np.repeat(self.weights[:, None], n_psu, axis=1)
            same_stratum = row_group[:, None] == group_of_psu[None, :]
            reps = np.where(same_stratum, reps * (n_h / (n_h - 1))[None, :], reps)
            reps[np.arange(self.n), psu] = 0.0
            finite = 1.0 - self._stage1_fraction()[group_of_psu]
            return SurveyDesign(
                weights=self.weights, replicate_weights=reps, replicate_method="jkn",
                replicate_rscales=finite * (n_h - 1) / n_h, mse=mse, names=dict(self.names),
            )
        if method == "bootstrap":
            # Rao-Wu rescaling bootstrap: resample n_h - 1 of the n_h PSUs of each stratum with
            # replacement; weight multiplier n_h/(n_h - 1) × times drawn; scale 1/(R - 1).
            n_h = stage.n_units
            if (n_h < 2).any():
                raise SurveyDesignError("the bootstrap needs at least two PSUs in every stratum")
            rng = np.random.default_rng(seed)
            multipliers = np.zeros((n_psu, replicates))
            starts = np.r_[stage.group_starts, n_psu]
            for h in range(len(n_h)):
                lo, hi = starts[h], starts[h + 1]
                draws = rng.integers(lo, hi, size=(n_h[h] - 1, replicates))
                for r in range(replicates):
                    multipliers[:, r] += np.bincount(draws[:, r], minlength=n_psu)
                multipliers[lo:hi] *= n_h[h] / (n_h[h] - 1)
            reps = self.weights[:, None] * multipliers[psu]
            return SurveyDesign(
                weights=self.weights, replicate_weights=reps, replicate_method="bootstrap",
                mse=mse, names=dict(self.names),
            )
        raise SurveyDesignError(f"to_replicate supports 'jk1', 'jkn' and 'bootstrap', not {method!r}")


def _first_length(*arrays) -> int:
    for array in arrays:
        if array is None:
            continue
        if isinstance(array, list):
            if array:
                return len(array[0])
            continue
        return len(array)
    raise SurveyDesignError("a design needs at least weights (or fpc)")


def _hierarchical_codes(columns: list[np.ndarray]) -> np.ndarray:
    """Dense codes 0..K-1 of the rows' combinations of integer code columns, in lexicographic
    order of the columns (so that units of one group are contiguous)."""
    key = np.zeros(len(columns[0]), dtype=np.int64)
    capacity = 1
    for column in columns:
        base = int(column.max()) + 1 if len(column) else 1
        capacity *= base
        if capacity >= 2**62:  # fall back to a lexicographic sort of the columns
            stacked = np.column_stack(columns)
            _, codes = np.unique(stacked, axis=0, return_inverse=True)
            return codes.reshape(-1).astype(np.int64)
        key = key * base + column
    return _dense_codes(key, capacity)


def _dense_codes(key: np.ndarray, capacity: int) -> np.ndarray:
    """Rank of each non-negative integer key among the distinct keys (sorted order)."""
    if capacity <= max(4 * len(key), 1_000_000):  # O(n) without sorting
        seen = np.zeros(capacity, dtype=bool)
        seen[key] = True
        rank = np.cumsum(seen) - 1
        return rank[key]
    _, codes = np.unique(key, return_inverse=True)
    return codes.reshape(-1).astype(np.int64)


def _units_per_group(group: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """For each row, the number of distinct units in its group."""
    pairs = _hierarchical_codes([group, unit])
    _, first = np.unique(pairs, return_index=True)
    counts = np.bincount(group[first], minlength=int(group.max()) + 1)
    return counts[group].astype(float)


def _checked_weights(weights, name) -> np.ndarray:
    weights = np.asarray(weights, dtype=float)
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        first = weights[row]
        kind = "missing" if np.isnan(first) else "infinite" if np.isinf(first) else "negative"
        raise SurveyDesignError(  # the kind of the first bad value, never the value itself
            f"weight column {name!r} has {int(bad.sum())} missing, negative or infinite value(s) "
            f"(the first, in row {row}, is {kind}); weights must be finite and non-negative"
        )
    return weights


def _codes(values, role, name=None) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "iu" and len(values):
        low = int(values.min())
        return _dense_codes(values.astype(np.int64) - low, int(values.max()) - low + 1)
    codes, _ = pd.factorize(pd.Series(values), sort=True)
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0])
        raise SurveyDesignError(f"design {name or role} is missing in row {row}")
    return codes.astype(np.int64)


def _group_label(design, rep_rows, mask, stage) -> str:
    index = int(np.flatnonzero(mask)[0])
    if stage == 0 and design.strata is not None:
        return f"stratum {np.asarray(design.strata)[rep_rows[index]]!r}"
    return f"the group of row {rep_rows[index]}"


def _replicate_mean(thetas, rscales):
    use = rscales > 0
    return thetas[:, use].mean(axis=1)


def design_for(frame: pd.DataFrame, spec: dict | None = None) -> SurveyDesign:
    """Build the :class:`SurveyDesign` of a processed frame from its design specification.

    ``spec`` (default ``frame.attrs["design"]``, see :func:`analysis.sources.load_processed`):
    ``sample_type``, ``weight``, ``strata``, ``psu``, ``fpc`` (column names or None),
    ``replicate_columns``, ``replicate_method``, ``replicate_scale``, ``replicate_rscales``,
    ``fay_rho``, ``single_psu`` and optionally ``replicate_mse`` and ``nest``.
    A non-probability sample gets weight 1 per row (or its calibrated weight column) and no
    clustering: SEs then assume simple random sampling, and every result says so.
    """
    spec = spec if spec is not None else frame.attrs.get("design")
    if not spec:
        raise SurveyDesignError(
            "frame has no design in frame.attrs['design']; load it with "
            "analysis.sources.load_processed(source) or build SurveyDesign.from_frame(...)"
        )
    sample_type = spec.get("sample_type") or "probability"
    weight = spec.get("weight")
    if weight and weight not in frame.columns:
        raise SurveyDesignError(f"design weight column {weight!r} not in the frame")
    if sample_type == "non_probability":
        return SurveyDesign.from_frame(
            frame, weight=weight, sample_type="non_probability",
            single_psu=spec.get("single_psu") or "fail",
        )
    return SurveyDesign.from_frame(
        frame,
        weight=weight,
        strata=spec.get("strata"),
        psu=spec.get("psu"),
        fpc=spec.get("fpc"),
        nest=spec.get("nest", True),
        single_psu=spec.get("single_psu") or "fail",
        replicate_columns=spec.get("replicate_columns") or None,
        replicate_method=spec.get("replicate_method"),
        replicate_scale=spec.get("replicate_scale"),
        replicate_rscales=spec.get("replicate_rscales"),
        fay_rho=spec.get("fay_rho"),
        mse=bool(spec.get("replicate_mse", False)),
        sample_type=sample_type,
    )


@dataclass
class Survey:
    """One processed source as the chapters use it: respondents, design and metadata.

    Built once by :func:`analysis.sources.load_survey`; the :class:`SurveyDesign` is built on
    first use and kept (every estimate of a run shares it, instead of rebuilding it from
    ``frame.attrs`` each time). A partitioned (census-scale) source is never loaded: ``frame``
    is empty with the dataset's columns and ``partitioned`` says where its files are
    (:class:`analysis.sources.partitioned.PartitionedSource`).

    Attributes
    ----------
    frame : DataFrame
        One row per respondent (harmonised columns), for the run's country when it has one.
    design_spec : dict or None
        The design's columns and options (see :func:`design_for`); None for tables that are not
        respondent-level (aggregates, margins).
    metadata : dict
        The source card's metadata (``id``, ``title``, ``kind``, ``synthetic``, ``collection_period``, ...).
    partitioned : object or None
        The partitioned dataset, for sources estimated from partition sums.
    engine : dict
        ``{"engine": ..., "scheduler": ...}`` for partitioned sources.
    """

    frame: pd.DataFrame
    design_spec: dict | None
    metadata: dict = field(default_factory=dict)
    partitioned: object | None = None
    engine: dict = field(default_factory=dict)
    _design: SurveyDesign | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Survey:
        """A Survey from a frame carrying its design and metadata in ``attrs`` (the processed
        tables' on-disk form, :func:`analysis.sources.load_processed`)."""
        return cls(frame, frame.attrs.get("design"), dict(frame.attrs.get("source") or {}),
                   frame.attrs.get("partitioned"), dict(frame.attrs.get("engine") or {}))

    @property
    def id(self) -> str:
        return str(self.metadata.get("id") or "")

    @property
    def respondent_level(self) -> bool:
        """True for microdata (a design), False for aggregates and margins."""
        return self.design_spec is not None

    @property
    def design(self) -> SurveyDesign:
        """The survey design of :attr:`frame`, built once (:func:`design_for`)."""
        if self._design is None:
            if self.partitioned is not None:
                raise SurveyDesignError(f"source {self.id!r} is partitioned: estimate it from partition "
                                        "sums (analysis.survey_sums), not in memory")
            self._design = design_for(self.frame, self.design_spec)
        return self._design

    def with_frame(self, frame: pd.DataFrame, same_rows: bool = False) -> Survey:
        """The same source with another frame (a subset, or extra columns). ``same_rows``: the
        frame has exactly this survey's rows in the same order (columns added or recoded), so
        the design already built is kept; otherwise it is built anew for the new rows."""
        out = Survey(frame, self.design_spec, self.metadata, self.partitioned, self.engine,
                     self._design if same_rows else None)
        out.frame.attrs.update(self.frame.attrs)
        return out


# --------------------------------------------------------------------------------------------
# Cells of an intersection and its margins
# --------------------------------------------------------------------------------------------


@dataclass
class _Cells:
    """Coding of the crossing of ``by`` (fine cells, NA as an extra category) and its margins."""

    fine: np.ndarray  # (n,) fine cell of each row
    n_fine: int
    aggregate: sparse.csr_matrix  # (C_out × n_fine): output cell ← fine cells
    breakdown: list[str]
    cell: list[str]


def _dimension_codes(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, list[str]]:
    if column not in frame.columns:
        raise SurveyDesignError(
            f"breakdown column {column!r} not found; columns are {list(frame.columns)[:30]}"
        )
    values = frame[column]
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        labels = [str(c) for c in values.cat.categories]
    else:
        codes, uniques = pd.factorize(values, sort=True)
        labels = [str(u) for u in uniques]
    if (codes < 0).any():
        codes = codes.astype(np.int64)
        codes[codes < 0] = len(labels)  # NA → extra code, outside every cell of this dimension
    return codes, labels


def _build_cells(frame: pd.DataFrame, by: list[str], margins: bool) -> _Cells:
    codes, labels = [], []
    for column in by:
        c, lab = _dimension_codes(frame, column)
        codes.append(c)
        labels.append(lab)
    bases = [len(lab) + 1 for lab in labels]
    n_fine = int(np.prod(bases)) if bases else 1
    if n_fine > 5_000_000:
        raise SurveyDesignError(
            f"the crossing of {by} has {n_fine:,} cells; cross fewer or coarser dimensions"
        )
    fine = np.zeros(len(frame), dtype=np.int64)
    for c, base in zip(codes, bases):
        fine *= base
        fine += c
    # every fine cell's category code in each dimension
    fine_codes = np.array(list(itertools.product(*[range(b) for b in bases])), dtype=np.int64)
    fine_codes = fine_codes.reshape(n_fine, len(by))
    subsets = []
    if margins:
        for size in range(len(by) + 1):
            subsets.extend(itertools.combinations(range(len(by)), size))
    else:
        subsets.append(tuple(range(len(by))))
    rows, cols, breakdown, cell = [], [], [], []
    offset = 0
    for subset in subsets:
        sub_labels = [labels[d] for d in subset]
        sizes = [len(lab) for lab in sub_labels]
        n_out = int(np.prod(sizes)) if sizes else 1
        keep = np.ones(n_fine, dtype=bool)
        out_index = np.zeros(n_fine, dtype=np.int64)
        for d, size in zip(subset, sizes):
            keep &= fine_codes[:, d] < size
            out_index = out_index * size + np.minimum(fine_codes[:, d], size - 1)
        rows.append(offset + out_index[keep])
        cols.append(np.flatnonzero(keep))
        name = join_cell([by[d] for d in subset])
        for combo in itertools.product(*sub_labels):
            breakdown.append(name)
            cell.append(join_cell(combo))
        offset += n_out
    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    aggregate = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(offset, n_fine)
    )
    return _Cells(fine, n_fine, aggregate, breakdown, cell)


# --------------------------------------------------------------------------------------------
# Estimation
# --------------------------------------------------------------------------------------------


@dataclass
class _Estimates:
    estimate: np.ndarray
    variance: np.ndarray
    n_unweighted: np.ndarray
    n_weighted: np.ndarray
    n_missing: np.ndarray
    deff: np.ndarray
    df: np.ndarray
    scores: np.ndarray | None = None  # Taylor: C × U unit totals of linearised scores
    thetas: np.ndarray | None = None  # replicate: C × R replicate estimates


class _Engine:
    """Shared work of one estimation call: cell coding, keys and cached denominators."""

    def __init__(self, frame, design: SurveyDesign, by, margins, domain):
        if len(frame) != design.n:
            raise SurveyDesignError(
                f"frame has {len(frame)} rows but the design has {design.n}; build the design "
                "from this frame (domains are cells of `by`, never a subset of rows)"
            )
        self.design = design
        self.cells = _build_cells(frame, list(by), margins)
        self.weights = design.weights
        self.domain = _domain_mask(frame, domain)
        self.n_units = design._n_finest
        if not design.is_replicate:
            self.key = self.cells.fine * self.n_units
            self.key += design._row_unit
            self.key_size = self.cells.n_fine * self.n_units
            if self.key_size > 200_000_000:
                raise SurveyDesignError(
                    f"{self.cells.n_fine} cells × {self.n_units} sampling units is too large; "
                    "cross fewer dimensions"
                )
        self._cache = {}

    def _unit_table(self, weights) -> np.ndarray:
        """Fine cell × finest-unit sums of ``weights``, aggregated to output cells: C × U."""
        fine = np.bincount(self.key, weights=weights, minlength=self.key_size)
        return self.cells.aggregate @ fine.reshape(self.cells.n_fine, self.n_units)

    def _score_table(self, weights, raw_table) -> np.ndarray:
        """Cell × unit totals of the weighted scores ``weights`` as the variance needs them.

        For a calibrated design (post-stratified or raked by :mod:`analysis.weighting`, which
        sets ``design.calibration``) the scores are first replaced by their calibration
        residuals, as R's ``svyrecvar`` does; otherwise this is ``raw_table`` itself.
        """
        calibration = getattr(self.design, "calibration", None)
        if calibration is None or not getattr(calibration, "projections", ()):
            return raw_table
        fine = calibration.residual_unit_table(
            weights, self.cells.fine, self.cells.n_fine, self.design._row_unit, self.n_units
        )
        return self.cells.aggregate @ fine

    def _cell_sums(self, weights) -> np.ndarray:
        """Sums of per-row ``weights`` (None: row counts) in every output cell."""
        fine = np.bincount(self.cells.fine, weights=weights, minlength=self.cells.n_fine)
        return self.cells.aggregate @ fine

    def _rep_sums(self, values) -> np.ndarray:
        """Replicate totals of ``values`` (a per-row multiplier of the replicate weights)."""
        d = self.design
        indicator = sparse.csr_matrix(
            (values, (self.cells.fine, np.arange(d.n))), shape=(self.cells.n_fine, d.n)
        )
        return self.cells.aggregate @ (indicator @ d.replicate_weights)

    def _sums(self, weights):
        """Cell totals of per-row ``weights`` (None: count rows) and, for Taylor designs, the
        cell × finest-unit table they come from (its row sums are the cell totals)."""
        if self.design.is_replicate:
            return self._cell_sums(weights), None
        table = self._unit_table(weights)
        return table.sum(axis=1), table

    def run(self, y: np.ndarray, x: np.ndarray | None, statistic: str) -> _Estimates:
        """Estimate ``statistic`` of ``y`` (ratio: ``y / x``) in every output cell.

        One bincount pass per quantity over fine-cell × sampling-unit keys; margins come from
        summing fine cells. Rows with a missing ``y`` (or ``x``), or outside ``domain``, get
        weight zero but keep their place in the design.
        """
        d = self.design
        w = self.weights
        wy = None
        if x is None and self.domain is None and not d.is_replicate:
            # Fast path: one pass; a NaN in the cell × unit table reveals missing values.
            wy = w * y
            table = self._unit_table(wy)
            all_present = not np.isnan(table).any()
            if all_present:
                self._pending = (table.sum(axis=1), table)
        else:
            all_present = False
        if not all_present:
            present = ~np.isnan(y)
            if x is not None:
                present &= ~np.isnan(x)
            if self.domain is not None:
                present &= self.domain
            all_present = bool(present.all())
        if all_present:
            m = None  # every row counts: share row counts and weight sums across indicators
            wm, y0, x0 = w, y, x
        else:
            m = present.astype(float)
            wm = w * m
            y0 = np.where(present, y, 0.0)
            x0 = None if x is None else np.where(present, x, 0.0)

        in_domain = None if self.domain is None else self.domain.astype(float)
        n_in_cell, _ = self._cached("rows", True, lambda: self._sums(in_domain))
        n_unweighted, counts = (n_in_cell, _) if all_present else self._sums(m)
        if all_present:
            counts = self._cache["rows"][1]
        n_missing = n_in_cell - n_unweighted
        if (w <= 0).any():
            # n_unweighted counts respondents, not rows: a zero-weight row adds nothing to the
            # estimate, so it never makes a cell publishable (disclosure rule on n_unweighted).
            counted = (w > 0) if m is None else (w > 0) & present
            n_unweighted = self._sums(counted.astype(float))[0]
        n_weighted, unit_wm = self._cached("wsum", all_present, lambda: self._sums(wm))
        if getattr(self, "_pending", None) is not None:
            (total_y, unit_y), self._pending = self._pending, None
        else:
            wy = w * y0
            total_y, unit_y = self._sums(wy)
        if statistic in ("mean", "proportion"):
            total_x, unit_x = n_weighted, unit_wm
        elif statistic == "ratio":
            total_x, unit_x = self._sums(w * x0)
        else:
            total_x = unit_x = None

        with np.errstate(invalid="ignore", divide="ignore"):
            if total_x is None:
                estimate = total_y
            else:
                estimate = np.where(total_x != 0, total_y / total_x, np.nan)
            estimate = np.where(n_unweighted > 0, estimate, np.nan)

        scores = thetas = None
        if d.is_replicate:
            rep_y = self._rep_sums(y0)
            if statistic == "total":
                thetas = rep_y
            else:
                if statistic == "ratio":
                    rep_x = self._rep_sums(x0)
                else:
                    ones = np.ones(d.n) if m is None else m
                    rep_x = self._cached("rep_m", all_present, lambda: self._rep_sums(ones))
                with np.errstate(invalid="ignore", divide="ignore"):
                    thetas = rep_y / rep_x
            variance = d._replicate_variance(thetas, estimate)
            df = np.full(len(estimate), float(d.df))
        else:
            score_y = self._score_table(wy, unit_y)
            if statistic == "total":
                scores = score_y
            else:
                if statistic == "ratio":
                    score_x = self._score_table(w * x0, unit_x)
                else:
                    score_x = self._cached("score_wm", all_present,
                                           lambda: self._score_table(wm, unit_x))
                safe = np.where(np.isfinite(estimate), estimate, 0.0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    scores = (score_y - safe[:, None] * score_x) / np.where(
                        total_x != 0, total_x, 1.0)[:, None]
            variance = d._variance_of_unit_totals(scores, counts)
            df = self._cached("df", all_present, lambda: self._domain_df(counts))
        variance = np.where(np.isfinite(estimate), variance, np.nan)

        deff = self._deff(statistic, y0, wm, estimate, variance, n_unweighted, n_weighted, total_y)
        return _Estimates(estimate, variance, n_unweighted, n_weighted, n_missing, deff, df, scores, thetas)

    def _cached(self, name, shareable, compute):
        # Quantities that depend only on which rows are present are shared across indicators
        # without missing values.
        if not shareable:
            return compute()
        if name not in self._cache:
            self._cache[name] = compute()
        return self._cache[name]

    def _domain_df(self, counts: np.ndarray) -> np.ndarray:
        """PSUs minus strata among the rows present in each cell (R's degf of the subset)."""
        d = self.design
        stage = d._stages[0]
        psu_counts = counts if len(stage.unit_starts) == counts.shape[1] else np.add.reduceat(
            counts, stage.unit_starts, axis=1
        )
        has = psu_counts > 0
        n_psu = has.sum(axis=1)
        n_strata = (np.add.reduceat(has.astype(np.int64), stage.group_starts, axis=1) > 0).sum(axis=1)
        return (n_psu - n_strata).astype(float)

    def _deff(self, statistic, y0, w, estimate, variance, n, psum, total_y):
        """:func:`design_effect` of every cell, from the rows' values ``y0`` and weights ``w``."""
        if statistic == "ratio":
            return np.full(len(estimate), np.nan)
        if _is_binary(y0):
            # for a 0/1 indicator sum(w y^2) = sum(w y), and raw moments of 0/1 lose nothing
            return design_effect(statistic, estimate, variance, n, psum, total_y, total_y)
        # centred sums: raw moments cancel every digit when the mean is large against the spread
        centred = self._centred_square_sums(y0, w, psum, total_y)
        return design_effect(statistic, estimate, variance, n, psum, np.zeros(len(psum)), centred)

    def _centred_square_sums(self, y0, w, psum, total_y) -> np.ndarray:
        """``Σ w (y − ȳ_c)²`` of every output cell ``c`` (``w`` zero where ``y`` is missing).

        Computed without the cancellation of ``Σ w y² − N ȳ²``: within each fine cell around its
        own mean, plus each fine cell's weight times the squared distance of its mean from the
        output cell's mean (the parallel-axis decomposition; output cells are unions of fine
        cells, a margin of several)."""
        fine, n_fine = self.cells.fine, self.cells.n_fine
        fine_w = np.bincount(fine, weights=w, minlength=n_fine)
        fine_wy = np.bincount(fine, weights=w * y0, minlength=n_fine)
        with np.errstate(invalid="ignore", divide="ignore"):
            fine_mean = np.where(fine_w > 0, fine_wy / fine_w, 0.0)
            cell_mean = np.where(psum > 0, total_y / psum, 0.0)
        within = np.bincount(fine, weights=w * (y0 - fine_mean[fine]) ** 2, minlength=n_fine)
        parts = self.cells.aggregate.tocoo()
        between = np.bincount(parts.row, weights=parts.data * fine_w[parts.col]
                              * (fine_mean[parts.col] - cell_mean[parts.row]) ** 2,
                              minlength=parts.shape[0])
        return self.cells.aggregate @ within + between


def design_effect(statistic, estimate, variance, n, psum, total_y, sum_wy2) -> np.ndarray:
    """Design effect of each cell, as R's ``svymean(..., deff=TRUE)`` / ``svytotal``.

    Parameters
    ----------
    statistic
        ``mean``, ``total`` or ``ratio`` (a ratio has no design effect: NaN).
    estimate
        The cells' estimates (only their number is used).
    variance
        The cells' design-based variances of the estimate.
    n, psum
        The cells' unweighted counts ``n`` and weighted counts ``N`` (sums of the weights).
    total_y, sum_wy2
        The cells' weighted sums ``Σ w y`` and ``Σ w y²``; or, to avoid the cancellation of raw
        moments, 0 and the centred sums ``Σ w (y − ȳ)²``.

    Returns
    -------
    numpy.ndarray
        ``variance / V_srs`` per cell, NaN where it is not finite (a cell of one row, a cell
        with no variation).

    Notes
    -----
    ``V_srs`` is the variance of the same statistic under simple random sampling of ``n`` of
    the ``N`` units without replacement, ``s² (N - n) / (N n)`` for a mean (times ``N²`` for a
    total), with ``s²`` the weighted variance of ``y`` with divisor ``n - 1``; with replacement,
    ``s² / n``, when ``N <= n`` (as R's survey package does; Kish 1965, *Survey Sampling*).
    Used by the in-memory estimator and by :mod:`analysis.survey_sums`.
    """
    if statistic == "ratio":
        return np.full(len(estimate), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total_y / psum
        s2 = (sum_wy2 - psum * mean * mean) / psum * n / (n - 1)
        srs = np.where(psum > n, s2 * (psum - n) / (psum * n), s2 / n)
        if statistic == "total":
            srs = srs * psum * psum
        deff = variance / srs
    return np.where(np.isfinite(deff), deff, np.nan)


def _is_binary(values: np.ndarray) -> bool:
    """True if every value is 0 or 1 (two light passes; no BLAS, which is slow when threads
    compete for the cores)."""
    return np.count_nonzero(values == 0) + np.count_nonzero(values == 1) == values.size


def _domain_mask(frame, domain) -> np.ndarray | None:
    if domain is None:
        return None
    if isinstance(domain, str):
        if domain not in frame.columns:
            raise SurveyDesignError(f"domain column {domain!r} not found")
        domain = frame[domain]
    mask = pd.Series(domain, index=frame.index) if not isinstance(domain, pd.Series) else domain
    if len(mask) != len(frame):
        raise SurveyDesignError(f"domain mask has {len(mask)} values for {len(frame)} rows")
    return mask.fillna(False).to_numpy(dtype=bool)


def _indicator_columns(frame, indicators, statistic) -> list[tuple[str, np.ndarray]]:
    """(label, float values) per estimated quantity; categorical indicators expand per category."""
    out = []
    for name in indicators:
        if name not in frame.columns:
            raise SurveyDesignError(
                f"indicator column {name!r} not found; columns are {list(frame.columns)[:30]}"
            )
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            if column.dtype == np.float64:
                out.append((name, column.to_numpy()))  # no copy: rows are only read
            else:
                out.append((name, column.to_numpy(dtype=float, na_value=np.nan)))
            continue
        if statistic != "proportion":
            raise SurveyDesignError(
                f"indicator {name!r} is not numeric ({column.dtype}); use statistic='proportion' "
                "for the share in each of its categories, or recode it to numbers"
            )
        if isinstance(column.dtype, pd.CategoricalDtype):
            categories = list(column.cat.categories)
        else:
            categories = sorted(column.dropna().unique(), key=str)
        missing = column.isna().to_numpy()
        for category in categories:
            # fillna before to_numpy: Arrow-backed strings compare to a nullable boolean that
            # cannot take a float na_value
            values = (column == category).fillna(False).to_numpy(dtype=float)
            values[missing] = np.nan
            out.append((f"{name}={category}", values))
    return out


def _confidence_interval(estimate, se, df, ci, level):
    """Bounds for the CI type ``ci`` (see :data:`CI_TYPES`); df <= 0 gives no t interval."""
    alpha = 1 - level
    with np.errstate(invalid="ignore", divide="ignore"):
        if ci == "normal":
            q = stats.norm.ppf(1 - alpha / 2)
        else:
            q = np.where(df > 0, stats.t.ppf(1 - alpha / 2, np.maximum(df, 1e-9)), np.nan)
        if ci == "logit":
            inside = (estimate > 0) & (estimate < 1)
            p = np.where(inside, estimate, 0.5)
            centre = special.logit(p)
            half = q * se / (p * (1 - p))
            low = np.where(inside, special.expit(centre - half), np.nan)
            high = np.where(inside, special.expit(centre + half), np.nan)
            return low, high
        return estimate - q * se, estimate + q * se


def _ci_description(ci, level):
    pct = f"{level * 100:g}%"
    return {
        "t": f"{pct} CI: Wald, t with design df",
        "normal": f"{pct} CI: Wald, normal quantile",
        "logit": f"{pct} CI: logit-scale Wald, t with design df (svyciprop logit)",
    }[ci]


#: Estimators for data outside memory, by engine name (``chunks``, ``dask``, ``duckdb``), that
#: :func:`estimate_by` hands its arguments to. :mod:`analysis.survey_sums` registers them when
#: it is imported: it builds on this module, so this module never imports it (no import cycle).
PARTITION_ENGINES: dict = {}


def estimate_by(
    frame: pd.DataFrame,
    design: SurveyDesign,
    indicators,
    by=(),
    margins: bool = True,
    statistic: str = "mean",
    *,
    denominator: str | None = None,
    ci: str = "auto",
    level: float = 0.95,
    domain=None,
    source: str | None = None,
    country: str | None = None,
    group: str | None = None,
    engine: str = "pandas",
    **engine_options,
) -> pd.DataFrame:
    """Estimate every indicator in every cell of the crossing of ``by`` and of its margins.

    Parameters
    ----------
    frame : DataFrame
        One row per respondent, the rows the ``design`` was built from (never a subset).
    design : SurveyDesign
    indicators : str or list of str
        Indicator columns. Numeric: 0/1 for binary, NaN = missing (excluded per indicator and
        counted in ``n_missing``). With ``statistic="proportion"`` a non-numeric column gives
        the share of each of its categories (``indicator`` = ``"name=category"``).
    by : list of str
        Dimensions to cross (e.g. ``["sex", "disability", "age_group"]``). Categories come
        from a categorical dtype's order, else sorted values; rows with NA in a dimension are
        outside every cell of breakdowns using it but stay in the design.
    margins : bool
        Also estimate every margin: all sub-crossings of ``by`` down to the whole population
        (``breakdown == "all"``). Without margins only the full crossing is returned.
    statistic : {"mean", "proportion", "total", "ratio"}
        ``mean``: weighted mean ``sum(w y) / sum(w)`` in the cell (Hájek), linearised score
        ``w (y - mean) / sum(w)``. ``proportion``: the mean of a 0/1 indicator, with a logit
        CI by default. ``total``: ``sum(w y)`` over the cell. ``ratio``: ``sum(w y)/sum(w x)``
        with ``x`` the ``denominator`` column (rows missing either are excluded).
    ci : {"auto", "t", "normal", "logit"}
        Interval type (:data:`CI_TYPES`); ``auto`` is logit for proportions, t otherwise.
        R's ``confint(svymean(...))`` is ``normal``.
    level : float
        Confidence level.
    domain : bool Series, array or column name, optional
        Restrict estimation to a domain (R's ``subset(design, ...)``) keeping the full design.
    source, country, group : str, optional
        Values of the result schema's identity columns.
    engine : {"pandas", "chunks", "dask", "duckdb"}
        ``pandas`` (default): this in-memory estimator. The others compute the same numbers
        as one pass of partition sums (:mod:`analysis.survey_sums`), with ``frame`` a pandas
        or Dask frame or path(s) to (partitioned) Parquet, and ``design`` a ``SurveyDesign``
        (pandas frame), a :class:`analysis.survey_sums.DesignColumns` or a design spec dict.
        ``engine_options`` go to :func:`analysis.survey_sums.estimate_by_sums` (``scheduler``,
        ``categories``, ``chunk_rows``, ``memory_limit``, ``threads``).

    Returns
    -------
    DataFrame
        :data:`analysis.tables.RESULT_COLUMNS` then ``deff``, ``cv``, ``n_missing``, ``df``.
        ``n_unweighted`` and ``n_weighted`` are the rows (weights) with a non-missing value in
        the cell. ``flag`` is ``ok``: disclosure control is applied by
        :func:`analysis.disclosure.apply_suppression`. Empty cells have NaN estimates.
    """
    if engine != "pandas" or engine_options:
        # -- partition-sum engines (issue 17): data outside memory; same numbers, same schema
        if engine == "pandas":
            raise SurveyDesignError(
                f"options {sorted(engine_options)} are for engine='chunks', 'dask' or 'duckdb'"
            )
        if engine not in PARTITION_ENGINES:
            raise SurveyDesignError(
                f"engine={engine!r} is not available; use 'pandas'"
                + ("" if PARTITION_ENGINES else
                   ", or 'import analysis.survey_sums' for 'chunks', 'dask' and 'duckdb'")
                + "".join(f", '{e}'" for e in PARTITION_ENGINES)
            )
        return PARTITION_ENGINES[engine](
            frame, design, indicators, by, margins, statistic, engine=engine,
            denominator=denominator, ci=ci, level=level, domain=domain, source=source,
            country=country, group=group, **engine_options,
        )
    if statistic not in STATISTICS:
        raise SurveyDesignError(f"statistic={statistic!r}; use one of {list(STATISTICS)}")
    if ci not in CI_TYPES:
        raise SurveyDesignError(f"ci={ci!r}; use one of {list(CI_TYPES)}")
    if statistic == "ratio" and not denominator:
        raise SurveyDesignError("statistic='ratio' needs denominator='<column>'")
    if isinstance(indicators, str):
        indicators = [indicators]
    by = [by] if isinstance(by, str) else list(by)
    ci_type = ("logit" if statistic == "proportion" else "t") if ci == "auto" else ci
    engine = _Engine(frame, design, by, margins, domain)
    x = None
    if statistic == "ratio":
        if denominator not in frame.columns:
            raise SurveyDesignError(f"denominator column {denominator!r} not found")
        x = pd.to_numeric(frame[denominator], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    method = _method_string(design, statistic, ci_type, level, denominator)
    pieces = []
    for label, y in _indicator_columns(frame, indicators, statistic):
        if statistic == "proportion":
            values = y[~np.isnan(y)]
            if not np.all((values == 0) | (values == 1)):
                raise SurveyDesignError(
                    f"indicator {label!r} has values other than 0/1; statistic='proportion' needs "
                    "a binary indicator (or use statistic='mean')"
                )
        result = engine.run(y, x, statistic)
        pieces.append(_result_columns(engine.cells, label, result, ci_type, level))
    return _assemble(pieces, method, source, country, group)


def _method_string(design, statistic, ci_type, level, denominator=None):
    what = {"mean": "weighted mean", "proportion": "weighted proportion", "total": "weighted total",
            "ratio": f"ratio estimator (denominator {denominator})"}[statistic]
    return f"{what}; {design.describe_variance()}; {_ci_description(ci_type, level)}"


def _result_columns(cells, label, result, ci_type, level) -> dict:
    """Numeric columns of one indicator's rows (arrays, in the order of ``cells``)."""
    se = np.sqrt(result.variance)
    low, high = _confidence_interval(result.estimate, se, result.df, ci_type, level)
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = se / np.abs(result.estimate)
    return {
        "indicator": np.full(len(cells.cell), label, dtype=object),
        "breakdown": np.asarray(cells.breakdown, dtype=object),
        "cell": np.asarray(cells.cell, dtype=object),
        "estimate": result.estimate,
        "se": se,
        "ci_low": low,
        "ci_high": high,
        "n_unweighted": np.rint(result.n_unweighted).astype(np.int64),
        "n_weighted": result.n_weighted,
        "deff": result.deff,
        "cv": np.where(np.isfinite(cv), cv, np.nan),
        "n_missing": np.rint(result.n_missing).astype(np.int64),
        "df": result.df,
    }


def _assemble(parts: list[dict], method, source, country, group) -> pd.DataFrame:
    """One result table (schema + diagnostics) from the column arrays of each indicator."""
    columns = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    n = len(columns["estimate"])
    out = {}
    for name in RESULT_COLUMNS + DIAGNOSTIC_COLUMNS:
        if name in IDENTITY_COLUMNS:
            out[name] = pd.array([pd.NA] * n, dtype="string")  # stamped once, by tables.label
        elif name in ("flag", "method"):
            out[name] = pd.array([{"flag": "ok", "method": method}[name]] * n, dtype="string")
        elif name in ("indicator", "breakdown", "cell"):
            out[name] = pd.array(columns[name], dtype="string")
        elif name == "n_unweighted":
            out[name] = pd.array(columns[name], dtype="Int64")
        else:
            out[name] = columns[name]
    return label_identity(pd.DataFrame(out), source=source, country=country, group=group)


def _result_frame(cells, label, result, ci_type, level, method, source, country, group):
    return _assemble([_result_columns(cells, label, result, ci_type, level)],
                     method, source, country, group)


def cell_means_with_covariance(
    frame: pd.DataFrame,
    design: SurveyDesign,
    indicator: str,
    by,
    statistic: str = "mean",
    *,
    ci: str = "auto",
    level: float = 0.95,
    source: str | None = None,
    country: str | None = None,
    group: str | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Domain estimates of every cell of ``by`` (no margins) and their covariance matrix.

    As R's ``svyby(..., covmat=TRUE)``: the covariance of the domain estimates from the same
    design, the input of every contrast and delta-method measure (:func:`contrast`).

    Returns
    -------
    table : DataFrame
        Result schema + diagnostics, one row per cell, in the order of ``covariance``.
    covariance : ndarray (cells × cells)
        Taylor: covariance of the estimated totals of the cells' linearised scores;
        replicate designs: replicate covariance of the cell estimates. Empty cells have NaN
        rows/columns.
    """
    if statistic not in ("mean", "proportion", "total"):
        raise SurveyDesignError("cell_means_with_covariance supports mean, proportion and total")
    by = [by] if isinstance(by, str) else list(by)
    columns = _indicator_columns(frame, [indicator], statistic)
    if len(columns) != 1:
        raise SurveyDesignError(f"indicator {indicator!r} must be numeric for a covariance table")
    engine = _Engine(frame, design, by, margins=False, domain=None)
    result = engine.run(columns[0][1], None, statistic)
    if design.is_replicate:
        covariance = design._replicate_covariance(result.thetas, result.estimate)
    else:
        covariance = design._covariance_of_unit_totals(np.nan_to_num(result.scores))
    empty = ~np.isfinite(result.estimate)
    covariance[empty, :] = np.nan
    covariance[:, empty] = np.nan
    ci_type = ("logit" if statistic == "proportion" else "t") if ci == "auto" else ci
    method = _method_string(design, statistic, ci_type, level)
    table = _result_frame(engine.cells, indicator, result, ci_type, level, method,
                          source, country, group)
    return table, covariance


@dataclass(frozen=True)
class ContrastMoments:
    """Difference and ratio of two estimates with their delta-method standard errors."""

    difference: float
    difference_se: float
    ratio: float
    #: SE of the ratio on its own scale (``svycontrast``'s delta method).
    ratio_se: float
    #: SE of the log ratio (delta method); NaN unless both estimates are positive.
    log_ratio_se: float


def contrast_moments(first: float, second: float, var_first: float, var_second: float,
                     covariance: float = 0.0) -> ContrastMoments:
    """Difference ``a - b`` and ratio ``a / b`` of two estimates, with delta-method SEs.

    ``Var(a - b) = V11 + V22 - 2 V12``; ``Var(log a/b) = V11/a² + V22/b² - 2 V12/(a b)`` and
    ``SE(a/b) = (a/b) SE(log a/b)`` (first-order Taylor expansion, as R's ``svycontrast``;
    Lumley 2010, sec. 2.8). ``covariance`` is zero for independent samples and comes from the
    design (:func:`cell_means_with_covariance`) for two domains of one sample. A ratio is not
    defined (NaN) when ``b`` is zero; its log-scale SE only when both estimates are positive.
    Negative variances from rounding are truncated at zero.
    """
    a, b = float(first), float(second)
    v11, v22, v12 = float(var_first), float(var_second), float(covariance)
    difference = a - b
    d_var = v11 + v22 - 2 * v12
    d_se = math.sqrt(max(d_var, 0.0)) if np.isfinite(d_var) else np.nan
    ratio = a / b if b != 0 else np.nan
    rel_var = v11 / a**2 + v22 / b**2 - 2 * v12 / (a * b) if a != 0 and b != 0 else np.nan
    rel_se = math.sqrt(max(rel_var, 0.0)) if np.isfinite(rel_var) else np.nan
    ratio_se = abs(ratio) * rel_se if np.isfinite(rel_se) else np.nan
    log_se = rel_se if a > 0 and b > 0 else np.nan
    return ContrastMoments(difference, d_se, ratio, ratio_se, log_se)


def ratio_interval(moments: ContrastMoments, quantile: float) -> tuple[float, float]:
    """Interval of a ratio: ``exp(log r ± q SE(log r))`` when both estimates are positive — the
    log-scale (Katz) interval of a risk ratio (Katz et al. 1978, Biometrics 34:469; Rothman,
    Greenland & Lash, *Modern Epidemiology*, 3rd ed., ch. 14), asymmetric and never negative —
    else the Wald interval ``r ± q SE(r)`` on the ratio's own scale (means of either sign)."""
    r = moments.ratio
    if np.isfinite(moments.log_ratio_se) and r > 0:
        half = quantile * moments.log_ratio_se
        return float(np.exp(np.log(r) - half)), float(np.exp(np.log(r) + half))
    if np.isfinite(moments.ratio_se):
        return r - quantile * moments.ratio_se, r + quantile * moments.ratio_se
    return np.nan, np.nan


def _quantile(ci: str, df: float, level: float) -> float:
    """The two-sided quantile of a Wald interval: normal, or t with ``df`` (NaN when df <= 0)."""
    if ci == "normal":
        return float(stats.norm.ppf(1 - (1 - level) / 2))
    return float(stats.t.ppf(1 - (1 - level) / 2, df)) if np.isfinite(df) and df > 0 else np.nan


def _ratio_ci_description(ci, level):
    quantile = "normal quantile" if ci == "normal" else "t with design df"
    return f"{level * 100:g}% CI: log-scale Wald (Katz), {quantile}"


def contrast(
    table: pd.DataFrame,
    covariance: np.ndarray,
    first: str,
    second: str,
    kind: str = "difference",
    *,
    ci: str = "t",
    level: float = 0.95,
) -> pd.DataFrame:
    """Difference or ratio of two cells' estimates, with the covariance between them.

    As R's ``svycontrast``: ``difference`` is ``theta_1 - theta_2`` with variance
    ``V11 + V22 - 2 V12``; ``ratio`` is ``theta_1 / theta_2`` with the delta-method variance
    ``r² (V11/theta_1² + V22/theta_2² - 2 V12/(theta_1 theta_2))`` (:func:`contrast_moments`),
    df = the smaller of the two cells' df. The difference gets the Wald interval of ``ci``; the
    ratio the log-scale interval of :func:`ratio_interval` with the same quantile (t by
    default), so a ratio's interval is never negative. ``first``/``second`` are ``cell``
    labels of ``table`` (from :func:`cell_means_with_covariance`).

    Returns
    -------
    DataFrame
        One row in the result schema (cell ``"first − second"`` or ``"first ÷ second"``;
        ``n_unweighted`` the smaller of the two cells') plus diagnostics.
    """
    cells = list(table["cell"].astype(str))
    for label in (first, second):
        if label not in cells:
            raise SurveyDesignError(f"cell {label!r} not in the table; cells are {cells[:20]}")
    if kind not in ("difference", "ratio"):
        raise SurveyDesignError(f"kind={kind!r}; use 'difference' or 'ratio'")
    i, j = cells.index(first), cells.index(second)
    moments = contrast_moments(float(table["estimate"].iloc[i]), float(table["estimate"].iloc[j]),
                               covariance[i, i], covariance[j, j], covariance[i, j])
    df = float(np.nanmin(table["df"].iloc[[i, j]])) if "df" in table else np.nan
    if kind == "difference":
        estimate, se = moments.difference, moments.difference_se
        label = f"{first} − {second}"
        low, high = _confidence_interval(np.array([estimate]), np.array([se]), np.array([df]), ci, level)
    else:
        estimate, se = moments.ratio, moments.ratio_se
        label = f"{first} ÷ {second}"
        low, high = ratio_interval(moments, _quantile(ci, df, level))
        low, high = np.array([low]), np.array([high])
    row = table.iloc[[i]].copy()
    row["cell"] = label
    row["estimate"] = estimate
    row["se"] = se
    row["ci_low"] = low[0]
    row["ci_high"] = high[0]
    row["n_unweighted"] = int(np.nanmin(table["n_unweighted"].iloc[[i, j]].astype(float)))
    row["n_weighted"] = np.nan
    method = str(table["method"].iloc[i]).split("; ")
    interval = _ci_description(ci, level) if kind == "difference" else _ratio_ci_description(ci, level)
    row["method"] = f"{kind} of two domain estimates with their covariance (svycontrast); " + "; ".join(
        method[1:-1] + [interval]
    )
    if "deff" in row:
        row["deff"] = np.nan
        row["cv"] = se / abs(estimate) if estimate else np.nan
        row["n_missing"] = pd.NA
        row["df"] = df
    return row.reset_index(drop=True)


def sampling_fractions(popsize: np.ndarray, n_units: np.ndarray, stage: int, place) -> np.ndarray:
    """Sampling fraction ``n / N`` of each group of one stage from its population size (0 for an
    infinite population), refusing more than 100% sampling; ``place(i)`` says where group ``i``
    is (e.g. " (row 12)"). Shared by :class:`SurveyDesign` and the partition-sum estimator."""
    if np.any(popsize < n_units - 1e-9):
        bad = int(np.argmax(popsize < n_units - 1e-9))
        raise SurveyDesignError(
            f"fpc at stage {stage} implies more than 100% sampling: population "
            f"{popsize[bad]:g} < {int(n_units[bad])} sampled units{place(bad)}"
        )
    return np.where(np.isinf(popsize), 0.0, n_units / popsize)


def stage_variance_terms(single_psu: str, n_units: np.ndarray, fraction: np.ndarray,
                         multiplier, describe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients of one stage's between-unit variance (R's ``svyrecvar``/``onestage``):
    ``(1 − f) n / (n − 1)`` per group (``1 − f`` for a lonely unit), times ``multiplier`` (the
    sampling fractions of the stages above), none for self-representing groups (``f = 1``),
    then the lonely-unit rule (:func:`lonely_psu_rule`). Returns coefficients, centring and the
    groups whose variance is the average of the others. Shared by :class:`SurveyDesign` and the
    partition-sum estimator (:mod:`analysis.survey_sums`)."""
    f = 1.0 - fraction
    scale = np.where(n_units > 1, f * n_units / np.maximum(n_units - 1, 1), f)
    certain = f < 1e-7  # self-representing: no variance at this stage
    coef = np.where(certain, 0.0, scale * multiplier)
    return lonely_psu_rule(single_psu, n_units, certain, coef, describe)


def lonely_psu_rule(single_psu: str, n_units: np.ndarray, certain: np.ndarray, coef: np.ndarray,
                    describe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R's ``survey.lonely.psu`` options for strata (or clusters) with a single sampled unit.

    Returns the variance coefficients, the centring (0 where the unit's total is not centred on
    the stratum mean: "adjust", which centres on the grand mean) and the strata whose variance is
    replaced by the average of the others ("average"). "certainty" and "remove" give the lonely
    stratum no variance; "fail" raises, ``describe(lonely)`` saying which strata.
    """
    centre = np.ones(len(n_units))
    lonely = (n_units == 1) & ~certain
    lonely_average = np.zeros(len(n_units), dtype=bool)
    if lonely.any():
        if single_psu == "fail":
            raise SurveyDesignError(
                f"{describe(lonely)}; set single_psu to 'adjust', 'average' or 'certainty' "
                "(R's survey.lonely.psu) or merge strata"
            )
        if single_psu in ("certainty", "remove"):
            coef = np.where(lonely, 0.0, coef)
        elif single_psu == "adjust":
            centre = np.where(lonely, 0.0, centre)
        elif single_psu == "average":
            lonely_average = lonely
            coef = np.where(lonely, 0.0, coef)
    return coef, centre, lonely_average
