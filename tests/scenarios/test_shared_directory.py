"""The directory shared through JetStream: ``peerbox directory ... --state``, ``serve --publish`` and
``send --state`` against a real nats-server and real ``peerbox serve`` processes.

The nats-server is the session's, so its ``peerbox-directory`` bucket outlives each test: every
test names its peers with a suffix of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox.net import Client, NoLiveWorker, SharedDirectory, shared_directory
from peerbox.peer import Directory

from .conftest import PEERBOX, Serving

pytestmark = pytest.mark.slow  # nats-server and `peerbox serve` processes


def peerbox_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m peerbox ARGS`` in a subprocess (stdout, stderr as text)."""
    return subprocess.run([*PEERBOX, *map(str, args)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})))


def unique(name: str) -> str:
    """``name`` with a suffix of this test's own (the bucket is shared by the session)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def listed(url: str, root: Path) -> dict[str, dict[str, Any]]:
    """``directory list --json --state url``, by name."""
    r = peerbox_cli("directory", "list", "--json", "--state", url, "--root", root)
    assert r.returncode == 0, r.stderr
    return {e["name"]: e for e in json.loads(r.stdout)}


def until(condition: Any, what: str, limit: float = 60.0) -> None:
    """Wait for ``condition()`` to be true (polled; ``limit`` only bounds a broken run)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.2)


def test_add_list_remove_on_the_shared_directory_seen_from_another_root(tmp_path: Path,
                                                                        nats_server: Any) -> None:
    url = nats_server.url
    one, two = tmp_path / "one", tmp_path / "two"  # two machines: only the NATS server in common
    bob = unique("bob")
    bob_did = peerbox.PeerStore(one).init(bob).did
    carol_did = peerbox.PeerStore(two).init("carol").did
    r = peerbox_cli("directory", "add", bob, url, "--state", url, "--root", one)  # the did is looked up
    assert r.returncode == 0, r.stderr
    assert f"{bob} = {bob_did} at {url} (in {url} (bucket peerbox-directory))" in r.stderr
    assert Directory(one).list() == []  # peers.toml untouched

    r = peerbox_cli("directory", "list", "--json", "--root", two, env={"PEERBOX_STATE": url})
    assert r.returncode == 0, r.stderr
    assert {"name": bob, "did": bob_did, "url": url, "state": "static", "urls": [url], "workers": 0,
            "ttl": None} in json.loads(r.stdout)

    r = peerbox_cli("directory", "add", bob, carol_did, "--state", url, "--root", two)
    assert r.returncode == 2 and f"'{bob}' is already in {url}" in r.stderr and "--replace" in r.stderr
    r = peerbox_cli("directory", "add", bob, "did:key:nonsense", "--state", url, "--root", two)
    assert r.returncode == 2 and "Traceback" not in r.stderr  # validated as for peers.toml
    r = peerbox_cli("directory", "add", bob, carol_did, "--replace", "--state", url, "--root", two)
    assert r.returncode == 0, r.stderr
    r = peerbox_cli("directory", "list", "--state", url, "--root", one)
    assert f"{bob}\t{carol_did}\t-\tstatic\n" in r.stdout  # no URL: shown as on peers.toml

    r = peerbox_cli("directory", "remove", bob, "--state", url, "--root", one)
    assert r.returncode == 0 and f"removed {bob} = {carol_did}" in r.stderr
    r = peerbox_cli("directory", "remove", bob, "--state", url, "--root", two)
    assert r.returncode == 2 and f"no peer named '{bob}' in {url}" in r.stderr
    r = peerbox_cli("directory", "list", "--json", "--state", url, "--root", one)
    assert bob not in r.stdout


def test_no_nats_server_is_exit_7_with_the_reason(tmp_path: Path, nats_servers: Any) -> None:
    server = nats_servers()
    url = server.url
    server.stop()
    r = peerbox_cli("directory", "list", "--state", url, "--root", tmp_path)
    assert r.returncode == 7 and "JetStream" in r.stderr and "Traceback" not in r.stderr


def _bob_worker_root(home: Path, worker: Path, bob: str) -> None:
    """``worker``: a root holding a copy of bob's peer directory, and alice (bob's policy names her)."""
    shutil.copytree(home / "peers" / bob, worker / "peers" / bob)
    Directory(worker).add("alice", peerbox.PeerStore(home).get("alice").did)


