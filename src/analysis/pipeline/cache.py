"""Run keys: what a run's outputs depend on, hashed, so unchanged runs are skipped.

A run's key is the SHA-256 of its *key components*:

- ``notebook``: the notebook's cells (type, source, tags) without outputs or execution counts;
- ``parameters``: the canonical parameters (sorted JSON; paths inside the project relative to it);
- ``inputs``: the content hash of every input file the run reads (by default the processed
  Parquet and row-accounting log of each source it uses, official tables for its country, and
  ``outputs/tables/all_estimates.csv`` for chapters that run after others);
- ``code``: every ``.py`` and template file under ``src/analysis``;
- ``group_definition``: the run's entry in ``params/groups.yml`` and its dimension (the whole
  catalogue for runs not about one group), ``indicators``: ``params/indicators.yml``,
  ``disclosure``: the thresholds of the report file, ``text``: the text catalogue
  (``params/text*.yml``: every title, caption, heading and sentence template a page shows);
- ``environment``: Python and dependency versions; ``epoch``: bump to re-run everything.

The components are stored in the manifest, so that ``--dry-run`` can say which one changed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from analysis import config
from analysis.pipeline.matrix import load_yaml

#: Bump to invalidate every run key (e.g. after a fix that the hashes cannot see).
EPOCH = 1

#: Distributions whose versions enter the key and the manifest.
TRACKED_PACKAGES = (
    "numpy", "scipy", "pandas", "pyarrow", "statsmodels", "matplotlib", "seaborn", "geopandas",
    "shapely", "pyogrio", "pydantic", "pyyaml", "ipython", "ipykernel", "nbformat", "nbconvert",
    "nbclient", "papermill", "jinja2", "pycountry", "dask", "distributed",
)

# Keys of a row-accounting log that say *when*, not *what*: left out of its hash.
_VOLATILE_KEYS = re.compile(r"(^|_)(time|timestamp|date|datetime|duration|seconds|elapsed|started|finished|written|created)(_at)?$|_at$")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    return sha256_bytes(json.dumps(value, sort_keys=True, default=str, separators=(",", ":")).encode())


def package_versions() -> dict[str, str]:
    """Python and tracked dependency versions."""
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def code_hash(src_dir: Path | None = None) -> str:
    """Hash of the library source: every .py, .j2, .json and .css file under ``src/analysis``."""
    src_dir = Path(src_dir or config.SRC_DIR)
    digest = hashlib.sha256()
    for path in sorted(src_dir.rglob("*")):
        if path.suffix in {".py", ".j2", ".json", ".css", ".tpl"} and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(src_dir)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def notebook_hash(path: str | Path) -> str:
    """Hash of a notebook's cells (type, source, tags), ignoring outputs and execution counts."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = [
        {"type": c.get("cell_type"), "source": "".join(c.get("source", "")),
         "tags": sorted(c.get("metadata", {}).get("tags", []))}
        for c in nb.get("cells", [])
    ]
    return sha256_json(cells)


def canonical_parameters(parameters: dict, project_root: Path) -> dict:
    """Parameters with absolute paths inside the project made relative (portable keys)."""
    root = str(Path(project_root).resolve())

    def canon(value):
        if isinstance(value, str) and value.startswith(root + "/"):
            return value[len(root) + 1:]
        if isinstance(value, str) and value == root:
            return "."
        if isinstance(value, list):
            return [canon(v) for v in value]
        if isinstance(value, dict):
            return {k: canon(v) for k, v in value.items()}
        return value

    return {k: canon(v) for k, v in sorted(parameters.items())}


def _strip_volatile(value):
    if isinstance(value, dict):
        return {k: _strip_volatile(v) for k, v in value.items() if not _VOLATILE_KEYS.search(str(k).lower())}
    if isinstance(value, list):
        return [_strip_volatile(v) for v in value]
    return value


