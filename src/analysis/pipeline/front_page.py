"""``outputs/index.html``: the report's front page — what the report found, and where to read more.

Built after every pipeline run from ``outputs/tables/all_estimates.csv`` (the collected result
tables) and the manifest:

- the report's title and scope: countries, groups, and each source with its collection period
  and how disability (or the group's dimension) was identified;
- key findings by theme (the five themes of the indicator catalogue plus community response), each
  one sentence built from the data — size, interval, source, respondents and quality — chosen by
  the rules of :mod:`analysis.findings`, which the page states; a theme without a finding that
  meets them says so and why;
- one small figure per theme: the gap of the theme's most widely measured indicator for every
  group × country × source, on the same ±50-point axis;
- findings that chapters publish themselves (``findings.json`` beside a run's page, e.g. pooled
  evidence from partner studies with its quality rating), linked to their chapter;
- a "Voices" section in each theme that coded free text covers: what the Voices chapter's runs
  published for it (``findings.json`` items of ``kind: voices``, see
  :func:`analysis.chapters.voices.voices_findings`) — the share of each group's coded
  respondents mentioning the theme, with interval, n and the coders' agreement, and one or two
  consented, scrubbed quotes — chosen by rules the page states (:func:`_voices`);
- links into the chapters (each finding links the group-profile page it comes from), the
  synthesis, the workbook and the run status grid (``runs.html``, :mod:`analysis.pipeline.index`).

Every word comes from the text catalogue (``front.*`` in ``params/text.yml``); every value is
escaped by Jinja's autoescape.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from analysis import figures, findings, tables
from analysis.atomic import write_atomic
from analysis.pipeline.index import _findings
from analysis.pipeline.render import report_environment
from analysis.schema import load_groups, load_indicators, load_themes
from analysis.text import text, text_count

#: Key findings shown per theme.
FINDINGS_PER_THEME = 3
#: Source kinds named as official statistics on the page, and the other kinds named by kind.
OFFICIAL_KINDS = ("aggregates", "margins")
OTHER_KINDS = ("study", "coding")
#: Theme shares of coded answers shown in a theme's Voices section (at most one per group).
VOICES_PER_THEME = 3


def _source_info(manifest: dict, ctx) -> dict[str, dict]:
    """Title, period, countries and processed metadata of every source the report read."""
    import json

    import pyarrow.parquet as pq

    from analysis.chapters.common import WG_DOMAINS

    out = {}
    wanted_sources = set(ctx.report.sources) if ctx.report.sources else None
    for sid, info in (manifest.get("sources") or {}).items():
        path = Path(ctx.processed_dir) / f"{sid}.parquet"
        if (wanted_sources is not None and sid not in wanted_sources) or not path.exists():
            continue  # a source card the report does not read
        meta, answered, countries = {}, [], []
        if path.exists():
            schema = pq.read_schema(path)
            meta = json.loads((schema.metadata or {}).get(b"analysis", b"{}")).get("source", {})
            wanted = [c for c in (*WG_DOMAINS, "country") if c in schema.names]
            if wanted:
                data = pq.read_table(path, columns=wanted).to_pandas()
                answered = [c for c in WG_DOMAINS if c in data and data[c].notna().any()]
                if "country" in data:
                    countries = sorted(data["country"].dropna().astype(str).unique())
        period = meta.get("collection_period") or {}
        out[sid] = {"id": sid, "title": str(info.get("title") or meta.get("title") or sid),
                    "synthetic": bool(info.get("synthetic")), "meta": meta, "answered": answered,
                    "kind": meta.get("kind"), "countries": countries,
                    "period": text("common.period", start=period["start"], end=period["end"])
                    if period.get("start") and period.get("end") else ""}
    return out


def _group_profile_links(manifest: dict, outputs_dir: Path) -> dict[tuple[str, str], str]:
    """(group, country) -> the group-profile page of that run (relative to ``outputs/``)."""
    links = {}
    for entry in (manifest.get("runs") or {}).values():
        if entry.get("chapter") != "group_profile" or entry.get("status") != "ok":
            continue
        html = (entry.get("outputs") or {}).get("html") or []
        if html and (outputs_dir / html[0]).exists():
            links[(entry.get("group"), entry.get("country"))] = html[0]
    return links


def _chapter_links(manifest: dict, ctx, outputs_dir: Path) -> list[dict]:
    """Every chapter of the report: its title, how many pages, a link to its section of runs.html
    (and to its page when it has one page only, e.g. the synthesis)."""
    out = []
    runs = manifest.get("runs") or {}
    for cid, chapter in ctx.report.chapters.items():
        pages = [e for e in runs.values() if e.get("chapter") == cid and e.get("status") == "ok"
                 and (e.get("outputs") or {}).get("html")]
        href = f"runs.html#chapter-{cid}"
        if len(pages) == 1 and (outputs_dir / pages[0]["outputs"]["html"][0]).exists():
            href = pages[0]["outputs"]["html"][0]
        out.append({"title": chapter.title, "href": href,
                    "pages": text_count("front.chapter_pages", len(pages))})
    return out


def _theme_figure(theme: str, table: pd.DataFrame, percent: list[str], indicators: dict,
                  group_labels: dict, country_names: dict, source_titles: dict, folder: Path,
                  synthetic: bool) -> dict | None:
    """Gap of the theme's most widely measured percent indicator, every group × country × source."""
    rows = table[(table["theme"] == theme) & table["indicator"].isin(percent) & table["gap_flag"].notna()]
    if rows.empty:
        return None
    counts = rows.groupby("indicator", sort=False).size()
    indicator = counts.idxmax()
    rows = rows[rows["indicator"] == indicator].copy()
    # one point per group × country: the source with the most respondents there (all are in the
    # synthesis); groups in catalogue order, then countries
    rows = rows.assign(_n=rows["n_unweighted"].astype(float) + rows["reference_n_unweighted"].astype(float))
    rows = rows.sort_values("_n", ascending=False, kind="stable").drop_duplicates(["group", "country"])
    group_rank = {g: i for i, g in enumerate(group_labels)}
    rows = rows.assign(_g=rows["group"].map(group_rank)).sort_values(["_g", "country"], kind="stable")
    rows["item"] = [text("front.figure.item", group=group_labels.get(g, g), country=country_names.get(c, c),
                         source=source_titles.get(s, s))
                    for g, c, s in zip(rows["group"], rows["country"], rows["source"])]
    shown = pd.DataFrame({
        "indicator": rows["item"], "estimate": rows["gap"] * 100, "ci_low": rows["gap_ci_low"] * 100,
        "ci_high": rows["gap_ci_high"] * 100, "flag": rows["gap_flag"]})
    title = text("front.figure.title", indicator=indicators[indicator].label)
    source_note = text("common.source_note", sources=text("common.source_separator").join(
        dict.fromkeys(source_titles.get(s, s) for s in rows["source"])))
    caption = text("front.figure.caption", indicator=indicators[indicator].label)
    shown = shown.reset_index(drop=True)
    name = f"theme_{theme}"
    key = _theme_figure_key(shown, title, source_note, caption, synthetic)
    kept = _kept_figure(Path(folder), name, key)
    if kept is not None:
        return kept
    fig, alt = figures.plot_gaps(shown, title=title, source_note=source_note, synthetic=synthetic)
    saved = figures.save_figure(fig, folder, name, alt, caption=caption)
    write_atomic(Path(folder) / f"{name}.json",
                 json.dumps({"key": key, "alt": saved.alt, "caption": saved.caption}, ensure_ascii=False))
    return {"svg": saved.svg, "alt": saved.alt, "caption": saved.caption}


