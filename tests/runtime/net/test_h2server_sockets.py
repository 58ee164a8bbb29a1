"""HTTP/2 server on real sockets: ``serve`` over loopback TCP, and TLS with and
without ALPN ``h2`` (a fresh self-signed certificate per test).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
import trio
import trio.testing

from peerbox.net._h2server import serve

from ._h2_test_client import Client, echo


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
    now = datetime.datetime.now(datetime.UTC)
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
