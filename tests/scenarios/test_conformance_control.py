"""Conformance: variables, control flow, switch, exceptions, comments, functions,
closures and whole programs, and the value each program must produce.

Semantics follow Rhai (rhai.rs/book) where the issue is silent, plus peerbox's
fixed decisions (see test_conformance_values.py).
Expected values are Python values: None for ``()``, int, float, str, bool,
list, dict; compared strictly (types included) by ``same``. Each table holds
``(case id, source, expected)``; the ``CONFORMANCE`` map (prefix -> table) is
turned into the parameters of ``test_program_value`` by tests/scenarios/conftest.py,
which gives each case the id ``<prefix>-<case id>``.
"""

# ruff: noqa: E501  (tables of programs read best one program per line)

from __future__ import annotations

from ._conformance import ConformanceCase
from ._conformance import test_program_value as test_program_value  # collected in this module


VARIABLES: list[ConformanceCase] = [
    ("let-and-read", "let x = 5; x", 5),
    ("let-without-value-is-unit", "let x; x", None),
    ("const", "const X = 5; X * 2", 10),
    ("shadowing", "let x = 1; let x = x + 1; x", 2),
    ("shadowing-changes-type", 'let x = 1; let x = "a"; x', "a"),
    ("block-shadow-does-not-leak", "let x = 1; { let x = 2; } x", 1),
    ("block-assigns-outer", "let x = 1; { x = 2; } x", 2),
    ("block-expression-value", "let x = { let y = 2; y * 3 }; x", 6),
    ("assign", "let x = 1; x = 7; x", 7),
    ("plus-assign", "let x = 1; x += 4; x", 5),
    ("minus-assign", "let x = 10; x -= 4; x", 6),
    ("times-assign", "let x = 3; x *= 4; x", 12),
    ("divide-assign", "let x = 17; x /= 5; x", 3),
    ("modulo-assign", "let x = 17; x %= 5; x", 2),
    ("plus-assign-string", 'let s = "a"; s += "b"; s += 1; s', "ab1"),
    ("plus-assign-float", "let x = 1; x += 0.5; x", 1.5),
    ("assign-in-nested-blocks", "let x = 0; { { { x = 3; } } } x", 3),
]


