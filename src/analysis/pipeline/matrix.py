"""The run matrix: pydantic models of ``params/report.yml`` and their expansion into runs.

A report file declares chapters (notebooks), the groups and countries to report on, and
defaults. :func:`load_report` validates it (unknown keys, unknown groups or countries are
one-line errors naming the file and key); :func:`expand_runs` turns it into one
:class:`RunSpec` per chapter × group × country (or per group, per source × country, per
country, or once, depending on the chapter's ``scope``); :func:`check_parameters` checks every
run's parameters against the parameters the notebook declares (``papermill.inspect_notebook``)
before anything executes.

A run exists only where its inputs exist: a group × country for which no processed source holds
the group's members is listed with ``status="not_applicable"`` and the reason.
"""

from __future__ import annotations

import ast
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analysis import config

SCOPES = ("per_group_country", "per_group", "per_source_country", "per_country", "once")

#: Parameters every chapter notebook must declare in its ``parameters`` cell.
REQUIRED_PARAMETERS = ("chapter", "group", "country", "source", "processed_dir", "output_dir")
#: Parameters the runner fills in when (and only when) the notebook declares them.
OPTIONAL_PARAMETERS = ("sources", "countries", "outputs_root", "all_estimates", "title", "config")


def load_yaml(text: str):
    """``yaml.safe_load`` with the C loader when PyYAML has it (several times faster)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


class MatrixError(ValueError):
    """The run matrix is invalid; the message is one line naming the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Disclosure(_Strict):
    """Small-cell thresholds: n below ``suppress_below`` is suppressed, below ``caution_below`` flagged."""

    suppress_below: int = Field(25, ge=1)
    caution_below: int = Field(50, ge=1)


class Defaults(_Strict):
    """Defaults of every run (paths relative to the project root)."""

    processed_dir: str = "data/processed"
    outputs_dir: str = "outputs"
    timeout: float = Field(900.0, gt=0, description="seconds per run before it is killed")
    workers: int | None = Field(None, ge=1, description="parallel runs; None = one per core")
    engine: Literal["fork", "papermill"] = "fork"


class Country(_Strict):
    """A country of the matrix; ``name`` overrides the ISO 3166 name from pycountry."""

    name: str | None = None


class Chapter(_Strict):
    """One chapter notebook and where it runs."""

    notebook: str
    title: str
    scope: Literal[SCOPES] = "per_group_country"  # type: ignore[valid-type]
    groups: list[str] | None = None
    countries: list[str] | None = None
    sources: list[str] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list)
    timeout: float | None = Field(None, gt=0)
    inputs: list[str] = Field(default_factory=list, description="extra input files (globs, project-relative)")


class Report(_Strict):
    """The whole of ``params/report.yml``."""

    title: str
    disclosure: Disclosure = Field(default_factory=Disclosure)
    defaults: Defaults = Field(default_factory=Defaults)
    countries: dict[str, Country | None]
    groups: list[str]
    sources: list[str] | None = None
    chapters: dict[str, Chapter]
    #: Languages the report is rendered in (codes of params/i18n/languages.yml); English at
    #: outputs/, every other language at outputs/<lang>/ (``python -m analysis run --lang``).
    languages: list[str] = Field(default_factory=lambda: ["en"])

    @field_validator("countries", mode="before")
    @classmethod
    def _countries_as_mapping(cls, value):
        # A plain list of ISO3 codes is accepted as shorthand for {code: {}}.
        if isinstance(value, list):
            return {str(code): None for code in value}
        return value


@dataclass
class MatrixContext:
    """Everything a run matrix is resolved against (paths and catalogues)."""

    report: Report
    report_path: Path
    project_root: Path
    processed_dir: Path
    outputs_dir: Path
    groups_file: Path
    country_names: dict[str, str]
    group_labels: dict[str, str]
    group_dimensions: dict[str, str]
    group_members: dict[str, list[str]]
    #: the language of the pages (analysis.pipeline.languages.localise), the languages their
    #: switch links, the outputs folder of English, and the translated catalogue's folder
    language: str = "en"
    languages: list[str] = field(default_factory=lambda: ["en"])
    base_outputs_dir: Path | None = None
    catalogue_dir: Path | None = None


