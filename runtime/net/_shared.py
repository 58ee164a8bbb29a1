"""Serving a shared-mode :class:`~peerbox.net._worker.Worker`: ``serve_worker`` (one trio task) and
``run_shared`` (``peerbox serve --mode shared``: one process until a signal, or N supervised ones).

With ``--workers N`` (N > 1) :func:`run_shared` hands over to the supervisor
(:mod:`peerbox.net._supervisor`), which binds the address once and starts N
copies of this command, each given the listening socket (``--listen-fd``),
its index and the supervisor's runtime directory (:class:`WorkerSlot`). Such
a process hosts every named peer like a single worker; what differs is what
it says about itself (:class:`ProcessApp`): ``/v1/health`` names the process
(``process``, ``pid``), and ``/metrics`` renders every process's series with
a ``process`` label, from the snapshots each one publishes to the runtime
directory (:func:`publish_metrics`, four times a second when they changed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import logging
import socket
import ssl
from collections.abc import Iterator, Sequence
from typing import Any

import trio

from .._atomic import write_atomic
from .._errors import UsageError
from ._access import access_logged
from ._accept import DOWN, ConnectionBoard
from ._endpoints import JSON, PROM
from ._logsetup import LogOptions
from ._h2server import HttpRequest, HttpResponse, ServerLimits
from ._metrics import Metrics, render_processes
from ._status import READY_PATH, STATUS_PATH, Readiness
from ._listeners import BoundListener, Carrier, extra_listener, parse_listens
from ._serving import serve_app, tls_context
from ._jetstream import SharedStateError
from ._kvdirectory import DirectoryConflict
from ._kvpublish import Publication, publish_hosted
from ._kvrecords import DEFAULT_PUBLISH_TTL, MIN_PUBLISH_TTL
from ._startup import ServeError, StartupFailure, prepare, run_serving
from ._supervisor import default_workers, run_supervisor
from ._worker import Worker
from ._workerstate import WorkerState

__all__ = ["serve_worker", "run_shared", "WorkerSlot", "ProcessApp", "publish_metrics"]

WORKER_LOG = logging.getLogger("peerbox.worker")

#: How often a worker process publishes its metrics (when they changed), in seconds.
PUBLISH_INTERVAL = 0.25
_METRICS_PREFIX, _METRICS_SUFFIX = "metrics-", ".json"


@dataclasses.dataclass(frozen=True)
class WorkerSlot:
    """What a worker process of ``serve --workers N`` is given by its supervisor.

    ``fd``: the HTTP/2 listening socket it inherits (-1: none); ``index``: its place (0..N-1,
    kept across restarts); ``runtime_dir``: the supervisor's directory for the processes'
    metrics; ``extra``: the other listeners, each with the socket it inherits (WebSocket) or
    none (NATS: each process subscribes itself).
    """

    fd: int
    index: int
    runtime_dir: str
    extra: tuple[BoundListener, ...] = ()

    @property
    def board_path(self) -> str:
        """The processes' shared table of open connections (:class:`~peerbox.net._accept.ConnectionBoard`)."""
        return ConnectionBoard.path_in(self.runtime_dir)

    def metrics_path(self, index: int | None = None) -> str:
        """The file in which process ``index`` (default: this one) publishes its metrics."""
        which = self.index if index is None else index
        return os.path.join(self.runtime_dir, f"{_METRICS_PREFIX}{which}{_METRICS_SUFFIX}")


