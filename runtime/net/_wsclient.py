"""The WebSocket client transport: :class:`WsTransport` (``ws://`` and ``wss://`` peer URLs).

One WebSocket connection per origin (``ws://HOST:PORT`` upgraded at
``/v1/ws``), opened on first use and shared by every request to it: each
request is one binary message ``[id, path, envelope]`` under a fresh id, and
one reader task per connection hands each answer ``[id, status, headers,
body]`` to the call waiting on that id (:mod:`peerbox.net._wsframe`). A call
times out on its own deadline (its id is forgotten; a late answer is
dropped). Every failure to get an answer is a
:class:`~peerbox.net._client_errors.TransportError`: trio's stream errors
through :func:`~peerbox.net._io_errors.transport_errors`, trio-websocket's
(a refused upgrade, a closed connection) and a malformed answer frame here,
at this module's one boundary with the library.
"""

from __future__ import annotations

import itertools
import math
import ssl
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, WebSocketConnection
from trio_websocket import wrap_client_stream

from .._errors import UsageError, map_exceptions
from ._client_errors import TransportError
from ._h2client import _PooledTransport
from ._io_errors import transport_errors
from ._wsframe import FRAME_OVERHEAD, MAX_ID, WS_PATH, FrameError, WsAnswer, decode_answer, encode_request

__all__ = ["WsTransport"]

#: The streams trio-websocket runs on: TCP, or TLS over it.
_Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]
#: Answer headers and framing on top of the largest reply body.
_ANSWER_OVERHEAD = FRAME_OVERHEAD + 4096


