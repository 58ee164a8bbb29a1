"""The HTTP/2 client (async and sync) and ``peerbox send``, against the small h2 server
of _mini_server.py: verified replies and denials, rejections, transport errors,
timeouts, one shared connection, flow control, reconnects and retries; ``call``
and ``revoke`` (what they send where, and how their answers are checked, 429
included) against a target that verifies each envelope and signs its reply.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
import trio

import peerbox
from peerbox.net._client import AsyncClient, Client
from peerbox.net._client_errors import RemoteRejected, TransportError, VerificationError
from peerbox.net._h2client import H2Transport
from peerbox.peer import UnknownPeer
from peerbox.wire import (CallRequest, EnvelopeError, KeyPair, NonceStore, Reply, RevokeRequest, make_reply,
                          make_request, token_id, verify_call_request, verify_revoke_request)

from ..conftest import CliResult
from ._mini_server import MiniServer, ServerThread, World, free_port, start

Cli = Callable[..., CliResult]


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
        assert url is not None
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


# ------------------------------------------------------------------ sync client


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


def test_cli_send_exit_codes(world: World, served: ServerThread, tmp_path: Path, cli: Cli) -> None:
    root = str(world.root)
    ok = tmp_path / "ok.rhai"
    ok.write_text('print("note"); params.a * 2')
    code, out, err = cli("send", "--from", "alice", "--to", "bob", str(ok), "--param", "a=21",
                          "--root", root)
    assert (code, out) == (0, "42\n") and "note" in err
    code, out, _ = cli("send", "--from", "alice", "--to", world.bob.did, str(ok),
                        "--params-json", '{"a": 1}', "--json", "--root", root)
    assert code == 0 and json.loads(out)["value"] == 2
    bad = tmp_path / "bad.rhai"
    bad.write_text("1 / 0")
    code, _, err = cli("send", "--from", "alice", "--to", "bob", str(bad), "--root", root)
    assert code == 4 and "division" in err
    # bob denies bob's own scripts? no: a stranger is denied; use a peer bob's policy does not know
    world.store.init("mallory")
    code, out, err = cli("send", "--from", "mallory", "--to", "bob", str(ok), "--root", root,
                          "--json")
    assert code == 6 and "denied" in err and '"denied"' in out
    world.directory.add("bob", world.bob.did, f"http://127.0.0.1:{free_port()}", replace=True)
    code, _, err = cli("send", "--from", "alice", "--to", "bob", str(ok), "--root", root)
    assert code == 7 and "connect" in err


# ------------------------------------------------------------------ call and revoke


class Target:
    """bob at the HTTP level for ``/v1/call`` and ``/v1/revoke``: verifies each envelope as a worker
    does (signature, target, time, nonce), records what it was asked, and answers with a reply
    signed by bob: the call's module, function, params and caller as its value, or (``limited``)
    a 429 with a signed ``rate_limited`` reply. ``/v1/exec`` goes to ``world``'s real handler."""

    def __init__(self, world: World, tmp_path: Path) -> None:
        self.world = world
        self.key = world.bob.signing_key()
        self.nonces = NonceStore(tmp_path / "target-nonces.sqlite")
        self.seen: list[tuple[str, CallRequest | RevokeRequest]] = []
        self.limited = False
        self.tamper = False

    async def app(self, path: str, body: bytes) -> tuple[int, bytes]:
        if path == "/v1/exec":
            return await self.world.app(path, body)
        now = int(time.time())
        req: CallRequest | RevokeRequest
        try:
            if path == "/v1/call":
                req = verify_call_request(body, target=self.world.bob.public_key, now=now, nonces=self.nonces)
            else:
                assert path == "/v1/revoke"
                req = verify_revoke_request(body, target=self.world.bob.public_key, now=now,
                                            nonces=self.nonces)
        except EnvelopeError as exc:
            return 400, cbor2.dumps({"error": {"kind": exc.kind, "message": exc.message}})
        self.seen.append((path, req))
        usage = {"fuel": 0, "wall_ms": 0, "peak_memory": 0}
        if self.limited:
            status, out = 429, make_reply(
                self.key, request_bytes=body, caller=req.caller, now=now, ok=False, usage=usage,
                error={"kind": "rate_limited", "message": "rate limit of policy.toml:3 (1 calls per minute, "
                       "burst 1): retry in 60 s", "rule": "policy.toml:3"})
        elif isinstance(req, CallRequest):
            value = {"module": req.module, "function": req.function, "params": req.params,
                     "caps": len(req.caps), "limits": req.limits}
            status, out = 200, make_reply(self.key, request_bytes=body, caller=req.caller, now=now, ok=True,
                                          value=value, usage=usage)
        else:
            status, out = 200, make_reply(self.key, request_bytes=body, caller=req.caller, now=now, ok=True,
                                          value={"revoked": token_id(req.token).hex(), "already": False},
                                          usage=usage)
        if self.tamper:
            out = out[:-1] + bytes([out[-1] ^ 1])
        return status, out

    def close(self) -> None:
        self.nonces.close()


