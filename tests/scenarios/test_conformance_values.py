"""Conformance: values and types, operators and strings, and the value each program must produce.

Every construct of the language (issue 3) with its expected result, table
driven. Semantics follow Rhai (rhai.rs/book) where the issue is silent, plus
peerbox's fixed decisions: ``()`` displays as "" and debugs as "()", floats
display like Python's repr (with "inf", "NaN"), int + float is a float,
comparing incomparable types is false (``!=`` true), and an array's string
form shows its elements in debug form. Control flow and functions are in
test_conformance_control.py, arrays and maps in test_conformance_collections.py.
Expected values are Python values: None for ``()``, int, float, str, bool,
list, dict; compared strictly (types included) by ``same``. Each table holds
``(case id, source, expected)``; the ``CONFORMANCE`` map (prefix -> table) is
turned into the parameters of ``test_program_value`` by tests/scenarios/conftest.py,
which gives each case the id ``<prefix>-<case id>``.
"""

# ruff: noqa: E501  (tables of programs read best one program per line)

from __future__ import annotations

from typing import Any

import pytest

from ._conformance import ConformanceCase
from ._conformance import test_program_value as test_program_value  # collected in this module


VALUES_AND_TYPES: list[ConformanceCase] = [
    ("unit-literal", "()", None),
    ("empty-script", "", None),
    ("only-comment", "// nothing here", None),
    ("trailing-semicolon-gives-unit", "1;", None),
    ("let-statement-gives-unit", "let x = 1;", None),
    ("int", "42", 42),
    ("negative-int", "-42", -42),
    ("int-max", "9223372036854775807", 9223372036854775807),
    ("int-min-computed", "-9223372036854775807 - 1", -9223372036854775808),
    ("int-underscores", "1_000_000", 1000000),
    ("int-hex", "0xff", 255),
    ("float", "2.5", 2.5),
    ("negative-float", "-0.5", -0.5),
    ("bool-true", "true", True),
    ("bool-false", "false", False),
    ("string", '"hello"', "hello"),
    ("empty-string", '""', ""),
    ("array-literal", '[1, "a", true, (), 2.5]', [1, "a", True, None, 2.5]),
    ("empty-array", "[]", []),
    ("nested-array", "[[1, 2], [3], []]", [[1, 2], [3], []]),
    ("map-literal", '#{a: 1, "two words": 2}', {"a": 1, "two words": 2}),
    ("empty-map", "#{}", {}),
    ("nested-map", "#{a: #{b: [1, #{c: ()}]}}", {"a": {"b": [1, {"c": None}]}}),
    ("type-of-unit", "type_of(())", "()"),
    ("type-of-bool", "type_of(true)", "bool"),
    ("type-of-int", "type_of(1)", "i64"),
    ("type-of-float", "type_of(1.0)", "f64"),
    ("type-of-string", 'type_of("x")', "string"),
    ("type-of-array", "type_of([])", "array"),
    ("type-of-map", "type_of(#{})", "map"),
    ("type-of-closure", "type_of(|x| x)", "Fn"),
    ("type-of-method-form", "let x = 1; x.type_of()", "i64"),
    ("type-of-int-plus-float", "type_of(1 + 1.0)", "f64"),
]


