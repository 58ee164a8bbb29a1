"""peerbox.hostcalls: host functions and storage backends.

This package is the ONLY code that touches a peer's files. A script reaches
storage through host calls (``fs::read`` ...), which the sandbox hands to a
per-run :class:`Dispatch`; the Dispatch checks the arguments and the run's
:class:`Budget` and calls the peer's :class:`Backend`:

* :class:`FsBackend` — files under a root directory, resolved with directory
  file descriptors and ``O_NOFOLLOW`` so nothing outside the root is ever
  reached (see ``peerbox.hostcalls._dirfd``);
* :class:`SqliteBackend` — rows of one SQLite database per peer;
* :class:`Records` — a peer's typed records (``db::``), SQLite tables
  generated from its :class:`Schema` (``schema.toml``, checked by
  :func:`check_schema`), one ``records.sqlite`` per peer (fs and sqlite storage;
  an s3 peer's records are objects under its prefix, ``_s3records``); both
  are a :class:`RecordStore`;
* the s3 backend (``peerbox.hostcalls._s3``) — objects under a key prefix of
  an S3 bucket, opened through :func:`open_storage` from a peer's
  ``[storage]`` table (its client library, obstore, is imported only then).

Backends are rows of :data:`REGISTRY` (name -> factory). All follow the same
path rules (``peerbox.hostcalls._paths``), the same
:class:`Quotas` and the same semantics, down to error messages. Refusals are
:class:`HostCallError` (catchable by the script as ``e.kind``); a used-up
budget is :class:`BudgetExceeded` (stops the run).

The calls themselves (op number, script name, argument kinds, policy action,
result) are the rows of :data:`HOST_CALLS`, the one written form of the
host-call ABI: the dispatcher is built from it and the compiler is handed it
(``compile_to_wat(..., host_calls=HOST_CALLS)``).

Typical wiring::

    backend = open_backend("fs", peer_dir / "files", Quotas())   # once per peer and process
    ledger = Ledger(peer_dir / LEDGER_FILE)                       # once per peer and process
    quota = CallerQuota(ledger, caller_did, max_bytes=65536)      # per run: whom changes are charged to
    dispatch = Dispatch(backend, Budget(), authorize, quota)      # once per run
    value = dispatch.call(op, args)                               # per host call
"""

from __future__ import annotations

from ._backend import Backend, Stat, StorageConfigError, StorageSite
from ._dispatch import OP_ACTIONS, Authorizer, Dispatch, RecordsOpener
from ._errors import KINDS as ERROR_KINDS
from ._errors import BudgetExceeded, HostCallError
from ._fs import FsBackend
from ._accounts import LedgerStore, LocalTally, Reservation, SharedAccounts, Tally
from ._ledger import LEDGER_FILE, CallerQuota, Ledger, refuse_over_cap
from ._limits import Budget, Quotas, Usage
from ._open import BACKEND_KINDS, REGISTRY, BackendEntry, check_storage, open_backend, open_storage
from ._paths import MAX_NAME_BYTES, MAX_PATH_BYTES, TEMP_PREFIX, parse_path
from ._sqlite import SqliteBackend
from ._dump import export_lines, import_lines
from ._migrate import ADDITIVE, DESTRUCTIVE, Change, Plan, applied_schema, apply_migration, plan_migration
from ._recstore import RecordStore
from ._s3migrate import S3Schemas, s3_export_lines, s3_import_lines
from ._s3records import S3Records
from ._records import DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT, MAX_RECORD_BYTES, RECORDS_FILE, Records, RowScope
from ._schema import (MAX_SCHEMA_BYTES, SCALARS, Collection, Field, RecordType, Schema, SchemaError,
                      SchemaProblem, TypeRef, parse_type)
from ._schemacheck import check_schema
from ._validate import json_schema, validate_record
from ._seaweedfs import LocalS3
from ._table import HOST_CALLS, HostCall, Op

__all__ = [
    "HostCallError",
    "BudgetExceeded",
    "ERROR_KINDS",
    "Quotas",
    "Budget",
    "Backend",
    "Stat",
    "FsBackend",
    "SqliteBackend",
    "BACKEND_KINDS",
    "open_backend",
    "open_storage",
    "check_storage",
    "REGISTRY",
    "BackendEntry",
    "StorageSite",
    "StorageConfigError",
    "LocalS3",
    "Dispatch",
    "OP_ACTIONS",
    "Authorizer",
    "Ledger",
    "CallerQuota",
    "LedgerStore",
    "Reservation",
    "Tally",
    "LocalTally",
    "SharedAccounts",
    "refuse_over_cap",
    "Usage",
    "LEDGER_FILE",
    "Op",
    "HOST_CALLS",
    "HostCall",
    "parse_path",
    "TEMP_PREFIX",
    "MAX_PATH_BYTES",
    "MAX_NAME_BYTES",
    "RecordsOpener",
    "RecordStore",
    "Records",
    "export_lines",
    "import_lines",
    "ADDITIVE",
    "DESTRUCTIVE",
    "Change",
    "Plan",
    "S3Schemas",
    "S3Records",
    "s3_export_lines",
    "s3_import_lines",
    "applied_schema",
    "apply_migration",
    "plan_migration",
    "RowScope",
    "RECORDS_FILE",
    "MAX_RECORD_BYTES",
    "MAX_QUERY_LIMIT",
    "DEFAULT_QUERY_LIMIT",
    "Schema",
    "SchemaError",
    "SchemaProblem",
    "RecordType",
    "Field",
    "Collection",
    "TypeRef",
    "SCALARS",
    "MAX_SCHEMA_BYTES",
    "check_schema",
    "parse_type",
    "json_schema",
    "validate_record",
]
