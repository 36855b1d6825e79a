"""Content hashes that decide what to rebuild, for ingest and for report runs alike.

One module, so that ``python -m analysis ingest`` and ``python -m analysis run`` agree on what a
step depends on:

- :func:`sha256_file`, :func:`sha256_bytes`, :func:`sha256_json` and :class:`FileHasher` (content
  hashes of input files, cached on size and modification time across invocations);
- :func:`module_closure`: the project's own modules a module imports, directly or through other
  project modules, found by reading their source (``import``/``from ... import`` anywhere in the
  file, function-level imports included), so a step's key covers exactly the library code it can
  execute;
- :func:`notebook_modules`: the project modules a notebook's code cells use. A package whose
  ``__init__`` only re-exports names of its submodules (``analysis.chapters``) counts through the
  names the notebook uses: ``chapters.group_estimates`` depends on ``analysis.chapters.group_profile``
  and what that imports, not on every chapter;
- :func:`code_hashes`: ``{path relative to src/: sha256}`` of a set of files, so that a changed key
  can name the file that changed;
- :class:`TrackedCatalogue` and :func:`catalogue_digest`: the catalogue entries a run reads are
  recorded while it runs (``catalogue_reads.json`` in its output folder), and its next key hashes
  those entries only — relabelling one group re-runs the pages that show that group's label.

The analysis is static: a module reached only through ``importlib.import_module`` with a computed
name is not seen (the project has none; :func:`module_closure` documents the rule it follows).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from analysis import config

#: The project's top-level package: imports of other packages are outside every closure (their
#: versions enter run keys separately, as package versions).
PACKAGE = "analysis"

# Keys of a row-accounting log that say *when*, not *what*: left out of its hash.
_VOLATILE_KEYS = re.compile(
    r"(^|_)(time|timestamp|date|datetime|duration|seconds|elapsed|started|finished|written|created)(_at)?$|_at$")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    """Hex SHA-256 of a JSON-able value in canonical form (sorted keys, no spaces)."""
    return sha256_bytes(json.dumps(value, sort_keys=True, default=str, separators=(",", ":")).encode())


def sha256_file(path: str | Path, block_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content, read in blocks (memory stays flat whatever the size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(block_size), b""):
            digest.update(block)
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


def _strip_volatile(value):
    if isinstance(value, dict):
        return {k: _strip_volatile(v) for k, v in value.items() if not _VOLATILE_KEYS.search(str(k).lower())}
    if isinstance(value, list):
        return [_strip_volatile(v) for v in value]
    return value


class FileHasher:
    """Content hashes of input files, cached on (size, mtime) across invocations.

    The cache is a plain dict (the pipeline keeps it in its manifest). A row-accounting log
    (``*.log.json``) is hashed by what it says, not by when it was written.
    """

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
        if path.name.endswith(".log.json"):
            data = path.read_bytes()
            try:
                digest = sha256_json(_strip_volatile(json.loads(data)))
            except ValueError:
                digest = sha256_bytes(data)
        else:
            digest = sha256_file(path)
        self.cache[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        return digest


# --------------------------------------------------------------------------------------------
# Which of the project's modules a step can execute


def module_file(module: str, src_dir: Path | None = None) -> Path | None:
    """The source file of a project module (``analysis.x.y`` → ``src/analysis/x/y.py`` or its
    package ``__init__.py``), or None when it is not a module of the project."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = Path(src_dir or config.SRC_DIR)  # the folder of the `analysis` package
    parts = module.split(".")[1:]
    as_module = base.joinpath(*parts).with_suffix(".py") if parts else None
    as_package = base.joinpath(*parts, "__init__.py")
    if as_module is not None and as_module.is_file():
        return as_module
    if as_package.is_file():
        return as_package
    return None


