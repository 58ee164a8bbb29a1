"""`peerbox serve` that cannot start says why in one line and exits 2, before "listening on".

Each case runs a real ``peerbox serve`` process in the three ways it serves
(one process, a supervisor of two, isolated mode) and checks what an
operator sees: exit code 2, one line on stderr naming what and where, no
traceback and no "internal error", no "listening on", no port file; and that
nothing left behind blocks the next start.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import peerbox

from .conftest import PEERBOX, Serving

pytestmark = pytest.mark.slow  # real `peerbox serve` processes

#: The three ways `peerbox serve` runs, as its arguments.
WAYS = {"one-process": ["--workers", "1"], "two-workers": ["--workers", "2"],
        "isolated": ["--mode", "isolated"]}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root with the peers alice and bob."""
    store = peerbox.PeerStore(tmp_path / "root")
    (tmp_path / "root").mkdir()
    store.init("alice")
    store.init("bob")
    return tmp_path / "root"


def refused(root: Path, *args: str, listen: str = "127.0.0.1:0") -> str:
    """Run ``peerbox serve`` that must not start; assert how it fails; its one line of stderr."""
    port_file = root.parent / "refused.port"
    res = subprocess.run([*PEERBOX, "serve", "--root", str(root), "--listen", listen, "--port-file",
                          str(port_file), *args], capture_output=True, text=True, timeout=90,
                         stdin=subprocess.DEVNULL)
    err = res.stderr
    assert res.returncode == 2, err
    assert "listening" not in err
    assert "Traceback" not in err and "internal error" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err  # one line
    assert err.startswith("error: ")
    assert not port_file.exists()
    return err.strip()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other program listens on (a plain socket)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


@pytest.mark.parametrize("way", list(WAYS))
def test_a_busy_port_is_one_line_and_exit_2_and_blocks_nothing_after(
        root: Path, busy_port: int, way: str, serving: Serving) -> None:
    err = refused(root, *WAYS[way], listen=f"127.0.0.1:{busy_port}")
    assert err == f"error: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    with serving(root, *WAYS[way]):  # the locks it took were released: the same peers start elsewhere
        pass


@pytest.mark.parametrize("way", ["one-process", "isolated"])
def test_an_address_that_is_not_local_is_refused(root: Path, way: str) -> None:
    err = refused(root, *WAYS[way], listen="192.0.2.1:7700")  # TEST-NET-1: never this machine's
    assert err == "error: cannot listen on 192.0.2.1:7700: Cannot assign requested address"


@pytest.mark.parametrize("way", list(WAYS))
def test_a_peer_already_served_is_refused_with_who_serves_it(root: Path, way: str, serving: Serving) -> None:
    with serving(root, "--peers", "bob", "--workers", "1") as (port, first):
        err = refused(root, "--peers", "alice,bob", *WAYS[way])
        assert err.startswith("error: peer 'bob' is already served by another `peerbox serve` "
                              f"(pid {first.pid}, http://127.0.0.1:{port})")
        err = refused(root, *WAYS[way], listen=f"127.0.0.1:{port}")  # the same port: the peer is said first
        assert "peer 'bob' is already served" in err
        with serving(root, "--peers", "alice", *WAYS[way]):  # another peer of the root is free
            pass
    with serving(root, "--peers", "bob", *WAYS[way]):  # the first stopped: bob is free again
        pass
    assert (root / "peers" / "bob" / "serve.lock").read_text() == ""  # a clean stop empties it


def test_a_killed_server_leaves_nothing_that_blocks_the_next(root: Path, serving: Serving) -> None:
    err = root / "killed.stderr"
    with serving(root, "--workers", "1", "--peers", "bob", quiet=False, stderr=err, may_be_killed=True) as (_, proc):
        deadline = time.monotonic() + 20  # the line comes just after the port file
        while "listening on" not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "listening on" in err.read_text()
        proc.kill()
        proc.wait()
    assert "pid=" in (root / "peers" / "bob" / "serve.lock").read_text()  # stale, and harmless
    with serving(root, "--peers", "bob", "--workers", "1"):
        pass


@pytest.mark.parametrize("way", list(WAYS))
def test_a_missing_peer_is_refused(root: Path, way: str) -> None:
    err = refused(root, "--peers", "bob,nosuch", *WAYS[way])
    assert err == f"error: no peer named 'nosuch' in {root / 'peers'}"


@pytest.mark.parametrize("way", ["one-process", "isolated"])
def test_an_empty_or_missing_root_is_refused(tmp_path: Path, way: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    err = refused(empty, *WAYS[way])
    assert err == f"error: no peers under {empty} to serve (create one with `peerbox init NAME`)"
    err = refused(tmp_path / "nowhere", *WAYS[way])
    assert err.startswith(f"error: no peer root at {tmp_path / 'nowhere'} ")


def _bad_tls(tmp_path: Path,
             self_signed: Callable[..., tuple[Path, Path]]) -> dict[str, tuple[Path, Path, str]]:
    cert, key = self_signed(tmp_path)
    _, other_key = self_signed(tmp_path, "other-")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a key\n")
    missing = tmp_path / "missing.pem"
    return {
        "garbage-key": (cert, garbage, f"error: --tls-key {garbage}: not a PEM private key"),
        "missing-key": (cert, missing, f"error: --tls-key {missing}: No such file or directory"),
        "other-key": (cert, other_key, f"error: --tls-key {other_key} is not the key of --tls-cert {cert}"),
        "garbage-cert": (garbage, key, f"error: --tls-cert {garbage}: not a PEM certificate"),
    }


@pytest.mark.parametrize("way", list(WAYS))
def test_bad_tls_files_are_refused_naming_the_file(root: Path, tmp_path: Path, way: str,
                                                   self_signed: Callable[..., tuple[Path, Path]]) -> None:
    for name, (cert, key, message) in _bad_tls(tmp_path, self_signed).items():
        err = refused(root, *WAYS[way], "--tls-cert", str(cert), "--tls-key", str(key))
        assert err == message, name


def test_good_tls_files_still_serve(root: Path, tmp_path: Path, serving: Serving,
                                   self_signed: Callable[..., tuple[Path, Path]]) -> None:
    cert, key = self_signed(tmp_path)
    with serving(root, "--workers", "1", "--tls-cert", str(cert), "--tls-key", str(key)):
        pass

