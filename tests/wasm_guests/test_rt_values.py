"""The guest runtime rt.wasm, run alone under wasmtime (see conftest.py): arithmetic,
display and debug forms, strings, comparisons.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from .conftest import (  # shared by the test_rt_* files
    EXC, I64_MAX, I64_MIN, RtHarness, kind_of,
    s_len,
)


# ---- arithmetic ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "a", "b", "want"),
    [
        ("rt_add", 2, 3, 5),
        ("rt_sub", 2, 3, -1),
        ("rt_mul", -4, 5, -20),
        ("rt_div", 7, 2, 3),
        ("rt_div", -7, 2, -3),
        ("rt_div", 7, -2, -3),
        ("rt_mod", 7, 3, 1),
        ("rt_mod", -7, 3, -1),
        ("rt_mod", 7, -3, 1),
        ("rt_pow", 2, 10, 1024),
        ("rt_pow", -2, 63, I64_MIN),
        ("rt_pow", 0, 0, 1),
        ("rt_pow", -1, 2**62 + 1, -1),
        ("rt_mul", 3037000499, 3037000499, 9223372030926249001),
        ("rt_mul", I64_MIN, 1, I64_MIN),
        ("rt_mul", -(2**32), 2**31, I64_MIN),
        ("rt_add", 1, 0.5, 1.5),
        ("rt_sub", 0.5, 1, -0.5),
        ("rt_mul", 2.5, 2, 5.0),
        ("rt_div", 1, 4.0, 0.25),
        ("rt_mod", 5.5, 2, 1.5),
        ("rt_mod", -5.5, 2, -1.5),
        ("rt_pow", 2.0, 0.5, math.sqrt(2)),
        ("rt_pow", 2, -1.0, 0.5),
        ("rt_band", 12, 10, 8),
        ("rt_bor", 12, 10, 14),
        ("rt_bxor", 12, 10, 6),
        ("rt_band", True, False, False),
        ("rt_bor", True, False, True),
        ("rt_bxor", True, True, False),
        ("rt_shl", 1, 63, I64_MIN),
        ("rt_shr", -8, 1, -4),
        ("rt_shr", I64_MAX, 62, 1),
    ],
)
def test_arith_values(rt: RtHarness, same: Any, op: str, a: Any, b: Any, want: Any) -> None:
    got = rt.run(op, a, b)
    assert same(got, want), (got, want)


def test_float_division_by_zero_is_not_an_error(rt: RtHarness) -> None:
    assert rt.run("rt_div", 1.0, 0) == math.inf
    assert rt.run("rt_div", -1, 0.0) == -math.inf
    assert math.isnan(rt.run("rt_div", 0.0, 0.0))
    assert math.isnan(rt.run("rt_mod", 1.0, 0))


def test_fmod_matches_python(rt: RtHarness) -> None:
    rnd = random.Random(7)
    for _ in range(300):
        a = rnd.uniform(-1e6, 1e6) * 10 ** rnd.randint(-200, 200)
        b = rnd.uniform(-1e3, 1e3) * 10 ** rnd.randint(-200, 200)
        got = rt.run("rt_mod", a, b)
        assert got == math.fmod(a, b) and math.copysign(1, got) == math.copysign(1, math.fmod(a, b))
    assert rt.run("rt_mod", 5e-324, 3.0) == 5e-324
    assert rt.run("rt_mod", 1.0, math.inf) == 1.0


@pytest.mark.parametrize(
    ("op", "a", "b", "kind", "message"),
    [
        ("rt_add", I64_MAX, 1, "integer_overflow", "integer overflow"),
        ("rt_sub", I64_MIN, 1, "integer_overflow", "integer overflow"),
        ("rt_mul", 2**32, 2**31, "integer_overflow", "integer overflow"),
        ("rt_mul", -(2**32), -(2**31), "integer_overflow", "integer overflow"),
        ("rt_div", I64_MIN, -1, "integer_overflow", "integer overflow"),
        ("rt_mod", I64_MIN, -1, "integer_overflow", "integer overflow"),
        ("rt_pow", 2, 63, "integer_overflow", "integer overflow"),
        ("rt_pow", 3, 1000, "integer_overflow", "integer overflow"),
        ("rt_div", 1, 0, "division_by_zero", "division by zero"),
        ("rt_mod", 1, 0, "division_by_zero", "division by zero"),
        ("rt_pow", 2, -1, "invalid_argument", "cannot raise an integer to a negative power"),
        ("rt_shl", 1, 64, "invalid_argument", "shift amount 64 is out of range 0..63"),
        ("rt_shr", 1, -1, "invalid_argument", "shift amount -1 is out of range 0..63"),
        ("rt_sub", "s", [1], "type_mismatch", "cannot subtract array from string"),
        ("rt_add", [1], 1, "type_mismatch", "cannot add i64 to array"),
        ("rt_add", {"a": 1}, [1], "type_mismatch", "cannot add array to map"),
        ("rt_mul", "a", 3, "type_mismatch", "cannot multiply string by i64"),
        ("rt_div", None, 3, "type_mismatch", "cannot divide () by i64"),
        ("rt_mod", True, 3, "type_mismatch", "cannot take the remainder of bool by i64"),
        ("rt_pow", "x", 2.0, "type_mismatch", "cannot raise string to the power f64"),
        ("rt_band", 1, True, "type_mismatch", "cannot apply & to i64 and bool"),
        ("rt_bor", 1.0, 1, "type_mismatch", "cannot apply | to f64 and i64"),
        ("rt_bxor", "a", "b", "type_mismatch", "cannot apply ^ to string and string"),
        ("rt_shl", 1.0, 1, "type_mismatch", "cannot apply << to f64 and i64"),
        ("rt_shr", True, 1, "type_mismatch", "cannot apply >> to bool and i64"),
    ],
)
def test_arith_errors(rt: RtHarness, op: str, a: Any, b: Any, kind: str, message: str) -> None:
    assert kind_of(rt, op, a, b) == (kind, message)


def test_unary(rt: RtHarness) -> None:
    assert rt.run("rt_neg", 5) == -5
    assert rt.run("rt_neg", I64_MAX) == -I64_MAX
    assert math.copysign(1, rt.run("rt_neg", 0.0)) == -1
    assert kind_of(rt, "rt_neg", I64_MIN) == ("integer_overflow", "integer overflow")
    assert kind_of(rt, "rt_neg", "a") == ("type_mismatch", "cannot negate string")
    assert rt.run("rt_not", True) is False
    assert kind_of(rt, "rt_not", 1) == ("type_mismatch", "expected a bool, found i64")


def test_error_helpers(rt: RtHarness) -> None:
    assert kind_of(rt, "rt_err_bool", [1]) == ("type_mismatch", "expected a bool, found array")
    assert kind_of(rt, "rt_err_not_fn", 3) == ("type_mismatch", "i64 is not a function")
    assert rt.raw("rt_err_arity", 2, 1) == (EXC, 0)
    assert rt.py(rt.raw("rt_exc_take"))["message"] == "closure expects 2 arguments, got 1"
    assert rt.raw("rt_err_arity", 1, 3) == (EXC, 0)
    taken = rt.py(rt.raw("rt_exc_take"))
    assert taken == {"kind": "arity", "message": "closure expects 1 argument, got 3", "line": 0}
    assert rt.raw("rt_err_overflow") == (EXC, 0)
    assert rt.py(rt.raw("rt_exc_take"))["kind"] == "integer_overflow"


# ---- display forms and strings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "shown"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (I64_MIN, "-9223372036854775808"),
        (1.0, "1.0"),
        (0.1, "0.1"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e100, "1e+100"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (math.nan, "NaN"),
        ('raw "text"', 'raw "text"'),
        ([1, "a", 2.0, None, [True]], '[1, "a", 2.0, (), [true]]'),
        ({"b": "x", "a": 1, "two words": [], 'q"': {}}, '#{"a": 1, "b": "x", "q\\"": #{}, "two words": []}'),
        (b"\x01\x02\xff", "[0102ff]"),
        ([], "[]"),
        ({}, "#{}"),
    ],
)
def test_display_forms(rt: RtHarness, x: Any, shown: str) -> None:
    assert rt.run("f_to_string_1", x) == shown
    assert rt.run("rt_add", "", x) == shown
    assert rt.run("rt_add", "<", x) == "<" + shown
    assert rt.run("rt_add", x, ">") == shown + ">"


def test_closure_display(rt: RtHarness) -> None:
    f = rt.closure(lambda x: x, 1)
    assert rt.run("f_to_string_1", f) == "<closure>"
    assert rt.run("rt_add", "f=", f) == "f=<closure>"
    assert rt.run("f_type_of_1", f) == "Fn"
    assert rt.finish(rt.val([f]))["value"] == ["<closure>"]


@pytest.mark.parametrize(
    ("x", "shown"),
    [
        (None, "()"),
        ('a"b\\c\nd\te\r\0\x1b\x7f', '"a\\"b\\\\c\\nd\\te\\r\\0\\u{1b}\\u{7f}"'),
        ("é✓", '"é✓"'),
        (["x", None], '["x", ()]'),
        (1.5, "1.5"),
    ],
)
def test_debug_forms(rt: RtHarness, x: Any, shown: str) -> None:
    assert rt.run("f_to_debug_1", x) == shown


def test_string_append_is_linear_and_never_changes_slices(rt: RtHarness) -> None:
    s = rt.val("")
    ptrs = set()
    snapshots = []
    for i in range(10_000):
        s = rt.call("rt_add", s, i if i % 2 else f"<{i}>")
        ptrs.add(s[1] & 0xFFFFFFFF)
        if i % 2500 == 0:
            snapshots.append((s, rt.py(s)))
    want = "".join(str(i) if i % 2 else f"<{i}>" for i in range(10_000))
    assert rt.py(s) == want
    assert len(ptrs) < 40, "each append must extend the buffer in place (amortised doubling)"
    for v, text in snapshots:
        assert rt.py(v) == text
    # an older slice is no longer at the buffer's end: appending to it copies
    old = snapshots[1][0]
    branch = rt.call("rt_add", old, "!")
    assert rt.py(branch) == snapshots[1][1] + "!"
    assert rt.py(s) == want
    pages = rt.memory.size(rt.store)
    assert pages * 65536 < 4 << 20, "10k appends should use well under 4 MiB"


def test_string_append_with_temporaries_in_the_loop_is_linear(rt: RtHarness) -> None:
    s = rt.val("")
    ptrs = set()
    for i in range(3000):
        part = rt.call("rt_add", rt.val("part"), i)  # a fresh string each time
        tmp = rt.call("f_to_string_1", [i])
        s = rt.call("rt_add", s, part)
        s = rt.call("rt_add", s, tmp)
        ptrs.add(s[1] & 0xFFFFFFFF)
    assert rt.py(s) == "".join(f"part{i}[{i}]" for i in range(3000))
    assert len(ptrs) < 40


def test_extending_an_old_slice_never_overwrites_a_newer_one(rt: RtHarness) -> None:
    # "a" + 9 bytes: a fresh buffer of 10 + 10 // 2 + 16 = 31 bytes; then fill it exactly
    s = rt.call("rt_add", rt.val("a"), rt.val("x" * 9))
    full = rt.call("rt_add", s, rt.val("y" * 21))
    assert s_len(full) == 31
    branch = rt.call("rt_add", s, rt.val("z"))
    assert rt.py(full) == "a" + "x" * 9 + "y" * 21
    assert rt.py(branch) == "a" + "x" * 9 + "z"
    more = rt.call("rt_add", full, rt.val("w"))
    assert rt.py(more) == rt.py(full) + "w"
    assert rt.py(full) == "a" + "x" * 9 + "y" * 21


def test_string_concat_shares_sides(rt: RtHarness) -> None:
    a = rt.val("abc")
    assert rt.call("rt_add", a, rt.val("")) == a
    assert rt.call("rt_add", rt.val(""), a) == a


# ---- comparisons -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "eq", "lt"),
    [
        (1, 1.0, True, False),
        (1, 2.5, False, True),
        (2**53 + 1, float(2**53), True, False),
        ("a", "b", False, True),
        ("ab", "b", False, True),
        ("b", "ab", False, False),
        ("", "a", False, True),
        ("é", "z", False, False),
        (False, True, False, True),
        (None, None, True, False),
        ([1, [2, {"a": 1}]], [1.0, [2, {"a": 1}]], True, False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True, False),
        ({"a": 1}, {"a": 1, "b": 2}, False, False),
        ([1, 2], [1, 2, 3], False, False),
        ([1], "a", False, False),
        (1, "1", False, False),
        (None, 0, False, False),
        (b"ab", b"ab", True, False),
        (math.nan, math.nan, False, False),
    ],
)
def test_comparisons(rt: RtHarness, a: Any, b: Any, eq: bool, lt: bool) -> None:
    assert rt.run("rt_eq", a, b) is eq
    assert rt.run("rt_ne", a, b) is (not eq)
    assert rt.run("rt_lt", a, b) is lt
    ordered = lt or (eq and not isinstance(a, (list, dict, bytes, type(None))))
    assert rt.run("rt_le", a, b) is ordered
    assert rt.run("rt_gt", b, a) is lt
    assert rt.run("rt_ge", b, a) is ordered


def test_closure_equality_is_identity(rt: RtHarness) -> None:
    f = rt.closure(lambda x: x, 1)
    g = rt.closure(lambda x: x, 1)
    assert rt.run("rt_eq", f, f) is True
    assert rt.run("rt_eq", f, g) is False
