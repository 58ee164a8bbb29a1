"""Dispatch: one run's host calls, from ``(op, args)`` to a backend and back.

The sandbox decodes the CBOR argument array a script sent through
``peerbox.call(op, ptr, len)`` and calls :meth:`Dispatch.call`; the Python
value it returns becomes the ``{"ok": value}`` reply, a
:class:`HostCallError` becomes ``{"err": [kind, message]}`` (catchable in
the script), and a :class:`BudgetExceeded` stops the run. One Dispatch
belongs to one run: it holds that run's :class:`Budget` and the backend of
the peer the run executes as (``None`` for a run without a peer).

The calls, their op numbers, argument kinds, policy actions and results are
the rows of :data:`~peerbox.hostcalls._table.HOST_CALLS` (the one table the
compiler reads too); this module checks arguments against a row and runs the
row's operation, one method per call named after its function
(``fs::read_bytes`` -> ``_read_bytes``).

Budget accounting: every call counts one call, *before* anything else (so a
loop of failing calls ends too); reads count the bytes returned (names'
characters plus one per name for ``fs::list``); writes count the bytes
written, checked *before* writing; an append rewrites the whole file, so it
counts the file's old size plus the appended bytes.

Records (``db::``): the rows of module ``db`` run against the peer's
:class:`~peerbox.hostcalls.RecordStore` (:class:`~peerbox.hostcalls.Records`, SQLite, for fs and
sqlite storage; :class:`~peerbox.hostcalls._s3records.S3Records` for s3), which the Dispatch gets from its
``records`` opener on the first ``db::`` call (so a run that uses none opens
nothing). The policy is checked with the collection's name, and the
authorizer's answer is the row scope the call runs in (see
:data:`~peerbox.hostcalls.RowScope`). Writes count the encoded record's
bytes; reads count the records' approximate size. Per-caller quotas do not
cover records yet.

Per-caller quota: with a :class:`~peerbox.hostcalls.CallerQuota`, every change
(write, append, mkdir, delete) goes through its hook, which reserves what a
tracked caller adds before the backend changes anything and settles the
ledger's shares afterwards (see :mod:`peerbox.hostcalls._ledger`). The budget is
charged first, the quota next, so a refusal by either changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._backend import Backend
from ._errors import HostCallError
from ._ledger import CallerQuota
from ._limits import Budget
from ._paths import join, parse_path
from ._records import approx_size
from ._recstore import RecordStore, RowScope
from ._table import HOST_CALLS, HostCall, Op

__all__ = ["Op", "Dispatch", "OP_ACTIONS", "Authorizer", "RecordsOpener"]


_NO_STORAGE = "this run has no storage: run it as a peer (--peer NAME)"
_NO_RECORDS = "this peer keeps no records: declare collections in its schema.toml"
_COLLECTION = re.compile(r"[a-z][a-z0-9_]{0,62}")

#: The table's rows by op number (what a compiled module sends).
_BY_OP: Mapping[int, HostCall] = {int(c.op): c for c in HOST_CALLS}


def _type_name(value: object) -> str:
    """The script-side name of a Python value's type, for messages."""
    if value is None:
        return "()"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "blob"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def _check_args(op: object, args: object) -> tuple[HostCall, Sequence[Any]]:
    """The call's table row and arguments, or ``invalid_argument`` naming what is wrong."""
    row = _BY_OP.get(op) if type(op) in (int, Op) else None  # type: ignore[call-overload]
    if row is None:
        raise HostCallError("invalid_argument", f"unknown host call {op!r}")
    name, kinds = row.name, row.params
    if not isinstance(args, (list, tuple)):
        raise HostCallError("invalid_argument", f"{name}: arguments must be an array, not {_type_name(args)}")
    if len(args) != len(kinds):
        plural = "" if len(kinds) == 1 else "s"
        raise HostCallError(
            "invalid_argument", f"{name} takes {len(kinds)} argument{plural}, got {len(args)}"
        )
    for kind, value in zip(kinds, args, strict=True):
        if kind == "map":
            if not isinstance(value, dict):
                raise HostCallError("invalid_argument", f"{name}: expected a map, got {_type_name(value)}")
        elif kind == "key":
            if not (isinstance(value, str) or type(value) is int):
                raise HostCallError("invalid_argument", f"{name}: a key is an int or a string, not "
                                    f"{_type_name(value)}")
        elif kind == "blob":
            if not isinstance(value, (bytes, bytearray)):
                raise HostCallError("invalid_argument", f"{name}: expected a blob, got {_type_name(value)}")
        elif not isinstance(value, str):
            what = {"path": "a path (string)",
                    "collection": "a collection name (string)"}.get(kind, "a string")
            raise HostCallError("invalid_argument", f"{name}: expected {what}, got {_type_name(value)}")
    return row, args


