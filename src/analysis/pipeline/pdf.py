"""``make report-pdf``: one PDF of the front page and the chapter pages, printed by Chromium.

The rendered pages are put together into one print document, ``outputs/report_print.html``: the
front page, then every completed chapter page in the order of the run matrix (chapters as in
``params/report.yml``, runs as in the manifest), each starting on a new sheet. Chapter pages carry
their figures as data URIs, so the document is self-contained apart from the front page's figures
(``outputs/front/``, next to it). Headless Chromium (Debian's ``chromium``) prints it with the
page's print stylesheet: ``chromium --headless --print-to-pdf``.

Usage::

    python -m analysis.pipeline.pdf [--outputs DIR] [--one-per-chapter] [--pdf FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from analysis import config

#: Chromium executables tried in order (Debian's first).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class PdfError(RuntimeError):
    """The PDF cannot be made; the message says what to do."""


def _body(markup: str) -> str:
    found = re.search(r"<body[^>]*>(.*)</body>", markup, flags=re.DOTALL | re.IGNORECASE)
    return found.group(1) if found else markup


def _styles(markup: str) -> str:
    return "".join(re.findall(r"<style\b[^>]*>.*?</style>", markup, flags=re.DOTALL | re.IGNORECASE))


def chapter_pages(outputs_dir: Path, one_per_chapter: bool = False) -> list[Path]:
    """Completed chapter pages in run-matrix order (from ``manifest.json``)."""
    manifest_path = outputs_dir / "manifest.json"
    if not manifest_path.exists():
        raise PdfError(f"{manifest_path}: not found; build the report first (make report)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    runs = manifest.get("runs") or {}
    chapters = list(dict.fromkeys(e.get("chapter") for e in runs.values()))
    report = (manifest.get("report") or {}).get("config")
    if report and Path(report).exists():
        from analysis.pipeline.matrix import load_report

        chapters = list(load_report(report).report.chapters)
    pages, seen = [], set()
    for chapter in chapters:
        for run_id in sorted(runs):
            entry = runs[run_id]
            html = (entry.get("outputs") or {}).get("html") or []
            if entry.get("chapter") != chapter or entry.get("status") != "ok" or not html:
                continue
            if one_per_chapter and chapter in seen:
                continue
            path = outputs_dir / html[0]
            if path.exists():
                pages.append(path)
                seen.add(chapter)
    return pages


def print_document(outputs_dir: Path, one_per_chapter: bool = False) -> Path:
    """Write ``outputs/report_print.html``: the front page and the chapter pages, one after another."""
    front = outputs_dir / "index.html"
    if not front.exists():
        raise PdfError(f"{front}: no front page; build the report first (make report)")
    front_markup = front.read_text(encoding="utf-8")
    pages = chapter_pages(outputs_dir, one_per_chapter)
    chapter_styles = _styles(pages[0].read_text(encoding="utf-8")) if pages else ""
    parts = [f'<section class="print-page">{_body(front_markup)}</section>']
    for page in pages:
        body = _body(page.read_text(encoding="utf-8"))
        body = re.sub(r"<script\b.*?</script>", "", body, flags=re.DOTALL | re.IGNORECASE)
        parts.append(f'<section class="print-page">{body}</section>')
    head = re.search(r"<head[^>]*>(.*?)</head>", front_markup, flags=re.DOTALL | re.IGNORECASE)
    lang = re.search(r'<html lang="([^"]+)"', front_markup)
    document = (f'<!DOCTYPE html><html lang="{lang.group(1) if lang else "en"}"><head>'
                f"{head.group(1) if head else ''}{chapter_styles}"
                "<style>.print-page { break-before: page; } .print-page:first-child { break-before: auto; }"
                " @media print { .jp-InputArea, .skip { display: none; } }</style>"
                f"</head><body>{''.join(parts)}</body></html>")
    path = outputs_dir / "report_print.html"
    path.write_text(document, encoding="utf-8")
    return path


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise PdfError("Chromium not found; install it (Debian: apt-get install chromium, or make browser-deps)")


def print_pdf(document: Path, pdf: Path, chromium: str | None = None, timeout: float = 900) -> Path:
    """Print ``document`` to ``pdf`` with headless Chromium (``--print-to-pdf``)."""
    chromium = chromium or find_chromium()
    pdf.parent.mkdir(parents=True, exist_ok=True)
    tmp = pdf.with_suffix(".pdf.tmp")
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--run-all-compositor-stages-before-draw",
               "--no-pdf-header-footer", f"--print-to-pdf={tmp}", document.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
        raise PdfError(f"chromium could not print {document} (exit {result.returncode}): "
                       f"{(result.stderr or '').strip().splitlines()[-1:] or 'no output'}")
    if not tmp.read_bytes().startswith(b"%PDF"):
        raise PdfError(f"chromium wrote {tmp}, which is not a PDF")
    tmp.replace(pdf)
    return pdf


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.pipeline.pdf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", default=str(config.OUTPUTS_DIR), help="outputs folder (default: outputs/)")
    parser.add_argument("--pdf", default=None, help="PDF to write (default: <outputs>/report.pdf)")
    parser.add_argument("--one-per-chapter", action="store_true",
                        help="the front page and the first page of each chapter only")
    args = parser.parse_args(argv)
    outputs = Path(args.outputs)
    try:
        document = print_document(outputs, args.one_per_chapter)
        pdf = print_pdf(document, Path(args.pdf) if args.pdf else outputs / "report.pdf")
    except (PdfError, subprocess.TimeoutExpired) as exc:
        print(f"report-pdf: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {pdf} ({pdf.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
