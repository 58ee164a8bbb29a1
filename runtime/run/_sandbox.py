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
* one ``Linker`` per thread holding the host functions
  (:mod:`peerbox.run._hostfns`: module ``peerbox_rt`` with ``parse_f64``
  and ``pow_f64``, and the host call ``peerbox.call``),
  registered once.

A run (:meth:`Sandbox.run`) takes a pool slot, starts the epoch clock if it
has a timeout, and runs the script in a fresh Store
(:mod:`peerbox.run._store`); the raw wasmtime calls are in
:mod:`peerbox.run._capi`, the host functions in :mod:`peerbox.run._hostfns`,
and what a trap becomes in :mod:`peerbox.run._traps`. wasmtime is pinned to
one major version in ``pyproject.toml`` because of the raw layer.

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

import hashlib
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, NamedTuple

import wasmtime

from .._errors import Error, ScriptError, UsageError, map_exceptions
from ..hostcalls import Dispatch
from ..wasm_guests import rt_wasm_bytes
from ._cache import LRU, ModuleCache, default_cache_dir
from ._capi import RawLinker, configure_pooling, set_async_stack_size, wasmtime_version
from ._epoch import EPOCH_TICK, ClockKind, EpochClock
from ._hostfns import RunState, host_call_handler, parse_f64, pow_f64
from ._sandbox_config import (
    DEFAULT_ASYNC_STACK, KEEP_RESIDENT, MAX_CONCURRENT_RUNS, MAX_FUEL, MAX_MEMORY, MAX_TABLE_SIZE,
    MAX_TIMEOUT, MAX_WASM_STACK, MIN_WASM_STACK, address_space_unlimited, check_options, check_run_limits,
    round_up,
)
from ._stack import call_with_stack, native_stack_needed, thread_stack_size
from ._store import UNLIMITED_FUEL, ScriptModule, run_in_fresh_store
from ._traps import COMPILE_ERRORS, RT_ERRORS, RunLimits
from ._output import split_ok_output
from ._values import decode_output

