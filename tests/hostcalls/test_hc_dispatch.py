"""Dispatch: argument checks, no-storage runs, result shapes; and the package facade."""

from __future__ import annotations

import pathlib
import pickle
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import peerbox
import peerbox.hostcalls as hc
from peerbox.hostcalls import (
    Backend,
    BudgetExceeded,
    Dispatch,
    FsBackend,
    HostCallError,
    Op,
    Quotas,
    SqliteBackend,
    Stat,
    open_backend,
)


def test_facade_exports_exactly_the_public_api() -> None:
    assert sorted(hc.__all__) == sorted(
        [
            "HostCallError",
            "BudgetExceeded",
            "Ledger",
            "CallerQuota",
            "LedgerStore",
            "Reservation",
            "Tally",
            "LocalTally",
            "SharedAccounts",
            "refuse_over_cap",
            "Usage",
            "LEDGER_FILE",
            "OP_ACTIONS",
            "Authorizer",
            "ERROR_KINDS",
            "Quotas",
            "Budget",
            "Backend",
            "Stat",
            "FsBackend",
            "SqliteBackend",
            "BACKEND_KINDS",
            "open_backend",
            "open_storage",
            "check_storage",
            "REGISTRY",
            "BackendEntry",
            "StorageSite",
            "StorageConfigError",
            "LocalS3",
            "Dispatch",
            "Op",
            "HOST_CALLS",
            "HostCall",
            "parse_path",
            "TEMP_PREFIX",
            "MAX_PATH_BYTES",
            "MAX_NAME_BYTES",
            "RecordsOpener", "RecordStore", "Records", "RowScope", "RECORDS_FILE", "MAX_RECORD_BYTES", "MAX_QUERY_LIMIT",
            "DEFAULT_QUERY_LIMIT", "Schema", "SchemaError", "SchemaProblem", "RecordType", "Field", "Collection",
            "TypeRef", "SCALARS", "MAX_SCHEMA_BYTES", "check_schema", "parse_type", "json_schema",
            "validate_record", "Change", "Plan", "ADDITIVE", "DESTRUCTIVE", "plan_migration", "apply_migration",
            "applied_schema", "export_lines", "import_lines", "S3Records", "S3Schemas", "s3_export_lines",
            "s3_import_lines",
        ]
    )
    for name in hc.__all__:
        assert getattr(hc, name) is not None
    assert hc.BACKEND_KINDS == ("fs", "sqlite", "s3")
    assert hc.TEMP_PREFIX == ".peerbox-tmp-"
    assert issubclass(FsBackend, Backend) and issubclass(SqliteBackend, Backend)


def test_op_numbers_are_the_abi() -> None:
    assert [(op.name, int(op)) for op in Op] == [
        ("READ", 1),
        ("WRITE", 2),
        ("APPEND", 3),
        ("LIST", 4),
        ("EXISTS", 5),
        ("DELETE", 6),
        ("MKDIR", 7),
        ("STAT", 8),
        ("READ_BYTES", 9),
        ("WRITE_BYTES", 10),
        ("DB_INSERT", 11),
        ("DB_GET", 12),
        ("DB_UPDATE", 13),
        ("DB_DELETE", 14),
        ("DB_QUERY", 15),
        ("DB_COUNT", 16),
        ("DB_COUNT_WHERE", 17),
    ]


def test_errors() -> None:
    exc = HostCallError("not_found", "no such file: 'x'")
    assert isinstance(exc, peerbox.Error)
    assert (exc.kind, exc.message, str(exc)) == (
        "not_found",
        "no such file: 'x'",
        "not_found: no such file: 'x'",
    )
    with pytest.raises(ValueError):
        HostCallError("no_such_kind", "x")
    assert hc.ERROR_KINDS == {
        "invalid_path",
        "not_found",
        "denied",
        "is_a_directory",
        "not_a_directory",
        "not_a_file",
        "quota_exceeded",
        "io_error",
        "no_storage",
        "invalid_argument",
        "schema_violation",
        "conflict",
        "unsupported",
    }
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.kind, copy.message) == (exc.kind, exc.message)
    budget = pickle.loads(pickle.dumps(BudgetExceeded("calls", "too many")))
    assert (budget.resource, budget.message) == ("calls", "too many")


def test_open_backend(tmp_path: Path) -> None:
    with open_backend("fs", tmp_path / "f") as b1:
        assert isinstance(b1, FsBackend) and b1.kind == "fs"
    with open_backend("sqlite", str(tmp_path / "d" / "s.sqlite"), Quotas(max_files=5)) as b2:
        assert isinstance(b2, SqliteBackend) and b2.quotas.max_files == 5
    with pytest.raises(peerbox.UsageError, match="unknown storage backend 'nfs'"):
        open_backend("nfs", tmp_path)
    with pytest.raises(peerbox.UsageError, match="the 's3' backend needs its \\[storage\\] settings"):
        open_backend("s3", tmp_path)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(peerbox.Error, match="cannot open the storage directory"):
        FsBackend(tmp_path / "file")
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(peerbox.Error, match="storage database"):
        SqliteBackend(tmp_path / "junk.sqlite")


