"""Code generation choices a user can observe: int clones, fast paths, error lines."""

from __future__ import annotations

from typing import Any

import pytest

import peerbox
from peerbox.wasm_guests.lang import compile_to_wat


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # the same function called with ints (the int clone) and with other values (the generic body)
        ('fn twice(x) { x + x } [twice(21), twice("ab"), twice(1.5), twice([1])]', [42, "abab", 3.0, [1, 1]]),
        # a clone whose result is not always an int must not be treated as one
        ('fn f(n) { if n > 0 { n } else { "neg" } } [f(1) + f(2), f(-1) + "!"]', [3, "neg!"]),
        # recursion through the clone, results added as ints
        ("fn fib(n) { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } } fib(20)", 6765),
        # mutual recursion between clones
        ("fn ev(n) { if n == 0 { true } else { od(n - 1) } } "
         "fn od(n) { if n == 0 { false } else { ev(n - 1) } }"
         " [ev(10), od(7)]", [True, True]),
        # a parameter that is reassigned gets no clone, and still works
        ("fn count(n) { let c = 0; while n > 0 { n -= 1; c += 1; } c } count(5)", 5),
    ],
)
def test_int_clones_keep_the_languages_meaning(compile_and_run: Any, source: str, expected: Any) -> None:
    assert compile_and_run(source).value == expected


def test_overflow_inside_a_clone_is_caught_with_its_line(run_error: Any) -> None:
    err = run_error("fn g(n) {\n  n + 9223372036854775807\n}\ng(1)")
    assert isinstance(err, peerbox.ScriptError)
    assert (err.kind, err.line) == ("integer_overflow", 2)


def test_a_function_with_untouched_int_params_gets_a_clone() -> None:
    wat = compile_to_wat("fn fib(n) { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } } fib(5)").wat
    assert "(func $f0_fib_1_int" in wat
    clone = wat[wat.index("(func $f0_fib_1_int"):wat.index("(func $f0_fib_1 ")]
    assert "call $rt_add" not in clone and "call $rt_lt" not in clone  # no generic paths left
    assert "call $f0_fib_1_int" in clone


def test_no_clone_for_a_reassigned_or_captured_parameter() -> None:
    wat = compile_to_wat("fn a(n) { n = 1; n } fn b(n) { let f = || n; f.call() } a(1) + b(2)").wat
    assert "_int" not in wat