__all__ = [
    "Sandbox",
    "ScriptModule",
    "RunOutcome",
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

_RT_CACHE_PREFIX = "rt-"


class RunOutcome(NamedTuple):
    """What a successful :meth:`Sandbox.run` produced (a request's outcome is ``peerbox.trust.Outcome``):
    the value as the CBOR bytes the guest runtime wrote (:func:`~peerbox.run._output.decode_value`
    decodes them), the log, fuel used, peak memory."""

    value_cbor: bytes
    log: list[str]
    fuel_used: int | None
    peak_memory: int = 0  # bytes of guest linear memory at the end (memory only grows)


def _rt_wasm_bytes() -> bytes:
    try:
        return rt_wasm_bytes()
    except OSError as exc:
        raise Error(f"the guest runtime rt.wasm is missing (a broken install of peerbox): {exc}") from exc


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
    ``"thread"`` (see :mod:`peerbox.run._epoch`). ``rt_wasm`` replaces the
    guest runtime shipped with peerbox (a debug build of ``rt``, built with
    ``RT_CFLAGS=-DRT_DEBUG bash wasm_guests/rt/build.sh``, poisons freed
    memory and checks every value rt receives; the tests use it).

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
        rt_wasm: bytes | None = None,
    ) -> None:
        check_options(max_wasm_stack, cache_dir, disk_cache, memory_cache_size, max_concurrent_runs, pooling,
                       metered)
        config = wasmtime.Config()
        config.consume_fuel = bool(metered)
        config.epoch_interruption = True
        # wasmtime refuses max_wasm_stack > async_stack_size with a panic, even for sync-only engines
        async_stack = max(DEFAULT_ASYNC_STACK, round_up(max_wasm_stack + (1 << 20)))
        if not set_async_stack_size(config, async_stack) and max_wasm_stack > DEFAULT_ASYNC_STACK:
            raise UsageError(  # pragma: no cover - a wasmtime without async support
                f"max_wasm_stack can be at most {DEFAULT_ASYNC_STACK} bytes with this wasmtime, "
                f"got {max_wasm_stack}"
            )
        config.max_wasm_stack = max_wasm_stack
        config.cranelift_opt_level = "speed"
        if pooling is None:
            pooling = os.environ.get("PEERBOX_POOLING", "1") != "0" and address_space_unlimited()
        self.pooling = bool(pooling) and configure_pooling(
            config, max_concurrent_runs, max_table_elements=MAX_TABLE_SIZE, keep_resident=KEEP_RESIDENT)
        self._slots = threading.BoundedSemaphore(max_concurrent_runs)
        self.max_wasm_stack = max_wasm_stack
        self.metered = bool(metered)
        self._options = dict(max_wasm_stack=max_wasm_stack, cache_dir=cache_dir, disk_cache=disk_cache,
                             memory_cache_size=memory_cache_size,
                             max_concurrent_runs=max_concurrent_runs, pooling=pooling, rt_wasm=rt_wasm)
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
        self._rt_bytes: bytes | None = rt_wasm
        self._rt_sha256: str | None = None
        self._rt_module: wasmtime.Module | None = None
        self._rt_module_ptr: Any = None
        self._rt_table_min = 0
        i32, f64 = wasmtime.ValType.i32(), wasmtime.ValType.f64()  # the host functions' types
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
            if self._rt_bytes is None:
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
                name = f"{_RT_CACHE_PREFIX}{sha}-{wasmtime.__name__}{wasmtime_version()}"
                module = None
                blob = self.disk.load_blob(name)
                if blob is not None:
                    try:
                        module = wasmtime.Module.deserialize(self._engine, blob)
                    except wasmtime.WasmtimeError:
                        self.disk.remove(name)
                if module is None:
                    with map_exceptions(RT_ERRORS):
                        module = wasmtime.Module(self._engine, self._rt_bytes)
                    self.disk.save_blob(name, bytes(module.serialize()))
                self._rt_table_min = _table_import_min(module)
                self._rt_module = module
                self._rt_module_ptr = module.ptr()
        return self._rt_module_ptr

    def _linker(self) -> RawLinker:
        """This thread's Linker (host functions defined once per thread)."""
        linker: RawLinker | None = getattr(self._tls, "linker", None)
        if linker is None:
            linker = RawLinker(self._engine)
            linker.define_func("peerbox_rt", "parse_f64", self._ty_parse, parse_f64, access_caller=True)
            linker.define_func("peerbox_rt", "pow_f64", self._ty_pow, pow_f64)
            linker.define_host_call(b"peerbox", b"call", self._ty_call, host_call_handler(self._tls))
            self._tls.linker = linker
        return linker

    # -- compiling ------------------------------------------------------------

    def compile_wat(self, wat: str) -> wasmtime.Module:
        """Compile the compiler's WAT output to a wasmtime Module.

        Raises :class:`~peerbox.Error`: WAT the compiler produced that does
        not assemble or validate is a bug in peerbox.
        """
        self._check_open()
        with map_exceptions(COMPILE_ERRORS):
            return wasmtime.Module(self._engine, wat)

    def deserialize(self, data: bytes) -> wasmtime.Module | None:
        """A Module from ``Module.serialize()`` bytes, or None if incompatible."""
        self._check_open()
        try:
            return wasmtime.Module.deserialize(self._engine, data)
        except wasmtime.WasmtimeError:  # another wasmtime's or engine's bytes: compile afresh
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
    ) -> RunOutcome:
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
    ) -> RunOutcome:
        """:meth:`run` on a thread known to have stack enough; ``started``: when run() was called."""
        rt_ptr = self._rt_module_ptr if self._rt_module_ptr is not None else self._rt()
        linker = self._linker()
        if fuel is not None and not self.metered:
            raise UsageError("this Sandbox does not meter fuel: run fuel-limited programs in metered_twin()")
        budget = UNLIMITED_FUEL if fuel is None else fuel
        slots = self._slots
        if not slots.acquire(blocking=False):  # all slots busy: the wait does not count against the timeout
            waited = time.monotonic()
            slots.acquire()
            started += time.monotonic() - waited
        outer = getattr(self._tls, "run", None)  # a run may start another from a host call
        state = self._tls.run = RunState(host)
        clock = self._clock if timeout is not None else None
        try:
            deadline_at = None
            if clock is not None and timeout is not None:
                clock.begin()  # raises UsageError if closed meanwhile
                deadline_at = started + timeout
            try:
                data, left, peak = run_in_fresh_store(
                    self._engine_ptr, linker, rt_ptr, script, input_cbor, metered=self.metered, budget=budget,
                    deadline_at=deadline_at, state=state,
                    limits=RunLimits(timeout, memory, fuel, self.max_wasm_stack))
            finally:
                if deadline_at is not None and clock is not None:
                    clock.end()
        finally:
            self._tls.run = outer
            slots.release()
        fuel_used = budget - left if self.metered else None
        ok = split_ok_output(data)
        if ok is not None:
            return RunOutcome(ok[1], ok[0], fuel_used, peak)
        result = decode_output(data)
        if result["ok"]:  # rt writes "value" last, after the log: anything else breaks the ABI
            raise Error("malformed run output from the guest runtime (a bug in peerbox): value not last")
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


def _table_import_min(module: wasmtime.Module) -> int:
    """The minimum size of the function table ``module`` imports as ``env.__indirect_function_table``."""
    for imp in module.imports:
        if imp.module == "env" and imp.name == "__indirect_function_table":
            ty = imp.type
            if isinstance(ty, wasmtime.TableType):
                return int(ty.limits.min)
    return 0
