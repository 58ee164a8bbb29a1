"""Parser tests: the tree of every construct, precedence, tail rules, error
messages with positions, recovery, nesting limits and fuzzing.

Trees are compared as s-expressions (see ``sx``), which ignore spans; spans
have their own tests.
"""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbox.wasm_guests.lang import _ast as A
from peerbox.wasm_guests.lang._budget import CompileLimitExceeded
from peerbox.wasm_guests.lang._diagnostics import Diagnostics
from peerbox.wasm_guests.lang._parser import MAX_AST_HEIGHT, parse


# -- helpers --------------------------------------------------------------------

def sx(n: object) -> str:
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
        return f"({n.op} {sx(n.operand)})"
    if isinstance(n, (A.Binary, A.Logical)):
        return f"({n.op} {sx(n.left)} {sx(n.right)})"
    if isinstance(n, A.Range):
        return f"({'..=' if n.inclusive else '..'} {sx(n.start)} {sx(n.end)})"
    if isinstance(n, A.Index):
        return f"(index {sx(n.obj)} {sx(n.index)})"
    if isinstance(n, A.Prop):
        return f"(. {sx(n.obj)} {n.name})"
    if isinstance(n, A.Call):
        name = f"{n.module}::{n.name}" if n.module else n.name
        return "(call " + " ".join([name, *map(sx, n.args)]) + ")"
    if isinstance(n, A.MethodCall):
        return "(method " + " ".join([sx(n.obj), n.name, *map(sx, n.args)]) + ")"
    if isinstance(n, A.ArrayLit):
        return "[" + " ".join(map(sx, n.items)) + "]"
    if isinstance(n, A.MapLit):
        return "#{" + " ".join(f"{k}: {sx(v)}" for k, v in n.entries) + "}"
    if isinstance(n, A.Interp):
        return "(interp " + " ".join(map(sx, n.parts)) + ")"
    if isinstance(n, A.Closure):
        return f"(closure ({' '.join(n.params)}) {sx(n.body)})"
    if isinstance(n, A.If):
        parts = ["if", sx(n.cond), sx(n.then)] + ([sx(n.else_)] if n.else_ is not None else [])
        return "(" + " ".join(parts) + ")"
    if isinstance(n, A.Switch):
        return "(switch " + " ".join([sx(n.subject), *map(sx, n.cases)]) + ")"
    if isinstance(n, A.SwitchCase):
        pats = "_" if not n.patterns else "(" + " ".join(map(sx, n.patterns)) + ")"
        guard = f" if {sx(n.guard)}" if n.guard is not None else ""
        return f"(case {pats}{guard} {sx(n.body)})"
    if isinstance(n, A.BlockExpr):
        return sx(n.block)
    if isinstance(n, A.Block):
        items = [sx(s) for s in n.stmts] + ([f"=> {sx(n.tail)}"] if n.tail is not None else [])
        return "{" + " ".join(items) + "}"
    if isinstance(n, A.Let):
        kw = "const" if n.const else "let"
        return f"({kw} {n.name}" + (f" {sx(n.value)})" if n.value is not None else ")")
    if isinstance(n, A.Assign):
        return f"({(n.op or '') + '='} {sx(n.target)} {sx(n.value)})"
    if isinstance(n, A.ExprStmt):
        return f"{sx(n.expr)};"
    if isinstance(n, A.While):
        return f"(while {sx(n.cond)} {sx(n.body)})"
    if isinstance(n, A.Loop):
        return f"(loop {sx(n.body)})"
    if isinstance(n, A.For):
        var = f"({n.var} {n.index})" if n.index is not None else n.var
        return f"(for {var} {sx(n.iterable)} {sx(n.body)})"
    if isinstance(n, A.Break):
        return "(break)"
    if isinstance(n, A.Continue):
        return "(continue)"
    if isinstance(n, (A.Return, A.Throw)):
        kw = "return" if isinstance(n, A.Return) else "throw"
        return f"({kw})" if n.value is None else f"({kw} {sx(n.value)})"
    if isinstance(n, A.TryCatch):
        var = f" ({n.var})" if n.var is not None else ""
        return f"(try {sx(n.body)} catch{var} {sx(n.handler)})"
    if isinstance(n, A.Import):
        return f"(import {json.dumps(n.path)}" + (f" {n.alias})" if n.alias else ")")
    if isinstance(n, A.FnDef):
        kw = "private fn" if n.private else "fn"
        return f"({kw} {n.name} ({' '.join(n.params)}) {sx(n.body)})"
    if isinstance(n, A.Script):
        return " ".join([*map(sx, n.functions), sx(n.body)])
    raise TypeError(f"no s-expression for {n!r}")


def run(src: str) -> tuple[A.Script, list[str]]:
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


def ok(src: str) -> A.Script:
    script, errors = run(src)
    assert errors == [], errors
    return script


