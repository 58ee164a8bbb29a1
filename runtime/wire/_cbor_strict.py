"""Strict CBOR: deterministic encoding and a decoder that trusts nothing.

Everything peerbox signs or verifies (envelopes, replies, capability tokens)
is CBOR in the *deterministic encoding* of RFC 8949 §4.2.1: definite lengths
only, the shortest form of every integer, length and float, and map keys
sorted by the bytewise order of their encodings. One value has exactly one
encoding, so "the bytes as received" and "the value we checked" can never
disagree.

:func:`dumps` produces that encoding for the small data model peerbox uses
(``int``, ``bytes``, ``str``, ``list``/``tuple``, ``dict``, ``bool``,
``None``, ``float``). cbor2's own ``canonical=True`` sorts map keys length
first (the older RFC 7049 rule), which differs from §4.2.1 for maps that mix
key types, so it is not used for encoding.

:func:`loads` decodes untrusted bytes exactly (:func:`_exact_loads`) in three steps:

1. a scan of the raw bytes written here (:func:`_scan`) that refuses every tag
   (cbor2 decodes tags such as regexes, big numbers and dates by default),
   indefinite lengths, non-minimal heads, ``undefined`` and simple values,
   map keys other than integers and text, a key repeated in one map (compared
   as encoded bytes, which the shortest-form rule makes one per value),
   nesting beyond ``max_depth`` and
   more than ``max_items`` data items — before anything is allocated from a
   length the input claims (each length is checked against the bytes left);
2. ``cbor2.loads`` with indefinite lengths and duplicate keys refused and a
   ``tag_hook`` that refuses any tag, as a second line of defence;
3. :func:`dumps` of the result must give back the input byte for byte, which
   rejects duplicate keys, wrong key order and non-shortest floats.

That exact decoder walks every data item in Python (about 2 µs an item).
Most inputs never reach it: :func:`~peerbox.wire._cbor_native.fast_loads` decodes with cbor2's native
decoder (every tag refused through ``semantic_decoders``, nesting bounded by
cbor2 before anything recurses), walks the value once (only
the data model above, map keys all text or all integers of one sign and in
bytewise order, floats cbor2 encodes as :func:`dumps` does) and requires
cbor2's canonical re-encoding to be the input byte for byte. It is sound, not
complete: it accepts a subset of what the exact decoder accepts, with the same
value (``tests/runtime/wire/test_cbor_fast.py`` checks this differentially);
anything else, and every input longer than ``max_items`` bytes, goes to the
exact decoder, so each refusal keeps its kind. A request payload costs about
a tenth of the exact path.

Every failure is an :class:`EnvelopeError` with a ``kind`` saying which rule
was broken; cbor2's exceptions are translated here and nowhere else, through
the table :data:`CBOR2_ERRORS` (:func:`peerbox._errors.map_exceptions`).
"""

from __future__ import annotations

from typing import Any, NoReturn

import cbor2

from .._errors import Error, ExceptionMapping, map_exceptions
from ._cbor_native import FAST_MAX_DEPTH, fast_dumps, fast_loads, float_bytes

__all__ = [
    "EnvelopeError",
    "dumps",
    "loads",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_MAX_SIZE",
    "ALLOWED_TAG",
    "CBOR2_ERRORS",
]

DEFAULT_MAX_SIZE = 1 << 20
DEFAULT_MAX_DEPTH = 16
DEFAULT_MAX_ITEMS = 1 << 16
#: COSE_Sign1 (RFC 9052 §4.2): the only tag peerbox ever accepts, and only outermost.
ALLOWED_TAG = 18


class EnvelopeError(Error):
    """Signed CBOR (an envelope, reply or capability) was refused.

    ``kind`` names the broken rule, one of ``malformed``, ``not_canonical``,
    ``bad_tag``, ``too_large``, ``too_deep``, ``bad_signature``, ``bad_key``,
    ``bad_field``, ``bad_version``, ``wrong_type``, ``wrong_target``,
    ``expired``, ``not_yet_valid``, ``window_too_long``, ``replay``,
    ``bad_reply`` (modules above add their own); ``message`` says what was
    wrong, never echoing large parts of the input.
    """

    exit_code = 2

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def _fail(kind: str, message: str) -> NoReturn:
    raise EnvelopeError(kind, message)


def _invalid_cbor(exc: BaseException) -> EnvelopeError:
    return EnvelopeError("malformed", f"invalid CBOR ({type(exc).__name__}: {str(exc)[:200]})")


#: What cbor2 may raise on hostile input, and what it becomes: ``malformed``. The scan before
#: it has refused every rule cbor2 would check with its own message (duplicate keys, tags,
#: indefinite lengths), so what is left is bytes cbor2 cannot decode (invalid UTF-8 ...);
#: anything else raised inside cbor2 on such bytes is a refusal too, not a crash.
CBOR2_ERRORS: ExceptionMapping = {cbor2.CBORError: _invalid_cbor, Exception: _invalid_cbor}