def _encode(name: str, text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise HostCallError("invalid_argument", f"{name}: the string is not valid Unicode") from exc


#: The policy action each host call needs (an ``exec`` grants no file access by itself).
OP_ACTIONS: dict[Op, str] = {c.op: c.action for c in HOST_CALLS}

Authorizer = Callable[[str, str], RowScope]
"""``authorize(action, resource)``: return if allowed, else raise ``HostCallError("denied", why)``.
For a ``db.*`` action the resource is a collection and the return value is the call's row scope
(None: every record); for other actions it is ignored."""

RecordsOpener = Callable[[], RecordStore]
"""Opens (or returns the open) records of the run's peer; raises :class:`HostCallError`
(``unsupported``: the peer keeps no records or its storage has none)."""


class Dispatch:
    """The host calls of one run, against ``backend`` (None: no storage), within ``budget``.

    ``budget`` defaults to a fresh :class:`Budget` with the default limits.
    ``quota`` (None: no per-caller accounting) charges the run's changes to
    a caller, or only releases shares (see :class:`CallerQuota`).
    Not thread-safe (a run makes one host call at a time); the backend is.
    """

    __slots__ = ("backend", "budget", "authorize", "quota", "records")

    def __init__(
        self,
        backend: Backend | None,
        budget: Budget | None = None,
        authorize: Authorizer | None = None,
        quota: CallerQuota | None = None,
        records: RecordsOpener | None = None,
    ) -> None:
        self.backend = backend
        self.budget = budget if budget is not None else Budget()
        self.authorize = authorize
        self.quota = quota
        self.records = records

    def call(self, op: int, args: list[Any]) -> object:
        """Run host call ``op`` with ``args``; return its result as a plain Python value.

        Raises :class:`HostCallError` for every refusal: ``invalid_argument``
        (unknown op, wrong number or types of arguments, text that is not
        UTF-8), ``no_storage`` (no backend), and whatever the backend refuses
        (``invalid_path``, ``not_found``, ``quota_exceeded``, ...), the
        per-caller ``quota_exceeded`` and a failing quota ledger's ``io_error``. A backend
        translates its own storage library's errors (``sqlite3.Error`` in
        :class:`SqliteBackend`); an ``OSError`` a backend let through becomes
        ``io_error`` naming only its type (its text may hold a host path).
        Raises :class:`BudgetExceeded` when the run's budget is used up (not
        catchable by the script).
        """
        self.budget.charge_call()
        row, checked = _check_args(op, args)
        if row.module == "db":
            return self._db_call(row, checked)
        if self.backend is None:
            raise HostCallError("no_storage", _NO_STORAGE)
        if self.authorize is not None:  # the policy, checked at every call with the path it names
            self.authorize(row.action, join(parse_path(checked[0])))
        try:
            return _OPERATIONS[row.op](self, self.backend, *checked)
        except OSError as exc:  # the OS under every backend: one let through never leaks details
            raise HostCallError("io_error", f"{row.name}: storage failure ({type(exc).__name__})") from exc

    def _db_call(self, row: HostCall, args: Sequence[Any]) -> object:
        if self.backend is None and self.records is None:
            raise HostCallError("no_storage", _NO_STORAGE)
        coll = args[0]
        if not _COLLECTION.fullmatch(coll):
            raise HostCallError("invalid_argument", f"{row.name}: {coll[:80]!r} is not a collection name")
        scope = self.authorize(row.action, coll) if self.authorize is not None else None
        if self.records is None:
            raise HostCallError("unsupported", _NO_RECORDS)
        return _OPERATIONS[row.op](self, self.records(), scope, *args)

    # -- one method per host call, _<module>_<function> (arguments already type-checked) ---

    def _db_insert(self, records: RecordStore, scope: RowScope, coll: str, record: dict[str, Any]) -> object:
        return records.insert(coll, record, scope, self.budget.charge_write)

    def _db_get(self, records: RecordStore, scope: RowScope, coll: str, key: object) -> object:
        rec = records.get(coll, key, scope)
        self.budget.charge_read(approx_size(rec))
        return rec

    def _db_update(self, records: RecordStore, scope: RowScope, coll: str, key: object,
                   changes: dict[str, Any]) -> object:
        return records.update(coll, key, changes, scope, self.budget.charge_write)

    def _db_delete(self, records: RecordStore, scope: RowScope, coll: str, key: object) -> bool:
        return records.delete(coll, key, scope)

    def _db_query(self, records: RecordStore, scope: RowScope, coll: str, spec: dict[str, Any]) -> object:
        page = records.query(coll, spec, scope)
        self.budget.charge_read(approx_size(page))
        return page

    def _db_count(self, records: RecordStore, scope: RowScope, coll: str, where: object = None) -> int:
        return records.count(coll, where, scope)

    def _fs_read(self, backend: Backend, path: str) -> str:
        data = backend.read_bytes(path)
        self.budget.charge_read(len(data))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HostCallError(
                "invalid_argument", f"file is not valid UTF-8: {join(parse_path(path))}"
            ) from exc

    def _fs_read_bytes(self, backend: Backend, path: str) -> bytes:
        data = backend.read_bytes(path)
        self.budget.charge_read(len(data))
        return data

    def _fs_write(self, backend: Backend, path: str, text: str) -> None:
        self._replace(backend, path, _encode("fs::write", text))

    def _fs_write_bytes(self, backend: Backend, path: str, data: bytes | bytearray) -> None:
        self._replace(backend, path, bytes(data))

    def _replace(self, backend: Backend, path: str, data: bytes) -> None:
        parts = parse_path(path)  # path errors before budget errors
        self.budget.charge_write(len(data))
        if self.quota is None:
            backend.write_bytes(path, data)
        else:
            self.quota.write(join(parts), len(data), lambda: backend.write_bytes(path, data))

    def _fs_append(self, backend: Backend, path: str, text: str) -> None:
        data = _encode("fs::append", text)
        try:
            st = backend.stat(path)
            old = 0 if st.is_dir else st.size
        except HostCallError as exc:
            if exc.kind in ("invalid_path", "invalid_argument"):
                raise
            old = 0  # missing or refused: append_bytes reports it
        self.budget.charge_write(old + len(data))
        if self.quota is None:
            backend.append_bytes(path, data)
        else:
            self.quota.append(join(parse_path(path)), len(data), backend.exists,
                              lambda: backend.append_bytes(path, data))

    def _fs_list(self, backend: Backend, path: str) -> list[str]:
        names = backend.list_dir(path)
        self.budget.charge_read(sum(map(len, names)) + len(names))
        return names

    def _fs_exists(self, backend: Backend, path: str) -> bool:
        return backend.exists(path)

    def _fs_delete(self, backend: Backend, path: str) -> None:
        if self.quota is None:
            backend.delete(path)
        else:
            self.quota.delete(join(parse_path(path)), lambda: backend.delete(path))

    def _fs_mkdir(self, backend: Backend, path: str) -> None:
        if self.quota is None:
            backend.mkdir(path)
        else:
            self.quota.mkdir(join(parse_path(path)), backend.exists, lambda: backend.mkdir(path))

    def _fs_stat(self, backend: Backend, path: str) -> dict[str, object]:
        st = backend.stat(path)
        return {"size": st.size, "is_dir": st.is_dir, "modified": st.modified}


def _operations() -> dict[Op, Callable[..., object]]:
    """Each table row's method of :class:`Dispatch` (``fs::read_bytes`` -> ``_fs_read_bytes``).

    Raises ``LookupError`` (at import) for a row without its method: a host
    call added to the table must come with its operation.
    """
    out: dict[Op, Callable[..., object]] = {}
    for row in HOST_CALLS:
        method = getattr(Dispatch, f"_{row.module}_{row.function}", None)
        if method is None:
            raise LookupError(
                f"host call {row.name} (op {int(row.op)}) has no Dispatch._{row.module}_{row.function}"
            )
        out[row.op] = method
    return out


#: The operation of every op, from the table (the dispatcher serves exactly the table's calls).
_OPERATIONS: dict[Op, Callable[..., object]] = _operations()
