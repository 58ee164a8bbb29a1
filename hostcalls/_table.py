"""The host-call table: the one written form of the host-call ABI.

A script's ``fs::read(p)`` leaves the sandbox as ``peerbox.call(op, args)``:
the compiler turns the call into its op number and the dispatcher turns the
op number back into a backend operation. Both read *this* table, so they
cannot disagree: the compiler receives it as a parameter
(``compile_to_wat(..., host_calls=HOST_CALLS)``), the dispatcher
(:mod:`peerbox.hostcalls._dispatch`) is built from it, and the tests check
the README's list of host calls against it.

Each row says:

* ``op``: the number a compiled module sends. Part of the ABI between
  compiled modules (cached on disk) and the host: never renumber one, never
  reuse a retired one.
* ``name``: what a script calls, ``module::function``.
* ``params``: the kind of each argument. ``"path"`` (a string naming a file
  or directory in the peer's storage; the policy is checked against it),
  ``"string"`` (text, sent as UTF-8), ``"blob"`` (bytes), ``"collection"``
  (a string naming one of the peer's record collections; the policy is
  checked against it), ``"key"`` (a record's key: an int or a string) or
  ``"map"`` (a record, a record's changes, a filter or a query). The first
  parameter of every call is its ``path`` or ``collection``. One name may
  have rows of different arities (``db::count(coll)``, ``db::count(coll,
  where)``); both run the same operation.
* ``action``: the policy action the call needs (the names belong to
  :mod:`peerbox.policy`; an allowed ``exec`` grants no file access).
* ``result``: the script-side type of the value returned.
* ``doc``: one line for people.

This module imports nothing from peerbox: anything may read it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Op", "HostCall", "HOST_CALLS", "PARAM_KINDS", "RESULT_KINDS"]

#: The argument kinds a row may use (see the module docstring).
PARAM_KINDS: tuple[str, ...] = ("path", "string", "blob", "collection", "key", "map")
#: The result types a row may declare (script-side type names).
RESULT_KINDS: tuple[str, ...] = ("()", "bool", "int", "string", "blob", "array", "map", "any")


class Op(enum.IntEnum):
    """Host-call operation numbers (the ``op`` of ``peerbox.call``): :data:`HOST_CALLS` row keys."""

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
    DB_INSERT = 11
    DB_GET = 12
    DB_UPDATE = 13
    DB_DELETE = 14
    DB_QUERY = 15
    DB_COUNT = 16
    DB_COUNT_WHERE = 17


@dataclass(frozen=True, slots=True)
class HostCall:
    """One host call: ``op``, script ``name`` (``module::function``), argument kinds
    (``params``), the policy ``action`` it needs, its ``result`` type and a ``doc`` line."""

    op: Op
    name: str
    params: tuple[str, ...]
    action: str
    result: str
    doc: str

    @property
    def module(self) -> str:
        """The part of :attr:`name` before ``::`` (``fs``)."""
        return self.name.partition("::")[0]

    @property
    def function(self) -> str:
        """The part of :attr:`name` after ``::`` (``read``)."""
        return self.name.partition("::")[2]

    @property
    def arity(self) -> int:
        """How many arguments the call takes."""
        return len(self.params)


#: Every host call, in op order.
HOST_CALLS: tuple[HostCall, ...] = (
    HostCall(Op.READ, "fs::read", ("path",), "fs.read", "string", "the text of a file (UTF-8)"),
    HostCall(Op.WRITE, "fs::write", ("path", "string"), "fs.write", "()",
             "replace a file's content atomically with a string"),
    HostCall(Op.APPEND, "fs::append", ("path", "string"), "fs.append", "()",
             "append a string to a file (created if missing)"),
    HostCall(Op.LIST, "fs::list", ("path",), "fs.list", "array",
             'sorted names in a directory ("" is the root)'),
    HostCall(Op.EXISTS, "fs::exists", ("path",), "fs.read", "bool", "true if the file or directory exists"),
    HostCall(Op.DELETE, "fs::delete", ("path",), "fs.delete", "()", "delete a file or an empty directory"),
    HostCall(Op.MKDIR, "fs::mkdir", ("path",), "fs.mkdir", "()", "create a directory and its parents"),
    HostCall(Op.STAT, "fs::stat", ("path",), "fs.read", "map", "#{size, is_dir, modified}"),
    HostCall(Op.READ_BYTES, "fs::read_bytes", ("path",), "fs.read", "blob", "the bytes of a file as a blob"),
    HostCall(Op.WRITE_BYTES, "fs::write_bytes", ("path", "blob"), "fs.write", "()",
             "replace a file's content atomically with a blob"),
    HostCall(Op.DB_INSERT, "db::insert", ("collection", "map"), "db.write", "any",
             "validate and store a record; its key"),
    HostCall(Op.DB_GET, "db::get", ("collection", "key"), "db.read", "map",
             "the record with this key, or ()"),
    HostCall(Op.DB_UPDATE, "db::update", ("collection", "key", "map"), "db.write", "map",
             "change some fields of a record; the record as it now is"),
    HostCall(Op.DB_DELETE, "db::delete", ("collection", "key"), "db.delete", "bool",
             "delete a record; true if there was one"),
    HostCall(Op.DB_QUERY, "db::query", ("collection", "map"), "db.read", "map",
             "#{items, next}: records matching #{where, order_by, limit, after}"),
    HostCall(Op.DB_COUNT, "db::count", ("collection",), "db.read", "int", "how many records"),
    HostCall(Op.DB_COUNT_WHERE, "db::count", ("collection", "map"), "db.read", "int",
             "how many records match a filter"),
)