def _theme_figure_key(shown: pd.DataFrame, title: str, source_note: str, caption: str, synthetic: bool) -> str:
    """What a theme figure's files depend on: the rows it shows, its words, the figure code and
    matplotlib, the text catalogue the figure's own words come from, its fonts and formats."""
    import matplotlib

    from analysis.hashing import sha256_file, sha256_json
    from analysis.text import current_texts

    return sha256_json({
        "rows": tables.csv_text(shown), "title": title, "source_note": source_note, "caption": caption,
        "synthetic": bool(synthetic), "code": sha256_file(figures.__file__), "matplotlib": matplotlib.__version__,
        "texts": sha256_json(current_texts()[0]), "fonts": figures.font_family(),
        "formats": sorted(figures.figure_formats())})


def _kept_figure(folder: Path, name: str, key: str) -> dict | None:
    """The theme figure drawn by an earlier build when its key is the same and its files exist
    (redrawing the front page's figures took seconds on every build), else None."""
    record, svg = folder / f"{name}.json", folder / f"{name}.svg"
    try:
        kept = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    formats = figures.figure_formats()
    if kept.get("key") != key or not svg.exists() or ("png" in formats and not (folder / f"{name}.png").exists()):
        return None
    return {"svg": svg, "alt": kept["alt"], "caption": kept["caption"]}


