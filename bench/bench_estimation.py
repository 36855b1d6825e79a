"""Benchmark: design-based means by intersection, ours against svy, samplics and R's svyby.

Workload (issue 4): 1,000,000 synthetic respondents, 30 strata, 600 PSUs, 8 binary indicators,
every cell of sex × age group (6) × disability × displacement status (3) — 72 cells, 576 means
with Taylor standard errors — plus, for our code, every margin (252 cells, 2,016 estimates).

Every tool runs in its own subprocess (so that its peak resident memory, VmHWM, is its own) on
the same data file; the parent prints time and peak memory of each, the ratios, and the largest
relative disagreement between our estimates/SEs and each peer's on the 576 full-crossing cells.

A peer that is not installed (pip extra ``bench``: svy, samplics; Debian ``r-cran-survey`` for
R) is skipped with the reason printed. Usage::

    python bench/bench_estimation.py [--rows 1000000] [--peers svy,samplics,r] [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DIMENSIONS = ["sex", "age_group", "disability", "displacement"]
AGE_GROUPS = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
INDICATORS = [f"y{i}" for i in range(1, 9)]
N_STRATA, N_PSU = 30, 600
SEPARATOR = " × "


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def make_data(rows: int, seed: int = 20240401) -> pd.DataFrame:
    """Synthetic stratified cluster sample: PSUs nested in strata, unequal weights, eight
    binary indicators whose prevalence depends on the four dimensions and on the PSU."""
    rng = np.random.default_rng(seed)
    psu = np.sort(rng.integers(0, N_PSU, rows))
    stratum = psu // (N_PSU // N_STRATA)
    weight = rng.uniform(50, 500, N_PSU)[psu] * rng.uniform(0.8, 1.25, rows)
    sex = rng.choice(["female", "male"], rows)
    age = rng.choice(AGE_GROUPS, rows, p=[0.15, 0.2, 0.2, 0.18, 0.15, 0.12])
    disability = rng.choice(["no", "yes"], rows, p=[0.85, 0.15])
    displacement = rng.choice(["host", "idp", "refugee"], rows, p=[0.8, 0.12, 0.08])
    frame = pd.DataFrame({
        "stratum": stratum.astype(np.int32),
        "psu": psu.astype(np.int32),
        "weight": weight,
        "sex": pd.Categorical(sex, categories=["female", "male"]),
        "age_group": pd.Categorical(age, categories=AGE_GROUPS),
        "disability": pd.Categorical(disability, categories=["no", "yes"]),
        "displacement": pd.Categorical(displacement, categories=["host", "idp", "refugee"]),
    })
    age_index = frame["age_group"].cat.codes.to_numpy()
    for i, name in enumerate(INDICATORS):
        psu_effect = rng.normal(0, 0.5, N_PSU)[psu]
        latent = (
            -0.8 + 0.1 * i / len(INDICATORS)
            + 0.3 * (sex == "female") + 0.1 * age_index
            + 0.6 * (disability == "yes") + 0.4 * (displacement != "host")
            + psu_effect
        )
        frame[name] = (rng.random(rows) < 1 / (1 + np.exp(-latent))).astype(float)
    return frame


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------------------------
# Workers (each runs in its own subprocess)
# --------------------------------------------------------------------------------------------


def worker_ours(data: Path, out: Path, repeat: int) -> dict:
    import tracemalloc

    from analysis.survey import SurveyDesign, estimate_by

    frame = pd.read_parquet(data)
    frame_mb = frame.memory_usage(deep=True).sum() / 2**20
    rss_loaded = current_rss_mb()
    start = time.perf_counter()
    design = SurveyDesign.from_frame(frame, weight="weight", strata="stratum", psu="psu")
    design_seconds = time.perf_counter() - start

    def timed(**kwargs):
        best = np.inf
        for _ in range(repeat):
            start = time.perf_counter()
            result = estimate_by(frame, design, INDICATORS, by=DIMENSIONS, **kwargs)
            best = min(best, time.perf_counter() - start)
        return best, result

    seconds_margins, with_margins = timed(margins=True)
    seconds_crossing, crossing = timed(margins=False)
    rss_peak = peak_rss_mb()
    tracemalloc.start()
    estimate_by(frame, design, INDICATORS, by=DIMENSIONS, margins=True)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    crossing[["indicator", "cell", "estimate", "se"]].to_csv(out, index=False)
    return {
        "seconds": seconds_crossing,
        "seconds_with_margins": seconds_margins,
        "design_seconds": design_seconds,
        "rows_with_margins": len(with_margins),
        "frame_mb": frame_mb,
        "estimation_peak_mb": traced_peak / 2**20,
        "rss_extra_mb": rss_peak - rss_loaded,
        "peak_rss_mb": rss_peak,
    }


def worker_bare(data: Path, out: Path, repeat: int) -> dict:
    """The floor: one bincount per indicator over cell × PSU keys, then the stratified
    with-replacement variance of the linearised domain totals. No margins, no diagnostics."""
    frame = pd.read_parquet(data)
    cell = np.zeros(len(frame), dtype=np.int64)
    sizes = []
    for name in DIMENSIONS:
        codes = frame[name].cat.codes.to_numpy().astype(np.int64)
        size = len(frame[name].cat.categories)
        cell = cell * size + codes
        sizes.append(size)
    n_cells = int(np.prod(sizes))
    psu = frame["psu"].to_numpy()
    stratum_of_psu = np.zeros(N_PSU, dtype=np.int64)
    stratum_of_psu[psu] = frame["stratum"].to_numpy()
    n_h = np.bincount(stratum_of_psu)
    weight = frame["weight"].to_numpy()

    def run():
        key = cell * N_PSU + psu
        den = np.bincount(key, weights=weight, minlength=n_cells * N_PSU).reshape(n_cells, N_PSU)
        den_total = den.sum(axis=1)
        estimates, ses = [], []
        for name in INDICATORS:
            num = np.bincount(key, weights=weight * frame[name].to_numpy(),
                              minlength=n_cells * N_PSU).reshape(n_cells, N_PSU)
            mean = num.sum(axis=1) / den_total
            z = (num - mean[:, None] * den) / den_total[:, None]
            s1 = np.zeros((n_cells, len(n_h)))
            s2 = np.zeros((n_cells, len(n_h)))
            np.add.at(s1.T, stratum_of_psu, z.T)
            np.add.at(s2.T, stratum_of_psu, (z * z).T)
            var = ((s2 - s1 * s1 / n_h) * (n_h / (n_h - 1))).sum(axis=1)
            estimates.append(mean)
            ses.append(np.sqrt(var))
        return estimates, ses

    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        estimates, ses = run()
        best = min(best, time.perf_counter() - start)
    labels = [
        SEPARATOR.join(combo)
        for combo in __import__("itertools").product(*[list(frame[d].cat.categories) for d in DIMENSIONS])
    ]
    rows = [
        {"indicator": name, "cell": label, "estimate": e, "se": s}
        for name, est, se in zip(INDICATORS, estimates, ses)
        for label, e, s in zip(labels, est, se)
    ]
    pd.DataFrame(rows).to_csv(out, index=False)
    return {"seconds": best, "peak_rss_mb": peak_rss_mb()}


def worker_svy(data: Path, out: Path, repeat: int) -> dict:
    import polars as pl
    import svy

    table = pl.read_parquet(data).with_columns([pl.col(d).cast(pl.Utf8) for d in DIMENSIONS])
    sample = svy.Sample(table, svy.Design(stratum="stratum", psu="psu", wgt="weight"))
    start = time.perf_counter()
    results = sample.estimation.mean(INDICATORS, by=DIMENSIONS)
    seconds = time.perf_counter() - start
    rows = []
    for name, estimate in zip(INDICATORS, results):
        frame = estimate.to_polars().to_pandas()
        cells = frame[DIMENSIONS].astype(str).agg(SEPARATOR.join, axis=1)
        rows.append(pd.DataFrame({"indicator": name, "cell": cells, "estimate": frame["est"],
                                  "se": frame["se"]}))
    pd.concat(rows).to_csv(out, index=False)
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def worker_samplics(data: Path, out: Path, repeat: int) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    from samplics.estimation import TaylorEstimator
    from samplics.utils.types import PopParam

    frame = pd.read_parquet(data)
    domain = frame[DIMENSIONS].astype(str).agg(SEPARATOR.join, axis=1).to_numpy()
    start = time.perf_counter()
    rows = []
    for name in INDICATORS:
        estimator = TaylorEstimator(PopParam.mean)
        estimator.estimate(y=frame[name].to_numpy(), samp_weight=frame["weight"].to_numpy(),
                           stratum=frame["stratum"].to_numpy(), psu=frame["psu"].to_numpy(),
                           domain=domain)
        for cell, value in estimator.point_est.items():
            rows.append({"indicator": name, "cell": cell, "estimate": value,
                         "se": estimator.stderror[cell]})
    seconds = time.perf_counter() - start
    pd.DataFrame(rows).to_csv(out, index=False)
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb()}


R_SCRIPT = r"""
suppressMessages({library(survey); library(data.table)})
args <- commandArgs(TRUE)
d <- as.data.frame(fread(args[1]))
des <- svydesign(id = ~psu, strata = ~stratum, weights = ~weight, data = d, nest = TRUE)
inds <- strsplit(args[3], ",")[[1]]
f <- as.formula(paste("~", paste(inds, collapse = "+")))
seconds <- system.time(r <- svyby(f, ~sex + age_group + disability + displacement, des, svymean))[["elapsed"]]
est <- coef(r); se <- as.vector(as.matrix(SE(r)))  # column-major, as coef()
out <- data.frame(name = names(est), estimate = unname(est), se = unname(se))
write.csv(out, args[2], row.names = FALSE)
hwm <- grep("VmHWM", readLines("/proc/self/status"), value = TRUE)
cat(sprintf('{"seconds": %.6f, "peak_rss_mb": %.1f}\n', seconds,
            as.numeric(gsub("[^0-9]", "", hwm)) / 1024))
