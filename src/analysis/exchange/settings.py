"""The exchange settings, ``params/exchange.yml``: codes, statistics, texts (validated, one-line errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from analysis import config

EXCHANGE_FILE: Path = config.PARAMS_DIR / "exchange.yml"


class ExchangeError(ValueError):
    """The export cannot proceed: bad settings, a value with no code, an unusable input (one line)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Agency(_Strict):
    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    name: str


class Dataflow(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_@$-]+$")
    version: str
    name: str


class SdgDimension(_Strict):
    dimension: str
    codes: dict[str, str]


class Statistic(_Strict):
    match: str
    code: str = Field(pattern=r"^[A-Za-z0-9_@$-]+$")
    name: str
    unit: Literal["percent_scale", "share", "percent", "ratio", "number"]
    nature: str
    derived: bool = False  # computed from other cells: withheld because an input is (CONF_STATUS D)


class Section(_Strict):
    title: str
    sentences: list[str]


class Page(_Strict):
    title: str
    intro: str
    suppression: str
    rerun: str


class Concept(_Strict):
    name: str
    description: str


class Settings(_Strict):
    """The whole of ``params/exchange.yml`` (see the comments at the top of that file)."""

    agency: Agency
    dataflow: Dataflow
    reference: str
    sdg_dimensions: dict[str, SdgDimension]
    countries: dict[str, str]
    statistics: list[Statistic] = Field(min_length=1)
    page: Page
    concepts: dict[str, Concept]
    codes: dict[str, str]
    quality_phrases: dict[str, str]
    quality: dict[Literal["relevance", "accuracy", "timeliness", "coherence", "accessibility",
                          "methodology"], Section]

    @property
    def reference_path(self) -> Path:
        path = Path(self.reference)
        return path if path.is_absolute() else config.PROJECT_ROOT / path

    def statistic_for(self, method) -> Statistic:
        """The first statistic whose ``match`` starts the row's method (case-insensitive)."""
        text = "" if method is None else str(method).strip().lower()
        for statistic in self.statistics:
            if text.startswith(statistic.match.lower()):
                return statistic
        raise ExchangeError(f"{EXCHANGE_FILE}: key 'statistics': no entry matches method "
                            f"{text[:40]!r}; end the list with a catch-all entry (match: \"\")")


def load_settings(path: Path | str | None = None) -> Settings:
    """Read and validate ``params/exchange.yml``.

    Raises
    ------
    ExchangeError
        One line naming the file and the offending key.
    """
    path = Path(path) if path else EXCHANGE_FILE
    return settings_from(config.read_yaml_mapping(path, ExchangeError, "exchange settings"), path)


def settings_from(data: dict, path: Path | str) -> Settings:
    """:func:`load_settings` of an already read mapping (e.g. a translated copy of the file:
    :func:`analysis.i18n.translated_mapping`); ``path`` names it in messages."""
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ExchangeError(config.pydantic_message(exc, str(path))) from None
    if not settings.reference_path.exists():
        raise ExchangeError(f"{path}: key 'reference': {settings.reference_path} not found")
    return settings
