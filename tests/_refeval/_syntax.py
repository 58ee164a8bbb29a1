"""The reference evaluator's syntax: its lexer and parser (an AST of tuples).

Reads the subset described in the package docstring and nothing else: source
outside it, or that does not parse, raises :class:`Unsupported` (so a
differential test discards the program rather than compare it). Int literals
are checked against the int64 range (``I64_MIN`` .. ``I64_MAX``) here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


class Unsupported(Exception):
    """The program uses something outside the evaluator's subset, or does not parse."""


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



def parse(src: str) -> tuple[Any, ...]:
    """Parse ``src`` into the evaluator's tuple AST (raises Unsupported)."""
    return _Parser(src).script()
