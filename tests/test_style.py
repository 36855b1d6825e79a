"""The code follows the project's lint rules (ruff, configured in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis import config


def test_ruff_finds_nothing_in_src_tests_and_bench():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: it is in the dev extra (pip install -e '.[dev]')")
    result = subprocess.run(
        [ruff, "check", "src", "tests", "bench"], cwd=config.PROJECT_ROOT,
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:]
