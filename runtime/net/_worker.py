"""The worker: hosted peers behind HTTP/2 (the app of :mod:`peerbox.net._h2server`), shared or isolated.

:class:`Worker` is the HTTP application of one process hosting one or many
peers (shared mode). ``POST /v1/exec`` takes a request envelope
(``content-type: application/cose``; ``POST /v1/logic`` takes a logic update,
:mod:`peerbox.trust._logic_push`, the same way), checks the signature over the raw
bytes first and only then decodes strictly (:mod:`peerbox.net._preauth`: on the
event loop for bodies up to 4 KiB, on 2 threads beyond), so a forged
``caller`` can never use up someone else's quota and forgeries cost no
decoding, routes by the envelope's
``target`` to the hosted peer's :class:`~peerbox.trust._exec.ExecHandler`, and runs
it on a worker thread. HTTP status follows the outcome (see
:func:`~peerbox.net._endpoints.status_for`; the endpoints the worker shares
with isolated mode's router are :class:`~peerbox.net._endpoints.Endpoints`,
its metrics :mod:`peerbox.net._metrics`, serving :mod:`peerbox.net._serving`).

A request then goes through the two phases of its handler. The first,
:meth:`~peerbox.trust._exec.ExecHandler.check` (freshness, the nonce, capabilities,
the policy's ``exec`` decision), runs on one of ``check_threads`` trio worker
threads (a ``CapacityLimiter`` separate from the run slots: it writes the
nonce database, so not on the event loop, and it must not wait behind
scripts). Only a request it admits takes a run slot, so a replay or a key the
peer's policy does not know is answered (409, 403) without ever holding one.
The second, :meth:`~peerbox.trust._exec.ExecHandler.run` (compile, run, sign),
runs in a slot, on a :class:`RunPool` thread.

Run slots (:mod:`peerbox.net._admission`), independent of HTTP/2 stream
accounting (a reset stream does not stop its run; the run's own limits do,
and its slot is freed only when its thread returns):

* ``max_runs`` runs execute at once (default the number of CPUs), plus
  ``owner_reserve`` (default 1) slots only a peer's owner (a request signed
  by the peer's own key) may take, so the owner is never locked out by callers;
* ``per_peer`` of them at most for one hosted peer, so a peer flooded with
  endless loops cannot stall the others (default ``max_runs - 1`` when several
  peers are hosted);
* a freed slot goes to the waiting caller with the fewest runs (max-min fair);
* ``per_caller`` requests admitted (running or waiting) at most for one caller,
  ``per_caller_queue`` of them waiting (default a quarter of the queue);
* ``queue`` requests wait at most; beyond, ``503`` with ``retry-after``. Memory
  stays bounded: nothing waits outside these counters. A request that would be
  turned away is answered 503 before its check, so its envelope can be sent
  again; one turned away after it (the queue filled meanwhile: rare) has used
  its nonce, and must be sent again as a fresh envelope.

Runs use a :class:`~peerbox.net._runpool.RunPool` (threads with a large native
stack, which ``trio.to_thread`` cannot guarantee: see :mod:`peerbox.net._runpool`).

Isolated mode (:func:`run_isolated`): one child ``peerbox serve`` per peer,
each on its own loopback port, supervised (restarted with backoff), behind a
router (:class:`Router`) that applies the same pre-checks and forwards each
request over HTTP/2, so a client sees the same statuses and bytes.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable

import outcome
import trio

from .._errors import Error
from ..peer import Contexts
from ..trust import Admitted, ExecHandler, Handled, LogicAdmitted
from ._admission import Admission, Ticket
from ._endpoints import RETRY_LATER, Endpoints, answer_response, error_response
from ._h2server import HttpRequest, HttpResponse
from ._runpool import RUN_STACK_SIZE, RunPool

__all__ = ["Worker"]


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
    ``max(2, max_runs)``) bounds the requests being checked at once.
    ``for_router``: this worker is an isolated-mode child answering its
    router, and names each denied action in a header
    (:data:`~peerbox.net._endpoints.DENIED_ACTION`) for the router's metrics.
    """

    def __init__(self, root: str | os.PathLike[str] | None, peers: list[str] | None = None, *,
                 max_runs: int | None = None, per_peer: int | None = None, per_caller: int | None = None,
                 queue: int | None = None, per_caller_queue: int | None = None, owner_reserve: int = 1,
                 check_threads: int | None = None, clock: Callable[[], float] = time.time,
                 stack_size: int = RUN_STACK_SIZE, for_router: bool = False) -> None:
        super().__init__([])
        self.for_router = for_router
        self.contexts = Contexts(root)
        store = self.contexts.store
        chosen = [store.get(n) for n in peers] if peers is not None else store.list()
        names = [p.name for p in chosen]
        #: target public key -> peer name; a peer's ExecHandler (key, policy, nonce database)
        #: is opened on its first request, so idle hosted peers cost little memory.
        self.targets: dict[bytes, str] = {p.public_key: p.name for p in chosen}
        self.peers.extend((p.name, p.did) for p in chosen)
        self.clock = clock
        self._handlers: dict[str, ExecHandler] = {}
        self._handlers_lock = threading.Lock()
        runs = max(1, max_runs if max_runs is not None else (os.cpu_count() or 1))
        waiting = max(0, queue if queue is not None else 16 * runs)
        reserve = max(0, owner_reserve)
        self.admission = Admission(
            max_runs=runs,
            per_peer=per_peer if per_peer is not None else (runs if len(names) <= 1 else max(1, runs - 1)),
            per_caller=per_caller if per_caller is not None else max(1, (runs + waiting) // 2),
            queue=waiting,
            per_caller_queue=per_caller_queue,
            owner_reserve=reserve,
        )
        #: the threads that check requests (the first phase), apart from the run slots
        self.check_limiter = trio.CapacityLimiter(max(1, check_threads if check_threads is not None
                                                      else max(2, runs)))
        self._checking = 0
        self._wakers: dict[Ticket, trio.Event] = {}
        self.pool: RunPool | None = RunPool(runs + reserve, stack_size=stack_size)

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
        return self.admission.idle and self._checking == 0

    def close(self) -> None:
        """Release every peer's files (call once no run is in flight). Idempotent."""
        with self._handlers_lock:
            handlers, self._handlers = list(self._handlers.values()), {}
        for handler in handlers:
            handler.close()
        self.contexts.close()
        pool, self.pool = getattr(self, "pool", None), None
        if pool is not None:
            pool.close()

    # -- exec ------------------------------------------------------------------------------

    def handler(self, name: str) -> ExecHandler:
        """Peer ``name``'s handler, opened on first use (thread-safe). Raises what opening raises."""
        with self._handlers_lock:
            handler = self._handlers.get(name)
            if handler is None:
                handler = ExecHandler(self.contexts.get(name), self.contexts.store, clock=self.clock)
                self._handlers[name] = handler
            return handler

    def health(self) -> dict[str, object]:
        return {**super().health(), "in_flight": self.admission.running,
                "queued": self.admission.queued, "checking": self._checking}

    def hosts(self, target: bytes) -> bool:
        return target in self.targets

    async def exec(self, req: HttpRequest, target: bytes, caller: bytes, path: str) -> HttpResponse:
        """Check the request on a check thread, admit it to a run slot (or 503), run it on a pool
        thread, map the outcome to HTTP (see the module docstring).

        Never raises for any input: a :class:`~peerbox.Error` opening the
        peer's files is a 503 ``unavailable``; only a bug in peerbox is a 500.
        """
        name = self.targets[target]
        if self.pool is None or not self.admission.can_admit(name, caller, owner=caller == target):
            return self._busy("too many runs in flight; retry later")
        body = bytes(req.body)
        self._checking += 1
        try:
            checked, check_seconds = await trio.to_thread.run_sync(
                functools.partial(self._check, name, path, body), limiter=self.check_limiter)
        except Error as exc:  # the peer's key, policy or nonce database cannot be opened
            self.metrics.unhandled("unavailable")
            return error_response(503, "unavailable", f"peer {name} cannot be served: {exc}", RETRY_LATER)
        except Exception as exc:  # a bug: never crash the server
            return self._internal(exc)
        finally:
            self._checking -= 1
        if isinstance(checked, Handled):  # refused, denied, or answered (a logic read): no slot taken
            self._account(checked, check_seconds)
            return answer_response(checked, for_router=self.for_router)
        return await self._run(name, checked, check_seconds)

    def _check(self, name: str, path: str, body: bytes) -> tuple[Admitted | LogicAdmitted | Handled, float]:
        """The first phase (on a check thread): the handler's verdict and the seconds it took."""
        start = time.perf_counter()
        handler = self.handler(name)
        checked = handler.check(body) if path == "/v1/exec" else handler.check_logic(body)
        return checked, time.perf_counter() - start

    async def _run(self, name: str, admitted: Admitted | LogicAdmitted, check_seconds: float) -> HttpResponse:
        """Admit a checked request to a run slot, wait for it, run it on a pool thread."""
        pool = self.pool
        ticket = None if pool is None else self.admission.admit(name, admitted.caller, owner=admitted.owner)
        if ticket is None or pool is None:
            return self._busy("too many runs in flight; retry later with a fresh envelope (this one was "
                              "checked and its nonce used)")
        self._gauges()
        if not ticket.started:
            waker = self._wakers[ticket] = trio.Event()
            try:
                await waker.wait()
            except BaseException:
                self._wakers.pop(ticket, None)
                self._release(ticket)
                raise
        self._gauges()
        handler = self.handler(name)

        def job() -> tuple[Handled, float]:
            start = time.perf_counter()
            handled = handler.run(admitted)
            return handled, check_seconds + time.perf_counter() - start

        def done(res: outcome.Outcome[tuple[Handled, float]]) -> None:
            self._release(ticket)
            if isinstance(res, outcome.Value):
                self.metrics.answered(*res.value)  # the run's fuel too
            else:
                self.metrics.unhandled("internal_error")

        try:
            handled, _ = await pool.run(job, done)
        except Exception as exc:  # a bug (run answers every peerbox.Error with a signed reply)
            print(f"peerbox worker: internal error: {exc!r}", file=sys.stderr)
            return error_response(500, "internal", "the worker failed to handle the request")
        return answer_response(handled, for_router=self.for_router)

    def _release(self, ticket: Ticket) -> None:
        """Free ``ticket``'s slot (or its place in the queue) and wake the tickets that start."""
        for started in self.admission.release(ticket):
            waker = self._wakers.pop(started, None)
            if waker is not None:
                waker.set()
        self._gauges()

    def _account(self, handled: Handled, seconds: float) -> None:
        """Count an answer given without a run (refused, denied, a logic read) and its check time."""
        self.metrics.record(handled)
        self.metrics.seconds.observe(seconds)

    def _busy(self, message: str) -> HttpResponse:
        self.metrics.unhandled("busy")
        return error_response(503, "busy", message, RETRY_LATER)

    def _internal(self, exc: BaseException) -> HttpResponse:
        self.metrics.unhandled("internal_error")
        print(f"peerbox worker: internal error: {exc!r}", file=sys.stderr)
        return error_response(500, "internal", "the worker failed to handle the request")

    def _gauges(self) -> None:
        self.metrics.in_flight = self.admission.running
        self.metrics.queued = self.admission.queued
