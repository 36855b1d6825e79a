"""Personal data never reaches ``data/processed/``: salted id hashes and a scan of every written text.

- Columns a card lists under ``personal_columns`` are dropped before anything is written
  (and every raw column that the card does not map is left behind anyway).
- Respondent ids are replaced by a salted SHA-256 hash. The salt (at least 32 random bytes)
  lives outside the data folders, so that whoever has the data cannot reverse the hashes by
  enumerating the id pattern: the environment variable ``ANALYSIS_ID_SALT`` or the per-user
  file ``~/.config/analysis/id_salt`` (``$XDG_CONFIG_HOME``; ``ANALYSIS_ID_SALT_FILE`` moves
  it), created with a random salt and a message on first use. See docs/schema.md, "Personal
  data", for sharing it within a team (never with the data).
- Every text column that is written (mapped categories such as ``gender_identity`` or
  ``admin1``, the design's strata and PSUs) and every free-text column is scanned for e-mail
  addresses, phone numbers, national-id-like numbers, GPS coordinates and values of the card's
  personal columns. A hit fails the ingest with a message naming the column, the row and the kind
  of hit, never the value. The scan looks at each distinct value once and each value in time
  linear in its length (regular expressions without nested repetition, a hash lookup of the
  words for personal values), so it is linear in the size of the data.
  Capitalised "First Last" name patterns are not scanned: they hit place names and
  organisations too often to be a useful rule.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis import config

SALT_ENV = "ANALYSIS_ID_SALT"
SALT_FILE_ENV = "ANALYSIS_ID_SALT_FILE"
#: The salt file of versions before the salt moved out of the data folder (migrated once).
LEGACY_SALT_FILE_NAME = ".id_salt"
#: Fewest random bytes in a salt (NIST SP 800-132 asks for 128 bits at least; we take 256).
MIN_SALT_BYTES = 32

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# A phone number: an optional +country code, then 8-15 digits with spaces, dots, dashes or
# brackets between groups. Dates (2021-03-01) and short counts do not reach 8 digits in a row.
PHONE = re.compile(r"(?<![\w.])(?:\+|00)?\(?\d[\d\s().-]{6,18}\d(?![\w.])")
# Decimal-degree coordinate pairs ("-1.2921, 36.8219") and DMS coordinates (1°17'31"S).
GPS_DECIMAL = re.compile(r"-?\d{1,2}\.\d{3,}\s*[,;/ ]\s*-?\d{1,3}\.\d{3,}")
GPS_DMS = re.compile(r"\d{1,3}\s*°\s*\d{1,2}\s*['′]\s*(?:\d{1,2}(?:\.\d+)?\s*[\"″])?\s*[NSEW]", re.IGNORECASE)
DATE_LIKE = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}$|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}$")
# Dates and clock times inside a text are blanked before looking for phone numbers, so that
# "01.03.2021 at 10:30" is not taken for one.
DATES_AND_TIMES = re.compile(
    r"(?<![\d.])(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2}))(?![\d.])"
    r"|(?<!\d)\d{1,2}:\d{2}(?::\d{2})?(?!\d)"
)
# A national-id-like number: 8 unbroken digits, or 1-2 letters then 6-9 digits (passport and
# id-card styles: A1234567, AB1234567). Runs of 9-15 digits count as phone numbers.
NATIONAL_ID = re.compile(r"(?<![\w.])(?:\d{8}|[A-Za-z]{1,2}\d{6,9}[A-Za-z]?)(?![\w.])")
# A quick filter: a value without a digit or '@' cannot hold contact details or coordinates.
_CONTACT_CHARS = re.compile(r"[\d@]")
_WORD = re.compile(r"[^\W\d_]+")
_CODE_LIKE = re.compile(r"^(?:[+-]?\d{1,6}(?:\.\d{1,3})?|[A-Za-z0-9_]{1,3}|\.[a-z])$")


class PrivacyError(ValueError):
    """Personal data found where it must not be, or an unsafe id salt (one-line message)."""


# --------------------------------------------------------------------------------------------
# The id salt
# --------------------------------------------------------------------------------------------


def salt_file() -> Path:
    """The per-user salt file: ``$ANALYSIS_ID_SALT_FILE``, else ``$XDG_CONFIG_HOME/analysis/id_salt``
    (``~/.config/analysis/id_salt``)."""
    given = os.environ.get(SALT_FILE_ENV)
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or (Path.home() / ".config")
    return Path(base) / "analysis" / "id_salt"


def check_salt(salt: str, where: str) -> str:
    """Refuse a salt that is empty or holds fewer than :data:`MIN_SALT_BYTES` random bytes.

    Accepted: hex (64+ digits, what ``secrets.token_hex(32)`` and ``openssl rand -hex 32`` write)
    or base64 (44+ characters, ``openssl rand -base64 32``). A string of few distinct characters
    ("1", "aaaa...", a short word) is refused: a guessable salt makes the hashes reversible.
    """
    text = (salt or "").strip()
    hexlike = re.fullmatch(r"[0-9a-fA-F]+", text) is not None
    b64like = re.fullmatch(r"[A-Za-z0-9+/_-]+={0,2}", text) is not None
    random_bytes = len(text) // 2 if hexlike else (len(text.rstrip("=")) * 6) // 8 if b64like else 0
    if not text or random_bytes < MIN_SALT_BYTES or len(set(text)) < 10:
        shown = "is empty" if not text else f"is not {MIN_SALT_BYTES} random bytes (hex or base64)"
        raise PrivacyError(
            f"{where}: the id salt {shown}; set it to the output of `python -c \"import secrets; "
            f"print(secrets.token_hex(32))\"` (or unset {SALT_ENV} to have one created)"
        )
    return text


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def project_salt(data_dir: Path | None = None, say: Callable[[str], None] | None = None) -> str:
    """The salt for respondent-id hashes: ``$ANALYSIS_ID_SALT``, else the per-user salt file.

    The file is created with 32 random bytes (hex, mode 600) on first use, with a message on
    stderr saying where it is and how to share it. A salt file inside the data folder
    (``data_dir``, default ``data/``) is refused: it would travel with the data. A salt left by
    an earlier version in ``data/.id_salt`` is moved to the per-user file (so earlier hashes stay
    valid) and removed from the data folder.

    Raises
    ------
    PrivacyError
        The salt is empty or too short, the file is inside the data folder, or it cannot be created.
    """
    say = say or (lambda text: print(text, file=sys.stderr))
    env = os.environ.get(SALT_ENV)
    if env is not None:
        return check_salt(env, f"${SALT_ENV}")
    data_dir = Path(data_dir or config.DATA_DIR)
    path = salt_file()
    if _inside(path, data_dir) or _inside(path, config.DATA_DIR):
        raise PrivacyError(
            f"{path}: the id salt file is inside the data folder {data_dir}; whoever has the data could "
            f"reverse the id hashes. Move it (e.g. to ~/.config/analysis/id_salt) and set {SALT_FILE_ENV}"
        )
    legacy = data_dir / LEGACY_SALT_FILE_NAME
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if legacy.is_file():
                salt = check_salt(legacy.read_text(encoding="utf-8"), str(legacy))
                message = f"moved the id salt from {legacy} (inside the data folder) to {path}"
            else:
                salt = secrets.token_hex(MIN_SALT_BYTES)
                message = f"created a new id salt ({MIN_SALT_BYTES} random bytes) in {path}"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(salt + "\n")
        except FileExistsError:  # another process created it meanwhile
            pass
        except OSError as exc:
            raise PrivacyError(
                f"{path}: cannot create the id salt file ({exc.strerror}); set {SALT_ENV} to 32 random bytes "
                f"in hex, or {SALT_FILE_ENV} to a writable file outside the data folder"
            ) from None
        else:
            say(
                f"{message}. Respondent ids are hashed with it: keep it private and out of the data "
                "folders; to share it with your team see docs/schema.md (Personal data)"
            )
            if legacy.is_file():
                legacy.unlink()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PrivacyError(f"{path}: cannot read the id salt file ({exc.strerror})") from None
    salt = check_salt(text, str(path))
    if legacy.is_file():
        say(f"{legacy}: an old id salt file inside the data folder; the salt in {path} is used, delete {legacy}")
    return salt


def hash_ids(ids: pd.Series, source: str, salt: str) -> pd.Series:
    """Salted SHA-256 of each id (prefixed with the source, so equal raw ids in two sources differ).

    Returns the first 20 hex digits (80 bits): ample to keep 10^6 respondents collision-free.
    The ids are hashed from their UTF-8 bytes in an Arrow buffer and the hex digits are made
    with NumPy, so a million ids do not become a million Python strings twice.
    """
    prefix = hashlib.sha256(f"{salt}|{source}|".encode())
    if pd.api.types.is_string_dtype(ids.dtype) and not pd.api.types.is_object_dtype(ids.dtype):
        text = pa.array(ids)  # already Arrow: no copy
    else:
        text = pa.array(pd.Series(ids, dtype=object).map(lambda v: None if v is None else str(v)), type=pa.large_string())
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    text = pc.fill_null(text.cast(pa.large_string()), "")
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset:text.offset + len(text) + 1]
    data = memoryview(text.buffers()[2] or b"")
    digests = bytearray()
    for block in range(0, len(text), 1 << 16):  # in blocks: few Python ints alive at a time
        bounds = offsets[block:block + (1 << 16) + 1].tolist()
        for start, end in itertools.pairwise(bounds):
            digest = prefix.copy()  # sha256(salt|source|value), without re-hashing the prefix
            digest.update(data[start:end])
            digests += digest.digest()[:10]
    raw = np.frombuffer(bytes(digests), dtype=np.uint8).reshape(-1, 10)
    hexdigits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    chars = np.empty((len(raw), 20), dtype=np.uint8)
    chars[:, 0::2] = hexdigits[raw >> 4]
    chars[:, 1::2] = hexdigits[raw & 15]
    hexes = pa.array(chars.reshape(-1).view("S20"), type=pa.binary(20)).cast(pa.binary()).cast(pa.string())
    return pd.Series(pd.arrays.ArrowStringArray(hexes), index=ids.index)


NANP = re.compile(r"^\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}$")


def quotable_code(value) -> str | None:
    """``'x'`` (quoted) when a raw value is code-like and safe to show in a message or log, else None.

    Code-like: a number of at most 6 digits (phone and national-id numbers are longer), a token
    of at most 3 letters/digits ("x", "dk", "99") or a Stata missing code (".a"). Anything
    longer may be a name or an answer typed into the wrong column, so it is never shown.
    """
    if value is None:
        return None
    text = str(value).strip()
    return repr(text) if _CODE_LIKE.match(text) else None


def _phone_hit(text: str, codes: bool = False) -> bool:
    """8-15 digits shaped like a phone number: an international (+, 00) or trunk (0, "(") prefix,
    one unbroken run of 9+ digits, or the North American 3-3-4 grouping. Year ranges
    ("2021-2022"), amounts ("15000 20000"), dates and clock times are not phone-shaped.
    With ``codes`` (strata, PSUs), an unbroken run of digits is an area code, not a phone."""
    text = DATES_AND_TIMES.sub(" ", text)
    for match in PHONE.finditer(text):
        candidate = match.group(0).strip()
        digits = re.sub(r"\D", "", candidate)
        if not 8 <= len(digits) <= 15 or DATE_LIKE.match(candidate):
            continue
        if codes and candidate.isdigit():
            continue
        prefixed = candidate[0] in "+0(" and not (codes and candidate.isdigit())
        unbroken = candidate.isdigit() and len(candidate) >= 9
        if prefixed or unbroken or NANP.match(candidate):
            return True
    return False


def _normalise(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


#: A superset of the contact patterns, run in C (Arrow's RE2) over every distinct value; only the
#: values it matches go through the exact Python rules. E-mail ('@'), 8+ digits and separators
#: (phones, national ids), a degree sign or decimal degrees (GPS), letters then 6 digits (ids).
_PREFILTER = r"@|\d[\d\s().\-]{6,}\d|°|\d\.\d{3}|[A-Za-z]\d{6}"
_NOT_LETTERS = r"[^\p{L}]+"


def _arrow_text(values) -> pa.Array:
    """Distinct values as an Arrow string array (converted in C where pandas can)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    text = pd.Series(values, dtype=object).astype("string[pyarrow]")
    return pa.array(text).cast(pa.large_string())


