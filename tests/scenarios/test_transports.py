"""The same worker over every transport: HTTP/2 and WebSocket carry the same envelopes to the same app.

A real worker (shared and isolated mode in this process, and real ``peerbox
serve`` processes) listens on HTTP/2 and WebSocket at once; a client picks
the carrier from the directory URL (:class:`~peerbox.net._transports.SchemeTransport`).
Every request type (exec, call, logic, revoke) works over each; the very
same signed bytes get byte-identical answers whichever way they travel
(a refusal's body, a replay's 409); ``peerbox send`` reaches a ``ws://``
directory entry; ``serve --listen`` takes several URLs in shared, ``--workers
2`` and isolated mode; a bad ``--listen`` URL is exit 2.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import peerbox
from peerbox.net._h2client import CALL_PATH, EXEC_PATH, REVOKE_PATH
from peerbox.net._transports import SchemeTransport
from peerbox.peer import Directory
from peerbox.wire import grant, make_request, verify_reply

from ..conftest import NatsServer
from ._serve_helpers import MODES, TRANSPORTS, Caller
from .conftest import PEERBOX, Serving

pytestmark = pytest.mark.slow  # servers, child processes, `peerbox serve`



POLICY = """version = 2
[[rule]]
effect = "allow"
who = "owner"
actions = ["*", "logic.*"]

[[rule]]
effect = "allow"
who = "alice"
actions = ["exec", "call"]
"""

API = """
export fn twice(x) { x * 2 }
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """alice, bob and carol; bob publishes ``api::twice`` and lets alice exec and call (carol: nothing)."""
    root = tmp_path / "root"
    root.mkdir()
    store = peerbox.PeerStore(root)
    store.init("alice")
    store.init("carol")
    bob = store.init("bob")
    (root / "peers" / "bob" / "policy.toml").write_text(POLICY)
    bob.paths.logic.mkdir(parents=True, exist_ok=True)
    (bob.paths.logic / "api.rhai").write_text(API)
    return root


@asynccontextmanager
async def urls(mode: str, root: Path, nats: str) -> AsyncIterator[dict[str, str]]:
    """A worker of ``mode`` hosting bob on HTTP/2, WebSocket and the NATS server ``nats`` at once;
    its URL per transport."""
    async with MODES[mode](root, ["bob"], ws=True, nats=nats) as (h2, ws):
        yield {"h2": h2, "ws": ws, "nats": nats}


def pointed(root: Path, url: str) -> Directory:
    """The root's directory with bob at ``url``."""
    directory = Directory(root)
    directory.add("bob", peerbox.PeerStore(root).get("bob").did, url, replace=True)
    return directory


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_request_type_over_each_transport(root: Path, mode: str, transport: str,
                                                      nats_server: NatsServer) -> None:
    store = peerbox.PeerStore(root)
    async with urls(mode, root, nats_server.url) as where:
        directory = pointed(root, where[transport])
        async with peerbox.net.AsyncClient(store.get("alice").signing_key(), directory) as alice, \
                peerbox.net.AsyncClient(store.get("bob").signing_key(), directory) as owner:
            reply = await alice.exec("bob", "40 + 2")
            assert reply.ok and reply.value == 42
            reply = await alice.call("bob", "api::twice", 21)
            assert reply.ok and reply.value == 42
            reply = await owner.logic("bob", "list")
            assert reply.ok
            bob = store.get("bob")
            token = grant(bob.signing_key(), audience=store.get("alice").public_key, subject=bob.public_key,
                          grants=["exec"], now=int(time.time()), ttl=600)
            reply = await owner.revoke("bob", token)
            assert reply.ok and reply.value["already"] is False
            transports = alice.transport
            assert isinstance(transports, SchemeTransport)
            assert set(transports.transports) == {transport}  # only the URL's carrier was made


