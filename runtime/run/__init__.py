"""Running a script: compile (or fetch from the cache), then run it in a wasmtime sandbox.

Where a run gets its limits (memory, fuel, timeout, host calls, stack) and
how they are enforced. In the order a program is made and run::

    _resolve          where ``import "name"`` finds a module: the logic layers, search paths
    _program          ``compile()``, ``Program``, ``Limits`` (memory, fuel, timeout...), ``CompileLimits``
    _cache            the compiled-module cache: in memory (LRU) and on disk
    _sandbox          ``Sandbox``: the engine, pool slots, the guest runtime, compiling, ``run()``
    _sandbox_config   the engine options (wasm stack, pooling) and run limits, and their ranges
    _stack            native stacks large enough for a run
    _epoch            the deadline clock (epoch interruption) behind ``Limits.timeout``
    _store            one run in a fresh Store: instantiate, input in, ``main``, output out
    _hostfns          what a guest imports: ``peerbox_rt`` (floats) and the host call ``peerbox.call``
    _traps            where wasmtime's failures become peerbox errors (limits, bugs)
    _capi             the raw wasmtime C-API layer (``RawStore``...): every wasmtime-py internal
    _values           values crossing into and out of a script (CBOR), their display and JSON

Below: :mod:`peerbox.wasm_guests` (the compiler, ``rt.wasm``), :mod:`peerbox.hostcalls`,
:mod:`peerbox._errors`. Above: :mod:`peerbox.peer`, which runs programs as a peer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:
    from ._resolve import (LAYERS, MAX_MODULE_SIZE, MODULE_SUFFIX, LogicLayers, ModuleRef, read_module,
        shared_logic_dir, split_module_name)
    from ._program import (CompileLimits, Limits, MAX_FUEL, MIN_MEMORY, Program, Result, SearchPathResolver,
        compile, default_sandbox)
    from ._cache import ModuleCache, default_cache_dir
    from ._sandbox import Sandbox
    from ._values import CborParams, display, json_safe

__all__ = ["LAYERS", "MAX_MODULE_SIZE", "MODULE_SUFFIX", "LogicLayers", "ModuleRef", "read_module",
           "shared_logic_dir", "split_module_name", "CompileLimits", "Limits", "MAX_FUEL", "MIN_MEMORY",
           "Program", "Result", "SearchPathResolver", "compile", "default_sandbox", "ModuleCache",
           "default_cache_dir", "Sandbox", "CborParams", "display", "json_safe"]

__getattr__, __dir__ = attach(__name__, {
    "LAYERS": "._resolve",
    "MAX_MODULE_SIZE": "._resolve",
    "MODULE_SUFFIX": "._resolve",
    "LogicLayers": "._resolve",
    "ModuleRef": "._resolve",
    "read_module": "._resolve",
    "shared_logic_dir": "._resolve",
    "split_module_name": "._resolve",
    "CompileLimits": "._program",
    "Limits": "._program",
    "MAX_FUEL": "._program",
    "MIN_MEMORY": "._program",
    "Program": "._program",
    "Result": "._program",
    "SearchPathResolver": "._program",
    "compile": "._program",
    "default_sandbox": "._program",
    "ModuleCache": "._cache",
    "default_cache_dir": "._cache",
    "Sandbox": "._sandbox",
    "CborParams": "._values",
    "display": "._values",
    "json_safe": "._values",
})
