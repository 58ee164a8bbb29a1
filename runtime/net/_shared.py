"""Serving a shared-mode :class:`~peerbox.net._worker.Worker`: ``serve_worker`` (one trio task) and
``run_shared`` (``peerbox serve --mode shared``: one process until a signal).
"""

from __future__ import annotations

import functools
import ssl

import trio

from ._h2server import ServerLimits
from ._serving import parse_listen, serve_app, tls_context
from ._worker import Worker

__all__ = ["serve_worker", "run_shared"]


async def serve_worker(worker: Worker, *, host: str, port: int, ssl_context: ssl.SSLContext | None = None,
                       limits: ServerLimits | None = None, port_file: str | None = None, quiet: bool = False,
                       handle_signals: bool = True, grace: float = 10.0, stop_on_stdin_eof: bool = False,
                       task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve a shared-mode :class:`Worker`; on shutdown wait ``grace`` s for runs still on threads.

    (Runs whose stream was reset are not app calls anymore, so the server's
    own grace does not cover them; nothing is closed under a running guest.)
    """
    names = ", ".join(n for n, _ in worker.peers) or "none"
    try:
        await serve_app(worker.app, host=host, port=port, ssl_context=ssl_context, limits=limits,
                        port_file=port_file, banner=None if quiet else f"peers: {names}",
                        handle_signals=handle_signals, stop_on_stdin_eof=stop_on_stdin_eof,
                        task_status=task_status)
    finally:
        with trio.CancelScope(shield=True):
            await worker.drain(grace)


def run_shared(root: str | None, peers: list[str] | None, listen: str, *,
               tls_cert: str | None = None, tls_key: str | None = None, port_file: str | None = None,
               max_runs: int | None = None, quiet: bool = False, exit_with_parent: bool = False) -> int:
    """``peerbox serve --mode shared``: serve until SIGINT/SIGTERM (or stdin EOF with
    ``exit_with_parent``: how isolated mode's children follow their supervisor), then exit 0.

    ``exit_with_parent`` (the hidden ``--exit-with-parent``) is given to isolated mode's
    children only: their answers go to its router, so they name denied actions for it too.
    """
    host, port = parse_listen(listen)
    ctx = tls_context(tls_cert, tls_key)
    worker = Worker(root, peers, max_runs=max_runs, for_router=exit_with_parent)
    try:
        trio.run(functools.partial(serve_worker, worker, host=host, port=port, ssl_context=ctx,
                                   port_file=port_file, quiet=quiet, stop_on_stdin_eof=exit_with_parent))
    finally:
        if worker.idle:
            worker.close()  # else a run is still going: leave its files to the process exit
    return 0
