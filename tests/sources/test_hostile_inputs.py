"""Hostile input through the real command line, under a time (30 s) and memory (2 GB) limit.

Every card below once hung the ingest or exhausted the machine: a YAML alias bomb, a symlink to
``/dev/zero``, a named pipe, a 40 GB (sparse) file, free text that the old all-pairs scan took
minutes over, binary files read as CSV. They are ingested in ONE run, in order, so the test
also shows that a failing card never stops the ones after it (the last card is a good one).
The limits are hard limits on the child process (``RLIMIT_AS`` and a timeout), not timings.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import zipfile

import pandas as pd
import pytest
import yaml

from .conftest import BASE_CSV, SALT, base_card

TIME_LIMIT_S = 30
MEMORY_LIMIT_BYTES = 2 * 2**30


def _limits() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def _card(project, source: str, path: str, **changes) -> None:
    project.write_card(base_card(id=source, files=[{"path": path}], **changes))


def _alias_bomb(levels: int, width: int = 9) -> str:
    lines = ["id: a_bomb", "a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def hostile(project, tmp_path):
    raw = project.raw
    project.write_card(_alias_bomb(10), source="a_bomb")  # 9^10 values once expanded
    project.write_card(_alias_bomb(5, 9).replace("a_bomb", "a_bomb_small"), source="a_bomb_small")
    _card(project, "b_dev_zero", "zero.csv")
    (raw / "zero.csv").symlink_to("/dev/zero")
    _card(project, "c_fifo", "pipe.csv")
    os.mkfifo(raw / "pipe.csv")
    _card(project, "d_sparse", "huge.csv")
    with open(raw / "huge.csv", "wb") as handle:
        handle.truncate(40 * 2**30)
    _card(project, "e_absolute", "/dev/zero")
    _card(project, "f_escape", "../outside.csv")
    (tmp_path / "outside.csv").write_text(BASE_CSV)
    # 20k answers x 20k personal names: the old scan compared every pair (minutes)
    n = 20_000
    frame = pd.DataFrame({
        "rid": [f"r{i}" for i in range(n)], "name": [f"Person{chr(97 + i % 26)}{i:05d} Family{i % 977}" for i in range(n)],
        "q_sex": ["Femme", "Homme"] * (n // 2), "q_age": ["30"] * n, "region": ["Nairobi"] * n,
        "wt": ["1.0"] * n, "stratum": ["s1", "s2"] * (n // 2), "cluster": [f"c{i % 40}" for i in range(n)],
        "fi": ["yes"] * n, "comment": [f"answer number {i} about the market and the clinic" for i in range(n)],
    })
    frame.to_csv(raw / "many.csv", index=False)
    _card(project, "g_quadratic_scan", "many.csv")
    (raw / "parquet.csv").write_bytes(b"")
    pd.DataFrame({"a": [1, 2]}).to_parquet(raw / "parquet.csv")
    _card(project, "h_parquet_as_csv", "parquet.csv")
    with zipfile.ZipFile(raw / "archive.csv", "w") as archive:
        archive.writestr("data.csv", BASE_CSV * 1000)
    _card(project, "i_zip_as_csv", "archive.csv")
    (raw / "utf16.csv").write_bytes(BASE_CSV.encode("utf-16-le"))
    _card(project, "j_utf16_no_bom", "utf16.csv")
    (raw / "ok.csv").write_text(BASE_CSV)
    _card(project, "z_good", "ok.csv")
    return project


def test_hostile_inputs_neither_hang_nor_exhaust_memory_and_never_stop_the_other_cards(hostile):
    env = {**os.environ, "ANALYSIS_ID_SALT": SALT}
    env.pop("ANALYSIS_DEBUG", None)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "analysis", "ingest", "--raw-root", str(hostile.raw),
             "--processed", str(hostile.processed), "--sources-dir", str(hostile.cards)],
            capture_output=True, text=True, timeout=TIME_LIMIT_S, preexec_fn=_limits, env=env, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"ingest of hostile input ran over {TIME_LIMIT_S} s; output so far: {exc.stdout!r}")
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-2000:]
    assert "MemoryError" not in result.stdout + result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert result.returncode == 1
    expected = {
        "a_bomb": "YAML aliases",
        "a_bomb_small": "required key is missing",  # within the limits: read, then refused as a card
        "b_dev_zero": "outside the raw root",
        "c_fifo": "not a regular file",
        "d_sparse": "limit of a raw file",
        "e_absolute": "absolute path",
        "f_escape": "contains '..'",
        "g_quadratic_scan": "ingested (20000 of 20000 rows kept)",
        "h_parquet_as_csv": "is a Parquet file",
        "i_zip_as_csv": "is a zip archive",
        "j_utf16_no_bom": "UTF-16 text without a byte-order mark",
        "z_good": "ingested (5 of 5 rows kept)",
    }
    assert set(lines) == set(expected), result.stdout
    for source, fragment in expected.items():
        assert fragment in lines[source], f"{source}: {lines[source]}"
        assert "unexpected" not in lines[source]
        assert "\x00" not in lines[source] and "PK\x03" not in lines[source]  # no binary bytes printed


def test_a_card_alias_bomb_in_any_params_file_is_refused_quickly(tmp_path):
    from analysis import config

    path = tmp_path / "report.yml"
    path.write_text(_alias_bomb(12, 4).replace("id: a_bomb\n", ""))  # 47 aliases, 4^12 values
    with pytest.raises(ValueError, match="expand to more than"):
        config.read_yaml_mapping(path, ValueError, "report file")
    path.write_text("a: &x [1, *x]\n")  # a recursive alias
    with pytest.raises(ValueError, match="recursive"):
        config.read_yaml_mapping(path, ValueError, "report file")
    path.write_text(yaml.safe_dump({"a": list(range(10))}))
    assert config.read_yaml_mapping(path)["a"][-1] == 9


def test_cards_of_other_kinds_are_confined_to_the_raw_root_too(project, tmp_path, capsys):
    """Coded free text (kind: coding) reads its files through the same check: a symlink out of
    the raw root is refused before it is read or hashed."""
    from .test_coding import coding_card

    outside = tmp_path / "outside.csv"
    outside.write_text("resp,who,tag\nr1,ann,SECRET-OUTSIDE\n")
    project.write_raw("mini.csv", BASE_CSV)
    project.write_card(base_card(free_text_columns=[]))
    assert project.run("mini") == 0
    (project.raw / "voices").mkdir()
    (project.raw / "voices" / "coding.csv").symlink_to(outside)
    (project.raw / "voices" / "answers.csv").write_text("rid,answer,consent,name\nr1,ok,yes,A\n")
    project.write_card(coding_card("spreadsheet", [{"path": "voices/coding.csv"}]))
    capsys.readouterr()
    assert project.run("mini_voices") == 1
    line = capsys.readouterr().out.strip()
    assert "outside the raw root" in line and "SECRET-OUTSIDE" not in line, line
