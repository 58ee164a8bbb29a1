"""The native fast path of the strict CBOR decoder agrees with the exact decoder.

``loads`` first tries cbor2's decoder plus a check (``fast_loads``) and falls
back to the exact decoder (``_exact_loads``: the byte scanner, cbor2, our own
re-encoding) for whatever the fast path cannot vouch for. The fast path must
be *sound*: whatever it accepts, the exact decoder accepts with the same value,
so every refusal of today keeps its kind. Random bytes, random CBOR written by
permissive encoders (non-canonical, mixed key types, tags, floats of every
width) and mutations of real envelopes go to both; so do the hand-picked cases
where a cheaper check would be wrong. The encoder's fast path
(``fast_dumps``: cbor2's canonical encoder after a walk) must write exactly
the bytes of the exact encoder, or decline.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbox.wire._cbor_native import fast_dumps, fast_loads
from peerbox.wire._cbor_strict import EnvelopeError, _exact_dumps, _exact_loads, dumps, loads
from peerbox.wire._cose import decode1
from peerbox.wire._envelope import make_request
from peerbox.wire._reply import make_reply
from peerbox.wire._identity import KeyPair

ALICE = KeyPair.from_seed(b"a" * 32)
BOB = KeyPair.from_seed(b"b" * 32)
NOW = 1_700_000_000
REQUEST = make_request(ALICE, target=BOB.public_key, script="params.a * 2",
                       params={"a": 21, "l": [1.5, None, -7, "é"], "m": {"k": b"v"}}, caps=[b"token"],
                       limits={"fuel": 100, "timeout": 2.5}, now=NOW, nonce=b"n" * 16)
REPLY = make_reply(BOB, request_bytes=REQUEST, caller=ALICE.public_key, now=NOW, ok=True,
                   value={"x": [1, 0.1, -0.0, math.inf], "y": None, "z": True},
                   log=["a"], usage={"fuel": 1, "wall_ms": 2, "peak_memory": 3})
PAYLOADS = [decode1(REQUEST).payload_bytes, decode1(REPLY).payload_bytes]
DIFF = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def shape(value: Any) -> Any:
    """``value`` with every type made explicit (1, 1.0 and True differ; NaN equals NaN)."""
    if isinstance(value, float):
        return ("float", struct.pack(">d", value) if not math.isnan(value) else "nan")
    if isinstance(value, list):
        return ("list", [shape(v) for v in value])
    if isinstance(value, dict):
        return ("dict", [(shape(k), shape(v)) for k, v in value.items()])
    return (type(value).__name__, value)


def sorted_shape(value: Any) -> Any:
    """:func:`shape` with map entries in a fixed order (a round trip sorts them)."""
    if isinstance(value, list):
        return ("list", [sorted_shape(v) for v in value])
    if isinstance(value, dict):
        return ("dict", sorted(((shape(k), sorted_shape(v)) for k, v in value.items()), key=repr))
    return shape(value)


def exact(data: bytes, max_depth: int = 16, max_items: int = 1 << 16, outer_tag: int | None = None) -> Any:
    """The exact decoder's verdict: ``("ok", shape)`` or ``("refused", kind)``."""
    try:
        return ("ok", shape(_exact_loads(data, max_depth, max_items, outer_tag)))
    except EnvelopeError as exc:
        return ("refused", exc.kind)


def public(data: bytes, **kw: Any) -> Any:
    """The verdict of ``loads`` itself (fast path, then the exact decoder)."""
    try:
        return ("ok", shape(loads(data, **kw)))
    except EnvelopeError as exc:
        return ("refused", exc.kind)


def agree(data: bytes, max_depth: int = 16) -> bool:
    """Check that the fast path accepts only what the exact decoder accepts, with the same value, and
    that ``loads`` gives the exact decoder's verdict; return whether the fast path accepted."""
    want = exact(data, max_depth) if data else ("refused", "malformed")
    try:
        got = ("ok", shape(fast_loads(data, max_depth)))
    except Exception:  # the fast path declines: the exact decoder decides
        got = None
    if got is not None:
        assert got == want, f"fast path accepted {data.hex()} as {got}, the exact decoder says {want}"
    assert public(data, max_depth=max_depth) == want
    return got is not None


def mutate(base: bytes, data: st.DataObject) -> bytes:
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and buf:
            buf[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del buf[pos:]
        elif op == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=9))
        elif op == "delete" and buf:
            del buf[pos]
    return bytes(buf)


