"""Strict CBOR (peerbox.wire._cbor_strict) and COSE_Sign1 (peerbox.wire._cose)."""

from __future__ import annotations

import struct

import cbor2
import pytest

from peerbox.wire._cbor_strict import EnvelopeError, dumps, loads
from peerbox.wire._cose import PROTECTED_EDDSA, Sign1, decode1, sig_structure, sign1
from peerbox.errors import Error
from peerbox.wire._identity import SMALL_ORDER_POINTS, KeyPair

ALICE = KeyPair.from_seed(b"a" * 32)
BOB = KeyPair.from_seed(b"b" * 32)


def kind(fn: object, *args: object, **kw: object) -> str:
    with pytest.raises(EnvelopeError) as info:
        fn(*args, **kw)  # type: ignore[operator]
    return info.value.kind


def raw_sign1(protected: bytes, unprotected: object, payload: bytes, key: KeyPair = ALICE) -> bytes:
    """A COSE_Sign1 built with cbor2 (not our encoder), signed properly."""
    sig = key.sign(sig_structure(protected, payload))
    return cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, payload, sig]))


# ------------------------------------------------------------------ strict CBOR


def test_error_is_a_peerbox_error() -> None:
    err = EnvelopeError("malformed", "x")
    assert isinstance(err, Error) and err.kind == "malformed" and str(err) == "malformed: x"


@pytest.mark.parametrize(
    "value",
    [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, -1, -24, -25, -(2**64),
     b"", b"xyz", "", "héllo", [], [1, [2, [3]]], {}, {"a": 1, "bb": [True, False, None]},
     1.5, -0.0, 1e300, 3.4028234663852886e38, 0.1, float("inf"), {1: "x", "a": 2, -1: 3}],
)
def test_roundtrip(value: object) -> None:
    data = dumps(value)
    assert loads(data) == value or value != value
    if not isinstance(value, dict) or all(type(k) is str for k in value):
        assert cbor2.loads(data) == value


def test_nan_and_float_widths() -> None:
    assert dumps(float("nan")) == bytes.fromhex("f97e00")
    assert dumps(1.5) == bytes.fromhex("f93e00")
    assert dumps(0.1)[0] == 0xFB
    assert dumps(100000.0)[0] == 0xFA


def test_key_order_is_bytewise_not_length_first() -> None:
    # RFC 8949 §4.2.1: 1000 (19 03e8) sorts before "a" (61 61) bytewise;
    # cbor2's canonical=True (length first) would put "a" first.
    assert dumps({"a": 1, 1000: 2}) == bytes.fromhex("a21903e8026161" + "01")
    assert loads(bytes.fromhex("a21903e8026161" + "01")) == {1000: 2, "a": 1}
    assert kind(loads, bytes.fromhex("a2616101" + "1903e802")) == "not_canonical"


@pytest.mark.parametrize(
    "hexdata,expected",
    [
        ("1817", "not_canonical"),  # 23 in two bytes
        ("190017", "not_canonical"),
        ("1a000000ff", "not_canonical"),
        ("1b00000000ffffffff", "not_canonical"),
        ("3817", "not_canonical"),  # -24 in two bytes
        ("5800", "not_canonical"),  # empty bstr with a 1-byte length
        ("9fff", "not_canonical"),  # indefinite array
        ("bf6161 01ff", "not_canonical"),  # indefinite map
        ("5f4100ff", "not_canonical"),  # indefinite bstr
        ("7f6161ff", "not_canonical"),
        ("a2616101616102", "not_canonical"),  # duplicate key
        ("a2616201616101", "not_canonical"),  # wrong order
        ("a26161016161 01", "not_canonical"),  # duplicate key, same value
        ("fa3fc00000", "not_canonical"),  # 1.5 as single: not shortest
        ("fb3ff8000000000000", "not_canonical"),
        ("f97e01", "not_canonical"),  # NaN with payload
        ("c11a514b67b0", "bad_tag"),  # epoch date
        ("c249010000000000000000", "bad_tag"),  # bignum
        ("d8236161", "bad_tag"),  # regex
        ("d2 80", "bad_tag"),  # 18 not allowed unless asked
        ("f7", "malformed"),  # undefined
        ("f0", "malformed"),  # simple(16)
        ("f820", "malformed"),
        ("ff", "malformed"),  # lone break
        ("1c", "malformed"),  # reserved ai
        ("", "malformed"),
        ("0101", "malformed"),  # trailing
        ("83 01 02", "malformed"),  # truncated
        ("62 ff fe", "malformed"),  # invalid utf-8
        ("5a ffffffff", "malformed"),  # huge claimed length
        ("9b 00000001 00000000", "malformed"),
        ("a1 40 01", "malformed"),  # bstr key
        ("a1 f5 01", "malformed"),  # bool key
        ("a1 80 01", "malformed"),  # array key
    ],
)
def test_strict_rejections(hexdata: str, expected: str) -> None:
    assert kind(loads, bytes.fromhex(hexdata.replace(" ", ""))) == expected


