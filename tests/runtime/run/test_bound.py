"""Python params checked by the C pickler, cbor2 and the guest (``peerbox.run._bound``): the same refusals as before."""

from __future__ import annotations

import array
import collections
import enum
import pickle
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import peerbox
from peerbox import ValueConversionError
from peerbox.run._bound import SAFE_RECURSION_LIMIT, plain_tree
from peerbox.run._values import check_value

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Int(enum.IntEnum):
    ONE = 1


class _Bytes(bytes):
    pass


def _nest(n: int) -> list[Any]:
    top: list[Any] = []
    inner = top
    for _ in range(n):
        inner.append([])
        inner = inner[0]
    return top


def _cycle() -> list[Any]:
    a: list[Any] = []
    a.append(a)
    return a


@pytest.fixture(scope="module")
def echo() -> peerbox.Program:
    return peerbox.compile("params", "echo_params.rhai")


@pytest.mark.parametrize("value", [memoryview(b"x"), array.array("b", [1]), _Bytes(b"x"), _Int.ONE,
                                   collections.OrderedDict(), (lambda: 1), object(), _cycle(), _nest(50_000)])
def test_what_cbor2_must_not_see_is_not_plain(value: object) -> None:
    assert not plain_tree({"a": [value]})


def test_a_plain_tree_is_plain() -> None:
    assert plain_tree({"a": [1, 2.5, "x", b"y", bytearray(b"z"), None, True, (1,), {"b": {}}]})


def test_a_high_recursion_limit_leaves_it_to_the_walk_in_python() -> None:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(SAFE_RECURSION_LIMIT + 1)
    try:
        assert not plain_tree({"a": 1})
    finally:
        sys.setrecursionlimit(old)


_bad = st.sampled_from([2**63, -(2**63) - 1, 2**70, "\ud800", {1: 2}, {(1,): 2}, {True: 1}, {None: 1},
                        {1, 2}, frozenset(), 1j, ..., memoryview(b"x"), _Bytes(b"q"), _Int.ONE,
                        pickle.PickleBuffer(b"ab"), _nest(130)])
_good = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
                  st.text(max_size=5), st.binary(max_size=5))
_values = st.recursive(_good | _bad, lambda kids: st.lists(kids, max_size=3)
                       | st.dictionaries(st.text(max_size=4), kids, max_size=3), max_leaves=8)


@FUZZ
@given(st.dictionaries(st.text(max_size=4), _values, max_size=3))
def test_a_run_refuses_what_the_check_refuses_with_the_same_message(echo: peerbox.Program,
                                                                   params: dict[str, Any]) -> None:
    try:
        check_value(params, "params")
    except ValueConversionError as expected:
        with pytest.raises(ValueConversionError) as info:
            echo.run(params)
        assert str(info.value) == str(expected)
        return
    assert echo.run(params).value == {k: _as_script(v) for k, v in params.items()}


def _as_script(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_as_script(x) for x in v]
    if isinstance(v, dict):
        return {k: _as_script(x) for k, x in v.items()}
    return bytes(v) if isinstance(v, bytearray) else v


def test_caller_and_target_are_refused_by_name(echo: peerbox.Program) -> None:
    with pytest.raises(ValueConversionError, match=r"^caller\.x: integer"):
        echo.run({}, caller={"x": 2**64})
    with pytest.raises(ValueConversionError, match=r"^target: map keys must be strings"):
        echo.run({}, target={1: 1})


def test_a_50k_deep_list_is_a_typed_error(echo: peerbox.Program) -> None:
    with pytest.raises(ValueConversionError, match="nested deeper than 128 levels"):
        echo.run({"a": _nest(50_000)})