_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, width=64),
    st.floats(width=16), st.floats(width=32), st.text(max_size=30), st.binary(max_size=30),
)
_values = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(max_size=8), inner, max_size=5),
        st.dictionaries(st.integers(-(2**40), 2**40), inner, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(-1000, 1000)), inner, max_size=5),
    ),
    max_leaves=20,
)


@DIFF
@given(st.binary(max_size=256))
def test_random_bytes(data: bytes) -> None:
    agree(data)


@DIFF
@given(_values, st.booleans(), st.data())
def test_random_cbor_by_permissive_encoders(value: Any, canonical: bool, data: st.DataObject) -> None:
    encoded = cbor2.dumps(value, canonical=canonical)
    agree(encoded)
    agree(mutate(encoded, data))


@DIFF
@given(_values)
def test_what_dumps_writes_the_fast_path_reads(value: Any) -> None:
    try:
        encoded = dumps(value)
    except EnvelopeError:
        return  # integers beyond 64 bits: nothing to read
    agree(encoded)
    decoded = loads(encoded)
    assert dumps(decoded) == encoded
    assert sorted_shape(decoded) == sorted_shape(value)


@DIFF
@given(st.sampled_from(PAYLOADS), st.data())
def test_mutated_payloads(base: bytes, data: st.DataObject) -> None:
    agree(mutate(base, data))


@DIFF
@given(st.sampled_from([REQUEST, REPLY]), st.data())
def test_mutated_envelopes_with_their_outer_tag(base: bytes, data: st.DataObject) -> None:
    mutated = mutate(base, data)
    for depth in (3, 16):
        want = exact(mutated, depth, outer_tag=18) if mutated else ("refused", "malformed")
        assert public(mutated, max_depth=depth, outer_tag=18) == want


def test_the_fast_path_takes_real_envelopes() -> None:
    """Envelopes as peers write them are decoded natively (or the speed-up is lost)."""
    for payload in PAYLOADS:
        assert agree(payload)


@pytest.mark.parametrize(
    ("hexdata", "kind"),
    [
        ("a2" "6161" "02" "1903e8" "01", "not_canonical"),  # {"a", 1000}: sorted length first, not bytewise
        ("a2" "20" "01" "1903e8" "02", "not_canonical"),  # {-1, 1000}: the same for integers of two signs
        ("fb3ff8000000000000", "not_canonical"),  # 1.5 as a double: not its shortest form
        ("fa3fc00000", "not_canonical"),  # 1.5 as a single
        ("f97e01", "not_canonical"),  # a NaN with a payload
        ("fb7ff8000000000000", "not_canonical"),  # NaN as a double
        ("1801", "not_canonical"),  # 1 in two bytes
        ("0102", "malformed"),  # a trailing byte
        ("f0", "malformed"),  # simple value 16
        ("f820", "malformed"),  # simple value 32
        ("f7", "malformed"),  # undefined
        ("a1f401", "malformed"),  # a bool as a key
        ("a1f601", "malformed"),  # null as a key
        ("a1410001", "malformed"),  # a byte string as a key
        ("a1810001", "malformed"),  # an array as a key
        ("a1f93c0001", "malformed"),  # a float as a key
        ("a201010102", "not_canonical"),  # a duplicate key
        ("9fff", "not_canonical"),  # indefinite length
        ("c11a5f5e1000", "bad_tag"),  # an epoch date
        ("c249010000000000000000", "bad_tag"),  # a bignum (2**64)
        ("d81c8101", "bad_tag"),  # a shareable value
        ("d90100816161", "bad_tag"),  # a string-reference namespace
        ("d901028101", "bad_tag"),  # a set
        ("d9d9f701", "bad_tag"),  # self-described CBOR
        ("62ed a0".replace(" ", ""), "malformed"),  # truncated
        ("63eda080", "malformed"),  # a UTF-8 encoded surrogate
    ],
)
def test_every_refusal_keeps_its_kind(hexdata: str, kind: str) -> None:
    data = bytes.fromhex(hexdata)
    assert not agree(data)
    with pytest.raises(EnvelopeError) as info:
        loads(data)
    assert info.value.kind == kind


