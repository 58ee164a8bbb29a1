"""Native stacks for guest code: how much a thread has, and a thread with enough.

wasm code runs on the calling thread's native stack. wasmtime stops a run
that uses more than ``max_wasm_stack`` bytes of it with a clean
"stack overflow" trap, but only if the thread's native stack really has that
much room: otherwise the guest reaches the guard page first and the whole
process dies with SIGSEGV. So :class:`~peerbox.Sandbox` checks once per
thread (:func:`thread_stack_size`, glibc's ``pthread_getattr_np``) that the
thread's stack holds :func:`native_stack_needed` bytes, and runs the guest on
a helper thread with a large enough stack (:func:`call_with_stack`) when it
does not (a thread from ``threading`` with a small ``threading.stack_size``,
or a main thread under a small ``ulimit -s``).
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["native_stack_needed", "thread_stack_size", "call_with_stack", "HOST_STACK_MARGIN"]

T = TypeVar("T")

#: Native stack kept free beyond the wasm stack: the Python frames below the
#: run, and host calls (Python, CBOR, storage) made at the deepest point.
HOST_STACK_MARGIN = 2 << 20
_PTHREAD_ATTR_BYTES = 128  # sizeof(pthread_attr_t) is 56 (x86-64) or 64 (aarch64)
_stack_lock = threading.Lock()  # threading.stack_size() is process-wide state


def native_stack_needed(max_wasm_stack: int) -> int:
    """Bytes of native stack a thread needs to run guests safely under ``max_wasm_stack``.

    Room for the run itself and one run started from inside it (a host call
    that runs another script), plus :data:`HOST_STACK_MARGIN`.
    """
    return 2 * max_wasm_stack + HOST_STACK_MARGIN


def thread_stack_size() -> int | None:
    """The calling thread's native stack size in bytes, or None where it cannot be known."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.PyDLL(None)
        getattr_np = libc["pthread_getattr_np"]
        getstack = libc["pthread_attr_getstack"]
        destroy = libc["pthread_attr_destroy"]
        self_ = libc["pthread_self"]
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    self_.restype = ctypes.c_ulong
    self_.argtypes = []
    getattr_np.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
    getstack.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
    destroy.argtypes = [ctypes.c_void_p]
    getattr_np.restype = getstack.restype = destroy.restype = ctypes.c_int
    attr = ctypes.create_string_buffer(_PTHREAD_ATTR_BYTES)
    if getattr_np(self_(), attr) != 0:  # pragma: no cover - only fails without memory
        return None
    try:
        addr, size = ctypes.c_void_p(), ctypes.c_size_t()
        if getstack(attr, ctypes.byref(addr), ctypes.byref(size)) != 0:  # pragma: no cover
            return None
        return int(size.value)
    finally:
        destroy(attr)


def call_with_stack(fn: Callable[[], T], stack_size: int) -> T:
    """Call ``fn`` on a new thread with a native stack of ``stack_size`` bytes and wait for it.

    Whatever ``fn`` raises is raised here. (The helper thread is a daemon:
    if the waiting thread is interrupted, the run ends by its own limits.)
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc

    with _stack_lock:
        old = threading.stack_size()
        try:
            threading.stack_size(stack_size)
            worker = threading.Thread(target=target, name="peerbox-big-stack", daemon=True)
            worker.start()
        finally:
            threading.stack_size(old)
    worker.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value
