"""Tests of the guest runtime rt.wasm, run alone under wasmtime (see conftest.py).

They call rt's exports the way compiled scripts do and check values, error
kinds and messages, the CBOR entry protocol, the log, performance-shaped
workloads (10k map keys, 100k-int sort, 10k-part strings) and memory faults.
"""

from __future__ import annotations

import math
import pathlib
import random
import re
import shutil
import struct
import subprocess
from typing import Any

import cbor2
import pytest
import wasmtime

from peerbox.wasm_guests import RT_ABI_VERSION, rt_wasm_bytes, rt_wasm_path
from peerbox.wasm_guests.lang._builtins import BUILTINS

UNIT, BOOL, INT, FLOAT, STR, ARRAY, MAP, FN, BLOB, EXC = 0, 1, 2, 3, 4, 5, 6, 7, 8, 255
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
RtHarness = Any  # conftest.RtHarness (conftest modules are not importable under --import-mode=importlib)
REPO = pathlib.Path(__file__).resolve().parents[2]


def s_len(v: tuple[int, int]) -> int:
    return (v[1] >> 32) & 0xFFFFFFFF


def kind_of(rt: RtHarness, name: str, *args: Any) -> tuple[str, str]:
    e = rt.err(name, *args)
    return e.kind, e.message


# ---- the module itself ---------------------------------------------------------------


def test_facade() -> None:
    assert rt_wasm_path().read_bytes() == rt_wasm_bytes()
    assert rt_wasm_bytes()[:4] == b"\0asm"
    assert isinstance(RT_ABI_VERSION, int)


