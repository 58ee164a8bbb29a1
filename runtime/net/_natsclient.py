"""The client side of NATS: :class:`NatsTransport`, one request/reply per envelope.

A peer on NATS is named by the URL of a NATS server, ``nats://HOST[:PORT]``
(port 4222 by default), optionally followed by the peer's did as the path:
``nats://127.0.0.1:4222/did:key:z6Mk…``. Without it (the usual directory
entry: the entry already holds the did) the subject's did is the envelope's
``target`` (:func:`peerbox.wire.request_target`), so the request goes to the
peer it is signed for. The envelope is published to ``peerbox.<did>.exec``
(``.call``, ``.logic``, ``.revoke`` after the worker path) with a reply
subject of this connection; the answer's data is the body, its headers
``Peerbox-Status`` and ``Content-Type`` what an HTTP/2 worker answers.

One NATS connection per server (``nats://host:port``), opened on first use
and shared by every request to it; replies arrive on one wildcard inbox
subscription (``_INBOX.<id>.*``) and wake the waiting call by its token, so a
call costs one publish and one delivery (both batched across the thread
boundary, see :mod:`peerbox.net._natsbridge`). Failures are
:class:`~peerbox.net._client_errors.TransportError`: no NATS server
(``connect``), no worker subscribed to the peer's subject (``unavailable``:
nats-server's "no responders"), no answer within the timeout (``timeout``),
an envelope over the server's ``max_payload`` or an answer that is not a
worker's (``protocol``).
"""

from __future__ import annotations

import itertools
import math
from urllib.parse import urlsplit

import trio

from .._errors import UsageError
from ..wire import EnvelopeError, did_from_public_key, request_target
from ._client_errors import TransportError
from ._h2client import CONTENT_TYPE, EXEC_PATH, MAX_REPLY, Transport
from ._natsbridge import (DEFAULT_PORT, NATS_SCHEME, OPERATIONS, STATUS_HEADER, NatsBridge, NatsMessage,
                          display_url, peer_subject, subject_safe)

__all__ = ["NatsTransport", "parse_nats_url"]

#: nats-server's header of a status message (503: no responders).
_NATS_STATUS = "Status"
_OPERATION_OF_PATH = {path: op for op, path in OPERATIONS.items()}


def parse_nats_url(url: str) -> tuple[str, str | None]:
    """``nats://host[:port][/did]`` -> (the server URL ``nats://host:port``, the did or None).

    Raises :class:`TransportError` (``connect``) for another scheme, no host, or a path that is
    not a subject-safe ``did:key``.
    """
    parts = urlsplit(url)
    if parts.scheme != NATS_SCHEME or not parts.hostname:
        raise TransportError(f"unsupported URL {display_url(url)!r} (expected nats://HOST[:PORT][/DID])",
                             kind="connect")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise TransportError(f"bad port in {display_url(url)!r}", kind="connect") from exc
    userinfo = parts.netloc.rpartition("@")[0]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    server = f"{NATS_SCHEME}://{userinfo + '@' if userinfo else ''}{host}:{port}"
    did = parts.path.strip("/") or None
    if did is not None and not subject_safe(did):
        raise TransportError(f"{display_url(url)!r}: the path must be the peer's did:key", kind="connect")
    return server, did


class _Waiter:
    """One call waiting for its answer (or for the error of its publish)."""

    __slots__ = ("event", "msg", "error")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.msg: NatsMessage | None = None
        self.error: TransportError | None = None

    def fail(self, error: TransportError) -> None:
        self.error = error
        self.event.set()


class _Conn:
    """One NATS connection of the transport: the bridge, its reply inbox, the calls waiting."""

    def __init__(self, bridge: NatsBridge) -> None:
        self.bridge = bridge
        self.waiters: dict[str, _Waiter] = {}
        self.tokens = itertools.count(1)
        self.prefix = ""
        self.closed = False

    async def start(self) -> None:
        self.prefix = self.bridge.new_inbox() + "."
        await self.bridge.subscribe(self.prefix + "*", self.on_reply, pending_msgs=1 << 20,
                                    pending_bytes=1 << 30)

    def on_reply(self, msg: NatsMessage) -> None:
        waiter = self.waiters.pop(msg.subject[len(self.prefix):], None)
        if waiter is not None:
            waiter.msg = msg
            waiter.event.set()

    def on_closed(self) -> None:
        """The connection ended for good: every waiting call fails now."""
        self.closed = True
        waiters, self.waiters = self.waiters, {}
        for waiter in waiters.values():
            waiter.fail(TransportError("NATS: the connection was closed", kind="protocol"))

    async def request(self, subject: str, data: bytes, deadline: float) -> NatsMessage | None:
        """Publish ``data`` to ``subject`` and wait for its answer until ``deadline`` (None: timed out)."""
        token = str(next(self.tokens))
        waiter = _Waiter()
        self.waiters[token] = waiter
        try:
            self.bridge.publish(subject, data, reply=self.prefix + token, failed=waiter.fail)
            with trio.move_on_at(deadline):
                await waiter.event.wait()
        finally:
            self.waiters.pop(token, None)
        if waiter.error is not None:
            raise waiter.error
        return waiter.msg