@pytest.mark.parametrize("mode", list(MODES))
async def test_the_same_signed_bytes_get_the_same_answers_on_every_transport(root: Path, mode: str,
                                                                             nats_server: NatsServer) -> None:
    store = peerbox.PeerStore(root)
    caller = Caller(store, None, "")  # type: ignore[arg-type]  # signing only
    bob = store.get("bob").public_key
    async with urls(mode, root, nats_server.url) as where, SchemeTransport() as carrier:
        async def send(transport: str, path: str, data: bytes) -> tuple[int, bytes]:
            status, _, body = await carrier.exec(where[transport], data, 20.0, path=path)
            return status, body

        # One exec envelope: accepted on one carrier, a replay on the other; its reply verifies the same.
        request = make_request(caller.key("alice"), target=bob, script="[1, 2.5, \"x\"]", now=int(time.time()))
        status, body = await send(TRANSPORTS[-1], EXEC_PATH, request)
        assert status == 200
        reply = verify_reply(body, target=bob, request_bytes=request)
        assert reply.ok and reply.value == [1, 2.5, "x"]
        replays = {t: await send(t, EXEC_PATH, request) for t in TRANSPORTS}
        assert {s for s, _ in replays.values()} == {409}
        assert len(set(replays.values())) == 1  # byte for byte

        # A call and a denial, each carrier its own (fresh nonce), verify to the same outcome.
        def outcome(status: int, body: bytes, req: bytes) -> tuple[Any, ...]:
            reply = verify_reply(body, target=bob, request_bytes=req)
            return status, reply.ok, reply.denied, reply.value, reply.error

        for sender, path, expected in (("alice", CALL_PATH, (200, True, False, 10)),
                                       ("carol", CALL_PATH, (403, False, True)),
                                       ("carol", EXEC_PATH, (403, False, True))):
            outcomes = []
            for t in TRANSPORTS:
                req = (caller.call_request("api::twice", [5], sender=sender) if path == CALL_PATH else
                       make_request(caller.key(sender), target=bob, script="5 * 2", now=int(time.time())))
                outcomes.append(outcome(*await send(t, path, req), req))
            assert outcomes[0][:len(expected)] == expected
            assert all(o == outcomes[0] for o in outcomes), outcomes

        # A forged envelope and an envelope sent to the wrong endpoint: identical refusals.
        forged = request[:-1] + bytes([request[-1] ^ 1])
        assert len({await send(t, EXEC_PATH, forged) for t in TRANSPORTS}) == 1
        fresh = make_request(caller.key("alice"), target=bob, script="1", now=int(time.time()))
        wrong = {await send(t, REVOKE_PATH, fresh) for t in TRANSPORTS}
        assert len(wrong) == 1 and next(iter(wrong))[0] == 400


