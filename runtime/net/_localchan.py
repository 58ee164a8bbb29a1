"""The local channel between isolated mode's router and a peer's child: length-prefixed frames on a stream.

Isolated mode (:mod:`peerbox.net._isolated`) forwards each pre-checked
request to its peer's child process over one Unix-domain stream socket (a
``socketpair`` whose child end the child inherits: no path, no permission to
set, no one else can connect), not over a second HTTP/2 connection. Many
requests are in flight at once on it, told apart by a request id.

Every frame is ``u32 length`` (big-endian, of what follows) then::

    u32 id, u8 kind, payload
    kind 1, REQUEST  (router -> child): u8 method length, u16 path length, method, path, headers, body
    kind 2, RESPONSE (child -> router): u16 status, headers, body
    kind 3, HELLO    (child -> router, first, id 0): empty; the child is ready to take requests
    headers: u8 count, then per header u8 name length, u16 value length, name, value (latin-1)

The body is the rest of the frame. A frame longer than the reader's
``max_frame`` is refused as soon as its length prefix arrives (nothing of it
is buffered); any other inconsistency (a length running past the frame, an
unknown kind, a kind the reading side does not expect) is a
:class:`FrameError`. Either is a fault of the other side: the stream cannot
be trusted after it, so the side that reads it closes the channel.

Three layers, the first sans-IO:

* :class:`FrameDecoder` (bytes in, frames out), :func:`encode_request`,
  :func:`encode_response`, :func:`encode_hello`;
* :class:`ChannelClient`, the router's end: :meth:`~ChannelClient.request`
  sends a frame and waits (up to a deadline) for the answer with its id;
  :meth:`~ChannelClient.run` reads answers until the child's end closes;
* :class:`ChannelServer`, the child's end: runs an HTTP app
  (:data:`~peerbox.net._http.App`) on each request frame, concurrently, and
  writes each answer as soon as it is ready.

Writes are coalesced: frames queued while the writer task was waking up or
sending go out in one ``send_all`` (one system call per loop pass under load).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from .._errors import Error, ExceptionMapping, map_exceptions
from ._endpoints import RETRY_LATER, error_response
from ._http import App, HttpRequest, HttpResponse, ServerLimits
from ._io_errors import STREAM_ERRORS

__all__ = ["ChannelError", "ChannelClosed", "ChannelTimeout", "ChannelBusy", "FrameError",
           "RequestFrame", "ResponseFrame", "FrameDecoder", "encode_request", "encode_response",
           "encode_hello", "ChannelClient", "ChannelServer", "FRAME_SLACK", "VERIFIED_SIGNER"]

REQUEST, RESPONSE, HELLO = 1, 2, 3
#: The request header in which the router tells its child the key whose signature over these very
#: bytes it has verified (hex): the child does not verify it again. Only the router writes frames
#: on a child's channel (a socketpair no one else holds), so the child can take its word.
VERIFIED_SIGNER = "peerbox-verified-signer"
#: What a frame may hold beyond its body: id, kind, method, path, headers (generous).
FRAME_SLACK = 64 << 10
_PREFIX = struct.Struct(">I")
_HEAD = struct.Struct(">IB")          # id, kind
_REQ = struct.Struct(">BH")           # method length, path length
_STATUS = struct.Struct(">H")
_HDR = struct.Struct(">BH")           # name length, value length
_RECV = 1 << 16


class ChannelError(Error):
    """A request over the local channel got no answer (the router answers 503 ``unavailable``).

    Never ends a command: the router turns it into an HTTP answer, so its
    exit code is the transport's (7) only for the record.
    """

    exit_code = 7


class ChannelClosed(ChannelError):
    """The channel is closed (the child exited or was killed, or the router is stopping)."""


class ChannelTimeout(ChannelError):
    """No answer came within the request's deadline (the child is stuck or overloaded)."""


class ChannelBusy(ChannelError):
    """Too many requests in flight, or too many bytes waiting to be written, on this channel."""


class FrameError(ChannelError):
    """A frame that breaks the format: too long, truncated, inconsistent, or of an unexpected kind."""


@dataclass(frozen=True, slots=True)
class RequestFrame:
    """A request for the child: what its app needs of the HTTP request."""

    id: int
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class ResponseFrame:
    """The child's answer to the request with the same ``id``."""

    id: int
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True, slots=True)
class Hello:
    """The child is ready."""

    id: int = 0


