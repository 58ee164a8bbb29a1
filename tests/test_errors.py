"""Foreign exceptions are translated at one boundary each, with the cause kept."""

from __future__ import annotations

import pytest
from pathlib import Path

from peerbox._errors import Error, ExceptionMapping, map_exceptions
from peerbox.wire import EnvelopeError, cbor_loads


class _Mapped(Error):
    pass


def test_map_exceptions_translates_and_keeps_the_cause() -> None:
    with pytest.raises(_Mapped) as info, map_exceptions({KeyError: lambda exc: _Mapped(str(exc))}):
        raise KeyError("k")
    assert isinstance(info.value.__cause__, KeyError)


def test_map_exceptions_lets_peerbox_errors_and_unmapped_ones_through() -> None:
    with pytest.raises(_Mapped), map_exceptions({Exception: lambda exc: Error("renamed")}):
        raise _Mapped("already ours")
    with pytest.raises(ZeroDivisionError), map_exceptions({KeyError: lambda exc: _Mapped("no")}):
        raise ZeroDivisionError


def test_the_first_matching_row_wins() -> None:
    table: ExceptionMapping = {KeyError: lambda exc: _Mapped("key"),
                               LookupError: lambda exc: _Mapped("lookup")}
    with pytest.raises(_Mapped, match="key"), map_exceptions(table):
        raise KeyError("k")


def test_a_duplicate_key_is_refused_by_the_scan_not_by_cbor2s_message() -> None:
    # a2 {"a": 1, "a": 1}: refused before cbor2 runs, so no cbor2 error is the cause
    with pytest.raises(EnvelopeError) as info:
        cbor_loads(bytes.fromhex("a26161016161 01".replace(" ", "")))
    assert info.value.kind == "not_canonical"
    assert "duplicate map key" in info.value.message
    assert info.value.__cause__ is None
    # a nested map too, and equal keys of different major types are not duplicates
    with pytest.raises(EnvelopeError, match="duplicate map key"):
        cbor_loads(bytes.fromhex("a10aa2016161016162"))
    assert cbor_loads(bytes.fromhex("a2016178617801")) == {1: "x", "x": 1}


def test_invalid_cbor_from_cbor2_is_malformed_with_its_cause() -> None:
    with pytest.raises(EnvelopeError) as info:
        cbor_loads(bytes.fromhex("62ff41"))  # a text string of invalid UTF-8
    assert info.value.kind == "malformed"
    assert info.value.__cause__ is not None


def test_the_nonce_store_translates_sqlite_and_os_errors(tmp_path: Path) -> None:
    import sqlite3

    from peerbox.wire import NonceStore, NonceStoreError

    (tmp_path / "not-a-dir").write_bytes(b"")
    with pytest.raises(NonceStoreError, match="cannot open the nonce store") as opening:
        NonceStore(tmp_path / "not-a-dir" / "nonces.db")
    assert isinstance(opening.value.__cause__, OSError)
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(NonceStoreError) as junk:
        NonceStore(tmp_path / "junk.db")
    assert isinstance(junk.value.__cause__, sqlite3.DatabaseError)
    with NonceStore(":memory:") as store:
        assert store.seen_or_add(b"c", b"n", 10, 0) is False
        store._db.execute("DROP TABLE nonces")
        with pytest.raises(NonceStoreError, match="nonce store :memory:") as writing:
            store.seen_or_add(b"c", b"m", 10, 0)
        assert isinstance(writing.value.__cause__, sqlite3.OperationalError)


def test_the_lower_rooms_keep_causes() -> None:
    """``raise ... from None`` hides the cause; in these rooms only with a comment saying why."""
    import ast
    import importlib.util

    roots: list[Path] = []
    for package in ("peerbox.wire", "peerbox.peer", "peerbox.hostcalls", "peerbox.policy"):
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations
        roots.extend(Path(p) for p in spec.submodule_search_locations)
    hidden = []
    for root in roots:
        for file in sorted(root.glob("*.py")):
            text = file.read_text(encoding="utf-8")
            lines = text.splitlines()
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.Raise) and isinstance(node.cause, ast.Constant) \
                        and node.cause.value is None:
                    end = node.end_lineno or node.lineno
                    if "deliberate" not in " ".join(lines[node.lineno - 2:end]):
                        hidden.append(f"{file.name}:{node.lineno}")
    assert not hidden, f"causes dropped with 'from None': {hidden}"
