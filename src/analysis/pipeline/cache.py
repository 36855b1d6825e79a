"""Run keys: what a run's outputs depend on, hashed, so unchanged runs are skipped.

A run's key is the SHA-256 of its *key components*:

- ``notebook``: the notebook's cells (type, source, tags) without outputs or execution counts;
- ``parameters``: the canonical parameters (sorted JSON; paths inside the project relative to it);
- ``inputs``: the content hash of every input file the run reads (by default the processed
  Parquet and row-accounting log of each source it uses, official tables for its country, and
  ``outputs/tables/all_estimates.csv`` for chapters that run after others);
- ``code``: ``{file: sha256}`` of the library code the run can execute — the project modules its
  notebook imports and what they import, transitively (:func:`analysis.hashing.module_closure`;
  ``chapters.<name>`` counts only the chapter module defining ``<name>``), the page renderer's
  modules, and the package's templates and lookup files — so an edit of one chapter's module
  re-runs that chapter only, and ``--dry-run`` names the file;
- ``catalogue``: per section of ``params/groups.yml`` and ``params/indicators.yml`` (groups,
  dimensions, indicators, the rest), a digest of the entries the run *read* when it last ran —
  recorded by :class:`analysis.hashing.TrackedCatalogue` in the run's ``catalogue_reads.json`` and
  kept in the manifest — plus its own group and dimension (page title); the whole catalogue for a
  run never run before. Relabelling one group re-runs exactly the runs whose pages can show it;
- ``text``: the text catalogue (``params/text*.yml``: every title, caption, heading and
  sentence template a page shows);
- ``disclosure``: the thresholds of the report file;
- ``language``: the pages' language and the languages their switch links (only when the report
  has more than English; a language's translations reach the key through its translated
  catalogue, ``outputs/<lang>/params/``, which the ``catalogue`` and ``text`` components hash);
- ``environment``: Python and dependency versions; ``figure_formats``: SVG, or SVG and PNG in a
  print build (``--print``); ``epoch``: bump to re-run everything.

The components are stored in the manifest, so that ``--dry-run`` can say which one changed.
"""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

from analysis import config, hashing
from analysis.hashing import FileHasher, notebook_hash, sha256_bytes, sha256_json  # noqa: F401
from analysis.pipeline.matrix import load_yaml

#: Bump to invalidate every run key (e.g. after a fix that the hashes cannot see).
EPOCH = 1

#: Distributions whose versions enter the key and the manifest.
TRACKED_PACKAGES = (
    "numpy", "scipy", "pandas", "pyarrow", "statsmodels", "matplotlib", "seaborn", "geopandas",
    "shapely", "pyogrio", "pydantic", "pyyaml", "ipython", "ipykernel", "nbformat", "nbconvert",
    "nbclient", "papermill", "jinja2", "pycountry", "dask", "distributed",
)

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