@pytest.fixture
def target(world: World, tmp_path: Path) -> Iterator[Target]:
    t = Target(world, tmp_path)
    yield t
    t.close()


async def _serve(target: Target, nursery: trio.Nursery) -> MiniServer:
    server = MiniServer(target.app)
    port = await nursery.start(server.serve)
    target.world.directory.add("bob", target.world.bob.did, f"http://127.0.0.1:{port}", replace=True)
    return server


async def test_call_by_name_and_position_and_params_escape(target: Target) -> None:
    world = target.world
    async with trio.open_nursery() as nursery:
        await _serve(target, nursery)
        async with AsyncClient(world.alice.signing_key(), world.directory) as client:
            by_name = await client.call("bob", "inbox::deliver", msg="hi", n=2)
            assert by_name.ok and by_name.target == world.bob.public_key
            assert by_name.value == {"module": "inbox", "function": "deliver",
                                     "params": {"msg": "hi", "n": 2}, "caps": 0, "limits": {}}
            by_position = await client.call(world.bob.did, "tools/text::cut", "hi", [1, 2])
            assert by_position.value["module"] == "tools/text" and by_position.value["function"] == "cut"
            assert by_position.value["params"] == ["hi", [1, 2]]
            # names that are the method's own go through params=
            escaped = await client.call("bob", "inbox::deliver", params={"timeout": 5, "caps": "x"},
                                        caps=[b"token"], limits={"fuel": 10}, timeout=10)
            assert escaped.value["params"] == {"timeout": 5, "caps": "x"}
            assert escaped.value["caps"] == 1 and escaped.value["limits"] == {"fuel": 10}
            # "target" and "function" are positional-only: usable as argument names too
            both = await client.call("bob", "inbox::route", target="carol", function="f")
            assert both.value["params"] == {"target": "carol", "function": "f"}
            none = await client.call("bob", "inbox::stats")
            assert none.value["params"] is None
        nursery.cancel_scope.cancel()
    assert [path for path, _ in target.seen] == ["/v1/call"] * 5
    assert all(req.caller == world.alice.public_key for _, req in target.seen)


def test_sync_call_and_revoke(target: Target, world: World) -> None:
    st = ServerThread(world)
    try:
        assert st.server is not None
        st.server.app = target.app
        with Client(world.alice.signing_key(), world.directory) as client:
            assert client.call("bob", "inbox::deliver", msg="hi").value["params"] == {"msg": "hi"}
            assert client.call("bob", "inbox::deliver", "hi").value["params"] == ["hi"]
            assert client.call("bob", "inbox::deliver", params=["a", "b"]).value["params"] == ["a", "b"]
            reply = client.revoke("bob", b"some token bytes")
            assert reply.ok and reply.value == {"revoked": token_id(b"some token bytes").hex(),
                                                "already": False}
            assert client.exec("bob", "40 + 2").value == 42  # the real handler, on the same connection
        assert [path for path, _ in target.seen] == ["/v1/call"] * 3 + ["/v1/revoke"]
        last = target.seen[-1][1]
        assert isinstance(last, RevokeRequest) and last.token == b"some token bytes"
    finally:
        st.stop()


