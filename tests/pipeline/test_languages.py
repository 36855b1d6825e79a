"""analysis.pipeline.languages: the environment of a page written in another report language."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from analysis import config, text
from analysis.pipeline.languages import language_environment


def test_language_environment_points_at_the_translation_and_restores_english(tmp_path, monkeypatch):
    for key in (text.LANGUAGE_VARIABLE, text.TEXT_FILE_VARIABLE, config.CATALOGUE_DIR_ENV):
        monkeypatch.delenv(key, raising=False)
    english_groups = config.GROUPS_FILE
    ctx = SimpleNamespace(language="fr", catalogue_dir=tmp_path)
    with pytest.raises(RuntimeError), language_environment(ctx):
        assert os.environ[text.LANGUAGE_VARIABLE] == "fr"
        assert os.environ[text.TEXT_FILE_VARIABLE] == str(tmp_path / "text.yml")
        assert os.environ[config.CATALOGUE_DIR_ENV] == str(tmp_path)
        assert config.GROUPS_FILE == tmp_path / "groups.yml"
        raise RuntimeError("a page failed")
    for key in (text.LANGUAGE_VARIABLE, text.TEXT_FILE_VARIABLE, config.CATALOGUE_DIR_ENV):
        assert key not in os.environ
    assert config.GROUPS_FILE == english_groups  # re-pointed after the variables were restored
