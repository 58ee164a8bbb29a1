"""The HTTP/2 client transport: :class:`Transport` (the carrier the clients use) and :class:`H2Transport`.

The transport sits behind :class:`Transport` (one method: send an envelope to
a URL, get back status, content type and body) so another carrier can be
added without touching the client. :class:`H2Transport` speaks HTTP/2 over
trio: cleartext with prior knowledge (h2c) for ``http://``, TLS with ALPN
``h2`` for ``https://``; one connection per origin, reused, with every
concurrent request multiplexed on it as its own stream. Each connection is a
:class:`~peerbox.net._h2clientconn._H2Conn` (its own module: how a call waits,
is written and is answered). Every failure to get an answer raises
:class:`~peerbox.net._client_errors.TransportError`: what trio's streams raise
(connecting, TLS, reading, writing) is turned into one by the tables of
:mod:`peerbox.net._io_errors`, h2's refusals in the connection.
:meth:`H2Transport.post` returns the whole :class:`Answer` (its headers too:
isolated mode's router reads one a child adds).
"""

from __future__ import annotations

import abc
import contextlib
import math
import ssl
from typing import Generic, Self, TypeVar
from urllib.parse import urlsplit

import trio

from .._errors import UsageError, map_exceptions
from ._client_errors import TransportError
from ._h2clientconn import Answer, _H2Conn, _is_token
from ._io_errors import transport_errors

__all__ = ["Transport", "H2Transport", "Answer", "EXEC_PATH", "LOGIC_PATH", "CALL_PATH", "REVOKE_PATH",
           "CONTENT_TYPE", "MAX_REPLY"]

#: Where a worker takes request envelopes.
EXEC_PATH = "/v1/exec"
#: Where a worker takes ``peerbox/logic`` requests.
LOGIC_PATH = "/v1/logic"
#: Where a worker takes ``peerbox/call`` requests (a published function, run with its owner's rights).
CALL_PATH = "/v1/call"
#: Where a worker takes ``peerbox/revoke`` requests (a capability token to refuse from now on).
REVOKE_PATH = "/v1/revoke"
#: The content type of envelopes and replies.
CONTENT_TYPE = "application/cose"
#: The largest answer body read (a reply with its log).
MAX_REPLY = 8 << 20
#: At most this many URLs remember their connection (a client talks to a few origins).
_MAX_URLS = 1024

_C = TypeVar("_C")


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


class _PooledTransport(Transport, Generic[_C]):
    """A transport with one connection per origin, whose connections' tasks live in its nursery.

    What the HTTP/2 and WebSocket transports share: their options, the pool of
    connections (``_conns``, with a lock per origin so one is opened at a
    time), and the nursery opened by ``async with`` and closed by
    :meth:`aclose`, which closes the connections first (:meth:`_close_conns`,
    waited for at most a second) and then cancels what is left of them.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, connect_timeout: float = 10.0,
                 max_reply: int = MAX_REPLY, path: str = EXEC_PATH) -> None:
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.max_reply = max_reply
        self.path = path
        self.connections_opened = 0
        self._conns: dict[tuple[str, str, int], _C] = {}
        self._locks: dict[tuple[str, str, int], trio.Lock] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise UsageError("this transport is already open")
        stack = contextlib.AsyncExitStack()
        self._nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack = stack
        return self

    async def aclose(self) -> None:
        """Close every connection (waited for briefly), then stop their tasks."""
        stack, nursery = self._stack, self._nursery
        if stack is None or nursery is None:
            return
        self._stack = self._nursery = None
        conns = list(self._conns.values())
        self._conns.clear()
        self._forget()
        with trio.move_on_after(1.0):
            await self._close_conns(conns)
        nursery.cancel_scope.cancel()
        await stack.aclose()

    def _forget(self) -> None:  # noqa: B027 (optional: a transport with more to clear extends it)
        """Clear what the transport remembers of its connections besides ``_conns``."""

    @abc.abstractmethod
    async def _close_conns(self, conns: list[_C]) -> None:
        """Close ``conns`` cleanly (the caller bounds how long this may take)."""


class H2Transport(_PooledTransport[_H2Conn]):
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
        super().__init__(ssl_context=ssl_context, connect_timeout=connect_timeout, max_reply=max_reply,
                         path=path)
        self._by_url: dict[str, _H2Conn] = {}  # the connection each URL last used (no parsing per call)

    def _forget(self) -> None:
        self._by_url.clear()

    async def _close_conns(self, conns: list[_H2Conn]) -> None:
        """Send GOAWAY on every connection and wait for it to be written."""
        for conn in conns:
            conn.close()
        for conn in conns:
            await conn.finished.wait()

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
        return await self._request(url, path or self.path, envelope, CONTENT_TYPE, timeout)

    async def get(self, url: str, path: str, timeout: float, *,
                  headers: tuple[tuple[str, str], ...] = ()) -> Answer:
        """GET ``url`` + ``path`` with ``headers`` (ASCII, lower-case names; e.g. ``authorization``);
        the whole :class:`Answer`. Raises :class:`TransportError` as :meth:`post` does."""
        extra = tuple((k.encode("ascii"), v.encode("ascii")) for k, v in headers)
        return await self._request(url, path, b"", "application/json", timeout, method=b"GET", extra=extra)

    async def _request(self, url: str, path: str, body: bytes, content_type: str, timeout: float, *,
                       method: bytes = b"POST", extra: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
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
                return await conn.request(path, body, content_type, deadline=deadline, timeout=timeout,
                                          method=method, extra=extra)
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
