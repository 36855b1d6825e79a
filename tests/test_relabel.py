"""Every label a reader sees comes from the catalogue (issue 12, "§ test").

One chapter page of the demo report is rendered with a copy of the catalogue in which every label
is prefixed "§": the text catalogue (``params/text.yml``, every template), and the labels of
``params/groups.yml`` (groups, dimensions, categories) and ``params/indicators.yml`` (indicators,
themes). The page's text and its figures' alternative text must then show no catalogue label
without its "§": a label written in code instead of looked up would show unprefixed.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from analysis import config

pytestmark = pytest.mark.slow

MARK = "§"
RUN = "group_profile/persons_with_disabilities/KEN"


def _prefix_leaves(node):
    if isinstance(node, dict):
        return {k: _prefix_leaves(v) for k, v in node.items()}
    return MARK + node if isinstance(node, str) else node


def _relabel_catalogue(params: Path) -> list[str]:
    """Prefix every label of the copied catalogue; return the original labels (to look for)."""
    labels: list[str] = []
    texts = yaml.safe_load((params / "text.yml").read_text(encoding="utf-8"))
    (params / "text.yml").write_text(yaml.safe_dump(_prefix_leaves(texts), allow_unicode=True), encoding="utf-8")

    def plain(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from plain(v)
        elif isinstance(node, str) and "{" not in node:
            yield node

    labels += list(plain(texts))
    groups = yaml.safe_load((params / "groups.yml").read_text(encoding="utf-8"))
    for spec in (groups.get("groups") or {}).values():
        labels.append(spec["label"])
        spec["label"] = MARK + spec["label"]
    for spec in (groups.get("dimensions") or {}).values():
        if "label" in spec:
            labels.append(spec["label"])
            spec["label"] = MARK + spec["label"]
        for key, value in (spec.get("category_labels") or {}).items():
            labels.append(value)
            spec["category_labels"][key] = MARK + value
    (params / "groups.yml").write_text(yaml.safe_dump(groups, allow_unicode=True, sort_keys=False), encoding="utf-8")
    indicators = yaml.safe_load((params / "indicators.yml").read_text(encoding="utf-8"))
    for section in ("indicators", "themes"):
        for spec in (indicators.get(section) or {}).values():
            labels.append(spec["label"])
            spec["label"] = MARK + spec["label"]
    (params / "indicators.yml").write_text(yaml.safe_dump(indicators, allow_unicode=True, sort_keys=False),
                                           encoding="utf-8")
    # words of two letters or more, not a lone technical word ("ok", "yes") that page chrome also uses
    return sorted({label.strip() for label in labels if len(re.findall(r"[A-Za-z]{2,}", label)) >= 2})


def _visible_text(markup: str) -> str:
    markup = re.sub(r"<(style|script)\b.*?</\1>", " ", markup, flags=re.DOTALL | re.IGNORECASE)
    alts = " ".join(html.unescape(a) for a in re.findall(r'\balt="([^"]*)"', markup))
    body = re.sub(r"<[^>]+>", " ", markup)
    return re.sub(r"\s+", " ", html.unescape(body) + " " + alts)


def _unprefixed(label: str, page: str) -> bool:
    """True when ``label`` occurs in ``page`` not directly after the mark (in any letter case of
    its first letter, as sentences lower-case it)."""
    for form in {label, label[:1].lower() + label[1:]}:
        for match in re.finditer(re.escape(form), page):
            if not page[:match.start()].endswith(MARK):
                return True
    return False


@pytest.fixture(scope="module")
def relabelled_page(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("relabelled")
    shutil.copytree(config.PARAMS_DIR, root / "params")
    labels = _relabel_catalogue(root / "params")
    (root / "notebooks").symlink_to(config.NOTEBOOKS_DIR)
    (root / "data").mkdir()
    (root / "data" / "raw").symlink_to(config.RAW_DIR)
    shutil.copy(config.PROJECT_ROOT / "pyproject.toml", root / "pyproject.toml")
    processed, outputs = root / "data" / "processed", root / "outputs"
    env = dict(os.environ, ANALYSIS_PROJECT_ROOT=str(root), ANALYSIS_LANG="en")
    env.pop("ANALYSIS_TEXT_FILE", None)
    python = sys.executable
    steps = [
        [python, "-m", "analysis", "ingest", "demo_disability", "demo_youth", "--processed", str(processed)],
        [python, "-m", "analysis", "run", "--run", RUN, "--processed", str(processed), "--outputs", str(outputs),
         "--no-progress", "--workers", "1"],
    ]
    for command in steps:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, f"{' '.join(command[2:4])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    page = (outputs / RUN / "group_profile.html").read_text(encoding="utf-8")
    return argparse.Namespace(text=_visible_text(page), labels=labels)


def test_the_page_shows_the_relabelled_catalogue(relabelled_page):
    text = relabelled_page.text
    assert f"{MARK}Persons with disabilities" in text      # a group label
    assert f"{MARK}Food insecurity" in text or f"{MARK}food insecurity" in text  # an indicator label
    assert f"{MARK}Source: " in text                          # a word of the text catalogue


def test_no_catalogue_label_appears_without_its_mark(relabelled_page):
    leaked = [label for label in relabelled_page.labels if _unprefixed(label, relabelled_page.text)]
    assert not leaked, f"labels shown without the catalogue's '{MARK}' (hard-coded in code?): {leaked[:20]}"
