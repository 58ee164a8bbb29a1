"""The interface of a peer's records store, which the ``db::`` host calls run against, and the
order-preserving value codec of a store that has no SQL to sort with.

Two stores implement it with the same semantics, error kinds and messages:
:class:`~peerbox.hostcalls._records.Records` (SQLite, ``records.sqlite``: the
fs and sqlite storage kinds) and
:class:`~peerbox.hostcalls._s3records.S3Records` (one object per record under
an S3 peer's prefix). The run's records opener returns whichever the peer's
storage kind calls for; the dispatcher only sees this Protocol.

**The value codec**: an order-preserving encoding of scalar values into S3 key text.

``encode(values)`` maps a tuple of scalar values (int, timestamp, float,
string, did, bool, bytes, or None for an absent optional field) to a string
of lowercase hex digits such that, for tuples of the same field types, the
strings sort (byte-wise, as S3 lists keys) exactly as SQLite orders the
values: None first, then ints and floats numerically, strings by their
UTF-8 bytes, bytes by memcmp, False before True. Each value's code is
self-delimiting, so a prefix of a tuple's code is the code of the prefix
tuple, and a string's code without its terminator is the common prefix of
every string starting with it (a ``prefix`` filter is a key range).

Codes per value (before hex): ``00`` for None, else ``01`` then: a 64-bit
int big-endian with its sign bit flipped; a float as IEEE 754 big-endian,
all bits flipped when negative, else the sign bit set; a bool as one byte;
text and bytes with ``00`` escaped as ``00 ff`` and ended by ``00 00``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from ._schema import Schema

__all__ = ["RecordStore", "RowScope", "encode", "encode_value", "text_prefix", "decode_int"]

#: None: every record; else the records matching any one of the field -> value maps.
RowScope = tuple[Mapping[str, object], ...] | None


class RecordStore(Protocol):
    """A peer's typed records under one applied :class:`Schema`. Every method raises
    :class:`~peerbox.hostcalls.HostCallError` (``not_found``, ``schema_violation``,
    ``invalid_argument``, ``conflict``, ``denied``, ``io_error``, ``unsupported``)."""

    schema: Schema

    def insert(self, coll: object, record: object, scope: RowScope = None,
               charge: Callable[[int], None] | None = None) -> object: ...

    def get(self, coll: object, key: object, scope: RowScope = None) -> dict[str, object] | None: ...

    def update(self, coll: object, key: object, changes: object, scope: RowScope = None,
               charge: Callable[[int], None] | None = None) -> dict[str, object]: ...

    def delete(self, coll: object, key: object, scope: RowScope = None) -> bool: ...

    def query(self, coll: object, spec: object, scope: RowScope = None) -> dict[str, object]: ...

    def count(self, coll: object, where: object = None, scope: RowScope = None) -> int: ...

    def close(self) -> None: ...


# -- the value codec ------------------------------------------------------------------------
_NULL = b"\x00"
_SOME = b"\x01"


def _escaped(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff")


def _value(kind: str, v: object) -> bytes:
    if v is None:
        return _NULL
    if kind in ("int", "timestamp"):
        assert type(v) is int
        return _SOME + struct.pack(">Q", (v + (1 << 63)) & 0xFFFFFFFFFFFFFFFF)
    if kind == "float":
        assert isinstance(v, (int, float))
        f = float(v)
        if f == 0.0:
            f = 0.0  # -0.0 and 0.0 are equal in SQLite
        (bits,) = struct.unpack(">Q", struct.pack(">d", f))
        bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | (1 << 63)
        return _SOME + struct.pack(">Q", bits)
    if kind == "bool":
        return _SOME + (b"\x01" if v else b"\x00")
    if kind in ("string", "did"):
        assert isinstance(v, str)
        return _SOME + _escaped(v.encode("utf-8")) + b"\x00\x00"
    assert isinstance(v, (bytes, bytearray)), kind
    return _SOME + _escaped(bytes(v)) + b"\x00\x00"


def encode_value(kind: str, v: object) -> str:
    """The code of one value of a field of ``kind`` (hex)."""
    return _value(kind, v).hex()


def encode(kinds: Sequence[str], values: Sequence[object]) -> str:
    """The code of ``values`` (fields of ``kinds``, in order): hex, sorting as the tuples do."""
    return b"".join(_value(k, v) for k, v in zip(kinds, values, strict=True)).hex()


def text_prefix(p: str) -> str:
    """The common prefix of the codes of every string that starts with ``p``."""
    return (_SOME + _escaped(p.encode("utf-8"))).hex()


def decode_int(code: str) -> int:
    """The int whose :func:`encode_value` ``("int", n)`` is ``code``."""
    raw = bytes.fromhex(code)
    return int.from_bytes(raw[1:9], "big") - (1 << 63)
