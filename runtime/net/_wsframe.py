"""The WebSocket transport's message format (sans-IO): request and answer frames, strict both ways.

One binary WebSocket message carries one request or one answer, each a
definite-length CBOR array (RFC 8949, deterministic encoding: shortest
heads, no indefinite lengths, no tags, nothing after the array)::

    request  [id, path, envelope]            id: uint < 2**53, path: text, envelope: bytes
    answer   [id, status, headers, body]     status: uint, headers: {text: text}, body: bytes

``id`` is chosen by the client and echoed in the answer; it need only be
unique among the client's requests in flight on that connection (2**53 so a
JavaScript client can use plain numbers). ``path`` is one of the four
envelope endpoints (``/v1/exec``, ``/v1/call``, ``/v1/logic``,
``/v1/revoke``); ``envelope`` the very COSE_Sign1 bytes an HTTP/2 client
POSTs. The answer's ``status`` and ``body`` are the HTTP/2 answer's;
``headers`` holds ``content-type`` and, when given, ``retry-after``.

The parsers are hand-written rather than a general CBOR decoder: the frames
have one fixed shape, so anything else (another shape, a non-shortest head,
an indefinite length, a tag, trailing bytes) is refused as :class:`FrameError`
without building any object but the fields themselves. The envelope inside
is decoded later, strictly, by the worker, exactly as over HTTP/2.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FrameError", "WsRequest", "WsAnswer", "ENVELOPE_PATHS", "MAX_ID", "FRAME_OVERHEAD",
           "encode_request", "decode_request", "encode_answer", "decode_answer", "WS_PATH"]

#: The HTTP path on which a worker accepts the WebSocket upgrade.
WS_PATH = "/v1/ws"
#: The paths a request frame may name (the worker's envelope endpoints).
ENVELOPE_PATHS = frozenset({"/v1/exec", "/v1/call", "/v1/logic", "/v1/revoke"})
#: The largest request id (JavaScript's largest safe integer + 1).
MAX_ID = 1 << 53
#: Bytes a request frame adds to its envelope, at most (array head, id, path, byte-string head).
FRAME_OVERHEAD = 1 + 9 + 1 + 32 + 9
#: At most this many headers in an answer frame (a worker sends two).
_MAX_HEADERS = 16


class FrameError(ValueError):
    """A message that is not a well-formed frame (the text says how); the connection is closed for it.

    Internal to the transport: the server closes with code 4400, the client
    turns it into a :class:`~peerbox.net.TransportError`.
    """


@dataclass(frozen=True, slots=True)
class WsRequest:
    """One request frame: the client's ``id``, the endpoint ``path``, the ``envelope`` bytes."""

    id: int
    path: str
    envelope: bytes


@dataclass(frozen=True, slots=True)
class WsAnswer:
    """One answer frame: the request's ``id``, HTTP ``status``, ``headers`` (lower-case names), ``body``."""

    id: int
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (lower case), or None."""
        return next((v for k, v in self.headers if k == name), None)


def _head(major: int, value: int) -> bytes:
    """The shortest CBOR head of ``major`` with argument ``value``."""
    if value < 24:
        return bytes((major << 5 | value,))
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes((major << 5 | extra,)) + value.to_bytes(size, "big")
    raise ValueError(f"{value} does not fit a CBOR head")


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _head(3, len(raw)) + raw


def encode_request(req_id: int, path: str, envelope: bytes) -> bytes:
    """The request frame ``[req_id, path, envelope]``. Raises ``ValueError`` for an id out of range."""
    if not 0 <= req_id < MAX_ID:
        raise ValueError(f"request id {req_id} out of range")
    return b"\x83" + _head(0, req_id) + _text(path) + _head(2, len(envelope)) + envelope


def encode_answer(req_id: int, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
    """The answer frame ``[req_id, status, headers, body]`` (headers in deterministic key order)."""
    items = sorted(((_text(k), _text(v)) for k, v in headers), key=lambda kv: kv[0])
    parts = [b"\x84", _head(0, req_id), _head(0, status), _head(5, len(items))]
    parts.extend(k + v for k, v in items)
    parts.append(_head(2, len(body)))
    parts.append(body)
    return b"".join(parts)


class _Reader:
    """A cursor over one frame; every method raises :class:`FrameError` on anything but the shape asked."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def head(self, major: int, what: str) -> int:
        data, pos = self.data, self.pos
        if pos >= len(data):
            raise FrameError(f"truncated frame: {what} missing")
        first = data[pos]
        if first >> 5 != major:
            raise FrameError(f"{what}: expected CBOR major type {major}, got {first >> 5}")
        info = first & 0x1F
        if info < 24:
            self.pos = pos + 1
            return info
        if info > 27:
            raise FrameError(f"{what}: indefinite or reserved length")
        size = 1 << (info - 24)
        if pos + 1 + size > len(data):
            raise FrameError(f"truncated frame: {what}")
        value = int.from_bytes(data[pos + 1:pos + 1 + size], "big")
        if value < (24 if size == 1 else 1 << (4 * size)):
            raise FrameError(f"{what}: not the shortest encoding")
        self.pos = pos + 1 + size
        return value

    def raw(self, major: int, what: str) -> bytes:
        length = self.head(major, what)
        end = self.pos + length
        if end > len(self.data):
            raise FrameError(f"truncated frame: {what}")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def text(self, what: str) -> str:
        try:
            return self.raw(3, what).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(f"{what}: invalid UTF-8") from exc

    def end(self) -> None:
        if self.pos != len(self.data):
            raise FrameError("trailing bytes after the frame")


def decode_request(data: bytes) -> WsRequest:
    """Parse a request frame. Raises :class:`FrameError` for anything but ``[uint, text, bytes]``.

    The path is not checked against :data:`ENVELOPE_PATHS` here: a frame with
    an unknown path is well formed and gets a 404 answer under its id.
    """
    reader = _Reader(data)
    if reader.head(4, "request") != 3:
        raise FrameError("a request is an array of 3: [id, path, envelope]")
    req_id = reader.head(0, "id")
    if req_id >= MAX_ID:
        raise FrameError(f"id {req_id} out of range (at most 2**53 - 1)")
    path = reader.text("path")
    envelope = reader.raw(2, "envelope")
    reader.end()
    return WsRequest(req_id, path, envelope)


def decode_answer(data: bytes) -> WsAnswer:
    """Parse an answer frame.

    Raises :class:`FrameError` for anything but ``[uint, uint, {text: text}, bytes]``.
    """
    reader = _Reader(data)
    if reader.head(4, "answer") != 4:
        raise FrameError("an answer is an array of 4: [id, status, headers, body]")
    req_id = reader.head(0, "id")
    status = reader.head(0, "status")
    count = reader.head(5, "headers")
    if count > _MAX_HEADERS:
        raise FrameError(f"{count} headers (at most {_MAX_HEADERS})")
    headers = tuple((reader.text("header name").lower(), reader.text("header value")) for _ in range(count))
    body = reader.raw(2, "body")
    reader.end()
    return WsAnswer(req_id, status, headers, body)