async def test_call_needs_module_colon_colon_function(target: Target) -> None:
    world = target.world
    async with trio.open_nursery() as nursery:
        await _serve(target, nursery)
        async with AsyncClient(world.alice.signing_key(), world.directory) as client:
            for bad in ("deliver", "inbox:deliver", ""):
                with pytest.raises(peerbox.UsageError, match="MODULE::FUNCTION") as info:
                    await client.call("bob", bad, msg="hi")
                assert info.value.exit_code == 2
            with pytest.raises(peerbox.UsageError, match="not both"):
                await client.call("bob", "inbox::deliver", "hi", msg="hi")
            with pytest.raises(peerbox.UsageError, match="not both"):
                await client.call("bob", "inbox::deliver", msg="hi", params={"msg": "hi"})
            # names the envelope cannot carry are refused before signing (exit 2)
            for module_fn in ("../x::f", "builtin:inbox::deliver", "inbox::1st", "::deliver"):
                with pytest.raises(EnvelopeError) as env_info:
                    await client.call("bob", module_fn)
                assert env_info.value.kind == "bad_field" and env_info.value.exit_code == 2
        nursery.cancel_scope.cancel()
    assert target.seen == []  # nothing was sent


async def test_429_is_a_verified_reply(target: Target) -> None:
    world = target.world
    target.limited = True
    async with trio.open_nursery() as nursery:
        await _serve(target, nursery)
        async with AsyncClient(world.alice.signing_key(), world.directory) as client:
            reply = await client.call("bob", "inbox::deliver", msg="hi")
            assert not reply.ok and not reply.denied and reply.error is not None
            assert reply.error["kind"] == "rate_limited" and reply.error["rule"] == "policy.toml:3"
            assert "retry in 60 s" in reply.error["message"]
            target.tamper = True  # a 429 must be bob's signature on this very request, like a 200
            with pytest.raises(VerificationError) as info:
                await client.call("bob", "inbox::deliver", msg="hi")
            assert info.value.exit_code == 7
        nursery.cancel_scope.cancel()


async def test_a_refused_call_envelope_is_remote_rejected(target: Target) -> None:
    world = target.world
    async with trio.open_nursery() as nursery:
        await _serve(target, nursery)
        # bob's directory entry names carol's key: bob's target sees a call addressed to someone else
        carol = KeyPair.generate()
        url = world.directory.get("bob").url
        world.directory.add("bob", carol.did, url, replace=True)
        async with AsyncClient(world.alice.signing_key(), world.directory) as client:
            with pytest.raises(RemoteRejected) as info:
                await client.call("bob", "inbox::deliver", msg="hi")
            assert info.value.kind == "wrong_target" and info.value.status == 400
            with pytest.raises(RemoteRejected):
                await client.revoke("bob", b"tok")
        nursery.cancel_scope.cancel()


async def test_an_entry_without_url_cannot_be_called(target: Target) -> None:
    world = target.world
    carol = KeyPair.generate()
    world.directory.add("carol", carol.did)  # known as a caller only
    async with trio.open_nursery() as nursery:
        await _serve(target, nursery)
        async with AsyncClient(world.alice.signing_key(), world.directory) as client:
            sends: list[Callable[[Any], Awaitable[Reply]]] = [
                lambda t: client.call(t, "inbox::deliver", msg="hi"),
                lambda t: client.exec(t, "1"),
                lambda t: client.revoke(t, b"tok"),
                lambda t: client.logic(t, "list"),
            ]
            for send in sends:
                for name in ("carol", carol.did, world.directory.get("carol")):
                    with pytest.raises(UnknownPeer, match="carol has no URL in peers.toml: it is known as a "
                                                          "caller only") as info:
                        await send(name)
                    assert info.value.exit_code == 2
            with pytest.raises(UnknownPeer):
                client.resolve("carol")
            assert (await client.call("bob", "inbox::deliver", msg="hi")).ok  # bob still works
        nursery.cancel_scope.cancel()
    assert len(target.seen) == 1
