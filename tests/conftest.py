"""Shared test fixtures.

Tests that read ``../shared`` (real data and reference values) use the ``shared_dir``
fixture: on a user's machine without ``../shared`` they skip and say why; in CI
(``CI=true``) a missing ``../shared`` is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from analysis import config

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _require_shared(path: Path) -> Path:
    if path.exists():
        return path
    message = (
        f"{path} is missing: tests that check against real data and R reference values need "
        "the project's shared folder beside the checkout (../shared)"
    )
    if IN_CI:
        pytest.fail(message + " — in CI this is an error, not a skip")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` folder (skips outside CI when absent, fails in CI)."""
    return _require_shared(config.SHARED_DIR)


@pytest.fixture(scope="session")
def r_survey_dir(shared_dir) -> Path:
    """``../shared/data/r-survey``: the API and NHANES fixtures of R's survey package."""
    return _require_shared(shared_dir / "data" / "r-survey")


@pytest.fixture(scope="session")
def golden(shared_dir):
    """Load a reference-values file from ``../shared/golden`` by stem: ``golden("r_survey")``."""

    def load(name: str) -> dict:
        path = _require_shared(shared_dir / "golden" / f"{name}.json")
        return json.loads(path.read_text())

    return load
