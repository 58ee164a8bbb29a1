"""The functions a guest imports from the host, and each run's state they reach.

Module ``peerbox_rt`` (float parsing, ``pow``; rt formats floats itself) is defined
through wasmtime-py's public API; the single host-call import
``peerbox.call`` is a raw handler (:data:`~peerbox.run._capi.HostCallHandler`)
that decodes the script's CBOR arguments, runs the call through the run's
:class:`~peerbox.hostcalls.Dispatch` and writes the CBOR reply into guest
memory (~30 µs a call this way, ~75 µs through wasmtime-py's wrappers). Its
per-run state (:class:`RunState`) is found through a thread-local, so that
no run ever sees another's.

Host functions must never raise into wasmtime (wasmtime-py parks such an
exception in a module global and re-raises it later, possibly elsewhere):
each catches everything and returns an error value to the guest. A host
call that must stop the run (a spent budget, a bug) keeps why in the run's
state and answers 0, which makes rt trap with fault 2; the run then raises
what was kept (:mod:`peerbox.run._traps`).
"""

from __future__ import annotations

import math
import re
import struct
import threading
from typing import Any

import cbor2
import wasmtime

from .._errors import Error, LimitExceeded
from ..hostcalls import BudgetExceeded, Dispatch, HostCallError
from ._capi import GuestTrap, HostCallHandler, RawCaller

__all__ = ["MAX_HOSTCALL_ARGS", "RunState", "parse_f64", "pow_f64", "host_call_handler"]

#: Largest argument array a script may send to one host call (bytes of CBOR).
MAX_HOSTCALL_ARGS = 64 << 20

# -- module "peerbox_rt" --------------------------------------------------------

_FLOAT_SYNTAX = re.compile(
    rb"[ \t\n\r]*[+-]?"
    rb"(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))"
    rb"[ \t\n\r]*"
)
_F64 = struct.Struct("<d")


def _guest_memory(caller: wasmtime.Caller) -> wasmtime.Memory | None:
    mem = caller.get("memory")
    return mem if isinstance(mem, wasmtime.Memory) else None


def parse_f64(caller: wasmtime.Caller, ptr: int, length: int, out: int) -> int:
    """Parse a float (decimal, exponent, inf, nan; no underscores); 1 and the f64 at ``out``, else 0."""
    try:
        mem = _guest_memory(caller)
        if mem is None or ptr < 0 or length < 0 or length > 4096 or out < 0:
            return 0
        size = mem.data_len(caller)
        if ptr + length > size or out + 8 > size:
            return 0
        text = bytes(mem.read(caller, ptr, ptr + length))
        if _FLOAT_SYNTAX.fullmatch(text) is None:
            return 0
        mem.write(caller, _F64.pack(float(text)), out)
        return 1
    except Exception:
        return 0


def _is_odd_integer(b: float) -> bool:
    return math.isfinite(b) and b == math.floor(b) and math.fmod(b, 2.0) != 0.0


def pow_f64(a: float, b: float) -> float:
    """``a ** b`` with C ``pow`` semantics: never raises (overflow -> ±inf, domain -> nan)."""
    try:
        return math.pow(a, b)
    except OverflowError:
        return -math.inf if a < 0 and _is_odd_integer(b) else math.inf
    except ValueError:
        if a == 0.0 and b < 0:  # a pole, not a domain error: C gives ±inf
            return -math.inf if math.copysign(1.0, a) < 0 and _is_odd_integer(b) else math.inf
        return math.nan
    except Exception:  # pragma: no cover - defensive: never raise into wasmtime
        return math.nan


# -- module "peerbox": the host call --------------------------------------------


class RunState:
    """Per-run state the host functions reach: this run's dispatch, and why it stopped."""

    __slots__ = ("host", "stop", "trap")

    def __init__(self, host: Dispatch | None) -> None:
        self.host = host
        self.stop: Error | None = None
        self.trap: GuestTrap | None = None  # a trap inside a host call (it then stops the run)


def _host_reply(caller: RawCaller, state: RunState, op: int, ptr: int, length: int) -> int:
    """Decode the arguments, run the host call, write the CBOR reply into guest memory.

    Every guest pointer and length is checked against the memory size
    before it is touched (:class:`RawCaller` raises :class:`~peerbox.Error`).
    """
    reply: dict[str, Any]
    if length > MAX_HOSTCALL_ARGS:
        if not (ptr > 0 and ptr + length <= caller.memory_size()):
            raise Error(f"host call arguments outside guest memory ({ptr}+{length}) (a bug in peerbox)")
        reply = {"err": ["invalid_argument", f"host call arguments too large: {length} bytes "
                         f"(at most {MAX_HOSTCALL_ARGS >> 20} MiB per call)"]}
    else:
        args = cbor2.loads(caller.read(ptr, length))  # bounds-checked: Error outside guest memory
        if not isinstance(args, list):
            raise Error("host call arguments are not an array (a bug in peerbox)")
        host = state.host if state.host is not None else Dispatch(None)
        try:
            reply = {"ok": host.call(op, args)}
        except HostCallError as exc:
            reply = {"err": [exc.kind, exc.message]}
    data = cbor2.dumps(reply)
    n = len(data)
    out = caller.call(b"rt_alloc", n) & 0xFFFFFFFF  # may grow (and move) memory
    caller.write(out, data, "rt_alloc")
    return (n << 32) | out


def host_call_handler(tls: threading.local) -> HostCallHandler:
    """``peerbox.call`` for one thread's Linker: the run in flight is ``tls.run`` (a :class:`RunState`).

    Never raises: a refusal is an ``err`` reply the script can catch;
    anything that must stop the run is kept in the run's state and answered
    with 0.
    """

    def handle(caller: RawCaller, op: int, ptr: int, length: int) -> int:
        try:
            state: RunState | None = getattr(tls, "run", None)
            if state is None:
                return 0
            try:
                return _host_reply(caller, state, op, ptr, length)
            except BudgetExceeded as exc:
                state.stop = LimitExceeded("hostcalls", f"script exceeded its host-call budget: {exc}")
            except GuestTrap as exc:  # calling rt_alloc: fuel, timeout, stack or memory ran out
                state.trap = exc
            except Error as exc:
                state.stop = exc
            except BaseException as exc:  # never into wasmtime: kept for after the run
                state.stop = Error(f"internal error in a host call (a bug in peerbox): {exc!r}")
        except BaseException:  # pragma: no cover - even the bookkeeping failed
            pass
        return 0

    return handle
