"""Project paths, in one place.

Paths default to the project checkout (the folder holding ``pyproject.toml``). They can be
moved with environment variables, so that tests and users can point the suite elsewhere:

- ``ANALYSIS_PROJECT_ROOT``: the project root (default: found from this file's location,
  or the current directory when the package is installed elsewhere);
- ``ANALYSIS_SHARED``: the shared folder with real data and reference values
  (default: ``<project root>/../shared``);
- ``ANALYSIS_CATALOGUE_DIR``: a folder holding translated copies of ``groups.yml`` and
  ``indicators.yml`` (written by :func:`analysis.i18n.translated_params`; the pipeline sets it for
  a run in another language, see :func:`use_catalogue`).

The pydantic models of the params files live with the code that reads them:
:mod:`analysis.pipeline.matrix` (``params/report.yml``), :mod:`analysis.schema`
(``params/indicators.yml``, ``params/groups.yml``) and :mod:`analysis.sources.card`
(``params/sources/*.yml``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


def _find_project_root() -> Path:
    env = os.environ.get("ANALYSIS_PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "params").is_dir():
            return parent
    return Path.cwd().resolve()


PROJECT_ROOT: Path = _find_project_root()
PARAMS_DIR: Path = PROJECT_ROOT / "params"
SOURCES_DIR: Path = PARAMS_DIR / "sources"
REPORT_FILE: Path = PARAMS_DIR / "report.yml"
GROUPS_FILE: Path = PARAMS_DIR / "groups.yml"
INDICATORS_FILE: Path = PARAMS_DIR / "indicators.yml"
#: Environment variable naming a folder of translated catalogue files (groups.yml, indicators.yml).
CATALOGUE_DIR_ENV = "ANALYSIS_CATALOGUE_DIR"
DATA_DIR: Path = PROJECT_ROOT / "data"
RAW_DIR: Path = DATA_DIR / "raw"
DEMO_DIR: Path = RAW_DIR / "demo"
BOUNDARIES_DIR: Path = RAW_DIR / "boundaries"
PROCESSED_DIR: Path = DATA_DIR / "processed"
NOTEBOOKS_DIR: Path = PROJECT_ROOT / "notebooks"
OUTPUTS_DIR: Path = PROJECT_ROOT / "outputs"
SRC_DIR: Path = Path(__file__).resolve().parent
SHARED_DIR: Path = Path(os.environ.get("ANALYSIS_SHARED", PROJECT_ROOT.parent / "shared")).resolve()



def use_catalogue(folder: Path | str | None = None) -> None:
    """Read the catalogue (``groups.yml``, ``indicators.yml``) from ``folder`` from now on.

    ``folder`` defaults to :data:`CATALOGUE_DIR_ENV` in the environment, else ``params/``. A run
    of the report in another language calls it in its process (after the fork, or at import in a
    papermill kernel), so that every label the chapter layer reads is the translated one.
    """
    global GROUPS_FILE, INDICATORS_FILE
    chosen = folder or os.environ.get(CATALOGUE_DIR_ENV)
    base = Path(chosen) if chosen else PARAMS_DIR
    GROUPS_FILE = base / "groups.yml"
    INDICATORS_FILE = base / "indicators.yml"


if os.environ.get(CATALOGUE_DIR_ENV):
    use_catalogue()


def catalogue_file(name: str) -> Path:
    """A label file of the catalogue (``evidence.yml``, ``voices.yml``, ``codebooks/<id>.yml``)
    in the run's language: its translated copy in :data:`CATALOGUE_DIR_ENV`'s folder (written by
    :func:`analysis.i18n.translated_params`) when there is one, else ``params/<name>``."""
    chosen = os.environ.get(CATALOGUE_DIR_ENV)
    if chosen and (Path(chosen) / name).is_file():
        return Path(chosen) / name
    return PARAMS_DIR / name

#: Name of the Jupyter kernel that ``make`` registers for the project's environment.
KERNEL_NAME = "analysis"

#: Environment variable naming the file formats of saved figures, comma-separated: "svg" (the
#: default: vector, sharp on screen and in print) or "svg,png" (a print build, ``run --print``,
#: adds PNG copies at print resolution). The pipeline sets it; run keys include it.
FIGURE_FORMATS_ENV = "ANALYSIS_FIGURE_FORMATS"


def figure_formats() -> tuple[str, ...]:
    """The formats figures are saved in: SVG always, PNG too when :data:`FIGURE_FORMATS_ENV` asks.

    Raises
    ------
    ValueError
        A format other than ``svg`` or ``png`` in the environment variable.
    """
    wanted = [f.strip().lower() for f in os.environ.get(FIGURE_FORMATS_ENV, "svg").split(",") if f.strip()]
    unknown = sorted(set(wanted) - {"svg", "png"})
    if unknown:
        raise ValueError(f"{FIGURE_FORMATS_ENV}={','.join(wanted)}: unknown figure format {unknown}; "
                         "use svg or svg,png")
    return tuple(dict.fromkeys(["svg", *wanted]))


#: Largest params YAML file read (a source card is a few kB; the catalogue tens of kB).
MAX_YAML_BYTES = 1_000_000
#: Most aliases (``*name``) a params file may use, and most nodes once aliases are expanded:
#: YAML aliases can nest ("billion laughs"), so a few lines can expand to billions of nodes.
MAX_YAML_ALIASES = 50
MAX_YAML_NODES = 100_000


def _expanded_nodes(root, limit: int) -> int | None:
    """Number of nodes of a composed YAML graph with every alias expanded, or None above ``limit``.

    Aliases share nodes in the composed graph, so the expansion is counted with memoisation
    (linear in the size of the graph, never in the size of the expansion); a node that contains
    itself (a recursive alias) counts as above the limit.
    """
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            return limit + 1
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > limit:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > limit:
                    break
        active.discard(key)
        sizes[key] = total
        return total

    total = size(root)
    return None if total > limit else total


def read_yaml_mapping(path: Path | str, error: type[Exception] = ValueError, what: str = "file",
                      max_bytes: int = MAX_YAML_BYTES) -> dict:
    """Read a params YAML file whose top level is a mapping, with one-line errors.

    The file is read with YAML's safe loader (no Python objects), after three checks that keep a
    hostile or broken file from exhausting the machine: its size (``max_bytes``, checked before
    reading), the number of aliases (:data:`MAX_YAML_ALIASES`) and the number of nodes once the
    aliases are expanded (:data:`MAX_YAML_NODES`, against "billion laughs" alias bombs).

    Parameters
    ----------
    path
        The YAML file.
    error
        The exception class to raise (each params module has its own, e.g. ``CardError``).
    what
        What the file is, for the messages ("source card", "report file", ...).
    max_bytes
        Largest file accepted.

    Raises
    ------
    error
        Naming the file (and the line, for a YAML syntax error) and what to fix: a missing file,
        a folder or device instead of a file, a file above the size limit, too many or too deeply
        nested aliases, invalid YAML, text that is not UTF-8, or a top level that is not a mapping.
    """
    import stat

    import yaml

    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise error(f"{path}: is {kind}; a {what} must be a YAML file")
    if info.st_size > max_bytes:
        raise error(
            f"{path}: {info.st_size / 1e6:.1f} MB is above the {max_bytes / 1e6:.1f} MB limit of a {what}; "
            "is it the right file?"
        )
    with open(path, "rb") as handle:
        raw = handle.read(max_bytes + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: is not UTF-8 text; save the {what} as UTF-8") from None
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        aliases = sum(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=loader_class))
        if aliases > MAX_YAML_ALIASES:
            raise error(
                f"{path}: uses {aliases} YAML aliases (*name); at most {MAX_YAML_ALIASES} are allowed: "
                "write the values out instead of repeating anchors (&name)"
            )
        loader = loader_class(text)
        try:
            node = loader.get_single_node()
            if node is not None and _expanded_nodes(node, MAX_YAML_NODES) is None:
                raise error(
                    f"{path}: its YAML aliases and anchors expand to more than {MAX_YAML_NODES:,} values "
                    "(nested or recursive aliases); write the values out instead"
                )
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise error(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} must be a YAML mapping (key: value) at the top level")
    return data


@contextmanager
def environment_variables(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set environment variables for the length of a ``with`` block, then restore them.

    Parameters
    ----------
    values
        Variable name -> value; ``None`` unsets the variable inside the block.

    Notes
    -----
    Every named variable gets back the value it had before the block (or is unset again when
    it had none), also when the block raises. Used to render pages in another report language
    (:func:`analysis.exchange._language`, :func:`analysis.pipeline.languages.language_environment`).
    """
    saved = {key: os.environ.get(key) for key in values}
    try:
        _set_variables(values)
        yield
    finally:
        _set_variables(saved)


def _set_variables(values: Mapping[str, str | None]) -> None:
    """Set each environment variable to its value, unsetting those whose value is ``None``."""
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pydantic_message(exc, prefix: str) -> str:
    """One line naming the failing keys of a pydantic ``ValidationError``, with what is expected."""
    errors = exc.errors()
    parts = []
    for err in errors[:3]:
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (remove it or check its spelling)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        parts.append(f"key '{key}': {msg}" if key else msg)
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return f"{prefix}: " + "; ".join(parts) + more
