"""Run every benchmark in ``bench/`` (each ``bench_*.py``) in turn; ``make bench`` calls this.

Each benchmark runs as its own process with this interpreter and prints its own report.
Extra arguments are passed to every benchmark unchanged. Exit status: 0 if every benchmark
succeeded, otherwise 1, with the failures listed at the end.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    extra = sys.argv[1:] if argv is None else argv
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if not scripts:
        print(f"no bench_*.py in {BENCH_DIR}")
        return 1
    failed = []
    for script in scripts:
        print(f"==> {script.name}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *extra], cwd=BENCH_DIR.parent)
        print(f"<== {script.name}: exit {code} after {time.perf_counter() - start:.1f} s\n", flush=True)
        if code != 0:
            failed.append(f"{script.name} (exit {code})")
    if failed:
        print("failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
