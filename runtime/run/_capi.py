"""The sandbox's layer over wasmtime's C API: the only module that touches wasmtime-py's internals.

:mod:`peerbox.run._store` runs every script through the calls here rather
than wasmtime-py's object API: each run creates and deletes a Store,
defines imports and calls guest functions with raw ``ctypes`` calls looked
up once at import (wasmtime-py's wrappers cost several µs per object, and a
run makes dozens). The rest of :mod:`peerbox.run` sees only the public
names below:

* :class:`RawStore`: one Store with an explicit lifetime (``close()`` or a
  ``with`` block): memory limit, fuel, epoch deadline, the shared function
  table, :meth:`~RawStore.instantiate`, :meth:`~RawStore.call`,
  :meth:`~RawStore.write`, :meth:`~RawStore.read_block`;
* :class:`RawLinker`: one thread's Linker, with the host functions and the
  raw (unchecked) host-call import; :class:`RawCaller` is what that host
  call sees of the calling guest;
* :class:`GuestTrap`: the one exception this layer raises for anything
  wasmtime reports (a trap or a ``wasmtime_error_t``), already classified
  (:data:`TrapKind`) so that no other module reads wasmtime's trap codes or
  messages;
* engine and configuration helpers (:func:`set_async_stack_size`,
  :func:`configure_pooling`, :func:`increment_epoch_address`,
  :func:`clone_engine`, :func:`delete_engine`,
  :func:`raise_pending_exception`).

Most of these calls keep the GIL (they go through a ``ctypes.PyDLL``
handle to the same library): they take microseconds, and releasing the GIL
for each would cost a run one wait for the GIL per call, up to several ms
each next to busy Python threads (a timed-out run would then end tens of ms
late per call). Only ``call(..., release_gil=True)`` (used for ``main``)
releases it. Guest code run with the GIL held (``rt_alloc``, ``rt_fault``,
``rt_log_out``) is short and bounded, and a run's epoch deadline still
applies to it.

Upgrading wasmtime
------------------
``pyproject.toml`` pins wasmtime to one major version because of this
module. On an upgrade, check (``tests/runtime/test_capi_surface.py`` fails
loudly for the first three):

1. every name in :data:`PRIVATE_BINDINGS` still exists in
   ``wasmtime._bindings`` with the same ``argtypes``/``restype`` (the C API
   may change them in any major release), and the ``wasmtime._ffi`` structs,
   constants and C symbols used here (``wasmtime_val_t``,
   ``wasmtime_extern_t``, ``WASMTIME_I32``...) still exist;
2. ``wasmtime._func.maybe_raise_last_exn`` and
   ``wasmtime.WasmtimeError._from_ptr`` still exist (wasmtime-py's trampoline
   parks a Python exception raised in a host function and re-raises it later);
3. the error wasmtime reports when a Store's memory limit refuses memory
   (an instance whose initial memory is above the limit) still contains
   :data:`_MEMORY_LIMIT_TEXT`: it has no trap code, so it is recognised by
   its text;
4. the benchmark (``bench/run.py --only trivial``) still runs a cached
   trivial program in well under 100 µs.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
from collections.abc import Callable
from ctypes import byref
from types import TracebackType
from typing import Any, Literal

import wasmtime
from wasmtime import _bindings as _c
from wasmtime import _ffi as _f
from wasmtime._func import maybe_raise_last_exn as _maybe_raise_last_exn

from .._errors import Error

__all__ = [
    "GuestTrap", "TrapKind", "RawStore", "RawInstance", "RawLinker", "RawCaller", "HostCallHandler",
    "PRIVATE_BINDINGS", "set_async_stack_size", "configure_pooling", "increment_epoch_address",
    "clone_engine", "delete_engine", "raise_pending_exception", "wasmtime_version",
]

#: Every ``wasmtime._bindings`` function this module calls (the upgrade test checks their signatures).
PRIVATE_BINDINGS = (
    "_wasmtime_store_new", "_wasmtime_store_context", "_wasmtime_store_delete", "_wasmtime_store_limiter",
    "_wasmtime_context_set_fuel", "_wasmtime_context_get_fuel", "_wasmtime_context_set_epoch_deadline",
    "_wasmtime_table_new", "_wasmtime_linker_define", "_wasmtime_linker_define_instance",
    "_wasmtime_linker_instantiate", "_wasmtime_instance_export_get", "_wasmtime_func_call",
    "_wasmtime_memory_data", "_wasmtime_memory_data_size", "_wasmtime_caller_context",
    "_wasmtime_caller_export_get", "_wasmtime_trap_code", "_wasm_trap_message", "_wasm_trap_delete",
    "_wasm_byte_vec_delete", "_wasmtime_linker_define_func_unchecked", "_wasmtime_engine_clone",
    "_wasm_engine_delete",
    "_wasmtime_pooling_allocation_config_new", "_wasmtime_pooling_allocation_config_delete",
    "_wasmtime_pooling_allocation_config_total_memories_set",
    "_wasmtime_pooling_allocation_config_total_tables_set",
    "_wasmtime_pooling_allocation_config_total_core_instances_set",
    "_wasmtime_pooling_allocation_config_max_memory_size_set",
    "_wasmtime_pooling_allocation_config_table_elements_set",
    "_wasmtime_pooling_allocation_config_linear_memory_keep_resident_set",
    "_wasmtime_pooling_allocation_config_table_keep_resident_set",
    "_wasmtime_pooling_allocation_config_max_unused_warm_slots_set",
    "_wasmtime_pooling_allocation_config_total_stacks_set", "_wasmtime_pooling_allocation_strategy_set",
)

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
_define_unchecked = _c._wasmtime_linker_define_func_unchecked
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
_U32 = 0xFFFFFFFF
_ENV = b"env"
_TABLE = b"__indirect_function_table"

# -- traps: the one place wasmtime's codes and messages are read --------------

#: What stopped a guest, as far as wasmtime can tell: a run limit, or None (anything else).
TrapKind = Literal["fuel", "timeout", "stack", "memory"] | None

_TRAP_KINDS: dict[wasmtime.TrapCode, TrapKind] = {
    wasmtime.TrapCode.OUT_OF_FUEL: "fuel",
    wasmtime.TrapCode.INTERRUPT: "timeout",  # the epoch deadline
    wasmtime.TrapCode.STACK_OVERFLOW: "stack",
}
#: The Store's memory limit refusing a growth made by the host has no trap code, only this text.
_MEMORY_LIMIT_TEXT = "exceeds memory limits"


class GuestTrap(Exception):
    """What wasmtime reported from a guest call or an instantiation, read and freed.

    ``kind`` is the run limit that stopped the guest (:data:`TrapKind`),
    None for anything else (a bug in peerbox or in rt); ``message`` is
    wasmtime's text. A wasmtime error (not a trap) becomes a GuestTrap too,
    raised from the :class:`wasmtime.WasmtimeError` it was.
    """

    def __init__(self, kind: TrapKind, message: str) -> None:
        super().__init__(message)
        self.kind: TrapKind = kind
        self.message = message


def _trap_from_ptr(trap: Any) -> GuestTrap:
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
    if has_code:
        try:
            return GuestTrap(_TRAP_KINDS.get(wasmtime.TrapCode(int(code.value))), text)
        except ValueError:  # pragma: no cover - a code newer than wasmtime-py's enum
            pass
    return GuestTrap("memory" if _MEMORY_LIMIT_TEXT in text else None, text)


def _raise_for(err: Any, trap: Any) -> None:
    """Raise what a C call reported as a :class:`GuestTrap` (from wasmtime's error, if one)."""
    if err:
        exc = wasmtime.WasmtimeError._from_ptr(err)
        text = str(exc)
        raise GuestTrap("memory" if _MEMORY_LIMIT_TEXT in text else None, text) from exc
    if trap:
        raise _trap_from_ptr(trap)


def _raise_error(err: Any) -> None:
    """Raise a ``wasmtime_error_t`` from a set-up call (no guest code ran) as wasmtime's own error."""
    if err:
        raise wasmtime.WasmtimeError._from_ptr(err)


def raise_pending_exception() -> None:
    """Re-raise an exception wasmtime-py's trampoline parked (a KeyboardInterrupt in a host function)."""
    _maybe_raise_last_exn()


# -- calls --------------------------------------------------------------------


def _call_i32(ctx: Any, func_item: Any, args: tuple[int, ...], call: Any) -> int:
    """Call a ``(i32...) -> i32`` guest function; traps raise :class:`GuestTrap`."""
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


def _memory_span(ctx: Any, mem: Any) -> tuple[int, int]:
    base = _memory_data(ctx, byref(mem))
    return _addressof(base.contents), int(_memory_data_size(ctx, byref(mem)))


def _write(ctx: Any, mem: Any, ptr: int, data: bytes, what: str) -> None:
    base, size = _memory_span(ctx, mem)
    n = len(data)
    if ptr == 0 or ptr + n > size:
        raise Error(f"{what} returned {ptr}, outside guest memory (a bug in peerbox)")
    _memmove(base + ptr, data, n)


class RawInstance:
    """An instance in a :class:`RawStore` (valid while the Store is open)."""

    __slots__ = ("_inst", "_memory")

    def __init__(self) -> None:
        self._inst = _Instance()
        self._memory: Any = None


class RawStore:
    """One wasmtime Store, from creation to :meth:`close` (a context manager; ``close`` is idempotent).

    ``engine`` is an Engine pointer (``wasmtime.Engine.ptr()``), ``memory``
    the largest linear memory (bytes) the Store lets a guest grow to. Methods
    that run guest code or instantiate raise :class:`GuestTrap`; one that
    finds the guest breaking the ABI (a missing export, a pointer outside its
    memory) raises :class:`~peerbox.Error` (a bug in peerbox). Nothing may be
    used after close.
    """

    __slots__ = ("_store", "_ctx")

    def __init__(self, engine: Any, *, memory: int) -> None:
        self._store = _store_new(engine, None, _NO_FINALIZER)
        self._ctx = _store_context(self._store)
        _store_limiter(self._store, memory, -1, -1, -1, -1)

    def close(self) -> None:
        """Delete the Store and everything in it; later calls raise :class:`~peerbox.Error`."""
        store, self._store = self._store, None
        if store is not None:
            self._ctx = None
            _store_delete(store)

    @property
    def closed(self) -> bool:
        return self._store is None

    def _live(self) -> Any:
        """The Store's context; raises :class:`~peerbox.Error` once closed (wasmtime would crash)."""
        ctx = self._ctx
        if ctx is None:
            raise Error("a wasmtime Store used after close (a bug in peerbox)")
        return ctx

    def __enter__(self) -> RawStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def set_fuel(self, fuel: int) -> None:
        """Set the fuel left (a metered Engine only; raises :class:`GuestTrap` otherwise)."""
        _raise_for(_set_fuel(self._live(), fuel), None)

    def fuel_left(self) -> int:
        """The fuel left (a metered Engine only; raises :class:`GuestTrap` otherwise)."""
        left = ctypes.c_uint64()
        _raise_for(_get_fuel(self._live(), byref(left)), None)
        return int(left.value)

    def set_epoch_deadline(self, ticks: int) -> None:
        """Trap guest code once the Engine's epoch has advanced ``ticks`` past its value now."""
        _set_epoch_deadline(self._live(), ticks)

    def define_table(self, linker: RawLinker, table_type: wasmtime.TableType) -> None:
        """A new ``funcref`` table of ``table_type``, defined in ``linker`` as
        ``env.__indirect_function_table``."""
        table = _f.wasmtime_table_t()
        ctx = self._live()
        _raise_for(_table_new(ctx, table_type.ptr(), byref(_NULL_FUNCREF), byref(table)), None)
        item = _Extern(_EXTERN_TABLE, _ExternUnion(table=table))
        _raise_for(_linker_define(linker.ptr, ctx, _ENV, 3, _TABLE, len(_TABLE), byref(item)), None)

    def instantiate(self, linker: RawLinker, module: Any, *, define_as: bytes | None = None) -> RawInstance:
        """Instantiate ``module`` (a ``wasmtime.Module.ptr()``) with ``linker``'s definitions.

        Runs no guest code (no start functions). With ``define_as``, the
        instance is then defined in ``linker`` under that module name.
        """
        ctx = self._live()
        inst = RawInstance()
        trap = _TrapPtr()
        _raise_for(_linker_instantiate(linker.ptr, ctx, module, byref(inst._inst), byref(trap)), trap)
        if define_as is not None:
            err = _linker_define_instance(linker.ptr, ctx, define_as, len(define_as), byref(inst._inst))
            _raise_for(err, None)
        return inst

    def _export(self, inst: RawInstance, name: bytes, kind: int) -> Any:
        item = _Extern()
        found = _export_get(self._live(), byref(inst._inst), name, len(name), byref(item))
        item_kind: Any = item.kind
        if not found or item_kind != kind:
            raise Error(
                f"guest module has no export {name.decode()!r} of the expected kind (a bug in peerbox)"
            )
        return item

    def _memory(self, inst: RawInstance) -> Any:
        mem = inst._memory
        if mem is None:
            mem = inst._memory = self._export(inst, b"memory", _EXTERN_MEMORY).of.memory
        return mem

    def call(self, inst: RawInstance, name: bytes, *args: int, release_gil: bool = False) -> int:
        """Call ``inst``'s ``(i32...) -> i32`` export ``name``.

        Keeps the GIL unless ``release_gil`` (for ``main``, which runs as long
        as its limits let it). Raises :class:`GuestTrap` if it traps.
        """
        func = self._export(inst, name, _EXTERN_FUNC)
        return _call_i32(self._ctx, func, args, _func_call_releasing if release_gil else _func_call)

    def memory_size(self, inst: RawInstance) -> int:
        """Bytes of ``inst``'s exported linear memory."""
        return _memory_span(self._live(), self._memory(inst))[1]

    def write(self, inst: RawInstance, ptr: int, data: bytes, what: str) -> None:
        """Copy ``data`` into ``inst``'s memory at ``ptr`` (which ``what`` returned), bounds-checked."""
        _write(self._live(), self._memory(inst), ptr & _U32, data, what)

    def read_block(self, inst: RawInstance, ptr: int, what: str) -> bytes:
        """Read a ``{u32 len, bytes[len]}`` block at ``ptr`` (which ``what`` returned), bounds-checked."""
        base, size = _memory_span(self._live(), self._memory(inst))
        ptr &= _U32
        if ptr + 4 > size:
            raise Error(f"{what} returned {ptr}, outside guest memory (a bug in peerbox)")
        n = int.from_bytes(_string_at(base + ptr, 4), "little")
        if ptr + 4 + n > size:
            raise Error(
                f"{what} returned a block of {n} bytes past the end of guest memory (a bug in peerbox)"
            )
        return _string_at(base + ptr + 4, n)


# -- linkers and the raw host call ----------------------------------------------


class RawCaller:
    """The guest that made a host call, as the host call's handler sees it (valid during the call).

    Raises :class:`~peerbox.Error` if the caller lacks the exports the ABI
    requires or a pointer is outside its memory (a bug in peerbox), and
    :class:`GuestTrap` if a guest function it calls traps.
    """

    __slots__ = ("_caller", "_ctx", "_mem")

    def __init__(self, caller: Any) -> None:
        self._caller = caller
        self._ctx = _caller_context(caller)
        self._mem: Any = None

    def _memory(self) -> Any:
        mem = self._mem
        if mem is None:
            mem = self._mem = self._export(b"memory", _EXTERN_MEMORY).of.memory
        return mem

    def _export(self, name: bytes, kind: int) -> Any:
        item = _Extern()
        if not _caller_export_get(self._caller, name, len(name), byref(item)) or int(item.kind) != kind:
            raise Error(f"host call from a module without {name.decode()} (a bug in peerbox)")
        return item

    def memory_size(self) -> int:
        """Bytes of the caller's linear memory now (a guest call may grow it)."""
        return _memory_span(self._ctx, self._memory())[1]

    def read(self, ptr: int, length: int) -> bytes:
        """``length`` bytes of guest memory at ``ptr``; raises :class:`~peerbox.Error` outside it."""
        base, size = _memory_span(self._ctx, self._memory())
        if not (ptr > 0 and length >= 0 and ptr + length <= size):
            raise Error(f"host call arguments outside guest memory ({ptr}+{length}) (a bug in peerbox)")
        return _string_at(base + ptr, length)

    def write(self, ptr: int, data: bytes, what: str) -> None:
        """Copy ``data`` to guest memory at ``ptr`` (which ``what`` returned), bounds-checked."""
        _write(self._ctx, self._memory(), ptr, data, what)

    def call(self, name: bytes, *args: int) -> int:
        """Call the caller's ``(i32...) -> i32`` export ``name``, keeping the GIL."""
        return _call_i32(self._ctx, self._export(name, _EXTERN_FUNC), args, _func_call)


#: A raw host call: ``(caller, op, ptr, length) -> i64 result``; it must not raise (it may, but the
#: run then sees 0).
HostCallHandler = Callable[[RawCaller, int, int, int], int]


class RawLinker:
    """One thread's Linker for an Engine: shadowing allowed, host functions defined once.

    Runs redefine ``env.__indirect_function_table`` and ``rt`` in it
    (:meth:`RawStore.define_table`, ``instantiate(define_as=...)``). Holds
    the ctypes callbacks it was given for as long as it lives.
    """

    __slots__ = ("linker", "ptr", "_keep")

    def __init__(self, engine: wasmtime.Engine) -> None:
        self.linker = wasmtime.Linker(engine)
        self.linker.allow_shadowing = True
        self.ptr = self.linker.ptr()
        self._keep: list[Any] = []

    def define_func(self, module: str, name: str, ty: wasmtime.FuncType, fn: Callable[..., Any], *,
                    access_caller: bool = False) -> None:
        """Define a host function through wasmtime-py (it must catch everything it could raise)."""
        self.linker.define_func(module, name, ty, fn, access_caller=access_caller)

    def define_host_call(
        self, module: bytes, name: bytes, ty: wasmtime.FuncType, handler: HostCallHandler
    ) -> None:
        """Define ``handler`` as an unchecked ``(i32, i32, i32) -> i64`` host function.

        Never raises into wasmtime: anything ``handler`` raises makes the
        result 0. Raises :class:`wasmtime.WasmtimeError` if wasmtime refuses
        the definition.
        """

        def callback(env: Any, caller: Any, args: Any, nargs: int) -> int:
            result = 0
            try:
                result = handler(RawCaller(caller), args[0].i32, args[1].i32 & _U32, args[2].i32 & _U32)
            except BaseException:  # pragma: no cover - handlers catch everything themselves
                result = 0
            args[0].i64 = result
            return 0

        thunk = _c.wasmtime_func_unchecked_callback_t(callback)
        self._keep.append(thunk)  # the ctypes thunk must live as long as the linker
        _raise_error(_define_unchecked(self.ptr, module, len(module), name, len(name), ty.ptr(), thunk, None,
                                       _NO_FINALIZER))


# -- engines and their configuration ------------------------------------------


def increment_epoch_address() -> int:
    """The C address of ``wasmtime_engine_increment_epoch`` (a native timer calls it directly)."""
    address = ctypes.cast(_f.dll["wasmtime_engine_increment_epoch"], ctypes.c_void_p).value
    if not address:  # pragma: no cover - the symbol is part of wasmtime's C API
        raise OSError("wasmtime_engine_increment_epoch not found")
    return int(address)


def clone_engine(engine: Any) -> Any:
    """A new handle on the Engine behind ``engine`` (a pointer); a null pointer on failure."""
    return _engine_clone(engine)


def delete_engine(engine: Any) -> None:
    """Free an Engine handle from :func:`clone_engine`."""
    _engine_delete(engine)


def set_async_stack_size(config: wasmtime.Config, size: int) -> bool:
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


def configure_pooling(
    config: wasmtime.Config, slots: int, *, max_table_elements: int, keep_resident: int
) -> bool:
    """Switch ``config`` to the pooling allocator with ``slots`` runs' worth of slots.

    False (``config`` unchanged) if this wasmtime has no pooling C API.
    """
    try:
        pc = _c._wasmtime_pooling_allocation_config_new()
        try:
            _c._wasmtime_pooling_allocation_config_total_memories_set(pc, slots)
            _c._wasmtime_pooling_allocation_config_total_tables_set(pc, slots)
            _c._wasmtime_pooling_allocation_config_total_core_instances_set(pc, 2 * slots)
            _c._wasmtime_pooling_allocation_config_max_memory_size_set(pc, 4 << 30)
            _c._wasmtime_pooling_allocation_config_table_elements_set(pc, max_table_elements)
            _c._wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pc, keep_resident)
            _c._wasmtime_pooling_allocation_config_table_keep_resident_set(pc, 1 << 16)
            _c._wasmtime_pooling_allocation_config_max_unused_warm_slots_set(pc, min(slots, 16))
            # no async stacks: peerbox never runs guests asynchronously, and each would reserve
            # async_stack_size (max_wasm_stack + 1 MiB) of address space
            _c._wasmtime_pooling_allocation_config_total_stacks_set(pc, 0)
            _c._wasmtime_pooling_allocation_strategy_set(config.ptr(), pc)
        finally:
            _c._wasmtime_pooling_allocation_config_delete(pc)
    except (AttributeError, OSError):  # pragma: no cover - a wasmtime without the pooling C API
        return False
    return True


def wasmtime_version() -> str:
    """The installed wasmtime-py's version ("unknown" if its metadata is missing)."""
    try:
        return importlib.metadata.version("wasmtime")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - wasmtime without metadata
        return "unknown"
