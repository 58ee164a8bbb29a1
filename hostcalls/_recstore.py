"""The interface of a peer's records store, which the ``db::`` host calls run against.

Two stores implement it with the same semantics, error kinds and messages:
:class:`~peerbox.hostcalls._records.Records` (SQLite, ``records.sqlite``: the
fs and sqlite storage kinds) and
:class:`~peerbox.hostcalls._s3records.S3Records` (one object per record under
an S3 peer's prefix). The run's records opener returns whichever the peer's
storage kind calls for; the dispatcher only sees this Protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from ._schema import Schema

__all__ = ["RecordStore", "RowScope"]

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