ARITHMETIC: list[ConformanceCase] = [
    ("add", "1 + 2", 3),
    ("sub", "1 - 5", -4),
    ("mul", "6 * 7", 42),
    ("int-div-truncates", "7 / 2", 3),
    ("int-div-truncates-toward-zero-neg", "-7 / 2", -3),
    ("int-div-neg-divisor", "7 / -2", -3),
    ("mod-sign-of-dividend-neg", "-7 % 2", -1),
    ("mod-sign-of-dividend-pos", "7 % -2", 1),
    ("pow", "2 ** 10", 1024),
    ("pow-big", "2 ** 62", 4611686018427387904),
    ("pow-zero", "5 ** 0", 1),
    ("int-plus-float", "1 + 2.5", 3.5),
    ("float-plus-int", "2.5 + 1", 3.5),
    ("int-times-float", "2 * 1.5", 3.0),
    ("int-div-float", "7 / 2.0", 3.5),
    ("float-mod", "7.5 % 2", 1.5),
    ("float-mod-sign-of-dividend", "-7.5 % 2", -1.5),
    ("float-pow", "2.0 ** 3", 8.0),
    ("int-pow-float", "2 ** 0.5", 1.4142135623730951),
    ("float-sum-repr", "0.1 + 0.2", 0.30000000000000004),
    ("int-max-minus-one", "9223372036854775807 - 1", 9223372036854775806),
    ("unary-minus-var", "let x = 5; -x", -5),
    ("unary-minus-paren", "-(-5)", 5),
    ("unary-plus", "+5", 5),
    ("unary-minus-float", "let f = 1.5; -f", -1.5),
    ("not", "!true", False),
    ("not-comparison", "!(1 > 2)", True),
    ("bit-and", "6 & 3", 2),
    ("bit-or", "6 | 3", 7),
    ("bit-xor", "6 ^ 3", 5),
    ("shl", "1 << 10", 1024),
    ("shr-arithmetic", "-16 >> 2", -4),
    ("bool-and-op", "true & false", False),
    ("bool-or-op", "true | false", True),
    ("bool-xor-op", "true ^ true", False),
    ("and-or", "true && false || true", True),
    ("short-circuit-and", "false && (1 / 0 == 0)", False),
    ("short-circuit-or", "true || (1 / 0 == 0)", True),
    ("int-eq-float", "1 == 1.0", True),
    ("int-lt-float", "2 < 2.5", True),
    ("compare-ints", "[1 < 2, 2 <= 2, 3 > 4, 4 >= 4, 1 != 2]", [True, True, False, True, True]),
    ("compare-strings-bytewise", '["abc" < "abd", "B" < "a", "a" == "a", "b" >= "a"]', [True, True, True, True]),
    ("int-vs-string-not-equal", '[1 == "1", 1 != "1"]', [False, True]),
    ("incomparable-lt-is-false", '[1 < "a", "a" > 1, 1 >= "a", true < 1]', [False, False, False, False]),
    ("unit-equals-unit", "() == ()", True),
    ("bool-vs-int-not-equal", "true == 1", False),
    ("to-int-truncates", "[to_int(3.9), to_int(-3.9), to_int(7)]", [3, -3, 7]),
    ("to-float", "to_float(2)", 2.0),
    ("parse-int", 'parse_int("-12")', -12),
    ("parse-float", 'parse_float("2.5")', 2.5),
    ("abs-sign", "[abs(-3), sign(-7), sign(0), sign(4)]", [3, -1, 0, 1]),
    ("min-max", "[min(3, 1), max(2, 9)]", [1, 9]),
    ("floor-ceiling", "let f = 3.7; let g = 3.2; [f.floor(), g.ceiling()]", [3.0, 4.0]),
    ("round-half-away-from-zero", "let a = 2.5; let b = -2.5; [a.round(), b.round()]", [3.0, -3.0]),
    ("sqrt", "let f = 16.0; f.sqrt()", 4.0),
]


PRECEDENCE: list[ConformanceCase] = [
    ("mul-before-add", "1 + 2 * 3", 7),
    ("paren-override", "(1 + 2) * 3", 9),
    ("sub-left-assoc", "10 - 2 - 3", 5),
    ("div-left-assoc", "100 / 10 / 5", 2),
    ("mod-mul-left-assoc", "7 % 3 * 2", 2),
    ("pow-right-assoc", "2 ** 3 ** 2", 512),
    ("pow-before-mul", "2 * 3 ** 2", 18),
    ("pow-chain", "2 + 3 * 4 ** 2", 50),
    ("unary-minus-binds-tighter-than-pow", "-2 ** 2", 4),
    ("shl-binds-tighter-than-add", "1 << 2 + 1", 5),
    ("shl-binds-tighter-than-mul", "1 << 2 * 3", 12),
    ("shl-binds-tighter-than-pow", "2 ** 2 << 1", 16),
    ("add-before-compare", "1 + 2 == 3", True),
    ("compare-before-eq", "1 < 2 == true", True),
    ("in-before-eq", '"a" in "abc" == true', True),
    ("add-before-in", "1 + 2 in [3]", True),
    ("compare-before-in", "3 < 4 in [true]", True),
    ("and-before-or", "true || false && false", True),
    ("xor-lower-than-and", "true ^ true && false", True),
    ("bitor-lower-than-eq", "true | 1 == 2", True),
    ("bitand-lower-than-eq", "false & 1 == 1", False),
    ("not-binds-tight", "!false == true", True),
    ("mixed", "2 * 3 + 4 * 5 - 6 / 2", 23),
]


