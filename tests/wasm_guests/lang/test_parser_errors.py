"""Parser tests: error messages with their positions, lexical errors reaching the
diagnostics, recovery after an error, and the error limit.
"""

from __future__ import annotations

from collections.abc import Callable
import pytest

from peerbox.wasm_guests.lang import _ast as A
from peerbox.wasm_guests.lang._diagnostics import Diagnostics
from peerbox.wasm_guests.lang._parser import parse

# the parse helpers, fixtures of this folder's conftest
Sx = Callable[[object], str]  # an AST node as an s-expression
Parse = Callable[[str], tuple[A.Script, list[str]]]  # source -> (tree, errors)
Errors = Callable[[str], list[str]]  # source -> error lines


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
def test_error_messages(src: str, expected: list[str], errors: Errors) -> None:
    assert errors(src) == expected


@pytest.mark.parametrize("src, expected", [
    ("let x = @;", ["1:9: unexpected character '@'", "1:10: expected an expression, found ';'"]),
    ('let s = "abc;\nlet t = 1;', ["1:9: unterminated string",
                                   "2:1: expected ';' after statement, found 'let'"]),
    ("/* open\nlet x = 1;", ["1:1: unterminated block comment"]),
    ('"\\q"', ["1:2: invalid escape sequence '\\q'"]),
])
def test_lexical_errors_reach_the_diagnostics(src: str, expected: list[str], errors: Errors) -> None:
    assert errors(src) == expected


def test_several_errors_in_one_file_are_all_reported(sx: Sx, run: Parse) -> None:
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


def test_recovery_skips_nested_braces_of_the_broken_statement(sx: Sx, run: Parse) -> None:
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


def test_one_error_for_several_unclosed_blocks_at_end(errors: Errors) -> None:
    assert errors("fn f() {\n  while x {\n    if y {\n") == [
        "4:1: expected '}' to close '{' at 3:10, found end of input"]
