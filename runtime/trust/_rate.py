"""Per-caller rate limits: may this caller make one more request now?

A policy rule allowing ``exec`` or ``call`` may set ``calls_per_minute`` and
``burst``; :meth:`peerbox.policy.Policy.rates_for` gives a request's
:class:`~peerbox.policy.RateLimit` s (one per matching rule) and the handler
asks :meth:`RateLimiter.take`, after the policy allowed the request and
before anything runs. A denial is answered 429 with ``retry-after`` and a
signed reply of kind ``rate_limited``.

The algorithm is GCRA (the "virtual scheduling" form of a token bucket): per
(caller, rule) one number, the theoretical arrival time ``tat``. With
``T = 60 / per_minute`` and ``tau = burst * T``, a request at ``now`` is
allowed when ``max(tat, now) + T - now <= tau`` and then moves ``tat`` to
``max(tat, now) + T``; ``burst`` requests may come at once, then one per ``T``.
A request must be allowed by every limit given, and takes from all or from
none.

The buckets live in ``<peer dir>/rates.sqlite`` and each take is one ``BEGIN
IMMEDIATE`` transaction, so the limit holds across the threads of a worker,
``--workers N`` processes and isolated mode's children alike (of one root).
A handler takes any :class:`RateStore`: a worker with shared state
(``peerbox serve --state nats://...``) passes the JetStream one
(:class:`peerbox.net._jslimits.JetStreamRates`), which holds across every
worker of the deployment; :func:`gcra` is the arithmetic both share. Requests with
no rate limit never open the database. Rows idle for an hour are pruned every
1,000 takes.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .._errors import Error, ExceptionMapping, map_exceptions
from .._sqlite import open_wal
from ..policy import RateLimit

__all__ = ["RATES_FILE", "RateStoreError", "RateDenial", "RateLimiter", "RateStore", "gcra", "IDLE"]

#: The buckets' file name in the peer's directory.
RATES_FILE = "rates.sqlite"

_BUSY_TIMEOUT = 10.0
_PRUNE_EVERY = 1000
_IDLE = 3600.0
#: A bucket idle this long (s) past its ``tat`` may be forgotten (it is full again anyway).
IDLE = _IDLE

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate (caller TEXT NOT NULL, rule TEXT NOT NULL, tat REAL NOT NULL,
                                 PRIMARY KEY (caller, rule)) WITHOUT ROWID;
"""


class RateStoreError(Error):
    """The rate-limit database cannot be opened or written (disk full, corrupt, locked).

    Its message names no host path (a handler answers ``unavailable`` with it to a remote caller).
    """

    exit_code = 2


