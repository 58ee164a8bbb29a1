"""The server processes of the network rows (``bench/network.py``): a root, ``peerbox serve``, the anchor.

:class:`_Server` starts a server subprocess that writes its port to a file
(several can start at once; :meth:`_Server.ready` waits for each) and stops
it with SIGTERM; ``_worker``, ``_ws_worker`` and ``_anchor`` are the three
kinds the rows measure. ``_make_root`` makes a root whose hosted peers let
anyone exec (and call ``bench::*``), ``_directory`` a directory naming them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

#: the bench peer's published twin of SCRIPT (net_call_* rows), installed as its ``bench`` module
API_MODULE = "bench"
API_SOURCE = "// the network bench's published function: the same work as the exec script\n" \
             "export fn plus_one(x: i64) { x + 1 }\n"

_POLICY = """\
version = 1

[[rule]]
who = "owner"
actions = ["*"]
effect = "allow"

[[rule]]
who = "*"
actions = ["exec"]
effect = "allow"

[[rule]]
who = "*"
actions = ["call"]
resources = ["bench::*"]
effect = "allow"
"""


def _make_root(n_peers: int, publish: bool = False) -> tuple[Path, list[str]]:
    """A temp root with a ``client`` peer and ``n_peers`` hosted peers that let anyone exec and call
    ``bench::*``; with ``publish``, each hosted peer's own ``bench`` module publishes ``plus_one``."""
    import peerbox

    root = Path(tempfile.mkdtemp(prefix="peerbox-bench-net-"))
    store = peerbox.PeerStore(root)
    store.init("client")
    names = [f"p{i:04d}" for i in range(n_peers)]
    for name in names:
        peer = store.init(name)
        peer.paths.policy.write_text(_POLICY)
        if publish:
            peerbox.PeerLogic(peer).set(API_MODULE, API_SOURCE)
    return root, names


def serve_options() -> set[str]:
    """The long options ``peerbox serve --help`` lists (``--workers`` arrives with issue 15)."""
    out = subprocess.run([sys.executable, "-m", "peerbox", "serve", "--help"], capture_output=True,
                         text=True, timeout=60).stdout
    return {w.strip(",[]") for w in out.split() if w.startswith(("--", "[--"))}


class _Server:
    """A server subprocess that writes its port to a file; stopped with SIGTERM."""

    def __init__(self, cmd: list[str], port_file: Path, what: str) -> None:
        """Start the process; :meth:`ready` waits for its port (so several can start at once)."""
        self.port_file = port_file
        self.what = what
        self.port = 0
        self.url = ""
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server; stop() closes it
        self.proc = subprocess.Popen([*cmd, "--port-file", str(port_file)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.stderr)

    def ready(self, timeout: float = 60.0) -> _Server:
        """Wait until the port file names the port; raises RuntimeError if the server dies or is late."""
        deadline = time.monotonic() + timeout
        while not (self.port_file.exists() and self.port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                if self.proc.poll() is None:
                    self.proc.kill()
                self.proc.wait()
                tail = self.tail()
                self.stop()
                raise RuntimeError(f"{self.what} did not start (exit {self.proc.returncode}): {tail}")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text().strip())
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def tail(self) -> str:
        if self.stderr.closed:
            return ""
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-400:]

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.stderr.closed:
            self.stderr.close()
        return self.proc.returncode

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _worker(root: Path, peers: list[str], mode: str, extra: tuple[str, ...] = ()) -> _Server:
    """``peerbox serve`` of ``peers`` under ``root`` in ``mode``, starting (see :meth:`_Server.ready`)."""
    port_file = root / f"port-{mode}-{len(peers)}-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "peerbox", "serve", "--root", str(root), "--peers", ",".join(peers),
           "--mode", mode, "--listen", "127.0.0.1:0", "--quiet", *extra]
    return _Server(cmd, port_file, f"the {mode} worker")


def _ws_worker(root: Path, peers: list[str]) -> _Server:
    """``peerbox serve`` (shared) of ``peers`` on a WebSocket listener only (its port file: that port)."""
    port_file = root / f"port-ws-{len(peers)}-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "peerbox", "serve", "--root", str(root), "--peers", ",".join(peers),
           "--listen", "ws://127.0.0.1:0", "--quiet"]
    return _Server(cmd, port_file, "the WebSocket worker")


def _anchor(root: Path, peer: str) -> _Server:
    """``bench/anchor_server.py`` signing as ``peer``, starting (see :meth:`_Server.ready`)."""
    port_file = root / f"port-anchor-{time.monotonic_ns()}"
    cmd = [sys.executable, str(BENCH / "anchor_server.py"), "--root", str(root), "--peer", peer,
           "--listen", "127.0.0.1:0"]
    return _Server(cmd, port_file, "the anchor server")


def _directory(root: Path, names: list[str], url: str) -> Path:
    """A fresh directory root whose peers.toml maps ``names`` to ``url``."""
    import peerbox

    path = root / f"dir-{time.monotonic_ns()}"
    d = peerbox.Directory(path)
    store = peerbox.PeerStore(root)
    for name in names:
        d.add(name, store.get(name).did, url)
    return path
