"""The ``peerbox/call`` envelope (peerbox.wire._call): what a call carries and what it refuses.

The refusals it shares with exec and revoke (addressing, signature, encoding,
size, time, replay) are in test_envelope.py, run for each request type.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from peerbox.run import split_module_name
from peerbox.wire import (MAX_CALL_REQUEST, TYP_CALL, CallRequest, EnvelopeError, KeyPair, make_call_request,
                          make_request, open_call_request, open_request, preauthenticate, verify_call_request,
                          verify_request)
from peerbox.wire._cbor_strict import dumps
from peerbox.wire._cose import PROTECTED_EDDSA, decode1, sig_structure, sign1

ALICE = KeyPair.from_seed(b"a" * 32)
BOB = KeyPair.from_seed(b"b" * 32)
NOW = 1_700_000_000
_DROP = object()


def payload(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "v": 1, "typ": TYP_CALL, "caller": ALICE.public_key, "target": BOB.public_key, "nonce": b"n" * 16,
        "iat": NOW, "exp": NOW + 300, "module": "inbox", "function": "deliver",
    }
    for k, v in over.items():
        if v is _DROP:
            p.pop(k, None)
        else:
            p[k] = v
    return p


def verify(data: bytes) -> CallRequest:
    return verify_call_request(data, target=BOB.public_key, now=NOW, nonces=None)


def kind_of(data: bytes) -> str:
    with pytest.raises(EnvelopeError) as info:
        verify(data)
    return info.value.kind


def unkeyed(p: dict[str, Any], key: KeyPair = ALICE) -> bytes:
    """``p`` signed by ``key`` with no ``kid`` in the header, as pycose and other COSE libraries may."""
    body = dumps(p)
    sig = key.sign(sig_structure(PROTECTED_EDDSA, body))
    return bytes(cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, body, sig])))


def test_roundtrip_named_and_positional() -> None:
    named = make_call_request(ALICE, target=BOB.public_key, module="inbox", function="deliver",
                              params={"msg": "hi", "n": 3}, caps=[b"token"],
                              limits={"fuel": 1000, "timeout": 2.0}, now=NOW, ttl=60)
    req = verify(named)
    assert (req.module, req.function, req.resource) == ("inbox", "deliver", "inbox::deliver")
    assert req.params == {"msg": "hi", "n": 3} and req.caps == (b"token",)
    assert req.limits == {"fuel": 1000, "timeout": 2.0} and req.exp == NOW + 60
    assert req.data == named and len(req.digest) == 32 and decode1(named).kid == ALICE.public_key

    positional = make_call_request(ALICE, target=BOB.public_key, module="tools/text", function="_cut2",
                                   params=("hi", [1, 2], {"k": b"v"}), now=NOW)
    req = verify(positional)
    assert req.module == "tools/text" and req.params == ["hi", [1, 2], {"k": b"v"}]

    bare = make_call_request(ALICE, target=BOB.public_key, module="inbox", function="stats", now=NOW)
    req = verify(bare)
    assert req.params is None and req.caps == () and req.limits == {}
    assert set(decode1(bare).payload) == {"v", "typ", "caller", "target", "nonce", "iat", "exp", "module",
                                          "function"}
    # empty arguments given explicitly are kept: the target can tell "none" from "an empty map"
    assert verify(make_call_request(ALICE, target=BOB.public_key, module="inbox", function="stats",
                                    params={}, now=NOW)).params == {}


@pytest.mark.parametrize(
    "over",
    [
        {"module": _DROP}, {"module": "../x"}, {"module": "builtin:inbox"}, {"module": "peer:inbox"},
        {"module": "x" * 201}, {"module": ""}, {"module": "a//b"}, {"module": "/a"}, {"module": "a/"},
        {"module": "in box"}, {"module": "inbox.rhai"}, {"module": b"inbox"}, {"module": 1},
        {"function": _DROP}, {"function": ""}, {"function": "1st"}, {"function": "de-liver"},
        {"function": "inbox::deliver"}, {"function": "f" * 129}, {"function": "déliver"}, {"function": None},
        {"params": "hi"}, {"params": 1}, {"params": b"x"}, {"params": None}, {"params": {1: "x"}},
        {"script": "40 + 2"}, {"caps": [1]}, {"limits": {"cpu": 1}},
        {"limits": {"timeout": -1}},
    ],
    ids=lambda over: ",".join(f"{k}={v!r:.20}" for k, v in over.items()),
)
def test_call_field_rejections(over: dict[str, Any]) -> None:
    assert kind_of(sign1(payload(**over), ALICE)) == "bad_field"


def test_the_longest_names_pass() -> None:
    long_module = "/".join(["m" * 49] * 4)  # 199 characters
    req = verify(sign1(payload(module=long_module, function="f" * 128), ALICE))
    assert req.module == long_module and req.function == "f" * 128


def test_make_call_request_refuses_what_nobody_accepts() -> None:
    for bad in ({"module": "../x"}, {"function": "a::b"}, {"params": "hi"}, {"params": 3},
                {"limits": {"fuel": -1}}, {"ttl": 0}, {"nonce": b"short"}):
        args: dict[str, Any] = {"target": BOB.public_key, "module": "inbox", "function": "deliver",
                                "now": NOW, **bad}
        with pytest.raises(EnvelopeError) as info:
            make_call_request(ALICE, **args)
        assert info.value.kind == "bad_field", bad
    with pytest.raises(EnvelopeError) as info:
        make_call_request(ALICE, target=bytes(32), module="inbox", function="deliver", now=NOW)
    assert info.value.kind == "bad_key"


def test_exec_and_call_are_not_interchangeable() -> None:
    call = make_call_request(ALICE, target=BOB.public_key, module="inbox", function="deliver", now=NOW)
    exec_ = make_request(ALICE, target=BOB.public_key, script="1", now=NOW)
    with pytest.raises(EnvelopeError) as info:
        verify_request(call, target=BOB.public_key, now=NOW, nonces=None)
    assert info.value.kind == "wrong_type"
    with pytest.raises(EnvelopeError) as info:
        open_request(call)
    assert info.value.kind == "wrong_type"
    assert kind_of(exec_) == "wrong_type"
    with pytest.raises(EnvelopeError) as info:
        open_call_request(exec_)
    assert info.value.kind == "wrong_type"


def test_kidless_call_with_large_params_opens() -> None:
    # 200 arguments and 16 capability tokens: the skip-scan for the signer stays within its bound
    # because "params" sorts after "caller" (and "caps" holds at most 16 items).
    big = payload(params=list(range(200)), caps=[b"t" * 40] * 16,
                  limits={"fuel": 1, "timeout": 1.0, "memory": 1 << 20})
    data = unkeyed(big)
    assert decode1(data).kid is None
    assert preauthenticate(data, max_size=MAX_CALL_REQUEST) == ALICE.public_key
    req = verify(data)
    assert req.params == list(range(200)) and len(req.caps) == 16
    by_name = verify(unkeyed(payload(params={f"p{i}": i for i in range(200)})))
    assert isinstance(by_name.params, dict) and len(by_name.params) == 200
    # and signed by someone else without a kid: refused before the payload is decoded
    assert kind_of(unkeyed(big, BOB)) == "bad_signature"


def test_preauthenticated_key_skips_the_second_check() -> None:
    data = make_call_request(ALICE, target=BOB.public_key, module="inbox", function="deliver", now=NOW)
    key = preauthenticate(data, max_size=MAX_CALL_REQUEST)
    assert open_call_request(data, preauthenticated=key).caller == ALICE.public_key
    # a key that is not the caller's is no shortcut: the caller's signature is still checked
    forged = bytearray(data)
    forged[-1] ^= 1
    with pytest.raises(EnvelopeError) as info:
        open_call_request(bytes(forged), preauthenticated=BOB.public_key)
    assert info.value.kind in ("bad_signature", "bad_key")


def test_a_call_over_one_mebibyte_is_too_large() -> None:
    data = sign1(payload(params=["x" * MAX_CALL_REQUEST]), ALICE)
    assert kind_of(data) == "too_large"


@pytest.mark.parametrize(
    "name",
    ["inbox", "a", "tools/text", "a/b/c", "x_y-z", "A9", "x" * 200, "/".join(["m" * 49] * 4),
     "", "x" * 201, "../x", "a/../b", "a//b", "/a", "a/", ".", "a.b", "in box", "builtin:inbox",
     "peer:inbox", "shared:x", "ü", "a\n", "-", "_", "a/-/b"],
)
def test_module_regex_matches_the_resolver(name: str) -> None:
    """The wire's module check repeats run's (wire may not import run): they must agree on bare names."""
    resolver_ok = split_module_name(name) == (None, name)
    try:
        verify(sign1(payload(module=name), ALICE))
        wire_ok = True
    except EnvelopeError as exc:
        assert exc.kind == "bad_field"
        wire_ok = False
    assert wire_ok == resolver_ok
