"""The reference evaluator's syntax: its parser (an AST of tuples).

Reads the subset described in the package docstring and nothing else: source
outside it, or that does not parse, raises :class:`Unsupported` (so a
differential test discards the program rather than compare it). Tokens come
from :mod:`._lexer`.

Expressions: ``("lit", v)``, ``("var", name)``, ``("unary", op, e)``,
``("bin", op, a, b)``, ``("logic", op, a, b)``, ``("if", cond, then, else)``,
``("array", items)``, ``("map", ((key, e), ...))``, ``("tmpl", parts)`` (a
part is a str or an expression), ``("index", obj, idx)``, ``("prop", obj,
name)``, ``("method", obj, name, args)``, ``("call", name, args)``,
``("closure", params, body)``, ``("blockexpr", block)``, ``("range", a, b,
inclusive)`` (only as a ``for`` loop's iterable).

Statements: ``("let", name, value, is_const)``, ``("assign", place, op,
value)`` (a place is a variable, index or property chain), ``("while", cond,
body)``, ``("for", name, iterable, body)``, ``("expr", e)``, ``("break",)``,
``("continue",)``, ``("return", e or None)``, ``("try", body, handler)``
(``try { .. } catch { .. }``, no binding). ``fn`` definitions (top level
only) go to the program's function table, not the statement list.
"""

from __future__ import annotations

from typing import Any

from ._lexer import I64_MAX, I64_MIN, Tok, Unsupported, lex

__all__ = ["I64_MAX", "I64_MIN", "Unsupported", "parse", "parse_program", "Function"]

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
_BLOCK_LIKE = {"if", "blockexpr"}
_BLOCK_STMTS = {"while", "for"}

#: A script function: (parameter names, body block).
Function = tuple[tuple[str, ...], tuple[Any, ...]]


def is_place(e: tuple[Any, ...]) -> bool:
    """A variable, or an index/property chain rooted at one (an assignment target)."""
    while e[0] in ("index", "prop"):
        e = e[1]
    return bool(e[0] == "var")


