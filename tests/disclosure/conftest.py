"""Fixtures of the disclosure attack tests: the probe source and its report (``probe.py``)."""

from __future__ import annotations

import os

import pytest
from probe import build_probe_report, write_probe


@pytest.fixture(scope="session")
def probe_processed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe_processed")
    write_probe(folder)
    return folder


def _build(tmp_path_factory, probe_processed, cross_table: str):
    outputs = tmp_path_factory.mktemp(f"probe_report_{cross_table}")
    saved = os.environ.get("ANALYSIS_DISCLOSURE_CROSS_TABLE")
    os.environ["ANALYSIS_DISCLOSURE_CROSS_TABLE"] = cross_table
    try:
        return build_probe_report(probe_processed, outputs)
    finally:
        if saved is None:
            os.environ.pop("ANALYSIS_DISCLOSURE_CROSS_TABLE")
        else:
            os.environ["ANALYSIS_DISCLOSURE_CROSS_TABLE"] = saved


@pytest.fixture(scope="session")
def probe_report(tmp_path_factory, probe_processed):
    """The probe report with the planned, cross-table suppression (the default)."""
    return _build(tmp_path_factory, probe_processed, "on")


@pytest.fixture(scope="session")
def probe_report_per_table(tmp_path_factory, probe_processed):
    """The same report with cross-table suppression switched off (each table on its own)."""
    return _build(tmp_path_factory, probe_processed, "off")
