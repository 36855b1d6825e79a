"""Regression with interactions on survey data, predictive margins, and MAIHDA.

* :func:`survey_glm` fits a linear (gaussian, identity link) or logistic (quasibinomial, logit
  link) regression with design weights from a formula (interactions ``a * b`` welcome) and
  design-based standard errors as R's ``svyglm``: the sandwich ``B M B`` with bread ``B`` the
  inverse weighted information and meat ``M`` the design-based covariance of the estimated totals
  of the per-row score contributions
  (:meth:`analysis.survey.SurveyDesign.total_covariance`).
  :meth:`SurveyGLM.predictive_margins` and :meth:`SurveyGLM.average_marginal_effects` give
  predictive margins and average marginal effects by group, computed by prediction over the
  sample (so models with a main effect and its interactions are handled), with linearised
  design-based standard errors.
* :func:`maihda` fits the two random-intercept models of a MAIHDA (multilevel analysis of
  individual heterogeneity and discriminatory accuracy; Evans et al. 2018; Merlo 2018): a null
  model with random intercepts for intersectional strata and a main-effects model adding the
  dimensions as fixed effects; it reports the variance partition coefficient (VPC), the
  proportional change in variance (PCV) and shrunken stratum estimates with intervals. The
  variances maximise the REML likelihood profiled to one variance ratio, computed from
  per-stratum sums (:func:`_profiled_deviance`); statsmodels ``MixedLM`` is the fallback.

Every function that returns estimates returns the one result schema (:mod:`analysis.tables`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import patsy
from scipy import stats
from scipy.special import expit

from analysis.tables import CELL_SEPARATOR, conform, join_cell

FAMILIES = ("gaussian", "binomial")

#: Optimisers tried, in order, for each MAIHDA model (statsmodels ``MixedLM.fit`` methods).
OPTIMISERS = ("lbfgs", "bfgs", "powell", "nm")


class ModelError(ValueError):
    """A model cannot be fitted as asked; the message says what to fix."""


class MaihdaConvergenceWarning(UserWarning):
    """No optimiser reached a trustworthy optimum for a MAIHDA model."""


# ============================================================================================
# Survey-weighted GLM
# ============================================================================================


def _design_weights(design) -> np.ndarray:
    weights = getattr(design, "weights", None)
    if weights is None:
        raise ModelError("the design has no weights; build it with analysis.survey.design_for(frame)")
    return np.asarray(weights, dtype=float)


def _design_df(design) -> float:
    """Design degrees of freedom (PSUs minus strata, R's ``degf``) when the design offers them."""
    for name in ("degrees_of_freedom", "df", "degf"):
        value = getattr(design, name, None)
        if callable(value):
            value = value()
        if value is not None:
            try:
                return float(value)
            except (TypeError, ValueError):
                continue
    return np.inf


@dataclass
class SurveyGLM:
    """A fitted survey-weighted GLM (see :func:`survey_glm`).

    Attributes
    ----------
    params : pandas.Series
        Coefficients by term name (patsy names, e.g. ``A[T.1]:B[T.1]``).
    cov : pandas.DataFrame
        Design-based covariance of the coefficients.
    family : str
        ``gaussian`` (identity link) or ``binomial`` (logit link).
    n_used, n_excluded : int
        Rows used, and rows excluded for a missing value in a model variable (they stay in the
        design with zero scores, as R's ``svyglm`` keeps them in a subset design).
    """

    formula: str
    family: str
    params: pd.Series
    cov: pd.DataFrame
    design_info: object
    outcome: str
    frame: pd.DataFrame
    used: np.ndarray
    weights: np.ndarray
    bread: np.ndarray
    scores: np.ndarray
    design: object
    df_residual: float
    n_used: int
    n_excluded: int
    excluded_reasons: dict = field(default_factory=dict)

    @property
    def se(self) -> pd.Series:
        """Design-based standard errors."""
        return pd.Series(np.sqrt(np.diag(self.cov.to_numpy())), index=self.params.index)

    def _quantile(self, level: float) -> float:
        df = self.df_residual
        return float(stats.t.ppf(0.5 + level / 2, df)) if np.isfinite(df) and df > 0 else \
            float(stats.norm.ppf(0.5 + level / 2))

    def _method(self, what: str) -> str:
        link = "identity link" if self.family == "gaussian" else "logit link, quasibinomial"
        df = f"t with {self.df_residual:g} df" if np.isfinite(self.df_residual) else "normal"
        return f"{what}; svyglm {self.family} ({link}); design-based linearisation SE; CI {df}"

    def coefficients(self, level: float = 0.95, **labels) -> pd.DataFrame:
        """Coefficients in the result schema: ``cell`` the term, ``method`` says the model.

        ``labels`` fill ``source``, ``country``, ``group``. Extra columns ``t`` and ``p_value``.
        """
        q = self._quantile(level)
        est, se = self.params.to_numpy(), self.se.to_numpy()
        t = est / se
        dist = stats.t(self.df_residual) if np.isfinite(self.df_residual) else stats.norm()
        frame = pd.DataFrame({
            "indicator": self.outcome, "breakdown": "coefficient", "cell": self.params.index,
            "estimate": est, "se": se, "ci_low": est - q * se, "ci_high": est + q * se,
            "n_unweighted": self.n_used, "n_weighted": float(self.weights[self.used].sum()),
            "method": self._method(f"coefficient of {self.formula}"),
        })  # fmt: skip
        out = conform(frame, **labels)
        out["t"] = t
        out["p_value"] = 2 * dist.sf(np.abs(t))
        return out

    # -- predictions ----------------------------------------------------------------------

    def _model_matrix(self, data: pd.DataFrame) -> np.ndarray:
        (matrix,) = patsy.build_design_matrices([self.design_info], data, NA_action="raise")
        return np.asarray(matrix)

    def _inverse_link(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and its derivative d mu / d eta."""
        if self.family == "gaussian":
            return eta, np.ones_like(eta)
        mu = expit(eta)
        return mu, mu * (1 - mu)

    def _averaged(self, scenarios: dict[str, pd.DataFrame], subsets: dict[str, np.ndarray]):
        """Weighted averages of predictions under each scenario within each subset, with their
        linearised influence scores (n_design x m) for the design-based covariance.

        For an average ``m = sum_{i in g} w_i f_i(beta) / sum_{i in g} w_i``, the influence of
        row i is ``1[i in g] w_i (f_i - m) / W_g + G B u_i`` where ``G = dm/dbeta``, ``B`` the
        bread and ``u_i`` the row's weighted score: the first term is the sampling variability of
        the rows averaged over, the second that of the coefficients (as R's ``svypredmeans``).
        """
        beta = self.params.to_numpy()
        used_rows = np.flatnonzero(self.used)
        w_used = self.weights[used_rows]
        keys, values, influence = [], [], []
        for scenario, data in scenarios.items():
            X = self._model_matrix(data)
            fitted, slope = self._inverse_link(X @ beta)
            for subset, mask in subsets.items():
                in_g = mask[used_rows]
                total = w_used[in_g].sum()
                if total <= 0:
                    keys.append((scenario, subset))
                    values.append(np.nan)
                    influence.append(np.zeros(len(self.weights)))
                    continue
                share = w_used * in_g / total
                m = float(share @ fitted)
                gradient = (share * slope) @ X
                z = np.zeros(len(self.weights))
                z[used_rows] = share * (fitted - m)
                z += self.scores @ (self.bread @ gradient)
                keys.append((scenario, subset))
                values.append(m)
                influence.append(z)
        return keys, np.array(values), np.column_stack(influence)

    def _scenario_frame(self) -> pd.DataFrame:
        return self.frame.loc[self.used].reset_index(drop=True)

    def _subsets(self, by: str | list[str] | None) -> dict[str, np.ndarray]:
        if by is None:
            return {"all": np.ones(len(self.frame), dtype=bool)}
        by = [by] if isinstance(by, str) else list(by)
        absent = [b for b in by if b not in self.frame.columns]
        if absent:
            raise ModelError(f"by={absent} not among the data's columns")
        keys = self.frame[by].astype("string")
        out = {}
        used = pd.Series(self.used, index=self.frame.index)
        grouper = by[0] if len(by) == 1 else by
        for values, index in keys[used.to_numpy()].groupby(grouper, sort=True).groups.items():
            values = values if isinstance(values, tuple) else (values,)
            mask = self.frame.index.isin(index)
            out[join_cell(values)] = mask
        return out

    def predictive_margins(
        self, variable: str, levels=None, by=None, level: float = 0.95, disclosure: bool = True,
        thresholds=None, **labels,
    ) -> pd.DataFrame:
        """Predictive margins: the weighted average prediction with ``variable`` set to each level.

        Every row of the estimation sample (or of each ``by`` subgroup) is given the level, the
        model predicts (on the response scale), and the predictions are averaged with the design
        weights: a counterfactual population mean, valid with interactions of ``variable``.

        Returns
        -------
        pandas.DataFrame
            Result schema: ``breakdown`` ``variable`` (``variable × by`` with ``by``), ``cell`` the
            level (joined with the ``by`` cell); ``n_unweighted`` the respondents observed at
            that level in that subgroup (the data the margin rests on: in a saturated model the
            margin *is* their mean), ``n_weighted`` the weight of the rows averaged over. With
            ``disclosure`` (default) margins resting on few respondents are suppressed
            (:func:`analysis.disclosure.primary_suppression`). The covariance of all the margins
            is in ``.attrs["covariance"]``.
        """
        keys, values, cov = self._margins(variable, levels, by)
        observed = [[k[0]] for k in keys]
        table = self._margin_table(keys, values, cov, variable, by, "predictive margin", level, labels,
                                   observed)  # fmt: skip
        return _protect(table, disclosure, thresholds)

    def _levels(self, variable: str, levels):
        if variable not in self.frame.columns:
            raise ModelError(f"variable {variable!r} is not a column of the model data")
        if levels is None:
            values = self.frame.loc[self.used, variable]
            if pd.api.types.is_numeric_dtype(values) and values.nunique() > 2:
                raise ModelError(
                    f"variable {variable!r} is numeric with {values.nunique()} values: give levels=[...]"
                )
            levels = sorted(values.dropna().unique().tolist())
        return list(levels)

    def _margins(self, variable, levels, by):
        levels = self._levels(variable, levels)
        base = self._scenario_frame()
        scenarios = {}
        for value in levels:
            data = base.copy()
            data[variable] = pd.Series([value] * len(data), index=data.index, dtype=base[variable].dtype) \
                if not isinstance(base[variable].dtype, pd.CategoricalDtype) else \
                pd.Categorical([value] * len(data), categories=base[variable].cat.categories)
            scenarios[str(value)] = data
        keys, values, influence = self._averaged(scenarios, self._subsets(by))
        cov = self.design.total_covariance(influence)
        return keys, values, cov

    def _margin_table(self, keys, values, cov, variable, by, what, level, labels, observed=None):
        """Result-schema rows for margins/effects; ``observed[i]`` lists the levels of
        ``variable`` whose observed respondents in the subgroup the row rests on (its
        ``n_unweighted`` is the smallest of their counts)."""
        by_list = [] if by is None else ([by] if isinstance(by, str) else list(by))
        subsets = self._subsets(by)
        q = self._quantile(level)
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
        as_text = self.frame[variable].astype("string")
        rows = []
        for i, (scenario, subset) in enumerate(keys):
            mask = subsets[subset] & self.used
            n_rest = int(mask.sum())
            if observed is not None:
                n_rest = min(int((mask & (as_text == str(v)).fillna(False).to_numpy()).sum())
                             for v in observed[i])  # fmt: skip
            rows.append({
                "indicator": self.outcome,
                "breakdown": CELL_SEPARATOR.join([variable] + by_list),
                "cell": scenario if subset == "all" else join_cell([scenario, subset]),
                "estimate": values[i], "se": se[i],
                "ci_low": values[i] - q * se[i], "ci_high": values[i] + q * se[i],
                "n_unweighted": n_rest, "n_weighted": float(self.weights[mask].sum()),
                "method": self._method(what),
            })  # fmt: skip
        out = conform(pd.DataFrame(rows), **labels)
        out.attrs["covariance"] = cov
        return out

    def average_marginal_effects(
        self, variable: str, levels=None, reference=None, by=None, level: float = 0.95,
        step: float = 1e-4, disclosure: bool = True, thresholds=None, **labels,
    ) -> pd.DataFrame:
        """Average marginal effects of ``variable``, overall or within ``by`` subgroups.

        Categorical (or binary) ``variable``: the difference between the predictive margin at
        each level and at ``reference`` (default the first level), i.e. the average change in
        the predicted outcome if everyone moved from the reference level to that level.
        Numeric ``variable`` with ``levels=None`` and more than two values: the average
        derivative of the prediction (a forward difference with ``step`` in the variable's
        units), ``cell`` ``"dy/dx"``.

        Standard errors are linearised with the design (see :meth:`_averaged`). A difference
        rests on the respondents observed at both levels in the subgroup (``n_unweighted`` the
        smaller count) and is suppressed when that is too small (``disclosure``, default on).
        """
        values = self.frame.loc[self.used, variable] if variable in self.frame.columns else None
        if values is None:
            raise ModelError(f"variable {variable!r} is not a column of the model data")
        numeric = pd.api.types.is_numeric_dtype(values) and values.nunique() > 2 and levels is None
        if numeric:
            base = self._scenario_frame()
            shifted = base.copy()
            shifted[variable] = shifted[variable] + step
            keys, margins, influence = self._averaged({"0": base, "1": shifted}, self._subsets(by))
            subsets = list(dict.fromkeys(k[1] for k in keys))
            n_sub = len(subsets)
            contrast = np.zeros((len(keys), n_sub))
            for j in range(n_sub):
                contrast[j, j] = -1 / step
                contrast[n_sub + j, j] = 1 / step
            effect = margins @ contrast
            cov = self.design.total_covariance(influence @ contrast)
            new_keys = [("dy/dx", s) for s in subsets]
            table = self._margin_table(new_keys, effect, cov, variable, by,
                                       "average marginal effect (derivative)", level, labels)
            return _protect(table, disclosure, thresholds)
        levels = self._levels(variable, levels)
        reference = levels[0] if reference is None else reference
        if reference not in levels:
            levels = [reference] + levels
        keys, margins, influence_cov = self._margins(variable, levels, by)
        subsets = list(dict.fromkeys(k[1] for k in keys))
        index = {k: i for i, k in enumerate(keys)}
        columns, new_keys, observed = [], [], []
        for value in levels:
            if value == reference:
                continue
            for s in subsets:
                c = np.zeros(len(keys))
                c[index[(str(value), s)]] = 1
                c[index[(str(reference), s)]] = -1
                columns.append(c)
                new_keys.append((f"{value} − {reference}", s))
                observed.append([value, reference])
        contrast = np.column_stack(columns)
        effect = margins @ contrast
        cov = contrast.T @ influence_cov @ contrast
        table = self._margin_table(new_keys, effect, cov, variable, by,
                                   "average marginal effect (difference of predictive margins)",
                                   level, labels, observed)  # fmt: skip
        return _protect(table, disclosure, thresholds)

    def reri_odds_ratio(self, term_a: str, term_b: str, term_ab: str, level: float = 0.95) -> dict:
        """RERI on the odds-ratio scale from a logistic model with ``A * B``:
        ``RERI = OR11 - OR10 - OR01 + 1`` with ``OR10 = exp(b_A)``, ``OR01 = exp(b_B)``,
        ``OR11 = exp(b_A + b_B + b_AB)``; delta-method SE from the design-based coefficient
        covariance (Hosmer & Lemeshow 1992). Approximates the risk-scale RERI when the outcome
        is rare."""
        if self.family != "binomial":
            raise ModelError("RERI on the odds-ratio scale needs a logistic model (family='binomial')")
        names = list(self.params.index)
        for term in (term_a, term_b, term_ab):
            if term not in names:
                raise ModelError(f"term {term!r} is not in the model; terms are {names}")
        ia, ib, iab = names.index(term_a), names.index(term_b), names.index(term_ab)
        b = self.params.to_numpy()
        or10, or01, or11 = np.exp(b[ia]), np.exp(b[ib]), np.exp(b[ia] + b[ib] + b[iab])
        value = or11 - or10 - or01 + 1
        grad = np.zeros(len(b))
        grad[ia] = or11 - or10
        grad[ib] = or11 - or01
        grad[iab] = or11
        se = float(np.sqrt(grad @ self.cov.to_numpy() @ grad))
        z = float(stats.norm.ppf(0.5 + level / 2))
        return {"estimate": float(value), "se": se, "ci_low": value - z * se, "ci_high": value + z * se}


def _protect(table: pd.DataFrame, disclosure: bool, thresholds=None) -> pd.DataFrame:
    """Primary suppression of margins that rest on few respondents (on by default)."""
    if not disclosure:
        return table
    from analysis import disclosure as disclosure_control

    covariance = table.attrs.get("covariance")
    out = disclosure_control.primary_suppression(table, thresholds)
    out.attrs["covariance"] = covariance
    return out


def _patsy_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Pandas nullable columns as patsy understands them: strings with None, numbers with NaN.

    patsy cannot sort categories that contain ``pd.NA`` and does not see it as missing; a row
    with a missing model variable must be dropped (and counted), not crash the fit.
    """
    out = frame.copy()
    for column in out.columns:
        dtype = out[column].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            continue
        if pd.api.types.is_string_dtype(dtype) or dtype == object:
            values = out[column].astype(object)
            out[column] = values.where(values.notna(), None)
        elif pd.api.types.is_extension_array_dtype(dtype) and (
            pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
        ):
            out[column] = out[column].astype("float64")
    return out


def survey_glm(
    formula: str,
    frame: pd.DataFrame,
    design,
    family: str = "gaussian",
    *,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> SurveyGLM:
    """Fit a survey-weighted GLM with design-based standard errors (R's ``svyglm``).

    Parameters
    ----------
    formula
        A patsy formula, e.g. ``"y ~ C(sex) * C(disability) + age"``. String columns are
        treated as categorical with the first level (sorted) as reference.
    frame
        The data; rows aligned with ``design``.
    design
        :class:`analysis.survey.SurveyDesign` for ``frame``. ``weights`` are sampling weights
        (inverse inclusion probabilities); only their relative size matters for the estimates.
    family
        ``"gaussian"`` (linear regression, identity link) or ``"binomial"`` (logistic
        regression, logit link; R's ``quasibinomial``: the outcome may be any value in [0, 1]).

    Notes
    -----
    Estimates solve the weighted score equations ``sum_i w_i x_i (y_i - mu_i) = 0`` by iteratively
    reweighted least squares. Covariance: ``B M B`` with ``B = (sum_i w_i v_i x_i x_i')^-1``
    (``v_i = 1`` gaussian, ``mu_i (1 - mu_i)`` logistic) and ``M`` the design covariance of the
    totals of ``w_i x_i (y_i - mu_i)`` (Binder 1983), exactly R's ``svyglm`` (which also rescales
    weights; that cancels). CIs use a t distribution with the design's degrees of freedom minus
    the number of coefficients plus one (R's ``df.residual`` for ``svyglm``) when the design
    offers them. Rows with a missing model variable are excluded (counted in ``n_excluded``)
    but stay in the design with zero scores, so the variance treats the analysed rows as a domain.
    For replicate-weight designs the meat is the replicate covariance of the score totals (a
    linearised replicate variance); R's ``svyglm`` on a ``svrepdesign`` refits the model for each
    replicate instead. The two agree to first order; only the Taylor designs are checked against R.
    """
    if family not in FAMILIES:
        raise ModelError(f"family={family!r}: use one of {list(FAMILIES)}")
    weights = _design_weights(design)
    if len(weights) != len(frame):
        raise ModelError(f"the design has {len(weights)} rows, the data {len(frame)}; they must align")
    data = _patsy_ready(frame.reset_index(drop=True))
    try:
        y_frame, x_frame = patsy.dmatrices(formula, data, return_type="dataframe", NA_action="drop")
    except patsy.PatsyError as exc:
        raise ModelError(f"formula {formula!r}: {str(exc).splitlines()[0]}") from None
    used = np.zeros(len(data), dtype=bool)
    used[x_frame.index.to_numpy()] = True
    n_excluded = int((~used).sum())
    if y_frame.shape[1] != 1:
        raise ModelError(f"formula {formula!r}: the outcome must be one numeric column")
    outcome = y_frame.columns[0]
    y = y_frame.iloc[:, 0].to_numpy(float)
    X = x_frame.to_numpy(float)
    w = weights[used]
    if family == "binomial" and (np.any(y < 0) or np.any(y > 1)):
        raise ModelError(f"outcome {outcome!r}: logistic regression needs values in [0, 1]")
    if np.linalg.matrix_rank(X * np.sqrt(w)[:, None]) < X.shape[1]:
        raise ModelError(
            f"formula {formula!r}: the model matrix is rank deficient (an empty cell of an "
            "interaction, or a constant column); drop the term or merge categories"
        )
    beta = np.linalg.lstsq(X * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
    if family == "binomial":
        beta = np.zeros(X.shape[1])
        for _ in range(max_iter):
            mu = expit(X @ beta)
            info = X.T @ ((w * mu * (1 - mu))[:, None] * X)
            step = np.linalg.solve(info, X.T @ (w * (y - mu)))
            beta = beta + step
            if np.max(np.abs(step)) < tol:
                break
        else:
            raise ModelError(f"formula {formula!r}: logistic regression did not converge in {max_iter} "
                             "iterations (separation? check empty or all-0/all-1 cells)")
        mu = expit(X @ beta)
        info = X.T @ ((w * mu * (1 - mu))[:, None] * X)
    else:
        mu = X @ beta
        info = X.T @ (w[:, None] * X)
    bread = np.linalg.inv(info)
    scores = np.zeros((len(data), X.shape[1]))
    scores[used] = (w * (y - mu))[:, None] * X
    meat = design.total_covariance(scores)
    cov = bread @ meat @ bread
    names = list(x_frame.columns)
    df_residual = _design_df(design) - X.shape[1] + 1
    return SurveyGLM(
        formula=formula, family=family, params=pd.Series(beta, index=names),
        cov=pd.DataFrame(cov, index=names, columns=names), design_info=x_frame.design_info,
        outcome=str(outcome), frame=data, used=used, weights=weights, bread=bread, scores=scores,
        design=design, df_residual=df_residual, n_used=int(used.sum()), n_excluded=n_excluded,
        excluded_reasons={"missing value in a model variable": n_excluded} if n_excluded else {},
    )  # fmt: skip


# ============================================================================================
# MAIHDA
# ============================================================================================


@dataclass
class MixedFit:
    """One fitted random-intercept model ``y = X b + u_j + e``: estimates and the fit's record.

    Attributes
    ----------
    stratum_var, residual_var : float
        ``s2_u`` (exactly 0 when the (RE)ML optimum is on the boundary) and ``s2_e``.
    stratum_var_se : float
        Delta-method SE of ``s2_u`` (NaN at ``s2_u = 0``).
    optimiser : str
        What produced the estimates: ``"profiled REML (direct)"`` (or ``ML``), or, when the
        direct fit failed its check, the statsmodels ``MixedLM.fit`` method and start used.
    converged : bool
        The estimates passed :func:`_at_maximum` (a verified optimum of the closed-form
        likelihood).
    attempts : dict
        Every fit tried, in order, with its outcome and log-likelihood.
    fe_params : pandas.Series
        GLS fixed effects ``b`` at the estimated variances, by patsy term name.
    random_effects : pandas.Series
        BLUPs ``u_j`` by stratum label.
    loglik : float
        The closed-form (RE)ML log-likelihood (:func:`_random_intercept_loglik`, up to a
        constant) at the estimates.
    reml : bool
        REML (True) or ML.
    """

    stratum_var: float
    residual_var: float
    stratum_var_se: float
    optimiser: str
    converged: bool
    attempts: dict
    fe_params: pd.Series
    random_effects: pd.Series
    loglik: float
    reml: bool = True

    @property
    def vpc(self) -> float:
        """Variance partition coefficient: stratum variance over total variance."""
        return self.stratum_var / (self.stratum_var + self.residual_var)

    def stratum_var_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Wald interval for the stratum variance built on the log scale (so it stays positive):
        ``exp(log s2_u ± z SE(log s2_u))`` with the SE from the observed information of the
        (RE)ML likelihood in ``(log s2_u, log s2_e)``; ``stratum_var_se`` is the delta-method SE
        ``s2_u SE(log s2_u)``."""
        if not (self.stratum_var > 0 and np.isfinite(self.stratum_var_se)):
            return (np.nan, np.nan)
        z = stats.norm.ppf(0.5 + level / 2)
        half = z * self.stratum_var_se / self.stratum_var
        return (self.stratum_var * np.exp(-half), self.stratum_var * np.exp(half))


@dataclass
class Maihda:
    """A MAIHDA: null and main-effects random-intercept models over intersectional strata.

    Attributes
    ----------
    null, main : MixedFit
    pcv : float
        Proportional change in the stratum variance from the null to the main-effects model,
        ``(s2_null - s2_main) / s2_null``: the share of between-stratum variance explained by
        additive main effects; ``1 - PCV`` is the part due to intersectional interactions.
    strata : pandas.DataFrame
        One row per stratum: ``stratum`` (categories joined with " × "), ``n``, the null model's
        shrunken random effect ``blup`` and its conditional SE, the main model's ``blup_main``
        (the stratum's departure from additivity), and the shrunken predicted stratum means of
        both models with prediction SEs.
    """

    outcome: str
    dimensions: list[str]
    null: MixedFit
    main: MixedFit
    pcv: float
    fixed_effects: pd.Series
    strata: pd.DataFrame
    n_used: int
    n_excluded: int
    binary: bool

    @property
    def method(self) -> str:
        model = ("linear probability model (binary outcome fitted as continuous)" if self.binary
                 else "linear mixed model")  # fmt: skip
        return (f"MAIHDA: {model}, random intercepts for {' × '.join(self.dimensions)} strata, "
                f"{'REML' if self.null.reml else 'ML'} (fits: {self.null.optimiser}/{self.main.optimiser}); "
                "unweighted (model-based, not design-based)")  # fmt: skip

    def summary_table(self, level: float = 0.95, **labels) -> pd.DataFrame:
        """Variance components, VPCs and PCV in the result schema (``cell`` the quantity).

        Intervals: stratum variances by a log-scale Wald interval; VPC and PCV carry no interval
        here (their sampling distributions are far from normal with few strata).
        """
        rows = []
        breakdown = CELL_SEPARATOR.join(self.dimensions)
        for model, fit in (("null", self.null), ("main", self.main)):
            lo, hi = fit.stratum_var_interval(level)
            rows.append({"cell": f"{model}: stratum variance", "estimate": fit.stratum_var,
                         "se": fit.stratum_var_se, "ci_low": lo, "ci_high": hi})
            rows.append({"cell": f"{model}: residual variance", "estimate": fit.residual_var})
            rows.append({"cell": f"{model}: VPC", "estimate": fit.vpc})
        rows.append({"cell": "PCV", "estimate": self.pcv})
        frame = pd.DataFrame(rows)
        frame["indicator"] = self.outcome
        frame["breakdown"] = breakdown
        frame["n_unweighted"] = self.n_used
        frame["method"] = self.method
        return conform(frame, **labels)

    def stratum_table(self, model: str = "null", level: float = 0.95, disclosure: bool = True,
                      thresholds=None, **labels) -> pd.DataFrame:
        """Shrunken (empirical Bayes) predicted stratum means in the result schema.

        ``model="null"``: intercept + stratum random effect; ``"main"``: the additive prediction
        from the main effects + the stratum's random effect (its interaction part);
        ``"interaction"``: the main model's stratum random effect alone, i.e. how far the
        stratum sits above (+) or below (-) what the additive main effects predict. Intervals
        ``± z SE`` with the prediction error variance from Henderson's mixed-model equations
        (uncertainty of the fixed effects and of the random effect, variance parameters taken
        as known, as lme4's ``condVar``). Strata with few respondents are suppressed when
        ``disclosure`` (thresholds from ``params/report.yml``): a shrunken mean still describes
        a small group.
        """
        columns = {"null": "predicted_null", "main": "predicted_main", "interaction": "blup_main"}
        if model not in columns:
            raise ModelError(f"model={model!r}: use one of {list(columns)}")
        column = columns[model]
        z = stats.norm.ppf(0.5 + level / 2)
        est = self.strata[column].to_numpy()
        se = self.strata[f"{column}_se"].to_numpy()
        frame = pd.DataFrame({
            "indicator": self.outcome, "breakdown": CELL_SEPARATOR.join(self.dimensions),
            "cell": self.strata["stratum"], "estimate": est, "se": se,
            "ci_low": est - z * se, "ci_high": est + z * se, "n_unweighted": self.strata["n"],
            "method": f"{self.method}; shrunken stratum mean ({model} model)",
        })  # fmt: skip
        out = conform(frame, **labels)
        if disclosure:
            from analysis import disclosure as disclosure_control

            out = disclosure_control.primary_suppression(out, thresholds)
        return out


@dataclass(frozen=True)
class _StratumSums:
    """Per-stratum sufficient statistics of a random-intercept model (rows of X and y)."""

    xx: np.ndarray  # (J, p, p) X_j'X_j
    x1: np.ndarray  # (J, p)    X_j'1
    xy: np.ndarray  # (J, p)    X_j'y
    sum_y: np.ndarray  # (J,)
    sum_yy: np.ndarray  # (J,)
    n: np.ndarray  # (J,)

    @classmethod
    def build(cls, X: np.ndarray, y: np.ndarray, codes: np.ndarray, n_strata: int) -> _StratumSums:
        """Sums over the rows of each stratum (``codes`` 0..J-1, every stratum with rows)."""
        n = np.bincount(codes, minlength=n_strata)
        if np.any(n == 0):
            raise ModelError("MAIHDA: a stratum without rows; strata must come from the data")
        order = np.argsort(codes, kind="stable")
        starts = np.concatenate([[0], np.cumsum(n)[:-1]])
        Xs, ys = X[order], y[order]
        p = X.shape[1]
        products = (Xs[:, :, None] * Xs[:, None, :]).reshape(len(ys), p * p)
        xx = np.add.reduceat(products, starts).reshape(-1, p, p)
        x1 = np.add.reduceat(Xs, starts)
        xy = np.add.reduceat(Xs * ys[:, None], starts)
        return cls(xx, x1, xy, np.bincount(codes, y, n_strata), np.bincount(codes, y * y, n_strata),
                   n.astype(float))  # fmt: skip


def _random_intercept_loglik(log_variances, sums: _StratumSums, reml: bool = True) -> float:
    """(Restricted) log-likelihood of ``y = X b + u_j + e`` at ``(log s2_u, log s2_e)``, up to a
    constant, with ``b`` profiled out by GLS.

    Closed form per stratum: ``V_j^-1 = (I - g_j 11') / s2_e`` with
    ``g_j = s2_u / (s2_e + n_j s2_u)`` and ``log|V_j| = (n_j - 1) log s2_e + log(s2_e + n_j s2_u)``.
    Used to check that a fit reached a maximum and for the observed information of the
    variance components; the fit itself maximises the equivalent one-dimensional profile
    (:func:`_profiled_deviance`).
    """
    s2u, s2e = np.exp(log_variances[0]), np.exp(log_variances[1])
    g = s2u / (s2e + sums.n * s2u)
    xvx = (sums.xx - g[:, None, None] * sums.x1[:, :, None] * sums.x1[:, None, :]).sum(0) / s2e
    xvy = (sums.xy - g[:, None] * sums.x1 * sums.sum_y[:, None]).sum(0) / s2e
    yvy = (sums.sum_yy - g * sums.sum_y**2).sum() / s2e
    beta = np.linalg.solve(xvx, xvy)
    quad = yvy - xvy @ beta
    logdet = np.sum((sums.n - 1) * np.log(s2e) + np.log(s2e + sums.n * s2u))
    value = -0.5 * (logdet + quad)
    if reml:
        value -= 0.5 * np.linalg.slogdet(xvx)[1]
    return float(value)


def _log_variance_information(s2u: float, s2e: float, sums: _StratumSums, reml: bool) -> np.ndarray:
    """Observed information of ``(log s2_u, log s2_e)``: minus the numerical Hessian."""
    point = np.log([s2u, s2e])
    h = 1e-4
    hess = np.zeros((2, 2))
    for a in range(2):
        for b in range(2):
            ea, eb = np.eye(2)[a] * h, np.eye(2)[b] * h
            hess[a, b] = (
                _random_intercept_loglik(point + ea + eb, sums, reml)
                - _random_intercept_loglik(point + ea - eb, sums, reml)
                - _random_intercept_loglik(point - ea + eb, sums, reml)
                + _random_intercept_loglik(point - ea - eb, sums, reml)
            ) / (4 * h * h)
    return -hess


def _at_maximum(s2u: float, s2e: float, sums: _StratumSums, reml: bool) -> bool:
    """True when the variances are at a maximum of the closed-form (RE)ML likelihood.

    Interior point: the Newton decrement ``sqrt(g' H^-1 g)`` in ``(log s2_u, log s2_e)`` must be
    below 0.01, i.e. the estimate is within a hundredth of a standard error of the optimum. Zero stratum
    variance (the boundary): a small positive variance must not raise the likelihood. Guards
    against an optimiser that reports convergence away from the optimum.
    """
    floor = 1e-8 * s2e
    if s2u <= floor:
        base = _random_intercept_loglik(np.log([floor, s2e]), sums, reml)
        return _random_intercept_loglik(np.log([1e-3 * s2e, s2e]), sums, reml) <= base + 1e-8
    point, h = np.log([s2u, s2e]), 1e-5
    grad = np.array([(_random_intercept_loglik(point + e * h, sums, reml)
                      - _random_intercept_loglik(point - e * h, sums, reml)) / (2 * h)
                     for e in np.eye(2)])  # fmt: skip
    information = _log_variance_information(s2u, s2e, sums, reml)
    if np.any(np.linalg.eigvalsh(information) <= 0):
        return False
    return float(np.sqrt(grad @ np.linalg.solve(information, grad))) < 1e-2


def _moment_start(model, codes: np.ndarray):
    """Starting values from least squares and a one-way ANOVA of its residuals by stratum.

    ``s2_e`` = pooled within-stratum residual variance; ``s2_u`` = variance of the stratum mean
    residuals minus ``s2_e / mean n_j`` (at least 5% of ``s2_e``). statsmodels' default start
    sometimes leads its gradient optimisers to a poor point; from these they converge.
    """
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    X, y = np.asarray(model.exog, float), np.asarray(model.endog, float)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    resid = pd.Series(y - X @ beta)
    by = resid.groupby(codes)
    dof = len(resid) - by.ngroups
    within = float(((resid - by.transform("mean")) ** 2).sum() / dof) if dof > 0 else float(resid.var())
    within = max(within, 1e-12)
    between = max(float(by.mean().var()) - within / float(by.size().mean()), 0.05 * within)
    return MixedLMParams.from_components(fe_params=beta, cov_re=np.array([[between / within]]))


#: Variance ratios ``s2_u / s2_e`` scanned by the direct fit (4 per decade) before each local
#: optimum is refined; a profile still falling at the top means ``s2_e`` is near 0 (the direct
#: fit then fails and statsmodels is tried).
_RATIO_GRID = np.logspace(-8, 6, 57)

#: Label of the direct fit in :attr:`MixedFit.optimiser` and the attempts record.
_DIRECT_LABEL = "profiled {} (direct)"


def _profiled_deviance(ratios: np.ndarray, sums: _StratumSums, reml: bool):
    """Profiled (RE)ML deviance of a random-intercept model and its derivative in the ratio.

    With ``theta = s2_u / s2_e``, ``V_j = s2_e (I + theta 11')``, ``h_j = theta / (1 + n_j theta)``,
    ``A = sum_j X_j'X_j - h_j X_j'1 1'X_j`` (``X'V^-1X`` times ``s2_e``), the GLS
    ``b = A^-1 c`` with ``c = sum_j X_j'y_j - h_j X_j'1 1'y_j``, and the weighted residual sum of
    squares ``q = sum_j y_j'y_j - h_j (1'y_j)^2 - c'b``, maximising over ``s2_e`` gives
    ``s2_e = q / m`` with ``m = N - p`` (REML) or ``N`` (ML), and minus twice the log-likelihood is,
    up to a constant,

    ``D(theta) = m log q + sum_j log(1 + n_j theta) [+ log|A| for REML]``

    (Harville 1977; lme4's profiled REML criterion, Bates et al. 2015, here for one scalar
    random intercept with the ratio as its single parameter). Its derivative, by the envelope
    theorem for ``b`` and with ``h_j' = 1 / (1 + n_j theta)^2`` and ``e_j = 1'y_j - 1'X_j b``,

    ``D'(theta) = -m sum_j h_j' e_j^2 / q + sum_j n_j / (1 + n_j theta)
    [- sum_j h_j' 1'X_j A^-1 X_j'1 for REML]``.

    Parameters
    ----------
    ratios : array of shape (K,)
        Values of ``theta >= 0``, evaluated together.

    Returns
    -------
    deviance, slope, q : arrays of shape (K,)
    beta : array of shape (K, p)

    References
    ----------
    Harville, D. A. (1977). Maximum likelihood approaches to variance component estimation and
    to related problems. JASA 72, 320-338. Bates, D., Mächler, M., Bolker, B., Walker, S. (2015).
    Fitting linear mixed-effects models using lme4. J. Stat. Softw. 67(1).
    """
    theta = np.asarray(ratios, dtype=float)[:, None]
    n = sums.n[None, :]
    h = theta / (1 + n * theta)  # (K, J)
    dh = 1 / (1 + n * theta) ** 2
    J, p = sums.x1.shape
    outer = (sums.x1[:, :, None] * sums.x1[:, None, :]).reshape(J, p * p)
    A = sums.xx.sum(0)[None] - (h @ outer).reshape(-1, p, p)
    c = sums.xy.sum(0)[None] - h @ (sums.x1 * sums.sum_y[:, None])
    beta = np.linalg.solve(A, c[:, :, None])[:, :, 0]
    q = (sums.sum_yy.sum() - h @ sums.sum_y**2) - np.einsum("kp,kp->k", c, beta)
    e = sums.sum_y[None, :] - beta @ sums.x1.T  # (K, J) stratum sums of the GLS residuals
    m = float(sums.n.sum()) - (p if reml else 0)
    deviance = m * np.log(q) + np.log1p(n * theta).sum(1)
    slope = -m * (dh * e**2).sum(1) / q + (n / (1 + n * theta)).sum(1)
    if reml:
        deviance = deviance + np.linalg.slogdet(A)[1]
        leverage = np.einsum("ja,kab,jb->kj", sums.x1, np.linalg.inv(A), sums.x1)
        slope = slope - (dh * leverage).sum(1)
    return deviance, slope, q, beta


def _direct_ratio(sums: _StratumSums, reml: bool) -> float:
    """The variance ratio ``theta = s2_u / s2_e`` minimising :func:`_profiled_deviance`.

    The deviance is scanned on :data:`_RATIO_GRID`; every bracket where its slope turns from
    negative to positive holds a local minimum, found as the root of the analytic slope
    (Brent's method, relative tolerance ``1e-13``). The boundary ``theta = 0`` is a candidate
    when the slope there is not negative (no small stratum variance lowers the deviance), as in
    lme4's bounded optimisation. The candidate with the smallest deviance is returned.

    Raises
    ------
    ModelError
        No minimum within the grid (the deviance still falls at ``theta = 1e6``: a residual
        variance near 0) or a deviance that is not finite.
    """
    from scipy.optimize import brentq

    grid = np.concatenate([[0.0], _RATIO_GRID])
    deviance, slope, _, _ = _profiled_deviance(grid, sums, reml)
    if not (np.all(np.isfinite(deviance)) and np.all(np.isfinite(slope))):
        raise ModelError("the profiled likelihood is not finite on the variance-ratio grid")
    if slope[-1] < 0:
        raise ModelError(f"the profiled likelihood still rises at a variance ratio of {grid[-1]:g}")
    candidates = []
    if slope[0] >= 0:
        candidates.append((deviance[0], 0.0))
    for k in np.flatnonzero((slope[:-1] < 0) & (slope[1:] >= 0)):
        root = brentq(lambda t: float(_profiled_deviance(np.array([t]), sums, reml)[1][0]),
                      grid[k], grid[k + 1], xtol=1e-300, rtol=1e-13)  # fmt: skip
        candidates.append((float(_profiled_deviance(np.array([root]), sums, reml)[0][0]), root))
    if not candidates:
        raise ModelError("no minimum of the profiled likelihood on the variance-ratio grid")
    return min(candidates)[1]


def _direct_fit(sums: _StratumSums, reml: bool):
    """Variances, fixed effects and BLUPs at the (RE)ML optimum from the stratum sums alone.

    ``theta`` from :func:`_direct_ratio`; then ``s2_e = q / m``, ``s2_u = theta s2_e``, ``b`` the
    GLS estimate and the BLUPs ``u_j = s2_u n_j / (s2_e + n_j s2_u) * (mean GLS residual of
    stratum j) = h_j e_j`` (Henderson 1975, Biometrics 31, 423-447; Robinson 1991, Statist.
    Sci. 6, 15-51).
    """
    theta = _direct_ratio(sums, reml)
    _, _, q, beta = _profiled_deviance(np.array([theta]), sums, reml)
    m = float(sums.n.sum()) - (sums.x1.shape[1] if reml else 0)
    s2e = float(q[0]) / m
    beta = beta[0]
    blups = theta / (1 + sums.n * theta) * (sums.sum_y - sums.x1 @ beta)
    return theta * s2e, s2e, beta, blups


def _statsmodels_fits(formula, data, strata, codes, sums, optimisers, reml, attempts, candidates):
    """statsmodels ``MixedLM.fit`` with each optimiser in turn until one reaches a verified
    optimum; each fit tried is added to ``attempts`` and ``candidates`` (the previous engine,
    kept as the fallback of the direct fit and for comparison: ``engine="statsmodels"``)."""
    import statsmodels.formula.api as smf

    model = smf.mixedlm(formula, data, groups=data["_stratum"])
    start = _moment_start(model, codes)
    # each optimiser from moment-based starting values first, then from statsmodels' defaults
    for method, start_params in [(m, start) for m in optimisers] + [(m, None) for m in optimisers]:
        label = f"statsmodels {method} ({'moment start' if start_params is not None else 'default start'})"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = model.fit(reml=reml, method=method, start_params=start_params)
            except (np.linalg.LinAlgError, ValueError) as exc:
                attempts[label] = f"failed: {exc}"
                continue
        s2u, s2e = float(np.asarray(result.cov_re)[0, 0]), float(result.scale)
        usable = np.isfinite(s2u) and np.isfinite(s2e) and s2e > 0 and s2u >= 0
        ok = bool(result.converged) and usable and _at_maximum(s2u, s2e, sums, reml)
        loglik = _random_intercept_loglik(np.log([max(s2u, 1e-8 * s2e), s2e]), sums, reml) if usable \
            else -np.inf
        attempts[label] = f"converged {bool(result.converged)}, at optimum {ok}, loglik {loglik:.6f}"
        # statsmodels cannot predict random effects at a zero variance: they are 0 there
        blups = pd.Series(0.0, index=strata)
        if usable and s2u > 0:
            effects = result.random_effects
            blups = pd.Series({s: float(np.asarray(effects[s])[0]) for s in effects})
        candidates.append((ok, loglik, label, s2u, s2e, np.asarray(result.fe_params, float), blups))
        if ok:
            return


def _fit_mixed(formula: str, data: pd.DataFrame, strata: list[str], optimisers, reml: bool,
               engine: str = "direct", stratum_constant: bool = False):
    """Fit ``y = X b + u_j + e`` and verify the optimum.

    ``engine="direct"`` (default): :func:`_direct_fit` on the per-stratum sums; it is accepted
    when :func:`_at_maximum` confirms it, otherwise statsmodels' optimisers are tried in turn
    (:func:`_statsmodels_fits`) and the record says so. ``engine="statsmodels"``: statsmodels
    only (the previous implementation). statsmodels' optimisers sometimes report convergence
    at a poor point (L-BFGS may return a zero stratum variance far from the optimum), so any
    fit is accepted only when it converged and no small move of the two variances raises the
    closed-form likelihood. When no fit passes, the best found is kept and a
    :class:`MaihdaConvergenceWarning` says so.

    ``stratum_constant``: every term of ``formula`` is a fixed function of the stratum's
    categories (the default main effects, ``C(dimension)`` terms), so patsy builds the design
    on one row per stratum (the same levels, hence the same columns) and each row takes its
    stratum's; not for covariates varying within strata or data-dependent transforms
    (``center``, splines).

    Returns
    -------
    MixedFit, _StratumSums
        The fit and the stratum sums of its design.
    """
    if engine not in ("direct", "statsmodels"):
        raise ModelError(f"MAIHDA: engine={engine!r}; use 'direct' or 'statsmodels'")
    outcome, rhs = (side.strip() for side in formula.split("~"))
    y = data[outcome].to_numpy(float)
    codes = pd.Index(strata).get_indexer(data["_stratum"])  # strata come from the data: no -1
    if rhs == "1":  # the null model: what patsy builds for "~ 1", without its cost
        x_frame = pd.DataFrame({"Intercept": np.ones(len(data))})
        X = x_frame.to_numpy(float)
    else:
        rows = data.drop_duplicates("_stratum") if stratum_constant else data
        try:
            x_frame = patsy.dmatrix(rhs, rows, return_type="dataframe", NA_action="raise")
        except patsy.PatsyError as exc:
            raise ModelError(f"MAIHDA model {formula!r}: {str(exc).splitlines()[0]}") from None
        X = x_frame.to_numpy(float)
        if stratum_constant:
            order = pd.Index(strata).get_indexer(rows["_stratum"])
            X = X[np.argsort(order)][codes]
    sums = _StratumSums.build(X, y, codes, len(strata))
    attempts, candidates = {}, []
    if engine == "direct":
        label = _DIRECT_LABEL.format("REML" if reml else "ML")
        try:
            with np.errstate(all="ignore"):
                s2u, s2e, beta, blups = _direct_fit(sums, reml)
        except (np.linalg.LinAlgError, ModelError) as exc:
            attempts[label] = f"failed: {exc}"
        else:
            ok = bool(np.isfinite(s2e) and s2e > 0 and _at_maximum(s2u, s2e, sums, reml))
            loglik = _random_intercept_loglik(np.log([max(s2u, 1e-8 * s2e), s2e]), sums, reml) \
                if np.isfinite(s2e) and s2e > 0 else -np.inf
            attempts[label] = f"at optimum {ok}, loglik {loglik:.6f}"
            candidates.append((ok, loglik, label, s2u, s2e, beta, pd.Series(blups, index=strata)))
    if not (candidates and candidates[0][0]):
        _statsmodels_fits(formula, data, strata, codes, sums, optimisers, reml, attempts, candidates)
    if not candidates:
        raise ModelError(f"MAIHDA model {formula!r}: every optimiser failed ({attempts})")
    ok, loglik, method, s2u, s2e, beta, blups = max(candidates, key=lambda c: (c[0], c[1]))
    if not ok:
        warnings.warn(
            f"MAIHDA model {formula!r}: no optimiser reached a verified optimum ({attempts}); "
            f"using {method}, whose estimates may be unreliable",
            MaihdaConvergenceWarning, stacklevel=3,
        )  # fmt: skip
    se = np.nan
    if s2u > 0:
        try:
            cov_log = np.linalg.inv(_log_variance_information(s2u, s2e, sums, reml))
            se = s2u * float(np.sqrt(cov_log[0, 0])) if cov_log[0, 0] > 0 else np.nan
        except np.linalg.LinAlgError:
            se = np.nan
    fit = MixedFit(stratum_var=s2u, residual_var=s2e, stratum_var_se=se, optimiser=method,
                   converged=ok, attempts=attempts,
                   fe_params=pd.Series(beta, index=list(x_frame.columns)),
                   random_effects=blups.reindex(strata), loglik=loglik, reml=reml)  # fmt: skip
    return fit, sums


def _prediction_table(fit: MixedFit, sums: _StratumSums):
    """Shrunken stratum random effects and predicted stratum means with prediction SEs.

    Henderson's mixed-model equations with ``R = s2_e I`` and ``G = s2_u I``:
    ``C = [[X'X, X'Z], [Z'X, Z'Z + (s2_e/s2_u) I]] / s2_e``, built from the stratum sums
    (``X'Z`` has the columns ``X_j'1``, ``Z'Z = diag(n_j)``); the prediction error covariance of
    ``(beta, u)`` is ``C^-1``, so the stratum prediction ``x_j' beta + u_j`` has variance
    ``[x_j, e_j] C^-1 [x_j, e_j]'``. At a zero stratum variance the random effects are 0 and only
    the fixed-effect uncertainty remains.
    """
    beta = fit.fe_params.to_numpy(float)
    s2e, s2u = fit.residual_var, fit.stratum_var
    n_strata = len(sums.n)
    # fixed-part row of each stratum: the mean row (constant within a stratum when every
    # covariate is a stratum dimension; otherwise the stratum's average covariate mix)
    x_strata = sums.x1 / sums.n[:, None]
    p = x_strata.shape[1]
    xtx = sums.xx.sum(0)
    if s2u > 0:
        top = np.hstack([xtx, sums.x1.T])
        bottom = np.hstack([sums.x1, np.diag(sums.n) + (s2e / s2u) * np.eye(n_strata)])
        c_inv = np.linalg.inv(np.vstack([top, bottom]) / s2e)
        u = fit.random_effects.to_numpy(float)
        u_se = np.sqrt(np.diag(c_inv)[p:])
        L = np.hstack([x_strata, np.eye(n_strata)])
    else:
        c_inv = np.linalg.inv(xtx / s2e)
        u, u_se = np.zeros(n_strata), np.zeros(n_strata)
        L = x_strata
    predicted = x_strata @ beta + u
    pred_se = np.sqrt(np.einsum("ij,jk,ik->i", L, c_inv, L))
    return u, u_se, predicted, pred_se


def maihda(
    frame: pd.DataFrame,
    outcome: str,
    dimensions: list[str],
    *,
    main_effects: str | None = None,
    optimisers=OPTIMISERS,
    reml: bool = True,
    engine: str = "direct",
) -> Maihda:
    """MAIHDA over intersectional strata of ``dimensions``.

    Parameters
    ----------
    frame
        Respondent data (one row per person).
    outcome
        Outcome column (continuous; a 0/1 binary outcome is fitted as a linear probability
        model, and ``method`` says so).
    dimensions
        Columns whose crossing defines the strata, e.g. ``["sex", "age_group", "disability",
        "displacement_status"]``.
    main_effects
        Right-hand side of the main-effects model; default every dimension as categorical
        (``C(sex) + C(age_group) + ...``; a 0/1 numeric dimension gives the same fit as its
        numeric coding). It may name other columns (e.g. ``+ C(country)``), which then vary
        within strata; rows missing them are excluded too.
    optimisers
        statsmodels ``MixedLM.fit`` methods, tried in turn when the direct fit does not pass its
        check (or with ``engine="statsmodels"``) until one reaches a verified optimum (see
        :func:`_fit_mixed`); a :class:`MaihdaConvergenceWarning` is raised when no fit did.
    reml
        Restricted maximum likelihood (lme4's default) when True.
    engine
        ``"direct"`` (default): the profiled (RE)ML likelihood maximised over the variance ratio
        from per-stratum sums (:func:`_profiled_deviance`), statsmodels as the fallback;
        ``"statsmodels"``: statsmodels ``MixedLM`` only (the previous implementation, kept for
        comparison). Both give the same optimum within optimiser tolerance.

    Notes
    -----
    Models (i person, j stratum): null ``y_ij = b0 + u_j + e_ij``; main
    ``y_ij = x_j' b + u_j + e_ij``; ``u_j ~ N(0, s2_u)``, ``e_ij ~ N(0, s2_e)``.
    ``VPC = s2_u / (s2_u + s2_e)``; ``PCV = (s2_u,null - s2_u,main) / s2_u,null``. The variances
    maximise the REML criterion (Harville 1977; lme4's profiled REML, Bates et al. 2015) with
    ``s2_u >= 0`` (exactly 0 at a boundary optimum, as lme4's singular fits); ``b`` is GLS and
    the stratum effects are BLUPs. The fit is unweighted: MAIHDA is a model of the sample's
    strata, not a design-based estimator. Rows with a missing outcome or dimension are excluded
    and counted (``n_excluded``).
    """
    # columns named in the main-effects formula beyond the dimensions (e.g. country)
    named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", main_effects or ""))
    covariates = [c for c in frame.columns if c in named and c not in dimensions and c != outcome]
    needed = [outcome] + list(dimensions) + covariates
    absent = [c for c in [outcome, *dimensions] if c not in frame.columns]
    if absent:
        raise ModelError(f"MAIHDA: columns {absent} not in the data; columns are {list(frame.columns)[:30]}")
    complete = frame[needed].notna().all(axis=1)
    data = frame.loc[complete, needed].reset_index(drop=True).copy()
    data.attrs = {}  # survey metadata, deep-copied by every pandas step otherwise
    data[outcome] = pd.to_numeric(data[outcome], errors="coerce")
    if data[outcome].isna().any():
        raise ModelError(f"MAIHDA: outcome {outcome!r} has non-numeric values")
    combination, combinations = pd.MultiIndex.from_frame(data[list(dimensions)].astype(str)).factorize()
    data["_stratum"] = np.array([join_cell(values) for values in combinations], dtype=object)[combination]
    strata = sorted(data["_stratum"].unique())
    if len(strata) < 3:
        raise ModelError(f"MAIHDA needs several strata; {dimensions} give {len(strata)}")
    binary = set(np.unique(data[outcome])) <= {0.0, 1.0}
    # formula-safe aliases for column names (which may hold dots or spaces)
    safe = {c: f"_d{i}" for i, c in enumerate(list(dimensions) + covariates)}
    data = data.rename(columns={**safe, outcome: "_y"})
    data = _patsy_ready(data)
    rhs = main_effects
    if rhs is None:
        rhs = " + ".join(f"C({safe[c]})" for c in dimensions)
    else:
        for original, alias in sorted(safe.items(), key=lambda kv: -len(kv[0])):
            rhs = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(original)}(?![A-Za-z0-9_])", alias, rhs)
    null_fit, null_sums = _fit_mixed("_y ~ 1", data, strata, optimisers, reml, engine)
    main_fit, main_sums = _fit_mixed(f"_y ~ {rhs}", data, strata, optimisers, reml, engine,
                                        stratum_constant=main_effects is None)
    pcv = (null_fit.stratum_var - main_fit.stratum_var) / null_fit.stratum_var \
        if null_fit.stratum_var > 0 else np.nan
    u0, u0_se, pred0, pred0_se = _prediction_table(null_fit, null_sums)
    u1, u1_se, pred1, pred1_se = _prediction_table(main_fit, main_sums)
    counts = data["_stratum"].value_counts()
    table = pd.DataFrame({
        "stratum": strata, "n": [int(counts[s]) for s in strata],
        "blup": u0, "blup_se": u0_se, "predicted_null": pred0, "predicted_null_se": pred0_se,
        "blup_main": u1, "blup_main_se": u1_se, "predicted_main": pred1, "predicted_main_se": pred1_se,
    })  # fmt: skip
    names = {alias: original for original, alias in safe.items()}
    fixed = pd.Series(main_fit.fe_params.to_numpy(float),
                      index=[_rename_term(t, names) for t in main_fit.fe_params.index])
    return Maihda(outcome=outcome, dimensions=list(dimensions), null=null_fit, main=main_fit,
                  pcv=float(pcv), fixed_effects=fixed, strata=table, n_used=len(data),
                  n_excluded=int((~complete).sum()), binary=bool(binary))  # fmt: skip


def _rename_term(term: str, names: dict) -> str:
    for alias, original in sorted(names.items(), key=lambda kv: -len(kv[0])):
        term = term.replace(alias, original)
    return term


__all__ = [
    "OPTIMISERS",
    "Maihda",
    "MaihdaConvergenceWarning",
    "MixedFit",
    "ModelError",
    "SurveyGLM",
    "maihda",
    "survey_glm",
]  # fmt: skip
