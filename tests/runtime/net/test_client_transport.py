"""The HTTP/2 client transport's deadlines and stream slots, against a small h2 server written here.

One timer task per connection (not a cancel scope per request) fails each
request at its own deadline and resets its stream; a call waiting for a stream
slot (the server's ``max_concurrent_streams``) gives up at its deadline; a
request the server answers before reading its whole body frees its stream, so
such answers never use up the connection's slots; the timer forgets finished
requests. The reader hands each answer straight to its waiting call: hundreds
in flight on one connection each get their own; a connection the server
closes fails every call on it at once; a call its caller cancels frees its
stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import trio

from peerbox.net._client_errors import TransportError
from peerbox.net._h2client import H2Transport


@dataclass
class Server:
    """An h2c server: ``/hang`` never answers, ``/early`` answers 413 at once (before the body),
    ``/drop`` closes the connection (no GOAWAY), anything else echoes the body when it has all of
    it. Counts connections and streams reset."""

    max_streams: int = 100
    connections: int = 0
    resets: int = 0
    port: int = 0
    _hung: set[int] = field(default_factory=set)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        await stream.send_all(conn.data_to_send())
        paths: dict[int, bytes] = {}
        bodies: dict[int, bytearray] = {}

        def answer(sid: int, status: bytes, body: bytes) -> None:
            conn.send_headers(sid, [(b":status", status), (b"content-length", b"%d" % len(body))])
            conn.send_data(sid, body, end_stream=True)

        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    path = dict(event.headers or ()).get(b":path", b"")
                    paths[event.stream_id] = path
                    bodies[event.stream_id] = bytearray()
                    if path == b"/drop":
                        await stream.aclose()
                        return
                    if path == b"/early":
                        answer(event.stream_id, b"413", b"too large")
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    if event.stream_id in bodies:
                        bodies[event.stream_id] += event.data or b""
                elif isinstance(event, h2.events.StreamEnded):
                    if paths.get(event.stream_id) not in (b"/hang", b"/early", None):
                        answer(event.stream_id, b"200", bytes(bodies[event.stream_id]))
                elif isinstance(event, h2.events.StreamReset):
                    self.resets += 1
            await stream.send_all(conn.data_to_send())


async def _started(nursery: trio.Nursery, server: Server) -> str:
    port = await nursery.start(server.serve)
    return f"http://127.0.0.1:{port}"


@pytest.mark.slow
async def test_each_request_times_out_at_its_own_deadline() -> None:
    server = Server()
    async with trio.open_nursery() as nursery:
        url = await _started(nursery, server)
        async with H2Transport() as transport:
            order: list[str] = []

            async def hang(timeout: float) -> None:
                with pytest.raises(TransportError) as info:
                    await transport.post(url, b"x", timeout, path="/hang")
                assert info.value.kind == "timeout" and f"{timeout:g} s" in str(info.value)
                order.append(f"hang {timeout}")

            async def echo(i: int) -> None:
                answer = await transport.post(url, b"%d" % i, 10.0, path="/echo")
                assert (answer.status, answer.body) == (200, b"%d" % i)
                order.append("echo")

            async with trio.open_nursery() as calls:
                calls.start_soon(hang, 1.5)
                calls.start_soon(hang, 0.3)
                for i in range(10):
                    calls.start_soon(echo, i)
            assert order[-2:] == ["hang 0.3", "hang 1.5"] and order.count("echo") == 10
            answer = await transport.post(url, b"after", 5.0, path="/echo")
            assert answer.body == b"after"
            assert transport.connections_opened == 1 == server.connections
        await trio.sleep(0.1)
        assert server.resets == 2  # each timed-out stream was reset: the server's slot is free at once
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_waiting_for_a_stream_slot_gives_up_at_the_deadline() -> None:
    server = Server(max_streams=1)
    async with trio.open_nursery() as nursery:
        url = await _started(nursery, server)
        async with H2Transport() as transport:
            await transport.post(url, b"warm", 5.0, path="/echo")  # the server's settings are known now
            async with trio.open_nursery() as calls:
                calls.start_soon(partial(transport.post, url, b"x", 60.0, path="/hang"))
                await trio.sleep(0.1)
                with pytest.raises(TransportError) as info:
                    await transport.post(url, b"y", 0.3, path="/echo")
                assert info.value.kind == "timeout"
                calls.cancel_scope.cancel()  # the hung call gives its slot back...
            answer = await transport.post(url, b"z", 5.0, path="/echo")  # ...and the next call takes it
            assert answer.body == b"z"
        nursery.cancel_scope.cancel()


async def test_an_answer_before_the_whole_body_frees_the_stream() -> None:
    """The server answers 413 before reading a body larger than the flow-control window; the
    stream is closed (not left half open), so with 2 slots 6 such calls in a row all get their
    answer, and so does the next ordinary call."""
    server = Server(max_streams=2)
    async with trio.open_nursery() as nursery:
        url = await _started(nursery, server)
        async with H2Transport() as transport:
            for _ in range(6):
                answer = await transport.post(url, b"b" * 300_000, 5.0, path="/early")
                assert (answer.status, answer.body) == (413, b"too large")
            assert (await transport.post(url, b"ok", 5.0, path="/echo")).body == b"ok"
            assert transport.connections_opened == 1
        nursery.cancel_scope.cancel()


async def test_the_timer_forgets_finished_requests() -> None:
    """Thousands of calls leave the per-connection deadline heap small (memory stays bounded by the
    calls in flight, not by the calls made within one timeout)."""
    server = Server()
    async with trio.open_nursery() as nursery:
        url = await _started(nursery, server)
        async with H2Transport() as transport:

            async def calls(k: int) -> None:
                for i in range(150):
                    await transport.post(url, b"%d" % i, 30.0, path="/echo")

            async with trio.open_nursery() as inner:
                for k in range(8):
                    inner.start_soon(calls, k)
            (conn,) = transport._conns.values()
            assert len(conn._deadlines) <= 2 * 8 + 64
        nursery.cancel_scope.cancel()


async def test_calls_beyond_the_stream_limit_wait_for_a_slot_and_all_get_answered() -> None:
    server = Server(max_streams=2)
    async with trio.open_nursery() as nursery:
        url = await _started(nursery, server)
        async with H2Transport() as transport:
            await transport.post(url, b"warm", 5.0, path="/echo")  # the server's settings are known now
            answers: list[bytes] = []

            async def echo(i: int) -> None:
                answers.append((await transport.post(url, b"%d" % i, 5.0, path="/echo")).body)

            with trio.fail_after(4):
                async with trio.open_nursery() as calls:
                    for i in range(8):
                        calls.start_soon(echo, i)
            assert sorted(answers) == sorted(b"%d" % i for i in range(8))
            assert transport.connections_opened == 1
        nursery.cancel_scope.cancel()


async def test_many_calls_on_one_connection_each_get_their_own_answer() -> None:
    """300 calls in flight at once on one connection (answers arrive many per read, in any order):
    each call gets exactly its own body back."""
    server = Server(max_streams=1000)
    async with trio.open_nursery() as nursery:
        url = await _started(nursery, server)
        async with H2Transport() as transport:
            await transport.post(url, b"warm", 5.0, path="/echo")
            got: dict[int, bytes] = {}

            async def echo(i: int) -> None:
                got[i] = (await transport.post(url, b"call %d " % i + b"x" * (i % 97), 10.0, path="/echo")).body

            with trio.fail_after(10):
                async with trio.open_nursery() as calls:
                    for i in range(300):
                        calls.start_soon(echo, i)
            assert got == {i: b"call %d " % i + b"x" * (i % 97) for i in range(300)}
            assert transport.connections_opened == 1
        nursery.cancel_scope.cancel()


async def test_a_server_closing_the_connection_fails_the_calls_in_flight() -> None:
    """Calls waiting on a connection the server closes fail at once with a TransportError (not at
    their 30 s deadline); the next call opens a new connection and is answered."""
    server = Server()
    async with trio.open_nursery() as nursery:
        url = await _started(nursery, server)
        async with H2Transport() as transport:
            errors: list[TransportError] = []

            async def hang() -> None:
                with pytest.raises(TransportError) as info:
                    await transport.post(url, b"x", 30.0, path="/hang")
                errors.append(info.value)

            with trio.fail_after(5):
                async with trio.open_nursery() as calls:
                    for _ in range(5):
                        calls.start_soon(hang)
                    await trio.sleep(0.2)  # all five are in flight
                    with pytest.raises(TransportError):
                        await transport.post(url, b"y", 30.0, path="/drop")
            assert len(errors) == 5 and all(e.kind == "protocol" for e in errors)
            assert "closed the connection" in str(errors[0])
            assert (await transport.post(url, b"again", 5.0, path="/echo")).body == b"again"
            assert transport.connections_opened == 2 == server.connections
        nursery.cancel_scope.cancel()


async def test_a_cancelled_call_frees_its_stream_and_the_connection_goes_on() -> None:
    """A call cancelled by its caller (its own cancel scope, no timeout given to the client) resets
    its stream; calls around it on the same connection are answered."""
    server = Server(max_streams=1)
    async with trio.open_nursery() as nursery:
        url = await _started(nursery, server)
        async with H2Transport() as transport:
            await transport.post(url, b"warm", 5.0, path="/echo")
            for i in range(3):
                with trio.move_on_after(0.1) as scope:
                    await transport.post(url, b"x", 30.0, path="/hang")
                assert scope.cancelled_caught
                # the one stream slot is free again: this call would wait 30 s otherwise
                with trio.fail_after(5):
                    assert (await transport.post(url, b"%d" % i, 30.0, path="/echo")).body == b"%d" % i
            assert transport.connections_opened == 1
        await trio.sleep(0.1)
        assert server.resets == 3
        nursery.cancel_scope.cancel()