@dataclass
class RunSpec:
    """One unit of work: one notebook with one parameter set.

    ``parameters`` are the logical parameters injected into the notebook (``output_dir`` is the
    final run folder; the executor substitutes a staging folder while the run is in progress).
    ``inputs`` are the files whose content enters the run key. Plain types only, so the spec
    pickles to process-pool and Dask workers.
    """

    run_id: str
    chapter: str
    chapter_title: str
    scope: str
    notebook: str
    group: str | None
    country: str | None
    source: str | None
    sources: list[str]
    parameters: dict[str, Any]
    output_dir: str
    timeout: float
    stage: int
    inputs: list[str] = field(default_factory=list)
    status: str = "pending"  # pending | not_applicable
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Loading and validating the report file


def _read_groups(groups_file: Path) -> dict[str, dict]:
    """Group definitions, validated by :func:`analysis.schema.load_groups`."""
    from analysis.schema import SchemaError, load_groups

    try:
        groups = load_groups(groups_file)
    except SchemaError as exc:
        raise MatrixError(str(exc)) from None
    return {gid: {"label": g.label, "dimension": g.dimension, "members": list(g.members)}
            for gid, g in groups.items()}


def country_name(code: str) -> str | None:
    """English short name of an ISO 3166-1 alpha-3 code (pycountry), or None if unknown."""
    import pycountry

    entry = pycountry.countries.get(alpha_3=code.upper())
    if entry is None:
        return None
    return getattr(entry, "common_name", None) or entry.name


def load_report(path: Path | str | None = None, *, project_root: Path | None = None,
                groups_file: Path | None = None, processed_dir: Path | str | None = None,
                outputs_dir: Path | str | None = None) -> MatrixContext:
    """Load and validate a report file into a :class:`MatrixContext`.

    Raises
    ------
    MatrixError
        One line naming the file and the offending key: YAML syntax, an unknown key, an
        unknown group (not in ``params/groups.yml``), an unknown ISO3 country code, a chapter
        restricted to a group/country/source not in the matrix, a missing notebook, or an
        ``after`` naming an unknown chapter or forming a cycle.
    """
    project_root = Path(project_root or config.PROJECT_ROOT)
    path = Path(path) if path else config.REPORT_FILE
    if not path.is_absolute():
        path = (Path.cwd() / path) if (Path.cwd() / path).exists() else project_root / path
    data = config.read_yaml_mapping(path, MatrixError, "report file")
    try:
        report = Report(**data)
    except ValidationError as exc:
        raise MatrixError(config.pydantic_message(exc, str(path))) from None

    groups_file = Path(groups_file or config.GROUPS_FILE)
    groups = _read_groups(groups_file)
    for gid in report.groups:
        if gid not in groups:
            raise MatrixError(f"{path}: key 'groups': unknown group '{gid}'; "
                              f"groups in {groups_file.name} are: {', '.join(sorted(groups))}")

    names: dict[str, str] = {}
    for code, entry in report.countries.items():
        official = country_name(code) if len(code) == 3 and code.isupper() else None
        if official is None:
            raise MatrixError(f"{path}: key 'countries.{code}': not an ISO 3166-1 alpha-3 code "
                              "(use upper case, e.g. KEN)")
        names[code] = (entry.name if entry and entry.name else official)

    for cid, chapter in report.chapters.items():
        where = f"{path}: key 'chapters.{cid}"
        for gid in chapter.groups or []:
            if gid not in report.groups:
                raise MatrixError(f"{where}.groups': group '{gid}' is not in the matrix's groups "
                                  f"({', '.join(report.groups)})")
        for code in chapter.countries or []:
            if code not in report.countries:
                raise MatrixError(f"{where}.countries': country '{code}' is not in the matrix's "
                                  f"countries ({', '.join(report.countries)})")
        if report.sources is not None:
            for sid in chapter.sources or []:
                if sid not in report.sources:
                    raise MatrixError(f"{where}.sources': source '{sid}' is not in the matrix's "
                                      f"sources ({', '.join(report.sources)})")
        for dep in chapter.after:
            if dep not in report.chapters:
                raise MatrixError(f"{where}.after': unknown chapter '{dep}'")
        notebook = project_root / chapter.notebook
        if not notebook.exists():
            raise MatrixError(f"{where}.notebook': {notebook} not found")
    _stages(report, path)  # raises on a cycle

    processed = Path(processed_dir) if processed_dir else project_root / report.defaults.processed_dir
    outputs = Path(outputs_dir) if outputs_dir else project_root / report.defaults.outputs_dir
    return MatrixContext(
        report=report,
        report_path=path,
        project_root=project_root,
        processed_dir=processed.resolve(),
        outputs_dir=outputs.resolve(),
        groups_file=groups_file,
        country_names=names,
        group_labels={g: groups[g]["label"] for g in groups},
        group_dimensions={g: groups[g]["dimension"] for g in groups},
        group_members={g: groups[g]["members"] for g in groups},
    )


