"""A small hardened HTTP/2 server on ``h2`` and trio.

The worker (``peerbox serve``) hands this module an :data:`App`: an async
function from a complete :class:`HttpRequest` (headers and whole body) to an
:class:`HttpResponse`. This module owns everything HTTP/2: the connection
preface (h2c with prior knowledge, or TLS with ALPN ``h2``), one ``h2``
state machine per connection, flow control in both directions, and the
defences a server facing untrusted peers needs (see :class:`ServerLimits`).

Each complete request runs the app in its own task. App calls are capped per
connection independently of h2's stream accounting: a client that resets a
stream frees its h2 slot at once, while the app call carries on until it
ends (its own limits end it) and its answer is dropped.

The request, answer and limit types live in :mod:`peerbox.net._http` (re-exported
here). Library exceptions (``h2``, trio stream errors, ``ssl``) never escape: they
are turned into a GOAWAY and/or a clean close in :class:`_Conn` (the I/O
wrappers ``_recv``/``_flush``, the TLS handshake and the h2 feed ``_feed``) and
nowhere else; a stream that fails becomes
:class:`~peerbox.net._io_errors.ConnectionLost` through that module's tables.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import ssl
from collections import deque
from dataclasses import dataclass, field
from functools import partial

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from .._errors import map_exceptions
from ._budget import AddressBudgets, TokenBucket, address_of
from ._http import App, HttpRequest, HttpResponse, ServerLimits
from ._io_errors import CONNECTION_ERRORS, HANDSHAKE_ERRORS, ConnectionLost

__all__ = ["App", "HttpRequest", "HttpResponse", "ServerLimits", "serve", "serve_stream"]

#: The limits a server runs with unless given others (frozen: one instance serves every call).
DEFAULT_LIMITS = ServerLimits()

log = logging.getLogger("peerbox.h2server")


class _Rate:
    """Counts events in a sliding one-second window; ``hit`` says "too many"."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.times: deque[float] = deque()

    def hit(self) -> bool:
        now = trio.current_time()
        self.times.append(now)
        while self.times and self.times[0] <= now - 1.0:
            self.times.popleft()
        return len(self.times) > self.limit


