"""Project paths, in one place.

Paths default to the project checkout (the folder holding ``pyproject.toml``). They can be
moved with environment variables, so that tests and users can point the suite elsewhere:

- ``ANALYSIS_PROJECT_ROOT``: the project root (default: found from this file's location,
  or the current directory when the package is installed elsewhere);
- ``ANALYSIS_SHARED``: the shared folder with real data and reference values
  (default: ``<project root>/../shared``).

The pydantic models of the params files live with the code that reads them:
:mod:`analysis.pipeline.matrix` (``params/report.yml``), :mod:`analysis.schema`
(``params/indicators.yml``, ``params/groups.yml``) and :mod:`analysis.sources.card`
(``params/sources/*.yml``).
"""

from __future__ import annotations

import os
from pathlib import Path


def _find_project_root() -> Path:
    env = os.environ.get("ANALYSIS_PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "params").is_dir():
            return parent
    return Path.cwd().resolve()


PROJECT_ROOT: Path = _find_project_root()
PARAMS_DIR: Path = PROJECT_ROOT / "params"
SOURCES_DIR: Path = PARAMS_DIR / "sources"
REPORT_FILE: Path = PARAMS_DIR / "report.yml"
GROUPS_FILE: Path = PARAMS_DIR / "groups.yml"
INDICATORS_FILE: Path = PARAMS_DIR / "indicators.yml"
DATA_DIR: Path = PROJECT_ROOT / "data"
RAW_DIR: Path = DATA_DIR / "raw"
DEMO_DIR: Path = RAW_DIR / "demo"
BOUNDARIES_DIR: Path = RAW_DIR / "boundaries"
PROCESSED_DIR: Path = DATA_DIR / "processed"
NOTEBOOKS_DIR: Path = PROJECT_ROOT / "notebooks"
OUTPUTS_DIR: Path = PROJECT_ROOT / "outputs"
SRC_DIR: Path = Path(__file__).resolve().parent
SHARED_DIR: Path = Path(os.environ.get("ANALYSIS_SHARED", PROJECT_ROOT.parent / "shared")).resolve()

#: Name of the Jupyter kernel that ``make`` registers for the project's environment.
KERNEL_NAME = "analysis"
