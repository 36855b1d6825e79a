"""``outputs/manifest.json`` (provenance of every run) and ``outputs/tables/all_estimates.csv``.

The manifest records, for every run of the matrix: its parameters, key and key components,
status (ok | failed | not_applicable), what this invocation did with it (ran | skipped |
not_run when filtered out), duration, input file hashes, code version (git commit and whether
the tree was dirty), package versions and output paths. It is rewritten atomically after each
finished run, so an interrupted invocation still leaves a valid manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

FORMAT = 1


def code_version(project_root: Path) -> dict:
    """Git commit of the project and whether tracked files differ from it ("dirty")."""

    def git(*args) -> str | None:
        try:
            done = subprocess.run(["git", *args], check=False, cwd=project_root, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def load_manifest(path: Path) -> dict:
    """The previous manifest, or an empty one (a corrupt file is set aside, not trusted)."""
    path = Path(path)
    if not path.exists():
        return {"format": FORMAT, "runs": {}, "file_hashes": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        path.rename(path.with_suffix(".corrupt.json"))
        return {"format": FORMAT, "runs": {}, "file_hashes": {}}
    if data.get("format") != FORMAT:
        return {"format": FORMAT, "runs": {}, "file_hashes": {}}
    data.setdefault("runs", {})
    data.setdefault("file_hashes", {})
    return data


def write_json_atomic(data: dict, path: Path) -> Path:
    """Write ``data`` as JSON atomically (:func:`analysis.atomic.write_atomic`: no ``.tmp`` left)."""
    from analysis.atomic import write_atomic

    return write_atomic(path, json.dumps(data, indent=1, sort_keys=False, default=str) + "\n")


def summarise(runs: dict) -> dict:
    """Counts by status and by this invocation's action."""
    summary = {"runs": len(runs), "ok": 0, "failed": 0, "blocked": 0, "not_applicable": 0, "stale": 0,
               "ran": 0, "skipped": 0, "not_run": 0}
    for entry in runs.values():
        summary[entry.get("status", "failed")] = summary.get(entry.get("status", "failed"), 0) + 1
        action = entry.get("action")
        if action in summary:
            summary[action] += 1
        if entry.get("stale"):
            summary["stale"] += 1
    return summary


def now() -> str:
    """The current UTC time to the second in ISO 8601 (``2026-12-01T13:30:00+00:00``): the
    timestamps of the manifest and of every run record."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def build_all_estimates(manifest: dict, outputs_dir: Path, downstream_chapters: set[str],
                        exclude: set[str] = frozenset()) -> Path:
    """Stack every successful run's result tables into ``outputs/tables/all_estimates.csv``.

    Rebuilt from the runs' ``tables/`` folders each time; runs of chapters that read this table
    (``after:`` others, e.g. the synthesis) are left out, so the table does not feed on itself,
    and so are the runs in ``exclude`` (those built from inputs that have changed since: the
    table holds only estimates from the current inputs).
    Rows are sorted deterministically (source, country, group, indicator, breakdown, cell,
    method; ties keep run and file order), so the same tables give the same bytes. A row saved
    by several runs (identical in every column) is kept once; the count of dropped repeats is
    ``manifest["all_estimates_build"]["duplicate_rows_dropped"]``.

    Raises
    ------
    ValueError
        Naming the run table that does not follow the result schema.
    """
    target = outputs_dir / "tables" / "all_estimates.csv"
    paths = []
    for run_id in sorted(manifest.get("runs", {})):
        entry = manifest["runs"][run_id]
        if entry.get("status") != "ok" or entry.get("chapter") in downstream_chapters or run_id in exclude:
            continue
        paths += [outputs_dir / rel for rel in sorted(entry.get("outputs", {}).get("tables", []))]
    paths = [p for p in paths if p.exists()]
    # Same table files, untouched since the last build, and the table itself untouched: the
    # rebuild would give the same bytes, so keep it (a no-op re-run stays fast).
    fingerprint = [(str(p.relative_to(outputs_dir)), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    previous = manifest.get("all_estimates_build") or {}
    if (target.exists() and previous.get("tables") == [list(f) for f in fingerprint]
            and previous.get("stat") == [target.stat().st_size, target.stat().st_mtime_ns]):
        return target

    from analysis.tables import RESULT_COLUMNS, read_csv, stack, write_csv

    frames = []
    for path in paths:
        try:
            frames.append(read_csv(path))
        except Exception as exc:  # noqa: BLE001 - name the file, say what is wrong
            raise ValueError(f"{path}: not a result-schema table ({exc})") from None
    table = stack(frames)
    order = [c for c in ("source", "country", "group", "indicator", "breakdown", "cell", "method")
             if c in RESULT_COLUMNS]
    table = table.sort_values(order, kind="mergesort", na_position="last").reset_index(drop=True)
    # The same estimate saved by two runs (e.g. a group's country estimates by the group profile
    # and by geography across countries) is one row of the collected table; how many were
    # dropped is recorded in the manifest.
    repeated = table.duplicated(keep="first")
    table = table[~repeated].reset_index(drop=True)
    write_csv(table, target)
    manifest["all_estimates_build"] = {"tables": [list(f) for f in fingerprint],
                                       "stat": [target.stat().st_size, target.stat().st_mtime_ns],
                                       "rows": len(table), "duplicate_rows_dropped": int(repeated.sum())}
    return target
