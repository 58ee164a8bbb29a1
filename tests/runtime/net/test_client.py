"""The directory (peers.toml) and the HTTP/2 client, against a small h2 server written here."""

from __future__ import annotations

import contextlib
import os
import time
import socket
import threading
from functools import partial
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import trio

import peerbox
from peerbox.net._client import AsyncClient, Client
from peerbox.net._client_errors import RemoteRejected, TransportError, VerificationError
from peerbox.net._h2client import H2Transport
from peerbox.peer._context import Contexts
from peerbox.wire._envelope import make_request
from peerbox.peer._directory import (
    CorruptDirectory,
    Directory,
    EntryExists,
    InvalidEntry,
    UnknownPeer,
    validate_url,
)
from peerbox.trust._exec import ExecHandler
from peerbox.wire._identity import KeyPair

App = Callable[[str, bytes], Awaitable[tuple[int, bytes]]]

# ------------------------------------------------------------------ directory


def test_directory_round_trip(tmp_path: Path) -> None:
    d = Directory(tmp_path)
    assert d.list() == []
    bob, carol = KeyPair.generate(), KeyPair.generate()
    e = d.add("bob", bob.did, "http://127.0.0.1:7700/")
    assert e.url == "http://127.0.0.1:7700" and e.public_key == bob.public_key
    d.add("carol", carol.did, "https://[::1]:8443")
    again = Directory(tmp_path)
    assert [x.name for x in again.list()] == ["bob", "carol"]
    assert again.resolve("bob") == e
    assert again.resolve(bob.did) == e
    assert again.resolve(carol.did).url == "https://[::1]:8443"
    assert (tmp_path / "peers.toml").read_text().startswith("# peerbox directory")
    d.add("bob", bob.did, "http://127.0.0.1:7700")  # the same entry again is fine
    with pytest.raises(EntryExists, match="--replace"):
        d.add("bob", bob.did, "http://127.0.0.1:7701")
    assert d.add("bob", bob.did, "http://127.0.0.1:7701", replace=True).url.endswith(":7701")
    assert d.remove("carol").name == "carol"
    assert [x.name for x in d.list()] == ["bob"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_directory_unknown_and_invalid(tmp_path: Path) -> None:
    d = Directory(tmp_path)
    did = KeyPair.generate().did
    with pytest.raises(UnknownPeer, match="directory add"):
        d.resolve("nobody")
    with pytest.raises(UnknownPeer):
        d.resolve(did)
    with pytest.raises(InvalidEntry, match="invalid did"):
        d.add("bob", "did:key:zNOPE", "http://h:1")
    with pytest.raises(InvalidEntry):
        d.resolve("did:web:example.com")
    with pytest.raises(InvalidEntry, match="peer name"):
        d.add("Bob!", did, "http://h:1")
    for bad in ("ftp://h:1", "http://", "http://h:1/path", "http://u:p@h:1", "http://h:1?q=1",
                "http://h:99999", 'http://h"x:1', "http://h :1", "http://h:0"):
        with pytest.raises(InvalidEntry):
            validate_url(bad)
    assert validate_url("https://example.com") == "https://example.com"
    assert not (tmp_path / "peers.toml").exists()


def test_directory_corrupt_file_is_reported_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "peers.toml"
    path.write_text("[peers.bob]\ndid = 3\n")
    d = Directory(tmp_path)
    with pytest.raises(CorruptDirectory, match=r"peers\.bob"):
        d.list()
    with pytest.raises(CorruptDirectory):
        d.add("carol", KeyPair.generate().did, "http://h:1")
    assert path.read_text() == "[peers.bob]\ndid = 3\n"
    path.write_text("[peers\n")
    with pytest.raises(CorruptDirectory, match="peers.toml"):
        d.list()


def test_directory_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    keys = [KeyPair.generate() for _ in range(8)]

    def add(i: int) -> None:
        Directory(tmp_path).add(f"p{i}", keys[i].did, f"http://127.0.0.1:{7000 + i}")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(Directory(tmp_path).list()) == 8


# ------------------------------------------------------------------ a small h2 server


class MiniServer:
    """Just enough HTTP/2 (h2c prior knowledge) to answer POSTs with ``app``; counts connections."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._streams: list[trio.SocketStream] = []
        self.refuse_connections = 0

    def close_all(self) -> None:
        """Drop every connection abruptly (no GOAWAY), like a crashed or restarted worker."""
        for stream in self._streams:
            with contextlib.suppress(OSError):
                stream.socket.shutdown(socket.SHUT_RDWR)
        self._streams.clear()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        self._streams.append(stream)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        lock = trio.Lock()
        paths: dict[int, str] = {}
        bodies: dict[int, bytearray] = {}

        async def flush() -> None:
            async with lock:
                data = conn.data_to_send()
                if data:
                    await stream.send_all(data)

        async def respond(sid: int) -> None:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                status, body = await self.app(paths[sid], bytes(bodies.pop(sid)))
            finally:
                self.in_flight -= 1
            conn.send_headers(sid, [(b":status", str(status).encode()),
                                    (b"content-type", b"application/cose"),
                                    (b"content-length", str(len(body)).encode())])
            conn.send_data(sid, body, end_stream=True)
            await flush()

        try:
            await flush()
            async with trio.open_nursery() as nursery:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    for ev in conn.receive_data(data):
                        if isinstance(ev, h2.events.RequestReceived) and self.refuse_connections > 0:
                            self.refuse_connections -= 1  # GOAWAY before processing anything: retryable
                            conn.close_connection(last_stream_id=0)
                            await flush()
                            return
                        if isinstance(ev, h2.events.RequestReceived):
                            paths[ev.stream_id] = dict(ev.headers or [])[b":path"].decode()
                            bodies[ev.stream_id] = bytearray()
                        elif isinstance(ev, h2.events.DataReceived):
                            bodies[ev.stream_id] += ev.data or b""
                            conn.acknowledge_received_data(ev.flow_controlled_length or 0, ev.stream_id)
                        elif isinstance(ev, h2.events.StreamEnded):
                            nursery.start_soon(respond, ev.stream_id)
                    await flush()
                nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


class World:
    """alice and bob under one root; bob answers through ``handler``; the directory knows bob."""

    def __init__(self, root: Path, policy: str) -> None:
        self.root = root
        self.store = peerbox.PeerStore(root)
        self.alice = self.store.init("alice")
        self.bob = self.store.init("bob")
        (root / "peers" / "bob" / "policy.toml").write_text(policy)
        self.contexts = Contexts(root)
        self.handler = ExecHandler(self.contexts.get("bob"), self.contexts.store)
        self.directory = Directory(root)
        self.tamper = False
        self.delay = 0.0

    async def app(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert path == "/v1/exec"
        if self.delay:
            await trio.sleep(self.delay)
        handled = await trio.to_thread.run_sync(self.handler.handle, body)
        if handled.outcome == "rejected":
            kind = (handled.error or {}).get("kind")
            return {"replay": 409, "bad_signature": 401}.get(str(kind), 400), handled.body
        out = handled.body
        if self.tamper:
            out = out[:-1] + bytes([out[-1] ^ 1])
        return (403 if handled.outcome == "denied" else 200), out

    def close(self) -> None:
        self.handler.close()
        self.contexts.close()


@pytest.fixture
def world(tmp_path: Path, demo_policy: str) -> Iterator[World]:
    w = World(tmp_path, demo_policy)
    yield w
    w.close()


async def start(world: World, nursery: trio.Nursery) -> MiniServer:
    server = MiniServer(world.app)
    port = await nursery.start(server.serve)
    world.directory.add("bob", world.bob.did, f"http://127.0.0.1:{port}", replace=True)
    return server


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------ async client


async def test_ok_reply_is_verified(world: World) -> None:
    async with trio.open_nursery() as nursery:
        await start(world, nursery)
        async with AsyncClient(world.alice.signing_key(), world.directory) as client:
            reply = await client.exec("bob", 'print("hi"); params.a + 1', params={"a": 41})
            assert reply.ok and reply.value == 42 and reply.log == ("hi",)
            assert reply.target == world.bob.public_key
            by_did = await client.exec(world.bob.did, 'fs::mkdir("inbox"); fs::write("inbox/n", "x"); 1')
            assert by_did.ok, by_did.error
            err = await client.exec("bob", "1 / 0")
            assert not err.ok and not err.denied and err.error is not None
            assert err.error["kind"] == "division_by_zero"
        nursery.cancel_scope.cancel()


async def test_denial_is_a_verified_reply(world: World) -> None:
    async with trio.open_nursery() as nursery:
        await start(world, nursery)
        async with AsyncClient(world.alice.signing_key(), world.directory) as client:
            reply = await client.exec("bob", "1")
            assert reply.ok and not reply.denied
        # a stranger is denied outright (signed denial)
        stranger = KeyPair.generate()
        async with AsyncClient(stranger, world.directory) as client:
            reply = await client.exec("bob", "1")
            assert reply.denied and reply.error is not None and "message" in reply.error
        nursery.cancel_scope.cancel()


async def test_tampered_reply_raises_verification_error(world: World) -> None:
    world.tamper = True
    async with trio.open_nursery() as nursery:
        await start(world, nursery)
        async with AsyncClient(world.alice.signing_key(), world.directory) as client:
            with pytest.raises(VerificationError) as info:
                await client.exec("bob", "1")
            assert info.value.exit_code == 7 and info.value.kind == "bad_signature"
        nursery.cancel_scope.cancel()


async def test_reply_from_another_key_raises_verification_error(world: World) -> None:
    async with trio.open_nursery() as nursery:
        await start(world, nursery)
        impostor = KeyPair.generate()  # the directory says bob is someone else at that URL
        world.directory.add("bob", impostor.did, world.directory.get("bob").url, replace=True)
        async with AsyncClient(world.alice.signing_key(), world.directory) as client:
            with pytest.raises((VerificationError, RemoteRejected)):
                await client.exec("bob", "1")
        nursery.cancel_scope.cancel()


async def test_rejection_is_remote_rejected(world: World) -> None:
    async with trio.open_nursery() as nursery:
        await start(world, nursery)
        url = world.directory.get("bob").url
        transport = H2Transport()
        async with transport:
            # the same envelope twice: the second is a replay (409, unsigned error map)
            env = make_request(world.alice.signing_key(), target=world.bob.public_key, script="1",
                               now=int(time.time()))
            status, _, _ = await transport.exec(url, env, 5)
            assert status == 200
            status, _, body = await transport.exec(url, env, 5)
            assert status == 409
            client = AsyncClient(world.alice.signing_key(), world.directory, transport=transport)
            with pytest.raises(RemoteRejected) as info:
                client.check(world.directory.get("bob"), env, status, body)
            assert info.value.kind == "replay" and info.value.status == 409 and info.value.exit_code == 7
            with pytest.raises(TransportError) as info2:
                client.check(world.directory.get("bob"), env, 502, b"<html>")
            assert info2.value.kind == "http" and info2.value.status == 502
        nursery.cancel_scope.cancel()


async def test_connection_refused_is_transport_error(world: World) -> None:
    world.directory.add("bob", world.bob.did, f"http://127.0.0.1:{free_port()}")
    async with AsyncClient(world.alice.signing_key(), world.directory) as client:
        with pytest.raises(TransportError) as info:
            await client.exec("bob", "1", timeout=5)
        assert info.value.kind == "connect" and info.value.exit_code == 7


@pytest.mark.slow
async def test_timeout_is_transport_error_and_connection_survives(world: World) -> None:
    async with trio.open_nursery() as nursery:
        server = await start(world, nursery)
        async with AsyncClient(world.alice.signing_key(), world.directory) as client:
            world.delay = 1.0
            with pytest.raises(TransportError) as info:
                await client.exec("bob", "1", timeout=0.2)
            assert info.value.kind == "timeout"
            world.delay = 0.0
            assert (await client.exec("bob", "2")).value == 2
        assert server.connections == 1
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_many_concurrent_requests_share_one_connection(world: World) -> None:
    world.delay = 0.05
    async with trio.open_nursery() as nursery:
        server = await start(world, nursery)
        transport = H2Transport()
        async with AsyncClient(world.alice.signing_key(), world.directory, transport=transport) as client:
            results: dict[int, Any] = {}

            async def one(i: int) -> None:
                results[i] = (await client.exec("bob", "params.x * 2", params={"x": i})).value

            async with trio.open_nursery() as calls:
                for i in range(24):
                    calls.start_soon(one, i)
            assert results == {i: 2 * i for i in range(24)}
        assert server.connections == 1 and transport.connections_opened == 1
        assert server.max_in_flight > 1  # really multiplexed, not one after another
        nursery.cancel_scope.cancel()


async def test_large_request_respects_flow_control(world: World) -> None:
    async with trio.open_nursery() as nursery:
        await start(world, nursery)
        async with AsyncClient(world.alice.signing_key(), world.directory) as client:
            big = "y" * 300_000  # larger than the default 64 KiB window
            reply = await client.exec("bob", "params.s.len()", params={"s": big})
            assert reply.value == 300_000
        nursery.cancel_scope.cancel()


async def test_client_must_be_entered(world: World) -> None:
    client = AsyncClient(world.alice.signing_key(), world.directory)
    world.directory.add("bob", world.bob.did, "http://127.0.0.1:1")
    with pytest.raises(peerbox.UsageError, match="async with"):
        await client.exec("bob", "1")


# ------------------------------------------------------------------ sync client


class ServerThread:
    """The mini server on its own trio loop in a thread (for the sync client and the CLI)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.port = 0
        self.server: MiniServer | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        self._ready.wait(10)
        world.directory.add("bob", world.bob.did, f"http://127.0.0.1:{self.port}", replace=True)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._cancel = scope
            async with trio.open_nursery() as nursery:
                self.server = MiniServer(self.world.app)
                self.port = await nursery.start(self.server.serve)
                self._ready.set()

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None:
            trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        self._thread.join(10)


@pytest.fixture
def served(world: World) -> Iterator[ServerThread]:
    st = ServerThread(world)
    yield st
    st.stop()


def test_sync_client_from_plain_code(world: World, served: ServerThread) -> None:
    with Client(world.alice.signing_key(), world.directory) as client:
        assert client.exec("bob", "40 + 2").value == 42
        out: list[Any] = []
        threads = [threading.Thread(target=lambda i=i: out.append(client.exec("bob", f"{i}").value))
                   for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(out) == list(range(6))
        with pytest.raises(UnknownPeer):
            client.exec("carol", "1")
    assert served.server is not None and served.server.connections == 1
    with pytest.raises(peerbox.UsageError, match="closed"):
        client.exec("bob", "1")
    client.close()


# ------------------------------------------------------------------ CLI


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from peerbox.cli._send import main_for_tests

    capsys.readouterr()
    code = main_for_tests(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_send_exit_codes(world: World, served: ServerThread, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    root = str(world.root)
    ok = tmp_path / "ok.rhai"
    ok.write_text('print("note"); params.a * 2')
    code, out, err = _cli(capsys, "send", "--from", "alice", "--to", "bob", str(ok), "--param", "a=21",
                          "--root", root)
    assert (code, out) == (0, "42\n") and "note" in err
    code, out, _ = _cli(capsys, "send", "--from", "alice", "--to", world.bob.did, str(ok),
                        "--params-json", '{"a": 1}', "--json", "--root", root)
    assert code == 0 and out.strip() == "2"
    bad = tmp_path / "bad.rhai"
    bad.write_text("1 / 0")
    code, _, err = _cli(capsys, "send", "--from", "alice", "--to", "bob", str(bad), "--root", root)
    assert code == 4 and "division" in err
    # bob denies bob's own scripts? no: a stranger is denied; use a peer bob's policy does not know
    world.store.init("mallory")
    code, out, err = _cli(capsys, "send", "--from", "mallory", "--to", "bob", str(ok), "--root", root,
                          "--json")
    assert code == 6 and "denied" in err and '"denied"' in out
    world.directory.add("bob", world.bob.did, f"http://127.0.0.1:{free_port()}", replace=True)
    code, _, err = _cli(capsys, "send", "--from", "alice", "--to", "bob", str(ok), "--root", root)
    assert code == 7 and "connect" in err


def test_cli_directory_add_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    did = KeyPair.generate().did
    root = str(tmp_path)
    code, out, _ = _cli(capsys, "directory", "add", "bob", did, "http://127.0.0.1:7700", "--root", root)
    assert code == 0
    code, out, _ = _cli(capsys, "directory", "list", "--root", root)
    assert code == 0 and "bob" in out and did in out and "http://127.0.0.1:7700" in out
    code, _, err = _cli(capsys, "directory", "add", "bob", did, "ftp://x", "--root", root)
    assert code == 2 and "scheme" in err
    code, out, _ = _cli(capsys, "directory", "list", "--root", root, "--json")
    assert code == 0 and '"url": "http://127.0.0.1:7700"' in out


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


@pytest.mark.slow
async def test_reconnects_after_the_server_closes_the_connection(world: World) -> None:
    async with trio.open_nursery() as nursery:
        server = await start(world, nursery)
        transport = H2Transport()
        async with AsyncClient(world.alice.signing_key(), world.directory, transport=transport) as client:
            assert (await client.exec("bob", "1")).value == 1
            server.close_all()
            await trio.sleep(0.05)
            assert (await client.exec("bob", "2")).value == 2
        assert server.connections == 2 and transport.connections_opened == 2
        nursery.cancel_scope.cancel()


async def test_reply_too_large_is_transport_error(world: World) -> None:
    async with trio.open_nursery() as nursery:
        await start(world, nursery)
        transport = H2Transport(max_reply=1000)
        async with AsyncClient(world.alice.signing_key(), world.directory, transport=transport) as client:
            with pytest.raises(TransportError, match="larger than 1000"):
                await client.exec("bob", "params.s", params={"s": "x" * 5000})
            assert (await client.exec("bob", "3")).value == 3  # the connection is still fine
        nursery.cancel_scope.cancel()


async def test_a_request_the_server_did_not_process_is_sent_again(world: World) -> None:
    async with trio.open_nursery() as nursery:
        server = await start(world, nursery)
        server.refuse_connections = 1
        transport = H2Transport()
        async with AsyncClient(world.alice.signing_key(), world.directory, transport=transport) as client:
            assert (await client.exec("bob", "7")).value == 7
        assert server.connections == 2 and transport.connections_opened == 2
        nursery.cancel_scope.cancel()
