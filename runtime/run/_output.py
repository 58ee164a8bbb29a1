"""A run's result as the guest runtime wrote it: its CBOR bytes, and the value decoded only when asked for.

The output document of a successful run is ``{"ok": true, "log": [...],
"value": ...}`` with ``value`` its last entry (``wasm_guests/rt/cbor.c``), so
the value's bytes run from after the ``"value"`` key to the end of the
document. :func:`split_ok_output` finds them by reading the heads of the log
lines only; nothing else is decoded. The guest runtime writes them in
deterministic CBOR, byte for byte what :func:`peerbox.wire.dumps` writes for the
same value (``tests/runtime/run/test_result_cbor.py`` checks it with
hypothesis), so a worker signs them as they are
(:func:`peerbox.wire.make_reply` with ``value_cbor``).

:class:`Result` keeps those bytes and decodes :attr:`Result.value` on first
access, with cbor2's native decoder. The bytes come from the guest runtime,
but the guest's memory is the untrusted script's, so the decode treats them
as hostile (:func:`decode_value`): every tag refused (no dates, big numbers,
shared references or cycles can come out of it), definite lengths only, no
duplicate keys, nesting bounded before cbor2 recurses, nothing after the
item; then one walk checks what cbor2 would otherwise let through and a script
cannot produce: map keys that are not text, ``undefined`` and other simple
values. Any refusal is :class:`~peerbox.Error` (exit code 1: the guest
runtime broke the ABI), never a crash (``tests/runtime/run/test_result_cbor.py``
fuzzes it).
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

from .._errors import Error, map_exceptions
from ._values import _NoTags, _OUTPUT_ERRORS, _STRICT, _check_output, _reject_tag, decode_log

__all__ = ["Result", "split_ok_output", "decode_value"]

#: ``{"ok": true, "log": `` as the guest runtime writes it (a 3-entry map, keys in canonical order).
_OK_PREFIX = b"\xa3\x62ok\xf5\x63log"
#: The ``"value"`` key that follows the log.
_VALUE_KEY = b"\x65value"
_NO_TAGS = _NoTags()


def _head(data: bytes, pos: int, major: int) -> tuple[int, int]:
    """The argument of the CBOR head of major type ``major`` at ``pos`` and where it ends;
    (-1, -1) when there is no such head (another major type, indefinite, truncated)."""
    if pos >= len(data) or data[pos] >> 5 != major:
        return -1, -1
    info = data[pos] & 31
    if info < 24:
        return info, pos + 1
    if info > 27:
        return -1, -1
    end = pos + 1 + (1 << (info - 24))
    if end > len(data):
        return -1, -1
    return int.from_bytes(data[pos + 1:end], "big"), end


def split_ok_output(data: bytes) -> tuple[list[str], bytes] | None:
    """The log and the value's CBOR bytes of a successful run's output document; None for any
    other document (a failed run's, or one not in the guest runtime's layout: the caller
    decodes it whole). The log is decoded and checked (:func:`~peerbox.run._values.decode_log`,
    raises :class:`~peerbox.Error`); the value's bytes are not looked at."""
    if not data.startswith(_OK_PREFIX):
        return None
    start = len(_OK_PREFIX)
    count, pos = _head(data, start, 4)
    if count < 0:
        return None
    for _ in range(count):
        length, pos = _head(data, pos, 3)
        if length < 0:
            return None
        pos += length
    if data[pos:pos + len(_VALUE_KEY)] != _VALUE_KEY:
        return None
    log = decode_log(data[start:pos]) if count else []
    return log, data[pos + len(_VALUE_KEY):]


def decode_value(data: bytes) -> Any:
    """The script value encoded in ``data`` (a result's bytes, as the guest runtime wrote them).

    Raises :class:`~peerbox.Error` (a bug in peerbox) for anything but one
    CBOR item of script values filling ``data``: the checks and why are in the
    module docstring.
    """
    stream = io.BytesIO(data)
    with map_exceptions(_OUTPUT_ERRORS):
        decoder = cbor2.CBORDecoder(stream, tag_hook=_reject_tag, semantic_decoders=_NO_TAGS, **_STRICT)
        value = decoder.decode()
    if stream.tell() != len(data):
        raise Error("malformed run output from the guest runtime (a bug in peerbox): "
                    f"{len(data) - stream.tell()} bytes after the value")
    _check_output(value)
    return value


class _Pending:
    """The value of a :class:`Result` not decoded yet."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<not decoded>"


_PENDING: Any = _Pending()


class Result:
    """What a successful run produced.

    ``value``: the script's value as Python data, decoded from
    :attr:`value_cbor` on first access (see :func:`decode_value`; raises
    :class:`~peerbox.Error` if the guest runtime wrote something no script
    value encodes to); ``value_cbor``: the value as deterministic CBOR, the
    bytes the guest runtime wrote (``None`` for a Result made from a Python
    value); ``log``: the lines ``print``/``debug`` wrote; ``fuel_used``: fuel
    units consumed, when the run was metered (it had a ``Limits.fuel``), else
    None; ``wall_time``: seconds the run took, instantiation included;
    ``peak_memory``: bytes of guest memory the run used at its largest.

    ``value_cbor`` is not checked here (reading it costs nothing): what signs
    it checks it (:func:`peerbox.wire.make_reply`); a reader of untrusted
    bytes decodes them with a strict decoder.
    """

    __slots__ = ("_value", "value_cbor", "log", "fuel_used", "wall_time", "peak_memory")

    def __init__(self, value: Any = _PENDING, log: list[str] | None = None, fuel_used: int | None = None,
                 wall_time: float = 0.0, peak_memory: int = 0, *, value_cbor: bytes | None = None) -> None:
        if value is _PENDING and value_cbor is None:
            raise TypeError("a Result needs a value or its value_cbor")
        self._value = value
        self.value_cbor = value_cbor
        self.log = [] if log is None else log
        self.fuel_used = fuel_used
        self.wall_time = wall_time
        self.peak_memory = peak_memory

    @property
    def value(self) -> Any:
        """The script's value as Python data (decoded once, on first access)."""
        if self._value is _PENDING:
            assert self.value_cbor is not None
            self._value = decode_value(self.value_cbor)
        return self._value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        return (self.value, self.log, self.fuel_used, self.wall_time, self.peak_memory) == (
            other.value, other.log, other.fuel_used, other.wall_time, other.peak_memory)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Result(value={self._value!r}, log={self.log!r}, fuel_used={self.fuel_used!r}, "
                f"wall_time={self.wall_time!r}, peak_memory={self.peak_memory!r})")
