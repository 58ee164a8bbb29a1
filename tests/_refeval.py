"""A small reference evaluator for a subset of the peerbox language (tests only).

Written independently of the compiler, straight from the language rules (Rhai's
semantics plus peerbox's ABI decisions), so the differential test can compare
the compiled program against it.

Subset: int/float/bool/string literals, ``()``, unary ``- + !``, binary
``+ - * / % ** == != < <= > >= & | ^ << >> in && ||``, parentheses, ``let``,
``const``, ``=``, ``+= -= *= /= %=``, blocks, ``if / else if / else`` (also as
an expression), ``while``, ``//`` and ``/* */`` comments, and array literals
(so a program can return several values; arrays support no operators here).

``evaluate(src)`` returns the script's value (None for ``()``), or
``("error", kind)`` for a runtime error. It raises :class:`Unsupported` for
source outside the subset (or that does not parse), and :class:`Unspecified`
when the program reaches a behaviour the spec leaves open (float division by
zero, ordering of bools, ...), so a differential test can discard it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["evaluate", "display", "Unsupported", "Unspecified", "RefError", "I64_MIN", "I64_MAX"]

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


class Unsupported(Exception):
    """The program uses something outside the evaluator's subset, or does not parse."""


class Unspecified(Exception):
    """The program reaches behaviour the spec does not fix; ignore it."""


