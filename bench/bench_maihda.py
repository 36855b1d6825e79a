"""Benchmark: MAIHDA by the direct profiled-REML fit against the statsmodels MixedLM path.

Workload: the MAIHDA calls of one demo intersections run (``--run``, default
``intersections/women/KEN``: :func:`analysis.chapters.maihda_summary`, two indicators per source,
two sources, so four MAIHDAs = eight random-intercept fits), on the processed demo data
(``python -m analysis ingest`` first). Each call is timed, side by side in this process, with
``engine="direct"`` (the default: the (RE)ML profile over the variance ratio from per-stratum
sums, :func:`analysis.models._profiled_deviance`) and ``engine="statsmodels"`` (the previous
implementation: statsmodels ``MixedLM.fit`` with optimisers in turn, each verified by
``_at_maximum``). The two engines alternate (a garbage collection before each call),
``--repeats`` times each, after one untimed warm-up call of each; the median of the repeats
is reported per call, with the ratio statsmodels / direct per call and for the whole run, and
the largest differences between the two engines' variances and PCV (the statsmodels path stops within its tolerance of the optimum;
the direct fit is exact to about 1e-10). Usage::

    python bench/bench_maihda.py [--run intersections/women/KEN] [--processed data/processed] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def maihda_calls(run_id: str, processed: Path) -> list[tuple]:
    """The (frame, indicator, dimensions) of every MAIHDA the chapter run makes, collected by
    running :func:`analysis.chapters.maihda_summary` once with :func:`analysis.models.maihda`
    recording its arguments."""
    from analysis import chapters, models
    from analysis.pipeline.matrix import expand_runs, load_report

    ctx = load_report(ROOT / "params" / "report.yml", project_root=ROOT, processed_dir=processed)
    spec = next((r for r in expand_runs(ctx) if r.run_id == run_id), None)
    if spec is None:
        raise SystemExit(f"--run {run_id}: no such run in params/report.yml")
    chapter, group, country, sources = spec.chapter, spec.group, spec.country, spec.sources
    with tempfile.TemporaryDirectory() as folder:
        run = chapters.start_run(chapter, group=group, country=country, sources=sources,
                                 processed_dir=processed, output_dir=Path(folder) / "out")  # fmt: skip
        calls, original = [], models.maihda

        def recording(frame, outcome, dimensions, **options):
            calls.append((frame, outcome, list(dimensions), options))
            return original(frame, outcome, dimensions, **options)

        models.maihda = recording
        try:
            chapters.maihda_summary(run)
        finally:
            models.maihda = original
    return calls


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="intersections/women/KEN")
    parser.add_argument("--processed", type=Path, default=ROOT / "data" / "processed")
    parser.add_argument("--repeats", type=int, default=5)
    args, _ = parser.parse_known_args(argv)
    if not any(args.processed.glob("*.parquet")):
        print(f"no processed data in {args.processed}: run `python -m analysis ingest` first")
        return 1

    from analysis import models

    calls = maihda_calls(args.run, args.processed)
    if not calls:
        print(f"run {args.run} makes no MAIHDA call")
        return 1
    engines = ("direct", "statsmodels")
    print(f"{args.run}: {len(calls)} MAIHDA calls ({2 * len(calls)} mixed-model fits), "
          f"median of {args.repeats} repeats each")  # fmt: skip
    print(f"{'indicator':<22} {'strata':>6} {'rows':>6} {'direct ms':>10} {'statsmodels ms':>15} {'ratio':>7} "
          f"{'max |d s2_u|/s2_e':>18} {'|d PCV|':>9}")  # fmt: skip
    totals = dict.fromkeys(engines, 0.0)
    for frame, outcome, dimensions, options in calls:
        times = {e: [] for e in engines}
        fits = {e: models.maihda(frame, outcome, dimensions, engine=e, **options) for e in engines}  # warm-up
        for _ in range(args.repeats):
            for engine in engines:
                gc.collect()  # the other engine's garbage is not charged to this one
                start = time.perf_counter()
                models.maihda(frame, outcome, dimensions, engine=engine, **options)
                times[engine].append(time.perf_counter() - start)
        median = {e: statistics.median(times[e]) for e in engines}
        for e in engines:
            totals[e] += median[e]
        new, old = fits["direct"], fits["statsmodels"]
        d_var = max(abs(getattr(new, m).stratum_var - getattr(old, m).stratum_var) / getattr(old, m).residual_var
                    for m in ("null", "main"))  # fmt: skip
        d_pcv = abs(new.pcv - old.pcv) if new.pcv == new.pcv and old.pcv == old.pcv else float("nan")
        print(f"{outcome:<22} {len(new.strata):>6} {new.n_used:>6} {1e3 * median['direct']:>10.1f} "
              f"{1e3 * median['statsmodels']:>15.1f} {median['statsmodels'] / median['direct']:>6.1f}x "
              f"{d_var:>18.2e} {d_pcv:>9.2e}")  # fmt: skip
    print(f"{'run total':<36} {1e3 * totals['direct']:>10.1f} {1e3 * totals['statsmodels']:>15.1f} "
          f"{totals['statsmodels'] / totals['direct']:>6.1f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
