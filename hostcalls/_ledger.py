"""Per-caller quotas: who keeps what in a peer's storage, and the caps on it.

A peer's policy may cap what one *caller* keeps in the peer's storage
(``limits = { max_bytes = 65536, max_files = 100 }`` on the caller's ``exec``
or ``call`` rule). The backends count the peer's storage as a whole; this
module attributes it. A :class:`Ledger` (``<peer dir>/quota.sqlite``, one per
peer per process, shared by its threads and by every process serving the peer)
holds a *share* per (path, caller):

* ``fs::write``/``fs::write_bytes`` of P by X: afterwards P's bytes and its
  entry count against X alone (against nobody when the writer is untracked);
* ``fs::append`` to P by X: X's share of P grows by the bytes appended (and
  holds P's entry when the append created P);
* ``fs::mkdir`` by X: each directory it creates is an entry of X's;
* ``fs::delete`` of P by anyone releases every share of P.

A caller's usage is the sum of its shares (and of its reservations in
flight). The ledger is any :class:`~peerbox.hostcalls._accounts.LedgerStore`:
this SQLite one by default, the JetStream one a worker with shared state
passes (:mod:`peerbox.net._jsquota`: the same steps, each a compare-and-set
on a key-value record, so the caps hold across workers on several machines).
A change by a *tracked* caller (a :class:`CallerQuota` naming a
caller and at least one cap) first reserves what it adds in one ``BEGIN
IMMEDIATE`` transaction that checks ``usage + reserve <= cap``; only then
does the backend change the storage, and a second transaction settles the
shares (or returns the reservation when the backend refused). So the caps hold
across threads and processes; what can drift is the attribution of *one*
path, after two concurrent changes of that same path or a crash between the
change and the settle, and it is corrected at the next write or delete of
that path. Runs with a release-only quota (no caller, no cap: the owner's own
runs) still release shares on delete and replace, so the owner deleting a
caller's files frees that caller's quota.

Every SQLite or OS failure of the ledger is ``HostCallError("io_error", ...)``
naming no host path. The hooks :meth:`CallerQuota.write`, ``append``,
``mkdir`` and ``delete`` are what :class:`~peerbox.hostcalls.Dispatch` calls
around each change.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from peerbox._errors import ExceptionMapping, map_exceptions
from peerbox._sqlite import open_wal

from ._accounts import LedgerStore, Reservation
from ._errors import HostCallError, db_reason, os_reason, show

__all__ = ["LEDGER_FILE", "Ledger", "CallerQuota", "refuse_over_cap", "prefixes"]

#: The ledger's file name in the peer's directory.
LEDGER_FILE = "quota.sqlite"

_BUSY_TIMEOUT = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS share (path TEXT NOT NULL, caller TEXT NOT NULL, bytes INTEGER NOT NULL,
                                  entry INTEGER NOT NULL, PRIMARY KEY (path, caller)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS share_caller ON share(caller);
CREATE TABLE IF NOT EXISTS usage (caller TEXT PRIMARY KEY, bytes INTEGER NOT NULL,
                                  entries INTEGER NOT NULL) WITHOUT ROWID;
"""


def _failure(exc: BaseException) -> HostCallError:
    reason = os_reason(exc) if isinstance(exc, OSError) else db_reason(exc)
    return HostCallError("io_error", f"the quota ledger failed: {reason}")


_LEDGER_ERRORS: ExceptionMapping = {sqlite3.Error: _failure, OSError: _failure}


@dataclass(frozen=True, slots=True)
class _Reservation:
    """What one change reserved for ``caller`` (returned on failure, folded in on success)."""

    caller: str
    bytes: int
    entries: int


