"""Conformance: arrays, maps, value semantics (copies on assignment and on calls)
and edge cases of collections, and the value each program must produce.

Semantics follow Rhai (rhai.rs/book) where the issue is silent, plus peerbox's
fixed decisions: maps iterate in sorted key order, and an array's string form
shows its elements in debug form (see test_conformance_values.py).
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


ARRAYS: list[ConformanceCase] = [
    ("index", "[10, 20, 30][1]", 20),
    ("index-negative", "[10, 20, 30][-1]", 30),
    ("index-negative-first", "[10, 20, 30][-3]", 10),
    ("concat", "[1, 2] + [3]", [1, 2, 3]),
    ("concat-leaves-operands", "let a = [1]; let b = a + [2]; [a, b]", [[1], [1, 2]]),
    ("plus-assign-array", "let a = [1, 2]; a += [3]; a", [1, 2, 3]),
    ("push", "let a = [1]; a.push(2); a.push(\"x\"); a", [1, 2, "x"]),
    ("pop", "let a = [1, 2]; let x = a.pop(); [x, a]", [2, [1]]),
    ("pop-empty-is-unit", "let a = []; a.pop()", None),
    ("shift", "let a = [1, 2]; let x = a.shift(); [x, a]", [1, [2]]),
    ("insert-middle", "let a = [1, 2, 3]; a.insert(1, 9); a", [1, 9, 2, 3]),
    ("insert-front", "let a = [1, 2, 3]; a.insert(0, 0); a", [0, 1, 2, 3]),
    ("insert-past-end-appends", "let a = [1, 2, 3]; a.insert(10, 9); a", [1, 2, 3, 9]),
    ("insert-negative", "let a = [1, 2, 3]; a.insert(-1, 9); a", [1, 2, 9, 3]),
    ("remove", "let a = [1, 2, 3]; let x = a.remove(1); [x, a]", [2, [1, 3]]),
    ("remove-out-of-range-is-unit", "let a = [1, 2, 3]; let x = a.remove(10); [x, a]", [None, [1, 2, 3]]),
    ("len", "[[1, 2].len(), len([]), [1].is_empty(), [].is_empty()]", [2, 0, False, True]),
    ("contains", '[[1, 2, 3].contains(2), [[1]].contains([1]), [1].contains("1")]', [True, True, False]),
    ("index-of", "[[5, 6, 7].index_of(7), [5].index_of(9)]", [2, -1]),
    ("reverse", "let a = [1, 2, 3]; a.reverse(); a", [3, 2, 1]),
    ("sort-ints", "let a = [3, 1, 2, -5]; a.sort(); a", [-5, 1, 2, 3]),
    ("sort-strings", 'let a = ["b", "c", "a"]; a.sort(); a', ["a", "b", "c"]),
    ("sort-mixed-numbers", "let a = [2, 1.5, 1]; a.sort(); a", [1, 1.5, 2]),
    ("sort-comparator", "let a = [3, 1, 2]; a.sort(|x, y| y - x); a", [3, 2, 1]),
    ("map", "[1, 2, 3].map(|x| x * 2)", [2, 4, 6]),
    ("map-with-index", "[10, 20].map(|x, i| x + i)", [10, 21]),
    ("filter", "[1, 2, 3, 4].filter(|x| x % 2 == 0)", [2, 4]),
    ("filter-with-index", '["a", "b", "c"].filter(|x, i| i != 1)', ["a", "c"]),
    ("reduce-with-initial", "[1, 2, 3].reduce(|acc, x| acc + x, 10)", 16),
    ("reduce-from-unit", "[1, 2, 3].reduce(|acc, x| if acc == () { x } else { acc + x })", 6),
    ("some-all", "let a = [1, 2, 3]; [a.some(|x| x > 2), a.all(|x| x > 2), a.all(|x| x > 0)]", [True, False, True]),
    ("get", "let a = [1, 2, 3]; [a.get(1), a.get(5), a.get(-1)]", [2, None, 3]),
    ("clear", "let a = [1, 2]; a.clear(); a", []),
    ("in-array", "[2 in [1, 2, 3], 4 in [1, 2, 3], [1] in [[1], 2]]", [True, False, True]),
    ("index-assign", "let a = [1, 2]; a[0] = 9; a", [9, 2]),
    ("index-assign-negative", "let a = [1, 2]; a[-1] = 7; a", [1, 7]),
    ("nested-index-assign", "let a = [[1, 2], [3]]; a[0][1] = 5; a", [[1, 5], [3]]),
    ("index-compound-assign", "let a = [1]; a[0] += 4; a[0] *= 3; a", [15]),
    ("method-chain-result", "[3, 1, 2].map(|x| x + 1).filter(|x| x > 2)", [4, 3]),
    ("array-of-maps-prop", "let a = [#{n: 1}, #{n: 2}]; a[1].n", 2),
    ("push-in-loop", "let a = []; for i in 0..100 { a.push(i * i); } [a.len(), a[99]]", [100, 9801]),
]


VALUE_SEMANTICS: list[ConformanceCase] = [
    ("assign-copies-array", "let a = [1]; let b = a; b.push(2); a.len()", 1),
    ("assign-copy-is-independent", "let a = [1]; let b = a; b.push(2); [a, b]", [[1], [1, 2]]),
    ("passing-to-function-copies",
      "fn f(x) { x.push(9); x }\nlet a = [1]; let r = f(a); [a, r]", [[1], [1, 9]]),
    ("method-chain-mutates-in-place",
      'let db = #{users: [#{tags: ["x"]}]}; db.users[0].tags.push("y"); db',
      {"users": [{"tags": ["x", "y"]}]}),
    ("nested-property-set", "let m = #{a: #{}}; m.a.b = 1; m", {"a": {"b": 1}}),
    ("nested-property-set-deep", "let m = #{a: #{b: #{c: 0}}}; m.a.b.c = 5; m.a.b.c += 1; m", {"a": {"b": {"c": 6}}}),
    ("element-read-copies", "let a = [[1]]; let b = a[0]; b.push(2); a", [[1]]),
    ("loop-variable-is-a-copy", "let a = [[1]]; for x in a { x.push(2); } a", [[1]]),
    ("map-assign-copies", "let m = #{a: [1]}; let n = m; n.a.push(2); [m, n]", [{"a": [1]}, {"a": [1, 2]}]),
    ("storing-into-map-copies", "let a = [1]; let m = #{x: a}; a.push(2); m.x", [1]),
    ("storing-into-array-copies", "let a = [1]; let b = [a]; a.push(2); b", [[1]]),
    ("push-self-pushes-a-copy", "let a = [1]; a.push(a); a", [1, [1]]),
    ("function-int-param-is-local", "fn inc(x) { x += 1; x }\nlet a = 1; inc(a); a", 1),
    ("function-returns-modified-copy", "fn add(m) { m.k = 1; m }\nlet m = #{}; let n = add(m); [m, n]", [{}, {"k": 1}]),
    ("index-chain-set-in-map-in-array", "let a = [#{v: [0, 0]}]; a[0].v[1] = 3; a", [{"v": [0, 3]}]),
]


MAPS: list[ConformanceCase] = [
    ("prop", "let m = #{a: 1, b: 2}; m.b", 2),
    ("index-by-string", '#{"two words": 2}["two words"]', 2),
    ("missing-prop-is-unit", "let m = #{a: 1}; m.zz", None),
    ("missing-index-is-unit", 'let m = #{a: 1}; m["zz"]', None),
    ("in-map", 'let m = #{a: 1}; ["a" in m, "b" in m]', [True, False]),
    ("len", "[#{a: 1, b: 2}.len(), len(#{}), #{}.is_empty()]", [2, 0, True]),
    ("keys-sorted", "#{b: 1, a: 2, c: 3}.keys()", ["a", "b", "c"]),
    ("values-in-key-order", "#{b: 1, a: 2, c: 3}.values()", [2, 1, 3]),
    ("remove", "let m = #{a: 1, b: 2}; let x = m.remove(\"a\"); [x, m]", [1, {"b": 2}]),
    ("remove-missing-is-unit", 'let m = #{a: 1}; m.remove("q")', None),
    ("set-new-keys", 'let m = #{}; m.x = 1; m["y"] = 2; m', {"x": 1, "y": 2}),
    ("overwrite-key", "let m = #{x: 1}; m.x = \"s\"; m", {"x": "s"}),
    ("prop-compound-assign", "let m = #{n: 1}; m.n += 5; m.n", 6),
    ("merge-plus", "#{a: 1} + #{b: 2}", {"a": 1, "b": 2}),
    ("merge-plus-right-wins", "#{a: 1, b: 1} + #{b: 2}", {"a": 1, "b": 2}),
    ("nested-access", "#{a: #{b: [1, 2]}}.a.b[1]", 2),
    ("get-and-contains", 'let m = #{a: 1}; [m.get("a"), m.get("z"), m.contains("a")]', [1, None, True]),
    ("clear", "let m = #{a: 1}; m.clear(); m", {}),
    ("mutate-array-in-map", "let m = #{list: [1, 2]}; m.list.push(3); m.list", [1, 2, 3]),
    ("iteration-order-sorted", 'let m = #{zeta: 1, alpha: 2, mid: 3}; let s = []; for k in m.keys() { s.push(k); } s',
      ["alpha", "mid", "zeta"]),
    ("quoted-keys", '#{"a b": 1, "c": 2}', {"a b": 1, "c": 2}),
]


MORE_EDGES: list[ConformanceCase] = [
    ("array-element-set-to-itself", "let a = [1, 2, 3]; a[1] = a; a", [1, [1, 2, 3], 3]),
    ("map-prop-set-to-itself", "let m = #{}; m.me = m; m", {"me": {}}),
    ("array-plus-assign-itself", "let a = [1, 2]; a += a; a", [1, 2, 1, 2]),
    ("self-assign", "let a = [1]; a = a; a", [1]),
    ("swap", "let a = 1; let b = 2; let t = a; a = b; b = t; [a, b]", [2, 1]),
    ("in-map-with-unit-value", '"a" in #{a: ()}', True),
    ("string-prefix-is-less", '"abc" < "abcd"', True),
    ("negative-zero", "-0.0", -0.0),
    ("utf8-index-from-end", '"日本語"[-1]', "語"),
    ("utf8-index-of", '"日本語".index_of("語")', 2),
    ("utf8-sub-string-negative", '"héllo".sub_string(-2)', "lo"),
    ("split-multichar-delimiter", '"a::b::c".split("::")', ["a", "b", "c"]),
    ("replace-longer", 'let s = "aaa"; s.replace("a", "bb"); s', "bbbbbb"),
    ("range-function-empty", "let r = []; for i in range(5, 2) { r.push(i); } r", []),
    ("closure-sees-later-push", "let a = [1]; let f = |x| a.len(); a.push(2); f.call(0)", 2),
    ("catch-throw-from-deep-recursion",
      'fn f(n) { if n == 0 { throw "bottom"; } f(n - 1) }\nlet r = ""; try { f(100); } catch (e) { r = e; } r', "bottom"),
    ("catch-throw-from-closure-in-map", "let r = 0; try { [1, 2].map(|x| { throw x * 10; }); } catch (e) { r = e; } r", 10),
    ("catch-error-in-sort-comparator",
      'let a = [2, 1]; let k = ""; try { a.sort(|x, y| x / 0); } catch (e) { k = e.kind; } k', "division_by_zero"),
    ("state-after-caught-error-is-usable", 'let a = [1]; try { a[5] = 1; } catch { } a.push(2); a', [1, 2]),
    ("complex-precedence", '1 + 2 * 3 == 7 && "x" in "xyz" || false', True),
    ("method-on-parenthesised-literal", "(5).to_string()", "5"),
    ("literal-index-chain", "[1, [2, [3]]][1][1][0]", 3),
    ("range-inclusive-up-to-i64-max", "let n = 0; for i in 9223372036854775806..=9223372036854775807 { n += 1; } n", 2),
    ("range-from-i64-min", "let n = 0; for i in (-9223372036854775807 - 1)..(-9223372036854775807) { n += 1; } n", 1),
    ("sub-string-clamps", '["abc".sub_string(1, 100), "abc".sub_string(5), "abc".sub_string(-10)]', ["bc", "", "abc"]),
    ("sort-comparator-is-stable", 'let a = [[1, "a"], [0, "b"], [1, "c"]]; a.sort(|x, y| x[0] - y[0]); a',
      [[0, "b"], [1, "a"], [1, "c"]]),
    ("reduce-empty", "[[].reduce(|a, b| a + b, 5), [].reduce(|a, b| a + b), [].map(|x| x)]", [5, None, []]),
    ("remove-negative-index", "let a = [1, 2, 3]; let x = a.remove(-1); [x, a]", [3, [1, 2]]),
    ("insert-before-start-goes-first", "let a = [1, 2, 3]; a.insert(-10, 9); a", [9, 1, 2, 3]),
    # Rhai: index_of(filter) gives the index of the first element the closure accepts
    ("array-index-of-closure", "[1, 2, 3].index_of(|x| x == 2)", 1),
    ("clear-during-iteration", "let a = [1, 2, 3]; let n = 0; for x in a { n += 1; a.clear(); } [n, a]", [3, []]),
]


CONFORMANCE = {
    "array": ARRAYS,
    "valsem": VALUE_SEMANTICS,
    "map": MAPS,
    "edge": MORE_EDGES,
}