def body(src: str) -> str:
    """The s-expression of a script without errors (its body block)."""
    return sx(ok(src).body)


def expr(src: str) -> str:
    """The s-expression of a script that is one tail expression."""
    script = ok(src)
    assert script.body.stmts == () and script.body.tail is not None, sx(script)
    return sx(script.body.tail)


def errors(src: str) -> list[str]:
    return run(src)[1]


# -- expressions ------------------------------------------------------------------

@pytest.mark.parametrize("src, tree", [
    ("42", "42"),
    ("0xff + 0o17 + 0b11", "(+ (+ 255 15) 3)"),
    ("1_000_000", "1000000"),
    ("1.5", "1.5"),
    ("2.0e+5", "200000.0"),
    ("1e10", "10000000000.0"),
    ('"hi\\n"', '"hi\\n"'),
    ("'c'", '"c"'),
    ("true", "true"),
    ("false", "false"),
    ("()", "()"),
    ("(1)", "1"),
    ("((x))", "x"),
    ("x", "x"),
    ("[]", "[]"),
    ("[1, 2, 3]", "[1 2 3]"),
    ("[1, 2,]", "[1 2]"),
    ("[[1], []]", "[[1] []]"),
    ("#{}", "#{}"),
    ('#{a: 1, "two words": 2,}', "#{a: 1 two words: 2}"),
    ("#{a: #{b: [1]}}", "#{a: #{b: [1]}}"),
    ("f()", "(call f)"),
    ("f(1, x,)", "(call f 1 x)"),
    ("m::f(1)", "(call m::f 1)"),
    ("m::NAME", "m::NAME"),
    ("x.len()", "(method x len)"),
    ("x.push(1, 2)", "(method x push 1 2)"),
    ("f.call(x)", "(method f call x)"),
    ("x.name", "(. x name)"),
    ("x[0]", "(index x 0)"),
    ("a.b[1].c(2)[3]", "(index (method (index (. a b) 1) c 2) 3)"),
    ('"abc".len()', '(method "abc" len)'),
    ("1.to_string()", "(method 1 to_string)"),
    ("[1, 2][0]", "(index [1 2] 0)"),
    ("f(x)[0].y", "(. (index (call f x) 0) y)"),
    ("-x", "(- x)"),
    ("+x", "(+ x)"),
    ("!x", "(! x)"),
    ("!!x", "(! (! x))"),
    ("- -x", "(- (- x))"),
    ("-x.len()", "(- (method x len))"),
    ("-9223372036854775808", "-9223372036854775808"),
    ("9223372036854775807", "9223372036854775807"),
    ("1..5", "(.. 1 5)"),
    ("1..=5", "(..= 1 5)"),
    ("a..b + 1", "(.. a (+ b 1))"),
    ("x in [1, 2]", "(in x [1 2])"),
    ("|x| x + 1", "(closure (x) {=> (+ x 1)})"),
    ("|a, b| { let c = a; c + b }", "(closure (a b) {(let c a) => (+ c b)})"),
    ("|| 42", "(closure () {=> 42})"),
    ("|| { }", "(closure () {})"),
    ("arr.map(|x| x * 2)", "(method arr map (closure (x) {=> (* x 2)}))"),
    ("f(|a, b| a < b, 1)", "(call f (closure (a b) {=> (< a b)}) 1)"),
    ("{ 1 }", "{=> 1}"),
    ("{ let a = 1; a }", "{(let a 1) => a}"),
    ("`x = ${x + 1}!`", '(interp "x = " (+ x 1) "!")'),
    ("`${a}${b}`", "(interp a b)"),
    ("`plain`", '"plain"'),
    ("`a ${ let y = 2; y * 3 } b`", '(interp "a " {(let y 2) => (* y 3)} " b")'),
    ("`${ `in ${x}` }`", "(interp (interp \"in \" x))"),
    ("`${ #{a: 1}.a }`", "(interp (. #{a: 1} a))"),
    ("`${ \"}\" }`", '(interp "}")'),
])
def test_expressions(src: str, tree: str) -> None:
    assert expr(src) == tree


