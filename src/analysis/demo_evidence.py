"""SYNTHETIC partner studies of the demo collaborative, with their known truth.

The collaborative's 2021 report drew on 38 partner studies that published only aggregates.
This module makes 38 such studies for the demo, written as the study-extraction workbook
partners fill in (``data/raw/demo/studies/partner_studies.xlsx``, studies S01–S37) and one
YAML study card (``S38.yml``), read through the source card
``params/sources/demo_partner_studies.yml``.

How the studies are made
------------------------
- Each study is about one population group in one country (a *focus*, :data:`FOCUS`: some
  groups and countries have many studies, some only one) and publishes 2–4 indicators.
- The truth of a cell (indicator × group × country) is the prevalence ``π`` among the group's
  members in the demo's synthetic population of that country (the same populations the demo
  surveys are drawn from), so pooled studies and design-based survey estimates aim at the same
  number. Studies differ by design and setting: study ``i`` measures
  ``θ_i = logit⁻¹(logit π + u_i)``, ``u_i ~ N(0, τ²)`` with the planted ``τ`` of the cell, and
  publishes ``x_i ~ Binomial(n_i, θ_i)``. This is exactly the random-effects model of
  :func:`analysis.evidence.pool` on the logit scale, with ``μ = logit π``.
- Mixed sampling (probability, quota, convenience, respondent-driven, administrative) and modes;
  a few studies publish only a percentage (one decimal) and n, a few a 95% interval (Wilson),
  some a reference-group estimate; two studies have a zero cell (forced to 0 events, listed in the
  truth, to exercise metafor's 0.5 rule).
- Each study has a Hoy et al. (2012) appraisal consistent with its sampling (random selection is
  low risk only for probability samples, and so on); some overall ratings are left to be derived.

:func:`simulate_meta_analyses` draws many meta-analyses from the same model for the coverage
test of the pooled intervals. Everything here is synthetic: no real study or person is described.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

#: Folder (inside the demo folder) and files of the studies.
STUDIES_DIR = "studies"
WORKBOOK = "partner_studies.xlsx"
YAML_STUDY = "S38.yml"
N_STUDIES = 38

#: (group, country, number of studies): the focus of each study, in order of study id.
FOCUS = (
    ("persons_with_disabilities", "KEN", 8),
    ("displaced_people", "UGA", 6),
    ("women", "UGA", 6),
    ("persons_with_disabilities", "BGD", 5),
    ("older_people", "SEN", 4),
    ("young_people", "KEN", 4),
    ("women", "SEN", 2),
    ("older_people", "BGD", 1),
    ("young_people", "SEN", 1),
    ("persons_with_disabilities", "UGA", 1),
)
#: Indicators studies publish, with how often (relative weight).
INDICATORS = {"food_insecurity": 5, "income_loss": 4, "missed_health_care": 4,
              "experienced_violence": 2, "education_disrupted": 1, "discrimination": 2,
              "received_community_support": 1}
SAMPLING = {"probability": 0.3, "quota": 0.15, "convenience": 0.35, "respondent_driven": 0.1,
            "administrative": 0.1}
MODES = ("phone", "face_to_face", "online", "sms_radio", "mixed")
GROUP_DEFINITION = {"persons_with_disabilities": ("wg_ss", "self_identified"),
                    "displaced_people": ("service_records", "self_identified"),
                    "women": ("self_identified",), "older_people": ("self_identified", "proxy_report"),
                    "young_people": ("self_identified",)}
PARTNERS = ("Inclusion Network", "Refugee Voices", "Women's Forum", "Disability Rights Coalition",
            "Elders' Association", "Youth Action", "Community Health Alliance", "Minority Rights Group")
#: Planted between-study standard deviation on the logit scale (one value per cell, drawn here).
TAU_RANGE = (0.15, 0.6)
#: Studies with a forced zero cell (0 events): study ids and the indicator.
ZERO_CELL_STUDIES = (("S29", "experienced_violence"), ("S30", "experienced_violence"))


def _logit(p):
    return np.log(p / (1 - p))


def _expit(x):
    return 1 / (1 + np.exp(-x))


def _wilson(x: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def cell_prevalence(pops: dict, groups: dict) -> dict:
    """Population prevalence among each group's members: ``{(indicator, group, country): π}``."""
    out = {}
    for group_id, country, _ in FOCUS:
        frame = pops[country].frame
        members = (groups[group_id].assign(frame) == "group").fillna(False).to_numpy()
        for indicator in INDICATORS:
            value = float(frame.loc[members, indicator].mean())
            out[(indicator, group_id, country)] = min(max(value, 0.005), 0.995)
    return out


