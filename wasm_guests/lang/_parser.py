"""The parser: tokens to the AST of :mod:`._ast`, by hand-written recursive descent.

Each grammar rule is one ``_parse_*`` method whose ``# BNF:`` comment gives
the rule; binary operators use precedence climbing over :data:`BINARY_PRECEDENCE`
(Rhai's table). :func:`parse` is the entry point.

Error handling: a syntax error records one diagnostic naming what was expected
and what was found, then unwinds (via the private ``_Recover`` exception) to
the nearest statement list, which skips to the next ``;`` or ``}`` at the
statement's brace depth or to a statement keyword and carries on, so one run
reports every error recovery can find. Parsing stops once ``diags.limit``
errors are recorded.

Limits, so that nothing recurses without bound, here or in later passes:

* brackets, blocks, closures, ``if``/``switch`` and ``${}`` nest at most
  :data:`MAX_NESTING` deep ("nesting too deep"; parsing stops there), which
  bounds this parser's own recursion;
* every tree :func:`parse` returns is at most :data:`MAX_AST_HEIGHT` nodes
  tall, operator chains included (``1 + 1 + ...`` is a left-deep tree; the
  statement holding a taller expression is reported as "too complex" and
  dropped), so a recursive walk over the AST needs a bounded stack.

Every parse method leaves the height of the subtree it built in ``self.h``.
"""

from __future__ import annotations

import sys
import threading
from typing import Callable, Union

from ._ast import (
    ArrayLit, Assign, Binary, Block, BlockExpr, Bool, Break, Call, Closure, Continue, Expr,
    ExprStmt, Float, FnDef, For, If, Import, Index, Int, Interp, Let, Logical, Loop, MapLit,
    MethodCall, ModuleRef, Prop, Range, Return, Script, Span, Stmt, Str, Switch,
    SwitchCase, Throw, TryCatch, Unary, Unit, Var, While,
)
from ._diagnostics import Diagnostics
from ._lexer import KEYWORDS, MAX_NESTING, TokenStream, lex

__all__ = ["parse", "BINARY_PRECEDENCE", "ASSIGN_OPS", "MAX_NESTING", "MAX_AST_HEIGHT"]

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

#: The tallest AST (in nodes, root to leaf) :func:`parse` returns.
MAX_AST_HEIGHT = 256

_I64_MAX = (1 << 63) - 1
_I64_MIN_ABS = 1 << 63

_STMT_KEYWORDS = frozenset({
    "let", "const", "fn", "private", "import", "if", "while", "loop", "for", "break",
    "continue", "return", "throw", "try", "switch",
})
_BRACE_OPEN = frozenset({"{", "#{"})
_END_OF_VALUE = frozenset({";", "}", "eof"})
_PREFIX = frozenset({"-", "+", "!"})
_POSTFIX = frozenset({".", "["})
_AFTER_NAME = frozenset({"=", "(", ")", ",", ";", "|", ":", "in", "{", "eof"})

# Python frames the parser may use per nesting level, to size the recursion limit.
_FRAMES_PER_LEVEL = 24


class _Recover(Exception):
    """A syntax error was recorded; unwind to the enclosing statement list."""


class _Abort(Exception):
    """Stop parsing: the error limit was reached or nesting is too deep."""