class RefError(Exception):
    """A runtime error of the script, with its kind."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


# -- lexer --------------------------------------------------------------------

_PUNCT = [
    "<<=", ">>=", "**", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "+=", "-=", "*=", "/=", "%=",
    "+", "-", "*", "/", "%", "<", ">", "!", "&", "|", "^", "=", "(", ")", "{", "}", ";",
    "[", "]", ",",
]
_KEYWORDS = {"let", "const", "if", "else", "while", "true", "false", "in"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUM = re.compile(r"[0-9][0-9_]*(\.[0-9][0-9_]*)?")


@dataclass(frozen=True)
class Tok:
    kind: str  # "int", "float", "str", "ident", "kw", "op", "eof"
    text: str
    value: Any = None


def _lex(src: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in " \t\r\n":
            i += 1
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if src.startswith("/*", i):
            depth, i = 1, i + 2
            while depth:
                if i >= n:
                    raise Unsupported("unterminated comment")
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            continue
        if c.isdigit():
            m = _NUM.match(src, i)
            assert m
            text = m.group(0)
            i = m.end()
            clean = text.replace("_", "")
            if m.group(1):
                toks.append(Tok("float", text, float(clean)))
            else:
                v = int(clean)
                if v > I64_MAX:
                    raise Unsupported("integer literal too large")
                toks.append(Tok("int", text, v))
            continue
        if c == '"':
            j, out = i + 1, []
            while True:
                if j >= n or src[j] == "\n":
                    raise Unsupported("unterminated string")
                ch = src[j]
                if ch == '"':
                    break
                if ch == "\\":
                    e = src[j + 1 : j + 2]
                    if e == "n":
                        out.append("\n")
                    elif e == "t":
                        out.append("\t")
                    elif e == "r":
                        out.append("\r")
                    elif e in ('"', "\\"):
                        out.append(e)
                    elif e == "u" and src[j + 2 : j + 3] == "{":
                        k = src.index("}", j)
                        out.append(chr(int(src[j + 3 : k], 16)))
                        j = k + 1
                        continue
                    else:
                        raise Unsupported("bad escape")
                    j += 2
                    continue
                out.append(ch)
                j += 1
            toks.append(Tok("str", src[i : j + 1], "".join(out)))
            i = j + 1
            continue
        m = _IDENT.match(src, i)
        if m:
            w = m.group(0)
            toks.append(Tok("kw" if w in _KEYWORDS else "ident", w))
            i = m.end()
            continue
        for p in _PUNCT:
            if src.startswith(p, i):
                toks.append(Tok("op", p))
                i += len(p)
                break
        else:
            raise Unsupported(f"unexpected character {c!r}")
    toks.append(Tok("eof", ""))
    return toks


# -- parser (AST as tuples) ---------------------------------------------------

# Rhai's precedence table: higher binds tighter.
_BINARY = {
    "||": 30, "|": 30, "^": 30,
    "&&": 60, "&": 60,
    "==": 90, "!=": 90,
    "in": 110,
    "<": 130, "<=": 130, ">": 130, ">=": 130,
    "+": 150, "-": 150,
    "*": 180, "/": 180, "%": 180,
    "**": 190,
    "<<": 210, ">>": 210,
}
_RIGHT_ASSOC = {"**"}
_ASSIGN_OPS = {"=", "+=", "-=", "*=", "/=", "%="}


class _Parser:
    def __init__(self, src: str) -> None:
        self.toks = _lex(src)
        self.pos = 0

    def peek(self) -> Tok:
        return self.toks[self.pos]

    def next(self) -> Tok:
        t = self.toks[self.pos]
        self.pos += 1
        return t

    def at(self, text: str) -> bool:
        t = self.peek()
        return t.kind in ("op", "kw") and t.text == text

    def expect(self, text: str) -> None:
        if not self.at(text):
            raise Unsupported(f"expected {text!r}, found {self.peek().text!r}")
        self.pos += 1

    def script(self) -> tuple[Any, ...]:
        stmts, tail = self.block_body(end="eof")
        return ("block", tuple(stmts), tail)

    def block(self) -> tuple[Any, ...]:
        self.expect("{")
        stmts, tail = self.block_body(end="}")
        self.expect("}")
        return ("block", tuple(stmts), tail)

    def block_body(self, end: str) -> tuple[list[Any], Any]:
        stmts: list[Any] = []
        tail = None
        while True:
            t = self.peek()
            if (end == "eof" and t.kind == "eof") or (end == "}" and self.at("}")):
                return stmts, tail
            if tail is not None:
                # the previous expression had no ';' and was not a block-like one
                raise Unsupported("missing ';'")
            if self.at(";"):
                self.next()
                continue
            if self.at("let") or self.at("const"):
                is_const = self.next().text == "const"
                name = self.next()
                if name.kind != "ident":
                    raise Unsupported("expected a name")
                value = None
                if self.at("="):
                    self.next()
                    value = self.expr()
                if not self._at_end(end):
                    self.expect(";")
                stmts.append(("let", name.text, value, is_const))
                continue
            if self.at("while"):
                self.next()
                cond = self.expr()
                body = self.block()
                stmts.append(("while", cond, body))
                if self.at(";"):
                    self.next()
                continue
            # assignment?
            if self.peek().kind == "ident" and self.toks[self.pos + 1].kind == "op" and \
                    self.toks[self.pos + 1].text in _ASSIGN_OPS:
                target = self.next().text
                op = self.next().text
                value = self.expr()
                stmts.append(("assign", target, op, value))
                if not self._at_end(end):
                    self.expect(";")
                continue
            e = self.expr()
            if self.at(";"):
                self.next()
                stmts.append(("expr", e))
            elif self._at_end(end):
                tail = e
            elif e[0] == "if":
                stmts.append(("expr", e))  # block-like: no ';' needed
            else:
                raise Unsupported("missing ';'")

    def _at_end(self, end: str) -> bool:
        t = self.peek()
        return (end == "eof" and t.kind == "eof") or (end == "}" and self.at("}"))

    def expr(self, min_prec: int = 0) -> tuple[Any, ...]:
        """Precedence climbing over Rhai's table (``**`` is right-associative)."""
        left = self.unary()
        while True:
            t = self.peek()
            op = t.text if t.kind in ("op", "kw") else ""
            prec = _BINARY.get(op)
            if prec is None or prec < min_prec:
                return left
            self.next()
            right = self.expr(prec if op in _RIGHT_ASSOC else prec + 1)
            left = ("logic" if op in ("&&", "||") else "bin", op, left, right)

    def unary(self) -> tuple[Any, ...]:
        if self.at("-") or self.at("+") or self.at("!"):
            op = self.next().text
            return ("unary", op, self.unary())
        return self.primary()

    def primary(self) -> tuple[Any, ...]:
        t = self.next()
        if t.kind in ("int", "float", "str"):
            return ("lit", t.value)
        if t.kind == "kw" and t.text in ("true", "false"):
            return ("lit", t.text == "true")
        if t.kind == "ident":
            return ("var", t.text)
        if t.kind == "op" and t.text == "(":
            if self.at(")"):
                self.next()
                return ("lit", None)
            e = self.expr()
            self.expect(")")
            return e
        if t.kind == "op" and t.text == "[":
            items: list[Any] = []
            while not self.at("]"):
                items.append(self.expr())
                if not self.at("]"):
                    self.expect(",")
            self.next()
            return ("array", tuple(items))
        if t.kind == "op" and t.text == "{":
            self.pos -= 1
            return ("blockexpr", self.block())
        if t.kind == "kw" and t.text == "if":
            return self.if_rest()
        raise Unsupported(f"unexpected token {t.text!r}")

    def if_rest(self) -> tuple[Any, ...]:
        cond = self.expr()
        then = self.block()
        els = None
        if self.at("else"):
            self.next()
            if self.at("if"):
                self.next()
                els = self.if_rest()
            else:
                els = self.block()
        return ("if", cond, then, els)


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


def parse(src: str) -> tuple[Any, ...]:
    """Parse ``src`` into the evaluator's tuple AST (raises Unsupported)."""
    return _Parser(src).script()


def evaluate(src: str, *, max_steps: int = 100_000) -> Any:
    """Evaluate ``src``; its value, or ``("error", kind)`` for a runtime error."""
    tree = parse(src)
    try:
        return _Interp(max_steps).block(tree, new_scope=False)
    except RefError as e:
        return ("error", e.kind)
