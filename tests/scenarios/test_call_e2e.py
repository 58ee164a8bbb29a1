"""Published functions end to end: bob publishes an API, carol (another machine) calls it.

A real worker (shared and isolated mode, and real ``peerbox serve`` processes)
hosts bob. carol's key lives under a root of her own; bob knows her only
through his ``peers.toml`` (no URL: she only calls). She may ``call`` bob's
published ``inbox::deliver`` and ``vault::*``, which run with bob's rights,
while her own scripts may touch almost nothing: what the issue calls "append a
message to his inbox and nothing else". Also: argument errors are signed
``bad_arguments`` replies, names resolve across roots, a revocation sent to a
remote worker holds (across a restart), and per-caller rate limits and quotas
hold under concurrent callers and worker processes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

import peerbox
from peerbox.net._h2client import CALL_PATH, H2Transport, Transport
from peerbox.peer import Directory
from peerbox.wire import KeyPair, delegate, grant

from ..conftest import NatsServer
from ._serve_helpers import MODES, TRANSPORTS, Caller, Sent, shared, worker_on
from .conftest import PEERBOX, Serving

pytestmark = pytest.mark.slow  # servers, child processes, `peerbox serve`



INBOX = """
// bob's inbox: anyone bob's policy lets call inbox::deliver leaves a line, with bob's rights
export fn deliver(msg: string) {
    if msg.len() > 1000 { throw "message too long" }
    fs::mkdir("inbox");
    fs::append("inbox/messages.log", `${caller.name}: ${msg}\n`);
    "delivered"
}
"""

VAULT = """
export fn put(text: string) {
    fs::mkdir("vault");
    fs::write(`vault/${caller.name}.txt`, text);
    "stored"
}
export fn whoami() { #{ name: caller.name, id: caller.id, target: target.name } }
fn helper() { 1 }
private fn secret() { 2 }
"""

BOX = """
export fn put(name: string, text: string) { fs::write(`inbox/${name}`, text); name }
export fn ping() { 1 }
"""

OWNER = """version = 2
[[rule]]
effect = "allow"
who = "owner"
actions = ["*", "logic.*"]
"""

CAROL = OWNER + """
[[rule]]
effect = "allow"
who = "carol"
actions = ["call"]
resources = ["inbox::deliver", "vault::*"]

[[rule]]
effect = "allow"
who = "carol"
actions = ["exec"]
limits = { timeout = 2.0 }

[[rule]]
effect = "allow"
who = "carol"
actions = ["fs.append"]
resources = ["inbox/carol.log"]

[[rule]]
effect = "allow"
who = "carol"
actions = ["module.import"]
resources = ["vault"]
"""


@dataclass
class World:
    """bob (and alice, dave) under ``root``; carol and mallory each under a root of their own."""

    root: Path
    store: peerbox.PeerStore
    carol: KeyPair
    mallory: KeyPair

    @property
    def files(self) -> Path:
        """bob's storage (the fs backend)."""
        return self.root / "peers" / "bob" / "files"

    def policy(self, text: str) -> None:
        (self.root / "peers" / "bob" / "policy.toml").write_text(text)

    def module(self, name: str, source: str) -> None:
        logic = self.store.get("bob").paths.logic
        logic.mkdir(parents=True, exist_ok=True)
        (logic / f"{name}.rhai").write_text(source)

    def caller(self, transport: Transport, url: str) -> Caller:
        return Caller(self.store, transport, url, {"carol": self.carol, "mallory": self.mallory})


def _elsewhere(root: Path, name: str) -> peerbox.Peer:
    root.mkdir()
    return peerbox.PeerStore(root).init(name)


@pytest.fixture
def world(tmp_path: Path) -> World:
    root = tmp_path / "bob-root"
    root.mkdir()
    store = peerbox.PeerStore(root)
    for name in ("alice", "bob", "dave"):
        store.init(name)
    carol = _elsewhere(tmp_path / "carol-root", "carol")
    mallory = _elsewhere(tmp_path / "mallory-root", "mallory")
    Directory(root).add("carol", carol.did)  # no URL: carol only calls bob
    w = World(root, store, carol.signing_key(), mallory.signing_key())
    w.policy(CAROL)
    w.module("inbox", INBOX)
    w.module("vault", VAULT)
    w.module("box", BOX)
    return w


def _error(c: Caller, sent: Sent, status: int = 200) -> dict[str, Any]:
    """The error of a signed, failed reply answered with ``status``."""
    got, ctype, body, req = sent
    assert (got, ctype) == (status, "application/cose"), body[:200]
    reply = c.reply(body, req)
    assert not reply.ok and reply.error is not None
    return reply.error


def _value(c: Caller, sent: Sent) -> Any:
    """The value of a signed ok reply (200)."""
    status, ctype, body, req = sent
    assert (status, ctype) == (200, "application/cose"), body[:200]
    reply = c.reply(body, req)
    assert reply.ok, reply.error
    return reply.value


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", list(MODES))
async def test_carol_can_deliver_but_cannot_write_append_elsewhere_mkdir_or_read(
        world: World, mode: str, transport: str, nats_server: NatsServer) -> None:
    async with worker_on(mode, transport, world.root, ["bob"], nats=nats_server.url) as (url, carrier):
        c = world.caller(carrier, url)
        assert _value(c, await c.call("inbox::deliver", {"msg": "hi"})) == "delivered"
        assert _value(c, await c.call("inbox::deliver", ["again"])) == "delivered"
        assert (world.files / "inbox" / "messages.log").read_text() == "carol: hi\ncarol: again\n"
        # the one thing her own scripts may do: append to inbox/carol.log
        own = 'fs::append("inbox/carol.log", "mine\\n"); "ok"'
        assert _value(c, await c.send(own, sender="carol")) == "ok"
        assert (world.files / "inbox" / "carol.log").read_text() == "mine\n"
        for script, action in [('fs::write("inbox/x.txt", "x")', "fs.write"),
                               ('fs::write("inbox/messages.log", "")', "fs.write"),
                               ('fs::append("inbox/messages.log", "forged")', "fs.append"),
                               ('fs::mkdir("inbox/d")', "fs.mkdir"),
                               ('fs::read("inbox/carol.log")', "fs.read")]:
            error = _error(c, await c.send(script, sender="carol"))
            assert error["kind"] == "denied" and error["message"].startswith(f"{action} of "), (script, error)
        assert sorted(p.name for p in (world.files / "inbox").iterdir()) == ["carol.log", "messages.log"]
        assert (world.files / "inbox" / "messages.log").read_text() == "carol: hi\ncarol: again\n"
        # and the owner's code still checks what it is given
        assert "message too long" in _error(c, await c.call("inbox::deliver", {"msg": "x" * 1001}))["message"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", list(MODES))
async def test_a_published_function_writes_where_the_caller_cannot_and_an_unpublished_one_cannot_be_called(
        world: World, mode: str, transport: str, nats_server: NatsServer) -> None:
    async with worker_on(mode, transport, world.root, ["bob"], nats=nats_server.url) as (url, carrier):
        c = world.caller(carrier, url)
        # carol may not write under vault/ herself ...
        own = 'fs::mkdir("vault"); fs::write("vault/carol.txt", "x")'
        error = _error(c, await c.send(own, sender="carol"))
        assert error["kind"] == "denied"
        assert not (world.files / "vault").exists()
        # ... but bob's published vault::put does, with bob's rights
        assert _value(c, await c.call("vault::put", {"text": "secret of carol"})) == "stored"
        assert (world.files / "vault" / "carol.txt").read_text() == "secret of carol"
        # rights never rise: the same function imported by carol's own script runs with carol's rights
        error = _error(c, await c.send('import "vault" as v; v::put("overwritten")', sender="carol"))
        assert error["kind"] == "denied" and error["message"].startswith("fs.mkdir of ")
        assert (world.files / "vault" / "carol.txt").read_text() == "secret of carol"
        # a public but unpublished, a private and a missing function: the same answer, nothing runs
        answers = []
        for name in ("vault::helper", "vault::secret", "vault::missing"):
            error = _error(c, await c.call(name))
            assert error["kind"] == "no_such_function", (name, error)
            answers.append(error["message"].replace(name, "F"))
        assert len(set(answers)) == 1, answers
        # a function the policy does not let carol call is a signed denial (403) of `call`
        error = _error(c, await c.call("box::ping"), 403)
        assert error["kind"] == "denied" and "box::ping" in error["message"], error


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", list(MODES))
async def test_argument_errors_are_signed_bad_arguments(world: World, mode: str, transport: str,
                                                        nats_server: NatsServer) -> None:
    async with worker_on(mode, transport, world.root, ["bob"], nats=nats_server.url) as (url, carrier):
        c = world.caller(carrier, url)
        cases: list[tuple[Any, str]] = [
            (["a", "b"], "vault::put takes 1 argument (text), got 2"),
            ([], "vault::put takes 1 argument (text), got 0"),
            ({"body": "x"}, "vault::put has no parameter 'body' (it takes text)"),
            ({}, "vault::put: missing argument 'text'"),
            ({"text": 5}, "vault::put: argument 'text' must be string, got i64"),
            ([b"\x00"], "vault::put: argument 'text' must be string, got blob"),
        ]
        for params, message in cases:
            error = _error(c, await c.call("vault::put", params))
            assert (error["kind"], error["message"]) == ("bad_arguments", message), params
        assert _error(c, await c.call("vault::put"))["kind"] == "bad_arguments"  # no params at all
        assert not (world.files / "vault").exists()  # nothing ran


@pytest.mark.parametrize("mode", list(MODES))
async def test_remote_names_match_with_keys_under_different_roots(world: World, mode: str) -> None:
    carol_did = world.carol.did
    async with MODES[mode](world.root, ["bob"]) as (url, _), H2Transport() as transport:
        c = world.caller(transport, url)
        # `who = "carol"` matches the key bob's peers.toml names carol; caller.name says so
        assert _value(c, await c.call("vault::whoami")) == {"name": "carol", "id": carol_did, "target": "bob"}
        assert _value(c, await c.send("caller.name", sender="carol")) == "carol"
        # a key nobody named is nobody: denied, for a call and for an exec alike
        for sent in (await c.call("vault::whoami", sender="mallory"), await c.send("1", sender="mallory")):
            assert _error(c, sent, 403)["kind"] == "denied"
        # naming mallory "carol" too does not make her carol: a did is known by its first name
        Directory(world.root).add("carol2", world.mallory.did)
        assert _error(c, await c.call("vault::whoami", sender="mallory"), 403)["kind"] == "denied"
        # re-pointing the name does (peers.toml is an authorization input)
        Directory(world.root).add("carol", world.mallory.did, replace=True)
        await trio.sleep(1.2)  # names are re-read at most once a second
        who = _value(c, await c.call("vault::whoami", sender="mallory"))
        assert who == {"name": "carol", "id": world.mallory.did, "target": "bob"}


# -- real `peerbox serve` processes -----------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PEERBOX, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def alice_root(tmp_path: Path, world: World) -> Iterator[Path]:
    """alice under a root of her own, named in bob's peers.toml; bob lets her ``delegate``."""
    root = tmp_path / "alice-root"
    alice = _elsewhere(root, "alice")
    Directory(world.root).add("alice-remote", alice.did)
    world.policy(OWNER + '\n[[rule]]\neffect = "allow"\nwho = "alice-remote"\nactions = ["delegate"]\n')
    yield root


async def test_a_revocation_sent_to_a_remote_worker_takes_effect_and_survives_a_restart(
        world: World, alice_root: Path, serving: Serving, tmp_path: Path) -> None:
    alice = peerbox.PeerStore(alice_root).get("alice")
    bob = world.store.get("bob")
    token = grant(alice.signing_key(), audience=world.carol.public_key, subject=bob.public_key,
                  grants=["call:inbox::deliver"], now=int(time.time()), ttl=3600)
    token_file = tmp_path / "carol.cap"
    token_file.write_bytes(token)
    # carol passes it on to mallory: a descendant, refused with it
    child = delegate(token, world.carol, audience=world.mallory.public_key, grants=["call:inbox::deliver"],
                     now=int(time.time()))

    async def deliver(url: str, msg: str, sender: str = "carol") -> Sent:
        async with H2Transport() as transport:
            return await world.caller(transport, url).call(
                "inbox::deliver", {"msg": msg}, sender=sender, caps=[token if sender == "carol" else child])

    with serving(world.root, "--workers", "1") as (port, _):
        url = f"http://127.0.0.1:{port}"
        async with H2Transport() as transport:
            c = world.caller(transport, url)
            assert _value(c, await deliver(url, "with alice's capability")) == "delivered"
            assert _value(c, await deliver(url, "passed on", "mallory")) == "delivered"
            # no capability, no rule naming carol: denied
            assert _error(c, await c.call("inbox::deliver", {"msg": "without"}), 403)["kind"] == "denied"
            Directory(alice_root).add("bob", bob.did, url)
            revoke = ("cap", "revoke", str(token_file), "--as", "alice", "--notify", "bob", "--root",
                      str(alice_root))
            done = await trio.to_thread.run_sync(lambda: _cli(*revoke))
            assert done.returncode == 0, done.stderr
            assert "bob: revoked" in done.stdout and "(already)" not in done.stdout
            # the very next request with the token, or with its descendant, is refused
            for sender in ("carol", "mallory"):
                error = _error(c, await deliver(url, "after revocation", sender), 403)
                assert error["kind"] == "denied" and "revoked" in error["message"], error
            # revoking again changes nothing and says so
            done = await trio.to_thread.run_sync(lambda: _cli(*revoke))
            assert done.returncode == 0 and "(already)" in done.stdout, (done.stdout, done.stderr)
    with serving(world.root, "--workers", "1") as (port, _):
        url = f"http://127.0.0.1:{port}"
        async with H2Transport() as transport:
            c = world.caller(transport, url)
            for sender in ("carol", "mallory"):
                error = _error(c, await deliver(url, "after restart", sender), 403)
                assert error["kind"] == "denied" and "revoked" in error["message"], error
    # mallory is named nowhere bob looks: her caller.name is ""
    log = (world.files / "inbox" / "messages.log").read_text()
    assert log == "carol: with alice's capability\n: passed on\n"


LIMITED = OWNER + """
[[rule]]
effect = "allow"
who = "carol"
actions = ["call"]
resources = ["box::ping"]
limits = { calls_per_minute = 6, burst = 5 }

[[rule]]
effect = "allow"
who = "carol"
actions = ["call"]
resources = ["box::put"]
limits = { max_bytes = 1000, max_files = 100 }

[[rule]]
effect = "allow"
who = "carol"
actions = ["exec"]
"""

SERVE_MODES = {"workers2": ("--workers", "2"), "isolated": ("--mode", "isolated")}


async def _concurrently(world: World, url: str, n: int, function: str,
                        params: Any = None) -> list[tuple[Sent, dict[str, str]]]:
    """``n`` calls of ``function`` at once over two connections; (sent, headers) of each."""
    out: list[tuple[Sent, dict[str, str]]] = []
    async with H2Transport() as t1, H2Transport() as t2:
        callers = [world.caller(t1, url), world.caller(t2, url)]

        async def one(i: int) -> None:
            c = callers[i % 2]
            p = params(i) if callable(params) else params
            req = c.call_request(function, p)
            answer = await c.post(CALL_PATH, req)
            out.append(((answer.status, answer.content_type, answer.body, req), dict(answer.headers)))

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
    return out


@pytest.mark.parametrize("how", list(SERVE_MODES))
async def test_per_caller_rate_limit_holds_under_concurrent_callers(world: World, serving: Serving,
                                                                     how: str) -> None:
    world.policy(LIMITED)
    with serving(world.root, *SERVE_MODES[how]) as (port, _):
        url = f"http://127.0.0.1:{port}"
        answers = await _concurrently(world, url, 20, "box::ping")
        async with H2Transport() as transport:
            c = world.caller(transport, url)
            ok = [sent for sent, _ in answers if sent[0] == 200]
            limited = [(sent, headers) for sent, headers in answers if sent[0] == 429]
            assert 5 <= len(ok) <= 6 and len(ok) + len(limited) == 20, [s[0] for s, _ in answers]
            assert all(_value(c, sent) == 1 for sent in ok)
            for sent, headers in limited:
                error = _error(c, sent, 429)
                assert error["kind"] == "rate_limited" and error["rule"].startswith("policy.toml:"), error
                assert 1 <= int(headers["retry-after"]) <= 60, headers
            # the limit is carol's, not the peer's: the owner still runs
            assert _value(c, await c.send("1", sender="bob")) == 1


@pytest.mark.parametrize("how", list(SERVE_MODES))
async def test_per_caller_quota_holds_under_concurrent_callers(world: World, serving: Serving,
                                                                how: str) -> None:
    world.policy(LIMITED)
    (world.files / "inbox").mkdir(parents=True)
    with serving(world.root, *SERVE_MODES[how]) as (port, _):
        url = f"http://127.0.0.1:{port}"
        answers = await _concurrently(world, url, 20, "box::put",
                                      lambda i: {"name": f"m{i}", "text": "x" * 100})
        async with H2Transport() as transport:
            c = world.caller(transport, url)
            kinds = []
            for sent, _ in answers:
                status, _, body, req = sent
                reply = c.reply(body, req)
                assert status == 200
                kinds.append("ok" if reply.ok else (reply.error or {}).get("kind"))
            assert set(kinds) == {"ok", "quota_exceeded"} and kinds.count("ok") == 10, kinds
    on_disk = [p.stat().st_size for p in (world.files / "inbox").iterdir()]
    assert sum(on_disk) <= 1000 and len(on_disk) == kinds.count("ok")


async def test_bob_deleting_carols_file_frees_her_quota(world: World) -> None:
    world.policy(LIMITED.replace("max_bytes = 1000", "max_bytes = 300"))
    (world.files / "inbox").mkdir(parents=True)
    async with shared(world.root, ["bob"]) as (url, _), H2Transport() as transport:
        c = world.caller(transport, url)
        for name in ("a", "b", "c"):
            assert _value(c, await c.call("box::put", {"name": name, "text": "x" * 100})) == name
        error = _error(c, await c.call("box::put", {"name": "d", "text": "x" * 100}))
        assert error["kind"] == "quota_exceeded", error
        assert not (world.files / "inbox" / "d").exists()
        # replacing her own file with a smaller one frees the difference
        assert _value(c, await c.call("box::put", {"name": "a", "text": "x" * 50})) == "a"
        error = _error(c, await c.call("box::put", {"name": "d", "text": "x" * 100}))
        assert error["kind"] == "quota_exceeded"
        assert _value(c, await c.call("box::put", {"name": "d", "text": "x" * 50})) == "d"
        # bob deletes one of her messages: her share of it is released
        assert _value(c, await c.send('fs::delete("inbox/b"); 0', sender="bob")) == 0
        assert _value(c, await c.call("box::put", {"name": "e", "text": "x" * 100})) == "e"
        assert _error(c, await c.call("box::put", {"name": "f", "text": "x"}))["kind"] == "quota_exceeded"
