"""The cost of one access line on the event loop, written in place (before) and through the log queue (after).

``.venv/bin/python bench/log_bench.py`` writes one realistic access line (an
``ok`` exec of an opened envelope) :data:`LINES` times, both formats, three ways:

- ``direct`` (before the log queue): :func:`~peerbox.net._access.access_logged`
  around an app that answers at once, its line going to a
  :class:`logging.StreamHandler` that builds the fields, formats and writes them
  on the calling thread, to ``/dev/null``;
- ``queued`` (now): the same line going to
  :class:`~peerbox.net._logqueue.DroppingQueueHandler`, whose writer thread builds
  the fields, formats and writes to ``/dev/null`` (batched), keeping up (the
  queue holds every line: nothing is dropped);
- ``dropping``: the same in front of a pipe nobody reads (the writer blocked,
  the queue full): what a line costs the loop when it is dropped.

"loop" is the calling thread's CPU time per line (``time.thread_time``: what the
event loop pays), "process" the whole process's (``time.process_time``,
writer included, after it has written everything). Ratios are direct / queued.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from peerbox.net._access import AccessNote, access_logged, current_note
from peerbox.net._http import HttpRequest, HttpResponse
from peerbox.net._logqueue import DroppingQueueHandler
from peerbox.net._logsetup import JsonFormatter, TextFormatter
from peerbox.trust import Handled, Outcome, Usage
from peerbox.wire import KeyPair, make_request, open_request

LINES = 20_000


def _lines() -> Callable[[], None]:
    """One access line of an allowed exec: :func:`access_logged` itself around an app that answers at
    once (its fields a :class:`LazyFields`, built by whoever formats the line)."""
    alice, bob = KeyPair.generate(), KeyPair.generate()
    data = make_request(alice, target=bob.public_key, script="40 + 2", now=int(time.time()))
    env = open_request(data)
    req = HttpRequest(method="POST", path="/v1/exec", headers=(), body=data, client="127.0.0.1:50412",
                      stream_id=1, conn_id=1)
    resp = HttpResponse(status=200, body=b"x" * 390)
    handled = Handled(outcome=Outcome.OK, body=resp.body, usage=Usage(fuel=1234, wall_ms=1, peak_memory=1000))

    def noted(note: AccessNote) -> None:
        note.envelope, note.target, note.caller_name, note.handled = env, "bob", "alice", handled
        note.rule = "policy.toml:8"

    async def app(_: HttpRequest) -> HttpResponse:
        note = current_note()
        assert note is not None
        noted(note)
        return resp

    logged = access_logged(app, "h2c")

    def after() -> None:
        coro = logged(req)
        try:
            coro.send(None)
        except StopIteration:
            return
        raise AssertionError("the app never waits")

    return after


def _measure(handler: logging.Handler, write: Callable[[], None],
             wait: Callable[[], None]) -> tuple[float, float]:
    """(loop µs, process µs) per line of ``LINES`` lines through ``handler``."""
    log = logging.getLogger("peerbox")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    for _ in range(200):  # warm up
        write()
    wait()
    t0, p0 = time.thread_time(), time.process_time()
    for _ in range(LINES):
        write()
    loop = time.thread_time() - t0
    wait()
    process = time.process_time() - p0
    log.handlers[:] = []
    return loop / LINES * 1e6, process / LINES * 1e6


def _drained(handler: DroppingQueueHandler) -> Callable[[], None]:
    def wait() -> None:
        while not handler._queue.empty():  # noqa: SLF001 (a bench may look inside)
            time.sleep(0.001)
        time.sleep(0.01)  # the last line in the writer's hand

    return wait


def main() -> None:
    after_line = _lines()
    print(f"access line, {LINES} lines: CPU µs per line (loop = the calling thread)")
    print(f"{'format':6} {'way':9} {'loop':>8} {'process':>8}")
    for name, formatter in (("json", JsonFormatter()), ("text", TextFormatter())):
        with open(os.devnull, "w") as null:
            direct = logging.StreamHandler(null)
            direct.setFormatter(formatter)
            before = _measure(direct, after_line, lambda: None)
            queued = DroppingQueueHandler(null, LINES + 1000)  # type: ignore[arg-type]
            queued.setFormatter(formatter)
            after = _measure(queued, after_line, _drained(queued))
            queued.close()
        r, w = os.pipe()
        with os.fdopen(w, "w") as stuck:
            dropping = DroppingQueueHandler(stuck, 64, flush_seconds=0.0)  # type: ignore[arg-type]
            dropping.setFormatter(formatter)
            os.set_blocking(w, False)
            try:
                while True:
                    os.write(w, b"\n" * 4096)
            except BlockingIOError:
                pass
            os.set_blocking(w, True)
            dropped = _measure(dropping, after_line, lambda: None)
            assert dropping.dropped >= LINES
            dropping.close()
            os.close(r)
        print(f"{name:6} {'direct':9} {before[0]:8.1f} {before[1]:8.1f}")
        print(f"{name:6} {'queued':9} {after[0]:8.1f} {after[1]:8.1f}   loop ratio direct/queued "
              f"{before[0] / after[0]:.1f}x, process {before[1] / after[1]:.2f}x")
        print(f"{name:6} {'dropping':9} {dropped[0]:8.1f} {dropped[1]:8.1f}")


if __name__ == "__main__":
    main()