def _module_name(path: Path, src_dir: Path) -> str:
    relative = path.relative_to(src_dir).with_suffix("")
    parts = [PACKAGE, *relative.parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imported_modules(tree: ast.AST, current: str, is_package: bool, src_dir: Path,
                      with_packages: bool = False):
    """Project modules named by the import statements of one parsed file.

    ``from analysis import x`` names ``analysis.x`` when that is a module, else the package
    ``analysis`` itself (``x`` is then a name defined in its ``__init__``); relative imports are
    resolved against ``current``. With ``with_packages``, also returns the packages that are only
    passed through (``analysis.pipeline`` in ``from analysis.pipeline import render``): Python runs
    their ``__init__``, but what the importing code uses is the submodule.
    """
    found: set[str] = set()
    through: set[str] = set()
    package = current if is_package else current.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            submodules = [f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}", src_dir)]
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(base)  # a name defined in the module (or package) itself
            else:
                through.add(base)
    project, passed = set(), set()
    for name in found | through:
        # `import analysis.a.b` executes analysis, analysis.a and analysis.a.b
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if module_file(prefix, src_dir) is None:
                continue
            if i == len(parts) and name in found:
                project.add(prefix)
            else:
                passed.add(prefix)
    passed -= project
    return (project, passed) if with_packages else project


def module_closure(modules: Iterable[str], src_dir: Path | None = None,
                   reexport_packages: Iterable[str] = ()) -> set[Path]:
    """Source files of ``modules`` and of every project module they import, transitively.

    Parameters
    ----------
    modules
        Dotted module names (``analysis.chapters.group_profile``); names outside the project are
        ignored.
    src_dir
        The folder of the ``analysis`` package (default: the installed project's).
    reexport_packages
        Packages whose ``__init__`` is counted without following its imports (it only re-exports
        names of submodules: what a caller uses of it is resolved by :func:`notebook_modules`).

    Returns
    -------
    set of Path
        The files of the modules the code uses, transitively, and the ``__init__`` files of the
        packages it passes through. A package passed through (``from analysis.pipeline import
        render``) is counted but its own imports are not followed: Python runs them, but what
        the code uses is the submodule (a package ``__init__`` that changes a submodule's
        behaviour would be missed; the project has none).
    """
    src_dir = Path(src_dir or config.SRC_DIR)
    skip_follow = set(reexport_packages)
    seen: set[Path] = set()
    pending = [m for m in modules if module_file(m, src_dir) is not None]
    while pending:
        name = pending.pop()
        path = module_file(name, src_dir)
        if path is None or path in seen:
            continue
        seen.add(path)
        if name in skip_follow:
            continue
        imported, passed = _file_imports(path, src_dir)
        for name_ in imported:
            if module_file(name_, src_dir) not in seen:
                pending.append(name_)
        # packages only passed through: their __init__ is counted, its own imports are not followed
        seen.update(module_file(p, src_dir) for p in passed)
    return seen


#: ``(path, src_dir) -> (source digest, (imported, passed))``: each file is parsed once per process
#: while its source is unchanged (planning computes the closure of every notebook, and the test
#: suite plans hundreds of times), not once per notebook that reaches it. Keyed by content, not
#: modification time, so an edit within the file system's timestamp granularity is still seen.
_IMPORTS_CACHE: dict[tuple[Path, Path], tuple[bytes, tuple[frozenset, frozenset]]] = {}


def _file_imports(path: Path, src_dir: Path) -> tuple[frozenset, frozenset]:
    """:func:`_imported_modules` of one file (``with_packages``), cached by its content."""
    source = path.read_bytes()
    digest = hashlib.blake2b(source, digest_size=16).digest()
    cached = _IMPORTS_CACHE.get((path, src_dir))
    if cached is not None and cached[0] == digest:
        return cached[1]
    tree = ast.parse(source.decode("utf-8"), filename=str(path))
    imported, passed = _imported_modules(tree, _module_name(path, src_dir), path.name == "__init__.py",
                                         src_dir, with_packages=True)
    result = (frozenset(imported), frozenset(passed))
    _IMPORTS_CACHE[(path, src_dir)] = (digest, result)
    return result


def _reexports(package: str, src_dir: Path) -> dict[str, str]:
    """``{name: submodule}`` of the ``from <package>.<sub> import name`` lines of a package's ``__init__``."""
    path = module_file(package, src_dir)
    if path is None or path.name != "__init__.py":
        return {}
    out = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package + "."):
            for alias in node.names:
                out[alias.asname or alias.name] = node.module
    return out