def make_studies(pops: dict, rng: np.random.Generator, groups: dict | None = None) -> tuple[dict, list[dict], dict]:
    """The 38 studies: workbook sheets, the YAML study, and the truth (see the module docstring)."""
    from analysis.schema import load_groups

    groups = groups or load_groups()
    prevalence = cell_prevalence(pops, groups)
    tau = {cell: float(rng.uniform(*TAU_RANGE)) for cell in sorted(prevalence)}
    names = list(INDICATORS)
    weights = np.array(list(INDICATORS.values()), dtype=float)
    sampling_names = list(SAMPLING)
    sampling_p = np.array(list(SAMPLING.values()))
    studies, estimates, appraisal, truth_studies = [], [], [], []
    number = 0
    for group_id, country, count in FOCUS:
        for _ in range(count):
            number += 1
            sid = f"S{number:02d}"
            sampling = str(rng.choice(sampling_names, p=sampling_p))
            size = int(rng.integers(8, 61)) * 10
            k_ind = int(rng.integers(2, 5))
            chosen = list(rng.choice(names, size=k_ind, replace=False, p=weights / weights.sum()))
            zero = [ind for s, ind in ZERO_CELL_STUDIES if s == sid]
            for ind in zero:
                if ind not in chosen:
                    chosen.append(ind)
            form = "percent" if number % 7 == 3 else "count"
            with_interval = number % 6 == 4
            with_reference = number % 5 == 2
            start = pd.Timestamp("2020-04-01") + pd.Timedelta(days=int(rng.integers(0, 300)))
            end = start + pd.Timedelta(days=int(rng.integers(14, 90)))
            studies.append({
                "study_id": sid, "partner": PARTNERS[number % len(PARTNERS)],
                "title": f"Rapid assessment {number} of COVID-19 and {group_id.replace('_', ' ')} (SYNTHETIC)",
                "year": int(end.year) + int(rng.integers(0, 2)),
                "citation": f"{PARTNERS[number % len(PARTNERS)]} ({int(end.year)}). SYNTHETIC demo study {sid}.",
                "url": None, "countries": country, "period_start": start.date().isoformat(),
                "period_end": end.date().isoformat(), "groups": group_id,
                "group_definition": str(rng.choice(GROUP_DEFINITION[group_id])), "sampling": sampling,
                "mode": str(rng.choice(MODES)), "sample_size": size,
            })
            study_truth = {"study_id": sid, "sampling": sampling, "estimates": []}
            for indicator in chosen:
                cell = (indicator, group_id, country)
                mu = float(_logit(prevalence[cell]))
                theta = float(_expit(mu + rng.normal(0, tau[cell])))
                n = round(size * rng.uniform(0.6, 1.0))
                events = 0 if indicator in zero else int(rng.binomial(n, theta))
                row = {"study_id": sid, "indicator": indicator, "group": group_id,
                       "reference_group": None, "country": country, "events": None, "percent": None,
                       "n": n, "ci_low": None, "ci_high": None, "reference_events": None,
                       "reference_percent": None, "reference_n": None}
                if form == "percent":
                    row["percent"] = round(100 * events / n, 1)
                else:
                    row["events"] = events
                if with_interval:
                    low, high = _wilson(events, n)
                    row["ci_low"], row["ci_high"] = round(100 * low, 1), round(100 * high, 1)
                if with_reference:
                    ref_n = round(n * rng.uniform(1.0, 2.0))
                    ref_p = float(_expit(mu - 0.4 + rng.normal(0, 0.2)))
                    row.update(reference_group="reference", reference_n=ref_n,
                               reference_events=int(rng.binomial(ref_n, ref_p)))
                estimates.append(row)
                study_truth["estimates"].append({"indicator": indicator, "study_prevalence": round(theta, 6),
                                                 "forced_zero_cell": bool(indicator in zero)})
            items = _appraise(rng, sampling)
            overall = None if number % 3 == 0 else _judge(items)
            appraisal.append({"study_id": sid, **items, "overall": overall})
            truth_studies.append(study_truth)
    sheets = {"studies": pd.DataFrame(studies), "estimates": pd.DataFrame(estimates),
              "appraisal": pd.DataFrame(appraisal)}
    cells = [{"indicator": i, "group": g, "country": c, "prevalence": round(prevalence[(i, g, c)], 6),
              "mu_logit": round(float(_logit(prevalence[(i, g, c)])), 6), "tau": round(tau[(i, g, c)], 6),
              "studies": int(sum(1 for e in estimates if (e["indicator"], e["group"], e["country"]) == (i, g, c)))}
             for (i, g, c) in sorted(prevalence)]
    truth = {
        "how_to_read": (
            "Synthetic partner studies (S01-S37 in studies/partner_studies.xlsx, S38 in studies/S38.yml). "
            "cells: for each indicator x group x country, prevalence = the population value among the group's "
            "members (the pooled estimand, on the logit scale mu_logit), tau = planted between-study SD on the "
            "logit scale, studies = how many studies published it. Study i measures expit(mu_logit + u_i), "
            "u_i ~ N(0, tau^2), and publishes Binomial(n_i, that) events; forced_zero_cell studies publish 0."
        ),
        "model": "logit-normal random effects, binomial within studies",
        "studies_count": len(studies),
        "zero_cell_studies": [s for s, _ in ZERO_CELL_STUDIES],
        "cells": [c for c in cells if c["studies"] > 0],
        "studies": truth_studies,
    }
    return sheets, truth_studies, truth


