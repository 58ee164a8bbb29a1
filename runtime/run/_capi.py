"""The sandbox's layer over wasmtime's C API, and the functions a guest imports from the host.

:mod:`peerbox.run._sandbox` runs every script through the calls here rather
than wasmtime-py's object API: each run creates and deletes a Store,
defines imports and calls guest functions with raw ``ctypes`` calls looked
up once at import (wasmtime-py's wrappers cost several µs per object, and a
run makes dozens). It also holds the host functions of module
``peerbox_rt`` (float formatting and parsing, ``pow``) and the single host
call import ``peerbox.call`` with its per-run state (:class:`_RunState`),
found through a thread-local so that no run ever sees another's.

Most of these calls keep the GIL (they go through a ``ctypes.PyDLL``
handle to the same library): they take microseconds, and releasing the GIL
for each would cost a run one wait for the GIL per call, up to several ms
each next to busy Python threads (a timed-out run would then end tens of ms
late per call). Only calls that run guest code for as long as it likes
(:func:`_call_i32_releasing`, used for ``main``) release it. Guest code run
with the GIL held (``rt_alloc``, ``rt_fault``, ``rt_log_out``) is short and
bounded, and a run's epoch deadline still applies to it.

Everything here is private to the sandbox; names keep their leading
underscore where they are wasmtime handles.
"""

from __future__ import annotations

import ctypes
import math
import re
import struct
import threading
from ctypes import byref
from typing import Any

import cbor2
import wasmtime
from wasmtime import _bindings as _c
from wasmtime import _ffi as _f

from .._errors import Error, LimitExceeded
from ..hostcalls import BudgetExceeded, Dispatch, HostCallError

__all__ = ["pow_f64"]

# -- ctypes handles (looked up once) ------------------------------------------

_HELD = ctypes.PyDLL(str(_f.filename))  # the same library; calls through it keep the GIL


def _held(fn: Any) -> Any:
    """``fn`` (a wasmtime-py ctypes function) called without releasing the GIL."""
    held = _HELD[fn.__name__]
    held.argtypes, held.restype = fn.argtypes, fn.restype
    return held


_store_new = _held(_c._wasmtime_store_new)
_store_context = _held(_c._wasmtime_store_context)
_store_delete = _held(_c._wasmtime_store_delete)
_store_limiter = _held(_c._wasmtime_store_limiter)
_set_fuel = _held(_c._wasmtime_context_set_fuel)
_get_fuel = _held(_c._wasmtime_context_get_fuel)
_set_epoch_deadline = _held(_c._wasmtime_context_set_epoch_deadline)
_table_new = _held(_c._wasmtime_table_new)
_linker_define = _held(_c._wasmtime_linker_define)
_linker_define_instance = _held(_c._wasmtime_linker_define_instance)
_linker_instantiate = _held(_c._wasmtime_linker_instantiate)  # no start functions: runs no guest code
_export_get = _held(_c._wasmtime_instance_export_get)
_func_call = _held(_c._wasmtime_func_call)
_func_call_releasing = _c._wasmtime_func_call
_memory_data = _held(_c._wasmtime_memory_data)
_memory_data_size = _held(_c._wasmtime_memory_data_size)
_caller_context = _held(_c._wasmtime_caller_context)
_caller_export_get = _held(_c._wasmtime_caller_export_get)
_trap_code = _held(_c._wasmtime_trap_code)
_trap_message = _held(_c._wasm_trap_message)
_trap_delete = _held(_c._wasm_trap_delete)
_byte_vec_delete = _held(_c._wasm_byte_vec_delete)
_error_new = _held(_c._wasmtime_error_new)
_UPDATE_CONTINUE = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
_define_unchecked = _c.wasmtime_linker_define_func_unchecked
_engine_clone = _c._wasmtime_engine_clone
_engine_delete = _c._wasm_engine_delete
_string_at = ctypes.string_at
_memmove = ctypes.memmove
_addressof = ctypes.addressof
_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))
_TrapPtr = ctypes.POINTER(_f.wasm_trap_t)
_Val = _f.wasmtime_val_t
_Extern = _f.wasmtime_extern_t
_Instance = _f.wasmtime_instance_t
_I32 = _f.WASMTIME_I32.value
_EXTERN_FUNC = _f.WASMTIME_EXTERN_FUNC.value
_EXTERN_MEMORY = _f.WASMTIME_EXTERN_MEMORY.value
_EXTERN_TABLE = _f.WASMTIME_EXTERN_TABLE.value
_ExternUnion = _f.wasmtime_extern_union
_NULL_FUNCREF = _Val(kind=_f.WASMTIME_FUNCREF.value)  # zeroed payload = null funcref



def _increment_epoch_address() -> int:
    """The C address of ``wasmtime_engine_increment_epoch`` (a native timer calls it directly)."""
    address = ctypes.cast(_f.dll["wasmtime_engine_increment_epoch"], ctypes.c_void_p).value
    if not address:  # pragma: no cover - the symbol is part of wasmtime's C API
        raise OSError("wasmtime_engine_increment_epoch not found")
    return int(address)


