"""HTTP/2 server against hostile peers: reset, ping, header and CONTINUATION floods,
idle and slow connections, a peer that never reads, and pre-authentication
failure budgets (per connection and per address).

Timeouts use ``MockClock`` (autojump) so they cost no wall time.
"""

from __future__ import annotations


import trio
import trio.testing
from h2.errors import ErrorCodes

from peerbox.net._h2server import HttpRequest, HttpResponse, ServerLimits, serve, serve_stream

from ._h2_test_client import Client, connected, echo


async def test_rapid_reset_flood_gets_goaway_while_others_are_served() -> None:
    async with connected(limits=ServerLimits(max_resets_per_sec=20)) as good, \
            connected(limits=ServerLimits(max_resets_per_sec=20)) as bad:
        c = bad.client
        for _ in range(100):
            sid = c.open("POST", "/v1/exec", end=False)
            c.h2.reset_stream(sid, ErrorCodes.CANCEL)
        await c.flush()
        await c.until(lambda: False)  # until the server closes
        assert c.goaway == ErrorCodes.ENHANCE_YOUR_CALM
        assert (await good.client.request("GET", "/fine")).status == 200


async def test_thousand_resets_with_default_limits_cut_the_client_off() -> None:
    async with connected() as s:
        c = s.client
        for _ in range(1000):
            sid = c.open("GET", "/v1/health")
            c.h2.reset_stream(sid, ErrorCodes.CANCEL)
        await c.flush()
        await c.until(lambda: False)
        assert c.goaway == ErrorCodes.ENHANCE_YOUR_CALM


async def test_ping_flood_gets_goaway() -> None:
    async with connected(limits=ServerLimits(max_pings_settings_per_sec=10)) as s:
        c = s.client
        for i in range(30):
            c.h2.ping(i.to_bytes(8, "big"))
        await c.flush()
        await c.until(lambda: False)
        assert c.goaway == ErrorCodes.ENHANCE_YOUR_CALM


async def test_oversized_header_block_is_refused() -> None:
    calls: list[HttpRequest] = []

    async def app(req: HttpRequest) -> HttpResponse:
        calls.append(req)
        return HttpResponse(status=200)

    async with connected(app, ServerLimits(max_header_list_size=4096)) as s:
        c = s.client
        # 40 KB of headers: h2 splits it into HEADERS + CONTINUATION frames.
        c.open("GET", "/", headers=[(f"x-h{i}", "v" * 1000) for i in range(40)])
        await c.flush()
        await c.until(lambda: False)
        assert c.goaway is not None and c.goaway != ErrorCodes.NO_ERROR
    assert calls == []


async def test_continuation_flood_is_refused() -> None:
    from hyperframe.frame import ContinuationFrame, HeadersFrame

    async with connected() as s:
        c = s.client
        await c.flush()
        frames = HeadersFrame(1, data=b"").serialize()  # no END_HEADERS: a CONTINUATION must follow
        frames += b"".join(ContinuationFrame(1, data=b"").serialize() for _ in range(200))
        await c.send_raw(frames)
        await c.until(lambda: False)
        assert c.goaway is not None and c.goaway != ErrorCodes.NO_ERROR


async def test_idle_connection_is_closed(autojump_clock: trio.testing.MockClock) -> None:
    async with connected(limits=ServerLimits(idle_timeout=30)) as s:
        c = s.client
        assert (await c.request("GET", "/one")).status == 200
        t0 = trio.current_time()
        await c.until(lambda: False)
        assert c.goaway == ErrorCodes.NO_ERROR
        assert 30 <= trio.current_time() - t0 < 31


async def test_busy_connection_is_not_idle(autojump_clock: trio.testing.MockClock) -> None:
    async def app(req: HttpRequest) -> HttpResponse:
        await trio.sleep(100)
        return HttpResponse(status=204)

    async with connected(app, ServerLimits(idle_timeout=30)) as s:
        assert (await s.client.request("GET", "/long")).status == 204


async def test_slow_body_times_out(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[HttpRequest] = []

    async def app(req: HttpRequest) -> HttpResponse:
        calls.append(req)
        return HttpResponse(status=200)

    async with connected(app, ServerLimits(body_timeout=5)) as s:
        c = s.client
        sid = c.open("POST", "/v1/exec", b"part", end=False)
        await c.flush()
        t0 = trio.current_time()
        await c.done(sid)
        assert c.answers[sid].status == 408
        assert 5 <= trio.current_time() - t0 < 6
        assert (await c.request("GET", "/after")).status == 200
    assert [r.path for r in calls] == ["/after"]


async def test_peer_that_never_reads_is_dropped(autojump_clock: trio.testing.MockClock) -> None:
    client_stream, server_stream = trio.testing.lockstep_stream_pair()  # writes block until read
    finished = trio.Event()

    async def server() -> None:
        await serve_stream(echo, server_stream, limits=ServerLimits(idle_timeout=30), client="x", conn_id=1)
        finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        t0 = trio.current_time()
        with trio.fail_after(31):
            await finished.wait()  # the server's SETTINGS were never read: it gave up
        assert trio.current_time() - t0 >= 30
    await client_stream.aclose()


# ------------------------------------------------------------------ pre-authentication failure budgets


async def refuse_unsigned(req: HttpRequest) -> HttpResponse:
    """An app that refuses POSTs as a worker refuses forgeries, and answers GETs."""
    if req.method == "POST":
        return HttpResponse(status=401, body=b"bad signature", preauth_failure=True)
    return HttpResponse(status=200, body=b"fine")


async def test_a_connection_over_its_failure_budget_gets_goaway_enhance_your_calm() -> None:
    limits = ServerLimits(max_preauth_failures_per_conn=3, preauth_failure_rate_per_conn=0.001)
    async with connected(refuse_unsigned, limits) as s:
        c = s.client
        for _ in range(3):
            assert (await c.request("POST", "/v1/exec", b"junk")).status == 401
        for _ in range(20):  # answers that are not failures are never charged
            assert (await c.request("GET", "/v1/health")).status == 200
        last = await c.request("POST", "/v1/exec", b"junk")
        assert last.status == 401  # the answer goes out, then the connection ends
        await c.until(lambda: False)
        assert c.goaway == ErrorCodes.ENHANCE_YOUR_CALM


async def test_an_address_over_budget_is_refused_new_connections_but_keeps_good_ones() -> None:
    limits = ServerLimits(max_preauth_failures_per_addr=4, preauth_failure_rate_per_addr=0.001)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve(refuse_unsigned, host="127.0.0.1", port=0,
                                                             limits=limits, task_status=task_status))
        good = Client(await trio.open_tcp_stream("127.0.0.1", port))  # connected before the flood
        await good.start()
        assert (await good.request("GET", "/v1/health")).status == 200
        bad = Client(await trio.open_tcp_stream("127.0.0.1", port))
        await bad.start()
        statuses = []
        for _ in range(5):
            a = await bad.request("POST", "/v1/exec", b"junk")
            statuses.append(a.status)
            if bad.eof or bad.goaway is not None:
                break
        await bad.until(lambda: False)
        assert bad.goaway == ErrorCodes.ENHANCE_YOUR_CALM and statuses == [401] * 5
        late = Client(await trio.open_tcp_stream("127.0.0.1", port))  # the same address, now over budget
        await late.start()
        await late.until(lambda: False)
        assert late.eof and not late.answers and late.goaway is None  # closed at once, unread
        for _ in range(5):
            assert (await good.request("GET", "/v1/health")).status == 200
        nursery.cancel_scope.cancel()
