"""Isolated mode: one worker process per peer, supervised, behind a router.

The supervisor starts one child per peer (:mod:`peerbox.net._child`: the same
:class:`~peerbox.net._worker.Worker` app as shared mode, one peer each),
restarts a child that exits with backoff, stops them all on exit, and serves
a :class:`Router` on the main address. The router runs the same pre-checks
as a shared worker and forwards each request envelope (``/v1/exec``,
``/v1/logic``, ``/v1/call``, ``/v1/revoke``) to its peer's child over a
local channel (:mod:`peerbox.net._localchan`: a Unix ``socketpair``,
length-prefixed frames multiplexed by request id), not over a second HTTP/2
connection, and answers with the child's status, content type
and bytes (and ``retry-after`` on a 429 or 503), so a client cannot tell the
modes apart except by timing.

Faults of a child never reach the router's other peers: a child that is
down, dies with requests in flight, does not answer within the router's
``timeout``, or breaks the frame format (it is then killed and restarted)
costs its own requests a ``503`` with ``retry-after``, nothing else.
"""

from __future__ import annotations

import functools
import logging
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
import trio

from ..trust import Handled, Outcome, Usage, outcome_of
from ._h2client import MAX_REPLY
from ._h2server import HttpRequest, HttpResponse, ServerLimits
from ..peer import PeerStore
from ._access import CLIENT_HEADER, TRANSPORT_HEADER, access_logged, current_note
from ._child import child_command
from ._endpoints import DENIED_ACTION, RETRY_LATER, Endpoints, error_response
from ._localchan import FRAME_SLACK, VERIFIED_SIGNER, ChannelClient, ChannelError, FrameError, ResponseFrame
from ._logsetup import LogOptions
from ._listeners import BoundListener, extra_listener
from ._serving import serve_app
from ._startup import ServeError, StartupFailure, prepare, run_serving
from ._status import READY_PATH, STATUS_PATH, Readiness

__all__ = ["Router", "serve_isolated", "run_isolated"]

WORKER_LOG = logging.getLogger("peerbox.worker")

#: How long a child may take to start (build its worker, say HELLO) before it is killed and restarted.
START_TIMEOUT = 60.0
#: How long the router waits for a child's answer to ``/v1/ready`` or ``/v1/status``.
PROBE_TIMEOUT = 2.0


@dataclass(eq=False)
class _Child:
    """One peer's worker process, as the supervisor sees it: ``channel`` is None while it is down."""

    name: str
    did: str
    public_key: bytes
    channel: ChannelClient | None = None
    process: trio.Process | None = None
    starts: int = 0
    in_flight: int = 0  # requests forwarded to it and not answered yet


