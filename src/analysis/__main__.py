"""Command-line interface: ``python -m analysis <command>``.

Commands
--------
ingest   harmonise raw sources (params/sources/*.yml) into data/processed/
run      execute the report notebooks for the run matrix (params/report.yml) and render outputs/
demo     regenerate the synthetic demo collaborative in data/raw/demo/
export   SDMX-CSV, Frictionless Data Package and quality statements for statistics offices
translations  missing and stale translations per language; PO export and import

Each command lives in the module that does the work; that module provides
``add_arguments(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("analysis.sources.ingest", "harmonise raw sources into data/processed/"),
    "run": ("analysis.pipeline.cli", "run the report notebooks and render outputs/"),
    "demo": ("analysis.demo", "regenerate the synthetic demo collaborative in data/raw/demo/"),
    "export": ("analysis.exchange.cli", "write SDMX-CSV, a data package and quality statements"),
    "translations": ("analysis.i18n", "check, export and import the catalogue's translations"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with ``command``, only that command's module is imported (the
    others get their one-line help): ``ingest`` and ``export`` need not import the pipeline and
    matplotlib, about a second of CPU per invocation (``make report`` runs three)."""
    parser = argparse.ArgumentParser(
        prog="python -m analysis",
        description="Intersectional analysis suite for CSO data on COVID-19 and marginalised people.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip().splitlines()[0])
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        return int(args._module.main(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
