"""One connection of the HTTP/2 server (:mod:`peerbox.net._h2server`): h2 state, request assembly,
app tasks, answers, limits and timers.

Library exceptions (``h2``, trio stream errors, ``ssl``) never escape a
:class:`Conn`: they are turned into a GOAWAY and/or a clean close here (the
read ``_recv``, the writer's send in :mod:`peerbox.net._h2out`, the TLS
handshake and the h2 feed ``_feed``) and nowhere else; a stream that fails
becomes :class:`~peerbox.net._io_errors.ConnectionLost` through that
module's tables.
"""

from __future__ import annotations

import contextlib
import logging
import math

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from .._errors import map_exceptions
from ._budget import AddressBudgets, SlidingRate, TokenBucket, address_of
from ._h2out import LOST, HeaderBlocks, Writer
from ._http import App, HttpRequest, HttpResponse, ServerLimits
from ._io_errors import CONNECTION_ERRORS, HANDSHAKE_ERRORS, ConnectionLost

__all__ = ["Conn"]

log = logging.getLogger("peerbox.h2server")


class _Pending:
    """A request whose headers arrived and whose body is still coming (until ``deadline``)."""

    __slots__ = ("method", "path", "headers", "body", "deadline")

    def __init__(self, method: str, path: str, headers: tuple[tuple[str, str], ...], deadline: float) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = bytearray()
        self.deadline = deadline


#: Queued-but-unsent answer bytes above which an answer waits for the writer (memory bound per connection).
_HIGH_WATER = 256 * 1024


def _text_response(status: int, message: str, *extra: tuple[str, str]) -> HttpResponse:
    return HttpResponse(
        status=status,
        headers=(("content-type", "text/plain; charset=utf-8"), *extra),
        body=message.encode() + b"\n",
    )


