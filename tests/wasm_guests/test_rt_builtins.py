"""The guest runtime rt.wasm, run alone under wasmtime (see conftest.py): containers,
sorting, closures in map/filter/reduce, every other builtin, the log; performance-shaped
workloads (10k map keys, 100k-int sort).
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from peerbox.wasm_guests.lang._emitter import key_hash

from .conftest import (  # shared by the test_rt_* files
    EXC, I64_MAX, I64_MIN, INT, MAP, RtHarness, kind_of,
)


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


def test_copy_on_write_and_nesting_bounded(rt: RtHarness) -> None:
    orig = rt.val({"a": [1, {"b": [2]}], "blob": b"\x01"})
    c = rt.call("rt_copy", orig)  # `let c = orig`: shared, not copied
    assert c == orig
    c = rt.call("rt_own", c)  # changing c: a private copy first, along the path (as the compiler does)
    assert c != orig
    inner = rt.call("rt_prop_own", c, rt.sval("a"))
    rt.call("f_push_2", inner, 3)
    rt.call("rt_index_set", rt.call("rt_prop_own", rt.call("rt_index_own", inner, 1), rt.sval("b")), 0, 9)
    assert rt.py(orig) == {"a": [1, {"b": [2]}], "blob": b"\x01"}
    assert rt.py(c) == {"a": [1, {"b": [9]}, 3], "blob": b"\x01"}
    assert rt.call("rt_own", c) == c  # private already: no copy
    assert rt.call("rt_copy", rt.val(5)) == (INT, 5)
    deep: Any = []
    for _ in range(127):
        deep = [deep]
    ok = rt.val(deep)  # 128 nested arrays
    too = rt.raw("rt_array_new", 1)
    assert rt.raw("rt_array_push", too, ok) == (EXC, 0)  # a 129th level is refused as it is built
    assert rt.raw("rt_exc_take")[0] == MAP


def test_array_and_map_plus(rt: RtHarness) -> None:
    a, b = rt.val([1, [2]]), rt.val([[3]])
    c = rt.call("rt_add", a, b)
    assert rt.py(c) == [1, [2], [3]]
    rt.call("f_push_2", rt.call("rt_index_own", c, 2), 4)
    rt.call("f_push_2", rt.call("rt_index_own", c, 1), 5)
    assert rt.py(a) == [1, [2]] and rt.py(b) == [[3]]
    m = rt.call("rt_add", {"a": 1, "b": [1]}, {"b": 2, "c": 3})
    assert rt.py(m) == {"a": 1, "b": 2, "c": 3}
    assert rt.run("rt_add", b"\x01", b"\x02") == b"\x01\x02"


def test_iter(rt: RtHarness) -> None:
    arr = rt.val([1, 2])
    it = rt.call("rt_iter", arr)
    rt.call("f_push_2", rt.call("rt_own", arr), 3)  # changed in the loop: a private copy
    assert rt.py(it) == [1, 2]
    assert rt.run("rt_iter", "aé✓") == ["a", "é", "✓"]
    assert rt.run("rt_iter", b"\x01\x02") == [1, 2]
    assert kind_of(rt, "rt_iter", 5) == ("type_mismatch", "cannot iterate over i64")
    assert kind_of(rt, "rt_iter", {"a": 1}) == ("type_mismatch", "cannot iterate over map")


@pytest.mark.slow
def test_map_10k_keys_sorted_and_fast(rt: RtHarness) -> None:
    m = rt.raw("rt_map_new", 0)
    keys = [f"k{i}" for i in range(10_000)]
    random.Random(1).shuffle(keys)
    for i, k in enumerate(keys):
        rt.raw("rt_map_set", m, rt.sval(k), key_hash(k), (INT, i))
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
    assert list(decoded) == sorted(rest, key=lambda k: (len(k.encode()), k.encode()))  # encoded-key order


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
    rt.call("f_push_2", rt.call("rt_index_own", out, 0), 2)
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
    rt.raw("rt_map_set", m, rt.sval("z"), key_hash("z"), (INT, 1))
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
