"""The client's default carrier: :class:`SchemeTransport` picks a transport by the URL's scheme.

A directory entry's URL names how to reach the peer: ``http://``/``https://``
(HTTP/2, :class:`~peerbox.net._h2client.H2Transport`), ``ws://``/``wss://``
(WebSocket, :class:`~peerbox.net._wsclient.WsTransport`) or ``nats://``
(NATS, ``NatsTransport`` from :mod:`peerbox.net._natsclient`, imported only
when a ``nats://`` URL is used). One transport per kind is created on first
use and kept (with its connections) until :meth:`SchemeTransport.aclose`, so
a client that only talks HTTP/2 never loads the others. The envelope is the
same bytes on every carrier; only framing differs.
"""

from __future__ import annotations

import contextlib
import importlib
import ssl

import trio

from .._errors import UsageError
from ._client_errors import TransportError
from ._h2client import H2Transport, Transport
from ._wsclient import WsTransport

__all__ = ["SchemeTransport", "SCHEMES"]

#: Scheme -> the kind of transport that carries it.
SCHEMES = {"http": "h2", "https": "h2", "ws": "ws", "wss": "ws", "nats": "nats"}


class SchemeTransport(Transport):
    """Dispatches each request to the transport of its URL's scheme (one of each kind, made lazily).

    ``ssl_context`` is handed to the TLS-capable transports (``https``, ``wss``).
    An unknown scheme raises :class:`TransportError` (kind ``connect``); ``nats://``
    without the NATS transport installed raises :class:`~peerbox.UsageError`.
    Use inside ``async with`` (the client does).
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, connect_timeout: float = 10.0) -> None:
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self._by_kind: dict[str, Transport] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        self._closing = trio.Event()
        self._making = trio.Lock()

    @property
    def transports(self) -> dict[str, Transport]:
        """The transports made so far, by kind (``h2``, ``ws``, ``nats``)."""
        return dict(self._by_kind)

    async def __aenter__(self) -> SchemeTransport:
        if self._stack is not None:
            raise UsageError("this transport is already open")
        stack = contextlib.AsyncExitStack()
        self._nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack, self._closing = stack, trio.Event()
        return self

    async def aclose(self) -> None:
        """Close every transport made (each closes its connections, in the task that opened it)."""
        stack, self._stack, self._nursery = self._stack, None, None
        self._by_kind.clear()
        self._closing.set()
        if stack is not None:
            await stack.aclose()

    async def _hold(self, transport: Transport, task_status: trio.TaskStatus[None]) -> None:
        """Open ``transport`` and keep it open until :meth:`aclose` (its nursery lives in this task)."""
        async with transport:
            task_status.started()
            await self._closing.wait()

    def _make(self, kind: str) -> Transport:
        if kind == "h2":
            return H2Transport(ssl_context=self.ssl_context, connect_timeout=self.connect_timeout)
        if kind == "ws":
            return WsTransport(ssl_context=self.ssl_context, connect_timeout=self.connect_timeout)
        try:
            module = importlib.import_module("peerbox.net._natsclient")
        except ImportError as exc:
            raise UsageError("nats:// URLs need the NATS transport, which this build of peerbox "
                             "lacks") from exc
        made = module.NatsTransport()
        assert isinstance(made, Transport)
        return made

    async def transport_for(self, url: str) -> Transport:
        """The (open) transport for ``url``'s scheme.

        Raises :class:`TransportError` (an unknown scheme) or :class:`UsageError` (not open; no NATS).
        """
        if self._nursery is None:
            raise UsageError("SchemeTransport is not open: use it inside `async with` (AsyncClient does)")
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        kind = SCHEMES.get(scheme)
        if kind is None:
            raise TransportError(f"unsupported URL {url!r} (expected http(s)://, ws(s):// or nats://)",
                                 kind="connect")
        transport = self._by_kind.get(kind)
        if transport is None:
            async with self._making:
                transport = self._by_kind.get(kind)
                if transport is None:
                    transport = self._make(kind)
                    await self._nursery.start(self._hold, transport)
                    self._by_kind[kind] = transport
        return transport

    async def exec(self, url: str, envelope: bytes, timeout: float, *,
                   path: str | None = None) -> tuple[int, str, bytes]:
        """Send ``envelope`` to ``url`` (``path``: the endpoint) on the transport of its scheme.

        Raises what that transport raises (:class:`TransportError`), and as :meth:`transport_for`.
        """
        transport = await self.transport_for(url)
        return await transport.exec(url, envelope, timeout, path=path)
