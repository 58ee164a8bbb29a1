"""The WebSocket listener (``ws://``, ``wss://``): the worker's app over trio-websocket.

A client upgrades ``GET /v1/ws`` (any other path: 404, not upgraded) and then
sends binary messages, each one request frame ``[id, path, envelope]``
(:mod:`peerbox.net._wsframe`), answered by ``[id, status, headers, body]``.
Each request becomes the :class:`~peerbox.net._http.HttpRequest` an HTTP/2
``POST path`` with ``content-type: application/cose`` would be, and runs the
same :data:`~peerbox.net._http.App` in its own task, so verification, policy,
admission, metrics and logs are those of every other carrier; answers go back
in the order they finish.

Limits (the HTTP/2 server's, from :class:`~peerbox.net._http.ServerLimits`):

* a message is at most ``max_body`` + :data:`~peerbox.net._wsframe.FRAME_OVERHEAD`
  bytes: trio-websocket counts a message's bytes as they arrive and closes
  with 1009 as soon as it passes the bound, so an oversize message costs at
  most the bound (plus one receive buffer) in memory, never its whole length;
* ``max_inflight_per_conn`` app calls run per connection, ``max_queued_per_conn``
  more wait in order, and at most ``max_buffered_per_conn`` envelope bytes are
  held; beyond either a request is answered 503 with ``retry-after: 1`` at
  once (the HTTP/2 server's answer);
* pre-authentication failures (the app's ``preauth_failure`` answers, and
  frames with an unknown path) are charged to the connection's and the
  address's token buckets; over budget the connection closes with 1008 and
  new connections from the address are closed unread while it is;
* ``idle_timeout`` with nothing in flight: close 1000; an opening handshake
  not done within ``body_timeout``: dropped; an answer that cannot be written
  within ``idle_timeout`` (the client stopped reading): dropped;
* a text message: close 1003; a malformed frame or an id already in flight:
  close 4400 (the reason says what);
* shutdown (the listener's scope cancelled): no further message is read,
  requests in flight get ``shutdown_grace`` to be answered, then close 1001
  (WebSocket's GOAWAY: "going away").
"""

from __future__ import annotations

import logging
import math
import socket
import ssl

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, wrap_server_stream

from ._budget import AddressBudgets, TokenBucket, address_of
from ._endpoints import error_response
from ._http import App, HttpRequest, HttpResponse, ServerLimits
from ._io_errors import STREAM_ERRORS
from ._listen import budgeted_handler, open_listeners
from ._wsframe import ENVELOPE_PATHS, FRAME_OVERHEAD, WS_PATH, FrameError, decode_request, encode_answer

__all__ = ["serve_ws", "serve_ws_stream", "CLOSE_PROTOCOL", "CLOSE_BUDGET", "CLOSE_TEXT", "CLOSE_GOING_AWAY"]

log = logging.getLogger("peerbox.wsserver")

#: Close code for a malformed frame or a reused id (application range, after HTTP's 400).
CLOSE_PROTOCOL = 4400
#: Close code once the connection or its address is over its pre-authentication failure budget.
CLOSE_BUDGET = 1008
#: Close code for a text message (frames are binary).
CLOSE_TEXT = 1003
#: Close code when the server shuts down (after in-flight requests were answered).
CLOSE_GOING_AWAY = 1001
_COSE = "application/cose"
#: How long the closing handshake may take before the TCP connection is dropped.
_CLOSE_TIMEOUT = 2.0
#: Bytes read from the socket at a time.
_RECEIVE_BUFFER = 64 << 10
#: What a connection's stream and trio-websocket raise once the client is gone.
_LOST: tuple[type[Exception], ...] = (ConnectionClosed, *STREAM_ERRORS)
_ANSWER_HEADERS = frozenset({"content-type", "retry-after"})


