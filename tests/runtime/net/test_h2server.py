"""HTTP/2 server: round trips, multiplexing, bounded bodies and in-flight requests,
app errors, protocol violations and graceful shutdown.

Tests drive ``serve_stream`` over in-memory trio streams with the h2 client of
_h2_test_client.py; timeouts use ``MockClock`` (autojump) so they cost no wall
time. Hostile peers are in test_h2server_hostile.py, real sockets and TLS in
test_h2server_sockets.py.
"""

from __future__ import annotations


import trio
import trio.testing
from h2.errors import ErrorCodes

from peerbox.net._h2server import HttpRequest, HttpResponse, ServerLimits

from ._h2_test_client import connected


async def test_get_and_post_round_trip() -> None:
    async with connected() as s:
        c = s.client
        a = await c.request("GET", "/v1/health")
        assert (a.status, bytes(a.body)) == (200, b"/v1/health")
        assert a.headers["x-method"] == "GET"
        assert a.headers["content-length"] == str(len(a.body))
        # Larger than both 64 KiB windows: flow control in both directions.
        b = await c.request("POST", "/v1/exec", b"x" * 300_000)
        assert (b.status, bytes(b.body)) == (200, b"x" * 300_000)


async def test_multiplexed_streams_answer_out_of_order() -> None:
    order: list[str] = []

    async def app(req: HttpRequest) -> HttpResponse:
        await trio.sleep(float(req.path.strip("/")) / 100)
        order.append(req.path)
        return HttpResponse(status=200, body=req.path.encode())

    async with connected(app) as s:
        c = s.client
        sids = [c.open("GET", f"/{d}") for d in (5, 1, 3, 2, 4)]
        await c.flush()
        await c.done(*sids)
        assert [bytes(c.answers[i].body) for i in sids] == [b"/5", b"/1", b"/3", b"/2", b"/4"]
        assert order == ["/1", "/2", "/3", "/4", "/5"]


async def test_oversized_body_gets_413_without_app_call() -> None:
    calls: list[HttpRequest] = []

    async def app(req: HttpRequest) -> HttpResponse:
        calls.append(req)
        return HttpResponse(status=200)

    async with connected(app, ServerLimits(max_body=1000)) as s:
        c = s.client
        a = await c.request("POST", "/v1/exec", b"y" * 5000)  # no content-length: counted as it arrives
        assert a.status == 413
        sid = c.open("POST", "/v1/exec", end=False, headers=[("content-length", "999999")])
        await c.flush()
        await c.done(sid)
        assert c.answers[sid].status == 413
        ok = await c.request("POST", "/v1/exec", b"z" * 1000)  # the limit itself is fine
        assert ok.status == 200
    assert [len(r.body) for r in calls] == [1000]


async def test_requests_beyond_inflight_wait_in_a_bounded_queue() -> None:
    running, peak = 0, 0
    release = trio.Event()

    async def app(req: HttpRequest) -> HttpResponse:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return HttpResponse(status=200, body=req.path.encode())

    async with connected(app, ServerLimits(max_inflight_per_conn=2, max_queued_per_conn=3)) as s:
        c = s.client
        sids = [c.open("GET", f"/{i}") for i in range(6)]
        await c.flush()
        await c.done(sids[5])  # 2 running + 3 queued: the sixth is refused
        assert c.answers[sids[5]].status == 503
        c.h2.reset_stream(sids[2], ErrorCodes.CANCEL)  # a queued one leaves the queue
        await c.flush()
        await trio.testing.wait_all_tasks_blocked()
        release.set()
        await c.done(*sids[:2], *sids[3:5])
        assert [bytes(c.answers[sids[i]].body) for i in (0, 1, 3, 4)] == [b"/0", b"/1", b"/3", b"/4"]
        assert peak == 2


async def test_buffered_bodies_per_connection_are_bounded() -> None:
    async with connected(limits=ServerLimits(max_body=1000, max_buffered_per_conn=2500)) as s:
        c = s.client
        sids = [c.open("POST", "/v1/exec", b"b" * 900, end=False) for _ in range(3)]
        await c.flush()
        await c.done(sids[2])
        assert c.answers[sids[2]].status == 503
        for sid in sids[:2]:
            c.h2.end_stream(sid)
        await c.flush()
        await c.done(*sids[:2])
        assert [bytes(c.answers[i].body) for i in sids[:2]] == [b"b" * 900] * 2


