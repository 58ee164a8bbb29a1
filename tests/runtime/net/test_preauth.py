"""Nothing expensive before the signature (issue 12, finding 2).

A forged envelope is refused as ``bad_signature`` without the strict decoder
ever running, by :func:`peerbox.wire._envelope.open_request` and by the worker's
endpoints (``/v1/exec`` and ``/v1/logic``), which mark the refusal for the
HTTP/2 server's failure budgets. The raw fast path and the full decoder agree
on every mutation of valid envelopes (hypothesis), and the skip-scan for the
signer stays bounded whatever the input claims.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import peerbox
from peerbox.net import _preauth
from peerbox.wire import _cbor_strict, _cose, _identity
from peerbox.wire._cose import (PROTECTED_EDDSA, EnvelopeError, decode1, find_bstr_field, scan1, sig_structure,
                           sign1)
from peerbox.wire._envelope import make_request, open_request, preauthenticate
from peerbox.wire._reply import verify_reply
from peerbox.wire import MAX_REVOKE_REQUEST, make_call_request, make_revoke_request, open_call_request
from peerbox.net._h2server import HttpRequest
from peerbox.wire._identity import KeyPair
from peerbox.trust._logic_push import make_logic_request
from peerbox.net._worker import Worker

ALICE = KeyPair.from_seed(b"a" * 32)
BOB = KeyPair.from_seed(b"b" * 32)
MALLORY = KeyPair.from_seed(b"m" * 32)
NOW = 1_700_000_000


def request(key: KeyPair = ALICE, **kw: Any) -> bytes:
    return make_request(key, target=BOB.public_key, script="1 + 1", now=NOW, **kw)


def big_request(key: KeyPair = ALICE, items: int = 20_000) -> bytes:
    """A request whose payload costs the strict decoder tens of thousands of items."""
    return request(key, params={"xs": [f"item-{i:08d}" for i in range(items)]})


def forge(data: bytes) -> bytes:
    """The same envelope with one bit of its signature (the last bytes) flipped."""
    return data[:-1] + bytes([data[-1] ^ 1])


def without_kid(data: bytes) -> bytes:
    """Re-wrap an envelope with an empty unprotected header (the signer is then its ``caller``)."""
    msg = decode1(data)
    return cbor2.dumps(cbor2.CBORTag(18, [msg.protected, {}, msg.payload_bytes, msg.signature]))


@pytest.fixture
def strict_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the inputs the strict CBOR decoder was called on (a spy on our own function)."""
    calls: list[int] = []
    real = _cbor_strict.loads

    def spy(data: bytes, **kw: Any) -> Any:
        calls.append(len(data))
        return real(data, **kw)

    monkeypatch.setattr(_cbor_strict, "loads", spy)
    monkeypatch.setattr(_cose, "loads", spy)
    return calls


def kind_of(fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(EnvelopeError) as info:
        fn(*args, **kw)
    return info.value.kind


# ------------------------------------------------------------------ the fast path alone


def test_a_forged_envelope_never_reaches_the_strict_decoder(strict_calls: list[int]) -> None:
    logic = make_logic_request(ALICE, target=BOB.public_key, module="inbox", source="1", now=NOW)
    forgeries = [forge(request()), forge(big_request()), forge(without_kid(big_request())), forge(logic),
                 without_kid(request(MALLORY)).replace(MALLORY.public_key, ALICE.public_key)]
    strict_calls.clear()  # making the forgeries decoded some
    for data in forgeries:
        assert kind_of(open_request, data) == "bad_signature"
        assert kind_of(preauthenticate, data) == "bad_signature"
    assert strict_calls == []
    open_request(big_request())  # the spy does see the strict decoding of a genuine request
    assert strict_calls


def test_preauthenticate_returns_the_signer() -> None:
    assert preauthenticate(request()) == ALICE.public_key
    assert preauthenticate(without_kid(request())) == ALICE.public_key
    logic = make_logic_request(ALICE, target=BOB.public_key, op="list", now=NOW)
    assert preauthenticate(without_kid(logic)) == ALICE.public_key


def test_kinds_of_the_outer_structure_are_the_strict_decoders() -> None:
    good = request()
    cases = {
        b"": "bad_tag", good[1:]: "bad_tag", b"\xd3" + good[1:]: "bad_tag",
        b"\xd8\x12" + good[1:]: "not_canonical",
        b"\xd2\x83" + good[2:]: "malformed", good + b"\x00": "malformed", good[:-1]: "malformed",
        good[:-66] + b"\x58\x3f" + good[-63:]: "bad_signature",
    }
    for data, expected in cases.items():
        assert kind_of(preauthenticate, data) == expected, data[:4]
        assert kind_of(decode1, data) == expected, data[:4]
    assert kind_of(preauthenticate, good, max_size=len(good) - 1) == "too_large"
    bad_kid = cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {4: bytes(32)}, b"\xa0", bytes(64)]))
    assert kind_of(preauthenticate, bad_kid) == kind_of(decode1, bad_kid) == "bad_key"


