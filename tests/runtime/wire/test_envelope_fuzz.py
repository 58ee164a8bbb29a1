"""Fuzz: any bytes given to the envelope decoders end in EnvelopeError, quickly.

Arbitrary bytes, arbitrary CBOR-ish structures, and single mutations
(byte flips, truncations, insertions) of valid requests and replies go to
:func:`decode1`, :func:`verify_request`, :func:`verify_reply` and the strict
CBOR :func:`loads`. Each must either succeed or raise
:class:`EnvelopeError` — never another exception — within the hypothesis
deadline. Inputs that claim huge lengths are part of the corpus, so a
decoder that allocated from a claimed length would blow the deadline or
memory.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbox.wire._cbor_strict import EnvelopeError, loads
from peerbox.wire._cose import decode1
from peerbox.wire._envelope import make_request, verify_request
from peerbox.wire._reply import make_reply, verify_reply
from peerbox.wire._identity import KeyPair
from peerbox.trust import make_logic_request, verify_logic_request

ALICE = KeyPair.from_seed(b"a" * 32)
BOB = KeyPair.from_seed(b"b" * 32)
NOW = 1_700_000_000
REQUEST = make_request(ALICE, target=BOB.public_key, script="params.a * 2",
                       params={"a": 21, "l": [1.5, None]}, caps=[b"token"], limits={"fuel": 100},
                       now=NOW, nonce=b"n" * 16)
REPLY = make_reply(BOB, request_bytes=REQUEST, caller=ALICE.public_key, now=NOW, ok=True, value={"x": [1]},
                   log=["a"], usage={"fuel": 1, "wall_ms": 2, "peak_memory": 3})
LOGIC = make_logic_request(ALICE, target=BOB.public_key, module="inbox", source="fn f(x) { x }", caps=[b"t"],
                           now=NOW, nonce=b"l" * 16)
READ = make_logic_request(ALICE, target=BOB.public_key, op="history", module="inbox", now=NOW, nonce=b"r" * 16)
FUZZ = settings(max_examples=400, deadline=200, suppress_health_check=[HealthCheck.too_slow])


def everything(data: bytes) -> None:
    """Feed ``data`` to every decoder; only EnvelopeError may come out."""
    calls: list[Any] = [
        lambda: loads(data),
        lambda: loads(data, outer_tag=18),
        lambda: decode1(data),
        lambda: verify_request(data, target=BOB.public_key, now=NOW, nonces=None),
        lambda: verify_reply(data, target=BOB.public_key, request_bytes=REQUEST),
        lambda: verify_logic_request(data, target=BOB.public_key, now=NOW, nonces=None),
    ]
    for call in calls:
        try:
            call()
        except EnvelopeError as exc:
            assert exc.kind and isinstance(exc.message, str)


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    everything(data)


@FUZZ
@given(st.binary(max_size=64))
def test_tagged_arbitrary_bytes(data: bytes) -> None:
    everything(b"\xd2" + data)
    everything(b"\xd2\x84" + data)


@FUZZ
@given(st.sampled_from([REQUEST, REPLY, LOGIC, READ]), st.data())
def test_mutated_envelopes(base: bytes, data: st.DataObject) -> None:
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
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
    everything(bytes(buf))


cbor_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1), st.floats(), st.text(max_size=8),
    st.binary(max_size=8),
)
cbor_value = st.recursive(
    cbor_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), inner,
                                                     max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(cbor_value)
def test_structured_values_survive_or_fail_cleanly(value: Any) -> None:
    import cbor2

    for canonical in (False, True):
        data = cbor2.dumps(value, canonical=canonical)
        everything(data)
        everything(b"\xd2" + data)


def test_huge_claimed_lengths_allocate_nothing() -> None:
    tracemalloc.start()
    try:
        for data in (
            b"\xd2\x84\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # bstr of 2**64-1 bytes
            b"\xd2\x9b\xff\xff\xff\xff\xff\xff\xff\xff",  # array of 2**64-1 items
            b"\xbb\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\x7a\xff\xff\xff\xff" + b"a" * 10,
        ):
            everything(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