def _listening(err: Path, timeout: float = 30.0) -> list[str]:
    """The URLs of the "listening on" line ``peerbox serve`` printed to ``err``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"listening on (.*) \(peers", err.read_text(errors="replace"))
        if found:
            return found.group(1).split(", ")
        time.sleep(0.05)
    raise AssertionError(f"no 'listening on' line: {err.read_text(errors='replace')[-1000:]}")


def _send(root: Path, script: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PEERBOX, "send", "--root", str(root), "--from", "alice", "--to", "bob", str(script),
                           "--json", *extra], capture_output=True, text=True, timeout=60)


SERVE_MODES = {"shared": [], "workers2": ["--workers", "2"], "isolated": ["--mode", "isolated"]}


@pytest.mark.parametrize("how", list(SERVE_MODES))
def test_serve_listens_on_every_transport_and_send_reaches_each(root: Path, serving: Serving, how: str,
                                                                tmp_path: Path, nats_server: NatsServer) -> None:
    err = tmp_path / "serve.err"
    script = tmp_path / "s.rhai"
    script.write_text("6 * 7")
    with serving(root, "--peers", "bob", "--listen", "ws://127.0.0.1:0", "--listen", nats_server.url,
                 *SERVE_MODES[how], stderr=err, quiet=False) as (port, _):
        shown = _listening(err)
        assert shown[0] == f"http://127.0.0.1:{port}" and shown[1].startswith("ws://127.0.0.1:")
        assert shown[2] == nats_server.url
        for url in shown:
            pointed(root, url)
            done = _send(root, script)
            assert done.returncode == 0, done.stderr
            assert '"value": 42' in done.stdout
    logged = err.read_text()
    for carrier in ("h2c", "ws", "nats"):  # the access log names the carrier
        assert f"transport={carrier}" in logged, logged[-2000:]


def _requests_by_process(port: int) -> dict[str, int]:
    """``/metrics`` of a ``--workers N`` worker: the requests each process answered, by its index."""
    done = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", f"http://127.0.0.1:{port}/metrics"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    counts: dict[str, int] = {}
    for found in re.finditer(r'^peerbox_requests_total\{[^}]*process="(\d+)"[^}]*\} (\d+)$', done.stdout, re.M):
        counts[found.group(1)] = counts.get(found.group(1), 0) + int(found.group(2))
    return counts


def test_workers_share_a_nats_queue_group(root: Path, serving: Serving, nats_server: NatsServer) -> None:
    store = peerbox.PeerStore(root)
    with serving(root, "--peers", "bob", "--workers", "2", "--listen", nats_server.url) as (port, _):
        directory = pointed(root, nats_server.url)

        async def many() -> list[Any]:
            async with peerbox.net.AsyncClient(store.get("alice").signing_key(), directory) as alice:
                return [(await alice.exec("bob", "params.i + 1", params={"i": i})).value for i in range(40)]

        assert trio.run(many) == list(range(1, 41))
        deadline = time.monotonic() + 30  # each process publishes its metrics every second or so
        while True:
            counts = _requests_by_process(port)
            if sum(counts.values()) >= 40 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert sum(counts.values()) == 40, counts
    assert set(counts) == {"0", "1"} and min(counts.values()) > 0, counts  # nats-server spread them


@pytest.mark.parametrize("scheme", ["ws", "nats"])
def test_directory_add_takes_the_url_and_send_and_call_use_it(root: Path, serving: Serving, tmp_path: Path,
                                                              scheme: str, nats_server: NatsServer) -> None:
    err = tmp_path / "serve.err"
    script = tmp_path / "s.rhai"
    script.write_text("1 + 1")
    listen = "ws://127.0.0.1:0" if scheme == "ws" else nats_server.url
    with serving(root, "--peers", "bob", "--listen", listen, stderr=err, quiet=False):
        url = _listening(err)[1]
        assert url.startswith(f"{scheme}://")
        added = subprocess.run([*PEERBOX, "directory", "add", "--root", str(root), "bob", url],
                               capture_output=True, text=True, timeout=30)
        assert added.returncode == 0, added.stderr
        assert url in subprocess.run([*PEERBOX, "directory", "list", "--root", str(root)], capture_output=True,
                                     text=True, timeout=30).stdout
        done = _send(root, script)
        assert done.returncode == 0 and '"value": 2' in done.stdout, done.stderr
        called = subprocess.run([*PEERBOX, "call", "--root", str(root), "--from", "alice", "--to", "bob",
                                 "--args-json", "[21]", "--json", "api::twice"], capture_output=True, text=True,
                                timeout=60)
        assert called.returncode == 0 and '"value": 42' in called.stdout, called.stderr
    assert f"transport={scheme}" in err.read_text()
    done = _send(root, script, "--timeout", "5")  # the worker is gone: no answer is exit 7
    assert done.returncode == 7, done.stderr


@pytest.mark.parametrize("how", list(SERVE_MODES))
def test_a_nats_server_that_is_down_is_exit_2_before_listening(root: Path, how: str,
                                                               nats_servers: Callable[[], NatsServer]) -> None:
    server = nats_servers()
    server.stop()  # its port is known and nothing answers there now
    done = subprocess.run([*PEERBOX, "serve", "--root", str(root), "--listen", "127.0.0.1:0", "--listen",
                           server.url, *SERVE_MODES[how]], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect to the NATS server" in lines[0] and server.url in lines[0], lines
    assert "listening on" not in done.stderr


@pytest.mark.parametrize("bad", ["ftp://127.0.0.1:1", "ws://127.0.0.1", "ws://127.0.0.1:1/path", "nope",
                                 "ws://127.0.0.1:0,ws://127.0.0.1:0"])
def test_a_bad_listen_url_is_exit_2(root: Path, bad: str) -> None:
    done = subprocess.run([*PEERBOX, "serve", "--root", str(root), "--listen", bad], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "--listen" in done.stderr and "Traceback" not in done.stderr
    assert "listening on" not in done.stderr


def test_two_listeners_of_one_kind_and_wss_without_tls_are_exit_2(root: Path) -> None:
    for args in (["--listen", "ws://127.0.0.1:0", "--listen", "ws://127.0.0.1:0"],
                 ["--listen", "wss://127.0.0.1:0"]):
        done = subprocess.run([*PEERBOX, "serve", "--root", str(root), *args], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2, done.stderr
        assert "listening on" not in done.stderr


def test_a_ws_port_in_use_is_exit_2_before_listening(root: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*PEERBOX, "serve", "--root", str(root), "--listen", "127.0.0.1:0", "--listen",
                               f"ws://127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "listening on" not in done.stderr and str(port) in done.stderr