def test_exports_match_abi_and_builtins() -> None:
    module = wasmtime.Module(wasmtime.Engine(), rt_wasm_bytes())
    exports = {e.name for e in module.exports}
    abi = (REPO / "wasm_guests" / "ABI.md").read_text()
    table = [line for line in abi.splitlines() if line.startswith("| `")]
    wanted = set()
    for line in table:
        wanted.update(re.findall(r"`((?:rt_\w+)|memory)`", line.split("|")[1]))
    assert len(wanted) > 40
    missing = wanted - exports
    assert not missing, missing
    for b in BUILTINS:
        assert b.export in exports, b.export
    imports = {(i.module, i.name) for i in module.imports}
    assert imports == {
        ("peerbox_rt", "fmt_f64"),
        ("peerbox_rt", "parse_f64"),
        ("peerbox_rt", "pow_f64"),
        ("peerbox", "call"),
        ("env", "__indirect_function_table"),
    }


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed")
def test_build_sh_reproduces_committed_wasm(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "rt.wasm"
    subprocess.run(
        ["bash", str(REPO / "wasm_guests" / "rt" / "build.sh"), str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert out.read_bytes() == rt_wasm_path().read_bytes(), "rt.wasm is stale: run `make rt` and commit it"


def test_build_sh_fails_loudly(tmp_path: pathlib.Path) -> None:
    proc = subprocess.run(
        ["bash", str(REPO / "wasm_guests" / "rt" / "build.sh"), str(tmp_path / "no" / "x.wasm")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "does not exist" in proc.stderr


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


# ---- containers ----------------------------------------------------------------------------------


def test_index_get_and_set(rt: RtHarness) -> None:
    arr = rt.val([10, 20, 30])
    assert rt.run("rt_index_get", arr, 0) == 10
    assert rt.run("rt_index_get", arr, -1) == 30
    assert kind_of(rt, "rt_index_get", arr, 3) == (
        "index_out_of_range",
        "index 3 out of range for array of length 3",
    )
    assert kind_of(rt, "rt_index_get", arr, -4) == (
        "index_out_of_range",
        "index -4 out of range for array of length 3",
    )
    assert kind_of(rt, "rt_index_get", arr, "x") == ("type_mismatch", "array index must be i64, not string")
    assert rt.run("rt_index_set", arr, -2, "b") is None
    assert rt.py(arr) == [10, "b", 30]
    assert rt.err("rt_index_set", arr, 5, 1).kind == "index_out_of_range"
    s = rt.val("héllo✓")
    assert rt.run("rt_index_get", s, 1) == "é"
    assert rt.run("rt_index_get", s, -1) == "✓"
    assert kind_of(rt, "rt_index_get", rt.val("abc"), 5) == (
        "index_out_of_range",
        "index 5 out of range for string of length 3",
    )
    assert rt.err("rt_index_set", s, 0, "x").kind == "type_mismatch"
    m = rt.val({"a": 1})
    assert rt.run("rt_index_get", m, "a") == 1
    assert rt.run("rt_index_get", m, "zz") is None
    assert rt.run("rt_index_set", m, "zz", 2) is None
    assert rt.py(m) == {"a": 1, "zz": 2}
    assert kind_of(rt, "rt_index_get", m, 1) == ("type_mismatch", "map key must be a string, not i64")
    b = rt.val(b"\x05\x06")
    assert rt.run("rt_index_get", b, 1) == 6
    rt.call("rt_index_set", b, 0, 0x1FF)
    assert rt.py(b) == b"\xff\x06"
    assert kind_of(rt, "rt_index_get", 5, 0) == ("type_mismatch", "cannot index into i64")


def test_index_get_returns_a_reference(rt: RtHarness) -> None:
    db = rt.val({"users": [{"tags": ["x"]}]})
    users = rt.call("rt_prop_get", db, rt.sval("users"))
    first = rt.call("rt_index_get", users, 0)
    tags = rt.call("rt_prop_get", first, rt.sval("tags"))
    rt.call("f_push_2", tags, "y")
    assert rt.py(db) == {"users": [{"tags": ["x", "y"]}]}


def test_props(rt: RtHarness) -> None:
    m = rt.val({"k": 1})
    assert rt.run("rt_prop_get", m, "k") == 1
    assert rt.run("rt_prop_get", m, "missing") is None
    rt.call("rt_prop_set", m, "n", [1])
    assert rt.py(m) == {"k": 1, "n": [1]}
    assert kind_of(rt, "rt_prop_get", 5, "k") == ("not_found", "property k not found on i64")
    assert rt.err("rt_prop_set", [1], "k", 1).kind == "not_found"


def test_in(rt: RtHarness) -> None:
    assert rt.run("rt_in", 2.0, [1, 2]) is True
    assert rt.run("rt_in", [1], [[1], 2]) is True
    assert rt.run("rt_in", 3, [1, 2]) is False
    assert rt.run("rt_in", "a", {"a": None}) is True
    assert rt.run("rt_in", "b", {"a": None}) is False
    assert rt.run("rt_in", "ll", "hello") is True
    assert rt.run("rt_in", "", "x") is True
    assert rt.run("rt_in", "z", "hello") is False
    assert rt.run("rt_in", 255, b"\xff") is True
    assert kind_of(rt, "rt_in", 1, "abc") == ("type_mismatch", "cannot look for i64 in string")
    assert rt.err("rt_in", 1, {"a": 1}).kind == "type_mismatch"
    assert rt.err("rt_in", 1, 2).kind == "type_mismatch"


def test_copy_is_deep_and_bounded(rt: RtHarness) -> None:
    orig = rt.val({"a": [1, {"b": [2]}], "blob": b"\x01"})
    c = rt.call("rt_copy", orig)
    inner = rt.call("rt_prop_get", c, rt.sval("a"))
    rt.call("f_push_2", inner, 3)
    rt.call("rt_index_set", rt.call("rt_prop_get", rt.call("rt_index_get", inner, 1), rt.sval("b")), 0, 9)
    assert rt.py(orig) == {"a": [1, {"b": [2]}], "blob": b"\x01"}
    assert rt.py(c) == {"a": [1, {"b": [9]}, 3], "blob": b"\x01"}
    assert rt.call("rt_copy", rt.val(5)) == (INT, 5)
    deep: Any = []
    for _ in range(127):
        deep = [deep]
    ok = rt.val(deep)  # 128 nested arrays
    rt.call("rt_copy", ok)
    too = rt.raw("rt_array_new", 1)
    rt.raw("rt_array_push", too, ok)
    assert kind_of(rt, "rt_copy", too)[0] == "too_deep"


def test_array_and_map_plus(rt: RtHarness) -> None:
    a, b = rt.val([1, [2]]), rt.val([[3]])
    c = rt.call("rt_add", a, b)
    assert rt.py(c) == [1, [2], [3]]
    rt.call("f_push_2", rt.call("rt_index_get", c, 2), 4)
    rt.call("f_push_2", rt.call("rt_index_get", c, 1), 5)
    assert rt.py(a) == [1, [2]] and rt.py(b) == [[3]]
    m = rt.call("rt_add", {"a": 1, "b": [1]}, {"b": 2, "c": 3})
    assert rt.py(m) == {"a": 1, "b": 2, "c": 3}
    assert rt.run("rt_add", b"\x01", b"\x02") == b"\x01\x02"


def test_iter(rt: RtHarness) -> None:
    arr = rt.val([1, 2])
    it = rt.call("rt_iter", arr)
    rt.call("f_push_2", arr, 3)
    assert rt.py(it) == [1, 2]
    assert rt.run("rt_iter", "aé✓") == ["a", "é", "✓"]
    assert rt.run("rt_iter", b"\x01\x02") == [1, 2]
    assert kind_of(rt, "rt_iter", 5) == ("type_mismatch", "cannot iterate over i64")
    assert kind_of(rt, "rt_iter", {"a": 1}) == ("type_mismatch", "cannot iterate over map")


def test_map_10k_keys_sorted_and_fast(rt: RtHarness) -> None:
    m = rt.raw("rt_map_new")
    keys = [f"k{i}" for i in range(10_000)]
    random.Random(1).shuffle(keys)
    for i, k in enumerate(keys):
        rt.raw("rt_map_set", m, rt.sval(k), (INT, i))
    assert rt.run("f_len_1", m) == 10_000
    got_keys = rt.run("f_keys_1", m)
    assert got_keys == sorted(keys, key=str.encode)
    for i, k in enumerate(keys[:500]):
        assert rt.run("rt_index_get", m, k) == i
    # overwrite and remove half, then everything still consistent
    for i, k in enumerate(keys[:5000]):
        assert rt.run("f_remove_2", m, k) == i
    assert rt.run("f_remove_2", m, keys[0]) is None
    rt.call("rt_prop_set", m, keys[9999], "last")
    assert rt.run("f_len_1", m) == 5000
    rest = sorted(keys[5000:], key=str.encode)
    assert rt.run("f_keys_1", m) == rest
    values = rt.run("f_values_1", m)
    assert len(values) == 5000 and values[rest.index(keys[9999])] == "last"
    for k in keys[:100]:
        assert rt.run("rt_in", k, m) is False
    for k in keys[5000:5100]:
        assert rt.run("rt_in", k, m) is True
    decoded = rt.finish(m)["value"]
    assert list(decoded) == rest


def test_map_unicode_key_order_is_bytewise(rt: RtHarness) -> None:
    keys = ["b", "a", "é", "Z", "aa", "", "\x7f", "z"]
    m = rt.val({k: i for i, k in enumerate(keys)})
    assert rt.run("f_keys_1", m) == sorted(keys, key=str.encode)


# ---- sorting ------------------------------------------------------------------------------------


def test_sort_100k_ints(rt: RtHarness) -> None:
    rnd = random.Random(3)
    xs = [rnd.randint(-(10**12), 10**12) for _ in range(100_000)]
    assert rt.begin({"params": {"xs": xs}}) == 0
    arr = rt.call("rt_prop_get", rt.raw("rt_global", 0), rt.sval("xs"))
    assert rt.run("f_sort_1", arr) is None
    assert rt.py(arr) == sorted(xs)


def test_sort_mixed_numbers_strings_and_errors(rt: RtHarness) -> None:
    arr = rt.val([3, 1.5, -2, 2.0, 2, math.inf])
    rt.call("f_sort_1", arr)
    got = rt.py(arr)
    assert got == [-2, 1.5, 2.0, 2, 3, math.inf]
    assert type(got[2]) is float and type(got[3]) is int  # stable
    strs = rt.val(["b", "a", "é", "ab", ""])
    rt.call("f_sort_1", strs)
    assert rt.py(strs) == ["", "a", "ab", "b", "é"]
    assert kind_of(rt, "f_sort_1", [1, "a"]) == (
        "type_mismatch",
        "sort needs all numbers or all strings, found i64 and string",
    )
    assert rt.err("f_sort_1", [[1], [2]]).kind == "type_mismatch"
    assert rt.run("f_sort_1", []) is None


def test_sort_with_comparator_is_stable(rt: RtHarness) -> None:
    rnd = random.Random(5)
    recs = [{"k": rnd.randint(0, 9), "i": i} for i in range(300)]
    arr = rt.val(recs)
    cmp = rt.closure(lambda a, b: a["k"] - b["k"], 2)
    assert rt.run("f_sort_2", arr, cmp) is None
    assert rt.py(arr) == sorted(recs, key=lambda r: r["k"])


def test_sort_comparator_errors(rt: RtHarness) -> None:
    arr = rt.val([3, 1, 2])
    assert kind_of(rt, "f_sort_2", arr, rt.closure(lambda a, b: "x", 2)) == (
        "type_mismatch",
        "sort comparator must return i64, not string",
    )
    assert rt.py(arr) == [3, 1, 2]
    thrown = rt.err(
        "f_sort_2", arr, rt.closure(lambda a, b: rt.raw("rt_throw", rt.sval("boom")), 2, raw=True)
    )
    assert thrown.caught == "boom"
    assert rt.err("f_sort_2", arr, rt.closure(lambda a: 0, 1)).kind == "arity"


# ---- closures in map/filter/reduce/some/all ------------------------------------------------------


def test_higher_order_builtins(rt: RtHarness) -> None:
    xs = [1, 2, 3, 4]
    assert rt.run("f_map_2", xs, rt.closure(lambda x: x * 2, 1)) == [2, 4, 6, 8]
    assert rt.run("f_map_2", xs, rt.closure(lambda x, i: x * 10 + i, 2)) == [10, 21, 32, 43]
    assert rt.run("f_filter_2", xs, rt.closure(lambda x: x % 2 == 0, 1)) == [2, 4]
    assert rt.run("f_filter_2", xs, rt.closure(lambda x, i: i < 2, 2)) == [1, 2]
    assert rt.run("f_filter_2", xs, rt.closure(lambda x: 1, 1)) == []  # not a bool: false, as in Rhai
    assert rt.run("f_reduce_2", xs, rt.closure(lambda acc, x: (acc or 0) + x, 2)) == 10
    assert rt.run("f_reduce_3", xs, rt.closure(lambda acc, x: acc * x, 2), 1) == 24
    assert rt.run("f_reduce_3", [], rt.closure(lambda acc, x: 0, 2), "init") == "init"
    assert rt.run("f_some_2", xs, rt.closure(lambda x: x > 3, 1)) is True
    assert rt.run("f_some_2", xs, rt.closure(lambda x: x > 4, 1)) is False
    assert rt.run("f_all_2", xs, rt.closure(lambda x: x > 0, 1)) is True
    assert rt.run("f_all_2", xs, rt.closure(lambda x, i: i < 3, 2)) is False
    assert rt.run("f_some_2", [], rt.closure(lambda x: True, 1)) is False
    assert rt.run("f_all_2", [], rt.closure(lambda x: False, 1)) is True


def test_higher_order_errors(rt: RtHarness) -> None:
    calls: list[int] = []

    def boom(x: tuple[int, int]) -> tuple[int, int]:
        calls.append(1)
        thrown: tuple[int, int] = rt.raw("rt_throw", (INT, 7))
        return thrown

    assert rt.err("f_map_2", [1, 2, 3], rt.closure(boom, 1, raw=True)).caught == 7
    assert len(calls) == 1, "EXC must propagate at once"
    assert kind_of(rt, "f_map_2", [1], rt.closure(lambda a, b, c: 0, 3)) == (
        "arity",
        "closure expects 3 arguments, got 1",
    )
    assert rt.err("f_reduce_2", [1], rt.closure(lambda a: 0, 1)).kind == "arity"
    assert kind_of(rt, "f_map_2", [1], 5) == ("not_found", "function not found: map(array, i64)")
    assert rt.err("f_filter_2", "abc", rt.closure(lambda x: True, 1)).kind == "not_found"


def test_map_copies_closure_results(rt: RtHarness) -> None:
    shared = rt.val([1])
    out = rt.call("f_map_2", rt.val([0, 0]), rt.closure(lambda x: shared, 1, raw=True))
    rt.call("f_push_2", rt.call("rt_index_get", out, 0), 2)
    assert rt.py(shared) == [1]
    assert rt.py(out) == [[1, 2], [1]]


# ---- every other builtin ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "want"),
    [
        ("f_type_of_1", [None], "()"),
        ("f_type_of_1", [True], "bool"),
        ("f_type_of_1", [1], "i64"),
        ("f_type_of_1", [1.0], "f64"),
        ("f_type_of_1", ["s"], "string"),
        ("f_type_of_1", [[]], "array"),
        ("f_type_of_1", [{}], "map"),
        ("f_type_of_1", [b""], "blob"),
        ("f_to_string_1", ["x"], "x"),
        ("f_to_debug_1", ["x"], '"x"'),
        ("f_is_empty_1", [""], True),
        ("f_is_empty_1", ["a"], False),
        ("f_is_empty_1", [[]], True),
        ("f_is_empty_1", [{"a": 1}], False),
        ("f_is_empty_1", [b""], True),
        ("f_len_1", ["aé✓"], 3),
        ("f_len_1", [[1, 2]], 2),
        ("f_len_1", [{"a": 1}], 1),
        ("f_len_1", [b"abc"], 3),
        ("f_contains_2", ["hello", "ell"], True),
        ("f_contains_2", [[1, [2]], [2]], True),
        ("f_contains_2", [{"a": 1}, "b"], False),
        ("f_contains_2", [b"\x01", 1], True),
        ("f_index_of_2", ["aé✓b", "b"], 3),
        ("f_index_of_2", ["abc", "z"], -1),
        ("f_index_of_2", ["abc", ""], 0),
        ("f_index_of_2", [[5, 6, 7], 7.0], 2),
        ("f_index_of_2", [[5], 1], -1),
        ("f_get_2", [[1, 2, 3], -1], 3),
        ("f_get_2", [[1], 5], None),
        ("f_get_2", [{"a": 1}, "a"], 1),
        ("f_get_2", [{"a": 1}, "b"], None),
        ("f_get_2", ["aé", 1], "é"),
        ("f_get_2", [b"\x09", 0], 9),
        ("f_to_int_1", [7], 7),
        ("f_to_int_1", [-7.9], -7),
        ("f_to_int_1", [9.2e18], 9200000000000000000),
        ("f_to_int_1", [-9223372036854775808.0], I64_MIN),
        ("f_to_float_1", [3], 3.0),
        ("f_to_float_1", [2.5], 2.5),
        ("f_parse_int_1", ["  -42\n"], -42),
        ("f_parse_int_1", ["+7"], 7),
        ("f_parse_int_1", ["-9223372036854775808"], I64_MIN),
        ("f_parse_int_1", ["9223372036854775807"], I64_MAX),
        ("f_parse_float_1", [" 2.5 "], 2.5),
        ("f_parse_float_1", ["1e3"], 1000.0),
        ("f_parse_float_1", ["-inf"], -math.inf),
        ("f_abs_1", [-3], 3),
        ("f_abs_1", [-2.5], 2.5),
        ("f_abs_1", [I64_MAX], I64_MAX),
        ("f_sign_1", [-3], -1),
        ("f_sign_1", [0], 0),
        ("f_sign_1", [2.5], 1),
        ("f_sign_1", [-0.0], 0),
        ("f_min_2", [3, 2], 2),
        ("f_min_2", [1, 2.5], 1.0),
        ("f_max_2", [3, 2], 3),
        ("f_max_2", [1, 2.5], 2.5),
        ("f_floor_1", [-1.5], -2.0),
        ("f_floor_1", [3], 3.0),
        ("f_ceiling_1", [1.2], 2.0),
        ("f_round_1", [2.5], 3.0),
        ("f_round_1", [-2.5], -3.0),
        ("f_round_1", [2.4999], 2.0),
        ("f_round_1", [0.49999999999999994], 0.0),
        ("f_round_1", [4503599627370497.0], 4503599627370497.0),
        ("f_sqrt_1", [16], 4.0),
        ("f_sqrt_1", [2.25], 1.5),
        ("f_sub_string_2", ["héllo", 1], "éllo"),
        ("f_sub_string_2", ["hello", -2], "lo"),
        ("f_sub_string_2", ["hello", 9], ""),
        ("f_sub_string_2", ["hello", -9], "hello"),
        ("f_sub_string_3", ["héllo", 1, 2], "él"),
        ("f_sub_string_3", ["hello", 3, 99], "lo"),
        ("f_sub_string_3", ["hello", 1, -1], ""),
        ("f_sub_string_3", ["hello", -3, 2], "ll"),
        ("f_starts_with_2", ["hello", "he"], True),
        ("f_starts_with_2", ["he", "hello"], False),
        ("f_ends_with_2", ["hello", "llo"], True),
        ("f_ends_with_2", ["hello", "x"], False),
        ("f_to_upper_1", ["abc é"], "ABC é"),
        ("f_to_lower_1", ["ABC É"], "abc É"),
        ("f_trim_1", [" \t x y \n"], "x y"),
        ("f_trim_1", ["   "], ""),
        ("f_replace_3", ["a-b-c", "-", "+"], "a+b+c"),
        ("f_replace_3", ["aaa", "aa", "b"], "ba"),
        ("f_replace_3", ["ab", "", "-"], "-a-b-"),
        ("f_replace_3", ["abc", "z", "y"], "abc"),
        ("f_split_1", ["  a b\t\nc  "], ["a", "b", "c"]),
        ("f_split_1", [""], []),
        ("f_split_2", ["a,b,,c", ","], ["a", "b", "", "c"]),
        ("f_split_2", ["abc", ""], ["a", "b", "c"]),
        ("f_split_2", ["a--b", "--"], ["a", "b"]),
        ("f_split_2", ["héllo", 2], ["hé", "llo"]),
        ("f_chars_1", ["aé"], ["a", "é"]),
        ("f_keys_1", [{"b": 1, "a": 2}], ["a", "b"]),
        ("f_values_1", [{"b": 1, "a": 2}], [2, 1]),
    ],
)
def test_builtin_values(rt: RtHarness, same: Any, name: str, args: list[Any], want: Any) -> None:
    got = rt.run(name, *args)
    assert same(got, want), (got, want)


@pytest.mark.parametrize(
    ("name", "args", "kind"),
    [
        ("f_to_int_1", [math.nan], "invalid_argument"),
        ("f_to_int_1", [math.inf], "integer_overflow"),
        ("f_to_int_1", [-math.inf], "integer_overflow"),
        ("f_to_int_1", [9.3e18], "integer_overflow"),
        ("f_to_int_1", ["1"], "not_found"),
        ("f_parse_int_1", ["12a"], "invalid_argument"),
        ("f_parse_int_1", [""], "invalid_argument"),
        ("f_parse_int_1", ["-"], "invalid_argument"),
        ("f_parse_int_1", ["9223372036854775808"], "invalid_argument"),
        ("f_parse_int_1", ["1.0"], "invalid_argument"),
        ("f_parse_float_1", ["abc"], "invalid_argument"),
        ("f_parse_float_1", ["  "], "invalid_argument"),
        ("f_abs_1", [I64_MIN], "integer_overflow"),
        ("f_sign_1", [math.nan], "invalid_argument"),
        ("f_len_1", [5], "not_found"),
        ("f_is_empty_1", [None], "not_found"),
        ("f_contains_2", ["a", 1], "not_found"),
        ("f_index_of_2", [{}, "a"], "not_found"),
        ("f_get_2", [[1], "a"], "not_found"),
        ("f_clear_1", ["s"], "not_found"),
        ("f_min_2", ["a", 1], "not_found"),
        ("f_floor_1", ["a"], "not_found"),
        ("f_sub_string_2", ["a", "b"], "not_found"),
        ("f_trim_1", [1], "not_found"),
        ("f_replace_3", ["a", 1, "b"], "not_found"),
        ("f_split_2", ["a", None], "not_found"),
        ("f_push_2", [{}, 1], "not_found"),
        ("f_pop_1", ["a"], "not_found"),
        ("f_keys_1", [[1]], "not_found"),
        ("f_values_1", [1], "not_found"),
        ("f_sort_1", ["ba"], "not_found"),
        ("f_reverse_1", [{}], "not_found"),
    ],
)
def test_builtin_errors(rt: RtHarness, name: str, args: list[Any], kind: str) -> None:
    assert rt.err(name, *args).kind == kind


def test_not_found_message(rt: RtHarness) -> None:
    assert kind_of(rt, "f_contains_2", "abc", 1) == ("not_found", "function not found: contains(string, i64)")


def test_mutating_array_builtins(rt: RtHarness) -> None:
    a = rt.val([1, 2, 3])
    assert rt.run("f_push_2", a, 4) is None
    assert rt.run("f_pop_1", a) == 4
    assert rt.run("f_shift_1", a) == 1
    assert rt.py(a) == [2, 3]
    rt.call("f_insert_3", a, 0, "first")
    rt.call("f_insert_3", a, -1, "before-last")
    rt.call("f_insert_3", a, 99, "end")
    rt.call("f_insert_3", a, -99, "start")
    assert rt.py(a) == ["start", "first", 2, "before-last", 3, "end"]
    assert rt.run("f_remove_2", a, 1) == "first"
    assert rt.run("f_remove_2", a, -1) == "end"
    assert rt.run("f_remove_2", a, 10) is None
    rt.call("f_reverse_1", a)
    assert rt.py(a) == [3, "before-last", 2, "start"]
    rt.call("f_clear_1", a)
    assert rt.py(a) == []
    assert rt.run("f_pop_1", a) is None and rt.run("f_shift_1", a) is None
    m = rt.val({"a": 1, "b": 2})
    assert rt.run("f_remove_2", m, "a") == 1
    rt.call("f_clear_1", m)
    assert rt.py(m) == {}
    rt.raw("rt_map_set", m, rt.sval("z"), (INT, 1))
    assert rt.py(m) == {"z": 1}
    b = rt.val(b"\x01\x02")
    rt.call("f_push_2", b, 3)
    rt.call("f_insert_3", b, 0, 0)
    assert rt.run("f_pop_1", b) == 3 and rt.run("f_shift_1", b) == 0
    rt.call("f_reverse_1", b)
    assert rt.py(b) == b"\x02\x01"
    assert rt.run("f_remove_2", b, 0) == 2
    rt.call("f_clear_1", b)
    assert rt.py(b) == b""


def test_print_and_debug_log(rt: RtHarness) -> None:
    assert rt.run("f_print_1", "hello") is None
    assert rt.run("f_print_1", [1, "a"]) is None
    assert rt.run("f_debug_1", "hello") is None
    assert rt.run("f_print_1", None) is None
    assert rt.log() == ["hello", '[1, "a"]', '"hello"', ""]
    assert rt.finish((INT, 1))["log"] == ["hello", '[1, "a"]', '"hello"', ""]


def test_log_cap(rt: RtHarness) -> None:
    line = "x" * 1000
    for _ in range(100):
        rt.call("f_print_1", line)
    log = rt.log()
    assert log[-1] == "[log truncated]"
    assert log.count("[log truncated]") == 1
    assert all(x == line for x in log[:-1])
    assert 60 <= len(log) - 1 <= 65
    assert sum(len(x) for x in log) <= 65536
    rt.call("f_print_1", "after")
    assert rt.log() == log


def test_empty_log_before_any_print(make_rt: Any) -> None:
    h = make_rt()
    assert h.log() == []


# ---- the entry protocol ------------------------------------------------------------------------------


def test_cbor_round_trip(rt: RtHarness) -> None:
    params = {
        "int": [0, 1, -1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, I64_MAX, I64_MIN, -25],
        "f": [0.0, -0.0, 1.5, 1e300, math.inf],
        "s": ["", "é✓", "x" * 300],
        "b": b"\x00\xff" * 200,
        "n": None,
        "t": True,
        "nested": {"a": [{"b": [[]]}]},
        "m": {},
    }
    assert rt.begin({"params": params, "caller": "alice", "target": [1, 2]}) == 0
    assert rt.py(rt.raw("rt_global", 0)) == params
    assert rt.py(rt.raw("rt_global", 1)) == "alice"
    assert rt.py(rt.raw("rt_global", 2)) == [1, 2]
    assert rt.raw("rt_global", 9) == (UNIT, 0)
    res = rt.finish(rt.raw("rt_global", 0))
    assert res == {"ok": True, "value": params, "log": []}


def test_cbor_output_is_deterministic_and_canonical(rt: RtHarness) -> None:
    # keys of one length per map: bytewise order == cbor2's canonical (length-first) order
    value = {
        "bb": [1, -1, 1000, -1000, 2**40, None, True, False, "s", b"by"],
        "aa": {"x": {"y": []}, "a": 1},
        "cc": "x" * 30,
    }
    assert rt.begin({"params": {"v": value}}) == 0
    v = rt.call("rt_prop_get", rt.raw("rt_global", 0), rt.sval("v"))
    out = rt.finish_bytes(v)
    expected = cbor2.dumps({"log": [], "ok": True, "value": value}, canonical=True)
    assert out == expected
    assert rt.finish_bytes(v) == out


def test_cbor_floats_are_always_f64(rt: RtHarness) -> None:
    out = rt.finish_bytes(rt.val(1.0))
    assert out.endswith(b"\xfb" + struct.pack(">d", 1.0))
    assert cbor2.loads(out)["value"] == 1.0


def test_cbor_output_keys_sorted_bytewise(rt: RtHarness) -> None:
    keys = ["b", "aa", "a", "é", "ab"]
    out = cbor2.loads(rt.finish_bytes(rt.val({k: 0 for k in keys})))
    assert list(out["value"]) == sorted(keys, key=str.encode)


def test_cbor_input_half_and_single_floats(rt: RtHarness) -> None:
    def doc(item: bytes) -> bytes:
        return b"\xa1\x66params\xa1\x61x" + item

    cases = [
        (b"\xf9\x3c\x00", 1.0),
        (b"\xf9\x7c\x00", math.inf),
        (b"\xf9\x00\x01", 2**-24),
        (b"\xf9\xc0\x00", -2.0),
        (b"\xf9\x7b\xff", 65504.0),
        (b"\xfa\x3f\xc0\x00\x00", 1.5),
        (b"\xfb" + struct.pack(">d", 0.1), 0.1),
    ]
    for item, want in cases:
        assert rt.begin(raw=doc(item)) == 0, item
        assert rt.run("rt_prop_get", rt.raw("rt_global", 0), "x") == want
    assert rt.begin(raw=doc(b"\xf9\x7e\x00")) == 0
    assert math.isnan(rt.run("rt_prop_get", rt.raw("rt_global", 0), "x"))


def test_cbor_input_defaults(make_rt: Any) -> None:
    h = make_rt()
    assert h.begin({}) == 0
    assert h.py(h.raw("rt_global", 0)) == {}
    assert h.raw("rt_global", 1) == (UNIT, 0)
    assert h.begin({"params": {"a": 1}, "extra": 5}) == 0


def _nest(n: int) -> Any:
    v: Any = 0
    for _ in range(n):
        v = [v]
    return v


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("tag", cbor2.dumps({"params": {"d": cbor2.CBORTag(1, 0)}})),
        ("indefinite array", b"\xa1\x66params\xa1\x61x\x9f\x01\xff"),
        ("indefinite text", b"\xa1\x66params\xa1\x61x\x7f\x61a\xff"),
        ("indefinite map", b"\xbf\x66params\xa0\xff"),
        ("int key", b"\xa1\x66params\xa1\x01\x02"),
        ("top int key", b"\xa1\x01\x02"),
        ("too deep", cbor2.dumps({"params": {"x": _nest(128)}})),
        ("int too big", cbor2.dumps({"params": {"x": 2**63}})),
        ("int too small", cbor2.dumps({"params": {"x": -(2**63) - 1}})),
        ("bad utf8", b"\xa1\x66params\xa1\x61x\x62\xff\xfe"),
        ("surrogate", b"\xa1\x66params\xa1\x61x\x63\xed\xa0\x80"),
        ("overlong", b"\xa1\x66params\xa1\x61x\x62\xc0\xaf"),
        ("undefined", b"\xa1\x66params\xa1\x61x\xf7"),
        ("simple value", b"\xa1\x66params\xa1\x61x\xf0"),
        ("truncated", b"\xa1\x66params\xa1\x61x\x19\x01"),
        ("huge length", b"\xa1\x66params\xa1\x61x\x9b\xff\xff\xff\xff\xff\xff\xff\xff"),
        ("trailing", cbor2.dumps({"params": {}}) + b"\x00"),
        ("not a map", cbor2.dumps([1])),
        ("params not a map", cbor2.dumps({"params": [1]})),
        ("empty", b""),
    ],
)
def test_cbor_input_rejections(make_rt: Any, label: str, data: bytes) -> None:
    h = make_rt()
    assert h.begin(raw=data) != 0, label
    out = h.output()
    assert out["ok"] is False
    assert out["error"]["kind"] == "invalid_argument"
    assert out["error"]["message"].startswith("invalid input: ")
    assert out["log"] == []


def test_cbor_input_depth_limit_is_128(make_rt: Any) -> None:
    h = make_rt()
    assert h.begin({"params": {"x": _nest(127)}}) == 0  # params map + 127 arrays = 128 levels
    v = h.raw("rt_global", 0)
    assert h.finish(v)["ok"] is True
    assert h.begin({"params": {"x": _nest(128)}}) != 0


def test_finish_too_deep(rt: RtHarness) -> None:
    deep = rt.val(_nest(128))
    outer = rt.raw("rt_array_new", 1)
    rt.raw("rt_array_push", outer, deep)
    res = rt.finish(outer)
    assert res["ok"] is False and res["error"]["kind"] == "too_deep"


def test_runtime_error_output_and_lines(rt: RtHarness) -> None:
    assert rt.raw("rt_div", (INT, 1), (INT, 0)) == (EXC, 0)
    rt.raw("rt_set_line", (2 << 24) | 17)
    rt.raw("rt_set_line", 99)  # only the first call after the raise counts
    res = rt.finish((EXC, 0))
    assert res == {
        "ok": False,
        "log": [],
        "error": {"kind": "division_by_zero", "message": "division by zero", "line": 17, "file": 2},
    }


def test_throw_output(rt: RtHarness) -> None:
    rt.call("f_print_1", "before")
    v = rt.val({"code": 7, "why": "bad"})
    assert rt.raw("rt_throw", v) == (EXC, 0)
    rt.raw("rt_set_line", 5)
    res = rt.finish((EXC, 0))
    assert res["ok"] is False
    assert res["error"] == {
        "kind": "throw",
        "message": '#{"code": 7, "why": "bad"}',
        "line": 5,
        "file": 0,
        "value": {"code": 7, "why": "bad"},
    }
    assert res["log"] == ["before"]


def test_exc_take(rt: RtHarness) -> None:
    assert rt.raw("rt_exc_take") == (UNIT, 0)
    rt.raw("rt_throw", rt.sval("oops"))
    rt.raw("rt_set_line", 3)
    assert rt.py(rt.raw("rt_exc_take")) == "oops"
    assert rt.raw("rt_exc_take") == (UNIT, 0)
    rt.raw("rt_index_get", rt.val([1]), (INT, 4))
    rt.raw("rt_set_line", (1 << 24) | 12)
    assert rt.py(rt.raw("rt_exc_take")) == {
        "kind": "index_out_of_range",
        "message": "index 4 out of range for array of length 1",
        "line": 12,
    }
    # the line is cleared with the error: the next error gets its own line
    rt.raw("rt_neg", (STR, 0))
    rt.raw("rt_set_line", 40)
    assert rt.py(rt.raw("rt_exc_take"))["line"] == 40
    rt.raw("rt_set_line", 41)  # no error pending: ignored
    rt.raw("rt_not", (INT, 1))
    assert rt.py(rt.raw("rt_exc_take"))["line"] == 0


def test_bare_rethrow_keeps_the_runtime_error_kind(rt: RtHarness) -> None:
    rt.raw("rt_div", (INT, 1), (INT, 0))
    rt.raw("rt_set_line", 2)
    caught = rt.raw("rt_exc_take")
    assert rt.raw("rt_throw", caught) == (EXC, 0)  # `throw;` passes the very map rt_exc_take made
    rt.raw("rt_set_line", 4)
    res = rt.finish((EXC, 0))
    assert res["error"] == {"kind": "division_by_zero", "message": "division by zero", "line": 4, "file": 0}
    # a copy of it (`catch (e) { throw e }`) is an ordinary thrown value
    rt.raw("rt_div", (INT, 1), (INT, 0))
    copied = rt.call("rt_copy", rt.raw("rt_exc_take"))
    rt.raw("rt_throw", copied)
    assert rt.finish((EXC, 0))["error"]["kind"] == "throw"


# ---- memory --------------------------------------------------------------------------------------------


def test_rt_alloc_is_aligned_and_zeroed(rt: RtHarness) -> None:
    ptrs = [rt.alloc(n) for n in (1, 3, 8, 17, 100_000, 5)]
    assert all(p % 8 == 0 for p in ptrs)
    assert all(b >= a + 8 for a, b in zip(ptrs, ptrs[1:]))
    assert rt.read(ptrs[4], 100_000) == bytes(100_000)


def test_out_of_memory_faults(make_rt: Any) -> None:
    h = make_rt(memory=2 << 20)
    assert h.begin({"params": {}}) == 0
    assert h.raw("rt_fault") == 0
    h.call("f_print_1", "still here")
    with pytest.raises(wasmtime.Trap):
        h.raw("rt_alloc", 4 << 20)
    assert h.raw("rt_fault") == 1
    assert h.log() == ["still here"]


def test_out_of_memory_in_string_growth(make_rt: Any) -> None:
    h = make_rt(memory=2 << 20)
    assert h.begin({"params": {}}) == 0
    s = h.val("x" * 1000)
    with pytest.raises(wasmtime.Trap):
        for _ in range(40):
            s = h.call("rt_add", s, s)
    assert h.raw("rt_fault") == 1


@pytest.mark.parametrize(
    "call",
    [
        ("rt_array_new", 0x7FFFFFFF),
        ("rt_alloc", 0x7FFFFFFF),
        ("rt_alloc", -8),
    ],
)
def test_hostile_sizes_fault_instead_of_wrapping(make_rt: Any, call: tuple[str, int]) -> None:
    h = make_rt(memory=16 << 20)
    assert h.begin({"params": {}}) == 0
    with pytest.raises(wasmtime.Trap):
        h.raw(*call)
    assert h.raw("rt_fault") == 1


def test_small_runs_stay_small(make_rt: Any) -> None:
    h = make_rt()
    assert h.begin({"params": {"a": 1}}) == 0
    h.finish(h.val([1, "two", {"three": 3.0}]))
    assert h.memory.size(h.store) <= 16, "a trivial run should not grow memory much past the 5 initial pages"


# -- host calls ------------------------------------------------------------------


def test_host_call_sends_args_as_one_cbor_array_and_decodes_the_reply(make_rt: Any) -> None:
    h = make_rt()
    assert h.begin({"params": {}}) == 0
    args = ("notes/a.txt", [1, {"k": b"\x00\xff"}])
    got = h.py(h.raw("rt_host_2", 7, h.val(args[0]), h.val(args[1])))
    assert got == [7, list(args)]
    assert h.py(h.raw("rt_host_0", 3)) == [3, []]
    h.host_reply = lambda op, args: {"ok": {"size": 5, "is_dir": False}}
    assert h.py(h.raw("rt_host_1", 8, h.val("x"))) == {"size": 5, "is_dir": False}


def test_host_call_refusal_is_a_catchable_error_of_the_hosts_kind(make_rt: Any) -> None:
    h = make_rt()
    assert h.begin({"params": {}}) == 0
    h.host_reply = lambda op, args: {"err": ["invalid_path", "path escapes the peer root: ../x"]}
    assert h.raw("rt_host_1", 1, h.val("../x"))[0] == EXC
    caught = h.py(h.call("rt_exc_take"))
    assert caught == {"kind": "invalid_path", "message": "path escapes the peer root: ../x", "line": 0}


@pytest.mark.parametrize("reply", [{"neither": 1}, {"err": ["only-kind"]}, {"err": [1, 2]}, [1, 2]])
def test_malformed_host_reply_is_an_error_not_a_crash(make_rt: Any, reply: Any) -> None:
    h = make_rt()
    assert h.begin({"params": {}}) == 0
    h.host_reply = lambda op, args: reply
    assert h.raw("rt_host_0", 1)[0] == EXC
    assert h.py(h.call("rt_exc_take"))["kind"] == "invalid_argument"


def test_host_stop_traps_with_fault_2(make_rt: Any) -> None:
    h = make_rt()
    assert h.begin({"params": {}}) == 0
    h.host_reply = lambda op, args: None
    with pytest.raises(wasmtime.Trap):
        h.raw("rt_host_0", 1)
    assert h.raw("rt_fault") == 2
