"""Containers in the reference evaluator: arrays, maps, closures, and the builtins on them.

Values: ``None`` (unit), bool, int, float, str, ``list`` (array), ``dict``
(map, str keys), :class:`Closure`. Arrays and maps have value semantics, which
the evaluator gets by copying: :func:`copy` makes a deep copy, and the
interpreter calls it wherever a value is stored (a variable, an element, a
property, a parameter). So a stored container is never shared and may be
changed in place; changing a copy never changes the original. A closure is
shared, never copied: its captured variables are cells shared with the scope
that created it (as in Rhai).

Rhai's and peerbox's rules encoded here: map keys are strings, shown and
listed (``keys``, ``values``) in byte order of the key; the debug form of a
container (``"" + [1, "a"]`` gives ``[1, "a"]``) quotes strings and shows
``()``; ``insert``/``remove``/indexing count a negative index from the end;
``pop``/``remove`` out of range give ``()``; a missing map key reads as
``()``; ``sub_string`` clips like Rhai's (chars, not bytes); ``to_upper``
changes ASCII letters only (peerbox's decision). Values nested
deeper than peerbox's limit (128) are :class:`Unspecified` here; so is
``split("")`` (Rust would give empty ends, peerbox gives the chars).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._lexer import Unsupported


class Unspecified(Exception):
    """The program reaches behaviour the spec does not fix; ignore it."""


class RefError(Exception):
    """A runtime error of the script, with its kind."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass(eq=False)
class Closure:
    """``|params| body`` with its captured cells (``name -> [value, is_const]``), shared."""

    params: tuple[str, ...]
    body: tuple[Any, ...]
    cells: dict[str, list[Any]]


#: Values bigger than this (elements + chars, deep) are out of the evaluator's scope.
MAX_SIZE = 20_000
#: Deeper nesting than this is left open (peerbox stops at 128 levels).
MAX_DEPTH = 100


def type_name(v: Any) -> str:
    if v is None:
        return "()"
    t = type(v)
    names = {bool: "bool", int: "i64", float: "f64", str: "string", list: "array", dict: "map"}
    if t in names:
        return names[t]
    if t is Closure:
        return "Fn"
    raise Unsupported(f"value {v!r}")


def is_container(v: Any) -> bool:
    return type(v) in (list, dict, Closure)


def copy(v: Any) -> Any:
    """The value to store: a deep copy of an array or map; anything else as is."""
    t = type(v)
    if t is list:
        return [copy(x) for x in v]
    if t is dict:
        return {k: copy(x) for k, x in v.items()}
    return v