@dataclass
class _Pending:
    """A request whose headers arrived and whose body is still coming."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytearray = field(default_factory=bytearray)
    timer: trio.CancelScope = field(default_factory=trio.CancelScope)


# content-length is computed here; the rest are connection-specific (illegal in HTTP/2).
_DROPPED_HEADERS = frozenset(
    {"content-length", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)


def _text_response(status: int, message: str, *extra: tuple[str, str]) -> HttpResponse:
    return HttpResponse(
        status=status,
        headers=(("content-type", "text/plain; charset=utf-8"), *extra),
        body=message.encode() + b"\n",
    )


class _Conn:
    """One HTTP/2 connection: h2 state, request assembly, app tasks, limits."""

    def __init__(
        self, app: App, stream: trio.abc.Stream, limits: ServerLimits, client: str, conn_id: int,
        budgets: AddressBudgets | None = None,
    ) -> None:
        self.app = app
        self.budgets = budgets
        self.failures = TokenBucket(limits.max_preauth_failures_per_conn,
                                    limits.preauth_failure_rate_per_conn, trio.current_time())
        self.stream = stream
        self.limits = limits
        self.client = client
        self.conn_id = conn_id
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
            },
        )
        # Enforce at once rather than after the client ACKs our SETTINGS.
        self.h2.decoder.max_header_list_size = limits.max_header_list_size
        self.send_lock = trio.Lock()
        self.window = trio.Event()
        self.pending: dict[int, _Pending] = {}
        self.buffered = 0  # bytes of request bodies held in ``pending``
        self.queue: dict[int, HttpRequest] = {}  # complete requests waiting for an app slot (FIFO)
        self.queued_bytes = 0
        self.sending = 0  # answers being sent (they may wait on flow control)
        self.inflight = 0
        self.app_scopes: set[trio.CancelScope] = set()
        self.resets = _Rate(limits.max_resets_per_sec)
        self.pings = _Rate(limits.max_pings_settings_per_sec)
        self.read_scope = trio.CancelScope()
        self.draining = False  # graceful shutdown or client GOAWAY: no new streams
        self.drain_deadline = math.inf
        self.goaway_sid: int | None = None
        self.dead = False  # transport closed or unusable: drop answers
        self.nursery: trio.Nursery | None = None

    # -- the one boundary: transport and h2 errors ---------------------------

    async def _recv(self) -> bytes:
        with map_exceptions(CONNECTION_ERRORS):
            return bytes(await self.stream.receive_some(65536))

    async def _flush(self, extra: bytes = b"") -> None:
        """Send whatever h2 has queued (then ``extra``), in order, under the lock.

        A peer that stops reading for ``idle_timeout`` (so our writes block)
        loses the connection: otherwise it could pin the reader forever.
        """
        if self.dead:
            return
        async with self.send_lock:
            data = self.h2.data_to_send() + extra
            if not data or self.dead:
                return
            try:
                with map_exceptions(CONNECTION_ERRORS), trio.fail_after(self.limits.idle_timeout):
                    await self.stream.send_all(data)
            except ConnectionLost:
                self.dead = True
                self._notify_window()
                raise

    def _feed(self, data: bytes) -> list[h2.events.Event] | None:
        """Hand bytes to h2; None means a protocol error (h2 queued a GOAWAY)."""
        try:
            return self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            log.info("conn %d (%s): protocol error: %s", self.conn_id, self.client, e)
            return None

    # -- main loop -----------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends; waits for its app tasks too."""
        try:
            async with trio.open_nursery() as apps:
                self.nursery = apps
                try:
                    await self._serve(apps)
                except ConnectionLost as e:
                    log.debug("conn %d (%s): transport closed: %s", self.conn_id, self.client, e)
                finally:
                    for p in self.pending.values():
                        p.timer.cancel()
                    self.pending.clear()
                    self.queue.clear()  # never started; nobody left to answer
                    self.dead = True
                    self._notify_window()
                    await trio.aclose_forcefully(self.stream)
        finally:
            self.dead = True

    async def _serve(self, apps: trio.Nursery) -> None:
        if isinstance(self.stream, trio.SSLStream):
            with map_exceptions(HANDSHAKE_ERRORS), trio.fail_after(self.limits.body_timeout):
                await self.stream.do_handshake()
            if self.stream.selected_alpn_protocol() != "h2":
                log.info("conn %d (%s): refused, ALPN is not h2", self.conn_id, self.client)
                return
        self.h2.initiate_connection()
        await self._flush()
        while not self.dead:
            self.read_scope = trio.CancelScope()
            self._rearm_idle()
            with self.read_scope:
                data = await self._recv()
            if self.read_scope.cancelled_caught:
                if self.dead:  # _calm_down: GOAWAY already sent
                    return
                if not self.draining:
                    log.info("conn %d (%s): idle timeout", self.conn_id, self.client)
                await self._goaway(ErrorCodes.NO_ERROR)
                return
            if not data:
                return
            events = self._feed(data)
            if events is None:
                await self._flush()
                return
            try:
                for ev in events:
                    if not await self._handle(ev, apps):
                        await self._goaway(ErrorCodes.ENHANCE_YOUR_CALM)
                        return
            except h2.exceptions.ProtocolError as e:
                log.warning("conn %d (%s): h2 refused an action: %s", self.conn_id, self.client, e)
                await self._goaway(ErrorCodes.INTERNAL_ERROR)
                return
            await self._flush()

    def _rearm_idle(self) -> None:
        """Idle deadline applies only when nothing is in flight on the connection."""
        quiet = not self.pending and not self.queue and self.inflight == 0 and self.sending == 0
        if self.draining and quiet:
            self.read_scope.cancel()
            return
        deadline = trio.current_time() + self.limits.idle_timeout if quiet else math.inf
        if self.draining:  # answers stuck on flow control get one more second
            deadline = min(deadline, self.drain_deadline + 1.0)
        self.read_scope.deadline = deadline

    async def _goaway(self, code: ErrorCodes) -> None:
        """Send the final GOAWAY (h2's own ``close_connection`` is not used: see ``begin_shutdown``)."""
        last = self.goaway_sid if self.goaway_sid is not None else self.h2.highest_inbound_stream_id
        self.goaway_sid = last
        await self._flush(GoAwayFrame(stream_id=0, last_stream_id=last, error_code=code).serialize())

    def begin_shutdown(self) -> None:
        """Graceful shutdown: stop taking streams, give app calls ``shutdown_grace``.

        New streams get RST_STREAM(REFUSED_STREAM) (safe to retry elsewhere);
        the GOAWAY naming the last stream served goes out when the in-flight
        answers have been sent, just before the close. It is not sent first
        because an ``h2``-based client (ours included) treats any received
        GOAWAY as the end of the connection and would lose those answers.
        """
        if self.draining:
            return
        self.draining = True
        self.goaway_sid = self.h2.highest_inbound_stream_id
        self.drain_deadline = trio.current_time() + self.limits.shutdown_grace
        for sc in self.app_scopes:
            sc.deadline = min(sc.deadline, self.drain_deadline)
        for p in self.pending.values():
            p.timer.deadline = min(p.timer.deadline, self.drain_deadline)
        self._rearm_idle()

    def _notify_window(self) -> None:
        self.window.set()
        self.window = trio.Event()

    # -- events --------------------------------------------------------------

    async def _handle(self, ev: h2.events.Event, apps: trio.Nursery) -> bool:
        """Apply one h2 event; False means a flood limit tripped (close the connection)."""
        if isinstance(ev, h2.events.RequestReceived):
            await self._on_request(ev, apps)
        elif isinstance(ev, h2.events.DataReceived):
            await self._on_data(ev)
        elif isinstance(ev, h2.events.StreamEnded):
            await self._on_end(ev.stream_id, apps)
        elif isinstance(ev, h2.events.StreamReset):
            self._drop_pending(ev.stream_id or 0)
            self._unqueue(ev.stream_id or 0)  # not started yet: nobody wants it any more
            self._notify_window()
            if self.resets.hit():
                log.warning("conn %d (%s): rapid reset flood", self.conn_id, self.client)
                return False
        elif isinstance(ev, (h2.events.PingReceived, h2.events.RemoteSettingsChanged)):
            self._notify_window()
            if self.pings.hit():
                log.warning("conn %d (%s): PING/SETTINGS flood", self.conn_id, self.client)
                return False
        elif isinstance(ev, h2.events.WindowUpdated):
            self._notify_window()
        elif isinstance(ev, h2.events.ConnectionTerminated):
            # h2 sends nothing after a GOAWAY from the peer: close; app calls run on unanswered.
            self.dead = True
        return True

    async def _on_request(self, ev: h2.events.RequestReceived, apps: trio.Nursery) -> None:
        sid = ev.stream_id or 0
        if self.draining and sid > (self.goaway_sid or 0):
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        pseudo: dict[str, str] = {}
        regular: list[tuple[str, str]] = []
        for k, v in ev.headers or []:
            name = bytes(k).decode("latin-1").lower()
            value = bytes(v).decode("latin-1")
            if name.startswith(":"):
                pseudo[name] = value
            else:
                regular.append((name, value))
        length = next((v for k, v in regular if k == "content-length"), None)
        if length is not None and length.strip().isdigit() and int(length) > self.limits.max_body:
            self._spawn_answer(sid, _text_response(413, "body too large"), stop_upload=True)
            return
        p = _Pending(pseudo.get(":method", ""), pseudo.get(":path", ""), tuple(regular))
        self.pending[sid] = p
        p.timer.deadline = min(trio.current_time() + self.limits.body_timeout, self.drain_deadline)
        apps.start_soon(self._body_timer, sid, p)

    async def _body_timer(self, sid: int, p: _Pending) -> None:
        """408 + RST_STREAM for a body that does not complete in ``body_timeout``."""
        with p.timer:
            await trio.sleep_forever()
        if self.pending.get(sid) is p and not self.dead:
            self._drop_pending(sid)
            log.info("conn %d (%s): stream %d body timeout", self.conn_id, self.client, sid)
            await self._answer(sid, _text_response(408, "request body timeout"), stop_upload=True)

    async def _on_data(self, ev: h2.events.DataReceived) -> None:
        sid = ev.stream_id or 0
        data = ev.data or b""
        # Hand the window back at once: the body is buffered here and bounded by max_body.
        with contextlib.suppress(h2.exceptions.ProtocolError):  # stream already forgotten
            self.h2.acknowledge_received_data(ev.flow_controlled_length or 0, sid)
        p = self.pending.get(sid)
        if p is None:
            return
        if len(p.body) + len(data) > self.limits.max_body:
            self._drop_pending(sid)
            self._spawn_answer(sid, _text_response(413, "body too large"), stop_upload=True)
            return
        if self.buffered + self.queued_bytes + len(data) > self.limits.max_buffered_per_conn:
            self._drop_pending(sid)
            self._spawn_answer(sid, _text_response(503, "busy", ("retry-after", "1")), stop_upload=True)
            return
        p.body += data
        self.buffered += len(data)

    def _drop_pending(self, sid: int) -> _Pending | None:
        """Forget a partly received request: stop its timer, release its buffer budget."""
        p = self.pending.pop(sid, None)
        if p is not None:
            p.timer.cancel()
            self.buffered -= len(p.body)
        return p

    async def _on_end(self, sid: int, apps: trio.Nursery) -> None:
        p = self._drop_pending(sid)
        if p is None:
            return
        req = HttpRequest(
            method=p.method,
            path=p.path,
            headers=p.headers,
            body=bytes(p.body),
            client=self.client,
            stream_id=sid,
            conn_id=self.conn_id,
        )
        if self.inflight < self.limits.max_inflight_per_conn:
            self.inflight += 1
            apps.start_soon(self._call_app, req)
        elif (
            len(self.queue) < self.limits.max_queued_per_conn
            and self.buffered + self.queued_bytes + len(req.body) <= self.limits.max_buffered_per_conn
        ):
            self.queue[sid] = req
            self.queued_bytes += len(req.body)
        else:
            self._spawn_answer(sid, _text_response(503, "busy", ("retry-after", "1")))

    def _unqueue(self, sid: int) -> HttpRequest | None:
        req = self.queue.pop(sid, None)
        if req is not None:
            self.queued_bytes -= len(req.body)
        return req

    def _start_queued(self) -> None:
        """Start queued requests (oldest first) while app slots are free."""
        while self.queue and self.inflight < self.limits.max_inflight_per_conn and self.nursery is not None:
            req = self._unqueue(next(iter(self.queue)))
            assert req is not None
            self.inflight += 1
            self.nursery.start_soon(self._call_app, req)

    async def _call_app(self, req: HttpRequest) -> None:
        """Run the app for one request (shielded from resets and disconnects), then answer."""
        try:
            with trio.CancelScope(shield=True, deadline=self.drain_deadline) as sc:
                self.app_scopes.add(sc)
                try:
                    resp = await self.app(req)
                except Exception:
                    log.exception("conn %d (%s): app failed on %s %s", self.conn_id, self.client, req.method,
                                  req.path)
                    resp = _text_response(500, "internal error")
            self.app_scopes.discard(sc)
            if sc.cancelled_caught:
                resp = _text_response(503, "shutting down", ("retry-after", "1"))
        finally:
            self.inflight -= 1
            if self.dead:  # nobody to answer: queued requests are dropped unrun
                while self.queue:
                    self._unqueue(next(iter(self.queue)))
            self._start_queued()
        await self._answer(req.stream_id, resp)
        if resp.preauth_failure and not self._charge_failure():
            await self._calm_down()

    def _charge_failure(self) -> bool:
        """Charge one pre-authentication failure to the connection and its address; False: over budget."""
        now = trio.current_time()
        ok = self.failures.charge(now)
        if self.budgets is not None:
            ok = self.budgets.charge(address_of(self.client), now) and ok
        return ok

    async def _calm_down(self) -> None:
        """Over a failure budget: GOAWAY(ENHANCE_YOUR_CALM), stop reading, drop the answers still due."""
        if self.dead:
            return
        log.warning("conn %d (%s): too many unauthenticated requests refused; closing", self.conn_id,
                    self.client)
        with contextlib.suppress(ConnectionLost):
            await self._goaway(ErrorCodes.ENHANCE_YOUR_CALM)
        self.dead = True
        self._notify_window()
        self.read_scope.cancel()

    # -- answering -----------------------------------------------------------

    def _spawn_answer(self, sid: int, resp: HttpResponse, *, stop_upload: bool = False) -> None:
        """Answer from a task of its own: the reader must never wait for a window update."""
        if self.nursery is not None:
            self.nursery.start_soon(partial(self._answer, sid, resp, stop_upload=stop_upload))

    async def _answer(self, sid: int, resp: HttpResponse, *, stop_upload: bool = False) -> None:
        """Send ``resp``; ``stop_upload`` then resets the stream (NO_ERROR) to end the client's upload."""
        self.sending += 1
        try:
            await self._respond(sid, resp)
            if stop_upload and sid in self.h2.streams and not self.h2.streams[sid].closed:
                self.h2.reset_stream(sid, ErrorCodes.NO_ERROR)
            await self._flush()
        except (h2.exceptions.ProtocolError, ConnectionLost):
            pass
        finally:
            self.sending -= 1
            self._rearm_idle()

    async def _respond(self, sid: int, resp: HttpResponse) -> None:
        """Send one response, chunked to the frame size and the flow-control windows.

        A stream the client reset (or a dead connection) silently drops the answer.
        """
        headers = [(":status", str(resp.status))]
        headers += [(k.lower(), v) for k, v in resp.headers if k.lower() not in _DROPPED_HEADERS]
        headers.append(("content-length", str(len(resp.body))))
        body = memoryview(resp.body)
        try:
            if self.dead:
                return
            self.h2.send_headers(sid, headers, end_stream=not body)
            await self._flush()
            off = 0
            while off < len(body):
                window = self.h2.local_flow_control_window(sid)
                n = min(window, self.h2.max_outbound_frame_size, len(body) - off)
                if n <= 0:
                    with trio.move_on_after(self.limits.idle_timeout) as waited:
                        await self.window.wait()
                    if self.dead:
                        return
                    if waited.cancelled_caught:
                        self.h2.reset_stream(sid, ErrorCodes.CANCEL)
                        await self._flush()
                        return
                    continue
                self.h2.send_data(sid, body[off : off + n], end_stream=off + n >= len(body))
                off += n
                await self._flush()
        except h2.exceptions.ProtocolError as e:  # stream reset or closed meanwhile
            log.debug("conn %d: stream %d answer dropped: %s", self.conn_id, sid, e)