async def test_503_beyond_max_inflight_per_connection() -> None:
    release = trio.Event()

    async def app(req: HttpRequest) -> HttpResponse:
        await release.wait()
        return HttpResponse(status=200)

    async with connected(app, ServerLimits(max_inflight_per_conn=2, max_queued_per_conn=0)) as s:
        c = s.client
        first = [c.open("GET", "/slow") for _ in range(2)]
        await c.flush()
        await trio.testing.wait_all_tasks_blocked()
        extra = c.open("GET", "/more")
        await c.flush()
        await c.done(extra)
        assert c.answers[extra].status == 503
        assert c.answers[extra].headers["retry-after"] == "1"
        release.set()
        await c.done(*first)
        assert [c.answers[i].status for i in first] == [200, 200]


async def test_protocol_violation_closes_only_that_connection() -> None:
    async with connected() as good, connected() as bad:
        ping_on_stream_1 = b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + bytes(8)  # PING must use stream 0
        await bad.client.send_raw(ping_on_stream_1)
        await bad.client.until(lambda: False)
        assert bad.client.goaway == ErrorCodes.PROTOCOL_ERROR
        assert (await good.client.request("GET", "/still")).status == 200


async def test_app_exception_is_500_and_connection_stays_usable() -> None:
    async def app(req: HttpRequest) -> HttpResponse:
        if req.path == "/boom":
            raise RuntimeError("bug in the app")
        return HttpResponse(status=200)

    async with connected(app) as s:
        assert (await s.client.request("GET", "/boom")).status == 500
        assert (await s.client.request("GET", "/ok")).status == 200


async def test_graceful_shutdown_finishes_inflight_and_refuses_new(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def app(req: HttpRequest) -> HttpResponse:
        await trio.sleep(5)
        return HttpResponse(status=200, body=b"done")

    async with connected(app) as s:
        c = s.client
        slow = c.open("GET", "/slow")
        await c.flush()
        await trio.testing.wait_all_tasks_blocked()
        s.server.cancel()
        await trio.testing.wait_all_tasks_blocked()
        late = c.open("GET", "/late")
        await c.flush()
        await c.done(slow, late)
        assert c.answers[late].reset == ErrorCodes.REFUSED_STREAM
        assert (c.answers[slow].status, bytes(c.answers[slow].body)) == (200, b"done")
        await c.until(lambda: False)  # then GOAWAY naming the last stream served, and close
        assert (c.goaway, c.goaway_last) == (ErrorCodes.NO_ERROR, slow)


async def test_shutdown_grace_bounds_a_stuck_app(autojump_clock: trio.testing.MockClock) -> None:
    async def app(req: HttpRequest) -> HttpResponse:
        await trio.sleep(1000)
        return HttpResponse(status=200)

    async with connected(app, ServerLimits(shutdown_grace=3)) as s:
        c = s.client
        sid = c.open("GET", "/stuck")
        await c.flush()
        await trio.testing.wait_all_tasks_blocked()
        t0 = trio.current_time()
        s.server.cancel()
        await c.done(sid)
        assert c.answers[sid].status == 503
        assert trio.current_time() - t0 < 4


async def test_reset_stream_does_not_cancel_its_app_call() -> None:
    started, release = trio.Event(), trio.Event()
    finished: list[str] = []

    async def app(req: HttpRequest) -> HttpResponse:
        if req.path == "/slow":
            started.set()
            await release.wait()
            finished.append(req.path)
        return HttpResponse(status=200)

    async with connected(app) as s:
        c = s.client
        sid = c.open("GET", "/slow")
        await c.flush()
        await started.wait()
        c.h2.reset_stream(sid, ErrorCodes.CANCEL)
        await c.flush()
        assert (await c.request("GET", "/other")).status == 200
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert finished == ["/slow"]
        assert (await c.request("GET", "/again")).status == 200