OVERFLOW_AS_VALUES: list[ConformanceCase] = [
    # the in-range neighbours of the overflow errors in test_conformance_errors.py
    ("int-min-div-one", "(-9223372036854775807 - 1) / 1", -9223372036854775808),
    ("shl-into-sign-bit", "1 << 63", -9223372036854775808),
    ("mul-near-max", "4611686018427387903 * 2", 9223372036854775806),
]


EQUALITY: list[ConformanceCase] = [
    ("deep-array-eq", "[1, [2, 3]] == [1, [2, 3]]", True),
    ("array-order-matters", "[1, 2] == [2, 1]", False),
    ("array-len-differs", "[1] != [1, 2]", True),
    ("deep-map-eq-any-order", "#{a: 1, b: [1, #{c: 2}]} == #{b: [1, #{c: 2}], a: 1}", True),
    ("map-value-differs", "#{a: 1} != #{a: 2}", True),
    ("map-vs-array", "#{} == []", False),
    ("deep-eq-numeric", "[1] == [1.0]", True),
    ("string-eq", '"abc" == "abc"', True),
    ("closure-in-array-type", "type_of([|x| x][0])", "Fn"),
]


STRINGS: list[ConformanceCase] = [
    ("concat", '"ab" + "cd"', "abcd"),
    ("string-plus-int", '"a" + 1', "a1"),
    ("int-plus-string", '1 + "a"', "1a"),
    ("string-plus-float", '"x" + 1.5', "x1.5"),
    ("string-plus-whole-float", '"x" + 1.0', "x1.0"),
    ("string-plus-bool", '"x" + true', "xtrue"),
    ("string-plus-unit", '"x" + ()', "x"),
    ("unit-plus-string", '() + "x"', "x"),
    ("string-plus-array", '"x" + [1, "a"]', 'x[1, "a"]'),
    ("float-display-0.1", '"" + 0.1', "0.1"),
    ("float-display-big", '"" + 10.0 ** 100', "1e+100"),
    ("float-display-small", '"" + 1.0 / 10000000.0', "1e-07"),
    ("float-display-inf", '"" + 10.0 ** 308 * 10.0', "inf"),
    ("float-display-neg-inf", '"" + -(10.0 ** 308 * 10.0)', "-inf"),
    ("float-display-nan", 'let i = 10.0 ** 308 * 10.0; "" + (i - i)', "NaN"),
    ("string-append-loop", 'let s = ""; for i in 0..5 { s += i; } s', "01234"),
    ("interpolation", "let x = 1; `x = ${x + 1}`", "x = 2"),
    ("interpolation-several", 'let a = "p"; let b = 2; `${a}-${b}-${a + b}`', "p-2-p2"),
    ("interpolation-display-forms", '`${"a"}|${1.0}|${()}|${true}`', "a|1.0||true"),
    ("interpolation-array", '`${[1, "a"]}`', '[1, "a"]'),
    ("interpolation-plain", "`plain`", "plain"),
    ("escape-newline-tab", r'"a\nb\tc"', "a\nb\tc"),
    ("escape-quote-backslash", r'"q\"\\"', 'q"\\'),
    ("escape-unicode", r'"\u{41}\u{e9}"', "Aé"),
    ("escape-unicode-astral", r'"\u{1F600}".len()', 1),
    ("len", '"abc".len()', 3),
    ("len-function-form", 'len("abcd")', 4),
    ("len-counts-chars", '"héllo".len()', 5),
    ("len-emoji", '"😀😀".len()', 2),
    ("is-empty", '["".is_empty(), "a".is_empty()]', [True, False]),
    ("contains", '["hello".contains("ell"), "hello".contains("xyz")]', [True, False]),
    ("starts-ends-with", '["hello".starts_with("he"), "hello".ends_with("lo"), "hello".ends_with("he")]', [True, True, False]),
    ("index-of", '"hello".index_of("l")', 2),
    ("index-of-counts-chars", '"héllo".index_of("l")', 2),
    ("index-of-missing", '"abc".index_of("z")', -1),
    ("sub-string-start-len", '"hello".sub_string(1, 3)', "ell"),
    ("sub-string-start", '"hello".sub_string(2)', "llo"),
    ("sub-string-negative-start", '"hello".sub_string(-3)', "llo"),
    ("sub-string-chars", '"héllo".sub_string(1, 2)', "él"),
    ("to-upper-lower", '["Hello".to_upper(), "AbC".to_lower()]', ["HELLO", "abc"]),
    ("trim-in-place", 'let s = "  hi \\n"; s.trim(); s', "hi"),
    ("trim-returns-unit", 'let s = " a "; let r = s.trim(); [r, s]', [None, "a"]),
    ("split-delimiter", '"a,b,,c".split(",")', ["a", "b", "", "c"]),
    ("split-whitespace", '"a  b\tc".split()', ["a", "b", "c"]),
    ("replace-in-place", 'let s = "a-b-c"; s.replace("-", "+"); s', "a+b+c"),
    ("chars", '"abc".chars()', ["a", "b", "c"]),
    ("to-string-int", "let n = 42; n.to_string()", "42"),
    ("to-string-function-form", "to_string(1.5)", "1.5"),
    ("to-string-bool-unit", "[to_string(true), to_string(())]", ["true", ""]),
    ("to-string-array-debug-elements", '[1, 2, "a"].to_string()', '[1, 2, "a"]'),
    ("to-debug-string", 'to_debug("a")', '"a"'),
    ("to-debug-unit", "to_debug(())", "()"),
    ("index-first", '"hello"[0]', "h"),
    ("index-negative", '"hello"[-1]', "o"),
    ("index-unicode", '"héllo"[1]', "é"),
    ("substring-in", '"ell" in "hello"', True),
    ("strings-are-values-on-append", 'let s = "ab"; let t = s; t += "c"; [s, t]', ["ab", "abc"]),
    ("appends-do-not-clobber-shared-prefix", 'let s = "ab"; let t = s + "c"; let u = s + "d"; [s, t, u]', ["ab", "abc", "abd"]),
    ("append-after-slice-taken", 'let s = "x"; s += "y"; let t = s; s += "z"; t += "w"; [s, t]', ["xyz", "xyw"]),
]