def test_no_storage() -> None:
    d = Dispatch(None)
    for row in hc.HOST_CALLS:
        op = row.op
        sample = {"path": "x", "string": "y", "blob": b"y", "collection": "x", "key": 1, "map": {}}
        args: list[object] = [sample[k] for k in row.params]
        with pytest.raises(HostCallError) as info:
            d.call(op, args)
        assert info.value.kind == "no_storage"
        assert info.value.message == "this run has no storage: run it as a peer (--peer NAME)"


@pytest.mark.parametrize(
    ("op", "args", "message"),
    [
        (0, ["x"], "unknown host call 0"),
        (99, ["x"], "unknown host call 99"),
        (True, ["x"], "unknown host call True"),
        ("1", ["x"], "unknown host call '1'"),
        (Op.READ, "x", "fs::read: arguments must be an array, not string"),
        (Op.READ, [], "fs::read takes 1 argument, got 0"),
        (Op.WRITE, ["x"], "fs::write takes 2 arguments, got 1"),
        (Op.LIST, ["", ""], "fs::list takes 1 argument, got 2"),
        (Op.WRITE, [1, 2], "fs::write: expected a path (string), got int"),
        (Op.WRITE, ["x", 2], "fs::write: expected a string, got int"),
        (Op.WRITE, ["x", b"blob"], "fs::write: expected a string, got blob"),
        (Op.APPEND, ["x", None], "fs::append: expected a string, got ()"),
        (Op.WRITE_BYTES, ["x", "text"], "fs::write_bytes: expected a blob, got string"),
        (Op.READ, [["a"]], "fs::read: expected a path (string), got array"),
        (Op.STAT, [{"a": 1}], "fs::stat: expected a path (string), got map"),
        (Op.EXISTS, [1.5], "fs::exists: expected a path (string), got float"),
        (Op.MKDIR, [False], "fs::mkdir: expected a path (string), got bool"),
        (Op.WRITE, ["x", "\ud800"], "fs::write: the string is not valid Unicode"),
    ],
)
def test_invalid_arguments(backend: Backend, op: object, args: object, message: str) -> None:
    with pytest.raises(HostCallError) as info:
        Dispatch(backend).call(op, args)  # type: ignore[arg-type]
    assert (info.value.kind, info.value.message) == ("invalid_argument", message)
    assert backend.usage() == (0, 0)


def test_results_have_the_script_shapes(backend: Backend) -> None:
    d = Dispatch(backend)
    assert d.call(Op.MKDIR, ["notes/old"]) is None
    assert d.call(Op.WRITE, ["notes/b.txt", "héllo"]) is None
    assert d.call(Op.APPEND, ["notes/b.txt", "!"]) is None
    assert d.call(Op.WRITE_BYTES, ["notes/a.bin", bytearray(b"\x00\xff")]) is None
    for name in ("Z", "a", "é", "B", "_"):
        d.call(Op.WRITE, [f"notes/old/{name}", ""])
    assert d.call(Op.READ, ["notes/b.txt"]) == "héllo!"
    assert d.call(Op.READ_BYTES, ["notes/b.txt"]) == "héllo!".encode()
    assert d.call(Op.READ_BYTES, ["notes/a.bin"]) == b"\x00\xff"
    assert d.call(Op.LIST, ["notes"]) == ["a.bin", "b.txt", "old"]
    assert d.call(Op.LIST, ["notes/old"]) == ["B", "Z", "_", "a", "é"]  # code point order
    assert d.call(Op.LIST, [""]) == ["notes"]
    assert d.call(Op.EXISTS, ["notes/b.txt"]) is True
    assert d.call(Op.EXISTS, ["notes/zzz"]) is False
    assert d.call(Op.EXISTS, [""]) is True
    st = d.call(Op.STAT, ["notes/b.txt"])
    assert isinstance(st, dict) and list(st) == ["size", "is_dir", "modified"]
    assert st["size"] == 7 and st["is_dir"] is False and type(st["modified"]) is int
    assert d.call(Op.STAT, ["notes"])["is_dir"] is True  # type: ignore[index]
    assert d.call(Op.DELETE, ["notes/a.bin"]) is None
    with pytest.raises(HostCallError) as info:
        d.call(Op.READ, ["notes/a.bin"])
    assert info.value.kind == "not_found"


