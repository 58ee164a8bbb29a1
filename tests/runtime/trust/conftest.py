"""Fixtures for the trust tests: bob's handler and the peers that push logic to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._logic_world import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """bob, alice and carol under ``tmp_path``; bob's handler and context closed after the test."""
    w = World(tmp_path)
    yield w
    w.handler.close()
    w.ctx.close()
