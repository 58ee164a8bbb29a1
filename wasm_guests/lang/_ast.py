"""The abstract syntax tree of the peerbox language.

Every node is a frozen, slotted, keyword-only dataclass with a ``span`` that
locates it in its source file. The parser builds it; the checker and the code
generator read it. Nothing here knows about WebAssembly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = [
    "Span", "Node",
    "Unit", "Bool", "Int", "Float", "Str", "Interp", "ArrayLit", "MapLit",
    "Var", "ModuleRef", "Unary", "Binary", "Logical", "Index", "Prop", "Call",
    "MethodCall", "Closure", "If", "SwitchCase", "Switch", "BlockExpr", "Range",
    "Let", "Assign", "ExprStmt", "While", "Loop", "For", "Break", "Continue",
    "Return", "Throw", "TryCatch", "FnDef", "Import", "Block", "Script",
    "Expr", "Stmt",
]


@dataclass(frozen=True, slots=True)
class Span:
    """A region of source: 1-based line and column of its first and last+1 char."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    span: Span


# -- expressions --------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Unit(Node):
    """``()``"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Bool(Node):
    value: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Int(Node):
    value: int  # fits in i64; the parser reports literals that do not


@dataclass(frozen=True, slots=True, kw_only=True)
class Float(Node):
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Str(Node):
    value: str  # escapes already decoded


@dataclass(frozen=True, slots=True, kw_only=True)
class Interp(Node):
    """A backtick string: literal ``Str`` parts and ``${expr}`` parts in order."""

    parts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ArrayLit(Node):
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MapLit(Node):
    """``#{a: 1, "two words": 2}``; keys are unique (the parser reports repeats)."""

    entries: tuple[tuple[str, Expr], ...]
    keys: tuple[Span, ...] = field(default=(), compare=False)  # each entry's key, for messages


@dataclass(frozen=True, slots=True, kw_only=True)
class Var(Node):
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleRef(Node):
    """``m::NAME`` used as a value (a module constant)."""

    module: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unary(Node):
    op: str  # "-", "+", "!"
    operand: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Binary(Node):
    # "+", "-", "*", "/", "%", "**", "==", "!=", "<", "<=", ">", ">=",
    # "&", "|", "^", "<<", ">>", "in"
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Logical(Node):
    op: str  # "&&", "||"
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Index(Node):
    obj: Expr
    index: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Prop(Node):
    obj: Expr
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Call(Node):
    """``name(args)`` or ``module::name(args)``."""

    name: str
    args: tuple[Expr, ...]
    module: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MethodCall(Node):
    """``obj.name(args)``; ``f.call(x)`` calls a closure."""

    obj: Expr
    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Closure(Node):
    """``|a, b| expr`` or ``|a| { ... }``; the body is always a Block."""

    params: tuple[str, ...]
    body: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class If(Node):
    cond: Expr
    then: Block
    else_: Block | If | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchCase(Node):
    """``p1 | p2 if guard => body``; ``patterns`` is empty for ``_``."""

    patterns: tuple[Expr, ...]
    guard: Expr | None
    body: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Switch(Node):
    subject: Expr
    cases: tuple[SwitchCase, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockExpr(Node):
    block: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class Range(Node):
    """``a..b`` / ``a..=b``: only meaningful as a ``for`` iterable or in ``in``."""

    start: Expr
    end: Expr
    inclusive: bool


Expr: TypeAlias = (
    Unit | Bool | Int | Float | Str | Interp | ArrayLit | MapLit | Var | ModuleRef | Unary |
    Binary | Logical | Index | Prop | Call | MethodCall | Closure | If | Switch | BlockExpr | Range
)


# -- statements ---------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Let(Node):
    name: str
    value: Expr | None
    const: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Assign(Node):
    """``target = value`` or ``target op= value`` (``op`` is e.g. ``"+"``)."""

    target: Expr  # Var, Index or Prop (the parser reports anything else)
    op: str | None
    value: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class ExprStmt(Node):
    expr: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class While(Node):
    cond: Expr
    body: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class Loop(Node):
    body: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class For(Node):
    """``for x in it`` or ``for (x, i) in it`` (``index`` is then ``"i"``)."""

    var: str
    index: str | None
    iterable: Expr
    body: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class Break(Node):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Continue(Node):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Return(Node):
    value: Expr | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Throw(Node):
    value: Expr | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TryCatch(Node):
    body: Block
    var: str | None
    handler: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class FnDef(Node):
    name: str
    params: tuple[str, ...]
    body: Block
    private: bool = False
    exported: bool = False  # ``export fn``: published (see ``Interface.exports``)
    types: tuple[str | None, ...] = ()  # an ``export fn``'s declared parameter types (None: any)


@dataclass(frozen=True, slots=True, kw_only=True)
class Import(Node):
    """``import "path" as alias;`` (``alias`` None for ``import "path";``)."""

    path: str
    alias: str | None


Stmt: TypeAlias = (
    Let | Assign | ExprStmt | While | Loop | For | Break | Continue | Return | Throw | TryCatch |
    Import
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Block(Node):
    """Statements, then an optional tail expression that is the block's value.

    The parser makes the last statement the ``tail`` when it is an expression
    with no ``;`` after it (``if``, ``switch`` and ``{}`` blocks count, even
    without ``;`` before the next statement).
    """

    stmts: tuple[Stmt, ...]
    tail: Expr | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Script(Node):
    """One source file: its top-level body and its functions."""

    body: Block
    functions: tuple[FnDef, ...]
