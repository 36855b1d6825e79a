"""Benchmark: ``python -m analysis ingest`` of a ~200 MB, ~2M-row CSV against plain ``pandas.read_csv``.

A synthetic survey export (SYNTHETIC: respondent ids, names in a personal column, free-text
comments, a stratified cluster design, ten unmapped question columns) is generated in a
temporary folder (never committed, removed afterwards unless ``--keep``). Each contender runs
in a fresh process, one after the other, and reports its own wall time and peak resident
memory (the child's ``ru_maxrss`` as ``os.wait4`` reports it to the parent, and its ``VmHWM``):

- **pandas**: ``pandas.read_csv(path)`` with its defaults (the peer: what reading the file costs
  at the least, types inferred, nothing checked);
- **pandas, text**: ``pandas.read_csv(path, dtype=str)``, how the ingest reads cells (codes
  such as ``"01"`` survive);
- **ingest**: ``python -m analysis ingest`` of one card over the file: encoding check, reading,
  personal-data scan of the free text and of every written text column, recodes, design,
  accounting, salted id hashes, validation, and the Parquet + log written.

Targets of issue 11: the ingest takes under 2 minutes and its peak memory stays under 3 times the
file size. Results, with the ratios ingest / pandas, go to ``bench/results/ingest.json``.
``python bench/bench_ingest.py [--rows 2000000] [--keep]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "ingest.json"
TARGET_SECONDS = 120
TARGET_MEMORY_RATIO = 3.0

CARD = {
    "id": "bench",
    "title": "Benchmark survey (SYNTHETIC)",
    "kind": "microdata",
    "synthetic": True,
    "files": [{"path": "bench.csv"}],
    "reader": "csv",
    "country": "KEN",
    "licence": "CC0 (synthetic benchmark data)",
    "personal_columns": ["name"],
    "id_column": "rid",
    "free_text_columns": ["comment"],
    "missing_codes": {-99: "refused"},
    "design": {"type": "probability", "weight": "wt", "strata": "stratum", "psu": "cluster", "single_psu": "adjust"},
    "columns": {"sex": "q_sex", "age": "q_age", "admin1": "region"},
    "recodes": {"sex": {"Femme": "female", "Homme": "male", "1": "female", "2": "male"}},
    "derive": {"age_group": "from_age", "admin1_code": "natural_earth"},
    "indicators": {"food_insecurity": {"column": "fi", "true_values": ["yes", 1], "false_values": ["no", 0]}},
}

REGIONS = ["Central", "Coast", "Eastern", "Nairobi", "North-Eastern", "Nyanza", "Rift Valley", "Western"]
PHRASES = [
    "the clinic was closed for two weeks", "we lost work at the market", "food prices went up",
    "school stopped and the children stayed home", "the community group brought maize",
    "no problems to report", "transport was too expensive", "my neighbour helped with rent",
]


def make_csv(path: Path, rows: int, seed: int = 2021, chunk: int = 250_000) -> None:
    """Write the synthetic export in chunks (constant memory): about 100 bytes a row."""
    rng = np.random.default_rng(seed)
    first = np.array(["Amina", "Brian", "Cynthia", "David", "Esther", "Faith", "George", "Halima"])
    last = np.array(["Otieno", "Kamau", "Wanjiru", "Mwangi", "Achieng", "Njoroge", "Chebet", "Omondi"])
    with open(path, "w", encoding="utf-8", newline="") as handle:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ids = np.arange(start, start + n)
            stratum = rng.integers(1, 51, n)
            frame = pd.DataFrame({
                "rid": pd.Series(ids).map("r{:07d}".format),
                "name": pd.Series(first[rng.integers(0, 8, n)]) + " " + last[rng.integers(0, 8, n)],
                "q_sex": np.array(["Femme", "Homme", "1", "2"])[rng.integers(0, 4, n)],
                "q_age": rng.integers(18, 91, n),
                "region": np.array(REGIONS)[rng.integers(0, len(REGIONS), n)],
                "wt": np.round(rng.gamma(4.0, 250.0, n) + 1, 3),
                "stratum": pd.Series(stratum).map("s{}".format),
                "cluster": pd.Series(stratum * 100 + rng.integers(0, 40, n)).map("c{}".format),
                "fi": np.array(["yes", "no"])[rng.integers(0, 2, n)],
                "comment": np.where(rng.random(n) < 0.3, np.array(PHRASES)[rng.integers(0, len(PHRASES), n)], ""),
                "interview_date": pd.Series(rng.integers(0, 90, n)).map(lambda d: f"2021-03-{1 + d % 28:02d}"),
                **{f"q{i}": rng.integers(1, 6, n) for i in range(1, 11)},
            })
            frame.to_csv(handle, index=False, header=start == 0)


CHILD = r"""
import json, resource, sys, time
start = time.perf_counter()
kind, path = sys.argv[1], sys.argv[2]
if kind.startswith("pandas"):
    import pandas as pd
    frame = pd.read_csv(path, dtype=str) if kind == "pandas_text" else pd.read_csv(path)
    rows = len(frame)
    code = 0
