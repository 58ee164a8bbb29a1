"""The embedding API: ``compile()`` a script into a ``Program``, ``run()`` it.

::

    import peerbox
    prog = peerbox.compile(source, filename="job.rhai")      # peerbox.CompileError
    res = prog.run(params={"a": 1}, limits=peerbox.Limits(timeout=5.0))
    res.value, res.log, res.fuel_used                        # peerbox.ScriptError / LimitExceeded

``compile`` consults the cache first (see :mod:`peerbox.run._cache`): a cached
compile does no parsing and no code generation. Compiling is a job with a
budget (:class:`~peerbox.CompileLimits`: source size, tokens, nodes, nesting,
parameters, locals, WAT size, wall time), checked as the compiler goes; a
compile refused for its budget raises :class:`~peerbox.CompileError` and is
never cached. The cache keeps only successful compiles and its key does not
include the limits, so a program compiled earlier under a larger budget may
be returned for a compile under a smaller one (its cost was paid already). A ``Program`` belongs to the
:class:`~peerbox.Sandbox` that compiled it (by default the process-wide one
from :func:`default_sandbox`) and can be run any number of times, from any
thread; every run gets a fresh wasm Store, so nothing leaks between runs.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import wasmtime

from ._cache import DiskEntry, ImportRecord, cache_key, manifest_is_current, source_sha256
from .._errors import ScriptError, UsageError
from .._version import __version__
from ..wasm_guests import lang
from ..wasm_guests.lang import CompileLimits
from ._resolve import LogicLayers
from ..hostcalls import HOST_CALLS, Authorizer, Backend, Budget, CallerQuota, Dispatch, RecordsOpener, Schema
from ._sandbox import Sandbox
from ._store import ScriptModule
from ._output import Result
from ._values import INPUT_REFUSED, CborParams, encode_run_input, refused_input, refused_params

__all__ = [
    "CompileLimits",
    "Limits",
    "Result",
    "Program",
    "compile",
    "default_sandbox",
    "close_default_sandbox",
    "SearchPathResolver",
    "compiler_fingerprint",
]


MIN_MEMORY = 64 << 10
_MAX_MEMORY = 4 << 30  # wasm32 cannot address more
_MAX_TIMEOUT = 24 * 3600.0
MAX_FUEL = 1 << 62

Resolver = Callable[[str, str], Any]


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True, slots=True)
class Limits:
    """The budget of one run. A field left out takes its default.

    ``timeout``: wall-clock seconds (``None``: no timeout), default 10 s,
    enforced by epoch interruption with 10 ms granularity.
    ``memory``: bytes of guest linear memory, default 256 MiB.
    ``fuel``: wasmtime fuel units, roughly one per wasm instruction
    (``None``: unlimited), default unlimited.
    ``host_calls``, ``host_bytes_read``, ``host_bytes_written``: the run's
    host-call budget (fuel and epochs do not count time spent in the host),
    default 10,000 calls and 64 MiB each way; going over ends the run with
    :class:`~peerbox.LimitExceeded` (``limit == "hostcalls"``).

    The wasm stack cap is per Engine, so it is a :class:`~peerbox.Sandbox`
    setting (``Sandbox(max_wasm_stack=...)``, default 1 MiB), not a field here.
    The defaults let an ordinary script compute for seconds. Raises
    :class:`~peerbox.UsageError` for a value that makes no sense.
    """

    timeout: float | None = 10.0
    memory: int = 256 << 20
    fuel: int | None = None
    host_calls: int = 10_000
    host_bytes_read: int = 64 << 20
    host_bytes_written: int = 64 << 20

    def __post_init__(self) -> None:
        t = self.timeout
        if t is not None and (not _is_number(t) or not math.isfinite(t) or not 0 < t <= _MAX_TIMEOUT):
            raise UsageError(
                f"Limits.timeout must be a number of seconds in (0, {_MAX_TIMEOUT:.0f}] or None, got {t!r}"
            )
        m = self.memory
        if type(m) is not int or not MIN_MEMORY <= m <= _MAX_MEMORY:
            raise UsageError(
                f"Limits.memory must be an int number of bytes in [{MIN_MEMORY}, {_MAX_MEMORY}], got {m!r}"
            )
        f = self.fuel
        if f is not None and (type(f) is not int or not 1 <= f <= MAX_FUEL):
            raise UsageError(f"Limits.fuel must be an int in [1, 2**62] or None, got {f!r}")
        for name in ("host_calls", "host_bytes_read", "host_bytes_written"):
            v = getattr(self, name)
            if type(v) is not int or not 0 <= v <= MAX_FUEL:
                raise UsageError(f"Limits.{name} must be an int >= 0, got {v!r}")

    def budget(self) -> Budget:
        """A fresh host-call budget for one run under these limits."""
        return Budget(self.host_calls, self.host_bytes_read, self.host_bytes_written)


_DEFAULT_LIMITS = Limits()
_METERED_LOCK = threading.Lock()


class Program:
    """A compiled script, ready to run many times. Made by :func:`compile`."""

    __slots__ = ("_sandbox", "_script", "_files", "_wat", "_wat_z", "_manifest", "_key", "_metered_script")

    def __init__(
        self,
        sandbox: Sandbox,
        script: ScriptModule,
        files: tuple[str, ...],
        manifest: tuple[ImportRecord, ...],
        key: str,
        *,
        wat: str | None = None,
        wat_z: bytes | None = None,
    ) -> None:
        self._sandbox = sandbox
        self._script = script
        self._metered_script: ScriptModule | None = None
        self._files = files
        self._manifest = manifest
        self._key = key
        self._wat = wat
        self._wat_z = wat_z

    @property
    def files(self) -> tuple[str, ...]:
        """File names by index: 0 is the script itself, then its imported modules."""
        return self._files

    @property
    def wat(self) -> str:
        """The script module as WebAssembly text."""
        if self._wat is None:
            assert self._wat_z is not None
            self._wat = zlib.decompress(self._wat_z).decode("utf-8")
        return self._wat

    def wasm(self) -> bytes:
        """The script module as a WebAssembly binary (imports ``rt`` and ``env``)."""
        return bytes(wasmtime.wat2wasm(self.wat))

    @property
    def imports(self) -> tuple[ImportRecord, ...]:
        """The modules this program imported, with the hashes it was compiled from."""
        return self._manifest

    @property
    def sandbox(self) -> Sandbox:
        return self._sandbox

    def run(
        self,
        params: dict[str, Any] | CborParams | None = None,
        *,
        limits: Limits | None = None,
        caller: Any = None,
        target: Any = None,
        storage: Backend | None = None,
        authorize: Authorizer | None = None,
        quota: CallerQuota | None = None,
        records: RecordsOpener | None = None,
    ) -> Result:
        """Run the program once with ``params`` (a dict with str keys) as ``params``.

        ``params`` may also be :class:`~peerbox.run.CborParams`: the CBOR bytes
        of a map, handed to the guest as they are (no Python objects; the
        guest runtime's decoder validates them, whatever their origin).

        ``caller`` and ``target`` are what the script reads as those globals;
        ``storage`` is the backend its ``fs::`` host calls reach (None: every
        host call fails with the catchable error ``no_storage``); ``quota``
        charges its changes to a caller (see :class:`~peerbox.hostcalls.CallerQuota`);
        ``records`` opens the peer's records for ``db::`` calls (None: they fail with
        ``unsupported``, or ``no_storage`` without ``storage`` either).

        Raises :class:`~peerbox.ValueConversionError` for params that cannot
        cross into a script, :class:`~peerbox.ScriptError` when the script
        fails, :class:`~peerbox.LimitExceeded` when a limit stops it.
        """
        if limits is None:
            lim = _DEFAULT_LIMITS
        elif isinstance(limits, Limits):
            lim = limits
        else:
            raise UsageError(f"limits must be a peerbox.Limits, not {type(limits).__name__}")
        data = encode_run_input(params, caller, target)
        start = time.perf_counter()
        host = Dispatch(storage, lim.budget(), authorize, quota, records)
        sandbox, script = self._sandbox, self._script
        if lim.fuel is not None and not sandbox.metered:
            sandbox, script = self._metered()
        try:
            value_cbor, log, fuel_used, peak = sandbox.run(script, data, timeout=lim.timeout,
                                                           memory=lim.memory, fuel=lim.fuel,
                                                           files=self._files, host=host)
        except ScriptError as exc:
            if _input_refused(exc):
                reason = exc.message[len(INPUT_REFUSED):]
                if type(params) is CborParams:
                    raise refused_params(params, reason) from exc
                raise refused_input(reason, params, caller, target) from exc
            raise
        return Result(log=log, fuel_used=fuel_used, wall_time=time.perf_counter() - start, peak_memory=peak,
                      value_cbor=value_cbor)

    def _metered(self) -> tuple[Sandbox, ScriptModule]:
        """This program compiled for the sandbox's fuel-metering twin (once, on first need)."""
        twin = self._sandbox.metered_twin()
        with _METERED_LOCK:
            if self._metered_script is None:
                self._metered_script = twin.prepare(twin.compile_wat(self.wat))
            return twin, self._metered_script

    def __repr__(self) -> str:
        return f"<peerbox.Program {self._files[0]!r} ({len(self._files) - 1} imported modules)>"


