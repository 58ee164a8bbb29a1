"""The native fast paths of strict CBOR: cbor2's Rust decoder and encoder, made to prove what they do.

:mod:`peerbox.wire._cbor_strict` decodes and encodes deterministic CBOR
(RFC 8949 §4.2.1) exactly, in Python, at about 2 µs per data item. The
functions here do the same work with cbor2's native code plus one walk over
the Python value, and are *sound, not complete*: each either gives the exact
answer or declines (:func:`fast_loads` raises, :func:`fast_dumps` returns
``None``), and the exact code then decides, with its precise error. What
they decline is rare in peerbox's traffic (maps mixing text and integer keys,
floats cbor2 would encode differently, inputs longer than the item budget)
or hostile.

Why the decoding is sound (``tests/runtime/wire/test_cbor_fast.py`` checks
it differentially against the exact decoder):

* cbor2 looks every tag number up in ``semantic_decoders`` before its own
  decoders, and :data:`REFUSE_EVERY_TAG` answers each with a refusal: no tag
  becomes a value (no dates, big numbers, sets or shared references). cbor2
  also refuses indefinite lengths, duplicate keys, invalid UTF-8 and (before
  it goes deeper) nesting beyond ``max_depth``;
* :func:`_plain` refuses every value outside the data model (``undefined``,
  simple values), map keys other than text or integers, maps whose keys are
  not all text or all integers of one sign, keys out of bytewise order, and
  floats whose cbor2 encoding is not :func:`float_bytes`;
* cbor2's re-encoding must equal the input byte for byte, which leaves no
  room for a non-shortest head or float or a trailing byte: its canonical
  encoding when the value holds a float (the shortest float form), else its
  plain one (the same bytes: it writes maps in their order, checked above,
  and every head in shortest form). For keys of one major type and sign,
  cbor2's canonical order (length first, then bytewise) is the bytewise
  order of §4.2.1, so that encoding is
  :func:`~peerbox.wire._cbor_strict.dumps`'s.

cbor2's encoder recurses on the C stack (50,000 nested lists crash the
process), so it only ever sees values whose nesting a walk bounded first.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

import cbor2

__all__ = ["NotPlain", "REFUSE_EVERY_TAG", "FAST_MAX_DEPTH", "fast_loads", "fast_dumps", "float_bytes"]

#: Above this nesting limit the fast paths are not used.
FAST_MAX_DEPTH = 60
_SCALARS = frozenset({str, bytes, int, bool, type(None)})
_INT_LIMIT = 1 << 64


class NotPlain(Exception):
    """The fast path cannot vouch for this value or input: the exact code decides (and says why)."""


def _refuse_semantic(value: object, immutable: bool) -> NoReturn:
    raise NotPlain("tag")


class _RefuseEveryTag(Mapping[int, Callable[[object, bool], NoReturn]]):
    """cbor2's ``semantic_decoders``, looked up first for every tag number: each is refused."""

    def __getitem__(self, tag: int) -> Callable[[object, bool], NoReturn]:
        return _refuse_semantic

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[int]:
        return iter(())


REFUSE_EVERY_TAG = _RefuseEveryTag()


def float_bytes(x: float, out: bytearray) -> None:
    """Append ``x`` in its deterministic form: the shortest of half, single and double that keeps
    its value; NaN as ``f97e00``."""
    if math.isnan(x):
        out += b"\xf9\x7e\x00"
        return
    for fmt, ib in (("e", 0xF9), ("f", 0xFA)):
        try:
            packed = struct.pack(">" + fmt, x)
        except OverflowError:
            continue
        if struct.unpack(">" + fmt, packed)[0] == x:
            out.append(ib)
            out += packed
            return
    out.append(0xFB)
    out += struct.pack(">d", x)


def _float_ok(x: float) -> bool:
    """Whether cbor2's canonical encoding of ``x`` is :func:`float_bytes`'s."""
    ours = bytearray()
    float_bytes(x, ours)
    return bytes(ours) == cbor2.dumps(x, canonical=True)


def _str_keys_sorted(keys: Iterator[Any]) -> None:
    """Raise :class:`NotPlain` unless the keys are text in the bytewise order of their encodings.

    A text key's encoding is its length head, then its UTF-8 bytes; heads grow with the length and
    UTF-8 keeps code point order, so that order is (UTF-8 length, the string).
    """
    prev_n, prev = -1, ""
    for k in keys:
        if type(k) is not str:
            raise NotPlain("key")
        n = len(k) if k.isascii() else len(k.encode("utf-8", "surrogatepass"))
        if n < prev_n or (n == prev_n and k <= prev):
            raise NotPlain("order")
        prev_n, prev = n, k


