"""`peerbox serve` under faults, as a real process on loopback.

- isolated mode: a peer's worker process killed with SIGKILL is restarted by
  the supervisor and the other peers keep serving meanwhile;
- a raw h2 client (the ``h2`` library over a socket) that opens 1,000 streams
  and resets them at once (rapid reset, CVE-2023-44487) is cut off (GOAWAY or
  the connection closed) while another client keeps being served;
- a script stuck in a loop in one peer does not stall requests to another
  (shared and isolated mode, the same test code).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest

import peerbox
from peerbox.net import Client, ClientError
from peerbox.peer import Directory
from peerbox.wire import Reply

pytestmark = pytest.mark.slow  # a real `peerbox serve` process


LOOP = "let i = 0; loop { i += 1; }"

POLICY = """
version = 1
[[rule]]
effect = "allow"
who = "owner"
actions = ["*"]

[[rule]]
effect = "allow"
who = "alice"
actions = ["exec"]
limits = { timeout = 5.0 }
"""


def make_root(root: Path, targets: list[str]) -> peerbox.PeerStore:
    """alice plus ``targets``, each letting alice exec (up to 5 s of wall time)."""
    store = peerbox.PeerStore(root)
    store.init("alice")
    for name in targets:
        store.init(name)
        (root / "peers" / name / "policy.toml").write_text(POLICY)
    return store


def client_for(root: Path, store: peerbox.PeerStore, port: int, targets: list[str]) -> Client:
    directory = Directory(root)
    for name in targets:
        directory.add(name, store.get(name).did, f"http://127.0.0.1:{port}")
    return Client(store.get("alice").signing_key(), directory)


def children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid`` (a /proc scan): pid -> command line."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid ...
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry)] = cmdline
    return found


def child_of_peer(server: int, name: str, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        pids = [pid for pid, cmd in children(server).items() if f"--peers {name} " in cmd + " "]
        if len(pids) == 1:
            return pids[0]
        assert time.monotonic() < deadline, f"no single worker child for {name}: {children(server)}"
        time.sleep(0.05)


def test_isolated_child_killed_is_restarted_others_keep_serving(tmp_path: Path, serving: Any) -> None:
    targets = ["bob", "carol", "dave"]
    store = make_root(tmp_path, targets)
    with serving(tmp_path, "--all", "--mode", "isolated") as (port, proc), \
            client_for(tmp_path, store, port, targets) as client:
        for name in targets:
            assert client.exec(name, "target.name").value == name
        victim = child_of_peer(proc.pid, "bob")
        os.kill(victim, signal.SIGKILL)
        # the others keep serving while bob is down
        for name in ("carol", "dave"):
            assert client.exec(name, "target.name").value == name
        # bob is back within ~10 s (503 / transport errors until then)
        deadline = time.monotonic() + 10.0
        errors: list[str] = []
        while True:
            try:
                reply = client.exec("bob", "40 + 2", timeout=5.0)
                break
            except ClientError as exc:
                errors.append(str(exc))
                assert time.monotonic() < deadline, f"bob did not come back: {errors[-3:]}"
                time.sleep(0.1)
        assert reply.ok and reply.value == 42
        assert child_of_peer(proc.pid, "bob") != victim
        for name in ("carol", "dave"):
            assert client.exec(name, "target.name").value == name


def rapid_reset(port: int, streams: int = 1000) -> str:
    """Open ``streams`` POST /v1/exec streams and reset each at once; say how the server cut us off.

    Returns "goaway" or "closed"; "served" if the connection survived 5 s of
    silence after the flood.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    headers = [(":method", "POST"), (":path", "/v1/exec"), (":scheme", "http"),
               (":authority", f"127.0.0.1:{port}"), ("content-type", "application/cose")]
    try:
        sock.sendall(conn.data_to_send())
        for i in range(streams):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, headers, end_stream=False)
            conn.reset_stream(sid)
            if i % 50 == 49:
                sock.sendall(conn.data_to_send())
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(65536)
            if not data:
                return "closed"
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                continue
            if any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
                return "goaway"
            pending = conn.data_to_send()
            if pending:
                sock.sendall(pending)
    except (BrokenPipeError, ConnectionResetError):
        return "closed"
    except TimeoutError:
        return "served"
    finally:
        sock.close()


def test_rapid_reset_client_is_cut_off_others_served(tmp_path: Path, serving: Any) -> None:
    store = make_root(tmp_path, ["bob"])
    with serving(tmp_path, "--all") as (port, _), client_for(tmp_path, store, port, ["bob"]) as client:
        assert client.exec("bob", "1").value == 1
        stop = threading.Event()
        served: list[object] = []
        failures: list[BaseException] = []

        def other_client() -> None:
            while not stop.is_set():
                try:
                    served.append(client.exec("bob", "2 + 2", timeout=10.0).value)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failures.append(exc)
                    return

        thread = threading.Thread(target=other_client)
        thread.start()
        try:
            outcome = rapid_reset(port)
        finally:
            stop.set()
            thread.join(timeout=20)
        assert outcome in ("goaway", "closed"), "a rapid-reset client was not cut off"
        assert not failures, failures
        assert served and set(served) == {4}
        assert client.exec("bob", "3 * 3").value == 9


@pytest.mark.parametrize("mode", ["shared", "isolated"])
def test_loop_in_one_peer_does_not_stall_another(tmp_path: Path, mode: str, serving: Any) -> None:
    targets = ["bob", "carol"]
    store = make_root(tmp_path, targets)
    with serving(tmp_path, "--all", "--mode", mode) as (port, _), \
            client_for(tmp_path, store, port, targets) as client:
        assert client.exec("carol", "0").value == 0  # warm: connection and compile cache
        loop_done: list[float] = []
        loop_reply: list[Reply] = []

        def spin() -> None:
            loop_reply.append(client.exec("bob", LOOP, limits={"timeout": 5.0}, timeout=20.0))
            loop_done.append(time.monotonic())

        thread = threading.Thread(target=spin)
        thread.start()
        try:
            time.sleep(0.3)  # the loop is running
            quick_done: list[float] = []
            for i in range(10):
                assert client.exec("carol", f"{i} + 1", timeout=10.0).value == i + 1
                quick_done.append(time.monotonic())
        finally:
            thread.join(timeout=30)
        assert loop_reply and loop_reply[0].error is not None
        assert loop_reply[0].error["kind"] == "limit_timeout"
        assert max(quick_done) < loop_done[0], "carol's requests waited for bob's loop"