def _input_refused(exc: ScriptError) -> bool:
    """Whether ``exc`` is the guest runtime refusing the input document (``rt_begin``, before the
    script's first instruction: no line; a script's own errors always carry one)."""
    return exc.kind == "invalid_argument" and exc.line is None and exc.message.startswith(INPUT_REFUSED)


# -- module resolution --------------------------------------------------------


class SearchPathResolver(LogicLayers):
    """Finds ``import "name"`` as ``<dir>/name.rhai`` in the first dir that has it, then in
    peerbox's built-in library (``import "builtin:name"`` names the library only).

    Names are ``/``-separated components of ``[A-Za-z0-9_-]``; anything else
    (``..``, absolute paths, dots, backslashes, empty components) is refused
    by returning ``None``, which the compiler reports as "module not found".
    Unreadable or non-UTF-8 files are treated as not found too. A peer's
    scripts resolve in all three layers instead (:mod:`peerbox.peer._logic`).
    """

    def __init__(self, search_path: Sequence[str | os.PathLike[str]] = ()) -> None:
        if isinstance(search_path, (str, bytes, os.PathLike)):
            raise UsageError("search_path must be a sequence of directories, not a single path")
        super().__init__(peer=None, shared=None, extra=search_path)


@functools.cache
def _builtin_only() -> SearchPathResolver:
    """The resolver of a compile given neither a search path nor a resolver (it holds no state)."""
    return SearchPathResolver(())


