"""rt formats floats itself (wasm_guests/rt/fmt_float.c, Ryu + Python's layout), no host call.

Every display of a float in a script (``to_string(x)``, interpolation, an
array's elements) must be exactly Python's ``repr(x)``, with a NaN spelled
``NaN``: checked through real scripts on boundary values, on a large batch of
random bit patterns, and by hypothesis.
"""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import pytest
import wasmtime
from hypothesis import given, settings
from hypothesis import strategies as st

import peerbox
from peerbox.wasm_guests import rt_wasm_bytes

# every x, displayed three ways: to_string, interpolation, inside an array (debug form)
SHOW = """
let out = [];
for x in params.xs {
    out.push([to_string(x), `${x}`, to_string([x])]);
}
out
"""


def shown(x: float) -> str:
    """peerbox's display form of a float: Python's repr, NaN as ``NaN``."""
    return "NaN" if math.isnan(x) else repr(x)


def from_bits(bits: int) -> float:
    value: float = struct.unpack("<d", struct.pack("<Q", bits))[0]
    return value


@pytest.fixture(scope="module")
def show() -> peerbox.Program:
    return peerbox.compile(SHOW)


def check(prog: peerbox.Program, xs: list[float]) -> None:
    got: Any = prog.run(params={"xs": xs}, limits=peerbox.Limits(timeout=60.0)).value
    for x, (a, b, c) in zip(xs, got, strict=True):
        want = shown(x)
        assert (a, b, c) == (want, want, f"[{want}]"), (x.hex(), want, a, b, c)


def boundaries() -> list[float]:
    """Values where the layout switches, the digits are tricky, or the encoding is special."""
    xs = [
        0.0, -0.0, 1.0, -1.0, 0.1, 0.2, 0.1 + 0.2, 1.5, 100.0, 123456789012345.0,
        1e15, 1e16, 9999999999999998.0, 1e17, 2.0**53, 2.0**53 + 2, 2.0**53 - 1, 2.0**63, 2.0**64,
        1e-4, 1e-5, 0.0001234, 0.00001234, 9.999999999999999e-05, 1e22, 1e23, 1e100, 1e-100,
        5e-324, -5e-324, 1e-323, 2.2250738585072014e-308, 2.225073858507201e-308,
        1.7976931348623157e308, -1.7976931348623157e308, math.inf, -math.inf, math.nan,
        1 / 3, 2 / 3, 299792458.0, 6.02214076e23, 1.602176634e-19, 4.35, 0.3, 2.675,
    ]
    xs += [10.0**k for k in range(-323, 309, 7)] + [2.0**k for k in range(-1074, 1024, 13)]
    for base in (1e16, 1e-4, 1e-5, 2.0**53, 1e15, 1.0, 1e23):
        lo = hi = base
        for _ in range(3):
            lo, hi = math.nextafter(lo, 0.0), math.nextafter(hi, math.inf)
            xs += [lo, hi]
    return xs


def test_rt_has_no_float_formatting_import() -> None:
    module = wasmtime.Module(wasmtime.Engine(), rt_wasm_bytes())
    names = {(i.module, i.name) for i in module.imports}
    assert ("peerbox_rt", "fmt_f64") not in names
    assert ("peerbox_rt", "parse_f64") in names


def test_boundaries(show: peerbox.Program) -> None:
    check(show, boundaries())


def test_examples_in_one_script(compile_and_run: Any) -> None:
    src = (
        "let a = [1.0, 0.1 + 0.2, 1e100, 1e-5, 1e16, 123456789012345.0];"
        " `${a} ${1.0/0.0} ${-1.0/0.0} ${0.0/0.0}`"
    )
    want = "[1.0, 0.30000000000000004, 1e+100, 1e-05, 1e+16, 123456789012345.0] inf -inf NaN"
    assert compile_and_run(src).value == want


def test_random_bit_patterns(show: peerbox.Program) -> None:
    rnd = random.Random(14)
    xs = [from_bits(rnd.getrandbits(64)) for _ in range(6000)]  # every exponent, NaN payloads
    xs += [from_bits(rnd.getrandbits(52)) for _ in range(1000)]  # subnormals
    xs += [float(rnd.randrange(-(2**53), 2**53)) for _ in range(1000)]  # integers
    xs += [round(rnd.uniform(-1e6, 1e6), rnd.randrange(0, 9)) for _ in range(1000)]  # short decimals
    check(show, xs)


any_float = st.one_of(
    st.floats(),  # includes subnormals, ±inf, NaN
    st.integers(min_value=0, max_value=2**64 - 1).map(from_bits),
    st.integers(min_value=-(2**53), max_value=2**53).map(float),
    st.integers(min_value=-324, max_value=308).map(lambda k: 10.0**k),
    st.sampled_from(boundaries()),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(any_float, min_size=1, max_size=40))
def test_display_is_python_repr(show: peerbox.Program, xs: list[float]) -> None:
    check(show, xs)