class Router(Endpoints):
    """The isolated-mode front: same pre-checks and statuses as :class:`Worker`, forwards to children.

    Nothing is forwarded, and nothing expensive done, for a request whose
    signature does not verify: the router runs the worker's own pre-checks
    (:meth:`Endpoints._exec_checked`: size, outer structure and signature
    over the raw bytes first, see :mod:`peerbox.net._preauth`), and its HTTP/2
    server charges every refusal to the same per-connection and per-address
    failure budgets (:class:`~peerbox.net._h2server.ServerLimits`). A child that
    is down (crashed, restarting) answers ``503`` with ``retry-after``, like
    a saturated worker. Metrics count the children's
    answers by the same outcomes (read from the replies it forwards) and
    denied actions (from the :data:`~peerbox.net._endpoints.DENIED_ACTION`
    header its own child adds, which is not forwarded: a client gets only the
    content type, and ``retry-after`` on a 503, or the child's own on a 429).
    """

    def __init__(self, children: list[_Child], *, timeout: float = 120.0) -> None:
        super().__init__([(c.name, c.did) for c in children])
        self.mode = "isolated"
        self.children = {c.public_key: c for c in children}
        self.timeout = timeout
        self.in_flight = 0

    def hosts(self, target: bytes) -> bool:
        return target in self.children

    def health(self) -> dict[str, object]:
        """The shared document plus ``workers_up`` and ``restarts``; ``status`` is ``unavailable``
        when no peer's process is up: nothing here can serve (still 200: the router itself lives)."""
        up = sum(1 for c in self.children.values() if c.channel is not None)
        doc = {**super().health(), "in_flight": self.in_flight, "workers_up": up,
               "restarts": sum(max(0, c.starts - 1) for c in self.children.values())}
        if self.children and up == 0 and not self.closing:
            doc["status"] = "unavailable"
        return doc

    async def _ask(self, child: _Child, path: str) -> ResponseFrame | str:
        """``GET path`` of ``child`` over its channel (what its own worker answers), or why not."""
        channel = child.channel
        if channel is None:
            return "its process is starting" if child.starts == 0 else "its process is down (restarting)"
        try:
            return await channel.request("GET", path, (), b"", PROBE_TIMEOUT)
        except ChannelError as exc:
            return f"its process does not answer ({exc})"

    async def readiness(self) -> Readiness:
        """Ready when not draining and every child is up and itself ready (asked over its channel,
        all at once, each within :data:`PROBE_TIMEOUT`)."""
        ready = await super().readiness()

        async def probe(child: _Child) -> None:
            answer = await self._ask(child, READY_PATH)
            if isinstance(answer, str):
                ready.waiting[child.name] = answer
            elif answer.status != 200:
                said = answer.body.decode("utf-8", "replace").strip().removeprefix("not ready: ")
                ready.waiting[child.name] = said[:200] or f"its process answers {answer.status}"

        async with trio.open_nursery() as nursery:
            for child in self.children.values():
                nursery.start_soon(probe, child)
        return ready

    async def peer_status(self) -> list[dict[str, object]]:
        """Each peer: whether its process is up, its pid and restarts, requests the router is waiting
        on, and its own worker's runs in flight and queued (asked over the channel)."""
        out: list[dict[str, object]] = []

        async def one(child: _Child, entry: dict[str, object]) -> None:
            answer = await self._ask(child, STATUS_PATH)
            if isinstance(answer, ResponseFrame) and answer.status == 200:
                try:
                    doc = json.loads(answer.body)
                    entry["in_flight"], entry["queued"] = int(doc["in_flight"]), int(doc["queued"])
                except (ValueError, KeyError, TypeError):
                    pass

        async with trio.open_nursery() as nursery:
            for child in self.children.values():
                proc = child.process
                entry: dict[str, object] = {
                    "name": child.name, "did": child.did, "up": child.channel is not None,
                    "pid": proc.pid if proc is not None and proc.returncode is None else None,
                    "restarts": max(0, child.starts - 1), "forwarded": child.in_flight,
                    "in_flight": None, "queued": None}
                out.append(entry)
                nursery.start_soon(one, child, entry)
        return out

    async def exec(self, req: HttpRequest, target: bytes, caller: bytes, path: str) -> HttpResponse:
        """Forward a pre-checked request to its peer's child; its answer, or 503 if it gives none."""
        child = self.children[target]
        channel = child.channel
        note = current_note()
        if channel is None:
            if note is not None:
                note.unhandled, note.target = "busy", child.name
            self.metrics.unhandled("busy")
            return error_response(503, "unavailable", f"the worker of {child.name} is restarting",
                                  RETRY_LATER)
        self.in_flight += 1
        child.in_flight += 1
        self.metrics.in_flight = self.in_flight
        start = time.perf_counter()
        try:
            forwarded = (("content-type", req.header("content-type") or ""), (VERIFIED_SIGNER, caller.hex()),
                         (TRANSPORT_HEADER, note.transport if note is not None else self.transport),
                         (CLIENT_HEADER, req.client))
            answer = await channel.request(req.method, path, forwarded, bytes(req.body), self.timeout)
        except ChannelError as exc:
            if note is not None:  # the child wrote no line for it: the router does
                note.unhandled, note.target = "busy", child.name
            self.metrics.unhandled("busy")
            return error_response(503, "unavailable", f"the worker of {child.name} did not answer: {exc}",
                                  RETRY_LATER)
        finally:
            self.in_flight -= 1
            child.in_flight -= 1
            self.metrics.in_flight = self.in_flight
        status, body = answer.status, answer.body
        if note is not None:
            note.forwarded = True  # the child wrote its access line
        self._count(status, body, time.perf_counter() - start, path=path,
                    denied_action=answer.header(DENIED_ACTION))
        headers: tuple[tuple[str, str], ...] = (("content-type", answer.header("content-type") or ""),)
        if status == 503:
            headers += RETRY_LATER
        elif status == 429:  # the caller's rate limit: the wait the child's limiter computed
            headers += (("retry-after", _retry_after(answer.header("retry-after"))),)
        return HttpResponse(status=status, headers=headers, body=body)

    def _count(self, status: int, body: bytes, seconds: float, *, path: str = "/v1/exec",
               denied_action: str | None = None) -> None:
        """Metrics from a forwarded answer: the same outcomes and denied action as the child's own."""
        if status == 503:
            self.metrics.unhandled("busy")
            return
        try:
            handled = _forwarded(status, body, logic=path in ("/v1/logic", "/v1/revoke"),
                                 denied_action=denied_action, refused=_REFUSED_ACTION.get(path))
        except Exception:  # an answer we cannot read is still forwarded; count it apart
            self.metrics.unhandled("unreadable")
            return
        self.metrics.answered(handled, seconds)


