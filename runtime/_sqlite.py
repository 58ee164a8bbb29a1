"""Opening a SQLite database that several threads and processes share: WAL, a busy timeout, a schema.

Used by the stores that peerbox keeps beside a peer (the replay store, the
per-caller quota ledger, the rate limiter). Raises sqlite3's errors: each
caller maps them at its own boundary (:func:`peerbox._errors.map_exceptions`).
"""

from __future__ import annotations

import sqlite3
import time

__all__ = ["open_wal"]

#: How long an opening retries a locked switch to WAL, and a busy database waits, by default (s).
BUSY_TIMEOUT = 10.0


def open_wal(path: str, schema: str, *, synchronous: str = "NORMAL",
             busy_timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    """A connection to ``path`` (autocommit, usable from any thread) in WAL mode with ``schema``.

    Several processes opening one new file at once make SQLite answer
    "database is locked" to the switch to WAL without waiting (its busy
    handler is not called there), so a locked or busy database is retried
    every few milliseconds for up to ``busy_timeout`` seconds; every step is
    idempotent. ``synchronous`` is ``NORMAL`` or ``FULL``. Raises sqlite3's
    errors (the connection is closed first).
    """
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA synchronous={synchronous}")
                db.executescript(schema)
                return db
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
                if code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.002)
    except BaseException:
        db.close()
        raise
