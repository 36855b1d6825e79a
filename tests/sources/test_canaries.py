"""Planted personal data in every kind of column never reaches data/processed/, logs or messages.

Canaries: a name (from the card's personal column), phone numbers in international formats, an
e-mail address, a GPS pair and national-id-like numbers. One source per column kind, all
ingested in one run: whether the source is ingested (the column is dropped, hashed or not
written) or fails (the scan found the canary), no canary may appear in any processed file
(cells, Parquet metadata, logs) or in what the command printed.
"""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

from analysis.sources import load_processed

from .conftest import BASE_CARD, base_card

NAME = "Wanjiku Kamotho"
CANARIES = {
    "name": NAME,
    "phone_ke": "+254 711 222 333",
    "phone_uk": "+44 20 7946 0958",
    "phone_us": "+1 (555) 123-4567",
    "phone_fr": "0033 1 42 68 53 00",
    "email": "amina.canary@example.org",
    "gps": "-1.2921, 36.8219",
    "national_id": "ID 23456789",
    "passport": "AB1234567",
}
#: What must never be found: each canary, its digits alone, and the name's parts.
NEEDLES = sorted(
    {v for v in CANARIES.values()} | {re.sub(r"\D", "", v) for v in CANARIES.values() if sum(c.isdigit() for c in v) >= 8}
    | {"Wanjiku", "Kamotho", "amina.canary", "1.2921", "36.8219", "AB1234567"}
)

HEADER = "rid,name,q_sex,q_gender,q_age,region,wt,stratum,cluster,fi,comment,notes\n"


def _rows(kind: str, canaries: list[str]) -> str:
    """Respondents with the canaries in rows 3, 4, ... (lines 4, 5, ...), in the column of ``kind``."""
    rows = []
    for i in range(max(6, len(canaries) + 4)):
        row = {
            "rid": f"r{i}", "name": NAME if i == 2 else f"Person{chr(65 + i)}", "q_sex": "Femme" if i % 2 else "Homme",
            "q_gender": "woman" if i % 2 else "man", "q_age": str(20 + 3 * i), "region": "Nairobi",
            "wt": "1.5", "stratum": "s1" if i < 3 else "s2", "cluster": f"c{i}", "fi": "yes" if i % 2 else "no",
            "comment": "fine", "notes": "nothing",
        }
        if 2 <= i < 2 + len(canaries) and kind in row:
            row[kind] = canaries[i - 2]
        rows.append(",".join(f'"{v}"' for v in row.values()))
    return HEADER + "\n".join(rows) + "\n"


#: column kind -> the raw column that holds the canary
KINDS = {
    "personal": "name",  # dropped unread (the name canary is the personal value itself)
    "unmapped": "notes",  # never written
    "id": "rid",  # replaced by a salted hash
    "free_text": "comment",  # scanned
    "closed_category": "q_sex",  # an unknown code: counted, not shown
    "free_category": "q_gender",  # written: scanned
    "admin1": "region",  # written: scanned
    "numeric": "q_age",  # not a number: unknown code
    "weight": "wt",  # not a number: row excluded
    "strata": "stratum",  # design: scanned
    "psu": "cluster",  # design: scanned
    "indicator": "fi",  # neither true nor false: unknown code
}


def _card(source: str) -> dict:
    columns = dict(BASE_CARD["columns"], gender_identity="q_gender")
    return base_card(
        id=source, files=[{"path": f"{source}.csv"}], columns=columns, derive={"age_group": "from_age"},
        free_text_columns=["comment"], unknown_codes="allow", min_kept_share=0.1,
        design={"type": "probability", "weight": "wt", "strata": "stratum", "psu": "cluster", "single_psu": "adjust"},
    )


#: Kinds whose text is written (or scanned): one source per canary, each must fail on it.
SCANNED = ("free_text", "free_category", "admin1", "strata", "psu")


@pytest.fixture
def planted(project):
    for kind, column in KINDS.items():
        if kind in SCANNED:
            for label, canary in CANARIES.items():
                project.write_card(_card(f"{kind}__{label}"))
                project.write_raw(f"{kind}__{label}.csv", _rows(column, [canary]))
        else:  # dropped, hashed or never written: every canary in one source
            canaries = [c for label, c in CANARIES.items() if not (kind == "id" and label == "name")]
            project.write_card(_card(kind))
            project.write_raw(f"{kind}.csv", _rows(column, canaries))
    return project


def test_no_canary_in_any_column_kind_reaches_processed_data_logs_or_messages(planted, capsys):
    planted.run()
    out = capsys.readouterr()
    printed = out.out + out.err
    outcomes = dict(line.split(": ", 1) for line in out.out.strip().splitlines())
    assert len(outcomes) == len(SCANNED) * len(CANARIES) + len(KINDS) - len(SCANNED)
    blobs = {"printed": printed}
    for path in sorted(planted.processed.iterdir()):
        if path.suffix == ".json":
            blobs[path.name] = path.read_text(encoding="utf-8")
        elif path.suffix == ".parquet":
            frame = load_processed(path.stem, planted.processed)
            metadata = {k.decode(): v.decode() for k, v in (pq.read_schema(path).metadata or {}).items()}
            blobs[path.name] = frame.astype(str).to_csv() + json.dumps(metadata) + json.dumps(frame.attrs, default=str)
    for where, text in blobs.items():
        for needle in NEEDLES:
            assert needle not in text, f"{needle!r} found in {where}"
    # the sources whose canary sits in a written or scanned text column failed, naming column and line
    for kind in SCANNED:
        for label in CANARIES:
            line = outcomes[f"{kind}__{label}"]
            assert line.startswith("failed (") and "line 4" in line, (kind, label, line)
    assert "a value of a personal column" in outcomes["strata__name"]
    # dropped, hashed, counted as unknown codes or excluded rows: ingested, every row accounted for
    for kind in set(KINDS) - set(SCANNED):
        assert outcomes[kind].startswith("ingested ("), (kind, outcomes[kind])
        log = json.loads((planted.processed / f"{kind}.log.json").read_text())
        assert log["rows_read"] == log["rows_kept"] + sum(log["rows_excluded"].values())
