"""Conformance: what a script exchanges with its host.

The run's log (print/debug), params in and values out, modules found on a
search path, and the resource limits that end runaway scripts (timeout, fuel,
memory, stack), plus fib(30) under the default limits.
"""

# ruff: noqa: E501  (tables of programs read best one program per line)

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import peerbox

MODULES = Path(__file__).parent / "data" / "modules"


def lg(case_id: str, source: str, log: list[str]) -> Any:
    return pytest.param(source, log, id=case_id)


LOGS = [
    lg("print-string", 'print("a")', ["a"]),
    lg("print-int", "print(1)", ["1"]),
    lg("print-float", "print(1.0)", ["1.0"]),
    lg("print-bool", "print(true)", ["true"]),
    lg("print-unit-is-empty", "print(())", [""]),
    lg("print-array", 'print([1, 2, "a"])', ['[1, 2, "a"]']),
    lg("debug-string-is-quoted", 'debug("a")', ['"a"']),
    lg("debug-unit", "debug(())", ["()"]),
    lg("debug-int", "debug(5)", ["5"]),
    lg("debug-array", 'debug([1, "a"])', ['[1, "a"]']),
    lg("print-in-order", 'print("one"); debug("two"); print(3);', ["one", '"two"', "3"]),
    lg("print-in-loop", "for i in 0..3 { print(i); }", ["0", "1", "2"]),
    lg("print-interpolated", "let x = 2; print(`x=${x}`);", ["x=2"]),
    lg("print-from-function", 'fn f() { print("in f"); 1 }\nf(); f();', ["in f", "in f"]),
    lg("print-method-form", 'let s = "m"; s.print();', ["m"]),
    lg("no-output", "1 + 1", []),
]


@pytest.mark.parametrize(("source", "log"), LOGS)
def test_log(compile_and_run: Any, source: str, log: list[str]) -> None:
    res = compile_and_run(source)
    assert res.log == log


def test_print_returns_unit(compile_and_run: Any) -> None:
    assert compile_and_run('print("x")').value is None


def test_log_is_per_run() -> None:
    prog = peerbox.compile('print("hi"); 1', filename="test.rhai")
    assert prog.run().log == ["hi"]
    assert prog.run().log == ["hi"]


def test_runs_do_not_share_state() -> None:
    prog = peerbox.compile("let a = []; a.push(1); a", filename="test.rhai")
    assert prog.run().value == [1]
    assert prog.run().value == [1]


# -- params ----------------------------------------------------------------------

def pa(case_id: str, source: str, params: dict[str, Any], expected: Any) -> Any:
    return pytest.param(source, params, expected, id=case_id)


PARAMS = [
    pa("prop", "params.a + 1", {"a": 1}, 2),
    pa("index", 'params["b"]', {"b": "text"}, "text"),
    pa("missing-is-unit", "params.zz", {"a": 1}, None),
    pa("nested", "params.cfg.xs", {"cfg": {"xs": [1, 2.5, "s", None, True]}}, [1, 2.5, "s", None, True]),
    pa("float", "params.f * 2", {"f": 1.25}, 2.5),
    pa("int-bounds", "[params.hi, params.lo]", {"hi": 2**63 - 1, "lo": -(2**63)}, [2**63 - 1, -(2**63)]),
    pa("unicode", "params.s.len()", {"s": "héllo😀"}, 6),
    pa("is-a-map", "type_of(params)", {"a": 1}, "map"),
    pa("keys-sorted", "params.keys()", {"b": 1, "a": 2}, ["a", "b"]),
    pa("bytes-roundtrip", "params.b", {"b": b"\x00\x01\xff"}, b"\x00\x01\xff"),
    pa("bytes-type", "type_of(params.b)", {"b": b"xy"}, "blob"),
    pa("bytes-len-and-index", "[params.b.len(), params.b[1], params.b[-1]]", {"b": b"\x00\x01\xff"}, [3, 1, 255]),
    pa("float-inf", '[params.f, "" + params.f, "" + -params.f]', {"f": float("inf")}, [float("inf"), "inf", "-inf"]),
    pa("float-nan", '[params.f, "" + params.f, params.f == params.f]', {"f": float("nan")}, [float("nan"), "NaN", False]),
    pa("empty-containers", "[params.a, params.m, params.s]", {"a": [], "m": {}, "s": ""}, [[], {}, ""]),
    pa("deeply-nested", "params.x[0][0][0][0][0]", {"x": [[[[[7]]]]]}, 7),
    pa("visible-in-function", "fn f() { params.a * 2 }\nf()", {"a": 21}, 42),
    pa("copy-on-assign", "let p = params; p.a = 2; [p.a, params.a]", {"a": 1}, [2, 1]),
    pa("iterate-list", "let s = 0; for x in params.xs { s += x; } s", {"xs": [1, 2, 3]}, 6),
]


