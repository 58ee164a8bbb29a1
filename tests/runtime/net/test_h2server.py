"""HTTP/2 server: round trips, multiplexing, limits, floods, timeouts, shutdown.

Most tests drive ``serve_stream`` over in-memory trio streams with an h2
client written here; timeouts use ``MockClock`` (autojump) so they cost no
wall time. One test goes through ``serve`` on a real loopback socket.
"""

from __future__ import annotations

import datetime
from typing import Any
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes

from peerbox.net._h2server import HttpRequest, HttpResponse, ServerLimits, serve, serve_stream


@dataclass
class Answer:
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
    return HttpResponse(
        status=200,
        headers=(("x-method", req.method), ("x-path", req.path)),
        body=req.body or req.path.encode(),
    )


@dataclass
class Served:
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


async def test_serve_over_loopback_socket() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve(echo, host="127.0.0.1", port=0,
                                                             task_status=task_status))
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        c = Client(stream)
        await c.start()
        a = await c.request("POST", "/v1/exec", b"over tcp")
        assert (a.status, bytes(a.body)) == (200, b"over tcp")
        nursery.cancel_scope.cancel()
    await stream.aclose()


def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed cert for 127.0.0.1, and a client trusting it."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "peerbox-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = tmp_path / "cert.pem"
    key_pem = tmp_path / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_pem, key_pem)
    client = ssl.create_default_context(cafile=str(cert_pem))
    return server, client


async def test_tls_with_alpn_h2(tmp_path: Path) -> None:
    server_ctx, client_ctx = tls_contexts(tmp_path)
    client_ctx.set_alpn_protocols(["h2"])
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve(echo, host="127.0.0.1", port=0,
                                                             ssl_context=server_ctx, task_status=task_status))
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(tcp, client_ctx, server_hostname="127.0.0.1")
        await stream.do_handshake()
        assert stream.selected_alpn_protocol() == "h2"
        c = Client(stream)
        await c.start()
        a = await c.request("POST", "/v1/exec", b"over tls")
        assert (a.status, bytes(a.body)) == (200, b"over tls")
        await trio.aclose_forcefully(stream)
        nursery.cancel_scope.cancel()


async def test_tls_without_alpn_h2_is_refused(tmp_path: Path) -> None:
    server_ctx, client_ctx = tls_contexts(tmp_path)
    client_ctx.set_alpn_protocols(["http/1.1"])
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve(echo, host="127.0.0.1", port=0,
                                                             ssl_context=server_ctx, task_status=task_status))
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(tcp, client_ctx, server_hostname="127.0.0.1")
        try:
            await stream.do_handshake()
            assert stream.selected_alpn_protocol() != "h2"
            assert await stream.receive_some() == b""  # closed without a SETTINGS frame
        except trio.BrokenResourceError:
            pass  # a refused handshake is fine too
        await trio.aclose_forcefully(stream)
        nursery.cancel_scope.cancel()


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
