"""peerbox: run untrusted scripts, compiled to WebAssembly, in wasmtime sandboxes.

The embedding API::

    import peerbox
    prog = peerbox.compile(source, filename="job.rhai")      # raises peerbox.CompileError
    res = prog.run(params={"a": 1}, limits=peerbox.Limits(timeout=5.0, memory=64 << 20))
    res.value, res.log, res.fuel_used                        # raises peerbox.ScriptError / LimitExceeded

Compiling untrusted source has a budget too (a CompileError past it)::

    prog = peerbox.compile(source, limits=peerbox.CompileLimits(timeout=5.0, tokens=100_000))

Running as a peer (its storage for ``fs::``, its logic layers for imports)::

    with peerbox.Contexts(root="peerbox-data") as peers:
        alice = peers.get("alice")
        res = alice.run(alice.compile('import "notes" as n; n::add("hi")'))

A peer's logic, as its owner changes it (every version signed and recorded)::

    logic = peerbox.PeerLogic(peerbox.PeerStore("peerbox-data").get("alice"))
    logic.set("notes", source)          # raises peerbox.LogicRefused if it or a dependent won't compile
    logic.versions("notes"), logic.rollback("notes", 1), logic.verify()

Every error peerbox raises on purpose is a :class:`peerbox.Error`; each kind
has a subclass and a CLI exit code (``UsageError`` 2, ``CompileError`` 3,
``ScriptError`` 4, ``LimitExceeded`` 5).
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._errors import Error, LimitExceeded, ScriptError, UsageError, ValueConversionError
from ._client import AsyncClient, Client, ClientError, RemoteRejected, TransportError, VerificationError
from ._context import Contexts, PeerContext
from ._directory import Directory
from ._identity import IdentityError, KeyPair
from ._logic import LogicError, LogicRefused, PeerLogic
from ._peers import Peer, PeerError, PeerStore
from ._program import CompileLimits, Limits, Program, Result, compile
from ._sandbox import Sandbox
from .wasm_guests.lang._diagnostics import CompileError

__all__ = [
    "__version__",
    "compile",
    "Program",
    "Result",
    "Limits",
    "CompileLimits",
    "Sandbox",
    "Error",
    "UsageError",
    "CompileError",
    "ScriptError",
    "LimitExceeded",
    "ValueConversionError",
    "Peer",
    "PeerStore",
    "PeerError",
    "PeerContext",
    "Contexts",
    "KeyPair",
    "IdentityError",
    "Client",
    "AsyncClient",
    "ClientError",
    "TransportError",
    "VerificationError",
    "RemoteRejected",
    "Directory",
    "PeerLogic",
    "LogicError",
    "LogicRefused",
]
