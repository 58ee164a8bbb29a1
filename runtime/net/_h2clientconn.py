"""One client-side HTTP/2 connection and the requests in flight on it (:class:`_H2Conn`).

The connection half of :mod:`peerbox.net._h2client` (whose :class:`~peerbox.net._h2client.H2Transport`
opens, reuses and closes these): an h2 state machine, one reader task that
dispatches frames to the waiting requests, one writer task that flushes what h2
has to send (so a slow peer never blocks the reader) and one timer task that
fails each request at its deadline and resets its stream. :class:`Answer` is
what a request brings back.

Per call the connection does as little as it can: the call parks its own task
(:class:`_Parked`: trio's low-level park, no Event) and the reader reschedules
it directly when its stream ends; its HEADERS and DATA go out in one write; the
writer is woken only when h2 has bytes to send (not after every read); the
connection window taken by answers that ended is given back once per read; a
one-frame answer body is never copied. Failures are
:class:`~peerbox.net._client_errors.TransportError` (h2's refusals turned into
one here, trio's stream errors by :mod:`peerbox.net._io_errors`).
"""

from __future__ import annotations

import contextlib
import heapq
import math
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio

from .._errors import UsageError, map_exceptions
from ._client_errors import TransportError
from ._io_errors import transport_errors

__all__ = ["Answer"]

_READ_SIZE = 65536
_WINDOW = 1 << 24


@dataclass(frozen=True)
class Answer:
    """A worker's whole answer to one request: its status, content type, body and other headers.

    ``headers`` holds the response's regular headers (names in lower case,
    values decoded as latin-1), ``content-type`` among them.
    """

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        """The value of the first header called ``name`` (lower case), or None."""
        return next((v for k, v in self.headers if k == name), None)