def test_the_skip_scan_is_bounded_by_items_not_bytes() -> None:
    # 1000 capability tokens before 'caller': far more items than any valid request has there.
    many = {"v": 1, "caps": [b"t"] * 1000, "caller": ALICE.public_key}
    raw = _cbor_strict.dumps(many)
    assert kind_of(find_bstr_field, raw, "caller") == "bad_field"
    sig = ALICE.sign(sig_structure(PROTECTED_EDDSA, raw))
    data = cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, raw, sig]))
    assert kind_of(preauthenticate, data) == "bad_field"
    # One huge value is one item: skipped by its length head, not read.
    raw = _cbor_strict.dumps({"v": 1, "caps": [b"x" * 900_000], "caller": ALICE.public_key})
    assert find_bstr_field(raw, "caller") == ALICE.public_key
    # Lengths beyond the input are refused before anything is read or allocated from them.
    huge = (2**63).to_bytes(8, "big")
    for hostile in (b"\xa1\x61v\x5b" + huge, b"\xa1\x61v\x9b" + huge, b"\xbb" + (2**40).to_bytes(8, "big"),
                    b"\xa1\x61v\xc1\x00", b"\xa1\x61v\x9f\xff"):
        assert kind_of(find_bstr_field, hostile, "caller") in ("malformed", "bad_tag", "not_canonical")


def test_a_kid_that_is_not_the_caller_is_still_a_bad_key() -> None:
    raw = _cbor_strict.dumps(decode1(request()).payload)
    sig = ALICE.sign(sig_structure(PROTECTED_EDDSA, raw))
    data = cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {4: MALLORY.public_key}, raw, sig]))
    assert kind_of(preauthenticate, data) == kind_of(open_request, data) == "bad_key"


# ------------------------------------------------------------------ fast and slow agree


def slow_verdict(data: bytes) -> bool:
    """The full decoder's answer: does the signature verify by the envelope's signer?"""
    try:
        msg = decode1(data)
    except EnvelopeError:
        return False
    caller = msg.payload.get("caller")
    signer = msg.kid if msg.kid is not None else caller
    if type(signer) is not bytes:
        return False
    if msg.kid is None:
        try:
            peerbox.wire._identity.validate_public_key(signer)
        except peerbox.wire._identity.InvalidPublicKey:
            return False
    return msg.verify(signer)


def fast_verdict(data: bytes) -> bool:
    try:
        preauthenticate(data)
    except EnvelopeError:
        return False
    return True


SEEDS = [request(), without_kid(request()), request(caps=[sign1({"typ": "x"}, BOB)], params={"a": [1, 2.5]}),
         without_kid(make_logic_request(ALICE, target=BOB.public_key, module="inbox", source="x", now=NOW))]


#: Heads that stress a scanner: 1- and 8-byte lengths, indefinite lengths, tags, undefined, break.
SPECIAL_BYTES = [0x00, 0x18, 0x1B, 0x40, 0x5F, 0x7F, 0x9F, 0xBF, 0xC1, 0xD2, 0xF7, 0xFF]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[i] = draw(st.sampled_from(SPECIAL_BYTES))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[i:i + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[i:]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_the_fast_path_and_the_full_decoder_agree(data: bytes) -> None:
    fast = fast_verdict(data)  # raises nothing but EnvelopeError (caught there)
    assert fast == slow_verdict(data)
    if fast:
        assert scan1(data).to_be_signed() == decode1(data).to_be_signed()
    try:
        open_request(data)
    except EnvelopeError:
        return
    assert fast


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(SEEDS))
def test_unmutated_envelopes_pass_both(data: bytes) -> None:
    assert fast_verdict(data) and slow_verdict(data)