class _Parser:
    __slots__ = (
        "k", "v", "off", "lines", "mkspan", "i", "file", "diags", "depth", "level", "h",
        "functions", "eof_reported", "eof_desc",
    )

    def __init__(self, stream: TokenStream, file: str, diags: Diagnostics,
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
        """Report a tree taller than MAX_AST_HEIGHT; return the exception to raise."""
        self._error(span, f"expression too complex (more than {MAX_AST_HEIGHT} nested "
                          "operations); split it up with 'let'")
        return _Recover()

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
        if self.depth > MAX_NESTING:
            self.diags.error(self._tspan(idx), f"nesting too deep (more than {MAX_NESTING} levels)")
            raise _Abort

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

    # -- script and statements ----------------------------------------------------

    def _parse_script(self) -> Script:
        # BNF: script ::= statements EOF
        stmts: list[Stmt] = []
        tail: Expr | None = None
        try:
            tail = self._parse_statements("eof", stmts)
        except _Abort:
            pass
        end = self._tspan(len(self.k) - 1)
        span = Span(self.file, 1, 1, end.end_line, end.end_col)
        return Script(span=span, body=Block(span=span, stmts=tuple(stmts), tail=tail),
                      functions=tuple(self.functions))

    def _parse_statements(self, end: str, stmts: list[Stmt]) -> Expr | None:
        # BNF: statements ::= { statement [ ';' ] | ';' } [ expr ]
        # A statement that does not end with a block needs ';' unless it is the
        # last before `end`; a last expression statement with no ';' is the tail.
        # Appends to `stmts`, returns the tail; self.h = the tallest of them.
        k = self.k
        height = 0
        while True:
            t = k[self.i]
            if t == end or t == "eof":
                self.h = height
                return None
            if t == ";":
                self.i += 1
                continue
            if t == "}" and end == "eof":
                self._error(self._tspan(self.i), "unexpected '}' with no '{' to close")
                self.i += 1
                continue
            start = self.i
            depth, level = self.depth, self.level
            try:
                stmt, blockish = self._parse_statement()
                if self.h > MAX_AST_HEIGHT and stmt is not None:
                    raise self._too_tall(stmt.span)
            except _Recover:
                self.depth, self.level = depth, level
                self._sync(start)
                if self.i == start:
                    self.i += 1
                continue
            t = k[self.i]
            if stmt is None:
                continue
            if isinstance(stmt, FnDef):
                if self.level == 0:
                    self.functions.append(stmt)
                continue
            if t == ";":
                self.i += 1
            elif t == end or t == "eof":
                if type(stmt) is ExprStmt:  # the tail: no ExprStmt node around it
                    self.h = max(height, self.h - 1)
                    return stmt.expr
            elif not blockish and t != "}":  # (a stray '}' is reported on its own)
                stmts.append(stmt)
                height = max(height, self.h)
                self._fail("';' after statement", True)
                self._sync(self.i)
                continue
            stmts.append(stmt)
            if self.h > height:
                height = self.h

    def _parse_statement(self) -> tuple[Stmt | FnDef | None, bool]:
        # BNF: statement ::= let_stmt | const_stmt | fn_def | import_stmt | while_stmt
        #                  | loop_stmt | for_stmt | try_stmt | jump_stmt
        #                  | if_expr | switch_expr | block | expr_stmt
        # Returns the statement (None if nothing was kept) and whether it ends with a block.
        handler = _STATEMENTS.get(self.k[self.i])
        if handler is not None:
            return handler(self)
        return self._parse_expr_statement(), False

    def _parse_block_statement(self) -> tuple[Stmt | FnDef | None, bool]:
        # BNF: block_stmt ::= if_expr | switch_expr | block        -- needs no ';'
        kind = self.k[self.i]
        expr: Expr
        if kind == "if":
            expr = self._parse_if()
        elif kind == "switch":
            expr = self._parse_switch()
        else:
            expr = self._parse_block_expr()
        self.h += 1
        return ExprStmt(span=expr.span, expr=expr), True

    def _parse_expr_statement(self) -> Stmt:
        # BNF: expr_stmt ::= expr [ ( '=' | '+=' | '-=' | '*=' | '/=' | '%=' | '**=' | '&=' | '|='
        #                           | '^=' | '<<=' | '>>=' ) expr ]
        expr = self._parse_expr()
        t = self.k[self.i]
        if t == "=" or t in ASSIGN_OPS:
            self.i += 1
            target: Expr = expr
            while type(target) is Index or type(target) is Prop:
                target = target.obj
            if type(target) is not Var:
                self._error(expr.span, "cannot assign to this expression")
            h = self.h
            value = self._parse_expr()
            self.h = max(h, self.h) + 1
            return Assign(span=self._join(expr.span, value.span), target=expr,
                          op=ASSIGN_OPS.get(t), value=value)
        self.h += 1
        return ExprStmt(span=expr.span, expr=expr)

    def _parse_let(self) -> tuple[Stmt | FnDef | None, bool]:
        # BNF: let_stmt ::= 'let' IDENT [ '=' expr ]
        # BNF: const_stmt ::= 'const' IDENT '=' expr
        start = self.i
        const = self.k[start] == "const"
        self.i += 1
        name = self._name(f"a {'constant' if const else 'variable'} name after "
                          f"'{self.k[start]}'")
        value: Expr | None = None
        self.h = 0
        if self.k[self.i] == "=":
            self.i += 1
            value = self._parse_expr()
        elif const:
            self._error(self._span(start), f"constant '{name}' needs a value: const {name} = ...")
        elif self.k[self.i] not in _END_OF_VALUE:
            raise self._fail(f"'=' or ';' after 'let {name}'")
        self.h += 1
        return Let(span=self._span(start), name=name, value=value, const=const), False

    def _parse_fn(self) -> tuple[Stmt | FnDef | None, bool]:
        # BNF: fn_def ::= [ 'private' ] 'fn' IDENT '(' [ IDENT { ',' IDENT } [ ',' ] ] ')' block
        start = self.i
        private = self.k[start] == "private"
        self.i += 1
        if private:
            self._expect("fn", "'fn' after 'private'")
        if self.level != 0:
            self._error(self._span(start), "functions can only be defined at the top level")
        name = self._name("a function name after 'fn'")
        open_idx = self._expect("(", f"'(' after 'fn {name}'")
        params = self._parse_params(")", open_idx, "a parameter name")
        body = self._parse_block("'{' to start the body of function " + repr(name))
        self.h += 1
        return FnDef(span=self._span(start), name=name, params=params, body=body,
                     private=private), True

    def _parse_params(self, closer: str, open_idx: int, what: str) -> tuple[str, ...]:
        # BNF: params ::= [ IDENT { ',' IDENT } [ ',' ] ] closer      -- after the opener
        params: list[str] = []
        k = self.k
        while k[self.i] != closer:
            idx = self.i
            name = self._name(what)
            if name in params:
                self._error(self._tspan(idx), f"duplicate parameter '{name}'")
            else:
                params.append(name)
            if k[self.i] == ",":
                self.i += 1
            elif k[self.i] != closer:
                self._close(closer, open_idx)
        self.i += 1
        return tuple(params)

    def _parse_import(self) -> tuple[Stmt | FnDef | None, bool]:
        # BNF: import_stmt ::= 'import' STRING [ 'as' IDENT ]
        start = self.i
        self.i += 1
        if self.level != 0:
            self._error(self._tspan(start), "imports can only be at the top level")
        path_idx = self._expect("str", "a module path string after 'import'")
        alias: str | None = None
        if self.k[self.i] == "as":
            self.i += 1
            alias = self._name("a module name after 'as'")
        self.h = 1
        return Import(span=self._span(start), path=str(self.v[path_idx]), alias=alias), False

    def _parse_while(self) -> tuple[Stmt | FnDef | None, bool]:
        # BNF: while_stmt ::= 'while' expr block
        start = self.i
        self.i += 1
        cond = self._parse_expr()
        h = self.h
        body = self._parse_block("'{' after the while condition", True)
        self.h = max(h, self.h) + 1
        return While(span=self._span(start), cond=cond, body=body), True

    def _parse_loop(self) -> tuple[Stmt | FnDef | None, bool]:
        # BNF: loop_stmt ::= 'loop' block
        start = self.i
        self.i += 1
        body = self._parse_block("'{' after 'loop'")
        self.h += 1
        return Loop(span=self._span(start), body=body), True

    def _parse_for(self) -> tuple[Stmt | FnDef | None, bool]:
        # BNF: for_stmt ::= 'for' ( IDENT | '(' IDENT ',' IDENT ')' ) 'in' expr block
        start = self.i
        self.i += 1
        index: str | None = None
        if self.k[self.i] == "(":
            open_idx = self.i
            self.i += 1
            var = self._name("a loop variable name")
            self._expect(",", "',' and an index variable name")
            idx = self.i
            index = self._name("an index variable name")
            if index == var:
                self._error(self._tspan(idx), f"duplicate loop variable '{var}'")
            self._close(")", open_idx)
        else:
            var = self._name("a loop variable name after 'for'")
        self._expect("in", "'in' after the loop variable")
        iterable = self._parse_expr()
        h = self.h
        body = self._parse_block("'{' after the for iterable", True)
        self.h = max(h, self.h) + 1
        return For(span=self._span(start), var=var, index=index, iterable=iterable,
                   body=body), True

    def _parse_try(self) -> tuple[Stmt | FnDef | None, bool]:
        # BNF: try_stmt ::= 'try' block 'catch' [ '(' IDENT ')' ] block
        start = self.i
        self.i += 1
        body = self._parse_block("'{' after 'try'")
        h = self.h
        self._expect("catch", "'catch' after the try block")
        var: str | None = None
        if self.k[self.i] == "(":
            open_idx = self.i
            self.i += 1
            var = self._name("an error variable name")
            self._close(")", open_idx)
        handler = self._parse_block("'{' after 'catch'")
        self.h = max(h, self.h) + 1
        return TryCatch(span=self._span(start), body=body, var=var, handler=handler), True

    def _parse_jump(self) -> tuple[Stmt | FnDef | None, bool]:
        # BNF: jump_stmt ::= 'break' | 'continue' | ( 'return' | 'throw' ) [ expr ]
        start = self.i
        kind = self.k[start]
        self.i += 1
        self.h = 1
        if kind == "break":
            return Break(span=self._tspan(start)), False
        if kind == "continue":
            return Continue(span=self._tspan(start)), False
        value = None
        if self.k[self.i] not in _END_OF_VALUE:
            value = self._parse_expr()
            self.h += 1
        if kind == "return":
            return Return(span=self._span(start), value=value), False
        return Throw(span=self._span(start), value=value), False

    def _parse_stray_else(self) -> tuple[Stmt | FnDef | None, bool]:
        # BNF: stray_else ::= 'else'      -- an error; the following block parses normally
        self._error(self._tspan(self.i), "'else' without 'if'")
        self.i += 1
        return None, True

    # -- blocks and compound expressions ----------------------------------------------

    def _parse_block(self, what: str = "'{'", after_expr: bool = False) -> Block:
        # BNF: block ::= '{' statements '}'
        start = self.i
        if self.k[start] != "{":
            raise self._fail(what, after_expr)
        self.i = start + 1
        self._enter(start)
        self.level += 1
        stmts: list[Stmt] = []
        tail = self._parse_statements("}", stmts)
        h = self.h + 1
        self.level -= 1
        self.depth -= 1
        if self.k[self.i] == "}":
            self.i += 1
        else:
            try:
                self._close("}", start)
            except _Recover:
                pass
        block = Block(span=self._span(start), stmts=tuple(stmts), tail=tail)
        if h > MAX_AST_HEIGHT:
            raise self._too_tall(block.span)
        self.h = h
        return block

    def _parse_block_expr(self) -> Expr:
        # BNF: block_expr ::= block
        block = self._parse_block()
        if self.h >= MAX_AST_HEIGHT:
            raise self._too_tall(block.span)
        self.h += 1
        return BlockExpr(span=block.span, block=block)

    def _parse_if(self) -> If:
        # BNF: if_expr ::= 'if' expr block [ 'else' ( if_expr | block ) ]
        # Parsed as a loop over the `else if` chain (no recursion per link).
        links: list[tuple[int, Expr, Block, int]] = []
        else_: Block | If | None = None
        h = 0
        while True:
            start = self.i
            self._enter(start)
            self.i += 1
            cond = self._parse_expr()
            self.depth -= 1
            hc = self.h
            then = self._parse_block("'{' after the if condition", True)
            links.append((start, cond, then, max(hc, self.h)))
            if self.k[self.i] != "else":
                break
            self.i += 1
            if self.k[self.i] == "if":
                continue
            else_ = self._parse_block("'{' or 'if' after 'else'")
            h = self.h
            break
        end = self.off[self.i - 1][1]
        for start, cond, then, hl in reversed(links):
            h = max(h, hl) + 1
            if h > MAX_AST_HEIGHT:
                raise self._too_tall(self.mkspan(self.file, self.off[links[0][0]][0], end))
            else_ = If(span=self.mkspan(self.file, self.off[start][0], end), cond=cond, then=then,
                       else_=else_)
        assert isinstance(else_, If)
        self.h = h
        return else_

    def _parse_switch(self) -> Switch:
        # BNF: switch_expr ::= 'switch' expr '{' [ switch_case { ',' switch_case } [ ',' ] ] '}'
        # (the ',' may be left out after a case whose body is a block)
        start = self.i
        self._enter(start)
        self.i += 1
        subject = self._parse_expr()
        h = self.h
        open_idx = self._expect("{", "'{' after the switch subject", True)
        cases: list[SwitchCase] = []
        default_idx = -1
        k = self.k
        while k[self.i] != "}":
            if k[self.i] == "eof":
                self._close("}", open_idx)
            if default_idx >= 0:
                self._error(self._tspan(default_idx), "the default case '_' must be the last case")
                default_idx = -2
            case_idx = self.i
            case, block_body = self._parse_switch_case()
            if self.h > h:
                h = self.h
            if not case.patterns and default_idx == -1:
                default_idx = case_idx
            cases.append(case)
            t = k[self.i]
            if t == ",":
                self.i += 1
            elif t == "eof":
                self._close("}", open_idx)
            elif t != "}" and not block_body:
                raise self._fail("',' or '}' after the switch case", True)
        self.i += 1
        self.depth -= 1
        switch = Switch(span=self._span(start), subject=subject, cases=tuple(cases))
        if h >= MAX_AST_HEIGHT:
            raise self._too_tall(switch.span)
        self.h = h + 1
        return switch

    def _parse_switch_case(self) -> tuple[SwitchCase, bool]:
        # BNF: switch_case ::= ( '_' | pattern { '|' pattern } ) [ 'if' expr ] '=>' ( block | expr )
        # BNF: pattern ::= expr(above '|')
        start = self.i
        k = self.k
        patterns: list[Expr] = []
        h = 0
        if k[start] == "ident" and self.v[start] == "_":
            self.i += 1
        else:
            patterns.append(self._parse_expr(_PATTERN_PREC))
            h = self.h
            while k[self.i] == "|":
                self.i += 1
                if k[self.i] == "ident" and self.v[self.i] == "_":
                    self._error(self._tspan(self.i), "'_' must be the only pattern of its case")
                patterns.append(self._parse_expr(_PATTERN_PREC))
                h = max(h, self.h)
        guard: Expr | None = None
        if k[self.i] == "if":
            if_idx = self.i
            self.i += 1
            guard = self._parse_expr()
            h = max(h, self.h)
            if not patterns:
                self._error(self._tspan(if_idx), "the default case '_' cannot have a condition")
        self._expect("=>", "'=>' after the case pattern", True)
        body: Expr
        block_body = k[self.i] == "{"
        body = self._parse_block_expr() if block_body else self._parse_expr()
        self.h = max(h, self.h) + 1
        return SwitchCase(span=self._span(start), patterns=tuple(patterns), guard=guard,
                          body=body), block_body

    def _parse_closure(self) -> Closure:
        # BNF: closure ::= ( '||' | '|' params ) ( block | expr )
        start = self.i
        self.i += 1
        params: tuple[str, ...] = ()
        if self.k[start] == "|":
            params = self._parse_params("|", start, "a closure parameter name")
        if self.k[self.i] == "{":
            body = self._parse_block()
        else:
            self._enter(start)
            expr = self._parse_expr()
            self.depth -= 1
            self.h += 1
            body = Block(span=expr.span, stmts=(), tail=expr)
        closure = Closure(span=self._span(start), params=params, body=body)
        if self.h >= MAX_AST_HEIGHT:
            raise self._too_tall(closure.span)
        self.h += 1
        return closure

    # -- operators --------------------------------------------------------------------

    def _parse_expr(self, min_prec: int = 0) -> Expr:
        # BNF: expr ::= unary { BINOP unary }
        # Precedence climbing over BINARY_PRECEDENCE: operators binding at least
        # `min_prec` are taken here; '**' is right-associative.
        k = self.k
        left = self._parse_unary() if k[self.i] in _PREFIX else self._parse_postfix()
        table = BINARY_PRECEDENCE
        file = self.file
        h = self.h
        while True:
            op = k[self.i]
            prec = table.get(op)
            if prec is None or prec < min_prec:
                self.h = h
                return left
            self.i += 1
            if prec == _POW:
                left, h = self._parse_pow_chain(left, h)
                continue
            right = self._parse_expr(prec + 1)
            hr = self.h
            h = (h if h > hr else hr) + 1
            s, e = left.span, right.span
            span = Span(file, s.line, s.col, e.end_line, e.end_col)
            if h > MAX_AST_HEIGHT:
                raise self._too_tall(span)
            if op == "&&" or op == "||":
                left = Logical(span=span, op=op, left=left, right=right)
            elif prec == _RANGE:
                left = Range(span=span, start=left, end=right, inclusive=op == "..=")
            else:
                left = Binary(span=span, op=op, left=left, right=right)

    def _parse_pow_chain(self, left: Expr, h: int) -> tuple[Expr, int]:
        # BNF: pow_chain ::= operand '**' operand { '**' operand }      -- right-associative
        # Called after the first '**' is consumed; folds from the right without recursion.
        k = self.k
        operands = [(left, h), (self._parse_expr(_POW + 1), self.h)]
        while k[self.i] == "**":
            self.i += 1
            operands.append((self._parse_expr(_POW + 1), self.h))
        right, h = operands.pop()
        while operands:
            lhs, hl = operands.pop()
            h = max(h, hl) + 1
            s, e = lhs.span, right.span
            span = Span(self.file, s.line, s.col, e.end_line, e.end_col)
            if h > MAX_AST_HEIGHT:
                raise self._too_tall(span)
            right = Binary(span=span, op="**", left=lhs, right=right)
        return right, h

    def _parse_unary(self) -> Expr:
        # BNF: unary ::= { '-' | '+' | '!' } postfix
        k = self.k
        i = self.i
        starts: list[int] = []
        while k[i] in _PREFIX:
            starts.append(i)
            i += 1
        self.i = i
        operand: Expr
        if k[i] == "int" and self.v[i] == _I64_MIN_ABS and starts and k[starts[-1]] == "-":
            # -9223372036854775808 is a literal, though 9223372036854775808 is not
            self.i = i + 1
            self.h = 1
            operand = self._parse_postfix_ops(
                Int(span=self._span(starts.pop()), value=-_I64_MIN_ABS))
        else:
            operand = self._parse_postfix()
        if not starts:
            return operand
        h = self.h + len(starts)
        e = operand.span
        line, col = self.lines.pos(self.off[starts[0]][0])
        if h > MAX_AST_HEIGHT:
            raise self._too_tall(Span(self.file, line, col, e.end_line, e.end_col))
        for s in reversed(starts):
            line, col = self.lines.pos(self.off[s][0])
            operand = Unary(span=Span(self.file, line, col, e.end_line, e.end_col), op=k[s],
                            operand=operand)
        self.h = h
        return operand

    def _parse_postfix(self) -> Expr:
        # BNF: postfix ::= primary { postfix_op }
        expr = self._parse_primary()
        if self.k[self.i] in _POSTFIX:
            return self._parse_postfix_ops(expr)
        return expr

    def _parse_postfix_ops(self, expr: Expr) -> Expr:
        # BNF: postfix_op ::= '.' IDENT [ call_args ] | '[' expr ']'
        k = self.k
        h = self.h
        while True:
            t = k[self.i]
            if t == ".":
                self.i += 1
                name_idx = self.i
                if k[name_idx] == "ident":
                    name = str(self.v[name_idx])
                    self.i = name_idx + 1
                else:
                    exc = self._fail("a property or method name after '.'")
                    if k[name_idx] not in KEYWORDS:
                        raise exc
                    name = k[name_idx]  # take the keyword as the name, to avoid a cascade
                    self.i = name_idx + 1
                if k[self.i] == "(":
                    args = self._parse_call_args()
                    h = max(h, self.h) + 1
                    expr = MethodCall(span=self._join(expr.span, self._tspan(self.i - 1)),
                                      obj=expr, name=name, args=args)
                else:
                    h += 1
                    expr = Prop(span=self._join(expr.span, self._tspan(name_idx)), obj=expr,
                                name=name)
            elif t == "[":
                open_idx = self.i
                self._enter(open_idx)
                self.i += 1
                index = self._parse_expr()
                self._close("]", open_idx)
                self.depth -= 1
                h = max(h, self.h) + 1
                expr = Index(span=self._join(expr.span, self._tspan(self.i - 1)), obj=expr,
                             index=index)
            else:
                self.h = h
                return expr
            if h > MAX_AST_HEIGHT:
                raise self._too_tall(expr.span)

    def _parse_call_args(self) -> tuple[Expr, ...]:
        # BNF: call_args ::= '(' [ expr { ',' expr } [ ',' ] ] ')'
        open_idx = self.i
        self._enter(open_idx)
        self.i += 1
        args = self._parse_list(")", open_idx)
        self.depth -= 1
        return args

    def _parse_list(self, closer: str, open_idx: int) -> tuple[Expr, ...]:
        # BNF: expr_list ::= [ expr { ',' expr } [ ',' ] ] closer      -- after the opener
        # self.h = the tallest item (0 for none)
        k = self.k
        items: list[Expr] = []
        h = 0
        while k[self.i] != closer:
            items.append(self._parse_expr())
            if self.h > h:
                h = self.h
            if k[self.i] == ",":
                self.i += 1
            else:
                self._close(closer, open_idx)
                self.h = h
                return tuple(items)
        self.i += 1
        self.h = h
        return tuple(items)

    # -- primaries ----------------------------------------------------------------------

    def _parse_primary(self) -> Expr:
        # BNF: primary ::= IDENT | call | module_ref | INT | FLOAT | STRING | interp
        #                | 'true' | 'false' | paren | array_lit | map_lit | closure
        #                | if_expr | switch_expr | block_expr
        i = self.i
        k = self.k
        kind = k[i]
        if kind == "ident":
            nxt = k[i + 1]
            if nxt == "(" or nxt == "::":
                return self._parse_name_expr()
            self.i = i + 1
            self.h = 1
            a, b = self.off[i]
            return Var(span=self.mkspan(self.file, a, b), name=self.v[i])  # type: ignore[arg-type]
        if kind == "int":
            self.i = i + 1
            self.h = 1
            value = self.v[i]
            assert isinstance(value, int)
            span = self._tspan(i)
            if value > _I64_MAX:
                self._error(span, "integer literal too large")
                value = 0
            return Int(span=span, value=value)
        if kind == "str":
            self.i = i + 1
            self.h = 1
            return Str(span=self._tspan(i), value=str(self.v[i]))
        handler = _PRIMARIES.get(kind)
        if handler is not None:
            return handler(self)
        if kind == "reserved":
            self.i = i + 1
            self.h = 1
            self._error(self._tspan(i), f"'{self.v[i]}' is a reserved keyword")
            return Var(span=self._tspan(i), name=str(self.v[i]))
        raise self._fail("an expression")

    def _parse_name_expr(self) -> Expr:
        # BNF: call ::= IDENT call_args | IDENT '::' IDENT call_args
        # BNF: module_ref ::= IDENT '::' IDENT
        i = self.i
        name = str(self.v[i])
        k = self.k
        self.i = i + 1
        nxt = k[i + 1]
        if nxt == "(":
            args = self._parse_call_args()
            if self.h >= MAX_AST_HEIGHT:
                raise self._too_tall(self._span(i))
            self.h += 1
            return Call(span=self._span(i), name=name, args=args)
        if nxt == "::":
            self.i = i + 2
            member = self._name(f"a name after '{name}::'")
            if k[self.i] == "(":
                args = self._parse_call_args()
                if self.h >= MAX_AST_HEIGHT:
                    raise self._too_tall(self._span(i))
                self.h += 1
                return Call(span=self._span(i), name=member, args=args, module=name)
            self.h = 1
            return ModuleRef(span=self._span(i), module=name, name=member)
        self.h = 1
        return Var(span=self._tspan(i), name=name)

    def _parse_float(self) -> Expr:
        # BNF: float_lit ::= FLOAT
        i = self.i
        self.i = i + 1
        self.h = 1
        value = self.v[i]
        assert isinstance(value, float)
        return Float(span=self._tspan(i), value=value)

    def _parse_bool(self) -> Expr:
        # BNF: bool_lit ::= 'true' | 'false'
        i = self.i
        self.i = i + 1
        self.h = 1
        return Bool(span=self._tspan(i), value=self.k[i] == "true")

    def _parse_interp(self) -> Expr:
        # BNF: interp ::= '`' { TEXT | '${' statements '}' } '`'
        i = self.i
        self.i = i + 1
        self._enter(i)
        parts: list[Expr] = []
        value = self.v[i]
        assert isinstance(value, tuple)
        h = 1
        for payload, a, b in value:
            if isinstance(payload, str):
                parts.append(Str(span=self.mkspan(self.file, a, b), value=payload))
            else:
                parts.append(self._parse_interp_part(payload))
                if self.h > h:
                    h = self.h
        self.depth -= 1
        interp = Interp(span=self._tspan(i), parts=tuple(parts))
        if h >= MAX_AST_HEIGHT:
            raise self._too_tall(interp.span)
        self.h = h + 1
        return interp

    def _parse_interp_part(self, stream: TokenStream) -> Expr:
        # BNF: interp_part ::= statements          -- the tokens between '${' and '}'
        sub = _Parser(stream, self.file, self.diags, self.depth, self.level + 1)
        stmts: list[Stmt] = []
        tail = sub._parse_statements("eof", stmts)
        span = self.mkspan(self.file, stream.open or 0, stream.offsets[-1][1])
        self.h = sub.h
        if not stmts:
            if tail is not None:
                return tail
            if len(stream.kinds) == 1:
                self._error(span, "expected an expression inside '${}'")
            self.h = 1
            return Unit(span=span)
        self.h += 2
        return BlockExpr(span=span, block=Block(span=span, stmts=tuple(stmts), tail=tail))

    def _parse_paren(self) -> Expr:
        # BNF: paren ::= '(' ')' | '(' expr ')'
        open_idx = self.i
        self.i += 1
        if self.k[self.i] == ")":
            self.i += 1
            self.h = 1
            return Unit(span=self._span(open_idx))
        self._enter(open_idx)
        expr = self._parse_expr()
        self._close(")", open_idx)
        self.depth -= 1
        return expr

    def _parse_array(self) -> Expr:
        # BNF: array_lit ::= '[' [ expr { ',' expr } [ ',' ] ] ']'
        open_idx = self.i
        self._enter(open_idx)
        self.i += 1
        items = self._parse_list("]", open_idx)
        self.depth -= 1
        if self.h >= MAX_AST_HEIGHT:
            raise self._too_tall(self._span(open_idx))
        self.h += 1
        return ArrayLit(span=self._span(open_idx), items=items)

    def _parse_map(self) -> Expr:
        # BNF: map_lit ::= '#{' [ map_entry { ',' map_entry } [ ',' ] ] '}'
        # BNF: map_entry ::= ( IDENT | STRING ) ':' expr
        open_idx = self.i
        self._enter(open_idx)
        self.i += 1
        k = self.k
        entries: list[tuple[str, Expr]] = []
        seen: set[str] = set()
        h = 0
        while k[self.i] != "}":
            key_idx = self.i
            if k[key_idx] not in ("ident", "str"):
                raise self._fail("a map key (a name or a string)")
            key = str(self.v[key_idx])
            self.i += 1
            self._expect(":", f"':' after map key '{key}'")
            value = self._parse_expr()
            if self.h > h:
                h = self.h
            if key in seen:
                self._error(self._tspan(key_idx), f"duplicate map key '{key}'")
            else:
                seen.add(key)
                entries.append((key, value))
            if k[self.i] == ",":
                self.i += 1
            elif k[self.i] != "}":
                self._close("}", open_idx)
        self.i += 1
        self.depth -= 1
        if h >= MAX_AST_HEIGHT:
            raise self._too_tall(self._span(open_idx))
        self.h = h + 1
        return MapLit(span=self._span(open_idx), entries=tuple(entries))


_Handler = Callable[[_Parser], tuple[Union[Stmt, FnDef, None], bool]]

_STATEMENTS: dict[str, _Handler] = {
    "let": _Parser._parse_let,
    "const": _Parser._parse_let,
    "fn": _Parser._parse_fn,
    "private": _Parser._parse_fn,
    "import": _Parser._parse_import,
    "while": _Parser._parse_while,
    "loop": _Parser._parse_loop,
    "for": _Parser._parse_for,
    "try": _Parser._parse_try,
    "break": _Parser._parse_jump,
    "continue": _Parser._parse_jump,
    "return": _Parser._parse_jump,
    "throw": _Parser._parse_jump,
    "if": _Parser._parse_block_statement,
    "switch": _Parser._parse_block_statement,
    "{": _Parser._parse_block_statement,
    "else": _Parser._parse_stray_else,
}

_PRIMARIES: dict[str, Callable[[_Parser], Expr]] = {
    "float": _Parser._parse_float,
    "true": _Parser._parse_bool,
    "false": _Parser._parse_bool,
    "interp": _Parser._parse_interp,
    "(": _Parser._parse_paren,
    "[": _Parser._parse_array,
    "#{": _Parser._parse_map,
    "{": _Parser._parse_block_expr,
    "|": _Parser._parse_closure,
    "||": _Parser._parse_closure,
    "if": _Parser._parse_if,
    "switch": _Parser._parse_switch,
}


def _stack_depth() -> int:
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    return depth


# The recursion limit is process-wide: while any thread is parsing it stays
# at least as high as the deepest parse needs; the last parse to finish puts
# the original value back.
_limit_lock = threading.Lock()
_limit_users = 0
_limit_saved = 0


def _raise_recursion_limit(needed: int) -> None:
    global _limit_users, _limit_saved
    with _limit_lock:
        if _limit_users == 0:
            _limit_saved = sys.getrecursionlimit()
        _limit_users += 1
        if sys.getrecursionlimit() < needed:
            sys.setrecursionlimit(needed)


def _restore_recursion_limit() -> None:
    global _limit_users
    with _limit_lock:
        _limit_users -= 1
        if _limit_users == 0:
            sys.setrecursionlimit(_limit_saved)


def parse(source: str, file: str, diags: Diagnostics) -> Script:
    """Parse one source file into a :class:`Script`.

    Syntax errors are recorded in ``diags`` (the caller registers the source
    with ``diags.add_source`` first, for caret lines) and parsing continues
    past them, so the returned Script is a best effort when errors were found.
    Never raises. Brackets nested more than :data:`MAX_NESTING` deep are
    reported as "nesting too deep", and the returned tree is never more than
    :data:`MAX_AST_HEIGHT` nodes tall below ``Script.body`` (taller statements
    are reported as "too complex" and left out), so recursive passes over it
    need a bounded stack. The recursion limit is raised for the duration of
    the call when the parser's own nesting allowance needs it.
    """
    stream = lex(source, file, diags)
    _raise_recursion_limit(_stack_depth() + MAX_NESTING * _FRAMES_PER_LEVEL + 200)
    try:
        return _Parser(stream, file, diags)._parse_script()
    finally:
        _restore_recursion_limit()
