"""Interop with pycose (a COSE implementation nobody here wrote), both ways.

pycose is a test dependency only (the ``test`` extra). If it cannot be
imported the whole module is skipped, saying so.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

pycose_messages = pytest.importorskip(
    "pycose.messages", reason="pycose is not installed (pip install pycose, the `test` extra)"
)
from pycose.algorithms import EdDSA  # noqa: E402
from pycose.headers import KID, Algorithm  # noqa: E402
from pycose.keys.okp import OKPKey  # noqa: E402
from pycose.keys.curves import Ed25519  # noqa: E402

from peerbox.wire._cbor_strict import dumps  # noqa: E402
from peerbox.wire._cose import decode1, sign1  # noqa: E402
from peerbox.policy import DenialCause, Denied  # noqa: E402
from peerbox.wire._envelope import make_request, verify_request  # noqa: E402
from peerbox.wire._reply import make_denial, make_reply, verify_reply  # noqa: E402
from peerbox.wire._identity import KeyPair  # noqa: E402

Sign1Message = pycose_messages.Sign1Message
ALICE = KeyPair.from_seed(b"a" * 32)
BOB = KeyPair.from_seed(b"b" * 32)
NOW = 1_700_000_000


def cose_key(pair: KeyPair, *, private: bool) -> Any:
    return OKPKey(crv=Ed25519, x=pair.public_key, d=pair.secret_seed() if private else b"")


def pycose_sign(payload: dict[str, Any], pair: KeyPair, *, kid: bool = True) -> bytes:
    msg = Sign1Message(
        phdr={Algorithm: EdDSA},
        uhdr={KID: pair.public_key} if kid else {},
        payload=dumps(payload),
    )
    msg.key = cose_key(pair, private=True)
    data: bytes = msg.encode(tag=True)
    return data


def pycose_decode(data: bytes) -> Any:
    """``Sign1Message.decode``, minus one incompatibility of pycose 1.1 with cbor2 6.

    cbor2 6 decodes a tag's content as immutable values (a tuple, frozendicts),
    and pycose's ``decode`` and header parsing accept only ``list``/``dict``
    ("Bytes cannot be decoded as COSE message"). So the tag (18, one byte) is
    checked here, the array under it decoded plainly, and handed to pycose's
    own ``from_cose_obj`` (what ``decode`` calls next); every header and
    signature check is still pycose's.
    """
    assert data[:1] == b"\xd2", "not a tagged COSE_Sign1"
    return Sign1Message.from_cose_obj(cbor2.loads(data[1:]), True)


def pycose_verify(data: bytes, pair: KeyPair) -> Any:
    msg = pycose_decode(data)
    msg.key = cose_key(pair, private=False)
    assert msg.verify_signature()
    return msg


@pytest.mark.parametrize("kid", [True, False])
def test_pycose_signed_request_is_accepted(kid: bool) -> None:
    payload = {
        "v": 1, "typ": "peerbox/exec", "caller": ALICE.public_key, "target": BOB.public_key,
        "nonce": b"n" * 16, "iat": NOW, "exp": NOW + 60, "script": "1 + 1", "params": {"a": [1, "b"]},
    }
    data = pycose_sign(payload, ALICE, kid=kid)
    msg = decode1(data)
    assert msg.verify(ALICE.public_key) and msg.payload == payload
    req = verify_request(data, target=BOB.public_key, now=NOW, nonces=None)
    assert req.script == "1 + 1" and req.params == {"a": [1, "b"]}


def test_pycose_signed_generic_sign1() -> None:
    data = pycose_sign({"typ": "anything", "n": -5}, BOB)
    msg = decode1(data)
    assert msg.kid == BOB.public_key and msg.verify(BOB.public_key) and not msg.verify(ALICE.public_key)


def test_our_sign1_verifies_in_pycose() -> None:
    data = sign1({"hello": "world", "n": [1, 2, 3]}, ALICE)
    msg = pycose_verify(data, ALICE)
    assert msg.phdr == {Algorithm: EdDSA}
    assert msg.uhdr == {KID: ALICE.public_key}
    assert msg.payload == dumps({"hello": "world", "n": [1, 2, 3]})
    wrong = pycose_decode(data)
    wrong.key = cose_key(BOB, private=False)
    assert not wrong.verify_signature()


def test_our_requests_and_replies_verify_in_pycose() -> None:
    req = make_request(ALICE, target=BOB.public_key, script="40 + 2", params={"x": 1}, now=NOW)
    pycose_verify(req, ALICE)
    rep = make_reply(BOB, request_bytes=req, caller=ALICE.public_key, now=NOW, ok=True, value=42,
                     log=["hi"], usage={"fuel": 1, "wall_ms": 2, "peak_memory": 3})
    pycose_verify(rep, BOB)
    den = make_denial(BOB, request_bytes=req, caller=ALICE.public_key, now=NOW,
                      denial=Denied("exec", None, DenialCause.NO_RULE, "no rule allowed it"))
    pycose_verify(den, BOB)


def test_pycose_signed_reply_is_accepted() -> None:
    req = make_request(ALICE, target=BOB.public_key, script="1", now=NOW)
    ours = make_reply(BOB, request_bytes=req, caller=ALICE.public_key, now=NOW, ok=True, value=[1],
                      usage={"fuel": 1, "wall_ms": 2, "peak_memory": 3})
    theirs = pycose_sign(decode1(ours).payload, BOB)
    rep = verify_reply(theirs, target=BOB.public_key, request_bytes=req)
    assert rep.ok and rep.value == [1]


@pytest.mark.parametrize("kid", [True, False])
def test_pycose_signed_requests_pass_the_raw_signature_check(kid: bool) -> None:
    from peerbox.wire._cose import EnvelopeError
    from peerbox.wire._envelope import open_request, preauthenticate

    payload = {
        "v": 1, "typ": "peerbox/exec", "caller": ALICE.public_key, "target": BOB.public_key,
        "nonce": b"n" * 16, "iat": NOW, "exp": NOW + 60, "script": "1 + 1", "caps": [b"t" * 40] * 3,
    }
    data = pycose_sign(payload, ALICE, kid=kid)
    assert preauthenticate(data) == ALICE.public_key
    assert open_request(data).caller == ALICE.public_key
    # Signed by alice in bob's name: with a kid, the raw check finds alice's genuine signature and the
    # strict checks then refuse the kid that is not the caller; without, bob's signature is missing.
    forged = pycose_sign({**payload, "caller": BOB.public_key}, ALICE, kid=kid)
    if kid:
        assert preauthenticate(forged) == ALICE.public_key
    else:
        with pytest.raises(EnvelopeError, match="bad_signature"):
            preauthenticate(forged)
    with pytest.raises(EnvelopeError) as info:
        open_request(forged)
    assert info.value.kind == ("bad_key" if kid else "bad_signature")
