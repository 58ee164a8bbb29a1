"""Quotas (per peer, both backends: going over changes nothing) and the per-run Budget."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

import peerbox
from peerbox.hostcalls import Backend, Budget, BudgetExceeded, Dispatch, HostCallError, Op, Quotas

MakeBackend = Callable[..., Backend]


def _state(backend: Backend) -> tuple[object, ...]:
    """Everything a script could observe, recursively, plus the usage tally."""
    out: list[object] = [backend.usage()]

    def walk(d: str) -> None:
        for name in backend.list_dir(d):
            path = f"{d}/{name}" if d else name
            st = backend.stat(path)
            if st.is_dir:
                out.append((path, "dir"))
                walk(path)
            else:
                out.append((path, backend.read_bytes(path)))

    walk("")
    return tuple(out)


def _refused(call: Callable[[], object], backend: Backend, match: str) -> None:
    before = _state(backend)
    with pytest.raises(HostCallError, match=match) as info:
        call()
    assert info.value.kind == "quota_exceeded"
    assert _state(backend) == before


def test_defaults_and_validation() -> None:
    q = Quotas()
    assert (q.max_total_bytes, q.max_files, q.max_file_size) == (100 << 20, 10_000, 16 << 20)
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.max_files = 3  # type: ignore[misc]
    for bad in ({"max_files": -1}, {"max_file_size": True}, {"max_total_bytes": "1"}, {"max_files": 1.0}):
        with pytest.raises(peerbox.UsageError):
            Quotas(**bad)
    assert Quotas(max_files=0).max_files == 0


def test_max_file_size(make_backend: MakeBackend) -> None:
    b = make_backend(Quotas(max_file_size=10))
    b.write_bytes("f", b"0123456789")
    _refused(lambda: b.write_bytes("f", b"01234567890"), b, "over the 10-byte limit on one file")
    _refused(lambda: b.write_bytes("g", b"x" * 11), b, "'g': 11 bytes")
    _refused(lambda: b.append_bytes("f", b"x"), b, "limit on one file")
    b.write_bytes("f", b"")
    assert b.append_bytes("f", b"0123456789") == 10
    assert b.usage() == (10, 1)


def test_max_total_bytes(make_backend: MakeBackend) -> None:
    b = make_backend(Quotas(max_total_bytes=100))
    b.write_bytes("a", b"a" * 60)
    _refused(lambda: b.write_bytes("b", b"b" * 41), b, "would take 101 bytes, over its 100-byte quota")
    _refused(lambda: b.append_bytes("a", b"a" * 41), b, "over its 100-byte quota")
    b.write_bytes("a", b"a" * 100)  # replacing counts the old size out
    assert b.usage() == (100, 1)
    b.write_bytes("b", b"")
    b.delete("a")
    b.write_bytes("b", b"b" * 100)
    assert b.usage() == (100, 1)


def test_max_files_counts_files_and_directories(make_backend: MakeBackend) -> None:
    b = make_backend(Quotas(max_files=3))
    b.mkdir("x/y")
    b.write_bytes("f", b"1")
    assert b.usage() == (1, 3)
    _refused(lambda: b.write_bytes("g", b"1"), b, "would have 4 files and directories, over its quota of 3")
    _refused(lambda: b.append_bytes("x/g", b"1"), b, "over its quota of 3")
    _refused(lambda: b.mkdir("z"), b, "over its quota of 3")
    _refused(lambda: b.mkdir("x/y/z/w"), b, "creating 'x/y/z/w': the peer would have 5")
    b.mkdir("x/y")  # exists: creates nothing, costs nothing
    b.write_bytes("f", b"22")  # replacing: no new entry
    b.delete("f")
    b.write_bytes("x/y/g", b"1")
    assert b.usage() == (1, 3)


def test_usage_survives_reopening(make_backend: MakeBackend) -> None:
    b = make_backend()
    b.mkdir("a/b")
    b.write_bytes("a/b/c", b"12345")
    b.write_bytes("d", b"123")
    b.append_bytes("d", b"45")
    usage = b.usage()
    assert usage == (10, 4)
    b.close()
    assert make_backend().usage() == usage


def test_file_over_the_size_quota_is_not_read(make_backend: MakeBackend) -> None:
    b = make_backend()
    b.write_bytes("big", b"x" * 100)
    b.close()
    small = make_backend(Quotas(max_file_size=99))
    for call in (lambda: small.read_bytes("big"), lambda: small.append_bytes("big", b"")):
        with pytest.raises(HostCallError) as info:
            call()
        assert info.value.kind == "quota_exceeded"
        assert info.value.message == "'big' is larger than the 99-byte limit on one file"
    assert small.stat("big").size == 100


# -- the per-run budget ------------------------------------------------------------------


def test_budget_defaults_and_validation() -> None:
    b = Budget()
    assert (b.max_calls, b.max_bytes_read, b.max_bytes_written) == (10_000, 64 << 20, 64 << 20)
    assert (b.calls, b.bytes_read, b.bytes_written) == (0, 0, 0)
    for bad in ({"max_calls": -1}, {"max_bytes_read": 1.5}, {"max_bytes_written": False}):
        with pytest.raises(peerbox.UsageError):
            Budget(**bad)
    assert "calls=0/10000" in repr(b)


def test_budget_calls(backend: Backend) -> None:
    d = Dispatch(backend, Budget(max_calls=3))
    d.call(Op.EXISTS, ["x"])
    with pytest.raises(HostCallError):  # a refused call counts too
        d.call(Op.READ, ["x"])
    d.call(Op.LIST, [""])
    with pytest.raises(BudgetExceeded) as info:
        d.call(Op.EXISTS, ["x"])
    assert info.value.resource == "calls"
    assert "more than 3 host calls" in str(info.value)
    with pytest.raises(BudgetExceeded):  # stays exceeded
        d.call(Op.EXISTS, ["x"])
    # invalid arguments and runs without storage count as well
    d2 = Dispatch(None, Budget(max_calls=1))
    with pytest.raises(HostCallError):
        d2.call(99, [])
    with pytest.raises(BudgetExceeded):
        d2.call(Op.READ, ["x"])


def test_budget_bytes_read(backend: Backend) -> None:
    backend.write_bytes("f", b"12345678")
    backend.mkdir("d")
    backend.write_bytes("d/ab", b"")
    d = Dispatch(backend, Budget(max_bytes_read=20))
    assert d.call(Op.READ, ["f"]) == "12345678"
    assert d.call(Op.LIST, ["d"]) == ["ab"]  # 2 characters + 1
    assert d.budget.bytes_read == 11
    assert d.call(Op.READ_BYTES, ["f"]) == b"12345678"
    with pytest.raises(BudgetExceeded) as info:
        d.call(Op.READ, ["f"])
    assert info.value.resource == "bytes_read"


def test_budget_bytes_written_is_checked_before_writing(backend: Backend) -> None:
    d = Dispatch(backend, Budget(max_bytes_written=10))
    d.call(Op.WRITE, ["f", "12345678"])
    with pytest.raises(BudgetExceeded) as info:
        d.call(Op.WRITE_BYTES, ["g", b"123"])
    assert info.value.resource == "bytes_written"
    assert not backend.exists("g")
    d2 = Dispatch(backend, Budget(max_bytes_written=10))
    # an append rewrites the file: 8 old bytes + 3 new are over 10
    with pytest.raises(BudgetExceeded):
        d2.call(Op.APPEND, ["f", "abc"])
    assert backend.read_bytes("f") == b"12345678"
    d3 = Dispatch(backend, Budget(max_bytes_written=11))
    d3.call(Op.APPEND, ["f", "abc"])
    assert backend.read_bytes("f") == b"12345678abc"
    assert d3.budget.bytes_written == 11


def test_budget_exceeded_is_not_a_host_call_error() -> None:
    assert issubclass(BudgetExceeded, peerbox.Error)
    assert not issubclass(BudgetExceeded, HostCallError)