async def serve_stream(
    app: App, stream: trio.abc.Stream, *, limits: ServerLimits = DEFAULT_LIMITS, client: str, conn_id: int,
    budgets: AddressBudgets | None = None,
) -> None:
    """Serve one HTTP/2 connection on ``stream`` until it ends.

    h2c with prior knowledge, or TLS if ``stream`` is a :class:`trio.SSLStream`
    (the handshake happens here; anything but ALPN ``h2`` is closed).
    Cancelling the caller's scope starts a graceful shutdown: new streams are
    refused, in-flight app calls get ``limits.shutdown_grace`` to finish and
    are answered, then GOAWAY (last stream id) and close, and ``Cancelled``
    propagates. Never raises for
    network or protocol trouble; those end this connection only. ``budgets``
    are the per-address failure budgets shared with the server's other
    connections (``None``: only the connection's own).
    """
    conn = _Conn(app, stream, limits, client, conn_id, budgets)
    done = trio.Event()

    async def run() -> None:
        with trio.CancelScope(shield=True):
            try:
                await conn.run()
            finally:
                done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        try:
            await done.wait()
        except trio.Cancelled:
            conn.begin_shutdown()
            raise


def _peer_name(stream: trio.abc.Stream) -> str:
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if isinstance(inner, trio.SocketStream):
        try:
            addr = inner.socket.getpeername()
            return f"{addr[0]}:{addr[1]}"
        except OSError:
            pass
    return "unknown"


