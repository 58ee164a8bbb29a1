"""Serving an HTTP/2 app until told to stop: addresses, TLS, the port file, signals.

Shared by the shared-mode worker (:func:`peerbox.net._shared.serve_worker`)
and isolated mode's router and children (:mod:`peerbox.net._isolated`):
:func:`serve_app` binds, reports the port, and returns on SIGINT/SIGTERM (or
stdin EOF, how a child follows its supervisor); :func:`parse_listen` and
:func:`tls_context` turn ``--listen`` and ``--tls-cert``/``--tls-key`` into
what it takes (raising :class:`~peerbox.UsageError`).

With ``peerbox serve --workers N`` the supervisor binds the address once
(:func:`listen_socket`) and its worker processes inherit the listening
socket: :func:`serve_app` with ``sock=`` serves on it, balanced between them
(:mod:`peerbox.net._accept`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import trio

from .._atomic import write_atomic
from .._errors import UsageError, map_exceptions
from ._accept import ConnectionBoard, serve_shared_socket
from ._h2server import App, ServerLimits, serve
from ._io_errors import CONNECTION_ERRORS, TLS_FILE_ERRORS, ConnectionLost

__all__ = ["serve_app", "parse_listen", "tls_context", "listen_socket", "write_port_file", "Starter"]

#: A listener besides HTTP/2 (WebSocket, NATS: :mod:`peerbox.net._listeners`): started with
#: ``nursery.start``, it reports the URL it serves and runs until cancelled.
Starter = Callable[..., Awaitable[None]]
#: The accept backlog of a socket :func:`listen_socket` binds (what trio's own listeners use).
_BACKLOG = 4096


def write_port_file(path: str, port: int) -> None:
    """Write ``port`` to ``path`` atomically (a reader never sees a partial file)."""
    write_atomic(path, f"{port}\n".encode("ascii"), durable=False)


async def serve_app(
    app: App,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    limits: ServerLimits | None = None,
    port_file: str | None = None,
    banner: str | None = None,
    handle_signals: bool = True,
    stop_on_stdin_eof: bool = False,
    sock: socket.socket | None = None,
    board: ConnectionBoard | None = None,
    extra: Sequence[Starter] = (),
    h2: bool = True,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` (or on the listening socket ``sock`` that several processes
    share, balanced through ``board``: see :mod:`peerbox.net._accept`; ``host`` and ``port`` are
    then only shown) until SIGINT/SIGTERM (or until cancelled).

    Reports the bound port through ``task_status`` and in ``port_file``
    (written atomically, removed on exit); prints ``listening on URL
    (banner)`` to stderr. On a signal: stop accepting, GOAWAY, in-flight app
    calls get ``limits.shutdown_grace`` (see :func:`peerbox.net._h2server.serve`),
    then return. Raises ``OSError`` if the address cannot be bound (``sock`` None).

    ``extra``: the other listeners (WebSocket, NATS), started in the same nursery after HTTP/2
    and stopped with it; the banner names every URL. ``h2`` False: no HTTP/2 listener (``extra``
    only; the port reported and written is the first extra listener's).
    """
    chosen = limits if limits is not None else ServerLimits()
    try:
        with contextlib.ExitStack() as stack:
            # Listening for signals before the port is reported: a SIGTERM sent as soon as the
            # port file appears must stop the server cleanly, not kill it.
            signals = (stack.enter_context(trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM))
                       if handle_signals and threading.current_thread() is threading.main_thread() else None)
            await _serve_until_stopped(app, host=host, port=port, ssl_context=ssl_context, limits=chosen,
                                       port_file=port_file, banner=banner, signals=signals,
                                       stop_on_stdin_eof=stop_on_stdin_eof, sock=sock, board=board,
                                       extra=extra, h2=h2, task_status=task_status)
    finally:
        if port_file:
            try:
                os.unlink(port_file)
            except OSError:
                pass


async def _serve_until_stopped(app: App, *, host: str, port: int, ssl_context: ssl.SSLContext | None,
                               limits: ServerLimits, port_file: str | None, banner: str | None,
                               signals: AsyncIterator[int] | None, stop_on_stdin_eof: bool,
                               sock: socket.socket | None, board: ConnectionBoard | None,
                               extra: Sequence[Starter], h2: bool, task_status: trio.TaskStatus[int]) -> None:
    """:func:`serve_app`'s body: serve, report the port, wait for a signal from ``signals`` (or stdin EOF)."""
    async with trio.open_nursery() as nursery:
        urls: list[str] = []
        actual = 0
        if h2:
            actual = await nursery.start(functools.partial(
                serve, app, host=host, port=port, limits=limits, ssl_context=ssl_context) if sock is None
                else functools.partial(serve_shared_socket, app, sock, limits=limits, ssl_context=ssl_context,
                                       board=board))
            scheme = "https" if ssl_context is not None else "http"
            shown = f"[{host}]" if ":" in host else host
            urls.append(f"{scheme}://{shown}:{actual}")
        for start in extra:
            url: str = await nursery.start(start)
            urls.append(url)
            if not h2 and not actual:
                actual = _port_of(url)
        if port_file:
            write_port_file(port_file, actual)
        if banner is not None:
            print(f"listening on {', '.join(urls)} ({banner})", file=sys.stderr, flush=True)
        task_status.started(actual)
        stop = trio.Event()
        if signals is not None:
            nursery.start_soon(_until_signal, signals, stop)
        if stop_on_stdin_eof:
            nursery.start_soon(_until_stdin_eof, stop)
        await stop.wait()
        nursery.cancel_scope.cancel()


def _port_of(url: str) -> int:
    """The port of ``scheme://host:port`` (0 if it names none)."""
    tail = url.rpartition(":")[2]
    return int(tail) if tail.isdigit() else 0


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: a free port) and listening, inheritable by children.

    ``SO_REUSEADDR`` as trio's listeners set it (a restart does not wait for ``TIME_WAIT``).
    Raises :class:`~peerbox.UsageError` when the address cannot be bound (in use, not local).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(_BACKLOG)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


async def _until_signal(signals: AsyncIterator[int], stop: trio.Event) -> None:
    async for _ in signals:
        stop.set()
        return


async def _until_stdin_eof(stop: trio.Event) -> None:
    """Set ``stop`` when stdin reaches end of file (isolated mode: the supervisor went away)."""
    stream = trio.lowlevel.FdStream(os.dup(0))
    try:
        with contextlib.suppress(ConnectionLost), map_exceptions(CONNECTION_ERRORS):
            while await stream.receive_some(4096):
                pass
    finally:
        await stream.aclose()
    stop.set()


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:7700"``, ``"[::1]:7700"`` or ``":7700"`` → (host, port). Raises UsageError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--listen expects HOST:PORT, got {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "127.0.0.1", int(port_text)


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """A server TLS context (ALPN h2) from PEM files, or None for h2c. Raises UsageError."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("--tls-cert and --tls-key go together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with map_exceptions(TLS_FILE_ERRORS):
        ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    return ctx
