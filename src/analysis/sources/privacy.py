"""Personal data never reaches ``data/processed/``: salted id hashes and a free-text scan.

- Columns a card lists under ``personal_columns`` are dropped before anything is written
  (and every raw column that the card does not map is left behind anyway).
- Respondent ids are replaced by a salted SHA-256 hash. The salt comes from the environment
  variable ``ANALYSIS_ID_SALT`` or, when unset, from the per-project file ``data/.id_salt``
  (created with a random salt on first use; keep it out of version control and out of shared
  folders: whoever has it can test guessed ids against the hashes).
- Free-text columns (``free_text_columns``) are scanned for e-mail addresses, phone numbers,
  GPS coordinates and for values of the card's personal columns reappearing in the text. A hit
  fails the ingest with a message naming the column and the kind of hit (never the value).
  Capitalised "First Last" name patterns are not scanned: they hit place names and
  organisations too often to be a useful rule.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

import pandas as pd

from analysis import config

SALT_ENV = "ANALYSIS_ID_SALT"
SALT_FILE_NAME = ".id_salt"

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# A phone number: an optional +country code, then 8-15 digits with spaces, dots, dashes or
# brackets between groups. Dates (2021-03-01) and short counts do not reach 8 digits in a row.
PHONE = re.compile(r"(?<![\w.])(?:\+|00)?\(?\d[\d\s().-]{6,18}\d(?![\w.])")
# Decimal-degree coordinate pairs ("-1.2921, 36.8219") and DMS coordinates (1°17'31"S).
GPS_DECIMAL = re.compile(r"-?\d{1,2}\.\d{3,}\s*[,;/ ]\s*-?\d{1,3}\.\d{3,}")
GPS_DMS = re.compile(r"\d{1,3}\s*°\s*\d{1,2}\s*['′]\s*(?:\d{1,2}(?:\.\d+)?\s*[\"″])?\s*[NSEW]", re.IGNORECASE)
DATE_LIKE = re.compile(r"^\d{4}[-/]\d{1,2}[-/]\d{1,2}$|^\d{1,2}[-/]\d{1,2}[-/]\d{2,4}$")


class PrivacyError(ValueError):
    """Personal data found where it must not be (one-line message naming the column)."""


def project_salt(data_dir: Path | None = None) -> str:
    """The salt for respondent-id hashes: ``$ANALYSIS_ID_SALT`` or ``data/.id_salt`` (created once)."""
    env = os.environ.get(SALT_ENV)
    if env:
        return env
    path = (data_dir or config.DATA_DIR) / SALT_FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32) + "\n", encoding="utf-8")
        try:
            path.chmod(0o600)
        except OSError:  # pragma: no cover - e.g. file systems without permissions
            pass
    return path.read_text(encoding="utf-8").strip()


def hash_ids(ids: pd.Series, source: str, salt: str) -> pd.Series:
    """Salted SHA-256 of each id (prefixed with the source, so equal raw ids in two sources differ).

    Returns the first 20 hex digits (80 bits): ample to keep 10^6 respondents collision-free.
    """
    def one(value) -> str:
        text = f"{salt}|{source}|{value}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]

    return ids.map(one).astype("string")


NANP = re.compile(r"^\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}$")


def _phone_hit(text: str) -> bool:
    """8-15 digits shaped like a phone number: an international (+, 00) or trunk (0, "(") prefix,
    one unbroken run of 9+ digits, or the North American 3-3-4 grouping. Year ranges
    ("2021-2022") and amounts ("15000 20000") are not phone-shaped."""
    for match in PHONE.finditer(text):
        candidate = match.group(0).strip()
        digits = re.sub(r"\D", "", candidate)
        if not 8 <= len(digits) <= 15 or DATE_LIKE.match(candidate):
            continue
        prefixed = candidate[0] in "+0("
        unbroken = candidate.isdigit() and len(candidate) >= 9
        if prefixed or unbroken or NANP.match(candidate):
            return True
    return False


def scan_free_text(frame: pd.DataFrame, columns, personal_columns=(), where: str = "", row_label=None) -> None:
    """Fail when a free-text column holds an e-mail, phone number, GPS coordinates or personal values.

    ``personal_columns`` values (e.g. names in a ``name`` column) of 4+ characters that reappear
    inside a free-text answer are hits too. The error names the column, the row and the kind of
    hit, never the value itself. ``row_label(position)`` says how the user finds a row
    (e.g. ``"line 7"``); by default the 0-based position is shown as ``"row N"``.
    """
    row_label = row_label or (lambda position: f"row {position}")
    personal_values: set[str] = set()
    for col in personal_columns:
        if col in frame.columns:
            for value in frame[col].dropna().astype(str):
                value = value.strip().lower()
                if len(value) >= 4:
                    personal_values.add(value)
                    personal_values.update(p for p in value.split() if len(p) >= 4)
    for col in columns:
        if col not in frame.columns:
            continue
        for row, value in frame[col].items():
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                continue
            text = str(value)
            kind = None
            if EMAIL.search(text):
                kind = "an e-mail address"
            elif GPS_DECIMAL.search(text) or GPS_DMS.search(text):
                kind = "GPS coordinates"
            elif _phone_hit(text):
                kind = "a phone number"
            elif personal_values:
                lowered = text.lower()
                words = set(re.findall(r"[^\W\d_]{4,}", lowered))
                if words & personal_values or any(v in lowered for v in personal_values if " " in v):
                    kind = "a value of a personal column"
            if kind:
                position = frame.index.get_loc(row)
                raise PrivacyError(
                    f"{where}free-text column '{col}' contains {kind} ({row_label(position)}); "
                    "redact it in the raw data or list the column under personal_columns"
                )