class Conn:
    """One HTTP/2 connection: h2 state, request assembly, app tasks, limits.

    Three kinds of task share the h2 state machine (all on one trio thread,
    so no lock): the reader (:meth:`_serve`), which also owns the
    connection's only timer; one writer (:class:`~peerbox.net._h2out.Writer`),
    the only task that sends; and one task per app call. Whoever makes h2
    queue bytes wakes the writer (``writer.kick()``), which sends everything
    queued in one scheduler pass with one ``send_all``. An answer is queued
    without waiting when it fits one DATA frame; a longer one, or one held
    back by flow control or by ``_HIGH_WATER`` unsent bytes, is finished by
    a task queueing one frame per pass, so concurrent answers interleave.

    The timer is the reader's cancel scope: its deadline is the earliest of
    the connection's deadlines (a request body's ``body_timeout``, a send
    stalled for ``idle_timeout``, ``idle_timeout`` while nothing is in
    flight, the shutdown grace). Deadlines are only ever lowered on the hot
    path (:meth:`_lower`, a comparison); when the scope fires,
    :meth:`_expire` applies what is really due and a new scope is armed.
    There is no task or cancel scope per request and none per write.
    """

    def __init__(
        self, app: App, stream: trio.abc.Stream, limits: ServerLimits, client: str, conn_id: int,
        budgets: AddressBudgets | None = None, first: bytes = b"",
    ) -> None:
        self.app = app
        self.first = first  # bytes already read from the stream (the preface the server looked at)
        self.budgets = budgets
        now = trio.current_time()
        self.failures = TokenBucket(limits.max_preauth_failures_per_conn,
                                    limits.preauth_failure_rate_per_conn, now)
        self.stream = stream
        self.limits = limits
        self.client = client
        self.conn_id = conn_id
        # Outbound headers are validated by HeaderBlocks (once per distinct tuple), not by h2 on every answer.
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                        validate_outbound_headers=False, normalize_outbound_headers=False)
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
        self.window = trio.Event()  # set (and replaced) when a window opens or the writer made progress
        self.waiting = 0  # answers waiting on ``window``
        self.pending: dict[int, _Pending] = {}  # insertion order is deadline order
        self.buffered = 0  # bytes of request bodies held in ``pending``
        self.queue: dict[int, HttpRequest] = {}  # complete requests waiting for an app slot (FIFO)
        self.queued_bytes = 0
        self.sending = 0  # answers still being queued (they wait on flow control)
        self.inflight = 0
        self.app_scopes: set[trio.CancelScope] = set()
        self.resets = SlidingRate(limits.max_resets_per_sec)
        self.pings = SlidingRate(limits.max_pings_settings_per_sec)
        self.read_scope = trio.CancelScope()  # the timer (see the class docstring)
        self.last_activity = now  # the last read, or the last answer queued
        self.draining = False  # graceful shutdown or client GOAWAY: no new streams
        self.drain_deadline = math.inf
        self.goaway_sid: int | None = None
        self.dead = False  # transport closed or unusable: drop answers
        self.lost = False  # the transport's end was logged
        self.nursery: trio.Nursery | None = None
        self.headers = HeaderBlocks()
        self.writer = Writer(self.h2, stream, on_send=self._sending_since, on_progress=self._notify_window)

    # -- the one boundary: transport and h2 errors ---------------------------

    async def _recv(self) -> bytes:
        if self.first:
            data, self.first = self.first, b""
            return data
        try:
            return bytes(await self.stream.receive_some(65536))
        except LOST:
            with map_exceptions(CONNECTION_ERRORS):  # raise ConnectionLost from exc
                raise

    def _feed(self, data: bytes) -> list[h2.events.Event] | None:
        """Hand bytes to h2; None means a protocol error (h2 queued a GOAWAY)."""
        try:
            return self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            log.info("conn %d (%s): protocol error: %s", self.conn_id, self.client, e)
            return None

    # -- the writer ----------------------------------------------------------

    def _sending_since(self, start: float) -> None:
        """A write started at ``start``: the timer ends it if it is still blocked ``idle_timeout`` later."""
        self._lower(start + self.limits.idle_timeout)

    async def _write(self) -> None:
        """Run the writer; a lost transport ends the connection."""
        try:
            await self.writer.run()
        except ConnectionLost as e:
            self._lost(e)
            self.dead = True
            self.read_scope.cancel()
        finally:
            self._notify_window()

    def _goaway(self, code: ErrorCodes) -> bytes:
        """The final GOAWAY (h2's own ``close_connection`` is not used: see :meth:`begin_shutdown`)."""
        last = self.goaway_sid if self.goaway_sid is not None else self.h2.highest_inbound_stream_id
        self.goaway_sid = last
        return GoAwayFrame(stream_id=0, last_stream_id=last, error_code=code).serialize()

    async def _close(self, code: ErrorCodes | None) -> None:
        """Stop the writer once it has sent what is queued, then GOAWAY(``code``) unless None.

        Waits at most ``idle_timeout`` (a peer that stopped reading).
        """
        self.writer.close(b"" if code is None or self.writer.closing else self._goaway(code))
        with trio.move_on_after(self.limits.idle_timeout):
            await self.writer.done.wait()

    # -- main loop -----------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends; waits for its app tasks too."""
        try:
            async with trio.open_nursery() as apps:
                self.nursery = apps
                try:
                    await self._serve(apps)
                except ConnectionLost as e:
                    self._lost(e)
                finally:
                    self.pending.clear()
                    self.queue.clear()  # never started; nobody left to answer
                    self.dead = True
                    self.writer.scope.cancel()
                    self._notify_window()
                    await trio.aclose_forcefully(self.stream)
        finally:
            self.dead = True

    def _lost(self, e: ConnectionLost) -> None:
        """Log the end of the transport (once: the reader and the writer may both see it)."""
        if not self.lost:
            self.lost = True
            log.debug("conn %d (%s): transport closed: %s", self.conn_id, self.client, e)

    async def _serve(self, apps: trio.Nursery) -> None:
        if isinstance(self.stream, trio.SSLStream):
            with map_exceptions(HANDSHAKE_ERRORS), trio.fail_after(self.limits.body_timeout):
                await self.stream.do_handshake()
            if self.stream.selected_alpn_protocol() != "h2":
                log.info("conn %d (%s): refused, ALPN is not h2", self.conn_id, self.client)
                return
        self.h2.initiate_connection()
        # The server preface goes before any further read (a client that never reads is dropped here).
        with map_exceptions(CONNECTION_ERRORS), trio.fail_after(self.limits.idle_timeout):
            await self.stream.send_all(self.h2.data_to_send())
        apps.start_soon(self._write)
        self.last_activity = trio.current_time()
        code: ErrorCodes | None = None
        while not self.dead:
            scope = self.read_scope = trio.CancelScope(deadline=self._next_deadline(trio.current_time()))
            with scope:
                code = await self._read(apps)
            if not scope.cancelled_caught or self.dead:
                break
            code = self._expire(trio.current_time())
            if code is not None or self.dead:
                break
        await self._close(None if self.dead else code)

    async def _read(self, apps: trio.Nursery) -> ErrorCodes | None:
        """Read and apply frames until the connection ends; returns the GOAWAY code to end it with, if any."""
        while not self.dead:
            data = await self._recv()
            if not data:
                return None
            events = self._feed(data)
            if events is None:
                return None  # h2 queued its own GOAWAY: the writer sends it
            try:
                for ev in events:
                    if not self._handle(ev, apps):
                        return ErrorCodes.ENHANCE_YOUR_CALM
            except h2.exceptions.ProtocolError as e:
                log.warning("conn %d (%s): h2 refused an action: %s", self.conn_id, self.client, e)
                return ErrorCodes.INTERNAL_ERROR
            self.writer.push(self.h2.data_to_send())  # SETTINGS and PING ACKs, WINDOW_UPDATEs, resets
            now = self.last_activity = trio.current_time()
            self._lower(self._next_deadline(now))
        return None

    # -- the timer -----------------------------------------------------------

    def _quiet(self) -> bool:
        return not self.pending and not self.queue and self.inflight == 0 and self.sending == 0

    def _next_deadline(self, now: float) -> float:
        """The earliest time something is due on this connection (see :meth:`_expire`)."""
        idle = self.limits.idle_timeout
        d = math.inf
        if self.pending:
            d = next(iter(self.pending.values())).deadline
        if self.writer.send_started is not None:
            d = min(d, self.writer.send_started + idle)
        if self._quiet():  # the idle deadline applies only when nothing is in flight
            d = min(d, now if self.draining else self.last_activity + idle)
        if self.draining:  # answers stuck on flow control get one more second
            d = min(d, self.drain_deadline + 1.0)
        return d

    def _lower(self, deadline: float) -> None:
        """Make the timer fire no later than ``deadline``."""
        if deadline < self.read_scope.deadline:
            self.read_scope.deadline = deadline

    def _expire(self, now: float) -> ErrorCodes | None:
        """The timer fired: apply what is due; a GOAWAY code means "end the connection" (so does ``dead``)."""
        idle = self.limits.idle_timeout
        if self.writer.send_started is not None and now >= self.writer.send_started + idle:
            log.info("conn %d (%s): send stalled for %gs (the peer does not read)", self.conn_id, self.client,
                     idle)
            self.dead = True
            self.writer.scope.cancel()
            return None
        while self.pending:
            sid, p = next(iter(self.pending.items()))
            if p.deadline > now:
                break
            self._drop_pending(sid)
            log.info("conn %d (%s): stream %d body timeout", self.conn_id, self.client, sid)
            self._answer(sid, _text_response(408, "request body timeout"), stop_upload=True)
        if self.draining and (self._quiet() or now >= self.drain_deadline + 1.0):
            return ErrorCodes.NO_ERROR
        if self._quiet() and now >= self.last_activity + idle:
            log.info("conn %d (%s): idle timeout", self.conn_id, self.client)
            return ErrorCodes.NO_ERROR
        return None

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
        now = trio.current_time()
        self.drain_deadline = now + self.limits.shutdown_grace
        for sc in self.app_scopes:
            sc.deadline = min(sc.deadline, self.drain_deadline)
        for p in self.pending.values():
            p.deadline = min(p.deadline, self.drain_deadline)
        self._lower(self._next_deadline(now))

    def _notify_window(self) -> None:
        if self.waiting:
            self.window.set()
            self.window = trio.Event()

    # -- events --------------------------------------------------------------

    def _handle(self, ev: h2.events.Event, apps: trio.Nursery) -> bool:
        """Apply one h2 event; False means a flood limit tripped (close the connection)."""
        if isinstance(ev, h2.events.DataReceived):
            self._on_data(ev)
        elif isinstance(ev, h2.events.RequestReceived):
            self._on_request(ev)
        elif isinstance(ev, h2.events.StreamEnded):
            self._on_end(ev.stream_id or 0, apps)
        elif isinstance(ev, h2.events.StreamReset):
            self._drop_pending(ev.stream_id or 0)
            self._unqueue(ev.stream_id or 0)  # not started yet: nobody wants it any more
            self._notify_window()
            if self.resets.hit(trio.current_time()):
                log.warning("conn %d (%s): rapid reset flood", self.conn_id, self.client)
                return False
        elif isinstance(ev, (h2.events.PingReceived, h2.events.RemoteSettingsChanged)):
            self._notify_window()
            if self.pings.hit(trio.current_time()):
                log.warning("conn %d (%s): PING/SETTINGS flood", self.conn_id, self.client)
                return False
        elif isinstance(ev, h2.events.WindowUpdated):
            self._notify_window()
        elif isinstance(ev, h2.events.ConnectionTerminated):
            # h2 sends nothing after a GOAWAY from the peer: close; app calls run on unanswered.
            self.dead = True
        return True

    def _on_request(self, ev: h2.events.RequestReceived) -> None:
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
            self._answer(sid, _text_response(413, "body too large"), stop_upload=True)
            return
        deadline = min(trio.current_time() + self.limits.body_timeout, self.drain_deadline)
        method, path = pseudo.get(":method", ""), pseudo.get(":path", "")
        self.pending[sid] = _Pending(method, path, tuple(regular), deadline)

    def _on_data(self, ev: h2.events.DataReceived) -> None:
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
            self._answer(sid, _text_response(413, "body too large"), stop_upload=True)
            return
        if self.buffered + self.queued_bytes + len(data) > self.limits.max_buffered_per_conn:
            self._drop_pending(sid)
            self._answer(sid, _text_response(503, "busy", ("retry-after", "1")), stop_upload=True)
            return
        p.body += data
        self.buffered += len(data)

    def _drop_pending(self, sid: int) -> _Pending | None:
        """Forget a partly received request and release its buffer budget."""
        p = self.pending.pop(sid, None)
        if p is not None:
            self.buffered -= len(p.body)
        return p

    def _on_end(self, sid: int, apps: trio.Nursery) -> None:
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
            self._answer(sid, _text_response(503, "busy", ("retry-after", "1")))

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
        self._answer(req.stream_id, resp)
        if resp.preauth_failure and not self._charge_failure():
            self._calm_down()

    def _charge_failure(self) -> bool:
        """Charge one pre-authentication failure to the connection and its address; False: over budget."""
        now = trio.current_time()
        ok = self.failures.charge(now)
        if self.budgets is not None:
            ok = self.budgets.charge(address_of(self.client), now) and ok
        return ok

    def _calm_down(self) -> None:
        """Over a failure budget: queue GOAWAY(ENHANCE_YOUR_CALM) last, stop reading, drop later answers."""
        if self.dead or self.writer.closing:
            return
        log.warning("conn %d (%s): too many unauthenticated requests refused; closing", self.conn_id,
                    self.client)
        self.writer.close(self._goaway(ErrorCodes.ENHANCE_YOUR_CALM))
        self.dead = True
        self._notify_window()
        self.read_scope.cancel()

    # -- answering -----------------------------------------------------------

    def _answer(self, sid: int, resp: HttpResponse, *, stop_upload: bool = False) -> None:
        """Queue ``resp`` on stream ``sid``: at once if it fits one frame, else its first frame and a task.

        ``stop_upload`` then resets the stream (NO_ERROR) to end the client's
        upload. A stream the client reset (or a dead connection) silently
        drops the answer.
        """
        if self.dead:
            return
        headers = self.headers.block(resp)
        if headers is None:
            log.error("conn %d (%s): the app answered status %d with headers HTTP/2 cannot carry: %r",
                      self.conn_id, self.client, resp.status, resp.headers)
            resp = _text_response(500, "internal error")
            headers = self.headers.block(resp)
            assert headers is not None
        try:
            self.h2.send_headers(sid, headers, end_stream=not resp.body)
            rest = self._queue_frame(sid, resp.body) if resp.body else None
            if rest is not None:
                self.sending += 1
                assert self.nursery is not None
                self.nursery.start_soon(self._answer_rest, sid, rest, stop_upload)
            elif stop_upload:
                self._stop_upload(sid)
        except h2.exceptions.ProtocolError as e:  # stream reset or closed meanwhile
            log.debug("conn %d: stream %d answer dropped: %s", self.conn_id, sid, e)
        self.writer.kick()
        self._answered()

    def _queue_frame(self, sid: int, body: bytes | memoryview) -> memoryview | None:
        """Queue one DATA frame of ``body`` if the windows and ``_HIGH_WATER`` allow; returns the rest."""
        if self.writer.unsent >= _HIGH_WATER:
            return memoryview(body)
        n = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size, len(body))
        if n <= 0:
            return memoryview(body)
        if n == len(body):
            self.h2.send_data(sid, body, end_stream=True)
            self.writer.unsent += n
            return None
        view = memoryview(body)
        self.h2.send_data(sid, view[:n])
        self.writer.unsent += n
        return view[n:]

    def _stop_upload(self, sid: int) -> None:
        stream = self.h2.streams.get(sid)
        if stream is not None and not stream.closed:
            self.h2.reset_stream(sid, ErrorCodes.NO_ERROR)

    async def _answer_rest(self, sid: int, rest: memoryview, stop_upload: bool) -> None:
        """Queue the rest of an answer, one frame per scheduler pass (so concurrent answers interleave).

        Without room (flow control, or ``_HIGH_WATER`` bytes not yet sent) it
        waits for a window update or the writer's progress; after
        ``idle_timeout`` without either the stream is reset (CANCEL).
        """
        try:
            while True:
                await trio.lowlevel.checkpoint()  # the other answers queue their frame of this pass first
                if self.dead:
                    return
                left = self._queue_frame(sid, rest)
                if left is None:
                    if stop_upload:
                        self._stop_upload(sid)
                    self.writer.kick()
                    return
                if len(left) < len(rest):
                    rest = left
                    self.writer.kick()
                    continue
                self.waiting += 1
                try:
                    with trio.move_on_after(self.limits.idle_timeout) as waited:
                        await self.window.wait()
                finally:
                    self.waiting -= 1
                if waited.cancelled_caught and not self.dead:
                    self.h2.reset_stream(sid, ErrorCodes.CANCEL)
                    self.writer.kick()
                    return
        except h2.exceptions.ProtocolError as e:  # stream reset or closed meanwhile
            log.debug("conn %d: stream %d answer dropped: %s", self.conn_id, sid, e)
        finally:
            self.sending -= 1
            self._answered()

    def _answered(self) -> None:
        """An answer is queued: if that leaves the connection quiet, its idle (or drain) deadline starts."""
        if self._quiet():
            now = self.last_activity = trio.current_time()
            self._lower(now if self.draining else now + self.limits.idle_timeout)