@pytest.fixture
def homes(tmp_path: Path, demo_policy: str) -> tuple[Path, Path, str]:
    """(home, client, bob): bob (the demo policy) and alice under ``home``; ``client`` holds alice
    alone, with no peers.toml: it knows bob only through the shared directory."""
    home, client = tmp_path / "home", tmp_path / "client"
    bob = unique("bob")
    store = peerbox.PeerStore(home)
    store.init("alice")
    store.init(bob)
    (home / "peers" / bob / "policy.toml").write_text(demo_policy)
    shutil.copytree(home / "peers" / "alice", client / "peers" / "alice")
    return home, client, bob


def test_a_worker_publishes_its_peer_and_send_reaches_it_through_the_shared_directory(
        tmp_path: Path, homes: tuple[Path, Path, str], nats_server: Any, serving: Serving) -> None:
    home, client, bob = homes
    url = nats_server.url
    bob_did = peerbox.PeerStore(home).get(bob).did
    script = tmp_path / "answer.rhai"
    script.write_text("6 * 7")
    r = peerbox_cli("send", "--from", "alice", "--to", bob, script, "--root", client, "--state", url)
    assert r.returncode == 2 and f"no peer named '{bob}'" in r.stderr and "nor in the shared directory" in r.stderr

    _bob_worker_root(home, tmp_path / "w1", bob)
    with serving(tmp_path / "w1", "--peers", bob, "--workers", "1", "--listen", url, "--state", url,
                 "--publish"):
        entry = listed(url, client)[bob]
        assert (entry["did"], entry["url"], entry["state"], entry["workers"]) == (bob_did, url, "live", 1)

        r = peerbox_cli("send", "--from", "alice", "--to", bob, script, "--root", client)
        assert r.returncode == 2 and f"no peer named '{bob}'" in r.stderr  # without --state: peers.toml only
        r = peerbox_cli("send", "--from", "alice", "--to", bob, script, "--root", client, "--state", url)
        assert (r.returncode, r.stdout) == (0, "42\n"), r.stderr
        r = peerbox_cli("send", "--from", "alice", "--to", bob_did, script, "--root", client,
                        env={"PEERBOX_STATE": url})  # by did too, --state from the environment
        assert (r.returncode, r.stdout) == (0, "42\n"), r.stderr

        key = peerbox.PeerStore(client).get("alice").signing_key()
        with SharedDirectory(client, url) as directory, Client(key, directory) as alice:
            reply = alice.exec(bob, "params.n + 1", params={"n": 41})
            assert reply.ok and reply.value == 42

        # A local entry wins over the shared one: the user's own decision (here a wrong port).
        Directory(client).add(bob, bob_did, "http://127.0.0.1:9")
        r = peerbox_cli("send", "--from", "alice", "--to", bob, script, "--root", client, "--state", url,
                        "--wait", "5")
        assert r.returncode == 7 and "127.0.0.1:9" in r.stderr


def test_a_name_published_for_another_did_stops_the_second_worker(
        tmp_path: Path, homes: tuple[Path, Path, str], nats_server: Any, serving: Serving) -> None:
    home, _client, bob = homes
    url = nats_server.url
    _bob_worker_root(home, tmp_path / "w1", bob)
    _bob_worker_root(home, tmp_path / "w2", bob)  # the same bob on a second machine: welcome
    impostor = tmp_path / "w3"
    peerbox.PeerStore(impostor).init(bob)  # another key under the same name
    with serving(tmp_path / "w1", "--peers", bob, "--workers", "1", "--listen", url, "--state", url,
                 "--publish"), \
         serving(tmp_path / "w2", "--peers", bob, "--workers", "1", "--listen", url, "--state", url,
                 "--publish"):
        r = peerbox_cli("serve", "--root", impostor, "--peers", bob, "--workers", "1", "--listen",
                        "127.0.0.1:0", "--listen", url, "--state", url, "--publish")
        assert r.returncode == 2, r.stderr
        assert f"cannot publish '{bob}'" in r.stderr and "taken by another peer" in r.stderr
        assert peerbox.PeerStore(home).get(bob).did in r.stderr  # names who holds it
        entry = listed(url, impostor)[bob]
        assert (entry["did"], entry["urls"], entry["workers"]) == (peerbox.PeerStore(home).get(bob).did, [url], 2)


