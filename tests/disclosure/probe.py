"""A probe source and a report on it, built with the chapter code (no notebooks), in seconds.

The probe source plants what disclosure control must survive (issue 10): in Kenya, groups of
exactly 12 (persons with disabilities), 24 (older people), 25 (displaced people), 49 (young
people) and 50 (minority) respondents; displaced people who live in one region only; older
people who are all women; a few zero-weight rows. Uganda is a plain second country, for the
chapter that maps every country.

:func:`build_probe_report` writes what the report's chapters publish for it — composition,
group estimates and gaps, intersections and excess disparities, areas and their gaps, the
cross-country estimates, the effect of weighting (all respondents) — into ``outputs/<chapter>/<group|source>/<country>/tables/*.csv``
through :func:`analysis.chapters.save_table`, the same gate as the notebooks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis import chapters
from analysis.sources import METADATA_KEY

SOURCE = "probe_source"
#: Planted group sizes in Kenya (respondents with a positive weight).
PLANTED = {"persons_with_disabilities": 12, "older_people": 24, "displaced_people": 25,
           "young_people": 49, "minority": 50}
INDICATORS = ["food_insecurity", "income_loss", "mental_distress", "meals_skipped_days"]
DESIGN = {"sample_type": "non_probability", "weight": "weight", "strata": None, "psu": None,
          "fpc": None, "replicate_columns": [], "replicate_method": None,
          "replicate_scale": None, "replicate_rscales": None, "fay_rho": None,
          "single_psu": "fail"}


def probe_frame(seed: int = 10, n_ken: int = 400, n_uga: int = 300) -> pd.DataFrame:
    """The probe respondents (common schema columns the chapters read)."""
    rng = np.random.default_rng(seed)
    parts = []
    for country, n, areas in (("KEN", n_ken, ["KE-110", "KE-200", "KE-300", "KE-400"]),
                              ("UGA", n_uga, ["UG-C", "UG-E", "UG-N"])):
        frame = pd.DataFrame({
            "country": country,
            "admin1_code": rng.choice(areas, n),
            "urban_rural": rng.choice(["urban", "rural"], n),
            "sex": rng.choice(["female", "male"], n),
            "age_group": rng.choice(["25-34", "35-44", "45-54", "55-64"], n),
            "disability": "no",
            "displacement_status": "host",
            "income_group": rng.choice(["lowest", "low", "middle", "high", "highest"], n),
            "ethnicity_or_minority": "majority",
        })
        if country == "KEN":
            rows = iter(rng.permutation(n))
            take = {k: [next(rows) for _ in range(v)] for k, v in PLANTED.items()}
            frame.loc[take["persons_with_disabilities"], "disability"] = "yes"
            frame.loc[take["older_people"], "age_group"] = "65+"
            frame.loc[take["older_people"], "sex"] = "female"  # a group all of one sex
            frame.loc[take["displaced_people"], "displacement_status"] = "idp"
            frame.loc[take["displaced_people"], "admin1_code"] = "KE-110"  # in one region only
            frame.loc[take["young_people"], "age_group"] = "18-24"
            frame.loc[take["minority"], "ethnicity_or_minority"] = "minority"
        else:
            frame.loc[rng.random(n) < 0.3, "disability"] = "yes"
            frame.loc[rng.random(n) < 0.2, "age_group"] = "65+"
            frame.loc[rng.random(n) < 0.2, "age_group"] = "18-24"
            frame.loc[rng.random(n) < 0.3, "displacement_status"] = "refugee"
        frame["admin1"] = frame["admin1_code"]
        frame["weight"] = rng.uniform(0.5, 3.0, n)
        for indicator in INDICATORS[:-1]:
            frame[indicator] = (rng.random(n) < 0.4).astype(float)
            frame.loc[rng.random(n) < 0.05, indicator] = np.nan  # item non-response
        frame["meals_skipped_days"] = rng.poisson(2.0, n).astype(float)
        parts.append(frame)
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "respondent_id", [f"r{i:05d}" for i in range(len(out))])
    out.insert(1, "source", SOURCE)
    out["sample_type"] = "non_probability"
    # zero-weight rows: counted by nobody (they are in a non-planted cell)
    out.loc[out.index[(out["country"] == "UGA")][:6], "weight"] = 0.0
    for column in ("country", "admin1_code", "admin1", "urban_rural", "sex", "age_group",
                   "disability", "displacement_status", "income_group", "ethnicity_or_minority"):
        out[column] = out[column].astype("string")
    return out


def write_probe(processed_dir: Path, frame: pd.DataFrame | None = None) -> Path:
    """Write the probe as a processed source (Parquet with its design in the metadata)."""
    frame = probe_frame() if frame is None else frame
    processed_dir.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps({"design": DESIGN, "source": {
        "id": SOURCE, "title": "Probe source (synthetic)", "kind": "microdata",
        "synthetic": True}}).encode()
    path = processed_dir / f"{SOURCE}.parquet"
    pq.write_table(table.replace_schema_metadata(meta), path)
    return path


def build_probe_report(processed_dir: Path, outputs: Path, groups=None) -> Path:
    """Run every table-publishing chapter step on the probe source into ``outputs``."""
    groups = groups or ["persons_with_disabilities", "older_people", "displaced_people",
                        "young_people", "women"]
    for country in ("KEN", "UGA"):
        run = chapters.start_run("data_profile", country=country, source=SOURCE,
                                 processed_dir=processed_dir,
                                 output_dir=outputs / "data_profile" / SOURCE / country)
        chapters.save_table(run, chapters.composition_all(run), "composition")
        run = chapters.start_run("official_statistics", country=country, sources=[SOURCE],
                                 processed_dir=processed_dir,
                                 output_dir=outputs / "official_statistics" / "all" / country)
        effect, _ = chapters.weighting_effect(run)
        chapters.save_table(run, effect, "weighting_effect")
        for group in groups:
            def start(chapter, group=group, country=country):
                return chapters.start_run(chapter, group=group, country=country,
                                          sources=[SOURCE], processed_dir=processed_dir,
                                          output_dir=outputs / chapter / group / country)

            run = start("group_profile")
            estimates = chapters.group_estimates(run)
            chapters.save_table(run, estimates, "group_estimates")
            chapters.save_table(run, chapters.group_gaps(run, estimates), "group_gaps")
            run = start("intersections")
            chapters.save_table(run, chapters.intersection_estimates(run), "intersection_cells")
            excess = chapters.excess_disparity_table(run, chapters.intersection_measures(run))
            chapters.save_table(run, excess, "excess_intersectional_disparity")
            run = start("geography")
            areas = chapters.admin1_estimates(run)
            chapters.save_table(run, areas, "area_estimates")
            chapters.save_table(run, chapters.admin1_gaps(run, areas), "area_gaps")
    for group in groups:
        run = chapters.start_run("geography_across_countries", group=group, country="all",
                                 sources=[SOURCE], processed_dir=processed_dir,
                                 output_dir=outputs / "geography_across_countries" / group / "all")
        chapters.save_table(run, chapters.country_estimates(run), "area_estimates")
    return outputs