#: The action a 403 of each endpoint refused when the child's header does not say (``exec``: the default).
_REFUSED_ACTION = {"/v1/logic": "logic.write", "/v1/call": "call", "/v1/revoke": "revoke"}


def _retry_after(value: str | None) -> str:
    """A child's ``retry-after`` (whole seconds) as forwarded: the same digits, or ``1`` if it sent
    none that reads as a delay (the child is ours, but a client must never get a malformed header)."""
    if value is not None and value.isascii() and value.isdigit() and len(value) <= 9:
        return value
    return "1"


def _forwarded(status: int, body: bytes, *, logic: bool = False, denied_action: str | None = None,
               refused: str | None = None) -> Handled:
    """A child's answer as the :class:`Handled` its own worker counted (outcome, usage, denied action).

    The child signed it, so cbor2's fast decoder is enough (about 15 µs, where
    the strict one takes 80-100): this is bookkeeping, not verification. A 200, 403 or 429 carries a
    signed reply (429: ``rate_limited``, nothing ran). ``denied_action`` is what the child's
    :data:`~peerbox.net._endpoints.DENIED_ACTION` header says (never read from
    a message); a 403 without it counts under the action refused before
    anything ran: ``refused`` (the endpoint's: ``call``, ``revoke``...), else
    ``exec``, or ``logic.write`` for a ``logic`` request; a 200 ``denied``
    under ``host_call`` (a run that ended on a refused host call). Raises what
    decoding raises.
    """
    if status not in (200, 403, 429):
        err = cbor2.loads(body).get("error")
        return Handled(outcome=Outcome.REJECTED, body=body, error=err if isinstance(err, dict) else None)
    payload = _reply_payload(body)
    err = payload.get("error") if isinstance(payload.get("error"), dict) else None
    kind = str(err.get("kind", "")) if err else ""
    if status == 403:
        action = denied_action or refused or ("logic.write" if logic else "exec")
        return Handled(outcome=Outcome.DENIED, body=body, error=err, denied_action=action)
    outcome = outcome_of(payload.get("ok") is True, kind, logic=logic)
    if status == 429:
        outcome = Outcome.RATE_LIMITED
    if kind == "denied":  # 200, not 403: a run that ended on a host call the policy refused
        outcome = Outcome.SCRIPT_ERROR
        denied_action = denied_action or "host_call"
    return Handled(outcome=outcome, body=body, error=err, usage=Usage.from_map(payload.get("usage")),
                   denied_action=denied_action)


def _reply_payload(body: bytes) -> dict[str, Any]:
    """The payload map of a COSE_Sign1 reply (tag 18: protected, unprotected, payload, signature), read
    with cbor2's C decoder; raises ``ValueError`` (or what cbor2 raises) if it is not one."""
    msg = cbor2.loads(body)
    if not (isinstance(msg, cbor2.CBORTag) and msg.tag == 18 and isinstance(msg.value, (list, tuple))
            and len(msg.value) == 4 and isinstance(msg.value[2], bytes)):
        raise ValueError("not a COSE_Sign1 message")
    payload = cbor2.loads(msg.value[2])
    if not isinstance(payload, dict):
        raise ValueError("the payload is not a map")
    return payload