def _appraise(rng, sampling: str) -> dict:
    """Hoy et al. (2012) item ratings consistent with the sampling (with some noise)."""
    probability = sampling == "probability"
    base = {
        "hoy_1": "low" if probability and rng.random() < 0.7 else "high",
        "hoy_2": "low" if probability or (sampling == "administrative" and rng.random() < 0.5) else "high",
        "hoy_3": "low" if probability else "high",
        "hoy_4": "low" if rng.random() < (0.6 if probability else 0.3) else "unclear",
        "hoy_5": "low" if rng.random() < 0.85 else "high",
        "hoy_6": "low" if rng.random() < 0.8 else "unclear",
        "hoy_7": "low" if rng.random() < 0.6 else "high",
        "hoy_8": "low" if rng.random() < 0.7 else "high",
        "hoy_9": "low" if rng.random() < 0.9 else "high",
        "hoy_10": "low" if rng.random() < 0.9 else "high",
    }
    return base


def _judge(items: dict) -> str:
    high = sum(v != "low" for v in items.values())
    return "low" if high <= 2 else "moderate" if high <= 5 else "high"


def _yaml_card(sheets: dict, sid: str) -> dict:
    """The study ``sid`` of the sheets as a YAML study card (and removed from the sheets)."""
    study = sheets["studies"].set_index("study_id").loc[sid]
    rows = sheets["estimates"][sheets["estimates"]["study_id"] == sid]
    appraisal = sheets["appraisal"].set_index("study_id").loc[sid]

    def plain(value):
        value = value.item() if hasattr(value, "item") else value
        return int(value) if isinstance(value, float) and value.is_integer() else value

    def clean(record):
        return {k: plain(v) for k, v in record.items()
                if not (v is None or (isinstance(v, float) and math.isnan(v)))}

    card = {"study_id": sid, "partner": study["partner"], "title": study["title"], "year": int(study["year"]),
            "citation": study["citation"], "countries": [study["countries"]],
            "period": {"start": study["period_start"], "end": study["period_end"]},
            "groups": [study["groups"]], "group_definition": study["group_definition"],
            "sampling": study["sampling"], "mode": study["mode"], "sample_size": int(study["sample_size"]),
            "appraisal": {"items": {k: appraisal[k] for k in appraisal.index if k.startswith("hoy_")}},
            "estimates": [clean({k: v for k, v in r.items() if k != "study_id"}) for r in rows.to_dict("records")]}
    if isinstance(appraisal["overall"], str):
        card["appraisal"]["overall"] = appraisal["overall"]
    for name in ("studies", "estimates", "appraisal"):
        sheets[name] = sheets[name][sheets[name]["study_id"] != sid].reset_index(drop=True)
    return card


