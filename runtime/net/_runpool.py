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
"""

from __future__ import annotations

import contextlib
import queue as _queue
import threading
import traceback
from collections.abc import Callable
from typing import TypeVar

import outcome
import trio

__all__ = ["RunPool", "RUN_STACK_SIZE"]

T = TypeVar("T")

#: Native stack of the threads that run guest code.
RUN_STACK_SIZE = 64 << 20
_stack_lock = threading.Lock()


class RunPool:
    """``threads`` daemon threads with a ``stack_size`` native stack, awaited from trio."""

    def __init__(self, threads: int, *, stack_size: int = RUN_STACK_SIZE) -> None:
        if threads < 1:
            raise ValueError("a RunPool needs at least one thread")
        self._jobs: _queue.SimpleQueue[Callable[[], None] | None] = _queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        with _stack_lock:
            old = threading.stack_size(stack_size)
            try:
                for i in range(threads):
                    t = threading.Thread(target=self._loop, name=f"peerbox-run-{i}", daemon=True)
                    t.start()
                    self._threads.append(t)
            finally:
                threading.stack_size(old)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except BaseException:  # noqa: BLE001 - a job must report its own errors; keep the thread
                traceback.print_exc()

    def submit(self, fn: Callable[[], None]) -> None:
        """Queue ``fn`` to run on a pool thread (first come, first served); callable from any thread.

        ``fn`` reports its own result (e.g. with ``TrioToken.run_sync_soon``)
        and must not raise: an exception is printed by the thread and lost,
        and the thread goes on with the next job.
        """
        self._jobs.put(fn)

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

        self._jobs.put(job)
        await done.wait()
        return box[0].unwrap()

    def close(self) -> None:
        """Let the threads exit once their current job is done."""
        for _ in self._threads:
            self._jobs.put(None)