@pytest.mark.parametrize("src, tree", [
    ("1 + 2 * 3", "(+ 1 (* 2 3))"),
    ("1 * 2 + 3", "(+ (* 1 2) 3)"),
    ("1 - 2 - 3", "(- (- 1 2) 3)"),
    ("8 / 4 / 2", "(/ (/ 8 4) 2)"),
    ("7 % 3 * 2", "(* (% 7 3) 2)"),
    ("2 ** 3 ** 2", "(** 2 (** 3 2))"),
    ("2 ** 3 ** 2 ** 1", "(** 2 (** 3 (** 2 1)))"),
    ("-2 ** 2", "(** (- 2) 2)"),
    ("2 * 3 ** 2", "(* 2 (** 3 2))"),
    ("2 ** 3 * 2", "(* (** 2 3) 2)"),
    ("1 << 2 ** 3", "(** (<< 1 2) 3)"),
    ("1 + 2 << 3", "(+ 1 (<< 2 3))"),
    ("a || b && c", "(|| a (&& b c))"),
    ("a && b || c", "(|| (&& a b) c)"),
    ("a || b || c", "(|| (|| a b) c)"),
    ("1 < 2 == true", "(== (< 1 2) true)"),
    ("a == b != c", "(!= (== a b) c)"),
    ('"a" in m && x', '(&& (in "a" m) x)'),
    ("x in a == y in b", "(== (in x a) (in y b))"),
    ("a < b in c", "(in (< a b) c)"),
    ("a | b & c", "(| a (& b c))"),
    ("a ^ b & c", "(^ a (& b c))"),
    ("a | b ^ c", "(^ (| a b) c)"),
    ("a & b == c", "(& a (== b c))"),
    ("a || b | c", "(| (|| a b) c)"),
    ("a >= b + 1", "(>= a (+ b 1))"),
    ("1..2 == r", "(== (.. 1 2) r)"),
    ("0..n - 1", "(.. 0 (- n 1))"),
    ("!a && b", "(&& (! a) b)"),
    ("-a * -b", "(* (- a) (- b))"),
    ("(1 + 2) * 3", "(* (+ 1 2) 3)"),
    ("a.b + c[0] * d()", "(+ (. a b) (* (index c 0) (call d)))"),
])
def test_precedence_and_associativity(src: str, tree: str) -> None:
    assert expr(src) == tree


def test_logical_vs_binary_nodes() -> None:
    tail = ok("a && b | c").body.tail
    assert isinstance(tail, A.Binary) and tail.op == "|"
    assert isinstance(tail.left, A.Logical) and tail.left.op == "&&"


# -- if / switch ------------------------------------------------------------------

@pytest.mark.parametrize("src, tree", [
    ("if a { 1 }", "(if a {=> 1})"),
    ("if a { 1 } else { 2 }", "(if a {=> 1} {=> 2})"),
    ("if a { 1 } else if b { 2 } else { 3 }", "(if a {=> 1} (if b {=> 2} {=> 3}))"),
    ("if a {} else if b {} else if c {}", "(if a {} (if b {} (if c {})))"),
    ("if x == #{a: 1} { }", "(if (== x #{a: 1}) {})"),
    ("switch x { 1 => 10, 2 | 3 => 20, _ => 0 }",
     "(switch x (case (1) 10) (case (2 3) 20) (case _ 0))"),
    ("switch x { 1 => { a; b } 2 => c, }", "(switch x (case (1) {a; => b}) (case (2) c))"),
    ("switch x { 4..7 => 1, 7..=9 => 2 }", "(switch x (case ((.. 4 7)) 1) (case ((..= 7 9)) 2))"),
    ("switch x { 3 if y > 1 => 1, 3 => 2 }",
     "(switch x (case (3) if (> y 1) 1) (case (3) 2))"),
    ("switch x { -1 => 1, \"a\" => 2, [1] => 3 }",
     '(switch x (case ((- 1)) 1) (case ("a") 2) (case ([1]) 3))'),
    ("switch x { }", "(switch x)"),
    ("switch x { a => |y| y, _ => || 0 }",
     "(switch x (case (a) (closure (y) {=> y})) (case _ (closure () {=> 0})))"),
    ("switch x.kind() { 1 => 2 }", "(switch (method x kind) (case (1) 2))"),
])
def test_if_and_switch(src: str, tree: str) -> None:
    assert expr(src) == tree


def test_if_as_expression_value() -> None:
    assert body("let x = if a { 1 } else { 2 };") == "{(let x (if a {=> 1} {=> 2}))}"
    assert body("let y = switch z { _ => 1 } + 1;") == "{(let y (+ (switch z (case _ 1)) 1))}"


# -- statements -------------------------------------------------------------------

