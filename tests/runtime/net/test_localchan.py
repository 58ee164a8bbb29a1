"""Isolated mode's local channel (peerbox.net._localchan): its frames, and its two ends on a real socketpair.

The format is checked sans-IO (round trips fed whole and a byte at a time,
and every refusal: a frame over the limit refused on its length prefix, a
stream that ends inside a frame, fields running past their frame, unknown
kinds). The two ends run over a real Unix ``socketpair`` with a small app:
answers come back in any order to the right caller, a request not answered
in time times out and frees its slot (the late answer is dropped), a child
end that closes or breaks the format fails the requests in flight without
hanging or crashing the router's side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from peerbox.net._http import HttpRequest, HttpResponse
from peerbox.net._localchan import (ChannelBusy, ChannelClient, ChannelClosed, ChannelServer, ChannelTimeout,
                                    FrameDecoder, FrameError, Hello, RequestFrame, ResponseFrame,
                                    encode_hello, encode_request, encode_response)

CT = (("content-type", "application/cose"),)
BIG = 1 << 20


def test_frames_round_trip_fed_whole_or_a_byte_at_a_time() -> None:
    body = bytes(range(256)) * 40
    denied = (("content-type", "application/cose"), ("peerbox-denied-action", "fs.read"))
    wire = (encode_hello()
            + encode_request(7, "POST", "/v1/exec", CT, body, max_frame=BIG)
            + encode_response(7, 403, denied, b"signed", max_frame=BIG)
            + encode_response(0xFFFFFFFF, 200, (), b"", max_frame=BIG))
    denial = ResponseFrame(7, 403, denied, b"signed")
    expected = [Hello(0), RequestFrame(7, "POST", "/v1/exec", CT, body), denial,
                ResponseFrame(0xFFFFFFFF, 200, (), b"")]
    assert FrameDecoder(max_frame=BIG).feed(wire) == expected
    slow = FrameDecoder(max_frame=BIG)
    got = [frame for i in range(len(wire)) for frame in slow.feed(wire[i:i + 1])]
    assert got == expected
    slow.eof()  # nothing left over
    assert denial.header("peerbox-denied-action") == "fs.read"


def test_a_frame_over_the_limit_is_refused_on_its_length_prefix() -> None:
    frame = encode_request(1, "POST", "/v1/exec", CT, b"x" * 200, max_frame=BIG)
    decoder = FrameDecoder(max_frame=100)
    with pytest.raises(FrameError, match="over the limit"):
        decoder.feed(frame[:4])  # refused before any of its body is buffered
    with pytest.raises(FrameError, match="over the limit"):
        encode_request(1, "POST", "/v1/exec", CT, b"x" * 200, max_frame=100)
    with pytest.raises(FrameError, match="over the limit"):
        encode_response(1, 200, CT, b"x" * 200, max_frame=100)
    exact = encode_response(1, 200, (), b"x" * (100 - 8), max_frame=100)  # id, kind, status, count: 8 bytes
    assert len(exact) == 104 and FrameDecoder(max_frame=100).feed(exact)[0] == ResponseFrame(1, 200, (),
                                                                                          b"x" * 92)


@pytest.mark.parametrize("wire, message", [
    (b"\x00\x00\x00\x03abc", "shorter than its header"),
    (b"\x00\x00\x00\x05\x00\x00\x00\x01\x09", "unknown kind"),
    (b"\x00\x00\x00\x06\x00\x00\x00\x00\x03!", "unknown kind"),                 # a HELLO with a payload
    (b"\x00\x00\x00\x06\x00\x00\x00\x01\x02\x00", "runs past"),                 # a status cut short
    (b"\x00\x00\x00\x07\x00\x00\x00\x01\x02\x00\xc8", "before its headers"),
    (b"\x00\x00\x00\x0b\x00\x00\x00\x01\x02\x00\xc8\x01\x05\x00\x00", "runs past its frame"),  # header name
    (b"\x00\x00\x00\x0a\x00\x00\x00\x01\x01\x04\x00\x08PO", "runs past its frame"),           # method, path
])
def test_an_inconsistent_frame_is_refused(wire: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        FrameDecoder(max_frame=BIG).feed(wire)


def test_a_stream_that_ends_inside_a_frame_is_refused() -> None:
    frame = encode_request(3, "POST", "/v1/exec", CT, b"body", max_frame=BIG)
    for cut in (2, 4, len(frame) - 1):
        decoder = FrameDecoder(max_frame=BIG)
        assert decoder.feed(frame[:cut]) == []
        with pytest.raises(FrameError, match="inside a frame"):
            decoder.eof()


# ------------------------------------------------------------------ the two ends


class EchoApp:
    """Answers with the body reversed (``/sleep/MS`` sleeps first, ``/hold`` waits for ``release``)."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.seen: list[int] = []

    async def __call__(self, req: HttpRequest) -> HttpResponse:
        self.seen.append(req.stream_id)
        if req.path.startswith("/sleep/"):
            await trio.sleep(int(req.path.rsplit("/", 1)[1]) / 1000)
        elif req.path == "/hold":
            await self.release.wait()
        elif req.path == "/raise":
            raise RuntimeError("a bug in the app")
        elif req.path == "/huge":
            return HttpResponse(status=200, body=b"x" * 5000)
        return HttpResponse(status=201, headers=(("content-type", req.header("content-type") or ""),),
                            body=req.body[::-1])


