"""The parser: tokens to the AST of :mod:`._ast`, by hand-written recursive descent.

Each grammar rule is one ``_parse_*`` method whose ``# BNF:`` comment gives
the rule; binary operators use precedence climbing over :data:`BINARY_PRECEDENCE`
(Rhai's table). :func:`parse` is the entry point. Three files, one class
each: this one parses scripts and statements (:class:`_Parser`),
:mod:`._parse_expr` expressions (:class:`_ExprParser`, its base), and
:mod:`._parse_base` holds the machinery both use (tokens, spans, errors,
recovery) and the grammar's tables.

Error handling: a syntax error records one diagnostic naming what was expected
and what was found, then unwinds (via the private ``_Recover`` exception) to
the nearest statement list, which skips to the next ``;`` or ``}`` at the
statement's brace depth or to a statement keyword and carries on, so one run
reports every error recovery can find. Parsing stops once ``diags.limit``
errors are recorded.

Limits, so that nothing recurses without bound, here or in later passes
(both are fields of :class:`~._budget.CompileLimits`):

* brackets, blocks, closures, ``if``/``switch`` and ``${}`` nest at most
  ``depth`` deep (default :data:`MAX_NESTING`; "nesting too deep", a
  :class:`~._budget.CompileLimitExceeded` that ends the compilation), which
  bounds this parser's own recursion;
* every tree :func:`parse` returns is at most ``height`` nodes tall (default
  :data:`MAX_AST_HEIGHT`), operator chains included (``1 + 1 + ...`` is a
  left-deep tree; the statement holding a taller expression is reported as
  "too complex" and dropped), so a recursive walk over the AST needs a
  bounded stack.

The rest of the budget (syntax nodes, parameters, the deadline) is checked
as parsing goes too; see :mod:`._parse_base`.

Every parse method leaves the height of the subtree it built in ``self.h``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._ast import (
    Assign, Block, Break, Continue, Expr, ExprStmt, FnDef, For, Import, Index, Let, Loop, Prop, Return,
    Script, Span, Stmt, Throw, TryCatch, Var, While,
)
from ._budget import DEFAULT_LIMITS, Budget, raised_recursion_limit
from ._diagnostics import Diagnostics
from ._lexer import MAX_NESTING, lex
from ._parse_base import (
    ASSIGN_OPS, BINARY_PRECEDENCE, MAX_AST_HEIGHT, PARAM_TYPES, _END_OF_VALUE, _Abort, _Recover,
)
from ._parse_expr import _ExprParser

__all__ = ["parse", "BINARY_PRECEDENCE", "ASSIGN_OPS", "MAX_NESTING", "MAX_AST_HEIGHT", "PARAM_TYPES"]


class _Parser(_ExprParser):
    __slots__ = ()

    # -- script and statements ----------------------------------------------------

    def _parse_script(self) -> Script:
        # BNF: script ::= statements EOF
        stmts: list[Stmt] = []
        tail: Expr | None = None
        try:
            tail = self._parse_statements("eof", stmts)
        except _Abort:
            pass
        self._check_exports()
        end = self._tspan(len(self.k) - 1)
        span = Span(self.file, 1, 1, end.end_line, end.end_col)
        return Script(span=span, body=Block(span=span, stmts=tuple(stmts), tail=tail),
                      functions=tuple(self.functions))

    def _check_exports(self) -> None:
        """Report a second ``export fn`` of a name: a published function has one signature."""
        seen: set[str] = set()
        try:
            for fn in self.functions:
                if fn.exported:
                    if fn.name in seen:
                        self._error(fn.span, f"function '{fn.name}' is exported twice: "
                                             "a published function has one signature")
                    seen.add(fn.name)
        except _Abort:
            pass

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
            self._count()
            try:
                stmt, blockish = self._parse_statement()
                if self.h > self.budget.height and stmt is not None:
                    if self.h > self.max_height:
                        raise self._too_tall(stmt.span)
                    self.budget.height = self.h
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
        # BNF: fn_def ::= [ 'private' | 'export' ] 'fn' IDENT '(' [ param { ',' param } [ ',' ] ] ')' block
        # (`param ::= IDENT [ ':' TYPE ]`, the type only after 'export'; see _parse_params)
        start = self.i
        first = self.k[start]
        private = first == "private"
        exported = first == "export"
        self.i += 1
        if private or exported:
            second = self.k[self.i]
            if second in ("private", "export") and second != first:
                self._error(self._span(start), "a function is either private or exported")
                self.i += 1
                exported = False
            elif exported and second != "fn":
                self._error(self._tspan(start), "'export' publishes a function: write 'export fn NAME(...)' "
                                                "(top-level constants are visible to importers without it)")
                raise _Recover
            self._expect("fn", f"'fn' after '{first}'")
        if self.level != 0:
            self._error(self._span(start), "functions can only be defined at the top level")
        name = self._name("a function name after 'fn'")
        open_idx = self._expect("(", f"'(' after 'fn {name}'")
        types: list[str | None] | None = [] if exported else None
        params = self._parse_params(")", open_idx, "a parameter name", types)
        body = self._parse_block("'{' to start the body of function " + repr(name))
        self.h += 1
        return FnDef(span=self._span(start), name=name, params=params, body=body, private=private,
                     exported=exported, types=tuple(types or ())), True

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


_Handler = Callable[[_Parser], tuple[Stmt | FnDef | None, bool]]

_STATEMENTS: dict[str, _Handler] = {
    "let": _Parser._parse_let,
    "const": _Parser._parse_let,
    "fn": _Parser._parse_fn,
    "private": _Parser._parse_fn,
    "export": _Parser._parse_fn,
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


def parse(source: str, file: str, diags: Diagnostics, budget: Budget | None = None) -> Script:
    """Parse one source file into a :class:`Script`.

    Syntax errors are recorded in ``diags`` (the caller registers the source
    with ``diags.add_source`` first, for caret lines) and parsing continues
    past them, so the returned Script is a best effort when errors were found.
    ``budget`` is the compilation's (default: a fresh one under the default
    limits); it is charged for the tokens and nodes of this file. The only
    exception raised is :class:`~._budget.CompileLimitExceeded`, when the
    budget runs out: brackets nested more than ``CompileLimits.depth`` deep
    ("nesting too deep"), too many tokens or nodes, too many parameters or
    arguments, or the deadline. The returned tree is never more than
    ``CompileLimits.height`` nodes tall below ``Script.body`` (taller
    statements are reported as "too complex" and left out), so recursive
    passes over it need a bounded stack. The recursion limit is raised for
    the duration of the call when the parser's own nesting allowance needs it.
    """
    if budget is None:
        budget = Budget(DEFAULT_LIMITS, diags, time.monotonic)
    stream = lex(source, file, diags, budget)
    with raised_recursion_limit(budget.limits):
        return _Parser(stream, file, diags, budget)._parse_script()
