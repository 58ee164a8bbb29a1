"""Signed revocations sent to a worker: the ``peerbox/revoke`` envelope (sans-IO).

An issuer in a capability token's chain (or the peer the token is about)
tells that peer's worker to refuse the token, and everything delegated from
it, from now on. It is a COSE_Sign1 signed by the sender, posted to
``POST /v1/revoke``, whose payload is::

    {"v": 1, "typ": "peerbox/revoke",
     "caller": bstr(32), "target": bstr(32), "nonce": bstr(16..32), "iat": int, "exp": int,
     "token": bstr}                      ; the token, its chain embedded (at most 64 KiB)

It is checked like every request (:mod:`peerbox.wire._envelope`): size, outer
COSE and signature over the raw bytes first, then the strict payload,
``typ``, ``v``, fields, caller key, and with :func:`verify_revoke_request` the
target, time window and last the nonce (the same store as exec and call: a
revocation cannot be replayed). The token is carried as one byte string, so
the bounded skip-scan for a ``kid``-less envelope's signer never walks it;
whether it decodes, is about the target and names the sender as an issuer is
the target's business (:mod:`peerbox.trust`), not the envelope's. There are
no ``caps``: a revocation needs no capability, only a place in the chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ._call import open_signed
from ._caps import MAX_TOKEN_SIZE
from ._cose import sign1
from ._envelope import (bad_field, check_delivery, check_public_key, check_typ_version,
                        parse_addressing, payload_head, request_digest, require_field)
from ._identity import KeyPair
from ._nonces import ReplayGuard

__all__ = ["RevokeRequest", "TYP_REVOKE", "MAX_REVOKE_REQUEST", "make_revoke_request", "open_revoke_request",
           "verify_revoke_request"]

TYP_REVOKE = "peerbox/revoke"
#: The largest revocation: the largest token (64 KiB) and the envelope around it.
MAX_REVOKE_REQUEST = 80 << 10
_FIELDS = frozenset({"v", "typ", "caller", "target", "nonce", "iat", "exp", "token"})


@dataclass(frozen=True)
class RevokeRequest:
    """A checked revocation of ``token`` (its bytes as sent). ``data`` is the envelope as received."""

    caller: bytes
    target: bytes
    nonce: bytes
    iat: int
    exp: int
    token: bytes
    data: bytes = field(default=b"", repr=False)

    @property
    def digest(self) -> bytes:
        """SHA-256 of :attr:`data` (the ``req`` of the reply)."""
        return request_digest(self.data)


def _parse(payload: dict[str, Any]) -> RevokeRequest:
    check_typ_version(payload, TYP_REVOKE, _FIELDS)
    if "caps" in payload:  # parse_addressing would accept it; a revocation carries none
        raise bad_field("a revocation carries no 'caps'")
    caller, target, nonce, iat, exp, _caps = parse_addressing(payload)
    token = require_field(payload, "token")
    if type(token) is not bytes or not token:
        raise bad_field("'token' must be the capability token's bytes")
    if len(token) > MAX_TOKEN_SIZE:
        raise bad_field(f"'token' is {len(token)} bytes, a token is at most {MAX_TOKEN_SIZE}")
    return RevokeRequest(caller=caller, target=target, nonce=nonce, iat=iat, exp=exp, token=token)


def make_revoke_request(key: KeyPair, *, target: bytes, token: bytes, now: int, ttl: int = 300,
                        nonce: bytes | None = None) -> bytes:
    """A revocation from ``key`` telling ``target`` to refuse ``token`` (and its descendants).

    Valid ``ttl`` seconds from ``now``; ``nonce`` defaults to 16 fresh random
    bytes. Raises :class:`EnvelopeError` (``bad_field``/``bad_key``) for
    anything :func:`open_revoke_request` would refuse (an empty or oversized
    token, a bad target key).
    """
    payload = payload_head(key, TYP_REVOKE, target=target, now=now, ttl=ttl, nonce=nonce)
    payload["token"] = bytes(token) if isinstance(token, (bytearray, memoryview)) else token
    _parse(payload)
    check_public_key(target, "target")
    return sign1(payload, key)


def open_revoke_request(data: bytes, *, max_size: int = MAX_REVOKE_REQUEST, max_depth: int = 16,
                        preauthenticated: bytes | None = None) -> RevokeRequest:
    """Decode a revocation and check everything that needs no context: structure, fields, signature.

    ``preauthenticated`` as in :func:`peerbox.wire._call.open_call_request`.
    Does not check the target, time or nonce, nor the token itself. Raises
    :class:`EnvelopeError`.
    """
    req, _msg = open_signed(data, _parse, max_size=max_size, max_depth=max_depth,
                            preauthenticated=preauthenticated)
    return replace(req, data=bytes(data))


def verify_revoke_request(
    data: bytes,
    *,
    target: bytes,
    now: int,
    nonces: ReplayGuard | None,
    max_size: int = MAX_REVOKE_REQUEST,
    max_skew: int = 60,
    max_window: int = 3600,
    max_depth: int = 16,
) -> RevokeRequest:
    """:func:`open_revoke_request`, then target, time and (last) the nonce. ``nonces=None`` skips
    the replay check (tests and tools only). Raises :class:`EnvelopeError` (and
    :class:`~peerbox.wire._nonces.NonceStoreError` when the nonce database fails).
    """
    req = open_revoke_request(data, max_size=max_size, max_depth=max_depth)
    check_delivery(caller=req.caller, target=req.target, nonce=req.nonce, iat=req.iat, exp=req.exp,
                   expected_target=target, now=now, nonces=nonces, max_skew=max_skew, max_window=max_window)
    return req