def test_mixed_keys_in_bytewise_order_are_accepted() -> None:
    """{"a", 1000} in bytewise order is deterministic; the exact decoder takes it when the fast path
    (whose encoder sorts length first) declines."""
    data = bytes.fromhex("a2" "1903e8" "01" "6161" "02")
    assert loads(data) == {1000: 1, "a": 2}


def test_every_half_float_agrees() -> None:
    for bits in range(0, 1 << 16, 7):
        agree(b"\xf9" + bits.to_bytes(2, "big"))


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_floats_agree_in_every_width(x: float) -> None:
    for fmt, ib in (("e", 0xF9), ("f", 0xFA), ("d", 0xFB)):
        try:
            packed = struct.pack(">" + fmt, x)
        except OverflowError:
            continue
        agree(bytes((ib,)) + packed)


@pytest.mark.parametrize("opener", [b"\x81", b"\xa1\x00", b"\xc6", b"\x9f"])
def test_deep_nesting_is_refused_without_recursing(opener: bytes) -> None:
    """50,000 nested containers (or tags) are refused, in this process: neither cbor2's decoder nor its
    encoder (which recurses on the C stack) ever sees more nesting than the limit allows."""
    data = opener * 50_000 + b"\x00"
    with pytest.raises(EnvelopeError) as info:
        loads(data, max_size=len(data), max_items=len(data))
    assert info.value.kind in ("too_deep", "bad_tag", "not_canonical")
    agree(data)


def test_nesting_at_the_limit_is_accepted_and_one_more_is_not() -> None:
    at_limit = b"\x81" * 16 + b"\x00"
    assert agree(at_limit)
    with pytest.raises(EnvelopeError) as info:
        loads(b"\x81" + at_limit)
    assert info.value.kind == "too_deep"


def test_the_item_budget_still_holds() -> None:
    """An input with more bytes than the item budget is not taken by the fast path, so the budget is
    enforced exactly as before."""
    data = dumps([0] * 100)
    assert loads(data, max_items=101) == [0] * 100
    with pytest.raises(EnvelopeError) as info:
        loads(data, max_items=100)
    assert info.value.kind == "too_large"


def exact_dumps_verdict(value: Any) -> Any:
    try:
        return ("ok", _exact_dumps(value))
    except EnvelopeError as exc:
        return ("refused", exc.kind)


_encodable = st.recursive(
    st.one_of(_leaf, st.integers(-(2**64) - 2, 2**64 + 1), st.text(alphabet=st.characters(codec="utf-8"))),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=8), inner, max_size=6),
        st.dictionaries(st.integers(-(2**65), 2**65), inner, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(-1000, 1000), st.booleans()), inner,
                        max_size=5),
    ),
    max_leaves=25,
)


@DIFF
@given(_encodable)
def test_the_fast_encoder_writes_the_exact_bytes_or_declines(value: Any) -> None:
    fast = fast_dumps(value)
    want = exact_dumps_verdict(value)
    if fast is not None:
        assert ("ok", fast) == want
    got: tuple[str, object]
    try:
        got = ("ok", dumps(value))
    except EnvelopeError as exc:
        got = ("refused", exc.kind)
    assert got == want


class _Text(str):
    pass


class _Number(int):
    pass


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, 1000: 2},  # mixed keys: bytewise order, not cbor2's length-first one
        {-1: 0, 1000: 1},
        [2**64],  # beyond 64 bits: bad_field, never cbor2's big-number tag
        -(2**64) - 1,
        "\ud800",  # a lone surrogate
        {True: 1},  # a bool key
        _Text("x"),  # subclasses: the exact encoder decides
        _Number(3),
        bytearray(b"ab"),
        memoryview(b"ab"),
        {1, 2},  # a set
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
    ],
    ids=lambda v: type(v).__name__,  # stable between xdist workers (no repr with an address)
)
def test_what_the_fast_encoder_declines(value: Any) -> None:
    assert fast_dumps(value) is None
    want = exact_dumps_verdict(value)
    try:
        assert ("ok", dumps(value)) == want
    except EnvelopeError as exc:
        assert ("refused", exc.kind) == want


def test_a_cycle_is_refused_without_recursing_in_cbor2() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert fast_dumps(loop) is None
    with pytest.raises(EnvelopeError) as info:
        dumps(loop)
    assert info.value.kind == "too_deep"


def test_envelopes_are_written_by_the_fast_encoder() -> None:
    for payload in PAYLOADS:
        value = loads(payload)
        assert fast_dumps(value) == payload == _exact_dumps(value)