@pytest.mark.parametrize("src, tree", [
    ("let x = 1;", "{(let x 1)}"),
    ("let x;", "{(let x)}"),
    ("const X = 2;", "{(const X 2)}"),
    ("x = 1;", "{(= x 1)}"),
    ("x += 1; x -= 1; x *= 2; x /= 2; x %= 3;", "{(+= x 1) (-= x 1) (*= x 2) (/= x 2) (%= x 3)}"),
    ("x &= 1; x |= 1; x ^= 1; x <<= 1; x >>= 1; x **= 2;",
     "{(&= x 1) (|= x 1) (^= x 1) (<<= x 1) (>>= x 1) (**= x 2)}"),
    ("a.b = 1;", "{(= (. a b) 1)}"),
    ("a[0] = 1;", "{(= (index a 0) 1)}"),
    ("db.users[0].tags[i] += 1;", "{(+= (index (. (index (. db users) 0) tags) i) 1)}"),
    ("while x < 10 { x += 1; }", "{(while (< x 10) {(+= x 1)})}"),
    ("loop { break; }", "{(loop {(break)})}"),
    ("loop { continue }", "{(loop {(continue)})}"),
    ("for x in xs { }", "{(for x xs {})}"),
    ("for x in 0..10 { print(x); }", "{(for x (.. 0 10) {(call print x);})}"),
    ("for (x, i) in arr { }", "{(for (x i) arr {})}"),
    ("for x in range(0, 3) {}", "{(for x (call range 0 3) {})}"),
    ("return;", "{(return)}"),
    ("return 1;", "{(return 1)}"),
    ("return", "{(return)}"),
    ("throw;", "{(throw)}"),
    ('throw "bad";', '{(throw "bad")}'),
    ("try { f() } catch (e) { g(e) }", "{(try {=> (call f)} catch (e) {=> (call g e)})}"),
    ("try { } catch { }", "{(try {} catch {})}"),
    ("{ let a = 1; }", "{=> {(let a 1)}}"),
    ('import "lib" as m;', '{(import "lib" m)}'),
    ('import "lib";', '{(import "lib")}'),
    (";;", "{}"),
    ("", "{}"),
    ("f(1);", "{(call f 1);}"),
])
def test_statements(src: str, tree: str) -> None:
    assert body(src) == tree


def test_functions_are_collected_in_order() -> None:
    script = ok("fn a(x, y) { x + y }\nlet v = a(1, 2);\nprivate fn b() { return 1; }\nfn c() {}\nv")
    assert [f.name for f in script.functions] == ["a", "b", "c"]
    assert [f.private for f in script.functions] == [False, True, False]
    assert sx(script) == ("(fn a (x y) {=> (+ x y)}) (private fn b () {(return 1)}) "
                          "(fn c () {}) {(let v (call a 1 2)) => v}")


# -- semicolons and tails -----------------------------------------------------------

@pytest.mark.parametrize("src, tree", [
    ("1; 2", "{1; => 2}"),
    ("1; 2;", "{1; 2;}"),
    ("let a = 1; a", "{(let a 1) => a}"),
    ("if a { 1 } else { 2 }", "{=> (if a {=> 1} {=> 2})}"),
    ("if a { 1 } else { 2 };", "{(if a {=> 1} {=> 2});}"),
    ("if a { 1 } x", "{(if a {=> 1}); => x}"),
    ("if a { 1 } if b { 2 }", "{(if a {=> 1}); => (if b {=> 2})}"),
    ("switch x { _ => 1 } y", "{(switch x (case _ 1)); => y}"),
    ("switch x { _ => 1 }", "{=> (switch x (case _ 1))}"),
    ("{ 1 } { 2 }", "{{=> 1}; => {=> 2}}"),
    ("{ 1 }", "{=> {=> 1}}"),
    ("while a { } x", "{(while a {}) => x}"),
    ("loop { } for x in y { } x", "{(loop {}) (for x y {}) => x}"),
    ("try { } catch { } 5", "{(try {} catch {}) => 5}"),
    ("fn f() { 1 } f()", "{=> (call f)}"),
    ("let x = 1", "{(let x 1)}"),
    ("x = 1", "{(= x 1)}"),
    ("{ let a = 1 }", "{=> {(let a 1)}}"),
    ("fn f() { return 5 }", "{}"),
    ("let f = |x| { x };", "{(let f (closure (x) {=> x}))}"),
    ("if a { b; c }", "{=> (if a {b; => c})}"),
    ("if a { b; c; }", "{=> (if a {b; c;})}"),
])
def test_semicolons_and_tail(src: str, tree: str) -> None:
    assert body(src) == tree


def test_tail_is_last_expression_without_semicolon() -> None:
    script = ok("let x = 1;\nx + 1\n")
    assert isinstance(script.body.tail, A.Binary)
    assert len(script.body.stmts) == 1


def test_block_statement_without_semicolon_before_next() -> None:
    script = ok("fn f() { if x { 1 } else { 2 } }")
    assert isinstance(script.functions[0].body.tail, A.If)


# -- spans ---------------------------------------------------------------------------

def test_spans_are_one_based_character_columns() -> None:
    script = ok('let s = "héllo";\n  s + t\n')
    let = script.body.stmts[0]
    assert let.span == A.Span("t.rhai", 1, 1, 1, 16)
    assert isinstance(let, A.Let) and let.value is not None
    assert let.value.span == A.Span("t.rhai", 1, 9, 1, 16)
    tail = script.body.tail
    assert isinstance(tail, A.Binary)
    assert tail.span == A.Span("t.rhai", 2, 3, 2, 8)
    assert tail.right.span == A.Span("t.rhai", 2, 7, 2, 8)


def test_span_of_multiline_constructs() -> None:
    script = ok("fn f(a) {\n  a\n}\nif x {\n 1\n} else {\n 2\n}")
    assert script.functions[0].span == A.Span("t.rhai", 1, 1, 3, 2)
    assert script.body.tail is not None
    assert script.body.tail.span == A.Span("t.rhai", 4, 1, 8, 2)
    assert script.span.line == 1 and script.span.col == 1