CONTROL_FLOW: list[ConformanceCase] = [
    ("if-statement", "let x = 0; if true { x = 1; } x", 1),
    ("if-else-statement", "let x = 0; if 1 > 2 { x = 1; } else { x = 2; } x", 2),
    ("if-else-if-chain", "let n = 5; if n < 0 { \"neg\" } else if n == 0 { \"zero\" } else if n < 10 { \"small\" } else { \"big\" }", "small"),
    ("if-expression-in-let", "let x = if 3 > 2 { \"yes\" } else { \"no\" }; x", "yes"),
    ("if-without-else-false-is-unit", "if false { 1 }", None),
    ("if-expression-as-operand", "1 + if true { 2 } else { 3 }", 3),
    ("nested-if", "let a = 1; let b = 2; if a == 1 { if b == 2 { \"both\" } else { \"a\" } } else { \"none\" }", "both"),
    ("while-sum", "let i = 0; let s = 0; while i < 5 { s += i; i += 1; } s", 10),
    ("while-false-never-runs", "let s = 1; while false { s = 2; } s", 1),
    ("while-break", "let i = 0; while true { i += 1; if i == 7 { break; } } i", 7),
    ("while-continue", "let i = 0; let s = 0; while i < 10 { i += 1; if i % 2 == 0 { continue; } s += i; } s", 25),
    ("loop-break", "let i = 0; loop { i += 1; if i >= 3 { break; } } i", 3),
    ("loop-continue", "let i = 0; let n = 0; loop { i += 1; if i > 6 { break; } if i % 3 != 0 { continue; } n += 1; } n", 2),
    ("for-array", "let s = 0; for x in [1, 2, 3, 4] { s += x; } s", 10),
    ("for-range-exclusive", "let s = []; for i in 0..4 { s.push(i); } s", [0, 1, 2, 3]),
    ("for-range-inclusive", "let s = []; for i in 0..=4 { s.push(i); } s", [0, 1, 2, 3, 4]),
    ("for-range-function", "let s = []; for i in range(2, 5) { s.push(i); } s", [2, 3, 4]),
    ("for-range-empty", "let n = 0; for i in 5..2 { n += 1; } n", 0),
    ("for-range-negative", "let s = []; for i in -3..0 { s.push(i); } s", [-3, -2, -1]),
    ("for-range-with-variables", "let a = 1; let b = 4; let s = 0; for i in a..b { s += i; } s", 6),
    ("for-range-precedence", "let s = []; for i in 0..1 + 2 { s.push(i); } s", [0, 1, 2]),
    ("for-value-and-index", 'let s = ""; for (x, i) in ["a", "b", "c"] { s += x + i; } s', "a0b1c2"),
    ("for-break", "let s = 0; for x in [1, 2, 3, 4] { if x == 3 { break; } s += x; } s", 3),
    ("for-continue", "let s = 0; for x in 0..10 { if x % 2 == 1 { continue; } s += x; } s", 20),
    ("for-string-chars", 'let out = []; for c in "héy" { out.push(c); } out', ["h", "é", "y"]),
    ("for-map-keys-sorted", 'let s = ""; for k in #{b: 1, c: 2, a: 3}.keys() { s += k; } s', "abc"),
    ("for-map-values", "let s = 0; for x in #{b: 1, c: 2, a: 3}.values() { s = s * 10 + x; } s", 312),
    ("for-loop-var-assign-does-not-affect-iteration", "let n = 0; for i in 0..3 { i += 10; n += 1; } n", 3),
    ("for-iterates-over-a-copy", "let a = [1, 2, 3]; for x in a { a.push(x); } a", [1, 2, 3, 1, 2, 3]),
    ("nested-loops-break-inner-only", "let n = 0; for i in 0..3 { for j in 0..3 { if j == 1 { break; } n += 1; } } n", 3),
    ("nested-loops-continue-inner", "let n = 0; for i in 0..3 { for j in 0..3 { if j == 1 { continue; } n += 1; } } n", 6),
    ("top-level-return", "return 5; 6", 5),
    ("top-level-return-in-if", 'let x = 3; if x > 2 { return "big"; } "small"', "big"),
    ("top-level-return-in-loop", "for i in 0..10 { if i == 4 { return i * 10; } } -1", 40),
    ("top-level-return-no-value", "return; 1", None),
    ("in-range", "3 in 1..5", True),
    ("in-range-excludes-end", "5 in 1..5", False),
]


SWITCH: list[ConformanceCase] = [
    ("switch-basic", 'switch 2 { 1 => "one", 2 => "two", _ => "many" }', "two"),
    ("switch-alternatives", 'switch 3 { 1 | 2 => "low", 3 | 4 => "mid", _ => "high" }', "mid"),
    ("switch-default", 'switch 9 { 1 => "a", _ => "z" }', "z"),
    ("switch-no-match-is-unit", 'switch 9 { 1 => "a", 2 => "b" }', None),
    ("switch-guard-false-falls-through", 'let x = 5; switch x { 5 if x > 10 => "big five", 5 => "five", _ => "other" }', "five"),
    ("switch-guard-true", 'let x = 50; switch x % 10 { 0 if x > 10 => "round", 0 => "zero", _ => "other" }', "round"),
    ("switch-strings", 'switch "b" { "a" => 1, "b" => 2, _ => 0 }', 2),
    ("switch-block-body", "switch 1 { 1 => { let y = 2; y * 10 }, _ => 0 }", 20),
    ("switch-in-let", 'let r = switch 1 + 1 { 2 => "two", _ => "?" }; r', "two"),
    ("switch-as-statement-in-loop",
      "let c = [0, 0, 0]; for x in [1, 2, 3, 2, 9] { switch x { 1 => { c[0] += 1; }, 2 | 3 => { c[1] += 1; }, _ => { c[2] += 1; } } } c",
      [1, 3, 1]),
    ("switch-on-variable-subject", 'let s = "x"; switch s { "x" => "ex", _ => "?" }', "ex"),
    ("switch-bool", 'switch 1 < 2 { true => "t", false => "f" }', "t"),
]


