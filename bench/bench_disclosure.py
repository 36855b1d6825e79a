"""Benchmark: whole-report suppression and the LP attack, against the report build they sit in.

- **demo**: plans every source × country of the demo report (``data/processed``, what the runs
  compute once each and cache) and, when a built report is given (``--outputs``), attacks every
  withheld cell of it from its published files. The peer is the report build itself: its wall
  time from the build's own summary line (``--report-seconds``, default the 6 minutes the README
  states), so the ratio says how much suppression adds to ``make report`` (target < 10%).
- **synthetic**: one source with 20 countries × 12 groups × 30 percent indicators
  (``--countries``, ``--groups``, ``--indicators``), planned and attacked per country.

Also prints what the protection costs in cells: the complementary cells the plans withhold,
absolute and as a share of the cells they publish. Results go to
``bench/results/disclosure.json``.

    .venv/bin/python bench/bench_disclosure.py --outputs outputs
"""

from __future__ import annotations

import argparse
import json
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
from analysis.disclosure_plan import AREA, plan_suppression, profile_dimensions
from analysis.schema import load_indicators

ROOT = Path(__file__).resolve().parents[1]


def demo_plans(processed: Path, limits: Thresholds) -> tuple[float, list]:
    from analysis.sources import load_processed

    report = config.read_yaml_mapping(config.REPORT_FILE, AssertionError, "report file")
    indicators = load_indicators()
    plans, start = [], time.perf_counter()
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
    return time.perf_counter() - start, plans


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
    parser.add_argument("--processed", type=Path, default=config.PROCESSED_DIR)
    parser.add_argument("--outputs", type=Path, default=None,
                        help="a built report to attack (e.g. outputs)")
    parser.add_argument("--report-seconds", type=float, default=360.0,
                        help="wall time of the report build the suppression is part of")
    parser.add_argument("--countries", type=int, default=20)
    parser.add_argument("--groups", type=int, default=12)
    parser.add_argument("--indicators", type=int, default=30)
    args = parser.parse_args()
    limits = Thresholds()
    results: dict = {}

    seconds, plans = demo_plans(args.processed, limits)
    secondary = sum(p.secondary for p in plans)
    published = sum(p.published for p in plans)
    results["demo"] = {"plans": len(plans), "suppression_seconds": round(seconds, 2),
                       "report_seconds": args.report_seconds,
                       "suppression_share_of_report": round(seconds / args.report_seconds, 4),
                       "primary_cells": sum(p.primary for p in plans),
                       "complementary_cells": secondary, "published_cells": published,
                       "complementary_share_of_published": round(secondary / max(published, 1), 4)}
    if args.outputs is not None and args.outputs.exists():
        start = time.perf_counter()
        findings = attack_published(args.outputs, limits.suppress_below)
        results["demo"].update(attack_seconds=round(time.perf_counter() - start, 2),
                               withheld_attacked=len(findings),
                               narrowest_interval=min((f.width for f in findings), default=None))
    else:
        results["demo"]["attack"] = "skipped: no built report given (--outputs)"

    frame, catalogue, indicators = synthetic_source(args.countries, args.groups, args.indicators)
    plan_seconds = attack_seconds = 0.0
    narrowest, withheld, secondary, published = np.inf, 0, 0, 0
    for country, part in frame.groupby("country", sort=True):
        part = part.reset_index(drop=True)
        part.attrs.update(frame.attrs)
        start = time.perf_counter()
        plan = plan_suppression(part, "synthetic", str(country), indicators, limits,
                                catalogue=Catalogue(dict(catalogue.universes), dict(catalogue.groups)))
        plan_seconds += time.perf_counter() - start
        secondary += plan.secondary
        published += plan.published
        cells = cells_of(part, plan, catalogue)
        start = time.perf_counter()
        found = attack_cells(cells, catalogue, limits.suppress_below, weighted=False)
        attack_seconds += time.perf_counter() - start
        withheld += len(found)
        narrowest = min([narrowest, *[f.width for f in found]])
    results["synthetic"] = {"countries": args.countries, "groups": args.groups,
                            "indicators": args.indicators, "respondents": len(frame),
                            "suppression_seconds": round(plan_seconds, 2),
                            "attack_seconds": round(attack_seconds, 2),
                            "attack_to_suppression": round(attack_seconds / max(plan_seconds, 1e-9), 3),
                            "withheld_attacked": withheld, "narrowest_interval": narrowest,
                            "complementary_cells": secondary, "published_cells": published}
    out = ROOT / "bench" / "results" / "disclosure.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
