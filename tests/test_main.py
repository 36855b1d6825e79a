"""The command line: ``python -m analysis`` and each subcommand's --help."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _cli(*args):
    command = [sys.executable, "-m", "analysis", *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)


def test_top_level_help_lists_every_command():
    result = _cli("--help")
    assert result.returncode == 0
    for command in ("ingest", "run", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "command, options",
    [
        ("ingest", ["--raw-root", "--processed", "--force"]),
        ("run", ["--dry-run", "--force", "--workers", "--scheduler", "--chapter", "--group", "--country"]),
        ("demo", ["--out", "--seed"]),
    ],
)
def test_each_command_has_help_with_its_options(command, options):
    result = _cli(command, "--help")
    assert result.returncode == 0, result.stderr
    for option in options:
        assert option in result.stdout, f"{command} --help does not mention {option}"


def test_unknown_command_is_a_usage_error_without_traceback():
    result = _cli("publish")
    assert result.returncode == 2
    assert "invalid choice: 'publish'" in result.stderr
    assert "Traceback" not in result.stderr


def test_ingest_and_export_do_not_import_the_plotting_stack():
    """``make report`` runs ingest, run and export as three commands; ingest and export read the
    run matrix (``analysis.pipeline.matrix``) and the folder lock but draw nothing, so importing
    them must not import the runner's front page and with it matplotlib and seaborn (a second of
    CPU each)."""
    code = ("import sys\n"
            "import analysis.sources.ingest, analysis.exchange, analysis.exchange.cli\n"
            "from analysis.pipeline import lock, matrix\n"
            "from analysis.pipeline.matrix import load_report\n"
            "print(sorted(m for m in ('matplotlib', 'seaborn', 'analysis.figures') if m in sys.modules))\n"
            "import analysis.pipeline as p\n"
            "print(p.run_pipeline.__module__)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "analysis.pipeline.runner"], result.stdout
