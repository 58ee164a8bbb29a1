"""Peer identities: Ed25519 key pairs, signature checks, and the ``did:key`` of a key.

A peer's id is its Ed25519 public key written as a ``did:key``
(https://w3c-ccg.github.io/did-method-key/), so every peerbox id reads
``did:key:z6Mk…``. This is the convention of UCAN and the decentralized-identity
world, so ids can be checked by tools nobody here wrote.

The *syntax* of a did:key (base58btc, the multicodec prefix, the exact
``did:key:z`` prefix, a bounded length, exactly 34 decoded bytes starting with
``ed 01``) is owned by :mod:`peerbox.policy`, which needs it without crypto
(``key_bytes_from_did``, ``did_from_key_bytes``, ``b58encode``...: import them
from there). This module adds only what needs the curve: a public key must be
a real point of the prime-order subgroup. The all-zero key and the eight
small-order points (and their non-canonical aliases) are refused by name: a
signature "by" such a key can be forged for many messages at once, so
accepting one would let anybody speak as that id. ``PUBLIC_KEY_SIZE`` is
policy's constant, exported here too because the key checks of the wire
formats are stated in it.

Secrets stay inside :class:`KeyPair`: its ``repr`` shows only the did, and the
seed leaves it only through :meth:`KeyPair.secret_seed`, which says what it is.
"""

from __future__ import annotations

import functools

import hmac
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.signing

from .._errors import UsageError
from ..policy import PUBLIC_KEY_SIZE, DidSyntaxError, did_error, did_from_key_bytes, key_bytes_from_did

# Not part of this module's surface (not in __all__): tests/policy/test_didkey.py still reads
# ``identity.b58encode``; remove this line when it uses peerbox.policy.b58encode (the only one).
from ..policy import b58encode as b58encode

__all__ = [
    "IdentityError",
    "InvalidDid",
    "InvalidPublicKey",
    "KeyPair",
    "did_from_public_key",
    "public_key_from_did",
    "validate_public_key",
    "verify",
    "PUBLIC_KEY_SIZE",
    "SEED_SIZE",
    "SIGNATURE_SIZE",
    "SMALL_ORDER_POINTS",
]

SEED_SIZE = 32
SIGNATURE_SIZE = 64

#: The eight points of order 1, 2, 4 or 8 on edwards25519, canonically encoded
#: (little-endian y, top bit = sign of x). Every one of them is refused as a
#: public key.
SMALL_ORDER_POINTS: tuple[bytes, ...] = tuple(
    bytes.fromhex(h)
    for h in (
        # order 1: the identity (0, 1)
        "0100000000000000000000000000000000000000000000000000000000000000",
        # order 2: (0, -1)
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        # order 4: (±sqrt(-1), 0); the first one is the all-zero key
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        # order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    )
)

_P = 2**255 - 19
# The y coordinates of the small-order points, plus the non-canonical
# encodings y = p (≡ 0) and y = p + 1 (≡ 1) of two of them. Compared with the
# sign bit masked off, as libsodium does, so "negative zero" x encodings match too.
_SMALL_ORDER_Y = frozenset(
    {int.from_bytes(p, "little") & ((1 << 255) - 1) for p in SMALL_ORDER_POINTS} | {_P, _P + 1}
)


class IdentityError(UsageError):
    """A key or did failed validation. ``reason`` says why, without the input's secrets."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class InvalidPublicKey(IdentityError):
    """Bytes that are not an acceptable Ed25519 public key (wrong size, small order, off the curve)."""


class InvalidDid(IdentityError):
    """A string that is not a ``did:key`` of an acceptable Ed25519 public key."""


# ------------------------------------------------------------- keys and dids


@functools.lru_cache(maxsize=1024)
def _valid_point(key: bytes) -> bool:
    """libsodium's point check (~0.2 ms), cached: the same few keys come back on every request."""
    return bool(nacl.bindings.crypto_core_ed25519_is_valid_point(key))


def validate_public_key(public_key: bytes) -> bytes:
    """Return ``public_key`` as ``bytes`` if it is an acceptable Ed25519 public key.

    Refused (:class:`InvalidPublicKey`): anything but 32 bytes, the all-zero
    key, the small-order points in any encoding (see :data:`SMALL_ORDER_POINTS`),
    non-canonical encodings, points off the curve and points with a torsion
    component. Honest key generation never yields any of these; a peer that
    presents one is trying to make forgeable signatures look valid.
    """
    if not isinstance(public_key, (bytes, bytearray, memoryview)):
        raise InvalidPublicKey(
            f"a public key must be bytes, not {type(public_key).__name__}", reason="type"
        )
    key = bytes(public_key)
    if len(key) != PUBLIC_KEY_SIZE:
        raise InvalidPublicKey(
            f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(key)}", reason="length"
        )
    if not any(key):
        raise InvalidPublicKey("the all-zero public key is not allowed", reason="all_zero")
    if int.from_bytes(key, "little") & ((1 << 255) - 1) in _SMALL_ORDER_Y:
        raise InvalidPublicKey(
            "small-order Ed25519 public key (signatures by it can be forged)", reason="small_order"
        )
    if not _valid_point(key):
        raise InvalidPublicKey(
            "not a valid Ed25519 public key "
            "(off the curve, non-canonical or not in the prime-order subgroup)",
            reason="invalid_point",
        )
    return key