STRING_BUFFERS: list[ConformanceCase] = [
    # rt extends the most recent string buffer in place; no existing slice may ever change
    ("append-self", 'let s = "ab"; s += s; s += s; s', "abababab"),
    ("append-self-after-append", 'let s = "x"; s += "y"; s += s; s', "xyxy"),
    ("prefixes-pushed-while-growing", 'let parts = []; let s = ""; for i in 0..3 { s += i; parts.push(s); } parts',
      ["0", "01", "012"]),
    ("keys-built-while-growing", 'let m = #{}; let k = ""; for i in 0..3 { k += i; m[k] = i; } m',
      {"0": 0, "01": 1, "012": 2}),
    ("sub-string-then-append-both",
      'let s = ""; for i in 0..3 { s += "ab"; } let t = s.sub_string(0, 2); s += "c"; t += "d"; [s, t]',
      ["abababc", "abd"]),
    ("two-growing-strings-interleaved", 'let a = ""; let b = ""; for i in 0..4 { a += i; b += "-"; a += "."; } [a, b]',
      ["0.1.2.3.", "----"]),
    ("interpolation-while-growing", 'let s = "a"; s += "b"; let t = `${s}!`; s += "c"; [s, t]', ["abc", "ab!"]),
    ("nul-char", r'let s = "\u{0}"; [s.len(), s]', [1, "\x00"]),
]


CONFORMANCE = {
    "value": VALUES_AND_TYPES,
    "arith": ARITHMETIC,
    "prec": PRECEDENCE,
    "int": OVERFLOW_AS_VALUES,
    "eq": EQUALITY,
    "str": STRINGS,
    "strbuf": STRING_BUFFERS,
}


def test_case_ids_are_unique(request: pytest.FixtureRequest, conformance_ids: Any) -> None:
    """No two cases of the conformance modules collected in this session share an id."""
    modules = {item.module for item in request.session.items
               if isinstance(item, pytest.Function) and item.originalname == "test_program_value"
               and hasattr(item.module, "CONFORMANCE")}
    modules.add(request.module)
    ids = [case_id for module in modules for case_id in conformance_ids(module.CONFORMANCE)]
    assert len(ids) == len(set(ids))