# ------------------------------------------------------------------ the worker's endpoints


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[Worker, peerbox.PeerStore]]:
    store = peerbox.PeerStore(tmp_path)
    for name in ("alice", "bob"):
        store.init(name)
    w = Worker(tmp_path, ["bob"], clock=lambda: float(NOW))
    yield w, store
    w.close()


def post(body: bytes, path: str = "/v1/exec") -> HttpRequest:
    return HttpRequest(method="POST", path=path, headers=(("content-type", "application/cose"),), body=body,
                       client="127.0.0.1:1", stream_id=1, conn_id=1)


async def test_the_worker_refuses_forgeries_before_decoding_and_marks_them(
        worker: tuple[Worker, peerbox.PeerStore], strict_calls: list[int]) -> None:
    w, store = worker
    alice, bob = store.get("alice").signing_key(), store.get("bob").public_key
    exec_req = make_request(alice, target=bob, script="1 + 1", now=NOW,
                            params={"xs": [f"item-{i:08d}" for i in range(20_000)]})
    logic_req = make_logic_request(alice, target=bob, module="inbox", source="1", now=NOW)
    forgeries = [(forge(exec_req), "/v1/exec"), (forge(without_kid(exec_req)), "/v1/exec"),
                 (forge(logic_req), "/v1/logic"), (forge(request()), "/v1/exec")]
    strict_calls.clear()
    for body, path in forgeries:
        resp = await w.app(post(body, path))
        assert resp.status == 401 and resp.preauth_failure, (path, resp)
        assert cbor2.loads(resp.body)["error"]["kind"] == "bad_signature"
    assert strict_calls == []
    assert w.metrics.rejections["bad_signature"] == 4
    # A genuine request to a peer this worker does not host is refused (and charged) after decoding.
    resp = await w.app(post(make_request(alice, target=MALLORY.public_key, script="1", now=NOW)))
    assert resp.status == 404 and resp.preauth_failure and strict_calls
    resp = await w.app(post(b"\xd2\x84", "/v1/exec"))
    assert resp.status == 400 and resp.preauth_failure


