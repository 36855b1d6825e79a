"""Tests for analysis.sources.privacy: free-text scan, salted ids, salt file."""

from __future__ import annotations

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


def test_salt_from_environment_or_a_private_file(tmp_path, monkeypatch):
    monkeypatch.setenv(privacy.SALT_ENV, "from-env")
    assert privacy.project_salt(tmp_path) == "from-env"
    monkeypatch.delenv(privacy.SALT_ENV)
    salt = privacy.project_salt(tmp_path)
    path = tmp_path / privacy.SALT_FILE_NAME
    assert path.exists() and len(salt) == 64 and privacy.project_salt(tmp_path) == salt
    assert oct(path.stat().st_mode & 0o777) == "0o600"