def _stages(report: Report, path: Path) -> dict[str, int]:
    """Stage number of each chapter: 0 without ``after``, else one more than its latest dependency."""
    stage: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(cid: str) -> int:
        if cid in stage:
            return stage[cid]
        if cid in visiting:
            raise MatrixError(f"{path}: key 'chapters.{cid}.after': chapters depend on each other in a cycle")
        visiting.add(cid)
        deps = report.chapters[cid].after
        stage[cid] = 1 + max(visit(d) for d in deps) if deps else 0
        visiting.discard(cid)
        return stage[cid]

    for cid in report.chapters:
        visit(cid)
    return stage


# --------------------------------------------------------------------------------------------
# What the processed data holds (so that a run only exists where its inputs exist)


@dataclass
class SourceCoverage:
    """What one processed source holds: its kind, countries, and categories per dimension per country."""

    source: str
    kind: str
    files: list[str]
    countries: set[str]
    categories: dict[str, dict[str, set[str]]]  # country -> dimension -> categories present


def scan_sources(processed_dir: Path, source_ids: list[str] | None, dimensions: set[str]) -> dict[str, SourceCoverage]:
    """Read only the ``country`` and dimension columns of each processed source."""
    import pyarrow.parquet as pq

    found = sorted(p.stem for p in processed_dir.glob("*.parquet")) if processed_dir.is_dir() else []
    wanted = source_ids if source_ids is not None else found
    out: dict[str, SourceCoverage] = {}
    for sid in wanted:
        parquet = processed_dir / f"{sid}.parquet"
        if not parquet.exists():
            continue
        files = [str(parquet)]
        log = processed_dir / f"{sid}.log.json"
        if log.exists():
            files.append(str(log))
        if parquet.is_dir():  # a partitioned dataset (issue 17): coverage from its sidecar
            out[sid] = _partitioned_coverage(sid, processed_dir, files[1:])
            continue
        schema = pq.read_schema(parquet)
        meta = json.loads((schema.metadata or {}).get(b"analysis", b"{}") or b"{}")
        kind = ((meta.get("source") or {}).get("kind")) or "microdata"
        columns = [c for c in ["country", *sorted(dimensions)] if c in schema.names]
        categories: dict[str, dict[str, set[str]]] = {}
        countries: set[str] = set()
        if "country" in columns:
            frame = pq.read_table(parquet, columns=columns).to_pandas()
            for code, part in frame.groupby("country", observed=True, dropna=True):
                countries.add(str(code))
                categories[str(code)] = {
                    dim: {str(v) for v in part[dim].dropna().unique()} for dim in columns if dim != "country"
                }
        out[sid] = SourceCoverage(sid, kind, files, countries, categories)
    return out


def _partitioned_coverage(sid: str, processed_dir: Path, logs: list[str]) -> SourceCoverage:
    from analysis.sources import partitioned

    meta = partitioned.load_partitioned(sid, processed_dir)
    files = [str(meta.path / partitioned.SIDECAR), *logs]
    categories = {c: {d: set(v) for d, v in dims.items()} for c, dims in meta.countries.items()}
    kind = meta.source.get("kind") or "microdata"
    return SourceCoverage(sid, kind, files, set(meta.countries), categories)


# --------------------------------------------------------------------------------------------
# Expansion into runs


def _run_parts(scope: str, chapter: str, group: str | None, source: str | None, country: str | None) -> list[str]:
    if scope == "per_group_country":
        return [chapter, group, country]
    if scope == "per_group":
        return [chapter, group, "all"]
    if scope == "per_source_country":
        return [chapter, source, country]
    if scope == "per_country":
        return [chapter, "all", country]
    return [chapter]