class ProcessApp:
    """A worker's app as one of several processes: ``/v1/health`` names this process and ``/metrics``
    shows every process's series (labelled ``process``); everything else is the worker's.

    ``slot`` None: a single process (``--workers 1``): health still carries ``pid``, metrics
    are this process's alone, unlabelled, as before.
    """

    def __init__(self, worker: Worker, slot: WorkerSlot | None, board: ConnectionBoard | None = None) -> None:
        self.worker = worker
        self.slot = slot
        #: the processes' table of open connections (a slot marked down: that process is down)
        self.board = board

    async def app(self, req: HttpRequest) -> HttpResponse:
        """Answer one request (never raises for bad input)."""
        if req.method in ("GET", "HEAD"):
            path = req.path.split("?", 1)[0]
            if path == "/v1/health":
                return HttpResponse(status=200, headers=(("content-type", JSON),),
                                    body=json.dumps(self.health()).encode())
            if self.slot is not None:
                if path == "/metrics":
                    return HttpResponse(status=200, headers=(("content-type", PROM),),
                                        body=self.metrics_text().encode())
                if path == READY_PATH:
                    return (await self.readiness()).response()
                if path == STATUS_PATH:
                    return await self.worker.status_response(req, self.status)
        return await self.worker.app(req)

    async def readiness(self) -> Readiness:
        """The worker's readiness, and every other process of the supervisor up (its board slot)."""
        ready = await self.worker.readiness()
        if self.board is not None:
            for index, count in enumerate(self.board.counts()):
                if count >= DOWN and index != self.board.index:
                    ready.waiting[f"process {index}"] = "down (restarting)"
        return ready

    async def status(self) -> dict[str, object]:
        """The worker's status document plus ``process`` (this one's index) and ``processes``: each
        process's index, pid, whether it is up, its open connections and its runs (the others' as
        last published, at most :data:`PUBLISH_INTERVAL` old)."""
        doc = {**await self.worker.status()}
        if self.slot is None:
            return doc
        doc["process"] = self.slot.index
        counts = self.board.counts() if self.board is not None else []
        published = self._published()
        processes: list[dict[str, object]] = []
        for index, count in enumerate(counts):
            snap = published.get(index, {})
            me = index == self.slot.index
            processes.append({
                "index": index, "up": me or count < DOWN,
                "pid": os.getpid() if me else snap.get("pid"),
                "connections": self.board.open if me and self.board is not None else
                (count if count < DOWN else 0),
                "in_flight": self.worker.metrics.in_flight if me else snap.get("in_flight"),
                "queued": self.worker.metrics.queued if me else snap.get("queued")})
        doc["processes"] = processes
        return doc

    def _published(self) -> dict[int, dict[str, Any]]:
        """The other processes' last published snapshots, by index (unreadable ones left out)."""
        assert self.slot is not None
        out: dict[int, dict[str, Any]] = {}
        try:
            names = os.listdir(self.slot.runtime_dir)
        except OSError:
            return out
        for name in names:
            index = name[len(_METRICS_PREFIX):-len(_METRICS_SUFFIX)]
            if not (name.startswith(_METRICS_PREFIX) and name.endswith(_METRICS_SUFFIX) and index.isdigit()):
                continue
            try:
                with open(os.path.join(self.slot.runtime_dir, name), "rb") as f:
                    data = json.loads(f.read(1 << 20))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                out[int(index)] = data
        return out

    def health(self) -> dict[str, object]:
        """The worker's health document plus ``pid`` (and ``process``, its index, when supervised)."""
        doc = {**self.worker.health(), "pid": os.getpid()}
        if self.slot is not None:
            doc["process"] = self.slot.index
        return doc

    def metrics_text(self) -> str:
        """Every process's metrics: this one's live, the others' as last published.

        A file that cannot be read or parsed (being replaced, or not ours) is left out:
        a scrape never fails because of another process.
        """
        assert self.slot is not None
        processes: dict[str, Metrics] = {str(self.slot.index): self.worker.metrics}
        try:
            names = os.listdir(self.slot.runtime_dir)
        except OSError:
            names = []
        for name in names:
            index = name[len(_METRICS_PREFIX):-len(_METRICS_SUFFIX)]
            if not (name.startswith(_METRICS_PREFIX) and name.endswith(_METRICS_SUFFIX) and index.isdigit()):
                continue
            if index == str(self.slot.index):
                continue
            try:
                with open(os.path.join(self.slot.runtime_dir, name), "rb") as f:
                    processes[index] = Metrics.from_snapshot(json.loads(f.read(1 << 20)))
            except (OSError, ValueError, TypeError, KeyError, AttributeError):
                continue
        return render_processes(processes, worker=self.worker.worker_name)


