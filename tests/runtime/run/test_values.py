"""Values crossing the boundary: Python -> CBOR -> script -> CBOR -> Python."""

from __future__ import annotations

import enum
import math
from typing import Any

import pytest

import peerbox
from peerbox.run._values import MAX_DEPTH, check_value, display, encode_input, json_safe


@pytest.fixture(scope="module")
def echo() -> peerbox.Program:
    return peerbox.compile("params.x", "echo.rhai")


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


ROUND_TRIP = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2**63 - 1,
    -(2**63),
    1.5,
    -0.0,
    1e300,
    math.inf,
    -math.inf,
    math.nan,
    "",
    "hello",
    "héllo ✓ \U0001f600",
    "a\x00b",
    b"",
    b"\x00\x01\xff",
    [],
    [1, "two", 3.0, None, [True]],
    {},
    {"a": 1, "b": {"c": [1, 2]}, "two words": "x"},
    {"z": 1, "a": 2},
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=repr)
def test_round_trip(echo: peerbox.Program, value: Any) -> None:
    assert same(echo.run({"x": value}).value, value)


def test_tuple_becomes_list_and_bytearray_becomes_bytes(echo: peerbox.Program) -> None:
    assert echo.run({"x": (1, (2, 3))}).value == [1, [2, 3]]
    assert echo.run({"x": bytearray(b"ab")}).value == b"ab"


def test_whole_params_map(echo: peerbox.Program) -> None:
    prog = peerbox.compile("params", "all.rhai")
    params = {"a": 1, "b": [1.5, "x"], "c": None}
    assert same(prog.run(params).value, params)
    assert prog.run().value == {}
    assert prog.run(None).value == {}


def nest(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = [v]
    return v


def test_depth_limit_is_the_guest_limit(echo: peerbox.Program) -> None:
    # params itself is level 1: 127 more nested lists are the deepest value allowed
    assert echo.run({"x": nest(MAX_DEPTH - 1)}).value == nest(MAX_DEPTH - 1)
    with pytest.raises(peerbox.ValueConversionError, match="nested deeper than 128"):
        echo.run({"x": nest(MAX_DEPTH)})


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    ("params", "path", "reason"),
    [
        ({"a": [1, 2, object()]}, "params.a[2]", "object cannot be passed"),
        ({"a": 2**63}, "params.a", "outside the 64-bit range"),
        ({"a": -(2**63) - 1}, "params.a", "outside the 64-bit range"),
        ({"a": {1: 2}}, "params.a", "map keys must be strings"),
        ({"a": {"b": {1.5, 2.5}}}, "params.a.b", "set"),
        ({"a": Color.RED}, "params.a", "Color"),
        ({"two words": [complex(1, 2)]}, "params['two words'][0]", "complex"),
        ({"s": "\ud800"}, "params.s", "not valid Unicode"),
    ],
)
def test_conversion_errors_name_the_path(params: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(peerbox.ValueConversionError) as info:
        encode_input(params)
    assert info.value.path == path
    assert reason in str(info.value)
    assert str(info.value).startswith(path + ": ")
    assert info.value.exit_code == 2


def test_params_must_be_a_dict() -> None:
    with pytest.raises(peerbox.ValueConversionError, match="params must be a dict"):
        encode_input([1, 2])


def test_self_referencing_value_is_refused_not_a_recursion_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(peerbox.ValueConversionError, match="nested deeper"):
        encode_input({"x": loop})


def test_caller_and_target_are_checked_too() -> None:
    with pytest.raises(peerbox.ValueConversionError) as info:
        encode_input({}, caller={"id": object()})
    assert info.value.path == "caller.id"


def test_check_value_accepts_every_supported_type() -> None:
    for value in ROUND_TRIP:
        check_value(value)


def test_display_forms() -> None:
    assert display(None) == "()"
    assert display(True) == "true"
    assert display(1.0) == "1.0"
    assert display(math.nan) == "NaN"
    assert display("raw") == "raw"
    assert display(["a", 1, None]) == '["a", 1, ()]'
    assert display({"b": 1, "a": "x\n"}) == '#{"a": "x\\n", "b": 1}'


def test_json_safe() -> None:
    assert json_safe({"f": [math.nan, math.inf, 1.5], "b": b"\x00\x01"}) == {
        "f": [None, None, 1.5],
        "b": "AAE=",
    }


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        b"\xa1\x62ok",  # truncated
        b"\x83\x01\x02\x03",  # not a map
        b"\xa2\x62ok\xf5\x62ok\xf4",  # duplicate key
        b"\xa2\x62ok\xf5\x63log\x81\xd8\x63\x01",  # a tag in the log
        b"\xa3\x62ok\xf5\x63log\x80\x65value\xc1\x00",  # a datetime tag as the value
    ],
)
def test_malformed_guest_output_is_a_peerbox_bug(data: bytes) -> None:
    from peerbox.run._values import decode_output

    with pytest.raises(peerbox.Error) as info:
        decode_output(data)
    assert type(info.value) is peerbox.Error
    assert info.value.exit_code == 1
    assert "a bug in peerbox" in str(info.value)


@pytest.mark.parametrize("data", [b"\xff", b"\x81\xd8\x63\x01", b""])
def test_malformed_guest_log_keeps_what_cbor2_raised_as_its_cause(data: bytes) -> None:
    """The boundary table (run._values) replaces cbor2's error and keeps it as ``__cause__``."""
    from peerbox.run._values import decode_log, decode_output

    for decode, what in ((decode_log, "malformed log"), (decode_output, "malformed run output")):
        with pytest.raises(peerbox.Error) as info:
            decode(data)
        assert type(info.value) is peerbox.Error and str(info.value).startswith(what)
        assert info.value.__cause__ is not None and not isinstance(info.value.__cause__, peerbox.Error)
