"""Where wasmtime's failures become peerbox errors: the run room's one boundary with wasmtime.

Two mapping tables, in the style of httpcore's ``map_exceptions``:

* set-up failures (compiling the compiler's WAT or the guest runtime):
  tables for :func:`peerbox._errors.map_exceptions`, ``{wasmtime exception:
  what to raise}``; the peerbox error is raised *from* wasmtime's, so the
  cause stays in the traceback;
* a run that stopped: :func:`run_error` turns the :class:`~peerbox.run._capi.GuestTrap`
  that :mod:`peerbox.run._capi` raised (already classified by kind), rt's
  fault code and the host call's kept reason into the error the run raises,
  through :data:`_LIMITS` (kind -> :class:`~peerbox.LimitExceeded` message).

No other module of :mod:`peerbox.run` catches wasmtime's exceptions or reads
its trap codes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import wasmtime

from .._errors import Error, ExceptionMapping, LimitExceeded
from ._capi import GuestTrap, TrapKind
from ._hostfns import RunState

__all__ = ["RunLimits", "run_error", "COMPILE_ERRORS", "RT_ERRORS"]

#: The compiler's WAT that wasmtime refuses is a bug in peerbox.
COMPILE_ERRORS: ExceptionMapping = {
    wasmtime.WasmtimeError: lambda exc: Error(
        f"the compiler produced an invalid module (a bug in peerbox): {exc}"),
}
#: rt.wasm that wasmtime refuses is a bug in peerbox.
RT_ERRORS: ExceptionMapping = {
    wasmtime.WasmtimeError: lambda exc: Error(
        f"the guest runtime rt.wasm does not compile (a bug in peerbox): {exc}"),
}


class RunLimits(NamedTuple):
    """The limits of the run that stopped, as its messages name them."""

    timeout: float | None
    memory: int
    fuel: int | None
    max_wasm_stack: int


#: A limit that stopped a run -> its message.
_LIMITS: dict[TrapKind, Callable[[RunLimits], str]] = {
    "fuel": lambda lim: f"script ran out of fuel (limit: {lim.fuel} units)",
    "timeout": lambda lim: f"script exceeded its {lim.timeout} s timeout",
    "stack": lambda lim: (f"script exceeded the wasm stack limit ({lim.max_wasm_stack} bytes): "
                          "runaway recursion?"),
    "memory": lambda lim: f"script exceeded its memory limit ({lim.memory} bytes)",
}

#: rt's fault codes (``rt_fault``): 1 = an allocation failed, 2 = a host call asked to stop,
#: 3 = rt found its heap corrupted (a bug in peerbox), 4 = the shadow stack is full (a recursion
#: as deep as the wasm stack allows, see ABI.md "Memory").
_FAULT_MEMORY = 1
_FAULT_HOST_STOP = 2
_FAULT_SHADOW_STACK = 4


def run_error(trap: GuestTrap, *, fault: int, state: RunState | None, log: list[str],
              limits: RunLimits) -> Error:
    """The error a run that trapped raises (to be raised ``from trap``).

    ``fault`` is rt's fault code (0 if unknown), ``state`` the run's
    host-call state, ``log`` what the script had logged. In order: a host
    call's trap is the real cause (not rt's stop that followed it); a host
    call that stopped the run gives its own error; a run limit gives
    :class:`~peerbox.LimitExceeded`; anything else is a bug in peerbox.
    """
    if state is not None and state.trap is not None:
        trap = state.trap
    if fault == _FAULT_HOST_STOP and state is not None and state.stop is not None:
        stop = state.stop
        if isinstance(stop, LimitExceeded):
            stop.log = log
        return stop
    kind = trap.kind
    if fault == _FAULT_MEMORY and kind not in ("fuel", "timeout", "stack"):
        kind = "memory"
    elif fault == _FAULT_SHADOW_STACK and kind not in ("fuel", "timeout"):
        kind = "stack"
    message = _LIMITS.get(kind)
    if kind is not None and message is not None:
        return LimitExceeded(kind, message(limits), log=log)
    return Error(
        f"internal error: the sandbox trapped unexpectedly (a bug in peerbox): {trap.message.strip()}"
    )
