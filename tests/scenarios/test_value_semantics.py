"""Value semantics by copy-on-write (issue 14): a change through one place is never seen through another.

Arrays, maps and blobs are shared when they are stored in a second place and
copied only when one of the places changes them (``wasm_guests/ABI.md``,
"Values"). Each case changes a copy in one position (variables, array slots,
map values, captured variables, function parameters, values returned as
results, loop variables, the ``params`` global) and checks the original is
unchanged. Every case runs twice: on the default sandbox and on the debug
build of rt, which collects garbage at every safe point and poisons what it
frees, so a shared value freed too early or changed in place shows up here.
"""

from __future__ import annotations

from typing import Any

import pytest

import peerbox


def case(case_id: str, source: str, expected: Any, params: dict[str, Any] | None = None) -> Any:
    return pytest.param(source, expected, params, id=case_id)


ALIASING = [
    # variables
    case("let-copy-push", "let a = [1, 2]; let b = a; b.push(3); [a, b]", [[1, 2], [1, 2, 3]]),
    case("let-copy-original-changes", "let a = [1]; let b = a; a.push(2); [a, b]", [[1, 2], [1]]),
    case("assign-copy", "let a = #{x: 1}; let b = #{}; b = a; b.x = 2; [a.x, b.x]", [1, 2]),
    case("three-sharers", "let a = [0]; let b = a; let c = b; c[0] = 3; b.push(4); [a, b, c]",
         [[0], [0, 4], [3]]),
    case("sort-a-copy", "let a = [3, 1, 2]; let b = a; b.sort(); [a, b]", [[3, 1, 2], [1, 2, 3]]),
    case("reverse-a-copy", "let a = [1, 2]; let b = a; b.reverse(); [a, b]", [[1, 2], [2, 1]]),
    case("clear-a-copy", "let m = #{a: 1}; let n = m; n.clear(); [m, n]", [{"a": 1}, {}]),
    case("remove-from-a-copy", "let m = #{a: 1, b: 2}; let n = m; n.remove(\"a\"); [m, n]",
         [{"a": 1, "b": 2}, {"b": 2}]),
    case("pop-a-copy", "let a = [1, 2]; let b = a; let x = b.pop(); [a, b, x]", [[1, 2], [1], 2]),
    # array slots
    case("element-out-then-changed", "let a = [[1]]; let x = a[0]; x.push(2); [a, x]", [[[1]], [1, 2]]),
    case("changed-through-copy-of-outer", "let a = [[1]]; let b = a; b[0].push(2); [a, b]",
         [[[1]], [[1, 2]]]),
    case("slot-assigned-from-variable", "let x = [1]; let a = [0]; a[0] = x; x.push(2); a[0].push(3); [a, x]",
         [[[1, 3]], [1, 2]]),
    case("literal-holds-copies", "let x = [1]; let a = [x, x]; a[0].push(2); [a, x]", [[[1, 2], [1]], [1]]),
    case("nested-index-set", "let a = [#{v: [0, 0]}]; let b = a; b[0].v[1] = 3; [a, b]",
         [[{"v": [0, 0]}], [{"v": [0, 3]}]]),
    case("push-self", "let a = [1]; a.push(a); a", [1, [1]]),
    case("assign-self-into-slot", "let a = [1, 2]; a[0] = a; a", [[1, 2], 2]),
    case("concat-shares-elements", "let a = [[1]]; let b = a + [[2]]; b[0].push(9); [a, b]",
         [[[1]], [[1, 9], [2]]]),
    # map values
    case("value-out-then-changed", "let m = #{k: [1]}; let v = m.k; v.push(2); [m, v]", [{"k": [1]}, [1, 2]]),
    case("deep-prop-set-on-copy", "let m = #{k: #{x: 1}}; let n = m; n.k.x = 2; [m.k.x, n.k.x]", [1, 2]),
    case("map-holds-its-own-copy", "let m = #{}; let a = [m]; m.a = a; m.a[0].z = 1; [m.a[0], a[0]]",
         [{"z": 1}, {}]),
    case("values-are-copies", "let m = #{a: [1]}; let vs = m.values(); vs[0].push(2); [m, vs]",
         [{"a": [1]}, [[1, 2]]]),
    case("index-assign-by-key", 'let m = #{}; let x = [1]; m["x"] = x; m["x"].push(2); [m, x]',
         [{"x": [1, 2]}, [1]]),
    case("map-merge-shares-values", "let a = #{k: [1]}; let b = #{} + a; b.k.push(2); [a, b]",
         [{"k": [1]}, {"k": [1, 2]}]),
    # captured variables (shared with their scope, as in Rhai) and copies of them
    case("closure-changes-captured", "let a = [1]; let f = || { a.push(2); }; f.call(); a", [1, 2]),
    case("copy-of-captured-unchanged", "let a = [1]; let b = a; let f = || { a.push(2); }; f.call(); [a, b]",
         [[1, 2], [1]]),
    case("closure-copies-captured", "let a = [1]; let f = || { let b = a; b.push(2); b }; [f.call(), a]",
         [[1, 2], [1]]),
    case("closure-result-then-changed", "let a = [1]; let f = || a; let r = f.call(); r.push(2); [a, r]",
         [[1], [1, 2]]),
    # function parameters and results
    case("param-changed", "fn f(x) { x.push(9); x }\nlet a = [1]; let b = f(a); [a, b]", [[1], [1, 9]]),
    case("param-prop-changed", "fn f(m) { m.k.push(1); m }\nlet a = #{k: []}; let b = f(a); [a, b]",
         [{"k": []}, {"k": [1]}]),
    case("result-is-param", "fn id(x) { x }\nlet a = [1]; let b = id(a); b.push(2); [a, b]", [[1], [1, 2]]),
    case("result-changed-in-caller", "fn mk() { let v = [1]; v }\nlet a = mk(); let b = a; a.push(2); [a, b]",
         [[1, 2], [1]]),
    case("param-element-assigned", "fn set(x, v) { x[0] = v; x }\nlet a = [0]; let b = set(a, 5); [a, b]",
         [[0], [5]]),
    # loop variables and the iterated array
    case("loop-variable-changed", "let a = [[1], [2]]; for x in a { x.push(0); } a", [[1], [2]]),
    case("array-changed-while-iterated", "let a = [1, 2, 3]; let n = 0; for x in a { a.push(x); n += 1; } [n, a]",
         [3, [1, 2, 3, 1, 2, 3]]),
    case("map-built-from-loop-variables", "let out = #{}; for r in [#{k: \"a\", v: [1]}] { out[r.k] = r.v; "
         "r.v.push(2); out[r.k].push(3); } out", {"a": [1, 3]}),
    # strings: immutable, `+=` appends in place only when nobody else sees it
    case("string-plus-assign-copy", 'let s = "ab"; let t = s; t += "c"; [s, t]', ["ab", "abc"]),
    case("two-extensions-of-one-string", 'let s = "a" + "b"; let t = s + "c"; let u = s + "d"; [s, t, u]',
         ["ab", "abc", "abd"]),
    case("string-built-in-a-loop", 'let s = ""; let parts = []; for i in 0..5 { s += `${i}`; parts.push(s); } parts',
         ["0", "01", "012", "0123", "01234"]),
    case("replace-a-copy", 'let s = "aXa"; let t = s; t.replace("a", "b"); [s, t]', ["aXa", "bXb"]),
    # the params global: read by reference, changed only as a copy
    case("params-copy-changed", "let p = params.list; p.push(4); [params.list, p]", [[1], [1, 4]],
         {"list": [1]}),
    # throw / catch: the thrown value is a copy
    case("thrown-copy", "let a = [1]; let r = (); try { throw a; } catch (e) { e.push(2); a.push(3); r = [a, e]; } r",
         [[1, 3], [1, 2]]),
]