# ------------------------------------------------------------------ encoding


def _head(major: int, n: int, out: bytearray) -> None:
    mt = major << 5
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out += bytes((mt | 24, n))
    elif n < 0x10000:
        out.append(mt | 25)
        out += n.to_bytes(2, "big")
    elif n < 0x1_0000_0000:
        out.append(mt | 26)
        out += n.to_bytes(4, "big")
    elif n < 0x1_0000_0000_0000_0000:
        out.append(mt | 27)
        out += n.to_bytes(8, "big")
    else:
        _fail("bad_field", "integer out of the CBOR range (-2**64 .. 2**64-1)")


def _encode(obj: object, out: bytearray, depth: int) -> None:
    if depth > 64:
        _fail("too_deep", "value nested too deeply to encode")
    if obj is None:
        out.append(0xF6)
    elif obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif type(obj) is int:
        if obj >= 0:
            _head(0, obj, out)
        else:
            _head(1, -1 - obj, out)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj)
        _head(2, len(raw), out)
        out += raw
    elif isinstance(obj, str):
        try:
            raw = obj.encode("utf-8")
        except UnicodeEncodeError:
            _fail("bad_field", "text with lone surrogates cannot be encoded")
        _head(3, len(raw), out)
        out += raw
    elif isinstance(obj, (list, tuple)):
        _head(4, len(obj), out)
        for item in obj:
            _encode(item, out, depth + 1)
    elif isinstance(obj, dict):
        pairs: list[tuple[bytes, bytes]] = []
        for k, v in obj.items():
            if not (type(k) is int or isinstance(k, str)):
                _fail("bad_field", f"map keys must be int or str, not {type(k).__name__}")
            kb = bytearray()
            _encode(k, kb, depth + 1)
            vb = bytearray()
            _encode(v, vb, depth + 1)
            pairs.append((bytes(kb), bytes(vb)))
        pairs.sort(key=lambda p: p[0])
        _head(5, len(pairs), out)
        for kb2, vb2 in pairs:
            out += kb2
            out += vb2
    elif isinstance(obj, float):
        float_bytes(obj, out)
    else:
        _fail("bad_field", f"cannot encode a {type(obj).__name__} in CBOR")


def dumps(obj: object) -> bytes:
    """``obj`` in RFC 8949 §4.2.1 deterministic CBOR.

    Supports ``None``, ``bool``, ``int`` (within ±2**64), ``bytes``, ``str``,
    ``list``/``tuple``, ``dict`` (int or str keys, sorted bytewise by their
    encodings) and ``float`` (shortest of half/single/double that keeps the
    value; NaN as ``f97e00``). Raises :class:`EnvelopeError` (``bad_field``)
    for anything else: what cannot be encoded cannot be signed.

    Exact-type trees whose maps have keys all text or all integers of one sign
    (every envelope) are written by cbor2's encoder
    (:func:`~peerbox.wire._cbor_native.fast_dumps`: the same bytes, a tenth of
    the cost); the rest by the exact encoder here.
    """
    encoded = fast_dumps(obj)
    return encoded if encoded is not None else _exact_dumps(obj)


def _exact_dumps(obj: object) -> bytes:
    """:func:`dumps` in Python alone (the exact decoder checks with it, independently of cbor2)."""
    out = bytearray()
    _encode(obj, out, 0)
    return bytes(out)


# ------------------------------------------------------------------ scanning


class _Scanner:
    """A walk over raw CBOR bytes enforcing the rules in the module docstring."""

    __slots__ = ("data", "pos", "max_depth", "items_left", "outer_tag")

    def __init__(self, data: bytes, max_depth: int, max_items: int, outer_tag: int | None) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth
        self.items_left = max_items
        self.outer_tag = outer_tag

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            _fail("malformed", "truncated CBOR")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def _arg(self, ai: int) -> int:
        if ai < 24:
            return ai
        if ai == 31:
            _fail("not_canonical", "indefinite-length item (deterministic CBOR forbids them)")
        if ai > 27:
            _fail("malformed", f"reserved additional information value {ai}")
        size = 1 << (ai - 24)
        n = int.from_bytes(self._take(size), "big")
        if n < (24 if size == 1 else 1 << (4 * size)):
            _fail("not_canonical", "integer or length not in its shortest form")
        return n

    def item(self, depth: int, *, is_key: bool = False) -> None:
        self.items_left -= 1
        if self.items_left < 0:
            _fail("too_large", "too many CBOR data items")
        start = self.pos
        ib = self._take(1)[0]
        major, ai = ib >> 5, ib & 31
        if is_key and major not in (0, 1, 3):
            _fail("malformed", "map keys must be integers or text strings")
        if major == 7:
            if ai in (20, 21, 22):
                return
            if ai in (25, 26, 27):
                self._take(1 << (ai - 24))
                return
            if ai == 31:
                _fail("malformed", "unexpected 'break' outside an indefinite-length item")
            if ai == 23:
                _fail("malformed", "'undefined' is not allowed")
            _fail("malformed", "simple values other than false, true and null are not allowed")
        n = self._arg(ai)
        if major in (0, 1):
            return
        if major in (2, 3):
            if n > len(self.data) - self.pos:
                _fail("malformed", "string longer than the remaining input")
            self.pos += n
            return
        if major == 6:
            if depth == 0 and start == 0 and n == self.outer_tag:
                self.item(depth)
                return
            _fail("bad_tag", f"CBOR tag {n} is not allowed here")
        # arrays (4) and maps (5)
        if depth + 1 > self.max_depth:
            _fail("too_deep", f"nesting deeper than {self.max_depth} levels")
        count = n * 2 if major == 5 else n
        if count > len(self.data) - self.pos:
            _fail("malformed", "container claims more items than the input holds")
        if major == 4:
            for _ in range(n):
                self.item(depth + 1)
        else:
            keys: set[bytes] = set()
            for _ in range(n):
                key_start = self.pos
                self.item(depth + 1, is_key=True)
                key = self.data[key_start:self.pos]
                if key in keys:
                    _fail("not_canonical", "duplicate map key (deterministic CBOR forbids them)")
                keys.add(key)
                self.item(depth + 1)