def _int_keys_sorted(keys: Iterator[Any], negative: bool) -> None:
    """Raise :class:`NotPlain` unless the keys are integers of one sign in encoding order (ascending
    when unsigned; descending when negative, whose encoded argument is ``-1 - k``)."""
    prev: int | None = None
    for k in keys:
        if type(k) is not int or (k < 0) != negative:
            raise NotPlain("key")
        if prev is not None and (k >= prev if negative else k <= prev):
            raise NotPlain("order")
        prev = k


def _same_kind_keys(value: dict[Any, Any], check_order: bool) -> None:
    """Raise :class:`NotPlain` unless ``value``'s keys are all text or all integers of one sign
    (and, with ``check_order``, in bytewise order of their encodings)."""
    if not value:
        return
    first = next(iter(value))
    if type(first) is str:
        if check_order:
            _str_keys_sorted(iter(value))
        elif not all(type(k) is str for k in value):
            raise NotPlain("key")
    elif type(first) is int:
        if check_order:
            _int_keys_sorted(iter(value), first < 0)
        else:
            negative = first < 0
            for k in value:
                if type(k) is not int or (k < 0) != negative or not -_INT_LIMIT <= k < _INT_LIMIT:
                    raise NotPlain("key")
    else:
        raise NotPlain("key")


def _plain(value: Any, depth_left: int, decoded: bool) -> bool:
    """Raise :class:`NotPlain` unless ``value`` is a tree of the data model that strict CBOR encodes
    the way cbor2's canonical encoder does, with no container nested more than ``depth_left`` deep;
    return whether it holds a float.

    ``decoded``: ``value`` came from cbor2's decoder (lists and dicts only; keys must be in order,
    integers are in range); otherwise it is about to be encoded (tuples too; cbor2 sorts the keys;
    integers must fit in 64 bits, or cbor2 would write a big-number tag).
    """
    t = type(value)
    if t in _SCALARS:
        if t is int and not decoded and not -_INT_LIMIT <= value < _INT_LIMIT:
            raise NotPlain("int")
        return False
    if t is float:
        if not _float_ok(value):
            raise NotPlain("float")
        return True
    if depth_left <= 0:
        raise NotPlain("depth")
    if t is list or (t is tuple and not decoded):
        items: Any = value
    elif t is dict:
        _same_kind_keys(value, decoded)
        items = value.values()
    else:
        raise NotPlain("type")
    floats = False
    for item in items:
        ti = type(item)
        if ti not in _SCALARS or (ti is int and not decoded):
            floats = _plain(item, depth_left - 1, decoded) or floats
    return floats


def fast_loads(body: bytes, max_depth: int) -> Any:
    """The value of ``body`` (one CBOR item, no outer tag) if it is deterministic CBOR within
    ``max_depth`` levels of nesting; raises :class:`NotPlain` or cbor2's exceptions otherwise.

    The caller bounds the size and the item count (an input of at most ``max_items`` bytes
    cannot hold more items) and keeps ``max_depth`` at most :data:`FAST_MAX_DEPTH`.
    """
    value = cbor2.loads(body, semantic_decoders=REFUSE_EVERY_TAG, max_depth=max_depth,
                        allow_indefinite=False, allow_duplicate_keys=False)
    # Without floats, cbor2's plain encoder writes the same bytes as its canonical one (every map's
    # keys are already in order, as checked): it is half the cost, with no sorting.
    canonical = _plain(value, max_depth, True)
    if cbor2.dumps(value, canonical=canonical) != body:
        raise NotPlain("encoding")
    return value


def fast_dumps(obj: object) -> bytes | None:
    """``obj`` in deterministic CBOR by cbor2's encoder, or ``None`` if the exact encoder must decide.

    Takes exact ``None``/``bool``/``int`` (64-bit)/``float``/``str``/``bytes``/``list``/``tuple``/
    ``dict`` trees nested at most :data:`FAST_MAX_DEPTH` deep, whose maps have keys all text or all
    integers of one sign; anything else (subclasses, mixed keys, cycles, lone surrogates...) is the
    exact encoder's, which encodes it or says why not.
    """
    try:
        _plain(obj, FAST_MAX_DEPTH, False)
        return cbor2.dumps(obj, canonical=True)
    except Exception:  # not a verdict: the exact encoder gives it (or encodes what cbor2 would not)
        return None
