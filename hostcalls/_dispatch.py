"""Dispatch: one run's host calls, from ``(op, args)`` to a backend and back.

The sandbox decodes the CBOR argument array a script sent through
``peerbox.call(op, ptr, len)`` and calls :meth:`Dispatch.call`; the Python
value it returns becomes the ``{"ok": value}`` reply, a
:class:`HostCallError` becomes ``{"err": [kind, message]}`` (catchable in
the script), and a :class:`BudgetExceeded` stops the run. One Dispatch
belongs to one run: it holds that run's :class:`Budget` and the backend of
the peer the run executes as (``None`` for a run without a peer).

The ops (numbers fixed by the host-call ABI, see ``wasm_guests/lang/_hostfns.py``):

====  ================  ================  ===========================
op    script call       arguments         result
====  ================  ================  ===========================
1     fs::read          path              string (UTF-8, strict)
2     fs::write         path, string      ()
3     fs::append        path, string      ()
4     fs::list          dir               array of names, sorted
5     fs::exists        path              bool
6     fs::delete        path              ()
7     fs::mkdir         path              () (parents too)
8     fs::stat          path              #{size, is_dir, modified}
9     fs::read_bytes    path              blob
10    fs::write_bytes   path, blob        ()
====  ================  ================  ===========================

Budget accounting: every call counts one call, *before* anything else (so a
loop of failing calls ends too); reads count the bytes returned (names'
characters plus one per name for ``fs::list``); writes count the bytes
written, checked *before* writing; an append rewrites the whole file, so it
counts the file's old size plus the appended bytes.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from ._backend import Backend
from ._errors import HostCallError
from ._limits import Budget
from ._paths import join, parse_path

__all__ = ["Op", "Dispatch"]


class Op(enum.IntEnum):
    """Host-call operation numbers (the ``op`` of ``peerbox.call``)."""

    READ = 1
    WRITE = 2
    APPEND = 3
    LIST = 4
    EXISTS = 5
    DELETE = 6
    MKDIR = 7
    STAT = 8
    READ_BYTES = 9
    WRITE_BYTES = 10


_NO_STORAGE = "this run has no storage: run it as a peer (--peer NAME)"

# Argument kinds: "path" and "string" want a str, "blob" wants bytes.
_SIGNATURES: dict[int, tuple[str, tuple[str, ...]]] = {
    Op.READ: ("fs::read", ("path",)),
    Op.WRITE: ("fs::write", ("path", "string")),
    Op.APPEND: ("fs::append", ("path", "string")),
    Op.LIST: ("fs::list", ("path",)),
    Op.EXISTS: ("fs::exists", ("path",)),
    Op.DELETE: ("fs::delete", ("path",)),
    Op.MKDIR: ("fs::mkdir", ("path",)),
    Op.STAT: ("fs::stat", ("path",)),
    Op.READ_BYTES: ("fs::read_bytes", ("path",)),
    Op.WRITE_BYTES: ("fs::write_bytes", ("path", "blob")),
}


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


def _check_args(op: object, args: object) -> tuple[str, Sequence[Any]]:
    """The call's name and arguments, or ``invalid_argument`` naming what is wrong."""
    sig = _SIGNATURES.get(op) if type(op) in (int, Op) else None  # type: ignore[call-overload]
    if sig is None:
        raise HostCallError("invalid_argument", f"unknown host call {op!r}")
    name, kinds = sig
    if not isinstance(args, (list, tuple)):
        raise HostCallError("invalid_argument", f"{name}: arguments must be an array, not {_type_name(args)}")
    if len(args) != len(kinds):
        plural = "" if len(kinds) == 1 else "s"
        raise HostCallError(
            "invalid_argument", f"{name} takes {len(kinds)} argument{plural}, got {len(args)}"
        )
    for kind, value in zip(kinds, args):
        if kind == "blob":
            if not isinstance(value, (bytes, bytearray)):
                raise HostCallError("invalid_argument", f"{name}: expected a blob, got {_type_name(value)}")
        elif not isinstance(value, str):
            what = "a path (string)" if kind == "path" else "a string"
            raise HostCallError("invalid_argument", f"{name}: expected {what}, got {_type_name(value)}")
    return name, args