@pytest.mark.parametrize(("source", "params", "expected"), PARAMS)
def test_params(compile_and_run: Any, same: Any, source: str, params: dict[str, Any], expected: Any) -> None:
    res = compile_and_run(source, params=params)
    assert same(res.value, expected), f"expected {expected!r}, got {res.value!r}"


def test_no_params_is_empty_map(compile_and_run: Any) -> None:
    assert compile_and_run("[type_of(params), params.len()]").value == ["map", 0]


# -- modules ---------------------------------------------------------------------

def md(case_id: str, source: str, expected: Any) -> Any:
    return pytest.param(source, expected, id=case_id)


MODULE_VALUES = [
    md("call", 'import "util" as u;\nu::double(21)', 42),
    md("const", 'import "util" as u;\nu::K * 2', 14),
    md("fn-calls-own-fn", 'import "util" as u;\nu::quad(2)', 8),
    md("private-usable-inside-module", 'import "util" as u;\nu::uses_secret()', 100),
    md("transitive-import", 'import "chain_a" as a;\na::f(2)', 21),
    md("two-modules", 'import "util" as u;\nimport "chain_b" as b;\nu::double(b::g(1))', 20),
    md("module-fn-in-closure", 'import "util" as u;\n[1, 2].map(|x| u::double(x))', [2, 4]),
    md("module-used-in-function", 'import "util" as u;\nfn f(x) { u::double(x) + 1 }\nf(4)', 9),
]


@pytest.mark.parametrize(("source", "expected"), MODULE_VALUES)
def test_module(compile_and_run: Any, same: Any, source: str, expected: Any) -> None:
    res = compile_and_run(source, search_path=[str(MODULES)])
    assert same(res.value, expected), f"expected {expected!r}, got {res.value!r}"


MODULE_COMPILE_ERRORS = [
    md("private-hidden-from-importer", 'import "util" as u;\nu::secret()', ("secret",)),
    md("missing-module", 'import "nope" as n;\n1', ("nope",)),
    md("import-cycle", 'import "cyc_a" as a;\na::f()', ()),
    md("self-import-cycle", 'import "self_import" as s;\ns::f()', ()),
    md("undefined-module-fn", 'import "util" as u;\nu::nothing(1)', ("nothing",)),
    md("wrong-arity-module-fn", 'import "util" as u;\nu::double(1, 2)', ("double",)),
    md("undefined-module-const", 'import "util" as u;\nu::NOPE', ("NOPE",)),
    md("unknown-alias", 'import "util" as u;\nv::double(1)', ()),
]


@pytest.mark.parametrize(("source", "fragments"), MODULE_COMPILE_ERRORS)
def test_module_compile_error(compile_error: Any, source: str, fragments: tuple[str, ...]) -> None:
    err = compile_error(source, search_path=[str(MODULES)])
    text = str(err)
    for frag in fragments:
        assert frag in text, text
    assert "Traceback" not in text