async def test_the_worker_opens_every_envelope_off_the_event_loop(
        worker: tuple[Worker, peerbox.PeerStore], monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker opens an envelope on the pool thread that checks and runs it (one hand-off), small
    or large, so the event loop never verifies a signature nor decodes a payload."""
    w, _ = worker
    seen: list[bool] = []
    real = preauthenticate

    def spy(data: bytes, **kw: Any) -> bytes:
        seen.append(threading.current_thread() is threading.main_thread())
        return real(data, **kw)

    monkeypatch.setattr(_preauth, "preauthenticate", spy)
    await w.app(post(forge(request())))
    await w.app(post(forge(big_request())))
    assert seen == [False, False]


async def test_preauth_opens_small_bodies_inline_and_large_ones_on_a_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the isolated-mode router uses: inline up to INLINE_MAX bytes (cheaper than a hop)."""
    seen: list[bool] = []
    real = preauthenticate

    def spy(data: bytes, **kw: Any) -> bytes:
        seen.append(threading.current_thread() is threading.main_thread())
        return real(data, **kw)

    monkeypatch.setattr(_preauth, "preauthenticate", spy)
    opener = _preauth.PreAuth()
    for body in (forge(request()), forge(big_request())):
        with pytest.raises(EnvelopeError):
            await opener.open(body, "/v1/exec")
    assert seen == [True, False]


async def test_a_genuine_request_is_verified_once_and_decoded_once(
        worker: tuple[Worker, peerbox.PeerStore], strict_calls: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """From the bytes received to the signed reply, the worker checks the caller's signature once
    and decodes the payload once (the opened request is passed down, not opened again)."""
    w, store = worker
    store.get("bob").paths.policy.write_text(
        'version = 1\n[[rule]]\nwho = "*"\nactions = ["exec"]\neffect = "allow"\n')
    alice, bob = store.get("alice").signing_key(), store.get("bob").public_key
    verified: list[int] = []
    real_verify = _identity.verify

    def verify_spy(public_key: bytes, message: bytes, signature: bytes) -> bool:
        verified.append(len(message))
        return real_verify(public_key, message, signature)

    monkeypatch.setattr(_cose, "verify", verify_spy)
    first = make_request(alice, target=bob, script="params.x + 1", params={"x": 1}, now=NOW)
    strict_calls.clear()
    open_request(first)  # what opening one envelope costs, by itself
    once_decoded, once_verified = len(strict_calls), len(verified)
    assert once_verified == 1 and once_decoded >= 1
    for i in range(3):
        body = make_request(alice, target=bob, script="params.x + 1", params={"x": i}, now=NOW)
        strict_calls.clear()
        verified.clear()
        resp = await w.app(post(body))
        assert (len(strict_calls), len(verified)) == (once_decoded, once_verified)
        assert resp.status == 200
        assert verify_reply(resp.body, target=bob, request_bytes=body).value == i + 1


async def test_forged_call_and_revoke_envelopes_never_reach_the_strict_decoder(
        worker: tuple[Worker, peerbox.PeerStore], strict_calls: list[int]) -> None:
    """``/v1/call`` and ``/v1/revoke`` are opened like ``/v1/exec``: the signature over the raw bytes
    first, so a forgery (however large its arguments) costs no decoding and is charged to the
    connection (``preauth_failure``)."""
    w, store = worker
    alice, bob = store.get("alice").signing_key(), store.get("bob").public_key
    call = make_call_request(alice, target=bob, module="inbox", function="deliver", now=NOW,
                             params=[f"item-{i:08d}" for i in range(20_000)])
    revoke = make_revoke_request(alice, target=bob, token=b"t" * 60_000, now=NOW)
    forgeries = [(forge(call), "/v1/call"), (forge(without_kid(call)), "/v1/call"),
                 (forge(revoke), "/v1/revoke"), (forge(without_kid(revoke)), "/v1/revoke")]
    strict_calls.clear()
    for body, path in forgeries:
        resp = await w.app(post(body, path))
        assert resp.status == 401 and resp.preauth_failure, (path, resp)
        assert cbor2.loads(resp.body)["error"]["kind"] == "bad_signature"
    assert strict_calls == []
    # the size bounds are each type's own: a revocation is small, a call may carry 8 MiB
    resp = await w.app(post(b"\xd2" + b"\x00" * (MAX_REVOKE_REQUEST + 1), "/v1/revoke"))
    assert resp.status == 413 and resp.preauth_failure
    assert len(call) > MAX_REVOKE_REQUEST  # a large call opens, kid or no kid
    assert _preauth.open_envelope(call, "/v1/call").caller == alice.public_key
    assert _preauth.open_envelope(without_kid(call), "/v1/call").caller == alice.public_key


async def test_a_genuine_call_is_verified_once_and_decoded_once(
        worker: tuple[Worker, peerbox.PeerStore], strict_calls: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As for exec: from the bytes received to the signed reply, one signature check, one decoding."""
    w, store = worker
    peer = store.get("bob")
    peer.paths.policy.write_text(
        'version = 2\n[[rule]]\nwho = "*"\nactions = ["call"]\nresources = ["api::*"]\neffect = "allow"\n')
    (peer.paths.logic / "api.rhai").write_text("export fn plus_one(x: i64) { x + 1 }\n")
    alice, bob = store.get("alice").signing_key(), peer.public_key
    verified: list[int] = []
    real_verify = _identity.verify

    def verify_spy(public_key: bytes, message: bytes, signature: bytes) -> bool:
        verified.append(len(message))
        return real_verify(public_key, message, signature)

    monkeypatch.setattr(_cose, "verify", verify_spy)
    first = make_call_request(alice, target=bob, module="api", function="plus_one", params=[1], now=NOW)
    strict_calls.clear()
    open_call_request(first)  # what opening one envelope costs, by itself
    once_decoded, once_verified = len(strict_calls), len(verified)
    assert once_verified == 1 and once_decoded >= 1
    for i in range(3):
        body = make_call_request(alice, target=bob, module="api", function="plus_one", params={"x": i},
                                 now=NOW)
        strict_calls.clear()
        verified.clear()
        resp = await w.app(post(body, "/v1/call"))
        assert (len(strict_calls), len(verified)) == (once_decoded, once_verified)
        assert resp.status == 200
        assert verify_reply(resp.body, target=bob, request_bytes=body).value == i + 1
