"""A peer's ``schema.toml``: reading it (bounded), and the records it describes.

:func:`load_schema` reads ``peers/NAME/schema.toml`` the way ``policy.toml``
is read (never through a symlink, at most
:data:`~peerbox.hostcalls.MAX_SCHEMA_BYTES`, UTF-8, bounded TOML: nesting and
dotted keys capped before tomllib sees the text) and hands the parsed table
and its text to :func:`peerbox.hostcalls.check_schema`, which finds the
lines of every problem. Every refusal is a
:class:`~peerbox.hostcalls.SchemaError` (``file:line: problem``, exit 2).

:class:`PeerRecords` keeps one peer's :class:`~peerbox.hostcalls.Records`
open for the process and reopens them when ``schema.toml`` changes; it is
the ``records`` opener a run's :class:`~peerbox.hostcalls.Dispatch` is given.
What a script is told when the records cannot open never names a host path.

Migrations: the records keep the schema they were *applied* under. The
first open of a peer's records applies its ``schema.toml`` as version 1;
after that a ``schema.toml`` that differs from the applied schema is
refused (``unsupported``: "run ``peerbox schema apply NAME``") until
:func:`apply_schema` compares, counts and applies it
(:mod:`peerbox.hostcalls._migrate`). Each applied schema is recorded in
``<peer dir>/schema-history/`` by the same signed, chained history as logic
versions (:class:`~peerbox.peer._history.History`, module ``schema``: the
peer's own statement over the TOML text, the seal naming the previous
entry, the sealed head); :func:`verify_schema_history` checks it and that
the last version is the schema the records hold. A peer whose storage is
s3 goes the same path, its records' applied schema being the ``schema``
object under its prefix (:class:`~peerbox.hostcalls.S3Schemas`: the same
plan; additive changes only, destructive ones refused even with
``allow_destructive``).
"""

from __future__ import annotations

import os
import re
import stat
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._atomic import read_bounded
from .._errors import Error
from ..hostcalls import (MAX_SCHEMA_BYTES, RECORDS_FILE, HostCallError, Plan, Records, RecordStore,
                         S3Schemas, Schema, SchemaError, StorageConfigError, StorageSite, applied_schema,
                         apply_migration, check_schema, open_storage, plan_migration)
from ..policy import TomlTooComplex, loads_bounded
from ._history import History, HistoryError
from ._peers import Peer
from ._versions import Version, make_statement

__all__ = ["SCHEMA_FILE", "load_schema", "parse_schema_text", "schema_path", "PeerRecords", "SchemaRefused",
           "Applied", "apply_schema", "schema_history", "schema_versions", "verify_schema_history",
           "SCHEMA_HISTORY_DIR", "SCHEMA_MODULE"]

#: The schema's file name in a peer's directory.
SCHEMA_FILE = "schema.toml"
_Stamp = tuple[int, int, int, int]
_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def schema_path(peer: Peer) -> Path:
    """Where ``peer``'s schema lives (it may not exist)."""
    return peer.paths.dir / SCHEMA_FILE