def _set_async_stack_size(config: wasmtime.Config, size: int) -> bool:
    """Set the Config's ``async_stack_size``; False if this wasmtime has no such C function.

    wasmtime refuses (with a Rust panic in the C API's ``wasm_engine_new``)
    a ``max_wasm_stack`` larger than ``async_stack_size`` (default 2 MiB),
    even for an engine that never runs anything asynchronously.
    """
    try:
        setter = _f.dll["wasmtime_config_async_stack_size_set"]
    except AttributeError:  # pragma: no cover - a wasmtime built without async support
        return False
    setter.argtypes = [ctypes.POINTER(_c.wasm_config_t), ctypes.c_size_t]
    setter.restype = None
    setter(config.ptr(), size)
    return True


_ENV = b"env"
_TABLE = b"__indirect_function_table"
_RT = b"rt"
_TRAP = wasmtime.TrapCode


# -- host functions (module "peerbox_rt") -------------------------------------

_FLOAT_SYNTAX = re.compile(
    rb"[ \t\n\r]*[+-]?"
    rb"(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))"
    rb"[ \t\n\r]*"
)
_F64 = struct.Struct("<d")


def _guest_memory(caller: wasmtime.Caller) -> wasmtime.Memory | None:
    mem = caller.get("memory")
    return mem if isinstance(mem, wasmtime.Memory) else None


def _fmt_f64(caller: wasmtime.Caller, x: float, buf: int) -> int:
    """Write the display form of ``x`` (Python ``repr``; NaN as ``NaN``) at ``buf``."""
    try:
        text = b"NaN" if x != x else repr(x).encode("ascii")
        mem = _guest_memory(caller)
        if mem is None or buf < 0 or buf + len(text) > mem.data_len(caller):
            return 0
        mem.write(caller, text, buf)
        return len(text)
    except Exception:
        return 0


def _parse_f64(caller: wasmtime.Caller, ptr: int, length: int, out: int) -> int:
    """Parse a float (decimal, exponent, inf, nan; no underscores); 1 and the f64 at ``out``."""
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


def _pow_f64(a: float, b: float) -> float:
    return pow_f64(a, b)


# -- host calls (module "peerbox") --------------------------------------------

#: Largest argument array a script may send to one host call (bytes of CBOR).
MAX_HOSTCALL_ARGS = 64 << 20


class _RunState:
    """Per-run state the host functions reach: this run's dispatch, and why it stopped."""

    __slots__ = ("host", "stop", "trap")

    def __init__(self, host: Dispatch | None) -> None:
        self.host = host
        self.stop: Error | None = None
        self.trap: _GuestTrap | None = None  # a trap inside a host call (it then stops the run)


def _caller_export(caller: Any, name: bytes, kind: int) -> Any:
    item = _Extern()
    if not _caller_export_get(caller, name, len(name), byref(item)) or int(item.kind) != kind:
        raise Error(f"host call from a module without {name.decode()} (a bug in peerbox)")
    return item


def _host_reply(caller: Any, state: _RunState, op: int, ptr: int, length: int) -> int:
    """Decode the arguments, run the host call, write the CBOR reply into guest memory.

    Works on wasmtime's C API directly (a host call costs ~30 µs this way,
    ~75 µs through wasmtime-py's wrappers). Every guest pointer and length is
    checked against the memory size before it is touched.
    """
    ctx = _caller_context(caller)
    mem = _caller_export(caller, b"memory", _EXTERN_MEMORY).of.memory
    base, size = _memory_span(ctx, mem)
    if not (0 < ptr and 0 <= length and ptr + length <= size):
        raise Error(f"host call arguments outside guest memory ({ptr}+{length}) (a bug in peerbox)")
    reply: dict[str, Any]
    if length > MAX_HOSTCALL_ARGS:
        reply = {"err": ["invalid_argument", f"host call arguments too large: {length} bytes "
                         f"(at most {MAX_HOSTCALL_ARGS >> 20} MiB per call)"]}
    else:
        args = cbor2.loads(_string_at(base + ptr, length))
        if not isinstance(args, list):
            raise Error("host call arguments are not an array (a bug in peerbox)")
        host = state.host if state.host is not None else Dispatch(None)
        try:
            reply = {"ok": host.call(op, args)}
        except HostCallError as exc:
            reply = {"err": [exc.kind, exc.message]}
    data = cbor2.dumps(reply)
    n = len(data)
    out = _call_i32(ctx, _caller_export(caller, b"rt_alloc", _EXTERN_FUNC), n) & 0xFFFFFFFF
    base, size = _memory_span(ctx, mem)  # rt_alloc may have grown (and moved) memory
    if out == 0 or out + n > size:
        raise Error("rt_alloc returned memory outside the guest (a bug in peerbox)")
    _memmove(base + out, data, n)
    return (n << 32) | out


