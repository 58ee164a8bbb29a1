"""The SQLite backend: a peer's files are rows of one database file.

One database per peer (stdlib :mod:`sqlite3`), in WAL mode with
``synchronous=FULL``: a committed change survives a crash or power loss, and
a crash mid-operation rolls back to the previous state (atomic writes for
free). The schema is one table::

    files(path TEXT PRIMARY KEY,   -- canonical relative path, '' = the root
          parent TEXT,             -- path of the parent directory (NULL for the root)
          is_dir INTEGER NOT NULL, -- 1 for a directory, 0 for a file
          data BLOB,               -- a file's content (NULL for a directory)
          modified INTEGER NOT NULL)  -- Unix seconds of the last change

plus an index on ``parent`` for listing, and the usage tally the quotas
are checked against::

    usage(id INTEGER PRIMARY KEY CHECK (id = 1),  -- one row
          bytes INTEGER NOT NULL,  -- sum of the sizes of all files
          files INTEGER NOT NULL)  -- files and directories, the root not counted

The root row always exists. The tally lives in the database, not in the
process: every change reads it and updates it inside the same ``BEGIN
IMMEDIATE`` transaction as the change itself, so several processes (or
connections) sharing one database can never together store more than the
quota. A database from before the tally existed gets it computed once, when
it is first opened (one ``INSERT ... SELECT``, atomic on its own).

Every operation runs in one transaction (``BEGIN IMMEDIATE`` for changes, a
plain ``BEGIN`` for reads) on the one connection, which is shared by all
threads behind a lock (``check_same_thread=False``): runs happen on worker
threads. Semantics, error kinds and messages are those of the file system
backend (the conformance suite checks it), including that writes need an
existing parent directory and that a directory's ``modified`` changes when an
entry in it is created, replaced or deleted. The tree invariant (every row's
parent row exists and is a directory) is kept by construction, so checking a
path's parent row is enough to know the whole way down exists; the slower
prefix-by-prefix check only runs to word the error when it does not.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from peerbox._errors import Error, ExceptionMapping, map_exceptions

from ._backend import Backend, Stat
from ._errors import (
    HostCallError,
    db_reason,
    io_error,
    is_a_directory,
    no_such_directory,
    no_such_entry,
    no_such_file,
    not_a_directory,
    not_empty,
    too_large_to_read,
)
from ._limits import Quotas, Usage
from ._paths import join, parse_path

__all__ = ["SqliteBackend"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    parent TEXT,
    is_dir INTEGER NOT NULL,
    data BLOB,
    modified INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_parent ON files(parent);
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    bytes INTEGER NOT NULL,
    files INTEGER NOT NULL
);
"""

#: Computes the tally of a database that has none yet (created, or from before the table existed).
_MIGRATE = (
    "INSERT OR IGNORE INTO usage(id, bytes, files) "
    "SELECT 1, coalesce(sum(length(data)), 0), count(*) FROM files WHERE path != ''"
)


def _now() -> int:
    return int(time.time())


def _opening_errors(db_path: str, doing: str) -> ExceptionMapping:
    """sqlite3's (and the OS's) errors while opening ``db_path``: a :class:`peerbox.Error` for
    the operator, naming the host file (it never reaches a script)."""

    def make(exc: BaseException) -> Error:
        return Error(f"cannot {doing} the storage database {db_path!r}: {exc}")

    return {OSError: make, sqlite3.Error: make}


def _operation_errors(path: str) -> ExceptionMapping:
    """sqlite3's errors in an operation on the script's ``path``: ``io_error`` naming that path,
    with SQLite's reason only when it names no host path (:func:`db_reason`). This backend
    translates its storage library's errors itself: the dispatcher above knows no sqlite3."""
    return {sqlite3.Error: lambda exc: io_error(path, db_reason(exc))}


