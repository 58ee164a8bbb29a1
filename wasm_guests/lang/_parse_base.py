"""The parser's machinery: token access, spans, errors and recovery, and the grammar's tables.

:mod:`._parser` (statements) and :mod:`._parse_expr` (expressions) build on
:class:`_ParserBase`. Error handling: a syntax error records one diagnostic
naming what was expected and what was found, then unwinds (via
:class:`_Recover`) to the nearest statement list, which skips to the next
``;`` or ``}`` at the statement's brace depth or to a statement keyword
(:meth:`_ParserBase._sync`) and carries on; :class:`_Abort` stops parsing
once ``diags.limit`` errors are recorded. The compile budget
(:class:`~._budget.Budget`) is checked as parsing goes: syntax nodes
(``CompileLimits.nodes``), nesting (``depth``), parameters and call arguments
(``params``) and the deadline; going over raises
:class:`~._budget.CompileLimitExceeded`, which no recovery catches.
"""

from __future__ import annotations

import re

from ._ast import (
    FnDef, Span,
)
from ._budget import DEFAULT_LIMITS, TICK, Budget
from ._diagnostics import Diagnostics
from ._lexer import KEYWORDS, MAX_NESTING, TokenStream

__all__ = ["BINARY_PRECEDENCE", "ASSIGN_OPS", "MAX_NESTING", "MAX_AST_HEIGHT", "PARAM_TYPES", "Budget"]

#: Binding power of each binary operator (higher binds tighter), as in Rhai.
#: All are left-associative except ``**``. Unary ``-``, ``+``, ``!`` bind
#: tighter than all of them, and postfix ``.name``, ``(...)``, ``[...]`` tighter still.
BINARY_PRECEDENCE: dict[str, int] = {
    "||": 30, "|": 30, "^": 30,
    "&&": 60, "&": 60,
    "==": 90, "!=": 90,
    "in": 110,
    "<": 130, "<=": 130, ">": 130, ">=": 130,
    "..": 140, "..=": 140,
    "+": 150, "-": 150,
    "*": 180, "/": 180, "%": 180,
    "**": 190,
    "<<": 210, ">>": 210,
}
_POW = 190
_RANGE = 140
_PATTERN_PREC = 31  # switch patterns stop at '|' (and the other 30-level operators)

#: Compound assignment tokens and the binary operator each applies.
ASSIGN_OPS: dict[str, str] = {
    "+=": "+", "-=": "-", "*=": "*", "/=": "/", "%=": "%", "**=": "**",
    "&=": "&", "|=": "|", "^=": "^", "<<=": "<<", ">>=": ">>",
}

#: The tallest AST (in nodes, root to leaf) :func:`parse` returns by default
#: (``CompileLimits.height``).
MAX_AST_HEIGHT = DEFAULT_LIMITS.height

#: The types a parameter of an ``export fn`` may declare (``msg: string``): the
#: names ``type_of`` gives. The host checks them on a published function's
#: arguments before it runs; the guest does not (an ``export fn`` compiles
#: exactly like a ``fn``).
PARAM_TYPES = ("bool", "i64", "f64", "string", "array", "map", "blob")
#: A record type's name as a peer's schema.toml spells it (capitalised), usable as a parameter type.
_RECORD_TYPE = re.compile(r"[A-Z][A-Za-z0-9_]{0,62}")

_I64_MAX = (1 << 63) - 1
_I64_MIN_ABS = 1 << 63

_STMT_KEYWORDS = frozenset({
    "let", "const", "fn", "private", "import", "if", "while", "loop", "for", "break",
    "continue", "return", "throw", "try", "switch", "export",
})
_BRACE_OPEN = frozenset({"{", "#{"})
_END_OF_VALUE = frozenset({";", "}", "eof"})
_PREFIX = frozenset({"-", "+", "!"})
_POSTFIX = frozenset({".", "["})
_AFTER_NAME = frozenset({"=", "(", ")", ",", ";", "|", ":", "in", "{", "eof"})


class _Recover(Exception):
    """A syntax error was recorded; unwind to the enclosing statement list."""


class _Abort(Exception):
    """Stop parsing: the error limit was reached or nesting is too deep."""