def _voices_items(manifest: dict, outputs_dir: Path) -> list[dict]:
    """Every ``kind: voices`` item of the ``findings.json`` beside each successful run's page,
    with ``href``, the page (relative to ``outputs/``). Stale runs (built from inputs that have
    changed since) are left out, as they are of ``all_estimates.csv``: every number shown is a
    row of that table."""
    import json

    from analysis.chapters.voices import FINDING_KIND

    out = []
    runs = manifest.get("runs") or {}
    for run_id in sorted(runs):
        entry = runs[run_id]
        html = (entry.get("outputs") or {}).get("html") or []
        if entry.get("status") != "ok" or entry.get("stale") or not html:
            continue
        path = (outputs_dir / html[0]).parent / "findings.json"
        if not path.exists():
            continue
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:  # a run's file, written by the chapter: name it, do not guess
            raise ValueError(f"{path}: not a findings file ({exc.__class__.__name__}); run the chapter again") from None
        out += [{**item, "href": html[0]} for item in items
                if isinstance(item, dict) and item.get("kind") == FINDING_KIND]
    return out


def _alpha_text(item: dict) -> str:
    alpha = f"{item['alpha']:.2f}"
    if item.get("alpha_ci_low") is None or item.get("alpha_ci_high") is None:
        return alpha
    return text("front.voices.alpha_interval", alpha=alpha, low=f"{item['alpha_ci_low']:.2f}",
                high=f"{item['alpha_ci_high']:.2f}")


def _voices(theme: str, theme_label: str, items: list[dict], ctx, source_titles: dict) -> dict | None:
    """The Voices section of one theme, or None when no coded free text covers the theme.

    Rules (stated on the page, ``front.voices.rules``): only theme shares flagged ok and only
    themes whose agreement between coders reaches the run's threshold (both decided by the
    chapter, ``shown``); the largest shares first, at most one per group and
    :data:`VOICES_PER_THEME` in all; quotes only as the chapter attached them (consented,
    scrubbed, from group × country cells of at least ``suppress_below`` coded respondents).
    """
    from analysis.text import lower_first

    mine = [i for i in items if i.get("theme") == theme]
    if not mine:
        return None
    shown = sorted((i for i in mine if i.get("shown")), key=lambda i: -float(i["estimate"]))
    picked, groups = [], set()
    for item in shown:
        if item["group"] in groups or len(picked) >= VOICES_PER_THEME:
            continue
        groups.add(item["group"])
        group_label = ctx.group_labels.get(item["group"], item["group"])
        country = ctx.country_names.get(item["country"], item["country"])
        picked.append({
            "sentence": text("front.voices.sentence", group=group_label, country=country,
                             share=findings.format_percent(item["estimate"], item["ci_low"], item["ci_high"]),
                             n=f"{int(item['n_unweighted']):,}", theme=lower_first(theme_label),
                             alpha=_alpha_text(item),
                             source=source_titles.get(item.get("survey"), item.get("survey") or item["source"])),
            "href": item["href"],
            "link_text": text("front.voices.link", group=group_label, country=country),
            "data": {"source": item["source"], "country": item["country"], "group": item["group"],
                     "indicator": item["indicator"], "estimate": repr(float(item["estimate"])),
                     "ci-low": repr(float(item["ci_low"])), "ci-high": repr(float(item["ci_high"])),
                     "n": str(int(item["n_unweighted"])), "alpha": repr(float(item["alpha"]))},
            "quotes": [{"text": q["quote"], "lang": q.get("language") or "",
                        "who": text("front.voices.attribution", group=group_label, country=country)}
                       for q in item.get("quotes") or [] if q.get("group") and q.get("country")],
        })
    why = ""
    if not picked:
        flagged = sum(1 for i in mine if i.get("reason") == "flag")
        why = text("front.voices.none", total=len(mine), flagged=flagged, tentative=len(mine) - flagged)
    return {"shares": picked, "why": why}


