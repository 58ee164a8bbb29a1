"""The run pool: jobs in order on as few threads as keep the queue moving, a stalled queue gets a
thread, one CPU for the short work, and closing runs what was queued."""

from __future__ import annotations

import os
import threading
import time

import pytest
import trio

from peerbox.net._runpool import RunPool

STACK = 1 << 20  # small stacks: these jobs run no guest code


def _wait(cond: threading.Event, what: str, timeout: float = 10.0) -> None:
    assert cond.wait(timeout), f"timed out waiting for {what}"


def test_lazy_short_jobs_run_in_order_on_one_thread() -> None:
    """Lazy: jobs queued while one runs are taken by the running thread, first come first served: a burst
    of short jobs wakes no other thread (each awake thread would cost GIL hand-offs)."""
    pool = RunPool(4, stack_size=STACK, lazy=True)
    try:
        gate = threading.Event()
        done = threading.Event()
        seen: list[tuple[int, str]] = []

        def first() -> None:
            gate.wait(5)
            seen.append((0, threading.current_thread().name))

        def job(i: int) -> None:
            seen.append((i, threading.current_thread().name))
            if i == 50:
                done.set()

        pool.submit(first)
        for i in range(1, 51):
            pool.submit(lambda i=i: job(i))  # type: ignore[misc]
        gate.set()  # the first job ends well within the stall time: its thread drains the queue
        _wait(done, "the jobs")
        assert [i for i, _ in seen] == list(range(51))
        assert len({name for _, name in seen}) == 1
    finally:
        pool.close()


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_a_job_behind_a_long_one_gets_a_thread(lazy: bool) -> None:
    """A job queued behind a job that does not end (a long script) starts on another thread (lazy: within
    about the stall time), and the long job goes on."""
    pool = RunPool(3, stack_size=STACK, stall=0.01, lazy=lazy)
    release = threading.Event()
    try:
        started = threading.Event()
        quick = threading.Event()
        def long_job() -> None:
            started.set()
            release.wait(10)

        pool.submit(long_job)
        _wait(started, "the long job")
        t0 = time.monotonic()
        pool.submit(quick.set)
        _wait(quick, "the job behind the long one", timeout=5)
        assert time.monotonic() - t0 < 2.0  # generous: the stall time is 10 ms
        assert pool.running == 1  # the long job still runs
    finally:
        release.set()
        pool.close()


def test_jobs_queued_before_close_still_run_and_later_ones_never() -> None:
    pool = RunPool(2, stack_size=STACK)
    gate = threading.Event()
    ran: list[int] = []
    def first() -> None:
        gate.wait(5)
        ran.append(0)

    pool.submit(first)
    pool.submit(lambda: ran.append(1))
    pool.close()
    pool.submit(lambda: ran.append(2))
    gate.set()
    for t in pool._threads:
        t.join(10)
        assert not t.is_alive()
    assert ran == [0, 1]


def test_an_exception_in_a_job_keeps_the_thread(capsys: pytest.CaptureFixture[str]) -> None:
    pool = RunPool(1, stack_size=STACK)
    try:
        done = threading.Event()

        def boom() -> None:
            raise RuntimeError("job failed")

        pool.submit(boom)
        pool.submit(done.set)
        _wait(done, "the job after the failed one")
        assert "job failed" in capsys.readouterr().err
    finally:
        pool.close()


def test_run_returns_the_result_on_the_loop() -> None:
    pool = RunPool(2, stack_size=STACK)
    try:
        async def main() -> list[object]:
            results: list[object] = []
            async with trio.open_nursery() as nursery:
                for i in range(20):
                    async def one(i: int = i) -> None:
                        results.append(await pool.run(lambda: i * 2))
                    nursery.start_soon(one)
            return results

        assert sorted(trio.run(main)) == [i * 2 for i in range(20)]  # type: ignore[type-var]
    finally:
        pool.close()


needs_two_cpus = pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                                    reason="binding needs Linux and two CPUs")


@needs_two_cpus
def test_cpu_binds_the_threads_and_frees_a_long_run() -> None:
    """With ``cpu``, the creating thread and the pool's threads keep to one CPU; (lazy) a job running
    longer than the stall time while others wait is let onto every CPU, and its thread comes back."""
    allowed = os.sched_getaffinity(0)
    home = {sorted(allowed)[1 % len(allowed)]}
    result: dict[str, set[int]] = {}

    def body() -> None:
        pool = RunPool(2, stack_size=STACK, stall=0.01, cpu=1, lazy=True)
        release = threading.Event()
        try:
            result["creator"] = os.sched_getaffinity(0)
            started, queued_done, later = threading.Event(), threading.Event(), threading.Event()
            native: list[int] = []

            def long_job() -> None:
                native.append(threading.get_native_id())
                result["long_at_start"] = os.sched_getaffinity(0)
                started.set()
                release.wait(10)

            pool.submit(long_job)
            _wait(started, "the long job")
            pool.submit(queued_done.set)  # waits: the watch frees the long job and takes this one
            _wait(queued_done, "the queued job")
            result["long_freed"] = os.sched_getaffinity(native[0])
            release.set()

            def after() -> None:
                result["after"] = os.sched_getaffinity(0)
                later.set()

            time.sleep(0.05)
            for _ in range(3):  # whichever thread takes it, it is on the home CPU
                later.clear()
                pool.submit(after)
                _wait(later, "a later job")
                assert result["after"] == home
            result["long_thread_after"] = os.sched_getaffinity(native[0])
        finally:
            release.set()
            pool.close()

    t = threading.Thread(target=body)  # binds the creating thread: not the test's own
    t.start()
    t.join(30)
    assert result["creator"] == home
    assert result["long_at_start"] == home
    assert result["long_freed"] == allowed
    assert result["long_thread_after"] == home
