"""Fixtures shared by the scenario tests: a real `peerbox serve` process on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

PEERBOX = [sys.executable, "-m", "peerbox"]
# One compile cache for the processes of the scenario tests, not the user's (a test that needs its
# own sets PEERBOX_CACHE_DIR itself).
os.environ.setdefault("PEERBOX_CACHE_DIR", tempfile.mkdtemp(prefix="peerbox-test-cache-"))

Serving = Callable[..., AbstractContextManager[tuple[int, "subprocess.Popen[bytes]"]]]


@contextmanager
def _serving(root: Path, *args: str, timeout: float = 30.0, stderr: Path | None = None,
             quiet: bool = True, may_be_killed: bool = False) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Run ``peerbox serve`` on a free loopback port; yield (port, process); SIGTERM, expect exit 0.

    ``stderr``: a file that receives the server's stderr (its logs), readable while it serves;
    ``quiet`` False: the "listening on" line is printed there too (after the port file is written).
    ``may_be_killed``: a process the test ended with SIGKILL is not expected to exit 0."""
    port_file = root / f"port-{time.monotonic_ns()}"
    if stderr is None:  # a file, never an undrained pipe: a full pipe would stall the server's log writes
        stderr = root / f"serve-stderr-{time.monotonic_ns()}"
    err_file = open(stderr, "wb")  # noqa: SIM115 (closed below)

    def shown(err: bytes | None) -> str:
        data = err if err is not None else stderr.read_bytes() if stderr is not None else b""
        return data.decode(errors="replace")[-2000:]

    # The default HTTP/2 listener, unless the test names its own (a --listen that is not ws/wss/nats).
    own_h2 = any(a == "--listen" and not b.startswith(("ws://", "wss://", "nats://"))
                 for a, b in zip(args, args[1:], strict=False))
    proc = subprocess.Popen(
        [*PEERBOX, "serve", "--root", str(root), *([] if own_h2 else ["--listen", "127.0.0.1:0"]),
         "--port-file", str(port_file),
         *(["--quiet"] if quiet else []), *args], stdout=subprocess.PIPE, stderr=err_file)
    try:
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(f"peerbox serve exited {proc.returncode}: {shown(err)}")
            assert time.monotonic() < deadline, "peerbox serve did not write its port file"
            time.sleep(0.05)
        yield int(port_file.read_text().strip()), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"peerbox serve did not stop on SIGTERM: {shown(err)}") from None
        finally:
            err_file.close()
    if may_be_killed and proc.returncode == -signal.SIGKILL:
        return
    assert proc.returncode == 0, f"peerbox serve exited {proc.returncode}: {shown(err)}"


@pytest.fixture
def serving() -> Serving:
    """``with serving(root, *serve_args) as (port, proc):`` a real ``peerbox serve`` (SIGTERM, exit 0)."""
    return _serving


ConformanceTables = Mapping[str, Sequence[tuple[str, str, Any]]]


def _conformance_ids(tables: ConformanceTables) -> list[str]:
    """The test id of each case of a conformance module's tables: ``<prefix>-<case id>``."""
    return [f"{prefix}-{case_id}" for prefix, table in tables.items() for case_id, _, _ in table]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``test_program_value`` of a conformance module with its ``CONFORMANCE`` tables.

    ``CONFORMANCE`` maps an id prefix to a table of ``(case id, source, expected)``;
    each case becomes one ``(source, expected)`` parameter with the id
    ``<prefix>-<case id>`` (so ids stay what they were before the split).
    """
    tables = getattr(metafunc.module, "CONFORMANCE", None)
    if tables is None or metafunc.function.__name__ != "test_program_value":
        return
    cases = [(source, expected) for table in tables.values() for _, source, expected in table]
    metafunc.parametrize(("source", "expected"), cases, ids=_conformance_ids(tables))


@pytest.fixture(scope="session")
def conformance_ids() -> Callable[[ConformanceTables], list[str]]:
    """``conformance_ids(CONFORMANCE)``: the test id of every case, in order."""
    return _conformance_ids
