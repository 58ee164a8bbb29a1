"""HTTP/2 server, its sending side: answers that complete together leave in one write, large answers
of concurrent streams interleave, a peer that stops reading mid-answer is dropped by the connection's
one timer, app headers HTTP/2 cannot carry become a 500, and h2load (nobody here wrote it) gets every
answer of 64 streams on two connections.

In-memory tests use ``MockClock`` (autojump) for timeouts; the h2load one uses a real socket.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes

from peerbox.net._h2server import HttpRequest, HttpResponse, ServerLimits, serve, serve_stream

from ._h2_test_client import Client, connected, echo


class CountingStream(trio.abc.Stream):
    """A stream that counts the writes made to it (each ``send_all`` is one system call on a socket)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.writes = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_answers_completed_together_leave_in_one_write() -> None:
    release = trio.Event()
    running = 0

    async def app(req: HttpRequest) -> HttpResponse:
        nonlocal running
        running += 1
        await release.wait()
        return HttpResponse(status=200, body=req.path.encode() * 10)

    client_stream, server_stream = trio.testing.memory_stream_pair()
    counted = CountingStream(server_stream)
    limits = ServerLimits(max_inflight_per_conn=32)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_stream(app, counted, limits=limits, client="mem", conn_id=1))
        c = Client(client_stream)
        await c.start()
        sids = [c.open("GET", f"/{i}") for i in range(32)]
        await c.flush()
        while running < 32:
            await c.pump()
        await trio.testing.wait_all_tasks_blocked()
        before = counted.writes
        release.set()
        await c.done(*sids)
        assert [bytes(c.answers[s].body) for s in sids] == [f"/{i}".encode() * 10 for i in range(32)]
        assert counted.writes - before <= 2  # 32 answers (64 frames), not 32 or 96 writes
        nursery.cancel_scope.cancel()


async def test_large_answers_of_concurrent_streams_interleave() -> None:
    size = 200_000  # three connection windows each: the streams share the connection's window

    async def app(req: HttpRequest) -> HttpResponse:
        return HttpResponse(status=200, body=req.path.encode()[1:2] * size)

    at_first_end: dict[int, int] = {}
    async with connected(app) as s:
        c = s.client
        sids = [c.open("GET", f"/{i}") for i in range(4)]
        await c.flush()
        while not all(c.answers[sid].ended for sid in sids) and not c.eof:
            await c.pump()
            if not at_first_end and any(c.answers[sid].ended for sid in sids):
                at_first_end = {sid: len(c.answers[sid].body) for sid in sids}
        assert [bytes(c.answers[sid].body) for sid in sids] == [str(i).encode() * size for i in range(4)]
        # When the first answer was complete, each of the others had a fair part of its own.
        assert min(at_first_end.values()) >= size // 3, at_first_end


async def test_a_peer_that_stops_reading_mid_answer_is_dropped(
        autojump_clock: trio.testing.MockClock) -> None:
    client_stream, server_stream = trio.testing.lockstep_stream_pair()  # writes block until read
    finished = trio.Event()

    async def app(req: HttpRequest) -> HttpResponse:
        return HttpResponse(status=200, body=b"z" * 300_000)  # more than one window: several writes

    async def server() -> None:
        await serve_stream(app, server_stream, limits=ServerLimits(idle_timeout=30), client="x", conn_id=1)
        finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        c = Client(client_stream)
        await c.start()  # the client's preface first: a cleartext server reads it before it answers
        await c.pump()  # reads the server's SETTINGS, then sends the ACK (lockstep: in turn)
        sid = c.open("GET", "/big")
        await c.flush()
        await c.until(lambda: len(c.answers[sid].body) > 0)  # part of the answer, then no more reading
        t0 = trio.current_time()
        with trio.fail_after(40):
            await finished.wait()  # its next write never completed: the connection's timer ended it
        assert 30 <= trio.current_time() - t0 < 31
        assert 0 < len(c.answers[sid].body) < 300_000 and not c.answers[sid].ended
    await client_stream.aclose()


async def test_a_busy_peer_that_reads_slowly_is_not_dropped(autojump_clock: trio.testing.MockClock) -> None:
    async def app(req: HttpRequest) -> HttpResponse:
        return HttpResponse(status=200, body=b"s" * 300_000)

    async with connected(app, ServerLimits(idle_timeout=30)) as s:
        c = s.client
        sid = c.open("GET", "/slow-reader")
        await c.flush()
        while not c.answers[sid].ended and not c.eof:
            await trio.sleep(20)  # slower than a frame per timeout, but every write completes in time
            await c.pump()
        assert bytes(c.answers[sid].body) == b"s" * 300_000 and c.goaway is None


async def test_app_headers_http2_cannot_carry_become_a_500() -> None:
    async def app(req: HttpRequest) -> HttpResponse:
        if req.path == "/bad-value":
            return HttpResponse(status=200, headers=(("x-note", "two\r\nlines"),), body=b"never sent")
        if req.path == "/bad-name":
            return HttpResponse(status=200, headers=(("x note", "v"),), body=b"never sent")
        return await echo(req)

    async with connected(app) as s:
        c = s.client
        for path in ("/bad-value", "/bad-name"):
            a = await c.request("GET", path)
            assert (a.status, bytes(a.body)) == (500, b"internal error\n")
        ok = await c.request("GET", "/fine")  # the connection is still usable
        assert (ok.status, ok.headers["x-path"]) == (200, "/fine")


async def test_hop_by_hop_headers_of_the_app_are_dropped() -> None:
    async def app(req: HttpRequest) -> HttpResponse:
        return HttpResponse(status=200, headers=(("Connection", "close"), ("X-Kept", " yes "),
                                                 ("Content-Length", "999")), body=b"abc")

    async with connected(app) as s:
        a = await s.client.request("GET", "/")
        assert a.headers == {"x-kept": "yes", "content-length": "3"} and bytes(a.body) == b"abc"


async def test_reset_while_an_answer_waits_for_the_window_drops_only_that_answer() -> None:
    async def app(req: HttpRequest) -> HttpResponse:
        return HttpResponse(status=200, body=b"w" * 200_000)

    async with connected(app) as s:
        c = s.client
        sid = c.open("GET", "/big")
        await c.flush()
        await c.until(lambda: len(c.answers[sid].body) > 0)
        c.h2.reset_stream(sid, ErrorCodes.CANCEL)  # the rest of its answer is waiting for a WINDOW_UPDATE
        await c.flush()
        other = await c.request("GET", "/after")
        assert (other.status, bytes(other.body)) == (200, b"w" * 200_000)


@pytest.mark.slow
async def test_h2load_gets_every_answer_of_64_streams_on_two_connections(tmp_path: Path) -> None:
    if shutil.which("h2load") is None:
        pytest.skip("NOT TESTED: h2load missing (apt-get install nghttp2-client)")
    body = tmp_path / "body.bin"
    body.write_bytes(b"e" * 600)  # about the size of a delegated call's envelope
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve(echo, host="127.0.0.1", port=0,
                                                             task_status=task_status))
        done = await trio.run_process(["h2load", "-n", "3000", "-c", "2", "-m", "64", "-d", str(body),
                                       f"http://127.0.0.1:{port}/v1/exec"], capture_stdout=True)
        text = done.stdout.decode()
        assert "3000 succeeded, 0 failed, 0 errored" in text, text
        assert re.search(r"status codes: 3000 2xx", text), text
        nursery.cancel_scope.cancel()