def _sections(themes, compared, chosen, groups, indicators, percent, ctx, source_titles, links, figure_dir,
              path, synthetic, voices_items=()) -> list[dict]:
    """One section per theme: its findings (or why there is none), its figure and its Voices."""
    from analysis.schema import load_dimensions

    dimensions = load_dimensions(ctx.groups_file)
    reference_labels = {}
    for gid, group in groups.items():
        if group.reference == "rest":
            reference_labels[gid] = text("common.everyone_else")
        else:
            dimension = dimensions.get(group.dimension)
            labels = dimension.category_labels if dimension else {}
            reference_labels[gid] = text("common.list_separator").join(labels.get(c, c) for c in group.reference)

    sections = []
    for theme, theme_label in themes.items():
        in_theme = compared[compared["theme"] == theme] if len(compared) else compared
        picked = chosen[chosen["theme"] == theme] if len(chosen) else chosen
        items = []
        for _, row in picked.iterrows():
            group_label = groups[row["group"]].label if row["group"] in groups else str(row["group"])
            items.append({
                "sentence": findings.finding_text(
                    row, group_label=group_label, reference_label=reference_labels.get(row["group"], ""),
                    indicator_label=indicators[row["indicator"]].label,
                    country_label=ctx.country_names.get(row["country"], row["country"]),
                    source_title=source_titles.get(row["source"], row["source"])),
                "href": links.get((row["group"], row["country"])),
                "link_text": text("front.finding_link", group=group_label,
                                  country=ctx.country_names.get(row["country"], row["country"])),
                "data": {"source": row["source"], "country": row["country"], "group": row["group"],
                         "indicator": row["indicator"], "estimate": repr(float(row["estimate"])),
                         "reference-estimate": repr(float(row["reference_estimate"])),
                         "gap": repr(float(row["gap"])), "gap-ci-low": repr(float(row["gap_ci_low"])),
                         "gap-ci-high": repr(float(row["gap_ci_high"])),
                         "n": str(int(row["n_unweighted"]))},
            })
        why = ""
        if not items:
            pct = in_theme[in_theme["indicator"].isin(percent)] if len(in_theme) else in_theme
            if pct.empty:
                why = text("front.no_data")
            else:
                flagged = int((~((pct["flag"] == "ok") & (pct["reference_flag"] == "ok")
                                 & (pct["gap_flag"] == "ok"))).sum())
                why = text("front.no_finding", total=len(pct), flagged=flagged, unclear=len(pct) - flagged)
        figure = None
        if len(in_theme):
            figure = _theme_figure(theme, compared, percent, indicators,
                                   {k: v.label for k, v in groups.items()}, ctx.country_names, source_titles,
                                   figure_dir, synthetic)
            if figure:
                figure["src"] = os.path.relpath(figure.pop("svg"), path.parent)
        sections.append({"id": theme, "title": theme_label, "findings": items, "why": why, "figure": figure,
                         "voices": _voices(theme, theme_label, list(voices_items), ctx, source_titles)})

    return sections


