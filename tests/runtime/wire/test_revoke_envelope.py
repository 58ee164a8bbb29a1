"""The ``peerbox/revoke`` envelope (peerbox.wire._revoke): a token a worker must refuse from now on.

The refusals it shares with exec and call (addressing, signature, encoding,
size, time, replay) are in test_envelope.py, run for each request type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2
import pytest

from peerbox.wire import (MAX_REVOKE_REQUEST, TYP_REVOKE, EnvelopeError, KeyPair, NonceStore, RevokeRequest,
                          decode_chain, grant, make_call_request, make_revoke_request, open_call_request,
                          open_revoke_request, preauthenticate, verify_revoke_request)
from peerbox.wire._caps import MAX_TOKEN_SIZE
from peerbox.wire._cbor_strict import dumps
from peerbox.wire._cose import PROTECTED_EDDSA, decode1, sig_structure, sign1

ALICE = KeyPair.from_seed(b"a" * 32)
BOB = KeyPair.from_seed(b"b" * 32)
CAROL = KeyPair.from_seed(b"c" * 32)
NOW = 1_700_000_000
_DROP = object()


def payload(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "v": 1, "typ": TYP_REVOKE, "caller": ALICE.public_key, "target": BOB.public_key, "nonce": b"n" * 16,
        "iat": NOW, "exp": NOW + 300, "token": b"t" * 40,
    }
    for k, v in over.items():
        if v is _DROP:
            p.pop(k, None)
        else:
            p[k] = v
    return p


def verify(data: bytes, nonces: NonceStore | None = None) -> RevokeRequest:
    return verify_revoke_request(data, target=BOB.public_key, now=NOW, nonces=nonces)


def kind_of(data: bytes) -> str:
    with pytest.raises(EnvelopeError) as info:
        verify(data)
    return info.value.kind


def a_token() -> bytes:
    """A real capability: bob lets carol read bob's notes (bob is its subject and issuer)."""
    return grant(BOB, audience=CAROL.public_key, subject=BOB.public_key, grants=["fs.read:notes/**"],
                 now=NOW, ttl=3600)


def test_roundtrip_carries_the_token_untouched() -> None:
    token = a_token()
    data = make_revoke_request(ALICE, target=BOB.public_key, token=token, now=NOW, ttl=60)
    req = verify(data)
    assert req.token == token and req.caller == ALICE.public_key and req.target == BOB.public_key
    assert req.exp == NOW + 60 and req.data == data and len(req.digest) == 32
    assert decode_chain(req.token)[0].sub == BOB.public_key
    assert set(decode1(data).payload) == {"v", "typ", "caller", "target", "nonce", "iat", "exp", "token"}


@pytest.mark.parametrize(
    "over",
    [{"token": _DROP}, {"token": b""}, {"token": "text"}, {"token": [b"t"]}, {"token": None},
     {"token": b"t" * (MAX_TOKEN_SIZE + 1)}, {"caps": [b"x"]}, {"caps": []}, {"script": "1"},
     {"module": "inbox"}],
    ids=lambda over: ",".join(f"{k}={v!r:.20}" for k, v in over.items()),
)
def test_revoke_field_rejections(over: dict[str, Any]) -> None:
    assert kind_of(sign1(payload(**over), ALICE)) == "bad_field"


def test_the_largest_token_fits() -> None:
    data = sign1(payload(token=b"t" * MAX_TOKEN_SIZE), ALICE)
    assert len(data) <= MAX_REVOKE_REQUEST and len(verify(data).token) == MAX_TOKEN_SIZE


def test_over_80_kib_is_too_large() -> None:
    data = sign1(payload(token=b"t" * (80 << 10)), ALICE)
    assert len(data) > MAX_REVOKE_REQUEST and kind_of(data) == "too_large"


def test_make_revoke_request_refuses_what_nobody_accepts() -> None:
    for bad in ({"token": b""}, {"token": b"t" * (MAX_TOKEN_SIZE + 1)}, {"ttl": 0}, {"nonce": b"short"}):
        args: dict[str, Any] = {"target": BOB.public_key, "token": b"tok", "now": NOW, **bad}
        with pytest.raises(EnvelopeError) as info:
            make_revoke_request(ALICE, **args)
        assert info.value.kind == "bad_field", bad
    with pytest.raises(EnvelopeError) as info:
        make_revoke_request(ALICE, target=bytes(32), token=b"tok", now=NOW)
    assert info.value.kind == "bad_key"


def test_kidless_revoke_opens() -> None:
    body = dumps(payload(token=a_token()))
    sig = ALICE.sign(sig_structure(PROTECTED_EDDSA, body))
    data = bytes(cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, body, sig])))
    assert decode1(data).kid is None
    assert preauthenticate(data, max_size=MAX_REVOKE_REQUEST) == ALICE.public_key
    assert open_revoke_request(data, preauthenticated=ALICE.public_key).caller == ALICE.public_key


def test_revoke_and_call_are_not_interchangeable() -> None:
    revoke = make_revoke_request(ALICE, target=BOB.public_key, token=b"tok", now=NOW)
    call = make_call_request(ALICE, target=BOB.public_key, module="inbox", function="deliver", now=NOW)
    assert kind_of(call) == "wrong_type"
    with pytest.raises(EnvelopeError) as info:
        open_call_request(revoke)
    assert info.value.kind == "wrong_type"


def test_a_revocation_cannot_be_replayed(tmp_path: Path) -> None:
    data = make_revoke_request(ALICE, target=BOB.public_key, token=b"tok", now=NOW)
    with NonceStore(tmp_path / "nonces.sqlite") as store:
        assert verify(data, store).token == b"tok"
        with pytest.raises(EnvelopeError) as info:
            verify(data, store)
        assert info.value.kind == "replay"
