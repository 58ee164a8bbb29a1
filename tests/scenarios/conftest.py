"""Fixtures shared by the scenario tests (the real `peerbox serve` of ``serving`` is in tests/conftest.py)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from peerbox.hostcalls import LocalS3

from ..conftest import PEERBOX, Serving
from ._cluster import Cluster

__all__ = ["PEERBOX", "Serving"]  # the serving fixture and its types live in tests/conftest.py
# One compile cache for the processes of the scenario tests, not the user's (a test that needs its
# own sets PEERBOX_CACHE_DIR itself).
os.environ.setdefault("PEERBOX_CACHE_DIR", tempfile.mkdtemp(prefix="peerbox-test-cache-"))

ConformanceTables = Mapping[str, Sequence[tuple[str, str, Any]]]


def _conformance_ids(tables: ConformanceTables) -> list[str]:
    """The test id of each case of a conformance module's tables: ``<prefix>-<case id>``."""
    return [f"{prefix}-{case_id}" for prefix, table in tables.items() for case_id, _, _ in table]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``test_program_value`` of a conformance module with its ``CONFORMANCE`` tables.

    ``CONFORMANCE`` maps an id prefix to a table of ``(case id, source, expected)``;
    each case becomes one ``(source, expected)`` parameter with the id
    ``<prefix>-<case id>`` (so ids stay what they were before the split).
    """
    tables = getattr(metafunc.module, "CONFORMANCE", None)
    if tables is None or metafunc.function.__name__ != "test_program_value":
        return
    cases = [(source, expected) for table in tables.values() for _, source, expected in table]
    metafunc.parametrize(("source", "expected"), cases, ids=_conformance_ids(tables))


@pytest.fixture(scope="session")
def conformance_ids() -> Callable[[ConformanceTables], list[str]]:
    """``conformance_ids(CONFORMANCE)``: the test id of every case, in order."""
    return _conformance_ids


@pytest.fixture
def cluster(tmp_path: Path, serving: Serving, local_s3: LocalS3, nats_server: Any,
            s3_table: Callable[..., dict[str, object]], monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """bob on S3 and nats-server, no worker started yet (every started one is stopped after the test)."""
    for key, value in local_s3.environ().items():
        monkeypatch.setenv(key, value)  # every worker inherits the S3 credentials
    with ExitStack() as stack:
        yield Cluster(tmp_path, nats_server.url, serving, stack, local_s3, s3_table("bob"))
