"""What the HTTP/2 and WebSocket listeners share: binding, TLS, client names, address budgets.

:func:`open_listeners` binds ``host:port`` (or wraps a socket bound already)
and adds TLS with one ALPN protocol; :func:`budgeted_handler` makes the
per-connection task both listeners give :func:`trio.serve_listeners`: it names
the client, closes a connection from an address over its pre-authentication
failure budget unread, and keeps a bug in one connection from taking the
listener down.
"""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable

import trio

from ._budget import AddressBudgets, address_of
from ._http import ServerLimits

__all__ = ["open_listeners", "budgeted_handler", "peer_name", "ServeOne"]

Listeners = list[trio.abc.Listener[trio.abc.Stream]]
#: Serves one connection: ``(stream, client, conn_id, budgets)``.
ServeOne = Callable[[trio.abc.Stream, str, int, AddressBudgets], Awaitable[None]]


async def open_listeners(host: str, port: int, *, ssl_context: ssl.SSLContext | None, alpn: str,
                         sock: socket.socket | None = None) -> tuple[Listeners, int]:
    """The listeners for ``host:port`` (0: a free port) and the port they are bound to.

    ``sock``: a listening socket bound already (duplicated here; its owner
    closes it), instead of binding. With ``ssl_context`` connections are TLS
    and the context's ALPN list is set to ``[alpn]`` (``h2``: HTTP/2 only;
    anything else is taken as HTTP/1.1, whose TLS close may be unclean).
    Raises ``OSError`` if the address cannot be bound.
    """
    listeners: Listeners
    if sock is None:
        listeners = list(await trio.open_tcp_listeners(port, host=host))
    else:
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock.dup()))]
    if ssl_context is not None:
        ssl_context.set_alpn_protocols([alpn])
        listeners = [trio.SSLListener(lst, ssl_context, https_compatible=alpn != "h2") for lst in listeners]
    first = listeners[0]
    inner = first.transport_listener if isinstance(first, trio.SSLListener) else first
    assert isinstance(inner, trio.SocketListener)
    return listeners, int(inner.socket.getsockname()[1])


def peer_name(stream: trio.abc.Stream) -> str:
    """``"ADDRESS:PORT"`` of the other end of ``stream`` (TLS or not), or ``"unknown"``."""
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if isinstance(inner, trio.SocketStream):
        try:
            addr = inner.socket.getpeername()
            return f"{addr[0]}:{addr[1]}"
        except OSError:
            pass
    return "unknown"


def budgeted_handler(limits: ServerLimits, serve_one: ServeOne, log: logging.Logger,
                     label: str) -> Callable[[trio.abc.Stream], Awaitable[None]]:
    """The connection task of a listener: numbers the connection, refuses an address over budget.

    One set of per-address failure budgets (from ``limits``) spans every
    connection the returned handler serves. ``serve_one`` must not raise for
    network trouble; anything it does raise is logged to ``log`` (``label``,
    e.g. ``"conn"``, starts the line) and ends that connection only.
    """
    ids = itertools.count(1)
    budgets = AddressBudgets(limits.max_preauth_failures_per_addr, limits.preauth_failure_rate_per_addr,
                             limits.max_tracked_addrs)

    async def handler(stream: trio.abc.Stream) -> None:
        conn_id, client = next(ids), peer_name(stream)
        if not budgets.available(address_of(client), trio.current_time()):
            log.debug("%s %d (%s): refused, the address is over its failure budget", label, conn_id, client)
            await trio.aclose_forcefully(stream)
            return
        try:
            await serve_one(stream, client, conn_id, budgets)
        except Exception:  # a bug here must not take the listener down with it
            log.exception("%s %d (%s): server error", label, conn_id, client)

    return handler
