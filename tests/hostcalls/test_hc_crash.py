"""Crash consistency: a writer killed with SIGKILL at random moments never leaves a torn file.

A child process rewrites one file in a loop, alternating two contents of
different sizes, through the backend; the parent kills it at a random moment,
many times over. After every kill the file is exactly one of the two
contents, and no temporary file is visible (nor, once the backend has been
opened again, left on disk).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peerbox.hostcalls import TEMP_PREFIX, open_backend

pytestmark = pytest.mark.slow

OLD = b"old content\n" * 100  # 1 200 bytes
NEW = b"N" * 70_000  # a different size, more than one write() of work

CHILD = """
import sys
from peerbox.hostcalls import open_backend
kind, location = sys.argv[1], sys.argv[2]
backend = open_backend(kind, location)
contents = (b"old content\\n" * 100, b"N" * 70_000)
sys.stdout.write("ready\\n")
sys.stdout.flush()
i = 0
while True:
    backend.write_bytes("d/f.txt", contents[i % 2])
    i += 1
"""

ROUNDS = {"fs": 25, "sqlite": 15}


def _kill_at_random(kind: str, location: Path, rng: random.Random) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, str(location)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == b"ready\n", (line, child.stderr.read() if child.stderr else b"")
        time.sleep(rng.uniform(0.0, 0.04))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("kind", ["fs", "sqlite"])
def test_sigkill_never_leaves_a_torn_file(tmp_path: Path, kind: str) -> None:
    rng = random.Random(f"crash-{kind}")
    location = tmp_path / ("files" if kind == "fs" else "store.sqlite")
    with open_backend(kind, location) as backend:
        backend.mkdir("d")
        backend.write_bytes("d/f.txt", OLD)
    temp_seen = 0
    seen: set[int] = set()
    for round_no in range(ROUNDS[kind]):
        if kind == "fs":
            temp_seen += sum(name.startswith(TEMP_PREFIX) for name in os.listdir(location / "d"))
            on_disk = (location / "d" / "f.txt").read_bytes()
            assert on_disk in (OLD, NEW), f"round {round_no}: torn file of {len(on_disk)} bytes"
        _kill_at_random(kind, location, rng)
        with open_backend(kind, location) as backend:
            assert backend.list_dir("d") == ["f.txt"]
            content = backend.read_bytes("d/f.txt")
            assert content in (OLD, NEW), f"round {round_no}: torn file of {len(content)} bytes"
            seen.add(len(content))
            assert backend.usage() == (len(content), 2)
        if kind == "fs":  # reopening swept any temporary file the kill left behind
            assert os.listdir(location / "d") == ["f.txt"]
    # the kills landed at different points of the loop (both contents survived some)
    assert seen == {len(OLD), len(NEW)}, (seen, temp_seen)