def expand_runs(ctx: MatrixContext, coverage: dict[str, SourceCoverage] | None = None) -> list[RunSpec]:
    """Every run of the matrix, in a stable order (stage, chapter order, group, country).

    Runs without inputs come back with ``status="not_applicable"`` and the reason.
    """
    report = ctx.report
    if coverage is None:
        dims = {ctx.group_dimensions[g] for g in report.groups}
        coverage = scan_sources(ctx.processed_dir, report.sources, dims)
    stages = _stages(report, ctx.report_path)
    microdata = {s: c for s, c in coverage.items() if c.kind == "microdata"}
    # study sources (kind: study, published aggregates of partner studies) are read only by the
    # chapters that name them, not by every per-country run
    official = {s: c for s, c in coverage.items() if c.kind not in ("microdata", "study")}
    all_estimates = ctx.outputs_dir / "tables" / "all_estimates.csv"
    unprocessed = [s for s in (report.sources or []) if s not in coverage]
    not_processed = (f"; not processed yet: {', '.join(unprocessed)} (run `python -m analysis ingest`)"
                     if unprocessed else "")
    runs: list[RunSpec] = []
    order = sorted(report.chapters, key=lambda c: (stages[c], list(report.chapters).index(c)))
    for cid in order:
        chapter = report.chapters[cid]
        groups = chapter.groups or report.groups
        countries = chapter.countries or list(report.countries)
        allowed = set(chapter.sources) if chapter.sources is not None else None

        def usable(sid: str, allowed=allowed) -> bool:
            return allowed is None or sid in allowed

        def holders(group: str | None, country: str | None, countries=countries) -> list[str]:
            out = []
            for sid, cov in microdata.items():
                if not usable(sid):
                    continue
                in_countries = [country] if country else [c for c in countries if c in cov.countries]
                for code in in_countries:
                    cats = cov.categories.get(code)
                    if cats is None:
                        continue
                    if group is None or set(ctx.group_members[group]) & cats.get(ctx.group_dimensions[group], set()):
                        out.append(sid)
                        break
            return sorted(out)

        combos: list[tuple[str | None, str | None, str | None]] = []
        if chapter.scope == "per_group_country":
            combos = [(g, c, None) for g in groups for c in countries]
        elif chapter.scope == "per_group":
            combos = [(g, None, None) for g in groups]
        elif chapter.scope == "per_source_country":
            source_ids = sorted(s for s in microdata if usable(s))
            if not source_ids:
                combos = [(None, c, None) for c in countries]  # listed as not applicable below
            combos = [(None, c, s) for s in source_ids for c in countries] or combos
        elif chapter.scope == "per_country":
            combos = [(None, c, None) for c in countries]
        else:
            combos = [(None, None, None)]

        for group, country, source in combos:
            status, reason = "pending", ""
            if chapter.scope == "once":
                sources = sorted(s for s in coverage if usable(s))
            elif source is not None:
                sources = [source] if country in microdata[source].countries else []
                if not sources:
                    status, reason = "not_applicable", f"source {source} has no data for {country}"
            else:
                sources = holders(group, country)
                if not sources:
                    status = "not_applicable"
                    what = f"members of {group} ({ctx.group_dimensions[group]})" if group else "microdata"
                    where = f" in {country}" if country else ""
                    reason = (f"no processed source holds {what}{where}{not_processed}" if coverage
                              else f"no processed data in {ctx.processed_dir} (run `python -m analysis ingest`)")
            if chapter.scope == "per_source_country" and source is None:
                status, reason = "not_applicable", "no processed microdata source"
            parts = _run_parts(chapter.scope, cid, group, source, country)
            run_dir = ctx.outputs_dir.joinpath(*parts)
            inputs = sorted({f for s in sources for f in coverage[s].files})
            if country is not None:
                inputs += sorted({f for s, cov in official.items() if country in cov.countries for f in cov.files}
                                 - set(inputs))
            if chapter.after:
                inputs.append(str(all_estimates))
            for pattern in chapter.inputs:
                inputs += sorted(str(p) for p in ctx.project_root.glob(pattern))
            params: dict[str, Any] = {
                "chapter": cid,
                "group": group,
                "country": country,
                "source": source,
                "processed_dir": str(ctx.processed_dir),
                "output_dir": str(run_dir),
            }
            optional = {
                "sources": sources,
                "countries": countries if country is None else [country],
                "outputs_root": str(ctx.outputs_dir),
                "all_estimates": str(all_estimates),
                "title": chapter.title,
                "config": str(ctx.report_path),
            }
            runs.append(RunSpec(
                run_id="/".join(parts),
                chapter=cid,
                chapter_title=chapter.title,
                scope=chapter.scope,
                notebook=str((ctx.project_root / chapter.notebook).resolve()),
                group=group,
                country=country,
                source=source,
                sources=sources,
                parameters={**params, "_optional": optional, **chapter.parameters},
                output_dir=str(run_dir),
                timeout=float(chapter.timeout or report.defaults.timeout),
                stage=stages[cid],
                inputs=inputs,
                status=status,
                reason=reason,
            ))
    return runs


# --------------------------------------------------------------------------------------------
# Parameters against what the notebook declares