def test_span_of_interpolated_parts() -> None:
    tail = ok("`ab ${x} c`").body.tail
    assert isinstance(tail, A.Interp)
    assert [p.span.col for p in tail.parts] == [2, 7, 9]


def test_negative_min_int_literal_span() -> None:
    tail = ok("-9223372036854775808").body.tail
    assert tail == A.Int(span=A.Span("t.rhai", 1, 1, 1, 21), value=-(2 ** 63))


# -- errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("src, expected", [
    ("let x = 1 let y = 2;", ["1:11: expected ';' after statement, found 'let'"]),
    ("let x = 1\nlet y = 2", ["2:1: expected ';' after statement, found 'let'"]),
    ("f(1) g(2);", ["1:6: expected ';' after statement, found 'g'"]),
    ("1 2", ["1:3: expected ';' after statement, found '2'"]),
    ("else { 1 }", ["1:1: 'else' without 'if'"]),
    ("if a { } else", ["1:14: expected '{' or 'if' after 'else', found end of input"]),
    ("if x = 1 { }", ["1:6: '=' is assignment; did you mean '=='?"]),
    ("while x = 1 { }", ["1:9: '=' is assignment; did you mean '=='?"]),
    ("let a = b = c;", ["1:11: '=' is assignment; did you mean '=='?"]),
    ("f(a = 1);", ["1:5: '=' is assignment; did you mean '=='?"]),
    ("if x { ", ["1:8: expected '}' to close '{' at 1:6, found end of input"]),
    ("fn f() {\n  if x {\n    1\n", ["4:1: expected '}' to close '{' at 2:8, found end of input"]),
    ("let x = (1 + 2;", ["1:15: expected ')' to close '(' at 1:9, found ';'"]),
    ("f(1, 2;", ["1:7: expected ')' to close '(' at 1:2, found ';'"]),
    ("f(1 2)", ["1:5: expected ')' to close '(' at 1:2, found '2'"]),
    ("let a = [1, 2;", ["1:14: expected ']' to close '[' at 1:9, found ';'"]),
    ("a[1;", ["1:4: expected ']' to close '[' at 1:2, found ';'"]),
    ("let m = #{a: 1;", ["1:15: expected '}' to close '#{' at 1:9, found ';'"]),
    ("(1, 2)", ["1:3: expected ')' to close '(' at 1:1, found ','"]),
    ("}", ["1:1: unexpected '}' with no '{' to close"]),
    ("x }", ["1:3: unexpected '}' with no '{' to close"]),
    ("let = 5;", ["1:5: expected a variable name after 'let', found '='"]),
    ("let if = 3;", ["1:5: expected a variable name after 'let', found 'if'"]),
    ("let 5 = 3;", ["1:5: expected a variable name after 'let', found '5'"]),
    ("let x 5;", ["1:7: expected '=' or ';' after 'let x', found '5'"]),
    ("const X;", ["1:1: constant 'X' needs a value: const X = ..."]),
    ("const = 1;", ["1:7: expected a constant name after 'const', found '='"]),
    ("let this = 1;", ["1:5: 'this' is a reserved keyword and cannot be a name"]),
    ("let var = 1;", ["1:5: 'var' is a reserved keyword and cannot be a name"]),
    ("fn do() {}", ["1:4: 'do' is a reserved keyword and cannot be a name"]),
    ("yield", ["1:1: 'yield' is a reserved keyword"]),
    ("1 = 2;", ["1:1: cannot assign to this expression"]),
    ("f() = 3;", ["1:1: cannot assign to this expression"]),
    ("f().x = 3;", ["1:1: cannot assign to this expression"]),
    ("m::X = 2;", ["1:1: cannot assign to this expression"]),
    ("(a) + 1 = 2;", ["1:2: cannot assign to this expression"]),
    ("a += 1 += 2;", ["1:8: expected ';' after statement, found '+='"]),
    ("fn f() { fn g() {} }", ["1:10: functions can only be defined at the top level"]),
    ("if x { private fn g() {} }", ["1:8: functions can only be defined at the top level"]),
    ("{ import \"a\" as b; }", ["1:3: imports can only be at the top level"]),
    ("import x;", ["1:8: expected a module path string after 'import', found 'x'"]),
    ("import \"m\" as ;", ["1:15: expected a module name after 'as', found ';'"]),
    ("private let x = 1;", ["1:9: expected 'fn' after 'private', found 'let'"]),
    ("fn (a) {}", ["1:4: expected a function name after 'fn', found '('"]),
    ("fn f {}", ["1:6: expected '(' after 'fn f', found '{'"]),
    ("fn f(a b) {}", ["1:8: expected ')' to close '(' at 1:5, found 'b'"]),
    ("fn f(a) a", ["1:9: expected '{' to start the body of function 'f', found 'a'"]),
    ("fn f(a, a) {}", ["1:9: duplicate parameter 'a'"]),
    ("|a, b, a| a", ["1:8: duplicate parameter 'a'"]),
    ("|a b| a", ["1:4: expected '|' to close '|' at 1:1, found 'b'"]),
    ("for x y { }", ["1:7: expected 'in' after the loop variable, found 'y'"]),
    ("for in y { }", ["1:5: expected a loop variable name after 'for', found 'in'"]),
    ("for (a, a) in b {}", ["1:9: duplicate loop variable 'a'"]),
    ("for (a) in b {}", ["1:7: expected ',' and an index variable name, found ')'"]),
    ("for x in y z", ["1:12: expected '{' after the for iterable, found 'z'"]),
    ("loop x", ["1:6: expected '{' after 'loop', found 'x'"]),
    ("try { }", ["1:8: expected 'catch' after the try block, found end of input"]),
    ("try { } catch (e { }", ["1:18: expected ')' to close '(' at 1:15, found '{'"]),
    ("try x", ["1:5: expected '{' after 'try', found 'x'"]),
    ("if x 1", ["1:6: expected '{' after the if condition, found '1'"]),
    ("while x 1", ["1:9: expected '{' after the while condition, found '1'"]),
    ("switch x 1", ["1:10: expected '{' after the switch subject, found '1'"]),
    ("switch x { _ => 1, 2 => 3 }", ["1:12: the default case '_' must be the last case"]),
    ("switch x { _ => 1, _ => 3 }", ["1:12: the default case '_' must be the last case"]),
    ("switch x { 1 => 2 3 => 4 }", ["1:19: expected ',' or '}' after the switch case, found '3'"]),
    ("switch x { _ if y => 1 }", ["1:14: the default case '_' cannot have a condition"]),
    ("switch x { 1 | _ => 1 }", ["1:16: '_' must be the only pattern of its case"]),
    ("switch x { 1 2 }", ["1:14: expected '=>' after the case pattern, found '2'"]),
    ("switch x { 1 => 2", ["1:18: expected '}' to close '{' at 1:10, found end of input"]),
    ("#{a: 1, a: 2}", ["1:9: duplicate map key 'a'"]),
    ('#{"a b": 1, "a b": 2}', ["1:13: duplicate map key 'a b'"]),
    ("#{ if: 1 }", ["1:4: expected a map key (a name or a string), found 'if'"]),
    ("#{ a 1 }", ["1:6: expected ':' after map key 'a', found '1'"]),
    ("a.;", ["1:3: expected a property or method name after '.', found ';'"]),
    ("a.if", ["1:3: expected a property or method name after '.', found 'if'"]),
    ("m::", ["1:4: expected a name after 'm::', found end of input"]),
    ("x +", ["1:4: expected an expression, found end of input"]),
    ("x + ;", ["1:5: expected an expression, found ';'"]),
    ("let x = catch;", ["1:9: expected an expression, found 'catch'"]),
    ("let s = \"abc\" \"def\";", ["1:15: expected ';' after statement, found a string"]),
    ("9223372036854775808", ["1:1: integer literal too large"]),
    ("-9223372036854775809", ["1:2: integer literal too large"]),
    ("0x1_0000_0000_0000_0000", ["1:1: integer literal too large"]),
    ("let x = `a ${} b`;", ["1:12: expected an expression inside '${}'"]),
    ("let x = `a ${ 1 + } b`;", ["1:19: expected an expression, found '}'"]),
    ("`${ a b }`", ["1:7: expected ';' after statement, found 'b'"]),
    ("`${ fn f() {} }`", ["1:5: functions can only be defined at the top level"]),
    ("x?", ["1:2: expected ';' after statement, found '?'"]),
])
def test_error_messages(src: str, expected: list[str]) -> None:
    assert errors(src) == expected


