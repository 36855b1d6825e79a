"""Tests for analysis.sources.privacy: free-text scan, salted ids, salt file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.sources import privacy
from analysis.sources.privacy import PrivacyError, hash_ids, scan_free_text


@pytest.mark.parametrize(
    "text,kind",
    [
        ("call me on +254 712 345 678 please", "a phone number"),
        ("0712-345-678", "a phone number"),
        ("(020) 7946 0958", "a phone number"),
        ("my number is 712345678", "a phone number"),
        ("reach me at 555-123-4567", "a phone number"),
        ("write to amina.otieno@example.org", "an e-mail address"),
        ("we live at -1.29207, 36.82195 near the market", "GPS coordinates"),
        ("camp at 1°17'31\"S", "GPS coordinates"),
    ],
)
def test_scan_finds_contact_details_and_names_the_column_not_the_value(text, kind):
    frame = pd.DataFrame({"comment": ["fine", text]})
    with pytest.raises(PrivacyError) as info:
        scan_free_text(frame, ["comment"], where="raw/x.csv: ")
    message = str(info.value)
    assert f"free-text column 'comment' contains {kind} (row 1)" in message
    assert text not in message and "\n" not in message


@pytest.mark.parametrize(
    "text",
    [
        "Visited 3 times between 2021-03-01 and 2021-05-31",
        "Household of 12, lost 2 jobs, 45% less income",
        "Nairobi County Government helped",  # capitalised words are not treated as names
        "cost 1500 shillings",
        "the school year 2021-2022 was lost",
        "paid 15000 20000 shillings in two months",
        "",
    ],
)
def test_scan_leaves_ordinary_answers_alone(text):
    scan_free_text(pd.DataFrame({"comment": [text, None]}), ["comment"])


def test_values_of_personal_columns_reappearing_in_free_text_are_hits():
    frame = pd.DataFrame({"name": ["Wanjiru Kamau", "Ali"], "comment": ["no problems", "my neighbour wanjiru helped"]})
    with pytest.raises(PrivacyError, match="contains a value of a personal column"):
        scan_free_text(frame, ["comment"], personal_columns=["name"])
    # a short value (3 letters) is too ambiguous to count as a hit
    scan_free_text(pd.DataFrame({"name": ["Ali"], "comment": ["all fine"]}), ["comment"], personal_columns=["name"])


def test_hash_is_salted_deterministic_and_does_not_contain_the_id():
    ids = pd.Series(["A12", "A13", "A12"])
    first = hash_ids(ids, "src", "salt-1")
    assert first.iloc[0] == first.iloc[2] != first.iloc[1]
    assert hash_ids(ids, "src", "salt-2").iloc[0] != first.iloc[0]
    assert hash_ids(ids, "other", "salt-1").iloc[0] != first.iloc[0]
    assert all("A12" not in h for h in first)


GOOD_SALT = "9b1f3c5e7a2d4f6081a3c5e7092b4d6f8a1c3e5f7b9d0e2f4a6c8e1b3d5f7a9c"


def test_salt_from_the_environment_must_be_32_random_bytes(monkeypatch, tmp_path):
    monkeypatch.setenv(privacy.SALT_ENV, GOOD_SALT)
    assert privacy.project_salt(tmp_path) == GOOD_SALT
    for weak in ("", "1", "x" * 64, "hunter2", "0123456789abcdef" * 3):
        monkeypatch.setenv(privacy.SALT_ENV, weak)
        with pytest.raises(PrivacyError, match="ANALYSIS_ID_SALT") as info:
            privacy.project_salt(tmp_path)
        assert "\n" not in str(info.value) and (not weak or weak not in str(info.value))


def test_salt_file_is_created_outside_the_data_folder_with_a_message(monkeypatch, tmp_path):
    monkeypatch.delenv(privacy.SALT_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(privacy.SALT_FILE_ENV, raising=False)
    data = tmp_path / "project" / "data"
    said = []
    salt = privacy.project_salt(data, say=said.append)
    path = tmp_path / "config" / "analysis" / "id_salt"
    assert path.exists() and len(salt) == 64 and int(salt, 16) >= 0
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert len(said) == 1 and str(path) in said[0] and "docs/schema.md" in said[0]
    assert privacy.project_salt(data, say=said.append) == salt and len(said) == 1  # said once
    assert not data.exists() or not any(salt in p.read_text() for p in data.rglob("*") if p.is_file())


def test_a_salt_file_inside_the_data_folder_or_empty_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv(privacy.SALT_ENV)
    data = tmp_path / "data"
    monkeypatch.setenv(privacy.SALT_FILE_ENV, str(data / "salt"))
    with pytest.raises(PrivacyError, match="inside the data folder"):
        privacy.project_salt(data)
    empty = tmp_path / "empty_salt"
    empty.write_text("\n")
    monkeypatch.setenv(privacy.SALT_FILE_ENV, str(empty))
    with pytest.raises(PrivacyError, match="is empty"):
        privacy.project_salt(data)


def test_an_old_salt_in_the_data_folder_is_moved_out(monkeypatch, tmp_path):
    monkeypatch.delenv(privacy.SALT_ENV)
    data = tmp_path / "data"
    data.mkdir()
    (data / privacy.LEGACY_SALT_FILE_NAME).write_text(GOOD_SALT + "\n")
    target = tmp_path / "home" / "id_salt"
    monkeypatch.setenv(privacy.SALT_FILE_ENV, str(target))
    said = []
    assert privacy.project_salt(data, say=said.append) == GOOD_SALT  # earlier hashes stay valid
    assert not (data / privacy.LEGACY_SALT_FILE_NAME).exists() and target.read_text().strip() == GOOD_SALT
    assert "moved the id salt" in said[0]


def test_the_scan_is_linear_in_rows_and_finds_a_value_in_the_last_rows():
    """1M rows, every value distinct, a million distinct names: no false hit, planted hits found.

    The old scan compared every row with every personal value (16k rows took 54 s); this one
    looks at each distinct value once, so a million rows take seconds.
    """
    n = 1_000_000
    rng = np.random.default_rng(11)
    # a million distinct-ish names of 8 random letters (never words of the answers below)
    names = pd.Series(rng.integers(97, 123, size=(n, 8), dtype=np.uint8).view("S8").ravel()).str.decode("ascii")
    numbers = pd.Series(np.arange(n)).astype(str)
    answers = "answer " + numbers + " was fine, paid " + (pd.Series(np.arange(n)) % 5000).astype(str) + " in week 3"
    frame = pd.DataFrame({"comment": answers.astype("str"), "name": (names.str.capitalize() + " Surnameless").astype("str")})
    scan_free_text(frame, ["comment"], personal_columns=["name"])  # no hit among a million distinct values
    frame.loc[n - 1, "comment"] = "ring me on +44 20 7946 0958"
    frame.loc[n - 2, "comment"] = f"my neighbour {names.iloc[7]} came"
    with pytest.raises(PrivacyError, match=f"a value of a personal column \\(row {n - 2}\\)") as info:
        scan_free_text(frame, ["comment"], personal_columns=["name"])
    assert names.iloc[7] not in str(info.value)
    assert privacy.first_personal_value(frame["comment"]) == (n - 1, "a phone number")


@pytest.mark.parametrize(
    "text,kind",
    [
        ("+44 20 7946 0958", "a phone number"),
        ("+1 (555) 123-4567", "a phone number"),
        ("0033 1 42 68 53 00", "a phone number"),
        ("+91-98765-43210", "a phone number"),
        ("ID 23456789", "a national-id-like number"),
        ("passport AB1234567", "a national-id-like number"),
        ("S 1°17'31\" 36°49'12\"E", "GPS coordinates"),
        ("first.last+tag@mail.example.co.ke", "an e-mail address"),
    ],
)
def test_international_formats_are_recognised(text, kind):
    assert privacy.personal_data_kind(text) == kind


@pytest.mark.parametrize("text", ["01.03.2021 at 10:30", "2021-03-01T10:30:00", "on 3/1/2021 at 9:05", "ward 12, block 7"])
def test_dates_and_times_are_not_phone_numbers(text):
    assert privacy.personal_data_kind(text) is None


def test_design_codes_are_not_phone_numbers_but_coordinates_are_found():
    assert privacy.personal_data_kind("320101001", codes=True) is None  # an enumeration-area code
    assert privacy.personal_data_kind("-1.2921, 36.8219", codes=True) == "GPS coordinates"
    assert privacy.personal_data_kind("+254 711 222 333", codes=True) == "a phone number"
