"""Export a built report for official statistics offices (``python -m analysis export``).

Writes outputs/exchange/ (SDMX-ML 2.1 structure, SDMX-CSV 2.0, Frictionless Data Package,
quality statements) and outputs/official_statistics.html; ``--write-structure`` rewrites the
structure definition shipped in data/reference/sdmx/. Exit codes: 0 written, 1 the data
package failed validation (``--validate``), 2 invalid input or settings.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="report file (default: params/report.yml)")
    parser.add_argument("--outputs", default=None, help="the built report's outputs folder "
                        "(default: the report file's outputs_dir)")
    parser.add_argument("--processed", default=None, help="processed data folder, for the ingest logs "
                        "(default: the report file's processed_dir)")
    parser.add_argument("--validate", action="store_true",
                        help="also validate the data package with frictionless")
    parser.add_argument("--lang", action="append", default=None, metavar="CODE",
                        help="also write the page in this language, outputs/<lang>/official_statistics.html "
                        "(repeatable; default: the report file's languages)")
    parser.add_argument("--write-structure", action="store_true",
                        help="only (re)write the project's SDMX structure shipped in data/reference/sdmx/ "
                        "(after a change to params/exchange.yml, the catalogue or the source cards)")


def main(args: argparse.Namespace) -> int:
    from analysis.exchange import ExchangeError, export_report, write_shipped_structure

    if args.write_structure:
        try:
            print(write_shipped_structure())
        except ExchangeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        result = export_report(args.outputs, report_file=args.config, processed_dir=args.processed,
                               validate=args.validate, languages=args.lang)
    except ExchangeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result.observations} observations ({result.suppressed} withheld) in {result.folder}; "
          f"page: {result.page}")
    if result.duplicates:
        print(f"{result.duplicates} rows of all_estimates.csv repeat an identical earlier row "
              "(the same estimate in two chapters' tables): each exported once")
    if result.problems:
        for problem in result.problems[:20]:
            print(f"datapackage: {problem}", file=sys.stderr)
        return 1
    if args.validate:
        print("datapackage.json: valid (frictionless)")
    return 0