class _RecordingResolver:
    """Wraps a resolver and records every import it resolved (for the manifest)."""

    __slots__ = ("inner", "records")

    def __init__(self, inner: Resolver | None) -> None:
        self.inner = inner
        self.records: dict[tuple[str, str], ImportRecord] = {}

    def __call__(self, name: str, importer: str) -> Any:
        if self.inner is None:
            return None
        found = self.inner(name, importer)
        if found is not None:
            sha = source_sha256(found.source)
            self.records[(name, importer)] = ImportRecord(name, importer, found.file, sha)
        return found


# -- the default sandbox ------------------------------------------------------

_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide Sandbox, created on first use (the one lazy singleton)."""
    global _default
    sb = _default
    if sb is not None and not sb.closed:
        return sb
    with _default_lock:
        if _default is None or _default.closed:
            _default = Sandbox()
        return _default


def close_default_sandbox() -> None:
    """Close the process-wide Sandbox (a later use creates a new one)."""
    global _default
    with _default_lock:
        sb, _default = _default, None
    if sb is not None:
        sb.close()


# -- compile ------------------------------------------------------------------


_fingerprint: str | None = None


def compiler_fingerprint() -> str:
    """The compiler's identity for cache keys, computed once per process.

    peerbox's version plus the compiler's own fingerprint (its
    ``CODEGEN_VERSION`` and a hash of its source files), so a change to the
    compiler, even without a version bump, never serves stale cached modules.
    """
    global _fingerprint
    if _fingerprint is None:
        _fingerprint = f"{__version__}+{lang.compiler_fingerprint(HOST_CALLS)}"
    return _fingerprint


def compile(
    source: str,
    filename: str = "<script>",
    *,
    search_path: Sequence[str | os.PathLike[str]] = (),
    resolver: Resolver | None = None,
    sandbox: Sandbox | None = None,
    limits: CompileLimits | None = None,
    schema: Schema | None = None,
) -> Program:
    """Compile a script (or fetch it from the cache) into a :class:`Program`.

    ``search_path`` lists directories where ``import "name"`` finds
    ``name.rhai`` (then peerbox's built-in library); alternatively pass
    ``resolver(name, importer)`` returning a ``ModuleSource`` or ``None``. ``sandbox`` defaults to
    :func:`default_sandbox`. ``limits`` is the compile's budget, the
    imported modules included (default ``CompileLimits()``); e.g. a server
    compiling a request passes ``CompileLimits(timeout=5.0)``. The WAT handed
    to wasmtime is never larger than ``limits.wat_bytes`` (nor any function's
    than ``limits.function_wat_bytes``), which bounds Cranelift's work too.
    A cached program is returned whatever ``limits`` says: the cache holds
    only programs that compiled, perhaps under a larger budget.

    ``schema`` is the record schema of the peer the script is for (its
    ``schema.toml``): ``db::`` calls with a constant collection name, the
    record literals they are given and field reads on what ``db::get`` and
    ``db::query`` return are then checked against it while compiling (see
    "Schemas and records" in the README). The schema's digest is part of the
    cache key, so a module checked against one schema is never reused under
    another.

    Raises :class:`~peerbox.CompileError` (every diagnostic, with
    positions) if the script does not compile, or its subclass
    ``CompileLimitExceeded`` (``.limit`` names the field) when the compile
    goes over ``limits``; :class:`~peerbox.UsageError` for arguments of the
    wrong type.
    """
    if not isinstance(source, str):
        raise UsageError(f"source must be a str, not {type(source).__name__}")
    if not isinstance(filename, str):
        raise UsageError(f"filename must be a str, not {type(filename).__name__}")
    if resolver is not None and search_path:
        raise UsageError("pass either search_path or resolver, not both")
    if limits is not None and not isinstance(limits, CompileLimits):
        raise UsageError(f"limits must be a peerbox.CompileLimits, not {type(limits).__name__}")
    sb = default_sandbox() if sandbox is None else sandbox
    if not isinstance(sb, Sandbox):
        raise UsageError(f"sandbox must be a peerbox.Sandbox, not {type(sb).__name__}")
    if sb.closed:
        raise UsageError("this peerbox Sandbox has been closed")
    if schema is not None and not isinstance(schema, Schema):
        raise UsageError(f"schema must be a peerbox.hostcalls.Schema, not {type(schema).__name__}")
    res: Resolver = resolver if resolver is not None else (
        SearchPathResolver(search_path) if search_path else _builtin_only())
    key = cache_key(
        compiler_version=compiler_fingerprint(), rt_sha256=sb.engine_id, filename=filename, source=source,
        schema=schema.digest if schema is not None else "",
    )

    prog = sb.programs.get(key)
    if prog is not None:
        if manifest_is_current(prog.imports, res):
            assert isinstance(prog, Program)
            return prog
        sb.programs.discard(key)

    entry = sb.disk.load(key)
    if entry is not None and manifest_is_current(entry.manifest, res):
        module = sb.deserialize(entry.module)
        if module is not None:
            prog = Program(sb, sb.prepare(module), entry.files, entry.manifest, key, wat_z=entry.wat_z)
            sb.programs.put(key, prog)
            return prog
        sb.disk.remove(key)

    recorder = _RecordingResolver(res)
    compiled = lang.compile_to_wat(source, filename, recorder, limits=limits, host_calls=HOST_CALLS,
                                   schema=schema.canonical() if schema is not None else None)
    module = sb.compile_wat(compiled.wat)
    manifest = tuple(recorder.records.values())
    files = tuple(compiled.files)
    prog = Program(sb, sb.prepare(module), files, manifest, key, wat=compiled.wat)
    sb.programs.put(key, prog)
    if sb.disk.directory is not None:
        sb.disk.save(
            key,
            DiskEntry(files=files, manifest=manifest, wat_z=zlib.compress(compiled.wat.encode("utf-8"), 1),
                      module=bytes(module.serialize())),
        )
    return prog