class Ledger:
    """The shares of one peer's storage, in the SQLite file ``path``.

    Thread-safe (one connection behind a lock), and shared by processes (each
    change is one ``BEGIN IMMEDIATE`` transaction; a busy database is waited
    for up to 10 s). The connection is opened on first use, so constructing a
    Ledger never fails; every method raises ``HostCallError("io_error", …)``
    when the file cannot be opened or written (the message names no host
    path). Close it when the peer's context closes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._closed = False

    # -- connection --------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        return open_wal(self.path, _SCHEMA, busy_timeout=_BUSY_TIMEOUT)

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """The connection inside one transaction (``BEGIN IMMEDIATE`` when ``write``), under the
        lock; committed when the block ends, rolled back when it raises. Raises ``io_error`` for a
        closed ledger or a failing database."""
        with self._lock, map_exceptions(_LEDGER_ERRORS):
            if self._closed:
                raise HostCallError("io_error", "the quota ledger is closed")
            if self._db is None:
                self._db = self._open()
            db = self._db
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:  # the first failure is the one to report
                        pass
                raise

    # -- what owners ask ---------------------------------------------------------------

    def usage(self, caller: str) -> tuple[int, int]:
        """``(bytes, entries)`` that ``caller``'s requests keep in the storage (reservations in
        flight included). Raises ``io_error`` if the ledger fails."""
        with self._transaction(write=False) as db:
            row = db.execute("SELECT bytes, entries FROM usage WHERE caller = ?", (caller,)).fetchone()
        return (int(row[0]), int(row[1])) if row is not None else (0, 0)

    def usages(self) -> dict[str, tuple[int, int]]:
        """Every caller's ``(bytes, entries)``, callers using nothing left out."""
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT caller, bytes, entries FROM usage WHERE bytes != 0 OR entries != 0")
            return {str(c): (int(b), int(e)) for c, b, e in rows}

    def reset(self, caller: str | None = None) -> None:
        """Forget ``caller``'s shares (every caller's when None): the owner's remedy after the
        storage was changed from outside peerbox."""
        with self._transaction() as db:
            if caller is None:
                db.execute("DELETE FROM share")
                db.execute("DELETE FROM usage")
            else:
                db.execute("DELETE FROM share WHERE caller = ?", (caller,))
                db.execute("DELETE FROM usage WHERE caller = ?", (caller,))

    def close(self) -> None:
        """Close the connection. Idempotent; later calls raise ``io_error``."""
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the steps of a change (used by CallerQuota) -------------------------------------

    def reserve(self, caller: str, max_bytes: int | None, max_files: int | None, path: str, verb: str, *,
                add_bytes: int, add_entries: int, replace: bool, storage_name: str) -> _Reservation:
        """Reserve what a change of ``path`` adds to ``caller``'s usage, or refuse.

        With ``replace`` the change replaces the file, so the caller's own share of it
        counts as already paid. Raises ``HostCallError("quota_exceeded")`` (nothing
        reserved) past a cap (``max_bytes``, ``max_files``; None: none).
        """
        with self._transaction() as db:
            if replace:
                held = db.execute("SELECT bytes, entry FROM share WHERE path = ? AND caller = ?",
                                  (path, caller)).fetchone()
                if held is not None:
                    add_bytes = max(0, add_bytes - int(held[0]))
                    add_entries = 0 if held[1] else add_entries
            row = db.execute("SELECT bytes, entries FROM usage WHERE caller = ?", (caller,)).fetchone()
            used_bytes, used_entries = (int(row[0]), int(row[1])) if row is not None else (0, 0)
            refuse_over_cap(max_bytes, max_files, path, verb, used=(used_bytes, used_entries),
                            add=(add_bytes, add_entries), storage_name=storage_name)
            if add_bytes or add_entries:
                db.execute("INSERT INTO usage VALUES (?, ?, ?) ON CONFLICT(caller) DO UPDATE SET "
                           "bytes = bytes + excluded.bytes, entries = entries + excluded.entries",
                           (caller, add_bytes, add_entries))
        return _Reservation(caller, add_bytes, add_entries)

    def unreserve(self, r: Reservation) -> None:
        """Return a reservation whose change did not happen."""
        if r.bytes or r.entries:
            with self._transaction() as db:
                _add(db, r.caller, -r.bytes, -r.entries)

    def settle(self, path: str, r: Reservation | None, *, release: bool, share: tuple[int, int] | None,
                grow: bool = False) -> None:
        """Record a change of ``path`` that happened: release every share of it first
        (``release``), then give the reserving caller ``share`` = (bytes, entry) of it (added to
        its existing share when ``grow``), and fold the reservation ``r`` back in."""
        with self._transaction() as db:
            if release:
                _release(db, path)
            if r is not None:
                if share is not None:
                    n, entry = share
                    if grow:
                        held = db.execute("SELECT entry FROM share WHERE path = ? AND caller = ?",
                                          (path, r.caller)).fetchone()
                        added_entry = 1 if entry and not (held is not None and held[0]) else 0
                        db.execute("INSERT INTO share VALUES (?, ?, ?, ?) ON CONFLICT(path, caller) DO UPDATE"
                                   " SET bytes = bytes + excluded.bytes, entry = max(entry, excluded.entry)",
                                   (path, r.caller, n, entry))
                    else:
                        added_entry = entry
                        db.execute("INSERT INTO share VALUES (?, ?, ?, ?)", (path, r.caller, n, entry))
                    _add(db, r.caller, n - r.bytes, added_entry - r.entries)
                else:
                    _add(db, r.caller, -r.bytes, -r.entries)

    def settle_dirs(self, created: list[str], r: Reservation) -> None:
        """Record directories a tracked mkdir created: each an entry of the reserving caller's."""
        with self._transaction() as db:
            for d in created:
                _release(db, d)
                db.execute("INSERT INTO share VALUES (?, ?, 0, 1)", (d, r.caller))
            _add(db, r.caller, 0, len(created) - r.entries)