EXCEPTIONS: list[ConformanceCase] = [
    ("catch-thrown-value", "let r = 0; try { throw 5; } catch (e) { r = e + 1; } r", 6),
    ("catch-string", 'let r = ""; try { throw "boom"; } catch (e) { r = e; } r', "boom"),
    ("catch-map", "let r = 0; try { throw #{code: 7}; } catch (e) { r = e.code; } r", 7),
    ("catch-array", "let r = 0; try { throw [1, 2]; } catch (e) { r = e.len(); } r", 2),
    ("throw-without-value-is-unit", "let r = 1; try { throw; } catch (e) { r = e; } r", None),
    ("catch-without-variable", "let r = 1; try { throw 1; } catch { r = 2; } r", 2),
    ("no-error-skips-catch", "let r = 1; try { r = 2; } catch { r = 3; } r", 2),
    ("code-after-throw-skipped", "let a = 0; try { a = 1; throw 0; a = 2; } catch { } a", 1),
    ("catch-division-by-zero-kind", 'let k = ""; try { let x = 1 / 0; } catch (e) { k = e.kind; } k', "division_by_zero"),
    ("catch-runtime-error-is-map", "let t = \"\"; try { let x = 1 / 0; } catch (e) { t = type_of(e); } t", "map"),
    ("catch-runtime-error-message-is-string",
      'let t = ""; try { let x = [1][5]; } catch (e) { t = type_of(e.message); } t', "string"),
    ("catch-runtime-error-line", "let l = 0;\ntry {\n  let a = 1;\n  let b = a / 0;\n} catch (e) { l = e.line; }\nl", 4),
    ("catch-overflow-kind", 'let k = ""; try { let x = 9223372036854775807; x += 1; } catch (e) { k = e.kind; } k',
      "integer_overflow"),
    ("catch-index-kind", 'let k = ""; try { let a = [1]; a[3]; } catch (e) { k = e.kind; } k', "index_out_of_range"),
    ("catch-type-mismatch-kind", 'let k = ""; try { let x = "a" - 1; } catch (e) { k = e.kind; } k', "type_mismatch"),
    ("catch-not-found-kind", 'let k = ""; try { let x = 1; let y = x.foo; } catch (e) { k = e.kind; } k', "not_found"),
    ("catch-arity-kind", 'let k = ""; try { let f = |a| a; f.call(1, 2); } catch (e) { k = e.kind; } k', "arity"),
    ("catch-error-from-called-function", 'fn bad() { [][0] }\nlet k = ""; try { bad(); } catch (e) { k = e.kind; } k',
      "index_out_of_range"),
    ("catch-throw-from-function", "fn f(x) { if x > 1 { throw x * 10; } x }\nlet r = 0; try { f(5); } catch (e) { r = e; } r", 50),
    ("nested-try-inner-catches",
      'let log = []; try { try { throw 1; } catch (e) { log.push("inner"); } log.push("after"); } catch { log.push("outer"); } log',
      ["inner", "after"]),
    ("rethrow-value", "let r = 0; try { try { throw 3; } catch (e) { throw e + 1; } } catch (e2) { r = e2; } r", 4),
    ("rethrow-bare-throw", "let r = 0; try { try { throw 1; } catch { throw; } } catch (e) { r = e; } r", 1),
    ("throw-inside-catch-of-runtime-error",
      'let r = ""; try { try { 1 / 0; } catch (e) { throw "wrapped " + e.kind; } } catch (e) { r = e; } r',
      "wrapped division_by_zero"),
    ("break-inside-catch", "let n = 0; for i in 0..10 { try { if i == 3 { throw i; } n += 1; } catch { break; } } n", 3),
    ("return-inside-try", "fn f() { try { return 1; } catch { return 2; } 3 } f()", 1),
    ("return-inside-catch", "fn f() { try { throw 0; } catch { return 2; } 3 } f()", 2),
    ("catch-in-loop-continues", 'let ok = 0; for x in [1, 0, 2, 0] { try { let y = 10 / x; ok += 1; } catch { } } ok', 2),
]


COMMENTS: list[ConformanceCase] = [
    ("line-comment", "// c\n1 // trailing", 1),
    ("block-comment", "/* multi\nline */ 2", 2),
    ("block-comment-inline", "1 + /* two */ 2", 3),
    ("nested-block-comment", "/* a /* b */ c */ 4", 4),
    ("comment-at-eof-without-newline", "5 // end", 5),
    ("comment-markers-inside-string", '"a // b /* c */"', "a // b /* c */"),
]


