"""Peer contexts: a peer's identity, storage and logic, live in this process.

A :class:`PeerContext` is what a script runs *inside*: its ``caller`` and
``target`` globals come from it, its ``fs::`` host calls reach the peer's own
storage backend (opened once per process and shared by every run of that
peer, so quotas and usage stay consistent), and its ``import``s look first in
the peer's ``logic/`` folder. Every run still gets a fresh sandbox and its own
host-call budget; the context only decides *where* host calls land.

Quotas are per peer, from an optional ``[quotas]`` table in ``peer.toml``::

    [quotas]
    max_total_bytes = 104857600
    max_files = 10000
    max_file_size = 16777216

Per-caller quotas (a policy rule's ``max_bytes``/``max_files``) are kept in the
peer's :class:`~peerbox.hostcalls.Ledger` (``<peer dir>/quota.sqlite``, opened
once per process): :meth:`PeerContext.quota_for` gives a run the quota its
changes are charged to.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._errors import UsageError
from ._peers import Peer, PeerStore
from ..run import CborParams, CompileLimits, Limits, LogicLayers, Program, Result, compile, split_module_name
from ..hostcalls import (LEDGER_FILE, Authorizer, Backend, CallerQuota, Ledger, LedgerStore,
                         Quotas, RecordStore, Schema, SchemaError, SharedAccounts, StorageSite,
                         open_storage)
from ._schema import PeerRecords, load_schema, schema_path

__all__ = ["PeerContext", "Contexts", "load_quotas"]

_QUOTA_KEYS = ("max_total_bytes", "max_files", "max_file_size")


def load_quotas(peer: Peer) -> Quotas:
    """The peer's quotas: defaults, overridden by ``[quotas]`` in ``peer.toml``.

    Raises :class:`~peerbox.UsageError` naming the file for a malformed table.
    """
    try:
        table = peer.read_meta().get("quotas", {})
    except UsageError as exc:  # CorruptPeer: read as PeerStore.get reads it (bounded, no symlinks)
        raise UsageError(f"{peer.paths.meta}: cannot read quotas: {exc}") from exc
    if not isinstance(table, dict) or set(table) - set(_QUOTA_KEYS):
        raise UsageError(f"{peer.paths.meta}: [quotas] may only set {', '.join(_QUOTA_KEYS)}")
    try:
        return Quotas(**table)
    except UsageError as exc:
        raise UsageError(f"{peer.paths.meta}: [quotas]: {exc}") from exc


class PeerContext:
    """One peer's context in this process. Close it (or use ``with``) to release storage."""

    def __init__(self, peer: Peer, *, quotas: Quotas | None = None,
                 accounts: SharedAccounts | None = None) -> None:
        self.peer = peer
        self.quotas = quotas if quotas is not None else load_quotas(peer)
        #: quota stores shared by a deployment's workers (None: this process's own, under the root)
        self.accounts = accounts
        self._storage: Backend | None = None
        self._ledger: LedgerStore | None = None
        self._records = PeerRecords(peer)
        self._schema: tuple[tuple[int, int, int], Schema | None] | None = None
        self._s3_records: PeerRecords | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def principal(self) -> dict[str, str]:
        """``#{id: "did:key:…", name: "alice"}``: how scripts see this peer."""
        return self.peer.principal()

    @property
    def storage(self) -> Backend:
        """The peer's backend, opened on first use from ``peer.toml`` (its ``[storage]`` table, else
        its ``backend``). Raises :class:`~peerbox.UsageError` for a storage setting that does not
        open (a missing credential variable: the message names it) and :class:`~peerbox.Error` if
        the storage cannot open."""
        with self._lock:
            if self._closed:
                raise UsageError(f"the context of peer {self.peer.name!r} is closed")
            if self._storage is None:
                table = self.peer.read_meta().get("storage")
                if not isinstance(table, dict):  # no [storage] table: the top-level `backend`
                    table = {"backend": self.peer.backend}
                site = StorageSite(self.peer.paths.storage, self.peer.did, self.accounts)
                self._storage = open_storage(table, site, self.quotas)
            return self._storage

    @property
    def ledger(self) -> LedgerStore:
        """The peer's per-caller quota ledger: ``quota.sqlite`` (its connection opens on first use,
        so this never fails; the ledger's own calls raise ``io_error``), or the shared one of
        :attr:`accounts`. Raises :class:`~peerbox.UsageError` once the context is closed."""
        with self._lock:
            if self._closed:
                raise UsageError(f"the context of peer {self.peer.name!r} is closed")
            if self._ledger is None:
                self._ledger = (self.accounts.ledger(self.peer.did) if self.accounts is not None
                                else Ledger(self.peer.paths.dir / LEDGER_FILE))
            return self._ledger

    def records(self) -> RecordStore:
        """The peer's records (``db::``), opened on first use from ``schema.toml`` and reopened when
        it changes: ``records.sqlite`` in the peer's directory for fs and sqlite storage, objects
        under the peer's prefix for s3 (:class:`~peerbox.hostcalls._s3records.S3Records`).
        Raises :class:`~peerbox.hostcalls.HostCallError`: ``unsupported`` for a peer without a
        schema, with a schema that does not check, or one that is not the schema applied to the
        records; ``io_error`` when the database or S3 fails."""
        storage = self.storage
        if storage.keeps_records:
            with self._lock:
                if self._s3_records is None:
                    self._s3_records = PeerRecords(self.peer, storage.records)
                opener = self._s3_records
            return opener()
        return self._records()

    def schema(self) -> Schema | None:
        """The peer's checked ``schema.toml``, what scripts compiled for it are checked against;
        None when it has none or one that does not check (its ``db::`` calls then fail at run
        time, saying so). Read again only when the file changes."""
        try:
            st = os.stat(schema_path(self.peer), follow_symlinks=False)
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if self._schema is not None and self._schema[0] == stamp:
                return self._schema[1]
        try:
            schema: Schema | None = load_schema(self.peer)
        except SchemaError:
            schema = None
        with self._lock:
            self._schema = (stamp, schema)
        return schema

    def quota_for(self, caller_did: str | None, max_bytes: int | None = None,
                  max_files: int | None = None) -> CallerQuota | None:
        """The quota a run of ``caller_did`` is charged to: tracked when a cap is set; else
        release-only (deletes and replaces still free other callers' shares) when the ledger
        file exists or the ledger is shared; else None (no caller was ever capped here: nothing to
        account, ~1 µs)."""
        if caller_did is not None and (max_bytes is not None or max_files is not None):
            return CallerQuota(self.ledger, caller_did, max_bytes, max_files, owner=self.peer.name)
        if self.accounts is not None or os.path.exists(self.peer.paths.dir / LEDGER_FILE):
            return CallerQuota(self.ledger, owner=self.peer.name)
        return None

    def compile(
        self,
        source: str,
        filename: str = "<script>",
        *,
        search_path: Sequence[str | os.PathLike[str]] = (),
        may_import: Callable[[str], bool] | None = None,
        limits: CompileLimits | None = None,
    ) -> Program:
        """Compile a script for this peer: ``import`` resolves in the peer's logic layers.

        ``search_path`` directories are searched after the peer's own layer.
        ``may_import(name)`` (the policy's ``module.import``) filters what the
        script itself imports: the module's bare name must be allowed and, for
        a layer-qualified import, the name as written too (so a rule denying
        ``secret`` also denies ``peer:secret``, and allowing ``notes`` does
        not allow ``builtin:notes``). What those modules import in turn is
        their owners' business. A refused module is reported exactly like a
        missing one, so a caller cannot probe which modules exist.
        ``limits`` is the compile's budget, imported modules included (see
        :func:`peerbox.compile`; default ``CompileLimits()``).

        The script is checked against the peer's schema (:meth:`schema`), if it has one.

        Raises what :func:`peerbox.compile` raises.
        """
        resolver = LogicLayers.of(self.peer, extra=search_path)
        schema = self.schema()
        if may_import is None:
            return compile(source, filename, resolver=resolver, limits=limits, schema=schema)
        allowed = may_import

        def permitted(name: str) -> bool:
            parsed = split_module_name(name)
            return parsed is not None and allowed(parsed[1]) and (parsed[0] is None or allowed(name))

        def filtered(name: str, importer: str) -> Any:
            return resolver(name, importer) if importer != filename or permitted(name) else None

        return compile(source, filename, resolver=filtered, limits=limits, schema=schema)

    def run(
        self,
        program: Program,
        params: dict[str, Any] | CborParams | None = None,
        *,
        limits: Limits | None = None,
        caller: dict[str, str] | None = None,
        authorize: Authorizer | None = None,
        quota: CallerQuota | None = None,
    ) -> Result:
        """Run ``program`` in this context; ``caller`` defaults to the peer itself (a local run).

        ``quota`` is what the run's changes are charged to; None: :meth:`quota_for` with no
        caller (release-only when the ledger exists).
        Raises what :meth:`Program.run` raises.
        """
        who = caller if caller is not None else self.principal
        if quota is None:
            quota = self.quota_for(None)
        return program.run(params, limits=limits, caller=who, target=self.principal, storage=self.storage,
                           authorize=authorize, quota=quota, records=self.records)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._records.close()
            if self._s3_records is not None:
                self._s3_records.close()
            if self._storage is not None:
                self._storage.close()
                self._storage = None
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None

    def __enter__(self) -> PeerContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Contexts:
    """The contexts of the peers under one root, one per peer for the life of the process
    (``accounts``: quota stores shared by a deployment's workers, given to every context)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *,
                 accounts: SharedAccounts | None = None) -> None:
        self.store = PeerStore(root)
        self.accounts = accounts
        self._open: dict[str, PeerContext] = {}
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        return self.store.root

    def get(self, name: str) -> PeerContext:
        """The context of peer ``name``. Raises :class:`~peerbox.UsageError` if there is none."""
        with self._lock:
            ctx = self._open.get(name)
            if ctx is None:
                ctx = self._open[name] = PeerContext(self.store.get(name), accounts=self.accounts)
            return ctx

    def close(self) -> None:
        with self._lock:
            for ctx in self._open.values():
                ctx.close()
            self._open.clear()

    def __enter__(self) -> Contexts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