def _read(path: Path) -> tuple[str, _Stamp]:
    file = os.fspath(path)
    try:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise SchemaError.one(file, None, "no schema.toml: the peer declares no collections") from exc
    except OSError as exc:
        raise SchemaError.one(file, None, f"cannot read it: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SchemaError.one(file, None, "not a regular file")
        raw = read_bounded(fd, MAX_SCHEMA_BYTES)
    except OSError as exc:
        raise SchemaError.one(file, None, f"cannot read it: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(raw) > MAX_SCHEMA_BYTES:
        raise SchemaError.one(file, None, f"larger than {MAX_SCHEMA_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SchemaError.one(file, line, f"not UTF-8 text (byte {exc.start})") from exc
    return text, (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def parse_schema_text(text: str, file: str = SCHEMA_FILE) -> Schema:
    """Check the text of a schema file. Raises :class:`SchemaError` (every problem, with lines)."""
    try:
        data = loads_bounded(text)
    except tomllib.TOMLDecodeError as exc:  # TomlTooComplex too
        m = _TOML_WHERE.search(str(exc))
        line = int(m.group(1)) if m else (exc.line if isinstance(exc, TomlTooComplex) else None)
        msg = str(exc)[: m.start()] if m else str(exc)
        raise SchemaError.one(file, line, f"invalid TOML: {msg}") from exc
    return check_schema(data, text, file)


def load_schema(peer: Peer) -> Schema:
    """``peer``'s checked schema. Raises :class:`SchemaError` (``file:line: problem``) when it is
    missing, unreadable, too large, not UTF-8, not TOML or not a valid schema."""
    text, _ = _read(schema_path(peer))
    return parse_schema_text(text, os.fspath(schema_path(peer)))


class PeerRecords:
    """One peer's records for this process: opened on the first ``db::`` call, reopened when
    ``schema.toml`` changes. Call the object to get them (the Dispatch's ``records`` opener)."""

    def __init__(self, peer: Peer, store: Callable[[Schema, str], RecordStore] | None = None) -> None:
        self.peer = peer
        #: None: ``records.sqlite`` in the peer's directory; else how to open the records elsewhere
        #: (an S3 peer's: the schema applied is the object its records hold; the history is here)
        self._store = store
        self._lock = threading.Lock()
        self._open: RecordStore | None = None
        self._stamp: _Stamp | None = None
        self._closed = False

    def __call__(self) -> RecordStore:
        """The open records. Raises :class:`HostCallError` ``unsupported`` (no schema.toml, a schema
        that does not check: the message says to run ``peerbox schema check``) or ``io_error``."""
        path = schema_path(self.peer)
        with self._lock:
            if self._closed:
                raise HostCallError("unsupported", "the peer's records are closed")
            try:
                st = os.stat(path, follow_symlinks=False)
                stamp: _Stamp | None = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
            except OSError:
                stamp = None
            if self._open is not None and stamp == self._stamp:
                return self._open
            try:
                text, stamp = _read(path)
                schema = parse_schema_text(text, SCHEMA_FILE)
            except SchemaError as exc:
                missing = exc.line is None and "no schema.toml" in exc.problem
                raise HostCallError("unsupported", "this peer keeps no records: declare collections in its "
                                    "schema.toml" if missing else
                                    f"the peer's schema.toml does not check ({SCHEMA_FILE}:"
                                    f"{exc.line or '?'}); "
                                    f"see peerbox schema check {self.peer.name}") from exc
            if self._open is not None:
                self._open.close()
                self._open = None
            path = self.peer.paths.dir / RECORDS_FILE
            try:
                # the first: applied (to records.sqlite or the S3 objects), recorded
                if schema_history(self.peer).last(SCHEMA_MODULE) is None:
                    _apply(self.peer, text, schema, dry_run=False, allow_destructive=False)
            except (HistoryError, SchemaRefused) as exc:
                cause = exc.__cause__
                if isinstance(cause, HostCallError) and cause.kind == "io_error":
                    raise cause from cause.__cause__  # the storage is down (S3): what a script is told
                name = self.peer.name
                raise HostCallError("unsupported", "the peer's schema cannot be applied: see peerbox schema "
                                    f"apply {name} and peerbox schema history {name}") from exc
            try:
                self._open = (Records(path, schema, text=text) if self._store is None
                              else self._store(schema, text))
            except HostCallError as exc:
                if exc.kind != "unsupported":
                    raise
                raise HostCallError("unsupported", "the peer's schema.toml is not the schema its records "
                                    f"are stored under: run `peerbox schema apply {self.peer.name}` "
                                    "(--dry-run shows what would change)") from exc
            self._stamp = stamp
            return self._open

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._open is not None:
                self._open.close()
                self._open = None


# -- migrations and their signed history ---------------------------------------------------

#: The schema history's directory in a peer directory, and the history's one module.
SCHEMA_HISTORY_DIR = "schema-history"
SCHEMA_MODULE = "schema"


class SchemaRefused(Error):
    """``peerbox schema apply`` changed nothing: destructive changes without
    ``--allow-destructive``, or stored records that do not fit the new schema. Exit code 10."""

    exit_code = 10

    def __init__(self, message: str, plan: Plan | None = None) -> None:
        super().__init__(message)
        self.plan = plan


@dataclass(frozen=True, slots=True)
class Applied:
    """What :func:`apply_schema` did: the ``plan`` (every change, its class and count), whether
    it was ``applied`` (False for a dry run or nothing to do) and the recorded ``version``."""

    plan: Plan
    applied: bool
    version: Version | None


class _Sqlite:
    """The migrations of ``records.sqlite`` (:mod:`peerbox.hostcalls._migrate`), as :class:`S3Schemas`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def applied(self) -> tuple[Schema, str | None] | None:
        return applied_schema(self.path)

    def plan(self, new: Schema) -> Plan:
        return plan_migration(self.path, new)

    def apply(self, new: Schema, text: str | None, *, allow_destructive: bool,
              step: Callable[[str], None] | None = None) -> Plan:
        return apply_migration(self.path, new, text, allow_destructive=allow_destructive, step=step)


def _target(peer: Peer) -> _Sqlite | S3Schemas:
    """Where ``peer``'s records and their applied schema are: ``records.sqlite`` in its directory,
    or, for s3 storage, objects under its prefix (opening contacts nothing). Raises
    :class:`SchemaRefused` when the s3 storage does not open (a missing credential variable)."""
    storage = peer.read_meta().get("storage")
    if not (isinstance(storage, dict) and storage.get("backend") == "s3"):
        return _Sqlite(peer.paths.dir / RECORDS_FILE)
    try:
        backend = open_storage(storage, StorageSite(peer.paths.storage, peer.did))
    except StorageConfigError as exc:
        raise SchemaRefused(f"the peer's s3 storage does not open: {exc}; nothing was changed") from exc
    schemas = getattr(backend, "schemas", None)
    if not callable(schemas):  # pragma: no cover (backend = "s3" opens the s3 backend)
        raise SchemaRefused("the peer's storage keeps no records")
    result = schemas()
    assert isinstance(result, S3Schemas)
    return result


def schema_history(peer: Peer) -> History:
    """The signed history of ``peer``'s applied schemas (the logic history's format and checks)."""
    return History(peer.paths.dir / SCHEMA_HISTORY_DIR, peer.public_key)


def schema_versions(peer: Peer) -> list[Version]:
    """Every applied schema version of ``peer``, oldest first (its TOML: ``history.source(v.sha256)``)."""
    return schema_history(peer).entries(SCHEMA_MODULE)


def apply_schema(peer: Peer, *, dry_run: bool = False, allow_destructive: bool = False,
                 now: int | None = None, step: Callable[[str], None] | None = None) -> Applied:
    """Compare ``peer``'s ``schema.toml`` with the schema its records are stored under and apply it.

    ``dry_run``: only the plan. Raises :class:`SchemaError` (the file does not check),
    :class:`SchemaRefused` (destructive without ``allow_destructive``, or records that do not fit;
    nothing changed) or :class:`HistoryError`. ``step`` is passed to the migration (tests)."""
    text, _ = _read(schema_path(peer))
    schema = parse_schema_text(text, os.fspath(schema_path(peer)))
    return _apply(peer, text, schema, dry_run=dry_run, allow_destructive=allow_destructive, now=now,
                  step=step)


def _apply(peer: Peer, text: str, schema: Schema, *, dry_run: bool, allow_destructive: bool,
           now: int | None = None, step: Callable[[str], None] | None = None) -> Applied:
    target = _target(peer)
    history = schema_history(peer)
    with history.lock():
        try:
            plan = target.plan(schema)
        except HostCallError as exc:
            raise SchemaRefused(f"the records cannot be read: {exc}") from exc
        if dry_run:
            return Applied(plan, False, None)
        if plan.same and history.last(SCHEMA_MODULE) is not None:
            return Applied(plan, False, None)
        if isinstance(target, S3Schemas):
            try:
                target.refuse(plan, allow_destructive=allow_destructive)
            except HostCallError as exc:
                raise SchemaRefused(exc.message, plan) from exc
        if plan.destructive and not allow_destructive:
            raise SchemaRefused(f"{len(plan.destructive)} destructive change"
                                f"{'s' if len(plan.destructive) != 1 else ''}: refused without "
                                "--allow-destructive; nothing was changed", plan)
        key = peer.signing_key()
        when = int(time.time()) if now is None else now
        statement = make_statement(key, peer=peer.public_key, module=SCHEMA_MODULE, source=text, now=when)
        mark = history.mark(SCHEMA_MODULE)
        version = history.record(SCHEMA_MODULE, text, statement=statement, cap=None, rule=None, action="set",
                                 restores=None, sealer=key, now=when)
        try:
            plan = target.apply(schema, text, allow_destructive=allow_destructive, step=step)
        except HostCallError as exc:
            history.undo(mark)  # nothing applied: nothing recorded
            raise SchemaRefused(f"{exc.message}" if exc.kind != "io_error" else str(exc), None) from exc
        except BaseException:
            history.undo(mark)
            raise
        return Applied(plan, True, version)


def verify_schema_history(peer: Peer) -> list[str]:
    """Every problem with ``peer``'s schema history ([] when it checks out): the logic history's
    checks (seals, chain, statements, sources, the head), and that its last version is the
    schema the records are stored under."""
    history = schema_history(peer)
    problems: list[str] = []
    with history.lock(shared=True):
        try:
            head: dict[str, tuple[int, str]] | None = history.head()
        except HistoryError as exc:
            head = None
            problems.append(str(exc))
        try:
            applied = _target(peer).applied()
        except (HostCallError, SchemaRefused) as exc:
            return [*problems, f"the records cannot be read: {exc}"]
        live = None if applied is None or applied[1] is None else applied[1].encode("utf-8")
        found = history.verify(SCHEMA_MODULE, live, head,
                               lambda v, by: "schema versions are applied by the peer itself")
    # the logic history's words for the live module: here, the schema the records are stored under
    return problems + [p.replace("logic file is missing", "the records hold no applied schema text")
                       .replace("the live file", "the schema the records are stored under") for p in found]