class KeyContext:
    """What is shared by every run's key in one invocation (hashed once)."""

    def __init__(self, ctx, hasher: FileHasher, src_dir: Path | None = None):
        self.ctx = ctx
        self.hasher = hasher
        self.src_dir = Path(src_dir or config.SRC_DIR)
        self.code = code_hash(self.src_dir)  # all of it: long-lived workers check they run this code
        renderer = hashing.module_closure(["analysis.pipeline.render"], self.src_dir)
        self._always = renderer | set(hashing.package_data_files(self.src_dir))
        self._code_by_notebook: dict[str, dict] = {}
        self.packages = package_versions()
        self.environment = sha256_json(self.packages)
        groups_yaml = load_yaml(Path(ctx.groups_file).read_text(encoding="utf-8")) or {}
        indicators_file = Path(ctx.groups_file).with_name("indicators.yml")
        indicators_yaml = (load_yaml(indicators_file.read_text(encoding="utf-8")) or {}) if indicators_file.exists() else {}
        self._sections = {"groups": groups_yaml.get("groups") or {},
                          "dimensions": groups_yaml.get("dimensions") or {},
                          "indicators": indicators_yaml.get("indicators") or {}}
        # everything else of the two files (e.g. the themes): in every key
        self._catalogue_rest = sha256_json({
            "groups.yml": {k: v for k, v in groups_yaml.items() if k not in ("groups", "dimensions")},
            "indicators.yml": {k: v for k, v in indicators_yaml.items() if k != "indicators"}})
        # every language's text catalogue: a page shows its words (analysis.text)
        texts = {p.name: hasher(p) for p in sorted(indicators_file.parent.glob("text*.yml"))}
        code = getattr(ctx, "language", "en") or "en"
        if code != "en":  # the language file holds the chapter labels and notebook Markdown too
            from analysis import i18n

            language_file = i18n.I18N_DIR / f"{code}.yml"
            if language_file.exists():
                texts[f"i18n/{code}.yml"] = hasher(language_file)
        self.text = sha256_json(texts)
        self.disclosure = sha256_json(ctx.report.disclosure.model_dump())
        self._notebooks: dict[str, str] = {}
        self.figure_formats = ",".join(config.figure_formats())
        # the pages' language and the languages their switch links (absent for an English-only
        # report, so that its keys stay as they were); the translations themselves are in the
        # translated catalogue the run reads (catalogue and text components)
        languages = list(getattr(ctx, "languages", None) or ["en"])
        code = getattr(ctx, "language", "en")
        self.language = (None if code == "en" and languages == ["en"]
                         else sha256_json({"language": code, "switch": languages}))

    def catalogue(self, run, reads: dict | None) -> dict[str, str]:
        """Digest of each catalogue section, over the entries the run reads.

        ``reads`` is what the run recorded last time it ran (``catalogue_reads.json``, kept in the
        manifest; ``{}`` for a run that finished without reading the catalogue through
        :class:`analysis.chapters.common.ChapterRun`). A run never run before depends on all of it;
        every run also depends on what its page shows of it: its own group and that group's
        dimension (title and parameters table).
        """
        entry = self._sections["groups"].get(run.group) or {}
        own = {"groups": {run.group} if run.group else set(),
               "dimensions": {entry["dimension"]} if entry.get("dimension") else set()}
        out = {}
        for section, entries in self._sections.items():
            if reads is None:
                recorded = None  # never run: everything
            else:
                recorded = reads.get(section) or {"ids": False, "entries": []}
            if recorded is not None and recorded.get("entries") != "*":
                recorded = {**recorded, "entries": sorted(set(recorded.get("entries", [])) | own.get(section, set()))}
            out[section] = hashing.catalogue_digest(entries, recorded)
        out["other"] = self._catalogue_rest
        return out

    def code_files(self, notebook: str) -> dict[str, str]:
        """``{file: sha256}`` of the library code a run of ``notebook`` can execute (see module notes)."""
        if notebook not in self._code_by_notebook:
            modules, reexport = hashing.notebook_modules(notebook, self.src_dir)
            files = hashing.module_closure(modules, self.src_dir, reexport_packages=reexport) | self._always
            self._code_by_notebook[notebook] = hashing.code_hashes(files, self.src_dir)
        return self._code_by_notebook[notebook]

    def notebook(self, path: str) -> str:
        if path not in self._notebooks:
            self._notebooks[path] = notebook_hash(path)
        return self._notebooks[path]

    def components(self, run, catalogue_reads: dict | None = None) -> dict:
        """The key components of ``run``; ``catalogue_reads`` as its last run recorded them."""
        root = self.ctx.project_root
        return {
            "notebook": self.notebook(run.notebook),
            "parameters": sha256_json(canonical_parameters(run.parameters, root)),
            "inputs": {_relative(p, root): self.hasher(p) for p in run.inputs},
            "code": self.code_files(run.notebook),
            "catalogue": self.catalogue(run, catalogue_reads),
            "text": self.text,
            "disclosure": self.disclosure,
            "environment": self.environment,
            "figure_formats": self.figure_formats,
            "epoch": EPOCH,
        } | ({"language": self.language} if self.language else {})


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
    "text": "text catalogue changed (params/text.yml)",
    "disclosure": "disclosure thresholds changed",
    "environment": "package versions changed",
    "figure_formats": "figure formats changed (print build)",
    "language": "language or the languages of the switch changed",
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
    old_code, new_code = old.get("code"), new.get("code")
    if isinstance(old_code, dict) and isinstance(new_code, dict) and old_code != new_code:
        edited = sorted(f for f in set(old_code) | set(new_code) if old_code.get(f) != new_code.get(f))
        reasons.append("library code changed: " + ", ".join(edited[:5])
                       + (f" (+{len(edited) - 5} more)" if len(edited) > 5 else ""))
        old, new = {**old, "code": None}, {**new, "code": None}
    old_cat, new_cat = old.get("catalogue"), new.get("catalogue")
    if isinstance(old_cat, dict) and isinstance(new_cat, dict) and old_cat != new_cat:
        sections = sorted(k for k in set(old_cat) | set(new_cat) if old_cat.get(k) != new_cat.get(k))
        files = {"groups": "params/groups.yml", "dimensions": "params/groups.yml",
                 "indicators": "params/indicators.yml"}
        reasons.append("catalogue entries it shows changed: " + ", ".join(
            f"{s} ({files[s]})" if s in files else f"{s} (params/)" for s in sections))
        old, new = {**old, "catalogue": None}, {**new, "catalogue": None}
    elif old_cat is None and new_cat is not None and "group_definition" in old:
        reasons.append("run keys now cover the catalogue entries each run reads")
        old, new = {**old, "catalogue": None}, {**new, "catalogue": None}
    reasons += [text for name, text in _COMPONENT_NAMES.items() if old.get(name) != new.get(name)]
    return "; ".join(reasons) or "key changed"
