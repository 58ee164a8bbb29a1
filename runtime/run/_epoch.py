"""The epoch clock: what advances a wasmtime Engine's epoch, so timeouts hold.

A run's wall-clock limit is a wasmtime *epoch deadline*: the Store traps
once the Engine's epoch has advanced a number of ticks past the value it had
when the deadline was set. Something must therefore call
``wasmtime_engine_increment_epoch`` every :data:`EPOCH_TICK` seconds, and it
must never be starved, or timeouts stretch (a Python thread needing the GIL
made a 2 s timeout last 16 s next to 8 busy Python threads).

:class:`EpochClock` does it with a POSIX timer (``timer_create`` with
``CLOCK_MONOTONIC`` and ``SIGEV_THREAD``) whose notification function *is*
wasmtime's C function ``wasmtime_engine_increment_epoch`` and whose
``sigev_value`` is an engine pointer: glibc calls it from a native thread of
its own on every expiry, never touching Python or the GIL. (``union sigval``
is pointer-sized and passed in an integer register on x86-64 and aarch64,
exactly like the ``wasm_engine_t *`` the function takes; glibc creates one
short-lived detached thread per expiry, which is why the timer is armed only
while at least one run with a timeout is in flight.) Where POSIX timers are
not available (not Linux/glibc on x86-64 or aarch64, or ``timer_create``
fails), it falls back to a daemon Python thread that ticks as before; that
thread needs the GIL, so under heavy Python load timeouts may stretch there.

Lifetime: the timer has its own engine handle (``wasmtime_engine_clone``,
which shares the Engine), so the Sandbox's engine may be freed at any time.
:meth:`EpochClock.close` (from ``Sandbox.close()`` or its finalizer) deletes
the timer once no timed run is in flight (a run in flight keeps its
timeout); after ``timer_delete`` glibc starts no new notification thread,
but one it already started may still be about to call
``increment_epoch``, so the cloned handle is freed only
:data:`_GRACE` seconds after the timer was last armed (on a daemon
``threading.Timer`` if that moment has not yet come; at interpreter exit it
is simply left to the process's end).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading
import time
from typing import Any, Literal

from ._capi import clone_engine, delete_engine, increment_epoch_address
from .._errors import UsageError

__all__ = ["EPOCH_TICK", "EpochClock", "ClockKind"]

#: Seconds between two epoch ticks: the granularity of timeouts.
EPOCH_TICK = 0.01
#: Seconds after the timer was last armed before its engine handle may be freed.
_GRACE = 1.0

ClockKind = Literal["auto", "posix-timer", "thread"]

_CLOCK_MONOTONIC = 1
_SIGEV_THREAD = 2


class _SigEvent(ctypes.Structure):
    """glibc's ``struct sigevent`` on 64-bit Linux (64 bytes)."""

    _fields_ = [
        ("sigev_value", ctypes.c_void_p),  # union sigval: int or pointer
        ("sigev_signo", ctypes.c_int),
        ("sigev_notify", ctypes.c_int),
        ("sigev_notify_function", ctypes.c_void_p),  # void (*)(union sigval)
        ("sigev_notify_attributes", ctypes.c_void_p),  # pthread_attr_t *
        ("_pad", ctypes.c_byte * 32),
    ]


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


def _timer_functions() -> tuple[Any, Any, Any]:
    """``timer_create``, ``timer_settime``, ``timer_delete`` from libc (or librt).

    Raises OSError where POSIX timers with ``SIGEV_THREAD`` cannot be used
    as this module does (not Linux, not 64-bit x86-64/aarch64, no symbols).
    """
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        raise OSError("POSIX timers are used on 64-bit Linux only")
    if platform.machine() not in ("x86_64", "aarch64", "arm64"):
        raise OSError(f"the sigval ABI is not checked on {platform.machine()}")
    if platform.libc_ver()[0] != "glibc":
        raise OSError("SIGEV_THREAD timers are used with glibc only")
    for name in (None, "librt.so.1"):
        try:
            lib = ctypes.PyDLL(name, use_errno=True)  # keeps the GIL: no wait to get it back
            create, settime, delete = lib["timer_create"], lib["timer_settime"], lib["timer_delete"]
        except (OSError, AttributeError):
            continue
        create.argtypes = [ctypes.c_int, ctypes.POINTER(_SigEvent), ctypes.POINTER(ctypes.c_void_p)]
        settime.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_ITimerSpec), ctypes.c_void_p]
        delete.argtypes = [ctypes.c_void_p]
        create.restype = settime.restype = delete.restype = ctypes.c_int
        return create, settime, delete
    raise OSError("timer_create is not available")