class NatsTransport(Transport):
    """Envelopes over NATS request/reply (see the module docstring for URLs and errors).

    Use inside ``async with`` (the client does); :meth:`aclose` flushes and
    closes every connection. ``connect_timeout`` bounds opening a connection;
    ``max_reply`` is the largest answer taken (8 MiB). ``connections_opened``
    counts connections made (for tests).
    """

    def __init__(self, *, connect_timeout: float = 5.0, max_reply: int = MAX_REPLY,
                 path: str = EXEC_PATH) -> None:
        self.connect_timeout = connect_timeout
        self.max_reply = max_reply
        self.path = path
        self.connections_opened = 0
        self._conns: dict[str, _Conn] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._open = False

    async def __aenter__(self) -> NatsTransport:
        if self._open:
            raise UsageError("this transport is already open")
        self._open = True
        return self

    async def aclose(self) -> None:
        """Close every connection (what was published is flushed first). Idempotent."""
        self._open = False
        conns, self._conns = list(self._conns.values()), {}
        with trio.CancelScope(shield=True):
            for conn in conns:
                conn.on_closed()
                await conn.bridge.aclose()

    async def exec(self, url: str, envelope: bytes, timeout: float, *,
                   path: str | None = None) -> tuple[int, str, bytes]:
        """Send ``envelope`` to the peer of ``url`` (see the module docstring) as the operation of
        ``path`` (default ``/v1/exec``); return ``(status, content type, body)``.

        Raises :class:`TransportError` (no answer), :class:`~peerbox.UsageError` (a bad timeout or
        path, the transport not open, nats-py missing).
        """
        if not (timeout > 0 and math.isfinite(timeout)):
            raise UsageError(f"timeout must be a positive number of seconds, got {timeout!r}")
        operation = _OPERATION_OF_PATH.get(path or self.path)
        if operation is None:
            raise UsageError(f"no NATS operation for the path {path or self.path!r}")
        deadline = trio.current_time() + timeout
        server, did = parse_nats_url(url)
        conn: _Conn | None = None
        with trio.move_on_at(deadline):
            conn = await self._connection(server)
        if conn is None:
            raise TransportError(f"{display_url(server)}: cannot connect within {timeout:g} s",
                                 kind="timeout")
        limit = conn.bridge.max_payload
        if limit and len(envelope) > limit:
            raise TransportError(f"{display_url(server)}: the envelope ({len(envelope)} bytes) is larger "
                                 f"than the NATS server's max_payload ({limit} bytes)", kind="protocol")
        if did is None:
            try:
                did = did_from_public_key(request_target(envelope, max_size=max(len(envelope), 1)))
            except EnvelopeError as exc:
                raise TransportError(f"{display_url(url)}: the envelope names no target: {exc}",
                                     kind="protocol") from exc
        subject = peer_subject(did, operation)
        try:
            msg = await conn.request(subject, envelope, deadline)
        except TransportError as exc:
            raise TransportError(f"{display_url(server)} {subject}: {exc}", kind=exc.kind) from exc
        if msg is None:
            raise TransportError(f"{display_url(server)} {subject}: no answer within {timeout:g} s",
                                 kind="timeout")
        return self._answer(server, subject, msg)

    def _answer(self, server: str, subject: str, msg: NatsMessage) -> tuple[int, str, bytes]:
        where = f"{display_url(server)} {subject}"
        if msg.headers.get(_NATS_STATUS) == "503" and not msg.data:
            raise TransportError(f"{where}: no worker serves this peer on NATS (no responders)",
                                 kind="unavailable")
        raw = msg.headers.get(STATUS_HEADER)
        if raw is None or not raw.isdigit() or not 100 <= int(raw) <= 599:
            raise TransportError(f"{where}: the answer is not a peerbox worker's (no {STATUS_HEADER})",
                                 kind="protocol")
        if len(msg.data) > self.max_reply:
            raise TransportError(f"{where}: answer larger than {self.max_reply} bytes", kind="protocol")
        return int(raw), msg.headers.get("Content-Type", CONTENT_TYPE), msg.data

    async def _connection(self, server: str) -> _Conn:
        if not self._open:
            raise UsageError("NatsTransport is not open: use it inside `async with` (AsyncClient does)")
        conn = self._conns.get(server)
        if conn is not None and not conn.closed:
            return conn
        async with self._locks.setdefault(server, trio.Lock()):
            conn = self._conns.get(server)
            if conn is None or conn.closed:
                holder: list[_Conn] = []
                bridge = NatsBridge(server, name="peerbox client", connect_timeout=self.connect_timeout,
                                    max_reconnects=60,
                                    on_closed=lambda: holder[0].on_closed() if holder else None)
                await bridge.open()
                conn = _Conn(bridge)
                holder.append(conn)
                try:
                    await conn.start()
                except BaseException:
                    with trio.CancelScope(shield=True):
                        await bridge.aclose()
                    raise
                self.connections_opened += 1
                self._conns[server] = conn
        return conn