def _words(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Lower-case letter runs of each value (flattened) and the index of the value each came from."""
    lists = pc.split_pattern_regex(pc.utf8_lower(values), pattern=_NOT_LETTERS)
    return pc.list_flatten(lists), np.asarray(pc.list_parent_indices(lists))


class PersonalValues:
    """The values of a card's personal columns, for a hash lookup in other columns.

    Kept: each word of 4+ letters of each value, except words in ``ignore`` (category values of
    the schema and the card, which a name may share by chance). Multi-word values whose words are
    all short ("Li Na") are looked up as phrases. Built and looked up with Arrow kernels, so a
    million names cost about a second.
    """

    def __init__(self, frame: pd.DataFrame, columns: Iterable[str], ignore: Iterable[str] = ()):
        ignored = pa.array(sorted({str(v).lower() for v in ignore}), type=pa.large_string())
        parts: list[pa.Array] = []
        self.phrases: set[str] = set()
        self._word_set: set[str] | None = None
        for col in columns:
            if col not in frame.columns:
                continue
            uniques = _arrow_text(pd.unique(frame[col].dropna()))
            if len(uniques) == 0:
                continue
            flat, parents = _words(uniques)
            long = np.asarray(pc.greater_equal(pc.utf8_length(flat), 4).fill_null(False))
            words = pc.unique(flat.filter(pa.array(long)))
            parts.append(words.filter(pc.invert(pc.is_in(words, value_set=ignored))))
            # values with no long word: keep them whole as phrases (rare, so done in Python)
            long_parent = np.zeros(len(uniques), dtype=bool)
            long_parent[parents[long]] = True
            for i in np.flatnonzero(~long_parent):
                norm = _normalise(str(uniques[int(i)]))
                if len(norm) >= 4 and " " in norm:
                    self.phrases.add(norm)
        self.word_array = pc.unique(pa.concat_arrays(parts)) if parts else pa.array([], type=pa.large_string())

    @property
    def words(self) -> set[str]:
        if self._word_set is None:
            self._word_set = set(self.word_array.to_pylist())
        return self._word_set

    def __bool__(self) -> bool:
        return bool(len(self.word_array) or self.phrases)

    def found_in(self, text: str) -> bool:
        parts = _normalise(text).split()
        if any(p in self.words for p in parts if len(p) >= 4):
            return True
        if self.phrases:
            for n in (2, 3):
                for i in range(len(parts) - n + 1):
                    if " ".join(parts[i:i + n]) in self.phrases:
                        return True
        return False

    def hits(self, values: pa.Array) -> np.ndarray:
        """Boolean mask of the values that contain a personal word or phrase (vectorised)."""
        found = np.zeros(len(values), dtype=bool)
        if not self:
            return found
        flat, parents = _words(values)
        if len(self.word_array):
            member = np.asarray(pc.is_in(flat, value_set=self.word_array).fill_null(False))
            found[parents[member]] = True
        if self.phrases:
            short = {w for phrase in self.phrases for w in phrase.split()}
            member = np.asarray(pc.is_in(flat, value_set=pa.array(sorted(short), type=flat.type)).fill_null(False))
            for i in np.unique(parents[member]):
                if not found[i] and self.found_in(str(values[int(i)])):
                    found[i] = True
        return found


def personal_data_kind(text: str, personal: PersonalValues | None = None, codes: bool = False) -> str | None:
    """The kind of personal data a text holds ("a phone number", ...), or None.

    ``codes`` relaxes the rules for columns of codes (strata, PSUs), where an unbroken run of
    digits is an area or cluster code.
    """
    if _CONTACT_CHARS.search(text):
        if "@" in text and EMAIL.search(text):
            return "an e-mail address"
        if GPS_DECIMAL.search(text) or GPS_DMS.search(text):
            return "GPS coordinates"
        if _phone_hit(text, codes):
            return "a phone number"
        if (not codes or " " in text.strip()) and NATIONAL_ID.search(DATES_AND_TIMES.sub(" ", text)):
            return "a national-id-like number"
    if personal and personal.found_in(text):
        return "a value of a personal column"
    return None


def first_personal_value(series: pd.Series, personal: PersonalValues | None = None,
                         codes: bool = False) -> tuple[int, str] | None:
    """``(position, kind)`` of the first value of ``series`` that holds personal data, else None.

    Each distinct value is looked at once (the series is factorised first); a C prefilter and a
    vectorised word lookup leave only likely hits to the exact Python rules, so the cost is
    linear in the number of rows plus the total length of the distinct values.
    """
    positions, uniques = pd.factorize(series, use_na_sentinel=True)
    if len(uniques) == 0:
        return None
    values = _arrow_text(uniques)
    hits: dict[int, str] = {}
    candidates = np.asarray(pc.match_substring_regex(values, pattern=_PREFILTER).fill_null(False))
    for i in np.flatnonzero(candidates):
        kind = personal_data_kind(str(values[int(i)]), None, codes)
        if kind:
            hits[int(i)] = kind
    if codes:
        # a column of codes (strata, PSUs) may hold long numbers (enumeration areas) or
        # letter+digit codes: a value of such a shape is a hit only where it is the odd one out
        for pattern, kind in ((r"^\+?\d{9,15}$", "a phone number"),
                              (r"^(?:\d{8}|[A-Za-z]{1,2}\d{6,9}[A-Za-z]?)$", "a national-id-like number")):
            shaped = np.asarray(pc.match_substring_regex(pc.utf8_trim_whitespace(values), pattern=pattern).fill_null(False))
            if shaped.any() and shaped.mean() < 0.5:
                for i in np.flatnonzero(shaped):
                    hits.setdefault(int(i), kind)
    if personal:
        for i in np.flatnonzero(personal.hits(values)):
            hits.setdefault(int(i), "a value of a personal column")
    if not hits:
        return None
    flagged = np.zeros(len(uniques) + 1, dtype=bool)
    flagged[list(hits)] = True
    position = int(np.flatnonzero(flagged[positions])[0])
    return position, hits[int(positions[position])]


def scan_free_text(frame: pd.DataFrame, columns, personal_columns=(), where: str = "", row_label=None,
                   ignore: Iterable[str] = (), personal: PersonalValues | None = None) -> None:
    """Fail when a free-text column holds an e-mail, phone number, national-id-like number, GPS
    coordinates or personal values.

    ``personal_columns`` values (e.g. names in a ``name`` column) of 4+ characters that reappear
    inside a free-text answer are hits too. The error names the column, the row and the kind of
    hit, never the value itself. ``row_label(position)`` says how the user finds a row
    (e.g. ``"line 7"``); by default the 0-based position is shown as ``"row N"``. ``personal``,
    when given, is used instead of the values of ``personal_columns`` in ``frame`` (a streamed
    ingest collects them over the whole file first).
    """
    row_label = row_label or (lambda position: f"row {position}")
    if personal is None:
        personal = PersonalValues(frame, personal_columns, ignore)
    for col in columns:
        if col not in frame.columns:
            continue
        hit = first_personal_value(frame[col], personal)
        if hit:
            position, kind = hit
            raise PrivacyError(
                f"{where}free-text column '{col}' contains {kind} ({row_label(position)}); "
                "redact it in the raw data or list the column under personal_columns"
            )


def scan_written_text(columns: dict[str, tuple[pd.Series, str | None, bool]], personal: PersonalValues | None,
                      where: str = "", row_label=None) -> None:
    """Fail when a text column that will be written holds personal data.

    ``columns`` maps the written column name to ``(values, raw column or None, codes)``; the
    values' positions are rows of the raw file. The message names the column, its raw column,
    the row and the kind of hit, never the value.
    """
    row_label = row_label or (lambda position: f"row {position}")
    for name, (values, raw, codes) in columns.items():
        hit = first_personal_value(values, personal, codes)
        if hit:
            position, kind = hit
            raise written_text_error(where, name, raw, kind, row_label(position))


def written_text_error(where: str, name: str, raw: str | None, kind: str, row: str) -> PrivacyError:
    """The error of :func:`scan_written_text`: column, raw column, kind of hit and row, never the value."""
    source = f" (raw column '{raw}')" if raw and raw != name else ""
    return PrivacyError(f"{where}column '{name}'{source} contains {kind} ({row}); "
                        "redact it in the raw data or recode the column")
