"""Fixtures for the host-call and storage-backend tests.

``make_backend`` is parametrized over every backend kind, so a test that
uses it runs once per backend: that is how the conformance suite shows the
backends behave the same. The s3 runs use the session's SeaweedFS server
(``local_s3`` in tests/conftest.py), each test under a key prefix of its own;
they are ``slow`` (the server is a process).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tomllib

from peerbox.hostcalls import (BACKEND_KINDS, Backend, LocalS3, Quotas, Records, RecordStore, Schema, StorageSite,
                               check_schema, open_backend, open_storage)
from peerbox.hostcalls._s3 import S3Backend
from peerbox.hostcalls._s3records import STALE_AFTER

MakeBackend = Callable[..., Backend]


def _location(base: Path, kind: str, peer: str = "alice") -> Path:
    """Where a peer's storage lives under ``base`` (the ``peerbox init`` layout)."""
    peer_dir = base / "peers" / peer
    return peer_dir / "files" if kind == "fs" else peer_dir / "store.sqlite"


@pytest.fixture(params=[pytest.param(k, marks=pytest.mark.slow) if k == "s3" else k for k in BACKEND_KINDS])
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def make_backend(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MakeBackend]:
    """``make_backend(quotas=None, peer="alice") -> Backend`` of this test's kind; closed afterwards.

    Calling it twice for the same peer re-opens the same storage (close the
    first one before, as a real process would).
    """
    opened: list[Backend] = []

    s3: tuple[Callable[..., dict[str, object]], LocalS3] | None = None
    if backend_kind == "s3":
        s3 = request.getfixturevalue("s3_table"), request.getfixturevalue("local_s3")

    def make(quotas: Quotas | None = None, peer: str = "alice") -> Backend:
        if s3 is None:
            backend = open_backend(backend_kind, _location(tmp_path, backend_kind, peer), quotas)
        else:
            site = StorageSite(_location(tmp_path, backend_kind, peer), peer)
            backend = open_storage(s3[0](peer), site, quotas, s3[1].environ())
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        backend.close()


@pytest.fixture
def backend(make_backend: MakeBackend) -> Backend:
    """A fresh, empty backend of each kind with the default quotas."""
    return make_backend()


def _snapshot(top: Path) -> dict[str, tuple[object, ...]]:
    """Everything observable about the tree at ``top``, links not followed.

    Maps each relative path to (type, size, mtime_ns, content or link target),
    the top directory included: used to show an operation changed nothing.
    """
    result: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in [".", *dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = os.path.relpath(path, top)
            st = path.lstat()
            if path.is_symlink():
                result[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                result[rel] = ("dir", st.st_mtime_ns, tuple(sorted(os.listdir(path))))
            elif path.is_file():
                result[rel] = ("file", st.st_size, st.st_mtime_ns, path.read_bytes())
            else:
                result[rel] = ("other", st.st_mode, st.st_mtime_ns)
    return result


@pytest.fixture(name="snapshot")
def snapshot_fixture() -> Callable[[Path], dict[str, tuple[object, ...]]]:
    """The function :func:`_snapshot` (conftest modules are not importable)."""
    return _snapshot


@pytest.fixture(name="location")
def location_fixture() -> Callable[..., Path]:
    """``location(base, kind, peer="alice")``: where a peer's storage lives under ``base``."""
    return _location


@pytest.fixture
def schema(schema_toml: str) -> Schema:
    """The shared test schema (``schema_toml``), checked."""
    return check_schema(tomllib.loads(schema_toml), schema_toml, "schema.toml")


OpenRecords = Callable[..., RecordStore]


@pytest.fixture
def open_records(schema: Schema, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[OpenRecords]:
    """``open_records(kind="sqlite", stale_after=60.0)``: records under the shared test schema:
    ``sqlite`` a store on one database file of the test, ``s3`` one on one key prefix of the
    test in the session's SeaweedFS (each call a new store on the same file or prefix, as another
    worker of the peer would open)."""
    opened: list[RecordStore] = []
    tables: list[dict[str, object]] = []  # the test's one s3 [storage] table, made on first use

    def make(kind: str = "sqlite", stale_after: float = STALE_AFTER) -> RecordStore:
        store: RecordStore
        if kind == "sqlite":
            store = Records(tmp_path / "records.sqlite", schema)
        else:
            if not tables:
                tables.append(request.getfixturevalue("s3_table")())
            server: LocalS3 = request.getfixturevalue("local_s3")
            backend = open_storage(tables[0], StorageSite(tmp_path / "unused", "alice"), None, server.environ())
            assert isinstance(backend, S3Backend)
            store = backend.records(schema, stale_after=stale_after)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def records(open_records: OpenRecords, request: pytest.FixtureRequest) -> RecordStore:
    """Empty records under the shared test schema: SQLite (a fresh database file), or, when a test
    parametrises it indirectly with ``"s3"``, S3 (a fresh key prefix of SeaweedFS)."""
    return open_records(getattr(request, "param", "sqlite"))