def _notebook_source(path: Path) -> str:
    """The code cells of a notebook as one Python source (IPython magics and shell lines dropped)."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    lines = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for line in "".join(cell.get("source", "")).splitlines():
            lines.append("" if line.lstrip().startswith(("%", "!")) else line)
        lines.append("")
    return "\n".join(lines)


def notebook_modules(notebook: str | Path, src_dir: Path | None = None) -> tuple[set[str], set[str]]:
    """The project modules a notebook's code uses, and the re-export packages among them.

    ``from analysis import chapters`` followed by ``chapters.group_estimates(...)`` uses the
    package ``analysis.chapters`` (its ``__init__``) and the submodule that defines
    ``group_estimates``; the package's other submodules are not used.

    Returns
    -------
    (modules, reexport_packages)
        For :func:`module_closure`.
    """
    src_dir = Path(src_dir or config.SRC_DIR)
    tree = ast.parse(_notebook_source(Path(notebook)), filename=str(notebook))
    modules = _imported_modules(tree, "__notebook__", False, src_dir)
    reexport = set()
    # names bound to re-exporting packages, and the attributes used on them
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        for alias in node.names:
            full = alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
            exports = _reexports(full, src_dir)
            if not exports:
                continue
            bound = alias.asname or alias.name.split(".")[-1]
            reexport.add(full)
            for attribute in ast.walk(tree):
                if (isinstance(attribute, ast.Attribute) and isinstance(attribute.value, ast.Name)
                        and attribute.value.id == bound and attribute.attr in exports):
                    modules.add(exports[attribute.attr])
    return modules, reexport


def code_hashes(files: Iterable[Path], src_dir: Path | None = None) -> dict[str, str]:
    """``{path relative to the package's parent folder: sha256}`` of ``files``, sorted."""
    base = Path(src_dir or config.SRC_DIR).parent
    out = {}
    for path in sorted(Path(p) for p in files):
        try:
            name = str(path.relative_to(base))
        except ValueError:
            name = str(path)
        out[name] = sha256_file(path)
    return out


def package_data_files(src_dir: Path | None = None) -> list[Path]:
    """Non-Python files shipped in the package (templates, lookup tables, JSON): what pages and
    harmonisation read besides code."""
    src_dir = Path(src_dir or config.SRC_DIR)
    return sorted(p for p in src_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix in {".j2", ".json", ".css", ".tpl", ".csv", ".xml", ".js"})


# --------------------------------------------------------------------------------------------
# Which catalogue entries a run reads (recorded while it runs)


class TrackedCatalogue(Mapping):
    """A read-only catalogue mapping (groups, dimensions or indicators by id) that records what is
    read of it, so that a run's key covers the catalogue entries its pages can show and no others.

    ``catalogue[id]``, ``.get(id)`` and ``id in catalogue`` read one entry; iterating or ``len``
    reads the list of ids (not their definitions); ``.values()`` and ``.items()`` read every entry.
    """

    def __init__(self, entries: Mapping, on_read=None):
        self._entries = dict(entries)
        self._on_read = on_read
        self.ids_read = False
        self.entries_read: set[str] | None = set()  # None: every entry

    def _read(self, key) -> None:
        if self.entries_read is not None and key in self._entries and key not in self.entries_read:
            self.entries_read.add(key)
            if self._on_read:
                self._on_read()

    def _read_all(self) -> None:
        if self.entries_read is not None:
            self.entries_read = None
            self.ids_read = True
            if self._on_read:
                self._on_read()

    def __getitem__(self, key):
        value = self._entries[key]
        self._read(key)
        return value

    def __contains__(self, key) -> bool:
        self._read(key)
        return key in self._entries

    def __iter__(self):
        if not self.ids_read:
            self.ids_read = True
            if self._on_read:
                self._on_read()
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def values(self):
        self._read_all()
        return self._entries.values()

    def items(self):
        self._read_all()
        return self._entries.items()

    def reads(self) -> dict:
        """``{"ids": bool, "entries": "*" | [ids]}``: what has been read so far."""
        entries = "*" if self.entries_read is None else sorted(self.entries_read)
        return {"ids": self.ids_read, "entries": entries}


#: File a run writes into its output folder: the catalogue entries it read (for its next key).
CATALOGUE_READS_FILE = "catalogue_reads.json"


def catalogue_digest(catalogue: Mapping, reads: dict | None) -> str:
    """Hash of the part of one catalogue section that ``reads`` says was read (all when None)."""
    if reads is None or reads.get("entries") == "*":
        return sha256_json({"all": catalogue})
    part = {key: catalogue.get(key) for key in reads.get("entries", [])}
    ids = list(catalogue) if reads.get("ids") else None
    return sha256_json({"entries": part, "ids": ids})
