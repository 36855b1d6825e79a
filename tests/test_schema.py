"""Tests for analysis.schema: categories, WG-SS identifier, age bands, catalogue loaders, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analysis import config, schema
from analysis.schema import SchemaError

# --- age bands -----------------------------------------------------------------------------


def test_age_bands_are_inclusive_and_open_ended():
    ages = pd.Series([17, 18, 24, 24.9, 25, 64, 65, 103, np.nan, -1])
    got = schema.assign_age_band(ages).tolist()
    assert got == [pd.NA, "18-24", "18-24", "18-24", "25-34", "55-64", "65+", "65+", pd.NA, pd.NA]


def test_custom_age_bands_and_bad_labels():
    got = schema.assign_age_band(pd.Series([0, 5, 17, 18]), ("0-4", "5-17")).tolist()
    assert got == ["0-4", "5-17", "5-17", pd.NA]
    with pytest.raises(SchemaError, match="'18 to 24'"):
        schema.parse_age_band("18 to 24")
    with pytest.raises(SchemaError, match="ends before"):
        schema.parse_age_band("30-20")


@given(st.lists(st.floats(min_value=0, max_value=120, allow_nan=False), min_size=1, max_size=50))
def test_every_adult_age_falls_in_exactly_one_default_band(ages):
    bands = schema.assign_age_band(pd.Series(ages))
    for age, band in zip(ages, bands):
        if age >= 18:
            low, high = schema.parse_age_band(band)
            assert low <= np.floor(age) <= high
        else:
            assert pd.isna(band)


# --- WG-SS ---------------------------------------------------------------------------------


def test_wg_ss_identifier_uses_the_cutoff_and_missing_rule():
    domains = pd.DataFrame(
        [
            [1, 1, 1, 1, 1, 1],  # no difficulty anywhere -> no
            [2, 2, 2, 2, 2, 2],  # some difficulty everywhere -> still no (cut-off is 3)
            [1, 1, 3, 1, 1, 1],  # a lot of difficulty walking -> yes
            [4, np.nan, 1, 1, 1, 1],  # cannot see at all, one domain missing -> yes
            [1, np.nan, 1, 1, 1, 1],  # one domain missing, none severe -> unknown
            [np.nan] * 6,
        ],
        columns=list(schema.WG_DOMAINS),
    )
    assert schema.wg_ss_disability(domains).tolist() == ["no", "no", "yes", "yes", pd.NA, pd.NA]


# --- countries -----------------------------------------------------------------------------


@pytest.mark.parametrize("code,ok", [("KEN", True), ("USA", True), ("ken", False), ("KE", False), ("XXX", False), (None, False)])
def test_is_iso3(code, ok):
    assert schema.is_iso3(code) is ok


# --- catalogue loaders ---------------------------------------------------------------------


def test_project_catalogue_loads_and_follows_the_contract():
    indicators = schema.load_indicators()
    assert indicators, "params/indicators.yml defines no indicators"
    for key, ind in indicators.items():
        assert ind.id == key and ind.theme in schema.load_themes()
    groups = schema.load_groups()
    for group in groups.values():
        assert group.dimension in schema.harmonised_columns()
    assert schema.load_age_bands() == tuple(schema.load_dimensions()["age_group"].categories)


def _write(tmp_path, text, name="x.yml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_indicator_with_unknown_key_or_bad_unit_names_the_key(tmp_path):
    path = _write(tmp_path, """
indicators:
  fi:
    label: Food insecurity
    theme: food_insecurity
    definition: d
    unit: percent
    direction: higher_is_worse
    type: binary
    colour: red
""")
    with pytest.raises(SchemaError, match=r"indicator 'fi': key 'colour': unknown key") as info:
        schema.load_indicators(path)
    assert "\n" not in str(info.value)
    path = _write(tmp_path, """
indicators:
  fi: {label: F, theme: food, definition: d, unit: percent, direction: higher_is_worse, type: binary}
""")
    with pytest.raises(SchemaError, match="key 'theme'"):
        schema.load_indicators(path)
    path = _write(tmp_path, """
indicators:
  fi: {label: F, theme: food_insecurity, definition: d, unit: mean, direction: higher_is_worse, type: binary}