class _Parser:
    def __init__(self, toks: list[Tok], fns: dict[str, Function], top: bool) -> None:
        self.toks = toks
        self.pos = 0
        self.fns = fns
        self.top = top

    def peek(self, k: int = 0) -> Tok:
        return self.toks[min(self.pos + k, len(self.toks) - 1)]

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

    def ident(self) -> str:
        t = self.next()
        if t.kind != "ident":
            raise Unsupported(f"expected a name, found {t.text!r}")
        return t.text

    def script(self) -> tuple[Any, ...]:
        stmts, tail = self.block_body(end="eof")
        return ("block", tuple(stmts), tail)

    def block_at_brace(self) -> tuple[Any, ...]:
        """A block whose ``{`` was just consumed."""
        self.pos -= 1
        return self.block()

    def block(self) -> tuple[Any, ...]:
        self.expect("{")
        top, self.top = self.top, False
        stmts, tail = self.block_body(end="}")
        self.top = top
        self.expect("}")
        return ("block", tuple(stmts), tail)

    def _at_end(self, end: str) -> bool:
        t = self.peek()
        return (end == "eof" and t.kind == "eof") or (end == "}" and self.at("}"))

    def _end_stmt(self, end: str) -> None:
        if not self._at_end(end):
            self.expect(";")

    def block_body(self, end: str) -> tuple[list[Any], Any]:
        stmts: list[Any] = []
        tail = None
        while not self._at_end(end):
            if tail is not None:
                if tail[0] not in _BLOCK_LIKE:
                    raise Unsupported("missing ';'")
                stmts.append(("expr", tail))  # block-like: no ';' needed
                tail = None
            if self.at(";"):
                self.next()
                continue
            stmt = self.statement(end)
            if stmt is None:
                continue
            if stmt[0] == "tail":
                tail = stmt[1]
            else:
                stmts.append(stmt)
        return stmts, tail

    def statement(self, end: str) -> tuple[Any, ...] | None:
        """One statement; ``("tail", e)`` for an expression without ``;``; None for ``fn``."""
        if self.at("fn"):
            if not self.top:
                raise Unsupported("fn outside the top level")
            self.next()
            name = self.ident()
            params = self.params("(", ")")
            body = self.block()
            if name in self.fns:
                raise Unsupported("fn defined twice")
            self.fns[name] = (params, body)
            return None
        if self.at("let") or self.at("const"):
            is_const = self.next().text == "const"
            name = self.ident()
            value = None
            if self.at("="):
                self.next()
                value = self.expr()
            self._end_stmt(end)
            return ("let", name, value, is_const)
        if self.at("while"):
            self.next()
            cond = self.expr()
            body = self.block()
            return ("while", cond, body)
        if self.at("for"):
            self.next()
            name = self.ident()
            self.expect("in")
            it = self.expr()
            if self.at("..") or self.at("..="):
                inclusive = self.next().text == "..="
                it = ("range", it, self.expr(), inclusive)
            return ("for", name, it, self.block())
        if self.at("try"):
            self.next()
            body = self.block()
            self.expect("catch")
            return ("try", body, self.block())
        if self.at("break") or self.at("continue"):
            word = self.next().text
            self._end_stmt(end)
            return (word,)
        if self.at("return"):
            self.next()
            value = None if self.at(";") or self._at_end(end) else self.expr()
            self._end_stmt(end)
            return ("return", value)
        if self.at("if") or self.at("{"):
            # a block-like statement ends at its `}`: `if c { .. } [1, 2]` is two statements
            e = self.if_rest() if self.next().text == "if" else ("blockexpr", self.block_at_brace())
            if self.at(";"):
                self.next()
                return ("expr", e)
            return ("tail", e)
        e = self.expr()
        t = self.peek()
        if t.kind == "op" and t.text in _ASSIGN_OPS:
            if not is_place(e):
                raise Unsupported("assignment to a non-place")
            op = self.next().text
            value = self.expr()
            self._end_stmt(end)
            return ("assign", e, op, value)
        if self.at(";"):
            self.next()
            return ("expr", e)
        if self._at_end(end) or e[0] in _BLOCK_LIKE:
            return ("tail", e)
        raise Unsupported("missing ';'")

    def params(self, open_: str, close: str) -> tuple[str, ...]:
        self.expect(open_)
        names: list[str] = []
        while not self.at(close):
            names.append(self.ident())
            if not self.at(close):
                self.expect(",")
        self.next()
        if len(set(names)) != len(names):
            raise Unsupported("duplicate parameter")
        return tuple(names)

    def args(self) -> tuple[Any, ...]:
        self.expect("(")
        items: list[Any] = []
        while not self.at(")"):
            items.append(self.expr())
            if not self.at(")"):
                self.expect(",")
        self.next()
        return tuple(items)

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
        return self.postfix(self.primary())

    def postfix(self, e: tuple[Any, ...]) -> tuple[Any, ...]:
        while True:
            if self.at("["):
                self.next()
                idx = self.expr()
                self.expect("]")
                e = ("index", e, idx)
            elif self.at("."):
                self.next()
                name = self.ident()
                e = ("method", e, name, self.args()) if self.at("(") else ("prop", e, name)
            else:
                return e

    def primary(self) -> tuple[Any, ...]:
        t = self.next()
        if t.kind in ("int", "float", "str"):
            return ("lit", t.value)
        if t.kind == "tmpl":
            parts: list[Any] = []
            for kind, text in t.value:
                parts.append(text if kind == "s" else parse_expr(text))
            return ("tmpl", tuple(parts))
        if t.kind == "kw" and t.text in ("true", "false"):
            return ("lit", t.text == "true")
        if t.kind == "ident":
            if self.at("("):
                return ("call", t.text, self.args())
            return ("var", t.text)
        if t.kind != "op" and not (t.kind == "kw" and t.text == "if"):
            raise Unsupported(f"unexpected token {t.text!r}")
        if t.text == "(":
            if self.at(")"):
                self.next()
                return ("lit", None)
            e = self.expr()
            self.expect(")")
            return e
        if t.text == "[":
            items: list[Any] = []
            while not self.at("]"):
                items.append(self.expr())
                if not self.at("]"):
                    self.expect(",")
            self.next()
            return ("array", tuple(items))
        if t.text == "#{":
            entries: list[Any] = []
            while not self.at("}"):
                k = self.next()
                if k.kind not in ("ident", "str"):
                    raise Unsupported("map key")
                self.expect(":")
                entries.append((k.text if k.kind == "ident" else k.value, self.expr()))
                if not self.at("}"):
                    self.expect(",")
            self.next()
            if len({k for k, _ in entries}) != len(entries):
                raise Unsupported("duplicate map key")
            return ("map", tuple(entries))
        if t.text in ("|", "||"):
            if t.text == "|":
                self.pos -= 1
                names = self.params("|", "|")
            else:
                names = ()
            top, self.top = self.top, False
            body = self.expr()
            self.top = top
            return ("closure", names, body)
        if t.text == "{":
            self.pos -= 1
            return ("blockexpr", self.block())
        if t.text == "if":
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


def parse_expr(src: str) -> tuple[Any, ...]:
    """One expression (a template's ``${...}``)."""
    p = _Parser(lex(src), {}, top=False)
    e = p.expr()
    if p.peek().kind != "eof":
        raise Unsupported("trailing tokens in an interpolation")
    return e


def parse_program(src: str) -> tuple[tuple[Any, ...], dict[str, Function]]:
    """The script's top block and its ``fn`` definitions (raises Unsupported)."""
    fns: dict[str, Function] = {}
    tree = _Parser(lex(src), fns, top=True).script()
    return tree, fns


def parse(src: str) -> tuple[Any, ...]:
    """Parse ``src`` into the evaluator's tuple AST (raises Unsupported)."""
    return parse_program(src)[0]