"""


def run_r(data_csv: Path, out: Path, timeout: float) -> dict:
    script = out.with_suffix(".R")
    script.write_text(R_SCRIPT)
    completed = subprocess.run(
        ["Rscript", str(script), str(data_csv), str(out), ",".join(INDICATORS)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr.strip().splitlines()[-1] if completed.stderr else "R failed")
    info = json.loads(completed.stdout.strip().splitlines()[-1])
    raw = pd.read_csv(out)
    # names are "<sex>.<age>.<disability>.<displacement>:<indicator>"
    split = raw["name"].str.rsplit(":", n=1, expand=True)
    raw["indicator"] = split[1]
    raw["cell"] = split[0].str.split(".", regex=False).str.join(SEPARATOR)
    raw[["indicator", "cell", "estimate", "se"]].to_csv(out, index=False)
    return info


WORKERS = {"ours": worker_ours, "bare": worker_bare, "svy": worker_svy, "samplics": worker_samplics}


def r_available() -> str | None:
    if shutil.which("Rscript") is None:
        return "Rscript not found (Debian: apt-get install r-cran-survey)"
    check = subprocess.run(["Rscript", "-e", "library(survey); library(data.table)"],
                           capture_output=True, text=True, check=False)
    if check.returncode != 0:
        return "R packages survey and data.table are not installed (Debian: r-cran-survey r-cran-data.table)"
    return None


def python_peer_available(module: str) -> str | None:
    check = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                           check=False)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["import failed"])[-1]
        return f"cannot import {module} ({last}); pip install '.[bench]'"
    return None


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------


def run_worker(name: str, data: Path, out: Path, repeat: int, timeout: float) -> dict:
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--data", str(data), "--out", str(out),
         "--repeat", str(repeat)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(tail[0])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def largest_disagreement(ours: pd.DataFrame, peer: pd.DataFrame) -> tuple[float, float, int]:
    merged = ours.merge(peer, on=["indicator", "cell"], suffixes=("", "_peer"))
    rel_est = (merged["estimate"] - merged["estimate_peer"]).abs() / merged["estimate_peer"].abs()
    rel_se = (merged["se"] - merged["se_peer"]).abs() / merged["se_peer"].abs()
    return float(rel_est.max()), float(rel_se.max()), len(merged)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--peers", default="svy,samplics,r", help="comma-separated: svy,samplics,r")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats for ours (best kept)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per peer")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        info = WORKERS[args.worker](Path(args.data), Path(args.out), args.repeat)
        print(json.dumps(info))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="bench_estimation_"))
    try:
        start = time.perf_counter()
        frame = make_data(args.rows)
        data = workdir / "data.parquet"
        frame.to_parquet(data)
        print(f"data: {args.rows:,} rows, {N_STRATA} strata, {N_PSU} PSUs, {len(INDICATORS)} binary "
              f"indicators, {' × '.join(DIMENSIONS)} (72 cells) — made in "
              f"{time.perf_counter() - start:.1f} s")
        results, outputs, skipped = {}, {}, {}
        for name in ["ours", "bare"]:
            outputs[name] = workdir / f"{name}.csv"
            results[name] = run_worker(name, data, outputs[name], args.repeat, args.timeout)
        peers = [p.strip() for p in args.peers.split(",") if p.strip()]
        for peer in peers:
            out = workdir / f"{peer}.csv"
            try:
                if peer == "r":
                    reason = r_available()
                    if reason:
                        skipped[peer] = reason
                        continue
                    csv = workdir / "data.csv"
                    if not csv.exists():
                        frame.to_csv(csv, index=False)
                    results[peer] = run_r(csv, out, args.timeout)
                else:
                    reason = python_peer_available(peer)
                    if reason:
                        skipped[peer] = reason
                        continue
                    results[peer] = run_worker(peer, data, out, 1, args.timeout)
                outputs[peer] = out
            except subprocess.TimeoutExpired:
                skipped[peer] = f"did not finish within --timeout {args.timeout:.0f} s"
            except (RuntimeError, ValueError, KeyError, OSError) as error:  # report, go on
                skipped[peer] = f"failed: {error}"
        report(results, outputs, skipped)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(results, outputs, skipped) -> None:
    ours = results["ours"]
    ours_table = pd.read_csv(outputs["ours"])
    print()
    print(f"ours: estimate_by, 576 means + SEs (full crossing)      {ours['seconds']:8.3f} s")
    print(f"ours: with every margin ({ours['rows_with_margins']} estimates, deff, CIs, df, n)  "
          f"{ours['seconds_with_margins']:8.3f} s")
    print(f"ours: design construction (once per source)              {ours['design_seconds']:8.3f} s")
    bare = results["bare"]
    print(f"bare numpy bincount pass (floor, no features)           {bare['seconds']:8.3f} s"
          f"   ours with margins / bare = {ours['seconds_with_margins'] / bare['seconds']:.2f}×")
    print(f"input frame {ours['frame_mb']:.1f} MB; estimation peak allocation "
          f"{ours['estimation_peak_mb']:.1f} MB = {ours['estimation_peak_mb'] / ours['frame_mb']:.2f}× the "
          f"frame (RSS growth {ours['rss_extra_mb']:.1f} MB); process peak RSS {ours['peak_rss_mb']:.0f} MB")
    est, se, n = largest_disagreement(ours_table, pd.read_csv(outputs["bare"]))
    print(f"agreement with bare pass: max rel. diff estimate {est:.1e}, SE {se:.1e} ({n} cells)")
    print()
    print(f"{'peer':10s} {'seconds':>9s} {'peak RSS MB':>12s} {'peer/ours':>10s} "
          f"{'max rel diff est':>17s} {'max rel diff SE':>16s} {'cells':>6s}")
    for peer, info in results.items():
        if peer in ("ours", "bare"):
            continue
        est, se, n = largest_disagreement(ours_table, pd.read_csv(outputs[peer]))
        print(f"{peer:10s} {info['seconds']:9.3f} {info['peak_rss_mb']:12.0f} "
              f"{info['seconds'] / ours['seconds']:9.1f}× {est:17.1e} {se:16.1e} {n:6d}")
    for peer, reason in skipped.items():
        print(f"{peer:10s} skipped: {reason}")
    print("(peer/ours compares the same 576-mean workload; ours also reports the margins run)")


if __name__ == "__main__":
    sys.exit(main())