def test_publish_needs_state(tmp_path: Path) -> None:
    peerbox.PeerStore(tmp_path).init("bob")
    r = peerbox_cli("serve", "--root", tmp_path, "--peers", "bob", "--workers", "1", "--publish")
    assert r.returncode == 2 and "--publish needs --state" in r.stderr
    r = peerbox_cli("serve", "--root", tmp_path, "--peers", "bob", "--workers", "1", "--publish-ttl", "5")
    assert r.returncode == 2 and "--publish-ttl applies to --publish" in r.stderr
    r = peerbox_cli("serve", "--root", tmp_path, "--peers", "bob", "--publish", "--publish-ttl", "1")
    assert r.returncode == 2 and "--publish-ttl" in r.stderr and "at least 2" in r.stderr
    r = peerbox_cli("directory", "add", "carol", peerbox.PeerStore(tmp_path).get("bob").did, "--ttl", "5",
                    "--root", tmp_path)
    assert r.returncode == 2 and "--ttl applies to the shared directory" in r.stderr


# -- liveness: published entries last while their workers refresh them ---------------------------------


def _publishing(serving: Serving, root: Path, bob: str, url: str, *more: str, **kw: Any) -> Any:
    """``peerbox serve`` of ``bob`` under ``root``, one process, listening and publishing on ``url``."""
    return serving(root, "--peers", bob, "--workers", "1", "--listen", url, "--state", url, "--publish",
                   *more, **kw)


def test_a_clean_stop_removes_the_published_entry(
        tmp_path: Path, homes: tuple[Path, Path, str], nats_server: Any, serving: Serving) -> None:
    home, client, bob = homes
    url = nats_server.url
    script = tmp_path / "answer.rhai"
    script.write_text("6 * 7")
    _bob_worker_root(home, tmp_path / "w1", bob)
    with _publishing(serving, tmp_path / "w1", bob, url):
        entry = listed(url, client)[bob]
        assert (entry["state"], entry["ttl"]) == ("live", 30)  # the default --publish-ttl
    # SIGTERM: the worker exited 0 and took its entry with it, without waiting for the TTL
    assert bob not in listed(url, client)
    r = peerbox_cli("send", "--from", "alice", "--to", bob, script, "--root", client, "--state", url)
    assert r.returncode == 2 and f"no peer named '{bob}'" in r.stderr and "nor in the shared directory" in r.stderr


def test_a_killed_workers_entry_goes_stale_after_the_ttl_and_send_says_so(
        tmp_path: Path, homes: tuple[Path, Path, str], nats_server: Any, serving: Serving) -> None:
    home, client, bob = homes
    url = nats_server.url
    script = tmp_path / "answer.rhai"
    script.write_text("6 * 7")
    _bob_worker_root(home, tmp_path / "w1", bob)
    with _publishing(serving, tmp_path / "w1", bob, url, "--publish-ttl", "2", may_be_killed=True) as (_, proc):
        r = peerbox_cli("send", "--from", "alice", "--to", bob, script, "--root", client, "--state", url)
        assert (r.returncode, r.stdout) == (0, "42\n"), r.stderr
        proc.send_signal(signal.SIGKILL)  # no clean stop: nothing withdraws the entry
        proc.wait()
        until(lambda: listed(url, client)[bob]["state"] == "stale", "the entry going stale")
        entry = listed(url, client)[bob]
        assert (entry["url"], entry["urls"], entry["workers"]) == (None, [], 0)
        r = peerbox_cli("directory", "list", "--state", url, "--root", client)
        assert f"{bob}\t{entry['did']}\t-\tstale (0 workers, TTL 2 s)\n" in r.stdout

        r = peerbox_cli("send", "--from", "alice", "--to", bob, script, "--root", client, "--state", url)
        assert r.returncode == 7, r.stderr  # as for a peer that cannot be reached
        assert f"no live worker for {bob}" in r.stderr and "within the last 2 s" in r.stderr
        assert "Traceback" not in r.stderr
        key = peerbox.PeerStore(client).get("alice").signing_key()
        with SharedDirectory(client, url) as directory, Client(key, directory) as alice, \
                pytest.raises(NoLiveWorker, match=f"no live worker for {bob}"):
            alice.exec(bob, "1")

        # A stale name is free: another peer may publish it (a live one would stop it, as above).
        other = tmp_path / "other"
        peerbox.PeerStore(other).init(bob)
        with _publishing(serving, other, bob, url):
            entry = listed(url, client)[bob]
            assert (entry["did"], entry["state"]) == (peerbox.PeerStore(other).get(bob).did, "live")


