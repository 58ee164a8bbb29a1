"""A C-speed first look at Python params: exact builtin types, a tree, bounded depth.

Params given as Python objects (``prog.run(params={...})``) must be checked
and encoded before the guest gets them. A walk in Python (``_values._crosses``)
costs more than cbor2's encoding itself; cbor2's native encoder cannot be
given the value unchecked, because it recurses on the C stack (a list nested
50,000 deep crashes the process) and encodes subclasses and buffers
(``memoryview``, ``array.array``, a ``bytes`` subclass) as if they were plain.

:func:`plain_tree` gets the two guarantees cbor2 needs from the C pickler of
the standard library, writing to nowhere: in *fast* mode it keeps no memo, so
it walks every path of the value (a shared list is walked each time, as cbor2
will), refuses a cycle, and recurses through ``Py_EnterRecursiveCall``, so a
value nested deeper than the interpreter's recursion limit raises
``RecursionError`` instead of crashing; every object whose type is not
exactly one the pickler writes itself (``None``, ``bool``, ``int``, ``float``,
``str``, ``bytes``, ``bytearray``, ``list``, ``tuple``, ``dict``, ``set``,
``frozenset``, ``PickleBuffer``) reaches :meth:`_ExactTypes.reducer_override`,
which refuses it. What it lets through that a script cannot take (integers out
of the i64 range, non-text keys, sets, lone surrogates, nesting between 128
and the recursion limit) is refused by cbor2's encoder or by the guest
runtime's decoder, which checks every input document (``wasm_guests/rt/cbor.c``);
either way :func:`peerbox.run._values.check_value` then names the bad value with
the same message as before. A False answer is not a verdict either: the
checks in Python decide.
"""

from __future__ import annotations

import pickle
import sys
from typing import NoReturn

__all__ = ["plain_tree", "SAFE_RECURSION_LIMIT"]

#: Above this recursion limit the C pickler (and cbor2 after it) could exhaust the C stack
#: before ``RecursionError``: :func:`plain_tree` then answers False.
SAFE_RECURSION_LIMIT = 4000


class _Refused(Exception):
    """An object of a type the pickler does not write itself."""


class _Discard:
    """A file that keeps nothing (the pickle's bytes are not wanted, only the walk)."""

    __slots__ = ()

    def write(self, data: bytes) -> int:
        return len(data)


class _ExactTypes(pickle.Pickler):
    """The C pickler, refusing every object it would reduce (see the module docstring)."""

    def reducer_override(self, obj: object) -> NoReturn:
        raise _Refused


def plain_tree(value: object) -> bool:
    """Whether ``value`` is a tree (no cycle) of objects of exactly the builtin types listed in the
    module docstring, nested less deep than the recursion limit allows. Never raises for any value."""
    if sys.getrecursionlimit() > SAFE_RECURSION_LIMIT:
        return False
    pickler = _ExactTypes(_Discard(), protocol=pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    try:
        pickler.dump(value)
    except Exception:  # noqa: BLE001 - _Refused, RecursionError, a cycle (ValueError)...: not plain
        return False
    return True
