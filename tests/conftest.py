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


#: Copies of the reference values (``../shared/golden``), so a fresh clone has them.
RESULTS_DIR = Path(__file__).parent / "results"


@pytest.fixture(scope="session")
def golden():
    """Load a reference-values file by stem: ``golden("r_survey")``, from ``tests/results``
    (copies of ``../shared/golden``, kept equal by tests/test_reference_results.py)."""

    def load(name: str) -> dict:
        path = RESULTS_DIR / f"{name}.json"
        if not path.exists():
            path = _require_shared(config.SHARED_DIR / "golden" / f"{name}.json")
        return json.loads(path.read_text())

    return load


def _listing(folder: Path) -> dict[str, int]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def project_outputs_untouched():
    """No test writes into the project's own ``outputs/`` (a user's real report lives there):
    tests build into their own temporary folders. Fails the session's last test otherwise."""
    before = _listing(config.OUTPUTS_DIR)
    yield
    after = _listing(config.OUTPUTS_DIR)
    changed = sorted(k for k in after if before.get(k) != after[k]) + sorted(set(before) - set(after))
    assert not changed, f"tests wrote into the project's outputs/ ({len(changed)} files, e.g. {changed[:3]})"
