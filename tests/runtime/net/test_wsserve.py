"""The WebSocket listener against well-behaved and hostile clients, over real loopback sockets.

A real trio-websocket client speaks to :func:`serve_ws`; the app is a small
echo (its answers name the request) so the tests see what a client sees:
answers matched by id, refusals with their status, and the close codes a
misbehaving client gets (1003 text, 1009 too big, 4400 malformed frame or a
reused id, 1008 over the failure budget, 1001 on shutdown after in-flight
answers, 1000 when idle).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from trio_websocket import (ConnectionClosed, ConnectionRejected, HandshakeError, WebSocketConnection,
                            open_websocket_url)

from peerbox.net._http import HttpRequest, HttpResponse, ServerLimits
from peerbox.net._wsframe import WsAnswer, decode_answer, encode_request
from peerbox.net._wsserve import CLOSE_BUDGET, CLOSE_GOING_AWAY, CLOSE_PROTOCOL, CLOSE_TEXT, serve_ws

MAX_MESSAGE = 1 << 30  # the test client reads whatever the server sends


class EchoApp:
    """Answers ``POST path`` with the body reversed; ``b"wait"`` blocks until :attr:`release` is set,
    ``b"forged"`` is refused before authentication. Counts the calls it got."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = trio.Event()
        self.started = 0

    async def __call__(self, req: HttpRequest) -> HttpResponse:
        self.calls += 1
        assert req.method == "POST" and req.header("content-type") == "application/cose"
        if req.body.startswith(b"wait"):
            self.started += 1
            await self.release.wait()
        if req.body == b"forged":
            return HttpResponse(status=401, body=b"bad signature", preauth_failure=True)
        return HttpResponse(status=200, headers=(("content-type", "application/cose"), ("x-private", "no")),
                            body=req.path.encode() + b" " + req.body[::-1])


@asynccontextmanager
async def served(app: EchoApp, limits: ServerLimits | None = None) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(lambda task_status: serve_ws(app, "127.0.0.1", 0, limits=limits,
                                                                    task_status=task_status))
        yield url
        nursery.cancel_scope.cancel()


async def answer(ws: WebSocketConnection) -> WsAnswer:
    message = await ws.get_message()
    assert isinstance(message, bytes)
    return decode_answer(message)


