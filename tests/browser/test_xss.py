"""An XSS payload in every human-readable string of params/ and the source card is inert (issue 11).

Partner organisations write ``params/`` (group, dimension, category and indicator labels, the
report and chapter titles, country names) and the source cards (titles, licences, descriptions).
This test plants a payload in every one of those strings, builds a small report with them (one
source, one group, one country, the group-profile chapter) through the command line, opens every
page in Chromium and fails on any ``alert`` — or on any element or handler the payload could have
created, so that escaping is checked on its own and not only the Content-Security-Policy.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from analysis import config

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: A script, an event handler, an SVG handler and a javascript: link, with quotes to break out of attributes.
PAYLOAD = ('"\'><script>alert("xss-script")</script><img src=x onerror=alert("xss-img")>'
           '<svg onload=alert("xss-svg")></svg>[link](javascript:alert("xss-link"))')
#: Keys whose string values are prose a reader sees (ids, codes, paths and column names are not planted).
PROSE_KEYS = {"label", "title", "licence", "description", "consent", "caption", "note", "name"}


def plant(value, key: str | None = None, every: bool = False):
    """``value`` with PAYLOAD appended to every prose string (and every category label); with
    ``every``, to every string (the text catalogue: every value is a text a page shows)."""
    if isinstance(value, dict) and key == "category_labels":
        return {code: f"{label} {PAYLOAD}" for code, label in value.items()}
    if isinstance(value, dict):
        return {k: plant(v, k, every) for k, v in value.items()}
    if isinstance(value, list):
        return [plant(v, key, every) for v in value]
    if isinstance(value, str) and (every or key in PROSE_KEYS):
        return f"{value} {PAYLOAD}"
    return value


def _planted_yaml(source: Path, target: Path, every: bool = False) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    target.write_text(yaml.safe_dump(plant(data, every=every), allow_unicode=True, sort_keys=False),
                      encoding="utf-8")


def _cli(root: Path, *args: str) -> None:
    env = dict(os.environ, ANALYSIS_PROJECT_ROOT=str(root))
    done = subprocess.run([sys.executable, "-m", "analysis", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, f"python -m analysis {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def hostile_outputs(tmp_path_factory) -> Path:
    """A one-chapter report built from params and a source card with PAYLOAD in every prose string."""
    root = tmp_path_factory.mktemp("hostile")
    params = config.PROJECT_ROOT / "params"
    shutil.copytree(params, root / "params", ignore=shutil.ignore_patterns("sources", "report*.yml"))
    for name in ("groups.yml", "indicators.yml"):
        _planted_yaml(params / name, root / "params" / name)
    for path in sorted(params.glob("text*.yml")):  # titles, captions, headings, sentence templates
        _planted_yaml(path, root / "params" / path.name, every=True)
    _planted_yaml(params / "sources" / "demo_disability.yml", root / "params" / "sources" / "demo_disability.yml")
    (root / "notebooks").mkdir()
    shutil.copy(config.PROJECT_ROOT / "notebooks" / "02_group_profile.ipynb", root / "notebooks")
    report = {
        "title": "Hostile report",
        "disclosure": {"suppress_below": 25, "caution_below": 50},
        "defaults": {"processed_dir": "data/processed", "outputs_dir": "outputs", "timeout": 900, "workers": 1},
        "countries": {"KEN": {"name": "Kenya"}},
        "groups": ["persons_with_disabilities"],
        "sources": ["demo_disability"],
        "chapters": {"group_profile": {"notebook": "notebooks/02_group_profile.ipynb", "title": "Chapter 2"}},
    }
    (root / "params" / "report.yml").write_text(yaml.safe_dump(plant(report), allow_unicode=True, sort_keys=False))
    _cli(root, "ingest", "demo_disability", "--raw-root", str(config.PROJECT_ROOT / "data" / "raw"),
         "--processed", str(root / "data" / "processed"), "--sources-dir", str(root / "params" / "sources"))
    _cli(root, "run", "--config", str(root / "params" / "report.yml"), "--no-progress")
    return root / "outputs"


@pytest.fixture(scope="module")
def hostile_server(hostile_outputs):
    handler = functools.partial(_Quiet, directory=str(hostile_outputs))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


#: Elements or attributes that exist on a page only if a payload was parsed as markup.
INJECTED = ("script:not([type='application/json']), [onerror], [onload], img[src='x'], "
            "a[href^='javascript:']")


def test_a_payload_in_every_params_and_card_string_never_runs(browser, hostile_outputs, hostile_server):
    pages = sorted(p.relative_to(hostile_outputs).as_posix() for p in hostile_outputs.rglob("*.html"))
    assert "index.html" in pages and any(p.startswith("group_profile/") for p in pages), pages
    context = browser.new_context()
    page = context.new_page()
    alerts: list[str] = []
    page.on("dialog", lambda dialog: (alerts.append(f"{page.url}: {dialog.message}"), dialog.dismiss()))
    try:
        for path in pages:
            page.goto(f"{hostile_server}/{path}", wait_until="networkidle")
            injected = page.eval_on_selector_all(INJECTED, "els => els.map(e => e.outerHTML.slice(0, 120))")
            assert injected == [], f"{path}: the payload became markup: {injected}"
            # ... and is there as text for the reader (escaped, not dropped).
            assert page.locator("body").inner_text().count("alert(") > 0, f"{path}: the planted labels are missing"
    finally:
        context.close()
    assert alerts == [], f"a planted payload ran: {alerts}"
