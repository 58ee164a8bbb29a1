"""`make demo`'s network part (examples/network/demo.sh) runs end to end and shows what it promises."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("demo")]  # runs examples/network/demo.sh (peerbox processes)
# xdist_group: the module-scoped fixture is set up once, on one pytest process (`--dist loadgroup`),
# not once on every process that gets one of these tests

DEMO = Path(__file__).resolve().parents[2] / "examples" / "network" / "demo.sh"


@pytest.fixture(scope="module")
def demo_output() -> str:
    peerbox = Path(sys.executable).parent / "peerbox"
    if not peerbox.exists():
        pytest.fail(f"the peerbox command is not installed next to {sys.executable}")
    env = {**os.environ, "PEERBOX": str(peerbox), "PATH": f"{peerbox.parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", str(DEMO)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_alice_note_is_delivered_by_bobs_own_inbox_module(demo_output: str) -> None:
    assert "peer:inbox  overrides builtin:inbox" in demo_output
    assert "1.txt: from alice: hello bob, hi" in demo_output


def test_denied_and_limited_requests_exit_with_their_codes(demo_output: str) -> None:
    assert "fs.read of 'private/diary.txt' denied " in demo_output
    assert "limit_timeout" in demo_output
    assert "(exit 6)" in demo_output and "(exit 5)" in demo_output


def test_owner_pushes_inbox_v2_and_alices_next_message_is_handled_by_it(demo_output: str) -> None:
    assert "bob: peer:inbox is now version 2" in demo_output
    assert "// bob's inbox, version 2, pushed remotely" in demo_output  # read back remotely
    assert "bob: logic.write of 'inbox' denied: no rule allowed it" in demo_output  # alice's push
    assert "thanks alice, bob's inbox (v2) has your message" in demo_output
    assert "2.txt: from alice: [alice] hello bob, again" in demo_output
    assert "ok   inbox: 2 versions verified" in demo_output
    assert "worker stopped cleanly" in demo_output


def test_carol_delivers_through_bobs_published_function_but_cannot_write(demo_output: str) -> None:
    listing = [line for line in demo_output.splitlines() if "export fn deliver(text: string)" in line]
    assert listing, "logic list shows no published deliver"
    assert "call: owner (" in listing[0] and "carol (policy.toml:" in listing[0]
    assert "thanks carol, bob's inbox (v2) has your message" in demo_output  # the call, with bob's rights
    assert "fs.write of 'inbox/from-carol.txt' denied" in demo_output  # her own write
    assert "3.txt: from carol: [carol] hi from carol" in demo_output  # caller.name from bob's peers.toml
    assert "from-carol.txt:" not in demo_output
    assert demo_output.count("(exit 6)") >= 3  # alice's peek, alice's push, carol's write


def test_the_demo_uses_peers_show_for_dids_and_prints_no_escape_codes_into_a_pipe(demo_output: str) -> None:
    assert "python3 -c" not in DEMO.read_text()
    assert "$ carol_did=$(peerbox peers show carol --did" in demo_output
    assert "did:key:z6Mk" in demo_output.split("$ carol_did=")[1].splitlines()[1]
    assert "\x1b" not in demo_output  # stdout and stderr are pipes here


def _first_lines_on_a_terminal(tmp_path: Path, no_color: bool) -> bytes:
    """The demo's output on a pseudo-terminal up to its first command's result (then it is stopped)."""
    peerbox = Path(sys.executable).parent / "peerbox"
    env = {**os.environ, "PEERBOX": str(peerbox), "TMPDIR": str(tmp_path), "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    if no_color:
        env["NO_COLOR"] = "1"
    leader, follower = pty.openpty()
    proc = subprocess.Popen(["bash", str(DEMO)], stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            env=env, start_new_session=True)
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while b"did:key:" not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the demo ended (EIO on the closed terminal)
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        os.close(leader)
    assert b"did:key:" in out, out[-2000:]
    return out


@pytest.mark.parametrize("no_color", [False, True], ids=["terminal", "NO_COLOR"])
def test_the_demo_is_bold_on_a_terminal_unless_no_color_is_set(tmp_path: Path, no_color: bool) -> None:
    out = _first_lines_on_a_terminal(tmp_path, no_color)
    assert (b"\x1b[1m$ carol_did=" in out) is not no_color
    assert (b"\x1b" in out) is not no_color
