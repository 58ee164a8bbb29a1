"""What ``make bench`` records about the machine and the tree it ran on (``bench/run.py``'s header).

``machine_info()``: CPU model, cores, platform, Python, wasmtime and peerbox
versions, the date, the git commit (and whether the tree was dirty) and the
load averages at the end; ``_loadavg()`` alone for the start of a run.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def ver(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    commit = _git("rev-parse", "HEAD")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "wasmtime": ver("wasmtime"),
        "peerbox": ver("peerbox"),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "short_commit": commit[:7],
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "loadavg_end": _loadavg(),   # 1/5/15-minute load averages (the machine may be shared)
    }