def _encode(name: str, text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise HostCallError("invalid_argument", f"{name}: the string is not valid Unicode") from None


#: The policy action each host call needs (an ``exec`` grants no file access by itself).
OP_ACTIONS: dict[Op, str] = {
    Op.READ: "fs.read", Op.READ_BYTES: "fs.read", Op.EXISTS: "fs.read", Op.STAT: "fs.read",
    Op.WRITE: "fs.write", Op.WRITE_BYTES: "fs.write", Op.APPEND: "fs.write", Op.MKDIR: "fs.write",
    Op.DELETE: "fs.delete", Op.LIST: "fs.list",
}

Authorizer = Callable[[str, str], None]
"""``authorize(action, path)``: return if allowed, else raise ``HostCallError("denied", why)``."""


class Dispatch:
    """The host calls of one run, against ``backend`` (None: no storage), within ``budget``.

    ``budget`` defaults to a fresh :class:`Budget` with the default limits.
    Not thread-safe (a run makes one host call at a time); the backend is.
    """

    __slots__ = ("backend", "budget", "authorize", "_table")

    def __init__(
        self,
        backend: Backend | None,
        budget: Budget | None = None,
        authorize: Authorizer | None = None,
    ) -> None:
        self.backend = backend
        self.budget = budget if budget is not None else Budget()
        self.authorize = authorize
        self._table: dict[int, Callable[..., object]] = {
            Op.READ: self._read,
            Op.WRITE: self._write,
            Op.APPEND: self._append,
            Op.LIST: self._list,
            Op.EXISTS: self._exists,
            Op.DELETE: self._delete,
            Op.MKDIR: self._mkdir,
            Op.STAT: self._stat,
            Op.READ_BYTES: self._read_bytes,
            Op.WRITE_BYTES: self._write_bytes,
        }

    def call(self, op: int, args: list[Any]) -> object:
        """Run host call ``op`` with ``args``; return its result as a plain Python value.

        Raises :class:`HostCallError` for every refusal: ``invalid_argument``
        (unknown op, wrong number or types of arguments, text that is not
        UTF-8), ``no_storage`` (no backend), and whatever the backend refuses
        (``invalid_path``, ``not_found``, ``quota_exceeded``, ...); an
        unexpected ``OSError`` or ``sqlite3.Error`` from a backend becomes
        ``io_error``. Raises :class:`BudgetExceeded` when the run's budget is
        used up (not catchable by the script).
        """
        self.budget.charge_call()
        name, checked = _check_args(op, args)
        if self.backend is None:
            raise HostCallError("no_storage", _NO_STORAGE)
        if self.authorize is not None:  # the policy, checked at every call with the path it names
            self.authorize(OP_ACTIONS[Op(op)], join(parse_path(checked[0])))
        try:
            return self._table[op](self.backend, *checked)
        except (OSError, sqlite3.Error) as exc:  # a backend let one through: never leak details
            raise HostCallError("io_error", f"{name}: storage failure ({type(exc).__name__})") from exc

    # -- one method per op (arguments already type-checked) ---------------------------

    def _read(self, backend: Backend, path: str) -> str:
        data = backend.read_bytes(path)
        self.budget.charge_read(len(data))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise HostCallError(
                "invalid_argument", f"file is not valid UTF-8: {join(parse_path(path))}"
            ) from None

    def _read_bytes(self, backend: Backend, path: str) -> bytes:
        data = backend.read_bytes(path)
        self.budget.charge_read(len(data))
        return data

    def _write(self, backend: Backend, path: str, text: str) -> None:
        data = _encode("fs::write", text)
        parse_path(path)  # path errors before budget errors
        self.budget.charge_write(len(data))
        backend.write_bytes(path, data)

    def _write_bytes(self, backend: Backend, path: str, data: bytes | bytearray) -> None:
        parse_path(path)
        self.budget.charge_write(len(data))
        backend.write_bytes(path, bytes(data))

    def _append(self, backend: Backend, path: str, text: str) -> None:
        data = _encode("fs::append", text)
        try:
            st = backend.stat(path)
            old = 0 if st.is_dir else st.size
        except HostCallError as exc:
            if exc.kind in ("invalid_path", "invalid_argument"):
                raise
            old = 0  # missing or refused: append_bytes reports it
        self.budget.charge_write(old + len(data))
        backend.append_bytes(path, data)

    def _list(self, backend: Backend, path: str) -> list[str]:
        names = backend.list_dir(path)
        self.budget.charge_read(sum(map(len, names)) + len(names))
        return names

    def _exists(self, backend: Backend, path: str) -> bool:
        return backend.exists(path)

    def _delete(self, backend: Backend, path: str) -> None:
        backend.delete(path)

    def _mkdir(self, backend: Backend, path: str) -> None:
        backend.mkdir(path)

    def _stat(self, backend: Backend, path: str) -> dict[str, object]:
        st = backend.stat(path)
        return {"size": st.size, "is_dir": st.is_dir, "modified": st.modified}
