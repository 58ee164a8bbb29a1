"""A run's result as CBOR bytes (``Result.value_cbor``): the strict encoder's bytes, decoded lazily and safely."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import peerbox
from peerbox.run import CborParams
from peerbox.run._output import Result, decode_value, split_ok_output
from peerbox.wire import cbor_dumps

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# What a script value can be: text keys, i64 ints, any float (NaN too), text, blobs.
KEYS = st.text(max_size=12)
SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=True)
           | st.text(max_size=20) | st.binary(max_size=20))
VALUES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=6) | st.dictionaries(KEYS, kids, max_size=6),
                      max_leaves=40)


@pytest.fixture(scope="module")
def echo() -> peerbox.Program:
    return peerbox.compile("params.v", "echo_value.rhai")


def _same(a: Any, b: Any) -> bool:
    """Equal as script values (NaN equals NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@FUZZ
@given(VALUES)
def test_result_bytes_are_what_the_strict_encoder_writes(echo: peerbox.Program, value: Any) -> None:
    res = echo.run({"v": value})
    assert res.value_cbor == cbor_dumps(value)
    assert _same(res.value, value)


@pytest.mark.parametrize("x", [0.0, -0.0, 1.0, 1.5, 65504.0, 65520.0, 5.960464477539063e-08, 2.0**-25, 1e-40,
                               0.1, 1e300, 3.4028234663852886e38, 1.401298464324817e-45, math.inf, -math.inf,
                               math.nan, 100000.0, 2.0**-14, 2.0**-24 * 3])
def test_floats_take_their_shortest_exact_form(echo: peerbox.Program, x: float) -> None:
    assert echo.run({"v": x}).value_cbor == cbor_dumps(x)


def test_keys_are_in_the_order_of_their_encodings_and_iteration_is_unchanged() -> None:
    prog = peerbox.compile('let m = #{bb: 1, a: 2, ccc: 3, b: 4}; let ks = []; for k in m.keys() { ks.push(k) } '
                           '#{m: m, ks: ks}', "order.rhai")
    res = prog.run()
    assert res.value["ks"] == ["a", "b", "bb", "ccc"]          # a script's order: bytewise
    assert list(res.value["m"]) == ["a", "b", "bb", "ccc"]
    assert res.value_cbor == cbor_dumps({"m": {"a": 2, "b": 4, "bb": 1, "ccc": 3}, "ks": ["a", "b", "bb", "ccc"]})
    assert res.value_cbor.index(b"\x61b") < res.value_cbor.index(b"\x62bb")


def test_a_big_map_of_mixed_key_lengths_is_canonical(echo: peerbox.Program) -> None:
    value = {("k" * (i % 7)) + str(i): i for i in range(3000)}
    res = echo.run(CborParams(cbor_dumps({"v": value})))
    assert res.value_cbor == cbor_dumps(value)


def test_value_is_decoded_once_on_first_access(echo: peerbox.Program) -> None:
    res = echo.run({"v": {"a": [1, 2]}})
    first = res.value
    assert first == {"a": [1, 2]}
    assert res.value is first
    assert Result({"x": 1}) == Result(value_cbor=cbor_dumps({"x": 1}))


def test_the_log_and_the_value_are_split_without_decoding_the_value() -> None:
    prog = peerbox.compile('print("one"); print("two"); [1, 2]', "split.rhai")
    res = prog.run()
    assert res.log == ["one", "two"]
    assert res.value_cbor == b"\x82\x01\x02"
    assert split_ok_output(b"\xa3\x62ok\xf4\x63log\x80\x65value\x01") is None   # not ok: decoded whole


@pytest.mark.parametrize("data, why", [
    (b"", "truncated"),
    (b"\x01\x02", "after the value"),
    (b"\xc1\x01", "tag"),
    (b"\xc2\x41\x01", "tag"),
    (b"\xd8\x1c\x80", "tag"),
    (b"\x9f\xff", "indefinite"),
    (b"\xa2\x61a\x01\x61a\x02", "duplicate"),
    (b"\xa1\x01\x02", "key"),
    (b"\xf7", "undefined"),
    (b"\xf0", "simple"),
    (b"\x81" * 200_000 + b"\x80", "deep"),
])
def test_bytes_no_script_value_encodes_to_are_a_peerbox_bug_not_a_crash(data: bytes, why: str) -> None:
    with pytest.raises(peerbox.Error) as info:
        decode_value(data)
    assert type(info.value) is peerbox.Error
    assert "a bug in peerbox" in str(info.value)


@FUZZ
@given(st.binary(max_size=64) | VALUES.map(cbor_dumps).flatmap(
    lambda b: st.tuples(st.integers(0, len(b)), st.binary(max_size=4)).map(lambda t: b[:t[0]] + t[1] + b[t[0]:])))
def test_any_bytes_decode_to_a_script_value_or_a_peerbox_error(data: bytes) -> None:
    try:
        value = decode_value(data)
    except peerbox.Error as exc:
        assert type(exc) is peerbox.Error
        return
    assert cbor_dumps(value) is not None   # a plain script value: the strict encoder takes it


def test_a_deep_result_within_the_limit_decodes() -> None:
    data = b"\x81" * 127 + b"\x80"
    value = decode_value(data)
    depth = 0
    while value:
        value, depth = value[0], depth + 1
    assert depth == 127


def test_float_bytes_match_struct_for_halves_singles_and_doubles(echo: peerbox.Program) -> None:
    for bits in range(0, 0x10000, 97):   # every 97th half: exact halves come back as halves
        (x,) = struct.unpack(">e", bits.to_bytes(2, "big"))
        assert echo.run({"v": x}).value_cbor == cbor_dumps(x)
