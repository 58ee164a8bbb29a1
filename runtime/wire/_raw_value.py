"""A reply's value given as CBOR bytes: checked to be one item, then signed as they are.

A worker's run hands over its result as the bytes the guest runtime wrote
(``peerbox.run.Result.value_cbor``): deterministic CBOR, the bytes
:func:`~peerbox.wire._cbor_strict.dumps` writes for the same value (the guest
runtime's encoder is tested to be equal to it). Decoding them to Python objects
and encoding those again cost more than the script on data-heavy runs, so
:func:`payload_with_value` writes the reply's payload around them instead.

The bytes come out of a sandbox whose memory the untrusted script shares,
so before they are signed :func:`check_value_cbor` proves the one property
the signed payload depends on: they are exactly one well-formed CBOR item
(no tag, definite lengths, no duplicate key, nested at most
:data:`VALUE_MAX_DEPTH` deep, nothing after it). Bytes that are several items,
or part of one, could otherwise move the payload's own fields (``caller``,
``req``) under the target's signature. That check is cbor2's native decoder,
whose objects are dropped. Canonical form is not re-checked here: the guest
runtime writes it by construction, and a reply that broke it would be refused
by the caller's strict decoder (``not_canonical``), never read as another value.
What the check refuses is not a verdict: the caller encodes the decoded value
the ordinary way (:func:`~peerbox.wire.make_reply` with ``value``), which
accepts it or says why not.
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

from ._cbor_native import REFUSE_EVERY_TAG
from ._cbor_strict import EnvelopeError, dumps

__all__ = ["VALUE_MAX_DEPTH", "check_value_cbor", "payload_with_value"]

#: The deepest nesting (containers) taken as bytes; deeper values go the ordinary way (the strict
#: encoder then refuses what a reply cannot carry, as it always has).
VALUE_MAX_DEPTH = 56


def _refuse_tag(decoder: object, tag: object) -> Any:
    raise ValueError("tag")


def check_value_cbor(data: bytes) -> None:
    """Raise :class:`EnvelopeError` (``bad_field``) unless ``data`` is exactly one well-formed CBOR
    item with no tags, no indefinite lengths, no duplicate map keys, at most
    :data:`VALUE_MAX_DEPTH` containers deep. Never crashes on any bytes (nesting is bounded
    before cbor2 recurses)."""
    if type(data) is not bytes:
        raise EnvelopeError("bad_field", f"value_cbor must be bytes, not {type(data).__name__}")
    stream = io.BytesIO(data)
    try:
        cbor2.CBORDecoder(stream, tag_hook=_refuse_tag, semantic_decoders=REFUSE_EVERY_TAG,
                          max_depth=VALUE_MAX_DEPTH - 1, allow_indefinite=False,
                          allow_duplicate_keys=False).decode()
    except Exception as exc:  # cbor2 on hostile bytes: its errors, ValueError, RecursionError...
        why = type(exc).__name__
        raise EnvelopeError("bad_field", f"the value's bytes are not one plain CBOR item ({why})") from exc
    if stream.tell() != len(data):
        raise EnvelopeError("bad_field", "the value's bytes hold more than one CBOR item")


def payload_with_value(payload: dict[str, Any], value_cbor: bytes) -> bytes:
    """The deterministic CBOR of ``payload`` (text keys, at most 23 entries) with ``value_cbor`` as its
    ``value`` entry, written as it is. The caller checked ``value_cbor`` (:func:`check_value_cbor`).

    A deterministic map is its head, then its entries sorted by their encoded keys, each entry
    written as :func:`~peerbox.wire._cbor_strict.dumps` writes it alone: so this is the bytes
    ``dumps`` gives for the payload with the decoded value in it.
    """
    entries = sorted((dumps(k), dumps(v)) for k, v in payload.items() if k != "value")
    entries.append((dumps("value"), value_cbor))
    entries.sort(key=lambda e: e[0])
    if len(entries) > 23:  # pragma: no cover - a reply has 10 entries
        raise EnvelopeError("bad_field", "a reply payload has at most 23 entries")
    return b"".join([bytes((0xA0 | len(entries),)), *(k + v for k, v in entries)])