def refuse_over_cap(max_bytes: int | None, max_files: int | None, path: str, verb: str, *,
                    used: tuple[int, int], add: tuple[int, int], storage_name: str) -> None:
    """Raise ``quota_exceeded`` when adding ``add`` = (bytes, entries) to ``used`` passes a cap (the
    check of every :class:`~peerbox.hostcalls._accounts.LedgerStore`'s ``reserve``)."""
    (used_bytes, used_entries), (add_bytes, add_entries) = used, add
    if max_bytes is not None and add_bytes and used_bytes + add_bytes > max_bytes:
        raise HostCallError("quota_exceeded", (
            f"{verb} {show(path)}: this caller may keep at most {max_bytes} bytes in "
            f"{storage_name} (its requests keep {used_bytes}; this adds {add_bytes})"))
    if max_files is not None and add_entries and used_entries + add_entries > max_files:
        raise HostCallError("quota_exceeded", (
            f"{verb} {show(path)}: this caller may keep at most {max_files} files and "
            f"directories in {storage_name} (its requests keep {used_entries}; "
            f"this adds {add_entries})"))


def prefixes(path: str) -> list[str]:
    """``a``, ``a/b``, ``a/b/c`` for ``a/b/c`` (nothing for the root ``""``)."""
    return _prefixes(path)


def _add(db: sqlite3.Connection, caller: str, n_bytes: int, n_entries: int) -> None:
    if n_bytes or n_entries:
        db.execute("INSERT INTO usage VALUES (?, ?, ?) ON CONFLICT(caller) DO UPDATE SET "
                   "bytes = bytes + excluded.bytes, entries = entries + excluded.entries",
                   (caller, n_bytes, n_entries))


def _release(db: sqlite3.Connection, path: str) -> None:
    """Credit every caller's share of ``path`` back and drop the shares."""
    held = db.execute("SELECT caller, bytes, entry FROM share WHERE path = ?", (path,)).fetchall()
    for caller, n, entry in held:
        _add(db, caller, -int(n), -int(entry))
    if held:
        db.execute("DELETE FROM share WHERE path = ?", (path,))


def _prefixes(path: str) -> list[str]:
    """``a``, ``a/b``, ``a/b/c`` for ``a/b/c`` (nothing for the root ``""``)."""
    parts = path.split("/") if path else []
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


@dataclass(frozen=True, slots=True)
class CallerQuota:
    """One run's per-caller quota: the peer's ``ledger``, the ``caller`` (a did) its changes
    are charged to and its caps ``max_bytes``/``max_files`` (None: no cap). Without a caller or
    without caps it is *release-only*: the run's deletes and replaces release other callers'
    shares, and it is charged nothing. ``owner`` names the peer in messages.

    The hooks take the change as a callable and run it between the reservation and the
    settle; ``path`` is canonical (``join(parse_path(p))``). They raise what the change raises
    (the reservation returned), ``quota_exceeded`` past a cap (nothing changed) and
    ``io_error`` when the ledger fails.
    """

    ledger: LedgerStore
    caller: str | None = None
    max_bytes: int | None = None
    max_files: int | None = None
    owner: str | None = None

    @property
    def tracked(self) -> bool:
        """True when changes are charged to a caller (a caller and at least one cap)."""
        return self.caller is not None and (self.max_bytes is not None or self.max_files is not None)

    @property
    def storage_name(self) -> str:
        return f"{self.owner}'s storage" if self.owner else "this peer's storage"

    def write(self, path: str, size: int, change: Callable[[], None]) -> None:
        """Replace (or create) the file ``path`` with ``size`` bytes through ``change``."""
        if not self.tracked:
            change()
            self.ledger.settle(path, None, release=True, share=None)
            return
        r = self._reserve(path, "writing", add_bytes=size, add_entries=1, replace=True)
        self._run(change, r)
        self.ledger.settle(path, r, release=True, share=(size, 1))

    def append(self, path: str, size: int, exists: Callable[[str], bool],
               change: Callable[[], object]) -> None:
        """Append ``size`` bytes to ``path`` through ``change``; ``exists`` tells whether it creates it."""
        if not self.tracked:
            change()
            return
        created = not exists(path)
        r = self._reserve(path, "appending to", add_bytes=size, add_entries=int(created), replace=False)
        self._run(change, r)
        self.ledger.settle(path, r, release=created, share=(size, int(created)), grow=True)

    def mkdir(self, path: str, exists: Callable[[str], bool], change: Callable[[], None]) -> None:
        """Create the directory ``path`` and its missing parents through ``change``."""
        if not self.tracked:
            change()
            return
        created = [p for p in _prefixes(path) if not exists(p)]
        r = self._reserve(path, "creating", add_bytes=0, add_entries=len(created), replace=False)
        self._run(change, r)
        self.ledger.settle_dirs(created, r)

    def delete(self, path: str, change: Callable[[], None]) -> None:
        """Delete ``path`` through ``change``, then release every share of it."""
        change()
        self.ledger.settle(path, None, release=True, share=None)

    def _reserve(self, path: str, verb: str, *, add_bytes: int, add_entries: int,
                 replace: bool) -> Reservation:
        assert self.caller is not None
        return self.ledger.reserve(self.caller, self.max_bytes, self.max_files, path, verb,
                                   add_bytes=add_bytes, add_entries=add_entries, replace=replace,
                                   storage_name=self.storage_name)

    def _run(self, change: Callable[[], object], r: Reservation) -> None:
        try:
            change()
        except BaseException:
            self.ledger.unreserve(r)
            raise