def test_import_cycle_error_is_located(compile_error: Any) -> None:
    err = compile_error('import "cyc_a" as a;\na::f()', search_path=[str(MODULES)])
    # the cycle is reported at an import statement, in one of the files involved
    assert any(d.line >= 1 and ("cyc" in d.file or d.file == "test.rhai") for d in err.diagnostics), str(err)


def test_missing_module_error_position(compile_error: Any) -> None:
    err = compile_error('let x = 1;\nimport "nope" as n;\n', search_path=[str(MODULES)])
    assert err.diagnostics[0].file == "test.rhai"
    assert err.diagnostics[0].line == 2


def test_compile_error_inside_module_names_the_module(compile_error: Any) -> None:
    err = compile_error('import "broken" as b;\nb::ok()', search_path=[str(MODULES)])
    assert any("broken" in d.file and d.line == 2 for d in err.diagnostics), str(err)


def test_runtime_error_in_module_names_module_and_line(run_error: Any) -> None:
    err = run_error('import "util" as u;\nu::fail(1)', search_path=[str(MODULES)])
    assert isinstance(err, peerbox.ScriptError)
    assert err.kind == "division_by_zero"
    assert err.file is not None and "util" in err.file
    assert err.line == 9


def test_throw_in_module_caught_by_importer(compile_and_run: Any) -> None:
    src = 'import "util" as u;\nlet r = ""; try { u::thrower(); } catch (e) { r = e; } r'
    assert compile_and_run(src, search_path=[str(MODULES)]).value == "from util"


def test_compile_accepts_search_path_as_paths() -> None:
    prog = peerbox.compile('import "util" as u;\nu::K', filename="test.rhai", search_path=[MODULES])
    assert prog.run().value == 7


# -- limits ----------------------------------------------------------------------

def test_timeout_ends_infinite_loop() -> None:
    prog = peerbox.compile("loop {}", filename="test.rhai")
    t0 = time.monotonic()
    with pytest.raises(peerbox.LimitExceeded) as info:
        prog.run(limits=peerbox.Limits(timeout=0.5))
    elapsed = time.monotonic() - t0
    assert info.value.limit == "timeout"
    assert info.value.exit_code == 5
    assert elapsed < 1.5, f"took {elapsed:.2f}s for a 0.5s timeout"


def test_timeout_inside_builtins() -> None:
    # the time goes into rt's sort, not the script's own loop: the deadline still holds
    src = "let a = []; for i in 0..100000 { a.push(100000 - i); }\nloop { a.sort(); a.reverse(); }"
    prog = peerbox.compile(src, filename="test.rhai")
    t0 = time.monotonic()
    with pytest.raises(peerbox.LimitExceeded) as info:
        prog.run(limits=peerbox.Limits(timeout=0.5))
    assert info.value.limit == "timeout"
    assert time.monotonic() - t0 < 1.5


def test_timeout_is_not_catchable() -> None:
    prog = peerbox.compile("let n = 0; try { while true { n += 1; } } catch { n = -1; } n", filename="test.rhai")
    with pytest.raises(peerbox.LimitExceeded) as info:
        prog.run(limits=peerbox.Limits(timeout=0.3))
    assert info.value.limit == "timeout"


def test_timeout_keeps_log() -> None:
    prog = peerbox.compile('print("started"); loop {}', filename="test.rhai")
    with pytest.raises(peerbox.LimitExceeded) as info:
        prog.run(limits=peerbox.Limits(timeout=0.3))
    assert info.value.log == ["started"]


def test_fuel_ends_long_loop() -> None:
    prog = peerbox.compile("let i = 0; while i < 100000000 { i += 1; } i", filename="test.rhai")
    t0 = time.monotonic()
    with pytest.raises(peerbox.LimitExceeded) as info:
        prog.run(limits=peerbox.Limits(fuel=10_000))
    assert info.value.limit == "fuel"
    assert time.monotonic() - t0 < 2.0


