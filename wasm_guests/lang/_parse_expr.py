"""Expressions, by precedence climbing and recursive descent: operators, postfix
chains, literals, string interpolation, blocks, ``if``, ``switch`` and closures.

Each ``_parse_*`` method's ``# BNF:`` comment gives its rule and leaves the
height of the subtree it built in ``self.h`` (see :mod:`._parser`).
"""

from __future__ import annotations

from collections.abc import Callable

from ._ast import (
    ArrayLit, Binary, Block, BlockExpr, Bool, Call, Closure, Expr,
    Float, If, Index, Int, Interp, Logical, MapLit,
    MethodCall, ModuleRef, Prop, Range, Span, Stmt, Str, Switch,
    SwitchCase, Unary, Unit, Var,
)
from ._lexer import KEYWORDS, TokenStream
from ._parse_base import (
    BINARY_PRECEDENCE, _I64_MAX, _I64_MIN_ABS, _PATTERN_PREC, _POSTFIX, _POW, _PREFIX,
    _RANGE, _ParserBase, _Recover,
)

__all__: list[str] = []


class _ExprParser(_ParserBase):
    __slots__ = ()

    def _parse_statements(self, end: str, stmts: list[Stmt]) -> Expr | None:
        raise NotImplementedError  # the statement parser's (blocks hold statements)

    # -- blocks and compound expressions ----------------------------------------------

    def _parse_block(self, what: str = "'{'", after_expr: bool = False) -> Block:
        # BNF: block ::= '{' statements '}'
        start = self.i
        if self.k[start] != "{":
            raise self._fail(what, after_expr)
        self.i = start + 1
        self._enter(start)
        self._count()
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
        if h > self.max_height:
            raise self._too_tall(block.span)
        self.h = h
        return block

    def _parse_block_expr(self) -> Expr:
        # BNF: block_expr ::= block
        block = self._parse_block()
        if self.h >= self.max_height:
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
            self._count()
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
            if h > self.max_height:
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
        if h >= self.max_height:
            raise self._too_tall(switch.span)
        self.h = h + 1
        return switch

    def _parse_switch_case(self) -> tuple[SwitchCase, bool]:
        # BNF: switch_case ::= ( '_' | pattern { '|' pattern } ) [ 'if' expr ] '=>' ( block | expr )
        # BNF: pattern ::= expr(above '|')
        start = self.i
        self._count()
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
        if self.h >= self.max_height:
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
            self._count()
            if prec == _POW:
                left, h = self._parse_pow_chain(left, h)
                continue
            right = self._parse_expr(prec + 1)
            hr = self.h
            h = (h if h > hr else hr) + 1
            s, e = left.span, right.span
            span = Span(file, s.line, s.col, e.end_line, e.end_col)
            if h > self.max_height:
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
            self._count()
            operands.append((self._parse_expr(_POW + 1), self.h))
        right, h = operands.pop()
        while operands:
            lhs, hl = operands.pop()
            h = max(h, hl) + 1
            s, e = lhs.span, right.span
            span = Span(self.file, s.line, s.col, e.end_line, e.end_col)
            if h > self.max_height:
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
        self._count(len(starts))
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
        if h > self.max_height:
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
            if t in _POSTFIX:
                self._count()
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
            if h > self.max_height:
                raise self._too_tall(expr.span)

    def _parse_call_args(self) -> tuple[Expr, ...]:
        # BNF: call_args ::= '(' [ expr { ',' expr } [ ',' ] ] ')'
        open_idx = self.i
        self._enter(open_idx)
        self.i += 1
        args = self._parse_list(")", open_idx, True)
        self.depth -= 1
        return args

    def _parse_list(self, closer: str, open_idx: int, args: bool = False) -> tuple[Expr, ...]:
        # BNF: expr_list ::= [ expr { ',' expr } [ ',' ] ] closer      -- after the opener
        # self.h = the tallest item (0 for none); call `args` count against CompileLimits.params
        k = self.k
        items: list[Expr] = []
        h = 0
        while k[self.i] != closer:
            if args:
                self._count_params(len(items) + 1, self.i, "arguments in one call")
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
        bud = self.budget
        bud.nodes += 1
        if bud.nodes >= bud.next_tick:
            self._count(0)
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
            if self.h >= self.max_height:
                raise self._too_tall(self._span(i))
            self.h += 1
            return Call(span=self._span(i), name=name, args=args)
        if nxt == "::":
            self.i = i + 2
            member = self._name(f"a name after '{name}::'")
            if k[self.i] == "(":
                args = self._parse_call_args()
                if self.h >= self.max_height:
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
                self._count()
                parts.append(Str(span=self.mkspan(self.file, a, b), value=payload))
            else:
                parts.append(self._parse_interp_part(payload))
                if self.h > h:
                    h = self.h
        self.depth -= 1
        interp = Interp(span=self._tspan(i), parts=tuple(parts))
        if h >= self.max_height:
            raise self._too_tall(interp.span)
        self.h = h + 1
        return interp

    def _parse_interp_part(self, stream: TokenStream) -> Expr:
        # BNF: interp_part ::= statements          -- the tokens between '${' and '}'
        sub = type(self)(stream, self.file, self.diags, self.budget, self.depth, self.level + 1)
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
        if self.h >= self.max_height:
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
        keys: list[Span] = []
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
                keys.append(self._tspan(key_idx))
            if k[self.i] == ",":
                self.i += 1
            elif k[self.i] != "}":
                self._close("}", open_idx)
        self.i += 1
        self.depth -= 1
        if h >= self.max_height:
            raise self._too_tall(self._span(open_idx))
        self.h = h + 1
        return MapLit(span=self._span(open_idx), entries=tuple(entries), keys=tuple(keys))


_PRIMARIES: dict[str, Callable[[_ExprParser], Expr]] = {
    "float": _ExprParser._parse_float,
    "true": _ExprParser._parse_bool,
    "false": _ExprParser._parse_bool,
    "interp": _ExprParser._parse_interp,
    "(": _ExprParser._parse_paren,
    "[": _ExprParser._parse_array,
    "#{": _ExprParser._parse_map,
    "{": _ExprParser._parse_block_expr,
    "|": _ExprParser._parse_closure,
    "||": _ExprParser._parse_closure,
    "if": _ExprParser._parse_if,
    "switch": _ExprParser._parse_switch,
}
