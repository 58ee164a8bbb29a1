"""Fixtures shared by the parser tests: parse a source and show its tree as an s-expression.

Each helper is a plain function offered as a session fixture of the same name
(``sx``, ``run``, ``ok``, ``body``, ``expr``, ``errors``); they hold no state, so
hypothesis tests may use them too.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from peerbox.wasm_guests.lang import _ast as A
from peerbox.wasm_guests.lang._budget import CompileLimitExceeded
from peerbox.wasm_guests.lang._diagnostics import Diagnostics
from peerbox.wasm_guests.lang._parser import parse

def _sx(n: object) -> str:
    """A compact s-expression for an AST node (spans left out)."""
    if isinstance(n, A.Int):
        return str(n.value)
    if isinstance(n, A.Float):
        return repr(n.value)
    if isinstance(n, A.Str):
        return json.dumps(n.value, ensure_ascii=False)
    if isinstance(n, A.Bool):
        return "true" if n.value else "false"
    if isinstance(n, A.Unit):
        return "()"
    if isinstance(n, A.Var):
        return n.name
    if isinstance(n, A.ModuleRef):
        return f"{n.module}::{n.name}"
    if isinstance(n, A.Unary):
        return f"({n.op} {_sx(n.operand)})"
    if isinstance(n, (A.Binary, A.Logical)):
        return f"({n.op} {_sx(n.left)} {_sx(n.right)})"
    if isinstance(n, A.Range):
        return f"({'..=' if n.inclusive else '..'} {_sx(n.start)} {_sx(n.end)})"
    if isinstance(n, A.Index):
        return f"(index {_sx(n.obj)} {_sx(n.index)})"
    if isinstance(n, A.Prop):
        return f"(. {_sx(n.obj)} {n.name})"
    if isinstance(n, A.Call):
        name = f"{n.module}::{n.name}" if n.module else n.name
        return "(call " + " ".join([name, *map(_sx, n.args)]) + ")"
    if isinstance(n, A.MethodCall):
        return "(method " + " ".join([_sx(n.obj), n.name, *map(_sx, n.args)]) + ")"
    if isinstance(n, A.ArrayLit):
        return "[" + " ".join(map(_sx, n.items)) + "]"
    if isinstance(n, A.MapLit):
        return "#{" + " ".join(f"{k}: {_sx(v)}" for k, v in n.entries) + "}"
    if isinstance(n, A.Interp):
        return "(interp " + " ".join(map(_sx, n.parts)) + ")"
    if isinstance(n, A.Closure):
        return f"(closure ({' '.join(n.params)}) {_sx(n.body)})"
    if isinstance(n, A.If):
        parts = ["if", _sx(n.cond), _sx(n.then)] + ([_sx(n.else_)] if n.else_ is not None else [])
        return "(" + " ".join(parts) + ")"
    if isinstance(n, A.Switch):
        return "(switch " + " ".join([_sx(n.subject), *map(_sx, n.cases)]) + ")"
    if isinstance(n, A.SwitchCase):
        pats = "_" if not n.patterns else "(" + " ".join(map(_sx, n.patterns)) + ")"
        guard = f" if {_sx(n.guard)}" if n.guard is not None else ""
        return f"(case {pats}{guard} {_sx(n.body)})"
    if isinstance(n, A.BlockExpr):
        return _sx(n.block)
    if isinstance(n, A.Block):
        items = [_sx(s) for s in n.stmts] + ([f"=> {_sx(n.tail)}"] if n.tail is not None else [])
        return "{" + " ".join(items) + "}"
    if isinstance(n, A.Let):
        kw = "const" if n.const else "let"
        return f"({kw} {n.name}" + (f" {_sx(n.value)})" if n.value is not None else ")")
    if isinstance(n, A.Assign):
        return f"({(n.op or '') + '='} {_sx(n.target)} {_sx(n.value)})"
    if isinstance(n, A.ExprStmt):
        return f"{_sx(n.expr)};"
    if isinstance(n, A.While):
        return f"(while {_sx(n.cond)} {_sx(n.body)})"
    if isinstance(n, A.Loop):
        return f"(loop {_sx(n.body)})"
    if isinstance(n, A.For):
        var = f"({n.var} {n.index})" if n.index is not None else n.var
        return f"(for {var} {_sx(n.iterable)} {_sx(n.body)})"
    if isinstance(n, A.Break):
        return "(break)"
    if isinstance(n, A.Continue):
        return "(continue)"
    if isinstance(n, (A.Return, A.Throw)):
        kw = "return" if isinstance(n, A.Return) else "throw"
        return f"({kw})" if n.value is None else f"({kw} {_sx(n.value)})"
    if isinstance(n, A.TryCatch):
        var = f" ({n.var})" if n.var is not None else ""
        return f"(try {_sx(n.body)} catch{var} {_sx(n.handler)})"
    if isinstance(n, A.Import):
        return f"(import {json.dumps(n.path)}" + (f" {n.alias})" if n.alias else ")")
    if isinstance(n, A.FnDef):
        kw = "private fn" if n.private else "fn"
        return f"({kw} {n.name} ({' '.join(n.params)}) {_sx(n.body)})"
    if isinstance(n, A.Script):
        return " ".join([*map(_sx, n.functions), _sx(n.body)])
    raise TypeError(f"no s-expression for {n!r}")


def _run(src: str) -> tuple[A.Script, list[str]]:
    """Parse ``src``: the tree and the errors; a compile limit (which ends parsing) gives an
    empty tree and its diagnostics, the limit's first."""
    diags = Diagnostics()
    diags.add_source("t.rhai", src)
    try:
        script = parse(src, "t.rhai", diags)
    except CompileLimitExceeded as exc:
        span = A.Span("t.rhai", 1, 1, 1, 1)
        empty = A.Script(span=span, body=A.Block(span=span, stmts=(), tail=None), functions=())
        return empty, [f"{d.line}:{d.col}: {d.message}" for d in exc.diagnostics]
    return script, [f"{d.line}:{d.col}: {d.message}" for d in diags.items]


def _ok(src: str) -> A.Script:
    script, errors = _run(src)
    assert errors == [], errors
    return script


def _body(src: str) -> str:
    """The s-expression of a script without errors (its body block)."""
    return _sx(_ok(src).body)


def _expr(src: str) -> str:
    """The s-expression of a script that is one tail expression."""
    script = _ok(src)
    assert script.body.stmts == () and script.body.tail is not None, _sx(script)
    return _sx(script.body.tail)


def _errors(src: str) -> list[str]:
    return _run(src)[1]



@pytest.fixture(name="sx", scope="session")
def sx_fixture() -> Callable[[object], str]:
    """A compact s-expression for an AST node (spans left out)."""
    return _sx


@pytest.fixture(name="run", scope="session")
def run_fixture() -> Callable[[str], tuple[A.Script, list[str]]]:
    """Parse a source: ``(tree, error lines)``; a compile limit gives an empty tree."""
    return _run


@pytest.fixture(name="ok", scope="session")
def ok_fixture() -> Callable[[str], A.Script]:
    """Parse a source that must have no errors; its tree."""
    return _ok


@pytest.fixture(name="body", scope="session")
def body_fixture() -> Callable[[str], str]:
    """The s-expression of an error-free script's body block."""
    return _body


@pytest.fixture(name="expr", scope="session")
def expr_fixture() -> Callable[[str], str]:
    """The s-expression of an error-free script that is one tail expression."""
    return _expr


@pytest.fixture(name="errors", scope="session")
def errors_fixture() -> Callable[[str], list[str]]:
    """The error lines (``line:col: message``) of parsing a source."""
    return _errors
