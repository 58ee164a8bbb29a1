"""A reply whose value is given as CBOR bytes (``make_reply(value_cbor=...)``): the same signed bytes, or refused."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbox.wire import EnvelopeError, KeyPair, make_reply, make_request, verify_reply
from peerbox.wire._cbor_strict import dumps

_ME = KeyPair.generate()
_YOU = KeyPair.generate()
_REQ = make_request(_ME, target=_YOU.public_key, script="1", now=1_000_000)
_USAGE = {"fuel": 0, "wall_ms": 1, "peak_memory": 65536}

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=6),
                     st.binary(max_size=6), st.floats())
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=16)


def _reply(**kw: Any) -> bytes:
    return make_reply(_YOU, request_bytes=_REQ, caller=_ME.public_key, now=1_000_001, ok=True, log=["a"],
                      usage=_USAGE, **kw)


@settings(max_examples=200, deadline=None)
@given(_values)
def test_a_value_given_as_its_bytes_signs_the_same_reply(value: Any) -> None:
    assert _reply(value_cbor=dumps(value)) == _reply(value=value)


def test_the_caller_verifies_a_reply_signed_around_the_bytes() -> None:
    reply = verify_reply(_reply(value_cbor=dumps({"b": [1, 2.5], "aa": "x"})), target=_YOU.public_key,
                         request_bytes=_REQ)
    assert reply.value == {"b": [1, 2.5], "aa": "x"}


@pytest.mark.parametrize("data", [
    b"",                                           # no item
    b"\x01\x02",                                   # two items
    dumps(1) + dumps("caller") + dumps(b"x" * 32),  # an item and payload fields after it
    b"\x82\x01",                                   # part of an item
    b"\x9f\xff",                                   # indefinite length
    b"\xc2\x41\x01",                               # a tag
    b"\xa2\x61a\x01\x61a\x02",                     # a duplicate key
    b"\x81" * 100_000 + b"\x80",                   # nested far too deep (no crash)
])
def test_bytes_that_are_not_one_plain_item_are_refused_before_signing(data: bytes) -> None:
    with pytest.raises(EnvelopeError) as info:
        _reply(value_cbor=data)
    assert info.value.kind == "bad_field"
