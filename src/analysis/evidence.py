"""Evidence from partner studies: random-effects pooling of proportions and the evidence-gap map.

Many partner CSOs share only what they published — a percentage and its n for a group, a
country and a period. This module pools such single proportions across studies and maps where
evidence exists and where it is missing.

Pooling follows R's metafor (Viechtbauer 2010, *J Stat Softw* 36(3)) formula for formula, so
that results can be checked against ``rma.uni`` (tests compare with metafor 3.8-1 on its bundled
data sets, ``tests/results/meta_analysis.json``):

- :func:`transform_proportions` — ``escalc`` measures ``PLO`` (logit; 0.5 added to *every* cell
  of a study with a zero cell, metafor's ``add=1/2, to="only0"``), ``PFT`` (Freeman & Tukey 1950
  double arcsine, variance ``1/(4n + 2)``) and ``PR`` (raw proportion);
  :func:`back_transform` — inverse logit, and Miller's (1978) inverse of the double arcsine
  evaluated at the harmonic mean of the study sizes (metafor's ``transf.ipft.hm``).
- :func:`tau2_estimate` — between-study variance by equal effects (EE, τ² = 0), DerSimonian &
  Laird (1986), Hedges (1983, HE), Sidik & Jonkman (2005, SJ), maximum likelihood (ML),
  restricted maximum likelihood (REML; Viechtbauer 2005) and Paule & Mandel (1982, PM), each in
  metafor's general form with moderators (``X``), so that meta-regression uses the same code.
- :func:`pool` — the random-effects summary with Wald (z) or Knapp & Hartung (2003) intervals
  (t with k − p df, no truncation of the scale factor, as metafor's ``test="knha"``), prediction
  intervals (z, or t with k − 1 df under Knapp–Hartung as metafor does, or t with k − 2 df as
  Higgins, Thompson & Spiegelhalter 2009 and R's meta package), Cochran's Q, I² and H² as metafor
  defines them for the estimator used (I² = τ² / (τ² + s²) with s² the "typical" within-study
  variance of Higgins & Thompson 2002), and the Q-profile interval of τ² (Viechtbauer 2007) and of
  I² derived from it.
- :func:`subgroups` — separate τ² per subgroup with the test of subgroup differences (Q between,
  a fixed-effect test of the subgroup summaries), and the moderator (Wald) test of a
  meta-regression on the subgroup with a common τ², with its pseudo-R² (Raudenbush 2009).
- :func:`leave_one_out` — the summary with each study left out in turn.
- :func:`pool_glmm` — the binomial-normal GLMM (exact binomial within studies), as metafor's
  ``rma.glmm(measure="PLO")`` with lme4's adaptive quadrature.
- :func:`pool_many` — many meta-analyses at once (indicator × group × country): DerSimonian–Laird
  vectorised over all of them.

statsmodels' ``combine_effects`` covers DL and PM on a ready-made (y, v); it lacks the
transforms and back-transforms of proportions, REML/ML/HE/SJ, metafor's I² for iterative
estimators (it computes I² from Q), the Q-profile interval, the t(k − 2) prediction interval and
moderators; and its DL (statsmodels 0.15) leaves a negative moment estimate of τ² untruncated
(four studies 20, 21, 19, 20 of 40 give τ² = −0.093, where metafor and DerSimonian & Laird give
0), which changes the weights. So the computation is written out here; statsmodels is the
cross-check of DL and PM in the tests (where its τ² ≥ 0) and the peer of :func:`pool_many` in
``bench/bench_synthesis.py``.

Assumptions: studies are independent; within-study sampling variances are treated as known
(the usual normal-normal model ``y_i ~ N(θ_i, v_i)``, ``θ_i ~ N(μ, τ²)``); published percentages
without a count are turned into a count ``round(p × n)``. Proportions are on 0–1 throughout.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

TRANSFORMS = ("logit", "freeman_tukey", "raw")
ESTIMATORS = ("EE", "DL", "HE", "SJ", "ML", "REML", "PM")
#: Convergence of the iterative estimators (τ², absolute). metafor stops at 1e-5; we solve the
#: estimating equation with Brent's method to far below that.
TAU2_TOL = 1e-12


class EvidenceError(ValueError):
    """Input to pooling is unusable; the message names the parameter and what to fix."""


# --------------------------------------------------------------------------------------------
# Transforms


def transform_proportions(events, n, transform: str = "logit") -> tuple[np.ndarray, np.ndarray]:
    """Effect sizes ``y`` and sampling variances ``v`` of single proportions.

    Parameters
    ----------
    events, n : array-like
        Number of events and sample size of each study (events ≤ n, n > 0).
    transform : {"logit", "freeman_tukey", "raw"}
        ``logit`` is metafor's ``PLO``: ``y = log(x / (n − x))``, ``v = 1/x + 1/(n − x)``, with 0.5
        added to both cells of every study that has a zero cell (x = 0 or x = n) and to no other
        study (``escalc(add=1/2, to="only0")``). ``freeman_tukey`` is ``PFT``:
        ``y = ½[asin √(x/(n+1)) + asin √((x+1)/(n+1))]``, ``v = 1/(4n + 2)`` (Freeman & Tukey
        1950). ``raw`` is ``PR``: ``y = x/n``, ``v = y(1 − y)/n``.
    """
    x = np.asarray(events, dtype=float)
    n = np.asarray(n, dtype=float)
    if x.shape != n.shape:
        raise EvidenceError("events and n must have the same length")
    if np.any(~np.isfinite(n)) or np.any(n <= 0):
        raise EvidenceError("n: every study needs a sample size above 0")
    if np.any(~np.isfinite(x)) or np.any(x < 0) or np.any(x > n):
        raise EvidenceError("events: every count must lie between 0 and its n")
    if transform == "logit":
        zero_cell = (x == 0) | (x == n)
        add = np.where(zero_cell, 0.5, 0.0)
        a, b = x + add, n - x + add
        return np.log(a / b), 1.0 / a + 1.0 / b
    if transform == "freeman_tukey":
        y = 0.5 * (np.arcsin(np.sqrt(x / (n + 1))) + np.arcsin(np.sqrt((x + 1) / (n + 1))))
        return y, 1.0 / (4.0 * n + 2.0)
    if transform == "raw":
        p = x / n
        return p, p * (1 - p) / n
    raise EvidenceError(f"transform '{transform}' unknown; use one of {', '.join(TRANSFORMS)}")


def _pft(p, n):
    """Double arcsine of a proportion ``p`` with sample size ``n`` (metafor's ``transf.pft``)."""
    x = p * n
    return 0.5 * (np.arcsin(np.sqrt(x / (n + 1))) + np.arcsin(np.sqrt((x + 1) / (n + 1))))


def back_transform(values, transform: str, n=None) -> np.ndarray:
    """Proportions from transformed values.

    ``logit``: the inverse logit. ``freeman_tukey``: Miller's (1978) inverse
    ``p = ½{1 − sgn(cos 2t) √[1 − (sin 2t + (sin 2t − 1/sin 2t)/ñ)²]}`` with ``ñ`` the harmonic
    mean of the study sizes ``n`` (metafor's ``transf.ipft.hm``), set to 0 or 1 beyond the values
    the transform takes at p = 0 and p = 1. ``raw``: clipped to [0, 1].
    """
    t = np.asarray(values, dtype=float)
    if transform == "logit":
        return 1.0 / (1.0 + np.exp(-t))
    if transform == "raw":
        return np.clip(t, 0.0, 1.0)
    if transform == "freeman_tukey":
        if n is None:
            raise EvidenceError("n: the Freeman–Tukey back-transform needs the study sizes")
        n_h = stats.hmean(np.asarray(n, dtype=float))
        s = np.sin(2 * t)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = 0.5 * (1 - np.sign(np.cos(2 * t)) * np.sqrt(1 - (s + (s - 1 / s) / n_h) ** 2))
        p = np.where(t > _pft(1.0, n_h), 1.0, p)
        p = np.where(t < _pft(0.0, n_h), 0.0, p)
        return p
    raise EvidenceError(f"transform '{transform}' unknown; use one of {', '.join(TRANSFORMS)}")


# --------------------------------------------------------------------------------------------
# Between-study variance (metafor's rma.uni, general form with moderators X)


def _design(k: int, X) -> np.ndarray:
    if X is None:
        return np.ones((k, 1))
    X = np.asarray(X, dtype=float)
    return X.reshape(k, -1)


def _projection(v, tau2, X):
    """P = W − W X (X'WX)⁻¹ X'W with W = diag(1/(v + τ²)), and the weights."""
    w = 1.0 / (v + tau2)
    WX = X * w[:, None]
    inv = np.linalg.inv(X.T @ WX)
    return np.diag(w) - WX @ inv @ WX.T, w


def _residual_q(y, v, tau2, X) -> float:
    """Generalised Q: Y'PY at τ² (Cochran's Q at τ² = 0)."""
    P, _ = _projection(v, tau2, X)
    return float(y @ P @ y)


def _solve_tau2(fun, upper_start: float) -> float:
    """Root of a decreasing ``fun`` on [0, ∞): 0 when fun(0) ≤ 0."""
    if fun(0.0) <= 0:
        return 0.0
    upper = max(upper_start, 1e-4)
    while fun(upper) > 0:
        upper *= 4
        if upper > 1e8:
            raise EvidenceError("tau2: the estimating equation has no root below 1e8")
    return optimize.brentq(fun, 0.0, upper, xtol=TAU2_TOL, rtol=4 * np.finfo(float).eps, maxiter=500)


def tau2_estimate(y, v, method: str = "REML", X=None) -> float:
    """Between-study variance τ² by ``method`` (metafor's ``rma.uni`` formulas; truncated at 0).

    With ``P`` as in :func:`_projection`, ``k`` studies and ``p`` columns of ``X``:

    - ``EE``: 0 (equal effects).
    - ``DL`` (DerSimonian & Laird 1986): ``(Q − (k − p)) / tr(P₀)`` with P₀ at τ² = 0.
    - ``HE`` (Hedges 1983): ``(RSS_OLS − tr(P_OLS V)) / (k − p)``, unweighted least squares.
    - ``SJ`` (Sidik & Jonkman 2005): ``τ₀² · Y'P(τ₀²)Y / (k − p)`` with ``τ₀²`` the unweighted
      residual variance ``RSS_OLS / k`` (metafor's default start).
    - ``ML``: root of ``Y'PPY − tr(W)``; ``REML`` (Viechtbauer 2005): root of ``Y'PPY − tr(P)``.
    - ``PM`` (Paule & Mandel 1982): root of ``Y'PY − (k − p)``.
    """
    y = np.asarray(y, dtype=float)
    v = np.asarray(v, dtype=float)
    k = y.size
    X = _design(k, X)
    p = X.shape[1]
    if method not in ESTIMATORS:
        raise EvidenceError(f"method '{method}' unknown; use one of {', '.join(ESTIMATORS)}")
    if method == "EE" or k <= p:
        return 0.0
    if method == "DL":
        P0, _ = _projection(v, 0.0, X)
        q = float(y @ P0 @ y)
        return max(0.0, (q - (k - p)) / float(np.trace(P0)))
    hat_ols = X @ np.linalg.pinv(X)
    P_ols = np.eye(k) - hat_ols
    rss_ols = float(y @ P_ols @ y)
    if method == "HE":
        return max(0.0, (rss_ols - float(np.trace(P_ols * v[None, :]))) / (k - p))
    if method == "SJ":
        tau2_0 = rss_ols / k
        if tau2_0 <= 0:
            return 0.0
        return tau2_0 * _residual_q(y, v, tau2_0, X) / (k - p)
    start = max(0.0, rss_ols / (k - p) - float(np.mean(v))) + 1.0
    if method == "PM":
        return _solve_tau2(lambda t: _residual_q(y, v, t, X) - (k - p), start)

    def score(t):
        P, w = _projection(v, t, X)
        Py = P @ y
        trace = float(np.trace(P)) if method == "REML" else float(np.sum(w))
        return float(Py @ Py) - trace

    return _solve_tau2(score, start)


# --------------------------------------------------------------------------------------------
# One meta-analysis


@dataclass
class PooledEstimate:
    """A random-effects summary, on the transformed scale and back-transformed.

    ``b``/``se``: summary and its standard error (transformed scale; Knapp–Hartung scaled when
    ``test == "knha"``); ``ci``/``pi``: confidence and prediction intervals (transformed);
    ``pooled``, ``ci_prop``, ``pi_prop``: back-transformed to proportions; ``tau2``, ``I2``
    (percent), ``H2``, ``Q`` (Cochran's, df ``k − 1``) and its p-value; ``tau2_ci``/``I2_ci``: the
    Q-profile interval (NaN when not computed).
    """

    k: int
    transform: str
    method: str
    test: str
    b: float
    se: float
    tau2: float
    I2: float
    H2: float
    Q: float
    Q_df: int
    Q_p: float
    ci: tuple[float, float]
    pi: tuple[float, float]
    pooled: float
    ci_prop: tuple[float, float]
    pi_prop: tuple[float, float]
    tau2_ci: tuple[float, float] = (math.nan, math.nan)
    I2_ci: tuple[float, float] = (math.nan, math.nan)
    n_total: int = 0
    weights: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["weights"] = list(map(float, self.weights))
        return out


def typical_variance(v, X=None) -> float:
    """Higgins & Thompson's (2002) typical within-study variance ``s² = (k − p) / tr(P₀)``."""
    v = np.asarray(v, dtype=float)
    X = _design(v.size, X)
    P0, _ = _projection(v, 0.0, X)
    return (v.size - X.shape[1]) / float(np.trace(P0))


def q_profile_tau2(y, v, level: float = 0.95, X=None) -> tuple[float, float]:
    """Q-profile confidence interval of τ² (Viechtbauer 2007).

    The bounds solve ``Y'P(τ²)Y = χ²_{k−p}`` at the upper and lower ``(1 − level)/2`` quantiles;
    a bound is 0 when the generalised Q at τ² = 0 is already below its quantile (metafor's
    ``confint.rma.uni``).
    """
    y = np.asarray(y, dtype=float)
    v = np.asarray(v, dtype=float)
    X = _design(y.size, X)
    df = y.size - X.shape[1]
    alpha = 1 - level
    upper_q, lower_q = special.chdtri(df, alpha / 2), special.chdtri(df, 1 - alpha / 2)
    start = max(1.0, float(np.var(y)) * 4)
    low = _solve_tau2(lambda t: _residual_q(y, v, t, X) - upper_q, start)
    high = _solve_tau2(lambda t: _residual_q(y, v, t, X) - lower_q, start)
    return low, high


def pool(events=None, n=None, *, y=None, v=None, transform: str = "logit", method: str = "REML",
         test: str = "z", pi_df: str = "auto", level: float = 0.95,
         q_profile: bool = True, tau2: float | None = None) -> PooledEstimate:
    """Random-effects pooling of single proportions (metafor's ``rma.uni`` + ``predict``).

    Parameters
    ----------
    events, n : array-like
        Events and sample sizes of the studies (transformed with :func:`transform_proportions`);
        or give ``y`` and ``v`` directly (then ``n`` is only used for the Freeman–Tukey
        back-transform).
    transform : {"logit", "freeman_tukey", "raw"}
    method : {"REML", "DL", "PM", "ML", "HE", "SJ", "EE"}
        Estimator of τ² (:func:`tau2_estimate`).
    test : {"z", "knha"}
        ``z``: Wald, ``se = (Σ wᵢ)^{-1/2}``, ``wᵢ = 1/(vᵢ + τ²)``, normal quantiles.
        ``knha``: Knapp & Hartung (2003), ``se² = Σ wᵢ (yᵢ − μ̂)² / ((k − 1) Σ wᵢ)``, t with
        k − 1 df (not truncated at 1, as metafor's default).
    pi_df : {"auto", "z", "k-1", "k-2"}
        Quantile of the prediction interval ``μ̂ ± c √(se² + τ²)``: ``auto`` follows metafor
        (z under ``test="z"``, t(k − 1) under ``knha``); ``k-2`` is Higgins et al. (2009).
        For ``EE`` there is no prediction interval (NaN).
    q_profile : bool
        Compute the Q-profile interval of τ² and of I² (:func:`q_profile_tau2`).
    tau2 : float, optional
        Fix τ² instead of estimating it (metafor's ``rma(..., tau2 = )``); ``method`` then only
        labels the fit.

    Notes
    -----
    I² is metafor's ``100 τ² / (τ² + s²)`` (s² from :func:`typical_variance`), which equals
    ``(Q − df)/Q`` only for DL; for EE it is ``max(0, (Q − df)/Q)``. ``H² = 1/(1 − I²)``.
    """
    if y is None:
        if events is None or n is None:
            raise EvidenceError("pool: give events and n, or y and v")
        y, v = transform_proportions(events, n, transform)
    y = np.asarray(y, dtype=float)
    v = np.asarray(v, dtype=float)
    k = y.size
    if k < 1:
        raise EvidenceError("pool: no studies to pool")
    if test not in ("z", "knha"):
        raise EvidenceError(f"test '{test}' unknown; use 'z' or 'knha'")
    tau2 = tau2_estimate(y, v, method) if tau2 is None else float(tau2)
    w = 1.0 / (v + tau2)
    b = float(np.sum(w * y) / np.sum(w))
    se = float(math.sqrt(1.0 / np.sum(w)))
    w0 = 1.0 / v
    b0 = np.sum(w0 * y) / np.sum(w0)
    q = float(np.sum(w0 * (y - b0) ** 2))
    df = k - 1
    q_p = float(special.chdtrc(df, q)) if df > 0 else math.nan
    if df > 0:
        s2 = typical_variance(v)
        if method == "EE":
            i2 = max(0.0, 100 * (q - df) / q) if q > 0 else 0.0
            h2 = q / df
        else:
            i2 = 100 * tau2 / (tau2 + s2)
            h2 = (tau2 + s2) / s2
    else:
        s2, i2, h2 = math.nan, math.nan, math.nan
    alpha = 1 - level
    if test == "knha":
        if k < 2:
            raise EvidenceError("test='knha' needs at least 2 studies")
        se = float(math.sqrt(np.sum(w * (y - b) ** 2) / df / np.sum(w)))
        crit = special.stdtrit(df, 1 - alpha / 2)
    else:
        crit = special.ndtri(1 - alpha / 2)
    ci = (b - crit * se, b + crit * se)
    if pi_df == "auto":
        pi_df = "k-1" if test == "knha" else "z"
    if method == "EE":
        pi = (math.nan, math.nan)
    else:
        if pi_df == "z":
            pcrit = special.ndtri(1 - alpha / 2)
        elif pi_df in ("k-1", "k-2"):
            dfp = k - 1 if pi_df == "k-1" else k - 2
            pcrit = special.stdtrit(dfp, 1 - alpha / 2) if dfp > 0 else math.nan
        else:
            raise EvidenceError(f"pi_df '{pi_df}' unknown; use auto, z, k-1 or k-2")
        half = pcrit * math.sqrt(se ** 2 + tau2)
        pi = (b - half, b + half)
    tau2_ci = i2_ci = (math.nan, math.nan)
    if q_profile and df > 0 and method != "EE":
        tau2_ci = q_profile_tau2(y, v, level)
        i2_ci = tuple(100 * t / (t + s2) for t in tau2_ci)
    sizes = None if n is None else np.asarray(n, dtype=float)
    back = (lambda t: float(back_transform(np.asarray([t]), transform, sizes)[0])) \
        if not (transform == "freeman_tukey" and sizes is None) else (lambda t: math.nan)
    return PooledEstimate(
        k=k, transform=transform, method=method, test=test, b=b, se=se, tau2=tau2, I2=i2, H2=h2,
        Q=q, Q_df=df, Q_p=q_p, ci=ci, pi=pi, pooled=back(b), ci_prop=(back(ci[0]), back(ci[1])),
        pi_prop=(back(pi[0]), back(pi[1])) if not math.isnan(pi[0]) else (math.nan, math.nan),
        tau2_ci=tau2_ci, I2_ci=i2_ci, n_total=int(np.sum(sizes)) if sizes is not None else 0,
        weights=w / np.sum(w),
    )


# --------------------------------------------------------------------------------------------
# Binomial-normal GLMM (exact within-study likelihood)


@dataclass
class GLMMFit:
    """Random-intercept logistic model of single proportions, fitted by maximum likelihood.

    ``b``/``se``: the mean logit and its standard error; ``tau2``: the between-study variance of
    the logits; ``pooled``/``ci_prop``: back-transformed (Wald z interval); ``loglik``: the
    maximised log-likelihood (adaptive Gauss–Hermite with ``nodes`` points).
    """

    k: int
    b: float
    se: float
    tau2: float
    pooled: float
    ci_prop: tuple[float, float]
    loglik: float
    nodes: int


def _glmm_loglik(beta: float, tau: float, x, n, log_binom, z, w) -> float:
    """log L of ``x_i ~ Bin(n_i, expit(β + u_i))``, ``u_i ~ N(0, τ²)``, each study's integral by
    adaptive Gauss–Hermite quadrature centred at the conditional mode of ``u_i`` and scaled by
    the curvature there (Pinheiro & Bates 1995; lme4's ``nAGQ``)."""
    u = np.zeros_like(x)
    for _ in range(100):  # Newton steps for the conditional modes (concave in u)
        p = special.expit(beta + u)
        step = (x - n * p - u / tau ** 2) / (n * p * (1 - p) + 1 / tau ** 2)
        u = u + step
        if np.max(np.abs(step)) < 1e-12:
            break
    p = special.expit(beta + u)
    scale = 1 / np.sqrt(n * p * (1 - p) + 1 / tau ** 2)
    points = u[:, None] + math.sqrt(2) * scale[:, None] * z[None, :]
    eta = beta + points
    log_f = (log_binom[:, None] + x[:, None] * eta - n[:, None] * np.logaddexp(0, eta)
             - 0.5 * points ** 2 / tau ** 2 - 0.5 * math.log(2 * math.pi * tau ** 2))
    terms = log_f + z[None, :] ** 2 + np.log(w)[None, :]
    return float(np.sum(special.logsumexp(terms, axis=1) + np.log(math.sqrt(2) * scale)))


def pool_glmm(events, n, nodes: int = 7, level: float = 0.95) -> GLMMFit:
    """The binomial-normal model (Hamza et al. 2008; Stijnen et al. 2010), metafor's
    ``rma.glmm(measure="PLO")``: ``x_i ~ Binomial(n_i, expit(β + u_i))``, ``u_i ~ N(0, τ²)``.

    Maximum likelihood with adaptive Gauss–Hermite quadrature (``nodes`` = 7 as metafor's
    default ``nAGQ``; 1 is the Laplace approximation); BFGS on (β, log τ). The standard error of
    β is from the numerical Hessian of −log L in (β, τ), inverted (as lme4's ``vcov`` with
    ``use.hessian = TRUE``). No continuity correction is needed: zero cells enter the exact
    binomial likelihood. Needs at least 2 studies; τ² near 0 is reported as found (no boundary
    test).
    """
    x = np.asarray(events, dtype=float)
    n = np.asarray(n, dtype=float)
    transform_proportions(x, n)  # the same input checks
    if x.size < 2:
        raise EvidenceError("pool_glmm: needs at least 2 studies")
    log_binom = special.gammaln(n + 1) - special.gammaln(x + 1) - special.gammaln(n - x + 1)
    z, w = np.polynomial.hermite.hermgauss(nodes)
    start = pool(x, n, method="DL", q_profile=False)

    def objective(theta):
        return -_glmm_loglik(theta[0], math.exp(theta[1]), x, n, log_binom, z, w)

    tau0 = math.sqrt(max(start.tau2, 0.01))
    fit = optimize.minimize(objective, [start.b, math.log(tau0)], method="BFGS", options={"gtol": 1e-9})
    beta, tau = float(fit.x[0]), float(math.exp(fit.x[1]))

    def deviance(v):
        return -_glmm_loglik(v[0], v[1], x, n, log_binom, z, w)

    h = 1e-4 * np.array([max(1.0, abs(beta)), max(tau, 1e-3)])
    hessian = np.zeros((2, 2))
    centre = np.array([beta, tau])
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h[i], np.eye(2)[j] * h[j]
            hessian[i, j] = (deviance(centre + ei + ej) - deviance(centre + ei - ej)
                             - deviance(centre - ei + ej) + deviance(centre - ei - ej)) / (4 * h[i] * h[j])
    se = float(math.sqrt(np.linalg.inv(hessian)[0, 0]))
    crit = special.ndtri(1 - (1 - level) / 2)
    return GLMMFit(k=x.size, b=beta, se=se, tau2=tau ** 2, pooled=float(special.expit(beta)),
                   ci_prop=(float(special.expit(beta - crit * se)), float(special.expit(beta + crit * se))),
                   loglik=-float(fit.fun), nodes=nodes)


# --------------------------------------------------------------------------------------------
# Meta-regression on one categorical moderator, subgroups, leave-one-out


@dataclass
class ModeratorTest:
    """Wald test of a categorical moderator in a meta-regression with a common τ².

    ``QM`` ~ χ²(``df``) under no difference; ``tau2`` is the residual τ²; ``R2`` the pseudo-R²
    ``100 max(0, (τ²_RE − τ²_ME)/τ²_RE)`` (Raudenbush 2009, metafor's ``R2``); ``coefficients``
    the intercept (first level) and the differences of the other levels.
    """

    QM: float
    df: int
    QM_p: float
    tau2: float
    R2: float
    coefficients: dict


def moderator_test(y, v, levels, method: str = "REML") -> ModeratorTest:
    """Meta-regression ``y ~ level`` with a common τ² (metafor ``rma(yi, vi, mods = ~ factor)``).

    The design has an intercept for the first level (sorted) and a dummy per other level;
    ``QM = b₂'(X'WX)⁻¹₂₂⁻¹ b₂`` over the dummies, with W at the residual τ² (Wald, z).
    """
    y = np.asarray(y, dtype=float)
    v = np.asarray(v, dtype=float)
    levels = pd.Series(levels).astype(str).to_numpy()
    names = sorted(set(levels))
    if len(names) < 2:
        raise EvidenceError("moderator: needs at least two levels with studies")
    X = np.column_stack([np.ones(y.size)] + [(levels == name).astype(float) for name in names[1:]])
    tau2 = tau2_estimate(y, v, method, X)
    w = 1.0 / (v + tau2)
    cov = np.linalg.inv(X.T @ (X * w[:, None]))
    beta = cov @ (X.T @ (w * y))
    sub = beta[1:]
    qm = float(sub @ np.linalg.solve(cov[1:, 1:], sub))
    df = len(names) - 1
    tau2_all = tau2_estimate(y, v, method)
    r2 = 100 * max(0.0, (tau2_all - tau2) / tau2_all) if tau2_all > 0 else 0.0
    coefficients = {"intercept": float(beta[0])} | {n: float(b) for n, b in zip(names[1:], sub)}
    return ModeratorTest(QM=qm, df=df, QM_p=float(stats.chi2.sf(qm, df)), tau2=tau2, R2=r2,
                         coefficients=coefficients)


@dataclass
class SubgroupAnalysis:
    """Subgroup summaries with a separate τ² each, the test between them, and the moderator test."""

    overall: PooledEstimate
    subgroups: dict[str, PooledEstimate]
    Q_between: float
    Q_between_df: int
    Q_between_p: float
    moderator: ModeratorTest | None


def subgroups(events, n, levels, *, transform: str = "logit", method: str = "REML",
              test: str = "z", level: float = 0.95) -> SubgroupAnalysis:
    """Subgroup analysis by a study characteristic (population group, sampling, ...).

    Each subgroup is pooled with its own τ² (:func:`pool`); the test of subgroup differences is
    ``Q_between = Σ_g (b_g − b̄)² / se_g²`` with ``b̄`` the inverse-variance mean of the subgroup
    summaries, χ² with G − 1 df (Borenstein et al. 2009, ch. 19, "separate τ²"; metafor
    ``rma(b_g, sei = se_g, method = "FE")``). The moderator test with a common τ² is
    :func:`moderator_test` (omitted when a subgroup has a single study).
    """
    y, v = transform_proportions(events, n, transform)
    sizes = np.asarray(n, dtype=float)
    levels = pd.Series(levels).astype(str).to_numpy()
    overall = pool(y=y, v=v, n=sizes, transform=transform, method=method, test=test, level=level,
                   q_profile=False)
    fits = {}
    for name in sorted(set(levels)):
        mask = levels == name
        fits[name] = pool(y=y[mask], v=v[mask], n=sizes[mask], transform=transform, method=method,
                          test=test, level=level, q_profile=False)
    b = np.array([f.b for f in fits.values()])
    se = np.array([f.se for f in fits.values()])
    w = 1.0 / se ** 2
    q_b = float(np.sum(w * (b - np.sum(w * b) / np.sum(w)) ** 2))
    df = len(fits) - 1
    moderator = moderator_test(y, v, levels, method) if df > 0 else None
    return SubgroupAnalysis(overall=overall, subgroups=fits, Q_between=q_b, Q_between_df=df,
                            Q_between_p=float(stats.chi2.sf(q_b, df)) if df > 0 else math.nan,
                            moderator=moderator)


def leave_one_out(events, n, labels=None, *, transform: str = "logit", method: str = "REML",
                  test: str = "z") -> pd.DataFrame:
    """The pooled proportion with each study left out in turn (metafor's ``leave1out``).

    One row per study left out: ``omitted`` (its label), ``pooled``, ``ci_low``, ``ci_high``
    (proportions), ``tau2``, ``I2``, ``Q``.
    """
    events = np.asarray(events, dtype=float)
    n = np.asarray(n, dtype=float)
    labels = list(range(1, events.size + 1)) if labels is None else list(labels)
    rows = []
    for i in range(events.size):
        keep = np.arange(events.size) != i
        fit = pool(events[keep], n[keep], transform=transform, method=method, test=test,
                   q_profile=False)
        rows.append({"omitted": labels[i], "pooled": fit.pooled, "ci_low": fit.ci_prop[0],
                     "ci_high": fit.ci_prop[1], "tau2": fit.tau2, "I2": fit.I2, "Q": fit.Q})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Many meta-analyses at once


def pool_many(frame: pd.DataFrame, by, *, events: str = "events", n: str = "n",
              transform: str = "logit", level: float = 0.95) -> pd.DataFrame:
    """DerSimonian–Laird random-effects pooling of every group of ``frame`` at once.

    Vectorised over groups with ``numpy`` sums (no Python loop per meta-analysis), the same
    formulas as :func:`pool` with ``method="DL", test="z"``. Returns one row per group: the keys,
    ``k``, ``n_total``, ``b``, ``se``, ``tau2``, ``I2``, ``Q``, ``pooled``, ``ci_low``,
    ``ci_high``, ``pi_low``, ``pi_high`` (proportions; z prediction interval).
    """
    by = [by] if isinstance(by, str) else list(by)
    y, v = transform_proportions(frame[events].to_numpy(float), frame[n].to_numpy(float), transform)
    codes, keys = pd.MultiIndex.from_frame(frame[by]).factorize()
    g = codes.size and codes.max() + 1

    def total(values):
        return np.bincount(codes, weights=values, minlength=g)

    w = 1.0 / v
    k = np.bincount(codes, minlength=g).astype(float)
    sw, sw2, swy, swy2 = total(w), total(w * w), total(w * y), total(w * y * y)
    q = swy2 - swy ** 2 / sw
    c = sw - sw2 / sw
    with np.errstate(invalid="ignore", divide="ignore"):
        tau2 = np.where(k > 1, np.maximum(0.0, (q - (k - 1)) / c), 0.0)
        s2 = (k - 1) / c
        i2 = np.where(k > 1, 100 * tau2 / (tau2 + s2), np.nan)
    ws = 1.0 / (v + tau2[codes])
    sws = total(ws)
    b = total(ws * y) / sws
    se = np.sqrt(1.0 / sws)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    half_pi = z * np.sqrt(se ** 2 + tau2)
    n_values = frame[n].to_numpy(float)
    if transform == "freeman_tukey":
        n_h = k / total(1.0 / n_values)
        back = np.vectorize(lambda t, nh: float(back_transform([t], transform, [nh])[0]))

        def to_prop(t):
            return back(t, n_h)
    else:
        def to_prop(t):
            return back_transform(t, transform)
    out = keys.to_frame(index=False)
    out.columns = by
    out["k"] = k.astype(int)
    out["n_total"] = total(n_values).astype(int)
    out["b"], out["se"], out["tau2"], out["I2"], out["Q"] = b, se, tau2, i2, q
    out["pooled"] = to_prop(b)
    out["ci_low"], out["ci_high"] = to_prop(b - z * se), to_prop(b + z * se)
    out["pi_low"], out["pi_high"] = to_prop(b - half_pi), to_prop(b + half_pi)
    return out


# --------------------------------------------------------------------------------------------
# Labels


#: Sections every evidence label catalogue must have.
LABEL_SECTIONS = ("sampling", "mode", "group_definition", "risk_of_bias", "item_rating", "hoy_items",
                  "template_guide", "columns", "method", "agreement", "figures", "chapter")


def load_labels(path=None) -> dict:
    """The evidence label catalogue, checked for every section.

    ``params/evidence.yml`` (English), or ``params/evidence.<lang>.yml`` when the report language
    (``ANALYSIS_LANG``, :func:`analysis.text.language`) is another and that translation exists,
    else the translated copy of the run's catalogue folder (:func:`analysis.config.catalogue_file`:
    ``params/i18n/<lang>.yml``'s ``evidence.*`` strings).
    """
    from analysis import config
    from analysis.text import language

    if path is None:
        translated = config.PARAMS_DIR / f"evidence.{language()}.yml"
        path = translated if language() != "en" and translated.exists() else config.catalogue_file("evidence.yml")
    data = config.read_yaml_mapping(path, EvidenceError, "evidence label catalogue")
    missing = [s for s in LABEL_SECTIONS if not isinstance(data.get(s), dict)]
    if missing:
        raise EvidenceError(f"{path}: section '{missing[0]}' is missing (sections: {', '.join(LABEL_SECTIONS)})")
    return data


# --------------------------------------------------------------------------------------------
# Evidence and gap map, quality appraisal


#: Order of the overall risk-of-bias ratings, best first ("none": not appraised).
RISK_ORDER = ("low", "moderate", "high", "none")


def best_quality(ratings) -> str:
    """The best (lowest) risk of bias among ``ratings`` (NA counts as ``none``)."""
    present = {str(r) if isinstance(r, str) and r else "none" for r in ratings}
    return next((r for r in RISK_ORDER if r in present), "none")


def _study_level(studies: pd.DataFrame, indicators: dict) -> pd.DataFrame:
    """Per study × indicator × group × country: theme, the study's largest n, sampling, rating."""
    frame = studies.copy()
    frame["theme"] = frame["indicator"].map(lambda i: indicators[i].theme if i in indicators else pd.NA)
    frame["risk_of_bias"] = frame["risk_of_bias"].fillna("none").astype(str)
    return frame


def evidence_gap_map(studies: pd.DataFrame, indicators: dict, groups, countries, *,
                     themes=None, sampling=None, risk_of_bias=None) -> pd.DataFrame:
    """The evidence and gap map: every theme × group × country, with the evidence in each.

    Parameters
    ----------
    studies : DataFrame
        The processed study estimates (:data:`analysis.sources.studies.PROCESSED_COLUMNS`).
    indicators : dict
        The indicator catalogue (id → :class:`analysis.schema.Indicator`), which gives each
        indicator its theme.
    groups, countries : sequence
        The rows and columns of the map: every combination is present, empty ones included, so
        that gaps show (Campbell evidence-and-gap maps; Snilstveit et al. 2016).
    themes : sequence, optional
        Theme ids in display order (default: the order the catalogue's indicators give).
    sampling, risk_of_bias : sequence, optional
        Keep only studies with these sampling types / overall ratings (the workbook's filters).

    Returns
    -------
    DataFrame
        ``theme, group, country, studies, participants, estimates, study_ids, best_quality``:
        number of distinct studies, participants (for each study its largest n in the cell,
        summed), published estimates, the studies' ids (``"; "``-joined, sorted) and the best
        overall risk of bias among them (:data:`RISK_ORDER`; ``none`` for an empty cell).
    """
    if themes is None:
        themes = list(dict.fromkeys(spec.theme for spec in indicators.values()))
    frame = _study_level(studies, indicators)
    if sampling is not None:
        frame = frame[frame["sampling"].isin(list(sampling))]
    if risk_of_bias is not None:
        frame = frame[frame["risk_of_bias"].isin(list(risk_of_bias))]
    per_study = (frame.groupby(["theme", "group", "country", "study_id"], observed=True, dropna=True)
                 .agg(n=("n", "max"), estimates=("n", "size"), risk=("risk_of_bias", "first"))
                 .reset_index())
    cells = (per_study.groupby(["theme", "group", "country"], observed=True)
             .agg(studies=("study_id", "nunique"), participants=("n", "sum"),
                  estimates=("estimates", "sum"),
                  study_ids=("study_id", lambda s: "; ".join(sorted(map(str, s)))),
                  best_quality=("risk", best_quality)))
    grid = pd.MultiIndex.from_product([list(themes), list(groups), list(countries)],
                                      names=["theme", "group", "country"])
    out = cells.reindex(grid).reset_index()
    out["studies"] = out["studies"].fillna(0).astype(int)
    out["participants"] = out["participants"].fillna(0).astype(int)
    out["estimates"] = out["estimates"].fillna(0).astype(int)
    out["study_ids"] = out["study_ids"].fillna("")
    out["best_quality"] = out["best_quality"].fillna("none")
    return out


def map_by_study(studies: pd.DataFrame, indicators: dict) -> pd.DataFrame:
    """The map's long form: one row per theme × group × country × study, with sampling and rating
    (the sheet users filter in the workbook)."""
    frame = _study_level(studies, indicators)
    return (frame.groupby(["theme", "group", "country", "study_id"], observed=True)
            .agg(partner=("partner", "first"), year=("year", "first"), sampling=("sampling", "first"),
                 mode=("mode", "first"), risk_of_bias=("risk_of_bias", "first"), n=("n", "max"),
                 indicators=("indicator", lambda s: "; ".join(sorted(set(map(str, s))))))
            .reset_index())


def quality_table(studies: pd.DataFrame) -> pd.DataFrame:
    """One row per study: ``study_id, partner, year, sampling, hoy_1 … hoy_10, risk_of_bias``."""
    items = [f"hoy_{i}" for i in range(1, 11)]
    columns = ["study_id", "partner", "year", "sampling", *items, "risk_of_bias"]
    out = studies.drop_duplicates("study_id")[columns].sort_values("study_id").reset_index(drop=True)
    out["risk_of_bias"] = out["risk_of_bias"].fillna("none")
    return out


# --------------------------------------------------------------------------------------------
# Pooled estimates in the one result schema


#: Breakdown and cell of a pooled estimate: the group's own cell, as the group profile has it,
#: so that pooled and design-based estimates of a group line up in all_estimates.csv.
POOLED_BREAKDOWN, POOLED_CELL = "comparison", "group"
#: Breakdown of the study-level rows (cell = study id).
STUDY_BREAKDOWN = "study"
#: Fewer studies than this: the pooled estimate is flagged caution.
CAUTION_BELOW_STUDIES = 3


def _se_on_proportion(b: float, se: float, transform: str, n_h: float | None = None) -> float:
    """Delta-method standard error of the back-transformed summary (for the result schema;
    the interval is the back-transformed one, not ± 1.96 se)."""
    if transform == "logit":
        p = 1 / (1 + math.exp(-b))
        return se * p * (1 - p)
    if transform == "raw":
        return se
    step = 1e-6
    up = back_transform([b + step], transform, [n_h])[0]
    down = back_transform([b - step], transform, [n_h])[0]
    return se * abs(up - down) / (2 * step)


def pool_evidence(studies: pd.DataFrame, *, method: str = "REML", test: str = "knha",
                  transform: str = "logit", min_studies: int = 2, labels: dict | None = None,
                  level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pool every indicator × group × country with at least ``min_studies`` studies.

    Returns
    -------
    results : DataFrame
        The one result schema: ``source`` the study source, breakdown/cell
        :data:`POOLED_BREAKDOWN`/:data:`POOLED_CELL`, estimate and interval back-transformed,
        ``se`` by the delta method, ``n_unweighted`` the participants pooled, ``flag`` caution
        under :data:`CAUTION_BELOW_STUDIES` studies, and ``method`` saying it is a random-effects
        meta-analysis (estimator, transform, interval, k; "convenience samples only" when so).
    details : DataFrame
        Keys plus ``k, n_total, pooled, ci_low, ci_high, tau2, I2, I2_ci_low, I2_ci_high,
        tau2_ci_low, tau2_ci_high`` (Q-profile), ``Q, Q_p, pi_low, pi_high, best_quality,
        convenience_only, study_ids`` for the chapter's tables and narrative.
    """
    labels = labels or load_labels()
    words = labels["method"]
    rows, details = [], []
    keys = ["source", "indicator", "group", "country"]
    for (source, indicator, group, country), part in studies.groupby(keys, observed=True, sort=True):
        k = part["study_id"].nunique()
        if k < min_studies:
            continue
        fit = pool(part["events"].to_numpy(float), part["n"].to_numpy(float), transform=transform,
                   method=method, test=test if k > 1 else "z", level=level)
        convenience = bool((part["sampling"] == "convenience").all())
        text = words["pooled"].format(estimator=method, transform=words[f"transform_{transform}"],
                                      test=words[f"test_{fit.test}"], k=k)
        if convenience:
            text += "; " + words["convenience_only"]
        n_h = stats.hmean(part["n"].to_numpy(float))
        rows.append({"source": source, "country": country, "group": group, "indicator": indicator,
                     "breakdown": POOLED_BREAKDOWN, "cell": POOLED_CELL, "estimate": fit.pooled,
                     "se": _se_on_proportion(fit.b, fit.se, transform, n_h),
                     "ci_low": fit.ci_prop[0], "ci_high": fit.ci_prop[1],
                     "n_unweighted": int(part["n"].sum()), "n_weighted": np.nan,
                     "flag": "caution" if k < CAUTION_BELOW_STUDIES else "ok", "method": text})
        details.append({"source": source, "indicator": indicator, "group": group, "country": country,
                        "k": k, "n_total": int(part["n"].sum()), "pooled": fit.pooled,
                        "ci_low": fit.ci_prop[0], "ci_high": fit.ci_prop[1], "tau2": fit.tau2,
                        "I2": fit.I2, "I2_ci_low": fit.I2_ci[0], "I2_ci_high": fit.I2_ci[1],
                        "tau2_ci_low": fit.tau2_ci[0], "tau2_ci_high": fit.tau2_ci[1],
                        "Q": fit.Q, "Q_p": fit.Q_p, "pi_low": fit.pi_prop[0],
                        "pi_high": fit.pi_prop[1], "best_quality": best_quality(part["risk_of_bias"]),
                        "convenience_only": convenience,
                        "study_ids": "; ".join(sorted(map(str, part["study_id"].unique())))})
    return pd.DataFrame(rows), pd.DataFrame(details)


def study_rows(studies: pd.DataFrame, *, transform: str = "logit", level: float = 0.95) -> pd.DataFrame:
    """Every published estimate as a result-schema row (breakdown :data:`STUDY_BREAKDOWN`, cell the
    study id), with the interval the pooling uses: ``y ± z √v`` on the transformed scale,
    back-transformed (as metafor's forest plot draws it; for Freeman–Tukey with the study's n)."""
    y, v = transform_proportions(studies["events"].to_numpy(float), studies["n"].to_numpy(float), transform)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    n = studies["n"].to_numpy(float)
    if transform == "freeman_tukey":
        low = np.array([back_transform([a], transform, [m])[0] for a, m in zip(y - z * np.sqrt(v), n)])
        high = np.array([back_transform([a], transform, [m])[0] for a, m in zip(y + z * np.sqrt(v), n)])
    else:
        low, high = back_transform(y - z * np.sqrt(v), transform), back_transform(y + z * np.sqrt(v), transform)
    p = studies["events"].to_numpy(float) / n
    return pd.DataFrame({
        "source": studies["source"].to_numpy(), "country": studies["country"].to_numpy(),
        "group": studies["group"].to_numpy(), "indicator": studies["indicator"].to_numpy(),
        "breakdown": STUDY_BREAKDOWN, "cell": studies["study_id"].to_numpy(),
        "estimate": p, "se": np.sqrt(p * (1 - p) / n), "ci_low": low, "ci_high": high,
        "n_unweighted": studies["n"].to_numpy(), "n_weighted": np.nan, "flag": "ok",
        "method": "published estimate (" + studies["estimate_form"].astype(str).to_numpy() + " of n)",
    })


def compare_with_survey(pooled: pd.DataFrame, survey: pd.DataFrame, labels: dict | None = None) -> pd.DataFrame:
    """Pooled study evidence next to design-based survey estimates of the same cell.

    ``survey`` holds result-schema rows of the group's own cell (breakdown ``comparison``, cell
    ``group``) from microdata sources. One row per pooled estimate × survey source with both
    estimates and intervals and ``agreement``: ``disagree`` when the two 95% intervals do not
    overlap (a conservative check: non-overlap implies a significant difference, not the
    reverse; Schenker & Gentleman 2001), ``agree`` otherwise, ``no_survey`` without a survey
    estimate (or a suppressed one).
    """
    keys = ["indicator", "group", "country"]
    survey = survey[(survey["breakdown"] == POOLED_BREAKDOWN) & (survey["cell"] == POOLED_CELL)
                    & (survey["flag"] != "suppressed")]
    survey = survey[keys + ["source", "estimate", "ci_low", "ci_high", "flag"]].rename(columns={
        "source": "survey_source", "estimate": "survey_estimate", "ci_low": "survey_ci_low",
        "ci_high": "survey_ci_high", "flag": "survey_flag"})
    base = pooled[keys + ["source", "estimate", "ci_low", "ci_high", "flag"]]
    out = base.merge(survey, on=keys, how="left")
    disjoint = (out["ci_high"] < out["survey_ci_low"]) | (out["survey_ci_high"] < out["ci_low"])
    out["agreement"] = np.where(out["survey_estimate"].isna(), "no_survey",
                                np.where(disjoint, "disagree", "agree"))
    return out.reset_index(drop=True)