class _ParserBase:
    __slots__ = (
        "k", "v", "off", "lines", "mkspan", "i", "file", "diags", "depth", "level", "h",
        "functions", "eof_reported", "eof_desc", "budget", "max_height",
    )

    def __init__(self, stream: TokenStream, file: str, diags: Diagnostics, budget: Budget,
                 depth: int = 0, level: int = 0) -> None:
        self.k = stream.kinds
        self.v = stream.values
        self.off = stream.offsets
        self.lines = stream.lines
        self.mkspan = stream.lines.span
        self.i = 0
        self.file = file
        self.diags = diags
        self.depth = depth          # nesting of brackets/blocks, bounded by MAX_NESTING
        self.level = level          # block nesting: 0 is the top level of the file
        self.h = 0                  # height of the subtree built last
        self.functions: list[FnDef] = []
        self.eof_reported = False
        self.eof_desc = "end of input" if stream.open is None else "'}'"
        self.budget = budget
        self.max_height = budget.limits.height  # the tallest tree kept (CompileLimits.height)

    # -- helpers ----------------------------------------------------------------

    def _tspan(self, idx: int) -> Span:
        a, b = self.off[idx]
        return self.mkspan(self.file, a, b)

    def _span(self, start: int) -> Span:
        """From token ``start`` to the last consumed token."""
        off = self.off
        return self.mkspan(self.file, off[start][0], off[max(start, self.i - 1)][1])

    def _where(self, idx: int) -> str:
        line, col = self.lines.pos(self.off[idx][0])
        return f"{line}:{col}"

    def _join(self, a: Span, b: Span) -> Span:
        return Span(self.file, a.line, a.col, b.end_line, b.end_col)

    def _error(self, span: Span, message: str) -> None:
        self.diags.error(span, message)
        if len(self.diags.items) >= self.diags.limit:
            raise _Abort

    def _too_tall(self, span: Span) -> _Recover:
        """Report a tree taller than ``CompileLimits.height``; return the exception to raise."""
        self._error(span, f"expression too complex (compile limit 'height' is {self.max_height}); "
                          "split it up with 'let'")
        return _Recover()

    def _count(self, n: int = 1) -> None:
        """Count ``n`` syntax nodes against ``CompileLimits.nodes``; read the clock now and then."""
        b = self.budget
        b.nodes += n
        if b.nodes >= b.next_tick:
            limit = b.limits.nodes
            span = self._tspan(max(self.i - 1, 0))
            if b.nodes > limit:
                b.fail("nodes", span, "too many syntax nodes, imported modules included")
            b.check_time(lambda: span)
            b.next_tick = b.nodes + min(TICK, limit - b.nodes + 1)

    def _count_params(self, n: int, idx: int, what: str) -> None:
        """A list of ``n`` parameters (or arguments) so far, ending at token ``idx``."""
        b = self.budget
        if n > b.params:
            b.params = n
            if n > b.limits.params:
                b.fail("params", self._tspan(idx), f"too many {what}")

    def _describe(self, idx: int) -> str:
        kind = self.k[idx]
        if kind == "eof":
            return self.eof_desc
        if kind in ("ident", "reserved", "int", "float"):
            return f"'{self.v[idx]}'"
        if kind in ("str", "interp"):
            return "a string"
        return f"'{kind}'"

    def _fail(self, expected: str, after_expr: bool = False) -> _Recover:
        """Record "expected X, found Y" at the current token; return the exception to raise."""
        i = self.i
        found = self.k[i]
        if found == "eof":
            if self.eof_reported:
                return _Recover()
            self.eof_reported = True
        if after_expr and found == "=":
            message = "'=' is assignment; did you mean '=='?"
        else:
            message = f"expected {expected}, found {self._describe(i)}"
        self._error(self._tspan(i), message)
        return _Recover()

    def _close(self, closer: str, open_idx: int) -> None:
        """Consume ``closer`` or report it missing, naming the opener's position."""
        if self.k[self.i] == closer:
            self.i += 1
            return
        raise self._fail(f"'{closer}' to close '{self.k[open_idx]}' at {self._where(open_idx)}",
                         True)

    def _expect(self, kind: str, what: str, after_expr: bool = False) -> int:
        i = self.i
        if self.k[i] != kind:
            raise self._fail(what, after_expr)
        self.i = i + 1
        return i

    def _enter(self, idx: int) -> None:
        self.depth += 1
        b = self.budget
        if self.depth > b.depth:
            b.depth = self.depth
            if self.depth > b.limits.depth:
                b.fail("depth", self._tspan(idx), "nesting too deep")

    def _name(self, what: str) -> str:
        """Consume an identifier (``what`` says which, for the message)."""
        i = self.i
        kind = self.k[i]
        if kind == "ident":
            self.i = i + 1
            return str(self.v[i])
        if kind == "reserved":
            self.i = i + 1
            self._error(self._tspan(i), f"'{self.v[i]}' is a reserved keyword and cannot be a name")
            return str(self.v[i])
        exc = self._fail(what)
        if kind in KEYWORDS and self.k[i + 1] in _AFTER_NAME:
            self.i = i + 1  # take the keyword as the name, to avoid a cascade of errors
            return kind
        raise exc

    def _parse_params(self, closer: str, open_idx: int, what: str,
                      types: list[str | None] | None = None) -> tuple[str, ...]:
        # BNF: params ::= [ param { ',' param } [ ',' ] ] closer      -- after the opener
        # BNF: param  ::= IDENT [ ':' TYPE ]      -- ': TYPE' only when `types` is given
        # With `types` (an ``export fn``), appends each kept parameter's type (None: any).
        params: list[str] = []
        seen: set[str] = set()
        k = self.k
        while k[self.i] != closer:
            idx = self.i
            name = self._name(what)
            typ = self._param_type(types is not None) if k[self.i] == ":" else None
            if name in seen:
                self._error(self._tspan(idx), f"duplicate parameter '{name}'")
            else:
                params.append(name)
                seen.add(name)
                if types is not None:
                    types.append(typ)
                self._count_params(len(params), idx, "parameters")
            if k[self.i] == ",":
                self.i += 1
            elif k[self.i] != closer:
                self._close(closer, open_idx)
        self.i += 1
        return tuple(params)

    def _param_type(self, allowed: bool) -> str | None:
        """Consume ``':' TYPE ['?']`` after a parameter name; the type, or None after an error.

        TYPE is one of :data:`PARAM_TYPES` or a record type of the peer's schema (a
        capitalised name such as ``Message``: the parser cannot know the peer's types, so
        whoever publishes the module checks it, see :func:`peerbox.peer.check_param_types`);
        a trailing ``?`` makes the argument optional (it may be ``()``)."""
        colon = self.i
        self.i += 1
        idx = self._expect("ident", "a parameter type after ':' (one of " + ", ".join(PARAM_TYPES)
                           + ", or a record type of the peer's schema)")
        typ = str(self.v[idx])
        optional = self.k[self.i] == "?"
        if optional:
            self.i += 1
        if not allowed:
            shown = typ + ("?" if optional else "")
            self._error(self._span(colon), "parameter types are only checked on `export fn` "
                                           f"(a published function's arguments); remove ': {shown}'")
            return None
        if typ not in PARAM_TYPES and not _RECORD_TYPE.fullmatch(typ):
            self._error(self._tspan(idx), f"unknown parameter type '{typ}' (use one of "
                                          f"{', '.join(PARAM_TYPES)}: the names type_of gives; "
                                          "or a record type of the peer's schema, such as Message)")
            return None
        return typ + "?" if optional else typ

    def _sync(self, start: int) -> None:
        """Skip to the next ';' (consumed), '}' or statement keyword at the brace
        depth of the statement that began at token ``start``."""
        k = self.k
        depth = 0
        for j in range(start, self.i):
            t = k[j]
            if t in _BRACE_OPEN:
                depth += 1
            elif t == "}" and depth:
                depth -= 1
        i = self.i
        while True:
            t = k[i]
            if t == "eof":
                break
            if depth == 0:
                if t == ";":
                    i += 1
                    break
                if t == "}" or t in _STMT_KEYWORDS:
                    break
            if t in _BRACE_OPEN:
                depth += 1
            elif t == "}":
                depth -= 1
            i += 1
        self.i = i
