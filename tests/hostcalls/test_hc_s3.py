"""The s3 backend's own behaviour, against a real SeaweedFS S3 server.

(The conformance suite, quotas and the ledger run against s3 too, through
``make_backend``.) Here: concurrent appends through two backends on one
prefix (two workers) lose nothing; a service that goes away gives scripts a
typed ``io_error`` naming no endpoint, changes nothing, and the backend
recovers when it returns; names S3 services treat specially round-trip; a
``[storage]`` table is refused with a message naming the key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from peerbox.hostcalls import (Backend, Dispatch, HostCallError, LocalS3, Op, StorageConfigError,
                               StorageSite, check_storage, open_storage)

Table = Callable[..., dict[str, object]]


def _open(table: dict[str, object], server: LocalS3, tmp_path: Path) -> Backend:
    return open_storage(table, StorageSite(tmp_path / "unused", "alice"), None, server.environ())


@pytest.mark.slow
def test_concurrent_appends_through_two_backends_lose_nothing(
        s3_table: Table, local_s3: LocalS3, tmp_path: Path) -> None:
    """Two backends on one prefix (as two workers hosting one peer) append from two threads: the
    conditional PUT makes each append land on the version it read, so no line is lost."""
    table = s3_table()
    first, second = _open(table, local_s3, tmp_path), _open(table, local_s3, tmp_path)
    errors: list[BaseException] = []

    def append(backend: Backend, tag: str) -> None:
        try:
            for i in range(25):
                backend.append_bytes("log.txt", f"{tag}{i}\n".encode())
        except BaseException as exc:  # reported below: a thread's exception would vanish
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(b, t)) for b, t in ((first, "a"), (second, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lines = first.read_bytes("log.txt").decode().splitlines()
    assert sorted(lines) == sorted([f"a{i}" for i in range(25)] + [f"b{i}" for i in range(25)])
    assert [line for line in lines if line.startswith("a")] == [f"a{i}" for i in range(25)]  # in order
    first.close()
    second.close()


@pytest.mark.slow
def test_names_s3_services_treat_specially_round_trip(s3_table: Table, local_s3: LocalS3,
                                                     tmp_path: Path) -> None:
    backend = _open(s3_table(), local_s3, tmp_path)
    names = ["back\\slash", "per%25cent", "%5C", "a b&'c'", "ünï"]
    for i, name in enumerate(names):
        backend.write_bytes(name, bytes([i]))
    assert backend.list_dir("") == sorted(names)
    for i, name in enumerate(names):
        assert backend.read_bytes(name) == bytes([i])
    assert not backend.exists("back") and backend.usage() == (len(names), len(names))
    backend.close()


@pytest.mark.slow
def test_an_emptied_directory_can_become_a_file(s3_table: Table, local_s3: LocalS3, tmp_path: Path) -> None:
    backend = _open(s3_table(), local_s3, tmp_path)
    backend.mkdir("d/e")
    backend.write_bytes("d/e/x", b"1")
    backend.delete("d/e/x")
    backend.delete("d/e")
    assert backend.list_dir("d") == [] and not backend.exists("d/e")
    backend.write_bytes("d/e", b"now a file")
    assert backend.read_bytes("d/e") == b"now a file" and backend.list_dir("d") == ["e"]
    backend.close()


@pytest.mark.slow
def test_an_unavailable_service_is_an_io_error_and_the_backend_recovers(tmp_path: Path) -> None:
    """Its own server (stopping the session's would break the tests beside it)."""
    with LocalS3(tmp_path / "s3") as server:
        table: dict[str, object] = {"backend": "s3", "bucket": "peerbox-down", "endpoint": server.endpoint,
                                    "prefix": "p"}
        backend = _open(table, server, tmp_path)
        d = Dispatch(backend)
        d.call(Op.WRITE, ["a.txt", "old"])
        server.stop()
        for op, args in [(Op.WRITE, ["a.txt", "new!"]), (Op.APPEND, ["a.txt", "+"]), (Op.READ, ["a.txt"]),
                         (Op.LIST, [""]), (Op.MKDIR, ["d"]), (Op.DELETE, ["a.txt"]), (Op.STAT, ["a.txt"])]:
            with pytest.raises(HostCallError) as info:
                d.call(op, args)
            assert info.value.kind == "io_error", (op, info.value)
            assert "the storage service is unavailable" in info.value.message
            assert str(server.ports["s3.port"]) not in info.value.message
            assert "127.0.0.1" not in info.value.message and "peerbox-down" not in info.value.message
        # a backend opened while the service is down opens (nothing is contacted) and refuses the same way
        late = _open(table, server, tmp_path)
        with pytest.raises(HostCallError, match="unavailable"):
            late.usage()
        server.start()
        deadline = time.monotonic() + 60
        while True:  # a restarted SeaweedFS answers 500 until its volume server has re-registered
            try:
                assert d.call(Op.READ, ["a.txt"]) == "old"  # nothing half-written
                break
            except HostCallError as exc:
                assert exc.kind == "io_error" and "127.0.0.1" not in exc.message, exc
                assert time.monotonic() < deadline, "the backend did not recover"
                time.sleep(0.2)
        d.call(Op.APPEND, ["a.txt", "+new"])
        assert d.call(Op.READ, ["a.txt"]) == "old+new"
        assert late.usage() == backend.usage() == (7, 1)
        backend.close()
        late.close()


@pytest.mark.parametrize(("table", "message"), [
    ({}, "[storage] needs 'backend'"),
    ({"backend": "nfs"}, "unknown storage backend 'nfs' (choose one of: fs, sqlite, s3)"),
    ({"backend": "fs", "bucket": "x"}, "'bucket' is not a setting of the 'fs' backend (it takes: no other"),
    ({"backend": "s3", "bukcet": "x"}, "'bukcet' is not a setting of the 's3' backend (it takes: bucket,"),
    ({"backend": "s3", "bucket": 3}, "'bucket' must be a string, not int"),
    ({"backend": "s3", "bucket": "b", "secret_access_key": "x"},
     "'secret_access_key': credentials are never stored in peer.toml"),
])
def test_a_storage_table_is_checked_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(StorageConfigError) as info:
        check_storage(table)
    assert message in str(info.value)


@pytest.mark.parametrize(("table", "environ", "message"), [
    ({"backend": "s3"}, {}, "needs 'bucket'"),
    ({"backend": "s3", "bucket": "No_Such"}, {}, "'bucket': 'No_Such' is not an S3 bucket name"),
    ({"backend": "s3", "bucket": "bkt", "prefix": "a/../b"}, {}, "'prefix': invalid path"),
    ({"backend": "s3", "bucket": "bkt", "endpoint": "ftp://x"}, {}, "'endpoint': 'ftp://x' is not"),
    ({"backend": "s3", "bucket": "bkt"}, {}, "the environment variable AWS_ACCESS_KEY_ID is not set"),
    ({"backend": "s3", "bucket": "bkt", "secret_key_env": "MY_SECRET"}, {"AWS_ACCESS_KEY_ID": "k"},
     "the environment variable MY_SECRET (named by [storage] 'secret_key_env') is not set"),
])
def test_s3_settings_are_checked_when_opening(table: dict[str, object], environ: dict[str, str],
                                              message: str, tmp_path: Path) -> None:
    with pytest.raises(StorageConfigError) as info:
        open_storage(table, StorageSite(tmp_path, "did:key:z6Mkx"), None, environ)
    assert message in str(info.value)
    assert info.value.exit_code == 2