class _Call:
    """One request waiting for its answer (set by the connection's reader)."""

    __slots__ = ("done", "answer", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.answer: WsAnswer | None = None
        self.error: TransportError | None = None


class _WsConn:
    """One client WebSocket connection: requests by id, one reader routing answers."""

    def __init__(self, ws: WebSocketConnection, origin: str) -> None:
        self.ws = ws
        self.origin = origin
        self.ids = itertools.count(1)
        self.waiting: dict[int, _Call] = {}
        self.usable = True
        self.finished = trio.Event()

    def _fail_all(self, error: TransportError) -> None:
        self.usable = False
        for call in self.waiting.values():
            call.error = error
            call.done.set()
        self.waiting.clear()

    async def read(self) -> None:
        """Route answers until the connection ends; then fail every waiting call."""
        try:
            while True:
                try:
                    message = await self.ws.get_message()
                except ConnectionClosed as exc:
                    reason = exc.reason
                    said = f" ({reason.code} {reason.reason or reason.name})" if reason is not None else ""
                    self._fail_all(TransportError(f"{self.origin}: connection closed{said}", kind="protocol"))
                    return
                try:
                    if isinstance(message, str):
                        raise FrameError("a text message")
                    answer = decode_answer(message)
                except FrameError as exc:
                    self._fail_all(TransportError(f"{self.origin}: malformed answer: {exc}", kind="protocol"))
                    return
                call = self.waiting.pop(answer.id, None)
                if call is not None:  # else the call timed out: a late answer is dropped
                    call.answer = answer
                    call.done.set()
        finally:
            self.usable = False
            self.finished.set()

    async def request(self, path: str, envelope: bytes, deadline: float) -> WsAnswer | None:
        """Send one request; its answer, or None at ``deadline``. Raises :class:`TransportError`."""
        req_id = next(self.ids)
        if req_id >= MAX_ID:
            self.usable = False
            raise TransportError(f"{self.origin}: request ids exhausted on this connection", retryable=True)
        call = self.waiting[req_id] = _Call()
        try:
            with trio.move_on_at(deadline):
                try:
                    await self.ws.send_message(encode_request(req_id, path, envelope))
                except ConnectionClosed as exc:
                    self.usable = False
                    raise TransportError(f"{self.origin}: connection closed before the request was sent",
                                         kind="protocol", retryable=True) from exc
                await call.done.wait()
        finally:
            self.waiting.pop(req_id, None)
        if call.error is not None:
            raise call.error
        return call.answer


class WsTransport(_PooledTransport[_WsConn]):
    """WebSocket (trio-websocket) for ``ws://`` and ``wss://`` URLs: one multiplexed connection per origin.

    ``ssl_context`` (default: the system's trust store) is used for
    ``wss://``. Must be used inside ``async with`` (the client does this):
    the connections' reader tasks live in its nursery. ``connections_opened``
    counts connections made (for tests).
    """

    async def _close_conns(self, conns: list[_WsConn]) -> None:
        """A normal close of every connection."""
        for conn in conns:
            await conn.ws.aclose()

    async def exec(self, url: str, envelope: bytes, timeout: float, *,
                   path: str | None = None) -> tuple[int, str, bytes]:
        """Send ``envelope`` to ``url``'s ``path`` endpoint (default ``/v1/exec``); ``(status, ctype, body)``.

        Raises :class:`TransportError` when no answer came within ``timeout``
        (connecting included). A request the connection lost before it was
        sent goes once more on a fresh connection (the same bytes: a request
        that did run would be refused as a replay, never run twice).
        """
        if not (timeout > 0 and math.isfinite(timeout)):
            raise UsageError(f"timeout must be a positive number of seconds, got {timeout!r}")
        deadline = trio.current_time() + timeout
        for attempt in range(2):
            conn: _WsConn | None = None
            with trio.move_on_at(deadline):
                conn = await self._connection(url)
            if conn is None:
                break
            try:
                answer = await conn.request(path or self.path, envelope, deadline)
            except TransportError as exc:
                if not exc.retryable or attempt:
                    raise TransportError(f"{url}: {exc}", kind=exc.kind, status=exc.status) from exc
                continue
            if answer is None:
                break
            return answer.status, answer.header("content-type") or "", answer.body
        raise TransportError(f"{url}: no answer within {timeout:g} s", kind="timeout")

    async def _connection(self, url: str) -> _WsConn:
        if self._nursery is None:
            raise UsageError("WsTransport is not open: use it inside `async with` (AsyncClient does)")
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
        if scheme not in ("ws", "wss") or not host:
            raise TransportError(f"unsupported URL {url!r} (expected ws:// or wss://)", kind="connect")
        port = parts.port or (443 if scheme == "wss" else 80)
        key = (scheme, host, port)
        conn = self._conns.get(key)
        if conn is None or not conn.usable:
            async with self._locks.setdefault(key, trio.Lock()):
                conn = self._conns.get(key)
                if conn is None or not conn.usable:
                    conn = await self._open(url, scheme, host, port, parts.netloc)
                    self._conns[key] = conn
        return conn

    async def _open(self, url: str, scheme: str, host: str, port: int, netloc: str) -> _WsConn:
        """Connect, upgrade at ``/v1/ws`` and start the reader. Raises :class:`TransportError`."""
        assert self._nursery is not None
        stream: _Stream
        with trio.move_on_after(self.connect_timeout):
            with map_exceptions(transport_errors(f"cannot connect to {url}", kind="connect")):
                stream = await trio.open_tcp_stream(host, port)
            if scheme == "wss":
                ctx = self.ssl_context or ssl.create_default_context()
                ctx.set_alpn_protocols(["http/1.1"])
                tls = trio.SSLStream(stream, ctx, server_hostname=host, https_compatible=True)
                try:
                    with map_exceptions(transport_errors(f"TLS with {url} failed", kind="tls")):
                        await tls.do_handshake()
                except TransportError:
                    await trio.aclose_forcefully(tls)
                    raise
                stream = tls
            conn = await self._nursery.start(self._serve, stream, url, netloc)
            assert isinstance(conn, _WsConn)
            self.connections_opened += 1
            return conn
        raise TransportError(f"cannot connect to {url}: timed out after {self.connect_timeout:g} s",
                             kind="timeout")

    async def _serve(self, stream: _Stream, url: str, netloc: str,
                     task_status: trio.TaskStatus[_WsConn] = trio.TASK_STATUS_IGNORED) -> None:
        """One connection's life: the upgrade, then its reader, until it ends (or the transport closes).

        Raises :class:`TransportError` (to :meth:`_open`, through ``start``) if the upgrade fails;
        afterwards nothing: a broken connection fails its waiting calls instead.
        """
        failure: TransportError | None = None
        try:
            async with trio.open_nursery() as lib:  # trio-websocket's reader task
                try:
                    ws = await wrap_client_stream(lib, stream, netloc, WS_PATH,
                                                  max_message_size=self.max_reply + _ANSWER_OVERHEAD,
                                                  receive_buffer_size=64 << 10)
                except ConnectionRejected as exc:
                    failure = TransportError(f"{url}: WebSocket upgrade refused (HTTP {exc.status_code})",
                                             kind="http", status=exc.status_code)
                except (HandshakeError, ConnectionClosed) as exc:
                    failure = TransportError(f"{url}: WebSocket upgrade failed: {exc!r}", kind="protocol")
                if failure is not None:
                    lib.cancel_scope.cancel()
                else:
                    conn = _WsConn(ws, url)
                    task_status.started(conn)
                    await conn.read()
                    lib.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # the library's reader raised (a refused upgrade arrives so)
            rejected = group.subgroup(ConnectionRejected)
            if rejected is None:
                raise
            leaf = rejected.exceptions[0]
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
            status = leaf.status_code if isinstance(leaf, ConnectionRejected) else None
            failure = TransportError(f"{url}: WebSocket upgrade refused (HTTP {status})", kind="http",
                                     status=status)
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
        if failure is not None:
            raise failure
