"""The replay guard: every (caller, nonce) a peer has accepted, until it expires.

A request carries a random ``nonce`` and an expiry ``exp``. The target records
each accepted ``(caller, nonce)`` with its ``exp`` and refuses the same pair
again. Entries are kept until their ``exp`` has passed: from then on the
request is refused as expired anyway, so the entry can go. The record lives
in a small SQLite database, so a replay is caught after a restart of the
process too, and by every process sharing the file.

**Group commit.** A check thread asking :meth:`NonceStore.seen_or_add` about
a new pair does not run a transaction of its own: it joins the open *batch*.
When no batch is being written, one of the waiting callers (the leader) takes
the open batch and writes it in one ``BEGIN IMMEDIATE`` transaction, while new
callers gather in the next batch; so the number of transactions adapts to the
load (one per call when calls come one at a time, one per 2 to 8 calls with
4 to 16 threads calling) and nobody waits for a timer. Each caller returns only once the
batch holding its pair is committed: a reply can never leave before its nonce
is written, so a crash can never let a replay through. If the commit fails
(disk full, I/O error, the database locked beyond ``busy_timeout``) every
caller of that batch gets :class:`NonceStoreError` (the request is refused,
never run) and none of its pairs is remembered, so a retry is judged afresh.

**SQLite is the arbiter.** Each pair is written with ``INSERT ... ON CONFLICT
DO UPDATE ... WHERE exp <= now``: a pair that another connection (another
worker process on the same file) recorded and that has not expired changes
no row, and is answered "seen". Of two concurrent calls with one pair, in
threads or processes, exactly one is answered ``False``.

**The memory.** Pairs this store committed are remembered in a bounded map
(at most ``memory_entries``, oldest first out, expired ones swept as batches
are written, about 150 bytes each), which answers a replay without touching
SQLite; a pair missing from it is simply asked of SQLite. Pairs in a batch
not yet committed are known too: a second caller with the same pair
waits for that batch and is answered "seen" once it commits (and is judged
afresh if it failed).

**Durability.** WAL mode. ``synchronous="NORMAL"`` (the default) makes a
commit durable across a crash of the process (the WAL is written before the
caller returns) but not across a power loss or kernel crash, which may lose
the last transactions; ``synchronous="FULL"`` fsyncs the WAL at each commit
(one fsync per batch, not per call) and survives those too.

This is the only I/O of the envelope layer.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol

from .._errors import Error, ExceptionMapping, UsageError, map_exceptions
from .._sqlite import open_wal

__all__ = ["NonceStore", "NonceStoreError", "ReplayGuard", "PRUNE_EVERY", "MEMORY_ENTRIES"]

#: Expired rows are deleted (and expired pairs dropped from memory) once this many pairs were written.
PRUNE_EVERY = 256

#: Default bound on the pairs a store remembers in memory (about 150 bytes each).
MEMORY_ENTRIES = 2048

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nonces (
    caller BLOB NOT NULL,
    nonce  BLOB NOT NULL,
    exp    INTEGER NOT NULL,
    PRIMARY KEY (caller, nonce)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_exp ON nonces (exp);
"""

#: Records a pair unless an unexpired row holds it: changes one row if the pair is new (or its
#: row had expired), none if it was seen.
_UPSERT = ("INSERT INTO nonces (caller, nonce, exp) VALUES (?1, ?2, ?3) "
           "ON CONFLICT (caller, nonce) DO UPDATE SET exp = excluded.exp WHERE nonces.exp <= ?4")


class NonceStoreError(Error):
    """The nonce database cannot be opened or written (disk full, corrupt, locked, not a database)."""

    exit_code = 2


class ReplayGuard(Protocol):
    """What :func:`~peerbox.wire._envelope.check_delivery` needs of a replay store: the first-seen
    check. :class:`NonceStore` (SQLite, one machine) is the default; a shared one (JetStream key-value,
    :mod:`peerbox.net._jsstores`) lets several workers refuse each other's replays."""

    def seen_or_add(self, caller: bytes, nonce: bytes, exp: int, now: int) -> bool:
        """Record ``(caller, nonce)`` until ``exp``; ``True`` if it was already there (unexpired).
        Returns only once the record is durable. Raises :class:`NonceStoreError` when the store
        cannot answer (the request must then be refused: not knowing is not "unseen")."""
        ...

    def close(self) -> None:
        """Release what the store holds (idempotent)."""
        ...


def _store_errors(what: str) -> ExceptionMapping:
    """sqlite3's errors (and the OS's, creating the directory) on the store: a
    :class:`NonceStoreError` for the operator, ``what`` naming the file and SQLite's reason."""

    def make(exc: BaseException) -> NonceStoreError:
        return NonceStoreError(f"{what}: {exc}")

    return {sqlite3.Error: make, OSError: make}


def _key(caller: bytes, nonce: bytes) -> bytes:
    """One bytes object naming the pair (smaller than a tuple): unambiguous, as it ends with
    ``len(caller)``."""
    return caller + nonce + len(caller).to_bytes(4, "little")