def _host_call_callback(tls: threading.local) -> Any:
    """``peerbox.call`` as a raw (unchecked) wasmtime callback for one thread's Linker.

    Never raises into wasmtime: a refusal is an ``err`` reply the script can
    catch; anything that must stop the run (a spent budget, a bug) is kept in
    the run's state and answered with 0, which makes rt trap with fault 2;
    :meth:`Sandbox._translate` then raises what was kept.
    """

    def callback(env: Any, caller: Any, args: Any, nargs: int) -> int:
        result = 0
        try:
            state: _RunState | None = getattr(tls, "run", None)
            if state is not None:
                try:
                    result = _host_reply(caller, state, args[0].i32, args[1].i32 & 0xFFFFFFFF,
                                         args[2].i32 & 0xFFFFFFFF)
                except BudgetExceeded as exc:
                    state.stop = LimitExceeded("hostcalls", f"script exceeded its host-call budget: {exc}")
                except _GuestTrap as exc:  # calling rt_alloc: fuel, timeout, stack or memory ran out
                    state.trap = exc
                except Error as exc:
                    state.stop = exc
                except BaseException as exc:  # never into wasmtime: kept for after the run
                    state.stop = Error(f"internal error in a host call (a bug in peerbox): {exc!r}")
        except BaseException:  # pragma: no cover - even the bookkeeping failed
            result = 0
        args[0].i64 = result
        return 0

    return _c.wasmtime_func_unchecked_callback_t(callback)


class _GuestTrap(Exception):
    """A wasm trap, read (code and message) and freed without releasing the GIL."""

    def __init__(self, code: wasmtime.TrapCode | None, message: str) -> None:
        super().__init__(message)
        self.trap_code = code
        self.message = message


def _trap_from_ptr(trap: Any) -> _GuestTrap:
    """Read and free a ``wasm_trap_t``."""
    try:
        code = _f.wasmtime_trap_code_t()
        has_code = _trap_code(trap, byref(code))
        vec = _f.wasm_byte_vec_t()
        _trap_message(trap, byref(vec))
        try:
            text = _string_at(vec.data, vec.size).rstrip(b"\0").decode("utf-8", "replace") if vec.size else ""
        finally:
            _byte_vec_delete(byref(vec))
    finally:
        _trap_delete(trap)
    kind: wasmtime.TrapCode | None = None
    if has_code:
        try:
            kind = _TRAP(int(code.value))
        except ValueError:  # pragma: no cover - a code newer than wasmtime-py's enum
            kind = None
    return _GuestTrap(kind, text)


def _raise_for(err: Any, trap: Any) -> None:
    """Raise what a C call reported: :class:`_GuestTrap` for a trap, wasmtime's error otherwise."""
    if err:
        raise wasmtime.WasmtimeError._from_ptr(err)
    if trap:
        raise _trap_from_ptr(trap)


def _table_import_min(module: wasmtime.Module) -> int:
    for imp in module.imports:
        if imp.module == "env" and imp.name == "__indirect_function_table":
            ty = imp.type
            if isinstance(ty, wasmtime.TableType):
                return int(ty.limits.min)
    return 0


def _export(ctx: Any, inst: Any, name: bytes, kind: int) -> Any:
    item = _Extern()
    found = _export_get(ctx, byref(inst), name, len(name), byref(item))
    item_kind: Any = item.kind
    if not found or item_kind != kind:
        raise Error(f"guest module has no export {name.decode()!r} of the expected kind (a bug in peerbox)")
    return item


def _call_i32(ctx: Any, func_item: Any, *args: int, call: Any = _func_call) -> int:
    """Call a short ``(i32...) -> i32`` guest function keeping the GIL; traps raise :class:`_GuestTrap`."""
    n = len(args)
    params = (_Val * n)() if n else None
    for i, a in enumerate(args):
        params[i].kind = _I32  # type: ignore[index]
        params[i].of.i32 = a  # type: ignore[index]
    results = (_Val * 1)()
    trap = _TrapPtr()
    _raise_for(call(ctx, byref(func_item.of.func), params, n, results, 1, byref(trap)), trap)
    value: int = results[0].of.i32
    return value


def _call_i32_releasing(ctx: Any, func_item: Any, *args: int) -> int:
    """Like :func:`_call_i32`, releasing the GIL while the guest runs (for ``main``)."""
    return _call_i32(ctx, func_item, *args, call=_func_call_releasing)


def _memory_span(ctx: Any, mem: Any) -> tuple[int, int]:
    base = _memory_data(ctx, byref(mem))
    return _addressof(base.contents), int(_memory_data_size(ctx, byref(mem)))


def _read_block(ctx: Any, mem: Any, ptr: int, what: str) -> bytes:
    """Read a ``{u32 len, bytes[len]}`` block at ``ptr``, bounds-checked."""
    base, size = _memory_span(ctx, mem)
    ptr &= 0xFFFFFFFF
    if ptr + 4 > size:
        raise Error(f"{what} returned {ptr}, outside guest memory (a bug in peerbox)")
    n = int.from_bytes(_string_at(base + ptr, 4), "little")
    if ptr + 4 + n > size:
        raise Error(f"{what} returned a block of {n} bytes past the end of guest memory (a bug in peerbox)")
    return _string_at(base + ptr + 4, n)
