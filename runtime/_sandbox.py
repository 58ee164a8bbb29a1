"""The sandbox: one wasmtime Engine, and a fresh Store for every run.

A :class:`Sandbox` owns everything that lives longer than one run, each with
an explicit lifetime that ends at :meth:`Sandbox.close`:

* the wasmtime ``Engine``, configured with epoch interruption (for
  timeouts), fuel metering only if ``metered=True`` (it costs ~15% of guest
  speed; fuel-limited runs use :meth:`Sandbox.metered_twin`), a
  maximum wasm stack (an *Engine* setting in wasmtime, hence a Sandbox
  setting here: ``Sandbox(max_wasm_stack=...)``, default 1 MiB), Cranelift
  at ``speed``, and wasmtime's *pooling* instance allocator: linear memories
  and tables live in preallocated slots that are reused with their first
  pages kept resident, which roughly halves the cost of a run compared with
  mapping fresh memory every time. The pool has ``max_concurrent_runs``
  slots (default 64); more concurrent runs than that wait for a slot. Set
  ``PEERBOX_POOLING=0`` (or pass ``pooling=False``) to use plain on-demand
  allocation instead (it is used automatically when the address space is
  limited by ``ulimit -v``, since the pool reserves ~4 GiB of *virtual*
  address space per slot);
* the compiled guest runtime module (``rt.wasm``), compiled once (or loaded
  from the disk cache);
* the epoch ticker, a daemon thread that advances the engine's epoch every
  :data:`EPOCH_TICK` seconds once a run with a timeout has started; it never
  keeps the process alive and stops on ``close()``;
* one ``Linker`` per thread holding the host functions (``peerbox_rt``
  module: ``fmt_f64``, ``parse_f64``, ``pow_f64``), registered once.

A run (:meth:`Sandbox.run`) creates a Store with the run's memory limit, fuel
and epoch deadline, a ``funcref`` table shared by both modules as
``env.__indirect_function_table``, instantiates ``rt`` and then the script
module, writes the input CBOR into guest memory in one copy, calls ``main``,
reads the output in one copy and deletes the Store, so nothing survives from
one run to the next.

The per-run path talks to wasmtime's C API through wasmtime-py's ctypes
bindings (``wasmtime._bindings``) directly: the public wrappers convert every
value through several Python objects and would cost more than the whole run
should (a cached trivial run is meant to stay well under 100 µs). wasmtime is
pinned to one major version in ``pyproject.toml`` for that reason.

No ``InstancePre``: rt imports the run's own function table and the script
imports the run's own rt instance, both Store-bound, so neither module can
be pre-linked. Instead each thread keeps one ``Linker`` (host functions
registered once) and each run shadows ``env.__indirect_function_table`` and
the ``rt`` instance in it: name resolution then happens in Rust, which
measured faster than building explicit import lists in Python.

Host functions must never raise into wasmtime (wasmtime-py parks such an
exception in a module global and re-raises it later, possibly elsewhere):
each catches everything and returns an error value to the guest.

Threads: runs may execute on any thread, concurrently (wasmtime releases the
GIL while guest code runs). Wasm code runs on the calling thread's native
stack, so a thread that runs scripts needs a stack comfortably larger than
``max_wasm_stack`` (the main thread's 8 MiB is plenty for the 1 MiB default;
for worker threads set ``threading.stack_size`` accordingly).
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import threading
import weakref
from ctypes import byref
from typing import Any, NamedTuple

import wasmtime
from wasmtime import _bindings as _c
from wasmtime import _ffi as _f

from ._cache import LRU, ModuleCache, default_cache_dir
from ._capi import (  # the raw wasmtime C-API layer and the guest's host functions
    _ENV, _EXTERN_FUNC, _EXTERN_MEMORY, _EXTERN_TABLE, _Extern, _ExternUnion, _Instance, _NO_FINALIZER,
    _NULL_FUNCREF, _RT, _RunState, _TABLE, _TRAP, _TrapPtr, _call_i32, _define_unchecked, _export, _fmt_f64,
    _get_fuel, _host_call_callback, _linker_define, _linker_define_instance, _linker_instantiate, _memmove,
    _memory_span, _parse_f64, _pow_f64, _raise_for, _read_block, _set_epoch_deadline, _set_fuel,
    _store_context, _store_delete, _store_limiter, _store_new, _table_import_min, _table_new, pow_f64,
)
from ._errors import Error, LimitExceeded, ScriptError, UsageError
from ._values import decode_log, decode_output
from .hostcalls import Dispatch

__all__ = [
    "Sandbox",
    "ScriptModule",
    "Outcome",
    "DEFAULT_MAX_WASM_STACK",
    "EPOCH_TICK",
    "CLOSURE_TABLE_BASE",
    "MIN_TABLE_SIZE",
    "MAX_TABLE_SIZE",
    "DEFAULT_CONCURRENT_RUNS",
    "pow_f64",
]

#: Default maximum wasm stack per Engine (bytes). Deep but not runaway recursion fits.
DEFAULT_MAX_WASM_STACK = 1 << 20
MIN_WASM_STACK = 64 << 10
MAX_WASM_STACK = 64 << 20
#: Default number of runs one Sandbox executes at the same time (pool slots).
DEFAULT_CONCURRENT_RUNS = 64
#: Bytes of each pooled linear memory kept resident (reset with memset) between runs.
_KEEP_RESIDENT = 1 << 20
#: Seconds between two epoch ticks: the granularity of timeouts.
EPOCH_TICK = 0.01
#: The script module's closures start at this table index (see ABI.md).
CLOSURE_TABLE_BASE = 64
MIN_TABLE_SIZE = 128
#: Largest function table a script may need (64 + its closures).
MAX_TABLE_SIZE = 1 << 16

_UNLIMITED_FUEL = 1 << 62
_NO_DEADLINE = 1 << 62
_SALVAGE_FUEL = 100_000_000  # fuel granted after a trap to read the log
_RT_CACHE_PREFIX = "rt-"

class Outcome(NamedTuple):
    """What a successful run produced."""

    value: Any
    log: list[str]
    fuel_used: int | None
    peak_memory: int = 0  # bytes of guest linear memory at the end (memory only grows)


class ScriptModule:
    """A compiled script module, checked and ready to run in its Sandbox.

    Holds the wasmtime ``Module`` and what every run needs precomputed
    (the table type). Created by :meth:`Sandbox.prepare`.
    """

    __slots__ = ("module", "table_size", "_table_type", "_module_ptr", "__weakref__")

    def __init__(self, module: wasmtime.Module, table_size: int) -> None:
        self.module = module
        self.table_size = table_size
        self._table_type = wasmtime.TableType(wasmtime.ValType.funcref(), wasmtime.Limits(table_size, None))
        self._module_ptr = module.ptr()


# -- the epoch ticker ---------------------------------------------------------


class _EpochTicker:
    """A daemon thread advancing an engine's epoch every ``interval`` seconds."""

    def __init__(self, engine: wasmtime.Engine, interval: float) -> None:
        self._engine = engine
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ensure_running(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            if self._stop.is_set():
                return
            if self._thread is None or not self._thread.is_alive():  # also after os.fork()
                self._thread = threading.Thread(target=self._loop, name="peerbox-epoch", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        engine, stop, interval = self._engine, self._stop, self._interval
        while not stop.wait(interval):
            engine.increment_epoch()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread


def _rt_wasm_bytes() -> bytes:
    from peerbox.wasm_guests import rt_wasm_bytes

    try:
        return rt_wasm_bytes()
    except OSError as exc:
        raise Error(f"the guest runtime rt.wasm is missing (a broken install of peerbox): {exc}") from None


class Sandbox:
    """An Engine, the compiled guest runtime and the epoch ticker.

    ``max_wasm_stack`` (bytes) caps the wasm stack of every run (default
    :data:`DEFAULT_MAX_WASM_STACK`); ``cache_dir`` is where compiled modules
    are kept (default ``$PEERBOX_CACHE_DIR`` or ``~/.cache/peerbox/modules``),
    ``disk_cache=False`` keeps nothing on disk; ``memory_cache_size`` bounds
    the in-memory cache of compiled programs; ``max_concurrent_runs`` is how
    many runs may execute at once (more wait); ``pooling`` picks wasmtime's
    pooling allocator (default: on, unless ``PEERBOX_POOLING=0``).

    Use it as a context manager or call :meth:`close`; a closed sandbox
    refuses to compile or run (:class:`~peerbox.UsageError`).
    """

    def __init__(
        self,
        *,
        max_wasm_stack: int = DEFAULT_MAX_WASM_STACK,
        cache_dir: str | os.PathLike[str] | None = None,
        disk_cache: bool = True,
        memory_cache_size: int = 256,
        max_concurrent_runs: int = DEFAULT_CONCURRENT_RUNS,
        pooling: bool | None = None,
        metered: bool = False,
    ) -> None:
        if (
            type(max_wasm_stack) is not int
            or not MIN_WASM_STACK <= max_wasm_stack <= MAX_WASM_STACK
        ):
            raise UsageError(
                f"max_wasm_stack must be an int between {MIN_WASM_STACK} and {MAX_WASM_STACK} bytes, "
                f"got {max_wasm_stack!r}"
            )
        config = wasmtime.Config()
        config.consume_fuel = bool(metered)
        config.epoch_interruption = True
        config.max_wasm_stack = max_wasm_stack
        config.cranelift_opt_level = "speed"
        if type(max_concurrent_runs) is not int or not 1 <= max_concurrent_runs <= 4096:
            raise UsageError(f"max_concurrent_runs must be an int in [1, 4096], got {max_concurrent_runs!r}")
        if pooling is None:
            pooling = os.environ.get("PEERBOX_POOLING", "1") != "0" and _address_space_unlimited()
        self.pooling = bool(pooling) and _configure_pooling(config, max_concurrent_runs)
        self._slots = threading.BoundedSemaphore(max_concurrent_runs)
        self.max_wasm_stack = max_wasm_stack
        self.metered = bool(metered)
        self._options = dict(max_wasm_stack=max_wasm_stack, cache_dir=cache_dir, disk_cache=disk_cache,
                             memory_cache_size=memory_cache_size,
                             max_concurrent_runs=max_concurrent_runs, pooling=pooling)
        self._twin: Sandbox | None = None
        self._engine = wasmtime.Engine(config)
        self._engine_ptr = self._engine.ptr()
        from pathlib import Path

        directory = None
        if disk_cache:
            directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.disk = ModuleCache(directory)
        self.programs: LRU[Any] = LRU(memory_cache_size)
        self._ticker = _EpochTicker(self._engine, EPOCH_TICK)
        # Stop the ticker when the Sandbox is garbage-collected or at interpreter exit,
        # whichever comes first (the finalizer holds the ticker, not the Sandbox).
        self._finalizer = weakref.finalize(self, self._ticker.stop)
        self._tls = threading.local()
        self._lock = threading.Lock()
        self._closed = False
        self._rt_bytes: bytes | None = None
        self._rt_sha256: str | None = None
        self._rt_module: wasmtime.Module | None = None
        self._rt_module_ptr: Any = None
        self._rt_table_min = 0
        i32, f64 = wasmtime.ValType.i32(), wasmtime.ValType.f64()
        self._ty_fmt = wasmtime.FuncType([f64, i32], [i32])
        self._ty_parse = wasmtime.FuncType([i32, i32, i32], [i32])
        self._ty_pow = wasmtime.FuncType([f64, f64], [f64])
        self._ty_call = wasmtime.FuncType([i32, i32, i32], [wasmtime.ValType.i64()])

    # -- lifetime -------------------------------------------------------------

    def close(self) -> None:
        """Stop the epoch ticker and refuse further use. Idempotent."""
        self._closed = True
        self._finalizer()
        self.programs.clear()
        if self._twin is not None:
            self._twin.close()

    def metered_twin(self) -> Sandbox:
        """A sandbox like this one that meters fuel (this one itself if it does).

        Fuel metering is an Engine setting and costs ~15% of guest speed, so
        sandboxes meter only on request; runs with a fuel limit go to the twin.
        """
        if self.metered:
            return self
        with self._lock:
            self._check_open()
            if self._twin is None:
                # on-demand memory, not a second pool of reserved slots: metered runs are the rarer kind
                options = {**self._options, "pooling": False}
                self._twin = Sandbox(metered=True, **options)  # type: ignore[arg-type]
            return self._twin

    @property
    def engine_id(self) -> str:
        """What compiled modules depend on: the rt.wasm hash and the engine's fuel setting."""
        return f"{self.rt_sha256}-{'metered' if self.metered else 'unmetered'}"

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("this peerbox Sandbox has been closed")

    @property
    def engine(self) -> wasmtime.Engine:
        return self._engine

    @property
    def ticker_thread(self) -> threading.Thread | None:
        """The epoch ticker thread, once started (for tests and diagnostics)."""
        return self._ticker.thread

    # -- the guest runtime ----------------------------------------------------

    @property
    def rt_sha256(self) -> str:
        """Hex SHA-256 of the ``rt.wasm`` this sandbox runs (part of cache keys)."""
        if self._rt_sha256 is None:
            self._rt_bytes = _rt_wasm_bytes()
            self._rt_sha256 = hashlib.sha256(self._rt_bytes).hexdigest()
        return self._rt_sha256

    def _rt(self) -> Any:
        """The compiled rt module's pointer (compiled or loaded on first use)."""
        if self._rt_module_ptr is not None:
            return self._rt_module_ptr
        with self._lock:
            if self._rt_module is None:
                sha = self.engine_id
                assert self._rt_bytes is not None
                name = f"{_RT_CACHE_PREFIX}{sha}-{wasmtime.__name__}{_wasmtime_version()}"
                module = None
                blob = self.disk.load_blob(name)
                if blob is not None:
                    try:
                        module = wasmtime.Module.deserialize(self._engine, blob)
                    except wasmtime.WasmtimeError:
                        self.disk.remove(name)
                if module is None:
                    try:
                        module = wasmtime.Module(self._engine, self._rt_bytes)
                    except wasmtime.WasmtimeError as exc:
                        raise Error(
                            f"the guest runtime rt.wasm does not compile (a bug in peerbox): {exc}"
                        ) from None
                    self.disk.save_blob(name, bytes(module.serialize()))
                self._rt_table_min = _table_import_min(module)
                self._rt_module = module
                self._rt_module_ptr = module.ptr()
        return self._rt_module_ptr

    def _linker(self) -> Any:
        """This thread's Linker (host functions defined once per thread)."""
        linker = getattr(self._tls, "linker", None)
        if linker is None:
            linker = wasmtime.Linker(self._engine)
            linker.allow_shadowing = True
            linker.define_func("peerbox_rt", "fmt_f64", self._ty_fmt, _fmt_f64, access_caller=True)
            linker.define_func("peerbox_rt", "parse_f64", self._ty_parse, _parse_f64, access_caller=True)
            linker.define_func("peerbox_rt", "pow_f64", self._ty_pow, _pow_f64)
            callback = _host_call_callback(self._tls)
            self._tls.host_callback = callback  # the ctypes thunk must live as long as the linker
            err = _define_unchecked(linker.ptr(), b"peerbox", 7, b"call", 4, self._ty_call.ptr(), callback,
                                    None, _NO_FINALIZER)
            if err:
                raise wasmtime.WasmtimeError._from_ptr(err)
            self._tls.linker = linker
            self._tls.linker_ptr = linker.ptr()
        return self._tls.linker_ptr

    # -- compiling ------------------------------------------------------------

    def compile_wat(self, wat: str) -> wasmtime.Module:
        """Compile the compiler's WAT output to a wasmtime Module.

        Raises :class:`~peerbox.Error`: WAT the compiler produced that does
        not assemble or validate is a bug in peerbox.
        """
        self._check_open()
        try:
            return wasmtime.Module(self._engine, wat)
        except wasmtime.WasmtimeError as exc:
            raise Error(f"the compiler produced an invalid module (a bug in peerbox): {exc}") from None

    def deserialize(self, data: bytes) -> wasmtime.Module | None:
        """A Module from ``Module.serialize()`` bytes, or None if incompatible."""
        self._check_open()
        try:
            return wasmtime.Module.deserialize(self._engine, data)
        except wasmtime.WasmtimeError:
            return None

    def prepare(self, module: wasmtime.Module) -> ScriptModule:
        """Check a script module against the ABI and precompute what runs need.

        Raises :class:`~peerbox.Error` if the module does not export ``main``
        with type ``(i32, i32) -> i32`` (a compiler bug).
        """
        self._rt()
        main = None
        for exp in module.exports:
            if exp.name == "main":
                main = exp.type
        if not isinstance(main, wasmtime.FuncType) or [str(t) for t in main.params] != ["i32", "i32"] or [
            str(t) for t in main.results
        ] != ["i32"]:
            raise Error("the compiled module has no `main(i32, i32) -> i32` export (a bug in peerbox)")
        size = max(MIN_TABLE_SIZE, _table_import_min(module), self._rt_table_min)
        if size > MAX_TABLE_SIZE:
            raise Error(f"the script needs a function table of {size} entries (at most {MAX_TABLE_SIZE})")
        return ScriptModule(module, size)

    # -- running --------------------------------------------------------------

    def run(
        self,
        script: ScriptModule,
        input_cbor: bytes,
        *,
        timeout: float | None,
        memory: int,
        fuel: int | None,
        files: tuple[str, ...],
        host: Dispatch | None = None,
    ) -> Outcome:
        """Run ``script`` once in a fresh Store and return its value and log.

        Raises :class:`~peerbox.ScriptError` for an uncaught script error,
        :class:`~peerbox.LimitExceeded` when a limit stops it, and
        :class:`~peerbox.Error` for anything that is a bug in peerbox.
        """
        if self._closed:
            self._check_open()
        rt_ptr = self._rt_module_ptr if self._rt_module_ptr is not None else self._rt()
        linker = self._linker()
        if fuel is not None and not self.metered:
            raise UsageError("this Sandbox does not meter fuel: run fuel-limited programs in metered_twin()")
        budget = _UNLIMITED_FUEL if fuel is None else fuel
        if timeout is None:
            deadline = _NO_DEADLINE
        else:
            self._ticker.ensure_running()
            deadline = math.ceil(timeout / EPOCH_TICK) + 1
        slots = self._slots
        slots.acquire()
        outer = getattr(self._tls, "run", None)  # a run may start another from a host call
        self._tls.run = _RunState(host)
        try:
            data, left, peak = self._run_in_fresh_store(script, input_cbor, linker, rt_ptr, budget, deadline,
                                                  timeout=timeout, memory=memory, fuel=fuel)
        finally:
            self._tls.run = outer
            slots.release()
        result = decode_output(data)
        fuel_used = budget - left if self.metered else None
        if result["ok"]:
            return Outcome(result.get("value"), result.get("log", []), fuel_used, peak)
        err = result["error"]
        index = err.get("file")
        line = err.get("line")
        raise ScriptError(
            err["kind"],
            str(err.get("message", err["kind"])),
            file=files[index] if type(index) is int and 0 <= index < len(files) else None,
            line=line if type(line) is int and line > 0 else None,
            value=err.get("value"),
            log=result.get("log", []),
        )

    def _run_in_fresh_store(
        self,
        script: ScriptModule,
        input_cbor: bytes,
        linker: Any,
        rt_ptr: Any,
        budget: int,
        deadline: int,
        *,
        timeout: float | None,
        memory: int,
        fuel: int | None,
    ) -> tuple[bytes, int, int]:
        """Instantiate rt and the script in a new Store, call ``main``; (output, fuel left, memory size)."""
        store = _store_new(self._engine_ptr, None, _NO_FINALIZER)
        try:
            ctx = _store_context(store)
            rt = None
            try:
                _store_limiter(store, memory, -1, -1, -1, -1)
                if self.metered:
                    _raise_for(_set_fuel(ctx, budget), None)
                _set_epoch_deadline(ctx, deadline)
                table = _f.wasmtime_table_t()
                ttype = script._table_type.ptr()
                _raise_for(_table_new(ctx, ttype, byref(_NULL_FUNCREF), byref(table)), None)
                item = _Extern(_EXTERN_TABLE, _ExternUnion(table=table))
                _raise_for(_linker_define(linker, ctx, _ENV, 3, _TABLE, len(_TABLE), byref(item)), None)
                trap = _TrapPtr()
                inst = _Instance()
                _raise_for(_linker_instantiate(linker, ctx, rt_ptr, byref(inst), byref(trap)), trap)
                rt = inst
                _raise_for(_linker_define_instance(linker, ctx, _RT, 2, byref(rt)), None)
                sinst = _Instance()
                mod = script._module_ptr
                _raise_for(_linker_instantiate(linker, ctx, mod, byref(sinst), byref(trap)), trap)
                mem = _export(ctx, rt, b"memory", _EXTERN_MEMORY).of.memory
                n = len(input_cbor)
                ptr = _call_i32(ctx, _export(ctx, rt, b"rt_alloc", _EXTERN_FUNC), n) & 0xFFFFFFFF
                base, size = _memory_span(ctx, mem)
                if ptr == 0 or ptr + n > size:
                    raise Error(f"rt_alloc({n}) returned {ptr}, outside guest memory (a bug in peerbox)")
                _memmove(base + ptr, input_cbor, n)
                out = _call_i32(ctx, _export(ctx, sinst, b"main", _EXTERN_FUNC), ptr, n)
                data = _read_block(ctx, mem, out, "main")
                left = ctypes.c_uint64()
                if self.metered:
                    _raise_for(_get_fuel(ctx, byref(left)), None)
                return data, int(left.value), _memory_span(ctx, mem)[1]
            except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                raise self._translate(exc, ctx, rt, timeout=timeout, memory=memory, fuel=fuel) from None
        finally:
            _store_delete(store)

    def _translate(
        self,
        exc: wasmtime.Trap | wasmtime.WasmtimeError,
        ctx: Any,
        rt: Any,
        *,
        timeout: float | None,
        memory: int,
        fuel: int | None,
    ) -> Error:
        """The ONE place where wasmtime traps and errors become peerbox errors."""
        from wasmtime._func import maybe_raise_last_exn

        maybe_raise_last_exn()  # a KeyboardInterrupt caught by wasmtime-py's trampoline
        code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
        text = str(exc)
        fault = 0
        log: list[str] = []
        if rt is not None:
            if self.metered:
                _raise_for(_set_fuel(ctx, _SALVAGE_FUEL), None)
            _set_epoch_deadline(ctx, _NO_DEADLINE)
            try:
                fault = _call_i32(ctx, _export(ctx, rt, b"rt_fault", _EXTERN_FUNC))
            except (wasmtime.Trap, wasmtime.WasmtimeError, Error):
                fault = 0
            try:
                out = _call_i32(ctx, _export(ctx, rt, b"rt_log_out", _EXTERN_FUNC))
                mem = _export(ctx, rt, b"memory", _EXTERN_MEMORY).of.memory
                log = decode_log(_read_block(ctx, mem, out, "rt_log_out"))
            except (wasmtime.Trap, wasmtime.WasmtimeError, Error):
                log = []
        state: _RunState | None = getattr(self._tls, "run", None)
        if state is not None and state.trap is not None:  # the real cause, not rt's host_stop
            code, text = state.trap.trap_code, str(state.trap)
        if fault == 2 and state is not None and state.stop is not None:
            stop = state.stop
            if isinstance(stop, LimitExceeded):
                stop.log = log
            return stop
        if code == _TRAP.OUT_OF_FUEL:
            return LimitExceeded("fuel", f"script ran out of fuel (limit: {fuel} units)", log=log)
        if code == _TRAP.INTERRUPT:
            return LimitExceeded("timeout", f"script exceeded its {timeout} s timeout", log=log)
        if code == _TRAP.STACK_OVERFLOW:
            return LimitExceeded(
                "stack",
                f"script exceeded the wasm stack limit ({self.max_wasm_stack} bytes): runaway recursion?",
                log=log,
            )
        if fault == 1 or (code is None and "exceeds memory limits" in text):
            return LimitExceeded("memory", f"script exceeded its memory limit ({memory} bytes)", log=log)
        return Error(f"internal error: the sandbox trapped unexpectedly (a bug in peerbox): {text.strip()}")


def _address_space_unlimited() -> bool:
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        return soft == resource.RLIM_INFINITY
    except (ImportError, OSError, ValueError):  # pragma: no cover - not on Linux
        return False


def _configure_pooling(config: wasmtime.Config, slots: int) -> bool:
    """Switch ``config`` to the pooling allocator with ``slots`` runs' worth of slots."""
    try:
        pc = _c.wasmtime_pooling_allocation_config_new()
        try:
            _c.wasmtime_pooling_allocation_config_total_memories_set(pc, slots)
            _c.wasmtime_pooling_allocation_config_total_tables_set(pc, slots)
            _c.wasmtime_pooling_allocation_config_total_core_instances_set(pc, 2 * slots)
            _c.wasmtime_pooling_allocation_config_max_memory_size_set(pc, 4 << 30)
            _c.wasmtime_pooling_allocation_config_table_elements_set(pc, MAX_TABLE_SIZE)
            _c.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pc, _KEEP_RESIDENT)
            _c.wasmtime_pooling_allocation_config_table_keep_resident_set(pc, 1 << 16)
            _c.wasmtime_pooling_allocation_config_max_unused_warm_slots_set(pc, min(slots, 16))
            _c.wasmtime_pooling_allocation_strategy_set(config.ptr(), pc)
        finally:
            _c.wasmtime_pooling_allocation_config_delete(pc)
    except (AttributeError, OSError):  # pragma: no cover - a wasmtime without the pooling C API
        return False
    return True


def _wasmtime_version() -> str:
    try:
        from importlib.metadata import version

        return version("wasmtime")
    except Exception:  # pragma: no cover
        return "unknown"

