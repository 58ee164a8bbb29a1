"""Probes any tool can reach, and ``peerbox status``, against a real ``peerbox serve``.

curl over HTTP/1.1 (no ``--http2-prior-knowledge``) gets ``/v1/health``,
``/v1/ready`` and ``/metrics``; Prometheus's own Python parser reads
``/metrics``; an envelope endpoint over HTTP/1.1 is 426. In isolated mode a
child killed with SIGKILL makes ``/v1/ready`` 503 naming its peer until the
supervisor has it back. ``peerbox status`` shows a run in flight and the
errors after a denial; from a non-loopback address it needs ``--as``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import peerbox
from peerbox.net import Client
from peerbox.peer import Directory

from .conftest import PEERBOX

pytestmark = pytest.mark.slow  # a real `peerbox serve`, curl

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
limits = { timeout = 8.0 }
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    store = peerbox.PeerStore(r)
    for name in ("alice", "bob", "carol"):
        store.init(name)
    (r / "peers" / "bob" / "policy.toml").write_text(POLICY)
    return r


def curl(url: str, *extra: str) -> tuple[int, str, str]:
    """GET ``url`` with curl over HTTP/1.1: (status, HTTP version, body)."""
    if shutil.which("curl") is None:
        pytest.skip("!!! curl is not installed (Debian curl; see the Makefile)")
    res = subprocess.run(["curl", "-sS", "--http1.1", "-o", "-", "-w", "\n%{http_code} %{http_version}", *extra,
                          url], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    body, _, tail = res.stdout.rpartition("\n")
    code, version = tail.split()
    return int(code), version, body.rstrip("\n")


def status_cli(root: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PEERBOX, "status", "--url", url, "--root", str(root), *extra], capture_output=True,
                          text=True, timeout=60)


def until(check: Any, what: str, timeout: float = 30.0) -> Any:
    """Poll ``check()`` until it returns something truthy (or fail after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("mode", [("--mode", "shared", "--workers", "1"), ("--mode", "shared", "--workers", "2"),
                                  ("--mode", "isolated")], ids=["shared", "workers2", "isolated"])
def test_curl_over_http1_gets_health_ready_and_metrics_that_prometheus_parses(
        root: Path, serving: Any, mode: tuple[str, ...]) -> None:
    with serving(root, "--all", *mode) as (port, _):
        base = f"http://127.0.0.1:{port}"
        code, version, body = curl(f"{base}/v1/health")
        assert (code, version, json.loads(body)["status"]) == (200, "1.1", "ok")
        code, _, body = until(lambda: (r := curl(f"{base}/v1/ready"))[0] == 200 and r, "ready")
        assert body == "ready"
        code, _, text = curl(f"{base}/metrics")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["peerbox_requests"].type == "counter"  # the parser strips _total
        assert families["peerbox_run_seconds"].type == "histogram"
        assert families["peerbox_runs_in_flight"].type == "gauge"
        code, _, body = curl(f"{base}/v1/exec", "-X", "POST", "--data-binary", "x", "-H",
                             "content-type: application/cose")
        assert code == 426 and "needs HTTP/2" in body


def test_ready_flips_when_an_isolated_child_is_killed_and_comes_back(root: Path, serving: Any) -> None:
    with serving(root, "--all", "--mode", "isolated") as (port, _):
        base = f"http://127.0.0.1:{port}"
        until(lambda: curl(f"{base}/v1/ready")[0] == 200, "ready")
        doc = json.loads(status_cli(root, base, "--json").stdout)
        bob = next(p for p in doc["peers"] if p["name"] == "bob")
        assert bob["up"] and isinstance(bob["pid"], int)
        os.kill(bob["pid"], signal.SIGKILL)
        code, _, body = until(lambda: (r := curl(f"{base}/v1/ready"))[0] == 503 and r, "not ready")
        assert body.startswith("not ready: bob: ") and "alice" not in body
        until(lambda: curl(f"{base}/v1/ready")[0] == 200, "ready again")
        doc = json.loads(status_cli(root, base, "--json").stdout)
        bob = next(p for p in doc["peers"] if p["name"] == "bob")
        assert bob["up"] and bob["restarts"] == 1


@pytest.mark.parametrize("mode", ["shared", "isolated"])
def test_status_shows_a_run_in_flight_and_the_errors_after_a_denial(root: Path, serving: Any, mode: str) -> None:
    store = peerbox.PeerStore(root)
    extra = ("--workers", "1") if mode == "shared" else ()
    with serving(root, "--all", "--mode", mode, *extra) as (port, _):
        base = f"http://127.0.0.1:{port}"
        directory = Directory(root)
        directory.add("bob", store.get("bob").did, base, replace=True)
        with Client(store.get("carol").signing_key(), directory) as carol:
            assert carol.exec("bob", "1").denied  # carol has no rule on bob
        outcome: list[Any] = []
        with Client(store.get("alice").signing_key(), directory) as alice:
            runner = threading.Thread(target=lambda: outcome.append(
                alice.exec("bob", "let i = 0; loop { i += 1; }", timeout=30)))
            runner.start()

            def busy() -> dict[str, Any] | None:
                doc = json.loads(status_cli(root, base, "--json").stdout)
                bob = next(p for p in doc["peers"] if p["name"] == "bob")
                return doc if bob["in_flight"] == 1 else None

            doc = until(busy, "a run in flight")
            runner.join()
        assert outcome and outcome[0].error["kind"] == "limit_timeout"
        assert doc["mode"] == mode and doc["errors"]["by_outcome"]["denied"] == 1
        assert doc["errors"]["denied"] == {"exec": 1}
        text = status_cli(root, base)
        assert text.returncode == 0, text.stderr
        assert f"{mode} mode" in text.stdout and "errors: 2 (denied 1, limit 1)" in text.stdout
        assert ("PROCESS" in text.stdout) == (mode == "isolated")


def _local_address() -> str | None:
    """An address of this machine that is not loopback (None if it has none)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
            addr = str(s.getsockname()[0])
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


def test_status_from_a_non_loopback_address_needs_a_hosted_peers_signature(root: Path, serving: Any) -> None:
    addr = _local_address()
    if addr is None:
        pytest.skip("!!! this machine has no non-loopback address to serve on")
    with serving(root, "--peers", "bob", "--listen", f"{addr}:0") as (port, _):
        base = f"http://{addr}:{port}"
        code, _, body = curl(f"{base}/v1/status")
        assert code == 401 and "operator" in json.loads(body)["error"]["message"]
        refused = status_cli(root, base)  # an ephemeral key: not a hosted peer's
        assert refused.returncode == 7 and "401" in refused.stderr
        refused = status_cli(root, base, "--as", "alice")  # a peer of the root, not hosted here
        assert refused.returncode == 7 and "not signed by a peer hosted here" in refused.stderr
        signed = status_cli(root, base, "--as", "bob")
        assert signed.returncode == 0, signed.stderr
        assert "shared mode" in signed.stdout and "bob" in signed.stdout
