"""pyproject.toml (what `make` installs with pip) and environment.yml (for conda users) agree."""

from __future__ import annotations

import re
import tomllib

import yaml
from packaging.requirements import Requirement

from analysis import config

# conda-forge names that differ from the PyPI names (keep the mapping explicit).
CONDA_TO_PYPI: dict[str, str] = {"python-duckdb": "duckdb"}
NOT_PACKAGES = {"python", "pip"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_requirements() -> dict[str, str]:
    data = tomllib.loads((config.PROJECT_ROOT / "pyproject.toml").read_text())
    project = data["project"]
    requirements = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    out = {}
    for text in requirements:
        req = Requirement(text)
        out[_normalise(req.name)] = str(req.specifier)
    return out


def _environment_requirements() -> dict[str, str]:
    env = yaml.safe_load((config.PROJECT_ROOT / "environment.yml").read_text())
    out = {}
    for item in env["dependencies"]:
        entries = item["pip"] if isinstance(item, dict) else [item]
        for text in entries:
            if text.startswith("-e"):
                continue
            # conda uses "name>=1.0" or "name 1.0"; both parse as a PEP 508 requirement once spaces go
            req = Requirement(re.sub(r"\s+", "", text))
            name = _normalise(CONDA_TO_PYPI.get(req.name, req.name))
            if name in NOT_PACKAGES:
                continue
            out[name] = str(req.specifier)
    return out


def test_same_packages_in_pyproject_and_environment():
    pip_side = _pyproject_requirements()
    conda_side = _environment_requirements()
    only_pip = sorted(set(pip_side) - set(conda_side))
    only_conda = sorted(set(conda_side) - set(pip_side))
    assert not only_pip, f"in pyproject.toml but not environment.yml: {only_pip}"
    assert not only_conda, f"in environment.yml but not pyproject.toml: {only_conda}"


def test_same_minimum_versions():
    pip_side = _pyproject_requirements()
    conda_side = _environment_requirements()
    differ = {n: (pip_side[n], conda_side[n]) for n in pip_side if pip_side[n] != conda_side.get(n)}
    assert not differ, f"version bounds differ (pyproject, environment.yml): {differ}"


def test_environment_python_matches_requires_python():
    data = tomllib.loads((config.PROJECT_ROOT / "pyproject.toml").read_text())
    env = yaml.safe_load((config.PROJECT_ROOT / "environment.yml").read_text())
    pythons = [
        d for d in env["dependencies"] if isinstance(d, str) and re.match(r"python(\s|[<>=!~]|$)", d)
    ]
    assert pythons == ["python" + data["project"]["requires-python"]]
