"""Conformance: programs that must fail, and how.

Compile errors carry ``line:col`` and a message; every error recovery allows is
reported at once, rendered as ``FILE:LINE:COL: error: message`` with the
source line and a caret. Runtime errors carry a kind (the ABI's list), the
source line of the failing operation, and for an uncaught ``throw`` the thrown
value.
"""

# ruff: noqa: E501  (tables of programs read best one program per line)

from __future__ import annotations

import re
from typing import Any

import pytest

import peerbox


def ce(case_id: str, source: str, line: int, col: int | None, *fragments: str) -> Any:
    """A compile error expected at ``line:col`` (col None: any) whose message has every fragment."""
    return pytest.param(source, line, col, fragments, id=case_id)


COMPILE_ERRORS = [
    # syntax
    ce("missing-expression-after-eq", "let x = ;", 1, 9),
    ce("let-without-name", "let = 5;", 1, 5),
    ce("unexpected-char", "let x = 1 @ 2;", 1, 11),
    ce("missing-semicolon-between-statements", "let a = 1 let b = 2;", 1, 11),
    ce("unclosed-paren", "let x = (1 + 2;", 1, None),
    ce("unclosed-block", "if true { 1", 1, None),
    ce("dangling-operator-at-eof", "let x = 1 +", 1, None),
    ce("syntax-error-on-later-line", "let a = 1;\nlet b = 2;\nlet c = * 3;", 3, 9),
    ce("unterminated-string", 'let s = "abc;', 1, 9, "string"),
    ce("unterminated-block-comment", "1 /* never closed", 1, 3, "comment"),
    ce("bad-escape", r'let s = "a\q";', 1, None, "escape"),
    ce("int-literal-too-large", "let x = 9223372036854775808;", 1, 9),
    ce("duplicate-map-key", "let m = #{a: 1, a: 2};", 1, None),
    ce("assign-to-non-place", "1 = 2;", 1, None),
    ce("else-without-if", "else { 1 }", 1, 1),
    ce("catch-without-try", "catch (e) { 1 }", 1, 1),
    ce("fn-inside-block", "{ fn f() { 1 } }", 1, None),
    ce("switch-default-not-last", "switch 1 { _ => 0, 1 => 1 }", 1, None),
    ce("duplicate-fn-definition", "fn f() { 1 }\nfn f() { 2 }", 2, None),
    ce("duplicate-parameter", "fn f(a, a) { a }", 1, None),
    ce("break-outside-loop", "break;", 1, 1, "break"),
    ce("continue-outside-loop", "let x = 1;\ncontinue;", 2, 1, "continue"),
    ce("break-in-fn-outside-loop", "fn f() { break; }\nf()", 1, 10, "break"),
    # names
    ce("undefined-variable", "let x = y + 1;", 1, 9, "undefined variable", "y"),
    ce("assign-undefined-variable", "y = 1;", 1, 1, "undefined variable", "y"),
    ce("block-scope-ends", "{ let y = 1; }\ny", 2, 1, "undefined variable", "y"),
    ce("if-block-scope-ends", "if true { let z = 1; }\nz + 1", 2, 1, "undefined variable", "z"),
    ce("for-variable-scope-ends", "for i in 0..3 { }\ni", 2, 1, "undefined variable", "i"),
    ce("catch-variable-scope-ends", "try { throw 1; } catch (e) { }\ne", 2, 1, "undefined variable", "e"),
    ce("let-not-visible-in-its-own-initializer", "let w = w;", 1, 9, "undefined variable", "w"),
    ce("fn-cannot-see-script-let", "let k = 1;\nfn f() { k }\nf()", 2, 10, "undefined variable", "k"),
    ce("fn-cannot-see-script-let-defined-before", "let k = 1;\nfn f() { k + 1 }", 2, 10, "undefined variable", "k"),
    ce("closure-undefined-variable", "let f = |x| x + q;", 1, 17, "undefined variable", "q"),
    ce("property-of-undefined", "x.y = 1;", 1, 1, "undefined variable", "x"),
    ce("const-reassign", "const X = 1;\nX = 2;", 2, 1, "const"),
    ce("const-compound-assign", "const X = 1; X += 1;", 1, 14, "const"),
    ce("undefined-function", "foo(1)", 1, 1, "function", "foo"),
    ce("undefined-function-in-fn-body", "fn f() {\n  bar()\n}", 2, 3, "function", "bar"),
    ce("wrong-arity-script-fn", "fn f(a) { a }\nf(1, 2)", 2, 1, "function", "f"),
    ce("wrong-arity-builtin", "len(1, 2)", 1, 1, "function", "len"),
    ce("method-that-exists-nowhere", "let a = [1];\na.frobnicate()", 2, None, "frobnicate"),
    ce("module-call-without-import", "m::f(1)", 1, 1),
]


