"""An HTTP/2 client for the server tests, written here (not peerbox's), and a way to
connect it to ``serve_stream`` over in-memory trio streams.

``Client`` drives an h2 connection by hand (requests, raw frames, resets,
pings, reading until GOAWAY or EOF); ``connected(app, limits)`` yields a
``Served``: that client, the server's cancel scope (cancel it to shut the server
down gracefully) and the nursery. ``echo`` is the app most tests serve.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trio
import trio.testing
from h2.errors import ErrorCodes

from peerbox.net._h2server import HttpRequest, HttpResponse, ServerLimits, serve_stream

__all__ = ["Answer", "Client", "Served", "connected", "echo"]


@dataclass
class Answer:
    """What the client received on one stream: status, headers, body, and whether it ended or was reset."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None


class Client:
    """A minimal h2 client over any trio stream, recording what it receives."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(cfg)
        self.answers: dict[int, Answer] = {}
        self.goaway: ErrorCodes | int | None = None
        self.goaway_last: int | None = None
        self.eof = False

    async def start(self) -> None:
        self.h2.initiate_connection()
        await self.flush()

    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    def open(self, method: str, path: str, body: bytes = b"", *, end: bool = True,
             headers: list[tuple[str, str]] | None = None) -> int:
        sid = self.h2.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "test")]
        hdrs += headers or []
        self.h2.send_headers(sid, hdrs, end_stream=end and not body)
        if body:
            self.h2.send_data(sid, body, end_stream=end)
        self.answers[sid] = Answer()
        return sid

    async def upload(self, sid: int, body: bytes, *, end: bool = True) -> None:
        """Send ``body`` on ``sid`` in chunks, waiting for WINDOW_UPDATEs as needed."""
        off = 0
        while off < len(body):
            window = self.h2.local_flow_control_window(sid)
            n = min(window, self.h2.max_outbound_frame_size, len(body) - off)
            if n == 0:
                await self.flush()
                await self.pump()
                continue
            self.h2.send_data(sid, body[off : off + n], end_stream=end and off + n == len(body))
            off += n
        await self.flush()

    async def pump(self) -> None:
        """Read once and apply the events (EOF sets ``eof``)."""
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.eof = True
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.eof = True
            return
        for ev in events:
            sid = getattr(ev, "stream_id", None)
            a = self.answers.get(sid) if sid else None
            if isinstance(ev, h2.events.ResponseReceived) and a is not None:
                hd: dict[Any, Any] = dict(ev.headers or [])  # str pairs: the connection decodes headers
                a.status = int(hd.pop(":status"))
                a.headers = hd
            elif isinstance(ev, h2.events.DataReceived) and a is not None:
                a.body += ev.data or b""
                self.h2.acknowledge_received_data(ev.flow_controlled_length or 0, ev.stream_id or 0)
            elif isinstance(ev, h2.events.StreamEnded) and a is not None:
                a.ended = True
            elif isinstance(ev, h2.events.StreamReset) and a is not None:
                a.reset = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev.error_code
                self.goaway_last = ev.last_stream_id
        try:
            await self.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.eof = True

    async def until(self, cond: Callable[[], bool]) -> None:
        while not cond() and not self.eof:
            await self.pump()

    async def done(self, *sids: int) -> None:
        answers = [self.answers[s] for s in sids]
        await self.until(lambda: all(a.ended or a.reset is not None for a in answers))

    async def request(self, method: str, path: str, body: bytes = b"") -> Answer:
        sid = self.open(method, path, end=not body)
        await self.upload(sid, body)
        await self.done(sid)
        return self.answers[sid]


async def echo(req: HttpRequest) -> HttpResponse:
    """Answer 200 with the method and path as headers and the body (or the path) echoed."""
    return HttpResponse(
        status=200,
        headers=(("x-method", req.method), ("x-path", req.path)),
        body=req.body or req.path.encode(),
    )


@dataclass
class Served:
    """What ``connected`` yields: the client, the server's cancel scope and the nursery."""

    client: Client
    server: trio.CancelScope  # cancel it to shut the server side down gracefully
    nursery: trio.Nursery


@asynccontextmanager
async def connected(app: Callable[[HttpRequest], object] = echo,
                    limits: ServerLimits | None = None) -> AsyncIterator[Served]:
    """A client connected to ``serve_stream`` over memory streams."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    scope = trio.CancelScope()

    async def server() -> None:
        with scope:
            await serve_stream(app, server_stream, limits=limits or ServerLimits(),  # type: ignore[arg-type]
                               client="mem", conn_id=1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        c = Client(client_stream)
        await c.start()
        yield Served(c, scope, nursery)
        nursery.cancel_scope.cancel()
