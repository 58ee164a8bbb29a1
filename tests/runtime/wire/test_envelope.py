"""Requests, replies and the nonce store (peerbox.wire._envelope, peerbox.wire._nonces).

The refusals every request type shares (addressing, signature, canonical
encoding, size, time, replay) run for each of ``peerbox/exec``,
``peerbox/call`` and ``peerbox/revoke`` through the ``env`` fixture.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest

from peerbox.policy import DenialCause, Denied, RuleRef
from peerbox.wire._call import verify_call_request
from peerbox.wire._cbor_strict import dumps
from peerbox.wire._cose import PROTECTED_EDDSA, EnvelopeError, decode1, sig_structure, sign1
from peerbox.wire._envelope import Request, make_request, request_digest, verify_request
from peerbox.wire._reply import Reply, make_denial, make_reply, verify_reply
from peerbox.wire._identity import SMALL_ORDER_POINTS, KeyPair
from peerbox.wire._nonces import NonceStore
from peerbox.wire._revoke import verify_revoke_request

ALICE = KeyPair.from_seed(b"a" * 32)
BOB = KeyPair.from_seed(b"b" * 32)
CAROL = KeyPair.from_seed(b"c" * 32)
NOW = 1_700_000_000
NONCE = b"n" * 16
USAGE = {"fuel": 10, "wall_ms": 3, "peak_memory": 65536}


_DROP = object()
_ADDRESSING: dict[str, Any] = {
    "v": 1, "caller": ALICE.public_key, "target": BOB.public_key, "nonce": NONCE,
    "iat": NOW, "exp": NOW + 300,
}


@dataclass(frozen=True)
class Kind:
    """One request type: its minimal valid payload, its verifier, and the field of it that holds
    the free-form part (where a test puts something deep, large or tagged)."""

    name: str
    fields: dict[str, Any]
    verifier: Callable[..., Any]
    free: str

    def payload(self, **over: Any) -> dict[str, Any]:
        p: dict[str, Any] = {**_ADDRESSING, **self.fields}
        for k, v in over.items():
            if v is _DROP:
                p.pop(k, None)
            else:
                p[k] = v
        return p

    def verify(self, data: bytes, **kw: Any) -> Any:
        args: dict[str, Any] = {"target": BOB.public_key, "now": NOW, "nonces": None}
        args.update(kw)
        return self.verifier(data, **args)

    def kind(self, data: bytes, **kw: Any) -> str:
        with pytest.raises(EnvelopeError) as info:
            self.verify(data, **kw)
        return info.value.kind


KINDS = {
    "exec": Kind("exec", {"typ": "peerbox/exec", "script": "40 + 2"}, verify_request, "params"),
    "call": Kind("call", {"typ": "peerbox/call", "module": "inbox", "function": "deliver",
                          "params": {"msg": "hi"}}, verify_call_request, "params"),
    "revoke": Kind("revoke", {"typ": "peerbox/revoke", "token": b"t" * 40}, verify_revoke_request, "token"),
}
EXEC = KINDS["exec"]


@pytest.fixture(params=sorted(KINDS))
def env(request: pytest.FixtureRequest) -> Kind:
    """Each request type in turn: the refusals they share hold for all of them."""
    k: Kind = KINDS[request.param]
    return k


def payload(**over: Any) -> dict[str, Any]:
    return EXEC.payload(**over)


def verify(data: bytes, **kw: Any) -> Request:
    req: Request = EXEC.verify(data, **kw)
    return req


def kind(data: bytes, **kw: Any) -> str:
    return EXEC.kind(data, **kw)


# ------------------------------------------------------------------ requests


def test_request_roundtrip() -> None:
    data = make_request(
        ALICE, target=BOB.public_key, script="params.a + 1", params={"a": 41, "s": ["x", b"y"]},
        caps=[b"cap-token"], limits={"fuel": 1000, "timeout": 2.5, "memory": 1 << 20}, now=NOW,
        ttl=60,
    )
    req = verify(data)
    assert req.caller == ALICE.public_key and req.target == BOB.public_key
    assert req.script == "params.a + 1" and req.params == {"a": 41, "s": ["x", b"y"]}
    assert req.caps == (b"cap-token",)
    assert req.limits == {"fuel": 1000, "timeout": 2.5, "memory": 1 << 20}
    assert req.iat == NOW and req.exp == NOW + 60 and len(req.nonce) == 16
    assert req.data == data and req.digest == request_digest(data)
    assert decode1(data).kid == ALICE.public_key


def test_request_minimal_and_fresh_nonces() -> None:
    a = make_request(ALICE, target=BOB.public_key, script="1", now=NOW)
    b = make_request(ALICE, target=BOB.public_key, script="1", now=NOW)
    assert a != b
    req = verify(a)
    assert req.params == {} and req.caps == () and req.limits == {}
    assert set(decode1(a).payload) == {"v", "typ", "caller", "target", "nonce", "iat", "exp", "script"}


def test_signed_payload_accepted() -> None:
    assert verify(sign1(payload(), ALICE)).script == "40 + 2"


ADDRESSING_ROWS: list[tuple[dict[str, Any], str]] = [
    ({"v": 2}, "bad_version"),
    ({"v": _DROP}, "bad_version"),
    ({"v": True}, "bad_version"),
    ({"v": 1.0}, "bad_version"),
    ({"typ": "peerbox/reply"}, "wrong_type"),
    ({"typ": "peerbox/cap"}, "wrong_type"),
    ({"typ": _DROP}, "wrong_type"),
    ({"caller": _DROP}, "bad_field"),
    ({"caller": b"x" * 31}, "bad_field"),
    ({"caller": "alice"}, "bad_field"),
    ({"target": _DROP}, "bad_field"),
    ({"nonce": b"n" * 15}, "bad_field"),
    ({"nonce": b"n" * 33}, "bad_field"),
    ({"nonce": "n" * 16}, "bad_field"),
    ({"nonce": _DROP}, "bad_field"),
    ({"iat": True}, "bad_field"),
    ({"iat": float(NOW)}, "bad_field"),
    ({"iat": -1}, "bad_field"),
    ({"exp": _DROP}, "bad_field"),
    ({"exp": NOW}, "bad_field"),  # not after iat
    ({"exp": str(NOW + 300)}, "bad_field"),
    ({"extra": 1}, "bad_field"),
]


@pytest.mark.parametrize("over,expected", ADDRESSING_ROWS)
def test_addressing_rejections(env: Kind, over: dict[str, Any], expected: str) -> None:
    assert env.kind(sign1(env.payload(**over), ALICE)) == expected


@pytest.mark.parametrize(
    "over,expected",
    [
        ({"script": _DROP}, "bad_field"),
        ({"script": b"1"}, "bad_field"),
        ({"params": [1]}, "bad_field"),
        ({"params": {1: 2}}, "bad_field"),
        ({"caps": [b"x", "y"]}, "bad_field"),
        ({"caps": b"x"}, "bad_field"),
        ({"caps": [b"x"] * 17}, "bad_field"),
        ({"limits": {"fuel": True}}, "bad_field"),
        ({"limits": {"fuel": -1}}, "bad_field"),
        ({"limits": {"cpu": 1}}, "bad_field"),
        ({"limits": {"timeout": 0}}, "bad_field"),
        ({"limits": {"timeout": float("inf")}}, "bad_field"),
        ({"limits": {"timeout": False}}, "bad_field"),
        ({"limits": []}, "bad_field"),
    ],
)
def test_field_rejections(over: dict[str, Any], expected: str) -> None:
    assert kind(sign1(payload(**over), ALICE)) == expected


def test_wrong_target_expired_future_window(env: Kind) -> None:
    payload, verify, kind = env.payload, env.verify, env.kind
    assert kind(sign1(payload(target=CAROL.public_key), ALICE)) == "wrong_target"
    assert kind(sign1(payload(), ALICE), now=NOW + 300) == "expired"
    assert verify(sign1(payload(), ALICE), now=NOW + 299).exp == NOW + 300
    assert kind(sign1(payload(iat=NOW + 61, exp=NOW + 400), ALICE)) == "not_yet_valid"
    assert verify(sign1(payload(iat=NOW + 60, exp=NOW + 400), ALICE)).iat == NOW + 60
    assert kind(sign1(payload(exp=NOW + 3601), ALICE)) == "window_too_long"
    assert verify(sign1(payload(exp=NOW + 3600), ALICE)).exp == NOW + 3600
    assert kind(sign1(payload(exp=NOW + 120), ALICE), max_window=60) == "window_too_long"


def test_signature_checks(env: Kind) -> None:
    payload, verify, kind = env.payload, env.verify, env.kind
    # signed by someone else (kid names the signer, not the caller)
    assert kind(sign1(payload(), CAROL)) == "bad_key"
    # signed by someone else, no kid at all
    body = dumps(payload())
    sig = CAROL.sign(sig_structure(PROTECTED_EDDSA, body))
    no_kid = cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, body, sig]))
    assert kind(no_kid) == "bad_signature"
    # the caller's signature, over other bytes
    other = dumps(payload(nonce=b"e" * 16))
    good_sig = ALICE.sign(sig_structure(PROTECTED_EDDSA, body))
    swapped = cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {4: ALICE.public_key}, other, good_sig]))
    assert kind(swapped) == "bad_signature"
    # a missing signature (empty) and a zero one
    for bad_sig in (b"", bytes(64)):
        data = cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, body, bad_sig]))
        assert kind(data) == "bad_signature"
    # without kid but correctly signed: fine
    sig_ok = ALICE.sign(sig_structure(PROTECTED_EDDSA, body))
    unkeyed = cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, body, sig_ok]))
    assert verify(unkeyed).caller == ALICE.public_key


def test_kid_mismatch(env: Kind) -> None:
    payload, kind = env.payload, env.kind
    body = dumps(payload())
    sig = ALICE.sign(sig_structure(PROTECTED_EDDSA, body))
    data = cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {4: CAROL.public_key}, body, sig]))
    assert kind(data) == "bad_key"


@pytest.mark.parametrize("bad", SMALL_ORDER_POINTS)
def test_small_order_and_zero_caller_keys(env: Kind, bad: bytes) -> None:
    payload, kind = env.payload, env.kind
    body = dumps(payload(caller=bad))
    data = cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, body, bytes(64)]))
    assert kind(data) == "bad_key"


def test_small_order_target_refused_by_make_request() -> None:
    with pytest.raises(EnvelopeError) as info:
        make_request(ALICE, target=bytes(32), script="1", now=NOW)
    assert info.value.kind == "bad_key"


def _duplicate_v(p: dict[str, Any]) -> bytes:
    head = dumps(p)
    assert 0xA1 <= head[0] < 0xB7  # a map of fewer than 23 entries: one more is still one head byte
    return bytes([head[0] + 1]) + bytes.fromhex("617601") + head[1:]


@pytest.mark.parametrize(
    "make_raw,expected",
    [
        (lambda k: _duplicate_v(k.payload()), "not_canonical"),  # duplicate "v"
        (lambda k: b"\xbf" + dumps(k.payload())[1:] + b"\xff", "not_canonical"),  # indefinite map
        (lambda k: cbor2.dumps(k.payload(), canonical=False), "not_canonical"),  # insertion order
        (lambda k: cbor2.dumps({**k.payload(), k.free: {"t": cbor2.CBORTag(1, 0)}}, canonical=True),
         "bad_tag"),
    ],
    ids=["duplicate", "indefinite", "unsorted", "tag"],
)
def test_non_deterministic_payload(env: Kind, make_raw: Callable[[Kind], bytes], expected: str) -> None:
    raw_payload = make_raw(env)
    sig = ALICE.sign(sig_structure(PROTECTED_EDDSA, raw_payload))
    data = cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, raw_payload, sig]))
    assert env.kind(data) == expected


def test_non_minimal_int_in_payload(env: Kind) -> None:
    payload, kind = env.payload, env.kind
    good = dumps(payload())
    # "v": 1 is 61 76 01; spell 1 as 18 01
    raw = good.replace(b"\x61\x76\x01", b"\x61\x76\x18\x01")
    assert raw != good
    sig = ALICE.sign(sig_structure(PROTECTED_EDDSA, raw))
    data = cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, raw, sig]))
    assert kind(data) == "not_canonical"


def test_outer_tags_and_limits(env: Kind) -> None:
    payload, kind = env.payload, env.kind
    data = sign1(payload(), ALICE)
    assert kind(data[1:]) == "bad_tag"
    assert kind(b"\xd8\x62" + data[1:]) == "bad_tag"  # COSE_Sign (98)
    assert kind(b"\xc0" + data) == "bad_tag"
    assert kind(data, max_size=len(data) - 1) == "too_large"
    nested: Any = 1
    for _ in range(20):
        nested = [nested]
    assert kind(sign1(payload(**{env.free: {"x": nested}}), ALICE)) == "too_deep"
    # The raw pre-check stops at the first head that is not the 4-array (no recursion at all);
    # the strict decoder alone refuses the nesting itself.
    assert kind(b"\xd2" + b"\x81" * 5000) == "malformed"
    with pytest.raises(EnvelopeError, match="too_deep"):
        decode1(b"\xd2" + b"\x81" * 5000)
    assert kind(sign1(payload(**{env.free: ["x" * (9 << 20)]}), ALICE)) == "too_large"


def test_a_payload_naming_no_signer_is_a_bad_field_before_any_decoding(env: Kind) -> None:
    payload, kind = env.payload, env.kind
    # No kid and no caller: nobody's signature can be checked, so the strict decoder never runs.
    raw = dumps({k: v for k, v in payload().items() if k != "caller"})
    sig = ALICE.sign(sig_structure(PROTECTED_EDDSA, raw))
    data = cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_EDDSA, {}, raw, sig]))
    assert kind(data) == "bad_field"


def test_garbage_is_refused(env: Kind) -> None:
    for data in (b"", b"\x00", b"\xd2", b"\xd2\x84", bytes(100), b"not cbor at all"):
        with pytest.raises(EnvelopeError):
            env.verify(data)


# ------------------------------------------------------------------ replay


def test_replay_in_memory_and_after_restart(env: Kind, tmp_path: Path) -> None:
    payload, verify, kind = env.payload, env.verify, env.kind
    db = tmp_path / "state" / "nonces.sqlite"
    data = sign1(payload(), ALICE)
    with NonceStore(db) as store:
        assert verify(data, nonces=store).nonce == NONCE
        assert kind(data, nonces=store) == "replay"
        # same nonce, other caller: not a replay
        other = sign1(payload(caller=CAROL.public_key), CAROL)
        assert verify(other, nonces=store).caller == CAROL.public_key
        # a refused request does not use up its nonce
        fresh = sign1(payload(nonce=b"f" * 16), ALICE)
        assert kind(fresh, nonces=store, target=CAROL.public_key) == "wrong_target"
        assert verify(fresh, nonces=store).nonce == b"f" * 16
    with NonceStore(db) as store2:
        assert kind(data, nonces=store2) == "replay"
        assert len(store2) == 3
        assert store2.prune(NOW + 300) == 3
        assert len(store2) == 0


def test_nonce_store_semantics() -> None:
    with NonceStore(":memory:") as s:
        assert s.seen_or_add(b"c", b"n", 100, 50) is False
        assert s.seen_or_add(b"c", b"n", 100, 99) is True
        assert s.seen_or_add(b"c", b"n", 200, 100) is False  # the old entry had expired
        assert s.seen_or_add(b"d", b"n", 100, 50) is False


def test_nonce_store_threads(tmp_path: Path) -> None:
    store = NonceStore(tmp_path / "n.sqlite")
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        r = store.seen_or_add(b"caller", b"same", NOW + 10, NOW)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] + [True] * 7
    store.close()


def test_nonce_store_two_connections(tmp_path: Path) -> None:
    a = NonceStore(tmp_path / "n.sqlite")
    b = NonceStore(tmp_path / "n.sqlite")
    assert a.seen_or_add(b"c", b"n", NOW + 10, NOW) is False
    assert b.seen_or_add(b"c", b"n", NOW + 10, NOW) is True
    a.close()
    b.close()


# ------------------------------------------------------------------ replies


def request() -> bytes:
    return make_request(ALICE, target=BOB.public_key, script="1", now=NOW)


def test_reply_roundtrip_ok() -> None:
    req = request()
    data = make_reply(BOB, request_bytes=req, caller=ALICE.public_key, now=NOW + 1, ok=True,
                      value={"answer": 42, "list": [1, "x"]}, log=["hello"], usage=USAGE)
    rep = verify_reply(data, target=BOB.public_key, request_bytes=req)
    assert isinstance(rep, Reply)
    assert rep.ok and rep.value == {"answer": 42, "list": [1, "x"]} and rep.error is None
    assert rep.log == ("hello",) and rep.usage == USAGE and rep.iat == NOW + 1
    assert rep.req == request_digest(req) and rep.caller == ALICE.public_key and not rep.denied
    assert decode1(data).payload["typ"] == "peerbox/reply"


def test_reply_error_and_denial() -> None:
    req = request()
    data = make_reply(BOB, request_bytes=req, caller=ALICE.public_key, now=NOW, ok=False,
                      error={"kind": "division_by_zero", "message": "x / 0", "line": 3, "file": "job.rhai"},
                      usage=USAGE)
    rep = verify_reply(data, target=BOB.public_key, request_bytes=req)
    assert not rep.ok and rep.error == {"kind": "division_by_zero", "message": "x / 0", "line": 3,
                                        "file": "job.rhai"}
    assert not rep.denied
    by_rule = Denied("exec", None, DenialCause.RULE, "denied by the deny rule at policy.toml:7",
                     RuleRef("policy.toml", 7, "deny"))
    den = make_denial(BOB, request_bytes=req, caller=ALICE.public_key, now=NOW, denial=by_rule)
    d = verify_reply(den, target=BOB.public_key, request_bytes=req)
    assert d.denied and d.error == {"kind": "denied", "message": "exec denied by the deny rule at policy.toml:7",
                                    "rule": "policy.toml:7", "action": "exec", "resource": None,
                                    "cause": "rule"}
    assert d.usage == {"fuel": 0, "wall_ms": 0, "peak_memory": 0}
    nothing = make_denial(BOB, request_bytes=req, caller=ALICE.public_key, now=NOW,
                          denial=Denied("fs.read", "a.txt", DenialCause.NO_RULE, "no rule allowed it"))
    assert verify_reply(nothing, target=BOB.public_key, request_bytes=req).error == {
        "kind": "denied", "message": "fs.read of 'a.txt' denied: no rule allowed it", "rule": None,
        "action": "fs.read", "resource": "a.txt", "cause": "no_rule"}
    for name, bad in (("action", None), ("resource", 3), ("cause", 1), ("capability", b"x")):
        with pytest.raises(EnvelopeError, match=f"error.{name} must be text"):
            verify_reply(make_reply(BOB, request_bytes=req, caller=ALICE.public_key, now=NOW, ok=False,
                                    error={"kind": "denied", "message": "m", name: bad}, usage=USAGE),
                         target=BOB.public_key, request_bytes=req)


def test_reply_rejections() -> None:
    req = request()
    data = make_reply(BOB, request_bytes=req, caller=ALICE.public_key, now=NOW, ok=True, value=1,
                      usage=USAGE)
    with pytest.raises(EnvelopeError) as info:
        verify_reply(data, target=BOB.public_key, request_bytes=request())
    assert info.value.kind == "wrong_request"
    with pytest.raises(EnvelopeError) as info:
        verify_reply(data, target=CAROL.public_key, request_bytes=req)
    assert info.value.kind == "wrong_target"
    # a reply claiming to be Bob's, signed by Carol
    forged = sign1(decode1(data).payload, CAROL)
    with pytest.raises(EnvelopeError) as info:
        verify_reply(forged, target=BOB.public_key, request_bytes=req)
    assert info.value.kind == "bad_key"
    # a request is not a reply, and a reply is not a request
    with pytest.raises(EnvelopeError) as info:
        verify_reply(req, target=ALICE.public_key, request_bytes=req)
    assert info.value.kind == "wrong_type"
    assert kind(data, target=BOB.public_key) == "wrong_type"


@pytest.mark.parametrize(
    "over,expected",
    [
        ({"ok": 1}, "bad_field"),
        ({"error": {"kind": "x", "message": "y"}}, "bad_field"),  # ok with error
        ({"value": _DROP}, "bad_field"),
        ({"usage": {"fuel": 1, "wall_ms": 1}}, "bad_field"),
        ({"usage": {"fuel": True, "wall_ms": 1, "peak_memory": 1}}, "bad_field"),
        ({"log": ["a", 1]}, "bad_field"),
        ({"req": b"x" * 31}, "bad_field"),
        ({"v": 7}, "bad_version"),
        ({"ok": False}, "bad_field"),  # a failure without error, with value
    ],
)
def test_reply_field_rejections(over: dict[str, Any], expected: str) -> None:
    req = request()
    p: dict[str, Any] = {
        "v": 1, "typ": "peerbox/reply", "caller": ALICE.public_key, "target": BOB.public_key,
        "req": request_digest(req), "iat": NOW, "ok": True, "value": 1, "log": [], "usage": USAGE,
    }
    for k, v in over.items():
        if v is _DROP:
            del p[k]
        else:
            p[k] = v
    with pytest.raises(EnvelopeError) as info:
        verify_reply(sign1(p, BOB), target=BOB.public_key, request_bytes=req)
    assert info.value.kind == expected


def test_make_reply_refuses_bad_arguments() -> None:
    req = request()
    with pytest.raises(EnvelopeError):
        make_reply(BOB, request_bytes=req, caller=ALICE.public_key, now=NOW, ok=False, usage=USAGE)
    with pytest.raises(EnvelopeError):
        make_reply(BOB, request_bytes=req, caller=ALICE.public_key, now=NOW, ok=True, value=object(),
                   usage=USAGE)
    with pytest.raises(EnvelopeError):
        make_reply(BOB, request_bytes=req, caller=ALICE.public_key, now=NOW, ok=True, usage={"fuel": 1})
    with pytest.raises(EnvelopeError):
        make_request(ALICE, target=BOB.public_key, script="1", now=NOW, ttl=0)
    with pytest.raises(EnvelopeError):
        make_request(ALICE, target=BOB.public_key, script="1", now=NOW, nonce=b"short")


# ------------------------------------------------------------------ open_* and the CLI


def test_open_request_and_reply_skip_context_checks() -> None:
    from peerbox.wire._envelope import open_request
    from peerbox.wire._reply import open_reply

    old = sign1(payload(target=CAROL.public_key), ALICE)
    assert open_request(old).target == CAROL.public_key  # no target/time check
    with pytest.raises(EnvelopeError) as info:
        open_request(sign1(payload(), CAROL))
    assert info.value.kind == "bad_key"
    req = request()
    rep = make_reply(BOB, request_bytes=req, caller=ALICE.public_key, now=NOW, ok=True, value=1, usage=USAGE)
    assert open_reply(rep).target == BOB.public_key
    with pytest.raises(EnvelopeError) as info:
        open_reply(sign1(decode1(rep).payload, CAROL))
    assert info.value.kind == "bad_key"


def _cli(*argv: str) -> int:
    import argparse

    from peerbox.cli._envelope import add_parsers

    parser = argparse.ArgumentParser(prog="peerbox")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    rc: int = args.handler(args)
    return rc


def test_cli_make_and_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from peerbox.peer import PeerStore

    root = tmp_path / "root"
    store = PeerStore(root)
    alice = store.init("alice")
    bob = store.init("bob")
    script = tmp_path / "job.rhai"
    script.write_text("params.a + 1\n")
    out = tmp_path / "req.cose"
    assert _cli("envelope", "make", "--from", "alice", "--to", "bob", str(script), "--param", "a=41",
                "--param", "s=text", "--ttl", "60", "--root", str(root), "-o", str(out)) == 0
    data = out.read_bytes()
    req = open_request_(data)
    assert req.caller == alice.public_key and req.target == bob.public_key
    assert req.params == {"a": 41, "s": "text"} and req.exp - req.iat == 60
    capsys.readouterr()

    assert _cli("envelope", "inspect", str(out), "--json", "--root", str(root)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] and doc["type"] == "peerbox/exec" and doc["params"] == {"a": 41, "s": "text"}
    assert doc["caller"] == f"{alice.did} (alice)" and doc["script"] == "params.a + 1\n"

    assert _cli("envelope", "inspect", str(out)) == 0
    text = capsys.readouterr().out
    assert "signature: valid (by caller)" in text and alice.did in text

    # --to as a did
    assert _cli("envelope", "make", "--from", "bob", "--to", alice.did, str(script), "--root", str(root),
                "-o", str(out)) == 0
    assert open_request_(out.read_bytes()).target == alice.public_key

    # invalid: a flipped signature byte, and garbage
    bad = bytearray(data)
    bad[-1] ^= 1
    out.write_bytes(bytes(bad))
    capsys.readouterr()
    assert _cli("envelope", "inspect", str(out)) == 2
    assert "invalid envelope: bad_signature:" in capsys.readouterr().err
    out.write_bytes(b"junk")
    assert _cli("envelope", "inspect", str(out), "--json") == 2
    res = capsys.readouterr()
    assert json.loads(res.out)["error"]["kind"] == "bad_tag" and "invalid envelope: bad_tag" in res.err

    # a reply inspects too
    rep = make_reply(bob.signing_key(), request_bytes=data, caller=alice.public_key, now=NOW, ok=False,
                     error={"kind": "denied", "message": "no", "rule": "policy.toml:3"}, usage=USAGE)
    out.write_bytes(rep)
    assert _cli("envelope", "inspect", str(out), "--json", "--root", str(root)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["type"] == "peerbox/reply" and doc["error"]["rule"] == "policy.toml:3"
    assert doc["target"] == f"{bob.did} (bob)"


def open_request_(data: bytes) -> Request:
    from peerbox.wire._envelope import open_request

    return open_request(data)
