"""One peer's storage served by several processes at once (``peerbox serve --workers N``).

Each backend is opened in its own real process on the same storage; they
change it concurrently. Appends are read-modify-write, so an append lost to a
race would show as a missing line; the entry quota is shared, so processes
that each kept their own tally would together store more than it allows.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from peerbox.hostcalls import HostCallError, Quotas, open_backend

pytestmark = pytest.mark.slow  # starts processes

WORKER = r"""
import sys
from peerbox.hostcalls import HostCallError, Quotas, open_backend

kind, location, tag, n, max_files = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
backend = open_backend(kind, location, Quotas(max_files=max_files))
print("ready", flush=True)
sys.stdin.readline()  # start together
created = refused = 0
for i in range(n):
    backend.append_bytes("log.txt", f"{tag} {i}\n".encode())
    try:
        backend.write_bytes(f"f-{tag}-{i}", b"x" * 10)
        created += 1
    except HostCallError as exc:
        assert exc.kind == "quota_exceeded", exc
        refused += 1
backend.close()
print(created, refused)
"""


def _location(tmp_path: Path, kind: str) -> Path:
    return tmp_path / ("root" if kind == "fs" else "storage.sqlite")


@pytest.mark.parametrize("kind", ["fs", "sqlite"])
def test_processes_writing_one_storage_lose_no_write_and_share_the_quota(tmp_path: Path, kind: str) -> None:
    location, n, writers = _location(tmp_path, kind), 60, 3
    max_files = 1 + 100  # log.txt and 100 of the 180 files the writers try to create
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, kind, str(location), f"w{k}", str(n),
                               str(max_files)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(writers)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n", p.communicate()[1]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-2000:]
    created = sum(int(out.split()[0]) for out, _ in results)
    with open_backend(kind, location, Quotas(max_files=max_files)) as backend:
        lines = backend.read_bytes("log.txt").decode().splitlines()
        # every append of every process is there: none was lost to another's read-modify-write
        assert sorted(lines) == sorted(f"w{k} {i}" for k in range(writers) for i in range(n))
        names = backend.list_dir("")
        # the quota held for all processes together: exactly full, never over
        assert created == max_files - 1 and len(names) == max_files
        assert backend.usage() == (len("\n".join(lines)) + 1 + 10 * created, max_files)


def test_a_writer_killed_mid_change_leaves_a_tally_the_next_writer_recounts(tmp_path: Path) -> None:
    """The tally is marked pending during a change; a process killed there leaves it marked, and
    the next change (in any process) recounts instead of trusting a tally that missed the write."""
    root = tmp_path / "root"
    kill_mid_write = r"""
import os, sys
from peerbox.hostcalls import _fs, open_backend
backend = open_backend("fs", sys.argv[1])
real = _fs.replace_file
def replace_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os._exit(9)  # the file is in place, the tally not updated yet
_fs.replace_file = replace_then_die
backend.write_bytes("big", b"y" * 5000)
"""
    with open_backend("fs", root) as backend:
        backend.write_bytes("a", b"12345")
        res = subprocess.run([sys.executable, "-c", kill_mid_write, str(root)], capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 9, res.stderr[-2000:]
        assert (root / "big").stat().st_size == 5000
        assert backend.usage() == (5005, 2)  # recounted, not the 5 bytes its tally last said
        with pytest.raises(HostCallError) as info:
            with open_backend("fs", root, Quotas(max_total_bytes=6000)) as small:
                small.write_bytes("c", b"z" * 1000)
        assert info.value.kind == "quota_exceeded"
