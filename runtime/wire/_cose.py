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
:mod:`peerbox.wire._cbor_strict` (no tags, no indefinite lengths, no duplicate
keys, deterministic encoding re-checked, depth/size/count limits). It does
not check the signature: the key to check it with is usually a field of the
payload (``caller``, ``iss``), so :meth:`Sign1.verify` does that next. The
signature is always checked over the bytes as received, never re-encoded.

:func:`scan1` is the cheap half, for checking a signature *before* paying for
the strict decoding (a server facing unauthenticated senders): a walk over the
heads of the outer array only (a constant number of data items, whatever the
size), refusing what :func:`decode1` refuses there with the same kinds, and a
:class:`RawSign1` whose :meth:`~RawSign1.verify` checks the signature over the
``Sig_structure`` built from the raw payload slice. :func:`find_bstr_field`
finds one byte-string field of a deterministically encoded payload map by a
bounded skip-scan (jumping over values by their length heads), for a signer
key named in the payload. Neither decodes or allocates anything from a length
the input claims before checking it against the bytes present.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from ._cbor_strict import ALLOWED_TAG, DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE, EnvelopeError, dumps, loads
from ._identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, InvalidPublicKey, KeyPair, validate_public_key, verify

__all__ = [
    "EnvelopeError",
    "Sign1",
    "sign1",
    "sign1_encoded",
    "decode1",
    "sig_structure",
    "PROTECTED_EDDSA",
    "ALG_EDDSA",
    "HEADER_ALG",
    "HEADER_KID",
    "COSE_SIGN1_TAG",
    "RawSign1",
    "scan1",
    "find_bstr_field",
    "MAX_HEADER_ITEMS",
]

COSE_SIGN1_TAG = ALLOWED_TAG
HEADER_ALG = 1
HEADER_KID = 4
ALG_EDDSA = -8
#: The protected header of every peerbox COSE_Sign1: the bytes of ``{1: -8}``.
PROTECTED_EDDSA = dumps({HEADER_ALG: ALG_EDDSA})