def _refuse_tag(decoder: object, tag: object) -> NoReturn:
    raise EnvelopeError("bad_tag", "CBOR tags are not allowed here")


def _exact_loads(data: bytes, max_depth: int, max_items: int, outer_tag: int | None) -> Any:
    """The exact decoder: the scan, cbor2, and :func:`dumps` of the result (the module docstring)."""
    scanner = _Scanner(data, max_depth, max_items, outer_tag)
    scanner.item(0)
    if scanner.pos != len(data):
        _fail("malformed", f"{len(data) - scanner.pos} trailing bytes after the CBOR item")
    body = data
    if data[0] >> 5 == 6:
        # The scanner accepted exactly one outer tag: skip its head.
        ai = data[0] & 31
        body = data[1 + (0 if ai < 24 else 1 << (ai - 24)):]
    with map_exceptions(CBOR2_ERRORS):
        value = cbor2.loads(
            body,
            tag_hook=_refuse_tag,
            semantic_decoders={},
            max_depth=max_depth + 1,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    try:
        again = _exact_dumps(value)
    except EnvelopeError as exc:
        _fail("not_canonical", exc.message)
    if again != body:
        _fail(
            "not_canonical",
            "not in deterministic encoding (RFC 8949 §4.2.1): duplicate or unsorted map keys, "
            "or a float not in its shortest form",
        )
    return value


def _outer_body(data: bytes, outer_tag: int | None) -> tuple[bytes, bool]:
    """``data`` without the head of its one allowed outer tag, and whether the fast path may take it
    (a tag other than ``outer_tag`` in its shortest one-byte head is for the exact decoder)."""
    if data[0] >> 5 != 6:
        return data, True
    if outer_tag is not None and outer_tag < 24 and data[0] == 0xC0 | outer_tag:
        return data[1:], True
    return data, False


def loads(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
    outer_tag: int | None = None,
) -> Any:
    """Decode one deterministic-CBOR item that must fill ``data`` exactly.

    ``outer_tag``, if given, is the one tag allowed, and only around the whole
    item; the tag is then stripped and the tagged content returned. Raises
    :class:`EnvelopeError` — and nothing else — with kind ``too_large``
    (over ``max_size`` bytes or ``max_items`` items), ``too_deep``, ``bad_tag``,
    ``not_canonical`` (indefinite lengths, non-shortest forms, duplicate or
    unsorted keys) or ``malformed`` (truncated, trailing bytes, invalid UTF-8,
    ``undefined``/simple values, keys that are not int or text).

    Most inputs take the native path (:func:`~peerbox.wire._cbor_native.fast_loads`: cbor2's decoder,
    a walk over the value, cbor2's encoder); it is used only when the input
    holds at most ``max_items`` bytes (every item takes a byte, so the item
    budget holds without counting, and cbor2 allocates no more than the exact
    decoder would). Whatever it cannot vouch for, hostile input included, goes
    to the exact decoder, which accepts the same inputs and gives every refusal
    its kind.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        _fail("malformed", f"expected bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        _fail("too_large", f"{len(data)} bytes, at most {max_size}")
    if not data:
        _fail("malformed", "empty input")
    body, fast = _outer_body(data, outer_tag)
    if fast and len(data) <= max_items and 0 <= max_depth <= FAST_MAX_DEPTH and body:
        try:
            return fast_loads(body, max_depth)
        except Exception:  # not a verdict: the exact decoder gives it, with its kind
            pass
    return _exact_loads(data, max_depth, max_items, outer_tag)
