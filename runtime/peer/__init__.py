"""Peers: identities with storage, policy and logic under a root, and running as one.

In the order a peer is found and used::

    _peers       ``PeerStore``/``Peer``: ``peers/NAME`` (key, peer.toml, policy, storage paths)
    _directory   ``peers.toml``: where remote peers are reachable (name, did, URL)
    _names       ``PeerNames``: who a did is here (local peers, then ``peers.toml``)
    _versions    what the history records: the installer's signed statement, the sealed entry
    _history     the signed, sealed version history of a peer's logic modules (on disk, verified)
    _logic       ``PeerLogic``: the owner's tools to list, set, remove, roll back, verify modules
    _context     ``PeerContext``/``Contexts``: compile and run as a peer (its storage, its imports)
    _api         published functions (``export fn``): lookup, argument binding, the call stub
    _audit       ``AuditLog``: a peer's decisions, one JSON line each (``audit.log``, rotated by size)

Below: :mod:`peerbox.run`, :mod:`peerbox.wire`, :mod:`peerbox.policy`, :mod:`peerbox.hostcalls`.
Above: :mod:`peerbox.trust`, which answers other peers' requests in a peer's context.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:
    from ._peers import (BACKENDS, DEFAULT_ROOT, ENV_ROOT, CorruptPeer, InsecureKeyFile, InvalidPeerName,
                         Peer, PeerError, PeerExists, PeerNotFound, PeerStore, RootNotFound)
    from ._directory import (CorruptDirectory, Directory, DirectoryError, Entry, EntryExists, InvalidEntry,
                             UnknownPeer, validate_url)
    from ._peers import validate_peer_name
    from ._history import HistoryError, HistoryMismatch
    from ._versions import Version, make_statement, open_statement, sha256_hex
    from ._logic import HEAD_KEY, LogicError, LogicRefused, ModuleListing, PeerLogic
    from ._context import Contexts, PeerContext
    from ._schema import (SCHEMA_FILE, Applied, PeerRecords, SchemaRefused, apply_schema, load_schema,
                          parse_schema_text, schema_history, schema_path, schema_versions,
                          verify_schema_history)
    from ._api import (CALL_FILE, BadArguments, PublishedFn, SignatureError, bind_args, call_source,
                       check_param_types, find_published, published, record_types, signature)
    from ._names import Known, NameResolution, PeerNames
    from ._audit import (AUDIT_FILE, DEFAULT_ROTATION, AuditError, AuditLog, AuditRecord, Decision, Rotation,
                         format_time, parse_since)

__all__ = ["BACKENDS", "DEFAULT_ROOT", "ENV_ROOT", "Peer", "PeerError", "PeerNotFound", "PeerStore",
           "InvalidPeerName", "PeerExists", "RootNotFound", "CorruptPeer", "InsecureKeyFile",
           "Directory", "Entry", "DirectoryError", "UnknownPeer", "InvalidEntry", "EntryExists",
           "CorruptDirectory", "validate_url", "validate_peer_name", "HistoryError", "HistoryMismatch",
           "Version", "make_statement",
           "open_statement", "sha256_hex", "HEAD_KEY", "LogicError", "LogicRefused", "PeerLogic", "Contexts",
           "PeerContext", "ModuleListing", "PublishedFn", "BadArguments", "find_published", "published",
           "bind_args", "call_source", "CALL_FILE", "SignatureError", "check_param_types",
           "record_types", "signature", "PeerNames", "Known", "NameResolution",
           "AuditLog", "AuditRecord", "AuditError", "Decision", "Rotation", "parse_since",
           "AUDIT_FILE", "DEFAULT_ROTATION", "format_time", "SCHEMA_FILE", "PeerRecords", "load_schema",
           "parse_schema_text", "schema_path", "Applied", "SchemaRefused", "apply_schema", "schema_history",
           "schema_versions", "verify_schema_history"]

__getattr__, __dir__ = attach(__name__, {
    "BACKENDS": "._peers",
    "AuditLog": "._audit",
    "AuditRecord": "._audit",
    "AuditError": "._audit",
    "Decision": "._audit",
    "Rotation": "._audit",
    "parse_since": "._audit",
    "AUDIT_FILE": "._audit",
    "DEFAULT_ROTATION": "._audit",
    "format_time": "._audit",
    "DEFAULT_ROOT": "._peers",
    "ENV_ROOT": "._peers",
    "Peer": "._peers",
    "PeerError": "._peers",
    "PeerNotFound": "._peers",
    "PeerStore": "._peers",
    "InvalidPeerName": "._peers",
    "PeerExists": "._peers",
    "RootNotFound": "._peers",
    "CorruptPeer": "._peers",
    "InsecureKeyFile": "._peers",
    "Directory": "._directory",
    "Entry": "._directory",
    "DirectoryError": "._directory",
    "UnknownPeer": "._directory",
    "InvalidEntry": "._directory",
    "EntryExists": "._directory",
    "CorruptDirectory": "._directory",
    "validate_url": "._directory",
    "validate_peer_name": "._peers",
    "HistoryError": "._history",
    "HistoryMismatch": "._history",
    "Version": "._versions",
    "make_statement": "._versions",
    "open_statement": "._versions",
    "sha256_hex": "._versions",
    "HEAD_KEY": "._logic",
    "LogicError": "._logic",
    "LogicRefused": "._logic",
    "PeerLogic": "._logic",
    "Contexts": "._context",
    "PeerContext": "._context",
    "SCHEMA_FILE": "._schema",
    "PeerRecords": "._schema",
    "load_schema": "._schema",
    "parse_schema_text": "._schema",
    "schema_path": "._schema",
    "Applied": "._schema",
    "SchemaRefused": "._schema",
    "apply_schema": "._schema",
    "schema_history": "._schema",
    "schema_versions": "._schema",
    "verify_schema_history": "._schema",
    "ModuleListing": "._logic",
    "PublishedFn": "._api",
    "BadArguments": "._api",
    "find_published": "._api",
    "published": "._api",
    "bind_args": "._api",
    "SignatureError": "._api",
    "check_param_types": "._api",
    "record_types": "._api",
    "signature": "._api",
    "call_source": "._api",
    "CALL_FILE": "._api",
    "PeerNames": "._names",
    "Known": "._names",
    "NameResolution": "._names",
})
