"""Every error peerbox raises on purpose, in one place: ``from peerbox.errors import ...``.

Each is a subclass of :class:`Error` and lives in the room that raises it
(its module is where it is documented); this module only names them all, so
a caller catches what a public call raises without knowing which private
module defines it. Like the facade it loads nothing until a name is used
(PEP 562), so ``from peerbox.errors import PolicyError`` loads no wasmtime,
trio or h2. The tree, in the order a request meets the rooms::

    Error                                   exit code 1 unless a subclass says otherwise
        UsageError                          2: arguments that make no sense
            ValueConversionError            a Python value that cannot cross into a script
            IdentityError                   keys and did:key (InvalidPublicKey, InvalidDid)
            PeerError                       peers under a root (InvalidPeerName, PeerExists,
                                            PeerNotFound, RootNotFound, CorruptPeer,
                                            InsecureKeyFile; AuditError: a peer's audit log)
            DirectoryError                  peers.toml (UnknownPeer, InvalidEntry, EntryExists,
                                            CorruptDirectory; DirectoryConflict: a name the shared
                                            directory gives to another did)
            HistoryError, HistoryMismatch   a logic module's signed history
            LogicError                      the owner's logic tools
            BadArguments                    arguments that do not match a published function
            ServeError                      ``peerbox serve`` cannot start (``failure``: root, peer,
                                            tls, peer_served, address, worker)
            StorageConfigError              a peer's [storage] table (names the key or variable)
            LocalNatsError                  ``peerbox dev up``: nats-server missing or not starting
        CompileError                        3 (CompileLimitExceeded: over a compile budget)
        ScriptError                         4: a script failed and did not catch it
        LimitExceeded                       5: a run hit a resource limit
        LogicRefused                        a logic change that would not compile
        SignatureError                      a published parameter names a record type the schema lacks
        EnvelopeError                       signed CBOR refused (``kind`` names the rule)
        NonceStoreError                     the replay store cannot be used
        RateStoreError                      the per-caller rate limits' store cannot be used
        SharedStateError                    ``serve --state``: NATS JetStream cannot be reached or refused
        CapabilityError                     a capability token refused
        PolicyError                         a policy file refused (file:line: problem)
        SchemaError                         2: a peer's schema.toml refused (file:line: problem)
        SchemaRefused                       10: ``schema apply`` changed nothing (destructive, or
                                            records that do not fit the new schema)
        HostCallError, BudgetExceeded       a host call refused / the run's host-call budget
        ClientError                         the client (TransportError, VerificationError,
                                            RemoteRejected; NoLiveWorker: a published name none of
                                            whose workers is live)
        ChannelError                        isolated mode's router-child channel (ChannelClosed,
                                            ChannelTimeout, ChannelBusy, FrameError); answered
                                            503/502 by the router, never raised to a caller
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import attach

if TYPE_CHECKING:
    from peerbox._errors import Error, LimitExceeded, ScriptError, UsageError, ValueConversionError
    from peerbox.hostcalls import BudgetExceeded, HostCallError, SchemaError, StorageConfigError
    from peerbox.net import (ChannelBusy, ChannelClosed, ChannelError, ChannelTimeout, ClientError,
                             DirectoryConflict, FrameError, LocalNatsError, NoLiveWorker, RemoteRejected,
                             ServeError, SharedStateError,
                             TransportError, VerificationError)
    from peerbox.peer import (AuditError, BadArguments, CorruptDirectory, CorruptPeer, DirectoryError,
                              EntryExists,
                              HistoryError, HistoryMismatch, InsecureKeyFile, InvalidEntry, InvalidPeerName,
                              LogicError, LogicRefused, PeerError, PeerExists, PeerNotFound, RootNotFound,
                              SchemaRefused, SignatureError, UnknownPeer)
    from peerbox.policy import PolicyError
    from peerbox.trust import RateStoreError
    from peerbox.wasm_guests.lang import CompileError, CompileLimitExceeded
    from peerbox.wire import (CapabilityError, EnvelopeError, IdentityError, InvalidDid, InvalidPublicKey,
                              NonceStoreError)

_EXPORTS = {
    "peerbox._errors": ("Error", "UsageError", "ValueConversionError", "ScriptError", "LimitExceeded"),
    "peerbox.wire": ("IdentityError", "InvalidPublicKey", "InvalidDid", "EnvelopeError", "NonceStoreError",
                     "CapabilityError"),
    "peerbox.policy": ("PolicyError",),
    "peerbox.hostcalls": ("HostCallError", "BudgetExceeded", "StorageConfigError", "SchemaError"),
    "peerbox.wasm_guests.lang": ("CompileError", "CompileLimitExceeded"),
    "peerbox.peer": ("PeerError", "InvalidPeerName", "PeerExists", "PeerNotFound", "RootNotFound",
                     "CorruptPeer", "InsecureKeyFile", "DirectoryError", "UnknownPeer", "InvalidEntry",
                     "EntryExists", "CorruptDirectory", "HistoryError", "HistoryMismatch", "LogicError",
                     "LogicRefused", "BadArguments", "AuditError", "SchemaRefused", "SignatureError"),
    "peerbox.trust": ("RateStoreError",),
    "peerbox.net": ("ClientError", "TransportError", "VerificationError", "RemoteRejected", "ChannelError",
                    "ChannelClosed", "ChannelTimeout", "ChannelBusy", "FrameError", "ServeError",
                    "LocalNatsError", "SharedStateError", "DirectoryConflict", "NoLiveWorker"),
}

__all__ = [
    "Error", "UsageError", "ValueConversionError", "ScriptError", "LimitExceeded",
    "IdentityError", "InvalidPublicKey", "InvalidDid", "EnvelopeError", "NonceStoreError", "CapabilityError",
    "PolicyError",
    "HostCallError", "BudgetExceeded", "StorageConfigError", "SchemaError",
    "CompileError", "CompileLimitExceeded",
    "PeerError", "InvalidPeerName", "PeerExists", "PeerNotFound", "RootNotFound", "CorruptPeer",
    "InsecureKeyFile", "DirectoryError", "UnknownPeer", "InvalidEntry", "EntryExists", "CorruptDirectory",
    "HistoryError", "HistoryMismatch", "LogicError", "LogicRefused", "BadArguments", "AuditError",
    "SchemaRefused", "SignatureError",
    "RateStoreError",
    "ClientError", "TransportError", "VerificationError", "RemoteRejected",
    "ChannelError", "ChannelClosed", "ChannelTimeout", "ChannelBusy", "FrameError", "ServeError",
    "LocalNatsError", "SharedStateError", "DirectoryConflict", "NoLiveWorker",
]

__getattr__, __dir__ = attach(__name__, {name: module for module, names in _EXPORTS.items()
                                         for name in names})
