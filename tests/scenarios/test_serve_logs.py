"""What an operator reads from a real `peerbox serve`: access lines, operator errors, the audit log.

Each test runs `peerbox serve --log-format json` as a subprocess with its
stderr in a file, sends real requests over loopback HTTP/2 and reads the
lines back as JSON: an allowed call, a denial (no rule allowed it), a fuel
limit, a rate-limited call and garbage each get one access line with the
fields an operator needs; params appear only at `debug`; a broken policy is
one error line naming its path and line (never the remote caller's business);
the audit log records decisions, `peerbox audit --caller` filters them, and two
worker processes share one rotated file without tearing a line. Isolated
mode writes exactly one line per request too.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import peerbox
from peerbox.net._h2client import EXEC_PATH, H2Transport

from ._serve_helpers import Caller
from .conftest import PEERBOX

pytestmark = pytest.mark.slow  # `peerbox serve` subprocesses


POLICY = """version = 2

[[rule]]
who = "owner"
actions = ["*"]
effect = "allow"

[[rule]]
who = "alice"
actions = ["exec"]
effect = "allow"

[[rule]]
who = "carol"
actions = ["exec"]
effect = "allow"
limits = { calls_per_minute = 1, burst = 1 }
"""
SECRET = "s3cr3t-param-value"
LOOP = "let i = 0; loop { i += 1; }"


@pytest.fixture
def store(tmp_path: Path) -> peerbox.PeerStore:
    """alice, bob, carol and dave under ``tmp_path``; bob runs :data:`POLICY`."""
    peers = peerbox.PeerStore(tmp_path)
    for name in ("alice", "bob", "carol", "dave"):
        peers.init(name)
    (tmp_path / "peers" / "bob" / "policy.toml").write_text(POLICY)
    return peers


def _lines(path: Path, logger: str | None = None) -> list[dict[str, Any]]:
    """The JSON log lines in ``path`` (every line must be one JSON object), of ``logger`` if given."""
    docs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert all(isinstance(d, dict) and {"time", "level", "logger", "message"} <= set(d) for d in docs)
    return [d for d in docs if logger is None or d["logger"] == logger]


def _wait_for(path: Path, count: int, logger: str = "peerbox.access") -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        got = _lines(path, logger)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


async def _requests(store: peerbox.PeerStore, port: int) -> dict[str, int]:
    """An allowed call, a denial, a fuel limit, an allowed then a rate-limited call, garbage; statuses."""
    async with H2Transport() as transport:
        c = Caller(store, transport, f"http://127.0.0.1:{port}")
        out = {"allowed": (await c.send("params.secret.len()", params={"secret": SECRET}))[0],
               "denied": (await c.send("1", sender="dave"))[0],
               "limit": (await c.send(LOOP, limits={"fuel": 100_000}))[0],
               "first": (await c.send("1", sender="carol"))[0],
               "rate_limited": (await c.send("1", sender="carol"))[0]}
        out["malformed"] = (await c.post(EXEC_PATH, b"\x01not cbor")).status
        return out


def _by_nonce(store: peerbox.PeerStore) -> Callable[[str], str]:
    dids = {p.did: p.name for p in store.list()}
    return lambda did: dids[did]


@pytest.mark.parametrize("mode", ["shared", "isolated"])
def test_access_lines_for_each_outcome(tmp_path: Path, store: peerbox.PeerStore, serving: Any,
                                       mode: str) -> None:
    log = tmp_path / "serve.log"
    args = ["--peers", "bob", "--log-format", "json", "--mode", mode]
    args += ["--workers", "1"] if mode == "shared" else []
    with serving(tmp_path, *args, stderr=log) as (port, _):
        statuses = trio.run(_requests, store, port)
        lines = _wait_for(log, 6)
    assert statuses == {"allowed": 200, "denied": 403, "limit": 200, "first": 200, "rate_limited": 429,
                        "malformed": 400}
    assert len(lines) == 6, lines  # exactly one line per request, whichever process wrote it
    # by caller and outcome: in isolated mode the router and the child each write their own lines,
    # through their own log queues, so lines of different processes may come in either order
    by = {(line["caller_name"], line["outcome"]): line for line in lines}
    allowed, denied, limit = by[("alice", "ok")], by[("dave", "denied")], by[("alice", "limit")]
    limited, malformed = by[("carol", "rate_limited")], by[(None, "rejected")]
    assert ("carol", "ok") in by
    name = _by_nonce(store)
    for line in (allowed, denied, limit, limited):
        assert line["level"] == "info" and line["transport"] == "h2c" and line["type"] == "exec"
        assert line["target"] == "bob" and line["client"].startswith("127.0.0.1:")
        assert name(line["caller"]) == line["caller_name"] and len(line["nonce"]) == 32
        assert len(line["script"]) == 16 and line["request_bytes"] > 0 and line["response_bytes"] > 0
        assert line["duration_ms"] >= 0
    assert (allowed["caller_name"], allowed["outcome"], allowed["status"]) == ("alice", "ok", 200)
    assert allowed["rule"] == "policy.toml:8" and allowed["fuel"] == 0  # a run without a fuel limit is unmetered
    assert (denied["caller_name"], denied["outcome"], denied["status"]) == ("dave", "denied", 403)
    assert denied["rule"] == "no rule allowed it" and denied["fuel"] is None
    assert (limit["outcome"], limit["kind"], limit["rule"]) == ("limit", "limit_fuel", "policy.toml:8")
    assert limit["fuel"] == 100_000  # a run stopped by its fuel limit used all of it
    assert (limited["caller_name"], limited["outcome"], limited["status"]) == ("carol", "rate_limited", 429)
    assert limited["rule"] == "policy.toml:13"
    assert (malformed["outcome"], malformed["status"], malformed["caller"]) == ("rejected", 400, None)
    assert malformed["kind"] and malformed["request_bytes"] == 9
    assert SECRET not in log.read_text()  # params only at debug


def test_params_only_at_debug(tmp_path: Path, store: peerbox.PeerStore, serving: Any) -> None:
    log = tmp_path / "serve.log"
    with serving(tmp_path, "--peers", "bob", "--workers", "1", "--log-format", "json", "--log-level", "debug",
                 stderr=log) as (port, _):
        async def send() -> int:
            async with H2Transport() as transport:
                c = Caller(store, transport, f"http://127.0.0.1:{port}")
                return (await c.send("params.secret.len()", params={"secret": SECRET}))[0]
        assert trio.run(send) == 200
        (line,) = _wait_for(log, 1)
    assert SECRET in line["params"] and line["level"] == "info"


def test_text_format_is_one_line_per_request(tmp_path: Path, store: peerbox.PeerStore, serving: Any) -> None:
    log = tmp_path / "serve.log"
    with serving(tmp_path, "--peers", "bob", "--workers", "1", stderr=log) as (port, _):
        async def send() -> None:
            async with H2Transport() as transport:
                await Caller(store, transport, f"http://127.0.0.1:{port}").send("1", sender="dave")
        trio.run(send)
        deadline = time.monotonic() + 20
        while "peerbox.access" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    (line,) = [ln for ln in log.read_text().splitlines() if "peerbox.access" in ln]
    assert " INFO peerbox.access POST /v1/exec 403 " in line
    assert "caller_name=dave" in line and 'rule="no rule allowed it"' in line and "outcome=denied" in line


def test_broken_policy_is_one_operator_error(tmp_path: Path, store: peerbox.PeerStore, serving: Any) -> None:
    policy = tmp_path / "peers" / "bob" / "policy.toml"
    policy.write_text(POLICY + "\n[[rule]\nwho = 1\n")
    log = tmp_path / "serve.log"
    with serving(tmp_path, "--peers", "bob", "--workers", "1", "--log-format", "json",
                 stderr=log) as (port, _):
        async def send_three() -> list[bytes]:
            async with H2Transport() as transport:
                c = Caller(store, transport, f"http://127.0.0.1:{port}")
                return [(await c.send("1"))[2] for _ in range(3)]
        bodies = trio.run(send_three)
        _wait_for(log, 3)
    errors = _lines(log, "peerbox.policy")
    assert len(errors) == 1, errors  # once per change of the file, not once per request
    (error,) = errors
    broken = len(POLICY.splitlines()) + 2  # the line of "[[rule]"
    assert error["level"] == "error" and error["path"] == str(policy) and error["line"] == broken
    assert f"{policy}:{broken}" in error["message"]
    assert all(str(tmp_path).encode() not in body for body in bodies)  # the caller never sees the path


def _audit(root: Path, *args: str) -> list[dict[str, Any]]:
    res = subprocess.run([*PEERBOX, "audit", "bob", "--root", str(root), "--json", *args],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_audit_log_with_two_workers(tmp_path: Path, store: peerbox.PeerStore, serving: Any) -> None:
    log = tmp_path / "serve.log"
    with serving(tmp_path, "--peers", "bob", "--workers", "2", "--log-format", "json",
                 "--audit-max-bytes", "4K", "--audit-keep", "3", stderr=log) as (port, _):
        async def many() -> list[int]:
            statuses: list[int] = []
            async with H2Transport() as transport:
                c = Caller(store, transport, f"http://127.0.0.1:{port}")

                async def one(sender: str) -> None:
                    statuses.append((await c.send("1", sender=sender))[0])
                for _ in range(4):  # several connections: both processes take some
                    async with trio.open_nursery() as n:
                        for i in range(8):
                            n.start_soon(one, "alice" if i % 2 else "dave")
            return statuses
        statuses = trio.run(many)
        _wait_for(log, 32)
    assert sorted(set(statuses)) == [200, 403]
    peer_dir = tmp_path / "peers" / "bob"
    files = sorted(p.name for p in peer_dir.glob("audit.log*") if not p.name.endswith(".lock"))
    assert "audit.log.1" in files and "audit.log.4" not in files  # rotated, at most 3 kept
    for name in files:  # each line whole: one JSON object, no two processes' lines mixed
        for line in (peer_dir / name).read_bytes().splitlines():
            doc = json.loads(line)
            assert doc["decision"] in ("allowed", "denied") and doc["type"] == "exec"
    records = _audit(tmp_path)
    assert len(records) == sum(len((peer_dir / n).read_bytes().splitlines()) for n in files)
    alice = _audit(tmp_path, "--caller", "alice")
    assert alice and all(r["caller_name"] == "alice" and r["decision"] == "allowed" for r in alice)
    assert all(r["rule"] == "policy.toml:8" for r in alice)
    dave_did = store.get("dave").did
    dave = _audit(tmp_path, "--caller", dave_did, "--since", "10m")
    assert dave and all(r["caller"] == dave_did and r["decision"] == "denied" for r in dave)
    assert all(r["rule"] == "no rule allowed it" and r["action"] == "exec" for r in dave)
    assert _audit(tmp_path, "--since", "2999-01-01T00:00:00Z") == []


@pytest.mark.parametrize("mode", ["shared", "isolated"])
def test_a_client_cannot_choose_its_transport_or_address_in_the_log(tmp_path: Path, store: peerbox.PeerStore,
                                                                    serving: Any, mode: str) -> None:
    """The headers an isolated-mode router adds for its children (how and from where a request came)
    are ignored when a remote client sends them: the line says what the server saw."""
    log = tmp_path / "serve.log"
    args = ["--peers", "bob", "--log-format", "json", "--mode", mode]
    with serving(tmp_path, *args, stderr=log) as (port, _):
        proc = subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
             "-H", "content-type: application/cose", "-H", "peerbox-transport: forged",
             "-H", "peerbox-client: 203.0.113.9:1", "--data-binary", "not an envelope",
             f"http://127.0.0.1:{port}{EXEC_PATH}"], capture_output=True, text=True, timeout=30)
        assert proc.stdout == "400", proc.stderr
        (line,) = _wait_for(log, 1)
    assert line["transport"] == "h2c" and line["client"].startswith("127.0.0.1:"), line
    assert "forged" not in log.read_text() and "203.0.113.9" not in log.read_text()