def test_fuel_used_is_reported() -> None:
    prog = peerbox.compile("let s = 0; for i in 0..1000 { s += i; } s", filename="test.rhai")
    res = prog.run(limits=peerbox.Limits(fuel=10_000_000))
    assert res.value == 499500
    assert isinstance(res.fuel_used, int)
    assert 0 < res.fuel_used <= 10_000_000
    # more work burns more fuel
    prog2 = peerbox.compile("let s = 0; for i in 0..10000 { s += i; } s", filename="test.rhai")
    res2 = prog2.run(limits=peerbox.Limits(fuel=10_000_000))
    assert res2.fuel_used is not None and res.fuel_used is not None
    assert res2.fuel_used > res.fuel_used


MEMORY_BOMBS = [
    pytest.param('let s = "xxxxxxxx"; loop { s += s; }', id="string-doubling"),
    pytest.param("let a = [0, 0, 0, 0]; loop { a += a; }", id="array-doubling"),
    pytest.param(
        "let blk = []; for j in 0..1000 { blk.push(j); }\n"
        "let m = #{}; let i = 0; loop { m[`k${i}`] = blk; i += 1; }",  # each store copies 1000 ints
        id="map-of-copies",
    ),
    pytest.param('let s = "x"; try { loop { s += s; } } catch { s = ""; } s', id="not-catchable"),
]


@pytest.mark.parametrize("source", MEMORY_BOMBS)
def test_memory_bomb(source: str) -> None:
    prog = peerbox.compile(source, filename="test.rhai")
    t0 = time.monotonic()
    with pytest.raises(peerbox.LimitExceeded) as info:
        prog.run(limits=peerbox.Limits(memory=16 << 20, timeout=10.0))
    assert info.value.limit == "memory", f"got limit {info.value.limit!r}: {info.value}"
    assert time.monotonic() - t0 < 10.0


def test_memory_bomb_with_default_limits() -> None:
    prog = peerbox.compile('let s = "xxxxxxxx"; loop { s += s; }', filename="test.rhai")
    with pytest.raises(peerbox.LimitExceeded) as info:
        prog.run()
    assert info.value.limit == "memory"


STACK_BOMBS = [
    pytest.param("fn f(x) { f(x + 1) }\nf(0)", id="plain-recursion"),
    pytest.param("fn f(x) { 1 + f(x + 1) }\nf(0)", id="non-tail-recursion"),
    pytest.param("fn f(x) { let r = 0; try { r = f(x + 1); } catch { r = -1; } r }\nf(0)", id="not-catchable"),
    pytest.param("fn f(g) { g.call(g) }\nf(|h| f(h))", id="through-closures"),
    pytest.param("fn f(x) { [x].map(|y| f(y + 1)) }\nf(0)", id="through-builtin-callbacks"),
]


@pytest.mark.parametrize("source", STACK_BOMBS)
def test_runaway_recursion(source: str) -> None:
    prog = peerbox.compile(source, filename="test.rhai")
    with pytest.raises(peerbox.LimitExceeded) as info:
        prog.run(limits=peerbox.Limits(timeout=10.0))
    assert info.value.limit == "stack", f"got limit {info.value.limit!r}: {info.value}"


def test_program_runs_again_after_a_limit() -> None:
    prog = peerbox.compile("let n = params.n; let i = 0; while i < n { i += 1; } i", filename="test.rhai")
    with pytest.raises(peerbox.LimitExceeded):
        prog.run(params={"n": 10**12}, limits=peerbox.Limits(fuel=50_000))
    assert prog.run(params={"n": 10}).value == 10


def test_fib_30_with_default_limits() -> None:
    src = "fn fib(n) { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }\nfib(30)"
    t0 = time.monotonic()
    res = peerbox.compile(src, filename="fib.rhai").run()
    elapsed = time.monotonic() - t0
    assert res.value == 832040
    assert elapsed < 5.0, f"fib(30) took {elapsed:.2f}s"