def check_size(v: Any) -> Any:
    """``v``, unless it is too large or deep for the evaluator (Unsupported/Unspecified)."""
    budget = [MAX_SIZE]

    def walk(x: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise Unspecified("nesting near peerbox's depth limit")
        t = type(x)
        if t is str:
            budget[0] -= len(x)
        elif t is list:
            budget[0] -= len(x)
            for y in x:
                walk(y, depth + 1)
        elif t is dict:
            budget[0] -= len(x)
            for y in x.values():
                walk(y, depth + 1)
        if budget[0] < 0:
            raise Unsupported("value too large for the reference evaluator")

    walk(v, 0)
    return v


def fmt_float(x: float) -> str:
    """The display form of a float: Python repr, with ``inf``, ``-inf``, ``NaN``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quote(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            raise Unspecified("debug form of a non-printable char")
    return '"' + "".join(out) + '"'


def debug(v: Any) -> str:
    """The form a value takes inside a container's display: strings quoted, ``()`` shown."""
    if v is None:
        return "()"
    t = type(v)
    if t is str:
        return _quote(v)
    if t is list:
        return "[" + ", ".join(debug(x) for x in v) + "]"
    if t is dict:
        return "#{" + ", ".join(f"{_quote(k)}: {debug(v[k])}" for k in sorted(v)) + "}"
    return display(v)


def display(v: Any) -> str:
    """The display form used by ``+`` with a string, by templates and by ``print``."""
    if v is None:
        return ""
    t = type(v)
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is float:
        return fmt_float(v)
    if t is str:
        return str(v)
    if t in (list, dict):
        return debug(v)
    raise Unspecified(f"display of {type_name(v)}")


def equal(a: Any, b: Any) -> bool:
    """``==``: numbers by value across int/float, containers element by element."""
    ta, tb = type(a), type(b)
    if Closure in (ta, tb):
        raise Unspecified("== on closures")
    if ta in (int, float) and tb in (int, float):
        if ta is int and tb is int:
            return bool(a == b)
        return float(a) == float(b)
    if ta is not tb:
        return False
    if ta is list:
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if ta is dict:
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return bool(a == b)


def contains(container: Any, item: Any) -> bool:
    """``item in container`` for arrays and maps."""
    if type(container) is list:
        return any(equal(item, x) for x in container)
    if type(item) is not str:
        raise RefError("type_mismatch", f"cannot look for {type_name(item)} in map")
    return item in container


# -- indexing and properties ---------------------------------------------------------------

def _array_pos(a: list[Any], i: Any) -> int:
    if type(i) is not int:
        raise RefError("type_mismatch", f"array index must be i64, not {type_name(i)}")
    pos = i + len(a) if i < 0 else i
    if not 0 <= pos < len(a):
        raise RefError("index_out_of_range", f"index {i} out of range")
    return pos


def index_get(obj: Any, i: Any) -> Any:
    t = type(obj)
    if t is list:
        return obj[_array_pos(obj, i)]
    if t is dict:
        if type(i) is not str:
            raise RefError("type_mismatch", f"map key must be a string, not {type_name(i)}")
        return obj.get(i)
    if t is str:
        raise Unsupported("string indexing (chars)")
    raise RefError("type_mismatch", f"cannot index into {type_name(obj)}")


def index_set(obj: Any, i: Any, v: Any) -> None:
    t = type(obj)
    if t is list:
        obj[_array_pos(obj, i)] = v
    elif t is dict:
        if type(i) is not str:
            raise RefError("type_mismatch", f"map key must be a string, not {type_name(i)}")
        obj[i] = v
    elif t is str:
        raise Unsupported("string index assignment")
    else:
        raise RefError("type_mismatch", f"cannot index into {type_name(obj)}")


def prop_get(obj: Any, name: str) -> Any:
    if type(obj) is dict:
        return obj.get(name)
    raise RefError("not_found", f"property {name} not found on {type_name(obj)}")


def prop_set(obj: Any, name: str, v: Any) -> None:
    if type(obj) is not dict:
        raise RefError("not_found", f"property {name} not found on {type_name(obj)}")
    obj[name] = v


# -- builtins ----------------------------------------------------------------------------

def _not_found(name: str, args: tuple[Any, ...]) -> RefError:
    return RefError("not_found", f"function not found: {name}({', '.join(type_name(a) for a in args)})")


def sub_string(s: str, start: int, length: int) -> str:
    """Rhai's ``sub_string``: chars; a negative start counts from the end; clipped."""
    n = len(s)
    if n == 0 or length <= 0:
        return ""
    if start < 0:
        offset = 0 if -start > n else n - (-start)
    elif start >= n:
        return ""
    else:
        offset = start
    return s[offset : offset + length]


#: Builtins that change their first argument (called as a method on a place, it is written back).
MUTATING = {"push", "pop", "insert", "remove", "replace", "clear"}
#: name -> the argument counts it takes (the receiver included)
ARITY = {
    "len": (1,), "push": (2,), "pop": (1,), "insert": (3,), "remove": (2,), "clear": (1,),
    "keys": (1,), "values": (1,), "contains": (2,), "split": (2,), "replace": (3,),
    "sub_string": (2, 3), "to_upper": (1,),
}


def builtin(name: str, args: tuple[Any, ...]) -> tuple[Any, Any]:
    """Apply builtin ``name``; ``(result, new first argument)`` (the receiver, maybe changed).

    ``args[0]`` may be changed in place (it is a stored, unshared container);
    a string receiver is returned replaced.
    """
    if name not in ARITY or len(args) not in ARITY[name]:
        raise Unsupported(f"builtin {name}/{len(args)}")
    recv, t = args[0], type(args[0])
    rest = args[1:]
    if name == "len" and t in (str, list, dict):
        return len(recv), recv
    if t is list:
        if name == "push":
            recv.append(check_size(copy(rest[0])))
            return None, recv
        if name == "pop":
            return (recv.pop() if recv else None), recv
        if name == "clear":
            recv.clear()
            return None, recv
        if name == "insert" and type(rest[0]) is int:
            i = rest[0]
            pos = max(0, len(recv) + i) if i < 0 else min(i, len(recv))
            recv.insert(pos, check_size(copy(rest[1])))
            return None, recv
        if name == "remove" and type(rest[0]) is int:
            i = rest[0]
            pos = len(recv) + i if i < 0 else i
            return (recv.pop(pos) if 0 <= pos < len(recv) else None), recv
    if t is dict:
        if name == "remove" and type(rest[0]) is str:
            return recv.pop(rest[0], None), recv
        if name == "keys":
            return sorted(recv), recv
        if name == "values":
            return [copy(recv[k]) for k in sorted(recv)], recv
    if t is str and all(type(a) is str for a in rest):
        if name == "contains":
            return rest[0] in recv, recv
        if name == "split":
            if rest[0] == "":
                raise Unspecified("split on an empty separator")
            return recv.split(rest[0]), recv
        if name == "replace":
            new = recv.replace(rest[0], rest[1])
            check_size(new)
            return None, new
        if name == "to_upper":
            # peerbox's decision (wasm_guests/lang/_builtins.py): ASCII letters only
            return "".join(c.upper() if c.isascii() else c for c in recv), recv
    if t is str and name == "sub_string" and all(type(a) is int for a in rest):
        length = rest[1] if len(rest) == 2 else len(recv.encode())
        return sub_string(recv, rest[0], length), recv
    raise _not_found(name, args)
