"""Benchmark: census-scale replicate-weight estimates as partition sums (issue 17).

Workload: N respondents (default 10 and 30 million) × 80 successive-difference replicate weights
(ACS factors 1 ± 2^-1/2), 8 binary indicators, every cell of sex × age group (6) × disability ×
displacement status (3) — 72 cells — and every margin (252 cells, 2,016 estimates with SDR
standard errors, SE = sqrt(4/80 Σ(θ_r − θ)²)). The data are written once as partitioned Parquet
(files of 500,000 rows, generated chunk by chunk, never whole in memory).

Side by side, each in its own process (peak memory = peak resident set of its process tree,
sampled every 0.1 s, so Dask's worker processes count):

- ``pandas``: today's in-memory estimator (the frame read whole; only where it fits: skipped
  with the memory it would need above ``--pandas-max-gb``);
- ``chunks``: partition sums in one process, each Parquet row group read (page by page, in
  batches of 65,536 rows) and mapped by one of 2 worker threads;
- ``duckdb``: SQL ``GROUP BY`` over the Parquet files (``--duckdb-memory``, 2 threads);
- ``dask``: ``dask.dataframe`` partitions on a local cluster of 2 worker processes;
- ``r``: R's ``survey`` (``svrepdesign(type="successive-difference", mse=TRUE)`` then ``svyby``
  of the 72 full-crossing cells) on the largest size in ``--r-rows`` that it finishes within
  ``--r-timeout`` (R reads a CSV export; skipped with the reason when Rscript or survey is
  missing; ``--r-every``: at every size of ``--r-rows``). R reads the first rows of the smallest
  benchmarked data set that has them, and our engines are timed again on exactly those files,
  ``--repeat`` times (the median run is reported, every run listed). Ratios to R are at R's
  size, by wall time and by the CPU time of the estimation (R's ``proc.time``).

Each line gives the wall time, the CPU time of the estimation (user + system of the process and
its finished children; on a shared machine the wall time mostly measures the load) and the peak
memory.

Agreement: the largest relative difference of estimates and SEs of every engine against the
in-memory estimator (where it ran) or against DuckDB, and against R on its cells. Targets: the
30-million case finishes with peak memory under 8 GB; at 10 million the best engine is at least
20× faster than R (R did not finish 3 million rows in 900 s in an earlier run: its largest
size that finishes is used).

Measured 2026-12-01 on the 2-core, 24 GB machine with nothing else running (load average 1-2),
``--engines chunks[,duckdb] --r-rows N --r-engines chunks --repeat 3`` at each size:

- 2 million: chunks 1.39 s (2.32 s CPU), R 46.5 s (46.5 s CPU; + 28 s reading its CSV; 6.8 GB):
  R / chunks 33.3× by wall time, 20.0× by CPU time;
- 4 million: chunks 2.83 s (4.75 s CPU, 0.68 GB), duckdb 4.7 s, R 114.4 s (+ 56 s reading;
  13.4 GB): 40.4× by wall time, 24.1× by CPU time;
- 5 million: chunks 3.69 s (5.90 s CPU), R 151.5 s (+ 78 s reading; 14.7 GB): 41.0× by wall
  time, 25.6× by CPU time — the largest size R finished;
- 10 million: chunks 6.9 s (11.5 s CPU, peak 0.68 GB); R was killed by the kernel's
  out-of-memory killer at 18.3 GB (it does not fit in 24 GB).

Earlier the same day, under a load of 4-5 from other jobs: 30 million rows, chunks 66.4 s
(33.0 s CPU, peak 0.70 GB). Estimates and SEs agree with R to 4.5e-15, and chunks with the
in-memory estimator and with DuckDB to 0 (largest relative difference). Usage::

    python bench/bench_scale.py [--sizes 10000000,30000000] [--engines chunks,duckdb,dask,pandas]
                                [--r-rows 200000,1000000] [--r-every] [--repeat 3]
                                [--data DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

DIMENSIONS = ["sex", "age_group", "disability", "displacement"]
AGE_GROUPS = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
INDICATORS = [f"y{i}" for i in range(1, 9)]
N_REP = 80
FILE_ROWS = 500_000
N_PSU_PER_MILLION = 240
SEPARATOR = " × "


# --------------------------------------------------------------------------------------------
# Data: partitioned Parquet, chunk by chunk
# --------------------------------------------------------------------------------------------


def sdr_factors() -> np.ndarray:
    h = np.ones((1, 1))
    while h.shape[0] < 128:
        h = np.block([[h, h], [h, -h]])
    h = h[:, 1:N_REP + 1]
    return 1.0 + 2.0 ** -1.5 * (h - np.roll(h, -1, axis=0))


def write_part(folder: Path, rows: int, k: int, seed: int = 20261201) -> None:
    """File ``k`` of the ``rows``-row data set (files are independent: seeded by ``k``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    factors = sdr_factors()
    n_psu = max(20, rows * N_PSU_PER_MILLION // 1_000_000)
    psu_effects = np.random.default_rng(seed).normal(0, 0.4, n_psu)
    start = k * FILE_ROWS
    n = min(FILE_ROWS, rows - start)
    rng = np.random.default_rng([seed, k])
    psu = np.sort(rng.integers(0, n_psu, n))
    weight = np.round(rng.uniform(50, 500, n_psu)[psu] * rng.uniform(0.8, 1.25, n))
    sex = rng.choice(["female", "male"], n)
    age = rng.choice(AGE_GROUPS, n, p=[0.15, 0.2, 0.2, 0.18, 0.15, 0.12])
    disability = rng.choice(["no", "yes"], n, p=[0.85, 0.15])
    displacement = rng.choice(["host", "idp", "refugee"], n, p=[0.8, 0.12, 0.08])
    columns = {
        "stratum": (psu // 20).astype(np.int32), "psu": psu.astype(np.int32),
        "weight": weight.astype(np.int32),
        "sex": pa.array(sex).dictionary_encode(), "age_group": pa.array(age).dictionary_encode(),
        "disability": pa.array(disability).dictionary_encode(),
        "displacement": pa.array(displacement).dictionary_encode(),
    }
    age_index = np.searchsorted(np.array(AGE_GROUPS), age)
    for i, name in enumerate(INDICATORS):
        latent = (-0.8 + 0.1 * i / 8 + 0.3 * (sex == "female") + 0.1 * age_index
                  + 0.6 * (disability == "yes") + 0.4 * (displacement != "host") + psu_effects[psu])
        columns[name] = (rng.random(n) < 1 / (1 + np.exp(-latent))).astype(np.float64)
    m = (start + np.arange(n)) % 128
    reps = np.round(weight[:, None] * factors[m]).astype(np.int32)
    for r in range(N_REP):
        columns[f"rep{r + 1}"] = reps[:, r]
    pq.write_table(pa.table(columns), folder / f"part-{k:05d}.parquet", compression="zstd",
                   row_group_size=FILE_ROWS)


def write_data(folder: Path, rows: int, seed: int = 20261201) -> Path:
    """Write ``rows`` respondents as Parquet files of FILE_ROWS rows (reused when present)."""
    done = folder / "_done.json"
    if done.exists() and json.loads(done.read_text()).get("rows") == rows:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for k in range(-(-rows // FILE_ROWS)):
        write_part(folder, rows, k, seed)
    done.write_text(json.dumps({"rows": rows}))
    return folder


# --------------------------------------------------------------------------------------------
# One engine in its own process
# --------------------------------------------------------------------------------------------


class PeakMemory:
    """Peak resident set of this process and its children, sampled (psutil)."""

    def __init__(self, interval=0.1):
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        import psutil

        total = 0
        for p in [self.process, *self.process.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak = max(self.peak, total)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def design_columns():
    from analysis.survey_sums import DesignColumns

    return DesignColumns(weight="weight", replicate_columns=[f"rep{r}" for r in range(1, N_REP + 1)],
                         replicate_method="successive-difference", mse=True)


def run_engine(engine: str, data: Path, out: Path, duckdb_memory: str) -> None:
    """Estimate the workload with ``engine``; write the table and timings to ``out``."""
    from analysis.survey import SurveyDesign, estimate_by
    from analysis.survey_sums import estimate_by_sums

    files = sorted(str(p) for p in data.glob("part-*.parquet"))
    spec = design_columns()
    with PeakMemory() as memory:
        start, cpu_start = time.perf_counter(), cpu_seconds()
        if engine == "pandas":
            frame = pd.read_parquet(files)
            design = SurveyDesign.from_frame(frame, weight="weight",
                                             replicate_columns=spec.replicate_columns,
                                             replicate_method="successive-difference", mse=True)
            loaded = time.perf_counter() - start
            result = estimate_by(frame, design, INDICATORS, by=DIMENSIONS)
        elif engine == "dask":
            from distributed import Client, LocalCluster

            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              dashboard_address=None, memory_limit="3.5GB") as cluster, \
                    Client(cluster) as client:
                loaded = time.perf_counter() - start
                result = estimate_by_sums(files, spec, INDICATORS, by=DIMENSIONS, engine="dask",
                                          scheduler=client, chunk_rows=FILE_ROWS)
        elif engine == "duckdb":
            loaded = 0.0
            result = estimate_by_sums(files, spec, INDICATORS, by=DIMENSIONS, engine="duckdb",
                                      memory_limit=duckdb_memory, threads=2)
        else:
            loaded = 0.0
            result = estimate_by_sums(files, spec, INDICATORS, by=DIMENSIONS, engine="chunks",
                                      chunk_rows=FILE_ROWS, threads=2)
        seconds = time.perf_counter() - start
        estimate_cpu = cpu_seconds() - cpu_start  # dask: the finished workers' CPU included
        if engine == "dask":  # a cluster is started once and reused: its start-up is apart
            seconds -= loaded
    result[["indicator", "breakdown", "cell", "estimate", "se", "n_unweighted"]].to_csv(
        out.with_suffix(".csv"), index=False)
    out.write_text(json.dumps({"engine": engine, "seconds": seconds, "setup_seconds": loaded,
                               "cpu_seconds": cpu_seconds(), "estimate_cpu_seconds": estimate_cpu,
                               "peak_gb": memory.peak / 1e9,
                               "rows_out": len(result)}))


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children: on a shared machine
    wall time depends on the load, CPU time much less."""
    import resource

    own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                     resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


R_SCRIPT = r"""
suppressMessages(library(survey))
args <- commandArgs(trailingOnly = TRUE)
t0 <- proc.time()[["elapsed"]]
f <- read.csv(args[1], stringsAsFactors = TRUE)
t_read <- proc.time()[["elapsed"]] - t0
reps <- grep("^rep[0-9]+$", names(f))
t1 <- proc.time()[["elapsed"]]
c1 <- sum(proc.time()[c("user.self", "sys.self")])
d <- svrepdesign(weights = ~weight, repweights = f[, reps], type = "successive-difference",
                 mse = TRUE, data = f[, -reps])
b <- svyby(~y1 + y2 + y3 + y4 + y5 + y6 + y7 + y8, ~sex + age_group + disability + displacement,
           d, svymean)
t_est <- proc.time()[["elapsed"]] - t1
c_est <- sum(proc.time()[c("user.self", "sys.self")]) - c1
out <- data.frame(b[, c("sex", "age_group", "disability", "displacement")],
                  estimate = unlist(coef(b)), check.names = FALSE)
est <- as.matrix(b[, paste0("y", 1:8)]); se <- as.matrix(SE(b))
rows <- list()
for (i in 1:8) rows[[i]] <- data.frame(indicator = paste0("y", i),
  cell = paste(b$sex, b$age_group, b$disability, b$displacement, sep = " \u00d7 "),
  estimate = est[, i], se = se[, i])
write.csv(do.call(rbind, rows), args[2], row.names = FALSE)
cat(sprintf('{"read_seconds": %f, "seconds": %f, "cpu_seconds": %f}\n', t_read, t_est, c_est),
    file = args[3])
"""


def first_rows(root: Path, rows: int, sizes: list[int]) -> Path:
    """A folder linking the files of the first ``rows`` rows of the smallest benchmarked data
    set that has them (R and our engines then read the same respondents); a data set of its
    own when ``rows`` is not a multiple of the file size or exceeds every size."""
    larger = [n for n in sizes if n >= rows]
    if rows % FILE_ROWS or not larger:
        return write_data(root / f"rows_{rows}", rows)
    source = write_data(root / f"rows_{min(larger)}", min(larger))
    folder = root / f"first_{rows}_of_{min(larger)}"
    folder.mkdir(exist_ok=True)
    for k in range(rows // FILE_ROWS):
        link = folder / f"part-{k:05d}.parquet"
        if not link.exists():
            link.symlink_to(source / link.name)
    return folder


def run_r(data: Path, rows: int, folder: Path, timeout: float) -> dict:
    """R's svrepdesign + svyby on the first ``rows`` rows of ``data`` (exported to CSV): its
    times, CPU time and peak resident memory, and its table; ``skipped`` says why not."""
    if not shutil.which("Rscript"):
        return {"skipped": "Rscript not found (apt-get install r-cran-survey)"}
    check = subprocess.run(["Rscript", "-e", "library(survey)"], capture_output=True, text=True,
                           check=False)
    if check.returncode:
        return {"skipped": "R package survey not installed (apt-get install r-cran-survey)"}
    import pyarrow.dataset as ds

    csv = folder / f"r_{rows}.csv"
    table = ds.dataset(sorted(str(p) for p in data.glob("part-*.parquet"))).head(rows)
    table.to_pandas().to_csv(csv, index=False)
    script = folder / "bench_scale.R"
    script.write_text(R_SCRIPT)
    out_csv, out_json = folder / f"r_{rows}_result.csv", folder / f"r_{rows}.json"
    del table
    import psutil

    start = time.perf_counter()
    proc = psutil.Popen(["Rscript", str(script), str(csv), str(out_csv), str(out_json)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, cpu = 0, 0.0
    while proc.poll() is None:
        if time.perf_counter() - start > timeout:
            proc.kill()
            proc.wait()
            return {"skipped": f"did not finish in {timeout:.0f} s at {rows:,} rows", "rows": rows}
        try:
            peak = max(peak, proc.memory_info().rss)
            times = proc.cpu_times()
            cpu = times.user + times.system
        except psutil.Error:
            pass
        time.sleep(0.2)
    if proc.returncode and proc.returncode < 0:  # killed by a signal: no error message of its own
        why = "; SIGKILL, most likely the kernel's out-of-memory killer" if proc.returncode == -9 else ""
        return {"skipped": f"R was killed by signal {-proc.returncode} at {rows:,} rows after a peak of "
                           f"{peak / 1e9:.1f} GB{why}", "rows": rows, "peak_gb": peak / 1e9}
    if proc.returncode:
        return {"skipped": f"R failed: {proc.stderr.read().strip().splitlines()[-1:]}",
                "rows": rows}
    timing = json.loads(out_json.read_text())
    return {"rows": rows, "seconds": timing["seconds"], "read_seconds": timing["read_seconds"],
            "estimate_cpu_seconds": timing["cpu_seconds"],
            "wall": time.perf_counter() - start, "peak_gb": peak / 1e9, "cpu_seconds": cpu,
            "result": pd.read_csv(out_csv)}


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------


def agreement(result: pd.DataFrame, reference: pd.DataFrame, cells_only=False) -> float:
    """Largest relative difference of estimate and SE on the rows both have."""
    keys = ["indicator", "cell"] if cells_only else ["indicator", "breakdown", "cell"]
    if cells_only:
        result = result[result["breakdown"] == SEPARATOR.join(DIMENSIONS)]
    merged = result.merge(reference, on=keys, suffixes=("", "_ref"))
    if merged.empty:
        return float("nan")
    worst = 0.0
    for column in ("estimate", "se"):
        a, b = merged[column].to_numpy(float), merged[f"{column}_ref"].to_numpy(float)
        ok = np.isfinite(a) & np.isfinite(b) & (np.abs(b) > 0)
        worst = max(worst, float(np.max(np.abs(a[ok] - b[ok]) / np.abs(b[ok]))) if ok.any() else 0.0)
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000000,30000000")
    parser.add_argument("--engines", default="pandas,chunks,duckdb,dask")
    parser.add_argument("--r-rows", default="200000,1000000",
                        help="R sizes to try, largest first that finishes (comma-separated)")
    parser.add_argument("--r-every", action="store_true",
                        help="run R at every size of --r-rows (each against our engines), not "
                             "only the largest it finishes")
    parser.add_argument("--r-timeout", type=float, default=900)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each of our engines at R's size (the median is reported)")
    parser.add_argument("--pandas-max-gb", type=float, default=6.0,
                        help="skip the in-memory estimator when its frame would need more")
    parser.add_argument("--duckdb-memory", default="4GB")
    parser.add_argument("--engine-timeout", type=float, default=1200,
                        help="seconds before an engine's run is stopped and reported as such")
    parser.add_argument("--r-engines", default="duckdb,chunks,dask",
                        help="our engines timed on R's size")
    parser.add_argument("--data", type=Path, default=None, help="folder for the Parquet data")
    parser.add_argument("--keep", action="store_true", help="keep the data for the next run")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)  # run_all passes every benchmark the same options
    if args.worker:
        run_engine(args.worker, args.data, args.out, args.duckdb_memory)
        return 0
    root = args.data or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    report = []
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        for rows in sizes:
            t0 = time.perf_counter()
            data = write_data(root / f"rows_{rows}", rows)
            print(f"\n== {rows:,} respondents × {N_REP} SDR replicate weights × 72 cells × 8 "
                  f"indicators with margins (data written in {time.perf_counter() - t0:.0f} s)",
                  flush=True)
            results = {}
            for engine in [e for e in args.engines.split(",") if e]:
                need_gb = rows * (N_REP + 20) * 8 * 2.2 / 1e9  # frame + replicate matrix copy
                if engine == "pandas" and need_gb > args.pandas_max_gb:
                    print(f"  {engine:7s} skipped: the in-memory frame and replicate matrix "
                          f"would need about {need_gb:.0f} GB (> --pandas-max-gb "
                          f"{args.pandas_max_gb:g})", flush=True)
                    continue
                out = root / f"result_{engine}_{rows}.json"
                try:
                    proc = subprocess.run([sys.executable, __file__, "--worker", engine, "--data",
                                           str(data), "--out", str(out), "--duckdb-memory",
                                           args.duckdb_memory], capture_output=True, text=True,
                                          check=False, timeout=args.engine_timeout)
                except subprocess.TimeoutExpired:
                    print(f"  {engine:7s} did not finish in {args.engine_timeout:.0f} s "
                          "(--engine-timeout)", flush=True)
                    continue
                if proc.returncode:
                    print(f"  {engine:7s} FAILED: {proc.stderr.strip().splitlines()[-1:]}",
                          flush=True)
                    continue
                info = json.loads(out.read_text())
                info["table"] = pd.read_csv(out.with_suffix(".csv"))
                results[engine] = info
                setup = (f"   (+{info['setup_seconds']:.0f} s cluster start-up)"
                         if engine == "dask" else "")
                print(f"  {engine:7s} {info['seconds']:8.1f} s   cpu {info['estimate_cpu_seconds']:7.1f} s "
                      f"estimation ({info['cpu_seconds']:.1f} s the process)   "
                      f"peak {info['peak_gb']:5.2f} GB{setup}", flush=True)
            reference_name = "pandas" if "pandas" in results else "duckdb"
            reference = results.get(reference_name, {}).get("table")
            for engine, info in results.items():
                if reference is not None and engine != reference_name:
                    info["agreement"] = agreement(info["table"], reference)
                    print(f"  {engine:7s} vs {reference_name}: max relative difference of "
                          f"estimates and SEs {info['agreement']:.1e}", flush=True)
            if results:
                best = min(results, key=lambda e: results[e]["seconds"])
                for engine, info in results.items():
                    print(f"  ratio {engine}/{best}: {info['seconds'] / results[best]['seconds']:.2f}")
            report.append({"rows": rows, **{e: {k: v for k, v in i.items() if k != "table"}
                                            for e, i in results.items()}})
        # R on the largest size it finishes, against our engines on the same rows
        r_sizes = sorted((int(n) for n in args.r_rows.split(",") if n), reverse=True)
        for rows in r_sizes:
            small = first_rows(root, rows, sizes)
            print(f"\n== R survey svrepdesign + svyby on {rows:,} rows", flush=True)
            r = run_r(small, rows, root, args.r_timeout)
            if "skipped" in r:
                print(f"  r       skipped: {r['skipped']}", flush=True)
                continue
            ours = {}
            for engine in [e for e in args.r_engines.split(",") if e]:
                out = root / f"result_{engine}_{rows}.json"
                runs = []
                for _ in range(max(args.repeat, 1)):  # seconds each: the median run is reported
                    subprocess.run([sys.executable, __file__, "--worker", engine, "--data",
                                    str(small), "--out", str(out), "--duckdb-memory",
                                    args.duckdb_memory], check=True, capture_output=True)
                    runs.append(json.loads(out.read_text()))
                runs.sort(key=lambda info: info["seconds"])
                ours[engine] = runs[len(runs) // 2]
                ours[engine]["runs_seconds"] = [info["seconds"] for info in runs]
                ours[engine]["table"] = pd.read_csv(out.with_suffix(".csv"))
            best = min(ours, key=lambda e: ours[e]["seconds"])
            r_table = r["result"]
            diff = agreement(ours[best]["table"], r_table, cells_only=True)
            print(f"  r       {r['seconds']:8.1f} s estimation (+{r['read_seconds']:.0f} s reading CSV)"
                  f"   cpu {r['estimate_cpu_seconds']:.1f} s estimation, {r['cpu_seconds']:.0f} s "
                  f"with reading   peak {r['peak_gb']:.2f} GB")
            for engine, info in ours.items():
                runs = ", ".join(f"{t:.2f}" for t in info["runs_seconds"])
                print(f"  {engine:7s} {info['seconds']:8.2f} s (median of {runs})   cpu "
                      f"{info['estimate_cpu_seconds']:5.2f} s estimation   peak {info['peak_gb']:.2f}"
                      f" GB (with margins: 252 cells)   R / {engine} = "
                      f"{r['seconds'] / info['seconds']:.1f}x wall, "
                      f"{r['estimate_cpu_seconds'] / info['estimate_cpu_seconds']:.1f}x CPU")
            print(f"  agreement with R on the 576 full-crossing estimates and SEs: {diff:.1e}")
            report.append({"r_rows": rows, "r_seconds": r["seconds"],
                           "r_read_seconds": r["read_seconds"], "r_peak_gb": r["peak_gb"],
                           "r_cpu_seconds_with_reading": r["cpu_seconds"],
                           "r_estimate_cpu_seconds": r["estimate_cpu_seconds"],
                           **{e: {k: v for k, v in i.items() if k != "table"}
                              for e, i in ours.items()}, "agreement_r": diff})
            if not args.r_every:
                break
        results_dir = Path(__file__).resolve().parent / "results"
        results_dir.mkdir(exist_ok=True)
        (results_dir / "bench_scale.json").write_text(json.dumps(report, indent=2, default=str))
    finally:
        if not args.keep and args.data is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
