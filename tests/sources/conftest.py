"""Fixtures for the data-layer tests: a throw-away project (raw root, cards, processed folder)."""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from analysis.sources import ingest

SALT = "5f0c2a9e7b3d4186a1e9c0d2b7f4a3e6c8d1b2a0f9e8d7c6b5a4f3e2d1c0b9a8"  # fixed test salt, not a secret


@pytest.fixture(autouse=True)
def _fixed_salt(monkeypatch):
    """A fixed id salt, so tests never create data/.id_salt in the checkout."""
    monkeypatch.setenv("ANALYSIS_ID_SALT", SALT)


#: A small valid microdata card for a CSV; tests copy it and change one thing.
BASE_CARD = {
    "id": "mini",
    "title": "Mini survey (SYNTHETIC)",
    "kind": "microdata",
    "synthetic": True,
    "files": [{"path": "mini.csv"}],
    "reader": "csv",
    "country": "KEN",
    "licence": "CC0 (test fixture)",
    "personal_columns": ["name"],
    "id_column": "rid",
    "free_text_columns": ["comment"],
    "missing_codes": {-99: "refused"},
    "design": {"type": "probability", "weight": "wt", "strata": "stratum", "psu": "cluster"},
    "columns": {"sex": "q_sex", "age": "q_age", "admin1": "region"},
    "recodes": {"sex": {"Femme": "female", "Homme": "male", "1": "female", "2": "male"}},
    "derive": {"age_group": "from_age", "admin1_code": "natural_earth"},
    "indicators": {"food_insecurity": {"column": "fi", "true_values": ["yes", 1], "false_values": ["no", 0]}},
}

BASE_CSV = """rid,name,q_sex,q_age,region,wt,stratum,cluster,fi,comment
r1,Amina Otieno,Femme,23,Nairobi,1.5,s1,c1,yes,ok
r2,Brian Kamau,Homme,41,Nairobi,2.0,s1,c2,no,
r3,Cynthia Wanjiru,1,67,Coast,1.0,s2,c3,1,fine
r4,David Mwangi,2,35,Coast,3.0,s2,c4,0,
r5,Esther Achieng,Femme,-99,Coast,2.5,s2,c4,yes,
"""


def base_card(**changes) -> dict:
    card = copy.deepcopy(BASE_CARD)
    for key, value in changes.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    return card


@dataclass
class Project:
    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def cards(self) -> Path:
        return self.root / "cards"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    def write_card(self, card: dict | str, source: str | None = None) -> Path:
        self.cards.mkdir(parents=True, exist_ok=True)
        source = source or (card["id"] if isinstance(card, dict) else "mini")
        path = self.cards / f"{source}.yml"
        path.write_text(card if isinstance(card, str) else yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
        return path

    def write_raw(self, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
        path = self.raw / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode(encoding))
        return path

    def run(self, *sources: str, force: bool = False, capsys=None) -> int:
        args = argparse.Namespace(
            sources=list(sources), raw_root=self.raw, processed=self.processed, sources_dir=self.cards, force=force
        )
        return ingest.main(args)


@pytest.fixture
def project(tmp_path) -> Project:
    p = Project(tmp_path)
    p.raw.mkdir()
    p.cards.mkdir()
    return p
