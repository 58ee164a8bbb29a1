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
import re
import ssl

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
from ._http import App, HttpRequest, HttpResponse, ServerLimits
from ._io_errors import CONNECTION_ERRORS, HANDSHAKE_ERRORS, ConnectionLost

__all__ = ["App", "HttpRequest", "HttpResponse", "ServerLimits", "serve", "serve_stream"]

#: The limits a server runs with unless given others (frozen: one instance serves every call).
DEFAULT_LIMITS = ServerLimits()

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


# content-length is computed here; the rest are connection-specific (illegal in HTTP/2).
_DROPPED_HEADERS = frozenset(
    {"content-length", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)
# What h2's outbound validation would check, done once per distinct header tuple (see _Conn._headers).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_FIELD_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*\Z")
#: Queued-but-unsent response bytes above which an answer waits for the writer (memory bound per connection).
_HIGH_WATER = 256 * 1024
_HEADER_CACHE_SIZE = 32
#: What a read or a send may raise when the transport is gone: translated by ``CONNECTION_ERRORS``.
_LOST = tuple(CONNECTION_ERRORS)


def _text_response(status: int, message: str, *extra: tuple[str, str]) -> HttpResponse:
    return HttpResponse(
        status=status,
        headers=(("content-type", "text/plain; charset=utf-8"), *extra),
        body=message.encode() + b"\n",
    )


def _encode_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...] | None:
    """The app's headers as h2 sends them (lower-case names, values stripped, hop-by-hop ones dropped).

    None if a name is not a token or a value holds a control character: a
    bug in the app, answered 500 rather than sent (HTTP/2 forbids them).
    """
    out = []
    for k, v in headers:
        name = k.lower()
        if name in _DROPPED_HEADERS:
            continue
        value = v.strip(" \t")
        if not _TOKEN.match(name) or not _FIELD_VALUE.match(value):
            return None
        out.append((name.encode("latin-1"), value.encode("latin-1", "replace")))
    return tuple(out)


