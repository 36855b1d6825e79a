"""Run keys: what enters them, and how a change is explained."""

from __future__ import annotations

import json

from analysis.pipeline import cache


def test_notebook_hash_ignores_outputs_and_execution_counts(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": "x = 1", "metadata": {"tags": ["parameters"]},
                     "outputs": [], "execution_count": None}], "metadata": {}}
    path = tmp_path / "a.ipynb"
    path.write_text(json.dumps(nb))
    before = cache.notebook_hash(path)
    nb["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "1"}]
    nb["cells"][0]["execution_count"] = 7
    path.write_text(json.dumps(nb))
    assert cache.notebook_hash(path) == before
    nb["cells"][0]["source"] = "x = 2"
    path.write_text(json.dumps(nb))
    assert cache.notebook_hash(path) != before


def test_row_accounting_logs_are_hashed_without_their_timestamps(tmp_path):
    log = tmp_path / "src.log.json"
    hasher = cache.FileHasher()
    log.write_text(json.dumps({"rows_read": 10, "ingested_at": "2026-01-01T00:00:00", "duration_seconds": 1.5}))
    first = hasher(log)
    log.write_text(json.dumps({"rows_read": 10, "ingested_at": "2026-02-02T10:00:00", "duration_seconds": 2.5}))
    assert cache.FileHasher()(log) == first
    log.write_text(json.dumps({"rows_read": 11, "ingested_at": "2026-02-02T10:00:00"}))
    assert cache.FileHasher()(log) != first
    assert hasher(tmp_path / "absent.parquet") == "missing"


def test_file_hashes_are_cached_on_size_and_mtime(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"abc")
    hasher = cache.FileHasher()
    digest = hasher(path)
    assert digest == cache.sha256_bytes(b"abc")
    entry = hasher.cache[str(path)]
    assert entry["size"] == 3 and entry["sha256"] == digest
    path.write_bytes(b"abcd")  # new size: hashed again
    assert hasher(path) == cache.sha256_bytes(b"abcd")


def test_parameters_are_canonical_and_portable(tmp_path):
    root = tmp_path / "project"
    params = {"output_dir": f"{root}/outputs/a", "group": "women", "sources": [f"{root}/data/x"]}
    assert cache.canonical_parameters(params, root) == {
        "group": "women", "output_dir": "outputs/a", "sources": ["data/x"]}


def test_explain_change_names_the_changed_inputs_and_components():
    old = {"inputs": {"data/processed/a.parquet": "1", "data/processed/b.parquet": "2"}, "code": "c",
           "notebook": "n", "catalogue": {"groups": "g"}}
    new = {"inputs": {"data/processed/a.parquet": "1", "data/processed/b.parquet": "3"}, "code": "c",
           "notebook": "n2", "catalogue": {"groups": "g"}}
    text = cache.explain_change(old, new)
    assert text == "changed input: data/processed/b.parquet; notebook edited"
    assert cache.explain_change(None, new) == "new"
    assert cache.run_key(new) == cache.run_key(dict(reversed(list(new.items()))))


def test_code_hash_changes_with_the_library_source(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\n")
    first = cache.code_hash(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    assert cache.code_hash(tmp_path) == first
    (tmp_path / "m.py").write_text("x = 2\n")
    assert cache.code_hash(tmp_path) != first
