"""Reviewer HTML of one executed notebook, rendered in-process with nbconvert's HTMLExporter.

The HTML hides all code input, replaces the ``parameters``/``injected-parameters`` cells with a
small table of the run's parameters (labels from ``params/groups.yml`` and the countries table),
has one ``h1`` naming chapter, group and country, ``main`` and ``footer`` landmarks, and a footer
with the data sources, the suppression rule, the code version and when it ran. Local images
referenced by HTML outputs (``<img src="figures/x.png" alt="...">``) are embedded as data URIs,
so each page is self-contained and the notebook's alt text survives.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import html
import mimetypes
import re
from pathlib import Path
from typing import Any

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
#: The Content-Security-Policy of every reviewer page. The pages are self-contained and bring no
#: script of their own, so none may run: a payload that slipped into a label or an output stays
#: inert. Inline styles (nbconvert's CSS, table alignment) and embedded images/fonts are allowed.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; img-src data: 'self'; "
                           "font-src data:; object-src 'none'; base-uri 'none'; form-action 'none'")
_HIDDEN_TAGS = {"parameters", "injected-parameters"}


def report_environment():
    """The Jinja environment of the report's own pages (front page, ``runs.html``, the page for
    official statistics offices): autoescaped, with :data:`CONTENT_SECURITY_POLICY` as ``csp``
    for the ``<meta http-equiv="Content-Security-Policy">`` every page template puts first in
    its head (the chapter pages carry the same policy)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    env.globals["csp"] = CONTENT_SECURITY_POLICY
    return env
_EXPORTER = None


def _exporter():
    """One HTMLExporter per process (building it loads the templates)."""
    global _EXPORTER
    if _EXPORTER is None:
        from nbconvert import HTMLExporter

        _EXPORTER = HTMLExporter(
            template_name="reviewer",
            extra_template_basedirs=[str(TEMPLATES_DIR)],
            exclude_input=True,
            exclude_input_prompt=True,
            exclude_output_prompt=True,
            theme="light",
        )
    return _EXPORTER


def run_title(run, context: dict) -> str:
    """'<chapter title> — <group label> — <country name>' (parts that apply to the run)."""
    parts = [run.chapter_title]
    if run.group:
        parts.append(context.get("group_labels", {}).get(run.group, run.group))
    if run.source:
        parts.append(context.get("sources", {}).get(run.source, {}).get("title", run.source))
    if run.country:
        parts.append(context.get("country_names", {}).get(run.country, run.country))
    elif run.scope in ("per_group", "once"):
        parts.append(_word("common.all_countries", "all countries"))
    return _word("common.title_separator", " — ").join(parts)


def _word(key: str, english: str, **values) -> str:
    """A word of the page frame in the run's language (the run's process has its language's
    environment, see analysis.pipeline.languages); the English as given if the catalogue lacks it."""
    from analysis.text import TextError, has_text, text

    try:
        return text(key, **values) if has_text(key) else english.format(**values)
    except TextError:
        return english.format(**values)


def _display_value(name: str, value: Any, run, context: dict) -> str:
    root = context.get("project_root")
    if value is None:
        return "—"
    if name == "group":
        return f"{context.get('group_labels', {}).get(value, value)} ({value})"
    if name == "country":
        return f"{context.get('country_names', {}).get(value, value)} ({value})"
    if isinstance(value, str) and root and value.startswith(str(root)):
        return str(Path(value).relative_to(root)) or "."
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "—"
    return str(value)


def _switch(context: dict, run, out_path: Path) -> list[dict]:
    """The page's language switch (the same page in the report's other languages)."""
    from analysis.pipeline.languages import switch_links

    if not context.get("language") or not context.get("outputs_dir"):
        return []
    return switch_links(context["language"], Path(run.output_dir) / Path(out_path).name, context["outputs_dir"])


def _set_language(body: str, language: dict | None) -> str:
    """``<html lang=".." dir="..">`` of the page's language (nbconvert writes ``lang="en"``);
    Arabic pages are right to left."""
    if not language:
        return body
    tag = f'<html lang="{html.escape(language["code"])}" dir="{html.escape(language["dir"])}">'
    return re.sub(r"<html\b[^>]*>", tag, body, count=1)


def embed_local_images(markup: str, folders: list[Path]) -> str:
    """Replace ``<img src="local/path">`` by data URIs (first folder where the file exists)."""

    def replace(match: re.Match) -> str:
        src = html.unescape(match.group(2))
        if re.match(r"^(data:|https?:|//)", src):
            return match.group(0)
        candidates = [Path(src)] if Path(src).is_absolute() else [f / src for f in folders]
        for path in candidates:
            if path.is_file():
                mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                return f'{match.group(1)}data:{mime};base64,{data}{match.group(3)}'
        return match.group(0)

    return re.sub(r'(<img\b[^>]*?\bsrc=")([^"]+)(")', replace, markup)