Frame = RequestFrame | ResponseFrame | Hello


# ------------------------------------------------------------------ the format (sans-IO)


def _headers(headers: tuple[tuple[str, str], ...]) -> bytes:
    if len(headers) > 255:
        raise FrameError(f"{len(headers)} headers: at most 255 fit in a frame")
    parts = [bytes((len(headers),))]
    for name, value in headers:
        n, v = name.encode("latin-1"), value.encode("latin-1")
        if len(n) > 255 or len(v) > 65535:
            raise FrameError(f"header {name[:40]!r} is too long for a frame")
        parts += (_HDR.pack(len(n), len(v)), n, v)
    return b"".join(parts)


def _frame(rid: int, kind: int, head: bytes, body: bytes, max_frame: int) -> bytes:
    size = _HEAD.size + len(head) + len(body)
    if size > max_frame:
        raise FrameError(f"a frame of {size} bytes is over the limit of {max_frame}")
    return b"".join((_PREFIX.pack(size), _HEAD.pack(rid, kind), head, body))


def encode_request(rid: int, method: str, path: str, headers: tuple[tuple[str, str], ...], body: bytes,
                   *, max_frame: int) -> bytes:
    """One REQUEST frame. Raises :class:`FrameError` if it is over ``max_frame`` or a field is too long."""
    m, p = method.encode("latin-1"), path.encode("latin-1")
    if len(m) > 255 or len(p) > 65535:
        raise FrameError("the method or path is too long for a frame")
    return _frame(rid, REQUEST, b"".join((_REQ.pack(len(m), len(p)), m, p, _headers(headers))), body,
                  max_frame)


def encode_response(rid: int, status: int, headers: tuple[tuple[str, str], ...], body: bytes,
                    *, max_frame: int) -> bytes:
    """One RESPONSE frame. Raises :class:`FrameError` if it would be over ``max_frame``."""
    if not 100 <= status <= 999:
        raise FrameError(f"status {status} is not an HTTP status")
    return _frame(rid, RESPONSE, _STATUS.pack(status) + _headers(headers), body, max_frame)


def encode_hello() -> bytes:
    """The HELLO frame a child sends once it is ready."""
    return _PREFIX.pack(_HEAD.size) + _HEAD.pack(0, HELLO)


