"""The reference evaluator's operators: unary and binary, on scalars and containers.

Rhai's semantics plus peerbox's ABI decisions, written from the language rules
(not from the compiler): checked int64 arithmetic, truncating division, float
display like Python's repr, bool-only conditions; ``+`` joins arrays and
merges maps (the right map's keys win), ``==`` compares containers element by
element, ``in`` looks in strings, arrays (by ``==``) and map keys; ordering
containers is left open. The values and builtins are in :mod:`._collections`,
the interpreter in :mod:`._interp`. A runtime error of the script
is a :class:`RefError` with its kind; behaviour the spec leaves open raises
:class:`Unspecified`; anything outside the subset raises
:class:`~._lexer.Unsupported`.
"""

from __future__ import annotations

import math
from typing import Any

from ._collections import RefError, Unspecified, contains, display, equal, is_container, type_name
from ._lexer import I64_MAX, I64_MIN, Unsupported


def _type_name(v: Any) -> str:
    return type_name(v)


def _checked(v: int) -> int:
    if v < I64_MIN or v > I64_MAX:
        raise RefError("integer_overflow")
    return v


def _is_num(v: Any) -> bool:
    return type(v) in (int, float)


def _mismatch(op: str, a: Any, b: Any) -> RefError:
    return RefError("type_mismatch", f"{op} on {_type_name(a)} and {_type_name(b)}")


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def binary(op: str, a: Any, b: Any) -> Any:
    """Apply a non-short-circuit binary operator (raises RefError/Unspecified)."""
    ta, tb = type(a), type(b)
    if op == "+":
        if ta is str or tb is str:
            return display(a) + display(b)
        if ta is list and tb is list:
            return a + b
        if ta is dict and tb is dict:
            return {**a, **b}
        if ta is int and tb is int:
            return _checked(a + b)
        if _is_num(a) and _is_num(b):
            return float(a) + float(b)
        raise _mismatch(op, a, b)
    if op in ("-", "*"):
        if ta is int and tb is int:
            return _checked(a - b if op == "-" else a * b)
        if _is_num(a) and _is_num(b):
            return float(a) - float(b) if op == "-" else float(a) * float(b)
        raise _mismatch(op, a, b)
    if op in ("/", "%"):
        if ta is int and tb is int:
            if b == 0:
                raise RefError("division_by_zero")
            if op == "/":
                return _checked(_trunc_div(a, b))
            if a == I64_MIN and b == -1:
                raise RefError("integer_overflow")  # Rust's checked_rem, as Rhai
            return a - b * _trunc_div(a, b)  # sign of the dividend
        if _is_num(a) and _is_num(b):
            if float(b) == 0.0:
                raise Unspecified("float division by zero")
            if op == "/":
                return float(a) / float(b)
            if math.isinf(float(a)):
                raise Unspecified("fmod of inf")
            return math.fmod(float(a), float(b))
        raise _mismatch(op, a, b)
    if op == "**":
        if ta is int and tb is int:
            if b < 0:
                raise Unspecified("int ** negative")
            if abs(a) > 1 and b > 64:
                raise RefError("integer_overflow")
            return _checked(a**b)
        if _is_num(a) and _is_num(b):
            try:
                r = math.pow(float(a), float(b))
            except (ValueError, OverflowError):
                raise Unspecified("float pow domain/overflow") from None
            return r
        raise _mismatch(op, a, b)
    if op in ("==", "!="):
        eq = equal(a, b)
        return eq if op == "==" else not eq
    if op in ("<", "<=", ">", ">="):
        if is_container(a) or is_container(b):
            raise Unspecified("ordering of containers")
        if _is_num(a) and _is_num(b):
            if ta is int and tb is int:
                x, y = a, b
            else:
                x, y = float(a), float(b)
        elif ta is str and tb is str:
            x, y = a.encode(), b.encode()
        elif ta is bool and tb is bool:
            raise Unspecified("ordering of bools")
        elif a is None and b is None:
            raise Unspecified("ordering of ()")
        else:
            return False  # incomparable types: false, not an error
        return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
    if op in ("&", "|", "^"):
        if (ta is int and tb is int) or (ta is bool and tb is bool):
            r = {"&": a & b, "|": a | b, "^": a ^ b}[op]
            return bool(r) if ta is bool else r
        raise _mismatch(op, a, b)
    if op in ("<<", ">>"):
        if ta is int and tb is int:
            if b < 0 or b >= 64:
                raise RefError("invalid_argument")
            if op == ">>":
                return a >> b
            r = (a << b) & (2**64 - 1)
            return r - 2**64 if r > I64_MAX else r
        raise _mismatch(op, a, b)
    if op == "in":
        if ta is str and tb is str:
            return a in b
        if tb in (list, dict):
            return contains(b, a)
        raise Unspecified("'in' outside strings, arrays and maps")
    raise Unsupported(op)


def unary(op: str, v: Any) -> Any:
    if op == "-":
        if type(v) is int:
            return _checked(-v)
        if type(v) is float:
            return -v
        raise RefError("type_mismatch", f"-{_type_name(v)}")
    if op == "+":
        if _is_num(v):
            return v
        raise Unspecified("unary + on a non-number")
    if op == "!":
        if type(v) is bool:
            return not v
        raise RefError("type_mismatch", f"!{_type_name(v)}")
    raise Unsupported(op)