@pytest.mark.parametrize("src, expected", [
    ("let x = @;", ["1:9: unexpected character '@'", "1:10: expected an expression, found ';'"]),
    ('let s = "abc;\nlet t = 1;', ["1:9: unterminated string",
                                   "2:1: expected ';' after statement, found 'let'"]),
    ("/* open\nlet x = 1;", ["1:1: unterminated block comment"]),
    ('"\\q"', ["1:2: invalid escape sequence '\\q'"]),
])
def test_lexical_errors_reach_the_diagnostics(src: str, expected: list[str]) -> None:
    assert errors(src) == expected


def test_several_errors_in_one_file_are_all_reported() -> None:
    src = (
        "let x = 1 +;\n"          # 1
        "let y = ;\n"             # 2
        "z(;\n"                   # 3
        "fn ok(a) { a }\n"        # 4
        "let w = 2 +* 3;\n"       # 5
        "if a = b { }\n"          # 6
        "fn g() { let = 1; let q = (; q }\n"  # 7
        "let fine = ok(1);\n"     # 8
    )
    script, errs = run(src)
    assert errs == [
        "1:12: expected an expression, found ';'",
        "2:9: expected an expression, found ';'",
        "3:3: expected an expression, found ';'",
        "5:12: expected an expression, found '*'",
        "6:6: '=' is assignment; did you mean '=='?",
        "7:14: expected a variable name after 'let', found '='",
        "7:28: expected an expression, found ';'",
    ]
    # recovery keeps the good parts
    assert [f.name for f in script.functions] == ["ok", "g"]
    assert sx(script.body.stmts[-1]) == "(let fine (call ok 1))"


