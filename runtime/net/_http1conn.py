"""The I/O of HTTP/1.1 probe connections: telling HTTP/2 from HTTP/1.1, and serving HTTP/1.1.

:func:`sniff` reads the first bytes of a cleartext connection, usually in the
one read HTTP/2 would have made anyway (a client's preface and SETTINGS arrive
together), so the HTTP/2 path pays one comparison of 24 bytes and nothing
else; the bytes read are handed on to whichever side serves the connection.
:func:`serve_http1` drives :class:`~peerbox.net._http1.Http1Parser` over a
trio stream: one request at a time, each answered before the next is read
(pipelined requests wait in the parser), the app called only for
:func:`~peerbox.net._http1.route`'s :class:`~peerbox.net._http1.Forward`.
Transport failures end the connection quietly (:class:`~peerbox.net._io_errors.ConnectionLost`).
"""

from __future__ import annotations

import logging

import trio

from .._errors import map_exceptions
from ._http import App, HttpRequest, HttpResponse
from ._http1 import (Answer, Forward, Http1Error, Http1Limits, Http1Parser, Http1Request, might_be_h2_preface,
                     render, route, text_answer)
from ._io_errors import CONNECTION_ERRORS, ConnectionLost

__all__ = ["sniff", "serve_http1", "DEFAULT_HTTP1"]

log = logging.getLogger("peerbox.h2server")

DEFAULT_HTTP1 = Http1Limits()
#: Unread request-body bytes drained (at most) before closing, so the answer is not lost to a reset.
_LINGER_BYTES = 1 << 20
_LINGER_SECONDS = 1.0


async def sniff(stream: trio.abc.Stream, timeout: float) -> bytes:
    """The first bytes of ``stream``: read until they are, or cannot be, HTTP/2's preface.

    Returns ``b""`` when the client closed, or sent nothing whole enough to decide within
    ``timeout`` s (the server then closes the connection). Raises
    :class:`~peerbox.net._io_errors.ConnectionLost` if the transport fails.
    """
    data = b""
    with trio.move_on_after(timeout):
        while not data or might_be_h2_preface(data):
            with map_exceptions(CONNECTION_ERRORS):
                chunk = await stream.receive_some(65536)
            if not chunk:
                return b""
            data += bytes(chunk)
        return data
    return b""


async def serve_http1(app: App, stream: trio.abc.Stream, first: bytes, *, client: str, conn_id: int,
                      limits: Http1Limits = DEFAULT_HTTP1, send_timeout: float = 10.0) -> None:
    """Serve HTTP/1.1 probe requests on ``stream`` (whose first bytes, already read, are ``first``)
    until the client closes, asks to close, goes quiet for ``limits.read_timeout``, sends what does
    not parse, or reaches ``limits.max_requests``; then close the stream. Never raises for network
    or protocol trouble (nor for input of any kind); cancellation closes the connection."""
    parser = Http1Parser(limits)
    parser.feed(first)
    served = 0
    try:
        while True:
            event = parser.next_event()
            if event is None:
                data = b""
                with trio.move_on_after(limits.read_timeout) as scope, map_exceptions(CONNECTION_ERRORS):
                    data = bytes(await stream.receive_some(65536))
                if scope.cancelled_caught:
                    if parser.buffered:
                        timed_out = text_answer(408, "request head timeout", close=True)
                        await _send(stream, timed_out, send_timeout)
                    return
                if not data:
                    return
                parser.feed(data)
                continue
            if isinstance(event, Http1Error):
                log.info("conn %d (%s): HTTP/1.1 %d: %s", conn_id, client, event.status, event.message)
                await _send(stream, text_answer(event.status, event.message, close=True), send_timeout)
                return
            served += 1
            close = not event.keep_alive or event.has_body or served >= limits.max_requests
            await _send(stream, await _answer(app, event, client, conn_id, served, close), send_timeout)
            if close:
                if event.has_body:
                    await _linger(stream)
                return
    except ConnectionLost as exc:
        log.debug("conn %d (%s): transport closed: %s", conn_id, client, exc)
    finally:
        await trio.aclose_forcefully(stream)


async def _answer(app: App, req: Http1Request, client: str, conn_id: int, n: int, close: bool) -> bytes:
    head = req.method == "HEAD"
    decided = route(req)
    if isinstance(decided, Answer):
        return text_answer(decided.status, decided.message, decided.headers, head_only=head, close=close)
    assert isinstance(decided, Forward)
    try:
        resp: HttpResponse = await app(HttpRequest(method="GET", path=decided.path, headers=req.headers,
                                                   body=b"", client=client, stream_id=n, conn_id=conn_id))
    except Exception:  # a bug in the app must not take the connection handling with it
        log.exception("conn %d (%s): app error on %s", conn_id, client, decided.path)
        resp = HttpResponse(status=500, headers=(("content-type", "text/plain; charset=utf-8"),),
                            body=b"internal error\n")
    return render(resp.status, resp.headers, resp.body, head_only=head, close=close)


async def _send(stream: trio.abc.Stream, data: bytes, timeout: float) -> None:
    """Send ``data``; a client that does not take it within ``timeout`` s is gone (ConnectionLost)."""
    with map_exceptions(CONNECTION_ERRORS), trio.fail_after(timeout):
        await stream.send_all(data)


async def _linger(stream: trio.abc.Stream) -> None:
    """Stop sending, then read and drop what the client still sends (a body never read), briefly: a
    close with unread bytes resets the connection, and the client could lose the answer."""
    try:
        if isinstance(stream, trio.abc.HalfCloseableStream):
            with map_exceptions(CONNECTION_ERRORS):
                await stream.send_eof()
        left = _LINGER_BYTES
        with trio.move_on_after(_LINGER_SECONDS), map_exceptions(CONNECTION_ERRORS):
            while left > 0:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                left -= len(chunk)
    except ConnectionLost:
        return