STUDIES_README = """# Partner studies of the demo collaborative (SYNTHETIC)

SYNTHETIC: 38 made-up partner studies that published only aggregates, made by
`python -m analysis demo` (`analysis.demo_evidence`). No real study, organisation or person is
described. The truth (the population prevalence each cell aims at, the planted between-study
spread, which studies have a forced zero cell) is in `../TRUTH.json` under `partner_studies`.

| file | what | source card |
| --- | --- | --- |
| `partner_studies.xlsx` | the study-extraction workbook (sheets `studies`, `estimates`, `appraisal`) with studies S01-S37, as partners fill it in from `data/raw/templates/study_extraction.xlsx` | `params/sources/demo_partner_studies.yml` |
| `S38.yml` | study S38 as a YAML study card | the same |
"""


def write_demo_studies(out_dir: Path, pops: dict, rng: np.random.Generator, write_excel, notice: str) -> dict:
    """Write the demo studies into ``out_dir/studies/`` and return their truth (a TRUTH.json key).

    ``rng`` is the demo's generator for this component, ``write_excel`` its byte-stable xlsx
    writer and ``notice`` its SYNTHETIC notice (passed in by :func:`analysis.demo.generate`, so
    that this module does not import the demo module back).
    """
    folder = Path(out_dir) / STUDIES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    sheets, _, truth = make_studies(pops, rng)
    card = _yaml_card(sheets, f"S{N_STUDIES:02d}")
    write_excel(folder / WORKBOOK, {**sheets, "notice": pd.DataFrame({"notice": [notice]})})
    text = f"# {notice}\n" + yaml.safe_dump(card, sort_keys=False, allow_unicode=True)
    (folder / YAML_STUDY).write_text(text, encoding="utf-8")
    (folder / "README.md").write_text(STUDIES_README, encoding="utf-8")
    truth["files"] = [f"{STUDIES_DIR}/{WORKBOOK}", f"{STUDIES_DIR}/{YAML_STUDY}"]
    truth["source_card"] = "params/sources/demo_partner_studies.yml"
    truth["truth_file"] = "TRUTH.json"
    return truth


# --------------------------------------------------------------------------------------------
# Simulation for the coverage test


def simulate_meta_analyses(count: int, seed: int, *, k_range=(5, 15), prevalence_range=(0.1, 0.6),
                           tau_range=TAU_RANGE, n_range=(80, 600)) -> list[dict]:
    """``count`` meta-analyses drawn from the demo's model: each a dict with ``events``, ``n``,
    the true ``prevalence`` (``expit μ``) and ``tau``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        k = int(rng.integers(k_range[0], k_range[1] + 1))
        prevalence = float(rng.uniform(*prevalence_range))
        tau = float(rng.uniform(*tau_range))
        n = rng.integers(n_range[0], n_range[1] + 1, size=k)
        theta = _expit(_logit(prevalence) + rng.normal(0, tau, size=k))
        out.append({"events": rng.binomial(n, theta), "n": n, "prevalence": prevalence, "tau": tau})
    return out
