"""The HTTP/2 client against peerbox's own HTTP/2 server (h2c and TLS): many calls on
one connection, a stranger denied, and an untrusted certificate refused.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from peerbox.net._client import AsyncClient
from peerbox.net._client_errors import TransportError
from peerbox.net._h2client import H2Transport
from peerbox.wire import KeyPair

from ._mini_server import World


# ------------------------------------------------------------------ against the real server (h2c and TLS)


def _real_app(world: World, conn_ids: set[int]) -> Any:
    from peerbox.net._h2server import HttpRequest, HttpResponse

    async def app(req: HttpRequest) -> HttpResponse:
        conn_ids.add(req.conn_id)
        assert req.method == "POST" and req.header("content-type") == "application/cose"
        status, body = await world.app(req.path, req.body)
        return HttpResponse(status=status, headers=(("content-type", "application/cose"),), body=body)

    return app


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("tls", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["h2c", "tls"])
async def test_against_the_real_h2_server(world: World, tmp_path: Path, tls: bool) -> None:
    import ssl
    import shutil

    _h2server = pytest.importorskip("peerbox.net._h2server")
    server_ctx = client_ctx = None
    if tls:
        if shutil.which("openssl") is None:
            pytest.skip("openssl is needed to make a test certificate")
        cert, key = _self_signed(tmp_path)
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        client_ctx = ssl.create_default_context(cafile=str(cert))
    conn_ids: set[int] = set()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(_h2server.serve, _real_app(world, conn_ids), host="127.0.0.1",
                                           port=0, ssl_context=server_ctx))
        scheme = "https" if tls else "http"
        world.directory.add("bob", world.bob.did, f"{scheme}://127.0.0.1:{port}")
        transport = H2Transport(ssl_context=client_ctx)
        async with AsyncClient(world.alice.signing_key(), world.directory, transport=transport) as client:
            results: list[Any] = []

            async def one(i: int) -> None:
                results.append((await client.exec("bob", "params.i", params={"i": i})).value)

            async with trio.open_nursery() as calls:
                for i in range(10):
                    calls.start_soon(one, i)
            assert sorted(results) == list(range(10))
            stranger = AsyncClient(KeyPair.generate(), world.directory, transport=transport)
            assert (await stranger.exec("bob", "1")).denied
        assert conn_ids == {1} and transport.connections_opened == 1
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_tls_to_a_server_with_an_untrusted_certificate_fails(world: World, tmp_path: Path) -> None:
    import ssl
    import shutil

    _h2server = pytest.importorskip("peerbox.net._h2server")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(_h2server.serve, _real_app(world, set()), host="127.0.0.1",
                                           port=0, ssl_context=server_ctx))
        world.directory.add("bob", world.bob.did, f"https://127.0.0.1:{port}")
        async with AsyncClient(world.alice.signing_key(), world.directory) as client:
            with pytest.raises(TransportError) as info:
                await client.exec("bob", "1", timeout=5)
            assert info.value.kind == "tls"
        nursery.cancel_scope.cancel()
