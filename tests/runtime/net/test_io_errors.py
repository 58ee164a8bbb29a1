"""The network's boundary tables (peerbox.net._io_errors): what OSError, ssl and trio become.

Each table is checked as a table (every stream failure maps, the cause is
kept) and where it is used: a client connecting nowhere, a server whose
client's stream breaks (the connection ends quietly, logged at debug
level, and the server goes on), a certificate that cannot be loaded.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
import trio

import peerbox
from peerbox._errors import ExceptionMapping, map_exceptions
from peerbox.net import TransportError
from peerbox.net._h2server import HttpRequest, HttpResponse, serve_stream
from peerbox.net._io_errors import (
    CLIENT_CLOSED_ERRORS,
    CONNECTION_ERRORS,
    HANDSHAKE_ERRORS,
    STREAM_ERRORS,
    TLS_FILE_ERRORS,
    ConnectionLost,
    io_reason,
    transport_errors,
)
from peerbox.net._serving import tls_context


def raised(table: ExceptionMapping, exc: BaseException) -> BaseException:
    """What ``map_exceptions(table)`` lets out when ``exc`` is raised inside it."""
    with pytest.raises(BaseException) as info, map_exceptions(table):
        raise exc
    assert info.value.__cause__ is exc or info.value is exc
    return info.value


def broken_by_tls() -> trio.BrokenResourceError:
    """As trio raises a failed TLS read: a BrokenResourceError whose cause is the SSLError."""
    try:
        try:
            raise ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
        except ssl.SSLError as exc:
            raise trio.BrokenResourceError from exc
    except trio.BrokenResourceError as broken:
        return broken


def test_every_stream_failure_is_a_transport_error_saying_why() -> None:
    table = transport_errors("cannot send")
    assert set(table) == set(STREAM_ERRORS)
    refused = raised(table, ConnectionRefusedError(111, "Connection refused"))
    assert isinstance(refused, TransportError) and str(refused) == "cannot send: Connection refused"
    assert refused.kind == "protocol" and refused.exit_code == 7 and not refused.retryable
    tls = raised(transport_errors("TLS with https://x failed", kind="tls"), broken_by_tls())
    assert isinstance(tls, TransportError) and tls.kind == "tls"
    assert str(tls) == "TLS with https://x failed: [SSL: WRONG_VERSION_NUMBER] wrong version number"
    closed = raised(table, trio.ClosedResourceError())
    assert str(closed) == "cannot send: ClosedResourceError"


def test_io_reason_prefers_the_os_text_then_the_cause() -> None:
    assert io_reason(OSError(104, "Connection reset by peer")) == "Connection reset by peer"
    assert io_reason(broken_by_tls()).endswith("wrong version number")
    assert io_reason(trio.BrokenResourceError("gone")) == "gone"


def test_the_server_tables_make_a_connection_lost_that_is_no_peerbox_error() -> None:
    for exc in (trio.BrokenResourceError(), trio.ClosedResourceError("closed"), ssl.SSLError(1, "bad"),
                ConnectionResetError(104, "reset"), trio.TooSlowError()):
        lost = raised(CONNECTION_ERRORS, exc)
        assert isinstance(lost, ConnectionLost) and not isinstance(lost, peerbox.Error)
        assert str(lost)  # the debug log says something, at least the type
    assert str(raised(HANDSHAKE_ERRORS, trio.TooSlowError())) == "TLS handshake timed out"
    assert str(raised(HANDSHAKE_ERRORS, ssl.SSLError(1, "no"))).startswith("TLS handshake failed: ")


def test_what_no_table_names_passes_through_unrenamed() -> None:
    assert type(raised(CONNECTION_ERRORS, ValueError("a bug"))) is ValueError
    error = peerbox.UsageError("already ours")
    assert raised(transport_errors("x"), error) is error


def test_a_certificate_that_cannot_be_loaded_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(peerbox.UsageError, match="cannot load the TLS certificate/key") as info:
        tls_context(str(tmp_path / "missing.pem"), str(tmp_path / "missing.key"))
    assert isinstance(info.value.__cause__, OSError)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(peerbox.UsageError) as info:
        tls_context(str(bad), str(bad))
    assert isinstance(info.value.__cause__, ssl.SSLError)
    assert set(TLS_FILE_ERRORS) == {ssl.SSLError, OSError}


def test_a_blocking_client_whose_trio_run_ended_is_closed() -> None:
    closed = raised(CLIENT_CLOSED_ERRORS, trio.RunFinishedError("the run is over"))
    assert isinstance(closed, peerbox.UsageError) and str(closed) == "this Client is closed"


async def test_a_connection_refused_is_a_connect_error_that_keeps_the_os_error() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    for lst in listeners:
        await lst.aclose()  # nothing listens there any more
    async with peerbox.net.AsyncClient(peerbox.KeyPair.generate()) as client:
        with pytest.raises(TransportError) as info:
            await client.transport.exec(f"http://127.0.0.1:{port}", b"x", 5.0)
    assert info.value.kind == "connect" and "cannot connect to" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)  # trio's, kept as the cause


class BrokenStream(trio.abc.Stream):
    """A client's stream that breaks: reading fails with ``failure``; writing too if ``send_fails``."""

    def __init__(self, failure: BaseException, *, send_fails: bool = False) -> None:
        self.failure = failure
        self.send_fails = send_fails
        self.closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.send_fails:
            raise trio.BrokenResourceError("the client went away")

    async def wait_send_all_might_not_block(self) -> None:
        return None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        raise self.failure

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("failure", "send_fails", "said"), [
    (ConnectionResetError(104, "Connection reset by peer"), False, "Connection reset by peer"),
    (trio.BrokenResourceError("broken"), False, "broken"),
    (ssl.SSLError(1, "bad record"), False, "bad record"),
    (trio.ClosedResourceError("closed"), True, "closed"),  # cleartext: the server reads the preface first
])
async def test_a_server_connection_whose_stream_breaks_ends_quietly(
        failure: BaseException, send_fails: bool, said: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(req: HttpRequest) -> HttpResponse:
        raise AssertionError("never called")

    stream = BrokenStream(failure, send_fails=send_fails)
    with caplog.at_level(logging.DEBUG, logger="peerbox.h2server"):
        await serve_stream(app, stream, client="test", conn_id=7)  # never raises for network trouble
    assert stream.closed
    lost = [r for r in caplog.records if "transport closed" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.DEBUG
    assert said in lost[0].getMessage()