@dataclass(eq=False, slots=True)
class _Batch:
    """Pairs written in one transaction, and its outcome once ``done``.

    ``waiters`` are the latches (locks held by their owners) of the callers
    asleep until it is done; releasing one wakes its caller alone, which then
    needs neither the store's lock nor a fight with the others to read the
    outcome.
    """

    keys: list[bytes] = field(default_factory=list)
    rows: list[tuple[bytes, bytes, int, int]] = field(default_factory=list)  # caller, nonce, exp, now
    seen: list[bool] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False
    waiters: list[threading.Lock] = field(default_factory=list)

    def wake_all(self) -> None:
        for latch in self.waiters:
            latch.release()
        self.waiters.clear()


class NonceStore:
    """Persistent set of seen ``(caller, nonce)`` pairs with expiry, written by group commit.

    ``path`` is the SQLite file (created with its directory if missing) or
    ``":memory:"`` for a store that lives as long as the object.
    ``busy_timeout`` is how long (seconds) a commit waits for another
    connection's write lock before it fails; ``synchronous`` is SQLite's
    setting (see the module docstring); ``memory_entries`` bounds the pairs
    remembered in memory. Thread safe; any number of stores (in any number of
    processes) may share one file. Raises :class:`NonceStoreError` if the
    file cannot be used, :class:`~peerbox.UsageError` for a bad setting.

    ``commits`` counts the transactions committed, ``failed_commits`` those
    that failed, ``calls`` the calls of :meth:`seen_or_add`.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0,
                 synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
                 memory_entries: int = MEMORY_ENTRIES) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise UsageError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        if memory_entries < 0 or busy_timeout < 0:
            raise UsageError("memory_entries and busy_timeout must not be negative")
        self.path = str(path)
        self.memory_entries = memory_entries
        self.commits = 0
        self.failed_commits = 0
        self.calls = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when the connection is free
        self._committed: dict[bytes, int] = {}  # key -> exp, oldest first
        self._pending: dict[bytes, _Batch] = {}  # key -> the batch writing it
        self._open: _Batch | None = None  # the batch callers join
        self._busy = False  # a leader (or prune, len, close) is using the connection
        self._closed = False
        self._since_prune = 0
        with map_exceptions(_store_errors(f"cannot open the nonce store {self.path}")):
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = open_wal(self.path, _SCHEMA, synchronous=synchronous, busy_timeout=busy_timeout)

    # -- the check ----------------------------------------------------------------------

    def seen_or_add(self, caller: bytes, nonce: bytes, exp: int, now: int) -> bool:
        """Record ``(caller, nonce)`` until ``exp``; return ``True`` if it was already there.

        Returns once the answer is durable: ``False`` only after the batch
        holding the pair is committed. Atomic: of two concurrent calls with the
        same pair (threads, stores or processes on one file), exactly one
        returns ``False``. A pair whose recorded ``exp`` has passed
        (``exp <= now``) counts as unseen and is replaced. Raises
        :class:`NonceStoreError` if the batch could not be committed or the
        store is closed (the request must then be refused: not knowing is not
        "unseen"); the pair is then not remembered.
        """
        key = _key(caller, nonce)
        lock = self._lock
        lock.acquire()
        while True:
            if self._closed:
                lock.release()
                raise NonceStoreError(f"nonce store {self.path}: closed")
            self.calls += 1
            writing = self._pending.get(key)
            if writing is None:
                break
            # a concurrent call holds this pair: its batch decides (if it failed, judge afresh)
            self._await(writing)
            if writing.error is None:
                return True
            lock.acquire()
            self.calls -= 1
        known = self._committed.get(key)
        if known is not None:
            if known > now:
                lock.release()
                return True
            del self._committed[key]
        batch = self._open
        if batch is None:
            batch = self._open = _Batch()
        index = len(batch.keys)
        batch.keys.append(key)
        batch.rows.append((caller, nonce, exp, now))
        self._pending[key] = batch
        self._await(batch)
        error = batch.error
        if error is None:
            return batch.seen[index]
        if isinstance(error, (sqlite3.Error, OSError)):
            raise NonceStoreError(f"nonce store {self.path}: {error}") from error
        raise NonceStoreError(f"nonce store {self.path}: the batch was not written ({error!r})") from error

    def _await(self, batch: _Batch) -> None:
        """Return once ``batch`` is done, writing it if nobody else does (called with the lock
        held; returns with it released).

        A batch that is not done and not being written is the open one, so
        whenever the connection is free a caller of the open batch takes the
        lead (one asleep is woken when it becomes free).
        """
        lock = self._lock
        while not batch.done:
            if not self._busy and self._open is not None:
                interrupt = self._lead()
                if interrupt is not None:
                    lock.release()
                    raise interrupt  # KeyboardInterrupt and the like stop the leader
                continue
            latch = threading.Lock()
            latch.acquire()
            batch.waiters.append(latch)
            lock.release()
            try:
                latch.acquire()  # released when the batch is done, or to take the lead
            except BaseException:  # interrupted: pass on a lead this caller may have been given
                with lock:
                    if latch in batch.waiters:
                        batch.waiters.remove(latch)
                    elif not self._busy:
                        self._wake_leader()
                raise
            if batch.done:
                return
            lock.acquire()
        lock.release()

    def _lead(self) -> BaseException | None:
        """Write the open batch (called with the lock held; released while writing). Returns
        what interrupted the writing if it was not an ``Exception`` (the batch failed with it)."""
        batch = self._open
        assert batch is not None
        self._open = None
        self._busy = True
        seen: list[bool] = []
        error: BaseException | None = None
        self._lock.release()
        try:
            seen = self._write(batch.rows)
        except BaseException as exc:  # every caller of the batch must learn the outcome
            error = exc
        finally:
            self._lock.acquire()
            self._free()
        self._settle(batch, seen, error)
        return None if error is None or isinstance(error, Exception) else error

    def _settle(self, batch: _Batch, seen: list[bool], error: BaseException | None) -> None:
        """Record the outcome of writing ``batch`` and wake its callers (the lock held)."""
        for key in batch.keys:
            del self._pending[key]
        if error is None:
            self.commits += 1
            batch.seen = seen
            for key, (_, _, exp, _), was_seen in zip(batch.keys, batch.rows, seen, strict=True):
                if not was_seen:
                    self._remember(key, exp)
            if self._since_prune == 0:  # _write just pruned the table: sweep the memory too
                self._sweep(min(row[3] for row in batch.rows))
        else:
            self.failed_commits += 1
            batch.error = error
        batch.done = True
        batch.wake_all()

    def _write(self, rows: list[tuple[bytes, bytes, int, int]]) -> list[bool]:
        """One transaction recording ``rows``; for each, whether it was already there.

        Called by the one thread holding the connection. Raises sqlite3's
        errors (the transaction is rolled back).
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            prune = self._since_prune + len(rows) >= PRUNE_EVERY
            if prune:
                db.execute("DELETE FROM nonces WHERE exp <= ?", (min(row[3] for row in rows),))
            seen = [db.execute(_UPSERT, row).rowcount == 0 for row in rows]
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the first error is the one to report; SQLite rolls back on its own
            raise
        self._since_prune = 0 if prune else self._since_prune + len(rows)
        return seen

    def _free(self) -> None:
        """Mark the connection free (the lock held): wake one caller of the open batch to write
        it, and whoever waits for the connection."""
        self._busy = False
        self._wake_leader()
        self._idle.notify_all()

    def _wake_leader(self) -> None:
        """Wake one caller asleep in the open batch, to write it (the lock held)."""
        if self._open is not None and self._open.waiters:
            self._open.waiters.pop().release()

    # -- the memory ---------------------------------------------------------------------

    def _remember(self, key: bytes, exp: int) -> None:
        """Keep a committed pair in memory, forgetting the oldest beyond ``memory_entries``."""
        committed = self._committed
        committed[key] = exp
        while len(committed) > self.memory_entries:
            del committed[next(iter(committed))]

    def _sweep(self, now: int) -> None:
        """Forget the pairs in memory that expired at ``now``."""
        gone = [key for key, exp in self._committed.items() if exp <= now]
        for key in gone:
            del self._committed[key]

    @property
    def remembered(self) -> int:
        """How many pairs are in memory (committed by this store, not expired when last swept)."""
        return len(self._committed)

    # -- maintenance --------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The connection, for one thread, between batches. Raises :class:`NonceStoreError`
        (closed store, or SQLite's error in the block)."""
        with self._lock:
            while self._busy and not self._closed:
                self._idle.wait()
            if self._closed:
                raise NonceStoreError(f"nonce store {self.path}: closed")
            self._busy = True
        try:
            with map_exceptions(_store_errors(f"nonce store {self.path}")):
                yield self._db
        finally:
            with self._lock:
                self._free()

    def prune(self, now: int) -> int:
        """Delete every entry whose ``exp`` has passed; return how many rows went.

        Raises :class:`NonceStoreError` on a database failure or a closed store.
        """
        with self._connection() as db:
            count = db.execute("DELETE FROM nonces WHERE exp <= ?", (now,)).rowcount
        with self._lock:
            self._sweep(now)
        return count

    def __len__(self) -> int:
        """How many pairs the database holds (expired ones not yet pruned included)."""
        with self._connection() as db:
            return int(db.execute("SELECT count(*) FROM nonces").fetchone()[0])

    def close(self) -> None:
        """Close the database (idempotent). Waits for the batch being written; callers of
        the batch not yet written, and later ones, get :class:`NonceStoreError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            while self._busy:
                self._idle.wait()
            self._busy = True  # for good: nobody writes again
            batch, self._open = self._open, None
            if batch is not None:
                for key in batch.keys:
                    del self._pending[key]
                batch.error = sqlite3.ProgrammingError("the store was closed")
                batch.done = True
                batch.wake_all()
            self._committed.clear()
            self._db.close()
            self._idle.notify_all()

    def __enter__(self) -> NonceStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NonceStore({self.path!r})"
