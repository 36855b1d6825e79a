"""Codebooks of coded free text: catalogue YAML in ``params/codebooks/<id>.yml``.

A codebook lists every code coders may apply, with its label, the catalogue theme it belongs to
(an id under ``themes:`` of ``params/indicators.yml``), its definition, and the names the coding
tools use for it (a Taguette tag, a REFI-QDA code name, a Coda ``CodeID``). A translated copy of
the file relabels every table and figure (labels never live in code). Example::

    id: demo_voices
    title: Open answers of the demo collaborative
    codes:
      clinic_unreachable:
        label: Could not reach a clinic or medicines
        theme: access_to_health
        definition: The answer says that the respondent could not get health care ...
        aliases: [Clinic unreachable, code-7f3a]
      no_theme:
        label: No theme applies
        special: no_theme        # coded, nothing applies (counts in the denominator)
      stop:
        label: Withdrawal (STOP)
        special: stop            # the participant withdrew: removed from everything

Special codes: ``no_theme`` (the coder read the answer and no theme applies), ``not_codable``
(noise, another language, empty), ``stop`` (withdrawal of consent, as Africa's Voices'
Coda ``STOP`` control code). Special codes have no theme and are never counted as a theme.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from analysis import config

CODEBOOKS_DIR_NAME = "codebooks"
SPECIAL_CODES = ("no_theme", "not_codable", "stop")


class CodebookError(ValueError):
    """A codebook is malformed (one line naming the file and key)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Code(_Strict):
    """One code: label, theme (catalogue id) or special role, definition, tool names."""

    label: str
    theme: str | None = None
    special: Literal[SPECIAL_CODES] | None = None  # type: ignore[valid-type]
    definition: str | None = None
    parent: str | None = None  # a broader code of this codebook (the code path)
    aliases: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _theme_or_special(self):
        if (self.theme is None) == (self.special is None):
            raise ValueError("give exactly one of 'theme' (a catalogue theme id) or 'special' "
                             f"({' | '.join(SPECIAL_CODES)})")
        return self


class Codebook(_Strict):
    """A validated codebook (see the module docstring)."""

    id: str
    title: str
    language: str = "en"
    codes: dict[str, Code] = Field(min_length=1)
    _path: Path | None = None

    def lookup(self) -> dict[str, str]:
        """Every name a tool may use (code id, alias; case-insensitive) -> code id."""
        out: dict[str, str] = {}
        for code_id, code in self.codes.items():
            for name in [code_id, *code.aliases]:
                out[name.strip().casefold()] = code_id
        return out

    def resolve(self, name) -> str | None:
        """The code id of a tool's code name (None when the codebook does not know it)."""
        if name is None:
            return None
        return self.lookup().get(str(name).strip().casefold())

    def path_of(self, code_id: str) -> str:
        """``parent/child`` path of a code inside the codebook."""
        parts, seen = [code_id], {code_id}
        parent = self.codes[code_id].parent
        while parent and parent not in seen:
            parts.insert(0, parent)
            seen.add(parent)
            parent = self.codes[parent].parent if parent in self.codes else None
        return "/".join(parts)

    @property
    def themes(self) -> list[str]:
        """Theme ids in the order of their first code."""
        return list(dict.fromkeys(c.theme for c in self.codes.values() if c.theme))

    def codes_of(self, special: str) -> list[str]:
        return [k for k, c in self.codes.items() if c.special == special]

    @property
    def labels(self) -> dict[str, str]:
        return {k: c.label for k, c in self.codes.items()}


def codebook_path(codebook_id: str, params_dir: Path | None = None) -> Path:
    return (params_dir or config.PARAMS_DIR) / CODEBOOKS_DIR_NAME / f"{codebook_id}.yml"


def load_codebook(path_or_id, themes=None) -> Codebook:
    """Read and validate a codebook (a path, or an id under ``params/codebooks/``).

    ``themes`` (catalogue theme ids; default: ``params/indicators.yml``) are the allowed
    themes. Raises :class:`CodebookError` naming the file and the key: unknown keys, a code
    with neither theme nor special role, an unknown theme, a parent that is not a code, the
    same alias on two codes, an ``id`` that differs from the file stem.
    """
    path = Path(path_or_id)
    if path.suffix not in (".yml", ".yaml"):
        path = codebook_path(str(path_or_id))
    data = config.read_yaml_mapping(path, CodebookError, "codebook")
    try:
        book = Codebook(**data)
    except ValidationError as exc:
        raise CodebookError(config.pydantic_message(exc, str(path))) from None
    book._path = path
    if book.id != path.stem.split(".")[0]:
        raise CodebookError(f"{path}: key 'id' is {book.id!r} but must equal the file name stem {path.stem!r}")
    if themes is None:
        themes = catalogue_themes()
    for code_id, code in book.codes.items():
        if code.theme is not None and themes is not None and code.theme not in themes:
            raise CodebookError(f"{path}: key 'codes.{code_id}.theme': unknown theme '{code.theme}'; "
                                f"themes in params/indicators.yml are: {', '.join(themes)}")
        if code.parent is not None and code.parent not in book.codes:
            raise CodebookError(f"{path}: key 'codes.{code_id}.parent': '{code.parent}' is not a code of this codebook")
    seen: dict[str, str] = {}
    for code_id, code in book.codes.items():
        for name in [code_id, *code.aliases]:
            key = name.strip().casefold()
            if key in seen and seen[key] != code_id:
                raise CodebookError(f"{path}: key 'codes.{code_id}.aliases': name '{name}' also names "
                                    f"code '{seen[key]}'; a tool's name must map to one code")
            seen[key] = code_id
    return book


def catalogue_themes() -> list[str] | None:
    """Theme ids of ``params/indicators.yml`` (None when the catalogue is absent)."""
    if not config.INDICATORS_FILE.exists():
        return None
    data = config.read_yaml_mapping(config.INDICATORS_FILE, CodebookError, "indicator catalogue")
    return list((data.get("themes") or {}).keys())


def theme_labels() -> dict[str, str]:
    """Theme id -> label from the catalogue."""
    if not config.INDICATORS_FILE.exists():
        return {}
    data = config.read_yaml_mapping(config.INDICATORS_FILE, CodebookError, "indicator catalogue")
    return {k: (v or {}).get("label", k) for k, v in (data.get("themes") or {}).items()}
