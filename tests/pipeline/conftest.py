"""Fixtures of the pipeline tests; the tiny project itself is built by ``tiny_project.py``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tiny_project import TinyProject, build_project, resolved_runs

from analysis import config


@pytest.fixture(scope="session")
def code_snapshot(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("code") / "analysis"
    shutil.copytree(config.SRC_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture
def tiny_project(tmp_path, code_snapshot) -> TinyProject:
    return build_project(tmp_path / "project", code_snapshot)


@pytest.fixture
def resolve():
    """:func:`resolved_runs`, for test modules (tests/ is not a package)."""
    return resolved_runs
