"""A field's bytes in a verified payload (``peerbox.wire._slice``): the slice the worker hands the guest."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from peerbox.wire import KeyPair, make_request, open_request
from peerbox.wire._cbor_strict import dumps, loads
from peerbox.wire._slice import field_bytes

_ME = KeyPair.generate()
_YOU = KeyPair.generate()

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1), st.text(max_size=6),
                     st.binary(max_size=6), st.floats())
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4),
    st.dictionaries(st.integers(0, 1000), inner, max_size=3)), max_leaves=16)


@settings(max_examples=200, deadline=None)
@given(params=st.dictionaries(st.text(max_size=8), _values, max_size=5), script=st.text(max_size=300),
       caps=st.lists(st.binary(min_size=1, max_size=40), max_size=3), limited=st.booleans())
def test_params_cbor_is_the_strict_encoding_of_the_params(params: dict[str, Any], script: str,
                                                          caps: list[bytes], limited: bool) -> None:
    data = make_request(_ME, target=_YOU.public_key, script=script, params=params, caps=caps,
                        limits={"fuel": 1000} if limited else None, now=1_000_000)
    req = open_request(data)
    if not params:
        assert req.params_cbor is None
        return
    assert req.params_cbor == dumps(req.params)
    assert req.params_cbor is not None and req.params_cbor in data  # a slice, found as it was signed
    assert dumps(loads(req.params_cbor)) == req.params_cbor


def test_field_bytes_of_an_absent_field_is_none() -> None:
    payload = {"a": 1}
    assert field_bytes(dumps(payload), payload, "params") is None


def test_field_bytes_falls_back_to_the_encoding_when_the_bytes_do_not_fit() -> None:
    # a decoded payload that is not these bytes' decoding: the encoding of the field, never wrong bytes
    payload = {"params": {"x": 1}, "script": "s"}
    assert field_bytes(dumps({"params": {"x": 2}, "script": "t"}), payload, "params") == dumps({"x": 1})
