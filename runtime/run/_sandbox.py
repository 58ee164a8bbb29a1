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
* the epoch clock (:mod:`peerbox.run._epoch`): a POSIX timer that advances the
  engine's epoch every :data:`EPOCH_TICK` seconds from a native thread while
  runs with a timeout are in flight, so timeouts hold however busy Python
  is (a daemon Python thread where POSIX timers are unavailable); it never
  keeps the process alive and is deleted on ``close()``;
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
stack, so a run checks (once per thread) that the thread's stack holds
``2 * max_wasm_stack + 2 MiB`` (:mod:`peerbox.run._stack`) and otherwise runs
on a helper thread with a stack that large: a too-small native stack would
kill the process with SIGSEGV instead of ending the run with a "stack"
limit. (The main thread's 8 MiB is plenty for the 1 MiB default; threads
that run many scripts with a larger ``max_wasm_stack`` should be created
with a large enough ``threading.stack_size`` to avoid the helper thread.)

Options are validated before wasmtime sees them: wasmtime's C API turns an
Engine configuration it refuses into a Rust panic that aborts the process
(a ``max_wasm_stack`` above ``async_stack_size`` did, exit 134), so every
value here is checked and out-of-range ones raise :class:`~peerbox.UsageError`.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import math
import os
import threading
import time
import weakref
from pathlib import Path
from ctypes import byref
from typing import Any, NamedTuple

import wasmtime
from wasmtime import _ffi as _f
from wasmtime._func import maybe_raise_last_exn

from ..wasm_guests import rt_wasm_bytes
from ._cache import LRU, ModuleCache, default_cache_dir
from ._capi import (  # the raw wasmtime C-API layer and the guest's host functions
    _ENV, _EXTERN_FUNC, _EXTERN_MEMORY, _EXTERN_TABLE, _Extern, _ExternUnion, _Instance, _NO_FINALIZER,
    _NULL_FUNCREF, _RT, _RunState, _TABLE, _TRAP, _TrapPtr, _GuestTrap, _call_i32, _call_i32_releasing,
    _define_unchecked, _export, _fmt_f64,
    _get_fuel, _host_call_callback, _linker_define, _linker_define_instance, _linker_instantiate, _memmove,
    _memory_span, _parse_f64, _pow_f64, _raise_for, _read_block, _set_async_stack_size, _set_epoch_deadline,
    _set_fuel, _store_context, _store_delete, _store_limiter, _store_new, _table_import_min, _table_new,
    pow_f64,
)
from ._epoch import EPOCH_TICK, ClockKind, EpochClock
from .._errors import Error, LimitExceeded, ScriptError, UsageError
from ._sandbox_config import (
    _DEFAULT_ASYNC_STACK, MAX_CONCURRENT_RUNS, MAX_FUEL, MAX_MEMORY, MAX_TABLE_SIZE, MAX_TIMEOUT,
    MAX_WASM_STACK, MIN_WASM_STACK, address_space_unlimited, check_options, check_run_limits,
    configure_pooling, round_up,
)
from ._stack import call_with_stack, native_stack_needed, thread_stack_size
from ._values import decode_log, decode_output
from ..hostcalls import Dispatch

__all__ = [
    "Sandbox",
    "ScriptModule",
    "Outcome",
    "DEFAULT_MAX_WASM_STACK",
    "EPOCH_TICK",
    "CLOSURE_TABLE_BASE",
    "MIN_TABLE_SIZE",
    "MIN_WASM_STACK",
    "MAX_WASM_STACK",
    "MAX_MEMORY",
    "MAX_FUEL",
    "MAX_TIMEOUT",
    "MAX_CONCURRENT_RUNS",
    "MAX_TABLE_SIZE",
    "DEFAULT_CONCURRENT_RUNS",
    "pow_f64",
]

#: Default maximum wasm stack per Engine (bytes). Deep but not runaway recursion fits.
DEFAULT_MAX_WASM_STACK = 1 << 20
#: Default number of runs one Sandbox executes at the same time (pool slots).
DEFAULT_CONCURRENT_RUNS = 64
#: The script module's closures start at this table index (see ABI.md).
CLOSURE_TABLE_BASE = 64
MIN_TABLE_SIZE = 128

_UNLIMITED_FUEL = 1 << 62
_NO_DEADLINE = 1 << 62
_SALVAGE_FUEL = 100_000_000  # fuel granted after a trap to read the log
_SALVAGE_TICKS = 100  # epoch ticks granted after a trap to read the log
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


def _rt_wasm_bytes() -> bytes:
    try:
        return rt_wasm_bytes()
    except OSError as exc:
        raise Error(f"the guest runtime rt.wasm is missing (a broken install of peerbox): {exc}") from None


