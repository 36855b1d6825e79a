"""Work that parallel runs share is done once: a disclosure plan per source × country, and the
import closure of each library file per process (planning)."""

from __future__ import annotations

import multiprocessing
import sys
import time
from pathlib import Path

import pandas as pd

from analysis import disclosure_plan, hashing
from analysis.disclosure import Thresholds

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "disclosure"))
from probe import DESIGN, SOURCE, probe_frame

LIMITS = Thresholds(25, 50)


def _plan_in_child(frame: pd.DataFrame, indicators: dict, count_file: str, cache: str) -> None:
    """One forked "run": computes (or reads) the plan while counting real computations."""
    import os

    os.environ[disclosure_plan.CACHE_ENV] = cache
    disclosure_plan._MEMORY.clear()
    real = disclosure_plan.plan_suppression

    def counted(*args, **kwargs):
        with open(count_file, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(1.0)  # long enough for the other run to arrive while this one computes
        return real(*args, **kwargs)

    disclosure_plan.plan_suppression = counted
    disclosure_plan.plan_for(frame, SOURCE, "KEN", indicators, LIMITS)


def test_parallel_runs_of_one_source_and_country_compute_its_disclosure_plan_once(tmp_path):
    from analysis.schema import load_indicators

    frame = probe_frame()
    frame = frame[frame["country"] == "KEN"].reset_index(drop=True)
    frame.attrs["design"] = DESIGN
    indicators = {"income_loss": load_indicators()["income_loss"]}
    count_file = tmp_path / "computed.txt"
    context = multiprocessing.get_context("fork")
    runs = [context.Process(target=_plan_in_child, args=(frame, indicators, str(count_file), str(tmp_path / "plans")))
            for _ in range(3)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
    assert [run.exitcode for run in runs] == [0, 0, 0]
    assert len(count_file.read_text().split()) == 1, "the plan was computed by more than one run"
    assert len(list((tmp_path / "plans").glob(f"{SOURCE}.KEN.*.json"))) == 1


def test_import_closure_parses_each_file_once_while_unchanged_and_sees_edits(tmp_path, monkeypatch):
    src = tmp_path / "analysis"
    src.mkdir()
    (src / "__init__.py").write_text("")
    (src / "a.py").write_text("from analysis import b\n")
    (src / "b.py").write_text("x = 1\n")
    (src / "c.py").write_text("y = 2\n")
    parsed = []
    real_parse = hashing.ast.parse

    def counting_parse(source, *args, **kwargs):
        parsed.append(kwargs.get("filename"))
        return real_parse(source, *args, **kwargs)

    monkeypatch.setattr(hashing.ast, "parse", counting_parse)
    first = hashing.module_closure(["analysis.a"], src)
    assert {p.name for p in first} == {"__init__.py", "a.py", "b.py"}
    count = len(parsed)
    assert hashing.module_closure(["analysis.a"], src) == first
    assert len(parsed) == count  # nothing parsed again
    (src / "b.py").write_text("from analysis import c\n")  # an edit adds an import: seen
    assert {p.name for p in hashing.module_closure(["analysis.a"], src)} == {"__init__.py", "a.py", "b.py", "c.py"}


def test_a_command_imports_only_its_own_module_not_the_pipeline_and_matplotlib():
    import subprocess

    probe = ("import sys\nfrom analysis.__main__ import build_parser\n"
             "parser = build_parser('ingest')\n"
             "args = parser.parse_args(['ingest'])\n"
             "assert args._module.__name__ == 'analysis.sources.ingest'\n"
             "heavy = [m for m in ('analysis.pipeline.runner', 'matplotlib', 'seaborn') if m in sys.modules]\n"
             "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-800:]
