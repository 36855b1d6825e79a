"""Large CSVs are ingested in record batches (issue 11: ingest memory 8.2× the file, target < 3×).

The streamed ingest (:mod:`analysis.sources.streaming`) must give what the in-memory ingest
gives — the same table, the same row accounting, the same errors with the same messages — for
checks that need the whole file (a duplicate id or a name in another batch, kept-row and
unknown-code shares over the whole file), and its memory must not grow with the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.sources import load_processed, streaming

from .conftest import SALT, base_card

ROOT = Path(__file__).resolve().parents[2]
HEADER = "rid,name,q_sex,q_age,region,wt,stratum,cluster,fi,comment"
NAMES = ["Amina Otieno", "Brian Kamau", "Cynthia Wanjiru", "David Mwangi", "Esther Achieng", "Faith Chebet"]


def _rows(n: int, seed: int = 7) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rows.append([f"r{i}", NAMES[i % len(NAMES)], ["Femme", "Homme", "1", "2"][int(rng.integers(0, 4))],
                     str(int(rng.integers(18, 90))), ["Nairobi", "Coast", "Western"][i % 3],
                     f"{rng.gamma(4.0, 1.0) + 0.1:.3f}", f"s{i % 4}", f"c{i % 40}", ["yes", "no", "1", "0"][i % 4],
                     ["ok", "", "the clinic was closed", ""][i % 4]])
    return rows


def _csv(rows: list[list[str]], quoted_comment_at: int | None = None) -> str:
    lines = [HEADER]
    for i, row in enumerate(rows):
        if i == quoted_comment_at:
            row = row[:-1] + ['"first line\nsecond line"']
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def _ingest(project, monkeypatch, streamed: bool, batch_bytes: int = 5_000) -> tuple[int, str]:
    """Ingest ``mini`` in memory or streamed (batches of about ``batch_bytes`` of the file)."""
    import io
    from contextlib import redirect_stdout

    if streamed:
        monkeypatch.setenv(streaming.STREAM_MIN_BYTES_ENV, "0")
        monkeypatch.setenv(streaming.BATCH_BYTES_ENV, str(batch_bytes))
    else:
        monkeypatch.setenv(streaming.STREAM_MIN_BYTES_ENV, str(10**12))
    out = io.StringIO()
    with redirect_stdout(out):
        code = project.run("mini", force=True)
    return code, out.getvalue().strip()


def _both(project, monkeypatch) -> dict:
    results = {}
    for streamed in (False, True):
        code, said = _ingest(project, monkeypatch, streamed)
        log = json.loads((project.processed / "mini.log.json").read_text())
        frame = load_processed("mini", project.processed) if code == 0 else None
        results[streamed] = (code, said, log, frame)
    return results


def _same_result(results: dict) -> None:
    (code_m, said_m, log_m, frame_m), (code_s, said_s, log_s, frame_s) = results[False], results[True]
    assert (code_s, said_s) == (code_m, said_m)
    if code_m == 0:
        assert log_s.pop("streamed")["batches"] > 1  # it really went batch by batch
        for log in (log_m, log_s):
            log.pop("ingested_at")
        assert log_s == log_m
        pd.testing.assert_frame_equal(frame_s, frame_m)
        assert frame_s.attrs == frame_m.attrs
    else:
        assert log_s["error"] == log_m["error"]


def test_large_csv_cards_stream_and_small_ones_stay_in_memory(project, monkeypatch):
    project.write_raw("mini.csv", _csv(_rows(30)))
    from analysis.sources.card import load_card

    card = load_card(project.write_card(base_card()))
    assert not streaming.is_streamed(card, project.raw)  # below 64 MiB
    monkeypatch.setenv(streaming.STREAM_MIN_BYTES_ENV, "0")
    assert streaming.is_streamed(card, project.raw)
    joined = load_card(project.write_card(base_card(files=[{"path": "mini.csv"},
                                                           {"path": "more.csv", "join_on": "rid"}])))
    assert not streaming.is_streamed(joined, project.raw)  # joined files stay in memory


def test_streamed_table_and_accounting_equal_the_in_memory_ones(project, monkeypatch):
    rows = _rows(400)
    rows[5][3] = "-99"       # missing code
    rows[17][5] = ""          # weight missing: excluded, counted
    rows[250][2] = "9"        # an unknown sex code (below 1%)
    project.write_raw("mini.csv", _csv(rows, quoted_comment_at=300))  # line numbers shift after it
    project.write_card(base_card(filter="q_age >= 20"))
    results = _both(project, monkeypatch)
    _same_result(results)
    assert results[True][2]["rows_excluded"]["weight missing or not a number (wt)"] == 1


def test_rows_not_asked_are_summed_over_the_batches_as_in_memory(project, monkeypatch):
    """Defect: a streamed ingest kept the first batch's count of rows a routed question was not
    asked of (card ``asked_when``), not the whole file's."""
    import copy

    rows = _rows(400)
    for row in rows:
        if row[4] != "Coast":
            row[8] = ""  # the question was put only to people at the coast
    project.write_raw("mini.csv", _csv(rows))
    card = base_card()
    indicators = copy.deepcopy(card["indicators"])
    first = next(iter(indicators))
    indicators[first] = {**indicators[first], "asked_when": {"region": ["Coast"]}, "asked_of": "people at the coast"}
    project.write_card({**card, "indicators": indicators})
    results = _both(project, monkeypatch)
    _same_result(results)
    log = results[True][2]
    coast = sum(1 for row in rows if row[4] != "Coast")
    assert log["not_asked"][first]["rows"] == coast  # every row outside the coast, in every batch
    assert results[True][3].attrs["source"]["not_asked"][first]["rows"] == coast


