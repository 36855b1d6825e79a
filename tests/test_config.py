"""analysis.config: the helpers that move the project's paths and settings with the environment."""

from __future__ import annotations

import os

import pytest

from analysis import config


def test_environment_variables_sets_unsets_and_restores(monkeypatch):
    monkeypatch.setenv("ANALYSIS_TEST_KEPT", "before")
    monkeypatch.setenv("ANALYSIS_TEST_UNSET", "was set")
    monkeypatch.delenv("ANALYSIS_TEST_NEW", raising=False)
    with config.environment_variables({"ANALYSIS_TEST_KEPT": "during", "ANALYSIS_TEST_UNSET": None,
                                       "ANALYSIS_TEST_NEW": "added"}):
        assert os.environ["ANALYSIS_TEST_KEPT"] == "during"
        assert "ANALYSIS_TEST_UNSET" not in os.environ
        assert os.environ["ANALYSIS_TEST_NEW"] == "added"
    assert os.environ["ANALYSIS_TEST_KEPT"] == "before"
    assert os.environ["ANALYSIS_TEST_UNSET"] == "was set"
    assert "ANALYSIS_TEST_NEW" not in os.environ


def test_environment_variables_restores_after_an_error(monkeypatch):
    monkeypatch.delenv("ANALYSIS_TEST_NEW", raising=False)
    with pytest.raises(RuntimeError), config.environment_variables({"ANALYSIS_TEST_NEW": "added"}):
        raise RuntimeError("inside")
    assert "ANALYSIS_TEST_NEW" not in os.environ