@pytest.mark.parametrize(("source", "line", "col", "fragments"), COMPILE_ERRORS)
def test_compile_error(compile_error: Any, source: str, line: int, col: int | None, fragments: tuple[str, ...]) -> None:
    err = compile_error(source)
    assert err.diagnostics, "a CompileError must carry diagnostics"
    d = err.diagnostics[0]
    where = f"{d.file}:{d.line}:{d.col}: {d.message}"
    assert d.file == "test.rhai", where
    assert d.line == line, f"expected line {line}: {where}\n{err}"
    if col is not None:
        assert d.col == col, f"expected col {col}: {where}\n{err}"
    for frag in fragments:
        assert frag.lower() in d.message.lower(), f"expected {frag!r} in the message: {where}"
    assert (err.line, err.col, err.file) == (d.line, d.col, d.file)
    assert "Traceback" not in str(err)


def test_compile_error_rendering(compile_error: Any) -> None:
    err = compile_error("let a = 1;\nlet x = y + 1;\n")
    text = str(err)
    assert "test.rhai:2:9: error: " in text
    lines = text.split("\n")
    i = next(k for k, ln in enumerate(lines) if "test.rhai:2:9: error:" in ln)
    assert lines[i + 1].strip() == "let x = y + 1;", text
    caret = lines[i + 2]
    assert re.fullmatch(r" *\^+", caret), text
    # the caret sits under the 'y' of the quoted source line
    assert caret.index("^") == lines[i + 1].index("y"), text


def test_compile_error_uses_filename(compile_error: Any) -> None:
    err = compile_error("let x = ;", filename="job.rhai")
    assert err.file == "job.rhai"
    assert str(err).startswith("job.rhai:1:9: error: ")


def test_several_errors_reported_at_once(compile_error: Any) -> None:
    err = compile_error("let a = x;\nlet b = y;\nlet c = z;\n")
    assert [(d.line, d.col) for d in err.diagnostics] == [(1, 9), (2, 9), (3, 9)]
    text = str(err)
    for n in (1, 2, 3):
        assert f"test.rhai:{n}:9: error: " in text


def test_syntax_errors_recovered_per_statement(compile_error: Any) -> None:
    # three statements with syntax errors: recovery at statement boundaries reports all three
    err = compile_error("let a = ;\nlet b = 1 + * 2;\nlet c = (;\nlet d = 4;\n")
    lines = sorted({d.line for d in err.diagnostics})
    assert lines == [1, 2, 3], str(err)


def test_compile_error_is_a_peerbox_error(compile_error: Any) -> None:
    err = compile_error("let x = ;")
    assert isinstance(err, peerbox.Error)
    assert err.exit_code == 3


def re_(case_id: str, source: str, kind: str, line: int, *fragments: str) -> Any:
    """A runtime error of ``kind`` raised at ``line`` whose message has every fragment."""
    return pytest.param(source, kind, line, fragments, id=case_id)


RUNTIME_ERRORS = [
    re_("subtract-array-from-string", 'let a = "a";\nlet b = a - [];', "type_mismatch", 2, "cannot subtract"),
    re_("division-by-zero", "let a = 1;\nlet b = 0;\na / b", "division_by_zero", 3),
    re_("modulo-by-zero", "7 % 0", "division_by_zero", 1),
    re_("add-overflow", "let x = 9223372036854775807;\nx + 1", "integer_overflow", 2),
    re_("sub-overflow", "let x = -9223372036854775807;\nx - 2", "integer_overflow", 2),
    re_("mul-overflow", "4611686018427387904 * 2", "integer_overflow", 1),
    re_("neg-overflow", "let m = -9223372036854775807 - 1;\n-m", "integer_overflow", 2),
    re_("div-overflow", "let m = -9223372036854775807 - 1;\nm / -1", "integer_overflow", 2),
    re_("pow-overflow", "2 ** 63", "integer_overflow", 1),
    re_("compound-assign-overflow", "let x = 9223372036854775807;\nx += 1;", "integer_overflow", 2),
    re_("abs-overflow", "abs(-9223372036854775807 - 1)", "integer_overflow", 1),
    re_("to-int-overflow", "to_int(10.0 ** 30)", "integer_overflow", 1),
    re_("array-index-out-of-range", "let a = [1, 2, 3];\na[3]", "index_out_of_range", 2),
    re_("array-negative-index-out-of-range", "let a = [1, 2, 3];\na[-4]", "index_out_of_range", 2),
    re_("array-index-set-out-of-range", "let a = [1];\na[5] = 1;", "index_out_of_range", 2),
    re_("string-index-out-of-range", '"abc"[3]', "index_out_of_range", 1),
    re_("if-condition-not-bool", "if 1 { 2 }", "type_mismatch", 1, "bool"),
    re_("while-condition-not-bool", 'while "x" { }', "type_mismatch", 1, "bool"),
    re_("not-on-int", "!1", "type_mismatch", 1),
    re_("and-left-not-bool", "1 && true", "type_mismatch", 1),
    re_("and-right-not-bool", "true && 1", "type_mismatch", 1),
    re_("unit-plus-int", "() + 1", "type_mismatch", 1),
    re_("bool-plus-int", "true + 1", "type_mismatch", 1),
    re_("string-times-int", '"abc" * 2', "type_mismatch", 1),
    re_("array-minus-int", "[1] - 1", "type_mismatch", 1),
    re_("bitand-int-float", "1 & 1.0", "type_mismatch", 1),
    re_("for-over-int", "for x in 5 { }", "type_mismatch", 1),
    re_("for-over-map", "for x in #{a: 1} { }", "type_mismatch", 1),
    re_("property-of-int", "let x = 1;\nx.foo", "not_found", 2),
    re_("method-not-for-this-type", "let x = 5;\nx.push(1);", "not_found", 2),
    re_("call-a-non-function", "let x = 1;\nx.call(2)", "type_mismatch", 2, "not a function"),
    re_("closure-arity", "let f = |a| a;\nf.call(1, 2)", "arity", 2),
    re_("shift-by-64", "1 << 64", "invalid_argument", 1),
    re_("shift-by-negative", "let n = -1;\n1 >> n", "invalid_argument", 2),
    re_("parse-int-invalid", 'parse_int("12x")', "invalid_argument", 1),
    re_("sort-mixed-types", 'let a = [1, "a"];\na.sort();', "type_mismatch", 2),
    re_("too-deep", "let a = [];\nfor i in 0..200 { a = [a]; }\na", "too_deep", 2),
    re_("error-line-inside-function", "fn f(x) {\n  let y = x;\n  y / 0\n}\nf(1)", "division_by_zero", 3),
    re_("error-line-inside-closure", "let f = |x| {\n  x[9]\n};\n[[1]].map(f)", "index_out_of_range", 2),
    re_("error-after-catch-block", "try { throw 1; } catch { }\nlet z = 1 / 0;", "division_by_zero", 2),
    # Rhai: a bare `throw;` in a catch block re-raises the original error, positioned at the `throw`
    re_("bare-rethrow-of-runtime-error", "try {\n  1 / 0;\n} catch {\n  throw;\n}", "division_by_zero", 4),
]