def test_text_reads_are_strict_utf8(backend: Backend) -> None:
    backend.mkdir("notes")
    for i, blob in enumerate((b"\xff", b"\xed\xa0\x80", b"ok\xc3", b"\xc0\xaf")):
        backend.write_bytes(f"notes/x{i}", blob)
        with pytest.raises(HostCallError) as info:
            Dispatch(backend).call(Op.READ, [f"notes/x{i}"])
        assert (info.value.kind, info.value.message) == (
            "invalid_argument",
            f"file is not valid UTF-8: notes/x{i}",
        )
    backend.write_bytes("notes/ok", "e\u0301".encode())
    assert Dispatch(backend).call(Op.READ, ["notes/ok"]) == "e\u0301"  # content is never normalised


class _Broken(Backend):
    """A backend whose storage fails underneath with raw exceptions."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def _fail(self, *args: object) -> bytes:
        raise self.exc

    read_bytes = write_bytes = append_bytes = list_dir = exists = delete = mkdir = stat = _fail  # type: ignore[assignment]

    def usage(self) -> tuple[int, int]:
        return (0, 0)

    def close(self) -> None:
        pass


def test_raw_os_errors_become_io_error_without_details() -> None:
    exc = OSError(5, "Input/output error", "/secret/host/path")
    with pytest.raises(HostCallError) as info:
        Dispatch(_Broken(exc)).call(Op.READ, ["x"])
    assert info.value.kind == "io_error"
    assert "/secret" not in info.value.message and "fs::read" in info.value.message
    assert info.value.__cause__ is exc


def test_the_dispatcher_knows_no_storage_library() -> None:
    """A storage library's errors are its backend's to translate (below), not the dispatcher's."""
    import peerbox.hostcalls._dispatch as dispatch_module

    assert "sqlite3" not in vars(dispatch_module)
    with pytest.raises(sqlite3.OperationalError):
        Dispatch(_Broken(sqlite3.OperationalError("x"))).call(Op.READ, ["x"])


def test_the_sqlite_backend_translates_its_own_errors(tmp_path: Path) -> None:
    backend = hc.SqliteBackend(tmp_path / "secret" / "files.db")
    try:
        backend.write_bytes("x", b"1")
        real = backend._db

        class _Failing:
            in_transaction = False

            def execute(self, sql: str, *args: Any) -> object:
                if sql.startswith("SELECT"):
                    raise sqlite3.OperationalError(f"disk I/O error at {tmp_path}/secret/files.db")
                return real.execute(sql, *args)

        backend._db = _Failing()  # type: ignore[assignment]
        with pytest.raises(HostCallError) as info:
            Dispatch(backend).call(Op.READ, ["x"])
        backend._db = real
    finally:
        backend.close()
    assert info.value.kind == "io_error"
    assert str(tmp_path) not in info.value.message and "x" in info.value.message
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)


def test_stat_type() -> None:
    st = Stat(1, False, 2)
    assert (st.size, st.is_dir, st.modified) == (1, False, 2)


def test_ops_agree_with_the_compilers_host_function_table() -> None:
    """Every host function the language knows reaches the op of the same name and arity."""
    from peerbox.wasm_guests.lang._hostfns import HostFunctions

    host_functions = HostFunctions(hc.HOST_CALLS).functions
    assert sorted(h.op for h in host_functions) == sorted(int(op) for op in Op)
    for h in host_functions:
        assert Op(h.op).name.lower() in (h.name, f"{h.module}_{h.name}", f"{h.module}_{h.name}_where")
        with pytest.raises(HostCallError) as info:
            Dispatch(None).call(h.op, [None] * (h.arity + 1))
        plural = "" if h.arity == 1 else "s"
        assert info.value.message == f"{h.qualname} takes {h.arity} argument{plural}, got {h.arity + 1}"


def test_authorize_sees_every_call_with_its_action_and_canonical_path(tmp_path: pathlib.Path) -> None:
    seen: list[tuple[str, str]] = []

    def authorize(action: str, path: str) -> None:
        seen.append((action, path))
        if path.startswith("private"):
            raise HostCallError("denied", f"{action} of {path!r}: no rule allows it")

    backend = hc.FsBackend(tmp_path / "files")
    d = Dispatch(backend, authorize=authorize)
    d.call(Op.MKDIR, ["inbox"])
    d.call(Op.WRITE, ["inbox/a.txt", "hi"])
    assert d.call(Op.READ, ["inbox/a.txt"]) == "hi"
    assert d.call(Op.LIST, [""]) == ["inbox"]
    with pytest.raises(HostCallError) as info:
        d.call(Op.WRITE, ["private/x", "no"])
    assert info.value.kind == "denied"
    assert not (tmp_path / "files" / "private").exists()
    assert seen == [("fs.mkdir", "inbox"), ("fs.write", "inbox/a.txt"), ("fs.read", "inbox/a.txt"),
                    ("fs.list", ""), ("fs.write", "private/x")]
    assert set(hc.OP_ACTIONS.values()) == {"fs.read", "fs.write", "fs.append", "fs.mkdir", "fs.delete", "fs.list",
                                           "db.read", "db.write", "db.delete"}
    backend.close()
