"""``peerbox serve --workers N``: N worker processes on one address, supervised.

The supervisor binds the address once (:func:`~peerbox.net._serving.listen_socket`)
and starts N copies of ``peerbox serve`` (``python -m peerbox.cli._serve``),
each inheriting the listening socket (``--listen-fd``): the kernel hands each
new connection to one of the processes waiting on it, so the port is known
before any child starts (``--listen 127.0.0.1:0`` works), a restarted child
serves the same socket, and no connection is refused while one restarts (it
waits in the backlog or goes to another process). This needs no
``SO_REUSEPORT`` (which would hash connections to processes whatever their
load, and let a stray process bind the same port) and works on any POSIX
system. Each child hosts every named peer (a shared-mode
:class:`~peerbox.net._worker.Worker`): replay protection holds across them
because each peer's nonce database is one SQLite file that serialises its
writers, and peers' storage is safe for several processes (see
:mod:`peerbox.hostcalls._fs`).

Lifecycle:

* a child that exits (crash, SIGKILL, OOM) is started again after a backoff
  (0.1 s doubling to 5 s; reset once a child has run 30 s), under the same
  index; a child that fails before it ever served (a bad peer or TLS file:
  checked by the supervisor first, so rare) stops them all, and the
  supervisor fails with a :class:`~peerbox.net._startup.ServeError` (exit 2)
  naming it, before "listening on" is printed;
* SIGINT/SIGTERM: stop; every child gets SIGTERM (a graceful drain: stop
  accepting, finish runs in flight, up to 10 s) and is killed if it has not
  exited after ``grace`` s more; then exit 0. Children run in their own
  session (a terminal's Ctrl-C reaches the supervisor only) and read a pipe
  from it on stdin: if the supervisor is killed, they drain and exit.

The children publish their metrics to a runtime directory the supervisor
creates and removes (:mod:`peerbox.net._shared`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence

import trio

from .._errors import UsageError
from ._accept import ConnectionBoard
from ._logsetup import LogOptions
from ._serving import write_port_file
from ._startup import ServeError, StartupFailure, prepare, run_serving

__all__ = ["run_supervisor", "supervise", "default_workers"]

WORKER_LOG = logging.getLogger("peerbox.worker")

#: Seconds a child may take to start serving before it counts as failed.
START_TIMEOUT = 60.0
_BACKOFF_FIRST, _BACKOFF_MAX, _BACKOFF_RESET = 0.1, 5.0, 30.0


def default_workers() -> int:
    """The number of CPUs this process may run on (its affinity mask; at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclasses.dataclass(eq=False)
class _Child:
    """One worker process slot, as the supervisor sees it (the index survives restarts)."""

    index: int
    ready_file: str
    process: trio.Process | None = None
    starts: int = 0
    ready: bool = False


def _boot_failure(index: int, code: int | None) -> ServeError:
    """A child exited (``code``; None: still starting after :data:`START_TIMEOUT`) before it ever served."""
    what = f"did not start within {START_TIMEOUT:g} s" if code is None else f"exited with code {code}"
    return ServeError(StartupFailure.WORKER, f"worker process {index} {what} before serving")


@dataclasses.dataclass(frozen=True)
class _Config:
    root: str
    peers: list[str] | None
    listens: tuple[str, ...]  # every listener as bound (``--listen`` values)
    fds: tuple[int, ...]  # the bound TCP listeners' sockets, in ``listens`` order
    runtime_dir: str
    tls_cert: str | None
    tls_key: str | None
    max_runs: int | None
    grace: float
    inherit: tuple[int, ...] = ()  # the peers' lock descriptors: held while any child lives
    logs: LogOptions = LogOptions()
    state_args: tuple[str, ...] = ()  # ``--state URL`` and ``--reply-cache``, for every child
    name: str = ""  # the worker label of the children's /metrics (``serve --name``)

    def command(self, child: _Child) -> list[str]:
        """The child's command line (each TCP listener's socket is one ``--listen-fd``, in order)."""
        who = ["--peers", ",".join(self.peers)] if self.peers is not None else ["--all"]
        listens = [arg for url in self.listens for arg in ("--listen", url)]
        fds = [arg for fd in self.fds for arg in ("--listen-fd", str(fd))]
        cmd = [sys.executable, "-m", "peerbox.cli._serve", "serve", "--root", self.root, *who,
               *listens, "--quiet", "--workers", "1", *fds, "--worker-index", str(child.index),
               "--worker-dir", self.runtime_dir, "--port-file", child.ready_file, *self.logs.argv()]
        if self.tls_cert is not None and self.tls_key is not None:
            cmd += ["--tls-cert", self.tls_cert, "--tls-key", self.tls_key]
        if self.max_runs is not None:
            cmd += ["--max-runs", str(self.max_runs)]
        if self.name:
            cmd += ["--name", self.name]
        return cmd + list(self.state_args)


async def _stop(proc: trio.Process, grace: float) -> None:
    """SIGTERM, close its stdin, SIGKILL after ``grace`` s; always reaps.

    SIGTERM goes first: a child stops on whichever comes first, and once it is draining its
    signal handler is gone, so a SIGTERM arriving after the end of stdin would kill it mid-drain.
    """
    with trio.CancelScope(shield=True):
        if proc.returncode is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        if proc.stdin is not None:
            await proc.stdin.aclose()
        if proc.returncode is None:
            with trio.move_on_after(grace):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _keep(config: _Config, child: _Child,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Keep ``child`` running: start it, wait until it serves, restart it with backoff when it exits.

    Reports started once the first start serves. Raises :class:`ServeError` if the first
    start exits (or does not serve within :data:`START_TIMEOUT`). Cancel to stop it (SIGTERM,
    then SIGKILL after ``config.grace``).
    """
    backoff = _BACKOFF_FIRST
    while True:
        try:
            os.unlink(child.ready_file)
        except FileNotFoundError:
            pass
        # Its own session: a terminal's Ctrl-C reaches the supervisor, which stops the children
        # itself; stdin is a pipe whose end tells a child its supervisor is gone.
        proc = await trio.lowlevel.open_process(config.command(child), stdin=subprocess.PIPE,
                                                start_new_session=True,
                                                pass_fds=(*config.fds, *config.inherit))
        child.process, child.ready = proc, False
        child.starts += 1
        began = trio.current_time()
        try:
            with trio.move_on_after(START_TIMEOUT):
                while proc.returncode is None and not os.path.exists(child.ready_file):
                    await trio.sleep(0.02)
            if proc.returncode is None and os.path.exists(child.ready_file):
                child.ready = True
                if child.starts == 1:
                    task_status.started()
            elif child.starts == 1:
                raise _boot_failure(child.index, proc.returncode)
            await proc.wait()
        finally:
            child.ready = False
            await _stop(proc, config.grace)
            ConnectionBoard.mark_down(ConnectionBoard.path_in(config.runtime_dir), child.index)
        WORKER_LOG.error("worker process %d (pid %d) exited with code %s; restarting in %g s",
                         child.index, proc.pid, proc.returncode, backoff)
        if trio.current_time() - began > _BACKOFF_RESET:
            backoff = _BACKOFF_FIRST
        await trio.sleep(backoff)
        backoff = min(backoff * 2, _BACKOFF_MAX)


async def supervise(config: _Config, workers: int, *, port: int, port_file: str | None, banner: str | None,
                    handle_signals: bool = True,
                    task_status: trio.TaskStatus[list[_Child]] = trio.TASK_STATUS_IGNORED) -> int:
    """Start ``workers`` children on ``config.fd``, keep them running until SIGINT/SIGTERM (or
    cancellation), stop them; the exit code (0).

    Writes ``port_file`` and prints ``banner`` once every child serves. Raises
    :class:`~peerbox.net._startup.ServeError` (in trio's exception group) if a child
    fails before it served: the others are stopped, nothing was written or printed.
    """
    children = [_Child(i, os.path.join(config.runtime_dir, f"worker-{i}.ready")) for i in range(workers)]
    ConnectionBoard.create(ConnectionBoard.path_in(config.runtime_dir), workers)
    try:
        with contextlib.ExitStack() as stack:
            # Signals are taken from the start: one during the boot stops it, one as soon as the
            # port file appears stops cleanly (it would kill the process before the receiver opened).
            signals = stack.enter_context(trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)) \
                if handle_signals else None
            async with trio.open_nursery() as nursery:
                if signals is not None:
                    nursery.start_soon(_cancel_on_signal, signals, nursery.cancel_scope)
                for child in children:
                    await nursery.start(_keep, config, child)
                if port_file:
                    write_port_file(port_file, port)
                if banner is not None:
                    print(banner, file=sys.stderr, flush=True)
                task_status.started(children)
                await trio.sleep_forever()  # each _keep stops its child when cancelled: SIGTERM, a drain
    finally:
        if port_file:
            try:
                os.unlink(port_file)
            except OSError:
                pass
    return 0


async def _cancel_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    """Cancel ``scope`` at the first signal ``signals`` delivers."""
    async for _ in signals:
        scope.cancel()
        return


def run_supervisor(root: str | None, peers: list[str] | None, listen: str | Sequence[str], *, workers: int,
                   tls_cert: str | None = None, tls_key: str | None = None, port_file: str | None = None,
                   max_runs: int | None = None, quiet: bool = False, grace: float = 15.0,
                   logs: LogOptions | None = None, state_args: Sequence[str] = (), name: str = "") -> int:
    """``peerbox serve --workers N`` (N > 1): bind, start N worker processes, supervise until a signal.

    Checks the address, the TLS files and the peers, takes the peers' locks and binds before
    any child starts (:func:`~peerbox.net._startup.prepare`: a :class:`~peerbox.net._startup.ServeError`,
    exit 2); returns 0 after a clean stop, raises ``ServeError`` if a child failed before it
    served. ``grace``: how long a child may drain after SIGTERM before SIGKILL. ``state_args``:
    the shared-state options every child gets (``--state URL``, ``--reply-cache``). ``name``: the
    ``worker`` label every child puts on its ``/metrics`` series.
    """
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    with prepare(root, peers, listen, tls_cert=tls_cert, tls_key=tls_key) as started:
        runtime_dir = tempfile.mkdtemp(prefix="peerbox-serve-")
        try:
            banner = None if quiet else (f"listening on {', '.join(started.urls)} "
                                         f"(peers: {', '.join(started.names)})")
            socks = ([started.sock] if started.sock is not None else []) + [
                b.sock for b in started.extra if b.sock is not None]
            # The HTTP/2 listener first, then the others in order: how the children's --listen-fd line up.
            config = _Config(str(started.store.root), started.names if peers is not None else None,
                             tuple(started.listen_args), tuple(s.fileno() for s in socks), runtime_dir,
                             tls_cert, tls_key, max_runs,
                             grace, started.lock_fds, logs if logs is not None else LogOptions(),
                             tuple(state_args), name)
            run_serving(functools.partial(supervise, config, workers, port=started.port, port_file=port_file,
                                          banner=banner))
            return 0
        finally:
            shutil.rmtree(runtime_dir, ignore_errors=True)
