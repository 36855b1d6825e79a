"""Nothing unsafe is published: no small cell in any table or figure data, no planted canary anywhere.

Builds (once per session, shared with the browser suite) the reduced demo report, then reads every
file under its outputs folder.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from analysis import config
from analysis.disclosure import load_thresholds

sys.path.insert(0, str(Path(__file__).parent / "browser"))
from report_build import session_outputs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def outputs_dir(tmp_path_factory) -> Path:
    return session_outputs(tmp_path_factory)


def _canaries() -> list[str]:
    """The canary marker and every example canary planted in the demo's personal columns."""
    canaries = json.loads((config.DEMO_DIR / "TRUTH.json").read_text())["canaries"]
    found = [canaries["marker"]]
    for spec in canaries.get("personal_columns", {}).values():
        found += list(spec.get("examples", []))
    return found


DATA_URI = re.compile(r"data:([\w/+.-]+);base64,([A-Za-z0-9+/=]+)")


def _decoded_data_uri(match) -> str:
    """Embedded text (SVG, HTML, JSON) is decoded and checked; embedded raster images are not text
    (their compressed bytes can spell anything by chance)."""
    kind, payload = match.group(1), match.group(2)
    if kind.startswith("image/") and "svg" not in kind:
        return ""
    return base64.b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8", "ignore")


def _text_of(path: Path) -> str:
    if path.suffix == ".xlsx" or path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            return "\n".join(archive.read(n).decode("utf-8", "ignore") for n in archive.namelist())
    return DATA_URI.sub(_decoded_data_uri, path.read_bytes().decode("utf-8", "ignore"))


def _published_tables(outputs: Path):
    for path in sorted(outputs.rglob("*.csv")):
        frame = pd.read_csv(path)
        if {"flag", "n_unweighted"} <= set(frame.columns):
            yield path, frame
    for path in sorted(outputs.rglob("*.xlsx")):
        for sheet, frame in pd.read_excel(path, sheet_name=None, engine="openpyxl").items():
            if {"flag", "n_unweighted"} <= set(frame.columns):
                yield path.with_name(f"{path.name}[{sheet}]"), frame


def test_outputs_were_built(outputs_dir):
    assert (outputs_dir / "index.html").exists()
    assert list(outputs_dir.rglob("*.csv")), "the reduced report wrote no tables"
    assert list(outputs_dir.rglob("figures/*.svg")), "the reduced report drew no figures"


def test_no_published_cell_below_the_suppression_threshold(outputs_dir):
    limit = load_thresholds().suppress_below
    problems = []
    checked = 0
    for path, frame in _published_tables(outputs_dir):
        checked += len(frame)
        n = pd.to_numeric(frame["n_unweighted"], errors="coerce")
        shown = frame["flag"].astype(str) != "suppressed"
        small = shown & (n < limit)
        if small.any():
            problems.append(f"{path.relative_to(outputs_dir)}: {int(small.sum())} rows with n < {limit} not suppressed")
        numbers = [c for c in ("estimate", "se", "ci_low", "ci_high", "n_unweighted", "n_weighted") if c in frame]
        leaked = (~shown) & frame[numbers].notna().any(axis=1)
        if leaked.any():
            problems.append(f"{path.relative_to(outputs_dir)}: {int(leaked.sum())} suppressed rows still carry numbers")
    assert checked > 0, "no result table found under outputs/"
    assert not problems, "; ".join(problems)


def test_figure_data_never_shows_a_suppressed_cell(outputs_dir):
    """Alt text is the figure's data in words: a suppressed cell must be described as suppressed."""
    pages = list(outputs_dir.rglob("*.html"))
    assert pages
    for path in pages:
        text = path.read_text(encoding="utf-8", errors="ignore")
        assert "suppressed (too few respondents) (95% CI" not in text, f"{path}: a suppressed cell has an interval"


def test_no_canary_anywhere_under_outputs(outputs_dir):
    canaries = _canaries()
    assert canaries, "TRUTH.json lists no canaries"
    leaks = []
    for path in sorted(p for p in outputs_dir.rglob("*") if p.is_file()):
        if path.suffix in {".png"}:
            continue  # raster pixels cannot hold text that a reader could copy; SVG/HTML are checked
        text = _text_of(path)
        for canary in canaries:
            if canary in text:
                leaks.append(f"{path.relative_to(outputs_dir)}: {canary}")
    assert not leaks, f"planted personal data reached the outputs: {leaks[:5]}"
