"""Fuzzing the capability decoder: any input ends in a clear refusal, fast.

Arbitrary bytes, mutations of real chains and signed payloads with random
fields are given to :func:`verify_chain`; the only outcomes allowed are a
:class:`~peerbox.wire._caps.Chain` (for a genuinely valid input) or
:class:`CapabilityError` / :class:`EnvelopeError`, each within a deadline.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbox.wire import _cose
from peerbox.wire._caps import CapabilityError, Chain, delegate, grant, verify_chain
from peerbox.wire._cose import EnvelopeError
from peerbox.wire._identity import KeyPair
from peerbox.policy import glob_problem, pattern_within

NOW = 1_700_000_000
BOB, ALICE, CAROL = (KeyPair.from_seed(bytes([i]) * 32) for i in (1, 2, 3))
ROOT = grant(BOB, audience=ALICE.public_key, subject=BOB.public_key,
             grants=["fs.write:inbox/**", "exec", "module.import:notes"], now=NOW, ttl=3600)
CHAIN = delegate(ROOT, ALICE, audience=CAROL.public_key, grants=["fs.write:inbox/carol/*.txt"], now=NOW,
                 ttl=600)
FUZZ = settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])


def check(data: bytes) -> Chain | None:
    """verify_chain on ``data``; only a Chain or a clean refusal may come out."""
    start = time.perf_counter()
    try:
        return verify_chain(data, caller=CAROL.public_key, subject=BOB.public_key, now=NOW + 5,
                            revoked=lambda _: False)
    except (CapabilityError, EnvelopeError) as exc:
        assert exc.kind and str(exc)
        return None
    finally:
        assert time.perf_counter() - start < 0.5


def test_the_seed_chain_is_valid() -> None:
    assert check(CHAIN) is not None


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    assert check(data) is None


@FUZZ
@given(st.binary(max_size=512))
def test_tagged_garbage(data: bytes) -> None:
    assert check(b"\xd2" + data) is None
    assert check(b"\xd2\x84" + data) is None


@FUZZ
@given(st.data())
def test_mutated_chain(data: st.DataObject) -> None:
    token = bytearray(CHAIN)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = data.draw(st.integers(0, len(token) - 1))
        if op == "flip":
            token[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            token[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            token[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del token[pos:pos + data.draw(st.integers(1, 8))]
        else:
            del token[pos:]
        if not token:
            break
    result = check(bytes(token))
    if bytes(token) != CHAIN:
        # any change to the bytes breaks a signature, the encoding or the structure
        assert result is None


cbor_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.binary(max_size=40),
                      st.text(max_size=20), st.floats(allow_nan=False))
cbor_value = st.recursive(cbor_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)), max_leaves=12)
field_values = {
    "v": st.one_of(st.just(1), cbor_value),
    "typ": st.one_of(st.just("peerbox/cap"), st.sampled_from(["peerbox/exec", "peerbox/reply"]), cbor_value),
    "iss": st.one_of(st.just(BOB.public_key), st.binary(min_size=32, max_size=32), cbor_value),
    "aud": st.one_of(st.just(CAROL.public_key), st.binary(min_size=32, max_size=32), cbor_value),
    "sub": st.one_of(st.just(BOB.public_key), cbor_value),
    "grants": st.one_of(st.lists(st.sampled_from(["exec", "fs.read:**", "fs.write:a/*", "x", "fs.read:"]),
                                 max_size=4), cbor_value),
    "nbf": st.one_of(st.integers(NOW - 10, NOW + 10), cbor_value),
    "exp": st.one_of(st.integers(NOW, NOW + 100), cbor_value),
    "nonce": st.one_of(st.binary(min_size=16, max_size=16), cbor_value),
    "prf": st.one_of(st.just(ROOT), st.binary(max_size=64), cbor_value),
}


@pytest.mark.slow
@FUZZ
@given(st.fixed_dictionaries({}, optional=field_values),
       st.dictionaries(st.text(max_size=6), cbor_value, max_size=2))
def test_signed_random_payloads(fields: dict[str, Any], extra: dict[str, Any]) -> None:
    """Well-signed tokens with random field values: refused cleanly unless truly valid."""
    try:
        token = _cose.sign1({**extra, **fields}, BOB)
    except EnvelopeError:
        return  # a value CBOR cannot carry deterministically: nothing to decode
    result = check(token)
    if result is not None:
        leaf = result.links[-1]
        assert leaf.iss == BOB.public_key and leaf.aud == CAROL.public_key and leaf.nbf <= NOW + 5 <= leaf.exp


patterns = st.lists(st.sampled_from(["a", "b", "*", "**", "a*", "*.txt", "x*y", "?", "a?"]), min_size=1,
                    max_size=6).map("/".join).filter(lambda p: glob_problem(p) is None)


@settings(max_examples=300, deadline=500)
@given(patterns, patterns)
def test_containment_is_quick(child: str, parent: str) -> None:
    start = time.perf_counter()
    pattern_within(child, parent)
    assert time.perf_counter() - start < 0.5
