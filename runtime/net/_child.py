"""An isolated-mode child: one peer's :class:`~peerbox.net._worker.Worker`, served over the local channel.

Started by the supervisor (:mod:`peerbox.net._isolated`) as::

    python -m peerbox.net._child --root ROOT --peers NAME --fd N [--max-runs N] [--max-frame BYTES]

``--fd`` is the child's end of a Unix-domain ``socketpair`` the supervisor
made (inherited, nothing on the filesystem); the child sends HELLO on it once
its worker is built, then answers each request frame with its worker's app
(:class:`~peerbox.net._localchan.ChannelServer`), the same app a shared-mode
worker serves over HTTP/2, made ``for_router`` (it names denied actions in a
header for the router's metrics), except that it does not verify again a
signature the router verified (:func:`trusting_app`). It stops when the supervisor's end closes
(the supervisor is gone: nothing can be answered, runs in flight finish,
then exit 0) or on SIGTERM/SIGINT (requests received are answered within
``--grace`` s, then exit 0). An unknown peer exits 2 (a usage error); a
router that breaks the frame format exits 7 (the channel is unusable).
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import trio

from .._errors import Error
from ..trust import Envelope
from ..wire import (MAX_CALL_REQUEST, MAX_REVOKE_REQUEST, EnvelopeError, open_call_request, open_request,
                    open_revoke_request)
from ._h2client import MAX_REPLY
from ._http import App, HttpRequest, HttpResponse, ServerLimits
from ._access import access_logged
from ._logsetup import LogOptions, add_log_arguments
from ._localchan import FRAME_SLACK, VERIFIED_SIGNER, ChannelServer, FrameError
from ._preauth import MAX_EXEC_REQUEST
from ._worker import Worker

__all__ = ["main", "child_command", "trusting_app"]

WORKER_LOG = logging.getLogger("peerbox.worker")


def child_command(root: str, peer: str, fd: int, *, max_runs: int | None = None,
                  max_frame: int | None = None, grace: float | None = None,
                  logs: Sequence[str] = ()) -> list[str]:
    """The command line that starts a child for ``peer`` on inherited descriptor ``fd`` (``logs``: the
    log options as arguments, :meth:`~peerbox.net._logsetup.LogOptions.argv`)."""
    cmd = [sys.executable, "-m", "peerbox.net._child", "--root", root, "--peers", peer, "--fd", str(fd)]
    if max_runs is not None:
        cmd += ["--max-runs", str(max_runs)]
    if max_frame is not None:
        cmd += ["--max-frame", str(max_frame)]
    if grace is not None:
        cmd += ["--grace", f"{grace:g}"]
    return [*cmd, *logs]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m peerbox.net._child",
                                description="isolated mode's child worker (started by `peerbox serve`)")
    p.add_argument("--root", required=True)
    p.add_argument("--peers", required=True, help="the peer (or comma-separated peers) this child hosts")
    p.add_argument("--fd", type=int, required=True, help="the inherited channel socket")
    p.add_argument("--max-runs", type=int, default=None)
    p.add_argument("--max-frame", type=int, default=ServerLimits().max_body + FRAME_SLACK,
                   help="the largest request frame taken (the router's body limit plus slack)")
    p.add_argument("--grace", type=float, default=10.0)
    add_log_arguments(p)
    return p


def _open_exec(body: bytes, key: bytes) -> Envelope:
    return open_request(body, max_size=MAX_EXEC_REQUEST, preauthenticated=key)


def _open_call(body: bytes, key: bytes) -> Envelope:
    return open_call_request(body, max_size=MAX_CALL_REQUEST, preauthenticated=key)


def _open_revoke(body: bytes, key: bytes) -> Envelope:
    return open_revoke_request(body, max_size=MAX_REVOKE_REQUEST, preauthenticated=key)


#: The endpoints whose envelopes a child opens with the key its router verified (a logic request,
#: rare and small, is verified again by ``worker.app``).
_TRUSTED: Mapping[str, Callable[[bytes, bytes], Envelope]] = MappingProxyType({
    "/v1/exec": _open_exec, "/v1/call": _open_call, "/v1/revoke": _open_revoke})


def trusting_app(worker: Worker) -> App:
    """``worker.app``, except that an exec, call or revoke request whose signature the router verified
    is not verified again.

    The router names the key it verified in :data:`~peerbox.net._localchan.VERIFIED_SIGNER`;
    the body is still decoded strictly (:func:`~peerbox.wire.open_request`,
    :func:`~peerbox.wire.open_call_request` or :func:`~peerbox.wire.open_revoke_request`
    with that key as ``preauthenticated``: every field check, the signer must be the
    caller) and the worker still checks freshness, nonce, policy. Anything else
    (a logic request, no header, a body that does not open, a target not hosted,
    a worker shutting down) takes ``worker.app``, which answers it as a shared worker would.
    """
    async def app(req: HttpRequest) -> HttpResponse:
        signer = req.header(VERIFIED_SIGNER)
        opener = _TRUSTED.get(req.path)
        if signer is None or opener is None or req.method != "POST" or worker.closing:
            return await worker.app(req)
        try:
            key = bytes.fromhex(signer)
            envelope = opener(req.body, key)
        except (EnvelopeError, ValueError):
            return await worker.app(req)
        if not worker.hosts(envelope.target):
            return await worker.app(req)
        return await worker.exec_opened(req, envelope, req.path)

    return app


async def _serve(worker: Worker, sock: socket.socket, max_frame: int, grace: float) -> None:
    """Serve the worker on the channel until it closes or a signal; then drain the worker's runs."""
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    app = access_logged(trusting_app(worker), "local", from_router=True)
    server = ChannelServer(stream, app, max_frame=max_frame, max_answer=MAX_REPLY + FRAME_SLACK, grace=grace)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, server)
            await server.run()
            nursery.cancel_scope.cancel()
    finally:  # the server closed the stream; runs whose answers were dropped finish on their threads
        with trio.CancelScope(shield=True):
            await worker.drain(grace)


async def _stop_on_signal(server: ChannelServer) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            server.stop()
            return


def main(argv: list[str] | None = None) -> int:
    """Run a child until its channel closes or a signal; the exit code (0, 2 usage, 7 channel)."""
    args = _parser().parse_args(argv)
    logs = LogOptions.from_args(args)
    logs.configure()
    sock = socket.socket(fileno=args.fd)
    try:
        worker = Worker(args.root, args.peers.split(","), max_runs=args.max_runs, for_router=True,
                        audit=logs.audit)
    except Error as exc:
        sock.close()
        WORKER_LOG.error("the worker of %s cannot start: %s", args.peers, exc)
        return exc.exit_code
    try:
        trio.run(functools.partial(_serve, worker, sock, args.max_frame, args.grace))
    except FrameError as exc:
        WORKER_LOG.error("the worker of %s: %s", args.peers, exc)
        return exc.exit_code
    finally:
        if worker.idle:
            worker.close()  # else a run is still going: leave its files to the process exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
