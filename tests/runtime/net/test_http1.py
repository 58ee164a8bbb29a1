"""HTTP/1.1 probe connections: the sans-IO parser and router (:mod:`peerbox.net._http1`), and the
cleartext server telling HTTP/1.1 from HTTP/2 on one connection (over in-memory streams)."""

from __future__ import annotations

import re

import trio
import trio.testing

from peerbox.net._h2server import HttpRequest, HttpResponse, ServerLimits, serve_stream
from peerbox.net._http1 import (Answer, Forward, Http1Error, Http1Limits, Http1Parser, Http1Request, Phase,
                                is_h2_preface, might_be_h2_preface, render, route)

from ._h2_test_client import connected


def parse(data: bytes, limits: Http1Limits | None = None) -> Http1Request | Http1Error | None:
    p = Http1Parser(limits)
    p.feed(data)
    return p.next_event()


def test_the_preface_decides_and_a_prefix_waits_for_more() -> None:
    assert is_h2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00")
    assert not is_h2_preface(b"GET / HTTP/1.1\r\n")
    assert might_be_h2_preface(b"PRI * HT") and not might_be_h2_preface(b"PRX")
    assert not might_be_h2_preface(b"GET")


def test_a_get_parses_with_its_headers_and_keep_alive() -> None:
    req = parse(b"GET /v1/health?x=1 HTTP/1.1\r\nHost: a\r\nX-Thing:  v \r\n\r\n")
    assert isinstance(req, Http1Request)
    assert (req.method, req.path, req.version) == ("GET", "/v1/health?x=1", "HTTP/1.1")
    assert req.header("x-thing") == "v" and req.keep_alive and not req.has_body


def test_http10_closes_unless_asked_and_11_keeps_unless_asked() -> None:
    r10 = parse(b"GET /metrics HTTP/1.0\r\n\r\n")
    r11 = parse(b"GET /metrics HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
    assert isinstance(r10, Http1Request) and not r10.keep_alive
    assert isinstance(r11, Http1Request) and not r11.keep_alive


def test_pipelined_requests_come_out_one_by_one_and_partial_heads_wait() -> None:
    p = Http1Parser()
    p.feed(b"GET /v1/health HTTP/1.1\r\nhost: a\r\n\r\nGET /metrics HTTP/1.1\r\nho")
    first, second = p.next_event(), p.next_event()
    assert isinstance(first, Http1Request) and first.path == "/v1/health" and second is None
    p.feed(b"st: a\r\n\r\n")
    third = p.next_event()
    assert isinstance(third, Http1Request) and third.path == "/metrics"


def test_malformed_heads_are_errors_that_close() -> None:
    cases = {b"GET /x HTTP/1.1\r\n\r\n": 400,  # no host
             b"GET /x HTTP/3.0\r\nhost: a\r\n\r\n": 505,
             b"G(T /x HTTP/1.1\r\nhost: a\r\n\r\n": 400,
             b"GET /x HTTP/1.1\r\nhost: a\r\n folded\r\n\r\n": 400,
             b"GET /x HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n": 400,
             b"GET x HTTP/1.1\r\nhost: a\r\n\r\n": 400}
    for data, status in cases.items():
        p = Http1Parser()
        p.feed(data)
        event = p.next_event()
        assert isinstance(event, Http1Error) and event.status == status, data
        assert p.phase is Phase.CLOSED and p.next_event() is None


def test_a_head_over_the_limit_is_431_before_it_ends() -> None:
    p = Http1Parser(Http1Limits(max_head=1024))
    p.feed(b"GET /v1/health HTTP/1.1\r\nhost: a\r\nx: " + b"y" * 2000)
    event = p.next_event()
    assert isinstance(event, Http1Error) and event.status == 431


def test_routes_probes_refuse_envelopes_with_426_and_the_rest_404() -> None:
    def req(method: str, path: str) -> Http1Request:
        return Http1Request(method=method, path=path, version="HTTP/1.1", headers=(), keep_alive=True,
                            has_body=False)

    assert route(req("GET", "/v1/ready")) == Forward("/v1/ready")
    assert route(req("HEAD", "/metrics")) == Forward("/metrics")
    exec_post = route(req("POST", "/v1/exec"))
    assert isinstance(exec_post, Answer) and exec_post.status == 426 and "HTTP/2" in exec_post.message
    wrong_method, elsewhere = route(req("POST", "/v1/health")), route(req("GET", "/v1/peers"))
    assert isinstance(wrong_method, Answer) and wrong_method.status == 405
    assert isinstance(elsewhere, Answer) and elsewhere.status == 404


def test_render_frames_the_body_and_head_leaves_it_out() -> None:
    full = render(200, (("content-type", "text/plain"), ("x-bad", "a\r\nb")), b"hello", close=True)
    head, _, body = full.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 5" in head
    assert b"connection: close" in head and b"x-bad" not in head and body == b"hello"
    assert render(200, (), b"hello", head_only=True).endswith(b"\r\n\r\n")


async def app(req: HttpRequest) -> HttpResponse:
    return HttpResponse(status=200, headers=(("content-type", "text/plain"),), body=f"{req.path}\n".encode())


async def test_one_listener_serves_http1_probes_and_h2_alike() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_stream(app, server, limits=ServerLimits(), client="mem", conn_id=1))
        await client.send_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n"
                              b"HEAD /metrics HTTP/1.1\r\nhost: x\r\n\r\n"
                              b"POST /v1/exec HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc")
        got = b""
        while True:
            chunk = await client.receive_some(65536)
            if not chunk:
                break
            got += chunk
    answers = re.split(rb"HTTP/1\.1 (?=\d{3} )", got)[1:]
    assert [a[:3] for a in answers] == [b"200", b"200", b"426"]
    assert answers[0].endswith(b"\r\n\r\n/v1/health\n") and answers[1].endswith(b"\r\n\r\n")
    assert b"connection: close" in answers[2] and b"needs HTTP/2" in answers[2]
    async with connected(app) as s:  # and HTTP/2 with prior knowledge on the same kind of connection
        assert (await s.client.request("GET", "/v1/health")).status == 200


async def test_a_silent_http1_connection_is_closed_after_the_read_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_stream(app, server, limits=ServerLimits(), client="mem", conn_id=1))
        await client.send_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\nGET /v1/he")
        t0 = trio.current_time()
        got = b""
        while chunk := await client.receive_some(65536):
            got += chunk
        assert 10 <= trio.current_time() - t0 < 11  # the default Http1Limits.read_timeout
    assert got.count(b"HTTP/1.1 200") == 1 and b"HTTP/1.1 408" in got
