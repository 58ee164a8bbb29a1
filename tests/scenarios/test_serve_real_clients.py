"""`peerbox serve` against real HTTP/2 clients nobody here wrote, and end to end with N peers.

The server is the real CLI (``python -m peerbox serve``) in a subprocess on
loopback. curl and nghttp post an envelope made by ``peerbox envelope make``
and the reply verifies with ``peerbox envelope inspect``; the same bytes sent
twice give 409. h2load hammers /v1/health with 100 streams per connection.
Then 2 and 10 peers, shared and isolated mode, the same test code: peer0
sends to every other peer with the sync :class:`peerbox.Client`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox.net import Client
from peerbox.peer import Directory

from .conftest import PEERBOX

pytestmark = pytest.mark.slow  # a real `peerbox serve` and curl, nghttp, h2load




def _policy(caller: str) -> str:
    return f"""
version = 1
[[rule]]
effect = "allow"
who = "owner"
actions = ["*"]

[[rule]]
effect = "allow"
who = "{caller}"
actions = ["exec"]
limits = {{ timeout = 5.0 }}
"""


def make_peers(root: Path, names: list[str], caller: str) -> peerbox.PeerStore:
    """Create ``names`` under ``root``; every peer but ``caller`` lets ``caller`` exec."""
    store = peerbox.PeerStore(root)
    for name in names:
        store.init(name)
        if name != caller:
            (root / "peers" / name / "policy.toml").write_text(_policy(caller))
    return store


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"!!! {binary} is not installed (Debian nghttp2-client or curl; see the Makefile)")
    return path


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PEERBOX, *args, "--root", str(root)], capture_output=True, text=True, timeout=60)


def envelope(root: Path, tmp: Path, name: str) -> Path:
    script = tmp / f"{name}.rhai"
    script.write_text("let x = 6; x * 7")
    out = tmp / f"{name}.cose"
    res = cli(root, "envelope", "make", "--from", "alice", "--to", "bob", "-o", str(out), str(script))
    assert res.returncode == 0, res.stderr
    return out


def curl_post(curl: str, url: str, body: Path, out: Path) -> int:
    res = subprocess.run(
        [curl, "-sS", "--http2-prior-knowledge", "--data-binary", f"@{body}", "-H",
         "content-type: application/cose", "-o", str(out), "-w", "%{http_code} %{http_version}", url],
        capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    code, version = res.stdout.split()
    assert version == "2", f"curl did not speak HTTP/2: {version}"
    return int(code)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    make_peers(r, ["alice", "bob"], "alice")
    return r


def test_curl_exec_reply_verifies_and_replay_is_409(root: Path, tmp_path: Path, serving: Any) -> None:
    curl = need("curl")
    req = envelope(root, tmp_path, "curl")
    with serving(root, "--all") as (port, _):
        url = f"http://127.0.0.1:{port}/v1/exec"
        reply = tmp_path / "reply.cose"
        assert curl_post(curl, url, req, reply) == 200
        res = cli(root, "envelope", "inspect", "--json", str(reply))
        assert res.returncode == 0, res.stdout + res.stderr
        assert "42" in res.stdout
        again = tmp_path / "again.cbor"
        assert curl_post(curl, url, req, again) == 409
        assert b"replay" in again.read_bytes()


def test_nghttp_exec_reply_verifies(root: Path, tmp_path: Path, serving: Any) -> None:
    nghttp = need("nghttp")
    req = envelope(root, tmp_path, "nghttp")
    with serving(root, "--all") as (port, _):
        url = f"http://127.0.0.1:{port}/v1/exec"
        res = subprocess.run([nghttp, "-d", str(req), "-H", "content-type: application/cose", url],
                             capture_output=True, timeout=30)
        assert res.returncode == 0, res.stderr.decode()
        reply = tmp_path / "reply.cose"
        reply.write_bytes(res.stdout)
        out = cli(root, "envelope", "inspect", "--json", str(reply))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "42" in out.stdout
        # the same bytes again: 409 (nghttp -v prints the response's :status)
        res = subprocess.run([nghttp, "-v", "-d", str(req), "-H", "content-type: application/cose", url],
                             capture_output=True, timeout=30)
        text = res.stdout.decode("utf-8", "replace")
        statuses = re.findall(r":status: (\d+)", text)
        assert statuses == ["409"], text[-2000:]


def test_h2load_health_no_errors(root: Path, serving: Any) -> None:
    h2load = need("h2load")
    with serving(root, "--all") as (port, _):
        res = subprocess.run([h2load, "-n", "2000", "-c", "4", "-m", "100",
                              f"http://127.0.0.1:{port}/v1/health"],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored", res.stdout)
        assert m, res.stdout
        total, _started, done, succeeded, failed, errored = map(int, m.groups())
        assert (total, done, succeeded, failed, errored) == (2000, 2000, 2000, 0, 0), res.stdout
        codes = re.search(r"status codes: (\d+) 2xx", res.stdout)
        assert codes and int(codes.group(1)) == 2000, res.stdout


@pytest.mark.parametrize("mode", ["shared", "isolated"])
@pytest.mark.parametrize("n", [2, 10])
def test_peer0_delegates_to_every_peer(tmp_path: Path, mode: str, n: int, serving: Any) -> None:
    names = [f"peer{i}" for i in range(n)]
    store = make_peers(tmp_path, names, "peer0")
    with serving(tmp_path, "--all", "--mode", mode, timeout=60) as (port, _):
        directory = Directory(tmp_path)
        for name in names[1:]:
            directory.add(name, store.get(name).did, f"http://127.0.0.1:{port}")
        with Client(store.get("peer0").signing_key(), directory) as client:
            for name in names[1:]:
                reply = client.exec(name, "[target.name, params.a * 2]", params={"a": 21})
                assert reply.ok, reply
                assert list(reply.value) == [name, 42]
