"""Who may read ``/v1/status`` (:func:`peerbox.net._status.decide_access`): loopback, or a status token
signed by a peer the worker hosts; and readiness's one-line answers."""

from __future__ import annotations

import base64

from peerbox.net._status import (MAX_TOKEN_WINDOW, Readiness, Verdict, authorization_header, decide_access,
                                 is_local_client, make_status_token)
from peerbox.wire import EnvelopeError, KeyPair

NOW = 1_700_000_000
HOSTED = KeyPair.generate()
OTHER = KeyPair.generate()


def hosts(key: bytes) -> bool:
    return key == HOSTED.public_key


def decide(client: str, header: str | None, now: int = NOW) -> Verdict:
    return decide_access(client, header, hosts=hosts, now=now).verdict


def bearer(token: bytes) -> str:
    return authorization_header(token)[1]


def test_loopback_and_the_router_channel_are_local_other_addresses_are_not() -> None:
    assert is_local_client("127.0.0.1:5000") and is_local_client("[::1]:5000") and is_local_client("router")
    assert not is_local_client("192.0.2.2:5000") and not is_local_client("unknown")
    assert decide("127.0.0.1:5000", None) is Verdict.LOCAL


def test_a_remote_client_without_a_token_is_refused_with_a_reason() -> None:
    access = decide_access("192.0.2.7:4000", None, hosts=hosts, now=NOW)
    assert access.verdict is Verdict.REFUSED and "loopback" in access.message and "--as" in access.message


def test_a_token_signed_by_a_hosted_peer_is_accepted() -> None:
    token = make_status_token(HOSTED, now=NOW)
    access = decide_access("192.0.2.7:4000", bearer(token), hosts=hosts, now=NOW + 5)
    assert access.verdict is Verdict.SIGNED and access.signer == HOSTED.public_key


def test_tokens_that_must_not_pass() -> None:
    other = bearer(make_status_token(OTHER, now=NOW))  # a valid token, but not a hosted peer's key
    expired = bearer(make_status_token(HOSTED, now=NOW - 120, ttl=60))
    aimed = bearer(make_status_token(HOSTED, now=NOW, target=OTHER.public_key))  # not caller == target
    good = make_status_token(HOSTED, now=NOW)
    tampered = bytearray(good)
    tampered[-1] ^= 1
    for header in (other, expired, aimed, bearer(bytes(tampered)), "Bearer abc", "Peerbox !!!", "Peerbox",
                   "Peerbox " + base64.urlsafe_b64encode(b"x" * 5000).decode()):
        access = decide_access("192.0.2.7:4000", header, hosts=hosts, now=NOW)
        assert access.verdict is Verdict.REFUSED and access.message, header[:40]


def test_a_token_cannot_be_long_lived_and_local_can_be_made_to_need_one() -> None:
    try:
        make_status_token(HOSTED, now=NOW, ttl=MAX_TOKEN_WINDOW + 1)
    except EnvelopeError as exc:
        assert exc.kind == "bad_field"
    else:
        raise AssertionError("a token over the window was signed")
    strict = decide_access("127.0.0.1:1", None, hosts=hosts, now=NOW, trust_local=False)
    assert strict.verdict is Verdict.REFUSED


def test_readiness_says_ready_or_names_what_waits() -> None:
    assert Readiness().response().status == 200 and Readiness().response().body == b"ready\n"
    resp = Readiness({"bob": "its process is down (restarting)"}).response()
    assert resp.status == 503 and resp.body == b"not ready: bob: its process is down (restarting)\n"