""")
    with pytest.raises(SchemaError, match="must have unit 'percent'"):
        schema.load_indicators(path)


def test_groups_loader_rejects_unknown_dimension_and_overlap(tmp_path):
    path = _write(tmp_path, "groups:\n  g: {label: G, dimension: shoe_size, members: [big]}\n")
    with pytest.raises(SchemaError, match="dimension 'shoe_size'"):
        schema.load_groups(path)
    path = _write(tmp_path, "groups:\n  g: {label: G, dimension: sex, members: [female], reference: [female]}\n")
    with pytest.raises(SchemaError, match="both members and reference"):
        schema.load_groups(path)
    path = _write(tmp_path, "groups: [1, 2\n")
    with pytest.raises(SchemaError, match="not valid YAML"):
        schema.load_groups(path)


def test_group_assign_with_rest_and_explicit_reference():
    frame = pd.DataFrame({"age_group": ["65+", "18-24", None, "45-54"], "displacement_status": ["idp", "host", "returnee", None]})
    older = schema.Group(id="o", label="Older", dimension="age_group", members=["65+"], reference="rest")
    assert older.assign(frame).tolist() == ["group", "reference", pd.NA, "reference"]
    displaced = schema.Group(id="d", label="D", dimension="displacement_status", members=["idp", "refugee"], reference=["host"])
    assert displaced.assign(frame).tolist() == ["group", "reference", pd.NA, pd.NA]
    with pytest.raises(SchemaError, match="column 'disability'"):
        schema.Group(id="p", label="P", dimension="disability", members=["yes"]).assign(frame)


# --- validation of a harmonised table --------------------------------------------------------


def _valid_frame(n=4) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series([pd.NA] * n, dtype="string") for c in schema.SCHEMA_COLUMNS})
    for c in schema.NUMERIC_COLUMNS:
        frame[c] = np.nan
    frame["respondent_id"] = [f"id{i}" for i in range(n)]
    frame["source"] = "t"
    frame["country"] = "KEN"
    frame["sex"] = ["female", "male"] * (n // 2)
    frame["age"] = 30.0
    frame["age_group"] = "25-34"
    frame["weight"] = 1.5
    frame["sample_type"] = "probability"
    for d in schema.WG_DOMAINS:
        frame[d] = 1.0
    frame["disability"] = "no"
    frame["disability_source"] = "wg_ss"
    frame["food_insecurity"] = [0.0, 1.0, np.nan, 1.0]
    return frame


def test_valid_frame_passes():
    indicators = schema.load_indicators()
    assert schema.validate_harmonised(_valid_frame(), indicators, age_bands=schema.load_age_bands()) is not None


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda f: f.drop(columns=["psu"]), "missing schema columns \\['psu'\\]"),
        (lambda f: f.assign(respondent_id=["a", "a", "b", "c"]), "'respondent_id' is not unique"),
        (lambda f: f.assign(sex=["female", "Femme", "male", "male"]), "column 'sex' has 1 values outside .* in rows 1 "),
        (lambda f: f.assign(country="Kenya"), "not ISO 3166-1 alpha-3"),
        (lambda f: f.assign(weight=[1.0, 0.0, 2.0, 1.0]), "'weight' must be finite and > 0; bad in rows 1"),
        (lambda f: f.assign(weight=[1.0, np.nan, 2.0, 1.0]), "'weight' must be finite"),
        (lambda f: f.assign(wg_seeing=[1.0, 5.0, 1.0, 1.0]), "'wg_seeing' has codes outside 1-4 in rows 1"),
        (lambda f: f.assign(wg_walking=[1.0, 3.0, 1.0, 1.0]), "disagrees with the WG-SS cut-off in rows 1"),
        (lambda f: f.assign(age_group="18-30"), "'age_group' has values outside .* in rows 0, 1, 2"),
        (lambda f: f.assign(food_insecurity=[0.0, 2.0, 1.0, 1.0]), "'food_insecurity' has values other than 0/1"),
        (lambda f: f.assign(sample_type="non_probability"), "non-probability rows must carry weight 1.0"),
        (lambda f: f.assign(ethnicity_or_minority="Minority"), "upper-case categories"),
        (lambda f: f.assign(income_group="Lowest"), "column 'income_group' has 4 values outside"),
        (lambda f: f.assign(displacement_status="idps"), "column 'displacement_status' has 4 values outside"),
    ],
)
def test_validation_names_the_column_and_rows(change, message):
    indicators = schema.load_indicators()
    with pytest.raises(SchemaError, match=message) as info:
        schema.validate_harmonised(change(_valid_frame()), indicators, age_bands=schema.load_age_bands())
    assert "\n" not in str(info.value)
    # a value that may be personal data (a category typed by a respondent) is never quoted
    assert "Femme" not in str(info.value) and "18-30" not in str(info.value) and "Lowest" not in str(info.value)
    assert "Minority" not in str(info.value) and "idps" not in str(info.value)


def test_config_points_at_the_catalogue():
    assert config.INDICATORS_FILE.exists() and config.GROUPS_FILE.exists()


# --- the catalogue is the one source of every list -------------------------------------------


def _catalogue_lists() -> dict[str, frozenset]:
    """Every list the catalogue holds: each dimension's categories, the dimension ids, the theme
    ids, the groups' ids and each ``uses:`` list."""
    dimensions = schema.load_dimensions()
    lists = {f"dimensions.{d}.categories": frozenset(map(str, spec.categories))
             for d, spec in dimensions.items() if len(spec.categories) >= 2}
    lists["dimension ids"] = frozenset(dimensions)
    lists["themes"] = frozenset(schema.load_themes())
    uses = schema.load_dimension_uses()
    for name in ("profile", "intersections", "weighting"):
        lists[f"uses.{name}"] = frozenset(getattr(uses, name))
    lists["child_age_bands"] = frozenset(schema.load_child_age_bands())
    return {k: v for k, v in lists.items() if len(v) >= 2}