def did_from_public_key(public_key: bytes) -> str:
    """The ``did:key:z6Mk…`` of an Ed25519 public key. Raises :class:`InvalidPublicKey`."""
    return did_from_key_bytes(validate_public_key(public_key))


def public_key_from_did(did: str) -> bytes:
    """The 32-byte Ed25519 public key a ``did:key`` names.

    Raises :class:`InvalidDid` (``reason`` one of ``type``, ``prefix``,
    ``length``, ``alphabet``, ``multicodec``, ``all_zero``, ``small_order``,
    ``invalid_point``) for anything else: another did method or multibase, a
    fragment or query, characters outside base58btc, a key of another type or
    size, or a public key :func:`validate_public_key` refuses. Only the
    canonical spelling is accepted, so one key has exactly one did.
    """
    try:
        raw = key_bytes_from_did(did)
    except DidSyntaxError as exc:
        raise InvalidDid(str(exc), reason=exc.reason) from exc
    try:
        return validate_public_key(raw)
    except InvalidPublicKey as exc:
        raise InvalidDid(str(did_error(did, str(exc), exc.reason)), reason=exc.reason) from exc


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``.

    Returns ``False`` for a wrong or malformed signature; raises
    :class:`InvalidPublicKey` for a key :func:`validate_public_key` refuses
    (a caller usually wants to report that differently from a bad signature).
    """
    key = validate_public_key(public_key)
    if len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(key).verify(bytes(message), bytes(signature))
    except nacl.exceptions.BadSignatureError:
        return False
    return True


class KeyPair:
    """An Ed25519 key pair: the secret seed, its public key and did.

    Made by :meth:`generate` or :meth:`from_seed`. The secret never shows in
    ``repr``/``str``; :meth:`secret_seed` is the only way out (for writing the
    key file).
    """

    __slots__ = ("_signing_key", "public_key", "did")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key
        self.public_key: bytes = bytes(signing_key.verify_key)
        self.did: str = did_from_public_key(self.public_key)

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from the OS random source (libsodium's ``randombytes``)."""
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """The key pair of a 32-byte seed (RFC 8032 private key). Raises :class:`IdentityError`."""
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_SIZE:
            raise IdentityError(f"an Ed25519 seed is {SEED_SIZE} bytes", reason="length")
        return cls(nacl.signing.SigningKey(bytes(seed)))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached Ed25519 signature of ``message``."""
        return bytes(self._signing_key.sign(bytes(message)).signature)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``message``."""
        return verify(self.public_key, message, signature)

    @property
    def signing_key(self) -> nacl.signing.SigningKey:
        """The underlying pynacl key, for libraries that want one. It holds the secret."""
        return self._signing_key

    def secret_seed(self) -> bytes:
        """The 32-byte secret seed. Only for storing the key; never log or print it."""
        return bytes(self._signing_key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyPair):
            return NotImplemented
        return hmac.compare_digest(self.secret_seed(), other.secret_seed())

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"KeyPair(did={self.did!r})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("a KeyPair holds a secret key and cannot be pickled")
