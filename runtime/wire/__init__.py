"""The wire: bytes, keys and signatures -- what crosses between peers, and how it is checked.

Everything here is a signed byte format and the code that makes and verifies
it, without sockets, peers' files or a sandbox. Where a request's bytes are
checked, in the order they are::

    _identity      Ed25519 keys and the curve checks of a ``did:key``, signatures (PyNaCl)
    _cbor_strict   the strict CBOR decoder and canonical encoder; EnvelopeError
    _cose          COSE_Sign1: sign, decode, the bounded pre-scan of unverified bytes
    _envelope      request envelopes (``peerbox/exec``): make, open, verify; the field checks
                   every envelope shares; ``check_delivery`` (target, time window, then the nonce)
    _reply         reply envelopes (``peerbox/reply``): make (a denial too), open, verify
    _call          the ``peerbox/call`` envelope: a published function, its arguments (``params``)
    _revoke        the ``peerbox/revoke`` envelope: a capability token a worker must refuse from now on
    _nonces        the replay store: a nonce is checked (and spent) in ``check_delivery``
    _caps          capability tokens: grant, delegate, verify a chain; the revocation list

Below: :mod:`peerbox.policy` (what a grant means, and the ``did:key`` syntax, which
is exported there and only there) and :mod:`peerbox._errors`.
Above: :mod:`peerbox.peer`, :mod:`peerbox.trust`, :mod:`peerbox.net`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:
    from ._identity import (IdentityError, InvalidDid, InvalidPublicKey, KeyPair, PUBLIC_KEY_SIZE,
        did_from_public_key, public_key_from_did, validate_public_key, verify as verify_signature)
    from ._cbor_strict import EnvelopeError, dumps as cbor_dumps, loads as cbor_loads
    from ._cose import Sign1, decode1, sign1
    from ._envelope import (Request, TYP_REQUEST, VERSION, make_request, open_request,
        verify_request, check_delivery, preauthenticate,
        bad_field, require_field, check_public_key, check_typ_version, parse_addressing, check_signer,
        parse_limits, MAX_EXEC_REQUEST, payload_head, request_target, request_digest)
    from ._reply import Reply, TYP_REPLY, make_reply, make_denial, open_reply, verify_reply
    from ._call import (CallRequest, TYP_CALL, MAX_CALL_REQUEST, make_call_request, open_call_request,
        verify_call_request)
    from ._revoke import (RevokeRequest, TYP_REVOKE, MAX_REVOKE_REQUEST, make_revoke_request,
        open_revoke_request, verify_revoke_request)
    from ._nonces import NonceStore, NonceStoreError, ReplayGuard
    from ._caps import (CapabilityError, Chain, Link, REVOCATION_FILE, RevocationList, decode_chain, delegate,
        grant, token_id, verify_chain)

__all__ = ["IdentityError", "InvalidDid", "InvalidPublicKey", "KeyPair", "PUBLIC_KEY_SIZE",
           "did_from_public_key", "public_key_from_did", "validate_public_key", "verify_signature",
           "EnvelopeError", "cbor_dumps", "cbor_loads", "Sign1", "decode1", "sign1", "Request", "Reply",
           "TYP_REQUEST", "TYP_REPLY", "VERSION", "make_request", "open_request", "verify_request",
           "make_reply", "make_denial", "open_reply", "verify_reply", "check_delivery", "preauthenticate",
           "bad_field", "require_field", "check_public_key", "check_typ_version", "parse_addressing",
           "check_signer", "parse_limits", "MAX_EXEC_REQUEST", "payload_head", "CallRequest", "TYP_CALL",
           "MAX_CALL_REQUEST", "request_target", "request_digest",
           "make_call_request",
           "open_call_request", "verify_call_request", "RevokeRequest", "TYP_REVOKE", "MAX_REVOKE_REQUEST",
           "make_revoke_request", "open_revoke_request", "verify_revoke_request", "NonceStore",
           "NonceStoreError", "ReplayGuard", "CapabilityError", "Chain", "Link",
           "REVOCATION_FILE", "RevocationList", "decode_chain", "delegate", "grant", "token_id",
           "verify_chain"]

__getattr__, __dir__ = attach(__name__, {
    "IdentityError": "._identity",
    "InvalidDid": "._identity",
    "InvalidPublicKey": "._identity",
    "KeyPair": "._identity",
    "PUBLIC_KEY_SIZE": "._identity",
    "did_from_public_key": "._identity",
    "public_key_from_did": "._identity",
    "validate_public_key": "._identity",
    "verify_signature": "._identity:verify",
    "EnvelopeError": "._cbor_strict",
    "cbor_dumps": "._cbor_strict:dumps",
    "cbor_loads": "._cbor_strict:loads",
    "Sign1": "._cose",
    "decode1": "._cose",
    "sign1": "._cose",
    "Request": "._envelope",
    "Reply": "._reply",
    "TYP_REQUEST": "._envelope",
    "TYP_REPLY": "._reply",
    "VERSION": "._envelope",
    "make_request": "._envelope",
    "open_request": "._envelope",
    "verify_request": "._envelope",
    "MAX_EXEC_REQUEST": "._envelope",
    "make_reply": "._reply",
    "make_denial": "._reply",
    "open_reply": "._reply",
    "verify_reply": "._reply",
    "check_delivery": "._envelope",
    "preauthenticate": "._envelope",
    "bad_field": "._envelope",
    "require_field": "._envelope",
    "check_public_key": "._envelope",
    "check_typ_version": "._envelope",
    "parse_addressing": "._envelope",
    "check_signer": "._envelope",
    "parse_limits": "._envelope",
    "payload_head": "._envelope",
    "request_digest": "._envelope",
    "request_target": "._envelope",
    "CallRequest": "._call",
    "TYP_CALL": "._call",
    "MAX_CALL_REQUEST": "._call",
    "make_call_request": "._call",
    "open_call_request": "._call",
    "verify_call_request": "._call",
    "RevokeRequest": "._revoke",
    "TYP_REVOKE": "._revoke",
    "MAX_REVOKE_REQUEST": "._revoke",
    "make_revoke_request": "._revoke",
    "open_revoke_request": "._revoke",
    "verify_revoke_request": "._revoke",
    "NonceStore": "._nonces",
    "NonceStoreError": "._nonces",
    "ReplayGuard": "._nonces",
    "CapabilityError": "._caps",
    "Chain": "._caps",
    "Link": "._caps",
    "REVOCATION_FILE": "._caps",
    "RevocationList": "._caps",
    "decode_chain": "._caps",
    "delegate": "._caps",
    "grant": "._caps",
    "token_id": "._caps",
    "verify_chain": "._caps",
})