async def serve(
    app: App,
    *,
    host: str,
    port: int,
    limits: ServerLimits = DEFAULT_LIMITS,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` (0 = any free port) and serve every connection.

    Reports the bound port through ``task_status.started``. With
    ``ssl_context`` connections are TLS and the context's ALPN list is set to
    ``["h2"]``. Cancel the surrounding scope to stop: listeners close at once,
    each connection shuts down gracefully (see :func:`serve_stream`). The
    per-address failure budgets of ``limits`` span all connections; a new
    connection from an address over budget is closed unread.
    Raises ``OSError`` if the address cannot be bound.
    """
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(await trio.open_tcp_listeners(port, host=host))
    if ssl_context is not None:
        ssl_context.set_alpn_protocols(["h2"])
        listeners = [trio.SSLListener(lst, ssl_context, https_compatible=False) for lst in listeners]
    first = listeners[0]
    sock_listener = first.transport_listener if isinstance(first, trio.SSLListener) else first
    assert isinstance(sock_listener, trio.SocketListener)
    actual_port = int(sock_listener.socket.getsockname()[1])
    ids = itertools.count(1)
    budgets = AddressBudgets(limits.max_preauth_failures_per_addr, limits.preauth_failure_rate_per_addr,
                             limits.max_tracked_addrs)

    async def handler(stream: trio.abc.Stream) -> None:
        conn_id, client = next(ids), _peer_name(stream)
        if not budgets.available(address_of(client), trio.current_time()):
            log.debug("conn %d (%s): refused, the address is over its failure budget", conn_id, client)
            await trio.aclose_forcefully(stream)
            return
        try:
            await serve_stream(app, stream, limits=limits, client=client, conn_id=conn_id, budgets=budgets)
        except Exception:  # a bug here must not take the listener down with it
            log.exception("conn %d (%s): server error", conn_id, client)

    task_status.started(actual_port)
    await trio.serve_listeners(handler, listeners)
