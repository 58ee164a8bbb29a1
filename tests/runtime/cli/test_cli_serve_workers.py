"""``peerbox serve --workers``: usage errors before anything starts, and the supervisor's own output."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

import peerbox

from ...conftest import Serving

pytestmark = pytest.mark.slow  # runs `peerbox serve` as a process


def _serve(root: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "peerbox", "serve", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    peerbox.PeerStore(tmp_path).init("bob")
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "must be at least 1"),
    (["--workers", "two"], "not an integer"),
    (["--mode", "isolated", "--workers", "2"], "--workers applies to shared mode"),
    (["--workers", "2", "--peers", "nosuch"], "nosuch"),
    (["--workers", "2", "--tls-cert", "/nonexistent/cert.pem"], "--tls-cert and --tls-key go together"),
    (["--listen-fd", "3"], "go together"),
])
def test_usage_errors_exit_2_before_any_worker_starts(root: Path, args: list[str], message: str) -> None:
    res = _serve(root, "--listen", "127.0.0.1:0", *args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_an_address_in_use_is_a_usage_error(root: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = _serve(root, "--listen", f"127.0.0.1:{port}", "--workers", "2")
    assert res.returncode == 2, res.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr


def test_the_supervisor_prints_one_banner_and_stops_cleanly(root: Path, serving: Serving) -> None:
    err = root / "serve.stderr"
    with serving(root, "--workers", "2", quiet=False, stderr=err) as (port, _):
        pass  # SIGTERM; serving asserts exit 0
    text = err.read_text()
    assert text.count("listening on") == 1, text
    assert f"listening on http://127.0.0.1:{port} (peers: bob)" in text
    assert not list(root.glob("port-*"))  # the port file is removed on the way out