FUNCTIONS: list[ConformanceCase] = [
    ("call", "fn add(a, b) { a + b }\nadd(2, 3)", 5),
    ("defined-after-use", "let r = twice(4);\nfn twice(x) { x * 2 }\nr", 8),
    ("no-params", "fn one() { 1 }\none() + one()", 2),
    ("recursion", "fn fact(n) { if n <= 1 { 1 } else { n * fact(n - 1) } }\nfact(10)", 3628800),
    ("mutual-recursion", "fn ev(n) { if n == 0 { true } else { od(n - 1) } }\nfn od(n) { if n == 0 { false } else { ev(n - 1) } }\n[ev(10), od(7)]", [True, True]),
    ("last-expression-is-result", "fn f(x) { let y = x * 2; y + 1 }\nf(3)", 7),
    ("explicit-return", "fn f(x) { if x > 0 { return \"pos\"; } \"non-pos\" }\n[f(1), f(-1)]", ["pos", "non-pos"]),
    ("return-from-loop", "fn find(a, t) { for (x, i) in a { if x == t { return i; } } -1 }\n[find([4, 5, 6], 6), find([], 1)]", [2, -1]),
    ("no-tail-is-unit", "fn f() { let x = 1; }\nf()", None),
    ("bare-return-is-unit", "fn f() { return; }\nf()", None),
    ("fib", "fn fib(n) { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }\nfib(20)", 6765),
    ("deep-recursion-1000", "fn d(n) { if n == 0 { 0 } else { 1 + d(n - 1) } }\nd(1000)", 1000),
    ("locals-are-per-call", "fn f(n) { let acc = []; acc.push(n); acc }\n[f(1), f(2)]", [[1], [2]]),
    ("overload-by-arity", "fn f(a) { 1 }\nfn f(a, b) { 2 }\n[f(0), f(0, 0)]", [1, 2]),
    ("script-fn-overrides-builtin", "fn len(x) { 99 }\nlen([1])", 99),
    ("private-fn-callable-in-own-file", "private fn h() { 3 }\nh() * 2", 6),
    ("fn-sees-caller-and-target", "fn f() { [caller, target].len() }\nf()", 2),
    ("fn-uses-other-fn-and-builtin", "fn sq(x) { x * x }\nfn sumsq(a) { a.map(|x| sq(x)).reduce(|s, x| s + x, 0) }\nsumsq([1, 2, 3])", 14),
    ("fn-called-in-expression", "fn f(x) { x + 1 }\nf(f(f(0))) * 10", 30),
]


CLOSURES: list[ConformanceCase] = [
    ("closure-captures", "let k = 10; let f = |x| x + k; f.call(5)", 15),
    ("closure-multi-param-block", "let f = |a, b| { let c = a * b; c + 1 }; f.call(2, 3)", 7),
    ("closure-zero-params", "let f = || 42; f.call()", 42),
    ("closure-in-map", "let k = 3; [1, 2].map(|x| x * k)", [3, 6]),
    ("closure-in-filter", "let lim = 2; [1, 2, 3, 4].filter(|x| x > lim)", [3, 4]),
    ("closure-in-reduce", "[1, 2, 3, 4].reduce(|a, b| a * b, 1)", 24),
    ("captured-variable-shared", "let x = 1; let f = |y| x + y; x = 40; f.call(2)", 42),
    ("closure-modifies-captured", "let n = 0; let inc = |d| { n += d; }; inc.call(2); inc.call(3); n", 5),
    ("two-closures-share-a-variable", "let n = 0; let inc = |d| { n += d; }; let get = |z| n; inc.call(5); get.call(0)", 5),
    ("closure-counter-outlives-scope", "fn counter() { let c = 0; |d| { c += d; c } }\nlet f = counter(); f.call(1); f.call(1); f.call(1)", 3),
    ("closure-returns-closure", "let mk = |a| |b| a + b; mk.call(1).call(2)", 3),
    ("closure-captures-fn-param", "fn adder(n) { |x| x + n }\nadder(3).call(4)", 7),
    ("closure-in-array", "let fs = [|x| x + 1, |x| x * 2]; fs[1].call(5)", 10),
    ("closure-in-map-value", "let m = #{f: |x| x - 1}; m.f.call(5)", 4),
    ("closure-passed-to-fn", "fn apply(f, x) { f.call(x) }\napply(|v| v * 3, 4)", 12),
    ("closure-recursion-through-fn", "fn fact(n) { if n < 2 { 1 } else { n * fact(n - 1) } }\nlet f = |x| fact(x); f.call(5)", 120),
    ("closure-captured-array-mutation", "let a = []; let f = |x| { a.push(x); }; f.call(1); f.call(2); a", [1, 2]),
    ("closure-sort-comparator-captures", "let desc = true; let a = [1, 3, 2]; a.sort(|x, y| if desc { y - x } else { x - y }); a", [3, 2, 1]),
]