@pytest.mark.parametrize(("source", "kind", "line", "fragments"), RUNTIME_ERRORS)
def test_runtime_error(run_error: Any, source: str, kind: str, line: int, fragments: tuple[str, ...]) -> None:
    err = run_error(source)
    assert isinstance(err, peerbox.ScriptError), f"expected ScriptError, got {type(err).__name__}: {err}"
    assert err.kind == kind, f"expected kind {kind}, got {err.kind}: {err}"
    assert err.line == line, f"expected line {line}, got {err.line}: {err}"
    assert err.file == "test.rhai", err.file
    for frag in fragments:
        assert frag.lower() in err.message.lower(), f"expected {frag!r} in {err.message!r}"
    assert f"test.rhai:{line}" in str(err)
    assert err.exit_code == 4


def th(case_id: str, source: str, value: Any, line: int) -> Any:
    return pytest.param(source, value, line, id=case_id)


UNCAUGHT_THROWS = [
    th("throw-string", 'let a = 1;\nthrow "boom";', "boom", 2),
    th("throw-int", "throw 42", 42, 1),
    th("throw-map", "throw #{code: 7, why: [1, 2]}", {"code": 7, "why": [1, 2]}, 1),
    th("throw-unit", "throw;", None, 1),
    th("throw-from-function", "fn f() {\n  throw \"in f\";\n}\nf()", "in f", 2),
    th("rethrow-from-catch", "try {\n  throw 1;\n} catch (e) {\n  throw e + 1;\n}", 2, 4),
]


@pytest.mark.parametrize(("source", "value", "line"), UNCAUGHT_THROWS)
def test_uncaught_throw(run_error: Any, same: Any, source: str, value: Any, line: int) -> None:
    err = run_error(source)
    assert isinstance(err, peerbox.ScriptError)
    assert err.kind == "throw"
    assert same(err.value, value), f"expected thrown value {value!r}, got {err.value!r}"
    assert err.line == line


def test_uncaught_throw_message_is_string_form(run_error: Any) -> None:
    err = run_error('throw "boom"')
    assert "boom" in err.message


def test_rethrown_runtime_error_map_is_the_thrown_value(run_error: Any) -> None:
    err = run_error("try { let x = 1 / 0; } catch (e) { throw e; }")
    assert err.kind == "throw"
    assert isinstance(err.value, dict)
    assert err.value["kind"] == "division_by_zero"
    assert isinstance(err.value["message"], str)
    assert err.value["line"] == 1


def test_runtime_error_file_is_the_filename(run_error: Any) -> None:
    err = run_error("let x = 1;\nx / 0", filename="job.rhai")
    assert err.file == "job.rhai"
    assert err.line == 2
    assert "job.rhai:2" in str(err)


def test_runtime_error_keeps_log(run_error: Any) -> None:
    err = run_error('print("before");\nlet x = [][1];\nprint("after");')
    assert err.log == ["before"]
