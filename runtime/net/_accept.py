"""Accepting connections on a listening socket that several worker processes share, balanced.

``peerbox serve --workers N`` gives one listening socket to N processes
(:mod:`peerbox.net._supervisor`). Left to itself the kernel wakes every
process waiting on it and the first to run wins, which on an idle server is
nearly always the same one: two clients connecting at once would both be
served by one process while the others idle (what nginx's ``accept_mutex``
and ``SO_REUSEPORT`` exist for; ``SO_REUSEPORT`` hashes connections to
processes blindly, so two connections still share one process half the time).

:class:`ConnectionBoard` is a small shared table, one 8-byte slot per process
(a file the supervisor creates in its runtime directory, mapped by each
process), in which each process keeps its number of open connections. Before
accepting a pending connection a process compares its own count with the
others': if another process has fewer it waits (``1 ms`` at a time, at most
:data:`MAX_DEFER` in all, so a stuck or busy process never holds a
connection back longer) for that one to take it. The supervisor marks the
slot of a process that is down as full (:meth:`ConnectionBoard.mark_down`),
so nobody defers to it.

:func:`serve_shared_socket` is :func:`peerbox.net._h2server.serve` on such a
socket (the same per-connection handling and address failure budgets).
"""

from __future__ import annotations

import errno
import itertools
import logging
import mmap
import os
import socket
import ssl
import struct

import trio

from ._budget import AddressBudgets, address_of
from ._h2server import App, ServerLimits, serve_stream

__all__ = ["ConnectionBoard", "serve_shared_socket", "MAX_DEFER", "DOWN"]

log = logging.getLogger("peerbox.h2server")

#: The longest a process defers a pending connection to a less busy one (seconds).
MAX_DEFER = 0.02
_STEP = 0.001
_SLOT = struct.Struct("=q")
#: The count a down process's slot holds (nobody defers to it).
DOWN = 1 << 62
#: accept() errors that concern one connection only (as trio's listeners ignore them).
_IGNORABLE = {getattr(errno, n) for n in ("EPERM", "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT",
                                         "EHOSTDOWN", "ENONET", "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH",
                                         "ETIMEDOUT", "ECONNRESET") if hasattr(errno, n)}
