"""Fixtures for the host-side tests (sandbox, cache, CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

import peerbox
from peerbox.cli import main as cli_main

# Keep the test run's compiled modules out of the user's ~/.cache (the
# process-wide default Sandbox reads this when it is first created).
os.environ.setdefault("PEERBOX_CACHE_DIR", tempfile.mkdtemp(prefix="peerbox-test-cache-"))


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[peerbox.Sandbox]:
    """A private Sandbox with its own disk cache directory, closed afterwards."""
    sb = peerbox.Sandbox(cache_dir=tmp_path / "cache")
    yield sb
    sb.close()


class CliResult(NamedTuple):
    """What one in-process CLI run gave: its exit code, stdout and stderr (unpacks as a tuple)."""

    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run the peerbox CLI in-process: ``cli("run", "x.rhai", ...)``."""

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        code = cli_main(list(argv))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def cli_proc(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m peerbox ...`` in a subprocess (for real process behaviour)."""
    env = dict(os.environ, PEERBOX_CACHE_DIR=str(tmp_path / "proc-cache"))

    def run(*argv: str, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "peerbox", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=cwd or tmp_path,
        )

    return run


@pytest.fixture
def script(tmp_path: Path) -> Callable[[str, str], str]:
    """Write a script file: ``script("x.rhai", source)`` returns its path."""

    def write(name: str, source: str) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
        return str(path)

    return write