def _string_sequences(tree):
    """(line, values, at module level) of every tuple/list literal of string constants."""
    import ast

    module_level = {id(node.value) for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    and node.value is not None}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) >= 2 and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            yield node.lineno, frozenset(e.value for e in node.elts), id(node) in module_level


def test_no_catalogue_list_is_written_again_in_the_library():
    """Issue 12: the category tuples of schema.py, the age bands of schema.py and demo.py, the
    themes, and the chapters' PROFILE_/INTERSECTION_DIMENSIONS and WEIGHTING_COLUMNS repeated
    lists of params/groups.yml and indicators.yml in code. A constant holding one of those lists
    (or any literal of three or more of its values) is a second copy that a catalogue edit misses."""
    import ast

    lists = _catalogue_lists()
    found = []
    for path in sorted((config.PROJECT_ROOT / "src" / "analysis").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, values, module_level in _string_sequences(tree):
            for name, catalogue in lists.items():
                if values == catalogue and (module_level or len(values) >= 3):
                    found.append(f"{path.relative_to(config.PROJECT_ROOT)}:{line} repeats {name}")
    assert not found, "; ".join(found)


def test_dimension_uses_name_only_declared_dimensions(tmp_path):
    data = config.GROUPS_FILE.read_text(encoding="utf-8")
    path = _write(tmp_path, data.replace("weighting: [admin1_code, sex, age_group]",
                                         "weighting: [admin1_code, sex, age_band]"), "groups.yml")
    with pytest.raises(SchemaError, match=r"uses.weighting: \['age_band'\] are not dimensions"):
        schema.load_dimension_uses(path)
    path = _write(tmp_path, data.replace("uses:\n", "uses:\n  maps: [sex]\n"), "groups2.yml")
    with pytest.raises(SchemaError, match=r"uses: unknown keys \['maps'\]"):
        schema.load_dimension_uses(path)


def test_a_closed_dimension_without_categories_or_with_stray_labels_is_refused(tmp_path):
    data = config.GROUPS_FILE.read_text(encoding="utf-8")
    path = _write(tmp_path, data.replace("category_labels: {urban: Urban, rural: Rural}",
                                         "category_labels: {urban: Urban, rural: Rural, peri: Peri-urban}"),
                  "groups.yml")
    with pytest.raises(SchemaError, match=r"dimension 'urban_rural'.*\['peri'\] are not among the categories"):
        schema.load_dimensions(path)


def test_an_indicator_theme_must_be_declared_in_the_catalogue(tmp_path):
    data = config.INDICATORS_FILE.read_text(encoding="utf-8")
    path = _write(tmp_path, data.replace("theme: food_insecurity", "theme: food", 1), "indicators.yml")
    with pytest.raises(SchemaError, match="key 'theme': 'food' is not a theme declared under 'themes:'"):
        schema.load_indicators(path)
