"""The builtin functions every script can call, and the rt exports behind them.

A call ``name(a, b)`` or a method call ``a.name(b)`` that no script function
matches resolves here by ``(name, arity)``; the receiver of a method call is
the first argument. Each builtin is implemented in rt as the export
``f_<name>_<arity>`` taking ``arity`` values and returning a value or EXC.
``mutates`` builtins change their receiver (an array, map or blob) in
place: the compiler makes the receiver private along its place's path
first (copy-on-write). ``writeback`` builtins return the receiver's new value, which the compiler
stores back into the receiver's place (strings are immutable slices, so
Rhai's in-place string methods work this way); the call's own value is ``()``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Builtin", "BUILTINS", "lookup", "names"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Builtin:
    name: str
    arity: int
    doc: str
    writeback: bool = False
    mutates: bool = False

    @property
    def export(self) -> str:
        return f"f_{self.name}_{self.arity}"


#: Builtins that change their receiver in place.
_MUTATING = frozenset({"clear", "push", "pop", "shift", "insert", "remove", "reverse", "sort"})


def _b(name: str, arity: int, doc: str, *, writeback: bool = False) -> Builtin:
    return Builtin(name=name, arity=arity, doc=doc, writeback=writeback, mutates=name in _MUTATING)


BUILTINS: tuple[Builtin, ...] = (
    # any value
    _b("type_of", 1, 'type name: "()", "bool", "i64", "f64", "string", "array", "map", "Fn", "blob"'),
    _b("to_string", 1, "display form (strings unquoted)"),
    _b("to_debug", 1, "debug form (strings quoted)"),
    _b("print", 1, "append the display form to the run's log; ()"),
    _b("debug", 1, "append the debug form to the run's log; ()"),
    _b("is_empty", 1, "string, array, map or blob has no elements"),
    _b("len", 1, "chars of a string, elements of an array/blob, entries of a map"),
    _b("contains", 2, "substring / element (==) / key"),
    _b("index_of", 2, "char index of a substring, or element index; -1 if absent"),
    _b("get", 2, "array element (negative from the end) or map value; () if absent"),
    _b("clear", 1, "empty an array, map or blob in place"),
    # numbers
    _b("to_int", 1, "int unchanged; float truncated toward zero (overflow is an error)"),
    _b("to_float", 1, "int or float as float"),
    _b("parse_int", 1, "string to int; invalid_argument if it is not one"),
    _b("parse_float", 1, "string to float; invalid_argument if it is not one"),
    _b("abs", 1, "absolute value (int overflow on i64::MIN is an error)"),
    _b("sign", 1, "-1, 0 or 1"),
    _b("min", 2, "smaller of two numbers"),
    _b("max", 2, "larger of two numbers"),
    _b("floor", 1, "float floor"),
    _b("ceiling", 1, "float ceiling"),
    _b("round", 1, "float rounded half away from zero"),
    _b("sqrt", 1, "float square root"),
    # strings
    _b("sub_string", 2, "chars from start (negative from the end) to the end"),
    _b("sub_string", 3, "len chars from start"),
    _b("starts_with", 2, "string prefix test"),
    _b("ends_with", 2, "string suffix test"),
    _b("to_upper", 1, "new string, ASCII letters upper-cased"),
    _b("to_lower", 1, "new string, ASCII letters lower-cased"),
    _b("trim", 1, "strip surrounding whitespace in place", writeback=True),
    _b("replace", 3, "replace every occurrence of a substring in place", writeback=True),
    _b("split", 1, "split on whitespace runs into an array of strings"),
    _b("split", 2, "split on a delimiter string into an array of strings"),
    _b("chars", 1, "array of one-char strings"),
    # arrays
    _b("push", 2, "append an element; ()"),
    _b("pop", 1, "remove and return the last element; () if empty"),
    _b("shift", 1, "remove and return the first element; () if empty"),
    _b("insert", 3, "insert at index (negative from the end, past the end appends); ()"),
    _b("remove", 2, "array: remove at index and return it (() if out of range); "
       "map: remove key, return value or ()"),
    _b("reverse", 1, "reverse in place; ()"),
    _b("sort", 1, "stable sort in place: all ints/floats, or all strings; type_mismatch otherwise"),
    _b("sort", 2, "stable sort in place with a comparator closure |a, b| returning an int"),
    _b("map", 2, "new array of f(x) (or f(x, i) for a 2-parameter closure)"),
    _b("filter", 2, "new array of the x where f(x) (or f(x, i)) is true"),
    _b("reduce", 2, "fold with f(acc, x) starting from ()"),
    _b("reduce", 3, "fold with f(acc, x) starting from the third argument"),
    _b("some", 2, "true if f(x) is true for some element"),
    _b("all", 2, "true if f(x) is true for every element"),
    # maps
    _b("keys", 1, "array of a map's keys in sorted order"),
    _b("values", 1, "array of a map's values in key order"),
)

_BY_KEY: dict[tuple[str, int], Builtin] = {(b.name, b.arity): b for b in BUILTINS}


def lookup(name: str, arity: int) -> Builtin | None:
    """The builtin ``name`` taking ``arity`` arguments, or None."""
    return _BY_KEY.get((name, arity))


def names() -> frozenset[str]:
    """Every builtin name, whatever its arity."""
    return frozenset(b.name for b in BUILTINS)
