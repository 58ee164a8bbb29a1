"""One run in a fresh Store: instantiate rt and the script, copy the input in, call ``main``, copy out.

:func:`run_in_fresh_store` creates a :class:`~peerbox.run._capi.RawStore`
with the run's memory limit, fuel and epoch deadline, a ``funcref`` table
shared by both modules as ``env.__indirect_function_table``, instantiates
``rt`` and then the script module, writes the input CBOR into guest memory
in one copy, calls ``main``, reads the output in one copy and deletes the
Store, so nothing survives from one run to the next.

The per-run path talks to wasmtime's C API (through :mod:`peerbox.run._capi`)
directly: the public wrappers convert every value through several Python
objects and would cost more than the whole run should (a cached trivial run
is meant to stay well under 100 µs).

No ``InstancePre``: rt imports the run's own function table and the script
imports the run's own rt instance, both Store-bound, so neither module can
be pre-linked. Instead each thread keeps one Linker (host functions
registered once) and each run shadows ``env.__indirect_function_table`` and
the ``rt`` instance in it: name resolution then happens in Rust, which
measured faster than building explicit import lists in Python.

When the guest traps, the Store is still alive for a moment: rt's fault code
and the script's log are salvaged from it (with a little fuel and time of
their own) before :func:`~peerbox.run._traps.run_error` decides what the
run raises.
"""

from __future__ import annotations

import math
import time
from typing import Any

import wasmtime

from .._errors import Error
from ._capi import GuestTrap, RawInstance, RawLinker, RawStore, raise_pending_exception
from ._epoch import EPOCH_TICK
from ._hostfns import RunState
from ._traps import RunLimits, run_error
from ._values import decode_log

__all__ = ["ScriptModule", "run_in_fresh_store", "UNLIMITED_FUEL", "NO_DEADLINE"]

#: The fuel budget of a run without a fuel limit, and the deadline (ticks) of one without a timeout.
UNLIMITED_FUEL = 1 << 62
NO_DEADLINE = 1 << 62
_SALVAGE_FUEL = 100_000_000  # fuel granted after a trap to read the log
_SALVAGE_TICKS = 100  # epoch ticks granted after a trap to read the log
_RT = b"rt"


class ScriptModule:
    """A compiled script module, checked and ready to run in its Sandbox.

    Holds the wasmtime ``Module`` and what every run needs precomputed
    (the table type). Created by :meth:`~peerbox.run.Sandbox.prepare`.
    """

    __slots__ = ("module", "table_size", "table_type", "module_ptr", "__weakref__")

    def __init__(self, module: wasmtime.Module, table_size: int) -> None:
        self.module = module
        self.table_size = table_size
        self.table_type = wasmtime.TableType(wasmtime.ValType.funcref(), wasmtime.Limits(table_size, None))
        self.module_ptr = module.ptr()


def deadline_ticks(deadline_at: float | None) -> int:
    """Epoch ticks from now to ``deadline_at``, plus one (a run never ends early).

    The trap at the deadline is wasmtime's own, decided in native code when
    the native clock ticks: no Python callback (which would need the GIL, and
    next to busy Python threads getting it takes tens of milliseconds, each
    time) runs between a run's start and its end. A tick the timer loses on
    an overloaded machine delays the end by that tick.
    """
    if deadline_at is None:
        return NO_DEADLINE
    return max(1, math.ceil((deadline_at - time.monotonic()) / EPOCH_TICK) + 1)


def run_in_fresh_store(
    engine: Any,
    linker: RawLinker,
    rt_module: Any,
    script: ScriptModule,
    input_cbor: bytes,
    *,
    metered: bool,
    budget: int,
    deadline_at: float | None,
    state: RunState | None,
    limits: RunLimits,
) -> tuple[bytes, int, int]:
    """Run ``script`` once in a new Store; (output block, fuel left, memory size in bytes).

    ``engine`` and ``rt_module`` are pointers (``.ptr()``), ``budget`` the
    fuel (used if ``metered``), ``deadline_at`` the monotonic time of the
    timeout, ``state`` this run's host-call state. Raises what
    :func:`~peerbox.run._traps.run_error` makes of a trap (from the trap),
    and :class:`~peerbox.Error` for a guest breaking the ABI.
    """
    with RawStore(engine, memory=limits.memory) as store:
        rt: RawInstance | None = None
        try:
            if metered:
                store.set_fuel(budget)
            store.set_epoch_deadline(deadline_ticks(deadline_at))
            store.define_table(linker, script.table_type)
            rt = store.instantiate(linker, rt_module, define_as=_RT)
            instance = store.instantiate(linker, script.module_ptr)
            n = len(input_cbor)
            ptr = store.call(rt, b"rt_alloc", n) & 0xFFFFFFFF
            store.write(rt, ptr, input_cbor, f"rt_alloc({n})")
            out = store.call(instance, b"main", ptr, n, release_gil=True)
            data = store.read_block(rt, out, "main")
            left = store.fuel_left() if metered else 0
            return data, left, store.memory_size(rt)
        except GuestTrap as trap:
            raise_pending_exception()  # a KeyboardInterrupt caught by wasmtime-py's trampoline
            fault, log = _salvage(store, rt, metered=metered, timed=limits.timeout is not None)
            raise run_error(trap, fault=fault, state=state, log=log, limits=limits) from trap


def _salvage(store: RawStore, rt: RawInstance | None, *, metered: bool, timed: bool) -> tuple[int, list[str]]:
    """rt's fault code and the script's log after a trap ((0, []) for what cannot be read)."""
    if rt is None:
        return 0, []
    if metered:
        store.set_fuel(_SALVAGE_FUEL)
    # rt_fault and rt_log_out are short and keep the GIL; with a timed run the
    # native clock still ticks, so even a broken rt could not hold it for long
    store.set_epoch_deadline(_SALVAGE_TICKS if timed else NO_DEADLINE)
    try:
        fault = store.call(rt, b"rt_fault")
    except (GuestTrap, Error):
        fault = 0
    try:
        log = decode_log(store.read_block(rt, store.call(rt, b"rt_log_out"), "rt_log_out"))
    except (GuestTrap, Error):
        log = []
    return fault, log
