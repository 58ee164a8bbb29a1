"""`peerbox serve` end to end, shared and isolated mode, over HTTP/2, WebSocket and NATS, the same test code.

A real server (peerbox.net._worker behind each carrier's server; a real
nats-server for NATS) and the client's transport for the carrier (chosen from
the URL by peerbox.net._transports.SchemeTransport): alice's allowed script (200,
the reply verifies), a denied caller (403, a signed denial), a loop (its
limit); for each request type (exec, call, revoke) a replay (409), a forgery
(401), an expired envelope, garbage and another type's envelope (400), a
target nobody hosts (404). Isolated
mode also survives a child killed with SIGKILL. The CLI stops cleanly on
SIGTERM.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import peerbox
from peerbox.net import TransportError
from peerbox.net._h2client import CALL_PATH, EXEC_PATH, REVOKE_PATH, H2Transport
from peerbox.net._transports import SchemeTransport
from peerbox.wire import make_request, verify_reply

from ..conftest import NatsServer
from ._serve_helpers import TRANSPORTS, Caller, isolated, rejection, shared, worker_on
from .conftest import Serving

pytestmark = pytest.mark.slow  # servers in isolated mode (child processes), `peerbox serve`, curl/nghttp


LOOP = "let i = 0; loop { i += 1; }"


@pytest.fixture
def store(tmp_path: Path, demo_policy: str) -> peerbox.PeerStore:
    """alice, bob, carol and dave under ``tmp_path``; bob and carol with the demo policy."""
    peers = peerbox.PeerStore(tmp_path)
    for name in ("alice", "bob", "carol", "dave"):
        peers.init(name)
    for name in ("bob", "carol"):
        (tmp_path / "peers" / name / "policy.toml").write_text(demo_policy)
    return peers


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ["shared", "isolated"])
async def test_delegation_end_to_end(tmp_path: Path, store: peerbox.PeerStore, mode: str, transport: str,
                                     nats_server: NatsServer) -> None:
    async with worker_on(mode, transport, tmp_path, nats=nats_server.url) as (url, carrier):
        c = Caller(store, carrier, url)
        status, ctype, body, req = await c.send(
            'fs::mkdir("inbox"); fs::write("inbox/note.txt", "hi"); 7 * 6')
        assert (status, ctype) == (200, "application/cose")
        reply = c.reply(body, req)
        assert reply.ok and reply.value == 42
        assert (tmp_path / "peers" / "bob" / "files" / "inbox" / "note.txt").read_text() == "hi"
        # routed by target: carol is hosted by the same worker
        status, _, body, req = await c.send("target.name", to="carol")
        assert status == 200 and c.reply(body, req, "carol").value == "carol"
        # a caller bob's policy does not allow: a signed denial
        status, ctype, body, req = await c.send("1", sender="dave")
        assert (status, ctype) == (403, "application/cose") and c.reply(body, req).denied
        # a loop: stopped by its limit, still a signed reply
        status, _, body, req = await c.send(LOOP, limits={"timeout": 0.3})
        error = c.reply(body, req).error
        assert status == 200 and error is not None and error["kind"] == "limit_timeout"
        # a loop at bob does not stall carol
        async with trio.open_nursery() as n:
            n.start_soon(functools.partial(c.send, LOOP, limits={"timeout": 1.0}))
            await trio.sleep(0.1)
            start = trio.current_time()
            status, _, _, _ = await c.send("1", to="carol")
            assert status == 200 and trio.current_time() - start < 0.8


KINDS = {"exec": EXEC_PATH, "call": CALL_PATH, "revoke": REVOKE_PATH}


def _envelope(c: Caller, kind: str, *, to: str = "bob", **kw: Any) -> bytes:
    """A well-formed request of ``kind`` from alice (``kw``: now, ttl, nonce)."""
    if kind == "exec":
        now = kw.pop("now", int(time.time()))
        return make_request(c.key("alice"), target=c.target(to), script="1", now=now, **kw)
    if kind == "call":
        return c.call_request("inbox::count", sender="alice", to=to, **kw)
    return c.revoke_request(b"not a token", sender="alice", to=to, **kw)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("mode", ["shared", "isolated"])
async def test_envelopes_are_refused_alike(tmp_path: Path, store: peerbox.PeerStore, mode: str,
                                           kind: str, transport: str, nats_server: NatsServer) -> None:
    """Every request type, on every carrier, goes through the same refusals before anything is
    decided or run: a replay (409), a forgery (401), an expired envelope (400), a target nobody
    hosts here (404; over NATS nobody answers that target's subject: no responders), garbage (400)
    and an envelope of another type on this endpoint (400 ``wrong_type``)."""
    path = KINDS[kind]
    async with worker_on(mode, transport, tmp_path, nats=nats_server.url) as (url, carrier):
        c = Caller(store, carrier, url)
        # a first delivery is answered with a signed reply (a value, a denial or a bad token) ...
        req = _envelope(c, kind)
        answer = await c.post(path, req)
        assert answer.status in (200, 403) and answer.content_type == "application/cose"
        c.reply(answer.body, req)
        # ... and the same bytes again are a replay
        answer = await c.post(path, req)
        assert (answer.status, answer.content_type) == (409, "application/cbor")
        assert rejection(answer.body) == "replay"
        # a forged signature
        good = _envelope(c, kind)
        answer = await c.post(path, good[:-1] + bytes([good[-1] ^ 1]))
        assert answer.status == 401 and rejection(answer.body) == "bad_signature"
        # expired (signed 1000 s ago, valid for 300)
        answer = await c.post(path, _envelope(c, kind, now=int(time.time()) - 1000, ttl=300))
        assert answer.status == 400 and rejection(answer.body) == "expired"
        # a target this worker does not host
        if transport == "nats":
            with pytest.raises(TransportError, match="no responders|no worker"):
                await c.post(path, _envelope(c, kind, to="dave"))
        else:
            answer = await c.post(path, _envelope(c, kind, to="dave"))
            assert answer.status == 404 and rejection(answer.body) == "wrong_target"
        # malformed (over NATS the subject is the envelope's target: the client cannot address it)
        if transport == "nats":
            with pytest.raises(TransportError, match="names no target"):
                await c.post(path, b"\xd2\x84\x00")
        else:
            assert (await c.post(path, b"\xd2\x84\x00")).status == 400
        # a well-signed envelope of another type on this endpoint
        for other in KINDS:
            if other != kind:
                answer = await c.post(path, _envelope(c, other))
                assert answer.status == 400 and rejection(answer.body) == "wrong_type", other
        # nothing above used up the good envelope's nonce
        assert (await c.post(path, good)).status in (200, 403)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ["shared", "isolated"])
async def test_ten_peers_over_one_connection(tmp_path: Path, store: peerbox.PeerStore, demo_policy: str,
                                            mode: str, transport: str, nats_server: NatsServer) -> None:
    names = [f"p{i}" for i in range(10)]
    for name in names:
        store.init(name)
        (tmp_path / "peers" / name / "policy.toml").write_text(demo_policy)
    results: dict[str, Any] = {}
    async with worker_on(mode, transport, tmp_path, names, nats=nats_server.url) as (url, carrier):
        c = Caller(store, carrier, url)

        async def one(name: str) -> None:
            status, _, body, req = await c.send("target.name", to=name)
            assert status == 200
            results[name] = c.reply(body, req, name).value

        async with trio.open_nursery() as n:
            for name in names:
                n.start_soon(one, name)
        assert isinstance(carrier, SchemeTransport)
        assert [t.connections_opened for t in carrier.transports.values()] == [1]  # type: ignore[attr-defined]
        if transport != "nats":  # (over NATS nobody answers bob's subject)
            assert (await c.send("1"))[0] == 404  # bob is not among them
    assert results == {name: name for name in names}


async def test_isolated_child_killed_is_restarted(tmp_path: Path, store: peerbox.PeerStore) -> None:
    async with isolated(tmp_path) as (url, _), H2Transport() as transport:
        c = Caller(store, transport, url)
        assert (await c.send("1"))[0] == 200
        pattern = f"peerbox.net._child --root {tmp_path} --peers bob "
        out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
        # carol keeps serving; bob answers 503 + retry-after until his worker is back, then 200
        assert (await c.send("1", to="carol"))[0] == 200
        statuses = []
        with trio.fail_after(20):
            while True:
                status = (await c.send("1"))[0]
                statuses.append(status)
                if status == 200:
                    break
                assert status == 503
                await trio.sleep(0.1)


def test_cli_serve_stops_cleanly_on_sigterm(tmp_path: Path, store: peerbox.PeerStore, serving: Serving) -> None:
    err = tmp_path / "serve.stderr"
    with serving(tmp_path, "--peers", "bob", quiet=False, stderr=err) as (port, _):
        pass  # SIGTERM; serving asserts exit 0
    assert f"listening on http://127.0.0.1:{port} (peers: bob)" in err.read_text()
    assert not list(tmp_path.glob("port-*"))  # the port file is removed on the way out


def test_isolated_children_follow_their_supervisor(tmp_path: Path, store: peerbox.PeerStore) -> None:
    """SIGKILL the isolated-mode parent: its children see their channel close and exit by themselves."""
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "peerbox.cli._serve", "serve", "--root", str(tmp_path), "--peers", "bob",
         "--mode", "isolated", "--listen", "127.0.0.1:0", "--port-file", str(port_file), "--quiet"])
    pattern = f"peerbox.net._child --root {tmp_path} --peers bob --fd"  # not the parent

    def children() -> list[int]:
        out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert port_file.exists() and len(children()) == 1
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children() == []


async def test_real_http2_clients(tmp_path: Path, store: peerbox.PeerStore) -> None:
    """curl, nghttp and h2load (nobody here wrote them) against a shared worker."""
    missing = [t for t in ("curl", "nghttp", "h2load") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"NOT TESTED: {', '.join(missing)} missing (apt-get install curl nghttp2-client)")
    from peerbox.cli import main as cli_main

    script = tmp_path / "job.rhai"
    script.write_text("caller.name + \" at \" + target.name")
    req1, req2, out = tmp_path / "req1.cose", tmp_path / "req2.cose", tmp_path / "reply.cose"
    for req in (req1, req2):
        assert cli_main(["envelope", "make", "--from", "alice", "--to", "bob", str(script),
                         "--root", str(tmp_path), "-o", str(req)]) == 0
    async with shared(tmp_path) as (url, _):
        curl = ["curl", "-sS", "--http2-prior-knowledge", "-H", "content-type: application/cose",
                "--data-binary", f"@{req1}", "-o", str(out), "-w", "%{http_code} %{http_version}",
                f"{url}/v1/exec"]
        done = await trio.run_process(curl, capture_stdout=True)
        assert done.stdout == b"200 2"
        assert cli_main(["envelope", "inspect", str(out), "--root", str(tmp_path)]) == 0
        assert verify_reply(out.read_bytes(), target=peerbox.PeerStore(tmp_path).get("bob").public_key,
                            request_bytes=req1.read_bytes()).value == "alice at bob"
        done = await trio.run_process(curl, capture_stdout=True)
        assert done.stdout == b"409 2"  # the same bytes again

        done = await trio.run_process(["nghttp", "-H", "content-type: application/cose", "-d", str(req2),
                                       f"{url}/v1/exec"], capture_stdout=True)
        reply = verify_reply(done.stdout, target=peerbox.PeerStore(tmp_path).get("bob").public_key,
                             request_bytes=req2.read_bytes())
        assert reply.ok and reply.value == "alice at bob"

        done = await trio.run_process(["h2load", "-n", "500", "-c", "1", "-m", "100", f"{url}/v1/health"],
                                      capture_stdout=True)
        text = done.stdout.decode()
        assert "500 succeeded, 0 failed, 0 errored" in text, text
