"""Parser tests: statements, functions, semicolons and the tail expression of a block,
and the spans (one-based character columns) the parser gives each node.

Trees are compared as s-expressions (the ``sx`` fixture of this folder's conftest).
"""

from __future__ import annotations

from collections.abc import Callable
import pytest

from peerbox.wasm_guests.lang import _ast as A

# the parse helpers, fixtures of this folder's conftest
Sx = Callable[[object], str]  # an AST node as an s-expression
Ok = Callable[[str], A.Script]  # source -> tree (no errors)
ToTree = Callable[[str], str]  # source -> s-expression


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
def test_statements(src: str, tree: str, body: ToTree) -> None:
    assert body(src) == tree


def test_functions_are_collected_in_order(sx: Sx, ok: Ok) -> None:
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
def test_semicolons_and_tail(src: str, tree: str, body: ToTree) -> None:
    assert body(src) == tree


def test_tail_is_last_expression_without_semicolon(ok: Ok) -> None:
    script = ok("let x = 1;\nx + 1\n")
    assert isinstance(script.body.tail, A.Binary)
    assert len(script.body.stmts) == 1


def test_block_statement_without_semicolon_before_next(ok: Ok) -> None:
    script = ok("fn f() { if x { 1 } else { 2 } }")
    assert isinstance(script.functions[0].body.tail, A.If)


# -- spans ---------------------------------------------------------------------------

def test_spans_are_one_based_character_columns(ok: Ok) -> None:
    script = ok('let s = "héllo";\n  s + t\n')
    let = script.body.stmts[0]
    assert let.span == A.Span("t.rhai", 1, 1, 1, 16)
    assert isinstance(let, A.Let) and let.value is not None
    assert let.value.span == A.Span("t.rhai", 1, 9, 1, 16)
    tail = script.body.tail
    assert isinstance(tail, A.Binary)
    assert tail.span == A.Span("t.rhai", 2, 3, 2, 8)
    assert tail.right.span == A.Span("t.rhai", 2, 7, 2, 8)


def test_span_of_multiline_constructs(ok: Ok) -> None:
    script = ok("fn f(a) {\n  a\n}\nif x {\n 1\n} else {\n 2\n}")
    assert script.functions[0].span == A.Span("t.rhai", 1, 1, 3, 2)
    assert script.body.tail is not None
    assert script.body.tail.span == A.Span("t.rhai", 4, 1, 8, 2)
    assert script.span.line == 1 and script.span.col == 1


def test_span_of_interpolated_parts(ok: Ok) -> None:
    tail = ok("`ab ${x} c`").body.tail
    assert isinstance(tail, A.Interp)
    assert [p.span.col for p in tail.parts] == [2, 7, 9]


def test_negative_min_int_literal_span(ok: Ok) -> None:
    tail = ok("-9223372036854775808").body.tail
    assert tail == A.Int(span=A.Span("t.rhai", 1, 1, 1, 21), value=-(2 ** 63))