class Sandbox:
    """An Engine, the compiled guest runtime and the epoch clock.

    ``max_wasm_stack`` (bytes) caps the wasm stack of every run (default
    :data:`DEFAULT_MAX_WASM_STACK`, any int from :data:`MIN_WASM_STACK` to
    :data:`MAX_WASM_STACK`); ``cache_dir`` is where compiled modules
    are kept (default ``$PEERBOX_CACHE_DIR`` or ``~/.cache/peerbox/modules``),
    ``disk_cache=False`` keeps nothing on disk; ``memory_cache_size`` bounds
    the in-memory cache of compiled programs; ``max_concurrent_runs`` is how
    many runs may execute at once (more wait); ``pooling`` picks wasmtime's
    pooling allocator (default: on, unless ``PEERBOX_POOLING=0``);
    ``epoch_clock`` is what drives timeouts: ``"auto"`` (a native POSIX
    timer where available, else a Python thread), ``"posix-timer"`` or
    ``"thread"`` (see :mod:`peerbox.run._epoch`).

    Raises :class:`~peerbox.UsageError` for an option out of its range (the
    message names the range), before wasmtime sees it. Use it as a context
    manager or call :meth:`close`; a closed sandbox refuses to compile or run
    (:class:`~peerbox.UsageError`).
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
        epoch_clock: ClockKind = "auto",
    ) -> None:
        check_options(max_wasm_stack, cache_dir, disk_cache, memory_cache_size, max_concurrent_runs, pooling,
                       metered)
        config = wasmtime.Config()
        config.consume_fuel = bool(metered)
        config.epoch_interruption = True
        # wasmtime refuses max_wasm_stack > async_stack_size with a panic, even for sync-only engines
        async_stack = max(_DEFAULT_ASYNC_STACK, round_up(max_wasm_stack + (1 << 20)))
        if not _set_async_stack_size(config, async_stack) and max_wasm_stack > _DEFAULT_ASYNC_STACK:
            raise UsageError(  # pragma: no cover - a wasmtime without async support
                f"max_wasm_stack can be at most {_DEFAULT_ASYNC_STACK} bytes with this wasmtime, "
                f"got {max_wasm_stack}"
            )
        config.max_wasm_stack = max_wasm_stack
        config.cranelift_opt_level = "speed"
        if pooling is None:
            pooling = os.environ.get("PEERBOX_POOLING", "1") != "0" and address_space_unlimited()
        self.pooling = bool(pooling) and configure_pooling(config, max_concurrent_runs)
        self._slots = threading.BoundedSemaphore(max_concurrent_runs)
        self.max_wasm_stack = max_wasm_stack
        self.metered = bool(metered)
        self._options = dict(max_wasm_stack=max_wasm_stack, cache_dir=cache_dir, disk_cache=disk_cache,
                             memory_cache_size=memory_cache_size,
                             max_concurrent_runs=max_concurrent_runs, pooling=pooling)
        self._twin: Sandbox | None = None
        self._engine = wasmtime.Engine(config)
        self._engine_ptr = self._engine.ptr()
        directory = None
        if disk_cache:
            directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.disk = ModuleCache(directory)
        self.programs: LRU[Any] = LRU(memory_cache_size)
        self._clock = EpochClock(self._engine, self._engine_ptr, epoch_clock)
        self._stack_needed = native_stack_needed(max_wasm_stack)
        # Delete the timer when the Sandbox is garbage-collected or at interpreter exit,
        # whichever comes first (the finalizer holds the clock, not the Sandbox).
        self._finalizer = weakref.finalize(self, self._clock.close)
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
        """Stop the epoch clock (once runs in flight end) and refuse further use. Idempotent."""
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
                options = {**self._options, "pooling": False, "epoch_clock": self._clock.kind}
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
        """The fallback epoch ticker thread, once started (None with the POSIX timer)."""
        return self._clock.thread

    @property
    def epoch_clock(self) -> str:
        """What drives timeouts: ``"posix-timer"`` (native) or ``"thread"`` (the Python fallback)."""
        return self._clock.kind

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

        ``timeout`` (seconds, counted from this call, not counting a wait for a free slot) is
        ``None`` or a number in (0, :data:`MAX_TIMEOUT`], ``memory`` an int
        in [0, :data:`MAX_MEMORY`], ``fuel`` ``None`` or an int in [0,
        :data:`MAX_FUEL`]. Runs on a helper thread with a large enough native
        stack if the calling thread's is too small for ``max_wasm_stack``.

        Raises :class:`~peerbox.ScriptError` for an uncaught script error,
        :class:`~peerbox.LimitExceeded` when a limit stops it,
        :class:`~peerbox.UsageError` for a limit out of range or a closed
        sandbox, and :class:`~peerbox.Error` for anything that is a bug in peerbox.
        """
        started = time.monotonic()
        if self._closed:
            self._check_open()
        check_run_limits(timeout, memory, fuel)
        fits = getattr(self._tls, "stack_fits", None)
        if fits is None:
            fits = self._tls.stack_fits = self._thread_stack_fits()
        if not fits:
            return call_with_stack(
                lambda: self._run(script, input_cbor, started, timeout=timeout, memory=memory, fuel=fuel,
                                  files=files, host=host),
                self._stack_needed + (1 << 20),
            )
        return self._run(script, input_cbor, started, timeout=timeout, memory=memory, fuel=fuel, files=files,
                         host=host)

    def _thread_stack_fits(self) -> bool:
        """Whether this thread's native stack holds what runs under ``max_wasm_stack`` need."""
        size = thread_stack_size()
        if size is None:  # pragma: no cover - not Linux: trust the default on ordinary threads
            return self.max_wasm_stack <= DEFAULT_MAX_WASM_STACK
        return size >= self._stack_needed

    def _run(
        self,
        script: ScriptModule,
        input_cbor: bytes,
        started: float,
        *,
        timeout: float | None,
        memory: int,
        fuel: int | None,
        files: tuple[str, ...],
        host: Dispatch | None,
    ) -> Outcome:
        """:meth:`run` on a thread known to have stack enough; ``started``: when run() was called."""
        rt_ptr = self._rt_module_ptr if self._rt_module_ptr is not None else self._rt()
        linker = self._linker()
        if fuel is not None and not self.metered:
            raise UsageError("this Sandbox does not meter fuel: run fuel-limited programs in metered_twin()")
        budget = _UNLIMITED_FUEL if fuel is None else fuel
        slots = self._slots
        if not slots.acquire(blocking=False):  # all slots busy: the wait does not count against the timeout
            waited = time.monotonic()
            slots.acquire()
            started += time.monotonic() - waited
        outer = getattr(self._tls, "run", None)  # a run may start another from a host call
        self._tls.run = _RunState(host)
        clock = self._clock if timeout is not None else None
        try:
            deadline_at = None
            if clock is not None and timeout is not None:
                clock.begin()  # raises UsageError if closed meanwhile
                deadline_at = started + timeout
            try:
                data, left, peak = self._run_in_fresh_store(script, input_cbor, linker, rt_ptr, budget,
                                                            deadline_at, timeout=timeout, memory=memory,
                                                            fuel=fuel)
            finally:
                if deadline_at is not None and clock is not None:
                    clock.end()
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
        deadline_at: float | None,
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
                _set_epoch_deadline(ctx, _deadline_ticks(deadline_at))
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
                out = _call_i32_releasing(ctx, _export(ctx, sinst, b"main", _EXTERN_FUNC), ptr, n)
                data = _read_block(ctx, mem, out, "main")
                left = ctypes.c_uint64()
                if self.metered:
                    _raise_for(_get_fuel(ctx, byref(left)), None)
                return data, int(left.value), _memory_span(ctx, mem)[1]
            except (_GuestTrap, wasmtime.WasmtimeError) as exc:
                raise self._translate(exc, ctx, rt, timeout=timeout, memory=memory, fuel=fuel) from None
        finally:
            _store_delete(store)

    def _translate(
        self,
        exc: _GuestTrap | wasmtime.WasmtimeError,
        ctx: Any,
        rt: Any,
        *,
        timeout: float | None,
        memory: int,
        fuel: int | None,
    ) -> Error:
        """The ONE place where wasmtime traps and errors become peerbox errors."""
        maybe_raise_last_exn()  # a KeyboardInterrupt caught by wasmtime-py's trampoline
        state: _RunState | None = getattr(self._tls, "run", None)
        code = exc.trap_code if isinstance(exc, _GuestTrap) else None
        text = str(exc)
        fault = 0
        log: list[str] = []
        if rt is not None:
            if self.metered:
                _raise_for(_set_fuel(ctx, _SALVAGE_FUEL), None)
            # rt_fault and rt_log_out are short and keep the GIL; with a timed run the
            # native clock still ticks, so even a broken rt could not hold it for long
            _set_epoch_deadline(ctx, _SALVAGE_TICKS if timeout is not None else _NO_DEADLINE)
            try:
                fault = _call_i32(ctx, _export(ctx, rt, b"rt_fault", _EXTERN_FUNC))
            except (_GuestTrap, wasmtime.WasmtimeError, Error):
                fault = 0
            try:
                out = _call_i32(ctx, _export(ctx, rt, b"rt_log_out", _EXTERN_FUNC))
                mem = _export(ctx, rt, b"memory", _EXTERN_MEMORY).of.memory
                log = decode_log(_read_block(ctx, mem, out, "rt_log_out"))
            except (_GuestTrap, wasmtime.WasmtimeError, Error):
                log = []
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


def _deadline_ticks(deadline_at: float | None) -> int:
    """Epoch ticks from now to ``deadline_at``, plus one (a run never ends early).

    The trap at the deadline is wasmtime's own, decided in native code when
    the native clock ticks: no Python callback (which would need the GIL, and
    next to busy Python threads getting it takes tens of milliseconds, each
    time) runs between a run's start and its end. A tick the timer loses on
    an overloaded machine delays the end by that tick.
    """
    if deadline_at is None:
        return _NO_DEADLINE
    return max(1, math.ceil((deadline_at - time.monotonic()) / EPOCH_TICK) + 1)


def _wasmtime_version() -> str:
    try:
        return importlib.metadata.version("wasmtime")
    except Exception:  # pragma: no cover
        return "unknown"