def test_depth_size_count_limits() -> None:
    nested: object = 1
    for _ in range(16):
        nested = [nested]
    assert loads(dumps(nested)) == nested
    assert kind(loads, dumps([nested])) == "too_deep"
    assert kind(loads, dumps(nested), max_depth=3) == "too_deep"
    assert kind(loads, b"\x40" * 0 + dumps(b"x" * 100), max_size=50) == "too_large"
    assert kind(loads, dumps(list(range(100))), max_items=50) == "too_large"
    deep = b"\x81" * 100_000 + b"\x01"
    assert kind(loads, deep) == "too_deep"


def test_outer_tag_only_outermost() -> None:
    assert loads(b"\xd2\x80", outer_tag=18) == []
    assert kind(loads, b"\xd2\xd2\x80", outer_tag=18) == "bad_tag"
    assert kind(loads, b"\x81\xd2\x80", outer_tag=18) == "bad_tag"
    assert kind(loads, b"\xd3\x80", outer_tag=18) == "bad_tag"
    assert kind(loads, b"\xd8\x12\x80", outer_tag=18) == "not_canonical"


def test_dumps_refuses_unencodable() -> None:
    assert kind(dumps, {1.5: 1}) == "bad_field"
    assert kind(dumps, object()) == "bad_field"
    assert kind(dumps, 2**64) == "bad_field"
    assert kind(dumps, "\ud800") == "bad_field"


# ------------------------------------------------------------------ COSE_Sign1


def test_sign1_roundtrip() -> None:
    data = sign1({"typ": "x", "n": 1}, ALICE)
    assert data[0] == 0xD2
    msg = decode1(data)
    assert isinstance(msg, Sign1)
    assert msg.protected == PROTECTED_EDDSA == bytes.fromhex("a10127")
    assert msg.kid == ALICE.public_key
    assert msg.payload == {"typ": "x", "n": 1}
    assert msg.payload_bytes == dumps({"typ": "x", "n": 1})
    assert msg.verify(ALICE.public_key)
    assert not msg.verify(BOB.public_key)
    for bad in SMALL_ORDER_POINTS:
        assert not msg.verify(bad)
    assert not msg.verify(b"short")


@pytest.mark.parametrize("size", [0, 1, 23, 24, 255, 256, 65535, 65536])
def test_sign1_writes_what_a_generic_encoder_writes(size: int) -> None:
    """sign1 and the Sig_structure are concatenated by hand: they must be the deterministic encoding
    of the COSE_Sign1 and of ``["Signature1", protected, h'', payload]`` whatever the payload's length
    (every length head: 1, 2, 3 and 5 bytes)."""
    payload = {"p": "x" * size}
    data = sign1(payload, ALICE)
    payload_bytes = cbor2.dumps(payload, canonical=True)
    tbs = cbor2.dumps(["Signature1", PROTECTED_EDDSA, b"", payload_bytes])
    assert sig_structure(PROTECTED_EDDSA, payload_bytes) == tbs
    signature = ALICE.sign(tbs)
    assert data == cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {4: ALICE.public_key}, payload_bytes,
                                                  signature]))
    assert decode1(data, max_size=1 << 20).verify(ALICE.public_key)


def test_signature_over_other_bytes_fails() -> None:
    good = decode1(sign1({"a": 1}, ALICE))
    other = decode1(sign1({"a": 2}, ALICE))
    forged = Sign1(good.protected, good.kid, other.payload_bytes, other.payload, good.signature)
    assert not forged.verify(ALICE.public_key)
    flipped = bytearray(sign1({"a": 1}, ALICE))
    flipped[-1] ^= 1
    assert not decode1(bytes(flipped)).verify(ALICE.public_key)


def test_sign1_payload_must_be_text_keyed_dict() -> None:
    assert kind(sign1, {1: 2}, ALICE) == "bad_field"
    assert kind(sign1, [1], ALICE) == "bad_field"


