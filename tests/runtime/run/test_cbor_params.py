"""Params given as CBOR bytes (``peerbox.run.CborParams``): handed to the guest as they are, checked there."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import peerbox
from peerbox.run import CborParams
from peerbox.run._values import MAX_DEPTH

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def echo() -> peerbox.Program:
    return peerbox.compile("params", "echo_params.rhai")


def nest(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = [v]
    return v


def test_cbor_params_reach_the_script_as_the_same_values(echo: peerbox.Program) -> None:
    params = {"s": "héllo", "i": -(2**63), "f": 1.5, "b": b"\x00\xff", "n": None, "t": True,
              "a": [1, [2, {"k": "v"}]], "m": {"z": 1, "a": 2}}
    assert echo.run(CborParams(cbor2.dumps(params))).value == params
    assert echo.run(CborParams(cbor2.dumps(params))).value == echo.run(params).value


def test_half_and_single_floats_are_taken(echo: peerbox.Program) -> None:
    # deterministic CBOR (a verified request) writes 1.5 as a half float
    assert echo.run(CborParams(b"\xa1\x61x\xf9\x3e\x00")).value == {"x": 1.5}
    assert echo.run(CborParams(b"\xa1\x61x\xfa\x3f\xc0\x00\x00")).value == {"x": 1.5}


def test_the_deepest_allowed_nesting_passes_and_one_more_is_refused(echo: peerbox.Program) -> None:
    assert echo.run(CborParams(cbor2.dumps({"x": nest(MAX_DEPTH - 1)}))).value == {"x": nest(MAX_DEPTH - 1)}
    with pytest.raises(peerbox.ValueConversionError, match="nested deeper than 128"):
        echo.run(CborParams(cbor2.dumps({"x": nest(MAX_DEPTH)})))


def test_deep_nesting_that_would_crash_an_encoder_is_a_typed_error(echo: peerbox.Program) -> None:
    data = b"\xa1\x61x" + b"\x81" * 50_000 + b"\x00"
    with pytest.raises(peerbox.ValueConversionError, match="nested deeper"):
        echo.run(CborParams(data))


@pytest.mark.parametrize(
    ("data", "path", "reason"),
    [
        (cbor2.dumps({"a": 2**63}), "params.a", "outside the 64-bit range"),
        (cbor2.dumps({"a": [0, -(2**64)]}), "params.a[1]", "outside the 64-bit range"),
        (cbor2.dumps({"a": {1: 2}}), "params.a", "map keys must be strings"),
        (cbor2.dumps([1, 2]), "params", "must be a CBOR map"),
        (b"\xa1\x61a\xc1\x00", "params", "tags are not supported"),
        (b"\xa1\x61a\x62\xff\xfe", "params", "UTF-8"),
        (b"\xa1\x61a", "params", "truncated"),
        (b"\xa0\x00", "params", "trailing bytes"),
        (b"", "params", "truncated"),
        (b"\xbf\xff", "params", "indefinite"),
    ],
)
def test_what_the_guest_refuses_is_a_value_conversion_error(echo: peerbox.Program, data: bytes, path: str,
                                                            reason: str) -> None:
    with pytest.raises(peerbox.ValueConversionError) as info:
        echo.run(CborParams(data))
    assert info.value.path == path
    assert reason in str(info.value)
    assert info.value.exit_code == 2


def test_params_bytes_cannot_change_the_caller() -> None:
    """The params go last in the input document: nothing in them can reach ``caller``."""
    who = peerbox.compile("[caller, params]", "who.rhai")
    spoof = cbor2.dumps("caller") + cbor2.dumps({"id": "mallory"})
    assert who.run(CborParams(b"\xa1" + spoof), caller={"id": "alice"}).value == [
        {"id": "alice"}, {"caller": {"id": "mallory"}}]
    for forged in (b"\xa0" + spoof, b"\xa2" + spoof, b"\xa1\x61a"):
        with pytest.raises(peerbox.ValueConversionError):
            who.run(CborParams(forged), caller={"id": "alice"})


def test_cbor_params_must_be_bytes() -> None:
    with pytest.raises(peerbox.ValueConversionError, match="takes bytes"):
        CborParams(bytearray(b"\xa0"))  # type: ignore[arg-type]


def test_a_script_error_saying_invalid_input_is_still_the_scripts(echo: peerbox.Program) -> None:
    prog = peerbox.compile('throw "invalid input: mine"', "thrower.rhai")
    with pytest.raises(peerbox.ScriptError):
        prog.run(CborParams(b"\xa0"))


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=8),
                     st.binary(max_size=8), st.floats(allow_nan=False))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=4), inner, max_size=4)),
                       max_leaves=20)


@FUZZ
@given(params=st.dictionaries(st.text(max_size=4), _values, max_size=4))
def test_any_params_map_round_trips_as_cbor(echo: peerbox.Program, params: dict[str, Any]) -> None:
    assert echo.run(CborParams(cbor2.dumps(params))).value == params


@FUZZ
@given(params=st.dictionaries(st.text(max_size=4), _values, max_size=4), data=st.data())
def test_mutated_cbor_never_crashes_the_host(echo: peerbox.Program, params: dict[str, Any],
                                              data: st.DataObject) -> None:
    """Flipped, cut and inserted bytes: the run gives a value or a typed error, nothing else."""
    raw = bytearray(cbor2.dumps(params))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, len(raw)))
        if op == "flip" and at < len(raw):
            raw[at] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[at:at + data.draw(st.integers(1, 8))]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=9))
    try:
        value = echo.run(CborParams(bytes(raw)), limits=peerbox.Limits(memory=16 << 20, timeout=10.0)).value
    except (peerbox.ValueConversionError, peerbox.LimitExceeded):
        return
    assert type(value) is dict


@FUZZ
@given(raw=st.binary(max_size=64))
def test_random_bytes_never_crash_the_host(echo: peerbox.Program, raw: bytes) -> None:
    try:
        value = echo.run(CborParams(raw), limits=peerbox.Limits(memory=16 << 20, timeout=10.0)).value
    except (peerbox.ValueConversionError, peerbox.LimitExceeded):
        return
    assert type(value) is dict