@asynccontextmanager
async def pair(app: EchoApp, **client_kw: int) -> AsyncIterator[tuple[ChannelClient, ChannelServer]]:
    """A client and a server end on a real socketpair, both running."""
    a, b = trio.socket.socketpair()
    client = ChannelClient(trio.SocketStream(a), max_frame=4096, max_request=4096, **client_kw)
    server = ChannelServer(trio.SocketStream(b), app, max_frame=4096, max_answer=4096, grace=2.0)
    async with trio.open_nursery() as n:
        n.start_soon(server.run)
        n.start_soon(client.run)
        assert await client.wait_ready()
        yield client, server
        n.cancel_scope.cancel()


async def test_interleaved_requests_each_get_their_own_answer() -> None:
    """Twenty requests in flight at once, answered in reverse order of sending, each to its caller."""
    app = EchoApp()
    answers: dict[int, ResponseFrame] = {}
    async with pair(app) as (client, _):
        async def one(i: int) -> None:
            path = f"/sleep/{(20 - i) * 15}"
            answers[i] = await client.request("POST", path, CT, f"req-{i}".encode(), 10.0)

        async with trio.open_nursery() as n:
            for i in range(20):
                n.start_soon(one, i)
        assert client.in_flight == 0
    assert {i: (a.status, a.header("content-type"), a.body) for i, a in answers.items()} == {
        i: (201, "application/cose", f"req-{i}".encode()[::-1]) for i in range(20)}
    assert len(set(app.seen)) == 20  # twenty distinct request ids


async def test_a_request_not_answered_in_time_times_out_and_frees_its_slot() -> None:
    app = EchoApp()
    async with pair(app) as (client, server):
        with pytest.raises(ChannelTimeout):
            await client.request("POST", "/hold", CT, b"a", 0.2)
        assert client.in_flight == 0 and server.in_flight == 1
        app.release.set()  # the late answer comes, and is dropped
        with trio.fail_after(5):
            while client.late == 0:
                await trio.sleep(0.01)
        answer = await client.request("POST", "/", CT, b"ab", 5.0)
        assert (answer.status, answer.body) == (201, b"ba")


async def test_beyond_its_in_flight_limit_a_request_is_refused_at_once() -> None:
    app = EchoApp()
    async with pair(app, max_in_flight=2) as (client, _), trio.open_nursery() as n:
        for _ in range(2):
            n.start_soon(client.request, "POST", "/hold", CT, b"", 5.0)
        await trio.sleep(0.05)
        with pytest.raises(ChannelBusy):
            await client.request("POST", "/", CT, b"", 5.0)
        app.release.set()


async def test_requests_in_flight_fail_when_the_child_end_closes() -> None:
    app = EchoApp()
    a, b = trio.socket.socketpair()
    client = ChannelClient(trio.SocketStream(a), max_frame=4096, max_request=4096)
    child = trio.SocketStream(b)
    async with trio.open_nursery() as n:
        n.start_soon(client.run)
        await child.send_all(encode_hello())
        assert await client.wait_ready()
        with trio.fail_after(5):
            async with trio.open_nursery() as inner:
                async def ask() -> None:
                    with pytest.raises(ChannelClosed):
                        await client.request("POST", "/", CT, b"", 60.0)

                inner.start_soon(ask)
                inner.start_soon(ask)
                assert await child.receive_some(4096)  # the requests reached the child...
                await child.aclose()                   # ...which dies before answering
        with pytest.raises(ChannelClosed):
            await client.request("POST", "/", CT, b"", 1.0)
        n.cancel_scope.cancel()
    assert app.seen == []