@pytest.fixture(params=["default", "debug"])
def sandbox(request: pytest.FixtureRequest) -> peerbox.Sandbox | None:
    """The default sandbox (None) and the debug build of rt (a collection at every safe point)."""
    if request.param == "default":
        return None
    sandbox: peerbox.Sandbox = request.getfixturevalue("debug_sandbox")
    return sandbox


@pytest.mark.parametrize(("source", "expected", "params"), ALIASING)
def test_a_change_through_one_place_is_not_seen_through_another(
        sandbox: peerbox.Sandbox | None, same: Any, source: str, expected: Any, params: dict[str, Any] | None
) -> None:
    result = peerbox.compile(source, sandbox=sandbox).run(params=params or {})
    assert same(result.value, expected), result.value


def test_a_push_on_an_array_nobody_else_holds_is_amortised_constant(sandbox: peerbox.Sandbox | None) -> None:
    """200k pushes keep one array: without in-place growth each push would copy (quadratic work,
    and garbage many times the array's size); the peak is a small multiple of what it keeps."""
    src = "let a = []; for i in 0..200000 { a.push(i); } let s = \"\"; for i in 0..20000 { s += \"x\"; } [a.len(), s.len()]"
    result = peerbox.compile(src, sandbox=sandbox).run(limits=peerbox.Limits(timeout=20))
    assert result.value == [200_000, 20_000]
    assert result.peak_memory < 24 << 20  # 200k slots of 16 bytes = 3.2 MiB, doubling: under 8 MiB


def test_nesting_is_bounded_as_values_are_built(run_error: Any) -> None:
    """129 levels of containers are refused where the 129th is built (the limit of params and results)."""
    err = run_error("let a = [];\nfor i in 0..200 {\n  a = [a];\n}\na")
    assert err.kind == "too_deep" and err.line == 3