class _Parked:
    """At most one task parked until :meth:`wake` (trio's low-level park: no Event per wait).

    A cancelled wait unparks itself; :meth:`wake` with nobody parked does nothing.
    """

    __slots__ = ("task",)

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None

    async def park(self) -> None:
        """Sleep until :meth:`wake` (or a cancellation, raised here)."""
        self.task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED

    def wake(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            trio.lowlevel.reschedule(task)


class _Pending(_Parked):
    """One request stream waiting for its response; the reader wakes its task when it is done."""

    __slots__ = ("done", "status", "content_type", "headers", "body", "error", "deadline", "timeout")

    def __init__(self, deadline: float, timeout: float) -> None:
        super().__init__()
        self.done = False
        self.status: int | None = None
        self.content_type = ""
        self.headers: list[tuple[str, str]] = []
        self.body: bytes | bytearray = b""
        self.error: TransportError | None = None
        self.deadline = deadline
        self.timeout = timeout

    def add_body(self, data: bytes) -> None:
        """Append ``data`` (the first chunk is kept as it is: a one-frame answer is never copied)."""
        if not self.body:
            self.body = data
        else:
            if type(self.body) is bytes:
                self.body = bytearray(self.body)
            self.body += data

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.wake()

    def fail(self, error: TransportError) -> None:
        if not self.done:
            self.error = error
            self.finish()

    async def wait(self) -> None:
        """Until :meth:`finish` (returns at once if it is done)."""
        if not self.done:
            await self.park()


class _H2Conn:
    """One HTTP/2 connection (client side) and the streams in flight on it."""

    def __init__(self, stream: trio.abc.Stream, *, scheme: str, authority: str, max_reply: int) -> None:
        self.stream = stream
        self.scheme = scheme.encode("ascii")
        self.authority = authority.encode("ascii")
        self.max_reply = max_reply
        # Outbound headers are ours, built once per path below from an authority checked when the
        # connection was made: h2's per-request validation and normalization of them are skipped.
        # What the server sends is still validated.
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_inbound_headers=True,
            validate_outbound_headers=False, normalize_outbound_headers=False))
        self._headers: dict[tuple[str, str, bytes], list[tuple[bytes, bytes]]] = {}
        self.pending: dict[int, _Pending] = {}
        self.usable = True  # new streams may start here
        self.finished = trio.Event()
        self._out = bytearray()  # what h2 produced and the writer has not sent yet
        self._idle_writer = _Parked()  # the writer, when it has nothing to send
        self._changed = trio.Event()  # window, settings or stream count changed
        self._change_waiters = 0  # tasks waiting on _changed (nobody: no new Event per answer)
        self._closing = False
        self._scope: trio.CancelScope | None = None
        self._error: TransportError | None = None
        # Request deadlines: one timer task per connection instead of a cancel scope per request.
        self._deadlines: list[tuple[float, int]] = []  # (deadline, stream id), a heap
        self._timer_at = math.inf  # when the timer wakes next
        self._timer_wake = trio.Event()
        self._slot_waiters = 0  # requests waiting for a stream slot
        self._ended_bytes = 0  # flow-controlled bytes of streams that ended in this read, not yet acked
        self._ended_sid = 0

    # -- plumbing

    def _flush(self) -> None:
        """Hand what h2 has to send to the writer (woken only when there is something)."""
        data = self.h2.data_to_send()
        if data:
            self._out += data
            self._idle_writer.wake()

    def _notify(self) -> None:
        """Wake the tasks waiting for a window, a setting or a stream slot to change."""
        if self._change_waiters:
            self._changed.set()
            self._changed = trio.Event()

    async def _wait_change(self) -> None:
        self._change_waiters += 1
        try:
            await self._changed.wait()
        finally:
            self._change_waiters -= 1

    def _fail(self, error: TransportError) -> None:
        self.usable = False
        if self._error is None:
            self._error = error
        for p in self.pending.values():
            p.fail(error)
        self._notify()
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the reader and writer until the connection ends; fail whatever is still waiting."""
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                self.h2.initiate_connection()
                self.h2.update_settings({h2.settings.SettingCodes.ENABLE_PUSH: 0,
                                         h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
                self.h2.increment_flow_control_window(_WINDOW)
                self._flush()
                nursery.start_soon(self._reader)
                nursery.start_soon(self._writer)
                nursery.start_soon(self._timer)
                task_status.started()
        finally:
            self._fail(self._error or TransportError("the connection was closed"))
            self.finished.set()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _writer(self) -> None:
        try:
            with map_exceptions(transport_errors("cannot send")):
                while True:
                    if self._out:  # everything queued since the last write goes in one write
                        data, self._out = self._out, bytearray()
                        await self.stream.send_all(data)
                        continue
                    if self._closing:
                        self._fail(TransportError("the connection was closed"))
                        return
                    await self._idle_writer.park()
        except TransportError as exc:
            self._fail(exc)

    async def _reader(self) -> None:
        broke = transport_errors("the connection broke")
        while True:
            try:
                with map_exceptions(broke):
                    data = await self.stream.receive_some(_READ_SIZE)
            except TransportError as exc:
                self._fail(exc)
                return
            if not data:
                self._fail(TransportError("the server closed the connection"))
                return
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                self._flush()  # h2 queued a GOAWAY
                self._fail(TransportError(f"HTTP/2 protocol error from the server: {exc}"))
                return
            self._ended_bytes = 0
            for event in events:
                self._dispatch(event)
            if self._ended_bytes:  # the flow-controlled bytes of streams that ended, acknowledged at once
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.h2.acknowledge_received_data(self._ended_bytes, self._ended_sid)
            self._flush()  # acknowledgements, SETTINGS and PING answers, a GOAWAY

    def _dispatch(self, event: h2.events.Event) -> None:
        sid = getattr(event, "stream_id", None)
        p = self.pending.get(sid) if sid is not None else None
        if isinstance(event, h2.events.ResponseReceived):
            if p is not None:
                for name, value in event.headers or ():
                    if name == b":status":
                        p.status = int(value)
                    elif not name.startswith(b":"):
                        header = (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
                        p.headers.append(header)
                        if name == b"content-type":
                            p.content_type = header[1]
        elif isinstance(event, h2.events.DataReceived):
            if event.stream_ended is not None:  # the stream is closed: only the connection's window is due
                self._ended_bytes += event.flow_controlled_length or 0
                self._ended_sid = event.stream_id
            else:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
            if p is not None and event.data:
                p.add_body(event.data)
                if len(p.body) > self.max_reply:
                    self._reset(event.stream_id)
                    p.fail(TransportError(f"the reply is larger than {self.max_reply} bytes"))
        elif isinstance(event, h2.events.StreamEnded):
            if p is not None:
                if p.status is None:
                    p.fail(TransportError("the server ended the stream without a response"))
                p.finish()
            self._notify()
        elif isinstance(event, h2.events.StreamReset):
            if p is not None:
                code = event.error_code
                refused = code == h2.errors.ErrorCodes.REFUSED_STREAM
                p.fail(TransportError(f"the server reset the stream ({_code_name(code)})",
                                      retryable=refused))
            self._notify()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.usable = False
            last = event.last_stream_id if event.last_stream_id is not None else 0
            goaway = event.error_code
            for other, q in self.pending.items():
                if other > last:
                    q.fail(TransportError("the server is closing the connection (GOAWAY) and did not "
                                          "process the request", retryable=True))
                elif goaway not in (None, h2.errors.ErrorCodes.NO_ERROR):
                    q.fail(TransportError(f"the server closed the connection ({_code_name(goaway)})"))
            self._notify()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged,
                                h2.events.SettingsAcknowledged)):
            self._notify()

    def _reset(self, sid: int, code: h2.errors.ErrorCodes = h2.errors.ErrorCodes.CANCEL) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
            self.h2.reset_stream(sid, code)
        self._flush()

    async def _timer(self) -> None:
        """Fail every request still waiting at its deadline (and reset its stream).

        Finished requests are dropped from the heap before each sleep, so with
        one timeout for every call the timer wakes about once per timeout, not
        once per call; it is woken early only for a deadline sooner than the
        one it sleeps until.
        """
        while True:
            now = trio.current_time()
            expired = False
            while self._deadlines:
                at, sid = self._deadlines[0]
                p = self.pending.get(sid)
                if p is not None and not p.done and at > now:
                    break
                heapq.heappop(self._deadlines)
                if p is not None and not p.done:
                    self._reset(sid)
                    p.fail(TransportError(f"no answer within {p.timeout:g} s", kind="timeout"))
                    expired = True
            if expired:
                self._notify()
            self._timer_at = self._deadlines[0][0] if self._deadlines else math.inf
            self._timer_wake = trio.Event()
            with trio.move_on_at(self._timer_at):
                await self._timer_wake.wait()

    def _watch(self, sid: int, p: _Pending) -> None:
        """Give request ``p`` on stream ``sid`` to the timer."""
        heapq.heappush(self._deadlines, (p.deadline, sid))
        if p.deadline < self._timer_at:
            self._timer_wake.set()
        if len(self._deadlines) > 2 * len(self.pending) + 64:  # mostly finished requests: compact
            self._deadlines = [(q.deadline, i) for i, q in self.pending.items() if not q.done]
            heapq.heapify(self._deadlines)

    # -- requests

    async def request(self, path: str, body: bytes, content_type: str, *, deadline: float,
                      timeout: float, method: bytes = b"POST",
                      extra: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
        """Send one request (a POST of ``body``, or ``method`` with the ``extra`` headers) on a new
        stream and wait for its whole response, until ``deadline`` (``trio.current_time()``;
        ``timeout`` is only for the message). Raises :class:`TransportError`."""
        # Our streams in flight are ``pending`` (each is reset or ended when it leaves): counted here
        # in O(1); h2 counts again (walking its streams) in send_headers, and refuses past the limit.
        if self.usable and len(self.pending) >= self.h2.remote_settings.max_concurrent_streams:
            self._slot_waiters += 1
            try:
                with trio.move_on_at(deadline):  # the server's stream limit is reached: wait for a slot
                    while self.usable and len(self.pending) >= self.h2.remote_settings.max_concurrent_streams:
                        await self._wait_change()
            finally:
                self._slot_waiters -= 1
            if self.usable and len(self.pending) >= self.h2.remote_settings.max_concurrent_streams:
                raise TransportError(f"no answer within {timeout:g} s", kind="timeout")
        if not self.usable:
            raise TransportError("the connection is closing", retryable=True)
        headers = self._headers.get((path, content_type, method))
        if headers is None:
            headers = self._headers[(path, content_type, method)] = [
                (b":method", method), (b":scheme", self.scheme), (b":authority", self.authority),
                (b":path", _header_value(path, "path")),
                (b"content-type", _header_value(content_type, "content type"))]
        headers = [*headers, *extra, (b"content-length", b"%d" % len(body))]
        try:
            sid = self.h2.get_next_available_stream_id()
            self.h2.send_headers(sid, headers, end_stream=not body)
        except h2.exceptions.H2Error as exc:  # e.g. stream ids exhausted: nothing was sent
            self.usable = False
            raise TransportError(f"cannot start a stream: {exc}", retryable=True) from exc
        p = _Pending(deadline=deadline, timeout=timeout)
        self.pending[sid] = p
        self._watch(sid, p)
        try:
            view = memoryview(body)
            while view and not p.done:
                try:
                    window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                except h2.exceptions.StreamClosedError:
                    break  # the server answered or reset early: its answer says what happened
                if window <= 0:
                    self._flush()
                    await self._wait_change()  # the timer notifies too, at the deadline
                    continue
                if window >= len(view):  # the rest fits (usually the whole body: no copy)
                    chunk, view = (body if len(view) == len(body) else bytes(view)), view[:0]
                else:
                    chunk, view = bytes(view[:window]), view[window:]
                self.h2.send_data(sid, chunk, end_stream=not view)
            self._flush()  # HEADERS and DATA in one write
            await p.wait()
            if view:  # answered before the whole body was sent: close our half of the stream
                self._reset(sid, h2.errors.ErrorCodes.NO_ERROR)
        except BaseException:
            if not p.done:
                self._reset(sid)  # cancelled or timed out: free the server's slot at once
            raise
        finally:
            self.pending.pop(sid, None)
            if self._slot_waiters:
                self._notify()  # a slot is free now (not at the StreamEnded: this task may run later)
        if p.error is not None:
            raise p.error
        assert p.status is not None
        return Answer(p.status, p.content_type, bytes(p.body), tuple(p.headers))

    def close(self) -> None:
        """Send GOAWAY and stop once it is written (requests in flight fail)."""
        self.usable = False
        self._closing = True
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection()
        self._flush()
        self._idle_writer.wake()  # it stops once everything is written


def _is_token(text: str) -> bool:
    """Whether ``text`` may be sent as a request header value as it is: printable ASCII, no spaces."""
    return bool(text) and text.isascii() and text.isprintable() and " " not in text


def _header_value(text: str, what: str) -> bytes:
    """``text`` as a header value we send; raises :class:`UsageError` for one HTTP/2 forbids
    (h2 does not check our own headers: this does, once per connection and path)."""
    if not _is_token(text):
        raise UsageError(f"not a valid request {what}: {text!r}")
    return text.encode("ascii")


def _code_name(code: object) -> str:
    return getattr(code, "name", str(code))
