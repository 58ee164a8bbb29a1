"""``did:key`` names of Ed25519 keys, as text: base58btc, the multicodec prefix, the syntax.

A peer's id is its Ed25519 public key written as a ``did:key``
(https://w3c-ccg.github.io/did-method-key/): the multicodec varint of
``ed25519-pub`` (0xed, i.e. the bytes ``ed 01``) followed by the 32 key
bytes, in base58btc with the multibase prefix ``z``, so every id reads
``did:key:z6Mk…``.

This module is the crypto-free half of that rule: encoding and decoding,
and :func:`key_bytes_from_did`, which checks everything that can be checked
without elliptic-curve arithmetic (the exact ``did:key:z`` prefix, a bounded
length, only base58btc characters, exactly 34 decoded bytes starting with
``ed 01``). Whether the 32 bytes are an *acceptable* public key (on the
curve, not of small order) is decided where the crypto is, the identity
module of :mod:`peerbox.wire`, which builds on this one. A policy names
principals by did and only compares them with authenticated callers' dids,
so syntax is all it needs: a did that passes here but is no valid key can
never be a caller, so a rule naming it matches nobody.

Imports nothing from peerbox: policy, and anything else, may use it without
loading crypto.
"""

from __future__ import annotations

__all__ = [
    "DidSyntaxError",
    "b58encode",
    "b58decode",
    "did_from_key_bytes",
    "did_error",
    "key_bytes_from_did",
    "DID_KEY_PREFIX",
    "ED25519_PUB_MULTICODEC",
    "PUBLIC_KEY_SIZE",
    "MAX_DID_LENGTH",
]

#: Every did this module makes or accepts starts with this (``z`` = base58btc).
DID_KEY_PREFIX = "did:key:z"
#: The unsigned-varint multicodec code of ``ed25519-pub`` (0xed).
ED25519_PUB_MULTICODEC = b"\xed\x01"
#: Bytes in an Ed25519 public key.
PUBLIC_KEY_SIZE = 32
#: A real Ed25519 did:key is 56 characters; anything much longer is refused
#: before base58 decoding (whose cost grows with the square of the length).
MAX_DID_LENGTH = 64

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_MAX_B58_INPUT = 4096


class DidSyntaxError(ValueError):
    """A string that is not the ``did:key`` of 32 Ed25519 key bytes.

    ``reason`` is one of ``type``, ``length``, ``prefix``, ``alphabet``,
    ``multicodec`` (the same names as the identity module's ``InvalidDid``);
    the message quotes the did, cut to :data:`MAX_DID_LENGTH` characters.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def b58encode(data: bytes) -> str:
    """Encode bytes in base58 with the bitcoin alphabet (each leading zero byte is a ``1``)."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out: list[str] = []
    while n:
        n, r = divmod(n, 58)
        out.append(_ALPHABET[r])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Decode base58 (bitcoin alphabet); the inverse of :func:`b58encode`.

    Raises ``ValueError`` for a character outside the alphabet (``0``, ``O``,
    ``I``, ``l``, whitespace, non-ASCII...) or an input over 4096 characters
    (decoding cost is quadratic in the length).
    """
    if len(text) > _MAX_B58_INPUT:
        raise ValueError(f"base58 input too long ({len(text)} characters, at most {_MAX_B58_INPUT})")
    n = 0
    for pos, ch in enumerate(text):
        digit = _INDEX.get(ch)
        if digit is None:
            raise ValueError(f"invalid base58 character {ch!r} at position {pos}")
        n = n * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def did_from_key_bytes(key: bytes) -> str:
    """The ``did:key:z6Mk…`` spelling of 32 Ed25519 key bytes (not checked to be a valid key).

    Raises ``ValueError`` for anything but 32 bytes.
    """
    if len(key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(key)}")
    return DID_KEY_PREFIX + b58encode(ED25519_PUB_MULTICODEC + bytes(key))


def did_error(did: str, message: str, reason: str) -> DidSyntaxError:
    """A :class:`DidSyntaxError` quoting ``did`` (cut to :data:`MAX_DID_LENGTH` characters)."""
    shown = did if len(did) <= MAX_DID_LENGTH else did[:MAX_DID_LENGTH] + "…"
    return DidSyntaxError(f"invalid did {shown!r}: {message}", reason=reason)


def key_bytes_from_did(did: object) -> bytes:
    """The 32 key bytes a ``did:key`` spells, checking its syntax only.

    Raises :class:`DidSyntaxError` for anything else: not a string, longer
    than :data:`MAX_DID_LENGTH`, another did method or multibase, a
    fragment or query, characters outside base58btc, a key of another type
    (multicodec) or size. Only the canonical spelling decodes to 34 bytes
    with this prefix, so one key has exactly one did. Whether the bytes are
    an acceptable Ed25519 public key is not checked here (that needs the
    curve; see the module docstring).
    """
    if not isinstance(did, str):
        raise DidSyntaxError(f"a did must be a string, not {type(did).__name__}", reason="type")
    if len(did) > MAX_DID_LENGTH:
        raise did_error(did, f"too long ({len(did)} characters, at most {MAX_DID_LENGTH})", "length")
    if not did.startswith(DID_KEY_PREFIX):
        raise did_error(did, "expected 'did:key:z' followed by a base58btc Ed25519 key", "prefix")
    try:
        raw = b58decode(did[len(DID_KEY_PREFIX):])
    except ValueError as exc:
        raise did_error(did, str(exc), "alphabet") from exc
    if raw[:2] != ED25519_PUB_MULTICODEC:
        raise did_error(did, "not an Ed25519 key (multicodec prefix is not 0xed01)", "multicodec")
    if len(raw) != len(ED25519_PUB_MULTICODEC) + PUBLIC_KEY_SIZE:
        raise did_error(did, f"an Ed25519 key is {PUBLIC_KEY_SIZE} bytes, got {len(raw) - 2}", "length")
    return raw[2:]