def write_front_page(manifest: dict, ctx, path: Path | None = None) -> Path:
    """Render the front page (``outputs/index.html``) from the collected estimates; returns its path."""
    from analysis.chapters.common import describe_measurement

    outputs_dir = Path(ctx.outputs_dir)
    path = Path(path or outputs_dir / "index.html")
    report = ctx.report
    indicators_file = Path(ctx.groups_file).with_name("indicators.yml")
    indicators = load_indicators(indicators_file)
    themes = load_themes(indicators_file)
    groups = load_groups(ctx.groups_file)
    percent = [k for k, v in indicators.items() if v.unit == "percent"]
    estimates_path = outputs_dir / "tables" / "all_estimates.csv"
    estimates = tables.read_csv(estimates_path) if estimates_path.exists() else tables.empty_result()
    compared = findings.comparisons(estimates, indicators) if len(estimates) else pd.DataFrame(
        columns=findings.COMPARISON_COLUMNS)
    chosen = findings.key_findings(compared, percent, per_theme=FINDINGS_PER_THEME) if len(compared) else compared
    sources = _source_info(manifest, ctx)
    source_titles = {k: v["title"] for k, v in sources.items()}
    links = _group_profile_links(manifest, outputs_dir)
    figure_dir = outputs_dir / "front"
    voices_items = _voices_items(manifest, outputs_dir)
    # the house style only inside this function: the pipeline's process (whose forked workers run
    # the next notebooks) keeps its own matplotlib settings
    import matplotlib

    with matplotlib.rc_context():
        figures.use_house_style()
        sections = _sections(themes, compared, chosen, groups, indicators, percent, ctx, source_titles, links,
                             figure_dir, path, any(s["synthetic"] for s in sources.values()), voices_items)

    scope_sources = []
    for sid, info in sources.items():
        if info["kind"] not in (None, "microdata"):
            continue
        measured = describe_measurement(sid, "disability", info["meta"], info["answered"])
        scope_sources.append({
            "title": info["title"], "period": info["period"],
            "countries": text("common.list_separator").join(ctx.country_names.get(c, c) for c in info["countries"]),
            "disability": measured, "synthetic": info["synthetic"]})
    # official tables (aggregates, margins) are compared with; partner studies and coded free
    # text are sources of their own chapters, named as such
    official = [info for info in sources.values() if info["kind"] in OFFICIAL_KINDS]
    other_sources = [{"heading": text(f"front.other_sources.{kind}"),
                      "titles": [{"title": i["title"], "period": i["period"]} for i in sources.values()
                                 if i["kind"] == kind]}
                     for kind in OTHER_KINDS if any(i["kind"] == kind for i in sources.values())]

    d = report.disclosure
    env = report_environment()  # autoescaped; the pages' Content-Security-Policy as csp
    from analysis.pipeline.languages import page_language, switch_links

    language = page_language(ctx) if getattr(ctx, "language", None) else None
    page = env.get_template("front.html.j2").render(
        t=lambda key, **values: text(key, **values),
        language=language,
        switch=switch_links(language, path, outputs_dir) if language else [],
        title=report.title,
        synthetic=any(s["synthetic"] for s in sources.values()),
        countries=text("common.list_separator").join(ctx.country_names.get(c, c) for c in report.countries),
        groups=text("common.list_separator").join(ctx.group_labels.get(g, g) for g in report.groups),
        sources=scope_sources,
        official=[{"title": o["title"], "period": o["period"]} for o in official],
        other_sources=other_sources,
        sections=sections,
        chapters=_chapter_links(manifest, ctx, outputs_dir),
        chapter_findings=_findings(manifest.get("runs") or {}, outputs_dir),
        comparisons=len(compared),
        shown=sum(len(s["findings"]) for s in sections),
        per_theme=FINDINGS_PER_THEME,
        workbook=(outputs_dir / "synthesis" / "tables" / "synthesis.xlsx").exists(),
        voices_rules=text("front.voices.rules", per_theme=VOICES_PER_THEME, suppress_below=d.suppress_below,
                          threshold=text("common.list_separator").join(
                              sorted({f"{float(i['alpha_threshold']):g}" for i in voices_items})))
        if voices_items else "",
        suppression_rule=text("front.suppression_rule", suppress_below=d.suppress_below,
                              caution_below=d.caution_below),
        updated_at=manifest.get("updated_at", ""),
    )
    return write_atomic(path, page)  # one line with the path on a full disk; no .tmp left
