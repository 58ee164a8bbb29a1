"""The worker: hosted peers behind HTTP/2 (the app of :mod:`peerbox.net._h2server`), shared or isolated.

:class:`Worker` is the HTTP application of one process hosting one or many
peers (shared mode). ``POST /v1/exec`` takes a request envelope
(``content-type: application/cose``; ``POST /v1/logic`` takes a logic update,
:mod:`peerbox.trust._logic_push`, ``/v1/call`` a call of a published function
and ``/v1/revoke`` a revocation, the same way), checks the signature over the raw
bytes first and only then decodes strictly
(:func:`~peerbox.net._preauth.open_envelope`), so a forged ``caller`` can
never use up someone else's quota and forgeries cost no decoding, routes by
the envelope's ``target`` to the hosted peer's
:class:`~peerbox.trust._exec.ExecHandler`, and checks and runs it, all on
one pool thread. HTTP status follows the outcome (see
:func:`~peerbox.net._endpoints.status_for`; the endpoints the worker shares
with isolated mode's router are :class:`~peerbox.net._endpoints.Endpoints`,
its metrics :mod:`peerbox.net._metrics`, serving :mod:`peerbox.net._serving`).

A request takes **one hand-off** from the event loop: its body is queued to
a :class:`~peerbox.net._runpool.RunPool` thread, which opens it (the
signature, then the strict decoding: once; the opened
:class:`~peerbox.wire.Request` is passed down, never opened again), answers
a forgery or a target not hosted at once (``preauth_failure``: the HTTP/2
server charges its budgets), turns it away with 503 if it could not be
admitted (before its check, so the envelope may be sent again), then goes
through the two phases of its handler: checks it
(:meth:`~peerbox.trust._exec.ExecHandler.check_envelope`, by the envelope's
type: freshness, the nonce, capabilities, the policy's ``exec`` or ``call``
decision, the caller's rate limit, a call's function and arguments), admits it to a run
slot, runs it (:meth:`~peerbox.trust._exec.ExecHandler.run`: compile-cache
hit, run, sign) and hands the answer back to the loop (``run_sync_soon``),
with no trip to the loop in between. Large bodies are opened there too (the
verification of 1 MiB takes 1-3 ms, SHA-512 with the GIL released), never on
the loop. The check comes before the slot: a replay, a key the
peer's policy does not know, a caller over its rate limit or a call's bad
arguments are answered (409, 403, 429, 200) without ever holding one, and so
is a revocation (it is recorded in the check phase).
A request that must wait for a slot is parked (no thread held) until a run
ends; the thread that ends that run starts it, on the same thread, so a
queued request costs no extra hop either. :class:`~peerbox.net._admission.Admission`
stays the one judge of who runs (fair share, owner reserve, caps), called
under a lock from the loop (the 503 pre-check) and the pool threads.

Runs use a :class:`~peerbox.net._runpool.RunPool` (threads with a large native
stack, which ``trio.to_thread`` cannot guarantee: see :mod:`peerbox.net._runpool`)
of ``max_runs + owner_reserve + check_threads`` threads: at most the first
two run scripts at once (the slots), so ``check_threads`` are always left for
checks, which never wait behind scripts. Answers go back to the loop in
batches: one ``run_sync_soon`` for every answer finished before the loop
could take the previous ones.

Isolated mode (:func:`~peerbox.net._isolated.run_isolated`): one child process per peer
(:mod:`peerbox.net._child`), supervised (restarted with backoff), behind a router
that applies the same pre-checks and forwards each request over a local channel
(:mod:`peerbox.net._localchan`) to this same app, so a client sees the same
statuses and bytes.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import threading
import time
from collections.abc import Callable

import trio

from .._errors import Error
from ..peer import DEFAULT_ROTATION, AuditError, AuditLog, Contexts, Rotation
from ..trust import AnyAdmitted, Envelope, ExecHandler, Handled, LocalRevocations, LogicAdmitted
from ..wire import EnvelopeError
from ._access import ACCESS_LOG, access_rule, audit_record, current_note
from ._admission import Admission, Ticket
from ._endpoints import RETRY_LATER, Endpoints, answer_response, error_response
from ._h2server import HttpRequest, HttpResponse
from ._metrics import Unhandled
from ._preauth import open_envelope
from ._runpool import RUN_STACK_SIZE, RunPool
from ._status import Readiness
from ._workerstate import WorkerState

__all__ = ["Worker"]

WORKER_LOG = logging.getLogger("peerbox.worker")
AUDIT_LOG = logging.getLogger("peerbox.audit")


class _Call:
    """One request on its way from the event loop to a pool thread and back (see the module docstring).

    ``body`` is the envelope as received, ``envelope`` once opened (the
    signature first, then the strict decoding), ``name`` the hosted peer it
    is for. The thread fills in what happened: ``refused`` (it did not
    open), ``not_hosted``, ``handled`` (the handler's answer), or
    ``unhandled`` (an answer no handler gave: ``busy``, ``unavailable``,
    ``internal_error``, with ``message``/``exc``); ``ticket`` once admitted
    to the run slots; ``seconds`` spent checking and running. The loop reads
    them once ``done`` is set. ``abandoned``: the request's task was
    cancelled (its stream reset, the server stopping), so it is not admitted
    to a slot any more (a run already started goes on).
    """

    __slots__ = ("body", "path", "envelope", "name", "token", "done", "handler", "admitted", "ticket",
                 "abandoned", "seconds", "handled", "unhandled", "message", "exc", "refused", "not_hosted",
                 "response", "caller_did", "caller_name", "cached")

    def __init__(self, body: bytes, path: str, envelope: Envelope | None,
                 token: trio.lowlevel.TrioToken) -> None:
        self.body = body
        self.path = path
        self.envelope = envelope
        self.name = ""
        self.token = token
        self.done = trio.Event()
        self.refused: EnvelopeError | None = None  # the envelope did not open (the signature first)
        self.not_hosted = False  # it opened, for a target not hosted here
        self.response: HttpResponse | None = None  # set on the loop
        self.handler: ExecHandler | None = None
        self.admitted: AnyAdmitted | None = None
        self.ticket: Ticket | None = None
        self.abandoned = False
        self.seconds = 0.0
        self.handled: Handled | None = None
        self.unhandled: Unhandled | None = None
        self.message = ""
        self.exc: BaseException | None = None
        self.caller_did: str | None = None  # set when the access or audit log wants them
        self.caller_name: str | None = None
        self.cached: HttpResponse | None = None  # a retry's first answer, from the reply cache


class Worker(Endpoints):
    """The HTTP app of a shared-mode worker hosting ``peers`` under ``root`` (``None``: all).

    ``await worker.app(request)`` answers one request; ``await worker.drain(t)``
    waits up to ``t`` seconds for runs in flight; ``close()`` releases the
    peers' files. Raises :class:`~peerbox.PeerError` (a
    :class:`~peerbox.UsageError`) for an unknown peer or unreadable metadata;
    each peer's handler (its key, policy and nonce database) is opened on its
    first request, and a peer whose files cannot be opened answers 503
    (``unavailable``). The admission settings are those of the module
    docstring (``None``: the default); ``check_threads`` (default
    ``max(2, max_runs)``) is how many pool threads beyond the run slots are
    left for checking requests. ``for_router``: this worker is an
    isolated-mode child answering its router, and names each denied action
    in a header (:data:`~peerbox.net._endpoints.DENIED_ACTION`) for the
    router's metrics. ``cpu`` (an index among the CPUs the process may use,
    modulo their number; None: no binding) binds the pool threads and the
    calling thread, which must be the one that runs the event loop, to one CPU
    (see :mod:`peerbox.net._runpool`): one process of ``serve --workers N``
    passes its index.
    """

    def __init__(self, root: str | os.PathLike[str] | None, peers: list[str] | None = None, *,
                 max_runs: int | None = None, per_peer: int | None = None, per_caller: int | None = None,
                 queue: int | None = None, per_caller_queue: int | None = None, owner_reserve: int = 1,
                 check_threads: int | None = None, clock: Callable[[], float] = time.time,
                 stack_size: int = RUN_STACK_SIZE, for_router: bool = False,
                 cpu: int | None = None, audit: Rotation | None = DEFAULT_ROTATION,
                 state: WorkerState | None = None) -> None:
        super().__init__([])
        #: shared state on JetStream (opened by the caller; None: each peer's SQLite files and lists)
        self.state = state
        self.for_router = for_router
        self.contexts = Contexts(root, accounts=state.accounts if state is not None else None)
        store = self.contexts.store
        chosen = [store.get(n) for n in peers] if peers is not None else store.list()
        names = [p.name for p in chosen]
        #: target public key -> peer name; a peer's ExecHandler (key, policy, nonce database)
        #: is opened on its first request, so idle hosted peers cost little memory.
        self.targets: dict[bytes, str] = {p.public_key: p.name for p in chosen}
        self.peers.extend((p.name, p.did) for p in chosen)
        if state is not None:  # the logic the other workers installed, before the first answer
            state.follow_logic(chosen)
        self.clock = clock
        self._handlers: dict[str, ExecHandler] = {}
        self._handlers_lock = threading.Lock()
        #: each hosted peer's audit log (``None``: none written), opened by its first decision
        self.audit = audit
        self._audits: dict[str, AuditLog] = {}
        runs = max(1, max_runs if max_runs is not None else (os.cpu_count() or 1))
        waiting = max(0, queue if queue is not None else 64 * runs)
        reserve = max(0, owner_reserve)
        self.admission = Admission(
            max_runs=runs,
            per_peer=per_peer if per_peer is not None else (runs if len(names) <= 1 else max(1, runs - 1)),
            per_caller=per_caller if per_caller is not None else max(1, (runs + waiting) // 2),
            queue=waiting,
            per_caller_queue=per_caller_queue,
            owner_reserve=reserve,
        )
        admission = self.admission
        self.metrics.live = lambda: (admission.running, admission.queued)
        #: guards ``admission``, ``_parked`` and ``_checking`` (the loop and the pool threads use them)
        self._lock = threading.Lock()
        #: admitted requests waiting for a slot, by ticket: the thread that frees a slot runs them
        self._parked: dict[Ticket, _Call] = {}
        self._checking = 0  # requests queued to the pool and not yet checked
        self._calls = 0     # requests handed to the pool and not yet answered (loop only)
        #: answers handed back by the pool threads, not yet delivered on the loop (see ``_answer``)
        self._done: collections.deque[_Call] = collections.deque()
        self._done_token: trio.lowlevel.TrioToken | None = None
        self._done_lock = threading.Lock()
        checks = max(1, check_threads if check_threads is not None else max(2, runs))
        self.pool: RunPool | None = RunPool(runs + reserve + checks, stack_size=stack_size, cpu=cpu)

    # -- lifecycle -------------------------------------------------------------------------

    async def drain(self, timeout: float) -> bool:
        """Refuse new runs and wait up to ``timeout`` s for those in flight; True if all ended."""
        self.closing = True
        with trio.move_on_after(timeout):
            while not self.idle:
                await trio.sleep(0.02)
        return self.idle

    @property
    def idle(self) -> bool:
        """No request being checked, running or waiting for a run slot."""
        return self.admission.idle and self._calls == 0

    def close(self) -> None:
        """Release every peer's files (call once no run is in flight). Idempotent."""
        with self._handlers_lock:
            handlers, self._handlers = list(self._handlers.values()), {}
        for handler in handlers:
            handler.close()
        with self._handlers_lock:
            audits, self._audits = list(self._audits.values()), {}
        for log in audits:
            log.close()
        self.contexts.close()
        pool, self.pool = getattr(self, "pool", None), None
        if pool is not None:
            pool.close()

    # -- exec ------------------------------------------------------------------------------

    def handler(self, name: str) -> ExecHandler:
        """Peer ``name``'s handler, opened on first use (thread-safe). Raises what opening raises."""
        handler = self._handlers.get(name)
        if handler is not None:
            return handler
        with self._handlers_lock:
            handler = self._handlers.get(name)
            if handler is None:
                handler = self._open_handler(name)
                self._handlers[name] = handler
            return handler

    def _open_handler(self, name: str) -> ExecHandler:
        """Peer ``name``'s handler: its own SQLite nonces and local revocation lists, or the shared
        ones when the worker has :attr:`state`."""
        ctx, store = self.contexts.get(name), self.contexts.store
        if self.state is None:
            return ExecHandler(ctx, store, clock=self.clock)
        local = LocalRevocations(ctx.peer.paths.dir, store.index)
        nonces, revocations = self.state.stores_for(ctx.peer, local)
        return ExecHandler(ctx, store, clock=self.clock, nonces=nonces, revocations=revocations,
                           rates=self.state.rates_for(ctx.peer))

    def health(self) -> dict[str, object]:
        return {**super().health(), "in_flight": self.admission.running,
                "queued": self.admission.queued, "checking": self._checking}

    def hosts(self, target: bytes) -> bool:
        return target in self.targets

    async def readiness(self) -> Readiness:
        """Ready when not draining and every hosted peer's handler (its key, policy and nonce
        database) opens: the first probe opens those not opened yet, on a thread; one that fails
        is tried again at the next probe."""
        ready = await super().readiness()
        for name, _ in self.peers:
            if name in self._handlers:
                continue
            try:
                await trio.to_thread.run_sync(self.handler, name)
            except Error as exc:
                ready.waiting[name] = f"cannot be served: {exc}"
        return ready

    async def peer_status(self) -> list[dict[str, object]]:
        """Each hosted peer with its runs in flight and waiting for a slot."""
        with self._lock:
            running = dict(self.admission.running_by_peer)
            queued = collections.Counter(t.peer for t in self.admission.waiting())
        return [{"name": n, "did": d, "in_flight": running.get(n, 0), "queued": queued.get(n, 0)}
                for n, d in self.peers]

    async def status(self) -> dict[str, object]:
        return {**await super().status(), "checking": self._checking}

    async def exec(self, req: HttpRequest, target: bytes, caller: bytes, path: str) -> HttpResponse:
        """Answer a request from its body (:meth:`exec_body`: the worker's own endpoints open the
        envelope on the thread that runs it, so ``target`` and ``caller`` are not needed). Never raises."""
        return await self.exec_body(req, path)

    async def exec_body(self, req: HttpRequest, path: str) -> HttpResponse:
        """Open, check, admit, run and answer a request in one hand-off to a pool thread (see the
        module docstring). Never raises for any input (see :meth:`exec_opened`)."""
        return await self._hand_off(_Call(bytes(req.body), path, None, trio.lowlevel.current_trio_token()))

    async def exec_opened(self, req: HttpRequest, envelope: Envelope, path: str) -> HttpResponse:
        """Check, admit, run and answer a request whose envelope is already opened (decoded, its
        signature verified; its target hosted here) in one hand-off to a pool thread.

        Never raises for any input: an envelope that does not open is its
        4xx (``preauth_failure``), a target not hosted 404; a request that
        cannot be admitted is a 503 ``busy`` (before its check when it can
        tell: the envelope may then be sent again); a :class:`~peerbox.Error`
        opening the peer's files is a 503 ``unavailable``; only a bug in
        peerbox is a 500.
        """
        return await self._hand_off(_Call(b"", path, envelope, trio.lowlevel.current_trio_token()))

    async def _hand_off(self, call: _Call) -> HttpResponse:
        pool = self.pool
        if pool is None:
            return self._busy("the worker is closed")
        self._calls += 1
        pool.submit(functools.partial(self._serve, call))
        try:
            await call.done.wait()
        except BaseException:
            self._abandon(call)
            raise
        note = current_note()
        if note is not None:  # what the access line says about it
            note.envelope, note.handled, note.unhandled = call.envelope, call.handled, call.unhandled
            note.caller_did, note.caller_name = call.caller_did, call.caller_name
            note.target = call.name or None
            note.rule = access_rule(call.admitted)
            if call.refused is not None:
                note.kind = call.refused.kind
        assert call.response is not None
        return call.response

    # -- on the pool threads ---------------------------------------------------------------

    def _serve(self, call: _Call) -> None:
        """Open ``call``'s envelope if need be, check it, admit it, run it if a slot is free (else park
        it: the thread that frees a slot runs it); answer the loop."""
        try:
            env = call.envelope
            if env is None:
                try:
                    env = call.envelope = open_envelope(call.body, call.path)
                except EnvelopeError as exc:
                    call.refused = exc
                    return self._answer(call)
            name = self.targets.get(env.target)
            if name is None:
                call.not_hosted = True
                return self._answer(call)
            call.name = name
            with self._lock:
                admissible = self.admission.can_admit(name, env.caller, owner=env.caller == env.target)
                if admissible:
                    self._checking += 1
            if not admissible:  # answered before the check: the envelope may be sent again
                call.unhandled, call.message = "busy", "too many runs in flight; retry later"
                return self._answer(call)
            start = time.perf_counter()
            try:
                handler = call.handler = self.handler(name)
            except Error as exc:  # the peer's key, policy or nonce database cannot be opened
                with self._lock:
                    self._checking -= 1
                call.unhandled, call.message = "unavailable", f"peer {name} cannot be served: {exc}"
                return self._answer(call)
            checked = handler.check_envelope(env)  # by its type: exec, logic, call, revoke
            call.seconds = time.perf_counter() - start
            if self.audit is not None or ACCESS_LOG.isEnabledFor(logging.INFO):
                self._name_caller(call, handler, env)
            with self._lock:
                self._checking -= 1
                if isinstance(checked, Handled):  # refused, denied, rate limited, answered
                    # (a logic read, a revocation, a call's bad arguments): no slot
                    call.handled = checked
                    ticket = None
                    self._audit(call)
                elif call.abandoned:  # nobody waits for the answer any more: no slot for it
                    ticket = None
                else:
                    ticket = self.admission.admit(name, checked.caller, owner=checked.owner)
                    if ticket is None:
                        call.unhandled = "busy"
                        call.message = ("too many runs in flight; retry later with a fresh envelope (this "
                                        "one was checked and its nonce used)")
                    else:
                        call.ticket, call.admitted = ticket, checked
                        if not ticket.started:
                            self._parked[ticket] = call
                            return None  # the thread that frees a slot for it runs it
            if ticket is None:
                if self.state is not None and call.handled is not None:
                    self._share_answer(call, self.state, env)
                return self._answer(call)
        except BaseException as exc:  # a bug: answer 500, never lose the request
            call.unhandled, call.exc = "internal_error", exc
            return self._answer(call)
        self._run_from(call)
        return None

    def _run_from(self, call: _Call | None) -> None:
        """Run ``call`` (it holds a slot), free its slot, answer it; then run a parked request the
        freed slot started, on this same thread (others it started go to other pool threads)."""
        while call is not None:
            assert call.handler is not None and call.admitted is not None and call.ticket is not None
            start = time.perf_counter()
            try:
                call.handled = call.handler.run(call.admitted)
            except BaseException as exc:  # a bug (run answers every peerbox.Error with a signed reply)
                call.unhandled, call.exc = "internal_error", exc
            call.seconds += time.perf_counter() - start
            self._audit(call)
            if self.state is not None and isinstance(call.admitted, LogicAdmitted):  # before the answer
                self.state.logic_changed(call.handler.ctx.peer, call.admitted.req.module,
                                         call.admitted.req.statement)
            if self.state is not None and call.handled is not None and call.envelope is not None:
                self._share_answer(call, self.state, call.envelope)
            with self._lock:
                started = [self._parked.pop(t) for t in self.admission.release(call.ticket)]
            self._answer(call)
            pool = self.pool
            if pool is not None:
                for other in started[1:]:
                    pool.submit(functools.partial(self._run_from, other))
            call = started[0] if started else None

    def _share_answer(self, call: _Call, state: WorkerState, env: Envelope) -> None:
        """With shared state: a ``replay`` whose first answer is in the reply cache gets that answer
        (``call.cached``); any other signed answer is kept there before it leaves. Never raises."""
        assert call.handled is not None
        call.cached = state.replayed(env, call.handled)
        if call.cached is None:
            state.remember(env, call.handled, now=int(self.clock()), for_router=self.for_router)

    def _name_caller(self, call: _Call, handler: ExecHandler, env: Envelope) -> None:
        """Note the caller's did and name (for the access and audit logs); a names file that cannot be
        read leaves the name unknown."""
        try:
            call.caller_did = did = handler.did_of(env.caller)
            call.caller_name = handler.name_of(did)
        except Error:
            call.caller_name = None

    def _audit(self, call: _Call) -> None:
        """Append the decision about ``call`` to its peer's audit log (on the pool thread); a log that
        cannot be written is reported on the ``peerbox.audit`` logger, never fails the request."""
        rotation, handled, env = self.audit, call.handled, call.envelope
        if rotation is None or handled is None or env is None or call.caller_did is None:
            return
        record = audit_record(env, handled, caller_did=call.caller_did, caller_name=call.caller_name,
                              rule=access_rule(call.admitted), now=time.time())
        if record is None:
            return
        log = self._audits.get(call.name)
        if log is None:
            with self._handlers_lock:
                log = self._audits.get(call.name)
                if log is None:
                    peer = (call.handler.ctx.peer if call.handler is not None
                            else self.contexts.store.get(call.name))
                    log = self._audits[call.name] = AuditLog.of(peer, rotation)
        try:
            log.append(record)
        except AuditError as exc:
            AUDIT_LOG.error("peer %s: %s", call.name, exc)

    def _answer(self, call: _Call) -> None:
        """Hand ``call`` back to the event loop (a no-op once the trio run has ended).

        Answers are batched: the first answer put in an empty batch asks the
        loop to deliver the batch (``run_sync_soon``: a lock and a write to
        trio's wake-up socket); answers finished before the loop gets to it
        join that batch at the cost of an append. An answer for another trio
        run than the batch's (a worker reused across runs) goes on its own.
        """
        token = call.token
        first = False
        with self._done_lock:
            done: collections.deque[_Call] | None = self._done
            if done and self._done_token is not token:
                done = None
            else:
                first = not self._done
                self._done.append(call)
                self._done_token = token
        try:
            if done is None:
                token.run_sync_soon(self._delivered, call)
            elif first:
                token.run_sync_soon(self._deliver_batch)
        except trio.RunFinishedError:  # nobody waits any more: forget the batch
            with self._done_lock:
                if self._done_token is token:
                    self._done.clear()

    # -- back on the loop ------------------------------------------------------------------

    def _deliver_batch(self) -> None:
        """Deliver every answer handed back since the batch was scheduled (see :meth:`_answer`)."""
        with self._done_lock:
            calls = list(self._done)
            self._done.clear()
        for call in calls:
            self._delivered(call)

    def _delivered(self, call: _Call) -> None:
        """Count ``call``'s answer and make its HTTP response (whether or not a task still waits for
        it: a run whose stream was reset is counted too), then wake its task."""
        self._calls -= 1
        call.response = self._respond(call)
        call.done.set()

    def _respond(self, call: _Call) -> HttpResponse:
        """Count and answer what happened to ``call`` (on the loop: the metrics live there)."""
        if call.cached is not None:  # a retry of a request answered before: its answer again
            return call.cached
        handled = call.handled
        if handled is not None:
            if handled.kind == "unavailable":  # the peer's storage or nonce database failed
                WORKER_LOG.error("peer %s: storage unavailable: %s", call.name,
                                 (handled.error or {}).get("message", ""))
            if call.ticket is not None:
                self.metrics.answered(handled, call.seconds)  # the run's fuel too
            else:
                self._account(handled, call.seconds)
            return answer_response(handled, for_router=self.for_router)
        if call.refused is not None:
            return self.refused_envelope(call.refused)
        if call.not_hosted:
            assert call.envelope is not None
            return self.not_hosted(call.envelope.target)
        if call.unhandled == "unavailable":
            WORKER_LOG.error("%s", call.message)
            self.metrics.unhandled("unavailable")
            return error_response(503, "unavailable", call.message, RETRY_LATER)
        if call.unhandled == "busy":
            return self._busy(call.message)
        if call.unhandled is None:  # abandoned before it was admitted: nobody reads this
            return self._busy("the request was abandoned")
        self.metrics.unhandled("internal_error")
        WORKER_LOG.error("internal error (a bug in peerbox): %r", call.exc, exc_info=call.exc)
        return error_response(500, "internal", "the worker failed to handle the request")

    def _abandon(self, call: _Call) -> None:
        """The task waiting for ``call`` is cancelled: a parked request leaves the queue at once (it is
        not counted: nothing answered it); one being checked is not admitted; a run goes on (its slot
        is freed, and its answer counted, when its thread returns)."""
        with self._lock:
            call.abandoned = True
            ticket = call.ticket
            parked = ticket is not None and not ticket.started
            if parked:
                assert ticket is not None
                del self._parked[ticket]
                self.admission.release(ticket)  # a waiting ticket held no slot: it starts nobody
        if parked:
            self._calls -= 1

    def _account(self, handled: Handled, seconds: float) -> None:
        """Count an answer given without a run (refused, denied, rate limited, a logic read, a
        revocation) and its check time."""
        self.metrics.record(handled)
        self.metrics.seconds.observe(seconds)

    def _busy(self, message: str) -> HttpResponse:
        self.metrics.unhandled("busy")
        return error_response(503, "busy", message, RETRY_LATER)

