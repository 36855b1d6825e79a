"""The reference values copied into tests/results/ are the shared originals, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

RESULTS_DIR = Path(__file__).parent / "results"
COPIES = sorted(RESULTS_DIR.glob("*.json"))


def test_the_copies_exist():
    assert {p.name for p in COPIES} >= {"r_survey.json", "fixtures.json", "inequality_measures.json",
                                       "meta_analysis.json", "agreement.json"}


@pytest.mark.shared
@pytest.mark.parametrize("copy", COPIES, ids=lambda p: p.name)
def test_copy_equals_the_shared_original(copy, shared_dir):
    original = shared_dir / "golden" / copy.name
    assert original.exists(), f"{copy.name} is not in {shared_dir / 'golden'}: remove the copy or restore it"
    assert copy.read_bytes() == original.read_bytes(), (
        f"tests/results/{copy.name} differs from {original}: copy the new reference values again")
