"""The sending side of one HTTP/2 server connection: its one writer task, and the HEADERS of answers.

:class:`Writer` is the only task of a connection (:mod:`peerbox.net._h2server`)
that writes to the transport. The tasks that make ``h2`` queue bytes (the
reader acknowledging frames, app tasks queueing answers) call
:meth:`Writer.kick` and carry on without waiting; the writer then takes
everything queued, by all of them, in one piece and sends it with one
``send_all``. Because trio runs every task that is ready before the writer
gets its turn, the answers of all the streams that completed in one
scheduler pass leave in one write (one system call) rather than one or
three each. There is no lock (one sender) and no timeout scope per write:
a send blocked because the peer stopped reading is found by the
connection's one timer, which :attr:`Writer.send_started` feeds.

:class:`HeaderBlocks` builds the HEADERS of an answer and validates the
app's headers the way ``h2``'s outbound validation would, but once per
distinct header tuple rather than on every answer (the server turns
``h2``'s own outbound validation off).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import h2.connection
import trio

from .._errors import map_exceptions
from ._http import HttpResponse
from ._io_errors import CONNECTION_ERRORS

__all__ = ["HeaderBlocks", "Writer"]

#: What a read or a send may raise when the transport is gone: translated through ``CONNECTION_ERRORS``.
LOST = tuple(CONNECTION_ERRORS)

# content-length is computed here; the rest are connection-specific (illegal in HTTP/2).
_DROPPED_HEADERS = frozenset(
    {"content-length", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_FIELD_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*\Z")


class Writer:
    """The one task sending a connection's bytes: everything queued since its last pass, in one write.

    ``on_send(now)`` is called as each write starts (the owner's timer ends a
    write blocked for too long); ``on_progress()`` after each write completes
    (answers waiting for room may queue more). :meth:`run` raises
    :class:`~peerbox.net._io_errors.ConnectionLost` when the transport is gone.
    """

    def __init__(self, conn: h2.connection.H2Connection, stream: trio.abc.Stream, *,
                 on_send: Callable[[float], None], on_progress: Callable[[], None]) -> None:
        self.h2 = conn
        self.stream = stream
        self.on_send = on_send
        self.on_progress = on_progress
        self.out: list[bytes] = []  # bytes taken from h2 by others, sent before h2's next ones
        self.unsent = 0  # bytes queued (as counted by callers) since the writer last took them
        self.wanted = False  # something was queued since the last pass
        self.parked: trio.lowlevel.Task | None = None  # the writer, while nothing is wanted
        self.send_started: float | None = None  # when the write in progress began
        self.closing = False  # stop once what is queued, then ``final``, has been sent
        self.final = b""
        self.scope = trio.CancelScope()
        self.done = trio.Event()

    def kick(self) -> None:
        """Say that h2 holds bytes to send: the writer sends them on its next pass (after this one)."""
        self.wanted = True
        task = self.parked
        if task is not None:
            self.parked = None
            trio.lowlevel.reschedule(task)

    def push(self, data: bytes) -> None:
        """Send ``data`` (bytes already taken from h2) on the next pass, before what h2 queues next."""
        if data:
            self.out.append(data)
            self.kick()

    def close(self, final: bytes = b"") -> None:
        """Stop after sending what is queued, then ``final`` (the first close's is kept)."""
        if not self.closing:
            self.closing = True
            self.final = final
        self.kick()

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self.parked = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def run(self) -> None:
        """Send what is queued, one ``send_all`` per pass, until closed or cancelled (:attr:`scope`)."""
        try:
            with self.scope:
                while True:
                    if not self.wanted:
                        if self.closing:
                            return
                        self.parked = trio.lowlevel.current_task()
                        await trio.lowlevel.wait_task_rescheduled(self._abort)
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
        finally:
            self.send_started = None
            self.done.set()

    async def _send(self, data: bytes) -> None:
        now = trio.current_time()
        self.send_started = now
        self.on_send(now)
        try:
            await self.stream.send_all(data)
        except LOST:
            with map_exceptions(CONNECTION_ERRORS):  # the boundary: raise ConnectionLost from exc
                raise
        self.send_started = None
        self.on_progress()


def _encode(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...] | None:
    """The app's headers as sent (names lower-cased, values stripped, hop-by-hop dropped); None: invalid."""
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


class HeaderBlocks:
    """Builds the HEADERS of answers; remembers the encoding of the last ``size`` distinct header tuples."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.known: dict[tuple[tuple[str, str], ...], tuple[tuple[bytes, bytes], ...] | None] = {}

    def block(self, resp: HttpResponse) -> list[tuple[bytes, bytes]] | None:
        """``:status``, the app's headers and ``content-length``; None if HTTP/2 cannot carry them.

        A header name that is not a token, a value holding a control
        character or a status outside 100-999 is a bug in the app: the
        caller answers 500 instead.
        """
        extra = self.known.get(resp.headers)
        if extra is None and resp.headers not in self.known:
            if len(self.known) >= self.size:
                self.known.clear()
            extra = self.known[resp.headers] = _encode(resp.headers)
        if extra is None or not 100 <= resp.status <= 999:
            return None
        return [(b":status", b"%d" % resp.status), *extra, (b"content-length", b"%d" % len(resp.body))]
