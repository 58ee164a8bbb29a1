"""Parser tests: the tree of every expression, precedence and associativity, ``if`` and
``switch`` as expressions.

Trees are compared as s-expressions (the ``sx`` fixture of this folder's conftest), which
ignore spans; spans have their own tests in test_parser_statements.py.
"""

from __future__ import annotations

from collections.abc import Callable
import pytest

from peerbox.wasm_guests.lang import _ast as A

# the parse helpers, fixtures of this folder's conftest
Ok = Callable[[str], A.Script]  # source -> tree (no errors)
ToTree = Callable[[str], str]  # source -> s-expression


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
def test_expressions(src: str, tree: str, expr: ToTree) -> None:
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
def test_precedence_and_associativity(src: str, tree: str, expr: ToTree) -> None:
    assert expr(src) == tree


def test_logical_vs_binary_nodes(ok: Ok) -> None:
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
def test_if_and_switch(src: str, tree: str, expr: ToTree) -> None:
    assert expr(src) == tree


def test_if_as_expression_value(body: ToTree) -> None:
    assert body("let x = if a { 1 } else { 2 };") == "{(let x (if a {=> 1} {=> 2}))}"
    assert body("let y = switch z { _ => 1 } + 1;") == "{(let y (+ (switch z (case _ 1)) 1))}"