class _PosixTimer:
    """A ``SIGEV_THREAD`` timer calling ``wasmtime_engine_increment_epoch(engine)`` natively.

    Raises OSError from the constructor if the timer cannot be created.
    """

    def __init__(self, engine_ptr: Any, interval: float) -> None:
        self._create, self._settime, self._delete = _timer_functions()
        self._interval = interval
        self._engine = clone_engine(engine_ptr)  # our own handle: the Sandbox's may go first
        if not self._engine:
            raise OSError("wasmtime_engine_clone failed")
        self._timer: ctypes.c_void_p | None = None
        self._pid = -1
        self.armed_at = -1.0  # monotonic time the timer was last armed or disarmed while armed
        try:
            self._new_timer()
        except OSError:
            delete_engine(self._engine)
            raise

    def _new_timer(self) -> None:
        event = _SigEvent()
        event.sigev_notify = _SIGEV_THREAD
        event.sigev_notify_function = increment_epoch_address()
        event.sigev_value = ctypes.cast(self._engine, ctypes.c_void_p).value
        timer = ctypes.c_void_p()
        if self._create(_CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timer_create: {os.strerror(err)}")
        self._timer = timer
        self._pid = os.getpid()

    def _set(self, seconds: float) -> None:
        if self._pid != os.getpid():  # POSIX timers are not inherited across fork()
            self._new_timer()
        sec, nsec = int(seconds), int(round((seconds - int(seconds)) * 1e9))
        spec = _ITimerSpec(_TimeSpec(sec, nsec), _TimeSpec(sec, nsec))
        if self._settime(self._timer, 0, ctypes.byref(spec), None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timer_settime: {os.strerror(err)}")

    def arm(self) -> None:
        """Start ticking every ``interval`` seconds (first tick one interval from now)."""
        self._set(self._interval)
        self.armed_at = time.monotonic()

    def disarm(self) -> None:
        """Stop ticking (a notification already under way may still arrive)."""
        self._set(0.0)
        self.armed_at = time.monotonic()

    def release(self) -> None:
        """Delete the timer, then free the engine handle once no notification can be in flight."""
        if self._timer is not None and self._pid == os.getpid():
            self._delete(self._timer)
        self._timer = None
        engine, self._engine = self._engine, None
        if engine is None:
            return
        if self.armed_at < 0:
            delete_engine(engine)
            return
        wait = self.armed_at + _GRACE - time.monotonic()
        if wait <= 0:
            delete_engine(engine)
            return
        try:
            later = threading.Timer(wait, delete_engine, args=(engine,))
            later.daemon = True
            later.start()
        except RuntimeError:  # interpreter shutting down: the process's end frees it
            pass


class _ThreadTicker:
    """The fallback: a daemon Python thread calling ``increment_epoch`` every ``interval`` seconds.

    It needs the GIL for every tick, so busy Python threads can delay it.
    """

    def __init__(self, engine: Any, interval: float) -> None:
        self._engine = engine
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():  # also after os.fork()
            self._thread = threading.Thread(target=self._loop, name="peerbox-epoch", daemon=True)
            self._thread.start()

    def disarm(self) -> None:
        """Keep ticking: starting the thread per run would cost more than a tick."""

    def _loop(self) -> None:
        engine, stop, interval = self._engine, self._stop, self._interval
        while not stop.wait(interval):
            engine.increment_epoch()

    def release(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread


class EpochClock:
    """Advances one Engine's epoch every :data:`EPOCH_TICK` seconds while timed runs are in flight.

    ``kind``: ``"posix-timer"`` (native, never needs the GIL), ``"thread"``
    (the Python fallback) or ``"auto"`` (the timer where available). Each
    run with a timeout calls :meth:`begin` before setting its deadline and
    :meth:`end` afterwards. Raises :class:`~peerbox.UsageError` for an
    unknown ``kind`` or ``"posix-timer"`` where none can be created.
    """

    def __init__(self, engine: Any, engine_ptr: Any, kind: ClockKind = "auto") -> None:
        if kind not in ("auto", "posix-timer", "thread"):
            raise UsageError(f"epoch_clock must be 'auto', 'posix-timer' or 'thread', got {kind!r}")
        self._lock = threading.Lock()
        self._active = 0
        self._closed = False
        self._released = False
        self._impl: _PosixTimer | _ThreadTicker
        if kind == "thread":
            self._impl = _ThreadTicker(engine, EPOCH_TICK)
        else:
            try:
                self._impl = _PosixTimer(engine_ptr, EPOCH_TICK)
            except OSError as exc:
                if kind == "posix-timer":
                    raise UsageError(f"no POSIX timer for the epoch clock here: {exc}") from exc
                self._impl = _ThreadTicker(engine, EPOCH_TICK)

    @property
    def kind(self) -> str:
        """``"posix-timer"`` or ``"thread"``: what actually ticks."""
        return "posix-timer" if isinstance(self._impl, _PosixTimer) else "thread"

    @property
    def thread(self) -> threading.Thread | None:
        """The fallback ticker thread, once started (None for the POSIX timer)."""
        return self._impl.thread if isinstance(self._impl, _ThreadTicker) else None

    def begin(self) -> None:
        """A run with a timeout starts: make sure the epoch advances.

        Raises :class:`~peerbox.UsageError` once the clock is closed.
        """
        with self._lock:
            if self._closed:
                raise UsageError("this peerbox Sandbox has been closed")
            self._active += 1
            if self._active == 1:
                try:
                    self._impl.arm()
                except OSError as exc:  # pragma: no cover - settime on a valid timer does not fail
                    self._active -= 1
                    raise UsageError(f"cannot arm the epoch timer: {exc}") from exc

    def end(self) -> None:
        """A run that called :meth:`begin` has finished."""
        with self._lock:
            self._active -= 1
            if self._active == 0:
                if self._closed:
                    self._release()
                else:
                    try:
                        self._impl.disarm()
                    except OSError:  # pragma: no cover - see begin()
                        pass

    def close(self) -> None:
        """Stop for good: now if no timed run is in flight, else when the last one ends. Idempotent."""
        with self._lock:
            self._closed = True
            if self._active == 0:
                self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._impl.release()