class FileHasher:
    """Content hashes of input files, cached on (size, mtime) across invocations (in the manifest)."""

    def __init__(self, cache: dict | None = None):
        self.cache: dict[str, dict] = dict(cache or {})

    def __call__(self, path: str | Path) -> str:
        path = Path(path)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return "missing"
        key = str(path)
        hit = self.cache.get(key)
        if hit and hit.get("size") == stat.st_size and hit.get("mtime_ns") == stat.st_mtime_ns:
            return hit["sha256"]
        data = path.read_bytes()
        if path.name.endswith(".log.json"):
            # Row accounting: hash what it says, not when it was written.
            try:
                digest = sha256_json(_strip_volatile(json.loads(data)))
            except ValueError:
                digest = sha256_bytes(data)
        else:
            digest = sha256_bytes(data)
        self.cache[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        return digest


class KeyContext:
    """What is shared by every run's key in one invocation (hashed once)."""

    def __init__(self, ctx, hasher: FileHasher, src_dir: Path | None = None):
        self.ctx = ctx
        self.hasher = hasher
        self.code = code_hash(src_dir)
        self.packages = package_versions()
        self.environment = sha256_json(self.packages)
        groups_yaml = load_yaml(Path(ctx.groups_file).read_text(encoding="utf-8")) or {}
        self._groups = groups_yaml.get("groups") or {}
        self._dimensions = groups_yaml.get("dimensions") or {}
        self._groups_all = sha256_json(groups_yaml)
        indicators = Path(ctx.groups_file).with_name("indicators.yml")
        self.indicators = hasher(indicators) if indicators.exists() else "missing"
        # every language's text catalogue: a page shows its words (analysis.text)
        self.text = sha256_json({p.name: hasher(p) for p in sorted(indicators.parent.glob("text*.yml"))})
        self.disclosure = sha256_json(ctx.report.disclosure.model_dump())
        self._notebooks: dict[str, str] = {}

    def group_definition(self, group: str | None) -> str:
        if group is None:
            return self._groups_all
        entry = self._groups.get(group, {})
        return sha256_json({"group": entry, "dimension": self._dimensions.get(entry.get("dimension"))})

    def notebook(self, path: str) -> str:
        if path not in self._notebooks:
            self._notebooks[path] = notebook_hash(path)
        return self._notebooks[path]

    def components(self, run) -> dict:
        root = self.ctx.project_root
        return {
            "notebook": self.notebook(run.notebook),
            "parameters": sha256_json(canonical_parameters(run.parameters, root)),
            "inputs": {_relative(p, root): self.hasher(p) for p in run.inputs},
            "code": self.code,
            "group_definition": self.group_definition(run.group),
            "indicators": self.indicators,
            "text": self.text,
            "disclosure": self.disclosure,
            "environment": self.environment,
            "epoch": EPOCH,
        }


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def run_key(components: dict) -> str:
    """The run key: SHA-256 of the key components (sorted JSON)."""
    return sha256_json(components)


_COMPONENT_NAMES = {
    "notebook": "notebook edited",
    "parameters": "parameters changed",
    "code": "library code (src/analysis) changed",
    "group_definition": "group definition changed (params/groups.yml)",
    "indicators": "indicator catalogue changed (params/indicators.yml)",
    "text": "text catalogue changed (params/text.yml)",
    "disclosure": "disclosure thresholds changed",
    "environment": "package versions changed",
    "epoch": "epoch bumped",
}


def explain_change(old: dict | None, new: dict) -> str:
    """Why a run's key changed, naming the inputs that changed: 'changed input: data/processed/x.parquet'."""
    if not old:
        return "new"
    reasons = []
    old_inputs, new_inputs = old.get("inputs", {}), new.get("inputs", {})
    changed = sorted(p for p in new_inputs if old_inputs.get(p) != new_inputs[p])
    removed = sorted(set(old_inputs) - set(new_inputs))
    if changed:
        reasons.append("changed input: " + ", ".join(changed))
    if removed:
        reasons.append("input no longer used: " + ", ".join(removed))
    reasons += [text for name, text in _COMPONENT_NAMES.items() if old.get(name) != new.get(name)]
    return "; ".join(reasons) or "key changed"
