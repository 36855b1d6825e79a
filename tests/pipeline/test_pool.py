"""analysis.pipeline.pool: the worker pool's signal handling."""

from __future__ import annotations

import signal

import pytest

from analysis.pipeline.pool import raise_interrupt


def test_sigterm_unwinds_like_ctrl_c_naming_the_signal():
    with pytest.raises(KeyboardInterrupt, match=f"signal {int(signal.SIGTERM)}"):
        raise_interrupt(signal.SIGTERM, None)