#: accept() errors of exhausted resources: wait a little and try again (as trio's serve_listeners does).
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class ConnectionBoard:
    """The open-connection count of each of N processes, in a file of N slots that they all map.

    ``ConnectionBoard.create(path, n)`` (the supervisor) makes the file, every slot down;
    ``ConnectionBoard(path, index)`` (a worker process) maps it and owns slot ``index``
    (zeroed: up, no connection). Each slot has one writer; readers may see a count one
    change old, which only shifts a decision by one connection. Raises ``OSError`` if the
    file cannot be created or mapped.
    """

    def __init__(self, path: str, index: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size < _SLOT.size * (index + 1) or size % _SLOT.size:
                raise OSError(errno.EINVAL, f"the connection board {path} has no slot {index}")
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.index = index
        self.slots = size // _SLOT.size
        self.open = 0
        self._publish()

    @staticmethod
    def path_in(runtime_dir: str) -> str:
        """Where a supervisor keeps its board, in its runtime directory."""
        return os.path.join(runtime_dir, "connections")

    @staticmethod
    def create(path: str, slots: int) -> None:
        """Write a board of ``slots`` slots, all down."""
        with open(path, "wb") as f:
            f.write(_SLOT.pack(DOWN) * slots)

    @staticmethod
    def mark_down(path: str, index: int) -> None:
        """Mark process ``index`` as down (its slot full). Never raises: a missing board is ignored."""
        try:
            with open(path, "r+b") as f:
                f.seek(index * _SLOT.size)
                f.write(_SLOT.pack(DOWN))
        except OSError:
            pass

    def _publish(self) -> None:
        _SLOT.pack_into(self._map, self.index * _SLOT.size, self.open)

    def opened(self) -> None:
        """Count one more open connection of this process."""
        self.open += 1
        self._publish()

    def closed(self) -> None:
        """Count one connection of this process fewer."""
        self.open -= 1
        self._publish()

    def others_min(self) -> int:
        """The fewest open connections of any other process that is up (:data:`DOWN` if none is)."""
        least = DOWN
        for i in range(self.slots):
            if i != self.index:
                least = min(least, _SLOT.unpack_from(self._map, i * _SLOT.size)[0])
        return least

    def counts(self) -> list[int]:
        """Every process's open connections, by index (:data:`DOWN` for a process that is down);
        this process's own slot as published. Empty once closed."""
        if self._map.closed:
            return []
        return [_SLOT.unpack_from(self._map, i * _SLOT.size)[0] for i in range(self.slots)]

    def close(self) -> None:
        """Mark this process down and unmap the board. Idempotent."""
        if not self._map.closed:
            self.open = DOWN
            self._publish()
            self._map.close()


async def _accept(sock: socket.socket, board: ConnectionBoard | None) -> socket.socket:
    """The next connection this process should take from the shared ``sock`` (non-blocking).

    Waits for one to be pending; defers to a process with fewer open connections for up to
    :data:`MAX_DEFER`. Raises ``OSError`` for errors that are not about one connection.
    """
    deferred = 0.0
    while True:
        await trio.lowlevel.wait_readable(sock)
        if board is not None and deferred < MAX_DEFER and board.others_min() < board.open:
            await trio.sleep(_STEP)  # another process has fewer: let it take this one
            deferred += _STEP
            continue
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            continue  # another process took it
        except OSError as exc:
            if exc.errno in _IGNORABLE:
                continue
            if exc.errno in _EXHAUSTED:
                log.error("accept: %s; waiting 0.1 s", os.strerror(exc.errno or 0))
                await trio.sleep(0.1)
                continue
            raise
        return conn


def _client_name(conn: socket.socket) -> str:
    """``"ADDRESS:PORT"`` of the peer of ``conn`` (``"unknown"`` if it has none any more)."""
    try:
        addr = conn.getpeername()
        return f"{addr[0]}:{addr[1]}"
    except (OSError, IndexError, TypeError):
        return "unknown"


async def serve_shared_socket(app: App, sock: socket.socket, *, limits: ServerLimits,
                              ssl_context: ssl.SSLContext | None, board: ConnectionBoard | None = None,
                              task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve every connection this process takes from the listening ``sock`` until cancelled.

    Like :func:`peerbox.net._h2server.serve` (TLS with ALPN ``h2``, the per-address failure
    budgets across this process's connections, graceful shutdown of each connection on
    cancellation); connections are taken as :func:`_accept` balances them with ``board``.
    ``sock`` is left open (its owner closes it). Raises ``OSError`` if accepting fails for
    good (the socket was closed under it).
    """
    sock.setblocking(False)
    if ssl_context is not None:
        ssl_context.set_alpn_protocols(["h2"])
    ids = itertools.count(1)
    budgets = AddressBudgets(limits.max_preauth_failures_per_addr, limits.preauth_failure_rate_per_addr,
                             limits.max_tracked_addrs)

    async def handler(conn: socket.socket) -> None:
        conn_id, client = next(ids), _client_name(conn)
        stream: trio.abc.Stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
        if ssl_context is not None:
            stream = trio.SSLStream(stream, ssl_context, server_side=True, https_compatible=False)
        if board is not None:
            board.opened()
        try:
            if not budgets.available(address_of(client), trio.current_time()):
                await trio.aclose_forcefully(stream)
                return
            await serve_stream(app, stream, limits=limits, client=client, conn_id=conn_id, budgets=budgets)
        except Exception:  # a bug here must not take the listener down with it
            log.exception("conn %d (%s): server error", conn_id, client)
        finally:
            if board is not None:
                board.closed()

    async with trio.open_nursery() as nursery:
        task_status.started(int(sock.getsockname()[1]))
        while True:
            conn = await _accept(sock, board)
            nursery.start_soon(handler, conn)