def test_recovery_skips_nested_braces_of_the_broken_statement() -> None:
    src = "switch x { 1 => , 2 => { 3 } }\nlet after = 1;\n"
    script, errs = run(src)
    assert errs == ["1:17: expected an expression, found ','"]
    assert sx(script.body) == "{(let after 1)}"


def test_error_limit_stops_parsing() -> None:
    diags = Diagnostics(limit=5)
    src = "let = 1;\n" * 50
    diags.add_source("t.rhai", src)
    parse(src, "t.rhai", diags)
    assert len(diags.items) == 5


def test_one_error_for_several_unclosed_blocks_at_end() -> None:
    assert errors("fn f() {\n  while x {\n    if y {\n") == [
        "4:1: expected '}' to close '{' at 3:10, found end of input"]


# -- nesting limits and robustness ---------------------------------------------------------

@pytest.mark.parametrize("opener, closer", [
    ("(", ")"), ("[", "]"), ("{", "}"), ("#{a: ", "}"), ("f(", ")"), ("a[", "]"),
    ("if x { ", "}"), ("|x| ", ""), ("`${", "}`"), ("switch ", " {}"),
])
def test_nesting_too_deep(opener: str, closer: str) -> None:
    src = opener * 300 + "1" + closer * 300
    errs = errors(src)
    assert len(errs) == 1 and errs[0].endswith("nesting too deep (compile limit 'depth' is 200)"), errs


@pytest.mark.parametrize("opener, closer, depth", [
    ("(", ")", 199), ("[", "]", 199), ("f(", ")", 199), ("`${", "}`", 199),
    ("{", "}", 120), ("if a { ", "}", 120),
])
def test_nesting_within_the_limits_is_fine(opener: str, closer: str, depth: int) -> None:
    assert errors(opener * depth + "1" + closer * depth) == []


def _height(node: object) -> int:
    """Nodes on the longest root-to-leaf path (iterative, for any depth)."""
    best = 0
    stack = [(node, 1)]
    while stack:
        n, d = stack.pop()
        best = max(best, d)
        for name in getattr(n, "__slots__", ()):
            value = getattr(n, name)
            items = value if isinstance(value, tuple) else (value,)
            for item in items:
                if isinstance(item, tuple):  # map entries
                    item = item[1]
                if isinstance(item, A.Node) and not isinstance(item, A.Span):
                    stack.append((item, d + 1))
    return best


CHAINS = [
    ("1", " + 1"), ("", "-"), ("", "!"), ("x", ".y"), ("x", "[0]"), ("2", " ** 2"),
    ("f(x)", ".g(1)"), ("a", " && a"), ("a", " .. a"),
]


@pytest.mark.parametrize("first, link", CHAINS)
def test_operator_chains_count_toward_the_height_limit(first: str, link: str) -> None:
    short = first + link * 200 + ("1" if not first else "")
    script, errs = run(short)
    assert errs == []
    assert _height(script.body) <= MAX_AST_HEIGHT + 1
    long = first + link * 20000 + ("1" if not first else "")
    errs = errors(long)
    assert len(errs) == 1 and "expression too complex" in errs[0], errs


def test_long_else_if_chain_is_too_complex() -> None:
    assert errors("if a {} " + "else if a {} " * 100) == []
    errs = errors("if a {} " + "else if a {} " * 20000)
    assert errs == ["1:1: expression too complex (compile limit 'height' is 256); "
                    "split it up with 'let'"]


def test_too_complex_statement_is_dropped_and_parsing_goes_on() -> None:
    script, errs = run("let a = 1;\nlet b = " + "a + " * 300 + "a;\nlet c = 2 +;\nc")
    assert errs == [
        "2:9: expression too complex (compile limit 'height' is 256); split it up with 'let'",
        "3:12: expected an expression, found ';'",
    ]
    assert sx(script.body) == "{(let a 1) => c}"


