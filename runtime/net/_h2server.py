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
here); one connection is a :class:`~peerbox.net._h2conn.Conn`, whose sending side
(one writer task, one write per scheduler pass) is :mod:`peerbox.net._h2out`.
Library exceptions (``h2``, trio stream errors, ``ssl``) never escape: they are
turned into a GOAWAY and/or a clean close in the connection.
"""

from __future__ import annotations

import logging
import ssl

import trio

from ._budget import AddressBudgets
from ._h2conn import Conn
from ._http import App, HttpRequest, HttpResponse, ServerLimits
from ._http1 import is_h2_preface
from ._http1conn import serve_http1, sniff
from ._io_errors import ConnectionLost
from ._listen import budgeted_handler, open_listeners

__all__ = ["App", "HttpRequest", "HttpResponse", "ServerLimits", "serve", "serve_stream"]

#: The limits a server runs with unless given others (frozen: one instance serves every call).
DEFAULT_LIMITS = ServerLimits()

log = logging.getLogger("peerbox.h2server")


async def serve_stream(
    app: App, stream: trio.abc.Stream, *, limits: ServerLimits = DEFAULT_LIMITS, client: str, conn_id: int,
    budgets: AddressBudgets | None = None,
) -> None:
    """Serve one HTTP/2 connection on ``stream`` until it ends.

    h2c with prior knowledge, or TLS if ``stream`` is a :class:`trio.SSLStream`
    (the handshake happens here; anything but ALPN ``h2`` is closed). On
    cleartext the first bytes decide (:func:`~peerbox.net._http1conn.sniff`,
    waiting at most ``limits.idle_timeout``): HTTP/2's preface, or an HTTP/1.1
    probe connection (:func:`~peerbox.net._http1conn.serve_http1`: ``GET``/``HEAD``
    of ``/v1/health``, ``/v1/ready``, ``/metrics``, ``/v1/status`` only).
    Cancelling the caller's scope starts a graceful shutdown: new streams are
    refused, in-flight app calls get ``limits.shutdown_grace`` to finish and
    are answered, then GOAWAY (last stream id) and close, and ``Cancelled``
    propagates. Never raises for
    network or protocol trouble; those end this connection only. ``budgets``
    are the per-address failure budgets shared with the server's other
    connections (``None``: only the connection's own).
    """
    first = b""
    if not isinstance(stream, trio.SSLStream):  # cleartext: HTTP/2 with prior knowledge, or an HTTP/1.1 probe
        try:
            first = await sniff(stream, limits.idle_timeout)
        except ConnectionLost as exc:
            log.debug("conn %d (%s): transport closed: %s", conn_id, client, exc)
            first = b""
        except trio.Cancelled:  # the server stops: nothing was asked on this connection yet
            await trio.aclose_forcefully(stream)
            raise
        if not first:
            await trio.aclose_forcefully(stream)
            return
        if not is_h2_preface(first):
            await serve_http1(app, stream, first, client=client, conn_id=conn_id,
                              send_timeout=limits.idle_timeout)
            return
    conn = Conn(app, stream, limits, client, conn_id, budgets, first=first)
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
    listeners, actual_port = await open_listeners(host, port, ssl_context=ssl_context, alpn="h2")

    async def serve_one(stream: trio.abc.Stream, client: str, conn_id: int, budgets: AddressBudgets) -> None:
        await serve_stream(app, stream, limits=limits, client=client, conn_id=conn_id, budgets=budgets)

    task_status.started(actual_port)
    await trio.serve_listeners(budgeted_handler(limits, serve_one, log, "conn"), listeners)
