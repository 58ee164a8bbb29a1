"""The HTTP/2 client transport: :class:`Transport` (the carrier the clients use) and :class:`H2Transport`.

The transport sits behind :class:`Transport` (one method: send an envelope to
a URL, get back status, content type and body) so another carrier can be
added without touching the client. :class:`H2Transport` speaks HTTP/2 over
trio: cleartext with prior knowledge (h2c) for ``http://``, TLS with ALPN
``h2`` for ``https://``; one connection per origin (:class:`_H2Conn`),
reused, with every concurrent request multiplexed on it as its own stream
(one reader task dispatches frames to the waiting requests, one writer task
flushes what h2 has to send, so a slow peer never blocks the reader). Every
failure to get an answer raises :class:`~peerbox.net._client_errors.TransportError`:
what trio's streams raise (connecting, TLS, reading, writing) is turned into
one by the tables of :mod:`peerbox.net._io_errors`, h2's refusals here.
:meth:`H2Transport.post` returns the whole :class:`Answer` (its headers too:
isolated mode's router reads one a child adds).
"""

from __future__ import annotations

import abc
import contextlib
import heapq
import math
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

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

__all__ = ["Transport", "H2Transport", "Answer", "EXEC_PATH", "LOGIC_PATH", "CONTENT_TYPE", "MAX_REPLY"]

#: Where a worker takes request envelopes.
EXEC_PATH = "/v1/exec"
#: Where a worker takes ``peerbox/logic`` requests.
LOGIC_PATH = "/v1/logic"
#: The content type of envelopes and replies.
CONTENT_TYPE = "application/cose"
#: The largest answer body read (a reply with its log).
MAX_REPLY = 8 << 20
_READ_SIZE = 65536
_WINDOW = 1 << 24
#: At most this many URLs remember their connection (a client talks to a few origins).
_MAX_URLS = 1024


class Transport(abc.ABC):
    """Carries one envelope to a peer's URL and brings back the answer.

    Used as an async context manager around every use (the client does
    this); :meth:`aclose` releases connections. Implementations raise
    :class:`TransportError` for every failure to get an answer.
    """

    @abc.abstractmethod
    async def exec(self, url: str, envelope: bytes, timeout: float, *,
                   path: str | None = None) -> tuple[int, str, bytes]:
        """POST ``envelope`` to ``url``'s exec endpoint (or ``path``); return ``(status, ctype, body)``."""

    async def aclose(self) -> None:  # noqa: B027 (optional: a transport without connections keeps it)
        """Close every connection (the default has none)."""

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


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


