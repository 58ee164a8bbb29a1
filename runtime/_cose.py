"""COSE_Sign1 (RFC 9052 §4.2) with EdDSA over Ed25519, strictly decoded.

The one signed container of peerbox: requests, replies and capability tokens
are all a tagged COSE_Sign1::

    18([ protected: bstr .cbor {1: -8},      ; alg: EdDSA, and nothing else
         unprotected: {? 4: bstr .size 32},  ; kid: the signer's public key
         payload: bstr .cbor {* tstr => any},
         signature: bstr .size 64 ])

signed over the ``Sig_structure`` ``["Signature1", protected, h'', payload]``
(RFC 9052 §4.4) in deterministic CBOR. Sans-IO: bytes in, :class:`Sign1` or
bytes out.

:func:`decode1` trusts nothing: the size first, then the outer structure
(tag 18 required and the only tag allowed, definite lengths, shortest forms),
then the protected header (exactly ``{1: -8}``), then the payload, decoded by
:mod:`peerbox._cbor_strict` (no tags, no indefinite lengths, no duplicate
keys, deterministic encoding re-checked, depth/size/count limits). It does
not check the signature: the key to check it with is usually a field of the
payload (``caller``, ``iss``), so :meth:`Sign1.verify` does that next. The
signature is always checked over the bytes as received, never re-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._cbor_strict import ALLOWED_TAG, DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE, EnvelopeError, dumps, loads
from ._identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, InvalidPublicKey, KeyPair, validate_public_key, verify

__all__ = [
    "EnvelopeError",
    "Sign1",
    "sign1",
    "decode1",
    "sig_structure",
    "PROTECTED_EDDSA",
    "ALG_EDDSA",
    "HEADER_ALG",
    "HEADER_KID",
    "COSE_SIGN1_TAG",
]

COSE_SIGN1_TAG = ALLOWED_TAG
HEADER_ALG = 1
HEADER_KID = 4
ALG_EDDSA = -8
#: The protected header of every peerbox COSE_Sign1: the bytes of ``{1: -8}``.
PROTECTED_EDDSA = dumps({HEADER_ALG: ALG_EDDSA})


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The bytes a COSE_Sign1 signature covers (RFC 9052 §4.4), in deterministic CBOR."""
    return dumps(["Signature1", protected, external_aad, payload])


@dataclass(frozen=True)
class Sign1:
    """A structurally valid COSE_Sign1 whose signature has not been checked yet.

    ``protected`` and ``payload_bytes`` are the exact bytes received (what the
    signature covers); ``payload`` is their strict decoding, a dict with text
    keys; ``kid`` is the unprotected key id (32 bytes) or ``None``.
    """

    protected: bytes
    kid: bytes | None
    payload_bytes: bytes
    payload: dict[str, Any]
    signature: bytes

    def to_be_signed(self) -> bytes:
        """The Sig_structure this message's signature must cover."""
        return sig_structure(self.protected, self.payload_bytes)

    def verify(self, public_key: bytes) -> bool:
        """Whether the signature is ``public_key``'s over the bytes as received.

        Returns ``False`` for a wrong signature or a key that is not an
        acceptable Ed25519 public key (small order, all zero, wrong size):
        such a key can verify nothing.
        """
        try:
            return verify(public_key, self.to_be_signed(), self.signature)
        except InvalidPublicKey:
            return False


def sign1(payload: dict[str, Any], key: KeyPair) -> bytes:
    """A tagged COSE_Sign1 of ``payload`` (deterministic CBOR) signed by ``key``.

    The unprotected header carries ``kid`` = ``key.public_key``. Raises
    :class:`EnvelopeError` (``bad_field``) if ``payload`` is not a dict with
    text keys or holds a value CBOR cannot carry.
    """
    if not isinstance(payload, dict) or not all(isinstance(k, str) for k in payload):
        raise EnvelopeError("bad_field", "a payload is a dict with str keys")
    payload_bytes = dumps(payload)
    signature = key.sign(sig_structure(PROTECTED_EDDSA, payload_bytes))
    body = dumps([PROTECTED_EDDSA, {HEADER_KID: key.public_key}, payload_bytes, signature])
    return b"\xd2" + body  # tag 18


def decode1(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE, max_depth: int = DEFAULT_MAX_DEPTH) -> Sign1:
    """Strictly decode a tagged COSE_Sign1 (see the module docstring); no signature check.

    Raises :class:`EnvelopeError` and nothing else: ``too_large`` (over
    ``max_size`` bytes or too many items), ``bad_tag`` (tag 18 missing, another
    tag outside, any tag inside the payload), ``too_deep`` (payload nesting
    beyond ``max_depth``), ``not_canonical``, ``malformed`` (wrong shape,
    protected header other than ``{1: -8}``, unknown header, payload not a map
    with text keys), ``bad_signature`` (not 64 bytes), ``bad_key`` (kid not a
    32-byte acceptable public key).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EnvelopeError("malformed", f"expected bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise EnvelopeError("too_large", f"{len(data)} bytes, at most {max_size}")
    if not data or data[0] >> 5 != 6:
        raise EnvelopeError("bad_tag", "not a tagged COSE_Sign1 (tag 18 missing)")
    outer = loads(data, max_size=max_size, max_depth=3, outer_tag=COSE_SIGN1_TAG)
    if not isinstance(outer, list) or len(outer) != 4:
        raise EnvelopeError("malformed", "a COSE_Sign1 is an array of 4 items")
    protected, unprotected, payload_bytes, signature = outer
    if not isinstance(protected, bytes):
        raise EnvelopeError("malformed", "the protected header must be a byte string")
    if protected != PROTECTED_EDDSA:
        try:
            header = loads(protected, max_depth=2)
        except EnvelopeError as exc:
            raise EnvelopeError(exc.kind, f"protected header: {exc.message}") from None
        raise EnvelopeError(
            "malformed", f"the protected header must be exactly {{1: -8}} (alg EdDSA), got {header!r:.100}"
        )
    if not isinstance(unprotected, dict):
        raise EnvelopeError("malformed", "the unprotected header must be a map")
    extra = set(unprotected) - {HEADER_KID}
    if extra:
        raise EnvelopeError("malformed", f"unknown unprotected header labels {sorted(map(repr, extra))}")
    kid = unprotected.get(HEADER_KID)
    if kid is not None:
        if not isinstance(kid, bytes) or len(kid) != PUBLIC_KEY_SIZE:
            raise EnvelopeError("bad_key", f"kid must be a {PUBLIC_KEY_SIZE}-byte public key")
        try:
            validate_public_key(kid)
        except InvalidPublicKey as exc:
            raise EnvelopeError("bad_key", f"kid: {exc}") from None
    if not isinstance(payload_bytes, bytes):
        raise EnvelopeError("malformed", "the payload must be a byte string (detached payloads are refused)")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise EnvelopeError("bad_signature", f"the signature must be {SIGNATURE_SIZE} bytes")
    payload = loads(payload_bytes, max_size=max_size, max_depth=max_depth)
    if not isinstance(payload, dict):
        raise EnvelopeError("malformed", "the payload must be a CBOR map")
    if not all(isinstance(k, str) for k in payload):
        raise EnvelopeError("malformed", "payload keys must be text strings")
    return Sign1(
        protected=protected, kid=kid, payload_bytes=payload_bytes, payload=payload, signature=signature
    )