def test_decode1_accepts_missing_kid() -> None:
    payload = dumps({"a": 1})
    msg = decode1(raw_sign1(PROTECTED_EDDSA, {}, payload))
    assert msg.kid is None and msg.verify(ALICE.public_key)


@pytest.mark.parametrize(
    "build,expected",
    [
        (lambda p: cbor2.dumps([PROTECTED_EDDSA, {}, p, b"s" * 64]), "bad_tag"),  # untagged
        (lambda p: cbor2.dumps(cbor2.CBORTag(98, [PROTECTED_EDDSA, {}, p, b"s" * 64])), "bad_tag"),
        (lambda p: cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, p])), "malformed"),
        (lambda p: cbor2.dumps(cbor2.CBORTag(18, {1: 2})), "malformed"),
        (lambda p: cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, p, b"s" * 63])), "bad_signature"),
        (lambda p: cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, p, None])), "bad_signature"),
        (lambda p: cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, None, b"s" * 64])), "malformed"),
        (lambda p: raw_sign1(cbor2.dumps({1: -7}), {}, p), "malformed"),  # ES256
        (lambda p: raw_sign1(cbor2.dumps({1: -8, 3: 0}), {}, p), "malformed"),
        (lambda p: raw_sign1(b"", {1: -8}, p), "malformed"),  # alg only unprotected
        (lambda p: raw_sign1(PROTECTED_EDDSA, {5: b"x"}, p), "malformed"),
        (lambda p: raw_sign1(PROTECTED_EDDSA, {4: b"x" * 31}, p), "bad_key"),
        (lambda p: raw_sign1(PROTECTED_EDDSA, {4: bytes(32)}, p), "bad_key"),
        (lambda p: raw_sign1(PROTECTED_EDDSA, {4: SMALL_ORDER_POINTS[4]}, p), "bad_key"),
        (lambda p: raw_sign1(PROTECTED_EDDSA, [], p), "malformed"),
        (lambda p: raw_sign1(PROTECTED_EDDSA, {}, cbor2.dumps([1])), "malformed"),
        (lambda p: raw_sign1(PROTECTED_EDDSA, {}, cbor2.dumps({1: 1})), "malformed"),
        (lambda p: raw_sign1(PROTECTED_EDDSA, {}, cbor2.dumps({"a": cbor2.CBORTag(1, 5)})), "bad_tag"),
        (lambda p: raw_sign1(PROTECTED_EDDSA, {}, bytes.fromhex("a2616101616102")), "not_canonical"),
        (lambda p: raw_sign1(PROTECTED_EDDSA, {}, bytes.fromhex("bf616101ff")), "not_canonical"),
        (lambda p: raw_sign1(PROTECTED_EDDSA, {}, bytes.fromhex("a161611800")), "not_canonical"),
        (lambda p: raw_sign1(PROTECTED_EDDSA, {}, p) + b"\x00", "malformed"),
    ],
)
def test_decode1_rejections(build: object, expected: str) -> None:
    data = build(dumps({"a": 1}))  # type: ignore[operator]
    assert kind(decode1, data) == expected


def test_decode1_outer_must_be_deterministic() -> None:
    good = sign1({"a": 1}, ALICE)
    # re-encode the outer array with a non-minimal length for the signature bstr
    msg = decode1(good)
    body = (b"\x84" + dumps(msg.protected) + dumps({4: msg.kid}) + dumps(msg.payload_bytes)
            + b"\x58\x40" + msg.signature)
    assert decode1(b"\xd2" + body).verify(ALICE.public_key)
    assert kind(decode1, b"\xd2" + body[:-66] + b"\x59\x00\x40" + msg.signature) == "not_canonical"
    assert kind(decode1, b"\xd8\x12" + body) == "not_canonical"


def test_decode1_limits() -> None:
    big = sign1({"s": "x" * 2000}, ALICE)
    assert kind(decode1, big, max_size=1000) == "too_large"
    nested: object = 1
    for _ in range(5):
        nested = {"n": nested}
    data = sign1({"x": nested}, ALICE)
    assert decode1(data).payload["x"] == nested
    assert kind(decode1, data, max_depth=5) == "too_deep"


def test_decode1_never_raises_other_types() -> None:
    for data in (None, 1, "text", [1]):
        assert kind(decode1, data) == "malformed"
    assert struct  # keep the import for readers who build raw floats