@dataclass(eq=False)
class _Pending:
    """One request stream waiting for its response."""

    done: trio.Event = field(default_factory=trio.Event)
    status: int | None = None
    content_type: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    error: TransportError | None = None
    deadline: float = math.inf
    timeout: float = math.inf

    def fail(self, error: TransportError) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


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
        self._headers: dict[tuple[str, str], list[tuple[bytes, bytes]]] = {}
        self.pending: dict[int, _Pending] = {}
        self.usable = True  # new streams may start here
        self.finished = trio.Event()
        self._wake = trio.Event()  # the writer has something to send
        self._changed = trio.Event()  # window, settings or stream count changed
        self._closing = False
        self._scope: trio.CancelScope | None = None
        self._error: TransportError | None = None
        # Request deadlines: one timer task per connection instead of a cancel scope per request.
        self._deadlines: list[tuple[float, int]] = []  # (deadline, stream id), a heap
        self._timer_at = math.inf  # when the timer wakes next
        self._timer_wake = trio.Event()
        self._slot_waiters = 0  # requests waiting for a stream slot

    # -- plumbing

    def _flush(self) -> None:
        self._wake.set()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

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
                    data = self.h2.data_to_send()
                    if data:
                        await self.stream.send_all(data)
                        continue
                    if self._closing:
                        self._fail(TransportError("the connection was closed"))
                        return
                    await self._wake.wait()
                    self._wake = trio.Event()
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
            for event in events:
                self._dispatch(event)
            self._flush()

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
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
            if p is not None and event.data:
                p.body += event.data
                if len(p.body) > self.max_reply:
                    self._reset(event.stream_id)
                    p.fail(TransportError(f"the reply is larger than {self.max_reply} bytes"))
        elif isinstance(event, h2.events.StreamEnded):
            if p is not None:
                if p.status is None:
                    p.fail(TransportError("the server ended the stream without a response"))
                p.done.set()
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
                if p is not None and not p.done.is_set() and at > now:
                    break
                heapq.heappop(self._deadlines)
                if p is not None and not p.done.is_set():
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
            self._deadlines = [(q.deadline, i) for i, q in self.pending.items() if not q.done.is_set()]
            heapq.heapify(self._deadlines)

    # -- requests

    async def request(self, path: str, body: bytes, content_type: str, *, deadline: float,
                      timeout: float) -> Answer:
        """Send one POST on a new stream and wait for its whole response, until ``deadline``
        (``trio.current_time()``; ``timeout`` is only for the message). Raises :class:`TransportError`."""
        # Our streams in flight are ``pending`` (each is reset or ended when it leaves): counted here
        # in O(1); h2 counts again (walking its streams) in send_headers, and refuses past the limit.
        if self.usable and len(self.pending) >= self.h2.remote_settings.max_concurrent_streams:
            self._slot_waiters += 1
            try:
                with trio.move_on_at(deadline):  # the server's stream limit is reached: wait for a slot
                    while self.usable and len(self.pending) >= self.h2.remote_settings.max_concurrent_streams:
                        await self._changed.wait()
            finally:
                self._slot_waiters -= 1
            if self.usable and len(self.pending) >= self.h2.remote_settings.max_concurrent_streams:
                raise TransportError(f"no answer within {timeout:g} s", kind="timeout")
        if not self.usable:
            raise TransportError("the connection is closing", retryable=True)
        headers = self._headers.get((path, content_type))
        if headers is None:
            headers = self._headers[(path, content_type)] = [
                (b":method", b"POST"), (b":scheme", self.scheme), (b":authority", self.authority),
                (b":path", _header_value(path, "path")),
                (b"content-type", _header_value(content_type, "content type"))]
        headers = [*headers, (b"content-length", b"%d" % len(body))]
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
            self._flush()
            view = memoryview(body)
            while view and not p.done.is_set():
                try:
                    window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                except h2.exceptions.StreamClosedError:
                    break  # the server answered or reset early: its answer says what happened
                if window <= 0:
                    await self._changed.wait()  # the timer notifies too, at the deadline
                    continue
                chunk, view = view[:window], view[window:]
                self.h2.send_data(sid, bytes(chunk), end_stream=not view)
                self._flush()
            await p.done.wait()
            if view:  # answered before the whole body was sent: close our half of the stream
                self._reset(sid, h2.errors.ErrorCodes.NO_ERROR)
        except BaseException:
            if not p.done.is_set():
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


