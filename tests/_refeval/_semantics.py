"""The reference evaluator's semantics: values, operators and the interpreter.

Rhai's semantics plus peerbox's ABI decisions, written from the language rules
(not from the compiler): checked int64 arithmetic, truncating division, float
display like Python's repr, bool-only conditions. A runtime error of the script
is a :class:`RefError` with its kind; behaviour the spec leaves open raises
:class:`Unspecified`; anything outside the subset raises
:class:`~._syntax.Unsupported`.
"""

from __future__ import annotations

import math
from typing import Any

from ._syntax import I64_MAX, I64_MIN, Unsupported, parse


class Unspecified(Exception):
    """The program reaches behaviour the spec does not fix; ignore it."""


class RefError(Exception):
    """A runtime error of the script, with its kind."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


# -- semantics ------------------------------------------------------------------

def _type_name(v: Any) -> str:
    if v is None:
        return "()"
    if type(v) is bool:
        return "bool"
    if type(v) is int:
        return "i64"
    if type(v) is float:
        return "f64"
    if type(v) is str:
        return "string"
    if type(v) is list:
        raise Unsupported("arrays in operators")
    raise Unsupported(f"value {v!r}")


def fmt_float(x: float) -> str:
    """The display form of a float: Python repr, with ``inf``, ``-inf``, ``NaN``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)


def display(v: Any) -> str:
    """The display form used by ``+`` with a string and by ``print``."""
    if v is None:
        return ""
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) is int:
        return str(v)
    if type(v) is float:
        return fmt_float(v)
    if type(v) is str:
        return v
    raise Unsupported(f"display of {v!r}")


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
        eq = _equal(a, b)
        return eq if op == "==" else not eq
    if op in ("<", "<=", ">", ">="):
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
        raise Unspecified("'in' outside strings")
    raise Unsupported(op)


def _equal(a: Any, b: Any) -> bool:
    ta, tb = type(a), type(b)
    if _is_num(a) and _is_num(b):
        if ta is int and tb is int:
            return bool(a == b)
        return float(a) == float(b)
    if ta is not tb:
        return False
    return bool(a == b)


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


class _Interp:
    def __init__(self, max_steps: int) -> None:
        self.scopes: list[dict[str, list[Any]]] = [{}]  # name -> [value, is_const]
        self.steps = 0
        self.max_steps = max_steps

    def lookup(self, name: str) -> list[Any]:
        for s in reversed(self.scopes):
            if name in s:
                cell: list[Any] = s[name]
                return cell
        raise Unsupported(f"undefined variable {name}")

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise Unsupported("too many steps")

    def block(self, node: tuple[Any, ...], new_scope: bool = True) -> Any:
        _, stmts, tail = node
        if new_scope:
            self.scopes.append({})
        try:
            for s in stmts:
                self.stmt(s)
            return self.expr(tail) if tail is not None else None
        finally:
            if new_scope:
                self.scopes.pop()

    def stmt(self, s: tuple[Any, ...]) -> None:
        self.tick()
        k = s[0]
        if k == "let":
            _, name, value, is_const = s
            v = self.expr(value) if value is not None else None
            self.scopes[-1][name] = [v, is_const]
        elif k == "assign":
            _, name, op, value = s
            cell = self.lookup(name)
            if cell[1]:
                raise Unsupported("assignment to a constant (a compile error)")
            v = self.expr(value)
            cell[0] = v if op == "=" else binary(op[:-1], cell[0], v)
        elif k == "while":
            _, cond, body = s
            while True:
                c = self.expr(cond)
                if type(c) is not bool:
                    raise RefError("type_mismatch", "expected a bool")
                if not c:
                    break
                self.block(body)
        elif k == "expr":
            self.expr(s[1])
        else:
            raise Unsupported(k)

    def expr(self, e: tuple[Any, ...]) -> Any:
        k = e[0]
        if k == "lit":
            return e[1]
        if k == "var":
            return self.lookup(e[1])[0]
        if k == "unary":
            return unary(e[1], self.expr(e[2]))
        if k == "bin":
            a = self.expr(e[2])
            b = self.expr(e[3])
            return binary(e[1], a, b)
        if k == "logic":
            a = self.expr(e[2])
            if type(a) is not bool:
                raise RefError("type_mismatch", "expected a bool")
            if (e[1] == "&&" and not a) or (e[1] == "||" and a):
                return a
            b = self.expr(e[3])
            if type(b) is not bool:
                raise RefError("type_mismatch", "expected a bool")
            return b
        if k == "if":
            self.tick()
            c = self.expr(e[1])
            if type(c) is not bool:
                raise RefError("type_mismatch", "expected a bool")
            if c:
                return self.block(e[2])
            if e[3] is None:
                return None
            return self.expr(e[3]) if e[3][0] == "if" else self.block(e[3])
        if k == "array":
            return [self.expr(x) for x in e[1]]
        if k == "blockexpr":
            return self.block(e[1])
        if k == "block":
            return self.block(e)
        raise Unsupported(k)



def evaluate(src: str, *, max_steps: int = 100_000) -> Any:
    """Evaluate ``src``; its value, or ``("error", kind)`` for a runtime error."""
    tree = parse(src)
    try:
        return _Interp(max_steps).block(tree, new_scope=False)
    except RefError as e:
        return ("error", e.kind)