class _Conn:
    """One HTTP/2 connection: h2 state, request assembly, app tasks, limits.

    Three kinds of task share the h2 state machine (all on one trio thread,
    so no lock): the reader (:meth:`_serve`), which also owns the
    connection's only timer; one writer (:meth:`_writer`), the only task that
    sends; and one task per app call. Whoever makes h2 queue bytes wakes the
    writer (:meth:`_kick`), which sends everything queued in one scheduler
    pass with one ``send_all``. The timer is the reader's cancel scope: its
    deadline is the earliest of the connection's deadlines (a request body's
    ``body_timeout``, a send stalled for ``idle_timeout``, ``idle_timeout``
    while nothing is in flight, the shutdown grace). Deadlines are only ever
    lowered on the hot path (:meth:`_lower`); when the scope fires,
    :meth:`_expire` applies what is really due and the next pass re-arms it.
    """

    def __init__(
        self, app: App, stream: trio.abc.Stream, limits: ServerLimits, client: str, conn_id: int,
        budgets: AddressBudgets | None = None,
    ) -> None:
        self.app = app
        self.budgets = budgets
        now = trio.current_time()
        self.failures = TokenBucket(limits.max_preauth_failures_per_conn,
                                    limits.preauth_failure_rate_per_conn, now)
        self.stream = stream
        self.limits = limits
        self.client = client
        self.conn_id = conn_id
        # Outbound headers are validated by _headers (once per distinct tuple), not by h2 on every answer.
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
        self.header_cache: dict[tuple[tuple[str, str], ...], tuple[tuple[bytes, bytes], ...] | None] = {}
        # The writer.
        self.out: list[bytes] = []  # bytes taken from h2 by the reader, sent before h2's next ones
        self.unsent = 0  # bytes queued since the writer last took them
        self.wanted = False  # something was queued since the writer's last pass
        self.parked: trio.lowlevel.Task | None = None  # the writer, while it waits for ``wanted``
        self.send_started: float | None = None  # when the send in progress began
        self.closing = False  # the writer stops once it has sent what is queued, then ``final``
        self.final = b""
        self.writer_scope = trio.CancelScope()
        self.writer_done = trio.Event()

    # -- the one boundary: transport and h2 errors ---------------------------

    async def _recv(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(65536))
        except _LOST:
            with map_exceptions(CONNECTION_ERRORS):
                raise

    async def _send(self, data: bytes) -> None:
        """Send ``data``; a send blocked for ``idle_timeout`` (the peer stopped reading) is ended by the timer."""
        now = trio.current_time()
        self.send_started = now
        self._lower(now + self.limits.idle_timeout)
        try:
            await self.stream.send_all(data)
        except _LOST:
            with map_exceptions(CONNECTION_ERRORS):
                raise
        self.send_started = None
        if self.waiting:
            self._notify_window()

    def _feed(self, data: bytes) -> list[h2.events.Event] | None:
        """Hand bytes to h2; None means a protocol error (h2 queued a GOAWAY)."""
        try:
            return self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            log.info("conn %d (%s): protocol error: %s", self.conn_id, self.client, e)
            return None

    # -- the writer ----------------------------------------------------------

    def _kick(self) -> None:
        """Say that h2 (or ``out``) holds bytes to send: the writer sends them on its next pass."""
        self.wanted = True
        task = self.parked
        if task is not None:
            self.parked = None
            trio.lowlevel.reschedule(task)

    def _abort_park(self, _: object) -> trio.lowlevel.Abort:
        self.parked = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def _writer(self) -> None:
        """Send whatever was queued, one ``send_all`` per pass, until closed (then ``final``) or lost."""
        try:
            with self.writer_scope:
                while True:
                    if not self.wanted:
                        if self.closing:
                            return
                        self.parked = trio.lowlevel.current_task()
                        await trio.lowlevel.wait_task_rescheduled(self._abort_park)
                        continue
                    self.wanted = False
                    data = self.h2.data_to_send()
                    if self.out:
                        data = b"".join(self.out) + data
                        self.out.clear()
                    self.unsent = 0
                    if self.closing:
                        data, self.final = data + self.final, b""
                    if data:
                        await self._send(data)
        except ConnectionLost as e:
            self._lost(e)
            self.dead = True
            self.read_scope.cancel()
        finally:
            self.send_started = None
            self.writer_done.set()
            self._notify_window()

    async def _close(self, code: ErrorCodes | None) -> None:
        """Stop the writer once it has sent what is queued, then GOAWAY(``code``) unless None.

        h2's own ``close_connection`` is not used: see :meth:`begin_shutdown`.
        Waits at most ``idle_timeout`` (a peer that stopped reading).
        """
        if code is not None and not self.closing:
            last = self.goaway_sid if self.goaway_sid is not None else self.h2.highest_inbound_stream_id
            self.goaway_sid = last
            self.final = GoAwayFrame(stream_id=0, last_stream_id=last, error_code=code).serialize()
        self.closing = True
        self._kick()
        with trio.move_on_after(self.limits.idle_timeout):
            await self.writer_done.wait()

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
                    self.writer_scope.cancel()
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
        # The server preface goes first, before any read (a client that never reads is dropped here).
        with map_exceptions(CONNECTION_ERRORS), trio.fail_after(self.limits.idle_timeout):
            await self.stream.send_all(self.h2.data_to_send())
        apps.start_soon(self._writer)
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
            out = self.h2.data_to_send()  # SETTINGS and PING ACKs, WINDOW_UPDATEs, resets
            if out:
                self.out.append(out)
                self._kick()
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
        if self.send_started is not None:
            d = min(d, self.send_started + idle)
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
        if self.send_started is not None and now >= self.send_started + idle:
            log.info("conn %d (%s): send stalled for %gs (the peer does not read)", self.conn_id, self.client,
                     idle)
            self.dead = True
            self.writer_scope.cancel()
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
        self.pending[sid] = _Pending(pseudo.get(":method", ""), pseudo.get(":path", ""), tuple(regular), deadline)

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
        """Over a failure budget: GOAWAY(ENHANCE_YOUR_CALM) after what is queued, stop reading, drop the rest."""
        if self.dead or self.closing:
            return
        log.warning("conn %d (%s): too many unauthenticated requests refused; closing", self.conn_id,
                    self.client)
        last = self.goaway_sid if self.goaway_sid is not None else self.h2.highest_inbound_stream_id
        self.goaway_sid = last
        self.final = GoAwayFrame(stream_id=0, last_stream_id=last, error_code=ErrorCodes.ENHANCE_YOUR_CALM
                                 ).serialize()
        self.closing = True
        self._kick()
        self.dead = True
        self._notify_window()
        self.read_scope.cancel()

    # -- answering -----------------------------------------------------------

    def _headers(self, resp: HttpResponse) -> list[tuple[bytes, bytes]] | None:
        """The HEADERS block of ``resp``; None if the app's headers are not valid HTTP/2."""
        extra = self.header_cache.get(resp.headers)
        if extra is None and resp.headers not in self.header_cache:
            if len(self.header_cache) >= _HEADER_CACHE_SIZE:
                self.header_cache.clear()
            extra = self.header_cache[resp.headers] = _encode_headers(resp.headers)
        if extra is None:
            return None
        return [(b":status", b"%d" % resp.status), *extra, (b"content-length", b"%d" % len(resp.body))]

    def _answer(self, sid: int, resp: HttpResponse, *, stop_upload: bool = False) -> None:
        """Queue ``resp`` on stream ``sid`` now, or as much as flow control allows and the rest from a task.

        ``stop_upload`` then resets the stream (NO_ERROR) to end the client's
        upload. A stream the client reset (or a dead connection) silently
        drops the answer.
        """
        if self.dead:
            return
        headers = self._headers(resp)
        if headers is None or not 100 <= resp.status <= 999:
            log.error("conn %d (%s): the app answered status %d with headers HTTP/2 cannot carry: %r",
                      self.conn_id, self.client, resp.status, resp.headers)
            resp = _text_response(500, "internal error")
            headers = self._headers(resp)
            assert headers is not None
        try:
            self.h2.send_headers(sid, headers, end_stream=not resp.body)
            rest = self._queue_body(sid, memoryview(resp.body)) if resp.body else None
            if rest:
                self.sending += 1
                assert self.nursery is not None
                self.nursery.start_soon(self._answer_rest, sid, rest, stop_upload)
            elif stop_upload:
                self._stop_upload(sid)
        except h2.exceptions.ProtocolError as e:  # stream reset or closed meanwhile
            log.debug("conn %d: stream %d answer dropped: %s", self.conn_id, sid, e)
        self._kick()
        self._answered()

    def _queue_body(self, sid: int, body: memoryview) -> memoryview | None:
        """Queue as much of ``body`` as the windows and ``_HIGH_WATER`` allow; returns the rest, if any."""
        h2conn = self.h2
        while self.unsent < _HIGH_WATER:
            n = min(h2conn.local_flow_control_window(sid), h2conn.max_outbound_frame_size, len(body))
            if n <= 0:
                return body
            h2conn.send_data(sid, body[:n], end_stream=n == len(body))
            self.unsent += n
            if n == len(body):
                return None
            body = body[n:]
        return body

    def _stop_upload(self, sid: int) -> None:
        stream = self.h2.streams.get(sid)
        if stream is not None and not stream.closed:
            self.h2.reset_stream(sid, ErrorCodes.NO_ERROR)

    async def _answer_rest(self, sid: int, rest: memoryview, stop_upload: bool) -> None:
        """Queue the rest of an answer as windows open; reset it (CANCEL) after ``idle_timeout`` without one."""
        try:
            while not self.dead:
                self.waiting += 1
                try:
                    with trio.move_on_after(self.limits.idle_timeout) as waited:
                        await self.window.wait()
                finally:
                    self.waiting -= 1
                if self.dead:
                    return
                if waited.cancelled_caught:
                    self.h2.reset_stream(sid, ErrorCodes.CANCEL)
                    self._kick()
                    return
                left = self._queue_body(sid, rest)
                self._kick()
                if left is None:
                    if stop_upload:
                        self._stop_upload(sid)
                    return
                rest = left
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