@pytest.mark.parametrize("garbage", [b"\x00\x00\x00\x05\x00\x00\x00\x01\x01",     # a request, to the router
                                     b"\xff\xff\xff\xff",                         # over the limit
                                     b"\x00\x00\x00\x05\x00\x00\x00\x00\x03"])    # a second HELLO
async def test_a_child_that_breaks_the_format_fails_the_channel_not_the_caller(garbage: bytes) -> None:
    a, b = trio.socket.socketpair()
    client = ChannelClient(trio.SocketStream(a), max_frame=4096, max_request=4096)
    child = trio.SocketStream(b)
    faults: list[FrameError] = []

    async def run() -> None:
        try:
            await client.run()
        except FrameError as exc:
            faults.append(exc)

    async with trio.open_nursery() as n:
        n.start_soon(run)
        await child.send_all(encode_hello())
        assert await client.wait_ready()

        async def garble() -> None:
            await child.receive_some(4096)
            await child.send_all(garbage)

        n.start_soon(garble)
        with trio.fail_after(5), pytest.raises(ChannelClosed, match="format"):
            await client.request("POST", "/", CT, b"", 60.0)
    assert len(faults) == 1
    await child.aclose()


async def test_the_server_answers_500_for_an_app_bug_502_for_an_answer_too_large_and_keeps_serving() -> None:
    app = EchoApp()
    async with pair(app) as (client, _):
        bug = await client.request("POST", "/raise", CT, b"", 5.0)
        huge = await client.request("POST", "/huge", CT, b"", 5.0)
        fine = await client.request("POST", "/", CT, b"ok", 5.0)
    assert (bug.status, bug.header("content-type")) == (500, "application/cbor")
    assert (huge.status, huge.header("content-type")) == (502, "application/cbor")
    assert (fine.status, fine.body) == (201, b"ko")


async def test_a_stopped_server_answers_what_it_received_then_ends() -> None:
    app = EchoApp()
    async with pair(app) as (client, server):
        async with trio.open_nursery() as n:
            got: list[ResponseFrame] = []

            async def slow() -> None:
                got.append(await client.request("POST", "/sleep/200", CT, b"xy", 5.0))

            n.start_soon(slow)
            await trio.sleep(0.05)
            server.stop()
        assert [(a.status, a.body) for a in got] == [(201, b"yx")]
        with trio.fail_after(5):  # then the server's end closes: the channel is closed
            while client.closed is None:
                await trio.sleep(0.01)


async def test_the_server_runs_a_few_calls_at_once_and_the_rest_wait_their_turn_in_order() -> None:
    """Like one HTTP/2 connection of a shared worker: max_running at once, the others queued FIFO.

    The calls are let go one at a time, so each freed place goes to the longest waiting call."""
    running, most, order = 0, 0, []
    gates = [trio.Event() for _ in range(6)]

    async def app(req: HttpRequest) -> HttpResponse:
        nonlocal running, most
        running += 1
        most = max(most, running)
        order.append(req.body[0])
        await gates[req.body[0]].wait()
        running -= 1
        return HttpResponse(status=200, body=req.body)

    async def started(n: int) -> None:
        with trio.fail_after(5):
            while len(order) < n:
                await trio.sleep(0.005)

    a, b = trio.socket.socketpair()
    client = ChannelClient(trio.SocketStream(a), max_frame=4096, max_request=4096)
    server = ChannelServer(trio.SocketStream(b), app, max_frame=4096, max_answer=4096, max_running=2)
    async with trio.open_nursery() as n:
        n.start_soon(server.run)
        n.start_soon(client.run)
        assert await client.wait_ready()
        async with trio.open_nursery() as calls:
            for i in range(6):
                calls.start_soon(client.request, "POST", "/", CT, bytes([i]), 5.0)
                await trio.sleep(0.01)  # sent in this order
            await trio.sleep(0.1)
            assert (running, server.in_flight, order) == (2, 6, [0, 1])
            for i in range(4):
                gates[i].set()
                await started(3 + i)
                assert order[2 + i] == 2 + i
            gates[4].set()
            gates[5].set()
        n.cancel_scope.cancel()
    assert most == 2 and order == list(range(6))