class H2Transport(Transport):
    """HTTP/2 over trio: h2c (prior knowledge) for ``http://``, TLS + ALPN ``h2`` for ``https://``.

    One connection per origin, opened on first use and shared by every
    request to it (each request is one stream). ``ssl_context`` (default:
    the system's trust store) is used for ``https://``; its ALPN protocols are
    set to ``h2``. Must be used inside ``async with`` (the client does this):
    the connection tasks live in its nursery. ``connections_opened`` counts
    connections made (for tests and metrics).
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, connect_timeout: float = 10.0,
                 max_reply: int = MAX_REPLY, path: str = EXEC_PATH) -> None:
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.max_reply = max_reply
        self.path = path
        self.connections_opened = 0
        self._conns: dict[tuple[str, str, int], _H2Conn] = {}
        self._by_url: dict[str, _H2Conn] = {}  # the connection each URL last used (no parsing per call)
        self._locks: dict[tuple[str, str, int], trio.Lock] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> H2Transport:
        if self._stack is not None:
            raise UsageError("this transport is already open")
        stack = contextlib.AsyncExitStack()
        self._nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack = stack
        return self

    async def aclose(self) -> None:
        """Send GOAWAY on every connection, wait briefly for it to be written, close them all."""
        stack, nursery = self._stack, self._nursery
        if stack is None or nursery is None:
            return
        self._stack = self._nursery = None
        conns = list(self._conns.values())
        self._conns.clear()
        self._by_url.clear()
        for conn in conns:
            conn.close()
        with trio.move_on_after(1.0):
            for conn in conns:
                await conn.finished.wait()
        nursery.cancel_scope.cancel()
        await stack.aclose()

    async def exec(self, url: str, envelope: bytes, timeout: float, *,
                   path: str | None = None) -> tuple[int, str, bytes]:
        """POST ``envelope`` to ``url`` + ``path`` (default: ``/v1/exec``); raises :class:`TransportError`.

        The answer's ``(status, content type, body)``; :meth:`post` also gives its other headers.
        """
        answer = await self.post(url, envelope, timeout, path=path)
        return answer.status, answer.content_type, answer.body

    async def post(self, url: str, envelope: bytes, timeout: float, *, path: str | None = None) -> Answer:
        """POST ``envelope`` to ``url`` + ``path`` (default: ``/v1/exec``); the whole :class:`Answer`.

        Raises :class:`TransportError` when no answer came. ``timeout`` covers
        connecting, sending and the whole answer. A request the server says it
        did not process (GOAWAY, REFUSED_STREAM) is sent once more on a fresh
        connection (the same bytes: a request that did run would be refused as
        a replay, never run twice).
        """
        if not (timeout > 0 and math.isfinite(timeout)):
            raise UsageError(f"timeout must be a positive number of seconds, got {timeout!r}")
        deadline = trio.current_time() + timeout
        for attempt in range(2):
            conn = self._by_url.get(url)
            if conn is None or not conn.usable:
                conn = None
                with trio.move_on_at(deadline):
                    conn = await self._connection(url)
                if conn is None:
                    break
            try:
                return await conn.request(path or self.path, envelope, CONTENT_TYPE, deadline=deadline,
                                          timeout=timeout)
            except TransportError as exc:
                if not exc.retryable or attempt:
                    raise TransportError(f"{url}: {exc}", kind=exc.kind, status=exc.status) from exc
        raise TransportError(f"{url}: no answer within {timeout:g} s", kind="timeout")

    async def _connection(self, url: str) -> _H2Conn:
        if self._nursery is None:
            raise UsageError("H2Transport is not open: use it inside `async with` (AsyncClient does)")
        parts = urlsplit(url)
        scheme = parts.scheme
        host = parts.hostname
        if scheme not in ("http", "https") or not host or not _is_token(parts.netloc):
            raise TransportError(f"unsupported URL {url!r} (expected http:// or https://)", kind="connect")
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        conn = self._conns.get(key)
        if conn is None or not conn.usable:
            lock = self._locks.setdefault(key, trio.Lock())
            async with lock:
                conn = self._conns.get(key)
                if conn is None or not conn.usable:
                    stream = await self._open(url, scheme, host, port)
                    conn = _H2Conn(stream, scheme=scheme, authority=parts.netloc, max_reply=self.max_reply)
                    self.connections_opened += 1
                    await self._nursery.start(conn.run)
                    self._conns[key] = conn
        if len(self._by_url) >= _MAX_URLS:
            self._by_url.clear()
        self._by_url[url] = conn
        return conn

    async def _open(self, url: str, scheme: str, host: str, port: int) -> trio.abc.Stream:
        tcp: trio.abc.Stream
        with trio.move_on_after(self.connect_timeout):
            with map_exceptions(transport_errors(f"cannot connect to {url}", kind="connect")):
                tcp = await trio.open_tcp_stream(host, port)
            if scheme == "http":
                return tcp
            ctx = self.ssl_context or ssl.create_default_context()
            ctx.set_alpn_protocols(["h2"])
            tls = trio.SSLStream(tcp, ctx, server_hostname=host, https_compatible=True)
            try:
                with map_exceptions(transport_errors(f"TLS with {url} failed", kind="tls")):
                    await tls.do_handshake()
            except TransportError:
                await trio.aclose_forcefully(tls)
                raise
            if tls.selected_alpn_protocol() != "h2":
                await trio.aclose_forcefully(tls)
                raise TransportError(f"{url} does not speak HTTP/2 over TLS (ALPN h2)", kind="tls")
            return tls
        raise TransportError(f"cannot connect to {url}: timed out after {self.connect_timeout:g} s",
                             kind="timeout")
