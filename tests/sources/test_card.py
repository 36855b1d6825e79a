"""Tests for analysis.sources.card: the source-card model and its one-line errors."""

from __future__ import annotations

import pytest

from analysis import config
from analysis.sources.card import CardError, SourceCard, card_paths, load_card

from .conftest import base_card


def test_a_card_names_its_file_or_where_it_belongs(project):
    path = project.write_card(base_card())
    assert load_card(path).path_label == str(path)
    assert SourceCard(**base_card()).path_label == "params/sources/mini.yml"


def test_base_card_is_valid_and_normalises_codes(project):
    card = load_card(project.write_card(base_card()))
    assert card.missing_codes == {"-99": "refused"}
    assert card.recodes["sex"]["1"] == "female"  # YAML int keys become text
    assert card.derive_method("age_group") == ("from_age", {})


def test_missing_codes_as_a_list():
    assert SourceCard(**base_card(missing_codes=[-99, -88])).missing_codes == {"-99": "missing code", "-88": "missing code"}


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"colour": "red"}, "key 'colour': unknown key"),
        ({"reader": "sas"}, "key 'reader'"),
        ({"files": "mini.csv"}, "key 'files'"),
        ({"country": "Kenya"}, "not an ISO 3166-1 alpha-3 code"),
        ({"country": None}, "give 'country' (ISO3) or 'country_column'"),
        ({"design": {"type": "probability"}}, "needs 'weight'"),
        ({"design": {"type": "probability", "weight": "wt", "replicate": {"columns": "rw*", "method": "fay"}}}, "needs rho"),
        ({"columns": {"gender": "q1"}}, "['gender'] are not microdata schema columns"),
        ({"derive": {"age_group": "by_magic"}}, "key 'derive': unknown method 'by_magic' for 'age_group'"),
        ({"licence": None}, "key 'licence': required key is missing"),
        ({"collection_period": {"start": "2021-05-01", "end": "2021-03-01"}}, "end is before start"),
    ],
)
def test_malformed_cards_fail_with_one_line_naming_the_key(project, changes, message):
    path = project.write_card(base_card(**changes))
    with pytest.raises(CardError) as info:
        load_card(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_id_must_equal_file_stem_and_yaml_must_parse(project):
    with pytest.raises(CardError, match="must equal the file name stem 'other'"):
        load_card(project.write_card(base_card(), source="other"))
    with pytest.raises(CardError, match=r"line \d+ is not valid YAML"):
        load_card(project.write_card("id: mini\ncolumns: {sex: [q1\n", source="mini"))


def test_every_committed_card_is_valid():
    for source, path in card_paths(config.SOURCES_DIR).items():
        assert load_card(path).id == source


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"files": [{"path": "/etc/os-release"}]}, "key 'files.0.path': is an absolute path"),
        ({"files": [{"path": "../../etc/passwd"}]}, "key 'files.0.path': contains '..'"),
        ({"files": [{"path": "demo/../../x.csv"}]}, "contains '..'"),
        ({"files": [{"path": "C:\\data\\x.csv"}]}, "is an absolute path"),
        ({"reader": "kobo", "reader_options": {"form": "/tmp/form.xlsx"}}, "key 'reader_options.form': is an absolute path"),
        ({"personal_columns": ["name", "q_sex"]}, "column 'q_sex' is listed under personal_columns (dropped unread) and also used by columns.sex"),
        ({"personal_columns": ["rid"]}, "also used by id_column"),
        ({"personal_columns": ["wt"]}, "also used by design.weight"),
        ({"personal_columns": ["comment"]}, "also used by free_text_columns"),
        ({"filter": "age >= 18 and __import__('os')"}, "key 'filter': filter allows comparisons joined by and/or/not only, not function calls"),
        ({"filter": "open('x').read() == 1"}, "not function calls"),
        ({"filter": "age.real > 1"}, "not attributes"),
        ({"filter": "age > 1 > 0"}, "cannot be chained"),
        ({"filter": "age >"}, "not a valid expression"),
        ({"filter": "sex"}, "is not a comparison"),
        ({"filter": "age < 'x'"}, "compares numbers"),
        ({"reader_options": {"decimal": ",", "thousands": ","}}, "decimal and thousands are both ','"),
        ({"min_kept_share": 1.5}, "key 'min_kept_share'"),
        ({"unknown_codes": "ignore"}, "key 'unknown_codes'"),
        ({"derive": {"disability": {"method": "wg_ss", "domains": ["wg_seeing", "wg_smell"]}}}, "distinct WG-SS domains"),
    ],
)
def test_card_options_for_hostile_and_careless_input_are_validated(project, changes, message):
    path = project.write_card(base_card(**changes))
    with pytest.raises(CardError) as info:
        load_card(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_valid_filter_and_a_wg_subset_are_accepted(project):
    card = load_card(project.write_card(base_card(
        filter="q_age >= 18 and `q_sex` in ['Femme', 1] and not (region == 'Coast')",
        derive={"disability": {"method": "wg_ss", "domains": ["wg_seeing", "wg_hearing"]}},
    )))
    assert card.derive_method("disability") == ("wg_ss", {"domains": ["wg_seeing", "wg_hearing"]})