def declared_parameters(notebook: str | Path) -> dict[str, dict]:
    """The parameters declared in the notebook's ``parameters`` cell (``papermill.inspect_notebook``)."""
    import papermill

    return dict(papermill.inspect_notebook(str(notebook)))


_TYPE_NAMES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict,
               "tuple": tuple}


def _expected_types(spec: dict) -> tuple[set[type], bool] | None:
    """Types a parameter accepts, from its annotation or else from its default; None = any."""
    name = str(spec.get("inferred_type_name") or "None")
    allow_none = False
    if name != "None":
        text = name.replace("typing.", "").replace(" ", "")
        if text.startswith("Optional["):
            text, allow_none = text[len("Optional["):-1], True
        parts = text.split("|")
        if "None" in parts:
            allow_none = True
        types = {_TYPE_NAMES[p.split("[")[0].lower()] for p in parts if p.split("[")[0].lower() in _TYPE_NAMES}
        if types:
            return types, allow_none
    try:
        default = ast.literal_eval(str(spec.get("default")))
    except (ValueError, SyntaxError):
        return None  # an expression (e.g. a path built in code): cannot tell
    if default is None:
        return None
    return {type(default)}, allow_none


def _fits(value: Any, types: set[type]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    if isinstance(value, (list, tuple)) and (list in types or tuple in types):
        return True
    return any(isinstance(value, t) for t in types)


def resolve_parameters(run: RunSpec, declared: dict[str, dict], report_path: Path) -> dict[str, Any]:
    """Check ``run``'s parameters against the notebook's declared ones; return what to inject.

    Standard parameters (:data:`REQUIRED_PARAMETERS`) must be declared; the runner's optional
    ones are injected only when declared; every chapter ``parameters:`` entry must be declared
    and of the declared type (from the annotation, else from the default's literal type).
    ``None`` is accepted for standard parameters that do not apply to the run's scope.

    Raises
    ------
    MatrixError
        ``<notebook>: parameter '<key>' ...`` naming the file and the key.
    """
    notebook = Path(run.notebook)
    params = dict(run.parameters)
    optional = params.pop("_optional", {})
    for key in REQUIRED_PARAMETERS:
        if key not in declared:
            raise MatrixError(f"{notebook}: parameter '{key}' is missing from the cell tagged 'parameters' "
                              f"(every chapter notebook declares {', '.join(REQUIRED_PARAMETERS)})")
    for key, value in optional.items():
        if key in declared:
            params[key] = value
    for key, value in params.items():
        if key not in declared:
            raise MatrixError(f"{report_path}: chapters.{run.chapter}.parameters: '{key}' is not declared "
                              f"in {notebook.name}'s parameters cell (declared: {', '.join(sorted(declared))})")
        if value is None and key in REQUIRED_PARAMETERS:
            continue
        expected = _expected_types(declared[key])
        if expected is None:
            continue
        types, allow_none = expected
        if value is None and allow_none:
            continue
        if not _fits(value, types):
            wanted = " or ".join(sorted(t.__name__ for t in types))
            raise MatrixError(f"{report_path}: chapters.{run.chapter}.parameters: '{key}' = {value!r} is "
                              f"{type(value).__name__}, but {notebook.name} declares it as {wanted}")
    return params


def check_parameters(runs: list[RunSpec], report_path: Path, known: dict | None = None) -> list[RunSpec]:
    """Resolve every applicable run's parameters in place (``run.parameters`` = what is injected).

    Notebooks are inspected once each. ``known`` (notebook path -> {"hash", "parameters"}, kept
    in the manifest) skips inspecting a notebook whose cells did not change; it is updated.
    Raises :class:`MatrixError` on the first problem.
    """
    from analysis.hashing import notebook_hash

    known = {} if known is None else known
    cache: dict[str, dict] = {}
    for run in runs:
        if run.notebook not in cache:
            digest = notebook_hash(run.notebook)
            entry = known.get(run.notebook)
            if entry and entry.get("hash") == digest:
                cache[run.notebook] = entry["parameters"]
            else:
                cache[run.notebook] = declared_parameters(run.notebook)
                known[run.notebook] = {"hash": digest, "parameters": cache[run.notebook]}
            if not cache[run.notebook]:
                raise MatrixError(f"{run.notebook}: no cell tagged 'parameters' (tag the cell that "
                                  "declares chapter, group, country, ... with 'parameters')")
        run.parameters = resolve_parameters(run, cache[run.notebook], report_path)
    return runs