INTEGRATION: list[ConformanceCase] = [
    ("quicksort",
      "fn qsort(a) {\n  if a.len() <= 1 { return a; }\n  let p = a[0];\n  let rest = a.filter(|x, i| i > 0);\n"
      "  qsort(rest.filter(|x| x < p)) + [p] + qsort(rest.filter(|x| x >= p))\n}\nqsort([5, 3, 8, 1, 9, 2, 5])",
      [1, 2, 3, 5, 5, 8, 9]),
    ("word-count",
      'let text = "the cat and the hat and the bat";\nlet counts = #{};\n'
      "for w in text.split(\" \") { if w in counts { counts[w] += 1; } else { counts[w] = 1; } }\ncounts",
      {"the": 3, "cat": 1, "and": 2, "hat": 1, "bat": 1}),
    ("fizzbuzz",
      'let out = [];\nfor i in 1..=15 {\n  out.push(if i % 15 == 0 { "FizzBuzz" } else if i % 3 == 0 { "Fizz" }'
      ' else if i % 5 == 0 { "Buzz" } else { i });\n}\nout',
      [1, 2, "Fizz", 4, "Buzz", "Fizz", 7, 8, "Fizz", "Buzz", 11, "Fizz", 13, 14, "FizzBuzz"]),
    ("sieve",
      "let n = 30; let is = [];\nfor i in 0..n { is.push(true); }\nis[0] = false; is[1] = false;\n"
      "for i in 2..n { if is[i] { let j = i * i; while j < n { is[j] = false; j += i; } } }\n"
      "let ps = []; for (p, i) in is { if p { ps.push(i); } } ps",
      [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]),
    ("matmul",
      "fn matmul(a, b) {\n  let r = [];\n  for i in 0..a.len() {\n    let row = [];\n    for j in 0..b[0].len() {\n"
      "      let s = 0;\n      for k in 0..b.len() { s += a[i][k] * b[k][j]; }\n      row.push(s);\n    }\n"
      "    r.push(row);\n  }\n  r\n}\nmatmul([[1, 2], [3, 4]], [[5, 6], [7, 8]])",
      [[19, 22], [43, 50]]),
    ("reverse-string", 'let s = "héllo"; let r = ""; for c in s { r = c + r; } r', "olléh"),
    ("filter-map-records",
      'let users = [#{name: "a", age: 30}, #{name: "b", age: 17}, #{name: "c", age: 45}];\n'
      "users.filter(|u| u.age >= 18).map(|u| u.name.to_upper())",
      ["A", "C"]),
    ("gcd", "fn gcd(a, b) { if b == 0 { a } else { gcd(b, a % b) } }\ngcd(1071, 462)", 21),
    ("collatz-27", "let n = 27; let steps = 0;\nwhile n != 1 { n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 }; steps += 1; }\nsteps", 111),
    ("running-total-closure", "let total = 0; let r = [1, 2, 3].map(|x| { total += x; total }); [r, total]", [[1, 3, 6], 6]),
    ("group-by",
      'let g = #{}; for w in ["apple", "avocado", "banana", "blueberry", "cherry"] {\n'
      "  let k = w[0]; if !(k in g) { g[k] = []; } g[k].push(w.len()); }\ng",
      {"a": [5, 7], "b": [6, 9], "c": [6]}),
    ("thousand-keys-sorted", 'let m = #{}; for i in 0..1000 { m["k" + (999 - i)] = i; } let ks = m.keys(); [ks.len(), ks[0], ks[1], ks[999]]',
      [1000, "k0", "k1", "k999"]),
    ("hundred-thousand-pushes", "let a = []; for i in 0..100000 { a.push(i); } [a.len(), a[99999]]", [100000, 99999]),
    ("sort-ten-thousand", "let a = []; for i in 0..10000 { a.push((i * 7919) % 10007); } a.sort(); [a[0], a[1], a[9999]]",
      [0, 1, 10006]),
]


CONFORMANCE = {
    "var": VARIABLES,
    "flow": CONTROL_FLOW,
    "switch": SWITCH,
    "exc": EXCEPTIONS,
    "comment": COMMENTS,
    "fn": FUNCTIONS,
    "closure": CLOSURES,
    "program": INTEGRATION,
}