#: The strict decoding of a protected header other than ``{1: -8}`` (only to say what is wrong
#: with it) stops after this many data items: a bounded cost before any signature is checked.
MAX_HEADER_ITEMS = 64
#: The start of every peerbox Sig_structure: ``[`` ``"Signature1"``, the protected header, ``h''``.
_SIG1_PREFIX = b"\x84" + dumps("Signature1") + dumps(PROTECTED_EDDSA) + b"\x40"
#: The start of every COSE_Sign1 :func:`sign1` writes: tag 18, an array of 4, the protected
#: header, ``{4:`` and the head of the 32-byte kid.
_SIGN1_START = b"\xd2\x84" + dumps(PROTECTED_EDDSA) + b"\xa1\x04\x58\x20"
_SIGNATURE_HEAD = b"\x58\x40"


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The bytes a COSE_Sign1 signature covers (RFC 9052 §4.4), in deterministic CBOR.

    peerbox's own case (protected ``{1: -8}``, no external data) is one concatenation.
    """
    if protected == PROTECTED_EDDSA and not external_aad:
        return b"".join((_SIG1_PREFIX, _bstr_head(len(payload)), payload))
    return dumps(["Signature1", protected, external_aad, payload])


def _check_protected(protected: bytes) -> None:
    """Refuse a protected header other than exactly ``{1: -8}`` (``malformed``, or the kind of
    its own decoding error); the decoding is bounded by :data:`MAX_HEADER_ITEMS`."""
    if protected == PROTECTED_EDDSA:
        return
    try:
        header = loads(protected, max_depth=2, max_items=MAX_HEADER_ITEMS)
    except EnvelopeError as exc:
        raise EnvelopeError(exc.kind, f"protected header: {exc.message}") from exc
    raise EnvelopeError(
        "malformed", f"the protected header must be exactly {{1: -8}} (alg EdDSA), got {header!r:.100}"
    )


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
    return sign1_encoded(dumps(payload), key)


def sign1_encoded(payload_bytes: bytes, key: KeyPair) -> bytes:
    """:func:`sign1` of a payload given as its deterministic CBOR (the caller wrote it so)."""
    payload_head = _bstr_head(len(payload_bytes))
    signature = key.sign(b"".join((_SIG1_PREFIX, payload_head, payload_bytes)))
    # 18([h'a10127', {4: kid}, payload, signature]), written out: what dumps gives for that list
    return b"".join((_SIGN1_START, key.public_key, payload_head, payload_bytes, _SIGNATURE_HEAD, signature))


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
    _check_protected(protected)
    if not isinstance(unprotected, dict):
        raise EnvelopeError("malformed", "the unprotected header must be a map")
    extra = set(unprotected) - {HEADER_KID}
    if extra:
        raise EnvelopeError("malformed", f"unknown unprotected header labels {sorted(map(repr, extra))}")
    kid = unprotected.get(HEADER_KID)
    if kid is not None:
        if not isinstance(kid, bytes) or len(kid) != PUBLIC_KEY_SIZE:
            raise EnvelopeError("bad_key", f"kid must be a {PUBLIC_KEY_SIZE}-byte public key")
        _check_kid(kid)
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


def _check_kid(kid: bytes) -> None:
    try:
        validate_public_key(kid)
    except InvalidPublicKey as exc:
        raise EnvelopeError("bad_key", f"kid: {exc}") from exc


# ------------------------------------------------------------------ the raw fast path


def _fail(kind: str, message: str) -> NoReturn:
    raise EnvelopeError(kind, message)


def _head(data: bytes | memoryview, pos: int) -> tuple[int, int, int]:
    """``(major type, argument, position after the head)`` of the item at ``pos``.

    Refuses what the strict scanner refuses in a head, with its kinds:
    truncation and reserved values (``malformed``), indefinite lengths and
    non-shortest arguments (``not_canonical``). For major type 7 the
    argument is the additional information itself (the float bits are skipped).
    """
    if pos >= len(data):
        _fail("malformed", "truncated CBOR")
    ib = data[pos]
    major, ai = ib >> 5, ib & 31
    pos += 1
    if major == 7:
        if ai == 31:
            _fail("malformed", "unexpected 'break' outside an indefinite-length item")
        if ai in (25, 26, 27):
            size = 1 << (ai - 24)
            if pos + size > len(data):
                _fail("malformed", "truncated CBOR")
            return major, ai, pos + size
        if ai not in (20, 21, 22):
            _fail("malformed", "simple values other than false, true and null are not allowed")
        return major, ai, pos
    if ai < 24:
        return major, ai, pos
    if ai == 31:
        _fail("not_canonical", "indefinite-length item (deterministic CBOR forbids them)")
    if ai > 27:
        _fail("malformed", f"reserved additional information value {ai}")
    size = 1 << (ai - 24)
    if pos + size > len(data):
        _fail("malformed", "truncated CBOR")
    n = int.from_bytes(data[pos:pos + size], "big")
    if n < (24 if size == 1 else 1 << (4 * size)):
        _fail("not_canonical", "integer or length not in its shortest form")
    return major, n, pos + size


def _bstr(data: bytes | memoryview, pos: int, kind: str, what: str) -> tuple[int, int]:
    """The ``(start, end)`` of the byte string at ``pos``; ``kind``/``what`` if it is none."""
    major, n, start = _head(data, pos)
    if major != 2:
        _fail(kind, what)
    if n > len(data) - start:
        _fail("malformed", "string longer than the remaining input")
    return start, start + n


def _bstr_head(n: int) -> bytes:
    """The deterministic head of a byte string of ``n`` bytes."""
    if n < 24:
        return bytes((0x40 | n,))
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes((0x40 | ai,)) + n.to_bytes(size, "big")
    _fail("too_large", "byte string too long")  # pragma: no cover - beyond any input size


@dataclass(frozen=True)
class RawSign1:
    """A COSE_Sign1 whose outer heads :func:`scan1` checked; nothing inside the payload is decoded.

    ``payload`` is a view of the payload's bytes within the message (no
    copy); ``kid`` the unprotected key id (a validated public key) or ``None``.
    """

    kid: bytes | None
    payload: memoryview
    signature: bytes

    def to_be_signed(self) -> bytes:
        """The Sig_structure the signature must cover, from the raw payload slice (one copy)."""
        return b"".join((_SIG1_PREFIX, _bstr_head(len(self.payload)), self.payload))

    def verify(self, public_key: bytes) -> bool:
        """Whether the signature is ``public_key``'s over the payload as received.

        The same answer as :meth:`Sign1.verify` on the strict decoding of the
        same bytes. Costs one Ed25519 verification (SHA-512 over the payload:
        about 55 µs for a small message, 1–3 ms for 1 MiB, in C; PyNaCl
        releases the GIL for it). ``False`` for a key that can verify nothing.
        """
        try:
            return verify(public_key, self.to_be_signed(), self.signature)
        except InvalidPublicKey:
            return False


def scan1(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> RawSign1:
    """Check the outer structure of a tagged COSE_Sign1 in O(1) data items, without decoding the payload.

    The size, tag 18 (shortest form), an array of exactly 4 items, the
    protected header (exactly ``{1: -8}``), the unprotected header (empty or
    only ``kid``: a 32-byte acceptable public key), the payload (a byte
    string), a 64-byte signature, nothing after it; every head in shortest
    form and every length within the input. Raises :class:`EnvelopeError`
    with the kind :func:`decode1` gives for the same fault (``too_large``,
    ``bad_tag``, ``malformed``, ``not_canonical``, ``bad_key``,
    ``bad_signature``; an input with several faults may be reported by
    another of them). What it accepts, :func:`decode1` may still refuse:
    the payload is not looked at.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        _fail("malformed", f"expected bytes, not {type(data).__name__}")
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    if len(view) > max_size:
        _fail("too_large", f"{len(view)} bytes, at most {max_size}")
    if not len(view) or view[0] >> 5 != 6:
        _fail("bad_tag", "not a tagged COSE_Sign1 (tag 18 missing)")
    _, tag, pos = _head(view, 0)
    if tag != COSE_SIGN1_TAG:
        _fail("bad_tag", f"CBOR tag {tag} is not allowed here")
    major, count, pos = _head(view, pos)
    if major != 4 or count != 4:
        _fail("malformed", "a COSE_Sign1 is an array of 4 items")
    start, pos = _bstr(view, pos, "malformed", "the protected header must be a byte string")
    _check_protected(bytes(view[start:pos]))
    major, pairs, pos = _head(view, pos)
    if major != 5:
        _fail("malformed", "the unprotected header must be a map")
    kid = None
    if pairs > 1:
        _fail("malformed", "unknown unprotected header labels (only 4, kid, is allowed)")
    if pairs == 1:
        major, label, pos = _head(view, pos)
        if major != 0 or label != HEADER_KID:
            _fail("malformed", "unknown unprotected header labels (only 4, kid, is allowed)")
        major, n, _ = _head(view, pos)
        if major != 2 or n != PUBLIC_KEY_SIZE:
            _fail("bad_key", f"kid must be a {PUBLIC_KEY_SIZE}-byte public key")
        start, pos = _bstr(view, pos, "bad_key", "kid must be a byte string")
        kid = bytes(view[start:pos])
        _check_kid(kid)
    p_start, p_end = _bstr(view, pos, "malformed",
                           "the payload must be a byte string (detached payloads are refused)")
    pos = p_end
    major, n, _ = _head(view, pos)
    if major != 2 or n != SIGNATURE_SIZE:
        _fail("bad_signature", f"the signature must be {SIGNATURE_SIZE} bytes")
    start, pos = _bstr(view, pos, "bad_signature", f"the signature must be {SIGNATURE_SIZE} bytes")
    if pos != len(view):
        _fail("malformed", f"{len(view) - pos} trailing bytes after the CBOR item")
    return RawSign1(kid=kid, payload=view[p_start:p_end], signature=bytes(view[start:pos]))