class FrameDecoder:
    """Bytes in, frames out; no I/O. ``feed`` as data arrives, ``eof`` when the stream ends.

    ``max_frame`` bounds one frame (after its 4-byte length): a longer one is
    refused on its prefix, so at most ``max_frame + 4`` bytes are ever buffered.
    """

    def __init__(self, *, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._need = -1  # the length of the frame being received, -1 before its prefix

    def feed(self, data: bytes | bytearray) -> list[Frame]:
        """The frames ``data`` completes, in order. Raises :class:`FrameError` for a bad frame."""
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        while True:
            if self._need < 0:
                if len(buf) - pos < _PREFIX.size:
                    break
                (need,) = _PREFIX.unpack_from(buf, pos)
                if need > self.max_frame:
                    raise FrameError(f"a frame of {need} bytes is over the limit of {self.max_frame}")
                if need < _HEAD.size:
                    raise FrameError(f"a frame of {need} bytes is shorter than its header")
                self._need = need
                pos += _PREFIX.size
            if len(buf) - pos < self._need:
                break
            frames.append(_parse(bytes(buf[pos:pos + self._need])))
            pos += self._need
            self._need = -1
        if pos:
            del buf[:pos]
        return frames

    def eof(self) -> None:
        """The stream ended: raises :class:`FrameError` if it ended inside a frame."""
        if self._buf or self._need >= 0:
            raise FrameError("the channel ended inside a frame")


def _parse(frame: bytes) -> Frame:
    """One frame's content (after the length prefix). Raises :class:`FrameError`."""
    rid, kind = _HEAD.unpack_from(frame, 0)
    pos = _HEAD.size
    try:
        if kind == REQUEST:
            mlen, plen = _REQ.unpack_from(frame, pos)
            pos += _REQ.size
            method, path = frame[pos:pos + mlen], frame[pos + mlen:pos + mlen + plen]
            pos += mlen + plen
            if len(method) + len(path) != mlen + plen:
                raise FrameError("a request's method or path runs past its frame")
            headers, pos = _parse_headers(frame, pos)
            return RequestFrame(rid, method.decode("latin-1"), path.decode("latin-1"), headers, frame[pos:])
        if kind == RESPONSE:
            (status,) = _STATUS.unpack_from(frame, pos)
            headers, pos = _parse_headers(frame, pos + _STATUS.size)
            return ResponseFrame(rid, status, headers, frame[pos:])
        if kind == HELLO and len(frame) == _HEAD.size:
            return Hello(rid)
    except struct.error as exc:
        raise FrameError("a field runs past its frame") from exc
    raise FrameError(f"a frame of unknown kind {kind} (or with a payload it cannot have)")


def _parse_headers(frame: bytes, pos: int) -> tuple[tuple[tuple[str, str], ...], int]:
    count = frame[pos] if pos < len(frame) else -1
    if count < 0:
        raise FrameError("a frame ends before its headers")
    pos += 1
    headers: list[tuple[str, str]] = []
    for _ in range(count):
        nlen, vlen = _HDR.unpack_from(frame, pos)
        pos += _HDR.size
        if pos + nlen + vlen > len(frame):
            raise FrameError("a header runs past its frame")
        headers.append((frame[pos:pos + nlen].decode("latin-1"), frame[pos + nlen:pos + nlen + vlen]
                        .decode("latin-1")))
        pos += nlen + vlen
    return tuple(headers), pos


# ------------------------------------------------------------------ the two ends (trio)


def _broken(exc: BaseException) -> ChannelClosed:
    return ChannelClosed(f"the channel broke: {exc}")


_STREAM_TABLE: ExceptionMapping = {cls: _broken for cls in STREAM_ERRORS}


@contextmanager
def _stream_errors() -> Iterator[None]:
    """The stream's failures (reset, closed) as :class:`ChannelClosed`: the boundary with trio's sockets."""
    with map_exceptions(_STREAM_TABLE):
        yield


class _Writer:
    """Frames queued without waiting, written by one task, coalesced into one ``send_all`` per pass."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffered = 0
        self._frames: list[bytes] = []
        self._wake = trio.Event()
        self._closing = False

    def push(self, frame: bytes) -> None:
        self._frames.append(frame)
        self.buffered += len(frame)
        self._wake.set()

    def finish(self) -> None:
        """Write what is queued, then return from :meth:`run`."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        """Write queued frames until :meth:`finish` (then return); raises :class:`ChannelClosed`."""
        while True:
            if not self._frames:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            frames, self._frames = self._frames, []
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            with _stream_errors():
                await self.stream.send_all(data)
            self.buffered -= len(data)


class _Pending:
    __slots__ = ("done", "answer")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.answer: ResponseFrame | ChannelError | None = None


class ChannelClient:
    """The router's end of a channel to one child: requests out, answers matched back by id.

    Run :meth:`run` in a task for the channel's life; it returns when the
    child closes its end, raises :class:`FrameError` when the child breaks
    the format (a child fault: the caller should kill the child), and fails
    every request in flight with :class:`ChannelClosed` either way.
    ``max_frame`` bounds an answer, ``max_request`` a request frame;
    ``max_in_flight`` requests and ``max_buffered`` bytes not yet written at
    most (beyond: :class:`ChannelBusy`, so a stuck child cannot make the
    router buffer without bound).
    """

    def __init__(self, stream: trio.abc.Stream, *, max_frame: int, max_request: int,
                 max_in_flight: int = 1024, max_buffered: int = 32 << 20) -> None:
        self.stream = stream
        self.max_request = max_request
        self.max_in_flight = max_in_flight
        self.max_buffered = max_buffered
        self._decoder = FrameDecoder(max_frame=max_frame)
        self._writer = _Writer(stream)
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._ready = trio.Event()
        self._settled = trio.Event()   # ready, or closed before it
        self.closed: ChannelError | None = None
        #: answers that came after their request had timed out (and were dropped)
        self.late = 0

    @property
    def in_flight(self) -> int:
        """Requests sent (or queued) and not yet answered, timed out or failed."""
        return len(self._pending)

    async def wait_ready(self) -> bool:
        """Wait for the child's HELLO: True, or False if the channel closed first."""
        await self._settled.wait()
        return self._ready.is_set()

    async def request(self, method: str, path: str, headers: tuple[tuple[str, str], ...], body: bytes,
                      timeout: float) -> ResponseFrame:
        """Send one request and wait up to ``timeout`` s for its answer.

        Raises :class:`ChannelClosed` (the channel closed before the answer),
        :class:`ChannelTimeout` (no answer in time: the request is forgotten
        and a late answer dropped), :class:`ChannelBusy` (too much in flight)
        or :class:`FrameError` (the request cannot be framed: over ``max_request``).
        """
        if self.closed is not None:
            raise ChannelClosed(str(self.closed))
        if not self._ready.is_set():
            raise ChannelClosed("the child is not ready")
        if len(self._pending) >= self.max_in_flight or self._writer.buffered > self.max_buffered:
            raise ChannelBusy(f"{len(self._pending)} requests in flight to the child")
        rid = self._next_id
        while rid in self._pending or rid == 0:
            rid = (rid + 1) & 0xFFFFFFFF
        self._next_id = (rid + 1) & 0xFFFFFFFF
        frame = encode_request(rid, method, path, headers, body, max_frame=self.max_request)
        slot = self._pending[rid] = _Pending()
        try:
            self._writer.push(frame)
            with trio.move_on_after(timeout):
                await slot.done.wait()
        finally:
            if self._pending.get(rid) is slot:
                del self._pending[rid]
        answer = slot.answer
        if answer is None:
            raise ChannelTimeout(f"no answer within {timeout:g} s")
        if isinstance(answer, ChannelError):
            raise answer
        return answer

    async def run(self) -> None:
        """Read answers until the child closes its end. Raises :class:`FrameError` for a broken frame.

        On return (or any exception, cancellation included) the channel and
        its stream are closed and every request in flight fails with :class:`ChannelClosed`.
        """
        reason: ChannelError = ChannelClosed("the channel was closed")
        fault: FrameError | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, nursery.cancel_scope)
                try:
                    reason = await self._read()
                except FrameError as exc:  # raised below, outside the nursery (no exception group)
                    fault, reason = exc, ChannelClosed(f"the child broke the channel's format: {exc}")
                nursery.cancel_scope.cancel()
        finally:
            self.close(reason)
            with trio.CancelScope(shield=True):
                await self.stream.aclose()
        if fault is not None:
            raise fault

    async def _write(self, scope: trio.CancelScope) -> None:
        try:
            await self._writer.run()
        except ChannelClosed:
            scope.cancel()  # the reader will not get more either: the child is gone

    async def _read(self) -> ChannelError:
        while True:
            try:
                with _stream_errors():
                    data = await self.stream.receive_some(_RECV)
            except ChannelClosed as exc:
                return exc
            if not data:
                try:
                    self._decoder.eof()
                except FrameError as exc:  # it died while writing (killed): a crash, not a format fault
                    return ChannelClosed(str(exc))
                return ChannelClosed("the child closed the channel")
            for frame in self._decoder.feed(data):
                if isinstance(frame, ResponseFrame) and self._ready.is_set():
                    slot = self._pending.pop(frame.id, None)
                    if slot is None:
                        self.late += 1
                        continue
                    slot.answer = frame
                    slot.done.set()
                elif isinstance(frame, Hello) and not self._ready.is_set():
                    self._ready.set()
                    self._settled.set()
                else:
                    raise FrameError(f"unexpected {type(frame).__name__} from the child")

    def close(self, reason: ChannelError | None = None) -> None:
        """Fail every request in flight with ``reason`` and refuse new ones. Idempotent.

        The stream itself is closed when :meth:`run` ends.
        """
        if self.closed is None:
            self.closed = reason or ChannelClosed("the channel was closed")
        self._settled.set()
        pending, self._pending = self._pending, {}
        for slot in pending.values():
            slot.answer = ChannelClosed(str(self.closed))
            slot.done.set()


