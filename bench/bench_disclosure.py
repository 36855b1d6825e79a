"""Benchmark: whole-report suppression and the LP attack, side by side with the report build.

- **demo**: builds the demo report (what ``make report`` runs: ingest, every run of
  ``params/report.yml``, the export) into a temporary folder (``--base``; an existing build there
  is reused), timing it in wall and CPU seconds (this process and its workers). The plans the
  runs computed are in its ``outputs/.disclosure_plans/``, each with the CPU seconds it took:
  their sum against the build's CPU seconds is what suppression adds to ``make report``
  (target < 10%). Then plans every source × country again in this process (the whole-report
  suppression, timed alone) and attacks every withheld count of the built report from its
  published files (exact LP bounds; the narrowest interval is printed).
- **synthetic**: one source with 20 countries × 12 groups × 30 percent indicators
  (``--countries``, ``--groups``, ``--indicators``), planned and attacked per country (plans
  are per source × country). This attack stops on a cell once feasible points show its
  interval at least ``suppress_below`` wide (``enough``): it proves the threshold, and narrower
  intervals are solved exactly.

Also prints what the protection costs in cells: complementary cells withheld, absolute and as a
share of the cells published, and how many of them are headline cells (everyone, a group, its
reference, a one-way category). Results go to ``bench/results/disclosure.json``.

    .venv/bin/python bench/bench_disclosure.py            # about 10 minutes on 2 busy cores
    TEST_REPORT_BUILD=<base> pytest tests/disclosure/test_attack_demo_report.py  # reuses it
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import config
from analysis.disclosure import Thresholds
from analysis.disclosure_attack import attack_cells, attack_published
from analysis.disclosure_model import (
    RESPONDENTS,
    Catalogue,
    frame_categories,
    membership,
    positive_weight_rows,
)
from analysis.disclosure_plan import AREA, SECONDARY_REASON, plan_suppression, profile_dimensions
from analysis.schema import load_indicators

ROOT = Path(__file__).resolve().parents[1]


def demo_plans(processed: Path, limits: Thresholds) -> tuple[float, list]:
    from analysis.sources import load_processed

    report = config.read_yaml_mapping(config.REPORT_FILE, AssertionError, "report file")
    indicators = load_indicators()
    plans, start = [], time.process_time()
    for source in report["sources"]:
        path = processed / f"{source}.parquet"
        if not path.exists():
            continue
        frame = load_processed(source, processed)
        if frame.attrs.get("design") is None:
            continue
        for country in sorted(frame["country"].dropna().astype(str).unique()):
            if country not in report["countries"]:
                continue
            part = frame[frame["country"].astype(str) == country].reset_index(drop=True)
            part.attrs.update(frame.attrs)
            plans.append(plan_suppression(part, source, country, indicators, limits))
    return time.process_time() - start, plans


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (the report's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def build_demo_report(base: Path) -> dict:
    """Build the demo report into ``base`` (as the output tests do); time it."""
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    from report_build import build_report

    reused = (base / "built.ok").exists()
    wall, cpu = time.perf_counter(), _cpu_seconds()
    outputs = build_report(base)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    plans = [json.loads(p.read_text()) for p in (outputs / ".disclosure_plans").glob("*.json")]
    plan_cpu = sum(p.get("seconds", 0.0) for p in plans)
    out = {"outputs": str(outputs), "reused_build": reused, "plans_in_build": len(plans),
           "plan_cpu_seconds_in_build": round(plan_cpu, 2)}
    if not reused:
        out.update(build_wall_seconds=round(wall, 1), build_cpu_seconds=round(cpu, 1),
                   suppression_share_of_build_cpu=round(plan_cpu / max(cpu, 1e-9), 4))
    return out


def headline_complements(plans) -> int:
    """Complements that are headline cells (everyone, a group, its reference, a category)."""
    return sum(1 for p in plans for cells in p.withheld.values() for pop, r in cells.items()
               if r == SECONDARY_REASON and len(pop) <= 1)


def synthetic_source(countries: int, groups: int, indicators: int, per_country: int = 1500,
                     seed: int = 20) -> tuple[pd.DataFrame, Catalogue, dict]:
    """A source with ``countries`` countries, ``indicators`` 0/1 indicators, and a catalogue of
    ``groups`` groups over the profile dimensions (disability, sex, age, displacement, income,
    area, minority)."""
    rng = np.random.default_rng(seed)
    n = countries * per_country
    frame = pd.DataFrame({
        "country": np.repeat([f"C{i:02d}" for i in range(countries)], per_country),
        "sex": rng.choice(["female", "male"], n),
        "age_group": rng.choice(["18-24", "25-34", "35-44", "45-54", "55-64", "65+"], n,
                                p=[0.2, 0.25, 0.2, 0.15, 0.12, 0.08]),
        "disability": rng.choice(["yes", "no"], n, p=[0.12, 0.88]),
        "urban_rural": rng.choice(["urban", "rural"], n),
        "displacement_status": rng.choice(["host", "idp", "refugee", "returnee"], n,
                                          p=[0.8, 0.08, 0.08, 0.04]),
        "income_group": rng.choice(["lowest", "low", "middle", "high", "highest"], n),
        "ethnicity_or_minority": rng.choice(["minority", "majority"], n, p=[0.1, 0.9]),
        "weight": rng.uniform(0.5, 3.0, n),
    })
    frame[AREA] = [f"{c}-{k}" for c, k in zip(frame["country"], rng.integers(0, 8, n))]
    for i in range(indicators):
        frame[f"ind{i:02d}"] = np.where(rng.random(n) < 0.03, np.nan, rng.random(n) < 0.3)
    for column in ("country", "sex", "age_group", "disability", "urban_rural",
                   "displacement_status", "income_group", "ethnicity_or_minority", AREA):
        frame[column] = frame[column].astype("string")
    frame.attrs["design"] = {"weight": "weight"}
    catalogue = Catalogue.from_catalogue()
    universe = catalogue.universes
    candidates = [
        ("disability", {"yes"}, {"no"}), ("sex", {"female"}, {"male"}),
        ("age_group", {"65+"}, None), ("age_group", {"18-24"}, None),
        ("displacement_status", {"idp", "refugee"}, {"host"}),
        ("displacement_status", {"refugee"}, {"host"}), ("displacement_status", {"idp"}, {"host"}),
        ("income_group", {"lowest"}, None), ("income_group", {"lowest", "low"}, None),
        ("urban_rural", {"rural"}, {"urban"}), ("ethnicity_or_minority", {"minority"}, {"majority"}),
        ("age_group", {"55-64", "65+"}, None),
    ]
    catalogue.groups = {}
    for k, (dim, members, reference) in enumerate(candidates[:groups]):
        rest = universe[dim] - members - {"<missing>"}
        catalogue.groups[f"g{k:02d}"] = (dim, frozenset(members),
                                         frozenset(reference) if reference else rest)
    catalogue_indicators = {f"ind{i:02d}": _percent() for i in range(indicators)}
    return frame, catalogue, catalogue_indicators


class _percent:
    """Stands in for a catalogue entry: only ``unit`` is read by the planner."""

    unit = "percent"


def cells_of(frame: pd.DataFrame, plan, catalogue: Catalogue) -> pd.DataFrame:
    """The planned cells as an attacker would read them: published counts, withheld flags."""
    codes = frame_categories(frame, catalogue, (*profile_dimensions(), AREA))
    positive = positive_weight_rows(frame, "weight")
    rows = []
    for indicator, populations in plan.cells.items():
        pops = sorted(populations)
        inside = membership(codes, pops, catalogue.universes)
        y = (np.ones(len(frame)) if indicator == RESPONDENTS
             else frame[indicator].to_numpy(float))
        counted = positive & ~np.isnan(y)
        n = inside[counted].sum(axis=0)
        for pop, count in zip(pops, n):
            rows.append({"source": plan.source, "country": plan.country, "indicator": indicator,
                         "population": pop, "suppressed": plan.reason(indicator, pop) is not None,
                         "n": float(count), "w": np.nan, "t": np.nan})
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=None,
                        help="folder to build the demo report in (default: a temporary one); "
                             "a finished build there is reused (then no build time)")
    parser.add_argument("--no-build", action="store_true",
                        help="skip the demo report (build, its attack and the share)")
    parser.add_argument("--processed", type=Path, default=None,
                        help="processed demo data to plan (default: the build's)")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "disclosure.json",
                        help="where to write the results (JSON)")
    parser.add_argument("--no-demo", action="store_true",
                        help="the synthetic source only (no demo build, plans or attack)")
    parser.add_argument("--no-synthetic", action="store_true", help="the demo report only")
    parser.add_argument("--outputs", type=Path, default=None,
                        help="with --no-build: a built report to attack")
    parser.add_argument("--countries", type=int, default=20)
    parser.add_argument("--groups", type=int, default=12)
    parser.add_argument("--indicators", type=int, default=30)
    args = parser.parse_args()
    limits = Thresholds()
    results: dict = {}
    started = time.perf_counter()

    if args.no_demo:
        pass
    elif not args.no_build:
        base = args.base or Path(tempfile.mkdtemp(prefix="bench_disclosure_"))
        base.mkdir(parents=True, exist_ok=True)
        results["demo_build"] = build_demo_report(base)
        print(json.dumps(results["demo_build"], indent=2), flush=True)
        processed = args.processed or base / "processed"
    else:
        processed = args.processed or config.PROCESSED_DIR
    seconds, plans = demo_plans(processed, limits) if not args.no_demo else (0.0, [])
    secondary = sum(p.secondary for p in plans)
    published = sum(p.published for p in plans)
    results["demo"] = {"plans": len(plans), "suppression_cpu_seconds": round(seconds, 2),
                       "primary_cells": sum(p.primary for p in plans),
                       "complementary_cells": secondary, "published_cells": published,
                       "complementary_share_of_published": round(secondary / max(published, 1), 4),
                       "headline_complements": headline_complements(plans)}
    build = results.get("demo_build", {})
    if not build and args.outputs is not None:
        build = {"outputs": str(args.outputs)}
    if build.get("build_cpu_seconds"):
        results["demo"]["suppression_share_of_build_cpu"] = round(
            seconds / build["build_cpu_seconds"], 4)
    if build:
        start = time.process_time()
        findings = attack_published(Path(build["outputs"]), limits.suppress_below)
        counts = [f for f in findings if f.quantity == "n_unweighted"]
        narrowest = min(counts, key=lambda f: f.width, default=None)
        results["demo"].update(
            attack_cpu_seconds=round(time.process_time() - start, 2),
            withheld_counts_attacked=len(counts),
            narrower_than_threshold=sum(f.width < limits.suppress_below - 1e-6 for f in counts),
            narrowest_interval=round(narrowest.width, 3) if narrowest else None,
            narrowest_source=narrowest.source if narrowest else None,
            attack_to_suppression=round((time.process_time() - start) / max(seconds, 1e-9), 3))
    if args.no_demo:
        del results["demo"]
    else:
        print(json.dumps(results["demo"], indent=2), flush=True)

    if args.no_synthetic:
        return _write(results, args.results, started)
    frame, catalogue, indicators = synthetic_source(args.countries, args.groups, args.indicators)
    plan_seconds = attack_seconds = 0.0
    narrowest, withheld, complete, narrow = np.inf, 0, 0, 0
    secondary = published = headline = 0
    for country, part in frame.groupby("country", sort=True):
        part = part.reset_index(drop=True)
        part.attrs.update(frame.attrs)
        start = time.process_time()
        plan = plan_suppression(part, "synthetic", str(country), indicators, limits,
                                catalogue=Catalogue(dict(catalogue.universes), dict(catalogue.groups)))
        plan_seconds += time.process_time() - start
        secondary += plan.secondary
        published += plan.published
        headline += headline_complements([plan])
        cells = cells_of(part, plan, catalogue)
        start = time.process_time()
        found = attack_cells(cells, catalogue, limits.suppress_below, weighted=False,
                             enough=limits.suppress_below)
        attack_seconds += time.process_time() - start
        withheld += len(found)
        complete += sum(f.complete for f in found)
        narrow += sum(f.width < limits.suppress_below - 1e-6 for f in found)
        narrowest = min([narrowest, *[f.width for f in found]])
        print(f"  {country}: so far plan {plan_seconds:.1f} s, attack {attack_seconds:.1f} s "
              f"(CPU); complements {secondary} of {published} published ({headline} headline), "
              f"{withheld} withheld counts attacked, {narrow} narrower than the threshold, "
              f"narrowest >= {narrowest:.1f}", flush=True)
    results["synthetic"] = {"countries": args.countries, "groups": args.groups,
                            "indicators": args.indicators, "respondents": len(frame),
                            "suppression_cpu_seconds": round(plan_seconds, 2),
                            "attack_cpu_seconds": round(attack_seconds, 2),
                            "attack_to_suppression": round(attack_seconds / max(plan_seconds, 1e-9), 3),
                            "withheld_counts_attacked": withheld,
                            "solved_exactly": complete, "narrower_than_threshold": narrow,
                            "narrowest_interval_at_least": round(float(narrowest), 3),
                            "complementary_cells": secondary, "published_cells": published,
                            "complementary_share_of_published": round(secondary / max(published, 1), 4),
                            "headline_complements": headline}
    return _write(results, args.results, started)


def _write(results: dict, out: Path, started: float) -> int:
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