async def publish_metrics(metrics: Metrics, path: str, interval: float = PUBLISH_INTERVAL) -> None:
    """Write ``metrics``' snapshot to ``path`` (atomically, not fsynced: it is rebuilt by a restart)
    every ``interval`` s when it changed, until cancelled. A failed write is retried next time."""
    last = b""
    while True:
        data = json.dumps({**metrics.snapshot(), "pid": os.getpid()}, sort_keys=True).encode()
        if data != last:
            try:
                write_atomic(path, data, durable=False)
                last = data
            except OSError:
                pass  # the runtime directory went away (the supervisor is stopping) or is full
        await trio.sleep(interval)


async def serve_worker(worker: Worker, *, host: str, port: int, ssl_context: ssl.SSLContext | None = None,
                       limits: ServerLimits | None = None, port_file: str | None = None, quiet: bool = False,
                       handle_signals: bool = True, grace: float = 10.0, stop_on_stdin_eof: bool = False,
                       slot: WorkerSlot | None = None, sock: socket.socket | None = None,
                       extra: Sequence[BoundListener] = (), h2: bool = True,
                       tls_files: tuple[str | None, str | None] = (None, None),
                       task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve a shared-mode :class:`Worker`; on shutdown wait ``grace`` s for runs still on threads.

    (Runs whose stream was reset are not app calls anymore, so the server's
    own grace does not cover them; nothing is closed under a running guest.)
    With ``slot`` (a process of ``serve --workers N``): serve on the inherited
    listening socket, and publish this process's metrics for the others. ``sock``
    (without ``slot``): a listening socket bound already (left open: its owner closes it).
    ``extra``: the listeners besides HTTP/2 (WebSocket, NATS; with ``slot``: the slot's), each
    serving the same app (access lines name their transport); ``h2`` False: none on HTTP/2.
    ``tls_files``: ``--tls-cert``/``--tls-key``, for ``wss://`` listeners (a context of their own).
    """
    names = ", ".join(n for n, _ in worker.peers) or "none"
    inherited = None if slot is None or slot.fd < 0 else socket.socket(fileno=slot.fd)
    if slot is not None:
        extra = slot.extra
    sock = inherited or sock
    board = None
    if slot is not None:
        try:
            board = ConnectionBoard(slot.board_path, slot.index)
        except OSError as exc:  # served all the same, without balancing
            WORKER_LOG.warning("worker process %d: no connection board: %s", slot.index, exc)
    front = ProcessApp(worker, slot, board)
    try:
        async with trio.open_nursery() as nursery:
            if slot is not None:
                nursery.start_soon(publish_metrics, worker.metrics, slot.metrics_path())
            worker.transport = "h2" if ssl_context is not None else "h2c"
            others = [extra_listener(access_logged(front.app, _transport_name(b)), b, tls_cert=tls_files[0],
                                     tls_key=tls_files[1], limits=limits, peers=worker.peers) for b in extra]
            await serve_app(access_logged(front.app, worker.transport), host=host, port=port,
                            ssl_context=ssl_context, limits=limits,
                            port_file=port_file, banner=None if quiet else f"peers: {names}",
                            handle_signals=handle_signals, stop_on_stdin_eof=stop_on_stdin_eof,
                            sock=sock, board=board, extra=others, h2=h2, task_status=task_status)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await worker.drain(grace)
        if inherited is not None:
            inherited.close()
        if slot is not None:
            for bound in slot.extra:
                if bound.sock is not None:
                    bound.sock.close()
        if board is not None:
            board.close()


def _transport_name(bound: BoundListener) -> str:
    """How the access log names requests that come through ``bound`` (``ws``, ``wss``, ``nats``)."""
    if bound.spec.carrier is Carrier.WS:
        return "wss" if bound.spec.tls else "ws"
    return str(bound.spec.carrier.value)


def _slot(listen: str | Sequence[str], fds: Sequence[int], index: int, runtime_dir: str) -> WorkerSlot:
    """The slot of a supervised process: ``fds`` are its inherited sockets, one per TCP listener of
    ``listen`` in order. Raises :class:`~peerbox.UsageError` if they do not match."""
    specs = parse_listens(listen)
    tcp = [s for s in specs if s.carrier in (Carrier.H2, Carrier.WS)]
    if len(tcp) != len(fds):
        raise UsageError(f"--listen-fd: {len(fds)} given for {len(tcp)} TCP listeners")
    by_spec = dict(zip([id(s) for s in tcp], fds, strict=True))
    h2_fd = next((by_spec[id(s)] for s in specs if s.carrier is Carrier.H2), -1)
    extra = tuple(BoundListener(s, socket.socket(fileno=by_spec[id(s)]) if id(s) in by_spec else None)
                  for s in specs if s.carrier is not Carrier.H2)
    return WorkerSlot(h2_fd, index, runtime_dir, extra)


def run_shared(root: str | None, peers: list[str] | None, listen: str | Sequence[str], *,
               tls_cert: str | None = None, tls_key: str | None = None, port_file: str | None = None,
               max_runs: int | None = None, quiet: bool = False, exit_with_parent: bool = False,
               workers: int | None = 1, listen_fd: int | Sequence[int] | None = None,
               worker_index: int | None = None,
               worker_dir: str | None = None, logs: LogOptions | None = None,
               state: str | None = None, reply_cache: bool = False, name: str = "",
               publish: bool = False, publish_ttl: float = DEFAULT_PUBLISH_TTL) -> int:
    """``peerbox serve --mode shared``: serve until SIGINT/SIGTERM (or stdin EOF with
    ``exit_with_parent``: how isolated mode's children follow their supervisor), then exit 0.

    ``workers`` > 1 (None: the number of CPUs): N supervised processes on one address
    (:func:`peerbox.net._supervisor.run_supervisor`, which returns the exit code).
    ``listen_fd``, ``worker_index`` and ``worker_dir`` (all or none: a :class:`WorkerSlot`):
    this is one of them (it follows its supervisor through stdin too, and answers
    clients directly). ``exit_with_parent`` (the hidden ``--exit-with-parent``)
    is given to isolated mode's children only: their answers go to its router, so they
    name denied actions for it too. ``logs``: the log options, handed to every process (its
    audit rotation to the worker; default :class:`~peerbox.net._logsetup.LogOptions`). ``name``: the
    ``worker`` label of its ``/metrics`` series (``serve --name``; empty: none). ``publish``
    (``serve --publish``, needs ``state``): announce every hosted peer in the shared directory at
    start-up, refresh the entries every third of ``publish_ttl`` s and remove them on a clean stop
    (:func:`~peerbox.net._kvpublish.publish_hosted`; a name taken by another did is a
    :class:`ServeError`, failure ``state``). Raises
    :class:`~peerbox.net._startup.ServeError` (exit 2) for whatever keeps it from starting:
    the root, a peer, the TLS files, a peer served by another process, the address
    (:func:`~peerbox.net._startup.prepare`, in the top-level process only: a supervised
    process trusts its supervisor's checks).
    """
    given = [listen_fd is not None, worker_index is not None, worker_dir is not None]
    if any(given) and not all(given):
        raise UsageError("--listen-fd, --worker-index and --worker-dir go together")
    fds = [listen_fd] if isinstance(listen_fd, int) else list(listen_fd or ())
    slot = _slot(listen, fds, worker_index, worker_dir) if (
        listen_fd is not None and worker_index is not None and worker_dir is not None) else None
    workers = default_workers() if workers is None else workers
    if reply_cache and state is None:
        raise UsageError("--reply-cache needs --state nats://HOST:PORT (the cache lives in JetStream)")
    if publish and state is None:
        raise UsageError("--publish needs --state nats://HOST:PORT (the shared directory lives in JetStream)")
    if publish and publish_ttl < MIN_PUBLISH_TTL:
        raise UsageError(f"--publish-ttl must be at least {MIN_PUBLISH_TTL} s")
    if workers > 1 and slot is None:
        state_args = ((["--state", state] if state is not None else [])
                      + (["--reply-cache"] if reply_cache else [])
                      + (["--publish", "--publish-ttl", f"{publish_ttl:g}"] if publish else []))
        return run_supervisor(root, peers, listen, workers=workers, tls_cert=tls_cert, tls_key=tls_key,
                              port_file=port_file, max_runs=max_runs, quiet=quiet, logs=logs,
                              state_args=state_args, name=name)
    with _shared_state(state, reply_cache) as shared:
        return _serve_one(root, peers, listen, tls_cert=tls_cert, tls_key=tls_key, port_file=port_file,
                          max_runs=max_runs, quiet=quiet, exit_with_parent=exit_with_parent, slot=slot,
                          logs=logs, shared=shared, name=name,
                          publish=publish_ttl if publish else None)


def _publish(shared: WorkerState | None, worker: Worker, listen: str | Sequence[str], ttl: float | None,
             label: str) -> Publication | None:
    """Publish ``worker``'s peers in the shared directory (``--publish``: ``ttl`` not None), at its
    ``--listen nats://`` URL if it has one, kept alive until the publication is stopped (None:
    nothing to publish). Raises :class:`~peerbox.net._startup.ServeError` (failure ``state``;
    ``worker`` is closed first)."""
    if shared is None or ttl is None:
        return None
    nats = next((s.text for s in parse_listens(listen) if s.carrier is Carrier.NATS), None)
    try:
        return publish_hosted(shared.state, worker.peers, nats, ttl=ttl, label=label)
    except (DirectoryConflict, SharedStateError) as exc:
        worker.close()
        raise ServeError(StartupFailure.STATE, f"--publish: {exc}") from exc


@contextlib.contextmanager
def _shared_state(url: str | None, reply_cache: bool) -> Iterator[WorkerState | None]:
    """The worker's shared state (``--state``; None without), open for the block. Raises
    :class:`~peerbox.net._startup.ServeError` (exit 2) when JetStream cannot be reached."""
    if url is None:
        yield None
        return
    shared = WorkerState(url, reply_cache=reply_cache)
    try:
        shared.open()
    except SharedStateError as exc:
        raise ServeError(StartupFailure.STATE, f"--state: {exc}") from exc
    try:
        yield shared
    finally:
        shared.close()


def _serve_one(root: str | None, peers: list[str] | None, listen: str | Sequence[str], *,
               tls_cert: str | None, tls_key: str | None, port_file: str | None, max_runs: int | None,
               quiet: bool, exit_with_parent: bool, slot: WorkerSlot | None, logs: LogOptions | None,
               shared: WorkerState | None, name: str = "", publish: float | None = None) -> int:
    """Serve in this process (see :func:`run_shared`), with ``shared`` state if given; ``name``:
    the ``worker`` label of its ``/metrics`` series; ``publish``: the TTL to announce the peers
    with first (None: not announced), withdrawn once serving ends."""
    logs = logs if logs is not None else LogOptions()
    if slot is not None or exit_with_parent:  # started by a supervisor, which checked and holds the peers
        specs = parse_listens(listen)
        h2 = next((s for s in specs if s.carrier is Carrier.H2), None)
        host, port = (h2.host, h2.port) if h2 is not None else ("127.0.0.1", 0)
        ctx = tls_context(tls_cert, tls_key)
        worker = Worker(root, peers, max_runs=max_runs, for_router=exit_with_parent, audit=logs.audit,
                        state=shared)
        worker.worker_name = name
        publication = _publish(shared, worker, listen, publish, name)
        serving = functools.partial(serve_worker, worker, host=host, port=port, ssl_context=ctx,
                                    port_file=port_file, quiet=quiet, slot=slot, stop_on_stdin_eof=True,
                                    h2=h2 is not None, tls_files=(tls_cert, tls_key),
                                    extra=[BoundListener(s) for s in specs if s.carrier is not Carrier.H2])
        try:
            run_serving(serving)
        finally:
            if publication is not None:
                publication.stop()
            if worker.idle:
                worker.close()  # else a run is still going: leave its files to the process exit
        return 0
    with prepare(root, peers, listen, tls_cert=tls_cert, tls_key=tls_key) as started:
        worker = Worker(started.store.root, started.names, max_runs=max_runs, audit=logs.audit, state=shared)
        worker.worker_name = name
        publication = _publish(shared, worker, listen, publish, name)
        try:
            run_serving(functools.partial(serve_worker, worker, host=started.host, port=started.port,
                                          ssl_context=started.ssl_context, port_file=port_file, quiet=quiet,
                                          sock=started.sock, extra=started.extra, h2=started.h2,
                                          tls_files=(tls_cert, tls_key)))
        finally:
            if publication is not None:
                publication.stop()
            if worker.idle:
                worker.close()  # else a run is still going: leave its files to the process exit
    return 0
