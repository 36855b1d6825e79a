"""A dimension added to the catalogue (``params/groups.yml``) is ingested from a source card with
no code change: the card maps and recodes it, ingest validates it against the catalogue's
categories and writes it, and a group can be defined on it (issue 12: the catalogue is the
single source of every list)."""

from __future__ import annotations

import json

import pytest
import yaml

from analysis import config, schema
from analysis.sources import load_processed

from .conftest import BASE_CSV, base_card

HOUSEHOLD = {"label": "Household type", "categories": ["alone", "couple", "extended"], "closed": True,
             "category_labels": {"alone": "Living alone", "couple": "Couple", "extended": "Extended family"}}


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    """A copy of the project's groups.yml with a ``household_type`` dimension and a group on it."""
    data = yaml.safe_load(config.GROUPS_FILE.read_text(encoding="utf-8"))
    data["dimensions"]["household_type"] = HOUSEHOLD
    data["uses"]["profile"].append("household_type")
    data["groups"]["people_living_alone"] = {"label": "People living alone", "dimension": "household_type",
                                             "members": ["alone"], "reference": "rest"}
    path = tmp_path / "groups.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    monkeypatch.setattr(config, "GROUPS_FILE", path)
    return path


def _card():
    card = base_card()
    card["columns"]["household_type"] = "hh"
    card["recodes"]["household_type"] = {"A": "alone", "C": "couple", "E": "extended"}
    return card


def _csv(codes):
    lines = BASE_CSV.strip().splitlines()
    return "\n".join([lines[0] + ",hh"] + [f"{line},{code}" for line, code in zip(lines[1:], codes)]) + "\n"


def test_a_new_catalogue_dimension_is_ingested_and_validated_from_the_card(project, catalogue):
    assert "household_type" in schema.harmonised_columns()
    assert schema.closed_categories()["household_type"] == ("alone", "couple", "extended")
    assert schema.load_groups()["people_living_alone"].dimension == "household_type"
    project.write_card(_card())
    project.write_raw("mini.csv", _csv(["A", "C", "E", "A", "C"]))
    assert project.run("mini") == 0
    frame = load_processed("mini", project.processed)
    assert frame["household_type"].tolist() == ["alone", "couple", "extended", "alone", "couple"]
    # written after the schema's own columns, before the indicators
    columns = list(frame.columns)
    assert columns.index("household_type") == len(schema.SCHEMA_COLUMNS)


def test_a_code_outside_the_new_dimension_is_an_unknown_code(project, catalogue):
    card = _card()
    card["unknown_codes"] = "allow"
    project.write_card(card)
    project.write_raw("mini.csv", _csv(["A", "C", "Z", "A", "C"]))
    assert project.run("mini") == 0
    frame = load_processed("mini", project.processed)
    assert frame["household_type"].isna().sum() == 1
    log = json.loads((project.processed / "mini.log.json").read_text())
    assert "household_type" in json.dumps(log["unknown_codes"])


def test_a_card_mapping_a_dimension_the_catalogue_does_not_declare_is_refused(project, capsys):
    project.write_card(_card())
    project.write_raw("mini.csv", _csv(["A", "C", "E", "A", "C"]))
    assert project.run("mini") == 1
    out = capsys.readouterr()
    assert "household_type" in out.out + out.err
