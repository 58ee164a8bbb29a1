"""A field's value as the bytes it has in a verified payload: a slice, no re-encoding.

A request's ``params`` reach the script as CBOR (see
:class:`peerbox.run.CborParams`). The strict decoder has already checked the
payload they sit in (deterministic CBOR, RFC 8949 §4.2.1: every head in
shortest form, map keys sorted bytewise by their encodings), so the bytes of
``params`` in the payload are exactly its deterministic encoding: handing
them on is the same as decoding them to Python objects and encoding them
again, without the two passes.

:func:`field_bytes` finds them without walking the value: every other field
of the map is encoded on its own (small values: keys, keys' numbers, the
script text once), the entries that sort before the field make up the
prefix of the payload and those after it the suffix; the field's bytes are
what lies between. Each of prefix and suffix is compared with the payload
byte for byte, and the result is only used when both match, so a payload
this reasoning does not fit (an encoder bug, a map with more than 23
entries) gets the field's own strict encoding instead: never wrong bytes,
at worst the cost of encoding the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._cbor_strict import dumps

__all__ = ["field_bytes"]


def field_bytes(payload_bytes: bytes, payload: Mapping[str, Any], name: str) -> bytes | None:
    """The bytes of ``payload[name]`` within ``payload_bytes`` (``None`` when the field is absent).

    ``payload`` must be the strict decoding of ``payload_bytes`` (a map with
    text keys, as :func:`~peerbox.wire._cose.decode1` returns it). Costs an
    encoding of the other fields and two comparisons, never a walk of the
    field's value. Raises :class:`~peerbox.wire.EnvelopeError` only where
    encoding the field itself would (it cannot for a decoded value).
    """
    if name not in payload:
        return None
    key = dumps(name)
    before: list[bytes] = []
    after: list[bytes] = []
    for k, v in payload.items():
        if k == name:
            continue
        encoded_key = dumps(k)
        (before if encoded_key < key else after).append(encoded_key + dumps(v))
    count = len(payload)
    if count > 23:  # not a one-byte map head: encode the field itself
        return dumps(payload[name])
    prefix = b"".join((bytes((0xA0 + count,)), *before, key))
    suffix = b"".join(after)
    end = len(payload_bytes) - len(suffix)
    if end > len(prefix) and payload_bytes.startswith(prefix) and payload_bytes.endswith(suffix):
        return payload_bytes[len(prefix):end]
    return dumps(payload[name])  # pragma: no cover - a strictly decoded payload always matches
