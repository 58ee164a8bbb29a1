"""``peerbox.net._startup``: the per-peer serve lock, :func:`prepare`'s order, and what escapes ``trio.run``.

The command's behaviour end to end is in ``tests/scenarios/test_serve_startup.py``;
here, what those tests cannot reach cheaply: a lock held by another process
(a real one, ``flock`` is per open file), locks released when a later check
fails, and a child process of isolated mode that fails its own start-up.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

import peerbox
import peerbox.errors
from peerbox.net import ServeError, StartupFailure
from peerbox.net import _isolated
from peerbox.net._child import child_command
from peerbox.net._listeners import parse_listen_url
from peerbox.net._startup import LOCK_FILE, PeerLock, prepare, probe_nats, run_serving


@pytest.fixture
def store(tmp_path: Path) -> peerbox.PeerStore:
    s = peerbox.PeerStore(tmp_path)
    s.init("alice")
    s.init("bob")
    return s


def test_a_lock_held_by_another_process_is_refused_with_its_pid(store: peerbox.PeerStore) -> None:
    path = store.get("bob").paths.dir / LOCK_FILE
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, b'pid=4242\\nurl=http://127.0.0.1:7700\\n')\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(ServeError) as info:
            PeerLock("bob", store.get("bob").paths.dir).acquire()
        assert info.value.failure is StartupFailure.PEER_SERVED and info.value.peer == "bob"
        assert str(info.value) == (f"peer 'bob' is already served by another `peerbox serve` "
                                   f"(pid 4242, http://127.0.0.1:7700) (lock {path})")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    lock = PeerLock("bob", store.get("bob").paths.dir)  # the holder exited: the kernel released it
    lock.acquire()
    lock.release()


def test_a_failed_check_releases_the_locks_taken_before_it(store: peerbox.PeerStore) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError) as info:
            prepare(str(store.root), ["alice", "bob"], f"127.0.0.1:{port}")
        assert info.value.failure is StartupFailure.ADDRESS
    with prepare(str(store.root), ["alice", "bob", "alice"], "127.0.0.1:0") as started:  # free again
        assert started.names == ["alice", "bob"]  # a peer named twice is served (and locked) once
        assert started.sock is not None and started.port == started.sock.getsockname()[1]
        assert (store.get("bob").paths.dir / LOCK_FILE).read_text() == f"pid={os.getpid()}\n" \
            f"url=http://127.0.0.1:{started.port}\n"
        with pytest.raises(ServeError) as again:  # the same process twice: flock is per open file
            prepare(str(store.root), ["bob"], "127.0.0.1:0")
        assert again.value.failure is StartupFailure.PEER_SERVED
    assert (store.get("bob").paths.dir / LOCK_FILE).read_text() == ""


def test_run_serving_lets_a_peerbox_error_out_of_nested_nurseries() -> None:
    async def failing() -> None:
        async with trio.open_nursery() as outer:
            async def inner() -> None:
                async with trio.open_nursery() as n:
                    n.start_soon(trio.sleep_forever)
                    raise ServeError(StartupFailure.WORKER,
                                     "the worker of bob exited with code 2 before serving")
            outer.start_soon(inner)

    with pytest.raises(ServeError, match="the worker of bob exited"):
        run_serving(failing)

    async def buggy() -> None:
        async with trio.open_nursery():
            raise RuntimeError("a bug")

    with pytest.raises(BaseExceptionGroup):  # a bug is not renamed
        run_serving(buggy)


@pytest.mark.slow  # starts child processes
def test_an_isolated_child_that_cannot_start_fails_the_serve_before_it_listens(
        store: peerbox.PeerStore, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """bob's child is a real process that exits at once (as one whose storage cannot open would)."""
    real = child_command

    def command(root: str, peer: str, fd: int, **kw: object) -> list[str]:
        if peer == "bob":
            return [sys.executable, "-c",
                    "import sys; sys.exit('peerbox serve: the worker of bob cannot start')"]
        return real(root, peer, fd, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_isolated, "child_command", command)
    port_file = store.root / "port"
    with pytest.raises(ServeError) as info:
        _isolated.run_isolated(str(store.root), ["alice", "bob"], "127.0.0.1:0", port_file=str(port_file))
    assert info.value.failure is StartupFailure.WORKER and info.value.peer == "bob"
    assert str(info.value) == "the worker of bob exited with code 1 before serving"
    err = capfd.readouterr().err
    assert "listening" not in err and "the worker of bob cannot start" in err
    assert not port_file.exists()
    with prepare(str(store.root), ["alice", "bob"], "127.0.0.1:0"):  # nothing left held
        pass


@pytest.mark.slow  # starts a real child process
def test_the_lock_is_held_while_a_child_that_inherited_it_lives(store: peerbox.PeerStore) -> None:
    """The serving process tree holds it: a child outliving its parent still blocks a second serve."""
    with prepare(str(store.root), ["bob"], "127.0.0.1:0", bind=False) as started:
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE, pass_fds=started.lock_fds)
    try:
        with pytest.raises(ServeError) as info:
            prepare(str(store.root), ["bob"], "127.0.0.1:0", bind=False)
        assert info.value.failure is StartupFailure.PEER_SERVED
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    with prepare(str(store.root), ["bob"], "127.0.0.1:0", bind=False):
        pass


def test_serve_error_is_a_usage_error_with_exit_2() -> None:
    assert issubclass(ServeError, peerbox.UsageError) and ServeError.exit_code == 2
    assert peerbox.errors.ServeError is ServeError


def test_probe_nats_takes_a_nats_server_and_refuses_anything_else(nats_server: Any) -> None:
    probe_nats(parse_listen_url(nats_server.url))  # a real server greets with INFO
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(ServeError, match="cannot connect to the NATS server") as nothing:
        probe_nats(parse_listen_url(f"nats://127.0.0.1:{port}"))
    assert nothing.value.failure is StartupFailure.ADDRESS
    with socket.socket() as other:  # something that is not NATS: it speaks first, and not INFO
        other.bind(("127.0.0.1", 0))
        other.listen()

        def greet_wrongly() -> None:
            conn, _ = other.accept()
            with conn:
                conn.sendall(b"SSH-2.0-x\r\n")  # read by the probe even once closed

        thread = threading.Thread(target=greet_wrongly)
        thread.start()
        with pytest.raises(ServeError, match="no NATS server"):
            probe_nats(parse_listen_url(f"nats://127.0.0.1:{other.getsockname()[1]}"), timeout=10.0)
        thread.join()