class ChannelServer:
    """The child's end: runs ``app`` on each request frame, answers in any order as each is ready.

    :meth:`run` sends HELLO, then reads until the router closes its end (the
    supervisor is gone) or :meth:`stop` is called; after a stop, requests
    already received get up to ``grace`` s to be answered. ``max_frame``
    bounds a request (refused on its prefix: a router bug, the channel is
    closed), ``max_answer`` an answer frame: a larger answer is replaced by a
    ``502`` (the router could not take it). ``max_running`` app calls run at
    once and the others wait their turn in order (the default, 16, is what the
    HTTP/2 server lets one connection run: the app sees what it sees from a
    connection in shared mode); beyond ``max_in_flight`` running and
    waiting, a request is answered ``503`` at once.
    The app never raising is its contract; if it does (a bug), the request
    gets a ``500`` and the channel keeps serving.
    """

    def __init__(self, stream: trio.abc.Stream, app: App, *, max_frame: int, max_answer: int,
                 max_running: int = ServerLimits().max_inflight_per_conn, max_in_flight: int = 1024,
                 grace: float = 10.0) -> None:
        self.stream = stream
        self.app = app
        self._running = trio.Semaphore(max(1, max_running))  # FIFO: the first to wait starts first
        self.max_answer = max_answer
        self.max_in_flight = max_in_flight
        self.grace = grace
        self._decoder = FrameDecoder(max_frame=max_frame)
        self._writer = _Writer(stream)
        self._reading = trio.CancelScope()
        self.in_flight = 0

    def stop(self) -> None:
        """Stop taking requests; those received are answered within ``grace`` s, then :meth:`run` returns."""
        self._reading.cancel()

    async def run(self) -> None:
        """Serve until the router closes its end or :meth:`stop`, then close the stream.

        Raises :class:`FrameError` if the router breaks the format (a bug in the router).
        """
        self._writer.push(encode_hello())
        try:
            await self._serve()
        finally:
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _serve(self) -> None:
        fault: FrameError | None = None
        async with trio.open_nursery() as outer:
            outer.start_soon(self._write, outer.cancel_scope)
            async with trio.open_nursery() as handlers:
                gone = False
                with self._reading:
                    try:
                        gone = await self._read(handlers)
                    except FrameError as exc:  # raised below, outside the nurseries
                        fault, gone = exc, True
                if gone:  # nobody to answer (the supervisor is gone), or no trusting the stream
                    handlers.cancel_scope.cancel()
                else:
                    handlers.cancel_scope.deadline = trio.current_time() + self.grace
            if fault is not None:
                outer.cancel_scope.cancel()
            self._writer.finish()  # and give the last answers as long again to be written
            outer.cancel_scope.deadline = min(outer.cancel_scope.deadline, trio.current_time() + self.grace)
        if fault is not None:
            raise fault

    async def _write(self, scope: trio.CancelScope) -> None:
        try:
            await self._writer.run()
        except ChannelClosed:
            scope.cancel()

    async def _read(self, handlers: trio.Nursery) -> bool:
        """Read request frames and start their handlers; True when the router's end closed."""
        while True:
            try:
                with _stream_errors():
                    data = await self.stream.receive_some(_RECV)
            except ChannelClosed:
                return True
            if not data:
                return True
            for frame in self._decoder.feed(data):
                if not isinstance(frame, RequestFrame):
                    raise FrameError(f"unexpected {type(frame).__name__} from the router")
                if self.in_flight >= self.max_in_flight:
                    self._answer(frame.id, error_response(503, "busy", "too many requests in flight; retry "
                                                          "later", RETRY_LATER))
                    continue
                self.in_flight += 1
                handlers.start_soon(self._handle, frame)

    async def _handle(self, frame: RequestFrame) -> None:
        try:
            req = HttpRequest(method=frame.method, path=frame.path, headers=frame.headers, body=frame.body,
                              client="router", stream_id=frame.id, conn_id=0)
            try:
                async with self._running:
                    resp = await self.app(req)
            except Exception as exc:  # a bug in the app: answer 500, keep serving
                print(f"peerbox worker: internal error: {exc!r}", file=sys.stderr, flush=True)
                resp = error_response(500, "internal", "the worker failed to handle the request")
            self._answer(frame.id, resp)
        finally:
            self.in_flight -= 1

    def _answer(self, rid: int, resp: HttpResponse) -> None:
        try:
            data = encode_response(rid, resp.status, resp.headers, resp.body, max_frame=self.max_answer)
        except FrameError as exc:
            print(f"peerbox worker: an answer cannot be sent to the router: {exc}", file=sys.stderr,
                  flush=True)
            bad = error_response(502, "bad_gateway", f"the worker's answer is too large to forward: {exc}")
            data = encode_response(rid, bad.status, bad.headers, bad.body, max_frame=self.max_answer)
        self._writer.push(data)