def _reason(exc: BaseException) -> str:
    """SQLite's or the OS's reason, without anything that could be a host path."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    text = str(exc)
    if text and "/" not in text and "\\" not in text and len(text) <= 200:
        return text
    name = getattr(exc, "sqlite_errorname", None)
    return name if isinstance(name, str) and name else type(exc).__name__


def _store_errors(what: str) -> ExceptionMapping:
    def make(exc: BaseException) -> RateStoreError:
        return RateStoreError(f"{what} ({RATES_FILE}): {_reason(exc)}")

    return {sqlite3.Error: make, OSError: make}


@dataclass(frozen=True, slots=True)
class RateDenial:
    """A request over ``limit`` (the tightest one it broke); it may come back after
    ``retry_after`` seconds."""

    limit: RateLimit
    retry_after: float

    def message(self) -> str:
        """What the ``rate_limited`` reply says: the rule, its rate and the wait."""
        rate = self.limit.per_minute
        shown = f"{rate:g}"
        return (f"rate limit of {self.limit.rule} ({shown} calls per minute, burst {self.limit.burst}): "
                f"retry in {self.retry_seconds} s")

    @property
    def retry_seconds(self) -> int:
        """:attr:`retry_after` rounded up to whole seconds, at least 1 (a ``retry-after`` header)."""
        return max(1, math.ceil(self.retry_after))


class RateStore(Protocol):
    """What a handler asks about rates: :meth:`RateLimiter.take` and :meth:`RateLimiter.close`."""

    def take(self, caller_did: str, limits: Sequence[RateLimit], now: float) -> RateDenial | None: ...

    def close(self) -> None: ...


def gcra(tats: Mapping[str, float], limits: Sequence[RateLimit],
         now: float) -> tuple[RateDenial | None, dict[str, float]]:
    """One request at ``now`` against ``limits``, given the stored ``tats`` (rule key → theoretical
    arrival time; a missing key is a full bucket). Returns ``(denial, {})`` when a limit refuses
    (the one making it wait longest), else ``(None, new tats of the limits given)``."""
    worst: RateDenial | None = None
    new: dict[str, float] = {}
    for limit in limits:
        interval = 60.0 / limit.per_minute
        tau = limit.burst * interval
        tat = max(tats.get(limit.key, now), now)
        wait = tat + interval - now - tau
        if wait > 1e-9:
            if worst is None or wait > worst.retry_after:
                worst = RateDenial(limit, wait)
        else:
            new[limit.key] = tat + interval
    if worst is not None:
        return worst, {}
    return None, new


class RateLimiter:
    """The rate-limit buckets of one peer, in the SQLite file ``path``.

    Thread-safe (one connection behind a lock, opened by the first :meth:`take`
    that has a limit to check); several processes may use one file. Close it
    when the handler closes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._takes = 0

    def _open(self) -> sqlite3.Connection:
        return open_wal(self.path, _SCHEMA, busy_timeout=_BUSY_TIMEOUT)

    def take(self, caller_did: str, limits: Sequence[RateLimit], now: float) -> RateDenial | None:
        """Count one request of ``caller_did`` at ``now`` (Unix seconds) against every limit in
        ``limits``, or none of them.

        Returns None when all allow it (each bucket advanced), else a :class:`RateDenial`
        naming the limit that makes it wait longest (no bucket changed). An empty ``limits``
        returns None without touching the database. Raises :class:`RateStoreError` when the
        database cannot be used or the limiter is closed.
        """
        if not limits:
            return None
        with self._lock, map_exceptions(_store_errors("the rate-limit store failed")):
            if self._closed:
                raise RateStoreError("the rate-limit store is closed")
            if self._db is None:
                self._db = self._open()
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                denial = self._take(db, caller_did, limits, now)
                self._takes += 1
                if denial is None and self._takes % _PRUNE_EVERY == 0:
                    db.execute("DELETE FROM rate WHERE tat < ?", (now - _IDLE,))
                db.execute("COMMIT" if denial is None else "ROLLBACK")
            except BaseException:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:  # the first failure is the one to report
                        pass
                raise
        return denial

    @staticmethod
    def _take(db: sqlite3.Connection, caller: str, limits: Sequence[RateLimit],
              now: float) -> RateDenial | None:
        tats: dict[str, float] = {}
        for limit in limits:
            row = db.execute("SELECT tat FROM rate WHERE caller = ? AND rule = ?",
                             (caller, limit.key)).fetchone()
            if row is not None:
                tats[limit.key] = float(row[0])
        denial, new = gcra(tats, limits, now)
        if denial is not None:
            return denial
        db.executemany("INSERT INTO rate VALUES (?, ?, ?) "
                       "ON CONFLICT(caller, rule) DO UPDATE SET tat = excluded.tat",
                       [(caller, key, tat) for key, tat in new.items()])
        return None

    def prune(self, now: float) -> int:
        """Drop the buckets idle for an hour before ``now``; how many were dropped. Raises
        :class:`RateStoreError`."""
        with self._lock, map_exceptions(_store_errors("the rate-limit store failed")):
            if self._closed:
                raise RateStoreError("the rate-limit store is closed")
            if self._db is None:
                self._db = self._open()
            return self._db.execute("DELETE FROM rate WHERE tat < ?", (now - _IDLE,)).rowcount

    def close(self) -> None:
        """Close the connection. Idempotent; a later :meth:`take` with limits raises."""
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> RateLimiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