class SqliteBackend(Backend):
    """A peer's storage in the SQLite database file ``db_path`` (created if missing).

    The file (and its ``-wal``/``-shm`` companions) are created mode 0600,
    its directory 0700 if missing. Raises :class:`peerbox.Error` if the
    database cannot be opened or is not a peerbox database.
    """

    kind = "sqlite"

    def __init__(self, db_path: str | os.PathLike[str], quotas: Quotas | None = None) -> None:
        super().__init__(quotas)
        self.db_path = os.fspath(db_path)
        self._lock = threading.Lock()
        self._closed = False
        with map_exceptions(_opening_errors(self.db_path, "open")):
            directory = os.path.dirname(self.db_path)
            if directory:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            # Create the file 0600 ourselves: SQLite gives its -wal/-shm files the same mode.
            os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
            self._db = sqlite3.connect(
                self.db_path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
        try:
            self._set_up()
        except BaseException:
            self._db.close()
            raise

    def _set_up(self) -> None:
        """WAL mode, the schema, the root row and the usage tally (idempotent).

        Raises :class:`peerbox.Error` naming the database file if SQLite refuses any of it.
        """
        with map_exceptions(_opening_errors(self.db_path, "use")):
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise sqlite3.OperationalError(f"WAL mode refused (journal_mode is {mode!r})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO files(path, parent, is_dir, data, modified) "
                "VALUES ('', NULL, 1, NULL, ?)",
                (_now(),),
            )
            self._db.execute(_MIGRATE)

    def __repr__(self) -> str:
        return f"SqliteBackend({self.db_path!r})"

    def close(self) -> None:
        """Close the connection (after operations in progress). Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    # -- transactions and the tree ---------------------------------------------------

    @contextmanager
    def _tx(self, path: str, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction: commit on success, roll back on any error.

        The caller holds ``self._lock``. ``sqlite3.Error`` becomes
        ``HostCallError("io_error")`` naming ``path``.
        """
        if self._closed:
            raise HostCallError("io_error", "the peer's storage is closed")
        db = self._db
        with map_exceptions(_operation_errors(path)):
            try:
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the first error is the one to report; the connection recovers
                raise

    @staticmethod
    def _usage(db: sqlite3.Connection) -> Usage:
        """The stored tally (read inside the caller's transaction, so it is current for its write)."""
        row = db.execute("SELECT bytes, files FROM usage WHERE id = 1").fetchone()
        if row is None:  # removed by hand: recount (inside this transaction, so still exact)
            db.execute(_MIGRATE)
            row = db.execute("SELECT bytes, files FROM usage WHERE id = 1").fetchone()
        return Usage(int(row[0]), int(row[1]))

    @staticmethod
    def _count(db: sqlite3.Connection, nbytes: int, files: int) -> None:
        """Add ``nbytes`` and ``files`` to the stored tally (inside the write's transaction)."""
        db.execute("UPDATE usage SET bytes = bytes + ?, files = files + ? WHERE id = 1", (nbytes, files))

    @staticmethod
    def _row(db: sqlite3.Connection, path: str) -> tuple[int, int, int] | None:
        """``(is_dir, size, modified)`` of ``path``, or None."""
        row = db.execute(
            "SELECT is_dir, coalesce(length(data), 0), modified FROM files WHERE path = ?", (path,)
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]))

    def _walk(self, db: sqlite3.Connection, parts: tuple[str, ...], upto: int) -> None:
        """Check that ``parts[:upto]`` is a directory, with the file system backend's errors."""
        if upto == 0:
            return
        row = self._row(db, join(parts[:upto]))
        if row is not None and row[0]:
            return  # the tree invariant: every ancestor of a directory is a directory
        for i in range(1, upto + 1):
            prefix = join(parts[:i])
            row = self._row(db, prefix)
            if row is None:
                raise no_such_directory(prefix)
            if not row[0]:
                raise not_a_directory(prefix)
        raise io_error(join(parts[:upto]), "inconsistent database")  # pragma: no cover

    @staticmethod
    def _touch(db: sqlite3.Connection, parent: str, now: int) -> None:
        db.execute("UPDATE files SET modified = ? WHERE path = ?", (now, parent))

    def _put(self, db: sqlite3.Connection, parts: tuple[str, ...], data: bytes) -> None:
        now = _now()
        parent = join(parts[:-1])
        db.execute(
            "INSERT OR REPLACE INTO files(path, parent, is_dir, data, modified) VALUES (?, ?, 0, ?, ?)",
            (join(parts), parent, sqlite3.Binary(data), now),
        )
        self._touch(db, parent, now)

    def _content(self, db: sqlite3.Connection, parts: tuple[str, ...], p: str) -> bytes | None:
        """The bytes of file ``p`` (None if there is none); refuses a directory, and a file over
        the size quota without reading it."""
        limit = self.quotas.max_file_size
        self._walk(db, parts, len(parts) - 1)
        row = db.execute(
            "SELECT is_dir, coalesce(length(data), 0), CASE WHEN length(data) <= ? THEN data END "
            "FROM files WHERE path = ?",
            (limit, p),
        ).fetchone()
        if row is None:
            return None
        if row[0]:
            raise is_a_directory(p)
        if row[1] > limit:
            raise too_large_to_read(p, limit)
        return bytes(row[2]) if row[2] is not None else b""

    # -- the operations ------------------------------------------------------------------

    def read_bytes(self, path: str) -> bytes:
        parts = parse_path(path)
        p = join(parts)
        if not parts:
            raise is_a_directory(p)
        with self._lock, self._tx(p, write=False) as db:
            content = self._content(db, parts, p)
        if content is None:
            raise no_such_file(p)
        return content

    def write_bytes(self, path: str, data: bytes) -> None:
        parts = parse_path(path)
        p = join(parts)
        if not parts:
            raise is_a_directory(p)
        with self._lock, self._tx(p, write=True) as db:
            self._walk(db, parts, len(parts) - 1)
            row = self._row(db, p)
            if row is not None and row[0]:
                raise is_a_directory(p)
            old = None if row is None else row[1]
            self.quotas.check_file(self._usage(db), p, old, len(data))
            self._put(db, parts, bytes(data))
            self._count(db, len(data) - (old or 0), int(old is None))

    def append_bytes(self, path: str, data: bytes) -> int:
        parts = parse_path(path)
        p = join(parts)
        if not parts:
            raise is_a_directory(p)
        with self._lock:
            with self._tx(p, write=True) as db:
                before = self._content(db, parts, p)
                old = None if before is None else len(before)
                content = (before or b"") + bytes(data)
                self.quotas.check_file(self._usage(db), p, old, len(content))
                self._put(db, parts, content)
                self._count(db, len(content) - (old or 0), int(old is None))
            return len(content)

    def list_dir(self, path: str) -> list[str]:
        parts = parse_path(path)
        p = join(parts)
        with self._lock:
            with self._tx(p, write=False) as db:
                self._walk(db, parts, len(parts))
                rows = db.execute("SELECT path FROM files WHERE parent = ?", (p,)).fetchall()
            skip = len(p) + 1 if parts else 0
            return sorted(str(row[0])[skip:] for row in rows)

    def exists(self, path: str) -> bool:
        parts = parse_path(path)
        if not parts:
            return True
        p = join(parts)
        with self._lock, self._tx(p, write=False) as db:
            return self._row(db, p) is not None

    def delete(self, path: str) -> None:
        parts = parse_path(path)
        p = join(parts)
        if not parts:
            raise HostCallError("invalid_path", "cannot delete the peer root")
        with self._lock, self._tx(p, write=True) as db:
            self._walk(db, parts, len(parts) - 1)
            row = self._row(db, p)
            if row is None:
                raise no_such_entry(p)
            if row[0] and db.execute("SELECT 1 FROM files WHERE parent = ? LIMIT 1", (p,)).fetchone():
                raise not_empty(p)
            db.execute("DELETE FROM files WHERE path = ?", (p,))
            self._touch(db, join(parts[:-1]), _now())
            self._count(db, -row[1], -1)

    def mkdir(self, path: str) -> None:
        parts = parse_path(path)
        if not parts:
            return
        p = join(parts)
        with self._lock, self._tx(p, write=True) as db:
            i = 0
            while i < len(parts):  # descend through what exists
                row = self._row(db, join(parts[: i + 1]))
                if row is None:
                    break
                if not row[0]:
                    raise not_a_directory(join(parts[: i + 1]))
                i += 1
            if i == len(parts):
                return
            added = len(parts) - i
            self.quotas.check_entries(self._usage(db), p, added)
            now = _now()
            self._touch(db, join(parts[:i]), now)
            for j in range(i, len(parts)):
                db.execute(
                    "INSERT INTO files(path, parent, is_dir, data, modified) VALUES (?, ?, 1, NULL, ?)",
                    (join(parts[: j + 1]), join(parts[:j]), now),
                )
            self._count(db, 0, added)

    def stat(self, path: str) -> Stat:
        parts = parse_path(path)
        p = join(parts)
        with self._lock:
            with self._tx(p, write=False) as db:
                if parts:
                    self._walk(db, parts, len(parts) - 1)
                row = self._row(db, p)
            if row is None:
                raise no_such_entry(p)
            return Stat(0 if row[0] else row[1], bool(row[0]), row[2])

    def usage(self) -> tuple[int, int]:
        """``(bytes, files)`` as stored in the database: what every process sharing it has stored."""
        with self._lock:
            with self._tx("", write=False) as db:
                u = self._usage(db)
            return u.bytes, u.files
