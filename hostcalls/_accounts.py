"""Where quotas are counted: this process (the default) or a store shared by several workers.

A peer's quotas are counted in two places:

- the **per-caller ledger** (:class:`LedgerStore`): who keeps what, for the
  caps a policy rule sets (``max_bytes``/``max_files``). The default is the
  SQLite :class:`~peerbox.hostcalls.Ledger` in ``<peer dir>/quota.sqlite``;
- the **peer-wide tally** (:class:`Tally`) of a backend that cannot ask its
  storage cheaply (S3): bytes and entries, against the peer's ``[quotas]``.
  The default, :class:`LocalTally`, is counted by this process from a listing
  when the backend is first used.

Both work by *reserve, change, settle*: what a change adds is reserved
(checked against the cap and added, atomically) before the storage changes;
the reservation is given back if the change fails, and corrected to what the
change really did afterwards. :class:`SharedAccounts` is what a deployment
sharing state passes in (``peerbox serve --state``: the JetStream stores of
:mod:`peerbox.net._jsquota`, given to :class:`~peerbox.peer.PeerContext`,
whose ``ledger`` it replaces and whose :class:`StorageSite` carries it to the
backend), so the caps hold across every worker of the peer. This package
only defines the interfaces: it imports nothing from the network layers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from ._limits import Usage

__all__ = ["LedgerStore", "Reservation", "Tally", "LocalTally", "SharedAccounts"]


class Reservation(Protocol):
    """What one change reserved for ``caller`` (returned on failure, folded in when settled)."""

    @property
    def caller(self) -> str: ...

    @property
    def bytes(self) -> int: ...

    @property
    def entries(self) -> int: ...


class LedgerStore(Protocol):
    """The per-caller shares of one peer's storage (see :mod:`peerbox.hostcalls._ledger` for the
    semantics every implementation keeps). Every method raises ``HostCallError("io_error", ...)``
    when the store cannot be used (naming no host path), and :meth:`reserve`
    ``HostCallError("quota_exceeded", ...)`` past a cap (nothing reserved)."""

    def usage(self, caller: str) -> tuple[int, int]: ...

    def usages(self) -> dict[str, tuple[int, int]]: ...

    def reset(self, caller: str | None = None) -> None: ...

    def close(self) -> None: ...

    def reserve(self, caller: str, max_bytes: int | None, max_files: int | None, path: str, verb: str, *,
                add_bytes: int, add_entries: int, replace: bool, storage_name: str) -> Reservation: ...

    def unreserve(self, r: Reservation) -> None: ...

    def settle(self, path: str, r: Reservation | None, *, release: bool, share: tuple[int, int] | None,
               grow: bool = False) -> None: ...

    def settle_dirs(self, created: list[str], r: Reservation) -> None: ...


class Tally(Protocol):
    """A peer-wide ``(bytes, entries)`` count (see the module docstring). Raises
    ``HostCallError("io_error", ...)`` when it cannot be used."""

    def start(self, count: Callable[[], Usage]) -> None:
        """Make sure there is a count: if none is kept yet, ``count()`` (a listing) gives it."""

    def current(self) -> Usage:
        """The count now (a copy)."""

    def reserve(self, check: Callable[[Usage], None], add_bytes: int, add_entries: int) -> None:
        """``check(count)`` (raises ``quota_exceeded`` to refuse), then add, as one atomic step."""

    def adjust(self, add_bytes: int, add_entries: int) -> None:
        """Add (or, negative, take away) without a check: a release or a correction."""


class LocalTally:
    """The tally kept by this process alone (the default; thread-safe)."""

    def __init__(self) -> None:
        self._usage: Usage | None = None
        self._lock = threading.Lock()

    def start(self, count: Callable[[], Usage]) -> None:
        with self._lock:
            if self._usage is None:
                self._usage = count()

    def _now(self) -> Usage:
        assert self._usage is not None, "start() first"
        return self._usage

    def current(self) -> Usage:
        with self._lock:
            u = self._now()
            return Usage(u.bytes, u.files)

    def reserve(self, check: Callable[[Usage], None], add_bytes: int, add_entries: int) -> None:
        with self._lock:
            u = self._now()
            check(Usage(u.bytes, u.files))
            u.bytes += add_bytes
            u.files += add_entries

    def adjust(self, add_bytes: int, add_entries: int) -> None:
        with self._lock:
            u = self._now()
            u.bytes += add_bytes
            u.files += add_entries


class SharedAccounts(Protocol):
    """Quota stores shared by every worker of a deployment (one object per worker process)."""

    def ledger(self, peer_did: str) -> LedgerStore:
        """The per-caller ledger of the peer ``peer_did``."""

    def tally(self, peer_did: str, scope: str) -> Tally:
        """The peer-wide tally of that peer's storage at ``scope`` (a backend's location, e.g.
        ``s3://bucket/prefix``: a peer moved to other storage starts a fresh count)."""