@pytest.mark.parametrize("case", ["duplicate_id", "name_in_a_later_comment", "weights_with_decimal_commas",
                                  "unknown_codes_over_the_whole_file", "late_malformed_row", "late_phone_in_psu",
                                  "lonely_psu_over_the_whole_file", "passport_like_strata", "empty_file"])
def test_whole_file_checks_fail_as_in_memory_with_the_same_message(project, monkeypatch, case):
    rows = _rows(400)
    card = base_card()
    if case == "duplicate_id":
        rows[390][0] = rows[3][0]  # far apart: in different batches
    elif case == "name_in_a_later_comment":
        rows[2][1] = "Zebedayo Kipchumba"
        rows[395][-1] = "ask zebedayo about it"
    elif case == "weights_with_decimal_commas":
        for row in rows:
            row[5] = '"' + row[5].replace(".", ",") + '"'
    elif case == "unknown_codes_over_the_whole_file":
        for i in range(0, 400, 50):  # 8 of 400 = 2% over the file, at most one per batch
            rows[i][2] = "7"
    elif case == "late_malformed_row":
        rows[380] = rows[380] + ["extra"]
    elif case == "late_phone_in_psu":
        rows[399][7] = "+254 711 222 333"
    elif case == "passport_like_strata":
        # 2 of the file's 6 strata look like passport numbers: the odd ones out, so a hit; the
        # batches of lines 300-400 hold only those two (all "look like" ids there)
        for i in range(300, 400):
            rows[i][6] = ["AB1234567", "CD7654321"][i % 2]
    elif case == "empty_file":
        rows = []
    elif case == "lonely_psu_over_the_whole_file":
        for i in (397, 398, 399):  # stratum s9 appears only at the end, with one PSU
            rows[i][6], rows[i][7] = "s9", "c99"
    project.write_raw("mini.csv", _csv(rows) if rows else "")
    project.write_card(card)
    results = _both(project, monkeypatch)
    assert results[False][0] == 1, results[False][1]
    _same_result(results)


def test_unknown_codes_under_the_share_over_the_file_pass_though_one_batch_is_over(project, monkeypatch):
    rows = _rows(400)
    rows[10][2] = "7"  # 1 of 400 (0.25%), but one in a batch of a few dozen rows is more than 1%
    project.write_raw("mini.csv", _csv(rows))
    project.write_card(base_card())
    results = _both(project, monkeypatch)
    assert results[True][0] == 0, results[True][1]
    _same_result(results)


# --------------------------------------------------------------------------------------------
# Memory: a child process, measured by the kernel (os.wait4), for two file sizes


CHILD = r"""
import argparse, sys
from analysis.sources import ingest
parser = argparse.ArgumentParser()
ingest.add_arguments(parser)
sys.exit(ingest.main(parser.parse_args(sys.argv[1:])))
"""


def _peak_rss_of_ingest(folder: Path, env: dict) -> int:
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, "bench", "--raw-root", str(folder / "raw"), "--processed",
             str(folder / "processed"), "--sources-dir", str(folder / "cards"), "--force"],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        out.seek(0)
        assert os.waitstatus_to_exitcode(status) == 0, out.read()[-2000:]
    return usage.ru_maxrss * 1024


@pytest.mark.slow  # generates 1M rows and ingests 100 MB: about a minute on 2 loaded cores
def test_ingest_memory_does_not_grow_with_the_file(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_ingest

    env = {**os.environ, "ANALYSIS_ID_SALT": SALT, streaming.STREAM_MIN_BYTES_ENV: "0",
           streaming.BATCH_BYTES_ENV: str(4 * 2**20)}
    peaks, sizes = [], []
    for rows in (200_000, 800_000):
        folder = tmp_path / str(rows)
        (folder / "raw").mkdir(parents=True)
        (folder / "cards").mkdir()
        bench_ingest.make_csv(folder / "raw" / "bench.csv", rows)
        (folder / "cards" / "bench.yml").write_text(yaml.safe_dump(bench_ingest.CARD), encoding="utf-8")
        sizes.append((folder / "raw" / "bench.csv").stat().st_size)
        peaks.append(_peak_rss_of_ingest(folder, env))
        log = json.loads((folder / "processed" / "bench.log.json").read_text())
        assert log["rows_kept"] == rows and log["streamed"]["batches"] > 1
    # in memory the peak grew by about 8 times the file; streamed, four times the rows cost only
    # what the whole-file checks keep per row (64-bit id hashes, their positions, line numbers:
    # 24 bytes) and the distinct personal values: measured 1.7 times the file's growth
    growth = peaks[1] - peaks[0]
    assert growth < 2 * (sizes[1] - sizes[0]), (peaks, sizes)
    assert peaks[1] < 3 * sizes[1] + peaks[0], (peaks, sizes)