async def _stop(proc: trio.Process, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` s; always reaps."""
    with trio.CancelScope(shield=True):
        if proc.returncode is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            with trio.move_on_after(grace):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _pump(child: _Child, channel: ChannelClient, proc: trio.Process) -> None:
    """Run ``channel`` until it ends; a child that broke the frame format, or closed its end while
    still running, is killed (the supervisor restarts it)."""
    try:
        await channel.run()
    except FrameError as exc:
        WORKER_LOG.error("the worker of %s broke the channel (%s); killing it", child.name, exc)
    if proc.returncode is None:
        proc.kill()


async def _supervise(root: str, child: _Child, *, max_runs: int | None, grace: float,
                     max_request: int = ServerLimits().max_body + FRAME_SLACK, inherit: tuple[int, ...] = (),
                     logs: LogOptions | None = None,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Keep ``child`` running: start it on a fresh channel, wait for its HELLO, restart it with
    backoff when it exits (or breaks its channel, or does not start within :data:`START_TIMEOUT`).

    Reports started once the first start said HELLO; raises
    :class:`~peerbox.net._startup.ServeError` (``WORKER``) if it did not (it
    exited, or hung and was killed): a child that cannot start at all is a
    start-up failure of the whole serve, not a peer to answer 503 for. Cancel
    to stop it (its channel closes, which a child takes as its cue to exit;
    SIGTERM, SIGKILL after ``grace``). ``inherit``: more descriptors the
    child keeps open (the peers' start-up locks).
    """
    backoff = 0.1
    reported = False
    while True:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            cmd = child_command(root, child.name, theirs.fileno(), max_runs=max_runs, max_frame=max_request,
                                grace=grace, logs=logs.argv() if logs is not None else ())
            # Its own session: a terminal's Ctrl-C reaches only the supervisor, which stops the
            # children itself; the channel's end tells a child its supervisor is gone.
            proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.DEVNULL,
                                                    pass_fds=(theirs.fileno(), *inherit),
                                                    start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        channel = ChannelClient(stream, max_frame=MAX_REPLY + FRAME_SLACK, max_request=max_request)
        child.process = proc
        child.starts += 1
        began = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, child, channel, proc)
                with trio.move_on_after(START_TIMEOUT) as waiting:
                    if await channel.wait_ready():
                        child.channel = channel
                # a channel that closed before HELLO is a child that exited (not yet reaped, maybe)
                hung = waiting.cancelled_caught and proc.returncode is None
                if hung:
                    proc.kill()  # no HELLO in time: stuck starting
                if not reported and child.channel is None:
                    code = await proc.wait()
                    what = f"did not start within {START_TIMEOUT:g} s" if hung else f"exited with code {code}"
                    raise ServeError(StartupFailure.WORKER,
                                     f"the worker of {child.name} {what} before serving", peer=child.name)
                if not reported:
                    reported = True
                    task_status.started()
                await proc.wait()
                nursery.cancel_scope.cancel()
        finally:
            child.channel = None
            channel.close()
            with trio.CancelScope(shield=True):
                await stream.aclose()
            await _stop(proc, grace)
        WORKER_LOG.error("the worker of %s exited with code %s; restarting in %g s", child.name,
                         proc.returncode, backoff)
        if trio.current_time() - began > 30:
            backoff = 0.1
        await trio.sleep(backoff)
        backoff = min(backoff * 2, 5.0)


async def serve_isolated(root: str | None, peers: list[str] | None, *, host: str, port: int,
                         ssl_context: ssl.SSLContext | None = None, limits: ServerLimits | None = None,
                         port_file: str | None = None, max_runs: int | None = None, quiet: bool = False,
                         handle_signals: bool = True, grace: float = 10.0, timeout: float = 120.0,
                         sock: socket.socket | None = None, inherit: tuple[int, ...] = (),
                         logs: LogOptions | None = None, extra: Sequence[BoundListener] = (), h2: bool = True,
                         tls_files: tuple[str | None, str | None] = (None, None), name: str = "",
                         task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Isolated mode: one supervised child worker per peer, a :class:`Router` on ``host:port``
    (or on the listening ``sock``, bound already and left open; ``host`` and ``port`` are then
    only shown).

    ``timeout``: how long the router waits for a child's answer before it
    answers 503. ``inherit``: descriptors every child keeps open (the peers'
    start-up locks). ``logs``: handed to each child (its log level and format, the audit
    rotation). Raises :class:`~peerbox.UsageError` for an unknown peer
    (checked before any child starts) and :class:`~peerbox.net._startup.ServeError`
    if a child does not start (before anything is served or printed). On exit
    every child is stopped. ``extra``, ``h2``, ``tls_files``: the router's other listeners
    (WebSocket, NATS), as :func:`~peerbox.net._shared.serve_worker` takes them. ``name``: the
    ``worker`` label of the router's ``/metrics`` series (empty: none).
    """
    store = PeerStore(root)
    chosen = [store.get(n) for n in peers] if peers is not None else store.list()
    children = [_Child(p.name, p.did, p.public_key) for p in chosen]
    names = ", ".join(c.name for c in children) or "none"
    max_request = (limits or ServerLimits()).max_body + FRAME_SLACK
    inner: list[trio.Nursery] = []
    finished = trio.Event()

    async def body(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        # Shielded from outside cancellation, which is turned into cancelling `inner` below:
        # the children must be stopped (SIGTERM, reaped) with no cancellation pending.
        try:
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as nursery:
                    inner.append(nursery)
                    booting = trio.CapacityLimiter(2 * (os.cpu_count() or 1))

                    async def boot(child: _Child) -> None:
                        async with booting:
                            await nursery.start(functools.partial(
                                _supervise, str(store.root), child, max_runs=max_runs, grace=grace,
                                max_request=max_request, inherit=inherit, logs=logs))

                    async with trio.open_nursery() as starting:  # a few at once: boot is not N x one child
                        for child in children:
                            starting.start_soon(boot, child)
                    router = Router(children, timeout=timeout)
                    router.transport = "h2" if ssl_context is not None else "h2c"
                    router.worker_name = name
                    others = [extra_listener(access_logged(router.app, b.spec.carrier.value), b,
                                             tls_cert=tls_files[0], tls_key=tls_files[1], limits=limits,
                                             peers=[(c.name, c.did) for c in children]) for b in extra]
                    await serve_app(access_logged(router.app, router.transport), host=host, port=port,
                                    ssl_context=ssl_context, limits=limits,
                                    port_file=port_file,
                                    banner=None if quiet else f"peers: {names}; isolated, one process each",
                                    handle_signals=handle_signals, sock=sock, extra=others, h2=h2,
                                    task_status=task_status)
                    nursery.cancel_scope.cancel()  # a signal: stop the children
        finally:
            finished.set()

    async with trio.open_nursery() as top:
        actual: int = await top.start(body)
        task_status.started(actual)
        try:
            await finished.wait()
        except trio.Cancelled:
            if inner:
                inner[0].cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await finished.wait()
            raise


def run_isolated(root: str | None, peers: list[str] | None, listen: str | Sequence[str], *,
                 tls_cert: str | None = None, tls_key: str | None = None, port_file: str | None = None,
                 max_runs: int | None = None, quiet: bool = False, logs: LogOptions | None = None,
                 name: str = "") -> int:
    """``peerbox serve --mode isolated``: serve until SIGINT/SIGTERM, stop the children, exit 0.

    Every start-up check runs first, in this process (:func:`~peerbox.net._startup.prepare`:
    peers, TLS, the peers' locks, the address); raises
    :class:`~peerbox.net._startup.ServeError` (exit 2) for any of them, or for a
    child that does not start, before "listening on" is printed.
    """
    with prepare(root, peers, listen, tls_cert=tls_cert, tls_key=tls_key) as started:
        run_serving(functools.partial(serve_isolated, str(started.store.root), started.names,
                                      host=started.host, port=started.port, ssl_context=started.ssl_context,
                                      port_file=port_file, max_runs=max_runs, quiet=quiet, sock=started.sock,
                                      inherit=started.lock_fds, logs=logs, extra=started.extra,
                                      h2=started.h2, tls_files=(tls_cert, tls_key), name=name))
    return 0
