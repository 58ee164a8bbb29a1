"""The threads that run guest code: a pool with a large native stack, awaited from trio.

Why a :class:`RunPool` and not ``trio.to_thread.run_sync``: wasm runs on the
calling thread's native stack and Python's compiler recurses, so the threads
that run scripts need a large stack (64 MiB, virtual, committed on use).
Trio's thread cache creates its threads with whatever
``threading.stack_size()`` is in force at that moment, process-wide, and reuses
threads that may have been created earlier with the default, so it cannot
guarantee the size. The pool starts its own threads with the stack size set
just for their creation, and wakes the waiting task with
``TrioToken.run_sync_soon`` (what ``trio.to_thread`` does internally).

**As few threads awake as the work needs (``lazy``, off by default).** The jobs of a worker are mostly
Python (opening, checking, signing a request) and Python runs one thread at
a time (the GIL): every extra thread awake at once adds GIL hand-offs, each a
futex wake and a context switch, and measured under load five threads sharing
the work cost the process ~40% more CPU per call than one. So a job queued
while a thread is running jobs is not given a thread of its own: the running
thread takes it when it ends its current job (jobs start in order of arrival).
A thread is woken for a job only when no thread is running one, or when the
queue *stalls*: one parked thread (the *watch*) checks every ``stall``
seconds while jobs wait, and if no job started meanwhile (every running
thread is in a long script or a slow write) it takes the next job itself.
A thread that ends a job while another thread started one less than
``stall`` ago goes back to sleep (one thread drains the queue), so after a
burst of long scripts the pool returns to one running thread. A job thus
waits at most about ``stall`` seconds for a free thread behind long runs,
and never for a thread while one is idle and none is running. Measured in
the benchmark's loaded 2-core VM this cut context switches per delegated
call from ~20 to ~8 but not the CPU per call, and under an open loop next to
other busy processes a queue left to one descheduled thread answered later
(p50 10-100 ms vs 5-40 ms), so the worker keeps the default: every job
queued wakes a parked thread, if one is parked.

**One CPU for the short work (``cpu``).** Measured in the Firecracker VM of
the benchmark, a wake-up of a thread on another CPU (the loop handing a
request to a pool thread and back, the GIL passing between them) costs far
more than the same wake-up on the waker's CPU: a worker whose threads were
all bound to one CPU spent 0.6-0.7x the CPU per delegated call of the same
worker left to float (and a worker doing everything on its loop thread, no
hand-off at all, about as little). With ``cpu`` given, the pool's threads
and the thread that creates the pool (the worker's event loop) are bound to
that CPU (an index into the CPUs the process may use, modulo their number),
so one worker process of ``serve --workers N`` keeps to one core, as nginx's
``worker_cpu_affinity auto`` does. With ``lazy``, a script is not confined to it: the watch
lets a thread whose job has run longer than ``stall`` onto every allowed CPU
(a long run then uses a free core rather than the loop's), and the thread
comes back to its CPU when the job ends. Binding is best effort: where the
system refuses it, the threads float as without ``cpu``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import TypeVar

import outcome
import trio

__all__ = ["RunPool", "RUN_STACK_SIZE", "STALL"]

T = TypeVar("T")

#: Native stack of the threads that run guest code.
RUN_STACK_SIZE = 64 << 20
#: Seconds without a job started, while jobs wait, after which a parked thread takes one.
STALL = 0.01
_stack_lock = threading.Lock()


class RunPool:
    """``threads`` daemon threads with a ``stack_size`` native stack, awaited from trio.

    Jobs start first come, first served, on as few threads as keep the queue
    moving (see the module docstring; ``stall`` is how long a waiting job may
    see no job start before a parked thread takes it, with ``lazy``; ``cpu`` binds the
    threads, and the calling thread, to one CPU: see the module docstring).
    Raises :class:`ValueError` for fewer than one thread or a ``stall`` not
    above 0.
    """

    def __init__(self, threads: int, *, stack_size: int = RUN_STACK_SIZE, stall: float = STALL,
                 cpu: int | None = None, lazy: bool = False) -> None:
        if threads < 1:
            raise ValueError("a RunPool needs at least one thread")
        if not stall > 0:
            raise ValueError("a RunPool's stall must be above 0 seconds")
        self.stall = stall
        self.lazy = lazy
        self._lock = threading.Lock()
        self._jobs: deque[Callable[[], None]] = deque()
        self._parked: list[threading.Lock] = []  # latches of parked threads (the last parked first)
        self._running: dict[int, float] = {}  # thread ident -> when its current job started
        self._native: dict[int, int] = {}  # thread ident -> its native id (to rebind it)
        self._freed: set[int] = set()  # running threads the watch let onto every CPU
        self._anywhere, self._home = _cpus(cpu)
        self._started = 0  # jobs started so far: the watch's measure of progress
        self._watching = False  # a parked thread watches the queue for a stall
        self._closed = False
        self._threads: list[threading.Thread] = []
        if self._home is not None:
            _bind(0, self._home)  # the caller: the worker's event loop
        with _stack_lock:
            old = threading.stack_size(stack_size)
            try:
                for i in range(threads):
                    t = threading.Thread(target=self._loop, name=f"peerbox-run-{i}", daemon=True)
                    t.start()
                    self._threads.append(t)
            finally:
                threading.stack_size(old)

    @property
    def running(self) -> int:
        """Threads running a job now."""
        return len(self._running)

    @property
    def queued(self) -> int:
        """Jobs waiting for a thread."""
        return len(self._jobs)

    def _loop(self) -> None:
        latch = threading.Lock()
        latch.acquire()
        me = threading.get_ident()
        home = self._home
        if home is not None:
            _bind(0, home)
        lock = self._lock
        running = self._running
        lock.acquire()
        self._native[me] = threading.get_native_id()
        drain = False  # this thread just ended a job: it takes the next one unless another drains
        while True:
            jobs = self._jobs
            if self._closed and not jobs:
                lock.release()
                return
            if jobs and (drain or not running or self._closed or not self.lazy):
                job = jobs.popleft()
                running[me] = time.monotonic()
                self._started += 1
                lock.release()
                try:
                    job()
                except BaseException:  # noqa: BLE001 - a job must report its own errors; keep the thread
                    traceback.print_exc()
                lock.acquire()
                del running[me]
                if me in self._freed:  # the watch let it go: back to the home CPU
                    self._freed.discard(me)
                    assert home is not None
                    _bind(0, home)
                # another thread that started a job within ``stall`` is draining the queue: leave it to it
                fresh = time.monotonic() - self.stall
                drain = not self.lazy or not any(at > fresh for at in running.values())
                continue
            drain = False
            if jobs and not self._watching:  # every running thread is busy: watch for a stall
                self._watching = True
                mark = self._started
                lock.release()
                time.sleep(self.stall)
                lock.acquire()
                self._watching = False
                drain = self._started == mark  # no job started meanwhile: take one
                if home is not None:
                    self._free_long_runs()
                continue
            self._parked.append(latch)
            lock.release()
            latch.acquire()  # released by submit or close
            lock.acquire()

    def _free_long_runs(self) -> None:
        """Let every thread whose job has run longer than ``stall`` onto every allowed CPU (the lock held)."""
        late = time.monotonic() - self.stall
        for ident, at in self._running.items():
            if at <= late and ident not in self._freed:
                self._freed.add(ident)
                _bind(self._native[ident], self._anywhere)

    def submit(self, fn: Callable[[], None]) -> None:
        """Queue ``fn`` to run on a pool thread (first come, first served); callable from any thread.

        ``fn`` reports its own result (e.g. with ``TrioToken.run_sync_soon``)
        and must not raise: an exception is printed by the thread and lost,
        and the thread goes on with the next job. A job queued after
        :meth:`close` never runs.
        """
        with self._lock:
            if self._closed:
                return
            self._jobs.append(fn)
            # nobody running takes it, or nobody watches the queue yet: wake a parked thread
            if self._parked and (not self.lazy or not self._running or not self._watching):
                self._parked.pop().release()

    async def run(self, fn: Callable[[], T],
                  on_done: Callable[[outcome.Outcome[T]], None] | None = None) -> T:
        """Run ``fn`` on a pool thread and return its result (or raise its exception).

        ``on_done(result)`` is called on the trio thread when ``fn`` returns,
        even if the awaiting task was cancelled meanwhile (the thread cannot
        be stopped; the bookkeeping must follow the thread, not the task).
        """
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        box: list[outcome.Outcome[T]] = []

        def deliver(res: outcome.Outcome[T]) -> None:
            box.append(res)
            done.set()
            if on_done is not None:
                on_done(res)

        def job() -> None:
            res = outcome.capture(fn)
            # The trio run ended while fn ran (the process is stopping): nobody waits for the result.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(deliver, res)

        self.submit(job)
        await done.wait()
        return box[0].unwrap()

    def close(self) -> None:
        """Let the threads exit once the jobs queued so far have run."""
        with self._lock:
            self._closed = True
            for latch in self._parked:
                latch.release()
            self._parked.clear()


def _cpus(cpu: int | None) -> tuple[frozenset[int], frozenset[int] | None]:
    """The CPUs this process may use, and the one CPU of index ``cpu`` among them (None: no binding)."""
    try:
        allowed = frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux: no binding
        return frozenset(), None
    if cpu is None or len(allowed) < 2:
        return allowed, None
    return allowed, frozenset({sorted(allowed)[cpu % len(allowed)]})


def _bind(thread: int, cpus: frozenset[int]) -> None:
    """Bind a thread (a native id, 0: the caller) to ``cpus``; best effort (a refusal leaves it as it was)."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(thread, cpus)
