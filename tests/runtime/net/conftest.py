"""Fixtures for the network tests: peers behind a small h2 server (see _mini_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._mini_server import ServerThread, World


@pytest.fixture
def world(tmp_path: Path, demo_policy: str) -> Iterator[World]:
    """alice and bob under ``tmp_path`` (bob runs the demo policy); closed after the test."""
    w = World(tmp_path, demo_policy)
    yield w
    w.close()


@pytest.fixture
def served(world: World) -> Iterator[ServerThread]:
    """The mini server answering for ``world``'s bob on a thread; the directory points at it."""
    st = ServerThread(world)
    yield st
    st.stop()