def find_bstr_field(payload: bytes | memoryview, name: str, *, max_items: int = 64) -> bytes | None:
    """The byte-string value of text key ``name`` in a deterministically encoded CBOR map, or ``None``.

    A skip-scan, not a decoding: it walks the map's keys in order, jumping
    over each value by its length heads (a nested container adds its items
    to a counter; no recursion), and stops at ``name`` or at the first key
    that sorts after it (RFC 8949 §4.2.1: keys sorted bytewise by their
    encodings, so ``name`` cannot come later in a valid map). At most
    ``max_items`` data items are looked at, whatever their sizes: O(items),
    never O(bytes). ``None`` when ``name`` is absent (or the map is not in
    deterministic order: the strict decoding refuses that anyway).

    Raises :class:`EnvelopeError`: ``malformed`` (not a map, truncated, a
    key that is neither integer nor text, a bad simple value), ``bad_tag``,
    ``not_canonical`` (indefinite length, non-shortest head), ``bad_field``
    (``name`` is not a byte string; more than ``max_items`` items before it).
    """
    view = memoryview(payload).cast("B") if not isinstance(payload, bytes) else memoryview(payload)
    wanted = dumps(name)
    major, pairs, pos = _head(view, 0)
    if major != 5:
        _fail("malformed", "the payload must be a CBOR map")
    budget = max_items
    for _ in range(pairs):
        budget -= 1
        if budget < 0:
            _fail("bad_field", f"too many data items before the {name!r} field")
        key_start = pos
        major, n, pos = _head(view, pos)
        if major == 3:
            if n > len(view) - pos:
                _fail("malformed", "string longer than the remaining input")
            pos += n
            key = view[key_start:pos]
            if key == wanted:
                start, end = _bstr(view, pos, "bad_field", f"{name!r} must be a byte string")
                return bytes(view[start:end])
            if bytes(key[:len(wanted) + 1]) > wanted:
                return None
        elif major not in (0, 1):
            _fail("malformed", "map keys must be integers or text strings")
        pos, budget = _skip(view, pos, budget, name)
    return None


def _skip(view: memoryview, pos: int, budget: int, name: str) -> tuple[int, int]:
    """Skip one data item at ``pos``; returns the position after it and the budget left."""
    pending = 1
    while pending:
        budget -= 1
        if budget < 0:
            _fail("bad_field", f"too many data items before the {name!r} field")
        pending -= 1
        major, n, pos = _head(view, pos)
        if major in (2, 3):
            if n > len(view) - pos:
                _fail("malformed", "string longer than the remaining input")
            pos += n
        elif major == 4:
            pending += n
        elif major == 5:
            pending += 2 * n
        elif major == 6:
            _fail("bad_tag", f"CBOR tag {n} is not allowed here")
        if pending > len(view) - pos:
            _fail("malformed", "container claims more items than the input holds")
    return pos, budget