def render_run_html(nb, run, context: dict, run_folder: Path, out_path: Path, *, status: str = "ok",
                    error: dict | None = None, ran_at: str | None = None) -> Path:
    """Render the reviewer HTML of an executed notebook to ``out_path`` (atomically).

    Parameters
    ----------
    nb : nbformat.NotebookNode
        The executed notebook (with its ``injected-parameters`` cell).
    run : RunSpec
        The run (chapter, group, country, parameters).
    context : dict
        ``group_labels``, ``country_names``, ``sources`` (id -> title/synthetic/licence),
        ``disclosure`` (suppress_below, caution_below), ``code_version`` (commit, dirty),
        ``project_root``, ``outputs_dir``.
    run_folder : Path
        Where the run wrote its figures (relative image links resolve from here).
    """
    nb = copy.deepcopy(nb)
    # the notebook's own Markdown in the page language (params/i18n/<lang>.yml, notebooks.*)
    from analysis.i18n import translate_notebook

    translate_notebook(nb, run.notebook, (context.get("language") or {}).get("code"))
    nb.cells = [c for c in nb.cells if not _HIDDEN_TAGS & set(c.get("metadata", {}).get("tags", []))]
    title = run_title(run, context)
    nb.metadata["title"] = title
    params = [(k, _display_value(k, v, run, context)) for k, v in run.parameters.items()]
    disclosure = context.get("disclosure", {})
    thresholds = {"suppress_below": disclosure.get("suppress_below", 25),
                  "caution_below": disclosure.get("caution_below", 50)}
    rule = _word("reviewer.suppression_rule", "estimates from fewer than {suppress_below} respondents are "
                 "suppressed; from fewer than {caution_below} they are flagged 'caution'. No individual records "
                 "are shown.", **thresholds)
    version = context.get("code_version", {})
    commit = version.get("commit") or _word("runs.code_unknown", "unknown")
    code = (_word("runs.code_dirty", "commit {commit} with uncommitted changes", commit=commit) if version.get("dirty")
            else _word("runs.code_version", "commit {commit}", commit=commit))
    ran = ran_at or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    status_text = (_word("reviewer.completed", "completed") if status == "ok"
                   else _word("reviewer.failed", "failed"))
    words = {
        "back": _word("reviewer.back", "Back to the report index"),
        "synthetic_banner": _word("figures.synthetic_banner", "SYNTHETIC DEMO DATA"),
        "synthetic": _word("reviewer.synthetic", ": the data behind this page are made up for demonstration."),
        "status": _word("reviewer.status", "Status: {status}", status=status_text),
        "parameters": _word("reviewer.parameters", "Parameters of this run"),
        "parameter": _word("reviewer.parameter", "Parameter"),
        "value": _word("reviewer.value", "Value"),
        "sources": _word("reviewer.sources", "Data sources:"),
        "synthetic_source": _word("reviewer.synthetic_source", "(synthetic)"),
        "licence": _word("reviewer.licence", ", licence "),
        "no_source": _word("reviewer.no_source", "none declared"),
        "disclosure": _word("reviewer.disclosure", "Disclosure control: {rule}", rule=rule),
        "code_version": _word("reviewer.code_version", "Code version: {code}. Ran {ran_at}.", code=code, ran_at=ran),
    }
    sources = [context.get("sources", {}).get(s, {"title": s}) for s in run.sources]
    depth = len(Path(run.output_dir).relative_to(context["outputs_dir"]).parts) if context.get("outputs_dir") else 3
    resources = {
        "metadata": {"name": title},
        "run": {
            "parameters": params,
            "status": status,
            "status_text": status_text,
            "words": words,
            "error": error,
            "sources": sources,
            "synthetic": any(s.get("synthetic") for s in sources),
            "suppression_rule": rule,
            "code_version": code,
            "ran_at": ran,
            "index_href": "../" * depth + "index.html",
            "csp": CONTENT_SECURITY_POLICY,
            "switch": _switch(context, run, out_path),
            "notice": (context.get("language") or {}).get("notice"),
        },
    }
    body, _ = _exporter().from_notebook_node(nb, resources=resources)
    # One h1 per page: the run's title. Headings inside the notebook move down one level.
    body = re.sub(r"<(/?)h1(\s|>)", r"<\1h2\2", body)
    body = _set_language(body, context.get("language"))
    body = body.replace("<!--RUN-TITLE-->", f"<h1>{html.escape(title)}</h1>", 1)
    body = embed_local_images(body, [Path(run_folder), Path(run.notebook).parent])
    from analysis.atomic import write_atomic

    return write_atomic(out_path, body)
