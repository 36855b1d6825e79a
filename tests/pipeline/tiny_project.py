"""A tiny project for the pipeline tests (helpers; fixtures in conftest.py): two processed sources, two notebooks, one report file.

- ``src_a``: KEN and UGA, with sex and disability; ``src_b``: SEN, disability only (no sex), so
  women × SEN is "not applicable" and persons with disabilities × SEN reads only ``src_b``.
- ``notebooks/tiny.ipynb`` (per group × country) writes one result table and one figure (SVG and
  PNG); a file ``control/<group>_<country>.fail`` holding ``raise``, ``sleep``, ``kill``,
  ``kill_worker``, ``interrupt``, ``enospc`` or ``wait`` (until ``control/release`` exists)
  makes that run fail (or wait) in that way. ``notebooks/tiny_synthesis.ipynb`` runs once, after
  the others, from ``outputs/tables/all_estimates.csv``.
- The library source is snapshotted once per session (``code_dir``) so that keys do not move
  while other people edit ``src/analysis``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import config

NOTEBOOKS = Path(__file__).parent / "notebooks"

REPORT = """\
title: Tiny report
countries: [KEN, UGA, SEN]
groups: [women, persons_with_disabilities]
defaults: {{processed_dir: processed, outputs_dir: outputs, timeout: {timeout}}}
chapters:
  tiny:
    notebook: notebooks/tiny.ipynb
    title: Tiny chapter
    parameters: {{control_dir: {control}}}
  tiny_synthesis:
    notebook: notebooks/tiny_synthesis.ipynb
    title: Tiny synthesis
    scope: once
    after: [tiny]
"""


def make_source(path: Path, countries: list[str], with_sex: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 120 * len(countries)
    frame = pd.DataFrame({
        "country": np.repeat(countries, 120),
        "disability": np.tile(["yes", "no"], n // 2),
        "food_insecurity": rng.integers(0, 2, n).astype(float),
    })
    frame["sex"] = np.tile(["female", "female", "male", "male"], n // 4) if with_sex else pd.NA
    frame.to_parquet(path)


@dataclass
class TinyProject:
    root: Path
    report: Path
    groups_file: Path
    code_dir: Path
    control: Path

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    def plant(self, group: str, country: str, action: str) -> None:
        (self.control / f"{group}_{country}.fail").write_text(action)

    def clear(self) -> None:
        for path in self.control.glob("*.fail"):
            path.unlink()

    def kwargs(self, **extra) -> dict:
        return {"project_root": self.root, "groups_file": self.groups_file, "code_dir": self.code_dir,
                "progress": False, "echo": lambda *a: None} | extra


def build_project(root: Path, code_dir: Path, timeout: float = 60) -> TinyProject:
    (root / "processed").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "control").mkdir()
    for notebook in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(notebook, root / "notebooks" / notebook.name)
    make_source(root / "processed" / "src_a.parquet", ["KEN", "UGA"], True, seed=1)
    make_source(root / "processed" / "src_b.parquet", ["SEN"], False, seed=2)
    groups = root / "groups.yml"
    shutil.copy(config.GROUPS_FILE, groups)
    shutil.copy(config.INDICATORS_FILE, root / "indicators.yml")
    report = root / "report.yml"
    report.write_text(REPORT.format(timeout=timeout, control=root / "control"))
    return TinyProject(root=root, report=report, groups_file=groups, code_dir=code_dir, control=root / "control")


def resolved_runs(project: TinyProject, timeout: float | None = None) -> dict:
    """The project's runs with parameters checked and resolved, keyed by run id."""
    from analysis.pipeline.matrix import check_parameters, expand_runs, load_report

    ctx = load_report(project.report, project_root=project.root, groups_file=project.groups_file)
    runs = check_parameters(expand_runs(ctx), ctx.report_path)
    if timeout:
        for run in runs:
            run.timeout = timeout
    return {r.run_id: r for r in runs}
