"""Benchmark: agreement between coders and theme shares, ours against krippendorff and statsmodels.

Workload (issue 15): 100,000 coded responses × 40 codes × 3 coders (each response has one to three
true codes; each coder misses a true code with probability 0.10 and adds a false one with
probability 0.005 per code; 5% of responses are coded by two coders only), and a survey of the
100,000 respondents (40 strata, 800 PSUs, unequal weights).

- **agreement, point estimates**: for every code, Krippendorff's alpha (nominal, apply / not
  apply) and Fleiss' kappa (responses coded by all three), and percent agreement — ours
  (:func:`analysis.voices.agreement.agreement_table`, ``replicates=0``, without the overall MASI
  row) against the ``krippendorff`` package (``krippendorff.alpha`` per code on the coders ×
  units matrix) plus ``statsmodels.stats.inter_rater.fleiss_kappa`` per code on the counts
  table (``aggregate_raters``);
- **agreement with intervals**: ours with a 1,000-replicate bootstrap over units for every code,
  plus the overall MASI-distance alpha with 200 replicates; the peers have no bootstrap, so
  their cost is that of one point estimate times the replicates (measured on 3 replicates of one
  code, extrapolated, and said so);
- **theme shares**: consensus (majority of coders), respondent-level theme indicators for the 8
  themes and design-based shares by sex × disability with margins, suppressed (ours only: no
  peer computes design-based shares of coded themes).

The largest absolute difference between our per-code statistics and the peers' is printed; they
must agree to 1e-9. A peer that is not installed is skipped with the reason. Usage::

    python bench/bench_voices.py [--responses 100000] [--codes 40] [--coders 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

THEMES = [f"theme_{i}" for i in range(8)]


def make_codings(responses: int, codes: int, coders: int, seed: int = 15) -> pd.DataFrame:
    """The long table of codings: response_id, coder, code (one row per application)."""
    rng = np.random.default_rng(seed)
    popularity = rng.dirichlet(np.full(codes, 0.6))
    k = rng.integers(1, 4, responses)
    true = np.zeros((responses, codes), dtype=bool)
    for size in (1, 2, 3):
        rows = np.flatnonzero(k == size)
        for _ in range(size):
            true[rows, rng.choice(codes, size=len(rows), p=popularity)] = True
    parts = []
    skip_last = rng.random(responses) < 0.05
    for coder in range(coders):
        u = rng.random((responses, codes))
        applied = np.where(true, u >= 0.10, u < 0.005)
        if coder == coders - 1:
            applied[skip_last] = False
        empty = ~applied.any(axis=1)
        if coder == coders - 1:
            empty &= ~skip_last
        r, c = np.nonzero(applied)
        part = pd.DataFrame({"response_id": r, "coder": f"coder{coder}", "code": pd.Categorical.from_codes(
            c, [f"code_{j:02d}" for j in range(codes)]).astype(str)})
        none = pd.DataFrame({"response_id": np.flatnonzero(empty), "coder": f"coder{coder}", "code": "no_theme"})
        parts += [part, none]
    return pd.concat(parts, ignore_index=True)


def make_survey(responses: int, seed: int = 16) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    psu = np.sort(rng.integers(0, 800, responses))
    frame = pd.DataFrame({
        "respondent_id": np.arange(responses),
        "stratum": psu // 20, "psu": psu, "weight": rng.uniform(50, 500, 800)[psu] * rng.uniform(0.8, 1.25, responses),
        "sex": pd.Categorical(rng.choice(["female", "male"], responses)),
        "disability": pd.Categorical(rng.choice(["no", "yes"], responses, p=[0.85, 0.15])),
    })
    frame.attrs["design"] = {"sample_type": "probability", "weight": "weight", "strata": "stratum", "psu": "psu",
                             "single_psu": "adjust"}
    return frame


def codebook(codes: int):
    from analysis.voices.codebook import Code, Codebook

    entries = {f"code_{j:02d}": Code(label=f"Code {j}", theme=THEMES[j % len(THEMES)]) for j in range(codes)}
    entries["no_theme"] = Code(label="No theme", special="no_theme")
    return Codebook(id="bench", title="bench", codes=entries)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def reliability_matrices(coded: pd.DataFrame, codes: list[str], coders: int, responses: int) -> dict:
    """Coders × units 0/1 matrices per code (NaN: not coded), the peers' input; built once, not timed."""
    seen = np.full((coders, responses), np.nan)
    coder_index = coded["coder"].str.removeprefix("coder").astype(int).to_numpy()
    seen[coder_index, coded["response_id"].to_numpy()] = 0.0
    out = {}
    for code in codes:
        hit = coded["code"].to_numpy() == code
        matrix = seen.copy()
        matrix[coder_index[hit], coded["response_id"].to_numpy()[hit]] = 1.0
        out[code] = matrix
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=100_000)
    parser.add_argument("--codes", type=int, default=40)
    parser.add_argument("--coders", type=int, default=3)
    args, _ = parser.parse_known_args(argv)

    import analysis.survey  # noqa: F401  (imports are not part of the timings)
    from analysis.voices.agreement import agreement_table, overall_agreement
    from analysis.voices.themes import respondent_themes, theme_shares

    coded = make_codings(args.responses, args.codes, args.coders)
    codes = [f"code_{j:02d}" for j in range(args.codes)]
    print(f"workload: {args.responses:,} responses × {args.codes} codes × {args.coders} coders "
          f"({len(coded):,} codings)")

    ours, t_point = timed(agreement_table, coded, codes, replicates=0, overall=False)
    ours = ours.set_index("code")
    _, t_boot = timed(agreement_table, coded, codes, replicates=1000, overall=False)
    _, t_masi = timed(overall_agreement, coded, codes, replicates=200)
    book = codebook(args.codes)
    survey = make_survey(args.responses)

    def shares():
        themes = respondent_themes(coded, book)
        return theme_shares(survey, themes, by=["sex", "disability"], thresholds={"suppress_below": 25,
                                                                                "caution_below": 50})

    table, t_shares = timed(shares)
    print(f"ours: per-code alpha, Fleiss' kappa, percent agreement (point)   {t_point:7.2f} s")
    print(f"ours: the same with 1,000 bootstrap replicates per code        {t_boot:7.2f} s")
    print(f"ours: overall MASI alpha over every code, 200 replicates         {t_masi:7.2f} s")
    print(f"ours: theme shares, {len(THEMES)} themes × {table['cell'].nunique()} cells, design-based     {t_shares:7.2f} s")
    total = t_boot + t_masi + t_shares
    print(f"ours: agreement with intervals + theme shares                   {total:7.2f} s (issue target: < 10 s)")

    matrices = reliability_matrices(coded, codes, args.coders, args.responses)
    try:
        import krippendorff
    except ImportError as exc:
        print(f"krippendorff: skipped ({exc}; pip install -e '.[bench]')")
        krippendorff = None
    try:
        from statsmodels.stats.inter_rater import fleiss_kappa
    except ImportError as exc:
        print(f"statsmodels: skipped ({exc})")
        fleiss_kappa = None

    peer_time, differences = 0.0, {}
    if krippendorff is not None:
        def peer_alpha():
            return {c: krippendorff.alpha(reliability_data=matrices[c], level_of_measurement="nominal") for c in codes}

        alphas, t_k = timed(peer_alpha)
        peer_time += t_k
        differences["alpha vs krippendorff"] = max(abs(alphas[c] - ours.loc[c, "alpha"]) for c in codes)
        from importlib.metadata import version

        print(f"krippendorff {version('krippendorff')}: alpha per code (point)                 {t_k:7.2f} s")
        one = matrices[codes[0]]
        rng = np.random.default_rng(0)
        _, t_three = timed(lambda: [krippendorff.alpha(reliability_data=one[:, rng.integers(0, one.shape[1], one.shape[1])],
                                                       level_of_measurement="nominal") for _ in range(3)])
        peer_boot = t_three / 3 * 1000 * len(codes)
        print(f"krippendorff: 1,000 bootstrap replicates per code, extrapolated  {peer_boot:7.0f} s "
              f"(3 replicates of one code took {t_three:.2f} s)")
    if fleiss_kappa is not None:
        def peer_fleiss():
            out = {}
            for c in codes:
                full = matrices[c][:, ~np.isnan(matrices[c]).any(axis=0)]
                counts = np.stack([(full == 0).sum(axis=0), (full == 1).sum(axis=0)], axis=1)
                out[c] = fleiss_kappa(counts, method="fleiss")
            return out

        kappas, t_f = timed(peer_fleiss)
        peer_time += t_f
        differences["Fleiss' kappa vs statsmodels"] = max(abs(kappas[c] - ours.loc[c, "fleiss_kappa"]) for c in codes)
        print(f"statsmodels: fleiss_kappa per code (point)                      {t_f:7.2f} s")
    for name, value in differences.items():
        print(f"largest |difference|, {name}: {value:.2e}")
    if peer_time:
        print(f"ratio ours / peers, point estimates of every code: {t_point / peer_time:.2f} "
              f"({t_point:.2f} s vs {peer_time:.2f} s)")
        if krippendorff is not None:
            print(f"ratio ours / krippendorff, bootstrap intervals of every code: {t_boot / peer_boot:.4f} "
                  "(peer extrapolated)")
    bad = [name for name, value in differences.items() if not value < 1e-9]
    if bad:
        print("DISAGREEMENT: " + ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