async def closed_with(ws: WebSocketConnection) -> int:
    """Read until the server closes; its close code."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await ws.get_message()
    assert info.value.reason is not None
    return int(info.value.reason.code)


async def test_a_request_is_answered_under_its_id_with_status_headers_and_body() -> None:
    app = EchoApp()
    async with served(app) as url, open_websocket_url(url + "/v1/ws", max_message_size=MAX_MESSAGE) as ws:
        await ws.send_message(encode_request(7, "/v1/call", b"abc"))
        got = await answer(ws)
        assert (got.id, got.status, got.body) == (7, 200, b"/v1/call cba")
        assert got.headers == (("content-type", "application/cose"),)  # only the headers that matter


async def test_many_requests_in_flight_on_one_connection_are_answered_by_id_as_they_finish() -> None:
    app = EchoApp()
    async with served(app) as url, open_websocket_url(url + "/v1/ws", max_message_size=MAX_MESSAGE) as ws:
        await ws.send_message(encode_request(1, "/v1/exec", b"wait-1"))
        for i in range(2, 12):
            await ws.send_message(encode_request(i, "/v1/exec", b"n%d" % i))
        got = {(await answer(ws)).id for _ in range(10)}
        assert got == set(range(2, 12))  # the blocked request did not hold the others
        app.release.set()
        assert (await answer(ws)).id == 1


async def test_the_upgrade_is_accepted_only_on_v1_ws() -> None:
    app = EchoApp()
    async with served(app) as url:
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(url + "/other"):
                pass
        assert info.value.status_code == 404


async def test_unknown_path_is_a_404_answer_and_the_connection_stays() -> None:
    app = EchoApp()
    async with served(app) as url, open_websocket_url(url + "/v1/ws", max_message_size=MAX_MESSAGE) as ws:
        await ws.send_message(encode_request(3, "/v1/status", b"x"))
        got = await answer(ws)
        assert (got.id, got.status) == (3, 404)
        await ws.send_message(encode_request(4, "/v1/exec", b"ok"))
        assert (await answer(ws)).status == 200
        assert app.calls == 1  # the unknown path never reached the app


@pytest.mark.parametrize("garbage", [
    b"", b"\xff", b"\x83\x01", b"\xa0",  # truncated, not an array, a map
    b"\x83\x01\x68/v1/exec\x43abc\x00",  # trailing byte
    b"\x83\x18\x01\x68/v1/exec\x43abc",  # id not in its shortest form
    b"\x9f\x01\x68/v1/exec\x43abc\xff",  # indefinite-length array
    b"\x83\x01\x68/v1/exec\x63abc",  # envelope as text
    b"\x83\x1b\x00\x20\x00\x00\x00\x00\x00\x00\x68/v1/exec\x43abc",  # id 2**53
])
async def test_a_malformed_frame_closes_the_connection_with_4400(garbage: bytes) -> None:
    app = EchoApp()
    async with served(app) as url, open_websocket_url(url + "/v1/ws", max_message_size=MAX_MESSAGE) as ws:
        await ws.send_message(garbage)
        assert await closed_with(ws) == CLOSE_PROTOCOL
    assert app.calls == 0


async def test_a_text_message_closes_with_1003() -> None:
    app = EchoApp()
    async with served(app) as url, open_websocket_url(url + "/v1/ws") as ws:
        await ws.send_message("[1, \"/v1/exec\", \"x\"]")
        assert await closed_with(ws) == CLOSE_TEXT


async def test_an_oversize_message_closes_with_1009_and_never_reaches_the_app() -> None:
    app = EchoApp()
    limits = ServerLimits(max_body=1024)
    async with served(app, limits) as url, open_websocket_url(url + "/v1/ws") as ws:
        await ws.send_message(encode_request(1, "/v1/exec", b"x" * 1024))  # at the bound: served
        assert (await answer(ws)).status == 200
        await ws.send_message(encode_request(2, "/v1/exec", b"x" * 4096))
        assert await closed_with(ws) == 1009
    assert app.calls == 1


async def test_reusing_an_id_in_flight_closes_with_4400() -> None:
    app = EchoApp()
    async with served(app) as url, open_websocket_url(url + "/v1/ws") as ws:
        await ws.send_message(encode_request(5, "/v1/exec", b"wait"))
        await ws.send_message(encode_request(5, "/v1/exec", b"again"))
        assert await closed_with(ws) == CLOSE_PROTOCOL


async def test_too_many_in_flight_are_answered_503_with_retry_after() -> None:
    app = EchoApp()
    limits = ServerLimits(max_inflight_per_conn=2, max_queued_per_conn=1)
    async with served(app, limits) as url, open_websocket_url(url + "/v1/ws") as ws:
        for i in range(3):  # two run, one waits
            await ws.send_message(encode_request(i, "/v1/exec", b"wait"))
        await ws.send_message(encode_request(9, "/v1/exec", b"one too many"))
        got = await answer(ws)
        assert (got.id, got.status, got.header("retry-after")) == (9, 503, "1")
        assert app.started == 2  # the third waits for a slot, the fourth never reached the app
        app.release.set()
        assert {(await answer(ws)).id for _ in range(3)} == {0, 1, 2}


async def test_unauthenticated_failures_past_the_budget_close_with_1008_and_bar_the_address() -> None:
    app = EchoApp()
    limits = ServerLimits(max_preauth_failures_per_conn=3, preauth_failure_rate_per_conn=0.001,
                          max_preauth_failures_per_addr=3, preauth_failure_rate_per_addr=0.001)
    async with served(app, limits) as url:
        async with open_websocket_url(url + "/v1/ws") as ws:
            for i in range(4):
                await ws.send_message(encode_request(i, "/v1/exec", b"forged"))
            statuses = []
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    statuses.append((await answer(ws)).status)
            assert info.value.reason is not None and info.value.reason.code == CLOSE_BUDGET
            assert statuses and set(statuses) == {401}  # each refusal was answered before the close
        with pytest.raises((ConnectionClosed, HandshakeError, OSError, trio.BrokenResourceError)):
            async with open_websocket_url(url + "/v1/ws", connect_timeout=5) as ws:
                await ws.send_message(encode_request(1, "/v1/exec", b"fine"))
                await ws.get_message()


async def test_an_abrupt_close_with_requests_in_flight_leaves_the_server_serving() -> None:
    app = EchoApp()
    async with served(app) as url:
        async with open_websocket_url(url + "/v1/ws") as ws:
            for i in range(5):
                await ws.send_message(encode_request(i, "/v1/exec", b"wait"))
            while app.started < 5:
                await trio.sleep(0.01)
            await ws._stream.aclose()  # TCP gone mid-flight, no closing handshake
        async with open_websocket_url(url + "/v1/ws") as again:
            await again.send_message(encode_request(1, "/v1/exec", b"next"))
            assert (await answer(again)).body == b"/v1/exec txen"


async def test_shutdown_answers_requests_in_flight_then_closes_with_1001() -> None:
    app = EchoApp()
    async with trio.open_nursery() as outer:
        server = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[str]) -> None:
            with server:
                await serve_ws(app, "127.0.0.1", 0, task_status=task_status)

        url: str = await outer.start(run)
        async with open_websocket_url(url + "/v1/ws") as ws:
            await ws.send_message(encode_request(1, "/v1/exec", b"wait"))
            while app.started < 1:
                await trio.sleep(0.01)
            server.cancel()  # the worker is told to stop
            await trio.sleep(0.05)
            app.release.set()
            got = await answer(ws)
            assert (got.id, got.status) == (1, 200)
            assert await closed_with(ws) == CLOSE_GOING_AWAY


@pytest.mark.slow
async def test_an_idle_connection_is_closed_normally() -> None:
    app = EchoApp()
    async with served(app, ServerLimits(idle_timeout=0.3)) as url, open_websocket_url(url + "/v1/ws") as ws:
        await ws.send_message(encode_request(1, "/v1/exec", b"x"))
        await answer(ws)
        assert await closed_with(ws) == 1000
