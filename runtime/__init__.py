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
``ScriptError`` 4, ``LimitExceeded`` 5). The errors the calls below raise are
exported here; :mod:`peerbox.errors` names every one of them, with the tree.

The package, room by room, in the order a request travels (each room's
``__init__`` has its own module map)::

    peerbox.cli          the ``peerbox`` command: parse, call the rooms below, report an exit code
    peerbox.net          HTTP/2 in and out: the worker (admission, run pool, metrics), isolated
                         mode, the pre-authentication of bodies, the client
    peerbox.trust        may this signed request run here? capabilities and policy decide, the
                         exec and logic handlers answer with a signed reply
    peerbox.peer         peers under a root: keys, policy, storage paths, the directory of remote
                         peers, logic modules and their signed history, running as a peer
    peerbox.run          compile (with the cache) and run in a wasmtime sandbox, under Limits
    peerbox.wire         the bytes: strict CBOR, COSE_Sign1, Ed25519 keys, envelopes, nonces
                         (where a nonce is checked), capability tokens
    peerbox.policy       policies and grants: what an action on a path is allowed by; the
                         did:key syntax (no crypto)
    peerbox.hostcalls    the host functions a script calls (fs::, db::...) and their storage
    peerbox.wasm_guests  the compiler (``lang``), the guest runtime ``rt.wasm``, the script library
    peerbox._errors      the error classes every room raises (the bottom layer)

A room imports only the rooms below it, and only their public names (their
``__all__``); ``make lint`` checks both (import-linter). Importing this
facade or a room loads nothing until a name is used (PEP 562), and the
command loads a command's module only when that command is chosen, so
``import peerbox.policy`` loads no wasmtime, trio or h2, and ``peerbox
--version`` or ``peerbox --help`` none of them, nor nacl or cbor2.
"""


from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import attach
from ._version import __version__

if TYPE_CHECKING:
    from ._errors import Error, LimitExceeded, ScriptError, UsageError, ValueConversionError
    from .hostcalls import BudgetExceeded, HostCallError
    from .net import AsyncClient, Client, ClientError, RemoteRejected, TransportError, VerificationError
    from .peer import (Contexts, Directory, DirectoryError, HistoryError, LogicError, LogicRefused, Peer,
                       PeerContext, PeerError, PeerLogic, PeerStore)
    from .policy import PolicyError
    from .run import CompileLimits, Limits, Program, Result, Sandbox, compile
    from .wasm_guests.lang import CompileError
    from .wire import CapabilityError, EnvelopeError, IdentityError, KeyPair

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
    "DirectoryError",
    "HistoryError",
    "EnvelopeError",
    "CapabilityError",
    "PolicyError",
    "HostCallError",
    "BudgetExceeded",
]

__getattr__, __dir__ = attach(__name__, {
    "Error": "._errors",
    "LimitExceeded": "._errors",
    "ScriptError": "._errors",
    "UsageError": "._errors",
    "ValueConversionError": "._errors",
    "AsyncClient": ".net",
    "Client": ".net",
    "ClientError": ".net",
    "RemoteRejected": ".net",
    "TransportError": ".net",
    "VerificationError": ".net",
    "Contexts": ".peer",
    "PeerContext": ".peer",
    "Directory": ".peer",
    "IdentityError": ".wire",
    "KeyPair": ".wire",
    "LogicError": ".peer",
    "LogicRefused": ".peer",
    "PeerLogic": ".peer",
    "Peer": ".peer",
    "PeerError": ".peer",
    "PeerStore": ".peer",
    "CompileLimits": ".run",
    "Limits": ".run",
    "Program": ".run",
    "Result": ".run",
    "compile": ".run",
    "Sandbox": ".run",
    "CompileError": ".wasm_guests.lang",
    "DirectoryError": ".peer",
    "HistoryError": ".peer",
    "EnvelopeError": ".wire",
    "CapabilityError": ".wire",
    "PolicyError": ".policy",
    "HostCallError": ".hostcalls",
    "BudgetExceeded": ".hostcalls",
})
