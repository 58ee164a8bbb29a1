"""peerbox: run untrusted scripts, compiled to WebAssembly, in wasmtime sandboxes.

The embedding API::

    import peerbox
    prog = peerbox.compile(source, filename="job.rhai")      # raises peerbox.CompileError
    res = prog.run(params={"a": 1}, limits=peerbox.Limits(timeout=5.0, memory=64 << 20))
    res.value, res.log, res.fuel_used                        # raises peerbox.ScriptError / LimitExceeded

Every error peerbox raises on purpose is a :class:`peerbox.Error`; each kind
has a subclass and a CLI exit code (``UsageError`` 2, ``CompileError`` 3,
``ScriptError`` 4, ``LimitExceeded`` 5).
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._errors import Error, LimitExceeded, ScriptError, UsageError, ValueConversionError
from ._program import Limits, Program, Result, compile
from ._sandbox import Sandbox
from .wasm_guests.lang._diagnostics import CompileError

__all__ = [
    "__version__",
    "compile",
    "Program",
    "Result",
    "Limits",
    "Sandbox",
    "Error",
    "UsageError",
    "CompileError",
    "ScriptError",
    "LimitExceeded",
    "ValueConversionError",
]