else:
    import argparse
    from analysis.sources import ingest
    parser = argparse.ArgumentParser()
    ingest.add_arguments(parser)
    code = ingest.main(parser.parse_args(sys.argv[3:]))
    rows = None
hwm = None
try:  # the high-water mark of this process's own memory map (Linux; reset by exec)
    with open("/proc/self/status") as status:
        hwm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    pass
print(json.dumps({"seconds": time.perf_counter() - start, "code": code, "rows": rows, "vm_hwm_bytes": hwm,
                  "self_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def run_child(kind: str, path: Path, extra: list[str], env: dict) -> dict:
    """Run one contender in a fresh process; its peak memory is the child's own.

    ``peak_rss_bytes`` is the peak resident set of the child process as the kernel reports it
    to the parent that waits for it (``os.wait4``'s ``ru_maxrss``), cross-checked with the
    child's own ``VmHWM`` (its memory map's high-water mark). The parent holds no data (the CSV
    is generated in another child), so nothing it holds can be counted for the child.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, "-c", CHILD, kind, str(path), *extra], stdout=out,
                                   stderr=err, text=True, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0 or not stdout.strip():
        raise SystemExit(f"{kind} failed:\n{stdout}\n{stderr[-3000:]}")
    lines = stdout.strip().splitlines()
    report = json.loads(lines[-1])
    report["output"] = lines[:-1]
    report["wait4_maxrss_bytes"] = usage.ru_maxrss * 1024
    report["peak_rss_bytes"] = usage.ru_maxrss * 1024
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the generated CSV (default 2M, ~200 MB)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder with the CSV")
    parser.add_argument("--generate", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        make_csv(args.generate, args.rows)
        return 0
    folder = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        raw, cards, processed = folder / "raw", folder / "cards", folder / "processed"
        raw.mkdir()
        cards.mkdir()
        path = raw / "bench.csv"
        started = time.perf_counter()
        # in a child, so that the generator's memory is never this process's (see run_child)
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--generate", str(path), "--rows",
                        str(args.rows)], check=True)
        size = path.stat().st_size
        print(f"generated {args.rows:,} rows, {size / 1e6:.0f} MB in {time.perf_counter() - started:.0f} s: {path}")
        (cards / "bench.yml").write_text(yaml.safe_dump(CARD, sort_keys=False), encoding="utf-8")
        env = {**os.environ, "ANALYSIS_ID_SALT": os.environ.get("ANALYSIS_ID_SALT") or os.urandom(32).hex()}
        results = {
            "pandas": run_child("pandas", path, [], env),
            "pandas_text": run_child("pandas_text", path, [], env),
            "ingest": run_child("ingest", path, ["bench", "--raw-root", str(raw), "--processed", str(processed),
                                                 "--sources-dir", str(cards), "--force"], env),
        }
        ingest, peer = results["ingest"], results["pandas"]
        summary = {
            "rows": args.rows,
            "file_bytes": size,
            "cpu_count": os.cpu_count(),
            "results": results,
            "ratio_seconds_ingest_to_pandas": ingest["seconds"] / peer["seconds"],
            "ratio_memory_ingest_to_pandas": ingest["peak_rss_bytes"] / peer["peak_rss_bytes"],
            "ingest_peak_memory_to_file_size": ingest["peak_rss_bytes"] / size,
            "target_seconds_met": ingest["seconds"] < TARGET_SECONDS,
            "target_memory_met": ingest["peak_rss_bytes"] < TARGET_MEMORY_RATIO * size,
        }
        print(f"{'':14}{'wall s':>9}{'peak MB':>10}{'peak/file':>11}{'VmHWM MB':>10}")
        for name, report in results.items():
            print(f"{name:14}{report['seconds']:9.1f}{report['peak_rss_bytes'] / 1e6:10.0f}"
                  f"{report['peak_rss_bytes'] / size:11.2f}{(report['vm_hwm_bytes'] or 0) / 1e6:10.0f}")
        print(f"ingest / pandas: {summary['ratio_seconds_ingest_to_pandas']:.2f}x time, "
              f"{summary['ratio_memory_ingest_to_pandas']:.2f}x peak memory")
        print(f"targets: < {TARGET_SECONDS} s {'met' if summary['target_seconds_met'] else 'MISSED'}; "
              f"peak < {TARGET_MEMORY_RATIO:g}x file size {'met' if summary['target_memory_met'] else 'MISSED'}")
        print("ingest said: " + " | ".join(ingest["output"]))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"-> {RESULTS}")
        return 0 if ingest["code"] == 0 else 1
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