@pytest.mark.parametrize("src", [
    "(" * 199 + "x" + " + x" * 300 + ")" * 199,
    "((" * 50 + "x" + (" + x)" * 2) * 50 + " + x" * 200,
    "[" * 150 + "x" + " + x" * 120 + "]" * 150,
    "{" * 100 + "-" * 100 + "x" + "}" * 100,
    "f(" * 100 + "x" + ".y" * 100 + ")" * 100,
    "`${" * 100 + "!" * 100 + "x" + "}`" * 100,
    "if a { " * 60 + "x" + " + 1" * 150 + " }" * 60,
    "|a| " * 100 + "a" + " * a" * 100,
    "switch x { _ => " * 60 + "1" + " + 1" * 100 + " }" * 60,
    "let v = #{a: " * 100 + "x" + " - x" * 100 + "}" * 100 + ";",
])
def test_every_returned_tree_respects_the_height_limit(src: str) -> None:
    script, _ = run(src)
    assert _height(script.body) <= MAX_AST_HEIGHT + 1
    for fn in script.functions:
        assert _height(fn) <= MAX_AST_HEIGHT


def test_parse_restores_the_recursion_limit() -> None:
    before = sys.getrecursionlimit()
    errors("(" * 250)
    assert sys.getrecursionlimit() == before


def test_deep_nesting_inside_a_deep_caller_stack() -> None:
    def recurse(n: int) -> list[str]:
        return errors("(" * 199 + "1" + ")" * 199) if n == 0 else recurse(n - 1)
    assert recurse(400) == []


# -- fuzzing ---------------------------------------------------------------------------------

_FRAGMENTS = [
    "let", "const", "fn", "private", "import", "as", "if", "else", "while", "loop", "for",
    "in", "break", "continue", "return", "throw", "try", "catch", "switch", "true", "false",
    "this", "x", "y", "_", "f", "m", "::", "(", ")", "[", "]", "{", "}", "#{", "|", "||",
    "&&", ",", ";", ":", "=>", "=", "+=", "**=", "**", "-", "!", ".", "..", "..=", "1",
    "0x", "0xFF", "9223372036854775808", "1.5", "1e5", '"a"', '"\\q"', "'c'", "'", '"',
    "`a${x}b`", "`${", "`", "${", "/*", "*/", "//", "\n", " ", "@", "#", "$", "\\", "\r\n",
    "é", "\x00",
]

_FUZZ = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.text(max_size=200))
def test_random_text_never_raises(src: str) -> None:
    script = parse(src, "f.rhai", Diagnostics())
    assert isinstance(script, A.Script)


@_FUZZ
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=60), st.sampled_from(["", " "]))
def test_random_token_soup_never_raises(parts: list[str], sep: str) -> None:
    src = sep.join(parts)
    diags = Diagnostics()
    diags.add_source("f.rhai", src)
    script = parse(src, "f.rhai", diags)
    assert isinstance(script, A.Script)
    for d in diags.items:
        assert d.line >= 1 and d.col >= 1 and d.message


@_FUZZ
@given(st.text(alphabet="(){}[]#|`$ab1;,=+-.\n\"'", max_size=300))
def test_random_brackets_never_raise(src: str) -> None:
    parse(src, "f.rhai", Diagnostics())


_WRAPPERS = [
    "({})", "[{}]", "f({})", "{{ ({}) }}", "{} + 1", "1 * {}", "-{}", "!{}", "{}.y", "{}[0]",
    "{}.m(1)", "`${{({})}}`", "|a| {}", "if a {{ ({}) }}", "if a {{ }} else {{ ({}) }}",
    "switch a {{ _ => ({}) }}", "#{{k: {}}}", "{{ let v = {}; v }}", "{} ** 2", "2 ** {}",
    "{} && b", "{}..5", "m::f({})", "{{ return {}; }}", "{{ while {} {{ }} }}",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_WRAPPERS), min_size=1, max_size=600))
def test_random_nesting_never_exceeds_the_height_limit(wrappers: list[str]) -> None:
    src = "x"
    for w in wrappers:
        src = w.format(src)
    script, errs = run(f"let r = {src};")
    assert _height(script.body) <= MAX_AST_HEIGHT + 1
    assert all("too deep" in e or "too complex" in e for e in errs), errs


def test_parsing_in_threads_keeps_the_recursion_limit_consistent() -> None:
    import threading

    before = sys.getrecursionlimit()
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                assert errors("(" * 199 + "1" + ")" * 199) == []
        except BaseException as e:  # noqa: BLE001 - any failure is what we look for
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sys.getrecursionlimit() == before


def test_an_error_on_a_huge_line_shows_a_window_around_the_column() -> None:
    from peerbox.wasm_guests.lang import CompileError, compile_to_wat

    src = "let x = 1;" * 3000 + " let y = ;"
    with pytest.raises(CompileError) as info:
        compile_to_wat(src, "big.rhai")
    text, line, caret = str(info.value).splitlines()
    assert text == "big.rhai:1:30010: error: expected an expression, found ';'"
    assert line.startswith("    …let x = 1;") and line.endswith("let y = ;") and len(line) < 200
    assert line[caret.index("^")] == ";"  # the caret still points at the column