class _WsConn:
    """One accepted WebSocket connection: reads frames, runs app calls, sends answers, closes."""

    def __init__(self, app: App, ws: WebSocketConnection, limits: ServerLimits, client: str, conn_id: int,
                 budgets: AddressBudgets | None) -> None:
        self.app, self.ws, self.limits = app, ws, limits
        self.client, self.conn_id, self.budgets = client, conn_id, budgets
        self.failures = TokenBucket(limits.max_preauth_failures_per_conn,
                                    limits.preauth_failure_rate_per_conn, trio.current_time())
        self.slots = trio.Semaphore(limits.max_inflight_per_conn)
        self.pending: set[int] = set()  # ids running or waiting for a slot
        self.buffered = 0  # envelope bytes held by pending requests
        self.read_scope = trio.CancelScope()
        self.closing = False  # shutdown: read nothing more, drain
        self.close_code: int | None = None  # a protocol error or budget: close with this at once
        self.close_reason = ""
        self.idle = trio.Event()  # set whenever nothing is pending

    def begin_shutdown(self) -> None:
        """Stop reading; requests in flight get ``shutdown_grace`` to be answered, then close 1001."""
        self.closing = True
        self.read_scope.cancel()

    def _fail(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            log.info("ws conn %d (%s): closing %d: %s", self.conn_id, self.client, code, reason)
        self.read_scope.cancel()

    async def run(self) -> None:
        """Serve until the client closes, an error, idleness or shutdown; then close the WebSocket."""
        async with trio.open_nursery() as tasks:
            await self._read_loop(tasks)
            if self.close_code is None and self.closing and self.pending:
                with trio.move_on_after(self.limits.shutdown_grace):
                    while self.pending:
                        self.idle = trio.Event()
                        await self.idle.wait()
            tasks.cancel_scope.cancel()  # calls still running after the grace (or on an error) are dropped
        code = self.close_code or (CLOSE_GOING_AWAY if self.closing else 1000)
        reason = self.close_reason or ("server shutting down" if self.closing else "idle")
        with trio.move_on_after(_CLOSE_TIMEOUT):
            await self.ws.aclose(code, reason)

    async def _read_loop(self, tasks: trio.Nursery) -> None:
        idle = self.limits.idle_timeout
        while not self.closing and self.close_code is None:
            deadline = math.inf if self.pending else trio.current_time() + idle
            self.read_scope = trio.CancelScope(deadline=deadline)
            message: bytes | str | None = None
            with self.read_scope:
                try:
                    message = await self.ws.get_message()
                except ConnectionClosed:
                    return  # the client closed (or 1009 from the library): nothing more to answer
            if message is None:
                return  # idle, shutdown or an error (close_code)
            if isinstance(message, str):
                self._fail(CLOSE_TEXT, "frames are binary messages")
                return
            self._take(message, tasks)

    def _take(self, message: bytes, tasks: trio.Nursery) -> None:
        try:
            frame = decode_request(message)
        except FrameError as exc:
            self._fail(CLOSE_PROTOCOL, f"malformed frame: {exc}")
            return
        if frame.id in self.pending:
            self._fail(CLOSE_PROTOCOL, f"id {frame.id} is already in flight")
            return
        limits = self.limits
        if frame.path not in ENVELOPE_PATHS:
            resp = error_response(404, "not_found", f"no envelope endpoint {frame.path[:100]!r}")
            tasks.start_soon(self._send, frame.id, resp)
            self._charge()
            return
        if (len(self.pending) >= limits.max_inflight_per_conn + limits.max_queued_per_conn
                or self.buffered + len(frame.envelope) > limits.max_buffered_per_conn):
            resp = error_response(503, "busy", "too many requests in flight on this connection",
                                  (("retry-after", "1"),))
            tasks.start_soon(self._send, frame.id, resp)
            return
        req = HttpRequest(method="POST", path=frame.path, headers=(("content-type", _COSE),),
                          body=frame.envelope, client=self.client, stream_id=frame.id, conn_id=self.conn_id)
        self.pending.add(frame.id)
        self.buffered += len(frame.envelope)
        self.read_scope.deadline = math.inf
        tasks.start_soon(self._call, req)

    async def _call(self, req: HttpRequest) -> None:
        """Run the app for ``req`` and send its answer; the request stays pending until it is sent
        (a shutdown waits for the answer, not only for the app)."""
        try:
            async with self.slots:
                resp = await self.app(req)
            await self._send(req.stream_id, resp)  # a refusal is answered first, then charged
            if resp.preauth_failure:
                self._charge()
        finally:
            self.pending.discard(req.stream_id)
            self.buffered -= len(req.body)
            if not self.pending:
                self.idle.set()
                if not self.closing:
                    self.read_scope.deadline = trio.current_time() + self.limits.idle_timeout

    def _charge(self) -> None:
        """Charge one pre-authentication failure; over either budget the connection closes (1008)."""
        now = trio.current_time()
        ok = self.failures.charge(now)
        if self.budgets is not None:
            ok = self.budgets.charge(address_of(self.client), now) and ok
        if not ok:
            self._fail(CLOSE_BUDGET, "too many unauthenticated requests refused")

    async def _send(self, req_id: int, resp: HttpResponse) -> None:
        """Send ``resp`` as the answer to ``req_id``; a client that is gone or not reading loses it."""
        headers = tuple((k, v) for k, v in resp.headers if k in _ANSWER_HEADERS)
        data = encode_answer(req_id, resp.status, headers, resp.body)
        with trio.move_on_after(self.limits.idle_timeout) as scope:
            try:
                await self.ws.send_message(data)
            except ConnectionClosed:
                return
        if scope.cancelled_caught:
            self._fail(1011, "the client does not read its answers")


def _accepts(request: WebSocketRequest) -> bool:
    return request.path.split("?", 1)[0] == WS_PATH


async def serve_ws_stream(app: App, stream: trio.abc.Stream, *, limits: ServerLimits, client: str,
                          conn_id: int, budgets: AddressBudgets | None = None) -> None:
    """Serve one connection on ``stream`` (TLS already wrapped around it for ``wss://``) until it ends.

    The opening handshake must finish within ``limits.body_timeout`` and ask
    for :data:`~peerbox.net._wsframe.WS_PATH` (else 404, closed). Cancelling
    the caller's scope starts the graceful shutdown (see the module). Never
    raises for network or protocol trouble: those end this connection only.
    """
    conn: _WsConn | None = None
    done = trio.Event()
    max_message = limits.max_body + FRAME_OVERHEAD

    async def run() -> None:
        nonlocal conn
        with trio.CancelScope(shield=True):
            try:
                async with trio.open_nursery() as lib:  # trio-websocket's reader task
                    request: WebSocketRequest | None = None
                    with trio.move_on_after(limits.body_timeout):
                        try:
                            request = await wrap_server_stream(lib, stream, message_queue_size=1,
                                                               max_message_size=max_message,
                                                               receive_buffer_size=_RECEIVE_BUFFER)
                        except ConnectionClosed:
                            request = None
                    if request is not None and not _accepts(request):
                        with trio.move_on_after(_CLOSE_TIMEOUT):
                            await request.reject(404, body=b"WebSocket endpoint is /v1/ws\n")
                    elif request is not None and not shutting_down.is_set():
                        with trio.move_on_after(limits.body_timeout):
                            ws = await request.accept()
                            conn = _WsConn(app, ws, limits, client, conn_id, budgets)
                        if conn is not None:
                            if shutting_down.is_set():
                                conn.begin_shutdown()
                            await conn.run()
                    lib.cancel_scope.cancel()
            except _LOST as exc:
                log.debug("ws conn %d (%s): transport closed: %s", conn_id, client, exc)
            finally:
                await trio.aclose_forcefully(stream)
                done.set()

    shutting_down = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        try:
            await done.wait()
        except trio.Cancelled:
            shutting_down.set()
            if conn is not None:
                conn.begin_shutdown()
            raise


def _url(ssl_context: ssl.SSLContext | None, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'wss' if ssl_context is not None else 'ws'}://{shown}:{port}"


async def serve_ws(app: App, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                   limits: ServerLimits | None = None, sock: socket.socket | None = None,
                   task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` over WebSocket on ``host:port`` (0: a free port) until cancelled.

    Reports ``ws://HOST:PORT`` (``wss://`` with ``ssl_context``, whose ALPN is
    set to ``http/1.1``: give this listener its own context) through
    ``task_status``. ``sock``: a listening socket bound already, shared with
    other processes (``serve --workers N``; left open, its owner closes it);
    ``host`` and ``port`` are then only shown. Per-address failure budgets
    span the listener's connections. Cancel to stop: the listener closes at
    once, each connection drains (see the module). Raises ``OSError`` if the
    address cannot be bound.
    """
    chosen = limits if limits is not None else ServerLimits()
    listeners, actual = await open_listeners(host, port, ssl_context=ssl_context, alpn="http/1.1", sock=sock)

    async def serve_one(stream: trio.abc.Stream, client: str, conn_id: int, budgets: AddressBudgets) -> None:
        await serve_ws_stream(app, stream, limits=chosen, client=client, conn_id=conn_id, budgets=budgets)

    task_status.started(_url(ssl_context, host, actual))
    await trio.serve_listeners(budgeted_handler(chosen, serve_one, log, "ws conn"), listeners)

