"""The HTTP/2 client against peerbox's own HTTP/2 server (h2c and TLS): many calls on
one connection, a stranger denied, and an untrusted certificate refused.
"""

from __future__ import annotations

from collections.abc import Callable
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


@pytest.mark.parametrize("tls", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["h2c", "tls"])
async def test_against_the_real_h2_server(world: World, tmp_path: Path, tls: bool,
                                          self_signed: Callable[[Path], tuple[Path, Path]]) -> None:
    import ssl

    _h2server = pytest.importorskip("peerbox.net._h2server")
    server_ctx = client_ctx = None
    if tls:
        cert, key = self_signed(tmp_path)
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
async def test_tls_to_a_server_with_an_untrusted_certificate_fails(
        world: World, tmp_path: Path, self_signed: Callable[[Path], tuple[Path, Path]]) -> None:
    import ssl

    _h2server = pytest.importorskip("peerbox.net._h2server")
    cert, key = self_signed(tmp_path)
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
