"""The directory shared through JetStream: ``peerbox directory ... --state``, ``serve --publish`` and
``send --state`` against a real nats-server and real ``peerbox serve`` processes.

The nats-server is the session's, so its ``peerbox-directory`` bucket outlives each test: every
test names its peers with a suffix of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox.net import Client, SharedDirectory
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
    assert {"name": bob, "did": bob_did, "url": url} in json.loads(r.stdout)

    r = peerbox_cli("directory", "add", bob, carol_did, "--state", url, "--root", two)
    assert r.returncode == 2 and f"'{bob}' is already in {url}" in r.stderr and "--replace" in r.stderr
    r = peerbox_cli("directory", "add", bob, "did:key:nonsense", "--state", url, "--root", two)
    assert r.returncode == 2 and "Traceback" not in r.stderr  # validated as for peers.toml
    r = peerbox_cli("directory", "add", bob, carol_did, "--replace", "--state", url, "--root", two)
    assert r.returncode == 0, r.stderr
    r = peerbox_cli("directory", "list", "--state", url, "--root", one)
    assert f"{bob}\t{carol_did}\t-\n" in r.stdout  # no URL: shown as on peers.toml

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
        r = peerbox_cli("directory", "list", "--json", "--state", url, "--root", client)
        assert {"name": bob, "did": bob_did, "url": url} in json.loads(r.stdout)

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
        r = peerbox_cli("directory", "list", "--json", "--state", url, "--root", impostor)
        published = [e for e in json.loads(r.stdout) if e["name"] == bob]
        assert published == [{"name": bob, "did": peerbox.PeerStore(home).get(bob).did, "url": url}]


def test_publish_needs_state(tmp_path: Path) -> None:
    peerbox.PeerStore(tmp_path).init("bob")
    r = peerbox_cli("serve", "--root", tmp_path, "--peers", "bob", "--workers", "1", "--publish")
    assert r.returncode == 2 and "--publish needs --state" in r.stderr
