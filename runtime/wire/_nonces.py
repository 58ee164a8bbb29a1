"""The replay guard: every (caller, nonce) a peer has accepted, until it expires.

A request carries a random ``nonce`` and an expiry ``exp``. The target records
each accepted ``(caller, nonce)`` with its ``exp`` in a small SQLite database
(WAL mode, so readers never block the writer and a crash loses nothing that
was committed) and refuses the same pair again. Entries are kept until their
``exp`` has passed: from then on the request is refused as expired anyway, so
the row can go. Because the table is a file, a replay is caught after a
restart of the process too.

This is the only I/O of the envelope layer. :class:`NonceStore` is thread
safe (one connection behind a lock) and safe across processes (each check is
one ``BEGIN IMMEDIATE`` transaction; SQLite serialises writers).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from types import TracebackType

from .._errors import Error, ExceptionMapping, map_exceptions

__all__ = ["NonceStore", "NonceStoreError", "PRUNE_EVERY"]

#: Expired rows are deleted every this many calls of :meth:`NonceStore.seen_or_add`.
PRUNE_EVERY = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nonces (
    caller BLOB NOT NULL,
    nonce  BLOB NOT NULL,
    exp    INTEGER NOT NULL,
    PRIMARY KEY (caller, nonce)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_exp ON nonces (exp);
"""


class NonceStoreError(Error):
    """The nonce database cannot be opened or written (disk full, corrupt, not a database)."""

    exit_code = 2


def _store_errors(what: str) -> ExceptionMapping:
    """sqlite3's errors (and the OS's, creating the directory) on the store: a
    :class:`NonceStoreError` for the operator, ``what`` naming the file and SQLite's reason."""

    def make(exc: BaseException) -> NonceStoreError:
        return NonceStoreError(f"{what}: {exc}")

    return {sqlite3.Error: make, OSError: make}


class NonceStore:
    """Persistent set of seen ``(caller, nonce)`` pairs with expiry.

    ``path`` is the SQLite file (created with its directory if missing) or
    ``":memory:"`` for a store that lives as long as the object. Raises
    :class:`NonceStoreError` if the file cannot be used.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._calls = 0
        with map_exceptions(_store_errors(f"cannot open the nonce store {self.path}")):
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def seen_or_add(self, caller: bytes, nonce: bytes, exp: int, now: int) -> bool:
        """Record ``(caller, nonce)`` until ``exp``; return ``True`` if it was already there.

        Atomic: of two concurrent calls with the same pair (threads or
        processes), exactly one returns ``False``. A pair whose recorded
        ``exp`` has passed (``exp <= now``) counts as unseen and is replaced,
        and every :data:`PRUNE_EVERY` calls expired rows are deleted. Raises
        :class:`NonceStoreError` on a database failure (the request must then
        be refused: not knowing is not "unseen").
        """
        with self._lock, map_exceptions(_store_errors(f"nonce store {self.path}")):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT exp FROM nonces WHERE caller = ? AND nonce = ?", (caller, nonce)
                ).fetchone()
                if row is not None and row[0] > now:
                    seen = True
                else:
                    seen = False
                    self._db.execute(
                        "INSERT OR REPLACE INTO nonces (caller, nonce, exp) VALUES (?, ?, ?)",
                        (caller, nonce, exp),
                    )
                self._calls += 1
                if self._calls % PRUNE_EVERY == 0:
                    self._db.execute("DELETE FROM nonces WHERE exp <= ?", (now,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return seen

    def prune(self, now: int) -> int:
        """Delete every entry whose ``exp`` has passed; return how many went."""
        with self._lock, map_exceptions(_store_errors(f"nonce store {self.path}")):
            cur = self._db.execute("DELETE FROM nonces WHERE exp <= ?", (now,))
            return cur.rowcount

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM nonces").fetchone()[0])

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> NonceStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NonceStore({self.path!r})"