def test_two_workers_of_one_peer_one_stops_and_the_other_still_resolves(
        tmp_path: Path, homes: tuple[Path, Path, str], nats_server: Any, serving: Serving) -> None:
    home, client, bob = homes
    url = nats_server.url
    script = tmp_path / "answer.rhai"
    script.write_text("6 * 7")
    _bob_worker_root(home, tmp_path / "w1", bob)
    _bob_worker_root(home, tmp_path / "w2", bob)
    with _publishing(serving, tmp_path / "w2", bob, url, "--name", "second"):
        with _publishing(serving, tmp_path / "w1", bob, url, "--name", "first"):
            assert listed(url, client)[bob]["workers"] == 2  # one record each, the same URL
        entry = listed(url, client)[bob]
        assert (entry["state"], entry["workers"], entry["urls"]) == ("live", 1, [url])  # w1's stop left w2's
        r = peerbox_cli("send", "--from", "alice", "--to", bob, script, "--root", client, "--state", url)
        assert (r.returncode, r.stdout) == (0, "42\n"), r.stderr
    assert bob not in listed(url, client)  # the last one out removes the name


def test_the_heartbeat_keeps_an_entry_alive_past_several_ttls(
        tmp_path: Path, homes: tuple[Path, Path, str], nats_server: Any, serving: Serving) -> None:
    home, client, bob = homes
    url = nats_server.url
    _bob_worker_root(home, tmp_path / "w1", bob)
    # a TTL of 5 s, refreshed every 5/3 s: a loaded machine may delay a beat or two, not three
    with _publishing(serving, tmp_path / "w1", bob, url, "--publish-ttl", "5"), \
            shared_directory(url) as directory:
        end = time.monotonic() + 3 * 5  # three TTLs
        while time.monotonic() < end:
            found = directory.lookup(bob)
            assert found is not None and (found.state, found.workers) == ("live", 1)
            time.sleep(0.5)
        entry = directory.get(bob)
        assert entry is not None and entry.url == url


def test_an_operators_entry_expires_only_when_given_a_ttl(tmp_path: Path, nats_server: Any) -> None:
    url = nats_server.url
    did = peerbox.PeerStore(tmp_path).init("carol").did
    static, brief = unique("static"), unique("brief")
    r = peerbox_cli("directory", "add", static, did, "http://127.0.0.1:7700", "--state", url, "--root", tmp_path)
    assert r.returncode == 0, r.stderr
    r = peerbox_cli("directory", "add", brief, did, "http://127.0.0.1:7701", "--ttl", "1", "--state", url,
                    "--root", tmp_path)
    assert r.returncode == 0 and "removed in 1 s" in r.stderr, r.stderr
    until(lambda: brief not in listed(url, tmp_path), "the entry added with --ttl going")
    assert listed(url, tmp_path)[static]["state"] == "static"  # no TTL: stays until removed


def test_the_processes_of_one_serve_stopping_together_leave_nothing_behind(
        tmp_path: Path, homes: tuple[Path, Path, str], nats_server: Any, serving: Serving) -> None:
    home, client, bob = homes
    url = nats_server.url
    _bob_worker_root(home, tmp_path / "w1", bob)
    with serving(tmp_path / "w1", "--peers", bob, "--workers", "2", "--listen", url, "--state", url,
                 "--publish", "--publish-ttl", "5"):
        until(lambda: listed(url, client).get(bob, {}).get("workers") == 2, "both processes publishing")
        assert listed(url, client)[bob]["ttl"] == 5  # handed to each process
    assert bob not in listed(url, client)  # SIGTERM reached both at once: the last one out took the name
