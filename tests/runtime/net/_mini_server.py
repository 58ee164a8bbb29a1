"""A small HTTP/2 server for the client tests, and the peers it answers for.

``MiniServer`` speaks just enough h2c (prior knowledge) to answer POSTs with an
app and counts connections (it can drop them all, or refuse a connection's
first request with GOAWAY); ``World`` is alice and bob under one root with bob
answering through an ``ExecHandler``; ``ServerThread`` runs a ``MiniServer`` on
its own trio loop in a thread, for the sync client and the CLI. The ``world``
and ``served`` fixtures (tests/runtime/net/conftest.py) build them.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import trio

import peerbox
from peerbox.peer import Contexts, Directory
from peerbox.trust import ExecHandler

__all__ = ["App", "MiniServer", "ServerThread", "World", "free_port", "start"]

App = Callable[[str, bytes], Awaitable[tuple[int, bytes]]]


class MiniServer:
    """Just enough HTTP/2 (h2c prior knowledge) to answer POSTs with ``app``; counts connections."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._streams: list[trio.SocketStream] = []
        self.refuse_connections = 0

    def close_all(self) -> None:
        """Drop every connection abruptly (no GOAWAY), like a crashed or restarted worker."""
        for stream in self._streams:
            with contextlib.suppress(OSError):
                stream.socket.shutdown(socket.SHUT_RDWR)
        self._streams.clear()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        self._streams.append(stream)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        lock = trio.Lock()
        paths: dict[int, str] = {}
        bodies: dict[int, bytearray] = {}

        async def flush() -> None:
            async with lock:
                data = conn.data_to_send()
                if data:
                    await stream.send_all(data)

        async def respond(sid: int) -> None:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                status, body = await self.app(paths[sid], bytes(bodies.pop(sid)))
            finally:
                self.in_flight -= 1
            conn.send_headers(sid, [(b":status", str(status).encode()),
                                    (b"content-type", b"application/cose"),
                                    (b"content-length", str(len(body)).encode())])
            conn.send_data(sid, body, end_stream=True)
            await flush()

        try:
            await flush()
            async with trio.open_nursery() as nursery:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    for ev in conn.receive_data(data):
                        if isinstance(ev, h2.events.RequestReceived) and self.refuse_connections > 0:
                            self.refuse_connections -= 1  # GOAWAY before processing anything: retryable
                            conn.close_connection(last_stream_id=0)
                            await flush()
                            return
                        if isinstance(ev, h2.events.RequestReceived):
                            paths[ev.stream_id] = dict(ev.headers or [])[b":path"].decode()
                            bodies[ev.stream_id] = bytearray()
                        elif isinstance(ev, h2.events.DataReceived):
                            bodies[ev.stream_id] += ev.data or b""
                            conn.acknowledge_received_data(ev.flow_controlled_length or 0, ev.stream_id)
                        elif isinstance(ev, h2.events.StreamEnded):
                            nursery.start_soon(respond, ev.stream_id)
                    await flush()
                nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


class World:
    """alice and bob under one root; bob answers through ``handler``; the directory knows bob."""

    def __init__(self, root: Path, policy: str) -> None:
        self.root = root
        self.store = peerbox.PeerStore(root)
        self.alice = self.store.init("alice")
        self.bob = self.store.init("bob")
        (root / "peers" / "bob" / "policy.toml").write_text(policy)
        self.contexts = Contexts(root)
        self.handler = ExecHandler(self.contexts.get("bob"), self.contexts.store)
        self.directory = Directory(root)
        self.tamper = False
        self.delay = 0.0

    async def app(self, path: str, body: bytes) -> tuple[int, bytes]:
        """bob's answer to one POST as a worker gives it: (HTTP status, body); tampered if asked.

        ``/v1/exec``, ``/v1/call`` and ``/v1/revoke`` go to the handler's
        ``handle``, ``handle_call`` and ``handle_revoke``; a signed denial is 403,
        a signed ``rate_limited`` reply 429, any other signed reply 200.
        """
        handle = {"/v1/exec": self.handler.handle, "/v1/call": self.handler.handle_call,
                  "/v1/revoke": self.handler.handle_revoke}[path]
        if self.delay:
            await trio.sleep(self.delay)
        handled = await trio.to_thread.run_sync(handle, body)
        if handled.outcome == "rejected":
            kind = (handled.error or {}).get("kind")
            return {"replay": 409, "bad_signature": 401}.get(str(kind), 400), handled.body
        out = handled.body
        if self.tamper:
            out = out[:-1] + bytes([out[-1] ^ 1])
        return {"denied": 403, "rate_limited": 429}.get(str(handled.outcome), 200), out

    def close(self) -> None:
        self.handler.close()
        self.contexts.close()


async def start(world: World, nursery: trio.Nursery) -> MiniServer:
    """Serve ``world.app`` from a MiniServer in ``nursery``; the directory's bob points at it."""
    server = MiniServer(world.app)
    port = await nursery.start(server.serve)
    world.directory.add("bob", world.bob.did, f"http://127.0.0.1:{port}", replace=True)
    return server


def free_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


class ServerThread:
    """The mini server on its own trio loop in a thread (for the sync client and the CLI)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.port = 0
        self.server: MiniServer | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        self._ready.wait(10)
        world.directory.add("bob", world.bob.did, f"http://127.0.0.1:{self.port}", replace=True)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._cancel = scope
            async with trio.open_nursery() as nursery:
                self.server = MiniServer(self.world.app)
                self.port = await nursery.start(self.server.serve)
                self._ready.set()

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None:
            trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        self._thread.join(10)
